//! The command families. Each module declares `COMMANDS`, a `const` table of its
//! commands with their handlers; [`FAMILIES`] is the whole command set.

use crate::command::CommandSpec;

pub mod client;
pub mod config;
pub mod connection;
pub mod introspection;
pub mod keys;
pub mod persistence;
pub mod server;
pub mod strings;
pub mod transactions;

/// Every command the server knows, by family.
pub const FAMILIES: &[&[CommandSpec]] = &[
    connection::COMMANDS,
    client::COMMANDS,
    strings::COMMANDS,
    keys::COMMANDS,
    server::COMMANDS,
    config::COMMANDS,
    introspection::COMMANDS,
    persistence::COMMANDS,
    transactions::COMMANDS,
];

//! The command families. Each module declares `COMMANDS`, a `const` table of its
//! commands with their handlers; [`FAMILIES`] is the whole command set.

use crate::command::CommandSpec;

pub mod bitmaps;
pub mod blocking;
pub mod client;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod dump;
pub mod hashes;
pub mod hyperloglog;
pub mod introspection;
pub mod keys;
pub mod lists;
pub mod memory;
pub mod persistence;
pub mod server;
pub mod sets;
pub mod slowlog;
pub mod sort;
pub mod strings;
pub mod transactions;
pub mod zsets;

/// Every command the server knows, by family.
pub const FAMILIES: &[&[CommandSpec]] = &[
    connection::COMMANDS,
    client::COMMANDS,
    strings::COMMANDS,
    keys::COMMANDS,
    lists::COMMANDS,
    hashes::COMMANDS,
    server::COMMANDS,
    config::COMMANDS,
    introspection::COMMANDS,
    persistence::COMMANDS,
    sets::COMMANDS,
    zsets::COMMANDS,
    transactions::COMMANDS,
    cluster::COMMANDS,
    bitmaps::COMMANDS,
    hyperloglog::COMMANDS,
    sort::COMMANDS,
    dump::COMMANDS,
    crate::replication::COMMANDS,
    blocking::COMMANDS,
    slowlog::COMMANDS,
    memory::COMMANDS,
];

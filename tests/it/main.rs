//! Integration tests: every test starts real `dse-server` processes on loopback ports and
//! talks to them with real clients (the `redis` crate, raw RESP over TCP).
//!
//! One test binary (modules below) so the suite links once.

mod util;

mod blocking;
mod client;
mod config;
mod connection;
mod hashes;
mod introspection;
mod keys;
mod lists;
mod network;
mod persistence;
mod server;
mod sets;
mod slowlog;
mod strings;
mod transactions;
mod zsets;

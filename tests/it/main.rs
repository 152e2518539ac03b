//! Integration tests: every test starts real `dse-server` processes on loopback ports and
//! talks to them with real clients (the `redis` crate, raw RESP over TCP).
//!
//! One test binary (modules below) so the suite links once.

mod util;

mod bitmaps;
mod blocking;
mod client;
mod cluster;
mod config;
mod connection;
mod dump;
mod failover;
mod forwarding;
mod hashes;
mod hyperloglog;
mod introspection;
mod keys;
mod lists;
mod network;
mod persistence;
mod placement;
mod replication;
mod server;
mod sets;
mod slowlog;
mod sort;
mod strings;
mod transactions;
mod zsets;

//! Integration tests for the server commands.

//! Integration tests for the client commands.

//! Integration tests for the keys commands.

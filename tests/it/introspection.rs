//! Integration tests for the introspection commands.

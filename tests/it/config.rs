//! Integration tests for the config commands.

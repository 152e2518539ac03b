//! TODO: family not written yet.

use crate::command::CommandSpec;

pub const COMMANDS: &[CommandSpec] = &[];

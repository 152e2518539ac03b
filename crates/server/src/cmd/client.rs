//! CLIENT: connection introspection and control.

use crate::command::CommandSpec;

pub const COMMANDS: &[CommandSpec] = &[];

/// Client names may not contain spaces, newlines or other special characters.
pub fn validate_name(name: &[u8]) -> Result<(), crate::command::CmdError> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(crate::command::CmdError::Static(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

//! Argument parsing with Redis's rules and error replies.

use crate::command::CmdError;

/// An integer argument, as Redis's `string2ll` reads it (no '+', no spaces, no leading
/// zeros).
pub fn int(a: &[u8]) -> Result<i64, CmdError> {
    dse_engine::parse_canonical_i64(a).ok_or(CmdError::NotInteger)
}

/// A non-negative integer argument.
pub fn uint(a: &[u8]) -> Result<u64, CmdError> {
    match int(a)? {
        n if n >= 0 => Ok(n as u64),
        _ => Err(CmdError::NotInteger),
    }
}

/// An integer argument that must be positive; `what` completes Redis's message
/// ("ERR <what> is out of range, must be positive").
pub fn positive(a: &[u8], what: &str) -> Result<i64, CmdError> {
    match int(a)? {
        n if n > 0 => Ok(n),
        _ => Err(CmdError::Owned(format!(
            "ERR {what} is out of range, must be positive"
        ))),
    }
}

/// A float argument, as Redis's `strtod` checks read it: no spaces, no NaN, no overflow.
pub fn float(a: &[u8]) -> Result<f64, CmdError> {
    let s = std::str::from_utf8(a).map_err(|_| CmdError::NotFloat)?;
    if s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return Err(CmdError::NotFloat);
    }
    let v: f64 = s.parse().map_err(|_| CmdError::NotFloat)?;
    if v.is_nan() {
        return Err(CmdError::NotFloat);
    }
    // "1e999" parses to infinity; strtod reports that as a range error.
    if v.is_infinite() && !s.to_ascii_lowercase().contains("inf") {
        return Err(CmdError::NotFloat);
    }
    Ok(v)
}

/// Case-insensitive comparison with an option name.
pub fn is(a: &[u8], option: &str) -> bool {
    a.eq_ignore_ascii_case(option.as_bytes())
}

/// Lossy text of an argument, for error messages.
pub fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        assert_eq!(float(b"1.5").unwrap(), 1.5);
        assert_eq!(float(b"-inf").unwrap(), f64::NEG_INFINITY);
        assert_eq!(float(b"+inf").unwrap(), f64::INFINITY);
        assert_eq!(float(b"1e3").unwrap(), 1000.0);
        assert!(float(b"nan").is_err());
        assert!(float(b" 1").is_err());
        assert!(float(b"1e999").is_err());
        assert!(float(b"abc").is_err());
    }
}

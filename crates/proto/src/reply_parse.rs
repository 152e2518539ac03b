//! Reading replies: for the load tools and for forwarding between nodes, which need to
//! know where one reply ends (`frame_len`) far more often than what it says (`parse`).

use memchr::memchr;

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(Vec<u8>),
    Error(Vec<u8>),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` and RESP3's `_`.
    Nil,
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Set(Vec<Value>),
    Push(Vec<Value>),
    Double(f64),
    Bool(bool),
    Verbatim(Vec<u8>),
    BigNumber(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply at byte {0}")]
pub struct ReplyError(pub usize);

pub struct ReplyParser;

impl ReplyParser {
    /// The length of the first complete reply in `buf`, `None` if it is not all there yet.
    /// Iterative, so a deeply nested reply cannot overflow the stack.
    pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ReplyError> {
        let mut pos = 0;
        let mut pending: u64 = 1;
        while pending > 0 {
            let Some((kind, line, next)) = line_at(buf, pos) else {
                return Ok(None);
            };
            pending -= 1;
            match kind {
                b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => pos = next,
                b'$' | b'=' | b'!' => {
                    let n = int(line).ok_or(ReplyError(pos))?;
                    if n < 0 {
                        pos = next;
                    } else {
                        let end = next.saturating_add(n as usize).saturating_add(2);
                        if buf.len() < end {
                            return Ok(None);
                        }
                        pos = end;
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = int(line).ok_or(ReplyError(pos))?;
                    if n > 0 {
                        let per = if kind == b'%' || kind == b'|' { 2 } else { 1 };
                        // An attribute (`|`) precedes the reply it annotates.
                        let extra = if kind == b'|' { 1 } else { 0 };
                        // Saturating: absurd counts must not wrap; the frame just
                        // stays incomplete.
                        pending = pending
                            .saturating_add((n as u64).saturating_mul(per).saturating_add(extra));
                    } else if kind == b'|' {
                        pending = pending.saturating_add(1);
                    }
                    pos = next;
                }
                _ => return Err(ReplyError(pos)),
            }
        }
        Ok(Some(pos))
    }

    /// Decodes the first complete reply in `buf` and its length.
    pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ReplyError> {
        match Self::frame_len(buf)? {
            None => Ok(None),
            Some(len) => {
                let mut pos = 0;
                let v = parse_at(buf, &mut pos)?;
                debug_assert_eq!(pos, len);
                Ok(Some((v, len)))
            }
        }
    }
}

/// The type byte, the rest of the header line, and where the next line starts.
fn line_at(buf: &[u8], pos: usize) -> Option<(u8, &[u8], usize)> {
    let rest = buf.get(pos..)?;
    let nl = memchr(b'\n', rest)?;
    if nl < 2 {
        return Some((rest[0], &[], pos + nl + 1));
    }
    Some((rest[0], &rest[1..nl - 1], pos + nl + 1))
}

fn int(s: &[u8]) -> Option<i64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

fn parse_at(buf: &[u8], pos: &mut usize) -> Result<Value, ReplyError> {
    let at = *pos;
    let (kind, line, next) = line_at(buf, at).ok_or(ReplyError(at))?;
    *pos = next;
    let count = |line: &[u8]| int(line).ok_or(ReplyError(at));
    Ok(match kind {
        b'+' => Value::Simple(line.to_vec()),
        b'-' => Value::Error(line.to_vec()),
        b':' => Value::Int(count(line)?),
        b'_' => Value::Nil,
        b'#' => Value::Bool(line == b"t"),
        b',' => Value::Double(
            std::str::from_utf8(line)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(ReplyError(at))?,
        ),
        b'(' => Value::BigNumber(line.to_vec()),
        b'$' | b'=' | b'!' => {
            let n = count(line)?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            let data = buf[next..next + n as usize].to_vec();
            *pos = next + n as usize + 2;
            match kind {
                b'$' => Value::Bulk(data),
                b'!' => Value::Error(data),
                _ => Value::Verbatim(data),
            }
        }
        b'*' | b'~' | b'>' => {
            let n = count(line)?;
            if n < 0 {
                return Ok(Value::Nil);
            }
            let items = (0..n)
                .map(|_| parse_at(buf, pos))
                .collect::<Result<Vec<_>, _>>()?;
            match kind {
                b'*' => Value::Array(items),
                b'~' => Value::Set(items),
                _ => Value::Push(items),
            }
        }
        b'%' => {
            let n = count(line)?;
            let mut pairs = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let k = parse_at(buf, pos)?;
                let v = parse_at(buf, pos)?;
                pairs.push((k, v));
            }
            Value::Map(pairs)
        }
        b'|' => {
            let n = count(line)?;
            for _ in 0..2 * n {
                parse_at(buf, pos)?;
            }
            parse_at(buf, pos)?
        }
        _ => return Err(ReplyError(at)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_values() {
        let buf = b"*2\r\n$3\r\nfoo\r\n%1\r\n+a\r\n:1\r\n+OK\r\n";
        assert_eq!(ReplyParser::frame_len(buf).unwrap(), Some(buf.len() - 5));
        let (v, _) = ReplyParser::parse(buf).unwrap().unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Bulk(b"foo".to_vec()),
                Value::Map(vec![(Value::Simple(b"a".to_vec()), Value::Int(1))])
            ])
        );
        assert_eq!(
            ReplyParser::frame_len(b"*2\r\n$3\r\nfoo\r\n").unwrap(),
            None
        );
        assert_eq!(ReplyParser::frame_len(b"$-1\r\n").unwrap(), Some(5));
    }
}

//! Reply encoding for RESP2 and RESP3.
//!
//! Commands call one method per reply element and never check the protocol version
//! themselves: a map is `%n` in RESP3 and a flat `*2n` array in RESP2, a null is `_` or
//! `$-1`, and so on, exactly as Redis's `addReply*` functions do.

use std::fmt::Write as _;

/// The protocol version a connection negotiated with `HELLO` (2 until it asks for 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resp {
    #[default]
    V2,
    V3,
}

/// Appends replies to an output buffer.
pub struct Reply<'a> {
    buf: &'a mut Vec<u8>,
    resp: Resp,
}

impl<'a> Reply<'a> {
    pub fn new(buf: &'a mut Vec<u8>, resp: Resp) -> Self {
        Reply { buf, resp }
    }

    pub fn resp(&self) -> Resp {
        self.resp
    }

    pub fn set_resp(&mut self, resp: Resp) {
        self.resp = resp;
    }

    pub fn is_resp3(&self) -> bool {
        self.resp == Resp::V3
    }

    /// Bytes in the output buffer (all replies so far, not only this command's).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Drops everything written after `len` (a command that changed its mind).
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Raw, already encoded bytes (a forwarded reply, a canned reply).
    pub fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn ok(&mut self) {
        self.buf.extend_from_slice(b"+OK\r\n");
    }

    /// A simple string (`+PONG`). It must not contain CR or LF.
    pub fn simple(&mut self, s: &str) {
        self.simple_bytes(s.as_bytes());
    }

    pub fn simple_bytes(&mut self, s: &[u8]) {
        self.buf.reserve(s.len() + 3);
        self.buf.push(b'+');
        self.buf.extend_from_slice(s);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// An error reply. `msg` starts with its code (`ERR`, `WRONGTYPE`, ...). Line breaks
    /// become spaces so the reply stays one line, as Redis's `addReplyError` does.
    pub fn error(&mut self, msg: &str) {
        self.error_bytes(msg.as_bytes());
    }

    /// [`Reply::error`] for text that need not be UTF-8 (a protocol error quoting the
    /// client's byte).
    pub fn error_bytes(&mut self, msg: &[u8]) {
        self.buf.reserve(msg.len() + 3);
        self.buf.push(b'-');
        self.buf.extend(
            msg.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.header(b':', n);
    }

    pub fn bulk(&mut self, data: &[u8]) {
        self.buf.reserve(data.len() + 16);
        self.header(b'$', data.len() as i64);
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(b"\r\n");
    }

    /// A bulk string made of several pieces, written without joining them first.
    pub fn bulk_parts(&mut self, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.buf.reserve(len + 16);
        self.header(b'$', len as i64);
        for p in parts {
            self.buf.extend_from_slice(p);
        }
        self.buf.extend_from_slice(b"\r\n");
    }

    pub fn bulk_str(&mut self, s: &str) {
        self.bulk(s.as_bytes());
    }

    /// An integer sent as a bulk string (GET of an integer-encoded value).
    pub fn bulk_int(&mut self, n: i64) {
        let mut b = itoa::Buffer::new();
        self.bulk(b.format(n).as_bytes());
    }

    /// The null bulk string (`$-1` / `_`).
    pub fn null(&mut self) {
        match self.resp {
            Resp::V2 => self.buf.extend_from_slice(b"$-1\r\n"),
            Resp::V3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    /// The null array (`*-1` / `_`), for the commands that used it in RESP2.
    pub fn null_array(&mut self) {
        match self.resp {
            Resp::V2 => self.buf.extend_from_slice(b"*-1\r\n"),
            Resp::V3 => self.buf.extend_from_slice(b"_\r\n"),
        }
    }

    pub fn array(&mut self, len: usize) {
        self.header(b'*', len as i64);
    }

    /// A map of `len` pairs: `%len` in RESP3, an array of `2*len` elements in RESP2.
    pub fn map(&mut self, len: usize) {
        match self.resp {
            Resp::V2 => self.header(b'*', 2 * len as i64),
            Resp::V3 => self.header(b'%', len as i64),
        }
    }

    /// A set: `~len` in RESP3, an array in RESP2.
    pub fn set(&mut self, len: usize) {
        match self.resp {
            Resp::V2 => self.header(b'*', len as i64),
            Resp::V3 => self.header(b'~', len as i64),
        }
    }

    /// An out-of-band push: `>len` in RESP3, an array in RESP2.
    pub fn push(&mut self, len: usize) {
        match self.resp {
            Resp::V2 => self.header(b'*', len as i64),
            Resp::V3 => self.header(b'>', len as i64),
        }
    }

    pub fn bool(&mut self, b: bool) {
        match self.resp {
            Resp::V2 => self.int(b as i64),
            Resp::V3 => self
                .buf
                .extend_from_slice(if b { b"#t\r\n" } else { b"#f\r\n" }),
        }
    }

    /// A double: `,1.5` in RESP3, a bulk string in RESP2. Shortest round-trip digits, with
    /// an exponent where `%g` would use one (Redis 7.2's `fpconv_dtoa` format).
    pub fn double(&mut self, d: f64) {
        let mut text = DoubleText::default();
        text.format(d);
        match self.resp {
            Resp::V2 => self.bulk(text.as_bytes()),
            Resp::V3 => {
                self.buf.push(b',');
                self.buf.extend_from_slice(text.as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Text meant for humans (INFO, CLIENT LIST): a verbatim string `=len\r\ntxt:` in
    /// RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, text: &[u8]) {
        match self.resp {
            Resp::V2 => self.bulk(text),
            Resp::V3 => {
                self.header(b'=', text.len() as i64 + 4);
                self.buf.extend_from_slice(b"txt:");
                self.buf.extend_from_slice(text);
                self.buf.extend_from_slice(b"\r\n");
            }
        }
    }

    fn header(&mut self, prefix: u8, n: i64) {
        let mut b = itoa::Buffer::new();
        let digits = b.format(n).as_bytes();
        self.buf.push(prefix);
        self.buf.extend_from_slice(digits);
        self.buf.extend_from_slice(b"\r\n");
    }
}

/// A formatted double on the stack.
pub struct DoubleText {
    buf: [u8; 40],
    len: usize,
}

impl Default for DoubleText {
    fn default() -> Self {
        DoubleText {
            buf: [0; 40],
            len: 0,
        }
    }
}

impl DoubleText {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn as_str(&self) -> &str {
        // The buffer only ever receives ASCII from `fmt`.
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }

    pub fn format(&mut self, d: f64) {
        self.len = 0;
        if d.is_nan() {
            let _ = self.write_str("nan");
            return;
        }
        if d.is_infinite() {
            let _ = self.write_str(if d > 0.0 { "inf" } else { "-inf" });
            return;
        }
        // `{:e}` gives the shortest round-trip digits with the exponent split out.
        let _ = write!(self, "{d:e}");
        let text = &self.buf[..self.len];
        let e = text.iter().position(|&c| c == b'e').unwrap_or(text.len());
        let exp: i32 = std::str::from_utf8(&text[e + 1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if (-4..17).contains(&exp) {
            self.len = 0;
            let _ = write!(self, "{d}");
        } else {
            // `%g` style: at least two exponent digits and an explicit sign.
            let mut mantissa = [0u8; 40];
            mantissa[..e].copy_from_slice(&self.buf[..e]);
            self.len = 0;
            let mantissa = std::str::from_utf8(&mantissa[..e]).unwrap_or("0");
            let sign = if exp < 0 { '-' } else { '+' };
            let _ = write!(self, "{mantissa}e{sign}{:02}", exp.abs());
        }
    }
}

impl std::fmt::Write for DoubleText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(resp: Resp, f: impl FnOnce(&mut Reply)) -> String {
        let mut v = Vec::new();
        f(&mut Reply::new(&mut v, resp));
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn resp2_and_resp3_shapes() {
        assert_eq!(enc(Resp::V2, |r| r.null()), "$-1\r\n");
        assert_eq!(enc(Resp::V3, |r| r.null()), "_\r\n");
        assert_eq!(enc(Resp::V2, |r| r.map(2)), "*4\r\n");
        assert_eq!(enc(Resp::V3, |r| r.map(2)), "%2\r\n");
        assert_eq!(enc(Resp::V3, |r| r.bool(true)), "#t\r\n");
        assert_eq!(enc(Resp::V2, |r| r.bool(true)), ":1\r\n");
        assert_eq!(enc(Resp::V3, |r| r.verbatim(b"a")), "=5\r\ntxt:a\r\n");
        assert_eq!(enc(Resp::V2, |r| r.error("ERR a\r\nb")), "-ERR a  b\r\n");
    }

    #[test]
    fn doubles() {
        let f = |d: f64| {
            let mut t = DoubleText::default();
            t.format(d);
            t.as_str().to_string()
        };
        assert_eq!(f(1.5), "1.5");
        assert_eq!(f(-0.1), "-0.1");
        assert_eq!(f(3.0), "3");
        assert_eq!(f(1e300), "1e+300");
        assert_eq!(f(1.25e-7), "1.25e-07");
        assert_eq!(f(f64::INFINITY), "inf");
        assert_eq!(f(f64::NEG_INFINITY), "-inf");
        assert_eq!(enc(Resp::V3, |r| r.double(2.5)), ",2.5\r\n");
        assert_eq!(enc(Resp::V2, |r| r.double(2.5)), "$3\r\n2.5\r\n");
    }
}

//! Request parsing: RESP multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline
//! (`GET k\r\n`, what telnet sends).
//!
//! The parser mirrors Redis's `processMultibulkBuffer`/`processInlineBuffer`, including
//! their error strings and their leniency (the two bytes after a bulk payload are skipped,
//! not checked), so a client sees the same behaviour as against Redis.

use std::ops::{Index, Range};

use memchr::memchr;

/// Size limits, as Redis's `proto-max-bulk-len` and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk argument accepted (Redis: `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// Most arguments in one request (Redis 7: INT_MAX; 1,048,576 before 7.0). The count
    /// costs nothing until the arguments arrive: memory follows the bytes received, which
    /// the query-buffer limit bounds.
    pub max_args: usize,
    /// Longest inline request or header line without a newline (Redis: 64 KiB).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: i32::MAX as usize,
            max_inline_len: 64 * 1024,
        }
    }
}

/// A malformed request. Redis answers `-ERR Protocol error: <this>` and closes the
/// connection; the server does the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("invalid bulk length")]
    InvalidBulkLength,
    #[error("expected '$', got '{}'", *.0 as char)]
    ExpectedDollar(u8),
    #[error("too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("too big bulk count string")]
    TooBigBulkCount,
    #[error("too big inline request")]
    TooBigInline,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
}

impl ProtocolError {
    /// The reply text, `ERR Protocol error: ...`, byte for byte as Redis writes it: the
    /// unexpected byte of [`ProtocolError::ExpectedDollar`] goes out raw (Redis formats it
    /// with `%c`), where `Display` would write its UTF-8 form.
    pub fn reply_text(&self) -> Vec<u8> {
        let mut text = b"ERR Protocol error: ".to_vec();
        match *self {
            ProtocolError::ExpectedDollar(got) => {
                text.extend_from_slice(b"expected '$', got '");
                text.push(got);
                text.push(b'\'');
            }
            ref other => text.extend_from_slice(other.to_string().as_bytes()),
        }
        text
    }
}

/// What one call to [`RequestParser::parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseOutcome {
    /// A whole request of `consumed` bytes; its arguments are in the `args` vector.
    Complete { consumed: usize },
    /// A request with no arguments (an empty inline line, `*0`, `*-1`): skip `consumed`
    /// bytes and go on, as Redis does.
    Empty { consumed: usize },
    /// More bytes are needed. `want` is how many bytes the buffer must hold before the
    /// next call can make progress (exact while reading a bulk payload, a guess
    /// otherwise), so the caller can size its buffer once for a large value.
    Incomplete { want: usize },
}

/// A resumable request parser; one per connection.
///
/// Contract: every call gets a buffer that starts at the first byte of the request being
/// parsed (the caller removes the bytes of completed requests before calling again), and
/// the same `args` vector. While a multibulk request is incomplete the parser remembers how
/// far it got, so a large request arriving in many reads is scanned once.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    /// Bytes of the current request already parsed.
    pos: usize,
    /// Bulk arguments still expected; zero when no multibulk request is in progress.
    remaining: usize,
    /// Length of the bulk argument whose header was read but whose payload was not.
    bulk_len: Option<usize>,
    /// The last complete request was inline: its arguments index `inline_args`.
    inline: bool,
    /// Unquoted, unescaped inline arguments (inline is rare: telnet, `redis-cli` pipes).
    inline_args: Vec<u8>,
}

impl RequestParser {
    pub fn new(limits: Limits) -> Self {
        RequestParser {
            limits,
            ..Default::default()
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// True while a request has been partly read.
    pub fn in_progress(&self) -> bool {
        self.remaining > 0
    }

    /// Parses the next request from `buf`. On `Complete`, `args` holds one range per
    /// argument; read them through [`RequestParser::args`].
    ///
    /// After an error the parser starts afresh (the server closes the connection anyway,
    /// but a caller that goes on gets no stale offsets).
    pub fn parse(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
    ) -> Result<ParseOutcome, ProtocolError> {
        let outcome = self.parse_request(buf, args);
        if outcome.is_err() {
            self.pos = 0;
            self.remaining = 0;
            self.bulk_len = None;
            args.clear();
        }
        outcome
    }

    fn parse_request(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
    ) -> Result<ParseOutcome, ProtocolError> {
        if self.remaining == 0 {
            let Some(&first) = buf.first() else {
                return Ok(ParseOutcome::Incomplete { want: 1 });
            };
            if first != b'*' {
                return self.parse_inline(buf, args);
            }
            self.inline = false;
            args.clear();
            let Some(cr) = memchr(b'\r', buf) else {
                if buf.len() > self.limits.max_inline_len {
                    return Err(ProtocolError::TooBigMultibulkCount);
                }
                return Ok(ParseOutcome::Incomplete {
                    want: buf.len() + 1,
                });
            };
            // Like Redis, the byte after the CR is skipped, not checked.
            if cr + 1 >= buf.len() {
                return Ok(ParseOutcome::Incomplete { want: cr + 2 });
            }
            let count = parse_len(&buf[1..cr]).ok_or(ProtocolError::InvalidMultibulkLength)?;
            if count > self.limits.max_args as i64 {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if count <= 0 {
                return Ok(ParseOutcome::Empty { consumed: cr + 2 });
            }
            self.pos = cr + 2;
            self.remaining = count as usize;
            self.bulk_len = None;
            // Trust the count only as far as a sane first allocation; a client that
            // announces a million arguments must send them before we pay for them.
            args.reserve(self.remaining.min(1024));
        }
        self.parse_bulks(buf, args)
    }

    fn parse_bulks(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
    ) -> Result<ParseOutcome, ProtocolError> {
        while self.remaining > 0 {
            let len = match self.bulk_len {
                Some(len) => len,
                None => {
                    // Only a caller that broke the contract (a shorter buffer than last
                    // time) gets here with `pos` past the end.
                    let Some(rest) = buf.get(self.pos..) else {
                        return Ok(ParseOutcome::Incomplete { want: self.pos + 1 });
                    };
                    let Some(cr) = memchr(b'\r', rest) else {
                        if rest.len() > self.limits.max_inline_len {
                            return Err(ProtocolError::TooBigBulkCount);
                        }
                        return Ok(ParseOutcome::Incomplete {
                            want: buf.len() + 1,
                        });
                    };
                    if cr + 1 >= rest.len() {
                        return Ok(ParseOutcome::Incomplete {
                            want: self.pos + cr + 2,
                        });
                    }
                    if rest[0] != b'$' {
                        return Err(ProtocolError::ExpectedDollar(rest[0]));
                    }
                    let len = parse_len(&rest[1..cr])
                        .filter(|&n| n >= 0 && n as u64 <= self.limits.max_bulk_len as u64)
                        .ok_or(ProtocolError::InvalidBulkLength)?
                        as usize;
                    self.pos += cr + 2;
                    self.bulk_len = Some(len);
                    len
                }
            };
            // Saturating: a limit raised to usize::MAX must not wrap around.
            let end = self.pos.saturating_add(len);
            let next = end.saturating_add(2);
            if buf.len() < next {
                return Ok(ParseOutcome::Incomplete { want: next });
            }
            // The two bytes after the payload are skipped unchecked, as Redis does.
            args.push(self.pos..end);
            self.pos = next;
            self.bulk_len = None;
            self.remaining -= 1;
        }
        let consumed = self.pos;
        self.pos = 0;
        Ok(ParseOutcome::Complete { consumed })
    }

    fn parse_inline(
        &mut self,
        buf: &[u8],
        args: &mut Vec<Range<usize>>,
    ) -> Result<ParseOutcome, ProtocolError> {
        let Some(nl) = memchr(b'\n', buf) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(ParseOutcome::Incomplete {
                want: buf.len() + 1,
            });
        };
        let mut line = &buf[..nl];
        if let [head @ .., b'\r'] = line {
            line = head;
        }
        args.clear();
        self.inline_args.clear();
        split_inline(line, &mut self.inline_args, args)?;
        self.inline = true;
        if args.is_empty() {
            return Ok(ParseOutcome::Empty { consumed: nl + 1 });
        }
        if args.len() > self.limits.max_args {
            return Err(ProtocolError::InvalidMultibulkLength);
        }
        Ok(ParseOutcome::Complete { consumed: nl + 1 })
    }

    /// Gives back what a large request left behind (argument ranges, unquoted inline
    /// arguments) unless a request is in progress, so an idle connection holds a few
    /// bytes rather than the buffers of its biggest request. Cheap enough to call after
    /// every batch; it clears `args`, so the last request's arguments are gone.
    pub fn trim(&mut self, args: &mut Vec<Range<usize>>) {
        const KEEP_RANGES: usize = 64;
        const KEEP_INLINE: usize = 1024;
        if self.remaining > 0 {
            return;
        }
        if args.capacity() > KEEP_RANGES {
            *args = Vec::new();
        }
        if self.inline_args.capacity() > KEEP_INLINE {
            self.inline_args = Vec::new();
        }
        args.clear();
    }

    /// The arguments of the request that the last `Complete` described.
    pub fn args<'a>(&'a self, buf: &'a [u8], ranges: &'a [Range<usize>]) -> Args<'a> {
        let base = if self.inline {
            &self.inline_args[..]
        } else {
            buf
        };
        Args { base, ranges }
    }
}

/// Redis's `string2ll` for protocol lengths: an optional '-', then "0" alone or digits
/// without a leading zero (so "-0", "+1", " 1" and "01" are refused), within i64
/// (i64::MIN included).
fn parse_len(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [b'0'] if !neg => return Some(0),
        [b'1'..=b'9', ..] if digits.len() <= 19 => {}
        _ => return None,
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        // 19 digits stay below 10^19 < u64::MAX: no overflow.
        n = n * 10 + u64::from(d - b'0');
    }
    if neg {
        (n <= i64::MAX as u64 + 1).then(|| (n as i64).wrapping_neg())
    } else {
        i64::try_from(n).ok()
    }
}

/// Redis's `sdssplitargs`: words separated by blanks; "double quotes" with C escapes
/// (`\n \r \t \b \a \\ \" \xHH`); 'single quotes' with only `\'`. A closing quote must
/// be followed by a blank or the end of the line. Blanks are `isspace` (vertical tab and
/// form feed included) between words and after a closing quote, but only space, tab, CR
/// and LF end an unquoted word: `a\vb` is one word, as in Redis.
///
/// One difference: Redis reads the line as a C string, so a NUL byte ends it (and its
/// `strchr` for the newline stops there too, leaving such a request hanging until the
/// inline limit). Here NUL is an ordinary byte.
fn split_inline(
    line: &[u8],
    out: &mut Vec<u8>,
    args: &mut Vec<Range<usize>>,
) -> Result<(), ProtocolError> {
    let is_space = |c: u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c);
    let ends_word = |c: u8| matches!(c, b' ' | b'\n' | b'\r' | b'\t');
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let start = out.len();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let Some(&c) = line.get(i) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\'
                    && i + 3 < line.len()
                    && line[i + 1] == b'x'
                    && line[i + 2].is_ascii_hexdigit()
                    && line[i + 3].is_ascii_hexdigit()
                {
                    out.push(hex(line[i + 2]) << 4 | hex(line[i + 3]));
                    i += 4;
                    continue;
                }
                if c == b'\\' && i + 1 < line.len() {
                    out.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    i += 2;
                    continue;
                }
                if c == b'"' {
                    if i + 1 < line.len() && !is_space(line[i + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                out.push(c);
                i += 1;
            } else if in_single {
                let Some(&c) = line.get(i) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    out.push(b'\'');
                    i += 2;
                    continue;
                }
                if c == b'\'' {
                    if i + 1 < line.len() && !is_space(line[i + 1]) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                }
                out.push(c);
                i += 1;
            } else {
                match line.get(i) {
                    None => break,
                    Some(&c) if ends_word(c) => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => out.push(c),
                }
                i += 1;
            }
        }
        args.push(start..out.len());
    }
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

/// The arguments of one request, borrowed from the read buffer.
#[derive(Clone, Copy)]
pub struct Args<'a> {
    base: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// Arguments over an owned list of ranges into `base` (for tests and internal callers).
    pub fn from_parts(base: &'a [u8], ranges: &'a [Range<usize>]) -> Self {
        Args { base, ranges }
    }

    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.ranges.get(i).map(|r| &self.base[r.clone()])
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + DoubleEndedIterator + 'a {
        let base = self.base;
        self.ranges.iter().map(move |r| &base[r.clone()])
    }

    /// The arguments from `start` on.
    pub fn tail(&self, start: usize) -> Args<'a> {
        Args {
            base: self.base,
            ranges: &self.ranges[start.min(self.ranges.len())..],
        }
    }
}

impl Index<usize> for Args<'_> {
    type Output = [u8];
    fn index(&self, i: usize) -> &[u8] {
        &self.base[self.ranges[i].clone()]
    }
}

impl std::fmt::Debug for Args<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut p = RequestParser::new(Limits::default());
        let mut ranges = Vec::new();
        let mut buf = input;
        let mut out = Vec::new();
        loop {
            match p.parse(buf, &mut ranges)? {
                ParseOutcome::Complete { consumed } => {
                    out.push(p.args(buf, &ranges).iter().map(<[u8]>::to_vec).collect());
                    buf = &buf[consumed..];
                }
                ParseOutcome::Empty { consumed } => buf = &buf[consumed..],
                ParseOutcome::Incomplete { .. } => return Ok(out),
            }
        }
    }

    fn words(v: &[&str]) -> Vec<Vec<u8>> {
        v.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_pipeline() {
        let got = parse_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n").unwrap();
        assert_eq!(got, vec![words(&["PING"]), words(&["GET", "k"])]);
    }

    #[test]
    fn empty_and_negative_multibulk_are_skipped() {
        let got = parse_all(b"*0\r\n*-10\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![words(&["PING"])]);
    }

    #[test]
    fn redis_error_strings() {
        let err = |b: &[u8]| parse_all(b).unwrap_err().to_string();
        assert_eq!(err(b"*2147483648\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*-0\r\n"), "invalid multibulk length");
        assert_eq!(err(b"*1\r\n$-0\r\n"), "invalid bulk length");
        assert_eq!(err(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(
            err(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n"),
            "expected '$', got 'f'"
        );
        assert_eq!(err(b"*1\r\n$-1\r\n"), "invalid bulk length");
        assert_eq!(err(b"*1\r\n$2000000000\r\n"), "invalid bulk length");
        assert_eq!(err(b"\"unclosed\r\n"), "unbalanced quotes in request");
        assert_eq!(err(&vec![b'a'; 70 * 1024]), "too big inline request");
        assert_eq!(err(&vec![b'*'; 70 * 1024]), "too big mbulk count string");
    }

    #[test]
    fn counts_follow_string2ll() {
        // Redis 7 takes up to INT_MAX arguments and waits for them.
        assert_eq!(
            parse_all(b"*2147483647\r\n").unwrap(),
            Vec::<Vec<Vec<u8>>>::new()
        );
        // i64::MIN is a valid (empty) count.
        let got = parse_all(b"*-9223372036854775808\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(got, vec![words(&["PING"])]);
        assert_eq!(parse_len(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_len(b"9223372036854775808"), None);
        assert_eq!(parse_len(b"-9223372036854775809"), None);
        assert_eq!(parse_len(b"0"), Some(0));
        for bad in [&b""[..], b"-", b"-0", b"+1", b" 1", b"01", b"1 ", b"1a"] {
            assert_eq!(parse_len(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn unexpected_byte_is_sent_raw() {
        let e = parse_all(b"*1\r\n\xff4\r\nPING\r\n").unwrap_err();
        assert_eq!(
            e.reply_text(),
            b"ERR Protocol error: expected '$', got '\xff'".to_vec()
        );
        assert_eq!(
            ProtocolError::TooBigInline.reply_text(),
            b"ERR Protocol error: too big inline request".to_vec()
        );
    }

    #[test]
    fn vertical_tab_and_form_feed_do_not_split_words() {
        let got =
            parse_all(b"ECHO a\x0bb\r\nECHO a\x0cb\r\n\x0bPING\x0b\r\nECHO \"a\"\x0c\r\n").unwrap();
        assert_eq!(
            got,
            vec![
                vec![b"ECHO".to_vec(), b"a\x0bb".to_vec()],
                vec![b"ECHO".to_vec(), b"a\x0cb".to_vec()],
                vec![b"PING\x0b".to_vec()],
                words(&["ECHO", "a"]),
            ]
        );
    }

    #[test]
    fn error_resets_state() {
        let mut p = RequestParser::new(Limits::default());
        let mut ranges = Vec::new();
        let bad = b"*2\r\n$3\r\nGET\r\nX";
        assert!(matches!(
            p.parse(bad, &mut ranges),
            Ok(ParseOutcome::Incomplete { .. })
        ));
        assert!(p.parse(b"*2\r\n$3\r\nGET\r\nX\r\n", &mut ranges).is_err());
        assert!(!p.in_progress());
        assert_eq!(
            p.parse(b"*1\r\n$4\r\nPING\r\n", &mut ranges).unwrap(),
            ParseOutcome::Complete { consumed: 14 }
        );
    }

    #[test]
    fn inline_quoting() {
        let got = parse_all(b"SET \"a b\" 'c\\'d' \"\\x41\\n\"\r\n\r\nPING\n").unwrap();
        assert_eq!(
            got,
            vec![
                vec![
                    b"SET".to_vec(),
                    b"a b".to_vec(),
                    b"c'd".to_vec(),
                    b"A\n".to_vec()
                ],
                words(&["PING"])
            ]
        );
    }

    #[test]
    fn incomplete_bulk_reports_exact_size() {
        let mut p = RequestParser::new(Limits::default());
        let mut ranges = Vec::new();
        let buf = b"*2\r\n$3\r\nSET\r\n$10\r\nabc";
        assert_eq!(
            p.parse(buf, &mut ranges).unwrap(),
            ParseOutcome::Incomplete {
                want: buf.len() - 3 + 12
            }
        );
    }
}

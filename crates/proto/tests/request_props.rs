//! Properties of `RequestParser`, fed the way the server feeds it: the caller keeps the
//! bytes not yet consumed and calls again with them plus whatever arrived next.

use dse_proto::{Limits, ParseOutcome, ProtocolError, RequestParser};
use proptest::prelude::*;

type Request = Vec<Vec<u8>>;

/// What feeding a stream produced: the requests in order, then the error that stopped
/// the parser (if any), or else the bytes left over (a partial request). How much had
/// arrived when an error was found depends on the chunking, so it is not compared.
#[derive(Debug, PartialEq)]
struct Fed {
    requests: Vec<Request>,
    error: Option<ProtocolError>,
    leftover: usize,
}

/// Feeds `stream` in pieces ending at `cuts` (ascending; the end of the stream is an
/// implicit last cut) and checks the parser's promises on every call.
fn feed(limits: Limits, stream: &[u8], cuts: &[usize]) -> Fed {
    let mut parser = RequestParser::new(limits);
    let mut ranges = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut requests = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        let to = to.clamp(from, stream.len());
        pending.extend_from_slice(&stream[from..to]);
        from = to;
        loop {
            match parser.parse(&pending, &mut ranges) {
                Ok(ParseOutcome::Complete { consumed }) => {
                    assert!(
                        consumed > 0 && consumed <= pending.len(),
                        "consumed {consumed} of {}",
                        pending.len()
                    );
                    let args = parser.args(&pending, &ranges);
                    assert!(!args.is_empty());
                    requests.push(args.iter().map(<[u8]>::to_vec).collect());
                    pending.drain(..consumed);
                }
                Ok(ParseOutcome::Empty { consumed }) => {
                    assert!(consumed > 0 && consumed <= pending.len());
                    pending.drain(..consumed);
                }
                Ok(ParseOutcome::Incomplete { want }) => {
                    // The caller sizes its buffer by `want`: it must ask for more than
                    // it has, or a caller waiting for `want` bytes would stall.
                    assert!(want > pending.len(), "want {want} <= {}", pending.len());
                    break;
                }
                Err(e) => {
                    return Fed {
                        requests,
                        error: Some(e),
                        leftover: 0,
                    };
                }
            }
        }
    }
    Fed {
        requests,
        error: None,
        leftover: pending.len(),
    }
}

fn whole(stream: &[u8]) -> Fed {
    feed(Limits::default(), stream, &[])
}

/// One piece of a request stream: its bytes and the request it encodes (`None` for
/// input Redis skips: empty lines, `*0`, `*-1`).
#[derive(Debug, Clone)]
struct Piece {
    bytes: Vec<u8>,
    request: Option<Request>,
}

fn binary_arg() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..24),
        // Bytes that look like protocol, inside a payload.
        3 => prop::collection::vec(prop::sample::select(b"*$\r\n0123456789- \"'".to_vec()), 0..24),
        1 => prop::collection::vec(any::<u8>(), 100..3000),
    ]
}

fn multibulk() -> impl Strategy<Value = Piece> {
    prop::collection::vec(binary_arg(), 1..6).prop_map(|args| {
        let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
        for a in &args {
            bytes.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            bytes.extend_from_slice(a);
            bytes.extend_from_slice(b"\r\n");
        }
        Piece {
            bytes,
            request: Some(args),
        }
    })
}

/// An unquoted word: no blanks, no quotes, never starting with '*'.
fn safe_word() -> impl Strategy<Value = Vec<u8>> {
    "[A-Za-z0-9_:.+=/-]{1,10}".prop_map(String::into_bytes)
}

/// `"..."` with C escapes: (encoded, decoded).
fn double_quoted() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    prop::collection::vec((any::<u8>(), any::<bool>()), 0..16).prop_map(|chars| {
        let mut enc = vec![b'"'];
        let mut dec = Vec::new();
        for (c, hex) in chars {
            dec.push(c);
            match c {
                b'"' => enc.extend_from_slice(b"\\\""),
                b'\\' => enc.extend_from_slice(b"\\\\"),
                b'\n' => enc.extend_from_slice(b"\\n"),
                b'\r' => enc.extend_from_slice(b"\\r"),
                b'\t' => enc.extend_from_slice(b"\\t"),
                0x07 => enc.extend_from_slice(b"\\a"),
                0x08 => enc.extend_from_slice(b"\\b"),
                b' '..=b'~' if !hex => enc.push(c),
                _ => enc.extend_from_slice(
                    format!(
                        "\\x{}",
                        if hex {
                            format!("{c:02X}")
                        } else {
                            format!("{c:02x}")
                        }
                    )
                    .as_bytes(),
                ),
            }
        }
        enc.push(b'"');
        (enc, dec)
    })
}

/// `'...'` where only `\'` is an escape: (encoded, decoded).
fn single_quoted() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    "[ -&(-\\[\\]-~]{0,12}('[ -&(-\\[\\]-~]{0,4})?".prop_map(|s| {
        let dec = s.clone().into_bytes();
        let mut enc = vec![b'\''];
        for c in s.bytes() {
            if c == b'\'' {
                enc.extend_from_slice(b"\\'");
            } else {
                enc.push(c);
            }
        }
        enc.push(b'\'');
        (enc, dec)
    })
}

/// One inline argument: a word, a quoted string, or a word running into a quoted string
/// (`ab"c d"` is `abc d`; a quote may only be followed by a blank or the line's end).
fn inline_arg() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    prop_oneof![
        4 => safe_word().prop_map(|w| (w.clone(), w)),
        2 => double_quoted(),
        2 => single_quoted(),
        1 => (safe_word(), prop_oneof![double_quoted(), single_quoted()]).prop_map(
            |(w, (enc, dec))| ([w.clone(), enc].concat(), [w, dec].concat())
        ),
    ]
}

fn inline() -> impl Strategy<Value = Piece> {
    (
        prop::collection::vec(
            (
                inline_arg(),
                prop::collection::vec(prop::sample::select(b" \t".to_vec()), 1..3),
            ),
            1..6,
        ),
        // Blanks before the first word may include vertical tab and form feed.
        prop::collection::vec(prop::sample::select(b" \t\x0b\x0c".to_vec()), 0..3),
        prop::collection::vec(prop::sample::select(b" \t".to_vec()), 0..3),
        any::<bool>(),
    )
        .prop_map(|(args, lead, trail, crlf)| {
            let mut bytes = lead;
            let mut request = Vec::new();
            for (i, ((enc, dec), sep)) in args.into_iter().enumerate() {
                if i > 0 {
                    bytes.extend_from_slice(&sep);
                }
                bytes.extend_from_slice(&enc);
                request.push(dec);
            }
            bytes.extend_from_slice(&trail);
            bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            Piece {
                bytes,
                request: Some(request),
            }
        })
}

fn skipped() -> impl Strategy<Value = Piece> {
    prop::sample::select(vec![&b"*0\r\n"[..], b"*-1\r\n", b"\r\n", b"\n", b" \t\r\n"]).prop_map(
        |b| Piece {
            bytes: b.to_vec(),
            request: None,
        },
    )
}

fn stream(max_pieces: usize) -> impl Strategy<Value = (Vec<u8>, Vec<Request>)> {
    prop::collection::vec(
        prop_oneof![5 => multibulk(), 3 => inline(), 1 => skipped()],
        1..max_pieces,
    )
    .prop_map(|pieces| {
        let bytes = pieces.iter().flat_map(|p| p.bytes.clone()).collect();
        let requests = pieces.into_iter().filter_map(|p| p.request).collect();
        (bytes, requests)
    })
}

/// Random cut points for a stream of `len` bytes.
fn cuts_for(len: usize, seed: &[u16]) -> Vec<usize> {
    let mut cuts: Vec<usize> = seed.iter().map(|&s| s as usize % (len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A valid stream parses to exactly the requests it encodes, whole or in random
    /// pieces, and nothing is left over.
    #[test]
    fn valid_stream_random_chunks(
        (bytes, expected) in stream(12),
        seed in prop::collection::vec(any::<u16>(), 0..40),
    ) {
        let all = whole(&bytes);
        prop_assert_eq!(&all, &Fed { requests: expected, error: None, leftover: 0 });
        prop_assert_eq!(feed(Limits::default(), &bytes, &cuts_for(bytes.len(), &seed)), all);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The same, cut in two at every byte boundary, and delivered one byte at a time.
    #[test]
    fn valid_stream_every_cut((bytes, expected) in stream(5)) {
        let expected = Fed { requests: expected, error: None, leftover: 0 };
        for cut in 0..=bytes.len() {
            prop_assert_eq!(&feed(Limits::default(), &bytes, &[cut]), &expected, "cut at {}", cut);
        }
        let every: Vec<usize> = (0..bytes.len()).collect();
        prop_assert_eq!(feed(Limits::default(), &bytes, &every), expected);
    }
}

/// Bytes that are mostly protocol syntax, so random input gets deep into the parser.
fn protocolish_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            3 => any::<u8>(),
            4 => prop::sample::select(b"*$\r\n\r\n0123456789-\"' \\x\t".to_vec()),
        ],
        0..max,
    )
}

/// A valid stream with a few bytes overwritten, inserted or removed.
fn damaged_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        stream(6),
        prop::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 1..4),
    )
        .prop_map(|((mut bytes, _), edits)| {
            for (at, byte, kind) in edits {
                let at = at as usize % (bytes.len() + 1);
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Garbage never panics, never claims bytes it was not given (checked inside
    /// `feed`), and gives the same requests and the same error however it is cut.
    #[test]
    fn garbage_is_handled_the_same_in_any_chunking(
        bytes in prop_oneof![protocolish_bytes(200), damaged_stream()],
        seed in prop::collection::vec(any::<u16>(), 0..30),
    ) {
        let all = whole(&bytes);
        prop_assert_eq!(feed(Limits::default(), &bytes, &cuts_for(bytes.len(), &seed)), all);
    }

    /// Tiny limits: the limit errors fire (when they do depends on how the bytes
    /// arrive, as in Redis), but nothing panics or overreaches.
    #[test]
    fn garbage_with_tiny_limits(
        bytes in prop_oneof![protocolish_bytes(200), damaged_stream()],
        seed in prop::collection::vec(any::<u16>(), 0..30),
    ) {
        let limits = Limits { max_bulk_len: 16, max_args: 3, max_inline_len: 12 };
        feed(limits, &bytes, &[]);
        feed(limits, &bytes, &cuts_for(bytes.len(), &seed));
    }
}

#[test]
fn a_large_argument_in_small_pieces_is_scanned_once_and_sized_exactly() {
    let value = vec![b'v'; 1 << 20];
    let mut bytes = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n".to_vec();
    bytes.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    let header_end = bytes.len();
    bytes.extend_from_slice(&value);
    bytes.extend_from_slice(b"\r\n");
    let mut parser = RequestParser::new(Limits::default());
    let mut ranges = Vec::new();
    assert_eq!(
        parser.parse(&bytes[..header_end + 10], &mut ranges),
        Ok(ParseOutcome::Incomplete { want: bytes.len() })
    );
    let cuts: Vec<usize> = (0..bytes.len()).step_by(1000).collect();
    let fed = feed(Limits::default(), &bytes, &cuts);
    assert_eq!(
        fed.requests,
        vec![vec![b"SET".to_vec(), b"k".to_vec(), value]]
    );
}

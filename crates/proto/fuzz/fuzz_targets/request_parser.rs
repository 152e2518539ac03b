#![no_main]

use dse_proto::{Limits, ParseOutcome, ProtocolError, RequestParser};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq)]
struct Fed {
    requests: Vec<Vec<Vec<u8>>>,
    error: Option<ProtocolError>,
}

/// Feeds `stream` the way the server does: pieces ending at `cuts`, the unconsumed tail
/// kept and handed back with the next piece.
fn feed(limits: Limits, stream: &[u8], cuts: &[usize]) -> Fed {
    let mut parser = RequestParser::new(limits);
    let mut ranges = Vec::new();
    let mut pending = Vec::new();
    let mut requests = Vec::new();
    let mut from = 0;
    for &to in cuts.iter().chain(std::iter::once(&stream.len())) {
        let to = to.clamp(from, stream.len());
        pending.extend_from_slice(&stream[from..to]);
        from = to;
        loop {
            match parser.parse(&pending, &mut ranges) {
                Ok(ParseOutcome::Complete { consumed }) => {
                    assert!(consumed > 0 && consumed <= pending.len());
                    let args = parser.args(&pending, &ranges);
                    requests.push(args.iter().map(<[u8]>::to_vec).collect());
                    pending.drain(..consumed);
                }
                Ok(ParseOutcome::Empty { consumed }) => {
                    assert!(consumed > 0 && consumed <= pending.len());
                    pending.drain(..consumed);
                }
                Ok(ParseOutcome::Incomplete { want }) => {
                    assert!(want > pending.len());
                    break;
                }
                Err(error) => {
                    return Fed {
                        requests,
                        error: Some(error),
                    };
                }
            }
        }
    }
    Fed {
        requests,
        error: None,
    }
}

fuzz_target!(|data: &[u8]| {
    // First byte: how many cut points follow (two bytes each); the rest is the stream.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 16).min(rest.len() / 2);
    let (cut_bytes, stream) = rest.split_at(n * 2);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();

    let whole = feed(Limits::default(), stream, &[]);
    // Below the inline limit, when an error is found cannot depend on how bytes arrive.
    if stream.len() <= Limits::default().max_inline_len {
        assert_eq!(feed(Limits::default(), stream, &cuts), whole);
    }
    let tiny = Limits {
        max_bulk_len: 64,
        max_args: 8,
        max_inline_len: 32,
    };
    feed(tiny, stream, &cuts);
});

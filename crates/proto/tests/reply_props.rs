//! Properties of the reply encoder and `ReplyParser`: whatever `Reply` writes, in either
//! protocol, `frame_len` finds exactly where it ends and `parse` reads it back.

use dse_proto::{DoubleText, Reply, ReplyParser, Resp, Value};
use proptest::prelude::*;

/// A reply as a command would build it, one `Reply` call per node.
#[derive(Debug, Clone)]
enum Node {
    Ok,
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    BulkParts(Vec<Vec<u8>>),
    BulkInt(i64),
    Null,
    NullArray,
    Bool(bool),
    Double(f64),
    Verbatim(Vec<u8>),
    Array(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Set(Vec<Node>),
    Push(Vec<Node>),
}

fn leaf() -> impl Strategy<Value = Node> {
    prop_oneof![
        Just(Node::Ok),
        "[ -~]{0,16}".prop_map(Node::Simple),
        // Line breaks in an error become spaces; the frame must still be one line.
        "ERR [ -~\r\n]{0,16}".prop_map(Node::Error),
        any::<i64>().prop_map(Node::Int),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(Node::Bulk),
        prop::collection::vec(
            prop::sample::select(b"\r\n$*:+-_0123456789".to_vec()),
            0..20
        )
        .prop_map(Node::Bulk),
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..4)
            .prop_map(Node::BulkParts),
        any::<i64>().prop_map(Node::BulkInt),
        Just(Node::Null),
        Just(Node::NullArray),
        any::<bool>().prop_map(Node::Bool),
        prop_oneof![
            any::<f64>().prop_filter("NaN is not equal to itself", |d| !d.is_nan()),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(1e300),
            Just(1.25e-7),
        ]
        .prop_map(Node::Double),
        prop::collection::vec(any::<u8>(), 0..30).prop_map(Node::Verbatim),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Array),
            prop::collection::vec((inner.clone(), inner.clone()), 0..4).prop_map(Node::Map),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Node::Set),
            prop::collection::vec(inner, 0..6).prop_map(Node::Push),
        ]
    })
}

fn encode(out: &mut Reply<'_>, n: &Node) {
    match n {
        Node::Ok => out.ok(),
        Node::Simple(s) => out.simple(s),
        Node::Error(s) => out.error(s),
        Node::Int(i) => out.int(*i),
        Node::Bulk(b) => out.bulk(b),
        Node::BulkParts(parts) => {
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            out.bulk_parts(&parts);
        }
        Node::BulkInt(i) => out.bulk_int(*i),
        Node::Null => out.null(),
        Node::NullArray => out.null_array(),
        Node::Bool(b) => out.bool(*b),
        Node::Double(d) => out.double(*d),
        Node::Verbatim(t) => out.verbatim(t),
        Node::Array(items) => {
            out.array(items.len());
            items.iter().for_each(|i| encode(out, i));
        }
        Node::Map(pairs) => {
            out.map(pairs.len());
            for (k, v) in pairs {
                encode(out, k);
                encode(out, v);
            }
        }
        Node::Set(items) => {
            out.set(items.len());
            items.iter().for_each(|i| encode(out, i));
        }
        Node::Push(items) => {
            out.push(items.len());
            items.iter().for_each(|i| encode(out, i));
        }
    }
}

/// What a client reading `n` in protocol `resp` must see.
fn expected(n: &Node, resp: Resp) -> Value {
    let v3 = resp == Resp::V3;
    let all = |items: &[Node]| items.iter().map(|i| expected(i, resp)).collect::<Vec<_>>();
    match n {
        Node::Ok => Value::Simple(b"OK".to_vec()),
        Node::Simple(s) => Value::Simple(s.as_bytes().to_vec()),
        Node::Error(s) => Value::Error(s.replace(['\r', '\n'], " ").into_bytes()),
        Node::Int(i) => Value::Int(*i),
        Node::Bulk(b) => Value::Bulk(b.clone()),
        Node::BulkParts(parts) => Value::Bulk(parts.concat()),
        Node::BulkInt(i) => Value::Bulk(i.to_string().into_bytes()),
        Node::Null | Node::NullArray => Value::Nil,
        Node::Bool(b) if v3 => Value::Bool(*b),
        Node::Bool(b) => Value::Int(*b as i64),
        Node::Double(d) if v3 => Value::Double(*d),
        Node::Double(d) => {
            let mut t = DoubleText::default();
            t.format(*d);
            Value::Bulk(t.as_bytes().to_vec())
        }
        Node::Verbatim(t) if v3 => Value::Verbatim([&b"txt:"[..], t].concat()),
        Node::Verbatim(t) => Value::Bulk(t.clone()),
        Node::Array(items) => Value::Array(all(items)),
        Node::Map(pairs) if v3 => Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (expected(k, resp), expected(v, resp)))
                .collect(),
        ),
        Node::Map(pairs) => Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [expected(k, resp), expected(v, resp)])
                .collect(),
        ),
        Node::Set(items) if v3 => Value::Set(all(items)),
        Node::Push(items) if v3 => Value::Push(all(items)),
        Node::Set(items) | Node::Push(items) => Value::Array(all(items)),
    }
}

fn resp() -> impl Strategy<Value = Resp> {
    prop_oneof![Just(Resp::V2), Just(Resp::V3)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Several replies back to back: each frame ends exactly where its encoding ends,
    /// decodes to what was encoded, and no strict prefix of it is a frame.
    #[test]
    fn encoded_replies_are_framed_exactly(nodes in prop::collection::vec(node(), 1..5), resp in resp()) {
        let mut buf = Vec::new();
        let mut ends = Vec::new();
        {
            let mut out = Reply::new(&mut buf, resp);
            for n in &nodes {
                encode(&mut out, n);
                ends.push(out.len());
            }
        }
        let mut start = 0;
        for (n, &end) in nodes.iter().zip(&ends) {
            let rest = &buf[start..];
            prop_assert_eq!(ReplyParser::frame_len(rest), Ok(Some(end - start)));
            let (value, len) = ReplyParser::parse(rest).unwrap().unwrap();
            prop_assert_eq!(len, end - start);
            prop_assert_eq!(value, expected(n, resp));
            start = end;
        }
        let first = ends[0];
        for cut in 0..first {
            prop_assert_eq!(ReplyParser::frame_len(&buf[..cut]), Ok(None), "prefix of {}", cut);
        }
    }

    /// Random bytes: `frame_len` never panics and never reports more than it was given.
    #[test]
    fn frame_len_on_garbage(bytes in prop::collection::vec(
        prop_oneof![
            2 => any::<u8>(),
            3 => prop::sample::select(b"*%~>|$=!+-:_,#(\r\n0123456789-".to_vec()),
        ],
        0..200,
    )) {
        if let Ok(Some(n)) = ReplyParser::frame_len(&bytes) {
            prop_assert!(n <= bytes.len());
            prop_assert_eq!(ReplyParser::frame_len(&bytes[..n]), Ok(Some(n)));
        }
    }
}

#[test]
fn absurd_counts_do_not_overflow() {
    let deep = b"*9223372036854775807\r\n".repeat(4);
    assert_eq!(ReplyParser::frame_len(&deep), Ok(None));
    let attr = b"|9223372036854775807\r\n%9223372036854775807\r\n".repeat(3);
    assert_eq!(ReplyParser::frame_len(&attr), Ok(None));
    assert_eq!(
        ReplyParser::frame_len(b"$9223372036854775807\r\nab\r\n"),
        Ok(None)
    );
}

//! The Redis wire protocol, without I/O.
//!
//! - [`RequestParser`] turns the bytes a client sent into requests. Arguments are
//!   [`Range`](std::ops::Range)s into the caller's read buffer, so the common case copies
//!   and allocates nothing per argument. The parser is resumable: a request that arrives in
//!   pieces is not re-scanned from its start each time more bytes come in.
//! - [`Reply`] appends RESP2 or RESP3 replies to an output buffer; the same calls produce
//!   either protocol, so commands are written once.
//! - [`ReplyParser`] reads replies (for clients of our own: the benchmark tools and, later,
//!   the cluster's forwarding path).

mod reply;
mod reply_parse;
mod request;

pub use reply::{DoubleText, Reply, Resp};
pub use reply_parse::{ReplyParser, Value};
pub use request::{Args, Limits, ParseOutcome, ProtocolError, RequestParser};

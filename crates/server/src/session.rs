//! Per-connection state.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use dse_net::ConnRef;
use dse_proto::{RequestParser, Resp};

use crate::clients::ClientMeta;
use crate::cmd::transactions::Transaction;

/// The parser and its argument ranges, kept apart from [`Session`] so a command can
/// borrow the session mutably while its arguments borrow these.
pub struct Framing {
    pub parser: RequestParser,
    pub ranges: Vec<Range<usize>>,
    /// The configuration generation the parser's limits were taken from.
    pub limits_gen: u64,
}

/// What a connection remembers between commands.
pub struct Session {
    pub conn: ConnRef,
    pub resp: Resp,
    pub meta: Arc<ClientMeta>,
    /// Close once the replies so far are sent (QUIT, CLIENT KILL of oneself).
    pub close_after_reply: bool,
    /// Replies waiting for the log to acknowledge the writes (or reads) they depend on.
    pub held: HeldReplies,
    /// Input was paused because too many replies are held.
    pub paused_for_log: bool,
    /// Listed for the end of this loop's turn (at most once while true).
    pub in_turn: bool,
    /// Registered in this loop's `LogWaiters` (exactly one entry while true).
    pub log_waiting: bool,
    /// QUIT (or a protocol error) arrived while replies were held: close once released.
    pub close_when_released: bool,
    /// MULTI queue and WATCHed keys (dropping it unwatches them).
    pub tx: Transaction,
    /// A blocked command waiting for its keys, or a command held by CLIENT PAUSE.
    pub block: crate::blocked::ClientBlock,
    /// CLIENT REPLY: which replies are dropped.
    pub reply_mode: ReplyMode,
}

/// CLIENT REPLY's state, as Redis's client flags: replies are dropped while `off` or
/// `skip` is set; `skip` lasts one command, `skip_next` becomes `skip` after the command
/// that set it (CLIENT REPLY SKIP itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyMode {
    pub off: bool,
    pub skip: bool,
    pub skip_next: bool,
}

impl ReplyMode {
    /// Replies are sent normally now and after the next command.
    #[inline]
    pub fn is_on(&self) -> bool {
        *self == ReplyMode::default()
    }

    /// The reply being written now is dropped.
    pub fn drops(&self) -> bool {
        self.off || self.skip
    }

    /// A command ended, its reply written to `out` from `mark`: drops the reply if it
    /// must; SKIP lasted for this command, and CLIENT REPLY SKIP starts skipping.
    pub fn command_done(&mut self, out: &mut dse_proto::Reply<'_>, mark: usize) {
        if self.drops() {
            out.truncate(mark);
        }
        self.skip = std::mem::take(&mut self.skip_next);
    }
}

impl Session {
    pub fn new(conn: ConnRef, meta: Arc<ClientMeta>) -> Session {
        Session {
            conn,
            resp: Resp::V2,
            meta,
            close_after_reply: false,
            held: HeldReplies::default(),
            paused_for_log: false,
            in_turn: false,
            log_waiting: false,
            close_when_released: false,
            tx: Transaction::default(),
            block: Default::default(),
            reply_mode: ReplyMode::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.conn.id
    }

    /// Back to a fresh connection's state, as RESET does.
    pub fn reset(&mut self) {
        self.tx.discard();
        self.reply_mode = ReplyMode::default();
        self.resp = Resp::V2;
        self.meta
            .resp
            .store(2, std::sync::atomic::Ordering::Relaxed);
        self.meta.names.lock().name.clear();
        self.meta
            .no_evict
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.meta
            .no_touch
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Replies held until the log acknowledges an LSN: one byte buffer, reused, and the end
/// of each batch's replies with the LSN it waits for. Later replies queue behind earlier
/// ones, so the order on the wire never changes.
#[derive(Default)]
pub struct HeldReplies {
    bytes: Vec<u8>,
    /// (LSN, end offset in `bytes`), in order; LSNs never decrease.
    marks: VecDeque<(dse_engine::Lsn, usize)>,
}

/// A held-reply buffer larger than this is given back once empty.
const KEEP_HELD: usize = 64 * 1024;

impl HeldReplies {
    pub fn is_empty(&self) -> bool {
        self.marks.is_empty()
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The LSN the oldest held reply waits for.
    pub fn first_lsn(&self) -> Option<dse_engine::Lsn> {
        self.marks.front().map(|&(lsn, _)| lsn)
    }

    /// Holds `replies` until the log acknowledges `lsn`.
    pub fn push(&mut self, lsn: dse_engine::Lsn, replies: &[u8]) {
        let lsn = lsn.max(self.marks.back().map_or(0, |&(l, _)| l));
        self.bytes.extend_from_slice(replies);
        self.marks.push_back((lsn, self.bytes.len()));
    }

    /// Moves the replies the log has acknowledged (up to `acked`) to `out`, in order.
    pub fn release(&mut self, acked: dse_engine::Lsn, out: &mut Vec<u8>) {
        let mut end = 0;
        while let Some(&(lsn, at)) = self.marks.front() {
            if lsn > acked {
                break;
            }
            end = at;
            self.marks.pop_front();
        }
        if end == 0 {
            return;
        }
        out.extend_from_slice(&self.bytes[..end]);
        self.bytes.drain(..end);
        for m in self.marks.iter_mut() {
            m.1 -= end;
        }
        if self.bytes.is_empty() && self.bytes.capacity() > KEEP_HELD {
            self.bytes = Vec::new();
        }
    }
}

/// The handler's per-connection state.
pub struct Conn {
    pub framing: Framing,
    pub session: Session,
}

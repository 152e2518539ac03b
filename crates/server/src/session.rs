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
    /// Forwards started by the current batch: (offset in the output where their replies
    /// belong, forward id).
    pub remotes: Vec<(usize, u64)>,
    /// The current batch has a forward frame open (cluster).
    pub forwarding: bool,
    /// A cluster-bus session running other nodes' forwards: it never forwards itself.
    pub internal: bool,
    /// Registered in this loop's `LogWaiters` (exactly one entry while true).
    pub log_waiting: bool,
    /// QUIT (or a protocol error) arrived while replies were held: close once released.
    pub close_when_released: bool,
    /// MULTI queue and WATCHed keys (dropping it unwatches them).
    pub tx: Transaction,
    /// READONLY (cluster mode): reads may run on slots this node holds a replica of.
    pub readonly: bool,
    /// Listed in this loop's replication waiters (held replies waiting for replicas, or
    /// WAIT); at most once while true.
    pub repl_waiting: bool,
    /// A WAIT blocking this connection (its input is paused until it is answered).
    pub wait: Option<WaitCall>,
    /// Cluster mode: the highest LSN the connection's commands wrote or read (WAIT).
    pub last_lsn: dse_engine::Lsn,
    /// A blocked command waiting for its keys, or a command held by CLIENT PAUSE.
    pub block: crate::blocked::ClientBlock,
    /// CLIENT REPLY: which replies are dropped.
    pub reply_mode: ReplyMode,
}

/// A WAIT in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WaitCall {
    /// What the replicas must acknowledge.
    pub lsn: dse_engine::Lsn,
    pub replicas: usize,
    /// Milliseconds since the epoch; 0 waits for ever.
    pub deadline: u64,
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
            remotes: Vec::new(),
            forwarding: false,
            internal: false,
            log_waiting: false,
            close_when_released: false,
            tx: Transaction::default(),
            readonly: false,
            repl_waiting: false,
            wait: None,
            last_lsn: 0,
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
        self.readonly = false;
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

/// Replies held back, in order: replies waiting for the log to acknowledge an LSN, and
/// places for replies another node will send (forwarded commands). One byte buffer,
/// reused, and marks dividing it; a later reply never overtakes an earlier one.
#[derive(Default)]
pub struct HeldReplies {
    bytes: Vec<u8>,
    marks: VecDeque<Mark>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    /// End offset in `bytes` of what this mark holds.
    end: usize,
    wait: Wait,
    /// Replicas (bit per node index) that must acknowledge the run's LSN too (cluster
    /// mode's write quorum), and since when it is held (ms since the epoch).
    replicas: u64,
    since: u64,
}

/// What a run of held bytes waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The log to acknowledge this LSN.
    Log(dse_engine::Lsn),
    /// The replies of forward `id` (the run is empty until they arrive), and then the log
    /// to acknowledge `lsn` (a split command's local part may have written).
    Remote {
        id: u64,
        done: bool,
        lsn: dse_engine::Lsn,
    },
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

    /// What the oldest held run waits for.
    pub fn front(&self) -> Option<Wait> {
        self.marks.front().map(|m| m.wait)
    }

    /// The LSN the oldest held reply waits for, if it waits for the log (and not for
    /// another node).
    pub fn first_lsn(&self) -> Option<dse_engine::Lsn> {
        match self.front()? {
            Wait::Log(lsn)
            | Wait::Remote {
                done: true, lsn, ..
            } => Some(lsn),
            Wait::Remote { done: false, .. } => None,
        }
    }

    fn last_lsn(&self) -> dse_engine::Lsn {
        self.marks
            .iter()
            .rev()
            .find_map(|m| match m.wait {
                Wait::Log(l) => Some(l),
                Wait::Remote { .. } => None,
            })
            .unwrap_or(0)
    }

    /// Holds `replies` until the log acknowledges `lsn`, with the replies of the forwards
    /// `remotes` (offset in `replies` where each belongs, its id) to be put in place when
    /// they come.
    pub fn push(&mut self, lsn: dse_engine::Lsn, replies: &[u8], remotes: &[(usize, u64)]) {
        self.push_quorum(lsn, 0, 0, replies, remotes);
    }

    /// [`HeldReplies::push`] for a batch whose writes the replicas of `replicas` must
    /// acknowledge too; `now` is when it started waiting.
    pub fn push_quorum(
        &mut self,
        lsn: dse_engine::Lsn,
        replicas: u64,
        now: u64,
        replies: &[u8],
        remotes: &[(usize, u64)],
    ) {
        let mark = |end, wait| Mark {
            end,
            wait,
            replicas,
            since: now,
        };
        let lsn = lsn.max(self.last_lsn());
        let mut from = 0;
        for &(at, id) in remotes {
            if at > from {
                self.bytes.extend_from_slice(&replies[from..at]);
                self.marks.push_back(mark(self.bytes.len(), Wait::Log(lsn)));
                from = at;
            }
            self.marks.push_back(mark(
                self.bytes.len(),
                Wait::Remote {
                    id,
                    done: false,
                    lsn,
                },
            ));
        }
        if from < replies.len() {
            self.bytes.extend_from_slice(&replies[from..]);
            self.marks.push_back(mark(self.bytes.len(), Wait::Log(lsn)));
        }
    }

    /// Puts the replies of forward `id` in their place. False when no such place (a
    /// reply for a forward this connection no longer waits for).
    pub fn fill(&mut self, id: u64, replies: &[u8]) -> bool {
        let Some(i) = self
            .marks
            .iter()
            .position(|m| matches!(m.wait, Wait::Remote { id: mid, done: false, .. } if mid == id))
        else {
            return false;
        };
        let at = if i == 0 { 0 } else { self.marks[i - 1].end };
        self.bytes.splice(at..at, replies.iter().copied());
        for m in self.marks.iter_mut().skip(i) {
            m.end += replies.len();
        }
        if let Wait::Remote { done, .. } = &mut self.marks[i].wait {
            *done = true;
        }
        true
    }

    /// Moves what can go (log acknowledged up to `acked`, forwards answered) to `out`, in
    /// order, stopping at the first run that must still wait.
    pub fn release(&mut self, acked: dse_engine::Lsn, out: &mut Vec<u8>) {
        self.release_quorum(acked, |_, _| true, out);
    }

    /// [`HeldReplies::release`] where a run waiting for replicas also needs
    /// `replicas_have(lsn, replicas)`.
    pub fn release_quorum(
        &mut self,
        acked: dse_engine::Lsn,
        replicas_have: impl Fn(dse_engine::Lsn, u64) -> bool,
        out: &mut Vec<u8>,
    ) {
        let mut end = 0;
        while let Some(m) = self.marks.front() {
            let ready = match m.wait {
                Wait::Log(lsn) => lsn <= acked,
                Wait::Remote { done, lsn, .. } => done && lsn <= acked,
            } && (m.replicas == 0 || replicas_have(m.lsn(), m.replicas));
            if !ready {
                break;
            }
            end = m.end;
            self.marks.pop_front();
        }
        if end == 0 {
            return;
        }
        out.extend_from_slice(&self.bytes[..end]);
        self.bytes.drain(..end);
        for m in self.marks.iter_mut() {
            m.end -= end;
        }
        if self.bytes.is_empty() && self.bytes.capacity() > KEEP_HELD {
            self.bytes = Vec::new();
        }
    }
}

impl Mark {
    fn lsn(&self) -> dse_engine::Lsn {
        match self.wait {
            Wait::Log(lsn) | Wait::Remote { lsn, .. } => lsn,
        }
    }
}

impl HeldReplies {
    /// The LSN and replicas the oldest run waits for.
    pub fn front_quorum(&self) -> Option<(dse_engine::Lsn, u64)> {
        self.marks.front().map(|m| (m.lsn(), m.replicas))
    }

    /// Whether the oldest run waits for replicas (and nothing else).
    pub fn front_waits_for_replicas(&self, acked: dse_engine::Lsn) -> bool {
        self.marks.front().is_some_and(|m| {
            m.replicas != 0
                && match m.wait {
                    Wait::Log(lsn) => lsn <= acked,
                    Wait::Remote { done, lsn, .. } => done && lsn <= acked,
                }
        })
    }

    /// Runs that have waited for replicas since before `deadline` are replaced by what
    /// `rewrite` makes of them (the same replies as errors); returns whether any were.
    pub fn expire_quorum(&mut self, deadline: u64, rewrite: impl Fn(&[u8]) -> Vec<u8>) -> bool {
        self.expire_quorum_where(|since, _, _| since <= deadline, rewrite)
    }

    /// Runs waiting for replicas for which `doomed(since, lsn, replicas)` holds are
    /// replaced by what `rewrite` makes of them; returns whether any were.
    pub fn expire_quorum_where(
        &mut self,
        doomed: impl Fn(u64, dse_engine::Lsn, u64) -> bool,
        rewrite: impl Fn(&[u8]) -> Vec<u8>,
    ) -> bool {
        let mut changed = false;
        for i in 0..self.marks.len() {
            let m = self.marks[i];
            if m.replicas == 0 || !doomed(m.since, m.lsn(), m.replicas) {
                continue;
            }
            if matches!(m.wait, Wait::Remote { done: false, .. }) {
                continue;
            }
            let start = if i == 0 { 0 } else { self.marks[i - 1].end };
            let replacement = rewrite(&self.bytes[start..m.end]);
            let delta = replacement.len() as isize - (m.end - start) as isize;
            self.bytes.splice(start..m.end, replacement);
            for later in self.marks.iter_mut().skip(i) {
                later.end = later.end.wrapping_add_signed(delta);
            }
            self.marks[i].replicas = 0;
            changed = true;
        }
        changed
    }
}

/// `replies` (whole RESP replies) each replaced by the error `error`.
pub fn replies_as_errors(replies: &[u8], error: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < replies.len() {
        match dse_proto::ReplyParser::frame_len(&replies[at..]) {
            Ok(Some(len)) if len > 0 => {
                at += len;
                out.extend_from_slice(error);
            }
            _ => break,
        }
    }
    out
}

/// The handler's per-connection state.
pub struct Conn {
    pub framing: Framing,
    pub session: Session,
    /// A cluster-bus connection (to or from another node) rather than a client.
    pub bus: Option<Box<crate::forward::BusConn>>,
}

#[cfg(test)]
mod held_tests {
    use super::*;

    #[test]
    fn remote_replies_keep_their_place() {
        let mut h = HeldReplies::default();
        // "+A" local, then a forward, then "+C" local; then another forward at the end.
        h.push(5, b"+A\r\n+C\r\n", &[(4, 1), (8, 2)]);
        let mut out = Vec::new();
        h.release(10, &mut out);
        assert_eq!(out, b"+A\r\n", "stops at the unanswered forward");
        assert!(h.fill(2, b":2\r\n"));
        h.release(10, &mut out);
        assert_eq!(out, b"+A\r\n", "forward 1 still first in line");
        assert!(h.fill(1, b"$1\r\nB\r\n"));
        h.release(4, &mut out);
        assert_eq!(
            out, b"+A\r\n",
            "a forward's place also waits for its batch's log"
        );
        h.release(5, &mut out);
        assert_eq!(out, b"+A\r\n$1\r\nB\r\n+C\r\n:2\r\n");
        assert!(h.is_empty());
        assert!(!h.fill(3, b"x"));
    }

    #[test]
    fn runs_wait_for_their_replicas_and_time_out_in_place() {
        let mut h = HeldReplies::default();
        h.push_quorum(5, 0b10, 1000, b"+OK\r\n:1\r\n", &[]);
        h.push_quorum(6, 0, 0, b"$1\r\nx\r\n", &[]);
        h.push_quorum(7, 0b10, 2000, b"+OK\r\n", &[]);
        let mut out = Vec::new();
        h.release_quorum(10, |_, _| false, &mut out);
        assert!(out.is_empty(), "the first run waits for node 1");
        assert_eq!(h.front_quorum(), Some((5, 0b10)));
        assert!(h.front_waits_for_replicas(10));
        assert!(!h.front_waits_for_replicas(4), "the log comes first");
        // Past the first run's deadline only: its two replies become errors.
        assert!(h.expire_quorum(1500, |run| replies_as_errors(run, b"-E\r\n")));
        h.release_quorum(10, |lsn, _| lsn < 7, &mut out);
        assert_eq!(out, b"-E\r\n-E\r\n$1\r\nx\r\n");
        h.release_quorum(10, |_, mask| mask == 0b10, &mut out);
        assert_eq!(out, b"-E\r\n-E\r\n$1\r\nx\r\n+OK\r\n");
        assert!(h.is_empty());
        assert!(!h.expire_quorum(u64::MAX, |_| Vec::new()));
    }
}

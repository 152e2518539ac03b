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
        }
    }

    pub fn id(&self) -> u64 {
        self.conn.id
    }

    /// Back to a fresh connection's state, as RESET does.
    pub fn reset(&mut self) {
        self.tx.discard();
        self.readonly = false;
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
        let lsn = lsn.max(self.last_lsn());
        let mut from = 0;
        for &(at, id) in remotes {
            if at > from {
                self.bytes.extend_from_slice(&replies[from..at]);
                self.marks.push_back(Mark {
                    end: self.bytes.len(),
                    wait: Wait::Log(lsn),
                });
                from = at;
            }
            self.marks.push_back(Mark {
                end: self.bytes.len(),
                wait: Wait::Remote {
                    id,
                    done: false,
                    lsn,
                },
            });
        }
        if from < replies.len() {
            self.bytes.extend_from_slice(&replies[from..]);
            self.marks.push_back(Mark {
                end: self.bytes.len(),
                wait: Wait::Log(lsn),
            });
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
        let mut end = 0;
        while let Some(m) = self.marks.front() {
            let ready = match m.wait {
                Wait::Log(lsn) => lsn <= acked,
                Wait::Remote { done, lsn, .. } => done && lsn <= acked,
            };
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
}

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
    /// Replies waiting for the log to acknowledge the writes (or reads) they depend on,
    /// oldest first; later replies queue behind them so the order never changes.
    pub held: VecDeque<(dse_engine::Lsn, Vec<u8>)>,
    pub held_bytes: usize,
    /// Input was paused because too many replies are held.
    pub paused_for_log: bool,
    /// Registered in this loop's `LogWaiters` (exactly one entry while true).
    pub log_waiting: bool,
    /// QUIT (or a protocol error) arrived while replies were held: close once released.
    pub close_when_released: bool,
    /// MULTI queue and WATCHed keys (dropping it unwatches them).
    pub tx: Transaction,
}

impl Session {
    pub fn new(conn: ConnRef, meta: Arc<ClientMeta>) -> Session {
        Session {
            conn,
            resp: Resp::V2,
            meta,
            close_after_reply: false,
            held: Default::default(),
            held_bytes: 0,
            paused_for_log: false,
            log_waiting: false,
            close_when_released: false,
            tx: Transaction::default(),
        }
    }

    pub fn id(&self) -> u64 {
        self.conn.id
    }

    /// Back to a fresh connection's state, as RESET does.
    pub fn reset(&mut self) {
        self.tx.discard();
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

/// The handler's per-connection state.
pub struct Conn {
    pub framing: Framing,
    pub session: Session,
}

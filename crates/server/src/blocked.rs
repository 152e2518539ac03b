//! Blocked clients (BLPOP, BLMOVE, BZPOPMIN, ...) and clients held by CLIENT PAUSE.
//!
//! A blocking command that finds none of its keys holding data parks its client: the
//! command (its arguments copied) stays in the client's session ([`ClientBlock`]), the
//! client is listed under each key in a registry shared by every loop ([`Blocking`]),
//! and its input is paused (`Io::pause`) so nothing it sends runs meanwhile.
//!
//! Waking up:
//! - The store tells us of every write while anyone is blocked (a `WriteListener`;
//!   writes pay one relaxed load while nobody is). A push to a list, members added to a
//!   sorted set, or such a value stored whole under a key someone waits on sends a
//!   [`Note::Ready`] to the loop of the first client waiting on that key for that type.
//! - That loop runs the blocked commands of the key's waiters again, in the order they
//!   blocked (a sequence number taken when they registered), with its EXEC gate held,
//!   exactly as they run the first time. A waiter of another loop gets the note passed
//!   on, with the position reached, and goes on from there: waiters are always served
//!   in order, whichever loop owns them. A waiter whose key holds the other type is
//!   skipped (Redis 7.2 wakes only clients blocked for the key's type), and the scan
//!   stops once the key is gone. A command that finds its key emptied by someone else
//!   meanwhile stays blocked, in its place.
//! - Registering does not hold shard locks: a client registers first and then looks at
//!   its keys once more. A write either sees the registration (the store's listener runs
//!   under the shard lock of the key) or happened before that second look, which then
//!   finds its data.
//!
//! Everything about one blocked client (serving it, its timeout, CLIENT UNBLOCK, its
//! disconnection) happens on its own loop, so it cannot be served twice: other threads
//! only read the registry and send notes. A reply of a served command waits for the log
//! like any other (held in the session, released at the end of the loop's turn).
//!
//! CLIENT PAUSE: while a pause applies, a command it covers is not consumed; the client's
//! input is paused with the command still in it, and runs it when the pause ends (each
//! loop's tick, or at once on CLIENT UNPAUSE).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use dse_engine::{Effect, Lsn, Value, WriteListener};
use dse_net::{ConnMut, ConnRef, Conns};
use dse_proto::{Args, Reply};
use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::command::{CmdError, CmdResult, Ctx, flag};
use crate::long_double::{LongDouble, Parsed};
use crate::server::{Msg, Server, unix_ms};
use crate::session::{Conn, Session};

/// The type of value a blocked client waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    List,
    ZSet,
}

impl Kind {
    fn of(v: &Value) -> Option<Kind> {
        match v {
            Value::List(_) => Some(Kind::List),
            Value::ZSet(_) => Some(Kind::ZSet),
            _ => None,
        }
    }
}

/// What a blocking command answers inside EXEC, where it may not block: what it
/// answers when nothing is there. (A timeout, or CLIENT UNBLOCK, answers a nil array
/// whatever the command: Redis's `replyToBlockedClientTimedOut`.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// `*-1` (`_` in RESP3): BLPOP, BRPOP, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP.
    NullArray,
    /// `$-1` (`_` in RESP3): BLMOVE, BRPOPLPUSH.
    Null,
}

impl Denied {
    fn write(self, out: &mut Reply<'_>) {
        match self {
            Denied::NullArray => out.null_array(),
            Denied::Null => out.null(),
        }
    }
}

/// Messages to a loop about its blocked and paused clients.
#[derive(Debug)]
pub enum Note {
    /// `key` may hold data: serve its waiters registered after `after`, in order.
    Ready { key: Box<[u8]>, after: u64 },
    /// CLIENT UNBLOCK: end this client's block with the timeout reply, or an error.
    Unblock { conn: ConnRef, error: bool },
    /// A CLIENT PAUSE ended or changed: run the commands it held again.
    Resume,
}

const UNBLOCKED: &str = "UNBLOCKED client unblocked via CLIENT UNBLOCK";

/// A client waiting on a key.
#[derive(Clone, Copy, Debug)]
struct Waiter {
    /// Order of blocking: lower is served first.
    seq: u64,
    conn: ConnRef,
    kind: Kind,
}

/// Waiters by key, each list in `seq` order.
type Registry = HashMap<Vec<u8>, Vec<Waiter>, foldhash::fast::RandomState>;

/// Per loop: its blocked and paused clients. Only the loop's own thread touches them.
#[derive(Default)]
struct LoopClients {
    /// Blocked on keys, with the deadline (ms since the epoch; 0: none).
    blocked: Mutex<Vec<(ConnRef, u64)>>,
    /// Holding a command back until a CLIENT PAUSE ends.
    postponed: Mutex<Vec<ConnRef>>,
}

/// CLIENT PAUSE's state.
#[derive(Default)]
struct Pause {
    /// Read before every command: the common case costs one relaxed load.
    active: AtomicBool,
    /// (end in ms since the epoch, every command rather than only writes)
    state: Mutex<(u64, bool)>,
}

/// The registry of blocked clients and the CLIENT PAUSE state, shared by every loop.
pub struct Blocking {
    /// By the store shard of the key (so a busy key's lock is rarely shared).
    keys: Box<[Mutex<Registry>]>,
    next_seq: AtomicU64,
    /// Clients blocked on keys (INFO blocked_clients).
    blocked: AtomicUsize,
    loops: Box<[LoopClients]>,
    pause: Pause,
}

/// A client's blocking state, kept in its session.
#[derive(Default)]
pub struct ClientBlock {
    /// The blocked command, while the client waits for one of its keys.
    waiting: Option<Box<Waiting>>,
    rerun: Rerun,
    /// The next command waits for the end of a CLIENT PAUSE.
    postponed: bool,
}

impl ClientBlock {
    /// The client's input must stay paused: it is blocked, or held by CLIENT PAUSE.
    pub fn holds_input(&self) -> bool {
        self.waiting.is_some() || self.postponed
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Rerun {
    #[default]
    No,
    /// A blocked command runs again: if it finds nothing, it stays blocked.
    Running,
    StillEmpty,
}

/// A blocked command: what it runs again and when it gives up.
struct Waiting {
    /// Table index of the command.
    cmd: usize,
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// Positions of the keys among the arguments.
    keys: Range<usize>,
    seq: u64,
    /// CLIENT REPLY OFF or SKIP applied to the command: its reply is dropped.
    mute: bool,
}

impl Waiting {
    fn args(&self) -> Args<'_> {
        Args::from_parts(&self.bytes, &self.ranges)
    }

    fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.keys
            .clone()
            .map(|i| &self.bytes[self.ranges[i].clone()])
    }
}

/// What a blocking command waits for.
pub(crate) struct Wait {
    /// Positions of the keys among the arguments.
    pub keys: Range<usize>,
    pub kind: Kind,
    /// Milliseconds, 0 for no timeout (see [`parse_timeout`]).
    pub timeout: u64,
    /// The answer inside EXEC.
    pub denied: Denied,
}

/// Reads a blocking command's timeout as Redis does: seconds as a (long) double,
/// rounded up to milliseconds; 0 means no timeout.
pub(crate) fn parse_timeout(a: &[u8], now: u64) -> Result<u64, CmdError> {
    const OUT_OF_RANGE: CmdError = CmdError::Static("ERR timeout is out of range");
    const NEGATIVE: CmdError = CmdError::Static("ERR timeout is negative");
    match LongDouble::parse(a) {
        None => {
            return Err(CmdError::Static(
                "ERR timeout is not a float or out of range",
            ));
        }
        // `(long long) ceill(-inf)` is the most negative value on the machines Redis
        // runs on.
        Some(Parsed::Infinite) if a.first() == Some(&b'-') => return Err(NEGATIVE),
        Some(Parsed::Infinite) => return Err(OUT_OF_RANGE),
        Some(Parsed::Finite(_)) => {}
    }
    // The same text as a double: beyond the double range the answer is the same,
    // except for a positive value too small for a double, which rounds up to 1 ms.
    let (secs, _, range_error) = crate::cmd::zsets::strtod(a);
    if range_error && secs == 0.0 && a.first() != Some(&b'-') {
        return Ok(1);
    }
    let ms = secs * 1000.0;
    if ms > i64::MAX as f64 {
        return Err(OUT_OF_RANGE);
    }
    let ms = ms.ceil();
    if ms < 0.0 {
        return Err(NEGATIVE);
    }
    let ms = ms as u64;
    if ms > (i64::MAX as u64).saturating_sub(now) {
        return Err(OUT_OF_RANGE);
    }
    Ok(ms)
}

/// Runs a blocking command: `attempt` pops (and replies) if any of the keys has data,
/// returning true, or does nothing and returns false. When it finds nothing the client
/// blocks on `wait.keys`; inside EXEC it answers `wait.denied` instead. Run again for a
/// blocked client (its key got data), a command that still finds nothing stays blocked.
pub(crate) fn serve_or_block(
    ctx: &mut Ctx,
    a: Args,
    wait: Wait,
    mut attempt: impl FnMut(&mut Ctx) -> Result<bool, CmdError>,
) -> CmdResult {
    if attempt(ctx)? {
        return Ok(());
    }
    if ctx.sess.block.rerun == Rerun::Running {
        ctx.sess.block.rerun = Rerun::StillEmpty;
        return Ok(());
    }
    // A forward from another node shares its bus link with every other forward: a
    // block there would stall them all, so it answers as inside EXEC (README: cluster).
    if ctx.sess.tx.in_exec() || ctx.sess.internal {
        wait.denied.write(ctx.out);
        return Ok(());
    }
    let srv = ctx.srv;
    let b = &srv.blocking;
    let seq = b.register(
        srv,
        ctx.sess.conn,
        wait.keys.clone().map(|i| &a[i]),
        wait.kind,
    );
    // A write between the first look and the registration did not see us: look again.
    match attempt(ctx) {
        Ok(false) => {}
        done => {
            b.unregister(srv, seq, wait.keys.clone().map(|i| &a[i]));
            return done.map(|_| ());
        }
    }
    let mut bytes = Vec::with_capacity(a.iter().map(<[u8]>::len).sum());
    let mut ranges = Vec::with_capacity(a.len());
    for arg in a.iter() {
        let start = bytes.len();
        bytes.extend_from_slice(arg);
        ranges.push(start..bytes.len());
    }
    let deadline = match wait.timeout {
        0 => 0,
        ms => ctx.now.saturating_add(ms),
    };
    ctx.sess.block.waiting = Some(Box::new(Waiting {
        cmd: ctx.cmd,
        bytes,
        ranges,
        keys: wait.keys,
        seq,
        mute: ctx.sess.reply_mode.drops(),
    }));
    b.loops[ctx.loop_index]
        .blocked
        .lock()
        .push((ctx.sess.conn, deadline));
    ctx.sess.meta.blocked.store(true, Ordering::Relaxed);
    b.blocked.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Tells [`Blocking`] of the writes that may give blocked clients data.
struct Listener(Weak<Server>);

impl WriteListener for Listener {
    fn written(&self, effects: &[Effect<'_>]) {
        let Some(srv) = self.0.upgrade() else {
            return;
        };
        for e in effects {
            let (key, kind) = match e {
                Effect::ListPush { key, .. } => (*key, Kind::List),
                Effect::ZAdd { key, .. } => (*key, Kind::ZSet),
                Effect::SetValue { key, value, .. } => match Kind::of(value) {
                    Some(kind) => (*key, kind),
                    None => continue,
                },
                _ => continue,
            };
            srv.blocking.signal(&srv, key, kind);
        }
    }
}

/// Connects the store's writes to the blocked clients of `srv`.
pub fn install(srv: &Arc<Server>) {
    srv.store
        .set_write_listener(Box::new(Listener(Arc::downgrade(srv))));
}

impl Blocking {
    pub fn new(loops: usize, shards: usize) -> Blocking {
        Blocking {
            keys: (0..shards.max(1))
                .map(|_| Mutex::new(Registry::default()))
                .collect(),
            next_seq: AtomicU64::new(0),
            blocked: AtomicUsize::new(0),
            loops: (0..loops.max(1)).map(|_| LoopClients::default()).collect(),
            pause: Pause::default(),
        }
    }

    /// Clients blocked on keys.
    pub fn blocked_clients(&self) -> usize {
        self.blocked.load(Ordering::Relaxed)
    }

    fn stripe(&self, srv: &Server, key: &[u8]) -> &Mutex<Registry> {
        let shard = srv.store.shard_of(srv.store.hash(key));
        &self.keys[shard % self.keys.len()]
    }

    /// Lists `conn` under each key (once per key) and returns its place in the order.
    fn register<'k>(
        &self,
        srv: &Server,
        conn: ConnRef,
        keys: impl Iterator<Item = &'k [u8]>,
        kind: Kind,
    ) -> u64 {
        // Before any look at the keys' shards: see `dse_engine::Store::listen`.
        srv.store.listen();
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed) + 1;
        for key in keys {
            let mut reg = self.stripe(srv, key).lock();
            let list = reg.entry_ref(key).or_default();
            if list.iter().any(|w| w.seq == seq) {
                continue;
            }
            let at = list.iter().rposition(|w| w.seq < seq).map_or(0, |p| p + 1);
            list.insert(at, Waiter { seq, conn, kind });
        }
        seq
    }

    fn unregister<'k>(&self, srv: &Server, seq: u64, keys: impl Iterator<Item = &'k [u8]>) {
        for key in keys {
            let mut reg = self.stripe(srv, key).lock();
            if let Some(list) = reg.get_mut(key) {
                list.retain(|w| w.seq != seq);
                if list.is_empty() {
                    reg.remove(key);
                }
            }
        }
        srv.store.unlisten();
    }

    /// A write gives `key` a value of type `kind`: wakes the loop of its first waiter for
    /// that type. Runs under the key's shard lock.
    fn signal(&self, srv: &Server, key: &[u8], kind: Kind) {
        let first = {
            let reg = self.stripe(srv, key).lock();
            reg.get(key)
                .and_then(|list| list.iter().find(|w| w.kind == kind).map(|w| w.conn))
        };
        if let Some(conn) = first {
            srv.send(
                conn.loop_index as usize,
                Msg::Blocking(Note::Ready {
                    key: key.into(),
                    after: 0,
                }),
            );
        }
    }

    /// The first waiter on `key` that blocked after `after`.
    fn next_waiter(&self, srv: &Server, key: &[u8], after: u64) -> Option<Waiter> {
        let reg = self.stripe(srv, key).lock();
        reg.get(key)?.iter().find(|w| w.seq > after).copied()
    }

    /// Forgets `sess`'s blocked command; returns whether its input may resume.
    fn end_block(&self, srv: &Server, loop_index: usize, sess: &mut Session, w: &Waiting) -> bool {
        self.unregister(srv, w.seq, w.keys());
        let conn = sess.conn;
        self.loops[loop_index]
            .blocked
            .lock()
            .retain(|(c, _)| c.id != conn.id);
        sess.meta.blocked.store(false, Ordering::Relaxed);
        self.blocked.fetch_sub(1, Ordering::Relaxed);
        !sess.paused_for_log
    }

    // --- CLIENT PAUSE ---

    /// Any pause set (it may have ended already): checked before every command.
    #[inline]
    pub fn pause_set(&self) -> bool {
        self.pause.active.load(Ordering::Relaxed)
    }

    /// The pause in force at `now`: `Some(all)`, or `None` when there is none.
    fn pause_at(&self, now: u64) -> Option<bool> {
        if !self.pause_set() {
            return None;
        }
        let state = self.pause.state.lock();
        let (end, all) = *state;
        if now >= end {
            self.pause.active.store(false, Ordering::Relaxed);
            return None;
        }
        Some(all)
    }

    /// CLIENT PAUSE: until `end` (ms since the epoch), every command (`all`) or only
    /// writes wait. A pause in force keeps its later end; the mode is the new one.
    pub fn pause(&self, srv: &Server, end: u64, all: bool, now: u64) {
        {
            let mut state = self.pause.state.lock();
            let running = self.pause_set() && state.0 > now;
            state.0 = if running { state.0.max(end) } else { end };
            state.1 = all;
            self.pause.active.store(true, Ordering::Relaxed);
        }
        // Commands held back under the old mode may run under the new one.
        self.tell_loops(srv);
    }

    /// CLIENT UNPAUSE.
    pub fn unpause(&self, srv: &Server) {
        self.pause.active.store(false, Ordering::Relaxed);
        self.tell_loops(srv);
    }

    fn tell_loops(&self, srv: &Server) {
        for i in 0..self.loops.len() {
            srv.send(i, Msg::Blocking(Note::Resume));
        }
    }
}

/// Before running command `idx`: true when a CLIENT PAUSE holds it back. The client is
/// then listed to run it when the pause ends; the caller leaves it unconsumed.
pub(crate) fn postpone(
    srv: &Server,
    sess: &mut Session,
    loop_index: usize,
    idx: usize,
    now: u64,
) -> bool {
    let Some(all) = srv.blocking.pause_at(now) else {
        return false;
    };
    let writes = srv.table.specs[idx].has(flag::WRITE)
        || (idx == srv.tx.exec && sess.tx.queued_writes(&srv.table));
    if !all && !writes {
        return false;
    }
    sess.block.postponed = true;
    srv.blocking.loops[loop_index]
        .postponed
        .lock()
        .push(sess.conn);
    true
}

/// A connection closed: it no longer waits for anything.
pub(crate) fn closed(srv: &Server, loop_index: usize, sess: &mut Session) {
    let b = &srv.blocking;
    if let Some(w) = sess.block.waiting.take() {
        b.end_block(srv, loop_index, sess, &w);
    }
    if sess.block.postponed {
        let id = sess.conn.id;
        b.loops[loop_index].postponed.lock().retain(|c| c.id != id);
    }
}

/// A [`Note`] for this loop.
pub(crate) fn message(srv: &Server, loop_index: usize, conns: &mut Conns<'_, Conn>, note: Note) {
    match note {
        Note::Ready { key, after } => serve_key(srv, loop_index, conns, &key, after),
        Note::Unblock { conn, error } => unblock(srv, loop_index, conns, conn, error),
        Note::Resume => resume_postponed(srv, loop_index, conns),
    }
}

/// Every tick: blocked commands whose timeout passed answer as on timeout, and the
/// commands of a pause that ended run.
pub(crate) fn tick(srv: &Server, loop_index: usize, conns: &mut Conns<'_, Conn>, now: u64) {
    let b = &srv.blocking;
    let mine = &b.loops[loop_index];
    let expired: Vec<ConnRef> = mine
        .blocked
        .lock()
        .iter()
        // Strictly past, as Redis: a timeout never ends early for a `now` rounded down.
        .filter(|&&(_, deadline)| deadline != 0 && deadline < now)
        .map(|&(c, _)| c)
        .collect();
    for r in expired {
        unblock(srv, loop_index, conns, r, false);
    }
    let held = !mine.postponed.lock().is_empty();
    if held && b.pause_at(now).is_none() {
        resume_postponed(srv, loop_index, conns);
    }
}

/// Serves the waiters of `key` that blocked after `after`, in order (see the module
/// documentation).
fn serve_key(srv: &Server, loop_index: usize, conns: &mut Conns<'_, Conn>, key: &[u8], after: u64) {
    let b = &srv.blocking;
    let store = &srv.store;
    let h = store.hash(key);
    // Blocked commands run as any command does: never in the middle of an EXEC.
    let _gate = srv.tx.enter(loop_index);
    let mut after = after;
    while let Some(w) = b.next_waiter(srv, key, after) {
        let holds = store
            .read(h)
            .peek(key, h, unix_ms())
            .map(|e| Kind::of(e.value()));
        match holds {
            // Gone, or of a type nobody blocks for: nobody can be served.
            None | Some(None) => return,
            Some(Some(kind)) if kind != w.kind => {
                after = w.seq;
                continue;
            }
            Some(Some(_)) => {}
        }
        if w.conn.loop_index as usize != loop_index {
            srv.send(
                w.conn.loop_index as usize,
                Msg::Blocking(Note::Ready {
                    key: key.into(),
                    after,
                }),
            );
            return;
        }
        serve(srv, loop_index, conns, w);
        after = w.seq;
    }
}

/// Runs waiter `w`'s blocked command again; it replies and unblocks, or stays blocked.
fn serve(srv: &Server, loop_index: usize, conns: &mut Conns<'_, Conn>, w: Waiter) {
    let resume = {
        let Some(ConnMut { state, out }) = conns.get(w.conn) else {
            return;
        };
        let sess = &mut state.session;
        let Some(waiting) = sess.block.waiting.take() else {
            return;
        };
        if waiting.seq != w.seq {
            sess.block.waiting = Some(waiting);
            return;
        }
        dse_engine::observed_lsn_reset();
        if srv.replication.is_some() {
            crate::replication::take_batch_mask();
        }
        let mark = out.len();
        sess.block.rerun = Rerun::Running;
        {
            let mut reply = Reply::new(out, sess.resp);
            let mut ctx = Ctx {
                srv,
                sess: &mut *sess,
                out: &mut reply,
                now: unix_ms(),
                cmd: waiting.cmd,
                loop_index,
            };
            let handler = srv.table.specs[waiting.cmd].handler;
            if let Err(e) = handler(&mut ctx, waiting.args()) {
                let msg = e.message();
                ctx.out.error(&msg);
                srv.stats.record_error(loop_index, &msg);
            }
        }
        let still_empty = sess.block.rerun == Rerun::StillEmpty;
        sess.block.rerun = Rerun::No;
        let needed = dse_engine::observed_lsn_reset();
        // The replicas the pop must reach before its reply goes (write quorum).
        let replicas = match srv.replication {
            Some(_) => crate::replication::take_batch_mask(),
            None => 0,
        };
        sess.last_lsn = sess.last_lsn.max(needed);
        if still_empty {
            out.truncate(mark);
            sess.block.waiting = Some(waiting);
            return;
        }
        send_reply(
            srv,
            loop_index,
            sess,
            out,
            mark,
            waiting.mute,
            needed,
            replicas,
        );
        srv.blocking.end_block(srv, loop_index, sess, &waiting)
    };
    if resume {
        conns.resume(w.conn);
    }
}

/// Ends `r`'s block without data: the timeout reply, or CLIENT UNBLOCK's error.
fn unblock(srv: &Server, loop_index: usize, conns: &mut Conns<'_, Conn>, r: ConnRef, error: bool) {
    let resume = {
        let Some(ConnMut { state, out }) = conns.get(r) else {
            return;
        };
        let sess = &mut state.session;
        let Some(waiting) = sess.block.waiting.take() else {
            return;
        };
        let mark = out.len();
        {
            let mut reply = Reply::new(out, sess.resp);
            if error {
                reply.error(UNBLOCKED);
                srv.stats.record_error(loop_index, UNBLOCKED);
            } else {
                reply.null_array();
            }
        }
        send_reply(srv, loop_index, sess, out, mark, waiting.mute, 0, 0);
        srv.blocking.end_block(srv, loop_index, sess, &waiting)
    };
    if resume {
        conns.resume(r);
    }
}

/// The reply a blocked client just got (`out` from `mark`) goes out behind the replies it
/// already has, once the log holds what it depends on (`needed`) and the replicas of
/// `replicas` acknowledged it, as `hold_for_log` in the request loop does.
#[allow(clippy::too_many_arguments)]
fn send_reply(
    srv: &Server,
    loop_index: usize,
    sess: &mut Session,
    out: &mut Vec<u8>,
    mark: usize,
    mute: bool,
    needed: Lsn,
    replicas: u64,
) {
    if mute {
        out.truncate(mark);
    }
    if out.len() == mark || (sess.held.is_empty() && replicas == 0 && srv.persist.acked() >= needed)
    {
        return;
    }
    let since = if replicas != 0 { unix_ms() } else { 0 };
    sess.held
        .push_quorum(needed, replicas, since, &out[mark..], &[]);
    out.truncate(mark);
    if !sess.in_turn {
        sess.in_turn = true;
        srv.turn[loop_index].lock().push(sess.conn);
    }
}

/// Lets the clients a CLIENT PAUSE held back run their command (again held back if a
/// pause still covers it).
fn resume_postponed(srv: &Server, loop_index: usize, conns: &mut Conns<'_, Conn>) {
    let held = std::mem::take(&mut *srv.blocking.loops[loop_index].postponed.lock());
    for r in held {
        let resume = match conns.get(r) {
            Some(ConnMut { state, .. }) => {
                let s = &mut state.session;
                s.block.postponed = false;
                !s.paused_for_log && !s.block.holds_input()
            }
            None => false,
        };
        if resume {
            conns.resume(r);
        }
    }
}

/// CLIENT UNBLOCK `id`: true when the client was blocked on keys (its loop then ends the
/// block).
pub(crate) fn unblock_client(srv: &Server, id: u64, error: bool) -> bool {
    let Some(meta) = srv.clients.get(id) else {
        return false;
    };
    if !meta.blocked.load(Ordering::Relaxed) {
        return false;
    }
    let conn = meta.conn();
    srv.send(
        conn.loop_index as usize,
        Msg::Blocking(Note::Unblock { conn, error }),
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_read_as_redis_reads_them() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_timeout(b"0", now), Ok(0));
        assert_eq!(parse_timeout(b"1", now), Ok(1000));
        assert_eq!(parse_timeout(b"0.1", now), Ok(100));
        assert_eq!(parse_timeout(b"0.0001", now), Ok(1));
        assert_eq!(parse_timeout(b"1.5e3", now), Ok(1_500_000));
        assert_eq!(parse_timeout(b"0x10", now), Ok(16_000));
        // Below the double range, not below the long double range.
        assert_eq!(parse_timeout(b"1e-400", now), Ok(1));
        assert_eq!(parse_timeout(b"-1e-400", now), Ok(0));
        // Rounded up to -0: no timeout.
        assert_eq!(parse_timeout(b"-0.0001", now), Ok(0));
        let msg = |r: Result<u64, CmdError>| r.unwrap_err().message().into_owned();
        assert_eq!(msg(parse_timeout(b"-1", now)), "ERR timeout is negative");
        assert_eq!(msg(parse_timeout(b"-inf", now)), "ERR timeout is negative");
        for bad in [&b"inf"[..], b"1e20", b"1e400", b"9223372036854775"] {
            assert_eq!(
                msg(parse_timeout(bad, now)),
                "ERR timeout is out of range",
                "{bad:?}"
            );
        }
        for bad in [&b"abc"[..], b"nan", b" 1", b"1 ", b"", b"1e-5000"] {
            assert_eq!(
                msg(parse_timeout(bad, now)),
                "ERR timeout is not a float or out of range",
                "{bad:?}"
            );
        }
    }
}

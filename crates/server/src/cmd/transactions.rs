//! Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! - Inside MULTI, commands are copied into the session's queue and answered `+QUEUED`
//!   (see [`queue`], called by the request loop); a command that cannot be queued dooms
//!   the transaction, and EXEC then answers EXECABORT.
//! - EXEC runs the queue through the request loop's own path ([`crate::service::dispatch`]),
//!   so statistics, errors and durability (replies wait for the log) work as for any
//!   command, with every event loop held at its gate ([`Exclusion`]).
//! - WATCH registers a flag with the store, which raises it when a watched key changes
//!   (`dse_engine::Store::watch`); EXEC answers a null array if it was raised, or if a
//!   key live when watched has expired since.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use dse_engine::{Store, WatchFlag};
use dse_proto::{Args, Reply};
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::command::{CmdError, CmdResult, CommandSpec, CommandTable, Ctx, cmd, flag::*};
use crate::server::{Server, bump};
use crate::session::Session;

pub const COMMANDS: &[CommandSpec] = &[
    cmd(
        "multi",
        1,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        multi,
    )
    .doc("transactions", "1.2.0", "O(1)", "Starts a transaction."),
    cmd("exec", 1, NOSCRIPT | LOADING | STALE | SKIP_SLOWLOG, exec).doc(
        "transactions",
        "1.2.0",
        "Depends on commands in the transaction",
        "Executes all commands in a transaction.",
    ),
    cmd(
        "discard",
        1,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        discard,
    )
    .doc(
        "transactions",
        "2.0.0",
        "O(N), when N is the number of queued commands",
        "Discards a transaction.",
    ),
    cmd(
        "watch",
        -2,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        watch,
    )
    .keys(1, -1, 1)
    .doc(
        "transactions",
        "2.2.0",
        "O(1) for every key.",
        "Monitors changes to keys to determine the execution of a transaction.",
    ),
    cmd(
        "unwatch",
        1,
        NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY,
        unwatch,
    )
    .doc(
        "transactions",
        "2.2.0",
        "O(1)",
        "Forgets about watched keys of a transaction.",
    ),
];

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// Commands that run at once even inside MULTI, as in Redis's `processCommand`.
const NOT_QUEUED: &[&str] = &["exec", "discard", "multi", "watch", "quit", "reset"];

/// Atomicity of EXEC across event loops.
///
/// The loops run commands in parallel, so EXEC needs every other loop to stand still
/// while it runs its queue. Each loop has a gate, a `RwLock<()>` on cache lines of its
/// own:
///
/// - A loop holds its own gate in read mode while it runs commands: once per batch of
///   requests read from one connection (`Service::data`) and around active expiry
///   (`Service::tick`). Only that loop's thread ever takes it in read mode, so the lock
///   word stays in that core's cache: the cost is two uncontended atomic operations per
///   batch, not per command.
/// - EXEC releases its own loop's gate (the request loop does that for it, see
///   `Service::execute`), then takes every gate in write mode, in loop order (so two
///   EXECs cannot deadlock), runs the queue, and opens them again.
/// - A writer waiting on a gate stops new readers (parking_lot's locks are fair to
///   writers), and between two commands of a batch each loop checks whether a writer
///   waits on its gate (`RwLockReadGuard::bump`, one relaxed load when none does) and
///   lets it through. An EXEC waits at most for one command on each loop, not a whole
///   pipeline.
///
/// Nothing that holds a gate in read mode waits for another gate, so there is no cycle.
pub struct Exclusion {
    gates: Box<[Gate]>,
    /// Taken by a snapshot around each shard's dump (read) and by EXEC after every loop
    /// gate (write), so no dump falls inside a transaction. EXEC takes it last, and a loop
    /// running SAVE holds only its own loop gate, so no cycle can form.
    snapshots: RwLock<()>,
    /// Table index of EXEC: the command that must run with its own gate open.
    pub exec: usize,
}

#[repr(align(128))] // each loop's gate on lines no other loop writes
struct Gate(RwLock<()>);

impl Exclusion {
    pub fn new(loops: usize, table: &CommandTable) -> Exclusion {
        Exclusion {
            gates: (0..loops.max(1)).map(|_| Gate(RwLock::new(()))).collect(),
            snapshots: RwLock::new(()),
            exec: table.lookup(b"exec").expect("EXEC is in the command table"),
        }
    }

    /// Loop `loop_index` is about to run commands.
    pub fn enter(&self, loop_index: usize) -> RwLockReadGuard<'_, ()> {
        self.gates[loop_index].0.read()
    }

    /// Waits out a running EXEC and keeps the next from finishing its start until the
    /// guard is dropped (a snapshot dumping one shard).
    pub fn hold_off_exec(&self) -> RwLockReadGuard<'_, ()> {
        self.snapshots.read()
    }

    /// Returns once every loop has finished the command it was running (each passes
    /// between two commands). A new cluster topology is installed before this: every
    /// command routed by the old one has then run. The caller must not hold a gate.
    pub fn barrier(&self) {
        for g in self.gates.iter() {
            drop(g.0.write());
        }
    }

    /// Every loop stops between two commands, and no snapshot dumps a shard, until the
    /// guards are dropped. The caller must not hold its own loop's gate.
    fn close_all(&self) -> (Vec<RwLockWriteGuard<'_, ()>>, RwLockWriteGuard<'_, ()>) {
        let gates = self.gates.iter().map(|g| g.0.write()).collect();
        (gates, self.snapshots.write())
    }
}

/// A connection's transaction state: its MULTI queue and its WATCHed keys.
#[derive(Default)]
pub struct Transaction {
    /// The commands queued since MULTI; `None` outside a transaction.
    queue: Option<Box<Queue>>,
    watch: Option<Box<Watches>>,
    /// EXEC is running the queue: blocking commands must not block (Redis's
    /// `CLIENT_DENY_BLOCKING`).
    running: bool,
}

impl Transaction {
    /// Between MULTI and EXEC/DISCARD.
    #[inline]
    pub fn in_multi(&self) -> bool {
        self.queue.is_some()
    }

    /// No MULTI, no WATCH, no EXEC running: nothing ties the connection to its loop.
    pub fn at_rest(&self) -> bool {
        self.queue.is_none() && self.watch.is_none() && !self.running
    }

    /// EXEC is running this connection's queued commands.
    pub fn in_exec(&self) -> bool {
        self.running
    }

    /// The queued commands, in order: table index and arguments (none outside MULTI).
    pub fn queued(&self) -> impl Iterator<Item = (usize, Args<'_>)> {
        self.queue.iter().flat_map(|q| {
            q.commands
                .iter()
                .map(|(idx, r)| (*idx, Args::from_parts(&q.bytes, &q.ranges[r.clone()])))
        })
    }

    /// A command that writes is queued (EXEC then waits out a CLIENT PAUSE WRITE).
    pub fn queued_writes(&self, table: &CommandTable) -> bool {
        self.queue.as_ref().is_some_and(|q| {
            q.commands
                .iter()
                .any(|(idx, _)| table.specs[*idx].has(crate::command::flag::WRITE))
        })
    }

    /// Forgets the queue and the watched keys (DISCARD, RESET, a rejected EXEC).
    pub fn discard(&mut self) {
        self.queue = None;
        self.watch = None;
    }
}

/// Queued commands: their arguments back to back in one buffer.
#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    ranges: Vec<Range<usize>>,
    /// Each command's table index and its arguments' slice of `ranges`.
    commands: Vec<(usize, Range<usize>)>,
    /// A command could not be queued: EXEC answers EXECABORT.
    failed: bool,
}

impl Queue {
    fn push(&mut self, idx: usize, args: &Args<'_>) {
        let first = self.ranges.len();
        for a in args.iter() {
            let start = self.bytes.len();
            self.bytes.extend_from_slice(a);
            self.ranges.push(start..self.bytes.len());
        }
        self.commands.push((idx, first..self.ranges.len()));
    }
}

/// The keys a connection watches, registered with the store under one flag. Dropping it
/// (UNWATCH, EXEC, DISCARD, RESET, disconnection) removes the registrations.
struct Watches {
    store: Arc<Store>,
    flag: WatchFlag,
    /// Each key and whether it was live when watched.
    keys: Vec<(Box<[u8]>, bool)>,
}

impl Watches {
    fn new(store: Arc<Store>) -> Watches {
        Watches {
            store,
            flag: Arc::new(AtomicBool::new(false)),
            keys: Vec::new(),
        }
    }

    fn dirty(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// A watched key changed, or expired after it was watched live.
    fn broken(&self, now: u64) -> bool {
        self.dirty()
            || self.keys.iter().any(|(key, live)| {
                *live && {
                    let h = self.store.hash(key);
                    self.store.read(h).peek(key, h, now).is_none()
                }
            })
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for (key, _) in &self.keys {
            self.store.unwatch(key, &self.flag);
        }
    }
}

/// Inside MULTI: queues command `idx` and answers `+QUEUED`, or refuses it. Returns
/// false, doing nothing, for the commands that run at once even inside MULTI.
pub fn queue(
    srv: &Server,
    loop_index: usize,
    sess: &mut Session,
    out: &mut Reply<'_>,
    idx: usize,
    args: &Args<'_>,
) -> bool {
    let spec = srv.table.specs[idx];
    if srv.table.parent[idx] == idx && NOT_QUEUED.contains(&spec.name) {
        return false;
    }
    let tx = &mut sess.tx;
    let Some(queue) = tx.queue.as_deref_mut() else {
        return false;
    };
    if spec.has(NO_MULTI) {
        queue.failed = true;
        let msg = "ERR Command not allowed inside a transaction";
        out.error(msg);
        srv.stats.record_error(loop_index, msg);
        bump(&srv.stats.loops[loop_index].cmd[idx].rejected, 1);
        return true;
    }
    // A transaction that cannot run keeps nothing (a client may pipeline on regardless).
    let doomed = queue.failed || tx.watch.as_ref().is_some_and(|w| w.dirty());
    if !doomed {
        queue.push(idx, args);
    }
    out.simple("QUEUED");
    true
}

/// A command was refused before it could run (unknown, wrong number of arguments) with
/// error `msg`. Inside MULTI this dooms the transaction; a refused EXEC ends it at once.
/// Returns the error to reply.
pub fn rejected<'m>(
    srv: &Server,
    sess: &mut Session,
    args: &Args<'_>,
    msg: std::borrow::Cow<'m, str>,
) -> std::borrow::Cow<'m, str> {
    if srv.table.lookup(&args[0]) == Some(srv.tx.exec) {
        sess.tx.discard();
        let reason = msg.strip_prefix("ERR ").unwrap_or(&msg);
        return format!("EXECABORT Transaction discarded because of: {reason}").into();
    }
    if let Some(queue) = sess.tx.queue.as_deref_mut() {
        queue.failed = true;
    }
    msg
}

/// `MULTI` → `+OK`; the commands that follow are queued until EXEC.
fn multi(ctx: &mut Ctx, _a: Args) -> CmdResult {
    if ctx.sess.tx.in_multi() {
        return Err(CmdError::Static("ERR MULTI calls can not be nested"));
    }
    ctx.sess.tx.queue = Some(Box::default());
    ctx.out.ok();
    Ok(())
}

/// `EXEC` → an array of the queued commands' replies; a null array when a watched key
/// changed (nothing runs); EXECABORT when a command could not be queued.
fn exec(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let Some(queue) = ctx.sess.tx.queue.take() else {
        return Err(CmdError::Static("ERR EXEC without MULTI"));
    };
    let watch = ctx.sess.tx.watch.take();
    if queue.failed {
        return Err(CmdError::Static(EXECABORT));
    }
    let srv = ctx.srv;
    let _stopped = srv.tx.close_all();
    if watch.is_some_and(|w| w.broken(ctx.now)) {
        ctx.out.null_array();
        return Ok(());
    }
    ctx.out.array(queue.commands.len());
    ctx.sess.tx.running = true;
    // Bracket the writes in the log so recovery applies all of them or none (a crash in
    // the middle would otherwise recover part of the transaction). Nothing else runs
    // meanwhile, so no other record falls between the markers. A refused marker (full
    // disk) changes nothing: the writes inside are refused the same way.
    let writes = queue
        .commands
        .iter()
        .any(|(idx, _)| srv.table.specs[*idx].has(crate::command::flag::WRITE));
    if writes {
        let _ = srv.store.log_marker(dse_engine::Effect::TxBegin);
    }
    let mut clock = Instant::now();
    for (idx, range) in &queue.commands {
        let args = Args::from_parts(&queue.bytes, &queue.ranges[range.clone()]);
        let mut inner = Ctx {
            srv,
            sess: &mut *ctx.sess,
            out: &mut *ctx.out,
            now: ctx.now,
            cmd: *idx,
            loop_index: ctx.loop_index,
        };
        crate::service::dispatch(&mut inner, args, &mut clock);
    }
    if writes {
        // The reply waits for this record like for the writes themselves.
        let _ = srv.store.log_marker(dse_engine::Effect::TxCommit);
    }
    ctx.sess.tx.running = false;
    Ok(())
}

/// `DISCARD` → `+OK`: drops the queued commands and unwatches every key.
fn discard(ctx: &mut Ctx, _a: Args) -> CmdResult {
    if !ctx.sess.tx.in_multi() {
        return Err(CmdError::Static("ERR DISCARD without MULTI"));
    }
    ctx.sess.tx.discard();
    ctx.out.ok();
    Ok(())
}

/// `WATCH key [key ...]` → `+OK`: the next EXEC runs only if none of the keys changes
/// before it.
fn watch(ctx: &mut Ctx, a: Args) -> CmdResult {
    if ctx.sess.tx.in_multi() {
        return Err(CmdError::Static("ERR WATCH inside MULTI is not allowed"));
    }
    let store = &ctx.srv.store;
    let w = ctx
        .sess
        .tx
        .watch
        .get_or_insert_with(|| Box::new(Watches::new(store.clone())));
    // Already doomed: watching more changes nothing.
    if !w.dirty() {
        for key in a.iter().skip(1) {
            if w.keys.iter().any(|(k, _)| **k == *key) {
                continue;
            }
            let live = store.watch(key, &w.flag, ctx.now);
            w.keys.push((key.into(), live));
        }
    }
    ctx.out.ok();
    Ok(())
}

/// `UNWATCH` → `+OK`: forgets every watched key.
fn unwatch(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.sess.tx.watch = None;
    ctx.out.ok();
    Ok(())
}

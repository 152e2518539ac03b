//! The network handler: turns bytes into commands and commands into replies, inline on
//! the connection's event loop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use dse_net::{Close, ConnInfo, Conns, Cx, Handler, Io};
use dse_proto::{Args, Limits, ParseOutcome, Reply, RequestParser};

use dse_engine::Lsn;
use dse_net::{ConnMut, ConnRef};
use parking_lot::RwLockReadGuard;

use crate::blocked;
use crate::clients::ClientMeta;
use crate::cmd::transactions;
use crate::command::Ctx;
use crate::server::{Msg, Server, bump, unix_ms};
use crate::session::{Conn, Framing, Session};

pub struct Service {
    pub srv: Arc<Server>,
}

impl Service {
    fn limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.srv.runtime.proto_max_bulk_len.load(Ordering::Relaxed) as usize,
            ..Limits::default()
        }
    }

    /// Resolves one command and runs it (or queues it, inside MULTI), writing its reply.
    /// Returns false, running nothing, when a CLIENT PAUSE holds the command back: it
    /// stays unconsumed.
    fn execute(
        &self,
        batch: &mut Batch<'_>,
        session: &mut Session,
        reply: &mut Reply<'_>,
        args: Args<'_>,
    ) -> bool {
        let srv = &*self.srv;
        let loop_index = batch.loop_index;
        let idx = match srv.table.resolve(&args) {
            Ok(idx) => idx,
            Err(e) => {
                let msg = transactions::rejected(srv, session, &args, e.message());
                reply.error(&msg);
                srv.stats.record_error(loop_index, &msg);
                return true;
            }
        };
        if srv.blocking.pause_set() && blocked::postpone(srv, session, loop_index, idx, batch.now) {
            return false;
        }
        if session.tx.in_multi() && transactions::queue(srv, loop_index, session, reply, idx, &args)
        {
            session.meta.last_cmd.store(idx as u32, Ordering::Relaxed);
            session
                .meta
                .last_active_ms
                .store(batch.now, Ordering::Relaxed);
            return true;
        }
        let mut ctx = Ctx {
            srv,
            sess: session,
            out: reply,
            now: batch.now,
            cmd: idx,
            loop_index,
        };
        if idx == srv.tx.exec {
            dispatch_exec(&mut ctx, args, batch);
        } else {
            dispatch(&mut ctx, args, &mut batch.clock);
        }
        true
    }
}

/// EXEC closes every loop's gate, this loop's included: it runs with this loop's open.
#[cold]
#[inline(never)]
fn dispatch_exec(ctx: &mut Ctx<'_, '_>, args: Args<'_>, batch: &mut Batch<'_>) {
    RwLockReadGuard::unlocked(&mut batch.gate, || dispatch(ctx, args, &mut batch.clock));
}

/// What the commands of one batch of requests share.
struct Batch<'a> {
    loop_index: usize,
    /// Milliseconds since the epoch, read once per batch.
    now: u64,
    /// When the previous command ended (command durations for INFO commandstats).
    clock: Instant,
    /// This loop's gate, held while its commands run (see `transactions::Exclusion`).
    gate: RwLockReadGuard<'a, ()>,
}

/// Runs the command `ctx.cmd` names, writes its error reply if it fails, and accounts
/// for it. The request loop and EXEC (for each queued command) both run commands here.
#[inline(always)] // the hot path: one call site per request
pub(crate) fn dispatch(ctx: &mut Ctx<'_, '_>, args: Args<'_>, clock: &mut Instant) {
    let (srv, loop_index, idx, now) = (ctx.srv, ctx.loop_index, ctx.cmd, ctx.now);
    let stats = &srv.stats.loops[loop_index];
    let spec = srv.table.specs[idx];
    let result = (spec.handler)(ctx, args);
    let cmd_stats = &stats.cmd[idx];
    if let Err(e) = result {
        let msg = e.message();
        ctx.out.error(&msg);
        srv.stats.record_error(loop_index, &msg);
        bump(&cmd_stats.failed, 1);
    }
    let end = Instant::now();
    let usec = end.duration_since(*clock).as_micros() as u64;
    bump(&cmd_stats.calls, 1);
    bump(&cmd_stats.usec, usec);
    srv.slowlog.observe(ctx, spec, args, usec);
    bump(&stats.commands, 1);
    *clock = end;
    ctx.sess.meta.last_cmd.store(idx as u32, Ordering::Relaxed);
    ctx.sess.meta.last_active_ms.store(now, Ordering::Relaxed);
}

/// Holding replies until the log acknowledges what they depend on.
///
/// A batch of commands may write records (and read shards whose last write is still in
/// the log's buffer). Its replies may be sent once the log acknowledged every such LSN:
/// written to the kernel under `everysec`/`no`, synced under `always`. When that is not yet
/// so, the replies move to the session's `held` buffer and the connection is listed for
/// the end of the loop's turn; there the loop writes the log once for every connection it
/// served (and under `always` syncs it, sharing the fdatasync with the other loops), then
/// releases what is acknowledged. What still is not (a failing disk) waits for a
/// `LogAcked` message from the log.
impl Service {
    fn hold_for_log(
        &self,
        loop_index: usize,
        session: &mut Session,
        io: &mut Io<'_>,
        batch_start: usize,
        needed: Lsn,
    ) {
        if session.held.is_empty() && self.srv.persist.acked() >= needed {
            return;
        }
        if io.out.len() > batch_start {
            session.held.push(needed, &io.out[batch_start..]);
            io.out.truncate(batch_start);
        }
        if session.held.is_empty() {
            return;
        }
        io.hold = true;
        if !session.in_turn {
            session.in_turn = true;
            self.srv.turn[loop_index].lock().push(session.conn);
        }
        if session.held.len() > io.out_limit() {
            io.pause = true;
            session.paused_for_log = true;
        }
        if io.close == Close::AfterFlush {
            io.close = Close::No;
            session.close_when_released = true;
        }
    }

    /// Releases what the log acknowledged of `r`'s held replies; what remains waits for
    /// a `LogAcked` message.
    fn release(&self, loop_index: usize, conns: &mut Conns<'_, Conn>, r: ConnRef, acked: Lsn) {
        let Some(ConnMut { state, out }) = conns.get(r) else {
            return;
        };
        let s = &mut state.session;
        s.held.release(acked, out);
        match s.held.first_lsn() {
            Some(next) => {
                if !s.log_waiting {
                    s.log_waiting = true;
                    let w = &self.srv.log_waiters[loop_index];
                    w.list.lock().push((r, next));
                    w.min.fetch_min(next, Ordering::Relaxed);
                    // Pairs with the fence in `Server::log_acked`: if the log advanced
                    // before we registered, we see it here.
                    std::sync::atomic::fence(Ordering::SeqCst);
                    let now_acked = self.srv.persist.acked();
                    if now_acked >= next {
                        self.srv.send(loop_index, Msg::LogAcked(now_acked));
                    }
                }
            }
            None => {
                // A blocked client stays paused: its block resumes it.
                let (resume, close) = (
                    s.paused_for_log && !s.block.holds_input(),
                    s.close_when_released,
                );
                s.paused_for_log = false;
                s.close_when_released = false;
                conns.unhold(r);
                if resume {
                    conns.resume(r);
                }
                if close {
                    conns.close(r, Close::AfterFlush);
                }
            }
        }
    }

    fn release_for_log(&self, loop_index: usize, conns: &mut Conns<'_, Conn>, acked: Lsn) {
        let w = &self.srv.log_waiters[loop_index];
        let ready: Vec<ConnRef> = {
            let mut list = w.list.lock();
            let mut ready = Vec::new();
            list.retain(|&(r, lsn)| {
                let go = lsn <= acked;
                if go {
                    ready.push(r);
                }
                !go
            });
            w.min.store(
                list.iter().map(|&(_, l)| l).min().unwrap_or(Lsn::MAX),
                Ordering::Relaxed,
            );
            ready
        };
        for r in ready {
            if let Some(ConnMut { state, .. }) = conns.get(r) {
                state.session.log_waiting = false;
            }
            self.release(loop_index, conns, r, acked);
        }
    }
}

impl Handler for Service {
    type Conn = Conn;
    type Msg = Msg;

    fn open(&self, _cx: &mut Cx<'_, Msg>, info: &ConnInfo) -> Conn {
        let meta = Arc::new(ClientMeta::new(
            info.conn,
            info.peer.to_string(),
            info.local.to_string(),
            unix_ms(),
        ));
        self.srv.clients.add(meta.clone());
        Conn {
            framing: Framing {
                parser: RequestParser::new(self.limits()),
                ranges: Vec::new(),
                limits_gen: self.srv.runtime.limits_gen.load(Ordering::Relaxed),
            },
            session: Session::new(info.conn, meta),
        }
    }

    fn data(&self, cx: &mut Cx<'_, Msg>, conn: &mut Conn, io: &mut Io<'_>) {
        let Conn { framing, session } = conn;
        let generation = self.srv.runtime.limits_gen.load(Ordering::Relaxed);
        if framing.limits_gen != generation {
            framing.limits_gen = generation;
            framing.parser.set_limits(self.limits());
        }
        let input = io.input;
        let out_limit = io.out_limit();
        let batch_start = io.out.len();
        dse_engine::observed_lsn_reset();
        let mut batch = Batch {
            loop_index: cx.loop_index,
            now: unix_ms(),
            clock: Instant::now(),
            gate: self.srv.tx.enter(cx.loop_index),
        };
        let mut off = 0;
        let mut reply = Reply::new(&mut *io.out, session.resp);
        while reply.len() <= out_limit {
            match framing.parser.parse(&input[off..], &mut framing.ranges) {
                Ok(ParseOutcome::Complete { consumed }) => {
                    let args = framing.parser.args(&input[off..], &framing.ranges);
                    let mark = reply.len();
                    if !self.execute(&mut batch, session, &mut reply, args) {
                        // CLIENT PAUSE: the command runs when the pause ends.
                        io.pause = true;
                        break;
                    }
                    if !session.reply_mode.is_on() {
                        session.reply_mode.command_done(&mut reply, mark);
                    }
                    off += consumed;
                    if session.close_after_reply {
                        io.close = Close::AfterFlush;
                        break;
                    }
                    if session.block.holds_input() {
                        // Blocked: nothing more runs until it is served (blocked.rs).
                        io.pause = true;
                        break;
                    }
                    // An EXEC on another loop waiting for this gate goes first.
                    RwLockReadGuard::bump(&mut batch.gate);
                }
                Ok(ParseOutcome::Empty { consumed }) => off += consumed,
                Ok(ParseOutcome::Incomplete { want }) => {
                    io.want = want;
                    break;
                }
                Err(e) => {
                    let msg = e.reply_text();
                    reply.error_bytes(&msg);
                    self.srv
                        .stats
                        .record_error(cx.loop_index, &String::from_utf8_lossy(&msg));
                    io.close = Close::AfterFlush;
                    break;
                }
            }
        }
        drop(batch);
        io.consumed = off;
        if off == input.len() {
            framing.parser.trim(&mut framing.ranges);
        }
        session
            .meta
            .qbuf
            .store((input.len() - off) as u64, Ordering::Relaxed);
        let needed = dse_engine::observed_lsn_reset();
        if needed > 0 || !session.held.is_empty() {
            self.hold_for_log(cx.loop_index, session, io, batch_start, needed);
        }
    }

    fn closed(&self, cx: &mut Cx<'_, Msg>, conn: &mut Conn) {
        self.srv.clients.remove(conn.session.id());
        blocked::closed(&self.srv, cx.loop_index, &mut conn.session);
    }

    fn message(&self, cx: &mut Cx<'_, Msg>, conns: &mut Conns<'_, Conn>, msg: Msg) {
        match msg {
            Msg::Kill(r) => conns.close(r, Close::Now),
            Msg::LogAcked(acked) => self.release_for_log(cx.loop_index, conns, acked),
            Msg::Blocking(note) => blocked::message(&self.srv, cx.loop_index, conns, note),
        }
    }

    fn end_of_turn(&self, cx: &mut Cx<'_, Msg>, conns: &mut Conns<'_, Conn>) {
        let mut list = std::mem::take(&mut *self.srv.turn[cx.loop_index].lock());
        if list.is_empty() {
            return;
        }
        let persist = &self.srv.persist;
        persist.make_acked(persist.assigned());
        let acked = persist.acked();
        for &r in &list {
            if let Some(ConnMut { state, .. }) = conns.get(r) {
                state.session.in_turn = false;
            }
            self.release(cx.loop_index, conns, r, acked);
        }
        list.clear();
        // Give the (empty) list back, keeping its capacity.
        let mut slot = self.srv.turn[cx.loop_index].lock();
        if slot.is_empty() {
            *slot = list;
        }
    }

    fn tick(&self, cx: &mut Cx<'_, Msg>, conns: &mut Conns<'_, Conn>) {
        let srv = &*self.srv;
        let now = unix_ms();
        if srv.runtime.active_expire.load(Ordering::Relaxed) {
            let _gate = srv.tx.enter(cx.loop_index);
            // Each loop expires its own slice of the shards.
            let n = srv.store.shard_count();
            let loops = cx.loops.len();
            let per = n.div_ceil(loops);
            let start = (cx.loop_index * per).min(n);
            let end = (start + per).min(n);
            srv.store
                .active_expire(start..end, now, 16, now ^ (cx.loop_index as u64) << 32);
        }
        let timeout = srv.runtime.timeout.load(Ordering::Relaxed);
        if timeout > 0 {
            let mut idle = Vec::new();
            conns.for_each(|r, c| {
                let last = c.session.meta.last_active_ms.load(Ordering::Relaxed);
                // As in Redis, a blocked client is not idle.
                if now.saturating_sub(last) > timeout * 1000 && !c.session.block.holds_input() {
                    idle.push(r);
                }
            });
            for r in idle {
                conns.close(r, Close::Now);
            }
        }
        blocked::tick(srv, cx.loop_index, conns, now);
        if cx.loop_index == 0 {
            let total = srv.stats.total(|l| &l.commands);
            let mut samples = srv.stats.ops_samples.lock();
            samples.push_back((Instant::now(), total));
            while samples.len() > 16 {
                samples.pop_front();
            }
        }
    }
}

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

use dse_cluster::bus::{Acceptor, Frame, OpenFrame};

use crate::blocked;
use crate::clients::ClientMeta;
use crate::cluster::{ClusterState, Route};
use crate::cmd::transactions;
use crate::command::Ctx;
use crate::forward::{BusConn, Forwarding, Side};
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
        if let Some(cluster) = &srv.cluster {
            match place(srv, cluster, loop_index, session, reply, idx, &args) {
                Placement::Here => close_forward_batch(srv, loop_index, session),
                Placement::Answered => {
                    close_forward_batch(srv, loop_index, session);
                    return true;
                }
                Placement::Forward(node) => {
                    forward(srv, loop_index, session, reply.len(), node, &args);
                    return true;
                }
                Placement::Split(kind, groups) => {
                    self.split(batch, session, reply, idx, &args, kind, &groups);
                    return true;
                }
            }
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

/// Where a command runs in cluster mode.
enum Placement {
    Here,
    /// The client has been answered (-MOVED, -CROSSSLOT).
    Answered,
    /// Forwarded to this node (its reply will fill a place in the client's replies).
    Forward(u16),
    /// A multi-key command whose keys several nodes serve: run in parts, one per node,
    /// and its reply gathered from theirs.
    Split(crate::cluster::Gather, crate::cluster::SplitGroups),
}

/// Cluster mode: where command `idx` runs. A command for a slot another node serves is
/// forwarded there, unless the node redirects (`--cluster-redirect`), the command is part
/// of a transaction (which must go to the owner, as in Redis Cluster), or this is a bus
/// session running a forward itself (never forwarded twice). EXEC is routed on the keys
/// of its whole queue.
#[inline]
fn place(
    srv: &Server,
    cluster: &ClusterState,
    loop_index: usize,
    session: &mut Session,
    reply: &mut Reply<'_>,
    idx: usize,
    args: &Args<'_>,
) -> Placement {
    let exec = cluster.is_exec(idx);
    let route = if exec {
        cluster.route_transaction(&srv.table, session.tx.queued(), session.readonly)
    } else {
        cluster.route(srv.table.specs[idx], idx, args, session.readonly)
    };
    let may_forward = !cluster.redirect()
        && !exec
        && !session.internal
        && !session.tx.in_multi()
        && srv.forwarding.is_some();
    match route {
        Route::Local => Placement::Here,
        Route::Moved { node, .. } if may_forward => Placement::Forward(node),
        // A part of a split command: several slots, all served here.
        Route::CrossSlot
            if session.internal && cluster.all_primary_here(srv.table.specs[idx], args) =>
        {
            Placement::Here
        }
        Route::CrossSlot if may_forward => {
            match cluster.split_plan(srv.table.specs[idx].name, args) {
                Some((kind, groups)) => Placement::Split(kind, groups),
                None => {
                    refuse(srv, cluster, loop_index, session, reply, idx, args, route);
                    Placement::Answered
                }
            }
        }
        refused => {
            refuse(srv, cluster, loop_index, session, reply, idx, args, refused);
            Placement::Answered
        }
    }
}

/// Hands the request to this loop's link to `node` and keeps its reply's place.
#[cold]
#[inline(never)]
fn forward(
    srv: &Server,
    loop_index: usize,
    session: &mut Session,
    at: usize,
    node: u16,
    args: &Args<'_>,
) {
    let Some(fwd) = &srv.forwarding else { return };
    let resp = if session.resp == dse_proto::Resp::V3 {
        3
    } else {
        2
    };
    if let Some(id) = fwd.stage(loop_index, session.conn, node, resp, args) {
        session.remotes.push((at, id));
    }
    session.forwarding = true;
}

/// Commands of a pipelined batch whose keys are prefetched at a time.
const PREFETCH_BATCH: usize = 32;

thread_local! {
    /// Argument ranges for [`prefetch_keys`]'s own parse (the connection's parser is
    /// in the middle of the batch).
    static PREFETCH_RANGES: std::cell::RefCell<Vec<std::ops::Range<usize>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Looks ahead through the complete requests at the start of `input` (up to
/// `PREFETCH_BATCH`) and has the CPU fetch the table lines where each one's first
/// argument (the key, for the commands that are pipelined in bulk) will be looked up,
/// so that the cache misses of a batch's lookups overlap instead of adding up
/// (ARCHITECTURE.md, "The request path"). Returns how many bytes it covered. Only hints:
/// a non-key argument costs a useless prefetch.
fn prefetch_keys(srv: &Server, limits: Limits, input: &[u8]) -> usize {
    PREFETCH_RANGES.with_borrow_mut(|ranges| {
        let mut parser = RequestParser::new(limits);
        let mut off = 0;
        for _ in 0..PREFETCH_BATCH {
            if input.get(off) != Some(&b'*') {
                break; // inline commands are rare and not worth it
            }
            match parser.parse(&input[off..], ranges) {
                Ok(ParseOutcome::Complete { consumed }) => {
                    if let Some(key) = parser.args(&input[off..], ranges).get(1) {
                        srv.store.prefetch(srv.store.hash(key));
                    }
                    off += consumed;
                }
                Ok(ParseOutcome::Empty { consumed }) => off += consumed,
                _ => break,
            }
        }
        parser.trim(ranges);
        off
    })
}

/// A reply produced here comes between forwards: the next forward starts a new frame.
#[inline]
fn close_forward_batch(srv: &Server, loop_index: usize, session: &mut Session) {
    if session.forwarding {
        session.forwarding = false;
        if let Some(fwd) = &srv.forwarding {
            fwd.close_batch(loop_index);
        }
    }
}

/// Listener kind of the cluster bus port.
pub const BUS_LISTENER: u8 = 1;

/// Answers a command that does not run here. Inside MULTI it dooms the transaction; a
/// refused EXEC ends it, answering the redirect itself (not EXECABORT), as in Redis.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn refuse(
    srv: &Server,
    cluster: &ClusterState,
    loop_index: usize,
    session: &mut Session,
    reply: &mut Reply<'_>,
    idx: usize,
    args: &Args<'_>,
    route: Route,
) {
    let msg: std::borrow::Cow<'_, str> = match route {
        Route::CrossSlot => "CROSSSLOT Keys in request don't hash to the same slot".into(),
        Route::Down => "CLUSTERDOWN The cluster is down".into(),
        // Redirect mode, a transaction, or a bus session (never forwarded twice).
        Route::Moved { slot, node } => cluster.moved_error(slot, node).into(),
        Route::Local => return,
    };
    let msg = if cluster.is_exec(idx) {
        session.tx.discard();
        msg
    } else {
        transactions::rejected(srv, session, args, msg)
    };
    reply.error(&msg);
    srv.stats.record_error(loop_index, &msg);
    bump(&srv.stats.loops[loop_index].cmd[idx].rejected, 1);
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
        replicas: u64,
    ) {
        if session.held.is_empty()
            && session.remotes.is_empty()
            && replicas == 0
            && self.srv.persist.acked() >= needed
        {
            return;
        }
        if io.out.len() > batch_start || !session.remotes.is_empty() {
            for r in session.remotes.iter_mut() {
                r.0 -= batch_start;
            }
            let since = if replicas != 0 { unix_ms() } else { 0 };
            session.held.push_quorum(
                needed,
                replicas,
                since,
                &io.out[batch_start..],
                &session.remotes,
            );
            session.remotes.clear();
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
        match self.srv.replication.as_deref() {
            Some(q) => s
                .held
                .release_quorum(acked, |lsn, m| q.acked_by(lsn, m), out),
            None => s.held.release(acked, out),
        }
        match (s.held.front(), s.held.first_lsn()) {
            // The forward's replies come through `end_of_turn`, which releases again.
            (Some(crate::session::Wait::Remote { done: false, .. }), _) => {}
            // The log has it; the replicas do not yet.
            (Some(_), Some(_)) if s.held.front_waits_for_replicas(acked) => {
                self.wait_for_replicas(loop_index, s, r);
            }
            (Some(_), Some(next)) => {
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
            _ => {
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

/// The cluster bus side of the handler: links to other nodes and forwards from them.
impl Service {
    /// Runs a multi-key command whose keys several nodes serve: this node's part here,
    /// every other part forwarded to its node, the reply gathered from the parts'.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn split(
        &self,
        batch: &mut Batch<'_>,
        session: &mut Session,
        reply: &mut Reply<'_>,
        idx: usize,
        args: &Args<'_>,
        kind: crate::cluster::Gather,
        groups: &[(u16, Vec<usize>)],
    ) {
        let srv = &*self.srv;
        let (Some(fwd), Some(cluster)) = (&srv.forwarding, &srv.cluster) else {
            return;
        };
        let loop_index = batch.loop_index;
        close_forward_batch(srv, loop_index, session);
        let pairs = kind == crate::cluster::Gather::AllOk;
        let step = if pairs { 2 } else { 1 };
        let keys = groups
            .iter()
            .map(|(_, ps)| ps.iter().map(|p| (p - 1) / step).collect())
            .collect();
        let resp3 = session.resp == dse_proto::Resp::V3;
        let gather = fwd.start_gather(loop_index, session.conn, kind, keys, resp3);
        for (part, (node, positions)) in groups.iter().enumerate() {
            let mut base = Vec::new();
            let mut ranges = Vec::new();
            let mut push = |a: &[u8]| {
                ranges.push(base.len()..base.len() + a.len());
                base.extend_from_slice(a);
            };
            push(&args[0]);
            for &p in positions {
                push(&args[p]);
                if pairs {
                    push(&args[p + 1]);
                }
            }
            let sub = Args::from_parts(&base, &ranges);
            if *node == cluster.topology().myself {
                let mut buf = Vec::new();
                let mut r = Reply::new(&mut buf, session.resp);
                let mut ctx = Ctx {
                    srv,
                    sess: &mut *session,
                    out: &mut r,
                    now: batch.now,
                    cmd: idx,
                    loop_index,
                };
                dispatch(&mut ctx, sub, &mut batch.clock);
                fwd.part_done(loop_index, gather, part, buf);
            } else {
                let resp = if resp3 { 3 } else { 2 };
                fwd.stage_part(loop_index, session.conn, *node, resp, &sub, gather, part);
            }
        }
        session.remotes.push((reply.len(), gather));
    }

    fn framing(&self) -> Framing {
        Framing {
            parser: RequestParser::new(self.limits()),
            ranges: Vec::new(),
            limits_gen: self.srv.runtime.limits_gen.load(Ordering::Relaxed),
        }
    }

    /// Writes this turn's forwards to the links (connecting them as needed), and puts the
    /// replies that came back in their clients' places.
    fn flush_forwards(&self, loop_index: usize, conns: &mut Conns<'_, Conn>, fwd: &Forwarding) {
        let srv = &self.srv;
        let topology = srv.cluster.as_ref().map(|c| c.topology());
        let completions = fwd.flush(
            loop_index,
            conns,
            |node| {
                topology
                    .as_ref()
                    .and_then(|t| t.bus_addrs.get(node as usize).copied().flatten())
            },
            |peer, initiator, addr| {
                let placeholder = ConnRef {
                    loop_index: loop_index as u32,
                    token: u32::MAX,
                    id: 0,
                };
                let meta = Arc::new(ClientMeta::new(
                    placeholder,
                    addr.to_string(),
                    String::new(),
                    unix_ms(),
                ));
                let mut session = Session::new(placeholder, meta);
                session.internal = true;
                Conn {
                    framing: self.framing(),
                    session,
                    bus: Some(Box::new(BusConn::outbound(peer, initiator, addr))),
                }
            },
        );
        if completions.is_empty() {
            return;
        }
        let acked = srv.persist.acked();
        for (client, id, replies) in completions {
            if let Some(ConnMut { state, .. }) = conns.get(client) {
                state.session.held.fill(id, &replies);
            }
            self.release(loop_index, conns, client, acked);
        }
    }

    /// Frames from another node: the handshake, then forwards to run (inbound) or the
    /// replies to ours (outbound).
    fn bus_data(&self, cx: &mut Cx<'_, Msg>, conn: &mut Conn, io: &mut Io<'_>) {
        let srv = &*self.srv;
        let Conn {
            framing,
            session,
            bus,
        } = conn;
        let Some(bus) = bus.as_mut() else { return };
        let input = io.input;
        let batch_start = io.out.len();
        dse_engine::observed_lsn_reset();
        if srv.replication.is_some() {
            crate::replication::take_batch_mask();
        }
        let mut batch = Batch {
            loop_index: cx.loop_index,
            now: unix_ms(),
            clock: Instant::now(),
            gate: srv.tx.enter(cx.loop_index),
        };
        let mut off = 0;
        loop {
            let (frame, used) = match bus.decoder.decode(&input[off..]) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    if let Ok(Some(size)) = bus.decoder.frame_size(&input[off..]) {
                        io.want = size;
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!("cluster bus connection from {}: {e}", bus.addr);
                    io.close = Close::Now;
                    break;
                }
            };
            off += used;
            if !bus.authenticated() {
                if !frame.is_handshake() {
                    io.close = Close::Now;
                    break;
                }
                match bus.handshake(&frame, io.out) {
                    Ok(None) => {}
                    Ok(Some(name)) => match self.admit(bus, &name) {
                        Some(peer) => {
                            bus.peer = peer;
                            bus.peer_name = name;
                            if bus.repl {
                                match (&srv.replication, peer) {
                                    (Some(repl), Some(peer)) => repl.stream_start(peer, io.out),
                                    _ => {
                                        io.close = Close::Now;
                                        break;
                                    }
                                }
                            } else if let (Side::Outbound { peer, .. }, Some(fwd)) =
                                (&bus.side, &srv.forwarding)
                            {
                                fwd.link_ready(cx.loop_index, *peer, session.conn);
                            }
                        }
                        None => {
                            tracing::warn!(
                                "cluster bus: refused {name} from {} (not a listed peer at that address)",
                                bus.addr
                            );
                            io.close = Close::Now;
                            break;
                        }
                    },
                    Err(reason) => {
                        tracing::warn!("cluster bus handshake with {} failed: {reason}", bus.addr);
                        io.close = Close::AfterFlush;
                        break;
                    }
                }
                continue;
            }
            if let (Some(peer), Some(cluster)) = (bus.peer, &srv.cluster) {
                cluster.heard_from(peer, batch.now);
            }
            if let Frame::Consensus { payload } = frame {
                if let Some(c) = srv.cluster.as_ref().and_then(|c| c.consensus.get()) {
                    c.deliver(&bus.peer_name, payload);
                }
                continue;
            }
            if bus.peer.is_none() {
                // A node that is not a member may only talk to the consensus.
                tracing::warn!(
                    "cluster bus: {} frame from {}, which is not a member",
                    frame.label(),
                    bus.peer_name
                );
                io.close = Close::Now;
                break;
            }
            match (frame, &bus.side) {
                // The owner decides by its own view of the membership (a command for a
                // slot it does not own in its epoch answers -MOVED), so a forward routed
                // by an older or newer epoch never runs where it should not.
                (
                    Frame::Forward {
                        id, resp, requests, ..
                    },
                    Side::Inbound { .. },
                ) => {
                    self.run_forwarded(&mut batch, framing, session, io.out, id, resp, requests);
                }
                (Frame::Replies { id, replies }, Side::Outbound { peer, .. }) => {
                    let ok = srv
                        .forwarding
                        .as_ref()
                        .is_some_and(|f| f.replies(cx.loop_index, *peer, id, replies));
                    if !ok {
                        io.close = Close::Now;
                        break;
                    }
                }
                (
                    frame @ (Frame::ReplStart { .. }
                    | Frame::ReplAck { .. }
                    | Frame::SyncBegin { .. }
                    | Frame::SyncChunk { .. }
                    | Frame::SyncEnd { .. }
                    | Frame::Records { .. }),
                    _,
                ) => {
                    if let Err(e) = self.replication_frame(cx.loop_index, bus, session.conn, &frame)
                    {
                        tracing::warn!("replication with {}: {e}", bus.addr);
                        io.close = Close::Now;
                        break;
                    }
                }
                (Frame::Refused { reason }, _) => {
                    tracing::warn!("cluster bus: {} closed the link: {reason}", bus.addr);
                    io.close = Close::Now;
                    break;
                }
                (other, _) => {
                    tracing::warn!(
                        "cluster bus: unexpected {} frame from {}",
                        other.label(),
                        bus.addr
                    );
                    io.close = Close::Now;
                    break;
                }
            }
        }
        drop(batch);
        io.consumed = off;
        if bus.repl
            && let (Some(repl), Some(peer)) = (&srv.replication, bus.peer)
        {
            // Held below until this node's own log acknowledges what was applied.
            repl.ack(peer, io.out);
        }
        let needed = dse_engine::observed_lsn_reset();
        let replicas = match srv.replication {
            Some(_) => crate::replication::take_batch_mask(),
            None => 0,
        };
        if needed > 0 || replicas != 0 || !session.held.is_empty() {
            self.hold_for_log(cx.loop_index, session, io, batch_start, needed, replicas);
        }
    }

    /// Whom an authenticated peer is: `Some(Some(index))` for a member (the one we
    /// dialled when we dialled it; without a shared secret it must connect from the
    /// member's address), `Some(None)` for a node that is not a member (it may exchange
    /// consensus messages only: CLUSTER MEET), `None` to refuse it.
    fn admit(&self, bus: &BusConn, name: &str) -> Option<Option<u16>> {
        let cluster = self.srv.cluster.as_ref()?;
        let t = cluster.topology();
        let member = t
            .index_of(name)
            .filter(|&i| t.state(i) != dse_cluster::membership::MemberState::Removed);
        let Some(idx) = member else {
            return match &bus.side {
                Side::Outbound { peer, .. } => (*peer == crate::forward::STRANGER).then_some(None),
                Side::Inbound { .. } => Some(None),
            };
        };
        if idx == t.myself {
            return None;
        }
        match &bus.side {
            Side::Outbound { peer, .. } => {
                (*peer == idx || *peer == crate::forward::STRANGER).then_some(Some(idx))
            }
            Side::Inbound { .. } => {
                let secret = cluster.config.secret.is_some();
                let from_listed = t
                    .peer_ips
                    .get(idx as usize)
                    .is_some_and(|ips| ips.contains(&bus.addr.ip()));
                (secret || from_listed).then_some(Some(idx))
            }
        }
    }

    /// Runs the requests of a forward as a client of this node would, and answers them
    /// in one Replies frame.
    #[allow(clippy::too_many_arguments)]
    fn run_forwarded(
        &self,
        batch: &mut Batch<'_>,
        framing: &mut Framing,
        session: &mut Session,
        out: &mut Vec<u8>,
        id: u64,
        resp: u8,
        requests: &[u8],
    ) {
        let frame = OpenFrame::replies(out, id);
        session.resp = if resp == 3 {
            dse_proto::Resp::V3
        } else {
            dse_proto::Resp::V2
        };
        let mut reply = Reply::new(&mut *out, session.resp);
        let mut pos = 0;
        while pos < requests.len() {
            match framing.parser.parse(&requests[pos..], &mut framing.ranges) {
                Ok(ParseOutcome::Complete { consumed }) => {
                    let args = framing.parser.args(&requests[pos..], &framing.ranges);
                    self.execute(batch, session, &mut reply, args);
                    pos += consumed;
                    RwLockReadGuard::bump(&mut batch.gate);
                }
                Ok(ParseOutcome::Empty { consumed }) => pos += consumed,
                Ok(ParseOutcome::Incomplete { .. }) => {
                    reply.error("ERR Protocol error: a forwarded request was cut short");
                    break;
                }
                Err(e) => {
                    reply.error_bytes(&e.reply_text());
                    break;
                }
            }
        }
        framing.parser.trim(&mut framing.ranges);
        let _ = frame.finish(out);
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
        let bus = if info.kind == BUS_LISTENER {
            // Another node: not a client (not in CLIENT LIST, not counted).
            self.srv.forwarding.as_ref().and_then(|f| {
                Acceptor::new(&f.my_name, f.auth.clone())
                    .ok()
                    .map(|a| Box::new(BusConn::inbound(a, info.peer)))
            })
        } else {
            self.srv.clients.add(meta.clone());
            None
        };
        let mut session = Session::new(info.conn, meta);
        session.internal = bus.is_some();
        Conn {
            framing: self.framing(),
            session,
            bus,
        }
    }

    fn data(&self, cx: &mut Cx<'_, Msg>, conn: &mut Conn, io: &mut Io<'_>) {
        if conn.bus.is_some() {
            self.bus_data(cx, conn, io);
            return;
        }
        let Conn {
            framing, session, ..
        } = conn;
        let generation = self.srv.runtime.limits_gen.load(Ordering::Relaxed);
        if framing.limits_gen != generation {
            framing.limits_gen = generation;
            framing.parser.set_limits(self.limits());
        }
        let input = io.input;
        let out_limit = io.out_limit();
        let batch_start = io.out.len();
        dse_engine::observed_lsn_reset();
        if self.srv.replication.is_some() {
            crate::replication::take_batch_mask();
        }
        let mut batch = Batch {
            loop_index: cx.loop_index,
            now: unix_ms(),
            clock: Instant::now(),
            gate: self.srv.tx.enter(cx.loop_index),
        };
        let mut off = 0;
        // Input up to here had its keys prefetched.
        let mut prefetched_to = 0;
        let mut reply = Reply::new(&mut *io.out, session.resp);
        while reply.len() <= out_limit {
            match framing.parser.parse(&input[off..], &mut framing.ranges) {
                Ok(ParseOutcome::Complete { consumed }) => {
                    if off >= prefetched_to && off + consumed < input.len() {
                        prefetched_to =
                            off + prefetch_keys(&self.srv, framing.parser.limits(), &input[off..]);
                    }
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
                    // WAIT blocks the connection: nothing after it runs until it answers.
                    if session.wait.is_some() {
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
        close_forward_batch(&self.srv, cx.loop_index, session);
        let needed = dse_engine::observed_lsn_reset();
        let replicas = match self.srv.replication {
            Some(_) => batch_replicas(session, needed),
            None => 0,
        };
        if needed > 0 || replicas != 0 || !session.held.is_empty() || !session.remotes.is_empty() {
            self.hold_for_log(cx.loop_index, session, io, batch_start, needed, replicas);
        }
        if session.wait.is_some() {
            self.block_for_wait(cx.loop_index, session, io);
        }
    }

    /// A client with nothing in flight outside its own session may change loops: no
    /// held or forwarded replies, no blocked command or WAIT, no transaction or WATCH,
    /// not listed in a per-loop list. Bus and replication links never move.
    fn movable(&self, conn: &Conn) -> bool {
        let s = &conn.session;
        conn.bus.is_none()
            && !s.internal
            && s.held.is_empty()
            && s.remotes.is_empty()
            && !s.forwarding
            && !s.paused_for_log
            && !s.in_turn
            && !s.log_waiting
            && !s.repl_waiting
            && !s.close_when_released
            && !s.close_after_reply
            && s.wait.is_none()
            && !s.block.holds_input()
            && s.tx.at_rest()
            && !s.meta.killed.load(Ordering::Relaxed)
    }

    fn moved(&self, cx: &mut Cx<'_, Msg>, conn: &mut Conn, to: ConnRef) {
        conn.session.conn = to;
        conn.session.meta.set_conn(to);
        if conn.session.meta.killed.load(Ordering::SeqCst) {
            // A CLIENT KILL went to the loop it left.
            cx.loops[cx.loop_index].send(Msg::Kill(conn.session.meta.clone()));
        }
    }

    fn closed(&self, cx: &mut Cx<'_, Msg>, conn: &mut Conn) {
        match &conn.bus {
            None => {
                self.srv.clients.remove(conn.session.id());
                blocked::closed(&self.srv, cx.loop_index, &mut conn.session);
            }
            Some(bus) if bus.repl || bus.sender => {
                replication_closed(&self.srv, cx.loop_index, bus, conn.session.conn);
            }
            Some(bus) => {
                if let (Side::Outbound { peer, .. }, Some(fwd)) = (&bus.side, &self.srv.forwarding)
                {
                    if *peer == crate::forward::STRANGER {
                        fwd.stranger_lost(cx.loop_index, conn.session.conn);
                    } else {
                        let t = self.srv.cluster.as_ref().map(|c| c.topology());
                        let name = t
                            .as_ref()
                            .and_then(|t| t.members.get(*peer as usize))
                            .map_or(String::new(), |m| m.spec.name.clone());
                        fwd.link_lost(cx.loop_index, *peer, &name);
                    }
                }
            }
        }
    }

    fn message(&self, cx: &mut Cx<'_, Msg>, conns: &mut Conns<'_, Conn>, msg: Msg) {
        match msg {
            Msg::Kill(meta) => {
                let r = meta.conn();
                if r.loop_index as usize == cx.loop_index {
                    conns.close(r, Close::Now);
                } else {
                    // It moved on: the loop it is on now closes it.
                    self.srv.send(r.loop_index as usize, Msg::Kill(meta));
                }
            }
            Msg::LogAcked(acked) => self.release_for_log(cx.loop_index, conns, acked),
            Msg::ReplWake => self.replication_news(cx.loop_index, conns, None),
            Msg::Blocking(note) => blocked::message(&self.srv, cx.loop_index, conns, note),
            Msg::Consensus { node, addr, msg } => {
                if let Some(fwd) = &self.srv.forwarding {
                    fwd.send_consensus(cx.loop_index, node, addr, &msg);
                }
            }
            Msg::Topology => self.topology_changed(cx.loop_index, conns),
        }
    }

    fn end_of_turn(&self, cx: &mut Cx<'_, Msg>, conns: &mut Conns<'_, Conn>) {
        let mut list = std::mem::take(&mut *self.srv.turn[cx.loop_index].lock());
        let persist = &self.srv.persist;
        if !list.is_empty() {
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
        if let Some(fwd) = &self.srv.forwarding {
            self.flush_forwards(cx.loop_index, conns, fwd);
        }
        if let Some(repl) = &self.srv.replication {
            self.pump_senders(cx.loop_index, conns, repl);
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
        if let Some(repl) = &srv.replication {
            self.replication_tick(cx.loop_index, conns, repl);
        }
        if let (Some(cluster), Some(fwd)) = (&srv.cluster, &srv.forwarding) {
            // A node that stopped answering (a partition keeps its TCP connection open
            // for minutes): what waits on it fails, as if the link broke.
            let t = cluster.topology();
            for peer in fwd.stalled(cx.loop_index, now, cluster.config.node_timeout) {
                let name = t
                    .members
                    .get(peer as usize)
                    .map_or("", |m| m.spec.name.as_str());
                if let Some(r) = fwd.abandon(cx.loop_index, peer, name) {
                    conns.close(r, Close::Now);
                }
            }
            if cx.loop_index == 0 {
                crate::membership::report(srv, &t);
            }
        }
        if srv.repl_waiters.any(cx.loop_index) {
            self.replication_news(cx.loop_index, conns, Some(now));
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

/// Cluster mode: a new membership was installed (`membership.rs`).
impl Service {
    /// Fails and closes the links to nodes that left the ring (their slots are served
    /// elsewhere now, and a partitioned node would let forwards wait for minutes), and
    /// closes and reopens the replication streams the new plan changes.
    fn topology_changed(&self, loop_index: usize, conns: &mut Conns<'_, Conn>) {
        let srv = &*self.srv;
        let (Some(cluster), Some(fwd)) = (&srv.cluster, &srv.forwarding) else {
            return;
        };
        let t = cluster.topology();
        for peer in 0..t.members.len() as u16 {
            if peer == t.myself || t.state(peer) == dse_cluster::membership::MemberState::Up {
                continue;
            }
            if let Some(r) = fwd.abandon(loop_index, peer, &t.spec(peer).name) {
                conns.close(r, Close::Now);
            }
        }
        fwd.epoch.store(t.epoch, Ordering::Relaxed);
        if let Some(repl) = &srv.replication {
            self.replication_tick(loop_index, conns, repl);
        }
    }
}

/// Cluster mode, at the end of a client batch: what the batch depends on (for WAIT), and
/// the replicas its writes must reach.
#[cold]
#[inline(never)]
fn batch_replicas(session: &mut Session, needed: Lsn) -> u64 {
    session.last_lsn = session.last_lsn.max(needed);
    crate::replication::take_batch_mask()
}

/// A replication connection closed: a stream from a primary (reopened by the tick) or
/// one to a replica (it no longer counts as live).
#[cold]
fn replication_closed(srv: &Server, loop_index: usize, bus: &BusConn, conn: ConnRef) {
    let Some(repl) = &srv.replication else { return };
    if let (true, Side::Outbound { peer, .. }) = (bus.repl, &bus.side) {
        repl.stream_closed(*peer, conn);
    }
    if bus.sender {
        repl.sender_closed(loop_index, conn);
    }
}

/// Replication (`replication.rs`): the streams' connections, writes held for replicas,
/// WAIT.
impl Service {
    /// The oldest held run waits for replicas only: listed until they acknowledge it.
    #[cold]
    fn wait_for_replicas(&self, loop_index: usize, s: &mut Session, r: ConnRef) {
        let (Some(q), Some((lsn, mask))) = (&self.srv.replication, s.held.front_quorum()) else {
            return;
        };
        if s.repl_waiting {
            return;
        }
        s.repl_waiting = true;
        let srv = &*self.srv;
        srv.repl_waiters.add(
            loop_index,
            r,
            || !q.acked_by(lsn, mask),
            |i| srv.send(i, Msg::ReplWake),
        );
    }

    /// A WAIT that could not answer at once: the connection's input stops until it does.
    #[cold]
    fn block_for_wait(&self, loop_index: usize, session: &mut Session, io: &mut Io<'_>) {
        io.pause = true;
        if session.repl_waiting {
            return;
        }
        session.repl_waiting = true;
        let srv = &*self.srv;
        let wait = session.wait;
        srv.repl_waiters.add(
            loop_index,
            session.conn,
            || match (wait, &srv.replication) {
                (Some(w), Some(q)) => q.count_acked(w.lsn) < w.replicas,
                _ => true,
            },
            |i| srv.send(i, Msg::ReplWake),
        );
    }

    /// Replicas acknowledged more (a message), or the tick (`now`: time limits too): the
    /// waiting connections of this loop release what they can and answer their WAITs.
    fn replication_news(&self, loop_index: usize, conns: &mut Conns<'_, Conn>, now: Option<u64>) {
        let srv = &*self.srv;
        if now.is_none() {
            srv.repl_waiters.woken(loop_index);
        }
        let waiting = srv.repl_waiters.take(loop_index);
        if waiting.is_empty() {
            return;
        }
        let acked = srv.persist.acked();
        let now_ms = now.unwrap_or_else(unix_ms);
        let fenced = srv.cluster.as_ref().is_some_and(|c| !c.writable());
        for r in waiting {
            let Some(ConnMut { state, out }) = conns.get(r) else {
                continue;
            };
            let bus = state.bus.is_some();
            let s = &mut state.session;
            s.repl_waiting = false;
            if let Some(q) = &srv.replication {
                let now = now.unwrap_or(now_ms);
                // A node that lost contact with the majority will not hear from its
                // replicas in time: its held writes answer at once.
                let timeout = if fenced {
                    0
                } else {
                    q.timeout_ms.load(Ordering::Relaxed)
                };
                let deadline = now.saturating_sub(timeout);
                // So do writes a membership change left without the stream that had to
                // acknowledge them.
                let doomed = |since, lsn, mask| since <= deadline || q.unreachable(lsn, mask);
                s.held.expire_quorum_where(doomed, |run| {
                    if bus {
                        crate::replication::bus_replies_as_errors(run)
                    } else {
                        crate::session::replies_as_errors(
                            run,
                            crate::replication::QUORUM_TIMEOUT_ERROR.as_bytes(),
                        )
                    }
                });
            }
            if let Some(w) = s.wait {
                let count = srv.replication.as_ref().map_or(0, |q| q.count_acked(w.lsn));
                if count >= w.replicas || (w.deadline != 0 && now_ms >= w.deadline) {
                    s.wait = None;
                    let reply = format!(":{count}\r\n");
                    if s.held.is_empty() {
                        out.extend_from_slice(reply.as_bytes());
                    } else {
                        s.held.push(0, reply.as_bytes(), &[]);
                    }
                    let resume = !s.paused_for_log;
                    if resume {
                        conns.resume(r);
                    }
                } else {
                    s.repl_waiting = true;
                    let wait = w;
                    srv.repl_waiters.add(
                        loop_index,
                        r,
                        || {
                            srv.replication
                                .as_ref()
                                .is_none_or(|q| q.count_acked(wait.lsn) < wait.replicas)
                        },
                        |i| srv.send(i, Msg::ReplWake),
                    );
                }
            }
            self.release(loop_index, conns, r, acked);
        }
    }

    /// End of the turn: the senders of this loop with something to send fill their
    /// connections' output (up to a limit; they go on once it drains).
    fn pump_senders(
        &self,
        loop_index: usize,
        conns: &mut Conns<'_, Conn>,
        repl: &crate::replication::Replication,
    ) {
        let busy = repl.busy_senders(loop_index);
        if busy.is_empty() {
            return;
        }
        let now = unix_ms();
        for r in busy {
            let Some(c) = conns.get(r) else { continue };
            if let Err(e) = repl.pump(loop_index, r, c.out, now) {
                tracing::warn!("replication stream: {e}; closing it");
                conns.close(r, Close::Now);
            }
        }
    }

    /// Opens the streams from this loop's primaries that are down, and closes those
    /// DEBUG REPL-DROP asked to.
    fn replication_tick(
        &self,
        loop_index: usize,
        conns: &mut Conns<'_, Conn>,
        repl: &crate::replication::Replication,
    ) {
        for r in repl.streams_to_drop(loop_index) {
            conns.close(r, Close::Now);
        }
        for r in repl.senders_to_close(loop_index) {
            conns.close(r, Close::Now);
        }
        repl.expire_grace(unix_ms());
        let (Some(fwd), Some(cluster)) = (&self.srv.forwarding, &self.srv.cluster) else {
            return;
        };
        let t = cluster.topology();
        for peer in repl.streams_to_open(loop_index, unix_ms()) {
            let Some(addr) = t.bus_addrs.get(peer as usize).copied().flatten() else {
                continue;
            };
            let mut hello = Vec::new();
            let Ok(initiator) =
                dse_cluster::bus::Initiator::start(&fwd.my_name, fwd.auth.clone(), &mut hello)
            else {
                continue;
            };
            let bus = BusConn::replication(peer, initiator, addr);
            if let Ok(r) = conns.connect(addr, self.outbound_conn(loop_index, bus, addr)) {
                if let Some(c) = conns.get(r) {
                    c.out.extend_from_slice(&hello);
                    c.state.session.conn = r;
                }
                repl.stream_opened(peer, r);
            }
        }
    }

    /// The state of a connection this node opens to another node.
    fn outbound_conn(&self, loop_index: usize, bus: BusConn, addr: std::net::SocketAddr) -> Conn {
        let placeholder = ConnRef {
            loop_index: loop_index as u32,
            token: u32::MAX,
            id: 0,
        };
        let meta = Arc::new(ClientMeta::new(
            placeholder,
            addr.to_string(),
            String::new(),
            unix_ms(),
        ));
        let mut session = Session::new(placeholder, meta);
        session.internal = true;
        Conn {
            framing: self.framing(),
            session,
            bus: Some(Box::new(bus)),
        }
    }

    /// A replication frame on a bus connection: a replica's ReplStart or ReplAck (we are
    /// its primary), or our primary's stream.
    fn replication_frame(
        &self,
        loop_index: usize,
        bus: &mut BusConn,
        conn: ConnRef,
        frame: &Frame<'_>,
    ) -> Result<(), String> {
        let srv = &*self.srv;
        let (Some(repl), Some(peer)) = (&srv.replication, bus.peer) else {
            return Err("this node does not replicate".into());
        };
        match (*frame, &bus.side) {
            (
                Frame::ReplStart {
                    from_lsn,
                    epoch,
                    have,
                },
                Side::Inbound { .. },
            ) if !bus.sender => {
                repl.start_sender(loop_index, conn, peer, from_lsn, epoch, &have.to_set())?;
                bus.sender = true;
                Ok(())
            }
            (Frame::ReplAck { lsn }, Side::Inbound { .. }) if bus.sender => {
                repl.on_ack(peer, lsn, unix_ms(), &srv.repl_waiters, |i| {
                    srv.send(i, Msg::ReplWake)
                });
                Ok(())
            }
            (_, Side::Outbound { .. }) if bus.repl => repl.receive(peer, frame, unix_ms()),
            _ => Err(format!("unexpected {} frame", frame.label())),
        }
    }
}

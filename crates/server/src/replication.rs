//! Replication: each slot's primary ships its logged writes to the slot's replicas, and a
//! write is acknowledged once `--write-quorum` copies hold it.
//!
//! ```text
//!  replica R (loop P % loops)                     primary P (any loop)
//!  outbound bus link ── ReplStart{from} ───────▶  inbound bus connection becomes a Sender:
//!                                                  from 0 (or a log that no longer reaches
//!                     ◀── SyncBegin{slots} ─────   back): the slots' contents shard by
//!                     ◀── SyncChunk ... ────────   shard, then SyncEnd{min shard LSN};
//!                     ◀── SyncEnd{lsn} ─────────   then the log tail from there (LogReader),
//!                     ◀── Records{lsn, ...} ────   each record cut down to R's slots
//!  applies through its own journal (its WAL)
//!  ReplAck{lsn} held until R's own log has it ──▶  acked[R] = lsn: releases the replies
//!                                                  that waited for R
//! ```
//!
//! Streams are per (primary, replica) pair and started by the replica. The replica keeps
//! the last primary LSN it applied in memory only: a reconnect in the same process resumes
//! after it, a restart asks for a full resync (a restarted node catches up before its
//! copies are trusted).
//!
//! Quorum: `Topology` gives each slot's replicas in ring order; a write to a slot this
//! node is primary for needs its first W-1 replicas (a bitmask of node indices). The
//! journal wrapper ([`QuorumJournal`]) refuses a write whose required replicas have no
//! live stream (`-NOREPLICAS`) and otherwise adds the mask to the running batch; the batch's
//! replies are held until the local log and every replica of the mask acknowledged the
//! batch's LSN, or answer an error after `--quorum-timeout` ms. Counting in ring order means
//! the node that takes a slot over (its first replica) holds every acknowledged write.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use dse_cluster::bus::{Frame, OpenFrame, SlotSet};
use dse_cluster::membership::{MemberState, Membership};
use dse_cluster::{SLOTS, key_slot};
use dse_engine::{Effect, Journal, JournalError, Lsn, Store, slot_in};
use dse_net::ConnRef;
use dse_persist::codec::{self, LoggedEffect};
use dse_persist::reader::{LogReader, ReadError};
use dse_persist::{Persistence, Wal};
use dse_proto::Args;
use parking_lot::Mutex;

use crate::cluster::{ClusterState, MAX_MEMBERS, Topology};
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};
use crate::session::WaitCall;

pub const COMMANDS: &[CommandSpec] = &[cmd("wait", 3, NOSCRIPT, wait).doc(
    "generic",
    "3.0.0",
    "O(1)",
    "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.",
)];

/// `WAIT numreplicas timeout` → the number of replica nodes (of the slots this node is
/// primary for) that acknowledged every write the connection made; blocks until there
/// are `numreplicas` of them or `timeout` ms passed (0: no limit), as Redis does. Inside
/// a transaction it answers at once. A standalone server has no replicas: 0.
fn wait(ctx: &mut Ctx, a: Args) -> CmdResult {
    let timeout = match dse_engine::parse_canonical_i64(&a[2]) {
        Some(t) if t < 0 => return Err(CmdError::Static("ERR timeout is negative")),
        Some(t) => t as u64,
        None => {
            return Err(CmdError::Static(
                "ERR timeout is not an integer or out of range",
            ));
        }
    };
    let replicas = crate::args::int(&a[1])?;
    let lsn = ctx.sess.last_lsn.max(dse_engine::observed_lsn());
    let count = ctx
        .srv
        .replication
        .as_ref()
        .map_or(0, |r| r.count_acked(lsn));
    if ctx.sess.tx.in_exec() || replicas <= count as i64 {
        ctx.out.int(count as i64);
        return Ok(());
    }
    ctx.sess.wait = Some(WaitCall {
        lsn,
        replicas: usize::try_from(replicas).unwrap_or(usize::MAX),
        deadline: if timeout == 0 {
            0
        } else {
            ctx.now.saturating_add(timeout)
        },
    });
    Ok(())
}

/// Bytes of unsent output past which a sender stops until the connection drains.
const OUT_HIGH: usize = 4 << 20;
/// Bytes of log read at a time for one Records frame.
const READ_BYTES: usize = 256 << 10;
/// A SyncChunk is cut once its entries pass this size.
const CHUNK_BYTES: usize = 256 << 10;
/// Between two attempts to open a stream to a primary.
const RETRY_MS: u64 = 250;
/// How long a replica whose stream a new membership closed still counts as live while it
/// opens the next one.
const RECONNECT_GRACE_MS: u64 = 2000;

/// The reply a held write gets when its replicas did not acknowledge it in time.
pub const QUORUM_TIMEOUT_ERROR: &str = "-NOREPLICAS Not enough good replicas acknowledged the write in time; it may have been \
     applied\r\n";

/// Held bus output (Replies frames of forwarded commands) with every reply replaced by
/// the quorum timeout error; other frames are kept as they are.
pub fn bus_replies_as_errors(bytes: &[u8]) -> Vec<u8> {
    let decoder = dse_cluster::bus::Decoder::new(dse_cluster::bus::DEFAULT_MAX_FRAME);
    let mut out = Vec::new();
    let mut at = 0;
    while let Ok(Some((frame, used))) = decoder.decode(&bytes[at..]) {
        match frame {
            Frame::Replies { id, replies } => {
                let f = OpenFrame::replies(&mut out, id);
                out.extend(crate::session::replies_as_errors(
                    replies,
                    QUORUM_TIMEOUT_ERROR.as_bytes(),
                ));
                let _ = f.finish(&mut out);
            }
            _ => out.extend_from_slice(&bytes[at..at + used]),
        }
        at += used;
    }
    out.extend_from_slice(&bytes[at..]);
    out
}

thread_local! {
    /// Replicas (bit per node) the writes of this thread's running batch must reach.
    static BATCH_MASK: Cell<u64> = const { Cell::new(0) };
}

/// The replicas the writes of the running batch must reach, and a fresh start.
#[inline]
pub fn take_batch_mask() -> u64 {
    BATCH_MASK.with(|c| c.replace(0))
}

/// The store's journal in cluster mode with a write quorum above 1: notes which replicas
/// each write must reach, and refuses a write one of them cannot (no live stream) before
/// anything is logged or applied.
pub struct QuorumJournal {
    inner: Box<dyn Journal>,
    plan: Arc<ArcSwap<Plan>>,
    live: Arc<AtomicU64>,
}

impl Journal for QuorumJournal {
    fn append(&self, effects: &[Effect<'_>]) -> Result<Lsn, JournalError> {
        let plan = self.plan.load();
        let mut need = 0;
        for e in effects {
            match e.key() {
                Some(key) => need |= plan.masks[key_slot(key) as usize],
                None => match e {
                    Effect::DropSlots { slots, .. } => {
                        for s in 0..SLOTS as u16 {
                            if slot_in(slots, s) {
                                need |= plan.masks[s as usize];
                            }
                        }
                    }
                    Effect::FlushAll => need |= plan.all,
                    _ => {}
                },
            }
        }
        if need & !self.live.load(Ordering::Acquire) != 0 {
            return Err(JournalError::NoReplicas);
        }
        let lsn = self.inner.append(effects)?;
        if need != 0 {
            BATCH_MASK.with(|c| c.set(c.get() | need));
        }
        Ok(lsn)
    }
}

/// Per loop: the connections whose held replies wait for replicas, and WAIT callers
/// (standalone too: WAIT there waits for its timeout).
pub struct Waiters {
    lists: Box<[Mutex<Vec<ConnRef>>]>,
    has: Box<[AtomicBool]>,
    /// A wake-up message is on its way to the loop (one per burst of events).
    wake_sent: Box<[AtomicBool]>,
}

impl Waiters {
    pub fn new(loops: usize) -> Waiters {
        Waiters {
            lists: (0..loops).map(|_| Mutex::new(Vec::new())).collect(),
            has: (0..loops).map(|_| AtomicBool::new(false)).collect(),
            wake_sent: (0..loops).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn wake(&self, loop_index: usize, send: &impl Fn(usize)) {
        if !self.wake_sent[loop_index].swap(true, Ordering::AcqRel) {
            send(loop_index);
        }
    }

    /// Wakes every loop with waiters.
    pub fn wake_all(&self, send: impl Fn(usize)) {
        // Pairs with the fence in `add`: either the loop sees the news when it checks
        // after registering, or this sees its registration.
        std::sync::atomic::fence(Ordering::SeqCst);
        for (i, has) in self.has.iter().enumerate() {
            if has.load(Ordering::Acquire) {
                self.wake(i, &send);
            }
        }
    }

    /// A loop got its wake-up: later events send another.
    pub fn woken(&self, loop_index: usize) {
        self.wake_sent[loop_index].store(false, Ordering::Release);
    }

    pub fn any(&self, loop_index: usize) -> bool {
        self.has[loop_index].load(Ordering::Acquire)
    }

    /// Registers `r`; `still_waiting` is checked once registered, so news that came
    /// just before is not missed.
    pub fn add(
        &self,
        loop_index: usize,
        r: ConnRef,
        still_waiting: impl Fn() -> bool,
        send: impl Fn(usize),
    ) {
        self.lists[loop_index].lock().push(r);
        self.has[loop_index].store(true, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        if !still_waiting() {
            self.wake(loop_index, &send);
        }
    }

    /// The connections waiting on this loop; the list is emptied (the caller re-registers
    /// those still waiting).
    pub fn take(&self, loop_index: usize) -> Vec<ConnRef> {
        let mut w = self.lists[loop_index].lock();
        self.has[loop_index].store(false, Ordering::Release);
        std::mem::take(&mut *w)
    }
}

/// What this node sends and receives under one topology: which slots it copies from
/// each primary, which of its slots each replica copies, and which replicas a write of
/// each slot must reach.
pub struct Plan {
    pub epoch: u64,
    /// Per node: the slots this node copies from it (`from`) and those it copies from
    /// this node (`to`).
    from: Vec<SlotSet>,
    to: Vec<SlotSet>,
    /// Per slot: the replicas (bit per node) a write must reach before its reply.
    masks: Box<[u64]>,
    /// Every mask's bits (FLUSHALL).
    all: u64,
    /// Nodes that are replicas of some slot this node is primary for (WAIT, INFO); not
    /// nodes still copying before they join.
    replica_nodes: u64,
    /// The slots this node is primary for or holds a copy of.
    held: SlotSet,
}

impl Plan {
    /// The plan of node `t.myself` under topology `t` with write quorum `quorum`.
    ///
    /// A slot's primary ships it to the slot's replicas, and also to every member that is
    /// Joining or Ready and will hold the slot once Up (it copies before it serves). The
    /// write quorum counts the first `quorum - 1` replicas in ring order, and every Ready
    /// member that will hold the slot: from the epoch a member is Ready on, every
    /// acknowledged write of its future slots reaches it, so it holds them all when it
    /// takes them over.
    pub fn new(t: &Topology, quorum: usize, replicas: usize) -> Plan {
        let me = t.myself;
        let mut from = vec![SlotSet::new(); MAX_MEMBERS];
        let mut to = vec![SlotSet::new(); MAX_MEMBERS];
        let mut masks = vec![0u64; SLOTS];
        let mut held = SlotSet::new();
        let mut replica_nodes = 0u64;
        // The rings of the members that copy before they join.
        let membership = Membership {
            epoch: t.epoch,
            members: t.members.clone(),
        };
        let joining: Vec<(u16, bool, dse_cluster::Ring)> = if t.serving {
            (0..t.members.len() as u16)
                .filter_map(|x| match t.state(x) {
                    MemberState::Joining => Some((x, false)),
                    MemberState::Ready => Some((x, true)),
                    _ => None,
                })
                .map(|(x, ready)| (x, ready, membership.ring_with(x, replicas)))
                .collect()
        } else {
            Vec::new()
        };
        if t.serving && t.is_member() {
            for slot in 0..SLOTS as u16 {
                let owners = t.ring.owners(slot);
                if owners.primary == me {
                    held.insert(slot);
                    for (i, &r) in owners.replicas().iter().enumerate() {
                        to[r as usize].insert(slot);
                        replica_nodes |= 1 << r;
                        if i + 1 < quorum {
                            masks[slot as usize] |= 1 << r;
                        }
                    }
                    for (x, ready, ring) in &joining {
                        if *x != me && ring.owners(slot).all().any(|n| n == *x) {
                            to[*x as usize].insert(slot);
                            if *ready && quorum > 1 {
                                masks[slot as usize] |= 1 << x;
                            }
                        }
                    }
                } else if owners.replicas().contains(&me) {
                    held.insert(slot);
                    from[owners.primary as usize].insert(slot);
                }
                if let Some(future) = &t.future
                    && owners.primary != me
                    && future.owners(slot).all().any(|n| n == me)
                {
                    held.insert(slot);
                    from[owners.primary as usize].insert(slot);
                }
            }
        }
        let all = masks.iter().fold(0, |a, &m| a | m);
        Plan {
            epoch: t.epoch,
            from,
            to,
            masks: masks.into(),
            all,
            replica_nodes,
            held,
        }
    }
}

/// The primary's side of one stream: what it sends next to one replica.
struct Sender {
    conn: ConnRef,
    peer: u16,
    /// The slots this stream carries, fixed when it started: a plan that changes them
    /// closes the stream (the replica opens a new one).
    slots: SlotSet,
    /// The epoch Records frames carry: the newest epoch such that every write this node
    /// made before it applied that epoch is in the frames sent so far. `pending` is a
    /// newer epoch and the log position the frames must pass before they carry it.
    epoch: u64,
    pending: Option<(u64, Lsn)>,
    state: SendState,
    /// A stream resumed from the log first confirms where it resumes (an empty Records
    /// frame), so the replica knows it is online before anything new is written; a new
    /// epoch is confirmed the same way.
    announce: bool,
    /// The plan no longer matches the stream: its loop closes it.
    close: bool,
}

enum SendState {
    /// Dumping `slots` shard by shard; `lsns[i]` is the last LSN assigned when shard `i`
    /// was dumped. The tail then starts at the smallest of them, or at `resume` (the
    /// replica's position for the slots it already had) if that is lower.
    Sync {
        next_shard: usize,
        lsns: Vec<Lsn>,
        slots: SlotSet,
        resume: Option<Lsn>,
    },
    /// Shipping the log. Until the reader passes `covered`'s highest LSN, a record's
    /// effect on a key of the dumped slots whose shard's dump already held it is skipped;
    /// effects on the slots the replica already had are skipped before `resume`.
    Tail {
        reader: LogReader,
        covered: Option<Covered>,
        resume: Lsn,
    },
}

/// What a resync's shard dumps hold: per shard, the last LSN its dump covers, and the
/// slots dumped.
struct Covered {
    lsns: Vec<Lsn>,
    slots: SlotSet,
}

/// How the replica's side of a stream stands (INFO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    Connecting,
    Syncing,
    Online,
}

/// The replica's side of the stream from one primary.
struct Inbound {
    conn: Option<ConnRef>,
    /// The primary's LSN through which everything of `have` was applied here.
    applied: Lsn,
    /// What the last ReplAck said.
    acked: Lsn,
    /// A resync completed in this process: a reconnect resumes from the log for `have`.
    synced: bool,
    /// The slots copied from this primary, complete through `applied`.
    have: SlotSet,
    /// A resync under way: the slots it copies (joining `have` at its end).
    syncing: SlotSet,
    /// The newest epoch of a Records frame applied on this connection.
    epoch_seen: u64,
    state: StreamState,
    last_try_ms: u64,
    /// `drop_gen` when the connection was opened (DEBUG REPL-DROP closes older ones).
    generation: u64,
    /// The plan changed this stream's slots: its loop closes it.
    close: bool,
}

pub struct Replication {
    /// Copies a write needs, the primary's included (`--write-quorum`).
    pub quorum: usize,
    /// `--replicas`.
    replicas: usize,
    /// `--quorum-timeout`, ms.
    pub timeout_ms: AtomicU64,
    loops: usize,
    /// What this node sends and receives now.
    plan: Arc<ArcSwap<Plan>>,
    /// Per node: the highest LSN of ours it acknowledged, and when (ms).
    acked: Box<[AtomicU64]>,
    ack_ms: Box<[AtomicU64]>,
    /// Per node: its streams from this node; `live` has a bit for each node with one.
    stream_counts: Mutex<Vec<u32>>,
    live: Arc<AtomicU64>,
    /// Per loop: the senders it runs, and whether it has any.
    senders: Box<[Mutex<Vec<Sender>>]>,
    has_senders: Box<[AtomicBool]>,
    inbound: Box<[Mutex<Inbound>]>,
    drop_gen: AtomicU64,
    /// When the plan last changed (ms), and per node until when it counts as live without
    /// a stream (see `sender_closed`).
    reconfigured_ms: AtomicU64,
    /// The last LSN assigned when the plan in force was installed: Records frames carry
    /// its epoch once they reach it.
    switch_lsn: AtomicU64,
    /// Per node: the recent plan changes of the slots it copies from this node, each as
    /// (last LSN assigned then, what it had acknowledged then, when in ms); `switched` has
    /// a bit for each node with any. See `unreachable`.
    switches: Box<[Mutex<Vec<Switch>>]>,
    switched: AtomicU64,
    grace_until: Box<[AtomicU64]>,
    pub sync_full: AtomicU64,
    pub sync_partial: AtomicU64,
    store: Arc<Store>,
    persist: Arc<Persistence>,
    wal: Arc<Wal>,
}

/// Why a frame from the bus cannot be handled: the connection closes.
pub type StreamError = String;

/// A plan change of the slots one replica copies: the last LSN assigned then, what the
/// replica had acknowledged then, and when (ms).
type Switch = (Lsn, Lsn, u64);

/// The epoch a Records frame through `through` carries: `pending` becomes the stream's
/// epoch once the frames pass the log position it waits for.
fn frame_epoch(epoch: &mut u64, pending: &mut Option<(u64, Lsn)>, through: Lsn) -> u64 {
    if let Some((e, at)) = *pending
        && through >= at
    {
        *epoch = e;
        *pending = None;
    }
    *epoch
}

/// A resync of every slot of a stream.
fn full_resync(slots: &SlotSet) -> SendState {
    SendState::Sync {
        next_shard: usize::MAX,
        lsns: Vec::new(),
        slots: slots.clone(),
        resume: None,
    }
}

impl Replication {
    /// Cluster mode's replication, or `None` when there is no log to ship from
    /// (`--appendonly no`: the node then neither sends nor receives copies).
    pub fn new(
        cluster: &ClusterState,
        loops: usize,
        timeout_ms: u64,
        store: Arc<Store>,
        persist: Arc<Persistence>,
    ) -> Option<Replication> {
        let Some(wal) = persist.wal().cloned() else {
            tracing::warn!(
                "--appendonly no: this node keeps no log to replicate from, so it neither \
                 sends nor receives replica copies"
            );
            return None;
        };
        let quorum = cluster.config.write_quorum;
        let replicas = cluster.config.replicas;
        let plan = Plan::new(&cluster.topology(), quorum, replicas);
        let per_loop = |_| Mutex::new(Vec::new());
        Some(Replication {
            quorum,
            replicas,
            timeout_ms: AtomicU64::new(timeout_ms),
            loops,
            plan: Arc::new(ArcSwap::from_pointee(plan)),
            acked: (0..MAX_MEMBERS).map(|_| AtomicU64::new(0)).collect(),
            ack_ms: (0..MAX_MEMBERS).map(|_| AtomicU64::new(0)).collect(),
            stream_counts: Mutex::new(vec![0; MAX_MEMBERS]),
            live: Arc::new(AtomicU64::new(0)),
            senders: (0..loops).map(per_loop).collect(),
            has_senders: (0..loops).map(|_| AtomicBool::new(false)).collect(),
            inbound: (0..MAX_MEMBERS)
                .map(|_| {
                    Mutex::new(Inbound {
                        conn: None,
                        applied: 0,
                        acked: 0,
                        synced: false,
                        have: SlotSet::new(),
                        syncing: SlotSet::new(),
                        epoch_seen: 0,
                        state: StreamState::Connecting,
                        last_try_ms: 0,
                        generation: 0,
                        close: false,
                    })
                })
                .collect(),
            drop_gen: AtomicU64::new(0),
            reconfigured_ms: AtomicU64::new(0),
            switch_lsn: AtomicU64::new(0),
            switches: (0..MAX_MEMBERS).map(|_| Mutex::new(Vec::new())).collect(),
            switched: AtomicU64::new(0),
            grace_until: (0..MAX_MEMBERS).map(|_| AtomicU64::new(0)).collect(),
            sync_full: AtomicU64::new(0),
            sync_partial: AtomicU64::new(0),
            store,
            persist,
            wal,
        })
    }

    /// The journal the store writes through: `inner` alone when no write waits for a
    /// replica (W = 1).
    pub fn journal(&self, inner: Box<dyn Journal>) -> Box<dyn Journal> {
        if self.quorum <= 1 {
            return inner;
        }
        Box::new(QuorumJournal {
            inner,
            plan: self.plan.clone(),
            live: self.live.clone(),
        })
    }

    /// The plan in force.
    pub fn plan(&self) -> arc_swap::Guard<Arc<Plan>> {
        self.plan.load()
    }

    /// The plan of topology `t`, to install with `widen` and then `reconfigure`.
    pub fn plan_for(&self, t: &Topology) -> Plan {
        Plan::new(t, self.quorum, self.replicas)
    }

    /// Before a new topology is installed: writes need the replicas of both the plan in
    /// force and `new` (a write routed by either topology runs meanwhile, and must reach
    /// the replicas its topology counts on).
    pub fn widen(&self, new: &Plan) {
        let old = self.plan.load_full();
        let masks: Box<[u64]> = old
            .masks
            .iter()
            .zip(new.masks.iter())
            .map(|(a, b)| a | b)
            .collect();
        self.plan.store(Arc::new(Plan {
            epoch: old.epoch,
            from: old.from.clone(),
            to: old.to.clone(),
            all: old.all | new.all,
            masks,
            replica_nodes: old.replica_nodes,
            held: old.held.clone(),
        }));
    }

    /// Once topology `t` is installed and no command routed by the previous one still
    /// runs: installs its plan `new`, and marks the streams it changes for their loops to
    /// close (`streams_to_drop`); the replicas reopen them, copying only the slots they
    /// lack. Senders whose slots stay confirm the new epoch once they have shipped what
    /// was written before it (everything up to the last LSN assigned now). Returns the
    /// slots this node held before and no longer holds (copies it may drop), when it is
    /// Up.
    pub fn reconfigure(&self, t: &Topology, new: Plan) -> SlotSet {
        let old = self.plan.load_full();
        for (p, slots) in new.from.iter().enumerate() {
            if *slots != old.from[p] {
                let mut st = self.inbound[p].lock();
                if st.conn.is_some() {
                    st.close = true;
                }
            }
        }
        let assigned = self.wal.assigned();
        let now = crate::server::unix_ms();
        let keep_ms = self.timeout_ms.load(Ordering::Relaxed) + 5_000;
        for (n, slots) in new.to.iter().enumerate() {
            if *slots == old.to[n] || old.to[n].is_empty() || n >= 64 {
                continue;
            }
            // Writes up to here that wait for `n` need the stream closing now.
            let mut switches = self.switches[n].lock();
            switches.retain(|&(_, _, at_ms)| now.saturating_sub(at_ms) < keep_ms);
            switches.push((assigned, self.acked[n].load(Ordering::Acquire), now));
            self.switched.fetch_or(1 << n, Ordering::AcqRel);
        }
        for (i, l) in self.senders.iter().enumerate() {
            let mut senders = l.lock();
            for sn in senders.iter_mut() {
                if sn.slots != new.to[sn.peer as usize] {
                    sn.close = true;
                } else {
                    sn.pending = Some((new.epoch, assigned));
                    sn.announce = true;
                }
            }
            if !senders.is_empty() {
                self.has_senders[i].store(true, Ordering::Release);
            }
        }
        let dropped = old.held.minus(&new.held);
        self.switch_lsn.store(assigned, Ordering::Release);
        self.plan.store(Arc::new(new));
        self.reconfigured_ms
            .store(crate::server::unix_ms(), Ordering::Release);
        let up = t.is_member() && t.state(t.myself) == MemberState::Up;
        if up { dropped } else { SlotSet::new() }
    }

    /// Where this node stands in copying the slots it holds from their primaries
    /// (what it reports to the cluster while it joins): every stream has finished its
    /// resync (`caught_up`), and moreover each primary has shipped everything it wrote
    /// before it applied `epoch` (`synced_to_epoch`).
    pub fn catch_up(&self, epoch: u64) -> (bool, bool) {
        let plan = self.plan.load();
        let mut caught_up = true;
        let mut synced = true;
        for (p, slots) in plan.from.iter().enumerate() {
            if slots.is_empty() {
                continue;
            }
            let st = self.inbound[p].lock();
            let online = st.conn.is_some()
                && st.synced
                && st.state == StreamState::Online
                && st.syncing.is_empty()
                && slots.minus(&st.have).is_empty();
            caught_up &= online;
            synced &= online && st.epoch_seen >= epoch;
        }
        (caught_up, synced)
    }

    /// Whether every replica of `mask` acknowledged `lsn`.
    #[inline]
    pub fn acked_by(&self, lsn: Lsn, mask: u64) -> bool {
        let mut m = mask;
        while m != 0 {
            let n = m.trailing_zeros() as usize;
            if self.acked[n].load(Ordering::Acquire) < lsn {
                return false;
            }
            m &= m - 1;
        }
        mask & self.switched.load(Ordering::Acquire) == 0 || !self.unreachable(lsn, mask)
    }

    /// Whether a write logged at `lsn` that needs the replicas of `mask` can no longer be
    /// acknowledged: a new membership changed the slots one of them copies from this node
    /// after the write, and the stream that carried it closed before acknowledging it.
    /// (The next stream acknowledges LSNs too, but of other slots: its acknowledgement
    /// says nothing of this write.)
    pub fn unreachable(&self, lsn: Lsn, mask: u64) -> bool {
        let mut m = mask & self.switched.load(Ordering::Acquire);
        while m != 0 {
            let n = m.trailing_zeros() as usize;
            let switches = self.switches[n].lock();
            if let Some(&(_, acked_then, _)) = switches.iter().find(|(at, _, _)| lsn <= *at)
                && acked_then < lsn
            {
                return true;
            }
            m &= m - 1;
        }
        false
    }

    /// WAIT: replica nodes (of this node's slots) that acknowledged `lsn`; for 0, those
    /// with a live stream.
    pub fn count_acked(&self, lsn: Lsn) -> usize {
        let live = self.live.load(Ordering::Acquire);
        let replica_nodes = self.plan.load().replica_nodes;
        (0..64)
            .filter(|&n| replica_nodes & (1 << n) != 0)
            .filter(|&n| {
                if lsn == 0 {
                    live & (1 << n) != 0
                } else {
                    self.acked[n].load(Ordering::Acquire) >= lsn
                }
            })
            .count()
    }

    /// Nodes that copy slots of this node, and those with a live stream (INFO).
    pub fn replica_counts(&self) -> (usize, usize) {
        let replica_nodes = self.plan.load().replica_nodes;
        let live = self.live.load(Ordering::Acquire) & replica_nodes;
        (
            replica_nodes.count_ones() as usize,
            live.count_ones() as usize,
        )
    }

    /// The log wrote more: loops with senders ship it (their `end_of_turn` runs after the
    /// message).
    pub fn log_advanced(&self, waiters: &Waiters, send: impl Fn(usize)) {
        for (i, has) in self.has_senders.iter().enumerate() {
            if has.load(Ordering::Acquire) {
                waiters.wake(i, &send);
            }
        }
    }

    // --- the primary's side ---

    /// A replica asked for our log from `from_lsn` on (0: a full resync), holding the
    /// slots of `have` up to `from_lsn - 1`, in membership epoch `epoch`, on connection
    /// `conn` of loop `loop_index`. Refused when the epochs differ (one side has not
    /// applied the latest membership yet: the replica tries again) or the peer copies
    /// nothing of ours.
    #[allow(clippy::too_many_arguments)]
    pub fn start_sender(
        &self,
        loop_index: usize,
        conn: ConnRef,
        peer: u16,
        from_lsn: Lsn,
        epoch: u64,
        have: &SlotSet,
    ) -> Result<(), StreamError> {
        let plan = self.plan.load();
        if epoch != plan.epoch {
            return Err(format!(
                "the replica asks in membership epoch {epoch}, this node is in {}",
                plan.epoch
            ));
        }
        let slots = plan.to[peer as usize].clone();
        if slots.is_empty() {
            return Err("the peer copies no slot of this node".into());
        }
        let resumable = from_lsn != 0 && from_lsn <= self.wal.assigned() + 1;
        let kept = if resumable {
            have.intersect(&slots)
        } else {
            SlotSet::new()
        };
        let missing = slots.minus(&kept);
        let state = if missing.is_empty() {
            self.sync_partial.fetch_add(1, Ordering::Relaxed);
            SendState::Tail {
                reader: LogReader::new(self.wal.clone(), from_lsn),
                covered: None,
                resume: from_lsn,
            }
        } else {
            if kept.is_empty() {
                self.sync_full.fetch_add(1, Ordering::Relaxed);
            } else {
                self.sync_partial.fetch_add(1, Ordering::Relaxed);
            }
            SendState::Sync {
                next_shard: usize::MAX,
                lsns: Vec::new(),
                slots: missing,
                resume: (!kept.is_empty()).then_some(from_lsn),
            }
        };
        let announce = matches!(state, SendState::Tail { .. });
        // Frames carry this epoch only once they hold everything written before this
        // node applied it (a stream opened later still starts behind that point).
        self.senders[loop_index].lock().push(Sender {
            conn,
            peer,
            slots,
            epoch: epoch.saturating_sub(1),
            pending: Some((epoch, self.switch_lsn.load(Ordering::Acquire))),
            state,
            announce,
            close: false,
        });
        self.has_senders[loop_index].store(true, Ordering::Release);
        let mut counts = self.stream_counts.lock();
        counts[peer as usize] += 1;
        if peer < 64 {
            self.live.fetch_or(1 << peer, Ordering::AcqRel);
        }
        Ok(())
    }

    /// A sender's connection closed.
    pub fn sender_closed(&self, loop_index: usize, conn: ConnRef) {
        let mut senders = self.senders[loop_index].lock();
        let Some(i) = senders.iter().position(|s| s.conn == conn) else {
            return;
        };
        let peer = senders.swap_remove(i).peer;
        self.has_senders[loop_index].store(!senders.is_empty(), Ordering::Release);
        drop(senders);
        let mut counts = self.stream_counts.lock();
        counts[peer as usize] -= 1;
        if counts[peer as usize] == 0 && peer < 64 {
            let now = crate::server::unix_ms();
            if now < self.reconfigured_ms.load(Ordering::Acquire) + RECONNECT_GRACE_MS {
                // A new membership closed the stream and the replica is opening the next
                // one: writes wait for it rather than fail (see `expire_grace`).
                self.grace_until[peer as usize].store(now + RECONNECT_GRACE_MS, Ordering::Release);
            } else {
                self.live.fetch_and(!(1 << peer), Ordering::AcqRel);
            }
        }
    }

    /// A replica whose stream a membership change closed and that has not opened a new
    /// one within the grace no longer counts as live: writes that need it are refused.
    pub fn expire_grace(&self, now_ms: u64) {
        let counts = self.stream_counts.lock();
        for (peer, until) in self.grace_until.iter().enumerate() {
            let t = until.load(Ordering::Acquire);
            if t == 0 {
                continue;
            }
            if counts[peer] > 0 {
                until.store(0, Ordering::Release);
            } else if now_ms >= t {
                until.store(0, Ordering::Release);
                self.live.fetch_and(!(1 << peer), Ordering::AcqRel);
            }
        }
    }

    /// A replica acknowledged our log through `lsn`: wakes the loops whose clients wait
    /// for replicas.
    pub fn on_ack(
        &self,
        peer: u16,
        lsn: Lsn,
        now_ms: u64,
        waiters: &Waiters,
        send: impl Fn(usize),
    ) {
        let n = peer as usize;
        self.ack_ms[n].store(now_ms, Ordering::Relaxed);
        if self.acked[n].fetch_max(lsn, Ordering::AcqRel) < lsn {
            waiters.wake_all(send);
        }
    }

    /// The senders of this loop that have something to send now (or must close):
    /// their connections.
    pub fn busy_senders(&self, loop_index: usize) -> Vec<ConnRef> {
        if !self.has_senders[loop_index].load(Ordering::Acquire) {
            return Vec::new();
        }
        let written = self.wal.written();
        self.senders[loop_index]
            .lock()
            .iter()
            .filter(|s| {
                s.close
                    || s.announce
                    || match &s.state {
                        SendState::Sync { .. } => true,
                        SendState::Tail { reader, .. } => reader.position() <= written,
                    }
            })
            .map(|s| s.conn)
            .collect()
    }

    /// Sends what the sender on `conn` has, into `out`, until caught up or `out` is full.
    /// An error closes the connection (the stream no longer fits the plan, or the log
    /// cannot be read).
    pub fn pump(
        &self,
        loop_index: usize,
        conn: ConnRef,
        out: &mut Vec<u8>,
        now: u64,
    ) -> Result<(), StreamError> {
        let mut senders = self.senders[loop_index].lock();
        let Some(s) = senders.iter_mut().find(|s| s.conn == conn) else {
            return Ok(());
        };
        if s.close {
            return Err("the membership changed the slots this stream carries".into());
        }
        let Sender {
            slots,
            epoch,
            pending,
            state,
            announce,
            ..
        } = s;
        if std::mem::take(announce)
            && let SendState::Tail { reader, .. } = &*state
        {
            let lsn = reader.position() - 1;
            let f = OpenFrame::records(out, lsn, frame_epoch(epoch, pending, lsn));
            let _ = f.finish(out);
        }
        let mut records = Vec::new();
        while out.len() < OUT_HIGH {
            match state {
                SendState::Sync {
                    next_shard,
                    lsns,
                    slots: dumping,
                    resume,
                } => {
                    if *next_shard == usize::MAX {
                        Frame::SyncBegin {
                            slots: dumping.view(),
                        }
                        .encode(out)
                        .map_err(|e| e.to_string())?;
                        *next_shard = 0;
                        continue;
                    }
                    if *next_shard == self.store.shard_count() {
                        let min = lsns.iter().copied().min().unwrap_or(0);
                        Frame::SyncEnd { lsn: min }
                            .encode(out)
                            .map_err(|e| e.to_string())?;
                        let start = resume.map_or(min + 1, |r| r.min(min + 1));
                        *state = SendState::Tail {
                            reader: LogReader::new(self.wal.clone(), start),
                            covered: Some(Covered {
                                lsns: std::mem::take(lsns),
                                slots: std::mem::take(dumping),
                            }),
                            resume: resume.unwrap_or(0),
                        };
                        continue;
                    }
                    let lsn = self.dump_shard(*next_shard, dumping, out, now);
                    lsns.push(lsn);
                    *next_shard += 1;
                }
                SendState::Tail {
                    reader,
                    covered,
                    resume,
                } => {
                    if reader.caught_up() {
                        break;
                    }
                    records.clear();
                    match reader.read(READ_BYTES, &mut records) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(ReadError::Gone { .. }) => {
                            self.sync_full.fetch_add(1, Ordering::Relaxed);
                            *state = full_resync(slots);
                            continue;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                    let through = reader.position() - 1;
                    let start = out.len();
                    let frame =
                        OpenFrame::records(out, through, frame_epoch(epoch, pending, through));
                    let mut resync = false;
                    for (lsn, payload) in &records {
                        if !self.ship_record(
                            *lsn,
                            payload,
                            slots,
                            covered.as_ref(),
                            *resume,
                            out,
                        )? {
                            resync = true;
                            break;
                        }
                    }
                    if resync {
                        // A slot drop among records a shard dump partly holds: only a new
                        // dump is certain to be right.
                        frame.abandon(out);
                        out.truncate(start);
                        self.sync_full.fetch_add(1, Ordering::Relaxed);
                        *state = full_resync(slots);
                        continue;
                    }
                    frame.finish(out).map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The senders of this loop that the plan no longer fits: their connections, for the
    /// loop to close.
    pub fn senders_to_close(&self, loop_index: usize) -> Vec<ConnRef> {
        if !self.has_senders[loop_index].load(Ordering::Acquire) {
            return Vec::new();
        }
        self.senders[loop_index]
            .lock()
            .iter()
            .filter(|s| s.close)
            .map(|s| s.conn)
            .collect()
    }

    /// Appends SyncChunk frames with the entries of shard `index` in `slots`; returns the
    /// last LSN assigned while the shard's read lock was held (the dump holds exactly the
    /// shard's records up to it, as a snapshot's does).
    fn dump_shard(&self, index: usize, slots: &SlotSet, out: &mut Vec<u8>, now: u64) -> Lsn {
        let mut chunk = Vec::new();
        let mut frames = Vec::new();
        let lsn = {
            let g = self.store.read_shard(index);
            let lsn = self.persist.assigned();
            for e in g.iter(now) {
                if !slots.contains(key_slot(e.key())) {
                    continue;
                }
                codec::put_bytes(&mut chunk, e.key());
                codec::put_u64(&mut chunk, e.expire_at().unwrap_or(0));
                codec::encode_value(&mut chunk, e.value());
                if chunk.len() >= CHUNK_BYTES {
                    frames.push(std::mem::take(&mut chunk));
                }
            }
            lsn
        };
        if !chunk.is_empty() {
            frames.push(chunk);
        }
        for payload in frames {
            let f = OpenFrame::sync_chunk(out);
            out.extend_from_slice(&payload);
            let _ = f.finish(out);
        }
        lsn
    }

    /// Appends record `lsn` cut down to the effects on `slots` (and not already in a shard
    /// dump, nor before `resume` for the slots the replica had) to a Records frame. False
    /// when the record drops slots that a dump partly covers (the caller starts a new full
    /// resync).
    fn ship_record(
        &self,
        lsn: Lsn,
        payload: &[u8],
        slots: &SlotSet,
        covered: Option<&Covered>,
        resume: Lsn,
        out: &mut Vec<u8>,
    ) -> Result<bool, StreamError> {
        if codec::is_tx_marker(payload) {
            return Ok(true);
        }
        let effects = codec::decode_effects(payload)
            .map_err(|e| format!("undecodable log record {lsn}: {e}"))?;
        // Whether the replica already has this record's effect on `slot` (`key`'s shard).
        let has = |slot: u16, key: Option<&[u8]>| match covered {
            Some(c) if c.slots.contains(slot) => match key {
                Some(key) => c.lsns[self.store.shard_of(self.store.hash(key))] >= lsn,
                None => false,
            },
            _ => lsn < resume,
        };
        let mut kept = Vec::with_capacity(effects.len());
        let mut whole = true;
        for e in effects {
            match &e {
                LoggedEffect::DropSlots { .. } | LoggedEffect::FlushAll => {
                    let mut bits = [0u8; codec::SLOT_BITMAP_BYTES];
                    let mut any = false;
                    for s in slots.iter() {
                        let dropped = match &e {
                            LoggedEffect::DropSlots { slots } => slot_in(slots, s),
                            _ => true,
                        };
                        if dropped && !has(s, None) {
                            bits[s as usize / 8] |= 1 << (s % 8);
                            any = true;
                        }
                    }
                    if any && covered.is_some_and(|c| c.lsns.iter().any(|&l| l >= lsn)) {
                        return Ok(false);
                    }
                    whole = false;
                    if any {
                        kept.push(LoggedEffect::DropSlots {
                            slots: bits.to_vec().into(),
                        });
                    }
                }
                _ => match e.key() {
                    Some(key) => {
                        let slot = key_slot(key);
                        if slots.contains(slot) && !has(slot, Some(key)) {
                            kept.push(e);
                        } else {
                            whole = false;
                        }
                    }
                    None => whole = false,
                },
            }
        }
        if kept.is_empty() {
            return Ok(true);
        }
        out.extend_from_slice(&lsn.to_le_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        if whole {
            out.extend_from_slice(payload);
        } else {
            codec::with_effects(&kept, key_slot, |e| codec::encode_effects(out, e));
        }
        let len = (out.len() - len_at - 4) as u32;
        out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
        Ok(true)
    }

    // --- the replica's side ---

    /// Primaries this loop should open a stream to now (those it owns without one, not
    /// tried in the last moment); marks them tried.
    pub fn streams_to_open(&self, loop_index: usize, now_ms: u64) -> Vec<u16> {
        let mut due = Vec::new();
        let plan = self.plan.load();
        for (p, slots) in plan.from.iter().enumerate() {
            if slots.is_empty() || p % self.loops != loop_index {
                continue;
            }
            let mut st = self.inbound[p].lock();
            if st.conn.is_none() && now_ms.saturating_sub(st.last_try_ms) >= RETRY_MS {
                st.last_try_ms = now_ms;
                due.push(p as u16);
            }
        }
        due
    }

    /// Streams of this loop that DEBUG REPL-DROP asked to close, or that the plan no
    /// longer fits.
    pub fn streams_to_drop(&self, loop_index: usize) -> Vec<ConnRef> {
        let generation = self.drop_gen.load(Ordering::Acquire);
        self.inbound
            .iter()
            .enumerate()
            .filter(|(p, _)| p % self.loops == loop_index)
            .filter_map(|(_, st)| {
                let st = st.lock();
                st.conn.filter(|_| st.generation != generation || st.close)
            })
            .collect()
    }

    /// DEBUG REPL-DROP: every stream this node receives is closed (and reopened, resuming
    /// from the log).
    pub fn drop_streams(&self) {
        self.drop_gen.fetch_add(1, Ordering::AcqRel);
    }

    /// A connection to primary `peer` was opened for its stream.
    pub fn stream_opened(&self, peer: u16, conn: ConnRef) {
        let mut st = self.inbound[peer as usize].lock();
        st.conn = Some(conn);
        st.generation = self.drop_gen.load(Ordering::Acquire);
        st.state = StreamState::Connecting;
        st.close = false;
        st.epoch_seen = 0;
    }

    /// The stream from `peer` is authenticated: the ReplStart to send. It resumes from
    /// the log for the slots this node already copied from `peer` (and still should),
    /// and asks for the others whole.
    pub fn stream_start(&self, peer: u16, out: &mut Vec<u8>) {
        let plan = self.plan.load();
        let mut st = self.inbound[peer as usize].lock();
        let want = &plan.from[peer as usize];
        st.have = st.have.intersect(want);
        let (from_lsn, have) = if st.synced && !st.have.is_empty() {
            (st.applied + 1, st.have.clone())
        } else {
            st.have = SlotSet::new();
            (0, SlotSet::new())
        };
        let _ = Frame::ReplStart {
            from_lsn,
            epoch: plan.epoch,
            have: have.view(),
        }
        .encode(out);
    }

    /// The connection of the stream from `peer` closed.
    pub fn stream_closed(&self, peer: u16, conn: ConnRef) {
        let mut st = self.inbound[peer as usize].lock();
        if st.conn == Some(conn) {
            st.conn = None;
            st.state = StreamState::Connecting;
            st.close = false;
            // A resync cut short leaves its slots incomplete.
            let partial = std::mem::take(&mut st.syncing);
            st.have = st.have.minus(&partial);
        }
    }

    /// Whether `conn` carries the stream from `peer`.
    pub fn is_stream(&self, peer: u16, conn: ConnRef) -> bool {
        self.inbound
            .get(peer as usize)
            .is_some_and(|st| st.lock().conn == Some(conn))
    }

    /// Applies a replication frame from primary `peer`.
    pub fn receive(&self, peer: u16, frame: &Frame<'_>, now: u64) -> Result<(), StreamError> {
        let mut st = self.inbound[peer as usize].lock();
        match *frame {
            Frame::SyncBegin { slots } => {
                st.state = StreamState::Syncing;
                let slots = slots.to_set();
                // The slots copied whole replace whatever this node held of them; a copy
                // of them from this primary that it had (a full resync) goes too.
                st.have = st.have.minus(&slots);
                if st.have.is_empty() {
                    st.synced = false;
                }
                self.store
                    .drop_slots(slots.view().as_bytes(), key_slot)
                    .map_err(|e| e.to_string())?;
                st.syncing = slots;
            }
            Frame::SyncChunk { payload } => self.apply_chunk(payload, now)?,
            Frame::SyncEnd { lsn } => {
                // The slots kept are complete through `applied`, those copied through
                // `lsn`: together, through the lower of the two.
                st.applied = if st.synced { st.applied.min(lsn) } else { lsn };
                let synced = std::mem::take(&mut st.syncing);
                st.have.union_with(&synced);
                st.synced = true;
                st.state = StreamState::Online;
            }
            Frame::Records {
                lsn,
                epoch,
                payload,
            } => {
                if !st.synced {
                    return Err("Records before the end of the resync".into());
                }
                st.epoch_seen = st.epoch_seen.max(epoch);
                let mut r = codec::Reader::new(payload);
                while !r.is_empty() {
                    let bad = |e: codec::DecodeError| format!("malformed Records frame: {e}");
                    let rec = r.u64().map_err(bad)?;
                    let len = r.u32().map_err(bad)? as usize;
                    let bytes = r.take(len).map_err(bad)?;
                    let effects = codec::decode_effects(bytes)
                        .map_err(|e| format!("undecodable record {rec}: {e}"))?;
                    self.apply(&effects, now)?;
                    st.applied = st.applied.max(rec);
                }
                st.applied = st.applied.max(lsn);
                st.state = StreamState::Online;
            }
            _ => return Err(format!("unexpected {} frame", frame.label())),
        }
        Ok(())
    }

    /// A record from the primary, logged here as one record of ours.
    fn apply(&self, effects: &[LoggedEffect], now: u64) -> Result<(), StreamError> {
        let is_drop = |e: &LoggedEffect| matches!(e, LoggedEffect::DropSlots { .. });
        if effects.iter().any(is_drop) {
            // Slot drops are records of their own on the primary; apart from keyed
            // effects, should one ever come with them.
            for e in effects {
                if let LoggedEffect::DropSlots { slots } = e {
                    self.store
                        .drop_slots(slots, key_slot)
                        .map_err(|e| e.to_string())?;
                }
            }
            let keyed: Vec<LoggedEffect> =
                effects.iter().filter(|e| !is_drop(e)).cloned().collect();
            return if keyed.is_empty() {
                Ok(())
            } else {
                self.apply(&keyed, now)
            };
        }
        codec::with_effects(effects, key_slot, |es| {
            let hashes: Vec<_> = es
                .iter()
                .filter_map(|e| e.key())
                .map(|k| self.store.hash(k))
                .collect();
            self.store.write_many(hashes).commit(es, now).map(|_| ())
        })
        .map_err(|e| e.to_string())
    }

    /// The entries of a SyncChunk, logged here as one record.
    fn apply_chunk(&self, payload: &[u8], now: u64) -> Result<(), StreamError> {
        let bad = |e: codec::DecodeError| format!("malformed SyncChunk: {e}");
        let mut r = codec::Reader::new(payload);
        let mut entries = Vec::new();
        while !r.is_empty() {
            let key = r.bytes().map_err(bad)?;
            let expire_at = r.u64().map_err(bad)?;
            let value = r.value().map_err(bad)?;
            entries.push((key, value, expire_at));
        }
        let effects: Vec<Effect<'_>> = entries
            .iter()
            .map(|(key, value, expire_at)| Effect::SetValue {
                key,
                value,
                expire_at: *expire_at,
            })
            .collect();
        let hashes: Vec<_> = entries.iter().map(|(k, _, _)| self.store.hash(k)).collect();
        self.store
            .write_many(hashes)
            .commit(&effects, now)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Appends a ReplAck for what was applied from `peer` since the last one (the caller
    /// holds it until this node's log acknowledges what it wrote).
    pub fn ack(&self, peer: u16, out: &mut Vec<u8>) {
        let mut st = self.inbound[peer as usize].lock();
        if st.synced && st.applied > st.acked {
            st.acked = st.applied;
            let _ = Frame::ReplAck { lsn: st.applied }.encode(out);
        }
    }

    // --- INFO ---

    /// `slaveN:` lines of INFO replication, and the streams this node receives.
    pub fn info(&self, cluster: &ClusterState, now_ms: u64, out: &mut String) {
        use std::fmt::Write as _;
        let t = cluster.topology();
        let plan = self.plan.load();
        let mut online = vec![None; t.members.len()];
        for l in self.senders.iter() {
            for s in l.lock().iter() {
                let state = match s.state {
                    SendState::Sync { .. } => "send_bulk",
                    SendState::Tail { .. } => "online",
                };
                // An online stream wins over an older one still syncing.
                if (s.peer as usize) < online.len() && online[s.peer as usize] != Some("online") {
                    online[s.peer as usize] = Some(state);
                }
            }
        }
        let mut i = 0;
        for (n, state) in online.iter().enumerate() {
            let Some(state) = state else { continue };
            let spec = t.spec(n as u16);
            let lag = now_ms.saturating_sub(self.ack_ms[n].load(Ordering::Relaxed)) / 1000;
            let _ = write!(
                out,
                "slave{i}:ip={},port={},state={state},offset={},lag={lag},name={}\r\n",
                spec.host,
                spec.port,
                self.acked[n].load(Ordering::Relaxed),
                spec.name
            );
            i += 1;
        }
        let _ = write!(
            out,
            "sync_full:{}\r\nsync_partial_ok:{}\r\nrepl_write_quorum:{}\r\n",
            self.sync_full.load(Ordering::Relaxed),
            self.sync_partial.load(Ordering::Relaxed),
            self.quorum
        );
        let mut k = 0;
        for (p, slots) in plan.from.iter().enumerate() {
            if slots.is_empty() || p >= t.members.len() {
                continue;
            }
            let st = self.inbound[p].lock();
            let state = match st.state {
                StreamState::Connecting => "connecting",
                StreamState::Syncing => "sync",
                StreamState::Online => "online",
            };
            let _ = write!(
                out,
                "master{k}:name={},state={state},offset={},slots={}\r\n",
                t.spec(p as u16).name,
                st.applied,
                slots.len()
            );
            k += 1;
        }
    }
}

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

use dse_cluster::bus::{Frame, OpenFrame, SlotSet};
use dse_cluster::{SLOTS, key_slot};
use dse_engine::{Effect, Journal, JournalError, Lsn, Store, slot_in};
use dse_net::ConnRef;
use dse_persist::codec::{self, LoggedEffect};
use dse_persist::reader::{LogReader, ReadError};
use dse_persist::{Persistence, Wal};
use dse_proto::Args;
use parking_lot::Mutex;

use crate::cluster::ClusterState;
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
    masks: Arc<[u64]>,
    all: u64,
    live: Arc<AtomicU64>,
}

impl Journal for QuorumJournal {
    fn append(&self, effects: &[Effect<'_>]) -> Result<Lsn, JournalError> {
        let mut need = 0;
        for e in effects {
            match e.key() {
                Some(key) => need |= self.masks[key_slot(key) as usize],
                None => match e {
                    Effect::DropSlots { slots, .. } => {
                        for s in 0..SLOTS as u16 {
                            if slot_in(slots, s) {
                                need |= self.masks[s as usize];
                            }
                        }
                    }
                    Effect::FlushAll => need |= self.all,
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

/// The primary's side of one stream: what it sends next to one replica.
struct Sender {
    conn: ConnRef,
    peer: u16,
    state: SendState,
    /// A stream resumed from the log first confirms where it resumes (an empty Records
    /// frame), so the replica knows it is online before anything new is written.
    announce: bool,
}

enum SendState {
    /// Dumping the replica's slots shard by shard; `lsns[i]` is the last LSN assigned
    /// when shard `i` was dumped.
    Sync { next_shard: usize, lsns: Vec<Lsn> },
    /// Shipping the log. Until the reader passes `covered`'s highest LSN, a record's
    /// effect on a key whose shard's dump already held it is skipped.
    Tail {
        reader: LogReader,
        covered: Option<Vec<Lsn>>,
    },
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
    /// The primary's LSN through which everything of ours was applied here.
    applied: Lsn,
    /// What the last ReplAck said.
    acked: Lsn,
    /// A full resync completed in this process: a reconnect resumes from the log.
    synced: bool,
    state: StreamState,
    last_try_ms: u64,
    /// `drop_gen` when the connection was opened (DEBUG REPL-DROP closes older ones).
    generation: u64,
}

pub struct Replication {
    /// Copies a write needs, the primary's included (`--write-quorum`).
    pub quorum: usize,
    /// `--quorum-timeout`, ms.
    pub timeout_ms: AtomicU64,
    myself: u16,
    loops: usize,
    masks: Arc<[u64]>,
    /// Nodes that copy a slot this node is primary for.
    replica_nodes: u64,
    /// Per node `n`: the slots this node copies from `n` (`from`) and those `n` copies
    /// from this node (`to`).
    from: Vec<SlotSet>,
    to: Vec<SlotSet>,
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
    pub sync_full: AtomicU64,
    pub sync_partial: AtomicU64,
    store: Arc<Store>,
    persist: Arc<Persistence>,
    wal: Arc<Wal>,
}

/// Why a frame from the bus cannot be handled: the connection closes.
pub type StreamError = String;

impl Replication {
    /// Cluster mode's replication, or `None` when there is nothing to replicate or no log
    /// to ship it from (`--appendonly no`: the node then neither sends nor receives).
    pub fn new(
        cluster: &ClusterState,
        loops: usize,
        timeout_ms: u64,
        store: Arc<Store>,
        persist: Arc<Persistence>,
    ) -> Option<Replication> {
        let t = &cluster.topology;
        let nodes = t.ring.nodes().len();
        let me = t.myself;
        let mut from = vec![SlotSet::new(); nodes];
        let mut to = vec![SlotSet::new(); nodes];
        let mut masks = vec![0u64; SLOTS];
        let quorum = cluster.config.write_quorum;
        let mut any = false;
        for slot in 0..SLOTS as u16 {
            let owners = t.ring.owners(slot);
            if owners.primary == me {
                for (i, &r) in owners.replicas().iter().enumerate() {
                    to[r as usize].insert(slot);
                    any = true;
                    if i + 1 < quorum && r < 64 {
                        masks[slot as usize] |= 1 << r;
                    }
                }
            } else if owners.replicas().contains(&me) {
                from[owners.primary as usize].insert(slot);
                any = true;
            }
        }
        if !any {
            return None;
        }
        let Some(wal) = persist.wal().cloned() else {
            tracing::warn!(
                "--appendonly no: this node keeps no log to replicate from, so it neither \
                 sends nor receives replica copies"
            );
            return None;
        };
        let replica_nodes = to
            .iter()
            .enumerate()
            .filter(|(n, s)| !s.is_empty() && *n < 64)
            .fold(0u64, |m, (n, _)| m | 1 << n);
        let per_loop = |_| Mutex::new(Vec::new());
        Some(Replication {
            quorum,
            timeout_ms: AtomicU64::new(timeout_ms),
            myself: me,
            loops,
            masks: masks.into(),
            replica_nodes,
            from,
            to,
            acked: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            ack_ms: (0..nodes).map(|_| AtomicU64::new(0)).collect(),
            stream_counts: Mutex::new(vec![0; nodes]),
            live: Arc::new(AtomicU64::new(0)),
            senders: (0..loops).map(per_loop).collect(),
            has_senders: (0..loops).map(|_| AtomicBool::new(false)).collect(),
            inbound: (0..nodes)
                .map(|_| {
                    Mutex::new(Inbound {
                        conn: None,
                        applied: 0,
                        acked: 0,
                        synced: false,
                        state: StreamState::Connecting,
                        last_try_ms: 0,
                        generation: 0,
                    })
                })
                .collect(),
            drop_gen: AtomicU64::new(0),
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
        if self.masks.iter().all(|&m| m == 0) {
            return inner;
        }
        Box::new(QuorumJournal {
            inner,
            all: self.masks.iter().fold(0, |a, &m| a | m),
            masks: self.masks.clone(),
            live: self.live.clone(),
        })
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
        true
    }

    /// WAIT: replica nodes (of this node's slots) that acknowledged `lsn`; for 0, those
    /// with a live stream.
    pub fn count_acked(&self, lsn: Lsn) -> usize {
        let live = self.live.load(Ordering::Acquire);
        (0..64)
            .filter(|&n| self.replica_nodes & (1 << n) != 0)
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
        let live = self.live.load(Ordering::Acquire) & self.replica_nodes;
        (
            self.replica_nodes.count_ones() as usize,
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

    /// A replica asked for our log from `from_lsn` on (0: a full resync) on connection
    /// `conn` of loop `loop_index`. Returns false when the peer copies nothing of ours.
    pub fn start_sender(&self, loop_index: usize, conn: ConnRef, peer: u16, from_lsn: Lsn) -> bool {
        if self.to[peer as usize].is_empty() {
            return false;
        }
        let full = from_lsn == 0 || from_lsn > self.wal.assigned() + 1;
        let state = if full {
            self.sync_full.fetch_add(1, Ordering::Relaxed);
            SendState::Sync {
                next_shard: usize::MAX,
                lsns: Vec::new(),
            }
        } else {
            self.sync_partial.fetch_add(1, Ordering::Relaxed);
            SendState::Tail {
                reader: LogReader::new(self.wal.clone(), from_lsn),
                covered: None,
            }
        };
        self.senders[loop_index].lock().push(Sender {
            conn,
            peer,
            state,
            announce: !full,
        });
        self.has_senders[loop_index].store(true, Ordering::Release);
        let mut counts = self.stream_counts.lock();
        counts[peer as usize] += 1;
        if peer < 64 {
            self.live.fetch_or(1 << peer, Ordering::AcqRel);
        }
        true
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
            self.live.fetch_and(!(1 << peer), Ordering::AcqRel);
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

    /// The senders of this loop that have something to send now: their connections.
    pub fn busy_senders(&self, loop_index: usize) -> Vec<ConnRef> {
        if !self.has_senders[loop_index].load(Ordering::Acquire) {
            return Vec::new();
        }
        let written = self.wal.written();
        self.senders[loop_index]
            .lock()
            .iter()
            .filter(|s| match &s.state {
                SendState::Sync { .. } => true,
                SendState::Tail { reader, .. } => s.announce || reader.position() <= written,
            })
            .map(|s| s.conn)
            .collect()
    }

    /// Sends what the sender on `conn` has, into `out`, until caught up or `out` is full.
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
        let slots = &self.to[s.peer as usize];
        if s.announce {
            s.announce = false;
            if let SendState::Tail { reader, .. } = &s.state {
                let lsn = reader.position() - 1;
                let f = OpenFrame::records(out, lsn);
                let _ = f.finish(out);
            }
        }
        let mut records = Vec::new();
        while out.len() < OUT_HIGH {
            match &mut s.state {
                SendState::Sync { next_shard, lsns } => {
                    if *next_shard == usize::MAX {
                        Frame::SyncBegin {
                            slots: slots.view(),
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
                        let lsns = std::mem::take(lsns);
                        s.state = SendState::Tail {
                            reader: LogReader::new(self.wal.clone(), min + 1),
                            covered: Some(lsns),
                        };
                        continue;
                    }
                    let lsn = self.dump_shard(*next_shard, slots, out, now);
                    lsns.push(lsn);
                    *next_shard += 1;
                }
                SendState::Tail { reader, covered } => {
                    if reader.caught_up() {
                        break;
                    }
                    records.clear();
                    match reader.read(READ_BYTES, &mut records) {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(ReadError::Gone { .. }) => {
                            self.sync_full.fetch_add(1, Ordering::Relaxed);
                            s.state = SendState::Sync {
                                next_shard: usize::MAX,
                                lsns: Vec::new(),
                            };
                            continue;
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                    let through = reader.position() - 1;
                    let start = out.len();
                    let frame = OpenFrame::records(out, through);
                    let mut resync = false;
                    for (lsn, payload) in &records {
                        if !self.ship_record(*lsn, payload, slots, covered.as_deref(), out)? {
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
                        s.state = SendState::Sync {
                            next_shard: usize::MAX,
                            lsns: Vec::new(),
                        };
                        continue;
                    }
                    frame.finish(out).map_err(|e| e.to_string())?;
                    if covered
                        .as_ref()
                        .is_some_and(|c| c.iter().all(|&l| l <= through))
                    {
                        *covered = None;
                    }
                }
            }
        }
        Ok(())
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
    /// dump) to a Records frame. False when the record drops slots that a dump partly
    /// covers (the caller starts a new full resync).
    fn ship_record(
        &self,
        lsn: Lsn,
        payload: &[u8],
        slots: &SlotSet,
        covered: Option<&[Lsn]>,
        out: &mut Vec<u8>,
    ) -> Result<bool, StreamError> {
        if codec::is_tx_marker(payload) {
            return Ok(true);
        }
        let effects = codec::decode_effects(payload)
            .map_err(|e| format!("undecodable log record {lsn}: {e}"))?;
        let in_dump = |key: &[u8]| {
            covered.is_some_and(|c| c[self.store.shard_of(self.store.hash(key))] >= lsn)
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
                        if dropped {
                            bits[s as usize / 8] |= 1 << (s % 8);
                            any = true;
                        }
                    }
                    if any && covered.is_some_and(|c| c.iter().any(|&l| l >= lsn)) {
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
                    Some(key) if slots.contains(key_slot(key)) && !in_dump(key) => kept.push(e),
                    _ => whole = false,
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
        for (p, slots) in self.from.iter().enumerate() {
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

    /// Streams of this loop that DEBUG REPL-DROP asked to close.
    pub fn streams_to_drop(&self, loop_index: usize) -> Vec<ConnRef> {
        let generation = self.drop_gen.load(Ordering::Acquire);
        self.inbound
            .iter()
            .enumerate()
            .filter(|(p, _)| p % self.loops == loop_index)
            .filter_map(|(_, st)| {
                let st = st.lock();
                st.conn.filter(|_| st.generation != generation)
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
    }

    /// The stream from `peer` is authenticated: the ReplStart to send.
    pub fn stream_start(&self, peer: u16, out: &mut Vec<u8>) {
        let st = self.inbound[peer as usize].lock();
        let from_lsn = if st.synced { st.applied + 1 } else { 0 };
        let _ = Frame::ReplStart { from_lsn }.encode(out);
    }

    /// The connection of the stream from `peer` closed.
    pub fn stream_closed(&self, peer: u16, conn: ConnRef) {
        let mut st = self.inbound[peer as usize].lock();
        if st.conn == Some(conn) {
            st.conn = None;
            st.state = StreamState::Connecting;
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
                st.synced = false;
                self.store
                    .drop_slots(slots.as_bytes(), key_slot)
                    .map_err(|e| e.to_string())?;
            }
            Frame::SyncChunk { payload } => self.apply_chunk(payload, now)?,
            Frame::SyncEnd { lsn } => {
                st.applied = lsn;
                st.synced = true;
                st.state = StreamState::Online;
            }
            Frame::Records { lsn, payload } => {
                if !st.synced {
                    return Err("Records before the end of the resync".into());
                }
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
        let t = &cluster.topology;
        let mut online = vec![None; t.ring.nodes().len()];
        for l in self.senders.iter() {
            for s in l.lock().iter() {
                let state = match s.state {
                    SendState::Sync { .. } => "send_bulk",
                    SendState::Tail { .. } => "online",
                };
                // An online stream wins over an older one still syncing.
                if online[s.peer as usize] != Some("online") {
                    online[s.peer as usize] = Some(state);
                }
            }
        }
        let mut i = 0;
        for (n, state) in online.iter().enumerate() {
            let Some(state) = state else { continue };
            let spec = t.ring.node(n as u16);
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
        for (p, slots) in self.from.iter().enumerate() {
            if slots.is_empty() {
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
                t.ring.node(p as u16).name,
                st.applied,
                slots.len()
            );
            k += 1;
        }
    }

    pub fn myself(&self) -> u16 {
        self.myself
    }
}

//! The write-ahead log.
//!
//! ```text
//!  loop threads                      WAL                                  disk
//!  ───────────                       ───                                  ────
//!  command (shard lock held) ──append──▶ pending buffer (LSN assigned here, under a mutex:
//!                                        buffer order = LSN order)
//!  end of batch ──write_through(lsn)──▶ swap buffer out, write(2) at the tail ──▶ segment
//!                                        (one writer at a time: file mutex)
//!  sync thread ──────────────────────▶ fdatasync when the policy asks ──────────▶ durable
//!        └── notify(acked LSN) ──▶ loops release the replies that waited for it
//! ```
//!
//! Group commit: every write(2) and fdatasync covers whatever accumulated while the
//! previous one ran, however many clients that is.
//!
//! Failures never lose an acknowledged write. Bytes that could not be written stay in
//! memory and are written again when the disk has room; bytes written since the last good
//! fdatasync stay in memory until a sync succeeds, and are rewritten if it failed (after
//! a failed fsync the page cache can no longer be trusted). Meanwhile `append` refuses new
//! writes with a MISCONF error, and replies that wait on the log stay held.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dse_engine::{Effect, JournalError, Lsn};
use parking_lot::{Condvar, Mutex};

use crate::codec;
use crate::fs::{FileSystem, WriteFile};

pub const SEGMENT_MAGIC: &[u8; 8] = b"DSE-WAL\0";
pub const FORMAT_VERSION: u32 = 1;
/// magic, version, first LSN, CRC32C of the preceding 20 bytes.
pub const SEGMENT_HEADER: usize = 8 + 4 + 8 + 4;
/// payload length, CRC32C of (LSN, payload), LSN.
pub const RECORD_HEADER: usize = 4 + 4 + 8;

/// When a write counts as done (Redis's `appendfsync`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// fdatasync before the reply: survives power loss.
    Always,
    /// write(2) before the reply, fdatasync once a second: survives a crash of the
    /// process; a power loss may take the last second.
    EverySec,
    /// write(2) before the reply; the kernel flushes when it likes.
    No,
}

impl FsyncPolicy {
    pub fn name(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::No => "no",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(FsyncPolicy::Always),
            "everysec" => Some(FsyncPolicy::EverySec),
            "no" => Some(FsyncPolicy::No),
            _ => None,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => FsyncPolicy::Always,
            1 => FsyncPolicy::EverySec,
            _ => FsyncPolicy::No,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            FsyncPolicy::Always => 0,
            FsyncPolicy::EverySec => 1,
            FsyncPolicy::No => 2,
        }
    }
}

/// Buffers larger than this are given back once mostly empty.
const RETAIN_BUFFER: usize = 1 << 20;

pub fn segment_name(first_lsn: Lsn) -> String {
    format!("wal-{first_lsn:020}.log")
}

/// The first LSN of a segment, from its file name.
pub fn parse_segment_name(path: &Path) -> Option<Lsn> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("wal-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

pub fn segment_header(first_lsn: Lsn) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The CRC a record carries: over its LSN and its payload.
pub fn record_crc(lsn: Lsn, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&lsn.to_le_bytes()), payload)
}

#[derive(Debug, Clone)]
pub struct SegmentMeta {
    pub path: PathBuf,
    pub first_lsn: Lsn,
    pub len: u64,
}

/// A segment file that records are placed into. Space for `capacity` bytes is
/// reserved when the file is created, so writing records there cannot run out of room.
struct SegSlot {
    file: Arc<dyn WriteFile>,
    /// Where the file is until its first record is written (a spare is created under a
    /// temporary name and renamed `wal-<first LSN>.log` then).
    temp_path: Option<PathBuf>,
    first_lsn: Lsn,
    capacity: u64,
}

/// Records placed in one segment, not yet written.
struct Chunk {
    seg: Arc<SegSlot>,
    buf: Vec<u8>,
    first: Lsn,
    last: Lsn,
}

impl Chunk {
    fn empty(seg: Arc<SegSlot>) -> Chunk {
        Chunk {
            seg,
            buf: Vec::new(),
            first: 0,
            last: 0,
        }
    }
}

/// A spare segment prepared ahead of need by the sync thread.
struct Spare {
    file: Arc<dyn WriteFile>,
    path: PathBuf,
    capacity: u64,
}

struct SpareState {
    spare: Option<Spare>,
    /// Why the last attempt to reserve space failed (the MISCONF text), and when to try
    /// again: while the disk is full, writes are refused without a syscall each.
    error: Option<String>,
    retry_at: Instant,
    counter: u64,
}

struct Pending {
    next_lsn: Lsn,
    /// Records for the segment being appended to.
    cur: Chunk,
    /// Records for earlier segments, not yet taken by a writer.
    sealed: VecDeque<Chunk>,
    /// Bytes of the current segment claimed by records (header included).
    claimed: u64,
}

struct OpenSegment {
    file: Arc<dyn WriteFile>,
    first_lsn: Lsn,
    /// Bytes written successfully (header included).
    len: u64,
    /// Bytes known durable.
    synced_len: u64,
    /// Copy of the bytes in `synced_len..len`, to rewrite if an fsync fails.
    unsynced: Vec<u8>,
    /// LSN of the last record written to this segment.
    last_lsn: Lsn,
}

struct Tail {
    seg: OpenSegment,
    /// Closed segments, oldest first (the open one is not in here).
    closed: Vec<SegmentMeta>,
    /// Chunks taken from `pending` but not written yet (a failed write keeps them here).
    outgoing: VecDeque<Chunk>,
    last_sync: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum FailureKind {
    Write,
    Sync,
}

/// Counters for INFO persistence.
#[derive(Debug, Clone, Default)]
pub struct WalStats {
    pub segments: usize,
    pub bytes: u64,
    pub fsyncs: u64,
    pub written_lsn: Lsn,
    pub durable_lsn: Lsn,
    pub failure: Option<String>,
}

pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    segment_size: u64,
    policy: AtomicU8,
    pending: Mutex<Pending>,
    spare: Mutex<SpareState>,
    /// Held while writing, syncing or rotating: one writer at a time, in LSN order.
    tail: Mutex<Tail>,
    /// Held for the length of an fdatasync: callers that arrive meanwhile wait, then find
    /// their records already covered (group commit) or sync once more.
    sync_lock: Mutex<()>,
    /// LSN of the last record handed to write(2).
    written: AtomicU64,
    /// LSN of the last record covered by a successful fdatasync.
    durable: AtomicU64,
    /// LSN of the last record assigned (read under a shard's lock by snapshots).
    assigned: AtomicU64,
    failed: AtomicBool,
    failure: Mutex<Option<(FailureKind, String)>>,
    wake: Mutex<bool>,
    wake_cv: Condvar,
    stop: AtomicBool,
    fsyncs: AtomicU64,
    notify: OnceLock<Box<dyn Fn(Lsn) + Send + Sync>>,
}

impl Wal {
    /// Opens the log for appending: a new segment starting at `next_lsn`, after the
    /// `existing` segments recovery read.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        policy: FsyncPolicy,
        segment_size: u64,
        next_lsn: Lsn,
        existing: Vec<SegmentMeta>,
    ) -> std::io::Result<Arc<Wal>> {
        let segment_size = segment_size.max(4096);
        let path = dir.join(segment_name(next_lsn));
        let file = fs.create(&path)?;
        file.allocate(segment_size)?;
        file.write_all_at(&segment_header(next_lsn), 0)?;
        file.sync_data()?;
        fs.sync_dir(dir)?;
        let slot = Arc::new(SegSlot {
            file: file.clone(),
            temp_path: None,
            first_lsn: next_lsn,
            capacity: segment_size,
        });
        let last = next_lsn - 1;
        Ok(Arc::new(Wal {
            fs,
            dir: dir.to_path_buf(),
            segment_size,
            policy: AtomicU8::new(policy.to_u8()),
            pending: Mutex::new(Pending {
                next_lsn,
                cur: Chunk::empty(slot),
                sealed: VecDeque::new(),
                claimed: SEGMENT_HEADER as u64,
            }),
            spare: Mutex::new(SpareState {
                spare: None,
                error: None,
                retry_at: Instant::now(),
                counter: 0,
            }),
            sync_lock: Mutex::new(()),
            tail: Mutex::new(Tail {
                seg: OpenSegment {
                    file,
                    first_lsn: next_lsn,
                    len: SEGMENT_HEADER as u64,
                    synced_len: SEGMENT_HEADER as u64,
                    unsynced: Vec::new(),
                    last_lsn: last,
                },
                closed: existing,
                outgoing: VecDeque::new(),
                last_sync: Instant::now(),
            }),
            written: AtomicU64::new(last),
            durable: AtomicU64::new(last),
            assigned: AtomicU64::new(last),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            wake: Mutex::new(false),
            wake_cv: Condvar::new(),
            stop: AtomicBool::new(false),
            fsyncs: AtomicU64::new(0),
            notify: OnceLock::new(),
        }))
    }

    /// Called with the acknowledged LSN whenever it advances (see [`Wal::acked`]).
    pub fn set_notify(&self, f: Box<dyn Fn(Lsn) + Send + Sync>) {
        let _ = self.notify.set(f);
    }

    fn notify(&self, lsn: Lsn) {
        if let Some(f) = self.notify.get() {
            f(lsn);
        }
    }

    pub fn policy(&self) -> FsyncPolicy {
        FsyncPolicy::from_u8(self.policy.load(Ordering::Relaxed))
    }

    pub fn set_policy(&self, p: FsyncPolicy) {
        self.policy.store(p.to_u8(), Ordering::Relaxed);
        // Replies waiting under the old policy may be releasable under the new one.
        self.notify(self.acked());
        self.kick();
    }

    /// The LSN up to which replies may be sent: durable under `always`, written (handed
    /// to the kernel) otherwise.
    pub fn acked(&self) -> Lsn {
        match self.policy() {
            FsyncPolicy::Always => self.durable.load(Ordering::Acquire),
            _ => self.written.load(Ordering::Acquire),
        }
    }

    pub fn assigned(&self) -> Lsn {
        self.assigned.load(Ordering::Acquire)
    }

    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    fn fail(&self, kind: FailureKind, msg: String) {
        let mut f = self.failure.lock();
        if f.is_none() {
            tracing::error!("write-ahead log: {msg}; refusing writes until it recovers");
        }
        *f = Some((kind, msg));
        self.failed.store(true, Ordering::Release);
    }

    fn recover(&self, kind: FailureKind) {
        let mut f = self.failure.lock();
        if matches!(*f, Some((k, _)) if k == kind) {
            *f = None;
            self.failed.store(false, Ordering::Release);
            tracing::warn!("write-ahead log recovered; accepting writes again");
        }
    }

    /// Appends one record holding `effects`; returns its LSN. Called under the write
    /// lock of every shard the effects touch.
    ///
    /// The record is placed in a segment whose space is already reserved; when the
    /// current one is full it moves to the spare. If no space can be reserved (disk
    /// full), the write is refused here, before anything is applied.
    pub fn append(&self, effects: &[Effect<'_>]) -> Result<Lsn, JournalError> {
        if self.failed.load(Ordering::Acquire) {
            let msg = self
                .failure
                .lock()
                .as_ref()
                .map_or_else(|| "log unavailable".to_string(), |(_, m)| m.clone());
            return Err(JournalError::Unavailable(msg));
        }
        let mut p = self.pending.lock();
        let mut start = p.cur.buf.len();
        p.cur.buf.extend_from_slice(&[0u8; RECORD_HEADER]);
        codec::encode_effects(&mut p.cur.buf, effects);
        let rec_len = p.cur.buf.len() - start;
        let Ok(payload32) = u32::try_from(rec_len - RECORD_HEADER) else {
            p.cur.buf.truncate(start);
            return Err(JournalError::Unavailable("record larger than 4 GiB".into()));
        };
        if p.claimed + rec_len as u64 > p.cur.seg.capacity {
            let record = p.cur.buf.split_off(start);
            let slot = match self.take_segment(rec_len as u64, p.next_lsn) {
                Ok(slot) => slot,
                Err(msg) => return Err(JournalError::Unavailable(msg)),
            };
            let full = std::mem::replace(&mut p.cur, Chunk::empty(slot));
            if !full.buf.is_empty() {
                p.sealed.push_back(full);
            }
            p.cur.buf = record;
            p.claimed = SEGMENT_HEADER as u64;
            start = 0;
            self.kick();
        }
        let lsn = p.next_lsn;
        p.next_lsn += 1;
        p.claimed += rec_len as u64;
        let crc = record_crc(lsn, &p.cur.buf[start + RECORD_HEADER..]);
        let h = &mut p.cur.buf[start..start + RECORD_HEADER];
        h[..4].copy_from_slice(&payload32.to_le_bytes());
        h[4..8].copy_from_slice(&crc.to_le_bytes());
        h[8..16].copy_from_slice(&lsn.to_le_bytes());
        if p.cur.first == 0 {
            p.cur.first = lsn;
        }
        p.cur.last = lsn;
        self.assigned.store(lsn, Ordering::Release);
        Ok(lsn)
    }

    /// A segment with room for a `need`-byte record, starting at `first_lsn`: the spare,
    /// or one made now. The error is the MISCONF text.
    fn take_segment(&self, need: u64, first_lsn: Lsn) -> Result<Arc<SegSlot>, String> {
        let mut st = self.spare.lock();
        let fits = |s: &Spare| s.capacity >= need + SEGMENT_HEADER as u64;
        let spare = match st.spare.take() {
            Some(s) if fits(&s) => s,
            other => {
                st.spare = other;
                if let Some(e) = &st.error
                    && Instant::now() < st.retry_at
                {
                    return Err(e.clone());
                }
                let capacity = self.segment_size.max(need + SEGMENT_HEADER as u64);
                self.make_spare(&mut st, capacity)?
            }
        };
        Ok(Arc::new(SegSlot {
            file: spare.file,
            temp_path: Some(spare.path),
            first_lsn,
            capacity: spare.capacity,
        }))
    }

    /// Creates a segment file under a temporary name and reserves `capacity` bytes.
    fn make_spare(&self, st: &mut SpareState, capacity: u64) -> Result<Spare, String> {
        st.counter += 1;
        let path = self.dir.join(format!("wal-spare-{}.tmp", st.counter));
        let made = self.fs.create(&path).and_then(|f| {
            f.allocate(capacity)?;
            Ok(f)
        });
        match made {
            Ok(file) => {
                if st.error.take().is_some() {
                    tracing::warn!("write-ahead log has room again; accepting writes");
                }
                Ok(Spare {
                    file,
                    path,
                    capacity,
                })
            }
            Err(e) => {
                let _ = self.fs.remove(&path);
                let msg = format!("cannot reserve space for the log: {e}");
                if st.error.is_none() {
                    tracing::error!("write-ahead log: {msg}; refusing writes until there is room");
                }
                st.error = Some(msg.clone());
                st.retry_at = Instant::now() + Duration::from_millis(100);
                Err(msg)
            }
        }
    }

    /// Keeps a spare segment ready, so a rotation never waits for file creation.
    fn prepare_spare(&self) {
        let mut st = self.spare.lock();
        if st.spare.is_none() {
            let capacity = self.segment_size;
            if let Ok(s) = self.make_spare(&mut st, capacity) {
                st.spare = Some(s);
            }
        }
    }

    /// Writes everything appended so far if `upto` is not written yet. Returns whether
    /// `upto` is now written.
    pub fn write_through(&self, upto: Lsn) -> bool {
        if self.written.load(Ordering::Acquire) >= upto {
            return true;
        }
        let mut t = self.tail.lock();
        self.flush_locked(&mut t);
        self.written.load(Ordering::Acquire) >= upto
    }

    /// Writes the records waiting to be written: what a failed write left, plus what was
    /// appended until now (never an unbounded chase after writers that keep appending).
    fn flush_locked(&self, t: &mut Tail) {
        {
            let mut p = self.pending.lock();
            while let Some(c) = p.sealed.pop_front() {
                t.outgoing.push_back(c);
            }
            if !p.cur.buf.is_empty() {
                let seg = p.cur.seg.clone();
                let c = std::mem::replace(&mut p.cur, Chunk::empty(seg));
                t.outgoing.push_back(c);
            }
        }
        while let Some(c) = t.outgoing.front() {
            if c.seg.first_lsn != t.seg.first_lsn {
                let next = c.seg.clone();
                if let Err(e) = self.switch_locked(t, &next) {
                    self.fail(
                        FailureKind::Write,
                        format!("cannot start a log segment: {e}"),
                    );
                    return;
                }
            }
            let c = t.outgoing.front().expect("checked above");
            let seg = &mut t.seg;
            if let Err(e) = seg.file.write_all_at(&c.buf, seg.len) {
                // Drop any partial record so the retry appends at a record boundary.
                let _ = seg.file.set_len(seg.len);
                self.fail(FailureKind::Write, format!("write error: {e}"));
                return;
            }
            seg.len += c.buf.len() as u64;
            seg.last_lsn = c.last;
            if self.policy() != FsyncPolicy::No {
                seg.unsynced.extend_from_slice(&c.buf);
            } else {
                seg.synced_len = seg.len;
            }
            let last = c.last;
            t.outgoing.pop_front();
            self.written.store(last, Ordering::Release);
            self.recover(FailureKind::Write);
            if self.policy() == FsyncPolicy::Always {
                self.kick();
            } else {
                self.notify(last);
            }
        }
    }

    /// Closes the open segment (synced, trimmed to its length) and opens `next`: header,
    /// final name, directory synced. Every closed segment is durable.
    fn switch_locked(&self, t: &mut Tail, next: &SegSlot) -> std::io::Result<()> {
        t.seg.file.sync_data()?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        // Give back the space reserved past the end.
        let _ = t.seg.file.set_len(t.seg.len);
        let path = self.dir.join(segment_name(next.first_lsn));
        let header = segment_header(next.first_lsn);
        next.file.write_all_at(&header, 0)?;
        if let Some(tmp) = &next.temp_path {
            self.fs.rename(tmp, &path)?;
        }
        self.fs.sync_dir(&self.dir)?;
        let old = std::mem::replace(
            &mut t.seg,
            OpenSegment {
                file: next.file.clone(),
                first_lsn: next.first_lsn,
                len: SEGMENT_HEADER as u64,
                synced_len: 0,
                unsynced: header.to_vec(),
                last_lsn: next.first_lsn - 1,
            },
        );
        t.closed.push(SegmentMeta {
            path: self.dir.join(segment_name(old.first_lsn)),
            first_lsn: old.first_lsn,
            len: old.len,
        });
        if old.last_lsn > self.durable.load(Ordering::Acquire) {
            self.durable.store(old.last_lsn, Ordering::Release);
            if self.policy() == FsyncPolicy::Always {
                self.notify(old.last_lsn);
            }
        }
        Ok(())
    }

    /// Makes records up to `upto` durable, on this thread: syncs unless a sync that
    /// started after they were written covers them. Returns whether they are durable.
    pub fn sync_through(&self, upto: Lsn) -> bool {
        let _leader = self.sync_lock.lock();
        if self.durable.load(Ordering::Acquire) < upto {
            self.sync_locked();
        }
        self.durable.load(Ordering::Acquire) >= upto
    }

    fn sync(&self) {
        let _leader = self.sync_lock.lock();
        self.sync_locked();
    }

    /// fdatasync of the open segment (without holding the tail lock during the sync, so
    /// loops keep writing meanwhile). The caller holds `sync_lock`.
    fn sync_locked(&self) {
        let (file, first, len, target) = {
            let t = self.tail.lock();
            if t.seg.synced_len == t.seg.len {
                return;
            }
            (
                t.seg.file.clone(),
                t.seg.first_lsn,
                t.seg.len,
                t.seg.last_lsn,
            )
        };
        let result = file.sync_data();
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let mut t = self.tail.lock();
        t.last_sync = Instant::now();
        match result {
            Ok(()) => {
                if t.seg.first_lsn == first && len > t.seg.synced_len {
                    let done = (len - t.seg.synced_len) as usize;
                    t.seg.unsynced.drain(..done);
                    t.seg.synced_len = len;
                    // One large record must not pin its size in memory for good.
                    if t.seg.unsynced.capacity() > RETAIN_BUFFER
                        && t.seg.unsynced.len() < RETAIN_BUFFER / 4
                    {
                        t.seg.unsynced.shrink_to(RETAIN_BUFFER / 4);
                    }
                }
                if target > self.durable.load(Ordering::Acquire) {
                    self.durable.store(target, Ordering::Release);
                }
                self.recover(FailureKind::Sync);
                if self.policy() == FsyncPolicy::Always {
                    self.notify(target);
                }
            }
            Err(e) => {
                self.fail(FailureKind::Sync, format!("fsync error: {e}"));
                if t.seg.first_lsn == first {
                    // The kernel may have dropped the dirty pages: put the bytes back.
                    let seg = &mut t.seg;
                    let _ = seg.file.set_len(seg.synced_len);
                    let _ = seg.file.write_all_at(&seg.unsynced, seg.synced_len);
                }
            }
        }
    }

    /// Wakes the sync thread.
    fn kick(&self) {
        let mut w = self.wake.lock();
        *w = true;
        self.wake_cv.notify_one();
    }

    /// The sync thread's body: writes what loops left pending (records from background
    /// work, retries after a failure), fsyncs per the policy, and keeps a spare segment.
    pub fn run_sync_thread(self: &Arc<Self>) {
        loop {
            {
                let mut w = self.wake.lock();
                if !*w {
                    self.wake_cv.wait_for(&mut w, Duration::from_millis(100));
                }
                *w = false;
            }
            let stopping = self.stop.load(Ordering::Acquire);
            {
                let mut t = self.tail.lock();
                self.flush_locked(&mut t);
            }
            let due = match self.policy() {
                FsyncPolicy::Always => true,
                FsyncPolicy::EverySec => {
                    self.tail.lock().last_sync.elapsed() >= Duration::from_secs(1)
                        || self.is_failed()
                }
                FsyncPolicy::No => self.is_failed(),
            };
            if due || stopping {
                self.sync();
            }
            if stopping {
                return;
            }
            self.prepare_spare();
        }
    }

    /// Writes and syncs everything appended so far (shutdown, SAVE). True when nothing
    /// is left unwritten or unsynced.
    pub fn flush_and_sync(&self) -> bool {
        {
            let mut t = self.tail.lock();
            self.flush_locked(&mut t);
        }
        self.sync();
        let t = self.tail.lock();
        t.outgoing.is_empty() && t.seg.synced_len == t.seg.len && !self.is_failed()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.kick();
    }

    /// Moves appends to a new segment and writes out the old one, so a snapshot taken
    /// next can make it removable.
    pub fn rotate(&self) -> std::io::Result<()> {
        {
            let mut p = self.pending.lock();
            if p.claimed == SEGMENT_HEADER as u64 {
                return Ok(());
            }
            let slot = self
                .take_segment(0, p.next_lsn)
                .map_err(std::io::Error::other)?;
            let full = std::mem::replace(&mut p.cur, Chunk::empty(slot));
            if !full.buf.is_empty() {
                p.sealed.push_back(full);
            }
            p.claimed = SEGMENT_HEADER as u64;
        }
        let mut t = self.tail.lock();
        self.flush_locked(&mut t);
        Ok(())
    }

    /// Deletes closed segments whose records all have LSNs up to `covered`.
    pub fn remove_covered(&self, covered: Lsn) {
        let mut t = self.tail.lock();
        let open_first = t.seg.first_lsn;
        let mut removed = false;
        let closed = std::mem::take(&mut t.closed);
        let mut keep = Vec::with_capacity(closed.len());
        for (i, seg) in closed.iter().enumerate() {
            let next_first = closed.get(i + 1).map_or(open_first, |s| s.first_lsn);
            if next_first.saturating_sub(1) <= covered {
                match self.fs.remove(&seg.path) {
                    Ok(()) => removed = true,
                    Err(e) => {
                        tracing::warn!("cannot remove {}: {e}", seg.path.display());
                        keep.push(seg.clone());
                    }
                }
            } else {
                keep.push(seg.clone());
            }
        }
        t.closed = keep;
        if removed {
            let _ = self.fs.sync_dir(&self.dir);
        }
    }

    /// The segments on disk, oldest first, the open one last with the bytes written to it
    /// so far (always a whole number of records).
    pub fn segments(&self) -> Vec<SegmentMeta> {
        let t = self.tail.lock();
        let mut v = t.closed.clone();
        v.push(SegmentMeta {
            path: self.dir.join(segment_name(t.seg.first_lsn)),
            first_lsn: t.seg.first_lsn,
            len: t.seg.len,
        });
        v
    }

    /// LSN of the last record handed to write(2): what a reader of the files can see.
    pub fn written(&self) -> Lsn {
        self.written.load(Ordering::Acquire)
    }

    pub fn file_system(&self) -> &Arc<dyn FileSystem> {
        &self.fs
    }

    pub fn stats(&self) -> WalStats {
        let t = self.tail.lock();
        let space = self.spare.lock().error.clone();
        WalStats {
            segments: t.closed.len() + 1,
            bytes: t.closed.iter().map(|s| s.len).sum::<u64>() + t.seg.len,
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            written_lsn: self.written.load(Ordering::Relaxed),
            durable_lsn: self.durable.load(Ordering::Relaxed),
            failure: self
                .failure
                .lock()
                .as_ref()
                .map(|(_, m)| m.clone())
                .or(space),
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        if let Some(s) = self.spare.get_mut().spare.take() {
            let _ = self.fs.remove(&s.path);
        }
    }
}

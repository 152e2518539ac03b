//! Durability for the store.
//!
//! - [`wal`]: the write-ahead log. Segments with a magic header and version; records
//!   framed as (length, CRC32C, LSN, payload) holding [`dse_engine::Effect`]s; fsync
//!   policies `always` / `everysec` / `no` with group commit.
//! - [`snapshot`]: forkless snapshots, shard by shard under each shard's read lock.
//! - [`recovery`]: newest snapshot + log replay, torn-tail truncation, corruption
//!   detection.
//! - [`fs`]: the file-system seam (and a fault-injecting one for tests).
//! - [`Persistence`]: the three wired together, and the [`dse_engine::Journal`] the store
//!   writes through.
//!
//! Order of writes and syncs (the invariants ARCHITECTURE.md relies on): a record is
//! appended under the lock of every shard it touches, before the change is applied; a
//! reply that depends on it is sent only once the log is written (`everysec`, `no`) or
//! synced (`always`) past its LSN. Snapshots are fsynced, renamed and their directory
//! fsynced before any log segment they cover is deleted.

pub mod codec;
pub mod fs;
pub mod reader;
pub mod recovery;
pub mod snapshot;
pub mod wal;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dse_engine::{Effect, Journal, JournalError, Lsn, Store};
use parking_lot::Mutex;

pub use fs::{FaultyFs, FileSystem, StdFs};
pub use recovery::{RecoveryError, RecoveryMode, RecoveryReport};
pub use snapshot::SnapshotMeta;
pub use wal::{FsyncPolicy, Wal, WalStats};

#[derive(Debug, Clone)]
pub struct PersistOptions {
    pub dir: PathBuf,
    /// Keep a write-ahead log (`--appendonly`). Without it only snapshots persist data.
    pub appendonly: bool,
    pub fsync: FsyncPolicy,
    /// Seconds between automatic snapshots when something changed; 0 disables them.
    pub snapshot_interval: u64,
    pub recovery: RecoveryMode,
    pub segment_size: u64,
    pub shards: usize,
    /// Cluster mode: a key's cluster slot (replaying a record that dropped slots).
    pub key_slot: Option<fn(&[u8]) -> u16>,
}

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "data directory {0} is in use by another dse-server (its LOCK file is held); \
         stop that server or pick another --data"
    )]
    Locked(PathBuf),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error("cannot open the write-ahead log in {path}: {source}")]
    Wal {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The outcome of the last snapshot, for INFO and LASTSAVE.
#[derive(Debug, Clone, Default)]
pub struct SaveStatus {
    pub last_save_unix: u64,
    pub last_ok: bool,
    pub last_error: Option<String>,
    pub last_duration_ms: u64,
    pub last_keys: u64,
    pub last_bytes: u64,
    pub saves: u64,
}

/// Snapshot state and the log, as the server uses them.
pub struct Persistence {
    opts: PersistOptions,
    fs: Arc<dyn FileSystem>,
    wal: Option<Arc<Wal>>,
    /// LSNs when there is no log: still assigned, so snapshots and change counts work
    /// the same way.
    counter: AtomicU64,
    /// LSN assigned when the last snapshot started (changes since = assigned - this).
    saved_lsn: AtomicU64,
    snapshot_lock: Mutex<()>,
    bgsave_running: AtomicBool,
    status: Mutex<SaveStatus>,
    /// Segments a run without a log replayed: removed by the next snapshot.
    stale_segments: Mutex<Vec<wal::SegmentMeta>>,
    /// Seconds between automatic snapshots (0: none); CONFIG SET save changes it.
    snapshot_interval: AtomicU64,
    /// Runs each shard's dump (see [`Persistence::set_shard_dump_wrapper`]).
    dump_wrapper: std::sync::OnceLock<snapshot::DumpWrapper>,
    stop: AtomicBool,
    threads: Mutex<Vec<JoinHandle<()>>>,
    _lock: File,
}

/// The journal the store writes through.
pub struct PersistJournal(Arc<Persistence>);

impl Journal for PersistJournal {
    fn append(&self, effects: &[Effect<'_>]) -> Result<Lsn, JournalError> {
        match &self.0.wal {
            Some(w) => w.append(effects),
            None => Ok(self.0.counter.fetch_add(1, Ordering::AcqRel) + 1),
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Persistence {
    /// Locks the data directory, recovers the store from it and opens the log.
    pub fn open(
        opts: PersistOptions,
        fs: Arc<dyn FileSystem>,
    ) -> Result<(Arc<Persistence>, Store, RecoveryReport), PersistError> {
        let dir = &opts.dir;
        std::fs::create_dir_all(dir).map_err(|source| PersistError::Dir {
            path: dir.clone(),
            source,
        })?;
        let lock = lock_dir(dir)?;
        let recovered = recovery::recover(
            &*fs,
            dir,
            opts.shards,
            opts.recovery,
            unix_ms(),
            opts.key_slot,
        )?;
        let next_lsn = recovered.next_lsn;
        let (wal, stale) = if opts.appendonly {
            let wal = Wal::open(
                fs.clone(),
                dir,
                opts.fsync,
                opts.segment_size,
                next_lsn,
                recovered.segments,
            )
            .map_err(|source| PersistError::Wal {
                path: dir.clone(),
                source,
            })?;
            (Some(wal), Vec::new())
        } else {
            (None, recovered.segments)
        };
        let last_save_unix = recovered
            .snapshot
            .as_ref()
            .map_or_else(|| unix_ms() / 1000, |s| s.created_ms / 1000);
        let p = Arc::new(Persistence {
            fs,
            wal,
            counter: AtomicU64::new(next_lsn - 1),
            saved_lsn: AtomicU64::new(next_lsn - 1),
            snapshot_lock: Mutex::new(()),
            bgsave_running: AtomicBool::new(false),
            status: Mutex::new(SaveStatus {
                last_save_unix,
                last_ok: true,
                ..Default::default()
            }),
            stale_segments: Mutex::new(stale),
            snapshot_interval: AtomicU64::new(opts.snapshot_interval),
            dump_wrapper: std::sync::OnceLock::new(),
            stop: AtomicBool::new(false),
            threads: Mutex::new(Vec::new()),
            _lock: lock,
            opts,
        });
        Ok((p, recovered.store, recovered.report))
    }

    pub fn journal(self: &Arc<Self>) -> Box<dyn Journal> {
        Box::new(PersistJournal(self.clone()))
    }

    pub fn options(&self) -> &PersistOptions {
        &self.opts
    }

    pub fn wal(&self) -> Option<&Arc<Wal>> {
        self.wal.as_ref()
    }

    /// The last LSN assigned.
    pub fn assigned(&self) -> Lsn {
        match &self.wal {
            Some(w) => w.assigned(),
            None => self.counter.load(Ordering::Acquire),
        }
    }

    /// Replies that depend on records up to this LSN may be sent.
    pub fn acked(&self) -> Lsn {
        match &self.wal {
            Some(w) => w.acked(),
            None => Lsn::MAX,
        }
    }

    /// Makes `lsn` acknowledged on this thread: writes the log through it and, under
    /// `always`, syncs it (one fdatasync shared by every caller it covers). Returns whether
    /// it is acknowledged; false only when the disk is failing.
    pub fn make_acked(&self, lsn: Lsn) -> bool {
        match &self.wal {
            None => true,
            Some(w) => {
                if w.acked() >= lsn {
                    return true;
                }
                if !w.write_through(lsn) {
                    return false;
                }
                if w.policy() == FsyncPolicy::Always {
                    w.sync_through(lsn);
                }
                w.acked() >= lsn
            }
        }
    }

    /// Starts the log's sync thread and the snapshot timer. `store` is what snapshots
    /// are taken of.
    pub fn start(self: &Arc<Self>, store: Arc<Store>) {
        let mut threads = self.threads.lock();
        if let Some(w) = &self.wal {
            let w = w.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("dse-wal-sync".into())
                    .spawn(move || w.run_sync_thread())
                    .expect("spawn the log sync thread"),
            );
        }
        let me = self.clone();
        threads.push(
            std::thread::Builder::new()
                .name("dse-snapshots".into())
                .spawn(move || me.snapshot_timer(&store))
                .expect("spawn the snapshot thread"),
        );
    }

    /// Has every shard's dump run inside `wrapper` (the server keeps a dump from falling
    /// in the middle of an EXEC, so a snapshot never holds part of a transaction).
    pub fn set_shard_dump_wrapper(&self, wrapper: snapshot::DumpWrapper) {
        let _ = self.dump_wrapper.set(wrapper);
    }

    /// Seconds between automatic snapshots; 0 disables them.
    pub fn snapshot_interval(&self) -> u64 {
        self.snapshot_interval.load(Ordering::Relaxed)
    }

    pub fn set_snapshot_interval(&self, secs: u64) {
        self.snapshot_interval.store(secs, Ordering::Relaxed);
    }

    fn snapshot_timer(&self, store: &Store) {
        let mut waited = Duration::ZERO;
        let tick = Duration::from_millis(100);
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(tick);
            waited += tick;
            let interval = self.snapshot_interval();
            if interval > 0 && waited >= Duration::from_secs(interval) {
                waited = Duration::ZERO;
                if self.changes_since_save() > 0 && !self.bgsave_running.load(Ordering::Acquire) {
                    let _ = self.snapshot(store);
                }
            }
        }
    }

    /// Writes accepted since the last snapshot.
    pub fn changes_since_save(&self) -> u64 {
        self.assigned()
            .saturating_sub(self.saved_lsn.load(Ordering::Acquire))
    }

    pub fn status(&self) -> SaveStatus {
        self.status.lock().clone()
    }

    pub fn bgsave_in_progress(&self) -> bool {
        self.bgsave_running.load(Ordering::Acquire)
    }

    /// Takes a snapshot now, on this thread (SAVE, SHUTDOWN, the timer).
    pub fn snapshot(&self, store: &Store) -> Result<SnapshotMeta, String> {
        let _one_at_a_time = self.snapshot_lock.lock();
        let started = std::time::Instant::now();
        let start_lsn = self.assigned();
        if let Some(w) = &self.wal
            && let Err(e) = w.rotate()
        {
            tracing::warn!("cannot close the log segment before the snapshot: {e}");
        }
        // Without a log, nothing after `start_lsn` is recoverable anyway, so every shard
        // is said to cover up to it: the next run's log starts right after.
        let assigned = || match &self.wal {
            Some(w) => w.assigned(),
            None => start_lsn,
        };
        let result = snapshot::write(
            store,
            &*self.fs,
            &self.opts.dir,
            &assigned,
            self.dump_wrapper.get(),
            unix_ms(),
        );
        let mut st = self.status.lock();
        match result {
            Ok(meta) => {
                self.saved_lsn.store(start_lsn, Ordering::Release);
                st.last_save_unix = unix_ms() / 1000;
                st.last_ok = true;
                st.last_error = None;
                st.last_duration_ms = started.elapsed().as_millis() as u64;
                st.last_keys = meta.keys;
                st.last_bytes = meta.bytes;
                st.saves += 1;
                drop(st);
                self.remove_covered(&meta);
                tracing::info!(
                    "snapshot {} written: {} keys, {} bytes in {} ms",
                    meta.path.display(),
                    meta.keys,
                    meta.bytes,
                    started.elapsed().as_millis()
                );
                Ok(meta)
            }
            Err(e) => {
                st.last_ok = false;
                st.last_error = Some(e.to_string());
                tracing::error!("snapshot failed: {e}");
                Err(e.to_string())
            }
        }
    }

    /// Older snapshots and the log segments the new one covers are no longer needed.
    fn remove_covered(&self, meta: &SnapshotMeta) {
        if let Ok(files) = self.fs.list(&self.opts.dir) {
            for f in files {
                if snapshot::is_snapshot(&f) && f != meta.path {
                    let _ = self.fs.remove(&f);
                }
            }
        }
        match &self.wal {
            Some(w) => w.remove_covered(meta.min_covered),
            None => {
                for seg in self.stale_segments.lock().drain(..) {
                    let _ = self.fs.remove(&seg.path);
                }
            }
        }
        let _ = self.fs.sync_dir(&self.opts.dir);
    }

    /// Starts a snapshot on a background thread (BGSAVE). Err if one is running.
    pub fn bgsave(self: &Arc<Self>, store: Arc<Store>) -> Result<(), &'static str> {
        if self
            .bgsave_running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err("ERR Background save already in progress");
        }
        let me = self.clone();
        std::thread::Builder::new()
            .name("dse-bgsave".into())
            .spawn(move || {
                let _ = me.snapshot(&store);
                me.bgsave_running.store(false, Ordering::Release);
            })
            .map_err(|_| "ERR cannot start the background save")?;
        Ok(())
    }

    /// Stops background work, makes the log durable and, if `save`, takes a final
    /// snapshot.
    pub fn shutdown(&self, store: &Store, save: bool) -> Result<(), String> {
        self.stop.store(true, Ordering::Release);
        if let Some(w) = &self.wal {
            w.stop();
        }
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
        let mut result = Ok(());
        if let Some(w) = &self.wal
            && !w.flush_and_sync()
        {
            result = Err("the write-ahead log could not be flushed".to_string());
        }
        if save {
            self.snapshot(store).map(|_| ())?;
        }
        result
    }

    pub fn data_dir(&self) -> &Path {
        &self.opts.dir
    }
}

/// Takes an exclusive lock on `dir/LOCK` for the life of the process.
fn lock_dir(dir: &Path) -> Result<File, PersistError> {
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| PersistError::Dir {
            path: path.clone(),
            source,
        })?;
    // SAFETY: flock on a descriptor we own; it touches no memory.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        return Err(PersistError::Locked(dir.to_path_buf()));
    }
    Ok(f)
}

#[cfg(test)]
mod tests;

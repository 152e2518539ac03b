//! Durable raft state in `<data>/cluster`: the vote, the log and the state machine's
//! snapshot, each one small JSON file replaced whole.
//!
//! ```text
//! vote.json      the raft vote (term, voted for, committed)
//! log.json       { purged: last purged log id, entries: [raft entries] }
//! snapshot.json  { meta, state: the applied Membership and raft membership }
//! ```
//!
//! Every write is: write `<name>.tmp`, fsync it, rename it over `<name>`, fsync the
//! directory; openraft is told a vote or an append is done only after that. The log stays
//! tiny (membership changes are rare; applied entries are purged behind snapshots), so
//! rewriting it whole is simpler than appending and costs little. A torn write leaves the
//! previous file (rename is atomic); a stray `.tmp` is ignored.
//!
//! The state machine itself lives in memory: at start it is the snapshot, and openraft
//! re-applies the log after it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File};
use std::io::{self, Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dse_cluster::{Membership, NodeSpec};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftLogReader, RaftSnapshotBuilder, StorageIOError};
use tokio::sync::mpsc::UnboundedSender;

use crate::types::{
    Applied, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

const VOTE: &str = "vote.json";
const LOG: &str = "log.json";
const SNAPSHOT: &str = "snapshot.json";

/// Replaces `dir/name` with `bytes` durably (see the module docs).
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    match fs::read(dir.join(name)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn io_error(make: impl FnOnce(AnyError) -> StorageIOError<u64>, e: &io::Error) -> StorageError {
    StorageError::IO {
        source: make(AnyError::new(e)),
    }
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct LogFile {
    purged: Option<LogId>,
    entries: Vec<Entry>,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct VoteFile {
    vote: Option<Vote>,
    committed: Option<LogId>,
}

struct LogInner {
    dir: PathBuf,
    vote: VoteFile,
    purged: Option<LogId>,
    entries: BTreeMap<u64, Entry>,
}

impl LogInner {
    fn persist(&self) -> io::Result<()> {
        let file = LogFile {
            purged: self.purged,
            entries: self.entries.values().cloned().collect(),
        };
        write_atomic(&self.dir, LOG, &serde_json::to_vec(&file)?)
    }
}

/// The raft log and vote. Cloning shares the same log (openraft wants a separate reader).
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    pub(crate) fn open(dir: &Path) -> io::Result<LogStore> {
        let vote: VoteFile = read_json(dir, VOTE)?.unwrap_or_default();
        let log: LogFile = read_json(dir, LOG)?.unwrap_or_default();
        let inner = LogInner {
            dir: dir.to_path_buf(),
            vote,
            purged: log.purged,
            entries: log
                .entries
                .into_iter()
                .map(|e| (e.log_id.index, e))
                .collect(),
        };
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// Appends and makes it durable before returning.
    fn append_now(&self, entries: impl IntoIterator<Item = Entry>) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap();
        for e in entries {
            inner.entries.insert(e.log_id.index, e);
        }
        inner.persist()
    }

    /// The highest epoch the entries after `applied` (the last applied index) lead to,
    /// applied or not yet committed (see `types::Command`); 0 if none. Applied entries
    /// are skipped: one that was refused did not move the epoch.
    pub(crate) fn epoch_after(&self, applied: Option<u64>) -> u64 {
        let inner = self.inner.lock().unwrap();
        let from = applied.map_or(0, |i| i + 1);
        inner
            .entries
            .range(from..)
            .filter_map(|(_, e)| match &e.payload {
                EntryPayload::Normal(c) => Some(c.epoch + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// No vote and no log: a node that never took part (bootstrap may initialize it).
    pub(crate) fn is_pristine(&self) -> bool {
        let inner = self.inner.lock().unwrap();
        inner.vote.vote.is_none() && inner.entries.is_empty() && inner.purged.is_none()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock().unwrap();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.inner.lock().unwrap();
        let last = inner.entries.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last.or(inner.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().unwrap();
        inner.vote.vote = Some(*vote);
        let bytes = serde_json::to_vec(&inner.vote).expect("a vote serializes");
        write_atomic(&inner.dir, VOTE, &bytes).map_err(|e| io_error(StorageIOError::write_vote, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().unwrap().vote.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Saved with the next vote or right away: losing it only makes a restarted node
        // wait for the leader before it re-applies, so it goes to the same file, durably.
        let mut inner = self.inner.lock().unwrap();
        if inner.vote.committed == committed {
            return Ok(());
        }
        inner.vote.committed = committed;
        let bytes = serde_json::to_vec(&inner.vote).expect("a vote serializes");
        write_atomic(&inner.dir, VOTE, &bytes).map_err(|e| io_error(StorageIOError::write_vote, &e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.lock().unwrap().vote.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let result = self.append_now(entries);
        let error = result
            .as_ref()
            .err()
            .map(|e| io_error(StorageIOError::write_logs, e));
        callback.log_io_completed(result);
        match error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().unwrap();
        inner.entries.split_off(&log_id.index);
        inner
            .persist()
            .map_err(|e| io_error(StorageIOError::write_logs, &e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().unwrap();
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        inner.purged = Some(log_id);
        inner
            .persist()
            .map_err(|e| io_error(StorageIOError::write_logs, &e))
    }
}

/// What the state machine holds, and what a snapshot carries.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct SmState {
    pub last_applied: Option<LogId>,
    pub raft_membership: StoredMembership,
    /// None until the first raft membership entry (the bootstrap) is applied.
    pub membership: Option<Membership>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    state: SmState,
}

/// How far the state machine got: its membership's epoch and the last applied index,
/// read together by the driver to tell what the log holds beyond them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub epoch: u64,
    pub applied: Option<u64>,
}

/// The applied membership, announced to the driver after every change.
pub(crate) struct StateMachine {
    dir: PathBuf,
    state: SmState,
    progress: Arc<Mutex<Progress>>,
    snapshots_built: u64,
    applied: UnboundedSender<Membership>,
}

impl StateMachine {
    pub(crate) fn open(
        dir: &Path,
        applied: UnboundedSender<Membership>,
        progress: Arc<Mutex<Progress>>,
    ) -> io::Result<StateMachine> {
        let file: Option<SnapshotFile> = read_json(dir, SNAPSHOT)?;
        let state = file.map(|f| f.state).unwrap_or_default();
        let sm = StateMachine {
            dir: dir.to_path_buf(),
            state,
            progress,
            snapshots_built: 0,
            applied,
        };
        sm.note_progress();
        Ok(sm)
    }

    fn note_progress(&self) {
        *self.progress.lock().unwrap() = Progress {
            epoch: self.epoch(),
            applied: self.state.last_applied.map(|l| l.index),
        };
    }

    /// The membership a restarted node had agreed (from its snapshot), if any.
    pub(crate) fn membership(&self) -> Option<&Membership> {
        self.state.membership.as_ref()
    }

    fn apply_one(&mut self, entry: &Entry) -> Applied {
        self.state.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => Ok(self.epoch()),
            EntryPayload::Membership(m) => {
                self.state.raft_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                if self.state.membership.is_none() {
                    // The first raft membership is the bootstrap list, ids = indices.
                    let nodes: Vec<NodeSpec> = m.nodes().map(|(_, n)| n.clone()).collect();
                    let boot = Membership::bootstrap(nodes);
                    let _ = self.applied.send(boot.clone());
                    self.state.membership = Some(boot);
                }
                Ok(self.epoch())
            }
            EntryPayload::Normal(cmd) => {
                let Some(m) = self.state.membership.as_mut() else {
                    return Err("no membership to change yet".into());
                };
                if m.epoch != cmd.epoch {
                    return Err(format!(
                        "the membership moved on (proposed at epoch {}, now {}): try again",
                        cmd.epoch, m.epoch
                    ));
                }
                m.apply(&cmd.change).map_err(|e| e.to_string())?;
                let _ = self.applied.send(m.clone());
                Ok(m.epoch)
            }
        }
    }

    fn epoch(&self) -> u64 {
        self.state.membership.as_ref().map_or(0, |m| m.epoch)
    }
}

fn save_snapshot(dir: &Path, meta: &SnapshotMeta, state: &SmState) -> io::Result<()> {
    let file = SnapshotFile {
        meta: meta.clone(),
        state: state.clone(),
    };
    write_atomic(dir, SNAPSHOT, &serde_json::to_vec(&file)?)
}

/// Snapshots are built from the state machine itself: it is small, and building runs on
/// the same thread, so a clone of the state is the consistent view openraft asks for.
pub(crate) struct Builder {
    sm: StateMachineSnapshot,
}

struct StateMachineSnapshot {
    dir: PathBuf,
    state: SmState,
    id: u64,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let s = &self.sm;
        let meta = SnapshotMeta {
            last_log_id: s.state.last_applied,
            last_membership: s.state.raft_membership.clone(),
            snapshot_id: format!("{}-{}", s.state.last_applied.map_or(0, |l| l.index), s.id),
        };
        let bytes = serde_json::to_vec(&s.state).expect("the state serializes");
        save_snapshot(&s.dir, &meta, &s.state).map_err(|e| {
            io_error(
                |a| StorageIOError::write_snapshot(Some(meta.signature()), a),
                &e,
            )
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.state.last_applied, self.state.raft_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let results = entries.into_iter().map(|e| self.apply_one(&e)).collect();
        self.note_progress();
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        Builder {
            sm: StateMachineSnapshot {
                dir: self.dir.clone(),
                state: self.state.clone(),
                id: self.snapshots_built,
            },
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let signature = Some(meta.signature());
        let state: SmState = serde_json::from_slice(snapshot.get_ref()).map_err(|e| {
            io_error(
                |a| StorageIOError::read_snapshot(signature.clone(), a),
                &io::Error::new(io::ErrorKind::InvalidData, e),
            )
        })?;
        save_snapshot(&self.dir, meta, &state)
            .map_err(|e| io_error(|a| StorageIOError::write_snapshot(signature, a), &e))?;
        self.state = state;
        self.note_progress();
        if let Some(m) = &self.state.membership {
            let _ = self.applied.send(m.clone());
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // The newest snapshot on disk (the builder writes it; it may be newer than ours).
        let file: Option<SnapshotFile> = read_json(&self.dir, SNAPSHOT)
            .map_err(|e| io_error(|a| StorageIOError::read_snapshot(None, a), &e))?;
        Ok(file.map(|f| {
            let bytes = serde_json::to_vec(&f.state).expect("the state serializes");
            Snapshot {
                meta: f.meta,
                snapshot: Box::new(Cursor::new(bytes)),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use dse_cluster::Change;
    use openraft::{CommittedLeaderId, Membership as RaftMembership};
    use tokio::sync::mpsc;

    use super::*;
    use crate::types::Command;

    fn spec(i: u16) -> NodeSpec {
        NodeSpec {
            name: format!("n{i}"),
            host: "127.0.0.1".into(),
            port: 7000 + i,
            bus_port: 17000 + i,
        }
    }

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 0), index)
    }

    fn entries() -> Vec<Entry> {
        let nodes: BTreeMap<u64, NodeSpec> = (0..3).map(|i| (i as u64, spec(i))).collect();
        let voters = nodes.keys().copied().collect();
        vec![
            Entry {
                log_id: log_id(0),
                payload: EntryPayload::Membership(RaftMembership::new(vec![voters], nodes)),
            },
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Normal(Command {
                    epoch: 1,
                    change: Change::MarkDown(2),
                }),
            },
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Normal(Command {
                    epoch: 1, // stale: refused when applied
                    change: Change::MarkDown(1),
                }),
            },
        ]
    }

    async fn append(log: &mut LogStore, entries: Vec<Entry>) {
        // openraft's flush callback cannot be made outside openraft.
        log.append_now(entries).unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_vote_and_the_log_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = LogStore::open(dir.path()).unwrap();
        assert!(log.is_pristine());
        let vote = Vote::new(3, 1);
        log.save_vote(&vote).await.unwrap();
        append(&mut log, entries()).await;
        // Both changes are stamped epoch 1: the log reaches epoch 2 until they are applied.
        assert_eq!(log.epoch_after(None), 2);
        assert_eq!(log.epoch_after(Some(1)), 2);
        assert_eq!(log.epoch_after(Some(2)), 0);
        drop(log);

        let mut log = LogStore::open(dir.path()).unwrap();
        assert!(!log.is_pristine());
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        assert_eq!(log.try_get_log_entries(0..).await.unwrap().len(), 3);
        log.truncate(log_id(1)).await.unwrap();
        assert_eq!(log.epoch_after(None), 0);
        log.purge(log_id(0)).await.unwrap();
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(0)));
        assert_eq!(state.last_log_id, Some(log_id(0)));
        drop(log);
        let mut log = LogStore::open(dir.path()).unwrap();
        assert!(log.try_get_log_entries(0..).await.unwrap().is_empty());
        assert_eq!(
            log.get_log_state().await.unwrap().last_purged_log_id,
            Some(log_id(0))
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn applying_and_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let progress = Arc::new(Mutex::new(Progress::default()));
        let mut sm = StateMachine::open(dir.path(), tx, progress.clone()).unwrap();
        let results = sm.apply(entries()).await.unwrap();
        assert_eq!(
            *progress.lock().unwrap(),
            Progress {
                epoch: 2,
                applied: Some(2)
            }
        );
        assert_eq!(results[0], Ok(1));
        assert_eq!(results[1], Ok(2));
        assert!(
            results[2]
                .as_ref()
                .unwrap_err()
                .starts_with(crate::driver::STALE)
        );
        let boot = rx.recv().await.unwrap();
        assert_eq!(boot.epoch, 1);
        assert_eq!(boot.members.len(), 3);
        let m = rx.recv().await.unwrap();
        assert_eq!(m.state(2), Some(dse_cluster::MemberState::Down));
        assert!(rx.try_recv().is_err(), "a refused change announces nothing");

        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2)));
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, snap.meta);

        // A fresh node installs it; a restart reads it back.
        let other = tempfile::tempdir().unwrap();
        let (tx2, mut rx2) = mpsc::unbounded_channel();
        let mut fresh = StateMachine::open(other.path(), tx2, Arc::default()).unwrap();
        fresh
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(rx2.recv().await.unwrap(), m);
        let (applied, _) = fresh.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(2)));
        drop(fresh);
        let (tx3, _rx3) = mpsc::unbounded_channel();
        let progress = Arc::new(Mutex::new(Progress::default()));
        let restarted = StateMachine::open(other.path(), tx3, progress.clone()).unwrap();
        assert_eq!(restarted.membership(), Some(&m));
        assert_eq!(progress.lock().unwrap().applied, Some(2));
    }
}

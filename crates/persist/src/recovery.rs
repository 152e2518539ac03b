//! Recovery: the newest snapshot, then the log from where the snapshot ends.
//!
//! A record already in the snapshot's dump of its key's shard is skipped, so replay
//! applies every logged effect exactly once even though the shards were dumped at
//! different moments.
//!
//! Damage is classified the way Redis's `aof-load-truncated` does: a record cut short at
//! the very end of the newest segment is a torn write from a crash — it was never
//! acknowledged (acknowledgement waits for the write) — and is truncated with a warning.
//! Anything else (a bad checksum with valid records after it, a damaged older segment, a
//! gap in the LSNs) is corruption and stops the start, unless the operator asked to
//! tolerate it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dse_engine::{Effect, Lsn, Store};

use crate::codec::{self, LoggedEffect};
use crate::fs::FileSystem;
use crate::snapshot::{self, SnapshotMeta, SnapshotReader};
use crate::wal::{self, RECORD_HEADER, SEGMENT_HEADER, SegmentMeta};

/// What to do with a damaged log (`--wal-recovery`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Truncate a torn tail; refuse to start on any other damage.
    #[default]
    Strict,
    /// Skip damaged records and load everything else.
    TolerateCorruption,
}

impl RecoveryMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "strict" => Some(RecoveryMode::Strict),
            "tolerate-corruption" => Some(RecoveryMode::TolerateCorruption),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(
        "the write-ahead log {path} is damaged at byte {offset} ({detail}), before its end, so this \
         is not a torn write from a crash. Restore the file from a backup, or start with \
         --wal-recovery tolerate-corruption to skip the damaged records and load the rest \
         (the writes in those records are lost)"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
}

#[derive(Debug, Default, Clone)]
pub struct RecoveryReport {
    pub snapshot: Option<SnapshotMeta>,
    pub snapshot_keys: u64,
    pub snapshot_time: Duration,
    pub records: u64,
    pub effects: u64,
    pub wal_bytes: u64,
    pub wal_time: Duration,
    /// Torn tails cut off: (file, offset).
    pub truncated: Vec<(PathBuf, u64)>,
    /// Damaged ranges skipped under `TolerateCorruption`: (file, offset).
    pub skipped: Vec<(PathBuf, u64)>,
    /// Transactions whose commit never reached the log, dropped whole.
    pub discarded_transactions: u64,
}

pub struct Recovered {
    pub store: Store,
    pub next_lsn: Lsn,
    pub segments: Vec<SegmentMeta>,
    pub snapshot: Option<SnapshotMeta>,
    pub report: RecoveryReport,
}

/// Rebuilds the store from `dir`.
pub fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    shards: usize,
    mode: RecoveryMode,
    now: u64,
    key_slot: Option<fn(&[u8]) -> u16>,
) -> Result<Recovered, RecoveryError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RecoveryError::Io { path, source }
    };
    let mut files = fs.list(dir).map_err(io(dir))?;
    files.sort();
    let mut snapshots = Vec::new();
    let mut segments = Vec::new();
    for f in files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("wal-spare-") && name.ends_with(".tmp") {
            // Space reserved ahead for a segment that was never used.
            let _ = fs.remove(&f);
        } else if snapshot::is_temp(&f) {
            // A snapshot a crash interrupted; the previous one is intact.
            let _ = fs.remove(&f);
        } else if snapshot::is_snapshot(&f) {
            snapshots.push(f);
        } else if let Some(first) = wal::parse_segment_name(&f) {
            let len = fs.file_len(&f).map_err(io(&f))?;
            segments.push(SegmentMeta {
                path: f,
                first_lsn: first,
                len,
            });
        }
    }
    segments.sort_by_key(|s| s.first_lsn);
    let mut report = RecoveryReport::default();

    let (store, snap) = match snapshots.last() {
        Some(path) => {
            let started = Instant::now();
            let reader = SnapshotReader::open(fs, path)?;
            let store = Store::with_seed(shards, reader.seed);
            let meta = reader.load_into(&store, now)?;
            report.snapshot_time = started.elapsed();
            report.snapshot_keys = meta.keys;
            (store, Some(meta))
        }
        None => (Store::new(shards), None),
    };

    let started = Instant::now();
    let start_after = snap.as_ref().map_or(0, |s| s.min_covered);
    let mut next_lsn = snap.as_ref().map_or(1, |s| s.max_covered + 1);
    let mut expected: Option<Lsn> = None;
    let mut seen_any = false;
    // An open transaction: its begin record and the records since, applied at its commit.
    let mut tx: Option<(Lsn, Vec<LoggedRecord>)> = None;
    let last_index = segments.len().saturating_sub(1);
    let mut kept = Vec::with_capacity(segments.len());
    for (i, seg) in segments.into_iter().enumerate() {
        let is_last = i == last_index;
        let data = fs.read_all(&seg.path).map_err(io(&seg.path))?;
        report.wal_bytes += data.len() as u64;
        next_lsn = next_lsn.max(seg.first_lsn);
        if let Err(detail) = check_header(&data, seg.first_lsn) {
            if is_last && data.len() < SEGMENT_HEADER + RECORD_HEADER {
                // Created but never written to: a crash right after a rotation.
                tracing::warn!(
                    "write-ahead log {}: incomplete segment header (a crash while it was \
                     being created); removing it",
                    seg.path.display()
                );
                let _ = fs.remove(&seg.path);
                continue;
            }
            match mode {
                RecoveryMode::Strict => {
                    return Err(RecoveryError::Corrupt {
                        path: seg.path,
                        offset: 0,
                        detail,
                    });
                }
                RecoveryMode::TolerateCorruption => {
                    tracing::warn!("skipping {}: {detail}", seg.path.display());
                    report.skipped.push((seg.path.clone(), 0));
                    kept.push(seg);
                    continue;
                }
            }
        }
        let mut pos = SEGMENT_HEADER;
        while pos < data.len() {
            let record = read_record(&data, pos);
            let (lsn, payload, end) = match record {
                Ok(r) => r,
                Err(detail) => {
                    let resync = find_next_record(&data, pos + 1);
                    if is_last && resync.is_none() {
                        tracing::warn!(
                            "write-ahead log {}: torn record at byte {pos} ({detail}), the \
                             unfinished write of a crash; truncating the log there",
                            seg.path.display()
                        );
                        fs.truncate(&seg.path, pos as u64).map_err(io(&seg.path))?;
                        report.truncated.push((seg.path.clone(), pos as u64));
                        break;
                    }
                    match mode {
                        RecoveryMode::Strict => {
                            return Err(RecoveryError::Corrupt {
                                path: seg.path,
                                offset: pos as u64,
                                detail,
                            });
                        }
                        RecoveryMode::TolerateCorruption => {
                            tracing::warn!(
                                "write-ahead log {}: skipping damaged bytes at {pos} ({detail})",
                                seg.path.display()
                            );
                            report.skipped.push((seg.path.clone(), pos as u64));
                            // Continuity is broken on purpose here.
                            expected = None;
                            pos = resync.unwrap_or(data.len());
                            continue;
                        }
                    }
                }
            };
            if let Some(want) = expected
                && lsn != want
            {
                let detail = format!("expected record {want}, found {lsn}: records are missing");
                if mode == RecoveryMode::Strict {
                    return Err(RecoveryError::Corrupt {
                        path: seg.path,
                        offset: pos as u64,
                        detail,
                    });
                }
                tracing::warn!("write-ahead log {}: {detail}", seg.path.display());
                report.skipped.push((seg.path.clone(), pos as u64));
            }
            if !seen_any && lsn > start_after + 1 {
                let detail = format!(
                    "the log starts at record {lsn} but the snapshot ends at {start_after}: \
                     records are missing"
                );
                if mode == RecoveryMode::Strict {
                    return Err(RecoveryError::Corrupt {
                        path: seg.path,
                        offset: pos as u64,
                        detail,
                    });
                }
                tracing::warn!("{detail}");
            }
            seen_any = true;
            expected = Some(lsn + 1);
            next_lsn = next_lsn.max(lsn + 1);
            pos = end;
            // Markers are looked at even in records the snapshot covers: a transaction's
            // begin tells what follows is all-or-nothing.
            if lsn <= start_after && !is_marker(payload) {
                continue;
            }
            let effects = match codec::decode_effects(payload) {
                Ok(e) => e,
                Err(e) => {
                    // The checksum matched, so this is a writer bug, not disk damage.
                    let detail = format!("undecodable record {lsn}: {e}");
                    if mode == RecoveryMode::Strict {
                        return Err(RecoveryError::Corrupt {
                            path: seg.path,
                            offset: pos as u64,
                            detail,
                        });
                    }
                    report.skipped.push((seg.path.clone(), pos as u64));
                    continue;
                }
            };
            match effects.as_slice() {
                [LoggedEffect::TxBegin] => {
                    if let Some((begun, _)) = tx.take() {
                        tracing::warn!("transaction begun at record {begun} was never committed");
                    }
                    tx = Some((lsn, Vec::new()));
                    continue;
                }
                [LoggedEffect::TxCommit] => {
                    if let Some((_, records)) = tx.take() {
                        for (lsn, effects) in records {
                            report.records += 1;
                            for e in effects {
                                report.effects += 1;
                                apply(&store, e, lsn, snap.as_ref(), now, key_slot);
                            }
                        }
                    }
                    continue;
                }
                _ => {}
            }
            if lsn <= start_after {
                continue;
            }
            if let Some((_, records)) = tx.as_mut() {
                records.push((lsn, effects));
                continue;
            }
            report.records += 1;
            for e in effects {
                report.effects += 1;
                apply(&store, e, lsn, snap.as_ref(), now, key_slot);
            }
        }
        let len = fs.file_len(&seg.path).unwrap_or(seg.len);
        kept.push(SegmentMeta { len, ..seg });
    }
    if let Some((begun, records)) = tx {
        // The EXEC was cut short by the crash, so it was never acknowledged: none of it
        // happened.
        tracing::warn!(
            "the transaction begun at record {begun} never committed (a crash during EXEC); \
             its {} records are discarded",
            records.len()
        );
        report.discarded_transactions += 1;
    }
    report.wal_time = started.elapsed();
    report.snapshot = snap.clone();
    Ok(Recovered {
        store,
        next_lsn,
        segments: kept,
        snapshot: snap,
        report,
    })
}

/// A decoded log record: its LSN and its effects.
type LoggedRecord = (Lsn, Vec<LoggedEffect>);

/// A record holding only a transaction marker, told without decoding the payload.
fn is_marker(payload: &[u8]) -> bool {
    codec::is_tx_marker(payload)
}

fn check_header(data: &[u8], first_lsn: Lsn) -> Result<(), String> {
    if data.len() < SEGMENT_HEADER {
        return Err("segment header is incomplete".into());
    }
    if &data[..8] != wal::SEGMENT_MAGIC {
        return Err("not a dse log segment (bad magic)".into());
    }
    let crc = u32::from_le_bytes(data[20..24].try_into().unwrap_or_default());
    if crc32c::crc32c(&data[..20]) != crc {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
    if version != wal::FORMAT_VERSION {
        return Err(format!("unsupported log format version {version}"));
    }
    let first = u64::from_le_bytes(data[12..20].try_into().unwrap_or_default());
    if first != first_lsn {
        return Err(format!(
            "segment header says it starts at record {first}, its name says {first_lsn}"
        ));
    }
    Ok(())
}

/// The record at `pos`: (LSN, payload, end offset), or why it is not valid.
pub(crate) fn read_record(data: &[u8], pos: usize) -> Result<(Lsn, &[u8], usize), String> {
    let rest = &data[pos..];
    if rest.len() < RECORD_HEADER {
        return Err(format!("{} bytes of a record header", rest.len()));
    }
    let len = u32::from_le_bytes(rest[..4].try_into().unwrap_or_default()) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default());
    let lsn = u64::from_le_bytes(rest[8..16].try_into().unwrap_or_default());
    let end = RECORD_HEADER + len;
    if rest.len() < end {
        return Err(format!(
            "record of {len} bytes, only {} present",
            rest.len() - RECORD_HEADER
        ));
    }
    let payload = &rest[RECORD_HEADER..end];
    if wal::record_crc(lsn, payload) != crc {
        return Err("checksum mismatch".into());
    }
    Ok((lsn, payload, pos + end))
}

/// The offset of the next valid record at or after `from`, if any: a damaged record
/// followed by valid ones is corruption, not a torn tail.
fn find_next_record(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len().saturating_sub(RECORD_HEADER)).find(|&p| read_record(data, p).is_ok())
}

fn apply(
    store: &Store,
    e: LoggedEffect,
    lsn: Lsn,
    snap: Option<&SnapshotMeta>,
    now: u64,
    key_slot: Option<fn(&[u8]) -> u16>,
) {
    let covered = |key: &[u8]| snap.is_some_and(|s| s.covers(key, lsn));
    match e {
        LoggedEffect::Set {
            key,
            value,
            expire_at,
        } => {
            if covered(&key) {
                return;
            }
            // Kept even when its deadline has passed: a later record may extend it
            // (PERSIST) or change the value in place (a list push), and must find it.
            store.insert_loaded(&key, value, expire_at, now);
        }
        LoggedEffect::Del { key } => {
            if !covered(&key) {
                store.apply_logged(&[Effect::Del { key: &key }], lsn, now);
            }
        }
        LoggedEffect::Expire { key, at } => {
            if !covered(&key) {
                store.apply_logged(&[Effect::Expire { key: &key, at }], lsn, now);
            }
        }
        LoggedEffect::FlushAll => match snap {
            Some(s) if lsn <= s.max_covered => store.remove_where(|k| !s.covers(k, lsn)),
            _ => store.apply_logged(&[Effect::FlushAll], lsn, now),
        },
        LoggedEffect::DropSlots { slots } => {
            // Only cluster nodes log it, and a cluster node recovers with its slot map.
            let Some(slot_of) = key_slot else {
                tracing::warn!("record {lsn} drops cluster slots; not a cluster node: skipped");
                return;
            };
            let doomed = |k: &[u8]| dse_engine::slot_in(&slots, slot_of(k));
            match snap {
                Some(s) if lsn <= s.max_covered => {
                    store.remove_where(|k| doomed(k) && !s.covers(k, lsn))
                }
                _ => store.apply_logged(
                    &[Effect::DropSlots {
                        slots: &slots,
                        slot_of,
                    }],
                    lsn,
                    now,
                ),
            }
        }
        // Element-level operations (collections, strings written in place), applied to
        // the key's replayed state.
        e => {
            if !e.key().is_some_and(covered) {
                e.with_collection_effect(|effect| store.apply_logged(&[*effect], lsn, now));
            }
        }
    }
}

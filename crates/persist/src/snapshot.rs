//! Snapshots: the whole keyspace in one file, written without fork and without copying
//! the keyspace.
//!
//! The writer visits the shards in turn. Under one shard's read lock it serialises that
//! shard into a buffer and notes the last LSN assigned so far; the lock is released before
//! the buffer is written out. A shard's dump therefore holds exactly the records for that
//! shard up to its LSN (records for a shard are assigned LSNs under its write lock), and
//! writers wait at most for one shard's serialisation.
//!
//! ```text
//! header   "DSE-SNAP" | version u32 | hash seed u64 | shard count u32 | created ms u64
//! section  shard u32 | covered LSN u64 | entries u64 | bytes u64 | entries...
//!          entry: key (varint len, bytes) | deadline u64 | value
//! footer   "DSE-END\0" | keys u64 | min covered LSN u64 | max covered LSN u64 | CRC32C u32
//! ```
//! The CRC covers every byte before it. Files are written as `temp-*.snap`, fsynced,
//! renamed to `snapshot-<min LSN>.snap`, and the directory is fsynced.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dse_engine::{Lsn, Store};

use crate::codec::{self, Reader};
use crate::fs::FileSystem;

pub const SNAPSHOT_MAGIC: &[u8; 8] = b"DSE-SNAP";
pub const FOOTER_MAGIC: &[u8; 8] = b"DSE-END\0";
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 4 + 8;
const SECTION_LEN: usize = 4 + 8 + 8 + 8;
const FOOTER_LEN: usize = 8 + 8 + 8 + 8 + 4;

/// What a snapshot covers.
#[derive(Debug, Clone)]
pub struct SnapshotMeta {
    pub path: PathBuf,
    pub seed: u64,
    pub shard_count: usize,
    pub created_ms: u64,
    /// Per shard of the store that wrote it: records up to this LSN are in the dump.
    pub covered: Vec<Lsn>,
    pub min_covered: Lsn,
    pub max_covered: Lsn,
    pub keys: u64,
    pub bytes: u64,
}

impl SnapshotMeta {
    /// True when the record `lsn` for `key` is already part of this snapshot.
    pub fn covers(&self, key: &[u8], lsn: Lsn) -> bool {
        if lsn <= self.min_covered {
            return true;
        }
        if lsn > self.max_covered {
            return false;
        }
        self.covered[Store::shard_for(self.seed, self.shard_count, key)] >= lsn
    }
}

pub fn snapshot_name(min_covered: Lsn) -> String {
    format!("snapshot-{min_covered:020}.snap")
}

pub fn is_snapshot(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".snap"))
}

pub fn is_temp(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("temp-") && n.ends_with(".snap"))
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs one shard's dump (the closure it is given) under whatever exclusion the caller
/// needs.
pub type DumpWrapper = Box<dyn Fn(&mut dyn FnMut()) + Send + Sync>;

/// Writes a snapshot of `store` into `dir`. `assigned` returns the last LSN assigned; it
/// is read under each shard's read lock.
pub fn write(
    store: &Store,
    fs: &dyn FileSystem,
    dir: &Path,
    assigned: &dyn Fn() -> Lsn,
    wrapper: Option<&DumpWrapper>,
    now: u64,
) -> std::io::Result<SnapshotMeta> {
    let tmp = dir.join(format!(
        "temp-{}-{}.snap",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let file = fs.create(&tmp)?;
    let result = (|| {
        let mut offset = 0u64;
        let mut crc = 0u32;
        let mut emit = |bytes: &[u8]| -> std::io::Result<()> {
            file.write_all_at(bytes, offset)?;
            offset += bytes.len() as u64;
            crc = crc32c::crc32c_append(crc, bytes);
            Ok(())
        };
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(SNAPSHOT_MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&store.seed().to_le_bytes());
        header.extend_from_slice(&(store.shard_count() as u32).to_le_bytes());
        header.extend_from_slice(&now.to_le_bytes());
        emit(&header)?;

        let mut covered = Vec::with_capacity(store.shard_count());
        let mut keys = 0u64;
        let mut body = Vec::new();
        for shard in 0..store.shard_count() {
            body.clear();
            let mut count = 0u64;
            let mut lsn = 0;
            let mut dump = || {
                let g = store.read_shard(shard);
                lsn = assigned();
                for e in g.iter(now) {
                    codec::put_bytes(&mut body, e.key());
                    codec::put_u64(&mut body, e.expire_at().unwrap_or(0));
                    codec::encode_value(&mut body, e.value());
                    count += 1;
                }
            };
            match wrapper {
                Some(w) => w(&mut dump),
                None => dump(),
            }
            let mut section = [0u8; SECTION_LEN];
            section[..4].copy_from_slice(&(shard as u32).to_le_bytes());
            section[4..12].copy_from_slice(&lsn.to_le_bytes());
            section[12..20].copy_from_slice(&count.to_le_bytes());
            section[20..28].copy_from_slice(&(body.len() as u64).to_le_bytes());
            emit(&section)?;
            emit(&body)?;
            covered.push(lsn);
            keys += count;
        }
        let min_covered = covered.iter().copied().min().unwrap_or(0);
        let max_covered = covered.iter().copied().max().unwrap_or(0);
        let mut footer = Vec::with_capacity(FOOTER_LEN);
        footer.extend_from_slice(FOOTER_MAGIC);
        footer.extend_from_slice(&keys.to_le_bytes());
        footer.extend_from_slice(&min_covered.to_le_bytes());
        footer.extend_from_slice(&max_covered.to_le_bytes());
        emit(&footer)?;
        file.write_all_at(&crc.to_le_bytes(), offset)?;
        let bytes = offset + 4;
        file.sync_data()?;
        let path = dir.join(snapshot_name(min_covered));
        fs.rename(&tmp, &path)?;
        fs.sync_dir(dir)?;
        Ok(SnapshotMeta {
            path,
            seed: store.seed(),
            shard_count: store.shard_count(),
            created_ms: now,
            covered,
            min_covered,
            max_covered,
            keys,
            bytes,
        })
    })();
    if result.is_err() {
        let _ = fs.remove(&tmp);
    }
    result
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read snapshot {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot {path} is damaged ({detail})")]
    Damaged { path: PathBuf, detail: String },
}

/// A snapshot being read: its header first (to build a store with its seed), then its
/// contents.
pub struct SnapshotReader {
    path: PathBuf,
    src: Box<dyn Read + Send>,
    crc: u32,
    pub seed: u64,
    pub shard_count: usize,
    pub created_ms: u64,
}

impl SnapshotReader {
    pub fn open(fs: &dyn FileSystem, path: &Path) -> Result<SnapshotReader, SnapshotError> {
        let src = fs.open(path).map_err(|source| SnapshotError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut r = SnapshotReader {
            path: path.to_path_buf(),
            src,
            crc: 0,
            seed: 0,
            shard_count: 0,
            created_ms: 0,
        };
        let header = r.read_exact(HEADER_LEN)?;
        if &header[..8] != SNAPSHOT_MAGIC {
            return Err(r.damaged("not a dse snapshot (bad magic)"));
        }
        let mut h = Reader::new(&header[8..]);
        let version = h.u32().unwrap_or(0);
        if version != FORMAT_VERSION {
            return Err(r.damaged(&format!("unsupported format version {version}")));
        }
        r.seed = h.u64().unwrap_or(0);
        r.shard_count = h.u32().unwrap_or(0) as usize;
        r.created_ms = h.u64().unwrap_or(0);
        if !r.shard_count.is_power_of_two() || r.shard_count > dse_engine::MAX_SHARDS {
            return Err(r.damaged("bad shard count"));
        }
        Ok(r)
    }

    fn damaged(&self, detail: &str) -> SnapshotError {
        SnapshotError::Damaged {
            path: self.path.clone(),
            detail: detail.to_string(),
        }
    }

    fn read_exact(&mut self, n: usize) -> Result<Vec<u8>, SnapshotError> {
        let mut buf = vec![0u8; n];
        self.src.read_exact(&mut buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.damaged("truncated")
            } else {
                SnapshotError::Io {
                    path: self.path.clone(),
                    source: e,
                }
            }
        })?;
        self.crc = crc32c::crc32c_append(self.crc, &buf);
        Ok(buf)
    }

    /// Loads every entry into `store` and checks the checksum.
    pub fn load_into(mut self, store: &Store, now: u64) -> Result<SnapshotMeta, SnapshotError> {
        let mut covered = vec![0; self.shard_count];
        let mut keys = 0u64;
        let mut bytes = HEADER_LEN as u64;
        for expect in 0..self.shard_count {
            let section = self.read_exact(SECTION_LEN)?;
            let mut s = Reader::new(&section);
            let (shard, lsn, count, len) = (
                s.u32().unwrap_or(u32::MAX) as usize,
                s.u64().unwrap_or(0),
                s.u64().unwrap_or(0),
                s.u64().unwrap_or(0),
            );
            if shard != expect {
                return Err(self.damaged(&format!("section {expect} is numbered {shard}")));
            }
            if len > 1 << 40 {
                return Err(self.damaged("implausible section length"));
            }
            let body = self.read_exact(len as usize)?;
            bytes += (SECTION_LEN + body.len()) as u64;
            let mut r = Reader::new(&body);
            for _ in 0..count {
                let entry = (|| {
                    let key = r.bytes()?;
                    let expire_at = r.u64()?;
                    let value = r.value()?;
                    Ok::<_, codec::DecodeError>((key, expire_at, value))
                })()
                .map_err(|e| self.damaged(&format!("shard {shard}: {e}")))?;
                let (key, expire_at, value) = entry;
                // Loaded even when its deadline has passed (reads treat it as absent and
                // expiry removes it): a later log record may still change it, as a
                // PERSIST or a list push made before the deadline did.
                store.insert_loaded(key, value, expire_at, now);
                keys += 1;
            }
            if !r.is_empty() {
                return Err(self.damaged(&format!("shard {shard}: trailing bytes")));
            }
            covered[shard] = lsn;
        }
        let footer = self.read_exact(FOOTER_LEN - 4)?;
        let expected_crc = self.crc;
        let mut crc_bytes = [0u8; 4];
        self.src
            .read_exact(&mut crc_bytes)
            .map_err(|_| self.damaged("truncated checksum"))?;
        if &footer[..8] != FOOTER_MAGIC {
            return Err(self.damaged("bad footer"));
        }
        if u32::from_le_bytes(crc_bytes) != expected_crc {
            return Err(self.damaged("checksum mismatch"));
        }
        let mut f = Reader::new(&footer[8..]);
        let _total = f.u64().unwrap_or(0);
        let min_covered = f.u64().unwrap_or(0);
        let max_covered = f.u64().unwrap_or(0);
        Ok(SnapshotMeta {
            path: self.path,
            seed: self.seed,
            shard_count: self.shard_count,
            created_ms: self.created_ms,
            covered,
            min_covered,
            max_covered,
            keys,
            bytes: bytes + FOOTER_LEN as u64,
        })
    }
}

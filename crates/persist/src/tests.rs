//! Unit tests of the log, snapshots and recovery, on a real directory, with faults
//! injected through [`FaultyFs`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dse_engine::{Expiry, Store, Value};

use crate::wal::{self, FsyncPolicy, SEGMENT_HEADER};
use crate::{FaultyFs, FileSystem, PersistOptions, Persistence, RecoveryMode, StdFs};

static N: AtomicUsize = AtomicUsize::new(0);

fn temp_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "dse-persist-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn opts(dir: &Path, fsync: FsyncPolicy) -> PersistOptions {
    PersistOptions {
        dir: dir.to_path_buf(),
        appendonly: true,
        fsync,
        snapshot_interval: 0,
        recovery: RecoveryMode::Strict,
        segment_size: 64 << 20,
        shards: 8,
        key_slot: None,
    }
}

/// Opens persistence over `dir` and returns the store with its journal installed.
fn open(o: PersistOptions, fs: Arc<dyn FileSystem>) -> (Arc<Persistence>, Arc<Store>) {
    let (p, store, _) = Persistence::open(o, fs).unwrap();
    let store = Arc::new(store);
    store.set_journal(p.journal());
    (p, store)
}

fn set(store: &Store, key: &str, val: &str) -> Result<u64, dse_engine::WriteError> {
    let h = store.hash(key.as_bytes());
    store
        .write(h)
        .put_str(key.as_bytes(), h, val.as_bytes(), Expiry::None, 1)
}

fn get(store: &Store, key: &str) -> Option<Value> {
    let h = store.hash(key.as_bytes());
    store
        .read(h)
        .get(key.as_bytes(), h, 1)
        .map(|e| e.value().clone())
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| wal::parse_segment_name(p).is_some())
        .collect();
    v.sort();
    v
}

#[test]
fn log_round_trip() {
    let dir = temp_dir();
    {
        let (p, store) = open(opts(&dir, FsyncPolicy::Always), Arc::new(StdFs));
        for i in 0..100 {
            let lsn = set(&store, &format!("k{i}"), &format!("v{i}")).unwrap();
            assert!(p.make_acked(lsn) || p.wal().unwrap().flush_and_sync());
        }
        let h = store.hash(b"k5");
        store.write(h).remove(b"k5", h, 1).unwrap();
        p.wal().unwrap().flush_and_sync();
    }
    let (_p, store) = open(opts(&dir, FsyncPolicy::Always), Arc::new(StdFs));
    assert_eq!(get(&store, "k7"), Some(Value::bytes(b"v7".to_vec())));
    assert_eq!(get(&store, "k5"), None);
    assert_eq!(store.len(), 99);
}

#[test]
fn torn_tail_is_truncated_at_every_offset() {
    let dir = temp_dir();
    {
        let (p, store) = open(opts(&dir, FsyncPolicy::Always), Arc::new(StdFs));
        set(&store, "a", "1").unwrap();
        set(&store, "b", "2").unwrap();
        set(&store, "last", "a longer value in the last record").unwrap();
        p.wal().unwrap().flush_and_sync();
    }
    let seg = segments(&dir).pop().unwrap();
    let full = std::fs::read(&seg).unwrap();
    // The last record starts where a log holding only the first two ends.
    let last_start = {
        let mut pos = SEGMENT_HEADER;
        for _ in 0..2 {
            let len = u32::from_le_bytes(full[pos..pos + 4].try_into().unwrap()) as usize;
            pos += wal::RECORD_HEADER + len;
        }
        pos
    };
    for cut in last_start..full.len() {
        let case = temp_dir();
        std::fs::write(case.join(seg.file_name().unwrap()), &full[..cut]).unwrap();
        let (_p, store) = open(opts(&case, FsyncPolicy::Always), Arc::new(StdFs));
        assert_eq!(get(&store, "a"), Some(Value::Int(1)), "cut at {cut}");
        assert_eq!(get(&store, "b"), Some(Value::Int(2)), "cut at {cut}");
        assert_eq!(get(&store, "last"), None, "cut at {cut}");
        drop(store);
        std::fs::remove_dir_all(&case).unwrap();
    }
}

#[test]
fn corruption_before_the_tail_refuses_to_start() {
    let dir = temp_dir();
    {
        let (p, store) = open(opts(&dir, FsyncPolicy::Always), Arc::new(StdFs));
        for i in 0..20 {
            set(&store, &format!("k{i}"), "value").unwrap();
        }
        p.wal().unwrap().flush_and_sync();
    }
    let seg = segments(&dir).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let err = match Persistence::open(opts(&dir, FsyncPolicy::Always), Arc::new(StdFs)) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a corrupt log must stop the start"),
    };
    assert!(err.contains(&seg.display().to_string()), "{err}");
    assert!(err.contains("tolerate-corruption"), "{err}");
    // Tolerating it loads everything but the damaged record.
    let mut o = opts(&dir, FsyncPolicy::Always);
    o.recovery = RecoveryMode::TolerateCorruption;
    let (_p, store) = open(o, Arc::new(StdFs));
    assert_eq!(store.len(), 19);
}

#[test]
fn disk_full_refuses_writes_before_applying_them_then_recovers() {
    let dir = temp_dir();
    let fs = FaultyFs::new();
    let mut o = opts(&dir, FsyncPolicy::EverySec);
    o.segment_size = 4096;
    let mut acked = Vec::new();
    {
        let (p, store) = open(o.clone(), Arc::new(fs.clone()));
        // The disk fills up: the space reserved for the open segment is all that is left.
        fs.fill_after(0);
        let refused = loop {
            let k = format!("k{}", acked.len());
            match set(&store, &k, "a value of some length") {
                Ok(lsn) => {
                    assert!(p.make_acked(lsn), "a record in reserved space is written");
                    acked.push(k);
                }
                Err(e) => break (k, e),
            }
            assert!(acked.len() < 1000, "the disk never filled up");
        };
        assert!(
            refused.1.to_string().starts_with("MISCONF"),
            "{}",
            refused.1
        );
        assert_eq!(
            get(&store, &refused.0),
            None,
            "a refused write is not applied"
        );
        assert!(get(&store, &acked[0]).is_some(), "reads go on");
        assert!(set(&store, "still", "v").is_err());
        // Room again: writes resume by themselves (after the retry delay).
        fs.heal();
        std::thread::sleep(std::time::Duration::from_millis(150));
        let lsn = set(&store, "after", "v").unwrap();
        assert!(p.make_acked(lsn));
        acked.push("after".into());
    }
    let (_p, store) = open(o, Arc::new(StdFs));
    for k in &acked {
        assert!(get(&store, k).is_some(), "lost {k}");
    }
    assert_eq!(store.len(), acked.len());
}

#[test]
fn failed_fsync_is_retried_and_nothing_is_lost() {
    let dir = temp_dir();
    let fs = FaultyFs::new();
    {
        let (p, store) = open(opts(&dir, FsyncPolicy::Always), Arc::new(fs.clone()));
        let w = p.wal().unwrap().clone();
        let lsn = set(&store, "x", "1").unwrap();
        fs.fail_sync(true);
        assert!(w.write_through(lsn));
        assert!(!w.flush_and_sync(), "a failed fsync is reported");
        assert!(p.acked() < lsn, "not durable, not acked");
        assert!(
            set(&store, "y", "2").is_err(),
            "writes refused while fsync fails"
        );
        fs.heal();
        assert!(w.flush_and_sync());
        assert!(p.acked() >= lsn);
        set(&store, "z", "3").unwrap();
        w.flush_and_sync();
    }
    let (_p, store) = open(opts(&dir, FsyncPolicy::Always), Arc::new(StdFs));
    assert_eq!(get(&store, "x"), Some(Value::Int(1)));
    assert_eq!(get(&store, "y"), None);
    assert_eq!(get(&store, "z"), Some(Value::Int(3)));
}

#[test]
fn snapshot_during_writes_then_log_replays_exactly_once() {
    let dir = temp_dir();
    {
        let (p, store) = open(opts(&dir, FsyncPolicy::No), Arc::new(StdFs));
        for i in 0..2000 {
            set(&store, &format!("k{i}"), "0").unwrap();
        }
        // Counters incremented (by value: INCR's effect) while a snapshot runs.
        let writer = {
            let store = store.clone();
            std::thread::spawn(move || {
                for round in 1..=1000u64 {
                    for c in 0..8 {
                        let key = format!("counter{c}");
                        let h = store.hash(key.as_bytes());
                        let mut g = store.write(h);
                        let cur = match g.get(key.as_bytes(), h, 1).map(|e| e.value().clone()) {
                            Some(Value::Int(n)) => n,
                            _ => 0,
                        };
                        assert_eq!(cur as u64, round - 1);
                        g.put(key.as_bytes(), h, Value::Int(cur + 1), Expiry::Keep, 1)
                            .unwrap();
                    }
                }
            })
        };
        while !writer.is_finished() {
            p.snapshot(&store).unwrap();
        }
        writer.join().unwrap();
        p.wal().unwrap().flush_and_sync();
    }
    let (_p, store) = open(opts(&dir, FsyncPolicy::No), Arc::new(StdFs));
    for c in 0..8 {
        assert_eq!(get(&store, &format!("counter{c}")), Some(Value::Int(1000)));
    }
    assert_eq!(store.len(), 2008);
}

#[test]
fn snapshot_removes_covered_segments() {
    let dir = temp_dir();
    let mut o = opts(&dir, FsyncPolicy::No);
    o.segment_size = 4096;
    let (p, store) = open(o, Arc::new(StdFs));
    for i in 0..2000 {
        set(&store, &format!("key-{i}"), "some value to fill segments").unwrap();
        p.make_acked(u64::MAX - 1);
    }
    assert!(segments(&dir).len() > 5);
    p.snapshot(&store).unwrap();
    assert!(segments(&dir).len() <= 2, "{:?}", segments(&dir));
    drop(store);
    drop(p);
    let (_p, store) = open(opts(&dir, FsyncPolicy::No), Arc::new(StdFs));
    assert_eq!(store.len(), 2000);
}

#[test]
fn a_transaction_without_its_commit_is_dropped_whole() {
    let dir = temp_dir();
    {
        let (p, store) = open(opts(&dir, FsyncPolicy::Always), Arc::new(StdFs));
        set(&store, "before", "1").unwrap();
        store.log_marker(dse_engine::Effect::TxBegin).unwrap();
        set(&store, "committed-a", "1").unwrap();
        set(&store, "committed-b", "1").unwrap();
        store.log_marker(dse_engine::Effect::TxCommit).unwrap();
        // A second EXEC that the crash cuts short: begun, two writes, no commit.
        store.log_marker(dse_engine::Effect::TxBegin).unwrap();
        set(&store, "torn-a", "1").unwrap();
        set(&store, "before", "2").unwrap();
        p.wal().unwrap().flush_and_sync();
    }
    let (_p, store) = open(opts(&dir, FsyncPolicy::Always), Arc::new(StdFs));
    assert_eq!(get(&store, "committed-a"), Some(Value::Int(1)));
    assert_eq!(get(&store, "committed-b"), Some(Value::Int(1)));
    assert_eq!(get(&store, "torn-a"), None, "half a transaction came back");
    assert_eq!(
        get(&store, "before"),
        Some(Value::Int(1)),
        "half a transaction came back"
    );
}

#[test]
fn log_reader_follows_rotation_and_live_writes() {
    use crate::reader::{LogReader, ReadError};
    let dir = temp_dir();
    let mut o = opts(&dir, FsyncPolicy::No);
    o.segment_size = 4096;
    let (p, store) = open(o, Arc::new(StdFs));
    let wal = p.wal().unwrap().clone();
    for i in 0..500 {
        set(&store, &format!("k{i}"), "a value that fills segments").unwrap();
    }
    // One record far larger than a read.
    let big = "x".repeat(300_000);
    set(&store, "big", &big).unwrap();
    assert!(p.make_acked(u64::MAX - 1) || wal.write_through(p.assigned()));
    assert!(wal.segments().len() > 5, "several segments");

    let mut r = LogReader::new(wal.clone(), 1);
    let mut got = Vec::new();
    while !r.caught_up() {
        r.read(8192, &mut got).unwrap();
    }
    assert_eq!(got.len(), 501);
    for (i, (lsn, _)) in got.iter().enumerate() {
        assert_eq!(*lsn, i as u64 + 1);
    }
    let last = crate::codec::decode_effects(&got[500].1).unwrap();
    assert!(matches!(&last[0], crate::codec::LoggedEffect::Set { key, .. } if key == b"big"));

    // Writes after the reader caught up arrive on the next read.
    set(&store, "later", "v").unwrap();
    wal.write_through(p.assigned());
    let mut more = Vec::new();
    r.read(1 << 20, &mut more).unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].0, 502);

    // A reader starting in the middle.
    let mut mid = LogReader::new(wal.clone(), 250);
    let mut from_mid = Vec::new();
    while !mid.caught_up() {
        mid.read(1 << 20, &mut from_mid).unwrap();
    }
    assert_eq!(from_mid.first().unwrap().0, 250);
    assert_eq!(from_mid.len(), 253);

    // Once a snapshot covers the early segments, reading from 1 is impossible.
    p.snapshot(&store).unwrap();
    let mut stale = LogReader::new(wal.clone(), 1);
    match stale.read(1 << 20, &mut Vec::new()) {
        Err(ReadError::Gone { wanted: 1, oldest }) => assert!(oldest > 1),
        other => panic!("expected Gone, got {other:?}"),
    }
}

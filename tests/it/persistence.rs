//! Durability, proven by killing the server: acknowledged writes survive SIGKILL, torn
//! tails are truncated, corruption stops the start, snapshots and the log never apply a
//! write twice, and a full disk refuses writes without losing acknowledged ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use redis::{Commands, ConnectionLike};

use crate::util::{Server, temp_dir};

/// What a writer knows about one key after the crash.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    /// Acknowledged: the key must hold this value.
    Value(String),
    /// Acknowledged deletion: the key must be absent.
    Deleted,
    /// A write was in flight when the server died: either outcome is allowed.
    Either(Option<String>, Option<String>),
}

#[derive(Default)]
struct Ledger {
    keys: HashMap<String, Known>,
    /// counter key -> (acknowledged increments, increments in flight)
    counters: HashMap<String, (i64, i64)>,
    /// Keys given an acknowledged TTL (EXPIRE 100000).
    ttls: Vec<String>,
}

fn writer(port: u16, id: usize, stop: Arc<AtomicBool>, ledger: Arc<Mutex<Ledger>>, cycle: usize) {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) else {
        return;
    };
    let Ok(mut con) = client.get_connection() else {
        return;
    };
    let mut rng = rand::rng();
    let counter = format!("counter:{id}");
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let key = format!("c{cycle}:w{id}:{i}");
        let value = format!("v{cycle}-{id}-{i}-{}", rng.random::<u32>());
        match rng.random_range(0..10) {
            0..=4 => {
                let before = ledger.lock().unwrap().keys.get(&key).cloned();
                let before_val = match before {
                    Some(Known::Value(v)) => Some(v),
                    _ => None,
                };
                ledger
                    .lock()
                    .unwrap()
                    .keys
                    .insert(key.clone(), Known::Either(before_val, Some(value.clone())));
                let r: redis::RedisResult<()> = con.set(&key, &value);
                if r.is_err() {
                    return;
                }
                ledger.lock().unwrap().keys.insert(key, Known::Value(value));
            }
            5..=7 => {
                ledger
                    .lock()
                    .unwrap()
                    .counters
                    .entry(counter.clone())
                    .or_default()
                    .1 += 1;
                let r: redis::RedisResult<i64> = con.incr(&counter, 1);
                let mut l = ledger.lock().unwrap();
                let c = l.counters.get_mut(&counter).unwrap();
                match r {
                    Ok(n) => {
                        c.0 += 1;
                        c.1 -= 1;
                        assert_eq!(n, c.0, "INCR reply out of step");
                    }
                    Err(_) => return,
                }
            }
            8 if i > 1 => {
                // Delete an earlier key of ours that was acknowledged.
                let target = format!("c{cycle}:w{id}:{}", rng.random_range(1..i));
                let prior = ledger.lock().unwrap().keys.get(&target).cloned();
                let Some(Known::Value(v)) = prior else {
                    continue;
                };
                ledger
                    .lock()
                    .unwrap()
                    .keys
                    .insert(target.clone(), Known::Either(Some(v), None));
                let r: redis::RedisResult<i64> = con.del(&target);
                if r.is_err() {
                    return;
                }
                ledger.lock().unwrap().keys.insert(target, Known::Deleted);
            }
            _ if i > 1 => {
                let target = format!("c{cycle}:w{id}:{}", rng.random_range(1..i));
                let prior = ledger.lock().unwrap().keys.get(&target).cloned();
                let Some(Known::Value(_)) = prior else {
                    continue;
                };
                let r: redis::RedisResult<i64> = con.expire(&target, 100_000);
                match r {
                    Ok(1) => ledger.lock().unwrap().ttls.push(target),
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
            _ => {}
        }
    }
}

/// Checks the recovered server against the ledger, then re-bases the ledger on what
/// the server holds (an in-flight write may or may not have landed; from now on it is
/// known).
fn check(srv: &Server, ledger: &mut Ledger) {
    let mut con = srv.client();
    for (key, known) in &ledger.keys {
        let got: Option<String> = con.get(key).unwrap();
        match known {
            Known::Value(v) => assert_eq!(got.as_ref(), Some(v), "acknowledged SET of {key} lost"),
            Known::Deleted => assert_eq!(got, None, "acknowledged DEL of {key} undone"),
            Known::Either(a, b) => assert!(
                got == *a || got == *b,
                "{key} holds {got:?}, neither {a:?} nor {b:?}"
            ),
        }
    }
    for (key, (acked, in_flight)) in ledger.counters.iter_mut() {
        let got: Option<i64> = con.get(key).unwrap();
        let got = got.unwrap_or(0);
        assert!(
            got >= *acked && got <= *acked + *in_flight,
            "{key} = {got}, acknowledged {acked}, in flight {in_flight}"
        );
        *acked = got;
        *in_flight = 0;
    }
    for key in &ledger.ttls {
        if let Some(Known::Value(_)) = ledger.keys.get(key) {
            let ttl: i64 = con.ttl(key).unwrap();
            assert!(ttl > 0, "acknowledged EXPIRE of {key} lost (TTL {ttl})");
        }
    }
    // Nothing that was never written appears.
    let keys: Vec<String> = con.keys("*").unwrap();
    for k in keys {
        assert!(
            ledger.keys.contains_key(&k) || ledger.counters.contains_key(&k),
            "never-written key {k} appeared"
        );
    }
    for (key, known) in ledger.keys.iter_mut() {
        if let Known::Either(..) = known {
            let got: Option<String> = con.get(key).unwrap();
            *known = match got {
                Some(v) => Known::Value(v),
                None => Known::Deleted,
            };
        }
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "1"]);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = rand::rng();
    for cycle in 0..4 {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..8)
            .map(|id| {
                let (stop, ledger, port) = (stop.clone(), ledger.clone(), srv.port);
                std::thread::spawn(move || writer(port, id, stop, ledger, cycle))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
        srv.kill9();
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            w.join().unwrap();
        }
        srv.restart();
        let mut l = ledger.lock().unwrap();
        assert!(
            l.keys.len() > 50,
            "the writers did too little to prove anything ({} keys)",
            l.keys.len()
        );
        check(&srv, &mut l);
    }
}

/// The log segments in a data directory, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wal-") && n.ends_with(".log"))
        })
        .collect();
    v.sort();
    v
}

/// Offsets of the records in a log segment (after its 24-byte header).
fn record_offsets(seg: &[u8]) -> Vec<usize> {
    let mut pos = 24;
    let mut out = Vec::new();
    while pos + 16 <= seg.len() {
        out.push(pos);
        let len = u32::from_le_bytes(seg[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 16 + len;
    }
    out
}

/// Runs the server on `dir` expecting it to refuse to start; returns its output. A
/// server that starts anyway is killed after a while (and the caller's asserts fail).
fn start_in(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dse-server"))
        .args(["--port", "0", "--data"])
        .arg(dir)
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().unwrap()
}

#[test]
fn torn_tail_is_truncated_and_complete_records_kept() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "first", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "second", "2"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "last", "the last record"]), "+OK\r\n");
    srv.kill9();
    let seg = segments(&srv.dir).pop().expect("a log segment");
    let bytes = std::fs::read(&seg).unwrap();
    let offsets = record_offsets(&bytes);
    let last = *offsets.last().unwrap();
    for cut in last..bytes.len() {
        let dir = temp_dir("torn");
        std::fs::write(dir.join(seg.file_name().unwrap()), &bytes[..cut]).unwrap();
        let mut s = Server::launch_in(dir, &["--snapshot-interval", "0"]);
        let mut r = s.raw();
        assert_eq!(r.call(&["GET", "first"]), "$1\r\n1\r\n", "cut at {cut}");
        assert_eq!(r.call(&["GET", "second"]), "$1\r\n2\r\n", "cut at {cut}");
        assert_eq!(r.call(&["GET", "last"]), "$-1\r\n", "cut at {cut}");
        if cut > last {
            assert!(s.log().contains("torn record"), "no warning at cut {cut}");
        }
        s.kill9();
    }
}

#[test]
fn corruption_in_the_middle_refuses_to_start() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut r = srv.raw();
    for i in 0..50 {
        assert_eq!(r.call(&["SET", &format!("k{i}"), "value"]), "+OK\r\n");
    }
    srv.kill9();
    let seg = segments(&srv.dir).pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let offsets = record_offsets(&bytes);
    let victim = offsets[offsets.len() / 2] + 20;
    bytes[victim] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();

    let out = start_in(&srv.dir, &["--snapshot-interval", "0"]);
    assert!(!out.status.success(), "a corrupt log must stop the start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&seg.display().to_string()), "{err}");
    assert!(
        err.contains(&format!("byte {}", offsets[offsets.len() / 2])),
        "{err}"
    );
    assert!(err.contains("tolerate-corruption"), "{err}");

    let mut s = Server::launch_in(
        srv.dir.clone(),
        &[
            "--snapshot-interval",
            "0",
            "--wal-recovery",
            "tolerate-corruption",
        ],
    );
    let mut c = s.client();
    let present = (0..50)
        .filter(|i| c.exists::<_, bool>(format!("k{i}")).unwrap())
        .count();
    assert_eq!(present, 49, "exactly the damaged record is skipped");
    s.kill9();
}

#[test]
fn counter_across_snapshots_and_a_crash_is_never_double_applied() {
    let mut srv = Server::with_args(&["--appendfsync", "everysec", "--snapshot-interval", "0"]);
    let mut c = srv.client();
    for _ in 0..100 {
        let _: i64 = c.incr("counter", 1).unwrap();
    }
    assert_eq!(srv.raw().call(&["SAVE"]), "+OK\r\n");
    for _ in 0..100 {
        let _: i64 = c.incr("counter", 1).unwrap();
    }
    // A background snapshot racing with more increments.
    assert_eq!(
        srv.raw().call(&["BGSAVE"]),
        "+Background saving started\r\n"
    );
    for _ in 0..300 {
        let _: i64 = c.incr("counter", 1).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    srv.kill9();
    srv.restart();
    let n: i64 = srv.client().get("counter").unwrap();
    assert_eq!(n, 500);
    // And once more from the snapshot plus the log written since.
    let mut c = srv.client();
    for _ in 0..50 {
        let _: i64 = c.incr("counter", 1).unwrap();
    }
    srv.kill9();
    srv.restart();
    let n: i64 = srv.client().get("counter").unwrap();
    assert_eq!(n, 550);
}

#[test]
fn shutdown_saves_and_restart_loads_without_the_log() {
    let mut srv = Server::with_args(&["--appendonly", "no", "--snapshot-interval", "3600"]);
    let mut c = srv.client();
    for i in 0..1000 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    assert_eq!(srv.terminate(), Some(0));
    srv.restart();
    let v: i64 = srv.client().get("k999").unwrap();
    assert_eq!(v, 999);
}

struct Tmpfs(PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn full_disk_refuses_writes_keeps_reads_and_loses_nothing() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let mount = temp_dir("tmpfs");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mount)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        println!("skipped: cannot mount a tmpfs here");
        return;
    }
    let _cleanup = Tmpfs(mount.clone());
    // A filler file takes most of the space, so the disk can be "cleaned up" later.
    std::fs::write(mount.join("filler"), vec![0u8; 3 << 20]).unwrap();
    let data = mount.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut srv = Server::launch_in(
        data.clone(),
        &[
            "--appendfsync",
            "always",
            "--snapshot-interval",
            "0",
            "--wal-segment-size",
            "128kb",
        ],
    );
    let mut c = srv.client();
    let value = "x".repeat(4000);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..2000 {
        let key = format!("k{i}");
        match c.set::<_, _, ()>(&key, &value) {
            Ok(()) => acked.push(key),
            Err(e) => {
                refused = Some(e.to_string());
                break;
            }
        }
    }
    let refused = refused.expect("the disk never filled up");
    assert!(refused.contains("MISCONF"), "{refused}");
    // Reads go on.
    let first: String = c.get(&acked[0]).unwrap();
    assert_eq!(first, value);
    // Still refused while full (a tiny write may still fit in space already reserved;
    // this one does not).
    assert!(c.set::<_, _, ()>("more", &value).is_err());
    // Room again: writes resume by themselves.
    std::fs::remove_file(mount.join("filler")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match c.set::<_, _, ()>("after", "v") {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("writes did not resume: {e}"),
        }
    }
    acked.push("after".into());
    assert!(c.is_open());
    srv.kill9();
    srv.restart();
    let mut c = srv.client();
    for k in &acked {
        assert!(c.exists::<_, bool>(k).unwrap(), "acknowledged {k} lost");
    }
    srv.kill9();
}

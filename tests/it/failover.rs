//! Failure detection, failover, rejoin and membership changes, with real processes under
//! a write load: a node killed with SIGKILL, a node cut off by a network partition
//! (network namespaces and nftables, as root), a node restarted, a node added and
//! removed. Each checks that every acknowledged write stays readable, and when clients
//! may see errors.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::util::{Cluster, Server, encode, eventually};

/// Short timeouts so a failover takes a couple of seconds: marked down after 1 s of
/// silence, no start-up grace. The lease is half the node timeout.
const FAST: &[&str] = &["--node-timeout", "1000", "--startup-grace", "0"];

/// What one writer saw.
#[derive(Default)]
struct Written {
    /// Keys acknowledged (+OK), with the value written and when.
    acked: Vec<(String, u64, Instant)>,
    /// Error replies and failed connections, with when.
    errors: Vec<(Instant, String)>,
}

/// Writes `{prefix}{i}` = i through one node, one SET at a time (a client waits for each
/// reply), until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Written>>,
}

impl Writer {
    fn start(addr: String, prefix: &str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let prefix = prefix.to_string();
        let handle = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut w = Written::default();
                let mut conn: Option<(TcpStream, Vec<u8>)> = None;
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if conn.is_none() {
                        match TcpStream::connect(&addr) {
                            Ok(s) => {
                                s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
                                conn = Some((s, Vec::new()));
                            }
                            Err(e) => {
                                w.errors.push((Instant::now(), format!("connect: {e}")));
                                std::thread::sleep(Duration::from_millis(50));
                                continue;
                            }
                        }
                    }
                    let (s, buf) = conn.as_mut().unwrap();
                    let key = format!("{prefix}{i}");
                    let value = i.to_string();
                    match call(s, buf, &[key.as_bytes(), value.as_bytes()]) {
                        Ok(r) if r == "+OK\r\n" => w.acked.push((key, i, Instant::now())),
                        Ok(r) => {
                            w.errors.push((Instant::now(), r));
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(e) => {
                            w.errors.push((Instant::now(), e));
                            conn = None;
                        }
                    }
                    i += 1;
                }
                w
            })
        };
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    fn finish(mut self) -> Written {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// SET key value on `s`, returning the reply's text; `Err` when the connection fails.
fn call(s: &mut TcpStream, buf: &mut Vec<u8>, kv: &[&[u8]]) -> Result<String, String> {
    s.write_all(&encode(&[b"SET", kv[0], kv[1]]))
        .map_err(|e| format!("write: {e}"))?;
    loop {
        if let Some(n) = dse_proto::ReplyParser::frame_len(buf).map_err(|e| e.to_string())? {
            let reply: Vec<u8> = buf.drain(..n).collect();
            return Ok(String::from_utf8_lossy(&reply).into_owned());
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Checks that every acknowledged write reads back (GET through `via`, pipelined), and
/// returns how many there were.
fn assert_all_readable(via: &Server, written: &[&Written]) -> usize {
    let mut r = via.raw();
    let mut n = 0;
    for w in written {
        for chunk in w.acked.chunks(500) {
            let mut bytes = Vec::new();
            for (key, _, _) in chunk {
                bytes.extend(encode(&[b"GET", key.as_bytes()]));
            }
            r.send(&bytes);
            for (key, value, acked_at) in chunk {
                let want = format!("${}\r\n{value}\r\n", value.to_string().len());
                let mut got = String::from_utf8_lossy(&r.read_reply()).into_owned();
                if got.starts_with("-CLUSTERDOWN") {
                    // A node that just took slots over serves them once its lease covers
                    // them.
                    eventually(Duration::from_secs(5), || {
                        got = via.raw().call(&["GET", key]);
                        !got.starts_with("-CLUSTERDOWN")
                    });
                }
                if got != want {
                    let wall = std::time::SystemTime::now() - acked_at.elapsed();
                    eprintln!("acknowledged at {wall:?}\n{}", explain(key));
                }
                assert_eq!(
                    got, want,
                    "acknowledged write {key}={value} read through {}",
                    via.port
                );
                n += 1;
            }
        }
    }
    n
}

thread_local! {
    /// The cluster a test runs, for `explain` (a failed check says where a key is).
    static NODES: std::cell::RefCell<Vec<(String, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Remembers the nodes' addresses for `explain`.
fn remember(c: &Cluster) {
    NODES.with(|n| {
        *n.borrow_mut() = c.nodes.iter().map(|s| (s.addr(), s.log())).collect();
    });
}

/// Where `key` is: its slot, each node's copy (READONLY) and view of the slots.
fn explain(key: &str) -> String {
    let slot = dse_cluster::key_slot(key.as_bytes());
    let mut out = format!("key {key} slot {slot}\n");
    NODES.with(|n| {
        for (addr, _) in n.borrow().iter() {
            let Ok(s) = TcpStream::connect(addr) else {
                out.push_str(&format!("{addr}: down\n"));
                continue;
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = crate::util::Raw::from_stream(s);
            r.call(&["READONLY"]);
            let copy = r.call(&["GET", key]);
            let nodes = r.call(&["CLUSTER", "NODES"]);
            let info = r.call(&["INFO", "replication"]);
            out.push_str(&format!("{addr}: copy {copy:?}\n{nodes}\n{info}\n"));
        }
        for (addr, log) in n.borrow().iter() {
            out.push_str(&format!("--- log of {addr}\n"));
            for l in log
                .lines()
                .filter(|l| !l.contains("INFO") || l.contains("membership"))
            {
                out.push_str(l);
                out.push('\n');
            }
        }
    });
    out
}

/// The CLUSTER NODES line of `node`, as `via` sees it.
fn node_line(via: &Server, node: &Server) -> Option<String> {
    let text = via.raw().call(&["CLUSTER", "NODES"]);
    let addr = format!("{}@", node.addr());
    text.lines()
        .find(|l| l.split(' ').nth(1).is_some_and(|a| a.starts_with(&addr)))
        .map(str::to_string)
}

/// Whether `via` sees `node` as failed.
fn seen_failed(via: &Server, node: &Server) -> bool {
    node_line(via, node).is_some_and(|l| l.split(' ').nth(2).is_some_and(|f| f.contains("fail")))
}

/// Whether `via` sees `node` as serving slots (up, in the ring).
fn seen_serving(via: &Server, node: &Server) -> bool {
    node_line(via, node).is_some_and(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        !fields[2].contains("fail") && fields.len() > 8
    })
}

fn state_ok(s: &Server) -> bool {
    s.raw()
        .call(&["CLUSTER", "INFO"])
        .contains("cluster_state:ok")
}

/// The kinds of errors the writers saw (first word of the reply), with counts.
fn error_kinds(written: &[&Written]) -> String {
    let mut kinds: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, e) in written.iter().flat_map(|w| w.errors.iter()) {
        let kind = e
            .trim_start_matches('-')
            .split(' ')
            .next()
            .unwrap_or("")
            .to_string();
        *kinds.entry(kind).or_default() += 1;
    }
    format!("{kinds:?}")
}

/// Errors outside the windows `allowed` (start, end).
fn errors_outside<'a>(
    written: &[&'a Written],
    allowed: &[(Instant, Instant)],
) -> Vec<&'a (Instant, String)> {
    written
        .iter()
        .flat_map(|w| w.errors.iter())
        .filter(|(t, _)| !allowed.iter().any(|(a, b)| t >= a && t <= b))
        .collect()
}

#[test]
fn kill9_of_a_node_under_load_loses_no_acknowledged_write() {
    let mut c = Cluster::with_args(3, FAST);
    let w0 = Writer::start(c.node(0).addr(), "ka:");
    let w1 = Writer::start(c.node(1).addr(), "kb:");
    std::thread::sleep(Duration::from_millis(800));
    let killed = Instant::now();
    c.nodes[2].kill9();
    assert!(
        eventually(Duration::from_secs(20), || {
            seen_failed(c.node(0), c.node(2)) && seen_failed(c.node(1), c.node(2))
        }),
        "the survivors mark the killed node failed"
    );
    assert!(
        eventually(Duration::from_secs(10), || state_ok(c.node(0))
            && state_ok(c.node(1))),
        "the survivors serve every slot"
    );
    let recovered = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let (a, b) = (w0.finish(), w1.finish());
    let written = [&a, &b];
    let n = assert_all_readable(c.node(0), &written);
    assert_all_readable(c.node(1), &written);
    let after = written
        .iter()
        .flat_map(|w| w.acked.iter())
        .filter(|(_, _, t)| *t > recovered)
        .count();
    assert!(after > 0, "writes go on after the failover");
    // Errors only while the failure is detected and the slots change hands (plus a
    // moment for the survivors' lease after taking slots over).
    let window = (killed, recovered + Duration::from_millis(1500));
    let stray = errors_outside(&written, &[window]);
    assert!(
        stray.is_empty(),
        "errors outside the failover window: {stray:?}"
    );
    println!(
        "{n} acknowledged writes readable; failover took {:?}; errors in the window: {}",
        recovered - killed,
        error_kinds(&written)
    );
}

#[test]
fn a_killed_node_restarts_catches_up_and_serves_its_slots_again() {
    let mut c = Cluster::with_args(3, FAST);
    let w0 = Writer::start(c.node(0).addr(), "ra:");
    let w1 = Writer::start(c.node(1).addr(), "rb:");
    std::thread::sleep(Duration::from_millis(500));
    c.nodes[2].kill9();
    assert!(eventually(Duration::from_secs(20), || seen_failed(
        c.node(0),
        c.node(2)
    )));
    // Writes go on without it, then it comes back with its (now stale) data.
    std::thread::sleep(Duration::from_millis(1000));
    let restarted = Instant::now();
    c.nodes[2].restart();
    assert!(
        eventually(Duration::from_secs(30), || {
            (0..3).all(|i| seen_serving(c.node(i), c.node(2)))
                && (0..3).all(|i| state_ok(c.node(i)))
        }),
        "the restarted node serves its slots again: {:?}",
        node_line(c.node(0), c.node(2))
    );
    println!("back in {:?}", restarted.elapsed());
    std::thread::sleep(Duration::from_millis(1000));
    let (a, b) = (w0.finish(), w1.finish());
    let written = [&a, &b];
    remember(&c);
    // Through the restarted node (its own slots served from what it copied back).
    let n = assert_all_readable(c.node(2), &written);
    assert_all_readable(c.node(0), &written);
    println!(
        "{n} acknowledged writes readable through the restarted node; errors: {}",
        error_kinds(&written)
    );
    // Its own slots again: CLUSTER NODES lists ranges for it.
    let line = node_line(c.node(2), c.node(2)).unwrap();
    assert!(
        line.contains("myself") && line.split(' ').count() > 8,
        "{line}"
    );
}

#[test]
fn a_partitioned_node_stops_writing_and_the_majority_fails_over() {
    let Some(c) = Cluster::in_namespaces(3, FAST) else {
        return;
    };
    let ns = c.netns.as_ref().unwrap();
    let cut = c.node(2);
    // A key node 3 is the primary of, written before the partition.
    let key = (0..)
        .map(|i| format!("p{i}"))
        .find(|k| node_owner(c.node(0), dse_cluster::key_slot(k.as_bytes())) == cut.port)
        .unwrap();
    assert_eq!(cut.raw().call(&["SET", &key, "before"]), "+OK\r\n");
    let w0 = Writer::start(c.node(0).addr(), "pa:");
    let w2 = Writer::start(cut.addr(), "pc:");
    std::thread::sleep(Duration::from_millis(500));
    let cut_at = Instant::now();
    ns.isolate(2);

    // The isolated node stops accepting writes within its lease (500 ms here)...
    assert!(
        eventually(Duration::from_secs(3), || {
            cut.raw()
                .call(&["SET", &key, "minority"])
                .starts_with("-CLUSTERDOWN")
        }),
        "the isolated node refuses writes"
    );
    let fenced = cut_at.elapsed();
    // ... while the majority marks it down and serves its slots.
    assert!(
        eventually(Duration::from_secs(20), || {
            c.node(0).raw().call(&["SET", &key, "majority"]) == "+OK\r\n"
        }),
        "the majority serves the isolated node's slots"
    );
    let failed_over = cut_at.elapsed();
    // The minority never acknowledges a write once its lease ran out.
    for _ in 0..10 {
        let r = cut.raw().call(&["SET", &key, "minority"]);
        assert!(r.starts_with("-CLUSTERDOWN"), "{r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let healed = Instant::now();
    ns.heal(2);
    assert!(
        eventually(Duration::from_secs(30), || {
            (0..3).all(|i| seen_serving(c.node(i), cut)) && (0..3).all(|i| state_ok(c.node(i)))
        }),
        "after healing, the node is back: {:?}",
        node_line(c.node(0), cut)
    );
    println!(
        "fenced after {fenced:?}, failed over after {failed_over:?}, rejoined in {:?}",
        healed.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    let (a, b) = (w0.finish(), w2.finish());
    // No write the minority acknowledged after its lease ran out.
    let lease = Duration::from_millis(500);
    let late: Vec<_> = b
        .acked
        .iter()
        .filter(|(_, _, t)| *t > cut_at + lease && *t < healed)
        .collect();
    assert!(
        late.is_empty(),
        "the minority acknowledged writes: {:?}",
        &late[..late.len().min(5)]
    );
    // The majority's value stands everywhere: nothing stale came back. (A node that
    // takes slots over serves them once its lease covers them: poll.)
    for i in 0..3 {
        let mut got = String::new();
        let ok = eventually(Duration::from_secs(5), || {
            got = c.node(i).raw().call(&["GET", &key]);
            !got.starts_with("-CLUSTERDOWN")
        });
        assert!(
            ok && got == "$8\r\nmajority\r\n",
            "through node {}: {got}",
            i + 1
        );
    }
    let written = [&a, &b];
    let n = assert_all_readable(cut, &written);
    assert_all_readable(c.node(1), &written);
    println!("{n} acknowledged writes readable");
}

/// The client port of the primary of `slot`, by CLUSTER SLOTS through `via`.
fn node_owner(via: &Server, slot: u16) -> u16 {
    let rows: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut via.client())
        .unwrap();
    for row in rows {
        let redis::Value::Array(parts) = row else {
            continue;
        };
        let int = |v: &redis::Value| match v {
            redis::Value::Int(n) => *n,
            other => panic!("{other:?}"),
        };
        if (int(&parts[0])..=int(&parts[1])).contains(&(slot as i64)) {
            let redis::Value::Array(primary) = &parts[2] else {
                panic!()
            };
            return int(&primary[1]) as u16;
        }
    }
    panic!("slot {slot} has no owner")
}

#[test]
fn a_fourth_node_joins_under_load_and_leaves_again() {
    join_and_leave(FAST);
}

#[test]
fn a_node_joins_and_leaves_a_cluster_with_a_secret() {
    // The new node is not a member when it is met: it proves the secret instead.
    let mut args = FAST.to_vec();
    args.extend(["--cluster-secret", "the-join-secret"]);
    join_and_leave(&args);
}

fn join_and_leave(args: &[&str]) {
    let mut c = Cluster::with_args(3, args);
    let w0 = Writer::start(c.node(0).addr(), "ja:");
    let w1 = Writer::start(c.node(1).addr(), "jb:");
    std::thread::sleep(Duration::from_millis(500));
    let i = c.add_joining();
    let (port, bus) = (c.node(i).port, c.bus_ports[i]);
    assert_eq!(
        c.node(0).raw().call(&[
            "CLUSTER",
            "MEET",
            "127.0.0.1",
            &port.to_string(),
            &bus.to_string()
        ]),
        "+OK\r\n"
    );
    let met = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || {
            (0..4).all(|n| seen_serving(c.node(n), c.node(i)))
                && (0..4).all(|n| state_ok(c.node(n)))
        }),
        "the new node serves its share: {:?}",
        node_line(c.node(0), c.node(i))
    );
    println!("joined in {:?}", met.elapsed());
    let info = c.node(3).raw().call(&["CLUSTER", "INFO"]);
    assert!(info.contains("cluster_known_nodes:4\r\n"), "{info}");
    std::thread::sleep(Duration::from_millis(800));
    // It holds its share of the data written meanwhile.
    let keys: usize = c.node(3).raw().call(&["DBSIZE"])[1..]
        .trim()
        .parse()
        .unwrap();
    assert!(keys > 0, "the new node is the primary of some keys");

    let id = c.node(3).raw().call(&["CLUSTER", "MYID"]);
    let id = id.lines().nth(1).unwrap().to_string();
    assert_eq!(c.node(1).raw().call(&["CLUSTER", "FORGET", &id]), "+OK\r\n");
    let forgot = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || {
            (0..3).all(|n| node_line(c.node(n), c.node(i)).is_none())
                && (0..3).all(|n| state_ok(c.node(n)))
        }),
        "the removed node is gone from the cluster"
    );
    println!("removed in {:?}", forgot.elapsed());
    std::thread::sleep(Duration::from_millis(800));
    let (a, b) = (w0.finish(), w1.finish());
    let written = [&a, &b];
    let n = assert_all_readable(c.node(2), &written);
    assert_all_readable(c.node(0), &written);
    let joining = errors_outside(&written, &[(forgot, Instant::now())]).len();
    println!(
        "{n} acknowledged writes readable after a join and a removal; errors: {} \
         ({joining} before the removal)",
        error_kinds(&written)
    );
    let info = c.node(0).raw().call(&["CLUSTER", "INFO"]);
    assert!(info.contains("cluster_known_nodes:3\r\n"), "{info}");
}

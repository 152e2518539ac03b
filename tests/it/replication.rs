//! Replication between cluster nodes: every slot's primary ships its writes to the slot's
//! replicas, and a write is acknowledged once `--write-quorum` copies have it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::util::{Cluster, Raw, Server, encode, eventually, signal};

/// Each slot's owners by CLUSTER SLOTS: primary then replicas, as node indices.
fn owners(c: &Cluster) -> Vec<Vec<usize>> {
    let mut con = c.node(0).client();
    let rows: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
    let mut map = vec![Vec::new(); 16384];
    for row in rows {
        let redis::Value::Array(parts) = row else {
            panic!("a row is an array")
        };
        let int = |v: &redis::Value| match v {
            redis::Value::Int(n) => *n as usize,
            other => panic!("{other:?}"),
        };
        let (start, end) = (int(&parts[0]), int(&parts[1]));
        let nodes: Vec<usize> = parts[2..]
            .iter()
            .map(|n| {
                let redis::Value::Array(n) = n else { panic!() };
                c.index_of_port(int(&n[1]) as u16).unwrap()
            })
            .collect();
        for slot in map.iter_mut().take(end + 1).skip(start) {
            *slot = nodes.clone();
        }
    }
    map
}

fn slot(key: &str) -> usize {
    dse_cluster::key_slot(key.as_bytes()) as usize
}

/// `n` keys named `{prefix}{i}` whose slot's owners satisfy `want` (primary, replicas).
fn keys_where(
    map: &[Vec<usize>],
    prefix: &str,
    n: usize,
    want: impl Fn(&[usize]) -> bool,
) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| want(&map[slot(k)]))
        .take(n)
        .collect()
}

/// A raw connection that reads replica copies.
fn readonly(s: &Server) -> Raw {
    let mut r = s.raw();
    assert_eq!(r.call(&["READONLY"]), "+OK\r\n");
    r
}

/// SIGSTOP, returning once every thread of the process is stopped (the signal is
/// delivered asynchronously: a busy thread may run on for a moment).
fn stop(pid: u32) {
    signal(pid, libc::SIGSTOP);
    let stopped = eventually(Duration::from_secs(5), || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|tasks| {
                tasks.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .ok()
                        .and_then(|st| st.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
                        .unwrap_or(true)
                })
            })
            .unwrap_or(false)
    });
    assert!(stopped, "process {pid} did not stop");
}

fn info_field(s: &Server, section: &str, name: &str) -> String {
    let info = s.raw().call(&["INFO", section]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {info}"))
        .trim()
        .to_string()
}

#[test]
fn every_acknowledged_write_is_on_the_first_replica() {
    let c = Cluster::start(3);
    let map = owners(&c);
    let keys = keys_where(&map, "ack:", 300, |_| true);
    // Through node 0, which forwards what it does not own: each reply waits until the
    // key's primary and its first replica have the write.
    let mut r = c.node(0).raw();
    let mut replicas: Vec<Raw> = (0..3).map(|i| readonly(c.node(i))).collect();
    for (i, k) in keys.iter().enumerate() {
        let v = format!("v{i}");
        assert_eq!(r.call(&["SET", k, &v]), "+OK\r\n");
        let first = map[slot(k)][1];
        let got = replicas[first].call(&["GET", k]);
        assert_eq!(
            got,
            format!("${}\r\n{v}\r\n", v.len()),
            "{k} on node {first}"
        );
    }
    // A pipeline: once every reply is in, every write is on its first replica.
    let mut batch = Vec::new();
    for k in &keys {
        batch.extend(encode(&[b"INCR", format!("{k}:n").as_bytes()]));
    }
    r.send(&batch);
    for _ in &keys {
        assert_eq!(r.read_reply(), b":1\r\n");
    }
    for k in &keys {
        let n = format!("{k}:n");
        let first = map[slot(&n)][1];
        assert_eq!(replicas[first].call(&["GET", &n]), "$1\r\n1\r\n", "{n}");
    }
    // The nodes say who streams to whom.
    for i in 0..3 {
        assert_eq!(
            info_field(c.node(i), "replication", "connected_slaves"),
            "2"
        );
        assert_eq!(
            info_field(c.node(i), "replication", "repl_write_quorum"),
            "2"
        );
    }
}

#[test]
fn collections_ttls_and_transactions_replicate() {
    let c = Cluster::start(3);
    let map = owners(&c);
    let tag = &keys_where(&map, "t", 1, |_| true)[0];
    let (p, first) = (map[slot(tag)][0], map[slot(tag)][1]);
    let k = |s: &str| format!("{{{tag}}}{s}");
    let mut r = c.node(p).raw();
    let cmds: Vec<Vec<String>> = [
        vec!["RPUSH", &k("l"), "a", "b", "c"],
        vec!["LPUSH", &k("l"), "z"],
        vec!["LPOP", &k("l")],
        vec!["LSET", &k("l"), "0", "A"],
        vec!["ZADD", &k("z"), "1", "one", "2.5", "two", "-3", "neg"],
        vec!["ZINCRBY", &k("z"), "10", "one"],
        vec!["ZREM", &k("z"), "two"],
        vec!["HSET", &k("h"), "f1", "v1", "f2", "v2"],
        vec!["HDEL", &k("h"), "f1"],
        vec!["SADD", &k("s"), "x", "y", "z"],
        vec!["SREM", &k("s"), "y"],
        vec!["SET", &k("str"), "hello"],
        vec!["APPEND", &k("str"), " world"],
        vec!["INCRBY", &k("n"), "41"],
        vec!["INCR", &k("n")],
        vec!["EXPIRE", &k("l"), "1000"],
        vec!["SET", &k("ttl"), "v", "PX", "500000"],
        vec!["PERSIST", &k("ttl")],
        vec!["SET", &k("gone"), "x"],
        vec!["DEL", &k("gone")],
        vec!["SET", &k("old"), "moved"],
        vec!["RENAME", &k("old"), &k("new")],
        vec!["SET", &k("short"), "v", "PX", "1"],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect();
    for cmd in &cmds {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let reply = r.call(&args);
        assert!(!reply.starts_with('-'), "{cmd:?}: {reply}");
    }
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    r.call(&["HSET", &k("h"), "tx", "1"]);
    r.call(&["RPUSH", &k("l"), "tx"]);
    assert_eq!(r.call(&["EXEC"]), "*2\r\n:1\r\n:4\r\n");
    std::thread::sleep(Duration::from_millis(20));
    let reads: Vec<Vec<String>> = [
        vec!["LRANGE", &k("l"), "0", "-1"],
        vec!["ZRANGE", &k("z"), "0", "-1", "WITHSCORES"],
        vec!["HGET", &k("h"), "f2"],
        vec!["HGET", &k("h"), "f1"],
        vec!["HGET", &k("h"), "tx"],
        vec!["HLEN", &k("h")],
        vec!["SISMEMBER", &k("s"), "x"],
        vec!["SISMEMBER", &k("s"), "y"],
        vec!["SCARD", &k("s")],
        vec!["GET", &k("str")],
        vec!["GET", &k("n")],
        vec!["EXISTS", &k("gone")],
        vec!["EXISTS", &k("old")],
        vec!["GET", &k("new")],
        vec!["TTL", &k("ttl")],
        vec!["EXISTS", &k("short")],
        vec!["TYPE", &k("z")],
    ]
    .iter()
    .map(|c| c.iter().map(|s| s.to_string()).collect())
    .collect();
    let mut copy = readonly(c.node(first));
    for cmd in &reads {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        assert_eq!(copy.call(&args), r.call(&args), "{cmd:?}");
    }
    assert_eq!(
        copy.call(&["LRANGE", &k("l"), "0", "-1"]),
        "*4\r\n$1\r\nA\r\n$1\r\nb\r\n$1\r\nc\r\n$2\r\ntx\r\n"
    );
    // A deadline is replicated as the same absolute time.
    let pttl = |r: &mut Raw| -> i64 {
        let t = r.call(&["PTTL", &k("l")]);
        t.trim_start_matches(':').trim().parse().unwrap()
    };
    let (here, there) = (pttl(&mut r), pttl(&mut copy));
    assert!(
        there > 990_000 && (here - there).abs() < 5_000,
        "{here} {there}"
    );
}

#[test]
fn kill9_of_the_primary_loses_no_acknowledged_write_on_its_replica() {
    let mut c = Cluster::start(3);
    let map = owners(&c);
    let p = 0;
    let keys = keys_where(&map, "burst:", 4000, |o| o[0] == p);
    // Several clients write concurrently; every key acknowledged is recorded.
    let acked: Vec<Vec<(String, String)>> = std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(1000)
            .enumerate()
            .map(|(t, chunk)| {
                let node = c.node(p);
                s.spawn(move || {
                    let mut r = node.raw();
                    let mut done = Vec::new();
                    for batch in chunk.chunks(50) {
                        let mut bytes = Vec::new();
                        for k in batch {
                            let v = format!("{t}:{k}");
                            bytes.extend(encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
                        }
                        r.send(&bytes);
                        for k in batch {
                            assert_eq!(r.read_reply(), b"+OK\r\n");
                            done.push((k.clone(), format!("{t}:{k}")));
                        }
                    }
                    done
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    c.nodes[p].kill9();
    let mut copies: HashMap<usize, Raw> = HashMap::new();
    let mut checked = 0;
    for (k, v) in acked.iter().flatten() {
        let first = map[slot(k)][1];
        let r = copies
            .entry(first)
            .or_insert_with(|| readonly(c.node(first)));
        assert_eq!(
            r.call(&["GET", k]),
            format!("${}\r\n{v}\r\n", v.len()),
            "{k} acknowledged but not on node {first}"
        );
        checked += 1;
    }
    assert_eq!(checked, keys.len());
}

/// A key whose slot `p` is primary for and `r` the first replica of.
fn key_on(map: &[Vec<usize>], p: usize, r: usize, prefix: &str) -> String {
    keys_where(map, prefix, 1, |o| o[0] == p && o[1] == r).remove(0)
}

#[test]
fn a_write_waits_for_its_replica_and_is_refused_without_one() {
    let mut c = Cluster::with_args(3, &["--quorum-timeout", "1000"]);
    let map = owners(&c);
    let k = key_on(&map, 0, 1, "q");
    let other = key_on(&map, 0, 2, "o");
    let mut r = c.node(0).raw();
    assert_eq!(r.call(&["SET", &k, "v1"]), "+OK\r\n");

    // The replica stops answering (its connection stays up): the write waits for it, and
    // after --quorum-timeout says it may have been applied.
    stop(c.node(1).pid());
    let t = Instant::now();
    let reply = r.call(&["SET", &k, "v2"]);
    let waited = t.elapsed();
    assert_eq!(
        reply,
        "-NOREPLICAS Not enough good replicas acknowledged the write in time; it may have \
         been applied\r\n",
        "after {waited:?}"
    );
    assert_eq!(
        reply,
        "-NOREPLICAS Not enough good replicas acknowledged the write in time; it may have \
         been applied\r\n"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // The same through another node, which forwards it: the owner's answer says so.
    assert_eq!(
        c.node(2).raw().call(&["SET", &k, "v2"]),
        "-NOREPLICAS Not enough good replicas acknowledged the write in time; it may have \
         been applied\r\n"
    );
    // Writes that do not need that replica go on meanwhile.
    let t = Instant::now();
    assert_eq!(c.node(0).raw().call(&["SET", &other, "x"]), "+OK\r\n");
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    // A pipeline behind a held write keeps its order.
    r.send(&[encode(&[b"SET", k.as_bytes(), b"v3"]), encode(&[b"PING"])].concat());
    signal(c.node(1).pid(), libc::SIGCONT);
    assert_eq!(
        r.read_reply(),
        b"+OK\r\n",
        "acknowledged once the replica is back"
    );
    assert_eq!(r.read_reply(), b"+PONG\r\n");
    // Stopped for longer than its lease, the replica serves again once it has heard
    // from a majority.
    c.wait_formed();
    assert_eq!(readonly(c.node(1)).call(&["GET", &k]), "$2\r\nv3\r\n");

    // With the replica gone, the write is refused before it happens.
    c.nodes[1].kill9();
    assert!(eventually(Duration::from_secs(10), || {
        info_field(c.node(0), "replication", "connected_slaves") == "1"
    }));
    assert_eq!(
        r.call(&["SET", &k, "v4"]),
        "-NOREPLICAS Not enough good replicas to write.\r\n"
    );
    assert_eq!(r.call(&["GET", &k]), "$2\r\nv3\r\n");
    assert_eq!(r.call(&["SET", &other, "y"]), "+OK\r\n");
    let errors = r.call(&["INFO", "errorstats"]);
    assert!(errors.contains("errorstat_NOREPLICAS:count=1"), "{errors}");
}

#[test]
fn with_a_write_quorum_of_one_writes_do_not_wait_for_replicas() {
    let c = Cluster::with_args(3, &["--write-quorum", "1"]);
    let map = owners(&c);
    let k = key_on(&map, 0, 1, "w");
    assert_eq!(
        info_field(c.node(0), "replication", "repl_write_quorum"),
        "1"
    );
    stop(c.node(1).pid());
    let mut r = c.node(0).raw();
    let t = Instant::now();
    for i in 0..50 {
        assert_eq!(r.call(&["SET", &k, &i.to_string()]), "+OK\r\n");
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // WAIT tells how many replicas have it: not the stopped one.
    assert_eq!(r.call(&["WAIT", "2", "300"]), ":1\r\n");
    signal(c.node(1).pid(), libc::SIGCONT);
    assert_eq!(r.call(&["WAIT", "2", "0"]), ":2\r\n");
    assert_eq!(readonly(c.node(1)).call(&["GET", &k]), "$2\r\n49\r\n");
}

#[test]
fn wait_counts_the_replicas_that_have_the_connections_writes() {
    let c = Cluster::with_args(3, &["--write-quorum", "1"]);
    let map = owners(&c);
    let k = key_on(&map, 0, 1, "wait");
    let mut r = c.node(0).raw();
    // Node 0's slots have their replicas on both other nodes.
    assert_eq!(r.call(&["WAIT", "0", "0"]), ":2\r\n");
    assert_eq!(r.call(&["SET", &k, "v"]), "+OK\r\n");
    assert_eq!(r.call(&["WAIT", "2", "5000"]), ":2\r\n");
    // Pipelined after a write, WAIT waits for that write.
    r.send(
        &[
            encode(&[b"SET", k.as_bytes(), b"v2"]),
            encode(&[b"WAIT", b"2", b"5000"]),
        ]
        .concat(),
    );
    assert_eq!(r.read_reply(), b"+OK\r\n");
    assert_eq!(r.read_reply(), b":2\r\n");
    // Errors as Redis words them.
    assert_eq!(r.call(&["WAIT", "1", "-1"]), "-ERR timeout is negative\r\n");
    assert_eq!(
        r.call(&["WAIT", "x", "0"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        r.call(&["WAIT", "1", "1.5"]),
        "-ERR timeout is not an integer or out of range\r\n"
    );
    assert_eq!(
        r.call(&["WAIT", "1"]),
        "-ERR wrong number of arguments for 'wait' command\r\n"
    );
    // Inside a transaction it answers at once.
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["WAIT", "5", "0"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["EXEC"]), "*1\r\n:2\r\n");
    // More replicas than there are: the timeout ends it, and the connection goes on.
    let t = Instant::now();
    assert_eq!(r.call(&["WAIT", "3", "200"]), ":2\r\n");
    assert!(t.elapsed() >= Duration::from_millis(190));
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn wait_on_a_standalone_server_has_no_replicas() {
    let s = Server::start();
    let mut r = s.raw();
    assert_eq!(r.call(&["WAIT", "0", "0"]), ":0\r\n");
    assert_eq!(r.call(&["SET", "k", "v"]), "+OK\r\n");
    let t = Instant::now();
    r.send(&[encode(&[b"WAIT", b"1", b"150"]), encode(&[b"GET", b"k"])].concat());
    assert_eq!(r.read_reply(), b":0\r\n");
    assert!(t.elapsed() >= Duration::from_millis(140));
    assert_eq!(r.read_reply(), b"$1\r\nv\r\n");
}

#[test]
fn a_restarted_replica_catches_up_with_a_full_resync() {
    let mut c = Cluster::with_args(3, &["--write-quorum", "1"]);
    let map = owners(&c);
    let keys = keys_where(&map, "fs:", 200, |o| o[1] == 2);
    let mut w = c.node(0).raw();
    for k in &keys {
        assert_eq!(w.call(&["SET", k, "before"]), "+OK\r\n");
    }
    c.nodes[2].terminate();
    // While it is down: new values, deletions, new keys.
    for (i, k) in keys.iter().enumerate() {
        match i % 3 {
            0 => assert_eq!(w.call(&["SET", k, "after"]), "+OK\r\n"),
            1 => assert_eq!(w.call(&["DEL", k]), ":1\r\n"),
            _ => {}
        }
    }
    let primary = map[slot(&keys[0])][0];
    let full_before: u64 = info_field(c.node(primary), "replication", "sync_full")
        .parse()
        .unwrap();
    c.nodes[2].restart();
    c.wait_replicated();
    let mut copy = readonly(c.node(2));
    for (i, k) in keys.iter().enumerate() {
        let want = match i % 3 {
            0 => "$5\r\nafter\r\n",
            1 => "$-1\r\n",
            _ => "$6\r\nbefore\r\n",
        };
        assert_eq!(copy.call(&["GET", k]), want, "{k}");
    }
    let full_after: u64 = info_field(c.node(primary), "replication", "sync_full")
        .parse()
        .unwrap();
    assert_eq!(
        full_after,
        full_before + 1,
        "a restarted node asks for a full resync"
    );
}

#[test]
fn a_briefly_disconnected_replica_catches_up_from_the_log() {
    let c = Cluster::with_args(3, &["--write-quorum", "1"]);
    let map = owners(&c);
    let keys = keys_where(&map, "log:", 300, |o| o[0] == 0 && o[1] == 1);
    let mut w = c.node(0).raw();
    let field = |name: &str| -> u64 { info_field(c.node(0), "replication", name).parse().unwrap() };
    let (full, partial) = (field("sync_full"), field("sync_partial_ok"));
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(w.call(&["SET", k, "1"]), "+OK\r\n");
        if i == 100 || i == 200 {
            // Node 1's streams break (as a network fault would break them) and reopen,
            // resuming from node 0's log.
            let before = field("sync_partial_ok");
            assert_eq!(c.node(1).raw().call(&["DEBUG", "REPL-DROP"]), "+OK\r\n");
            assert!(eventually(Duration::from_secs(10), || field(
                "sync_partial_ok"
            ) > before));
        }
        if i > 100 {
            assert_eq!(w.call(&["INCR", k]), ":2\r\n");
        }
    }
    c.wait_replicated();
    assert!(eventually(Duration::from_secs(10), || {
        let mut copy = readonly(c.node(1));
        keys.iter().enumerate().all(|(i, k)| {
            let want = if i > 100 {
                "$1\r\n2\r\n"
            } else {
                "$1\r\n1\r\n"
            };
            copy.call(&["GET", k]) == want
        })
    }));
    assert_eq!(field("sync_full"), full, "no full resync");
    assert!(field("sync_partial_ok") >= partial + 2);
}

#[test]
fn a_hundred_thousand_keys_replicate_through_a_full_resync() {
    let mut c = Cluster::with_args(3, &["--write-quorum", "1"]);
    let map = owners(&c);
    // Keys node 2 holds only as a replica.
    let keys = keys_where(&map, "big:", 100_000, |o| o[0] != 2 && o[1] == 2);
    let mut w = c.node(0).raw();
    for chunk in keys.chunks(2000) {
        let mut bytes = Vec::new();
        for k in chunk {
            bytes.extend(encode(&[b"SET", k.as_bytes(), k.as_bytes()]));
        }
        w.send(&bytes);
        for _ in chunk {
            assert_eq!(w.read_reply(), b"+OK\r\n");
        }
    }
    c.nodes[2].kill9();
    let dir = c.node(2).data_dir().to_path_buf();
    std::fs::remove_dir_all(&dir).unwrap();
    let t = Instant::now();
    c.nodes[2].restart();
    c.wait_replicated();
    let took = t.elapsed();
    let keyspace = c.node(2).raw().call(&["INFO", "keyspace"]);
    assert!(
        keyspace.contains("db0:keys=100000,"),
        "{keyspace} after {took:?}"
    );
    let mut copy = readonly(c.node(2));
    for k in keys.iter().step_by(97) {
        assert_eq!(copy.call(&["GET", k]), format!("${}\r\n{k}\r\n", k.len()));
    }
    println!("full resync of 100000 keys: {took:?}");
}

#[test]
fn flushall_empties_the_primary_slots_everywhere_and_keeps_other_copies() {
    let c = Cluster::start(3);
    let map = owners(&c);
    let mine = keys_where(&map, "f0:", 20, |o| o[0] == 0);
    let theirs = keys_where(&map, "f1:", 20, |o| o[0] != 0 && o.contains(&0));
    let mut w = c.node(1).raw();
    for k in mine.iter().chain(&theirs) {
        assert_eq!(w.call(&["SET", k, "v"]), "+OK\r\n");
    }
    assert_eq!(c.node(0).raw().call(&["FLUSHALL"]), "+OK\r\n");
    let mut here = readonly(c.node(0));
    for k in &theirs {
        assert_eq!(here.call(&["GET", k]), "$1\r\nv\r\n", "copy of {k} kept");
        assert_eq!(w.call(&["GET", k]), "$1\r\nv\r\n");
    }
    for k in &mine {
        assert_eq!(here.call(&["GET", k]), "$-1\r\n");
        let first = map[slot(k)][1];
        assert_eq!(readonly(c.node(first)).call(&["GET", k]), "$-1\r\n", "{k}");
    }
    assert_eq!(c.node(0).raw().call(&["DBSIZE"]), ":0\r\n");
}

#[test]
fn a_blocked_pop_is_woken_by_a_push_through_another_node_and_reaches_the_replica() {
    let c = Cluster::start(3);
    let map = owners(&c);
    let k = key_on(&map, 0, 1, "bl");
    let mut blocked = c.node(0).raw();
    blocked.cmd(&[b"BLPOP", k.as_bytes(), b"10"]);
    std::thread::sleep(Duration::from_millis(200));
    // The push arrives through node 2, forwarded to the owner, which wakes the client.
    let mut pusher = c.node(2).raw();
    assert_eq!(pusher.call(&["RPUSH", &k, "a", "b"]), ":2\r\n");
    let expected = format!("*2\r\n${}\r\n{k}\r\n$1\r\na\r\n", k.len());
    assert_eq!(String::from_utf8(blocked.read_reply()).unwrap(), expected);
    // The pop was acknowledged after its replica had it (write quorum 2).
    assert_eq!(
        readonly(c.node(1)).call(&["LRANGE", &k, "0", "-1"]),
        "*1\r\n$1\r\nb\r\n"
    );
}

#[test]
fn a_forwarded_blocking_pop_does_not_block_the_bus() {
    let c = Cluster::start(3);
    let map = owners(&c);
    let k = key_on(&map, 0, 1, "fw");
    // Through a node that does not own the key: answered at once, as inside EXEC, so
    // the forwards sharing the bus link behind it are not held up.
    let mut r = c.node(2).raw();
    let t = Instant::now();
    assert_eq!(r.call(&["BLPOP", &k, "5"]), "*-1\r\n");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(r.call(&["RPUSH", &k, "x"]), ":1\r\n");
    assert_eq!(
        r.call(&["BLPOP", &k, "5"]),
        format!("*2\r\n${}\r\n{k}\r\n$1\r\nx\r\n", k.len())
    );
}

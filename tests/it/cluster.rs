//! Cluster mode: CLUSTER SLOTS/NODES/SHARDS/INFO and friends, redirects (-MOVED,
//! -CROSSSLOT), READONLY, whole-keyspace commands limited to a node's primary slots, and
//! real cluster clients (the `redis` crate's, redis-py's, `redis-cli -c`) in redirect
//! mode. Every node is a real `dse-server` process on loopback.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use redis::{Commands, Value};

use crate::util::{Cluster, Server};

/// One CLUSTER SLOTS row: a run of slots, its primary then its replicas as
/// (host, port, id).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SlotRow {
    start: u16,
    end: u16,
    nodes: Vec<(String, u16, String)>,
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn array(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

fn slots(srv: &Server) -> Vec<SlotRow> {
    let v: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query(&mut srv.client())
        .unwrap();
    array(&v)
        .iter()
        .map(|row| {
            let row = array(row);
            SlotRow {
                start: int(&row[0]) as u16,
                end: int(&row[1]) as u16,
                nodes: row[2..]
                    .iter()
                    .map(|n| {
                        let n = array(n);
                        assert_eq!(n.len(), 4, "{n:?}");
                        assert_eq!(array(&n[3]).len(), 0, "no extra endpoints: {n:?}");
                        (text(&n[0]), int(&n[1]) as u16, text(&n[2]))
                    })
                    .collect(),
            }
        })
        .collect()
}

fn myid(srv: &Server) -> String {
    redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut srv.client())
        .unwrap()
}

fn keyslot(srv: &Server, key: &str) -> u16 {
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut srv.client())
        .unwrap()
}

/// The primary's index in the cluster for `slot`, by CLUSTER SLOTS.
fn owner(c: &Cluster, rows: &[SlotRow], slot: u16) -> usize {
    let row = rows
        .iter()
        .find(|r| r.start <= slot && slot <= r.end)
        .expect("every slot is in a row");
    c.index_of_port(row.nodes[0].1).unwrap()
}

/// The replicas' indices in the cluster for `slot`, by CLUSTER SLOTS.
fn replicas(c: &Cluster, rows: &[SlotRow], slot: u16) -> Vec<usize> {
    let row = rows
        .iter()
        .find(|r| r.start <= slot && slot <= r.end)
        .unwrap();
    row.nodes[1..]
        .iter()
        .map(|n| c.index_of_port(n.1).unwrap())
        .collect()
}

#[test]
fn cluster_slots_cover_every_slot_and_every_node_agrees() {
    let c = Cluster::start(3);
    let rows = slots(c.node(0));
    assert_eq!(rows[0].start, 0);
    assert_eq!(rows.last().unwrap().end, 16383);
    for w in rows.windows(2) {
        assert_eq!(w[0].end + 1, w[1].start, "contiguous");
        assert_ne!(w[0].nodes, w[1].nodes, "a row is a maximal run");
    }
    let ids: Vec<String> = c.nodes.iter().map(myid).collect();
    for r in &rows {
        assert!(r.start <= r.end);
        assert_eq!(r.nodes.len(), 2, "primary and one replica (--replicas 1)");
        assert_ne!(r.nodes[0].1, r.nodes[1].1, "replica on another node");
        for (host, port, id) in &r.nodes {
            assert_eq!(host, "127.0.0.1");
            let i = c.index_of_port(*port).expect("a cluster port");
            assert_eq!(id, &ids[i], "node id matches that node's CLUSTER MYID");
            assert_eq!(id.len(), 40);
            assert!(id.chars().all(|ch| ch.is_ascii_hexdigit()));
        }
    }
    for i in 0..3 {
        assert!(
            rows.iter().any(|r| r.nodes[0].1 == c.node(i).port),
            "node {i} is a primary"
        );
    }
    for node in &c.nodes[1..] {
        assert_eq!(slots(node), rows, "every node computes the same map");
    }

    // A ring with two replicas: every row names all three nodes.
    let c3 = Cluster::with_args(4, &["--replicas", "2"]);
    for r in slots(c3.node(2)) {
        let distinct: BTreeSet<u16> = r.nodes.iter().map(|n| n.1).collect();
        assert_eq!(distinct.len(), 3, "{r:?}");
    }
}

#[test]
fn cluster_slots_raw_replies_in_resp2_and_resp3() {
    let c = Cluster::start(3);
    let rows = slots(c.node(1));
    let first = &rows[0];
    let mut expect = format!(
        "*{}\r\n*{}\r\n:{}\r\n:{}\r\n",
        rows.len(),
        2 + first.nodes.len(),
        first.start,
        first.end
    );
    for (host, port, id) in &first.nodes {
        expect += &format!(
            "*4\r\n${}\r\n{host}\r\n:{port}\r\n$40\r\n{id}\r\n*0\r\n",
            host.len()
        );
    }
    let mut raw = c.node(1).raw();
    let reply = raw.call(&["CLUSTER", "SLOTS"]);
    assert!(reply.starts_with(&expect), "{}", &reply[..300]);
    raw.call(&["HELLO", "3"]);
    let reply3 = raw.call(&["CLUSTER", "SLOTS"]);
    assert_eq!(
        reply3,
        reply.replace("*0\r\n", "%0\r\n"),
        "RESP3: an empty map"
    );
}

#[test]
fn cluster_nodes_shards_info_and_ids() {
    let c = Cluster::start(3);
    let rows = slots(c.node(0));
    // The primary ranges each node should report, from CLUSTER SLOTS.
    let mut primary: BTreeMap<u16, Vec<(u16, u16)>> = BTreeMap::new();
    for r in &rows {
        let runs = primary.entry(r.nodes[0].1).or_default();
        match runs.last_mut() {
            Some(last) if last.1 + 1 == r.start => last.1 = r.end,
            _ => runs.push((r.start, r.end)),
        }
    }
    let ids: Vec<String> = c.nodes.iter().map(myid).collect();
    for (me, srv) in c.nodes.iter().enumerate() {
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query(&mut srv.client())
            .unwrap();
        assert!(nodes.ends_with('\n'));
        let lines: Vec<&str> = nodes.lines().collect();
        assert_eq!(lines.len(), 3, "{nodes}");
        let mut covered = 0;
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let i = ids.iter().position(|id| id == f[0]).expect("a known id");
            let node = c.node(i);
            assert_eq!(
                f[1],
                format!("127.0.0.1:{}@{}", node.port, c.bus_ports[i]),
                "{line}"
            );
            let flags = if i == me { "myself,master" } else { "master" };
            assert_eq!(f[2], flags, "{line}");
            assert_eq!(f[3], "-", "no master: every node is one");
            assert_eq!(f[7], "connected");
            let epoch: u64 = f[6].parse().unwrap();
            assert!((1..=3).contains(&epoch));
            let ranges: Vec<(u16, u16)> = f[8..]
                .iter()
                .map(|r| match r.split_once('-') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (r.parse().unwrap(), r.parse().unwrap()),
                })
                .collect();
            assert_eq!(ranges, primary[&node.port], "{line}");
            covered += ranges
                .iter()
                .map(|(a, b)| (b - a) as usize + 1)
                .sum::<usize>();
        }
        assert_eq!(covered, 16384, "the masters' slots cover the keyspace once");

        let info: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut srv.client())
            .unwrap();
        for line in [
            "cluster_state:ok",
            "cluster_slots_assigned:16384",
            "cluster_slots_ok:16384",
            "cluster_slots_pfail:0",
            "cluster_slots_fail:0",
            "cluster_known_nodes:3",
            "cluster_size:3",
            "cluster_current_epoch:1",
        ] {
            assert!(info.contains(&format!("{line}\r\n")), "{line} in {info}");
        }
        assert!(info.starts_with("cluster_state:ok\r\n"));
        let shard: String = redis::cmd("CLUSTER")
            .arg("MYSHARDID")
            .query(&mut srv.client())
            .unwrap();
        assert_eq!(shard.len(), 40);
        assert_ne!(shard, ids[me]);
    }
    // The ids derive from the names: the same after a restart.
    let mut c = c;
    c.nodes[2].restart();
    assert_eq!(myid(c.node(2)), ids[2]);

    // SHARDS: one shard per node, the node its master, the slots its primary ranges.
    let mut raw = c.node(0).raw();
    let reply = raw.call(&["CLUSTER", "SHARDS"]);
    assert!(reply.starts_with("*3\r\n*4\r\n$5\r\nslots\r\n*"), "{reply}");
    let v: Value = redis::cmd("CLUSTER")
        .arg("SHARDS")
        .query(&mut c.node(0).client())
        .unwrap();
    let mut seen = BTreeSet::new();
    for shard in array(&v) {
        let s = array(shard);
        assert_eq!(text(&s[0]), "slots");
        let bounds: Vec<u16> = array(&s[1]).iter().map(|b| int(b) as u16).collect();
        assert_eq!(text(&s[2]), "nodes");
        let nodes = array(&s[3]);
        assert_eq!(nodes.len(), 1);
        let n = array(&nodes[0]);
        let fields: Vec<String> = n.iter().step_by(2).map(text).collect();
        assert_eq!(
            fields,
            [
                "id",
                "port",
                "ip",
                "endpoint",
                "role",
                "replication-offset",
                "health"
            ]
        );
        let port = int(&n[3]) as u16;
        assert_eq!(text(&n[5]), "127.0.0.1");
        assert_eq!(text(&n[9]), "master");
        assert_eq!(text(&n[13]), "online");
        let i = c.index_of_port(port).unwrap();
        assert_eq!(text(&n[1]), ids[i]);
        let pairs: Vec<(u16, u16)> = bounds.chunks(2).map(|p| (p[0], p[1])).collect();
        assert_eq!(pairs, primary[&port]);
        seen.insert(port);
    }
    assert_eq!(seen.len(), 3);
    raw.call(&["HELLO", "3"]);
    let reply3 = raw.call(&["CLUSTER", "SHARDS"]);
    assert!(
        reply3.starts_with("*3\r\n%2\r\n$5\r\nslots\r\n*"),
        "{reply3}"
    );
    assert!(reply3.contains("$5\r\nnodes\r\n*1\r\n%7\r\n$2\r\nid\r\n"));
    let info3 = raw.call(&["CLUSTER", "INFO"]);
    assert!(info3.starts_with("=") && info3.contains("txt:cluster_state:ok\r\n"));

    // INFO's cluster section, and the help.
    let mut con = c.node(1).client();
    let info: String = redis::cmd("INFO").arg("cluster").query(&mut con).unwrap();
    assert!(info.contains("cluster_enabled:1\r\n"), "{info}");
    let help: Vec<String> = redis::cmd("CLUSTER").arg("HELP").query(&mut con).unwrap();
    assert_eq!(
        help[0],
        "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    );
    assert!(help.contains(&"SLOTS".to_string()));
    assert_eq!(help.last().unwrap(), "    Prints this help.");
}

#[test]
fn without_cluster_mode_the_commands_are_refused_as_redis_does() {
    let srv = Server::start();
    let mut raw = srv.raw();
    let disabled = "-ERR This instance has cluster support disabled\r\n";
    for cmd in [
        &["CLUSTER", "INFO"][..],
        &["CLUSTER", "SLOTS"],
        &["CLUSTER", "KEYSLOT", "foo"],
        &["CLUSTER", "HELP"],
        &["READONLY"],
        &["READWRITE"],
        &["ASKING"],
    ] {
        assert_eq!(raw.call(cmd), disabled, "{cmd:?}");
    }
    assert_eq!(
        raw.call(&["CLUSTER", "FOO"]),
        "-ERR unknown subcommand 'FOO'. Try CLUSTER HELP.\r\n"
    );
    assert_eq!(
        raw.call(&["CLUSTER"]),
        "-ERR wrong number of arguments for 'cluster' command\r\n"
    );
    assert!(
        raw.call(&["INFO", "cluster"])
            .contains("cluster_enabled:0\r\n")
    );
    assert_eq!(
        raw.call(&["SELECT", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    // Cluster flags without --node are a mistake, not ignored.
    let out = Command::new(env!("CARGO_BIN_EXE_dse-server"))
        .args(["--port", "0", "--replicas", "2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--replicas needs --node"));
}

#[test]
fn bad_cluster_flags_stop_the_start_with_a_reason() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dse-server"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let p = ["--port", "7999", "--node", "a"];
    fn with<'a>(p: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [p, extra].concat()
    }
    assert!(run(&with(&p, &["--peers", "a:127.0.0.1:7001"])).contains("own name 'a'"));
    assert!(
        run(&with(&p, &["--peers", "b:127.0.0.1:7001,b:127.0.0.1:7002"])).contains("'b' twice")
    );
    assert!(run(&with(&p, &["--peers", "b:127.0.0.1"])).contains("has no port"));
    assert!(run(&with(&p, &["--peers", "b:127.0.0.1:x"])).contains("invalid port 'x'"));
    assert!(
        run(&with(&p, &["--peers", "b:h:7001", "--write-quorum", "3"]))
            .contains("--write-quorum must be between 1 and --replicas + 1 (2), got 3")
    );
    assert!(run(&with(&p, &["--write-quorum", "0"])).contains("--write-quorum must be between"));
    assert!(run(&with(&p, &["--write-quorum", "2"])).contains("add peers or lower --write-quorum"));
    assert!(run(&with(&p, &["--replicas", "9"])).contains("--replicas must be between 0 and 7"));
    assert!(run(&["--port", "0", "--node", "a"]).contains("--node needs a fixed --port"));
    assert!(
        run(&["--port", "60000", "--node", "a"])
            .contains("--cluster-port defaults to --port + 10000")
    );
    assert!(run(&["--port", "7999", "--node", "a b"]).contains("node name 'a b'"));
}

#[test]
fn keyslot_and_slot_key_commands_match_redis() {
    let c = Cluster::start(1);
    let srv = c.node(0);
    // Values from Redis (CLUSTER KEYSLOT on redis-server 7.0.15).
    for (key, slot) in [
        ("foo", 12182),
        ("bar", 5061),
        ("somekey", 11058),
        ("foo{hash_tag}", 2515),
        ("{user1}.following", 8106),
        ("{user1}.followers", 8106),
        ("user1", 8106),
        ("{}a", 10875),
        ("", 0),
    ] {
        assert_eq!(keyslot(srv, key), slot, "{key:?}");
    }
    let mut raw = srv.raw();
    for (cmd, reply) in [
        (
            &["CLUSTER", "KEYSLOT"][..],
            "-ERR wrong number of arguments for 'cluster|keyslot' command\r\n",
        ),
        (
            &["CLUSTER", "COUNTKEYSINSLOT", "16384"],
            "-ERR Invalid slot\r\n",
        ),
        (
            &["CLUSTER", "COUNTKEYSINSLOT", "-1"],
            "-ERR Invalid slot\r\n",
        ),
        (
            &["CLUSTER", "COUNTKEYSINSLOT", "x"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (&["CLUSTER", "COUNTKEYSINSLOT", "5"], ":0\r\n"),
        (
            &["CLUSTER", "GETKEYSINSLOT", "5", "-1"],
            "-ERR Invalid slot or number of keys\r\n",
        ),
        (
            &["CLUSTER", "GETKEYSINSLOT", "16384", "1"],
            "-ERR Invalid slot or number of keys\r\n",
        ),
        (
            &["CLUSTER", "GETKEYSINSLOT", "x", "1"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            &["CLUSTER", "GETKEYSINSLOT", "1", "x"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (&["CLUSTER", "GETKEYSINSLOT", "5", "10"], "*0\r\n"),
        (
            &["CLUSTER", "FOO"],
            "-ERR unknown subcommand 'FOO'. Try CLUSTER HELP.\r\n",
        ),
        (
            &["CLUSTER", "MYID", "x"],
            "-ERR wrong number of arguments for 'cluster|myid' command\r\n",
        ),
        (
            &["READONLY", "x"],
            "-ERR wrong number of arguments for 'readonly' command\r\n",
        ),
        (&["ASKING"], "+OK\r\n"),
        (&["SELECT", "0"], "+OK\r\n"),
        (
            &["SELECT", "1"],
            "-ERR SELECT is not allowed in cluster mode\r\n",
        ),
        (
            &["SWAPDB", "0", "1"],
            "-ERR SWAPDB is not allowed in cluster mode\r\n",
        ),
    ] {
        assert_eq!(raw.call(cmd), reply, "{cmd:?}");
    }
    // A one-node cluster serves every slot.
    let mut con = srv.client();
    for i in 0..50 {
        let _: () = con.set(format!("{{tag}}{i}"), i).unwrap();
    }
    let _: () = con.set("foo", 1).unwrap();
    let tag = keyslot(srv, "tag");
    assert_eq!(
        raw.call(&["CLUSTER", "COUNTKEYSINSLOT", &tag.to_string()]),
        ":50\r\n"
    );
    let keys: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(tag)
        .arg(20)
        .query(&mut con)
        .unwrap();
    assert_eq!(keys.len(), 20);
    assert!(keys.iter().all(|k| k.starts_with("{tag}")));
    let all: BTreeSet<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(tag)
        .arg(1000)
        .query(&mut con)
        .unwrap();
    assert_eq!(all, (0..50).map(|i| format!("{{tag}}{i}")).collect());
    assert_eq!(
        raw.call(&["CLUSTER", "GETKEYSINSLOT", "12182", "5"]),
        "*1\r\n$3\r\nfoo\r\n"
    );
    assert_eq!(raw.call(&["DBSIZE"]), ":51\r\n");
    let _: () = con.del("foo").unwrap();
    assert_eq!(raw.call(&["CLUSTER", "COUNTKEYSINSLOT", "12182"]), ":0\r\n");
    let _: () = redis::cmd("FLUSHALL").query(&mut con).unwrap();
    assert_eq!(
        raw.call(&["CLUSTER", "COUNTKEYSINSLOT", &tag.to_string()]),
        ":0\r\n"
    );
    assert_eq!(raw.call(&["DBSIZE"]), ":0\r\n");
}

/// The `redis` crate's cluster client, in redirect mode: a workload, then each key is
/// checked on its owner without any client-side routing.
#[test]
fn keys_set_through_a_cluster_client_are_on_their_owner() {
    let c = Cluster::with_args(3, &["--cluster-redirect"]);
    let client = redis::cluster::ClusterClient::new(c.urls()).unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..300 {
        let _: () = con.set(format!("key:{i}"), i).unwrap();
    }
    for i in 0..300 {
        let v: i64 = con.get(format!("key:{i}")).unwrap();
        assert_eq!(v, i);
    }
    for _ in 0..7 {
        let _: i64 = con.incr("counter", 1).unwrap();
    }
    let counter: i64 = con.get("counter").unwrap();
    assert_eq!(counter, 7);
    let _: () = con
        .mset(&[("{user:1}:name", "ann"), ("{user:1}:mail", "ann@x")])
        .unwrap();
    let got: Vec<String> = con.mget(&["{user:1}:name", "{user:1}:mail"]).unwrap();
    assert_eq!(got, ["ann", "ann@x"]);

    let rows = slots(c.node(0));
    let mut per_node = [0i64; 3];
    let mut raws: Vec<_> = c.nodes.iter().map(Server::raw).collect();
    for i in 0..300 {
        let key = format!("key:{i}");
        let slot = keyslot(c.node(0), &key);
        let o = owner(&c, &rows, slot);
        per_node[o] += 1;
        let value = i.to_string();
        assert_eq!(
            raws[o].call(&["GET", &key]),
            format!("${}\r\n{value}\r\n", value.len()),
            "{key} on its owner"
        );
        for (j, raw) in raws.iter_mut().enumerate() {
            if j != o {
                assert_eq!(
                    raw.call(&["GET", &key]),
                    format!("-MOVED {slot} 127.0.0.1:{}\r\n", c.node(o).port),
                    "{key} asked of node {j}"
                );
            }
        }
    }
    // Each node holds exactly its own keys: 300, the counter and the two user keys.
    let counter_owner = owner(&c, &rows, keyslot(c.node(0), "counter"));
    per_node[counter_owner] += 1;
    per_node[owner(&c, &rows, keyslot(c.node(0), "user:1"))] += 2;
    for (i, raw) in raws.iter_mut().enumerate() {
        assert_eq!(
            raw.call(&["DBSIZE"]),
            format!(":{}\r\n", per_node[i]),
            "node {i}"
        );
    }
    assert!(
        per_node.iter().all(|&n| n > 50),
        "{per_node:?}: keys spread"
    );
}

/// The `redis` crate's cluster client against the default (forwarding) mode: it routes
/// by CLUSTER SLOTS itself, so its requests arrive at their owners; the workload and its
/// results are the same as in redirect mode.
#[test]
fn the_cluster_client_works_in_forwarding_mode() {
    let c = Cluster::start(3);
    let client = redis::cluster::ClusterClient::new(c.urls()).unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..200 {
        let _: () = con.set(format!("key:{i}"), i).unwrap();
    }
    for i in 0..200 {
        let v: i64 = con.get(format!("key:{i}")).unwrap();
        assert_eq!(v, i);
    }
    for _ in 0..5 {
        let _: i64 = con.incr("counter", 1).unwrap();
    }
    let n: i64 = con.get("counter").unwrap();
    assert_eq!(n, 5);
    let total: usize = c
        .nodes
        .iter()
        .map(|s| {
            redis::cmd("DBSIZE")
                .query::<usize>(&mut s.client())
                .unwrap()
        })
        .sum();
    assert_eq!(total, 201);
}

/// Two keys of different slots owned by node `i`, and one owned by another node.
fn keys_for(c: &Cluster, rows: &[SlotRow], i: usize) -> (String, String, String) {
    let mut mine = Vec::new();
    let mut other = None;
    for n in 0.. {
        let key = format!("k{n}");
        let slot = keyslot(c.node(0), &key);
        if owner(c, rows, slot) == i {
            if mine.iter().all(|(_, s)| *s != slot) {
                mine.push((key, slot));
            }
        } else if other.is_none() {
            other = Some(key);
        }
        if mine.len() == 2 && other.is_some() {
            break;
        }
    }
    (mine[0].0.clone(), mine[1].0.clone(), other.unwrap())
}

#[test]
fn crossslot_hash_tags_and_transactions() {
    let c = Cluster::with_args(3, &["--cluster-redirect"]);
    let rows = slots(c.node(0));
    let (a, b, elsewhere) = keys_for(&c, &rows, 0);
    let mut raw = c.node(0).raw();
    let crossslot = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    assert_eq!(
        raw.call(&["MGET", &a, &b]),
        crossslot,
        "both local, two slots"
    );
    assert_eq!(raw.call(&["MSET", &a, "1", &elsewhere, "2"]), crossslot);
    assert_eq!(raw.call(&["DEL", &a, &b]), crossslot);
    // Hash tags put keys in one slot: the tag's.
    let (ta, tb) = (format!("{{{a}}}.x"), format!("pre{{{a}}}.y"));
    assert_eq!(raw.call(&["MSET", &ta, "1", &tb, "2"]), "+OK\r\n");
    assert_eq!(
        raw.call(&["MGET", &ta, &tb]),
        "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    let tag_slot = keyslot(c.node(0), &a);
    let o = owner(&c, &rows, keyslot(c.node(0), &elsewhere));
    let mut there = c.node(o).raw();
    assert_eq!(
        there.call(&["MGET", &ta, &tb]),
        format!("-MOVED {tag_slot} 127.0.0.1:{}\r\n", c.node(0).port)
    );
    // Keys after a count (ZUNIONSTORE destination numkeys key ...).
    let (dst, src) = (format!("{{{a}}}.dst"), format!("{{{a}}}.src"));
    assert_eq!(
        raw.call(&["ZUNIONSTORE", &dst, "2", &src, &elsewhere]),
        crossslot
    );
    assert_eq!(
        raw.call(&["ZUNIONSTORE", &elsewhere, "1", &src]),
        crossslot,
        "the destination counts"
    );
    assert_eq!(raw.call(&["ZUNIONSTORE", &dst, "1", &src]), ":0\r\n");
    // Keyless commands run anywhere.
    assert_eq!(there.call(&["PING"]), "+PONG\r\n");

    // Inside MULTI, a command for another node is refused at once and dooms the
    // transaction; EXEC with keys of two slots is refused whole, as Redis does.
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert!(raw.call(&["SET", &elsewhere, "1"]).starts_with("-MOVED "));
    assert_eq!(raw.call(&["SET", &a, "1"]), "+QUEUED\r\n");
    assert_eq!(
        raw.call(&["EXEC"]),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["SET", &a, "1"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["SET", &b, "1"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), crossslot);
    assert_eq!(raw.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(raw.call(&["GET", &a]), "$-1\r\n", "nothing ran");
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["SET", &ta, "v"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["GET", &tb]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), "*2\r\n+OK\r\n$1\r\n2\r\n");

    // Redirects are errors to INFO and rejected calls to commandstats.
    let stats = raw.call(&["INFO", "errorstats"]);
    assert!(stats.contains("errorstat_CROSSSLOT:count=6\r\n"), "{stats}");
    assert!(stats.contains("errorstat_MOVED:count=1\r\n"), "{stats}");
    let cmdstats = raw.call(&["INFO", "commandstats"]);
    let mget = cmdstats
        .lines()
        .find(|l| l.starts_with("cmdstat_mget:"))
        .unwrap();
    assert!(mget.starts_with("cmdstat_mget:calls=1,"), "{mget}");
    assert!(mget.ends_with("rejected_calls=1,failed_calls=0"), "{mget}");
}

#[test]
fn readonly_connections_read_replica_copies() {
    let c = Cluster::with_args(3, &["--cluster-redirect"]);
    let rows = slots(c.node(0));
    // A key whose replica is node 1 (and primary another node).
    let (key, slot) = (0..)
        .map(|n| format!("r{n}"))
        .map(|k| {
            let s = keyslot(c.node(0), &k);
            (k, s)
        })
        .find(|(_, s)| replicas(&c, &rows, *s) == [1])
        .unwrap();
    let o = owner(&c, &rows, slot);
    let moved = format!("-MOVED {slot} 127.0.0.1:{}\r\n", c.node(o).port);
    let mut raw = c.node(1).raw();
    assert_eq!(raw.call(&["GET", &key]), moved);
    assert_eq!(raw.call(&["READONLY"]), "+OK\r\n");
    // Served here (nothing replicates yet, so the copy is empty).
    assert_eq!(raw.call(&["GET", &key]), "$-1\r\n");
    assert_eq!(raw.call(&["EXISTS", &key]), ":0\r\n");
    assert_eq!(
        raw.call(&["SET", &key, "v"]),
        moved,
        "writes go to the primary"
    );
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", &key]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), "*1\r\n$-1\r\n");
    assert_eq!(raw.call(&["READWRITE"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", &key]), moved);
    assert_eq!(raw.call(&["READONLY"]), "+OK\r\n");
    assert_eq!(raw.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(raw.call(&["GET", &key]), moved, "RESET clears READONLY");
    // A node that holds no copy redirects even READONLY reads.
    let third = 3 - 1 - o;
    let mut none = c.node(third).raw();
    assert_eq!(none.call(&["READONLY"]), "+OK\r\n");
    assert_eq!(none.call(&["GET", &key]), moved);
}

/// A node started on data written before it joined holds keys of every slot, as a node
/// holds replica copies: whole-keyspace commands see only the slots it is primary for.
#[test]
fn whole_keyspace_commands_see_only_primary_slots() {
    let standalone = Server::start();
    let mut con = standalone.client();
    let keys: Vec<String> = (0..300).map(|i| format!("key:{i}")).collect();
    for k in &keys {
        let _: () = con.set(k, 1).unwrap();
    }
    let dir = standalone.stop_keeping_data();
    let mut dirs = vec![dir];
    dirs.extend((1..3).map(|i| crate::util::temp_dir(&format!("node{}", i + 1))));
    // Without replicas: a replica's full resync would replace the copies with its
    // primary's (empty) slots.
    let c = Cluster::with_dirs(dirs, &["--cluster-redirect", "--replicas", "0"]);
    let rows = slots(c.node(0));
    let node0 = c.node(0);
    let mine: BTreeSet<String> = keys
        .iter()
        .filter(|k| owner(&c, &rows, keyslot(node0, k)) == 0)
        .cloned()
        .collect();
    assert!(!mine.is_empty() && mine.len() < keys.len());
    let mut con = node0.client();
    let dbsize: usize = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(dbsize, mine.len());
    let listed: BTreeSet<String> = con.keys("*").unwrap();
    assert_eq!(listed, mine);
    let pattern: BTreeSet<String> = con.keys("key:1*").unwrap();
    assert_eq!(
        pattern,
        mine.iter()
            .filter(|k| k.starts_with("key:1"))
            .cloned()
            .collect()
    );
    let scanned: BTreeSet<String> = con.scan::<String>().unwrap().map(|k| k.unwrap()).collect();
    assert_eq!(scanned, mine);
    for _ in 0..50 {
        let k: String = redis::cmd("RANDOMKEY").query(&mut con).unwrap();
        assert!(mine.contains(&k), "{k}");
    }
    // The copies are still there, and counted per slot.
    let copy = keys.iter().find(|k| !mine.contains(*k)).unwrap();
    let slot = keyslot(node0, copy);
    let n: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query(&mut con)
        .unwrap();
    assert!(n >= 1);
    let info: String = redis::cmd("INFO").arg("keyspace").query(&mut con).unwrap();
    assert!(info.contains("db0:keys=300,"), "{info}");
    for i in 1..3 {
        let n: usize = redis::cmd("DBSIZE").query(&mut c.node(i).client()).unwrap();
        assert_eq!(n, 0);
    }
}

/// The workload the external cluster clients run: SET/GET/INCR/MGET with hash tags.
const PY_WORKLOAD: &str = r#"
import sys
from redis.cluster import RedisCluster, ClusterNode
rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", int(p)) for p in sys.argv[1:]],
                  decode_responses=True)
for i in range(200):
    assert rc.set(f"py:{i}", i)
for i in range(200):
    assert rc.get(f"py:{i}") == str(i), i
for _ in range(5):
    rc.incr("py:counter")
assert rc.get("py:counter") == "5"
assert rc.mset({"{py}a": "1", "{py}b": "2"})
assert rc.mget("{py}a", "{py}b") == ["1", "2"]
assert rc.mget_nonatomic("py:1", "py:2", "py:3") == ["1", "2", "3"]
nodes = {n.port for n in rc.get_nodes()}
assert len(nodes) == len(sys.argv) - 1, nodes
print("ok")
"#;

#[test]
fn redis_py_cluster_client() {
    let has_redis_py = Command::new("python3")
        .args(["-c", "import redis.cluster"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_redis_py {
        println!("skipped: python3 with redis-py (redis.cluster) is not installed");
        return;
    }
    for mode in [&["--cluster-redirect"][..], &[]] {
        redis_py_workload(&Cluster::with_args(3, mode));
    }
}

fn redis_py_workload(c: &Cluster) {
    let ports: Vec<String> = c.nodes.iter().map(|s| s.port.to_string()).collect();
    let out = Command::new("python3")
        .arg("-c")
        .arg(PY_WORKLOAD)
        .args(&ports)
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok",
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The keys really are spread over the nodes.
    let total: usize = c
        .nodes
        .iter()
        .map(|s| {
            redis::cmd("DBSIZE")
                .query::<usize>(&mut s.client())
                .unwrap()
        })
        .sum();
    assert_eq!(total, 203);
}

#[test]
fn redis_cli_in_cluster_mode() {
    if Command::new("redis-cli").arg("--version").output().is_err() {
        println!("skipped: redis-cli is not installed");
        return;
    }
    for redirect in [true, false] {
        let mode: &[&str] = if redirect {
            &["--cluster-redirect"]
        } else {
            &[]
        };
        redis_cli_workload(&Cluster::with_args(3, mode), redirect);
    }
}

fn redis_cli_workload(c: &Cluster, redirect: bool) {
    // Ask a node that is not the owner, so that redis-cli must follow the redirect (or
    // the node forwards).
    let rows = slots(c.node(0));
    let o = owner(c, &rows, keyslot(c.node(0), "cli:key"));
    let entry = c.node((o + 1) % 3).port.to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(["-c", "-p", &entry])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "cli:key", "v1"]), "OK");
    assert_eq!(cli(&["GET", "cli:key"]), "v1");
    assert_eq!(cli(&["INCR", "cli:n"]), "1");
    assert_eq!(cli(&["INCR", "cli:n"]), "2");
    assert_eq!(cli(&["MSET", "{cli}a", "1", "{cli}b", "2"]), "OK");
    assert_eq!(cli(&["MGET", "{cli}a", "{cli}b"]), "1\n2");
    let across = cli(&["MGET", "cli:key", "cli:n"]);
    if redirect {
        assert!(across.contains("CROSSSLOT"), "{across}");
    } else {
        // Forwarding splits it over the owners and gathers the values.
        assert_eq!(across, "v1\n2");
    }
    assert_eq!(
        c.node(o).raw().call(&["GET", "cli:key"]),
        "$2\r\nv1\r\n",
        "stored on the owner"
    );
}

//! Forwarding (the default cluster mode): any node accepts any command and runs it on
//! the key's owner over the cluster bus, so clients that know nothing of clusters work.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use redis::Commands;

use crate::util::{Cluster, Raw, encode};

/// The node (index) serving `key`'s slot, by asking one node for CLUSTER SLOTS.
fn owner(c: &Cluster, key: &str) -> usize {
    let mut con = c.node(0).client();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query(&mut con)
        .unwrap();
    let rows: Vec<(u16, u16, Vec<redis::Value>)> = {
        let v: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut con).unwrap();
        let redis::Value::Array(rows) = v else {
            panic!("{v:?}")
        };
        rows.into_iter()
            .map(|r| {
                let redis::Value::Array(r) = r else { panic!() };
                let n = |v: &redis::Value| match v {
                    redis::Value::Int(n) => *n as u16,
                    other => panic!("{other:?}"),
                };
                (n(&r[0]), n(&r[1]), r[2..].to_vec())
            })
            .collect()
    };
    let (_, _, nodes) = rows
        .iter()
        .find(|(s, e, _)| *s <= slot && slot <= *e)
        .unwrap();
    let redis::Value::Array(primary) = &nodes[0] else {
        panic!()
    };
    let redis::Value::Int(port) = primary[1] else {
        panic!()
    };
    c.index_of_port(port as u16).unwrap()
}

/// A key whose owner is node `i`.
fn key_on(c: &Cluster, i: usize, tag: &str) -> String {
    (0..)
        .map(|n| format!("{tag}:{n}"))
        .find(|k| owner(c, k) == i)
        .unwrap()
}

#[test]
fn any_node_serves_any_key() {
    let c = Cluster::start(3);
    let mut raws: Vec<Raw> = c.nodes.iter().map(|s| s.raw()).collect();
    for i in 0..150 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        assert_eq!(raws[i % 3].call(&["SET", &k, &v]), "+OK\r\n");
    }
    for i in 0..150 {
        let (k, v) = (format!("k{i}"), format!("v{i}"));
        for raw in raws.iter_mut() {
            assert_eq!(raw.call(&["GET", &k]), format!("${}\r\n{v}\r\n", v.len()));
        }
    }
    // Each key is stored once, on its owner: the nodes' own counts add up, and spread.
    let sizes: Vec<i64> = raws
        .iter_mut()
        .map(|r| r.call(&["DBSIZE"])[1..].trim().parse().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<i64>(), 150, "{sizes:?}");
    assert!(sizes.iter().all(|&n| n > 10), "{sizes:?}");
    // INCR from every node counts once.
    for r in 0..30 {
        raws[r % 3].call(&["INCR", "counter"]);
    }
    assert_eq!(raws[1].call(&["GET", "counter"]), "$2\r\n30\r\n");
}

#[test]
fn a_pipeline_of_remote_and_local_commands_keeps_its_order() {
    let c = Cluster::start(3);
    let mut s = TcpStream::connect(c.node(0).addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..1000 {
        let k = format!("p{i}");
        let v = format!("value-{i}");
        batch.extend(encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
        expected.extend_from_slice(b"+OK\r\n");
        batch.extend(encode(&[b"GET", k.as_bytes()]));
        expected.extend(format!("${}\r\n{v}\r\n", v.len()).into_bytes());
        batch.extend(encode(&[b"INCR", b"n"]));
        expected.extend(format!(":{}\r\n", i + 1).into_bytes());
        batch.extend(encode(&[b"PING"]));
        expected.extend_from_slice(b"+PONG\r\n");
    }
    s.write_all(&batch).unwrap();
    let mut got = vec![0u8; expected.len()];
    s.read_exact(&mut got).unwrap();
    assert!(got == expected, "replies out of order or wrong");
}

#[test]
fn multi_key_commands_are_split_and_gathered() {
    let c = Cluster::start(3);
    let a = key_on(&c, 0, "a");
    let b = key_on(&c, 1, "b");
    let d = key_on(&c, 2, "d");
    let mut r = c.node(1).raw();
    assert_eq!(r.call(&["MSET", &a, "1", &b, "2", &d, "3"]), "+OK\r\n");
    assert_eq!(
        r.call(&["MGET", &d, "nope", &a, &b]),
        "*4\r\n$1\r\n3\r\n$-1\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    assert_eq!(r.call(&["EXISTS", &a, &b, &b, "nope", &d]), ":4\r\n");
    assert_eq!(r.call(&["TOUCH", &a, &d]), ":2\r\n");
    assert_eq!(r.call(&["DEL", &a, &b, "nope"]), ":2\r\n");
    assert_eq!(r.call(&["UNLINK", &d, &a]), ":1\r\n");
    assert_eq!(r.call(&["MGET", &a, &b, &d]), "*3\r\n$-1\r\n$-1\r\n$-1\r\n");
    // RESP3 clients get RESP3 parts.
    r.call(&["HELLO", "3"]);
    r.call(&["SET", &b, "x"]);
    assert_eq!(r.call(&["MGET", &a, &b]), "*2\r\n_\r\n$1\r\nx\r\n");
    // Not splittable across slots: MSETNX, RENAME, COPY.
    let crossslot = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    assert_eq!(r.call(&["MSETNX", &a, "1", &d, "2"]), crossslot);
    assert_eq!(r.call(&["RENAME", &b, &d]), crossslot);
    assert_eq!(r.call(&["COPY", &b, &a]), crossslot);
    // Keys of one slot stay one atomic command wherever they are sent.
    assert_eq!(r.call(&["MSET", "{t}x", "1", "{t}y", "2"]), "+OK\r\n");
    assert_eq!(
        c.node(2).raw().call(&["MGET", "{t}x", "{t}y"]),
        "*2\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
}

#[test]
fn forwarded_replies_speak_the_clients_protocol() {
    let c = Cluster::start(2);
    let k = key_on(&c, 1, "h");
    let mut r = c.node(0).raw();
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(r.call(&["HSET", &k, "f", "v"]), ":1\r\n");
    assert_eq!(r.call(&["HGETALL", &k]), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(r.call(&["GET", &key_on(&c, 1, "missing")]), "_\r\n");
    r.call(&["HELLO", "2"]);
    assert_eq!(r.call(&["HGETALL", &k]), "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
}

#[test]
fn an_unreachable_owner_answers_clusterdown_and_the_rest_works() {
    // Writes here must not need the node that goes (replication.rs tests that).
    let mut c = Cluster::with_args(3, &["--write-quorum", "1"]);
    let there = key_on(&c, 2, "gone");
    let here = key_on(&c, 0, "here");
    c.nodes[2].kill9();
    let mut r = c.node(0).raw();
    let reply = r.call(&["SET", &there, "v"]);
    assert!(reply.starts_with("-CLUSTERDOWN"), "{reply}");
    assert_eq!(r.call(&["SET", &here, "v"]), "+OK\r\n");
    // In a pipeline, the failures keep their place.
    r.send(
        &[
            encode(&[b"GET", there.as_bytes()]),
            encode(&[b"GET", here.as_bytes()]),
        ]
        .concat(),
    );
    assert!(String::from_utf8_lossy(&r.read_reply()).starts_with("-CLUSTERDOWN"));
    assert_eq!(r.read_reply(), b"$1\r\nv\r\n");
}

#[test]
fn the_bus_needs_the_secret_and_client_ports_refuse_internal_commands() {
    let c = Cluster::with_args(3, &["--cluster-secret", "s3cret-for-the-test"]);
    let k = key_on(&c, 2, "s");
    assert_eq!(c.node(0).raw().call(&["SET", &k, "v"]), "+OK\r\n");
    assert_eq!(c.node(1).raw().call(&["GET", &k]), "$1\r\nv\r\n");

    // A stranger on the bus with the wrong secret is refused and shown the door.
    use dse_cluster::bus::{Auth, Decoder, Frame, Initiator, Step};
    let mut s = TcpStream::connect(("127.0.0.1", c.bus_ports[0])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut hello = Vec::new();
    let mut init = Initiator::start("node-2", Auth::secret(b"wrong"), &mut hello).unwrap();
    s.write_all(&hello).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap();
    let (frame, _) = Decoder::new(4096).decode(&buf[..n]).unwrap().unwrap();
    let mut out = Vec::new();
    let step = init.receive(&frame, &mut out);
    assert!(
        matches!(step, Step::Rejected { .. }),
        "the initiator must refuse a proof made with another secret: {step:?}"
    );
    drop(s);
    // A forward without a handshake closes the connection at once.
    let mut s = TcpStream::connect(("127.0.0.1", c.bus_ports[0])).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut forward = Vec::new();
    Frame::Forward {
        id: 1,
        resp: 2,
        epoch: 1,
        requests: &encode(&[b"SET", b"evil", b"1"]),
    }
    .encode(&mut forward)
    .unwrap();
    let _ = s.write_all(&forward);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "no reply to an unauthenticated forward");
    assert_eq!(c.node(0).raw().call(&["EXISTS", "evil"]), ":0\r\n");

    // Internal commands do not exist on the client port.
    for cmd in ["REPL", "HEARTBEAT"] {
        let reply = c.node(0).raw().call(&[cmd]);
        assert!(reply.starts_with("-ERR unknown command"), "{reply}");
    }
}

#[test]
fn redis_benchmark_runs_against_one_node_of_a_cluster() {
    if Command::new("redis-benchmark")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: redis-benchmark is not installed");
        return;
    }
    let c = Cluster::start(3);
    let out = Command::new("redis-benchmark")
        .args([
            "-p",
            &c.node(0).port.to_string(),
            "-t",
            "set,get",
            "-n",
            "3000",
        ])
        .args(["-r", "1000", "-P", "8", "-q", "--csv"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\"SET\"") && text.contains("\"GET\""),
        "{text}"
    );
    // The keys went to their owners, not all to the node benchmarked.
    let mut con = c.node(1).client();
    let n: usize = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert!(n > 0, "node 1 owns some of the benchmark's keys");
    let _: Option<String> = con.get("key:000000000001").unwrap();
}

//! DUMP and RESTORE. Error replies were checked against redis-server 7.0.15; the payload
//! is dse's own (documented in `crates/server/src/cmd/dump.rs`): the value's snapshot
//! encoding, a format version and a CRC32C.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::{Raw, Server};

const BAD_PAYLOAD: &str = "-ERR DUMP payload version or checksum are wrong\r\n";

fn dump(r: &mut Raw, key: &str) -> Vec<u8> {
    r.cmd(&[b"DUMP", key.as_bytes()]);
    let reply = r.read_reply();
    assert_eq!(reply[0], b'$', "{}", String::from_utf8_lossy(&reply));
    let start = reply.iter().position(|&b| b == b'\n').unwrap() + 1;
    reply[start..reply.len() - 2].to_vec()
}

fn restore(r: &mut Raw, key: &str, ttl: &str, payload: &[u8], options: &[&str]) -> String {
    let mut args: Vec<&[u8]> = vec![b"RESTORE", key.as_bytes(), ttl.as_bytes(), payload];
    args.extend(options.iter().map(|o| o.as_bytes()));
    r.cmd(&args);
    String::from_utf8_lossy(&r.read_reply()).into_owned()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// CRC-32C (Castagnoli), bit by bit: enough to frame test payloads.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A payload with a valid trailer (version 1, checksum) around `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&1u16.to_le_bytes());
    let crc = crc32c(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

#[test]
fn every_type_round_trips() {
    let srv = Server::start();
    let mut r = srv.raw();
    let setup: &[&[&str]] = &[
        &["SET", "str", "hello"],
        &["SET", "int", "-12345"],
        &["RPUSH", "list", "a", "", "c", "a"],
        &["HSET", "hash", "f1", "v1", "f2", ""],
        &["SADD", "set", "x", "y", "1"],
        &["SADD", "intset", "1", "2", "3"],
        &[
            "ZADD", "zset", "1.5", "a", "-inf", "b", "0", "c", "+inf", "d",
        ],
    ];
    for cmd in setup {
        assert!(!r.call(cmd).starts_with('-'), "{cmd:?}");
    }
    let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    r.cmd(&[b"SET", b"bin", &binary]);
    assert_eq!(r.read_reply(), b"+OK\r\n");
    let reads: &[&[&str]] = &[
        &["GET", "str"],
        &["GET", "int"],
        &["OBJECT", "ENCODING", "int"],
        &["LRANGE", "list", "0", "-1"],
        &["HGET", "hash", "f1"],
        &["HGET", "hash", "f2"],
        &["HLEN", "hash"],
        &["SMISMEMBER", "set", "x", "y", "1", "z"],
        &["SCARD", "intset"],
        &["ZRANGE", "zset", "0", "-1", "WITHSCORES"],
        &["GET", "bin"],
    ];
    let before: Vec<String> = reads.iter().map(|c| r.call(c)).collect();
    for key in ["str", "int", "list", "hash", "set", "intset", "zset", "bin"] {
        let payload = dump(&mut r, key);
        let ty = r.call(&["TYPE", key]);
        assert_eq!(r.call(&["DEL", key]), ":1\r\n");
        assert_eq!(restore(&mut r, key, "0", &payload, &[]), "+OK\r\n", "{key}");
        assert_eq!(r.call(&["TYPE", key]), ty);
        assert_eq!(r.call(&["TTL", key]), ":-1\r\n");
        // A second copy under another name.
        let copy = format!("{key}-copy");
        assert_eq!(restore(&mut r, &copy, "0", &payload, &[]), "+OK\r\n");
        assert_eq!(r.call(&["TYPE", &copy]), ty);
    }
    let after: Vec<String> = reads.iter().map(|c| r.call(c)).collect();
    assert_eq!(before, after);
    assert_eq!(r.call(&["DUMP", "nokey"]), "$-1\r\n");
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(r.call(&["DUMP", "nokey"]), "_\r\n");
}

#[test]
fn ttl_replace_absttl_idletime_freq() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "a", "foo"]);
    let payload = dump(&mut r, "a");
    // An existing key needs REPLACE.
    assert_eq!(
        restore(&mut r, "a", "0", &payload, &[]),
        "-BUSYKEY Target key name already exists.\r\n"
    );
    r.call(&["SET", "a", "other"]);
    r.call(&["EXPIRE", "a", "1000"]);
    assert_eq!(restore(&mut r, "a", "0", &payload, &["REPLACE"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "a"]), "$3\r\nfoo\r\n");
    assert_eq!(r.call(&["TTL", "a"]), ":-1\r\n");
    // A relative TTL in milliseconds.
    assert_eq!(restore(&mut r, "b", "5000", &payload, &[]), "+OK\r\n");
    let pttl: i64 = r.call(&["PTTL", "b"])[1..].trim().parse().unwrap();
    assert!((4000..=5000).contains(&pttl), "{pttl}");
    // ABSTTL: a Unix time in milliseconds.
    let at = now_ms() + 60_000;
    assert_eq!(
        restore(&mut r, "c", &at.to_string(), &payload, &["ABSTTL"]),
        "+OK\r\n"
    );
    assert_eq!(r.call(&["PEXPIRETIME", "c"]), format!(":{at}\r\n"));
    // A deadline already past creates nothing, and with REPLACE removes the old key.
    assert_eq!(restore(&mut r, "d", "1", &payload, &["ABSTTL"]), "+OK\r\n");
    assert_eq!(r.call(&["EXISTS", "d"]), ":0\r\n");
    assert_eq!(
        restore(&mut r, "c", "1", &payload, &["ABSTTL", "REPLACE"]),
        "+OK\r\n"
    );
    assert_eq!(r.call(&["EXISTS", "c"]), ":0\r\n");
    // IDLETIME sets what OBJECT IDLETIME reports; FREQ is accepted.
    assert_eq!(
        restore(&mut r, "e", "0", &payload, &["IDLETIME", "1000"]),
        "+OK\r\n"
    );
    let idle: i64 = r.call(&["OBJECT", "IDLETIME", "e"])[1..]
        .trim()
        .parse()
        .unwrap();
    assert!((1000..=1002).contains(&idle), "{idle}");
    assert_eq!(
        restore(&mut r, "f", "0", &payload, &["FREQ", "100"]),
        "+OK\r\n"
    );
    assert_eq!(r.call(&["GET", "f"]), "$3\r\nfoo\r\n");
}

#[test]
fn errors_as_redis() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "a", "foo"]);
    let payload = dump(&mut r, "a");
    let cases: &[(&[&str], &str)] = &[
        (
            &["RESTORE", "a", "0", "xxx"],
            "-BUSYKEY Target key name already exists.\r\n",
        ),
        (
            &["RESTORE", "b", "-1", "xxx"],
            "-ERR Invalid TTL value, must be >= 0\r\n",
        ),
        (
            &["RESTORE", "b", "x", "xxx"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (&["RESTORE", "b", "0", "xxx"], BAD_PAYLOAD),
        (
            &["RESTORE", "a", "-1", "xxx", "REPLACE"],
            "-ERR Invalid TTL value, must be >= 0\r\n",
        ),
        (
            &["RESTORE", "b", "0", "xxx", "foo"],
            "-ERR syntax error\r\n",
        ),
        (
            &["RESTORE", "b", "0", "xxx", "IDLETIME", "-1"],
            "-ERR Invalid IDLETIME value, must be >= 0\r\n",
        ),
        (
            &["RESTORE", "b", "0", "xxx", "IDLETIME", "x"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            &["RESTORE", "b", "0", "xxx", "FREQ", "256"],
            "-ERR Invalid FREQ value, must be >= 0 and <= 255\r\n",
        ),
        (
            &["RESTORE", "b", "0", "xxx", "FREQ", "5", "IDLETIME", "5"],
            "-ERR syntax error\r\n",
        ),
        (
            &["RESTORE", "b", "0", "xxx", "IDLETIME", "5", "FREQ", "5"],
            "-ERR syntax error\r\n",
        ),
        (
            &["RESTORE", "b", "0", "xxx", "IDLETIME"],
            "-ERR syntax error\r\n",
        ),
        (
            &["RESTORE", "b", "0", "xxx", "ABSTTL", "ABSTTL", "REPLACE"],
            BAD_PAYLOAD,
        ),
        (&["RESTORE", "b", "0", ""], BAD_PAYLOAD),
        (
            &["RESTORE", "b", "0"],
            "-ERR wrong number of arguments for 'restore' command\r\n",
        ),
        (
            &["DUMP"],
            "-ERR wrong number of arguments for 'dump' command\r\n",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(r.call(args), *want, "{args:?}");
    }
    // Any damaged byte is caught, and so is a payload from Redis itself.
    for i in 0..payload.len() {
        let mut bad = payload.clone();
        bad[i] ^= 0x01;
        assert_eq!(
            restore(&mut r, "b", "0", &bad, &[]),
            BAD_PAYLOAD,
            "byte {i}"
        );
    }
    let from_redis = b"\x00\x03foo\n\x00sI9\xdbM\xc1\xba\x97";
    assert_eq!(restore(&mut r, "b", "0", from_redis, &[]), BAD_PAYLOAD);
    // A newer format version is refused even with a valid checksum.
    let mut newer = payload[..payload.len() - 6].to_vec();
    newer.extend_from_slice(&2u16.to_le_bytes());
    let crc = crc32c(&newer);
    newer.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(restore(&mut r, "b", "0", &newer, &[]), BAD_PAYLOAD);
    // A valid frame around data that is not one value: unknown type, trailing bytes, an
    // empty list.
    for body in [&b"\x42"[..], b"\x00\x01xy", b"\x02\x00"] {
        assert_eq!(
            restore(&mut r, "b", "0", &framed(body), &[]),
            "-ERR Bad data format\r\n",
            "{body:?}"
        );
    }
    // The frame of our own format: a string value is type 0 and its length-prefixed bytes.
    assert_eq!(
        restore(&mut r, "b", "0", &framed(b"\x00\x02hi"), &[]),
        "+OK\r\n"
    );
    assert_eq!(r.call(&["GET", "b"]), "$2\r\nhi\r\n");
    assert_eq!(r.call(&["EXISTS", "b"]), ":1\r\n");
}

#[test]
fn restored_keys_survive_a_crash() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut r = srv.raw();
    r.call(&["RPUSH", "l", "x", "y"]);
    let payload = dump(&mut r, "l");
    assert_eq!(restore(&mut r, "copy", "100000", &payload, &[]), "+OK\r\n");
    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["LRANGE", "copy", "0", "-1"]),
        "*2\r\n$1\r\nx\r\n$1\r\ny\r\n"
    );
    let ttl: i64 = r.call(&["TTL", "copy"])[1..].trim().parse().unwrap();
    assert!((90..=100).contains(&ttl), "{ttl}");
}

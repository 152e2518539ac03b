//! String commands. Every expected raw reply below was checked against redis-server 7.0.15.
//!
//! WRONGTYPE replies need a key of another type, which no command can create yet: they are
//! covered by the unit tests in `crates/server/src/cmd/strings.rs` until list or hash
//! commands exist.

use std::time::Duration;

use redis::Commands;

use crate::util::{Raw, Server, eventually};

const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
const NOT_FLOAT: &str = "-ERR value is not a valid float\r\n";
const SYNTAX: &str = "-ERR syntax error\r\n";
const TOO_BIG: &str = "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n";

/// Sends a command with binary arguments and returns its raw reply.
fn call_bin(r: &mut Raw, args: &[&[u8]]) -> Vec<u8> {
    r.cmd(args);
    r.read_reply()
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

#[test]
fn set_get_with_the_redis_crate() {
    let srv = Server::start();
    let mut c = srv.client();
    let _: () = c.set("k", "v").unwrap();
    let v: String = c.get("k").unwrap();
    assert_eq!(v, "v");
    let missing: Option<String> = c.get("nope").unwrap();
    assert_eq!(missing, None);
    let binary: Vec<u8> = (0..=255u8).collect();
    let _: () = c.set(b"bin\0key", &binary).unwrap();
    let back: Vec<u8> = c.get(b"bin\0key").unwrap();
    assert_eq!(back, binary);
}

#[test]
fn set_options() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "k", "1", "NX"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "k", "2", "NX"]), "$-1\r\n");
    assert_eq!(r.call(&["SET", "k", "3", "XX", "GET"]), "$1\r\n1\r\n");
    assert_eq!(r.call(&["SET", "nokey", "3", "XX", "GET"]), "$-1\r\n");
    assert_eq!(r.call(&["SET", "nokey", "3", "XX"]), "$-1\r\n");
    assert_eq!(r.call(&["GET", "nokey"]), "$-1\r\n");
    assert_eq!(r.call(&["SET", "k", "4", "NX", "GET"]), "$1\r\n3\r\n");
    assert_eq!(r.call(&["SET", "new", "4", "NX", "GET"]), "$-1\r\n");
    assert_eq!(r.call(&["GET", "new"]), "$1\r\n4\r\n");
    assert_eq!(r.call(&["SET", "k", "4", "NX", "XX"]), SYNTAX);
    assert_eq!(r.call(&["SET", "k", "4", "XX", "NX"]), SYNTAX);
    assert_eq!(
        r.call(&["SET", "k", "4", "EX", "0"]),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        r.call(&["SET", "k", "4", "PX", "-5"]),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        r.call(&["SET", "k", "4", "EX", "9223372036854775807"]),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        r.call(&["SET", "k", "4", "EXAT", "9223372036854776"]),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(r.call(&["SET", "k", "4", "EX", "x"]), NOT_INT);
    // Syntax is checked before the expiry's value, as Redis does.
    assert_eq!(r.call(&["SET", "k", "4", "EX", "0", "NX", "XX"]), SYNTAX);
    assert_eq!(r.call(&["SET", "k", "4", "EX", "x", "FOO"]), SYNTAX);
    assert_eq!(r.call(&["SET", "k", "5", "PX", "100000"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "seed", "v", "100000"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "k", "6", "EX", "10", "KEEPTTL"]), SYNTAX);
    assert_eq!(r.call(&["SET", "k", "6", "KEEPTTL", "PX", "10"]), SYNTAX);
    assert_eq!(r.call(&["SET", "k", "6", "EX", "10", "PX", "10"]), SYNTAX);
    assert_eq!(r.call(&["SET", "k", "6", "EX"]), SYNTAX);
    assert_eq!(r.call(&["SET", "k", "6", "PERSIST"]), SYNTAX);
    // An option may repeat; the last expiry wins.
    assert_eq!(r.call(&["SET", "k", "6", "NX", "NX"]), "$-1\r\n");
    assert_eq!(r.call(&["SET", "k", "7", "KEEPTTL", "KEEPTTL"]), "+OK\r\n");
    assert_eq!(
        r.call(&["SET", "k", "8", "ex", "10", "ex", "20", "get", "GET"]),
        "$1\r\n7\r\n"
    );
    assert_eq!(
        r.call(&["SET", "k", "9", "PX", "1", "PX", "100000"]),
        "+OK\r\n"
    );
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(r.call(&["GET", "k"]), "$1\r\n9\r\n");
    // A deadline in the past is accepted and the key is gone at once.
    assert_eq!(r.call(&["SET", "k", "v", "PXAT", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "k"]), "$-1\r\n");
    assert_eq!(r.call(&["SET", "k", "v", "EXAT", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "k"]), "$-1\r\n");
    assert_eq!(
        r.call(&["SET", "k"]),
        "-ERR wrong number of arguments for 'set' command\r\n"
    );
}

#[test]
fn setnx_setex_psetex_getset_getdel() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SETNX", "a", "1"]), ":1\r\n");
    assert_eq!(r.call(&["SETNX", "a", "2"]), ":0\r\n");
    assert_eq!(r.call(&["GET", "a"]), "$1\r\n1\r\n");
    assert_eq!(
        r.call(&["SETNX", "a"]),
        "-ERR wrong number of arguments for 'setnx' command\r\n"
    );

    assert_eq!(r.call(&["SETEX", "b", "100", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "b"]), "$1\r\nv\r\n");
    for bad in ["0", "-1", "9223372036854775807"] {
        assert_eq!(
            r.call(&["SETEX", "b", bad, "v"]),
            "-ERR invalid expire time in 'setex' command\r\n"
        );
    }
    assert_eq!(r.call(&["SETEX", "b", "x", "v"]), NOT_INT);
    assert_eq!(r.call(&["SETEX", "b", "1.5", "v"]), NOT_INT);
    assert_eq!(r.call(&["PSETEX", "c", "100000", "w"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "c"]), "$1\r\nw\r\n");
    for bad in ["0", "-1"] {
        assert_eq!(
            r.call(&["PSETEX", "c", bad, "v"]),
            "-ERR invalid expire time in 'psetex' command\r\n"
        );
    }
    assert_eq!(
        r.call(&["PSETEX", "c", "9223372036854775807", "v"]),
        "-ERR invalid expire time in 'psetex' command\r\n"
    );
    assert_eq!(
        r.call(&["SETEX", "b", "10"]),
        "-ERR wrong number of arguments for 'setex' command\r\n"
    );
    // The failed calls left the values alone.
    assert_eq!(r.call(&["GET", "b"]), "$1\r\nv\r\n");
    assert_eq!(r.call(&["GET", "c"]), "$1\r\nw\r\n");

    assert_eq!(r.call(&["GETSET", "d", "1"]), "$-1\r\n");
    assert_eq!(r.call(&["GETSET", "d", "2"]), "$1\r\n1\r\n");
    assert_eq!(r.call(&["GET", "d"]), "$1\r\n2\r\n");
    assert_eq!(
        r.call(&["GETSET", "d"]),
        "-ERR wrong number of arguments for 'getset' command\r\n"
    );
    assert_eq!(r.call(&["GETDEL", "d"]), "$1\r\n2\r\n");
    assert_eq!(r.call(&["GETDEL", "d"]), "$-1\r\n");
    assert_eq!(r.call(&["GET", "d"]), "$-1\r\n");

    let mut c = srv.client();
    assert!(c.set_nx::<_, _, bool>("x", "1").unwrap());
    assert!(!c.set_nx::<_, _, bool>("x", "2").unwrap());
    let _: () = c.set_ex("y", "ey", 100).unwrap();
    let _: () = c.pset_ex("z", "pz", 100_000).unwrap();
    let old: Option<String> = c.getset("x", "3").unwrap();
    assert_eq!(old.as_deref(), Some("1"));
    let got: Vec<Option<String>> = c.mget(&["x", "y", "z"]).unwrap();
    assert_eq!(
        got,
        [Some("3".into()), Some("ey".into()), Some("pz".into())]
    );
    let deleted: Option<String> = c.get_del("y").unwrap();
    assert_eq!(deleted.as_deref(), Some("ey"));
    let gone: Option<String> = c.get("y").unwrap();
    assert_eq!(gone, None);
}

#[test]
fn expiring_writes_expire() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["PSETEX", "p", "1000", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["SETEX", "s", "1", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "x", "v", "PX", "1000"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "p"]), "$1\r\nv\r\n");
    assert!(eventually(Duration::from_secs(10), || r
        .call(&["MGET", "p", "s", "x"])
        == "*3\r\n$-1\r\n$-1\r\n$-1\r\n"));
}

#[test]
fn getex() {
    let srv = Server::start();
    let mut r = srv.raw();
    // Options are checked for syntax first, the expiry's value only on an existing string.
    assert_eq!(r.call(&["GETEX", "none"]), "$-1\r\n");
    assert_eq!(r.call(&["GETEX", "none", "EX", "0"]), "$-1\r\n");
    assert_eq!(r.call(&["GETEX", "none", "FOO"]), SYNTAX);
    assert_eq!(r.call(&["SET", "k", "val"]), "+OK\r\n");
    assert_eq!(
        r.call(&["GETEX", "k", "EX", "0"]),
        "-ERR invalid expire time in 'getex' command\r\n"
    );
    assert_eq!(r.call(&["GETEX", "k", "PX", "x"]), NOT_INT);
    for bad in [
        &["KEEPTTL"][..],
        &["NX"],
        &["XX"],
        &["GET"],
        &["EX"],
        &["PERSIST", "EX", "10"],
        &["EX", "10", "PERSIST"],
        &["EX", "10", "PX", "100"],
        &["PXAT", "10", "EXAT", "100"],
    ] {
        let mut args = vec!["GETEX", "k"];
        args.extend_from_slice(bad);
        assert_eq!(r.call(&args), SYNTAX, "{bad:?}");
    }
    assert_eq!(r.call(&["GETEX", "k"]), bulk("val"));
    assert_eq!(r.call(&["GETEX", "k", "EX", "10", "EX", "20"]), bulk("val"));
    assert_eq!(r.call(&["GETEX", "k", "PERSIST", "PERSIST"]), bulk("val"));
    assert_eq!(r.call(&["GETEX", "k"]), bulk("val"), "PERSIST kept the key");
    assert_eq!(
        r.call(&["GETEX", "k", "PXAT", "99999999999999"]),
        bulk("val")
    );
    assert_eq!(r.call(&["GETEX", "k", "EXAT", "99999999999"]), bulk("val"));
    // A deadline already past: the value is returned and the key deleted.
    assert_eq!(r.call(&["GETEX", "k", "PXAT", "1"]), bulk("val"));
    assert_eq!(r.call(&["GET", "k"]), "$-1\r\n");
    assert_eq!(r.call(&["SET", "k", "v2"]), "+OK\r\n");
    assert_eq!(r.call(&["GETEX", "k", "EXAT", "1"]), bulk("v2"));
    assert_eq!(r.call(&["GETEX", "k"]), "$-1\r\n");

    // EX/PX set a TTL, PERSIST removes one.
    assert_eq!(r.call(&["SET", "t", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "u", "2", "PX", "1000"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "w", "3", "PX", "1000"]), "+OK\r\n");
    // t's new deadline is the last of the three: once t is gone, u's and w's first
    // deadlines have passed too.
    assert_eq!(r.call(&["GETEX", "t", "PX", "1000"]), bulk("1"));
    assert_eq!(r.call(&["GETEX", "u", "PERSIST"]), bulk("2"));
    assert_eq!(r.call(&["GETEX", "w", "EX", "1000"]), bulk("3"));
    assert!(eventually(Duration::from_secs(10), || r
        .call(&["GET", "t"])
        == "$-1\r\n"));
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        r.call(&["MGET", "t", "u", "w"]),
        "*3\r\n$-1\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        r.call(&["GETEX"]),
        "-ERR wrong number of arguments for 'getex' command\r\n"
    );

    let mut c = srv.client();
    let _: () = c.set("rk", "rv").unwrap();
    let v: Option<String> = c.get_ex("rk", redis::Expiry::PX(100_000)).unwrap();
    assert_eq!(v.as_deref(), Some("rv"));
    let v: Option<String> = c.get_ex("rk", redis::Expiry::PERSIST).unwrap();
    assert_eq!(v.as_deref(), Some("rv"));
    let v: Option<String> = c.get_ex("missing", redis::Expiry::EX(10)).unwrap();
    assert_eq!(v, None);
}

#[test]
fn ttl_is_kept_by_in_place_updates_and_dropped_by_overwrites() {
    let srv = Server::start();
    let mut r = srv.raw();
    for key in [
        "incr", "decrby", "append", "setrange", "float", "keepttl", "getset", "set", "mset",
        "persist",
    ] {
        assert_eq!(r.call(&["SET", key, "10", "PX", "1500"]), "+OK\r\n");
    }
    assert_eq!(r.call(&["INCR", "incr"]), ":11\r\n");
    assert_eq!(r.call(&["DECRBY", "decrby", "3"]), ":7\r\n");
    assert_eq!(r.call(&["APPEND", "append", "x"]), ":3\r\n");
    assert_eq!(r.call(&["SETRANGE", "setrange", "1", "5"]), ":2\r\n");
    assert_eq!(r.call(&["INCRBYFLOAT", "float", "0.5"]), bulk("10.5"));
    assert_eq!(r.call(&["SET", "keepttl", "k", "KEEPTTL"]), "+OK\r\n");
    assert_eq!(r.call(&["GETSET", "getset", "g"]), bulk("10"));
    assert_eq!(r.call(&["SET", "set", "s"]), "+OK\r\n");
    assert_eq!(r.call(&["MSET", "mset", "m"]), "+OK\r\n");
    assert_eq!(r.call(&["GETEX", "persist", "PERSIST"]), bulk("10"));
    let kept = ["incr", "decrby", "append", "setrange", "float", "keepttl"];
    let mut mget = vec!["MGET"];
    mget.extend_from_slice(&kept);
    assert_eq!(
        r.call(&mget),
        "*6\r\n$2\r\n11\r\n$1\r\n7\r\n$3\r\n10x\r\n$2\r\n15\r\n$4\r\n10.5\r\n$1\r\nk\r\n"
    );
    assert!(
        eventually(Duration::from_secs(10), || r.call(&mget)
            == "*6\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n"),
        "the updates kept the deadline"
    );
    assert_eq!(
        r.call(&["MGET", "getset", "set", "mset", "persist"]),
        "*4\r\n$1\r\ng\r\n$1\r\ns\r\n$1\r\nm\r\n$2\r\n10\r\n"
    );
    // INCR on an expired key starts from 0.
    assert_eq!(r.call(&["INCR", "incr"]), ":1\r\n");
}

#[test]
fn mget_mset_msetnx() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["MGET", "a", "b"]), "*2\r\n$-1\r\n$-1\r\n");
    assert_eq!(r.call(&["MSET", "a", "1", "b", "2", "a", "3"]), "+OK\r\n");
    assert_eq!(
        r.call(&["MGET", "a", "b", "c", "a"]),
        "*4\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n$1\r\n3\r\n"
    );
    for cmd in ["MSET", "MSETNX"] {
        let arity = format!(
            "-ERR wrong number of arguments for '{}' command\r\n",
            cmd.to_lowercase()
        );
        assert_eq!(r.call(&[cmd, "a"]), arity);
        assert_eq!(r.call(&[cmd, "a", "1", "b"]), arity);
    }
    assert_eq!(
        r.call(&["MGET"]),
        "-ERR wrong number of arguments for 'mget' command\r\n"
    );
    // MSETNX sets all or nothing.
    assert_eq!(r.call(&["MSETNX", "b", "x", "n1", "y"]), ":0\r\n");
    assert_eq!(r.call(&["MGET", "b", "n1"]), "*2\r\n$1\r\n2\r\n$-1\r\n");
    assert_eq!(
        r.call(&["MSETNX", "n1", "x", "n2", "y", "n1", "z"]),
        ":1\r\n"
    );
    assert_eq!(
        r.call(&["MGET", "n1", "n2"]),
        "*2\r\n$1\r\nz\r\n$1\r\ny\r\n"
    );
    // An expired key counts as absent.
    assert_eq!(r.call(&["SET", "gone", "v", "PXAT", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["MSETNX", "gone", "back"]), ":1\r\n");
    assert_eq!(r.call(&["GET", "gone"]), bulk("back"));

    // Many keys over many shards, binary keys and values.
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = (0..200u32)
        .map(|i| {
            let mut k = b"key\0\r\n".to_vec();
            k.extend_from_slice(&i.to_le_bytes());
            let v: Vec<u8> = (0..=255u8).map(|b| b.wrapping_add(i as u8)).collect();
            (k, v)
        })
        .collect();
    let mut c = srv.client();
    let _: () = c.mset(&pairs).unwrap();
    let keys: Vec<&[u8]> = pairs.iter().map(|(k, _)| k.as_slice()).collect();
    let values: Vec<Vec<u8>> = c.mget(&keys).unwrap();
    assert_eq!(
        values,
        pairs.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()
    );
    assert!(
        !c.mset_nx::<_, _, bool>(&[("fresh", "1"), ("a", "2")])
            .unwrap()
    );
    assert!(
        c.mset_nx::<_, _, bool>(&[("fresh", "1"), ("fresh2", "2")])
            .unwrap()
    );
    let got: Vec<Option<String>> = c.mget(&["fresh", "fresh2", "a"]).unwrap();
    assert_eq!(got, [Some("1".into()), Some("2".into()), Some("3".into())]);
}

#[test]
fn msetnx_is_atomic_across_keys() {
    // Two clients race MSETNX over the same keys, listed in opposite orders. Exactly one
    // must win each round, and both keys must hold the winner's value: a command that
    // checked or wrote key by key could let both win, or mix their values.
    let srv = Server::start();
    const ROUNDS: usize = 300;
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let racers: Vec<_> = ["A", "B"]
        .into_iter()
        .map(|who| {
            let mut c = srv.client();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut won = Vec::new();
                for round in 0..ROUNDS {
                    let (k1, k2) = (format!("r{round}-1"), format!("r{round}-2"));
                    let pairs = if who == "A" {
                        [(k1, who), (k2, who)]
                    } else {
                        [(k2, who), (k1, who)]
                    };
                    barrier.wait();
                    won.push(c.mset_nx::<_, _, bool>(&pairs).unwrap());
                }
                won
            })
        })
        .collect();
    let results: Vec<Vec<bool>> = racers.into_iter().map(|t| t.join().unwrap()).collect();
    let mut c = srv.client();
    for (round, (&a_won, &b_won)) in results[0].iter().zip(&results[1]).enumerate() {
        assert!(a_won ^ b_won, "round {round}: exactly one MSETNX wins");
        let winner = if a_won { "A" } else { "B" };
        let values: Vec<String> = c
            .mget(&[format!("r{round}-1"), format!("r{round}-2")])
            .unwrap();
        assert_eq!(values, [winner, winner], "round {round}");
    }
}

#[test]
fn append_strlen_binary() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["STRLEN", "s"]), ":0\r\n");
    assert_eq!(r.call(&["APPEND", "s", "hello"]), ":5\r\n");
    assert_eq!(
        call_bin(&mut r, &[b"APPEND", b"s", b"\0\r\n\xff"]),
        b":9\r\n"
    );
    assert_eq!(
        call_bin(&mut r, &[b"GET", b"s"]),
        b"$9\r\nhello\0\r\n\xff\r\n"
    );
    assert_eq!(r.call(&["STRLEN", "s"]), ":9\r\n");
    assert_eq!(r.call(&["APPEND", "s", ""]), ":9\r\n");
    assert_eq!(r.call(&["APPEND", "e", ""]), ":0\r\n");
    assert_eq!(r.call(&["GET", "e"]), "$0\r\n\r\n");
    // Integers append as their text.
    assert_eq!(r.call(&["SET", "n", "-12"]), "+OK\r\n");
    assert_eq!(r.call(&["STRLEN", "n"]), ":3\r\n");
    assert_eq!(r.call(&["APPEND", "n", "34"]), ":5\r\n");
    assert_eq!(r.call(&["GET", "n"]), bulk("-1234"));
    assert_eq!(r.call(&["INCR", "n"]), ":-1233\r\n");
    assert_eq!(r.call(&["APPEND", "n", ".5"]), ":7\r\n");
    assert_eq!(r.call(&["INCR", "n"]), NOT_INT);
    assert_eq!(
        r.call(&["APPEND", "n"]),
        "-ERR wrong number of arguments for 'append' command\r\n"
    );
    assert_eq!(
        r.call(&["STRLEN", "n", "m"]),
        "-ERR wrong number of arguments for 'strlen' command\r\n"
    );

    let mut c = srv.client();
    let len: usize = c.append("c", b"\x00\x01").unwrap();
    assert_eq!(len, 2);
    let len: usize = c.append("c", "abc").unwrap();
    assert_eq!(len, 5);
    let len: usize = c.strlen("c").unwrap();
    assert_eq!(len, 5);
    let v: Vec<u8> = c.get("c").unwrap();
    assert_eq!(v, b"\x00\x01abc");
}

#[test]
fn getrange_and_substr() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "s", "hello"]), "+OK\r\n");
    let cases = [
        ("0", "-1", "hello"),
        ("-1", "-100", ""),
        ("-100", "-101", ""),
        ("-3", "-1", "llo"),
        ("2", "1", ""),
        ("10", "20", ""),
        ("-100", "100", "hello"),
        ("0", "0", "h"),
        ("4", "100", "o"),
        ("5", "5", ""),
        ("0", "-6", "h"),
        ("-5", "-6", ""),
        ("1", "3", "ell"),
        ("-9223372036854775808", "9223372036854775807", "hello"),
        ("9223372036854775807", "-9223372036854775808", ""),
    ];
    for (start, end, want) in cases {
        assert_eq!(
            r.call(&["GETRANGE", "s", start, end]),
            bulk(want),
            "{start} {end}"
        );
        assert_eq!(r.call(&["SUBSTR", "s", start, end]), bulk(want));
    }
    assert_eq!(r.call(&["GETRANGE", "s", "x", "1"]), NOT_INT);
    assert_eq!(r.call(&["GETRANGE", "s", "1", "1.5"]), NOT_INT);
    assert_eq!(r.call(&["GETRANGE", "none", "0", "-1"]), "$0\r\n\r\n");
    assert_eq!(r.call(&["GETRANGE", "none", "x", "-1"]), NOT_INT);
    assert_eq!(r.call(&["SET", "empty", ""]), "+OK\r\n");
    assert_eq!(r.call(&["GETRANGE", "empty", "0", "-1"]), "$0\r\n\r\n");
    assert_eq!(r.call(&["GETRANGE", "empty", "-1", "0"]), "$0\r\n\r\n");
    assert_eq!(r.call(&["SET", "n", "-123"]), "+OK\r\n");
    assert_eq!(r.call(&["GETRANGE", "n", "0", "1"]), bulk("-1"));
    assert_eq!(r.call(&["GETRANGE", "n", "-2", "-1"]), bulk("23"));
    assert_eq!(
        r.call(&["SUBSTR", "s", "1"]),
        "-ERR wrong number of arguments for 'substr' command\r\n"
    );
    assert_eq!(call_bin(&mut r, &[b"SET", b"b", b"a\0b\r\nc"]), b"+OK\r\n");
    assert_eq!(
        call_bin(&mut r, &[b"GETRANGE", b"b", b"1", b"4"]),
        b"$4\r\n\0b\r\n\r\n"
    );
    let mut c = srv.client();
    let v: String = c.getrange("s", 1, -2).unwrap();
    assert_eq!(v, "ell");
}

#[test]
fn setrange() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SETRANGE", "k", "5", "hi"]), ":7\r\n");
    assert_eq!(r.call(&["GET", "k"]), "$7\r\n\0\0\0\0\0hi\r\n");
    assert_eq!(r.call(&["SETRANGE", "k", "0", "HE"]), ":7\r\n");
    assert_eq!(r.call(&["SETRANGE", "k", "6", "ya"]), ":8\r\n");
    assert_eq!(r.call(&["GET", "k"]), "$8\r\nHE\0\0\0hya\r\n");
    // An empty value writes nothing, whatever the offset.
    assert_eq!(r.call(&["SETRANGE", "k", "100", ""]), ":8\r\n");
    assert_eq!(r.call(&["SETRANGE", "k", "99999999999", ""]), ":8\r\n");
    assert_eq!(r.call(&["SETRANGE", "new", "10", ""]), ":0\r\n");
    assert_eq!(r.call(&["GET", "new"]), "$-1\r\n");
    assert_eq!(
        r.call(&["SETRANGE", "k", "-1", "x"]),
        "-ERR offset is out of range\r\n"
    );
    assert_eq!(
        r.call(&["SETRANGE", "k", "-1", ""]),
        "-ERR offset is out of range\r\n"
    );
    assert_eq!(r.call(&["SETRANGE", "k", "x", "x"]), NOT_INT);
    assert_eq!(
        r.call(&["SETRANGE", "k", "99999999999999999999", "x"]),
        NOT_INT
    );
    // 512mb is the default proto-max-bulk-len.
    assert_eq!(r.call(&["SETRANGE", "k", "536870912", "x"]), TOO_BIG);
    assert_eq!(
        r.call(&["SETRANGE", "k", "9223372036854775807", "x"]),
        TOO_BIG
    );
    assert_eq!(r.call(&["SETRANGE", "new", "536870912", "x"]), TOO_BIG);
    assert_eq!(r.call(&["GET", "new"]), "$-1\r\n");
    // Integers are edited as text, and can become integers again.
    assert_eq!(r.call(&["SET", "n", "5"]), "+OK\r\n");
    assert_eq!(r.call(&["SETRANGE", "n", "1", "0"]), ":2\r\n");
    assert_eq!(r.call(&["INCR", "n"]), ":51\r\n");
    assert_eq!(r.call(&["SETRANGE", "n", "0", "a"]), ":2\r\n");
    assert_eq!(r.call(&["INCR", "n"]), NOT_INT);
    assert_eq!(
        call_bin(&mut r, &[b"SETRANGE", b"bin", b"1", b"\0\xff"]),
        b":3\r\n"
    );
    assert_eq!(call_bin(&mut r, &[b"GET", b"bin"]), b"$3\r\n\0\0\xff\r\n");
    let mut c = srv.client();
    let len: usize = c.setrange("c", 2, "xy").unwrap();
    assert_eq!(len, 4);
}

#[test]
fn size_limits_follow_proto_max_bulk_len() {
    let srv = Server::with_args(&["--proto-max-bulk-len", "1mb"]);
    let mut r = srv.raw();
    let limit = 1024 * 1024;
    assert_eq!(r.call(&["SETRANGE", "k", "1048576", "x"]), TOO_BIG);
    assert_eq!(r.call(&["SETRANGE", "k", "1048575", "x"]), ":1048576\r\n");
    assert_eq!(r.call(&["APPEND", "k", "y"]), TOO_BIG);
    assert_eq!(r.call(&["STRLEN", "k"]), format!(":{limit}\r\n"));
    let half = vec![b'a'; limit / 2];
    assert_eq!(
        call_bin(&mut r, &[b"APPEND", b"h", &half]),
        format!(":{}\r\n", limit / 2).as_bytes()
    );
    assert_eq!(
        call_bin(&mut r, &[b"APPEND", b"h", &half]),
        format!(":{limit}\r\n").as_bytes()
    );
    assert_eq!(r.call(&["APPEND", "h", "z"]), TOO_BIG);
    // LCS's table would need (600+1)^2 * 4 bytes, more than the limit.
    let s = vec![b'a'; 600];
    assert_eq!(call_bin(&mut r, &[b"SET", b"l1", &s]), b"+OK\r\n");
    assert_eq!(call_bin(&mut r, &[b"SET", b"l2", &s]), b"+OK\r\n");
    assert_eq!(
        r.call(&["LCS", "l1", "l2"]),
        "-ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len\r\n"
    );
    assert_eq!(call_bin(&mut r, &[b"SET", b"l2", &s[..400]]), b"+OK\r\n");
    assert_eq!(r.call(&["LCS", "l1", "l2", "LEN"]), ":400\r\n");
}

#[test]
fn incr_family() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["INCR", "i"]), ":1\r\n");
    assert_eq!(r.call(&["DECR", "d"]), ":-1\r\n");
    assert_eq!(r.call(&["INCRBY", "i", "10"]), ":11\r\n");
    assert_eq!(r.call(&["INCRBY", "i", "-20"]), ":-9\r\n");
    assert_eq!(r.call(&["DECRBY", "i", "5"]), ":-14\r\n");
    assert_eq!(r.call(&["DECRBY", "i", "-4"]), ":-10\r\n");
    assert_eq!(r.call(&["DECR", "i"]), ":-11\r\n");
    assert_eq!(r.call(&["GET", "i"]), bulk("-11"));
    for bad in [
        "x",
        "1.5",
        "+1",
        " 1",
        "1 ",
        "01",
        "",
        "9223372036854775808",
    ] {
        assert_eq!(r.call(&["INCRBY", "i", bad]), NOT_INT, "{bad:?}");
        assert_eq!(r.call(&["DECRBY", "i", bad]), NOT_INT, "{bad:?}");
    }
    assert_eq!(
        r.call(&["DECRBY", "i", "-9223372036854775808"]),
        "-ERR decrement would overflow\r\n"
    );
    let overflow = "-ERR increment or decrement would overflow\r\n";
    assert_eq!(r.call(&["SET", "max", "9223372036854775807"]), "+OK\r\n");
    assert_eq!(r.call(&["INCR", "max"]), overflow);
    assert_eq!(r.call(&["INCRBY", "max", "1"]), overflow);
    assert_eq!(r.call(&["DECRBY", "max", "-1"]), overflow);
    assert_eq!(r.call(&["GET", "max"]), bulk("9223372036854775807"));
    assert_eq!(r.call(&["SET", "min", "-9223372036854775808"]), "+OK\r\n");
    assert_eq!(r.call(&["DECR", "min"]), overflow);
    assert_eq!(r.call(&["INCRBY", "min", "-1"]), overflow);
    assert_eq!(r.call(&["INCRBY", "min", "9223372036854775807"]), ":-1\r\n");
    assert_eq!(
        r.call(&["INCRBY", "z", "-9223372036854775808"]),
        ":-9223372036854775808\r\n"
    );
    // Only canonical integers count.
    for text in ["abc", " 1", "1 ", "01", "+1", "1.0", "", "-0", "1e3"] {
        assert_eq!(r.call(&["SET", "t", text]), "+OK\r\n");
        assert_eq!(r.call(&["INCR", "t"]), NOT_INT, "{text:?}");
        assert_eq!(r.call(&["GET", "t"]), bulk(text), "left alone");
    }
    assert_eq!(
        r.call(&["INCR"]),
        "-ERR wrong number of arguments for 'incr' command\r\n"
    );
    assert_eq!(
        r.call(&["INCRBY", "i"]),
        "-ERR wrong number of arguments for 'incrby' command\r\n"
    );
    let mut c = srv.client();
    let n: isize = c.incr("c", 5).unwrap();
    assert_eq!(n, 5);
    let n: isize = c.decr("c", 7).unwrap();
    assert_eq!(n, -2);
    let s: String = c.get("c").unwrap();
    assert_eq!(s, "-2");
}

#[test]
fn incrbyfloat_matches_redis_text() {
    let srv = Server::start();
    let mut r = srv.raw();
    // From an absent key: the text Redis (x87 long double, %.17Lf) writes.
    let fresh = [
        ("0.1", "0.1"),
        ("10000.1", "10000.09999999999999964"),
        ("100000.1", "100000.10000000000000142"),
        ("1e5", "100000"),
        ("5.0e3", "5000"),
        ("1.5e20", "150000000000000000000"),
        ("-0.0", "0"),
        ("0x10", "16"),
        ("1e-20", "0"),
        ("3.14159265358979323846264", "3.14159265358979324"),
        (".5", "0.5"),
        ("5.", "5"),
        ("+.5e+3", "500"),
        ("0x1.8p1", "3"),
        ("-1e-17", "-0.00000000000000001"),
        ("-5e-18", "0"),
        ("1.5e-17", "0.00000000000000002"),
        (
            "123456789012345678901234567890",
            "123456789012345678899921813504",
        ),
        ("18446744073709551617", "18446744073709551616"),
    ];
    for (i, (incr, want)) in fresh.iter().enumerate() {
        let key = format!("f{i}");
        assert_eq!(r.call(&["INCRBYFLOAT", &key, incr]), bulk(want), "{incr}");
        assert_eq!(r.call(&["GET", &key]), bulk(want));
    }
    // 1e400 is finite in long double.
    let big = r.call(&["INCRBYFLOAT", "big", "1e400"]);
    assert!(big.starts_with("$401\r\n10000000000000000000281880683947586514586453433629"));
    let steps = [
        ("a", "10.5", "10.5"),
        ("a", "0.1", "10.6"),
        ("a", "-5.0e3", "-4989.39999999999999991"),
        ("b", "0.1", "0.1"),
        ("b", "0.2", "0.3"),
        ("c", "1.1", "1.1"),
        ("c", "1e30", "1000000000000000000024696061952"),
        ("d", "123.456", "123.456"),
        ("d", "-1000000.789", "-999877.33299999999996999"),
        ("e", "1e4000", ""),
        ("e", "-1e4000", "0"),
    ];
    for (key, incr, want) in steps {
        let got = r.call(&["INCRBYFLOAT", key, incr]);
        if !want.is_empty() {
            assert_eq!(got, bulk(want), "{key} += {incr}");
        }
    }
    let mut tenths = Vec::new();
    for _ in 0..10 {
        tenths.push(r.call(&["INCRBYFLOAT", "tenths", "0.1"]));
    }
    let want: Vec<String> = [
        "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1",
    ]
    .iter()
    .map(|s| bulk(s))
    .collect();
    assert_eq!(tenths, want);
    // Stored integers and integer results.
    assert_eq!(r.call(&["SET", "i", "9223372036854775807"]), "+OK\r\n");
    assert_eq!(
        r.call(&["INCRBYFLOAT", "i", "1"]),
        bulk("9223372036854775808")
    );
    assert_eq!(r.call(&["SET", "j", "-3"]), "+OK\r\n");
    assert_eq!(r.call(&["INCRBYFLOAT", "j", "0.5"]), bulk("-2.5"));
    assert_eq!(r.call(&["INCRBYFLOAT", "j", "2.5"]), bulk("0"));
    assert_eq!(r.call(&["INCR", "j"]), ":1\r\n");

    // Errors leave the value alone.
    let nan_inf = "-ERR increment would produce NaN or Infinity\r\n";
    for bad in [
        "abc", "nan", "", " 1", "1 ", "1e", "0x", "1e5000", "1e-5000", "1,5", "-", ".",
    ] {
        assert_eq!(r.call(&["INCRBYFLOAT", "a", bad]), NOT_FLOAT, "{bad:?}");
    }
    assert_eq!(
        call_bin(&mut r, &[b"INCRBYFLOAT", b"a", b"1\x002"]),
        NOT_FLOAT.as_bytes()
    );
    assert_eq!(r.call(&["INCRBYFLOAT", "a", "inf"]), nan_inf);
    assert_eq!(r.call(&["INCRBYFLOAT", "a", "-infinity"]), nan_inf);
    assert_eq!(
        r.call(&["SET", "max", "1.18973149535723176502e+4932"]),
        "+OK\r\n"
    );
    assert_eq!(
        r.call(&["INCRBYFLOAT", "max", "1.18973149535723176502e+4932"]),
        nan_inf
    );
    assert_eq!(r.call(&["GET", "a"]), bulk("-4989.39999999999999991"));
    assert_eq!(r.call(&["SET", "s", "abc"]), "+OK\r\n");
    assert_eq!(r.call(&["INCRBYFLOAT", "s", "1"]), NOT_FLOAT);
    assert_eq!(r.call(&["SET", "s", "inf"]), "+OK\r\n");
    assert_eq!(r.call(&["INCRBYFLOAT", "s", "1"]), nan_inf);
    assert_eq!(
        r.call(&["INCRBYFLOAT", "s"]),
        "-ERR wrong number of arguments for 'incrbyfloat' command\r\n"
    );
    // RESP3 still answers a bulk string.
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(r.call(&["INCRBYFLOAT", "r3", "1.5"]), bulk("1.5"));

    let mut c = srv.client();
    let v: f64 = redis::cmd("INCRBYFLOAT")
        .arg("cf")
        .arg(2.25)
        .query(&mut c)
        .unwrap();
    assert_eq!(v, 2.25);
}

#[test]
fn lcs() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["MSET", "a", "ohmytext", "b", "mynewtext"]),
        "+OK\r\n"
    );
    assert_eq!(r.call(&["LCS", "a", "b"]), bulk("mytext"));
    assert_eq!(r.call(&["LCS", "a", "b", "LEN"]), ":6\r\n");
    assert_eq!(
        r.call(&["LCS", "a", "b", "IDX"]),
        "*4\r\n$7\r\nmatches\r\n*2\r\n\
         *2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n\
         *2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n\
         $3\r\nlen\r\n:6\r\n"
    );
    let with_len = "*4\r\n$7\r\nmatches\r\n*2\r\n\
         *3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
         *3\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n:2\r\n\
         $3\r\nlen\r\n:6\r\n";
    assert_eq!(r.call(&["LCS", "a", "b", "IDX", "WITHMATCHLEN"]), with_len);
    assert_eq!(
        r.call(&["LCS", "a", "b", "idx", "minmatchlen", "-4", "withmatchlen"]),
        with_len
    );
    assert_eq!(
        r.call(&["LCS", "a", "b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"]),
        "*4\r\n$7\r\nmatches\r\n*1\r\n\
         *3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
         $3\r\nlen\r\n:6\r\n"
    );
    // MINMATCHLEN without IDX changes nothing.
    assert_eq!(
        r.call(&["LCS", "a", "b", "MINMATCHLEN", "100"]),
        bulk("mytext")
    );
    assert_eq!(
        r.call(&["LCS", "a", "b", "IDX", "MINMATCHLEN", "x"]),
        NOT_INT
    );
    assert_eq!(r.call(&["LCS", "a", "b", "MINMATCHLEN"]), SYNTAX);
    assert_eq!(r.call(&["LCS", "a", "b", "FOO"]), SYNTAX);
    assert_eq!(
        r.call(&["LCS", "a", "b", "LEN", "IDX"]),
        "-ERR If you want both the length and indexes, please just use IDX.\r\n"
    );
    assert_eq!(
        r.call(&["LCS", "a"]),
        "-ERR wrong number of arguments for 'lcs' command\r\n"
    );
    // Missing keys are empty strings.
    assert_eq!(r.call(&["LCS", "a", "none"]), "$0\r\n\r\n");
    assert_eq!(r.call(&["LCS", "none", "none2", "LEN"]), ":0\r\n");
    assert_eq!(
        r.call(&["LCS", "none", "a", "IDX"]),
        "*4\r\n$7\r\nmatches\r\n*0\r\n$3\r\nlen\r\n:0\r\n"
    );
    assert_eq!(r.call(&["LCS", "a", "a"]), bulk("ohmytext"));
    assert_eq!(
        r.call(&["LCS", "a", "a", "IDX", "WITHMATCHLEN"]),
        "*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:0\r\n:7\r\n*2\r\n:0\r\n:7\r\n:8\r\n\
         $3\r\nlen\r\n:8\r\n"
    );
    assert_eq!(
        r.call(&["MSET", "l1", "abcdefgh", "l2", "xxabyycdefzzgh"]),
        "+OK\r\n"
    );
    assert_eq!(
        r.call(&["LCS", "l1", "l2", "IDX", "WITHMATCHLEN"]),
        "*4\r\n$7\r\nmatches\r\n*3\r\n\
         *3\r\n*2\r\n:6\r\n:7\r\n*2\r\n:12\r\n:13\r\n:2\r\n\
         *3\r\n*2\r\n:2\r\n:5\r\n*2\r\n:6\r\n:9\r\n:4\r\n\
         *3\r\n*2\r\n:0\r\n:1\r\n*2\r\n:2\r\n:3\r\n:2\r\n\
         $3\r\nlen\r\n:8\r\n"
    );
    // Integers are compared as their text; binary bytes are bytes.
    assert_eq!(r.call(&["MSET", "i1", "12345", "i2", "2345"]), "+OK\r\n");
    assert_eq!(r.call(&["LCS", "i1", "i2"]), bulk("2345"));
    assert_eq!(
        call_bin(
            &mut r,
            &[b"MSET", b"x", b"\0a\xffb\r\n", b"y", b"a\0\xff\r"]
        ),
        b"+OK\r\n"
    );
    assert_eq!(
        call_bin(&mut r, &[b"LCS", b"x", b"y"]),
        b"$3\r\na\xff\r\r\n"
    );
    // RESP3: IDX is a map.
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(
        r.call(&["LCS", "a", "b", "IDX", "MINMATCHLEN", "100"]),
        "%2\r\n$7\r\nmatches\r\n*0\r\n$3\r\nlen\r\n:6\r\n"
    );

    let mut c = srv.client();
    let s: String = redis::cmd("LCS").arg("a").arg("b").query(&mut c).unwrap();
    assert_eq!(s, "mytext");
}

#[test]
fn resp3_nulls() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(r.call(&["SET", "a", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["GETEX", "none"]), "_\r\n");
    assert_eq!(r.call(&["GETDEL", "none"]), "_\r\n");
    assert_eq!(r.call(&["GETSET", "none", "v"]), "_\r\n");
    assert_eq!(r.call(&["SET", "a", "2", "NX"]), "_\r\n");
    assert_eq!(r.call(&["SET", "new", "2", "GET"]), "_\r\n");
    assert_eq!(r.call(&["MGET", "a", "zz"]), "*2\r\n$1\r\n1\r\n_\r\n");
}

//! Hash commands. Every expected raw reply below was checked against redis-server 7.0.15.
//! WRONGTYPE across types and durability are covered in `lists.rs`.

use std::collections::{HashMap, HashSet};

use redis::Commands;

use crate::util::Server;

const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
const NOT_FLOAT: &str = "-ERR value is not a valid float\r\n";
const SYNTAX: &str = "-ERR syntax error\r\n";

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

#[test]
fn set_get_delete() {
    let srv = Server::start();
    let mut r = srv.raw();
    for argv in [
        &["HSET", "h"][..],
        &["HSET", "h", "f"],
        &["HSET", "h", "f", "v", "g"],
    ] {
        assert_eq!(
            r.call(argv),
            "-ERR wrong number of arguments for 'hset' command\r\n"
        );
    }
    assert_eq!(
        r.call(&["HMSET", "h", "f", "v", "g"]),
        "-ERR wrong number of arguments for 'hmset' command\r\n"
    );
    assert_eq!(r.call(&["EXISTS", "h"]), ":0\r\n");
    assert_eq!(r.call(&["HSET", "h", "f", "v", "g", "w"]), ":2\r\n");
    assert_eq!(r.call(&["HSET", "h", "f", "v2"]), ":0\r\n");
    // A field given twice counts once and keeps its last value.
    assert_eq!(
        r.call(&["HSET", "h", "a", "1", "a", "2", "g", "w2"]),
        ":1\r\n"
    );
    assert_eq!(r.call(&["HGET", "h", "a"]), bulk("2"));
    assert_eq!(r.call(&["HSETNX", "h", "f", "x"]), ":0\r\n");
    assert_eq!(r.call(&["HSETNX", "h", "n", "x"]), ":1\r\n");
    assert_eq!(r.call(&["HSETNX", "new", "n", "x"]), ":1\r\n");
    assert_eq!(r.call(&["HMSET", "h", "b", "1", "c", ""]), "+OK\r\n");
    assert_eq!(r.call(&["HGET", "h", "f"]), bulk("v2"));
    assert_eq!(r.call(&["HGET", "h", "c"]), bulk(""));
    assert_eq!(r.call(&["HGET", "h", "zz"]), "$-1\r\n");
    assert_eq!(r.call(&["HGET", "none", "f"]), "$-1\r\n");
    assert_eq!(
        r.call(&["HMGET", "h", "f", "zz", "a"]),
        format!("*3\r\n{}$-1\r\n{}", bulk("v2"), bulk("2"))
    );
    assert_eq!(r.call(&["HMGET", "none", "a", "b"]), "*2\r\n$-1\r\n$-1\r\n");
    assert_eq!(r.call(&["HLEN", "h"]), ":6\r\n");
    assert_eq!(r.call(&["HLEN", "none"]), ":0\r\n");
    assert_eq!(r.call(&["HSTRLEN", "h", "f"]), ":2\r\n");
    assert_eq!(r.call(&["HSTRLEN", "h", "zz"]), ":0\r\n");
    assert_eq!(r.call(&["HSTRLEN", "none", "f"]), ":0\r\n");
    assert_eq!(r.call(&["HEXISTS", "h", "c"]), ":1\r\n");
    assert_eq!(r.call(&["HEXISTS", "h", "zz"]), ":0\r\n");
    assert_eq!(r.call(&["HEXISTS", "none", "f"]), ":0\r\n");
    assert_eq!(r.call(&["HDEL", "h", "zz"]), ":0\r\n");
    assert_eq!(r.call(&["HDEL", "h", "a", "b", "a", "zz"]), ":2\r\n");
    assert_eq!(r.call(&["HDEL", "none", "a"]), ":0\r\n");
    assert_eq!(r.call(&["HDEL", "h", "f", "g", "n", "c"]), ":4\r\n");
    assert_eq!(r.call(&["EXISTS", "h"]), ":0\r\n");
    assert_eq!(r.call(&["HKEYS", "none"]), "*0\r\n");
    assert_eq!(r.call(&["HVALS", "none"]), "*0\r\n");
    assert_eq!(r.call(&["HGETALL", "none"]), "*0\r\n");

    let mut c = srv.client();
    let binary: Vec<u8> = (0..=255u8).collect();
    let _: i64 = c.hset("bin", &binary[..], &binary[..]).unwrap();
    let _: i64 = c.hset("bin", "x", "1").unwrap();
    let back: Vec<u8> = c.hget("bin", &binary[..]).unwrap();
    assert_eq!(back, binary);
    let all: HashMap<Vec<u8>, Vec<u8>> = c.hgetall("bin").unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[&binary], binary);
    let mut keys: Vec<Vec<u8>> = c.hkeys("bin").unwrap();
    keys.sort();
    assert_eq!(keys, vec![binary.clone(), b"x".to_vec()]);
    let mut vals: Vec<Vec<u8>> = c.hvals("bin").unwrap();
    vals.sort();
    assert_eq!(vals, vec![binary, b"1".to_vec()]);
}

#[test]
fn getall_is_a_map_in_resp3() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["HSET", "h", "a", "1"]), ":1\r\n");
    assert_eq!(
        r.call(&["HGETALL", "h"]),
        format!("*2\r\n{}{}", bulk("a"), bulk("1"))
    );
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(
        r.call(&["HGETALL", "h"]),
        format!("%1\r\n{}{}", bulk("a"), bulk("1"))
    );
    assert_eq!(r.call(&["HGETALL", "none"]), "%0\r\n");
    assert_eq!(r.call(&["HKEYS", "h"]), format!("*1\r\n{}", bulk("a")));
    assert_eq!(r.call(&["HGET", "h", "zz"]), "_\r\n");
    assert_eq!(
        r.call(&["HMGET", "h", "zz", "a"]),
        format!("*2\r\n_\r\n{}", bulk("1"))
    );
}

#[test]
fn incrby_and_incrbyfloat() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["HINCRBY", "h", "c", "5"]), ":5\r\n");
    assert_eq!(r.call(&["HINCRBY", "h", "c", "-7"]), ":-2\r\n");
    assert_eq!(r.call(&["HGET", "h", "c"]), bulk("-2"));
    assert_eq!(r.call(&["HINCRBY", "h", "c", "x"]), NOT_INT);
    assert_eq!(r.call(&["HINCRBY", "h", "c", "+1"]), NOT_INT);
    assert_eq!(
        r.call(&["HINCRBY", "h", "c", "9223372036854775807"]),
        ":9223372036854775805\r\n"
    );
    let overflow = "-ERR increment or decrement would overflow\r\n";
    assert_eq!(r.call(&["HINCRBY", "h", "c", "3"]), overflow);
    assert_eq!(
        r.call(&["HINCRBY", "h", "n", "-9223372036854775808"]),
        ":-9223372036854775808\r\n"
    );
    assert_eq!(r.call(&["HINCRBY", "h", "n", "-1"]), overflow);
    let not_int = "-ERR hash value is not an integer\r\n";
    assert_eq!(r.call(&["HSET", "h", "s", "abc"]), ":1\r\n");
    for value in ["abc", " 1", "007", "", "1.0", "-0"] {
        assert_eq!(r.call(&["HSET", "h", "s", value]), ":0\r\n");
        assert_eq!(r.call(&["HINCRBY", "h", "s", "1"]), not_int, "{value:?}");
    }
    assert_eq!(r.call(&["HSET", "h", "s", "abc"]), ":0\r\n");

    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "d", "10.5"]), bulk("10.5"));
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "d", "0.1"]), bulk("10.6"));
    assert_eq!(
        r.call(&["HINCRBYFLOAT", "h", "e", "10000.1"]),
        bulk("10000.09999999999999964")
    );
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "f", "0.1"]), bulk("0.1"));
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "f", "0.2"]), bulk("0.3"));
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "g", "5.0e3"]), bulk("5000"));
    assert_eq!(r.call(&["HSET", "h", "hex", "0x10"]), ":1\r\n");
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "hex", "1"]), bulk("17"));
    assert_eq!(
        r.call(&["HINCRBYFLOAT", "h", "c", "1"]),
        bulk("9223372036854775806")
    );
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "d", "x"]), NOT_FLOAT);
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "d", " 1"]), NOT_FLOAT);
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "d", "nan"]), NOT_FLOAT);
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "d", "1.2e4932"]), NOT_FLOAT);
    let nan_inf = "-ERR value is NaN or Infinity\r\n";
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "d", "inf"]), nan_inf);
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "d", "-inf"]), nan_inf);
    assert_eq!(
        r.call(&["HINCRBYFLOAT", "h", "s", "1"]),
        "-ERR hash value is not a float\r\n"
    );
    let would = "-ERR increment would produce NaN or Infinity\r\n";
    assert_eq!(r.call(&["HSET", "h", "x", "1e4932"]), ":1\r\n");
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "x", "1e4932"]), would);
    assert_eq!(r.call(&["HSET", "h", "y", "inf"]), ":1\r\n");
    assert_eq!(r.call(&["HINCRBYFLOAT", "h", "y", "1"]), would);
    // The extended range of long double, as Redis.
    let big = r.call(&["HINCRBYFLOAT", "h", "z", "1.1e4932"]);
    assert!(
        big.starts_with("$4933\r\n10999999999999999999"),
        "{}",
        &big[..40]
    );
    // Argument errors come before the type check.
    assert_eq!(r.call(&["SET", "str", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["HINCRBY", "str", "f", "x"]), NOT_INT);
    assert_eq!(r.call(&["HINCRBYFLOAT", "str", "f", "x"]), NOT_FLOAT);
    assert_eq!(r.call(&["HINCRBYFLOAT", "str", "f", "inf"]), nan_inf);
}

#[test]
fn hash_writes_keep_the_ttl() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["HSET", "h", "a", "1", "b", "2"]), ":2\r\n");
    assert_eq!(r.call(&["EXPIRE", "h", "1000"]), ":1\r\n");
    for cmd in [
        &["HSET", "h", "c", "3"][..],
        &["HMSET", "h", "a", "9"],
        &["HSETNX", "h", "d", "4"],
        &["HDEL", "h", "b"],
        &["HINCRBY", "h", "n", "1"],
        &["HINCRBYFLOAT", "h", "n", "1.5"],
    ] {
        assert!(!r.call(cmd).starts_with('-'), "{cmd:?}");
        assert_eq!(r.call(&["TTL", "h"]), ":1000\r\n", "after {cmd:?}");
    }
    assert_eq!(r.call(&["HLEN", "h"]), ":4\r\n");
}

#[test]
fn randfield() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["HRANDFIELD", "h"]), "$-1\r\n");
    assert_eq!(r.call(&["HRANDFIELD", "h", "1"]), "*0\r\n");
    assert_eq!(r.call(&["HRANDFIELD", "h", "-1", "WITHVALUES"]), "*0\r\n");
    assert_eq!(r.call(&["HRANDFIELD", "h", "x"]), NOT_INT);
    assert_eq!(r.call(&["HRANDFIELD", "h", "1", "FOO"]), SYNTAX);
    assert_eq!(r.call(&["HRANDFIELD", "h", "1", "WITHVALUES", "x"]), SYNTAX);
    assert_eq!(
        r.call(&["HRANDFIELD", "h", "-9223372036854775808"]),
        "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
    );
    let range = "-ERR value is out of range\r\n";
    assert_eq!(
        r.call(&["HRANDFIELD", "h", "-4611686018427387904", "WITHVALUES"]),
        range
    );
    assert_eq!(
        r.call(&["HRANDFIELD", "h", "4611686018427387904", "WITHVALUES"]),
        range
    );
    // Redis would try to build this reply and run out of memory; dse refuses it.
    assert_eq!(r.call(&["HRANDFIELD", "h", "-9223372036854775807"]), range);

    assert_eq!(
        r.call(&["HSET", "h", "a", "1", "b", "2", "c", "3"]),
        ":3\r\n"
    );
    let one = r.call(&["HRANDFIELD", "h"]);
    assert!([bulk("a"), bulk("b"), bulk("c")].contains(&one), "{one}");
    assert_eq!(r.call(&["HRANDFIELD", "h", "0"]), "*0\r\n");
    assert_eq!(r.call(&["HRANDFIELD", "h", "0", "WITHVALUES"]), "*0\r\n");

    let mut c = srv.client();
    let all: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 3);
    for _ in 0..20 {
        let two: Vec<String> = redis::cmd("HRANDFIELD")
            .arg("h")
            .arg(2)
            .query(&mut c)
            .unwrap();
        assert_eq!(two.len(), 2);
        assert_ne!(two[0], two[1], "positive counts give distinct fields");
    }
    let repeats: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(-50)
        .query(&mut c)
        .unwrap();
    assert_eq!(repeats.len(), 50);
    assert!(
        repeats
            .iter()
            .all(|f| ["a", "b", "c"].contains(&f.as_str()))
    );
    assert!(repeats.iter().collect::<HashSet<_>>().len() > 1);
    let pairs: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(-4)
        .arg("WITHVALUES")
        .query(&mut c)
        .unwrap();
    assert_eq!(pairs.len(), 8);
    for pair in pairs.chunks(2) {
        let expected = match pair[0].as_str() {
            "a" => "1",
            "b" => "2",
            _ => "3",
        };
        assert_eq!(pair[1], expected);
    }
    // Large hashes: distinct draws of every size.
    let fields: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("f{i}"), format!("v{i}")))
        .collect();
    let _: () = c.hset_multiple("big", &fields).unwrap();
    for n in [1, 10, 400, 999, 1000, 5000] {
        let got: Vec<String> = redis::cmd("HRANDFIELD")
            .arg("big")
            .arg(n)
            .query(&mut c)
            .unwrap();
        assert_eq!(got.len(), n.min(1000));
        assert_eq!(got.iter().collect::<HashSet<_>>().len(), n.min(1000));
    }

    // RESP3: WITHVALUES gives [field, value] pairs.
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(r.call(&["HRANDFIELD", "none"]), "_\r\n");
    assert_eq!(r.call(&["HRANDFIELD", "none", "1", "WITHVALUES"]), "*0\r\n");
    let three = r.call(&["HRANDFIELD", "h", "3", "WITHVALUES"]);
    assert!(three.starts_with("*3\r\n*2\r\n$1\r\n"), "{three}");
    for pair in [
        "*2\r\n$1\r\na\r\n$1\r\n1\r\n",
        "*2\r\n$1\r\nb\r\n$1\r\n2\r\n",
        "*2\r\n$1\r\nc\r\n$1\r\n3\r\n",
    ] {
        assert!(three.contains(pair), "{three}");
    }
    let repeated = r.call(&["HRANDFIELD", "h", "-2", "WITHVALUES"]);
    assert!(repeated.starts_with("*2\r\n*2\r\n"), "{repeated}");
}

#[test]
fn scan_small_hashes_whole() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["HSET", "h", "a", "1", "b", "2", "ab", "3"]),
        ":3\r\n"
    );
    let whole = r.call(&["HSCAN", "h", "0"]);
    assert!(whole.starts_with("*2\r\n$1\r\n0\r\n*6\r\n"), "{whole}");
    assert_eq!(
        r.call(&["HSCAN", "h", "0", "MATCH", "b*"]),
        format!("*2\r\n$1\r\n0\r\n*2\r\n{}{}", bulk("b"), bulk("2"))
    );
    // Any cursor gets the whole hash, as Redis does for listpack-encoded hashes.
    assert!(
        r.call(&["HSCAN", "h", "5"])
            .starts_with("*2\r\n$1\r\n0\r\n*6\r\n")
    );
    assert!(
        r.call(&["HSCAN", "h", "-1", "COUNT", "1"])
            .starts_with("*2\r\n$1\r\n0\r\n*6\r\n")
    );
    assert_eq!(r.call(&["HSCAN", "none", "0"]), "*2\r\n$1\r\n0\r\n*0\r\n");
    // Options are read only once the key is found.
    assert_eq!(
        r.call(&["HSCAN", "none", "0", "FOO"]),
        "*2\r\n$1\r\n0\r\n*0\r\n"
    );
    assert_eq!(r.call(&["HSCAN", "h", "0", "COUNT", "0"]), SYNTAX);
    assert_eq!(r.call(&["HSCAN", "h", "0", "COUNT", "x"]), NOT_INT);
    assert_eq!(r.call(&["HSCAN", "h", "0", "MATCH"]), SYNTAX);
    assert_eq!(r.call(&["HSCAN", "h", "0", "NOVALUES"]), SYNTAX);
    assert_eq!(r.call(&["HSCAN", "h", "0", "TYPE", "string"]), SYNTAX);
    let invalid = "-ERR invalid cursor\r\n";
    assert_eq!(r.call(&["HSCAN", "h", "x"]), invalid);
    assert_eq!(r.call(&["HSCAN", "none", "18446744073709551616"]), invalid);
}

/// One HSCAN call: (next cursor, fields and values).
fn hscan(
    c: &mut redis::Connection,
    key: &str,
    cursor: u64,
    count: usize,
) -> (u64, Vec<(String, String)>) {
    let (next, flat): (String, Vec<String>) = redis::cmd("HSCAN")
        .arg(key)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query(c)
        .unwrap();
    let pairs = flat
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    (next.parse().unwrap(), pairs)
}

#[test]
fn scan_large_hash_in_pieces_despite_churn() {
    let srv = Server::start();
    let mut c = srv.client();
    let stable: Vec<(String, String)> = (0..3000)
        .map(|i| (format!("stable{i}"), format!("v{i}")))
        .collect();
    let _: () = c.hset_multiple("h", &stable).unwrap();
    let mut seen: HashMap<String, String> = HashMap::new();
    let (mut cursor, mut calls, mut round) = (0u64, 0, 0);
    loop {
        let (next, pairs) = hscan(&mut c, "h", cursor, 20);
        calls += 1;
        // Bounded pieces: COUNT (or a small fraction of the hash), never the whole hash.
        assert!(pairs.len() <= 40, "a piece of {} fields", pairs.len());
        for (f, v) in pairs {
            seen.insert(f, v);
        }
        // Churn between calls: the table grows and shrinks, fields come and go.
        let added: Vec<(String, String)> = (0..60)
            .map(|j| (format!("churn{round}-{j}"), "x".to_string()))
            .collect();
        let _: () = c.hset_multiple("h", &added).unwrap();
        let doomed: Vec<&String> = added.iter().step_by(2).map(|(f, _)| f).collect();
        let _: i64 = c.hdel("h", doomed).unwrap();
        round += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
        assert!(calls < 10_000, "the scan does not end");
    }
    assert!(calls > 10, "a large hash comes in pieces ({calls} calls)");
    for (f, v) in &stable {
        assert_eq!(seen.get(f), Some(v), "missed {f}");
    }
    // MATCH filters each piece.
    let mut matched = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, flat): (String, Vec<String>) = redis::cmd("HSCAN")
            .arg("h")
            .arg(cursor)
            .arg("MATCH")
            .arg("stable1*")
            .query(&mut c)
            .unwrap();
        for p in flat.chunks(2) {
            assert!(p[0].starts_with("stable1"));
            matched.insert(p[0].clone());
        }
        cursor = next.parse().unwrap();
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(matched.len(), 1111);
}

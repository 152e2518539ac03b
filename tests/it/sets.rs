//! Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SMISMEMBER, SCARD, SPOP, SRANDMEMBER,
//! SMOVE, SINTER, SINTERCARD, SINTERSTORE, SUNION, SUNIONSTORE, SDIFF, SDIFFSTORE, SSCAN;
//! sets through the keyspace commands; durability of sets and sorted sets across a crash
//! and across a snapshot. Expected raw replies were checked against redis-server 7.0.15
//! (7.2's where they differ: sets of up to 128 strings report the `listpack` encoding).

use std::collections::{BTreeSet, HashSet};

use redis::Commands;

use crate::util::{Raw, Server};

pub const WRONGTYPE: &str =
    "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
const SYNTAX: &str = "-ERR syntax error\r\n";
const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";

/// The bulk strings of a flat array or set reply, in order.
pub fn bulks(reply: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = reply.split("\r\n");
    while let Some(line) = lines.next() {
        if line.starts_with('$') && line != "$-1" {
            out.push(lines.next().unwrap_or_default().to_string());
        }
    }
    out
}

fn sorted(items: Vec<String>) -> Vec<String> {
    let mut items = items;
    items.sort();
    items
}

/// The raw reply of a set of bulk strings, in the given order.
fn set_reply(prefix: char, items: &[&str]) -> String {
    let mut s = format!("{prefix}{}\r\n", items.len());
    for i in items {
        s.push_str(&format!("${}\r\n{i}\r\n", i.len()));
    }
    s
}

fn hello3(r: &mut Raw) {
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
}

#[test]
fn sadd_srem_scard_smembers() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SADD", "s", "a", "b", "c"]), ":3\r\n");
    assert_eq!(r.call(&["SADD", "s", "a", "d"]), ":1\r\n");
    // Repeated arguments count once.
    assert_eq!(r.call(&["SADD", "s", "x", "x", "x"]), ":1\r\n");
    assert_eq!(r.call(&["SCARD", "s"]), ":5\r\n");
    assert_eq!(r.call(&["SCARD", "nokey"]), ":0\r\n");
    assert_eq!(
        sorted(bulks(&r.call(&["SMEMBERS", "s"]))),
        ["a", "b", "c", "d", "x"]
    );
    assert_eq!(r.call(&["SREM", "s", "a", "zz", "a"]), ":1\r\n");
    assert_eq!(r.call(&["SREM", "nokey", "a"]), ":0\r\n");
    assert_eq!(r.call(&["SMEMBERS", "nokey"]), "*0\r\n");
    // Removing the last members deletes the key.
    assert_eq!(r.call(&["SREM", "s", "b", "c", "d", "x"]), ":4\r\n");
    assert_eq!(r.call(&["EXISTS", "s"]), ":0\r\n");
    assert_eq!(r.call(&["TYPE", "s"]), "+none\r\n");
    // Integer members come back in numeric order, as from Redis's intsets.
    assert_eq!(r.call(&["SADD", "n", "10", "-3", "2", "7"]), ":4\r\n");
    assert_eq!(
        r.call(&["SMEMBERS", "n"]),
        set_reply('*', &["-3", "2", "7", "10"])
    );
    // Binary members.
    r.cmd(&[b"SADD", b"bin", b"\x00\xff", b"", b"a\r\nb"]);
    assert_eq!(r.read_reply(), b":3\r\n");
    r.cmd(&[b"SISMEMBER", b"bin", b""]);
    assert_eq!(r.read_reply(), b":1\r\n");
    r.cmd(&[b"SISMEMBER", b"bin", b"a\r\nb"]);
    assert_eq!(r.read_reply(), b":1\r\n");
    for (args, arity) in [
        (&["SADD", "s"][..], "sadd"),
        (&["SREM", "s"], "srem"),
        (&["SMEMBERS"], "smembers"),
        (&["SMEMBERS", "a", "b"], "smembers"),
        (&["SCARD", "a", "b"], "scard"),
        (&["SISMEMBER", "a"], "sismember"),
        (&["SMISMEMBER", "a"], "smismember"),
        (&["SPOP"], "spop"),
        (&["SRANDMEMBER"], "srandmember"),
        (&["SMOVE", "a", "b"], "smove"),
        (&["SINTER"], "sinter"),
        (&["SINTERCARD", "1"], "sintercard"),
        (&["SINTERSTORE", "d"], "sinterstore"),
        (&["SUNION"], "sunion"),
        (&["SDIFFSTORE", "d"], "sdiffstore"),
        (&["SSCAN", "a"], "sscan"),
    ] {
        assert_eq!(
            r.call(args),
            format!("-ERR wrong number of arguments for '{arity}' command\r\n")
        );
    }
}

#[test]
fn sets_through_the_redis_crate() {
    let srv = Server::start();
    let mut c = srv.client();
    let added: i64 = c.sadd("s", &["a", "b", "c"]).unwrap();
    assert_eq!(added, 3);
    let members: HashSet<String> = c.smembers("s").unwrap();
    assert_eq!(
        members,
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    );
    let is: bool = c.sismember("s", "b").unwrap();
    assert!(is);
    let _: i64 = c.sadd("t", &["b", "c", "d"]).unwrap();
    let inter: HashSet<String> = c.sinter(&["s", "t"]).unwrap();
    assert_eq!(inter, ["b", "c"].iter().map(|s| s.to_string()).collect());
    let popped: Option<String> = c.spop("t").unwrap();
    assert!(popped.is_some_and(|p| ["b", "c", "d"].contains(&p.as_str())));
    let n: usize = c.scard("t").unwrap();
    assert_eq!(n, 2);
}

#[test]
fn membership() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SADD", "s", "a", "b"]), ":2\r\n");
    assert_eq!(r.call(&["SISMEMBER", "s", "a"]), ":1\r\n");
    assert_eq!(r.call(&["SISMEMBER", "s", "zz"]), ":0\r\n");
    assert_eq!(r.call(&["SISMEMBER", "nokey", "a"]), ":0\r\n");
    assert_eq!(
        r.call(&["SMISMEMBER", "s", "a", "zz", "b"]),
        "*3\r\n:1\r\n:0\r\n:1\r\n"
    );
    assert_eq!(
        r.call(&["SMISMEMBER", "nokey", "a", "b"]),
        "*2\r\n:0\r\n:0\r\n"
    );
    // RESP3: integers, not booleans, as Redis.
    hello3(&mut r);
    assert_eq!(r.call(&["SISMEMBER", "s", "a"]), ":1\r\n");
    assert_eq!(r.call(&["SMISMEMBER", "s", "a", "q"]), "*2\r\n:1\r\n:0\r\n");
}

#[test]
fn spop_removes_what_it_returns() {
    let srv = Server::start();
    let mut r = srv.raw();
    let all: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let mut args = vec!["SADD", "s"];
    args.extend(all.iter().map(|s| s.as_str()));
    assert_eq!(r.call(&args), ":50\r\n");
    let one = bulks(&r.call(&["SPOP", "s"]));
    assert_eq!(one.len(), 1);
    assert!(all.contains(&one[0]));
    assert_eq!(r.call(&["SISMEMBER", "s", &one[0]]), ":0\r\n");
    let some = bulks(&r.call(&["SPOP", "s", "10"]));
    let distinct: HashSet<&String> = some.iter().collect();
    assert_eq!((some.len(), distinct.len()), (10, 10));
    for m in &some {
        assert!(all.contains(m) && *m != one[0]);
        assert_eq!(r.call(&["SISMEMBER", "s", m]), ":0\r\n");
    }
    assert_eq!(r.call(&["SCARD", "s"]), ":39\r\n");
    // A count beyond the size takes everything and deletes the key.
    let rest = bulks(&r.call(&["SPOP", "s", "100"]));
    assert_eq!(rest.len(), 39);
    let mut seen: BTreeSet<String> = rest.into_iter().collect();
    seen.extend(some);
    seen.insert(one[0].clone());
    assert_eq!(seen, all.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(r.call(&["EXISTS", "s"]), ":0\r\n");
    assert_eq!(r.call(&["SADD", "one", "only"]), ":1\r\n");
    assert_eq!(r.call(&["SPOP", "one"]), "$4\r\nonly\r\n");
    assert_eq!(r.call(&["EXISTS", "one"]), ":0\r\n");
    assert_eq!(r.call(&["SPOP", "nokey"]), "$-1\r\n");
    assert_eq!(r.call(&["SPOP", "nokey", "3"]), "*0\r\n");
    assert_eq!(r.call(&["SADD", "one", "only"]), ":1\r\n");
    assert_eq!(r.call(&["SPOP", "one", "0"]), "*0\r\n");
    let positive = "-ERR value is out of range, must be positive\r\n";
    assert_eq!(r.call(&["SPOP", "one", "-1"]), positive);
    assert_eq!(r.call(&["SPOP", "one", "x"]), positive);
    assert_eq!(r.call(&["SPOP", "one", "1", "2"]), SYNTAX);
    assert_eq!(r.call(&["SCARD", "one"]), ":1\r\n");
    // RESP3: SPOP with a count answers a set.
    hello3(&mut r);
    assert_eq!(r.call(&["SPOP", "one", "1"]), "~1\r\n$4\r\nonly\r\n");
    assert_eq!(r.call(&["SPOP", "nokey", "2"]), "~0\r\n");
    assert_eq!(r.call(&["SPOP", "nokey"]), "_\r\n");
}

#[test]
fn srandmember_counts() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SADD", "s", "a", "b", "c", "d", "e"]), ":5\r\n");
    let all = ["a", "b", "c", "d", "e"];
    let one = bulks(&r.call(&["SRANDMEMBER", "s"]));
    assert!(all.contains(&one[0].as_str()));
    // Positive: distinct members, at most the set's size.
    for _ in 0..20 {
        let three = bulks(&r.call(&["SRANDMEMBER", "s", "3"]));
        assert_eq!(three.iter().collect::<HashSet<_>>().len(), 3);
        assert!(three.iter().all(|m| all.contains(&m.as_str())));
    }
    assert_eq!(sorted(bulks(&r.call(&["SRANDMEMBER", "s", "10"]))), all);
    // Negative: exactly that many, repeats allowed; over 100 draws all members show up.
    let many = bulks(&r.call(&["SRANDMEMBER", "s", "-100"]));
    assert_eq!(many.len(), 100);
    assert_eq!(
        many.iter().collect::<HashSet<_>>().len(),
        5,
        "100 draws from 5 members"
    );
    assert_eq!(bulks(&r.call(&["SRANDMEMBER", "s", "-1"])).len(), 1);
    assert_eq!(r.call(&["SCARD", "s"]), ":5\r\n");
    assert_eq!(r.call(&["SRANDMEMBER", "s", "0"]), "*0\r\n");
    assert_eq!(r.call(&["SRANDMEMBER", "nokey"]), "$-1\r\n");
    assert_eq!(r.call(&["SRANDMEMBER", "nokey", "3"]), "*0\r\n");
    assert_eq!(r.call(&["SRANDMEMBER", "nokey", "-3"]), "*0\r\n");
    assert_eq!(r.call(&["SRANDMEMBER", "s", "x"]), NOT_INT);
    assert_eq!(r.call(&["SRANDMEMBER", "s", "-0"]), NOT_INT);
    assert_eq!(r.call(&["SRANDMEMBER", "s", "1", "2"]), SYNTAX);
    assert_eq!(
        r.call(&["SRANDMEMBER", "s", "-9223372036854775808"]),
        "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
    );
    // RESP3: arrays, even for the whole set.
    hello3(&mut r);
    assert!(r.call(&["SRANDMEMBER", "s", "2"]).starts_with("*2\r\n"));
    assert!(r.call(&["SRANDMEMBER", "s", "9"]).starts_with("*5\r\n"));
    assert!(r.call(&["SRANDMEMBER", "s", "-7"]).starts_with("*7\r\n"));
    assert_eq!(r.call(&["SRANDMEMBER", "nokey"]), "_\r\n");
}

#[test]
fn smove_between_sets() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SADD", "src", "a", "b"]), ":2\r\n");
    assert_eq!(r.call(&["SMOVE", "src", "dst", "a"]), ":1\r\n");
    assert_eq!(r.call(&["SMEMBERS", "dst"]), "*1\r\n$1\r\na\r\n");
    assert_eq!(r.call(&["SMEMBERS", "src"]), "*1\r\n$1\r\nb\r\n");
    assert_eq!(r.call(&["SMOVE", "src", "dst", "zz"]), ":0\r\n");
    // Moving the last member deletes the source.
    assert_eq!(r.call(&["SMOVE", "src", "dst", "b"]), ":1\r\n");
    assert_eq!(r.call(&["EXISTS", "src"]), ":0\r\n");
    assert_eq!(r.call(&["SCARD", "dst"]), ":2\r\n");
    // Same key: 1 when the member is there, nothing changes.
    assert_eq!(r.call(&["SMOVE", "dst", "dst", "a"]), ":1\r\n");
    assert_eq!(r.call(&["SMOVE", "dst", "dst", "zz"]), ":0\r\n");
    assert_eq!(r.call(&["SCARD", "dst"]), ":2\r\n");
    // A member already in the destination leaves the source all the same.
    assert_eq!(r.call(&["SADD", "src", "a"]), ":1\r\n");
    assert_eq!(r.call(&["SMOVE", "src", "dst", "a"]), ":1\r\n");
    assert_eq!(r.call(&["EXISTS", "src"]), ":0\r\n");
    assert_eq!(r.call(&["SMOVE", "nokey", "dst", "a"]), ":0\r\n");
    // Types: a missing source answers 0 before the destination is looked at.
    assert_eq!(r.call(&["SET", "str", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["SMOVE", "nokey", "str", "a"]), ":0\r\n");
    assert_eq!(r.call(&["SMOVE", "dst", "str", "a"]), WRONGTYPE);
    assert_eq!(r.call(&["SMOVE", "str", "dst", "a"]), WRONGTYPE);
    assert_eq!(r.call(&["SCARD", "dst"]), ":2\r\n");
    // An expired destination is replaced, not revived.
    assert_eq!(r.call(&["SADD", "old", "stale"]), ":1\r\n");
    assert_eq!(r.call(&["PEXPIRE", "old", "1"]), ":1\r\n");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(r.call(&["SMOVE", "dst", "old", "a"]), ":1\r\n");
    assert_eq!(r.call(&["SMEMBERS", "old"]), "*1\r\n$1\r\na\r\n");
    assert_eq!(r.call(&["TTL", "old"]), ":-1\r\n");
}

#[test]
fn intersections_unions_differences() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SADD", "a", "1", "2", "3", "4"]), ":4\r\n");
    assert_eq!(r.call(&["SADD", "b", "3", "4", "5"]), ":3\r\n");
    assert_eq!(r.call(&["SADD", "c", "4", "5", "6"]), ":3\r\n");
    assert_eq!(r.call(&["SINTER", "a", "b"]), set_reply('*', &["3", "4"]));
    assert_eq!(r.call(&["SINTER", "a", "b", "c"]), set_reply('*', &["4"]));
    assert_eq!(r.call(&["SINTER", "a", "nokey"]), "*0\r\n");
    assert_eq!(
        r.call(&["SUNION", "a", "b", "c"]),
        set_reply('*', &["1", "2", "3", "4", "5", "6"])
    );
    assert_eq!(r.call(&["SUNION", "nokey"]), "*0\r\n");
    assert_eq!(r.call(&["SDIFF", "a", "b"]), set_reply('*', &["1", "2"]));
    assert_eq!(
        r.call(&["SDIFF", "a", "b", "c"]),
        set_reply('*', &["1", "2"])
    );
    assert_eq!(r.call(&["SDIFF", "nokey", "a"]), "*0\r\n");
    assert_eq!(
        r.call(&["SDIFF", "a", "nokey"]),
        set_reply('*', &["1", "2", "3", "4"])
    );
    assert_eq!(r.call(&["SDIFF", "a", "a"]), "*0\r\n");
    // SINTERCARD.
    assert_eq!(r.call(&["SINTERCARD", "2", "a", "b"]), ":2\r\n");
    assert_eq!(
        r.call(&["SINTERCARD", "2", "a", "b", "LIMIT", "1"]),
        ":1\r\n"
    );
    assert_eq!(
        r.call(&["SINTERCARD", "2", "a", "b", "LIMIT", "0"]),
        ":2\r\n"
    );
    assert_eq!(r.call(&["SINTERCARD", "3", "a", "b", "c"]), ":1\r\n");
    assert_eq!(r.call(&["SINTERCARD", "2", "a", "nokey"]), ":0\r\n");
    assert_eq!(
        r.call(&["SINTERCARD", "1", "a", "LIMIT", "1", "LIMIT", "0"]),
        ":4\r\n"
    );
    let numkeys = "-ERR numkeys should be greater than 0\r\n";
    assert_eq!(r.call(&["SINTERCARD", "0", "a"]), numkeys);
    assert_eq!(r.call(&["SINTERCARD", "-1", "a"]), numkeys);
    assert_eq!(r.call(&["SINTERCARD", "x", "a"]), numkeys);
    assert_eq!(
        r.call(&["SINTERCARD", "3", "a", "b"]),
        "-ERR Number of keys can't be greater than number of args\r\n"
    );
    assert_eq!(r.call(&["SINTERCARD", "1", "a", "LIMIT"]), SYNTAX);
    assert_eq!(r.call(&["SINTERCARD", "1", "a", "FOO", "1"]), SYNTAX);
    let negative = "-ERR LIMIT can't be negative\r\n";
    assert_eq!(r.call(&["SINTERCARD", "1", "a", "LIMIT", "-1"]), negative);
    assert_eq!(r.call(&["SINTERCARD", "1", "a", "LIMIT", "x"]), negative);
    // The STORE forms replace the destination, and delete it for an empty result.
    assert_eq!(r.call(&["SINTERSTORE", "d", "a", "b"]), ":2\r\n");
    assert_eq!(r.call(&["SMEMBERS", "d"]), set_reply('*', &["3", "4"]));
    assert_eq!(r.call(&["SUNIONSTORE", "d", "a", "b", "c"]), ":6\r\n");
    assert_eq!(r.call(&["SDIFFSTORE", "d", "a", "b"]), ":2\r\n");
    assert_eq!(r.call(&["SMEMBERS", "d"]), set_reply('*', &["1", "2"]));
    assert_eq!(r.call(&["SINTERSTORE", "d", "a", "nokey"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "d"]), ":0\r\n");
    assert_eq!(r.call(&["SDIFFSTORE", "d", "a", "a"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "d"]), ":0\r\n");
    // A destination of another type, with a deadline, is overwritten without it.
    assert_eq!(r.call(&["SET", "str", "v", "EX", "100"]), "+OK\r\n");
    assert_eq!(r.call(&["SUNIONSTORE", "str", "a"]), ":4\r\n");
    assert_eq!(r.call(&["TYPE", "str"]), "+set\r\n");
    assert_eq!(r.call(&["TTL", "str"]), ":-1\r\n");
    // A source can be the destination.
    assert_eq!(r.call(&["SINTERSTORE", "a", "a", "b"]), ":2\r\n");
    assert_eq!(r.call(&["SMEMBERS", "a"]), set_reply('*', &["3", "4"]));
    // Strings.
    assert_eq!(r.call(&["SADD", "x", "apple", "pear", "fig"]), ":3\r\n");
    assert_eq!(r.call(&["SADD", "y", "pear", "kiwi"]), ":2\r\n");
    assert_eq!(bulks(&r.call(&["SINTER", "x", "y"])), ["pear"]);
    assert_eq!(
        sorted(bulks(&r.call(&["SUNION", "x", "y"]))),
        ["apple", "fig", "kiwi", "pear"]
    );
    assert_eq!(
        sorted(bulks(&r.call(&["SDIFF", "x", "y"]))),
        ["apple", "fig"]
    );
    // RESP3: sets.
    hello3(&mut r);
    assert_eq!(r.call(&["SINTER", "x", "y"]), "~1\r\n$4\r\npear\r\n");
    assert!(r.call(&["SUNION", "x", "y"]).starts_with("~4\r\n"));
    assert!(r.call(&["SDIFF", "x", "y"]).starts_with("~2\r\n"));
    assert_eq!(r.call(&["SINTER", "x", "nokey"]), "~0\r\n");
    assert!(r.call(&["SMEMBERS", "x"]).starts_with("~3\r\n"));
    assert_eq!(r.call(&["SMEMBERS", "nokey"]), "~0\r\n");
}

#[test]
fn sscan_returns_everything_at_once() {
    let srv = Server::start();
    let mut r = srv.raw();
    let members: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let mut args = vec!["SADD", "s"];
    args.extend(members.iter().map(|s| s.as_str()));
    assert_eq!(r.call(&args), ":300\r\n");
    let reply = r.call(&["SSCAN", "s", "0", "COUNT", "10"]);
    assert!(reply.starts_with("*2\r\n$1\r\n0\r\n*300\r\n"), "{reply:?}");
    assert_eq!(sorted(bulks(&reply)[1..].to_vec()), sorted(members.clone()));
    let reply = r.call(&["SSCAN", "s", "0", "MATCH", "m1?"]);
    let mut want: Vec<String> = (10..20).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(sorted(bulks(&reply)[1..].to_vec()), want);
    assert_eq!(r.call(&["SADD", "n", "3", "1", "2"]), ":3\r\n");
    assert_eq!(
        r.call(&["SSCAN", "n", "0"]),
        "*2\r\n$1\r\n0\r\n*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
    assert_eq!(r.call(&["SSCAN", "nokey", "0"]), "*2\r\n$1\r\n0\r\n*0\r\n");
    // Options are checked only for an existing set; the cursor always.
    assert_eq!(
        r.call(&["SSCAN", "nokey", "0", "COUNT", "0"]),
        "*2\r\n$1\r\n0\r\n*0\r\n"
    );
    assert_eq!(r.call(&["SSCAN", "s", "0", "COUNT", "0"]), SYNTAX);
    assert_eq!(r.call(&["SSCAN", "s", "0", "COUNT", "-1"]), SYNTAX);
    assert_eq!(r.call(&["SSCAN", "s", "0", "COUNT", "x"]), NOT_INT);
    assert_eq!(r.call(&["SSCAN", "s", "0", "MATCH"]), SYNTAX);
    assert_eq!(r.call(&["SSCAN", "s", "0", "NOVALUES"]), SYNTAX);
    assert_eq!(r.call(&["SSCAN", "s", "0", "TYPE", "set"]), SYNTAX);
    assert_eq!(r.call(&["SSCAN", "s", "x"]), "-ERR invalid cursor\r\n");
    assert_eq!(r.call(&["SSCAN", "nokey", "x"]), "-ERR invalid cursor\r\n");
    // A client loop over the cursor sees every member once.
    let mut c = srv.client();
    let seen: Vec<String> = c
        .sscan::<_, String>("s")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sorted(seen), sorted(members));
}

#[test]
fn set_commands_refuse_other_types_and_others_refuse_sets() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "str", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["ZADD", "z", "1", "a"]), ":1\r\n");
    assert_eq!(r.call(&["SADD", "s", "a"]), ":1\r\n");
    for key in ["str", "z"] {
        let refused: &[&[&str]] = &[
            &["SADD", key, "a"],
            &["SREM", key, "a"],
            &["SMEMBERS", key],
            &["SISMEMBER", key, "a"],
            &["SMISMEMBER", key, "a"],
            &["SCARD", key],
            &["SPOP", key],
            &["SPOP", key, "0"],
            &["SRANDMEMBER", key],
            &["SRANDMEMBER", key, "0"],
            &["SMOVE", key, "s", "a"],
            &["SMOVE", "s", key, "a"],
            &["SINTER", "s", key],
            &["SINTER", "nokey", key],
            &["SINTERCARD", "2", "nokey", key],
            &["SINTERSTORE", "d", "s", key],
            &["SUNION", key, "s"],
            &["SUNIONSTORE", "d", "nokey", key],
            &["SDIFF", "s", key],
            &["SDIFF", "nokey", key],
            &["SDIFFSTORE", "d", "s", key],
            &["SSCAN", key, "0"],
        ];
        for args in refused {
            assert_eq!(r.call(args), WRONGTYPE, "{args:?}");
        }
    }
    // The failed writes changed nothing.
    assert_eq!(r.call(&["GET", "str"]), "$1\r\nv\r\n");
    assert_eq!(r.call(&["ZCARD", "z"]), ":1\r\n");
    assert_eq!(r.call(&["SMEMBERS", "s"]), "*1\r\n$1\r\na\r\n");
    assert_eq!(r.call(&["EXISTS", "d"]), ":0\r\n");
    // Commands of other types refuse a set.
    let refused: &[&[&str]] = &[
        &["GET", "s"],
        &["APPEND", "s", "x"],
        &["INCR", "s"],
        &["STRLEN", "s"],
        &["GETRANGE", "s", "0", "1"],
        &["ZADD", "s", "1", "a"],
        &["ZSCORE", "s", "a"],
        &["ZCARD", "s"],
        &["ZRANGE", "s", "0", "1"],
        &["ZPOPMIN", "s"],
        &["ZSCAN", "s", "0"],
    ];
    for args in refused {
        assert_eq!(r.call(args), WRONGTYPE, "{args:?}");
    }
    // MGET answers nil for a set; SET overwrites it.
    assert_eq!(r.call(&["MGET", "s"]), "*1\r\n$-1\r\n");
    assert_eq!(r.call(&["SET", "s", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["TYPE", "s"]), "+string\r\n");
}

#[test]
fn sets_through_keyspace_commands() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SADD", "ints", "1", "2", "3"]), ":3\r\n");
    assert_eq!(r.call(&["SADD", "strs", "a", "b"]), ":2\r\n");
    let big: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let mut args = vec!["SADD", "big"];
    args.extend(big.iter().map(|s| s.as_str()));
    assert_eq!(r.call(&args), ":200\r\n");
    assert_eq!(r.call(&["TYPE", "ints"]), "+set\r\n");
    assert_eq!(r.call(&["OBJECT", "ENCODING", "ints"]), "$6\r\nintset\r\n");
    assert_eq!(
        r.call(&["OBJECT", "ENCODING", "strs"]),
        "$8\r\nlistpack\r\n"
    );
    assert_eq!(
        r.call(&["OBJECT", "ENCODING", "big"]),
        "$9\r\nhashtable\r\n"
    );
    assert_eq!(r.call(&["COPY", "strs", "copy"]), ":1\r\n");
    assert_eq!(r.call(&["SADD", "copy", "c"]), ":1\r\n");
    assert_eq!(r.call(&["SCARD", "strs"]), ":2\r\n");
    assert_eq!(r.call(&["SCARD", "copy"]), ":3\r\n");
    assert_eq!(r.call(&["RENAME", "copy", "moved"]), "+OK\r\n");
    assert_eq!(r.call(&["SISMEMBER", "moved", "c"]), ":1\r\n");
    assert_eq!(r.call(&["EXISTS", "copy"]), ":0\r\n");
    assert_eq!(r.call(&["SET", "str", "v"]), "+OK\r\n");
    let reply = r.call(&["SCAN", "0", "TYPE", "set", "COUNT", "100"]);
    assert_eq!(
        sorted(bulks(&reply)[1..].to_vec()),
        ["big", "ints", "moved", "strs"]
    );
    assert_eq!(r.call(&["EXPIRE", "moved", "100"]), ":1\r\n");
    // Adding keeps the deadline, as Redis.
    assert_eq!(r.call(&["SADD", "moved", "d"]), ":1\r\n");
    let ttl = r.call(&["TTL", "moved"]);
    assert!(ttl == ":100\r\n" || ttl == ":99\r\n", "{ttl:?}");
    assert_eq!(r.call(&["DEL", "moved", "big"]), ":2\r\n");
    assert_eq!(r.call(&["DBSIZE"]), ":3\r\n");
}

/// Writes sets and sorted sets, with adds, removals, moves, pops and stores, and returns
/// what each key must hold: (key, is a sorted set, members or ZRANGE WITHSCORES text).
fn write_collections(r: &mut Raw, round: usize) -> Vec<(String, bool, Vec<String>)> {
    let s = format!("s{round}");
    let z = format!("z{round}");
    let u = format!("u{round}");
    let moved = format!("moved{round}");
    let members: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let mut args = vec!["SADD", s.as_str()];
    args.extend(members.iter().map(|m| m.as_str()));
    assert_eq!(r.call(&args), ":300\r\n");
    assert_eq!(r.call(&["SREM", &s, "m0", "m1", "m2"]), ":3\r\n");
    assert_eq!(r.call(&["SMOVE", &s, &moved, "m3"]), ":1\r\n");
    let popped = bulks(&r.call(&["SPOP", &s, "5"]));
    assert_eq!(popped.len(), 5);
    let set = sorted(
        members[4..]
            .iter()
            .filter(|m| !popped.contains(m))
            .cloned()
            .collect(),
    );
    let mut zargs = vec!["ZADD".to_string(), z.clone()];
    for i in 0..300 {
        zargs.push(format!("{}", i as f64 / 4.0));
        zargs.push(format!("m{i}"));
    }
    let zargs: Vec<&str> = zargs.iter().map(|s| s.as_str()).collect();
    assert_eq!(r.call(&zargs), ":300\r\n");
    assert_eq!(r.call(&["ZINCRBY", &z, "1000", "m0"]), "$4\r\n1000\r\n");
    assert_eq!(r.call(&["ZREM", &z, "m1", "m2"]), ":2\r\n");
    assert_eq!(r.call(&["ZPOPMIN", &z]), "*2\r\n$2\r\nm3\r\n$4\r\n0.75\r\n");
    assert_eq!(r.call(&["ZREMRANGEBYRANK", &z, "0", "9"]), ":10\r\n");
    // Past 128 members a sorted set keeps -0 as Redis's skiplist does.
    assert_eq!(
        r.call(&["ZADD", &z, "-0", "neg", "1e300", "huge"]),
        ":2\r\n"
    );
    assert_eq!(r.call(&["ZSCORE", &z, "neg"]), "$2\r\n-0\r\n");
    assert!(r.call(&["ZUNIONSTORE", &u, "2", &z, &s]).starts_with(':'));
    let zrange = |r: &mut Raw, key: &str| bulks(&r.call(&["ZRANGE", key, "0", "-1", "WITHSCORES"]));
    vec![
        (s, false, set),
        (moved, false, vec!["m3".to_string()]),
        (z.clone(), true, zrange(r, &z)),
        (u.clone(), true, zrange(r, &u)),
    ]
}

/// Checks what `write_collections` promised.
fn check_collections(r: &mut Raw, expected: &[(String, bool, Vec<String>)]) {
    for (key, zset, want) in expected {
        let got = if *zset {
            bulks(&r.call(&["ZRANGE", key, "0", "-1", "WITHSCORES"]))
        } else {
            sorted(bulks(&r.call(&["SMEMBERS", key])))
        };
        assert_eq!(&got, want, "{key}");
        if *zset {
            // The rank index came back too.
            let last = &want[want.len() - 2];
            assert_eq!(
                r.call(&["ZRANK", key, last]),
                format!(":{}\r\n", want.len() / 2 - 1)
            );
        }
    }
}

#[test]
fn sets_and_sorted_sets_survive_kill9() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let expected = write_collections(&mut srv.raw(), 0);
    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    check_collections(&mut r, &expected);
    assert_eq!(r.call(&["ZSCORE", "z0", "neg"]), "$2\r\n-0\r\n");
    assert_eq!(r.call(&["ZSCORE", "z0", "huge"]), "$6\r\n1e+300\r\n");
}

#[test]
fn sets_and_sorted_sets_survive_a_snapshot_then_the_log() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut r = srv.raw();
    let before = write_collections(&mut r, 1);
    assert_eq!(r.call(&["SAVE"]), "+OK\r\n");
    // Changes after the snapshot come back from the log, applied to the snapshot's state.
    let after = write_collections(&mut r, 2);
    assert_eq!(r.call(&["SADD", "s1", "late"]), ":1\r\n");
    assert_eq!(r.call(&["SREM", "s1", "m299"]), ":1\r\n");
    assert_eq!(
        r.call(&["ZADD", "z1", "7.5", "late", "-1", "m299"]),
        ":1\r\n"
    );
    assert_eq!(r.call(&["ZREM", "z1", "huge"]), ":1\r\n");
    assert_eq!(r.call(&["DEL", "u1"]), ":1\r\n");
    let s1 = sorted(bulks(&r.call(&["SMEMBERS", "s1"])));
    let z1 = bulks(&r.call(&["ZRANGE", "z1", "0", "-1", "WITHSCORES"]));
    drop(r);
    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    check_collections(&mut r, &after);
    check_collections(&mut r, &before[1..2]);
    assert_eq!(sorted(bulks(&r.call(&["SMEMBERS", "s1"]))), s1);
    assert_eq!(
        bulks(&r.call(&["ZRANGE", "z1", "0", "-1", "WITHSCORES"])),
        z1
    );
    assert_eq!(r.call(&["EXISTS", "u1"]), ":0\r\n");
    // Once more, through a second snapshot and nothing after it.
    assert_eq!(r.call(&["SAVE"]), "+OK\r\n");
    drop(r);
    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    check_collections(&mut r, &after);
    assert_eq!(
        bulks(&r.call(&["ZRANGE", "z1", "0", "-1", "WITHSCORES"])),
        z1
    );
}

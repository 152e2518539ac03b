//! List commands, cross-type WRONGTYPE, and the durability of list and hash writes.
//! Every expected raw reply below was checked against redis-server 7.0.15 (where 7.2
//! differs, the 7.2 reply is expected and the difference noted).

use std::path::Path;
use std::time::Duration;

use redis::Commands;

use crate::util::{Raw, Server};

const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
const SYNTAX: &str = "-ERR syntax error\r\n";
const WRONGTYPE: &str = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

/// The raw reply for an array of bulk strings.
fn bulks(items: &[&str]) -> String {
    let mut s = format!("*{}\r\n", items.len());
    for i in items {
        s.push_str(&format!("${}\r\n{i}\r\n", i.len()));
    }
    s
}

fn range(r: &mut Raw, key: &str) -> String {
    r.call(&["LRANGE", key, "0", "-1"])
}

#[test]
fn push_and_range() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["LPUSH", "l"]),
        "-ERR wrong number of arguments for 'lpush' command\r\n"
    );
    assert_eq!(r.call(&["LPUSHX", "l", "a"]), ":0\r\n");
    assert_eq!(r.call(&["RPUSHX", "l", "a", "b"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "l"]), ":0\r\n");
    assert_eq!(r.call(&["LPUSH", "l", "a", "b", "c"]), ":3\r\n");
    assert_eq!(range(&mut r, "l"), bulks(&["c", "b", "a"]));
    assert_eq!(r.call(&["LPUSHX", "l", "x", "y"]), ":5\r\n");
    assert_eq!(r.call(&["RPUSHX", "l", "z"]), ":6\r\n");
    assert_eq!(r.call(&["RPUSH", "l", "1", "2"]), ":8\r\n");
    assert_eq!(r.call(&["LLEN", "l"]), ":8\r\n");
    assert_eq!(r.call(&["LLEN", "none"]), ":0\r\n");
    let all = bulks(&["y", "x", "c", "b", "a", "z", "1", "2"]);
    assert_eq!(range(&mut r, "l"), all);
    assert_eq!(r.call(&["LRANGE", "l", "-100", "100"]), all);
    assert_eq!(
        r.call(&["LRANGE", "l", "-9223372036854775808", "9223372036854775807"]),
        all
    );
    assert_eq!(r.call(&["LRANGE", "l", "1", "2"]), bulks(&["x", "c"]));
    assert_eq!(r.call(&["LRANGE", "l", "-2", "-1"]), bulks(&["1", "2"]));
    assert_eq!(r.call(&["LRANGE", "l", "5", "2"]), "*0\r\n");
    assert_eq!(r.call(&["LRANGE", "l", "8", "10"]), "*0\r\n");
    assert_eq!(r.call(&["LRANGE", "l", "x", "1"]), NOT_INT);
    assert_eq!(r.call(&["LRANGE", "none", "x", "1"]), NOT_INT);
    assert_eq!(r.call(&["LRANGE", "none", "0", "-1"]), "*0\r\n");

    // Binary elements and the redis crate.
    let mut c = srv.client();
    let binary: Vec<u8> = (0..=255u8).collect();
    let n: i64 = c.rpush("bin", &[&binary[..], b"", b"\r\n"]).unwrap();
    assert_eq!(n, 3);
    let back: Vec<Vec<u8>> = c.lrange("bin", 0, -1).unwrap();
    assert_eq!(back, vec![binary, Vec::new(), b"\r\n".to_vec()]);
}

#[test]
fn pop_with_and_without_count() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["RPUSH", "l", "a", "b", "c", "d", "e"]), ":5\r\n");
    assert_eq!(r.call(&["LPOP", "l"]), "$1\r\na\r\n");
    assert_eq!(r.call(&["RPOP", "l"]), "$1\r\ne\r\n");
    assert_eq!(r.call(&["LPOP", "l", "0"]), "*0\r\n");
    assert_eq!(r.call(&["RPOP", "l", "2"]), bulks(&["d", "c"]));
    assert_eq!(r.call(&["LPOP", "l", "5"]), bulks(&["b"]));
    assert_eq!(r.call(&["EXISTS", "l"]), ":0\r\n");
    assert_eq!(r.call(&["LPOP", "none"]), "$-1\r\n");
    assert_eq!(r.call(&["LPOP", "none", "2"]), "*-1\r\n");
    assert_eq!(r.call(&["RPOP", "none", "0"]), "*-1\r\n");
    let positive = "-ERR value is out of range, must be positive\r\n";
    assert_eq!(r.call(&["LPOP", "none", "-1"]), positive);
    assert_eq!(r.call(&["LPOP", "none", "x"]), positive);
    assert_eq!(
        r.call(&["LPOP", "none", "1", "2"]),
        "-ERR wrong number of arguments for 'lpop' command\r\n"
    );
    assert_eq!(
        r.call(&["RPOP", "none", "1", "2"]),
        "-ERR wrong number of arguments for 'rpop' command\r\n"
    );
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(r.call(&["LPOP", "none"]), "_\r\n");
    assert_eq!(r.call(&["LPOP", "none", "2"]), "_\r\n");
    assert_eq!(r.call(&["RPUSH", "l", "a"]), ":1\r\n");
    assert_eq!(r.call(&["LPOP", "l", "0"]), "*0\r\n");
    assert_eq!(r.call(&["RPOP", "l", "9"]), bulks(&["a"]));
}

#[test]
fn index_set_insert_remove_trim() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["RPUSH", "l", "a", "b", "c"]), ":3\r\n");
    assert_eq!(r.call(&["LINDEX", "l", "0"]), "$1\r\na\r\n");
    assert_eq!(r.call(&["LINDEX", "l", "-1"]), "$1\r\nc\r\n");
    assert_eq!(r.call(&["LINDEX", "l", "3"]), "$-1\r\n");
    assert_eq!(r.call(&["LINDEX", "l", "-4"]), "$-1\r\n");
    assert_eq!(r.call(&["LINDEX", "l", "x"]), NOT_INT);
    // The key is looked up before the index is read.
    assert_eq!(r.call(&["LINDEX", "none", "x"]), "$-1\r\n");

    assert_eq!(r.call(&["LSET", "l", "0", "A"]), "+OK\r\n");
    assert_eq!(r.call(&["LSET", "l", "-1", "C"]), "+OK\r\n");
    assert_eq!(
        r.call(&["LSET", "l", "3", "x"]),
        "-ERR index out of range\r\n"
    );
    assert_eq!(r.call(&["LSET", "none", "0", "x"]), "-ERR no such key\r\n");
    assert_eq!(r.call(&["LSET", "none", "x", "x"]), "-ERR no such key\r\n");
    assert_eq!(r.call(&["LSET", "l", "x", "x"]), NOT_INT);
    assert_eq!(range(&mut r, "l"), bulks(&["A", "b", "C"]));

    assert_eq!(r.call(&["LINSERT", "l", "BEFORE", "A", "0"]), ":4\r\n");
    assert_eq!(r.call(&["LINSERT", "l", "after", "C", "9"]), ":5\r\n");
    assert_eq!(r.call(&["LINSERT", "l", "after", "b", "b2"]), ":6\r\n");
    assert_eq!(r.call(&["LINSERT", "l", "before", "nope", "x"]), ":-1\r\n");
    assert_eq!(r.call(&["LINSERT", "none", "before", "a", "x"]), ":0\r\n");
    assert_eq!(r.call(&["LINSERT", "l", "middle", "a", "x"]), SYNTAX);
    assert_eq!(r.call(&["LINSERT", "none", "middle", "a", "x"]), SYNTAX);
    assert_eq!(range(&mut r, "l"), bulks(&["0", "A", "b", "b2", "C", "9"]));

    assert_eq!(r.call(&["DEL", "l"]), ":1\r\n");
    assert_eq!(
        r.call(&["RPUSH", "l", "1", "1", "2", "1", "3", "1"]),
        ":6\r\n"
    );
    assert_eq!(r.call(&["LREM", "l", "-2", "1"]), ":2\r\n");
    assert_eq!(range(&mut r, "l"), bulks(&["1", "1", "2", "3"]));
    assert_eq!(r.call(&["LREM", "l", "1", "1"]), ":1\r\n");
    assert_eq!(range(&mut r, "l"), bulks(&["1", "2", "3"]));
    assert_eq!(r.call(&["LREM", "l", "0", "nope"]), ":0\r\n");
    assert_eq!(r.call(&["LREM", "none", "0", "a"]), ":0\r\n");
    assert_eq!(r.call(&["LREM", "l", "x", "a"]), NOT_INT);
    assert_eq!(
        r.call(&["LREM", "l", "-9223372036854775808", "2"]),
        ":1\r\n"
    );
    assert_eq!(r.call(&["LREM", "l", "0", "1"]), ":1\r\n");
    assert_eq!(r.call(&["LREM", "l", "0", "3"]), ":1\r\n");
    assert_eq!(r.call(&["EXISTS", "l"]), ":0\r\n");

    assert_eq!(
        r.call(&["RPUSH", "l", "a", "b", "c", "d", "e", "f", "g"]),
        ":7\r\n"
    );
    assert_eq!(r.call(&["LTRIM", "l", "1", "-2"]), "+OK\r\n");
    assert_eq!(range(&mut r, "l"), bulks(&["b", "c", "d", "e", "f"]));
    assert_eq!(r.call(&["LTRIM", "l", "-3", "100"]), "+OK\r\n");
    assert_eq!(range(&mut r, "l"), bulks(&["d", "e", "f"]));
    assert_eq!(r.call(&["LTRIM", "l", "-100", "0"]), "+OK\r\n");
    assert_eq!(range(&mut r, "l"), bulks(&["d"]));
    assert_eq!(r.call(&["LTRIM", "l", "x", "0"]), NOT_INT);
    assert_eq!(r.call(&["LTRIM", "none", "0", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["EXISTS", "none"]), ":0\r\n");
    assert_eq!(r.call(&["LTRIM", "l", "1", "0"]), "+OK\r\n");
    assert_eq!(r.call(&["EXISTS", "l"]), ":0\r\n");
}

#[test]
fn lpos_options() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["RPUSH", "l", "a", "b", "c", "a", "b", "c", "a"]),
        ":7\r\n"
    );
    assert_eq!(r.call(&["LPOS", "l", "a"]), ":0\r\n");
    assert_eq!(r.call(&["LPOS", "l", "a", "RANK", "2"]), ":3\r\n");
    assert_eq!(r.call(&["LPOS", "l", "a", "RANK", "-1"]), ":6\r\n");
    assert_eq!(r.call(&["LPOS", "l", "a", "RANK", "-4"]), "$-1\r\n");
    assert_eq!(
        r.call(&["LPOS", "l", "a", "rank", "-2", "count", "0"]),
        "*2\r\n:3\r\n:0\r\n"
    );
    assert_eq!(
        r.call(&["LPOS", "l", "a", "COUNT", "0"]),
        "*3\r\n:0\r\n:3\r\n:6\r\n"
    );
    assert_eq!(
        r.call(&["LPOS", "l", "a", "COUNT", "2", "RANK", "2"]),
        "*2\r\n:3\r\n:6\r\n"
    );
    assert_eq!(
        r.call(&["LPOS", "l", "a", "MAXLEN", "3", "COUNT", "0"]),
        "*1\r\n:0\r\n"
    );
    assert_eq!(
        r.call(&["LPOS", "l", "a", "RANK", "-1", "MAXLEN", "2", "COUNT", "0"]),
        "*1\r\n:6\r\n"
    );
    assert_eq!(
        r.call(&["LPOS", "l", "a", "RANK", "9223372036854775807"]),
        "$-1\r\n"
    );
    assert_eq!(r.call(&["LPOS", "l", "z"]), "$-1\r\n");
    assert_eq!(r.call(&["LPOS", "l", "z", "COUNT", "3"]), "*0\r\n");
    assert_eq!(r.call(&["LPOS", "none", "a"]), "$-1\r\n");
    assert_eq!(r.call(&["LPOS", "none", "a", "COUNT", "1"]), "*0\r\n");
    let rank0 = "-ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list\r\n";
    assert_eq!(r.call(&["LPOS", "none", "a", "RANK", "0"]), rank0);
    assert_eq!(r.call(&["LPOS", "l", "a", "RANK", "x"]), NOT_INT);
    // 7.0 answers as if the rank were -1; 7.2 reads RANK within ±LONG_MAX.
    assert_eq!(
        r.call(&["LPOS", "l", "a", "RANK", "-9223372036854775808"]),
        "-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"
    );
    assert_eq!(
        r.call(&["LPOS", "l", "a", "COUNT", "-1"]),
        "-ERR COUNT can't be negative\r\n"
    );
    assert_eq!(
        r.call(&["LPOS", "l", "a", "COUNT", "x"]),
        "-ERR COUNT can't be negative\r\n"
    );
    assert_eq!(
        r.call(&["LPOS", "l", "a", "MAXLEN", "-1"]),
        "-ERR MAXLEN can't be negative\r\n"
    );
    assert_eq!(r.call(&["LPOS", "l", "a", "FOO"]), SYNTAX);
    assert_eq!(r.call(&["LPOS", "l", "a", "RANK"]), SYNTAX);
}

#[test]
fn lmove_and_rpoplpush() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["RPUSH", "src", "a", "b", "c"]), ":3\r\n");
    assert_eq!(
        r.call(&["LMOVE", "src", "dst", "LEFT", "RIGHT"]),
        "$1\r\na\r\n"
    );
    assert_eq!(
        r.call(&["LMOVE", "src", "dst", "right", "left"]),
        "$1\r\nc\r\n"
    );
    assert_eq!(range(&mut r, "dst"), bulks(&["c", "a"]));
    assert_eq!(r.call(&["RPOPLPUSH", "src", "dst"]), "$1\r\nb\r\n");
    assert_eq!(r.call(&["EXISTS", "src"]), ":0\r\n");
    assert_eq!(range(&mut r, "dst"), bulks(&["b", "c", "a"]));
    // Rotation within one list.
    assert_eq!(
        r.call(&["LMOVE", "dst", "dst", "LEFT", "RIGHT"]),
        "$1\r\nb\r\n"
    );
    assert_eq!(range(&mut r, "dst"), bulks(&["c", "a", "b"]));
    assert_eq!(r.call(&["RPOPLPUSH", "dst", "dst"]), "$1\r\nb\r\n");
    assert_eq!(range(&mut r, "dst"), bulks(&["b", "c", "a"]));
    // A single element moved onto its own list stays, with the list's deadline.
    assert_eq!(r.call(&["RPUSH", "one", "x"]), ":1\r\n");
    assert_eq!(r.call(&["EXPIRE", "one", "100"]), ":1\r\n");
    assert_eq!(
        r.call(&["LMOVE", "one", "one", "LEFT", "LEFT"]),
        "$1\r\nx\r\n"
    );
    assert_eq!(range(&mut r, "one"), bulks(&["x"]));
    assert_eq!(r.call(&["TTL", "one"]), ":100\r\n");

    assert_eq!(r.call(&["LMOVE", "none", "dst", "LEFT", "LEFT"]), "$-1\r\n");
    assert_eq!(r.call(&["RPOPLPUSH", "none", "dst"]), "$-1\r\n");
    assert_eq!(r.call(&["EXISTS", "none"]), ":0\r\n");
    assert_eq!(r.call(&["LMOVE", "dst", "x", "UP", "LEFT"]), SYNTAX);
    assert_eq!(r.call(&["LMOVE", "none", "x", "LEFT", "DOWN"]), SYNTAX);
    // A destination of another type refuses, and the source keeps its element.
    assert_eq!(r.call(&["SET", "s", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["LMOVE", "dst", "s", "LEFT", "LEFT"]), WRONGTYPE);
    assert_eq!(r.call(&["RPOPLPUSH", "dst", "s"]), WRONGTYPE);
    assert_eq!(r.call(&["RPOPLPUSH", "s", "dst"]), WRONGTYPE);
    assert_eq!(r.call(&["LLEN", "dst"]), ":3\r\n");
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(r.call(&["LMOVE", "none", "dst", "LEFT", "LEFT"]), "_\r\n");
}

#[test]
fn lmpop() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["RPUSH", "l", "1", "2", "3", "4", "5"]), ":5\r\n");
    assert_eq!(
        r.call(&["LMPOP", "2", "none", "l", "LEFT"]),
        "*2\r\n$1\r\nl\r\n*1\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        r.call(&["LMPOP", "2", "none", "l", "right", "COUNT", "2"]),
        "*2\r\n$1\r\nl\r\n*2\r\n$1\r\n5\r\n$1\r\n4\r\n"
    );
    assert_eq!(
        r.call(&["LMPOP", "1", "l", "LEFT", "COUNT", "10"]),
        "*2\r\n$1\r\nl\r\n*2\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );
    assert_eq!(r.call(&["EXISTS", "l"]), ":0\r\n");
    assert_eq!(r.call(&["LMPOP", "2", "none", "l", "LEFT"]), "*-1\r\n");
    let numkeys = "-ERR numkeys should be greater than 0\r\n";
    assert_eq!(r.call(&["LMPOP", "0", "l", "LEFT"]), numkeys);
    assert_eq!(r.call(&["LMPOP", "-1", "l", "LEFT"]), numkeys);
    assert_eq!(r.call(&["LMPOP", "x", "l", "LEFT"]), numkeys);
    assert_eq!(r.call(&["LMPOP", "3", "l", "LEFT"]), SYNTAX);
    assert_eq!(
        r.call(&["LMPOP", "9223372036854775807", "l", "LEFT"]),
        SYNTAX
    );
    assert_eq!(r.call(&["LMPOP", "1", "l", "MIDDLE"]), SYNTAX);
    assert_eq!(r.call(&["LMPOP", "1", "l", "LEFT", "FOO"]), SYNTAX);
    assert_eq!(r.call(&["LMPOP", "1", "l", "LEFT", "COUNT"]), SYNTAX);
    assert_eq!(
        r.call(&["LMPOP", "1", "l", "LEFT", "COUNT", "1", "COUNT", "1"]),
        SYNTAX
    );
    let count = "-ERR count should be greater than 0\r\n";
    assert_eq!(r.call(&["LMPOP", "1", "l", "LEFT", "COUNT", "0"]), count);
    assert_eq!(r.call(&["LMPOP", "1", "l", "LEFT", "COUNT", "x"]), count);
    // A key of another type before the first list refuses the command; after it, it
    // is never looked at.
    assert_eq!(r.call(&["SET", "s", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["RPUSH", "l", "a"]), ":1\r\n");
    assert_eq!(r.call(&["LMPOP", "2", "s", "l", "LEFT"]), WRONGTYPE);
    assert_eq!(
        r.call(&["LMPOP", "2", "l", "s", "LEFT"]),
        "*2\r\n$1\r\nl\r\n*1\r\n$1\r\na\r\n"
    );
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(
        r.call(&["LMPOP", "1", "none", "LEFT", "COUNT", "2"]),
        "_\r\n"
    );
}

#[test]
fn list_writes_keep_the_ttl() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["RPUSH", "l", "a", "b", "c"]), ":3\r\n");
    assert_eq!(r.call(&["EXPIRE", "l", "1000"]), ":1\r\n");
    for cmd in [
        &["LPUSH", "l", "x"][..],
        &["RPUSHX", "l", "y"],
        &["LSET", "l", "0", "z"],
        &["LINSERT", "l", "AFTER", "z", "w"],
        &["LREM", "l", "1", "w"],
        &["LPOP", "l"],
        &["RPOP", "l", "1"],
        &["LTRIM", "l", "0", "-1"],
        &["RPUSH", "l", "q"],
        &["LMOVE", "l", "l", "LEFT", "RIGHT"],
        &["RPUSH", "other", "o"],
        &["RPOPLPUSH", "other", "l"],
    ] {
        assert!(!r.call(cmd).starts_with('-'), "{cmd:?}");
        assert_eq!(r.call(&["TTL", "l"]), ":1000\r\n", "after {cmd:?}");
    }
    assert_eq!(range(&mut r, "l"), bulks(&["o", "b", "c", "q", "a"]));
    // Expired lists are gone for every command, and a push starts a fresh one.
    assert_eq!(r.call(&["PEXPIRE", "l", "1"]), ":1\r\n");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(r.call(&["LLEN", "l"]), ":0\r\n");
    assert_eq!(r.call(&["RPUSHX", "l", "x"]), ":0\r\n");
    assert_eq!(r.call(&["RPUSH", "l", "new"]), ":1\r\n");
    assert_eq!(r.call(&["TTL", "l"]), ":-1\r\n");
    assert_eq!(range(&mut r, "l"), bulks(&["new"]));
}

#[test]
fn wrongtype_across_types() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["RPUSH", "list", "a", "1"]), ":2\r\n");
    assert_eq!(r.call(&["HSET", "hash", "f", "v"]), ":1\r\n");
    assert_eq!(r.call(&["SET", "str", "1"]), "+OK\r\n");
    let string_cmds: &[&[&str]] = &[
        &["GET", "K"],
        &["INCR", "K"],
        &["INCRBY", "K", "2"],
        &["DECR", "K"],
        &["INCRBYFLOAT", "K", "1.5"],
        &["APPEND", "K", "x"],
        &["STRLEN", "K"],
        &["GETRANGE", "K", "0", "-1"],
        &["SETRANGE", "K", "0", "x"],
        &["GETSET", "K", "x"],
        &["GETDEL", "K"],
        &["GETEX", "K"],
        &["SET", "K", "x", "GET"],
    ];
    let list_cmds: &[&[&str]] = &[
        &["LPUSH", "K", "x"],
        &["RPUSH", "K", "x"],
        &["LPUSHX", "K", "x"],
        &["RPUSHX", "K", "x"],
        &["LPOP", "K"],
        &["RPOP", "K", "2"],
        &["LLEN", "K"],
        &["LRANGE", "K", "0", "-1"],
        &["LINDEX", "K", "0"],
        &["LSET", "K", "0", "x"],
        &["LINSERT", "K", "BEFORE", "a", "x"],
        &["LREM", "K", "0", "a"],
        &["LTRIM", "K", "0", "1"],
        &["LPOS", "K", "a"],
        &["LMOVE", "K", "list", "LEFT", "LEFT"],
        &["RPOPLPUSH", "K", "list"],
        &["LMPOP", "1", "K", "LEFT"],
    ];
    let hash_cmds: &[&[&str]] = &[
        &["HSET", "K", "f", "v"],
        &["HSETNX", "K", "f", "v"],
        &["HMSET", "K", "f", "v"],
        &["HGET", "K", "f"],
        &["HMGET", "K", "f"],
        &["HDEL", "K", "f"],
        &["HLEN", "K"],
        &["HSTRLEN", "K", "f"],
        &["HEXISTS", "K", "f"],
        &["HKEYS", "K"],
        &["HVALS", "K"],
        &["HGETALL", "K"],
        &["HINCRBY", "K", "f", "1"],
        &["HINCRBYFLOAT", "K", "f", "1"],
        &["HRANDFIELD", "K"],
        &["HRANDFIELD", "K", "2", "WITHVALUES"],
        &["HSCAN", "K", "0"],
    ];
    for (key, refused) in [
        ("list", [string_cmds, hash_cmds]),
        ("hash", [string_cmds, list_cmds]),
        ("str", [list_cmds, hash_cmds]),
    ] {
        for cmd in refused.iter().flat_map(|family| family.iter()) {
            let argv: Vec<&str> = cmd
                .iter()
                .map(|&a| if a == "K" { key } else { a })
                .collect();
            assert_eq!(r.call(&argv), WRONGTYPE, "{argv:?}");
        }
    }
    // Nothing was changed by the refused commands.
    assert_eq!(range(&mut r, "list"), bulks(&["a", "1"]));
    assert_eq!(r.call(&["HGETALL", "hash"]), bulks(&["f", "v"]));
    assert_eq!(r.call(&["GET", "str"]), "$1\r\n1\r\n");
    // MGET answers nil for other types; SET replaces any type.
    assert_eq!(
        r.call(&["MGET", "str", "list", "hash"]),
        "*3\r\n$1\r\n1\r\n$-1\r\n$-1\r\n"
    );
    assert_eq!(r.call(&["SET", "list", "now a string"]), "+OK\r\n");
    assert_eq!(r.call(&["TYPE", "list"]), "+string\r\n");
}

#[test]
fn generic_commands_on_lists_and_hashes() {
    let srv = Server::start();
    let mut r = srv.raw();
    let many: Vec<String> = (0..129).map(|i| i.to_string()).collect();
    let mut argv = vec!["RPUSH", "l"];
    argv.extend(many.iter().take(128).map(|s| s.as_str()));
    assert_eq!(r.call(&argv), ":128\r\n");
    assert_eq!(r.call(&["TYPE", "l"]), "+list\r\n");
    // 7.2 encodes small lists as a listpack (7.0 says quicklist for every list).
    assert_eq!(r.call(&["OBJECT", "ENCODING", "l"]), "$8\r\nlistpack\r\n");
    assert_eq!(r.call(&["RPUSH", "l", "128"]), ":129\r\n");
    assert_eq!(r.call(&["OBJECT", "ENCODING", "l"]), "$9\r\nquicklist\r\n");
    assert_eq!(r.call(&["HSET", "h", "f", "v"]), ":1\r\n");
    assert_eq!(r.call(&["TYPE", "h"]), "+hash\r\n");
    assert_eq!(r.call(&["OBJECT", "ENCODING", "h"]), "$8\r\nlistpack\r\n");

    assert_eq!(r.call(&["EXPIRE", "l", "500"]), ":1\r\n");
    assert_eq!(r.call(&["COPY", "l", "l2"]), ":1\r\n");
    assert_eq!(r.call(&["COPY", "h", "h2"]), ":1\r\n");
    assert_eq!(r.call(&["TTL", "l2"]), ":500\r\n");
    assert_eq!(r.call(&["LPOP", "l2"]), "$1\r\n0\r\n");
    assert_eq!(r.call(&["LLEN", "l"]), ":129\r\n");
    assert_eq!(r.call(&["HSET", "h2", "g", "w"]), ":1\r\n");
    assert_eq!(r.call(&["HLEN", "h"]), ":1\r\n");
    assert_eq!(r.call(&["RENAME", "l2", "l3"]), "+OK\r\n");
    assert_eq!(r.call(&["LLEN", "l3"]), ":128\r\n");
    assert_eq!(r.call(&["TTL", "l3"]), ":500\r\n");
    assert_eq!(r.call(&["RENAME", "h2", "h3"]), "+OK\r\n");
    assert_eq!(r.call(&["HGET", "h3", "g"]), "$1\r\nw\r\n");

    assert_eq!(r.call(&["SET", "s", "v"]), "+OK\r\n");
    let mut lists: Vec<String> = Vec::new();
    let mut hashes: Vec<String> = Vec::new();
    let mut c = srv.client();
    for (ty, out) in [("list", &mut lists), ("hash", &mut hashes)] {
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("TYPE")
                .arg(ty)
                .query(&mut c)
                .unwrap();
            out.extend(keys);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        out.sort();
    }
    assert_eq!(lists, ["l", "l3"]);
    assert_eq!(hashes, ["h", "h3"]);
    assert_eq!(r.call(&["DEL", "l", "h"]), ":2\r\n");
    assert_eq!(r.call(&["EXISTS", "l", "h", "l3", "h3"]), ":2\r\n");
}

/// The store's own count of the memory its keys account for (INFO's
/// used_memory_dataset: used_memory less the room the shards' tables keep for growth,
/// which stays when keys go).
fn used_memory(r: &mut Raw) -> u64 {
    let info = r.call(&["INFO", "memory"]);
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory_dataset:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory_dataset in INFO")
}

/// Element-level writes adjust the memory count by what they change: emptying every
/// collection brings it back to where it was (a drift would show, or underflow).
#[test]
fn memory_accounting_returns_to_baseline() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "anchor", "x"]), "+OK\r\n");
    let base = used_memory(&mut r);
    let mut c = srv.client();
    let items: Vec<String> = (0..2000)
        .map(|i| format!("element-{i}-{}", "x".repeat(i % 50)))
        .collect();
    let _: i64 = c.rpush("l", &items).unwrap();
    let _: i64 = c.lpush("l", &items[..100]).unwrap();
    assert!(used_memory(&mut r) > base + 2000 * 32);
    assert_eq!(r.call(&["LSET", "l", "5", &"long".repeat(100)]), "+OK\r\n");
    assert_eq!(r.call(&["LSET", "l", "5", "short"]), "+OK\r\n");
    assert_eq!(
        r.call(&["LINSERT", "l", "BEFORE", "short", "ins"]),
        ":2101\r\n"
    );
    assert_eq!(r.call(&["LREM", "l", "0", "element-7-xxxxxxx"]), ":2\r\n");
    assert_eq!(r.call(&["LTRIM", "l", "10", "-10"]), "+OK\r\n");
    assert!(
        r.call(&["LMOVE", "l", "l2", "LEFT", "RIGHT"])
            .starts_with('$')
    );
    for i in 0..500 {
        let field = format!("f{i}");
        let _: i64 = c.hset("h", &field, "v".repeat(i % 70)).unwrap();
    }
    let _: i64 = c.hset("h", "f1", "changed to something longer").unwrap();
    let _: i64 = c.hincr("h", "n", 5).unwrap();
    let _: f64 = c.hincr("h", "n", 1.5).unwrap();
    assert_ne!(used_memory(&mut r), base);
    // Empty everything through element-level writes only.
    while r.call(&["RPOP", "l", "300"]) != "*-1\r\n" {}
    assert!(r.call(&["LPOP", "l2"]).starts_with('$'));
    let fields: Vec<String> = c.hkeys("h").unwrap();
    let _: i64 = c.hdel("h", &fields).unwrap();
    assert_eq!(r.call(&["EXISTS", "l", "l2", "h"]), ":0\r\n");
    assert_eq!(used_memory(&mut r), base);
}

/// Sum of the record sizes in a data directory's log segments (segments are
/// preallocated: the records end where a zero length starts).
fn logged_bytes(dir: &Path) -> usize {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with("wal-") && name.ends_with(".log")) {
            continue;
        }
        let seg = std::fs::read(&path).unwrap();
        let mut pos = 24;
        while pos + 16 <= seg.len() {
            let len = u32::from_le_bytes(seg[pos..pos + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break;
            }
            pos += 16 + len;
        }
        total += pos.min(seg.len()) - 24;
    }
    total
}

/// Writes to a large list or hash log what they change, not the collection.
#[test]
fn writes_to_large_collections_log_only_the_change() {
    let srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut c = srv.client();
    let items: Vec<String> = (0..20_000).map(|i| format!("{i:0>100}")).collect();
    for chunk in items.chunks(1000) {
        let _: i64 = c.rpush("big", chunk).unwrap();
    }
    let pairs: Vec<(String, String)> = items
        .iter()
        .take(5000)
        .map(|i| (i.clone(), i.clone()))
        .collect();
    let _: () = c.hset_multiple("bighash", &pairs).unwrap();
    let before = logged_bytes(srv.data_dir());
    assert!(
        before > 2_000_000,
        "the collections were logged ({before} bytes)"
    );
    let mut r = srv.raw();
    for i in 0..20 {
        let n = i.to_string();
        for cmd in [
            &["LPUSH", "big", &n][..],
            &["RPOP", "big"],
            &["LSET", "big", "100", &n],
            &["LINSERT", "big", "BEFORE", &n, "x"],
            &["LREM", "big", "1", "x"],
            &["LMOVE", "big", "big", "LEFT", "RIGHT"],
            &["LTRIM", "big", "1", "-1"],
            &["HSET", "bighash", &n, &n],
            &["HINCRBY", "bighash", "counter", "1"],
            &["HDEL", "bighash", &n],
        ] {
            assert!(!r.call(cmd).starts_with('-'), "{cmd:?}");
        }
    }
    let grown = logged_bytes(srv.data_dir()) - before;
    // 200 small writes: a few hundred bytes each at most, never a copy of a collection.
    assert!(grown < 200 * 400, "200 element writes logged {grown} bytes");
}

/// Lists and hashes written through every kind of element-level effect.
fn write_collections(c: &mut redis::Connection, tag: &str) {
    let l = format!("{tag}:list");
    let h = format!("{tag}:hash");
    let items: Vec<String> = (0..300).map(|i| format!("{tag}-{i}")).collect();
    let _: i64 = c.rpush(&l, &items).unwrap();
    let _: i64 = c.lpush(&l, &["head1", "head2"]).unwrap();
    let _: () = c.lset(&l, 3, "set-at-3").unwrap();
    let _: i64 = c.linsert_before(&l, "set-at-3", "inserted").unwrap();
    let _: i64 = c.lrem(&l, 1, format!("{tag}-7")).unwrap();
    let _: () = c.ltrim(&l, 1, -2).unwrap();
    let _: Option<String> = c.lpop(&l, None).unwrap();
    let _: Vec<String> = c.rpop(&l, std::num::NonZeroUsize::new(3)).unwrap();
    let _: String = c
        .lmove(
            &l,
            format!("{tag}:moved"),
            redis::Direction::Left,
            redis::Direction::Right,
        )
        .unwrap();
    let _: i64 = c.rpush(format!("{tag}:gone"), "x").unwrap();
    let _: Option<String> = c.lpop(format!("{tag}:gone"), None).unwrap();
    for i in 0..200 {
        let _: i64 = c.hset(&h, format!("f{i}"), format!("v{i}")).unwrap();
    }
    let _: i64 = c.hdel(&h, &["f1", "f2", "nope"]).unwrap();
    let _: i64 = c.hincr(&h, "count", 41).unwrap();
    let _: i64 = c.hincr(&h, "count", 1).unwrap();
    let _: f64 = c.hincr(&h, "float", 10.5).unwrap();
    let _: f64 = c.hincr(&h, "float", 0.1).unwrap();
    let _: bool = c.hset_nx(&h, "nx", "first").unwrap();
    let _: bool = c.hset_nx(&h, "nx", "second").unwrap();
    let _: () = c.expire(&l, 100_000).unwrap();
}

/// Everything the lists and hashes of one tag hold.
#[derive(Debug)]
struct Contents {
    list: Vec<String>,
    moved: Vec<String>,
    hash: Vec<(String, String)>,
    list_ttl: i64,
    emptied_exists: i64,
}

fn dump_collections(c: &mut redis::Connection, tag: &str) -> Contents {
    let mut hash: Vec<(String, String)> = c.hgetall(format!("{tag}:hash")).unwrap();
    hash.sort();
    Contents {
        list: c.lrange(format!("{tag}:list"), 0, -1).unwrap(),
        moved: c.lrange(format!("{tag}:moved"), 0, -1).unwrap(),
        hash,
        list_ttl: c.ttl(format!("{tag}:list")).unwrap(),
        emptied_exists: c.exists(format!("{tag}:gone")).unwrap(),
    }
}

fn assert_same_collections(before: &Contents, after: &Contents) {
    assert_eq!(before.list, after.list, "list");
    assert_eq!(before.moved, after.moved, "moved");
    assert_eq!(before.hash, after.hash, "hash");
    assert!(
        (99_990..=100_000).contains(&after.list_ttl),
        "ttl {}",
        after.list_ttl
    );
    assert_eq!(after.emptied_exists, 0, "an emptied list stays deleted");
    assert_eq!(before.hash.len(), 201);
    assert!(before.hash.contains(&("float".into(), "10.6".into())));
    assert!(before.hash.contains(&("nx".into(), "first".into())));
}

#[test]
fn lists_and_hashes_survive_sigkill_through_the_log() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut c = srv.client();
    write_collections(&mut c, "a");
    let before = dump_collections(&mut c, "a");
    srv.kill9();
    srv.restart();
    let mut c = srv.client();
    assert_same_collections(&before, &dump_collections(&mut c, "a"));
    // And again, with the replayed state as the base for more element-level writes.
    write_collections(&mut c, "b");
    let before_b = dump_collections(&mut c, "b");
    srv.kill9();
    srv.restart();
    let mut c = srv.client();
    assert_same_collections(&before, &dump_collections(&mut c, "a"));
    assert_same_collections(&before_b, &dump_collections(&mut c, "b"));
}

#[test]
fn lists_and_hashes_survive_sigkill_across_a_snapshot() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut c = srv.client();
    write_collections(&mut c, "a");
    assert_eq!(srv.raw().call(&["SAVE"]), "+OK\r\n");
    // Element-level writes after the snapshot apply to the collections it holds.
    let _: i64 = c.rpush("a:list", "after-save").unwrap();
    let _: i64 = c.hset("a:hash", "after", "save").unwrap();
    let _: i64 = c.hdel("a:hash", "f3").unwrap();
    write_collections(&mut c, "b");
    let before_a = dump_collections(&mut c, "a");
    let before_b = dump_collections(&mut c, "b");
    srv.kill9();
    srv.restart();
    let mut c = srv.client();
    let after_a = dump_collections(&mut c, "a");
    assert_eq!(after_a.list.last().map(|s| s.as_str()), Some("after-save"));
    assert_eq!(before_a.list, after_a.list);
    assert_eq!(before_a.hash, after_a.hash);
    assert_same_collections(&before_b, &dump_collections(&mut c, "b"));
    // Once more from a snapshot that holds all of it.
    assert_eq!(srv.raw().call(&["SAVE"]), "+OK\r\n");
    srv.kill9();
    srv.restart();
    let mut c = srv.client();
    assert_eq!(before_a.list, dump_collections(&mut c, "a").list);
    assert_same_collections(&before_b, &dump_collections(&mut c, "b"));
}

/// A list changed in place before its deadline must still be expired after a restart
/// past the deadline, and one whose deadline was removed must survive whole: replay
/// applies the log to the expired key rather than dropping it first.
#[test]
fn deadlines_hold_across_replay_of_element_writes() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut r = srv.raw();
    assert_eq!(r.call(&["RPUSH", "snap:gone", "a"]), ":1\r\n");
    assert_eq!(r.call(&["PEXPIRE", "snap:gone", "1500"]), ":1\r\n");
    assert_eq!(r.call(&["RPUSH", "snap:kept", "a"]), ":1\r\n");
    assert_eq!(r.call(&["PEXPIRE", "snap:kept", "1500"]), ":1\r\n");
    assert_eq!(r.call(&["SAVE"]), "+OK\r\n");
    assert_eq!(r.call(&["RPUSH", "snap:gone", "b"]), ":2\r\n");
    assert_eq!(r.call(&["PERSIST", "snap:kept"]), ":1\r\n");
    assert_eq!(r.call(&["RPUSH", "snap:kept", "b"]), ":2\r\n");
    assert_eq!(r.call(&["RPUSH", "log:gone", "a"]), ":1\r\n");
    assert_eq!(r.call(&["PEXPIRE", "log:gone", "1500"]), ":1\r\n");
    assert_eq!(r.call(&["RPUSH", "log:gone", "b"]), ":2\r\n");
    assert_eq!(r.call(&["HSET", "log:hash", "f", "v"]), ":1\r\n");
    assert_eq!(r.call(&["PEXPIRE", "log:hash", "1500"]), ":1\r\n");
    assert_eq!(r.call(&["HSET", "log:hash", "g", "w"]), ":1\r\n");
    assert_eq!(r.call(&["RPUSH", "log:kept", "a"]), ":1\r\n");
    assert_eq!(r.call(&["PEXPIRE", "log:kept", "1500"]), ":1\r\n");
    assert_eq!(r.call(&["PERSIST", "log:kept"]), ":1\r\n");
    assert_eq!(r.call(&["RPUSH", "log:kept", "b"]), ":2\r\n");
    // Killed before the deadlines pass (no expiry cycle deletes them first), restarted
    // after.
    srv.kill9();
    std::thread::sleep(Duration::from_millis(1700));
    srv.restart();
    let mut r = srv.raw();
    for gone in ["snap:gone", "log:gone", "log:hash"] {
        assert_eq!(r.call(&["EXISTS", gone]), ":0\r\n", "{gone}");
    }
    for kept in ["snap:kept", "log:kept"] {
        assert_eq!(range(&mut r, kept), bulks(&["a", "b"]), "{kept}");
        assert_eq!(r.call(&["TTL", kept]), ":-1\r\n", "{kept}");
    }
}

//! Sorted-set commands. Expected raw replies were checked against redis-server 7.0.15,
//! except where 7.2 differs and 7.2 is followed: doubles are written in their shortest
//! round-trip form (`0.1`, not 7.0's `0.10000000000000001`), and ZRANK/ZREVRANK take
//! WITHSCORE.

use std::collections::HashSet;

use redis::Commands;

use crate::sets::{WRONGTYPE, bulks};
use crate::util::{Raw, Server};

const SYNTAX: &str = "-ERR syntax error\r\n";
const NOT_INT: &str = "-ERR value is not an integer or out of range\r\n";
const NOT_FLOAT: &str = "-ERR value is not a valid float\r\n";
const NOT_FLOAT_RANGE: &str = "-ERR min or max is not a float\r\n";
const NOT_LEX_RANGE: &str = "-ERR min or max not valid string range item\r\n";

/// A raw array of bulk strings.
fn arr(items: &[&str]) -> String {
    let mut s = format!("*{}\r\n", items.len());
    for i in items {
        s.push_str(&format!("${}\r\n{i}\r\n", i.len()));
    }
    s
}

fn hello3(r: &mut Raw) {
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
}

/// `ZADD key 1 a 2 b 3 c 4 d 5 e`.
fn abcde(r: &mut Raw, key: &str) {
    assert_eq!(
        r.call(&[
            "ZADD", key, "1", "a", "2", "b", "3", "c", "4", "d", "5", "e"
        ]),
        ":5\r\n"
    );
}

#[test]
fn zadd_options_and_errors() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]),
        ":3\r\n"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "NX", "XX", "1", "a"]),
        "-ERR XX and NX options at the same time are not compatible\r\n"
    );
    let gtlt = "-ERR GT, LT, and/or NX options at the same time are not compatible\r\n";
    assert_eq!(r.call(&["ZADD", "z", "GT", "LT", "1", "a"]), gtlt);
    assert_eq!(r.call(&["ZADD", "z", "NX", "GT", "1", "a"]), gtlt);
    assert_eq!(r.call(&["ZADD", "z", "lt", "nx", "1", "a"]), gtlt);
    assert_eq!(
        r.call(&["ZADD", "z", "INCR", "1", "a", "2", "b"]),
        "-ERR INCR option supports a single increment-element pair\r\n"
    );
    assert_eq!(r.call(&["ZADD", "z", "1", "a", "2"]), SYNTAX);
    assert_eq!(r.call(&["ZADD", "z", "foo", "1", "a"]), SYNTAX);
    assert_eq!(r.call(&["ZADD", "z", "x", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZADD", "z", "nan", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZADD", "z", " 1", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZADD", "z", "1 ", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZADD", "z", "", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZADD", "z", "1e400", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZADD", "z", "1e-400", "a"]), NOT_FLOAT);
    // A bad score anywhere means nothing is added.
    assert_eq!(r.call(&["ZADD", "z", "1", "new", "x", "b"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZSCORE", "z", "new"]), "$-1\r\n");
    // strtod's forms: hex, signs, exponents, infinities.
    assert_eq!(
        r.call(&[
            "ZADD", "f", "0x10", "hex", "+5", "plus", ".5", "dot", "5.", "dot2", "1e5", "e5",
            "0x1p4", "hexp", "-0x1.8p1", "hexn", "infinity", "inf", "-INF", "ninf"
        ]),
        ":9\r\n"
    );
    assert_eq!(
        r.call(&["ZRANGE", "f", "0", "-1", "WITHSCORES"]),
        arr(&[
            "ninf", "-inf", "hexn", "-3", "dot", "0.5", "dot2", "5", "plus", "5", "hex", "16",
            "hexp", "16", "e5", "100000", "inf", "inf"
        ])
    );
    // CH counts changed scores too; NX, XX, GT, LT filter per member.
    assert_eq!(
        r.call(&["ZADD", "z", "CH", "5", "a", "2", "b", "7", "new"]),
        ":2\r\n"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "GT", "CH", "1", "a", "9", "b"]),
        ":1\r\n"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "LT", "CH", "10", "b", "0", "c"]),
        ":1\r\n"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "NX", "100", "a", "1", "nx"]),
        ":1\r\n"
    );
    assert_eq!(
        r.call(&["ZADD", "z", "XX", "CH", "6", "a", "1", "xx"]),
        ":1\r\n"
    );
    assert_eq!(r.call(&["ZADD", "z", "GT", "0", "gt"]), ":1\r\n");
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        arr(&[
            "c", "0", "gt", "0", "nx", "1", "a", "6", "new", "7", "b", "9"
        ])
    );
    // A member named twice: the second is an update.
    assert_eq!(r.call(&["ZADD", "d", "1", "a", "2", "a"]), ":1\r\n");
    assert_eq!(r.call(&["ZADD", "d", "CH", "3", "a", "4", "a"]), ":2\r\n");
    assert_eq!(r.call(&["ZSCORE", "d", "a"]), "$1\r\n4\r\n");
    // XX on a missing key creates nothing.
    assert_eq!(r.call(&["ZADD", "nk", "XX", "1", "a"]), ":0\r\n");
    assert_eq!(r.call(&["ZADD", "nk", "XX", "INCR", "1", "a"]), "$-1\r\n");
    assert_eq!(r.call(&["EXISTS", "nk"]), ":0\r\n");
    for args in [
        &["ZADD", "z"][..],
        &["ZADD", "z", "1"],
        &["ZADD", "z", "CH"],
    ] {
        assert_eq!(
            r.call(args),
            "-ERR wrong number of arguments for 'zadd' command\r\n"
        );
    }
}

#[test]
fn incr_and_nan() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["ZADD", "z", "INCR", "1", "a"]), "$1\r\n1\r\n");
    assert_eq!(r.call(&["ZADD", "z", "INCR", "1.5", "a"]), "$3\r\n2.5\r\n");
    assert_eq!(r.call(&["ZADD", "z", "NX", "INCR", "1", "a"]), "$-1\r\n");
    assert_eq!(r.call(&["ZADD", "z", "XX", "INCR", "1", "q"]), "$-1\r\n");
    // GT with an increment that does not raise the score: nothing, nil.
    assert_eq!(r.call(&["ZADD", "z", "GT", "INCR", "0", "a"]), "$-1\r\n");
    assert_eq!(
        r.call(&["ZADD", "z", "LT", "INCR", "-1", "a"]),
        "$3\r\n1.5\r\n"
    );
    assert_eq!(r.call(&["ZINCRBY", "z", "2.5", "a"]), "$1\r\n4\r\n");
    assert_eq!(r.call(&["ZINCRBY", "z", "1", "new"]), "$1\r\n1\r\n");
    assert_eq!(r.call(&["ZINCRBY", "z", "x", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZINCRBY", "z", "1e400", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZINCRBY", "z", "inf", "a"]), "$3\r\ninf\r\n");
    let nan = "-ERR resulting score is not a number (NaN)\r\n";
    assert_eq!(r.call(&["ZINCRBY", "z", "-inf", "a"]), nan);
    assert_eq!(r.call(&["ZADD", "z", "INCR", "-inf", "a"]), nan);
    assert_eq!(r.call(&["ZSCORE", "z", "a"]), "$3\r\ninf\r\n");
    assert_eq!(
        r.call(&["ZINCRBY", "z", "1"]),
        "-ERR wrong number of arguments for 'zincrby' command\r\n"
    );
    hello3(&mut r);
    assert_eq!(r.call(&["ZINCRBY", "z", "0.25", "new"]), ",1.25\r\n");
    assert_eq!(r.call(&["ZADD", "z", "NX", "INCR", "1", "new"]), "_\r\n");
}

#[test]
fn scores_are_doubles() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&[
            "ZADD",
            "f",
            "0.1",
            "a",
            "0.2",
            "b",
            "1e20",
            "c",
            "1.5e-7",
            "d",
            "123456789012",
            "e",
            "-2.5",
            "g"
        ]),
        ":6\r\n"
    );
    assert_eq!(r.call(&["ZSCORE", "f", "a"]), "$3\r\n0.1\r\n");
    assert_eq!(
        r.call(&["ZMSCORE", "f", "a", "nope", "c", "d", "e"]),
        "*5\r\n$3\r\n0.1\r\n$-1\r\n$5\r\n1e+20\r\n$7\r\n1.5e-07\r\n$12\r\n123456789012\r\n"
    );
    assert_eq!(r.call(&["ZSCORE", "f", "nope"]), "$-1\r\n");
    assert_eq!(r.call(&["ZSCORE", "nokey", "a"]), "$-1\r\n");
    assert_eq!(r.call(&["ZMSCORE", "nokey", "a"]), "*1\r\n$-1\r\n");
    hello3(&mut r);
    assert_eq!(r.call(&["ZSCORE", "f", "g"]), ",-2.5\r\n");
    assert_eq!(r.call(&["ZSCORE", "f", "nope"]), "_\r\n");
    assert_eq!(
        r.call(&["ZMSCORE", "f", "a", "nope"]),
        "*2\r\n,0.1\r\n_\r\n"
    );
    let mut c = srv.client();
    let s: f64 = c.zscore("f", "b").unwrap();
    assert_eq!(s, 0.2);
}

#[test]
fn negative_zero_as_redis_stores_it() {
    let srv = Server::start();
    let mut r = srv.raw();
    // Small sorted sets (Redis's listpack) store -0 as 0; it ties with 0 on the member.
    assert_eq!(
        r.call(&["ZADD", "small", "0", "b", "0", "a", "-0", "c"]),
        ":3\r\n"
    );
    assert_eq!(
        r.call(&["ZRANGE", "small", "0", "-1", "WITHSCORES"]),
        arr(&["a", "0", "b", "0", "c", "0"])
    );
    assert_eq!(r.call(&["ZINCRBY", "small", "-0", "c"]), "$1\r\n0\r\n");
    // The reply of an increment is the computed score, even where the set stores 0.
    assert_eq!(
        r.call(&["ZADD", "small", "INCR", "-0", "new"]),
        "$2\r\n-0\r\n"
    );
    assert_eq!(r.call(&["ZSCORE", "small", "new"]), "$1\r\n0\r\n");
    // Big ones (Redis's skiplist) keep the sign.
    let mut args = vec!["ZADD".to_string(), "big".to_string()];
    for i in 0..200 {
        args.push(i.to_string());
        args.push(format!("m{i}"));
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    assert_eq!(r.call(&args), ":200\r\n");
    assert_eq!(r.call(&["ZADD", "big", "-0", "c", "0", "b"]), ":2\r\n");
    assert_eq!(r.call(&["ZSCORE", "big", "c"]), "$2\r\n-0\r\n");
    assert_eq!(r.call(&["ZINCRBY", "big", "-0", "c"]), "$2\r\n-0\r\n");
    assert_eq!(
        r.call(&["ZRANGEBYSCORE", "big", "0", "0", "WITHSCORES"]),
        arr(&["b", "0", "c", "-0", "m0", "0"])
    );
    // Setting 0 over -0 is no change (0 == -0), as in Redis.
    assert_eq!(r.call(&["ZADD", "big", "CH", "0", "c"]), ":0\r\n");
    assert_eq!(r.call(&["ZSCORE", "big", "c"]), "$2\r\n-0\r\n");
}

#[test]
fn zrem_and_counts() {
    let srv = Server::start();
    let mut r = srv.raw();
    abcde(&mut r, "z");
    assert_eq!(r.call(&["ZCARD", "z"]), ":5\r\n");
    assert_eq!(r.call(&["ZCARD", "nokey"]), ":0\r\n");
    assert_eq!(r.call(&["ZCOUNT", "z", "-inf", "+inf"]), ":5\r\n");
    assert_eq!(r.call(&["ZCOUNT", "z", "(1", "3"]), ":2\r\n");
    assert_eq!(r.call(&["ZCOUNT", "z", "(1", "(3"]), ":1\r\n");
    assert_eq!(r.call(&["ZCOUNT", "z", "3", "1"]), ":0\r\n");
    assert_eq!(r.call(&["ZCOUNT", "z", "(inf", "+inf"]), ":0\r\n");
    // strtod's leniency for range ends: leading space, hex, empty (0).
    assert_eq!(r.call(&["ZCOUNT", "z", " 2", "0x4"]), ":3\r\n");
    assert_eq!(r.call(&["ZCOUNT", "z", "", "3"]), ":3\r\n");
    assert_eq!(r.call(&["ZCOUNT", "z", "(", "3"]), ":3\r\n");
    assert_eq!(r.call(&["ZCOUNT", "z", "-1e400", "1e400"]), ":5\r\n");
    for bad in ["x", "1 ", "nan", "((1"] {
        assert_eq!(r.call(&["ZCOUNT", "z", bad, "1"]), NOT_FLOAT_RANGE, "{bad}");
    }
    // Range errors come before the key is looked at.
    assert_eq!(r.call(&["ZCOUNT", "nokey", "a", "b"]), NOT_FLOAT_RANGE);
    assert_eq!(r.call(&["ZCOUNT", "nokey", "0", "1"]), ":0\r\n");
    assert_eq!(r.call(&["ZLEXCOUNT", "z", "-", "+"]), ":5\r\n");
    assert_eq!(r.call(&["ZLEXCOUNT", "z", "[b", "(d"]), ":2\r\n");
    assert_eq!(r.call(&["ZLEXCOUNT", "z", "[", "+"]), ":5\r\n");
    assert_eq!(r.call(&["ZLEXCOUNT", "z", "(", "+"]), ":5\r\n");
    assert_eq!(r.call(&["ZLEXCOUNT", "z", "-", "-"]), ":0\r\n");
    assert_eq!(r.call(&["ZLEXCOUNT", "z", "+", "-"]), ":0\r\n");
    assert_eq!(r.call(&["ZLEXCOUNT", "z", "+", "+"]), ":0\r\n");
    for (min, max) in [("", "+"), ("a", "+"), ("-a", "+"), ("-", "+b")] {
        assert_eq!(r.call(&["ZLEXCOUNT", "z", min, max]), NOT_LEX_RANGE);
    }
    assert_eq!(r.call(&["ZLEXCOUNT", "nokey", "a", "b"]), NOT_LEX_RANGE);
    assert_eq!(r.call(&["ZREM", "z", "a", "nope", "a"]), ":1\r\n");
    assert_eq!(r.call(&["ZREM", "nokey", "a"]), ":0\r\n");
    assert_eq!(r.call(&["ZREM", "z", "b", "c", "d", "e"]), ":4\r\n");
    assert_eq!(r.call(&["EXISTS", "z"]), ":0\r\n");
}

#[test]
fn ranges_by_rank_score_and_lex() {
    let srv = Server::start();
    let mut r = srv.raw();
    abcde(&mut r, "z");
    let all = arr(&["a", "b", "c", "d", "e"]);
    assert_eq!(r.call(&["ZRANGE", "z", "0", "-1"]), all);
    assert_eq!(r.call(&["ZRANGE", "z", "-100", "100"]), all);
    assert_eq!(r.call(&["ZRANGE", "z", "3", "1"]), "*0\r\n");
    assert_eq!(r.call(&["ZRANGE", "z", "-2", "-1"]), arr(&["d", "e"]));
    assert_eq!(r.call(&["ZRANGE", "z", "5", "10"]), "*0\r\n");
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "1", "REV", "WITHSCORES"]),
        arr(&["e", "5", "d", "4"])
    );
    assert_eq!(r.call(&["ZRANGE", "z", "-1", "-1", "REV"]), arr(&["a"]));
    assert_eq!(
        r.call(&["ZREVRANGE", "z", "0", "1", "WITHSCORES"]),
        arr(&["e", "5", "d", "4"])
    );
    assert_eq!(r.call(&["ZREVRANGE", "z", "-2", "-1"]), arr(&["b", "a"]));
    // BYSCORE, with exclusive ends, LIMIT and REV (which takes max first).
    assert_eq!(
        r.call(&["ZRANGE", "z", "(1", "3", "BYSCORE"]),
        arr(&["b", "c"])
    );
    assert_eq!(
        r.call(&["ZRANGE", "z", "3", "(1", "BYSCORE", "REV"]),
        arr(&["c", "b"])
    );
    assert_eq!(r.call(&["ZRANGE", "z", "(1", "(1", "BYSCORE"]), "*0\r\n");
    assert_eq!(
        r.call(&[
            "ZRANGE",
            "z",
            "+inf",
            "-inf",
            "BYSCORE",
            "REV",
            "LIMIT",
            "1",
            "2",
            "WITHSCORES"
        ]),
        arr(&["d", "4", "c", "3"])
    );
    for (offset, count, want) in [
        ("-1", "2", "*0\r\n".to_string()),
        ("1", "0", "*0\r\n".to_string()),
        ("1", "-5", arr(&["b", "c", "d", "e"])),
        ("4", "5", arr(&["e"])),
        ("5", "5", "*0\r\n".to_string()),
    ] {
        assert_eq!(
            r.call(&[
                "ZRANGE", "z", "-inf", "+inf", "BYSCORE", "LIMIT", offset, count
            ]),
            want,
            "LIMIT {offset} {count}"
        );
    }
    assert_eq!(
        r.call(&[
            "ZRANGEBYSCORE",
            "z",
            "-inf",
            "+inf",
            "LIMIT",
            "1",
            "2",
            "WITHSCORES"
        ]),
        arr(&["b", "2", "c", "3"])
    );
    assert_eq!(
        r.call(&["ZRANGEBYSCORE", "z", "(2", "+inf"]),
        arr(&["c", "d", "e"])
    );
    assert_eq!(
        r.call(&["ZREVRANGEBYSCORE", "z", "+inf", "-inf", "LIMIT", "1", "-1"]),
        arr(&["d", "c", "b", "a"])
    );
    assert_eq!(r.call(&["ZREVRANGEBYSCORE", "z", "(4", "(2"]), arr(&["c"]));
    // BYLEX.
    assert_eq!(
        r.call(&["ZRANGE", "z", "[a", "(c", "BYLEX"]),
        arr(&["a", "b"])
    );
    assert_eq!(
        r.call(&["ZRANGE", "z", "[d", "[b", "BYLEX", "REV"]),
        arr(&["d", "c", "b"])
    );
    assert_eq!(
        r.call(&["ZRANGE", "z", "[b", "[d", "BYLEX", "REV"]),
        "*0\r\n"
    );
    assert_eq!(
        r.call(&["ZRANGE", "z", "+", "-", "BYLEX", "REV", "LIMIT", "1", "2"]),
        arr(&["d", "c"])
    );
    assert_eq!(
        r.call(&["ZRANGEBYLEX", "z", "-", "+", "LIMIT", "0", "2"]),
        arr(&["a", "b"])
    );
    assert_eq!(r.call(&["ZRANGEBYLEX", "z", "(b", "[d"]), arr(&["c", "d"]));
    assert_eq!(
        r.call(&["ZREVRANGEBYLEX", "z", "[d", "(b"]),
        arr(&["d", "c"])
    );
    assert_eq!(r.call(&["ZREVRANGEBYLEX", "z", "-", "+"]), "*0\r\n");
    // Errors, in Redis's order.
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "-1", "LIMIT", "0", "1"]),
        "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX\r\n"
    );
    assert_eq!(
        r.call(&["ZREVRANGE", "z", "0", "1", "LIMIT", "0", "1"]),
        "-ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX\r\n"
    );
    let lex_scores = "-ERR syntax error, WITHSCORES not supported in combination with BYLEX\r\n";
    assert_eq!(
        r.call(&["ZRANGE", "z", "a", "b", "BYLEX", "WITHSCORES"]),
        lex_scores
    );
    assert_eq!(
        r.call(&["ZRANGEBYLEX", "z", "-", "+", "WITHSCORES"]),
        lex_scores
    );
    for args in [
        &["ZRANGE", "z", "0", "1", "BYSCORE", "BYLEX"][..],
        &["ZRANGE", "z", "0", "-1", "REV", "REV"],
        &["ZRANGE", "z", "0", "-1", "BYSCORE", "BYSCORE"],
        &["ZRANGE", "z", "0", "1", "foo"],
        &["ZRANGE", "z", "0", "1", "LIMIT", "1"],
        &["ZRANGEBYSCORE", "z", "-inf", "+inf", "REV"],
        &["ZRANGEBYSCORE", "z", "-inf", "+inf", "BYSCORE"],
        &["ZREVRANGE", "z", "0", "1", "REV"],
        &["ZREVRANGE", "z", "0", "1", "BYSCORE"],
    ] {
        assert_eq!(r.call(args), SYNTAX, "{args:?}");
    }
    assert_eq!(
        r.call(&["ZRANGE", "z", "x", "1", "BYSCORE"]),
        NOT_FLOAT_RANGE
    );
    assert_eq!(r.call(&["ZRANGE", "z", "a", "b", "BYLEX"]), NOT_LEX_RANGE);
    assert_eq!(r.call(&["ZRANGEBYLEX", "z", "a", "+"]), NOT_LEX_RANGE);
    assert_eq!(r.call(&["ZRANGE", "z", "0", "x"]), NOT_INT);
    assert_eq!(r.call(&["ZRANGE", "nokey", "x", "1"]), NOT_INT);
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "1", "BYSCORE", "LIMIT", "x", "1"]),
        NOT_INT
    );
    // Repeated WITHSCORES and LIMIT are allowed.
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "0", "WITHSCORES", "WITHSCORES"]),
        arr(&["a", "1"])
    );
    assert_eq!(
        r.call(&[
            "ZRANGEBYSCORE",
            "z",
            "0",
            "9",
            "LIMIT",
            "0",
            "1",
            "LIMIT",
            "0",
            "2"
        ]),
        arr(&["a", "b"])
    );
    assert_eq!(r.call(&["ZRANGE", "nokey", "0", "1"]), "*0\r\n");
    // RESP3: [member, score] pairs.
    hello3(&mut r);
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "1", "WITHSCORES"]),
        "*2\r\n*2\r\n$1\r\na\r\n,1\r\n*2\r\n$1\r\nb\r\n,2\r\n"
    );
    assert_eq!(
        r.call(&["ZREVRANGEBYSCORE", "z", "5", "(4", "WITHSCORES"]),
        "*1\r\n*2\r\n$1\r\ne\r\n,5\r\n"
    );
    assert_eq!(r.call(&["ZRANGE", "z", "0", "1"]), arr(&["a", "b"]));
}

#[test]
fn zrangestore() {
    let srv = Server::start();
    let mut r = srv.raw();
    abcde(&mut r, "z");
    assert_eq!(r.call(&["ZRANGESTORE", "dst", "z", "0", "1"]), ":2\r\n");
    assert_eq!(
        r.call(&["ZRANGE", "dst", "0", "-1", "WITHSCORES"]),
        arr(&["a", "1", "b", "2"])
    );
    assert_eq!(
        r.call(&[
            "ZRANGESTORE",
            "dst",
            "z",
            "(1",
            "+inf",
            "BYSCORE",
            "LIMIT",
            "1",
            "2"
        ]),
        ":2\r\n"
    );
    assert_eq!(
        r.call(&["ZRANGE", "dst", "0", "-1", "WITHSCORES"]),
        arr(&["c", "3", "d", "4"])
    );
    assert_eq!(
        r.call(&["ZRANGESTORE", "dst", "z", "+", "[c", "BYLEX", "REV"]),
        ":3\r\n"
    );
    assert_eq!(r.call(&["ZRANGE", "dst", "0", "-1"]), arr(&["c", "d", "e"]));
    assert_eq!(
        r.call(&["ZRANGESTORE", "dst", "z", "0", "-1", "WITHSCORES"]),
        SYNTAX
    );
    // An empty result deletes the destination.
    assert_eq!(r.call(&["ZRANGESTORE", "dst", "z", "5", "10"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "dst"]), ":0\r\n");
    assert_eq!(r.call(&["SET", "dst", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["ZRANGESTORE", "dst", "nokey", "0", "1"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "dst"]), ":0\r\n");
    // The destination is overwritten whatever it held; the source can be it.
    assert_eq!(r.call(&["SET", "str", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["ZRANGESTORE", "str", "z", "0", "0"]), ":1\r\n");
    assert_eq!(r.call(&["TYPE", "str"]), "+zset\r\n");
    assert_eq!(r.call(&["ZRANGESTORE", "z", "z", "0", "1"]), ":2\r\n");
    assert_eq!(r.call(&["ZRANGE", "z", "0", "-1"]), arr(&["a", "b"]));
    assert_eq!(r.call(&["SET", "s", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["ZRANGESTORE", "d", "s", "0", "1"]), WRONGTYPE);
}

#[test]
fn ranks() {
    let srv = Server::start();
    let mut r = srv.raw();
    abcde(&mut r, "z");
    assert_eq!(r.call(&["ZRANK", "z", "a"]), ":0\r\n");
    assert_eq!(r.call(&["ZRANK", "z", "e"]), ":4\r\n");
    assert_eq!(r.call(&["ZREVRANK", "z", "a"]), ":4\r\n");
    assert_eq!(r.call(&["ZREVRANK", "z", "e"]), ":0\r\n");
    assert_eq!(r.call(&["ZRANK", "z", "nope"]), "$-1\r\n");
    assert_eq!(r.call(&["ZREVRANK", "nokey", "a"]), "$-1\r\n");
    // WITHSCORE (Redis 7.2).
    assert_eq!(
        r.call(&["ZRANK", "z", "b", "WITHSCORE"]),
        "*2\r\n:1\r\n$1\r\n2\r\n"
    );
    assert_eq!(
        r.call(&["ZREVRANK", "z", "b", "withscore"]),
        "*2\r\n:3\r\n$1\r\n2\r\n"
    );
    assert_eq!(r.call(&["ZRANK", "z", "nope", "WITHSCORE"]), "*-1\r\n");
    assert_eq!(r.call(&["ZRANK", "nokey", "a", "WITHSCORE"]), "*-1\r\n");
    assert_eq!(r.call(&["ZRANK", "z", "a", "WITHSCORES"]), SYNTAX);
    assert_eq!(
        r.call(&["ZRANK", "z", "a", "WITHSCORE", "x"]),
        "-ERR wrong number of arguments for 'zrank' command\r\n"
    );
    assert_eq!(
        r.call(&["ZREVRANK", "z"]),
        "-ERR wrong number of arguments for 'zrevrank' command\r\n"
    );
    hello3(&mut r);
    assert_eq!(
        r.call(&["ZRANK", "z", "b", "WITHSCORE"]),
        "*2\r\n:1\r\n,2\r\n"
    );
    assert_eq!(r.call(&["ZRANK", "z", "nope", "WITHSCORE"]), "_\r\n");
    assert_eq!(r.call(&["ZRANK", "z", "nope"]), "_\r\n");
}

#[test]
fn big_sorted_set_ranks_and_ranges_match_a_model() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut c = srv.client();
    // Enough members for many blocks of the rank index, with ties on the score.
    let n = 5000;
    let mut model: Vec<(i64, String)> = (0..n)
        .map(|i| ((i * 7919) % 1000, format!("m{i:05}")))
        .collect();
    let items: Vec<(i64, String)> = model.clone();
    let _: i64 = c.zadd_multiple("big", &items).unwrap();
    model.sort();
    // Remove every third member, add some back with new scores.
    let removed: Vec<String> = model.iter().step_by(3).map(|(_, m)| m.clone()).collect();
    let _: i64 = c.zrem("big", &removed).unwrap();
    model.retain(|(_, m)| !removed.contains(m));
    for (i, m) in removed.iter().take(500).enumerate() {
        let score = 2000 + i as i64;
        let _: i64 = c.zadd("big", m, score).unwrap();
        model.push((score, m.clone()));
    }
    model.sort();
    assert_eq!(r.call(&["ZCARD", "big"]), format!(":{}\r\n", model.len()));
    for rank in [0, 1, 255, 256, 257, 1000, model.len() / 2, model.len() - 1] {
        let (score, member) = &model[rank];
        assert_eq!(r.call(&["ZRANK", "big", member]), format!(":{rank}\r\n"));
        assert_eq!(
            r.call(&["ZREVRANK", "big", member]),
            format!(":{}\r\n", model.len() - 1 - rank)
        );
        let got = bulks(&r.call(&[
            "ZRANGE",
            "big",
            &rank.to_string(),
            &(rank + 2).to_string(),
            "WITHSCORES",
        ]));
        let want: Vec<String> = model[rank..(rank + 3).min(model.len())]
            .iter()
            .flat_map(|(s, m)| [m.clone(), s.to_string()])
            .collect();
        assert_eq!(got, want, "rank {rank}");
        let count = model.iter().filter(|(s, _)| s == score).count();
        assert_eq!(
            r.call(&["ZCOUNT", "big", &score.to_string(), &score.to_string()]),
            format!(":{count}\r\n")
        );
    }
    let all: Vec<String> = c.zrange("big", 0, -1).unwrap();
    assert_eq!(
        all,
        model.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>()
    );
    let rev: Vec<String> = c.zrevrange("big", 0, -1).unwrap();
    assert_eq!(rev.len(), model.len());
    assert_eq!(rev.first(), model.last().map(|(_, m)| m));
    let mid: Vec<String> = c.zrangebyscore_limit("big", 500, "+inf", 10, 5).unwrap();
    let want: Vec<String> = model
        .iter()
        .filter(|(s, _)| *s >= 500)
        .skip(10)
        .take(5)
        .map(|(_, m)| m.clone())
        .collect();
    assert_eq!(mid, want);
    // Removing a range by rank from the middle keeps the index right.
    assert_eq!(
        r.call(&["ZREMRANGEBYRANK", "big", "100", "1099"]),
        ":1000\r\n"
    );
    model.drain(100..1100);
    let (score, member) = &model[150];
    assert_eq!(r.call(&["ZRANK", "big", member]), ":150\r\n");
    assert_eq!(
        r.call(&["ZSCORE", "big", member]),
        format!("${}\r\n{score}\r\n", score.to_string().len())
    );
}

#[test]
fn pops() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]),
        ":3\r\n"
    );
    assert_eq!(r.call(&["ZPOPMIN", "nokey"]), "*0\r\n");
    assert_eq!(r.call(&["ZPOPMIN", "nokey", "2"]), "*0\r\n");
    assert_eq!(r.call(&["ZPOPMIN", "z", "0"]), "*0\r\n");
    let positive = "-ERR value is out of range, must be positive\r\n";
    assert_eq!(r.call(&["ZPOPMIN", "z", "-1"]), positive);
    assert_eq!(r.call(&["ZPOPMIN", "z", "x"]), positive);
    assert_eq!(r.call(&["ZPOPMIN", "z", "1", "2"]), SYNTAX);
    assert_eq!(r.call(&["ZPOPMIN", "z", "1"]), arr(&["a", "1"]));
    assert_eq!(r.call(&["ZPOPMAX", "z"]), arr(&["c", "3"]));
    assert_eq!(r.call(&["ZADD", "z", "1", "a", "3", "c"]), ":2\r\n");
    assert_eq!(r.call(&["ZPOPMAX", "z", "2"]), arr(&["c", "3", "b", "2"]));
    assert_eq!(r.call(&["ZPOPMIN", "z", "10"]), arr(&["a", "1"]));
    assert_eq!(r.call(&["EXISTS", "z"]), ":0\r\n");
    // ZMPOP.
    assert_eq!(
        r.call(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]),
        ":3\r\n"
    );
    assert_eq!(
        r.call(&["ZMPOP", "2", "nokey", "z", "MIN"]),
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        r.call(&["ZMPOP", "2", "nokey", "z", "max", "COUNT", "5"]),
        "*2\r\n$1\r\nz\r\n*2\r\n*2\r\n$1\r\nc\r\n$1\r\n3\r\n*2\r\n$1\r\nb\r\n$1\r\n2\r\n"
    );
    assert_eq!(r.call(&["EXISTS", "z"]), ":0\r\n");
    assert_eq!(r.call(&["ZMPOP", "1", "nokey", "MIN"]), "*-1\r\n");
    let numkeys = "-ERR numkeys should be greater than 0\r\n";
    assert_eq!(r.call(&["ZMPOP", "0", "z", "MIN"]), numkeys);
    assert_eq!(r.call(&["ZMPOP", "-1", "z", "MIN"]), numkeys);
    assert_eq!(r.call(&["ZMPOP", "x", "z", "MIN"]), numkeys);
    let count = "-ERR count should be greater than 0\r\n";
    assert_eq!(r.call(&["ZMPOP", "1", "z", "MIN", "COUNT", "0"]), count);
    assert_eq!(r.call(&["ZMPOP", "1", "z", "MIN", "COUNT", "x"]), count);
    for args in [
        &["ZMPOP", "1", "z", "FOO"][..],
        &["ZMPOP", "1", "z", "MIN", "COUNT"],
        &["ZMPOP", "1", "z", "MIN", "COUNT", "1", "COUNT", "1"],
        &["ZMPOP", "1", "z", "MIN", "FOO"],
        &["ZMPOP", "3", "z", "MIN"],
        &["ZMPOP", "9223372036854775807", "z", "MIN"],
    ] {
        assert_eq!(r.call(args), SYNTAX, "{args:?}");
    }
    // Types are checked up to the first existing key only.
    assert_eq!(r.call(&["SET", "str", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["ZADD", "z", "1", "a"]), ":1\r\n");
    assert_eq!(r.call(&["ZMPOP", "2", "str", "z", "MIN"]), WRONGTYPE);
    assert_eq!(
        r.call(&["ZMPOP", "2", "z", "str", "MIN"]),
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    // RESP3: pairs when a count is given, and always for ZMPOP.
    assert_eq!(
        r.call(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]),
        ":3\r\n"
    );
    hello3(&mut r);
    assert_eq!(r.call(&["ZPOPMIN", "z"]), "*2\r\n$1\r\na\r\n,1\r\n");
    assert_eq!(
        r.call(&["ZPOPMIN", "z", "1"]),
        "*1\r\n*2\r\n$1\r\nb\r\n,2\r\n"
    );
    assert_eq!(
        r.call(&["ZMPOP", "1", "z", "MAX"]),
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nc\r\n,3\r\n"
    );
    assert_eq!(r.call(&["ZMPOP", "1", "z", "MAX"]), "_\r\n");
}

#[test]
fn zrandmember_counts() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]),
        ":3\r\n"
    );
    let scores = [("a", "1"), ("b", "2"), ("c", "3")];
    let one = bulks(&r.call(&["ZRANDMEMBER", "z"]));
    assert!(["a", "b", "c"].contains(&one[0].as_str()));
    for _ in 0..10 {
        let two = bulks(&r.call(&["ZRANDMEMBER", "z", "2", "WITHSCORES"]));
        assert_eq!(two.len(), 4);
        assert_ne!(two[0], two[2]);
        for pair in two.chunks(2) {
            assert!(
                scores.contains(&(pair[0].as_str(), pair[1].as_str())),
                "{pair:?}"
            );
        }
    }
    assert_eq!(bulks(&r.call(&["ZRANDMEMBER", "z", "5"])).len(), 3);
    let many = bulks(&r.call(&["ZRANDMEMBER", "z", "-60"]));
    assert_eq!(many.len(), 60);
    assert_eq!(many.iter().collect::<HashSet<_>>().len(), 3);
    assert_eq!(r.call(&["ZRANDMEMBER", "z", "0"]), "*0\r\n");
    assert_eq!(r.call(&["ZRANDMEMBER", "nokey"]), "$-1\r\n");
    assert_eq!(r.call(&["ZRANDMEMBER", "nokey", "2"]), "*0\r\n");
    assert_eq!(r.call(&["ZRANDMEMBER", "z", "2", "foo"]), SYNTAX);
    assert_eq!(
        r.call(&["ZRANDMEMBER", "z", "2", "WITHSCORES", "x"]),
        SYNTAX
    );
    assert_eq!(r.call(&["ZRANDMEMBER", "z", "x"]), NOT_INT);
    assert_eq!(
        r.call(&["ZRANDMEMBER", "z", "9223372036854775807", "WITHSCORES"]),
        "-ERR value is out of range\r\n"
    );
    hello3(&mut r);
    let reply = r.call(&["ZRANDMEMBER", "z", "-2", "WITHSCORES"]);
    assert!(reply.starts_with("*2\r\n*2\r\n$1\r\n"), "{reply:?}");
    assert_eq!(r.call(&["ZRANDMEMBER", "nokey"]), "_\r\n");
}

#[test]
fn zremrange() {
    let srv = Server::start();
    let mut r = srv.raw();
    abcde(&mut r, "z");
    assert_eq!(r.call(&["ZREMRANGEBYRANK", "z", "x", "1"]), NOT_INT);
    assert_eq!(
        r.call(&["ZREMRANGEBYSCORE", "z", "x", "1"]),
        NOT_FLOAT_RANGE
    );
    assert_eq!(r.call(&["ZREMRANGEBYLEX", "z", "x", "1"]), NOT_LEX_RANGE);
    assert_eq!(
        r.call(&["ZREMRANGEBYSCORE", "nokey", "x", "1"]),
        NOT_FLOAT_RANGE
    );
    assert_eq!(r.call(&["ZREMRANGEBYRANK", "nokey", "0", "1"]), ":0\r\n");
    assert_eq!(r.call(&["ZREMRANGEBYRANK", "z", "10", "20"]), ":0\r\n");
    assert_eq!(r.call(&["ZREMRANGEBYRANK", "z", "-1", "-1"]), ":1\r\n");
    assert_eq!(r.call(&["ZREMRANGEBYSCORE", "z", "(1", "2"]), ":1\r\n");
    assert_eq!(r.call(&["ZREMRANGEBYLEX", "z", "[a", "(c"]), ":1\r\n");
    assert_eq!(r.call(&["ZRANGE", "z", "0", "-1"]), arr(&["c", "d"]));
    assert_eq!(r.call(&["ZREMRANGEBYRANK", "z", "0", "-1"]), ":2\r\n");
    assert_eq!(r.call(&["EXISTS", "z"]), ":0\r\n");
    abcde(&mut r, "z");
    assert_eq!(r.call(&["ZREMRANGEBYSCORE", "z", "-inf", "+inf"]), ":5\r\n");
    assert_eq!(r.call(&["EXISTS", "z"]), ":0\r\n");
    abcde(&mut r, "z");
    assert_eq!(r.call(&["ZREMRANGEBYLEX", "z", "-", "+"]), ":5\r\n");
    assert_eq!(r.call(&["EXISTS", "z"]), ":0\r\n");
}

#[test]
fn unions_intersections_differences() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["ZADD", "z", "1", "a", "2", "b", "3", "c"]),
        ":3\r\n"
    );
    assert_eq!(
        r.call(&["ZADD", "z2", "10", "b", "20", "c", "30", "d"]),
        ":3\r\n"
    );
    assert_eq!(r.call(&["SADD", "s", "a", "d"]), ":2\r\n");
    assert_eq!(
        r.call(&["ZUNION", "2", "z", "z2", "WITHSCORES"]),
        arr(&["a", "1", "b", "12", "c", "23", "d", "30"])
    );
    assert_eq!(r.call(&["ZINTER", "2", "z", "z2"]), arr(&["b", "c"]));
    assert_eq!(
        r.call(&["ZDIFF", "2", "z", "z2", "WITHSCORES"]),
        arr(&["a", "1"])
    );
    assert_eq!(r.call(&["ZDIFF", "2", "z2", "z"]), arr(&["d"]));
    // Sets count as sorted sets with scores of 1.
    assert_eq!(
        r.call(&["ZUNION", "2", "z", "s", "WITHSCORES"]),
        arr(&["d", "1", "a", "2", "b", "2", "c", "3"])
    );
    assert_eq!(
        r.call(&["ZINTER", "2", "z", "s", "WITHSCORES"]),
        arr(&["a", "2"])
    );
    assert_eq!(
        r.call(&["ZUNION", "2", "z", "z2", "WEIGHTS", "2", "3", "WITHSCORES"]),
        arr(&["a", "2", "b", "34", "c", "66", "d", "90"])
    );
    assert_eq!(
        r.call(&["ZUNION", "2", "z", "z2", "AGGREGATE", "MAX", "WITHSCORES"]),
        arr(&["a", "1", "b", "10", "c", "20", "d", "30"])
    );
    assert_eq!(
        r.call(&["ZINTER", "2", "z", "z2", "AGGREGATE", "min", "WITHSCORES"]),
        arr(&["b", "2", "c", "3"])
    );
    assert_eq!(
        r.call(&[
            "ZINTER",
            "2",
            "z",
            "z2",
            "AGGREGATE",
            "max",
            "WEIGHTS",
            "1",
            "-1",
            "WITHSCORES"
        ]),
        arr(&["b", "2", "c", "3"])
    );
    // Infinities: inf + -inf is 0, 0 * inf is 0.
    assert_eq!(r.call(&["ZADD", "ninf", "-inf", "x"]), ":1\r\n");
    assert_eq!(r.call(&["ZADD", "pinf", "inf", "x"]), ":1\r\n");
    assert_eq!(
        r.call(&["ZUNION", "2", "ninf", "pinf", "WITHSCORES"]),
        arr(&["x", "0"])
    );
    assert_eq!(
        r.call(&[
            "ZINTER",
            "2",
            "pinf",
            "pinf",
            "WEIGHTS",
            "0",
            "1",
            "WITHSCORES"
        ]),
        arr(&["x", "inf"])
    );
    assert_eq!(
        r.call(&[
            "ZINTER",
            "2",
            "pinf",
            "pinf",
            "WEIGHTS",
            "1",
            "0",
            "AGGREGATE",
            "MIN",
            "WITHSCORES"
        ]),
        arr(&["x", "inf"])
    );
    // Missing keys are empty.
    assert_eq!(r.call(&["ZUNION", "1", "nokey"]), "*0\r\n");
    assert_eq!(r.call(&["ZINTER", "2", "z", "nokey"]), "*0\r\n");
    assert_eq!(r.call(&["ZDIFF", "2", "nokey", "z"]), "*0\r\n");
    // Errors.
    assert_eq!(r.call(&["ZUNION", "2", "z", "z2", "WEIGHTS", "1"]), SYNTAX);
    let weight = "-ERR weight value is not a float\r\n";
    assert_eq!(
        r.call(&["ZUNION", "2", "z", "z2", "WEIGHTS", "1", "x"]),
        weight
    );
    assert_eq!(
        r.call(&["ZUNION", "2", "z", "z2", "WEIGHTS", "1", "nan"]),
        weight
    );
    assert_eq!(
        r.call(&["ZUNION", "2", "z", "z2", "AGGREGATE", "foo"]),
        SYNTAX
    );
    assert_eq!(r.call(&["ZUNION", "2", "z", "z2", "AGGREGATE"]), SYNTAX);
    assert_eq!(r.call(&["ZUNION", "3", "z", "z2"]), SYNTAX);
    assert_eq!(r.call(&["ZUNION", "1", "z", "LIMIT", "1"]), SYNTAX);
    assert_eq!(
        r.call(&["ZDIFF", "2", "z", "z2", "WEIGHTS", "1", "1"]),
        SYNTAX
    );
    assert_eq!(
        r.call(&["ZDIFF", "2", "z", "z2", "AGGREGATE", "SUM"]),
        SYNTAX
    );
    assert_eq!(r.call(&["ZUNION", "x", "z"]), NOT_INT);
    for (cmd, args) in [
        ("zunion", &["ZUNION", "0", "z"][..]),
        ("zunion", &["ZUNION", "-1", "z"]),
        ("zinter", &["ZINTER", "0", "z"]),
        ("zdiff", &["ZDIFF", "0", "z"]),
        ("zunionstore", &["ZUNIONSTORE", "d", "0", "z"]),
        ("zintercard", &["ZINTERCARD", "0", "z"]),
    ] {
        assert_eq!(
            r.call(args),
            format!("-ERR at least 1 input key is needed for '{cmd}' command\r\n")
        );
    }
    // Types are checked before the options.
    assert_eq!(r.call(&["SET", "str", "x"]), "+OK\r\n");
    for args in [
        &["ZUNION", "2", "z", "str"][..],
        &["ZUNION", "2", "nokey", "str", "WEIGHTS", "x", "y"],
        &["ZINTER", "2", "nokey", "str"],
        &["ZDIFF", "2", "nokey", "str"],
        &["ZINTERCARD", "2", "nokey", "str"],
        &["ZUNIONSTORE", "d", "2", "z", "str"],
    ] {
        assert_eq!(r.call(args), WRONGTYPE, "{args:?}");
    }
    // The STORE forms.
    assert_eq!(
        r.call(&["ZUNIONSTORE", "d", "2", "z", "z2", "WITHSCORES"]),
        SYNTAX
    );
    assert_eq!(r.call(&["ZUNIONSTORE", "d", "2", "z", "z2"]), ":4\r\n");
    assert_eq!(
        r.call(&["ZRANGE", "d", "0", "-1", "WITHSCORES"]),
        arr(&["a", "1", "b", "12", "c", "23", "d", "30"])
    );
    assert_eq!(
        r.call(&["ZINTERSTORE", "d", "2", "z", "z2", "WEIGHTS", "2", "0.5"]),
        ":2\r\n"
    );
    assert_eq!(
        r.call(&["ZRANGE", "d", "0", "-1", "WITHSCORES"]),
        arr(&["b", "9", "c", "16"])
    );
    assert_eq!(r.call(&["ZDIFFSTORE", "d", "2", "z", "z2"]), ":1\r\n");
    assert_eq!(
        r.call(&["ZRANGE", "d", "0", "-1", "WITHSCORES"]),
        arr(&["a", "1"])
    );
    assert_eq!(r.call(&["ZDIFFSTORE", "d", "1", "nokey"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "d"]), ":0\r\n");
    assert_eq!(r.call(&["ZUNIONSTORE", "str", "2", "z", "z2"]), ":4\r\n");
    assert_eq!(r.call(&["TYPE", "str"]), "+zset\r\n");
    assert_eq!(r.call(&["ZUNIONSTORE", "z", "2", "z", "z2"]), ":4\r\n");
    assert_eq!(
        r.call(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        arr(&["a", "1", "b", "12", "c", "23", "d", "30"])
    );
    // ZINTERCARD.
    assert_eq!(r.call(&["ZINTERCARD", "2", "z", "z2"]), ":3\r\n");
    assert_eq!(
        r.call(&["ZINTERCARD", "2", "z", "z2", "LIMIT", "1"]),
        ":1\r\n"
    );
    assert_eq!(
        r.call(&["ZINTERCARD", "2", "z", "z2", "LIMIT", "0"]),
        ":3\r\n"
    );
    assert_eq!(r.call(&["ZINTERCARD", "2", "z", "s"]), ":2\r\n");
    assert_eq!(
        r.call(&["ZINTERCARD", "2", "z", "z2", "LIMIT", "-1"]),
        "-ERR LIMIT can't be negative\r\n"
    );
    assert_eq!(
        r.call(&["ZINTERCARD", "2", "z", "z2", "WITHSCORES"]),
        SYNTAX
    );
    assert_eq!(
        r.call(&["ZINTERCARD", "2", "z", "z2", "WEIGHTS", "1", "2"]),
        SYNTAX
    );
    assert_eq!(r.call(&["ZINTERCARD", "3", "z", "z2"]), SYNTAX);
    // RESP3: pairs.
    hello3(&mut r);
    assert_eq!(
        r.call(&["ZINTER", "2", "z", "z2", "WITHSCORES"]),
        "*3\r\n*2\r\n$1\r\nb\r\n,22\r\n*2\r\n$1\r\nc\r\n,43\r\n*2\r\n$1\r\nd\r\n,60\r\n"
    );
}

#[test]
fn zscan_returns_everything_at_once() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["ZADD", "z", "1.5", "b", "-0.5", "a", "3", "c"]),
        ":3\r\n"
    );
    assert_eq!(
        r.call(&["ZSCAN", "z", "0"]),
        "*2\r\n$1\r\n0\r\n*6\r\n$1\r\na\r\n$4\r\n-0.5\r\n$1\r\nb\r\n$3\r\n1.5\r\n$1\r\nc\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        r.call(&["ZSCAN", "z", "0", "MATCH", "b*", "COUNT", "1"]),
        "*2\r\n$1\r\n0\r\n*2\r\n$1\r\nb\r\n$3\r\n1.5\r\n"
    );
    assert_eq!(r.call(&["ZSCAN", "nokey", "0"]), "*2\r\n$1\r\n0\r\n*0\r\n");
    assert_eq!(r.call(&["ZSCAN", "z", "0", "COUNT", "0"]), SYNTAX);
    assert_eq!(r.call(&["ZSCAN", "z", "0", "NOVALUES"]), SYNTAX);
    assert_eq!(r.call(&["ZSCAN", "z", "x"]), "-ERR invalid cursor\r\n");
    // RESP3: scores stay strings.
    hello3(&mut r);
    assert!(r.call(&["ZSCAN", "z", "0"]).contains("$4\r\n-0.5\r\n"));
    let mut c = srv.client();
    let items: Vec<(String, f64)> = c
        .zscan::<_, (String, f64)>("z")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(items.len(), 3);
}

#[test]
fn sorted_set_commands_refuse_other_types() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "str", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["SADD", "set", "a"]), ":1\r\n");
    for key in ["str", "set"] {
        let refused: &[&[&str]] = &[
            &["ZADD", key, "1", "a"],
            &["ZADD", key, "XX", "1", "a"],
            &["ZINCRBY", key, "1", "a"],
            &["ZREM", key, "a"],
            &["ZSCORE", key, "a"],
            &["ZMSCORE", key, "a"],
            &["ZCARD", key],
            &["ZCOUNT", key, "0", "1"],
            &["ZLEXCOUNT", key, "-", "+"],
            &["ZRANGE", key, "0", "1"],
            &["ZRANGE", key, "0", "1", "BYSCORE"],
            &["ZRANGESTORE", "d", key, "0", "1"],
            &["ZREVRANGE", key, "0", "1"],
            &["ZRANGEBYSCORE", key, "0", "1"],
            &["ZREVRANGEBYSCORE", key, "1", "0"],
            &["ZRANGEBYLEX", key, "-", "+"],
            &["ZREVRANGEBYLEX", key, "+", "-"],
            &["ZRANK", key, "a"],
            &["ZREVRANK", key, "a", "WITHSCORE"],
            &["ZPOPMIN", key],
            &["ZPOPMIN", key, "0"],
            &["ZPOPMAX", key, "2"],
            &["ZMPOP", "1", key, "MIN"],
            &["ZRANDMEMBER", key],
            &["ZRANDMEMBER", key, "0"],
            &["ZREMRANGEBYRANK", key, "0", "1"],
            &["ZREMRANGEBYSCORE", key, "0", "1"],
            &["ZREMRANGEBYLEX", key, "-", "+"],
            &["ZSCAN", key, "0"],
        ];
        for args in refused {
            assert_eq!(r.call(args), WRONGTYPE, "{args:?}");
        }
    }
    // Argument errors come first where Redis checks them first.
    assert_eq!(r.call(&["ZADD", "str", "x", "a"]), NOT_FLOAT);
    assert_eq!(r.call(&["ZCOUNT", "str", "x", "1"]), NOT_FLOAT_RANGE);
    assert_eq!(r.call(&["ZRANGE", "str", "x", "1"]), NOT_INT);
    // Sets are accepted by the operations over several sorted sets only.
    assert_eq!(r.call(&["ZUNION", "1", "set"]), arr(&["a"]));
    assert_eq!(r.call(&["ZUNIONSTORE", "d", "1", "set"]), ":1\r\n");
    assert_eq!(r.call(&["ZSCORE", "d", "a"]), "$1\r\n1\r\n");
    assert_eq!(r.call(&["GET", "str"]), "$1\r\nv\r\n");
    assert_eq!(r.call(&["SCARD", "set"]), ":1\r\n");
    // And other types' commands refuse a sorted set.
    for args in [
        &["GET", "d"][..],
        &["INCR", "d"],
        &["SADD", "d", "x"],
        &["SMEMBERS", "d"],
        &["SUNION", "d"],
    ] {
        assert_eq!(r.call(args), WRONGTYPE, "{args:?}");
    }
}

#[test]
fn sorted_sets_through_keyspace_commands() {
    let srv = Server::start();
    let mut r = srv.raw();
    abcde(&mut r, "z");
    assert_eq!(r.call(&["TYPE", "z"]), "+zset\r\n");
    assert_eq!(r.call(&["OBJECT", "ENCODING", "z"]), "$8\r\nlistpack\r\n");
    let mut args = vec!["ZADD".to_string(), "big".to_string()];
    for i in 0..200 {
        args.push(i.to_string());
        args.push(format!("m{i}"));
    }
    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    assert_eq!(r.call(&args), ":200\r\n");
    assert_eq!(r.call(&["OBJECT", "ENCODING", "big"]), "$8\r\nskiplist\r\n");
    assert_eq!(r.call(&["COPY", "z", "c"]), ":1\r\n");
    assert_eq!(r.call(&["ZADD", "c", "9", "a"]), ":0\r\n");
    assert_eq!(r.call(&["ZSCORE", "z", "a"]), "$1\r\n1\r\n");
    assert_eq!(r.call(&["ZRANGE", "c", "-1", "-1"]), arr(&["a"]));
    assert_eq!(r.call(&["RENAME", "c", "r"]), "+OK\r\n");
    assert_eq!(r.call(&["ZRANK", "r", "a"]), ":4\r\n");
    assert_eq!(r.call(&["SADD", "s", "x"]), ":1\r\n");
    let reply = r.call(&["SCAN", "0", "TYPE", "zset", "COUNT", "100"]);
    let mut keys = bulks(&reply)[1..].to_vec();
    keys.sort();
    assert_eq!(keys, ["big", "r", "z"]);
    assert_eq!(r.call(&["EXPIRE", "z", "100"]), ":1\r\n");
    assert_eq!(r.call(&["ZADD", "z", "6", "f"]), ":1\r\n");
    assert_eq!(r.call(&["ZINCRBY", "z", "1", "f"]), "$1\r\n7\r\n");
    let ttl = r.call(&["TTL", "z"]);
    assert!(ttl == ":100\r\n" || ttl == ":99\r\n", "{ttl:?}");
    assert_eq!(r.call(&["DEL", "z", "big", "r"]), ":3\r\n");
    assert_eq!(r.call(&["DBSIZE"]), ":1\r\n");
}

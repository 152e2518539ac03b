//! SORT and SORT_RO. The tables' replies are what redis-server 7.0.15 answered for the
//! same commands.

use crate::util::{Raw, Server};

/// Runs each command and compares its raw reply with the expected bytes.
fn check(r: &mut Raw, table: &[(&[&str], &[u8])]) {
    for (args, want) in table {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        r.cmd(&args);
        let got = r.read_reply();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "{:?}",
            args.iter()
                .map(|a| String::from_utf8_lossy(a))
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn sort_lists_sets_and_sorted_sets() {
    let srv = Server::start();
    let mut r = srv.raw();
    #[rustfmt::skip]
    check(&mut r, &[
        (&["rpush", "l", "3", "1", "2", "10", "-5", "2.5", "1e2", "0x10"], b":8\r\n"),
        (&["sort", "l"], b"*8\r\n$2\r\n-5\r\n$1\r\n1\r\n$1\r\n2\r\n$3\r\n2.5\r\n$1\r\n3\r\n$2\r\n10\r\n$4\r\n0x10\r\n$3\r\n1e2\r\n"),
        (&["sort", "l", "desc"], b"*8\r\n$3\r\n1e2\r\n$4\r\n0x10\r\n$2\r\n10\r\n$1\r\n3\r\n$3\r\n2.5\r\n$1\r\n2\r\n$1\r\n1\r\n$2\r\n-5\r\n"),
        (&["sort", "l", "alpha"], b"*8\r\n$2\r\n-5\r\n$4\r\n0x10\r\n$1\r\n1\r\n$2\r\n10\r\n$3\r\n1e2\r\n$1\r\n2\r\n$3\r\n2.5\r\n$1\r\n3\r\n"),
        (&["sort", "l", "alpha", "desc"], b"*8\r\n$1\r\n3\r\n$3\r\n2.5\r\n$1\r\n2\r\n$3\r\n1e2\r\n$2\r\n10\r\n$1\r\n1\r\n$4\r\n0x10\r\n$2\r\n-5\r\n"),
        (&["sort", "l", "limit", "1", "3"], b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$3\r\n2.5\r\n"),
        (&["sort", "l", "limit", "-1", "3"], b"*3\r\n$2\r\n-5\r\n$1\r\n1\r\n$1\r\n2\r\n"),
        (&["sort", "l", "limit", "0", "0"], b"*0\r\n"),
        (&["sort", "l", "limit", "7", "5"], b"*1\r\n$3\r\n1e2\r\n"),
        (&["sort", "l", "limit", "8", "5"], b"*0\r\n"),
        (&["sort", "l", "limit", "1", "-1"], b"*7\r\n$1\r\n1\r\n$1\r\n2\r\n$3\r\n2.5\r\n$1\r\n3\r\n$2\r\n10\r\n$4\r\n0x10\r\n$3\r\n1e2\r\n"),
        (&["sort", "l", "limit", "9223372036854775807", "9223372036854775807"], b"*0\r\n"),
        (&["sort", "l", "limit", "x", "1"], b"-ERR value is not an integer or out of range\r\n"),
        (&["sort", "l", "limit", "1"], b"-ERR syntax error\r\n"),
        (&["sort", "l", "foo"], b"-ERR syntax error\r\n"),
        (&["sort", "l", "by", "nosort"], b"*8\r\n$1\r\n3\r\n$1\r\n1\r\n$1\r\n2\r\n$2\r\n10\r\n$2\r\n-5\r\n$3\r\n2.5\r\n$3\r\n1e2\r\n$4\r\n0x10\r\n"),
        (&["sort", "l", "by", "nosort", "desc"], b"*8\r\n$4\r\n0x10\r\n$3\r\n1e2\r\n$3\r\n2.5\r\n$2\r\n-5\r\n$2\r\n10\r\n$1\r\n2\r\n$1\r\n1\r\n$1\r\n3\r\n"),
        (&["sort", "l", "by", "nosort", "limit", "2", "3"], b"*3\r\n$1\r\n2\r\n$2\r\n10\r\n$2\r\n-5\r\n"),
        (&["sort", "l", "by", "nosort", "desc", "limit", "2", "3"], b"*3\r\n$3\r\n2.5\r\n$2\r\n-5\r\n$2\r\n10\r\n"),
        (&["sort", "l", "by", "nosort", "limit", "20", "3"], b"*0\r\n"),
        (&["sort", "l", "by", "nosort", "desc", "limit", "0", "100"], b"*8\r\n$4\r\n0x10\r\n$3\r\n1e2\r\n$3\r\n2.5\r\n$2\r\n-5\r\n$2\r\n10\r\n$1\r\n2\r\n$1\r\n1\r\n$1\r\n3\r\n"),
        (&["sort", "l", "by", "nosort", "get", "#"], b"*8\r\n$1\r\n3\r\n$1\r\n1\r\n$1\r\n2\r\n$2\r\n10\r\n$2\r\n-5\r\n$3\r\n2.5\r\n$3\r\n1e2\r\n$4\r\n0x10\r\n"),
        (&["mset", "w_3", "30", "w_1", "10", "w_2", "20", "w_10", "0", "w_-5", "5", "w_2.5", "1", "w_1e2", "3", "w_0x10", "9"], b"+OK\r\n"),
        (&["sort", "l", "by", "w_*"], b"*8\r\n$2\r\n10\r\n$3\r\n2.5\r\n$3\r\n1e2\r\n$2\r\n-5\r\n$4\r\n0x10\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"),
        (&["sort", "l", "by", "w_*", "desc"], b"*8\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n1\r\n$4\r\n0x10\r\n$2\r\n-5\r\n$3\r\n1e2\r\n$3\r\n2.5\r\n$2\r\n10\r\n"),
        (&["sort", "l", "by", "w_*", "get", "#"], b"*8\r\n$2\r\n10\r\n$3\r\n2.5\r\n$3\r\n1e2\r\n$2\r\n-5\r\n$4\r\n0x10\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"),
        (&["sort", "l", "by", "w_*", "get", "#", "get", "w_*"], b"*16\r\n$2\r\n10\r\n$1\r\n0\r\n$3\r\n2.5\r\n$1\r\n1\r\n$3\r\n1e2\r\n$1\r\n3\r\n$2\r\n-5\r\n$1\r\n5\r\n$4\r\n0x10\r\n$1\r\n9\r\n$1\r\n1\r\n$2\r\n10\r\n$1\r\n2\r\n$2\r\n20\r\n$1\r\n3\r\n$2\r\n30\r\n"),
        (&["sort", "l", "by", "w_*", "get", "w_*", "get", "nokey_*", "get", "#", "limit", "0", "3"], b"*9\r\n$1\r\n0\r\n$-1\r\n$2\r\n10\r\n$1\r\n1\r\n$-1\r\n$3\r\n2.5\r\n$1\r\n3\r\n$-1\r\n$3\r\n1e2\r\n"),
        (&["sort", "l", "by", "w_*", "limit", "1", "2"], b"*2\r\n$3\r\n2.5\r\n$3\r\n1e2\r\n"),
        (&["sort", "l", "by", "w_*", "alpha"], b"*8\r\n$2\r\n10\r\n$3\r\n2.5\r\n$1\r\n1\r\n$1\r\n2\r\n$3\r\n1e2\r\n$1\r\n3\r\n$2\r\n-5\r\n$4\r\n0x10\r\n"),
        (&["sort", "l", "by", "nokey_*"], b"*8\r\n$2\r\n-5\r\n$4\r\n0x10\r\n$1\r\n1\r\n$2\r\n10\r\n$3\r\n1e2\r\n$1\r\n2\r\n$3\r\n2.5\r\n$1\r\n3\r\n"),
        (&["sort", "l", "by", "nokey_*", "alpha"], b"*8\r\n$1\r\n3\r\n$1\r\n1\r\n$1\r\n2\r\n$2\r\n10\r\n$2\r\n-5\r\n$3\r\n2.5\r\n$3\r\n1e2\r\n$4\r\n0x10\r\n"),
        (&["sort", "l", "by", "nokey_*", "alpha", "desc"], b"*8\r\n$1\r\n3\r\n$1\r\n1\r\n$1\r\n2\r\n$2\r\n10\r\n$2\r\n-5\r\n$3\r\n2.5\r\n$3\r\n1e2\r\n$4\r\n0x10\r\n"),
        (&["hset", "h_3", "f", "3", "g", "x"], b":2\r\n"),
        (&["hset", "h_1", "f", "1"], b":1\r\n"),
        (&["hset", "h_2", "f", "22"], b":1\r\n"),
        (&["sort", "l", "by", "h_*->f", "get", "h_*->f", "get", "h_*->g"], b"*16\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$1\r\n1\r\n$-1\r\n$1\r\n3\r\n$1\r\nx\r\n$2\r\n22\r\n$-1\r\n"),
        (&["sort", "l", "by", "h_*->f", "alpha"], b"*8\r\n$2\r\n10\r\n$2\r\n-5\r\n$3\r\n2.5\r\n$3\r\n1e2\r\n$4\r\n0x10\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"),
        (&["sort", "l", "by", "h_*->", "get", "h_*->"], b"*8\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n"),
        (&["sort", "l", "by", "h_*->f", "get", "h_*"], b"*8\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n$-1\r\n"),
        (&["sort", "l", "get", "h_*->f"], b"*8\r\n$-1\r\n$1\r\n1\r\n$2\r\n22\r\n$-1\r\n$1\r\n3\r\n$-1\r\n$-1\r\n$-1\r\n"),
        (&["sort", "l", "by", "w_*x"], b"*8\r\n$2\r\n-5\r\n$4\r\n0x10\r\n$1\r\n1\r\n$2\r\n10\r\n$3\r\n1e2\r\n$1\r\n2\r\n$3\r\n2.5\r\n$1\r\n3\r\n"),
        (&["rpush", "bad", "a", "b", "1"], b":3\r\n"),
        (&["sort", "bad"], b"-ERR One or more scores can't be converted into double\r\n"),
        (&["sort", "bad", "alpha"], b"*3\r\n$1\r\n1\r\n$1\r\na\r\n$1\r\nb\r\n"),
        (&["sort", "bad", "by", "w_*"], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\n1\r\n"),
        (&["sort", "bad", "by", "nosort"], b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\n1\r\n"),
        (&["sort", "bad", "limit", "0", "1"], b"-ERR One or more scores can't be converted into double\r\n"),
        (&["set", "wa", "x"], b"+OK\r\n"),
        (&["set", "wb", "1"], b"+OK\r\n"),
        (&["sort", "bad", "by", "w*"], b"-ERR One or more scores can't be converted into double\r\n"),
        (&["rpush", "e", ""], b":1\r\n"),
        (&["sort", "e"], b"*1\r\n$0\r\n\r\n"),
        (&["rpush", "sp", " 5", "5 ", "3"], b":3\r\n"),
        (&["sort", "sp"], b"-ERR One or more scores can't be converted into double\r\n"),
        (&["del", "sp"], b":1\r\n"),
        (&["rpush", "sp", " 5", "3", "	7"], b":3\r\n"),
        (&["sort", "sp"], b"*3\r\n$1\r\n3\r\n$2\r\n 5\r\n$2\r\n\x097\r\n"),
        (&["sort", "l", "store", "dst"], b":8\r\n"),
        (&["lrange", "dst", "0", "-1"], b"*8\r\n$2\r\n-5\r\n$1\r\n1\r\n$1\r\n2\r\n$3\r\n2.5\r\n$1\r\n3\r\n$2\r\n10\r\n$4\r\n0x10\r\n$3\r\n1e2\r\n"),
        (&["ttl", "dst"], b":-1\r\n"),
        (&["sort", "l", "store", "dst", "get", "w_*", "get", "nokey_*"], b":16\r\n"),
        (&["lrange", "dst", "0", "-1"], b"*16\r\n$1\r\n5\r\n$0\r\n\r\n$2\r\n10\r\n$0\r\n\r\n$2\r\n20\r\n$0\r\n\r\n$1\r\n1\r\n$0\r\n\r\n$2\r\n30\r\n$0\r\n\r\n$1\r\n0\r\n$0\r\n\r\n$1\r\n9\r\n$0\r\n\r\n$1\r\n3\r\n$0\r\n\r\n"),
        (&["sort", "nokey", "store", "dst"], b":0\r\n"),
        (&["exists", "dst"], b":0\r\n"),
        (&["sort", "nokey"], b"*0\r\n"),
        (&["set", "str", "x"], b"+OK\r\n"),
        (&["sort", "str"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["sort_ro", "str"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["sort_ro", "l", "store", "dst"], b"-ERR syntax error\r\n"),
        (&["sort_ro", "l", "by", "w_*", "get", "#", "desc", "limit", "1", "3"], b"*3\r\n$1\r\n2\r\n$1\r\n1\r\n$4\r\n0x10\r\n"),
        (&["sadd", "s", "5", "3", "9", "1"], b":4\r\n"),
        (&["sort", "s"], b"*4\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n5\r\n$1\r\n9\r\n"),
        (&["sort", "s", "desc", "limit", "1", "2"], b"*2\r\n$1\r\n5\r\n$1\r\n3\r\n"),
        (&["sort", "s", "alpha"], b"*4\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n5\r\n$1\r\n9\r\n"),
        (&["sort", "s", "by", "nosort", "store", "dst2"], b":4\r\n"),
        (&["lrange", "dst2", "0", "-1"], b"*4\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n5\r\n$1\r\n9\r\n"),
        (&["sort", "s", "by", "nosort", "alpha", "store", "dst2", "desc"], b":4\r\n"),
        (&["lrange", "dst2", "0", "-1"], b"*4\r\n$1\r\n9\r\n$1\r\n5\r\n$1\r\n3\r\n$1\r\n1\r\n"),
        (&["zadd", "z", "1", "c", "2", "b", "3", "a", "4", "10", "5", "9"], b":5\r\n"),
        (&["sort", "z"], b"-ERR One or more scores can't be converted into double\r\n"),
        (&["sort", "z", "alpha"], b"*5\r\n$2\r\n10\r\n$1\r\n9\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
        (&["sort", "z", "by", "nosort"], b"*5\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\na\r\n$2\r\n10\r\n$1\r\n9\r\n"),
        (&["sort", "z", "by", "nosort", "desc"], b"*5\r\n$1\r\n9\r\n$2\r\n10\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
        (&["sort", "z", "by", "nosort", "limit", "1", "2"], b"*2\r\n$1\r\nb\r\n$1\r\na\r\n"),
        (&["sort", "z", "by", "nosort", "desc", "limit", "1", "2"], b"*2\r\n$2\r\n10\r\n$1\r\na\r\n"),
        (&["sort", "z", "by", "nosort", "desc", "limit", "10", "2"], b"*0\r\n"),
        (&["sort", "z", "alpha", "desc", "limit", "0", "3", "store", "zdst"], b":3\r\n"),
        (&["lrange", "zdst", "0", "-1"], b"*3\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\na\r\n"),
        (&["zadd", "z2", "1", "a", "2", "b"], b":2\r\n"),
        (&["sort", "z2"], b"-ERR One or more scores can't be converted into double\r\n"),
        (&["sort", "z2", "alpha"], b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
        (&["sort", "l", "by", "w_*", "alpha", "store", "dst3"], b":8\r\n"),
        (&["lrange", "dst3", "0", "-1"], b"*8\r\n$2\r\n10\r\n$3\r\n2.5\r\n$1\r\n1\r\n$1\r\n2\r\n$3\r\n1e2\r\n$1\r\n3\r\n$2\r\n-5\r\n$4\r\n0x10\r\n"),
        (&["sort", "l", "by", "w_*", "desc", "store", "dst3", "get", "#"], b":8\r\n"),
        (&["lrange", "dst3", "0", "-1"], b"*8\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n1\r\n$4\r\n0x10\r\n$2\r\n-5\r\n$3\r\n1e2\r\n$3\r\n2.5\r\n$2\r\n10\r\n"),
        (&["set", "dst3", "x"], b"+OK\r\n"),
        (&["expire", "dst3", "100"], b":1\r\n"),
        (&["sort", "l", "store", "dst3", "limit", "0", "1"], b":1\r\n"),
        (&["ttl", "dst3"], b":-1\r\n"),
        (&["type", "dst3"], b"+list\r\n"),
        (&["sort"], b"-ERR wrong number of arguments for 'sort' command\r\n"),
        (&["rpush", "inf", "inf", "-inf", "+inf", "1", "nan"], b":5\r\n"),
        (&["sort", "inf"], b"-ERR One or more scores can't be converted into double\r\n"),
        (&["rpush", "infs", "inf", "-inf", "1", "-INFINITY"], b":4\r\n"),
        (&["sort", "infs"], b"*4\r\n$9\r\n-INFINITY\r\n$4\r\n-inf\r\n$1\r\n1\r\n$3\r\ninf\r\n"),
        (&["sort", "l", "asc", "desc", "asc"], b"*8\r\n$2\r\n-5\r\n$1\r\n1\r\n$1\r\n2\r\n$3\r\n2.5\r\n$1\r\n3\r\n$2\r\n10\r\n$4\r\n0x10\r\n$3\r\n1e2\r\n"),
    ]);
}

#[test]
fn resp3_replies_and_unordered_sets() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    r.call(&["RPUSH", "l", "2", "1"]);
    r.call(&["SET", "w_1", "one"]);
    // A missing GET value is RESP3's null.
    assert_eq!(
        r.call(&["SORT", "l", "GET", "w_*", "GET", "#"]),
        "*4\r\n$3\r\none\r\n$1\r\n1\r\n_\r\n$1\r\n2\r\n"
    );
    assert_eq!(r.call(&["SORT_RO", "nokey"]), "*0\r\n");
    // BY nosort leaves a set in its own order: every member, once.
    let mut c = srv.client();
    let members: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let _: () = redis::cmd("SADD")
        .arg("s")
        .arg(&members)
        .query(&mut c)
        .unwrap();
    let mut got: Vec<String> = redis::cmd("SORT")
        .arg("s")
        .arg("BY")
        .arg("nosort")
        .query(&mut c)
        .unwrap();
    got.sort();
    let mut want = members.clone();
    want.sort();
    assert_eq!(got, want);
    // With STORE the set is sorted (ALPHA), so the stored list is the same everywhere.
    let n: i64 = redis::cmd("SORT")
        .arg("s")
        .arg("BY")
        .arg("nosort")
        .arg("STORE")
        .arg("dst")
        .query(&mut c)
        .unwrap();
    assert_eq!(n, 50);
    let stored: Vec<String> = redis::cmd("LRANGE")
        .arg("dst")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(stored, want);
}

#[test]
fn stored_results_survive_a_crash() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut r = srv.raw();
    r.call(&["RPUSH", "l", "3", "1", "2"]);
    assert_eq!(r.call(&["SORT", "l", "DESC", "STORE", "dst"]), ":3\r\n");
    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["LRANGE", "dst", "0", "-1"]),
        "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n1\r\n"
    );
}

//! Bitmap commands: SETBIT, GETBIT, BITCOUNT, BITPOS, BITOP, BITFIELD, BITFIELD_RO.
//!
//! The tables' replies were produced by redis-server 7.0.15 for the same commands; where
//! Redis 7.2 differs from 7.0 (arguments are checked before the key), the expected
//! replies are 7.2's and say so.

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

fn info_field(r: &mut Raw, section: &str, name: &str) -> u64 {
    let info = r.call(&["INFO", section]);
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

#[test]
fn setbit_and_getbit() {
    let srv = Server::start();
    let mut r = srv.raw();
    #[rustfmt::skip]
    check(&mut r, &[
        // SETBIT creates and grows the string; the reply is the old bit.
        (&["setbit", "k", "8", "1"], b":0\r\n"),
        (&["get", "k"], b"$2\r\n\x00\x80\r\n"),
        (&["setbit", "k", "8", "1"], b":1\r\n"),
        (&["setbit", "k", "8", "0"], b":1\r\n"),
        (&["setbit", "k", "23", "1"], b":0\r\n"),
        (&["get", "k"], b"$3\r\n\x00\x00\x01\r\n"),
        (&["strlen", "k"], b":3\r\n"),
        (&["getbit", "k", "23"], b":1\r\n"),
        (&["getbit", "k", "22"], b":0\r\n"),
        (&["getbit", "k", "1000"], b":0\r\n"),
        (&["getbit", "nokey", "5"], b":0\r\n"),
        (&["setbit", "k", "4294967296", "1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["setbit", "k", "4294967295", "2"], b"-ERR bit is not an integer or out of range\r\n"),
        (&["setbit", "k", "-1", "1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["setbit", "k", "1", "x"], b"-ERR bit is not an integer or out of range\r\n"),
        (&["setbit", "k", "x", "1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["getbit", "k", "4294967296"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["getbit", "k", "-1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["getbit", "k", "1.5"], b"-ERR bit offset is not an integer or out of range\r\n"),
        // Integers are bitmaps of their text.
        (&["set", "n", "12"], b"+OK\r\n"),
        (&["getbit", "n", "2"], b":1\r\n"),
        (&["getbit", "n", "7"], b":1\r\n"),
        (&["setbit", "n", "7", "1"], b":1\r\n"),
        (&["get", "n"], b"$2\r\n12\r\n"),
        // Other types are refused.
        (&["rpush", "l", "a"], b":1\r\n"),
        (&["setbit", "l", "0", "1"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["getbit", "l", "0"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["setbit"], b"-ERR wrong number of arguments for 'setbit' command\r\n"),
        (&["getbit", "k"], b"-ERR wrong number of arguments for 'getbit' command\r\n"),
    ]);
}

#[test]
fn bitcount_and_bitpos() {
    let srv = Server::start();
    let mut r = srv.raw();
    #[rustfmt::skip]
    check(&mut r, &[
        // b = ff f0 00
        (&["bitfield", "b", "set", "u8", "0", "255", "set", "u8", "8", "240", "set", "u8", "16", "0"], b"*3\r\n:0\r\n:0\r\n:0\r\n"),
        (&["bitcount", "b"], b":12\r\n"),
        (&["bitcount", "b", "0", "0"], b":8\r\n"),
        (&["bitcount", "b", "1", "1"], b":4\r\n"),
        (&["bitcount", "b", "-1", "-2"], b":0\r\n"),
        (&["bitcount", "b", "-2", "-1"], b":4\r\n"),
        (&["bitcount", "b", "0", "-1", "bit"], b":12\r\n"),
        (&["bitcount", "b", "5", "10", "bit"], b":6\r\n"),
        (&["bitcount", "b", "5", "10", "BYTE"], b":0\r\n"),
        (&["bitcount", "b", "4", "4", "bit"], b":1\r\n"),
        (&["bitcount", "b", "100", "200"], b":0\r\n"),
        (&["bitcount", "b", "-100", "-50"], b":8\r\n"),
        (&["bitcount", "b", "0", "-100"], b":8\r\n"),
        (&["bitcount", "b", "1", "2", "3", "4"], b"-ERR syntax error\r\n"),
        (&["bitcount", "b", "0", "1", "bits"], b"-ERR syntax error\r\n"),
        (&["bitcount", "nokey"], b":0\r\n"),
        (&["bitcount", "nokey", "0", "-1", "bit"], b":0\r\n"),
        (&["set", "n", "12"], b"+OK\r\n"),
        (&["bitcount", "n"], b":6\r\n"),
        (&["set", "empty", ""], b"+OK\r\n"),
        (&["bitcount", "empty"], b":0\r\n"),
        (&["bitpos", "empty", "0"], b":-1\r\n"),
        (&["bitpos", "empty", "1"], b":-1\r\n"),
        (&["bitpos", "b", "0"], b":12\r\n"),
        (&["bitpos", "b", "1"], b":0\r\n"),
        (&["bitpos", "b", "0", "0"], b":12\r\n"),
        (&["bitpos", "b", "0", "0", "0"], b":-1\r\n"),
        (&["bitpos", "b", "0", "0", "-1"], b":12\r\n"),
        (&["bitpos", "b", "1", "2"], b":-1\r\n"),
        (&["bitpos", "b", "1", "2", "-1"], b":-1\r\n"),
        (&["bitpos", "b", "0", "8", "15", "bit"], b":12\r\n"),
        (&["bitpos", "b", "0", "2", "10", "bit"], b":-1\r\n"),
        (&["bitpos", "b", "1", "12", "30", "bit"], b":-1\r\n"),
        (&["bitpos", "b", "0", "-3", "-1", "bit"], b":21\r\n"),
        (&["bitpos", "b", "1", "-100", "100", "BYTE"], b":0\r\n"),
        (&["bitpos", "b", "0", "3"], b":-1\r\n"),
        (&["bitpos", "b", "1", "3"], b":-1\r\n"),
        (&["bitpos", "b", "2"], b"-ERR The bit argument must be 1 or 0.\r\n"),
        (&["bitpos", "b", "1", "0", "-1", "bitz"], b"-ERR syntax error\r\n"),
        (&["bitpos", "b", "1", "0", "-1", "bit", "extra"], b"-ERR syntax error\r\n"),
        (&["bitpos", "nokey", "0"], b":0\r\n"),
        (&["bitpos", "nokey", "1"], b":-1\r\n"),
        // all ones: a clear bit is found past the end only without an explicit end
        (&["bitfield", "ones", "set", "u16", "0", "65535"], b"*1\r\n:0\r\n"),
        (&["bitpos", "ones", "0"], b":16\r\n"),
        (&["bitpos", "ones", "0", "0"], b":16\r\n"),
        (&["bitpos", "ones", "0", "0", "-1"], b":-1\r\n"),
        (&["bitpos", "ones", "0", "1", "0"], b":-1\r\n"),
        (&["bitpos", "ones", "1", "1", "0"], b":-1\r\n"),
        (&["bitpos", "ones", "0", "0", "15", "bit"], b":-1\r\n"),
        (&["bitpos", "n", "1"], b":2\r\n"),
        (&["bitpos", "n", "0", "0", "-1", "bit"], b":0\r\n"),
        (&["rpush", "l", "a"], b":1\r\n"),
        (&["bitcount", "l"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["bitpos", "l", "1"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    ]);
    // Redis 7.2 checks the arguments before looking the key up (7.0 answered 0 for a
    // missing key whatever the arguments, and WRONGTYPE before a bad argument).
    #[rustfmt::skip]
    check(&mut r, &[
        (&["bitcount", "nokey", "a", "b"], b"-ERR value is not an integer or out of range\r\n"),
        (&["bitcount", "nokey", "0"], b"-ERR syntax error\r\n"),
        (&["bitcount", "nokey", "0", "1", "foo"], b"-ERR syntax error\r\n"),
        (&["bitcount", "l", "a", "b"], b"-ERR value is not an integer or out of range\r\n"),
        (&["bitcount", "l", "0"], b"-ERR syntax error\r\n"),
        (&["bitpos", "nokey", "1", "a"], b"-ERR value is not an integer or out of range\r\n"),
        (&["bitpos", "nokey", "1", "0", "a"], b"-ERR value is not an integer or out of range\r\n"),
        (&["bitpos", "nokey", "1", "0", "1", "a"], b"-ERR syntax error\r\n"),
        (&["bitpos", "l", "1", "0", "1", "a"], b"-ERR syntax error\r\n"),
    ]);
}

#[test]
fn bitop() {
    let srv = Server::start();
    let mut r = srv.raw();
    #[rustfmt::skip]
    check(&mut r, &[
        (&["set", "a", "foobar"], b"+OK\r\n"),
        (&["set", "b", "abcdef"], b"+OK\r\n"),
        (&["set", "c", "xy"], b"+OK\r\n"),
        (&["bitop", "and", "dest", "a", "b"], b":6\r\n"),
        (&["get", "dest"], b"$6\r\n`bc`ab\r\n"),
        (&["bitop", "or", "dest", "a", "b", "c"], b":6\r\n"),
        (&["get", "dest"], b"$6\r\n\x7f\x7fofev\r\n"),
        (&["bitop", "xor", "dest", "a", "b", "c"], b":6\r\n"),
        (&["get", "dest"], b"$6\r\n\x7ft\x0c\x06\x04\x14\r\n"),
        (&["bitop", "not", "dest", "c"], b":2\r\n"),
        (&["get", "dest"], b"$2\r\n\x87\x86\r\n"),
        (&["bitop", "and", "dest", "a", "nokey"], b":6\r\n"),
        (&["get", "dest"], b"$6\r\n\x00\x00\x00\x00\x00\x00\r\n"),
        (&["bitop", "or", "dest", "c", "nokey"], b":2\r\n"),
        (&["get", "dest"], b"$2\r\nxy\r\n"),
        (&["bitop", "AnD", "dest", "c", "c"], b":2\r\n"),
        // an empty result deletes the destination, whatever it held
        (&["rpush", "dest2", "x"], b":1\r\n"),
        (&["bitop", "or", "dest2", "nokey"], b":0\r\n"),
        (&["exists", "dest2"], b":0\r\n"),
        (&["bitop", "not", "dest2", "nokey"], b":0\r\n"),
        (&["exists", "dest2"], b":0\r\n"),
        // the result replaces any value and its TTL
        (&["rpush", "dest3", "x"], b":1\r\n"),
        (&["expire", "dest3", "100"], b":1\r\n"),
        (&["bitop", "or", "dest3", "c"], b":2\r\n"),
        (&["get", "dest3"], b"$2\r\nxy\r\n"),
        (&["ttl", "dest3"], b":-1\r\n"),
        (&["set", "n", "12"], b"+OK\r\n"),
        (&["bitop", "not", "dest", "n"], b":2\r\n"),
        (&["get", "dest"], b"$2\r\n\xce\xcd\r\n"),
        (&["bitop", "not", "dest", "a", "b"], b"-ERR BITOP NOT must be called with a single source key.\r\n"),
        (&["bitop", "nand", "dest", "a"], b"-ERR syntax error\r\n"),
        (&["bitop", "and", "dest"], b"-ERR wrong number of arguments for 'bitop' command\r\n"),
        (&["rpush", "l", "a"], b":1\r\n"),
        (&["bitop", "and", "dest", "a", "l"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["bitop", "not", "dest", "l"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    ]);
}

#[test]
fn bitfield_and_bitfield_ro() {
    let srv = Server::start();
    let mut r = srv.raw();
    #[rustfmt::skip]
    check(&mut r, &[
        (&["bitfield", "k", "set", "i8", "0", "-100", "get", "u8", "0", "get", "i8", "0", "incrby", "i8", "0", "-100", "get", "i4", "0", "get", "u4", "4"], b"*6\r\n:0\r\n:156\r\n:-100\r\n:56\r\n:3\r\n:8\r\n"),
        (&["get", "k"], b"$1\r\n8\r\n"),
        (&["bitfield", "k", "set", "u8", "#1", "255", "get", "u8", "8", "get", "u16", "0", "get", "i16", "0"], b"*4\r\n:0\r\n:255\r\n:14591\r\n:14591\r\n"),
        (&["bitfield", "k", "incrby", "u2", "100", "1", "overflow", "sat", "incrby", "u2", "102", "1", "incrby", "u2", "102", "1", "overflow", "fail", "incrby", "u2", "102", "1", "get", "u2", "102"], b"*5\r\n:1\r\n:1\r\n:2\r\n:3\r\n:3\r\n"),
        (&["strlen", "k"], b":13\r\n"),
        (&["bitfield", "k", "overflow", "wrap", "incrby", "i8", "0", "200", "overflow", "sat", "incrby", "i8", "0", "200", "incrby", "i8", "0", "-400"], b"*3\r\n:0\r\n:127\r\n:-128\r\n"),
        (&["bitfield", "k", "set", "i64", "0", "-1", "get", "u63", "0", "get", "i64", "0", "incrby", "i64", "0", "1", "get", "i64", "0"], b"*5\r\n:-9151595917793558528\r\n:9223372036854775807\r\n:-1\r\n:0\r\n:0\r\n"),
        (&["bitfield", "k", "incrby", "i64", "0", "9223372036854775807", "incrby", "i64", "0", "1", "overflow", "sat", "incrby", "i64", "0", "-1", "incrby", "i64", "0", "9223372036854775807", "incrby", "i64", "0", "9223372036854775807"], b"*5\r\n:9223372036854775807\r\n:-9223372036854775808\r\n:-9223372036854775808\r\n:-1\r\n:9223372036854775806\r\n"),
        (&["bitfield", "k", "overflow", "fail", "incrby", "i64", "0", "9223372036854775807", "incrby", "u63", "64", "9223372036854775807", "incrby", "u63", "64", "1", "get", "u63", "64"], b"*4\r\n$-1\r\n$-1\r\n:58720257\r\n:58720257\r\n"),
        (&["bitfield", "k", "overflow", "fail", "set", "i8", "200", "200", "set", "u8", "200", "300", "set", "u8", "200", "255", "overflow", "wrap", "set", "i8", "200", "200", "set", "u1", "0", "3"], b"*5\r\n$-1\r\n$-1\r\n:0\r\n:-1\r\n:0\r\n"),
        (&["bitfield", "k", "overflow", "sat", "set", "u8", "200", "-1", "set", "i8", "200", "-200", "get", "u8", "200"], b"*3\r\n:200\r\n:-1\r\n:128\r\n"),
        // OVERFLOW FAIL refuses the write but the string still grows (as in Redis)
        (&["bitfield", "grown", "overflow", "fail", "incrby", "u2", "100", "5"], b"*1\r\n$-1\r\n"),
        (&["strlen", "grown"], b":13\r\n"),
        (&["get", "grown"], b"$13\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\r\n"),
        (&["bitfield", "k", "get", "i8", "4294967289"], b"*1\r\n:0\r\n"),
        (&["bitfield", "k", "get", "u8", "#536870911"], b"*1\r\n:0\r\n"),
        (&["bitfield", "k", "get", "u8", "#536870912"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["bitfield", "k", "set", "i64", "#-1", "1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["bitfield", "k", "set", "u64", "0", "1"], b"-ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.\r\n"),
        (&["bitfield", "k", "set", "i65", "0", "1"], b"-ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.\r\n"),
        (&["bitfield", "k", "set", "i0", "0", "1"], b"-ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.\r\n"),
        (&["bitfield", "k", "set", "x8", "0", "1"], b"-ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.\r\n"),
        (&["bitfield", "k", "set", "i8", "0", "x"], b"-ERR value is not an integer or out of range\r\n"),
        (&["bitfield", "k", "incrby", "i8", "0", "1.5"], b"-ERR value is not an integer or out of range\r\n"),
        (&["bitfield", "k", "foo"], b"-ERR syntax error\r\n"),
        (&["bitfield", "k", "get"], b"-ERR syntax error\r\n"),
        (&["bitfield", "k", "get", "i8"], b"-ERR syntax error\r\n"),
        (&["bitfield", "k", "overflow", "bad"], b"-ERR Invalid OVERFLOW type specified\r\n"),
        (&["bitfield", "k", "overflow"], b"-ERR syntax error\r\n"),
        (&["bitfield", "k"], b"*0\r\n"),
        (&["bitfield", "nokey", "get", "u4", "0"], b"*1\r\n:0\r\n"),
        (&["exists", "nokey"], b":0\r\n"),
        (&["bitfield_ro", "k", "get", "i8", "0", "get", "u4", "#1"], b"*2\r\n:-1\r\n:15\r\n"),
        (&["bitfield_ro", "k", "set", "i8", "0", "1"], b"-ERR BITFIELD_RO only supports the GET subcommand\r\n"),
        (&["bitfield_ro", "nokey", "get", "u4", "0"], b"*1\r\n:0\r\n"),
        (&["set", "n", "12"], b"+OK\r\n"),
        (&["bitfield", "n", "get", "u8", "0", "set", "u8", "8", "51", "get", "u8", "8"], b"*3\r\n:49\r\n:50\r\n:51\r\n"),
        (&["get", "n"], b"$2\r\n13\r\n"),
        (&["rpush", "l", "a"], b":1\r\n"),
        (&["bitfield", "l", "get", "i8", "0"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["bitfield", "l", "set", "i8", "0", "1"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["bitfield_ro", "l", "get", "i8", "0"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    ]);
    // RESP3: a refused write is a null.
    assert!(r.call(&["HELLO", "3"]).starts_with("%"));
    assert_eq!(
        r.call(&[
            "BITFIELD", "r3", "OVERFLOW", "FAIL", "INCRBY", "u2", "0", "7", "GET", "u2", "0"
        ]),
        "*2\r\n_\r\n:0\r\n"
    );
}

/// SETBIT and BITFIELD on a 100 MB bitmap log the bytes they change, not the string, and
/// those records replay after a crash.
#[test]
fn big_bitmaps_log_only_what_changed() {
    const SIZE: u64 = 100 << 20;
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut r = srv.raw();
    let before = info_field(&mut r, "persistence", "wal_bytes");
    // SETRANGE writes one byte at the end: logged as that byte too.
    assert_eq!(
        r.call(&["SETRANGE", "big", &(SIZE - 1).to_string(), "x"]),
        format!(":{SIZE}\r\n")
    );
    let mut offsets = Vec::new();
    for i in 0..100u64 {
        let bit = i * 8_388_617 % (SIZE * 8 - 8);
        offsets.push(bit);
        assert_eq!(r.call(&["SETBIT", "big", &bit.to_string(), "1"]), ":0\r\n");
    }
    assert_eq!(
        r.call(&[
            "BITFIELD", "big", "SET", "u16", "#1000", "65535", "INCRBY", "i8", "80000000", "-3"
        ]),
        "*2\r\n:0\r\n:-3\r\n"
    );
    let logged = info_field(&mut r, "persistence", "wal_bytes") - before;
    assert!(
        logged < 102 * 100,
        "{logged} bytes logged for 102 small writes"
    );

    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    assert_eq!(r.call(&["STRLEN", "big"]), format!(":{SIZE}\r\n"));
    for &bit in &offsets {
        assert_eq!(
            r.call(&["GETBIT", "big", &bit.to_string()]),
            ":1\r\n",
            "bit {bit}"
        );
    }
    assert_eq!(
        r.call(&[
            "BITFIELD_RO",
            "big",
            "GET",
            "u16",
            "#1000",
            "GET",
            "i8",
            "80000000"
        ]),
        "*2\r\n:65535\r\n:-3\r\n"
    );
    assert_eq!(
        r.call(&["GETRANGE", "big", &(SIZE - 1).to_string(), "-1"]),
        "$1\r\nx\r\n"
    );
}

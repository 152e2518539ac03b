//! HyperLogLog commands: PFADD, PFCOUNT, PFMERGE, PFDEBUG, PFSELFTEST.
//!
//! dse uses Redis's representation and estimator, so the expected counts and the HLL
//! strings' bytes (GET) below are what redis-server 7.0.15 produced for the same
//! commands.

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

/// The value of a bulk reply.
fn bulk_body(reply: &[u8]) -> Vec<u8> {
    let start = reply.iter().position(|&b| b == b'\n').unwrap() + 1;
    reply[start..reply.len() - 2].to_vec()
}

fn get(r: &mut Raw, key: &str) -> Vec<u8> {
    r.cmd(&[b"GET", key.as_bytes()]);
    bulk_body(&r.read_reply())
}

/// FNV-1a, to compare 12 KB HLL strings with Redis's without listing them.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Adds `el:0` .. `el:{n-1}` to `key`, 1000 per PFADD.
fn add_elements(r: &mut Raw, key: &str, n: usize) {
    r.call(&["PFADD", key]);
    for start in (0..n).step_by(1000) {
        let names: Vec<String> = (start..n.min(start + 1000))
            .map(|i| format!("el:{i}"))
            .collect();
        let mut args = vec!["PFADD", key];
        args.extend(names.iter().map(|s| s.as_str()));
        r.call(&args);
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
fn commands_and_representation_match_redis() {
    let srv = Server::start();
    let mut r = srv.raw();
    #[rustfmt::skip]
    check(&mut r, &[
        // A new HLL is sparse: one XZERO opcode for the 16384 registers.
        (&["pfadd", "h"], b":1\r\n"),
        (&["get", "h"], b"$18\r\nHYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x7f\xff\r\n"),
        (&["pfadd", "h"], b":0\r\n"),
        (&["pfadd", "h", "a"], b":1\r\n"),
        (&["get", "h"], b"$21\r\nHYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80q\xa6\x84NW\r\n"),
        (&["pfcount", "h"], b":1\r\n"),
        // PFCOUNT caches the count in the header (and the string shows it).
        (&["get", "h"], b"$21\r\nHYLL\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00q\xa6\x84NW\r\n"),
        (&["pfadd", "h", "a"], b":0\r\n"),
        (&["pfadd", "h", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p"], b":1\r\n"),
        (&["get", "h"], b"$65\r\nHYLL\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x80DE\x8cB&\x80@\x89\x88H_\x84@\xfc\x80@\xc4\x84K\\\x80D<\x848\x80B=\x80K\x83\x80B\xed\x84A\xfc\x8cC\x93\x84C\xf9\x80Bm\x80BZ\r\n"),
        (&["pfcount", "h"], b":16\r\n"),
        (&["pfadd", "h2", "x", "y", "z", "a", "b"], b":1\r\n"),
        (&["pfcount", "h", "h2"], b":19\r\n"),
        (&["pfcount", "h", "nokey"], b":16\r\n"),
        (&["pfcount", "nokey"], b":0\r\n"),
        (&["pfcount", "nokey", "nokey2"], b":0\r\n"),
        (&["pfmerge", "h3", "h", "h2"], b"+OK\r\n"),
        (&["get", "h3"], b"$73\r\nHYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80DE\x8cB&\x80@\x89\x88H_\x84@\xfc\x80@\xc4\x84K\\\x80D<\x848\x80@\x8f\x80A\xac\x80K\x83\x80B\xed\x84A\xfc\x8cC\x93\x84C\x18\x88@\xdf\x80Bm\x80BP\x84\x08\r\n"),
        (&["pfcount", "h3"], b":19\r\n"),
        (&["pfmerge", "h3"], b"+OK\r\n"),
        (&["pfmerge", "nokey2"], b"+OK\r\n"),
        (&["get", "nokey2"], b"$18\r\nHYLL\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x7f\xff\r\n"),
        (&["pfdebug", "encoding", "h"], b"+sparse\r\n"),
        (&["pfdebug", "decode", "h"], b"$202\r\nZ:1094 v:4,1 Z:551 v:1,1 Z:138 v:3,1 Z:2144 v:2,1 Z:253 v:1,1 Z:197 v:2,1 Z:2909 v:1,1 Z:1085 v:2,1 z:57 v:1,1 Z:574 v:1,1 Z:2948 v:1,1 Z:750 v:2,1 Z:509 v:4,1 Z:916 v:2,1 Z:1018 v:1,1 Z:622 v:1,1 Z:603\r\n"),
        (&["pfdebug", "todense", "h"], b":1\r\n"),
        (&["pfdebug", "encoding", "h"], b"+dense\r\n"),
        (&["pfdebug", "todense", "h"], b":0\r\n"),
        (&["pfdebug", "decode", "h"], b"-ERR HLL encoding is not sparse\r\n"),
        (&["pfdebug", "getreg", "nokey"], b"-ERR The specified key does not exist\r\n"),
        (&["pfdebug", "foo", "h"], b"-ERR Unknown PFDEBUG subcommand 'foo'\r\n"),
        (&["pfadd", "h", "zz"], b":1\r\n"),
        (&["pfcount", "h"], b":17\r\n"),
        (&["pfmerge", "h", "h2"], b"+OK\r\n"),
        (&["pfcount", "h"], b":20\r\n"),
        // PFMERGE into a sparse destination from a dense source makes it dense.
        (&["pfmerge", "h2", "h"], b"+OK\r\n"),
        (&["pfdebug", "encoding", "h2"], b"+dense\r\n"),
        // Strings that are not HLLs, and other types.
        (&["set", "s", "foo"], b"+OK\r\n"),
        (&["pfadd", "s", "a"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        (&["pfcount", "s"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        (&["pfcount", "h", "s"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        (&["pfmerge", "h", "s"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        (&["pfmerge", "s", "h"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        (&["pfdebug", "encoding", "s"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        (&["set", "n", "123"], b"+OK\r\n"),
        (&["pfadd", "n", "a"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        (&["lpush", "l", "a"], b":1\r\n"),
        (&["pfadd", "l", "a"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["pfcount", "l"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["pfcount", "h", "l"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["pfmerge", "l", "h"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["pfmerge", "h", "l"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["pfdebug", "encoding", "l"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        (&["pfadd", "c"], b":1\r\n"),
        (&["bitfield", "c", "set", "u8", "#4", "0"], b"*1\r\n:1\r\n"),
        (&["pfadd", "c", "a"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        (&["bitfield", "c", "set", "u8", "#4", "2"], b"*1\r\n:0\r\n"),
        (&["pfcount", "c"], b"-WRONGTYPE Key is not a valid HyperLogLog string value.\r\n"),
        // A sparse HLL whose opcodes do not cover the registers is corrupted.
        (&["pfadd", "bad"], b":1\r\n"),
        (&["bitfield", "bad", "set", "u8", "#17", "254", "set", "u8", "#15", "128"], b"*2\r\n:255\r\n:128\r\n"),
        (&["pfcount", "bad"], b"-INVALIDOBJ Corrupted HLL object detected\r\n"),
        (&["pfcount", "bad", "h"], b"-INVALIDOBJ Corrupted HLL object detected\r\n"),
        (&["pfadd", "bad", "a"], b":1\r\n"),
        (&["pfmerge", "h", "bad"], b"-INVALIDOBJ Corrupted HLL object detected\r\n"),
        (&["pfdebug", "todense", "bad"], b"-INVALIDOBJ Corrupted HLL object detected\r\n"),
        (&["pfcount"], b"-ERR wrong number of arguments for 'pfcount' command\r\n"),
        (&["pfadd"], b"-ERR wrong number of arguments for 'pfadd' command\r\n"),
        (&["pfmerge"], b"-ERR wrong number of arguments for 'pfmerge' command\r\n"),
        (&["pfdebug", "encoding"], b"-ERR wrong number of arguments for 'pfdebug' command\r\n"),
    ]);
    assert_eq!(r.call(&["PFSELFTEST"]), "+OK\r\n");
}

/// PFCOUNT of 0, 1, 3, 1000 and 100000 distinct elements, and the HLL strings (sparse up
/// to 1000, dense at 100000), equal Redis's.
#[test]
fn cardinalities_equal_redis() {
    let srv = Server::start();
    let mut r = srv.raw();
    // (elements, PFCOUNT, length of the HLL string, FNV-1a of it, encoding): Redis 7.0.15.
    let expected = [
        (0, 0, 18, 0xfd8f_436a_8f6e_62f9, "sparse"),
        (1, 1, 21, 0xcf17_af4c_e832_9168, "sparse"),
        (3, 3, 27, 0x0e80_743b_be24_a82b, "sparse"),
        (1000, 999, 1892, 0x5037_165b_dd54_d0fa, "sparse"),
        (100_000, 98893, 12304, 0x44f4_03e1_c04b_3f92, "dense"),
    ];
    for (n, count, len, hash, encoding) in expected {
        let key = format!("card{n}");
        add_elements(&mut r, &key, n);
        assert_eq!(r.call(&["PFCOUNT", &key]), format!(":{count}\r\n"), "{n}");
        let hll = get(&mut r, &key);
        assert_eq!((hll.len(), fnv(&hll)), (len, hash), "{n}");
        assert_eq!(
            r.call(&["PFDEBUG", "ENCODING", &key]),
            format!("+{encoding}\r\n")
        );
    }
    // Counts of unions, and merged strings.
    assert_eq!(
        r.call(&["PFCOUNT", "card1000", "card100000", "card3"]),
        ":98893\r\n"
    );
    assert_eq!(
        r.call(&["PFMERGE", "merged", "card3", "card1000"]),
        "+OK\r\n"
    );
    let merged = get(&mut r, "merged");
    assert_eq!((merged.len(), fnv(&merged)), (1892, 0x007d_6275_b67d_f980));
    assert_eq!(r.call(&["PFCOUNT", "merged"]), ":999\r\n");
    assert_eq!(
        r.call(&["PFMERGE", "merged2", "card1000", "card100000"]),
        "+OK\r\n"
    );
    let merged = get(&mut r, "merged2");
    assert_eq!((merged.len(), fnv(&merged)), (12304, 0xcb0c_9bd8_5def_a544));
    assert_eq!(r.call(&["PFCOUNT", "merged2"]), ":98893\r\n");
    // An HLL is a string: copied with GET/SET it counts the same.
    let dense = get(&mut r, "card100000");
    r.cmd(&[b"SET", b"copy", &dense]);
    assert_eq!(r.read_reply(), b"+OK\r\n");
    assert_eq!(r.call(&["PFCOUNT", "copy"]), ":98893\r\n");
}

/// PFADD to a dense HLL logs the registers it changed, not 12 KB; every change (the
/// count cached by PFCOUNT too) replays after a crash into the same bytes.
#[test]
fn writes_are_small_and_durable() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    let mut r = srv.raw();
    add_elements(&mut r, "dense", 5000);
    add_elements(&mut r, "sparse", 50);
    assert_eq!(r.call(&["PFDEBUG", "ENCODING", "dense"]), "+dense\r\n");
    r.call(&["EXPIRE", "dense", "1000"]);
    let before = info_field(&mut r, "persistence", "wal_bytes");
    let mut changed = 0;
    for i in 0..50 {
        changed += (r.call(&["PFADD", "dense", &format!("more:{i}")]) == ":1\r\n") as usize;
    }
    assert!(changed > 20, "{changed}");
    let logged = info_field(&mut r, "persistence", "wal_bytes") - before;
    assert!(
        logged < 50 * 200,
        "{logged} bytes logged for {changed} register updates"
    );
    assert_eq!(r.call(&["PFCOUNT", "dense"]), r.call(&["PFCOUNT", "dense"]));
    r.call(&["PFCOUNT", "sparse"]);
    r.call(&["PFMERGE", "union", "sparse", "dense"]);
    let saved: Vec<Vec<u8>> = ["dense", "sparse", "union"]
        .iter()
        .map(|k| get(&mut r, k))
        .collect();

    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    for (key, bytes) in ["dense", "sparse", "union"].iter().zip(&saved) {
        assert_eq!(&get(&mut r, key), bytes, "{key}");
    }
    let ttl: i64 = r.call(&["TTL", "dense"])[1..].trim().parse().unwrap();
    assert!((900..=1000).contains(&ttl), "{ttl}");
}

//! Integration tests for the keyspace commands: DEL, UNLINK, EXISTS, TOUCH, TYPE, RENAME,
//! RENAMENX, COPY, the EXPIRE and TTL families, PERSIST, KEYS, SCAN, RANDOMKEY, OBJECT.
//! Expected replies and error texts are those of redis-server 7.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Commands;

use crate::util::{Raw, Server, encode, eventually};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sends every command at once and returns the replies in order.
fn pipeline(r: &mut Raw, cmds: &[Vec<String>]) -> Vec<String> {
    let mut buf = Vec::new();
    for c in cmds {
        let args: Vec<&[u8]> = c.iter().map(|a| a.as_bytes()).collect();
        buf.extend_from_slice(&encode(&args));
    }
    r.send(&buf);
    (0..cmds.len())
        .map(|_| String::from_utf8_lossy(&r.read_reply()).into_owned())
        .collect()
}

fn int_reply(reply: &str) -> i64 {
    reply
        .strip_prefix(':')
        .and_then(|s| s.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("expected an integer reply, got {reply:?}"))
}

#[test]
fn del_unlink_exists_touch_count_keys() {
    let srv = Server::start();
    let mut r = srv.raw();
    for k in ["a", "b", "c"] {
        assert_eq!(r.call(&["SET", k, "v"]), "+OK\r\n");
    }
    // EXISTS counts a key each time it is named; DEL removes it once.
    assert_eq!(r.call(&["EXISTS", "a", "a", "b", "nope"]), ":3\r\n");
    assert_eq!(r.call(&["TOUCH", "a", "a", "nope"]), ":2\r\n");
    assert_eq!(r.call(&["DEL", "a", "b", "a", "nope"]), ":2\r\n");
    assert_eq!(r.call(&["EXISTS", "a", "b", "c"]), ":1\r\n");
    assert_eq!(r.call(&["DEL", "a"]), ":0\r\n");
    assert_eq!(r.call(&["UNLINK", "c", "c"]), ":1\r\n");
    assert_eq!(r.call(&["EXISTS", "c"]), ":0\r\n");
    assert_eq!(r.call(&["SET", "d", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["DEL", "d"]), ":1\r\n");
    assert_eq!(r.call(&["GET", "d"]), "$-1\r\n");
    for c in ["DEL", "UNLINK", "EXISTS", "TOUCH"] {
        assert_eq!(
            r.call(&[c]),
            format!(
                "-ERR wrong number of arguments for '{}' command\r\n",
                c.to_lowercase()
            )
        );
    }
}

#[test]
fn del_of_many_keys_across_shards() {
    let srv = Server::start();
    let mut r = srv.raw();
    let keys: Vec<String> = (0..200).map(|i| format!("key:{i}")).collect();
    let sets: Vec<Vec<String>> = keys
        .iter()
        .step_by(2)
        .map(|k| vec!["SET".into(), k.clone(), "v".into()])
        .collect();
    assert!(pipeline(&mut r, &sets).iter().all(|x| x == "+OK\r\n"));
    let mut del = vec!["DEL"];
    del.extend(keys.iter().map(|k| k.as_str()));
    assert_eq!(r.call(&del), ":100\r\n");
    let mut exists = vec!["EXISTS"];
    exists.extend(keys.iter().map(|k| k.as_str()));
    assert_eq!(r.call(&exists), ":0\r\n");
    assert_eq!(r.call(&["KEYS", "*"]), "*0\r\n");
}

#[test]
fn type_of_keys() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "s", "hello"]);
    r.call(&["SET", "n", "12"]);
    assert_eq!(r.call(&["TYPE", "s"]), "+string\r\n");
    assert_eq!(r.call(&["TYPE", "n"]), "+string\r\n");
    assert_eq!(r.call(&["TYPE", "nope"]), "+none\r\n");
    assert_eq!(
        r.call(&["TYPE", "a", "b"]),
        "-ERR wrong number of arguments for 'type' command\r\n"
    );
}

#[test]
fn rename_moves_value_and_ttl() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "src", "v1", "EX", "1000"]);
    r.call(&["SET", "dst", "old"]);
    assert_eq!(r.call(&["RENAME", "src", "dst"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "dst"]), "$2\r\nv1\r\n");
    assert_eq!(r.call(&["EXISTS", "src"]), ":0\r\n");
    let ttl = int_reply(&r.call(&["TTL", "dst"]));
    assert!((999..=1000).contains(&ttl), "ttl {ttl}");

    // A destination's own deadline does not survive being overwritten.
    r.call(&["SET", "plain", "p"]);
    r.call(&["SET", "volatile", "x", "EX", "100"]);
    assert_eq!(r.call(&["RENAME", "plain", "volatile"]), "+OK\r\n");
    assert_eq!(r.call(&["TTL", "volatile"]), ":-1\r\n");
    assert_eq!(r.call(&["GET", "volatile"]), "$1\r\np\r\n");

    assert_eq!(r.call(&["RENAME", "dst", "dst"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "dst"]), "$2\r\nv1\r\n");
    assert_eq!(r.call(&["RENAME", "nope", "x"]), "-ERR no such key\r\n");
    assert_eq!(r.call(&["RENAME", "nope", "nope"]), "-ERR no such key\r\n");

    assert_eq!(r.call(&["RENAMENX", "dst", "volatile"]), ":0\r\n");
    assert_eq!(r.call(&["GET", "volatile"]), "$1\r\np\r\n");
    assert_eq!(r.call(&["RENAMENX", "dst", "dst"]), ":0\r\n");
    assert_eq!(r.call(&["RENAMENX", "dst", "fresh"]), ":1\r\n");
    assert_eq!(r.call(&["GET", "fresh"]), "$2\r\nv1\r\n");
    assert_eq!(r.call(&["EXISTS", "dst"]), ":0\r\n");
    assert_eq!(r.call(&["RENAMENX", "nope", "x"]), "-ERR no such key\r\n");
    assert_eq!(
        r.call(&["RENAME", "a"]),
        "-ERR wrong number of arguments for 'rename' command\r\n"
    );
}

#[test]
fn rename_onto_an_expired_key() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "gone", "old", "PX", "30"]);
    r.call(&["SET", "src", "new"]);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(r.call(&["RENAMENX", "src", "gone"]), ":1\r\n");
    assert_eq!(r.call(&["GET", "gone"]), "$3\r\nnew\r\n");
    assert_eq!(r.call(&["PTTL", "gone"]), ":-1\r\n");
}

#[test]
fn copy_duplicates_value_and_ttl() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "src", "hello", "EX", "500"]);
    r.call(&["SET", "num", "42"]);
    assert_eq!(r.call(&["COPY", "src", "dst"]), ":1\r\n");
    assert_eq!(r.call(&["GET", "dst"]), "$5\r\nhello\r\n");
    assert_eq!(r.call(&["GET", "src"]), "$5\r\nhello\r\n");
    let ttl = int_reply(&r.call(&["TTL", "dst"]));
    assert!((499..=500).contains(&ttl), "ttl {ttl}");

    assert_eq!(r.call(&["COPY", "num", "dst"]), ":0\r\n");
    assert_eq!(r.call(&["GET", "dst"]), "$5\r\nhello\r\n");
    assert_eq!(r.call(&["COPY", "num", "dst", "REPLACE"]), ":1\r\n");
    assert_eq!(r.call(&["GET", "dst"]), "$2\r\n42\r\n");
    assert_eq!(r.call(&["OBJECT", "ENCODING", "dst"]), "$3\r\nint\r\n");
    assert_eq!(r.call(&["TTL", "dst"]), ":-1\r\n");
    // The copy is independent of its source.
    r.call(&["SET", "num", "43"]);
    assert_eq!(r.call(&["GET", "dst"]), "$2\r\n42\r\n");

    assert_eq!(r.call(&["COPY", "nope", "x"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "x"]), ":0\r\n");
    assert_eq!(r.call(&["COPY", "src", "db0", "DB", "0"]), ":1\r\n");
    assert_eq!(
        r.call(&["COPY", "src", "src"]),
        "-ERR source and destination objects are the same\r\n"
    );
    assert_eq!(
        r.call(&["COPY", "nope", "nope"]),
        "-ERR source and destination objects are the same\r\n"
    );
    assert_eq!(
        r.call(&["COPY", "src", "x", "DB", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        r.call(&["COPY", "src", "x", "DB", "-1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        r.call(&["COPY", "src", "x", "DB", "zero"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        r.call(&["COPY", "src", "x", "DB", "99999999999"]),
        "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n"
    );
    assert_eq!(r.call(&["COPY", "src", "x", "DB"]), "-ERR syntax error\r\n");
    assert_eq!(
        r.call(&["COPY", "src", "x", "FORCE"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(r.call(&["EXISTS", "x"]), ":0\r\n");
}

#[test]
fn expire_options() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "k", "v"]);
    // XX and GT need an existing deadline; LT treats "none" as infinite.
    assert_eq!(r.call(&["EXPIRE", "k", "100", "XX"]), ":0\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "100", "GT"]), ":0\r\n");
    assert_eq!(r.call(&["TTL", "k"]), ":-1\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "100", "LT"]), ":1\r\n");
    assert_eq!(r.call(&["TTL", "k"]), ":100\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "50", "NX"]), ":0\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "50", "GT"]), ":0\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "200", "gt"]), ":1\r\n");
    assert_eq!(r.call(&["TTL", "k"]), ":200\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "300", "LT"]), ":0\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "100", "XX", "GT"]), ":0\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "50", "XX", "LT"]), ":1\r\n");
    assert_eq!(r.call(&["TTL", "k"]), ":50\r\n");
    assert_eq!(r.call(&["PEXPIRE", "k", "70000", "XX"]), ":1\r\n");
    assert_eq!(r.call(&["TTL", "k"]), ":70\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "10", "NX", "NX"]), ":0\r\n");
    r.call(&["SET", "p", "v"]);
    assert_eq!(r.call(&["EXPIRE", "p", "10", "NX"]), ":1\r\n");
    assert_eq!(r.call(&["TTL", "p"]), ":10\r\n");
    assert_eq!(r.call(&["EXPIRE", "nope", "10"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "nope"]), ":0\r\n");
}

#[test]
fn expire_errors() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "k", "v"]);
    let nx = "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n";
    assert_eq!(r.call(&["EXPIRE", "k", "100", "NX", "XX"]), nx);
    assert_eq!(r.call(&["EXPIRE", "k", "100", "NX", "GT"]), nx);
    assert_eq!(r.call(&["PEXPIRE", "k", "100", "lt", "nx"]), nx);
    assert_eq!(
        r.call(&["EXPIREAT", "k", "100", "GT", "LT"]),
        "-ERR GT and LT options at the same time are not compatible\r\n"
    );
    assert_eq!(
        r.call(&["EXPIRE", "k", "100", "FOO"]),
        "-ERR Unsupported option FOO\r\n"
    );
    // Options are checked before the time, and before the key is looked at.
    assert_eq!(
        r.call(&["EXPIRE", "nope", "abc", "bar"]),
        "-ERR Unsupported option bar\r\n"
    );
    assert_eq!(
        r.call(&["EXPIRE", "k", "abc"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        r.call(&["EXPIRE", "k", "1.5"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    let max = i64::MAX.to_string();
    let min = i64::MIN.to_string();
    for (c, t) in [
        ("EXPIRE", max.as_str()),
        ("PEXPIRE", max.as_str()),
        ("EXPIREAT", max.as_str()),
        ("EXPIRE", min.as_str()),
        ("EXPIREAT", min.as_str()),
    ] {
        assert_eq!(
            r.call(&[c, "k", t]),
            format!(
                "-ERR invalid expire time in '{}' command\r\n",
                c.to_lowercase()
            ),
            "{c} {t}"
        );
    }
    assert_eq!(r.call(&["TTL", "k"]), ":-1\r\n");
    // The largest deadline there is: no overflow in TTL's arithmetic either.
    assert_eq!(r.call(&["PEXPIREAT", "k", &max]), ":1\r\n");
    assert_eq!(r.call(&["PEXPIRETIME", "k"]), format!(":{max}\r\n"));
    assert_eq!(r.call(&["EXPIRETIME", "k"]), ":9223372036854776\r\n");
    assert!(int_reply(&r.call(&["PTTL", "k"])) > i64::MAX - now_ms() - 60_000);
    assert_eq!(
        r.call(&["EXPIRE", "k"]),
        "-ERR wrong number of arguments for 'expire' command\r\n"
    );
}

#[test]
fn expire_in_the_past_deletes_the_key() {
    let srv = Server::start();
    let mut r = srv.raw();
    for (c, t) in [
        ("EXPIRE", "0".to_string()),
        ("EXPIRE", "-10".to_string()),
        ("PEXPIRE", i64::MIN.to_string()),
        ("EXPIREAT", "1".to_string()),
        ("PEXPIREAT", (now_ms() - 1000).to_string()),
    ] {
        r.call(&["SET", "k", "v"]);
        assert_eq!(r.call(&[c, "k", &t]), ":1\r\n", "{c} {t}");
        assert_eq!(r.call(&["EXISTS", "k"]), ":0\r\n", "{c} {t}");
        assert_eq!(r.call(&["KEYS", "*"]), "*0\r\n", "{c} {t}");
    }
    assert_eq!(r.call(&["EXPIRE", "k", "0"]), ":0\r\n");
    // GT refuses a past deadline when the key has a later one: the key stays.
    r.call(&["SET", "k", "v", "EX", "100"]);
    assert_eq!(r.call(&["EXPIRE", "k", "-1", "GT"]), ":0\r\n");
    assert_eq!(r.call(&["EXISTS", "k"]), ":1\r\n");
    assert_eq!(r.call(&["EXPIRE", "k", "-1", "LT"]), ":1\r\n");
    assert_eq!(r.call(&["EXISTS", "k"]), ":0\r\n");
}

#[test]
fn ttl_family_and_persist() {
    let srv = Server::start();
    let mut r = srv.raw();
    for c in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(r.call(&[c, "nope"]), ":-2\r\n", "{c}");
    }
    r.call(&["SET", "k", "v"]);
    for c in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(r.call(&[c, "k"]), ":-1\r\n", "{c}");
    }
    let at_ms = now_ms() + 100_000_250;
    assert_eq!(r.call(&["PEXPIREAT", "k", &at_ms.to_string()]), ":1\r\n");
    assert_eq!(r.call(&["PEXPIRETIME", "k"]), format!(":{at_ms}\r\n"));
    // Seconds are rounded to the nearest.
    assert_eq!(
        r.call(&["EXPIRETIME", "k"]),
        format!(":{}\r\n", (at_ms + 500) / 1000)
    );
    let pttl = int_reply(&r.call(&["PTTL", "k"]));
    assert!(
        (100_000_250 - 5_000..=100_000_250).contains(&pttl),
        "{pttl}"
    );
    assert_eq!(r.call(&["TTL", "k"]), ":100000\r\n");
    r.call(&["PEXPIRE", "k", "1600"]);
    assert_eq!(r.call(&["TTL", "k"]), ":2\r\n");
    r.call(&["PEXPIRE", "k", "1400"]);
    assert_eq!(r.call(&["TTL", "k"]), ":1\r\n");

    assert_eq!(r.call(&["PERSIST", "k"]), ":1\r\n");
    assert_eq!(r.call(&["TTL", "k"]), ":-1\r\n");
    assert_eq!(r.call(&["PERSIST", "k"]), ":0\r\n");
    assert_eq!(r.call(&["PERSIST", "nope"]), ":0\r\n");
    // PERSIST made the key permanent for good: it outlives its old deadline.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(r.call(&["GET", "k"]), "$1\r\nv\r\n");
    // SET without options clears a deadline too.
    r.call(&["EXPIRE", "k", "100"]);
    r.call(&["SET", "k", "w"]);
    assert_eq!(r.call(&["TTL", "k"]), ":-1\r\n");
}

#[test]
fn expired_keys_vanish_on_access() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "k", "v", "PX", "50"]);
    r.call(&["SET", "k2", "v", "PX", "50"]);
    r.call(&["SET", "k3", "v"]);
    assert_eq!(r.call(&["PEXPIRE", "k3", "50"]), ":1\r\n");
    assert_eq!(r.call(&["GET", "k"]), "$1\r\nv\r\n");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(r.call(&["GET", "k"]), "$-1\r\n");
    assert_eq!(r.call(&["EXISTS", "k", "k2", "k3"]), ":0\r\n");
    assert_eq!(r.call(&["TTL", "k2"]), ":-2\r\n");
    assert_eq!(r.call(&["TYPE", "k3"]), "+none\r\n");
    assert_eq!(r.call(&["OBJECT", "ENCODING", "k3"]), "$-1\r\n");
    assert_eq!(r.call(&["PERSIST", "k2"]), ":0\r\n");
    assert_eq!(r.call(&["RENAME", "k3", "x"]), "-ERR no such key\r\n");
    assert_eq!(r.call(&["COPY", "k3", "x"]), ":0\r\n");
    assert_eq!(r.call(&["DEL", "k", "k2", "k3"]), ":0\r\n");
    assert_eq!(r.call(&["RANDOMKEY"]), "$-1\r\n");
}

/// Active expiry: keys that nobody reads are removed anyway. The observable is DBSIZE,
/// which (as in Redis) counts keys still held in memory, expired or not, and touches
/// none of them; lazy expiry alone would leave it at 1001.
///
/// DBSIZE comes from the serverinfo branch: this test fails until that is merged.
#[test]
fn active_expiry_removes_keys_nobody_reads() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "keeper", "v"]);
    let sets: Vec<Vec<String>> = (0..1000)
        .map(|i| {
            vec![
                "SET".into(),
                format!("short:{i}"),
                "v".into(),
                "PX".into(),
                "1500".into(),
            ]
        })
        .collect();
    assert!(pipeline(&mut r, &sets).iter().all(|x| x == "+OK\r\n"));
    let dbsize = |r: &mut Raw| {
        let reply = r.call(&["DBSIZE"]);
        assert!(
            reply.starts_with(':'),
            "DBSIZE (serverinfo branch) is needed for this test: {reply:?}"
        );
        int_reply(&reply)
    };
    assert_eq!(dbsize(&mut r), 1001);
    assert!(
        eventually(Duration::from_secs(10), || dbsize(&mut r) == 1),
        "expired keys still held: DBSIZE {}",
        dbsize(&mut r)
    );
    assert_eq!(r.call(&["GET", "keeper"]), "$1\r\nv\r\n");
}

#[test]
fn keys_matches_glob_patterns() {
    let srv = Server::start();
    let mut r = srv.raw();
    for k in ["foo", "fob", "fxo", "bar", "h*llo", "ab1", "ab2", "ABx"] {
        r.call(&["SET", k, "1"]);
    }
    r.call(&["SET", "gone", "1", "PX", "20"]);
    std::thread::sleep(Duration::from_millis(40));
    let mut c = srv.client();
    let mut keys = |p: &str| -> Vec<String> {
        let mut v: Vec<String> = c.keys(p).unwrap();
        v.sort();
        v
    };
    assert_eq!(
        keys("*"),
        ["ABx", "ab1", "ab2", "bar", "fob", "foo", "fxo", "h*llo"]
    );
    assert_eq!(keys("f?o"), ["foo", "fxo"]);
    assert_eq!(keys("[fb]*"), ["bar", "fob", "foo", "fxo"]);
    assert_eq!(keys("[^f]*"), ["ABx", "ab1", "ab2", "bar", "h*llo"]);
    assert_eq!(keys("h\\*llo"), ["h*llo"]);
    assert_eq!(keys("ab[0-1]"), ["ab1"]);
    assert_eq!(keys("AB*"), ["ABx"]);
    assert!(keys("nothing*").is_empty());
    let reply = r.call(&["KEYS", "fo?"]);
    assert!(
        reply == "*2\r\n$3\r\nfoo\r\n$3\r\nfob\r\n" || reply == "*2\r\n$3\r\nfob\r\n$3\r\nfoo\r\n",
        "{reply:?}"
    );
    assert_eq!(
        r.call(&["KEYS"]),
        "-ERR wrong number of arguments for 'keys' command\r\n"
    );
}

/// One SCAN iteration with COUNT `count`, with `between` run after every call.
fn scan_all(
    c: &mut redis::Connection,
    count: usize,
    extra: &[&str],
    mut between: impl FnMut(&mut redis::Connection, usize),
) -> Vec<String> {
    let mut cursor: u64 = 0;
    let mut seen = Vec::new();
    let mut calls = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .arg(extra)
            .query(c)
            .unwrap();
        seen.extend(batch);
        calls += 1;
        assert!(calls < 100_000, "SCAN does not terminate");
        between(c, calls);
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
}

#[test]
fn scan_returns_every_key_present_throughout_despite_churn() {
    let srv = Server::start();
    let mut c = srv.client();
    let stable: Vec<String> = (0..2000).map(|i| format!("stable:{i}")).collect();
    let doomed: Vec<String> = (0..500).map(|i| format!("doomed:{i}")).collect();
    let mut p = redis::pipe();
    for k in stable.iter().chain(&doomed) {
        p.set(k, "v").ignore();
    }
    let _: () = p.query(&mut c).unwrap();

    let seen = scan_all(&mut c, 20, &[], |c, call| {
        // Between calls: remove some keys present at the start, add many new ones
        // (growing the shards' tables), and remove some of those again.
        let mut p = redis::pipe();
        for i in 0..5 {
            p.del(&doomed[(call * 5 + i) % doomed.len()]).ignore();
        }
        for i in 0..40 {
            let k = format!("churn:{call}:{i}");
            p.set(&k, "x").ignore();
            if i % 2 == 0 {
                p.del(&k).ignore();
            }
        }
        let _: () = p.query(c).unwrap();
    });
    let seen_set: HashSet<&str> = seen.iter().map(|s| s.as_str()).collect();
    for k in &stable {
        assert!(seen_set.contains(k.as_str()), "SCAN missed {k}");
    }
    for k in &seen {
        assert!(
            k.starts_with("stable:") || k.starts_with("doomed:") || k.starts_with("churn:"),
            "SCAN returned a key that never existed: {k}"
        );
    }
}

#[test]
fn scan_without_churn_returns_each_key_once() {
    let srv = Server::start();
    let mut c = srv.client();
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.set(format!("k{i}"), i).ignore();
    }
    let _: () = p.query(&mut c).unwrap();
    for count in [1, 7, 100, 100_000] {
        let mut seen = scan_all(&mut c, count, &[], |_, _| {});
        seen.sort();
        let before = seen.len();
        seen.dedup();
        assert_eq!(before, seen.len(), "COUNT {count}: duplicates");
        assert_eq!(seen.len(), 1000, "COUNT {count}");
    }
    // The redis crate's iterator drives the cursor the way applications do.
    let via_iter: HashSet<String> = c
        .scan_match::<_, String>("k1*")
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(via_iter.len(), 111);
}

#[test]
fn scan_options() {
    let srv = Server::start();
    let mut c = srv.client();
    let mut r = srv.raw();
    for k in ["user:1", "user:2", "user:3", "order:1"] {
        r.call(&["SET", k, "v"]);
    }
    r.call(&["SET", "user:gone", "v", "PX", "20"]);
    std::thread::sleep(Duration::from_millis(40));
    let mut matched = scan_all(&mut c, 10, &["MATCH", "user:*"], |_, _| {});
    matched.sort();
    assert_eq!(matched, ["user:1", "user:2", "user:3"]);
    let mut all = scan_all(&mut c, 10, &["MATCH", "*", "TYPE", "STRING"], |_, _| {});
    all.sort();
    assert_eq!(all, ["order:1", "user:1", "user:2", "user:3"]);
    assert!(scan_all(&mut c, 10, &["TYPE", "hash"], |_, _| {}).is_empty());
    assert!(scan_all(&mut c, 10, &["TYPE", "nosuchtype"], |_, _| {}).is_empty());
    // The last MATCH wins.
    let last = scan_all(
        &mut c,
        10,
        &["MATCH", "user:*", "MATCH", "order:*"],
        |_, _| {},
    );
    assert_eq!(last, ["order:1"]);
    assert_eq!(
        r.call(&["SCAN", "0", "COUNT", "100000", "MATCH", "order:*"]),
        "*2\r\n$1\r\n0\r\n*1\r\n$7\r\norder:1\r\n"
    );
    assert_eq!(
        r.call(&[
            "SCAN",
            "0",
            "COUNT",
            &i64::MAX.to_string(),
            "MATCH",
            "order:*"
        ]),
        "*2\r\n$1\r\n0\r\n*1\r\n$7\r\norder:1\r\n"
    );
}

#[test]
fn scan_errors_and_odd_cursors() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "k", "v"]);
    let syntax = "-ERR syntax error\r\n";
    assert_eq!(r.call(&["SCAN", "0", "COUNT", "0"]), syntax);
    assert_eq!(r.call(&["SCAN", "0", "COUNT", "-1"]), syntax);
    assert_eq!(r.call(&["SCAN", "0", "COUNT", "5", "COUNT", "0"]), syntax);
    assert_eq!(r.call(&["SCAN", "0", "MATCH"]), syntax);
    assert_eq!(r.call(&["SCAN", "0", "TYPE"]), syntax);
    assert_eq!(r.call(&["SCAN", "0", "FOO", "bar"]), syntax);
    assert_eq!(
        r.call(&["SCAN", "0", "COUNT", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        r.call(&["SCAN", "0", "COUNT", "9223372036854775808"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    let invalid = "-ERR invalid cursor\r\n";
    for bad in [
        "x",
        " 1",
        "1 ",
        "-",
        "+",
        "0x10",
        "1.0",
        "18446744073709551616",
    ] {
        assert_eq!(r.call(&["SCAN", bad]), invalid, "cursor {bad:?}");
    }
    // The cursor is checked before the options.
    assert_eq!(r.call(&["SCAN", "x", "COUNT", "0"]), invalid);
    // Redis reads cursors with strtoul: these are accepted. Whatever a made-up cursor
    // returns, it must be a well-formed reply and must not hurt the server.
    for odd in [
        "",
        "+0",
        "-0",
        "-1",
        "18446744073709551615",
        "123456789",
        "65535",
    ] {
        let reply = r.call(&["SCAN", odd]);
        assert!(reply.starts_with("*2\r\n$"), "cursor {odd:?}: {reply:?}");
    }
    assert_eq!(
        r.call(&["SCAN", "", "COUNT", "1000"]),
        "*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n"
    );
    assert_eq!(r.call(&["GET", "k"]), "$1\r\nv\r\n");
    assert_eq!(
        r.call(&["SCAN"]),
        "-ERR wrong number of arguments for 'scan' command\r\n"
    );
}

#[test]
fn randomkey_returns_live_keys() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["RANDOMKEY"]), "$-1\r\n");
    r.call(&["SET", "only", "v"]);
    assert_eq!(r.call(&["RANDOMKEY"]), "$4\r\nonly\r\n");
    let mut c = srv.client();
    for i in 0..50 {
        let _: () = c.set(format!("k{i}"), i).unwrap();
    }
    let mut seen = HashSet::new();
    for _ in 0..200 {
        let k: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
        assert!(k == "only" || k.starts_with('k'), "{k}");
        seen.insert(k);
    }
    assert!(seen.len() > 10, "RANDOMKEY is not random: {seen:?}");

    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "a", "v", "PX", "30"]);
    r.call(&["SET", "b", "v", "PX", "30"]);
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(r.call(&["RANDOMKEY"]), "$-1\r\n");
    assert_eq!(
        r.call(&["RANDOMKEY", "x"]),
        "-ERR wrong number of arguments for 'randomkey' command\r\n"
    );
}

#[test]
fn object_encoding_and_refcount() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "int", "12345"]);
    r.call(&["SET", "small", "9999"]);
    r.call(&["SET", "big", "10000"]);
    r.call(&["SET", "neg", "-1"]);
    r.call(&["SET", "short", "hello"]);
    r.call(&["SET", "long", &"x".repeat(45)]);
    r.call(&["SET", "limit", &"x".repeat(44)]);
    r.call(&["SET", "padded", "012"]);
    for (k, enc) in [
        ("int", "int"),
        ("short", "embstr"),
        ("limit", "embstr"),
        ("long", "raw"),
        ("padded", "embstr"),
    ] {
        assert_eq!(
            r.call(&["OBJECT", "ENCODING", k]),
            format!("${}\r\n{enc}\r\n", enc.len()),
            "{k}"
        );
    }
    assert_eq!(r.call(&["OBJECT", "ENCODING", "nope"]), "$-1\r\n");
    // Redis shares the integers 0..9999 with a refcount of INT_MAX.
    assert_eq!(r.call(&["OBJECT", "REFCOUNT", "small"]), ":2147483647\r\n");
    assert_eq!(r.call(&["OBJECT", "REFCOUNT", "big"]), ":1\r\n");
    assert_eq!(r.call(&["OBJECT", "REFCOUNT", "neg"]), ":1\r\n");
    assert_eq!(r.call(&["OBJECT", "REFCOUNT", "short"]), ":1\r\n");
    assert_eq!(r.call(&["OBJECT", "REFCOUNT", "nope"]), "$-1\r\n");
    assert_eq!(r.call(&["OBJECT", "FREQ", "nope"]), "$-1\r\n");
    assert_eq!(
        r.call(&["OBJECT", "FREQ", "short"]),
        "-ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.\r\n"
    );
    assert_eq!(r.call(&["OBJECT", "IDLETIME", "nope"]), "$-1\r\n");
    assert!(r.call(&["HELLO", "3"]).starts_with("%7\r\n"));
    assert_eq!(r.call(&["OBJECT", "ENCODING", "nope"]), "_\r\n");
}

#[test]
fn object_idletime_counts_from_the_last_real_access() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "k", "v"]);
    r.call(&["SET", "t", "v"]);
    assert_eq!(r.call(&["OBJECT", "IDLETIME", "k"]), ":0\r\n");
    std::thread::sleep(Duration::from_millis(2100));
    // Looking at a key is not using it.
    for c in [
        &["EXISTS", "k"][..],
        &["TYPE", "k"],
        &["TTL", "k"],
        &["PTTL", "k"],
        &["EXPIRETIME", "k"],
        &["OBJECT", "ENCODING", "k"],
        &["OBJECT", "IDLETIME", "k"],
        &["KEYS", "*"],
        &["SCAN", "0"],
    ] {
        r.call(c);
    }
    let idle = int_reply(&r.call(&["OBJECT", "IDLETIME", "k"]));
    assert!((2..=4).contains(&idle), "idle {idle}");
    assert_eq!(r.call(&["TOUCH", "t", "nope"]), ":1\r\n");
    assert_eq!(r.call(&["OBJECT", "IDLETIME", "t"]), ":0\r\n");
    assert_eq!(r.call(&["GET", "k"]), "$1\r\nv\r\n");
    assert_eq!(r.call(&["OBJECT", "IDLETIME", "k"]), ":0\r\n");
}

#[test]
fn object_help_and_errors() {
    let srv = Server::start();
    let mut r = srv.raw();
    let help = r.call(&["OBJECT", "HELP"]);
    assert!(
        help.starts_with(
            "*15\r\n+OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+ENCODING <key>\r\n"
        ),
        "{help:?}"
    );
    assert!(
        help.ends_with("+HELP\r\n+    Prints this help.\r\n"),
        "{help:?}"
    );
    assert_eq!(
        r.call(&["OBJECT", "help"]).lines().count(),
        help.lines().count()
    );
    assert_eq!(
        r.call(&["OBJECT", "FOO", "k"]),
        "-ERR unknown subcommand 'FOO'. Try OBJECT HELP.\r\n"
    );
    assert_eq!(
        r.call(&["OBJECT"]),
        "-ERR wrong number of arguments for 'object' command\r\n"
    );
    assert_eq!(
        r.call(&["OBJECT", "ENCODING"]),
        "-ERR wrong number of arguments for 'object|encoding' command\r\n"
    );
    assert_eq!(
        r.call(&["OBJECT", "HELP", "x"]),
        "-ERR wrong number of arguments for 'object|help' command\r\n"
    );
}

#[test]
fn keyspace_commands_through_the_redis_crate() {
    let srv = Server::start();
    let mut c = srv.client();
    let _: () = c.set("a", "1").unwrap();
    let _: () = c.set("b", "2").unwrap();
    let n: i64 = c.exists(&["a", "b", "c"]).unwrap();
    assert_eq!(n, 2);
    let ok: bool = c.expire("a", 100).unwrap();
    assert!(ok);
    let ttl: i64 = c.ttl("a").unwrap();
    assert_eq!(ttl, 100);
    let _: () = c.rename("a", "c").unwrap();
    let moved: bool = c.rename_nx("b", "c").unwrap();
    assert!(!moved);
    let t: String = redis::cmd("TYPE").arg("c").query(&mut c).unwrap();
    assert_eq!(t, "string");
    let removed: i64 = c.del(&["a", "b", "c"]).unwrap();
    assert_eq!(removed, 2);
    let missing: Option<String> = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
    assert_eq!(missing, None);
}

//! Integration tests for blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP,
//! BZPOPMIN, BZPOPMAX, BZMPOP), CLIENT UNBLOCK, CLIENT PAUSE and CLIENT REPLY. Expected
//! replies and error texts are those of redis-server 7.2. Servers run with `--threads 2`
//! `--placement round-robin`
//! where clients on different event loops matter: connections are dealt to the loops in
//! turn, so consecutive connections are on different loops.

use std::time::{Duration, Instant};

use crate::util::{Raw, Server, client_id, encode, eventually};

/// Sends a command without waiting for its reply.
fn send(r: &mut Raw, args: &[&str]) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    r.cmd(&args);
}

/// The next reply, as text.
fn reply(r: &mut Raw) -> String {
    String::from_utf8_lossy(&r.read_reply()).into_owned()
}

/// True when nothing arrives on `r` within `wait`.
fn silent(r: &mut Raw, wait: Duration) -> bool {
    r.s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 1];
    let quiet = matches!(r.s.peek(&mut b), Err(e) if matches!(e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    r.s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    quiet
}

fn info_field(r: &mut Raw, section: &str, name: &str) -> String {
    let text = r.call(&["INFO", section]);
    text.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
        .to_string()
}

/// Waits until `n` clients are blocked on keys.
fn wait_blocked(r: &mut Raw, n: usize) {
    assert!(
        eventually(Duration::from_secs(5), || info_field(
            r,
            "clients",
            "blocked_clients"
        ) == n.to_string()),
        "expected {n} blocked clients"
    );
}

fn resp3(srv: &Server) -> Raw {
    let mut r = srv.raw();
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    r
}

#[test]
fn data_already_there_is_served_at_once() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut r3 = resp3(&srv);
    r.call(&["RPUSH", "a", "1", "2"]);
    r.call(&["RPUSH", "b", "3", "4"]);
    assert_eq!(
        r.call(&["BLPOP", "b", "a", "1"]),
        "*2\r\n$1\r\nb\r\n$1\r\n3\r\n"
    );
    assert_eq!(
        r.call(&["BRPOP", "b", "a", "0"]),
        "*2\r\n$1\r\nb\r\n$1\r\n4\r\n"
    );
    assert_eq!(
        r.call(&["BRPOP", "b", "a", "0"]),
        "*2\r\n$1\r\na\r\n$1\r\n2\r\n"
    );
    assert_eq!(r.call(&["BRPOPLPUSH", "a", "c", "0"]), "$1\r\n1\r\n");
    assert_eq!(r.call(&["EXISTS", "a"]), ":0\r\n");
    r.call(&["RPUSH", "l", "a", "b", "c", "d", "e"]);
    assert_eq!(
        r.call(&["BLMOVE", "l", "c", "RIGHT", "LEFT", "0"]),
        "$1\r\ne\r\n"
    );
    assert_eq!(
        r.call(&["LRANGE", "c", "0", "-1"]),
        "*2\r\n$1\r\ne\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        r.call(&["BLMPOP", "0", "2", "x", "l", "LEFT", "COUNT", "2"]),
        "*2\r\n$1\r\nl\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    // Moving the only element onto its own list keeps it.
    r.call(&["RPUSH", "self", "x"]);
    assert_eq!(
        r.call(&["BLMOVE", "self", "self", "LEFT", "RIGHT", "0"]),
        "$1\r\nx\r\n"
    );
    assert_eq!(r.call(&["LRANGE", "self", "0", "-1"]), "*1\r\n$1\r\nx\r\n");

    r.call(&["ZADD", "z", "1", "a", "2.5", "b", "3", "c"]);
    assert_eq!(
        r.call(&["BZPOPMIN", "nope", "z", "0"]),
        "*3\r\n$1\r\nz\r\n$1\r\na\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        r3.call(&["BZPOPMAX", "z", "0"]),
        "*3\r\n$1\r\nz\r\n$1\r\nc\r\n,3\r\n"
    );
    assert_eq!(
        r.call(&["BZMPOP", "0", "1", "z", "MIN", "COUNT", "5"]),
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\nb\r\n$3\r\n2.5\r\n"
    );
    r.call(&["ZADD", "z", "1", "a"]);
    assert_eq!(
        r3.call(&["BZMPOP", "0", "2", "q", "z", "MAX"]),
        "*2\r\n$1\r\nz\r\n*1\r\n*2\r\n$1\r\na\r\n,1\r\n"
    );
}

#[test]
fn argument_errors() {
    let srv = Server::start();
    let mut r = srv.raw();
    let not_float = "-ERR timeout is not a float or out of range\r\n";
    let negative = "-ERR timeout is negative\r\n";
    let range = "-ERR timeout is out of range\r\n";
    for (t, want) in [
        ("abc", not_float),
        ("nan", not_float),
        (" 1", not_float),
        ("-1", negative),
        ("-inf", negative),
        ("inf", range),
        ("1e20", range),
    ] {
        assert_eq!(r.call(&["BLPOP", "k", t]), want, "{t}");
        assert_eq!(r.call(&["BZPOPMIN", "k", t]), want, "{t}");
        assert_eq!(r.call(&["BRPOPLPUSH", "k", "d", t]), want, "{t}");
        assert_eq!(r.call(&["BLMPOP", t, "1", "k", "LEFT"]), want, "{t}");
    }
    let syntax = "-ERR syntax error\r\n";
    assert_eq!(r.call(&["BLMOVE", "a", "b", "middle", "left", "x"]), syntax);
    assert_eq!(
        r.call(&["BLMOVE", "a", "b", "left", "left", "x"]),
        not_float
    );
    let numkeys = "-ERR numkeys should be greater than 0\r\n";
    assert_eq!(r.call(&["BLMPOP", "0", "0", "a", "LEFT"]), numkeys);
    assert_eq!(r.call(&["BZMPOP", "0", "-1", "a", "MIN"]), numkeys);
    assert_eq!(r.call(&["BLMPOP", "0", "5", "a", "LEFT"]), syntax);
    assert_eq!(r.call(&["BLMPOP", "0", "1", "a", "UP"]), syntax);
    assert_eq!(r.call(&["BZMPOP", "0", "1", "a", "UP"]), syntax);
    assert_eq!(r.call(&["BLMPOP", "0", "1", "a", "LEFT", "COUNT"]), syntax);
    let count = "-ERR count should be greater than 0\r\n";
    assert_eq!(
        r.call(&["BLMPOP", "0", "1", "a", "LEFT", "COUNT", "0"]),
        count
    );
    assert_eq!(
        r.call(&["BZMPOP", "0", "1", "a", "MIN", "COUNT", "-1"]),
        count
    );
    for (cmd, name) in [
        (&["BLPOP", "k"][..], "blpop"),
        (&["BZPOPMAX", "k"], "bzpopmax"),
        (&["BLMOVE", "a", "b", "left", "left"], "blmove"),
        (&["BLMPOP", "0", "1", "a"], "blmpop"),
        (&["BZMPOP", "0", "1", "a"], "bzmpop"),
    ] {
        assert_eq!(
            r.call(cmd),
            format!("-ERR wrong number of arguments for '{name}' command\r\n")
        );
    }
    // Wrong types: the first key that exists decides, as in Redis.
    let wrongtype = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    r.call(&["SET", "s", "text"]);
    assert_eq!(r.call(&["BLPOP", "missing", "s", "0"]), wrongtype);
    assert_eq!(r.call(&["BZPOPMIN", "s", "0"]), wrongtype);
    assert_eq!(
        r.call(&["BLMOVE", "s", "d", "left", "left", "0"]),
        wrongtype
    );
    r.call(&["RPUSH", "src", "x"]);
    assert_eq!(r.call(&["BRPOPLPUSH", "src", "s", "0"]), wrongtype);
    assert_eq!(r.call(&["LRANGE", "src", "0", "-1"]), "*1\r\n$1\r\nx\r\n");
}

#[test]
fn timeouts_answer_nil() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut r = srv.raw();
    let mut r3 = resp3(&srv);
    for cmd in [
        &["BLPOP", "a", "b", "0.2"][..],
        &["BRPOP", "a", "0.2"],
        &["BLMPOP", "0.2", "1", "a", "LEFT"],
        &["BZPOPMIN", "z", "0.2"],
        &["BZPOPMAX", "z", "0.2"],
        &["BZMPOP", "0.2", "1", "z", "MAX"],
        // Redis answers every timed-out blocking pop with a nil array, BLMOVE included.
        &["BLMOVE", "a", "b", "LEFT", "LEFT", "0.2"],
        &["BRPOPLPUSH", "a", "b", "0.2"],
    ] {
        let start = Instant::now();
        assert_eq!(r.call(cmd), "*-1\r\n", "{cmd:?}");
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(2),
            "{cmd:?} took {took:?}"
        );
        assert_eq!(r3.call(cmd), "_\r\n", "{cmd:?}");
    }
    // Timeouts are doubles, rounded up to milliseconds.
    let start = Instant::now();
    assert_eq!(r.call(&["BLPOP", "a", "0.0001"]), "*-1\r\n");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
    assert_eq!(info_field(&mut r, "clients", "blocked_clients"), "0");
}

#[test]
fn push_from_another_client_wakes_waiters_on_every_loop_in_order() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut pusher = srv.raw();
    let mut waiters: Vec<Raw> = (0..4).map(|_| srv.raw()).collect();
    for (i, w) in waiters.iter_mut().enumerate() {
        send(w, &["BLPOP", "q", "0"]);
        wait_blocked(&mut pusher, i + 1);
    }
    for w in waiters.iter_mut() {
        assert!(silent(w, Duration::from_millis(50)));
    }
    // The blocked show in CLIENT LIST with flag b.
    let list = pusher.call(&["CLIENT", "LIST"]);
    assert_eq!(list.matches("flags=b ").count(), 4, "{list}");
    assert_eq!(list.matches("cmd=blpop ").count(), 4, "{list}");

    // One push of three: the first three waiters, in the order they blocked.
    assert_eq!(pusher.call(&["RPUSH", "q", "a", "b", "c"]), ":3\r\n");
    for (w, item) in waiters.iter_mut().zip(["a", "b", "c"]) {
        assert_eq!(reply(w), format!("*2\r\n$1\r\nq\r\n$1\r\n{item}\r\n"));
    }
    assert!(silent(&mut waiters[3], Duration::from_millis(100)));
    assert_eq!(pusher.call(&["EXISTS", "q"]), ":0\r\n");
    wait_blocked(&mut pusher, 1);
    // The served clients go on as usual.
    for w in waiters.iter_mut().take(3) {
        assert_eq!(w.call(&["PING"]), "+PONG\r\n");
    }
    assert_eq!(pusher.call(&["LPUSH", "q", "d"]), ":1\r\n");
    assert_eq!(reply(&mut waiters[3]), "*2\r\n$1\r\nq\r\n$1\r\nd\r\n");
    wait_blocked(&mut pusher, 0);
    let list = pusher.call(&["CLIENT", "LIST"]);
    assert!(!list.contains("flags=b"), "{list}");
}

#[test]
fn fifo_order_holds_for_many_waiters_and_pushes() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut pusher = srv.raw();
    let mut waiters: Vec<Raw> = (0..6).map(|_| srv.raw()).collect();
    for (i, w) in waiters.iter_mut().enumerate() {
        send(w, &["BRPOP", "jobs", "other", "0"]);
        wait_blocked(&mut pusher, i + 1);
    }
    // One element per push: each goes to the longest waiting client.
    for (i, w) in waiters.iter_mut().enumerate() {
        pusher.call(&["LPUSH", "jobs", &format!("job{i}")]);
        let got = reply(w);
        assert_eq!(got, format!("*2\r\n$4\r\njobs\r\n$4\r\njob{i}\r\n"));
    }
    assert_eq!(info_field(&mut pusher, "clients", "blocked_clients"), "0");
}

#[test]
fn a_waiter_that_finds_the_key_emptied_blocks_again() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut pusher = srv.raw();
    let mut w = srv.raw();
    send(&mut w, &["BLPOP", "k", "0"]);
    wait_blocked(&mut pusher, 1);
    // The key gets an element and loses it before anyone else runs: nothing to serve.
    assert_eq!(pusher.call(&["MULTI"]), "+OK\r\n");
    pusher.call(&["RPUSH", "k", "x"]);
    pusher.call(&["LPOP", "k"]);
    assert_eq!(pusher.call(&["EXEC"]), "*2\r\n:1\r\n$1\r\nx\r\n");
    assert!(silent(&mut w, Duration::from_millis(200)));
    assert_eq!(info_field(&mut pusher, "clients", "blocked_clients"), "1");
    // Another type under the key does not wake it either (Redis 7.2).
    pusher.call(&["ZADD", "k", "1", "m"]);
    assert!(silent(&mut w, Duration::from_millis(200)));
    pusher.call(&["DEL", "k"]);
    pusher.call(&["RPUSH", "k", "y"]);
    assert_eq!(reply(&mut w), "*2\r\n$1\r\nk\r\n$1\r\ny\r\n");
}

#[test]
fn every_kind_of_write_wakes_and_each_command_answers_its_way() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut c = srv.raw();
    let mut w = srv.raw();
    let mut w3 = resp3(&srv);

    // A transaction's push is seen once it committed.
    send(&mut w, &["BRPOP", "l", "0"]);
    wait_blocked(&mut c, 1);
    c.call(&["MULTI"]);
    c.call(&["RPUSH", "l", "1", "2"]);
    c.call(&["EXEC"]);
    assert_eq!(reply(&mut w), "*2\r\n$1\r\nl\r\n$1\r\n2\r\n");

    // RENAME of a list onto the key.
    send(
        &mut w3,
        &["BLMPOP", "0", "2", "x", "y", "RIGHT", "COUNT", "5"],
    );
    wait_blocked(&mut c, 1);
    c.call(&["RENAME", "l", "y"]);
    assert_eq!(reply(&mut w3), "*2\r\n$1\r\ny\r\n*1\r\n$1\r\n1\r\n");

    // ZADD, ZINCRBY and a stored union wake sorted-set waiters.
    send(&mut w3, &["BZPOPMIN", "z1", "z2", "0"]);
    wait_blocked(&mut c, 1);
    c.call(&["ZADD", "z2", "5", "five", "4", "four"]);
    assert_eq!(reply(&mut w3), "*3\r\n$2\r\nz2\r\n$4\r\nfour\r\n,4\r\n");
    send(&mut w, &["BZMPOP", "0", "1", "z3", "MAX", "COUNT", "2"]);
    wait_blocked(&mut c, 1);
    c.call(&["ZUNIONSTORE", "z3", "1", "z2"]);
    assert_eq!(
        reply(&mut w),
        "*2\r\n$2\r\nz3\r\n*1\r\n*2\r\n$4\r\nfive\r\n$1\r\n5\r\n"
    );
    send(&mut w, &["BZPOPMAX", "z4", "0"]);
    wait_blocked(&mut c, 1);
    c.call(&["ZINCRBY", "z4", "2", "m"]);
    assert_eq!(reply(&mut w), "*3\r\n$2\r\nz4\r\n$1\r\nm\r\n$1\r\n2\r\n");

    // A move's destination feeds the next waiter: BLMOVE then BLPOP.
    let mut w2 = srv.raw();
    send(&mut w, &["BLMOVE", "src", "mid", "LEFT", "RIGHT", "0"]);
    wait_blocked(&mut c, 1);
    send(&mut w2, &["BLPOP", "mid", "0"]);
    wait_blocked(&mut c, 2);
    c.call(&["LPUSH", "src", "hop"]);
    assert_eq!(reply(&mut w), "$3\r\nhop\r\n");
    assert_eq!(reply(&mut w2), "*2\r\n$3\r\nmid\r\n$3\r\nhop\r\n");
    assert_eq!(c.call(&["EXISTS", "src", "mid"]), ":0\r\n");

    // A served BLMOVE whose destination turned into another type answers WRONGTYPE.
    send(&mut w, &["BRPOPLPUSH", "src", "dst", "0"]);
    wait_blocked(&mut c, 1);
    c.call(&["SET", "dst", "text"]);
    c.call(&["RPUSH", "src", "v"]);
    assert_eq!(
        reply(&mut w),
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(c.call(&["LRANGE", "src", "0", "-1"]), "*1\r\n$1\r\nv\r\n");
    assert_eq!(info_field(&mut c, "clients", "blocked_clients"), "0");
}

#[test]
fn blocking_inside_exec_answers_as_on_timeout() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["RPUSH", "k", "a"]);
    r.call(&["MULTI"]);
    for cmd in [
        &["BLPOP", "k", "0"][..],
        &["BLPOP", "k", "0"],
        &["BRPOPLPUSH", "k", "x", "0"],
        &["BLMOVE", "k", "x", "LEFT", "LEFT", "0"],
        &["BZPOPMIN", "z", "0"],
        &["BLMPOP", "0", "1", "k", "LEFT"],
        &["BZMPOP", "0", "1", "z", "MIN"],
    ] {
        assert_eq!(r.call(cmd), "+QUEUED\r\n");
    }
    let start = Instant::now();
    assert_eq!(
        r.call(&["EXEC"]),
        "*7\r\n*2\r\n$1\r\nk\r\n$1\r\na\r\n*-1\r\n$-1\r\n$-1\r\n*-1\r\n*-1\r\n*-1\r\n"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(info_field(&mut r, "clients", "blocked_clients"), "0");
}

#[test]
fn a_blocked_client_runs_its_pipeline_once_served() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut c = srv.raw();
    let mut w = srv.raw();
    let mut pipeline = encode(&[b"BLPOP", b"k", b"0"]);
    pipeline.extend_from_slice(&encode(&[b"RPUSH", b"after", b"1"]));
    pipeline.extend_from_slice(&encode(&[b"PING"]));
    w.send(&pipeline);
    wait_blocked(&mut c, 1);
    // What follows the blocked command waits with it.
    assert_eq!(c.call(&["EXISTS", "after"]), ":0\r\n");
    c.call(&["RPUSH", "k", "v"]);
    assert_eq!(reply(&mut w), "*2\r\n$1\r\nk\r\n$1\r\nv\r\n");
    assert_eq!(reply(&mut w), ":1\r\n");
    assert_eq!(reply(&mut w), "+PONG\r\n");
}

#[test]
fn a_client_that_leaves_while_blocked_is_forgotten() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut c = srv.raw();
    {
        let mut w = srv.raw();
        send(&mut w, &["BLPOP", "k", "0"]);
        wait_blocked(&mut c, 1);
    }
    wait_blocked(&mut c, 0);
    let mut w = srv.raw();
    send(&mut w, &["BLPOP", "k", "0"]);
    wait_blocked(&mut c, 1);
    c.call(&["RPUSH", "k", "for-the-live-one"]);
    assert_eq!(
        reply(&mut w),
        "*2\r\n$1\r\nk\r\n$16\r\nfor-the-live-one\r\n"
    );
    // CLIENT KILL of a blocked client.
    let mut w = srv.raw();
    let id = client_id(&mut w).to_string();
    send(&mut w, &["BLPOP", "k", "0"]);
    wait_blocked(&mut c, 1);
    assert_eq!(c.call(&["CLIENT", "KILL", "ID", &id]), ":1\r\n");
    wait_blocked(&mut c, 0);
    c.call(&["RPUSH", "k", "kept"]);
    assert_eq!(c.call(&["LLEN", "k"]), ":1\r\n");
}

#[test]
fn blocked_clients_are_not_idle() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut w = srv.raw();
    send(&mut w, &["BLPOP", "k", "0"]);
    let mut c = srv.raw();
    wait_blocked(&mut c, 1);
    c.call(&["CONFIG", "SET", "timeout", "1"]);
    std::thread::sleep(Duration::from_millis(2500));
    // The idle client is gone by now; the blocked one is not.
    assert!(c.is_closed());
    srv.raw().call(&["RPUSH", "k", "late"]);
    assert_eq!(reply(&mut w), "*2\r\n$1\r\nk\r\n$4\r\nlate\r\n");
}

#[test]
fn client_unblock() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut c = srv.raw();
    let mut w = srv.raw();
    let id = client_id(&mut w).to_string();
    // Not blocked: 0.
    assert_eq!(c.call(&["CLIENT", "UNBLOCK", &id]), ":0\r\n");
    assert_eq!(c.call(&["CLIENT", "UNBLOCK", "999999", "ERROR"]), ":0\r\n");
    assert_eq!(c.call(&["CLIENT", "UNBLOCK", "-5"]), ":0\r\n");

    send(&mut w, &["BLPOP", "k", "0"]);
    wait_blocked(&mut c, 1);
    assert_eq!(c.call(&["CLIENT", "UNBLOCK", &id]), ":1\r\n");
    assert_eq!(reply(&mut w), "*-1\r\n");
    send(&mut w, &["BLMOVE", "k", "d", "LEFT", "LEFT", "0"]);
    wait_blocked(&mut c, 1);
    assert_eq!(c.call(&["CLIENT", "UNBLOCK", &id, "timeout"]), ":1\r\n");
    assert_eq!(reply(&mut w), "*-1\r\n");
    send(&mut w, &["BZPOPMIN", "z", "0"]);
    wait_blocked(&mut c, 1);
    assert_eq!(c.call(&["CLIENT", "UNBLOCK", &id, "ERROR"]), ":1\r\n");
    assert_eq!(
        reply(&mut w),
        "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    );
    assert_eq!(w.call(&["PING"]), "+PONG\r\n");
    assert!(
        info_field(&mut c, "errorstats", "errorstat_UNBLOCKED").starts_with("count=1"),
        "{}",
        c.call(&["INFO", "errorstats"])
    );
    // An unblocked client is no longer a waiter.
    c.call(&["RPUSH", "k", "x"]);
    assert_eq!(c.call(&["LLEN", "k"]), ":1\r\n");

    assert_eq!(
        c.call(&["CLIENT", "UNBLOCK", &id, "foo"]),
        "-ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR\r\n"
    );
    assert_eq!(
        c.call(&["CLIENT", "UNBLOCK", "abc"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        c.call(&["CLIENT", "UNBLOCK", "1", "2", "3"]),
        "-ERR unknown subcommand or wrong number of arguments for 'UNBLOCK'. Try CLIENT HELP.\r\n"
    );
    assert_eq!(
        c.call(&["CLIENT", "UNBLOCK"]),
        "-ERR wrong number of arguments for 'client|unblock' command\r\n"
    );
}

#[test]
fn client_pause_holds_writes_or_everything() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut admin = srv.raw();
    let mut other = srv.raw();
    admin.call(&["SET", "k", "v0"]);

    // WRITE: reads go on, writes wait for the end of the pause (here CLIENT UNPAUSE,
    // which is no write).
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "5000", "WRITE"]), "+OK\r\n");
    let start = Instant::now();
    assert_eq!(other.call(&["GET", "k"]), "$2\r\nv0\r\n");
    assert!(start.elapsed() < Duration::from_millis(2500));
    send(&mut other, &["SET", "k", "v1"]);
    send(&mut other, &["GET", "k"]);
    assert!(silent(&mut other, Duration::from_millis(200)));
    assert_eq!(admin.call(&["GET", "k"]), "$2\r\nv0\r\n");
    assert_eq!(admin.call(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    assert_eq!(reply(&mut other), "+OK\r\n");
    assert_eq!(reply(&mut other), "$2\r\nv1\r\n");
    assert!(start.elapsed() < Duration::from_millis(4500));

    // A write waits even to be queued; the EXEC of a transaction that writes waits too.
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "400", "WRITE"]), "+OK\r\n");
    let start = Instant::now();
    assert_eq!(other.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(other.call(&["INCR", "n"]), "+QUEUED\r\n");
    assert!(start.elapsed() >= Duration::from_millis(350));
    assert_eq!(other.call(&["GET", "k"]), "+QUEUED\r\n");
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "400", "WRITE"]), "+OK\r\n");
    let start = Instant::now();
    assert_eq!(other.call(&["EXEC"]), "*2\r\n:1\r\n$2\r\nv1\r\n");
    assert!(start.elapsed() >= Duration::from_millis(350));

    // A shorter pause does not shorten the one in force.
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "600", "WRITE"]), "+OK\r\n");
    let start = Instant::now();
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "10", "WRITE"]), "+OK\r\n");
    assert_eq!(other.call(&["DEL", "n"]), ":1\r\n");
    assert!(start.elapsed() >= Duration::from_millis(550));

    // ALL: every command of every client waits, CLIENT UNPAUSE and the pausing
    // client's own included.
    let mut third = srv.raw();
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "2000"]), "+OK\r\n");
    let start = Instant::now();
    send(&mut other, &["PING"]);
    send(&mut third, &["GET", "k"]);
    send(&mut admin, &["CLIENT", "UNPAUSE"]);
    assert!(silent(&mut other, Duration::from_millis(300)));
    assert!(silent(&mut third, Duration::from_millis(10)));
    assert!(silent(&mut admin, Duration::from_millis(10)));
    assert_eq!(reply(&mut other), "+PONG\r\n");
    assert_eq!(reply(&mut third), "$2\r\nv1\r\n");
    assert_eq!(reply(&mut admin), "+OK\r\n");
    assert!(start.elapsed() >= Duration::from_millis(1950));
}

#[test]
fn client_pause_ends_on_time_and_on_unpause() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut admin = srv.raw();
    let mut other = srv.raw();
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "300", "ALL"]), "+OK\r\n");
    let start = Instant::now();
    assert_eq!(other.call(&["PING"]), "+PONG\r\n");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );

    assert_eq!(
        admin.call(&["CLIENT", "PAUSE", "100000", "WRITE"]),
        "+OK\r\n"
    );
    let start = Instant::now();
    send(&mut other, &["LPUSH", "l", "x"]);
    assert!(silent(&mut other, Duration::from_millis(200)));
    // The pause is WRITE only: UNPAUSE runs, and the held push runs at once.
    assert_eq!(admin.call(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    assert_eq!(reply(&mut other), ":1\r\n");
    assert!(start.elapsed() < Duration::from_secs(5));
    // A blocking command is a write: it waits for the pause, then blocks.
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "300", "WRITE"]), "+OK\r\n");
    let start = Instant::now();
    assert_eq!(other.call(&["BLPOP", "empty", "0.1"]), "*-1\r\n");
    assert!(start.elapsed() >= Duration::from_millis(350));

    // Errors.
    for (args, want) in [
        (
            &["CLIENT", "PAUSE", "abc"][..],
            "-ERR timeout is not an integer or out of range\r\n",
        ),
        (
            &["CLIENT", "PAUSE", "1.5"],
            "-ERR timeout is not an integer or out of range\r\n",
        ),
        (&["CLIENT", "PAUSE", "-1"], "-ERR timeout is negative\r\n"),
        (
            &["CLIENT", "PAUSE", "10", "foo"],
            "-ERR CLIENT PAUSE mode must be WRITE or ALL\r\n",
        ),
        (
            &["CLIENT", "PAUSE", "10", "all", "x"],
            "-ERR unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP.\r\n",
        ),
        (
            &["CLIENT", "PAUSE"],
            "-ERR wrong number of arguments for 'client|pause' command\r\n",
        ),
        (
            &["CLIENT", "UNPAUSE", "x"],
            "-ERR wrong number of arguments for 'client|unpause' command\r\n",
        ),
    ] {
        assert_eq!(admin.call(args), want, "{args:?}");
    }
}

#[test]
fn client_reply_off_on_skip() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut pipeline = Vec::new();
    for cmd in [
        &["CLIENT", "REPLY", "OFF"][..],
        &["SET", "a", "1"],
        &["GET", "a"],
        &["NOSUCHCOMMAND"],
        &["CLIENT", "REPLY", "ON"],
        &["CLIENT", "REPLY", "SKIP"],
        &["GET", "a"],
        &["INCR", "a"],
        &["CLIENT", "REPLY", "SKIP"],
        &["BLPOP", "nothing", "0.1"],
        &["GET", "a"],
    ] {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        pipeline.extend_from_slice(&encode(&args));
    }
    r.send(&pipeline);
    assert_eq!(reply(&mut r), "+OK\r\n");
    assert_eq!(reply(&mut r), ":2\r\n");
    assert_eq!(reply(&mut r), "$1\r\n2\r\n");
    assert!(silent(&mut r, Duration::from_millis(200)));
    assert_eq!(
        r.call(&["CLIENT", "REPLY", "maybe"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "REPLY"]),
        "-ERR wrong number of arguments for 'client|reply' command\r\n"
    );
    // RESET turns replies back on.
    r.send(&encode(&[b"CLIENT", b"REPLY", b"OFF"]));
    assert_eq!(r.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn a_served_blocked_move_is_durable_once_acknowledged() {
    let mut srv = Server::with_args(&["--threads", "2", "--appendfsync", "always"]);
    let mut c = srv.raw();
    let mut w = srv.raw();
    send(&mut w, &["BLMOVE", "src", "dst", "LEFT", "RIGHT", "0"]);
    wait_blocked(&mut c, 1);
    send(&mut c, &["RPUSH", "src", "moved", "stays"]);
    assert_eq!(reply(&mut w), "$5\r\nmoved\r\n");
    assert_eq!(reply(&mut c), ":2\r\n");
    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["LRANGE", "dst", "0", "-1"]),
        "*1\r\n$5\r\nmoved\r\n"
    );
    assert_eq!(
        r.call(&["LRANGE", "src", "0", "-1"]),
        "*1\r\n$5\r\nstays\r\n"
    );
}

#[test]
fn many_blocked_moves_survive_kill9() {
    // Chains of waiters on both loops move elements along while a pusher feeds them;
    // every element a client saw moved is where it said after a crash.
    let mut srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut c = srv.raw();
    let mut movers: Vec<Raw> = (0..4).map(|_| srv.raw()).collect();
    for (i, m) in movers.iter_mut().enumerate() {
        send(
            m,
            &["BLMOVE", "in", &format!("out{i}"), "LEFT", "RIGHT", "0"],
        );
        wait_blocked(&mut c, i + 1);
    }
    for i in 0..4 {
        c.call(&["RPUSH", "in", &format!("e{i}")]);
    }
    let mut seen = Vec::new();
    for m in movers.iter_mut() {
        seen.push(reply(m));
    }
    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    for (i, s) in seen.iter().enumerate() {
        let element = format!("e{i}");
        assert_eq!(s, &format!("$2\r\n{element}\r\n"));
        assert_eq!(
            r.call(&["LRANGE", &format!("out{i}"), "0", "-1"]),
            format!("*1\r\n$2\r\n{element}\r\n")
        );
    }
    assert_eq!(r.call(&["EXISTS", "in"]), ":0\r\n");
}

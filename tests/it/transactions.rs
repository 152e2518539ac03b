//! Integration tests for transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH. Expected
//! replies and error texts are those of redis-server 7.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Commands;

use crate::util::{Raw, Server, encode};

/// Sends every command at once and returns the replies in order.
fn pipeline(r: &mut Raw, cmds: &[&[&str]]) -> Vec<String> {
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

/// Runs `MULTI; PING; EXEC` and returns EXEC's raw reply: `*1\r\n+PONG\r\n` when the
/// transaction ran, the null array when a watched key changed.
fn exec_ping(r: &mut Raw) -> String {
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["PING"]), "+QUEUED\r\n");
    r.call(&["EXEC"])
}

const RAN: &str = "*1\r\n+PONG\r\n";
const ABORTED: &str = "*-1\r\n";
const EXECABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\r\n";

#[test]
fn queued_replies_and_exec_array() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "s", "text"]), "+OK\r\n");
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "n", "1"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["INCR", "n"]), "+QUEUED\r\n");
    // Errors at run time are replies inside the array; the other commands still run.
    assert_eq!(r.call(&["INCR", "s"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["SET", "t", "1", "EX", "0"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["GET", "n"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["GET", "missing"]), "+QUEUED\r\n");
    // Nothing ran yet.
    let mut other = srv.raw();
    assert_eq!(other.call(&["GET", "n"]), "$-1\r\n");
    assert_eq!(
        r.call(&["EXEC"]),
        "*6\r\n+OK\r\n:2\r\n-ERR value is not an integer or out of range\r\n\
         -ERR invalid expire time in 'set' command\r\n$1\r\n2\r\n$-1\r\n"
    );
    assert_eq!(other.call(&["GET", "n"]), "$1\r\n2\r\n");
    // An empty transaction, and the connection is back to normal afterwards.
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["EXEC"]), "*0\r\n");
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
    // DISCARD drops the queue.
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "d", "1"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["DISCARD"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "d"]), "$-1\r\n");
    // Transaction commands that run at once inside MULTI; UNWATCH is queued.
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["UNWATCH"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["EXEC"]), "*1\r\n+OK\r\n");
}

#[test]
fn transaction_errors() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(r.call(&["DISCARD"]), "-ERR DISCARD without MULTI\r\n");
    for c in ["MULTI", "DISCARD", "UNWATCH", "WATCH"] {
        let args: &[&str] = if c == "WATCH" { &[c] } else { &[c, "x"] };
        assert_eq!(
            r.call(args),
            format!(
                "-ERR wrong number of arguments for '{}' command\r\n",
                c.to_lowercase()
            )
        );
    }
    // A rejected EXEC reports why, even outside MULTI.
    assert_eq!(
        r.call(&["EXEC", "x"]),
        "-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n"
    );

    // Nested MULTI and WATCH inside MULTI are errors that do not doom the transaction.
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["MULTI"]), "-ERR MULTI calls can not be nested\r\n");
    assert_eq!(
        r.call(&["WATCH", "k"]),
        "-ERR WATCH inside MULTI is not allowed\r\n"
    );
    assert_eq!(r.call(&["SET", "k", "1"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["EXEC"]), "*1\r\n+OK\r\n");

    // A command that cannot be queued dooms the transaction: nothing runs.
    let doomers: &[&[&str]] = &[
        &["NOSUCHCOMMAND", "a"],
        &["SET", "k"],
        &["GET"],
        &["CLIENT", "NOSUCH"],
        &["MULTI", "x"],
        &["WATCH"],
        &["SAVE"],
        &["SHUTDOWN"],
    ];
    let errors = [
        "-ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' \r\n",
        "-ERR wrong number of arguments for 'set' command\r\n",
        "-ERR wrong number of arguments for 'get' command\r\n",
        "-ERR unknown subcommand 'NOSUCH'. Try CLIENT HELP.\r\n",
        "-ERR wrong number of arguments for 'multi' command\r\n",
        "-ERR wrong number of arguments for 'watch' command\r\n",
        "-ERR Command not allowed inside a transaction\r\n",
        "-ERR Command not allowed inside a transaction\r\n",
    ];
    for (cmd, err) in doomers.iter().zip(errors) {
        assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
        assert_eq!(r.call(&["SET", "doomed", "1"]), "+QUEUED\r\n");
        assert_eq!(r.call(cmd), err, "{cmd:?}");
        assert_eq!(r.call(&["PING"]), "+QUEUED\r\n");
        assert_eq!(r.call(&["EXEC"]), EXECABORT, "{cmd:?}");
        assert_eq!(r.call(&["EXISTS", "doomed"]), ":0\r\n");
        assert_eq!(r.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    }

    // A rejected EXEC inside MULTI discards the transaction at once.
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "doomed", "1"]), "+QUEUED\r\n");
    assert_eq!(
        r.call(&["EXEC", "now"]),
        "-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n"
    );
    assert_eq!(r.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(r.call(&["EXISTS", "doomed"]), ":0\r\n");

    // SAVE and SHUTDOWN say so in COMMAND INFO.
    let info = r.call(&["COMMAND", "INFO", "save", "shutdown", "exec"]);
    assert_eq!(info.matches("no_multi").count(), 2, "{info}");
}

#[test]
fn quit_and_reset_inside_multi() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "k", "1"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["QUIT"]), "+OK\r\n");
    assert!(r.is_closed());
    let mut c = srv.raw();
    assert_eq!(c.call(&["EXISTS", "k"]), ":0\r\n");

    // RESET ends the transaction and forgets the watched keys.
    let mut r = srv.raw();
    assert_eq!(r.call(&["WATCH", "w"]), "+OK\r\n");
    assert_eq!(c.call(&["SET", "w", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "k", "1"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(r.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(r.call(&["EXISTS", "k"]), ":0\r\n");
    assert_eq!(exec_ping(&mut r), RAN);
}

#[test]
fn resp3_replies() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut other = srv.raw();
    assert!(r.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "k", "1"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), "_\r\n");
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "nothing"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["EXEC"]), "*1\r\n_\r\n");
    // HELLO inside the transaction switches the protocol for the replies after it.
    let mut r = srv.raw();
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["GET", "nothing"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["HELLO", "3"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["GET", "nothing"]), "+QUEUED\r\n");
    let reply = r.call(&["EXEC"]);
    assert!(reply.starts_with("*3\r\n$-1\r\n%7\r\n"), "{reply:?}");
    assert!(reply.ends_with("_\r\n"), "{reply:?}");
}

#[test]
fn watch_aborts_when_another_client_writes() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut other = srv.raw();
    assert_eq!(r.call(&["SET", "k", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "k", "2"]), "+OK\r\n");
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "k", "3"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["EXEC"]), ABORTED);
    assert_eq!(r.call(&["GET", "k"]), "$1\r\n2\r\n");
    // The failed EXEC unwatched: the next transaction runs.
    assert_eq!(other.call(&["SET", "k", "4"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), RAN);

    // Several keys: one change among them is enough; watching twice is watching once.
    assert_eq!(r.call(&["WATCH", "a", "b", "c"]), "+OK\r\n");
    assert_eq!(r.call(&["WATCH", "c", "d"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "d", "1"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), ABORTED);

    // The client's own writes between WATCH and EXEC count too.
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "k", "5"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), ABORTED);

    // Writes inside the transaction itself do not abort it.
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["INCR", "k"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["INCR", "k"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["EXEC"]), "*2\r\n:6\r\n:7\r\n");

    // Queued commands of a transaction that is already doomed never run.
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "k", "8"]), "+OK\r\n");
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "z", "1"]), "+QUEUED\r\n");
    assert_eq!(r.call(&["EXEC"]), ABORTED);
    assert_eq!(r.call(&["EXISTS", "z"]), ":0\r\n");
    // A queueing error wins over a changed key.
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "k", "9"]), "+OK\r\n");
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["GET"]).chars().next(), Some('-'));
    assert_eq!(r.call(&["EXEC"]), EXECABORT);
}

#[test]
fn watch_is_exact_per_key() {
    // One shard: every key shares the watched key's shard and lock.
    let srv = Server::with_args(&["--shards", "1"]);
    let mut r = srv.raw();
    let mut other = srv.raw();
    assert_eq!(r.call(&["SET", "watched", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["WATCH", "watched", "absent"]), "+OK\r\n");
    for i in 0..200 {
        let key = format!("other{i}");
        assert_eq!(other.call(&["SET", &key, "v"]), "+OK\r\n");
        assert_eq!(other.call(&["INCR", &format!("n{i}")]), ":1\r\n");
        assert_eq!(other.call(&["DEL", &key]), ":1\r\n");
    }
    assert_eq!(other.call(&["RENAME", "n1", "n2"]), "+OK\r\n");
    // Reads and writes that change nothing are no modification.
    assert_eq!(other.call(&["GET", "watched"]), "$1\r\n1\r\n");
    assert_eq!(other.call(&["SET", "watched", "2", "NX"]), "$-1\r\n");
    assert_eq!(other.call(&["SET", "absent", "2", "XX"]), "$-1\r\n");
    assert_eq!(other.call(&["PERSIST", "watched"]), ":0\r\n");
    assert_eq!(other.call(&["DEL", "absent"]), ":0\r\n");
    assert_eq!(other.call(&["EXPIRE", "absent", "100"]), ":0\r\n");
    assert_eq!(exec_ping(&mut r), RAN);
}

#[test]
fn every_kind_of_write_aborts_a_watcher() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut other = srv.raw();
    let cases: &[(&[&str], &[&str])] = &[
        (&["SET", "k", "1"], &["SET", "k", "1"]),
        (&["SET", "k", "1"], &["DEL", "k"]),
        (&["SET", "k", "1"], &["UNLINK", "k"]),
        (&["SET", "k", "1"], &["INCR", "k"]),
        (&["SET", "k", "1"], &["APPEND", "k", ""]),
        (&["SET", "k", "1"], &["SETRANGE", "k", "0", "x"]),
        (&["SET", "k", "1"], &["EXPIRE", "k", "100"]),
        (&["SET", "k", "1"], &["GETDEL", "k"]),
        (&["SET", "k", "1", "EX", "100"], &["PERSIST", "k"]),
        (&["SET", "k", "1", "EX", "100"], &["GETEX", "k", "PERSIST"]),
        (&["SET", "k", "1"], &["RENAME", "k", "elsewhere"]),
        (&["SET", "src", "1"], &["RENAME", "src", "k"]),
        (&["SET", "src", "1"], &["COPY", "src", "k"]),
        (&["SET", "k", "1"], &["FLUSHALL"]),
        (&["SET", "k", "1"], &["FLUSHDB", "ASYNC"]),
        (&["DEL", "k"], &["SET", "k", "1"]),
        (&["DEL", "k"], &["MSET", "x", "1", "k", "2"]),
        (&["DEL", "k"], &["INCRBYFLOAT", "k", "1.5"]),
    ];
    for (setup, write) in cases {
        assert_eq!(r.call(&["FLUSHALL"]), "+OK\r\n");
        assert!(!r.call(setup).starts_with('-'), "{setup:?}");
        assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
        assert!(!other.call(write).starts_with('-'), "{write:?}");
        assert_eq!(exec_ping(&mut r), ABORTED, "{setup:?} then {write:?}");
    }
}

#[test]
fn unwatch_discard_and_exec_forget_watched_keys() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut other = srv.raw();
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "k", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["UNWATCH"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), RAN);

    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "k", "2"]), "+OK\r\n");
    assert_eq!(r.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(r.call(&["DISCARD"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), RAN);

    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), RAN);
    assert_eq!(other.call(&["SET", "k", "3"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), RAN);

    // A client that disconnects while watching leaves nothing behind for the others.
    for _ in 0..50 {
        let mut w = srv.raw();
        assert_eq!(w.call(&["WATCH", "k", "j"]), "+OK\r\n");
    }
    assert_eq!(other.call(&["SET", "k", "4"]), "+OK\r\n");
    assert_eq!(r.call(&["WATCH", "j"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "k", "5"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), RAN);
}

#[test]
fn watch_and_expiry() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut other = srv.raw();
    // Keys that expire stay in place until something deletes them.
    assert_eq!(r.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), "+OK\r\n");
    let sleep = || std::thread::sleep(Duration::from_millis(300));

    // Live when watched, expired by EXEC: modified, whether deleted yet or not.
    assert_eq!(r.call(&["SET", "k", "1", "PX", "200"]), "+OK\r\n");
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    sleep();
    assert_eq!(exec_ping(&mut r), ABORTED);
    assert_eq!(r.call(&["SET", "k", "1", "PX", "200"]), "+OK\r\n");
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    sleep();
    assert_eq!(other.call(&["GET", "k"]), "$-1\r\n");
    assert_eq!(exec_ping(&mut r), ABORTED);

    // Already expired when watched: deleting the leftover changes nothing...
    for delete in [&["DEL", "k"][..], &["GET", "k"], &["FLUSHALL"]] {
        assert_eq!(r.call(&["SET", "k", "1", "PX", "200"]), "+OK\r\n");
        sleep();
        assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
        other.call(delete);
        assert_eq!(exec_ping(&mut r), RAN, "{delete:?}");
    }
    // ...writing it anew does.
    assert_eq!(r.call(&["SET", "k", "1", "PX", "200"]), "+OK\r\n");
    sleep();
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["SET", "k", "2"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), ABORTED);

    // FLUSHALL modifies the watched keys that existed, not the absent ones.
    assert_eq!(r.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "x", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), RAN);
    assert_eq!(r.call(&["SET", "k", "1"]), "+OK\r\n");
    assert_eq!(r.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(other.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(exec_ping(&mut r), ABORTED);
    assert_eq!(r.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]), "+OK\r\n");
}

#[test]
fn queued_commands_count_in_stats_only_when_they_run() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["CONFIG", "RESETSTAT"]), "+OK\r\n");
    let replies = pipeline(
        &mut r,
        &[
            &["MULTI"],
            &["SET", "k", "1"],
            &["DISCARD"],
            &["MULTI"],
            &["SET", "k", "1"],
            &["SET", "k", "2"],
            &["EXEC"],
        ],
    );
    assert_eq!(replies[6], "*2\r\n+OK\r\n+OK\r\n");
    let stats = r.call(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_set:calls=2,"), "{stats}");
    assert!(stats.contains("cmdstat_multi:calls=2,"), "{stats}");
    assert!(stats.contains("cmdstat_exec:calls=1,"), "{stats}");
    assert!(stats.contains("cmdstat_discard:calls=1,"), "{stats}");
}

/// One client increments two keys in transactions while others read both at once; with
/// the connections on different event loops, no reader may see them differ.
#[test]
fn exec_is_atomic_across_event_loops() {
    let srv = Server::with_args(&["--threads", "4", "--placement", "round-robin"]);
    const ROUNDS: usize = 2000;
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|i| {
            let mut c = srv.client();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Relaxed) {
                    let (a, b): (Option<i64>, Option<i64>) = if i == 0 {
                        // A read in a transaction of its own.
                        redis::pipe()
                            .atomic()
                            .get("a")
                            .get("b")
                            .query(&mut c)
                            .unwrap()
                    } else {
                        c.mget(&["a", "b"]).unwrap()
                    };
                    assert_eq!(a, b, "a reader saw a transaction half done");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let mut writers: Vec<_> = (0..2)
        .map(|_| {
            let mut c = srv.client();
            std::thread::spawn(move || {
                for _ in 0..ROUNDS {
                    let (_a, _b): (i64, i64) = redis::pipe()
                        .atomic()
                        .incr("a", 1)
                        .incr("b", 1)
                        .query(&mut c)
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers.drain(..) {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let mut c = srv.client();
    let (a, b): (i64, i64) = c.mget(&["a", "b"]).unwrap();
    assert_eq!((a, b), (2 * ROUNDS as i64, 2 * ROUNDS as i64));
}

#[test]
fn redis_crate_atomic_pipeline() {
    let srv = Server::start();
    let mut c = srv.client();
    let (set, n, got): (String, i64, String) = redis::pipe()
        .atomic()
        .set("k", 41)
        .incr("k", 1)
        .get("k")
        .query(&mut c)
        .unwrap();
    assert_eq!((set.as_str(), n, got.as_str()), ("OK", 42, "42"));
    // An error at run time surfaces as the pipeline's error; the rest ran.
    let _: () = c.set("s", "text").unwrap();
    let res: redis::RedisResult<(i64, String)> = redis::pipe()
        .atomic()
        .incr("s", 1)
        .set("after", 1)
        .query(&mut c);
    assert!(res.is_err());
    let after: Option<String> = c.get("after").unwrap();
    assert_eq!(after.as_deref(), Some("1"));
}

/// The `redis` crate's WATCH loop: concurrent read-modify-write increments, each of
/// which retries when another got in between, lose no update.
#[test]
fn redis_crate_watch_transactions_lose_no_update() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    const PER: i64 = 200;
    let retries = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut c = srv.client();
            let retries = retries.clone();
            std::thread::spawn(move || {
                for _ in 0..PER {
                    let _: (i64,) = redis::transaction(&mut c, &["counter"], |con, pipe| {
                        let old: Option<i64> = con.get("counter")?;
                        let old = old.unwrap_or(0);
                        let res: Option<(i64,)> = pipe
                            .set("counter", old + 1)
                            .ignore()
                            .get("counter")
                            .query(con)?;
                        if res.is_none() {
                            retries.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(res)
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = srv.client();
    let total: i64 = c.get("counter").unwrap();
    assert_eq!(total, 4 * PER);
    // With four clients racing, some transactions must have been aborted and retried;
    // otherwise WATCH is not doing anything.
    assert!(retries.load(Ordering::Relaxed) > 0);
}

/// The writes of a transaction are logged like any others: once EXEC answered, they
/// survive a crash.
#[test]
fn exec_results_survive_kill9() {
    let mut srv = Server::with_args(&["--appendfsync", "always", "--snapshot-interval", "0"]);
    {
        let mut r = srv.raw();
        let replies = pipeline(
            &mut r,
            &[
                &["MULTI"],
                &["SET", "a", "1"],
                &["INCRBY", "b", "5"],
                &["DEL", "a"],
                &["SET", "c", "x"],
                &["EXEC"],
            ],
        );
        assert_eq!(replies[5], "*4\r\n+OK\r\n:5\r\n:1\r\n+OK\r\n");
    }
    srv.kill9();
    srv.restart();
    let mut r = srv.raw();
    assert_eq!(r.call(&["EXISTS", "a"]), ":0\r\n");
    assert_eq!(r.call(&["GET", "b"]), "$1\r\n5\r\n");
    assert_eq!(r.call(&["GET", "c"]), "$1\r\nx\r\n");
}

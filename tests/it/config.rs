//! CONFIG GET/SET/RESETSTAT/REWRITE/HELP, and settings that really take effect.

use std::time::Duration;

use crate::util::{Server, temp_dir};

fn config_get(r: &mut crate::util::Raw, name: &str) -> String {
    let reply = r.call(&["CONFIG", "GET", name]);
    let lines: Vec<&str> = reply.split("\r\n").collect();
    assert_eq!(lines[0], "*2", "CONFIG GET {name}: {reply:?}");
    lines[4].to_string()
}

#[test]
fn set_errors_are_redis_errors() {
    let srv = Server::start();
    let mut r = srv.raw();
    let cases: &[(&[&str], &str)] = &[
        (
            &["CONFIG", "SET", "x", "1"],
            "-ERR Unknown option or number of arguments for CONFIG SET - 'x'",
        ),
        (
            &["CONFIG", "SET", "hz", "abc", "x", "1"],
            "-ERR Unknown option or number of arguments for CONFIG SET - 'x'",
        ),
        (
            &["CONFIG", "SET", "Databases", "2"],
            "-ERR CONFIG SET failed (possibly related to argument 'Databases') - can't set immutable config",
        ),
        (
            &["CONFIG", "SET", "databases", "1", "x", "1"],
            "-ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config",
        ),
        (
            &["CONFIG", "SET", "TIMEOUT", "1", "timeout", "2"],
            "-ERR CONFIG SET failed (possibly related to argument 'timeout') - duplicate parameter",
        ),
        (
            &["CONFIG", "SET", "MAXCLIENTS", "abc"],
            "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer",
        ),
        (
            &["CONFIG", "SET", "maxclients", "0"],
            "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive",
        ),
        (
            &["CONFIG", "SET", "timeout", "-1"],
            "-ERR CONFIG SET failed (possibly related to argument 'timeout') - argument must be between 0 and 2147483647 inclusive",
        ),
        (
            &["CONFIG", "SET", "maxmemory", "1.5gb"],
            "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value",
        ),
        (
            &["CONFIG", "SET", "proto-max-bulk-len", "10"],
            "-ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be between 1048576 and 9223372036854775807 inclusive",
        ),
        (
            &["CONFIG", "SET", "maxmemory-policy", "foo"],
            "-ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction",
        ),
        (
            &["CONFIG", "SET", "lazyfree-lazy-user-flush", "maybe"],
            "-ERR CONFIG SET failed (possibly related to argument 'lazyfree-lazy-user-flush') - argument must be 'yes' or 'no'",
        ),
        (
            &["CONFIG", "SET", "save", "900"],
            "-ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters",
        ),
        (
            &["CONFIG", "SET", "save", "0 1"],
            "-ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save parameters",
        ),
        (
            &["CONFIG", "SET", "client-output-buffer-limit", "normal 1 2"],
            "-ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - Wrong number of arguments in buffer limit configuration.",
        ),
        (
            &[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "master 1 2 3",
            ],
            "-ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - Invalid client class specified in buffer limit configuration.",
        ),
        (
            &[
                "CONFIG",
                "SET",
                "client-output-buffer-limit",
                "normal 1 2 -3",
            ],
            "-ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - Error in hard, soft or soft_seconds setting in buffer limit configuration.",
        ),
        (&["CONFIG", "SET", "a", "b", "c"], "-ERR syntax error"),
        (
            &["CONFIG", "SET", "a"],
            "-ERR wrong number of arguments for 'config|set' command",
        ),
        (
            &["CONFIG", "GET"],
            "-ERR wrong number of arguments for 'config|get' command",
        ),
        (
            &["CONFIG", "RESETSTAT", "x"],
            "-ERR wrong number of arguments for 'config|resetstat' command",
        ),
        (
            &["CONFIG", "foo"],
            "-ERR unknown subcommand 'foo'. Try CONFIG HELP.",
        ),
        (
            &["CONFIG", "REWRITE"],
            "-ERR The server is running without a config file",
        ),
    ];
    for (cmd, want) in cases {
        assert_eq!(r.call(cmd), format!("{want}\r\n"), "{cmd:?}");
    }
}

#[test]
fn set_then_get_round_trips() {
    let srv = Server::start();
    let mut r = srv.raw();
    let cases: &[(&str, &str, &str)] = &[
        ("maxmemory", "100MB", "104857600"),
        ("maxmemory", "", "0"),
        ("maxmemory-policy", "ALLKEYS-LRU", "allkeys-lru"),
        ("timeout", "70", "70"),
        ("hz", "1000", "500"),
        ("hz", "0", "1"),
        ("appendfsync", "always", "always"),
        ("save", "900 1 300 10", "900 1 300 10"),
        ("save", "", ""),
        ("loglevel", "warning", "warning"),
        ("lazyfree-lazy-user-flush", "yes", "yes"),
        ("proto-max-bulk-len", "2mb", "2097152"),
        ("client-query-buffer-limit", "1gb", "1073741824"),
        ("maxclients", "500", "500"),
    ];
    for (name, value, back) in cases {
        assert_eq!(r.call(&["CONFIG", "SET", name, value]), "+OK\r\n", "{name}");
        assert_eq!(config_get(&mut r, name), *back, "{name}");
    }
    assert_eq!(
        r.call(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "normal 1mb 2mb 3 replica 1 2 3"
        ]),
        "+OK\r\n"
    );
    assert_eq!(
        config_get(&mut r, "client-output-buffer-limit"),
        "normal 1048576 2097152 3 slave 1 2 3 pubsub 33554432 8388608 60"
    );
    assert_eq!(config_get(&mut r, "databases"), "1");
    assert_eq!(config_get(&mut r, "tcp-backlog"), "511");
    assert_eq!(config_get(&mut r, "port"), srv.port.to_string());

    // Several pairs in one SET; several patterns in one GET; exact names come back as
    // written; unknown names give an empty map.
    assert_eq!(
        r.call(&["CONFIG", "SET", "timeout", "5", "maxmemory", "1gb"]),
        "+OK\r\n"
    );
    assert_eq!(
        r.call(&["CONFIG", "GET", "TIMEOUT", "maxmemory", "nosuch"]),
        "*4\r\n$7\r\nTIMEOUT\r\n$1\r\n5\r\n$9\r\nmaxmemory\r\n$10\r\n1073741824\r\n"
    );
    assert_eq!(r.call(&["CONFIG", "GET", "nosuch"]), "*0\r\n");
    let glob = r.call(&["CONFIG", "GET", "maxmem*", "maxmemory"]);
    assert!(glob.starts_with("*4\r\n"), "{glob:?}");
    assert!(glob.contains("$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n"));
    let everything = r.call(&["CONFIG", "GET", "*"]);
    for name in ["databases", "maxmemory", "save", "appendonly", "io-threads"] {
        assert!(everything.contains(&format!("\r\n{name}\r\n")), "{name}");
    }

    // RESP3: a map.
    r.call(&["HELLO", "3"]);
    assert_eq!(
        r.call(&["CONFIG", "GET", "timeout"]),
        "%1\r\n$7\r\ntimeout\r\n$1\r\n5\r\n"
    );
    assert_eq!(r.call(&["CONFIG", "GET", "nosuch"]), "%0\r\n");

    // The redis crate reads the reply as a map.
    let mut c = srv.client();
    let got: Vec<(String, String)> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, vec![("maxmemory-policy".into(), "allkeys-lru".into())]);
}

#[test]
fn failed_set_changes_nothing() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["CONFIG", "SET", "timeout", "5", "maxmemory", "lots"]),
        "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value\r\n"
    );
    assert_eq!(config_get(&mut r, "timeout"), "0");
    assert_eq!(
        r.call(&["CONFIG", "SET", "maxclients", "5", "port", "1"]),
        "-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config\r\n"
    );
    assert_ne!(config_get(&mut r, "maxclients"), "5");
}

#[test]
fn maxclients_limits_new_connections() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["CONFIG", "SET", "maxclients", "1"]), "+OK\r\n");
    let mut refused = srv.raw();
    assert_eq!(
        refused.read_reply(),
        b"-ERR max number of clients reached\r\n"
    );
    assert!(refused.is_closed());
    // The connection already open carries on.
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
    assert_eq!(r.call(&["CONFIG", "SET", "maxclients", "10"]), "+OK\r\n");
    let mut admitted = srv.raw();
    assert_eq!(admitted.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn proto_max_bulk_len_rejects_larger_bulks() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["CONFIG", "SET", "proto-max-bulk-len", "1mb"]),
        "+OK\r\n"
    );
    // A bulk of exactly the limit is fine, on this connection as on a new one.
    let limit = vec![b'x'; 1 << 20];
    for conn in [&mut r, &mut srv.raw()] {
        conn.cmd(&[b"ECHO", &limit]);
        assert_eq!(
            conn.read_reply().len(),
            (1 << 20) + "$1048576\r\n\r\n".len()
        );
    }
    let mut c = srv.raw();
    c.send(format!("*2\r\n$4\r\nECHO\r\n${}\r\n", (1 << 20) + 1).as_bytes());
    assert_eq!(
        c.read_reply(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(c.is_closed());
    r.send(format!("*2\r\n$4\r\nECHO\r\n${}\r\n", (1 << 20) + 1).as_bytes());
    assert_eq!(
        r.read_reply(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
}

#[test]
fn timeout_closes_idle_clients() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["CONFIG", "SET", "timeout", "1"]), "+OK\r\n");
    let mut idle = srv.raw();
    assert_eq!(idle.call(&["PING"]), "+PONG\r\n");
    idle.s
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(idle.is_closed(), "an idle client is closed after `timeout`");
}

#[test]
fn rewrite_updates_the_config_file() {
    let dir = temp_dir("rewrite");
    let file = dir.join("dse.toml");
    std::fs::write(&file, "# kept as written\nmaxclients = 100\nshards = 64\n").unwrap();
    let mut srv = Server::with_args(&["--config", file.to_str().unwrap()]);
    let mut r = srv.raw();
    assert_eq!(
        r.call(&[
            "CONFIG",
            "SET",
            "maxclients",
            "50",
            "timeout",
            "7",
            "loglevel",
            "debug"
        ]),
        "+OK\r\n"
    );
    assert_eq!(r.call(&["CONFIG", "REWRITE"]), "+OK\r\n");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        "# kept as written\nmaxclients = 50\nshards = 64\n# Generated by CONFIG REWRITE\n\
         loglevel = \"debug\"\ntimeout = 7\n"
    );
    // The server starts from the rewritten file with the values that were in force.
    srv.restart();
    let mut r = srv.raw();
    assert_eq!(config_get(&mut r, "maxclients"), "50");
    assert_eq!(config_get(&mut r, "timeout"), "7");
    assert_eq!(config_get(&mut r, "loglevel"), "debug");
    let info = r.call(&["INFO", "server"]);
    assert!(info.contains(&format!(
        "config_file:{}\r\n",
        file.canonicalize().unwrap().display()
    )));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resetstat_zeroes_counters() {
    let srv = Server::start();
    let mut r = srv.raw();
    for _ in 0..5 {
        r.call(&["SET", "k", "v"]);
    }
    r.call(&["NOSUCHCOMMAND"]);
    assert!(
        r.call(&["INFO", "commandstats"])
            .contains("cmdstat_set:calls=5,")
    );
    assert_eq!(r.call(&["CONFIG", "RESETSTAT"]), "+OK\r\n");
    let stats = r.call(&["INFO", "commandstats", "errorstats", "stats", "persistence"]);
    assert!(!stats.contains("cmdstat_set"), "{stats}");
    assert!(!stats.contains("errorstat_ERR"), "{stats}");
    assert!(stats.contains("total_error_replies:0\r\n"), "{stats}");
    assert!(
        stats.contains("total_connections_received:0\r\n"),
        "{stats}"
    );
    // Changes not yet saved are not statistics: they survive RESETSTAT.
    assert!(
        stats.contains("rdb_changes_since_last_save:5\r\n"),
        "{stats}"
    );
}

#[test]
fn help_lists_subcommands() {
    let srv = Server::start();
    let mut r = srv.raw();
    let help = r.call(&["CONFIG", "HELP"]);
    assert!(help.starts_with(
        "*11\r\n+CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+GET <pattern>\r\n"
    ));
    assert!(help.ends_with("+HELP\r\n+    Prints this help.\r\n"));
}

#[test]
fn appendfsync_changes_the_log_policy() {
    let srv = Server::start();
    let mut r = srv.raw();
    let info = |r: &mut crate::util::Raw| r.call(&["INFO", "persistence"]);
    assert!(info(&mut r).contains("aof_fsync:everysec"));
    assert_eq!(
        r.call(&["CONFIG", "SET", "appendfsync", "always"]),
        "+OK\r\n"
    );
    assert!(info(&mut r).contains("aof_fsync:always"));
    // Writes still get acknowledged under the new policy (after an fsync).
    assert_eq!(r.call(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(r.call(&["CONFIG", "SET", "save", "3600 1"]), "+OK\r\n");
    assert!(info(&mut r).contains("snapshot_interval:3600"));
}

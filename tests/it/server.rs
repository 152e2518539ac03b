//! INFO, DBSIZE, FLUSHDB/FLUSHALL, SWAPDB, TIME, LASTSAVE, SHUTDOWN, DEBUG.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::{Server, eventually};

/// The text of an INFO reply (RESP2 bulk string).
fn info(r: &mut crate::util::Raw, sections: &[&str]) -> String {
    let mut cmd = vec!["INFO"];
    cmd.extend_from_slice(sections);
    let reply = r.call(&cmd);
    let (header, body) = reply.split_once("\r\n").unwrap();
    let len: usize = header.strip_prefix('$').unwrap().parse().unwrap();
    assert_eq!(body.len(), len + 2, "{reply:?}");
    body[..len].to_string()
}

fn field(text: &str, name: &str) -> Option<String> {
    text.split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_string))
}

fn headers(text: &str) -> Vec<&str> {
    text.split("\r\n").filter(|l| l.starts_with('#')).collect()
}

#[test]
fn info_sections() {
    let srv = Server::start();
    let mut r = srv.raw();
    let default = info(&mut r, &[]);
    assert_eq!(
        headers(&default),
        [
            "# Server",
            "# Clients",
            "# Memory",
            "# Persistence",
            "# Threads",
            "# Stats",
            "# Replication",
            "# CPU",
            "# Modules",
            "# Errorstats",
            "# Cluster",
            "# Keyspace"
        ]
    );
    assert_eq!(info(&mut r, &["default"]).len() / 100, default.len() / 100);
    assert_eq!(field(&default, "redis_version").as_deref(), Some("7.2.4"));
    assert!(field(&default, "dse_version").is_some());
    assert_eq!(
        field(&default, "tcp_port"),
        Some(srv.port.to_string()),
        "{default}"
    );
    assert_eq!(field(&default, "role").as_deref(), Some("master"));
    assert_eq!(field(&default, "connected_clients").as_deref(), Some("1"));
    assert_eq!(field(&default, "loading").as_deref(), Some("0"));
    // The write-ahead log is on by default (--appendonly yes).
    assert_eq!(field(&default, "aof_enabled").as_deref(), Some("1"));
    assert_eq!(field(&default, "cluster_enabled").as_deref(), Some("0"));
    assert!(
        field(&default, "used_memory_rss")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        field(&default, "used_cpu_user")
            .unwrap()
            .parse::<f64>()
            .is_ok()
    );
    assert!(default.ends_with("# Keyspace\r\n"), "{default:?}");

    let all = info(&mut r, &["all"]);
    assert!(headers(&all).contains(&"# Commandstats"));
    assert_eq!(headers(&info(&mut r, &["everything"])), headers(&all));
    // Several names, any case, in Redis's order; unknown names select nothing.
    assert_eq!(
        headers(&info(&mut r, &["KEYSPACE", "Server", "nosuch"])),
        ["# Server", "# Keyspace"]
    );
    assert_eq!(r.call(&["INFO", "nosuch"]), "$0\r\n\r\n");
    assert_eq!(
        r.call(&["INFO", "cluster"]),
        "$30\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n"
    );
    // RESP3: a verbatim string.
    r.call(&["HELLO", "3"]);
    assert_eq!(
        r.call(&["INFO", "cluster"]),
        "=34\r\ntxt:# Cluster\r\ncluster_enabled:0\r\n\r\n"
    );
}

#[test]
fn info_with_the_redis_crate() {
    let srv = Server::start();
    let mut c = srv.client();
    let info: redis::InfoDict = redis::cmd("INFO").query(&mut c).unwrap();
    assert_eq!(
        info.get::<String>("redis_version").as_deref(),
        Some("7.2.4")
    );
    assert_eq!(info.get::<u64>("connected_clients"), Some(1));
}

#[test]
fn commandstats_count_calls() {
    let srv = Server::start();
    let mut r = srv.raw();
    for _ in 0..3 {
        r.call(&["SET", "k", "v"]);
    }
    r.call(&["GET", "k"]);
    r.call(&["GET", "missing"]);
    r.call(&["SET", "k", "v", "EX", "0"]);
    r.call(&["CONFIG", "GET", "timeout"]);
    r.call(&["NOSUCH"]);
    let text = info(&mut r, &["commandstats", "errorstats", "stats"]);
    let line = field(&text, "cmdstat_set").unwrap();
    assert!(
        line.starts_with("calls=4,usec="),
        "one more SET that failed: {line}"
    );
    assert!(line.contains(",usec_per_call="), "{line}");
    assert!(line.ends_with(",rejected_calls=0,failed_calls=1"), "{line}");
    assert!(field(&text, "cmdstat_get").unwrap().starts_with("calls=2,"));
    assert!(
        field(&text, "cmdstat_config|get")
            .unwrap()
            .starts_with("calls=1,")
    );
    assert_eq!(field(&text, "errorstat_ERR").as_deref(), Some("count=2"));
    assert_eq!(field(&text, "keyspace_hits").as_deref(), Some("1"));
    assert_eq!(field(&text, "keyspace_misses").as_deref(), Some("1"));
    assert_eq!(field(&text, "total_error_replies").as_deref(), Some("2"));
    let processed: u64 = field(&text, "total_commands_processed")
        .unwrap()
        .parse()
        .unwrap();
    assert!(processed >= 7, "{processed}");
}

#[test]
fn info_keyspace_counts_keys_and_expires() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(info(&mut r, &["keyspace"]), "# Keyspace\r\n");
    r.call(&["SET", "a", "1"]);
    r.call(&["SET", "b", "2"]);
    r.call(&["SET", "c", "3", "EX", "100"]);
    let text = info(&mut r, &["keyspace"]);
    let db0 = field(&text, "db0").unwrap();
    let (counts, avg_ttl) = db0.split_once(",avg_ttl=").unwrap();
    assert_eq!(counts, "keys=3,expires=1");
    let avg_ttl: u64 = avg_ttl.parse().unwrap();
    assert!((90_000..=100_000).contains(&avg_ttl), "{avg_ttl}");
    let changes = field(
        &info(&mut r, &["persistence"]),
        "rdb_changes_since_last_save",
    );
    assert_eq!(changes.as_deref(), Some("3"));
}

#[test]
fn flush_and_dbsize() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["DBSIZE"]), ":0\r\n");
    let fill = |r: &mut crate::util::Raw| {
        for i in 0..100 {
            r.call(&["SET", &format!("k{i}"), "v"]);
        }
        assert_eq!(r.call(&["DBSIZE"]), ":100\r\n");
    };
    for flush in [
        &["FLUSHALL"][..],
        &["FLUSHALL", "ASYNC"],
        &["flushall", "sync"],
        &["FLUSHDB"],
        &["FLUSHDB", "async"],
        &["FLUSHDB", "SYNC"],
    ] {
        fill(&mut r);
        assert_eq!(r.call(flush), "+OK\r\n", "{flush:?}");
        assert_eq!(r.call(&["DBSIZE"]), ":0\r\n", "{flush:?}");
        assert_eq!(r.call(&["GET", "k1"]), "$-1\r\n");
    }
    assert_eq!(
        r.call(&["CONFIG", "SET", "lazyfree-lazy-user-flush", "yes"]),
        "+OK\r\n"
    );
    fill(&mut r);
    assert_eq!(r.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(r.call(&["DBSIZE"]), ":0\r\n");
    assert_eq!(r.call(&["FLUSHALL", "foo"]), "-ERR syntax error\r\n");
    assert_eq!(
        r.call(&["FLUSHALL", "ASYNC", "SYNC"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(r.call(&["FLUSHDB", "x"]), "-ERR syntax error\r\n");
    assert_eq!(
        r.call(&["DBSIZE", "x"]),
        "-ERR wrong number of arguments for 'dbsize' command\r\n"
    );
}

#[test]
fn swapdb_time_lastsave() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SWAPDB", "0", "0"]), "+OK\r\n");
    assert_eq!(
        r.call(&["SWAPDB", "0", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        r.call(&["SWAPDB", "-1", "0"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        r.call(&["SWAPDB", "a", "0"]),
        "-ERR invalid first DB index\r\n"
    );
    assert_eq!(
        r.call(&["SWAPDB", "0", "b"]),
        "-ERR invalid second DB index\r\n"
    );

    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let mut c = srv.client();
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(&mut c).unwrap();
    assert!(secs.abs_diff(now.as_secs()) <= 2, "{secs}");
    assert!(micros < 1_000_000);
    let time = r.call(&["TIME"]);
    assert!(time.starts_with("*2\r\n$10\r\n"), "{time:?}");

    let lastsave: u64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
    assert!(lastsave <= now.as_secs() + 1 && lastsave + 60 > now.as_secs());
    let info = info(&mut r, &["persistence"]);
    assert_eq!(
        field(&info, "rdb_last_save_time"),
        Some(lastsave.to_string())
    );
}

#[test]
fn shutdown_exits_with_code_zero() {
    let mut srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["SHUTDOWN", "ABORT"]),
        "-ERR No shutdown in progress.\r\n"
    );
    assert_eq!(r.call(&["SHUTDOWN", "foo"]), "-ERR syntax error\r\n");
    assert_eq!(
        r.call(&["SHUTDOWN", "SAVE", "NOSAVE"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        r.call(&["SHUTDOWN", "ABORT", "NOW"]),
        "-ERR syntax error\r\n"
    );
    let mut other = srv.raw();
    assert_eq!(other.call(&["SET", "k", "v"]), "+OK\r\n");
    // No reply: the connection just closes as the server exits.
    r.send(b"*3\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n$3\r\nNOW\r\n*1\r\n$4\r\nPING\r\n");
    assert!(r.is_closed());
    assert_eq!(srv.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(other.is_closed());
}

#[test]
fn debug_subcommands() {
    let srv = Server::start();
    let mut r = srv.raw();
    let started = Instant::now();
    assert_eq!(r.call(&["DEBUG", "SLEEP", "0"]), "+OK\r\n");
    assert!(started.elapsed() < Duration::from_secs(1));
    let started = Instant::now();
    assert_eq!(r.call(&["DEBUG", "sleep", "0.3"]), "+OK\r\n");
    assert!(started.elapsed() >= Duration::from_millis(300));

    r.call(&["SET", "s", "bar"]);
    r.call(&["SET", "n", "12"]);
    let object = r.call(&["DEBUG", "OBJECT", "s"]);
    let rest = object.strip_prefix("+Value at:0x").unwrap();
    let (_, rest) = rest.split_once(' ').unwrap();
    assert!(
        rest.starts_with("refcount:1 encoding:embstr serializedlength:4 lru:"),
        "{object:?}"
    );
    assert!(rest.ends_with(" lru_seconds_idle:0\r\n"), "{object:?}");
    let object = r.call(&["DEBUG", "OBJECT", "n"]);
    assert!(
        object.contains(" refcount:2147483647 encoding:int serializedlength:2 "),
        "{object:?}"
    );
    assert_eq!(r.call(&["DEBUG", "OBJECT", "nope"]), "-ERR no such key\r\n");
    assert_eq!(
        r.call(&["DEBUG", "foo"]),
        "-ERR unknown subcommand or wrong number of arguments for 'foo'. Try DEBUG HELP.\r\n"
    );
    assert_eq!(
        r.call(&["DEBUG", "OBJECT"]),
        "-ERR unknown subcommand or wrong number of arguments for 'OBJECT'. Try DEBUG HELP.\r\n"
    );
    assert_eq!(
        r.call(&["DEBUG"]),
        "-ERR wrong number of arguments for 'debug' command\r\n"
    );
    let help = r.call(&["DEBUG", "HELP"]);
    assert!(help.contains("+SLEEP <seconds>\r\n"), "{help:?}");

    // With active expiry off, an expired key nobody reads stays counted by DBSIZE;
    // switched back on, the background cycle removes it.
    assert_eq!(r.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "0"]), "+OK\r\n");
    r.call(&["SET", "gone", "v", "PX", "50"]);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(r.call(&["DBSIZE"]), ":3\r\n");
    assert_eq!(r.call(&["DEBUG", "SET-ACTIVE-EXPIRE", "1"]), "+OK\r\n");
    assert!(eventually(Duration::from_secs(5), || r.call(&["DBSIZE"]) == ":2\r\n"));
}

//! Integration tests for SLOWLOG and its settings, and for the small introspection
//! commands that came with it: MEMORY, ROLE and LOLWUT. Expected replies and error texts
//! are those of redis-server 7.2.

use crate::util::{Raw, Server};

/// The entries of `SLOWLOG GET` (raw RESP2), each as its arguments plus client name,
/// with id, time, duration and address checked for shape.
fn entries(r: &mut Raw, count: &str) -> Vec<(Vec<String>, String)> {
    r.send(&crate::util::encode(&[
        b"SLOWLOG",
        b"GET",
        count.as_bytes(),
    ]));
    let raw = String::from_utf8(r.read_reply()).unwrap();
    let mut lines = raw.split("\r\n");
    let n: usize = lines.next().unwrap()[1..].parse().unwrap();
    let bulk = |lines: &mut std::str::Split<&str>| {
        let head = lines.next().unwrap();
        assert!(head.starts_with('$'), "{raw}");
        lines.next().unwrap().to_string()
    };
    let mut out = Vec::new();
    let mut last_id = i64::MAX;
    for _ in 0..n {
        assert_eq!(lines.next(), Some("*6"), "{raw}");
        let id: i64 = lines.next().unwrap()[1..].parse().unwrap();
        assert!(id < last_id, "newest first: {raw}");
        last_id = id;
        let time: u64 = lines.next().unwrap()[1..].parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(time <= now && time + 60 > now, "{raw}");
        let micros: i64 = lines.next().unwrap()[1..].parse().unwrap();
        assert!(micros >= 0);
        let argc: usize = lines.next().unwrap()[1..].parse().unwrap();
        let args: Vec<String> = (0..argc).map(|_| bulk(&mut lines)).collect();
        let addr = bulk(&mut lines);
        assert!(addr.starts_with("127.0.0.1:"), "{raw}");
        let name = bulk(&mut lines);
        out.push((args, name));
    }
    out
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn slowlog_records_slow_commands() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["CONFIG", "GET", "slowlog*"]),
        "*4\r\n$23\r\nslowlog-log-slower-than\r\n$5\r\n10000\r\n$15\r\nslowlog-max-len\r\n$3\r\n128\r\n"
    );
    // The default threshold (10 ms) lets ordinary commands through unlogged.
    r.call(&["SET", "k", "v"]);
    assert_eq!(r.call(&["SLOWLOG", "LEN"]), ":0\r\n");

    assert_eq!(
        r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]),
        "+OK\r\n"
    );
    assert_eq!(r.call(&["SLOWLOG", "RESET"]), "+OK\r\n");
    r.call(&["CLIENT", "SETNAME", "logger"]);
    r.call(&["SET", "k", &"x".repeat(130)]);
    let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let mut del = vec!["DEL"];
    del.extend(many.iter().map(String::as_str));
    r.call(&del);
    // EXEC is not logged, the commands it ran are.
    r.call(&["MULTI"]);
    r.call(&["INCR", "n"]);
    r.call(&["EXEC"]);
    r.call(&["AUTH", "user", "secret"]);

    let got = entries(&mut r, "-1");
    let args: Vec<Vec<String>> = got.iter().map(|(a, _)| a.clone()).collect();
    let mut expected_del = words(&del[..31]);
    expected_del.push("... (10 more arguments)".into());
    assert_eq!(
        args,
        vec![
            words(&["AUTH", "(redacted)", "(redacted)"]),
            words(&["INCR", "n"]),
            words(&["MULTI"]),
            expected_del,
            words(&[
                "SET",
                "k",
                &format!("{}... (2 more bytes)", "x".repeat(128))
            ]),
            words(&["CLIENT", "SETNAME", "logger"]),
            words(&["SLOWLOG", "RESET"]),
        ]
    );
    // The name is the client's when the command ran.
    assert_eq!(got[0].1, "logger");
    assert_eq!(got[6].1, "");

    // GET's count: default 10, -1 all, 0 none.
    assert_eq!(entries(&mut r, "2").len(), 2);
    assert_eq!(entries(&mut r, "0").len(), 0);
    r.send(&crate::util::encode(&[b"SLOWLOG", b"GET"]));
    let all = String::from_utf8(r.read_reply()).unwrap();
    assert!(all.starts_with("*10\r\n"), "{all}");
    assert_eq!(r.call(&["SLOWLOG", "LEN"]), ":11\r\n");

    // max-len trims at the next entry; a negative threshold turns the log off.
    r.call(&["CONFIG", "SET", "slowlog-max-len", "3"]);
    r.call(&["PING"]);
    assert_eq!(r.call(&["SLOWLOG", "LEN"]), ":3\r\n");
    let newest_id = |r: &mut Raw| -> i64 {
        let raw = r.call(&["SLOWLOG", "GET", "1"]);
        raw.strip_prefix("*1\r\n*6\r\n:")
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = newest_id(&mut r);
    r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]);
    r.call(&["SLOWLOG", "RESET"]);
    r.call(&["PING"]);
    assert_eq!(r.call(&["SLOWLOG", "LEN"]), ":0\r\n");
    // Ids go on after a reset.
    r.call(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    assert_eq!(newest_id(&mut r), before + 2);
}

#[test]
fn slowlog_errors_and_help() {
    let srv = Server::start();
    let mut r = srv.raw();
    for (args, want) in [
        (
            &["SLOWLOG", "GET", "-2"][..],
            "-ERR count should be greater than or equal to -1\r\n",
        ),
        (
            &["SLOWLOG", "GET", "abc"],
            "-ERR count should be greater than or equal to -1\r\n",
        ),
        (
            &["SLOWLOG", "GET", "1", "2"],
            "-ERR unknown subcommand or wrong number of arguments for 'GET'. Try SLOWLOG HELP.\r\n",
        ),
        (
            &["SLOWLOG", "LEN", "x"],
            "-ERR wrong number of arguments for 'slowlog|len' command\r\n",
        ),
        (
            &["SLOWLOG"],
            "-ERR wrong number of arguments for 'slowlog' command\r\n",
        ),
        (
            &["SLOWLOG", "FOO"],
            "-ERR unknown subcommand 'FOO'. Try SLOWLOG HELP.\r\n",
        ),
        (
            &["CONFIG", "SET", "slowlog-max-len", "-1"],
            "-ERR CONFIG SET failed (possibly related to argument 'slowlog-max-len') - argument must be between 0 and 9223372036854775807 inclusive\r\n",
        ),
        (
            &["CONFIG", "SET", "slowlog-log-slower-than", "-2"],
            "-ERR CONFIG SET failed (possibly related to argument 'slowlog-log-slower-than') - argument must be between -1 and 9223372036854775807 inclusive\r\n",
        ),
    ] {
        assert_eq!(r.call(args), want, "{args:?}");
    }
    let help = r.call(&["SLOWLOG", "HELP"]);
    assert!(
        help.starts_with(
            "*12\r\n+SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+GET [<count>]\r\n"
        ),
        "{help}"
    );
    assert!(
        help.ends_with("+HELP\r\n+    Prints this help.\r\n"),
        "{help}"
    );
}

#[test]
fn memory_usage_and_reports() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.call(&["SET", "small", "v"]);
    r.call(&["SET", "big", &"x".repeat(10_000)]);
    let usage = |r: &mut Raw, key: &str| -> i64 {
        let reply = r.call(&["MEMORY", "USAGE", key]);
        reply[1..].trim().parse().unwrap()
    };
    let small = usage(&mut r, "small");
    let big = usage(&mut r, "big");
    assert!(small > 0 && big > 10_000 && big > small, "{small} {big}");
    assert_eq!(r.call(&["MEMORY", "USAGE", "missing"]), "$-1\r\n");
    assert_eq!(
        r.call(&["MEMORY", "USAGE", "big", "SAMPLES", "0"]),
        format!(":{big}\r\n")
    );
    for (args, want) in [
        (
            &["MEMORY", "USAGE", "big", "SAMPLES"][..],
            "-ERR syntax error\r\n",
        ),
        (
            &["MEMORY", "USAGE", "big", "SAMPLES", "-1"],
            "-ERR syntax error\r\n",
        ),
        (
            &["MEMORY", "USAGE", "big", "SAMPLES", "x"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            &["MEMORY", "USAGE", "big", "FOO", "1"],
            "-ERR syntax error\r\n",
        ),
        (
            &["MEMORY", "USAGE"],
            "-ERR wrong number of arguments for 'memory|usage' command\r\n",
        ),
        (&["MEMORY", "PURGE"], "+OK\r\n"),
    ] {
        assert_eq!(r.call(args), want, "{args:?}");
    }

    // STATS: a map (a flat array in RESP2) with a nested map for the database.
    let stats = r.call(&["MEMORY", "STATS"]);
    assert!(
        stats.starts_with("*56\r\n$14\r\npeak.allocated\r\n:"),
        "{stats}"
    );
    assert!(stats.contains("$4\r\ndb.0\r\n*4\r\n$23\r\noverhead.hashtable.main\r\n"));
    assert!(stats.contains("$10\r\nkeys.count\r\n:2\r\n"), "{stats}");
    let mut r3 = srv.raw();
    r3.call(&["HELLO", "3"]);
    let stats3 = r3.call(&["MEMORY", "STATS"]);
    assert!(stats3.starts_with("%28\r\n"), "{stats3}");
    assert!(stats3.contains("$4\r\ndb.0\r\n%2\r\n"), "{stats3}");
    assert!(
        stats3.contains("$18\r\ndataset.percentage\r\n,"),
        "{stats3}"
    );

    let doctor = r.call(&["MEMORY", "DOCTOR"]);
    assert!(
        doctor.contains("Hi Sam, this instance is empty or is using very little memory"),
        "{doctor}"
    );
    let doctor3 = r3.call(&["MEMORY", "DOCTOR"]);
    assert!(
        doctor3.starts_with('=') && doctor3.contains("\r\ntxt:Hi Sam"),
        "{doctor3}"
    );
    assert!(r.call(&["MEMORY", "MALLOC-STATS"]).starts_with('$'));
    let help = r.call(&["MEMORY", "HELP"]);
    assert!(
        help.contains("+USAGE <key> [SAMPLES <count>]\r\n"),
        "{help}"
    );
}

#[test]
fn role_and_lolwut() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["ROLE"]), "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n");
    assert_eq!(
        r.call(&["ROLE", "x"]),
        "-ERR wrong number of arguments for 'role' command\r\n"
    );

    let plain = "$17\r\nRedis ver. 7.2.4\n\r\n";
    for args in [
        &["LOLWUT"][..],
        &["LOLWUT", "VERSION", "7"],
        &["LOLWUT", "VERSION"],
        &["LOLWUT", "1", "2"],
    ] {
        assert_eq!(r.call(args), plain, "{args:?}");
    }
    assert_eq!(
        r.call(&["LOLWUT", "VERSION", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(
        r.call(&["LOLWUT", "VERSION", "5", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );

    // Version 5: Schotter in Braille, 66 columns by default.
    let art = r.call(&["LOLWUT", "VERSION", "5"]);
    let text = art.split_once("\r\n").unwrap().1;
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].chars().count() == 66
            && lines[0]
                .chars()
                .all(|c| ('\u{2800}'..='\u{28ff}').contains(&c))
    );
    assert!(
        text.ends_with("Georg Nees - schotter, plotter on paper, 1968. Redis ver. 7.2.4\n\r\n")
    );
    let narrow = r.call(&["LOLWUT", "VERSION", "5", "10", "2", "2"]);
    let first_line = narrow.split("\r\n").nth(1).unwrap().lines().next().unwrap();
    assert_eq!(first_line.chars().count(), 10, "{narrow}");

    // Version 6: a skyline in terminal colors, 80x20 by default.
    let art = r.call(&["LOLWUT", "VERSION", "6", "30", "5"]);
    let text = art.split_once("\r\n").unwrap().1;
    let rows: Vec<&str> = text.split('\n').take(5).collect();
    assert!(
        rows.iter().all(|row| row.matches("\x1b[0m").count() == 30),
        "{text}"
    );
    assert!(text.contains("Original 8 bit image from Plaguemon by hikikomori. Redis ver. 7.2.4\n"));

    let mut r3 = srv.raw();
    r3.call(&["HELLO", "3"]);
    assert_eq!(r3.call(&["LOLWUT"]), "=21\r\ntxt:Redis ver. 7.2.4\n\r\n");
}

//! Integration tests for the client commands.

use std::collections::HashMap;
use std::time::Duration;

use crate::util::{Raw, Server, client_id};

/// The fields of a CLIENT LIST line.
fn fields(line: &str) -> HashMap<String, String> {
    line.split(' ')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The text of a RESP2 bulk reply.
fn bulk_text(reply: &str) -> String {
    let (header, body) = reply.split_once("\r\n").expect("bulk header");
    assert!(header.starts_with('$'), "not a bulk string: {reply:?}");
    body.strip_suffix("\r\n").expect("bulk trailer").to_string()
}

/// CLIENT LIST as one map of fields per client.
fn client_list(r: &mut Raw) -> Vec<HashMap<String, String>> {
    bulk_text(&r.call(&["CLIENT", "LIST"]))
        .lines()
        .map(fields)
        .collect()
}

#[test]
fn id_setname_getname() {
    let srv = Server::start();
    let mut a = srv.client();
    let mut b = srv.client();
    let id_a: i64 = redis::cmd("CLIENT").arg("ID").query(&mut a).unwrap();
    let id_b: i64 = redis::cmd("CLIENT").arg("ID").query(&mut b).unwrap();
    assert!(id_a > 0 && id_b > 0 && id_a != id_b);

    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut a).unwrap();
    assert_eq!(name, None);
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("alice")
        .query(&mut a)
        .unwrap();
    let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut a).unwrap();
    assert_eq!(name.as_deref(), Some("alice"));

    let mut r = srv.raw();
    assert_eq!(r.call(&["CLIENT", "GETNAME"]), "$-1\r\n");
    assert_eq!(r.call(&["client", "setname", "bob"]), "+OK\r\n");
    assert_eq!(r.call(&["CLIENT", "GETNAME"]), "$3\r\nbob\r\n");
    // An empty name removes the name.
    assert_eq!(r.call(&["CLIENT", "SETNAME", ""]), "+OK\r\n");
    assert_eq!(r.call(&["CLIENT", "GETNAME"]), "$-1\r\n");
    for bad in ["a b", "a\nb", "caf\u{e9}", "\t"] {
        assert_eq!(
            r.call(&["CLIENT", "SETNAME", bad]),
            "-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
            "{bad:?}"
        );
    }
    assert_eq!(
        r.call(&["CLIENT", "SETNAME"]),
        "-ERR wrong number of arguments for 'client|setname' command\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "ID", "x"]),
        "-ERR wrong number of arguments for 'client|id' command\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT"]),
        "-ERR wrong number of arguments for 'client' command\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "FOO"]),
        "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"
    );
}

#[test]
fn setname_is_visible_to_other_connections() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut a = srv.raw();
    let mut b = srv.raw();
    let id_a = client_id(&mut a);
    assert_eq!(a.call(&["CLIENT", "SETNAME", "worker-1"]), "+OK\r\n");
    assert_eq!(a.call(&["GET", "k"]), "$-1\r\n");

    let list = client_list(&mut b);
    let entry = list
        .iter()
        .find(|c| c["id"] == id_a.to_string())
        .expect("client a listed");
    assert_eq!(entry["name"], "worker-1");
    // Another client's `cmd` is the last command it ran.
    assert_eq!(entry["cmd"], "get");
    assert_eq!(list.len(), 2);

    // Filtering by ID keeps the order asked for and skips unknown ids.
    let id_b = client_id(&mut b);
    let text = bulk_text(&b.call(&[
        "CLIENT",
        "LIST",
        "ID",
        &id_b.to_string(),
        "999999",
        &id_a.to_string(),
    ]));
    let ids: Vec<String> = text.lines().map(|l| fields(l)["id"].clone()).collect();
    assert_eq!(ids, [id_b.to_string(), id_a.to_string()]);

    assert_eq!(b.call(&["CLIENT", "LIST", "TYPE", "pubsub"]), "$0\r\n\r\n");
    assert_eq!(b.call(&["CLIENT", "LIST", "TYPE", "replica"]), "$0\r\n\r\n");
    assert_eq!(
        bulk_text(&b.call(&["CLIENT", "LIST", "TYPE", "NORMAL"]))
            .lines()
            .count(),
        2
    );
    assert_eq!(
        b.call(&["CLIENT", "LIST", "TYPE", "foo"]),
        "-ERR Unknown client type 'foo'\r\n"
    );
    assert_eq!(
        b.call(&["CLIENT", "LIST", "ID", "abc"]),
        "-ERR Invalid client ID\r\n"
    );
    assert_eq!(b.call(&["CLIENT", "LIST", "ID"]), "-ERR syntax error\r\n");
    assert_eq!(
        b.call(&["CLIENT", "LIST", "TYPE", "normal", "x"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(b.call(&["CLIENT", "LIST", "foo"]), "-ERR syntax error\r\n");

    // A closed connection leaves the list.
    drop(a);
    assert!(crate::util::eventually(Duration::from_secs(5), || {
        client_list(&mut b).len() == 1
    }));
}

/// Redis 7.2's CLIENT LIST fields, in order, then Redis 8's io-thread.
const FIELDS: &[&str] = &[
    "id",
    "addr",
    "laddr",
    "fd",
    "name",
    "age",
    "idle",
    "flags",
    "db",
    "sub",
    "psub",
    "ssub",
    "multi",
    "qbuf",
    "qbuf-free",
    "argv-mem",
    "multi-mem",
    "rbs",
    "rbp",
    "obl",
    "oll",
    "omem",
    "tot-mem",
    "events",
    "cmd",
    "user",
    "redir",
    "resp",
    "lib-name",
    "lib-ver",
    // Redis 8's field: the event loop serving the client.
    "io-thread",
];

#[test]
fn client_info_line_format() {
    let srv = Server::start();
    let mut r = srv.raw();
    let idle = srv.raw();
    let reply = r.call(&["CLIENT", "INFO"]);
    let text = bulk_text(&reply);
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    let line = text.trim_end();
    let keys: Vec<&str> = line
        .split(' ')
        .map(|kv| kv.split_once('=').expect("key=value").0)
        .collect();
    assert_eq!(keys, FIELDS);
    let f = fields(line);
    assert_eq!(f["id"], client_id(&mut r).to_string());
    assert_eq!(f["addr"], r.s.local_addr().unwrap().to_string());
    assert_eq!(f["laddr"], srv.addr());
    assert_eq!(f["name"], "");
    assert_eq!(f["flags"], "N");
    assert_eq!(f["db"], "0");
    assert_eq!(f["multi"], "-1");
    assert_eq!(f["cmd"], "client|info");
    assert_eq!(f["user"], "default");
    assert_eq!(f["resp"], "2");

    // The caller's own line in CLIENT LIST shows the running command; a connection that
    // ran nothing shows NULL.
    let mut list = Vec::new();
    assert!(crate::util::eventually(Duration::from_secs(5), || {
        list = client_list(&mut r);
        list.len() == 2
    }));
    let me = list.iter().find(|c| c["id"] == f["id"]).unwrap();
    assert_eq!(me["cmd"], "client|list");
    assert_eq!(me["idle"], "0");
    let other = list.iter().find(|c| c["id"] != f["id"]).unwrap();
    assert_eq!(other["cmd"], "NULL");
    assert_eq!(other["addr"], idle.s.local_addr().unwrap().to_string());

    // RESP3: a verbatim string.
    let hello = r.call(&["HELLO", "3"]);
    assert!(hello.starts_with("%7\r\n"), "{hello}");
    let reply = r.call(&["CLIENT", "INFO"]);
    let (header, body) = reply.split_once("\r\n").unwrap();
    let len: usize = header.strip_prefix('=').unwrap().parse().unwrap();
    let body = body.strip_suffix("\r\n").unwrap();
    assert_eq!(body.len(), len);
    let text = body.strip_prefix("txt:").expect("txt: verbatim format");
    assert_eq!(fields(text.trim_end())["resp"], "3");
    let list = r.call(&["CLIENT", "LIST"]);
    assert!(list.starts_with('='), "{list}");
    assert!(list.contains("\r\ntxt:id="), "{list}");

    assert_eq!(
        r.call(&["CLIENT", "INFO", "x"]),
        "-ERR wrong number of arguments for 'client|info' command\r\n"
    );
}

#[test]
fn redis_crate_sets_lib_name_on_connect() {
    let srv = Server::start();
    let mut c = srv.client();
    let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut c).unwrap();
    let f = fields(info.trim_end());
    assert_eq!(f["lib-name"], "redis-rs");
    assert!(!f["lib-ver"].is_empty(), "{info}");
}

#[test]
fn setinfo_validation() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(
        r.call(&["CLIENT", "SETINFO", "lib-name", "redis.py"]),
        "+OK\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "SETINFO", "LIB-VER", "1.2.3"]),
        "+OK\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "SETINFO", "badger", "hamster"]),
        "-ERR Unrecognized option 'badger'\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "SETINFO", "Lib-Name", "redis py"]),
        "-ERR Lib-Name cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "SETINFO", "lib-ver", "1.0\n"]),
        "-ERR lib-ver cannot contain spaces, newlines or special characters.\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "SETINFO", "lib-name"]),
        "-ERR wrong number of arguments for 'client|setinfo' command\r\n"
    );
    // The failed calls changed nothing.
    let info = bulk_text(&r.call(&["CLIENT", "INFO"]));
    assert!(
        info.ends_with(" lib-name=redis.py lib-ver=1.2.3 io-thread=0\n"),
        "{info}"
    );
    // An empty value clears the field.
    assert_eq!(r.call(&["CLIENT", "SETINFO", "lib-ver", ""]), "+OK\r\n");
    let info = bulk_text(&r.call(&["CLIENT", "INFO"]));
    assert!(
        info.ends_with(" lib-name=redis.py lib-ver= io-thread=0\n"),
        "{info}"
    );
}

#[test]
fn no_evict_and_no_touch_flags() {
    let srv = Server::start();
    let mut r = srv.raw();
    let flags =
        |r: &mut Raw| fields(bulk_text(&r.call(&["CLIENT", "INFO"])).trim_end())["flags"].clone();
    assert_eq!(flags(&mut r), "N");
    assert_eq!(r.call(&["CLIENT", "NO-EVICT", "on"]), "+OK\r\n");
    assert_eq!(flags(&mut r), "e");
    assert_eq!(r.call(&["CLIENT", "NO-TOUCH", "ON"]), "+OK\r\n");
    assert_eq!(flags(&mut r), "eT");
    assert_eq!(r.call(&["CLIENT", "NO-EVICT", "off"]), "+OK\r\n");
    assert_eq!(flags(&mut r), "T");
    assert_eq!(r.call(&["CLIENT", "NO-TOUCH", "Off"]), "+OK\r\n");
    assert_eq!(flags(&mut r), "N");
    assert_eq!(
        r.call(&["CLIENT", "NO-EVICT", "maybe"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "NO-TOUCH", "yes"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        r.call(&["CLIENT", "NO-EVICT", "on", "x"]),
        "-ERR wrong number of arguments for 'client|no-evict' command\r\n"
    );
    // RESET clears both.
    r.call(&["CLIENT", "NO-EVICT", "on"]);
    assert_eq!(r.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(flags(&mut r), "N");
}

#[test]
fn kill_closes_connections_on_any_loop() {
    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut killer = srv.raw();
    // Connections are spread round-robin over the loops: some victims share the
    // killer's loop, some do not.
    let mut victims: Vec<Raw> = (0..4).map(|_| srv.raw()).collect();
    for v in &mut victims {
        assert_eq!(v.call(&["PING"]), "+PONG\r\n");
    }

    // New form by ID: the count, and the connection is really closed.
    let id = client_id(&mut victims[0]);
    assert_eq!(
        killer.call(&["CLIENT", "KILL", "ID", &id.to_string()]),
        ":1\r\n"
    );
    assert!(victims[0].is_closed());
    // It is gone from the list at once.
    assert!(
        client_list(&mut killer)
            .iter()
            .all(|c| c["id"] != id.to_string())
    );
    assert_eq!(
        killer.call(&["CLIENT", "KILL", "ID", &id.to_string()]),
        ":0\r\n"
    );

    // Old form by address: OK, or an error when no client matches.
    let addr = victims[1].s.local_addr().unwrap().to_string();
    assert_eq!(killer.call(&["CLIENT", "KILL", &addr]), "+OK\r\n");
    assert!(victims[1].is_closed());
    assert_eq!(
        killer.call(&["CLIENT", "KILL", &addr]),
        "-ERR No such client\r\n"
    );

    // New form by ADDR.
    let addr = victims[2].s.local_addr().unwrap().to_string();
    assert_eq!(
        killer.call(&["CLIENT", "KILL", "ADDR", &addr, "SKIPME", "yes"]),
        ":1\r\n"
    );
    assert!(victims[2].is_closed());

    // LADDR matches every client of this listener; the caller is skipped by default.
    let mut extra = srv.raw();
    assert_eq!(extra.call(&["PING"]), "+PONG\r\n");
    assert_eq!(
        killer.call(&["CLIENT", "KILL", "LADDR", &srv.addr(), "USER", "default"]),
        ":2\r\n"
    );
    assert!(victims[3].is_closed());
    assert!(extra.is_closed());
    assert_eq!(killer.call(&["PING"]), "+PONG\r\n");
    assert_eq!(client_list(&mut killer).len(), 1);
}

#[test]
fn kill_self() {
    let srv = Server::start();
    // SKIPME yes (the default) protects the caller.
    let mut r = srv.raw();
    let id = client_id(&mut r).to_string();
    assert_eq!(r.call(&["CLIENT", "KILL", "ID", &id]), ":0\r\n");
    // With SKIPME no, the reply comes first, then the connection closes.
    assert_eq!(
        r.call(&["CLIENT", "KILL", "ID", &id, "SKIPME", "no"]),
        ":1\r\n"
    );
    assert!(r.is_closed());
    // The old form may kill the caller.
    let mut r = srv.raw();
    let addr = r.s.local_addr().unwrap().to_string();
    assert_eq!(r.call(&["CLIENT", "KILL", &addr]), "+OK\r\n");
    assert!(r.is_closed());
}

#[test]
fn kill_by_max_age() {
    let srv = Server::start();
    let mut old = srv.raw();
    assert_eq!(old.call(&["PING"]), "+PONG\r\n");
    std::thread::sleep(Duration::from_millis(1100));
    let mut young = srv.raw();
    let mut killer = srv.raw();
    assert_eq!(killer.call(&["CLIENT", "KILL", "MAXAGE", "1"]), ":1\r\n");
    assert!(old.is_closed());
    assert_eq!(young.call(&["PING"]), "+PONG\r\n");
    assert_eq!(
        killer.call(&["CLIENT", "KILL", "MAXAGE", "0"]),
        "-ERR maxage should be greater than 0\r\n"
    );
    assert_eq!(
        killer.call(&["CLIENT", "KILL", "MAXAGE", "x"]),
        "-ERR maxage is not an integer or out of range\r\n"
    );
}

#[test]
fn kill_errors() {
    let srv = Server::start();
    let mut r = srv.raw();
    let cases: &[(&[&str], &str)] = &[
        (
            &["CLIENT", "KILL"],
            "-ERR wrong number of arguments for 'client|kill' command\r\n",
        ),
        (
            &["CLIENT", "KILL", "ID", "0"],
            "-ERR client-id should be greater than 0\r\n",
        ),
        (
            &["CLIENT", "KILL", "ID", "-1"],
            "-ERR client-id should be greater than 0\r\n",
        ),
        (
            &["CLIENT", "KILL", "ID", "abc"],
            "-ERR client-id should be greater than 0\r\n",
        ),
        (
            &["CLIENT", "KILL", "ID", "1", "TYPE"],
            "-ERR syntax error\r\n",
        ),
        (
            &["CLIENT", "KILL", "SKIPME", "maybe"],
            "-ERR syntax error\r\n",
        ),
        (&["CLIENT", "KILL", "foo", "bar"], "-ERR syntax error\r\n"),
        (
            &["CLIENT", "KILL", "TYPE", "x"],
            "-ERR Unknown client type 'x'\r\n",
        ),
        (
            &["CLIENT", "KILL", "USER", "bob"],
            "-ERR No such user 'bob'\r\n",
        ),
        (&["CLIENT", "KILL", "1.2.3.4:5"], "-ERR No such client\r\n"),
        (&["CLIENT", "KILL", "TYPE", "pubsub"], ":0\r\n"),
        (
            &["CLIENT", "KILL", "TYPE", "master", "SKIPME", "no"],
            ":0\r\n",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(r.call(args), *want, "{args:?}");
    }
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn client_help() {
    let srv = Server::start();
    let mut r = srv.raw();
    let help = r.call(&["CLIENT", "HELP"]);
    let lines: Vec<&str> = help.split("\r\n").collect();
    let n: usize = lines[0].strip_prefix('*').unwrap().parse().unwrap();
    assert_eq!(n, lines.len() - 2, "{help}");
    assert_eq!(
        lines[1],
        "+CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    );
    assert!(lines.contains(&"+SETINFO <option> <value>"));
    assert!(
        help.ends_with("+HELP\r\n+    Prints this help.\r\n"),
        "{help}"
    );
    assert!(lines[1..lines.len() - 1].iter().all(|l| l.starts_with('+')));
}

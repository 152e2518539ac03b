//! Integration tests for the introspection commands.

use redis::Value;

use crate::util::Server;

/// COMMAND INFO GET as Redis 7 answers it, byte for byte (RESP2).
const GET_INFO_RESP2: &str = "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n";

/// The same in RESP3: sets for flags, categories, tips and key specs; maps in the specs.
const GET_INFO_RESP3: &str = "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~3\r\n+@read\r\n+@string\r\n+@fast\r\n~0\r\n~1\r\n%3\r\n$5\r\nflags\r\n~2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n%2\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n%1\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n%2\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n%3\r\n$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n~0\r\n";

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

fn int(v: &Value) -> i64 {
    match v {
        Value::Int(n) => *n,
        other => panic!("not an integer: {other:?}"),
    }
}

#[test]
fn command_info_get_matches_redis() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["COMMAND", "INFO", "get"]), GET_INFO_RESP2);
    assert_eq!(r.call(&["command", "info", "GET"]), GET_INFO_RESP2);
    assert_eq!(r.call(&["COMMAND", "INFO", "nosuch"]), "*1\r\n$-1\r\n");
    assert_eq!(r.call(&["COMMAND", "INFO", "get|x"]), "*1\r\n$-1\r\n");
    assert_eq!(
        r.call(&["COMMAND", "INFO", "client|list|x"]),
        "*1\r\n$-1\r\n"
    );
    r.call(&["HELLO", "3"]);
    assert_eq!(r.call(&["COMMAND", "INFO", "get"]), GET_INFO_RESP3);
    assert_eq!(r.call(&["COMMAND", "INFO", "nosuch"]), "*1\r\n_\r\n");
}

#[test]
fn command_info_of_containers_and_subcommands() {
    let srv = Server::start();
    let mut c = srv.client();
    let reply: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("client")
        .arg("client|list")
        .arg("SET")
        .query(&mut c)
        .unwrap();
    let infos = items(&reply);
    assert_eq!(infos.len(), 3);
    for info in infos {
        assert_eq!(items(info).len(), 10);
    }

    // The container: no flags, only @slow, subcommands named `client|...`.
    let client = items(&infos[0]);
    assert_eq!(text(&client[0]), "client");
    assert_eq!(int(&client[1]), -2);
    assert!(items(&client[2]).is_empty());
    let cats: Vec<String> = items(&client[6]).iter().map(text).collect();
    assert_eq!(cats, ["@slow"]);
    let subs: Vec<String> = items(&client[9])
        .iter()
        .map(|s| text(&items(s)[0]))
        .collect();
    for name in ["client|list", "client|kill", "client|setinfo", "client|id"] {
        assert!(subs.iter().any(|s| s == name), "{name} in {subs:?}");
    }

    // A subcommand looked up by its full name, with implicit categories from its flags.
    let list = items(&infos[1]);
    assert_eq!(text(&list[0]), "client|list");
    assert_eq!(int(&list[1]), -2);
    let flags: Vec<String> = items(&list[2]).iter().map(text).collect();
    assert_eq!(flags, ["admin", "noscript", "loading", "stale"]);
    let cats: Vec<String> = items(&list[6]).iter().map(text).collect();
    assert_eq!(cats, ["@admin", "@slow", "@dangerous", "@connection"]);
    assert!(items(&list[8]).is_empty());

    // SET: the declared key-spec flags.
    let set = items(&infos[2]);
    assert_eq!(text(&set[0]), "set");
    assert_eq!((int(&set[3]), int(&set[4]), int(&set[5])), (1, 1, 1));
    let cats: Vec<String> = items(&set[6]).iter().map(text).collect();
    assert_eq!(cats, ["@write", "@string", "@slow"]);
    let spec = items(&items(&set[8])[0]);
    assert_eq!(text(&spec[0]), "flags");
    let key_flags: Vec<String> = items(&spec[1]).iter().map(text).collect();
    assert_eq!(key_flags, ["RW", "access", "update", "variable_flags"]);
}

/// Every command and subcommand the table has is listed and described, under its own
/// name; COMMAND COUNT is the number of top-level commands, as `COMMAND` lists them.
#[test]
fn command_count_list_and_info_cover_the_table() {
    let srv = Server::start();
    let mut c = srv.client();
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    let all: Value = redis::cmd("COMMAND").query(&mut c).unwrap();
    assert_eq!(items(&all).len() as i64, count);
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut c).unwrap();
    let top: Vec<&String> = names.iter().filter(|n| !n.contains('|')).collect();
    assert_eq!(top.len() as i64, count);
    for name in [
        "get",
        "set",
        "ping",
        "client",
        "client|list",
        "command",
        "command|getkeys",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} listed");
    }
    let mut info = redis::cmd("COMMAND");
    info.arg("INFO");
    for n in &names {
        info.arg(n);
    }
    let infos: Value = info.query(&mut c).unwrap();
    let infos = items(&infos);
    assert_eq!(infos.len(), names.len());
    for (name, info) in names.iter().zip(infos) {
        let info = items(info);
        assert_eq!(info.len(), 10, "{name}");
        assert_eq!(&text(&info[0]), name);
    }
    // `COMMAND INFO` with no names is `COMMAND`.
    let info_all: Value = redis::cmd("COMMAND").arg("INFO").query(&mut c).unwrap();
    assert_eq!(info_all, all);

    let mut r = srv.raw();
    assert_eq!(
        r.call(&["COMMAND", "COUNT", "x"]),
        "-ERR wrong number of arguments for 'command|count' command\r\n"
    );
    assert_eq!(
        r.call(&["COMMAND", "foo"]),
        "-ERR unknown subcommand 'foo'. Try COMMAND HELP.\r\n"
    );
}

#[test]
fn command_list_filters() {
    let srv = Server::start();
    let mut c = srv.client();
    let list = |c: &mut redis::Connection, kind: &str, arg: &str| -> Vec<String> {
        redis::cmd("COMMAND")
            .arg("LIST")
            .arg("FILTERBY")
            .arg(kind)
            .arg(arg)
            .query(c)
            .unwrap()
    };
    assert_eq!(list(&mut c, "PATTERN", "CLIENT|L*"), ["client|list"]);
    let client = list(&mut c, "pattern", "client*");
    assert_eq!(client[0], "client");
    assert!(client.len() > 5 && client[1..].iter().all(|n| n.starts_with("client|")));
    let connection = list(&mut c, "aclcat", "CONNECTION");
    assert!(connection.iter().any(|n| n == "ping"));
    assert!(connection.iter().any(|n| n == "client|kill"));
    assert!(!connection.iter().any(|n| n == "get" || n == "client"));
    let read = list(&mut c, "aclcat", "read");
    assert!(read.iter().any(|n| n == "get"));
    assert!(!read.iter().any(|n| n == "set"));
    assert!(list(&mut c, "aclcat", "@connection").is_empty());
    assert!(list(&mut c, "aclcat", "nosuch").is_empty());
    assert!(list(&mut c, "module", "x").is_empty());

    let mut r = srv.raw();
    for bad in [
        &["COMMAND", "LIST", "FILTERBY"][..],
        &["COMMAND", "LIST", "FILTERBY", "foo", "bar"],
        &["COMMAND", "LIST", "foo"],
        &["COMMAND", "LIST", "FILTERBY", "pattern", "a", "b"],
    ] {
        assert_eq!(r.call(bad), "-ERR syntax error\r\n", "{bad:?}");
    }
}

#[test]
fn command_getkeys() {
    let srv = Server::start();
    let mut c = srv.client();
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("SET")
        .arg("k1")
        .arg("v")
        .arg("EX")
        .arg("10")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["k1"]);

    let mut r = srv.raw();
    assert_eq!(
        r.call(&["COMMAND", "GETKEYSANDFLAGS", "set", "a", "b"]),
        "*1\r\n*2\r\n$1\r\na\r\n*4\r\n+RW\r\n+access\r\n+update\r\n+variable_flags\r\n"
    );
    assert_eq!(
        r.call(&["COMMAND", "GETKEYSANDFLAGS", "get", "a"]),
        "*1\r\n*2\r\n$1\r\na\r\n*2\r\n+RO\r\n+access\r\n"
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &["COMMAND", "GETKEYS", "nosuch", "a"],
            "-ERR Invalid command specified\r\n",
        ),
        (
            &["COMMAND", "GETKEYS", "client", "nosuch"],
            "-ERR Invalid command specified\r\n",
        ),
        (
            &["COMMAND", "GETKEYS", "ping"],
            "-ERR The command has no key arguments\r\n",
        ),
        (
            &["COMMAND", "GETKEYS", "client", "list"],
            "-ERR The command has no key arguments\r\n",
        ),
        (
            &["COMMAND", "GETKEYS", "get"],
            "-ERR Invalid number of arguments specified for command\r\n",
        ),
        (
            &["COMMAND", "GETKEYS", "get", "a", "b"],
            "-ERR Invalid number of arguments specified for command\r\n",
        ),
        (
            &["COMMAND", "GETKEYS", "set", "a"],
            "-ERR Invalid number of arguments specified for command\r\n",
        ),
        (
            &["COMMAND", "GETKEYS"],
            "-ERR wrong number of arguments for 'command|getkeys' command\r\n",
        ),
        (
            &["COMMAND", "GETKEYSANDFLAGS", "ping"],
            "-ERR The command has no key arguments\r\n",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(r.call(args), *want, "{args:?}");
    }

    // MSET's keys are every other argument from the first (1, -1, 2), once the strings
    // family declares it; until then it is an unknown command here too.
    let info = r.call(&["COMMAND", "INFO", "mset"]);
    let getkeys = r.call(&["COMMAND", "GETKEYS", "MSET", "a", "1", "b", "2", "c", "3"]);
    if info == "*1\r\n$-1\r\n" {
        assert_eq!(getkeys, "-ERR Invalid command specified\r\n");
    } else {
        assert!(info.contains(":1\r\n:-1\r\n:2\r\n"), "{info}");
        assert_eq!(getkeys, "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n");
    }
}

#[test]
fn command_docs() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["COMMAND", "DOCS", "nosuch"]), "*0\r\n");
    let get = r.call(&["COMMAND", "DOCS", "get", "nosuch"]);
    assert!(
        get.starts_with("*2\r\n$3\r\nget\r\n*8\r\n$7\r\nsummary\r\n"),
        "{get}"
    );
    assert!(get.contains("$5\r\ngroup\r\n$6\r\nstring\r\n"), "{get}");
    r.call(&["HELLO", "3"]);
    let get = r.call(&["COMMAND", "DOCS", "get"]);
    assert!(
        get.starts_with("%1\r\n$3\r\nget\r\n%4\r\n$7\r\nsummary\r\n"),
        "{get}"
    );
    assert_eq!(r.call(&["COMMAND", "DOCS", "nosuch"]), "%0\r\n");

    // Containers nest their subcommands' docs in a map keyed by full name.
    let mut c = srv.client();
    let docs: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("client")
        .arg("client|kill")
        .query(&mut c)
        .unwrap();
    let docs = items(&docs);
    assert_eq!(docs.len(), 4);
    assert_eq!(text(&docs[0]), "client");
    let client = items(&docs[1]);
    let keys: Vec<String> = client.iter().step_by(2).map(text).collect();
    assert_eq!(
        keys,
        ["summary", "since", "group", "complexity", "subcommands"]
    );
    let subs = items(&client[9]);
    assert!(subs.iter().step_by(2).any(|s| text(s) == "client|setname"));
    assert_eq!(text(&docs[2]), "client|kill");

    // Every top-level command is documented.
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut c).unwrap();
    let all: Value = redis::cmd("COMMAND").arg("DOCS").query(&mut c).unwrap();
    assert_eq!(items(&all).len() as i64, 2 * count);
}

#[test]
fn command_help() {
    let srv = Server::start();
    let mut r = srv.raw();
    let help = r.call(&["COMMAND", "HELP"]);
    assert!(help.starts_with(
        "*21\r\n+COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+(no subcommand)\r\n"
    ), "{help}");
    assert!(
        help.ends_with("+HELP\r\n+    Prints this help.\r\n"),
        "{help}"
    );
}

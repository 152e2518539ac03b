//! Placement of clients on event loops (`--placement`, ARCHITECTURE.md "Thread model"):
//! idle clients gather on the first loop, a busy loop sends new clients to the next,
//! and a client moved from one loop to another keeps its session and can still be
//! killed. What loop serves whom is read from `INFO threads`.

use std::time::Duration;

use crate::util::{Raw, Server, client_id, eventually};

/// `event_loop_<i>`'s client count and busy share (per cent) from `INFO threads`.
fn event_loop(r: &mut Raw, i: usize) -> (usize, f64) {
    let info = r.call(&["INFO", "threads"]);
    let line = info
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("event_loop_{i}:")))
        .unwrap_or_else(|| panic!("no event_loop_{i} in {info}"))
        .to_string();
    let mut clients = None;
    let mut busy = None;
    for kv in line.split(',') {
        match kv.split_once('=') {
            Some(("clients", v)) => clients = v.parse().ok(),
            Some(("busy", v)) => busy = v.trim_end_matches('%').parse().ok(),
            _ => {}
        }
    }
    (clients.unwrap(), busy.unwrap())
}

#[test]
fn idle_clients_gather_on_the_first_loop_or_are_dealt_in_turn() {
    let srv = Server::with_args(&["--threads", "2"]);
    let mut clients: Vec<Raw> = (0..6).map(|_| srv.raw()).collect();
    for c in &mut clients {
        assert_eq!(c.call(&["PING"]), "+PONG\r\n");
    }
    let mut r = srv.raw();
    let info = r.call(&["INFO", "threads"]);
    assert!(info.contains("event_loops:2\r\n"), "{info}");
    assert!(info.contains("placement:gather\r\n"), "{info}");
    assert_eq!(event_loop(&mut r, 0).0, 7, "{info}");
    assert_eq!(event_loop(&mut r, 1).0, 0, "{info}");

    let srv = Server::with_args(&["--threads", "2", "--placement", "round-robin"]);
    let mut clients: Vec<Raw> = (0..6).map(|_| srv.raw()).collect();
    for c in &mut clients {
        assert_eq!(c.call(&["PING"]), "+PONG\r\n");
    }
    let mut r = srv.raw();
    let (on_0, on_1) = (event_loop(&mut r, 0).0, event_loop(&mut r, 1).0);
    assert_eq!((on_0, on_1), (4, 3), "round-robin deals 7 clients 4 and 3");
}

#[test]
fn placement_must_be_known() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dse-server"))
        .args(["--port", "0", "--placement", "everywhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--placement must be gather or round-robin"),
        "{err}"
    );
}

/// The event loop serving the client named `name`, from CLIENT LIST's `io-thread`.
fn loop_of(r: &mut Raw, name: &str) -> usize {
    let list = r.call(&["CLIENT", "LIST"]);
    list.split('\n')
        .find(|l| l.contains(&format!(" name={name} ")))
        .and_then(|l| l.split(' ').find_map(|f| f.strip_prefix("io-thread=")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no io-thread for {name} in {list}"))
}

#[test]
fn a_client_moved_to_another_loop_keeps_its_session_and_can_be_killed() {
    let srv = Server::with_args(&["--threads", "2"]);
    let mut a = srv.raw();
    assert_eq!(a.call(&["CLIENT", "SETNAME", "sleeper"]), "+OK\r\n");
    // Keep loop 0 busy for whole measuring windows (half a second each): the next client
    // then goes to loop 1.
    assert_eq!(a.call(&["DEBUG", "SLEEP", "2"]), "+OK\r\n");
    assert!(
        eventually(Duration::from_secs(3), || event_loop(&mut a, 0).1 >= 80.0),
        "loop 0 never reported itself busy: {}",
        a.call(&["INFO", "threads"])
    );
    let mut b = srv.raw();
    assert_eq!(b.call(&["CLIENT", "SETNAME", "mover"]), "+OK\r\n");
    assert_eq!(
        loop_of(&mut a, "mover"),
        1,
        "a new client skips a busy loop"
    );
    let id = client_id(&mut b);
    // RESP3 is per-connection state a move must carry along.
    assert!(b.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(b.call(&["SET", "k", "before"]), "+OK\r\n");

    // Loop 0 is idle again: loop 1 hands its clients to it (and loop 0 may first have
    // handed the sleeper to loop 1, which was idle, and got it back the same way).
    assert!(
        eventually(Duration::from_secs(10), || event_loop(&mut a, 1).0 == 0),
        "loop 1 kept its clients: {}",
        a.call(&["INFO", "threads"])
    );
    assert_eq!(event_loop(&mut a, 0).0, 2);
    assert_eq!(loop_of(&mut a, "mover"), 0);
    assert_eq!(client_id(&mut b), id);
    assert_eq!(b.call(&["CLIENT", "GETNAME"]), "$5\r\nmover\r\n");
    assert_eq!(
        b.call(&["CONFIG", "GET", "maxclients"]),
        "%1\r\n$10\r\nmaxclients\r\n$5\r\n10000\r\n",
        "still RESP3"
    );
    assert_eq!(b.call(&["GET", "k"]), "$6\r\nbefore\r\n");
    assert_eq!(b.call(&["SET", "k", "after"]), "+OK\r\n");
    assert_eq!(a.call(&["GET", "k"]), "$5\r\nafter\r\n");

    assert_eq!(a.call(&["CLIENT", "KILL", "ID", &id.to_string()]), ":1\r\n");
    b.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(b.is_closed(), "a killed client that moved is closed");
    assert_eq!(a.call(&["PING"]), "+PONG\r\n");
}

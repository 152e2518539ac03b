use std::io::Write;

use crate::util::Server;

#[test]
fn inline_commands() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.send(b"PING\r\nSET \"a key\" 'v 1'\r\n\r\nGET \"a key\"\n");
    assert_eq!(r.read_reply(), b"+PONG\r\n");
    assert_eq!(r.read_reply(), b"+OK\r\n");
    assert_eq!(r.read_reply(), b"$3\r\nv 1\r\n");
}

#[test]
fn protocol_error_replies_then_closes() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.send(b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n");
    assert_eq!(
        r.read_reply(),
        b"-ERR Protocol error: expected '$', got 'f'\r\n"
    );
    assert!(r.is_closed());
    let mut r = srv.raw();
    r.send(b"*20000000\r\n");
    assert_eq!(
        r.read_reply(),
        b"-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert!(r.is_closed());
}

#[test]
fn pipelining_ten_thousand_commands() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut batch = Vec::new();
    for i in 0..10_000 {
        let k = format!("k{i}");
        let v = format!("v{i}");
        batch.extend(crate::util::encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
        batch.extend(crate::util::encode(&[b"GET", k.as_bytes()]));
    }
    r.s.write_all(&batch).unwrap();
    for i in 0..10_000 {
        assert_eq!(r.read_reply(), b"+OK\r\n");
        let v = format!("v{i}");
        assert_eq!(
            r.read_reply(),
            format!("${}\r\n{v}\r\n", v.len()).into_bytes()
        );
    }
}

#[test]
fn sigterm_finishes_replies_and_exits_zero() {
    let mut srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(srv.terminate(), Some(0));
    assert!(r.is_closed());
}

use redis::Commands;

use crate::util::Server;

#[test]
fn set_get_with_the_redis_crate() {
    let srv = Server::start();
    let mut c = srv.client();
    let _: () = c.set("k", "v").unwrap();
    let v: String = c.get("k").unwrap();
    assert_eq!(v, "v");
    let missing: Option<String> = c.get("nope").unwrap();
    assert_eq!(missing, None);
    let binary: Vec<u8> = (0..=255u8).collect();
    let _: () = c.set(b"bin\0key", &binary).unwrap();
    let back: Vec<u8> = c.get(b"bin\0key").unwrap();
    assert_eq!(back, binary);
}

#[test]
fn set_options() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "k", "1", "NX"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "k", "2", "NX"]), "$-1\r\n");
    assert_eq!(r.call(&["SET", "k", "3", "XX", "GET"]), "$1\r\n1\r\n");
    assert_eq!(
        r.call(&["SET", "k", "4", "NX", "XX"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        r.call(&["SET", "k", "4", "EX", "0"]),
        "-ERR invalid expire time in 'set' command\r\n"
    );
    assert_eq!(
        r.call(&["SET", "k", "4", "EX", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(r.call(&["SET", "k", "5", "PX", "100000"]), "+OK\r\n");
    assert_eq!(r.call(&["SET", "seed", "v", "100000"]), "+OK\r\n");
    assert_eq!(
        r.call(&["SET", "k", "6", "EX", "10", "KEEPTTL"]),
        "-ERR syntax error\r\n"
    );
}

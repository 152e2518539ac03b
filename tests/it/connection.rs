use crate::util::Server;

#[test]
fn ping_echo_and_unknown_command() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
    assert_eq!(r.call(&["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(r.call(&["ECHO", "a b"]), "$3\r\na b\r\n");
    assert_eq!(
        r.call(&["ECHO"]),
        "-ERR wrong number of arguments for 'echo' command\r\n"
    );
    assert_eq!(
        r.call(&["NOPE", "x", "y"]),
        "-ERR unknown command 'NOPE', with args beginning with: 'x' 'y' \r\n"
    );
}

#[test]
fn hello_switches_protocol() {
    let srv = Server::start();
    let mut r = srv.raw();
    let reply = r.call(&["HELLO", "3"]);
    assert!(reply.starts_with("%7\r\n"), "{reply}");
    assert!(reply.contains("$5\r\nproto\r\n:3\r\n"), "{reply}");
    assert_eq!(r.call(&["GET", "missing"]), "_\r\n");
    assert_eq!(
        r.call(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    r.call(&["HELLO", "2"]);
    assert_eq!(r.call(&["GET", "missing"]), "$-1\r\n");
}

#[test]
fn quit_closes_after_reply() {
    let srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["QUIT"]), "+OK\r\n");
    assert!(r.is_closed());
}

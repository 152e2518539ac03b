//! Listener kinds and outbound connections, over real loopback sockets.
//!
//! The handler is a line relay. On an accepted connection, a line `CONNECT <addr>
//! <payload>` makes the loop connect to `addr` and queue `<payload>\n` on the new
//! connection at once (before the connect can have completed); any other line is echoed
//! as `<listener kind>:<line>`. What an outbound connection receives, and what happens to
//! it (`CONNECTED`, `CONNECT-ERR <kind>`, `CLOSED`), is relayed to the connection that
//! asked for it. `data` reaches only its own connection, so both the connect and the
//! relaying go through the per-loop work list that `end_of_turn` carries out.
//!
//! Nothing here depends on how fast the machine is: every wait is for an outcome, with a
//! generous deadline, and the loops' tick is an hour so that nothing relies on it.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dse_net::{ConnInfo, ConnRef, Conns, Cx, Handler, Io, Listener, Net, NetConfig};

const CLIENT: u8 = 0;
const BUS: u8 = 1;
const DEADLINE: Duration = Duration::from_secs(30);
const MAXCLIENTS_REPLY: &[u8] = b"-ERR max number of clients reached\r\n";

#[derive(Clone, Debug, PartialEq)]
enum Ev {
    Opened {
        conn: ConnRef,
        kind: u8,
    },
    /// `Conns::connect` returned; the payload is queued.
    Connecting {
        conn: ConnRef,
    },
    Connected {
        conn: ConnRef,
        result: Result<(), io::ErrorKind>,
        queued_before: bool,
    },
    Closed {
        conn: ConnRef,
        outbound: bool,
    },
}

enum Role {
    Accepted { kind: u8 },
    Outbound { origin: ConnRef, queued: bool },
}

struct State {
    /// For an outbound connection, known once `connect` returned: before any callback.
    me: Option<ConnRef>,
    role: Role,
}

enum Work {
    Connect {
        origin: ConnRef,
        addr: SocketAddr,
        payload: Vec<u8>,
    },
    Send {
        to: ConnRef,
        bytes: Vec<u8>,
    },
}

struct Relay {
    /// Per loop: what `data` and `connected` leave for `end_of_turn`.
    turn: Vec<Mutex<Vec<Work>>>,
    events: Mutex<Vec<Ev>>,
    changed: Condvar,
}

impl Relay {
    fn new(threads: usize) -> Arc<Relay> {
        Arc::new(Relay {
            turn: (0..threads).map(|_| Mutex::new(Vec::new())).collect(),
            events: Mutex::new(Vec::new()),
            changed: Condvar::new(),
        })
    }

    fn record(&self, ev: Ev) {
        self.events.lock().unwrap().push(ev);
        self.changed.notify_all();
    }

    fn later(&self, cx: &Cx<'_, ()>, work: Work) {
        self.turn[cx.loop_index].lock().unwrap().push(work);
    }

    /// Waits until `found` picks something out of the events; panics with them all after
    /// the deadline.
    fn wait_for<T>(&self, what: &str, mut found: impl FnMut(&[Ev]) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        let mut evs = self.events.lock().unwrap();
        loop {
            if let Some(t) = found(&evs) {
                return t;
            }
            let now = Instant::now();
            assert!(now < deadline, "no {what} in {evs:#?}");
            evs = self.changed.wait_timeout(evs, deadline - now).unwrap().0;
        }
    }

    fn events(&self) -> Vec<Ev> {
        self.events.lock().unwrap().clone()
    }
}

impl Handler for Relay {
    type Conn = State;
    type Msg = ();

    fn open(&self, _cx: &mut Cx<'_, ()>, info: &ConnInfo) -> State {
        self.record(Ev::Opened {
            conn: info.conn,
            kind: info.kind,
        });
        State {
            me: Some(info.conn),
            role: Role::Accepted { kind: info.kind },
        }
    }

    fn data(&self, cx: &mut Cx<'_, ()>, conn: &mut State, io: &mut Io<'_>) {
        match conn.role {
            Role::Outbound { origin, .. } => {
                self.later(
                    cx,
                    Work::Send {
                        to: origin,
                        bytes: io.input.to_vec(),
                    },
                );
                io.consumed = io.input.len();
            }
            Role::Accepted { kind } => {
                let origin = conn.me.expect("accepted connections know their ref");
                let mut off = 0;
                while let Some(nl) = io.input[off..].iter().position(|&b| b == b'\n') {
                    let line = String::from_utf8_lossy(&io.input[off..off + nl]).into_owned();
                    off += nl + 1;
                    let words: Vec<&str> = line.split(' ').collect();
                    match words.as_slice() {
                        ["CONNECT", addr, payload] => self.later(
                            cx,
                            Work::Connect {
                                origin,
                                addr: addr.parse().expect("test sends a socket address"),
                                payload: format!("{payload}\n").into_bytes(),
                            },
                        ),
                        ["CONNECTBIG", addr, len] => self.later(
                            cx,
                            Work::Connect {
                                origin,
                                addr: addr.parse().expect("test sends a socket address"),
                                payload: pattern(len.parse().expect("test sends a length")),
                            },
                        ),
                        _ => io
                            .out
                            .extend_from_slice(format!("{kind}:{line}\n").as_bytes()),
                    }
                }
                io.consumed = off;
            }
        }
    }

    fn connected(&self, cx: &mut Cx<'_, ()>, conn: &mut State, result: io::Result<()>) {
        let Role::Outbound { origin, queued } = conn.role else {
            panic!("connected called for an accepted connection");
        };
        let reply = match &result {
            Ok(()) => "CONNECTED\n".to_string(),
            Err(e) => format!("CONNECT-ERR {:?}\n", e.kind()),
        };
        self.record(Ev::Connected {
            conn: conn.me.expect("connect returned before any callback"),
            result: result.map_err(|e| e.kind()),
            queued_before: queued,
        });
        self.later(
            cx,
            Work::Send {
                to: origin,
                bytes: reply.into_bytes(),
            },
        );
    }

    fn closed(&self, cx: &mut Cx<'_, ()>, conn: &mut State) {
        let me = conn.me.expect("set before any callback");
        match conn.role {
            Role::Accepted { .. } => self.record(Ev::Closed {
                conn: me,
                outbound: false,
            }),
            Role::Outbound { origin, .. } => {
                self.record(Ev::Closed {
                    conn: me,
                    outbound: true,
                });
                self.later(
                    cx,
                    Work::Send {
                        to: origin,
                        bytes: b"CLOSED\n".to_vec(),
                    },
                );
            }
        }
    }

    fn message(&self, _cx: &mut Cx<'_, ()>, _conns: &mut Conns<'_, State>, _msg: ()) {}

    fn end_of_turn(&self, cx: &mut Cx<'_, ()>, conns: &mut Conns<'_, State>) {
        let work = std::mem::take(&mut *self.turn[cx.loop_index].lock().unwrap());
        for w in work {
            match w {
                Work::Connect {
                    origin,
                    addr,
                    payload,
                } => {
                    let state = State {
                        me: None,
                        role: Role::Outbound {
                            origin,
                            queued: false,
                        },
                    };
                    match conns.connect(addr, state) {
                        Ok(r) => {
                            let c = conns.get(r).expect("a new connection is open");
                            c.state.me = Some(r);
                            // Queued before the loop can have seen the connect end.
                            c.out.extend_from_slice(&payload);
                            c.state.role = Role::Outbound {
                                origin,
                                queued: true,
                            };
                            self.record(Ev::Connecting { conn: r });
                        }
                        Err(e) => {
                            if let Some(c) = conns.get(origin) {
                                c.out.extend_from_slice(
                                    format!("CONNECT-FAILED {:?}\n", e.kind()).as_bytes(),
                                );
                            }
                        }
                    }
                }
                // The origin is another connection than the one `data` served.
                Work::Send { to, bytes } => {
                    if let Some(c) = conns.get(to) {
                        c.out.extend_from_slice(&bytes);
                    }
                }
            }
        }
    }

    fn tick(&self, _cx: &mut Cx<'_, ()>, _conns: &mut Conns<'_, State>) {}
}

/// `len` bytes that show any loss, duplication or reordering.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn listener(kind: u8, counts_as_client: bool) -> (Listener, SocketAddr) {
    let socket = dse_net::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (
        Listener {
            socket,
            kind,
            counts_as_client,
        },
        addr,
    )
}

fn start(relay: &Arc<Relay>, listeners: Vec<Listener>, maxclients: usize) -> Net<()> {
    let cfg = NetConfig {
        threads: relay.turn.len(),
        maxclients,
        max_pending_output: 1 << 20,
        max_query_buffer: 1 << 20,
        tick: Duration::from_secs(3600),
        maxclients_reply: MAXCLIENTS_REPLY,
        query_buffer_reply: b"-ERR query buffer\r\n",
        // Connections on different loops, as the tests expect.
        placement: dse_net::Placement::RoundRobin,
    };
    dse_net::start(cfg, relay.clone(), listeners).unwrap()
}

/// A client of the relay: sends and reads lines.
struct Client(BufReader<TcpStream>);

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        Client(BufReader::new(s))
    }

    fn send(&mut self, line: &str) {
        self.0
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).unwrap();
        assert!(l.ends_with('\n'), "connection ended after {l:?}");
        l.pop();
        l
    }

    fn call(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }

    /// Everything until the server closes.
    fn rest(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        self.0.read_to_end(&mut v).unwrap();
        v
    }
}

/// Waits for `cond` (counters move on other threads), failing after the deadline.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn accept_within(l: &TcpListener) -> TcpStream {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + DEADLINE;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(DEADLINE)).unwrap();
                return s;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < deadline, "nothing connected");
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn connected_events(evs: &[Ev]) -> Vec<Ev> {
    evs.iter()
        .filter(|e| matches!(e, Ev::Connected { .. }))
        .cloned()
        .collect()
}

#[test]
fn outbound_connection_to_a_listener_of_the_same_net() {
    let relay = Relay::new(2);
    let (clients, client_addr) = listener(CLIENT, true);
    let (bus, bus_addr) = listener(BUS, false);
    let net = start(&relay, vec![clients, bus], 100);

    let mut c = Client::connect(client_addr);
    assert_eq!(c.call("ping"), "0:ping");
    c.send(&format!("CONNECT {bus_addr} hello"));
    assert_eq!(c.line(), "CONNECTED");
    // Queued before the connect completed, echoed by the bus side, relayed back.
    assert_eq!(c.line(), "1:hello");

    let evs = relay.events();
    assert!(
        evs.iter()
            .any(|e| matches!(e, Ev::Opened { kind: BUS, .. }))
    );
    let [
        Ev::Connected {
            result,
            queued_before,
            ..
        },
    ] = connected_events(&evs)[..]
    else {
        panic!("one connect expected: {evs:#?}");
    };
    assert_eq!(result, Ok(()));
    assert!(queued_before);

    // One client; the bus side and the outbound side are not clients.
    wait_until("the counters", || {
        net.shared.connected.load(Ordering::Relaxed) == 1
            && net.shared.internal_connected.load(Ordering::Relaxed) == 1
            && net.shared.outbound_connected.load(Ordering::Relaxed) == 1
    });
    assert_eq!(net.shared.total_connections.load(Ordering::Relaxed), 1);
    net.shutdown(Duration::from_secs(5));
}

#[test]
fn outbound_connection_to_another_net() {
    let relay_a = Relay::new(2);
    let relay_b = Relay::new(2);
    let (a_clients, a_addr) = listener(CLIENT, true);
    let (b_clients, b_addr) = listener(CLIENT, true);
    let net_a = start(&relay_a, vec![a_clients], 100);
    let net_b = start(&relay_b, vec![b_clients], 100);

    let mut c = Client::connect(a_addr);
    c.send(&format!("CONNECT {b_addr} hi"));
    assert_eq!(c.line(), "CONNECTED");
    assert_eq!(c.line(), "0:hi");
    // A second outbound connection from the same loop.
    c.send(&format!("CONNECT {b_addr} again"));
    assert_eq!(c.line(), "CONNECTED");
    assert_eq!(c.line(), "0:again");

    relay_b.wait_for("two clients on b", |evs| {
        (evs.iter()
            .filter(|e| matches!(e, Ev::Opened { kind: CLIENT, .. }))
            .count()
            == 2)
            .then_some(())
    });
    assert_eq!(net_a.shared.outbound_connected.load(Ordering::Relaxed), 2);
    assert_eq!(net_a.shared.connected.load(Ordering::Relaxed), 1);
    assert_eq!(net_b.shared.connected.load(Ordering::Relaxed), 2);

    // b going away closes a's outbound connections.
    net_b.shutdown(Duration::from_secs(5));
    assert_eq!(c.line(), "CLOSED");
    assert_eq!(c.line(), "CLOSED");
    wait_until("no outbound connection left", || {
        net_a.shared.outbound_connected.load(Ordering::Relaxed) == 0
    });
    assert_eq!(c.call("still"), "0:still");
    net_a.shutdown(Duration::from_secs(5));
}

#[test]
fn bytes_queued_while_connecting_are_sent_once_connected() {
    let relay = Relay::new(1);
    let (clients, client_addr) = listener(CLIENT, true);
    let net = start(&relay, vec![clients], 100);

    // A listener whose accept queue is full drops SYNs: the connect stays in progress
    // (the client retransmits) until the queue has room again.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    let peer: TcpListener = socket.into();
    let peer_addr = peer.local_addr().unwrap();
    let _filler = TcpStream::connect(peer_addr).unwrap();

    let mut c = Client::connect(client_addr);
    c.send(&format!("CONNECT {peer_addr} early"));
    let conn = relay.wait_for("the connect", |evs| {
        evs.iter().find_map(|e| match e {
            Ev::Connecting { conn } => Some(*conn),
            _ => None,
        })
    });
    // Not a timing assertion: whatever the delay, the connect cannot end meanwhile.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(connected_events(&relay.events()), []);

    let (_filler_accepted, _) = peer.accept().unwrap();
    let mut s = accept_within(&peer);
    let mut got = [0u8; 6];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"early\n");
    assert_eq!(c.line(), "CONNECTED");
    let evs = relay.events();
    assert_eq!(
        connected_events(&evs),
        [Ev::Connected {
            conn,
            result: Ok(()),
            queued_before: true
        }]
    );
    // From now on the connection is an ordinary one.
    s.write_all(b"reply\n").unwrap();
    assert_eq!(c.line(), "reply");
    net.shutdown(Duration::from_secs(5));
}

#[test]
fn connect_to_a_closed_port_reports_the_error_then_closes() {
    let relay = Relay::new(2);
    let (clients, client_addr) = listener(CLIENT, true);
    let net = start(&relay, vec![clients], 100);
    let closed_addr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };

    let mut c = Client::connect(client_addr);
    c.send(&format!("CONNECT {closed_addr} lost"));
    assert_eq!(c.line(), "CONNECT-ERR ConnectionRefused");
    assert_eq!(c.line(), "CLOSED");

    let evs = relay.events();
    let conn = match connected_events(&evs)[..] {
        [
            Ev::Connected {
                conn,
                result: Err(io::ErrorKind::ConnectionRefused),
                ..
            },
        ] => conn,
        _ => panic!("one refused connect expected: {evs:#?}"),
    };
    let connected_at = evs
        .iter()
        .position(|e| matches!(e, Ev::Connected { .. }))
        .unwrap();
    let closed_at = evs
        .iter()
        .position(|e| {
            *e == Ev::Closed {
                conn,
                outbound: true,
            }
        })
        .expect("closed after the failed connect");
    assert!(connected_at < closed_at, "{evs:#?}");
    wait_until("the outbound count back to zero", || {
        net.shared.outbound_connected.load(Ordering::Relaxed) == 0
    });
    // The loop and the client are unaffected.
    assert_eq!(c.call("after"), "0:after");
    net.shutdown(Duration::from_secs(5));
}

#[test]
fn listener_kinds_reach_the_handler() {
    let relay = Relay::new(2);
    let (a, a_addr) = listener(0, true);
    let (b, b_addr) = listener(5, false);
    let (c, c_addr) = listener(9, true);
    let net = start(&relay, vec![a, b, c], 100);

    for (addr, kind) in [(a_addr, 0), (b_addr, 5), (c_addr, 9), (b_addr, 5)] {
        let mut client = Client::connect(addr);
        assert_eq!(client.call("x"), format!("{kind}:x"));
    }
    let mut kinds: Vec<u8> = relay
        .events()
        .iter()
        .filter_map(|e| match e {
            Ev::Opened { kind, .. } => Some(*kind),
            _ => None,
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, [0, 5, 5, 9]);
    assert_eq!(net.shared.total_connections.load(Ordering::Relaxed), 2);
    net.shutdown(Duration::from_secs(5));
}

#[test]
fn maxclients_counts_only_client_connections() {
    let relay = Relay::new(2);
    let (clients, client_addr) = listener(CLIENT, true);
    let (bus, bus_addr) = listener(BUS, false);
    let net = start(&relay, vec![clients, bus], 2);
    let refused = || {
        let mut c = Client::connect(client_addr);
        assert_eq!(c.rest(), MAXCLIENTS_REPLY);
    };

    let mut c1 = Client::connect(client_addr);
    let mut c2 = Client::connect(client_addr);
    assert_eq!(c1.call("one"), "0:one");
    assert_eq!(c2.call("two"), "0:two");
    refused();

    // Internal connections, accepted and outbound, are never refused and leave room for
    // no more clients.
    let mut internal: Vec<Client> = (0..3).map(|_| Client::connect(bus_addr)).collect();
    for (i, b) in internal.iter_mut().enumerate() {
        assert_eq!(b.call(&format!("bus{i}")), format!("1:bus{i}"));
    }
    for i in 0..2 {
        c1.send(&format!("CONNECT {bus_addr} out{i}"));
        assert_eq!(c1.line(), "CONNECTED");
        assert_eq!(c1.line(), format!("1:out{i}"));
    }
    wait_until("the counters", || {
        net.shared.connected.load(Ordering::Relaxed) == 2
            && net.shared.internal_connected.load(Ordering::Relaxed) == 5
            && net.shared.outbound_connected.load(Ordering::Relaxed) == 2
    });
    refused();
    assert_eq!(net.shared.rejected_connections.load(Ordering::Relaxed), 2);
    assert_eq!(net.shared.total_connections.load(Ordering::Relaxed), 2);

    // A client leaving makes room for one; internal ones leaving make none.
    drop(internal.pop());
    wait_until("an internal connection gone", || {
        net.shared.internal_connected.load(Ordering::Relaxed) == 4
    });
    refused();
    drop(c2);
    wait_until("a client gone", || {
        net.shared.connected.load(Ordering::Relaxed) == 1
    });
    let mut c3 = Client::connect(client_addr);
    assert_eq!(c3.call("three"), "0:three");
    refused();
    net.shutdown(Duration::from_secs(5));
}

#[test]
fn outbound_connection_closed_by_its_peer_is_closed() {
    let relay = Relay::new(2);
    let (clients, client_addr) = listener(CLIENT, true);
    let net = start(&relay, vec![clients], 100);
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let mut c = Client::connect(client_addr);
    c.send(&format!("CONNECT {peer_addr} hello"));
    let mut s = accept_within(&peer);
    let mut got = [0u8; 6];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello\n");
    assert_eq!(c.line(), "CONNECTED");
    s.write_all(b"bye\n").unwrap();
    drop(s);
    assert_eq!(c.line(), "bye");
    assert_eq!(c.line(), "CLOSED");
    relay.wait_for("the outbound close", |evs| {
        evs.iter()
            .any(|e| matches!(e, Ev::Closed { outbound: true, .. }))
            .then_some(())
    });
    wait_until("the outbound count back to zero", || {
        net.shared.outbound_connected.load(Ordering::Relaxed) == 0
    });
    net.shutdown(Duration::from_secs(5));
}

#[test]
fn outbound_output_larger_than_the_socket_takes_arrives_whole() {
    const LEN: usize = 16 << 20;
    let relay = Relay::new(2);
    let (clients, client_addr) = listener(CLIENT, true);
    let net = start(&relay, vec![clients], 100);
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let mut c = Client::connect(client_addr);
    c.send(&format!("CONNECTBIG {peer_addr} {LEN}"));
    let mut s = accept_within(&peer);
    assert_eq!(c.line(), "CONNECTED");
    // Reading only after the connect was reported: the loop holds most of it as backlog
    // and sends it as the socket drains.
    let mut got = vec![0u8; LEN];
    s.read_exact(&mut got).unwrap();
    assert!(
        got == pattern(LEN),
        "the bytes arrived damaged or out of order"
    );
    s.write_all(b"done\n").unwrap();
    assert_eq!(c.line(), "done");
    net.shutdown(Duration::from_secs(5));
}

//! The network layer against a real server: framing in odd pieces, large values, many
//! connections, limits, back-pressure, clients that vanish, shutdown.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use redis::Commands;

use crate::util::{Raw, Server, encode, eventually};

const MIB: usize = 1024 * 1024;

/// The server's resident memory (VmRSS), in bytes.
fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS in /proc/<pid>/status");
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// A value whose bytes differ from position to position (a shifted or truncated copy
/// would not compare equal).
fn patterned(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add((i >> 8) as u8) ^ salt)
        .collect()
}

fn bulk_reply(value: &[u8]) -> Vec<u8> {
    let mut r = format!("${}\r\n", value.len()).into_bytes();
    r.extend_from_slice(value);
    r.extend_from_slice(b"\r\n");
    r
}

/// True once the server closed the connection: end of file, or a reset (a server that
/// closes with unread input in its socket sends a reset after its last reply).
fn closed(r: &mut Raw) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match r.s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// Time for one PING round trip on a fresh connection.
fn ping_time(srv: &Server) -> Duration {
    let start = Instant::now();
    let mut r = srv.raw();
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
    start.elapsed()
}

#[test]
fn inline_commands() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.send(b"PING\r\nSET \"a key\" 'v 1'\r\n\r\nGET \"a key\"\n");
    assert_eq!(r.read_reply(), b"+PONG\r\n");
    assert_eq!(r.read_reply(), b"+OK\r\n");
    assert_eq!(r.read_reply(), b"$3\r\nv 1\r\n");
    // Vertical tab and form feed do not end an unquoted word (Redis's sdssplitargs).
    r.send(b"ECHO a\x0bb\r\nECHO \"\\x41\\x00\"\r\n");
    assert_eq!(r.read_reply(), b"$3\r\na\x0bb\r\n");
    assert_eq!(r.read_reply(), b"$2\r\nA\x00\r\n");
}

#[test]
fn protocol_error_replies_then_closes() {
    let srv = Server::start();
    let cases: [(&[u8], &[u8]); 6] = [
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
            b"-ERR Protocol error: expected '$', got 'f'\r\n",
        ),
        // The unexpected byte goes back raw, as Redis's %c writes it.
        (
            b"*1\r\n\xff4\r\nPING\r\n",
            b"-ERR Protocol error: expected '$', got '\xff'\r\n",
        ),
        // Redis 7 accepts up to INT_MAX arguments.
        (
            b"*2147483648\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*-0\r\n",
            b"-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$-0\r\n\r\n",
            b"-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"SET \"a\"b c\r\n",
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
    ];
    for (request, reply) in cases {
        let mut r = srv.raw();
        r.send(request);
        assert_eq!(r.read_reply(), reply);
        assert!(r.is_closed());
    }
    // A count Redis accepts waits for its arguments; nothing is answered yet.
    let mut r = srv.raw();
    r.send(b"*2147483647\r\n");
    r.s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 64];
    assert!(
        r.s.read(&mut b).is_err(),
        "no reply to an incomplete request"
    );
}

#[test]
fn pipelining_ten_thousand_commands() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut batch = Vec::new();
    for i in 0..10_000 {
        let k = format!("k{i}");
        let v = format!("v{i}");
        batch.extend(encode(&[b"SET", k.as_bytes(), v.as_bytes()]));
        batch.extend(encode(&[b"GET", k.as_bytes()]));
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
fn hundred_mib_value_with_the_redis_crate() {
    let srv = Server::start();
    let mut c = srv.client();
    let value = patterned(100 * MIB, 0x5a);
    let _: () = c.set("big", &value).unwrap();
    let back: Vec<u8> = c.get("big").unwrap();
    assert!(back == value, "100 MiB value came back different");
    let len: Vec<u8> = c.get("big").unwrap();
    assert_eq!(len.len(), value.len());
}

#[test]
fn hundred_mib_value_in_small_random_chunks() {
    let srv = Server::start();
    let mut r = srv.raw();
    let value = patterned(100 * MIB, 0xa5);
    let request = encode(&[b"SET", b"big", &value]);
    let mut rng = rng(7);
    let mut at = 0;
    while at < request.len() {
        // Mostly a few KiB, sometimes a handful of bytes (headers cut anywhere).
        let n = if rng.random_bool(0.1) {
            rng.random_range(1..16)
        } else {
            rng.random_range(1..16 * 1024)
        };
        let end = (at + n).min(request.len());
        r.s.write_all(&request[at..end]).unwrap();
        at = end;
    }
    assert_eq!(r.read_reply(), b"+OK\r\n");

    let get = encode(&[b"GET", b"big"]);
    for b in &get {
        r.s.write_all(std::slice::from_ref(b)).unwrap();
    }
    // Read the reply in small random pieces too.
    let expected = bulk_reply(&value);
    let mut got = Vec::with_capacity(expected.len());
    let mut buf = vec![0u8; 64 * 1024];
    while got.len() < expected.len() {
        let n = rng.random_range(1..buf.len());
        let n = r.s.read(&mut buf[..n]).unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got == expected, "GET reply differs from the value SET");
    assert_eq!(r.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn requests_one_byte_at_a_time() {
    let srv = Server::start();
    let mut r = srv.raw();
    let mut rng = rng(11);
    let mut values = std::collections::HashMap::new();
    for i in 0..300 {
        let key = format!("key:{i}");
        let value: Vec<u8> = (0..rng.random_range(0..40)).map(|_| rng.random()).collect();
        let (request, reply) = match i % 4 {
            0 => {
                values.insert(key.clone(), value.clone());
                (
                    encode(&[b"SET", key.as_bytes(), &value]),
                    b"+OK\r\n".to_vec(),
                )
            }
            1 => (encode(&[b"ECHO", &value]), bulk_reply(&value)),
            2 => (
                format!("PING {key}\r\n").into_bytes(),
                bulk_reply(key.as_bytes()),
            ),
            _ => {
                let earlier = format!("key:{}", i - 3);
                (
                    encode(&[b"GET", earlier.as_bytes()]),
                    bulk_reply(&values[&earlier]),
                )
            }
        };
        for b in &request {
            r.s.write_all(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(r.read_reply(), reply, "request {i}");
    }
    // And a pipeline of them, byte by byte, answered in order.
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend(encode(&[
            b"SET",
            format!("p{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
        batch.extend(encode(&[b"GET", format!("p{i}").as_bytes()]));
    }
    for b in &batch {
        r.s.write_all(std::slice::from_ref(b)).unwrap();
    }
    for i in 0..200 {
        assert_eq!(r.read_reply(), b"+OK\r\n");
        assert_eq!(r.read_reply(), bulk_reply(format!("{i}").as_bytes()));
    }
}

#[test]
fn thousand_concurrent_clients() {
    let srv = Server::start();
    let clients = 1000;
    let barrier = Arc::new(Barrier::new(clients));
    let url = srv.url();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let barrier = barrier.clone();
            let url = url.clone();
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let mut c = redis::Client::open(url)
                        .unwrap()
                        .get_connection()
                        .expect("connect");
                    // Everyone connected before anyone starts.
                    barrier.wait();
                    let key = format!("client:{i}");
                    for round in 0..20 {
                        let value = format!("{i}:{round}:{}", "x".repeat(i % 50));
                        let _: () = c.set(&key, &value).unwrap();
                        let back: String = c.get(&key).unwrap();
                        assert_eq!(back, value);
                    }
                })
                .unwrap()
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let mut c = srv.client();
    for i in [0, 499, 999] {
        let v: String = c.get(format!("client:{i}")).unwrap();
        assert!(v.starts_with(&format!("{i}:19:")), "{v}");
    }
}

/// Raises this process's open-files limit to at least `wanted`; the limit in force.
fn raise_nofile(wanted: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur >= wanted {
        return lim.rlim_cur;
    }
    let new = libc::rlimit {
        rlim_cur: wanted.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return lim.rlim_cur;
    }
    new.rlim_cur
}

#[test]
fn ten_thousand_idle_connections() {
    const IDLE: usize = 10_000;
    // Room for the idle connections plus the other tests of this binary running alongside.
    let limit = raise_nofile(16_000);
    if limit < 12_000 {
        println!("skipped: open-files limit is {limit} and cannot be raised to 12000");
        return;
    }
    let srv = Server::with_args(&["--maxclients", "10100"]);
    let pid = srv.pid();
    let mut probe = srv.raw();
    let value = patterned(4096, 1);
    probe.cmd(&[b"SET", b"v", &value]);
    assert_eq!(probe.read_reply(), b"+OK\r\n");
    // Worst GET round trip on the probe connection.
    let mut probe_worst = || {
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let start = Instant::now();
            probe.cmd(&[b"GET", b"v"]);
            assert_eq!(probe.read_reply(), bulk_reply(&value));
            worst = worst.max(start.elapsed());
        }
        worst
    };
    probe_worst();
    std::thread::sleep(Duration::from_millis(200));
    let before = rss(pid);

    let open = Instant::now();
    let mut conns = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let s = TcpStream::connect(srv.addr()).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        conns.push(s);
    }
    let opened_in = open.elapsed();
    // Each is left in the middle of a request (a slow client), then completes it, reads
    // a 4 KiB reply, and falls idle.
    let request = encode(&[b"GET", b"v"]);
    let (first, rest) = request.split_at(request.len() - 1);
    for s in conns.iter_mut() {
        s.write_all(first).unwrap();
    }
    let worst_mid = probe_worst();
    std::thread::sleep(Duration::from_millis(300));
    let mid = rss(pid);
    let reply = bulk_reply(&value);
    for s in conns.iter_mut() {
        s.write_all(rest).unwrap();
    }
    let mut got = vec![0u8; reply.len()];
    for s in conns.iter_mut() {
        s.read_exact(&mut got).unwrap();
        assert!(got == reply);
    }
    let worst_idle = probe_worst();
    std::thread::sleep(Duration::from_millis(300));
    let after = rss(pid);
    let per_partial = mid.saturating_sub(before) / IDLE;
    let per_idle = after.saturating_sub(before) / IDLE;
    println!(
        "{IDLE} connections opened in {opened_in:?}. Server RSS: {} KiB before; {} KiB with \
         each mid-request ({per_partial} bytes per connection); {} KiB once each had a 4 KiB \
         reply and fell idle ({per_idle} bytes per idle connection). Worst GET meanwhile: \
         {worst_mid:?} / {worst_idle:?}",
        before / 1024,
        mid / 1024,
        after / 1024
    );
    for worst in [worst_mid, worst_idle] {
        assert!(
            worst < Duration::from_millis(500),
            "GET took {worst:?} with {IDLE} other connections open"
        );
    }
    // The kernel holds the socket buffers; the server itself keeps next to nothing per
    // connection: no read buffer for a partial request beyond its bytes, no reply buffer
    // once the reply is sent.
    assert!(
        per_partial < 4096 && per_idle < 4096,
        "server memory per connection: {per_partial} bytes mid-request, {per_idle} idle"
    );
    drop(conns);
}

#[test]
fn maxclients_refuses_the_extra_client_until_one_leaves() {
    let srv = Server::with_args(&["--maxclients", "5"]);
    let mut clients: Vec<Raw> = (0..5).map(|_| srv.raw()).collect();
    for c in clients.iter_mut() {
        assert_eq!(c.call(&["PING"]), "+PONG\r\n");
    }
    let mut extra = srv.raw();
    assert_eq!(
        extra.read_reply(),
        b"-ERR max number of clients reached\r\n"
    );
    assert!(extra.is_closed());
    // Those already in are unaffected.
    assert_eq!(clients[4].call(&["PING"]), "+PONG\r\n");

    drop(clients.pop());
    // The server notices the departure asynchronously; soon a newcomer gets in. The
    // newcomer stays connected, so the server is full again afterwards.
    let mut newcomer = None;
    let admitted = eventually(Duration::from_secs(5), || {
        let mut r = srv.raw();
        r.send(b"*1\r\n$4\r\nPING\r\n");
        let ok = r.read_reply() == b"+PONG\r\n";
        if ok {
            newcomer = Some(r);
        }
        ok
    });
    assert!(admitted, "no client admitted after one left");
    let mut sixth = srv.raw();
    assert_eq!(
        sixth.read_reply(),
        b"-ERR max number of clients reached\r\n"
    );
    drop(newcomer);
}

#[test]
fn output_back_pressure_bounds_memory_and_keeps_order() {
    const VALUE: usize = 256 * 1024;
    const GETS: usize = 2000; // 500 MiB of replies
    let srv = Server::with_args(&["--client-output-buffer-limit", "1mb"]);
    let pid = srv.pid();
    let mut setup = srv.raw();
    let values: Vec<Vec<u8>> = (0..4u8).map(|k| patterned(VALUE, k)).collect();
    for (k, v) in values.iter().enumerate() {
        setup.cmd(&[b"SET", format!("v{k}").as_bytes(), v]);
        assert_eq!(setup.read_reply(), b"+OK\r\n");
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss(pid);

    let mut greedy = srv.raw();
    let mut writer = greedy.s.try_clone().unwrap();
    let filler = patterned(32 * MIB, 0xf0);
    let sender = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for i in 0..GETS {
            batch.extend(encode(&[b"GET", format!("v{}", i % 4).as_bytes()]));
        }
        // The GETs fit in the socket buffers; a request larger than those cannot be
        // sent while the server is not reading.
        batch.extend(encode(&[b"SET", b"filler", &filler]));
        writer.write_all(&batch).unwrap();
        // No more requests: the server must still answer all of them, then close.
        writer.shutdown(Shutdown::Write).unwrap();
    });

    // While the greedy client reads nothing, the server stays small and answers others.
    let mut peak = 0;
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(50));
        peak = peak.max(rss(pid));
        worst = worst.max(ping_time(&srv));
    }
    println!(
        "back-pressure: server RSS {} KiB before, peak {} KiB while a client had {} MiB of \
         replies unread; worst PING meanwhile {worst:?}",
        before / 1024,
        peak / 1024,
        GETS * VALUE / MIB
    );
    assert!(
        peak < before + 64 * MIB,
        "server RSS grew by {} KiB",
        (peak - before) / 1024
    );
    assert!(worst < Duration::from_millis(500), "PING took {worst:?}");
    assert!(
        !sender.is_finished(),
        "the server should have stopped reading"
    );

    // Now read: every reply, in order, then the close (the client half-closed).
    for i in 0..GETS {
        let reply = greedy.read_reply();
        assert!(
            reply == bulk_reply(&values[i % 4]),
            "reply {i} is not v{}",
            i % 4
        );
    }
    assert_eq!(greedy.read_reply(), b"+OK\r\n");
    sender.join().unwrap();
    assert!(greedy.is_closed());
}

#[test]
fn query_buffer_limit_closes_the_client() {
    let srv = Server::with_args(&["--client-query-buffer-limit", "1mb"]);
    let mut bystander = srv.raw();
    assert_eq!(bystander.call(&["SET", "k", "v"]), "+OK\r\n");
    let expected = b"-ERR Protocol error: client query buffer limit exceeded\r\n";

    // A multibulk count that keeps the request open while its arguments pile up.
    let mut r = srv.raw();
    let mut request = b"*1000000\r\n".to_vec();
    for _ in 0..200_000 {
        request.extend_from_slice(b"$1\r\na\r\n");
    }
    let mut w = r.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // The server closes while this may still be writing.
        let _ = w.write_all(&request);
    });
    assert_eq!(r.read_reply(), expected);
    assert!(closed(&mut r));
    sender.join().unwrap();

    // One bulk argument larger than the limit (proto-max-bulk-len allows it).
    let mut r = srv.raw();
    let mut w = r.s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = w.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n");
        let _ = w.write_all(&vec![b'a'; 1_500_000]);
    });
    assert_eq!(r.read_reply(), expected);
    assert!(closed(&mut r));
    sender.join().unwrap();

    // An unterminated inline line hits the 64 KiB inline limit first, as in Redis.
    let mut r = srv.raw();
    r.send(&vec![b'a'; 70 * 1024]);
    assert_eq!(
        r.read_reply(),
        b"-ERR Protocol error: too big inline request\r\n"
    );
    assert!(closed(&mut r));

    assert_eq!(bystander.call(&["GET", "k"]), "$1\r\nv\r\n");
}

#[test]
fn clients_vanishing_mid_request_or_mid_reply_disturb_no_one() {
    let srv = Server::start();
    let pid = srv.pid();
    let mut steady = srv.client();
    let big = patterned(20 * MIB, 3);
    let _: () = steady.set("big", &big).unwrap();
    let rounds = |c: &mut redis::Connection, tag: &str| {
        for i in 0..50 {
            let v = format!("{tag}{i}");
            let _: () = c.set("steady", &v).unwrap();
            let back: String = c.get("steady").unwrap();
            assert_eq!(back, v);
        }
    };
    rounds(&mut steady, "a");

    // Half a large SET, then gone.
    {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$10000000\r\n")
            .unwrap();
        s.write_all(&vec![b'h'; 5_000_000]).unwrap();
    }
    // Half a header, then gone.
    {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.write_all(b"*2\r\n$3\r\nGE").unwrap();
    }
    rounds(&mut steady, "b");
    // Asks for 20 MiB, reads a little, then gone; once with a FIN, once with a reset.
    for reset in [false, true] {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        for _ in 0..5 {
            s.write_all(&encode(&[b"GET", b"big"])).unwrap();
        }
        let mut b = [0u8; 4096];
        s.read_exact(&mut b).unwrap();
        if reset {
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt on a socket we own, reading a struct we pass.
            unsafe {
                use std::os::fd::AsRawFd;
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    &linger as *const libc::linger as *const libc::c_void,
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        drop(s);
        rounds(&mut steady, "c");
    }
    let half: Option<Vec<u8>> = steady.get("half").unwrap();
    assert_eq!(half, None, "a request cut short must not run");
    let back: Vec<u8> = steady.get("big").unwrap();
    assert!(back == big);
    // The abandoned replies are not kept: memory falls back once they are dropped.
    let settled = eventually(Duration::from_secs(5), || rss(pid) < 200 * MIB);
    assert!(settled, "server RSS stayed at {} KiB", rss(pid) / 1024);
}

#[test]
fn half_closed_client_gets_its_replies() {
    let srv = Server::start();
    let mut r = srv.raw();
    r.send(b"SET k v\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*1\r\n$4\r\nPI");
    r.s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(r.read_reply(), b"+OK\r\n");
    assert_eq!(r.read_reply(), b"$1\r\nv\r\n");
    assert_eq!(r.read_reply(), b"+PONG\r\n");
    // The request cut off by the half-close is dropped, and the connection closed.
    assert!(r.is_closed());
}

#[test]
fn sigterm_finishes_replies_and_exits_zero() {
    let mut srv = Server::start();
    let mut r = srv.raw();
    assert_eq!(r.call(&["SET", "k", "v"]), "+OK\r\n");
    let value = patterned(32 * MIB, 9);
    r.cmd(&[b"SET", b"big", &value]);
    assert_eq!(r.read_reply(), b"+OK\r\n");
    // A client idle at the time of the signal is closed too.
    let mut idle = srv.raw();
    assert_eq!(idle.call(&["PING"]), "+PONG\r\n");

    // A 32 MiB reply is in flight (its first bytes arrived, most of it is still in the
    // server) when SIGTERM comes; the client reads it all afterwards.
    r.cmd(&[b"GET", b"big"]);
    let mut head = [0u8; 16];
    r.s.read_exact(&mut head).unwrap();
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        r.s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        r.s.read_to_end(&mut rest).unwrap();
        rest
    });
    assert_eq!(srv.terminate(), Some(0));
    let rest = reader.join().unwrap();
    let mut got = head.to_vec();
    got.extend_from_slice(&rest);
    assert!(
        got == bulk_reply(&value),
        "got {} bytes of a {} byte reply",
        got.len(),
        value.len() + 12
    );
    assert!(idle.is_closed());
}

//! bench-clients: N concurrent connections, every one of them used.
//!
//! Per round and server: open N connections (timed), PING on every one and check each
//! answers +PONG (which also covers the server accepting and registering it), let them sit
//! idle and read the server's resident memory, then have every connection run a few
//! requests (SET its own key, GET it back and compare, and DEL it at the end) with all N
//! in flight at once, check every reply, and read the memory again with the connections
//! idle after that traffic. Then close them.
//!
//! Latency is per request (from its write to its reply), over every request of the
//! traffic phase, in an HDR histogram. Memory per connection is the growth of the
//! server's RSS over its RSS before the first round, divided by N: an allocator keeps
//! what an earlier round's connections freed, so a round's own starting point would hide
//! what the connections cost. Errors (a failed connect, a missing or wrong reply) must be
//! 0; the tool exits with 1 otherwise.
//!
//! Connections are closed with a reset (SO_LINGER 0), so that rounds of 10,000 leave no
//! TIME_WAIT sockets to exhaust the local ports of the next ones.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use dse_bench::{
    Report, Target, encode_request, fmt_ratio, latency_histogram, median, ms, parse_target, ratio,
    rss_bytes, us,
};
use dse_proto::ReplyParser;
use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

#[derive(Parser, Debug)]
#[command(
    name = "bench-clients",
    about = "Opens N concurrent connections to each server, has every one send requests and \
             checks every reply; reports connect time, request latency (p50/p99/max), \
             errors and (with --pid) the server's memory per connection, idle and after \
             the traffic. Medians over rounds."
)]
struct Opts {
    /// Connections open at once
    #[arg(default_value_t = 10_000)]
    connections: usize,

    /// Server, as NAME=HOST:PORT or HOST:PORT; repeat to compare (the ratio is
    /// first/second)
    #[arg(short = 's', long = "server", required = true)]
    servers: Vec<String>,

    /// PID of a server, for its resident memory; the i-th --pid is the i-th --server's
    #[arg(long)]
    pid: Vec<u32>,

    /// Rounds per server; medians are reported
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// SET/GET pairs each connection runs in the traffic phase (then one DEL)
    #[arg(long, default_value_t = 2)]
    pairs: usize,

    /// Seconds the connections sit idle before the memory is read
    #[arg(long, default_value_t = 1.0)]
    hold: f64,

    /// Seconds to wait after closing, so the server has released the connections before
    /// the next round
    #[arg(long, default_value_t = 0.5)]
    settle: f64,

    /// Seconds a phase may take before the connections that did not answer count as
    /// errors
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,

    /// Print every round, not only the medians
    #[arg(long, short)]
    verbose: bool,

    /// Append summary rows (first server against second) to this file, for
    /// scripts/benchmark.sh
    #[arg(long)]
    report: Option<PathBuf>,
}

/// One connection and where it is in its script of requests.
struct Conn {
    sock: mio::net::TcpStream,
    /// The requests of the current phase, in order, and the reply each expects.
    script: Vec<(Vec<u8>, Vec<u8>)>,
    /// Index in `script` of the request in flight; `script.len()` when done.
    step: usize,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    sent_at: Instant,
    failed: bool,
}

impl Conn {
    fn done(&self) -> bool {
        self.failed || self.step == self.script.len()
    }

    /// Queues the request at `step` and writes what the socket takes.
    fn send_next(&mut self) -> io::Result<()> {
        self.out.clear();
        self.out.extend_from_slice(&self.script[self.step].0);
        self.written = 0;
        self.sent_at = Instant::now();
        self.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        while self.written < self.out.len() {
            match self.sock.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what arrived; for each complete reply, checks it, records its latency and
    /// sends the next request. A reply that is not the expected one is an error.
    fn on_readable(&mut self, latency: &mut Histogram<u64>) -> Result<(), String> {
        let mut buf = [0u8; 4096];
        loop {
            match self.sock.read(&mut buf) {
                Ok(0) => return Err("the server closed the connection".into()),
                Ok(n) => self.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        while let Some(len) = ReplyParser::frame_len(&self.input).map_err(|e| e.to_string())? {
            if self.done() {
                return Err("a reply to no request".into());
            }
            let expected = &self.script[self.step].1;
            if &self.input[..len] != expected.as_slice() {
                return Err(format!(
                    "expected {:?}, got {:?}",
                    String::from_utf8_lossy(expected),
                    String::from_utf8_lossy(&self.input[..len])
                ));
            }
            latency.saturating_record(self.sent_at.elapsed().as_nanos() as u64);
            self.input.drain(..len);
            self.step += 1;
            if !self.done() {
                self.send_next().map_err(|e| format!("write: {e}"))?;
            }
        }
        Ok(())
    }
}

struct RoundResult {
    connect_ms: f64,
    /// The first PING on every connection, all in flight at once.
    ping_ms: f64,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
    requests: u64,
    rss_idle: Option<f64>,
    rss_after: Option<f64>,
    errors: usize,
    first_error: Option<String>,
}

/// Runs one phase: every connection goes through its script, all at once, until all are
/// done or `timeout` passes. Returns how long it took; errors are counted in the
/// connections (`failed`) and in `first_error`.
fn phase(
    poll: &mut Poll,
    conns: &mut [Conn],
    latency: &mut Histogram<u64>,
    timeout: Duration,
    first_error: &mut Option<String>,
) -> Duration {
    let started = Instant::now();
    for c in conns.iter_mut() {
        c.step = 0;
        c.input.clear();
        if !c.failed
            && let Err(e) = c.send_next()
        {
            c.failed = true;
            first_error.get_or_insert(format!("write: {e}"));
        }
    }
    let mut left = conns.iter().filter(|c| !c.done()).count();
    let mut events = Events::with_capacity(1024);
    while left > 0 {
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            for c in conns.iter_mut().filter(|c| !c.done()) {
                c.failed = true;
                first_error
                    .get_or_insert(format!("no reply within {:.0} s", timeout.as_secs_f64()));
            }
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(remaining))
            && e.kind() != io::ErrorKind::Interrupted
        {
            first_error.get_or_insert(format!("poll: {e}"));
            break;
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.done() {
                continue;
            }
            let mut result = Ok(());
            if ev.is_writable() {
                result = c.flush().map_err(|e| format!("write: {e}"));
            }
            if result.is_ok() && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                result = c.on_readable(latency);
            }
            if let Err(e) = result {
                c.failed = true;
                first_error.get_or_insert(e);
            }
            if c.done() {
                left -= 1;
            }
        }
    }
    started.elapsed()
}

fn bulk(value: &[u8]) -> Vec<u8> {
    let mut r = format!("${}\r\n", value.len()).into_bytes();
    r.extend_from_slice(value);
    r.extend_from_slice(b"\r\n");
    r
}

fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_request(&mut out, args);
    out
}

/// `rss_base` is the server's RSS before the first round, when its PID is known.
fn round(
    target: &Target,
    pid: Option<u32>,
    rss_base: Option<u64>,
    round_no: usize,
    opts: &Opts,
) -> Result<RoundResult, String> {
    let timeout = Duration::from_secs_f64(opts.timeout);
    let mut errors = 0;
    let mut first_error = None;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut conns = Vec::with_capacity(opts.connections);

    let started = Instant::now();
    for _ in 0..opts.connections {
        match TcpStream::connect_timeout(&target.addr, Duration::from_secs(10)) {
            Ok(s) => conns.push(s),
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("connect: {e}"));
            }
        }
    }
    let connect = started.elapsed();
    let mut conns: Vec<Conn> = conns
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            let mut sock = mio::net::TcpStream::from_std(s);
            poll.registry().register(
                &mut sock,
                Token(i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            Ok(Conn {
                sock,
                script: vec![(request(&[b"PING"]), b"+PONG\r\n".to_vec())],
                step: 0,
                out: Vec::new(),
                written: 0,
                input: Vec::new(),
                sent_at: Instant::now(),
                failed: false,
            })
        })
        .collect::<io::Result<_>>()
        .map_err(|e| e.to_string())?;

    let mut pings = latency_histogram();
    let ping = phase(&mut poll, &mut conns, &mut pings, timeout, &mut first_error);
    std::thread::sleep(Duration::from_secs_f64(opts.hold));
    let rss_idle = pid.map(rss_bytes).transpose()?;

    for (i, c) in conns.iter_mut().enumerate() {
        let key = format!("bench-clients:{i}").into_bytes();
        c.script.clear();
        for p in 0..opts.pairs {
            let value = format!("value-{round_no}-{i}-{p}").into_bytes();
            c.script
                .push((request(&[b"SET", &key, &value]), b"+OK\r\n".to_vec()));
            c.script.push((request(&[b"GET", &key]), bulk(&value)));
        }
        c.script
            .push((request(&[b"DEL", &key]), b":1\r\n".to_vec()));
        if opts.pairs == 0 {
            c.script.pop();
            c.script.push((request(&[b"PING"]), b"+PONG\r\n".to_vec()));
        }
    }
    let mut latency = latency_histogram();
    phase(
        &mut poll,
        &mut conns,
        &mut latency,
        timeout,
        &mut first_error,
    );
    std::thread::sleep(Duration::from_secs_f64(opts.hold));
    let rss_after = pid.map(rss_bytes).transpose()?;

    errors += conns.iter().filter(|c| c.failed).count();
    let open = conns.len();
    for c in conns {
        // A reset instead of a FIN: no TIME_WAIT on our side. Failing to set it only
        // leaves a TIME_WAIT behind.
        let _ = socket2::SockRef::from(&c.sock).set_linger(Some(Duration::ZERO));
    }
    std::thread::sleep(Duration::from_secs_f64(opts.settle));
    let per_conn = |rss: Option<u64>| match (rss_base, rss) {
        (Some(b), Some(a)) if open > 0 => Some(a.saturating_sub(b) as f64 / open as f64),
        _ => None,
    };
    Ok(RoundResult {
        connect_ms: ms(connect),
        ping_ms: ms(ping),
        p50_us: us(latency.value_at_quantile(0.5)),
        p99_us: us(latency.value_at_quantile(0.99)),
        max_us: us(latency.max()),
        requests: latency.len(),
        rss_idle: per_conn(rss_idle),
        rss_after: per_conn(rss_after),
        errors,
        first_error,
    })
}

fn main() {
    let opts = Opts::parse();
    match bench(&opts) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("bench-clients: {e}");
            std::process::exit(2);
        }
    }
}

/// Returns false when some request or connection failed.
fn bench(opts: &Opts) -> Result<bool, String> {
    let targets = opts
        .servers
        .iter()
        .map(|s| parse_target(s))
        .collect::<Result<Vec<_>, _>>()?;
    if !opts.pid.is_empty() && opts.pid.len() != targets.len() {
        return Err(format!(
            "{} --pid for {} --server: give one per server, in the same order",
            opts.pid.len(),
            targets.len()
        ));
    }
    if opts.connections == 0 || opts.rounds == 0 {
        return Err("connections and --rounds must be at least 1".into());
    }
    // Our sockets, the poll instance, stdio, the report file and some slack.
    let wanted = opts.connections as u64 + 64;
    let got = dse_net::raise_open_files_limit(wanted);
    if got < wanted {
        return Err(format!(
            "the open-files limit is {got} and cannot be raised to {wanted}; \
             use fewer connections or raise the hard limit (ulimit -Hn)"
        ));
    }

    println!(
        "bench-clients: {} connections per server, {} SET/GET pairs and a DEL each; \
         median of {} rounds ({:.1} s idle before each memory reading)",
        opts.connections, opts.pairs, opts.rounds, opts.hold
    );
    let pids: Vec<Option<u32>> = (0..targets.len())
        .map(|i| opts.pid.get(i).copied())
        .collect();
    let rss_bases = pids
        .iter()
        .map(|p| p.map(rss_bytes).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let mut results: Vec<Vec<RoundResult>> = targets.iter().map(|_| Vec::new()).collect();
    for r in 0..opts.rounds {
        for (i, t) in targets.iter().enumerate() {
            let res = round(t, pids[i], rss_bases[i], r, opts)?;
            if opts.verbose {
                println!(
                    "  {}: connect {:.1} ms, PING all {:.1} ms, {} requests p50 {:.0} us \
                     p99 {:.0} us max {:.0} us, RSS/conn idle {} after {}, errors {}",
                    t.name,
                    res.connect_ms,
                    res.ping_ms,
                    res.requests,
                    res.p50_us,
                    res.p99_us,
                    res.max_us,
                    res.rss_idle.map_or("-".into(), |b| format!("{b:.0} B")),
                    res.rss_after.map_or("-".into(), |b| format!("{b:.0} B")),
                    res.errors
                );
            }
            results[i].push(res);
        }
    }

    struct Summary {
        connect: f64,
        ping: f64,
        p50: f64,
        p99: f64,
        max: f64,
        rss_idle: Option<f64>,
        rss_after: Option<f64>,
    }
    let summaries: Vec<Summary> = results
        .iter()
        .map(|rs| {
            let pick = |f: fn(&RoundResult) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
            let pick_opt = |f: fn(&RoundResult) -> Option<f64>| {
                let v: Vec<f64> = rs.iter().filter_map(f).collect();
                (!v.is_empty()).then(|| median(&v))
            };
            Summary {
                connect: pick(|r| r.connect_ms),
                ping: pick(|r| r.ping_ms),
                p50: pick(|r| r.p50_us),
                p99: pick(|r| r.p99_us),
                max: pick(|r| r.max_us),
                rss_idle: pick_opt(|r| r.rss_idle),
                rss_after: pick_opt(|r| r.rss_after),
            }
        })
        .collect();

    println!(
        "{:<8} {:>11} {:>12} {:>8} {:>8} {:>9} {:>14} {:>15} {:>7}",
        "server",
        "connect ms",
        "PING all ms",
        "p50 us",
        "p99 us",
        "max us",
        "RSS/conn idle",
        "RSS/conn after",
        "errors"
    );
    let mut all_ok = true;
    let bytes = |b: Option<f64>| b.map_or("-".to_string(), |b| format!("{b:.0}"));
    for ((t, s), rs) in targets.iter().zip(&summaries).zip(&results) {
        let errors: usize = rs.iter().map(|r| r.errors).sum();
        all_ok &= errors == 0;
        println!(
            "{:<8} {:>11.1} {:>12.1} {:>8.0} {:>8.0} {:>9.0} {:>14} {:>15} {:>7}",
            t.name,
            s.connect,
            s.ping,
            s.p50,
            s.p99,
            s.max,
            bytes(s.rss_idle),
            bytes(s.rss_after),
            errors
        );
        if let Some(why) = rs.iter().find_map(|r| r.first_error.as_ref()) {
            println!("  {}: {errors} errors, the first: {why}", t.name);
        }
    }
    if let [a, b, ..] = summaries.as_slice() {
        let opt_ratio = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => fmt_ratio(ratio(x, y)),
            _ => "n/a".into(),
        };
        println!(
            "ratio {}/{} (below 1 is better): connect {}, p50 {}, p99 {}, max {}, \
             RSS/conn idle {}, after traffic {}",
            targets[0].name,
            targets[1].name,
            fmt_ratio(ratio(a.connect, b.connect)),
            fmt_ratio(ratio(a.p50, b.p50)),
            fmt_ratio(ratio(a.p99, b.p99)),
            fmt_ratio(ratio(a.max, b.max)),
            opt_ratio(a.rss_idle, b.rss_idle),
            opt_ratio(a.rss_after, b.rss_after),
        );
        let mut report = Report::open(opts.report.as_deref())?;
        let n = opts.connections;
        let section = "clients";
        report.row(
            section,
            &format!("connect {n} clients"),
            "ms",
            a.connect,
            b.connect,
        );
        for (name, x, y) in [
            ("p50", a.p50, b.p50),
            ("p99", a.p99, b.p99),
            ("max", a.max, b.max),
        ] {
            report.row(
                section,
                &format!("request latency {name}, {n} clients at once"),
                "ms",
                x / 1000.0,
                y / 1000.0,
            );
        }
        if let (Some(x), Some(y)) = (a.rss_idle, b.rss_idle) {
            report.row(
                section,
                &format!("RSS per idle connection ({n} clients)"),
                "B/conn",
                x,
                y,
            );
        }
        if let (Some(x), Some(y)) = (a.rss_after, b.rss_after) {
            report.row(
                section,
                &format!("RSS per connection after traffic ({n} clients)"),
                "B/conn",
                x,
                y,
            );
        }
    }
    Ok(all_ok)
}

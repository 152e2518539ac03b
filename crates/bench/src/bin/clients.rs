//! bench-clients: many idle connections at once.
//!
//! Per round and server: open N connections one after the other, send PING on all and
//! check every one answers +PONG (the first PING also covers the server accepting and
//! registering the connection), hold them for a while, PING all again, then close them.
//! With the server's PID, the growth of its resident set while the connections are open,
//! divided by N, is the memory a connection costs. The growth is taken from the RSS before
//! the first round: an allocator keeps what the previous round's connections freed, so a
//! later round's own starting point would hide what the connections cost.
//!
//! Connections are closed with a reset (SO_LINGER 0), so that rounds of 10,000 leave no
//! TIME_WAIT sockets to exhaust the local ports of the next ones.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use dse_bench::{Report, Target, fmt_ratio, median, ms, parse_target, ratio, rss_bytes};
use dse_proto::ReplyParser;

#[derive(Parser, Debug)]
#[command(
    name = "bench-clients",
    about = "Opens N concurrent connections to each server, checks every one answers PING, \
             holds them, and reports connect time, PING round trip over all of them and \
             (with --pid) the server's memory per connection. Medians over rounds."
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

    /// Seconds to hold the connections open before the second PING
    #[arg(long, default_value_t = 1.0)]
    hold: f64,

    /// Seconds to wait after closing, so the server has released the connections before
    /// the next round measures its memory
    #[arg(long, default_value_t = 0.5)]
    settle: f64,

    /// Print every round, not only the medians
    #[arg(long, short)]
    verbose: bool,

    /// Append summary rows (first server against second) to this file, for
    /// scripts/benchmark.sh
    #[arg(long)]
    report: Option<PathBuf>,
}

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

struct RoundResult {
    connect_ms: f64,
    first_ping_ms: f64,
    ping_ms: f64,
    rss_per_conn: Option<f64>,
    /// Connections that failed to connect or did not answer +PONG (both PINGs).
    failed: usize,
    first_failure: Option<String>,
}

/// Reads one reply from a blocking socket.
fn read_reply(sock: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    buf.clear();
    let mut chunk = [0u8; 256];
    loop {
        if let Some(len) =
            ReplyParser::frame_len(buf).map_err(|e| io::Error::other(e.to_string()))?
        {
            return Ok(buf[..len].to_vec());
        }
        let n = sock.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other("connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// PINGs every connection (all requests first, then all replies) and returns the time it
/// took. Connections that fail are closed and removed; the count of failures and the first
/// reason are added to `failed`.
fn ping_all(
    conns: &mut Vec<TcpStream>,
    failed: &mut usize,
    first_failure: &mut Option<String>,
) -> Duration {
    let started = Instant::now();
    let mut ok = vec![true; conns.len()];
    let mut note = |i: usize, why: String, ok: &mut Vec<bool>| {
        ok[i] = false;
        *failed += 1;
        first_failure.get_or_insert(why);
    };
    for (i, c) in conns.iter_mut().enumerate() {
        if let Err(e) = c.write_all(PING) {
            note(i, format!("PING write: {e}"), &mut ok);
        }
    }
    let mut buf = Vec::with_capacity(256);
    for (i, c) in conns.iter_mut().enumerate() {
        if !ok[i] {
            continue;
        }
        match read_reply(c, &mut buf) {
            Ok(r) if r == b"+PONG\r\n" => {}
            Ok(r) => note(
                i,
                format!("answered {}", String::from_utf8_lossy(&r).trim()),
                &mut ok,
            ),
            Err(e) => note(i, format!("PING read: {e}"), &mut ok),
        }
    }
    let took = started.elapsed();
    let mut i = 0;
    conns.retain(|_| {
        i += 1;
        ok[i - 1]
    });
    took
}

fn close_all(conns: Vec<TcpStream>) {
    for c in conns {
        // A reset instead of a FIN: no TIME_WAIT on our side. Failing to set it only
        // leaves a TIME_WAIT behind.
        let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
    }
}

/// `rss_base` is the server's RSS before the first round, when its PID is known.
fn round(
    target: &Target,
    pid: Option<u32>,
    rss_base: Option<u64>,
    opts: &Opts,
) -> Result<RoundResult, String> {
    let mut failed = 0;
    let mut first_failure = None;
    let mut conns = Vec::with_capacity(opts.connections);

    let started = Instant::now();
    for _ in 0..opts.connections {
        match TcpStream::connect_timeout(&target.addr, Duration::from_secs(10)) {
            Ok(c) => conns.push(c),
            Err(e) => {
                failed += 1;
                first_failure.get_or_insert(format!("connect: {e}"));
            }
        }
    }
    let connect = started.elapsed();
    for c in &conns {
        c.set_nodelay(true).map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
    }

    let first_ping = ping_all(&mut conns, &mut failed, &mut first_failure);
    let rss_after = pid.map(rss_bytes).transpose()?;
    std::thread::sleep(Duration::from_secs_f64(opts.hold));
    let ping = ping_all(&mut conns, &mut failed, &mut first_failure);

    let open = conns.len();
    close_all(conns);
    std::thread::sleep(Duration::from_secs_f64(opts.settle));
    let rss_per_conn = match (rss_base, rss_after) {
        (Some(b), Some(a)) if open > 0 => Some(a.saturating_sub(b) as f64 / open as f64),
        _ => None,
    };
    Ok(RoundResult {
        connect_ms: ms(connect),
        first_ping_ms: ms(first_ping),
        ping_ms: ms(ping),
        rss_per_conn,
        failed,
        first_failure,
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

/// Returns false when some connection failed.
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
    // Our sockets plus stdio, the report file and some slack.
    let wanted = opts.connections as u64 + 64;
    let got = dse_net::raise_open_files_limit(wanted);
    if got < wanted {
        return Err(format!(
            "the open-files limit is {got} and cannot be raised to {wanted}; \
             use fewer connections or raise the hard limit (ulimit -Hn)"
        ));
    }

    println!(
        "bench-clients: {} connections per server; median of {} rounds ({:.1} s hold)",
        opts.connections, opts.rounds, opts.hold
    );
    let pids: Vec<Option<u32>> = (0..targets.len())
        .map(|i| opts.pid.get(i).copied())
        .collect();
    let rss_bases = pids
        .iter()
        .map(|p| p.map(rss_bytes).transpose())
        .collect::<Result<Vec<_>, _>>()?;
    let mut results: Vec<Vec<RoundResult>> = targets.iter().map(|_| Vec::new()).collect();
    for _ in 0..opts.rounds {
        for (i, t) in targets.iter().enumerate() {
            let r = round(t, pids[i], rss_bases[i], opts)?;
            if opts.verbose {
                println!(
                    "  {}: connect {:.1} ms, first PING {:.1} ms, held PING {:.1} ms, \
                     RSS/conn {}, failed {}",
                    t.name,
                    r.connect_ms,
                    r.first_ping_ms,
                    r.ping_ms,
                    r.rss_per_conn.map_or("-".into(), |b| format!("{b:.0} B")),
                    r.failed
                );
            }
            results[i].push(r);
        }
    }

    struct Summary {
        connect: f64,
        first_ping: f64,
        ping: f64,
        rss: Option<f64>,
    }
    let summaries: Vec<Summary> = results
        .iter()
        .map(|rs| {
            let pick = |f: fn(&RoundResult) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
            let rss: Vec<f64> = rs.iter().filter_map(|r| r.rss_per_conn).collect();
            Summary {
                connect: pick(|r| r.connect_ms),
                first_ping: pick(|r| r.first_ping_ms),
                ping: pick(|r| r.ping_ms),
                rss: (!rss.is_empty()).then(|| median(&rss)),
            }
        })
        .collect();

    println!(
        "{:<10} {:>12} {:>15} {:>15} {:>13} {:>8}",
        "server", "connect ms", "first PING ms", "held PING ms", "RSS/conn B", "failed"
    );
    let mut all_ok = true;
    for ((t, s), rs) in targets.iter().zip(&summaries).zip(&results) {
        let failed: usize = rs.iter().map(|r| r.failed).sum();
        all_ok &= failed == 0;
        println!(
            "{:<10} {:>12.1} {:>15.1} {:>15.1} {:>13} {:>8}",
            t.name,
            s.connect,
            s.first_ping,
            s.ping,
            s.rss.map_or("-".to_string(), |b| format!("{b:.0}")),
            failed
        );
        if let Some(why) = rs.iter().find_map(|r| r.first_failure.as_ref()) {
            println!("  {}: {failed} failures, the first: {why}", t.name);
        }
    }
    if let [a, b, ..] = summaries.as_slice() {
        let rss_ratio = match (a.rss, b.rss) {
            (Some(x), Some(y)) => fmt_ratio(ratio(x, y)),
            _ => "n/a".into(),
        };
        println!(
            "ratio {}/{} (below 1 is better): connect {}, first PING {}, held PING {}, \
             RSS/conn {}",
            targets[0].name,
            targets[1].name,
            fmt_ratio(ratio(a.connect, b.connect)),
            fmt_ratio(ratio(a.first_ping, b.first_ping)),
            fmt_ratio(ratio(a.ping, b.ping)),
            rss_ratio
        );
        let mut report = Report::open(opts.report.as_deref())?;
        let n = opts.connections;
        report.row(
            "clients",
            &format!("connect {n} clients"),
            "ms",
            a.connect,
            b.connect,
        );
        report.row(
            "clients",
            &format!("first PING on {n} clients"),
            "ms",
            a.first_ping,
            b.first_ping,
        );
        report.row(
            "clients",
            &format!("PING on {n} held clients"),
            "ms",
            a.ping,
            b.ping,
        );
        if let (Some(x), Some(y)) = (a.rss, b.rss) {
            report.row("clients", "server RSS per connection", "B/conn", x, y);
        }
    }
    Ok(all_ok)
}

//! dse-bench: a RESP load generator with its own client (the load tool; bench-throughput
//! measures the engine in process).
//!
//! C connections, spread over a few client threads, each running a mio event loop. Every
//! connection sends a batch of P requests (GET or SET on random keys, in the given
//! proportion), waits for all P replies, and sends the next batch, as redis-benchmark
//! does with `-P`. A request's latency is the time from the write of its batch to the
//! read that completed its reply. Replies are framed with `ReplyParser::frame_len`.
//!
//! Given several servers (`-s dse=127.0.0.1:7106 -s redis=127.0.0.1:7206`), the rounds
//! alternate between them and the ratio first/second is printed. Latencies go into an
//! HDR histogram; runs longer than a few seconds show a progress bar on a terminal.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use dse_bench::{
    Report, Rng, Target, encode_request, fmt_rate, fmt_ratio, latency_histogram, median,
    parse_target, process_cpu_time, ratio, us, write_key,
};
use dse_proto::ReplyParser;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use mio::{Events, Interest, Poll, Token};

#[derive(Parser, Debug)]
#[command(
    name = "dse-bench",
    about = "RESP load generator: C connections, pipeline depth P, a GET/SET mix over a key \
             space. Prints ops/s and latency percentiles (medians over rounds) per server, \
             and the ratio first/second when given two servers."
)]
struct Opts {
    /// Server to load, as NAME=HOST:PORT or HOST:PORT; repeat to compare (the ratio is
    /// first/second)
    #[arg(short = 's', long = "server", required = true)]
    servers: Vec<String>,

    /// PID of a server, to report the CPU it used and ops per CPU-second (a measure that
    /// holds up better than ops/s on a busy machine); the i-th --pid is the i-th --server's
    #[arg(long)]
    pid: Vec<u32>,

    /// Connections
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,

    /// Requests in flight per connection (pipeline depth)
    #[arg(short = 'P', long, default_value_t = 1)]
    pipeline: usize,

    /// Percentage of GETs; the rest are SETs
    #[arg(long, default_value_t = 90)]
    reads: u32,

    /// Keys to choose from, uniformly
    #[arg(short = 'r', long, default_value_t = 100_000)]
    keyspace: u64,

    /// Value size in bytes for SET and the preload
    #[arg(short = 'd', long, default_value_t = 32)]
    value_size: usize,

    /// Client threads, each an event loop over its share of the connections
    #[arg(long, default_value_t = 1)]
    threads: usize,

    /// Timed rounds per server; medians are reported
    #[arg(long, default_value_t = 3)]
    rounds: usize,

    /// Seconds per timed round
    #[arg(long, default_value_t = 2.0)]
    duration: f64,

    /// Seconds of untimed load before each timed round
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,

    /// Do not SET every key before measuring (GETs then mostly miss)
    #[arg(long)]
    no_preload: bool,

    /// SET every key of the key space (keys `key:000000000000` on, 16 bytes) and stop
    /// without measuring: fills a server for a memory measurement
    #[arg(long, conflicts_with = "no_preload")]
    preload_only: bool,

    /// Name of this configuration in the report rows
    #[arg(long)]
    label: Option<String>,

    /// Print every round, not only the medians
    #[arg(long, short)]
    verbose: bool,

    /// Append summary rows (first server against second) to this file, for
    /// scripts/benchmark.sh
    #[arg(long)]
    report: Option<PathBuf>,
}

/// The request mix, shared by every connection.
struct Load {
    pipeline: usize,
    reads: u32,
    keyspace: u64,
    value: Vec<u8>,
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

struct Conn {
    sock: mio::net::TcpStream,
    out: Vec<u8>,
    written: usize,
    input: Vec<u8>,
    filled: usize,
    awaiting: usize,
    sent_at: Instant,
}

/// What one client thread counted while the phase was MEASURE.
struct Tally {
    replies: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            replies: 0,
            errors: 0,
            first_error: None,
            latency: latency_histogram(),
        }
    }
}

impl Conn {
    fn new(stream: TcpStream) -> io::Result<Conn> {
        stream.set_nodelay(true)?;
        stream.set_nonblocking(true)?;
        Ok(Conn {
            sock: mio::net::TcpStream::from_std(stream),
            out: Vec::with_capacity(4096),
            written: 0,
            input: vec![0; 16 * 1024],
            filled: 0,
            awaiting: 0,
            sent_at: Instant::now(),
        })
    }

    fn queue_batch(&mut self, load: &Load, rng: &mut Rng, key: &mut Vec<u8>) {
        self.out.clear();
        self.written = 0;
        for _ in 0..load.pipeline {
            write_key(key, rng.below(load.keyspace));
            if rng.percent(load.reads) {
                encode_request(&mut self.out, &[b"GET", key]);
            } else {
                encode_request(&mut self.out, &[b"SET", key, &load.value]);
            }
        }
        self.awaiting = load.pipeline;
        self.sent_at = Instant::now();
    }

    /// Writes what is left of the batch; stops at WouldBlock (a writable event follows).
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

    /// Reads until WouldBlock (the sockets are edge-triggered), counting replies and
    /// sending the next batch as soon as the current one is answered.
    fn on_readable(
        &mut self,
        load: &Load,
        rng: &mut Rng,
        key: &mut Vec<u8>,
        tally: Option<&mut Tally>,
    ) -> io::Result<()> {
        let mut tally = tally;
        loop {
            if self.filled == self.input.len() {
                let len = self.input.len();
                self.input.resize(len * 2, 0);
            }
            let n = match self.sock.read(&mut self.input[self.filled..]) {
                Ok(0) => return Err(io::Error::other("server closed the connection")),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.filled += n;
            let mut pos = 0;
            let mut done = 0u64;
            while let Some(len) = ReplyParser::frame_len(&self.input[pos..self.filled])
                .map_err(|e| io::Error::other(format!("unreadable reply: {e}")))?
            {
                if self.awaiting == 0 {
                    return Err(io::Error::other("a reply to no request"));
                }
                if self.input[pos] == b'-'
                    && let Some(t) = tally.as_deref_mut()
                {
                    t.errors += 1;
                    if t.first_error.is_none() {
                        let text = &self.input[pos..pos + len];
                        t.first_error = Some(String::from_utf8_lossy(text).trim().to_string());
                    }
                }
                pos += len;
                done += 1;
                self.awaiting -= 1;
            }
            self.input.copy_within(pos..self.filled, 0);
            self.filled -= pos;
            if done > 0
                && let Some(t) = tally.as_deref_mut()
            {
                let nanos = self.sent_at.elapsed().as_nanos() as u64;
                t.latency.saturating_record_n(nanos, done);
                t.replies += done;
            }
            if self.awaiting == 0 {
                self.queue_batch(load, rng, key);
                self.flush()?;
            }
        }
    }
}

/// One client thread: drives `streams` until the phase is STOP.
fn client_thread(
    streams: Vec<TcpStream>,
    load: &Load,
    phase: &AtomicU8,
    seed: u64,
) -> io::Result<Tally> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(streams.len());
    let mut rng = Rng::new(seed);
    let mut key = Vec::with_capacity(32);
    for (i, s) in streams.into_iter().enumerate() {
        let mut c = Conn::new(s)?;
        poll.registry().register(
            &mut c.sock,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        c.queue_batch(load, &mut rng, &mut key);
        c.flush()?;
        conns.push(c);
    }
    let mut events = Events::with_capacity(1024);
    let mut tally = Tally::default();
    let mut measuring = false;
    loop {
        match phase.load(Ordering::Relaxed) {
            STOP => return Ok(tally),
            MEASURE if !measuring => {
                measuring = true;
                tally = Tally::default();
            }
            _ => {}
        }
        match poll.poll(&mut events, Some(Duration::from_millis(10))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if ev.is_writable() {
                c.flush()?;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                let t = measuring.then_some(&mut tally);
                c.on_readable(load, &mut rng, &mut key, t)?;
            }
        }
    }
}

/// What one timed round measured against one server.
struct RoundResult {
    ops_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    errors: u64,
    first_error: Option<String>,
    /// Cores the server used during the timed part, when its PID is known.
    server_cores: Option<f64>,
}

fn connect(target: &Target) -> io::Result<TcpStream> {
    TcpStream::connect_timeout(&target.addr, Duration::from_secs(5)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot connect to {} ({}): {e}", target.name, target.addr),
        )
    })
}

fn round(
    target: &Target,
    pid: Option<u32>,
    opts: &Opts,
    load: &Load,
    seed: u64,
    progress: &ProgressBar,
) -> io::Result<RoundResult> {
    let cpu = |pid: u32| process_cpu_time(pid).map_err(io::Error::other);
    let threads = opts.threads.clamp(1, opts.connections);
    let mut shares: Vec<Vec<TcpStream>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..opts.connections {
        shares[i % threads].push(connect(target)?);
    }
    let phase = AtomicU8::new(WARMUP);
    let (tallies, elapsed, server_cpu) = std::thread::scope(|s| {
        let workers: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(t, streams)| {
                let phase = &phase;
                s.spawn(move || client_thread(streams, load, phase, seed + t as u64))
            })
            .collect();
        sleep_with_progress(Duration::from_secs_f64(opts.warmup), progress);
        phase.store(MEASURE, Ordering::Relaxed);
        let started = Instant::now();
        let cpu_start = pid.map(cpu).transpose();
        sleep_with_progress(Duration::from_secs_f64(opts.duration), progress);
        let cpu_end = pid.map(cpu).transpose();
        phase.store(STOP, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let server_cpu = match (cpu_start, cpu_end) {
            (Ok(Some(a)), Ok(Some(b))) => Ok(Some(b.saturating_sub(a))),
            (Err(e), _) | (_, Err(e)) => Err(e),
            _ => Ok(None),
        };
        let tallies: Vec<io::Result<Tally>> = workers
            .into_iter()
            .map(|w| w.join().expect("client thread panicked"))
            .collect();
        (tallies, elapsed, server_cpu)
    });
    let server_cpu = server_cpu?;
    let mut all = Tally::default();
    for t in tallies {
        let t = t.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", target.name)))?;
        all.replies += t.replies;
        all.errors += t.errors;
        all.first_error = all.first_error.or(t.first_error);
        all.latency
            .add(&t.latency)
            .map_err(|e| io::Error::other(format!("merging histograms: {e}")))?;
    }
    Ok(RoundResult {
        ops_per_sec: all.replies as f64 / elapsed.as_secs_f64(),
        p50_us: us(all.latency.value_at_quantile(0.5)),
        p99_us: us(all.latency.value_at_quantile(0.99)),
        p999_us: us(all.latency.value_at_quantile(0.999)),
        errors: all.errors,
        first_error: all.first_error,
        server_cores: server_cpu.map(|c| c.as_secs_f64() / elapsed.as_secs_f64()),
    })
}

/// Sleeps for `d`, moving the progress bar (counted in milliseconds) as time passes.
fn sleep_with_progress(d: Duration, progress: &ProgressBar) {
    let end = Instant::now() + d;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let step = left.min(Duration::from_millis(100));
        std::thread::sleep(step);
        progress.inc(step.as_millis() as u64);
    }
}

/// SETs every key of the key space, pipelined, so that GETs hit.
fn preload(target: &Target, load: &Load) -> io::Result<()> {
    const CHUNK: u64 = 1000;
    let mut sock = connect(target)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = Vec::new();
    let mut key = Vec::new();
    let mut input = vec![0u8; 64 * 1024];
    let mut start = 0;
    while start < load.keyspace {
        let end = (start + CHUNK).min(load.keyspace);
        out.clear();
        for i in start..end {
            write_key(&mut key, i);
            encode_request(&mut out, &[b"SET", &key, &load.value]);
        }
        sock.write_all(&out)?;
        let mut awaiting = end - start;
        let mut filled = 0;
        while awaiting > 0 {
            let n = sock.read(&mut input[filled..])?;
            if n == 0 {
                return Err(io::Error::other("server closed the connection"));
            }
            filled += n;
            let mut pos = 0;
            while let Some(len) = ReplyParser::frame_len(&input[pos..filled])
                .map_err(|e| io::Error::other(format!("unreadable reply: {e}")))?
            {
                if input[pos] == b'-' {
                    return Err(io::Error::other(format!(
                        "{} refused SET: {}",
                        target.name,
                        String::from_utf8_lossy(&input[pos..pos + len]).trim()
                    )));
                }
                pos += len;
                awaiting -= 1;
            }
            input.copy_within(pos..filled, 0);
            filled -= pos;
        }
        start = end;
    }
    Ok(())
}

fn main() {
    let opts = Opts::parse();
    if let Err(e) = bench(&opts) {
        eprintln!("dse-bench: {e}");
        std::process::exit(2);
    }
}

fn bench(opts: &Opts) -> Result<(), String> {
    let targets = opts
        .servers
        .iter()
        .map(|s| parse_target(s))
        .collect::<Result<Vec<_>, _>>()?;
    if opts.connections == 0 || opts.pipeline == 0 || opts.rounds == 0 || opts.keyspace == 0 {
        return Err("--connections, --pipeline, --rounds and --keyspace must be at least 1".into());
    }
    if !opts.pid.is_empty() && opts.pid.len() != targets.len() {
        return Err(format!(
            "{} --pid for {} --server: give one per server, in the same order",
            opts.pid.len(),
            targets.len()
        ));
    }
    let load = Load {
        pipeline: opts.pipeline,
        reads: opts.reads.min(100),
        keyspace: opts.keyspace,
        value: dse_bench::make_value(opts.value_size),
    };
    if opts.preload_only {
        for t in &targets {
            let started = Instant::now();
            preload(t, &load).map_err(|e| format!("preloading {}: {e}", t.name))?;
            println!(
                "dse-bench: {} keys with {}-byte values SET on {} in {:.1} s",
                opts.keyspace,
                opts.value_size,
                t.name,
                started.elapsed().as_secs_f64()
            );
        }
        return Ok(());
    }
    let label = opts.label.clone().unwrap_or_else(|| {
        format!(
            "c{} P{} {}% GET",
            opts.connections, opts.pipeline, load.reads
        )
    });
    println!(
        "dse-bench: {} connections, pipeline {}, {}% GET / {}% SET, {} keys, \
         {}-byte values, {} client thread(s); median of {} rounds of {:.1} s (+{:.1} s warm-up)",
        opts.connections,
        opts.pipeline,
        load.reads,
        100 - load.reads,
        opts.keyspace,
        opts.value_size,
        opts.threads,
        opts.rounds,
        opts.duration,
        opts.warmup
    );
    if !opts.no_preload {
        for t in &targets {
            preload(t, &load).map_err(|e| format!("preloading {}: {e}", t.name))?;
        }
    }

    let mut results: Vec<Vec<RoundResult>> = targets.iter().map(|_| Vec::new()).collect();
    let mut seed = 1;
    let total_ms = (opts.rounds * targets.len()) as f64 * (opts.warmup + opts.duration) * 1000.0;
    // Short runs print their result before a bar would say anything.
    let progress = if total_ms >= 10_000.0 {
        ProgressBar::new(total_ms as u64).with_style(
            ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {percent}% {msg}")
                .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    for r in 0..opts.rounds {
        for (i, t) in targets.iter().enumerate() {
            seed += 1000;
            let pid = opts.pid.get(i).copied();
            progress.set_message(format!("round {} of {}: {}", r + 1, opts.rounds, t.name));
            let res = round(t, pid, opts, &load, seed, &progress).map_err(|e| e.to_string())?;
            if opts.verbose {
                progress.suspend(|| {
                    println!(
                        "  round {r} {}: {} ops/s, p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us{}",
                        t.name,
                        fmt_rate(res.ops_per_sec),
                        res.p50_us,
                        res.p99_us,
                        res.p999_us,
                        res.server_cores
                            .map_or(String::new(), |c| format!(", server {c:.2} cores"))
                    );
                });
            }
            results[i].push(res);
        }
    }
    progress.finish_and_clear();

    struct Summary {
        ops: f64,
        p50: f64,
        p99: f64,
        p999: f64,
        /// Ops per second of server CPU time, and the cores the server used.
        per_cpu: Option<(f64, f64)>,
    }
    let summaries: Vec<Summary> = results
        .iter()
        .map(|rs| {
            let pick = |f: fn(&RoundResult) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
            Summary {
                ops: pick(|r| r.ops_per_sec),
                p50: pick(|r| r.p50_us),
                p99: pick(|r| r.p99_us),
                p999: pick(|r| r.p999_us),
                per_cpu: rs.iter().all(|r| r.server_cores.is_some()).then(|| {
                    let cores = |r: &RoundResult| r.server_cores.unwrap_or(0.0);
                    let per: Vec<f64> = rs.iter().map(|r| ratio(r.ops_per_sec, cores(r))).collect();
                    (
                        median(&per),
                        median(&rs.iter().map(cores).collect::<Vec<_>>()),
                    )
                }),
            }
        })
        .collect();

    println!(
        "{:<10} {:>12} {:>10} {:>10} {:>10} {:>8} {:>11} {:>15}",
        "server", "ops/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "srv cores", "ops/srv-cpu-s"
    );
    for ((t, s), rs) in targets.iter().zip(&summaries).zip(&results) {
        let errors: u64 = rs.iter().map(|r| r.errors).sum();
        let (per_cpu, cores) = match s.per_cpu {
            Some((per, cores)) => (fmt_rate(per), format!("{cores:.2}")),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{:<10} {:>12} {:>10.3} {:>10.3} {:>10.3} {:>8} {:>11} {:>15}",
            t.name,
            fmt_rate(s.ops),
            s.p50 / 1000.0,
            s.p99 / 1000.0,
            s.p999 / 1000.0,
            errors,
            cores,
            per_cpu
        );
        if let Some(e) = rs.iter().find_map(|r| r.first_error.as_ref()) {
            println!("  {} answered errors, the first: {e}", t.name);
        }
    }
    if let [a, b, ..] = summaries.as_slice() {
        println!(
            "ratio {}/{}: ops/s {}, p50 {}, p99 {}, p99.9 {} (latency: below 1 is better)",
            targets[0].name,
            targets[1].name,
            fmt_ratio(ratio(a.ops, b.ops)),
            fmt_ratio(ratio(a.p50, b.p50)),
            fmt_ratio(ratio(a.p99, b.p99)),
            fmt_ratio(ratio(a.p999, b.p999)),
        );
        if let (Some((x, _)), Some((y, _))) = (a.per_cpu, b.per_cpu) {
            println!(
                "ratio {}/{} of ops per server CPU-second: {}",
                targets[0].name,
                targets[1].name,
                fmt_ratio(ratio(x, y))
            );
        }
        let mut report = Report::open(opts.report.as_deref())?;
        let section = "latency";
        report.row(
            section,
            &format!("dse-bench {label}"),
            "ops/s",
            a.ops,
            b.ops,
        );
        for (name, x, y) in [
            ("p50", a.p50, b.p50),
            ("p99", a.p99, b.p99),
            ("p99.9", a.p999, b.p999),
        ] {
            report.row(
                section,
                &format!("dse-bench {label} {name}"),
                "ms",
                x / 1000.0,
                y / 1000.0,
            );
        }
        if let (Some((x, _)), Some((y, _))) = (a.per_cpu, b.per_cpu) {
            report.row(
                section,
                &format!("dse-bench {label} per server CPU-s"),
                "ops/cpu-s",
                x,
                y,
            );
        }
    }
    Ok(())
}

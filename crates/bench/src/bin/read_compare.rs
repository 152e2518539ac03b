//! bench-read-compare: the sharded `dse_engine::Store` against one lock over one hash map,
//! under concurrent readers (and a 90/10 read/write mix).
//!
//! Every structure gets the same keys, values and hasher (foldhash), so the difference is
//! the locking: 512 read-write locks against one mutex (or one read-write lock). A GET
//! copies the value into a reply buffer, as the server does; a SET replaces the value of
//! an existing key with a fresh allocation in every structure.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use dse_bench::{
    Report, Rng, fmt_rate, fmt_ratio, median, parse_list, ratio, thread_cpu_time, write_key,
};
use dse_engine::{Expiry, Store};

// The server's allocator: SETs allocate a value each, and the allocator would otherwise be
// a difference between this benchmark and the server.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "bench-read-compare",
    about = "Sharded Store (one RwLock per shard) versus one Mutex<HashMap> and one \
             RwLock<HashMap>, under concurrent random GETs and a read/write mix. Prints the \
             median ops/s over several rounds and the ratio sharded/mutex."
)]
struct Opts {
    /// Keys preloaded into every structure; operations pick among them uniformly
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,

    /// Value size in bytes
    #[arg(long, default_value_t = 32)]
    value_size: usize,

    /// Shards of the Store (a power of two)
    #[arg(long, default_value_t = 512)]
    shards: usize,

    /// Thread counts, comma-separated
    #[arg(long, default_value = "1,2,4,8")]
    threads: String,

    /// Workloads as read percentages, comma-separated: 100 is GET only, 90 is 90% GET and
    /// 10% SET
    #[arg(long, default_value = "100,90")]
    reads: String,

    /// Timed rounds per configuration; the median is reported
    #[arg(long, default_value_t = 5)]
    rounds: usize,

    /// Seconds per timed round
    #[arg(long, default_value_t = 0.5)]
    duration: f64,

    /// Seconds of untimed warm-up per structure and configuration
    #[arg(long, default_value_t = 0.2)]
    warmup: f64,

    /// Leave out the RwLock<HashMap> baseline
    #[arg(long)]
    no_rwlock: bool,

    /// Print every round, not only the medians
    #[arg(long, short)]
    verbose: bool,

    /// Append summary rows (sharded against mutex) to this file, for scripts/benchmark.sh
    #[arg(long)]
    report: Option<PathBuf>,
}

/// What the benchmark needs of a key-value structure.
trait Kv: Sync {
    fn name(&self) -> &'static str;
    /// Appends the value of `key` to `out` (a reply buffer), nothing when absent.
    fn get(&self, key: &[u8], out: &mut Vec<u8>);
    /// Replaces the value of `key`.
    fn set(&self, key: &[u8], value: &[u8]);
}

struct Sharded {
    store: Store,
    /// The engine reads no clock; nothing here expires, so one instant serves.
    now: u64,
}

impl Kv for Sharded {
    fn name(&self) -> &'static str {
        "sharded"
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) {
        let h = self.store.hash(key);
        let shard = self.store.read(h);
        if let Some(e) = shard.get(key, h, self.now) {
            e.value().with_str(|s| out.extend_from_slice(s));
        }
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        let h = self.store.hash(key);
        self.store
            .write(h)
            .put_str(key, h, value, Expiry::None, self.now)
            .expect("a store without a journal accepts every write");
    }
}

type Map = HashMap<Box<[u8]>, Vec<u8>, foldhash::fast::RandomState>;

fn map_set(map: &mut Map, key: &[u8], value: &[u8]) {
    match map.get_mut(key) {
        Some(v) => *v = value.to_vec(),
        None => {
            map.insert(key.into(), value.to_vec());
        }
    }
}

struct MutexMap(parking_lot::Mutex<Map>);

impl Kv for MutexMap {
    fn name(&self) -> &'static str {
        "mutex"
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) {
        if let Some(v) = self.0.lock().get(key) {
            out.extend_from_slice(v);
        }
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        map_set(&mut self.0.lock(), key, value);
    }
}

struct RwLockMap(parking_lot::RwLock<Map>);

impl Kv for RwLockMap {
    fn name(&self) -> &'static str {
        "rwlock"
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) {
        if let Some(v) = self.0.read().get(key) {
            out.extend_from_slice(v);
        }
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        map_set(&mut self.0.write(), key, value);
    }
}

/// Operations between two looks at the stop flag.
const BATCH: u64 = 64;

/// What one timed run measured.
struct Run {
    ops_per_sec: f64,
    /// CPU time the threads got, in cores (CPU seconds per second). Below the thread count
    /// when the machine is busy, or when threads wait parked on a lock.
    cores: f64,
}

/// Runs `threads` threads of random operations on `kv` for `duration`.
fn run(
    kv: &dyn Kv,
    keys: &[Box<[u8]>],
    value: &[u8],
    threads: usize,
    read_percent: u32,
    duration: Duration,
    seed: u64,
) -> Run {
    let stop = AtomicBool::new(false);
    let start_line = Barrier::new(threads + 1);
    let n = keys.len() as u64;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, start_line) = (&stop, &start_line);
                s.spawn(move || {
                    let mut rng = Rng::new(seed.wrapping_add(t as u64 * 7919));
                    let mut out = Vec::with_capacity(8192);
                    let mut ops = 0u64;
                    start_line.wait();
                    let cpu_start = thread_cpu_time();
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..BATCH {
                            let key = &keys[rng.below(n) as usize];
                            if read_percent >= 100 || rng.percent(read_percent) {
                                kv.get(key, &mut out);
                                if out.len() > 4096 {
                                    black_box(&out);
                                    out.clear();
                                }
                            } else {
                                kv.set(key, value);
                            }
                        }
                        ops += BATCH;
                    }
                    black_box(&out);
                    (ops, thread_cpu_time() - cpu_start)
                })
            })
            .collect();
        start_line.wait();
        let started = Instant::now();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let (mut ops, mut cpu) = (0u64, Duration::ZERO);
        for w in workers {
            let (o, c) = w.join().expect("benchmark thread panicked");
            ops += o;
            cpu += c;
        }
        let elapsed = started.elapsed().as_secs_f64();
        Run {
            ops_per_sec: ops as f64 / elapsed,
            cores: cpu.as_secs_f64() / elapsed,
        }
    })
}

fn main() {
    let opts = Opts::parse();
    if let Err(e) = bench(&opts) {
        eprintln!("bench-read-compare: {e}");
        std::process::exit(2);
    }
}

fn bench(opts: &Opts) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thread_counts = parse_list(&opts.threads)?;
    let read_percents: Vec<u32> = parse_list(&opts.reads)?
        .into_iter()
        .map(|p| p.min(100) as u32)
        .collect();
    if thread_counts.is_empty() || thread_counts.contains(&0) {
        return Err("--threads needs counts of at least 1".into());
    }
    if !opts.shards.is_power_of_two() || opts.shards > dse_engine::MAX_SHARDS {
        return Err("--shards must be a power of two up to 65536".into());
    }
    if opts.keys == 0 || opts.rounds == 0 {
        return Err("--keys and --rounds must be at least 1".into());
    }
    let round = Duration::from_secs_f64(opts.duration);
    let warmup = Duration::from_secs_f64(opts.warmup);
    let mut report = Report::open(opts.report.as_deref())?;

    println!(
        "bench-read-compare: {} keys, {}-byte values, Store of {} shards, {} cores; \
         median of {} rounds of {:.2} s",
        opts.keys, opts.value_size, opts.shards, cores, opts.rounds, opts.duration
    );

    let loading = Instant::now();
    let value = dse_bench::make_value(opts.value_size);
    let mut key = Vec::new();
    let keys: Vec<Box<[u8]>> = (0..opts.keys)
        .map(|i| {
            write_key(&mut key, i);
            key.as_slice().into()
        })
        .collect();
    let sharded = Sharded {
        store: Store::new(opts.shards),
        now: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let mut map = Map::default();
    for k in &keys {
        sharded.set(k, &value);
        map_set(&mut map, k, &value);
    }
    let rwlock = (!opts.no_rwlock).then(|| RwLockMap(parking_lot::RwLock::new(map.clone())));
    let mutex = MutexMap(parking_lot::Mutex::new(map));
    let mut structures: Vec<&dyn Kv> = vec![&sharded, &mutex];
    if let Some(r) = &rwlock {
        structures.push(r);
    }
    println!("loaded in {:.1} s\n", loading.elapsed().as_secs_f64());

    print!("{:<10} {:>7}", "workload", "threads");
    for kv in &structures {
        print!(" {:>15}", format!("{} ops/s", kv.name()));
    }
    print!(" {:>13}", "sharded/mutex");
    if rwlock.is_some() {
        print!(" {:>14}", "sharded/rwlock");
    }
    let names: Vec<&str> = structures.iter().map(|kv| &kv.name()[..1]).collect();
    println!("  cores used ({})", names.join("/"));

    let mut seed = 1u64;
    for &reads in &read_percents {
        let workload = if reads >= 100 {
            "GET".to_string()
        } else {
            format!("{reads}/{} R/W", 100 - reads)
        };
        for &threads in &thread_counts {
            for kv in &structures {
                seed += 1;
                run(*kv, &keys, &value, threads, reads, warmup, seed);
            }
            // Rounds alternate between structures, so a burst of outside load falls on
            // all of them rather than on one.
            let mut rates = vec![Vec::with_capacity(opts.rounds); structures.len()];
            let mut cores = vec![Vec::with_capacity(opts.rounds); structures.len()];
            for r in 0..opts.rounds {
                for (i, kv) in structures.iter().enumerate() {
                    seed += 1;
                    let res = run(*kv, &keys, &value, threads, reads, round, seed);
                    if opts.verbose {
                        println!(
                            "  round {r}: {workload} {threads} threads {}: {} ops/s, {:.2} cores",
                            kv.name(),
                            fmt_rate(res.ops_per_sec),
                            res.cores
                        );
                    }
                    rates[i].push(res.ops_per_sec);
                    cores[i].push(res.cores);
                }
            }
            let medians: Vec<f64> = rates.iter().map(|r| median(r)).collect();
            print!("{workload:<10} {threads:>7}");
            for m in &medians {
                print!(" {:>15}", fmt_rate(*m));
            }
            print!(" {:>13}", fmt_ratio(ratio(medians[0], medians[1])));
            if rwlock.is_some() {
                print!(" {:>14}", fmt_ratio(ratio(medians[0], medians[2])));
            }
            let used: Vec<String> = cores.iter().map(|c| format!("{:.1}", median(c))).collect();
            println!("  {}", used.join("/"));
            // The cores the threads got say whether the machine let them run at all.
            report.row(
                "engine",
                &format!(
                    "{workload} {threads} thr (sharded vs Mutex<HashMap>; cores used {}/{})",
                    used[0], used[1]
                ),
                "ops/s",
                medians[0],
                medians[1],
            );
        }
    }
    Ok(())
}

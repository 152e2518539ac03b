//! bench-throughput: mixed GET/SET on the engine (`dse_engine::Store`), in process, with
//! 1..N threads.
//!
//! The store is loaded with every key of the key space (16-byte keys, `key:000000000042`)
//! before anything is timed, so GETs hit and SETs overwrite. A GET copies the value into a
//! reply buffer, as the server does; a SET replaces it through the same write path the
//! server uses (no journal: this measures the engine, not the log).
//!
//! Keys are chosen uniformly or by a Zipf law (YCSB's 0.99 by default) whose ranks are
//! scattered over the key space, so the hot keys fall in random shards as real hot keys
//! do. Each thread draws its key sequence before the clock starts: sampling a Zipf law
//! costs more than the lookup it would feed.
//!
//! For every mix, distribution and thread count: the median ops/s over the rounds, and
//! the scaling factor against one thread measured in the same run.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use dse_bench::{Report, Rng, fmt_rate, fmt_ratio, median, parse_list, ratio, thread_cpu_time};
use dse_engine::{Expiry, Store};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Zipf};

// The server's allocator, so SETs cost here what they cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "bench-throughput",
    about = "Mixed GET/SET on the engine in process (90/10 and 50/50), uniform and Zipf key \
             choice, 1..N threads. Prints the median ops/s per thread count and the scaling \
             factor against one thread."
)]
struct Opts {
    /// Keys loaded before measuring; operations choose among them
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,

    /// Value size in bytes
    #[arg(long, default_value_t = 16)]
    value_size: usize,

    /// Shards of the store (a power of two), as the server's --shards
    #[arg(long, default_value_t = 512)]
    shards: usize,

    /// Thread counts, comma-separated [default: 1 up to the number of cores]
    #[arg(long)]
    threads: Option<String>,

    /// Mixes as GET percentages, comma-separated (90: 90% GET, 10% SET)
    #[arg(long, default_value = "90,50")]
    reads: String,

    /// Key choice: uniform, zipf, or both, comma-separated
    #[arg(long, default_value = "uniform,zipf")]
    dist: String,

    /// Exponent of the Zipf law
    #[arg(long, default_value_t = 0.99)]
    zipf_s: f64,

    /// Timed rounds per configuration; the median is reported
    #[arg(long, default_value_t = 5)]
    rounds: usize,

    /// Seconds per timed round
    #[arg(long, default_value_t = 0.5)]
    duration: f64,

    /// Seconds of untimed warm-up per configuration
    #[arg(long, default_value_t = 0.2)]
    warmup: f64,

    /// Print every round, not only the medians
    #[arg(long, short)]
    verbose: bool,

    /// Append summary rows (N threads against 1) to this file, for scripts/benchmark.sh
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Dist {
    Uniform,
    Zipf,
}

impl Dist {
    fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Zipf => "zipf",
        }
    }
}

/// Key indices drawn per thread; a power of two so the walk through them wraps with a
/// mask. At 4 bytes each, 1M draws are 4 MiB per thread.
const DRAWS: usize = 1 << 20;

/// Operations between two looks at the stop flag.
const BATCH: usize = 64;

/// The key sequence a thread follows: `DRAWS` indices into the key space.
fn draws(dist: Dist, keys: u64, zipf_s: f64, scatter: &[u32], seed: u64) -> Vec<u32> {
    let mut rng = SmallRng::seed_from_u64(seed);
    match dist {
        Dist::Uniform => {
            let mut r = Rng::new(seed);
            (0..DRAWS).map(|_| r.below(keys) as u32).collect()
        }
        Dist::Zipf => {
            let zipf = Zipf::new(keys as f64, zipf_s).expect("a valid Zipf law");
            (0..DRAWS)
                .map(|_| {
                    // Ranks from 1; rank 1 is the hottest key.
                    let rank = zipf.sample(&mut rng) as usize;
                    scatter[rank.clamp(1, scatter.len()) - 1]
                })
                .collect()
        }
    }
}

struct Run {
    ops_per_sec: f64,
    /// CPU the threads got, in cores: below the thread count when the machine is busy.
    cores: f64,
}

#[allow(clippy::too_many_arguments)]
fn run(
    store: &Store,
    keys: &[[u8; 16]],
    value: &[u8],
    sequences: &[Vec<u32>],
    threads: usize,
    read_percent: u32,
    duration: Duration,
    seed: u64,
) -> Run {
    let stop = AtomicBool::new(false);
    let start_line = Barrier::new(threads + 1);
    // The engine reads no clock; nothing expires here, so one instant serves.
    let now = 1_700_000_000_000u64;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, start_line) = (&stop, &start_line);
                let seq = &sequences[t];
                s.spawn(move || {
                    let mut rng = Rng::new(seed.wrapping_add(t as u64 * 7919));
                    let mut at = rng.below(DRAWS as u64) as usize;
                    let mut out = Vec::with_capacity(8192);
                    let mut ops = 0u64;
                    start_line.wait();
                    let cpu_start = thread_cpu_time();
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..BATCH {
                            let key = &keys[seq[at] as usize];
                            at = (at + 1) & (DRAWS - 1);
                            let h = store.hash(key);
                            if rng.percent(read_percent) {
                                let shard = store.read(h);
                                if let Some(e) = shard.get(key, h, now) {
                                    e.value().with_str(|v| out.extend_from_slice(v));
                                }
                                drop(shard);
                                if out.len() > 4096 {
                                    black_box(&out);
                                    out.clear();
                                }
                            } else {
                                store
                                    .write(h)
                                    .put_str(key, h, value, Expiry::None, now)
                                    .expect("a store without a journal takes every write");
                            }
                        }
                        ops += BATCH as u64;
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
        eprintln!("bench-throughput: {e}");
        std::process::exit(2);
    }
}

fn bench(opts: &Opts) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thread_counts = match &opts.threads {
        Some(list) => parse_list(list)?,
        None => (1..=cores).collect(),
    };
    if thread_counts.is_empty() || thread_counts.contains(&0) {
        return Err("--threads needs counts of at least 1".into());
    }
    let read_percents: Vec<u32> = parse_list(&opts.reads)?
        .into_iter()
        .map(|p| p.min(100) as u32)
        .collect();
    let dists = opts
        .dist
        .split(',')
        .map(|d| match d.trim() {
            "uniform" => Ok(Dist::Uniform),
            "zipf" => Ok(Dist::Zipf),
            other => Err(format!("unknown --dist '{other}' (uniform or zipf)")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !opts.shards.is_power_of_two() || opts.shards > dse_engine::MAX_SHARDS {
        return Err("--shards must be a power of two up to 65536".into());
    }
    if opts.keys == 0 || opts.keys > u32::MAX as u64 || opts.rounds == 0 {
        return Err("--keys must be between 1 and 2^32-1, --rounds at least 1".into());
    }
    if opts.zipf_s.is_nan() || opts.zipf_s <= 0.0 {
        return Err("--zipf-s must be positive".into());
    }
    let mut report = Report::open(opts.report.as_deref())?;
    let round = Duration::from_secs_f64(opts.duration);
    let warmup = Duration::from_secs_f64(opts.warmup);

    println!(
        "bench-throughput: {} keys of 16 bytes, {}-byte values, Store of {} shards, {} cores; \
         median of {} rounds of {:.2} s",
        opts.keys, opts.value_size, opts.shards, cores, opts.rounds, opts.duration
    );
    let loading = Instant::now();
    let value = dse_bench::make_value(opts.value_size);
    let keys: Vec<[u8; 16]> = (0..opts.keys)
        .map(|i| {
            let mut k = Vec::with_capacity(16);
            dse_bench::write_key(&mut k, i);
            k.try_into().expect("write_key makes 16-byte keys")
        })
        .collect();
    let store = Store::new(opts.shards);
    for k in &keys {
        let h = store.hash(k);
        store
            .write(h)
            .put_str(k, h, &value, Expiry::None, 0)
            .expect("a store without a journal takes every write");
    }
    // Zipf rank r is key scatter[r - 1]: a fixed shuffle of the key space.
    let mut scatter: Vec<u32> = (0..opts.keys as u32).collect();
    scatter.shuffle(&mut SmallRng::seed_from_u64(42));
    let max_threads = thread_counts.iter().copied().max().unwrap_or(1);
    println!("loaded in {:.1} s\n", loading.elapsed().as_secs_f64());

    println!(
        "{:<8} {:<8} {:>7} {:>14} {:>9} {:>6}",
        "mix", "keys", "threads", "ops/s", "scaling", "cores"
    );
    let mut seed = 1u64;
    for &dist in &dists {
        let sequences: Vec<Vec<u32>> = (0..max_threads)
            .map(|t| draws(dist, opts.keys, opts.zipf_s, &scatter, 1000 + t as u64))
            .collect();
        for &reads in &read_percents {
            let mix = format!("{reads}/{}", 100 - reads);
            let mut base = None;
            for &threads in &thread_counts {
                seed += 1;
                run(
                    &store, &keys, &value, &sequences, threads, reads, warmup, seed,
                );
                let mut rates = Vec::with_capacity(opts.rounds);
                let mut used = Vec::with_capacity(opts.rounds);
                for r in 0..opts.rounds {
                    seed += 1;
                    let res = run(
                        &store, &keys, &value, &sequences, threads, reads, round, seed,
                    );
                    if opts.verbose {
                        println!(
                            "  round {r}: {mix} {} {threads} threads: {} ops/s, {:.2} cores",
                            dist.name(),
                            fmt_rate(res.ops_per_sec),
                            res.cores
                        );
                    }
                    rates.push(res.ops_per_sec);
                    used.push(res.cores);
                }
                let ops = median(&rates);
                let cores = median(&used);
                let (one, one_cores) = *base.get_or_insert(if threads == 1 {
                    (ops, cores)
                } else {
                    (f64::NAN, 0.0)
                });
                println!(
                    "{:<8} {:<8} {:>7} {:>14} {:>9} {:>6.2}",
                    mix,
                    dist.name(),
                    threads,
                    fmt_rate(ops),
                    fmt_ratio(ratio(ops, one)),
                    cores
                );
                if threads > 1 && one.is_finite() {
                    // The cores the threads got say whether the machine let them run.
                    report.row(
                        "engine",
                        &format!(
                            "bench-throughput {mix} GET/SET {}, {threads} threads vs 1 \
                             (cores used {cores:.1}/{one_cores:.1})",
                            dist.name()
                        ),
                        "ops/s",
                        ops,
                        one,
                    );
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_draws_favour_the_first_ranks_and_stay_in_range() {
        let scatter: Vec<u32> = (0..1000).rev().collect();
        let d = draws(Dist::Zipf, 1000, 0.99, &scatter, 7);
        assert_eq!(d.len(), DRAWS);
        assert!(d.iter().all(|&k| k < 1000));
        let hottest = d.iter().filter(|&&k| k == 999).count();
        let coldest = d.iter().filter(|&&k| k == 0).count();
        assert!(hottest > 100 * coldest.max(1), "{hottest} vs {coldest}");
        let u = draws(Dist::Uniform, 1000, 0.99, &scatter, 7);
        assert!(u.iter().all(|&k| k < 1000));
    }
}

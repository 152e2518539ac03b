//! Shared pieces of the load tools: latency histograms, the random-number generator,
//! medians, target parsing, RESP request encoding, process RSS and CPU time, and the
//! report rows the benchmark script builds its tables and chart from.
//!
//! The tools measure in rounds and report medians: the machines they run on are shared,
//! and one slow round (another process compiling) must not move the result. When they
//! compare two things (dse and redis-server, two lock layouts), the rounds alternate
//! between them so that both see the same background noise.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `a / b`, or NaN when `b` is zero (printed as "n/a").
pub fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { f64::NAN } else { a / b }
}

/// A ratio with two decimals, "n/a" when undefined.
pub fn fmt_ratio(r: f64) -> String {
    if r.is_finite() {
        format!("{r:.2}")
    } else {
        "n/a".to_string()
    }
}

/// A rate with thousands separators, as redis-benchmark prints none and tables are easier
/// to read with them.
pub fn fmt_rate(ops_per_sec: f64) -> String {
    let n = ops_per_sec.round() as u64;
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Parses a comma-separated list of numbers ("1,2,4").
pub fn parse_list(s: &str) -> Result<Vec<usize>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .map_err(|_| format!("'{p}' is not a number"))
        })
        .collect()
}

/// SplitMix64: a fast generator with no state worth sharing, one per thread. The tools
/// need uniform key choices, not cryptographic quality.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for the key
    /// spaces used here).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < percent as u64
    }
}

/// A latency histogram in nanoseconds, three significant digits (0.1%), from 1 ns to an
/// hour; `saturating_record` puts anything longer at an hour.
pub fn latency_histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .expect("valid bounds and precision")
}

/// A server to measure: a name for the tables and its address.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub addr: SocketAddr,
}

/// Parses `NAME=HOST:PORT` or `HOST:PORT` (named after the address).
pub fn parse_target(spec: &str) -> Result<Target, String> {
    let (name, addr) = match spec.split_once('=') {
        Some((n, a)) => (n.to_string(), a),
        None => (spec.to_string(), spec),
    };
    let addr = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{addr}': {e}"))?
        .next()
        .ok_or_else(|| format!("'{addr}' resolves to no address"))?;
    Ok(Target { name, addr })
}

/// Appends one RESP multibulk request to `out`.
pub fn encode_request(out: &mut Vec<u8>, args: &[&[u8]]) {
    let mut n = [0u8; 20];
    out.push(b'*');
    out.extend_from_slice(fmt_usize(&mut n, args.len()));
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(fmt_usize(&mut n, a.len()));
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn fmt_usize(buf: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The key for index `i`, in redis-benchmark's style (`key:000000000042`), written into
/// `out` (cleared first).
pub fn write_key(out: &mut Vec<u8>, i: u64) {
    out.clear();
    out.extend_from_slice(b"key:");
    let mut buf = [b'0'; 12];
    let mut n = i;
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf);
}

/// A value of `size` bytes that is not an integer (so the server keeps it as a string).
pub fn make_value(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Resident set size of process `pid` in bytes, from /proc (Linux).
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// CPU time the calling thread has used.
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass and reads nothing else.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time (user and system) process `pid` has used, from /proc (Linux), at the kernel's
/// clock-tick resolution (10 ms).
pub fn process_cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // Fields 14 and 15 of the line (utime, stime) are 11 and 12 after the name.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
        return Err(format!("unexpected /proc/{pid}/stat: {stat}"));
    };
    // SAFETY: sysconf only reads its argument.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Ok(Duration::from_nanos((user + system) * 1_000_000_000 / hz))
}

/// Rows of the benchmark script's summary table: `section, metric, unit, value, baseline`
/// and optionally the smallest and largest per-round ratio, separated by tabs, one line
/// per row (bench-report reads them back). The unit says which way is better (`ops/s`: higher,
/// `ms`, `B/conn`: lower; units that start with "ops": higher).
pub struct Report {
    file: Option<std::fs::File>,
}

impl Report {
    /// Appends to `path` when given; otherwise rows are dropped.
    pub fn open(path: Option<&Path>) -> Result<Report, String> {
        let file = match path {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("cannot open report file {}: {e}", p.display()))?,
            ),
            None => None,
        };
        Ok(Report { file })
    }

    pub fn row(&mut self, section: &str, metric: &str, unit: &str, value: f64, baseline: f64) {
        if let Some(f) = &mut self.file {
            // A report that cannot be written is not worth aborting a measurement for;
            // the numbers are on stdout too.
            let _ = writeln!(f, "{section}\t{metric}\t{unit}\t{value:.3}\t{baseline:.3}");
        }
    }

    /// A row with the smallest and largest ratio value/baseline seen over the rounds.
    #[allow(clippy::too_many_arguments)]
    pub fn row_range(
        &mut self,
        section: &str,
        metric: &str,
        unit: &str,
        value: f64,
        baseline: f64,
        min_ratio: f64,
        max_ratio: f64,
    ) {
        if let Some(f) = &mut self.file {
            let _ = writeln!(
                f,
                "{section}\t{metric}\t{unit}\t{value:.3}\t{baseline:.3}\t{min_ratio:.4}\t{max_ratio:.4}"
            );
        }
    }
}

/// Microseconds, for tables.
pub fn us(nanos: u64) -> f64 {
    nanos as f64 / 1000.0
}

/// Milliseconds of a duration, for tables.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn latency_histogram_takes_any_sample() {
        let mut h = latency_histogram();
        for v in 1..=100_000u64 {
            h.saturating_record(v * 1000);
        }
        h.saturating_record(u64::MAX / 4);
        let p50 = h.value_at_quantile(0.5) as f64;
        assert!((p50 - 50_000_000.0).abs() / 50_000_000.0 < 0.002, "{p50}");
        assert!(h.max() >= 3_599_000_000_000, "{}", h.max());
    }

    #[test]
    fn requests_and_keys_encode_as_redis_expects() {
        let mut out = Vec::new();
        encode_request(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let mut key = Vec::new();
        write_key(&mut key, 42);
        assert_eq!(key, b"key:000000000042");
        assert_eq!(fmt_rate(1234567.4), "1,234,567");
        assert_eq!(fmt_rate(999.0), "999");
    }

    #[test]
    fn cpu_times_advance() {
        let start = thread_cpu_time();
        let mut x = 0u64;
        while thread_cpu_time() - start < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let own = process_cpu_time(std::process::id()).unwrap();
        assert!(own >= Duration::from_millis(10), "{own:?}");
    }

    #[test]
    fn rng_below_stays_in_range() {
        let mut r = Rng::new(1);
        assert!((0..10_000).all(|_| r.below(7) < 7));
    }
}

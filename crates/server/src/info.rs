//! INFO: the report, section by section, with Redis's field names for what dse has.
//!
//! Each section is a function appending `name:value\r\n` lines under its `# Title`
//! header; [`report`] joins the selected ones with a blank line, as Redis does. A field
//! appears only where dse has the data behind it (or where zero is simply true, such as
//! `loading:0` for a server that never loads).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::server::{REDIS_VERSION, Server, unix_ms, unix_us};

/// Appends one section's header and fields.
type Section = fn(&Server, &mut String);

/// The sections, in Redis's order, and whether a bare `INFO` includes them.
const SECTIONS: &[(&str, bool, Section)] = &[
    ("server", true, server),
    ("clients", true, clients),
    ("memory", true, memory),
    ("persistence", true, persistence),
    ("threads", true, threads),
    ("stats", true, stats),
    ("replication", true, replication),
    ("cpu", true, cpu),
    ("modules", true, modules),
    ("commandstats", false, commandstats),
    ("errorstats", true, errorstats),
    ("cluster", true, cluster),
    ("keyspace", true, keyspace),
];

/// Which sections to report: bit `i` is `SECTIONS[i]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Selection(u32);

impl Selection {
    /// The sections `INFO` with these arguments reports: none means `default`;
    /// `default`, `all` and `everything` are groups; names are case-insensitive and
    /// unknown names select nothing.
    pub fn from_args<'a>(args: impl IntoIterator<Item = &'a [u8]>) -> Selection {
        let mut bits = 0u32;
        let mut any = false;
        for a in args {
            any = true;
            for (i, (name, default, _)) in SECTIONS.iter().enumerate() {
                let hit = a.eq_ignore_ascii_case(name.as_bytes())
                    || a.eq_ignore_ascii_case(b"all")
                    || a.eq_ignore_ascii_case(b"everything")
                    || (*default && a.eq_ignore_ascii_case(b"default"));
                if hit {
                    bits |= 1 << i;
                }
            }
        }
        if !any {
            return Selection::from_args([&b"default"[..]]);
        }
        Selection(bits)
    }
}

/// The INFO text for `sel` (empty when nothing was selected).
pub fn report(srv: &Server, sel: Selection) -> String {
    let mut out = String::with_capacity(4096);
    for (i, (_, _, section)) in SECTIONS.iter().enumerate() {
        if sel.0 & (1 << i) != 0 {
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            section(srv, &mut out);
        }
    }
    out
}

fn field(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

fn server(srv: &Server, out: &mut String) {
    let now_us = unix_us();
    let uptime = srv.started.elapsed().as_secs();
    let port = srv.port.get().copied().unwrap_or(srv.config.port);
    let hz = srv.runtime.hz.load(Ordering::Relaxed);
    out.push_str("# Server\r\n");
    field(out, "redis_version", REDIS_VERSION);
    field(out, "dse_version", env!("CARGO_PKG_VERSION"));
    field(out, "redis_git_sha1", "00000000");
    field(out, "redis_git_dirty", 0);
    field(out, "redis_mode", "standalone");
    field(out, "os", os_name());
    field(out, "arch_bits", usize::BITS);
    field(out, "multiplexing_api", MULTIPLEXING_API);
    field(out, "process_id", std::process::id());
    field(out, "process_supervised", "no");
    field(out, "run_id", &srv.run_id);
    field(out, "tcp_port", port);
    field(out, "server_time_usec", now_us);
    field(out, "uptime_in_seconds", uptime);
    field(out, "uptime_in_days", uptime / 86_400);
    field(out, "hz", hz);
    field(out, "configured_hz", hz);
    field(out, "lru_clock", (now_us / 1_000_000) & LRU_CLOCK_MAX);
    let exe = std::env::current_exe().map(|p| p.display().to_string());
    field(out, "executable", exe.unwrap_or_default());
    let config_file = srv.config_file.as_ref().map(|p| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string()
    });
    field(out, "config_file", config_file.unwrap_or_default());
    let mut listener = String::from("name=tcp");
    for b in &srv.config.bind {
        let _ = write!(listener, ",bind={b}");
    }
    let _ = write!(listener, ",port={port}");
    field(out, "listener0", listener);
}

#[cfg(target_os = "linux")]
const MULTIPLEXING_API: &str = "epoll";
#[cfg(not(target_os = "linux"))]
const MULTIPLEXING_API: &str = "kqueue";

/// Redis's LRU clock wraps at 24 bits of seconds.
pub const LRU_CLOCK_MAX: u64 = (1 << 24) - 1;

/// `sysname release machine`, as Redis prints from uname(2).
fn os_name() -> String {
    // SAFETY: utsname is plain old data; an all-zero value is valid.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we own and reads nothing else.
    if unsafe { libc::uname(&mut u) } != 0 {
        return std::env::consts::OS.to_string();
    }
    let text = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {}",
        text(&u.sysname),
        text(&u.release),
        text(&u.machine)
    )
}

fn clients(srv: &Server, out: &mut String) {
    let all = srv.clients.all();
    let max_qbuf = all
        .iter()
        .map(|c| c.qbuf.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let maxclients = srv.net().map_or(srv.config.maxclients, |n| {
        n.maxclients.load(Ordering::Relaxed)
    });
    out.push_str("# Clients\r\n");
    field(out, "connected_clients", all.len());
    field(out, "cluster_connections", 0);
    field(out, "maxclients", maxclients);
    field(out, "client_recent_max_input_buffer", max_qbuf);
    field(out, "blocked_clients", srv.blocking.blocked_clients());
}

/// The event loops (Redis 8 has a section of this name for its I/O threads): how many
/// clients each serves and how busy it was in its last measuring window, which is what
/// placement (`--placement gather`) decides by.
fn threads(srv: &Server, out: &mut String) {
    out.push_str("# Threads\r\n");
    field(out, "event_loops", srv.config.threads);
    let placement = match srv.config.placement {
        dse_net::Placement::Gather => "gather",
        dse_net::Placement::RoundRobin => "round-robin",
    };
    field(out, "placement", placement);
    let mut clients = vec![0usize; srv.config.threads];
    for c in srv.clients.all() {
        if let Some(n) = clients.get_mut(c.conn().loop_index as usize) {
            *n += 1;
        }
    }
    let loops = srv.loops.get();
    for (i, n) in clients.iter().enumerate() {
        let busy = loops.map_or(0, |l| l[i].busy());
        let _ = write!(
            out,
            "event_loop_{i}:clients={n},busy={}.{}%\r\n",
            busy / 10,
            busy % 10
        );
    }
}

fn memory(srv: &Server, out: &mut String) {
    // used_memory is the store's own accounting: its structures at their allocated sizes
    // and what keys and values keep on the heap, not the allocator's total (connection
    // buffers are not in it).
    let stats = srv.store.stats();
    let used = stats.mem as u64;
    let peak = srv
        .runtime
        .peak_memory
        .fetch_max(used, Ordering::Relaxed)
        .max(used);
    let rss = rss_bytes();
    let total = total_system_memory();
    let maxmemory = srv.runtime.maxmemory.load(Ordering::Relaxed);
    out.push_str("# Memory\r\n");
    field(out, "used_memory", used);
    field(out, "used_memory_human", bytes_to_human(used));
    field(out, "used_memory_rss", rss);
    field(out, "used_memory_rss_human", bytes_to_human(rss));
    field(out, "used_memory_peak", peak);
    field(out, "used_memory_peak_human", bytes_to_human(peak));
    let perc = if peak == 0 {
        0.0
    } else {
        used as f64 * 100.0 / peak as f64
    };
    field(out, "used_memory_peak_perc", format_args!("{perc:.2}%"));
    field(out, "used_memory_dataset", stats.dataset);
    field(out, "total_system_memory", total);
    field(out, "total_system_memory_human", bytes_to_human(total));
    field(out, "maxmemory", maxmemory);
    field(out, "maxmemory_human", bytes_to_human(maxmemory));
    field(
        out,
        "maxmemory_policy",
        srv.runtime.maxmemory_policy.lock().as_str(),
    );
}

fn page_size() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u64 } else { 4096 }
}

/// Resident set size, from /proc/self/statm (0 where there is no /proc).
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_size())
}

fn total_system_memory() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    if pages > 0 {
        pages as u64 * page_size()
    } else {
        0
    }
}

/// Redis's `bytesToHuman`: `512B`, `1.50K`, `2.00M`, ...
pub fn bytes_to_human(n: u64) -> String {
    const UNITS: [(u32, char); 5] = [(1, 'K'), (2, 'M'), (3, 'G'), (4, 'T'), (5, 'P')];
    if n < 1024 {
        return format!("{n}B");
    }
    for (power, unit) in UNITS {
        if (n as u128) < 1024u128.pow(power + 1) {
            return format!("{:.2}{unit}", n as f64 / 1024f64.powi(power as i32));
        }
    }
    format!("{n}B")
}

/// Zeroes what CONFIG RESETSTAT resets (not the change count since the last save, which
/// Redis keeps).
pub fn reset_stats(srv: &Server) {
    srv.stats.reset();
    srv.stats.ops_samples.lock().clear();
    srv.store.reset_stats();
    if let Some(net) = srv.net() {
        for c in [
            &net.total_connections,
            &net.rejected_connections,
            &net.net_input_bytes,
            &net.net_output_bytes,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// Persistence: Redis's fields for what they mean here (snapshots are the "rdb", the
/// write-ahead log the "aof"), then the log's own figures.
fn persistence(srv: &Server, out: &mut String) {
    let p = &srv.persist;
    let st = p.status();
    let ok = |b: bool| if b { "ok" } else { "err" };
    out.push_str("# Persistence\r\n");
    field(out, "loading", 0);
    field(out, "async_loading", 0);
    field(out, "rdb_changes_since_last_save", p.changes_since_save());
    field(out, "rdb_bgsave_in_progress", p.bgsave_in_progress() as u8);
    field(out, "rdb_last_save_time", st.last_save_unix);
    field(out, "rdb_last_bgsave_status", ok(st.last_ok));
    field(out, "rdb_last_bgsave_time_sec", st.last_duration_ms / 1000);
    field(out, "rdb_saves", st.saves);
    field(out, "rdb_last_save_keys", st.last_keys);
    field(out, "rdb_last_save_bytes", st.last_bytes);
    field(out, "snapshot_interval", p.snapshot_interval());
    field(out, "aof_enabled", p.wal().is_some() as u8);
    field(out, "aof_rewrite_in_progress", 0);
    field(out, "aof_rewrite_scheduled", 0);
    field(out, "aof_last_bgrewrite_status", "ok");
    match p.wal() {
        Some(w) => {
            let ws = w.stats();
            field(out, "aof_last_write_status", ok(ws.failure.is_none()));
            field(out, "aof_current_size", ws.bytes);
            field(out, "aof_fsync", w.policy().name());
            field(out, "wal_segments", ws.segments);
            field(out, "wal_bytes", ws.bytes);
            field(out, "wal_fsyncs", ws.fsyncs);
            field(out, "wal_written_lsn", ws.written_lsn);
            field(out, "wal_durable_lsn", ws.durable_lsn);
            field(out, "wal_last_error", ws.failure.as_deref().unwrap_or(""));
        }
        None => field(out, "aof_last_write_status", "ok"),
    }
    field(out, "wal_assigned_lsn", p.assigned());
}

fn stats(srv: &Server, out: &mut String) {
    let st = &srv.stats;
    let net_counter = |f: fn(&dse_net::NetShared) -> &std::sync::atomic::AtomicU64| {
        srv.net().map_or(0, |n| f(n).load(Ordering::Relaxed))
    };
    out.push_str("# Stats\r\n");
    field(
        out,
        "total_connections_received",
        net_counter(|n| &n.total_connections),
    );
    field(out, "total_commands_processed", st.total(|l| &l.commands));
    field(out, "instantaneous_ops_per_sec", st.ops_per_sec());
    field(
        out,
        "total_net_input_bytes",
        net_counter(|n| &n.net_input_bytes),
    );
    field(
        out,
        "total_net_output_bytes",
        net_counter(|n| &n.net_output_bytes),
    );
    field(
        out,
        "rejected_connections",
        net_counter(|n| &n.rejected_connections),
    );
    field(out, "expired_keys", srv.store.stats().expired);
    field(out, "evicted_keys", 0);
    field(out, "keyspace_hits", st.total(|l| &l.hits));
    field(out, "keyspace_misses", st.total(|l| &l.misses));
    field(out, "total_forks", 0);
    field(out, "total_error_replies", st.total(|l| &l.error_replies));
}

/// Cluster mode: every node is a master of its slots; `slaveN` lines are the nodes that
/// copy them (offset: the highest of our LSNs they acknowledged), `masterN` lines the
/// streams this node receives, `cluster_replicas` the nodes that should copy our slots.
fn replication(srv: &Server, out: &mut String) {
    out.push_str("# Replication\r\n");
    field(out, "role", "master");
    let (expected, live) = srv
        .replication
        .as_ref()
        .map_or((0, 0), |r| r.replica_counts());
    field(out, "connected_slaves", live);
    if let (Some(r), Some(cluster)) = (&srv.replication, &srv.cluster) {
        r.info(cluster, crate::server::unix_ms(), out);
    }
    if srv.cluster.is_some() {
        field(out, "cluster_replicas", expected);
    }
    field(out, "master_failover_state", "no-failover");
    field(out, "master_replid", &srv.runtime.replid);
    field(out, "master_replid2", "0".repeat(40));
    let offset = if srv.cluster.is_some() {
        srv.persist.assigned()
    } else {
        0
    };
    field(out, "master_repl_offset", offset);
    field(out, "second_repl_offset", -1);
    field(out, "repl_backlog_active", 0);
}

fn cpu(_srv: &Server, out: &mut String) {
    let usage = |who| {
        // SAFETY: rusage is plain old data; an all-zero value is valid.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage writes into the struct we own.
        unsafe { libc::getrusage(who, &mut ru) };
        ru
    };
    let secs = |tv: libc::timeval| format!("{}.{:06}", tv.tv_sec, tv.tv_usec);
    let me = usage(libc::RUSAGE_SELF);
    let children = usage(libc::RUSAGE_CHILDREN);
    out.push_str("# CPU\r\n");
    field(out, "used_cpu_sys", secs(me.ru_stime));
    field(out, "used_cpu_user", secs(me.ru_utime));
    field(out, "used_cpu_sys_children", secs(children.ru_stime));
    field(out, "used_cpu_user_children", secs(children.ru_utime));
}

fn modules(_srv: &Server, out: &mut String) {
    out.push_str("# Modules\r\n");
}

fn commandstats(srv: &Server, out: &mut String) {
    out.push_str("# Commandstats\r\n");
    for (idx, name) in srv.table.full_names.iter().enumerate() {
        let (mut calls, mut usec, mut rejected, mut failed) = (0u64, 0u64, 0u64, 0u64);
        for l in srv.stats.loops.iter() {
            let c = &l.cmd[idx];
            calls += c.calls.load(Ordering::Relaxed);
            usec += c.usec.load(Ordering::Relaxed);
            rejected += c.rejected.load(Ordering::Relaxed);
            failed += c.failed.load(Ordering::Relaxed);
        }
        if calls == 0 && rejected == 0 && failed == 0 {
            continue;
        }
        let per_call = if calls == 0 {
            0.0
        } else {
            usec as f64 / calls as f64
        };
        let _ = write!(
            out,
            "cmdstat_{name}:calls={calls},usec={usec},usec_per_call={per_call:.2},\
             rejected_calls={rejected},failed_calls={failed}\r\n"
        );
    }
}

fn errorstats(srv: &Server, out: &mut String) {
    out.push_str("# Errorstats\r\n");
    let mut errors: Vec<(String, u64)> = srv
        .stats
        .errors
        .lock()
        .iter()
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    errors.sort();
    for (code, count) in errors {
        let _ = write!(out, "errorstat_{code}:count={count}\r\n");
    }
}

fn cluster(srv: &Server, out: &mut String) {
    out.push_str("# Cluster\r\n");
    field(out, "cluster_enabled", srv.cluster.is_some() as u8);
}

/// Keys looked at per shard to estimate `avg_ttl` (Redis samples too).
const TTL_SAMPLE_PER_SHARD: usize = 64;

fn keyspace(srv: &Server, out: &mut String) {
    out.push_str("# Keyspace\r\n");
    let st = srv.store.stats();
    if st.keys == 0 {
        return;
    }
    let now = unix_ms();
    let (mut sum, mut n) = (0u128, 0u128);
    if st.volatile > 0 {
        for i in 0..srv.store.shard_count() {
            let shard = srv.store.read_shard(i);
            for ttl in shard
                .iter(now)
                .take(TTL_SAMPLE_PER_SHARD)
                .filter_map(|e| e.ttl_ms(now))
            {
                sum += ttl as u128;
                n += 1;
            }
        }
    }
    let avg_ttl = sum.checked_div(n).unwrap_or(0);
    let _ = write!(
        out,
        "db0:keys={},expires={},avg_ttl={avg_ttl}\r\n",
        st.keys, st.volatile
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(bytes_to_human(0), "0B");
        assert_eq!(bytes_to_human(1023), "1023B");
        assert_eq!(bytes_to_human(1536), "1.50K");
        assert_eq!(bytes_to_human(1 << 30), "1.00G");
    }

    #[test]
    fn selection() {
        let bit = |name: &str| 1 << SECTIONS.iter().position(|s| s.0 == name).unwrap();
        let none: [&[u8]; 0] = [];
        let default = Selection::from_args(none);
        assert_eq!(default, Selection::from_args([&b"DEFAULT"[..]]));
        assert_eq!(default.0 & bit("commandstats"), 0);
        assert_ne!(default.0 & bit("keyspace"), 0);
        let all = Selection::from_args([&b"all"[..]]);
        assert_eq!(all.0, (1 << SECTIONS.len()) - 1);
        assert_eq!(all, Selection::from_args([&b"Everything"[..]]));
        assert_eq!(
            Selection::from_args([&b"KEYSPACE"[..], b"server", b"nosuch"]).0,
            bit("keyspace") | bit("server")
        );
        assert_eq!(Selection::from_args([&b"nosuch"[..]]).0, 0);
    }
}

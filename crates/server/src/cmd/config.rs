//! CONFIG: GET, SET, RESETSTAT, REWRITE and HELP over one table of parameters.
//!
//! [`PARAMS`] lists every parameter dse really has: its Redis name and aliases, how to
//! read it, how to validate and apply a new value (none when it cannot change while
//! running), and its key in the TOML configuration file when it has one. CONFIG SET
//! validates every pair before applying any, so a failed SET changes nothing.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use dse_proto::Args;

use crate::args;
use crate::cmd::server::reply_help;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};
use crate::config::{Config, Options, parse_memory};
use crate::info;
use crate::server::Server;

const CONFIG_FLAGS: u32 = ADMIN | NOSCRIPT | LOADING | STALE;

pub const COMMANDS: &[CommandSpec] = &[cmd("config", -2, 0, container)
    .doc(
        "server",
        "2.0.0",
        "Depends on subcommand.",
        "A container for server configuration commands.",
    )
    .subs(&[
        cmd("get", -3, CONFIG_FLAGS, config_get).doc(
            "server",
            "2.0.0",
            "O(N) when N is the number of configuration parameters provided",
            "Returns the effective values of configuration parameters.",
        ),
        cmd("set", -4, CONFIG_FLAGS, config_set).doc(
            "server",
            "2.0.0",
            "O(N) when N is the number of configuration parameters provided",
            "Sets configuration parameters in-flight.",
        ),
        cmd("resetstat", 2, CONFIG_FLAGS, config_resetstat).doc(
            "server",
            "2.0.0",
            "O(1)",
            "Resets the server's statistics.",
        ),
        cmd("rewrite", 2, CONFIG_FLAGS, config_rewrite).doc(
            "server",
            "2.8.0",
            "O(1)",
            "Persists the effective configuration to file.",
        ),
        cmd("help", 2, LOADING | STALE, config_help).doc(
            "server",
            "5.0.0",
            "O(1)",
            "Returns helpful text about the different subcommands.",
        ),
    ])];

/// Never runs: the table resolves CONFIG to one of its subcommands first.
fn container(_ctx: &mut Ctx, _a: Args) -> CmdResult {
    Err(CmdError::Syntax)
}

/// Applies a validated value. Applying cannot fail, which is what makes a
/// multi-parameter SET all-or-nothing.
type Apply = Box<dyn FnOnce(&Server) + Send>;

/// Validates a new value: the change to apply, or the reason (Redis's wording).
type Setter = fn(&Server, &str) -> Result<Apply, Cow<'static, str>>;

/// A parameter's line in the TOML file: its key, and its value as a TOML literal now
/// (`None`: what CONFIG GET shows) and by default (a key not yet in the file is only
/// added when it differs from the default, as Redis's rewrite does).
struct FileKey {
    key: &'static str,
    value: Option<fn(&Server) -> String>,
    default: fn(&Config) -> String,
}

struct Param {
    name: &'static str,
    aliases: &'static [&'static str],
    get: fn(&Server) -> String,
    /// `None`: the parameter cannot change while running.
    set: Option<Setter>,
    file: Option<FileKey>,
}

impl Param {
    fn answers_to(&self, name: &[u8]) -> bool {
        self.names()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
    }

    fn names(&self) -> impl Iterator<Item = &'static str> + use<> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }
}

const fn fixed(name: &'static str, get: fn(&Server) -> String) -> Param {
    Param {
        name,
        aliases: &[],
        get,
        set: None,
        file: None,
    }
}

const fn mutable(name: &'static str, get: fn(&Server) -> String, set: Setter) -> Param {
    Param {
        name,
        aliases: &[],
        get,
        set: Some(set),
        file: None,
    }
}

impl Param {
    /// Also a key of the TOML file, with the value CONFIG GET shows.
    const fn in_file(self, key: &'static str, default: fn(&Config) -> String) -> Param {
        self.in_file_as(key, None, default)
    }

    /// Also a key of the TOML file, written as `value` gives it.
    const fn in_file_as(
        mut self,
        key: &'static str,
        value: Option<fn(&Server) -> String>,
        default: fn(&Config) -> String,
    ) -> Param {
        self.file = Some(FileKey {
            key,
            value,
            default,
        });
        self
    }
}

const MAXMEMORY_POLICIES: &[&str] = &[
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "noeviction",
];
const APPENDFSYNC: &[&str] = &["everysec", "always", "no"];
const LOGLEVELS: &[&str] = &["debug", "verbose", "notice", "warning"];

/// Redis's bounds for `hz`: values outside are clamped, not refused.
const HZ_MIN: i64 = 1;
const HZ_MAX: i64 = 500;

/// The parameters, by name.
static PARAMS: &[Param] = &[
    mutable(
        "appendfsync",
        |s| s.runtime.appendfsync.lock().clone(),
        |_, v| {
            let v = one_of(v, APPENDFSYNC)?;
            Ok(Box::new(move |s| {
                *s.runtime.appendfsync.lock() = v.into();
                if let (Some(wal), Some(policy)) =
                    (s.persist.wal(), dse_persist::FsyncPolicy::parse(v))
                {
                    wal.set_policy(policy);
                }
            }))
        },
    ),
    // The log is opened (and replayed) at start; turning it on or off is a restart.
    fixed("appendonly", |s| yes_no(s.persist.wal().is_some())),
    fixed("bind", |s| s.config.bind.join(" ")),
    mutable(
        "client-output-buffer-limit",
        output_limits,
        set_output_limits,
    )
    .in_file_as(
        "client-output-buffer-limit",
        // The file holds the threshold itself: "no limit" is the largest size.
        Some(|s| match normal_output_limit(s) {
            0 => i64::MAX.to_string(),
            n => n.to_string(),
        }),
        |c| c.client_output_buffer_limit.to_string(),
    ),
    mutable(
        "client-query-buffer-limit",
        |s| {
            let before_start = s.config.client_query_buffer_limit as usize;
            net_value(s, |n| &n.max_query_buffer, before_start)
        },
        |_, v| {
            let n = memory_in(v, 1 << 20, i64::MAX as u64)?;
            Ok(Box::new(move |s| {
                if let Some(net) = s.net() {
                    net.max_query_buffer.store(n as usize, Ordering::Relaxed);
                }
            }))
        },
    )
    .in_file("client-query-buffer-limit", |c| {
        c.client_query_buffer_limit.to_string()
    }),
    fixed("databases", |_| "1".into()),
    fixed("dir", |s| {
        let d = &s.config.data;
        std::fs::canonicalize(d)
            .or_else(|_| std::path::absolute(d))
            .unwrap_or_else(|_| d.clone())
            .display()
            .to_string()
    }),
    mutable(
        "hz",
        |s| s.runtime.hz.load(Ordering::Relaxed).to_string(),
        |_, v| {
            let hz = int_in(v, 0, i32::MAX as i64)?.clamp(HZ_MIN, HZ_MAX) as u64;
            Ok(Box::new(move |s| s.runtime.hz.store(hz, Ordering::Relaxed)))
        },
    ),
    fixed("io-threads", |s| s.config.threads.to_string()),
    mutable(
        "lazyfree-lazy-user-flush",
        |s| yes_no(s.runtime.lazyfree_lazy_user_flush.load(Ordering::Relaxed)),
        |_, v| {
            let on = parse_yes_no(v)?;
            Ok(Box::new(move |s| {
                s.runtime
                    .lazyfree_lazy_user_flush
                    .store(on, Ordering::Relaxed)
            }))
        },
    ),
    mutable(
        "loglevel",
        |s| s.runtime.loglevel.lock().clone(),
        |_, v| {
            let level = one_of(v, LOGLEVELS)?;
            Ok(Box::new(move |s| *s.runtime.loglevel.lock() = level.into()))
        },
    )
    .in_file_as(
        "loglevel",
        Some(|s| toml_string(&s.runtime.loglevel.lock())),
        |c| toml_string(&c.loglevel),
    ),
    mutable(
        "maxclients",
        |s| net_value(s, |n| &n.maxclients, s.config.maxclients),
        set_maxclients,
    )
    .in_file("maxclients", |c| c.maxclients.to_string()),
    mutable(
        "maxmemory",
        |s| s.runtime.maxmemory.load(Ordering::Relaxed).to_string(),
        |_, v| {
            let n = memory_in(v, 0, u64::MAX)?;
            Ok(Box::new(move |s| {
                s.runtime.maxmemory.store(n, Ordering::Relaxed)
            }))
        },
    ),
    mutable(
        "maxmemory-policy",
        |s| s.runtime.maxmemory_policy.lock().clone(),
        |_, v| {
            let policy = one_of(v, MAXMEMORY_POLICIES)?;
            Ok(Box::new(move |s| {
                *s.runtime.maxmemory_policy.lock() = policy.into()
            }))
        },
    ),
    fixed("port", |s| {
        s.port.get().copied().unwrap_or(s.config.port).to_string()
    }),
    mutable(
        "proto-max-bulk-len",
        |s| {
            s.runtime
                .proto_max_bulk_len
                .load(Ordering::Relaxed)
                .to_string()
        },
        |_, v| {
            let n = memory_in(v, 1 << 20, i64::MAX as u64)?;
            Ok(Box::new(move |s| {
                s.runtime.proto_max_bulk_len.store(n, Ordering::Relaxed);
                // Sessions pick the new limit up when they see a new generation.
                s.runtime.limits_gen.fetch_add(1, Ordering::Relaxed);
            }))
        },
    )
    .in_file("proto-max-bulk-len", |c| c.proto_max_bulk_len.to_string()),
    mutable("save", save_points, set_save_points),
    mutable(
        "slowlog-log-slower-than",
        |s| s.slowlog.slower_than.load(Ordering::Relaxed).to_string(),
        |_, v| {
            let micros = int_in(v, -1, i64::MAX)?;
            Ok(Box::new(move |s| {
                s.slowlog.slower_than.store(micros, Ordering::Relaxed)
            }))
        },
    ),
    mutable(
        "slowlog-max-len",
        |s| s.slowlog.max_len.load(Ordering::Relaxed).to_string(),
        |_, v| {
            let n = int_in(v, 0, i64::MAX)? as u64;
            Ok(Box::new(move |s| {
                s.slowlog.max_len.store(n, Ordering::Relaxed)
            }))
        },
    ),
    fixed("tcp-backlog", |_| "511".into()),
    mutable(
        "timeout",
        |s| s.runtime.timeout.load(Ordering::Relaxed).to_string(),
        |_, v| {
            let secs = int_in(v, 0, i32::MAX as i64)? as u64;
            Ok(Box::new(move |s| {
                s.runtime.timeout.store(secs, Ordering::Relaxed)
            }))
        },
    )
    .in_file("timeout", |c| c.timeout.to_string()),
];

fn lookup(name: &[u8]) -> Option<&'static Param> {
    PARAMS.iter().find(|p| p.answers_to(name))
}

fn net_value(
    srv: &Server,
    field: fn(&dse_net::NetShared) -> &std::sync::atomic::AtomicUsize,
    before_start: usize,
) -> String {
    srv.net()
        .map_or(before_start, |n| field(n).load(Ordering::Relaxed))
        .to_string()
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

fn parse_yes_no(v: &str) -> Result<bool, Cow<'static, str>> {
    if v.eq_ignore_ascii_case("yes") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("no") {
        Ok(false)
    } else {
        Err("argument must be 'yes' or 'no'".into())
    }
}

/// The canonical spelling of `v` among `names` (any case).
fn one_of(v: &str, names: &[&'static str]) -> Result<&'static str, Cow<'static, str>> {
    names
        .iter()
        .find(|n| v.eq_ignore_ascii_case(n))
        .copied()
        .ok_or_else(|| {
            format!(
                "argument(s) must be one of the following: {}",
                names.join(", ")
            )
            .into()
        })
}

fn out_of_range(min: impl std::fmt::Display, max: impl std::fmt::Display) -> Cow<'static, str> {
    format!("argument must be between {min} and {max} inclusive").into()
}

/// An integer parameter: Redis's strict integer syntax, then the bounds.
fn int_in(v: &str, min: i64, max: i64) -> Result<i64, Cow<'static, str>> {
    let n = dse_engine::parse_canonical_i64(v.as_bytes())
        .ok_or("argument couldn't be parsed into an integer")?;
    if n < min || n > max {
        return Err(out_of_range(min, max));
    }
    Ok(n)
}

/// A size in bytes as Redis's `memtoull` reads it: digits with an optional unit, the
/// empty string being 0.
fn memory(v: &str) -> Option<u64> {
    if v.is_empty() {
        return Some(0);
    }
    if v.trim() != v {
        return None;
    }
    parse_memory(v)
}

fn memory_in(v: &str, min: u64, max: u64) -> Result<u64, Cow<'static, str>> {
    let n = memory(v).ok_or("argument must be a memory value")?;
    if n < min || n > max {
        return Err(out_of_range(min, max));
    }
    Ok(n)
}

/// An integer as C's `strtoll` reads a whole argument: leading spaces and a sign are
/// allowed, nothing may follow, and no digits at all reads as 0.
fn whole_strtoll(v: &str) -> Option<i64> {
    let t = v.trim_start();
    if t.is_empty() {
        return Some(0);
    }
    t.parse().ok()
}

/// The arguments of a multi-argument parameter: split on single spaces, as Redis does.
fn split_args(v: &str) -> Vec<&str> {
    if v.is_empty() {
        Vec::new()
    } else {
        v.split(' ').collect()
    }
}

fn set_maxclients(srv: &Server, v: &str) -> Result<Apply, Cow<'static, str>> {
    let n = int_in(v, 1, u32::MAX as i64)? as usize;
    let current = srv.net().map_or(srv.config.maxclients, |net| {
        net.maxclients.load(Ordering::Relaxed)
    });
    if n > current {
        // Raising the descriptor limit early is harmless should the SET fail later.
        let wanted = n + crate::RESERVED_FDS;
        let got = dse_net::raise_open_files_limit(wanted as u64) as usize;
        if got < wanted {
            return Err(format!(
                "The operating system is not able to handle the specified number of \
                 clients, try with {}",
                got.saturating_sub(crate::RESERVED_FDS)
            )
            .into());
        }
    }
    Ok(Box::new(move |s| {
        if let Some(net) = s.net() {
            net.maxclients.store(n, Ordering::Relaxed);
        }
    }))
}

/// Output-buffer limit classes, in Redis's order.
const OUTPUT_CLASSES: [&str; 3] = ["normal", "slave", "pubsub"];

/// The normal class's hard limit, 0 meaning none.
fn normal_output_limit(srv: &Server) -> u64 {
    let limit = srv
        .net()
        .map_or(srv.config.client_output_buffer_limit, |n| {
            n.max_pending_output.load(Ordering::Relaxed) as u64
        });
    if limit >= i64::MAX as u64 { 0 } else { limit }
}

/// `normal <hard> <soft> <seconds> slave ... pubsub ...`. The normal class's hard limit
/// is the unsent output past which dse stops reading a client until it catches up.
fn output_limits(srv: &Server) -> String {
    let mut limits = *srv.runtime.client_output_limits.lock();
    limits[0].0 = normal_output_limit(srv);
    OUTPUT_CLASSES
        .iter()
        .zip(limits)
        .map(|(class, (hard, soft, secs))| format!("{class} {hard} {soft} {secs}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn set_output_limits(_srv: &Server, v: &str) -> Result<Apply, Cow<'static, str>> {
    let a = split_args(v);
    if !a.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    let mut changes = Vec::new();
    for c in a.chunks(4) {
        let class = match c[0].to_ascii_lowercase().as_str() {
            "normal" => 0,
            "slave" | "replica" => 1,
            "pubsub" => 2,
            _ => {
                return Err("Invalid client class specified in buffer limit configuration.".into());
            }
        };
        match (memory(c[1]), memory(c[2]), whole_strtoll(c[3])) {
            (Some(hard), Some(soft), Some(secs)) if secs >= 0 => {
                changes.push((class, (hard, soft, secs as u64)));
            }
            _ => {
                return Err(
                    "Error in hard, soft or soft_seconds setting in buffer limit \
                            configuration."
                        .into(),
                );
            }
        }
    }
    Ok(Box::new(move |s| {
        let mut limits = s.runtime.client_output_limits.lock();
        for (class, limit) in changes {
            limits[class] = limit;
            if class == 0
                && let Some(net) = s.net()
            {
                let pending = if limit.0 == 0 {
                    usize::MAX
                } else {
                    limit.0 as usize
                };
                net.max_pending_output.store(pending, Ordering::Relaxed);
            }
        }
    }))
}

fn save_points(srv: &Server) -> String {
    srv.runtime
        .save_points
        .lock()
        .iter()
        .map(|(secs, changes)| format!("{secs} {changes}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `save "<seconds> <changes> ..."`, or `""` for none. Stored for the persistence layer.
fn set_save_points(_srv: &Server, v: &str) -> Result<Apply, Cow<'static, str>> {
    let invalid = || Cow::Borrowed("Invalid save parameters");
    let a = split_args(v);
    if !a.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let mut points = Vec::with_capacity(a.len() / 2);
    for pair in a.chunks(2) {
        match (whole_strtoll(pair[0]), whole_strtoll(pair[1])) {
            (Some(secs), Some(changes)) if secs >= 1 && changes >= 0 => {
                points.push((secs as u64, changes as u64));
            }
            _ => return Err(invalid()),
        }
    }
    // A snapshot is taken every `interval` seconds when anything changed: the shortest
    // save point's period, with any change count treated as "at least one".
    let interval = points.iter().map(|&(secs, _)| secs).min().unwrap_or(0);
    Ok(Box::new(move |s| {
        *s.runtime.save_points.lock() = points;
        s.persist.set_snapshot_interval(interval);
    }))
}

/// `CONFIG GET parameter [parameter ...]` → a map of the parameters named or matching
/// the glob patterns to their values. Exact names come back as written.
fn config_get(ctx: &mut Ctx, a: Args) -> CmdResult {
    let mut found: Vec<(Cow<'_, str>, &Param)> = Vec::new();
    for pattern in a.iter().skip(2) {
        let is_glob = pattern.iter().any(|c| matches!(c, b'*' | b'?' | b'['));
        if !is_glob {
            let name = String::from_utf8_lossy(pattern);
            if let Some(p) = lookup(pattern)
                && !found.iter().any(|(n, _)| *n == name)
            {
                found.push((name, p));
            }
            continue;
        }
        for p in PARAMS {
            for name in p.names() {
                if dse_engine::glob_match(pattern, name.as_bytes(), true)
                    && !found.iter().any(|(n, _)| n == name)
                {
                    found.push((name.into(), p));
                }
            }
        }
    }
    ctx.out.map(found.len());
    for (name, p) in found {
        ctx.out.bulk_str(&name);
        ctx.out.bulk_str(&(p.get)(ctx.srv));
    }
    Ok(())
}

/// `CONFIG SET parameter value [parameter value ...]` → OK once every value is valid
/// and applied; on any error nothing changes.
fn config_set(ctx: &mut Ctx, a: Args) -> CmdResult {
    if !a.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let srv = ctx.srv;
    let _one_at_a_time = srv.runtime.config_lock.lock();
    let pairs: Vec<(&[u8], &[u8])> = (2..a.len())
        .step_by(2)
        .map(|i| (&a[i], &a[i + 1]))
        .collect();

    // Names first: the first unknown, immutable or repeated one fails the command.
    let mut chosen: Vec<(&Param, &[u8])> = Vec::with_capacity(pairs.len());
    for &(name, value) in &pairs {
        let Some(p) = lookup(name) else {
            return Err(CmdError::Owned(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{}'",
                args::text(name)
            )));
        };
        let problem = if p.set.is_none() {
            Some("can't set immutable config")
        } else if chosen.iter().any(|(q, _)| std::ptr::eq(*q, p)) {
            Some("duplicate parameter")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(CmdError::Owned(format!(
                "ERR CONFIG SET failed (possibly related to argument '{}') - {problem}",
                args::text(name)
            )));
        }
        chosen.push((p, value));
    }

    // Then every value, before anything is applied.
    let mut applies = Vec::with_capacity(chosen.len());
    for (p, value) in chosen {
        let Some(set) = p.set else { continue };
        match set(srv, &String::from_utf8_lossy(value)) {
            Ok(apply) => applies.push(apply),
            Err(why) => {
                return Err(CmdError::Owned(format!(
                    "ERR CONFIG SET failed (possibly related to argument '{}') - {why}",
                    p.name
                )));
            }
        }
    }
    for apply in applies {
        apply(srv);
    }
    ctx.out.ok();
    Ok(())
}

/// `CONFIG RESETSTAT` → OK; INFO's counters start again from zero.
fn config_resetstat(ctx: &mut Ctx, _a: Args) -> CmdResult {
    info::reset_stats(ctx.srv);
    ctx.out.ok();
    Ok(())
}

/// `CONFIG REWRITE` → OK once the file given with `--config` holds the values in force.
fn config_rewrite(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let Some(path) = &ctx.srv.config_file else {
        return Err(CmdError::Static(
            "ERR The server is running without a config file",
        ));
    };
    let _one_at_a_time = ctx.srv.runtime.config_lock.lock();
    rewrite_file(ctx.srv, path)
        .map_err(|why| CmdError::Owned(format!("ERR Rewriting config file: {why}")))?;
    ctx.out.ok();
    Ok(())
}

/// `CONFIG HELP` → the subcommands, one line each.
fn config_help(ctx: &mut Ctx, _a: Args) -> CmdResult {
    reply_help(
        ctx.out,
        "CONFIG",
        &[
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "REWRITE",
            "    Rewrite the configuration file.",
        ],
    );
    Ok(())
}

/// Marks the lines CONFIG REWRITE added, as Redis does.
const REWRITE_SIGNATURE: &str = "# Generated by CONFIG REWRITE";

/// Updates the file's lines for the parameters it can hold, keeping everything else
/// (comments, other keys) as it was, and replaces the file atomically.
fn rewrite_file(srv: &Server, path: &Path) -> Result<(), String> {
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(os_error(&e)),
    };
    let defaults = Config::load(["dse-server"]).ok();
    let entries: Vec<(&str, String, bool)> = PARAMS
        .iter()
        .filter_map(|p| Some((p, p.file.as_ref()?)))
        .map(|(p, f)| {
            let value = f.value.unwrap_or(p.get)(srv);
            let differs = defaults.as_ref().is_none_or(|d| (f.default)(d) != value);
            (f.key, value, differs)
        })
        .collect();
    let text = rewrite_text(&old, &entries);
    // Never leave a file the server could not start from.
    toml::from_str::<Options>(&text).map_err(|e| format!("invalid result: {e}"))?;
    write_atomically(path, text.as_bytes()).map_err(|e| os_error(&e))
}

/// `old` with each `key = value` line of `entries` (key, TOML value, add if missing)
/// rewritten in place, repeated keys dropped, and missing keys appended.
fn rewrite_text(old: &str, entries: &[(&str, String, bool)]) -> String {
    let mut written = vec![false; entries.len()];
    let mut lines: Vec<String> = Vec::new();
    for line in old.lines() {
        let entry = toml_key(line).and_then(|k| entries.iter().position(|e| e.0 == k));
        match entry {
            Some(i) if written[i] => {}
            Some(i) => {
                lines.push(format!("{} = {}", entries[i].0, entries[i].1));
                written[i] = true;
            }
            None => lines.push(line.to_string()),
        }
    }
    let mut signed = lines.iter().any(|l| l == REWRITE_SIGNATURE);
    for (i, (key, value, add)) in entries.iter().enumerate() {
        if written[i] || !add {
            continue;
        }
        if !signed {
            lines.push(REWRITE_SIGNATURE.into());
            signed = true;
        }
        lines.push(format!("{key} = {value}"));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The key a top-level `key = value` line sets (bare or quoted), if it is one.
fn toml_key(line: &str) -> Option<&str> {
    let line = line.trim_start();
    if line.starts_with('#') || line.starts_with('[') {
        return None;
    }
    let key = line.split_once('=')?.0.trim();
    let key = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    (!key.is_empty()).then_some(key)
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a sibling temporary file, syncs it and renames it over `path`, so a crash
/// leaves either the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let tmp: PathBuf = path.with_file_name(format!(".{name}.rewrite-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The system's text for an I/O error, without Rust's "(os error N)" suffix, as
/// Redis's `strerror`.
fn os_error(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" (os error") {
        Some((msg, _)) => msg.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut all: Vec<&str> = PARAMS.iter().flat_map(|p| p.names()).collect();
        assert!(all.iter().all(|n| n.to_ascii_lowercase() == *n));
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
    }

    #[test]
    fn value_syntax() {
        assert_eq!(memory(""), Some(0));
        assert_eq!(memory("100MB"), Some(100 << 20));
        assert_eq!(memory(" 1"), None);
        assert_eq!(memory("-1"), None);
        assert_eq!(int_in("5", 0, 10), Ok(5));
        assert_eq!(
            int_in("11", 0, 10).unwrap_err(),
            "argument must be between 0 and 10 inclusive"
        );
        assert_eq!(
            int_in("1.5", 0, 10).unwrap_err(),
            "argument couldn't be parsed into an integer"
        );
        assert_eq!(whole_strtoll(" +3"), Some(3));
        assert_eq!(whole_strtoll(""), Some(0));
        assert_eq!(whole_strtoll("3x"), None);
        assert_eq!(one_of("ALLKEYS-LRU", MAXMEMORY_POLICIES), Ok("allkeys-lru"));
    }

    #[test]
    fn rewrite_keeps_other_lines() {
        let old = "# my settings\nport = 7000\nmaxclients = 5 # old\nmaxclients = 6\n";
        let entries = [
            ("maxclients", "50".to_string(), true),
            ("timeout", "0".to_string(), false),
            ("loglevel", toml_string("debug"), true),
        ];
        assert_eq!(
            rewrite_text(old, &entries),
            "# my settings\nport = 7000\nmaxclients = 50\n# Generated by CONFIG REWRITE\n\
             loglevel = \"debug\"\n"
        );
        assert_eq!(toml_key("  \"timeout\" = 3"), Some("timeout"));
        assert_eq!(toml_key("# timeout = 3"), None);
        assert_eq!(toml_string("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}

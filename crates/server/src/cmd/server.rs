//! Server commands: INFO, DBSIZE, FLUSHDB, FLUSHALL, SWAPDB, TIME, LASTSAVE, SHUTDOWN,
//! DEBUG.

use std::sync::atomic::Ordering;
use std::time::Duration;

use dse_engine::Value;
use dse_proto::{Args, Reply};

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};
use crate::info;
use crate::server::{Shutdown, unix_us};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("info", -1, LOADING | STALE | SENTINEL, info).doc(
        "server",
        "1.0.0",
        "O(1)",
        "Returns information and statistics about the server.",
    ),
    cmd("dbsize", 1, READONLY | FAST, dbsize).doc(
        "server",
        "1.0.0",
        "O(1)",
        "Returns the number of keys in the database.",
    ),
    cmd("flushdb", -1, WRITE, flushdb).doc(
        "server",
        "1.0.0",
        "O(N) where N is the number of keys in the selected database",
        "Removes all keys from the current database.",
    ),
    cmd("flushall", -1, WRITE, flushall).doc(
        "server",
        "1.0.0",
        "O(N) where N is the total number of keys in all databases",
        "Removes all keys from all databases.",
    ),
    cmd("swapdb", 3, WRITE | FAST, swapdb).doc(
        "server",
        "4.0.0",
        "O(N) where N is the count of clients watching or blocking on keys from both databases.",
        "Swaps two Redis databases.",
    ),
    cmd("time", 1, LOADING | STALE | FAST, time).doc(
        "server",
        "2.6.0",
        "O(1)",
        "Returns the server time.",
    ),
    cmd("lastsave", 1, LOADING | STALE | FAST, lastsave).doc(
        "server",
        "1.0.0",
        "O(1)",
        "Returns the Unix timestamp of the last successful save to disk.",
    ),
    cmd(
        "shutdown",
        -1,
        ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI | ALLOW_BUSY | SENTINEL,
        shutdown,
    )
    .doc(
        "server",
        "1.0.0",
        "O(N) when saving, where N is the total number of keys in all databases when saving data, otherwise O(1)",
        "Synchronously saves the database(s) to disk and shuts down the Redis server.",
    ),
    cmd("debug", -2, ADMIN | NOSCRIPT | LOADING | STALE, debug).doc(
        "server",
        "1.0.0",
        "Depends on subcommand.",
        "A container for debugging commands.",
    ),
];

/// Writes a HELP reply as Redis's `addReplyHelp`: a title line, the given lines, and
/// the HELP entry, each a status reply.
pub fn reply_help(out: &mut Reply<'_>, command: &str, lines: &[&str]) {
    out.array(lines.len() + 3);
    out.simple(&format!(
        "{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    ));
    for line in lines {
        out.simple(line);
    }
    out.simple("HELP");
    out.simple("    Prints this help.");
}

/// `INFO [section [section ...]]` → the report as a bulk string (verbatim in RESP3).
fn info(ctx: &mut Ctx, a: Args) -> CmdResult {
    let sel = info::Selection::from_args(a.iter().skip(1));
    let text = info::report(ctx.srv, sel);
    ctx.out.verbatim(text.as_bytes());
    Ok(())
}

/// `DBSIZE` → the number of keys (including expired keys not yet removed); on a cluster
/// node, of the slots it is primary for.
fn dbsize(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let store = &ctx.srv.store;
    // A cluster node counts the keys of the slots it is primary for, not its copies.
    let n = match &ctx.srv.cluster {
        Some(c) => c.primary_key_count(store),
        None => store.len() as u64,
    };
    ctx.out.int(n as i64);
    Ok(())
}

/// Whether a flush frees the old contents on another thread: `ASYNC`, `SYNC`, or
/// without a mode, `lazyfree-lazy-user-flush`.
fn flush_mode(ctx: &Ctx, a: &Args) -> Result<bool, CmdError> {
    match a.len() {
        1 => Ok(ctx
            .srv
            .runtime
            .lazyfree_lazy_user_flush
            .load(Ordering::Relaxed)),
        2 if args::is(&a[1], "async") => Ok(true),
        2 if args::is(&a[1], "sync") => Ok(false),
        _ => Err(CmdError::Syntax),
    }
}

/// Empties the store; with `lazy`, the old contents are dropped on a thread of their
/// own so that a large keyspace does not stall this loop. A cluster node empties the
/// slots it is primary for (replicated like any write); its replica copies of other
/// nodes' slots stay.
fn flush(ctx: &mut Ctx, lazy: bool) -> CmdResult {
    if let Some(cluster) = &ctx.srv.cluster {
        let slots = cluster.primary_slots();
        ctx.srv
            .store
            .drop_slots(slots.view().as_bytes(), dse_cluster::key_slot)?;
        ctx.out.ok();
        return Ok(());
    }
    let old = ctx.srv.store.flush_all()?;
    if lazy {
        // Should the thread not start, the closure, and the contents with it, are
        // dropped right here instead.
        let _ = std::thread::Builder::new()
            .name("dse-lazyfree".into())
            .spawn(move || drop(old));
    } else {
        drop(old);
    }
    ctx.out.ok();
    Ok(())
}

/// `FLUSHDB [ASYNC|SYNC]` → OK. Database 0 is the only one, so this is FLUSHALL.
fn flushdb(ctx: &mut Ctx, a: Args) -> CmdResult {
    let lazy = flush_mode(ctx, &a)?;
    flush(ctx, lazy)
}

/// `FLUSHALL [ASYNC|SYNC]` → OK.
fn flushall(ctx: &mut Ctx, a: Args) -> CmdResult {
    let lazy = flush_mode(ctx, &a)?;
    flush(ctx, lazy)
}

/// `SWAPDB index1 index2` → OK for `0 0`; with `databases 1` any other index is out of
/// range, as Redis answers.
fn swapdb(ctx: &mut Ctx, a: Args) -> CmdResult {
    if ctx.srv.cluster.is_some() {
        return Err(CmdError::Static(
            "ERR SWAPDB is not allowed in cluster mode",
        ));
    }
    let db_index = |arg: &[u8], which: &'static str| {
        args::int(arg)
            .ok()
            .filter(|n| i32::try_from(*n).is_ok())
            .ok_or(CmdError::Static(which))
    };
    let first = db_index(&a[1], "ERR invalid first DB index")?;
    let second = db_index(&a[2], "ERR invalid second DB index")?;
    if first != 0 || second != 0 {
        return Err(CmdError::Static("ERR DB index is out of range"));
    }
    ctx.out.ok();
    Ok(())
}

/// `TIME` → [unix seconds, microseconds], both as bulk strings.
fn time(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let us = unix_us();
    ctx.out.array(2);
    ctx.out.bulk_int((us / 1_000_000) as i64);
    ctx.out.bulk_int((us % 1_000_000) as i64);
    Ok(())
}

/// `LASTSAVE` → the Unix time of the last save (start-up until persistence saves).
fn lastsave(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.out.int(ctx.srv.persist.status().last_save_unix as i64);
    Ok(())
}

/// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]`: asks the server to stop. No reply on
/// success: the connection closes as the server exits (code 0). NOW and FORCE are
/// accepted; with no replicas to wait for and no save that can fail, they change
/// nothing. A shutdown is never left pending, so ABORT always finds none.
fn shutdown(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (mut save, mut nosave, mut now, mut force, mut abort) = (false, false, false, false, false);
    for opt in a.iter().skip(1) {
        if args::is(opt, "nosave") {
            nosave = true;
        } else if args::is(opt, "save") {
            save = true;
        } else if args::is(opt, "now") {
            now = true;
        } else if args::is(opt, "force") {
            force = true;
        } else if args::is(opt, "abort") {
            abort = true;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if (abort && (save || nosave || now || force)) || (save && nosave) {
        return Err(CmdError::Syntax);
    }
    if abort {
        return Err(CmdError::Static("ERR No shutdown in progress."));
    }
    let save = match (save, nosave) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    ctx.srv.request_shutdown(Shutdown::Command { save });
    // Whatever the client pipelined after SHUTDOWN is not run.
    ctx.sess.close_after_reply = true;
    Ok(())
}

const DEBUG_HELP: &[&str] = &[
    "OBJECT <key>",
    "    Show low level info about `key` and associated value.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "REPL-DROP",
    "    Cluster mode: close the replication streams this node receives; they reopen",
    "    and resume from the primaries' logs.",
];

/// `DEBUG OBJECT key | SLEEP seconds | SET-ACTIVE-EXPIRE 0|1 | REPL-DROP | HELP`.
///
/// - OBJECT → a status line in Redis's format; `serializedlength` is the RDB size
///   without compression.
/// - SLEEP → OK after the time passes (fractions allowed, 0 returns at once). It stops
///   this event loop, and the clients it serves, as DEBUG SLEEP stops Redis.
/// - SET-ACTIVE-EXPIRE → OK; 0 stops the background expiry cycle.
/// - REPL-DROP → OK (cluster mode: the replication streams this node receives break, as
///   a network fault would break them, and resume from the log).
fn debug(ctx: &mut Ctx, a: Args) -> CmdResult {
    let sub = &a[1];
    if args::is(sub, "help") && a.len() == 2 {
        reply_help(ctx.out, "DEBUG", DEBUG_HELP);
    } else if args::is(sub, "object") && a.len() == 3 {
        debug_object(ctx, &a[2])?;
    } else if args::is(sub, "sleep") && a.len() == 3 {
        let secs = leading_float(&a[2]);
        if secs > 0.0 {
            std::thread::sleep(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
        }
        ctx.out.ok();
    } else if args::is(sub, "repl-drop") && a.len() == 2 {
        if let Some(r) = &ctx.srv.replication {
            r.drop_streams();
        }
        ctx.out.ok();
    } else if args::is(sub, "set-active-expire") && a.len() == 3 {
        let on = leading_int(&a[2]) != 0;
        ctx.srv.runtime.active_expire.store(on, Ordering::Relaxed);
        ctx.out.ok();
    } else {
        return Err(CmdError::Owned(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
            args::text(sub).chars().take(128).collect::<String>()
        )));
    }
    Ok(())
}

/// Redis shares integer objects below this value; DEBUG OBJECT shows them with the
/// shared reference count.
const SHARED_INTEGERS: i64 = 10_000;
const SHARED_REFCOUNT: i32 = i32::MAX;

fn debug_object(ctx: &mut Ctx, key: &[u8]) -> CmdResult {
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let Some(e) = shard.get(key, h, ctx.now) else {
        return Err(CmdError::NoSuchKey);
    };
    let value = e.value();
    let refcount = match value {
        Value::Int(n) if (0..SHARED_INTEGERS).contains(n) => SHARED_REFCOUNT,
        _ => 1,
    };
    let idle = e.idle_secs(ctx.now);
    let lru = (ctx.now / 1000).wrapping_sub(idle) & info::LRU_CLOCK_MAX;
    let line = format!(
        "Value at:{:p} refcount:{refcount} encoding:{} serializedlength:{} lru:{lru} \
         lru_seconds_idle:{idle}",
        value as *const Value,
        value.encoding(),
        serialized_len(value),
    );
    drop(shard);
    ctx.out.simple(&line);
    Ok(())
}

/// Bytes of an RDB length prefix.
fn rdb_len_size(n: usize) -> usize {
    match n {
        0..64 => 1,
        64..16_384 => 2,
        _ if n as u64 <= u32::MAX as u64 => 5,
        _ => 9,
    }
}

/// RDB size of a string: integers that fit 32 bits are stored as integers.
fn rdb_string_size(s: &[u8]) -> usize {
    match dse_engine::parse_canonical_i64(s) {
        Some(n) if i8::try_from(n).is_ok() => 2,
        Some(n) if i16::try_from(n).is_ok() => 3,
        Some(n) if i32::try_from(n).is_ok() => 5,
        _ => rdb_len_size(s.len()) + s.len(),
    }
}

/// The RDB payload size of a value, uncompressed (Redis compresses strings over 20
/// bytes with LZF, so it reports less for compressible values).
fn serialized_len(v: &Value) -> usize {
    let strings = |items: &mut dyn Iterator<Item = &[u8]>, count: usize| {
        rdb_len_size(count) + items.map(rdb_string_size).sum::<usize>()
    };
    match v {
        Value::Int(_) | Value::Str(_) => v.with_str(rdb_string_size).unwrap_or(0),
        Value::List(l) => strings(&mut l.iter().map(|e| e.as_slice()), l.len()),
        Value::Set(s) => strings(&mut s.iter().map(|m| &m[..]), s.len()),
        Value::Hash(h) => strings(
            &mut h.iter().flat_map(|(k, v)| [&k[..], v.as_slice()]),
            h.len(),
        ),
        // Members as strings, scores as 8-byte doubles.
        Value::ZSet(z) => {
            strings(&mut z.scores.keys().map(|m| &m[..]), z.scores.len()) + 8 * z.scores.len()
        }
    }
}

/// The number at the start of `a`, as C's `strtod` reads it (0 when there is none).
fn leading_float(a: &[u8]) -> f64 {
    let s = String::from_utf8_lossy(a);
    let s = s.trim_start();
    let candidate = s
        .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
        .unwrap_or(s.len());
    (1..=candidate)
        .rev()
        .find_map(|n| s[..n].parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// The integer at the start of `a`, as C's `atoi` reads it (0 when there is none).
fn leading_int(a: &[u8]) -> i64 {
    let s = String::from_utf8_lossy(a);
    let s = s.trim_start();
    let digits_end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+'))))
        .map_or(s.len(), |(i, _)| i);
    s[..digits_end].parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_style_numbers() {
        assert_eq!(leading_float(b"0.25"), 0.25);
        assert_eq!(leading_float(b"1.5abc"), 1.5);
        assert_eq!(leading_float(b"abc"), 0.0);
        assert_eq!(leading_float(b" 2"), 2.0);
        assert_eq!(leading_float(b"-1"), -1.0);
        assert_eq!(leading_float(b"1e2x"), 100.0);
        assert_eq!(leading_int(b"1"), 1);
        assert_eq!(leading_int(b"x"), 0);
        assert_eq!(leading_int(b"12abc"), 12);
        assert_eq!(leading_int(b"-3"), -3);
    }

    #[test]
    fn rdb_sizes() {
        assert_eq!(serialized_len(&Value::Int(12)), 2);
        assert_eq!(serialized_len(&Value::string(b"bar")), 4);
        assert_eq!(serialized_len(&Value::Int(100_000)), 5);
        assert_eq!(serialized_len(&Value::string(&[b'x'; 100])), 102);
    }
}

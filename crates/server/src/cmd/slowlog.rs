//! SLOWLOG: the commands that ran longer than `slowlog-log-slower-than` microseconds.
//!
//! The request loop already times every command (INFO commandstats); after each one it
//! compares the duration with the threshold, one relaxed load, and only a command over
//! it takes the log's lock. Entries keep what Redis keeps: an id that never restarts, the
//! Unix time, the duration, the arguments (at most 32, each cut at 128 bytes, passwords
//! redacted), the client's address and name.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use dse_proto::Args;
use parking_lot::Mutex;

use crate::args;
use crate::cmd::introspection::reply_help;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[cmd("slowlog", -2, 0, container)
    .doc(
        "server",
        "2.2.12",
        "Depends on subcommand.",
        "A container for slow log commands.",
    )
    .subs(&[
        cmd("get", -2, ADMIN | LOADING | STALE, slowlog_get).doc(
            "server",
            "2.2.12",
            "O(N) where N is the number of entries returned",
            "Returns the slow log's entries.",
        ),
        cmd("len", 2, ADMIN | LOADING | STALE, slowlog_len).doc(
            "server",
            "2.2.12",
            "O(1)",
            "Returns the number of entries in the slow log.",
        ),
        cmd("reset", 2, ADMIN | LOADING | STALE, slowlog_reset).doc(
            "server",
            "2.2.12",
            "O(N) where N is the number of entries in the slowlog",
            "Clears all entries from the slow log.",
        ),
        cmd("help", 2, LOADING | STALE, slowlog_help).doc(
            "server",
            "6.2.0",
            "O(1)",
            "Show helpful text about the different subcommands",
        ),
    ])];

/// Arguments kept per entry; the last one kept says how many more there were.
const MAX_ARGS: usize = 32;
/// Bytes kept per argument.
const MAX_ARG_BYTES: usize = 128;

/// The slow log and its two settings.
pub struct SlowLog {
    /// `slowlog-log-slower-than`, in microseconds; negative turns the log off.
    pub slower_than: AtomicI64,
    /// `slowlog-max-len`.
    pub max_len: AtomicU64,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    next_id: u64,
    /// Newest first.
    entries: VecDeque<Entry>,
}

struct Entry {
    id: u64,
    /// Seconds since the epoch.
    time: u64,
    micros: u64,
    args: Vec<Vec<u8>>,
    addr: String,
    name: Vec<u8>,
}

impl Default for SlowLog {
    /// Redis's defaults: 10 ms, 128 entries.
    fn default() -> Self {
        SlowLog {
            slower_than: AtomicI64::new(10_000),
            max_len: AtomicU64::new(128),
            log: Mutex::new(Log::default()),
        }
    }
}

impl SlowLog {
    /// A command just ran for `micros`: logs it if that is slow.
    #[inline]
    pub fn observe(&self, ctx: &Ctx, spec: &CommandSpec, args: Args, micros: u64) {
        let threshold = self.slower_than.load(Ordering::Relaxed);
        if threshold >= 0 && micros >= threshold as u64 {
            self.record(ctx, spec, args, micros);
        }
    }

    #[cold]
    #[inline(never)]
    fn record(&self, ctx: &Ctx, spec: &CommandSpec, args: Args, micros: u64) {
        let max_len = self.max_len.load(Ordering::Relaxed);
        if max_len == 0 || spec.has(SKIP_SLOWLOG) {
            return;
        }
        let entry = Entry {
            id: 0,
            time: crate::server::unix_ms() / 1000,
            micros,
            args: logged_args(args),
            addr: ctx.sess.meta.addr.clone(),
            name: ctx.sess.meta.names.lock().name.clone(),
        };
        let mut log = self.log.lock();
        let id = log.next_id;
        log.next_id += 1;
        log.entries.push_front(Entry { id, ..entry });
        let keep = usize::try_from(max_len).unwrap_or(usize::MAX);
        log.entries.truncate(keep);
    }

    fn len(&self) -> usize {
        self.log.lock().entries.len()
    }
}

/// The arguments as an entry keeps them: at most [`MAX_ARGS`] (the last saying how many
/// were left out), each cut at [`MAX_ARG_BYTES`], credentials redacted as Redis does.
fn logged_args(args: Args) -> Vec<Vec<u8>> {
    let argc = args.len();
    let kept = argc.min(MAX_ARGS);
    let redacted = redacted_positions(args);
    let mut out = Vec::with_capacity(kept);
    for (j, a) in args.iter().take(kept).enumerate() {
        if kept != argc && j == kept - 1 {
            out.push(format!("... ({} more arguments)", argc - kept + 1).into_bytes());
        } else if redacted.contains(&j) {
            out.push(b"(redacted)".to_vec());
        } else if a.len() > MAX_ARG_BYTES {
            let mut s = a[..MAX_ARG_BYTES].to_vec();
            s.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_ARG_BYTES).as_bytes());
            out.push(s);
        } else {
            out.push(a.to_vec());
        }
    }
    out
}

/// Positions of arguments holding credentials: every argument of AUTH, the user and
/// password after HELLO's AUTH.
fn redacted_positions(args: Args) -> std::ops::Range<usize> {
    let name = &args[0];
    if args::is(name, "auth") {
        return 1..args.len();
    }
    if args::is(name, "hello") {
        let mut i = 2;
        while i < args.len() {
            if args::is(&args[i], "auth") {
                return i + 1..(i + 3).min(args.len());
            }
            i += 1;
        }
    }
    0..0
}

/// Redis's `addReplySubcommandSyntaxError`, for a subcommand given arguments it does not
/// take (its arity in the table allows more than it accepts).
pub(crate) fn subcommand_syntax(a: &Args) -> CmdError {
    let sub: String = String::from_utf8_lossy(&a[1]).chars().take(128).collect();
    CmdError::Owned(format!(
        "ERR unknown subcommand or wrong number of arguments for '{sub}'. Try {} HELP.",
        String::from_utf8_lossy(&a[0]).to_ascii_uppercase()
    ))
}

fn container(_ctx: &mut Ctx, _a: Args) -> CmdResult {
    Err(CmdError::Arity("slowlog".into()))
}

/// `SLOWLOG GET [count]` → the newest `count` entries (10 by default, -1 for all), each
/// `[id, unix time, microseconds, [arguments], client address, client name]`.
fn slowlog_get(ctx: &mut Ctx, a: Args) -> CmdResult {
    if a.len() > 3 {
        return Err(subcommand_syntax(&a));
    }
    let count = match a.get(2) {
        None => 10,
        Some(c) => match args::int(c) {
            Ok(-1) => usize::MAX,
            Ok(n) if n >= 0 => usize::try_from(n).unwrap_or(usize::MAX),
            _ => {
                return Err(CmdError::Static(
                    "ERR count should be greater than or equal to -1",
                ));
            }
        },
    };
    let log = ctx.srv.slowlog.log.lock();
    let n = count.min(log.entries.len());
    ctx.out.array(n);
    for e in log.entries.iter().take(n) {
        ctx.out.array(6);
        ctx.out.int(e.id as i64);
        ctx.out.int(e.time as i64);
        ctx.out.int(e.micros as i64);
        ctx.out.array(e.args.len());
        for arg in &e.args {
            ctx.out.bulk(arg);
        }
        ctx.out.bulk(e.addr.as_bytes());
        ctx.out.bulk(&e.name);
    }
    Ok(())
}

/// `SLOWLOG LEN` → the number of entries.
fn slowlog_len(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let n = ctx.srv.slowlog.len();
    ctx.out.int(n as i64);
    Ok(())
}

/// `SLOWLOG RESET` → `OK`: drops every entry (ids go on from where they were).
fn slowlog_reset(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.srv.slowlog.log.lock().entries.clear();
    ctx.out.ok();
    Ok(())
}

const HELP: &[&str] = &[
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
];

/// `SLOWLOG HELP` → the subcommands, one status line each.
fn slowlog_help(ctx: &mut Ctx, _a: Args) -> CmdResult {
    reply_help(ctx.out, "SLOWLOG", HELP);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logged(args: &[&[u8]]) -> Vec<String> {
        let mut base = Vec::new();
        let mut ranges = Vec::new();
        for a in args {
            let start = base.len();
            base.extend_from_slice(a);
            ranges.push(start..base.len());
        }
        logged_args(Args::from_parts(&base, &ranges))
            .into_iter()
            .map(|a| String::from_utf8(a).unwrap())
            .collect()
    }

    #[test]
    fn long_arguments_are_cut_as_redis_cuts_them() {
        let long = vec![b'x'; 130];
        let got = logged(&[b"SET", b"k", &long]);
        assert_eq!(got[2], format!("{}... (2 more bytes)", "x".repeat(128)));
        let exact = vec![b'y'; 128];
        assert_eq!(logged(&[b"SET", b"k", &exact])[2], "y".repeat(128));

        let many: Vec<Vec<u8>> = (0..40).map(|i| i.to_string().into_bytes()).collect();
        let refs: Vec<&[u8]> = many.iter().map(|v| v.as_slice()).collect();
        let got = logged(&refs);
        assert_eq!(got.len(), 32);
        assert_eq!(got[30], "30");
        assert_eq!(got[31], "... (9 more arguments)");
        let just: Vec<&[u8]> = refs[..32].to_vec();
        assert_eq!(logged(&just)[31], "31");
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            logged(&[b"AUTH", b"u", b"p"]),
            ["AUTH", "(redacted)", "(redacted)"]
        );
        assert_eq!(
            logged(&[b"HELLO", b"3", b"AUTH", b"u", b"p", b"SETNAME", b"n"]),
            [
                "HELLO",
                "3",
                "AUTH",
                "(redacted)",
                "(redacted)",
                "SETNAME",
                "n"
            ]
        );
        assert_eq!(logged(&[b"GET", b"auth"]), ["GET", "auth"]);
    }
}

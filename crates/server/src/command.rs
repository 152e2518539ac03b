//! The command table and the context every command runs with.
//!
//! Each command family (`cmd/*.rs`) declares its commands as a `const` slice of
//! [`CommandSpec`]: name, arity, flags, key positions, documentation and handler. The
//! [`CommandTable`] built from them drives dispatch, arity errors, COMMAND's replies and
//! (later) cluster routing, so those can never disagree.

use std::borrow::Cow;

use dse_engine::WriteError;
use dse_proto::{Args, Reply};
use hashbrown::HashMap;

use crate::server::Server;
use crate::session::Session;

/// What a command handler returns; the error is written as the reply.
pub type CmdResult = Result<(), CmdError>;

pub type Handler = fn(&mut Ctx<'_, '_>, Args<'_>) -> CmdResult;

/// Command flags, as COMMAND reports them.
pub mod flag {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const NOSCRIPT: u32 = 1 << 4;
    pub const LOADING: u32 = 1 << 5;
    pub const STALE: u32 = 1 << 6;
    pub const FAST: u32 = 1 << 7;
    pub const NO_AUTH: u32 = 1 << 8;
    pub const SKIP_SLOWLOG: u32 = 1 << 9;
    pub const ALLOW_BUSY: u32 = 1 << 10;
    pub const BLOCKING: u32 = 1 << 11;
    pub const SENTINEL: u32 = 1 << 12;
    /// Refused inside MULTI ("Command not allowed inside a transaction").
    pub const NO_MULTI: u32 = 1 << 13;

    pub const NAMES: &[(u32, &str)] = &[
        (WRITE, "write"),
        (READONLY, "readonly"),
        (DENYOOM, "denyoom"),
        (ADMIN, "admin"),
        (NOSCRIPT, "noscript"),
        (BLOCKING, "blocking"),
        (LOADING, "loading"),
        (STALE, "stale"),
        (SKIP_SLOWLOG, "skip_slowlog"),
        (FAST, "fast"),
        (NO_AUTH, "no_auth"),
        (NO_MULTI, "no_multi"),
        (ALLOW_BUSY, "allow_busy"),
        (SENTINEL, "sentinel"),
    ];
}

/// One command (or subcommand) of the table.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lowercase name (`get`; `list` for `CLIENT LIST`).
    pub name: &'static str,
    /// Argument count including the name; negative means "at least".
    pub arity: i32,
    pub flags: u32,
    /// Key positions as Redis's legacy triple: first, last (negative from the end), step.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
    /// Key-spec flags (`RW`, `update`, ...); derived from the command flags when empty.
    pub key_flags: &'static [&'static str],
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    pub complexity: &'static str,
    pub handler: Handler,
    pub subcommands: &'static [CommandSpec],
}

/// A command with no keys. Chain `.keys()`, `.doc()`, `.subs()` in the `const` tables.
pub const fn cmd(name: &'static str, arity: i32, flags: u32, handler: Handler) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: 0,
        last_key: 0,
        step: 0,
        key_flags: &[],
        group: "server",
        since: "1.0.0",
        summary: "",
        complexity: "O(1)",
        handler,
        subcommands: &[],
    }
}

impl CommandSpec {
    pub const fn keys(mut self, first: i32, last: i32, step: i32) -> Self {
        self.first_key = first;
        self.last_key = last;
        self.step = step;
        self
    }

    pub const fn key_flags(mut self, flags: &'static [&'static str]) -> Self {
        self.key_flags = flags;
        self
    }

    pub const fn doc(
        mut self,
        group: &'static str,
        since: &'static str,
        complexity: &'static str,
        summary: &'static str,
    ) -> Self {
        self.group = group;
        self.since = since;
        self.complexity = complexity;
        self.summary = summary;
        self
    }

    pub const fn subs(mut self, subcommands: &'static [CommandSpec]) -> Self {
        self.subcommands = subcommands;
        self
    }

    pub fn has(&self, f: u32) -> bool {
        self.flags & f != 0
    }

    /// Checks the argument count (`n` includes the name, and for a subcommand, the
    /// container's name too).
    pub fn arity_ok(&self, n: usize) -> bool {
        if self.arity >= 0 {
            n == self.arity as usize
        } else {
            n >= (-self.arity) as usize
        }
    }

    /// The key positions in `args` (index into the full argument list).
    pub fn key_positions(&self, argc: usize) -> impl Iterator<Item = usize> + use<> {
        let (first, step) = (self.first_key, self.step);
        let last = if self.last_key < 0 {
            argc as i32 + self.last_key
        } else {
            self.last_key
        };
        let valid = first > 0 && step > 0 && (first as usize) < argc;
        let last = if valid {
            last.min(argc as i32 - 1)
        } else {
            first - 1
        };
        (first..=last)
            .step_by(step.max(1) as usize)
            .map(|i| i as usize)
    }
}

/// A flattened table: top-level commands and subcommands, each with an index (its
/// statistics slot) and its full name (`client|list`).
pub struct CommandTable {
    pub specs: Vec<&'static CommandSpec>,
    pub full_names: Vec<String>,
    /// For each index, the index of its container (itself for top-level commands).
    pub parent: Vec<usize>,
    by_name: HashMap<&'static [u8], usize, foldhash::fast::RandomState>,
    subs: HashMap<(usize, &'static [u8]), usize, foldhash::fast::RandomState>,
    /// Top-level command indices, in table order.
    pub top: Vec<usize>,
}

/// Longest command name we look up (longer names cannot exist).
const MAX_NAME: usize = 32;

impl CommandTable {
    pub fn new(families: &[&'static [CommandSpec]]) -> Self {
        let mut t = CommandTable {
            specs: Vec::new(),
            full_names: Vec::new(),
            parent: Vec::new(),
            by_name: HashMap::default(),
            subs: HashMap::default(),
            top: Vec::new(),
        };
        for family in families {
            for spec in family.iter() {
                let idx = t.specs.len();
                t.specs.push(spec);
                t.full_names.push(spec.name.to_string());
                t.parent.push(idx);
                t.top.push(idx);
                let dup = t.by_name.insert(spec.name.as_bytes(), idx);
                assert!(dup.is_none(), "command {} declared twice", spec.name);
                for sub in spec.subcommands {
                    let sidx = t.specs.len();
                    t.specs.push(sub);
                    t.full_names.push(format!("{}|{}", spec.name, sub.name));
                    t.parent.push(idx);
                    t.subs.insert((idx, sub.name.as_bytes()), sidx);
                }
            }
        }
        t
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// The index of the command named `name` (any case).
    pub fn lookup(&self, name: &[u8]) -> Option<usize> {
        let mut buf = [0u8; MAX_NAME];
        let lower = lowercase(name, &mut buf)?;
        self.by_name.get(lower).copied()
    }

    /// The index of subcommand `name` of command `parent`.
    pub fn lookup_sub(&self, parent: usize, name: &[u8]) -> Option<usize> {
        let mut buf = [0u8; MAX_NAME];
        let lower = lowercase(name, &mut buf)?;
        self.subs.get(&(parent, lower)).copied()
    }

    /// The command an argument list runs, resolving subcommands: `Ok(index)`, or the
    /// error Redis gives.
    pub fn resolve(&self, args: &Args<'_>) -> Result<usize, CmdError> {
        let name = &args[0];
        let Some(idx) = self.lookup(name) else {
            return Err(unknown_command(args));
        };
        let spec = self.specs[idx];
        if spec.subcommands.is_empty() {
            if !spec.arity_ok(args.len()) {
                return Err(CmdError::Arity(self.full_names[idx].clone()));
            }
            return Ok(idx);
        }
        if args.len() < 2 {
            // A container whose arity allows it runs bare (`COMMAND` lists every command).
            if spec.arity_ok(args.len()) {
                return Ok(idx);
            }
            return Err(CmdError::Arity(self.full_names[idx].clone()));
        }
        let Some(sidx) = self.lookup_sub(idx, &args[1]) else {
            return Err(CmdError::Owned(format!(
                "ERR unknown subcommand '{}'. Try {} HELP.",
                String::from_utf8_lossy(&args[1])
                    .chars()
                    .take(128)
                    .collect::<String>(),
                spec.name.to_ascii_uppercase()
            )));
        };
        if !self.specs[sidx].arity_ok(args.len()) {
            return Err(CmdError::Arity(self.full_names[sidx].clone()));
        }
        Ok(sidx)
    }
}

fn lowercase<'b>(name: &[u8], buf: &'b mut [u8; MAX_NAME]) -> Option<&'b [u8]> {
    if name.len() > MAX_NAME {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    Some(&buf[..name.len()])
}

/// Redis 7's reply to an unknown command.
fn unknown_command(args: &Args<'_>) -> CmdError {
    let name: String = String::from_utf8_lossy(&args[0])
        .chars()
        .take(128)
        .collect();
    let mut msg = format!("ERR unknown command '{name}', with args beginning with: ");
    for a in args.iter().skip(1) {
        if msg.len() > 512 {
            break;
        }
        let a: String = String::from_utf8_lossy(a).chars().take(128).collect();
        msg.push('\'');
        msg.push_str(&a);
        msg.push_str("' ");
    }
    CmdError::Owned(msg)
}

/// An error reply. The common ones are variants so that returning them allocates
/// nothing; the text is Redis's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    Syntax,
    NotInteger,
    NotFloat,
    WrongType,
    Overflow,
    NoSuchKey,
    /// Wrong argument count; holds the full command name.
    Arity(String),
    Static(&'static str),
    Owned(String),
}

impl CmdError {
    pub fn message(&self) -> Cow<'_, str> {
        match self {
            CmdError::Syntax => "ERR syntax error".into(),
            CmdError::NotInteger => "ERR value is not an integer or out of range".into(),
            CmdError::NotFloat => "ERR value is not a valid float".into(),
            CmdError::WrongType => {
                "WRONGTYPE Operation against a key holding the wrong kind of value".into()
            }
            CmdError::Overflow => "ERR increment or decrement would overflow".into(),
            CmdError::NoSuchKey => "ERR no such key".into(),
            CmdError::Arity(name) => {
                format!("ERR wrong number of arguments for '{name}' command").into()
            }
            CmdError::Static(s) => (*s).into(),
            CmdError::Owned(s) => s.as_str().into(),
        }
    }
}

impl From<WriteError> for CmdError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::WrongType => CmdError::WrongType,
            WriteError::Journal(j) => CmdError::Owned(j.to_string()),
        }
    }
}

/// What a command runs with.
pub struct Ctx<'a, 'r> {
    pub srv: &'a Server,
    pub sess: &'a mut Session,
    pub out: &'a mut Reply<'r>,
    /// Milliseconds since the epoch, read once per batch of requests.
    pub now: u64,
    /// Index of the command running (its statistics slot).
    pub cmd: usize,
    /// The event loop running the command.
    pub loop_index: usize,
}

impl Ctx<'_, '_> {
    /// Counts a keyspace hit or miss (INFO stats).
    pub fn lookup_stat(&self, hit: bool) {
        let l = &self.srv.stats.loops[self.loop_index];
        crate::server::bump(if hit { &l.hits } else { &l.misses }, 1);
    }

    /// Replies with an error (the same path as returning one).
    pub fn error(&mut self, e: &CmdError) {
        self.out.error(&e.message());
    }
}

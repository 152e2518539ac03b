//! COMMAND: what the server knows about its commands, generated from the command table
//! so that every command added to a family shows up here with no further work.
//!
//! Replies follow Redis 7's shapes: a command's info is the 10-element array
//! `[name, arity, flags, first key, last key, step, ACL categories, tips, key specs,
//! subcommands]`; its docs are a map. ACL categories and key specifications are not
//! declared per command: they are derived from the flags, the documentation group and
//! the legacy key triple (first, last, step), as Redis derives its implicit categories.

use dse_engine::glob_match;
use dse_proto::{Args, Reply};

use crate::command::{CmdError, CmdResult, CommandSpec, CommandTable, Ctx, cmd, flag::*};

const SUBCOMMANDS: &[CommandSpec] = &[
    cmd("count", 2, LOADING | STALE, command_count).doc(
        "server",
        "2.8.13",
        "O(1)",
        "Returns a count of commands.",
    ),
    cmd("list", -2, LOADING | STALE, command_list).doc(
        "server",
        "7.0.0",
        "O(N) where N is the total number of Redis commands",
        "Returns a list of command names.",
    ),
    cmd("info", -2, LOADING | STALE, command_info).doc(
        "server",
        "2.8.13",
        "O(N) where N is the number of commands to look up",
        "Returns information about one, multiple or all commands.",
    ),
    cmd("docs", -2, LOADING | STALE, command_docs).doc(
        "server",
        "7.0.0",
        "O(N) where N is the number of commands to look up",
        "Returns documentary information about one, multiple or all commands.",
    ),
    cmd("getkeys", -3, LOADING | STALE, command_getkeys).doc(
        "server",
        "2.8.13",
        "O(N) where N is the number of arguments to the command",
        "Extracts the key names from an arbitrary command.",
    ),
    cmd(
        "getkeysandflags",
        -3,
        LOADING | STALE,
        command_getkeysandflags,
    )
    .doc(
        "server",
        "7.0.0",
        "O(N) where N is the number of arguments to the command",
        "Extracts the key names and access flags for an arbitrary command.",
    ),
    cmd("help", 2, LOADING | STALE, command_help).doc(
        "server",
        "5.0.0",
        "O(1)",
        "Returns helpful text about the different subcommands.",
    ),
];

pub const COMMANDS: &[CommandSpec] = &[cmd("command", -1, LOADING | STALE, command_all)
    .doc(
        "server",
        "2.8.13",
        "O(N) where N is the total number of Redis commands",
        "Returns detailed information about all commands.",
    )
    .subs(SUBCOMMANDS)];

/// ACL categories, in the order Redis lists them.
pub mod category {
    pub const KEYSPACE: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const WRITE: u32 = 1 << 2;
    pub const SET: u32 = 1 << 3;
    pub const SORTEDSET: u32 = 1 << 4;
    pub const LIST: u32 = 1 << 5;
    pub const HASH: u32 = 1 << 6;
    pub const STRING: u32 = 1 << 7;
    pub const BITMAP: u32 = 1 << 8;
    pub const HYPERLOGLOG: u32 = 1 << 9;
    pub const GEO: u32 = 1 << 10;
    pub const STREAM: u32 = 1 << 11;
    pub const PUBSUB: u32 = 1 << 12;
    pub const ADMIN: u32 = 1 << 13;
    pub const FAST: u32 = 1 << 14;
    pub const SLOW: u32 = 1 << 15;
    pub const BLOCKING: u32 = 1 << 16;
    pub const DANGEROUS: u32 = 1 << 17;
    pub const CONNECTION: u32 = 1 << 18;
    pub const TRANSACTION: u32 = 1 << 19;
    pub const SCRIPTING: u32 = 1 << 20;

    pub const NAMES: &[(u32, &str)] = &[
        (KEYSPACE, "keyspace"),
        (READ, "read"),
        (WRITE, "write"),
        (SET, "set"),
        (SORTEDSET, "sortedset"),
        (LIST, "list"),
        (HASH, "hash"),
        (STRING, "string"),
        (BITMAP, "bitmap"),
        (HYPERLOGLOG, "hyperloglog"),
        (GEO, "geo"),
        (STREAM, "stream"),
        (PUBSUB, "pubsub"),
        (ADMIN, "admin"),
        (FAST, "fast"),
        (SLOW, "slow"),
        (BLOCKING, "blocking"),
        (DANGEROUS, "dangerous"),
        (CONNECTION, "connection"),
        (TRANSACTION, "transaction"),
        (SCRIPTING, "scripting"),
    ];
}

/// The ACL categories of a command: its documentation group's category (containers have
/// none, as in Redis), then Redis's implicit ones from the flags (`setImplicitACLCategories`).
pub fn acl_categories(spec: &CommandSpec) -> u32 {
    use category::*;
    let mut cats = if spec.subcommands.is_empty() {
        match spec.group {
            "generic" | "keyspace" | "keys" => KEYSPACE,
            "string" => STRING,
            "list" => LIST,
            "set" => SET,
            "sorted-set" | "sorted_set" | "sortedset" | "zset" => SORTEDSET,
            "hash" => HASH,
            "bitmap" => BITMAP,
            "hyperloglog" => HYPERLOGLOG,
            "geo" => GEO,
            "stream" => STREAM,
            "pubsub" => PUBSUB,
            "connection" => CONNECTION,
            "transactions" | "transaction" => TRANSACTION,
            "scripting" => SCRIPTING,
            _ => 0,
        }
    } else {
        0
    };
    if spec.has(crate::command::flag::WRITE) {
        cats |= WRITE;
    }
    if spec.has(crate::command::flag::READONLY) && cats & SCRIPTING == 0 {
        cats |= READ;
    }
    if spec.has(crate::command::flag::ADMIN) {
        cats |= ADMIN | DANGEROUS;
    }
    if spec.has(crate::command::flag::FAST) {
        cats |= FAST;
    }
    if spec.has(crate::command::flag::BLOCKING) {
        cats |= BLOCKING;
    }
    if cats & FAST == 0 {
        cats |= SLOW;
    }
    cats
}

/// The flags COMMAND shows (Redis hides `sentinel`).
fn shown_flags(spec: &CommandSpec) -> impl Iterator<Item = &'static str> + '_ {
    NAMES
        .iter()
        .filter(move |&&(f, _)| f != SENTINEL && spec.has(f))
        .map(|&(_, name)| name)
}

/// Key-spec flags: the declared ones, or what the command flags imply.
fn key_flags(spec: &CommandSpec) -> &'static [&'static str] {
    if !spec.key_flags.is_empty() {
        spec.key_flags
    } else if spec.has(WRITE) {
        &["RW", "update"]
    } else if spec.has(READONLY) {
        &["RO", "access"]
    } else {
        &["RO"]
    }
}

fn has_keys(spec: &CommandSpec) -> bool {
    spec.first_key > 0 && spec.step > 0
}

/// Writes a status-string array of help lines, framed as Redis's `addReplyHelp` does.
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

/// A command by its full name (`get`, `client|list`, any case).
fn lookup_full_name(table: &CommandTable, name: &[u8]) -> Option<usize> {
    let mut parts = name.splitn(3, |&c| c == b'|');
    let top = table.lookup(parts.next()?)?;
    match (parts.next(), parts.next()) {
        (None, _) => Some(top),
        (Some(sub), None) => table.lookup_sub(top, sub),
        _ => None,
    }
}

/// The table index of each subcommand of `idx`, in declaration order.
fn subcommand_indices(table: &CommandTable, idx: usize) -> impl Iterator<Item = usize> + '_ {
    table.specs[idx]
        .subcommands
        .iter()
        .filter_map(move |sub| table.lookup_sub(idx, sub.name.as_bytes()))
}

/// One command's 10-element info array.
fn reply_command_info(out: &mut Reply<'_>, table: &CommandTable, idx: usize) {
    let spec = table.specs[idx];
    out.array(10);
    out.bulk_str(&table.full_names[idx]);
    out.int(spec.arity.into());
    out.set(shown_flags(spec).count());
    for name in shown_flags(spec) {
        out.simple(name);
    }
    out.int(spec.first_key.into());
    out.int(spec.last_key.into());
    out.int(spec.step.into());
    let cats = acl_categories(spec);
    out.set(cats.count_ones() as usize);
    for &(bit, name) in category::NAMES {
        if cats & bit != 0 {
            out.simple_bytes(&[b"@", name.as_bytes()].concat());
        }
    }
    // Tips: none are declared in the table.
    out.set(0);
    reply_key_specs(out, spec);
    if spec.subcommands.is_empty() {
        // Redis answers an empty set here, but an array when there are subcommands.
        out.set(0);
    } else {
        out.array(spec.subcommands.len());
        for sub in subcommand_indices(table, idx) {
            reply_command_info(out, table, sub);
        }
    }
}

/// The key specification derived from the legacy triple: an index begin-search and a
/// range find-keys whose `lastkey` is relative to the first key (negative: from the end).
fn reply_key_specs(out: &mut Reply<'_>, spec: &CommandSpec) {
    if !has_keys(spec) {
        out.set(0);
        return;
    }
    out.set(1);
    out.map(3);
    out.bulk_str("flags");
    let flags = key_flags(spec);
    out.set(flags.len());
    for f in flags {
        out.simple(f);
    }
    out.bulk_str("begin_search");
    out.map(2);
    out.bulk_str("type");
    out.bulk_str("index");
    out.bulk_str("spec");
    out.map(1);
    out.bulk_str("index");
    out.int(spec.first_key.into());
    out.bulk_str("find_keys");
    out.map(2);
    out.bulk_str("type");
    out.bulk_str("range");
    out.bulk_str("spec");
    out.map(3);
    out.bulk_str("lastkey");
    let last = if spec.last_key < 0 {
        spec.last_key
    } else {
        spec.last_key - spec.first_key
    };
    out.int(last.into());
    out.bulk_str("keystep");
    out.int(spec.step.into());
    out.bulk_str("limit");
    out.int(0);
}

/// One command's documentation map (subcommands nested, keyed by full name).
fn reply_command_docs(out: &mut Reply<'_>, table: &CommandTable, idx: usize) {
    let spec = table.specs[idx];
    let has_subs = !spec.subcommands.is_empty();
    out.map(4 + usize::from(has_subs));
    out.bulk_str("summary");
    out.bulk_str(spec.summary);
    out.bulk_str("since");
    out.bulk_str(spec.since);
    out.bulk_str("group");
    out.bulk_str(spec.group);
    out.bulk_str("complexity");
    out.bulk_str(spec.complexity);
    if has_subs {
        out.bulk_str("subcommands");
        out.map(spec.subcommands.len());
        for sub in subcommand_indices(table, idx) {
            out.bulk_str(&table.full_names[sub]);
            reply_command_docs(out, table, sub);
        }
    }
}

/// `COMMAND` → the info array of every top-level command (subcommands nested).
fn command_all(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let table = &ctx.srv.table;
    ctx.out.array(table.top.len());
    for &idx in &table.top {
        reply_command_info(ctx.out, table, idx);
    }
    Ok(())
}

/// `COMMAND COUNT` → the number of top-level commands (the length of `COMMAND`).
fn command_count(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.out.int(ctx.srv.table.top.len() as i64);
    Ok(())
}

/// `COMMAND INFO [name ...]` → an info array per name (nil for an unknown one); every
/// command without names.
fn command_info(ctx: &mut Ctx, a: Args) -> CmdResult {
    if a.len() == 2 {
        return command_all(ctx, a);
    }
    let table = &ctx.srv.table;
    ctx.out.array(a.len() - 2);
    for name in a.iter().skip(2) {
        match lookup_full_name(table, name) {
            Some(idx) => reply_command_info(ctx.out, table, idx),
            None => ctx.out.null(),
        }
    }
    Ok(())
}

/// `COMMAND DOCS [name ...]` → a map from full name to documentation; unknown names are
/// left out. Every command without names.
fn command_docs(ctx: &mut Ctx, a: Args) -> CmdResult {
    let table = &ctx.srv.table;
    let found: Vec<usize> = if a.len() == 2 {
        table.top.clone()
    } else {
        a.iter()
            .skip(2)
            .filter_map(|name| lookup_full_name(table, name))
            .collect()
    };
    ctx.out.map(found.len());
    for idx in found {
        ctx.out.bulk_str(&table.full_names[idx]);
        reply_command_docs(ctx.out, table, idx);
    }
    Ok(())
}

/// `COMMAND LIST [FILTERBY MODULE name | ACLCAT category | PATTERN pattern]` → the full
/// names of all commands and subcommands that pass the filter.
fn command_list(ctx: &mut Ctx, a: Args) -> CmdResult {
    enum Filter<'a> {
        All,
        Module,
        AclCat(Option<u32>),
        Pattern(&'a [u8]),
    }
    let filter = match a.len() {
        2 => Filter::All,
        5 if crate::args::is(&a[2], "filterby") => {
            let (kind, arg) = (&a[3], &a[4]);
            if crate::args::is(kind, "module") {
                Filter::Module
            } else if crate::args::is(kind, "aclcat") {
                Filter::AclCat(
                    category::NAMES
                        .iter()
                        .find(|(_, name)| crate::args::is(arg, name))
                        .map(|&(bit, _)| bit),
                )
            } else if crate::args::is(kind, "pattern") {
                Filter::Pattern(arg)
            } else {
                return Err(CmdError::Syntax);
            }
        }
        _ => return Err(CmdError::Syntax),
    };
    let table = &ctx.srv.table;
    let names: Vec<&str> = (0..table.len())
        .filter(|&i| match filter {
            Filter::All => true,
            // No module commands exist.
            Filter::Module => false,
            Filter::AclCat(bit) => bit.is_some_and(|b| acl_categories(table.specs[i]) & b != 0),
            Filter::Pattern(p) => glob_match(p, table.full_names[i].as_bytes(), true),
        })
        .map(|i| table.full_names[i].as_str())
        .collect();
    ctx.out.array(names.len());
    for name in names {
        ctx.out.bulk_str(name);
    }
    Ok(())
}

/// The command `args` would run and its key positions, or GETKEYS's error.
fn keys_of(table: &CommandTable, args: &Args) -> Result<(usize, Vec<usize>), CmdError> {
    let invalid = CmdError::Static("ERR Invalid command specified");
    let mut idx = table.lookup(&args[0]).ok_or(invalid.clone())?;
    if !table.specs[idx].subcommands.is_empty() && args.len() > 1 {
        idx = table.lookup_sub(idx, &args[1]).ok_or(invalid)?;
    }
    let spec = table.specs[idx];
    if !has_keys(spec) {
        return Err(CmdError::Static("ERR The command has no key arguments"));
    }
    if !spec.arity_ok(args.len()) {
        return Err(CmdError::Static(
            "ERR Invalid number of arguments specified for command",
        ));
    }
    let positions: Vec<usize> = spec.key_positions(args.len()).collect();
    if positions.is_empty() {
        return Err(CmdError::Static(
            "ERR Invalid arguments specified for command",
        ));
    }
    Ok((idx, positions))
}

/// `COMMAND GETKEYS command [arg ...]` → the keys that command would touch.
fn command_getkeys(ctx: &mut Ctx, a: Args) -> CmdResult {
    let args = a.tail(2);
    let (_, positions) = keys_of(&ctx.srv.table, &args)?;
    ctx.out.array(positions.len());
    for p in positions {
        ctx.out.bulk(&args[p]);
    }
    Ok(())
}

/// `COMMAND GETKEYSANDFLAGS command [arg ...]` → `[key, flags]` for each key.
fn command_getkeysandflags(ctx: &mut Ctx, a: Args) -> CmdResult {
    let args = a.tail(2);
    let (idx, positions) = keys_of(&ctx.srv.table, &args)?;
    let flags = key_flags(ctx.srv.table.specs[idx]);
    ctx.out.array(positions.len());
    for p in positions {
        ctx.out.array(2);
        ctx.out.bulk(&args[p]);
        ctx.out.set(flags.len());
        for f in flags {
            ctx.out.simple(f);
        }
    }
    Ok(())
}

const HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "GETKEYSANDFLAGS <full-command>",
    "    Return the keys and the access flags from a full Redis command.",
];

/// `COMMAND HELP` → the subcommands, one status line each.
fn command_help(ctx: &mut Ctx, _a: Args) -> CmdResult {
    reply_help(ctx.out, "COMMAND", HELP);
    Ok(())
}

#[cfg(test)]
mod tests {
    use dse_proto::Resp;

    use super::*;

    fn noop(_ctx: &mut Ctx, _a: Args) -> CmdResult {
        Ok(())
    }

    /// Commands shaped like Redis's MSET and LCS, which other families will declare.
    const FAMILY: &[CommandSpec] = &[
        cmd("mset", -3, WRITE | DENYOOM, noop)
            .keys(1, -1, 2)
            .key_flags(&["OW", "update"])
            .doc(
                "string",
                "1.0.1",
                "O(N)",
                "Atomically creates or modifies the string values of one or more keys.",
            ),
        cmd("lcs", -3, READONLY, noop).keys(1, 2, 1).doc(
            "string",
            "7.0.0",
            "O(N*M)",
            "Finds the longest common substring.",
        ),
    ];

    fn info(table: &CommandTable, idx: usize) -> String {
        let mut buf = Vec::new();
        let mut out = Reply::new(&mut buf, Resp::V2);
        out.array(1);
        reply_command_info(&mut out, table, idx);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn derived_info_matches_redis_for_key_ranges() {
        let table = CommandTable::new(&[FAMILY]);
        // Redis 7's replies, byte for byte, less MSET's two tips (none are declared).
        assert_eq!(
            info(&table, 0),
            "*1\r\n*10\r\n$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n*3\r\n+@write\r\n+@string\r\n+@slow\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+OW\r\n+update\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:2\r\n$5\r\nlimit\r\n:0\r\n*0\r\n"
        );
        assert_eq!(
            info(&table, 1),
            "*1\r\n*10\r\n$3\r\nlcs\r\n:-3\r\n*1\r\n+readonly\r\n:1\r\n:2\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n+@slow\r\n*0\r\n*1\r\n*6\r\n$5\r\nflags\r\n*2\r\n+RO\r\n+access\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n*2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n$4\r\nspec\r\n*6\r\n$7\r\nlastkey\r\n:1\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n*0\r\n"
        );
    }

    #[test]
    fn categories_follow_redis_implicit_rules() {
        let names = |spec: &CommandSpec| -> Vec<&str> {
            let cats = acl_categories(spec);
            category::NAMES
                .iter()
                .filter(|(bit, _)| cats & bit != 0)
                .map(|&(_, n)| n)
                .collect()
        };
        assert_eq!(
            names(&cmd("del", -2, WRITE, noop).doc("generic", "1.0.0", "", "")),
            ["keyspace", "write", "slow"]
        );
        assert_eq!(
            names(&cmd("blpop", -3, WRITE | BLOCKING, noop).doc("list", "2.0.0", "", "")),
            ["write", "list", "slow", "blocking"]
        );
        assert_eq!(
            names(&cmd("flushall", -1, WRITE, noop).doc("server", "1.0.0", "", "")),
            ["write", "slow"]
        );
        assert_eq!(
            names(&cmd("hello", -1, FAST, noop).doc("connection", "6.0.0", "", "")),
            ["fast", "connection"]
        );
    }
}

//! Keyspace (generic) commands: DEL, UNLINK, EXISTS, TOUCH, TYPE, RENAME, RENAMENX, COPY,
//! the EXPIRE family, TTL family, PERSIST, KEYS, SCAN, RANDOMKEY and OBJECT.

use dse_engine::{Effect, Entry, Value, glob_match};
use dse_proto::{Args, Reply};

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("del", -2, WRITE, del)
        .keys(1, -1, 1)
        .key_flags(&["RM", "delete"])
        .doc(
            "generic",
            "1.0.0",
            "O(N) where N is the number of keys that will be removed. When a key to remove holds a value other than a string, the individual complexity for this key is O(M) where M is the number of elements in the list, set, sorted set or hash. Removing a single key that holds a string value is O(1).",
            "Deletes one or more keys.",
        ),
    cmd("unlink", -2, WRITE | FAST, del)
        .keys(1, -1, 1)
        .key_flags(&["RM", "delete"])
        .doc(
            "generic",
            "4.0.0",
            "O(1) for each key removed regardless of its size. Then the command does O(N) work in a different thread in order to reclaim memory, where N is the number of allocations the deleted objects where composed of.",
            "Asynchronously deletes one or more keys.",
        ),
    cmd("exists", -2, READONLY | FAST, exists)
        .keys(1, -1, 1)
        .key_flags(&["RO"])
        .doc(
            "generic",
            "1.0.0",
            "O(N) where N is the number of keys to check.",
            "Determines whether one or more keys exist.",
        ),
    cmd("touch", -2, READONLY | FAST, touch)
        .keys(1, -1, 1)
        .key_flags(&["RO"])
        .doc(
            "generic",
            "3.2.1",
            "O(N) where N is the number of keys that will be touched.",
            "Returns the number of existing keys out of those specified after updating the time they were last accessed.",
        ),
    cmd("type", 2, READONLY | FAST, type_of)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc(
            "generic",
            "1.0.0",
            "O(1)",
            "Determines the type of value stored at a key.",
        ),
    cmd("rename", 3, WRITE, rename)
        .keys(1, 2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "generic",
            "1.0.0",
            "O(1)",
            "Renames a key and overwrites the destination.",
        ),
    cmd("renamenx", 3, WRITE | FAST, renamenx)
        .keys(1, 2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "generic",
            "1.0.0",
            "O(1)",
            "Renames a key only when the target key name doesn't exist.",
        ),
    cmd("copy", -3, WRITE | DENYOOM, copy)
        .keys(1, 2, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "generic",
            "6.2.0",
            "O(N) worst case for collections, where N is the number of nested items. O(1) for string values.",
            "Copies the value of a key to a new key.",
        ),
    cmd("expire", -3, WRITE | FAST, expire)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "generic",
            "1.0.0",
            "O(1)",
            "Sets the expiration time of a key in seconds.",
        ),
    cmd("pexpire", -3, WRITE | FAST, pexpire)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "generic",
            "2.6.0",
            "O(1)",
            "Sets the expiration time of a key in milliseconds.",
        ),
    cmd("expireat", -3, WRITE | FAST, expireat)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "generic",
            "1.2.0",
            "O(1)",
            "Sets the expiration time of a key to a Unix timestamp.",
        ),
    cmd("pexpireat", -3, WRITE | FAST, pexpireat)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "generic",
            "2.6.0",
            "O(1)",
            "Sets the expiration time of a key to a Unix milliseconds timestamp.",
        ),
    cmd("ttl", 2, READONLY | FAST, ttl)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "generic",
            "1.0.0",
            "O(1)",
            "Returns the expiration time in seconds of a key.",
        ),
    cmd("pttl", 2, READONLY | FAST, pttl)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "generic",
            "2.6.0",
            "O(1)",
            "Returns the expiration time in milliseconds of a key.",
        ),
    cmd("expiretime", 2, READONLY | FAST, expiretime)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "generic",
            "7.0.0",
            "O(1)",
            "Returns the expiration time of a key as a Unix timestamp.",
        ),
    cmd("pexpiretime", 2, READONLY | FAST, pexpiretime)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "generic",
            "7.0.0",
            "O(1)",
            "Returns the expiration time of a key as a Unix milliseconds timestamp.",
        ),
    cmd("persist", 2, WRITE | FAST, persist)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "generic",
            "2.2.0",
            "O(1)",
            "Removes the expiration time of a key.",
        ),
    cmd("keys", 2, READONLY, keys).doc(
        "generic",
        "1.0.0",
        "O(N) with N being the number of keys in the database, under the assumption that the key names in the database and the given pattern have limited length.",
        "Returns all key names that match a pattern.",
    ),
    cmd("scan", -2, READONLY, scan).doc(
        "generic",
        "2.8.0",
        "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.",
        "Iterates over the key names in the database.",
    ),
    cmd("randomkey", 1, READONLY, randomkey).doc(
        "generic",
        "1.0.0",
        "O(1)",
        "Returns a random key name from the database.",
    ),
    cmd("object", -2, 0, object)
        .doc(
            "generic",
            "2.2.3",
            "Depends on subcommand.",
            "A container for object introspection commands.",
        )
        .subs(OBJECT_SUBCOMMANDS),
];

const OBJECT_SUBCOMMANDS: &[CommandSpec] = &[
    cmd("encoding", 3, READONLY, object_encoding)
        .keys(2, 2, 1)
        .key_flags(&["RO"])
        .doc(
            "generic",
            "2.2.3",
            "O(1)",
            "Returns the internal encoding of a Redis object.",
        ),
    cmd("freq", 3, READONLY, object_freq)
        .keys(2, 2, 1)
        .key_flags(&["RO"])
        .doc(
            "generic",
            "4.0.0",
            "O(1)",
            "Returns the logarithmic access frequency counter of a Redis object.",
        ),
    cmd("idletime", 3, READONLY, object_idletime)
        .keys(2, 2, 1)
        .key_flags(&["RO"])
        .doc(
            "generic",
            "2.2.3",
            "O(1)",
            "Returns the time since the last access to a Redis object.",
        ),
    cmd("refcount", 3, READONLY, object_refcount)
        .keys(2, 2, 1)
        .key_flags(&["RO"])
        .doc(
            "generic",
            "2.2.3",
            "O(1)",
            "Returns the reference count of a value of a key.",
        ),
    cmd("help", 2, LOADING | STALE, object_help).doc(
        "generic",
        "6.2.0",
        "O(1)",
        "Returns helpful text about the different subcommands.",
    ),
];

/// `DEL key [key ...]` and `UNLINK key [key ...]` → the number of keys removed. Several
/// keys are removed atomically, as one logged record.
fn del(ctx: &mut Ctx, a: Args) -> CmdResult {
    let store = &ctx.srv.store;
    if a.len() == 2 {
        let key = &a[1];
        let h = store.hash(key);
        let removed = store.write(h).remove(key, h, ctx.now)?;
        ctx.out.int(removed as i64);
        return Ok(());
    }
    let keys: Vec<&[u8]> = a.iter().skip(1).collect();
    let hashes: Vec<_> = keys.iter().map(|k| store.hash(k)).collect();
    let mut multi = store.write_many(hashes.iter().copied());
    let mut effects: Vec<Effect> = Vec::with_capacity(keys.len());
    // A key named twice is removed once (and counted once).
    let mut named = hashbrown::HashSet::with_capacity_and_hasher(
        keys.len(),
        foldhash::fast::RandomState::default(),
    );
    for (&key, &h) in keys.iter().zip(&hashes) {
        if named.insert(key) && multi.get(key, h, ctx.now).is_some() {
            effects.push(Effect::Del { key });
        }
    }
    if !effects.is_empty() {
        multi.commit(&effects, ctx.now)?;
    }
    ctx.out.int(effects.len() as i64);
    Ok(())
}

/// `EXISTS key [key ...]` → how many of the keys exist; a key named twice counts twice.
fn exists(ctx: &mut Ctx, a: Args) -> CmdResult {
    let store = &ctx.srv.store;
    let mut found = 0;
    for key in a.iter().skip(1) {
        let h = store.hash(key);
        let hit = store.read(h).peek(key, h, ctx.now).is_some();
        ctx.lookup_stat(hit);
        found += hit as i64;
    }
    ctx.out.int(found);
    Ok(())
}

/// `TOUCH key [key ...]` → how many of the keys exist, marking each as just accessed.
fn touch(ctx: &mut Ctx, a: Args) -> CmdResult {
    let store = &ctx.srv.store;
    let mut found = 0;
    for key in a.iter().skip(1) {
        let h = store.hash(key);
        let hit = store.read(h).get(key, h, ctx.now).is_some();
        ctx.lookup_stat(hit);
        found += hit as i64;
    }
    ctx.out.int(found);
    Ok(())
}

/// `TYPE key` → `+string`, `+list`, `+set`, `+zset`, `+hash`, or `+none`.
fn type_of(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let name = store
        .read(h)
        .peek(key, h, ctx.now)
        .map(|e| e.value().type_name());
    ctx.lookup_stat(name.is_some());
    ctx.out.simple(name.unwrap_or("none"));
    Ok(())
}

/// `RENAME key newkey` → `OK`; `ERR no such key` when `key` does not exist.
fn rename(ctx: &mut Ctx, a: Args) -> CmdResult {
    if rename_generic(ctx, &a[1], &a[2], false)? {
        ctx.out.ok();
    }
    Ok(())
}

/// `RENAMENX key newkey` → 1 when renamed, 0 when `newkey` exists (or is `key`).
fn renamenx(ctx: &mut Ctx, a: Args) -> CmdResult {
    let renamed = rename_generic(ctx, &a[1], &a[2], true)?;
    ctx.out.int(renamed as i64);
    Ok(())
}

/// Moves `src` to `dst` (value and deadline); false when NX found `dst` taken.
fn rename_generic(ctx: &mut Ctx, src: &[u8], dst: &[u8], nx: bool) -> Result<bool, CmdError> {
    let store = &ctx.srv.store;
    let (hs, hd) = (store.hash(src), store.hash(dst));
    let mut multi = store.write_many([hs, hd]);
    if multi.get(src, hs, ctx.now).is_none() {
        return Err(CmdError::NoSuchKey);
    }
    // Renaming a key to itself changes nothing; RENAMENX reports it as "not renamed".
    if src == dst {
        return Ok(!nx);
    }
    if nx && multi.get(dst, hd, ctx.now).is_some() {
        return Ok(false);
    }
    multi.rename(src, hs, dst, hd, ctx.now)?;
    Ok(true)
}

/// `COPY source destination [DB destination-db] [REPLACE]` → 1 when copied, 0 when the
/// source is missing or the destination exists without REPLACE. Only database 0 exists.
fn copy(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (src, dst) = (&a[1], &a[2]);
    let mut replace = false;
    let mut i = 3;
    while i < a.len() {
        if args::is(&a[i], "replace") {
            replace = true;
        } else if args::is(&a[i], "db") && i + 1 < a.len() {
            let db = args::int(&a[i + 1])?;
            // Redis reads the index as a C int before checking its range.
            if i32::try_from(db).is_err() {
                return Err(CmdError::Static(
                    "ERR value is out of range, value must between -2147483648 and 2147483647",
                ));
            }
            if db != 0 {
                return Err(CmdError::Static("ERR DB index is out of range"));
            }
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if src == dst {
        return Err(CmdError::Static(
            "ERR source and destination objects are the same",
        ));
    }
    let store = &ctx.srv.store;
    let (hs, hd) = (store.hash(src), store.hash(dst));
    let mut multi = store.write_many([hs, hd]);
    let found = multi.get(src, hs, ctx.now).is_some();
    ctx.lookup_stat(found);
    if !found || (!replace && multi.get(dst, hd, ctx.now).is_some()) {
        ctx.out.int(0);
        return Ok(());
    }
    multi.copy(src, hs, dst, hd, ctx.now)?;
    ctx.out.int(1);
    Ok(())
}

/// `EXPIRE key seconds [NX|XX|GT|LT]` → 1 when the deadline was set, 0 when the key does
/// not exist or a condition failed. A deadline already past deletes the key.
fn expire(ctx: &mut Ctx, a: Args) -> CmdResult {
    expire_generic(ctx, a, true, 1000, "expire")
}

/// `PEXPIRE key milliseconds [NX|XX|GT|LT]` → as EXPIRE.
fn pexpire(ctx: &mut Ctx, a: Args) -> CmdResult {
    expire_generic(ctx, a, true, 1, "pexpire")
}

/// `EXPIREAT key unix-time-seconds [NX|XX|GT|LT]` → as EXPIRE.
fn expireat(ctx: &mut Ctx, a: Args) -> CmdResult {
    expire_generic(ctx, a, false, 1000, "expireat")
}

/// `PEXPIREAT key unix-time-milliseconds [NX|XX|GT|LT]` → as EXPIRE.
fn pexpireat(ctx: &mut Ctx, a: Args) -> CmdResult {
    expire_generic(ctx, a, false, 1, "pexpireat")
}

/// The EXPIRE family: `relative` times count from now, `unit` is 1000 for seconds and 1
/// for milliseconds, `name` goes into the overflow error.
fn expire_generic(ctx: &mut Ctx, a: Args, relative: bool, unit: i64, name: &str) -> CmdResult {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in a.iter().skip(3) {
        if args::is(opt, "nx") {
            nx = true;
        } else if args::is(opt, "xx") {
            xx = true;
        } else if args::is(opt, "gt") {
            gt = true;
        } else if args::is(opt, "lt") {
            lt = true;
        } else {
            return Err(CmdError::Owned(format!(
                "ERR Unsupported option {}",
                args::text(opt)
            )));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CmdError::Static(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(CmdError::Static(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    let n = args::int(&a[2])?;
    let base = if relative { ctx.now as i64 } else { 0 };
    // Negative times are allowed (they delete the key); only overflow is an error.
    let when = n
        .checked_mul(unit)
        .and_then(|ms| ms.checked_add(base))
        .ok_or_else(|| CmdError::Owned(format!("ERR invalid expire time in '{name}' command")))?;

    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.out.int(0);
        return Ok(());
    };
    // Deadlines are stored only when in the future, so they fit an i64.
    let current = e.expire_at().map(|at| at as i64);
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|c| when <= c))
        || (lt && current.is_some_and(|c| when >= c));
    if refused {
        ctx.out.int(0);
        return Ok(());
    }
    if when <= ctx.now as i64 {
        shard.remove(key, h, ctx.now)?;
    } else {
        shard.set_expire(key, h, when as u64, ctx.now)?;
    }
    ctx.out.int(1);
    Ok(())
}

/// `TTL key` → seconds left (rounded), -1 without a deadline, -2 when missing.
fn ttl(ctx: &mut Ctx, a: Args) -> CmdResult {
    ttl_generic(ctx, &a[1], false, false)
}

/// `PTTL key` → milliseconds left, -1 without a deadline, -2 when missing.
fn pttl(ctx: &mut Ctx, a: Args) -> CmdResult {
    ttl_generic(ctx, &a[1], true, false)
}

/// `EXPIRETIME key` → the deadline as a Unix time in seconds, -1 or -2 as TTL.
fn expiretime(ctx: &mut Ctx, a: Args) -> CmdResult {
    ttl_generic(ctx, &a[1], false, true)
}

/// `PEXPIRETIME key` → the deadline as a Unix time in milliseconds, -1 or -2 as TTL.
fn pexpiretime(ctx: &mut Ctx, a: Args) -> CmdResult {
    ttl_generic(ctx, &a[1], true, true)
}

fn ttl_generic(ctx: &mut Ctx, key: &[u8], ms: bool, absolute: bool) -> CmdResult {
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let deadline = store.read(h).peek(key, h, ctx.now).map(|e| e.expire_at());
    ctx.lookup_stat(deadline.is_some());
    let reply = match deadline {
        None => -2,
        Some(None) => -1,
        Some(Some(at)) => {
            let v = if absolute {
                at
            } else {
                at.saturating_sub(ctx.now)
            };
            // Seconds are rounded to the nearest, as Redis does; `v` is below 2^63.
            (if ms { v } else { (v + 500) / 1000 }) as i64
        }
    };
    ctx.out.int(reply);
    Ok(())
}

/// `PERSIST key` → 1 when a deadline was removed, 0 when the key is missing or had none.
fn persist(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let volatile = shard
        .lookup(key, h, ctx.now)
        .is_some_and(|e| e.expire_at().is_some());
    if volatile {
        shard.set_expire(key, h, 0, ctx.now)?;
    }
    ctx.out.int(volatile as i64);
    Ok(())
}

/// `KEYS pattern` → every key matching the glob pattern, in no particular order.
fn keys(ctx: &mut Ctx, a: Args) -> CmdResult {
    let pattern = &a[1];
    let match_all = pattern == b"*";
    let store = &ctx.srv.store;
    // A cluster node lists the keys of the slots it is primary for, not its copies.
    let cluster = ctx.srv.cluster.as_ref();
    // The count is known only at the end: the elements go to a side buffer first.
    let mut body = Vec::new();
    let mut items = Reply::new(&mut body, ctx.out.resp());
    let mut n = 0;
    for i in 0..store.shard_count() {
        let shard = store.read_shard(i);
        for e in shard.iter(ctx.now) {
            if (match_all || glob_match(pattern, e.key(), false))
                && cluster.is_none_or(|c| c.serves(e.key()))
            {
                items.bulk(e.key());
                n += 1;
            }
        }
    }
    ctx.out.array(n);
    ctx.out.raw(&body);
    Ok(())
}

/// SCAN returns to the client at most this many keys per call, whatever COUNT says,
/// which keeps the engine's examined-slot budget (10 x COUNT) from overflowing.
const MAX_SCAN_COUNT: i64 = 1 << 32;

/// `SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]` → the next cursor (0 when the
/// iteration is complete) and a batch of keys. A key present for the whole iteration is
/// returned at least once.
fn scan(ctx: &mut Ctx, a: Args) -> CmdResult {
    let cursor = parse_cursor(&a[1]).ok_or(CmdError::Static("ERR invalid cursor"))?;
    let mut count: i64 = 10;
    let mut pattern: Option<&[u8]> = None;
    let mut type_name: Option<&[u8]> = None;
    let mut i = 2;
    while i < a.len() {
        let has_value = i + 1 < a.len();
        if args::is(&a[i], "count") && has_value {
            count = args::int(&a[i + 1])?;
            if count < 1 {
                return Err(CmdError::Syntax);
            }
        } else if args::is(&a[i], "match") && has_value {
            let p = &a[i + 1];
            pattern = (p != b"*").then_some(p);
        } else if args::is(&a[i], "type") && has_value {
            type_name = Some(&a[i + 1]);
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let count = count.min(MAX_SCAN_COUNT) as usize;
    let mut body = Vec::new();
    let mut items = Reply::new(&mut body, ctx.out.resp());
    let mut n = 0;
    let cluster = ctx.srv.cluster.as_ref();
    let next = ctx.srv.store.scan(cursor, count, ctx.now, |e: Entry<'_>| {
        let wanted = pattern.is_none_or(|p| glob_match(p, e.key(), false))
            && type_name.is_none_or(|t| t.eq_ignore_ascii_case(e.value().type_name().as_bytes()))
            && cluster.is_none_or(|c| c.serves(e.key()));
        if wanted {
            items.bulk(e.key());
            n += 1;
        }
    });
    ctx.out.array(2);
    ctx.out.bulk(itoa::Buffer::new().format(next).as_bytes());
    ctx.out.array(n);
    ctx.out.raw(&body);
    Ok(())
}

/// A SCAN cursor as Redis 7.2 reads it (C's `strtoul`, base 10): an optional sign, then
/// digits, with no leading space; a negative number wraps around, an empty string is 0,
/// and the text ends at a NUL byte. `None` for anything else, or for overflow.
pub(crate) fn parse_cursor(text: &[u8]) -> Option<u64> {
    let text = text.split(|&b| b == 0).next().unwrap_or_default();
    let (negative, digits) = match text {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, text),
    };
    if text.is_empty() {
        return Some(0);
    }
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((d - b'0') as u64)?;
    }
    Some(if negative { n.wrapping_neg() } else { n })
}

/// `RANDOMKEY` → a random key, or nil when the keyspace is empty.
fn randomkey(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let store = &ctx.srv.store;
    let key = match &ctx.srv.cluster {
        Some(c) => store.random_key_where(ctx.now, rand::random(), |k| c.serves(k)),
        None => store.random_key(ctx.now, rand::random()),
    };
    match key {
        Some(key) => ctx.out.bulk(&key),
        None => ctx.out.null(),
    }
    Ok(())
}

/// The OBJECT container itself never runs: the table dispatches to its subcommands.
fn object(_ctx: &mut Ctx, _a: Args) -> CmdResult {
    Err(CmdError::Static("ERR unknown subcommand. Try OBJECT HELP."))
}

/// Runs `f` on the live entry named by OBJECT's key argument, without marking it
/// accessed; replies nil when the key does not exist.
fn with_object(
    ctx: &mut Ctx,
    key: &[u8],
    f: impl FnOnce(&mut Ctx, Entry<'_>) -> CmdResult,
) -> CmdResult {
    let srv = ctx.srv;
    let h = srv.store.hash(key);
    let shard = srv.store.read(h);
    match shard.peek(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            ctx.out.null();
            Ok(())
        }
        Some(e) => {
            ctx.lookup_stat(true);
            f(ctx, e)
        }
    }
}

fn lfu_policy(ctx: &Ctx) -> bool {
    ctx.srv.runtime.maxmemory_policy.lock().ends_with("-lfu")
}

/// `OBJECT ENCODING key` → the name of the value's encoding, or nil.
fn object_encoding(ctx: &mut Ctx, a: Args) -> CmdResult {
    with_object(ctx, &a[2], |ctx, e| {
        ctx.out.bulk_str(e.value().encoding());
        Ok(())
    })
}

/// `OBJECT FREQ key` → the key's logarithmic access counter, or nil. Only under an LFU
/// maxmemory policy.
fn object_freq(ctx: &mut Ctx, a: Args) -> CmdResult {
    with_object(ctx, &a[2], |ctx, e| {
        if !lfu_policy(ctx) {
            return Err(CmdError::Static(
                "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        // Accesses are not counted, only timed: this is Redis's initial counter (5),
        // decayed by one per idle minute as its default lfu-decay-time does.
        const LFU_INIT_VAL: u64 = 5;
        let counter = LFU_INIT_VAL.saturating_sub(e.idle_secs(ctx.now) / 60);
        ctx.out.int(counter as i64);
        Ok(())
    })
}

/// `OBJECT IDLETIME key` → seconds since the key was last accessed, or nil. Not under
/// an LFU maxmemory policy.
fn object_idletime(ctx: &mut Ctx, a: Args) -> CmdResult {
    with_object(ctx, &a[2], |ctx, e| {
        if lfu_policy(ctx) {
            return Err(CmdError::Static(
                "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
            ));
        }
        ctx.out.int(e.idle_secs(ctx.now) as i64);
        Ok(())
    })
}

/// Redis shares one object for each integer below this, with an "infinite" refcount.
const SHARED_INTEGERS: i64 = 10_000;
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// `OBJECT REFCOUNT key` → 1, or Redis's shared-object refcount for the small integers
/// it would share; nil when the key does not exist.
fn object_refcount(ctx: &mut Ctx, a: Args) -> CmdResult {
    with_object(ctx, &a[2], |ctx, e| {
        let shared = match e.value() {
            Value::Int(n) if (0..SHARED_INTEGERS).contains(n) => {
                // With a memory limit under an LRU or LFU policy Redis stops sharing
                // integers, so that each key keeps its own access time.
                let srv = ctx.srv;
                srv.runtime
                    .maxmemory
                    .load(std::sync::atomic::Ordering::Relaxed)
                    == 0
                    || {
                        let policy = srv.runtime.maxmemory_policy.lock();
                        !(policy.ends_with("-lru") || policy.ends_with("-lfu"))
                    }
            }
            _ => false,
        };
        ctx.out.int(if shared { SHARED_REFCOUNT } else { 1 });
        Ok(())
    })
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

/// `OBJECT HELP` → the subcommands, one simple string per line.
fn object_help(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.out.array(OBJECT_HELP.len());
    for line in OBJECT_HELP {
        ctx.out.simple(line);
    }
    Ok(())
}

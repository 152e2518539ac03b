//! String commands.

use dse_engine::{Effect, Expiry, KeyHash, Value, parse_canonical_i64};
use dse_proto::Args;

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};
use crate::long_double::{LongDouble, Parsed};

const GETRANGE_COMPLEXITY: &str = "O(N) where N is the length of the returned string. The complexity is ultimately determined by the returned length, but because creating a substring from an existing string is very cheap, it can be considered O(1) for small strings.";

pub const COMMANDS: &[CommandSpec] = &[
    cmd("get", 2, READONLY | FAST, get)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "O(1)", "Returns the string value of a key."),
    cmd("set", -3, WRITE | DENYOOM, set)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update", "variable_flags"])
        .doc(
            "string",
            "1.0.0",
            "O(1)",
            "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        ),
    cmd("setnx", 3, WRITE | DENYOOM | FAST, setnx)
        .keys(1, 1, 1)
        .key_flags(&["OW", "insert"])
        .doc(
            "string",
            "1.0.0",
            "O(1)",
            "Set the string value of a key only when the key doesn't exist.",
        ),
    cmd("setex", 4, WRITE | DENYOOM, setex)
        .keys(1, 1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "string",
            "2.0.0",
            "O(1)",
            "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.",
        ),
    cmd("psetex", 4, WRITE | DENYOOM, psetex)
        .keys(1, 1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "string",
            "2.6.0",
            "O(1)",
            "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.",
        ),
    cmd("getset", 3, WRITE | DENYOOM | FAST, getset)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "string",
            "1.0.0",
            "O(1)",
            "Returns the previous string value of a key after setting it to a new value.",
        ),
    cmd("getdel", 2, WRITE | FAST, getdel)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "string",
            "6.2.0",
            "O(1)",
            "Returns the string value of a key after deleting the key.",
        ),
    cmd("getex", -2, WRITE | FAST, getex)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "string",
            "6.2.0",
            "O(1)",
            "Returns the string value of a key after setting its expiration time.",
        ),
    cmd("mget", -2, READONLY | FAST, mget)
        .keys(1, -1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "string",
            "1.0.0",
            "O(N) where N is the number of keys to retrieve.",
            "Atomically returns the string values of one or more keys.",
        ),
    cmd("mset", -3, WRITE | DENYOOM, mset)
        .keys(1, -1, 2)
        .key_flags(&["OW", "update"])
        .doc(
            "string",
            "1.0.1",
            "O(N) where N is the number of keys to set.",
            "Atomically creates or modifies the string values of one or more keys.",
        ),
    cmd("msetnx", -3, WRITE | DENYOOM, msetnx)
        .keys(1, -1, 2)
        .key_flags(&["OW", "insert"])
        .doc(
            "string",
            "1.0.1",
            "O(N) where N is the number of keys to set.",
            "Atomically modifies the string values of one or more keys only when all keys don't exist.",
        ),
    cmd("append", 3, WRITE | DENYOOM | FAST, append)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "string",
            "2.0.0",
            "O(1). The amortized time complexity is O(1) assuming the appended value is small and the already present value is of any size, since the dynamic string library used by Redis will double the free space available on every reallocation.",
            "Appends a string to the value of a key. Creates the key if it doesn't exist.",
        ),
    cmd("strlen", 2, READONLY | FAST, strlen)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc(
            "string",
            "2.2.0",
            "O(1)",
            "Returns the length of a string value.",
        ),
    cmd("getrange", 4, READONLY, getrange)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "string",
            "2.4.0",
            GETRANGE_COMPLEXITY,
            "Returns a substring of the string stored at a key.",
        ),
    cmd("substr", 4, READONLY, getrange)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "string",
            "1.0.0",
            GETRANGE_COMPLEXITY,
            "Returns a substring from a string value.",
        ),
    cmd("setrange", 4, WRITE | DENYOOM, setrange)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "string",
            "2.2.0",
            "O(1), not counting the time taken to copy the new string in place. Usually, this string is very small so the amortized complexity is O(1). Otherwise, complexity is O(M) with M being the length of the value argument.",
            "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.",
        ),
    cmd("incr", 2, WRITE | DENYOOM | FAST, incr)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "string",
            "1.0.0",
            "O(1)",
            "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        ),
    cmd("decr", 2, WRITE | DENYOOM | FAST, decr)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "string",
            "1.0.0",
            "O(1)",
            "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.",
        ),
    cmd("incrby", 3, WRITE | DENYOOM | FAST, incrby)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "string",
            "1.0.0",
            "O(1)",
            "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        ),
    cmd("decrby", 3, WRITE | DENYOOM | FAST, decrby)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "string",
            "1.0.0",
            "O(1)",
            "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.",
        ),
    cmd("incrbyfloat", 3, WRITE | DENYOOM | FAST, incrbyfloat)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "string",
            "2.6.0",
            "O(1)",
            "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.",
        ),
    cmd("lcs", -3, READONLY, lcs)
        .keys(1, 2, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "string",
            "7.0.0",
            "O(N*M) where N and M are the lengths of s1 and s2, respectively",
            "Finds the longest common substring.",
        ),
];

const STRING_TOO_LONG: CmdError =
    CmdError::Static("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
const OFFSET_OUT_OF_RANGE: CmdError = CmdError::Static("ERR offset is out of range");
const FLOAT_OVERFLOW: CmdError = CmdError::Static("ERR increment would produce NaN or Infinity");

/// Writes a string value as a bulk reply; `WRONGTYPE` for other types.
pub fn reply_string(ctx: &mut Ctx, v: &Value) -> CmdResult {
    match v {
        Value::Str(s) => ctx.out.bulk(s),
        Value::Int(n) => ctx.out.bulk_int(*n),
        _ => return Err(CmdError::WrongType),
    }
    Ok(())
}

/// `GET key` → the value, or nil.
fn get(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    match shard.get(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            ctx.out.null();
            Ok(())
        }
        Some(e) => {
            ctx.lookup_stat(true);
            reply_string(ctx, e.value())
        }
    }
}

/// An absolute deadline from an EX/PX/EXAT/PXAT argument, or Redis's error.
pub fn deadline(ctx: &Ctx, unit: &[u8], arg: &[u8], cmd_name: &str) -> Result<u64, CmdError> {
    let n = args::int(arg)?;
    let invalid = || CmdError::Owned(format!("ERR invalid expire time in '{cmd_name}' command"));
    if n <= 0 {
        return Err(invalid());
    }
    let now = ctx.now as i64;
    let at = if args::is(unit, "ex") {
        n.checked_mul(1000).and_then(|ms| ms.checked_add(now))
    } else if args::is(unit, "px") {
        n.checked_add(now)
    } else if args::is(unit, "exat") {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    match at {
        Some(at) if at > 0 => Ok(at as u64),
        _ => Err(invalid()),
    }
}

/// The flags of SET's and GETEX's options (Redis's `OBJ_*`).
mod opt {
    pub const NX: u16 = 1 << 0;
    pub const XX: u16 = 1 << 1;
    pub const GET: u16 = 1 << 2;
    pub const KEEPTTL: u16 = 1 << 3;
    pub const PERSIST: u16 = 1 << 4;
    pub const EX: u16 = 1 << 5;
    pub const PX: u16 = 1 << 6;
    pub const EXAT: u16 = 1 << 7;
    pub const PXAT: u16 = 1 << 8;
    pub const ANY_EXPIRE: u16 = EX | PX | EXAT | PXAT;
    /// The expiry options with their names, which `deadline` takes as its unit.
    pub const EXPIRES: [(u16, &str); 4] = [(EX, "ex"), (PX, "px"), (EXAT, "exat"), (PXAT, "pxat")];
}

/// Options of SET or GETEX, as Redis's `parseExtendedStringArgumentsOrReply` reads them:
/// each option excludes the ones it conflicts with but may repeat (the last EX wins).
struct StringOpts<'a> {
    flags: u16,
    /// The expiry option's name and its argument, checked later (after syntax errors).
    expire: Option<(&'a [u8], &'a [u8])>,
}

impl StringOpts<'_> {
    fn has(&self, flags: u16) -> bool {
        self.flags & flags != 0
    }
}

/// Parses the options of SET (`for_set`) or GETEX from argument `start` on.
fn parse_string_opts<'a>(
    a: &Args<'a>,
    start: usize,
    for_set: bool,
) -> Result<StringOpts<'a>, CmdError> {
    use opt::*;
    let mut o = StringOpts {
        flags: 0,
        expire: None,
    };
    let mut j = start;
    while let Some(arg) = a.get(j) {
        let next = a.get(j + 1);
        let expire = EXPIRES.iter().find(|(_, name)| args::is(arg, name));
        if for_set && args::is(arg, "nx") && !o.has(XX) {
            o.flags |= NX;
        } else if for_set && args::is(arg, "xx") && !o.has(NX) {
            o.flags |= XX;
        } else if for_set && args::is(arg, "get") {
            o.flags |= GET;
        } else if for_set && args::is(arg, "keepttl") && !o.has(PERSIST | ANY_EXPIRE) {
            o.flags |= KEEPTTL;
        } else if !for_set && args::is(arg, "persist") && !o.has(KEEPTTL | ANY_EXPIRE) {
            o.flags |= PERSIST;
        } else if let (Some(&(flag, _)), Some(value)) = (expire, next)
            && !o.has(KEEPTTL | PERSIST | (ANY_EXPIRE & !flag))
        {
            o.flags |= flag;
            o.expire = Some((arg, value));
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts-ms|KEEPTTL]`, and the seed's
/// `SET key value ttl_ms`. → `OK`; nil when NX/XX prevented it; with GET, the old value.
fn set(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (key, value) = (&a[1], &a[2]);
    let (flags, expiry) = if a.len() == 4 && args::int(&a[3]).is_ok() {
        // The seed's form: a bare number of milliseconds.
        (0, Expiry::At(deadline(ctx, b"px", &a[3], "set")?))
    } else {
        let o = parse_string_opts(&a, 3, true)?;
        let expiry = match o.expire {
            Some((unit, arg)) => Expiry::At(deadline(ctx, unit, arg, "set")?),
            None if o.has(opt::KEEPTTL) => Expiry::Keep,
            None => Expiry::None,
        };
        (o.flags, expiry)
    };
    let (nx, xx, want_old) = (
        flags & opt::NX != 0,
        flags & opt::XX != 0,
        flags & opt::GET != 0,
    );
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let mark = ctx.out.len();
    let exists = match shard.lookup(key, h, ctx.now) {
        None => {
            if want_old {
                ctx.lookup_stat(false);
                ctx.out.null();
            }
            false
        }
        Some(e) => {
            if want_old {
                ctx.lookup_stat(true);
                reply_string(ctx, e.value())?;
            }
            true
        }
    };
    if (nx && exists) || (xx && !exists) {
        if !want_old {
            ctx.out.null();
        }
        return Ok(());
    }
    if let Err(e) = shard.put_str(key, h, value, expiry, ctx.now) {
        ctx.out.truncate(mark);
        return Err(e.into());
    }
    if !want_old {
        ctx.out.ok();
    }
    Ok(())
}

/// `SETNX key value` → 1 when it set the key, 0 when the key existed.
fn setnx(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    if shard.lookup(key, h, ctx.now).is_some() {
        ctx.out.int(0);
        return Ok(());
    }
    shard.put_str(key, h, &a[2], Expiry::None, ctx.now)?;
    ctx.out.int(1);
    Ok(())
}

/// Sets `a[1]` to `a[3]` for `a[2]` seconds (`unit` "ex") or milliseconds ("px").
fn set_with_ttl(ctx: &mut Ctx, a: Args, unit: &[u8], cmd_name: &str) -> CmdResult {
    let at = deadline(ctx, unit, &a[2], cmd_name)?;
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    store
        .write(h)
        .put_str(key, h, &a[3], Expiry::At(at), ctx.now)?;
    ctx.out.ok();
    Ok(())
}

/// `SETEX key seconds value` → `OK`.
fn setex(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_with_ttl(ctx, a, b"ex", "setex")
}

/// `PSETEX key milliseconds value` → `OK`.
fn psetex(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_with_ttl(ctx, a, b"px", "psetex")
}

/// `GETSET key value` → the old value, or nil; the key then holds `value`, without TTL.
fn getset(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let mark = ctx.out.len();
    match shard.lookup(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            ctx.out.null();
        }
        Some(e) => {
            ctx.lookup_stat(true);
            reply_string(ctx, e.value())?;
        }
    }
    if let Err(e) = shard.put_str(key, h, &a[2], Expiry::None, ctx.now) {
        ctx.out.truncate(mark);
        return Err(e.into());
    }
    Ok(())
}

/// `GETDEL key` → the value, or nil; the key is then deleted.
fn getdel(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let mark = ctx.out.len();
    match shard.lookup(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            ctx.out.null();
            return Ok(());
        }
        Some(e) => {
            ctx.lookup_stat(true);
            reply_string(ctx, e.value())?;
        }
    }
    if let Err(e) = shard.remove(key, h, ctx.now) {
        ctx.out.truncate(mark);
        return Err(e.into());
    }
    Ok(())
}

/// `GETEX key [EX s|PX ms|EXAT ts|PXAT ts-ms|PERSIST]` → the value, or nil; then sets or
/// removes its TTL. A deadline already past (EXAT/PXAT) deletes the key.
fn getex(ctx: &mut Ctx, a: Args) -> CmdResult {
    let o = parse_string_opts(&a, 2, false)?;
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.lookup_stat(false);
        ctx.out.null();
        return Ok(());
    };
    ctx.lookup_stat(true);
    if !e.value().is_string() {
        return Err(CmdError::WrongType);
    }
    // As Redis: the expiry is checked only once the key is known to be a string.
    let at = match o.expire {
        Some((unit, arg)) => Some(deadline(ctx, unit, arg, "getex")?),
        None => None,
    };
    let had_ttl = e.expire_at().is_some();
    let mark = ctx.out.len();
    reply_string(ctx, e.value())?;
    let written = match at {
        Some(at) if o.has(opt::EXAT | opt::PXAT) && at <= ctx.now => {
            shard.remove(key, h, ctx.now).map(drop)
        }
        Some(at) => shard.set_expire(key, h, at, ctx.now).map(drop),
        None if o.has(opt::PERSIST) && had_ttl => shard.set_expire(key, h, 0, ctx.now).map(drop),
        None => Ok(()),
    };
    if let Err(e) = written {
        ctx.out.truncate(mark);
        return Err(e.into());
    }
    Ok(())
}

/// `MGET key [key ...]` → an array of values, nil for missing keys and non-strings.
fn mget(ctx: &mut Ctx, a: Args) -> CmdResult {
    let store = &ctx.srv.store;
    ctx.out.array(a.len() - 1);
    for key in a.iter().skip(1) {
        let h = store.hash(key);
        let shard = store.read(h);
        match shard.get(key, h, ctx.now) {
            None => {
                ctx.lookup_stat(false);
                ctx.out.null();
            }
            Some(e) => {
                ctx.lookup_stat(true);
                if e.value().is_string() {
                    reply_string(ctx, e.value())?;
                } else {
                    ctx.out.null();
                }
            }
        }
    }
    Ok(())
}

/// Sets every key/value pair of `a` atomically, as one journal record; with `only_new`,
/// only when none of the keys exists. Returns whether it set them.
fn mset_all(ctx: &mut Ctx, a: &Args, only_new: bool, cmd_name: &str) -> Result<bool, CmdError> {
    if a.len().is_multiple_of(2) {
        return Err(CmdError::Arity(cmd_name.to_string()));
    }
    let store = &ctx.srv.store;
    let keys: Vec<(&[u8], KeyHash)> = a
        .iter()
        .skip(1)
        .step_by(2)
        .map(|k| (k, store.hash(k)))
        .collect();
    let values: Vec<&[u8]> = a.iter().skip(2).step_by(2).collect();
    let mut shards = store.write_many(keys.iter().map(|&(_, h)| h));
    if only_new
        && keys
            .iter()
            .any(|&(k, h)| shards.get(k, h, ctx.now).is_some())
    {
        return Ok(false);
    }
    let effects: Vec<Effect> = keys
        .iter()
        .zip(&values)
        .map(|(&(key, _), value)| Effect::SetStr {
            key,
            parts: std::slice::from_ref(value),
            expire_at: 0,
        })
        .collect();
    shards.commit(&effects, ctx.now)?;
    Ok(true)
}

/// `MSET key value [key value ...]` → `OK`. Atomic across keys.
fn mset(ctx: &mut Ctx, a: Args) -> CmdResult {
    mset_all(ctx, &a, false, "mset")?;
    ctx.out.ok();
    Ok(())
}

/// `MSETNX key value [key value ...]` → 1 when every key was absent and all were set,
/// else 0 and nothing is set.
fn msetnx(ctx: &mut Ctx, a: Args) -> CmdResult {
    let set = mset_all(ctx, &a, true, "msetnx")?;
    ctx.out.int(set as i64);
    Ok(())
}

/// Redis's `checkStringLength`: a string may not grow past proto-max-bulk-len.
fn check_string_length(ctx: &Ctx, size: u64, append: u64) -> CmdResult {
    let max = ctx
        .srv
        .runtime
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed);
    match size.checked_add(append) {
        Some(total) if total <= max => Ok(()),
        _ => Err(STRING_TOO_LONG),
    }
}

/// `APPEND key value` → the length of the string after appending (the key is created
/// if missing; its TTL is kept).
fn append(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (key, suffix) = (&a[1], &a[2]);
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    if let Some(e) = shard.lookup(key, h, ctx.now) {
        let len = e.value().string_len().ok_or(CmdError::WrongType)?;
        check_string_length(ctx, len as u64, suffix.len() as u64)?;
    }
    let len = shard.append(key, h, suffix, ctx.now)?;
    ctx.out.int(len as i64);
    Ok(())
}

/// `STRLEN key` → the length of the value, 0 when the key is missing.
fn strlen(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let len = match shard.get(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            0
        }
        Some(e) => {
            ctx.lookup_stat(true);
            e.value().string_len().ok_or(CmdError::WrongType)?
        }
    };
    ctx.out.int(len as i64);
    Ok(())
}

/// The bytes GETRANGE returns for `start..=end` (negative counts from the end), with
/// Redis's clamping.
fn substring(s: &[u8], start: i64, end: i64) -> &[u8] {
    if start < 0 && end < 0 && start > end {
        return &[];
    }
    let len = s.len() as i64;
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.max(0).min(len - 1);
    if start > end || len == 0 {
        return &[];
    }
    &s[start as usize..=end as usize]
}

/// `GETRANGE key start end` (and `SUBSTR`) → the substring, empty when out of range or
/// the key is missing.
fn getrange(ctx: &mut Ctx, a: Args) -> CmdResult {
    let start = args::int(&a[2])?;
    let end = args::int(&a[3])?;
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let Some(e) = shard.get(key, h, ctx.now) else {
        ctx.lookup_stat(false);
        ctx.out.bulk(b"");
        return Ok(());
    };
    ctx.lookup_stat(true);
    e.value()
        .with_str(|s| ctx.out.bulk(substring(s, start, end)))
        .ok_or(CmdError::WrongType)
}

/// `SETRANGE key offset value` → the length of the string after writing `value` at
/// `offset` (zero-padded; the key is created if missing; its TTL is kept).
fn setrange(ctx: &mut Ctx, a: Args) -> CmdResult {
    let offset = args::int(&a[2])?;
    if offset < 0 {
        return Err(OFFSET_OUT_OF_RANGE);
    }
    let (key, value) = (&a[1], &a[3]);
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let current_len = match shard.lookup(key, h, ctx.now) {
        None => 0,
        Some(e) => e.value().string_len().ok_or(CmdError::WrongType)?,
    };
    if value.is_empty() {
        // Writing nothing changes nothing (and creates no key).
        ctx.out.int(current_len as i64);
        return Ok(());
    }
    check_string_length(ctx, offset as u64, value.len() as u64)?;
    let len = shard.set_range(key, h, offset as usize, value, ctx.now)?;
    ctx.out.int(len as i64);
    Ok(())
}

/// Adds `delta` to the integer at `key` (0 when missing), keeping its TTL, and replies
/// with the result.
fn incr_by(ctx: &mut Ctx, key: &[u8], delta: i64) -> CmdResult {
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let current = match shard.lookup(key, h, ctx.now).map(|e| e.value()) {
        None => 0,
        Some(Value::Int(n)) => *n,
        // SETRANGE and APPEND can leave a canonical integer in text form.
        Some(Value::Str(s)) => parse_canonical_i64(s).ok_or(CmdError::NotInteger)?,
        Some(_) => return Err(CmdError::WrongType),
    };
    let n = current.checked_add(delta).ok_or(CmdError::Overflow)?;
    shard.put(key, h, Value::Int(n), Expiry::Keep, ctx.now)?;
    ctx.out.int(n);
    Ok(())
}

/// `INCR key` → the value after adding 1.
fn incr(ctx: &mut Ctx, a: Args) -> CmdResult {
    incr_by(ctx, &a[1], 1)
}

/// `DECR key` → the value after subtracting 1.
fn decr(ctx: &mut Ctx, a: Args) -> CmdResult {
    incr_by(ctx, &a[1], -1)
}

/// `INCRBY key increment` → the value after adding `increment`.
fn incrby(ctx: &mut Ctx, a: Args) -> CmdResult {
    let delta = args::int(&a[2])?;
    incr_by(ctx, &a[1], delta)
}

/// `DECRBY key decrement` → the value after subtracting `decrement`.
fn decrby(ctx: &mut Ctx, a: Args) -> CmdResult {
    let delta = args::int(&a[2])?;
    let delta = delta
        .checked_neg()
        .ok_or(CmdError::Static("ERR decrement would overflow"))?;
    incr_by(ctx, &a[1], delta)
}

/// `INCRBYFLOAT key increment` → the new value as text, computed and written exactly as
/// Redis does with `long double` (so "10.5" + "0.1" is "10.6"); the TTL is kept.
fn incrbyfloat(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let current = match shard.lookup(key, h, ctx.now).map(|e| e.value()) {
        None => Parsed::Finite(LongDouble::ZERO),
        Some(Value::Int(n)) => Parsed::Finite(LongDouble::from_i64(*n)),
        Some(Value::Str(s)) => LongDouble::parse(s).ok_or(CmdError::NotFloat)?,
        Some(_) => return Err(CmdError::WrongType),
    };
    let increment = LongDouble::parse(&a[2]).ok_or(CmdError::NotFloat)?;
    let sum = match (current, increment) {
        (Parsed::Finite(x), Parsed::Finite(y)) => x.checked_add(y),
        _ => None,
    }
    .ok_or(FLOAT_OVERFLOW)?;
    let text = sum.to_human().into_bytes();
    let mark = ctx.out.len();
    ctx.out.bulk(&text);
    // Kept as text, not integer-encoded, as Redis keeps the result of INCRBYFLOAT.
    if let Err(e) = shard.put(key, h, Value::bytes(text), Expiry::Keep, ctx.now) {
        ctx.out.truncate(mark);
        return Err(e.into());
    }
    Ok(())
}

/// What LCS found at one of its keys.
enum LcsInput {
    Text(Vec<u8>),
    WrongType,
}

fn lcs_input(ctx: &Ctx, key: &[u8]) -> LcsInput {
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    match shard.get(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            LcsInput::Text(Vec::new())
        }
        Some(e) => {
            ctx.lookup_stat(true);
            e.value()
                .with_str(|s| LcsInput::Text(s.to_vec()))
                .unwrap_or(LcsInput::WrongType)
        }
    }
}

/// One matching range of LCS IDX: start and end in each string, inclusive.
struct LcsMatch {
    a: (usize, usize),
    b: (usize, usize),
}

/// `LCS key1 key2 [LEN] [IDX] [MINMATCHLEN len] [WITHMATCHLEN]` → the longest common
/// subsequence; with LEN its length; with IDX a map of `matches` (ranges, last first) and
/// `len`. Missing keys count as empty strings.
fn lcs(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (x, y) = match (lcs_input(ctx, &a[1]), lcs_input(ctx, &a[2])) {
        (LcsInput::Text(x), LcsInput::Text(y)) => (x, y),
        _ => {
            return Err(CmdError::Static(
                "ERR The specified keys must contain string values",
            ));
        }
    };
    let (mut get_len, mut get_idx, mut with_match_len) = (false, false, false);
    let mut min_match_len: i64 = 0;
    let mut j = 3;
    while let Some(arg) = a.get(j) {
        if args::is(arg, "idx") {
            get_idx = true;
        } else if args::is(arg, "len") {
            get_len = true;
        } else if args::is(arg, "withmatchlen") {
            with_match_len = true;
        } else if args::is(arg, "minmatchlen") && j + 1 < a.len() {
            min_match_len = args::int(&a[j + 1])?.max(0);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if get_len && get_idx {
        return Err(CmdError::Static(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    if x.len() >= u32::MAX as usize - 1 || y.len() >= u32::MAX as usize - 1 {
        return Err(CmdError::Static("ERR String too long for LCS"));
    }
    let (alen, blen) = (x.len(), y.len());
    let width = blen + 1;
    let cells = (alen as u128 + 1) * (blen as u128 + 1);
    let max = ctx
        .srv
        .runtime
        .proto_max_bulk_len
        .load(std::sync::atomic::Ordering::Relaxed);
    if cells * 4 > max as u128 {
        return Err(CmdError::Static(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let cells = cells as usize;
    let mut table: Vec<u32> = Vec::new();
    if table.try_reserve_exact(cells).is_err() {
        return Err(CmdError::Static(
            "ERR Insufficient memory, failed allocating transient memory for LCS",
        ));
    }
    table.resize(cells, 0);
    // table[i * width + j] is the LCS length of x[..i] and y[..j].
    for i in 1..=alen {
        for j in 1..=blen {
            table[i * width + j] = if x[i - 1] == y[j - 1] {
                table[(i - 1) * width + j - 1] + 1
            } else {
                table[(i - 1) * width + j].max(table[i * width + j - 1])
            };
        }
    }
    let total = table[alen * width + blen] as usize;

    // Walk back from the end, collecting the subsequence and, for IDX, its contiguous
    // ranges (in the order Redis emits them: from the end of the strings).
    let compute_lcs = get_idx || !get_len;
    let mut result = if compute_lcs {
        vec![0u8; total]
    } else {
        Vec::new()
    };
    let mut matches = Vec::new();
    let mut idx = total;
    let no_range = alen;
    let (mut a_start, mut a_end, mut b_start, mut b_end) = (no_range, 0, 0, 0);
    let (mut i, mut j) = (alen, blen);
    while compute_lcs && i > 0 && j > 0 {
        let mut emit = false;
        if x[i - 1] == y[j - 1] {
            result[idx - 1] = x[i - 1];
            if a_start == no_range {
                (a_start, a_end, b_start, b_end) = (i - 1, i - 1, j - 1, j - 1);
            } else if a_start == i && b_start == j {
                a_start -= 1;
                b_start -= 1;
            } else {
                emit = true;
            }
            if a_start == 0 || b_start == 0 {
                emit = true;
            }
            idx -= 1;
            i -= 1;
            j -= 1;
        } else {
            if table[(i - 1) * width + j] > table[i * width + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            if a_start != no_range {
                emit = true;
            }
        }
        if emit {
            let len = a_end.wrapping_sub(a_start).wrapping_add(1);
            if get_idx && (min_match_len == 0 || len as i64 >= min_match_len) {
                matches.push(LcsMatch {
                    a: (a_start, a_end),
                    b: (b_start, b_end),
                });
            }
            a_start = no_range;
        }
    }

    if get_idx {
        ctx.out.map(2);
        ctx.out.bulk(b"matches");
        ctx.out.array(matches.len());
        for m in &matches {
            ctx.out.array(2 + with_match_len as usize);
            ctx.out.array(2);
            ctx.out.int(m.a.0 as i64);
            ctx.out.int(m.a.1 as i64);
            ctx.out.array(2);
            ctx.out.int(m.b.0 as i64);
            ctx.out.int(m.b.1 as i64);
            if with_match_len {
                ctx.out.int((m.a.1 - m.a.0 + 1) as i64);
            }
        }
        ctx.out.bulk(b"len");
        ctx.out.int(total as i64);
    } else if get_len {
        ctx.out.int(total as i64);
    } else {
        ctx.out.bulk(&result);
    }
    Ok(())
}

/// Commands run against a store that holds a key of another type. No command can create
/// one yet, so the WRONGTYPE paths are checked here, below the network layer.
#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dse_engine::Value;
    use dse_net::ConnRef;
    use dse_proto::{Args, Reply, Resp};

    use crate::clients::ClientMeta;
    use crate::command::Ctx;
    use crate::server::{Server, unix_ms};
    use crate::session::Session;

    fn server() -> Server {
        Server::for_tests()
    }

    /// Runs one command as the service does and returns its raw reply.
    fn run(srv: &Server, argv: &[&[u8]]) -> String {
        let mut base = Vec::new();
        let mut ranges = Vec::new();
        for a in argv {
            ranges.push(base.len()..base.len() + a.len());
            base.extend_from_slice(a);
        }
        let args = Args::from_parts(&base, &ranges);
        let conn = ConnRef {
            loop_index: 0,
            token: 0,
            id: 1,
        };
        let mut sess = Session::new(
            conn,
            Arc::new(ClientMeta::new(conn, String::new(), String::new(), 0)),
        );
        let mut buf = Vec::new();
        let mut out = Reply::new(&mut buf, Resp::V2);
        match srv.table.resolve(&args) {
            Err(e) => out.error(&e.message()),
            Ok(idx) => {
                let mut ctx = Ctx {
                    srv,
                    sess: &mut sess,
                    out: &mut out,
                    now: unix_ms(),
                    cmd: idx,
                    loop_index: 0,
                };
                if let Err(e) = (srv.table.specs[idx].handler)(&mut ctx, args) {
                    ctx.error(&e);
                }
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn put_list(srv: &Server, key: &[u8]) {
        let h = srv.store.hash(key);
        let list = Value::List(Box::new([b"x".to_vec()].into_iter().collect()));
        srv.store
            .write(h)
            .put(key, h, list, dse_engine::Expiry::None, 0)
            .unwrap();
    }

    const WRONGTYPE: &str =
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";

    #[test]
    fn string_commands_refuse_other_types() {
        let srv = server();
        put_list(&srv, b"l");
        run(&srv, &[b"SET", b"s", b"abc"]);
        let refused: &[&[&[u8]]] = &[
            &[b"GET", b"l"],
            &[b"SET", b"l", b"v", b"GET"],
            &[b"GETSET", b"l", b"v"],
            &[b"GETDEL", b"l"],
            &[b"GETEX", b"l"],
            &[b"GETEX", b"l", b"EX", b"0"],
            &[b"GETEX", b"l", b"PERSIST"],
            &[b"APPEND", b"l", b"x"],
            &[b"STRLEN", b"l"],
            &[b"GETRANGE", b"l", b"0", b"-1"],
            &[b"SUBSTR", b"l", b"0", b"-1"],
            &[b"SETRANGE", b"l", b"0", b"x"],
            &[b"SETRANGE", b"l", b"0", b""],
            &[b"INCR", b"l"],
            &[b"DECR", b"l"],
            &[b"INCRBY", b"l", b"2"],
            &[b"DECRBY", b"l", b"2"],
            &[b"INCRBYFLOAT", b"l", b"1.5"],
            &[b"INCRBYFLOAT", b"l", b"abc"],
        ];
        for argv in refused {
            assert_eq!(run(&srv, argv), WRONGTYPE, "{argv:?}");
        }
        // Argument errors come first where Redis checks them first.
        assert_eq!(
            run(&srv, &[b"INCRBY", b"l", b"x"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(
            run(&srv, &[b"GETEX", b"l", b"FOO"]),
            "-ERR syntax error\r\n"
        );
        assert_eq!(
            run(&srv, &[b"SETRANGE", b"l", b"-1", b"x"]),
            "-ERR offset is out of range\r\n"
        );
        for argv in [
            &[b"LCS".as_slice(), b"l", b"s"][..],
            &[b"LCS", b"s", b"l", b"LEN"],
            &[b"LCS", b"l", b"l", b"FOO"],
        ] {
            assert_eq!(
                run(&srv, argv),
                "-ERR The specified keys must contain string values\r\n"
            );
        }
        // MGET answers nil for a key of another type.
        assert_eq!(
            run(&srv, &[b"MGET", b"s", b"l", b"none"]),
            "*3\r\n$3\r\nabc\r\n$-1\r\n$-1\r\n"
        );
        // Writes that replace the value whatever its type.
        assert_eq!(run(&srv, &[b"SETNX", b"l", b"v"]), ":0\r\n");
        assert_eq!(run(&srv, &[b"MSETNX", b"l", b"v", b"new", b"v"]), ":0\r\n");
        assert_eq!(run(&srv, &[b"SET", b"l", b"v"]), "+OK\r\n");
        assert_eq!(run(&srv, &[b"GET", b"l"]), "$1\r\nv\r\n");
        for (i, overwrite) in [
            &[b"SETEX".as_slice(), b"l", b"100", b"w"][..],
            &[b"PSETEX", b"l", b"100000", b"w"],
            &[b"MSET", b"l", b"w"],
        ]
        .iter()
        .enumerate()
        {
            put_list(&srv, b"l");
            assert_eq!(run(&srv, overwrite), "+OK\r\n", "{i}");
            assert_eq!(run(&srv, &[b"GET", b"l"]), "$1\r\nw\r\n");
        }
        // The refused commands left the list alone.
        put_list(&srv, b"l2");
        run(&srv, &[b"APPEND", b"l2", b"x"]);
        run(&srv, &[b"INCR", b"l2"]);
        let h = srv.store.hash(b"l2");
        assert_eq!(
            srv.store
                .read(h)
                .get(b"l2", h, 0)
                .map(|e| e.value().type_name()),
            Some("list")
        );
    }
}

//! Hash commands.
//!
//! Writes log `HashSet`/`HashDel` effects with only the fields they change, through the
//! shard's `commit`.

use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use dse_engine::{Effect, Value, glob_match};
use dse_proto::Args;

use crate::args;
use crate::cmd::keys::parse_cursor;
use crate::cmd::lists::{committed, with_slice};
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};
use crate::long_double::{LongDouble, Parsed};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("hset", -4, WRITE | DENYOOM | FAST, hset)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "hash",
            "2.0.0",
            "O(1) for each field/value pair added, so O(N) to add N field/value pairs when the command is called with multiple field/value pairs.",
            "Creates or modifies the value of a field in a hash.",
        ),
    cmd("hsetnx", 4, WRITE | DENYOOM | FAST, hsetnx)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "hash",
            "2.0.0",
            "O(1)",
            "Sets the value of a field in a hash only when the field doesn't exist.",
        ),
    cmd("hmset", -4, WRITE | DENYOOM | FAST, hmset)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "hash",
            "2.0.0",
            "O(N) where N is the number of fields being set.",
            "Sets the values of multiple fields.",
        ),
    cmd("hget", 3, READONLY | FAST, hget)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "hash",
            "2.0.0",
            "O(1)",
            "Returns the value of a field in a hash.",
        ),
    cmd("hmget", -3, READONLY | FAST, hmget)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "hash",
            "2.0.0",
            "O(N) where N is the number of fields being requested.",
            "Returns the values of all fields in a hash.",
        ),
    cmd("hdel", -3, WRITE | FAST, hdel)
        .keys(1, 1, 1)
        .key_flags(&["RW", "delete"])
        .doc(
            "hash",
            "2.0.0",
            "O(N) where N is the number of fields to be removed.",
            "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.",
        ),
    cmd("hlen", 2, READONLY | FAST, hlen)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc(
            "hash",
            "2.0.0",
            "O(1)",
            "Returns the number of fields in a hash.",
        ),
    cmd("hstrlen", 3, READONLY | FAST, hstrlen)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc(
            "hash",
            "3.2.0",
            "O(1)",
            "Returns the length of the value of a field.",
        ),
    cmd("hexists", 3, READONLY | FAST, hexists)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc(
            "hash",
            "2.0.0",
            "O(1)",
            "Determines whether a field exists in a hash.",
        ),
    cmd("hkeys", 2, READONLY, hkeys)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "hash",
            "2.0.0",
            "O(N) where N is the size of the hash.",
            "Returns all fields in a hash.",
        ),
    cmd("hvals", 2, READONLY, hvals)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "hash",
            "2.0.0",
            "O(N) where N is the size of the hash.",
            "Returns all values in a hash.",
        ),
    cmd("hgetall", 2, READONLY, hgetall)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "hash",
            "2.0.0",
            "O(N) where N is the size of the hash.",
            "Returns all fields and values in a hash.",
        ),
    cmd("hincrby", 4, WRITE | DENYOOM | FAST, hincrby)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "hash",
            "2.0.0",
            "O(1)",
            "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.",
        ),
    cmd("hincrbyfloat", 4, WRITE | DENYOOM | FAST, hincrbyfloat)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "hash",
            "2.6.0",
            "O(1)",
            "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.",
        ),
    cmd("hrandfield", -2, READONLY, hrandfield)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "hash",
            "6.2.0",
            "O(N) where N is the number of fields returned",
            "Returns one or more random fields from a hash.",
        ),
    cmd("hscan", -3, READONLY, hscan)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "hash",
            "2.8.0",
            "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection.",
            "Iterates over fields and values of a hash.",
        ),
];

type Hash = hashbrown::HashMap<Box<[u8]>, Vec<u8>, foldhash::fast::RandomState>;

/// The hash a value holds; WRONGTYPE for another type.
fn as_hash(v: &Value) -> Result<&Hash, CmdError> {
    match v {
        Value::Hash(h) => Ok(h),
        _ => Err(CmdError::WrongType),
    }
}

/// Runs `f` on the hash at `key` for a read command (`None` when the key is missing),
/// counting the keyspace hit or miss.
fn read_hash(
    ctx: &mut Ctx,
    key: &[u8],
    f: impl FnOnce(&mut Ctx, Option<&Hash>) -> CmdResult,
) -> CmdResult {
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let e = shard.get(key, h, ctx.now);
    ctx.lookup_stat(e.is_some());
    match e {
        None => f(ctx, None),
        Some(e) => f(ctx, Some(as_hash(e.value())?)),
    }
}

/// Sets the pairs of `a[2..]` and returns how many fields were new.
fn set_pairs(ctx: &mut Ctx, a: &Args) -> Result<usize, CmdError> {
    if a.len() % 2 == 1 {
        return Err(CmdError::Arity(
            if args::is(&a[0], "hmset") {
                "hmset"
            } else {
                "hset"
            }
            .to_string(),
        ));
    }
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let before = match shard.lookup(key, h, ctx.now) {
        None => 0,
        Some(e) => as_hash(e.value())?.len(),
    };
    let now = ctx.now;
    let pairs = (2..a.len()).step_by(2).map(|i| (&a[i], &a[i + 1]));
    with_slice(pairs, |pairs| {
        shard.commit(&[Effect::HashSet { key, pairs }], now)
    })?;
    let after = match shard.get(key, h, now).map(|e| e.value()) {
        Some(Value::Hash(m)) => m.len(),
        _ => 0,
    };
    Ok(after - before)
}

/// `HSET key field value [field value ...]` → the number of fields that were added (not
/// counting those updated).
fn hset(ctx: &mut Ctx, a: Args) -> CmdResult {
    let added = set_pairs(ctx, &a)?;
    ctx.out.int(added as i64);
    Ok(())
}

/// `HMSET key field value [field value ...]` → `OK` (HSET's deprecated form).
fn hmset(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_pairs(ctx, &a)?;
    ctx.out.ok();
    Ok(())
}

/// `HSETNX key field value` → 1 when the field was set, 0 when it already existed.
fn hsetnx(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (key, field, value) = (&a[1], &a[2], &a[3]);
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    if let Some(e) = shard.lookup(key, h, ctx.now)
        && as_hash(e.value())?.contains_key(field)
    {
        ctx.out.int(0);
        return Ok(());
    }
    shard.commit(
        &[Effect::HashSet {
            key,
            pairs: &[(field, value)],
        }],
        ctx.now,
    )?;
    ctx.out.int(1);
    Ok(())
}

/// `HGET key field` → the value, or nil.
fn hget(ctx: &mut Ctx, a: Args) -> CmdResult {
    let field = &a[2];
    read_hash(ctx, &a[1], |ctx, hash| {
        match hash.and_then(|m| m.get(field)) {
            Some(v) => ctx.out.bulk(v),
            None => ctx.out.null(),
        }
        Ok(())
    })
}

/// `HMGET key field [field ...]` → the value of each field, nil where it is missing.
fn hmget(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_hash(ctx, &a[1], |ctx, hash| {
        ctx.out.array(a.len() - 2);
        for field in a.iter().skip(2) {
            match hash.and_then(|m| m.get(field)) {
                Some(v) => ctx.out.bulk(v),
                None => ctx.out.null(),
            }
        }
        Ok(())
    })
}

/// `HDEL key field [field ...]` → the number of fields removed; the hash is deleted when
/// none remain.
fn hdel(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.out.int(0);
        return Ok(());
    };
    let m = as_hash(e.value())?;
    let before = m.len();
    let fields = a.tail(2);
    if !fields.iter().any(|f| m.contains_key(f)) {
        ctx.out.int(0);
        return Ok(());
    }
    let now = ctx.now;
    with_slice(fields.iter(), |fields| {
        shard.commit(&[Effect::HashDel { key, fields }], now)
    })?;
    let after = match shard.get(key, h, now).map(|e| e.value()) {
        Some(Value::Hash(m)) => m.len(),
        _ => 0,
    };
    ctx.out.int((before - after) as i64);
    Ok(())
}

/// `HLEN key` → the number of fields, 0 when the key is missing.
fn hlen(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_hash(ctx, &a[1], |ctx, hash| {
        ctx.out.int(hash.map_or(0, |m| m.len()) as i64);
        Ok(())
    })
}

/// `HSTRLEN key field` → the length of the field's value, 0 when it is missing.
fn hstrlen(ctx: &mut Ctx, a: Args) -> CmdResult {
    let field = &a[2];
    read_hash(ctx, &a[1], |ctx, hash| {
        ctx.out
            .int(hash.and_then(|m| m.get(field)).map_or(0, |v| v.len()) as i64);
        Ok(())
    })
}

/// `HEXISTS key field` → 1 when the field exists, else 0.
fn hexists(ctx: &mut Ctx, a: Args) -> CmdResult {
    let field = &a[2];
    read_hash(ctx, &a[1], |ctx, hash| {
        ctx.out
            .int(hash.is_some_and(|m| m.contains_key(field)) as i64);
        Ok(())
    })
}

/// `HKEYS key` → every field.
fn hkeys(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_hash(ctx, &a[1], |ctx, hash| {
        let Some(m) = hash else {
            ctx.out.array(0);
            return Ok(());
        };
        ctx.out.array(m.len());
        for k in m.keys() {
            ctx.out.bulk(k);
        }
        Ok(())
    })
}

/// `HVALS key` → every value.
fn hvals(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_hash(ctx, &a[1], |ctx, hash| {
        let Some(m) = hash else {
            ctx.out.array(0);
            return Ok(());
        };
        ctx.out.array(m.len());
        for v in m.values() {
            ctx.out.bulk(v);
        }
        Ok(())
    })
}

/// `HGETALL key` → every field and value: a map in RESP3, a flat array in RESP2.
fn hgetall(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_hash(ctx, &a[1], |ctx, hash| {
        let Some(m) = hash else {
            ctx.out.map(0);
            return Ok(());
        };
        ctx.out.map(m.len());
        for (k, v) in m.iter() {
            ctx.out.bulk(k);
            ctx.out.bulk(v);
        }
        Ok(())
    })
}

/// Reads the field of the hash at `key` for an increment, under the write lock: `f` gets
/// the current value (`None` when the field or the key is missing) and returns the new
/// text, which is logged and applied. The reply is written by `f` too.
fn update_field(
    ctx: &mut Ctx,
    key: &[u8],
    field: &[u8],
    f: impl FnOnce(&mut Ctx, Option<&[u8]>) -> Result<Vec<u8>, CmdError>,
) -> CmdResult {
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let current = match shard.lookup(key, h, ctx.now) {
        None => None,
        Some(e) => as_hash(e.value())?.get(field).map(|v| v.as_slice()),
    };
    let mark = ctx.out.len();
    let new = f(ctx, current)?;
    let done = shard.commit(
        &[Effect::HashSet {
            key,
            pairs: &[(field, &new)],
        }],
        ctx.now,
    );
    committed(ctx.out, mark, done)
}

/// `HINCRBY key field increment` → the field's integer value after adding `increment`
/// (0 when missing).
fn hincrby(ctx: &mut Ctx, a: Args) -> CmdResult {
    let incr = args::int(&a[3])?;
    update_field(ctx, &a[1], &a[2], |ctx, current| {
        let value = match current {
            None => 0,
            Some(v) => {
                args::int(v).map_err(|_| CmdError::Static("ERR hash value is not an integer"))?
            }
        };
        let n = value.checked_add(incr).ok_or(CmdError::Overflow)?;
        ctx.out.int(n);
        Ok(itoa::Buffer::new().format(n).as_bytes().to_vec())
    })
}

/// `HINCRBYFLOAT key field increment` → the field's value after adding `increment`,
/// computed and written as Redis does with `long double`.
fn hincrbyfloat(ctx: &mut Ctx, a: Args) -> CmdResult {
    let incr = match LongDouble::parse(&a[3]) {
        Some(Parsed::Finite(x)) => x,
        Some(Parsed::Infinite) => return Err(CmdError::Static("ERR value is NaN or Infinity")),
        None => return Err(CmdError::NotFloat),
    };
    update_field(ctx, &a[1], &a[2], |ctx, current| {
        let value = match current {
            None => Parsed::Finite(LongDouble::ZERO),
            Some(v) => {
                LongDouble::parse(v).ok_or(CmdError::Static("ERR hash value is not a float"))?
            }
        };
        let sum = match value {
            Parsed::Finite(x) => x.checked_add(incr),
            Parsed::Infinite => None,
        }
        .ok_or(CmdError::Static(
            "ERR increment would produce NaN or Infinity",
        ))?;
        let text = sum.to_human().into_bytes();
        ctx.out.bulk(&text);
        Ok(text)
    })
}

/// Most elements a negative HRANDFIELD count may ask for. Redis would try to build any
/// reply, however large (`HRANDFIELD h -9223372036854775807` exhausts its memory); here
/// such a count is refused instead.
const MAX_RANDOM_REPEATS: u64 = 1 << 22;

/// `HRANDFIELD key [count [WITHVALUES]]` → a random field (nil when the key is missing);
/// with a count, up to `count` distinct fields, or `-count` fields that may repeat; with
/// WITHVALUES, each field's value too (pairs as arrays in RESP3, flat in RESP2).
fn hrandfield(ctx: &mut Ctx, a: Args) -> CmdResult {
    if a.len() == 2 {
        return read_hash(ctx, &a[1], |ctx, hash| {
            match hash {
                Some(m) if !m.is_empty() => {
                    let i = rand::random_range(0..m.len());
                    ctx.out.bulk(m.keys().nth(i).map_or(&[][..], |k| k));
                }
                _ => ctx.out.null(),
            }
            Ok(())
        });
    }
    let count = args::int(&a[2])?;
    if count == i64::MIN {
        return Err(CmdError::Static(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        ));
    }
    if a.len() > 4 || (a.len() == 4 && !args::is(&a[3], "withvalues")) {
        return Err(CmdError::Syntax);
    }
    let with_values = a.len() == 4;
    if (with_values && count.unsigned_abs() > (i64::MAX / 2) as u64)
        || (count < 0 && count.unsigned_abs() > MAX_RANDOM_REPEATS)
    {
        return Err(CmdError::Static("ERR value is out of range"));
    }
    read_hash(ctx, &a[1], |ctx, hash| {
        let m = match hash {
            Some(m) if count != 0 => m,
            _ => {
                ctx.out.array(0);
                return Ok(());
            }
        };
        let chosen = random_fields(m, count);
        if with_values && ctx.out.is_resp3() {
            ctx.out.array(chosen.len());
            for (k, v) in chosen {
                ctx.out.array(2);
                ctx.out.bulk(k);
                ctx.out.bulk(v);
            }
        } else if with_values {
            ctx.out.array(2 * chosen.len());
            for (k, v) in chosen {
                ctx.out.bulk(k);
                ctx.out.bulk(v);
            }
        } else {
            ctx.out.array(chosen.len());
            for (k, _) in chosen {
                ctx.out.bulk(k);
            }
        }
        Ok(())
    })
}

/// A random draw of fields and values from `m` (see [`random_positions`]), in the order
/// drawn.
fn random_fields(m: &Hash, count: i64) -> Vec<(&[u8], &[u8])> {
    let positions = random_positions(m.len(), count);
    // Walk the hash once, in position order, placing each pick where it was drawn.
    let mut order: Vec<(usize, usize)> = positions.iter().copied().zip(0..).collect();
    order.sort_unstable();
    let mut chosen: Vec<(&[u8], &[u8])> = vec![Default::default(); positions.len()];
    let mut next = order.iter().peekable();
    for (pos, (k, v)) in m.iter().enumerate() {
        while let Some(&&(p, slot)) = next.peek() {
            if p != pos {
                break;
            }
            chosen[slot] = (k, v);
            next.next();
        }
        if next.peek().is_none() {
            break;
        }
    }
    chosen
}

/// Positions (in iteration order) of a random draw from `len` elements: `count` distinct
/// ones (all of them, in order, when `count >= len`), or `-count` with repeats when
/// `count` is negative.
fn random_positions(len: usize, count: i64) -> Vec<usize> {
    use rand::Rng;
    let mut rng = rand::rng();
    if count < 0 {
        let n = count.unsigned_abs() as usize;
        return (0..n).map(|_| rng.random_range(0..len)).collect();
    }
    let n = count as u64;
    if n >= len as u64 {
        return (0..len).collect();
    }
    let n = n as usize;
    if n * 3 > len {
        // Many of them: shuffle the first n of all positions.
        let mut all: Vec<usize> = (0..len).collect();
        for i in 0..n {
            let j = rng.random_range(i..len);
            all.swap(i, j);
        }
        all.truncate(n);
        all
    } else {
        // Few of them: draw until n distinct.
        let mut seen =
            hashbrown::HashSet::with_capacity_and_hasher(n, foldhash::fast::RandomState::default());
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let p = rng.random_range(0..len);
            if seen.insert(p) {
                out.push(p);
            }
        }
        out
    }
}

/// Hashes up to this many fields are returned whole by one HSCAN call with cursor 0, as
/// Redis does for its compact (listpack) hashes.
const SCAN_WHOLE: usize = 128;
/// A large hash is scanned in at least `len / SCAN_PIECES` fields per call: each call
/// reads every field, so fewer, larger pieces keep a full iteration near O(N).
const SCAN_PIECES: usize = 1024;

/// The order HSCAN walks a large hash in: by this hash of each field, which depends on
/// nothing but the field (not on the table's layout, which changes as it grows).
fn scan_order(field: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x05ca_90ff_1e1d).hash_one(field)
}

/// `HSCAN key cursor [MATCH pattern] [COUNT count]` → the next cursor (0 when done) and a
/// flat array of fields and values. A field present for the whole iteration is returned
/// at least once.
///
/// Small hashes come back whole. A large one is walked in the order of [`scan_order`]:
/// the cursor is the position in that order to continue from, so fields added, removed or
/// moved by the table growing never make the walk skip another one.
fn hscan(ctx: &mut Ctx, a: Args) -> CmdResult {
    let cursor = parse_cursor(&a[2]).ok_or(CmdError::Static("ERR invalid cursor"))?;
    read_hash(ctx, &a[1], |ctx, hash| {
        let Some(m) = hash else {
            ctx.out.array(2);
            ctx.out.bulk(b"0");
            ctx.out.array(0);
            return Ok(());
        };
        let mut count: usize = 10;
        let mut pattern: Option<&[u8]> = None;
        let mut i = 3;
        while i < a.len() {
            let more = i + 1 < a.len();
            if args::is(&a[i], "count") && more {
                let n = args::int(&a[i + 1])?;
                if n < 1 {
                    return Err(CmdError::Syntax);
                }
                count = usize::try_from(n).unwrap_or(usize::MAX);
            } else if args::is(&a[i], "match") && more {
                pattern = Some(&a[i + 1]).filter(|p| *p != b"*");
            } else {
                return Err(CmdError::Syntax);
            }
            i += 2;
        }
        let wanted = |k: &[u8]| pattern.is_none_or(|p| glob_match(p, k, false));
        if m.len() <= SCAN_WHOLE {
            let n = m.keys().filter(|k| wanted(k)).count();
            ctx.out.array(2);
            ctx.out.bulk(b"0");
            ctx.out.array(2 * n);
            for (k, v) in m.iter().filter(|(k, _)| wanted(k)) {
                ctx.out.bulk(k);
                ctx.out.bulk(v);
            }
            return Ok(());
        }
        let size = count.max(m.len() / SCAN_PIECES);
        let (next, mut piece) = scan_piece(m, cursor, size);
        piece.retain(|(_, k, _)| wanted(k));
        ctx.out.array(2);
        ctx.out.bulk(itoa::Buffer::new().format(next).as_bytes());
        ctx.out.array(2 * piece.len());
        for (_, k, v) in piece {
            ctx.out.bulk(k);
            ctx.out.bulk(v);
        }
        Ok(())
    })
}

/// A field with its value and its position in [`scan_order`].
type Positioned<'a> = (u64, &'a [u8], &'a [u8]);

/// The next piece of a walk of `m` in [`scan_order`]: about `size` fields at or after
/// position `cursor`, and the cursor to continue from (0 when the walk is complete).
/// One pass over the hash, keeping the `size` smallest positions in a max-heap.
fn scan_piece(m: &Hash, cursor: u64, size: usize) -> (u64, Vec<Positioned<'_>>) {
    scan_piece_by(m, cursor, size, scan_order)
}

/// [`scan_piece`] with the order given (tests use orders full of ties).
fn scan_piece_by(
    m: &Hash,
    cursor: u64,
    size: usize,
    scan_order: impl Fn(&[u8]) -> u64,
) -> (u64, Vec<Positioned<'_>>) {
    // One more than the piece: the largest position kept is where the next call starts.
    let keep = size.saturating_add(1);
    let mut heap: BinaryHeap<Positioned<'_>> = BinaryHeap::with_capacity(keep.min(m.len()) + 1);
    for (k, v) in m.iter() {
        let (k, v) = (&k[..], &v[..]);
        let p = scan_order(k);
        if p < cursor {
            continue;
        }
        if heap.len() < keep {
            heap.push((p, k, v));
        } else if heap.peek().is_some_and(|top| p < top.0) {
            heap.pop();
            heap.push((p, k, v));
        }
    }
    if heap.len() < keep {
        // Everything left fitted: the walk is complete.
        return (0, heap.into_vec());
    }
    // Fields at the largest position kept may have been left out (ties with the heap's
    // top), so none of them is returned now: the next call starts at that position.
    let last = heap.peek().map_or(u64::MAX, |top| top.0);
    let piece: Vec<Positioned<'_>> = heap.into_iter().filter(|e| e.0 < last).collect();
    if !piece.is_empty() {
        return (last, piece);
    }
    // Every field taken shares one position (a full collision of the 64-bit hash): take
    // all the fields there, and move past it.
    let tied = m
        .iter()
        .filter(|(k, _)| scan_order(k) == last)
        .map(|(k, v)| (last, &k[..], &v[..]))
        .collect();
    (last.checked_add(1).unwrap_or(0), tied)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn hash_of(fields: impl Iterator<Item = String>) -> Hash {
        fields
            .map(|f| (f.into_bytes().into(), b"v".to_vec()))
            .collect()
    }

    /// Walks `m` to the end with `order`, changing it between calls with `churn`;
    /// returns the fields seen and the number of calls.
    fn walk(
        m: &mut Hash,
        size: usize,
        order: &dyn Fn(&[u8]) -> u64,
        mut churn: impl FnMut(&mut Hash, usize),
    ) -> (HashSet<Vec<u8>>, usize) {
        let (mut seen, mut cursor, mut calls) = (HashSet::new(), 0, 0);
        loop {
            let (next, piece) = scan_piece_by(m, cursor, size, order);
            assert!(piece.iter().all(|(p, _, _)| *p >= cursor), "went back");
            seen.extend(piece.iter().map(|(_, k, _)| k.to_vec()));
            calls += 1;
            assert!(calls < 10_000, "the walk does not end");
            churn(m, calls);
            if next == 0 {
                return (seen, calls);
            }
            assert!(next > cursor, "no progress");
            cursor = next;
        }
    }

    #[test]
    fn scan_pieces_survive_ties_and_churn() {
        let stable: Vec<String> = (0..500).map(|i| format!("stable{i}")).collect();
        type Order<'a> = &'a dyn Fn(&[u8]) -> u64;
        let orders: [Order; 4] = [
            &|k| scan_order(k),
            // Many ties: 7 positions for everything.
            &|k| (k.len() % 7) as u64,
            // Ties at the very end of the order.
            &|k| {
                if k.len() % 2 == 0 {
                    u64::MAX
                } else {
                    u64::MAX - 1
                }
            },
            // One position for everything.
            &|_| 42,
        ];
        for order in orders {
            let mut m = hash_of(stable.iter().cloned());
            let (seen, _) = walk(&mut m, 10, order, |m, call| {
                for j in 0..20 {
                    m.insert(format!("churn{call}-{j}").into_bytes().into(), Vec::new());
                }
                m.retain(|k, _| !(k.starts_with(b"churn") && k.len() % 2 == 0));
            });
            for f in &stable {
                assert!(seen.contains(f.as_bytes()), "missed {f}");
            }
        }
        // Without ties, pieces are `size` fields and the walk takes len/size calls.
        let mut m = hash_of(stable.iter().cloned());
        let (seen, calls) = walk(&mut m, 10, &|k| scan_order(k), |_, _| {});
        assert_eq!(seen.len(), 500);
        assert_eq!(calls, 50);
    }
}

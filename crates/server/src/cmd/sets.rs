//! Set commands.
//!
//! Writes are journaled as element-level effects (`SetAdd`, `SetRem`) naming exactly the
//! members that change; random choices (SPOP) are made here and logged as the removal of
//! the members chosen. The *STORE commands log their result as one value.

use dse_engine::{Effect, KeyHash, MultiMut, Value, glob_match, parse_canonical_i64};
use dse_proto::{Args, Reply};
use rand::Rng;

use crate::args;
use crate::cmd::keys::parse_cursor;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub use dse_engine::SetMembers as Members;

const SCAN_COMPLEXITY: &str = "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection..";
const INTER_COMPLEXITY: &str =
    "O(N*M) worst case where N is the cardinality of the smallest set and M is the number of sets.";
const UNION_COMPLEXITY: &str = "O(N) where N is the total number of elements in all given sets.";

pub const COMMANDS: &[CommandSpec] = &[
    cmd("sadd", -3, WRITE | DENYOOM | FAST, sadd)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "set",
            "1.0.0",
            "O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments.",
            "Adds one or more members to a set. Creates the key if it doesn't exist.",
        ),
    cmd("srem", -3, WRITE | FAST, srem)
        .keys(1, 1, 1)
        .key_flags(&["RW", "delete"])
        .doc(
            "set",
            "1.0.0",
            "O(N) where N is the number of members to be removed.",
            "Removes one or more members from a set. Deletes the set if the last member was removed.",
        ),
    cmd("smembers", 2, READONLY, smembers).keys(1, 1, 1).doc(
        "set",
        "1.0.0",
        "O(N) where N is the set cardinality.",
        "Returns all members of a set.",
    ),
    cmd("sismember", 3, READONLY | FAST, sismember)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc(
            "set",
            "1.0.0",
            "O(1)",
            "Determines whether a member belongs to a set.",
        ),
    cmd("smismember", -3, READONLY | FAST, smismember)
        .keys(1, 1, 1)
        .doc(
            "set",
            "6.2.0",
            "O(N) where N is the number of elements being checked for membership",
            "Determines whether multiple members belong to a set.",
        ),
    cmd("scard", 2, READONLY | FAST, scard)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc(
            "set",
            "1.0.0",
            "O(1)",
            "Returns the number of members in a set.",
        ),
    cmd("spop", -2, WRITE | FAST, spop)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "set",
            "1.0.0",
            "Without the count argument O(1), otherwise O(N) where N is the value of the passed count.",
            "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.",
        ),
    cmd("srandmember", -2, READONLY, srandmember)
        .keys(1, 1, 1)
        .doc(
            "set",
            "1.0.0",
            "Without the count argument O(1), otherwise O(N) where N is the absolute value of the passed count.",
            "Get one or multiple random members from a set",
        ),
    cmd("smove", 4, WRITE | FAST, smove)
        .keys(1, 2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "set",
            "1.0.0",
            "O(1)",
            "Moves a member from one set to another.",
        ),
    cmd("sinter", -2, READONLY, sinter).keys(1, -1, 1).doc(
        "set",
        "1.0.0",
        INTER_COMPLEXITY,
        "Returns the intersect of multiple sets.",
    ),
    cmd("sintercard", -3, READONLY, sintercard).doc(
        "set",
        "7.0.0",
        INTER_COMPLEXITY,
        "Returns the number of members of the intersect of multiple sets.",
    ),
    cmd("sinterstore", -3, WRITE | DENYOOM, sinterstore)
        .keys(1, -1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "set",
            "1.0.0",
            INTER_COMPLEXITY,
            "Stores the intersect of multiple sets in a key.",
        ),
    cmd("sunion", -2, READONLY, sunion).keys(1, -1, 1).doc(
        "set",
        "1.0.0",
        UNION_COMPLEXITY,
        "Returns the union of multiple sets.",
    ),
    cmd("sunionstore", -3, WRITE | DENYOOM, sunionstore)
        .keys(1, -1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "set",
            "1.0.0",
            UNION_COMPLEXITY,
            "Stores the union of multiple sets in a key.",
        ),
    cmd("sdiff", -2, READONLY, sdiff).keys(1, -1, 1).doc(
        "set",
        "1.0.0",
        UNION_COMPLEXITY,
        "Returns the difference of multiple sets.",
    ),
    cmd("sdiffstore", -3, WRITE | DENYOOM, sdiffstore)
        .keys(1, -1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "set",
            "1.0.0",
            UNION_COMPLEXITY,
            "Stores the difference of multiple sets in a key.",
        ),
    cmd("sscan", -3, READONLY, sscan).keys(1, 1, 1).doc(
        "set",
        "2.8.0",
        SCAN_COMPLEXITY,
        "Iterates over members of a set.",
    ),
];

/// Most elements a random-members reply may hold. Redis has no limit and runs out of
/// memory building the reply to `SRANDMEMBER key -9223372036854775807`; we refuse.
pub(crate) const MAX_RANDOM_REPLY: u64 = 1 << 26;

/// The members of a set value; WRONGTYPE for any other type.
pub(crate) fn as_set(v: &Value) -> Result<&Members, CmdError> {
    match v {
        Value::Set(s) => Ok(s),
        _ => Err(CmdError::WrongType),
    }
}

/// The distinct arguments for which `keep` holds, in argument order. Deduplicates through
/// a table only when there are enough arguments for a quadratic scan to matter.
fn distinct<'a>(
    items: impl Iterator<Item = &'a [u8]>,
    keep: impl Fn(&[u8]) -> bool,
) -> Vec<&'a [u8]> {
    let (lower, _) = items.size_hint();
    let mut out: Vec<&[u8]> = Vec::with_capacity(lower);
    if lower <= 16 {
        for m in items {
            if keep(m) && !out.contains(&m) {
                out.push(m);
            }
        }
    } else {
        let mut seen =
            hashbrown::HashSet::<&[u8], foldhash::fast::RandomState>::with_capacity_and_hasher(
                lower,
                Default::default(),
            );
        for m in items {
            if keep(m) && seen.insert(m) {
                out.push(m);
            }
        }
    }
    out
}

/// `SADD key member [member ...]` → the number of members that were not in the set.
fn sadd(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let added = match shard.lookup(key, h, ctx.now) {
        None => distinct(a.iter().skip(2), |_| true),
        Some(e) => {
            let set = as_set(e.value())?;
            distinct(a.iter().skip(2), |m| !set.contains(m))
        }
    };
    if !added.is_empty() {
        shard.commit(
            &[Effect::SetAdd {
                key,
                members: &added,
            }],
            ctx.now,
        )?;
    }
    ctx.out.int(added.len() as i64);
    Ok(())
}

/// `SREM key member [member ...]` → the number of members removed. An emptied set is
/// deleted.
fn srem(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let removed = match shard.lookup(key, h, ctx.now) {
        None => Vec::new(),
        Some(e) => {
            let set = as_set(e.value())?;
            distinct(a.iter().skip(2), |m| set.contains(m))
        }
    };
    if !removed.is_empty() {
        shard.commit(
            &[Effect::SetRem {
                key,
                members: &removed,
            }],
            ctx.now,
        )?;
    }
    ctx.out.int(removed.len() as i64);
    Ok(())
}

/// Runs `f` on the set at `key` (`None` when missing), counting a keyspace hit or miss.
fn read_set<R>(
    ctx: &mut Ctx,
    key: &[u8],
    f: impl FnOnce(&mut Ctx, Option<&Members>) -> Result<R, CmdError>,
) -> Result<R, CmdError> {
    let srv = ctx.srv;
    let h = srv.store.hash(key);
    let shard = srv.store.read(h);
    match shard.get(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            f(ctx, None)
        }
        Some(e) => {
            ctx.lookup_stat(true);
            let set = as_set(e.value())?;
            f(ctx, Some(set))
        }
    }
}

/// `SMEMBERS key` → every member (a set in RESP3).
fn smembers(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_set(ctx, &a[1], |ctx, set| {
        reply_members(ctx.out, set.into_iter().flatten().map(|m| &m[..]).collect());
        Ok(())
    })
}

/// Redis keeps sets of up to 512 integers as a sorted array (an intset) and lists them
/// in numeric order; so do we, for the clients and tests that came to rely on it.
const INTSET_MAX: usize = 512;

/// Writes members as a set reply, in numeric order when they could form an intset.
fn reply_members(out: &mut Reply, mut members: Vec<&[u8]>) {
    if members.len() <= INTSET_MAX && members.iter().all(|m| parse_canonical_i64(m).is_some()) {
        members.sort_by_key(|m| parse_canonical_i64(m));
    }
    out.set(members.len());
    for m in members {
        out.bulk(m);
    }
}

/// `SISMEMBER key member` → 1 when `member` is in the set, else 0.
fn sismember(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_set(ctx, &a[1], |ctx, set| {
        ctx.out.int(set.is_some_and(|s| s.contains(&a[2])) as i64);
        Ok(())
    })
}

/// `SMISMEMBER key member [member ...]` → for each member, 1 when it is in the set.
fn smismember(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_set(ctx, &a[1], |ctx, set| {
        ctx.out.array(a.len() - 2);
        for m in a.iter().skip(2) {
            ctx.out.int(set.is_some_and(|s| s.contains(m)) as i64);
        }
        Ok(())
    })
}

/// `SCARD key` → the number of members (0 for a missing key).
fn scard(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_set(ctx, &a[1], |ctx, set| {
        ctx.out.int(set.map_or(0, |s| s.len()) as i64);
        Ok(())
    })
}

/// A count that must be 0 or more, as Redis's `getPositiveLongFromObjectOrReply`: any
/// other value, or a non-integer, gets `msg`.
pub(crate) fn non_negative(a: &[u8], msg: &'static str) -> Result<u64, CmdError> {
    match args::int(a) {
        Ok(n) if n >= 0 => Ok(n as u64),
        _ => Err(CmdError::Static(msg)),
    }
}

pub(crate) const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";

/// `k` distinct positions below `n` (k <= n), ascending (Floyd's sampling: O(k)).
pub(crate) fn distinct_positions(rng: &mut impl Rng, n: usize, k: usize) -> Vec<usize> {
    let mut chosen =
        hashbrown::HashSet::<usize, foldhash::fast::RandomState>::with_capacity_and_hasher(
            k,
            Default::default(),
        );
    for j in n - k..n {
        let t = rng.random_range(0..=j);
        if !chosen.insert(t) {
            chosen.insert(j);
        }
    }
    let mut out: Vec<usize> = chosen.into_iter().collect();
    out.sort_unstable();
    out
}

/// The items of `iter` at the ascending `positions`, in one pass.
pub(crate) fn pick<T>(iter: impl Iterator<Item = T>, positions: &[usize]) -> Vec<T> {
    let mut out = Vec::with_capacity(positions.len());
    let mut want = positions.iter().peekable();
    for (i, item) in iter.enumerate() {
        match want.peek() {
            None => break,
            Some(&&p) if p == i => {
                out.push(item);
                want.next();
            }
            Some(_) => {}
        }
    }
    out
}

/// `k` distinct random members of `set` (k < len): random probes while they are
/// likely to find new members (as Redis's "CASE 4"), else one pass over chosen positions.
fn random_distinct(set: &Members, k: usize) -> Vec<&[u8]> {
    let mut rng = rand::rng();
    if k.saturating_mul(3) > set.len() {
        let positions = distinct_positions(&mut rng, set.len(), k);
        return pick(set.iter().map(|m| &m[..]), &positions);
    }
    let mut chosen =
        hashbrown::HashSet::<&[u8], foldhash::fast::RandomState>::with_capacity_and_hasher(
            k,
            Default::default(),
        );
    let mut out = Vec::with_capacity(k);
    while out.len() < k {
        if let Some(m) = set.random(|n| rng.random_range(0..n))
            && chosen.insert(&m[..])
        {
            out.push(&m[..]);
        }
    }
    out
}

/// One random member of a non-empty set.
fn random_member(set: &Members) -> &[u8] {
    let mut rng = rand::rng();
    set.random(|n| rng.random_range(0..n))
        .map_or(&[][..], |m| &m[..])
}

/// `SPOP key [count]` → a random member, removed (nil for a missing key); with `count`,
/// a set of up to `count` distinct members, removed. An emptied set is deleted.
fn spop(ctx: &mut Ctx, a: Args) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = match a.get(2) {
        Some(c) => Some(non_negative(c, MUST_BE_POSITIVE)?),
        None => None,
    };
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        match count {
            Some(_) => ctx.out.set(0),
            None => ctx.out.null(),
        }
        return Ok(());
    };
    let set = as_set(e.value())?;
    let Some(count) = count else {
        let member = random_member(set).to_vec();
        shard.commit(
            &[Effect::SetRem {
                key,
                members: &[&member],
            }],
            ctx.now,
        )?;
        ctx.out.bulk(&member);
        return Ok(());
    };
    if count == 0 {
        ctx.out.set(0);
        return Ok(());
    }
    if count >= set.len() as u64 {
        // The whole set goes: one Del instead of naming every member.
        let all: Vec<Box<[u8]>> = set.iter().cloned().collect();
        shard.commit(&[Effect::Del { key }], ctx.now)?;
        reply_members(ctx.out, all.iter().map(|m| &m[..]).collect());
        return Ok(());
    }
    let chosen: Vec<Vec<u8>> = random_distinct(set, count as usize)
        .into_iter()
        .map(|m| m.to_vec())
        .collect();
    let members: Vec<&[u8]> = chosen.iter().map(|m| &m[..]).collect();
    shard.commit(
        &[Effect::SetRem {
            key,
            members: &members,
        }],
        ctx.now,
    )?;
    reply_members(ctx.out, members);
    Ok(())
}

/// A random-members count: any integer but `i64::MIN` (whose magnitude has no `i64`).
pub(crate) fn random_count(a: &[u8]) -> Result<i64, CmdError> {
    match args::int(a)? {
        i64::MIN => Err(CmdError::Static(
            "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
        )),
        n => Ok(n),
    }
}

/// `SRANDMEMBER key [count]` → a random member (nil for a missing key); with a positive
/// `count`, up to `count` distinct members; with a negative one, exactly `-count`
/// members that may repeat. Both as arrays.
fn srandmember(ctx: &mut Ctx, a: Args) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = match a.get(2) {
        Some(c) => Some(random_count(c)?),
        None => None,
    };
    read_set(ctx, &a[1], |ctx, set| {
        let (Some(set), Some(count)) = (set, count) else {
            match (set, count) {
                (Some(set), None) => ctx.out.bulk(random_member(set)),
                (None, None) => ctx.out.null(),
                _ => ctx.out.array(0),
            }
            return Ok(());
        };
        if count == 0 {
            ctx.out.array(0);
        } else if count < 0 {
            let n = count.unsigned_abs();
            if n > MAX_RANDOM_REPLY {
                return Err(CmdError::Static("ERR value is out of range"));
            }
            ctx.out.array(n as usize);
            for _ in 0..n {
                ctx.out.bulk(random_member(set));
            }
        } else if count as u64 >= set.len() as u64 {
            let mut all: Vec<&[u8]> = set.iter().map(|m| &m[..]).collect();
            if all.iter().all(|m| parse_canonical_i64(m).is_some()) {
                all.sort_by_key(|m| parse_canonical_i64(m));
            }
            ctx.out.array(all.len());
            for m in all {
                ctx.out.bulk(m);
            }
        } else {
            let chosen = random_distinct(set, count as usize);
            ctx.out.array(chosen.len());
            for m in chosen {
                ctx.out.bulk(m);
            }
        }
        Ok(())
    })
}

/// `SMOVE source destination member` → 1 when `member` moved (or already was in
/// `source` when both are the same key), 0 when it was not in `source`.
fn smove(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (src, dst, member) = (&a[1], &a[2], &a[3]);
    let store = &ctx.srv.store;
    let (hs, hd) = (store.hash(src), store.hash(dst));
    let mut multi = store.write_many([hs, hd]);
    let Some(e) = multi.get(src, hs, ctx.now) else {
        ctx.out.int(0);
        return Ok(());
    };
    let in_src = as_set(e.value())?.contains(member);
    let dst_exists = match multi.get(dst, hd, ctx.now) {
        Some(d) => as_set(d.value()).map(|_| true)?,
        None => false,
    };
    if src == dst || !in_src {
        ctx.out.int(in_src as i64);
        return Ok(());
    }
    let rem = Effect::SetRem {
        key: src,
        members: &[member],
    };
    let add = Effect::SetAdd {
        key: dst,
        members: &[member],
    };
    // A destination that expired may still be stored: delete it first so the member
    // lands in a new set (a no-op on replay when there is nothing to delete).
    if dst_exists {
        multi.commit(&[rem, add], ctx.now)?;
    } else {
        multi.commit(&[rem, Effect::Del { key: dst }, add], ctx.now)?;
    }
    ctx.out.int(1);
    Ok(())
}

/// The sets named by `keys`, all locked by `multi`: `None` for missing keys, WRONGTYPE as
/// soon as one holds another type (every key is checked, as Redis does).
fn sets_of<'m>(
    ctx: &Ctx,
    multi: &'m MultiMut<'_>,
    keys: &[(&[u8], KeyHash)],
    count_stats: bool,
) -> Result<Vec<Option<&'m Members>>, CmdError> {
    keys.iter()
        .map(|&(k, h)| {
            let found = multi.get(k, h, ctx.now);
            if count_stats {
                ctx.lookup_stat(found.is_some());
            }
            found.map(|e| as_set(e.value())).transpose()
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Inter,
    Union,
    Diff,
}

/// The members of SINTER/SUNION/SDIFF over `sets` (missing keys are empty sets), each
/// once; SINTER stops after `limit` members when it is not 0.
fn combine<'m>(op: SetOp, sets: &[Option<&'m Members>], limit: usize) -> Vec<&'m [u8]> {
    match op {
        SetOp::Inter => {
            if sets.iter().any(|s| s.is_none()) {
                return Vec::new();
            }
            let mut present: Vec<&Members> = sets.iter().flatten().copied().collect();
            present.sort_by_key(|s| s.len());
            let mut out = Vec::new();
            for m in present[0].iter() {
                if present[1..].iter().all(|s| s.contains(&m[..])) {
                    out.push(&m[..]);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            out
        }
        SetOp::Union => {
            let total: usize = sets.iter().flatten().map(|s| s.len()).sum();
            let mut seen =
                hashbrown::HashSet::<&[u8], foldhash::fast::RandomState>::with_capacity_and_hasher(
                    total.min(1 << 20),
                    Default::default(),
                );
            let mut out = Vec::new();
            for m in sets.iter().flatten().flat_map(|s| s.iter()) {
                if seen.insert(m) {
                    out.push(&m[..]);
                }
            }
            out
        }
        SetOp::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Vec::new();
            };
            first
                .iter()
                .filter(|m| sets[1..].iter().flatten().all(|s| !s.contains(&m[..])))
                .map(|m| &m[..])
                .collect()
        }
    }
}

/// SINTER, SUNION, SDIFF: `keys` from argument 1 on.
fn set_op(ctx: &mut Ctx, a: &Args, op: SetOp) -> CmdResult {
    let store = &ctx.srv.store;
    let keys: Vec<(&[u8], KeyHash)> = a.iter().skip(1).map(|k| (k, store.hash(k))).collect();
    let multi = store.write_many(keys.iter().map(|&(_, h)| h));
    let sets = sets_of(ctx, &multi, &keys, true)?;
    reply_members(ctx.out, combine(op, &sets, 0));
    Ok(())
}

/// `SINTER key [key ...]` → the members in every set.
fn sinter(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_op(ctx, &a, SetOp::Inter)
}

/// `SUNION key [key ...]` → the members in any of the sets.
fn sunion(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_op(ctx, &a, SetOp::Union)
}

/// `SDIFF key [key ...]` → the members of the first set in none of the others.
fn sdiff(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_op(ctx, &a, SetOp::Diff)
}

/// SINTERSTORE, SUNIONSTORE, SDIFFSTORE: `destination key [key ...]`. The result
/// replaces the destination (whatever it held, without its deadline); an empty result
/// deletes it.
fn set_op_store(ctx: &mut Ctx, a: &Args, op: SetOp) -> CmdResult {
    let store = &ctx.srv.store;
    let dst = &a[1];
    let hd = store.hash(dst);
    let keys: Vec<(&[u8], KeyHash)> = a.iter().skip(2).map(|k| (k, store.hash(k))).collect();
    let mut multi = store.write_many(keys.iter().map(|&(_, h)| h).chain([hd]));
    let result: Members = {
        let sets = sets_of(ctx, &multi, &keys, false)?;
        combine(op, &sets, 0).into_iter().map(Box::from).collect()
    };
    let n = result.len();
    if n > 0 {
        multi.put(dst, hd, Value::Set(Box::new(result)), 0, ctx.now)?;
    } else if multi.get(dst, hd, ctx.now).is_some() {
        multi.commit(&[Effect::Del { key: dst }], ctx.now)?;
    }
    ctx.out.int(n as i64);
    Ok(())
}

/// `SINTERSTORE destination key [key ...]` → the size of the stored intersection.
fn sinterstore(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_op_store(ctx, &a, SetOp::Inter)
}

/// `SUNIONSTORE destination key [key ...]` → the size of the stored union.
fn sunionstore(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_op_store(ctx, &a, SetOp::Union)
}

/// `SDIFFSTORE destination key [key ...]` → the size of the stored difference.
fn sdiffstore(ctx: &mut Ctx, a: Args) -> CmdResult {
    set_op_store(ctx, &a, SetOp::Diff)
}

pub(crate) const NUMKEYS_POSITIVE: &str = "ERR numkeys should be greater than 0";

/// The `numkeys` argument of SINTERCARD and ZMPOP: 1 or more.
pub(crate) fn numkeys(a: &[u8]) -> Result<usize, CmdError> {
    match args::int(a) {
        Ok(n) if n >= 1 => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
        _ => Err(CmdError::Static(NUMKEYS_POSITIVE)),
    }
}

pub(crate) const LIMIT_NEGATIVE: &str = "ERR LIMIT can't be negative";

/// `SINTERCARD numkeys key [key ...] [LIMIT limit]` → the size of the intersection,
/// counting no further than `limit` when it is not 0.
fn sintercard(ctx: &mut Ctx, a: Args) -> CmdResult {
    let n = numkeys(&a[1])?;
    if n > a.len() - 2 {
        return Err(CmdError::Static(
            "ERR Number of keys can't be greater than number of args",
        ));
    }
    let mut limit = 0;
    let mut j = 2 + n;
    while j < a.len() {
        if args::is(&a[j], "limit") && j + 1 < a.len() {
            limit = non_negative(&a[j + 1], LIMIT_NEGATIVE)?;
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let store = &ctx.srv.store;
    let keys: Vec<(&[u8], KeyHash)> = a
        .iter()
        .skip(2)
        .take(n)
        .map(|k| (k, store.hash(k)))
        .collect();
    let multi = store.write_many(keys.iter().map(|&(_, h)| h));
    let sets = sets_of(ctx, &multi, &keys, true)?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    ctx.out
        .int(combine(SetOp::Inter, &sets, limit).len() as i64);
    Ok(())
}

/// The options of SSCAN and ZSCAN after the cursor: `[MATCH pattern] [COUNT count]`.
/// COUNT is checked but not needed: the whole collection is returned in one call.
pub(crate) fn scan_pattern<'a>(a: &Args<'a>) -> Result<Option<&'a [u8]>, CmdError> {
    let mut pattern = None;
    let mut i = 3;
    while i < a.len() {
        if i + 1 >= a.len() {
            return Err(CmdError::Syntax);
        }
        if args::is(&a[i], "count") {
            if args::int(&a[i + 1])? < 1 {
                return Err(CmdError::Syntax);
            }
        } else if args::is(&a[i], "match") {
            pattern = a.get(i + 1).filter(|&p| p != b"*");
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok(pattern)
}

/// The cursor argument of SSCAN and ZSCAN.
pub(crate) fn scan_cursor(a: &[u8]) -> Result<u64, CmdError> {
    parse_cursor(a).ok_or(CmdError::Static("ERR invalid cursor"))
}

/// `SSCAN key cursor [MATCH pattern] [COUNT count]` → `[next cursor, members]`.
///
/// Every matching member comes back in one reply with the cursor 0, as Redis does for
/// its compact encodings: a hash set offers no position that survives resizing, and this
/// keeps SSCAN's guarantee (each member present for the whole scan is returned) exact.
fn sscan(ctx: &mut Ctx, a: Args) -> CmdResult {
    scan_cursor(&a[2])?;
    read_set(ctx, &a[1], |ctx, set| {
        let pattern = match set {
            Some(_) => scan_pattern(&a)?,
            None => None,
        };
        let mut members: Vec<&[u8]> = set
            .into_iter()
            .flatten()
            .map(|m| &m[..])
            .filter(|m| pattern.is_none_or(|p| glob_match(p, m, false)))
            .collect();
        if set.is_some_and(|s| {
            s.len() <= INTSET_MAX && s.iter().all(|m| parse_canonical_i64(m).is_some())
        }) {
            members.sort_by_key(|m| parse_canonical_i64(m));
        }
        ctx.out.array(2);
        ctx.out.bulk(b"0");
        ctx.out.array(members.len());
        for m in members {
            ctx.out.bulk(m);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_positions_are_distinct_sorted_and_in_range() {
        let mut rng = rand::rng();
        for (n, k) in [(1, 1), (10, 3), (10, 10), (1000, 999), (5, 0)] {
            let p = distinct_positions(&mut rng, n, k);
            assert_eq!(p.len(), k);
            assert!(p.windows(2).all(|w| w[0] < w[1]));
            assert!(p.iter().all(|&i| i < n));
        }
        assert_eq!(pick(10..20, &[0, 3, 9]), [10, 13, 19]);
    }

    #[test]
    fn distinct_keeps_first_occurrences() {
        let args: Vec<&[u8]> = vec![b"a", b"b", b"a", b"c"];
        assert_eq!(
            distinct(args.iter().copied(), |m| m != b"c"),
            [&b"a"[..], b"b"]
        );
        let many: Vec<Vec<u8>> = (0..40)
            .map(|i| format!("{}", i % 20).into_bytes())
            .collect();
        assert_eq!(distinct(many.iter().map(|m| &m[..]), |_| true).len(), 20);
    }
}

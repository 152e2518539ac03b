//! List commands.
//!
//! Writes log element-level effects (`ListPush`, `ListPop`, ...) through the shard's
//! `commit`, never the whole list, and never touch a list behind the journal. Replies that
//! show popped elements are written from the list before the effect removes them, and
//! taken back if the journal refuses the write.
//!
//! The blocking variants (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, in `blocking.rs`)
//! pop with the functions shared here ([`pop_first`], [`move_element`]).

use std::collections::VecDeque;

use dse_engine::{Effect, Lsn, Value, WriteError};
use dse_proto::{Args, Reply};

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("lpush", -3, WRITE | DENYOOM | FAST, lpush)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "list",
            "1.0.0",
            PUSH_COMPLEXITY,
            "Prepends one or more elements to a list. Creates the key if it doesn't exist.",
        ),
    cmd("rpush", -3, WRITE | DENYOOM | FAST, rpush)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "list",
            "1.0.0",
            PUSH_COMPLEXITY,
            "Appends one or more elements to a list. Creates the key if it doesn't exist.",
        ),
    cmd("lpushx", -3, WRITE | DENYOOM | FAST, lpushx)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "list",
            "2.2.0",
            PUSH_COMPLEXITY,
            "Prepends one or more elements to a list only when the list exists.",
        ),
    cmd("rpushx", -3, WRITE | DENYOOM | FAST, rpushx)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "list",
            "2.2.0",
            PUSH_COMPLEXITY,
            "Appends one or more elements to a list only when the list exists.",
        ),
    cmd("lpop", -2, WRITE | FAST, lpop)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "1.0.0",
            "O(N) where N is the number of elements returned",
            "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.",
        ),
    cmd("rpop", -2, WRITE | FAST, rpop)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "1.0.0",
            "O(N) where N is the number of elements returned",
            "Returns and removes the last elements of a list. Deletes the list if the last element was popped.",
        ),
    cmd("llen", 2, READONLY | FAST, llen)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc("list", "1.0.0", "O(1)", "Returns the length of a list."),
    cmd("lrange", 4, READONLY, lrange)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "list",
            "1.0.0",
            "O(S+N) where S is the distance of start offset from HEAD for small lists, from nearest end (HEAD or TAIL) for large lists; and N is the number of elements in the specified range.",
            "Returns a range of elements from a list.",
        ),
    cmd("lindex", 3, READONLY, lindex)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "list",
            "1.0.0",
            "O(N) where N is the number of elements to traverse to get to the element at index. This makes asking for the first or the last element of the list O(1).",
            "Returns an element from a list by its index.",
        ),
    cmd("lset", 4, WRITE | DENYOOM, lset)
        .keys(1, 1, 1)
        .key_flags(&["RW", "update"])
        .doc(
            "list",
            "1.0.0",
            "O(N) where N is the length of the list. Setting either the first or the last element of the list is O(1).",
            "Sets the value of an element in a list by its index.",
        ),
    cmd("linsert", 5, WRITE | DENYOOM, linsert)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "list",
            "2.2.0",
            "O(N) where N is the number of elements to traverse before seeing the value pivot. This means that inserting somewhere on the left end on the list (head) can be considered O(1) and inserting somewhere on the right end (tail) is O(N).",
            "Inserts an element before or after another element in a list.",
        ),
    cmd("lrem", 4, WRITE, lrem)
        .keys(1, 1, 1)
        .key_flags(&["RW", "delete"])
        .doc(
            "list",
            "1.0.0",
            "O(N+M) where N is the length of the list and M is the number of elements removed.",
            "Removes elements from a list. Deletes the list if the last element was removed.",
        ),
    cmd("ltrim", 4, WRITE, ltrim)
        .keys(1, 1, 1)
        .key_flags(&["RW", "delete"])
        .doc(
            "list",
            "1.0.0",
            "O(N) where N is the number of elements to be removed by the operation.",
            "Removes elements from both ends a list. Deletes the list if all elements were trimmed.",
        ),
    cmd("lpos", -3, READONLY, lpos)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "list",
            "6.0.6",
            "O(N) where N is the number of elements in the list, for the average case. When searching for elements near the head or the tail of the list, or when the MAXLEN option is provided, the command may run in constant time.",
            "Returns the index of matching elements in a list.",
        ),
    cmd("lmove", 5, WRITE | DENYOOM, lmove)
        .keys(1, 2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "6.2.0",
            "O(1)",
            "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.",
        ),
    cmd("rpoplpush", 3, WRITE | DENYOOM, rpoplpush)
        .keys(1, 2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "1.2.0",
            "O(1)",
            "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.",
        ),
    // The keys follow a count (Redis's "movablekeys"), which the legacy key triple cannot
    // describe.
    cmd("lmpop", -4, WRITE, lmpop)
        .keys(0, 0, 0)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "7.0.0",
            "O(N+M) where N is the number of provided keys and M is the number of elements returned.",
            "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.",
        ),
];

const PUSH_COMPLEXITY: &str = "O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments.";

type List = VecDeque<Vec<u8>>;

/// The list a value holds; WRONGTYPE for another type.
fn as_list(v: &Value) -> Result<&List, CmdError> {
    match v {
        Value::List(l) => Ok(l),
        _ => Err(CmdError::WrongType),
    }
}

/// Calls `f` with `items` gathered in a slice: on the stack when there are few (a push of
/// a handful of elements allocates nothing for it), in a `Vec` otherwise.
pub(crate) fn with_slice<T: Copy + Default, R>(
    items: impl ExactSizeIterator<Item = T>,
    f: impl FnOnce(&[T]) -> R,
) -> R {
    const ON_STACK: usize = 16;
    if items.len() <= ON_STACK {
        let mut buf = [T::default(); ON_STACK];
        let mut n = 0;
        for (slot, item) in buf.iter_mut().zip(items) {
            *slot = item;
            n += 1;
        }
        f(&buf[..n])
    } else {
        let v: Vec<T> = items.collect();
        f(&v)
    }
}

/// Ends a write whose reply was written (from `mark` on) before its effects were
/// committed: a refused write takes the reply back and answers the error instead.
pub(crate) fn committed(
    out: &mut Reply<'_>,
    mark: usize,
    result: Result<Lsn, WriteError>,
) -> CmdResult {
    match result {
        Ok(_) => Ok(()),
        Err(e) => {
            out.truncate(mark);
            Err(e.into())
        }
    }
}

/// `LEFT` or `RIGHT` (any case): true for LEFT; `ERR syntax error` otherwise.
pub(crate) fn parse_side(a: &[u8]) -> Result<bool, CmdError> {
    if args::is(a, "left") {
        Ok(true)
    } else if args::is(a, "right") {
        Ok(false)
    } else {
        Err(CmdError::Syntax)
    }
}

/// Resolves a possibly negative index against `len`; `None` when outside the list.
fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    let i = if index < 0 { len + index } else { index };
    (0..len).contains(&i).then_some(i as usize)
}

/// The element at `i` counted from the head (`left`) or the tail.
fn end_element(l: &List, left: bool, i: usize) -> &[u8] {
    if left { &l[i] } else { &l[l.len() - 1 - i] }
}

/// Pushes `a[2..]` onto the list at `a[1]` and replies with the new length; with
/// `only_existing`, a missing key is left alone and the reply is 0.
fn push(ctx: &mut Ctx, a: Args, left: bool, only_existing: bool) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let len = match shard.lookup(key, h, ctx.now) {
        None if only_existing => {
            ctx.out.int(0);
            return Ok(());
        }
        None => 0,
        Some(e) => as_list(e.value())?.len(),
    };
    let items = a.tail(2);
    let now = ctx.now;
    with_slice(items.iter(), |items| {
        shard.commit(&[Effect::ListPush { key, left, items }], now)
    })?;
    ctx.out.int((len + items.len()) as i64);
    Ok(())
}

/// `LPUSH key element [element ...]` → the length after pushing each element at the head.
fn lpush(ctx: &mut Ctx, a: Args) -> CmdResult {
    push(ctx, a, true, false)
}

/// `RPUSH key element [element ...]` → the length after pushing each element at the tail.
fn rpush(ctx: &mut Ctx, a: Args) -> CmdResult {
    push(ctx, a, false, false)
}

/// `LPUSHX key element [element ...]` → as LPUSH, but 0 (and no key) when the key is
/// missing.
fn lpushx(ctx: &mut Ctx, a: Args) -> CmdResult {
    push(ctx, a, true, true)
}

/// `RPUSHX key element [element ...]` → as RPUSH, but 0 (and no key) when the key is
/// missing.
fn rpushx(ctx: &mut Ctx, a: Args) -> CmdResult {
    push(ctx, a, false, true)
}

/// `LPOP`/`RPOP key [count]`: without a count, the element or nil; with one, an array of
/// up to `count` elements in pop order, or a nil array when the key is missing.
fn pop(ctx: &mut Ctx, a: Args, left: bool) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Arity(
            if left { "lpop" } else { "rpop" }.to_string(),
        ));
    }
    let count = match a.get(2) {
        None => None,
        Some(c) => Some(
            args::uint(c)
                .map_err(|_| CmdError::Static("ERR value is out of range, must be positive"))?,
        ),
    };
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        match count {
            Some(_) => ctx.out.null_array(),
            None => ctx.out.null(),
        }
        return Ok(());
    };
    let l = as_list(e.value())?;
    let mark = ctx.out.len();
    let n = match count {
        Some(0) => {
            ctx.out.array(0);
            return Ok(());
        }
        Some(c) => {
            let n = usize::try_from(c).unwrap_or(usize::MAX).min(l.len());
            ctx.out.array(n);
            n
        }
        // Empty lists are deleted, so this is only a guard against a damaged load.
        None if l.is_empty() => {
            ctx.out.null();
            return Ok(());
        }
        None => 1,
    };
    for i in 0..n {
        ctx.out.bulk(end_element(l, left, i));
    }
    let done = shard.commit(
        &[Effect::ListPop {
            key,
            left,
            count: n as u64,
        }],
        ctx.now,
    );
    committed(ctx.out, mark, done)
}

/// `LPOP key [count]` → the first element (or the first `count`), removed.
fn lpop(ctx: &mut Ctx, a: Args) -> CmdResult {
    pop(ctx, a, true)
}

/// `RPOP key [count]` → the last element (or the last `count`, last first), removed.
fn rpop(ctx: &mut Ctx, a: Args) -> CmdResult {
    pop(ctx, a, false)
}

/// `LLEN key` → the length of the list, 0 when the key is missing.
fn llen(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let e = shard.get(key, h, ctx.now);
    ctx.lookup_stat(e.is_some());
    let len = match e {
        None => 0,
        Some(e) => as_list(e.value())?.len(),
    };
    ctx.out.int(len as i64);
    Ok(())
}

/// `LRANGE key start stop` → the elements from `start` to `stop` inclusive (negative
/// indices count from the tail; out-of-range indices are clamped).
fn lrange(ctx: &mut Ctx, a: Args) -> CmdResult {
    let start = args::int(&a[2])?;
    let stop = args::int(&a[3])?;
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let e = shard.get(key, h, ctx.now);
    ctx.lookup_stat(e.is_some());
    let Some(e) = e else {
        ctx.out.array(0);
        return Ok(());
    };
    let l = as_list(e.value())?;
    let len = l.len() as i64;
    let start = if start < 0 { len + start } else { start }.max(0);
    let stop = if stop < 0 { len + stop } else { stop };
    if start > stop || start >= len {
        ctx.out.array(0);
        return Ok(());
    }
    let stop = stop.min(len - 1);
    let range = l.range(start as usize..=stop as usize);
    ctx.out.array(range.len());
    for item in range {
        ctx.out.bulk(item);
    }
    Ok(())
}

/// `LINDEX key index` → the element at `index` (negative from the tail), or nil.
fn lindex(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let e = shard.get(key, h, ctx.now);
    ctx.lookup_stat(e.is_some());
    let Some(e) = e else {
        ctx.out.null();
        return Ok(());
    };
    let l = as_list(e.value())?;
    let index = args::int(&a[2])?;
    match resolve_index(index, l.len()) {
        Some(i) => ctx.out.bulk(&l[i]),
        None => ctx.out.null(),
    }
    Ok(())
}

/// `LSET key index element` → `OK`; `ERR no such key` for a missing key, `ERR index out
/// of range` outside the list.
fn lset(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (key, value) = (&a[1], &a[3]);
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        return Err(CmdError::NoSuchKey);
    };
    let l = as_list(e.value())?;
    let index = args::int(&a[2])?;
    let i = resolve_index(index, l.len()).ok_or(CmdError::Static("ERR index out of range"))?;
    shard.commit(
        &[Effect::ListSet {
            key,
            index: i as u64,
            value,
        }],
        ctx.now,
    )?;
    ctx.out.ok();
    Ok(())
}

/// `LINSERT key BEFORE|AFTER pivot element` → the length after inserting, -1 when the
/// pivot is not in the list, 0 when the key is missing.
fn linsert(ctx: &mut Ctx, a: Args) -> CmdResult {
    let after = if args::is(&a[2], "after") {
        true
    } else if args::is(&a[2], "before") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let (key, pivot, value) = (&a[1], &a[3], &a[4]);
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.out.int(0);
        return Ok(());
    };
    let l = as_list(e.value())?;
    let Some(at) = l.iter().position(|e| e.as_slice() == pivot) else {
        ctx.out.int(-1);
        return Ok(());
    };
    let len = l.len();
    shard.commit(
        &[Effect::ListInsert {
            key,
            index: (at + after as usize) as u64,
            value,
        }],
        ctx.now,
    )?;
    ctx.out.int(len as i64 + 1);
    Ok(())
}

/// `LREM key count element` → the number of elements equal to `element` removed: the
/// first `count` from the head when positive, the last `-count` when negative, all when
/// 0.
fn lrem(ctx: &mut Ctx, a: Args) -> CmdResult {
    let count = args::int(&a[2])?;
    let (key, value) = (&a[1], &a[3]);
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.out.int(0);
        return Ok(());
    };
    let l = as_list(e.value())?;
    let matches = l.iter().filter(|e| e.as_slice() == value).count() as u64;
    let removed = match count {
        0 => matches,
        c => matches.min(c.unsigned_abs()),
    };
    if removed > 0 {
        shard.commit(&[Effect::ListRemove { key, value, count }], ctx.now)?;
    }
    ctx.out.int(removed as i64);
    Ok(())
}

/// `LTRIM key start stop` → `OK`; the list keeps only `start..=stop` (Redis's index rules)
/// and is deleted when nothing is left.
fn ltrim(ctx: &mut Ctx, a: Args) -> CmdResult {
    let start = args::int(&a[2])?;
    let stop = args::int(&a[3])?;
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.out.ok();
        return Ok(());
    };
    let len = as_list(e.value())?.len() as i64;
    let start = if start < 0 { len + start } else { start }.max(0);
    let stop = if stop < 0 { len + stop } else { stop };
    let (head, tail) = if start > stop || start >= len {
        (len, 0)
    } else {
        (start, len - stop.min(len - 1) - 1)
    };
    if head > 0 || tail > 0 {
        shard.commit(
            &[Effect::ListTrim {
                key,
                head: head as u64,
                tail: tail as u64,
            }],
            ctx.now,
        )?;
    }
    ctx.out.ok();
    Ok(())
}

/// `LPOS key element [RANK rank] [COUNT num-matches] [MAXLEN len]` → the index of the
/// `rank`-th match (negative: counting from the tail), or nil; with COUNT, an array of up
/// to `num-matches` indices (0: all). MAXLEN bounds the elements compared.
fn lpos(ctx: &mut Ctx, a: Args) -> CmdResult {
    let element = &a[2];
    let mut rank: i64 = 1;
    let mut count: Option<u64> = None;
    let mut maxlen: u64 = 0;
    let mut j = 3;
    while j < a.len() {
        let more = j + 1 < a.len();
        if args::is(&a[j], "rank") && more {
            rank = args::int(&a[j + 1])?;
            if rank == i64::MIN {
                // Redis reads RANK within ±LONG_MAX, so that it can be negated.
                return Err(CmdError::Static(
                    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807",
                ));
            }
            if rank == 0 {
                return Err(CmdError::Static(
                    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list",
                ));
            }
        } else if args::is(&a[j], "count") && more {
            count = Some(
                args::uint(&a[j + 1])
                    .map_err(|_| CmdError::Static("ERR COUNT can't be negative"))?,
            );
        } else if args::is(&a[j], "maxlen") && more {
            maxlen = args::uint(&a[j + 1])
                .map_err(|_| CmdError::Static("ERR MAXLEN can't be negative"))?;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 2;
    }
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let e = shard.get(key, h, ctx.now);
    ctx.lookup_stat(e.is_some());
    let Some(e) = e else {
        match count {
            Some(_) => ctx.out.array(0),
            None => ctx.out.null(),
        }
        return Ok(());
    };
    let l = as_list(e.value())?;
    let from_tail = rank < 0;
    let skip = rank.unsigned_abs() - 1;
    let scan = match maxlen {
        0 => l.len(),
        m => usize::try_from(m).unwrap_or(usize::MAX).min(l.len()),
    };
    let wanted = match count {
        None => 1,
        Some(0) => u64::MAX,
        Some(c) => c,
    };
    let mut found: Vec<i64> = Vec::new();
    let mut seen: u64 = 0;
    for i in 0..scan {
        let index = if from_tail { l.len() - 1 - i } else { i };
        if l[index].as_slice() == element {
            seen += 1;
            if seen > skip {
                found.push(index as i64);
                if found.len() as u64 >= wanted {
                    break;
                }
            }
        }
    }
    match count {
        Some(_) => {
            ctx.out.array(found.len());
            for i in found {
                ctx.out.int(i);
            }
        }
        None => match found.first() {
            Some(&i) => ctx.out.int(i),
            None => ctx.out.null(),
        },
    }
    Ok(())
}

/// Pops one element from `src` (head when `from_left`) and pushes it onto `dst` (head
/// when `to_left`), atomically, and replies with the element. Returns false, replying
/// nothing, when `src` is missing.
pub(crate) fn move_element(
    ctx: &mut Ctx,
    src: &[u8],
    dst: &[u8],
    from_left: bool,
    to_left: bool,
) -> Result<bool, CmdError> {
    let store = &ctx.srv.store;
    let (hs, hd) = (store.hash(src), store.hash(dst));
    let mut multi = store.write_many([hs, hd]);
    let Some(e) = multi.lookup(src, hs, ctx.now) else {
        return Ok(false);
    };
    let l = as_list(e.value())?;
    if l.is_empty() {
        return Ok(false);
    }
    let single = l.len() == 1;
    let element = end_element(l, from_left, 0).to_vec();
    if let Some(d) = multi.lookup(dst, hd, ctx.now) {
        as_list(d.value())?;
    }
    // Moving the only element of a list onto itself changes nothing; as two effects the
    // pop would delete the key (and its deadline) before the push re-created it.
    if !(src == dst && single) {
        multi.commit(
            &[
                Effect::ListPop {
                    key: src,
                    left: from_left,
                    count: 1,
                },
                Effect::ListPush {
                    key: dst,
                    left: to_left,
                    items: &[&element],
                },
            ],
            ctx.now,
        )?;
    }
    ctx.out.bulk(&element);
    Ok(true)
}

/// `LMOVE source destination LEFT|RIGHT LEFT|RIGHT` → the element moved, or nil.
fn lmove(ctx: &mut Ctx, a: Args) -> CmdResult {
    let from_left = parse_side(&a[3])?;
    let to_left = parse_side(&a[4])?;
    if !move_element(ctx, &a[1], &a[2], from_left, to_left)? {
        ctx.out.null();
    }
    Ok(())
}

/// `RPOPLPUSH source destination` → as `LMOVE source destination RIGHT LEFT`.
fn rpoplpush(ctx: &mut Ctx, a: Args) -> CmdResult {
    if !move_element(ctx, &a[1], &a[2], false, true)? {
        ctx.out.null();
    }
    Ok(())
}

/// `LMPOP numkeys key [key ...] LEFT|RIGHT [COUNT count]` → `[key, [elements]]` from the
/// first non-empty list of the keys, or a nil array when all are missing.
fn lmpop(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (keys, left, count) = parse_mpop(&a, 1)?;
    if !pop_first(ctx, a, keys, left, count, PopReply::KeyAndElements)? {
        ctx.out.null_array();
    }
    Ok(())
}

/// Parses `numkeys key [key ...] LEFT|RIGHT [COUNT count]` starting at `a[numkeys_at]`
/// (LMPOP, BLMPOP): the keys' positions in `a`, whether to pop from the head, and the
/// count (1 by default).
pub(crate) fn parse_mpop(
    a: &Args,
    numkeys_at: usize,
) -> Result<(std::ops::Range<usize>, bool, u64), CmdError> {
    let numkeys = args::int(&a[numkeys_at])
        .ok()
        .filter(|&n| n >= 1)
        .ok_or(CmdError::Static("ERR numkeys should be greater than 0"))?;
    let side_at = usize::try_from(numkeys)
        .ok()
        .and_then(|n| n.checked_add(numkeys_at + 1))
        .filter(|&i| i < a.len())
        .ok_or(CmdError::Syntax)?;
    let left = parse_side(&a[side_at])?;
    let mut count: Option<u64> = None;
    let mut j = side_at + 1;
    while j < a.len() {
        if count.is_none() && args::is(&a[j], "count") && j + 1 < a.len() {
            count = Some(
                args::int(&a[j + 1])
                    .ok()
                    .filter(|&c| c >= 1)
                    .ok_or(CmdError::Static("ERR count should be greater than 0"))?
                    as u64,
            );
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok((numkeys_at + 1..side_at, left, count.unwrap_or(1)))
}

/// How [`pop_first`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PopReply {
    /// `[key, element]`: BLPOP, BRPOP (one element).
    KeyAndElement,
    /// `[key, [elements]]`: LMPOP, BLMPOP.
    KeyAndElements,
}

/// Pops up to `count` elements from the head (`left`) or the tail of the first
/// non-empty list among the keys at positions `keys` of `a`, atomically over all of
/// them, and replies as `shape` says. Returns false, replying nothing, when every key is
/// missing; WRONGTYPE when a key before the first list holds another type.
pub(crate) fn pop_first(
    ctx: &mut Ctx,
    a: Args,
    keys: std::ops::Range<usize>,
    left: bool,
    count: u64,
    shape: PopReply,
) -> Result<bool, CmdError> {
    let store = &ctx.srv.store;
    let mut multi = store.write_many(keys.clone().map(|i| store.hash(&a[i])));
    for i in keys {
        let key = &a[i];
        let h = store.hash(key);
        let Some(e) = multi.lookup(key, h, ctx.now) else {
            continue;
        };
        let l = as_list(e.value())?;
        if l.is_empty() {
            continue;
        }
        let n = usize::try_from(count).unwrap_or(usize::MAX).min(l.len());
        let mark = ctx.out.len();
        ctx.out.array(2);
        ctx.out.bulk(key);
        match shape {
            PopReply::KeyAndElement => ctx.out.bulk(end_element(l, left, 0)),
            PopReply::KeyAndElements => {
                ctx.out.array(n);
                for i in 0..n {
                    ctx.out.bulk(end_element(l, left, i));
                }
            }
        }
        let done = multi.commit(
            &[Effect::ListPop {
                key,
                left,
                count: n as u64,
            }],
            ctx.now,
        );
        return committed(ctx.out, mark, done).map(|()| true);
    }
    Ok(false)
}

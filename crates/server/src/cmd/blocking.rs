//! Blocking pops: BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP.
//!
//! Each is its non-blocking counterpart (the pops of `lists.rs` and `zsets.rs`) run
//! through [`blocked::serve_or_block`]: when none of the keys has data the client
//! blocks until one does or the timeout passes (see `blocked.rs`). Arguments are
//! checked first, as Redis does, so a bad timeout is an error even when data is there.

use dse_proto::Args;

use crate::blocked::{self, Denied, Kind, Wait};
use crate::cmd::lists::{self, PopReply};
use crate::cmd::zsets::{self, ZPopReply};
use crate::command::{CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("blpop", -3, WRITE | NOSCRIPT | BLOCKING, blpop)
        .keys(1, -2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "2.0.0",
            "O(N) where N is the number of provided keys.",
            "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.",
        ),
    cmd("brpop", -3, WRITE | NOSCRIPT | BLOCKING, brpop)
        .keys(1, -2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "2.0.0",
            "O(N) where N is the number of provided keys.",
            "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.",
        ),
    cmd("brpoplpush", 4, WRITE | DENYOOM | NOSCRIPT | BLOCKING, brpoplpush)
        .keys(1, 2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "2.2.0",
            "O(1)",
            "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.",
        ),
    cmd("blmove", 6, WRITE | DENYOOM | NOSCRIPT | BLOCKING, blmove)
        .keys(1, 2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "6.2.0",
            "O(1)",
            "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.",
        ),
    // The keys follow a count (Redis's "movablekeys").
    cmd("blmpop", -5, WRITE | BLOCKING, blmpop)
        .keys(0, 0, 0)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "list",
            "7.0.0",
            "O(N+M) where N is the number of provided keys and M is the number of elements returned.",
            "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.",
        ),
    cmd("bzpopmin", -3, WRITE | NOSCRIPT | FAST | BLOCKING, bzpopmin)
        .keys(1, -2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "sorted-set",
            "5.0.0",
            "O(log(N)) with N being the number of elements in the sorted set.",
            "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.",
        ),
    cmd("bzpopmax", -3, WRITE | NOSCRIPT | FAST | BLOCKING, bzpopmax)
        .keys(1, -2, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "sorted-set",
            "5.0.0",
            "O(log(N)) with N being the number of elements in the sorted set.",
            "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise.  Deletes the sorted set if the last element was popped.",
        ),
    cmd("bzmpop", -5, WRITE | BLOCKING, bzmpop)
        .keys(0, 0, 0)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "sorted-set",
            "7.0.0",
            "O(K) + O(M*log(N)) where K is the number of provided keys, N being the number of elements in the sorted set, and M being the number of elements popped.",
            "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.",
        ),
];

/// `BLPOP key [key ...] timeout` → `[key, element]` from the head of the first
/// non-empty list; blocks while all are empty; a nil array on timeout.
fn blpop(ctx: &mut Ctx, a: Args) -> CmdResult {
    bpop(ctx, a, true)
}

/// `BRPOP key [key ...] timeout` → as BLPOP, from the tail.
fn brpop(ctx: &mut Ctx, a: Args) -> CmdResult {
    bpop(ctx, a, false)
}

fn bpop(ctx: &mut Ctx, a: Args, left: bool) -> CmdResult {
    let last = a.len() - 1;
    let timeout = blocked::parse_timeout(&a[last], ctx.now)?;
    let wait = Wait {
        keys: 1..last,
        kind: Kind::List,
        timeout,
        denied: Denied::NullArray,
    };
    blocked::serve_or_block(ctx, a, wait, |ctx| {
        lists::pop_first(ctx, a, 1..last, left, 1, PopReply::KeyAndElement)
    })
}

/// `BLMOVE source destination LEFT|RIGHT LEFT|RIGHT timeout` → the element moved; blocks
/// while `source` is empty; a nil array on timeout (as Redis: nil inside EXEC).
fn blmove(ctx: &mut Ctx, a: Args) -> CmdResult {
    let from_left = lists::parse_side(&a[3])?;
    let to_left = lists::parse_side(&a[4])?;
    let timeout = blocked::parse_timeout(&a[5], ctx.now)?;
    block_move(ctx, a, from_left, to_left, timeout)
}

/// `BRPOPLPUSH source destination timeout` → as `BLMOVE source destination RIGHT LEFT`.
fn brpoplpush(ctx: &mut Ctx, a: Args) -> CmdResult {
    let timeout = blocked::parse_timeout(&a[3], ctx.now)?;
    block_move(ctx, a, false, true, timeout)
}

fn block_move(ctx: &mut Ctx, a: Args, from_left: bool, to_left: bool, timeout: u64) -> CmdResult {
    let wait = Wait {
        keys: 1..2,
        kind: Kind::List,
        timeout,
        denied: Denied::Null,
    };
    blocked::serve_or_block(ctx, a, wait, |ctx| {
        lists::move_element(ctx, &a[1], &a[2], from_left, to_left)
    })
}

/// `BLMPOP timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]` → as LMPOP; blocks
/// while every list is empty; a nil array on timeout.
fn blmpop(ctx: &mut Ctx, a: Args) -> CmdResult {
    let timeout = blocked::parse_timeout(&a[1], ctx.now)?;
    let (keys, left, count) = lists::parse_mpop(&a, 2)?;
    let wait = Wait {
        keys: keys.clone(),
        kind: Kind::List,
        timeout,
        denied: Denied::NullArray,
    };
    blocked::serve_or_block(ctx, a, wait, |ctx| {
        lists::pop_first(ctx, a, keys.clone(), left, count, PopReply::KeyAndElements)
    })
}

/// `BZPOPMIN key [key ...] timeout` → `[key, member, score]` with the lowest score of
/// the first non-empty sorted set; blocks while all are empty; a nil array on timeout.
fn bzpopmin(ctx: &mut Ctx, a: Args) -> CmdResult {
    bzpop(ctx, a, false)
}

/// `BZPOPMAX key [key ...] timeout` → as BZPOPMIN, with the highest score.
fn bzpopmax(ctx: &mut Ctx, a: Args) -> CmdResult {
    bzpop(ctx, a, true)
}

fn bzpop(ctx: &mut Ctx, a: Args, max: bool) -> CmdResult {
    let last = a.len() - 1;
    let timeout = blocked::parse_timeout(&a[last], ctx.now)?;
    let wait = Wait {
        keys: 1..last,
        kind: Kind::ZSet,
        timeout,
        denied: Denied::NullArray,
    };
    blocked::serve_or_block(ctx, a, wait, |ctx| {
        zsets::zpop_first(ctx, a, 1..last, max, 1, ZPopReply::KeyMemberScore)
    })
}

/// `BZMPOP timeout numkeys key [key ...] MIN|MAX [COUNT count]` → as ZMPOP; blocks while
/// every sorted set is empty; a nil array on timeout.
fn bzmpop(ctx: &mut Ctx, a: Args) -> CmdResult {
    let timeout = blocked::parse_timeout(&a[1], ctx.now)?;
    let (keys, max, count) = zsets::parse_mpop(&a, 2)?;
    let wait = Wait {
        keys: keys.clone(),
        kind: Kind::ZSet,
        timeout,
        denied: Denied::NullArray,
    };
    blocked::serve_or_block(ctx, a, wait, |ctx| {
        zsets::zpop_first(ctx, a, keys.clone(), max, count, ZPopReply::KeyAndPairs)
    })
}

//! Sorted-set commands.
//!
//! Writes are journaled as element-level effects (`ZAdd` with the resulting scores,
//! `ZRem` with the members removed); ZINCRBY and ZADD INCR log the new score, pops log
//! the members they took. The *STORE commands log their result as one value.
//!
//! Scores follow Redis exactly: parsed as C's `strtod` reads them, never NaN, and -0 is
//! kept only where Redis keeps it (see [`Compact`]). The blocking pops (BZPOPMIN, BZPOPMAX,
//! BZMPOP, in `blocking.rs`) share [`zpop_first`].

use dse_engine::{Effect, KeyHash, MultiMut, ScoredMember, Value, ZSet, glob_match};
use dse_proto::{Args, DoubleText, Reply};
use rand::Rng;

use crate::args;
use crate::cmd::sets::{
    LIMIT_NEGATIVE, MAX_RANDOM_REPLY, MUST_BE_POSITIVE, Members, distinct_positions, non_negative,
    numkeys, pick, random_count, scan_cursor, scan_pattern,
};
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

const RANGE_COMPLEXITY: &str = "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements returned.";
const RANGE_LIMIT_COMPLEXITY: &str = "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements being returned. If M is constant (e.g. always asking for the first 10 elements with LIMIT), you can consider it O(log(N)).";
const REMRANGE_COMPLEXITY: &str = "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements removed by the operation.";
const POP_COMPLEXITY: &str = "O(log(N)*M) with N being the number of elements in the sorted set, and M being the number of elements popped.";
const UNION_COMPLEXITY: &str = "O(N)+O(M*log(M)) with N being the sum of the sizes of the input sorted sets, and M being the number of elements in the resulting sorted set.";
const UNIONSTORE_COMPLEXITY: &str = "O(N)+O(M log(M)) with N being the sum of the sizes of the input sorted sets, and M being the number of elements in the resulting sorted set.";
const INTER_COMPLEXITY: &str = "O(N*K)+O(M*log(M)) worst case with N being the smallest input sorted set, K being the number of input sorted sets and M being the number of elements in the resulting sorted set.";
const DIFF_COMPLEXITY: &str = "O(L + (N-K)log(N)) worst case where L is the total number of elements in all the sets, N is the size of the first set, and K is the size of the result set.";
const SCAN_COMPLEXITY: &str = "O(1) for every call. O(N) for a complete iteration, including enough command calls for the cursor to return back to 0. N is the number of elements inside the collection..";

pub const COMMANDS: &[CommandSpec] = &[
    cmd("zadd", -4, WRITE | DENYOOM | FAST, zadd)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.2.0",
            "O(log(N)) for each item added, where N is the number of elements in the sorted set.",
            "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.",
        ),
    cmd("zincrby", 4, WRITE | DENYOOM | FAST, zincrby)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "sorted-set",
            "1.2.0",
            "O(log(N)) where N is the number of elements in the sorted set.",
            "Increments the score of a member in a sorted set.",
        ),
    cmd("zrem", -3, WRITE | FAST, zrem)
        .keys(1, 1, 1)
        .key_flags(&["RW", "delete"])
        .doc(
            "sorted-set",
            "1.2.0",
            "O(M*log(N)) with N being the number of elements in the sorted set and M the number of elements to be removed.",
            "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.",
        ),
    cmd("zscore", 3, READONLY | FAST, zscore).keys(1, 1, 1).doc(
        "sorted-set",
        "1.2.0",
        "O(1)",
        "Returns the score of a member in a sorted set.",
    ),
    cmd("zmscore", -3, READONLY | FAST, zmscore)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "6.2.0",
            "O(N) where N is the number of members being requested.",
            "Returns the score of one or more members in a sorted set.",
        ),
    cmd("zcard", 2, READONLY | FAST, zcard)
        .keys(1, 1, 1)
        .key_flags(&["RO"])
        .doc(
            "sorted-set",
            "1.2.0",
            "O(1)",
            "Returns the number of members in a sorted set.",
        ),
    cmd("zcount", 4, READONLY | FAST, zcount).keys(1, 1, 1).doc(
        "sorted-set",
        "2.0.0",
        "O(log(N)) with N being the number of elements in the sorted set.",
        "Returns the count of members in a sorted set that have scores within a range.",
    ),
    cmd("zlexcount", 4, READONLY | FAST, zlexcount)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.8.9",
            "O(log(N)) with N being the number of elements in the sorted set.",
            "Returns the number of members in a sorted set within a lexicographical range.",
        ),
    cmd("zrange", -4, READONLY, zrange).keys(1, 1, 1).doc(
        "sorted-set",
        "1.2.0",
        RANGE_COMPLEXITY,
        "Returns members in a sorted set within a range of indexes.",
    ),
    cmd("zrangestore", -5, WRITE | DENYOOM, zrangestore)
        .keys(1, 2, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "sorted-set",
            "6.2.0",
            "O(log(N)+M) with N being the number of elements in the sorted set and M the number of elements stored into the destination key.",
            "Stores a range of members from sorted set in a key.",
        ),
    cmd("zrevrange", -4, READONLY, zrevrange).keys(1, 1, 1).doc(
        "sorted-set",
        "1.2.0",
        RANGE_COMPLEXITY,
        "Returns members in a sorted set within a range of indexes in reverse order.",
    ),
    cmd("zrangebyscore", -4, READONLY, zrangebyscore)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "1.0.5",
            RANGE_LIMIT_COMPLEXITY,
            "Returns members in a sorted set within a range of scores.",
        ),
    cmd("zrevrangebyscore", -4, READONLY, zrevrangebyscore)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.2.0",
            RANGE_LIMIT_COMPLEXITY,
            "Returns members in a sorted set within a range of scores in reverse order.",
        ),
    cmd("zrangebylex", -4, READONLY, zrangebylex)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.8.9",
            RANGE_LIMIT_COMPLEXITY,
            "Returns members in a sorted set within a lexicographical range.",
        ),
    cmd("zrevrangebylex", -4, READONLY, zrevrangebylex)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.8.9",
            RANGE_LIMIT_COMPLEXITY,
            "Returns members in a sorted set within a lexicographical range in reverse order.",
        ),
    cmd("zrank", -3, READONLY | FAST, zrank).keys(1, 1, 1).doc(
        "sorted-set",
        "2.0.0",
        "O(log(N))",
        "Returns the index of a member in a sorted set ordered by ascending scores.",
    ),
    cmd("zrevrank", -3, READONLY | FAST, zrevrank)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "2.0.0",
            "O(log(N))",
            "Returns the index of a member in a sorted set ordered by descending scores.",
        ),
    cmd("zpopmin", -2, WRITE | FAST, zpopmin)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "sorted-set",
            "5.0.0",
            POP_COMPLEXITY,
            "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.",
        ),
    cmd("zpopmax", -2, WRITE | FAST, zpopmax)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "sorted-set",
            "5.0.0",
            POP_COMPLEXITY,
            "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.",
        ),
    cmd("zmpop", -4, WRITE, zmpop)
        .key_flags(&["RW", "access", "delete"])
        .doc(
            "sorted-set",
            "7.0.0",
            "O(K) + O(M*log(N)) where K is the number of provided keys, N being the number of elements in the sorted set, and M being the number of elements popped.",
            "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.",
        ),
    cmd("zrandmember", -2, READONLY, zrandmember)
        .keys(1, 1, 1)
        .doc(
            "sorted-set",
            "6.2.0",
            "O(N) where N is the number of elements returned",
            "Returns one or more random members from a sorted set.",
        ),
    cmd("zremrangebyrank", 4, WRITE, zremrangebyrank)
        .keys(1, 1, 1)
        .key_flags(&["RW", "delete"])
        .doc(
            "sorted-set",
            "2.0.0",
            REMRANGE_COMPLEXITY,
            "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.",
        ),
    cmd("zremrangebyscore", 4, WRITE, zremrangebyscore)
        .keys(1, 1, 1)
        .key_flags(&["RW", "delete"])
        .doc(
            "sorted-set",
            "1.2.0",
            REMRANGE_COMPLEXITY,
            "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.",
        ),
    cmd("zremrangebylex", 4, WRITE, zremrangebylex)
        .keys(1, 1, 1)
        .key_flags(&["RW", "delete"])
        .doc(
            "sorted-set",
            "2.8.9",
            REMRANGE_COMPLEXITY,
            "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.",
        ),
    cmd("zunion", -3, READONLY, zunion).doc(
        "sorted-set",
        "6.2.0",
        UNION_COMPLEXITY,
        "Returns the union of multiple sorted sets.",
    ),
    cmd("zinter", -3, READONLY, zinter).doc(
        "sorted-set",
        "6.2.0",
        INTER_COMPLEXITY,
        "Returns the intersect of multiple sorted sets.",
    ),
    cmd("zdiff", -3, READONLY, zdiff).doc(
        "sorted-set",
        "6.2.0",
        DIFF_COMPLEXITY,
        "Returns the difference between multiple sorted sets.",
    ),
    cmd("zunionstore", -4, WRITE | DENYOOM, zunionstore)
        .keys(1, 1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "sorted-set",
            "2.0.0",
            UNIONSTORE_COMPLEXITY,
            "Stores the union of multiple sorted sets in a key.",
        ),
    cmd("zinterstore", -4, WRITE | DENYOOM, zinterstore)
        .keys(1, 1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "sorted-set",
            "2.0.0",
            INTER_COMPLEXITY,
            "Stores the intersect of multiple sorted sets in a key.",
        ),
    cmd("zdiffstore", -4, WRITE | DENYOOM, zdiffstore)
        .keys(1, 1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "sorted-set",
            "6.2.0",
            DIFF_COMPLEXITY,
            "Stores the difference of multiple sorted sets in a key.",
        ),
    cmd("zintercard", -3, READONLY, zintercard).doc(
        "sorted-set",
        "7.0.0",
        "O(N*K) worst case with N being the smallest input sorted set, K being the number of input sorted sets.",
        "Returns the number of members of the intersect of multiple sorted sets.",
    ),
    cmd("zscan", -3, READONLY, zscan).keys(1, 1, 1).doc(
        "sorted-set",
        "2.8.0",
        SCAN_COMPLEXITY,
        "Iterates over members and scores of a sorted set.",
    ),
];

const NAN_RESULT: CmdError = CmdError::Static("ERR resulting score is not a number (NaN)");
const NOT_FLOAT_RANGE: CmdError = CmdError::Static("ERR min or max is not a float");
const NOT_LEX_RANGE: CmdError = CmdError::Static("ERR min or max not valid string range item");

/// The sorted set a value holds; WRONGTYPE for any other type.
fn as_zset(v: &Value) -> Result<&ZSet, CmdError> {
    match v {
        Value::ZSet(z) => Ok(z),
        _ => Err(CmdError::WrongType),
    }
}

// ---------------------------------------------------------------------------------------
// Parsing numbers and ranges the way Redis does.

/// C's `strtod` on `s`: the value of the longest prefix that is a number (after leading
/// white space), the bytes it used (0 when there is no number), and whether the value
/// over- or underflowed (`ERANGE` with a result of ±HUGE_VAL or 0).
pub(crate) fn strtod(s: &[u8]) -> (f64, usize, bool) {
    let mut i = s
        .iter()
        .position(|&c| !matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
        .unwrap_or(s.len());
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let signed = |v: f64| if negative { -v } else { v };
    let rest = &s[i..];
    let starts =
        |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
    if starts(b"infinity") {
        return (signed(f64::INFINITY), i + 8, false);
    }
    if starts(b"inf") {
        return (signed(f64::INFINITY), i + 3, false);
    }
    if starts(b"nan") {
        let mut end = i + 3;
        if s.get(end) == Some(&b'(')
            && let Some(close) = s[end..]
                .iter()
                .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b'('))
            && s[end + close] == b')'
        {
            end += close + 1;
        }
        return (f64::NAN, end, false);
    }
    if (starts(b"0x"))
        && rest.get(2).is_some_and(|c| {
            c.is_ascii_hexdigit() || (*c == b'.' && rest.get(3).is_some_and(u8::is_ascii_hexdigit))
        })
    {
        let (v, used, range) = hex_float(&rest[2..]);
        return (signed(v), i + 2 + used, range);
    }
    // Decimal: digits, an optional fraction, an optional exponent with digits.
    let digits = |from: usize| s[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let start = i;
    let int_digits = digits(i);
    i += int_digits;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        frac_digits = digits(i + 1);
        if int_digits + frac_digits > 0 {
            i += 1 + frac_digits;
        }
    }
    if int_digits + frac_digits == 0 {
        return (0.0, 0, false);
    }
    let mantissa_end = i;
    if matches!(s.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        let exp_digits = digits(j);
        if exp_digits > 0 {
            i = j + exp_digits;
        }
    }
    // Only ASCII digits, '.', 'e' and signs were taken, which Rust parses exactly (and
    // rounds correctly, as glibc does).
    let text = std::str::from_utf8(&s[start..i]).unwrap_or("0");
    let v: f64 = text.parse().unwrap_or(0.0);
    let nonzero = s[start..mantissa_end]
        .iter()
        .any(|c| matches!(c, b'1'..=b'9'));
    let range = v.is_infinite() || (v == 0.0 && nonzero);
    (signed(v), i, range)
}

/// The hex digits (with an optional point and binary exponent) after "0x".
fn hex_float(s: &[u8]) -> (f64, usize, bool) {
    let mut mantissa: u64 = 0;
    let mut exp: i64 = 0;
    let mut i = 0;
    let mut seen_point = false;
    let mut nonzero = false;
    while let Some(&c) = s.get(i) {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            b'.' if !seen_point => {
                seen_point = true;
                i += 1;
                continue;
            }
            _ => break,
        };
        nonzero |= d != 0;
        if mantissa >> 60 == 0 {
            mantissa = mantissa << 4 | d as u64;
            if seen_point {
                exp -= 4;
            }
        } else if !seen_point {
            // Digits beyond 64 bits of precision only scale the value.
            exp += 4;
        }
        i += 1;
    }
    if matches!(s.get(i), Some(b'p' | b'P')) {
        let mut j = i + 1;
        let neg = match s.get(j) {
            Some(b'-') => {
                j += 1;
                true
            }
            Some(b'+') => {
                j += 1;
                false
            }
            _ => false,
        };
        let n = s[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n > 0 {
            let e: i64 = s[j..j + n].iter().fold(0i64, |acc, &c| {
                acc.saturating_mul(10).saturating_add((c - b'0') as i64)
            });
            exp = exp.saturating_add(if neg { -e } else { e });
            i = j + n;
        }
    }
    let mut v = mantissa as f64;
    let mut e = exp.clamp(-2200, 2200) as i32;
    while e != 0 {
        let step = e.clamp(-1000, 1000);
        v *= 2f64.powi(step);
        e -= step;
    }
    let range = v.is_infinite() || (v == 0.0 && nonzero);
    (v, i, range)
}

/// A score argument (ZADD, ZINCRBY, WEIGHTS), as Redis's `getDoubleFromObject`: a whole
/// number with no leading space, not NaN, not out of range.
fn parse_double(a: &[u8], err: CmdError) -> Result<f64, CmdError> {
    let (v, used, range) = strtod(a);
    let leading_space = a
        .first()
        .is_some_and(|c| c.is_ascii_whitespace() || *c == 0x0b);
    if a.is_empty() || leading_space || used != a.len() || v.is_nan() || range {
        return Err(err);
    }
    Ok(v)
}

fn score_arg(a: &[u8]) -> Result<f64, CmdError> {
    parse_double(a, CmdError::NotFloat)
}

/// A score interval (`1`, `(1`, `-inf`, `+inf`), as Redis's `zslParseRange`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ScoreRange {
    min: f64,
    minex: bool,
    max: f64,
    maxex: bool,
}

impl ScoreRange {
    fn parse(min: &[u8], max: &[u8]) -> Result<ScoreRange, CmdError> {
        let (min, minex) = score_bound(min).ok_or(NOT_FLOAT_RANGE)?;
        let (max, maxex) = score_bound(max).ok_or(NOT_FLOAT_RANGE)?;
        Ok(ScoreRange {
            min,
            minex,
            max,
            maxex,
        })
    }

    fn above_min(&self, v: f64) -> bool {
        if self.minex {
            v > self.min
        } else {
            v >= self.min
        }
    }

    fn below_max(&self, v: f64) -> bool {
        if self.maxex {
            v < self.max
        } else {
            v <= self.max
        }
    }

    /// The ranks `lo..hi` of the entries inside the range.
    fn ranks(&self, z: &ZSet) -> (usize, usize) {
        let lo = z.ordered.partition_point(|e| !self.above_min(e.score));
        let hi = z.ordered.partition_point(|e| self.below_max(e.score));
        (lo, hi.max(lo))
    }
}

/// One end of a score range. Like `strtod`, an empty number is 0 and the text ends at a
/// NUL byte.
fn score_bound(a: &[u8]) -> Option<(f64, bool)> {
    let (text, exclusive) = match a {
        [b'(', rest @ ..] => (rest, true),
        _ => (a, false),
    };
    let (v, used, _) = strtod(text);
    let end_ok = used == text.len() || text[used] == 0;
    (end_ok && !v.is_nan()).then_some((v, exclusive))
}

/// One end of a lexicographical range.
#[derive(Clone, Copy, Debug, PartialEq)]
enum LexBound<'a> {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    /// `[member`
    Incl(&'a [u8]),
    /// `(member`
    Excl(&'a [u8]),
}

impl<'a> LexBound<'a> {
    fn parse(a: &'a [u8]) -> Option<LexBound<'a>> {
        match a {
            [b'+'] | [b'+', 0, ..] => Some(LexBound::Max),
            [b'-'] | [b'-', 0, ..] => Some(LexBound::Min),
            [b'(', rest @ ..] => Some(LexBound::Excl(rest)),
            [b'[', rest @ ..] => Some(LexBound::Incl(rest)),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct LexRange<'a> {
    min: LexBound<'a>,
    max: LexBound<'a>,
}

impl<'a> LexRange<'a> {
    fn parse(min: &'a [u8], max: &'a [u8]) -> Result<LexRange<'a>, CmdError> {
        match (LexBound::parse(min), LexBound::parse(max)) {
            (Some(min), Some(max)) => Ok(LexRange { min, max }),
            _ => Err(NOT_LEX_RANGE),
        }
    }

    fn above_min(&self, m: &[u8]) -> bool {
        match self.min {
            LexBound::Min => true,
            LexBound::Max => false,
            LexBound::Incl(x) => m >= x,
            LexBound::Excl(x) => m > x,
        }
    }

    fn below_max(&self, m: &[u8]) -> bool {
        match self.max {
            LexBound::Max => true,
            LexBound::Min => false,
            LexBound::Incl(x) => m <= x,
            LexBound::Excl(x) => m < x,
        }
    }

    /// The ranks `lo..hi` of the entries inside the range (members are in order when the
    /// scores are all equal, which is what lexicographical ranges are for).
    fn ranks(&self, z: &ZSet) -> (usize, usize) {
        let lo = z.ordered.partition_point(|e| !self.above_min(&e.member));
        let hi = z.ordered.partition_point(|e| self.below_max(&e.member));
        (lo, hi.max(lo))
    }
}

// ---------------------------------------------------------------------------------------
// Storing scores: where Redis keeps -0.

/// Whether Redis would hold a sorted set in its compact (listpack) encoding, where every
/// score is stored as an integer when it is one, so -0 becomes 0. A set leaves it when it
/// grows past 128 members or takes a member longer than 64 bytes; scores stored after
/// that keep their sign.
#[derive(Clone, Copy)]
struct Compact(bool);

const COMPACT_MAX_ENTRIES: usize = 128;
const COMPACT_MAX_VALUE: usize = 64;

impl Compact {
    /// For a set of `len` members whose longest member has `longest` bytes.
    fn new(len: usize, longest: usize) -> Compact {
        Compact(len <= COMPACT_MAX_ENTRIES && longest <= COMPACT_MAX_VALUE)
    }

    /// Notes the insertion of `member` into a set that then has `len_after` members.
    fn insert(&mut self, member: &[u8], len_after: usize) {
        if len_after > COMPACT_MAX_ENTRIES || member.len() > COMPACT_MAX_VALUE {
            self.0 = false;
        }
    }

    /// The score as the set stores it.
    fn store(self, score: f64) -> f64 {
        if self.0 && score == 0.0 { 0.0 } else { score }
    }
}

// ---------------------------------------------------------------------------------------
// Replies.

/// Writes `n` entries, with their scores when asked: a flat array in RESP2, an array of
/// [member, score] pairs in RESP3.
fn reply_entries<'z>(
    out: &mut Reply,
    entries: impl Iterator<Item = (&'z [u8], f64)>,
    n: usize,
    withscores: bool,
) {
    let pairs = withscores && out.is_resp3();
    out.array(if withscores && !pairs { 2 * n } else { n });
    for (member, score) in entries {
        if pairs {
            out.array(2);
        }
        out.bulk(member);
        if withscores {
            out.double(score);
        }
    }
}

fn entry(e: &ScoredMember) -> (&[u8], f64) {
    (&e.member, e.score)
}

/// Runs `f` on the sorted set at `key` (`None` when missing), counting a keyspace hit or
/// miss.
fn read_zset<R>(
    ctx: &mut Ctx,
    key: &[u8],
    f: impl FnOnce(&mut Ctx, Option<&ZSet>) -> Result<R, CmdError>,
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
            let z = as_zset(e.value())?;
            f(ctx, Some(z))
        }
    }
}

// ---------------------------------------------------------------------------------------
// ZADD, ZINCRBY, ZREM.

/// ZADD's options.
#[derive(Default, Clone, Copy)]
struct AddFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]` → the number
/// of members added (with CH: added or whose score changed); with INCR, the member's new
/// score, or nil when a condition prevented the change.
fn zadd(ctx: &mut Ctx, a: Args) -> CmdResult {
    let mut flags = AddFlags::default();
    let mut first = 2;
    while let Some(opt) = a.get(first) {
        let f = match () {
            _ if args::is(opt, "nx") => &mut flags.nx,
            _ if args::is(opt, "xx") => &mut flags.xx,
            _ if args::is(opt, "gt") => &mut flags.gt,
            _ if args::is(opt, "lt") => &mut flags.lt,
            _ if args::is(opt, "ch") => &mut flags.ch,
            _ if args::is(opt, "incr") => &mut flags.incr,
            _ => break,
        };
        *f = true;
        first += 1;
    }
    zadd_generic(ctx, &a, first, flags)
}

/// `ZINCRBY key increment member` → the member's new score.
fn zincrby(ctx: &mut Ctx, a: Args) -> CmdResult {
    zadd_generic(
        ctx,
        &a,
        2,
        AddFlags {
            incr: true,
            ..Default::default()
        },
    )
}

fn zadd_generic(ctx: &mut Ctx, a: &Args, first: usize, f: AddFlags) -> CmdResult {
    let elements = a.len() - first;
    if elements == 0 || elements % 2 == 1 {
        return Err(CmdError::Syntax);
    }
    let pairs = elements / 2;
    if f.nx && f.xx {
        return Err(CmdError::Static(
            "ERR XX and NX options at the same time are not compatible",
        ));
    }
    if (f.nx && (f.gt || f.lt)) || (f.gt && f.lt) {
        return Err(CmdError::Static(
            "ERR GT, LT, and/or NX options at the same time are not compatible",
        ));
    }
    if f.incr && pairs > 1 {
        return Err(CmdError::Static(
            "ERR INCR option supports a single increment-element pair",
        ));
    }
    let mut input: Vec<(f64, &[u8])> = Vec::with_capacity(pairs);
    for j in 0..pairs {
        input.push((score_arg(&a[first + 2 * j])?, &a[first + 2 * j + 1]));
    }
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let existing = match shard.lookup(key, h, ctx.now) {
        Some(e) => Some(as_zset(e.value())?),
        None => None,
    };
    if existing.is_none() && f.xx {
        reply_zadd(ctx, f, 0, 0, None);
        return Ok(());
    }
    let mut compact = match existing {
        Some(z) => Compact::new(z.len(), 0),
        None => Compact::new(pairs, input.iter().map(|p| p.1.len()).max().unwrap_or(0)),
    };
    let mut len = existing.map_or(0, |z| z.len());
    // Scores this command already changed, for members named twice (a single pair
    // needs no memory of them, and allocates nothing).
    let mut changed: hashbrown::HashMap<&[u8], f64, foldhash::fast::RandomState> =
        Default::default();
    let several = pairs > 1;
    let mut effects: Vec<(f64, &[u8])> = Vec::with_capacity(pairs);
    let (mut added, mut updated, mut processed) = (0, 0, 0);
    let mut result = 0.0;
    for (score, member) in input {
        let current = changed
            .get(member)
            .copied()
            .or_else(|| existing.and_then(|z| z.score(member)));
        match current {
            Some(cur) => {
                if f.nx {
                    continue;
                }
                let mut new = score;
                if f.incr {
                    new += cur;
                    if new.is_nan() {
                        return Err(NAN_RESULT);
                    }
                }
                if (f.lt && new >= cur) || (f.gt && new <= cur) {
                    continue;
                }
                processed += 1;
                result = new;
                if new != cur {
                    updated += 1;
                    let stored = compact.store(new);
                    effects.push((stored, member));
                    if several {
                        changed.insert(member, stored);
                    }
                }
            }
            None => {
                if f.xx {
                    continue;
                }
                len += 1;
                compact.insert(member, len);
                added += 1;
                processed += 1;
                result = score;
                let stored = compact.store(score);
                effects.push((stored, member));
                if several {
                    changed.insert(member, stored);
                }
            }
        }
    }
    if !effects.is_empty() {
        shard.commit(
            &[Effect::ZAdd {
                key,
                entries: &effects,
            }],
            ctx.now,
        )?;
    }
    reply_zadd(ctx, f, added, updated, (processed > 0).then_some(result));
    Ok(())
}

fn reply_zadd(ctx: &mut Ctx, f: AddFlags, added: i64, updated: i64, score: Option<f64>) {
    match (f.incr, score) {
        (true, Some(s)) => ctx.out.double(s),
        (true, None) => ctx.out.null(),
        (false, _) => ctx.out.int(if f.ch { added + updated } else { added }),
    }
}

/// `ZREM key member [member ...]` → the number of members removed. An emptied sorted set
/// is deleted.
fn zrem(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.out.int(0);
        return Ok(());
    };
    let z = as_zset(e.value())?;
    let mut removed: Vec<&[u8]> = Vec::new();
    for m in a.iter().skip(2) {
        if z.score(m).is_some() && !removed.contains(&m) {
            removed.push(m);
        }
    }
    if !removed.is_empty() {
        shard.commit(
            &[Effect::ZRem {
                key,
                members: &removed,
            }],
            ctx.now,
        )?;
    }
    ctx.out.int(removed.len() as i64);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reads by member, by count.

/// `ZSCORE key member` → the member's score, or nil.
fn zscore(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_zset(ctx, &a[1], |ctx, z| {
        match z.and_then(|z| z.score(&a[2])) {
            Some(s) => ctx.out.double(s),
            None => ctx.out.null(),
        }
        Ok(())
    })
}

/// `ZMSCORE key member [member ...]` → each member's score, or nil.
fn zmscore(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_zset(ctx, &a[1], |ctx, z| {
        ctx.out.array(a.len() - 2);
        for m in a.iter().skip(2) {
            match z.and_then(|z| z.score(m)) {
                Some(s) => ctx.out.double(s),
                None => ctx.out.null(),
            }
        }
        Ok(())
    })
}

/// `ZCARD key` → the number of members (0 for a missing key).
fn zcard(ctx: &mut Ctx, a: Args) -> CmdResult {
    read_zset(ctx, &a[1], |ctx, z| {
        ctx.out.int(z.map_or(0, |z| z.len()) as i64);
        Ok(())
    })
}

/// `ZCOUNT key min max` → the number of members with a score in the range.
fn zcount(ctx: &mut Ctx, a: Args) -> CmdResult {
    let range = ScoreRange::parse(&a[2], &a[3])?;
    read_zset(ctx, &a[1], |ctx, z| {
        let n = z.map_or(0, |z| {
            let (lo, hi) = range.ranks(z);
            hi - lo
        });
        ctx.out.int(n as i64);
        Ok(())
    })
}

/// `ZLEXCOUNT key min max` → the number of members in the lexicographical range.
fn zlexcount(ctx: &mut Ctx, a: Args) -> CmdResult {
    let range = LexRange::parse(&a[2], &a[3])?;
    read_zset(ctx, &a[1], |ctx, z| {
        let n = z.map_or(0, |z| {
            let (lo, hi) = range.ranks(z);
            hi - lo
        });
        ctx.out.int(n as i64);
        Ok(())
    })
}

/// `ZRANK key member [WITHSCORE]` → the member's 0-based rank by ascending score (with
/// WITHSCORE, [rank, score]), or nil.
fn zrank(ctx: &mut Ctx, a: Args) -> CmdResult {
    rank_generic(ctx, &a, false, "zrank")
}

/// `ZREVRANK key member [WITHSCORE]` → the rank by descending score, as ZRANK.
fn zrevrank(ctx: &mut Ctx, a: Args) -> CmdResult {
    rank_generic(ctx, &a, true, "zrevrank")
}

fn rank_generic(ctx: &mut Ctx, a: &Args, rev: bool, name: &str) -> CmdResult {
    if a.len() > 4 {
        return Err(CmdError::Arity(name.to_string()));
    }
    let withscore = match a.get(3) {
        Some(opt) if args::is(opt, "withscore") => true,
        Some(_) => return Err(CmdError::Syntax),
        None => false,
    };
    read_zset(ctx, &a[1], |ctx, z| {
        let member = &a[2];
        let found = z.and_then(|z| Some((z.rank(member)?, z.len(), z.score(member)?)));
        match found {
            Some((rank, len, score)) => {
                let rank = if rev { len - 1 - rank } else { rank };
                if withscore {
                    ctx.out.array(2);
                    ctx.out.int(rank as i64);
                    ctx.out.double(score);
                } else {
                    ctx.out.int(rank as i64);
                }
            }
            None if withscore => ctx.out.null_array(),
            None => ctx.out.null(),
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// ZRANGE and its older forms.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum RangeBy {
    Rank,
    Score,
    Lex,
}

/// A parsed range request.
enum RangeOf<'a> {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange<'a>),
}

/// What a range request selects: `count` entries from rank `first`, going up, or down
/// when `rev`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Selection {
    first: usize,
    count: usize,
    rev: bool,
}

impl Selection {
    const EMPTY: Selection = Selection {
        first: 0,
        count: 0,
        rev: false,
    };

    fn iter<'z>(self, z: &'z ZSet) -> Box<dyn Iterator<Item = &'z ScoredMember> + 'z> {
        if self.count == 0 {
            return Box::new(std::iter::empty());
        }
        if self.rev {
            Box::new(z.ordered.iter_down_from(self.first).take(self.count))
        } else {
            Box::new(z.ordered.iter_from(self.first).take(self.count))
        }
    }
}

/// Ranks `start..=end` (negative from the end), sanitised as Redis does. With `rev`,
/// ranks count from the highest score.
fn select_ranks(len: usize, start: i64, end: i64, rev: bool) -> Selection {
    let llen = len as i64;
    let start = if start < 0 { llen + start } else { start }.max(0);
    let end = if end < 0 { llen + end } else { end };
    if start > end || start >= llen {
        return Selection::EMPTY;
    }
    let end = end.min(llen - 1);
    let count = (end - start + 1) as usize;
    let first = if rev {
        (llen - 1 - start) as usize
    } else {
        start as usize
    };
    Selection { first, count, rev }
}

/// The window `lo..hi` of ranks, then LIMIT `offset count` (negative count: no limit;
/// negative offset: nothing) in the requested direction.
fn select_window(lo: usize, hi: usize, offset: i64, limit: i64, rev: bool) -> Selection {
    let size = hi - lo;
    if offset < 0 || offset as u64 >= size as u64 || limit == 0 {
        return Selection::EMPTY;
    }
    let offset = offset as usize;
    let mut count = size - offset;
    if limit > 0 {
        count = count.min(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let first = if rev { hi - 1 - offset } else { lo + offset };
    Selection { first, count, rev }
}

impl RangeOf<'_> {
    fn select(&self, z: &ZSet, offset: i64, limit: i64, rev: bool) -> Selection {
        match self {
            RangeOf::Rank(start, end) => select_ranks(z.len(), *start, *end, rev),
            RangeOf::Score(r) => {
                let (lo, hi) = r.ranks(z);
                select_window(lo, hi, offset, limit, rev)
            }
            RangeOf::Lex(r) => {
                let (lo, hi) = r.ranks(z);
                select_window(lo, hi, offset, limit, rev)
            }
        }
    }
}

/// A range request parsed from `key min max [options]` at argument `at`.
struct RangeRequest<'a> {
    key: &'a [u8],
    range: RangeOf<'a>,
    rev: bool,
    withscores: bool,
    offset: i64,
    limit: i64,
}

/// Parses a range request as Redis's `zrangeGenericCommand`: `by` and `rev` are fixed by
/// the older commands and chosen by options for ZRANGE and ZRANGESTORE (`None`).
fn parse_range<'a>(
    a: &Args<'a>,
    at: usize,
    store: bool,
    by: Option<RangeBy>,
    rev: Option<bool>,
) -> Result<RangeRequest<'a>, CmdError> {
    let (mut by_opt, mut rev_opt) = (by, rev);
    let mut withscores = false;
    let (mut offset, mut limit) = (0i64, -1i64);
    let mut j = at + 3;
    while j < a.len() {
        let arg = &a[j];
        let left = a.len() - j - 1;
        if !store && args::is(arg, "withscores") {
            withscores = true;
        } else if args::is(arg, "limit") && left >= 2 {
            offset = args::int(&a[j + 1])?;
            limit = args::int(&a[j + 2])?;
            j += 2;
        } else if rev.is_none() && rev_opt.is_none() && args::is(arg, "rev") {
            rev_opt = Some(true);
        } else if by.is_none() && by_opt.is_none() && args::is(arg, "bylex") {
            by_opt = Some(RangeBy::Lex);
        } else if by.is_none() && by_opt.is_none() && args::is(arg, "byscore") {
            by_opt = Some(RangeBy::Score);
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let by = by_opt.unwrap_or(RangeBy::Rank);
    let rev = rev_opt.unwrap_or(false);
    if limit != -1 && by == RangeBy::Rank {
        return Err(CmdError::Static(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        ));
    }
    if withscores && by == RangeBy::Lex {
        return Err(CmdError::Static(
            "ERR syntax error, WITHSCORES not supported in combination with BYLEX",
        ));
    }
    let arg = |i: usize| a.get(i).unwrap_or_default();
    let (mut min, mut max) = (arg(at + 1), arg(at + 2));
    if rev && by != RangeBy::Rank {
        // The reverse forms take the range as max, min.
        std::mem::swap(&mut min, &mut max);
    }
    let range = match by {
        RangeBy::Rank => RangeOf::Rank(args::int(min)?, args::int(max)?),
        RangeBy::Score => RangeOf::Score(ScoreRange::parse(min, max)?),
        RangeBy::Lex => RangeOf::Lex(LexRange::parse(min, max)?),
    };
    Ok(RangeRequest {
        key: arg(at),
        range,
        rev,
        withscores,
        offset,
        limit,
    })
}

/// The read forms: reply the selected entries.
fn range_reply(ctx: &mut Ctx, a: &Args, by: Option<RangeBy>, rev: Option<bool>) -> CmdResult {
    let req = parse_range(a, 1, false, by, rev)?;
    read_zset(ctx, req.key, |ctx, z| {
        let Some(z) = z else {
            ctx.out.array(0);
            return Ok(());
        };
        let sel = req.range.select(z, req.offset, req.limit, req.rev);
        reply_entries(ctx.out, sel.iter(z).map(entry), sel.count, req.withscores);
        Ok(())
    })
}

/// `ZRANGE key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]` → the
/// members in the range (with scores when asked).
fn zrange(ctx: &mut Ctx, a: Args) -> CmdResult {
    range_reply(ctx, &a, None, None)
}

/// `ZREVRANGE key start stop [WITHSCORES]` → members by rank, highest score first.
fn zrevrange(ctx: &mut Ctx, a: Args) -> CmdResult {
    range_reply(ctx, &a, Some(RangeBy::Rank), Some(true))
}

/// `ZRANGEBYSCORE key min max [WITHSCORES] [LIMIT offset count]` → members in the score
/// range, lowest first.
fn zrangebyscore(ctx: &mut Ctx, a: Args) -> CmdResult {
    range_reply(ctx, &a, Some(RangeBy::Score), Some(false))
}

/// `ZREVRANGEBYSCORE key max min [WITHSCORES] [LIMIT offset count]` → highest first.
fn zrevrangebyscore(ctx: &mut Ctx, a: Args) -> CmdResult {
    range_reply(ctx, &a, Some(RangeBy::Score), Some(true))
}

/// `ZRANGEBYLEX key min max [LIMIT offset count]` → members in the lexicographical range.
fn zrangebylex(ctx: &mut Ctx, a: Args) -> CmdResult {
    range_reply(ctx, &a, Some(RangeBy::Lex), Some(false))
}

/// `ZREVRANGEBYLEX key max min [LIMIT offset count]` → the same, in reverse order.
fn zrevrangebylex(ctx: &mut Ctx, a: Args) -> CmdResult {
    range_reply(ctx, &a, Some(RangeBy::Lex), Some(true))
}

/// A sorted set built from `entries` (distinct members), storing scores as Redis's
/// result of the same size would (see [`Compact`]).
fn build_zset(entries: &[(&[u8], f64)]) -> ZSet {
    let longest = entries.iter().map(|(m, _)| m.len()).max().unwrap_or(0);
    let compact = Compact::new(entries.len(), longest);
    let mut z = ZSet::default();
    for &(m, s) in entries {
        z.set(m, compact.store(s));
    }
    z
}

/// Replaces `dst` with the sorted set `z`, or deletes it when `z` is empty; replies with
/// the size stored.
fn store_result(
    ctx: &mut Ctx,
    multi: &mut MultiMut,
    dst: &[u8],
    hd: KeyHash,
    z: ZSet,
) -> CmdResult {
    let n = z.len();
    if n > 0 {
        multi.put(dst, hd, Value::ZSet(Box::new(z)), 0, ctx.now)?;
    } else if multi.get(dst, hd, ctx.now).is_some() {
        multi.commit(&[Effect::Del { key: dst }], ctx.now)?;
    }
    ctx.out.int(n as i64);
    Ok(())
}

/// `ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]` → the number
/// of members stored in `dst` (which is deleted when that is 0).
fn zrangestore(ctx: &mut Ctx, a: Args) -> CmdResult {
    let req = parse_range(&a, 2, true, None, None)?;
    let dst = &a[1];
    let store = &ctx.srv.store;
    let (hd, hs) = (store.hash(dst), store.hash(req.key));
    let mut multi = store.write_many([hd, hs]);
    let result = match multi.get(req.key, hs, ctx.now) {
        None => ZSet::default(),
        Some(e) => {
            let z = as_zset(e.value())?;
            let sel = req.range.select(z, req.offset, req.limit, req.rev);
            let entries: Vec<(&[u8], f64)> = sel.iter(z).map(entry).collect();
            build_zset(&entries)
        }
    };
    store_result(ctx, &mut multi, dst, hd, result)
}

// ---------------------------------------------------------------------------------------
// Removing ranges.

/// ZREMRANGEBYRANK, ZREMRANGEBYSCORE, ZREMRANGEBYLEX: `key min max`.
fn remrange(ctx: &mut Ctx, a: &Args, range: RangeOf) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.out.int(0);
        return Ok(());
    };
    let z = as_zset(e.value())?;
    let sel = range.select(z, 0, -1, false);
    if sel.count == 0 {
        ctx.out.int(0);
        return Ok(());
    }
    if sel.count == z.len() {
        shard.commit(&[Effect::Del { key }], ctx.now)?;
    } else {
        let members: Vec<Box<[u8]>> = sel.iter(z).map(|e| e.member.clone()).collect();
        let members: Vec<&[u8]> = members.iter().map(|m| &m[..]).collect();
        shard.commit(
            &[Effect::ZRem {
                key,
                members: &members,
            }],
            ctx.now,
        )?;
    }
    ctx.out.int(sel.count as i64);
    Ok(())
}

/// `ZREMRANGEBYRANK key start stop` → the number of members removed.
fn zremrangebyrank(ctx: &mut Ctx, a: Args) -> CmdResult {
    let range = RangeOf::Rank(args::int(&a[2])?, args::int(&a[3])?);
    remrange(ctx, &a, range)
}

/// `ZREMRANGEBYSCORE key min max` → the number of members removed.
fn zremrangebyscore(ctx: &mut Ctx, a: Args) -> CmdResult {
    let range = RangeOf::Score(ScoreRange::parse(&a[2], &a[3])?);
    remrange(ctx, &a, range)
}

/// `ZREMRANGEBYLEX key min max` → the number of members removed.
fn zremrangebylex(ctx: &mut Ctx, a: Args) -> CmdResult {
    let range = RangeOf::Lex(LexRange::parse(&a[2], &a[3])?);
    remrange(ctx, &a, range)
}

// ---------------------------------------------------------------------------------------
// Pops and random members.

/// Popped entries: copies of the members with their scores, in pop order.
type Popped = Vec<(Box<[u8]>, f64)>;

/// Up to `count` entries from the low (or high) end, in pop order, and whether that is
/// every entry.
fn take_ends(z: &ZSet, max: bool, count: usize) -> (Popped, bool) {
    let n = count.min(z.len());
    let copy = |e: &ScoredMember| (e.member.clone(), e.score);
    let taken: Vec<_> = if max {
        z.ordered.iter().rev().take(n).map(copy).collect()
    } else {
        z.ordered.iter().take(n).map(copy).collect()
    };
    (taken, n == z.len())
}

/// The effect removing `taken` from `key`: a Del when they are all its members.
fn removal<'e>(key: &'e [u8], members: &'e [&'e [u8]], all: bool) -> Effect<'e> {
    if all {
        Effect::Del { key }
    } else {
        Effect::ZRem { key, members }
    }
}

/// `ZPOPMIN key [count]` → the lowest-scoring member and its score, removed; with
/// `count`, up to `count` of them (as [member, score] pairs in RESP3).
fn zpopmin(ctx: &mut Ctx, a: Args) -> CmdResult {
    zpop(ctx, &a, false)
}

/// `ZPOPMAX key [count]` → as ZPOPMIN, from the highest score down.
fn zpopmax(ctx: &mut Ctx, a: Args) -> CmdResult {
    zpop(ctx, &a, true)
}

fn zpop(ctx: &mut Ctx, a: &Args, max: bool) -> CmdResult {
    if a.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = match a.get(2) {
        Some(c) => Some(non_negative(c, MUST_BE_POSITIVE)?),
        None => None,
    };
    let nested = count.is_some() && ctx.out.is_resp3();
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.out.array(0);
        return Ok(());
    };
    let z = as_zset(e.value())?;
    let count = usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX);
    if count == 0 {
        ctx.out.array(0);
        return Ok(());
    }
    let (taken, all) = take_ends(z, max, count);
    let members: Vec<&[u8]> = taken.iter().map(|(m, _)| &m[..]).collect();
    shard.commit(&[removal(key, &members, all)], ctx.now)?;
    ctx.out
        .array(if nested { taken.len() } else { 2 * taken.len() });
    for (m, s) in &taken {
        if nested {
            ctx.out.array(2);
        }
        ctx.out.bulk(m);
        ctx.out.double(*s);
    }
    Ok(())
}

/// `ZMPOP numkeys key [key ...] MIN|MAX [COUNT count]` → [key, [[member, score], ...]]
/// from the first key holding a non-empty sorted set, or nil when there is none.
fn zmpop(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (keys, max, count) = parse_mpop(&a, 1)?;
    if !zpop_first(ctx, a, keys, max, count, ZPopReply::KeyAndPairs)? {
        ctx.out.null_array();
    }
    Ok(())
}

/// Parses `numkeys key [key ...] MIN|MAX [COUNT count]` starting at `a[numkeys_at]`
/// (ZMPOP, BZMPOP): the keys' positions in `a`, whether to pop the highest scores, and
/// the count (1 by default).
pub(crate) fn parse_mpop(
    a: &Args,
    numkeys_at: usize,
) -> Result<(std::ops::Range<usize>, bool, usize), CmdError> {
    let n = numkeys(&a[numkeys_at])?;
    let where_at = n
        .checked_add(numkeys_at + 1)
        .filter(|&w| w < a.len())
        .ok_or(CmdError::Syntax)?;
    let max = if args::is(&a[where_at], "min") {
        false
    } else if args::is(&a[where_at], "max") {
        true
    } else {
        return Err(CmdError::Syntax);
    };
    let mut count: Option<u64> = None;
    let mut j = where_at + 1;
    while j < a.len() {
        if count.is_none() && args::is(&a[j], "count") && j + 1 < a.len() {
            match args::int(&a[j + 1]) {
                Ok(c) if c >= 1 => count = Some(c as u64),
                _ => return Err(CmdError::Static("ERR count should be greater than 0")),
            }
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let count = usize::try_from(count.unwrap_or(1)).unwrap_or(usize::MAX);
    Ok((numkeys_at + 1..where_at, max, count))
}

/// How [`zpop_first`] answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ZPopReply {
    /// `[key, member, score]`: BZPOPMIN, BZPOPMAX (one member).
    KeyMemberScore,
    /// `[key, [[member, score], ...]]`: ZMPOP, BZMPOP.
    KeyAndPairs,
}

/// Pops up to `count` members with the lowest (or, with `max`, highest) scores from the
/// first key among positions `keys` of `a` that holds a sorted set, atomically over all
/// of them, and replies as `shape` says. Returns false, replying nothing, when every
/// key is missing; WRONGTYPE when a key before the first sorted set holds another type.
pub(crate) fn zpop_first(
    ctx: &mut Ctx,
    a: Args,
    keys: std::ops::Range<usize>,
    max: bool,
    count: usize,
    shape: ZPopReply,
) -> Result<bool, CmdError> {
    let store = &ctx.srv.store;
    let keys: Vec<(&[u8], KeyHash)> = keys
        .map(|i| {
            let k = &a[i];
            (k, store.hash(k))
        })
        .collect();
    let mut multi = store.write_many(keys.iter().map(|&(_, h)| h));
    let mut found = None;
    for &(key, h) in &keys {
        if let Some(e) = multi.get(key, h, ctx.now) {
            let z = as_zset(e.value())?;
            found = Some((key, take_ends(z, max, count)));
            break;
        }
    }
    let Some((key, (taken, all))) = found else {
        return Ok(false);
    };
    let members: Vec<&[u8]> = taken.iter().map(|(m, _)| &m[..]).collect();
    multi.commit(&[removal(key, &members, all)], ctx.now)?;
    match shape {
        ZPopReply::KeyMemberScore => {
            ctx.out.array(3);
            ctx.out.bulk(key);
            if let Some((m, s)) = taken.first() {
                ctx.out.bulk(m);
                ctx.out.double(*s);
            }
        }
        ZPopReply::KeyAndPairs => {
            ctx.out.array(2);
            ctx.out.bulk(key);
            reply_pairs(
                ctx.out,
                taken.iter().map(|(m, s)| (&m[..], *s)),
                taken.len(),
            );
        }
    }
    Ok(true)
}

/// Writes `n` [member, score] pairs as nested arrays, in RESP2 and RESP3 alike.
fn reply_pairs<'z>(out: &mut Reply, entries: impl Iterator<Item = (&'z [u8], f64)>, n: usize) {
    out.array(n);
    for (m, s) in entries {
        out.array(2);
        out.bulk(m);
        out.double(s);
    }
}

/// `ZRANDMEMBER key [count [WITHSCORES]]` → a random member (nil for a missing key);
/// with a positive `count`, up to `count` distinct members; with a negative one, exactly
/// `-count` members that may repeat.
fn zrandmember(ctx: &mut Ctx, a: Args) -> CmdResult {
    let mut withscores = false;
    let count = match a.get(2) {
        None => None,
        Some(c) => {
            let count = random_count(c)?;
            if a.len() > 4 || (a.len() == 4 && !args::is(&a[3], "withscores")) {
                return Err(CmdError::Syntax);
            }
            if a.len() == 4 {
                withscores = true;
                if !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
                    return Err(CmdError::Static("ERR value is out of range"));
                }
            }
            Some(count)
        }
    };
    read_zset(ctx, &a[1], |ctx, z| {
        let (Some(z), Some(count)) = (z, count) else {
            match (z, count) {
                (Some(z), None) => {
                    let rank = rand::rng().random_range(0..z.len());
                    ctx.out
                        .bulk(z.ordered.get(rank).map_or(&[][..], |e| &e.member));
                }
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
            let mut rng = rand::rng();
            let picks = (0..n).filter_map(|_| z.ordered.get(rng.random_range(0..z.len())));
            reply_entries(ctx.out, picks.map(entry), n as usize, withscores);
        } else if count as u64 >= z.len() as u64 {
            reply_entries(ctx.out, z.ordered.iter().map(entry), z.len(), withscores);
        } else {
            let positions = distinct_positions(&mut rand::rng(), z.len(), count as usize);
            let picked = pick(z.ordered.iter(), &positions);
            reply_entries(
                ctx.out,
                picked.into_iter().map(entry),
                count as usize,
                withscores,
            );
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// ZUNION, ZINTER, ZDIFF, their STORE forms, ZINTERCARD.

#[derive(Clone, Copy, PartialEq, Eq)]
enum ZOp {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

impl Aggregate {
    /// Redis's `zunionInterAggregate`: a sum of +inf and -inf is 0, and a NaN input
    /// never wins MIN or MAX.
    fn apply(self, target: &mut f64, v: f64) {
        match self {
            Aggregate::Sum => {
                *target += v;
                if target.is_nan() {
                    *target = 0.0;
                }
            }
            Aggregate::Min => {
                if v < *target {
                    *target = v;
                }
            }
            Aggregate::Max => {
                if v > *target {
                    *target = v;
                }
            }
        }
    }
}

/// An input of the sorted-set operations: sets count as sorted sets whose scores are 1.
#[derive(Clone, Copy)]
enum Input<'v> {
    Set(&'v Members),
    ZSet(&'v ZSet),
}

impl<'v> Input<'v> {
    fn of(v: &'v Value) -> Result<Input<'v>, CmdError> {
        match v {
            Value::Set(s) => Ok(Input::Set(s)),
            Value::ZSet(z) => Ok(Input::ZSet(z)),
            _ => Err(CmdError::WrongType),
        }
    }

    fn len(self) -> usize {
        match self {
            Input::Set(s) => s.len(),
            Input::ZSet(z) => z.len(),
        }
    }

    fn score(self, member: &[u8]) -> Option<f64> {
        match self {
            Input::Set(s) => s.contains(member).then_some(1.0),
            Input::ZSet(z) => z.score(member),
        }
    }

    fn entries(self) -> Box<dyn Iterator<Item = (&'v [u8], f64)> + 'v> {
        match self {
            Input::Set(s) => Box::new(s.iter().map(|m| (&m[..], 1.0))),
            Input::ZSet(z) => Box::new(z.scores.iter().map(|(m, s)| (&m[..], *s))),
        }
    }
}

/// The options after the keys of the sorted-set operations.
struct OpOptions {
    weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    limit: usize,
}

/// Parses `[WEIGHTS w ...] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]` (or ZINTERCARD's
/// `[LIMIT n]`) from argument `j` on, accepting only what `op`, `store` and `card` allow.
fn parse_op_options(
    a: &Args,
    mut j: usize,
    n: usize,
    op: ZOp,
    store: bool,
    card: bool,
) -> Result<OpOptions, CmdError> {
    let mut o = OpOptions {
        weights: vec![1.0; n],
        aggregate: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    while j < a.len() {
        let left = a.len() - j;
        let arg = &a[j];
        if op != ZOp::Diff && !card && left > n && args::is(arg, "weights") {
            for (i, w) in o.weights.iter_mut().enumerate() {
                *w = parse_double(
                    &a[j + 1 + i],
                    CmdError::Static("ERR weight value is not a float"),
                )?;
            }
            j += 1 + n;
        } else if op != ZOp::Diff && !card && left >= 2 && args::is(arg, "aggregate") {
            let f = &a[j + 1];
            o.aggregate = if args::is(f, "sum") {
                Aggregate::Sum
            } else if args::is(f, "min") {
                Aggregate::Min
            } else if args::is(f, "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            j += 2;
        } else if !store && !card && args::is(arg, "withscores") {
            o.withscores = true;
            j += 1;
        } else if card && left >= 2 && args::is(arg, "limit") {
            let limit = non_negative(&a[j + 1], LIMIT_NEGATIVE)?;
            o.limit = usize::try_from(limit).unwrap_or(usize::MAX);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(o)
}

/// The result of a sorted-set operation over `inputs` (missing keys are empty), in
/// (score, member) order. With `limit` (ZINTERCARD), stops after that many members.
fn combine<'v>(op: ZOp, inputs: &[Option<Input<'v>>], o: &OpOptions) -> Vec<(&'v [u8], f64)> {
    let mut out: Vec<(&'v [u8], f64)> = Vec::new();
    match op {
        ZOp::Union => {
            // Smallest inputs first, as Redis adds them (the order of a sum matters in
            // floating point).
            let mut order: Vec<usize> = (0..inputs.len()).collect();
            order.sort_by_key(|&i| inputs[i].map_or(0, |s| s.len()));
            let mut acc: hashbrown::HashMap<&'v [u8], f64, foldhash::fast::RandomState> =
                Default::default();
            for i in order {
                let Some(input) = inputs[i] else { continue };
                for (m, s) in input.entries() {
                    let mut v = o.weights[i] * s;
                    if v.is_nan() {
                        v = 0.0;
                    }
                    match acc.entry(m) {
                        hashbrown::hash_map::Entry::Occupied(mut e) => {
                            o.aggregate.apply(e.get_mut(), v)
                        }
                        hashbrown::hash_map::Entry::Vacant(e) => {
                            e.insert(v);
                        }
                    }
                }
            }
            out.extend(acc);
        }
        ZOp::Inter => {
            if inputs.iter().any(|i| i.is_none()) {
                return out;
            }
            let mut order: Vec<usize> = (0..inputs.len()).collect();
            order.sort_by_key(|&i| inputs[i].map_or(0, |s| s.len()));
            let (first, rest) = order.split_first().expect("at least one input");
            let Some(base) = inputs[*first] else {
                return out;
            };
            'members: for (m, s) in base.entries() {
                let mut score = o.weights[*first] * s;
                if score.is_nan() {
                    score = 0.0;
                }
                for &i in rest {
                    let Some(v) = inputs[i].and_then(|input| input.score(m)) else {
                        continue 'members;
                    };
                    o.aggregate.apply(&mut score, v * o.weights[i]);
                }
                out.push((m, score));
                if out.len() == o.limit {
                    return out;
                }
            }
        }
        ZOp::Diff => {
            let Some(Some(base)) = inputs.first() else {
                return out;
            };
            out.extend(
                base.entries()
                    .filter(|(m, _)| inputs[1..].iter().flatten().all(|i| i.score(m).is_none())),
            );
        }
    }
    out.sort_unstable_by(|a, b| {
        a.1.partial_cmp(&b.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| a.0.cmp(b.0))
    });
    out
}

/// ZUNION, ZINTER, ZDIFF (`dst` None), their STORE forms, and ZINTERCARD (`card`):
/// `numkeys` is at argument `at`, the keys follow it.
fn zsetop(ctx: &mut Ctx, a: &Args, op: ZOp, store_into: bool, card: bool, name: &str) -> CmdResult {
    let at = if store_into { 2 } else { 1 };
    let n = args::int(&a[at])?;
    if n < 1 {
        return Err(CmdError::Owned(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > a.len() - at - 1 {
        return Err(CmdError::Syntax);
    }
    let store = &ctx.srv.store;
    let keys: Vec<(&[u8], KeyHash)> = a
        .iter()
        .skip(at + 1)
        .take(n)
        .map(|k| (k, store.hash(k)))
        .collect();
    let dst = store_into.then(|| (&a[1], store.hash(&a[1])));
    let mut multi = store.write_many(keys.iter().map(|&(_, h)| h).chain(dst.map(|d| d.1)));
    let result = {
        let mut inputs = Vec::with_capacity(n);
        for &(k, h) in &keys {
            let found = multi.get(k, h, ctx.now);
            if !store_into {
                ctx.lookup_stat(found.is_some());
            }
            inputs.push(found.map(|e| Input::of(e.value())).transpose()?);
        }
        let o = parse_op_options(a, at + 1 + n, n, op, store_into, card)?;
        let result = combine(op, &inputs, &o);
        match dst {
            None if card => {
                ctx.out.int(result.len() as i64);
                return Ok(());
            }
            None => {
                let n = result.len();
                reply_entries(ctx.out, result.into_iter(), n, o.withscores);
                return Ok(());
            }
            Some(_) => build_zset(&result),
        }
    };
    let (dst, hd) = dst.expect("the store forms have a destination");
    store_result(ctx, &mut multi, dst, hd, result)
}

/// `ZUNION numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX]
/// [WITHSCORES]` → the members of any input, with aggregated scores.
fn zunion(ctx: &mut Ctx, a: Args) -> CmdResult {
    zsetop(ctx, &a, ZOp::Union, false, false, "zunion")
}

/// `ZINTER numkeys key [key ...] [WEIGHTS weight ...] [AGGREGATE SUM|MIN|MAX]
/// [WITHSCORES]` → the members of every input, with aggregated scores.
fn zinter(ctx: &mut Ctx, a: Args) -> CmdResult {
    zsetop(ctx, &a, ZOp::Inter, false, false, "zinter")
}

/// `ZDIFF numkeys key [key ...] [WITHSCORES]` → the members of the first input in none
/// of the others.
fn zdiff(ctx: &mut Ctx, a: Args) -> CmdResult {
    zsetop(ctx, &a, ZOp::Diff, false, false, "zdiff")
}

/// `ZUNIONSTORE destination numkeys key [key ...] [WEIGHTS ...] [AGGREGATE ...]` → the
/// size of the union stored in `destination` (deleted when empty).
fn zunionstore(ctx: &mut Ctx, a: Args) -> CmdResult {
    zsetop(ctx, &a, ZOp::Union, true, false, "zunionstore")
}

/// `ZINTERSTORE destination numkeys key [key ...] [WEIGHTS ...] [AGGREGATE ...]` → the
/// size of the intersection stored.
fn zinterstore(ctx: &mut Ctx, a: Args) -> CmdResult {
    zsetop(ctx, &a, ZOp::Inter, true, false, "zinterstore")
}

/// `ZDIFFSTORE destination numkeys key [key ...]` → the size of the difference stored.
fn zdiffstore(ctx: &mut Ctx, a: Args) -> CmdResult {
    zsetop(ctx, &a, ZOp::Diff, true, false, "zdiffstore")
}

/// `ZINTERCARD numkeys key [key ...] [LIMIT limit]` → the size of the intersection,
/// counting no further than `limit` when it is not 0.
fn zintercard(ctx: &mut Ctx, a: Args) -> CmdResult {
    zsetop(ctx, &a, ZOp::Inter, false, true, "zintercard")
}

/// `ZSCAN key cursor [MATCH pattern] [COUNT count]` → `[next cursor, [member, score,
/// ...]]`, scores as strings. Every matching entry comes back in one reply with the
/// cursor 0 (see SSCAN).
fn zscan(ctx: &mut Ctx, a: Args) -> CmdResult {
    scan_cursor(&a[2])?;
    read_zset(ctx, &a[1], |ctx, z| {
        let pattern = match z {
            Some(_) => scan_pattern(&a)?,
            None => None,
        };
        // In score order, as Redis lists its compact sorted sets.
        let entries: Vec<(&[u8], f64)> = z
            .into_iter()
            .flat_map(|z| z.ordered.iter())
            .map(entry)
            .filter(|(m, _)| pattern.is_none_or(|p| glob_match(p, m, false)))
            .collect();
        ctx.out.array(2);
        ctx.out.bulk(b"0");
        ctx.out.array(2 * entries.len());
        let mut text = DoubleText::default();
        for (m, s) in entries {
            ctx.out.bulk(m);
            text.format(s);
            ctx.out.bulk(text.as_bytes());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtod_reads_what_c_reads() {
        let full = |s: &str| {
            let (v, used, range) = strtod(s.as_bytes());
            (v, used == s.len(), range)
        };
        assert_eq!(full("1.5"), (1.5, true, false));
        assert_eq!(full("  -2e3"), (-2000.0, true, false));
        assert_eq!(full("+.5"), (0.5, true, false));
        assert_eq!(full("5."), (5.0, true, false));
        assert_eq!(full("0x10"), (16.0, true, false));
        assert_eq!(full("-0x1.8p1"), (-3.0, true, false));
        assert_eq!(full("0X1P-2"), (0.25, true, false));
        assert_eq!(full("INF"), (f64::INFINITY, true, false));
        assert_eq!(full("-Infinity"), (f64::NEG_INFINITY, true, false));
        assert_eq!(full("1e400"), (f64::INFINITY, true, true));
        assert_eq!(full("1e-400"), (0.0, true, true));
        assert_eq!(full("0e-400"), (0.0, true, false));
        assert!(strtod(b"nan(123)").0.is_nan() && strtod(b"nan(123)").1 == 8);
        // Prefixes: what strtod stops at.
        assert_eq!(strtod(b"1e"), (1.0, 1, false));
        assert_eq!(strtod(b"1e+"), (1.0, 1, false));
        assert_eq!(strtod(b"0x"), (0.0, 1, false));
        assert_eq!(strtod(b"12abc"), (12.0, 2, false));
        assert_eq!(strtod(b"infinit"), (f64::INFINITY, 3, false));
        assert_eq!(strtod(b"."), (0.0, 0, false));
        assert_eq!(strtod(b""), (0.0, 0, false));
        assert_eq!(strtod(b"-"), (0.0, 0, false));
    }

    #[test]
    fn score_arguments_and_bounds() {
        assert_eq!(score_arg(b"0x10"), Ok(16.0));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"nan",
            b"1e400",
            b"1e-400",
            b"1\0",
            b"x",
        ] {
            assert_eq!(score_arg(bad), Err(CmdError::NotFloat), "{bad:?}");
        }
        assert_eq!(score_bound(b"(1.5"), Some((1.5, true)));
        assert_eq!(score_bound(b""), Some((0.0, false)));
        assert_eq!(score_bound(b" 2"), Some((2.0, false)));
        assert_eq!(score_bound(b"3\0junk"), Some((3.0, false)));
        assert_eq!(score_bound(b"+inf"), Some((f64::INFINITY, false)));
        assert_eq!(score_bound(b"nan"), None);
        assert_eq!(score_bound(b"1 "), None);
        assert_eq!(LexBound::parse(b"-"), Some(LexBound::Min));
        assert_eq!(LexBound::parse(b"+"), Some(LexBound::Max));
        assert_eq!(LexBound::parse(b"[a"), Some(LexBound::Incl(b"a")));
        assert_eq!(LexBound::parse(b"("), Some(LexBound::Excl(b"")));
        assert_eq!(LexBound::parse(b"+a"), None);
        assert_eq!(LexBound::parse(b"a"), None);
        assert_eq!(LexBound::parse(b""), None);
    }

    #[test]
    fn selections() {
        let sel = |first, count, rev| Selection { first, count, rev };
        assert_eq!(select_ranks(5, 0, -1, false), sel(0, 5, false));
        assert_eq!(select_ranks(5, 0, -1, true), sel(4, 5, true));
        assert_eq!(select_ranks(5, -2, -1, true), sel(1, 2, true));
        assert_eq!(select_ranks(5, 3, 1, false), Selection::EMPTY);
        assert_eq!(select_ranks(5, i64::MIN, i64::MAX, false), sel(0, 5, false));
        assert_eq!(select_ranks(0, 0, -1, false), Selection::EMPTY);
        assert_eq!(select_window(1, 4, 1, -1, false), sel(2, 2, false));
        assert_eq!(select_window(1, 4, 1, 1, true), sel(2, 1, true));
        assert_eq!(select_window(1, 4, 3, 1, false), Selection::EMPTY);
        assert_eq!(select_window(1, 4, -1, 1, false), Selection::EMPTY);
        assert_eq!(select_window(1, 4, 0, 0, false), Selection::EMPTY);
        assert_eq!(select_window(1, 4, 0, i64::MAX, false), sel(1, 3, false));
    }
}

//! SORT and SORT_RO, as Redis's `sortCommandGeneric`.
//!
//! The elements of the list, set or sorted set are copied out of their shard before any
//! BY or GET pattern is looked up: a pattern's key may live in the same shard, and a
//! second read lock on a shard while a writer waits would deadlock.

use std::cmp::Ordering;
use std::collections::VecDeque;

use dse_engine::{Effect, Expiry, Value};
use dse_proto::Args;

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

const SORT_COMPLEXITY: &str = "O(N+M*log(M)) where N is the number of elements in the list or set to sort, and M the number of returned elements. When the elements are not sorted, complexity is O(N).";

pub const COMMANDS: &[CommandSpec] = &[
    cmd("sort", -2, WRITE | DENYOOM, sort)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "generic",
            "1.0.0",
            SORT_COMPLEXITY,
            "Sorts the elements in a list, a set, or a sorted set, optionally storing the result.",
        ),
    cmd("sort_ro", -2, READONLY, sort_ro)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "generic",
            "7.0.0",
            SORT_COMPLEXITY,
            "Returns the sorted elements of a list, a set, or a sorted set.",
        ),
];

/// `SORT key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]]
/// [ASC|DESC] [ALPHA] [STORE destination]` → the sorted elements (or, with GET, the
/// values the patterns name, nil when missing); with STORE, the number of values stored
/// as a list at `destination` (an empty result deletes it).
fn sort(ctx: &mut Ctx, a: Args) -> CmdResult {
    sort_generic(ctx, a, false)
}

/// `SORT_RO key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]`
/// → as SORT, without STORE.
fn sort_ro(ctx: &mut Ctx, a: Args) -> CmdResult {
    sort_generic(ctx, a, true)
}

struct Options<'a> {
    desc: bool,
    alpha: bool,
    limit_start: i64,
    limit_count: i64,
    store: Option<&'a [u8]>,
    by: Option<&'a [u8]>,
    /// BY a pattern without `*` (`nosort`): keep the collection's order.
    dont_sort: bool,
    gets: Vec<&'a [u8]>,
}

fn parse_options<'a>(a: &Args<'a>, readonly: bool) -> Result<Options<'a>, CmdError> {
    let mut o = Options {
        desc: false,
        alpha: false,
        limit_start: 0,
        limit_count: -1,
        store: None,
        by: None,
        dont_sort: false,
        gets: Vec::new(),
    };
    let mut j = 2;
    while j < a.len() {
        let left = a.len() - j - 1;
        let arg = &a[j];
        if args::is(arg, "asc") {
            o.desc = false;
        } else if args::is(arg, "desc") {
            o.desc = true;
        } else if args::is(arg, "alpha") {
            o.alpha = true;
        } else if args::is(arg, "limit") && left >= 2 {
            o.limit_start = args::int(&a[j + 1])?;
            o.limit_count = args::int(&a[j + 2])?;
            j += 2;
        } else if !readonly && args::is(arg, "store") && left >= 1 {
            o.store = a.get(j + 1);
            j += 1;
        } else if args::is(arg, "by") && left >= 1 {
            let pattern = a.get(j + 1).unwrap_or_default();
            o.by = Some(pattern);
            // A pattern naming no key per element sorts nothing (but GET still runs).
            o.dont_sort = !c_str(pattern).contains(&b'*');
            j += 1;
        } else if args::is(arg, "get") && left >= 1 {
            o.gets.extend(a.get(j + 1));
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

/// The bytes before the first NUL: Redis reads patterns and weights as C strings.
fn c_str(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(nul) => &s[..nul],
        None => s,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Set,
    ZSet,
}

/// One element being sorted and what it sorts by.
struct Item {
    element: Vec<u8>,
    score: f64,
    /// ALPHA BY: the pattern's value (`None` when the key is missing: sorts first).
    by_value: Option<Vec<u8>>,
}

fn sort_generic(ctx: &mut Ctx, a: Args, readonly: bool) -> CmdResult {
    let mut o = parse_options(&a, readonly)?;
    let srv = ctx.srv;
    let key = &a[1];
    let h = srv.store.hash(key);
    // Copy what is needed out of the shard (see the module comment).
    let (kind, elements, total) = {
        let shard = srv.store.read(h);
        let found = shard.get(key, h, ctx.now);
        ctx.lookup_stat(found.is_some());
        match found.map(|e| e.value()) {
            None => (Kind::List, Vec::new(), 0),
            Some(Value::List(l)) => {
                let n = l.len() as i64;
                (Kind::List, load(&o, n, |i| l[i].clone()), n)
            }
            Some(Value::Set(s)) => (Kind::Set, s.iter().map(|m| m.to_vec()).collect(), 0),
            Some(Value::ZSet(z)) => {
                let n = z.ordered.len() as i64;
                let elements = load(&o, n, |rank| {
                    z.ordered
                        .get(rank)
                        .map(|m| m.member.to_vec())
                        .unwrap_or_default()
                });
                (Kind::ZSet, elements, n)
            }
            Some(_) => return Err(CmdError::WrongType),
        }
    };
    let total = if kind == Kind::Set {
        elements.len() as i64
    } else {
        total
    };
    // A set has no order of its own: stored results are sorted so that they are the
    // same everywhere (Redis does this for STORE and scripts).
    if o.dont_sort && kind == Kind::Set && o.store.is_some() {
        o.dont_sort = false;
        o.alpha = true;
        o.by = None;
    }
    let (mut start, mut end) = limit_range(o.limit_start, o.limit_count, total);
    if o.dont_sort && kind != Kind::Set {
        // `load` already took the LIMIT range, in order.
        start = 0;
        end = elements.len() as i64 - 1;
    }
    let mut items: Vec<Item> = elements
        .into_iter()
        .map(|element| Item {
            element,
            score: 0.0,
            by_value: None,
        })
        .collect();

    let mut conversion_error = false;
    if !o.dont_sort {
        for item in &mut items {
            let by_value = match o.by {
                Some(pattern) => match lookup_by_pattern(ctx, pattern, &item.element) {
                    Some(v) => v,
                    None => continue,
                },
                None => {
                    if !o.alpha {
                        match sort_score(&item.element) {
                            Some(score) => item.score = score,
                            None => conversion_error = true,
                        }
                    }
                    continue;
                }
            };
            if o.alpha {
                item.by_value = Some(by_value);
            } else {
                match sort_score(&by_value) {
                    Some(score) => item.score = score,
                    None => conversion_error = true,
                }
            }
        }
        let (alpha, by_pattern, desc) = (o.alpha, o.by.is_some(), o.desc);
        items.sort_by(|x, y| {
            let cmp = compare(x, y, alpha, by_pattern);
            if desc { cmp.reverse() } else { cmp }
        });
    }
    if conversion_error {
        return Err(CmdError::Static(
            "ERR One or more scores can't be converted into double",
        ));
    }

    let range = if end >= start && start >= 0 {
        &items[start as usize..=end as usize]
    } else {
        &items[..0]
    };
    let per_item = o.gets.len().max(1);
    let output_len = range.len() * per_item;
    let Some(dst) = o.store else {
        ctx.out.array(output_len);
        for item in range {
            if o.gets.is_empty() {
                ctx.out.bulk(&item.element);
            }
            for pattern in &o.gets {
                match lookup_by_pattern(ctx, pattern, &item.element) {
                    Some(v) => ctx.out.bulk(&v),
                    None => ctx.out.null(),
                }
            }
        }
        return Ok(());
    };
    let mut list: VecDeque<Vec<u8>> = VecDeque::with_capacity(output_len);
    for item in range {
        if o.gets.is_empty() {
            list.push_back(item.element.clone());
        }
        for pattern in &o.gets {
            list.push_back(lookup_by_pattern(ctx, pattern, &item.element).unwrap_or_default());
        }
    }
    let hd = srv.store.hash(dst);
    let mut shard = srv.store.write(hd);
    if !list.is_empty() {
        shard.put(dst, hd, Value::List(Box::new(list)), Expiry::None, ctx.now)?;
    } else if shard.lookup(dst, hd, ctx.now).is_some() {
        shard.commit(&[Effect::Del { key: dst }], ctx.now)?;
    }
    ctx.out.int(output_len as i64);
    Ok(())
}

/// The elements of a list or sorted set of `n` elements to sort: all of them, or with
/// BY nosort only the LIMIT range, in the collection's order (reversed by DESC).
/// `at(i)` is the element at position `i`.
fn load(o: &Options, n: i64, at: impl Fn(usize) -> Vec<u8>) -> Vec<Vec<u8>> {
    if !o.dont_sort {
        return (0..n as usize).map(at).collect();
    }
    let (start, end) = limit_range(o.limit_start, o.limit_count, n);
    if end < start {
        return Vec::new();
    }
    let count = (end - start + 1) as usize;
    let start = start as usize;
    if o.desc {
        let first = n as usize - start - 1;
        (0..count).map(|k| at(first - k)).collect()
    } else {
        (0..count).map(|k| at(start + k)).collect()
    }
}

/// The inclusive index range LIMIT selects from `len` elements (Redis 7.2's checks,
/// which clamp before adding so nothing overflows).
fn limit_range(limit_start: i64, limit_count: i64, len: i64) -> (i64, i64) {
    let mut start = limit_start.max(0).min(len);
    let count = limit_count.max(-1).min(len);
    let mut end = if count < 0 {
        len - 1
    } else {
        start + count - 1
    };
    if start >= len {
        start = len - 1;
        end = len - 2;
    }
    if end >= len {
        end = len - 1;
    }
    (start, end)
}

/// Redis's `sortCompare`, before DESC: numbers by score then by element; ALPHA by the
/// BY values (a missing one first) or by the elements.
fn compare(x: &Item, y: &Item, alpha: bool, by_pattern: bool) -> Ordering {
    if !alpha {
        return match x.score.partial_cmp(&y.score) {
            Some(Ordering::Equal) | None => x.element.cmp(&y.element),
            Some(o) => o,
        };
    }
    if by_pattern {
        match (&x.by_value, &y.by_value) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
        }
    } else {
        x.element.cmp(&y.element)
    }
}

/// The value a BY or GET pattern names for `element` (Redis's `lookupKeyByPattern`):
/// `#` is the element itself; otherwise the first `*` is replaced by the element and
/// the key's string value is read, or with `key->field` the hash field. `None` when the
/// pattern has no `*`, or the key, field or type does not fit.
fn lookup_by_pattern(ctx: &Ctx, pattern: &[u8], element: &[u8]) -> Option<Vec<u8>> {
    if pattern == b"#" {
        return Some(element.to_vec());
    }
    let c_pattern = c_str(pattern);
    let star = c_pattern.iter().position(|&b| b == b'*')?;
    let field = c_pattern[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|i| star + 1 + i)
        .filter(|&arrow| arrow + 2 < c_pattern.len());
    let key_end = field.unwrap_or(pattern.len());
    let mut key = Vec::with_capacity(key_end + element.len());
    key.extend_from_slice(&pattern[..star]);
    key.extend_from_slice(element);
    key.extend_from_slice(&pattern[star + 1..key_end]);
    let store = &ctx.srv.store;
    let h = store.hash(&key);
    let shard = store.read(h);
    let found = shard.get(&key, h, ctx.now);
    ctx.lookup_stat(found.is_some());
    let value = found?.value();
    match field {
        Some(arrow) => match value {
            Value::Hash(hash) => hash.get(&pattern[arrow + 2..]).cloned(),
            _ => None,
        },
        None => value.with_str(|s| s.to_vec()),
    }
}

/// A weight as Redis reads it with `strtod`: leading spaces allowed, the whole (C)
/// string must be a number (decimal, hex, `inf`), and neither NaN nor out of range.
/// An empty string is 0. `None` when it "can't be converted into double".
fn sort_score(s: &[u8]) -> Option<f64> {
    let s = c_str(s);
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
        i += 1;
    }
    match parse_c_double(&s[i..]) {
        // Nothing read: strtod points at the start, which is only a NUL when empty.
        None => s.is_empty().then_some(0.0),
        Some((value, used, range_error)) => {
            (i + used == s.len() && !range_error && !value.is_nan()).then_some(value)
        }
    }
}

/// The longest prefix of `s` that C's `strtod` reads: (value, bytes read, ERANGE).
fn parse_c_double(s: &[u8]) -> Option<(f64, usize, bool)> {
    let (negative, mut i) = match s.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let sign = |v: f64| if negative { -v } else { v };
    let rest = &s[i..];
    let starts =
        |word: &[u8]| rest.len() >= word.len() && rest[..word.len()].eq_ignore_ascii_case(word);
    if starts(b"infinity") {
        return Some((sign(f64::INFINITY), i + 8, false));
    }
    if starts(b"inf") {
        return Some((sign(f64::INFINITY), i + 3, false));
    }
    if starts(b"nan") {
        let mut used = i + 3;
        if s.get(used) == Some(&b'(')
            && let Some(close) = s[used..].iter().position(|&b| b == b')')
            && s[used + 1..used + close]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            used += close + 1;
        }
        return Some((f64::NAN, used, false));
    }
    if rest.len() > 2
        && rest[0] == b'0'
        && (rest[1] | 0x20) == b'x'
        && (rest[2].is_ascii_hexdigit()
            || (rest[2] == b'.' && rest.get(3).is_some_and(|b| b.is_ascii_hexdigit())))
    {
        let (v, used, range_error) = parse_hex(&rest[2..]);
        return Some((sign(v), i + 2 + used, range_error));
    }
    let start = i;
    let mut digits = 0;
    let mut nonzero = false;
    while i < s.len() && s[i].is_ascii_digit() {
        nonzero |= s[i] != b'0';
        i += 1;
        digits += 1;
    }
    if i < s.len() && s[i] == b'.' {
        let mut j = i + 1;
        while j < s.len() && s[j].is_ascii_digit() {
            nonzero |= s[j] != b'0';
            j += 1;
            digits += 1;
        }
        if digits > 0 {
            i = j;
        }
    }
    if digits == 0 {
        return None;
    }
    if i < s.len() && (s[i] | 0x20) == b'e' {
        let mut j = i + 1;
        if j < s.len() && (s[j] == b'+' || s[j] == b'-') {
            j += 1;
        }
        if j < s.len() && s[j].is_ascii_digit() {
            while j < s.len() && s[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    let text = std::str::from_utf8(&s[start..i]).ok()?;
    let v: f64 = text.parse().ok()?;
    let range_error = v.is_infinite() || (nonzero && v.abs() < f64::MIN_POSITIVE);
    Some((sign(v), i, range_error))
}

/// A hexadecimal float after its `0x`: digits, an optional fraction, an optional binary
/// exponent `p[+-]n`. Returns (value, bytes read, ERANGE).
fn parse_hex(s: &[u8]) -> (f64, usize, bool) {
    let mut mantissa: u64 = 0;
    let mut exp: i64 = 0;
    let mut i = 0;
    let mut seen_point = false;
    while i < s.len() {
        let c = s[i];
        if c == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(d) = (c as char).to_digit(16) {
            if mantissa >> 60 == 0 {
                mantissa = mantissa * 16 + d as u64;
                if seen_point {
                    exp -= 4;
                }
            } else if !seen_point {
                // Digits past 64 bits of precision only scale the value.
                exp += 4;
            }
        } else {
            break;
        }
        i += 1;
    }
    if i < s.len() && (s[i] | 0x20) == b'p' {
        let mut j = i + 1;
        let negative = s.get(j) == Some(&b'-');
        if matches!(s.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if j < s.len() && s[j].is_ascii_digit() {
            let mut e: i64 = 0;
            while j < s.len() && s[j].is_ascii_digit() {
                e = (e * 10 + (s[j] - b'0') as i64).min(1 << 20);
                j += 1;
            }
            exp += if negative { -e } else { e };
            i = j;
        }
    }
    let v = mantissa as f64 * 2f64.powi(exp.clamp(-1100, 1100) as i32);
    let range_error = v.is_infinite() || (mantissa != 0 && v.abs() < f64::MIN_POSITIVE);
    (v, i, range_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_read_like_strtod() {
        for (text, want) in [
            ("1", Some(1.0)),
            ("-2.5", Some(-2.5)),
            ("  3", Some(3.0)),
            ("", Some(0.0)),
            ("1.", Some(1.0)),
            (".5", Some(0.5)),
            ("1e3", Some(1000.0)),
            ("1e", None),
            ("0x10", Some(16.0)),
            ("0x1p4", Some(16.0)),
            ("-inf", Some(f64::NEG_INFINITY)),
            ("Infinity", Some(f64::INFINITY)),
            ("nan", None),
            ("1e999", None),
            ("1e-400", None),
            ("3 ", None),
            ("abc", None),
            ("   ", None),
            ("-", None),
            ("5\0junk", Some(5.0)),
        ] {
            assert_eq!(sort_score(text.as_bytes()), want, "{text:?}");
        }
    }

    #[test]
    fn limits_clamp() {
        assert_eq!(limit_range(0, -1, 5), (0, 4));
        assert_eq!(limit_range(1, 2, 5), (1, 2));
        assert_eq!(limit_range(4, 10, 5), (4, 4));
        assert_eq!(limit_range(5, 1, 5), (4, 3));
        assert_eq!(limit_range(-3, i64::MAX, 5), (0, 4));
        assert_eq!(limit_range(i64::MAX, i64::MAX, 5), (4, 3));
        assert_eq!(limit_range(0, 0, 5), (0, -1));
        assert_eq!(limit_range(0, -1, 0), (-1, -2));
    }
}

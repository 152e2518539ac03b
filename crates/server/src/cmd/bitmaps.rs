//! Bitmap commands: bits and bit fields of string values.
//!
//! Bitmaps are strings. Writes log [`Effect::StrWrite`] with only the bytes that changed
//! (and the growth of the string), never the string: a SETBIT on a 100 MB bitmap costs a
//! few bytes of log. Bit 0 is the most significant bit of byte 0, as in Redis.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use dse_engine::{Effect, KeyHash};
use dse_proto::Args;

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("setbit", 4, WRITE | DENYOOM, setbit)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update"])
        .doc(
            "bitmap",
            "2.2.0",
            "O(1)",
            "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.",
        ),
    cmd("getbit", 3, READONLY | FAST, getbit)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc("bitmap", "2.2.0", "O(1)", "Returns a bit value by offset."),
    cmd("bitcount", -2, READONLY, bitcount)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "bitmap",
            "2.6.0",
            "O(N)",
            "Counts the number of set bits (population counting) in a string.",
        ),
    cmd("bitpos", -3, READONLY, bitpos)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "bitmap",
            "2.8.7",
            "O(N)",
            "Finds the first set (1) or clear (0) bit in a string.",
        ),
    cmd("bitop", -4, WRITE | DENYOOM, bitop)
        .keys(2, -1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "bitmap",
            "2.6.0",
            "O(N)",
            "Performs bitwise operations on multiple strings, and stores the result.",
        ),
    cmd("bitfield", -2, WRITE | DENYOOM, bitfield)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update", "variable_flags"])
        .doc(
            "bitmap",
            "3.2.0",
            "O(1) for each subcommand specified",
            "Performs arbitrary bitfield integer operations on strings.",
        ),
    cmd("bitfield_ro", -2, READONLY | FAST, bitfield_ro)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "bitmap",
            "6.0.0",
            "O(1) for each subcommand specified",
            "Performs arbitrary read-only bitfield integer operations on strings.",
        ),
];

const BAD_OFFSET: CmdError = CmdError::Static("ERR bit offset is not an integer or out of range");
const BAD_BIT: CmdError = CmdError::Static("ERR bit is not an integer or out of range");
const BAD_BITFIELD_TYPE: CmdError = CmdError::Static(
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.",
);

/// A bit offset argument (Redis's `getBitOffsetFromArgument`): a non-negative integer
/// whose byte lies below proto-max-bulk-len. With `field_bits` (BITFIELD), `#n` means
/// `n * field_bits`.
fn bit_offset(ctx: &Ctx, arg: &[u8], field_bits: Option<u32>) -> Result<u64, CmdError> {
    let (digits, multiplier) = match (arg.split_first(), field_bits) {
        (Some((b'#', rest)), Some(bits)) => (rest, bits as i64),
        _ => (arg, 1),
    };
    let n = args::int(digits)
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or(BAD_OFFSET)?;
    let max = ctx.srv.runtime.proto_max_bulk_len.load(Ordering::Relaxed);
    if n < 0 || (n as u64 >> 3) >= max {
        return Err(BAD_OFFSET);
    }
    Ok(n as u64)
}

/// The byte at `i`, 0 past the end (a bitmap is zero-padded forever).
fn byte_at(s: &[u8], i: u64) -> u8 {
    usize::try_from(i)
        .ok()
        .and_then(|i| s.get(i))
        .copied()
        .unwrap_or(0)
}

/// `SETBIT key offset value` → the bit's previous value. Grows the string (zero-padded)
/// as needed; a write that changes nothing is not logged.
fn setbit(ctx: &mut Ctx, a: Args) -> CmdResult {
    let offset = bit_offset(ctx, &a[2], None)?;
    let on = match args::int(&a[3]) {
        Ok(0) => 0u8,
        Ok(1) => 1,
        _ => return Err(BAD_BIT),
    };
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let byte = offset >> 3;
    let shift = 7 - (offset & 7) as u8;
    let (old, grows) = match shard.lookup(key, h, ctx.now) {
        None => (0, true),
        Some(e) => e
            .value()
            .with_str(|s| (byte_at(s, byte), byte >= s.len() as u64))
            .ok_or(CmdError::WrongType)?,
    };
    let old_bit = (old >> shift) & 1;
    if grows || old_bit != on {
        let new = (old & !(1 << shift)) | (on << shift);
        shard.commit(
            &[Effect::StrWrite {
                key,
                offset: byte,
                bytes: &[new],
            }],
            ctx.now,
        )?;
    }
    ctx.out.int(old_bit as i64);
    Ok(())
}

/// `GETBIT key offset` → the bit at `offset`, 0 past the end or for a missing key.
fn getbit(ctx: &mut Ctx, a: Args) -> CmdResult {
    let offset = bit_offset(ctx, &a[2], None)?;
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let bit = match shard.get(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            0
        }
        Some(e) => {
            ctx.lookup_stat(true);
            e.value()
                .with_str(|s| (byte_at(s, offset >> 3) >> (7 - (offset & 7))) & 1)
                .ok_or(CmdError::WrongType)?
        }
    };
    ctx.out.int(bit as i64);
    Ok(())
}

/// A BITCOUNT/BITPOS range after Redis's conversion: byte indices `start..=end` with
/// masks of the bits of the first and last byte that lie outside a BIT range.
struct ByteRange {
    start: i64,
    end: i64,
    first_outside: u8,
    last_outside: u8,
}

/// Resolves `start`/`end` (negative from the end, in bytes or with `in_bits` in bits)
/// against a string of `len` bytes, clamping as Redis does.
fn resolve_range(len: usize, mut start: i64, mut end: i64, in_bits: bool) -> ByteRange {
    let mut total = len as i64;
    if in_bits {
        total <<= 3;
    }
    if start < 0 {
        start += total;
    }
    if end < 0 {
        end += total;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= total {
        end = total - 1;
    }
    let (mut first_outside, mut last_outside) = (0, 0);
    if in_bits && start <= end {
        first_outside = !((1u16 << (8 - (start & 7))) - 1) as u8;
        last_outside = ((1u16 << (7 - (end & 7))) - 1) as u8;
        start >>= 3;
        end >>= 3;
    }
    ByteRange {
        start,
        end,
        first_outside,
        last_outside,
    }
}

/// The BIT|BYTE unit argument.
fn unit_is_bit(arg: &[u8]) -> Result<bool, CmdError> {
    if args::is(arg, "bit") {
        Ok(true)
    } else if args::is(arg, "byte") {
        Ok(false)
    } else {
        Err(CmdError::Syntax)
    }
}

fn popcount(bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    let mut n: u64 = chunks
        .by_ref()
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()).count_ones() as u64)
        .sum();
    n += chunks
        .remainder()
        .iter()
        .map(|b| b.count_ones() as u64)
        .sum::<u64>();
    n
}

/// `BITCOUNT key [start end [BYTE|BIT]]` → the number of set bits in the range (the
/// whole string by default), 0 for a missing key.
fn bitcount(ctx: &mut Ctx, a: Args) -> CmdResult {
    // Arguments are checked before the key, as Redis 7.2 does.
    let range = match a.len() {
        2 => None,
        4 | 5 => {
            let start = args::int(&a[2])?;
            let end = args::int(&a[3])?;
            let in_bits = match a.get(4) {
                Some(unit) => unit_is_bit(unit)?,
                None => false,
            };
            Some((start, end, in_bits))
        }
        _ => return Err(CmdError::Syntax),
    };
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let Some(e) = shard.get(key, h, ctx.now) else {
        ctx.lookup_stat(false);
        ctx.out.int(0);
        return Ok(());
    };
    ctx.lookup_stat(true);
    let count = e
        .value()
        .with_str(|s| {
            let r = match range {
                None => resolve_range(s.len(), 0, -1, false),
                Some((start, end, _)) if start < 0 && end < 0 && start > end => return 0,
                Some((start, end, in_bits)) => resolve_range(s.len(), start, end, in_bits),
            };
            if r.start > r.end {
                return 0;
            }
            let (start, end) = (r.start as usize, r.end as usize);
            let outside =
                (s[start] & r.first_outside).count_ones() + (s[end] & r.last_outside).count_ones();
            popcount(&s[start..=end]) - outside as u64
        })
        .ok_or(CmdError::WrongType)?;
    ctx.out.int(count as i64);
    Ok(())
}

/// The position of the first bit equal to `bit` in `bytes`; past the end (`8 * len`)
/// when looking for a 0 in all-ones bytes, `None` when looking for a 1 in zeros.
fn first_bit(bytes: &[u8], bit: u8) -> Option<u64> {
    let skip = if bit == 1 { 0x00 } else { 0xff };
    match bytes.iter().position(|&b| b != skip) {
        Some(i) => {
            let b = if bit == 1 { bytes[i] } else { !bytes[i] };
            Some(i as u64 * 8 + b.leading_zeros() as u64)
        }
        None if bit == 0 => Some(bytes.len() as u64 * 8),
        None => None,
    }
}

/// [`first_bit`] over `s[start..=end]`, relative to `start`, with the bits of the
/// first and last byte in the `*_outside` masks forced to the opposite of `bit`.
fn first_bit_in(
    s: &[u8],
    start: usize,
    end: usize,
    first_outside: u8,
    last_outside: u8,
    bit: u8,
) -> Option<u64> {
    let force = |b: u8, mask: u8| if bit == 1 { b & !mask } else { b | mask };
    let mut first = force(s[start], first_outside);
    if start == end {
        first = force(first, last_outside);
        return first_bit(&[first], bit);
    }
    match first_bit(&[first], bit) {
        Some(p) if p < 8 => return Some(p),
        _ => {}
    }
    match first_bit(&s[start + 1..end], bit) {
        Some(p) if p < (end - start - 1) as u64 * 8 => return Some(8 + p),
        _ => {}
    }
    first_bit(&[force(s[end], last_outside)], bit).map(|p| (end - start) as u64 * 8 + p)
}

/// `BITPOS key bit [start [end [BYTE|BIT]]]` → the position of the first bit set to
/// `bit` in the range, or -1. A missing key is all zeros: 0 for a clear bit, -1 for a
/// set one. Without an explicit end, a search for 0 in all-ones bytes answers the first
/// bit past the string.
fn bitpos(ctx: &mut Ctx, a: Args) -> CmdResult {
    let bit = match args::int(&a[2])? {
        0 => 0u8,
        1 => 1,
        _ => return Err(CmdError::Static("ERR The bit argument must be 1 or 0.")),
    };
    let (range, end_given) = match a.len() {
        3 => (None, false),
        4..=6 => {
            let start = args::int(&a[3])?;
            let in_bits = match a.get(5) {
                Some(unit) => unit_is_bit(unit)?,
                None => false,
            };
            let end = match a.get(4) {
                Some(end) => Some(args::int(end)?),
                None => None,
            };
            (Some((start, end, in_bits)), end.is_some())
        }
        _ => return Err(CmdError::Syntax),
    };
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    let Some(e) = shard.get(key, h, ctx.now) else {
        ctx.lookup_stat(false);
        ctx.out.int(if bit == 1 { -1 } else { 0 });
        return Ok(());
    };
    ctx.lookup_stat(true);
    let pos = e
        .value()
        .with_str(|s| {
            let r = match range {
                None => resolve_range(s.len(), 0, -1, false),
                Some((start, end, in_bits)) => {
                    resolve_range(s.len(), start, end.unwrap_or(-1), in_bits)
                }
            };
            if r.start > r.end {
                return -1;
            }
            let (start, end) = (r.start as usize, r.end as usize);
            match first_bit_in(s, start, end, r.first_outside, r.last_outside, bit) {
                // A clear bit past an explicit end is outside the range.
                Some(p) if end_given && p == (end - start + 1) as u64 * 8 => -1,
                Some(p) => (p + start as u64 * 8) as i64,
                None => -1,
            }
        })
        .ok_or(CmdError::WrongType)?;
    ctx.out.int(pos);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

/// `BITOP AND|OR|XOR|NOT destkey key [key ...]` → the length of the result, stored at
/// `destkey` (as a new string without TTL; an empty result deletes it). Missing keys
/// are empty strings; shorter strings are zero-padded.
fn bitop(ctx: &mut Ctx, a: Args) -> CmdResult {
    let op = if args::is(&a[1], "and") {
        BitOp::And
    } else if args::is(&a[1], "or") {
        BitOp::Or
    } else if args::is(&a[1], "xor") {
        BitOp::Xor
    } else if args::is(&a[1], "not") {
        BitOp::Not
    } else {
        return Err(CmdError::Syntax);
    };
    if op == BitOp::Not && a.len() != 4 {
        return Err(CmdError::Static(
            "ERR BITOP NOT must be called with a single source key.",
        ));
    }
    let store = &ctx.srv.store;
    let dst = &a[2];
    let hd = store.hash(dst);
    let sources: Vec<(&[u8], KeyHash)> = a.iter().skip(3).map(|k| (k, store.hash(k))).collect();
    let mut multi = store.write_many(sources.iter().map(|&(_, h)| h).chain([hd]));
    let result = {
        let mut inputs: Vec<std::borrow::Cow<'_, [u8]>> = Vec::with_capacity(sources.len());
        for &(key, h) in &sources {
            match multi.get(key, h, ctx.now) {
                None => inputs.push(std::borrow::Cow::Borrowed(&[])),
                Some(e) => match e.value() {
                    dse_engine::Value::Str(s) => inputs.push(std::borrow::Cow::Borrowed(s)),
                    v => inputs.push(std::borrow::Cow::Owned(
                        v.with_str(|s| s.to_vec()).ok_or(CmdError::WrongType)?,
                    )),
                },
            }
        }
        combine(op, &inputs)
    };
    let len = result.len();
    if len > 0 {
        multi.put(dst, hd, dse_engine::Value::bytes(result), 0, ctx.now)?;
    } else if multi.get(dst, hd, ctx.now).is_some() {
        multi.commit(&[Effect::Del { key: dst }], ctx.now)?;
    }
    ctx.out.int(len as i64);
    Ok(())
}

/// The bitwise combination of `inputs`, as long as the longest (shorter ones count as
/// zero-padded).
fn combine(op: BitOp, inputs: &[std::borrow::Cow<'_, [u8]>]) -> Vec<u8> {
    let len = inputs.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![0u8; len];
    let Some((first, rest)) = inputs.split_first() else {
        return out;
    };
    out[..first.len()].copy_from_slice(first);
    match op {
        BitOp::Not => out.iter_mut().for_each(|b| *b = !*b),
        BitOp::And => {
            for s in rest {
                for (o, b) in out.iter_mut().zip(s.iter()) {
                    *o &= b;
                }
                // Past a shorter input, AND with zero.
                out[s.len()..].iter_mut().for_each(|o| *o = 0);
            }
        }
        BitOp::Or | BitOp::Xor => {
            for s in rest {
                for (o, b) in out.iter_mut().zip(s.iter()) {
                    if op == BitOp::Or {
                        *o |= b;
                    } else {
                        *o ^= b;
                    }
                }
            }
        }
    }
    out
}

/// What BITFIELD does when a value does not fit its field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Overflow {
    Wrap,
    Sat,
    Fail,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set(i64),
    IncrBy(i64),
}

struct FieldCmd {
    op: FieldOp,
    offset: u64,
    bits: u32,
    signed: bool,
    overflow: Overflow,
}

/// A BITFIELD type: `i1`..`i64` or `u1`..`u63`.
fn field_type(arg: &[u8]) -> Result<(bool, u32), CmdError> {
    let (signed, digits) = match arg.split_first() {
        Some((b'i', rest)) => (true, rest),
        Some((b'u', rest)) => (false, rest),
        _ => return Err(BAD_BITFIELD_TYPE),
    };
    match args::int(digits) {
        Ok(n) if n >= 1 && ((signed && n <= 64) || (!signed && n <= 63)) => Ok((signed, n as u32)),
        _ => Err(BAD_BITFIELD_TYPE),
    }
}

/// Parses BITFIELD's operations, as Redis's `bitfieldGeneric` (every error before any
/// work).
fn parse_field_ops(ctx: &Ctx, a: &Args) -> Result<Vec<FieldCmd>, CmdError> {
    let mut ops = Vec::new();
    let mut overflow = Overflow::Wrap;
    let mut j = 2;
    while j < a.len() {
        let remaining = a.len() - j - 1;
        let name = &a[j];
        let op = if args::is(name, "get") && remaining >= 2 {
            FieldOp::Get
        } else if args::is(name, "set") && remaining >= 3 {
            FieldOp::Set(0)
        } else if args::is(name, "incrby") && remaining >= 3 {
            FieldOp::IncrBy(0)
        } else if args::is(name, "overflow") && remaining >= 1 {
            let kind = &a[j + 1];
            overflow = if args::is(kind, "wrap") {
                Overflow::Wrap
            } else if args::is(kind, "sat") {
                Overflow::Sat
            } else if args::is(kind, "fail") {
                Overflow::Fail
            } else {
                return Err(CmdError::Static("ERR Invalid OVERFLOW type specified"));
            };
            j += 2;
            continue;
        } else {
            return Err(CmdError::Syntax);
        };
        let (signed, bits) = field_type(&a[j + 1])?;
        let offset = bit_offset(ctx, &a[j + 2], Some(bits))?;
        let op = match op {
            FieldOp::Get => FieldOp::Get,
            FieldOp::Set(_) => FieldOp::Set(args::int(&a[j + 3])?),
            FieldOp::IncrBy(_) => FieldOp::IncrBy(args::int(&a[j + 3])?),
        };
        ops.push(FieldCmd {
            op,
            offset,
            bits,
            signed,
            overflow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    Ok(ops)
}

/// Reads `bits` bits from `buf` starting at bit `offset` (most significant first).
fn get_unsigned(buf: &[u8], offset: u64, bits: u32) -> u64 {
    let mut value = 0u64;
    for i in 0..bits as u64 {
        let pos = offset + i;
        let bit = (buf[(pos >> 3) as usize] >> (7 - (pos & 7))) & 1;
        value = (value << 1) | bit as u64;
    }
    value
}

fn get_signed(buf: &[u8], offset: u64, bits: u32) -> i64 {
    let mut value = get_unsigned(buf, offset, bits);
    // Sign-extend a negative field.
    if bits < 64 && value & (1u64 << (bits - 1)) != 0 {
        value |= u64::MAX << bits;
    }
    value as i64
}

fn set_unsigned(buf: &mut [u8], offset: u64, bits: u32, value: u64) {
    for i in 0..bits as u64 {
        let bit = ((value >> (bits as u64 - 1 - i)) & 1) as u8;
        let pos = offset + i;
        let byte = &mut buf[(pos >> 3) as usize];
        let shift = 7 - (pos & 7);
        *byte = (*byte & !(1 << shift)) | (bit << shift);
    }
}

/// Redis's `checkUnsignedBitfieldOverflow`: 0 when `value + incr` fits in `bits`
/// unsigned bits, else 1 (too big) or -1 (below zero), with the wrapped or saturated
/// value to store.
fn unsigned_overflow(value: u64, incr: i64, bits: u32, overflow: Overflow) -> (i32, u64) {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let max_incr = max.wrapping_sub(value) as i64;
    let min_incr = (value as i64).wrapping_neg();
    let wrapped = || value.wrapping_add(incr as u64) & max;
    if value > max || (incr > 0 && incr > max_incr) {
        let limit = match overflow {
            Overflow::Wrap => wrapped(),
            Overflow::Sat => max,
            Overflow::Fail => 0,
        };
        (1, limit)
    } else if incr < 0 && incr < min_incr {
        let limit = match overflow {
            Overflow::Wrap => wrapped(),
            Overflow::Sat => 0,
            Overflow::Fail => 0,
        };
        (-1, limit)
    } else {
        (0, 0)
    }
}

/// Redis's `checkSignedBitfieldOverflow`, as [`unsigned_overflow`] for signed fields.
fn signed_overflow(value: i64, incr: i64, bits: u32, overflow: Overflow) -> (i32, i64) {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let max_incr = (max as u64).wrapping_sub(value as u64) as i64;
    let min_incr = min.wrapping_sub(value);
    let wrapped = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > max_incr) || (value >= 0 && incr > 0 && incr > max_incr)
    {
        let limit = match overflow {
            Overflow::Wrap => wrapped(),
            Overflow::Sat => max,
            Overflow::Fail => 0,
        };
        (1, limit)
    } else if value < min
        || (bits != 64 && incr < min_incr)
        || (value < 0 && incr < 0 && incr < min_incr)
    {
        let limit = match overflow {
            Overflow::Wrap => wrapped(),
            Overflow::Sat => min,
            Overflow::Fail => 0,
        };
        (-1, limit)
    } else {
        (0, 0)
    }
}

/// The bytes a BITFIELD has written so far, over the key's string: reads see earlier
/// writes of the same command; only the bytes that differ are logged at the end.
struct Patch<'s> {
    base: &'s [u8],
    changed: BTreeMap<u64, u8>,
}

impl Patch<'_> {
    fn byte(&self, i: u64) -> u8 {
        self.changed
            .get(&i)
            .copied()
            .unwrap_or_else(|| byte_at(self.base, i))
    }

    /// The 9 bytes from byte `first` (enough for 64 bits at any bit position).
    fn window(&self, first: u64) -> [u8; 9] {
        let mut buf = [0u8; 9];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.byte(first + i as u64);
        }
        buf
    }

    fn store(&mut self, first: u64, buf: &[u8; 9]) {
        for (i, &b) in buf.iter().enumerate() {
            let at = first + i as u64;
            if b != self.byte(at) {
                self.changed.insert(at, b);
            }
        }
    }
}

/// Runs `ops` against `base` (the key's string; empty when missing), writing the
/// replies, and returns the changed bytes as runs (offset, bytes).
fn run_field_ops(
    out: &mut dse_proto::Reply<'_>,
    ops: &[FieldCmd],
    base: &[u8],
) -> Vec<(u64, Vec<u8>)> {
    let mut patch = Patch {
        base,
        changed: BTreeMap::new(),
    };
    out.array(ops.len());
    for op in ops {
        let first = op.offset >> 3;
        let at = op.offset & 7;
        let mut buf = patch.window(first);
        let (reply, new) = if op.signed {
            let old = get_signed(&buf, at, op.bits);
            match op.op {
                FieldOp::Get => (Some(old), None),
                FieldOp::Set(v) => {
                    let (over, limit) = signed_overflow(v, 0, op.bits, op.overflow);
                    let new = if over != 0 { limit } else { v };
                    let failed = over != 0 && op.overflow == Overflow::Fail;
                    ((!failed).then_some(old), (!failed).then_some(new as u64))
                }
                FieldOp::IncrBy(incr) => {
                    let (over, limit) = signed_overflow(old, incr, op.bits, op.overflow);
                    let new = if over != 0 {
                        limit
                    } else {
                        old.wrapping_add(incr)
                    };
                    let failed = over != 0 && op.overflow == Overflow::Fail;
                    ((!failed).then_some(new), (!failed).then_some(new as u64))
                }
            }
        } else {
            let old = get_unsigned(&buf, at, op.bits);
            match op.op {
                FieldOp::Get => (Some(old as i64), None),
                FieldOp::Set(v) => {
                    let (over, limit) = unsigned_overflow(v as u64, 0, op.bits, op.overflow);
                    let new = if over != 0 { limit } else { v as u64 };
                    let failed = over != 0 && op.overflow == Overflow::Fail;
                    ((!failed).then_some(old as i64), (!failed).then_some(new))
                }
                FieldOp::IncrBy(incr) => {
                    let (over, limit) = unsigned_overflow(old, incr, op.bits, op.overflow);
                    let new = if over != 0 {
                        limit
                    } else {
                        old.wrapping_add(incr as u64)
                    };
                    let failed = over != 0 && op.overflow == Overflow::Fail;
                    ((!failed).then_some(new as i64), (!failed).then_some(new))
                }
            }
        };
        match reply {
            Some(n) => out.int(n),
            None => out.null(),
        }
        if let Some(new) = new {
            set_unsigned(&mut buf, at, op.bits, new);
            patch.store(first, &buf);
        }
    }
    // Consecutive changed bytes become one write.
    let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
    for (&at, &b) in &patch.changed {
        match runs.last_mut() {
            Some((start, bytes)) if *start + bytes.len() as u64 == at => bytes.push(b),
            _ => runs.push((at, vec![b])),
        }
    }
    runs
}

/// `BITFIELD key [GET type offset | [OVERFLOW WRAP|SAT|FAIL] SET type offset value |
/// [OVERFLOW WRAP|SAT|FAIL] INCRBY type offset increment ...]` → one reply per GET, SET
/// (the old value) and INCRBY (the new value); nil for an operation OVERFLOW FAIL
/// refused. A write grows the string to the farthest field written, even when refused.
fn bitfield(ctx: &mut Ctx, a: Args) -> CmdResult {
    bitfield_generic(ctx, a, false)
}

/// `BITFIELD_RO key [GET type offset ...]` → the fields' values.
fn bitfield_ro(ctx: &mut Ctx, a: Args) -> CmdResult {
    bitfield_generic(ctx, a, true)
}

fn bitfield_generic(ctx: &mut Ctx, a: Args, readonly_command: bool) -> CmdResult {
    let ops = parse_field_ops(ctx, &a)?;
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let highest_write = ops
        .iter()
        .filter(|op| op.op != FieldOp::Get)
        .map(|op| op.offset + op.bits as u64 - 1)
        .max();
    let Some(highest_write) = highest_write else {
        let shard = store.read(h);
        let found = shard.get(key, h, ctx.now);
        ctx.lookup_stat(found.is_some());
        match found {
            None => {
                run_field_ops(ctx.out, &ops, &[]);
            }
            Some(e) => {
                e.value()
                    .with_str(|s| run_field_ops(ctx.out, &ops, s))
                    .ok_or(CmdError::WrongType)?;
            }
        }
        return Ok(());
    };
    if readonly_command {
        return Err(CmdError::Static(
            "ERR BITFIELD_RO only supports the GET subcommand",
        ));
    }
    let mut shard = store.write(h);
    let mark = ctx.out.len();
    let (old_len, runs) = match shard.lookup(key, h, ctx.now) {
        None => (None, run_field_ops(ctx.out, &ops, &[])),
        Some(e) => e
            .value()
            .with_str(|s| (Some(s.len()), run_field_ops(ctx.out, &ops, s)))
            .ok_or(CmdError::WrongType)?,
    };
    let needed = (highest_write >> 3) + 1;
    let mut effects: Vec<Effect> = Vec::with_capacity(runs.len() + 1);
    if old_len.is_none_or(|len| (len as u64) < needed) {
        effects.push(Effect::StrWrite {
            key,
            offset: needed,
            bytes: &[],
        });
    }
    effects.extend(runs.iter().map(|(offset, bytes)| Effect::StrWrite {
        key,
        offset: *offset,
        bytes,
    }));
    if !effects.is_empty()
        && let Err(e) = shard.commit(&effects, ctx.now)
    {
        ctx.out.truncate(mark);
        return Err(e.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_bits_round_trip() {
        let mut buf = [0u8; 9];
        set_unsigned(&mut buf, 3, 10, 0b10_1100_0111);
        assert_eq!(get_unsigned(&buf, 3, 10), 0b10_1100_0111);
        assert_eq!(buf[0], 0b0001_0110);
        assert_eq!(get_signed(&buf, 3, 2), -2);
        set_unsigned(&mut buf, 5, 64, u64::MAX);
        assert_eq!(get_signed(&buf, 5, 64), -1);
    }

    #[test]
    fn overflow_rules() {
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), (1, 4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), (1, 255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), (-1, 0));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Wrap), (-1, 251));
        assert_eq!(unsigned_overflow(5, 10, 8, Overflow::Wrap), (0, 0));
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Wrap), (1, -126));
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Sat), (1, 127));
        assert_eq!(signed_overflow(-120, -10, 8, Overflow::Sat), (-1, -128));
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Wrap),
            (1, i64::MIN)
        );
        assert_eq!(
            signed_overflow(i64::MIN, -1, 64, Overflow::Sat),
            (-1, i64::MIN)
        );
        assert_eq!(signed_overflow(-1, 1, 64, Overflow::Wrap), (0, 0));
    }

    #[test]
    fn first_bit_positions() {
        assert_eq!(first_bit(&[0x00, 0x10], 1), Some(11));
        assert_eq!(first_bit(&[0x00], 1), None);
        assert_eq!(first_bit(&[0xff, 0xfe], 0), Some(15));
        assert_eq!(first_bit(&[0xff], 0), Some(8));
        let s = [0xff, 0xff, 0xff, 0x0f];
        assert_eq!(first_bit_in(&s, 0, 3, 0, 0, 0), Some(24));
        assert_eq!(first_bit_in(&s, 1, 2, 0, 0, 0), Some(16));
        assert_eq!(first_bit_in(&s, 0, 3, 0, 0x0f, 1), Some(0));
        assert_eq!(first_bit_in(&s, 3, 3, 0xf0, 0, 1), Some(4));
        assert_eq!(first_bit_in(&s, 3, 3, 0xf8, 0, 1), Some(5));
        assert_eq!(first_bit_in(&[0, 0, 0], 0, 2, 0, 0x7f, 1), None);
        assert_eq!(first_bit_in(&[0, 0, 1], 0, 2, 0, 0, 1), Some(23));
    }
}

//! HyperLogLog commands, with Redis's algorithm and representation, byte for byte.
//!
//! An HLL is a string: a 16-byte header (`HYLL`, the encoding, three unused bytes, the
//! cached cardinality in little-endian with its top bit meaning "stale"), then either
//! the dense registers (16384 six-bit registers, 12288 bytes) or the sparse run-length
//! opcodes (ZERO `00xxxxxx`, XZERO `01xxxxxx yyyyyyyy`, VAL `1vvvvvxx`). Elements hash
//! with MurmurHash64A (seed `0xadc83b19`); the estimate is Ertl's improved estimator, as
//! Redis 5+ computes it. So the counts match Redis's for the same elements, and GET of
//! an HLL key returns the bytes Redis would store (a DUMP/RESTORE or a GET/SET moves an
//! HLL between the two).
//!
//! Writes log only the bytes that changed when the string did not shrink (a dense
//! register update is a few bytes of log, not 12 KB), else the whole string.

use dse_engine::{Effect, Expiry, KeyHash, MultiMut, ShardMut, Value};
use dse_proto::Args;

use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("pfadd", -2, WRITE | DENYOOM | FAST, pfadd)
        .keys(1, 1, 1)
        .key_flags(&["RW", "insert"])
        .doc(
            "hyperloglog",
            "2.8.9",
            "O(1) to add every element.",
            "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.",
        ),
    cmd("pfcount", -2, READONLY, pfcount)
        .keys(1, -1, 1)
        .key_flags(&["RW", "access"])
        .doc(
            "hyperloglog",
            "2.8.9",
            "O(1) with a very small average constant time when called with a single key. O(N) with N being the number of keys, and much bigger constant times, when called with multiple keys.",
            "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s).",
        ),
    cmd("pfmerge", -2, WRITE | DENYOOM, pfmerge)
        .keys(1, -1, 1)
        .key_flags(&["RW", "access", "insert"])
        .doc(
            "hyperloglog",
            "2.8.9",
            "O(N) to merge N HyperLogLogs, but with high constant times.",
            "Merges one or more HyperLogLog values into a single key.",
        ),
    cmd("pfdebug", 3, WRITE | DENYOOM | ADMIN, pfdebug)
        .keys(2, 2, 1)
        .key_flags(&["RW", "access"])
        .doc(
            "hyperloglog",
            "2.8.9",
            "N/A",
            "Internal commands for debugging HyperLogLog values.",
        ),
    cmd("pfselftest", 1, ADMIN, pfselftest).doc(
        "hyperloglog",
        "2.8.9",
        "N/A",
        "An internal command for testing HyperLogLog values.",
    ),
];

const P: u32 = 14;
const Q: u32 = 64 - P;
const REGISTERS: usize = 1 << P;
const P_MASK: u64 = REGISTERS as u64 - 1;
const BITS: usize = 6;
const REGISTER_MAX: u8 = (1 << BITS) - 1;
const HDR_SIZE: usize = 16;
const DENSE_SIZE: usize = HDR_SIZE + (REGISTERS * BITS).div_ceil(8);
const DENSE: u8 = 0;
const SPARSE: u8 = 1;
/// Redis's `hll-sparse-max-bytes` default: a sparse HLL that would grow past this
/// becomes dense.
const SPARSE_MAX_BYTES: usize = 3000;
const SPARSE_VAL_MAX_VALUE: u8 = 32;
const SPARSE_VAL_MAX_LEN: usize = 4;
const SPARSE_ZERO_MAX_LEN: usize = 64;
const SPARSE_XZERO_MAX_LEN: usize = 16384;
const ALPHA_INF: f64 = 0.721_347_520_444_481_7;
const MURMUR_SEED: u64 = 0xadc8_3b19;

const NOT_AN_HLL: CmdError =
    CmdError::Static("WRONGTYPE Key is not a valid HyperLogLog string value.");
const CORRUPTED: CmdError = CmdError::Static("INVALIDOBJ Corrupted HLL object detected");

/// The HLL's registers are not a valid sparse representation.
#[derive(Debug)]
struct Invalid;

/// MurmurHash2, 64-bit version, as Redis computes it (little-endian words).
fn murmurhash64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for c in chunks.by_ref() {
        let mut k = u64::from_le_bytes(c.try_into().unwrap_or_default());
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate() {
            h ^= (b as u64) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register an element lands in and the length of its `000..1` pattern.
fn pattern_len(element: &[u8]) -> (usize, u8) {
    let hash = murmurhash64a(element, MURMUR_SEED);
    let index = (hash & P_MASK) as usize;
    // The bit at Q ends the run, so the count is at most Q + 1.
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

// --- the dense representation ---

fn dense_get(regs: &[u8], index: usize) -> u8 {
    let byte = index * BITS / 8;
    let fb = (index * BITS) & 7;
    let b0 = regs[byte] as u16;
    // The last register never reaches into the byte after the array.
    let b1 = regs.get(byte + 1).copied().unwrap_or(0) as u16;
    (((b0 >> fb) | (b1 << (8 - fb))) & REGISTER_MAX as u16) as u8
}

fn dense_set(regs: &mut [u8], index: usize, value: u8) {
    let byte = index * BITS / 8;
    let fb = (index * BITS) & 7;
    let v = value as u16;
    regs[byte] &= !((REGISTER_MAX as u16) << fb) as u8;
    regs[byte] |= (v << fb) as u8;
    if let Some(next) = regs.get_mut(byte + 1) {
        *next &= !((REGISTER_MAX as u16) >> (8 - fb)) as u8;
        *next |= (v >> (8 - fb)) as u8;
    }
}

/// Raises register `index` to `count`; true when it changed.
fn dense_raise(regs: &mut [u8], index: usize, count: u8) -> bool {
    if count > dense_get(regs, index) {
        dense_set(regs, index, count);
        true
    } else {
        false
    }
}

// --- the sparse representation ---

fn is_zero(op: u8) -> bool {
    op & 0xc0 == 0
}

fn is_xzero(op: u8) -> bool {
    op & 0xc0 == 0x40
}

fn is_val(op: u8) -> bool {
    op & 0x80 != 0
}

fn zero_len(op: u8) -> usize {
    (op & 0x3f) as usize + 1
}

/// XZERO's length; `next` is its second byte (0 past the end, as C reads the string's
/// terminator).
fn xzero_len(op: u8, next: u8) -> usize {
    ((((op & 0x3f) as usize) << 8) | next as usize) + 1
}

fn val_value(op: u8) -> u8 {
    ((op >> 2) & 0x1f) + 1
}

fn val_len(op: u8) -> usize {
    (op & 0x3) as usize + 1
}

fn val_op(value: u8, len: usize) -> u8 {
    (((value - 1) << 2) | (len as u8 - 1)) | 0x80
}

fn zero_op(len: usize) -> u8 {
    (len - 1) as u8
}

fn xzero_ops(len: usize) -> [u8; 2] {
    let l = len - 1;
    [((l >> 8) as u8) | 0x40, (l & 0xff) as u8]
}

/// Calls `run(first_register, run_length, value)` for each opcode of a sparse body;
/// `Invalid` when the runs overflow or do not cover exactly every register.
fn sparse_runs(body: &[u8], mut run: impl FnMut(usize, usize, u8)) -> Result<(), Invalid> {
    let mut idx = 0;
    let mut p = 0;
    while p < body.len() {
        let op = body[p];
        let (len, value, width) = if is_zero(op) {
            (zero_len(op), 0, 1)
        } else if is_xzero(op) {
            (xzero_len(op, body.get(p + 1).copied().unwrap_or(0)), 0, 2)
        } else {
            (val_len(op), val_value(op), 1)
        };
        if idx + len > REGISTERS {
            return Err(Invalid);
        }
        run(idx, len, value);
        idx += len;
        p += width;
    }
    if idx != REGISTERS {
        return Err(Invalid);
    }
    Ok(())
}

/// A new, empty HLL: sparse, one XZERO covering every register.
fn new_hll() -> Vec<u8> {
    let mut s = Vec::with_capacity(HDR_SIZE + 2);
    s.extend_from_slice(b"HYLL");
    s.push(SPARSE);
    s.extend_from_slice(&[0; 11]);
    let mut left = REGISTERS;
    while left > 0 {
        let n = left.min(SPARSE_XZERO_MAX_LEN);
        s.extend_from_slice(&xzero_ops(n));
        left -= n;
    }
    s
}

/// Converts a sparse HLL to dense in place (the header, cached cardinality included,
/// is kept).
fn sparse_to_dense(hll: &mut Vec<u8>) -> Result<(), Invalid> {
    if hll[4] == DENSE {
        return Ok(());
    }
    let mut dense = vec![0u8; DENSE_SIZE];
    dense[..HDR_SIZE].copy_from_slice(&hll[..HDR_SIZE]);
    dense[4] = DENSE;
    let regs = &mut dense[HDR_SIZE..];
    sparse_runs(&hll[HDR_SIZE..], |first, len, value| {
        if value != 0 {
            for i in first..first + len {
                dense_set(regs, i, value);
            }
        }
    })?;
    *hll = dense;
    Ok(())
}

/// Raises register `index` of a sparse HLL to `count` (Redis's `hllSparseSet`),
/// converting it to dense when the value is too big for a VAL opcode or the string
/// would pass [`SPARSE_MAX_BYTES`]. True when it changed.
fn sparse_raise(hll: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Invalid> {
    if count > SPARSE_VAL_MAX_VALUE {
        return promote(hll, index, count);
    }
    // Find the opcode covering `index`.
    let end = hll.len();
    let mut p = HDR_SIZE;
    let mut first = 0;
    let mut prev = None;
    let mut span = 0;
    while p < end {
        let op = hll[p];
        let mut width = 1;
        span = if is_zero(op) {
            zero_len(op)
        } else if is_val(op) {
            val_len(op)
        } else {
            width = 2;
            xzero_len(op, hll.get(p + 1).copied().unwrap_or(0))
        };
        if index < first + span {
            break;
        }
        prev = Some(p);
        p += width;
        first += span;
    }
    if span == 0 || p >= end {
        return Err(Invalid);
    }
    let op = hll[p];
    let (zero, xzero) = (is_zero(op), is_xzero(op));
    let runlen = if zero {
        zero_len(op)
    } else if xzero {
        xzero_len(op, hll.get(p + 1).copied().unwrap_or(0))
    } else {
        val_len(op)
    };

    let mut updated_in_place = false;
    if !zero && !xzero {
        // A VAL already at least `count` needs nothing; a VAL of one register is
        // simply rewritten.
        if val_value(op) >= count {
            return Ok(false);
        }
        if runlen == 1 {
            hll[p] = val_op(count, 1);
            updated_in_place = true;
        }
    }
    if zero && runlen == 1 {
        hll[p] = val_op(count, 1);
        updated_in_place = true;
    }

    if !updated_in_place {
        // Split the opcode into up to three: before, the register, after.
        let mut seq: Vec<u8> = Vec::with_capacity(5);
        let last = first + span - 1;
        if zero || xzero {
            let zeros = |seq: &mut Vec<u8>, len: usize| {
                if len > SPARSE_ZERO_MAX_LEN {
                    seq.extend_from_slice(&xzero_ops(len));
                } else {
                    seq.push(zero_op(len));
                }
            };
            if index != first {
                zeros(&mut seq, index - first);
            }
            seq.push(val_op(count, 1));
            if index != last {
                zeros(&mut seq, last - index);
            }
        } else {
            let current = val_value(op);
            if index != first {
                seq.push(val_op(current, index - first));
            }
            seq.push(val_op(count, 1));
            if index != last {
                seq.push(val_op(current, last - index));
            }
        }
        let old_len = if xzero { 2 } else { 1 };
        if seq.len() > old_len && hll.len() + seq.len() - old_len > SPARSE_MAX_BYTES {
            return promote(hll, index, count);
        }
        hll.splice(p..p + old_len, seq);
    }

    // Merge adjacent VALs of equal value, scanning up to five opcodes from the one
    // before the change.
    let mut q = prev.unwrap_or(HDR_SIZE);
    let mut scan = 5;
    while q < hll.len() && scan > 0 {
        scan -= 1;
        let op = hll[q];
        if is_xzero(op) {
            q += 2;
            continue;
        } else if is_zero(op) {
            q += 1;
            continue;
        }
        if q + 1 < hll.len() && is_val(hll[q + 1]) {
            let next = hll[q + 1];
            let (v1, v2) = (val_value(op), val_value(next));
            if v1 == v2 {
                let len = val_len(op) + val_len(next);
                if len <= SPARSE_VAL_MAX_LEN {
                    hll[q + 1] = val_op(v1, len);
                    hll.remove(q);
                    continue;
                }
            }
        }
        q += 1;
    }
    invalidate_cache(hll);
    Ok(true)
}

/// Converts to dense and raises the register there (which must change: the sparse form
/// could not hold the new value).
fn promote(hll: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Invalid> {
    sparse_to_dense(hll)?;
    Ok(dense_raise(&mut hll[HDR_SIZE..], index, count))
}

/// Raises register `index` to `count`, whatever the encoding.
fn raise(hll: &mut Vec<u8>, index: usize, count: u8) -> Result<bool, Invalid> {
    match hll[4] {
        DENSE => Ok(dense_raise(&mut hll[HDR_SIZE..], index, count)),
        _ => sparse_raise(hll, index, count),
    }
}

fn invalidate_cache(hll: &mut [u8]) {
    hll[15] |= 0x80;
}

fn cache_valid(hll: &[u8]) -> bool {
    hll[15] & 0x80 == 0
}

/// The registers' histogram: how many registers hold each value.
fn histogram(hll: &[u8]) -> Result<[u32; 64], Invalid> {
    let mut histo = [0u32; 64];
    let body = &hll[HDR_SIZE..];
    if hll[4] == DENSE {
        for i in 0..REGISTERS {
            histo[dense_get(body, i) as usize] += 1;
        }
    } else {
        sparse_runs(body, |_, len, value| histo[value as usize] += len as u32)?;
    }
    Ok(histo)
}

/// Ertl's sigma (arXiv:1702.01284), as Redis computes it.
fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let z_prime = z;
        z += x * y;
        y += y;
        if z_prime == z {
            return z;
        }
    }
}

/// Ertl's tau (arXiv:1702.01284), as Redis computes it.
fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let z_prime = z;
        y *= 0.5;
        let d = 1.0 - x;
        z -= d * d * y;
        if z_prime == z {
            return z / 3.0;
        }
    }
}

/// The cardinality estimate from a register histogram (Redis's `hllCount`).
fn estimate(histo: &[u32; 64]) -> u64 {
    let m = REGISTERS as f64;
    let mut z = m * tau((m - histo[Q as usize + 1] as f64) / m);
    for j in (1..=Q as usize).rev() {
        z += histo[j] as f64;
        z *= 0.5;
    }
    z += m * sigma(histo[0] as f64 / m);
    (ALPHA_INF * m * m / z).round() as u64
}

/// Raises `max[i]` to each register of `hll` (Redis's `hllMerge`).
fn merge_into(max: &mut [u8; REGISTERS], hll: &[u8]) -> Result<(), Invalid> {
    let body = &hll[HDR_SIZE..];
    if hll[4] == DENSE {
        for (i, m) in max.iter_mut().enumerate() {
            *m = (*m).max(dense_get(body, i));
        }
        Ok(())
    } else {
        sparse_runs(body, |first, len, value| {
            for m in &mut max[first..first + len] {
                *m = (*m).max(value);
            }
        })
    }
}

/// The HLL bytes of a value, or Redis's error for a string that is not one (Redis's
/// `isHLLObjectOrReply`).
fn as_hll(v: &Value) -> Result<&[u8], CmdError> {
    match v {
        Value::Str(s)
            if s.len() >= HDR_SIZE
                && &s[..4] == b"HYLL"
                && s[4] <= SPARSE
                && (s[4] != DENSE || s.len() == DENSE_SIZE) =>
        {
            Ok(s)
        }
        // An integer-encoded string is never an HLL.
        Value::Str(_) | Value::Int(_) => Err(NOT_AN_HLL),
        _ => Err(CmdError::WrongType),
    }
}

/// Runs of bytes that differ between `old` and `new` (same length or longer), merging
/// runs separated by a few equal bytes.
fn changed_runs(old: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
    const GAP: usize = 8;
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, b) in new.iter().enumerate() {
        if old.get(i) == Some(b) {
            continue;
        }
        match runs.last_mut() {
            Some((_, end)) if i <= *end + GAP => *end = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    runs
}

/// Most runs a change is logged as before it is logged as the whole string.
const MAX_RUNS: usize = 32;

/// The effects that turn the string `old` at `key` into `new`: the changed bytes when
/// that is smaller than the string, `None` when the whole string should be logged.
fn diff_effects<'a>(key: &'a [u8], old: &[u8], new: &'a [u8]) -> Option<Vec<Effect<'a>>> {
    if new.len() < old.len() {
        return None;
    }
    let runs = changed_runs(old, new);
    let bytes: usize = runs.iter().map(|(s, e)| e - s).sum();
    if runs.len() > MAX_RUNS || bytes * 2 > new.len() {
        return None;
    }
    Some(
        runs.into_iter()
            .map(|(start, end)| Effect::StrWrite {
                key,
                offset: start as u64,
                bytes: &new[start..end],
            })
            .collect(),
    )
}

/// Writes `new` over the HLL `old` at `key` (keeping its deadline).
fn store_in_shard(
    shard: &mut ShardMut<'_>,
    key: &[u8],
    h: KeyHash,
    old: Option<&[u8]>,
    new: Vec<u8>,
    now: u64,
) -> Result<(), CmdError> {
    match old.and_then(|old| diff_effects(key, old, &new)) {
        Some(effects) if effects.is_empty() => {}
        Some(effects) => {
            shard.commit(&effects, now)?;
        }
        None => {
            let expiry = if old.is_some() {
                Expiry::Keep
            } else {
                Expiry::None
            };
            shard.put(key, h, Value::bytes(new), expiry, now)?;
        }
    }
    Ok(())
}

/// `PFADD key [element ...]` → 1 when the HLL changed (or was created), else 0.
fn pfadd(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let (old, mut hll, mut updated) = match shard.lookup(key, h, ctx.now) {
        None => (None, new_hll(), true),
        Some(e) => {
            let current = as_hll(e.value())?;
            // Most additions to a large (dense) HLL change no register: answer those
            // without copying 12 KB.
            if current[4] == DENSE
                && a.iter().skip(2).all(|element| {
                    let (index, count) = pattern_len(element);
                    count <= dense_get(&current[HDR_SIZE..], index)
                })
            {
                ctx.out.int(0);
                return Ok(());
            }
            let old = current.to_vec();
            let hll = old.clone();
            (Some(old), hll, false)
        }
    };
    for element in a.iter().skip(2) {
        let (index, count) = pattern_len(element);
        updated |= raise(&mut hll, index, count).map_err(|_| CORRUPTED)?;
    }
    if updated {
        invalidate_cache(&mut hll);
        store_in_shard(&mut shard, key, h, old.as_deref(), hll, ctx.now)?;
    }
    ctx.out.int(updated as i64);
    Ok(())
}

/// `PFCOUNT key [key ...]` → the estimated cardinality of one HLL (cached in its header,
/// which is written back when it was stale), or of the union of several. Missing keys
/// are empty HLLs.
fn pfcount(ctx: &mut Ctx, a: Args) -> CmdResult {
    let store = &ctx.srv.store;
    if a.len() > 2 {
        let mut max = Box::new([0u8; REGISTERS]);
        for key in a.iter().skip(1) {
            let h = store.hash(key);
            let shard = store.read(h);
            let Some(e) = shard.get(key, h, ctx.now) else {
                ctx.lookup_stat(false);
                continue;
            };
            ctx.lookup_stat(true);
            merge_into(&mut max, as_hll(e.value())?).map_err(|_| CORRUPTED)?;
        }
        let mut histo = [0u32; 64];
        for &r in max.iter() {
            histo[r as usize] += 1;
        }
        ctx.out.int(estimate(&histo) as i64);
        return Ok(());
    }
    let key = &a[1];
    let h = store.hash(key);
    {
        // The common case: a fresh cached count, answered under the read lock.
        let shard = store.read(h);
        match shard.get(key, h, ctx.now) {
            None => {
                ctx.lookup_stat(false);
                ctx.out.int(0);
                return Ok(());
            }
            Some(e) => {
                let hll = as_hll(e.value())?;
                if cache_valid(hll) {
                    ctx.lookup_stat(true);
                    let card = u64::from_le_bytes(hll[8..16].try_into().unwrap_or_default());
                    ctx.out.int(card as i64);
                    return Ok(());
                }
            }
        }
    }
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        ctx.lookup_stat(false);
        ctx.out.int(0);
        return Ok(());
    };
    ctx.lookup_stat(true);
    let hll = as_hll(e.value())?;
    let card = if cache_valid(hll) {
        u64::from_le_bytes(hll[8..16].try_into().unwrap_or_default())
    } else {
        let card = estimate(&histogram(hll).map_err(|_| CORRUPTED)?);
        // The cache is part of the string: a later GET returns it, as from Redis.
        shard.commit(
            &[Effect::StrWrite {
                key,
                offset: 8,
                bytes: &card.to_le_bytes(),
            }],
            ctx.now,
        )?;
        card
    };
    ctx.out.int(card as i64);
    Ok(())
}

/// `PFMERGE destkey [sourcekey ...]` → `OK`; `destkey` then holds the union of itself
/// and the sources (created when missing, dense when any input is dense).
fn pfmerge(ctx: &mut Ctx, a: Args) -> CmdResult {
    let store = &ctx.srv.store;
    let keys: Vec<(&[u8], KeyHash)> = a.iter().skip(1).map(|k| (k, store.hash(k))).collect();
    let mut multi = store.write_many(keys.iter().map(|&(_, h)| h));
    let mut max = Box::new([0u8; REGISTERS]);
    let mut use_dense = false;
    for &(key, h) in &keys {
        let Some(e) = multi.lookup(key, h, ctx.now) else {
            continue;
        };
        let hll = as_hll(e.value())?;
        use_dense |= hll[4] == DENSE;
        merge_into(&mut max, hll).map_err(|_| CORRUPTED)?;
    }
    let (dst, hd) = keys[0];
    let (old, expire_at) = match multi.get(dst, hd, ctx.now) {
        None => (None, 0),
        // Checked above: the destination is one of the merged HLLs.
        Some(e) => (
            Some(as_hll(e.value())?.to_vec()),
            e.expire_at().unwrap_or(0),
        ),
    };
    let mut hll = old.clone().unwrap_or_else(new_hll);
    if use_dense {
        sparse_to_dense(&mut hll).map_err(|_| CORRUPTED)?;
    }
    for (i, &m) in max.iter().enumerate() {
        if m != 0 {
            // The destination was validated by the merge: this cannot fail.
            raise(&mut hll, i, m).map_err(|_| CORRUPTED)?;
        }
    }
    invalidate_cache(&mut hll);
    store_in_multi(&mut multi, dst, hd, old.as_deref(), hll, expire_at, ctx.now)?;
    ctx.out.ok();
    Ok(())
}

/// [`store_in_shard`] for a multi-shard write.
fn store_in_multi(
    multi: &mut MultiMut<'_>,
    key: &[u8],
    h: KeyHash,
    old: Option<&[u8]>,
    new: Vec<u8>,
    expire_at: u64,
    now: u64,
) -> Result<(), CmdError> {
    match old.and_then(|old| diff_effects(key, old, &new)) {
        Some(effects) if effects.is_empty() => {}
        Some(effects) => {
            multi.commit(&effects, now)?;
        }
        None => {
            multi.put(key, h, Value::bytes(new), expire_at, now)?;
        }
    }
    Ok(())
}

/// `PFDEBUG GETREG|DECODE|ENCODING|TODENSE key` → the registers (converting a sparse
/// HLL to dense), the sparse opcodes as text, `dense`/`sparse`, or 1 when TODENSE
/// converted it (0 when it was dense already).
fn pfdebug(ctx: &mut Ctx, a: Args) -> CmdResult {
    let sub = &a[1];
    let key = &a[2];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let Some(e) = shard.lookup(key, h, ctx.now) else {
        return Err(CmdError::Static("ERR The specified key does not exist"));
    };
    let hll = as_hll(e.value())?;
    let name = String::from_utf8_lossy(sub).into_owned();
    match name.to_ascii_lowercase().as_str() {
        "getreg" | "todense" => {
            let sparse = hll[4] == SPARSE;
            let mut dense = hll.to_vec();
            sparse_to_dense(&mut dense).map_err(|_| CORRUPTED)?;
            if name.eq_ignore_ascii_case("getreg") {
                ctx.out.array(REGISTERS);
                for i in 0..REGISTERS {
                    ctx.out.int(dense_get(&dense[HDR_SIZE..], i) as i64);
                }
            } else {
                ctx.out.int(sparse as i64);
            }
            if sparse {
                let mark = ctx.out.len();
                if let Err(e) = shard.put(key, h, Value::bytes(dense), Expiry::Keep, ctx.now) {
                    ctx.out.truncate(mark);
                    return Err(e.into());
                }
            }
        }
        "decode" => {
            if hll[4] != SPARSE {
                return Err(CmdError::Static("ERR HLL encoding is not sparse"));
            }
            let body = &hll[HDR_SIZE..];
            let mut text = String::new();
            let mut p = 0;
            while p < body.len() {
                let op = body[p];
                if is_zero(op) {
                    text.push_str(&format!("z:{} ", zero_len(op)));
                    p += 1;
                } else if is_xzero(op) {
                    let len = xzero_len(op, body.get(p + 1).copied().unwrap_or(0));
                    text.push_str(&format!("Z:{len} "));
                    p += 2;
                } else {
                    text.push_str(&format!("v:{},{} ", val_value(op), val_len(op)));
                    p += 1;
                }
            }
            ctx.out.bulk(text.trim_matches(' ').as_bytes());
        }
        "encoding" => ctx
            .out
            .simple(if hll[4] == DENSE { "dense" } else { "sparse" }),
        _ => {
            return Err(CmdError::Owned(format!(
                "ERR Unknown PFDEBUG subcommand '{name}'"
            )));
        }
    }
    Ok(())
}

/// `PFSELFTEST` → `OK` after checking the register accessors and that the sparse and
/// dense forms agree and stay within the expected error (Redis's checks, with fewer
/// elements: up to 100,000 rather than 10 million).
fn pfselftest(ctx: &mut Ctx, _a: Args) -> CmdResult {
    selftest().map_err(CmdError::Owned)?;
    ctx.out.ok();
    Ok(())
}

fn selftest() -> Result<(), String> {
    use rand::Rng;
    let mut rng = rand::rng();
    let mut regs = vec![0u8; DENSE_SIZE - HDR_SIZE];
    let mut expected = [0u8; REGISTERS];
    for _ in 0..100 {
        for (i, e) in expected.iter_mut().enumerate() {
            *e = rng.random::<u8>() & REGISTER_MAX;
            dense_set(&mut regs, i, *e);
        }
        for (i, &e) in expected.iter().enumerate() {
            let got = dense_get(&regs, i);
            if got != e {
                return Err(format!(
                    "TESTFAILED Register {i} should be {e} but is {got}"
                ));
            }
        }
    }
    let mut dense = new_hll();
    sparse_to_dense(&mut dense).map_err(|_| "TESTFAILED sparse to dense".to_string())?;
    let mut sparse = new_hll();
    let seed: u64 = rng.random();
    let rel_err = 1.04 / (REGISTERS as f64).sqrt();
    let mut checkpoint = 1u64;
    for j in 1..=100_000u64 {
        let element = (j ^ seed).to_ne_bytes();
        let (index, count) = pattern_len(&element);
        dense_raise(&mut dense[HDR_SIZE..], index, count);
        raise(&mut sparse, index, count).map_err(|_| "TESTFAILED corrupted".to_string())?;
        if j != checkpoint {
            continue;
        }
        if (j as usize) < SPARSE_MAX_BYTES / 2 && sparse[4] != SPARSE {
            return Err("TESTFAILED sparse encoding not used".into());
        }
        let d = estimate(&histogram(&dense).map_err(|_| "TESTFAILED".to_string())?);
        let s = estimate(&histogram(&sparse).map_err(|_| "TESTFAILED".to_string())?);
        if d != s {
            return Err("TESTFAILED dense/sparse disagree".into());
        }
        let abs_err = (checkpoint as i64 - d as i64).unsigned_abs();
        let max_err = if j == 10 {
            1
        } else {
            (rel_err * 6.0 * checkpoint as f64).ceil() as u64
        };
        if abs_err > max_err {
            return Err(format!(
                "TESTFAILED Too big error. card:{checkpoint} abserr:{abs_err}"
            ));
        }
        checkpoint *= 10;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add_all(hll: &mut Vec<u8>, n: u32) {
        for i in 0..n {
            let (index, count) = pattern_len(format!("e{i}").as_bytes());
            raise(hll, index, count).unwrap();
        }
    }

    #[test]
    fn same_bytes_as_redis() {
        // GET of `PFADD ref a b c` on Redis 7, before and after PFCOUNT.
        let mut hll = new_hll();
        for e in [&b"a"[..], b"b", b"c"] {
            let (index, count) = pattern_len(e);
            assert!(raise(&mut hll, index, count).unwrap());
        }
        invalidate_cache(&mut hll);
        let body = b"`\xf3\x80P\xb1\x84K\xfb\x80BZ";
        let mut expected = b"HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80".to_vec();
        expected.extend_from_slice(body);
        assert_eq!(hll, expected);
        assert_eq!(estimate(&histogram(&hll).unwrap()), 3);
    }

    #[test]
    fn sparse_and_dense_agree() {
        let mut sparse = new_hll();
        assert_eq!(sparse.len(), 18);
        add_all(&mut sparse, 200);
        assert_eq!(sparse[4], SPARSE);
        let mut dense = sparse.clone();
        sparse_to_dense(&mut dense).unwrap();
        assert_eq!(dense.len(), DENSE_SIZE);
        assert_eq!(histogram(&sparse).unwrap(), histogram(&dense).unwrap());
        let n = estimate(&histogram(&sparse).unwrap());
        assert!((195..=205).contains(&n), "{n}");
        // Growing past the sparse limit converts.
        add_all(&mut sparse, 5000);
        assert_eq!(sparse[4], DENSE);
        assert!(selftest().is_ok());
    }

    #[test]
    fn empty_and_invalid() {
        let hll = new_hll();
        assert_eq!(estimate(&histogram(&hll).unwrap()), 0);
        let mut bad = hll.clone();
        bad[HDR_SIZE + 1] = 0xfe; // XZERO of 16383 registers: one short
        assert!(histogram(&bad).is_err());
        let mut overflow = hll;
        overflow.extend_from_slice(&[0x00]);
        assert!(histogram(&overflow).is_err());
    }
}

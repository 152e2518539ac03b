//! DUMP and RESTORE.
//!
//! # Payload format
//!
//! DUMP's payload is not Redis's RDB encoding (our values are not Redis's objects); it
//! is framed like it, so that damage and foreign payloads are detected:
//!
//! ```text
//! +----------------------------------+-----------------+--------------------+
//! | value                            | format version  | CRC32C             |
//! | (dse_persist::codec::encode_value)| u16 little-end. | u32 little-endian, |
//! |                                  | (currently 1)   | of all bytes before|
//! +----------------------------------+-----------------+--------------------+
//! ```
//!
//! The value is encoded exactly as snapshots encode it (one type byte, then the string,
//! or the elements with varint lengths), so there is one value format to keep
//! compatible. RESTORE refuses a payload whose checksum does not match or whose version
//! is newer than this server's ("DUMP payload version or checksum are wrong", as Redis
//! answers for a payload from a newer Redis or a damaged one), and one that does not
//! decode to exactly one valid, non-empty value ("Bad data format").

use dse_engine::{Expiry, Value};
use dse_proto::Args;

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("dump", 2, READONLY, dump)
        .keys(1, 1, 1)
        .key_flags(&["RO", "access"])
        .doc(
            "generic",
            "2.6.0",
            "O(1) to access the key and additional O(N*M) to serialize it, where N is the number of Redis objects composing the value and M their average size. For small string values the time complexity is thus O(1)+O(1*M) where M is small, so simply O(1).",
            "Returns a serialized representation of the value stored at a key.",
        ),
    cmd("restore", -4, WRITE | DENYOOM, restore)
        .keys(1, 1, 1)
        .key_flags(&["OW", "update"])
        .doc(
            "generic",
            "2.6.0",
            "O(1) to create the new key and additional O(N*M) to reconstruct the serialized value, where N is the number of Redis objects composing the value and M their average size. For small string values the time complexity is thus O(1)+O(1*M) where M is small, so simply O(1). However for sorted set values the complexity is O(N*M*log(N)) because inserting values into sorted sets is O(log(N)).",
            "Creates a key from the serialized representation of a value.",
        ),
];

/// The payload format this server writes; it reads this one and older ones.
const DUMP_VERSION: u16 = 1;
/// Version and checksum.
const TRAILER: usize = 2 + 4;

const BAD_PAYLOAD: CmdError = CmdError::Static("ERR DUMP payload version or checksum are wrong");
const BAD_DATA: CmdError = CmdError::Static("ERR Bad data format");

/// The DUMP payload of `value`.
pub fn encode_payload(value: &Value) -> Vec<u8> {
    let mut buf = Vec::new();
    dse_persist::codec::encode_value(&mut buf, value);
    buf.extend_from_slice(&DUMP_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

/// Checks the payload's trailer; returns the encoded value.
fn verify_payload(payload: &[u8]) -> Result<&[u8], CmdError> {
    if payload.len() < TRAILER + 1 {
        return Err(BAD_PAYLOAD);
    }
    let (body, crc) = payload.split_at(payload.len() - 4);
    let crc = u32::from_le_bytes(crc.try_into().map_err(|_| BAD_PAYLOAD)?);
    let (value, version) = body.split_at(body.len() - 2);
    let version = u16::from_le_bytes(version.try_into().map_err(|_| BAD_PAYLOAD)?);
    if version == 0 || version > DUMP_VERSION || crc32c::crc32c(body) != crc {
        return Err(BAD_PAYLOAD);
    }
    Ok(value)
}

/// The value a verified payload holds: exactly one value, and no empty collection (a
/// key never holds one).
fn decode_value(encoded: &[u8]) -> Result<Value, CmdError> {
    let mut reader = dse_persist::codec::Reader::new(encoded);
    let value = reader.value().map_err(|_| BAD_DATA)?;
    if !reader.is_empty() {
        return Err(BAD_DATA);
    }
    let empty = match &value {
        Value::List(l) => l.is_empty(),
        Value::Hash(h) => h.is_empty(),
        Value::Set(s) => s.is_empty(),
        Value::ZSet(z) => z.is_empty(),
        Value::Int(_) | Value::Str(_) => false,
    };
    if empty {
        return Err(BAD_DATA);
    }
    Ok(value)
}

/// `DUMP key` → the serialized value (see the module's format), or nil.
fn dump(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    match shard.get(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            ctx.out.null();
        }
        Some(e) => {
            ctx.lookup_stat(true);
            let payload = encode_payload(e.value());
            ctx.out.bulk(&payload);
        }
    }
    Ok(())
}

/// `RESTORE key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ
/// frequency]` → `OK`. `ttl` is in milliseconds (0: none; with ABSTTL a Unix time in
/// ms); a deadline already past creates nothing (and with REPLACE deletes the key).
/// `BUSYKEY` when the key exists without REPLACE. IDLETIME sets the idle time OBJECT
/// IDLETIME reports (unless an LFU policy is set); FREQ is checked and accepted, but
/// access frequencies are not tracked.
fn restore(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (mut replace, mut absttl) = (false, false);
    let mut idle: Option<i64> = None;
    let mut freq: Option<i64> = None;
    let mut j = 4;
    while j < a.len() {
        let more = a.len() - j - 1;
        let arg = &a[j];
        if args::is(arg, "replace") {
            replace = true;
        } else if args::is(arg, "absttl") {
            absttl = true;
        } else if args::is(arg, "idletime") && more >= 1 && freq.is_none() {
            let v = args::int(&a[j + 1])?;
            if v < 0 {
                return Err(CmdError::Static("ERR Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(v);
            j += 1;
        } else if args::is(arg, "freq") && more >= 1 && idle.is_none() {
            let v = args::int(&a[j + 1])?;
            if !(0..=255).contains(&v) {
                return Err(CmdError::Static(
                    "ERR Invalid FREQ value, must be >= 0 and <= 255",
                ));
            }
            freq = Some(v);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let key = &a[1];
    let srv = ctx.srv;
    let h = srv.store.hash(key);
    let mut shard = srv.store.write(h);
    let exists = shard.lookup(key, h, ctx.now).is_some();
    if exists && !replace {
        return Err(CmdError::Static("BUSYKEY Target key name already exists."));
    }
    let ttl = args::int(&a[2])?;
    if ttl < 0 {
        return Err(CmdError::Static("ERR Invalid TTL value, must be >= 0"));
    }
    let value = decode_value(verify_payload(&a[3])?)?;
    let deadline = if ttl == 0 || absttl {
        ttl as u64
    } else {
        (ttl as u64).saturating_add(ctx.now)
    };
    if deadline != 0 && deadline <= ctx.now {
        // Already expired: nothing to create, but REPLACE still removes the old value.
        if exists {
            shard.remove(key, h, ctx.now)?;
        }
        ctx.out.ok();
        return Ok(());
    }
    shard.put(key, h, value, Expiry::At(deadline), ctx.now)?;
    let lfu = srv.runtime.maxmemory_policy.lock().ends_with("-lfu");
    if let Some(idle) = idle
        && !lfu
        && let Some(e) = shard.get(key, h, ctx.now)
    {
        e.set_idle_secs(ctx.now, idle as u64);
    }
    ctx.out.ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_damage_is_caught() {
        let list = Value::List(Box::new(
            [b"a".to_vec(), Vec::new(), vec![0xff; 300]]
                .into_iter()
                .collect(),
        ));
        for value in [Value::Int(-7), Value::bytes(b"hello".to_vec()), list] {
            let payload = encode_payload(&value);
            assert_eq!(
                decode_value(verify_payload(&payload).unwrap()).unwrap(),
                value
            );
            for i in 0..payload.len() {
                let mut bad = payload.clone();
                bad[i] ^= 0x10;
                assert!(verify_payload(&bad).is_err(), "byte {i}");
            }
            for cut in 0..payload.len() {
                assert!(verify_payload(&payload[..cut]).is_err());
            }
        }
        // A newer format is refused even with a good checksum.
        let mut newer = encode_payload(&Value::Int(1));
        newer.truncate(newer.len() - TRAILER);
        newer.extend_from_slice(&(DUMP_VERSION + 1).to_le_bytes());
        let crc = crc32c::crc32c(&newer);
        newer.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(verify_payload(&newer), Err(BAD_PAYLOAD));
        // A good frame around bad data, trailing bytes, or an empty collection.
        for body in [&[0x42u8][..], &[1, 0, 0, 0, 0, 0, 0, 0, 0, 9], &[2, 0]] {
            let mut framed = body.to_vec();
            framed.extend_from_slice(&DUMP_VERSION.to_le_bytes());
            let crc = crc32c::crc32c(&framed);
            framed.extend_from_slice(&crc.to_le_bytes());
            let value = verify_payload(&framed).unwrap();
            assert_eq!(decode_value(value), Err(BAD_DATA), "{body:?}");
        }
    }
}

//! Key slots, exactly as Redis Cluster computes them.

/// Slots in the key space.
pub const SLOTS: usize = 16384;

/// CRC16-CCITT (XModem): polynomial 0x1021, initial value 0, no reflection; the CRC
/// Redis Cluster uses (`crc16("123456789") == 0x31C3`).
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The slot of `key`: CRC16 of the key mod 16384, or of its hash tag, the bytes between
/// the first `{` and the next `}` when that span is not empty (`{user1}.a` and
/// `{user1}.b` share a slot; `{}a` hashes whole).
pub fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|&c| c == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|&c| c == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16(tagged.unwrap_or(key)) % SLOTS as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_reference_values() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        // Values from Redis's documentation of CLUSTER KEYSLOT and its cluster tutorial.
        assert_eq!(key_slot(b"somekey"), 11058);
        assert_eq!(key_slot(b"foo{hash_tag}"), 2515);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn hash_tags() {
        assert_eq!(key_slot(b"{user1}.a"), key_slot(b"user1"));
        assert_eq!(key_slot(b"{user1}.a"), key_slot(b"{user1}.b"));
        assert_eq!(key_slot(b"x{user1}y{z}"), key_slot(b"user1"));
        // An empty tag means no tag: the whole key is hashed.
        assert_eq!(key_slot(b"{}a"), crc16(b"{}a") % 16384);
        // No closing brace: the whole key.
        assert_eq!(key_slot(b"{abc"), crc16(b"{abc") % 16384);
        assert_eq!(key_slot(b"a}{b}"), key_slot(b"b"));
    }
}

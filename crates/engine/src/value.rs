//! Values: the data types a key can hold.

use std::collections::VecDeque;

use foldhash::fast::RandomState;

pub type Bytes = Box<[u8]>;

/// What a key holds. Collections are boxed and short strings kept in place so the enum
/// stays at 24 bytes: most keys are strings, and every entry pays for the largest variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string that is the canonical decimal form of an `i64` (Redis's `int` encoding):
    /// eight bytes instead of a heap buffer, and INCR without parsing.
    Int(i64),
    Str(Str),
    List(Box<VecDeque<Vec<u8>>>),
    Hash(Box<hashbrown::HashMap<Bytes, Vec<u8>, RandomState>>),
    Set(Box<crate::set::SetMembers>),
    ZSet(Box<ZSet>),
}

/// Bytes a [`Str`] keeps in place, without an allocation.
pub const STR_INLINE: usize = 22;

/// A string value. Up to [`STR_INLINE`] bytes live inside the value itself (no
/// allocation, and no pointer to chase on GET: most values are that short); longer ones
/// live on the heap with room to grow, as APPEND, SETRANGE and SETBIT want. The two
/// forms compare equal when their bytes do.
#[derive(Clone)]
pub enum Str {
    Inline {
        len: u8,
        buf: [u8; STR_INLINE],
    },
    /// Boxed so that the heap form is one pointer and the enum stays at 24 bytes.
    Heap(Box<Vec<u8>>),
}

impl Str {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Str::Inline { len, buf } => &buf[..*len as usize],
            Str::Heap(v) => v,
        }
    }

    /// The bytes as a growable vector, moving them to the heap first if they were kept
    /// in place.
    pub fn make_mut(&mut self) -> &mut Vec<u8> {
        if let Str::Inline { .. } = self {
            *self = Str::Heap(Box::new(self.as_slice().to_vec()));
        }
        match self {
            Str::Heap(v) => v,
            Str::Inline { .. } => unreachable!("moved to the heap above"),
        }
    }

    /// Heap bytes owned (the vector's header and its capacity); 0 when kept in place.
    pub fn heap_size(&self) -> usize {
        match self {
            Str::Inline { .. } => 0,
            Str::Heap(v) => std::mem::size_of::<Vec<u8>>() + v.capacity(),
        }
    }
}

impl From<&[u8]> for Str {
    fn from(bytes: &[u8]) -> Str {
        if bytes.len() <= STR_INLINE {
            let mut buf = [0; STR_INLINE];
            buf[..bytes.len()].copy_from_slice(bytes);
            Str::Inline {
                len: bytes.len() as u8,
                buf,
            }
        } else {
            Str::Heap(Box::new(bytes.to_vec()))
        }
    }
}

impl From<Vec<u8>> for Str {
    fn from(v: Vec<u8>) -> Str {
        if v.len() <= STR_INLINE {
            Str::from(v.as_slice())
        } else {
            Str::Heap(Box::new(v))
        }
    }
}

impl std::ops::Deref for Str {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Str {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Str {
    fn eq(&self, other: &Str) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl std::fmt::Debug for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_slice()))
    }
}

/// A sorted set: members ordered by (score, member), with a map for score lookups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ZSet {
    pub scores: hashbrown::HashMap<Bytes, f64, RandomState>,
    pub ordered: crate::zset::ZOrder,
}

/// An entry of a sorted set's order. Scores are never NaN, so the order is total.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredMember {
    pub score: f64,
    pub member: Bytes,
}

impl Eq for ScoredMember {}

impl PartialOrd for ScoredMember {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ScoredMember {
    /// Scores compare as numbers (-0 equals 0, as in Redis's skiplist), then members.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| self.member.cmp(&other.member))
    }
}

/// Redis keeps strings up to this length in one allocation with their header ("embstr").
const EMBSTR_MAX: usize = 44;
/// Collections up to this many elements report the compact encodings Redis uses for them.
const SMALL_COLLECTION: usize = 128;

impl Value {
    /// A string value, integer-encoded when it is a canonical `i64`.
    pub fn string(bytes: &[u8]) -> Value {
        match parse_canonical_i64(bytes) {
            Some(n) => Value::Int(n),
            None => Value::Str(Str::from(bytes)),
        }
    }

    /// A byte string as it is, never integer-encoded.
    pub fn bytes(bytes: impl Into<Str>) -> Value {
        Value::Str(bytes.into())
    }

    /// A string value built from pieces, without joining them first when the result is
    /// not an integer.
    pub fn string_from_parts(parts: &[&[u8]]) -> Value {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= 20 {
            let mut buf = [0u8; 20];
            let mut at = 0;
            for p in parts {
                buf[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            return Value::string(&buf[..len]);
        }
        if len <= STR_INLINE {
            let mut buf = [0u8; STR_INLINE];
            let mut at = 0;
            for p in parts {
                buf[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
            return Value::Str(Str::from(&buf[..len]));
        }
        let mut v = Vec::with_capacity(len);
        for p in parts {
            v.extend_from_slice(p);
        }
        Value::Str(Str::Heap(Box::new(v)))
    }

    /// The name TYPE answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) | Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Hash(_) => "hash",
            Value::Set(_) => "set",
            Value::ZSet(_) => "zset",
        }
    }

    /// The name OBJECT ENCODING answers (Redis 7's names for the same sizes).
    pub fn encoding(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Str(s) if s.len() <= EMBSTR_MAX => "embstr",
            Value::Str(_) => "raw",
            Value::List(l) if l.len() <= SMALL_COLLECTION => "listpack",
            Value::List(_) => "quicklist",
            Value::Hash(h) if h.len() <= SMALL_COLLECTION => "listpack",
            Value::Hash(_) => "hashtable",
            Value::Set(s)
                if s.len() <= 512 && s.iter().all(|m| parse_canonical_i64(m).is_some()) =>
            {
                "intset"
            }
            Value::Set(s) if s.len() <= SMALL_COLLECTION => "listpack",
            Value::Set(_) => "hashtable",
            Value::ZSet(z) if z.scores.len() <= SMALL_COLLECTION => "listpack",
            Value::ZSet(_) => "skiplist",
        }
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Str(_))
    }

    /// Length of the string form (STRLEN), `None` for other types.
    pub fn string_len(&self) -> Option<usize> {
        match self {
            Value::Int(n) => Some(itoa::Buffer::new().format(*n).len()),
            Value::Str(s) => Some(s.len()),
            _ => None,
        }
    }

    /// Calls `f` with the string form, `None` for other types. Integers are formatted on
    /// the stack.
    pub fn with_str<R>(&self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match self {
            Value::Int(n) => Some(f(itoa::Buffer::new().format(*n).as_bytes())),
            Value::Str(s) => Some(f(s)),
            _ => None,
        }
    }

    /// Heap bytes owned by the value, for memory accounting (an estimate for
    /// collections: element payloads plus a per-element overhead).
    pub fn heap_size(&self) -> usize {
        const ELEM: usize = 32;
        match self {
            Value::Int(_) => 0,
            Value::Str(s) => s.heap_size(),
            Value::List(l) => l.iter().map(|e| e.capacity() + ELEM).sum(),
            Value::Hash(h) => h.iter().map(|(k, v)| k.len() + v.capacity() + ELEM).sum(),
            Value::Set(s) => s.iter().map(|m| crate::set::member_cost(m)).sum(),
            Value::ZSet(z) => z.scores.keys().map(|m| crate::zset::member_cost(m)).sum(),
        }
    }
}

/// Parses a string that is exactly the canonical decimal form of an `i64`: an optional
/// '-', no leading zeros, no '+', no spaces (Redis's `string2ll`). Values that round-trip
/// through this are safe to store as [`Value::Int`].
pub fn parse_canonical_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = (d - b'0') as i64;
        n = if neg {
            n.checked_mul(10)?.checked_sub(d)?
        } else {
            n.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_integers() {
        for ok in [
            "0",
            "1",
            "-1",
            "9223372036854775807",
            "-9223372036854775808",
            "120",
        ] {
            assert_eq!(
                parse_canonical_i64(ok.as_bytes()).map(|n| n.to_string()),
                Some(ok.to_string())
            );
        }
        for bad in [
            "",
            "-0",
            "01",
            "+1",
            " 1",
            "1 ",
            "9223372036854775808",
            "1.0",
            "-",
        ] {
            assert_eq!(parse_canonical_i64(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn value_is_small() {
        // Every entry of the store holds one: 24 bytes keeps the entry at 48.
        assert_eq!(std::mem::size_of::<Value>(), 24);
    }

    #[test]
    fn strings_stay_in_place_until_they_grow() {
        let short = Value::string(b"sixteen-byte-val");
        assert!(matches!(&short, Value::Str(Str::Inline { .. })));
        assert_eq!(short.heap_size(), 0);
        let long = Value::string(&[b'x'; 23]);
        assert!(matches!(&long, Value::Str(Str::Heap(_))));
        assert_eq!(
            Value::string_from_parts(&[b"ab", b"cd"]),
            Value::bytes(&b"abcd"[..])
        );
        let mut s = Str::from(&b"abc"[..]);
        s.make_mut().extend_from_slice(b"def");
        assert_eq!(s, Str::from(&b"abcdef"[..]));
        assert_eq!(&*s, b"abcdef");
    }
}

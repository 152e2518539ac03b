//! Applying the hash effects ([`Effect::HashSet`], [`Effect::HashDel`]) to a hash value.
//!
//! Each function changes the hash in place and returns the change of
//! [`Value::heap_size`] it made, so the shard adjusts its memory count by the delta
//! instead of re-measuring the whole hash. A value of another type is left alone.
//!
//! [`Effect::HashSet`]: crate::Effect::HashSet
//! [`Effect::HashDel`]: crate::Effect::HashDel

use crate::Value;
use crate::list::ELEM_OVERHEAD;

/// A new, empty hash (the value `HashSet` creates on a missing key).
pub(crate) fn empty() -> Value {
    Value::Hash(Box::default())
}

/// What one field adds to [`Value::heap_size`].
fn size_of(field: &[u8], value: &Vec<u8>) -> isize {
    (field.len() + value.capacity() + ELEM_OVERHEAD) as isize
}

/// Sets each field to its value, in order (a field given twice ends with the last value).
pub(crate) fn set(v: &mut Value, pairs: &[(&[u8], &[u8])]) -> isize {
    let Value::Hash(h) = v else { return 0 };
    let mut delta = 0;
    for &(field, value) in pairs {
        let new = value.to_vec();
        delta += size_of(field, &new);
        match h.get_mut(field) {
            Some(old) => {
                delta -= size_of(field, old);
                *old = new;
            }
            None => {
                h.insert(field.into(), new);
            }
        }
    }
    delta
}

/// Removes the fields that exist.
pub(crate) fn del(v: &mut Value, fields: &[&[u8]]) -> isize {
    let Value::Hash(h) = v else { return 0 };
    let mut freed = 0;
    for &field in fields {
        if let Some(old) = h.remove(field) {
            freed += size_of(field, &old);
        }
    }
    -freed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_match_heap_size() {
        let mut v = empty();
        let mut mem = v.heap_size() as isize;
        let mut check = |v: &mut Value, delta: isize| {
            mem += delta;
            assert_eq!(mem, v.heap_size() as isize);
        };
        let d = set(
            &mut v,
            &[(b"a", b"1"), (b"bb", b"22"), (b"a", b"longer value")],
        );
        check(&mut v, d);
        let d = set(&mut v, &[(b"bb", b""), (b"c", b"3")]);
        check(&mut v, d);
        let d = del(&mut v, &[b"a", b"zz", b"a"]);
        check(&mut v, d);
        let Value::Hash(h) = &v else { panic!() };
        let mut fields: Vec<_> = h.iter().map(|(k, v)| (k.to_vec(), v.clone())).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                (b"bb".to_vec(), b"".to_vec()),
                (b"c".to_vec(), b"3".to_vec())
            ]
        );
        let d = del(&mut v, &[b"bb", b"c"]);
        check(&mut v, d);
        assert_eq!(v.heap_size(), 0);
    }

    #[test]
    fn other_types_are_left_alone() {
        let mut v = Value::bytes(b"s".to_vec());
        assert_eq!(set(&mut v, &[(b"f", b"v")]), 0);
        assert_eq!(del(&mut v, &[b"f"]), 0);
        assert_eq!(v, Value::bytes(b"s".to_vec()));
    }
}

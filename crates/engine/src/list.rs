//! Applying the list effects ([`Effect::ListPush`] and the others) to a list value.
//!
//! Each function changes the list in place and returns the change of
//! [`Value::heap_size`] it made, so the shard adjusts its memory count by the delta
//! instead of re-measuring the whole list. A value of another type is left alone (the
//! command checked the type before logging the effect).
//!
//! [`Effect::ListPush`]: crate::Effect::ListPush

use std::collections::VecDeque;

use crate::Value;

/// Heap bytes [`Value::heap_size`] counts per element beyond its payload.
pub(crate) const ELEM_OVERHEAD: usize = 32;

/// A new, empty list (the value a push creates on a missing key).
pub(crate) fn empty() -> Value {
    Value::List(Box::default())
}

/// What one element adds to [`Value::heap_size`].
fn size_of(e: &Vec<u8>) -> isize {
    (e.capacity() + ELEM_OVERHEAD) as isize
}

fn list(v: &mut Value) -> Option<&mut VecDeque<Vec<u8>>> {
    match v {
        Value::List(l) => Some(l),
        _ => None,
    }
}

/// Pushes `items` one at a time at the head (`left`) or the tail.
pub(crate) fn push(v: &mut Value, left: bool, items: &[&[u8]]) -> isize {
    let Some(l) = list(v) else { return 0 };
    l.reserve(items.len());
    let mut delta = 0;
    for item in items {
        let e = item.to_vec();
        delta += size_of(&e);
        if left {
            l.push_front(e);
        } else {
            l.push_back(e);
        }
    }
    delta
}

/// Removes up to `count` elements from the head (`left`) or the tail.
pub(crate) fn pop(v: &mut Value, left: bool, count: u64) -> isize {
    let Some(l) = list(v) else { return 0 };
    let n = usize::try_from(count).unwrap_or(usize::MAX).min(l.len());
    let removed: isize = if left {
        l.drain(..n).map(|e| size_of(&e)).sum()
    } else {
        l.drain(l.len() - n..).map(|e| size_of(&e)).sum()
    };
    -removed
}

/// Replaces the element at `index`; nothing when out of range.
pub(crate) fn set(v: &mut Value, index: u64, value: &[u8]) -> isize {
    let Some(slot) = list(v).and_then(|l| l.get_mut(usize::try_from(index).ok()?)) else {
        return 0;
    };
    let before = size_of(slot);
    *slot = value.to_vec();
    size_of(slot) - before
}

/// Inserts `value` at `index` (clamped to the length).
pub(crate) fn insert(v: &mut Value, index: u64, value: &[u8]) -> isize {
    let Some(l) = list(v) else { return 0 };
    let at = usize::try_from(index).unwrap_or(usize::MAX).min(l.len());
    let e = value.to_vec();
    let delta = size_of(&e);
    l.insert(at, e);
    delta
}

/// Removes elements equal to `value`: the first `count` from the head when positive, the
/// last `-count` from the tail when negative, all when 0 (LREM).
pub(crate) fn remove(v: &mut Value, value: &[u8], count: i64) -> isize {
    let Some(l) = list(v) else { return 0 };
    let limit = if count == 0 {
        usize::MAX
    } else {
        usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
    };
    let mut removed = 0usize;
    let mut freed = 0isize;
    if count >= 0 {
        l.retain(|e| {
            if removed < limit && e.as_slice() == value {
                removed += 1;
                freed += size_of(e);
                false
            } else {
                true
            }
        });
    } else {
        // From the tail: find the positions first, then keep everything else in order.
        let mut doomed = Vec::new();
        for (i, e) in l.iter().enumerate().rev() {
            if doomed.len() == limit {
                break;
            }
            if e.as_slice() == value {
                doomed.push(i);
            }
        }
        if doomed.is_empty() {
            return 0;
        }
        let mut next = doomed.pop();
        let mut i = 0;
        l.retain(|e| {
            let drop = next == Some(i);
            if drop {
                freed += size_of(e);
                next = doomed.pop();
            }
            i += 1;
            !drop
        });
    }
    -freed
}

/// Removes `head` elements from the head and `tail` from the tail.
pub(crate) fn trim(v: &mut Value, head: u64, tail: u64) -> isize {
    let Some(l) = list(v) else { return 0 };
    let head = usize::try_from(head).unwrap_or(usize::MAX).min(l.len());
    let mut freed: isize = l.drain(..head).map(|e| size_of(&e)).sum();
    let tail = usize::try_from(tail).unwrap_or(usize::MAX).min(l.len());
    freed += l
        .drain(l.len() - tail..)
        .map(|e| size_of(&e))
        .sum::<isize>();
    -freed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: &Value) -> Vec<&[u8]> {
        match v {
            Value::List(l) => l.iter().map(|e| e.as_slice()).collect(),
            _ => panic!("not a list"),
        }
    }

    /// Every operation reports exactly the change of `heap_size`, so a shard's count never
    /// drifts from what removing the key subtracts.
    #[test]
    fn deltas_match_heap_size() {
        let mut v = empty();
        let mut mem = v.heap_size() as isize;
        let mut check = |v: &mut Value, delta: isize| {
            mem += delta;
            assert_eq!(mem, v.heap_size() as isize);
        };
        let d = push(&mut v, false, &[b"a", b"bb", b"", b"a", b"ccc", b"a"]);
        check(&mut v, d);
        let d = push(&mut v, true, &[b"x", b"y"]);
        check(&mut v, d);
        assert_eq!(
            items(&v),
            [&b"y"[..], b"x", b"a", b"bb", b"", b"a", b"ccc", b"a"]
        );
        let d = set(&mut v, 2, b"a longer element than before");
        check(&mut v, d);
        let d = set(&mut v, 2, b"a");
        check(&mut v, d);
        assert_eq!(set(&mut v, 99, b"out of range"), 0);
        let d = insert(&mut v, 1, b"ins");
        check(&mut v, d);
        assert_eq!(
            items(&v),
            [
                &b"y"[..],
                b"ins",
                b"x",
                b"a",
                b"bb",
                b"",
                b"a",
                b"ccc",
                b"a"
            ]
        );
        let d = remove(&mut v, b"a", -2);
        check(&mut v, d);
        assert_eq!(
            items(&v),
            [&b"y"[..], b"ins", b"x", b"a", b"bb", b"", b"ccc"]
        );
        let d = remove(&mut v, b"x", 0);
        check(&mut v, d);
        let d = pop(&mut v, true, 2);
        check(&mut v, d);
        assert_eq!(items(&v), [&b"a"[..], b"bb", b"", b"ccc"]);
        let d = pop(&mut v, false, 1);
        check(&mut v, d);
        let d = trim(&mut v, 1, 1);
        check(&mut v, d);
        assert_eq!(items(&v), [&b"bb"[..]]);
        let d = pop(&mut v, false, u64::MAX);
        check(&mut v, d);
        assert!(items(&v).is_empty());
    }

    #[test]
    fn remove_counts_from_either_end() {
        let start = || {
            let mut v = empty();
            push(&mut v, false, &[b"a", b"b", b"a", b"c", b"a"]);
            v
        };
        let mut v = start();
        remove(&mut v, b"a", 2);
        assert_eq!(items(&v), [&b"b"[..], b"c", b"a"]);
        let mut v = start();
        remove(&mut v, b"a", -1);
        assert_eq!(items(&v), [&b"a"[..], b"b", b"a", b"c"]);
        let mut v = start();
        remove(&mut v, b"a", i64::MIN);
        assert_eq!(items(&v), [&b"b"[..], b"c"]);
        let mut v = start();
        assert_eq!(remove(&mut v, b"z", 0), 0);
        assert_eq!(items(&v).len(), 5);
    }

    /// Through the store: a push creates the key, writes keep its deadline, emptying it
    /// deletes it, and the memory count ends where it started.
    #[test]
    fn effects_through_the_store() {
        use crate::{Effect, Expiry, Store};
        let st = Store::new(4);
        let h = st.hash(b"l");
        let list = |st: &Store| {
            st.read(h).get(b"l", h, 0).map(|e| {
                (
                    items(e.value())
                        .iter()
                        .map(|i| i.to_vec())
                        .collect::<Vec<_>>(),
                    e.expire_at(),
                )
            })
        };
        let commit = |e: Effect<'_>| st.write(h).commit(&[e], 0).unwrap();
        commit(Effect::ListPop {
            key: b"l",
            left: true,
            count: 1,
        });
        assert_eq!(list(&st), None);
        commit(Effect::ListPush {
            key: b"l",
            left: false,
            items: &[b"a", b"b", b"c"],
        });
        st.write(h).set_expire(b"l", h, 5000, 0).unwrap();
        commit(Effect::ListPush {
            key: b"l",
            left: true,
            items: &[b"z"],
        });
        commit(Effect::ListInsert {
            key: b"l",
            index: 2,
            value: b"i",
        });
        commit(Effect::ListSet {
            key: b"l",
            index: 0,
            value: b"Z",
        });
        commit(Effect::ListRemove {
            key: b"l",
            value: b"b",
            count: 0,
        });
        assert_eq!(
            list(&st),
            Some((
                vec![b"Z".to_vec(), b"a".to_vec(), b"i".to_vec(), b"c".to_vec()],
                Some(5000)
            ))
        );
        commit(Effect::ListTrim {
            key: b"l",
            head: 1,
            tail: 1,
        });
        commit(Effect::ListPop {
            key: b"l",
            left: false,
            count: 1,
        });
        assert_eq!(list(&st), Some((vec![b"a".to_vec()], Some(5000))));
        commit(Effect::ListTrim {
            key: b"l",
            head: 5,
            tail: 0,
        });
        assert_eq!(list(&st), None);
        assert_eq!(st.stats().dataset, 0);
        assert_eq!(st.stats().volatile, 0);
        // An empty push on a missing key creates nothing.
        commit(Effect::ListPush {
            key: b"l",
            left: true,
            items: &[],
        });
        assert_eq!(st.stats().keys, 0);
        // A string is left alone by list effects.
        st.write(h).put_str(b"l", h, b"s", Expiry::None, 0).unwrap();
        commit(Effect::ListPush {
            key: b"l",
            left: true,
            items: &[b"x"],
        });
        assert_eq!(
            st.read(h).get(b"l", h, 0).unwrap().value(),
            &Value::bytes(b"s".to_vec())
        );
    }

    #[test]
    fn multi_lookup_removes_an_expired_key() {
        use crate::{Effect, Expiry, Store};
        let st = Store::new(4);
        let (ha, hb) = (st.hash(b"a"), st.hash(b"b"));
        st.write(ha)
            .put(b"a", ha, empty_with(&[b"old"]), Expiry::At(100), 0)
            .unwrap();
        let mut m = st.write_many([ha, hb]);
        assert!(m.lookup(b"a", ha, 100).is_none());
        m.commit(
            &[Effect::ListPush {
                key: b"a",
                left: true,
                items: &[b"new"],
            }],
            100,
        )
        .unwrap();
        let e = m.get(b"a", ha, 100).unwrap();
        assert_eq!(items(e.value()), [&b"new"[..]]);
        assert_eq!(e.expire_at(), None);
    }

    fn empty_with(elems: &[&[u8]]) -> Value {
        let mut v = empty();
        push(&mut v, false, elems);
        v
    }

    #[test]
    fn other_types_are_left_alone() {
        let mut v = Value::Int(5);
        assert_eq!(push(&mut v, true, &[b"a"]), 0);
        assert_eq!(pop(&mut v, true, 1), 0);
        assert_eq!(trim(&mut v, 1, 1), 0);
        assert_eq!(v, Value::Int(5));
    }
}

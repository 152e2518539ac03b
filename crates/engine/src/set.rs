//! Sets: the application of the set effects.

use crate::value::Value;

/// Heap bytes a set member is accounted for (its bytes plus per-entry overhead).
/// [`Value::heap_size`] and the effects agree on it.
pub fn member_cost(member: &[u8]) -> usize {
    member.len() + 32
}

/// Applies [`crate::Effect::SetAdd`] to the value of its key (a new empty set when the
/// key was missing). Returns the change of the accounted heap bytes.
pub(crate) fn apply_add(value: &mut Value, members: &[&[u8]]) -> isize {
    let mut delta = 0;
    if !matches!(value, Value::Set(_)) {
        // Commands check types first; converge anyway rather than panic on replay.
        delta -= value.heap_size() as isize;
        *value = Value::Set(Box::default());
    }
    let Value::Set(s) = value else {
        unreachable!("converted above")
    };
    for &m in members {
        if !s.contains(m) {
            s.insert(m.into());
            delta += member_cost(m) as isize;
        }
    }
    delta
}

/// Applies [`crate::Effect::SetRem`]. Returns the change of the accounted heap bytes.
pub(crate) fn apply_rem(value: &mut Value, members: &[&[u8]]) -> isize {
    let Value::Set(s) = value else {
        return 0;
    };
    let mut delta = 0;
    for &m in members {
        if s.remove(m) {
            delta -= member_cost(m) as isize;
        }
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounting_matches_heap_size() {
        let mut v = Value::Set(Box::default());
        let mut total = apply_add(&mut v, &[b"a", b"bb", b"a"]);
        assert_eq!(total as usize, v.heap_size());
        total += apply_rem(&mut v, &[b"a", b"zz"]);
        assert_eq!(total as usize, v.heap_size());
        let Value::Set(s) = &v else { panic!() };
        assert!(s.contains(&b"bb"[..]) && s.len() == 1);
    }
}

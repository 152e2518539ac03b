//! Sets: [`SetMembers`], the members of a set value, and the application of the set
//! effects.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;

use crate::value::{Bytes, Value};

/// The members of a set: a hash table that, unlike `hashbrown::HashSet`, exposes its
/// buckets, so a random member (SPOP, SRANDMEMBER) costs a few probes instead of a walk
/// (`HashSet::iter().nth(k)` took 0.7 ms on a million members).
#[derive(Clone, Default)]
pub struct SetMembers {
    table: HashTable<Bytes>,
    hasher: RandomState,
}

/// Random probes before falling back to a walk; the table is kept at least 1/8 full, so
/// 64 probes all miss with a probability of (7/8)^64 < 0.0002.
const RANDOM_PROBES: usize = 64;
/// Tables with fewer buckets are not shrunk.
const MIN_SHRINK_BUCKETS: usize = 64;

impl SetMembers {
    pub fn with_capacity(n: usize) -> SetMembers {
        SetMembers {
            table: HashTable::with_capacity(n),
            hasher: RandomState::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Bytes> + '_ {
        self.table.iter()
    }

    fn hash(&self, member: &[u8]) -> u64 {
        self.hasher.hash_one(member)
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.table
            .find(self.hash(member), |m| &m[..] == member)
            .is_some()
    }

    /// Adds a member; false when it was already there.
    pub fn insert(&mut self, member: Bytes) -> bool {
        let hasher = &self.hasher;
        match self.table.entry(
            hasher.hash_one(&member[..]),
            |m| m[..] == member[..],
            |m| hasher.hash_one(&m[..]),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(member);
                true
            }
        }
    }

    /// Removes a member; false when it was not there. The table shrinks when it falls
    /// below 1/8 full, which keeps [`SetMembers::random`] quick.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        let Ok(entry) = self
            .table
            .find_entry(self.hash(member), |m| &m[..] == member)
        else {
            return false;
        };
        entry.remove();
        let buckets = self.table.num_buckets();
        if buckets > MIN_SHRINK_BUCKETS && self.table.len() * 8 < buckets {
            let hasher = &self.hasher;
            self.table
                .shrink_to(self.table.len() * 2, |m| hasher.hash_one(&m[..]));
        }
        true
    }

    /// A member chosen uniformly at random, `below(n)` being a random number below `n`.
    pub fn random(&self, mut below: impl FnMut(usize) -> usize) -> Option<&Bytes> {
        if self.is_empty() {
            return None;
        }
        let buckets = self.table.num_buckets();
        for _ in 0..RANDOM_PROBES {
            if let Some(m) = self.table.get_bucket(below(buckets)) {
                return Some(m);
            }
        }
        self.iter().nth(below(self.len()))
    }
}

impl FromIterator<Bytes> for SetMembers {
    fn from_iter<I: IntoIterator<Item = Bytes>>(iter: I) -> Self {
        let iter = iter.into_iter();
        let mut s = SetMembers::with_capacity(iter.size_hint().0);
        for m in iter {
            s.insert(m);
        }
        s
    }
}

impl<'a> IntoIterator for &'a SetMembers {
    type Item = &'a Bytes;
    type IntoIter = hashbrown::hash_table::Iter<'a, Bytes>;

    fn into_iter(self) -> Self::IntoIter {
        self.table.iter()
    }
}

impl PartialEq for SetMembers {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|m| other.contains(m))
    }
}

impl std::fmt::Debug for SetMembers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

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
        if !s.contains(m) && s.insert(m.into()) {
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

    #[test]
    fn members_insert_remove_random_and_shrink() {
        let mut s = SetMembers::default();
        assert!(s.random(|n| n - 1).is_none());
        for i in 0..10_000 {
            assert!(s.insert(format!("m{i}").into_bytes().into()));
        }
        assert!(!s.insert(b"m5".to_vec().into()));
        assert_eq!(s.len(), 10_000);
        let grown = s.table.num_buckets();
        let mut x: u64 = 99;
        let mut below = |n: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        };
        // Every member is reachable at random, and only members come out.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200_000 {
            let m = s.random(&mut below).unwrap();
            assert!(s.contains(m));
            seen.insert(m.clone());
        }
        assert_eq!(seen.len(), 10_000);
        for i in 0..9_990 {
            assert!(s.remove(format!("m{i}").as_bytes()));
        }
        assert!(!s.remove(b"m0"));
        assert!(s.table.num_buckets() < grown / 100, "the table shrank");
        // 500 draws miss one of 10 members with probability 10 * 0.9^500 < 1e-21.
        let left: std::collections::HashSet<Bytes> = (0..500)
            .filter_map(|_| s.random(&mut below).cloned())
            .collect();
        assert_eq!(left.len(), 10);
        let copy: SetMembers = s.iter().cloned().collect();
        assert_eq!(copy, s);
    }
}

//! Sorted sets: the rank-indexed order behind [`ZSet`], and the application of the
//! sorted-set effects.
//!
//! A sorted set is a map from member to score plus [`ZOrder`], the members in (score,
//! member) order. `ZOrder` keeps them in sorted blocks of at most [`BLOCK_MAX`] entries
//! with a Fenwick tree over the block lengths, so that finding an entry by rank (ZRANGE
//! 1000000 1000010) or the rank of an entry (ZRANK) is O(log n) instead of a walk: on a
//! million members a `BTreeSet` walk took 17 ms per ZRANK, under the shard's lock.

use std::cmp::Ordering;

use crate::value::{Bytes, ScoredMember, Value, ZSet};

/// A block is split in two when it grows past this many entries.
const BLOCK_MAX: usize = 256;
/// A block is merged with a neighbour when it shrinks below this many entries.
const BLOCK_MIN: usize = 64;

/// Heap bytes a sorted-set member is accounted for (its bytes in the map and in the
/// order, plus per-entry overhead). [`Value::heap_size`] and the effects agree on it.
pub fn member_cost(member: &[u8]) -> usize {
    2 * member.len() + 64
}

/// Orders an entry against a (score, member) key. Scores compare as numbers, so -0 and
/// 0 are equal and tie on the member, as in Redis's skiplist.
fn cmp_key(e: &ScoredMember, score: f64, member: &[u8]) -> Ordering {
    e.score
        .partial_cmp(&score)
        .unwrap_or(Ordering::Equal)
        .then_with(|| e.member[..].cmp(member))
}

/// The members of a sorted set in (score, member) order, indexed by rank.
#[derive(Clone, Default)]
pub struct ZOrder {
    /// Non-empty sorted runs; every entry of a block sorts before every entry of the next.
    blocks: Vec<Vec<ScoredMember>>,
    /// Fenwick tree over the block lengths (1-based: `tree[i]` covers blocks
    /// `i - lowbit(i) .. i`).
    tree: Vec<usize>,
    len: usize,
}

impl std::fmt::Debug for ZOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for ZOrder {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl ZOrder {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, lowest first (reversible).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &ScoredMember> + '_ {
        self.blocks.iter().flatten()
    }

    pub fn first(&self) -> Option<&ScoredMember> {
        self.blocks.first().and_then(|b| b.first())
    }

    pub fn last(&self) -> Option<&ScoredMember> {
        self.blocks.last().and_then(|b| b.last())
    }

    /// The entry at 0-based `rank`.
    pub fn get(&self, rank: usize) -> Option<&ScoredMember> {
        let (b, off) = self.locate(rank)?;
        Some(&self.blocks[b][off])
    }

    /// The entries from `rank` on, upwards.
    pub fn iter_from(&self, rank: usize) -> impl Iterator<Item = &ScoredMember> + '_ {
        let (head, rest): (&[ScoredMember], &[Vec<ScoredMember>]) = match self.locate(rank) {
            Some((b, off)) => (&self.blocks[b][off..], &self.blocks[b + 1..]),
            None => (&[], &[]),
        };
        head.iter().chain(rest.iter().flatten())
    }

    /// The entries from `rank` (included) down to the lowest.
    pub fn iter_down_from(&self, rank: usize) -> impl Iterator<Item = &ScoredMember> + '_ {
        let (head, rest): (&[ScoredMember], &[Vec<ScoredMember>]) = match self.locate(rank) {
            Some((b, off)) => (&self.blocks[b][..=off], &self.blocks[..b]),
            None => (&[], &[]),
        };
        head.iter()
            .rev()
            .chain(rest.iter().rev().flat_map(|b| b.iter().rev()))
    }

    /// The number of leading entries for which `pred` holds; `pred` must hold for a
    /// prefix of the order (like `slice::partition_point`).
    pub fn partition_point(&self, mut pred: impl FnMut(&ScoredMember) -> bool) -> usize {
        let b = self.blocks.partition_point(|blk| pred(&blk[blk.len() - 1]));
        if b == self.blocks.len() {
            return self.len;
        }
        self.prefix(b) + self.blocks[b].partition_point(pred)
    }

    /// The 0-based rank of the entry (score, member), if present.
    pub fn rank_of(&self, score: f64, member: &[u8]) -> Option<usize> {
        let (b, pos) = self.find(score, member)?;
        Some(self.prefix(b) + pos)
    }

    /// Inserts an entry; false (and nothing changes) when an equal entry is present.
    pub fn insert(&mut self, entry: ScoredMember) -> bool {
        if self.blocks.is_empty() {
            self.blocks.push(vec![entry]);
            self.len = 1;
            self.rebuild();
            return true;
        }
        let (score, member) = (entry.score, &entry.member[..]);
        let b = self
            .blocks
            .partition_point(|blk| cmp_key(&blk[blk.len() - 1], score, member).is_lt())
            .min(self.blocks.len() - 1);
        let pos = match self.blocks[b].binary_search_by(|e| cmp_key(e, score, member)) {
            Ok(_) => return false,
            Err(pos) => pos,
        };
        self.blocks[b].insert(pos, entry);
        self.len += 1;
        if self.blocks[b].len() <= BLOCK_MAX {
            self.add(b, 1);
            return true;
        }
        let last = b + 1 == self.blocks.len();
        // Entries arriving in order (a snapshot loading, a stored result) fill blocks
        // up; elsewhere a full block splits in halves.
        let at = if last && pos == BLOCK_MAX {
            BLOCK_MAX
        } else {
            BLOCK_MAX / 2
        };
        let tail = self.blocks[b].split_off(at);
        if last {
            // A block appended at the end extends the tree in O(log n).
            self.add(b, 1 - tail.len() as isize);
            self.blocks.push(tail);
            self.push_tree_entry();
        } else {
            self.blocks.insert(b + 1, tail);
            self.rebuild();
        }
        true
    }

    /// Removes the entry (score, member) and returns it.
    pub fn remove(&mut self, score: f64, member: &[u8]) -> Option<ScoredMember> {
        let (b, pos) = self.find(score, member)?;
        let entry = self.blocks[b].remove(pos);
        self.len -= 1;
        if self.blocks[b].is_empty() {
            self.blocks.remove(b);
            self.rebuild();
        } else if self.blocks[b].len() < BLOCK_MIN && self.blocks.len() > 1 {
            let left = if b + 1 < self.blocks.len() { b } else { b - 1 };
            let right = self.blocks.remove(left + 1);
            self.blocks[left].extend(right);
            if self.blocks[left].len() > BLOCK_MAX {
                let half = self.blocks[left].len() / 2;
                let tail = self.blocks[left].split_off(half);
                self.blocks.insert(left + 1, tail);
            }
            self.rebuild();
        } else {
            self.add(b, -1);
        }
        Some(entry)
    }

    /// The block and position of the entry (score, member).
    fn find(&self, score: f64, member: &[u8]) -> Option<(usize, usize)> {
        let b = self
            .blocks
            .partition_point(|blk| cmp_key(&blk[blk.len() - 1], score, member).is_lt());
        let blk = self.blocks.get(b)?;
        let pos = blk.binary_search_by(|e| cmp_key(e, score, member)).ok()?;
        Some((b, pos))
    }

    /// The block and offset of the entry at `rank` (a Fenwick-tree descent).
    fn locate(&self, rank: usize) -> Option<(usize, usize)> {
        if rank >= self.len {
            return None;
        }
        let n = self.blocks.len();
        let mut pos = 0;
        let mut left = rank;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= left {
                pos = next;
                left -= self.tree[next];
            }
            step >>= 1;
        }
        Some((pos, left))
    }

    /// Entries in the blocks before block `b`.
    fn prefix(&self, b: usize) -> usize {
        let mut i = b;
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i &= i - 1;
        }
        sum
    }

    /// Block `b` gained (or lost) `delta` entries.
    fn add(&mut self, b: usize, delta: isize) {
        let mut i = b + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Extends the tree with the entry of the block just pushed at the end: the sum of
    /// the blocks `i - lowbit(i) .. i` (1-based).
    fn push_tree_entry(&mut self) {
        let i = self.blocks.len();
        let low = i & i.wrapping_neg();
        let sum = self.prefix(i - 1) + self.blocks[i - 1].len() - self.prefix(i - low);
        self.tree.push(sum);
    }

    /// Recomputes the tree after blocks were split, merged or removed: O(blocks), which
    /// happens at most once per `BLOCK_MIN` changes.
    fn rebuild(&mut self) {
        let n = self.blocks.len();
        self.tree.clear();
        self.tree.resize(n + 1, 0);
        for i in 1..=n {
            self.tree[i] += self.blocks[i - 1].len();
            let parent = i + (i & i.wrapping_neg());
            if parent <= n {
                self.tree[parent] += self.tree[i];
            }
        }
    }
}

impl ZSet {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// The 0-based rank of `member`, lowest score first.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        self.ordered.rank_of(score, member)
    }

    /// Adds `member` with `score`, or moves it to `score`. Returns the change of the heap
    /// bytes [`member_cost`] accounts for.
    pub fn set(&mut self, member: &[u8], score: f64) -> isize {
        match self.scores.get_mut(member) {
            Some(old) => {
                if old.to_bits() != score.to_bits() {
                    let mut entry = self
                        .ordered
                        .remove(*old, member)
                        .expect("a scored member is in the order");
                    *old = score;
                    entry.score = score;
                    self.ordered.insert(entry);
                }
                0
            }
            None => {
                let owned: Bytes = member.into();
                self.scores.insert(owned.clone(), score);
                self.ordered.insert(ScoredMember {
                    score,
                    member: owned,
                });
                member_cost(member) as isize
            }
        }
    }

    /// Removes `member`. Returns the change of the accounted heap bytes (0 when absent).
    pub fn remove(&mut self, member: &[u8]) -> isize {
        match self.scores.remove(member) {
            Some(score) => {
                self.ordered.remove(score, member);
                -(member_cost(member) as isize)
            }
            None => 0,
        }
    }

    /// Adds a member that is not present yet (loading a snapshot); false for a
    /// duplicate or a NaN score, which only damaged data can hold.
    pub fn insert_new(&mut self, member: Bytes, score: f64) -> bool {
        if score.is_nan() || self.scores.contains_key(&member) {
            return false;
        }
        self.scores.insert(member.clone(), score);
        self.ordered.insert(ScoredMember { score, member });
        true
    }
}

/// Applies [`crate::Effect::ZAdd`] to the value of its key (a new empty sorted set when
/// the key was missing). Returns the change of the accounted heap bytes.
pub(crate) fn apply_add(value: &mut Value, entries: &[(f64, &[u8])]) -> isize {
    let mut delta = 0;
    if !matches!(value, Value::ZSet(_)) {
        // Commands check types first; converge anyway rather than panic on replay.
        delta -= value.heap_size() as isize;
        *value = Value::ZSet(Box::default());
    }
    let Value::ZSet(z) = value else {
        unreachable!("converted above")
    };
    for &(score, member) in entries {
        delta += z.set(member, score);
    }
    delta
}

/// Applies [`crate::Effect::ZRem`]. Returns the change of the accounted heap bytes.
pub(crate) fn apply_rem(value: &mut Value, members: &[&[u8]]) -> isize {
    let Value::ZSet(z) = value else {
        return 0;
    };
    members.iter().map(|m| z.remove(m)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(score: f64, member: &str) -> ScoredMember {
        ScoredMember {
            score,
            member: member.as_bytes().into(),
        }
    }

    /// Checks every query of `order` against a plain sorted vector.
    fn check(order: &ZOrder, model: &[(f64, String)]) {
        assert_eq!(order.len(), model.len());
        let flat: Vec<(f64, String)> = order
            .iter()
            .map(|e| (e.score, String::from_utf8(e.member.to_vec()).unwrap()))
            .collect();
        assert_eq!(flat, model);
        for (rank, (score, member)) in model.iter().enumerate() {
            assert_eq!(order.rank_of(*score, member.as_bytes()), Some(rank));
            assert_eq!(order.get(rank).unwrap().member[..], *member.as_bytes());
        }
        assert!(order.get(model.len()).is_none());
        for start in [0, 1, model.len() / 2, model.len().saturating_sub(1)] {
            let up: Vec<_> = order.iter_from(start).map(|e| e.score).collect();
            let want: Vec<_> = model.iter().skip(start).map(|e| e.0).collect();
            assert_eq!(up, want);
            if start < model.len() {
                let down: Vec<_> = order.iter_down_from(start).map(|e| e.score).collect();
                let want: Vec<_> = model[..=start].iter().rev().map(|e| e.0).collect();
                assert_eq!(down, want);
            }
        }
        let below = order.partition_point(|e| e.score < 500.0);
        assert_eq!(below, model.iter().filter(|e| e.0 < 500.0).count());
    }

    #[test]
    fn order_matches_a_sorted_vector_through_splits_and_merges() {
        let mut order = ZOrder::default();
        let mut model: Vec<(f64, String)> = Vec::new();
        let mut x: u64 = 12345;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..6000 {
            let score = (next() % 1000) as f64;
            let member = format!("m{}", next() % 3000);
            let pos = model.iter().position(|e| e.1 == member);
            if next() % 3 == 0 || round > 4000 {
                if let Some(p) = pos {
                    let (s, m) = model.remove(p);
                    assert!(order.remove(s, m.as_bytes()).is_some());
                }
            } else if pos.is_none() {
                assert!(order.insert(entry(score, &member)));
                model.push((score, member));
                model.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
            }
            if round % 500 == 0 {
                check(&order, &model);
            }
        }
        check(&order, &model);
        assert!(order.blocks.iter().all(|b| !b.is_empty()));
        assert!(!order.insert(entry(model[0].0, &model[0].1.clone())));
    }

    #[test]
    fn entries_in_order_fill_blocks_and_keep_the_index() {
        let mut order = ZOrder::default();
        let mut model = Vec::new();
        for i in 0..5000 {
            let member = format!("m{i:05}");
            assert!(order.insert(entry(i as f64, &member)));
            model.push((i as f64, member));
        }
        assert!(
            order.blocks[..order.blocks.len() - 1]
                .iter()
                .all(|b| b.len() == BLOCK_MAX)
        );
        check(&order, &model);
        // Then inserts in the middle split full blocks, and the index follows.
        for i in (1..5000).step_by(7) {
            let member = format!("m{i:05}x");
            assert!(order.insert(entry(i as f64, &member)));
            model.push((i as f64, member));
        }
        model.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        check(&order, &model);
    }

    #[test]
    fn negative_zero_ties_with_zero_on_the_member() {
        let mut z = ZSet::default();
        z.set(b"b", 0.0);
        z.set(b"a", 0.0);
        z.set(b"c", -0.0);
        let members: Vec<&[u8]> = z.ordered.iter().map(|e| &e.member[..]).collect();
        assert_eq!(members, [&b"a"[..], b"b", b"c"]);
        assert_eq!(z.rank(b"c"), Some(2));
        assert!(z.score(b"c").unwrap().is_sign_negative());
        // Storing 0 over -0 is a change of the stored bits, and the order still holds.
        z.set(b"c", 0.0);
        assert!(z.score(b"c").unwrap().is_sign_positive());
        assert_eq!(z.rank(b"c"), Some(2));
    }

    #[test]
    fn accounting_matches_heap_size() {
        let mut v = Value::ZSet(Box::default());
        let mut total: isize = 0;
        total += apply_add(&mut v, &[(1.0, b"one"), (2.0, b"two"), (3.0, b"one")]);
        assert_eq!(total as usize, v.heap_size());
        total += apply_rem(&mut v, &[b"one", b"missing"]);
        assert_eq!(total as usize, v.heap_size());
        // "abc" is kept in place: it had no heap bytes to give back.
        let mut s = Value::bytes(b"abc".to_vec());
        let d = apply_add(&mut s, &[(1.0, b"x")]);
        assert_eq!(d, s.heap_size() as isize);
    }

    #[test]
    fn effects_through_the_store_keep_memory_exact_and_delete_emptied_keys() {
        use crate::{Effect, Expiry, Store};
        let st = Store::new(1);
        let h = st.hash(b"z");
        let hs = st.hash(b"s");
        st.write(h)
            .commit(
                &[
                    Effect::ZAdd {
                        key: b"z",
                        entries: &[(1.0, &b"a"[..]), (2.0, b"bb"), (3.0, b"a")],
                    },
                    Effect::SetAdd {
                        key: b"s",
                        members: &[b"x", b"yy"],
                    },
                ],
                0,
            )
            .unwrap();
        st.write(h)
            .commit(
                &[
                    Effect::ZRem {
                        key: b"z",
                        members: &[b"bb", b"nope"],
                    },
                    Effect::SetRem {
                        key: b"s",
                        members: &[b"x"],
                    },
                ],
                0,
            )
            .unwrap();
        // The same values put whole account for the same bytes.
        let other = Store::new(1);
        for (key, h) in [(&b"z"[..], h), (b"s", hs)] {
            let v = st.read(h).get(key, h, 0).unwrap().value().clone();
            let h2 = other.hash(key);
            other.write(h2).put(key, h2, v, Expiry::None, 0).unwrap();
        }
        assert_eq!(st.stats().mem, other.stats().mem);
        let shard = st.read(h);
        let Value::ZSet(z) = shard.get(b"z", h, 0).unwrap().value() else {
            panic!("not a zset")
        };
        assert_eq!((z.len(), z.score(b"a")), (1, Some(3.0)));
        drop(shard);
        // Removals from missing keys create nothing; emptied collections disappear.
        st.write(h)
            .commit(
                &[
                    Effect::ZRem {
                        key: b"z",
                        members: &[b"a"],
                    },
                    Effect::SetRem {
                        key: b"s",
                        members: &[b"yy"],
                    },
                    Effect::SetRem {
                        key: b"none",
                        members: &[b"x"],
                    },
                    Effect::ZRem {
                        key: b"none",
                        members: &[b"x"],
                    },
                ],
                0,
            )
            .unwrap();
        assert_eq!(st.len(), 0);
        assert_eq!(st.stats().dataset, 0);
    }
}

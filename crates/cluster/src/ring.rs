//! The consistent hash ring over the slot space.
//!
//! Each node owns [`VNODES`] points ("vnodes") on a circle of 16384 slots, at positions
//! derived from its name with xxh3, so every node computes the same map from the same
//! member list, and adding or removing a node moves only the slots next to its vnodes.
//! A slot's primary is the node of the first vnode at or after it (wrapping around); its
//! replicas are the next distinct nodes clockwise. Removing a node therefore hands each of
//! its slots to the slot's first replica: the node that already holds a copy.

use crate::slot::SLOTS;

/// Vnodes per node.
pub const VNODES: usize = 128;

/// Most copies beyond the primary a slot can have.
pub const MAX_REPLICAS: usize = 7;

/// A member of the cluster. (`Default`, an empty name and address, is only there for
/// generic code that needs one, such as openraft's node type.)
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NodeSpec {
    /// The operator's name for the node (`--node`); its ring positions and its 40-hex id
    /// derive from it.
    pub name: String,
    pub host: String,
    /// Client port.
    pub port: u16,
    /// Cluster bus port.
    pub bus_port: u16,
}

impl NodeSpec {
    /// The 40-hex-digit id Redis Cluster clients expect (CLUSTER MYID, CLUSTER NODES).
    pub fn id(&self) -> String {
        node_id(&self.name)
    }
}

/// The 40-hex-digit id of the node named `name`.
pub fn node_id(name: &str) -> String {
    let wide = xxhash_rust::xxh3::xxh3_128(name.as_bytes());
    let extra = xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), 40) as u32;
    format!("{wide:032x}{extra:08x}")
}

/// The ring position of vnode `i` of the node named `name`.
pub fn vnode_position(name: &str, i: usize) -> u16 {
    let mut key = Vec::with_capacity(name.len() + 8);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key.extend_from_slice(&(i as u32).to_le_bytes());
    (xxhash_rust::xxh3::xxh3_64(&key) % SLOTS as u64) as u16
}

/// Who serves one slot: indices into the ring's node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotOwners {
    pub primary: u16,
    replicas: [u16; MAX_REPLICAS],
    replica_count: u8,
}

impl SlotOwners {
    /// The slot's replicas, in ring order (the first takes over if the primary goes).
    pub fn replicas(&self) -> &[u16] {
        &self.replicas[..self.replica_count as usize]
    }

    /// Primary first, then the replicas.
    pub fn all(&self) -> impl Iterator<Item = u16> + '_ {
        std::iter::once(self.primary).chain(self.replicas().iter().copied())
    }
}

/// A run of consecutive slots with the same owners (CLUSTER SLOTS rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub owners: SlotOwners,
}

/// The slot map of one membership.
#[derive(Clone, Debug)]
pub struct Ring {
    nodes: Vec<NodeSpec>,
    /// Which of `nodes` have vnodes; the others keep their index (a member that is down
    /// stays node `i` in replication masks and in the membership) but serve no slot.
    live: Vec<bool>,
    slots: Box<[SlotOwners]>,
}

impl Ring {
    /// The ring of `nodes` (at least one), each slot with up to `replicas` copies beyond
    /// its primary (fewer when there are not enough nodes).
    pub fn new(nodes: Vec<NodeSpec>, replicas: usize) -> Ring {
        let live = vec![true; nodes.len()];
        Ring::with_live(nodes, &live, replicas)
    }

    /// The ring of the nodes `live` marks (at least one), with indices into all of
    /// `nodes`: the same map as `Ring::new` of the live nodes alone, but a node keeps its
    /// index whether or not it is live, so indices stay stable as members go down and up.
    pub fn with_live(nodes: Vec<NodeSpec>, live: &[bool], replicas: usize) -> Ring {
        assert_eq!(nodes.len(), live.len(), "one liveness flag per node");
        assert!(nodes.len() <= u16::MAX as usize);
        let live_count = live.iter().filter(|l| **l).count();
        assert!(live_count > 0, "a ring needs a live node");
        let replicas = replicas.min(MAX_REPLICAS).min(live_count - 1);
        let mut points: Vec<(u16, u16)> = Vec::with_capacity(live_count * VNODES);
        for (n, node) in nodes.iter().enumerate().filter(|(n, _)| live[*n]) {
            for i in 0..VNODES {
                points.push((vnode_position(&node.name, i), n as u16));
            }
        }
        // Equal positions are ordered by name, not by list order, so that every node
        // agrees whatever order it learnt the members in.
        points.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| nodes[a.1 as usize].name.cmp(&nodes[b.1 as usize].name))
        });
        let owners_from = |start: usize| {
            let primary = points[start % points.len()].1;
            let mut o = SlotOwners {
                primary,
                replicas: [0; MAX_REPLICAS],
                replica_count: 0,
            };
            let mut k = start + 1;
            while (o.replica_count as usize) < replicas && k < start + points.len() {
                let n = points[k % points.len()].1;
                if n != primary && !o.replicas().contains(&n) {
                    o.replicas[o.replica_count as usize] = n;
                    o.replica_count += 1;
                }
                k += 1;
            }
            o
        };
        let mut slots = Vec::with_capacity(SLOTS);
        let mut next = 0; // index of the first vnode at or after the current slot
        let mut current = owners_from(0);
        for slot in 0..SLOTS {
            let before = next;
            while next < points.len() && (points[next].0 as usize) < slot {
                next += 1;
            }
            if next != before || slot == 0 {
                // Past the last vnode, a slot belongs to the first one (wrap around).
                current = owners_from(next % points.len());
            }
            slots.push(current);
        }
        Ring {
            nodes,
            live: live.to_vec(),
            slots: slots.into_boxed_slice(),
        }
    }

    /// Every node, live or not (see [`Ring::is_live`]).
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// Whether node `index` has vnodes (serves slots) in this ring.
    pub fn is_live(&self, index: u16) -> bool {
        self.live[index as usize]
    }

    pub fn node(&self, index: u16) -> &NodeSpec {
        &self.nodes[index as usize]
    }

    /// The index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<u16> {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .map(|i| i as u16)
    }

    pub fn owners(&self, slot: u16) -> SlotOwners {
        self.slots[slot as usize]
    }

    pub fn primary(&self, slot: u16) -> u16 {
        self.slots[slot as usize].primary
    }

    /// Consecutive slots with identical owners, covering all 16384 slots in order.
    pub fn ranges(&self) -> Vec<SlotRange> {
        let mut out: Vec<SlotRange> = Vec::new();
        for (slot, owners) in self.slots.iter().enumerate() {
            match out.last_mut() {
                Some(r) if r.owners == *owners => r.end = slot as u16,
                _ => out.push(SlotRange {
                    start: slot as u16,
                    end: slot as u16,
                    owners: *owners,
                }),
            }
        }
        out
    }

    /// How many slots each node is primary for, by node index.
    pub fn primary_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.nodes.len()];
        for o in self.slots.iter() {
            counts[o.primary as usize] += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Vec<NodeSpec> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| NodeSpec {
                name: n.to_string(),
                host: "127.0.0.1".into(),
                port: 6379 + i as u16,
                bus_port: 16379 + i as u16,
            })
            .collect()
    }

    /// The names of a slot's owners, primary first: comparable across rings whose
    /// members have other indices.
    fn owner_names(r: &Ring, slot: u16) -> Vec<String> {
        r.owners(slot)
            .all()
            .map(|i| r.node(i).name.clone())
            .collect()
    }

    /// The definition, computed the slow way: first vnode at or after the slot.
    fn slow_primary(nodes: &[NodeSpec], slot: u16) -> String {
        let mut best: Option<(u16, &str)> = None;
        let mut first: Option<(u16, &str)> = None;
        for n in nodes {
            for i in 0..VNODES {
                let p = (vnode_position(&n.name, i), n.name.as_str());
                if first.is_none_or(|f| p < f) {
                    first = Some(p);
                }
                if p.0 >= slot && best.is_none_or(|b| p < b) {
                    best = Some(p);
                }
            }
        }
        best.or(first).unwrap().1.to_string()
    }

    #[test]
    fn primary_is_the_first_vnode_at_or_after_the_slot() {
        let ring = Ring::new(nodes(&["node-1", "node-2", "node-3"]), 1);
        for slot in (0..SLOTS as u16).step_by(7).chain([0, 16383]) {
            assert_eq!(
                ring.node(ring.primary(slot)).name,
                slow_primary(ring.nodes(), slot),
                "slot {slot}"
            );
        }
    }

    #[test]
    fn same_map_whatever_the_member_order() {
        let a = Ring::new(nodes(&["node-1", "node-2", "node-3"]), 1);
        let b = Ring::new(nodes(&["node-3", "node-1", "node-2"]), 1);
        for slot in 0..SLOTS as u16 {
            assert_eq!(owner_names(&a, slot), owner_names(&b, slot), "slot {slot}");
        }
    }

    #[test]
    fn replicas_are_distinct_and_next_clockwise() {
        let ring = Ring::new(nodes(&["a", "b", "c", "d"]), 2);
        for slot in 0..SLOTS as u16 {
            let all: Vec<u16> = ring.owners(slot).all().collect();
            assert_eq!(all.len(), 3);
            let mut dedup = all.clone();
            dedup.sort();
            dedup.dedup();
            assert_eq!(dedup.len(), 3, "slot {slot}: {all:?}");
        }
        // Fewer nodes than copies asked for: every other node, once.
        let small = Ring::new(nodes(&["a", "b"]), 3);
        assert_eq!(small.owners(5).replicas().len(), 1);
    }

    #[test]
    fn balanced_and_covering() {
        let ring = Ring::new(nodes(&["node-1", "node-2", "node-3"]), 1);
        let counts = ring.primary_counts();
        assert_eq!(counts.iter().sum::<usize>(), SLOTS);
        for c in &counts {
            // 128 vnodes each: within ~25% of an even share.
            assert!(
                (*c as f64 - SLOTS as f64 / 3.0).abs() < SLOTS as f64 / 3.0 * 0.25,
                "{counts:?}"
            );
        }
        let ranges = ring.ranges();
        assert_eq!(ranges.first().unwrap().start, 0);
        assert_eq!(ranges.last().unwrap().end, 16383);
        for w in ranges.windows(2) {
            assert_eq!(w[0].end + 1, w[1].start);
        }
    }

    #[test]
    fn a_removed_node_hands_its_slots_to_their_first_replica() {
        let full = Ring::new(nodes(&["n1", "n2", "n3", "n4"]), 1);
        let without = Ring::new(nodes(&["n1", "n2", "n4"]), 1);
        let gone = full.index_of("n3").unwrap();
        let mut moved = 0;
        for slot in 0..SLOTS as u16 {
            let o = full.owners(slot);
            let now = &without.node(without.primary(slot)).name;
            if o.primary == gone {
                moved += 1;
                assert_eq!(now, &full.node(o.replicas()[0]).name, "slot {slot}");
            } else {
                assert_eq!(
                    now,
                    &full.node(o.primary).name,
                    "slot {slot} moved needlessly"
                );
            }
        }
        assert!(moved > 0);
    }

    fn same_owners(a: &Ring, b: &Ring) -> bool {
        (0..SLOTS as u16).all(|s| a.owners(s) == b.owners(s))
    }

    #[test]
    fn new_is_with_live_all_live() {
        let n = nodes(&["n1", "n2", "n3", "n4"]);
        let a = Ring::new(n.clone(), 2);
        let b = Ring::with_live(n, &[true; 4], 2);
        assert!(same_owners(&a, &b));
        assert!((0..4).all(|i| b.is_live(i)));
    }

    #[test]
    fn a_dead_node_keeps_its_index_and_serves_nothing() {
        let n = nodes(&["n1", "n2", "n3", "n4"]);
        let partial = Ring::with_live(n.clone(), &[true, true, false, true], 1);
        assert!(!partial.is_live(2));
        assert_eq!(partial.nodes().len(), 4);
        assert_eq!(partial.primary_counts()[2], 0);
        // The same map as the ring of the live nodes alone, by name.
        let alone = Ring::new(nodes(&["n1", "n2", "n4"]), 1);
        for slot in 0..SLOTS as u16 {
            assert_eq!(
                owner_names(&partial, slot),
                owner_names(&alone, slot),
                "slot {slot}"
            );
        }
        // Replicas are capped by the live nodes, not all nodes.
        let one = Ring::with_live(n, &[false, false, true, false], 3);
        assert!((0..SLOTS as u16).all(|s| one.owners(s).replicas().is_empty()));
        assert_eq!(one.primary_counts()[2], SLOTS);
    }

    #[test]
    #[should_panic(expected = "a ring needs a live node")]
    fn a_ring_with_no_live_node_is_a_bug() {
        Ring::with_live(nodes(&["a"]), &[false], 1);
    }

    #[test]
    fn node_ids_are_40_hex_digits() {
        let id = node_id("node-1");
        assert_eq!(id.len(), 40);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, node_id("node-2"));
    }
}

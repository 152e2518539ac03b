//! The agreed membership: who is in the cluster, in which state, at which epoch.
//!
//! Every node holds the same [`Membership`] for the same epoch (dse-consensus applies the
//! same [`Change`]s in the same order everywhere) and derives its slot map from it with
//! [`Membership::ring`], so the slot map needs no agreement of its own.
//!
//! A member's life:
//!
//! ```text
//!  Add ──▶ Joining ──Ready──▶ Ready ──MarkUp──▶ Up ──MarkDown──▶ Down ──Rejoin──▶ Joining
//!             │                 │                                  ▲
//!             └──── MarkDown ───┴──────────────────────────────────┘
//!  Remove: any state but Removed ──▶ Removed (for good; the index is never reused)
//! ```
//!
//! Only Up members are in the ring. A Joining member copies the slots it will hold; a
//! Ready one has them and is counted in their write quorum, so that once it is Up it holds
//! every acknowledged write of its slots.

use crate::ring::{NodeSpec, Ring};

/// Most members a cluster can ever have: replication masks are u64 bitmaps of indices,
/// and indices are never reused.
pub const MAX_MEMBERS: usize = 64;

/// The agreed configuration: every node derives its slot map from it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Membership {
    /// Bumped by one by every applied change.
    pub epoch: u64,
    /// Index = the member's node index everywhere (ring, replication masks, raft node id).
    /// Members are never removed from the vector (state Removed), so indices stay stable.
    /// At most [`MAX_MEMBERS`] members ever.
    pub members: Vec<Member>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub spec: NodeSpec,
    pub state: MemberState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum MemberState {
    /// In the ring: serves (primary or replica of) its slots.
    Up,
    /// Marked down by agreement: out of the ring. Must catch up (Joining, Ready) to be Up
    /// again.
    Down,
    /// Added (CLUSTER MEET) or back after Down, copying the slots it will hold: out of the
    /// ring, in no write quorum.
    Joining,
    /// Caught up: still out of the ring, but counted in the write quorum of the slots it
    /// will hold once Up (so from this epoch on, every acknowledged write of those slots
    /// reaches it).
    Ready,
    /// Removed (CLUSTER FORGET): out of the ring and of consensus for good.
    Removed,
}

/// One agreed change; each applied change bumps the epoch by one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Change {
    /// A new member, Joining. Refused if a member (even a removed one) has the name, or if
    /// there are [`MAX_MEMBERS`] members.
    Add(NodeSpec),
    /// Up, Joining or Ready -> Down. Refused if it would leave no Up member.
    MarkDown(u16),
    /// Joining -> Ready.
    Ready(u16),
    /// Ready -> Up.
    MarkUp(u16),
    /// Any state but Removed -> Removed. Refused if it would leave no Up member.
    Remove(u16),
    /// Down -> Joining (the node is back and starts copying).
    Rejoin(u16),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("a node named {0:?} is already a member")]
    NameTaken(String),
    #[error("the cluster already has {MAX_MEMBERS} members")]
    Full,
    #[error("no member has index {0}")]
    NoSuchMember(u16),
    #[error("member {index} is {state:?}, which {change} does not apply to")]
    WrongState {
        index: u16,
        state: MemberState,
        change: &'static str,
    },
    #[error("the change would leave no member up")]
    NoneUp,
}

impl Membership {
    /// First start: `nodes` (this node + --peers) sorted by name, all Up, epoch 1. Every
    /// node computes the same value from the same list, whatever order it was given in.
    pub fn bootstrap(mut nodes: Vec<NodeSpec>) -> Membership {
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        nodes.dedup_by(|a, b| a.name == b.name);
        assert!(nodes.len() <= MAX_MEMBERS, "at most {MAX_MEMBERS} members");
        Membership {
            epoch: 1,
            members: nodes
                .into_iter()
                .map(|spec| Member {
                    spec,
                    state: MemberState::Up,
                })
                .collect(),
        }
    }

    /// Applies `change`, bumping the epoch; an invalid change is refused and changes
    /// nothing.
    pub fn apply(&mut self, change: &Change) -> Result<(), MembershipError> {
        use MemberState::*;
        match change {
            Change::Add(spec) => {
                if self.index_of(&spec.name).is_some() {
                    return Err(MembershipError::NameTaken(spec.name.clone()));
                }
                if self.members.len() >= MAX_MEMBERS {
                    return Err(MembershipError::Full);
                }
                self.members.push(Member {
                    spec: spec.clone(),
                    state: Joining,
                });
            }
            Change::MarkDown(i) => {
                self.transition(*i, "MarkDown", &[Up, Joining, Ready], Down)?;
            }
            Change::Ready(i) => {
                self.transition(*i, "Ready", &[Joining], Ready)?;
            }
            Change::MarkUp(i) => {
                self.transition(*i, "MarkUp", &[Ready], Up)?;
            }
            Change::Remove(i) => {
                self.transition(*i, "Remove", &[Up, Down, Joining, Ready], Removed)?;
            }
            Change::Rejoin(i) => {
                self.transition(*i, "Rejoin", &[Down], Joining)?;
            }
        }
        self.epoch += 1;
        Ok(())
    }

    fn transition(
        &mut self,
        index: u16,
        change: &'static str,
        from: &[MemberState],
        to: MemberState,
    ) -> Result<(), MembershipError> {
        let state = self
            .members
            .get(index as usize)
            .ok_or(MembershipError::NoSuchMember(index))?
            .state;
        if !from.contains(&state) {
            return Err(MembershipError::WrongState {
                index,
                state,
                change,
            });
        }
        // The ring needs an Up member, and an empty ring could not be agreed back up.
        if state == MemberState::Up && to != MemberState::Up && self.up().count() == 1 {
            return Err(MembershipError::NoneUp);
        }
        self.members[index as usize].state = to;
        Ok(())
    }

    pub fn index_of(&self, name: &str) -> Option<u16> {
        self.members
            .iter()
            .position(|m| m.spec.name == name)
            .map(|i| i as u16)
    }

    pub fn state(&self, index: u16) -> Option<MemberState> {
        self.members.get(index as usize).map(|m| m.state)
    }

    /// The indices of the Up members.
    pub fn up(&self) -> impl Iterator<Item = u16> + '_ {
        self.in_state(MemberState::Up)
    }

    pub fn in_state(&self, state: MemberState) -> impl Iterator<Item = u16> + '_ {
        self.members
            .iter()
            .enumerate()
            .filter(move |(_, m)| m.state == state)
            .map(|(i, _)| i as u16)
    }

    /// The slot map of this membership: vnodes for Up members only, node indices = member
    /// indices (so a down node keeps its index). Needs at least one Up member, which
    /// every membership reached by `bootstrap` and `apply` of a non-empty list has.
    pub fn ring(&self, replicas: usize) -> Ring {
        let live: Vec<bool> = self
            .members
            .iter()
            .map(|m| m.state == MemberState::Up)
            .collect();
        Ring::with_live(self.specs(), &live, replicas)
    }

    /// The ring as it will be once `node` is Up (the slots a Joining/Ready node copies).
    pub fn ring_with(&self, node: u16, replicas: usize) -> Ring {
        let live: Vec<bool> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| m.state == MemberState::Up || i == node as usize)
            .collect();
        Ring::with_live(self.specs(), &live, replicas)
    }

    fn specs(&self) -> Vec<NodeSpec> {
        self.members.iter().map(|m| m.spec.clone()).collect()
    }

    /// Members that vote (all but Removed), for majorities. Down members vote too, so a
    /// minority never decides anything.
    pub fn voters(&self) -> impl Iterator<Item = u16> + '_ {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.state != MemberState::Removed)
            .map(|(i, _)| i as u16)
    }

    /// How many acknowledgements (counting one's own) make a majority of the voters.
    pub fn majority(&self) -> usize {
        self.voters().count() / 2 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slot::SLOTS;

    fn spec(name: &str) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 7000,
            bus_port: 17000,
        }
    }

    fn three() -> Membership {
        Membership::bootstrap(vec![spec("c"), spec("a"), spec("b")])
    }

    #[test]
    fn bootstrap_is_order_independent() {
        let a = three();
        let b = Membership::bootstrap(vec![spec("b"), spec("c"), spec("a")]);
        assert_eq!(a, b);
        assert_eq!(a.epoch, 1);
        assert_eq!(a.index_of("a"), Some(0));
        assert_eq!(a.index_of("c"), Some(2));
        assert!(a.members.iter().all(|m| m.state == MemberState::Up));
        assert_eq!(a.voters().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(a.majority(), 2);
    }

    #[test]
    fn the_life_of_a_member() {
        let mut m = three();
        m.apply(&Change::MarkDown(1)).unwrap();
        assert_eq!(m.state(1), Some(MemberState::Down));
        assert_eq!(m.epoch, 2);
        m.apply(&Change::Rejoin(1)).unwrap();
        m.apply(&Change::Ready(1)).unwrap();
        m.apply(&Change::MarkUp(1)).unwrap();
        assert_eq!(m.state(1), Some(MemberState::Up));
        assert_eq!(m.epoch, 5);

        m.apply(&Change::Add(spec("d"))).unwrap();
        assert_eq!(m.index_of("d"), Some(3));
        assert_eq!(m.state(3), Some(MemberState::Joining));
        m.apply(&Change::Remove(3)).unwrap();
        assert_eq!(m.state(3), Some(MemberState::Removed));
        assert_eq!(m.voters().count(), 3);
        assert_eq!(m.epoch, 7);
    }

    #[test]
    fn invalid_changes_change_nothing() {
        let mut m = three();
        let before = m.clone();
        let refused = [
            Change::Add(spec("a")),
            Change::Ready(0),
            Change::MarkUp(0),
            Change::Rejoin(0),
            Change::MarkDown(9),
        ];
        for c in &refused {
            assert!(m.apply(c).is_err(), "{c:?}");
            assert_eq!(m, before, "{c:?}");
        }
        // A removed name stays taken, so a node's index never changes meaning.
        m.apply(&Change::Remove(2)).unwrap();
        assert_eq!(
            m.apply(&Change::Add(spec("c"))),
            Err(MembershipError::NameTaken("c".into()))
        );
        assert!(m.apply(&Change::Remove(2)).is_err());
        // Never no Up member.
        m.apply(&Change::MarkDown(1)).unwrap();
        assert_eq!(m.apply(&Change::MarkDown(0)), Err(MembershipError::NoneUp));
        assert_eq!(m.apply(&Change::Remove(0)), Err(MembershipError::NoneUp));
        // Marking down or removing members that are not Up is fine.
        m.apply(&Change::Remove(1)).unwrap();
    }

    #[test]
    fn at_most_64_members() {
        let mut m = Membership::bootstrap(vec![spec("n0")]);
        for i in 1..MAX_MEMBERS {
            m.apply(&Change::Add(spec(&format!("n{i}")))).unwrap();
        }
        assert_eq!(
            m.apply(&Change::Add(spec("more"))),
            Err(MembershipError::Full)
        );
    }

    #[test]
    fn the_ring_has_up_members_only_with_stable_indices() {
        let mut m = three();
        let full = m.ring(1);
        m.apply(&Change::MarkDown(1)).unwrap();
        let ring = m.ring(1);
        assert!(!ring.is_live(1));
        assert_eq!(ring.primary_counts()[1], 0);
        assert_eq!(ring.node(2).name, "c");
        // b's slots went to their first replica: the ring keeps its promise.
        for s in 0..SLOTS as u16 {
            let o = full.owners(s);
            if o.primary == 1 {
                assert_eq!(ring.primary(s), o.replicas()[0]);
            }
        }
        // ring_with shows the slots b copies while it comes back.
        m.apply(&Change::Rejoin(1)).unwrap();
        let future = m.ring_with(1, 1);
        assert!((0..SLOTS as u16).all(|s| future.owners(s) == full.owners(s)));
        m.apply(&Change::Ready(1)).unwrap();
        m.apply(&Change::MarkUp(1)).unwrap();
        let back = m.ring(1);
        assert!((0..SLOTS as u16).all(|s| back.owners(s) == full.owners(s)));
    }
}

//! Heartbeats, the write lease, failure suspicion and the leader's decisions, as a state
//! machine driven by its caller (no clock: every call takes `now_ms`).
//!
//! Every node sends a heartbeat to every voter each `heartbeat_ms`, and each heartbeat is
//! acknowledged. A node counts a peer as heard at time `t` when the peer acknowledged a
//! heartbeat this node *sent* at `t`: the round trip proves two-way contact at or after
//! `t`, whenever the acknowledgement arrives (a late one only proves less).
//!
//! **The lease.** A node may accept writes while a majority of the voters (itself
//! included) acknowledged a heartbeat it sent within the last `lease_ms` =
//! `node_timeout_ms / 2`. A node cut off from a majority therefore stops writing within
//! `lease_ms`, while the majority needs `node_timeout_ms` of silence to mark it down and
//! hand its slots over. Two refinements make the hand-over safe even when messages are
//! lost, late or one-sided:
//!
//! - An acknowledgement carries the epoch the acknowledging node's log reaches (changes
//!   agreed or in flight, applied or not). It counts for the lease only if that epoch is
//!   not ahead of the membership this node applied: a node that missed a change (say, the
//!   one that marked it down) cannot renew its lease from the nodes that agreed it. Every
//!   change is committed by a majority whose logs then hold it, so once a change is
//!   committed, every node still on an older membership stops getting lease renewals from
//!   at least one member of every majority, and is not writable `lease_ms` later.
//! - A node that gains primary slots by applying a membership holds off writes
//!   (`fence`) for `lease_ms` after applying it: the previous owner's lease, renewed at
//!   the latest when the change was committed (before this node applied it), has run out
//!   by then.
//!
//! Together: no two nodes accept writes for the same slot at the same instant, whatever
//! their epochs (assuming clocks that run at the same rate; they need not agree).
//!
//! **Decisions** ([`decide`]): the raft leader proposes at most one [`Change`] at a time,
//! from its own liveness data and the [`Report`]s members send with their heartbeats.

use crate::membership::{Change, MemberState, Membership};
use crate::ring::{VNODES, vnode_position};
use crate::slot::SLOTS;

/// Failure detection timing, all in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Silence after which the leader marks a member down (`--node-timeout`).
    pub node_timeout_ms: u64,
    /// After a node starts, no member is marked down for this long (its peers may still
    /// be starting).
    pub grace_ms: u64,
    /// Heartbeat period.
    pub heartbeat_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            node_timeout_ms: 3000,
            grace_ms: 15_000,
            heartbeat_ms: 250,
        }
    }
}

impl Timing {
    /// How long a majority's acknowledgement keeps a node writable: half the node
    /// timeout, so a cut-off node stops writing well before the others take over.
    pub fn lease_ms(&self) -> u64 {
        self.node_timeout_ms / 2
    }
}

/// What a member reports about itself in each heartbeat (the leader decides from these).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// The membership epoch the rest of the report is about.
    pub epoch: u64,
    /// Copied every slot of `ring_with(me)` up to date, for `epoch`.
    pub caught_up: bool,
    /// Ready: acknowledged everything its primaries wrote before `epoch`.
    pub quorum_synced: bool,
}

/// One node's view of its peers: per peer, the send time of the newest heartbeat it
/// acknowledged.
#[derive(Clone, Debug)]
pub struct Liveness {
    timing: Timing,
    started_ms: u64,
    /// Round trips, whatever the peer's epoch (for suspicion).
    heard: Vec<Option<u64>>,
    /// Round trips that count for the lease (the peer's log was not ahead of us).
    granted: Vec<Option<u64>>,
    applied_epoch: u64,
    log_epoch: u64,
    fence_until: u64,
}

impl Liveness {
    pub fn new(timing: Timing, started_ms: u64) -> Self {
        Liveness {
            timing,
            started_ms,
            heard: Vec::new(),
            granted: Vec::new(),
            applied_epoch: 0,
            log_epoch: 0,
            fence_until: 0,
        }
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// A heartbeat sent at `sent_ms` came back from `peer`, whose log was not ahead of
    /// this node's applied membership (it counts for the lease).
    pub fn acked(&mut self, peer: u16, sent_ms: u64) {
        note(&mut self.heard, peer, sent_ms);
        note(&mut self.granted, peer, sent_ms);
    }

    /// A heartbeat sent at `sent_ms` came back from `peer`, whose log reached
    /// `peer_log_epoch`: it proves contact, and counts for the lease only if the peer's
    /// log is not ahead of the membership this node applied.
    pub fn acked_at(&mut self, peer: u16, sent_ms: u64, peer_log_epoch: u64) {
        if peer_log_epoch <= self.applied_epoch {
            self.acked(peer, sent_ms);
        } else {
            note(&mut self.heard, peer, sent_ms);
        }
    }

    /// The send time of the newest heartbeat `peer` acknowledged.
    pub fn last_heard(&self, peer: u16) -> Option<u64> {
        self.heard.get(peer as usize).copied().flatten()
    }

    /// The highest epoch this node's own log reaches (applied or not). While it is ahead
    /// of the applied membership, this node does not count itself for its lease.
    pub fn set_log_epoch(&mut self, epoch: u64) {
        self.log_epoch = epoch;
    }

    pub fn applied_epoch(&self) -> u64 {
        self.applied_epoch
    }

    /// This node applied `next` (its previous membership was `prev`, None at start) at
    /// `now_ms`. If that made it the primary of slots it was not primary of, it is not
    /// writable for `lease_ms` (see the module docs).
    pub fn applied(
        &mut self,
        prev: Option<&Membership>,
        next: &Membership,
        me: Option<u16>,
        now_ms: u64,
    ) {
        self.applied_epoch = next.epoch;
        self.log_epoch = self.log_epoch.max(next.epoch);
        let Some(me) = me else { return };
        let name = &next.members[me as usize].spec.name;
        let after = primary_bitmap(next, me);
        let before = match prev {
            Some(p) if p.index_of(name) == Some(me) => primary_bitmap(p, me),
            _ => vec![0; SLOT_WORDS],
        };
        if after.iter().zip(&before).any(|(a, b)| a & !b != 0) {
            self.fence_until = self.fence_until.max(now_ms + self.timing.lease_ms());
        }
    }

    /// The lease: a majority of `membership.voters()` (this node counts itself)
    /// acknowledged a heartbeat sent within the last `lease_ms`, and no fence holds. A
    /// node that is not writable answers -CLUSTERDOWN to keyed commands.
    pub fn writable(&self, membership: &Membership, me: u16, now_ms: u64) -> bool {
        self.writable_until(membership, me, now_ms).is_some()
    }

    /// If writable at `now_ms`, until when it stays writable with no news (exclusive).
    pub fn writable_until(&self, membership: &Membership, me: u16, now_ms: u64) -> Option<u64> {
        if now_ms < self.fence_until {
            return None;
        }
        let lease = self.timing.lease_ms();
        let mut grants: Vec<u64> = membership
            .voters()
            .filter_map(|v| {
                if v == me {
                    // Our own log holding a change we have not applied is the same news
                    // as a peer's: we may be on a membership the others left.
                    (self.log_epoch <= self.applied_epoch).then_some(u64::MAX)
                } else {
                    self.granted
                        .get(v as usize)
                        .copied()
                        .flatten()
                        .map(|t| t.saturating_add(lease))
                }
            })
            .collect();
        let majority = membership.majority();
        if grants.len() < majority {
            return None;
        }
        grants.sort_unstable_by(|a, b| b.cmp(a));
        let until = grants[majority - 1];
        (until > now_ms).then_some(until)
    }
}

const SLOT_WORDS: usize = SLOTS / 64;

/// The slots member `me` is primary of in `m.ring(_)`, one bit per slot, computed from
/// the vnodes alone (applying a membership must stay cheap: this runs on every apply).
/// A slot belongs to the first vnode at or after it, so each vnode owns the slots from
/// just after the previous vnode up to its own position.
fn primary_bitmap(m: &Membership, me: u16) -> Vec<u64> {
    let mut bits = vec![0u64; SLOT_WORDS];
    if m.state(me) != Some(MemberState::Up) {
        return bits;
    }
    let mut points: Vec<(u16, &str, u16)> = Vec::with_capacity(m.up().count() * VNODES);
    for i in m.up() {
        let name = m.members[i as usize].spec.name.as_str();
        for v in 0..VNODES {
            points.push((vnode_position(name, v), name, i));
        }
    }
    // The ring's order: position, then name.
    points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mut set = |from: usize, to: usize| {
        for s in from..to {
            bits[s / 64] |= 1 << (s % 64);
        }
    };
    for (k, &(pos, _, owner)) in points.iter().enumerate() {
        if owner != me {
            continue;
        }
        if k == 0 {
            // The first vnode also owns the slots past the last one (wrap around).
            set(0, pos as usize + 1);
            set(points[points.len() - 1].0 as usize + 1, SLOTS);
        } else {
            set(points[k - 1].0 as usize + 1, pos as usize + 1);
        }
    }
    bits
}

fn note(times: &mut Vec<Option<u64>>, peer: u16, sent_ms: u64) {
    let i = peer as usize;
    if times.len() <= i {
        times.resize(i + 1, None);
    }
    times[i] = Some(times[i].map_or(sent_ms, |t| t.max(sent_ms)));
}

/// The leader's next proposal, if any (at most one change in flight at a time), in this
/// order of priority:
/// - MarkDown(x) for an Up/Joining/Ready member silent (no round trip) for
///   node_timeout_ms, only once now >= started + grace_ms and this node has led for at
///   least node_timeout_ms (so its liveness data is its own and fresh); never this
///   node, never the last Up member;
/// - Rejoin(x) for a Down member heard again (a round trip within heartbeat_ms * 4);
/// - Ready(x) for a Joining member whose latest report says caught_up for the current
///   epoch;
/// - MarkUp(x) for a Ready member whose latest report says quorum_synced for the current
///   epoch.
///
/// Ready and MarkUp also need x heard within node_timeout_ms: a report from a member
/// that has gone since is no reason to count it in.
pub fn decide(
    m: &Membership,
    me: u16,
    live: &Liveness,
    reports: &[Option<Report>],
    leader_since_ms: u64,
    now_ms: u64,
) -> Option<Change> {
    let t = live.timing;
    let heard_within = |x: u16, window: u64| -> bool {
        x == me
            || live
                .last_heard(x)
                .is_some_and(|h| h.saturating_add(window) >= now_ms)
    };
    let report = |x: u16| -> Option<Report> {
        reports
            .get(x as usize)
            .copied()
            .flatten()
            .filter(|r| r.epoch == m.epoch)
    };
    let may_mark_down = now_ms >= live.started_ms.saturating_add(t.grace_ms)
        && now_ms.saturating_sub(leader_since_ms) >= t.node_timeout_ms;
    if may_mark_down {
        let up = m.up().count();
        for (i, member) in m.members.iter().enumerate() {
            let x = i as u16;
            let suspect = matches!(
                member.state,
                MemberState::Up | MemberState::Joining | MemberState::Ready
            );
            if !suspect || x == me {
                continue;
            }
            // Never heard since this node started: silent since then.
            let heard = live
                .last_heard(x)
                .unwrap_or(live.started_ms)
                .max(live.started_ms);
            if heard.saturating_add(t.node_timeout_ms) > now_ms {
                continue;
            }
            if member.state == MemberState::Up && up <= 1 {
                continue;
            }
            return Some(Change::MarkDown(x));
        }
    }
    for x in m.in_state(MemberState::Down) {
        if heard_within(x, t.heartbeat_ms * 4) {
            return Some(Change::Rejoin(x));
        }
    }
    for x in m.in_state(MemberState::Joining) {
        if heard_within(x, t.node_timeout_ms) && report(x).is_some_and(|r| r.caught_up) {
            return Some(Change::Ready(x));
        }
    }
    for x in m.in_state(MemberState::Ready) {
        if heard_within(x, t.node_timeout_ms) && report(x).is_some_and(|r| r.quorum_synced) {
            return Some(Change::MarkUp(x));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::NodeSpec;

    fn members(n: usize) -> Membership {
        Membership::bootstrap(
            (0..n)
                .map(|i| NodeSpec {
                    name: format!("n{i}"),
                    host: "127.0.0.1".into(),
                    port: 7000 + i as u16,
                    bus_port: 17000 + i as u16,
                })
                .collect(),
        )
    }

    fn timing() -> Timing {
        Timing {
            node_timeout_ms: 600,
            grace_ms: 1000,
            heartbeat_ms: 50,
        }
    }

    /// Started at 0, with `m` applied at 0.
    fn live_at(m: &Membership, me: u16) -> Liveness {
        let mut l = Liveness::new(timing(), 0);
        l.applied(None, m, Some(me), 0);
        l
    }

    #[test]
    fn the_lease_needs_a_fresh_majority() {
        let m = members(3);
        let mut l = live_at(&m, 0);
        // Fenced at first: it just gained every slot it is primary of.
        l.acked(1, 100);
        assert!(!l.writable(&m, 0, 200));
        assert!(l.writable(&m, 0, 300));
        // 100 + lease 300: writable before 400, not at 400.
        assert!(l.writable(&m, 0, 399));
        assert!(!l.writable(&m, 0, 400));
        l.acked(2, 350);
        assert_eq!(l.writable_until(&m, 0, 399), Some(650));
        // A late acknowledgement of an old heartbeat proves nothing new.
        l.acked(2, 10);
        assert_eq!(l.writable_until(&m, 0, 399), Some(650));
        // 5 nodes: self + one peer is no majority.
        let m5 = members(5);
        let mut l5 = live_at(&m5, 0);
        l5.acked(1, 1000);
        assert!(!l5.writable(&m5, 0, 1001));
        l5.acked(4, 1000);
        assert!(l5.writable(&m5, 0, 1001));
    }

    #[test]
    fn peers_ahead_of_us_do_not_renew_the_lease() {
        let m = members(3);
        let mut l = live_at(&m, 0);
        l.acked_at(1, 500, 2); // its log holds epoch 2; we applied 1
        l.acked_at(2, 500, 2);
        assert_eq!(l.last_heard(1), Some(500));
        assert!(!l.writable(&m, 0, 501));
        l.acked_at(2, 500, 1);
        assert!(l.writable(&m, 0, 501));
        // Our own log ahead of what we applied: we do not count ourselves.
        l.set_log_epoch(2);
        assert!(!l.writable(&m, 0, 501));
    }

    #[test]
    fn gaining_slots_fences_writes_for_a_lease() {
        let mut m = members(3);
        let mut l = Liveness::new(timing(), 0);
        l.applied(None, &m, Some(0), 0);
        let prev = m.clone();
        m.apply(&Change::MarkDown(1)).unwrap();
        l.acked(2, 1000);
        assert!(l.writable(&prev, 0, 1000));
        // Node 0 is the first replica of some of node 1's slots: it takes them over.
        l.applied(Some(&prev), &m, Some(0), 1000);
        assert!(!l.writable(&m, 0, 1000));
        l.acked(2, 1250);
        assert!(!l.writable(&m, 0, 1299));
        assert!(l.writable(&m, 0, 1300));
        // Losing slots fences nothing.
        let prev = m.clone();
        m.apply(&Change::Rejoin(1)).unwrap();
        m.apply(&Change::Ready(1)).unwrap();
        let before_up = m.clone();
        m.apply(&Change::MarkUp(1)).unwrap();
        l.applied(Some(&prev), &before_up, Some(0), 1400);
        l.applied(Some(&before_up), &m, Some(0), 1400);
        assert!(l.writable(&m, 0, 1400));
    }

    #[test]
    fn primary_bitmap_matches_the_ring() {
        let mut m = members(5);
        m.apply(&Change::MarkDown(3)).unwrap();
        let ring = m.ring(2);
        for me in 0..5u16 {
            let bits = primary_bitmap(&m, me);
            for s in 0..SLOTS as u16 {
                let set = bits[s as usize / 64] & (1 << (s % 64)) != 0;
                assert_eq!(set, ring.primary(s) == me, "node {me} slot {s}");
            }
        }
    }

    #[test]
    fn decide_marks_down_the_silent_after_grace_and_leading_long_enough() {
        let m = members(3);
        let mut l = live_at(&m, 0);
        l.acked(1, 1500);
        // Node 2 never answered. Before the grace: nothing.
        assert_eq!(decide(&m, 0, &l, &[], 0, 900), None);
        // Led for less than the node timeout: nothing.
        assert_eq!(decide(&m, 0, &l, &[], 1500, 2000), None);
        assert_eq!(decide(&m, 0, &l, &[], 0, 2000), Some(Change::MarkDown(2)));
        // Node 1 silent since 1500: down at 2100, not before.
        let mut l2 = l.clone();
        l2.acked(2, 2000);
        assert_eq!(decide(&m, 0, &l2, &[], 0, 2099), None);
        assert_eq!(decide(&m, 0, &l2, &[], 0, 2100), Some(Change::MarkDown(1)));
    }

    #[test]
    fn decide_never_marks_down_itself_or_the_last_up() {
        let mut m = members(3);
        m.apply(&Change::MarkDown(1)).unwrap();
        m.apply(&Change::MarkDown(2)).unwrap();
        m.apply(&Change::Rejoin(2)).unwrap();
        // Node 2 is the leader here; node 0 is the only Up member and silent.
        let l = live_at(&m, 2);
        assert_eq!(decide(&m, 2, &l, &[], 0, 10_000), None);
        // Node 0 leading, alone and Up: nothing to mark down but Joining node 2.
        let l0 = live_at(&m, 0);
        assert_eq!(
            decide(&m, 0, &l0, &[], 0, 10_000),
            Some(Change::MarkDown(2))
        );
    }

    #[test]
    fn decide_brings_members_back() {
        let mut m = members(3);
        m.apply(&Change::MarkDown(1)).unwrap();
        let mut l = live_at(&m, 0);
        l.acked(2, 5000);
        assert_eq!(decide(&m, 0, &l, &[], 0, 5000), None);
        l.acked(1, 4900);
        assert_eq!(decide(&m, 0, &l, &[], 0, 5000), Some(Change::Rejoin(1)));
        // Heard too long ago: not back.
        assert_eq!(decide(&m, 0, &l, &[], 0, 5150), None);

        m.apply(&Change::Rejoin(1)).unwrap();
        let stale = Report {
            epoch: m.epoch - 1,
            caught_up: true,
            quorum_synced: true,
        };
        let fresh = Report {
            epoch: m.epoch,
            caught_up: true,
            quorum_synced: false,
        };
        assert_eq!(decide(&m, 0, &l, &[None, Some(stale)], 0, 5000), None);
        assert_eq!(
            decide(&m, 0, &l, &[None, Some(fresh)], 0, 5000),
            Some(Change::Ready(1))
        );
        m.apply(&Change::Ready(1)).unwrap();
        // The caught_up report is for the previous epoch; quorum_synced is needed now.
        let synced = Report {
            epoch: m.epoch,
            caught_up: true,
            quorum_synced: true,
        };
        assert_eq!(decide(&m, 0, &l, &[None, Some(fresh)], 0, 5000), None);
        assert_eq!(
            decide(&m, 0, &l, &[None, Some(synced)], 0, 5000),
            Some(Change::MarkUp(1))
        );
    }
}

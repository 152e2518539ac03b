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
//! - A node that gains primary slots by applying a membership holds off writes (a
//!   *fence*) until the nodes that may still write those slots have provably stopped:
//!   see below.
//!
//! Together: no two nodes accept writes for the same slot at the same instant, whatever
//! their epochs (assuming clocks that run at the same rate; they need not agree).
//!
//! **The fence.** Lemma L (from the first refinement): a node still on epoch `e` is not
//! writable after `commit(e + 1) + lease_ms`, and a node applies a change only after it
//! was committed. So when node Y applies epoch `E` at `t` and becomes the primary of
//! slots it was not primary of, every node that owned one of them on an epoch before `E`
//! is harmless from `t + lease_ms` on: the fence lasts at most that long (this alone was
//! the whole fence once; it made every join and every leave cost `lease_ms` of
//! -CLUSTERDOWN on every slot of the node gaining slots). It ends earlier once each node
//! that may still write a gained slot has *shown it applied `E`*: heartbeat
//! acknowledgements carry the acknowledging node's applied epoch, and applied epochs only
//! grow, so from that acknowledgement on the node writes only the slots it owns at `E` or
//! later, and at `E` the gained slots are Y's. The nodes waited for (`awaiting`) are,
//! for every slot gained, its primary in every membership Y applied whose successor Y
//! applied less than `lease_ms` before `t` (the window in which lemma L does not yet rule
//! its owners out); that includes `E - 1`, the one just before. Not waited for: Y itself,
//! and owners on older memberships (lemma L already ruled them out by `t`). So:
//!
//! - a MarkUp (a node back from Down, or a new one) hands slots over from live owners
//!   that apply it within a heartbeat or two: the fence ends after about one round trip
//!   once they did (the driver sends a heartbeat to them as soon as the fence starts, and
//!   a node re-acknowledges the last heartbeat of each peer when it applies a change);
//! - a Remove hands slots over from the removed node, which is heartbeaten while a fence
//!   waits for it and acknowledges like any node once it applied its removal: a live node
//!   that leaves costs about one round trip too;
//! - if an owner waited for is Down (or Joining or Ready) in `E` (a MarkDown: the slots of
//!   a node presumably cut off), only time ends the fence: it may still be inside its
//!   lease, and would not acknowledge;
//! - a start-up (no previous membership) or a membership that skips epochs (a snapshot
//!   installed on a node far behind) counts as gaining every slot, and no fence that
//!   starts within `lease_ms` after it ends early: the memberships in between are
//!   unknown, and so are their owners.
//!
//! A newer membership that gains slots again adds a fence of its own; writes resume once
//! none holds.
//!
//! *Why no two writable owners of slot s.* Say X (on epoch `x`) and Y (on `y`) are both
//! writable owners of s at instant τ. `x != y` (one membership, one primary per epoch):
//! say `x < y`. Walk back from `y` over the consecutive memberships Y applied while it
//! was s's primary, to `g`, the first one (Y was not s's primary in the one before, or
//! `g` came after a gap or at start-up): `x < g`, since X, not Y, is s's primary at `x`.
//! Applying `g` at `t` started a fence, ended by τ. If by time, `τ >= t + lease_ms`, and
//! X, on `x < g`, is not writable after `commit(x + 1) + lease_ms <= t + lease_ms` (lemma
//! L). If early: no gap reached back into the window, and either `x`'s window was open at
//! `t`, so X was waited for and acknowledged with an applied epoch `>= g > x` before τ,
//! which it cannot take back; or it was closed: Y applied (or skipped past) `x + 1` by
//! `t - lease_ms`, and X is not writable after `commit(x + 1) + lease_ms <= t` (lemma L). Each case
//! contradicts X being writable on `x` at τ.
//!
//! What this assumes of the server: once the consensus thread has handed a membership to
//! the server (on_view, which runs before any acknowledgement naming that epoch leaves),
//! the server stops writing the slots it no longer owns. A command routed on the
//! previous topology just before the swap must therefore not be executed after it (the
//! time fence gave `lease_ms` of slack for that; the early release gives about one round
//! trip).
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
/// acknowledged; and the fences on its own writes.
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
    fences: Vec<Fence>,
    /// The memberships applied before the current one whose owners lemma L may not have
    /// ruled out yet (superseded less than `lease_ms` ago), oldest first.
    recent: Vec<Superseded>,
    /// Until then, memberships this node never saw (before its first, or skipped) may
    /// still have writable owners: no fence ends early.
    unknown_until: u64,
}

/// Writes held off after gaining slots (see the module docs).
#[derive(Clone, Debug)]
struct Fence {
    /// The epoch whose membership gained the slots.
    epoch: u64,
    started_ms: u64,
    /// `started_ms + lease_ms`: it ends then whatever happens.
    until_ms: u64,
    /// Bit i: member i may still write a gained slot and has not yet acknowledged a
    /// heartbeat sent since `started_ms` with an applied epoch `>= epoch`. The fence ends
    /// when no bit is left. None: only time ends it.
    awaiting: Option<u64>,
}

impl Fence {
    fn holds(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms && self.awaiting != Some(0)
    }
}

/// A membership this node applied, and when it applied the next one.
#[derive(Clone, Debug)]
struct Superseded {
    membership: Membership,
    at_ms: u64,
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
            fences: Vec::new(),
            recent: Vec::new(),
            unknown_until: 0,
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

    /// [`acked_at`](Self::acked_at), from a peer that had applied the membership of
    /// `peer_applied_epoch` when it acknowledged: that releases the fences waiting for it
    /// (started at or before `sent_ms`, for an epoch `<= peer_applied_epoch`). True when
    /// it ended a fence: writability may have changed, recompute it now.
    pub fn acked_with(
        &mut self,
        peer: u16,
        sent_ms: u64,
        peer_log_epoch: u64,
        peer_applied_epoch: u64,
    ) -> bool {
        self.acked_at(peer, sent_ms, peer_log_epoch);
        let Some(bit) = 1u64.checked_shl(peer as u32) else {
            return false;
        };
        let mut ended = false;
        for f in &mut self.fences {
            if let Some(awaiting) = &mut f.awaiting
                && *awaiting & bit != 0
                && sent_ms >= f.started_ms
                && peer_applied_epoch >= f.epoch
            {
                *awaiting &= !bit;
                ended |= *awaiting == 0;
            }
        }
        if ended {
            self.fences.retain(|f| f.awaiting != Some(0));
        }
        ended
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
    /// `now_ms`. If that made it the primary of slots it was not primary of, a fence
    /// holds its writes until the nodes that may still write them have shown they
    /// applied `next`, or `lease_ms` at most (see the module docs). Call it for every
    /// membership applied, in order.
    pub fn applied(
        &mut self,
        prev: Option<&Membership>,
        next: &Membership,
        me: Option<u16>,
        now_ms: u64,
    ) {
        self.applied_epoch = next.epoch;
        self.log_epoch = self.log_epoch.max(next.epoch);
        let lease = self.timing.lease_ms();
        self.fences.retain(|f| f.holds(now_ms));
        self.recent
            .retain(|r| r.at_ms.saturating_add(lease) > now_ms);
        let consecutive = match prev {
            // The same membership again (one agreed membership per epoch): no news.
            Some(p) if p.epoch == next.epoch => return,
            Some(p) if p.epoch + 1 == next.epoch => {
                self.recent.push(Superseded {
                    membership: p.clone(),
                    at_ms: now_ms,
                });
                true
            }
            _ => {
                self.recent.clear();
                self.unknown_until = now_ms.saturating_add(lease);
                false
            }
        };
        let Some(me) = me else { return };
        let name = &next.members[me as usize].spec.name;
        let after = primary_bitmap(next, me);
        let before = match prev {
            Some(p) if consecutive && p.index_of(name) == Some(me) => primary_bitmap(p, me),
            // Unknown memberships in between: any slot may have been someone else's.
            _ => vec![0; SLOT_WORDS],
        };
        let gained: Vec<u64> = after.iter().zip(&before).map(|(a, b)| a & !b).collect();
        if gained.iter().all(|&w| w == 0) {
            return;
        }
        let awaiting = if consecutive && now_ms >= self.unknown_until {
            let owners = self.owners_of(&gained, me);
            let all_reachable = (0..64u16)
                .filter(|&i| owners & (1 << i) != 0)
                .all(|i| matches!(next.state(i), Some(MemberState::Up | MemberState::Removed)));
            // One marked down is presumably cut off, maybe still inside its lease, and
            // would not acknowledge anyway. A removed one was removed by choice, and is
            // heartbeaten while a fence waits for it (the driver).
            all_reachable.then_some(owners)
        } else {
            None
        };
        self.fences.push(Fence {
            epoch: next.epoch,
            started_ms: now_ms,
            until_ms: now_ms.saturating_add(lease),
            awaiting,
        });
    }

    /// The primaries, other than `me`, of the `gained` slots in the recent memberships.
    fn owners_of(&self, gained: &[u64], me: u16) -> u64 {
        let mut owners = 0u64;
        let mut seen: Vec<Vec<u16>> = Vec::new();
        for r in &self.recent {
            // Rejoin and Ready leave the ring as it was: one look per distinct ring.
            let up: Vec<u16> = r.membership.up().collect();
            if seen.contains(&up) {
                continue;
            }
            seen.push(up);
            for_each_primary_range(&r.membership, |owner, from, to| {
                if owner != me && owner < 64 && any_bit(gained, from, to) {
                    owners |= 1 << owner;
                }
            });
        }
        owners
    }

    /// Whether a fence holds this node's writes at `now_ms` (whatever its lease).
    pub fn fenced(&self, now_ms: u64) -> bool {
        self.fences.iter().any(|f| f.holds(now_ms))
    }

    /// The members whose acknowledgement would release a fence that holds at `now_ms`
    /// (worth a heartbeat right away).
    pub fn awaited(&self, now_ms: u64) -> impl Iterator<Item = u16> + '_ {
        let bits = self
            .fences
            .iter()
            .filter(|f| f.holds(now_ms))
            .fold(0u64, |acc, f| acc | f.awaiting.unwrap_or(0));
        (0..64u16).filter(move |&i| bits & (1 << i) != 0)
    }

    /// The lease: a majority of `membership.voters()` (this node counts itself)
    /// acknowledged a heartbeat sent within the last `lease_ms`, and no fence holds. A
    /// node that is not writable answers -CLUSTERDOWN to keyed commands.
    pub fn writable(&self, membership: &Membership, me: u16, now_ms: u64) -> bool {
        self.writable_until(membership, me, now_ms).is_some()
    }

    /// If writable at `now_ms`, until when it stays writable with no news (exclusive).
    pub fn writable_until(&self, membership: &Membership, me: u16, now_ms: u64) -> Option<u64> {
        if self.fenced(now_ms) {
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

/// The slots member `me` is primary of in `m.ring(_)`, one bit per slot.
fn primary_bitmap(m: &Membership, me: u16) -> Vec<u64> {
    let mut bits = vec![0u64; SLOT_WORDS];
    if m.state(me) != Some(MemberState::Up) {
        return bits;
    }
    for_each_primary_range(m, |owner, from, to| {
        if owner == me {
            for s in from..to {
                bits[s / 64] |= 1 << (s % 64);
            }
        }
    });
    bits
}

/// Calls `f(primary, from, to)` for runs of slots `from..to` covering `m.ring(_)`,
/// computed from the vnodes alone (this runs on every apply and must stay cheap). A slot
/// belongs to the first vnode at or after it, so each vnode owns the slots from just
/// after the previous vnode up to its own position.
fn for_each_primary_range(m: &Membership, mut f: impl FnMut(u16, usize, usize)) {
    let mut points: Vec<(u16, &str, u16)> = Vec::with_capacity(m.up().count() * VNODES);
    for i in m.up() {
        let name = m.members[i as usize].spec.name.as_str();
        for v in 0..VNODES {
            points.push((vnode_position(name, v), name, i));
        }
    }
    if points.is_empty() {
        return;
    }
    // The ring's order: position, then name.
    points.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let last = points[points.len() - 1].0 as usize;
    for (k, &(pos, _, owner)) in points.iter().enumerate() {
        if k == 0 {
            // The first vnode also owns the slots past the last one (wrap around).
            f(owner, 0, pos as usize + 1);
            f(owner, last + 1, SLOTS);
        } else {
            f(owner, points[k - 1].0 as usize + 1, pos as usize + 1);
        }
    }
}

/// Whether any of the bits `from..to` is set.
fn any_bit(bits: &[u64], from: usize, to: usize) -> bool {
    (from..to).any(|s| bits[s / 64] & (1 << (s % 64)) != 0)
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

    fn spec(i: usize) -> NodeSpec {
        NodeSpec {
            name: format!("n{i}"),
            host: "127.0.0.1".into(),
            port: 7000 + i as u16,
            bus_port: 17000 + i as u16,
        }
    }

    fn members(n: usize) -> Membership {
        Membership::bootstrap((0..n).map(spec).collect())
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

    /// Applies `changes` to `m` one by one, node `me` applying each at the next time of
    /// `at`.
    fn apply_all(l: &mut Liveness, m: &mut Membership, me: u16, steps: &[(Change, u64)]) {
        for (change, at) in steps {
            let prev = m.clone();
            m.apply(change).unwrap();
            l.applied(Some(&prev), m, Some(me), *at);
        }
    }

    /// The members other than `me` that are primary, in `m`, of a slot `me` is primary
    /// of in `next`.
    fn previous_owners(m: &Membership, next: &Membership, me: u16) -> Vec<u16> {
        let (before, after) = (m.ring(1), next.ring(1));
        let mut owners: Vec<u16> = (0..SLOTS as u16)
            .filter(|&s| after.primary(s) == me && before.primary(s) != me)
            .map(|s| before.primary(s))
            .collect();
        owners.sort_unstable();
        owners.dedup();
        owners
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
        apply_all(
            &mut l,
            &mut m,
            0,
            &[
                (Change::Rejoin(1), 1400),
                (Change::Ready(1), 1400),
                (Change::MarkUp(1), 1400),
            ],
        );
        assert!(l.writable(&m, 0, 1400));
    }

    /// Node 0 marked down at 1000 and back Up (MarkUp, epoch 5) at `up_at`.
    fn back_up(up_at: u64) -> (Liveness, Membership) {
        let mut m = members(3);
        let mut l = live_at(&m, 0);
        apply_all(
            &mut l,
            &mut m,
            0,
            &[
                (Change::MarkDown(0), 1000),
                (Change::Rejoin(0), 1100),
                (Change::Ready(0), 1200),
                (Change::MarkUp(0), up_at),
            ],
        );
        assert_eq!(m.epoch, 5);
        (l, m)
    }

    #[test]
    fn a_fence_ends_once_every_previous_owner_applied_the_change() {
        let (mut l, m) = back_up(1300);
        let mut before = m.clone();
        before.members[0].state = MemberState::Ready;
        assert_eq!(previous_owners(&before, &m, 0), vec![1, 2]);
        l.acked(1, 1300);
        assert!(l.fenced(1300));
        assert!(!l.writable(&m, 0, 1300));
        assert_eq!(l.awaited(1300).collect::<Vec<_>>(), vec![1, 2]);
        // Node 1 applied epoch 5: one left.
        assert!(!l.acked_with(1, 1300, 5, 5));
        assert_eq!(l.awaited(1310).collect::<Vec<_>>(), vec![2]);
        assert!(!l.writable(&m, 0, 1310));
        // Node 2 too, well before the lease (1600): writable at once.
        assert!(l.acked_with(2, 1320, 5, 6));
        assert!(!l.fenced(1340));
        assert_eq!(l.awaited(1340).count(), 0);
        assert_eq!(l.writable_until(&m, 0, 1340), Some(1620));
    }

    #[test]
    fn acks_of_heartbeats_sent_before_the_fence_do_not_end_it() {
        let (mut l, m) = back_up(1300);
        l.acked(1, 1300);
        assert!(!l.acked_with(1, 1299, 5, 5));
        assert!(!l.acked_with(2, 1250, 5, 5));
        assert!(!l.writable(&m, 0, 1400));
        assert!(!l.acked_with(1, 1300, 5, 5));
        assert!(l.acked_with(2, 1300, 5, 5));
        assert!(l.writable(&m, 0, 1400));
    }

    #[test]
    fn a_stale_applied_epoch_does_not_end_a_fence() {
        let (mut l, m) = back_up(1300);
        l.acked(1, 1350);
        // Their logs hold epoch 5 but they applied only 4: they may still write.
        assert!(!l.acked_with(1, 1350, 5, 4));
        assert!(!l.acked_with(2, 1350, 5, 4));
        assert!(!l.writable(&m, 0, 1500));
        assert!(l.fenced(1599));
        // Time still ends it.
        assert!(!l.fenced(1600));
        assert!(l.writable(&m, 0, 1600));
    }

    #[test]
    fn a_previous_owner_marked_down_keeps_the_whole_fence() {
        let mut m = members(3);
        let mut l = live_at(&m, 0);
        // Node 0 takes over slots of node 1, which is Down in the new membership.
        apply_all(&mut l, &mut m, 0, &[(Change::MarkDown(1), 1000)]);
        l.acked(2, 1000);
        assert_eq!(l.awaited(1000).count(), 0);
        assert!(!l.acked_with(1, 1000, 2, 2));
        assert!(!l.acked_with(2, 1000, 2, 2));
        assert!(!l.writable(&m, 0, 1299));
        assert!(!l.fenced(1300));
    }

    #[test]
    fn a_removed_previous_owner_releases_the_fence_once_it_applied_its_removal() {
        let mut m = members(3);
        let mut l = live_at(&m, 0);
        apply_all(&mut l, &mut m, 0, &[(Change::Remove(1), 1000)]);
        l.acked(2, 1010);
        assert_eq!(l.awaited(1000).collect::<Vec<_>>(), vec![1]);
        // Before its removal: nothing.
        assert!(!l.acked_with(1, 1010, 2, 1));
        assert!(!l.writable(&m, 0, 1020));
        // Once it applied it, the fence ends.
        assert!(l.acked_with(1, 1010, 2, 2));
        assert!(l.writable(&m, 0, 1020));
    }

    #[test]
    fn owners_of_recent_memberships_are_waited_for_too() {
        // Node 2 is Ready when node 0 is marked down (at 2000: its slots go to node 1,
        // and node 0 may write them until 2000 + lease), then node 2 is marked up.
        let steps = |up_at| {
            let mut m = members(3);
            let mut l = live_at(&m, 2);
            apply_all(
                &mut l,
                &mut m,
                2,
                &[
                    (Change::MarkDown(2), 1000),
                    (Change::Rejoin(2), 1100),
                    (Change::Ready(2), 1200),
                    (Change::MarkDown(0), 2000),
                    (Change::MarkUp(2), up_at),
                ],
            );
            l.acked(1, up_at);
            (l, m)
        };
        // Node 1 alone owned node 2's slots at epoch 5, but node 0 owned some at epoch 4,
        // which was superseded less than a lease ago: node 0 may still write them, and
        // as it is Down, only time ends the fence.
        let (mut l, m) = steps(2100);
        assert!(!l.acked_with(1, 2100, 6, 6));
        l.acked(1, 2350);
        assert!(!l.writable(&m, 2, 2399));
        assert!(l.writable(&m, 2, 2400));
        // Once epoch 4 is a lease behind, node 1 alone is waited for.
        let (mut l, m) = steps(2300);
        assert_eq!(l.awaited(2300).collect::<Vec<_>>(), vec![1]);
        assert!(l.acked_with(1, 2300, 6, 6));
        assert!(l.writable(&m, 2, 2300));
    }

    #[test]
    fn after_start_up_or_a_skip_only_time_ends_a_fence() {
        // Start-up: every slot counts as gained, from unknown owners.
        let m = members(3);
        let mut l = live_at(&m, 0);
        l.acked(1, 0);
        assert_eq!(l.awaited(0).count(), 0);
        assert!(!l.acked_with(1, 0, 1, 1));
        assert!(!l.acked_with(2, 0, 1, 1));
        assert!(!l.writable(&m, 0, 299));
        assert!(!l.fenced(300));
        // A membership that skips epochs (a snapshot) fences, even if the ring is the
        // same: someone else may have owned this node's slots in between.
        let mut l = live_at(&m, 0);
        let mut skipped = m.clone();
        skipped.apply(&Change::Add(spec(3))).unwrap();
        skipped.apply(&Change::Ready(3)).unwrap();
        let (a, b) = (m.ring(1), skipped.ring(1));
        assert!((0..SLOTS as u16).all(|s| a.primary(s) == b.primary(s)));
        l.applied(Some(&m), &skipped, Some(0), 1000);
        l.acked(2, 1000);
        assert!(l.fenced(1000));
        assert!(!l.acked_with(1, 1000, 3, 3));
        assert!(!l.acked_with(2, 1000, 3, 3));
        assert!(!l.writable(&skipped, 0, 1299));
        assert!(!l.fenced(1300));
        // Within a lease after a skip, a MarkUp's fence does not end early either.
        let mut l = live_at(&m, 0);
        let mut m2 = m.clone();
        m2.apply(&Change::MarkDown(0)).unwrap();
        m2.apply(&Change::Rejoin(0)).unwrap();
        l.applied(Some(&m), &m2, Some(0), 1000);
        apply_all(
            &mut l,
            &mut m2,
            0,
            &[(Change::Ready(0), 1100), (Change::MarkUp(0), 1200)],
        );
        l.acked(1, 1200);
        assert!(!l.acked_with(1, 1200, 5, 5));
        assert!(!l.acked_with(2, 1200, 5, 5));
        l.acked(1, 1450);
        assert!(!l.writable(&m2, 0, 1499));
        assert!(l.writable(&m2, 0, 1500));
    }

    #[test]
    fn a_newer_fence_adds_to_the_one_holding() {
        let (mut l, mut m) = back_up(1300);
        l.acked(1, 1300);
        // Node 1 released the first fence's part; before node 2 does, node 0 gains more.
        assert!(!l.acked_with(1, 1300, 5, 5));
        apply_all(&mut l, &mut m, 0, &[(Change::MarkDown(2), 1400)]);
        l.acked(1, 1400);
        // Node 2 acknowledging epoch 5 ends the first fence; the second holds (node 2 is
        // Down in it) until 1400 + lease.
        assert!(l.acked_with(2, 1400, 6, 5));
        l.acked(1, 1650);
        assert!(!l.writable(&m, 0, 1699));
        assert!(l.writable(&m, 0, 1700));
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

//! Deterministic simulation of the membership state machine: N nodes, each with its own
//! applied `Membership` and `Liveness`, exchanging heartbeats over a network that a seeded
//! RNG makes lose, delay and partition messages, in simulated time of 1 ms resolution.
//!
//! Consensus is modelled simply (the real engine is dse-consensus): leadership has terms,
//! a node connected to a majority becomes leader of a fresh term when it has not heard of
//! a leader for its election timeout, and a change the leader proposes commits if the
//! leader is connected to a majority at that instant. The nodes connected to it then hold
//! the change in their log; every node applies the log in order, each entry after a random
//! delay and only while connected to a node that has it.
//!
//! Checked, for every seed:
//! 1. no two nodes ever own a slot for writes in the same epoch (owner = primary in its
//!    own applied membership's ring, and writable);
//! 2. at no instant are two nodes writable owners of the same slot, whatever their epochs;
//! 3. after the last partition heals, every node is Up and writable within a bound.
//!
//! `SIM_SEEDS=n` runs n seeds per cluster size instead of the default; a failure prints
//! its seed, and `SIM_SEED=s` replays that one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use dse_cluster::{
    Change, Liveness, MemberState, Membership, NodeSpec, Report, SLOTS, Timing, decide,
};

const REPLICAS: usize = 1;
const WORDS: usize = SLOTS / 64;

/// splitmix64: tiny, seedable, good enough to pick failures.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in lo..=hi.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

enum Msg {
    Heartbeat { sent_ms: u64, report: Report },
    Ack { sent_ms: u64, log_epoch: u64 },
}

struct Node {
    applied: Membership,
    /// How many log entries it applied.
    applied_len: usize,
    /// The highest epoch its log holds (agreed before applied).
    log_epoch: u64,
    live: Liveness,
    reports: Vec<Option<Report>>,
    /// The writability it last published, as a deadline (as dse-consensus does).
    writable_until: Option<u64>,
    next_heartbeat: u64,
    /// When it may apply its next entry, once it can reach a node that has it.
    deliver_at: Option<u64>,
    leader: bool,
    term: u64,
    leader_since: u64,
    last_leader_contact: u64,
    election_timeout: u64,
    /// Catching up after Joining, and syncing after Ready: done at these times.
    copied_at: Option<u64>,
    synced_at: Option<u64>,
}

struct Sim {
    rng: Rng,
    now: u64,
    timing: Timing,
    nodes: Vec<Node>,
    /// The agreed log and the membership after each entry.
    log: Vec<Change>,
    after: Vec<Membership>,
    max_term: u64,
    /// Partition group of each node: messages cross only within a group.
    group: Vec<u8>,
    loss_per_mille: u64,
    max_delay: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize, usize)>>,
    messages: HashMap<u64, Msg>,
    seq: u64,
    /// Property 1: (epoch, slot) -> owner, filled as nodes become writable owners.
    owners: HashMap<u64, Vec<u16>>,
    recorded: HashSet<(u64, usize)>,
    /// Each slot's primary per epoch (every node's membership of an epoch is the same:
    /// apply_next checks it).
    primaries: HashMap<u64, Vec<u16>>,
    bitmaps: HashMap<(u64, usize), Vec<u64>>,
    last_writers: Vec<(usize, u64)>,
}

impl Sim {
    fn new(seed: u64, n: usize) -> Sim {
        let mut rng = Rng(seed);
        let timing = Timing {
            node_timeout_ms: 600,
            grace_ms: 1000,
            heartbeat_ms: 50,
        };
        let specs: Vec<NodeSpec> = (0..n)
            .map(|i| NodeSpec {
                name: format!("node-{i}"),
                host: "127.0.0.1".into(),
                port: 7000 + i as u16,
                bus_port: 17000 + i as u16,
            })
            .collect();
        let boot = Membership::bootstrap(specs);
        let nodes = (0..n)
            .map(|i| {
                let mut live = Liveness::new(timing, 0);
                live.applied(None, &boot, Some(i as u16), 0);
                Node {
                    applied: boot.clone(),
                    applied_len: 0,
                    log_epoch: boot.epoch,
                    live,
                    reports: vec![None; n],
                    writable_until: None,
                    next_heartbeat: rng.range(0, timing.heartbeat_ms),
                    deliver_at: None,
                    leader: false,
                    term: 0,
                    leader_since: 0,
                    last_leader_contact: 0,
                    election_timeout: rng.range(150, 300),
                    copied_at: None,
                    synced_at: None,
                }
            })
            .collect();
        let loss_per_mille = [0, 10, 50, 150][rng.range(0, 3) as usize];
        let max_delay = [2, 10, 40][rng.range(0, 2) as usize];
        Sim {
            rng,
            now: 0,
            timing,
            nodes,
            log: Vec::new(),
            after: Vec::new(),
            max_term: 0,
            group: vec![0; n],
            loss_per_mille,
            max_delay,
            queue: BinaryHeap::new(),
            messages: HashMap::new(),
            seq: 0,
            owners: HashMap::new(),
            recorded: HashSet::new(),
            primaries: HashMap::new(),
            bitmaps: HashMap::new(),
            last_writers: Vec::new(),
        }
    }

    fn n(&self) -> usize {
        self.nodes.len()
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.group[a] == self.group[b]
    }

    fn connected_majority(&self, x: usize) -> bool {
        let m = &self.nodes[x].applied;
        let reach = m
            .voters()
            .filter(|&v| self.connected(x, v as usize))
            .count();
        reach >= m.majority()
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if self.rng.chance(self.loss_per_mille) {
            return;
        }
        let at = self.now + self.rng.range(1, self.max_delay);
        self.seq += 1;
        self.messages.insert(self.seq, msg);
        self.queue.push(Reverse((at, self.seq, from, to)));
    }

    fn report(&self, x: usize) -> Report {
        let node = &self.nodes[x];
        let done = |t: Option<u64>| t.is_some_and(|t| self.now >= t);
        let state = node.applied.state(x as u16);
        Report {
            epoch: node.applied.epoch,
            caught_up: state == Some(MemberState::Joining) && done(node.copied_at),
            quorum_synced: state == Some(MemberState::Ready) && done(node.synced_at),
        }
    }

    fn publish(&mut self, x: usize) {
        let node = &mut self.nodes[x];
        node.live.set_log_epoch(node.log_epoch);
        node.writable_until = node.live.writable_until(&node.applied, x as u16, self.now);
    }

    fn apply_next(&mut self, x: usize) {
        let k = self.nodes[x].applied_len;
        let change = self.log[k].clone();
        let now = self.now;
        let copy_ms = self.rng.range(0, 400);
        let sync_ms = self.rng.range(0, 200);
        let node = &mut self.nodes[x];
        let prev = node.applied.clone();
        node.applied
            .apply(&change)
            .unwrap_or_else(|e| panic!("the leader proposed an invalid change {change:?}: {e}"));
        assert_eq!(
            node.applied, self.after[k],
            "node {x} diverged at entry {k}"
        );
        node.applied_len += 1;
        node.log_epoch = node.log_epoch.max(node.applied.epoch);
        node.live
            .applied(Some(&prev), &node.applied, Some(x as u16), now);
        let before = prev.state(x as u16);
        let state = node.applied.state(x as u16);
        if state == Some(MemberState::Joining) && before != state {
            node.copied_at = Some(now + copy_ms);
        }
        if state == Some(MemberState::Ready) && before != state {
            node.synced_at = Some(now + sync_ms);
        }
        self.publish(x);
    }

    fn step_network(&mut self) {
        while let Some(Reverse((at, seq, from, to))) = self.queue.peek().copied() {
            if at > self.now {
                break;
            }
            self.queue.pop();
            let msg = self.messages.remove(&seq).unwrap();
            if !self.connected(from, to) {
                continue;
            }
            match msg {
                Msg::Heartbeat { sent_ms, report } => {
                    self.nodes[to].reports[from] = Some(report);
                    let log_epoch = self.nodes[to].log_epoch;
                    self.send(to, from, Msg::Ack { sent_ms, log_epoch });
                }
                Msg::Ack { sent_ms, log_epoch } => {
                    self.nodes[to]
                        .live
                        .acked_at(from as u16, sent_ms, log_epoch);
                }
            }
        }
    }

    fn step_consensus(&mut self) {
        let n = self.n();
        // The leader of the newest term keeps in touch with whoever it can reach.
        if let Some(l) =
            (0..n).find(|&i| self.nodes[i].leader && self.nodes[i].term == self.max_term)
        {
            for i in 0..n {
                if self.connected(l, i) {
                    self.nodes[i].last_leader_contact = self.now;
                    self.nodes[i].term = self.max_term;
                    if i != l {
                        self.nodes[i].leader = false;
                    }
                }
            }
        }
        // Elections.
        for x in 0..n {
            let node = &self.nodes[x];
            let current = node.leader && node.term == self.max_term;
            if current || self.now < node.last_leader_contact + node.election_timeout {
                continue;
            }
            if !self.connected_majority(x) {
                continue;
            }
            // A leader holds every committed entry (the voters see to it); it applies
            // them before deciding anything.
            self.max_term += 1;
            while self.nodes[x].applied_len < self.log.len() {
                self.apply_next(x);
            }
            let timeout = self.rng.range(150, 300);
            let node = &mut self.nodes[x];
            node.leader = true;
            node.term = self.max_term;
            node.leader_since = self.now;
            node.last_leader_contact = self.now;
            node.election_timeout = timeout;
            break;
        }
        // Log delivery.
        for x in 0..n {
            if self.nodes[x].applied_len >= self.log.len() {
                continue;
            }
            let k = self.nodes[x].applied_len;
            let reachable = (0..n)
                .any(|y| y != x && self.connected(x, y) && self.nodes[y].applied_len > k)
                || (self.nodes[x].leader && self.nodes[x].term == self.max_term);
            match self.nodes[x].deliver_at {
                Some(at) if at <= self.now && reachable => {
                    self.nodes[x].deliver_at = None;
                    self.apply_next(x);
                }
                Some(at) if at <= self.now => {
                    // Cut off from every node that has it: try again later.
                    let delay = self.rng.range(1, 60);
                    self.nodes[x].deliver_at = Some(self.now + delay);
                }
                Some(_) => {}
                None => {
                    let delay = self.rng.range(1, 60);
                    self.nodes[x].deliver_at = Some(self.now + delay);
                }
            }
        }
    }

    fn tick(&mut self, x: usize) {
        let now = self.now;
        self.nodes[x].next_heartbeat = now + self.timing.heartbeat_ms;
        let report = self.report(x);
        self.nodes[x].reports[x] = Some(report);
        let voters: Vec<u16> = self.nodes[x].applied.voters().collect();
        for v in voters {
            if v as usize != x {
                self.send(
                    x,
                    v as usize,
                    Msg::Heartbeat {
                        sent_ms: now,
                        report,
                    },
                );
            }
        }
        self.publish(x);
        // The leader decides, with one change in flight: it waits to apply its last one.
        let node = &self.nodes[x];
        if !node.leader || node.applied_len < self.log.len() {
            return;
        }
        let Some(change) = decide(
            &node.applied,
            x as u16,
            &node.live,
            &node.reports,
            node.leader_since,
            now,
        ) else {
            return;
        };
        if node.term != self.max_term || !self.connected_majority(x) {
            return; // a stale or cut-off leader commits nothing
        }
        let mut next = self
            .after
            .last()
            .cloned()
            .unwrap_or_else(|| node.applied.clone());
        next.apply(&change)
            .expect("decide proposed an invalid change");
        let epoch = next.epoch;
        self.log.push(change);
        self.after.push(next);
        for i in 0..self.n() {
            if self.connected(x, i) {
                self.nodes[i].log_epoch = self.nodes[i].log_epoch.max(epoch);
            }
        }
    }

    fn primaries(&mut self, x: usize) -> &Vec<u16> {
        let m = &self.nodes[x].applied;
        self.primaries.entry(m.epoch).or_insert_with(|| {
            let ring = m.ring(REPLICAS);
            (0..SLOTS as u16).map(|s| ring.primary(s)).collect()
        })
    }

    fn bitmap(&mut self, x: usize) -> Vec<u64> {
        let key = (self.nodes[x].applied.epoch, x);
        if let Some(b) = self.bitmaps.get(&key) {
            return b.clone();
        }
        let mut bits = vec![0u64; WORDS];
        for (s, &p) in self.primaries(x).iter().enumerate() {
            if p == x as u16 {
                bits[s / 64] |= 1 << (s % 64);
            }
        }
        self.bitmaps.insert(key, bits.clone());
        bits
    }

    /// The next instant anything can happen: nothing changes between events, so the
    /// simulation jumps from one to the next (still in whole ms).
    fn next_event(&self, next_change: u64) -> u64 {
        let mut t = next_change;
        if let Some(Reverse((at, ..))) = self.queue.peek() {
            t = t.min(*at);
        }
        for node in &self.nodes {
            t = t.min(node.next_heartbeat);
            if let Some(at) = node.deliver_at {
                t = t.min(at);
            }
            if !(node.leader && node.term == self.max_term) {
                t = t.min(node.last_leader_contact + node.election_timeout);
            }
        }
        t.max(self.now + 1)
    }

    fn writable(&self, x: usize) -> bool {
        self.nodes[x].writable_until.is_some_and(|u| self.now < u)
    }

    fn writable_owner(&self, x: usize) -> bool {
        self.writable(x) && self.nodes[x].applied.state(x as u16) == Some(MemberState::Up)
    }

    fn check(&mut self) -> Result<(), String> {
        let writers: Vec<(usize, u64)> = (0..self.n())
            .filter(|&x| self.writable_owner(x))
            .map(|x| (x, self.nodes[x].applied.epoch))
            .collect();
        if writers == self.last_writers {
            return Ok(());
        }
        // Property 1: per epoch, each slot has one owner for writes, ever.
        for &(x, epoch) in &writers {
            if !self.recorded.insert((epoch, x)) {
                continue;
            }
            let primaries = self.primaries(x).clone();
            let owners = self
                .owners
                .entry(epoch)
                .or_insert_with(|| vec![u16::MAX; SLOTS]);
            for s in 0..SLOTS {
                if primaries[s] != x as u16 {
                    continue;
                }
                if owners[s] != u16::MAX && owners[s] != x as u16 {
                    return Err(format!(
                        "epoch {epoch}: slot {s} owned for writes by nodes {} and {x}",
                        owners[s]
                    ));
                }
                owners[s] = x as u16;
            }
        }
        // Property 2: at this instant, writable owners' slots are disjoint.
        for (i, &(a, ea)) in writers.iter().enumerate() {
            for &(b, eb) in &writers[i + 1..] {
                let ba = self.bitmap(a);
                let bb = self.bitmap(b);
                if let Some(w) = (0..WORDS).find(|&w| ba[w] & bb[w] != 0) {
                    return Err(format!(
                        "t={}: nodes {a} (epoch {ea}) and {b} (epoch {eb}) both write slots of word {w}",
                        self.now
                    ));
                }
            }
        }
        self.last_writers = writers;
        Ok(())
    }

    fn all_up_and_writable(&self) -> bool {
        let epoch = self.nodes[0].applied.epoch;
        self.nodes.iter().enumerate().all(|(x, node)| {
            node.applied.epoch == epoch
                && node
                    .applied
                    .members
                    .iter()
                    .all(|m| m.state == MemberState::Up)
                && self.writable(x)
        })
    }

    /// Runs the whole scenario; Err says what went wrong.
    fn run(&mut self) -> Result<String, String> {
        let n = self.n();
        // The partition schedule: symmetric splits that heal, until `calm`.
        let calm = self.rng.range(3000, 10_000);
        let mut next_change = self.rng.range(500, 2000);
        let mut partitioned = false;
        let mut partitions = 0;
        let mut last_heal = 0;
        let bound = 8000;
        loop {
            self.now = self.next_event(if partitioned || self.now < calm {
                next_change
            } else {
                u64::MAX
            });
            if self.now >= next_change && (partitioned || self.now < calm) {
                if partitioned {
                    self.group = vec![0; n];
                    partitioned = false;
                    last_heal = self.now;
                    next_change = self.now + self.rng.range(0, 2000);
                } else {
                    if self.rng.chance(500) {
                        let lone = self.rng.range(0, n as u64 - 1) as usize;
                        self.group[lone] = 1;
                    } else {
                        for g in self.group.iter_mut() {
                            *g = (self.rng.next() % 2) as u8;
                        }
                    }
                    partitioned = self.group.iter().any(|&g| g != self.group[0]);
                    partitions += partitioned as u32;
                    next_change = self.now + self.rng.range(100, 3000);
                }
            }
            self.step_network();
            self.step_consensus();
            for x in 0..n {
                if self.now >= self.nodes[x].next_heartbeat {
                    self.tick(x);
                }
            }
            self.check()?;
            let healed = !partitioned && self.now >= calm;
            if healed && self.all_up_and_writable() {
                return Ok(format!(
                    "{partitions} partitions, {} changes, settled at {} ms",
                    self.log.len(),
                    self.now
                ));
            }
            if !partitioned && self.now >= calm.max(last_heal) + bound {
                let states: Vec<_> = self
                    .nodes
                    .iter()
                    .enumerate()
                    .map(|(x, n)| {
                        (
                            n.applied.epoch,
                            n.applied
                                .members
                                .iter()
                                .map(|m| m.state)
                                .collect::<Vec<_>>(),
                            self.writable(x),
                        )
                    })
                    .collect();
                return Err(format!(
                    "not every node Up and writable {bound} ms after the last heal: {states:?}"
                ));
            }
        }
    }
}

fn seeds(default: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("SIM_SEED") {
        return vec![s.parse().expect("SIM_SEED: a number")];
    }
    let count = std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (0..count).collect()
}

fn simulate(n: usize, default_seeds: u64) {
    let (mut runs, mut downs, mut changes) = (0u64, 0u64, 0usize);
    for seed in seeds(default_seeds) {
        let mut sim = Sim::new(seed, n);
        if let Err(e) = sim.run() {
            panic!("{n} nodes, seed {seed} (SIM_SEED={seed} replays it): {e}");
        }
        runs += 1;
        changes += sim.log.len();
        downs += sim.log.iter().any(|c| matches!(c, Change::MarkDown(_))) as u64;
    }
    eprintln!("{n} nodes: {runs} runs, {changes} changes, {downs} runs marked a node down");
    // The scenarios must exercise the hand-overs, not just a quiet cluster.
    assert!(runs < 20 || downs * 4 > runs, "too few failures simulated");
}

#[test]
fn three_nodes() {
    simulate(3, 1000);
}

#[test]
fn five_nodes() {
    simulate(5, 500);
}

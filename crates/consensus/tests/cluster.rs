//! In-process clusters of real `Consensus` instances (real openraft, each node with its
//! own directory) connected by a transport that can drop messages and partition nodes.
//! Small timings (node timeout 600 ms, no grace, heartbeats every 50 ms) keep the suite
//! to seconds; every wait polls a condition with a deadline.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use dse_cluster::{Change, MemberState, Membership, NodeSpec, Report, Timing};
use dse_consensus::{Config, Consensus, Transport, View};

const TIMING: Timing = Timing {
    node_timeout_ms: 600,
    grace_ms: 0,
    heartbeat_ms: 50,
};

fn spec(i: usize) -> NodeSpec {
    NodeSpec {
        name: format!("node-{i}"),
        host: "127.0.0.1".into(),
        port: 7000 + i as u16,
        bus_port: 17000 + i as u16,
    }
}

/// The in-process network: delivers straight into the target's inbox, unless the pair
/// is cut or the message is dropped at random.
#[derive(Default)]
struct Net {
    nodes: RwLock<HashMap<String, Arc<Consensus>>>,
    /// Isolated nodes talk to nobody.
    isolated: Mutex<HashSet<String>>,
    /// Per mille of messages lost.
    loss: AtomicU64,
    rng: AtomicU64,
}

impl Net {
    fn lost(&self) -> bool {
        let loss = self.loss.load(Ordering::Relaxed);
        if loss == 0 {
            return false;
        }
        // splitmix64 step; contention only makes it more random.
        let x = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % 1000 < loss
    }
}

struct Link {
    net: Arc<Net>,
    from: String,
}

impl Transport for Link {
    fn send(&self, to: &NodeSpec, msg: Vec<u8>) {
        let nodes = self.net.nodes.read().unwrap();
        let target = if to.name.is_empty() {
            // CLUSTER MEET dials by address.
            nodes
                .iter()
                .find(|(name, _)| spec_of(name).bus_port == to.bus_port)
                .map(|(n, c)| (n.clone(), c.clone()))
        } else {
            nodes.get(&to.name).map(|c| (to.name.clone(), c.clone()))
        };
        drop(nodes);
        let Some((name, target)) = target else { return };
        {
            let isolated = self.net.isolated.lock().unwrap();
            if isolated.contains(&self.from) || isolated.contains(&name) {
                return;
            }
        }
        if self.net.lost() {
            return;
        }
        target.deliver(&self.from, &msg);
    }
}

fn spec_of(name: &str) -> NodeSpec {
    spec(name.trim_start_matches("node-").parse().unwrap())
}

/// A view, the node that published it, when, and whether that node was writable then.
type Seen = (String, Arc<View>, Instant, bool);

struct Cluster {
    net: Arc<Net>,
    _tmp: tempfile::TempDir,
    dirs: BTreeMap<String, PathBuf>,
    /// Every view every node published, for the agreement check.
    views: Arc<Mutex<Vec<Seen>>>,
    bootstrap: Vec<NodeSpec>,
    timing: Timing,
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = (0..n)
            .map(|i| (spec(i).name, tmp.path().join(format!("node-{i}"))))
            .collect();
        Cluster {
            net: Arc::new(Net::default()),
            _tmp: tmp,
            dirs,
            views: Arc::default(),
            bootstrap: (0..n).map(spec).collect(),
            timing: TIMING,
        }
    }

    /// Starts node `i` with the cluster's bootstrap list (or none: a node to be met).
    fn start(&mut self, i: usize, bootstrap: bool) {
        let me = spec(i);
        let fresh = self._tmp.path().join(&me.name);
        let dir = self.dirs.entry(me.name.clone()).or_insert(fresh).clone();
        let views = self.views.clone();
        let name = me.name.clone();
        let net = self.net.clone();
        let c = Consensus::start(
            Config {
                myself: me.clone(),
                bootstrap: if bootstrap {
                    self.bootstrap.clone()
                } else {
                    Vec::new()
                },
                dir,
                timing: self.timing,
            },
            Arc::new(Link {
                net: self.net.clone(),
                from: me.name.clone(),
            }),
            Box::new(move |v| {
                // The lease is published before the view: this is what the server
                // would see along with the view. (None while starting.)
                let writable = net
                    .nodes
                    .read()
                    .unwrap()
                    .get(&name)
                    .is_some_and(|c| c.writable());
                let seen = (name.clone(), v, Instant::now(), writable);
                views.lock().unwrap().push(seen);
            }),
        )
        .unwrap();
        self.net.nodes.write().unwrap().insert(me.name, Arc::new(c));
    }

    fn start_all(&mut self, order: &[usize]) {
        for &i in order {
            self.start(i, true);
        }
    }

    fn node(&self, name: &str) -> Arc<Consensus> {
        self.net.nodes.read().unwrap()[name].clone()
    }

    fn names(&self) -> Vec<String> {
        self.net.nodes.read().unwrap().keys().cloned().collect()
    }

    fn stop(&mut self, name: &str) {
        let mut c = self.net.nodes.write().unwrap().remove(name).unwrap();
        // Deliveries in progress hold a clone for an instant.
        let c = loop {
            match Arc::try_unwrap(c) {
                Ok(c) => break c,
                Err(back) => {
                    c = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        c.shutdown();
    }

    fn isolate(&self, name: &str, cut: bool) {
        let mut isolated = self.net.isolated.lock().unwrap();
        if cut {
            isolated.insert(name.to_string());
        } else {
            isolated.remove(name);
        }
    }

    /// What the server does as it catches up: a Joining node reports it copied its
    /// slots, a Ready one that it is in sync (for the epoch it is at).
    fn pump_reports(&self) {
        for name in self.names() {
            let c = self.node(&name);
            let v = c.view();
            let Some(me) = v.myself else { continue };
            let state = v.membership.state(me);
            c.report(Report {
                epoch: v.membership.epoch,
                caught_up: matches!(state, Some(MemberState::Joining | MemberState::Ready)),
                quorum_synced: state == Some(MemberState::Ready),
            });
        }
    }

    /// Polls `cond` (pumping reports) until it holds; panics with `what` after `secs`.
    fn wait(&self, secs: u64, what: &str, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            if Instant::now() > deadline {
                let views: Vec<_> = self
                    .names()
                    .iter()
                    .map(|n| (n.clone(), self.node(n).view(), self.node(n).writable()))
                    .collect();
                panic!("timed out waiting for: {what}\nviews: {views:#?}");
            }
            self.pump_reports();
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn leader(&self) -> Option<String> {
        let names = self.names();
        let views: Vec<Arc<View>> = names.iter().map(|n| self.node(n).view()).collect();
        let first = views.first()?;
        let l = first.leader?;
        let term = first.term;
        views
            .iter()
            .all(|v| v.leader == Some(l) && v.term == term)
            .then(|| first.membership.members[l as usize].spec.name.clone())
    }

    fn state_everywhere(&self, of: &str, state: MemberState) -> bool {
        self.names().iter().all(|n| {
            let v = self.node(n).view();
            v.membership
                .index_of(of)
                .is_some_and(|i| v.membership.state(i) == Some(state))
        })
    }

    fn all_writable(&self) -> bool {
        self.names().iter().all(|n| self.node(n).writable())
    }

    fn all_up_same_epoch(&self) -> bool {
        let names = self.names();
        let views: Vec<Arc<View>> = names.iter().map(|n| self.node(n).view()).collect();
        views.iter().all(|v| {
            v.membership == views[0].membership
                && v.membership
                    .members
                    .iter()
                    .all(|m| matches!(m.state, MemberState::Up | MemberState::Removed))
        })
    }

    /// No two nodes ever showed different memberships for the same epoch.
    fn check_agreement(&self) {
        let views = self.views.lock().unwrap();
        let mut by_epoch: HashMap<u64, (&str, &Membership)> = HashMap::new();
        for (name, v, ..) in views.iter() {
            let m = &v.membership;
            if let Some((other, seen)) = by_epoch.get(&m.epoch) {
                assert_eq!(*seen, m, "{other} and {name} disagree on epoch {}", m.epoch);
            } else {
                by_epoch.insert(m.epoch, (name, m));
            }
        }
    }

    fn epoch(&self, name: &str) -> u64 {
        self.node(name).view().membership.epoch
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for name in self.names() {
            self.stop(&name);
        }
    }
}

fn formed(c: &Cluster) -> bool {
    c.leader().is_some()
        && c.names()
            .iter()
            .all(|n| c.node(n).view().membership == Membership::bootstrap(c.bootstrap.clone()))
}

#[test]
fn forms_from_the_bootstrap_list_in_any_order_despite_loss() {
    for (n, order) in [(3, vec![2, 0, 1]), (5, vec![4, 1, 3, 0, 2])] {
        let mut c = Cluster::new(n);
        c.net.loss.store(100, Ordering::Relaxed);
        for &i in &order {
            c.start(i, true);
            std::thread::sleep(Duration::from_millis(30));
        }
        c.wait(15, "one leader, epoch-1 membership everywhere", formed);
        for name in c.names() {
            let v = c.node(&name).view();
            assert_eq!(v.membership.epoch, 1);
            assert_eq!(v.myself, v.membership.index_of(&name));
        }
        c.wait(10, "every node writable", Cluster::all_writable);
        c.check_agreement();
    }
}

fn isolate_and_heal(n: usize, isolate_leader: bool) {
    let mut c = Cluster::new(n);
    c.start_all(&(0..n).collect::<Vec<_>>());
    c.wait(15, "formed", formed);
    c.wait(10, "writable", Cluster::all_writable);
    let leader = c.leader().unwrap();
    let victim = if isolate_leader {
        leader.clone()
    } else {
        c.names().into_iter().find(|x| *x != leader).unwrap()
    };
    let before = c.epoch(&victim);

    c.isolate(&victim, true);
    let cut_at = Instant::now();
    let lease = Duration::from_millis(TIMING.lease_ms());
    c.wait(5, "the isolated node stops being writable", |c| {
        !c.node(&victim).writable()
    });
    let took = cut_at.elapsed();
    assert!(
        took <= lease + Duration::from_millis(100),
        "writable {took:?} after the cut; the lease is {lease:?}"
    );

    let others: Vec<String> = c.names().into_iter().filter(|x| *x != victim).collect();
    c.wait(15, "the others mark it down", |c| {
        others.iter().all(|o| {
            let v = c.node(o).view();
            let i = v.membership.index_of(&victim).unwrap();
            v.membership.state(i) == Some(MemberState::Down) && v.membership.epoch > before
        })
    });
    c.wait(10, "the others stay writable", |c| {
        others.iter().all(|o| c.node(o).writable())
    });
    assert!(!c.node(&victim).writable());

    c.isolate(&victim, false);
    let down_epoch = c.epoch(&others[0]);
    c.wait(20, "back Up everywhere, every node writable", |c| {
        c.all_up_same_epoch() && c.all_writable()
    });
    // Rejoin, Ready, MarkUp: three more changes at least.
    assert!(c.epoch(&victim) >= down_epoch + 3);
    c.check_agreement();
}

#[test]
fn an_isolated_follower_loses_the_lease_is_marked_down_and_comes_back() {
    isolate_and_heal(3, false);
}

#[test]
fn an_isolated_leader_in_five_is_replaced_marked_down_and_comes_back() {
    isolate_and_heal(5, true);
}

#[test]
fn a_killed_leader_is_marked_down_and_rejoins_from_its_directory() {
    let mut c = Cluster::new(3);
    c.start_all(&[0, 1, 2]);
    c.wait(15, "formed", formed);
    let old = c.leader().unwrap();
    let before = c.epoch(&old);
    c.stop(&old);
    c.wait(15, "a new leader, and the old one marked down", |c| {
        c.leader().is_some_and(|l| l != old) && c.state_everywhere(&old, MemberState::Down)
    });
    assert!(c.epoch(&c.names()[0]) > before);
    c.wait(10, "the rest writable", Cluster::all_writable);

    let i: usize = old.trim_start_matches("node-").parse().unwrap();
    // No bootstrap list: all it knows is in its directory (its vote, log and snapshot).
    c.start(i, false);
    c.wait(20, "back Up everywhere, every node writable", |c| {
        c.all_up_same_epoch() && c.all_writable() && c.names().len() == 3
    });
    c.check_agreement();
}

#[test]
fn a_met_node_joins_then_is_removed() {
    let mut c = Cluster::new(3);
    c.start_all(&[0, 1, 2]);
    c.wait(15, "formed", formed);
    // Fill the log past a snapshot (every 64 entries) so the newcomer gets a snapshot,
    // not the whole log: refused changes are log entries too.
    let leader = c.leader().unwrap();
    for _ in 0..70 {
        let (tx, rx) = std::sync::mpsc::channel();
        c.node(&leader)
            .propose(Change::Ready(0), Box::new(move |r| tx.send(r).unwrap()));
        let refused = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(refused.unwrap_err().contains("Up"));
    }
    assert!(c.dirs[&leader].join("snapshot.json").exists());
    c.start(3, false);
    assert_eq!(c.node("node-3").view().myself, None);

    let (tx, rx) = std::sync::mpsc::channel();
    let new = spec(3);
    c.node("node-0").meet(
        new.host.clone(),
        new.port,
        new.bus_port,
        Box::new(move |r| tx.send(r).unwrap()),
    );
    let met = rx.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(met, Ok(()));
    c.wait(20, "node-3 Up everywhere, every node writable", |c| {
        c.state_everywhere("node-3", MemberState::Up) && c.all_writable()
    });
    let v = c.node("node-3").view();
    assert_eq!(v.myself, Some(3));
    // It was sent the leader's snapshot (it applied too few entries to make one).
    assert!(c.dirs["node-3"].join("snapshot.json").exists());
    assert_eq!(v.membership.members[3].spec, new);
    assert_eq!(v.membership.voters().count(), 4);

    // A second meet of a member is refused (the node no longer answers hellos).
    let (tx, rx) = std::sync::mpsc::channel();
    c.node("node-1").meet(
        new.host.clone(),
        new.port,
        new.bus_port,
        Box::new(move |r| tx.send(r).unwrap()),
    );
    assert!(rx.recv_timeout(Duration::from_secs(15)).unwrap().is_err());

    // CLUSTER FORGET from a follower.
    let leader = c.leader().unwrap();
    let follower = c
        .names()
        .into_iter()
        .find(|n| *n != leader && n != "node-3")
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    c.node(&follower)
        .propose(Change::Remove(3), Box::new(move |r| tx.send(r).unwrap()));
    let epoch = rx.recv_timeout(Duration::from_secs(15)).unwrap().unwrap();
    c.wait(10, "node-3 Removed everywhere", |c| {
        c.state_everywhere("node-3", MemberState::Removed)
            && c.names().iter().all(|n| c.epoch(n) >= epoch)
    });
    let v = c.node(&leader).view();
    assert_eq!(v.membership.voters().count(), 3);
    // A removed node sends no heartbeats: its lease runs out.
    c.wait(5, "node-3 not writable", |c| !c.node("node-3").writable());
    // The other three keep a majority of three and stay writable.
    c.stop("node-3");
    c.wait(10, "the three writable", Cluster::all_writable);

    // An invalid change comes back as an error, and changes nothing.
    let (tx, rx) = std::sync::mpsc::channel();
    c.node(&follower)
        .propose(Change::Remove(3), Box::new(move |r| tx.send(r).unwrap()));
    assert!(rx.recv_timeout(Duration::from_secs(15)).unwrap().is_err());
    c.check_agreement();
}

#[test]
fn a_follower_back_up_is_writable_long_before_a_lease() {
    let mut c = Cluster::new(3);
    // A long lease (2 s), so that ending its fence early is clearly not the lease's end.
    c.timing = Timing {
        node_timeout_ms: 4000,
        grace_ms: 0,
        heartbeat_ms: 50,
    };
    let lease = Duration::from_millis(c.timing.lease_ms());
    c.start_all(&[0, 1, 2]);
    c.wait(15, "formed", formed);
    c.wait(10, "writable", Cluster::all_writable);
    let leader = c.leader().unwrap();
    let victim = c.names().into_iter().find(|x| *x != leader).unwrap();
    c.isolate(&victim, true);
    let others: Vec<String> = c.names().into_iter().filter(|x| *x != victim).collect();
    c.wait(20, "the others mark it down", |c| {
        others.iter().all(|o| {
            let v = c.node(o).view();
            let i = v.membership.index_of(&victim).unwrap();
            v.membership.state(i) == Some(MemberState::Down)
        })
    });
    let down_epoch = c.epoch(&others[0]);
    c.isolate(&victim, false);

    // When the victim applied its MarkUp (its first view past the MarkDown that shows it
    // Up), and whether it was writable then.
    let marked_up = |c: &Cluster| -> Option<(Instant, bool)> {
        c.views
            .lock()
            .unwrap()
            .iter()
            .find(|(name, v, ..)| {
                *name == victim
                    && v.membership.epoch > down_epoch
                    && v.myself.and_then(|me| v.membership.state(me)) == Some(MemberState::Up)
            })
            .map(|&(_, _, at, writable)| (at, writable))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let (up_at, writable_at) = loop {
        assert!(
            Instant::now() < deadline,
            "the victim never came back writable"
        );
        c.pump_reports();
        if let Some((up_at, _)) = marked_up(&c)
            && c.node(&victim).writable()
        {
            break (up_at, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let (_, writable_at_markup) = marked_up(&c).unwrap();
    // Its MarkUp gave it back slots: fenced at first...
    assert!(!writable_at_markup, "no fence after the MarkUp");
    // ... until the two others showed they applied it, long before the lease's end.
    let took = writable_at - up_at;
    eprintln!("writable {took:?} after its MarkUp (lease {lease:?})");
    assert!(
        took < lease / 2,
        "writable {took:?} after its MarkUp; the lease is {lease:?}"
    );
    c.wait(10, "back Up everywhere, every node writable", |c| {
        c.all_up_same_epoch() && c.all_writable()
    });
    c.check_agreement();
}

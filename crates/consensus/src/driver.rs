//! The consensus thread's loop: messages in, heartbeats out, the lease, the leader's
//! decisions and raft voter bookkeeping, views to the server.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dse_cluster::{Change, Liveness, MemberState, Membership, NodeSpec, Report, Timing, decide};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::sync::{mpsc, watch};

use crate::network::{Network, Rpc};
use crate::store::{LogStore, Progress, StateMachine};
use crate::types::{Applied, Command, Raft, node_raft_id};
use crate::wire::{Body, Envelope};
use crate::{Config, ConsensusError, Input, ProposeDone, Shared, Transport, View};

/// A change waiting to be proposed, and whom to tell the outcome.
struct Pending {
    change: Change,
    done: ProposeDone,
    /// Retries left after a stale epoch or a lost leadership.
    retries: u32,
}

enum Outcome {
    Applied(Applied),
    NotLeader,
    Failed(String),
}

/// Completions of the tasks the driver spawns.
enum Event {
    Proposed(Pending, Outcome),
    Reconciled,
    Met {
        spec: NodeSpec,
        done: Box<dyn FnOnce(Result<(), String>) + Send>,
    },
}

/// How often a proposal is retried when the membership moved on under it or the
/// leadership changed.
const RETRIES: u32 = 3;
/// Remote proposals remembered to drop duplicated messages.
const RECENT_PROPOSALS: usize = 256;

pub(crate) struct Driver {
    raft: Raft,
    rpc: Arc<Rpc>,
    shared: Arc<Shared>,
    on_view: Box<dyn Fn(Arc<View>) + Send + Sync>,
    me: NodeSpec,
    timing: Timing,
    membership: Membership,
    myself: Option<u16>,
    live: Liveness,
    reports: Vec<Option<Report>>,
    my_report: Report,
    /// Per member (by name), the send time of the last heartbeat it sent us, and where
    /// it is: acknowledged again when this node applies a membership, so a fence waiting
    /// for that news ends without waiting for the member's next heartbeat.
    last_heartbeats: HashMap<String, (NodeSpec, u64)>,
    /// A handle on the raft log (openraft owns the store; this shares it) and on how far
    /// the state machine applied it: together, the epoch the log reaches.
    log: LogStore,
    progress: Arc<Mutex<Progress>>,
    metrics: RaftMetrics<u64, NodeSpec>,
    is_leader: bool,
    leader_since: u64,
    in_flight: bool,
    queue: VecDeque<Pending>,
    reconciling: bool,
    recent: VecDeque<(String, u64)>,
    /// Names of the bootstrap list given to a node that already had state, to warn once
    /// if the agreed membership differs.
    bootstrap_check: Option<BTreeSet<String>>,
    view: Arc<View>,
    events: mpsc::UnboundedSender<Event>,
    channels: Option<Channels>,
}

struct Channels {
    applied: mpsc::UnboundedReceiver<Membership>,
    events: mpsc::UnboundedReceiver<Event>,
    metrics: watch::Receiver<RaftMetrics<u64, NodeSpec>>,
}

fn raft_config(t: &Timing) -> Result<openraft::Config, ConsensusError> {
    let hb = t.heartbeat_ms.max(10);
    openraft::Config {
        cluster_name: "dse".into(),
        heartbeat_interval: hb,
        // Elections well inside the node timeout, so a new leader can decide (after
        // leading for node_timeout_ms) soon after the old one is gone.
        election_timeout_min: hb * 4,
        election_timeout_max: hb * 8,
        install_snapshot_timeout: (hb * 8).max(1000),
        // The state is a few KB: snapshot often and keep the log (rewritten whole on
        // every append) short.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(64),
        max_in_snapshot_log_to_keep: 8,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ConsensusError::Raft(e.to_string()))
}

impl Driver {
    pub(crate) async fn start(
        config: Config,
        transport: Arc<dyn Transport>,
        on_view: Box<dyn Fn(Arc<View>) + Send + Sync>,
        shared: Arc<Shared>,
    ) -> Result<Driver, ConsensusError> {
        let io = |source| ConsensusError::Io {
            dir: config.dir.clone(),
            source,
        };
        let rpc = Arc::new(Rpc::new(transport, config.myself.clone()));
        let progress = Arc::new(Mutex::new(Progress::default()));
        let (applied_tx, applied_rx) = mpsc::unbounded_channel();
        let log = LogStore::open(&config.dir).map_err(io)?;
        let pristine = log.is_pristine();
        let sm = StateMachine::open(&config.dir, applied_tx, progress.clone()).map_err(io)?;
        let stored = sm.membership().cloned();
        let raft = Raft::new(
            node_raft_id(&config.myself.name),
            Arc::new(raft_config(&config.timing)?),
            Network { rpc: rpc.clone() },
            log.clone(),
            sm,
        )
        .await
        .map_err(|e| ConsensusError::Raft(e.to_string()))?;

        let mut bootstrap_check = None;
        if !config.bootstrap.is_empty() {
            let boot = Membership::bootstrap(config.bootstrap.clone());
            if boot.index_of(&config.myself.name).is_none() {
                return Err(ConsensusError::NotInBootstrap(config.myself.name.clone()));
            }
            if pristine {
                let nodes: BTreeMap<u64, NodeSpec> = boot
                    .members
                    .iter()
                    .map(|m| (node_raft_id(&m.spec.name), m.spec.clone()))
                    .collect();
                if nodes.len() != boot.members.len() {
                    return Err(ConsensusError::Raft(
                        "two node names hash to one raft id".into(),
                    ));
                }
                // Every node of the list does this with the same list: openraft gives the
                // first entry the same log id everywhere, so this is safe in any order.
                match raft.initialize(nodes).await {
                    Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(e) => return Err(ConsensusError::Raft(e.to_string())),
                }
            } else {
                bootstrap_check = Some(boot.members.iter().map(|m| m.spec.name.clone()).collect());
            }
        }
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let metrics_rx = raft.metrics();
        let metrics = metrics_rx.borrow().clone();
        let now = shared.now_ms();
        let view = shared.view.lock().unwrap().clone();
        let mut driver = Driver {
            raft,
            rpc,
            shared,
            on_view,
            me: config.myself,
            timing: config.timing,
            membership: Membership {
                epoch: 0,
                members: Vec::new(),
            },
            myself: None,
            live: Liveness::new(config.timing, now),
            reports: Vec::new(),
            my_report: Report::default(),
            last_heartbeats: HashMap::new(),
            log,
            progress,
            metrics,
            is_leader: false,
            leader_since: now,
            in_flight: false,
            queue: VecDeque::new(),
            reconciling: false,
            recent: VecDeque::new(),
            bootstrap_check,
            view,
            events: events_tx,
            channels: Some(Channels {
                applied: applied_rx,
                events: events_rx,
                metrics: metrics_rx,
            }),
        };
        if let Some(m) = stored {
            driver.on_applied(m);
        }
        Ok(driver)
    }

    pub(crate) async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Input>) {
        let Channels {
            mut applied,
            mut events,
            mut metrics,
        } = self.channels.take().expect("run once");
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.timing.heartbeat_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inbox.recv() => match input {
                    None | Some(Input::Shutdown) => break,
                    Some(input) => self.on_input(input),
                },
                Some(m) = applied.recv() => self.on_applied(m),
                Some(e) = events.recv() => self.on_event(e),
                changed = metrics.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let m = metrics.borrow_and_update().clone();
                    self.on_metrics(m);
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
        self.shared.writable_until.store(0, Ordering::Release);
        let _ = self.raft.shutdown().await;
    }

    fn now(&self) -> u64 {
        self.shared.now_ms()
    }

    /// The epoch this node's raft log reaches, applied or not: the state machine's epoch,
    /// or more if entries after what it applied change the membership. (The driver's own
    /// membership may lag the state machine's by a message; it is never ahead.)
    fn log_epoch(&self) -> u64 {
        let p = *self.progress.lock().unwrap();
        p.epoch.max(self.log.epoch_after(p.applied))
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Deliver { from, msg } => match Envelope::decode(&msg) {
                Some(env) if env.from.name == from => self.on_message(env),
                Some(env) => tracing::warn!(
                    from,
                    claimed = env.from.name,
                    "consensus message claims another sender; dropped"
                ),
                None => tracing::warn!(from, "malformed consensus message; dropped"),
            },
            Input::Report(r) => {
                self.my_report = r;
                if let Some(me) = self.myself {
                    self.reports[me as usize] = Some(r);
                }
            }
            Input::Propose(change, done) => self.route(Pending {
                change,
                done,
                retries: RETRIES,
            }),
            Input::Meet {
                host,
                port,
                bus_port,
                done,
            } => {
                let rpc = self.rpc.clone();
                let events = self.events.clone();
                let wait = Duration::from_millis(self.timing.heartbeat_ms.max(100) * 2);
                tokio::spawn(async move {
                    let addr = NodeSpec {
                        name: String::new(),
                        host,
                        port,
                        bus_port,
                    };
                    // The hello or its answer may be lost: ask a few times.
                    for _ in 0..10 {
                        if let Some(Body::HelloReply { name }) =
                            rpc.call(&addr, Body::Hello, wait).await
                        {
                            let spec = NodeSpec { name, ..addr };
                            let _ = events.send(Event::Met { spec, done });
                            return;
                        }
                    }
                    done(Err(format!(
                        "no answer from a node that is not a member yet at {}:{} (bus port {})",
                        addr.host, addr.port, addr.bus_port
                    )));
                });
            }
            Input::Shutdown => {}
        }
    }

    fn on_message(&mut self, env: Envelope) {
        let Envelope { from, id, body } = env;
        // A node that is not a member may only ask who we are (CLUSTER MEET) or answer
        // our own requests; raft requests and proposals come from members (or, to a node
        // not yet added, from the cluster adding it). Without a cluster secret anyone who
        // reaches the bus could otherwise start elections or propose changes.
        let from_member = self.membership.index_of(&from.name).is_some();
        let may_ask = from_member || self.myself.is_none();
        if !may_ask
            && matches!(
                body,
                Body::Append(_) | Body::Vote(_) | Body::Snapshot(_) | Body::Propose(_)
            )
        {
            tracing::warn!(
                from = from.name,
                "consensus request from a non-member; dropped"
            );
            return;
        }
        let raft = self.raft.clone();
        let rpc = self.rpc.clone();
        match body {
            Body::Append(req) => {
                tokio::spawn(async move {
                    let r = raft.append_entries(req).await;
                    rpc.send(&from, id, Body::AppendReply(r));
                });
            }
            Body::Vote(req) => {
                tokio::spawn(async move {
                    let r = raft.vote(req).await;
                    rpc.send(&from, id, Body::VoteReply(r));
                });
            }
            Body::Snapshot(req) => {
                tokio::spawn(async move {
                    let r = raft.install_snapshot(req).await;
                    rpc.send(&from, id, Body::SnapshotReply(r));
                });
            }
            reply @ (Body::AppendReply(_)
            | Body::VoteReply(_)
            | Body::SnapshotReply(_)
            | Body::HelloReply { .. }
            | Body::ProposeReply(_)) => self.rpc.resolve(id, reply),
            Body::Heartbeat { sent_ms, report } => {
                if let Some(i) = self.membership.index_of(&from.name) {
                    self.reports[i as usize] = Some(report);
                    let last = self
                        .last_heartbeats
                        .entry(from.name.clone())
                        .or_insert_with(|| (from.clone(), sent_ms));
                    last.1 = last.1.max(sent_ms);
                }
                self.ack(&from, sent_ms);
            }
            Body::HeartbeatAck {
                sent_ms,
                log_epoch,
                applied_epoch,
            } => {
                if let Some(i) = self.membership.index_of(&from.name)
                    && self.live.acked_with(i, sent_ms, log_epoch, applied_epoch)
                {
                    // A fence ended: the server may write now, not at the next tick.
                    self.publish_lease();
                }
            }
            Body::Hello => {
                if self.myself.is_none() {
                    let name = self.me.name.clone();
                    self.rpc.send(&from, id, Body::HelloReply { name });
                }
            }
            Body::Propose(change) => {
                if !self.is_leader {
                    let reply = Body::ProposeReply(Err("not the leader".into()));
                    self.rpc.send(&from, id, reply);
                    return;
                }
                let key = (from.name.clone(), id);
                if self.recent.contains(&key) {
                    return; // a duplicated message: the first one is being handled
                }
                if self.recent.len() >= RECENT_PROPOSALS {
                    self.recent.pop_front();
                }
                self.recent.push_back(key);
                let rpc = self.rpc.clone();
                let done: ProposeDone =
                    Box::new(move |r| rpc.send(&from, id, Body::ProposeReply(r)));
                self.queue.push_back(Pending {
                    change,
                    done,
                    retries: RETRIES,
                });
                self.maybe_propose();
            }
        }
    }

    fn on_applied(&mut self, m: Membership) {
        let now = self.now();
        let prev = std::mem::replace(&mut self.membership, m);
        self.myself = self.membership.index_of(&self.me.name);
        let prev = (!prev.members.is_empty()).then_some(&prev);
        self.live.applied(prev, &self.membership, self.myself, now);
        self.reports.resize(self.membership.members.len(), None);
        if let Some(me) = self.myself
            && self.membership.state(me) == Some(MemberState::Removed)
        {
            // Out of raft for good: a node that may never see the raft configuration
            // without it must not disturb the others with elections.
            self.raft.runtime_config().elect(false);
        }
        if let Some(names) = self.bootstrap_check.take() {
            let agreed: BTreeSet<String> = self
                .membership
                .members
                .iter()
                .filter(|m| m.state != MemberState::Removed)
                .map(|m| m.spec.name.clone())
                .collect();
            if agreed != names {
                tracing::warn!(
                    ?names,
                    ?agreed,
                    "the bootstrap list differs from the agreed membership, which wins"
                );
            }
        }
        self.publish_lease();
        self.publish_view();
        // The server has the membership now: tell the peers at once (a fence of theirs
        // may be waiting for it), and ask the peers a new fence of ours waits for.
        let m = &self.membership;
        self.last_heartbeats.retain(|name, _| {
            m.index_of(name)
                .is_some_and(|i| m.state(i) != Some(MemberState::Removed))
        });
        let peers: Vec<(NodeSpec, u64)> = self.last_heartbeats.values().cloned().collect();
        for (to, sent_ms) in peers {
            self.ack(&to, sent_ms);
        }
        let now = self.now();
        let awaited: Vec<u16> = self.live.awaited(now).collect();
        for v in awaited {
            self.heartbeat(v, now);
        }
        self.maybe_propose();
    }

    fn ack(&self, to: &NodeSpec, sent_ms: u64) {
        let ack = Body::HeartbeatAck {
            sent_ms,
            log_epoch: self.log_epoch(),
            applied_epoch: self.membership.epoch,
        };
        self.rpc.send(to, 0, ack);
    }

    fn heartbeat(&self, to: u16, now: u64) {
        if let Some(m) = self.membership.members.get(to as usize) {
            let hb = Body::Heartbeat {
                sent_ms: now,
                report: self.my_report,
            };
            self.rpc.send(&m.spec, 0, hb);
        }
    }

    fn on_metrics(&mut self, m: RaftMetrics<u64, NodeSpec>) {
        let leader = m.state == ServerState::Leader;
        if leader && !self.is_leader {
            self.leader_since = self.now();
            self.reconciling = false;
        }
        self.is_leader = leader;
        self.metrics = m;
        self.publish_view();
        self.maybe_propose();
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::Proposed(mut p, outcome) => {
                self.in_flight = false;
                match outcome {
                    Outcome::Applied(Ok(epoch)) => (p.done)(Ok(epoch)),
                    Outcome::Applied(Err(why)) if why.starts_with(STALE) && p.retries > 0 => {
                        p.retries -= 1;
                        self.queue.push_front(p);
                    }
                    Outcome::Applied(Err(why)) => (p.done)(Err(why)),
                    Outcome::NotLeader | Outcome::Failed(_) if p.retries > 0 => {
                        p.retries -= 1;
                        self.route(p);
                    }
                    Outcome::NotLeader => (p.done)(Err("lost the leadership; try again".into())),
                    Outcome::Failed(why) => (p.done)(Err(why)),
                }
                self.maybe_propose();
            }
            Event::Reconciled => self.reconciling = false,
            Event::Met { spec, done } => self.route(Pending {
                change: Change::Add(spec),
                done: Box::new(move |r| done(r.map(|_| ()))),
                retries: RETRIES,
            }),
        }
    }

    fn on_tick(&mut self) {
        let now = self.now();
        if let Some(me) = self.myself
            && self.membership.state(me) != Some(MemberState::Removed)
        {
            for v in self.membership.voters() {
                if v != me {
                    self.heartbeat(v, now);
                }
            }
        }
        // A removed node our fence waits for is no voter: ask it too.
        let awaited: Vec<u16> = self.live.awaited(now).collect();
        for v in awaited {
            if self.membership.state(v) == Some(MemberState::Removed) {
                self.heartbeat(v, now);
            }
        }
        self.publish_lease();
        if self.is_leader {
            self.reconcile();
            self.maybe_propose();
        } else {
            // Proposals queued while this node led go to the new leader.
            for p in std::mem::take(&mut self.queue) {
                self.route(p);
            }
        }
    }

    fn publish_lease(&mut self) {
        self.live.set_log_epoch(self.log_epoch());
        let now = self.now();
        let until = self
            .myself
            .and_then(|me| self.live.writable_until(&self.membership, me, now))
            .unwrap_or(0);
        self.shared.writable_until.store(until, Ordering::Release);
    }

    fn member_of_raft_id(&self, id: u64) -> Option<u16> {
        self.membership
            .members
            .iter()
            .position(|m| node_raft_id(&m.spec.name) == id)
            .map(|i| i as u16)
    }

    fn publish_view(&mut self) {
        let view = View {
            membership: self.membership.clone(),
            myself: self.myself,
            leader: self
                .metrics
                .current_leader
                .and_then(|id| self.member_of_raft_id(id)),
            term: self.metrics.current_term,
        };
        if view != *self.view {
            let view = Arc::new(view);
            self.view = view.clone();
            *self.shared.view.lock().unwrap() = view.clone();
            (self.on_view)(view);
        }
    }

    /// Sends a proposal where it can be made: here if this node leads, else to the
    /// leader.
    fn route(&mut self, p: Pending) {
        if self.is_leader {
            self.queue.push_back(p);
            self.maybe_propose();
            return;
        }
        let leader = self.metrics.current_leader.and_then(|id| {
            self.metrics
                .membership_config
                .membership()
                .get_node(&id)
                .cloned()
        });
        let Some(leader) = leader.filter(|l| l.name != self.me.name) else {
            (p.done)(Err("no leader: the cluster is down".into()));
            return;
        };
        let rpc = self.rpc.clone();
        let wait = Duration::from_millis(self.timing.node_timeout_ms.max(1000) * 2);
        tokio::spawn(async move {
            let result = match rpc.call(&leader, Body::Propose(p.change), wait).await {
                Some(Body::ProposeReply(r)) => r,
                _ => Err("no answer from the leader (the change may or may not be applied)".into()),
            };
            (p.done)(result);
        });
    }

    /// The leader proposes the next change: queued ones first, then what `decide` says;
    /// one at a time, and only once everything in its log is applied (so the epoch it
    /// stamps is current).
    fn maybe_propose(&mut self) {
        if !self.is_leader || self.in_flight {
            return;
        }
        let Some(me) = self.myself else { return };
        let applied = self.metrics.last_applied.map(|l| l.index);
        if applied != self.metrics.last_log_index || self.membership.epoch < self.log_epoch() {
            return;
        }
        let pending = match self.queue.pop_front() {
            Some(p) => p,
            None => {
                let Some(change) = decide(
                    &self.membership,
                    me,
                    &self.live,
                    &self.reports,
                    self.leader_since,
                    self.now(),
                ) else {
                    return;
                };
                tracing::info!(?change, epoch = self.membership.epoch, "proposing");
                Pending {
                    change,
                    done: Box::new(|_| {}),
                    retries: 0,
                }
            }
        };
        self.in_flight = true;
        let cmd = Command {
            epoch: self.membership.epoch,
            change: pending.change.clone(),
        };
        let raft = self.raft.clone();
        let events = self.events.clone();
        tokio::spawn(async move {
            let outcome = match raft.client_write(cmd).await {
                Ok(resp) => Outcome::Applied(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Outcome::NotLeader
                }
                Err(e) => Outcome::Failed(e.to_string()),
            };
            let _ = events.send(Event::Proposed(pending, outcome));
        });
    }

    /// Keeps raft's membership equal to the agreed one: members that are not Removed are
    /// voters (a new one first a learner until it caught up on the log), Removed ones
    /// leave raft. One raft membership change at a time.
    fn reconcile(&mut self) {
        if self.reconciling || self.membership.members.is_empty() {
            return;
        }
        let stored = self.metrics.membership_config.clone();
        let rm = stored.membership();
        if rm.get_joint_config().len() > 1 {
            return;
        }
        let voters: BTreeSet<u64> = rm.voter_ids().collect();
        let nodes: BTreeSet<u64> = rm.nodes().map(|(id, _)| *id).collect();
        let last = self.metrics.last_log_index.unwrap_or(0);
        for m in &self.membership.members {
            let id = node_raft_id(&m.spec.name);
            let change = if m.state == MemberState::Removed {
                if voters.contains(&id) {
                    Some(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                } else if nodes.contains(&id) {
                    Some(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                } else {
                    None
                }
            } else if !nodes.contains(&id) {
                Some(ChangeMembers::AddNodes(BTreeMap::from([(
                    id,
                    m.spec.clone(),
                )])))
            } else if !voters.contains(&id) {
                let matched = self
                    .metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).copied().flatten())
                    .map(|l| l.index);
                // Caught up on the log: promote. A voter that lags would slow commits.
                matched
                    .is_some_and(|i| i + 3 >= last)
                    .then(|| ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            } else {
                None
            };
            if let Some(change) = change {
                tracing::info!(?change, "raft membership");
                self.reconciling = true;
                let raft = self.raft.clone();
                let events = self.events.clone();
                tokio::spawn(async move {
                    if let Err(e) = raft.change_membership(change, false).await {
                        tracing::info!(%e, "raft membership change not made");
                    }
                    let _ = events.send(Event::Reconciled);
                });
                return;
            }
        }
    }
}

/// The start of the refusal text of a change stamped with an old epoch (store.rs).
pub(crate) const STALE: &str = "the membership moved on";

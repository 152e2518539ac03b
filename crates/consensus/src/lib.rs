//! Cluster membership agreed through Raft: the member list, each member's Up/Down/...
//! state and the configuration epoch ([`dse_cluster::Membership`]) are the state machine
//! of an openraft cluster, so every node applies the same changes in the same order and
//! derives the same slot map.
//!
//! Main types: [`Consensus`] (the handle the server keeps), [`Config`], [`Transport`]
//! (implemented by the server over the cluster bus), [`View`] (what the server learns).
//!
//! ```text
//!  server threads                         thread `dse-consensus` (tokio current-thread)
//!  ──────────────                         ─────────────────────────────────────────────
//!  bus frame in ── deliver(from, bytes) ─▶ inbox ─▶ Driver ─┬─ raft RPCs ──▶ openraft core
//!  report / propose / meet ──────────────▶ inbox            │   (log + vote: <dir>, fsync'd;
//!                                                           │    state machine: Membership)
//!  Transport::send(to, bytes) ◀────────── heartbeats, raft ─┤
//!                                          requests/replies │   applied changes
//!  on_view(Arc<View>) ◀─────────────────── every new view ◀─┴── leadership (metrics)
//!  writable(): one atomic load + clock ◀── lease deadline, recomputed each heartbeat,
//!                                          applied change, and fence ended by an ack
//! ```
//!
//! The crate does no network I/O of its own: the server carries its messages (opaque
//! bytes, see `wire.rs`) in cluster bus frames. Messages may be lost, delayed or
//! duplicated; requests time out and are retried by openraft or by the driver.
//!
//! Besides raft, each node sends a heartbeat to every voter each `heartbeat_ms` (with its
//! [`Report`]), and the acknowledgements feed [`dse_cluster::Liveness`]: the write lease
//! and the leader's failure suspicion. An acknowledgement carries the epoch the
//! acknowledging node's log reaches and the epoch of the membership it applied (handed
//! to its server): a node that gained slots holds writes (its fence) until the previous
//! owners of those slots show they applied the change, or a lease at most; to make that
//! quick, it heartbeats them as soon as its fence starts, and every node acknowledges
//! each peer's last heartbeat again as soon as it applies a change. The leader runs [`dse_cluster::decide`] every
//! heartbeat and proposes what it returns, one change at a time; it also keeps raft's own
//! voter set equal to the members that are not Removed (a new member is a raft learner
//! until it caught up on the log, then a voter).
//!
//! Bootstrap: nodes started with the same `bootstrap` list (this node + `--peers`) each
//! initialize raft with that list (openraft allows the same initial membership on every
//! node), with raft ids derived from the names ([`node_raft_id`]), so the cluster forms
//! whatever order the nodes start in; the first applied state is
//! `Membership::bootstrap(list)`. A node whose directory holds raft state ignores the list
//! and rejoins with its vote and log. A node started with no list waits for CLUSTER MEET.

mod driver;
mod network;
mod store;
mod types;
mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::mpsc;

pub use types::node_raft_id;
// The types of this crate's API, so a caller needs no other import.
pub use dse_cluster::{Change, MemberState, Membership, NodeSpec, Report, Timing};

pub struct Config {
    pub myself: NodeSpec,
    /// This node + --peers on first start (empty: wait to be added by CLUSTER MEET).
    /// Ignored when `dir` already holds state (the agreed membership wins; a warning is
    /// logged if they differ).
    pub bootstrap: Vec<NodeSpec>,
    /// Where the raft vote, log and state-machine snapshot live (<data>/cluster); created.
    pub dir: PathBuf,
    pub timing: Timing,
}

pub trait Transport: Send + Sync + 'static {
    /// Sends `msg` to the node at `to` (best effort). `to.name` may be empty (CLUSTER
    /// MEET's first message: dial `to`'s address) or name a node that is not in the
    /// server's current topology (a node being added, or the node that added this one):
    /// dial it by `to`'s address then.
    fn send(&self, to: &NodeSpec, msg: Vec<u8>);
}

/// What the server learns after every applied change or leadership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The applied membership (epoch 0 and no members until the first one is applied).
    pub membership: Membership,
    /// This node's index, None until it is a member (a node started without peers).
    pub myself: Option<u16>,
    pub leader: Option<u16>,
    pub term: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("cluster state in {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("this node ({0}) is not in its own bootstrap list")]
    NotInBootstrap(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot start the consensus thread: {0}")]
    Thread(std::io::Error),
}

pub(crate) type ProposeDone = Box<dyn FnOnce(Result<u64, String>) + Send>;

pub(crate) enum Input {
    Deliver {
        from: String,
        msg: Vec<u8>,
    },
    Report(Report),
    Propose(Change, ProposeDone),
    Meet {
        host: String,
        port: u16,
        bus_port: u16,
        done: Box<dyn FnOnce(Result<(), String>) + Send>,
    },
    Shutdown,
}

/// State shared between the consensus thread and the server's threads.
pub(crate) struct Shared {
    pub view: Mutex<Arc<View>>,
    /// Writable until this many ms after `base` (exclusive); 0: not writable.
    pub writable_until: AtomicU64,
    pub base: Instant,
}

impl Shared {
    pub(crate) fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }
}

pub struct Consensus {
    shared: Arc<Shared>,
    inbox: mpsc::UnboundedSender<Input>,
    thread: Option<JoinHandle<()>>,
}

impl Consensus {
    /// Starts the consensus thread. `on_view` is called (on that thread) with every new
    /// View; keep it cheap (the server swaps its topology and wakes its loops).
    pub fn start(
        config: Config,
        transport: Arc<dyn Transport>,
        on_view: Box<dyn Fn(Arc<View>) + Send + Sync>,
    ) -> Result<Consensus, ConsensusError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| ConsensusError::Io {
            dir: config.dir.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            view: Mutex::new(Arc::new(View {
                membership: Membership {
                    epoch: 0,
                    members: Vec::new(),
                },
                myself: None,
                leader: None,
                term: 0,
            })),
            writable_until: AtomicU64::new(0),
            base: Instant::now(),
        });
        let (inbox, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("dse-consensus".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ConsensusError::Thread(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    match driver::Driver::start(config, transport, on_view, thread_shared).await {
                        Ok(d) => {
                            let _ = ready_tx.send(Ok(()));
                            d.run(rx).await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    }
                });
            })
            .map_err(ConsensusError::Thread)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Consensus {
                shared,
                inbox,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(ConsensusError::Raft(
                    "the consensus thread died while starting".into(),
                ))
            }
        }
    }

    /// A message from the peer that authenticated on the bus as `from` (node name).
    pub fn deliver(&self, from: &str, msg: &[u8]) {
        let _ = self.inbox.send(Input::Deliver {
            from: from.to_string(),
            msg: msg.to_vec(),
        });
    }

    pub fn view(&self) -> Arc<View> {
        self.shared.view.lock().unwrap().clone()
    }

    /// The lease (Liveness::writable) as of the consensus thread's last check (every
    /// heartbeat_ms or sooner): an atomic load of the lease's deadline and a monotonic
    /// clock read, so the answer turns false on time even if that thread stalls.
    pub fn writable(&self) -> bool {
        let until = self.shared.writable_until.load(Ordering::Acquire);
        until != 0 && self.shared.now_ms() < until
    }

    /// This node's own status, sent to the leader in heartbeats (see Report). The server
    /// calls it when its catch-up progresses, and again for each new epoch (a report is
    /// only taken for the epoch it names).
    pub fn report(&self, report: Report) {
        let _ = self.inbox.send(Input::Report(report));
    }

    /// Asks the cluster to apply `change` (CLUSTER FORGET -> Remove). Works on any
    /// member: a follower passes it to the leader. The callback (called on the consensus
    /// thread) gets the new epoch or an error text.
    pub fn propose(&self, change: Change, done: Box<dyn FnOnce(Result<u64, String>) + Send>) {
        if let Err(mpsc::error::SendError(Input::Propose(_, done))) =
            self.inbox.send(Input::Propose(change, done))
        {
            done(Err("consensus is shut down".into()));
        }
    }

    /// CLUSTER MEET: contacts the node at host/port/bus_port (with an empty-named
    /// NodeSpec), learns its name from its answer, proposes Add(spec). The new node
    /// (started with an empty `bootstrap`) answers only while it is not yet a member;
    /// once added it is replicated to as a raft learner, then promoted to voter. The
    /// callback gets Ok once the Add is applied.
    pub fn meet(
        &self,
        host: String,
        port: u16,
        bus_port: u16,
        done: Box<dyn FnOnce(Result<(), String>) + Send>,
    ) {
        if let Err(mpsc::error::SendError(Input::Meet { done, .. })) =
            self.inbox.send(Input::Meet {
                host,
                port,
                bus_port,
                done,
            })
        {
            done(Err("consensus is shut down".into()));
        }
    }

    /// Shuts the thread down (used on server shutdown and in tests).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.writable_until.store(0, Ordering::Release);
        let _ = self.inbox.send(Input::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Consensus {
    fn drop(&mut self) {
        self.stop();
    }
}

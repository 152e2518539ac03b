//! State shared by every loop: the store, the command table, run-time settings,
//! statistics and the client registry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dse_engine::{Lsn, Store};
use dse_net::{ConnRef, LoopHandle, NetShared};
use dse_persist::Persistence;
use parking_lot::{Condvar, Mutex};

use crate::clients::Clients;
use crate::cluster::ClusterState;
use crate::cmd::transactions::Exclusion;
use crate::command::CommandTable;
use crate::config::Config;

/// The Redis version we answer to: clients pick features by it, and ours are Redis
/// 7.2's (HELLO, CLIENT SETINFO, RESP3 replies).
pub const REDIS_VERSION: &str = "7.2.4";

/// Messages between loops (delivered by `dse-net` to `Handler::message`).
#[derive(Debug)]
pub enum Msg {
    /// CLIENT KILL: close this client (sent to the loop its meta names; a loop it has
    /// left passes the message on).
    Kill(Arc<crate::clients::ClientMeta>),
    /// The log acknowledged every record up to this LSN: release the replies that
    /// waited for it.
    LogAcked(Lsn),
    /// Replication has news for this loop (the log grew: senders ship it; a replica
    /// acknowledged: replies and WAITs waiting for it may go).
    ReplWake,
    /// Blocked and paused clients: a key they wait on got data, CLIENT UNBLOCK, the end
    /// of a CLIENT PAUSE (see `blocked.rs`).
    Blocking(crate::blocked::Note),
    /// The membership consensus sends `msg` to member `node`, or to the node at bus
    /// address `addr` when it is not a member.
    Consensus {
        node: Option<u16>,
        addr: std::net::SocketAddr,
        msg: Vec<u8>,
    },
    /// A new membership was installed: links and streams follow it.
    Topology,
}

/// Connections of one loop whose replies wait for the log, with the LSN each waits for.
/// `min` lets the log's notifier skip loops with nothing to release without locking.
pub struct LogWaiters {
    pub list: Mutex<Vec<(ConnRef, Lsn)>>,
    pub min: AtomicU64,
}

/// Why the server is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    Signal,
    Command { save: Option<bool> },
}

/// Settings that CONFIG SET can change while running.
pub struct Runtime {
    pub proto_max_bulk_len: AtomicU64,
    pub timeout: AtomicU64,
    pub hz: AtomicU64,
    pub maxmemory: AtomicU64,
    pub maxmemory_policy: Mutex<String>,
    /// Bumped when a protocol limit changes; sessions refresh their parser limits when
    /// they see a new generation.
    pub limits_gen: AtomicU64,
    /// Active expiry can be switched off (DEBUG SET-ACTIVE-EXPIRE 0), as in Redis.
    pub active_expire: AtomicBool,
    /// CONFIG SET and CONFIG REWRITE run one at a time, so a multi-parameter SET is
    /// atomic with respect to other CONFIG commands.
    pub config_lock: Mutex<()>,
    /// `loglevel` as last set (the log filter itself is fixed at start-up).
    pub loglevel: Mutex<String>,
    /// `client-output-buffer-limit` per class (normal, replica, pubsub) as (hard, soft,
    /// soft seconds). The normal class's hard limit lives in `NetShared`; the rest is
    /// kept for CONFIG GET and REWRITE until replicas and pub/sub exist.
    pub client_output_limits: Mutex<[(u64, u64, u64); 3]>,
    /// `appendonly`, `appendfsync` and `save` (seconds, changes) as configured, for the
    /// persistence layer to read.
    pub appendfsync: Mutex<String>,
    pub save_points: Mutex<Vec<(u64, u64)>>,
    /// `lazyfree-lazy-user-flush`: FLUSHALL/FLUSHDB without a mode free asynchronously.
    pub lazyfree_lazy_user_flush: AtomicBool,
    /// Highest `used_memory` INFO has seen.
    pub peak_memory: AtomicU64,
    /// Replication ID reported by INFO replication.
    pub replid: String,
}

/// Counters one loop writes and anyone reads. Single writer: increments are a load and a
/// store, not a locked read-modify-write.
#[repr(align(128))]
pub struct LoopStats {
    pub commands: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub error_replies: AtomicU64,
    pub cmd: Box<[CmdStat]>,
}

#[derive(Default)]
pub struct CmdStat {
    pub calls: AtomicU64,
    pub usec: AtomicU64,
    pub failed: AtomicU64,
    pub rejected: AtomicU64,
}

#[inline]
pub fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl LoopStats {
    fn new(commands: usize) -> Self {
        LoopStats {
            commands: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            error_replies: AtomicU64::new(0),
            cmd: (0..commands).map(|_| CmdStat::default()).collect(),
        }
    }
}

/// A loop's list of connections to finish at the end of its turn (see [`Server::turn`]),
/// aligned so that no two loops' lists share a cache line.
#[repr(align(128))]
pub struct TurnList(pub Mutex<Vec<ConnRef>>);

impl std::ops::Deref for TurnList {
    type Target = Mutex<Vec<ConnRef>>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

pub struct Stats {
    pub loops: Box<[LoopStats]>,
    /// Error replies by their first word (INFO errorstats). Errors are rare; a lock is fine.
    pub errors: Mutex<std::collections::HashMap<String, u64>>,
    /// Recent (time, total commands) samples, for instantaneous_ops_per_sec.
    pub ops_samples: Mutex<std::collections::VecDeque<(Instant, u64)>>,
}

impl Stats {
    pub fn total(&self, f: impl Fn(&LoopStats) -> &AtomicU64) -> u64 {
        self.loops
            .iter()
            .map(|l| f(l).load(Ordering::Relaxed))
            .sum()
    }

    pub fn record_error(&self, loop_index: usize, msg: &str) {
        bump(&self.loops[loop_index].error_replies, 1);
        let code = msg.split(' ').next().unwrap_or("ERR");
        *self.errors.lock().entry(code.to_string()).or_insert(0) += 1;
    }

    pub fn reset(&self) {
        for l in self.loops.iter() {
            for c in [&l.commands, &l.hits, &l.misses, &l.error_replies] {
                c.store(0, Ordering::Relaxed);
            }
            for c in l.cmd.iter() {
                for a in [&c.calls, &c.usec, &c.failed, &c.rejected] {
                    a.store(0, Ordering::Relaxed);
                }
            }
        }
        self.errors.lock().clear();
    }

    /// Commands per second over the last couple of seconds.
    pub fn ops_per_sec(&self) -> u64 {
        let s = self.ops_samples.lock();
        match (s.front(), s.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                ((b.1 - a.1) as f64 / (b.0 - a.0).as_secs_f64()).round() as u64
            }
            _ => 0,
        }
    }
}

pub struct Server {
    pub config: Config,
    pub store: Arc<Store>,
    pub persist: Arc<Persistence>,
    /// Per loop: connections waiting for the log (see `service.rs`).
    pub log_waiters: Box<[LogWaiters]>,
    /// Per loop: connections whose replies wait for the end of the loop's turn, when the
    /// loop writes the log once for all of them. Touched only by the loop's own thread,
    /// every turn: each on lines of its own.
    pub turn: Box<[TurnList]>,
    pub table: CommandTable,
    /// Cluster mode's state (`--node`); `None` for a standalone server, which then pays
    /// nothing for routing.
    pub cluster: Option<ClusterState>,
    /// Cluster mode: this node's links to the others, per event loop (forwarding).
    pub forwarding: Option<crate::forward::Forwarding>,
    /// Cluster mode: the streams to this node's replicas and from its primaries, and the
    /// write quorum (`None` outside cluster mode or with nothing to replicate).
    pub replication: Option<Arc<crate::replication::Replication>>,
    /// Per loop: connections waiting for replicas (held writes, WAIT).
    pub repl_waiters: crate::replication::Waiters,
    /// The per-loop gates that make EXEC atomic.
    pub tx: Exclusion,
    pub runtime: Runtime,
    pub stats: Stats,
    pub clients: Clients,
    /// Clients blocked on keys and clients held by CLIENT PAUSE.
    pub blocking: crate::blocked::Blocking,
    pub slowlog: crate::cmd::slowlog::SlowLog,
    pub net: OnceLock<Arc<NetShared>>,
    pub loops: OnceLock<Arc<[LoopHandle<Msg>]>>,
    pub started: Instant,
    pub run_id: String,
    /// Ports actually bound (a `--port 0` resolves here).
    pub port: OnceLock<u16>,
    pub config_file: Option<std::path::PathBuf>,
    pub shutdown: Mutex<Option<Shutdown>>,
    pub shutdown_cv: Condvar,
}

impl Server {
    pub fn new(
        config: Config,
        config_file: Option<std::path::PathBuf>,
        store: Arc<Store>,
        persist: Arc<Persistence>,
    ) -> Server {
        let table = CommandTable::new(crate::cmd::FAMILIES);
        let tx = Exclusion::new(config.threads, &table);
        let cluster = config.cluster.clone().map(|c| {
            // DBSIZE and COUNTKEYSINSLOT read per-slot counts rather than walk the keys.
            store.count_keys_per_slot(dse_cluster::SLOTS, dse_cluster::key_slot);
            ClusterState::new(c, &table)
        });
        let forwarding = cluster.as_ref().map(|c| {
            // Without a secret the handshake lets any name through; `Service::admit` then
            // checks it against the membership and the connection's address.
            let auth = match &c.config.secret {
                Some(secret) => dse_cluster::bus::Auth::secret(secret.as_bytes()),
                None => dse_cluster::bus::Auth::listed(|_| true),
            };
            crate::forward::Forwarding::new(
                config.threads,
                crate::cluster::MAX_MEMBERS,
                c.config.myself.name.clone(),
                auth,
                c.topology().epoch,
            )
        });
        let replication = cluster.as_ref().and_then(|c| {
            crate::replication::Replication::new(
                c,
                config.threads,
                c.config.quorum_timeout,
                store.clone(),
                persist.clone(),
            )
            .map(Arc::new)
        });
        let stats = Stats {
            loops: (0..config.threads)
                .map(|_| LoopStats::new(table.len()))
                .collect(),
            errors: Mutex::new(Default::default()),
            ops_samples: Mutex::new(Default::default()),
        };
        let shards = store.shard_count();
        Server {
            forwarding,
            replication,
            repl_waiters: crate::replication::Waiters::new(config.threads),
            store,
            persist,
            turn: (0..config.threads)
                .map(|_| TurnList(Mutex::new(Vec::new())))
                .collect(),
            log_waiters: (0..config.threads)
                .map(|_| LogWaiters {
                    list: Mutex::new(Vec::new()),
                    min: AtomicU64::new(Lsn::MAX),
                })
                .collect(),
            runtime: Runtime {
                proto_max_bulk_len: AtomicU64::new(config.proto_max_bulk_len),
                timeout: AtomicU64::new(config.timeout),
                hz: AtomicU64::new(10),
                maxmemory: AtomicU64::new(0),
                maxmemory_policy: Mutex::new("noeviction".into()),
                limits_gen: AtomicU64::new(0),
                active_expire: AtomicBool::new(true),
                config_lock: Mutex::new(()),
                loglevel: Mutex::new(config.loglevel.clone()),
                client_output_limits: Mutex::new([
                    (config.client_output_buffer_limit, 0, 0),
                    (256 << 20, 64 << 20, 60),
                    (32 << 20, 8 << 20, 60),
                ]),
                appendfsync: Mutex::new(config.appendfsync.name().into()),
                save_points: Mutex::new(if config.snapshot_interval > 0 {
                    vec![(config.snapshot_interval, 1)]
                } else {
                    Vec::new()
                }),
                lazyfree_lazy_user_flush: AtomicBool::new(false),
                peak_memory: AtomicU64::new(0),
                replid: random_hex(40),
            },
            blocking: crate::blocked::Blocking::new(config.threads, shards),
            slowlog: crate::cmd::slowlog::SlowLog::default(),
            table,
            cluster,
            tx,
            stats,
            clients: Clients::default(),
            net: OnceLock::new(),
            loops: OnceLock::new(),
            started: Instant::now(),
            run_id: random_hex(40),
            port: OnceLock::new(),
            config_file,
            shutdown: Mutex::new(None),
            shutdown_cv: Condvar::new(),
            config,
        }
    }

    /// A server over an empty store with persistence off, in a fresh temporary
    /// directory, for tests that run commands below the network layer.
    #[cfg(test)]
    pub fn for_tests() -> Server {
        use std::sync::atomic::AtomicUsize;
        static N: AtomicUsize = AtomicUsize::new(0);
        let mut config = Config::load(["dse-server"]).expect("default config");
        config.data = std::env::temp_dir().join(format!(
            "dse-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&config.data);
        let (persist, store, _) = Persistence::open(
            dse_persist::PersistOptions {
                dir: config.data.clone(),
                appendonly: false,
                fsync: dse_persist::FsyncPolicy::No,
                snapshot_interval: 0,
                recovery: dse_persist::RecoveryMode::Strict,
                segment_size: 1 << 20,
                shards: config.shards,
                key_slot: None,
            },
            Arc::new(dse_persist::StdFs),
        )
        .expect("persistence in a temporary directory");
        Server::new(config, None, Arc::new(store), persist)
    }

    /// Asks the main thread to shut the server down.
    pub fn request_shutdown(&self, why: Shutdown) {
        let mut s = self.shutdown.lock();
        if s.is_none() {
            *s = Some(why);
        }
        self.shutdown_cv.notify_all();
    }

    /// Blocks until someone asks for a shutdown.
    pub fn wait_for_shutdown(&self) -> Shutdown {
        let mut s = self.shutdown.lock();
        loop {
            if let Some(why) = *s {
                return why;
            }
            self.shutdown_cv.wait(&mut s);
        }
    }

    pub fn net(&self) -> Option<&NetShared> {
        self.net.get().map(|n| &**n)
    }

    /// Called by the log when it acknowledged records up to `acked`: wakes the loops that
    /// hold replies waiting for them.
    pub fn log_acked(&self, acked: Lsn) {
        // Pairs with the fence in `service.rs` after a waiter registers: either the loop
        // sees the new LSN, or this sees the waiter.
        std::sync::atomic::fence(Ordering::SeqCst);
        for (i, w) in self.log_waiters.iter().enumerate() {
            if w.min.load(Ordering::Relaxed) <= acked {
                self.send(i, Msg::LogAcked(acked));
            }
        }
        if let Some(r) = &self.replication {
            r.log_advanced(&self.repl_waiters, |i| self.send(i, Msg::ReplWake));
        }
    }

    pub fn send(&self, loop_index: usize, msg: Msg) {
        if let Some(loops) = self.loops.get() {
            loops[loop_index].send(msg);
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Microseconds since the Unix epoch.
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub fn random_hex(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

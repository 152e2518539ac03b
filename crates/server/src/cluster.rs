//! The cluster state of a node: who it is, the membership it knows, the slot map that
//! membership gives (`dse_cluster::Ring`), and where a command must run ([`Route`]).
//!
//! The membership is static for now (this node plus `--peers`). Later work changes it at
//! run time (nodes joining and leaving, epochs): everything derived from it lives in
//! [`Topology`], an immutable value that such work can rebuild and swap as a whole.
//!
//! Our model and Redis Cluster's differ: here every node is the primary of some ranges
//! and holds replica copies of others, where a Redis node is either a master or a
//! replica. CLUSTER SLOTS can say ours exactly (each range: its primary, then its
//! replicas). CLUSTER NODES and SHARDS present every node as a master with the ranges it
//! is primary for, and no node as a replica (see ARCHITECTURE.md, "Cluster").

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use dse_cluster::membership::{Member, MemberState, Membership};
use dse_cluster::{NodeSpec, Ring, SLOTS, SlotRange, key_slot};
use dse_proto::Args;

use crate::command::{CommandSpec, CommandTable, flag};
use crate::config::ClusterConfig;

/// Where a command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Here: the command has no keys, or this node serves their slot.
    Local,
    /// On `node` (an index into the ring's nodes), the primary of `slot`. Redirect mode
    /// answers `-MOVED`; so does the forwarding mode until forwarding exists.
    Moved { slot: u16, node: u16 },
    /// The keys are in different slots: no node can run the command atomically.
    CrossSlot,
    /// This node cannot serve keys now: it lost contact with the majority of the
    /// members, or is not (yet) one of them (`-CLUSTERDOWN`).
    Down,
}

/// A split command's keys: per node, the argument positions of the keys it serves.
pub type SplitGroups = Vec<(u16, Vec<usize>)>;

/// How the replies of a split command's parts make its reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gather {
    /// MGET: each part an array of values; the reply puts them back in key order.
    Values,
    /// DEL, UNLINK, EXISTS, TOUCH: each part an integer; the reply is their sum.
    Sum,
    /// MSET: each part +OK; the reply is +OK, or the first error.
    AllOk,
}

/// What this node is for one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotRole {
    Primary,
    Replica,
    None,
}

/// Where a command's keys are, when the table's first/last/step cannot say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeySpec {
    /// The table's key positions.
    Table,
    /// A count of keys at `at`, the keys right after it, and with `dest`, one more key at
    /// position 1 (ZUNIONSTORE destination numkeys key ...). Redis's "movablekeys".
    NumKeys { at: usize, dest: bool },
}

/// Commands whose keys follow a count, by name; those the table lacks are skipped.
const NUMKEYS: &[(&str, usize, bool)] = &[
    ("lmpop", 1, false),
    ("zmpop", 1, false),
    ("sintercard", 1, false),
    ("zunion", 1, false),
    ("zinter", 1, false),
    ("zdiff", 1, false),
    ("zintercard", 1, false),
    ("zunionstore", 2, true),
    ("zinterstore", 2, true),
    ("zdiffstore", 2, true),
    ("blmpop", 2, false),
    ("bzmpop", 2, false),
    ("eval", 2, false),
    ("evalsha", 2, false),
    ("eval_ro", 2, false),
    ("evalsha_ro", 2, false),
    ("fcall", 2, false),
    ("fcall_ro", 2, false),
];

pub use dse_cluster::membership::MAX_MEMBERS;

/// Everything derived from one agreed membership: the slot map and what the commands
/// report. Immutable: a new membership builds a new one, swapped in whole.
pub struct Topology {
    /// The membership epoch this topology comes from.
    pub epoch: u64,
    /// Every member (removed ones too, as tombstones), by node index.
    pub members: Vec<Member>,
    /// The slot map over the members that are Up; node indices are member indices.
    pub ring: Ring,
    /// This node's index; [`NOT_A_MEMBER`] while it waits to be added.
    pub myself: u16,
    /// Some member is Up: the ring means something. Otherwise every keyed command is
    /// refused.
    pub serving: bool,
    /// While this node is Joining or Ready: the slot map once it is Up (what it copies).
    pub future: Option<Ring>,
    /// This node's role for each slot: one byte load per routed command.
    roles: Box<[SlotRole]>,
    /// Runs of slots with the same owners, in slot order (CLUSTER SLOTS).
    ranges: Vec<SlotRange>,
    /// Per node: its 40-hex id, its shard's id, "host:port" for -MOVED, and the slot
    /// ranges it is primary for.
    ids: Vec<String>,
    shard_ids: Vec<String>,
    addrs: Vec<String>,
    primary_ranges: Vec<Vec<(u16, u16)>>,
    /// Per node: its bus address, and the IP addresses it may connect from (resolved
    /// once per membership).
    pub bus_addrs: Vec<Option<SocketAddr>>,
    pub peer_ips: Vec<Vec<std::net::IpAddr>>,
}

/// `Topology::myself` of a node that is not (yet) a member.
pub const NOT_A_MEMBER: u16 = u16::MAX;

impl Topology {
    /// The topology of `membership` for the node `me`, whose index is `myself` (`None`
    /// while it is not a member).
    pub fn new(
        membership: &Membership,
        myself: Option<u16>,
        replicas: usize,
        me: &NodeSpec,
    ) -> Topology {
        let members = membership.members.clone();
        let serving = members.iter().any(|m| m.state == MemberState::Up);
        let myself = myself.unwrap_or(NOT_A_MEMBER);
        let ring = if serving {
            membership.ring(replicas)
        } else {
            // Nothing is served; a ring over everyone (or this node alone, before it knows
            // anyone) keeps the lookups total.
            let mut specs: Vec<NodeSpec> = members.iter().map(|m| m.spec.clone()).collect();
            if specs.is_empty() {
                specs.push(me.clone());
            }
            Ring::new(specs, replicas)
        };
        let n = members.len();
        let mut roles = vec![SlotRole::None; SLOTS].into_boxed_slice();
        if serving {
            for (slot, role) in roles.iter_mut().enumerate() {
                let owners = ring.owners(slot as u16);
                if owners.primary == myself {
                    *role = SlotRole::Primary;
                } else if owners.replicas().contains(&myself) {
                    *role = SlotRole::Replica;
                }
            }
        }
        let ranges = if serving { ring.ranges() } else { Vec::new() };
        let mut primary_ranges = vec![Vec::new(); n];
        for r in &ranges {
            let runs: &mut Vec<(u16, u16)> = &mut primary_ranges[r.owners.primary as usize];
            // Ranges differing only in their replicas are one run of the primary's.
            match runs.last_mut() {
                Some(last) if last.1 + 1 == r.start => last.1 = r.end,
                _ => runs.push((r.start, r.end)),
            }
        }
        let future = match members.get(myself as usize).map(|m| m.state) {
            Some(MemberState::Joining | MemberState::Ready) => {
                Some(membership.ring_with(myself, replicas))
            }
            _ => None,
        };
        let resolve = |spec: &NodeSpec| -> Vec<SocketAddr> {
            use std::net::ToSocketAddrs;
            (spec.host.as_str(), spec.bus_port)
                .to_socket_addrs()
                .map(|a| a.collect())
                .unwrap_or_default()
        };
        let resolved: Vec<Vec<SocketAddr>> = members.iter().map(|m| resolve(&m.spec)).collect();
        Topology {
            epoch: membership.epoch,
            ids: members.iter().map(|m| m.spec.id()).collect(),
            shard_ids: members
                .iter()
                .map(|m| dse_cluster::ring::node_id(&format!("{}\0shard", m.spec.name)))
                .collect(),
            addrs: members
                .iter()
                .map(|m| format!("{}:{}", m.spec.host, m.spec.port))
                .collect(),
            bus_addrs: resolved.iter().map(|a| a.first().copied()).collect(),
            peer_ips: resolved
                .iter()
                .map(|a| a.iter().map(|a| a.ip()).collect())
                .collect(),
            primary_ranges,
            ranges,
            roles,
            myself,
            serving,
            future,
            members,
            ring,
        }
    }

    pub fn ranges(&self) -> &[SlotRange] {
        &self.ranges
    }

    pub fn role(&self, slot: u16) -> SlotRole {
        self.roles[slot as usize]
    }

    pub fn id(&self, node: u16) -> &str {
        &self.ids[node as usize]
    }

    pub fn shard_id(&self, node: u16) -> &str {
        &self.shard_ids[node as usize]
    }

    pub fn spec(&self, node: u16) -> &NodeSpec {
        &self.members[node as usize].spec
    }

    pub fn state(&self, node: u16) -> MemberState {
        self.members[node as usize].state
    }

    /// Whether this node is a member.
    pub fn is_member(&self) -> bool {
        (self.myself as usize) < self.members.len()
    }

    /// Members that are not removed, by index.
    pub fn known(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.members.len() as u16).filter(|&i| self.state(i) != MemberState::Removed)
    }

    /// The index of the member named `name` (removed ones included).
    pub fn index_of(&self, name: &str) -> Option<u16> {
        self.members
            .iter()
            .position(|m| m.spec.name == name)
            .map(|i| i as u16)
    }

    /// The slot ranges `node` is primary for, in slot order.
    pub fn primary_ranges(&self, node: u16) -> &[(u16, u16)] {
        self.primary_ranges
            .get(node as usize)
            .map_or(&[], |r| r.as_slice())
    }

    /// Nodes that are the primary of at least one slot (`cluster_size`).
    pub fn size(&self) -> usize {
        self.primary_ranges.iter().filter(|r| !r.is_empty()).count()
    }
}

/// A node's cluster state.
pub struct ClusterState {
    pub config: ClusterConfig,
    /// The current topology; swapped whole when the agreed membership changes.
    topology: ArcSwap<Topology>,
    /// The membership consensus, once started (right after the server is built).
    pub consensus: OnceLock<dse_consensus::Consensus>,
    /// Per command index: where its keys are.
    keys: Box<[KeySpec]>,
    /// Table index of EXEC, whose keys are those of the queued commands.
    exec: usize,
    /// Per node: when a frame last came from it (ms), for CLUSTER NODES.
    heard: Box<[AtomicU64]>,
    pub messages_sent: AtomicU64,
    pub messages_received: AtomicU64,
    /// What `writable` says before the consensus runs (unit tests drive routing alone).
    pub writable_without_consensus: std::sync::atomic::AtomicBool,
}

impl ClusterState {
    pub fn new(config: ClusterConfig, table: &CommandTable) -> ClusterState {
        let (membership, myself) = config.initial_membership();
        let topology = Topology::new(&membership, myself, config.replicas, &config.myself);
        let mut keys = vec![KeySpec::Table; table.len()].into_boxed_slice();
        for &(name, at, dest) in NUMKEYS {
            if let Some(idx) = table.lookup(name.as_bytes()) {
                keys[idx] = KeySpec::NumKeys { at, dest };
            }
        }
        ClusterState {
            config,
            topology: ArcSwap::from_pointee(topology),
            consensus: OnceLock::new(),
            keys,
            exec: table.lookup(b"exec").expect("EXEC is in the command table"),
            heard: (0..MAX_MEMBERS).map(|_| AtomicU64::new(0)).collect(),
            messages_sent: AtomicU64::new(0),
            messages_received: AtomicU64::new(0),
            writable_without_consensus: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The current topology (a cheap, lock-free load).
    #[inline]
    pub fn topology(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.topology.load()
    }

    /// Installs the topology of a newer membership (the caller checked it is newer).
    pub fn install(&self, t: Arc<Topology>) {
        self.topology.store(t);
    }

    /// Whether this node may serve keyed commands now: it is in contact with a majority
    /// of the members (the lease kept by the consensus thread).
    #[inline]
    pub fn writable(&self) -> bool {
        match self.consensus.get() {
            Some(c) => c.writable(),
            None => self.writable_without_consensus.load(Ordering::Relaxed),
        }
    }

    pub fn redirect(&self) -> bool {
        self.config.redirect
    }

    /// Where command `idx` runs with `args`, for a connection that sent READONLY when
    /// `readonly`. One CRC16 per key.
    #[inline]
    pub fn route(&self, spec: &CommandSpec, idx: usize, args: &Args<'_>, readonly: bool) -> Route {
        let mut slot = None;
        if self.command_slot(spec, idx, args, &mut slot).is_err() {
            return Route::CrossSlot;
        }
        match slot {
            None => Route::Local,
            Some(slot) => self.decide(slot, spec.has(flag::WRITE), readonly),
        }
    }

    /// Where EXEC runs a transaction of `queued` commands (table index, arguments): all
    /// their keys must be in one slot, as Redis requires.
    pub fn route_transaction<'q>(
        &self,
        table: &CommandTable,
        queued: impl Iterator<Item = (usize, Args<'q>)>,
        readonly: bool,
    ) -> Route {
        let mut slot = None;
        let mut write = false;
        for (idx, args) in queued {
            let spec = table.specs[idx];
            write |= spec.has(flag::WRITE);
            if self.command_slot(spec, idx, &args, &mut slot).is_err() {
                return Route::CrossSlot;
            }
        }
        match slot {
            None => Route::Local,
            Some(slot) => self.decide(slot, write, readonly),
        }
    }

    /// Whether EXEC is command `idx` (routed on its queue rather than its arguments).
    pub fn is_exec(&self, idx: usize) -> bool {
        idx == self.exec
    }

    fn decide(&self, slot: u16, write: bool, readonly: bool) -> Route {
        let t = self.topology.load();
        if !t.serving || !self.writable() {
            return Route::Down;
        }
        match t.role(slot) {
            SlotRole::Primary => Route::Local,
            SlotRole::Replica if readonly && !write => Route::Local,
            _ => Route::Moved {
                slot,
                node: t.ring.primary(slot),
            },
        }
    }

    /// Folds the slots of the keys of one command into `slot`; `Err` when a key is in
    /// another slot than the ones before it.
    fn command_slot(
        &self,
        spec: &CommandSpec,
        idx: usize,
        args: &Args<'_>,
        slot: &mut Option<u16>,
    ) -> Result<(), ()> {
        let mut fold = |key: &[u8]| {
            let s = key_slot(key);
            match *slot {
                None => *slot = Some(s),
                Some(seen) if seen != s => return Err(()),
                Some(_) => {}
            }
            Ok(())
        };
        match self.keys[idx] {
            KeySpec::Table => {
                for p in spec.key_positions(args.len()) {
                    fold(&args[p])?;
                }
            }
            KeySpec::NumKeys { at, dest } => {
                // A bad count is the command's own error to report: no keys here, as
                // Redis's key extraction finds none.
                let count = args
                    .get(at)
                    .and_then(dse_engine::parse_canonical_i64)
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n >= 1 && n < args.len() - at);
                if let Some(count) = count {
                    if dest {
                        fold(&args[1])?;
                    }
                    for p in at + 1..=at + count {
                        fold(&args[p])?;
                    }
                }
            }
        }
        Ok(())
    }

    /// For a multi-key command that may be split across nodes (MGET, MSET, DEL, UNLINK,
    /// EXISTS, TOUCH; not atomic across slots, as documented), the keys' argument
    /// positions grouped by the node serving their slot, in the keys' order.
    pub fn split_plan(&self, name: &str, args: &Args<'_>) -> Option<(Gather, SplitGroups)> {
        let (kind, step) = match name {
            "mget" => (Gather::Values, 1),
            "mset" => (Gather::AllOk, 2),
            "del" | "unlink" | "exists" | "touch" => (Gather::Sum, 1),
            _ => return None,
        };
        if args.len() < 2 || (step == 2 && args.len().is_multiple_of(2)) {
            return None; // the command's own arity error, raised where it runs
        }
        let t = self.topology.load();
        let mut groups: SplitGroups = Vec::new();
        for pos in (1..args.len()).step_by(step) {
            let node = t.ring.primary(key_slot(&args[pos]));
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, v)) => v.push(pos),
                None => groups.push((node, vec![pos])),
            }
        }
        Some((kind, groups))
    }

    /// Whether this node is the primary of every key's slot (a split part forwarded here
    /// may hold keys of several of its slots).
    pub fn all_primary_here(&self, spec: &CommandSpec, args: &Args<'_>) -> bool {
        let t = self.topology.load();
        spec.key_positions(args.len())
            .all(|p| t.role(key_slot(&args[p])) == SlotRole::Primary)
    }

    /// The `-MOVED` error for a redirect to `node`.
    pub fn moved_error(&self, slot: u16, node: u16) -> String {
        let t = self.topology.load();
        format!("MOVED {slot} {}", t.addrs[node as usize])
    }

    /// Whether this node is the primary of `key`'s slot: the keys whole-keyspace
    /// commands (KEYS, SCAN, RANDOMKEY, DBSIZE) see, not the replica copies it holds.
    #[inline]
    pub fn serves(&self, key: &[u8]) -> bool {
        self.topology.load().role(key_slot(key)) == SlotRole::Primary
    }

    /// The slots this node is primary for (cluster mode's FLUSHALL).
    pub fn primary_slots(&self) -> dse_cluster::bus::SlotSet {
        let t = self.topology.load();
        let mut set = dse_cluster::bus::SlotSet::new();
        for &(start, end) in t.primary_ranges(t.myself) {
            set.insert_range(start, end);
        }
        set
    }

    /// Keys of the slots this node is primary for (DBSIZE), from the store's per-slot
    /// counts.
    pub fn primary_key_count(&self, store: &dse_engine::Store) -> u64 {
        let t = self.topology.load();
        t.primary_ranges(t.myself)
            .iter()
            .flat_map(|&(start, end)| start..=end)
            .map(|slot| store.keys_in_slot(slot).unwrap_or(0))
            .sum()
    }

    /// The host clients reach `node` at. For this node bound to a wildcard address, the
    /// address the client's own connection reached (`laddr`, "ip:port").
    pub fn host(&self, t: &Topology, node: u16, laddr: &str) -> String {
        if node == t.myself
            && self.config.host_is_wildcard
            && let Ok(local) = laddr.parse::<SocketAddr>()
        {
            return local.ip().to_string();
        }
        t.spec(node).host.clone()
    }

    /// Whether this node may take commands for keys now (CLUSTER INFO's cluster_state).
    /// CLUSTER NODES: one line per known node, `\n`-terminated. Every node appears as a
    /// master with the ranges it is primary for; a member marked down is `fail` (and
    /// holds no slots), one still copying its slots (joining) holds none yet.
    pub fn nodes_text(&self, laddr: &str, now_ms: u64) -> String {
        let t = self.topology.load();
        let mut out = String::new();
        for i in t.known() {
            let spec = t.spec(i);
            let mut flags = String::new();
            if i == t.myself {
                flags.push_str("myself,");
            }
            flags.push_str("master");
            if t.state(i) == MemberState::Down {
                flags.push_str(",fail");
            }
            let heard = self.heard_ms(i);
            let connected = i == t.myself || (heard > 0 && now_ms.saturating_sub(heard) < 2_000);
            let _ = write!(
                out,
                "{} {}:{}@{} {flags} - 0 {heard} {} {}",
                t.id(i),
                self.host(&t, i, laddr),
                spec.port,
                spec.bus_port,
                t.epoch,
                if connected {
                    "connected"
                } else {
                    "disconnected"
                },
            );
            for &(start, end) in t.primary_ranges(i) {
                if start == end {
                    let _ = write!(out, " {start}");
                } else {
                    let _ = write!(out, " {start}-{end}");
                }
            }
            out.push('\n');
        }
        out
    }

    /// CLUSTER INFO: `field:value` lines, `\r\n`-terminated.
    pub fn info_text(&self) -> String {
        let t = self.topology.load();
        let ok = t.serving && self.writable();
        let mut out = format!("cluster_state:{}\r\n", if ok { "ok" } else { "fail" });
        let assigned = if t.serving { SLOTS as u64 } else { 0 };
        let fields: [(&str, u64); 11] = [
            ("cluster_slots_assigned", assigned),
            ("cluster_slots_ok", if ok { assigned } else { 0 }),
            ("cluster_slots_pfail", 0),
            ("cluster_slots_fail", if ok { 0 } else { assigned }),
            ("cluster_known_nodes", t.known().count() as u64),
            ("cluster_size", t.size() as u64),
            // One epoch for the whole configuration: the agreed membership's.
            ("cluster_current_epoch", t.epoch),
            ("cluster_my_epoch", t.epoch),
            (
                "cluster_stats_messages_sent",
                self.messages_sent.load(Ordering::Relaxed),
            ),
            (
                "cluster_stats_messages_received",
                self.messages_received.load(Ordering::Relaxed),
            ),
            ("total_cluster_links_buffer_limit_exceeded", 0),
        ];
        for (name, value) in fields {
            let _ = write!(out, "{name}:{value}\r\n");
        }
        out
    }

    /// A frame came from `node` on the bus (CLUSTER NODES' pong-recv and link state).
    #[inline]
    pub fn heard_from(&self, node: u16, now_ms: u64) {
        if let Some(h) = self.heard.get(node as usize) {
            h.store(now_ms, Ordering::Relaxed);
        }
        self.messages_received.fetch_add(1, Ordering::Relaxed);
    }

    pub fn heard_ms(&self, node: u16) -> u64 {
        self.heard
            .get(node as usize)
            .map_or(0, |h| h.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn state(node: &str, peers: &str, extra: &[&str]) -> ClusterState {
        let mut args = vec!["dse-server", "--port", "7001", "--node", node];
        if !peers.is_empty() {
            args.extend(["--peers", peers]);
        }
        args.extend(extra);
        let cfg = Config::load(args).unwrap();
        let table = CommandTable::new(crate::cmd::FAMILIES);
        let c = ClusterState::new(cfg.cluster.unwrap(), &table);
        c.writable_without_consensus.store(true, Ordering::Relaxed);
        c
    }

    fn route(c: &ClusterState, args: &[&str], readonly: bool) -> Route {
        let table = CommandTable::new(crate::cmd::FAMILIES);
        let (base, ranges) = flat(args);
        let a = Args::from_parts(&base, &ranges);
        let idx = table.resolve(&a).unwrap();
        c.route(table.specs[idx], idx, &a, readonly)
    }

    fn flat(args: &[&str]) -> (Vec<u8>, Vec<std::ops::Range<usize>>) {
        let mut base = Vec::new();
        let mut ranges = Vec::new();
        for a in args {
            let start = base.len();
            base.extend_from_slice(a.as_bytes());
            ranges.push(start..base.len());
        }
        (base, ranges)
    }

    /// A key whose slot has role `role` on `c`.
    fn key_with(c: &ClusterState, role: SlotRole) -> String {
        let t = c.topology();
        (0..100_000)
            .map(|i| format!("k{i}"))
            .find(|k| t.role(key_slot(k.as_bytes())) == role)
            .unwrap()
    }

    const PEERS: &str = "b:127.0.0.1:7002,c:127.0.0.1:7003:17999";

    #[test]
    fn roles_follow_the_ring() {
        let c = state("a", PEERS, &[]);
        let t = c.topology();
        let mut primary = 0;
        for slot in 0..SLOTS as u16 {
            let owners = t.ring.owners(slot);
            assert_eq!(owners.replicas().len(), 1);
            match t.role(slot) {
                SlotRole::Primary => {
                    primary += 1;
                    assert_eq!(owners.primary, t.myself);
                }
                SlotRole::Replica => assert_eq!(owners.replicas()[0], t.myself),
                SlotRole::None => assert!(!owners.all().any(|n| n == t.myself)),
            }
        }
        let ranges: usize = t
            .primary_ranges(t.myself)
            .iter()
            .map(|&(s, e)| (e - s) as usize + 1)
            .sum();
        assert_eq!(ranges, primary);
        // Members are numbered by name, the same on every node.
        assert_eq!(t.myself, 0);
        assert_eq!(t.spec(2).bus_port, 17999);
        assert_eq!(t.spec(1).bus_port, 17002);
        assert_eq!(t.size(), 3);
        assert_eq!(t.epoch, 1);
    }

    #[test]
    fn routing() {
        let c = state("a", PEERS, &[]);
        let mine = key_with(&c, SlotRole::Primary);
        let copy = key_with(&c, SlotRole::Replica);
        let other = key_with(&c, SlotRole::None);
        assert_eq!(route(&c, &["GET", &mine], false), Route::Local);
        assert_eq!(route(&c, &["PING"], false), Route::Local);
        let slot = key_slot(copy.as_bytes());
        let moved = Route::Moved {
            slot,
            node: c.topology().ring.primary(slot),
        };
        assert_eq!(route(&c, &["GET", &copy], false), moved);
        // A replica copy serves reads to a READONLY connection, never writes.
        assert_eq!(route(&c, &["GET", &copy], true), Route::Local);
        assert_eq!(route(&c, &["SET", &copy, "v"], true), moved);
        assert!(matches!(
            route(&c, &["GET", &other], true),
            Route::Moved { .. }
        ));
        assert_eq!(route(&c, &["MGET", &mine, &other], false), Route::CrossSlot);
        let (a, b) = (format!("{{{mine}}}.a"), format!("x{{{mine}}}"));
        assert_eq!(route(&c, &["MSET", &a, "1", &b, "2"], false), Route::Local);
        assert_eq!(
            route(&c, &["MSET", &a, "1", &other, "2"], false),
            Route::CrossSlot
        );
        // Keys after a count, and a destination before it.
        assert_eq!(
            route(&c, &["ZUNIONSTORE", &a, "2", &b, &mine], false),
            Route::Local
        );
        assert_eq!(
            route(&c, &["ZUNIONSTORE", &other, "2", &b, &mine], false),
            Route::CrossSlot
        );
        assert_eq!(
            route(&c, &["LMPOP", "2", &a, &other, "LEFT"], false),
            Route::CrossSlot
        );
        assert_eq!(route(&c, &["LMPOP", "1", &a, "LEFT"], false), Route::Local);
        // A bad count is left to the command.
        assert_eq!(
            route(&c, &["LMPOP", "9", &other, "LEFT"], false),
            Route::Local
        );
        assert_eq!(
            route(&c, &["LMPOP", "x", &other, "LEFT"], false),
            Route::Local
        );
        assert!(c.moved_error(1, 1).starts_with("MOVED 1 127.0.0.1:7002"));
    }

    #[test]
    fn transactions_route_on_all_their_keys() {
        let c = state("a", PEERS, &[]);
        let table = CommandTable::new(crate::cmd::FAMILIES);
        let mine = key_with(&c, SlotRole::Primary);
        let copy = key_with(&c, SlotRole::Replica);
        let tagged = format!("{{{mine}}}x");
        let cmds: Vec<Vec<&str>> =
            vec![vec!["SET", &mine, "1"], vec!["PING"], vec!["GET", &tagged]];
        let flats: Vec<_> = cmds.iter().map(|c| flat(c)).collect();
        let queued = |n: usize| {
            flats[..n].iter().map(|(b, r)| {
                let a = Args::from_parts(b, r);
                (table.resolve(&a).unwrap(), a)
            })
        };
        assert_eq!(c.route_transaction(&table, queued(3), false), Route::Local);
        let cross = [flat(&["GET", &mine]), flat(&["GET", &copy])];
        let q = cross.iter().map(|(b, r)| {
            let a = Args::from_parts(b, r);
            (table.resolve(&a).unwrap(), a)
        });
        assert_eq!(c.route_transaction(&table, q, true), Route::CrossSlot);
    }

    #[test]
    fn descriptions() {
        let c = state("a", PEERS, &[]);
        let nodes = c.nodes_text("127.0.0.1:7001", 0);
        let lines: Vec<&str> = nodes.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(nodes.ends_with('\n'));
        let first: Vec<&str> = lines[0].split(' ').collect();
        assert_eq!(first[0], c.topology().id(0));
        assert_eq!(first[1], "127.0.0.1:7001@17001");
        assert_eq!(first[2], "myself,master");
        assert_eq!(&first[3..8], &["-", "0", "0", "1", "connected"]);
        assert!(lines[1].contains(" master - "));
        let info = c.info_text();
        assert!(info.starts_with("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n"));
        assert!(info.contains("cluster_known_nodes:3\r\n"));
        // A wildcard bind: this node is described by the address the client reached.
        let w = state("a", PEERS, &["--bind", "0.0.0.0"]);
        let t = w.topology();
        assert_eq!(w.host(&t, 0, "10.1.2.3:7001"), "10.1.2.3");
        assert_eq!(w.host(&t, 1, "10.1.2.3:7001"), "127.0.0.1");
    }
}

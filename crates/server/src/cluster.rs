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

/// Everything derived from one membership: the slot map and what the commands report.
pub struct Topology {
    pub ring: Ring,
    /// This node's index in `ring.nodes()`.
    pub myself: u16,
    /// This node's role for each slot: one byte load per routed command.
    roles: Box<[SlotRole]>,
    /// Runs of slots with the same owners, in slot order (CLUSTER SLOTS).
    ranges: Vec<SlotRange>,
    /// Per node: its 40-hex id, its shard's id, "host:port" for -MOVED, its config epoch,
    /// and the slot ranges it is primary for.
    ids: Vec<String>,
    shard_ids: Vec<String>,
    addrs: Vec<String>,
    config_epochs: Vec<u64>,
    primary_ranges: Vec<Vec<(u16, u16)>>,
    /// The highest config epoch.
    pub current_epoch: u64,
}

impl Topology {
    fn new(nodes: Vec<NodeSpec>, myself: u16, replicas: usize) -> Topology {
        let ring = Ring::new(nodes, replicas);
        let n = ring.nodes().len();
        let mut roles = vec![SlotRole::None; SLOTS].into_boxed_slice();
        for (slot, role) in roles.iter_mut().enumerate() {
            let owners = ring.owners(slot as u16);
            if owners.primary == myself {
                *role = SlotRole::Primary;
            } else if owners.replicas().contains(&myself) {
                *role = SlotRole::Replica;
            }
        }
        let ranges = ring.ranges();
        let mut primary_ranges = vec![Vec::new(); n];
        for r in &ranges {
            let runs: &mut Vec<(u16, u16)> = &mut primary_ranges[r.owners.primary as usize];
            // Ranges differing only in their replicas are one run of the primary's.
            match runs.last_mut() {
                Some(last) if last.1 + 1 == r.start => last.1 = r.end,
                _ => runs.push((r.start, r.end)),
            }
        }
        // A static membership has no elections: each node's config epoch is its rank by
        // name (unique, and the same on every node), the current epoch the highest.
        let mut by_name: Vec<usize> = (0..n).collect();
        by_name.sort_by(|&a, &b| ring.nodes()[a].name.cmp(&ring.nodes()[b].name));
        let mut config_epochs = vec![0; n];
        for (rank, &i) in by_name.iter().enumerate() {
            config_epochs[i] = rank as u64 + 1;
        }
        Topology {
            ids: ring.nodes().iter().map(NodeSpec::id).collect(),
            shard_ids: ring
                .nodes()
                .iter()
                .map(|s| dse_cluster::ring::node_id(&format!("{}\0shard", s.name)))
                .collect(),
            addrs: ring
                .nodes()
                .iter()
                .map(|s| format!("{}:{}", s.host, s.port))
                .collect(),
            current_epoch: n as u64,
            config_epochs,
            primary_ranges,
            ranges,
            roles,
            myself,
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

    pub fn config_epoch(&self, node: u16) -> u64 {
        self.config_epochs[node as usize]
    }

    /// The slot ranges `node` is primary for, in slot order.
    pub fn primary_ranges(&self, node: u16) -> &[(u16, u16)] {
        &self.primary_ranges[node as usize]
    }

    /// Nodes that are the primary of at least one slot (`cluster_size`).
    pub fn size(&self) -> usize {
        self.primary_ranges.iter().filter(|r| !r.is_empty()).count()
    }
}

/// A node's cluster state.
pub struct ClusterState {
    pub config: ClusterConfig,
    pub topology: Topology,
    /// Per command index: where its keys are.
    keys: Box<[KeySpec]>,
    /// Table index of EXEC, whose keys are those of the queued commands.
    exec: usize,
}

impl ClusterState {
    pub fn new(config: ClusterConfig, table: &CommandTable) -> ClusterState {
        let mut nodes = vec![config.myself.clone()];
        nodes.extend(config.peers.iter().cloned());
        let topology = Topology::new(nodes, 0, config.replicas);
        let mut keys = vec![KeySpec::Table; table.len()].into_boxed_slice();
        for &(name, at, dest) in NUMKEYS {
            if let Some(idx) = table.lookup(name.as_bytes()) {
                keys[idx] = KeySpec::NumKeys { at, dest };
            }
        }
        ClusterState {
            config,
            topology,
            keys,
            exec: table.lookup(b"exec").expect("EXEC is in the command table"),
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
        match self.topology.role(slot) {
            SlotRole::Primary => Route::Local,
            SlotRole::Replica if readonly && !write => Route::Local,
            _ => Route::Moved {
                slot,
                node: self.topology.ring.primary(slot),
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
        let mut groups: SplitGroups = Vec::new();
        for pos in (1..args.len()).step_by(step) {
            let node = self.topology.ring.primary(key_slot(&args[pos]));
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
        spec.key_positions(args.len())
            .all(|p| self.topology.role(key_slot(&args[p])) == SlotRole::Primary)
    }

    /// The `-MOVED` error for a redirect to `node`.
    pub fn moved_error(&self, slot: u16, node: u16) -> String {
        format!("MOVED {slot} {}", self.topology.addrs[node as usize])
    }

    /// Whether this node is the primary of `key`'s slot: the keys whole-keyspace
    /// commands (KEYS, SCAN, RANDOMKEY, DBSIZE) see, not the replica copies it holds.
    #[inline]
    pub fn serves(&self, key: &[u8]) -> bool {
        self.topology.role(key_slot(key)) == SlotRole::Primary
    }

    /// The slots this node is primary for (cluster mode's FLUSHALL).
    pub fn primary_slots(&self) -> dse_cluster::bus::SlotSet {
        let t = &self.topology;
        let mut set = dse_cluster::bus::SlotSet::new();
        for &(start, end) in t.primary_ranges(t.myself) {
            set.insert_range(start, end);
        }
        set
    }

    /// Keys of the slots this node is primary for (DBSIZE), from the store's per-slot
    /// counts.
    pub fn primary_key_count(&self, store: &dse_engine::Store) -> u64 {
        let t = &self.topology;
        t.primary_ranges(t.myself)
            .iter()
            .flat_map(|&(start, end)| start..=end)
            .map(|slot| store.keys_in_slot(slot).unwrap_or(0))
            .sum()
    }

    /// The host clients reach `node` at. For this node bound to a wildcard address, the
    /// address the client's own connection reached (`laddr`, "ip:port").
    pub fn host<'a>(&'a self, node: u16, laddr: &'a str) -> std::borrow::Cow<'a, str> {
        let spec = self.topology.ring.node(node);
        if node == self.topology.myself
            && self.config.host_is_wildcard
            && let Ok(local) = laddr.parse::<SocketAddr>()
        {
            return local.ip().to_string().into();
        }
        spec.host.as_str().into()
    }

    /// CLUSTER NODES: one line per node, `\n`-terminated.
    pub fn nodes_text(&self, laddr: &str) -> String {
        let t = &self.topology;
        let mut out = String::new();
        for (i, spec) in t.ring.nodes().iter().enumerate() {
            let i = i as u16;
            let flags = if i == t.myself {
                "myself,master"
            } else {
                "master"
            };
            // ping-sent and pong-recv stay 0 until the cluster bus exchanges pings.
            let _ = write!(
                out,
                "{} {}:{}@{} {flags} - 0 0 {} connected",
                t.id(i),
                self.host(i, laddr),
                spec.port,
                spec.bus_port,
                t.config_epoch(i)
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
        let t = &self.topology;
        let mut out = String::from("cluster_state:ok\r\n");
        let fields: [(&str, u64); 11] = [
            ("cluster_slots_assigned", SLOTS as u64),
            ("cluster_slots_ok", SLOTS as u64),
            ("cluster_slots_pfail", 0),
            ("cluster_slots_fail", 0),
            ("cluster_known_nodes", t.ring.nodes().len() as u64),
            ("cluster_size", t.size() as u64),
            ("cluster_current_epoch", t.current_epoch),
            ("cluster_my_epoch", t.config_epoch(t.myself)),
            // No cluster bus yet: no messages.
            ("cluster_stats_messages_sent", 0),
            ("cluster_stats_messages_received", 0),
            ("total_cluster_links_buffer_limit_exceeded", 0),
        ];
        for (name, value) in fields {
            let _ = write!(out, "{name}:{value}\r\n");
        }
        out
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
        ClusterState::new(cfg.cluster.unwrap(), &table)
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
        (0..100_000)
            .map(|i| format!("k{i}"))
            .find(|k| c.topology.role(key_slot(k.as_bytes())) == role)
            .unwrap()
    }

    const PEERS: &str = "b:127.0.0.1:7002,c:127.0.0.1:7003:17999";

    #[test]
    fn roles_follow_the_ring() {
        let c = state("a", PEERS, &[]);
        let t = &c.topology;
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
        assert_eq!(t.ring.node(2).bus_port, 17999);
        assert_eq!(t.ring.node(1).bus_port, 17002);
        assert_eq!(t.size(), 3);
        assert_eq!(t.current_epoch, 3);
        assert_eq!(t.config_epoch(0), 1);
        assert_eq!(t.config_epoch(2), 3);
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
            node: c.topology.ring.primary(slot),
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
        let nodes = c.nodes_text("127.0.0.1:7001");
        let lines: Vec<&str> = nodes.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(nodes.ends_with('\n'));
        let first: Vec<&str> = lines[0].split(' ').collect();
        assert_eq!(first[0], c.topology.id(0));
        assert_eq!(first[1], "127.0.0.1:7001@17001");
        assert_eq!(first[2], "myself,master");
        assert_eq!(&first[3..8], &["-", "0", "0", "1", "connected"]);
        assert!(lines[1].contains(" master - "));
        let info = c.info_text();
        assert!(info.starts_with("cluster_state:ok\r\ncluster_slots_assigned:16384\r\n"));
        assert!(info.contains("cluster_known_nodes:3\r\n"));
        // A wildcard bind: this node is described by the address the client reached.
        let w = state("a", PEERS, &["--bind", "0.0.0.0"]);
        assert_eq!(w.host(0, "10.1.2.3:7001"), "10.1.2.3");
        assert_eq!(w.host(1, "10.1.2.3:7001"), "127.0.0.1");
    }
}

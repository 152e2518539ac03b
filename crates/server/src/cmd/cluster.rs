//! Cluster commands: CLUSTER (SLOTS, SHARDS, NODES, INFO, MYID, MYSHARDID, KEYSLOT,
//! COUNTKEYSINSLOT, GETKEYSINSLOT, HELP), READONLY, READWRITE and ASKING, with Redis
//! 7.2's replies. Outside cluster mode each answers "This instance has cluster support
//! disabled", as Redis does. How our nodes (primary of some ranges, replica of others)
//! appear in Redis's master/replica vocabulary is explained in `crate::cluster`.

use dse_cluster::{SLOTS, key_slot};
use dse_proto::{Args, Reply};

use crate::args;
use crate::cluster::ClusterState;
use crate::cmd::server::reply_help;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("cluster", -2, 0, cluster)
        .doc(
            "cluster",
            "3.0.0",
            "Depends on subcommand.",
            "A container for Redis Cluster commands.",
        )
        .subs(SUBCOMMANDS),
    cmd("readonly", 1, LOADING | STALE | FAST, readonly).doc(
        "cluster",
        "3.0.0",
        "O(1)",
        "Enables read-only queries for a connection to a Redis Cluster replica node.",
    ),
    cmd("readwrite", 1, LOADING | STALE | FAST, readwrite).doc(
        "cluster",
        "3.0.0",
        "O(1)",
        "Enables read-write queries for a connection to a Reids Cluster replica node.",
    ),
    cmd("asking", 1, FAST, asking).doc(
        "cluster",
        "3.0.0",
        "O(1)",
        "Signals that a cluster client is following an -ASK redirect.",
    ),
];

const NODES_COMPLEXITY: &str = "O(N) where N is the total number of Cluster nodes";

const SUBCOMMANDS: &[CommandSpec] = &[
    cmd("slots", 2, STALE, cluster_slots).doc(
        "cluster",
        "3.0.0",
        NODES_COMPLEXITY,
        "Returns the mapping of cluster slots to nodes.",
    ),
    cmd("shards", 2, STALE, cluster_shards).doc(
        "cluster",
        "7.0.0",
        "O(N) where N is the total number of cluster nodes",
        "Returns the mapping of cluster slots to shards.",
    ),
    cmd("nodes", 2, STALE, cluster_nodes).doc(
        "cluster",
        "3.0.0",
        NODES_COMPLEXITY,
        "Returns the cluster configuration for a node.",
    ),
    cmd("info", 2, STALE, cluster_info).doc(
        "cluster",
        "3.0.0",
        "O(1)",
        "Returns information about the state of a node.",
    ),
    cmd("myid", 2, STALE, cluster_myid).doc(
        "cluster",
        "3.0.0",
        "O(1)",
        "Returns the ID of a node.",
    ),
    cmd("myshardid", 2, STALE, cluster_myshardid).doc(
        "cluster",
        "7.2.0",
        "O(1)",
        "Returns the shard ID of a node.",
    ),
    cmd("keyslot", 3, STALE, cluster_keyslot).doc(
        "cluster",
        "3.0.0",
        "O(N) where N is the number of bytes in the key",
        "Returns the hash slot for a key.",
    ),
    cmd("countkeysinslot", 3, STALE, cluster_countkeysinslot).doc(
        "cluster",
        "3.0.0",
        "O(1)",
        "Returns the number of keys in a hash slot.",
    ),
    cmd("getkeysinslot", 4, STALE, cluster_getkeysinslot).doc(
        "cluster",
        "3.0.0",
        "O(N) where N is the number of keys the node holds",
        "Returns the key names in a hash slot.",
    ),
    cmd("help", 2, LOADING | STALE, cluster_help).doc(
        "cluster",
        "5.0.0",
        "O(1)",
        "Returns helpful text about the different subcommands.",
    ),
];

const DISABLED: CmdError = CmdError::Static("ERR This instance has cluster support disabled");

/// The node's cluster state, or Redis's error outside cluster mode.
fn state<'a>(ctx: &Ctx<'a, '_>) -> Result<&'a ClusterState, CmdError> {
    ctx.srv.cluster.as_ref().ok_or(DISABLED)
}

/// The CLUSTER container itself never runs: the table dispatches to its subcommands.
fn cluster(_ctx: &mut Ctx, _a: Args) -> CmdResult {
    Err(CmdError::Static(
        "ERR unknown subcommand. Try CLUSTER HELP.",
    ))
}

/// One node of a CLUSTER SLOTS row: `[host, port, id, {}]` (the map holds extra
/// endpoints Redis knows, hostnames, which we have none of).
fn node_entry(out: &mut Reply<'_>, c: &ClusterState, node: u16, laddr: &str) {
    let t = &c.topology;
    out.array(4);
    out.bulk_str(&c.host(node, laddr));
    out.int(t.ring.node(node).port as i64);
    out.bulk_str(t.id(node));
    out.map(0);
}

/// `CLUSTER SLOTS` → one row per run of slots with the same owners, in slot order:
/// `[start, end, primary, replica, ...]`, each node `[host, port, id, {}]`, replicas in
/// ring order (the first takes over if the primary goes).
fn cluster_slots(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    let laddr = &ctx.sess.meta.laddr;
    let ranges = c.topology.ranges();
    ctx.out.array(ranges.len());
    for r in ranges {
        ctx.out.array(2 + 1 + r.owners.replicas().len());
        ctx.out.int(r.start as i64);
        ctx.out.int(r.end as i64);
        for node in r.owners.all() {
            node_entry(ctx.out, c, node, laddr);
        }
    }
    Ok(())
}

/// `CLUSTER SHARDS` → one shard per node: `{slots: [start, end, ...], nodes: [{id, port,
/// ip, endpoint, role, replication-offset, health}]}`, the node as the master of the
/// ranges it is primary for. Replica copies are not listed (CLUSTER SLOTS has them).
fn cluster_shards(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    let t = &c.topology;
    let laddr = &ctx.sess.meta.laddr;
    let out = &mut *ctx.out;
    out.array(t.ring.nodes().len());
    for (i, spec) in t.ring.nodes().iter().enumerate() {
        let i = i as u16;
        let ranges = t.primary_ranges(i);
        out.map(2);
        out.bulk_str("slots");
        out.array(ranges.len() * 2);
        for &(start, end) in ranges {
            out.int(start as i64);
            out.int(end as i64);
        }
        out.bulk_str("nodes");
        out.array(1);
        out.map(7);
        out.bulk_str("id");
        out.bulk_str(t.id(i));
        out.bulk_str("port");
        out.int(spec.port as i64);
        let host = c.host(i, laddr);
        out.bulk_str("ip");
        out.bulk_str(&host);
        out.bulk_str("endpoint");
        out.bulk_str(&host);
        out.bulk_str("role");
        out.bulk_str("master");
        // No replication stream yet, so no offset to report.
        out.bulk_str("replication-offset");
        out.int(0);
        out.bulk_str("health");
        out.bulk_str("online");
    }
    Ok(())
}

/// `CLUSTER NODES` → one line per node (Redis's format: `id host:port@busport flags
/// master ping-sent pong-recv config-epoch link-state slot ...`), every node a master.
fn cluster_nodes(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    let text = c.nodes_text(&ctx.sess.meta.laddr);
    ctx.out.verbatim(text.as_bytes());
    Ok(())
}

/// `CLUSTER INFO` → `field:value` lines (cluster_state, slots, nodes, epochs, ...).
fn cluster_info(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    ctx.out.verbatim(c.info_text().as_bytes());
    Ok(())
}

/// `CLUSTER MYID` → this node's 40-hex id (derived from its name).
fn cluster_myid(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    ctx.out.bulk_str(c.topology.id(c.topology.myself));
    Ok(())
}

/// `CLUSTER MYSHARDID` → the 40-hex id of this node's shard (each node is one shard).
fn cluster_myshardid(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    ctx.out.bulk_str(c.topology.shard_id(c.topology.myself));
    Ok(())
}

/// `CLUSTER KEYSLOT key` → the key's slot (CRC16 of the key or its hash tag, mod 16384).
fn cluster_keyslot(ctx: &mut Ctx, a: Args) -> CmdResult {
    state(ctx)?;
    ctx.out.int(key_slot(&a[2]) as i64);
    Ok(())
}

/// `CLUSTER COUNTKEYSINSLOT slot` → the number of keys this node holds in the slot
/// (replica copies included, as a Redis replica counts its own).
fn cluster_countkeysinslot(ctx: &mut Ctx, a: Args) -> CmdResult {
    state(ctx)?;
    let slot = args::int(&a[2])?;
    let slot = u16::try_from(slot)
        .ok()
        .filter(|&s| (s as usize) < SLOTS)
        .ok_or(CmdError::Static("ERR Invalid slot"))?;
    ctx.out
        .int(ctx.srv.store.keys_in_slot(slot).unwrap_or(0) as i64);
    Ok(())
}

/// `CLUSTER GETKEYSINSLOT slot count` → up to `count` names of keys this node holds in
/// the slot.
fn cluster_getkeysinslot(ctx: &mut Ctx, a: Args) -> CmdResult {
    state(ctx)?;
    let slot = args::int(&a[2])?;
    let max = args::int(&a[3])?;
    let (Some(slot), Ok(max)) = (
        u16::try_from(slot).ok().filter(|&s| (s as usize) < SLOTS),
        usize::try_from(max),
    ) else {
        return Err(CmdError::Static("ERR Invalid slot or number of keys"));
    };
    let store = &ctx.srv.store;
    let want = max.min(store.keys_in_slot(slot).unwrap_or(0) as usize);
    // The store keeps no per-slot key index: a walk of the keyspace, cut short once
    // `want` keys are found, and skipped when the slot is empty.
    let mut body = Vec::new();
    let mut items = Reply::new(&mut body, ctx.out.resp());
    let mut n = 0;
    'shards: for i in 0..store.shard_count() {
        if n >= want {
            break;
        }
        let shard = store.read_shard(i);
        for e in shard.iter(ctx.now) {
            if n >= want {
                break 'shards;
            }
            if key_slot(e.key()) == slot {
                items.bulk(e.key());
                n += 1;
            }
        }
    }
    ctx.out.array(n);
    ctx.out.raw(&body);
    Ok(())
}

const HELP: &[&str] = &[
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "MYSHARDID",
    "    Return the node's shard id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port@bus-port[,hostname]> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
];

/// `CLUSTER HELP` → the subcommands, one status line each.
fn cluster_help(ctx: &mut Ctx, _a: Args) -> CmdResult {
    state(ctx)?;
    reply_help(ctx.out, "CLUSTER", HELP);
    Ok(())
}

/// `READONLY` → `+OK`: this connection may read keys of slots this node holds a replica
/// copy of.
fn readonly(ctx: &mut Ctx, _a: Args) -> CmdResult {
    state(ctx)?;
    ctx.sess.readonly = true;
    ctx.out.ok();
    Ok(())
}

/// `READWRITE` → `+OK`: back to reading only the slots this node is primary for.
fn readwrite(ctx: &mut Ctx, _a: Args) -> CmdResult {
    state(ctx)?;
    ctx.sess.readonly = false;
    ctx.out.ok();
    Ok(())
}

/// `ASKING` → `+OK`. Slots never migrate one by one here (a slot changes hands with the
/// membership), so no -ASK redirect is ever sent and the flag would change nothing.
fn asking(ctx: &mut Ctx, _a: Args) -> CmdResult {
    state(ctx)?;
    ctx.out.ok();
    Ok(())
}

//! Cluster commands: CLUSTER (SLOTS, SHARDS, NODES, INFO, MYID, MYSHARDID, KEYSLOT,
//! COUNTKEYSINSLOT, GETKEYSINSLOT, MEET, FORGET, HELP), READONLY, READWRITE and ASKING,
//! with Redis 7.2's replies. Outside cluster mode each answers "This instance has cluster support
//! disabled", as Redis does. How our nodes (primary of some ranges, replica of others)
//! appear in Redis's master/replica vocabulary is explained in `crate::cluster`.

use dse_cluster::{SLOTS, key_slot};
use dse_proto::{Args, Reply};

use crate::args;
use crate::cluster::{ClusterState, Topology};
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
    cmd("meet", -4, ADMIN | STALE, cluster_meet).doc(
        "cluster",
        "3.0.0",
        "O(1)",
        "Forces a node to handshake with another node.",
    ),
    cmd("forget", 3, ADMIN | STALE, cluster_forget).doc(
        "cluster",
        "3.0.0",
        "O(1)",
        "Removes a node from the nodes table.",
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
fn node_entry(out: &mut Reply<'_>, c: &ClusterState, t: &Topology, node: u16, laddr: &str) {
    out.array(4);
    out.bulk_str(&c.host(t, node, laddr));
    out.int(t.spec(node).port as i64);
    out.bulk_str(t.id(node));
    out.map(0);
}

/// `CLUSTER SLOTS` → one row per run of slots with the same owners, in slot order:
/// `[start, end, primary, replica, ...]`, each node `[host, port, id, {}]`, replicas in
/// ring order (the first takes over if the primary goes).
fn cluster_slots(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    let laddr = &ctx.sess.meta.laddr;
    let t = c.topology();
    let ranges = t.ranges();
    ctx.out.array(ranges.len());
    for r in ranges {
        ctx.out.array(2 + 1 + r.owners.replicas().len());
        ctx.out.int(r.start as i64);
        ctx.out.int(r.end as i64);
        for node in r.owners.all() {
            node_entry(ctx.out, c, &t, node, laddr);
        }
    }
    Ok(())
}

/// `CLUSTER SHARDS` → one shard per node: `{slots: [start, end, ...], nodes: [{id, port,
/// ip, endpoint, role, replication-offset, health}]}`, the node as the master of the
/// ranges it is primary for. Replica copies are not listed (CLUSTER SLOTS has them).
fn cluster_shards(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    let t = c.topology();
    let laddr = &ctx.sess.meta.laddr;
    let out = &mut *ctx.out;
    let known: Vec<u16> = t.known().collect();
    out.array(known.len());
    for i in known {
        let spec = t.spec(i);
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
        let host = c.host(&t, i, laddr);
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
        out.bulk_str(match t.state(i) {
            dse_cluster::membership::MemberState::Up => "online",
            dse_cluster::membership::MemberState::Down => "failed",
            _ => "loading",
        });
    }
    Ok(())
}

/// `CLUSTER NODES` → one line per node (Redis's format: `id host:port@busport flags
/// master ping-sent pong-recv config-epoch link-state slot ...`), every node a master.
fn cluster_nodes(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    let text = c.nodes_text(&ctx.sess.meta.laddr, ctx.now);
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
    ctx.out
        .bulk_str(&dse_cluster::ring::node_id(&c.config.myself.name));
    Ok(())
}

/// `CLUSTER MYSHARDID` → the 40-hex id of this node's shard (each node is one shard).
fn cluster_myshardid(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let c = state(ctx)?;
    let name = format!("{}\0shard", c.config.myself.name);
    ctx.out.bulk_str(&dse_cluster::ring::node_id(&name));
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

/// `CLUSTER MEET host port [bus-port]` → `+OK`: asks the cluster to add the node at that
/// address (started with `--join`); it joins in the background, copying the slots it will
/// serve before it serves them (CLUSTER NODES shows it without slots until then).
fn cluster_meet(ctx: &mut Ctx, a: Args) -> CmdResult {
    let c = state(ctx)?;
    if a.len() > 5 {
        return Err(CmdError::Static(
            "ERR Wrong number of arguments for CLUSTER MEET",
        ));
    }
    let host = std::str::from_utf8(&a[2])
        .ok()
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    let port = args::int(&a[3])
        .ok()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0);
    let bus_port = match a.get(4) {
        Some(b) => args::int(b)
            .ok()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0),
        None => port.and_then(|p| p.checked_add(10000)),
    };
    let (Some(host), Some(port), Some(bus_port)) = (host, port, bus_port) else {
        return Err(CmdError::Owned(format!(
            "ERR Invalid node address specified: {}:{}",
            String::from_utf8_lossy(&a[2]),
            String::from_utf8_lossy(&a[3])
        )));
    };
    let Some(consensus) = c.consensus.get() else {
        return Err(CmdError::Static("ERR the cluster is not running yet"));
    };
    let what = format!("{host}:{port}");
    consensus.meet(
        host,
        port,
        bus_port,
        Box::new(move |r| match r {
            Ok(()) => tracing::info!("CLUSTER MEET {what}: the node is being added"),
            Err(e) => tracing::warn!("CLUSTER MEET {what} failed: {e}"),
        }),
    );
    ctx.out.ok();
    Ok(())
}

/// `CLUSTER FORGET node-id` → `+OK`: asks the cluster to remove that node for good. Its
/// slots go to the next nodes of the ring, which already hold copies of them.
fn cluster_forget(ctx: &mut Ctx, a: Args) -> CmdResult {
    let c = state(ctx)?;
    let t = c.topology();
    let id = String::from_utf8_lossy(&a[2]).to_string();
    let node = t
        .known()
        .find(|&i| t.id(i).eq_ignore_ascii_case(&id))
        .ok_or_else(|| CmdError::Owned(format!("ERR Unknown node {id}")))?;
    if node == t.myself {
        return Err(CmdError::Static(
            "ERR I tried hard but I can't forget myself...",
        ));
    }
    let Some(consensus) = c.consensus.get() else {
        return Err(CmdError::Static("ERR the cluster is not running yet"));
    };
    let name = t.spec(node).name.clone();
    consensus.propose(
        dse_cluster::membership::Change::Remove(node),
        Box::new(move |r| match r {
            Ok(epoch) => tracing::info!("CLUSTER FORGET {name}: removed in epoch {epoch}"),
            Err(e) => tracing::warn!("CLUSTER FORGET {name} failed: {e}"),
        }),
    );
    ctx.out.ok();
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
    "MEET <ip> <port> [<bus-port>]",
    "    Connect nodes into a working cluster.",
    "FORGET <node-id>",
    "    Remove a node from the cluster.",
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

//! The server's side of the membership consensus (`dse-consensus`, openraft on its own
//! thread): it carries the consensus messages over the cluster bus, installs every newly
//! agreed membership (the topology, the replication plan, the links), and tells the
//! cluster how far this node has copied the slots it is about to serve.
//!
//! ```text
//!  dse-consensus thread                     event loop 0              peer's event loop
//!  Transport::send(to, msg) ── Msg::Consensus ──▶ links[to] ═ Consensus frame ═▶ Consensus::deliver
//!  on_view(View) ── Topology::new, install, Replication::reconfigure, Msg::Topology ──▶ every loop
//!  loop 0's tick ── report(caught up?) ──▶ Consensus::report ──(heartbeats)──▶ the leader decides
//! ```

use std::sync::{Arc, Weak};

use dse_cluster::NodeSpec;
use dse_cluster::liveness::{Report, Timing};
use dse_cluster::membership::MemberState;
use dse_consensus::{Config, Consensus, Transport, View};

use crate::cluster::Topology;
use crate::server::{Msg, Server};

/// Sends consensus messages over the cluster bus, all through event loop 0's links (they
/// are few and small; one loop keeps them in order per peer).
struct BusTransport {
    srv: Weak<Server>,
}

impl Transport for BusTransport {
    fn send(&self, to: &NodeSpec, msg: Vec<u8>) {
        let Some(srv) = self.srv.upgrade() else {
            return;
        };
        let Some(cluster) = &srv.cluster else { return };
        let t = cluster.topology();
        let node = Some(to.name.as_str())
            .filter(|n| !n.is_empty())
            .and_then(|n| t.index_of(n))
            .filter(|&i| i != t.myself && t.state(i) != MemberState::Removed);
        let known = node.and_then(|n| t.bus_addrs.get(n as usize).copied().flatten());
        let addr = match known {
            Some(a) => a,
            None => {
                use std::net::ToSocketAddrs;
                match (to.host.as_str(), to.bus_port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                {
                    Some(a) => a,
                    None => return,
                }
            }
        };
        cluster
            .messages_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        srv.send(0, Msg::Consensus { node, addr, msg });
    }
}

/// Starts the membership consensus of a cluster node (once its event loops run).
pub fn start(srv: &Arc<Server>) -> Result<(), String> {
    let Some(cluster) = &srv.cluster else {
        return Ok(());
    };
    let c = &cluster.config;
    let config = Config {
        myself: c.myself.clone(),
        bootstrap: c.bootstrap_nodes(),
        dir: srv.config.data.join("cluster"),
        timing: Timing {
            node_timeout_ms: c.node_timeout,
            grace_ms: c.startup_grace,
            heartbeat_ms: (c.node_timeout / 12).clamp(20, 250),
        },
    };
    let weak = Arc::downgrade(srv);
    let on_view = {
        let weak = weak.clone();
        Box::new(move |view: Arc<View>| {
            if let Some(srv) = weak.upgrade() {
                install(&srv, &view);
            }
        })
    };
    let consensus = Consensus::start(config, Arc::new(BusTransport { srv: weak }), on_view)
        .map_err(|e| format!("cannot start the membership consensus: {e}"))?;
    let view = consensus.view();
    if cluster.consensus.set(consensus).is_err() {
        return Err("the membership consensus was started twice".into());
    }
    install(srv, &view);
    Ok(())
}

/// Installs the membership of `view` when it is newer than the one in force: the
/// topology every routing decision reads, the replication plan (streams that change are
/// closed and reopened, copying only what they lack), and the links of every loop.
fn install(srv: &Server, view: &View) {
    let Some(cluster) = &srv.cluster else { return };
    let current = cluster.topology();
    // Epochs only grow; at the same epoch, the view may be the first to know this node
    // as a member (a node that was added).
    let newer = view.membership.epoch > current.epoch
        || (view.membership.epoch == current.epoch
            && view.myself.is_some()
            && !current.is_member());
    if !newer {
        return;
    }
    let t = Arc::new(Topology::new(
        &view.membership,
        view.myself,
        cluster.config.replicas,
        &cluster.config.myself,
    ));
    // Writes routed by either topology need the replicas both count on, until no
    // command routed by the old one still runs.
    let plan = srv.replication.as_ref().map(|r| {
        let plan = r.plan_for(&t);
        r.widen(&plan);
        plan
    });
    cluster.install(t.clone());
    // A command routed by the old topology may still be running on a loop; once every
    // loop passed between two commands, none is. Only then may the consensus tell the
    // others that this node applied the membership (it does so after this returns), so a
    // node taking slots over never writes alongside a late write of the previous owner.
    srv.tx.barrier();
    if let (Some(repl), Some(plan)) = (&srv.replication, plan) {
        let dropped = repl.reconfigure(&t, plan);
        // Writes the change left without the stream that had to acknowledge them answer
        // now (see `Replication::unreachable`).
        srv.repl_waiters.wake_all(|i| srv.send(i, Msg::ReplWake));
        if !dropped.is_empty() {
            // Copies of slots this node no longer holds: their holders have them.
            if let Err(e) = srv
                .store
                .drop_slots(dropped.view().as_bytes(), dse_cluster::key_slot)
            {
                tracing::warn!("could not drop the copies of slots this node no longer holds: {e}");
            }
        }
    }
    let me = t.members.get(t.myself as usize).map(|m| m.state);
    tracing::info!(
        "membership epoch {}: {} (this node: {})",
        t.epoch,
        t.members
            .iter()
            .map(|m| format!("{}={:?}", m.spec.name, m.state))
            .collect::<Vec<_>>()
            .join(" "),
        me.map_or("not a member".to_string(), |s| format!("{s:?}"))
    );
    for i in 0..srv.config.threads {
        srv.send(i, Msg::Topology);
    }
}

/// Tells the cluster how far this node has copied the slots it will serve (loop 0's
/// tick): the leader moves a joining node on (Ready, then Up) from these reports.
pub fn report(srv: &Server, t: &Topology) {
    let Some(consensus) = srv.cluster.as_ref().and_then(|c| c.consensus.get()) else {
        return;
    };
    if !t.is_member() {
        return;
    }
    let (caught_up, quorum_synced) = match t.state(t.myself) {
        MemberState::Joining | MemberState::Ready => srv
            .replication
            .as_ref()
            // Without a log there is nothing to copy from or to.
            .map_or((true, true), |r| r.catch_up(t.epoch)),
        MemberState::Up => (true, true),
        MemberState::Down | MemberState::Removed => (false, false),
    };
    consensus.report(Report {
        epoch: t.epoch,
        caught_up,
        quorum_synced,
    });
}

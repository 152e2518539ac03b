//! openraft's network over the server's transport: request/response with ids and
//! timeouts, since the transport only sends one-way, best-effort messages.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dse_cluster::NodeSpec;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tokio::sync::oneshot;

use crate::Transport;
use crate::types::TypeConfig;
use crate::wire::{Body, Envelope};

/// Outgoing messages and the requests waiting for their reply.
pub(crate) struct Rpc {
    transport: Arc<dyn Transport>,
    pub(crate) me: NodeSpec,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Body>>>,
}

impl Rpc {
    pub(crate) fn new(transport: Arc<dyn Transport>, me: NodeSpec) -> Rpc {
        Rpc {
            transport,
            me,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn send(&self, to: &NodeSpec, id: u64, body: Body) {
        let envelope = Envelope {
            from: self.me.clone(),
            id,
            body,
        };
        self.transport.send(to, envelope.encode());
    }

    /// Sends a request and waits up to `ttl` for its reply (None: none came).
    pub(crate) async fn call(&self, to: &NodeSpec, body: Body, ttl: Duration) -> Option<Body> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.send(to, id, body);
        let reply = tokio::time::timeout(ttl, rx).await;
        self.pending.lock().unwrap().remove(&id);
        reply.ok().and_then(|r| r.ok())
    }

    /// A reply arrived; one for a request that timed out (or a duplicate) is dropped.
    pub(crate) fn resolve(&self, id: u64, body: Body) {
        if let Some(tx) = self.pending.lock().unwrap().remove(&id) {
            let _ = tx.send(body);
        }
    }
}

pub(crate) struct Network {
    pub(crate) rpc: Arc<Rpc>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &NodeSpec) -> Peer {
        Peer {
            rpc: self.rpc.clone(),
            target,
            to: node.clone(),
        }
    }
}

pub(crate) struct Peer {
    rpc: Arc<Rpc>,
    target: u64,
    to: NodeSpec,
}

fn no_answer<E: std::error::Error>() -> RPCError<u64, NodeSpec, E> {
    // Not Unreachable: that backs off for half a second, and a lost message is the
    // common case here; the timeout already paces retries.
    RPCError::Network(NetworkError::new(&io::Error::new(
        io::ErrorKind::TimedOut,
        "no answer from the peer",
    )))
}

fn garbled<E: std::error::Error>() -> RPCError<u64, NodeSpec, E> {
    RPCError::Unreachable(Unreachable::new(&io::Error::new(
        io::ErrorKind::InvalidData,
        "the peer answered with another message",
    )))
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, NodeSpec, RaftError<u64>>> {
        match self
            .rpc
            .call(&self.to, Body::Append(rpc), option.hard_ttl())
            .await
        {
            Some(Body::AppendReply(Ok(r))) => Ok(r),
            Some(Body::AppendReply(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Some(_) => Err(garbled()),
            None => Err(no_answer()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, NodeSpec, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .rpc
            .call(&self.to, Body::Snapshot(rpc), option.hard_ttl())
            .await
        {
            Some(Body::SnapshotReply(Ok(r))) => Ok(r),
            Some(Body::SnapshotReply(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Some(_) => Err(garbled()),
            None => Err(no_answer()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, NodeSpec, RaftError<u64>>> {
        match self
            .rpc
            .call(&self.to, Body::Vote(rpc), option.hard_ttl())
            .await
        {
            Some(Body::VoteReply(Ok(r))) => Ok(r),
            Some(Body::VoteReply(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Some(_) => Err(garbled()),
            None => Err(no_answer()),
        }
    }
}

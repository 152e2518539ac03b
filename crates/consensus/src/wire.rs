//! The messages consensus nodes exchange, carried opaquely by the server's cluster bus.
//!
//! Every message is one JSON [`Envelope`]: the sender's NodeSpec (so a node can answer a
//! peer it has no address for yet: a node being met, or one learning the cluster), a
//! request id (echoed by the reply; 0 for one-way messages) and the body. The bus has
//! already authenticated the sender's name; an envelope naming another sender is dropped.
//!
//! Sizes: heartbeats and their acks are about 150 bytes, raft heartbeats (empty appends)
//! about 300, an append with one membership change under 1 KB, a snapshot a few KB per
//! 64 members. Messages may be lost, delayed or duplicated: requests time out, replies to
//! unknown ids are dropped, and a duplicated raft request is harmless by Raft's design.

use dse_cluster::{Change, NodeSpec, Report};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::types::TypeConfig;

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Envelope {
    pub from: NodeSpec,
    pub id: u64,
    pub body: Body,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) enum Body {
    Append(AppendEntriesRequest<TypeConfig>),
    AppendReply(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    Vote(VoteRequest<u64>),
    VoteReply(Result<VoteResponse<u64>, RaftError<u64>>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    SnapshotReply(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// Liveness round trip (dse_cluster::liveness), with the sender's own status.
    Heartbeat {
        sent_ms: u64,
        report: Report,
    },
    /// `sent_ms` echoed; `log_epoch`: the epoch the acknowledging node's log reaches;
    /// `applied_epoch`: the epoch of the membership it had handed to its server when it
    /// sent this (0 from a node that predates the field: it ends no fence early). A node
    /// also sends one when it applies a membership, for the last heartbeat of each peer.
    HeartbeatAck {
        sent_ms: u64,
        log_epoch: u64,
        #[serde(default)]
        applied_epoch: u64,
    },
    /// CLUSTER MEET: who are you? Answered only by a node that is not a member yet.
    Hello,
    HelloReply {
        name: String,
    },
    /// A change for the leader to propose (a follower's CLUSTER FORGET, a MEET's Add).
    Propose(Change),
    ProposeReply(Result<u64, String>),
}

impl Envelope {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("consensus messages serialize")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Envelope> {
        serde_json::from_slice(bytes).ok()
    }
}

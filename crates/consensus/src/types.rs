//! The openraft type configuration and what the raft log carries.

use std::io::Cursor;

use dse_cluster::{Change, NodeSpec};

/// What a normal raft log entry holds: one membership change, stamped with the epoch of
/// the membership it was decided on. It applies only to that epoch (anything else is
/// refused when applied), so the epoch an entry leads to is known before it is applied:
/// `epoch + 1`. The lease needs that (see `Liveness::acked_at`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Command {
    pub epoch: u64,
    pub change: Change,
}

/// What applying an entry answers: the new epoch, or why the change was refused.
pub type Applied = Result<u64, String>;

openraft::declare_raft_types!(
    /// dse's raft: name hashes as node ids (`node_raft_id`), NodeSpecs as node addresses.
    pub TypeConfig:
        D = Command,
        R = Applied,
        NodeId = u64,
        Node = NodeSpec,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type Vote = openraft::Vote<u64>;
pub type StorageError = openraft::StorageError<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, NodeSpec>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, NodeSpec>;

/// The raft node id of the node named `name`: 64 bits of its 40-hex id (a hash of the
/// name). Not the member index: a node started without peers must run raft before it
/// knows the index CLUSTER MEET will give it, and its name is all it knows.
pub fn node_raft_id(name: &str) -> u64 {
    let id = dse_cluster::ring::node_id(name);
    u64::from_str_radix(&id[..16], 16).expect("node ids are hex")
}

//! The cluster, as logic without I/O, so tests can drive it directly.
//!
//! - [`slot`]: a key's slot, CRC16(key) mod 16384 with Redis Cluster's hash tags, so
//!   cluster-aware clients compute the same slot we do.
//! - [`ring`]: the consistent hash ring. Each node has 128 vnodes at positions in the
//!   slot space derived from its name (xxh3); a slot's primary is the first vnode at or
//!   after it, its replicas the next distinct nodes clockwise. Every node computes the
//!   same slot map from the same membership.
//! - [`membership`]: the agreed member list, each member's state and the epoch
//!   ([`Membership`], changed only by [`Change`]s that dse-consensus agrees); the ring is
//!   derived from it.
//! - [`liveness`]: heartbeat round trips, the write lease, and the leader's decisions
//!   ([`Liveness`], [`decide`]).
//! - [`bus`]: the cluster bus wire protocol (framing, messages, the authenticated
//!   handshake) that nodes speak on `--cluster-port`.

pub mod bus;
pub mod liveness;
pub mod membership;
pub mod ring;
pub mod slot;

pub use bus::{
    Acceptor, Auth, BusError, DEFAULT_MAX_FRAME, Decoder, Frame, HANDSHAKE_MAX_FRAME, Initiator,
    OpenFrame, PROTOCOL_VERSION, SlotBits, SlotSet, Step,
};
pub use liveness::{Liveness, Report, Timing, decide};
pub use membership::{Change, MAX_MEMBERS, Member, MemberState, Membership, MembershipError};
pub use ring::{NodeSpec, Ring, SlotRange, VNODES};
pub use slot::{SLOTS, crc16, key_slot};

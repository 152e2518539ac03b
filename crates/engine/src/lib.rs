//! The sharded in-memory store.
//!
//! - [`Store`] holds `2^n` shards, each a `parking_lot::RwLock` over a [`slab`] of
//!   [`Entry`]s indexed by a `hashbrown::HashTable`. A key's hash picks its shard and its
//!   bucket, and is computed once per access ([`KeyHash`]).
//! - [`Value`] is the enum of data types; strings that are canonical integers are stored
//!   as [`Value::Int`], as Redis's `int` encoding.
//! - Every mutation is described as [`Effect`]s, handed to the [`Journal`] under the
//!   shard's write lock and applied only if the journal accepted them: per key, log order
//!   equals apply order, and a write the log refused never happened.
//! - WATCH registrations live beside the shards ([`Store::watch`]); the journal path
//!   raises the flags of the keys each write changes.
//! - TTLs are absolute millisecond deadlines. Reads treat an expired key as absent; writes
//!   and the active expiry cycle ([`Store::active_expire`]) delete it, as a logged `Del`.
//!
//! The engine does no I/O and reads no clock: callers pass `now` in milliseconds.

mod effect;
mod glob;
mod hash;
mod list;
mod listen;
mod set;
mod store;
mod value;
mod watch;
mod zset;

pub use effect::{Effect, Journal, JournalError, NoJournal, slot_in};
pub use glob::glob_match;
pub use listen::WriteListener;
pub use set::SetMembers;
pub use store::MAX_SHARDS;
pub use store::{
    Entry, Expiry, KeyHash, MultiMut, ScanCursor, ShardMut, ShardRef, Store, StoreStats,
    WriteError, observed_lsn, observed_lsn_reset,
};
pub use value::{STR_INLINE, ScoredMember, Str, Value, ZSet, parse_canonical_i64};
pub use watch::WatchFlag;
pub use zset::ZOrder;

/// Log sequence number: the position of a record in the write-ahead log. 0 means "not
/// logged" (persistence off).
pub type Lsn = u64;

//! Effects: what a write did to the keyspace, in a form the log can record and replay.
//!
//! Effects carry results, never commands: INCR becomes "the key now holds 42", EXPIRE 10
//! becomes an absolute deadline, APPEND becomes the whole new string (as pieces, so it is
//! never joined in memory just to be logged). Replaying effects is therefore idempotent
//! and independent of the clock.
//!
//! Collection effects are the exception: element-level operations (push these items,
//! pop three), so a write to a large list or hash logs what changed, not the collection.
//! They are deterministic given the key's previous state, which replay in log order
//! reproduces.

use crate::{Lsn, Value};

/// One change to one key (or to the whole keyspace).
#[derive(Debug, Clone, Copy)]
pub enum Effect<'a> {
    /// The key now holds the string made of `parts` joined, with deadline `expire_at`
    /// (milliseconds since the epoch, 0 for none).
    SetStr {
        key: &'a [u8],
        parts: &'a [&'a [u8]],
        expire_at: u64,
    },
    /// The key now holds this integer-encoded string.
    SetInt {
        key: &'a [u8],
        value: i64,
        expire_at: u64,
    },
    /// The key now holds this value, of any type (COPY, RENAME, collections).
    SetValue {
        key: &'a [u8],
        value: &'a Value,
        expire_at: u64,
    },
    /// The key no longer exists (DEL, expiry, a RENAME's source).
    Del { key: &'a [u8] },
    /// The key's deadline is now `at` (0: no deadline, PERSIST).
    Expire { key: &'a [u8], at: u64 },
    /// `bytes` are written into the string at `key` from byte `offset`, after padding the
    /// string with zero bytes to at least `offset + bytes.len()` (SETRANGE, SETBIT,
    /// BITFIELD, an HLL register). A missing key becomes such a string without a
    /// deadline; an existing one keeps its deadline. Logging the bytes that changed, not
    /// the string, keeps a SETBIT on a 100 MB bitmap a few bytes in the log. With empty
    /// `bytes` it only grows the string to `offset` bytes.
    StrWrite {
        key: &'a [u8],
        offset: u64,
        bytes: &'a [u8],
    },
    /// Every key is gone.
    FlushAll,
    /// Every key of the cluster slots in `slots` is gone (a bitmap: slot `s` iff bit
    /// `s % 8` of byte `s / 8`); `slot_of` maps a key to its slot. Cluster mode's FLUSHALL
    /// (the slots a node is primary for) and a replica's full resync (the slots it copies).
    DropSlots {
        slots: &'a [u8],
        slot_of: fn(&[u8]) -> u16,
    },
    /// The records up to the matching [`Effect::TxCommit`] are one transaction (EXEC):
    /// recovery applies all of them or, when the commit never reached the log, none.
    TxBegin,
    /// Closes the transaction [`Effect::TxBegin`] opened.
    TxCommit,

    // --- lists and hashes ---
    // Element-level operations: each is applied to the key's previous state (replay is
    // deterministic because it sees the same state in the same order). An effect that
    // leaves a collection empty deletes the key. Only the pushes and `HashSet` create a
    // missing key (without a deadline); the others do nothing to one.
    /// Pushes `items` one at a time at the head (`left`) or the tail of the list: LPUSH
    /// a b c leaves c b a at the head.
    ListPush {
        key: &'a [u8],
        left: bool,
        items: &'a [&'a [u8]],
    },
    /// Removes `count` elements (at most the list's length) from the head or the tail.
    ListPop {
        key: &'a [u8],
        left: bool,
        count: u64,
    },
    /// Replaces the element at `index` (from the head, within the list).
    ListSet {
        key: &'a [u8],
        index: u64,
        value: &'a [u8],
    },
    /// Inserts `value` so that it is then at `index` (0 ..= length).
    ListInsert {
        key: &'a [u8],
        index: u64,
        value: &'a [u8],
    },
    /// Removes elements equal to `value`, as LREM does: the first `count` from the head
    /// when positive, the last `-count` from the tail when negative, all when 0.
    ListRemove {
        key: &'a [u8],
        value: &'a [u8],
        count: i64,
    },
    /// Removes `head` elements from the head and `tail` from the tail (LTRIM, with its
    /// range already resolved against the length).
    ListTrim { key: &'a [u8], head: u64, tail: u64 },
    /// Sets each field to its value, creating the hash and the fields as needed.
    HashSet {
        key: &'a [u8],
        pairs: &'a [(&'a [u8], &'a [u8])],
    },
    /// Removes these fields (missing ones are ignored).
    HashDel {
        key: &'a [u8],
        fields: &'a [&'a [u8]],
    },
    // --- sets and sorted sets ---
    // Element-level operations: applying one depends only on the key's previous value
    // (a missing key becomes an empty collection first; an emptied one is deleted).
    /// These members are in the set at `key` (those already there are skipped).
    SetAdd {
        key: &'a [u8],
        members: &'a [&'a [u8]],
    },
    /// These members are no longer in the set at `key`.
    SetRem {
        key: &'a [u8],
        members: &'a [&'a [u8]],
    },
    /// Each member has this score in the sorted set at `key` (added or moved), in order.
    ZAdd {
        key: &'a [u8],
        entries: &'a [(f64, &'a [u8])],
    },
    /// These members are no longer in the sorted set at `key`.
    ZRem {
        key: &'a [u8],
        members: &'a [&'a [u8]],
    },
}

/// Whether bitmap `slots` (as [`Effect::DropSlots`] holds it) contains `slot`.
pub fn slot_in(slots: &[u8], slot: u16) -> bool {
    slots
        .get(slot as usize / 8)
        .is_some_and(|b| b & (1 << (slot % 8)) != 0)
}

impl<'a> Effect<'a> {
    /// The key this effect changes, `None` for [`Effect::FlushAll`].
    pub fn key(&self) -> Option<&'a [u8]> {
        match *self {
            Effect::SetStr { key, .. }
            | Effect::SetInt { key, .. }
            | Effect::SetValue { key, .. }
            | Effect::Del { key }
            | Effect::Expire { key, .. }
            | Effect::StrWrite { key, .. } => Some(key),
            // lists and hashes
            Effect::ListPush { key, .. }
            | Effect::ListPop { key, .. }
            | Effect::ListSet { key, .. }
            | Effect::ListInsert { key, .. }
            | Effect::ListRemove { key, .. }
            | Effect::ListTrim { key, .. }
            | Effect::HashSet { key, .. }
            | Effect::HashDel { key, .. } => Some(key),
            Effect::FlushAll | Effect::DropSlots { .. } | Effect::TxBegin | Effect::TxCommit => {
                None
            }
            Effect::SetAdd { key, .. }
            | Effect::SetRem { key, .. }
            | Effect::ZAdd { key, .. }
            | Effect::ZRem { key, .. } => Some(key),
        }
    }
}

/// Why the journal refused a write. The write is then not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The log cannot take writes (disk full, I/O error); reads go on.
    #[error("MISCONF Errors writing to the AOF file: {0}")]
    Unavailable(String),
    /// Cluster mode: a replica the write must reach (see `--write-quorum`) has no live
    /// replication stream, so the write is refused before it happens (Redis's
    /// min-replicas error).
    #[error("NOREPLICAS Not enough good replicas to write.")]
    NoReplicas,
}

/// Where effects go before they are applied: the write-ahead log, a replication stream.
///
/// `append` is called with the write lock of every shard the effects touch held, so two
/// writes to one key reach the journal in the order they are applied. It must be quick:
/// copy the record into a buffer and return; durability is awaited elsewhere, by LSN.
pub trait Journal: Send + Sync {
    /// Records `effects` as one atomic unit and returns its LSN.
    fn append(&self, effects: &[Effect<'_>]) -> Result<Lsn, JournalError>;
}

/// The journal when persistence is off: accepts everything, records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoJournal;

impl Journal for NoJournal {
    fn append(&self, _effects: &[Effect<'_>]) -> Result<Lsn, JournalError> {
        Ok(0)
    }
}

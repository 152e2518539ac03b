//! Effects: what a write did to the keyspace, in a form the log can record and replay.
//!
//! Effects carry results, never commands: INCR becomes "the key now holds 42", EXPIRE 10
//! becomes an absolute deadline, APPEND becomes the whole new string (as pieces, so it is
//! never joined in memory just to be logged). Replaying effects is therefore idempotent
//! and independent of the clock.

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
    /// Every key is gone.
    FlushAll,

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

impl<'a> Effect<'a> {
    /// The key this effect changes, `None` for [`Effect::FlushAll`].
    pub fn key(&self) -> Option<&'a [u8]> {
        match *self {
            Effect::SetStr { key, .. }
            | Effect::SetInt { key, .. }
            | Effect::SetValue { key, .. }
            | Effect::Del { key }
            | Effect::Expire { key, .. } => Some(key),
            Effect::FlushAll => None,
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

//! The store: shards, entries, guards, and the write path (journal, then apply).

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use slab::Slab;

use crate::effect::{Effect, Journal, JournalError};
use crate::listen::{Listeners, WriteListener};
use crate::watch::{WatchFlag, Watchers};
use crate::{Lsn, Str, Value, hash, list};

/// Most shards a store can have; the shard index is taken from the hash's top 16 bits.
pub const MAX_SHARDS: usize = 1 << 16;

/// A key's hash, computed once and used for both the shard and the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyHash(u64);

impl KeyHash {
    fn shard(self, mask: usize) -> usize {
        (self.0 >> 48) as usize & mask
    }

    fn table_hash(self) -> u64 {
        tag_hash(self.0 as u32)
    }
}

/// hashbrown takes the bucket from the low bits and its control byte from the top seven,
/// while the shard takes the hash's top bits: a 32-bit tag spread over both halves gives
/// the table bits independent of the shard, for tables of up to 2^25 buckets per shard.
fn tag_hash(tag: u32) -> u64 {
    let t = tag as u64;
    t | (t << 32)
}

/// Keys up to this long are kept inside their record.
const KEY_INLINE: usize = 16;
/// `Record::meta`: the low bits code the key's length (0..=16: inline, this many bytes),
/// the high bits the record's position in the shard's list of deadlines.
const KEY_BITS: u32 = 5;
const KEY_MASK: u32 = (1 << KEY_BITS) - 1;
/// Key length code of a key kept in the shard's `long_keys` (its index in the record).
const KEY_LONG: u32 = KEY_MASK;
/// Position code of a record without a deadline.
const NOT_VOLATILE: u32 = u32::MAX >> KEY_BITS;

/// A key with its value, as a shard keeps it: 48 bytes, and for the common key of up to 16
/// bytes holding a string of up to 22 (or an integer), no allocation at all. At 1M keys
/// the slab of records plus the hash table's 4-byte slots come to about 61 bytes per key.
///
/// A record is not self-contained: a longer key lives in the shard's `long_keys` and a
/// deadline in its `volatile` list, so records are read through [`Entry`], which pairs one
/// with its shard.
struct Record {
    value: Value,
    /// The key (its first `len` bytes), or for a long key its index in `long_keys`.
    key: [u8; KEY_INLINE],
    /// Last access, in seconds (the LRU clock behind OBJECT IDLETIME and eviction).
    /// Atomic so readers holding only the read lock can update it.
    access: AtomicU32,
    /// Key length code and deadline position, see `KEY_BITS`.
    meta: u32,
}

impl Record {
    fn key_code(&self) -> u32 {
        self.meta & KEY_MASK
    }

    fn volatile_pos(&self) -> u32 {
        self.meta >> KEY_BITS
    }

    fn set_volatile_pos(&mut self, pos: u32) {
        self.meta = (pos << KEY_BITS) | self.key_code();
    }

    fn long_key_index(&self) -> usize {
        u32::from_le_bytes([self.key[0], self.key[1], self.key[2], self.key[3]]) as usize
    }

    fn touch(&self, now: u64) {
        let now_s = (now / 1000) as u32;
        // Store only when the second changed: readers on other cores then rarely write
        // the same cache line.
        if self.access.load(Ordering::Relaxed) != now_s {
            self.access.store(now_s, Ordering::Relaxed);
        }
    }
}

/// What one record costs in the shard's fixed structures: the slab slot (the slab's
/// `Vacant(usize)` variant fits beside a record, as this mirror of its enum checks) and
/// the hash table's slot and control byte.
const RECORD_COST: usize = std::mem::size_of::<SlabSlot>() + std::mem::size_of::<u32>() + 1;

/// The layout of `slab::Slab`'s entries, to know what a slot of it costs.
#[allow(dead_code)]
enum SlabSlot {
    Vacant(usize),
    Occupied(Record),
}

/// The same for the slab of long keys.
#[allow(dead_code)]
enum LongKeySlot {
    Vacant(usize),
    Occupied(Box<[u8]>),
}

/// A live key as a shard holds it, for as long as the shard's guard is held.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    record: &'a Record,
    shard: &'a ShardData,
}

impl<'a> Entry<'a> {
    pub fn key(&self) -> &'a [u8] {
        self.shard.key_of(self.record)
    }

    pub fn value(&self) -> &'a Value {
        &self.record.value
    }

    /// The deadline in milliseconds since the epoch, if the key has one.
    pub fn expire_at(&self) -> Option<u64> {
        let at = self.shard.deadline_of(self.record);
        (at != 0).then_some(at)
    }

    /// Milliseconds left before expiry, `None` when the key does not expire.
    pub fn ttl_ms(&self, now: u64) -> Option<u64> {
        self.expire_at().map(|at| at.saturating_sub(now))
    }

    /// Seconds since the last access.
    pub fn idle_secs(&self, now: u64) -> u64 {
        let now_s = (now / 1000) as u32;
        now_s.wrapping_sub(self.record.access.load(Ordering::Relaxed)) as u64
    }

    /// Makes the key look last accessed `idle_secs` seconds before `now` (RESTORE
    /// IDLETIME). Access times are not logged, so neither is this.
    pub fn set_idle_secs(&self, now: u64, idle_secs: u64) {
        let now_s = (now / 1000) as u32;
        let idle = u32::try_from(idle_secs).unwrap_or(u32::MAX);
        self.record
            .access
            .store(now_s.wrapping_sub(idle), Ordering::Relaxed);
    }

    /// Bytes the key accounts for: its record and table slot, and what its key and value
    /// keep on the heap (MEMORY USAGE).
    pub fn memory_usage(&self) -> usize {
        self.shard.cost_of(self.record)
    }
}

impl std::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("key", &String::from_utf8_lossy(self.key()))
            .field("value", self.value())
            .field("expire_at", &self.expire_at())
            .finish()
    }
}

/// What happens to a key's deadline when it is overwritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// No deadline (SET without options).
    None,
    /// Keep the current deadline (SET KEEPTTL, INCR, APPEND).
    Keep,
    /// This absolute deadline in milliseconds since the epoch.
    At(u64),
}

/// Why a write did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

// C layout, hot fields first: a lookup touches the lock word, the table, the slab and
// the shard's last LSN, which then share the shard's first cache line or two.
#[repr(C)]
struct ShardData {
    /// Slab indices of the records, by key hash.
    table: HashTable<u32>,
    /// LSN of the last write applied to this shard: a reader has seen data that is
    /// durable once the log is durable up to here.
    last_lsn: Lsn,
    records: Slab<Record>,
    /// Keys longer than `KEY_INLINE`, indexed from their records.
    long_keys: Slab<Box<[u8]>>,
    /// (slab index, deadline in ms) of the records that have a deadline, for their
    /// deadline and for sampling by active expiry.
    volatile: Vec<(u32, u64)>,
    /// Heap bytes of long keys and of values, beside the fixed structures (see `mem`).
    heap: usize,
    /// Keys per cluster slot, shared by every shard; `None` outside cluster mode.
    slots: Option<Arc<SlotCounts>>,
    /// The store's key hasher: the table keeps no hashes, so growing it hashes the keys
    /// again.
    hasher: foldhash::fast::FixedState,
}

impl ShardData {
    fn new(slots: Option<Arc<SlotCounts>>, hasher: foldhash::fast::FixedState) -> Self {
        ShardData {
            table: HashTable::new(),
            records: Slab::new(),
            long_keys: Slab::new(),
            volatile: Vec::new(),
            heap: 0,
            last_lsn: 0,
            slots,
            hasher,
        }
    }

    /// Bytes the shard holds: its slab, table, long-key and deadline structures at their
    /// allocated sizes, and what keys and values keep on the heap.
    fn mem(&self) -> usize {
        self.records.capacity() * std::mem::size_of::<SlabSlot>()
            + self.table.allocation_size()
            + self.long_keys.capacity() * std::mem::size_of::<LongKeySlot>()
            + self.volatile.capacity() * std::mem::size_of::<(u32, u64)>()
            + self.heap
    }

    /// The part of `mem` the keys account for (see [`StoreStats::dataset`]).
    fn dataset(&self) -> usize {
        self.records.len() * RECORD_COST
            + self.long_keys.len() * std::mem::size_of::<LongKeySlot>()
            + self.volatile.len() * std::mem::size_of::<(u32, u64)>()
            + self.heap
    }

    /// Empties the shard, keeping its place in the slot counts.
    fn clear(&mut self) {
        if let Some(slots) = &self.slots {
            for (_, r) in self.records.iter() {
                slots.sub(self.key_of(r));
            }
        }
        *self = ShardData::new(self.slots.take(), self.hasher.clone());
    }

    fn key_of<'a>(&'a self, r: &'a Record) -> &'a [u8] {
        let code = r.key_code();
        if code == KEY_LONG {
            &self.long_keys[r.long_key_index()]
        } else {
            &r.key[..code as usize]
        }
    }

    /// The record's deadline, 0 when none.
    fn deadline_of(&self, r: &Record) -> u64 {
        match r.volatile_pos() {
            NOT_VOLATILE => 0,
            pos => self.volatile[pos as usize].1,
        }
    }

    fn is_live(&self, r: &Record, now: u64) -> bool {
        let at = self.deadline_of(r);
        at == 0 || at > now
    }

    fn cost_of(&self, r: &Record) -> usize {
        let key = match r.key_code() {
            KEY_LONG => std::mem::size_of::<LongKeySlot>() + self.key_of(r).len(),
            _ => 0,
        };
        let deadline = match r.volatile_pos() {
            NOT_VOLATILE => 0,
            _ => std::mem::size_of::<(u32, u64)>(),
        };
        RECORD_COST + key + deadline + r.value.heap_size()
    }

    fn entry<'a>(&'a self, idx: usize) -> Entry<'a> {
        Entry {
            record: &self.records[idx],
            shard: self,
        }
    }

    /// Removes every key whose slot is in the bitmap `slots`.
    fn drop_slots(&mut self, slots: &[u8], slot_of: fn(&[u8]) -> u16) {
        let doomed: Vec<usize> = self
            .records
            .iter()
            .filter(|(_, r)| crate::slot_in(slots, slot_of(self.key_of(r))))
            .map(|(idx, _)| idx)
            .collect();
        for idx in doomed {
            self.remove_idx(idx);
        }
    }

    /// The address of the table's control bytes (see [`TableHint`]), or 0 while it is
    /// empty.
    fn table_ctrl(&self) -> usize {
        // An empty table may still have many buckets: it is not searched for a full one.
        if self.table.is_empty() {
            return 0;
        }
        let i = self
            .table
            .iter_buckets()
            .next()
            .expect("a table with items");
        let slot = self.table.get_bucket(i).expect("an occupied bucket");
        slot as *const u32 as usize + (i + 1) * std::mem::size_of::<u32>()
    }

    fn find(&self, key: &[u8], h: KeyHash) -> Option<usize> {
        let records = &self.records;
        if key.len() <= KEY_INLINE {
            // Inline keys are stored zero-padded: one 16-byte comparison, no memcmp call.
            let mut padded = [0u8; KEY_INLINE];
            padded[..key.len()].copy_from_slice(key);
            let code = key.len() as u32;
            self.table
                .find(h.table_hash(), |&idx| {
                    let r = &records[idx as usize];
                    r.key_code() == code && r.key == padded
                })
                .map(|&idx| idx as usize)
        } else {
            let long_keys = &self.long_keys;
            self.table
                .find(h.table_hash(), |&idx| {
                    let r = &records[idx as usize];
                    r.key_code() == KEY_LONG && &*long_keys[r.long_key_index()] == key
                })
                .map(|&idx| idx as usize)
        }
    }

    fn get(&self, key: &[u8], h: KeyHash, now: u64) -> Option<Entry<'_>> {
        let idx = self.find(key, h)?;
        let r = &self.records[idx];
        if !self.is_live(r, now) {
            return None;
        }
        r.touch(now);
        Some(self.entry(idx))
    }

    /// Replaces the value of record `idx`, keeping the heap count right.
    fn set_value(&mut self, idx: usize, value: Value) {
        let r = &mut self.records[idx];
        self.heap = self.heap - r.value.heap_size() + value.heap_size();
        r.value = value;
    }

    /// Inserts or replaces `key`, keeping its slab slot when it exists.
    fn insert(&mut self, key: &[u8], h: KeyHash, value: Value, expire_at: u64, now: u64) {
        match self.find(key, h) {
            Some(idx) => {
                self.set_value(idx, value);
                self.records[idx].touch(now);
                self.set_deadline(idx, expire_at);
            }
            None => {
                let mut record = Record {
                    value,
                    key: [0; KEY_INLINE],
                    access: AtomicU32::new((now / 1000) as u32),
                    meta: NOT_VOLATILE << KEY_BITS,
                };
                if key.len() <= KEY_INLINE {
                    record.key[..key.len()].copy_from_slice(key);
                    record.meta |= key.len() as u32;
                } else {
                    let at = self.long_keys.insert(key.into());
                    record.key[..4].copy_from_slice(&(at as u32).to_le_bytes());
                    record.meta |= KEY_LONG;
                    self.heap += key.len();
                }
                self.heap += record.value.heap_size();
                if let Some(slots) = &self.slots {
                    slots.add(key);
                }
                let idx = self.records.insert(record);
                assert!(idx < u32::MAX as usize, "shard holds 2^32 keys");
                let (records, long_keys, hasher) = (&self.records, &self.long_keys, &self.hasher);
                self.table.insert_unique(h.table_hash(), idx as u32, |&i| {
                    use std::hash::BuildHasher;
                    let r = &records[i as usize];
                    let key = match r.key_code() {
                        KEY_LONG => &long_keys[r.long_key_index()],
                        n => &r.key[..n as usize],
                    };
                    KeyHash(hasher.hash_one(key)).table_hash()
                });
                self.set_deadline(idx, expire_at);
            }
        }
    }

    /// Removes record `idx` (whose key hashes to `h`) and returns its value.
    fn remove_at(&mut self, idx: usize, h: KeyHash) -> Value {
        self.set_deadline(idx, 0);
        if let Ok(slot) = self
            .table
            .find_entry(h.table_hash(), |&i| i as usize == idx)
        {
            slot.remove();
        }
        let r = self.records.remove(idx);
        if let Some(slots) = &self.slots {
            slots.sub(self.key_of(&r));
        }
        if r.key_code() == KEY_LONG {
            let key = self.long_keys.remove(r.long_key_index());
            self.heap -= key.len();
        }
        self.heap -= r.value.heap_size();
        r.value
    }

    /// Removes record `idx`, hashing its key to find its table slot.
    fn remove_idx(&mut self, idx: usize) -> Value {
        use std::hash::BuildHasher;
        let h = KeyHash(self.hasher.hash_one(self.key_of(&self.records[idx])));
        self.remove_at(idx, h)
    }

    fn set_deadline(&mut self, idx: usize, at: u64) {
        let pos = self.records[idx].volatile_pos();
        match (at != 0, pos != NOT_VOLATILE) {
            (true, false) => {
                let pos = self.volatile.len() as u32;
                assert!(pos < NOT_VOLATILE, "shard holds 2^27 keys with deadlines");
                self.volatile.push((idx as u32, at));
                self.records[idx].set_volatile_pos(pos);
            }
            (true, true) => self.volatile[pos as usize].1 = at,
            (false, true) => {
                self.records[idx].set_volatile_pos(NOT_VOLATILE);
                self.volatile.swap_remove(pos as usize);
                if let Some(&(moved, _)) = self.volatile.get(pos as usize) {
                    self.records[moved as usize].set_volatile_pos(pos);
                }
            }
            (false, false) => {}
        }
    }

    /// Applies one effect whose key hashes to `h` (ignored for FlushAll).
    fn apply(&mut self, effect: &Effect<'_>, h: KeyHash, now: u64) {
        match *effect {
            Effect::SetStr {
                key,
                parts,
                expire_at,
            } => self.insert(key, h, Value::string_from_parts(parts), expire_at, now),
            Effect::SetInt {
                key,
                value,
                expire_at,
            } => self.insert(key, h, Value::Int(value), expire_at, now),
            Effect::SetValue {
                key,
                value,
                expire_at,
            } => self.insert(key, h, value.clone(), expire_at, now),
            Effect::Del { key } => {
                if let Some(idx) = self.find(key, h) {
                    self.remove_at(idx, h);
                }
            }
            Effect::Expire { key, at } => {
                if let Some(idx) = self.find(key, h) {
                    self.set_deadline(idx, at);
                }
            }
            Effect::StrWrite { key, offset, bytes } => self.write_str(key, h, offset, bytes, now),
            Effect::FlushAll => self.clear(),
            Effect::DropSlots { slots, slot_of } => self.drop_slots(slots, slot_of),
            // Markers for recovery; nothing to apply.
            Effect::TxBegin | Effect::TxCommit => {}
            // lists and hashes
            Effect::ListPush { key, left, items } => {
                self.apply_to_collection(key, h, now, Some(list::empty), |v| {
                    list::push(v, left, items)
                })
            }
            Effect::ListPop { key, left, count } => {
                self.apply_to_collection(key, h, now, None, |v| list::pop(v, left, count))
            }
            Effect::ListSet { key, index, value } => {
                self.apply_to_collection(key, h, now, None, |v| list::set(v, index, value))
            }
            Effect::ListInsert { key, index, value } => {
                self.apply_to_collection(key, h, now, None, |v| list::insert(v, index, value))
            }
            Effect::ListRemove { key, value, count } => {
                self.apply_to_collection(key, h, now, None, |v| list::remove(v, value, count))
            }
            Effect::ListTrim { key, head, tail } => {
                self.apply_to_collection(key, h, now, None, |v| list::trim(v, head, tail))
            }
            Effect::HashSet { key, pairs } => {
                self.apply_to_collection(key, h, now, Some(hash::empty), |v| hash::set(v, pairs))
            }
            Effect::HashDel { key, fields } => {
                self.apply_to_collection(key, h, now, None, |v| hash::del(v, fields))
            }
            Effect::SetAdd { key, members } => {
                self.apply_to_collection(key, h, now, Some(empty_set), |v| {
                    crate::set::apply_add(v, members)
                })
            }
            Effect::SetRem { key, members } => {
                self.apply_to_collection(key, h, now, None, |v| crate::set::apply_rem(v, members))
            }
            Effect::ZAdd { key, entries } => {
                self.apply_to_collection(key, h, now, Some(empty_zset), |v| {
                    crate::zset::apply_add(v, entries)
                })
            }
            Effect::ZRem { key, members } => {
                self.apply_to_collection(key, h, now, None, |v| crate::zset::apply_rem(v, members))
            }
        }
    }

    /// Writes `bytes` into the string at `key` from `offset`, zero-padding it first (see
    /// [`Effect::StrWrite`]). An integer-encoded string becomes a byte string; a value of
    /// another type is left alone (the commands check types before they log).
    fn write_str(&mut self, key: &[u8], h: KeyHash, offset: u64, bytes: &[u8], now: u64) {
        let Ok(offset) = usize::try_from(offset) else {
            return;
        };
        let Some(end) = offset.checked_add(bytes.len()) else {
            return;
        };
        match self.find(key, h) {
            Some(idx) => {
                let r = &mut self.records[idx];
                let before = r.value.heap_size();
                if let Value::Int(n) = r.value {
                    r.value = Value::bytes(itoa::Buffer::new().format(n).as_bytes());
                }
                let Value::Str(s) = &mut r.value else {
                    return;
                };
                if end <= s.len() {
                    // In place, whatever the form: a short string stays where it is.
                    match s {
                        Str::Heap(heap) => heap[offset..end].copy_from_slice(bytes),
                        Str::Inline { buf, .. } => buf[offset..end].copy_from_slice(bytes),
                    }
                } else {
                    splice_zero_padded(s.make_mut(), offset, end, bytes);
                }
                r.touch(now);
                self.heap = self.heap - before + r.value.heap_size();
            }
            None => {
                let mut s = Vec::new();
                splice_zero_padded(&mut s, offset, end, bytes);
                self.insert(key, h, Value::bytes(s), 0, now);
            }
        }
    }

    /// Applies an element-level effect to the collection at `key`: `op` changes the value
    /// in place and returns the change of its heap size, which `heap` takes as a delta
    /// (re-measuring a large collection on every write would be O(n)). A missing key is
    /// created with `create`'s empty value and no deadline, or left missing when `create`
    /// is `None`. A collection left empty is deleted, as Redis deletes empty keys.
    fn apply_to_collection(
        &mut self,
        key: &[u8],
        h: KeyHash,
        now: u64,
        create: Option<fn() -> Value>,
        op: impl FnOnce(&mut Value) -> isize,
    ) {
        match self.find(key, h) {
            Some(idx) => {
                let r = &mut self.records[idx];
                let delta = op(&mut r.value);
                r.touch(now);
                self.heap = self.heap.wrapping_add_signed(delta);
                if is_empty_collection(&self.records[idx].value) {
                    self.remove_at(idx, h);
                }
            }
            None => {
                let Some(create) = create else { return };
                let mut value = create();
                op(&mut value);
                if !is_empty_collection(&value) {
                    self.insert(key, h, value, 0, now);
                }
            }
        }
    }
}

/// Copies `bytes` to `s[offset..end]`, growing `s` with zero bytes as needed. Growth
/// follows Redis's `sdsMakeRoomFor` (double below 1 MiB, then 1 MiB more), so a bitmap
/// set bit by bit upwards reallocates O(log n) times, without doubling a huge string.
fn splice_zero_padded(s: &mut Vec<u8>, offset: usize, end: usize, bytes: &[u8]) {
    const MAX_PREALLOC: usize = 1 << 20;
    if s.len() < end {
        if s.capacity() < end {
            let target = if end < MAX_PREALLOC {
                end.saturating_mul(2)
            } else {
                end.saturating_add(MAX_PREALLOC)
            };
            s.reserve_exact(target - s.len());
        }
        s.resize(end, 0);
    }
    s[offset..end].copy_from_slice(bytes);
}

/// True for a list, hash, set or sorted set without elements (such a key must not exist).
fn is_empty_collection(v: &Value) -> bool {
    match v {
        Value::List(l) => l.is_empty(),
        Value::Hash(h) => h.is_empty(),
        Value::Set(s) => s.is_empty(),
        Value::ZSet(z) => z.is_empty(),
        Value::Int(_) | Value::Str(_) => false,
    }
}

fn empty_set() -> Value {
    Value::Set(Box::default())
}

fn empty_zset() -> Value {
    Value::ZSet(Box::default())
}

/// Keys per cluster slot. Changed under the write lock of the key's shard, read without
/// locks (COUNTKEYSINSLOT, DBSIZE): a reader sees each count as of some recent moment.
struct SlotCounts {
    slot_of: fn(&[u8]) -> u16,
    counts: Box<[AtomicU64]>,
}

impl SlotCounts {
    fn counter(&self, key: &[u8]) -> Option<&AtomicU64> {
        self.counts.get((self.slot_of)(key) as usize)
    }

    fn add(&self, key: &[u8]) {
        if let Some(c) = self.counter(key) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn sub(&self, key: &[u8]) {
        if let Some(c) = self.counter(key) {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn zero(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[repr(align(128))] // one shard per cache-line pair: no false sharing between locks
struct Shard {
    data: RwLock<ShardData>,
}

/// Where a shard's hash table lives, for [`Store::prefetch`]: the address its control
/// bytes start at, which is also where its 4-byte slots end (hashbrown keeps bucket `i`
/// at `ctrl - (i + 1) * 4`; a test checks it), and its bucket mask. Written under the
/// shard's write lock when the table grew or was replaced, read without any lock: it may
/// be stale or torn when used, which costs a useless prefetch and nothing else, since a
/// prefetch never faults and changes no data.
#[derive(Default)]
struct TableHint {
    ctrl: AtomicUsize,
    mask: AtomicUsize,
}

/// A hint to bring the cache line holding `addr` closer; no effect where the target
/// has no such instruction. Never faults, whatever the address.
#[inline(always)]
fn prefetch_line(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch reads and writes no memory the program can see and never
        // faults, whatever the address; SSE is part of every x86_64 CPU.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::without_provenance::<i8>(addr)) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

impl TableHint {
    /// Records where `data`'s table is now, if it moved or changed size since.
    fn refresh(&self, data: &ShardData) {
        let mask = data.table.num_buckets().wrapping_sub(1);
        if self.mask.load(Ordering::Relaxed) == mask && self.ctrl.load(Ordering::Relaxed) != 0 {
            return;
        }
        self.ctrl.store(data.table_ctrl(), Ordering::Relaxed);
        self.mask.store(mask, Ordering::Relaxed);
    }
}

thread_local! {
    static OBSERVED_LSN: Cell<Lsn> = const { Cell::new(0) };
}

fn observe(lsn: Lsn) {
    if lsn != 0 {
        OBSERVED_LSN.with(|c| {
            if lsn > c.get() {
                c.set(lsn)
            }
        });
    }
}

/// The highest shard LSN this thread has seen since the last [`observed_lsn_reset`],
/// leaving it in place (WAIT: what the client's batch so far depends on).
pub fn observed_lsn() -> Lsn {
    OBSERVED_LSN.with(Cell::get)
}

/// The highest shard LSN this thread has seen (read or written) since the last call, and
/// resets it. A reply that depends on what the command saw is safe to send once the log
/// is durable up to this LSN.
pub fn observed_lsn_reset() -> Lsn {
    OBSERVED_LSN.with(|c| c.replace(0))
}

/// Counters for INFO.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    pub keys: usize,
    pub volatile: usize,
    /// Bytes the store holds: every shard's slab, hash table and side structures at
    /// their allocated sizes, and what keys and values keep on the heap (INFO's
    /// used_memory).
    pub mem: usize,
    /// The part of `mem` that the keys themselves account for (their records, table
    /// slots, deadlines and heap bytes, as MEMORY USAGE counts them); the rest is room the
    /// structures keep for growth.
    pub dataset: usize,
    pub expired: u64,
}

/// The sharded keyspace.
pub struct Store {
    shards: Box<[Shard]>,
    /// One per shard, apart from the shards so that they stay in cache (8 KiB for 512).
    hints: Box<[TableHint]>,
    mask: usize,
    seed: u64,
    hasher: foldhash::fast::FixedState,
    journal: OnceLock<Box<dyn Journal>>,
    /// Keys per cluster slot, once [`Store::count_keys_per_slot`] turned counting on.
    slot_counts: OnceLock<Arc<SlotCounts>>,
    expired: std::sync::atomic::AtomicU64,
    /// WATCH registrations, raised by every write through [`Store::journal`].
    pub(crate) watchers: Watchers,
    /// Who hears of writes (clients blocked on keys), see `listen.rs`.
    listeners: Listeners,
}

/// A position in a SCAN: the shard in the low 16 bits, the slab slot above.
pub type ScanCursor = u64;

impl Store {
    /// A store with `shards` shards (a power of two, at most 65536) and a random hash
    /// seed.
    pub fn new(shards: usize) -> Store {
        Store::with_seed(shards, random_seed())
    }

    /// A store whose keys hash with `seed`. Snapshots record the seed so that recovery can
    /// tell which shard (and so which shard's dump) a key belonged to when it was written.
    pub fn with_seed(shards: usize, seed: u64) -> Store {
        assert!(
            shards.is_power_of_two() && shards <= MAX_SHARDS,
            "shard count must be a power of two up to {MAX_SHARDS}"
        );
        let hasher = foldhash::fast::FixedState::with_seed(seed);
        Store {
            shards: (0..shards)
                .map(|_| Shard {
                    data: RwLock::new(ShardData::new(None, hasher.clone())),
                })
                .collect(),
            hints: (0..shards).map(|_| TableHint::default()).collect(),
            mask: shards - 1,
            seed,
            hasher,
            journal: OnceLock::new(),
            slot_counts: OnceLock::new(),
            expired: Default::default(),
            watchers: Watchers::new(shards),
            listeners: Listeners::new(),
        }
    }

    /// Installs the listener that [`Store::listen`] turns on. Done once.
    pub fn set_write_listener(&self, listener: Box<dyn WriteListener>) {
        self.listeners.set(listener);
    }

    /// Every write from now on is reported to the write listener, until a matching
    /// [`Store::unlisten`]. Registrations count: the listener hears writes while any is
    /// active. A write under a shard lock taken after this returns is reported.
    pub fn listen(&self) {
        self.listeners.add();
    }

    /// Ends one [`Store::listen`] registration.
    pub fn unlisten(&self) {
        self.listeners.remove();
    }

    /// Installs the journal every later write goes through. Done once, after recovery
    /// has replayed the log into the store.
    pub fn set_journal(&self, journal: Box<dyn Journal>) {
        if self.journal.set(journal).is_err() {
            panic!("the store's journal is set once");
        }
    }

    /// Where every write goes before it is applied: the journal, then the WATCH
    /// registrations of the keys it changes.
    fn journal(&self) -> Log<'_> {
        Log(self)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The shard `key` lives in for a store with this seed and shard count.
    pub fn shard_for(seed: u64, shards: usize, key: &[u8]) -> usize {
        use std::hash::BuildHasher;
        KeyHash(foldhash::fast::FixedState::with_seed(seed).hash_one(key)).shard(shards - 1)
    }

    /// Inserts a key read back from a snapshot, without journaling it.
    pub fn insert_loaded(&self, key: &[u8], value: Value, expire_at: u64, now: u64) {
        let h = self.hash(key);
        self.write(h).data.insert(key, h, value, expire_at, now);
    }

    /// Removes, without journaling, every key for which `doomed` is true (recovery only:
    /// replaying a FLUSHALL that some shards' dumps already contain).
    pub fn remove_where(&self, mut doomed: impl FnMut(&[u8]) -> bool) {
        for s in self.shards.iter() {
            let mut g = s.data.write();
            let victims: Vec<usize> = g
                .records
                .iter()
                .filter(|(_, r)| doomed(g.key_of(r)))
                .map(|(i, _)| i)
                .collect();
            for idx in victims {
                g.remove_idx(idx);
            }
        }
    }

    pub fn hash(&self, key: &[u8]) -> KeyHash {
        use std::hash::BuildHasher;
        KeyHash(self.hasher.hash_one(key))
    }

    /// The shard a key lives in.
    pub fn shard_of(&self, h: KeyHash) -> usize {
        h.shard(self.mask)
    }

    /// WATCH: raises `flag` when `key` is next modified (see `watch.rs` for what counts).
    /// Returns whether the key is live now; EXEC must not run if a key live now has
    /// expired by then. Registering twice is registering once.
    pub fn watch(&self, key: &[u8], flag: &WatchFlag, now: u64) -> bool {
        let h = self.hash(key);
        // The shard's lock keeps writes to the key from slipping between the look and the
        // registration.
        let shard = self.read(h);
        let live = shard.peek(key, h, now).is_some();
        self.watchers.add(h.shard(self.mask), key, flag, live);
        drop(shard);
        live
    }

    /// Removes a registration made by [`Store::watch`].
    pub fn unwatch(&self, key: &[u8], flag: &WatchFlag) {
        let h = self.hash(key);
        self.watchers.remove(h.shard(self.mask), key, flag);
    }

    /// Read access to the shard of `h`. Readers never wait for each other.
    pub fn read(&self, h: KeyHash) -> ShardRef<'_> {
        ShardRef {
            data: self.shards[h.shard(self.mask)].data.read(),
        }
    }

    /// Read access to shard `index` (whole-keyspace walks: KEYS, snapshots).
    pub fn read_shard(&self, index: usize) -> ShardRef<'_> {
        ShardRef {
            data: self.shards[index].data.read(),
        }
    }

    /// Write access to the shard of `h`.
    pub fn write(&self, h: KeyHash) -> ShardMut<'_> {
        let i = h.shard(self.mask);
        ShardMut {
            data: self.shards[i].data.write(),
            hint: &self.hints[i],
            store: self,
        }
    }

    /// Asks the CPU to fetch the part of `h`'s shard table that looking the key up will
    /// read first (the control bytes and slots where its probe starts) without waiting
    /// for it. The server calls it for the keys of a pipelined batch before running the
    /// batch, so their cache misses overlap instead of following one another. Reads no
    /// lock and no data; a stale hint only wastes the prefetch.
    #[inline]
    pub fn prefetch(&self, h: KeyHash) {
        let hint = &self.hints[h.shard(self.mask)];
        let ctrl = hint.ctrl.load(Ordering::Relaxed);
        if ctrl == 0 {
            return;
        }
        let pos = h.table_hash() as usize & hint.mask.load(Ordering::Relaxed);
        // hashbrown probes a group of 16 buckets from `pos`: 16 control bytes from
        // `ctrl + pos`, then the slots of the matches, bucket `i` at `ctrl - (i + 1) * 4`.
        // A key sits at `pos` or a few buckets after it, nearly always in the slot line
        // of `pos` (fetching the group's second slot line too measured no faster: fewer
        // prefetches in flight leave room for the ones that matter).
        prefetch_line(ctrl.wrapping_add(pos));
        prefetch_line(ctrl.wrapping_sub((pos + 1) * std::mem::size_of::<u32>()));
    }

    /// Write access to every shard the keys hash to, locked in shard order so that two
    /// multi-key writes cannot deadlock. For commands that must be atomic across keys.
    pub fn write_many(&self, hashes: impl IntoIterator<Item = KeyHash>) -> MultiMut<'_> {
        let mut idx: Vec<usize> = hashes.into_iter().map(|h| h.shard(self.mask)).collect();
        idx.sort_unstable();
        idx.dedup();
        MultiMut {
            guards: idx
                .into_iter()
                .map(|i| (i, self.shards[i].data.write()))
                .collect(),
            store: self,
        }
    }

    /// Removes every key, atomically (all shards are locked while it happens). Returns
    /// the old contents so the caller can drop them elsewhere (FLUSHALL ASYNC).
    pub fn flush_all(&self) -> Result<Flushed, WriteError> {
        let mut guards: Vec<_> = self.shards.iter().map(|s| s.data.write()).collect();
        let lsn = self.journal().append(&[Effect::FlushAll])?;
        let slots = self.slot_counts.get();
        let old = guards
            .iter_mut()
            .zip(self.hints.iter())
            .map(|(g, hint)| {
                let old = std::mem::replace(
                    &mut **g,
                    ShardData::new(slots.cloned(), self.hasher.clone()),
                );
                g.last_lsn = lsn;
                hint.refresh(g);
                old
            })
            .collect();
        // Every shard is locked and now empty: every count is zero (counting the old
        // contents key by key would cost what FLUSHALL ASYNC avoids).
        if let Some(slots) = slots {
            slots.zero();
        }
        observe(lsn);
        Ok(Flushed(old))
    }

    /// Removes every key of the cluster slots in bitmap `slots` (see
    /// [`Effect::DropSlots`]), atomically: every shard is locked while it happens.
    pub fn drop_slots(&self, slots: &[u8], slot_of: fn(&[u8]) -> u16) -> Result<Lsn, WriteError> {
        let mut guards: Vec<_> = self.shards.iter().map(|s| s.data.write()).collect();
        let effect = Effect::DropSlots { slots, slot_of };
        let lsn = self.journal().append(&[effect])?;
        for g in guards.iter_mut() {
            g.drop_slots(slots, slot_of);
            if lsn != 0 {
                g.last_lsn = lsn;
            }
        }
        observe(lsn);
        Ok(lsn)
    }

    /// Applies effects read back from a log or received from a primary, without
    /// journaling them again. `lsn` is recorded as the shards' last write.
    pub fn apply_logged(&self, effects: &[Effect<'_>], lsn: Lsn, now: u64) {
        for e in effects {
            match e.key() {
                Some(key) => {
                    let h = self.hash(key);
                    let mut g = self.shards[h.shard(self.mask)].data.write();
                    g.apply(e, h, now);
                    g.last_lsn = g.last_lsn.max(lsn);
                }
                None if matches!(e, Effect::FlushAll | Effect::DropSlots { .. }) => {
                    for s in self.shards.iter() {
                        let mut g = s.data.write();
                        g.apply(e, KeyHash(0), now);
                        g.last_lsn = lsn;
                    }
                }
                None => {}
            }
        }
    }

    /// Logs a keyless marker (a transaction's begin or commit) and makes the caller's
    /// reply wait for it like for any record it wrote.
    pub fn log_marker(&self, marker: Effect<'_>) -> Result<Lsn, WriteError> {
        debug_assert!(matches!(marker, Effect::TxBegin | Effect::TxCommit));
        let lsn = self.journal().append(&[marker])?;
        observe(lsn);
        Ok(lsn)
    }

    /// Turns on per-slot key counts (cluster mode): from now on every key inserted or
    /// removed updates the count of its slot, `slot_of(key)` (below `slots`). Keys
    /// already present are counted now, each shard under its write lock. Called once, at
    /// start-up; later calls change nothing.
    pub fn count_keys_per_slot(&self, slots: usize, slot_of: fn(&[u8]) -> u16) {
        let counts = Arc::new(SlotCounts {
            slot_of,
            counts: (0..slots).map(|_| AtomicU64::new(0)).collect(),
        });
        if self.slot_counts.set(counts.clone()).is_err() {
            return;
        }
        for s in self.shards.iter() {
            let mut g = s.data.write();
            for (_, r) in g.records.iter() {
                counts.add(g.key_of(r));
            }
            g.slots = Some(counts.clone());
        }
    }

    /// Keys in `slot` (including expired keys not yet removed, as DBSIZE counts them);
    /// `None` unless [`Store::count_keys_per_slot`] turned counting on.
    pub fn keys_in_slot(&self, slot: u16) -> Option<u64> {
        let counts = self.slot_counts.get()?;
        counts
            .counts
            .get(slot as usize)
            .map(|c| c.load(Ordering::Relaxed))
    }

    /// Key and memory counts, summed over shards (each read-locked in turn).
    pub fn stats(&self) -> StoreStats {
        let mut st = StoreStats {
            expired: self.expired.load(Ordering::Relaxed),
            ..Default::default()
        };
        for s in self.shards.iter() {
            let g = s.data.read();
            st.keys += g.records.len();
            st.volatile += g.volatile.len();
            st.mem += g.mem();
            st.dataset += g.dataset();
        }
        st
    }

    /// Zeroes the counters [`Store::stats`] reports (CONFIG RESETSTAT).
    pub fn reset_stats(&self) {
        self.expired.store(0, Ordering::Relaxed);
    }

    /// Number of keys (including expired keys not yet removed, as Redis's DBSIZE).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.data.read().records.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Visits about `count` live keys from `cursor` on and returns the cursor to continue
    /// from (0 when the walk is complete).
    ///
    /// A key keeps its slab slot for as long as it exists, and the walk goes through
    /// slots in order, so a key present for the whole walk is visited exactly once
    /// whatever else is inserted or removed meanwhile (growing a table moves no slot).
    pub fn scan(
        &self,
        cursor: ScanCursor,
        count: usize,
        now: u64,
        mut visit: impl FnMut(Entry<'_>),
    ) -> ScanCursor {
        let count = count.max(1);
        // Empty slots cost a look each; bound them too, so a sparse shard cannot make
        // one call walk the whole slab.
        let budget = count.saturating_mul(10);
        let mut shard = (cursor & 0xffff) as usize;
        let mut slot = (cursor >> 16) as usize;
        if shard >= self.shards.len() {
            return 0;
        }
        let mut visited = 0;
        let mut examined = 0;
        loop {
            {
                let g = self.shards[shard].data.read();
                let end = g.records.capacity();
                while slot < end && visited < count && examined < budget {
                    if let Some(r) = g.records.get(slot)
                        && g.is_live(r, now)
                    {
                        visit(g.entry(slot));
                        visited += 1;
                    }
                    examined += 1;
                    slot += 1;
                }
                if slot >= end {
                    shard += 1;
                    slot = 0;
                }
            }
            if shard == self.shards.len() {
                return 0;
            }
            if visited >= count || examined >= budget {
                return ((slot as u64) << 16) | shard as u64;
            }
        }
    }

    /// A random live key, `None` when there is none. `seed` drives the choice.
    pub fn random_key(&self, now: u64, seed: u64) -> Option<Vec<u8>> {
        self.random_key_where(now, seed, |_| true)
    }

    /// A random live key for which `wanted` is true (a cluster node picks among the keys
    /// of the slots it serves), `None` when there is none.
    pub fn random_key_where(
        &self,
        now: u64,
        seed: u64,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let mut rng = XorShift::new(seed);
        let n = self.shards.len();
        let start = rng.below(n);
        // Random shards first; then every shard in turn, so a sparse store still answers.
        for attempt in 0..n + 16 {
            let shard = if attempt < 16 {
                rng.below(n)
            } else {
                (start + attempt) % n
            };
            let g = self.shards[shard].data.read();
            if g.records.is_empty() {
                continue;
            }
            let cap = g.records.capacity();
            for _ in 0..64 {
                if let Some(r) = g.records.get(rng.below(cap))
                    && g.is_live(r, now)
                    && wanted(g.key_of(r))
                {
                    return Some(g.key_of(r).to_vec());
                }
            }
            if let Some((_, r)) = g
                .records
                .iter()
                .find(|(_, r)| g.is_live(r, now) && wanted(g.key_of(r)))
            {
                return Some(g.key_of(r).to_vec());
            }
        }
        None
    }

    /// One active-expiry pass over `shards` (Redis's `activeExpireCycle`): per shard,
    /// sample 20 keys with deadlines and delete the expired ones; repeat while more than a
    /// quarter of a sample was expired, at most `max_rounds` times. A shard that is busy is
    /// skipped this time rather than waited for. Returns the number of keys removed.
    pub fn active_expire(
        &self,
        shards: std::ops::Range<usize>,
        now: u64,
        max_rounds: usize,
        seed: u64,
    ) -> usize {
        const SAMPLE: usize = 20;
        let mut rng = XorShift::new(seed);
        let mut removed = 0;
        for shard in shards {
            let Some(s) = self.shards.get(shard) else {
                break;
            };
            let Some(mut g) = s.data.try_write() else {
                continue;
            };
            for _ in 0..max_rounds {
                let n = g.volatile.len().min(SAMPLE);
                if n == 0 {
                    break;
                }
                let mut expired = 0;
                for _ in 0..n {
                    if g.volatile.is_empty() {
                        break;
                    }
                    let (idx, at) = g.volatile[rng.below(g.volatile.len())];
                    if at > now {
                        continue;
                    }
                    let idx = idx as usize;
                    let key = g.key_of(&g.records[idx]);
                    let h = self.hash(key);
                    let Ok(lsn) = self.journal().append(&[Effect::Del { key }]) else {
                        // The log refuses writes: the key stays, invisible, until it can
                        // be removed durably.
                        return removed;
                    };
                    g.remove_at(idx, h);
                    if lsn != 0 {
                        g.last_lsn = lsn;
                    }
                    expired += 1;
                }
                removed += expired;
                if expired * 4 <= n {
                    break;
                }
            }
        }
        self.expired.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }
}

/// The journal as the write paths see it: a record the journal accepted is also
/// reported to the WATCH registrations of the keys it changes. Every mutation goes
/// through here (under the shard locks the journal requires), so WATCH sees them all.
struct Log<'a>(&'a Store);

impl Log<'_> {
    fn append(&self, effects: &[Effect<'_>]) -> Result<Lsn, JournalError> {
        let store = self.0;
        let lsn = match store.journal.get() {
            Some(j) => j.append(effects)?,
            None => 0,
        };
        if store.watchers.any() {
            store
                .watchers
                .touch(effects, |key| store.hash(key).shard(store.mask));
        }
        if store.listeners.any() {
            store.listeners.tell(effects);
        }
        Ok(lsn)
    }
}

/// The contents a flush removed, to be dropped wherever that is cheapest.
pub struct Flushed(#[allow(dead_code)] Vec<ShardData>);

/// Read access to one shard.
pub struct ShardRef<'a> {
    data: RwLockReadGuard<'a, ShardData>,
}

impl ShardRef<'_> {
    /// The live entry for `key`, marking it accessed.
    pub fn get(&self, key: &[u8], h: KeyHash, now: u64) -> Option<Entry<'_>> {
        self.data.get(key, h, now)
    }

    /// The live entry for `key`, leaving its access time alone (EXISTS, TYPE, TTL,
    /// OBJECT: commands that look at a key without using it).
    pub fn peek(&self, key: &[u8], h: KeyHash, now: u64) -> Option<Entry<'_>> {
        let idx = self.data.find(key, h)?;
        let data: &ShardData = &self.data;
        data.is_live(&data.records[idx], now)
            .then(|| data.entry(idx))
    }

    /// Every live entry of the shard.
    pub fn iter(&self, now: u64) -> impl Iterator<Item = Entry<'_>> {
        let data: &ShardData = &self.data;
        data.records
            .iter()
            .filter(move |(_, r)| data.is_live(r, now))
            .map(move |(i, _)| data.entry(i))
    }

    pub fn len(&self) -> usize {
        self.data.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.records.is_empty()
    }

    /// LSN of the last write applied to this shard.
    pub fn last_lsn(&self) -> Lsn {
        self.data.last_lsn
    }
}

impl Drop for ShardRef<'_> {
    fn drop(&mut self) {
        observe(self.data.last_lsn);
    }
}

/// Write access to one shard. Every mutation goes to the journal first and is applied
/// only if the journal took it.
pub struct ShardMut<'a> {
    data: RwLockWriteGuard<'a, ShardData>,
    hint: &'a TableHint,
    store: &'a Store,
}

impl Drop for ShardMut<'_> {
    fn drop(&mut self) {
        observe(self.data.last_lsn);
        self.hint.refresh(&self.data);
    }
}

impl ShardMut<'_> {
    /// The live entry for `key`, without removing it if expired.
    pub fn get(&self, key: &[u8], h: KeyHash, now: u64) -> Option<Entry<'_>> {
        self.data.get(key, h, now)
    }

    /// The live entry for `key`; an expired one is removed (and the removal logged).
    pub fn lookup(&mut self, key: &[u8], h: KeyHash, now: u64) -> Option<Entry<'_>> {
        let idx = self.data.find(key, h)?;
        if !self.data.is_live(&self.data.records[idx], now) {
            if let Ok(lsn) = self.store.journal().append(&[Effect::Del { key }]) {
                self.data.remove_at(idx, h);
                self.store.expired.fetch_add(1, Ordering::Relaxed);
                self.bump(lsn);
            }
            return None;
        }
        self.data.records[idx].touch(now);
        Some(self.data.entry(idx))
    }

    fn bump(&mut self, lsn: Lsn) {
        if lsn != 0 {
            self.data.last_lsn = lsn;
        }
    }

    fn deadline(&self, key: &[u8], h: KeyHash, expiry: Expiry, now: u64) -> u64 {
        match expiry {
            Expiry::None => 0,
            Expiry::At(at) => at,
            Expiry::Keep => self
                .data
                .get(key, h, now)
                .and_then(|e| e.expire_at())
                .unwrap_or(0),
        }
    }

    /// Sets `key` to `value`.
    pub fn put(
        &mut self,
        key: &[u8],
        h: KeyHash,
        value: Value,
        expiry: Expiry,
        now: u64,
    ) -> Result<Lsn, WriteError> {
        let expire_at = self.deadline(key, h, expiry, now);
        let lsn = match &value {
            Value::Int(n) => self.store.journal().append(&[Effect::SetInt {
                key,
                value: *n,
                expire_at,
            }])?,
            Value::Str(s) => self.store.journal().append(&[Effect::SetStr {
                key,
                parts: &[s],
                expire_at,
            }])?,
            other => self.store.journal().append(&[Effect::SetValue {
                key,
                value: other,
                expire_at,
            }])?,
        };
        self.data.insert(key, h, value, expire_at, now);
        self.bump(lsn);
        Ok(lsn)
    }

    /// Sets `key` to the string `bytes` (integer-encoded when canonical).
    pub fn put_str(
        &mut self,
        key: &[u8],
        h: KeyHash,
        bytes: &[u8],
        expiry: Expiry,
        now: u64,
    ) -> Result<Lsn, WriteError> {
        let expire_at = self.deadline(key, h, expiry, now);
        let lsn = self.store.journal().append(&[Effect::SetStr {
            key,
            parts: &[bytes],
            expire_at,
        }])?;
        self.data
            .insert(key, h, Value::string(bytes), expire_at, now);
        self.bump(lsn);
        Ok(lsn)
    }

    /// Deletes `key`; false when it did not exist (or had expired).
    pub fn remove(&mut self, key: &[u8], h: KeyHash, now: u64) -> Result<bool, WriteError> {
        let Some(idx) = self.data.find(key, h) else {
            return Ok(false);
        };
        let live = self.data.is_live(&self.data.records[idx], now);
        let lsn = self.store.journal().append(&[Effect::Del { key }])?;
        self.data.remove_at(idx, h);
        self.bump(lsn);
        Ok(live)
    }

    /// Sets the deadline of an existing key (`at` = 0 removes it). False when the key
    /// does not exist.
    pub fn set_expire(
        &mut self,
        key: &[u8],
        h: KeyHash,
        at: u64,
        now: u64,
    ) -> Result<bool, WriteError> {
        if self.lookup(key, h, now).is_none() {
            return Ok(false);
        }
        let lsn = self.store.journal().append(&[Effect::Expire { key, at }])?;
        if let Some(idx) = self.data.find(key, h) {
            self.data.set_deadline(idx, at);
        }
        self.bump(lsn);
        Ok(true)
    }

    /// Appends `suffix` to the string at `key` (creating it), keeping its deadline.
    /// Returns the new length. The log gets the whole resulting string, as pieces.
    pub fn append(
        &mut self,
        key: &[u8],
        h: KeyHash,
        suffix: &[u8],
        now: u64,
    ) -> Result<usize, WriteError> {
        if self.lookup(key, h, now).is_none() {
            self.put_str(key, h, suffix, Expiry::None, now)?;
            return Ok(suffix.len());
        }
        let e = self.data.get(key, h, now).expect("looked up above");
        let expire_at = e.expire_at().unwrap_or(0);
        let journal = self.store.journal();
        let lsn = match e.value() {
            Value::Str(s) => journal.append(&[Effect::SetStr {
                key,
                parts: &[s, suffix],
                expire_at,
            }])?,
            Value::Int(n) => journal.append(&[Effect::SetStr {
                key,
                parts: &[itoa::Buffer::new().format(*n).as_bytes(), suffix],
                expire_at,
            }])?,
            _ => return Err(WriteError::WrongType),
        };
        let idx = self.data.find(key, h).expect("looked up above");
        let data = &mut *self.data;
        let r = &mut data.records[idx];
        let before = r.value.heap_size();
        match &mut r.value {
            // A string that still fits in place is rebuilt there; a longer one grows on
            // the heap, with room for the next APPEND.
            Value::Str(s) if s.len() + suffix.len() > crate::STR_INLINE => {
                s.make_mut().extend_from_slice(suffix)
            }
            v => {
                let old = match &*v {
                    Value::Str(s) => s.to_vec(),
                    other => itoa::Buffer::new()
                        .format(other.as_int())
                        .as_bytes()
                        .to_vec(),
                };
                // A string that became a canonical integer (APPEND "1" to "")
                // re-encodes.
                *v = Value::string_from_parts(&[&old, suffix]);
            }
        }
        let len = r.value.string_len().unwrap_or(0);
        data.heap = data.heap - before + r.value.heap_size();
        self.bump(lsn);
        Ok(len)
    }

    /// Overwrites the string at `key` from `offset` with `bytes`, zero-padding as needed
    /// (SETRANGE), keeping its deadline. Returns the new length. Logged as a
    /// [`Effect::StrWrite`] of `bytes` alone, whatever the string's size.
    pub fn set_range(
        &mut self,
        key: &[u8],
        h: KeyHash,
        offset: usize,
        bytes: &[u8],
        now: u64,
    ) -> Result<usize, WriteError> {
        let current = match self.lookup(key, h, now) {
            None => 0,
            Some(e) => e.value().string_len().ok_or(WriteError::WrongType)?,
        };
        if bytes.is_empty() {
            // SETRANGE of nothing changes nothing (and creates no key).
            return Ok(current);
        }
        let effect = Effect::StrWrite {
            key,
            offset: offset as u64,
            bytes,
        };
        let lsn = self.store.journal().append(&[effect])?;
        self.data.apply(&effect, h, now);
        self.bump(lsn);
        Ok(current.max(offset + bytes.len()))
    }

    /// Journals `effects` as one record and applies them. Every key must belong to this
    /// shard.
    pub fn commit(&mut self, effects: &[Effect<'_>], now: u64) -> Result<Lsn, WriteError> {
        let lsn = self.store.journal().append(effects)?;
        for e in effects {
            let h = e.key().map_or(KeyHash(0), |k| self.store.hash(k));
            debug_assert!(e.key().is_none() || self.store.shard_of(h) == self.shard_index(h));
            self.data.apply(e, h, now);
        }
        self.bump(lsn);
        Ok(lsn)
    }

    fn shard_index(&self, h: KeyHash) -> usize {
        self.store.shard_of(h)
    }

    pub fn last_lsn(&self) -> Lsn {
        self.data.last_lsn
    }
}

impl Value {
    fn as_int(&self) -> i64 {
        match self {
            Value::Int(n) => *n,
            _ => 0,
        }
    }
}

/// Write access to several shards at once, for multi-key commands that must be atomic
/// (MSET, MSETNX, RENAME, COPY, DEL with several keys).
pub struct MultiMut<'a> {
    guards: Vec<(usize, RwLockWriteGuard<'a, ShardData>)>,
    store: &'a Store,
}

impl Drop for MultiMut<'_> {
    fn drop(&mut self) {
        for (i, g) in &self.guards {
            observe(g.last_lsn);
            self.store.hints[*i].refresh(g);
        }
    }
}

impl MultiMut<'_> {
    fn shard(&self, h: KeyHash) -> &ShardData {
        let i = self.store.shard_of(h);
        let pos = self
            .guards
            .binary_search_by_key(&i, |(s, _)| *s)
            .expect("key's shard was not locked");
        &self.guards[pos].1
    }

    fn shard_mut(&mut self, h: KeyHash) -> &mut ShardData {
        let i = self.store.shard_of(h);
        let pos = self
            .guards
            .binary_search_by_key(&i, |(s, _)| *s)
            .expect("key's shard was not locked");
        &mut self.guards[pos].1
    }

    /// The live entry for `key` (whose shard must be locked).
    pub fn get(&self, key: &[u8], h: KeyHash, now: u64) -> Option<Entry<'_>> {
        self.shard(h).get(key, h, now)
    }

    /// The live entry for `key` (whose shard must be locked); an expired one is removed
    /// (and the removal logged), as [`ShardMut::lookup`] does. Commands that apply
    /// element-level effects look keys up this way, so an effect never lands on an
    /// expired entry.
    pub fn lookup(&mut self, key: &[u8], h: KeyHash, now: u64) -> Option<Entry<'_>> {
        let store = self.store;
        let shard = self.shard_mut(h);
        let idx = shard.find(key, h)?;
        if !shard.is_live(&shard.records[idx], now) {
            if let Ok(lsn) = store.journal().append(&[Effect::Del { key }]) {
                shard.remove_at(idx, h);
                store.expired.fetch_add(1, Ordering::Relaxed);
                if lsn != 0 {
                    shard.last_lsn = lsn;
                }
            }
            return None;
        }
        shard.records[idx].touch(now);
        Some(shard.entry(idx))
    }

    /// Journals `effects` as one atomic record, then applies them.
    pub fn commit(&mut self, effects: &[Effect<'_>], now: u64) -> Result<Lsn, WriteError> {
        let lsn = self.store.journal().append(effects)?;
        for e in effects {
            let Some(key) = e.key() else { continue };
            let h = self.store.hash(key);
            let shard = self.shard_mut(h);
            shard.apply(e, h, now);
            if lsn != 0 {
                shard.last_lsn = lsn;
            }
        }
        Ok(lsn)
    }

    /// Moves the value at `src` to `dst` with its deadline (RENAME). The caller has
    /// checked that `src` exists. Logged as one record: delete `src`, set `dst`.
    pub fn rename(
        &mut self,
        src: &[u8],
        hs: KeyHash,
        dst: &[u8],
        hd: KeyHash,
        now: u64,
    ) -> Result<Lsn, WriteError> {
        let e = self
            .get(src, hs, now)
            .expect("rename source checked by caller");
        let expire_at = e.expire_at().unwrap_or(0);
        let lsn = self.store.journal().append(&[
            Effect::Del { key: src },
            Effect::SetValue {
                key: dst,
                value: e.value(),
                expire_at,
            },
        ])?;
        if src == dst {
            return Ok(lsn);
        }
        let shard = self.shard_mut(hs);
        let idx = shard.find(src, hs).expect("checked above");
        let moved = shard.remove_at(idx, hs);
        if lsn != 0 {
            shard.last_lsn = lsn;
        }
        let shard = self.shard_mut(hd);
        shard.insert(dst, hd, moved, expire_at, now);
        if lsn != 0 {
            shard.last_lsn = lsn;
        }
        Ok(lsn)
    }
}

impl MultiMut<'_> {
    /// Sets `key` (whose shard must be locked) to `value` with deadline `expire_at` (0:
    /// none), journaled as one `SetValue` record; the value is moved in, not copied
    /// (SINTERSTORE, ZUNIONSTORE and the other commands that store a computed result).
    pub fn put(
        &mut self,
        key: &[u8],
        h: KeyHash,
        value: Value,
        expire_at: u64,
        now: u64,
    ) -> Result<Lsn, WriteError> {
        let lsn = self.store.journal().append(&[Effect::SetValue {
            key,
            value: &value,
            expire_at,
        }])?;
        let shard = self.shard_mut(h);
        shard.insert(key, h, value, expire_at, now);
        if lsn != 0 {
            shard.last_lsn = lsn;
        }
        Ok(lsn)
    }
}

impl MultiMut<'_> {
    /// Copies the value at `src` to `dst` with its deadline (COPY), replacing whatever
    /// `dst` held. The caller has checked that `src` exists and differs from `dst`.
    pub fn copy(
        &mut self,
        src: &[u8],
        hs: KeyHash,
        dst: &[u8],
        hd: KeyHash,
        now: u64,
    ) -> Result<Lsn, WriteError> {
        let e = self
            .get(src, hs, now)
            .expect("copy source checked by caller");
        let expire_at = e.expire_at().unwrap_or(0);
        let journal = self.store.journal();
        // Strings are logged as the string effects SET uses, so a log reader sees one
        // shape for every string write.
        let lsn = match e.value() {
            Value::Int(n) => journal.append(&[Effect::SetInt {
                key: dst,
                value: *n,
                expire_at,
            }])?,
            Value::Str(s) => journal.append(&[Effect::SetStr {
                key: dst,
                parts: &[s],
                expire_at,
            }])?,
            other => journal.append(&[Effect::SetValue {
                key: dst,
                value: other,
                expire_at,
            }])?,
        };
        let value = e.value().clone();
        let shard = self.shard_mut(hd);
        shard.insert(dst, hd, value, expire_at, now);
        if lsn != 0 {
            shard.last_lsn = lsn;
        }
        Ok(lsn)
    }
}

/// A seed for a new store's hash: different in every process, so keys cannot be chosen
/// to collide.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// A small, fast generator for sampling; quality is irrelevant, speed is not.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> &[u8] {
        s.as_bytes()
    }

    #[test]
    fn records_and_their_slab_slots_take_48_bytes() {
        // 48 bytes of slab and 5 of table per key are what keep 1M short keys under 64
        // bytes each: a larger record would show in used_memory at once.
        assert_eq!(std::mem::size_of::<Record>(), 48);
        assert_eq!(std::mem::size_of::<SlabSlot>(), 48);
        assert_eq!(RECORD_COST, 53);
    }

    /// `Store::prefetch` assumes hashbrown's layout (bucket `i` at `ctrl - (i + 1) * 4`)
    /// and that every write keeps the shard's hint current; a wrong assumption would
    /// only make prefetching useless, so this test is what notices it.
    #[test]
    fn table_hints_point_at_the_tables_of_their_shards() {
        let st = Store::new(4);
        let check = |st: &Store| {
            for (i, hint) in st.hints.iter().enumerate() {
                let data = st.shards[i].data.read();
                let ctrl = hint.ctrl.load(Ordering::Relaxed);
                if data.table.is_empty() {
                    continue;
                }
                assert_eq!(
                    hint.mask.load(Ordering::Relaxed),
                    data.table.num_buckets() - 1
                );
                for b in data.table.iter_buckets() {
                    let at = data.table.get_bucket(b).unwrap() as *const u32 as usize;
                    assert_eq!(at, ctrl - (b + 1) * 4, "bucket {b} of shard {i}");
                }
            }
        };
        // Grow the tables through several sizes, checking at each.
        for round in 0..5u32 {
            for n in 0..(200u32 << round) {
                let key = format!("key:{round}:{n}");
                let h = st.hash(key.as_bytes());
                st.write(h)
                    .put_str(key.as_bytes(), h, b"v", Expiry::None, 0)
                    .unwrap();
                st.prefetch(h);
            }
            check(&st);
        }
        // A flushed store's hints follow the new tables.
        drop(st.flush_all().unwrap());
        let h = st.hash(b"again");
        st.write(h)
            .put_str(b"again", h, b"v", Expiry::None, 0)
            .unwrap();
        check(&st);
        st.prefetch(st.hash(b"again"));
    }

    #[test]
    fn long_keys_and_deadlines_live_beside_the_records() {
        let st = Store::new(1);
        let long = b"a-key-longer-than-sixteen-bytes".as_slice();
        for (key, at) in [
            (long, 5000),
            (b"short".as_slice(), 0),
            (b"exactly16bytes!!", 7),
        ] {
            let h = st.hash(key);
            st.write(h)
                .put_str(key, h, b"v", Expiry::At(at), 0)
                .unwrap();
        }
        let h = st.hash(long);
        let shard = st.read(h);
        let e = shard.get(long, h, 0).unwrap();
        assert_eq!(e.key(), long);
        assert_eq!(e.expire_at(), Some(5000));
        drop(shard);
        let mut keys: Vec<Vec<u8>> = Vec::new();
        st.scan(0, 100, 0, |e| keys.push(e.key().to_vec()));
        keys.sort();
        assert_eq!(keys.len(), 3);
        assert!(keys.contains(&long.to_vec()));
        let h16 = st.hash(b"exactly16bytes!!");
        assert!(
            st.read(h16).get(b"exactly16bytes!!", h16, 7).is_none(),
            "expired"
        );
        for key in [long, b"short".as_slice(), b"exactly16bytes!!"] {
            let h = st.hash(key);
            st.write(h).remove(key, h, 0).unwrap();
        }
        assert_eq!(st.stats().dataset, 0);
        assert_eq!(st.stats().volatile, 0);
        assert!(st.stats().mem > 0, "the structures keep their room");
    }

    #[test]
    fn put_get_remove() {
        let st = Store::new(4);
        let h = st.hash(k("a"));
        st.write(h)
            .put_str(k("a"), h, b"hello", Expiry::None, 0)
            .unwrap();
        assert_eq!(
            st.read(h).get(k("a"), h, 0).unwrap().value(),
            &Value::bytes(b"hello".to_vec())
        );
        st.write(h)
            .put_str(k("a"), h, b"12", Expiry::None, 0)
            .unwrap();
        assert_eq!(
            st.read(h).get(k("a"), h, 0).unwrap().value(),
            &Value::Int(12)
        );
        assert!(st.write(h).remove(k("a"), h, 0).unwrap());
        assert!(!st.write(h).remove(k("a"), h, 0).unwrap());
        assert!(st.read(h).get(k("a"), h, 0).is_none());
        assert_eq!(st.stats().dataset, 0);
    }

    #[test]
    fn expiry_is_lazy_and_active() {
        let st = Store::new(1);
        for i in 0..100 {
            let key = format!("k{i}");
            let h = st.hash(key.as_bytes());
            st.write(h)
                .put_str(key.as_bytes(), h, b"v", Expiry::At(1000), 0)
                .unwrap();
        }
        let h = st.hash(b"k1");
        assert!(st.read(h).get(b"k1", h, 999).is_some());
        assert!(st.read(h).get(b"k1", h, 1000).is_none());
        assert_eq!(st.stats().volatile, 100);
        let mut removed = 0;
        for round in 0..100 {
            removed += st.active_expire(0..1, 2000, 16, round);
        }
        assert_eq!(removed, 100);
        assert_eq!(
            st.stats(),
            StoreStats {
                keys: 0,
                volatile: 0,
                dataset: 0,
                expired: 100,
                ..st.stats()
            }
        );
    }

    #[test]
    fn scan_visits_every_stable_key_despite_churn() {
        let st = Store::new(8);
        let stable: Vec<String> = (0..500).map(|i| format!("stable{i}")).collect();
        for key in &stable {
            let h = st.hash(key.as_bytes());
            st.write(h)
                .put_str(key.as_bytes(), h, b"v", Expiry::None, 0)
                .unwrap();
        }
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = st.scan(cursor, 10, 0, |e| {
                seen.insert(e.key().to_vec());
            });
            // Churn between calls: add and remove other keys, forcing table growth.
            for j in 0..50 {
                let key = format!("churn{round}-{j}");
                let h = st.hash(key.as_bytes());
                st.write(h)
                    .put_str(key.as_bytes(), h, b"x", Expiry::None, 0)
                    .unwrap();
                if j % 2 == 0 {
                    st.write(h).remove(key.as_bytes(), h, 0).unwrap();
                }
            }
            round += 1;
            if cursor == 0 {
                break;
            }
        }
        for key in &stable {
            assert!(seen.contains(key.as_bytes()), "missed {key}");
        }
    }

    #[test]
    fn copy_keeps_the_source_and_its_deadline() {
        let st = Store::new(8);
        let (hs, hd) = (st.hash(b"src"), st.hash(b"dst"));
        st.write(hs)
            .put_str(b"src", hs, b"hello", Expiry::At(5000), 0)
            .unwrap();
        st.write(hd)
            .put_str(b"dst", hd, b"old", Expiry::None, 0)
            .unwrap();
        st.write_many([hs, hd])
            .copy(b"src", hs, b"dst", hd, 10)
            .unwrap();
        for (key, h) in [(&b"src"[..], hs), (b"dst", hd)] {
            let shard = st.read(h);
            let e = shard.get(key, h, 10).unwrap();
            assert_eq!(e.value(), &Value::bytes(b"hello".to_vec()));
            assert_eq!(e.expire_at(), Some(5000));
        }
        assert_eq!(st.stats().volatile, 2);
        assert!(st.read(hd).get(b"dst", hd, 5000).is_none());
    }

    #[test]
    fn peek_leaves_the_access_time_alone() {
        let st = Store::new(1);
        let h = st.hash(b"k");
        st.write(h)
            .put_str(b"k", h, b"v", Expiry::At(60_000), 0)
            .unwrap();
        let shard = st.read(h);
        assert_eq!(shard.peek(b"k", h, 5000).unwrap().idle_secs(5000), 5);
        assert_eq!(shard.get(b"k", h, 5000).unwrap().idle_secs(5000), 0);
        assert!(shard.peek(b"k", h, 60_000).is_none());
        assert!(shard.peek(b"nope", st.hash(b"nope"), 0).is_none());
    }

    /// A stand-in for the cluster's slot function: the first byte.
    fn first_byte(key: &[u8]) -> u16 {
        key.first().map_or(0, |&b| b as u16)
    }

    #[test]
    fn slot_counts_follow_inserts_removals_and_flushes() {
        let st = Store::new(4);
        let put = |key: &[u8]| {
            let h = st.hash(key);
            st.write(h).put_str(key, h, b"v", Expiry::None, 0).unwrap();
        };
        put(b"a1");
        assert_eq!(st.keys_in_slot(b'a' as u16), None, "off until turned on");
        st.count_keys_per_slot(256, first_byte);
        assert_eq!(
            st.keys_in_slot(b'a' as u16),
            Some(1),
            "existing keys counted"
        );
        put(b"a2");
        put(b"a2"); // an overwrite is not a new key
        put(b"b1");
        assert_eq!(st.keys_in_slot(b'a' as u16), Some(2));
        assert_eq!(st.keys_in_slot(b'b' as u16), Some(1));
        let h = st.hash(b"a1");
        st.write(h).remove(b"a1", h, 0).unwrap();
        assert_eq!(st.keys_in_slot(b'a' as u16), Some(1));
        // Collections deleted when emptied, renames, expiry: all through the same paths.
        let (hs, hd) = (st.hash(b"a2"), st.hash(b"c9"));
        st.write_many([hs, hd])
            .rename(b"a2", hs, b"c9", hd, 0)
            .unwrap();
        assert_eq!(st.keys_in_slot(b'a' as u16), Some(0));
        assert_eq!(st.keys_in_slot(b'c' as u16), Some(1));
        let hx = st.hash(b"x");
        st.write(hx)
            .put_str(b"x", hx, b"v", Expiry::At(10), 0)
            .unwrap();
        assert_eq!(st.keys_in_slot(b'x' as u16), Some(1));
        for round in 0..10 {
            st.active_expire(0..4, 20, 16, round);
        }
        assert_eq!(st.keys_in_slot(b'x' as u16), Some(0));
        // Replayed FLUSHALL (shard by shard) and FLUSHALL itself.
        st.apply_logged(&[Effect::FlushAll], 1, 0);
        assert_eq!(st.keys_in_slot(b'b' as u16), Some(0));
        put(b"b2");
        assert_eq!(st.keys_in_slot(b'b' as u16), Some(1));
        drop(st.flush_all().unwrap());
        assert_eq!(st.keys_in_slot(b'b' as u16), Some(0));
        put(b"b3");
        assert_eq!(
            st.keys_in_slot(b'b' as u16),
            Some(1),
            "still counting after a flush"
        );
    }

    #[test]
    fn random_key_where_picks_only_wanted_keys() {
        let st = Store::new(4);
        for i in 0..200 {
            let key = format!("k{i}");
            let h = st.hash(key.as_bytes());
            st.write(h)
                .put_str(key.as_bytes(), h, b"v", Expiry::None, 0)
                .unwrap();
        }
        for seed in 0..50 {
            let k = st.random_key_where(0, seed, |k| k == b"k7").unwrap();
            assert_eq!(k, b"k7");
        }
        assert_eq!(st.random_key_where(0, 1, |_| false), None);
    }

    #[test]
    fn append_and_setrange() {
        let st = Store::new(1);
        let h = st.hash(b"s");
        assert_eq!(st.write(h).append(b"s", h, b"12", 0).unwrap(), 2);
        assert_eq!(st.read(h).get(b"s", h, 0).unwrap().value(), &Value::Int(12));
        assert_eq!(st.write(h).append(b"s", h, b"ab", 0).unwrap(), 4);
        assert_eq!(
            st.read(h).get(b"s", h, 0).unwrap().value(),
            &Value::bytes(b"12ab".to_vec())
        );
        assert_eq!(st.write(h).set_range(b"s", h, 6, b"Z", 0).unwrap(), 7);
        assert_eq!(
            st.read(h).get(b"s", h, 0).unwrap().value(),
            &Value::bytes(b"12ab\0\0Z".to_vec())
        );
    }

    #[test]
    fn str_write_pads_converts_and_keeps_the_deadline() {
        let st = Store::new(1);
        let h = st.hash(b"s");
        let write = |offset, bytes: &[u8]| {
            st.write(h)
                .commit(
                    &[Effect::StrWrite {
                        key: b"s",
                        offset,
                        bytes,
                    }],
                    0,
                )
                .unwrap();
        };
        // A missing key is created, zero-padded, without a deadline.
        write(2, b"x");
        assert_eq!(
            st.read(h).get(b"s", h, 0).unwrap().value(),
            &Value::bytes(b"\0\0x".to_vec())
        );
        // An integer-encoded string is written as its text; the deadline stays.
        st.write(h)
            .put_str(b"s", h, b"123", Expiry::At(9000), 0)
            .unwrap();
        write(1, b"9");
        write(5, b"");
        let shard = st.read(h);
        let e = shard.get(b"s", h, 0).unwrap();
        assert_eq!(e.value(), &Value::bytes(b"193\0\0".to_vec()));
        assert_eq!(e.expire_at(), Some(9000));
        drop(shard);
        let mem = st.stats().mem;
        assert!(st.write(h).remove(b"s", h, 0).unwrap());
        assert!(mem > 0);
        assert_eq!(st.stats().dataset, 0);
    }
}

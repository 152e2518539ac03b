//! WATCH registrations: which clients want to know that a key changed.
//!
//! A client that WATCHes keys owns one [`WatchFlag`] and registers it under each key, in
//! the registry of the key's shard. Every write hands its effects to the journal through
//! `Store::journal()`, which raises the flags registered under the keys the effects
//! change; EXEC then runs only if its flag is still down. In the common case nobody
//! watches anything, and a write pays one load of [`Watchers::active`] (a counter on a
//! cache line of its own, read-mostly).
//!
//! Which changes count is Redis 7's rule: a key that was live when it was watched is
//! modified by any write to it, including its deletion by expiry (and EXEC also refuses
//! to run once such a key has expired, deleted or not). A key that was absent, or
//! already expired, when it was watched is modified only when something writes it anew:
//! removing the expired leftover is no logical change, so deletions (and FLUSHALL) leave
//! those registrations alone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hashbrown::HashMap;
use parking_lot::Mutex;

use crate::effect::Effect;

/// Raised when a watched key changes. Shared by every key one client watches.
pub type WatchFlag = Arc<AtomicBool>;

struct Watcher {
    flag: WatchFlag,
    /// The key was live when it was watched.
    live: bool,
}

type Registry = HashMap<Vec<u8>, Vec<Watcher>, foldhash::fast::RandomState>;

#[repr(align(128))] // read by every write: keep it off lines that are written often
struct Active(AtomicUsize);

/// The registrations of every shard, plus their total.
pub(crate) struct Watchers {
    /// Number of registrations; writes skip the registries while it is zero.
    active: Active,
    /// One registry per shard, locked after the shard's own lock.
    shards: Box<[Mutex<Registry>]>,
}

impl Watchers {
    pub(crate) fn new(shards: usize) -> Watchers {
        Watchers {
            active: Active(AtomicUsize::new(0)),
            shards: (0..shards)
                .map(|_| Mutex::new(Registry::default()))
                .collect(),
        }
    }

    /// Whether any key is watched. Writers read it under their shard's lock and
    /// registrations change under the same lock, so a relaxed load sees every
    /// registration that could concern the write.
    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.active.0.load(Ordering::Relaxed) != 0
    }

    /// Registers `flag` under `key` (in `shard`), unless it is already there. The
    /// caller holds the shard's lock (read or write) so no write to the key interleaves.
    pub(crate) fn add(&self, shard: usize, key: &[u8], flag: &WatchFlag, live: bool) {
        let mut reg = self.shards[shard].lock();
        let list = reg.entry_ref(key).or_default();
        if list.iter().any(|w| Arc::ptr_eq(&w.flag, flag)) {
            return;
        }
        list.push(Watcher {
            flag: flag.clone(),
            live,
        });
        self.active.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Removes the registration of `flag` under `key` (in `shard`), if any.
    pub(crate) fn remove(&self, shard: usize, key: &[u8], flag: &WatchFlag) {
        let mut reg = self.shards[shard].lock();
        let Some(list) = reg.get_mut(key) else {
            return;
        };
        let Some(pos) = list.iter().position(|w| Arc::ptr_eq(&w.flag, flag)) else {
            return;
        };
        list.swap_remove(pos);
        if list.is_empty() {
            reg.remove(key);
        }
        self.active.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Raises the flags of the keys `effects` change; `shard_of` maps a key to its shard.
    /// Called under the write lock of every shard the effects touch, after the journal
    /// accepted them (they are then certain to be applied).
    #[cold]
    pub(crate) fn touch(&self, effects: &[Effect<'_>], shard_of: impl Fn(&[u8]) -> usize) {
        for e in effects {
            // A deletion is a change only for those that saw the key live.
            let removal = matches!(
                e,
                Effect::Del { .. } | Effect::FlushAll | Effect::DropSlots { .. }
            );
            let raise = |list: &Vec<Watcher>| {
                for w in list {
                    if w.live || !removal {
                        w.flag.store(true, Ordering::Release);
                    }
                }
            };
            match e.key() {
                Some(key) => {
                    if let Some(list) = self.shards[shard_of(key)].lock().get(key) {
                        raise(list);
                    }
                }
                None if matches!(e, Effect::FlushAll) => {
                    for reg in self.shards.iter() {
                        reg.lock().values().for_each(raise);
                    }
                }
                None => {
                    if let Effect::DropSlots { slots, slot_of } = *e {
                        for reg in self.shards.iter() {
                            for (key, list) in reg.lock().iter() {
                                if crate::slot_in(slots, slot_of(key)) {
                                    raise(list);
                                }
                            }
                        }
                    }
                    // Transaction markers change no key.
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Expiry, Store};

    fn flag() -> WatchFlag {
        Arc::new(AtomicBool::new(false))
    }

    fn set(st: &Store, key: &[u8], expiry: Expiry, now: u64) {
        let h = st.hash(key);
        st.write(h).put_str(key, h, b"v", expiry, now).unwrap();
    }

    #[test]
    fn a_write_raises_the_flags_of_its_key_only() {
        // One shard: the keys share a shard, a lock and a registry.
        let st = Store::new(1);
        let (f1, f2) = (flag(), flag());
        assert!(!st.watch(b"a", &f1, 0));
        assert!(!st.watch(b"b", &f2, 0));
        assert!(!st.watch(b"b", &f2, 0)); // registering twice is registering once
        assert_eq!(st.watchers.active.0.load(Ordering::Relaxed), 2);
        set(&st, b"c", Expiry::None, 0);
        assert!(!f1.load(Ordering::Relaxed) && !f2.load(Ordering::Relaxed));
        set(&st, b"b", Expiry::None, 0);
        assert!(!f1.load(Ordering::Relaxed) && f2.load(Ordering::Relaxed));
        st.unwatch(b"a", &f1);
        st.unwatch(b"b", &f2);
        st.unwatch(b"b", &f2);
        assert!(!st.watchers.any());
        set(&st, b"a", Expiry::None, 0);
        assert!(!f1.load(Ordering::Relaxed));
    }

    #[test]
    fn removals_concern_only_keys_live_when_watched() {
        let st = Store::new(4);
        set(&st, b"live", Expiry::None, 0);
        set(&st, b"gone", Expiry::At(10), 0);
        let (live, gone) = (flag(), flag());
        assert!(st.watch(b"live", &live, 20));
        assert!(!st.watch(b"gone", &gone, 20));
        // Lazy expiry removes the leftover: no change for a key already expired.
        let h = st.hash(b"gone");
        assert!(st.write(h).lookup(b"gone", h, 20).is_none());
        assert!(!gone.load(Ordering::Relaxed));
        st.flush_all().unwrap();
        assert!(live.load(Ordering::Relaxed));
        assert!(!gone.load(Ordering::Relaxed));
        // Creating the absent key is a change.
        set(&st, b"gone", Expiry::None, 30);
        assert!(gone.load(Ordering::Relaxed));
    }
}

//! Write listening: someone outside the engine hears of writes while it asks to.
//!
//! Clients blocked on keys (BLPOP, BZPOPMIN, ...) wait for a write that gives one of
//! their keys data. The server registers them itself; what it needs from the engine is
//! to be told of writes, at a moment when no later write to the same key can have been
//! applied yet: under the write lock of the key's shard, once the journal accepted the
//! record (the write is then certain to be applied when the lock is released).
//!
//! Nobody waits in the common case, and a write then pays one relaxed load of a counter
//! on a cache line of its own. Whoever starts listening raises the counter before it
//! next takes the lock of a shard it cares about: a writer holding that lock later sees
//! the count (the lock orders them), one that held it before has already applied its
//! write, which the listener then finds itself.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::effect::Effect;

/// Told of the writes made while [`crate::Store::listen`] registrations are active.
pub trait WriteListener: Send + Sync {
    /// `effects` were accepted by the journal as one record and are about to be applied;
    /// the caller holds the write lock of every shard they touch. Must be quick and must
    /// not take a shard lock.
    fn written(&self, effects: &[Effect<'_>]);
}

#[repr(align(128))] // read by every write: keep it off lines that are written often
struct Count(AtomicUsize);

pub(crate) struct Listeners {
    /// Active registrations; writes skip the listener while it is zero.
    count: Count,
    listener: OnceLock<Box<dyn WriteListener>>,
}

impl Listeners {
    pub(crate) fn new() -> Listeners {
        Listeners {
            count: Count(AtomicUsize::new(0)),
            listener: OnceLock::new(),
        }
    }

    pub(crate) fn set(&self, listener: Box<dyn WriteListener>) {
        if self.listener.set(listener).is_err() {
            panic!("the store's write listener is set once");
        }
    }

    #[inline]
    pub(crate) fn any(&self) -> bool {
        self.count.0.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn add(&self) {
        self.count.0.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn remove(&self) {
        self.count.0.fetch_sub(1, Ordering::SeqCst);
    }

    #[cold]
    pub(crate) fn tell(&self, effects: &[Effect<'_>]) {
        if let Some(l) = self.listener.get() {
            l.written(effects);
        }
    }
}

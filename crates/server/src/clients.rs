//! The registry of connected clients, for CLIENT LIST/INFO/KILL and INFO clients.
//!
//! A client's loop owns its session; what other threads need to see of it (name, last
//! command, idle time) sits in a shared [`ClientMeta`] with atomics, written by the
//! owning loop without locks and read by whoever lists clients.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use dse_net::ConnRef;
use parking_lot::Mutex;

/// Names a client gave itself (CLIENT SETNAME, CLIENT SETINFO, HELLO SETNAME).
#[derive(Debug, Default, Clone)]
pub struct ClientNames {
    pub name: Vec<u8>,
    pub lib_name: Vec<u8>,
    pub lib_ver: Vec<u8>,
}

/// Client types, as CLIENT LIST TYPE and CLIENT KILL TYPE name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    Normal,
    Master,
    Replica,
    Pubsub,
}

impl ClientKind {
    /// Redis's `getClientTypeByName` (any case; `slave` is the old name of `replica`).
    pub fn parse(name: &[u8]) -> Option<ClientKind> {
        let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
        if is("normal") {
            Some(ClientKind::Normal)
        } else if is("master") {
            Some(ClientKind::Master)
        } else if is("replica") || is("slave") {
            Some(ClientKind::Replica)
        } else if is("pubsub") {
            Some(ClientKind::Pubsub)
        } else {
            None
        }
    }
}

#[derive(Debug)]
pub struct ClientMeta {
    pub id: u64,
    /// The connection's loop and token (it may move between loops; see [`Self::conn`]).
    conn: AtomicU64,
    /// CLIENT KILL named this client: a loop it moves to closes it on arrival.
    pub killed: AtomicBool,
    pub addr: String,
    pub laddr: String,
    /// Milliseconds since the epoch when the client connected.
    pub created_ms: u64,
    pub names: Mutex<ClientNames>,
    /// Milliseconds since the epoch of the last command.
    pub last_active_ms: AtomicU64,
    /// Table index of the last command run (`u32::MAX` before the first).
    pub last_cmd: AtomicU32,
    pub resp: AtomicU8,
    pub no_evict: AtomicBool,
    pub no_touch: AtomicBool,
    /// Bytes of a partial request buffered (CLIENT LIST qbuf).
    pub qbuf: AtomicU64,
    /// Blocked on keys or held by CLIENT PAUSE (CLIENT LIST flag `b`).
    pub blocked: AtomicBool,
}

impl ClientMeta {
    pub fn new(conn: ConnRef, addr: String, laddr: String, now_ms: u64) -> Self {
        ClientMeta {
            id: conn.id,
            conn: AtomicU64::new(pack(conn)),
            killed: AtomicBool::new(false),
            addr,
            laddr,
            created_ms: now_ms,
            names: Mutex::new(ClientNames::default()),
            last_active_ms: AtomicU64::new(now_ms),
            last_cmd: AtomicU32::new(u32::MAX),
            resp: AtomicU8::new(2),
            no_evict: AtomicBool::new(false),
            no_touch: AtomicBool::new(false),
            qbuf: AtomicU64::new(0),
            blocked: AtomicBool::new(false),
        }
    }

    /// Where the connection is now. Read and written with `SeqCst` so that, of a CLIENT
    /// KILL (sets `killed`, then reads this) and a move (writes this, then reads
    /// `killed`), at least one sees the other: either the kill goes to the new loop or
    /// the new loop closes the client.
    pub fn conn(&self) -> ConnRef {
        let v = self.conn.load(Ordering::SeqCst);
        ConnRef {
            loop_index: (v >> 32) as u32,
            token: v as u32,
            id: self.id,
        }
    }

    /// The connection moved to `to` (same id).
    pub fn set_conn(&self, to: ConnRef) {
        self.conn.store(pack(to), Ordering::SeqCst);
    }

    /// There is no replication or pub/sub yet, so every connection is a normal client.
    pub fn kind(&self) -> ClientKind {
        ClientKind::Normal
    }

    /// Whole seconds since the client connected (CLIENT LIST `age`, CLIENT KILL MAXAGE).
    pub fn age_secs(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.created_ms) / 1000
    }

    /// One CLIENT LIST line (without the trailing newline), in Redis 7.2's field order,
    /// then Redis 8's `io-thread`: here the event loop serving the client.
    pub fn describe(&self, now_ms: u64, cmd_name: &str) -> String {
        let names = self.names.lock().clone();
        let mut flags = String::new();
        if self.blocked.load(Ordering::Relaxed) {
            flags.push('b');
        }
        if self.no_evict.load(Ordering::Relaxed) {
            flags.push('e');
        }
        if self.no_touch.load(Ordering::Relaxed) {
            flags.push('T');
        }
        if flags.is_empty() {
            flags.push('N');
        }
        let age = self.age_secs(now_ms);
        let idle = now_ms.saturating_sub(self.last_active_ms.load(Ordering::Relaxed)) / 1000;
        let qbuf = self.qbuf.load(Ordering::Relaxed);
        let mut s = String::with_capacity(256);
        let _ = write!(
            s,
            "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db=0 sub=0 psub=0 \
             ssub=0 multi=-1 qbuf={} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 \
             oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} \
             lib-ver={} io-thread={}",
            self.id,
            self.addr,
            self.laddr,
            self.conn().token,
            String::from_utf8_lossy(&names.name),
            age,
            idle,
            flags,
            qbuf,
            cmd_name,
            self.resp.load(Ordering::Relaxed),
            String::from_utf8_lossy(&names.lib_name),
            String::from_utf8_lossy(&names.lib_ver),
            self.conn().loop_index,
        );
        s
    }
}

fn pack(r: ConnRef) -> u64 {
    (u64::from(r.loop_index) << 32) | u64::from(r.token)
}

/// Every connected client, by id (so listings come out in connection order).
#[derive(Default)]
pub struct Clients {
    map: Mutex<BTreeMap<u64, Arc<ClientMeta>>>,
}

impl Clients {
    pub fn add(&self, meta: Arc<ClientMeta>) {
        self.map.lock().insert(meta.id, meta);
    }

    pub fn remove(&self, id: u64) {
        self.map.lock().remove(&id);
    }

    /// A snapshot of the registry (the lock is not held while the caller formats).
    pub fn all(&self) -> Vec<Arc<ClientMeta>> {
        self.map.lock().values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<ClientMeta>> {
        self.map.lock().get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

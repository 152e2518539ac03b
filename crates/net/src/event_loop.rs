//! One event loop: a mio `Poll` (epoll, edge-triggered) and the connections it owns.
//!
//! Edge-triggered readiness reports a change once, so the loop keeps its own account:
//! - `readable` says the socket may still hold bytes. A read that would block clears it,
//!   and so does a read that did not fill the room it was offered (the socket is then
//!   empty, and new bytes raise a new edge), unless the peer's FIN was already reported
//!   (nothing would announce the end of the stream again); when reading stops for any other reason (output over the limit, a paused
//!   client, the read budget of one turn) nothing will announce the bytes again, and
//!   [`EventLoop::drive`] resumes reading as soon as that reason goes away.
//! - Output is written until the socket would block, so a backlog is always followed by
//!   a writable event when the client reads.
//! - Every path (events, messages, ticks, resume, shutdown) goes through `drive`, which
//!   does all a connection can do now and stops only to wait for the socket, the
//!   handler (paused), or the next turn (read budget spent).
//! - An outbound connection starts in `connecting`: `drive` only checks whether the
//!   connect ended (any event, even a spurious one, brings it there) and, once it did,
//!   tells the handler and carries on as for any connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use parking_lot::Mutex;
use slab::Slab;

use crate::buffer::{InBuf, OutBuf, write_some};
use crate::{Close, ConnInfo, ConnRef, Handler, Io, NetConfig, NetShared, Placement};

const WAKER: Token = Token(usize::MAX);
/// Bytes one read into the loop's scratch buffer can take.
const SCRATCH: usize = 64 * 1024;
/// Reads one connection may do per turn before the others get theirs.
const READ_BUDGET: usize = 16;
/// The loop's output scratch keeps up to this much memory between uses.
const KEEP_OUT_SCRATCH: usize = 1024 * 1024;

// Placement (see the crate docs): connections gather on as few loops as keep up.
/// How long a loop measures its busy share before it publishes it and balances.
const WINDOW: Duration = Duration::from_millis(500);
/// A loop busy this share of the time (per mille) spills connections to a less busy
/// one, if the machine has a core to spare for it.
const SPILL_BUSY: u32 = 900;
/// Idle cores (in thousandths, over the last window) the machine needs before a busy
/// loop spills: with none, a second loop only takes turns with the first on the same
/// cores and the clients, and adds wake-ups.
const SPILL_IDLE: u32 = 750;
/// A loop merges its connections into a lower one when their two busy shares add up
/// to less than this.
const MERGE_BUSY: u32 = 700;
/// New connections go to the first loop busy less than this.
pub(crate) const PLACE_BUSY: u32 = 800;
/// After connections moved, the loops involved wait this long before they move any
/// again: their busy shares must first reflect the change.
const SETTLE: Duration = Duration::from_secs(2);

/// Which of the [`NetShared`] counters a connection counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// Accepted on a listener that counts as client: subject to `maxclients`.
    Client,
    /// Accepted on a listener that does not.
    Internal,
    /// Made with [`Conns::connect`].
    Outbound,
}

impl Class {
    pub(crate) fn counter(self, shared: &NetShared) -> &AtomicUsize {
        match self {
            Class::Client => &shared.connected,
            Class::Internal => &shared.internal_connected,
            Class::Outbound => &shared.outbound_connected,
        }
    }
}

/// A connection the acceptor hands to a loop.
pub(crate) struct Accepted {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) id: u64,
    pub(crate) kind: u8,
    pub(crate) class: Class,
}

/// A connection handed from one loop to another (its handler state is the
/// `Handler::Conn`, boxed so the inbox need not know its type).
struct Moved<C> {
    stream: TcpStream,
    id: u64,
    class: Class,
    state: C,
}

enum Inbound<M> {
    Conn(Accepted),
    Moved(Box<dyn std::any::Any + Send>),
    Msg(M),
    Shutdown(Duration),
}

/// How other threads reach a loop.
pub struct LoopHandle<M> {
    index: usize,
    inbox: Mutex<Vec<Inbound<M>>>,
    /// Set while a wake-up is pending, so a burst of messages costs one eventfd write.
    woken: AtomicBool,
    waker: Waker,
    /// Share of the last window the loop spent working rather than waiting (per mille).
    busy: AtomicU32,
}

impl<M: Send + 'static> LoopHandle<M> {
    pub(crate) fn new(index: usize, poll: &Poll) -> io::Result<Self> {
        Ok(LoopHandle {
            index,
            inbox: Mutex::new(Vec::new()),
            woken: AtomicBool::new(false),
            waker: Waker::new(poll.registry(), WAKER)?,
            busy: AtomicU32::new(0),
        })
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Share of its last measuring window the loop spent working (per mille).
    pub fn busy(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Delivers `msg` to the loop's [`Handler::message`].
    pub fn send(&self, msg: M) {
        self.push(Inbound::Msg(msg));
    }

    pub(crate) fn send_conn(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        id: u64,
        kind: u8,
        class: Class,
    ) {
        self.push(Inbound::Conn(Accepted {
            stream,
            peer,
            id,
            kind,
            class,
        }));
    }

    pub(crate) fn begin_shutdown(&self, grace: Duration) {
        self.push(Inbound::Shutdown(grace));
    }

    fn push(&self, item: Inbound<M>) {
        self.inbox.lock().push(item);
        if !self.woken.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }
}

/// The loop's context, given to every handler call.
pub struct Cx<'a, M> {
    pub loop_index: usize,
    pub loops: &'a [LoopHandle<M>],
    pub shared: &'a NetShared,
}

struct Connection<C> {
    stream: TcpStream,
    id: u64,
    /// A partial request, or requests left while the output was full. Empty (and
    /// holding no memory) for an idle connection.
    input: InBuf,
    /// What the socket did not take yet. Empty (no memory) while the client keeps up.
    out: OutBuf,
    state: C,
    /// Input size the handler needs before it can go on.
    want: usize,
    /// The socket may hold unread bytes: set by a readable event, cleared by a read that
    /// would block or that emptied the socket.
    readable: bool,
    /// An event reported the peer's FIN (or an error): read until the end of the stream,
    /// since no further event will say so.
    read_closed: bool,
    /// The handler paused input (a blocked client) until [`Conns::resume`].
    paused: bool,
    /// The handler stopped with requests left because the output was full: run it again
    /// once the output drains, before reading more.
    stalled: bool,
    /// The client will send nothing more; close once what it sent is answered.
    eof: bool,
    /// The handler holds replies for this connection elsewhere (until the log has them):
    /// answered is not yet all sent, whatever `out` says. Cleared by [`Conns::unhold`].
    held: bool,
    /// An outbound connect still in progress: nothing is read or written yet.
    connecting: bool,
    class: Class,
    closing: Close,
}

impl<C> Connection<C> {
    fn new(stream: TcpStream, id: u64, state: C, class: Class) -> Self {
        Connection {
            stream,
            id,
            input: InBuf::default(),
            out: OutBuf::default(),
            state,
            want: 0,
            // Bytes may have arrived before registration; reading once costs one
            // syscall and does not depend on how the first event is reported. (An
            // outbound connection does the same once its connect completes.)
            readable: class != Class::Outbound,
            read_closed: false,
            paused: false,
            stalled: false,
            eof: false,
            held: false,
            connecting: class == Class::Outbound,
            class,
            closing: Close::No,
        }
    }
}

impl<C> Connection<C> {
    /// Nothing of the connection is in flight in the loop: no bytes buffered either way,
    /// not paused, held, closing or at its end.
    fn at_rest(&self) -> bool {
        self.class == Class::Client
            && !self.connecting
            && self.input.is_empty()
            && self.out.pending() == 0
            && !self.paused
            && !self.stalled
            && !self.held
            && !self.eof
            && !self.read_closed
            && self.closing == Close::No
    }
}

/// A sample of the machine's CPU time (/proc/stat's first line), to tell whether a
/// core is idle.
#[derive(Clone, Copy)]
struct CpuSample {
    idle: u64,
    total: u64,
}

impl CpuSample {
    fn read() -> Option<CpuSample> {
        let text = std::fs::read_to_string("/proc/stat").ok()?;
        let line = text.lines().next()?.strip_prefix("cpu ")?;
        let v: Vec<u64> = line
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
        Some(CpuSample {
            idle,
            total: v.iter().take(8).sum(),
        })
    }
}

/// Registers a connection's socket with a loop's poll, edge-triggered for both
/// directions: accepted, moved and outbound connections alike.
fn watch(registry: &Registry, stream: &mut TcpStream, token: usize) -> io::Result<()> {
    registry.register(
        stream,
        Token(token),
        Interest::READABLE | Interest::WRITABLE,
    )
}

/// How a non-blocking connect went, or `None` while it is still in progress (the
/// sequence mio documents for `TcpStream::connect`).
fn connect_outcome(stream: &TcpStream) -> Option<io::Result<()>> {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return Some(Err(e)),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => Some(Ok(())),
        Err(e)
            if e.kind() == io::ErrorKind::NotConnected
                || e.raw_os_error() == Some(libc::EINPROGRESS) =>
        {
            None
        }
        Err(e) => Some(Err(e)),
    }
}

/// A loop's connections, for [`Handler::message`], [`Handler::tick`] and
/// [`Handler::end_of_turn`]: any connection of this loop, not only one being served.
pub struct Conns<'a, C> {
    slab: &'a mut Slab<Connection<C>>,
    pending: &'a mut Vec<usize>,
    loop_index: u32,
    registry: &'a Registry,
    shared: &'a NetShared,
}

/// One connection, reached from a message, a tick or the end of a turn.
pub struct ConnMut<'a, C> {
    pub state: &'a mut C,
    /// Output to send; the loop flushes it after the handler returns.
    pub out: &'a mut Vec<u8>,
}

impl<C> Conns<'_, C> {
    fn find(&mut self, r: ConnRef) -> Option<&mut Connection<C>> {
        if r.loop_index != self.loop_index {
            return None;
        }
        self.slab.get_mut(r.token as usize).filter(|c| c.id == r.id)
    }

    /// The connection `r` refers to, if it is still open.
    pub fn get(&mut self, r: ConnRef) -> Option<ConnMut<'_, C>> {
        self.find(r)?;
        self.pending.push(r.token as usize);
        let c = self.find(r)?;
        Some(ConnMut {
            state: &mut c.state,
            out: &mut c.out.buf,
        })
    }

    /// Closes `r` (after sending what it has pending, with `Close::AfterFlush`). An
    /// outbound connection still connecting is closed without [`Handler::connected`]
    /// (with `AfterFlush` and output queued, once the connect ends and it is sent).
    pub fn close(&mut self, r: ConnRef, how: Close) {
        if let Some(c) = self.find(r) {
            if c.closing != Close::Now {
                c.closing = how;
            }
            self.pending.push(r.token as usize);
        }
    }

    /// The handler no longer holds replies for `r` (it put them in the output): the loop
    /// may close it once they are sent, if the client has left.
    pub fn unhold(&mut self, r: ConnRef) {
        if let Some(c) = self.find(r) {
            c.held = false;
            self.pending.push(r.token as usize);
        }
    }

    /// Resumes input of a connection the handler paused; buffered requests are delivered.
    pub fn resume(&mut self, r: ConnRef) {
        if let Some(c) = self.find(r) {
            c.paused = false;
            c.stalled = true;
            self.pending.push(r.token as usize);
        }
    }

    /// Starts connecting to `addr` (non-blocking, with TCP_NODELAY) and returns at once
    /// with the new connection, owned by this loop, whose state is `state`. Output
    /// appended through [`Conns::get`] before the connect completes is sent once it
    /// does. [`Handler::connected`] then reports how it went; on failure the connection
    /// is closed ([`Handler::closed`]). An error here (no descriptor left, the loop
    /// shutting down, an address refused at once) means no connection was made and no
    /// callback follows. Outbound connections count in
    /// [`NetShared::outbound_connected`], never towards `maxclients`.
    pub fn connect(&mut self, addr: SocketAddr, state: C) -> io::Result<ConnRef> {
        if self.shared.is_shutting_down() {
            return Err(io::Error::other("the network layer is shutting down"));
        }
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let entry = self.slab.vacant_entry();
        let token = entry.key();
        // The end of the connect, success or failure, is reported as writable.
        watch(self.registry, &mut stream, token)?;
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        entry.insert(Connection::new(stream, id, state, Class::Outbound));
        self.shared
            .outbound_connected
            .fetch_add(1, Ordering::Relaxed);
        Ok(ConnRef {
            loop_index: self.loop_index,
            token: token as u32,
            id,
        })
    }

    /// Visits every connection (client timeouts, CLIENT LIST snapshots).
    pub fn for_each(&mut self, mut f: impl FnMut(ConnRef, &mut C)) {
        let loop_index = self.loop_index;
        for (token, c) in self.slab.iter_mut() {
            f(
                ConnRef {
                    loop_index,
                    token: token as u32,
                    id: c.id,
                },
                &mut c.state,
            );
        }
    }
}

pub(crate) struct EventLoop<H: Handler> {
    index: usize,
    poll: Poll,
    handler: Arc<H>,
    loops: Arc<[LoopHandle<H::Msg>]>,
    shared: Arc<NetShared>,
    tick: Duration,
    conns: Slab<Connection<H::Conn>>,
    /// Where reads land when a connection has no partial request of its own.
    scratch: InBuf,
    /// Where replies go when a connection has no backlog; written straight to the
    /// socket, and only what the socket refuses is kept by the connection.
    out_scratch: Vec<u8>,
    /// Connections to drive before the next wait (touched by a message, a tick or a
    /// resume, or out of read budget). Swapped with `batch` while being worked through.
    pending: Vec<usize>,
    batch: Vec<usize>,
    query_limit_reply: &'static [u8],
    shutdown_deadline: Option<Instant>,
    /// The handler ran `data` or `connected` since the last `end_of_turn`: it may have
    /// left work for it, so the loop does not wait before the next one.
    handler_ran: bool,
    /// Bytes read and written this turn, added to the shared counters once per turn: a
    /// counter every loop updates per request would move its cache line between cores
    /// on every request.
    input_bytes: u64,
    output_bytes: u64,
    /// Time spent working (not waiting in `poll`) since `window_start`.
    busy: Duration,
    window_start: Instant,
    /// The machine's CPU time at the start of the window (None: not available).
    cpu: Option<CpuSample>,
    /// Cores the process may run on, for reading /proc/stat's idle share as idle cores.
    cores: u64,
    /// No connections move to or from this loop before this.
    settle_until: Instant,
    placement: Placement,
}

impl<H: Handler> EventLoop<H> {
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        handler: Arc<H>,
        loops: Arc<[LoopHandle<H::Msg>]>,
        shared: Arc<NetShared>,
        cfg: &NetConfig,
    ) -> Self {
        EventLoop {
            index,
            poll,
            handler,
            loops,
            shared,
            tick: cfg.tick,
            conns: Slab::new(),
            scratch: InBuf::default(),
            out_scratch: Vec::new(),
            pending: Vec::new(),
            batch: Vec::new(),
            query_limit_reply: cfg.query_buffer_reply,
            shutdown_deadline: None,
            handler_ran: false,
            input_bytes: 0,
            output_bytes: 0,
            busy: Duration::ZERO,
            window_start: Instant::now(),
            cpu: None,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()) as u64,
            settle_until: Instant::now(),
            placement: cfg.placement,
        }
    }

    /// Adds this turn's byte counts to the shared counters (INFO stats).
    fn publish_bytes(&mut self) {
        if self.input_bytes > 0 {
            self.shared
                .net_input_bytes
                .fetch_add(std::mem::take(&mut self.input_bytes), Ordering::Relaxed);
        }
        if self.output_bytes > 0 {
            self.shared
                .net_output_bytes
                .fetch_add(std::mem::take(&mut self.output_bytes), Ordering::Relaxed);
        }
    }

    /// The handler, and what its calls that reach every connection take.
    fn parts(&mut self) -> (&H, Cx<'_, H::Msg>, Conns<'_, H::Conn>) {
        let EventLoop {
            index,
            poll,
            handler,
            loops,
            shared,
            conns,
            pending,
            ..
        } = self;
        let shared: &NetShared = shared;
        (
            handler,
            Cx {
                loop_index: *index,
                loops,
                shared,
            },
            Conns {
                slab: conns,
                pending,
                loop_index: *index as u32,
                registry: poll.registry(),
                shared,
            },
        )
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + self.tick;
        let mut woke = Instant::now();
        loop {
            let now = Instant::now();
            self.busy += now - woke;
            let mut timeout = next_tick.saturating_duration_since(now);
            if !self.pending.is_empty() || self.handler_ran {
                timeout = Duration::ZERO;
            } else if self.shutdown_deadline.is_some() {
                timeout = timeout.min(Duration::from_millis(10));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!("event loop {} poll failed: {e}", self.index);
                return;
            }
            woke = Instant::now();
            for ev in events.iter() {
                let token = ev.token().0;
                if ev.token() == WAKER {
                    continue;
                }
                if (ev.is_readable() || ev.is_read_closed() || ev.is_error())
                    && let Some(c) = self.conns.get_mut(token)
                {
                    c.readable = true;
                    c.read_closed |= ev.is_read_closed() || ev.is_error();
                }
                self.drive(token);
            }
            self.drain_inbox();
            if Instant::now() >= next_tick {
                next_tick += self.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.tick;
                }
                let (handler, mut cx, mut conns) = self.parts();
                handler.tick(&mut cx, &mut conns);
                if self.loops.len() > 1 && self.placement == Placement::Gather {
                    self.balance();
                }
            }
            self.handler_ran = false;
            {
                let (handler, mut cx, mut conns) = self.parts();
                handler.end_of_turn(&mut cx, &mut conns);
            }
            self.drive_pending();
            self.publish_bytes();
            if let Some(deadline) = self.shutdown_deadline
                && (self.conns.is_empty() || Instant::now() >= deadline)
            {
                let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
                for t in tokens {
                    self.close(t);
                }
                return;
            }
        }
    }

    fn cx(&self) -> Cx<'_, H::Msg> {
        Cx {
            loop_index: self.index,
            loops: &self.loops,
            shared: &self.shared,
        }
    }

    fn drain_inbox(&mut self) {
        let me = &self.loops[self.index];
        if !me.woken.swap(false, Ordering::AcqRel) {
            return;
        }
        let items = std::mem::take(&mut *me.inbox.lock());
        for item in items {
            match item {
                Inbound::Conn(a) if self.shutdown_deadline.is_some() => {
                    drop(a.stream);
                    a.class
                        .counter(&self.shared)
                        .fetch_sub(1, Ordering::Relaxed);
                }
                Inbound::Conn(a) => self.register(a),
                Inbound::Moved(m) => match m.downcast::<Moved<H::Conn>>() {
                    Ok(m) => self.adopt(*m),
                    Err(_) => unreachable!("a moved connection of another handler type"),
                },
                Inbound::Msg(msg) => {
                    let (handler, mut cx, mut conns) = self.parts();
                    handler.message(&mut cx, &mut conns, msg);
                }
                Inbound::Shutdown(grace) => {
                    self.shutdown_deadline = Some(Instant::now() + grace);
                    // Finish the replies in flight; take no new requests.
                    for (token, c) in self.conns.iter_mut() {
                        if c.closing == Close::No {
                            c.closing = Close::AfterFlush;
                        }
                        self.pending.push(token);
                    }
                }
            }
        }
    }

    fn register(&mut self, a: Accepted) {
        let Accepted {
            mut stream,
            peer,
            id,
            kind,
            class,
        } = a;
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = watch(self.poll.registry(), &mut stream, token) {
            tracing::warn!("cannot register connection from {peer}: {e}");
            class.counter(&self.shared).fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let local = stream.local_addr().unwrap_or(peer);
        let info = ConnInfo {
            conn: ConnRef {
                loop_index: self.index as u32,
                token: token as u32,
                id,
            },
            peer,
            local,
            kind,
        };
        let mut cx = Cx {
            loop_index: self.index,
            loops: &self.loops,
            shared: &self.shared,
        };
        let state = self.handler.open(&mut cx, &info);
        entry.insert(Connection::new(stream, id, state, class));
        self.pending.push(token);
    }

    /// Ends a measuring window once it is long enough: publishes the loop's busy share
    /// and moves connections if the loops are out of balance (see the crate docs,
    /// "Placement"). Runs on the tick.
    fn balance(&mut self) {
        let now = Instant::now();
        let elapsed = now - self.window_start;
        if elapsed < WINDOW {
            return;
        }
        let busy = (self.busy.as_nanos() * 1000 / elapsed.as_nanos().max(1)).min(1000) as u32;
        self.busy = Duration::ZERO;
        self.window_start = now;
        self.loops[self.index].busy.store(busy, Ordering::Relaxed);
        let sample = CpuSample::read();
        let idle_cores = match (self.cpu, sample) {
            // Idle share of all cores, times their number: idle cores in thousandths.
            (Some(a), Some(b)) if b.total > a.total => {
                ((b.idle - a.idle) * 1000 * self.cores / (b.total - a.total)) as u32
            }
            _ => u32::MAX,
        };
        self.cpu = sample;
        if now < self.settle_until || self.conns.is_empty() {
            return;
        }
        if busy >= SPILL_BUSY && idle_cores >= SPILL_IDLE {
            // The least busy other loop, if it has room.
            let target = (0..self.loops.len())
                .filter(|&j| j != self.index)
                .map(|j| (self.loops[j].busy(), j))
                .min();
            if let Some((theirs, j)) = target
                && theirs < busy / 2
            {
                // Move the share of the connections that evens the two out.
                let share = f64::from(busy - theirs) / f64::from(2 * busy);
                let n = (self.conns.len() as f64 * share).ceil() as usize;
                self.move_conns(j, n);
            }
        } else if self.index > 0
            && let Some(j) = (0..self.index).find(|&j| self.loops[j].busy() + busy < MERGE_BUSY)
        {
            self.move_conns(j, usize::MAX);
        }
    }

    /// Hands up to `n` connections at rest (that the handler lets go) to loop `to`.
    fn move_conns(&mut self, to: usize, n: usize) {
        let tokens: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.at_rest() && self.handler.movable(&c.state))
            .map(|(t, _)| t)
            .take(n)
            .collect();
        if tokens.is_empty() {
            return;
        }
        tracing::debug!(
            "loop {} moves {} connections to loop {to}",
            self.index,
            tokens.len()
        );
        for t in tokens {
            let mut c = self.conns.remove(t);
            let _ = self.poll.registry().deregister(&mut c.stream);
            self.loops[to].push(Inbound::Moved(Box::new(Moved {
                stream: c.stream,
                id: c.id,
                class: c.class,
                state: c.state,
            })));
        }
        self.settle_until = Instant::now() + SETTLE;
    }

    /// Takes over a connection another loop moved here.
    fn adopt(&mut self, m: Moved<H::Conn>) {
        let Moved {
            mut stream,
            id,
            class,
            mut state,
        } = m;
        self.settle_until = Instant::now() + SETTLE;
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        let mut cx = Cx {
            loop_index: self.index,
            loops: &self.loops,
            shared: &self.shared,
        };
        if let Err(e) = watch(self.poll.registry(), &mut stream, token) {
            tracing::warn!("cannot register a moved connection: {e}");
            class.counter(&self.shared).fetch_sub(1, Ordering::Relaxed);
            self.handler.closed(&mut cx, &mut state);
            return;
        }
        let to = ConnRef {
            loop_index: self.index as u32,
            token: token as u32,
            id,
        };
        self.handler.moved(&mut cx, &mut state, to);
        entry.insert(Connection::new(stream, id, state, class));
        // Bytes that arrived on the way are read at once.
        self.pending.push(token);
        if self.shutdown_deadline.is_some() {
            self.conns[token].closing = Close::AfterFlush;
        }
    }

    fn drive_pending(&mut self) {
        std::mem::swap(&mut self.pending, &mut self.batch);
        for i in 0..self.batch.len() {
            let token = self.batch[i];
            self.drive(token);
        }
        self.batch.clear();
    }

    /// Does all the connection can do now: send its backlog, run requests it left
    /// buffered, read and answer new ones. Returns when it must wait for the socket, for
    /// the handler (paused), or for its next turn (read budget spent; it is queued).
    fn drive(&mut self, token: usize) {
        let max_out = self.shared.max_pending_output.load(Ordering::Relaxed);
        let max_query = self.shared.max_query_buffer.load(Ordering::Relaxed);
        let mut reads = 0;
        loop {
            let Some(c) = self.conns.get_mut(token) else {
                return;
            };
            if c.closing == Close::Now {
                self.close(token);
                return;
            }
            if c.connecting {
                if c.closing == Close::AfterFlush && c.out.pending() == 0 {
                    // Nothing to send: no reason to wait for the connect.
                    self.close(token);
                    return;
                }
                let Some(result) = connect_outcome(&c.stream) else {
                    return;
                };
                c.connecting = false;
                // Bytes may already wait behind the connect's own event.
                c.readable = true;
                let failed = result.is_err();
                let mut cx = Cx {
                    loop_index: self.index,
                    loops: &self.loops,
                    shared: &self.shared,
                };
                self.handler.connected(&mut cx, &mut c.state, result);
                self.handler_ran = true;
                if failed {
                    self.close(token);
                    return;
                }
                continue;
            }
            if c.out.pending() > 0 {
                match c.out.flush_to(&mut c.stream) {
                    Ok(n) => self.output_bytes += n as u64,
                    Err(_) => {
                        self.close(token);
                        return;
                    }
                }
            }
            let backlog = c.out.pending();
            if c.closing == Close::AfterFlush {
                if backlog == 0 {
                    self.close(token);
                }
                return;
            }
            if backlog > max_out {
                // The flush stopped because the socket is full: a writable event follows
                // when the client reads, and brings us back here.
                return;
            }
            if c.stalled && !c.paused {
                if c.input.is_empty() {
                    c.stalled = false;
                } else {
                    self.process(token, false);
                }
                continue;
            }
            if c.eof {
                // Nothing more will come. A client that left while paused is not waited
                // for; replies the handler still holds are.
                if !c.held && (backlog == 0 || c.paused) {
                    self.close(token);
                }
                return;
            }
            if !c.readable {
                return;
            }
            if reads == READ_BUDGET {
                self.pending.push(token);
                return;
            }
            reads += 1;
            // Reads go to the scratch buffer, except the rest of a large argument (read
            // straight into the buffer sized for it) and a paused client's bytes (kept,
            // not run: reading them still notices a client that leaves, and the
            // query-buffer limit still applies).
            let into_own = c.paused || (!c.input.is_empty() && c.want > c.input.len() + SCRATCH);
            let res = if into_own {
                c.input.read_from(&mut c.stream, c.want)
            } else {
                self.scratch.read_from(&mut c.stream, SCRATCH)
            };
            match res {
                Ok((0, _)) => {
                    c.readable = false;
                    c.eof = true;
                }
                Ok((n, filled)) => {
                    // A read that did not fill the room it was offered emptied the
                    // socket (epoll(7)): anything that arrives later raises a new edge.
                    // Trusting that saves the read that would only say EAGAIN, one
                    // syscall in three for a client that sends one request at a time.
                    if !filled && !c.read_closed {
                        c.readable = false;
                    }
                    self.input_bytes += n as u64;
                    if c.paused {
                        if c.input.len() > max_query {
                            c.out.buf.extend_from_slice(self.query_limit_reply);
                            c.closing = Close::AfterFlush;
                        }
                    } else if into_own || c.input.is_empty() {
                        self.process(token, !into_own);
                    } else {
                        // The rest of a partial request: join it to its start.
                        c.input.extend(self.scratch.data(), c.want);
                        self.scratch.consume(n);
                        self.process(token, false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    c.readable = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(token);
                    return;
                }
            }
        }
    }

    /// Hands the connection's input (just read into the scratch buffer, or its own) to
    /// the handler, and sends the replies.
    fn process(&mut self, token: usize, from_scratch: bool) {
        let max_out = self.shared.max_pending_output.load(Ordering::Relaxed);
        let max_query = self.shared.max_query_buffer.load(Ordering::Relaxed);
        let mut cx = Cx {
            loop_index: self.index,
            loops: &self.loops,
            shared: &self.shared,
        };
        let c = &mut self.conns[token];
        let input = if from_scratch {
            self.scratch.data()
        } else {
            c.input.data()
        };
        // With no backlog the replies go to the scratch buffer and straight out;
        // otherwise they queue behind the backlog.
        let direct = c.out.pending() == 0;
        let already_sent = c.out.buf.len() - c.out.pending();
        let mut io = Io {
            input,
            out: if direct {
                &mut self.out_scratch
            } else {
                &mut c.out.buf
            },
            consumed: 0,
            want: 0,
            close: Close::No,
            pause: false,
            hold: false,
            // What the socket already took does not count against the limit.
            out_limit: max_out.saturating_add(if direct { 0 } else { already_sent }),
        };
        self.handler.data(&mut cx, &mut c.state, &mut io);
        self.handler_ran = true;
        let full = io.output_full();
        let Io {
            consumed,
            want,
            close,
            pause,
            hold,
            ..
        } = io;
        let consumed = consumed.min(input.len());
        let left = input.len() - consumed;
        if from_scratch {
            if left > 0 {
                c.input.extend(&self.scratch.data()[consumed..], want);
            }
            self.scratch.consume(self.scratch.len());
        } else {
            c.input.consume(consumed);
            c.input.release();
        }
        c.want = want;
        c.paused |= pause;
        c.held |= hold;
        c.stalled = left > 0 && full && !c.paused;
        if close != Close::No {
            if c.closing != Close::Now {
                c.closing = close;
            }
        } else if c.input.len() > max_query {
            let out = if direct {
                &mut self.out_scratch
            } else {
                &mut c.out.buf
            };
            out.extend_from_slice(self.query_limit_reply);
            c.closing = Close::AfterFlush;
        }
        if direct && !self.out_scratch.is_empty() {
            if c.closing == Close::Now {
                self.out_scratch.clear();
            } else {
                match write_some(&mut c.stream, &self.out_scratch) {
                    Ok(n) => {
                        self.output_bytes += n as u64;
                        if n < self.out_scratch.len() {
                            c.out.adopt(&mut self.out_scratch, n);
                        }
                    }
                    Err(_) => c.closing = Close::Now,
                }
                self.out_scratch.clear();
            }
            if self.out_scratch.capacity() > KEEP_OUT_SCRATCH {
                self.out_scratch = Vec::new();
            }
        }
    }

    fn close(&mut self, token: usize) {
        if !self.conns.contains(token) {
            return;
        }
        let mut c = self.conns.remove(token);
        let _ = self.poll.registry().deregister(&mut c.stream);
        c.class
            .counter(&self.shared)
            .fetch_sub(1, Ordering::Relaxed);
        let mut cx = self.cx();
        self.handler.closed(&mut cx, &mut c.state);
    }
}

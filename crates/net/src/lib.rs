//! Event loops for a request/response TCP server, knowing nothing of the requests.
//!
//! ```text
//!                 ┌──────────────┐   round-robin    ┌────────────────────────────┐
//!  connect ─────▶ │ acceptor     │ ───────────────▶ │ loop 0: mio Poll (epoll ET) │──▶ Handler::data
//!                 │ (1 thread)   │   inbox + Waker  │  owns its connections       │    (inline, on this
//!                 └──────────────┘ ───────────────▶ │ loop 1 ...                  │     thread)
//!                                                   └────────────────────────────┘
//!                       any thread ── LoopHandle::send(msg) ──▶ Handler::message
//! ```
//!
//! - Each loop thread owns its connections and calls the [`Handler`] inline: a request
//!   is parsed, executed and answered on the thread that read it.
//! - Reads land in a per-loop scratch buffer; a connection keeps bytes of its own only for
//!   a partial request, and its output buffer only while the client is not reading. An
//!   idle connection holds a socket and a few dozen bytes.
//! - Back-pressure: a connection whose unsent output passes `max_pending_output` is not
//!   read until it drains; one whose partial request passes `max_query_buffer` is closed.
//! - Other threads reach a loop through [`LoopHandle::send`]; the handler's
//!   [`Handler::message`] then runs on that loop with access to its connections.
//! - Listeners carry a kind ([`Listener`]), so one loop serves clients and internal
//!   peers alike; only client listeners count towards `maxclients`.
//! - Placement ([`Placement::Gather`], the default): connections gather on as few loops
//!   as keep up with them. A loop that waits for its clients costs a wake-up per turn,
//!   and two half-busy loops take twice the wake-ups (and the cores' time) of one loop
//!   doing both halves: on a machine whose cores the clients share, one loop per core
//!   is slower than one loop until a loop is actually busy. So the acceptor gives a new
//!   connection to the first loop busy less than 80% of the time; each loop measures
//!   its busy share over half-second windows, and one busy 90% or more hands half the
//!   difference (in connections) to the least busy loop, provided the machine had
//!   three quarters of a core idle (otherwise a second loop only takes turns with the
//!   first on the same cores). A loop other than the first whose busy share and a lower
//!   loop's add up to under 70% gives that loop all its connections. Only connections
//!   at rest move (nothing buffered, nothing the handler holds: [`Handler::movable`]);
//!   after a move the loops involved wait two seconds. [`Placement::RoundRobin`] deals
//!   connections in turn and never moves them.
//! - A loop also makes connections ([`Conns::connect`]): non-blocking, owned by the loop
//!   that made them, and once connected handled exactly like accepted ones.

mod acceptor;
mod buffer;
mod event_loop;
mod limits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

pub use event_loop::{ConnMut, Conns, Cx, LoopHandle};
pub use limits::raise_open_files_limit;

/// Identifies a connection: its loop, its slot there, and a process-unique id (so a
/// message for a closed connection never reaches a newer one in the same slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnRef {
    pub loop_index: u32,
    pub token: u32,
    pub id: u64,
}

/// What the handler learns about a new connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub conn: ConnRef,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// The [`Listener::kind`] of the listener that accepted it: tells a client from an
    /// internal peer.
    pub kind: u8,
}

/// A listening socket and what its connections are.
#[derive(Debug)]
pub struct Listener {
    pub socket: std::net::TcpListener,
    /// Handed to the handler in [`ConnInfo::kind`]; the net layer gives it no meaning.
    pub kind: u8,
    /// Connections from this listener are clients: they count towards `maxclients`
    /// (and in [`NetShared::connected`]) and are refused past it. The others count in
    /// [`NetShared::internal_connected`] and are never refused.
    pub counts_as_client: bool,
}

impl Listener {
    /// A listener for clients, of kind 0.
    pub fn client(socket: std::net::TcpListener) -> Self {
        Listener {
            socket,
            kind: 0,
            counts_as_client: true,
        }
    }
}

/// What to do with a connection after the handler ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Close {
    #[default]
    No,
    /// Send what is in the output buffer, then close (QUIT, protocol errors).
    AfterFlush,
    /// Close without sending anything more.
    Now,
}

/// One delivery of input to the handler.
pub struct Io<'a> {
    /// Bytes received and not yet consumed, starting at the first byte of a request.
    pub input: &'a [u8],
    /// Replies go here, appended: the buffer may already hold earlier replies the client
    /// has not read yet (and, before them, some it has).
    pub out: &'a mut Vec<u8>,
    /// Set by the handler: how many bytes of `input` it used.
    pub consumed: usize,
    /// Set by the handler: the total input size it needs before it can go on (a hint for
    /// sizing the buffer of a large request once).
    pub want: usize,
    /// Set by the handler.
    pub close: Close,
    /// Set by the handler: stop delivering input until [`Conns::resume`] (a blocked
    /// client). Unconsumed input is kept.
    pub pause: bool,
    /// Set by the handler: it holds replies for this connection elsewhere (waiting for
    /// the log), so the connection is not done even when the output is empty; the handler
    /// says when it has let go with [`Conns::unhold`].
    pub hold: bool,
    out_limit: usize,
}

impl Io<'_> {
    /// True once the unsent output is over the pending-output limit: the handler should
    /// stop consuming input and let the client read (pipelining never buffers unbounded
    /// replies). The loop runs the handler again with the rest once the client catches up.
    pub fn output_full(&self) -> bool {
        self.out.len() > self.out_limit
    }

    /// What [`Io::output_full`] compares `out.len()` against: the pending-output limit
    /// plus whatever at the front of `out` was already sent.
    pub fn out_limit(&self) -> usize {
        self.out_limit
    }
}

/// The server's side of each connection. All methods run on the connection's loop.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state.
    type Conn: Send + 'static;
    /// Messages other threads send to a loop.
    type Msg: Send + 'static;

    fn open(&self, cx: &mut Cx<'_, Self::Msg>, info: &ConnInfo) -> Self::Conn;

    /// Input arrived: consume whole requests from `io.input`, append replies to `io.out`.
    fn data(&self, cx: &mut Cx<'_, Self::Msg>, conn: &mut Self::Conn, io: &mut Io<'_>);

    /// The connection is gone (client closed, error, or `Close`).
    fn closed(&self, cx: &mut Cx<'_, Self::Msg>, conn: &mut Self::Conn);

    /// An outbound connection made with [`Conns::connect`] is established (`Ok`) or could
    /// not be (`Err`; the connection is then closed and [`Handler::closed`] called).
    /// Output queued before this is sent right after it, and from then on the
    /// connection is served like an accepted one. Not called for a connection closed
    /// while still connecting (only `closed` is).
    fn connected(
        &self,
        _cx: &mut Cx<'_, Self::Msg>,
        _conn: &mut Self::Conn,
        _result: std::io::Result<()>,
    ) {
    }

    /// May the loop hand this connection to another loop now (see the crate docs,
    /// "Placement")? Only asked for a client connection with nothing buffered either way
    /// and not paused or held; the handler says no while anything of its own (per-loop
    /// lists, other threads) still names the connection's [`ConnRef`]. Default: never.
    fn movable(&self, _conn: &Self::Conn) -> bool {
        false
    }

    /// The connection moved to this loop ([`Cx::loop_index`]) and is now `to` (same
    /// `id`, new loop and token). Runs on the new loop before its first input there.
    fn moved(&self, _cx: &mut Cx<'_, Self::Msg>, _conn: &mut Self::Conn, _to: ConnRef) {}

    /// A message sent with [`LoopHandle::send`] to this loop.
    fn message(
        &self,
        cx: &mut Cx<'_, Self::Msg>,
        conns: &mut Conns<'_, Self::Conn>,
        msg: Self::Msg,
    );

    /// Called once per turn of the loop, after the ready connections were served and
    /// before the loop sends what is pending: the place to do, once for all of them, work
    /// their replies wait on (one write of the log for every connection served).
    ///
    /// It is also where [`Handler::data`] (which reaches only its own connection) acts on
    /// other connections of the same loop: `data` notes the work in a per-loop list of
    /// the handler's (indexed by [`Cx::loop_index`]; only this loop's thread touches its
    /// entry, so the lock is never contended), and `end_of_turn` takes the list and
    /// carries it out with [`Conns::get`] (append to another connection's `out`: it is
    /// sent before the loop waits again), [`Conns::connect`], [`Conns::close`]... The
    /// loop guarantees an `end_of_turn` after every turn in which the handler ran `data`
    /// or `connected`, before it waits for anything.
    fn end_of_turn(&self, _cx: &mut Cx<'_, Self::Msg>, _conns: &mut Conns<'_, Self::Conn>) {}

    /// Called about every `tick` interval on each loop (housekeeping: expiry, timeouts).
    fn tick(&self, cx: &mut Cx<'_, Self::Msg>, conns: &mut Conns<'_, Self::Conn>);
}

/// Settings for [`start`]. The limits can be changed at run time through [`NetShared`].
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub threads: usize,
    pub maxclients: usize,
    pub max_pending_output: usize,
    pub max_query_buffer: usize,
    pub tick: std::time::Duration,
    /// Sent to a client refused because of `maxclients`.
    pub maxclients_reply: &'static [u8],
    /// Sent to a client closed because its query buffer passed `max_query_buffer`.
    pub query_buffer_reply: &'static [u8],
    /// How connections are spread over the loops.
    pub placement: Placement,
}

/// How connections are spread over the loops (see the crate docs, "Placement").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// On as few loops as keep up: new connections go to the first loop that is not
    /// busy; a busy loop hands connections to an idle one when the machine has a core
    /// to spare, and loops that are both lightly loaded merge.
    #[default]
    Gather,
    /// Dealt to the loops in turn, and never moved.
    RoundRobin,
}

/// State shared by the acceptor, the loops and the handler: limits and counters.
#[derive(Debug)]
pub struct NetShared {
    pub maxclients: AtomicUsize,
    pub max_pending_output: AtomicUsize,
    pub max_query_buffer: AtomicUsize,
    /// Open client connections (from listeners that count as clients).
    pub connected: AtomicUsize,
    /// Open connections accepted on listeners that do not count as clients.
    pub internal_connected: AtomicUsize,
    /// Open connections made with [`Conns::connect`] (connecting ones included).
    pub outbound_connected: AtomicUsize,
    /// Client connections accepted since the start.
    pub total_connections: AtomicU64,
    /// Client connections refused because of `maxclients`.
    pub rejected_connections: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    next_id: AtomicU64,
    stop_accepting: AtomicBool,
    shutting_down: AtomicBool,
}

impl NetShared {
    fn new(cfg: &NetConfig) -> Self {
        NetShared {
            maxclients: AtomicUsize::new(cfg.maxclients),
            max_pending_output: AtomicUsize::new(cfg.max_pending_output),
            max_query_buffer: AtomicUsize::new(cfg.max_query_buffer),
            connected: AtomicUsize::new(0),
            internal_connected: AtomicUsize::new(0),
            outbound_connected: AtomicUsize::new(0),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            net_input_bytes: AtomicU64::new(0),
            net_output_bytes: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            stop_accepting: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }
}

/// A running network layer.
pub struct Net<M: Send + 'static> {
    pub shared: Arc<NetShared>,
    pub loops: Arc<[LoopHandle<M>]>,
    acceptor: Option<acceptor::Acceptor>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Binds a listening socket the way Redis does (SO_REUSEADDR, backlog 511).
pub fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(511)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Starts `cfg.threads` event loops and an acceptor on `listeners`.
pub fn start<H: Handler>(
    cfg: NetConfig,
    handler: Arc<H>,
    listeners: Vec<Listener>,
) -> std::io::Result<Net<H::Msg>> {
    let shared = Arc::new(NetShared::new(&cfg));
    let threads_n = cfg.threads.max(1);
    let mut polls = Vec::with_capacity(threads_n);
    let mut handles = Vec::with_capacity(threads_n);
    for i in 0..threads_n {
        let poll = mio::Poll::new()?;
        let handle = LoopHandle::new(i, &poll)?;
        polls.push(poll);
        handles.push(handle);
    }
    let loops: Arc<[LoopHandle<H::Msg>]> = handles.into();
    let mut threads = Vec::with_capacity(threads_n);
    for (i, poll) in polls.into_iter().enumerate() {
        let lp = event_loop::EventLoop::new(
            i,
            poll,
            handler.clone(),
            loops.clone(),
            shared.clone(),
            &cfg,
        );
        threads.push(
            std::thread::Builder::new()
                .name(format!("dse-loop-{i}"))
                .spawn(move || lp.run())?,
        );
    }
    let acceptor = acceptor::Acceptor::start(
        listeners,
        loops.clone(),
        shared.clone(),
        cfg.maxclients_reply,
        cfg.placement,
    )?;
    Ok(Net {
        shared,
        loops,
        acceptor: Some(acceptor),
        threads,
    })
}

impl<M: Send + 'static> Net<M> {
    /// Stops accepting connections; open ones carry on.
    pub fn stop_accepting(&mut self) {
        self.shared.stop_accepting.store(true, Ordering::Release);
        if let Some(a) = self.acceptor.take() {
            a.stop();
        }
    }

    /// Stops accepting, lets every loop send what its connections have pending (for up
    /// to `grace`), closes them all and waits for the loops to end.
    pub fn shutdown(mut self, grace: std::time::Duration) {
        self.stop_accepting();
        self.shared.shutting_down.store(true, Ordering::Release);
        for l in self.loops.iter() {
            l.begin_shutdown(grace);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

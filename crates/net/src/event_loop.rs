//! One event loop: a mio `Poll` (epoll, edge-triggered) and the connections it owns.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use slab::Slab;

use crate::buffer::{InBuf, OutBuf};
use crate::{Close, ConnInfo, ConnRef, Handler, Io, NetShared};

const WAKER: Token = Token(usize::MAX);
/// Bytes one read into the loop's scratch buffer can take.
const SCRATCH: usize = 64 * 1024;

enum Inbound<M> {
    Conn(TcpStream, SocketAddr, u64),
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
}

impl<M: Send + 'static> LoopHandle<M> {
    pub(crate) fn new(index: usize, poll: &Poll) -> io::Result<Self> {
        Ok(LoopHandle {
            index,
            inbox: Mutex::new(Vec::new()),
            woken: AtomicBool::new(false),
            waker: Waker::new(poll.registry(), WAKER)?,
        })
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Delivers `msg` to the loop's [`Handler::message`].
    pub fn send(&self, msg: M) {
        self.push(Inbound::Msg(msg));
    }

    pub(crate) fn send_conn(&self, stream: TcpStream, peer: SocketAddr, id: u64) {
        self.push(Inbound::Conn(stream, peer, id));
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
    input: InBuf,
    out: OutBuf,
    state: C,
    /// Input size the handler needs before it can go on.
    want: usize,
    /// The handler paused input (a blocked client).
    paused: bool,
    /// The handler stopped with whole requests left because the output was full.
    redeliver: bool,
    /// Reading stopped with data possibly left in the socket; with edge-triggered
    /// readiness no new event will say so, so reading resumes explicitly.
    read_blocked: bool,
    closing: Close,
    eof: bool,
}

/// A loop's connections, for [`Handler::message`] and [`Handler::tick`].
pub struct Conns<'a, C> {
    slab: &'a mut Slab<Connection<C>>,
    dirty: &'a mut Vec<usize>,
    loop_index: u32,
}

/// One connection, reached from a message or a tick.
pub struct ConnMut<'a, C> {
    pub state: &'a mut C,
    /// Output to send; the loop flushes it after the handler returns.
    pub out: &'a mut Vec<u8>,
}

impl<C> Conns<'_, C> {
    /// The connection `r` refers to, if it is still open.
    pub fn get(&mut self, r: ConnRef) -> Option<ConnMut<'_, C>> {
        let token = r.token as usize;
        match self.slab.get_mut(token) {
            Some(c) if c.id == r.id && r.loop_index == self.loop_index => {
                self.dirty.push(token);
                Some(ConnMut {
                    state: &mut c.state,
                    out: &mut c.out.buf,
                })
            }
            _ => None,
        }
    }

    /// Closes `r` (after sending what it has pending, with `Close::AfterFlush`).
    pub fn close(&mut self, r: ConnRef, how: Close) {
        let token = r.token as usize;
        if let Some(c) = self.slab.get_mut(token)
            && c.id == r.id
        {
            c.closing = how;
            self.dirty.push(token);
        }
    }

    /// Resumes input of a connection the handler paused; buffered requests are delivered.
    pub fn resume(&mut self, r: ConnRef) {
        let token = r.token as usize;
        if let Some(c) = self.slab.get_mut(token)
            && c.id == r.id
        {
            c.paused = false;
            c.redeliver = true;
            self.dirty.push(token);
        }
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
    scratch: InBuf,
    dirty: Vec<usize>,
    query_limit_reply: &'static [u8],
    shutdown_deadline: Option<Instant>,
}

impl<H: Handler> EventLoop<H> {
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        handler: Arc<H>,
        loops: Arc<[LoopHandle<H::Msg>]>,
        shared: Arc<NetShared>,
        tick: Duration,
        query_limit_reply: &'static [u8],
    ) -> Self {
        EventLoop {
            index,
            poll,
            handler,
            loops,
            shared,
            tick,
            conns: Slab::new(),
            scratch: InBuf::default(),
            dirty: Vec::new(),
            query_limit_reply,
            shutdown_deadline: None,
        }
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let now = Instant::now();
            let mut timeout = next_tick.saturating_duration_since(now);
            if self.shutdown_deadline.is_some() {
                timeout = timeout.min(Duration::from_millis(10));
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!("event loop {} poll failed: {e}", self.index);
                return;
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKER {
                    continue;
                }
                let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                if ev.is_writable() {
                    self.on_writable(token.0);
                }
                if readable {
                    self.on_readable(token.0);
                }
            }
            self.drain_inbox();
            if Instant::now() >= next_tick {
                next_tick += self.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.tick;
                }
                let mut cx = Cx {
                    loop_index: self.index,
                    loops: &self.loops,
                    shared: &self.shared,
                };
                let mut conns = Conns {
                    slab: &mut self.conns,
                    dirty: &mut self.dirty,
                    loop_index: self.index as u32,
                };
                self.handler.tick(&mut cx, &mut conns);
            }
            self.service_dirty();
            if let Some(deadline) = self.shutdown_deadline {
                let drained = self.conns.iter().all(|(_, c)| c.out.pending() == 0);
                if drained || Instant::now() >= deadline {
                    let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
                    for t in tokens {
                        self.close(t);
                    }
                    return;
                }
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
                Inbound::Conn(stream, peer, id) => self.register(stream, peer, id),
                Inbound::Msg(msg) => {
                    let mut cx = Cx {
                        loop_index: self.index,
                        loops: &self.loops,
                        shared: &self.shared,
                    };
                    let mut conns = Conns {
                        slab: &mut self.conns,
                        dirty: &mut self.dirty,
                        loop_index: self.index as u32,
                    };
                    self.handler.message(&mut cx, &mut conns, msg);
                }
                Inbound::Shutdown(grace) => {
                    self.shutdown_deadline = Some(Instant::now() + grace);
                    // Finish replies in flight; take no new requests.
                    for (_, c) in self.conns.iter_mut() {
                        if c.closing == Close::No {
                            c.closing = Close::AfterFlush;
                        }
                    }
                    self.dirty.extend(self.conns.iter().map(|(t, _)| t));
                }
            }
        }
    }

    fn register(&mut self, mut stream: TcpStream, peer: SocketAddr, id: u64) {
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!("cannot register connection from {peer}: {e}");
            self.shared.connected.fetch_sub(1, Ordering::Relaxed);
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
        };
        let mut cx = Cx {
            loop_index: self.index,
            loops: &self.loops,
            shared: &self.shared,
        };
        let state = self.handler.open(&mut cx, &info);
        entry.insert(Connection {
            stream,
            id,
            input: InBuf::default(),
            out: OutBuf::default(),
            state,
            want: 0,
            paused: false,
            redeliver: false,
            read_blocked: false,
            closing: Close::No,
            eof: false,
        });
    }

    fn on_readable(&mut self, token: usize) {
        let max_out = self.shared.max_pending_output.load(Ordering::Relaxed);
        loop {
            let Some(c) = self.conns.get_mut(token) else {
                return;
            };
            if c.closing != Close::No || c.eof {
                break;
            }
            if c.paused || c.redeliver || c.out.pending() > max_out {
                c.read_blocked = true;
                break;
            }
            let res = if c.input.is_empty() {
                self.scratch.read_from(&mut c.stream, SCRATCH)
            } else {
                c.input.read_from(&mut c.stream, c.want)
            };
            match res {
                Ok(0) => {
                    c.eof = true;
                    break;
                }
                Ok(n) => {
                    self.shared
                        .net_input_bytes
                        .fetch_add(n as u64, Ordering::Relaxed);
                    self.process(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close(token);
                    return;
                }
            }
        }
        self.flush(token);
    }

    /// Hands the connection's input (in the scratch buffer or its own) to the handler.
    fn process(&mut self, token: usize) {
        let max_out = self.shared.max_pending_output.load(Ordering::Relaxed);
        let max_query = self.shared.max_query_buffer.load(Ordering::Relaxed);
        let mut cx = Cx {
            loop_index: self.index,
            loops: &self.loops,
            shared: &self.shared,
        };
        let c = &mut self.conns[token];
        let from_scratch = !self.scratch.is_empty();
        let input = if from_scratch {
            self.scratch.data()
        } else {
            c.input.data()
        };
        let mut io = Io {
            input,
            out: &mut c.out.buf,
            consumed: 0,
            want: 0,
            close: Close::No,
            pause: false,
            out_limit: max_out,
        };
        self.handler.data(&mut cx, &mut c.state, &mut io);
        let (consumed, want, close, pause) = (io.consumed, io.want, io.close, io.pause);
        let left = input.len() - consumed;
        c.redeliver = left > 0 && c.out.pending() > max_out;
        if from_scratch {
            if left > 0 {
                c.input.extend(&self.scratch.data()[consumed..], want);
            }
            let all = self.scratch.len();
            self.scratch.consume(all);
        } else {
            c.input.consume(consumed);
        }
        c.want = want;
        c.paused |= pause;
        if close != Close::No {
            c.closing = close;
        } else if c.input.len() > max_query {
            c.out.buf.extend_from_slice(self.query_limit_reply);
            c.closing = Close::AfterFlush;
        }
    }

    fn on_writable(&mut self, token: usize) {
        self.flush(token);
        let max_out = self.shared.max_pending_output.load(Ordering::Relaxed);
        let Some(c) = self.conns.get_mut(token) else {
            return;
        };
        if c.out.pending() <= max_out && c.closing == Close::No {
            if c.redeliver && !c.paused {
                c.redeliver = false;
                self.process(token);
                self.flush(token);
            }
            if let Some(c) = self.conns.get_mut(token)
                && c.read_blocked
                && !c.redeliver
                && !c.paused
            {
                c.read_blocked = false;
                self.on_readable(token);
            }
        }
    }

    /// Sends pending output; closes the connection when it is done with.
    fn flush(&mut self, token: usize) {
        let Some(c) = self.conns.get_mut(token) else {
            return;
        };
        if c.closing == Close::Now {
            self.close(token);
            return;
        }
        match c.out.flush_to(&mut c.stream) {
            Ok(n) => {
                self.shared
                    .net_output_bytes
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.close(token);
                return;
            }
        }
        if c.out.pending() == 0 && (c.closing == Close::AfterFlush || c.eof) {
            self.close(token);
        }
    }

    /// Flushes and re-runs the connections a message or tick touched.
    fn service_dirty(&mut self) {
        while let Some(token) = self.dirty.pop() {
            let Some(c) = self.conns.get_mut(token) else {
                continue;
            };
            if c.redeliver && !c.paused && c.closing == Close::No {
                c.redeliver = false;
                if !c.input.is_empty() {
                    self.process(token);
                }
                if let Some(c) = self.conns.get_mut(token)
                    && c.read_blocked
                    && !c.paused
                    && !c.redeliver
                {
                    c.read_blocked = false;
                    self.flush(token);
                    self.on_readable(token);
                    continue;
                }
            }
            self.flush(token);
        }
    }

    fn close(&mut self, token: usize) {
        if !self.conns.contains(token) {
            return;
        }
        let mut c = self.conns.remove(token);
        let _ = self.poll.registry().deregister(&mut c.stream);
        self.shared.connected.fetch_sub(1, Ordering::Relaxed);
        let mut cx = self.cx();
        self.handler.closed(&mut cx, &mut c.state);
    }
}

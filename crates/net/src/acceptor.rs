//! The acceptor thread: takes new connections and deals them to the loops in turn.
//!
//! Accepting on one thread keeps `maxclients` exact and spreads clients evenly whatever
//! their addresses (SO_REUSEPORT would hash them, and a benchmark from one host can land
//! unevenly). It costs nothing per request: a connection crosses threads once.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::event_loop::{Class, PLACE_BUSY};
use crate::{Listener, LoopHandle, NetShared, Placement};

const STOP: Token = Token(usize::MAX);

pub(crate) struct Acceptor {
    waker: Arc<Waker>,
    thread: JoinHandle<()>,
}

impl Acceptor {
    pub(crate) fn start<M: Send + 'static>(
        listeners: Vec<Listener>,
        loops: Arc<[LoopHandle<M>]>,
        shared: Arc<NetShared>,
        maxclients_reply: &'static [u8],
        placement: Placement,
    ) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
        let mut mio_listeners = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            l.socket.set_nonblocking(true)?;
            let mut socket = TcpListener::from_std(l.socket);
            poll.registry()
                .register(&mut socket, Token(i), Interest::READABLE)?;
            mio_listeners.push(Accepting {
                socket,
                kind: l.kind,
                class: if l.counts_as_client {
                    Class::Client
                } else {
                    Class::Internal
                },
            });
        }
        let thread = std::thread::Builder::new()
            .name("dse-accept".into())
            .spawn(move || {
                run(
                    poll,
                    mio_listeners,
                    loops,
                    shared,
                    maxclients_reply,
                    placement,
                )
            })?;
        Ok(Acceptor { waker, thread })
    }

    pub(crate) fn stop(self) {
        let _ = self.waker.wake();
        let _ = self.thread.join();
    }
}

/// The loop a new connection goes to: the first one not busy (connections gather on as
/// few loops as keep up with them; see the crate docs, "Placement"), or, when all are,
/// the next in turn.
fn place<M: Send + 'static>(loops: &[LoopHandle<M>], next_loop: &mut usize) -> usize {
    if let Some(i) = loops.iter().position(|l| l.busy() < PLACE_BUSY) {
        return i;
    }
    let i = *next_loop % loops.len();
    *next_loop = i + 1;
    i
}

struct Accepting {
    socket: TcpListener,
    kind: u8,
    class: Class,
}

fn run<M: Send + 'static>(
    mut poll: Poll,
    listeners: Vec<Accepting>,
    loops: Arc<[LoopHandle<M>]>,
    shared: Arc<NetShared>,
    maxclients_reply: &'static [u8],
    placement: Placement,
) {
    let mut events = Events::with_capacity(64);
    let mut next_loop = 0;
    // After a failed accept (out of descriptors), retry every listener on a timer: with
    // edge-triggered readiness a backlog that is not drained raises no new event.
    let mut backoff = false;
    loop {
        let timeout = backoff.then_some(std::time::Duration::from_millis(10));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            tracing::error!("acceptor poll failed: {e}");
            return;
        }
        if shared.stop_accepting.load(Ordering::Acquire) || events.iter().any(|e| e.token() == STOP)
        {
            return;
        }
        backoff = false;
        for listener in &listeners {
            loop {
                match listener.socket.accept() {
                    Ok((mut stream, peer)) => {
                        if listener.class == Class::Client {
                            let connected = shared.connected.load(Ordering::Relaxed);
                            if connected >= shared.maxclients.load(Ordering::Relaxed) {
                                shared.rejected_connections.fetch_add(1, Ordering::Relaxed);
                                let _ = stream.write(maxclients_reply);
                                continue;
                            }
                            shared.total_connections.fetch_add(1, Ordering::Relaxed);
                        }
                        listener
                            .class
                            .counter(&shared)
                            .fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nodelay(true);
                        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
                        let to = match placement {
                            Placement::Gather => place(&loops, &mut next_loop),
                            Placement::RoundRobin => {
                                next_loop = (next_loop + 1) % loops.len();
                                (next_loop + loops.len() - 1) % loops.len()
                            }
                        };
                        loops[to].send_conn(stream, peer, id, listener.kind, listener.class);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        backoff = true;
                        break;
                    }
                }
            }
        }
    }
}

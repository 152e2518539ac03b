//! Forwarding: a node runs a command for a slot another node owns by sending it there.
//!
//! ```text
//!  client ──GET k──▶ loop i of node A                              node B (owner of k)
//!                    │ route: k's slot is B's                        │
//!                    │ encode the request into links[i][B].outbox    │
//!                    │ hold a place in the client's replies          │
//!  end of turn ──────┴─▶ Forward{id, resp, requests} ══ bus ══▶ inbound bus connection:
//!                                                                    runs each request as a
//!                                                                    client would, replies
//!                    ◀══ Replies{id, replies} ═══════════════════════ held for B's log
//!  the place is filled; the client's replies leave in order
//! ```
//!
//! Each event loop keeps its own connection to each peer (created on first use, on the
//! cluster bus port, authenticated by the bus handshake) and writes every forward of a
//! turn in one go: a pipeline of remote commands stays a pipeline, and no command costs a
//! connection or a thread. Consecutive forwards of one client batch to one node share a
//! frame. A forward's replies come back on the same connection in order, so matching them
//! is a FIFO.
//!
//! If the link to a node breaks, the commands in flight on it answer
//! `-CLUSTERDOWN`: they may or may not have run there, so they are not retried.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use dse_cluster::bus::{
    Acceptor, Auth, DEFAULT_MAX_FRAME, Decoder, Frame, HANDSHAKE_MAX_FRAME, Initiator, OpenFrame,
    Step,
};
use dse_net::{ConnRef, Conns};
use dse_proto::Args;
use parking_lot::Mutex;

use crate::cluster::Gather;
use crate::session::Conn;

/// A cluster-bus connection's state.
pub struct BusConn {
    /// The member at the other end, once the handshake says who it is.
    pub peer: Option<u16>,
    /// The name the other end proved (a member's, or a node not yet in the cluster that
    /// may only exchange consensus messages with us); empty until the handshake is done.
    pub peer_name: String,
    pub decoder: Decoder,
    pub side: Side,
    /// The connection's remote address (an acceptor checks it against `--peers`).
    pub addr: SocketAddr,
    /// Outbound: the replication stream from `peer` (a primary of ours), not a
    /// forwarding link.
    pub repl: bool,
    /// Inbound: the peer asked for our log (ReplStart); this connection sends it.
    pub sender: bool,
}

pub enum Side {
    /// We dialled `peer` to forward to it ([`STRANGER`]: a node that is not a member,
    /// for consensus messages).
    Outbound { peer: u16, handshake: Initiator },
    /// A peer dialled us; `None` once authenticated.
    Inbound { handshake: Option<Acceptor> },
}

/// The origin's end of a link: what waits to go to one node from one loop.
#[derive(Default)]
struct Link {
    conn: Option<ConnRef>,
    /// The handshake is done: frames can be written.
    ready: bool,
    /// Forward frames not yet handed to the connection.
    outbox: Vec<u8>,
    /// Forwards sent or waiting, in order: their replies come back in this order.
    inflight: VecDeque<Inflight>,
}

struct Inflight {
    id: u64,
    client: ConnRef,
    requests: usize,
    /// When it was staged (ms).
    since_ms: u64,
}

/// Bytes of unsent consensus messages past which a link takes no more.
const CONSENSUS_OUTBOX_LIMIT: usize = 1 << 20;

/// The frame a client's batch is appending requests to.
struct Open {
    node: u16,
    frame: OpenFrame,
    client: ConnRef,
}

/// One loop's links to the other nodes.
#[derive(Default)]
pub struct LoopLinks {
    links: Vec<Link>,
    /// Links to nodes that are not members, by bus address (consensus messages only).
    strangers: Vec<(SocketAddr, Link)>,
    next_id: u64,
    open: Option<Open>,
    /// Replies (or failures) that came back, for the end of the turn to hand to clients.
    completions: Vec<(ConnRef, u64, Vec<u8>)>,
    /// Split commands being gathered, by the id of their place in the client's replies.
    gathers: HashMap<u64, GatherState>,
    /// Forward id of a split command's part → (the gather's id, the part's index).
    parts: HashMap<u64, (u64, usize)>,
}

/// A split command whose parts are coming back.
struct GatherState {
    client: ConnRef,
    kind: Gather,
    /// Per part, its reply once here.
    replies: Vec<Option<Vec<u8>>>,
    /// Per part, the index (among the command's keys) of each of its keys.
    keys: Vec<Vec<usize>>,
    resp3: bool,
}

/// The `peer` of an outbound link to a node that is not a member (CLUSTER MEET).
pub const STRANGER: u16 = u16::MAX;

/// Every loop's links, and how this node introduces itself on the bus.
pub struct Forwarding {
    loops: Box<[Mutex<LoopLinks>]>,
    pub my_name: String,
    pub auth: Auth,
    /// The membership epoch forwards carry.
    pub epoch: std::sync::atomic::AtomicU64,
}

/// A reply to each request of a forward that will not be answered.
fn unreachable_replies(node: &str, n: usize) -> Vec<u8> {
    let one = format!("-CLUSTERDOWN The node serving this slot ({node}) is unreachable\r\n");
    one.repeat(n).into_bytes()
}

impl Forwarding {
    pub fn new(loops: usize, nodes: usize, my_name: String, auth: Auth, epoch: u64) -> Forwarding {
        Forwarding {
            loops: (0..loops)
                .map(|_| {
                    Mutex::new(LoopLinks {
                        links: (0..nodes).map(|_| Link::default()).collect(),
                        ..Default::default()
                    })
                })
                .collect(),
            my_name,
            auth,
            epoch: std::sync::atomic::AtomicU64::new(epoch),
        }
    }

    /// Appends a client's request for `node` to this loop's link. Returns the id of a
    /// new place to hold in the client's replies, or `None` when the request joined the
    /// frame the client's batch already has open to that node.
    pub fn stage(
        &self,
        loop_index: usize,
        client: ConnRef,
        node: u16,
        resp: u8,
        args: &Args<'_>,
    ) -> Option<u64> {
        let mut guard = self.loops[loop_index].lock();
        let ll = &mut *guard;
        let joins = matches!(&ll.open, Some(o) if o.node == node && o.client == client);
        let mut new_place = None;
        if !joins {
            close_open(ll);
            ll.next_id += 1;
            let id = ll.next_id;
            let link = &mut ll.links[node as usize];
            let epoch = self.epoch.load(std::sync::atomic::Ordering::Relaxed);
            let frame =
                OpenFrame::forward(&mut link.outbox, id, resp, epoch).expect("resp is 2 or 3");
            link.inflight.push_back(Inflight {
                id,
                client,
                requests: 0,
                since_ms: crate::server::unix_ms(),
            });
            ll.open = Some(Open {
                node,
                frame,
                client,
            });
            new_place = Some(id);
        }
        let link = &mut ll.links[node as usize];
        encode_request(&mut link.outbox, args);
        if let Some(last) = link.inflight.back_mut() {
            last.requests += 1;
        }
        new_place
    }

    /// Starts gathering a split command for `client`; returns the id of its place in the
    /// client's replies. `keys[i]` lists the key indices of part `i`.
    pub fn start_gather(
        &self,
        loop_index: usize,
        client: ConnRef,
        kind: Gather,
        keys: Vec<Vec<usize>>,
        resp3: bool,
    ) -> u64 {
        let mut guard = self.loops[loop_index].lock();
        let ll = &mut *guard;
        close_open(ll);
        ll.next_id += 1;
        let id = ll.next_id;
        ll.gathers.insert(
            id,
            GatherState {
                client,
                kind,
                replies: vec![None; keys.len()],
                keys,
                resp3,
            },
        );
        id
    }

    /// Sends part `part` of gather `gather` (a command for `node`) in a frame of its own.
    #[allow(clippy::too_many_arguments)]
    pub fn stage_part(
        &self,
        loop_index: usize,
        client: ConnRef,
        node: u16,
        resp: u8,
        args: &Args<'_>,
        gather: u64,
        part: usize,
    ) {
        let id = self.stage(loop_index, client, node, resp, args);
        let mut ll = self.loops[loop_index].lock();
        close_open(&mut ll);
        if let Some(id) = id {
            ll.parts.insert(id, (gather, part));
        }
    }

    /// Part `part` of gather `gather` is here (run locally).
    pub fn part_done(&self, loop_index: usize, gather: u64, part: usize, reply: Vec<u8>) {
        let mut guard = self.loops[loop_index].lock();
        let ll = &mut *guard;
        complete_part(ll, gather, part, reply);
    }

    /// Closes the frame the current batch had open (a local command came between, or the
    /// batch ended): later requests start a new one, so their replies keep their place.
    pub fn close_batch(&self, loop_index: usize) {
        close_open(&mut self.loops[loop_index].lock());
    }

    /// The outbound connection `conn` of this loop to `peer` is authenticated.
    pub fn link_ready(&self, loop_index: usize, peer: u16, conn: ConnRef) {
        let mut ll = self.loops[loop_index].lock();
        if let Some(l) = ll.links.get_mut(peer as usize) {
            l.ready = true;
        }
        for (_, l) in ll.strangers.iter_mut() {
            if l.conn == Some(conn) {
                l.ready = true;
            }
        }
    }

    /// Queues a consensus message for member `node` (`Some`) or for the node at bus
    /// address `addr` that is not a member; it leaves at the end of the loop's turn.
    pub fn send_consensus(
        &self,
        loop_index: usize,
        node: Option<u16>,
        addr: SocketAddr,
        msg: &[u8],
    ) {
        let mut guard = self.loops[loop_index].lock();
        let ll = &mut *guard;
        // An open Forward frame is at the end of its outbox: finish it first.
        close_open(ll);
        let link = match node {
            Some(n) => match ll.links.get_mut(n as usize) {
                Some(l) => l,
                None => return,
            },
            None => match ll.strangers.iter().position(|(a, _)| *a == addr) {
                Some(i) => &mut ll.strangers[i].1,
                None => {
                    ll.strangers.push((addr, Link::default()));
                    &mut ll.strangers.last_mut().expect("just pushed").1
                }
            },
        };
        // A link that cannot keep up (a peer that is not reading) drops consensus
        // messages rather than buffer without bound: the consensus resends.
        if link.outbox.len() > CONSENSUS_OUTBOX_LIMIT {
            return;
        }
        let f = OpenFrame::consensus(&mut link.outbox);
        link.outbox.extend_from_slice(msg);
        let _ = f.finish(&mut link.outbox);
    }

    /// Fails what is in flight to `peer` on every link of this loop and closes the link
    /// (the peer left the ring, or stopped answering): returns its connection to close.
    pub fn abandon(&self, loop_index: usize, peer: u16, peer_name: &str) -> Option<ConnRef> {
        let conn = self.loops[loop_index]
            .lock()
            .links
            .get(peer as usize)
            .and_then(|l| l.conn);
        self.link_lost(loop_index, peer, peer_name);
        conn
    }

    /// Links of this loop whose oldest forward has waited longer than `timeout_ms`: the
    /// node is not answering (a partition keeps a TCP connection open for minutes).
    pub fn stalled(&self, loop_index: usize, now_ms: u64, timeout_ms: u64) -> Vec<u16> {
        self.loops[loop_index]
            .lock()
            .links
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.inflight
                    .front()
                    .is_some_and(|f| now_ms.saturating_sub(f.since_ms) > timeout_ms)
            })
            .map(|(n, _)| n as u16)
            .collect()
    }

    /// Replies for the oldest forward in flight to `peer` on this loop came back.
    pub fn replies(&self, loop_index: usize, peer: u16, id: u64, replies: &[u8]) -> bool {
        let mut ll = self.loops[loop_index].lock();
        let link = &mut ll.links[peer as usize];
        match link.inflight.front() {
            Some(f) if f.id == id => {
                let f = link.inflight.pop_front().expect("front exists");
                ll.completions.push((f.client, f.id, replies.to_vec()));
                true
            }
            _ => false,
        }
    }

    /// The outbound connection to `peer` is gone: what was in flight on it fails.
    pub fn link_lost(&self, loop_index: usize, peer: u16, peer_name: &str) {
        let mut guard = self.loops[loop_index].lock();
        let ll = &mut *guard;
        if matches!(&ll.open, Some(o) if o.node == peer) {
            close_open(ll);
        }
        let Some(link) = ll.links.get_mut(peer as usize) else {
            return;
        };
        link.conn = None;
        link.ready = false;
        link.outbox.clear();
        let failed: Vec<Inflight> = link.inflight.drain(..).collect();
        for f in failed {
            let bytes = unreachable_replies(peer_name, f.requests);
            ll.completions.push((f.client, f.id, bytes));
        }
    }

    /// End of the turn: connects and writes links, and returns the completions for the
    /// caller to hand to their clients.
    pub fn flush(
        &self,
        loop_index: usize,
        conns: &mut Conns<'_, Conn>,
        addr_of: impl Fn(u16) -> Option<SocketAddr>,
        new_conn: impl Fn(u16, Initiator, SocketAddr) -> Conn,
    ) -> Vec<(ConnRef, u64, Vec<u8>)> {
        let mut guard = self.loops[loop_index].lock();
        let ll = &mut *guard;
        close_open(ll);
        let mut lost = Vec::new();
        for (node, link) in ll.links.iter_mut().enumerate() {
            let addr = || addr_of(node as u16);
            if !self.flush_link(conns, link, node as u16, addr, &new_conn) {
                lost.push(node as u16);
            }
        }
        for (addr, link) in ll.strangers.iter_mut() {
            if !self.flush_link(conns, link, STRANGER, || Some(*addr), &new_conn) {
                link.outbox.clear();
            }
        }
        // A stranger's link that is gone and has nothing to say is forgotten.
        ll.strangers
            .retain(|(_, l)| l.conn.is_some() || !l.outbox.is_empty());
        for node in lost {
            let link = &mut ll.links[node as usize];
            link.outbox.clear();
            for f in link.inflight.drain(..) {
                ll.completions.push((
                    f.client,
                    f.id,
                    unreachable_replies(&format!("#{node}"), f.requests),
                ));
            }
        }
        // Replies to a split command's parts go to its gather, not to the client.
        let done = std::mem::take(&mut ll.completions);
        let mut out = Vec::with_capacity(done.len());
        for (client, id, replies) in done {
            match ll.parts.remove(&id) {
                Some((gather, part)) => complete_part(ll, gather, part, replies),
                None => out.push((client, id, replies)),
            }
        }
        out.append(&mut ll.completions);
        out
    }
}

impl Forwarding {
    /// Writes one link's outbox, connecting it first if needed; false when it cannot
    /// connect.
    fn flush_link(
        &self,
        conns: &mut Conns<'_, Conn>,
        link: &mut Link,
        node: u16,
        addr_of: impl FnOnce() -> Option<SocketAddr>,
        new_conn: &impl Fn(u16, Initiator, SocketAddr) -> Conn,
    ) -> bool {
        if link.outbox.is_empty() {
            return true;
        }
        match link.conn {
            None => {
                let Some(addr) = addr_of() else {
                    return false;
                };
                let mut hello = Vec::new();
                let Ok(initiator) = Initiator::start(&self.my_name, self.auth.clone(), &mut hello)
                else {
                    return false;
                };
                match conns.connect(addr, new_conn(node, initiator, addr)) {
                    Ok(r) => {
                        if let Some(c) = conns.get(r) {
                            c.out.extend_from_slice(&hello);
                            c.state.session.conn = r;
                        }
                        link.conn = Some(r);
                        link.ready = false;
                    }
                    Err(_) => return false,
                }
            }
            Some(r) if link.ready => {
                if let Some(c) = conns.get(r) {
                    c.out.extend_from_slice(&link.outbox);
                    link.outbox.clear();
                }
            }
            Some(_) => {} // still shaking hands
        }
        true
    }

    /// A stranger's link closed.
    pub fn stranger_lost(&self, loop_index: usize, conn: ConnRef) {
        let mut ll = self.loops[loop_index].lock();
        ll.strangers.retain(|(_, l)| l.conn != Some(conn));
    }
}

/// Records a part's reply; when it was the last, the combined reply becomes a completion.
fn complete_part(ll: &mut LoopLinks, gather: u64, part: usize, reply: Vec<u8>) {
    let Some(g) = ll.gathers.get_mut(&gather) else {
        return;
    };
    g.replies[part] = Some(reply);
    if g.replies.iter().any(Option::is_none) {
        return;
    }
    let g = ll.gathers.remove(&gather).expect("present above");
    let combined = combine(&g);
    ll.completions.push((g.client, gather, combined));
}

/// The reply of a split command from its parts' replies.
fn combine(g: &GatherState) -> Vec<u8> {
    use dse_proto::{Reply, Resp};
    let parts: Vec<&[u8]> = g
        .replies
        .iter()
        .map(|r| r.as_deref().unwrap_or(b""))
        .collect();
    // An error in any part is the command's error (the first one, in part order).
    for p in &parts {
        if p.first() == Some(&b'-') {
            return p.to_vec();
        }
    }
    let resp = if g.resp3 { Resp::V3 } else { Resp::V2 };
    let mut out = Vec::new();
    match g.kind {
        Gather::AllOk => Reply::new(&mut out, resp).ok(),
        Gather::Sum => {
            let total: i64 = parts
                .iter()
                .map(|p| {
                    std::str::from_utf8(p.get(1..p.len().saturating_sub(2)).unwrap_or(b""))
                        .ok()
                        .and_then(|t| t.parse::<i64>().ok())
                        .unwrap_or(0)
                })
                .sum();
            Reply::new(&mut out, resp).int(total);
        }
        Gather::Values => {
            let total: usize = g.keys.iter().map(Vec::len).sum();
            let mut values: Vec<&[u8]> = vec![b"$-1\r\n"; total];
            for (part, reply) in parts.iter().enumerate() {
                // Skip the array header, then one framed value per key of the part.
                let Some(nl) = reply.iter().position(|&c| c == b'\n') else {
                    continue;
                };
                let mut at = nl + 1;
                for &key in &g.keys[part] {
                    let Ok(Some(len)) = dse_proto::ReplyParser::frame_len(&reply[at..]) else {
                        break;
                    };
                    values[key] = &reply[at..at + len];
                    at += len;
                }
            }
            Reply::new(&mut out, resp).array(total);
            for v in values {
                out.extend_from_slice(v);
            }
        }
    }
    out
}

fn close_open(ll: &mut LoopLinks) {
    if let Some(open) = ll.open.take() {
        let outbox = &mut ll.links[open.node as usize].outbox;
        // A frame over 4 GiB cannot exist: the query buffer limit comes first.
        let _ = open.frame.finish(outbox);
    }
}

/// Appends `args` as a RESP multibulk request.
pub fn encode_request(out: &mut Vec<u8>, args: &Args<'_>) {
    let mut b = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(b.format(args.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args.iter() {
        out.push(b'$');
        out.extend_from_slice(b.format(a.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

impl BusConn {
    pub fn outbound(peer: u16, handshake: Initiator, addr: SocketAddr) -> BusConn {
        BusConn {
            peer: None,
            peer_name: String::new(),
            decoder: Decoder::new(HANDSHAKE_MAX_FRAME),
            side: Side::Outbound { peer, handshake },
            addr,
            repl: false,
            sender: false,
        }
    }

    /// The connection a replica opens to its primary `peer` for the replication stream.
    pub fn replication(peer: u16, handshake: Initiator, addr: SocketAddr) -> BusConn {
        BusConn {
            repl: true,
            ..BusConn::outbound(peer, handshake, addr)
        }
    }

    pub fn inbound(handshake: Acceptor, addr: SocketAddr) -> BusConn {
        BusConn {
            peer: None,
            peer_name: String::new(),
            decoder: Decoder::new(HANDSHAKE_MAX_FRAME),
            side: Side::Inbound {
                handshake: Some(handshake),
            },
            addr,
            repl: false,
            sender: false,
        }
    }

    /// Feeds a handshake frame; `Ok(Some(peer name))` once authenticated.
    pub fn handshake(
        &mut self,
        frame: &Frame<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Option<String>, String> {
        let step = match &mut self.side {
            Side::Outbound { handshake, .. } => handshake.receive(frame, out),
            Side::Inbound { handshake } => match handshake {
                Some(h) => h.receive(frame, out),
                None => return Err("a handshake frame after the handshake".into()),
            },
        };
        match step {
            Step::Pending => Ok(None),
            Step::Authenticated { peer } => {
                if let Side::Inbound { handshake } = &mut self.side {
                    *handshake = None;
                }
                self.decoder.set_max_frame(DEFAULT_MAX_FRAME);
                Ok(Some(peer))
            }
            Step::Rejected { reason } => Err(reason),
        }
    }

    pub fn authenticated(&self) -> bool {
        !self.peer_name.is_empty()
    }
}

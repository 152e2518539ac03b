//! The network handler: turns bytes into commands and commands into replies, inline on
//! the connection's event loop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use dse_net::{Close, ConnInfo, Conns, Cx, Handler, Io};
use dse_proto::{Args, Limits, ParseOutcome, Reply, RequestParser, Resp};

use crate::clients::ClientMeta;
use crate::command::Ctx;
use crate::server::{Msg, Server, bump, unix_ms};
use crate::session::{Conn, Framing, Session};

pub struct Service {
    pub srv: Arc<Server>,
}

impl Service {
    fn limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.srv.runtime.proto_max_bulk_len.load(Ordering::Relaxed) as usize,
            ..Limits::default()
        }
    }

    /// Runs one command and writes its reply.
    fn execute(
        &self,
        loop_index: usize,
        session: &mut Session,
        reply: &mut Reply<'_>,
        args: Args<'_>,
        now: u64,
        clock: &mut Instant,
    ) {
        let srv = &*self.srv;
        let stats = &srv.stats.loops[loop_index];
        let idx = match srv.table.resolve(&args) {
            Ok(idx) => idx,
            Err(e) => {
                let msg = e.message();
                reply.error(&msg);
                srv.stats.record_error(loop_index, &msg);
                return;
            }
        };
        let spec = srv.table.specs[idx];
        let mut ctx = Ctx {
            srv,
            sess: session,
            out: reply,
            now,
            cmd: idx,
            loop_index,
        };
        let result = (spec.handler)(&mut ctx, args);
        let cmd_stats = &stats.cmd[idx];
        if let Err(e) = result {
            let msg = e.message();
            reply.error(&msg);
            srv.stats.record_error(loop_index, &msg);
            bump(&cmd_stats.failed, 1);
        }
        let end = Instant::now();
        bump(&cmd_stats.calls, 1);
        bump(
            &cmd_stats.usec,
            end.duration_since(*clock).as_micros() as u64,
        );
        bump(&stats.commands, 1);
        *clock = end;
        session.meta.last_cmd.store(idx as u32, Ordering::Relaxed);
        session.meta.last_active_ms.store(now, Ordering::Relaxed);
    }
}

impl Handler for Service {
    type Conn = Conn;
    type Msg = Msg;

    fn open(&self, _cx: &mut Cx<'_, Msg>, info: &ConnInfo) -> Conn {
        let meta = Arc::new(ClientMeta::new(
            info.conn,
            info.peer.to_string(),
            info.local.to_string(),
            unix_ms(),
        ));
        self.srv.clients.add(meta.clone());
        Conn {
            framing: Framing {
                parser: RequestParser::new(self.limits()),
                ranges: Vec::new(),
                limits_gen: self.srv.runtime.limits_gen.load(Ordering::Relaxed),
            },
            session: Session {
                conn: info.conn,
                resp: Resp::V2,
                meta,
                close_after_reply: false,
            },
        }
    }

    fn data(&self, cx: &mut Cx<'_, Msg>, conn: &mut Conn, io: &mut Io<'_>) {
        let Conn { framing, session } = conn;
        let generation = self.srv.runtime.limits_gen.load(Ordering::Relaxed);
        if framing.limits_gen != generation {
            framing.limits_gen = generation;
            framing.parser.set_limits(self.limits());
        }
        let input = io.input;
        let out_limit = io.out_limit();
        let now = unix_ms();
        let mut clock = Instant::now();
        let mut off = 0;
        let mut reply = Reply::new(&mut *io.out, session.resp);
        while reply.len() <= out_limit {
            match framing.parser.parse(&input[off..], &mut framing.ranges) {
                Ok(ParseOutcome::Complete { consumed }) => {
                    let args = framing.parser.args(&input[off..], &framing.ranges);
                    self.execute(cx.loop_index, session, &mut reply, args, now, &mut clock);
                    off += consumed;
                    if session.close_after_reply {
                        io.close = Close::AfterFlush;
                        break;
                    }
                }
                Ok(ParseOutcome::Empty { consumed }) => off += consumed,
                Ok(ParseOutcome::Incomplete { want }) => {
                    io.want = want;
                    break;
                }
                Err(e) => {
                    let msg = e.reply_text();
                    reply.error_bytes(&msg);
                    self.srv
                        .stats
                        .record_error(cx.loop_index, &String::from_utf8_lossy(&msg));
                    io.close = Close::AfterFlush;
                    break;
                }
            }
        }
        io.consumed = off;
        if off == input.len() {
            framing.parser.trim(&mut framing.ranges);
        }
        session
            .meta
            .qbuf
            .store((input.len() - off) as u64, Ordering::Relaxed);
    }

    fn closed(&self, _cx: &mut Cx<'_, Msg>, conn: &mut Conn) {
        self.srv.clients.remove(conn.session.id());
    }

    fn message(&self, _cx: &mut Cx<'_, Msg>, conns: &mut Conns<'_, Conn>, msg: Msg) {
        match msg {
            Msg::Kill(r) => conns.close(r, Close::Now),
        }
    }

    fn tick(&self, cx: &mut Cx<'_, Msg>, conns: &mut Conns<'_, Conn>) {
        let srv = &*self.srv;
        let now = unix_ms();
        if srv.runtime.active_expire.load(Ordering::Relaxed) {
            // Each loop expires its own slice of the shards.
            let n = srv.store.shard_count();
            let loops = cx.loops.len();
            let per = n.div_ceil(loops);
            let start = (cx.loop_index * per).min(n);
            let end = (start + per).min(n);
            srv.store
                .active_expire(start..end, now, 16, now ^ (cx.loop_index as u64) << 32);
        }
        let timeout = srv.runtime.timeout.load(Ordering::Relaxed);
        if timeout > 0 {
            let mut idle = Vec::new();
            conns.for_each(|r, c| {
                let last = c.session.meta.last_active_ms.load(Ordering::Relaxed);
                if now.saturating_sub(last) > timeout * 1000 {
                    idle.push(r);
                }
            });
            for r in idle {
                conns.close(r, Close::Now);
            }
        }
        if cx.loop_index == 0 {
            let total = srv.stats.total(|l| &l.commands);
            let mut samples = srv.stats.ops_samples.lock();
            samples.push_back((Instant::now(), total));
            while samples.len() > 16 {
                samples.pop_front();
            }
        }
    }
}

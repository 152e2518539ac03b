//! Connection commands: PING, ECHO, HELLO, AUTH, SELECT, QUIT, RESET.

use std::sync::atomic::Ordering;

use dse_proto::{Args, Resp};

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};
use crate::server::REDIS_VERSION;

pub const COMMANDS: &[CommandSpec] = &[
    cmd("ping", -1, FAST | STALE | LOADING, ping).doc(
        "connection",
        "1.0.0",
        "O(1)",
        "Returns the server's liveliness response.",
    ),
    cmd("echo", 2, FAST | STALE | LOADING, echo).doc(
        "connection",
        "1.0.0",
        "O(1)",
        "Returns the given string.",
    ),
    cmd(
        "hello",
        -1,
        FAST | NO_AUTH | STALE | LOADING | NOSCRIPT,
        hello,
    )
    .doc(
        "connection",
        "6.0.0",
        "O(1)",
        "Handshakes with the server: protocol version, authentication, client name.",
    ),
    cmd(
        "auth",
        -2,
        FAST | NO_AUTH | STALE | LOADING | NOSCRIPT,
        auth,
    )
    .doc(
        "connection",
        "1.0.0",
        "O(N) where N is the number of passwords defined for the user",
        "Authenticates the connection.",
    ),
    cmd("select", 2, FAST | STALE | LOADING, select).doc(
        "connection",
        "1.0.0",
        "O(1)",
        "Changes the selected database (only database 0 exists).",
    ),
    cmd(
        "quit",
        -1,
        FAST | NO_AUTH | STALE | LOADING | ALLOW_BUSY,
        quit,
    )
    .doc("connection", "1.0.0", "O(1)", "Closes the connection."),
    cmd(
        "reset",
        1,
        FAST | NO_AUTH | STALE | LOADING | NOSCRIPT,
        reset,
    )
    .doc("connection", "6.2.0", "O(1)", "Resets the connection."),
];

/// `PING [message]` → `+PONG`, or the message as a bulk string.
fn ping(ctx: &mut Ctx, a: Args) -> CmdResult {
    match a.len() {
        1 => ctx.out.simple("PONG"),
        2 => ctx.out.bulk(&a[1]),
        _ => return Err(CmdError::Arity("ping".into())),
    }
    Ok(())
}

/// `ECHO message` → the message.
fn echo(ctx: &mut Ctx, a: Args) -> CmdResult {
    ctx.out.bulk(&a[1]);
    Ok(())
}

/// Redis 7's reply to AUTH when no password is configured.
const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// `AUTH [username] password`. There is no password: the default user has `nopass`, so
/// `AUTH default <anything>` succeeds and the one-argument form gets Redis's error.
fn auth(ctx: &mut Ctx, a: Args) -> CmdResult {
    match a.len() {
        2 => Err(CmdError::Static(NO_PASSWORD)),
        3 if args::is(&a[1], "default") => {
            ctx.out.ok();
            Ok(())
        }
        3 => Err(CmdError::Static(WRONGPASS)),
        _ => Err(CmdError::Syntax),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]` → a map describing
/// the server, in the protocol just chosen.
fn hello(ctx: &mut Ctx, a: Args) -> CmdResult {
    let mut resp = ctx.sess.resp;
    let mut i = 1;
    if a.len() > 1 {
        let v = args::int(&a[1]).map_err(|_| {
            CmdError::Static("ERR Protocol version is not an integer or out of range")
        })?;
        resp = match v {
            2 => Resp::V2,
            3 => Resp::V3,
            _ => return Err(CmdError::Static("NOPROTO unsupported protocol version")),
        };
        i = 2;
    }
    let mut setname = None;
    while i < a.len() {
        let more = a.len() - i - 1;
        if args::is(&a[i], "auth") && more >= 2 {
            if !args::is(&a[i + 1], "default") {
                return Err(CmdError::Static(WRONGPASS));
            }
            i += 3;
        } else if args::is(&a[i], "setname") && more >= 1 {
            let name = &a[i + 1];
            super::client::validate_name(name)?;
            setname = Some(name.to_vec());
            i += 2;
        } else {
            return Err(CmdError::Owned(format!(
                "ERR Syntax error in HELLO option '{}'",
                args::text(&a[i])
            )));
        }
    }
    if let Some(name) = setname {
        ctx.sess.meta.names.lock().name = name;
    }
    ctx.sess.resp = resp;
    ctx.sess
        .meta
        .resp
        .store(if resp == Resp::V3 { 3 } else { 2 }, Ordering::Relaxed);
    ctx.out.set_resp(resp);
    let out = &mut *ctx.out;
    out.map(7);
    out.bulk_str("server");
    out.bulk_str("redis");
    out.bulk_str("version");
    out.bulk_str(REDIS_VERSION);
    out.bulk_str("proto");
    out.int(if resp == Resp::V3 { 3 } else { 2 });
    out.bulk_str("id");
    out.int(ctx.sess.id() as i64);
    out.bulk_str("mode");
    out.bulk_str("standalone");
    out.bulk_str("role");
    out.bulk_str("master");
    out.bulk_str("modules");
    out.array(0);
    Ok(())
}

/// `SELECT index`: only database 0 exists (`databases` is 1).
fn select(ctx: &mut Ctx, a: Args) -> CmdResult {
    let idx = args::int(&a[1])?;
    if idx != 0 && ctx.srv.cluster.is_some() {
        return Err(CmdError::Static(
            "ERR SELECT is not allowed in cluster mode",
        ));
    }
    if idx != 0 {
        return Err(CmdError::Static("ERR DB index is out of range"));
    }
    ctx.out.ok();
    Ok(())
}

/// `QUIT`: `+OK`, then the connection closes.
fn quit(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.out.ok();
    ctx.sess.close_after_reply = true;
    Ok(())
}

/// `RESET`: back to a new connection's state (RESP2, no name) → `+RESET`.
fn reset(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.sess.reset();
    ctx.out.set_resp(Resp::V2);
    ctx.out.simple("RESET");
    Ok(())
}

//! CLIENT: connection introspection and control.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use dse_proto::Args;

use crate::args;
use crate::clients::{ClientKind, ClientMeta};
use crate::cmd::introspection::reply_help;
use crate::cmd::slowlog::subcommand_syntax;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};
use crate::server::Msg;

const SUBCOMMANDS: &[CommandSpec] = &[
    cmd("id", 2, NOSCRIPT | LOADING | STALE, client_id).doc(
        "connection",
        "5.0.0",
        "O(1)",
        "Returns the unique client ID of the connection.",
    ),
    cmd("setname", 3, NOSCRIPT | LOADING | STALE, client_setname).doc(
        "connection",
        "2.6.9",
        "O(1)",
        "Sets the connection name.",
    ),
    cmd("getname", 2, NOSCRIPT | LOADING | STALE, client_getname).doc(
        "connection",
        "2.6.9",
        "O(1)",
        "Returns the name of the connection.",
    ),
    cmd("list", -2, ADMIN | NOSCRIPT | LOADING | STALE, client_list).doc(
        "connection",
        "2.4.0",
        "O(N) where N is the number of client connections",
        "Lists open connections.",
    ),
    cmd("info", 2, NOSCRIPT | LOADING | STALE, client_info).doc(
        "connection",
        "6.2.0",
        "O(1)",
        "Returns information about the connection.",
    ),
    cmd("kill", -3, ADMIN | NOSCRIPT | LOADING | STALE, client_kill).doc(
        "connection",
        "2.4.0",
        "O(N) where N is the number of client connections",
        "Terminates open connections.",
    ),
    cmd("setinfo", 4, NOSCRIPT | LOADING | STALE, client_setinfo).doc(
        "connection",
        "7.2.0",
        "O(1)",
        "Sets information specific to the client or connection.",
    ),
    cmd(
        "no-evict",
        3,
        ADMIN | NOSCRIPT | LOADING | STALE,
        client_no_evict,
    )
    .doc(
        "connection",
        "7.0.0",
        "O(1)",
        "Sets the client eviction mode of the connection.",
    ),
    cmd("no-touch", 3, NOSCRIPT | LOADING | STALE, client_no_touch).doc(
        "connection",
        "7.2.0",
        "O(1)",
        "Controls whether commands sent by the client affect the LRU/LFU of accessed keys.",
    ),
    cmd(
        "pause",
        -3,
        ADMIN | NOSCRIPT | LOADING | STALE,
        client_pause,
    )
    .doc(
        "connection",
        "3.0.0",
        "O(1)",
        "Suspends commands processing.",
    ),
    cmd(
        "unpause",
        2,
        ADMIN | NOSCRIPT | LOADING | STALE,
        client_unpause,
    )
    .doc(
        "connection",
        "6.2.0",
        "O(N) Where N is the number of paused clients",
        "Resumes processing commands from paused clients.",
    ),
    cmd(
        "unblock",
        -3,
        ADMIN | NOSCRIPT | LOADING | STALE,
        client_unblock,
    )
    .doc(
        "connection",
        "5.0.0",
        "O(log N) where N is the number of client connections",
        "Unblocks a client blocked by a blocking command from a different connection.",
    ),
    cmd("reply", 3, NOSCRIPT | LOADING | STALE, client_reply).doc(
        "connection",
        "3.2.0",
        "O(1)",
        "Instructs the server whether to reply to commands.",
    ),
    cmd("help", 2, LOADING | STALE, client_help).doc(
        "connection",
        "5.0.0",
        "O(1)",
        "Returns helpful text about the different subcommands.",
    ),
];

pub const COMMANDS: &[CommandSpec] = &[cmd("client", -2, 0, client_container)
    .doc(
        "connection",
        "2.4.0",
        "Depends on subcommand.",
        "A container for client connection commands.",
    )
    .subs(SUBCOMMANDS)];

/// `CLIENT` alone never gets here: the table answers it with an arity error and runs
/// the subcommands' own handlers.
fn client_container(_ctx: &mut Ctx, _a: Args) -> CmdResult {
    Err(CmdError::Arity("client".into()))
}

/// `CLIENT ID` → the connection's id (an integer).
fn client_id(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.out.int(ctx.sess.id() as i64);
    Ok(())
}

/// `CLIENT SETNAME name` → `OK`; an empty name removes the name.
fn client_setname(ctx: &mut Ctx, a: Args) -> CmdResult {
    validate_name(&a[2])?;
    ctx.sess.meta.names.lock().name = a[2].to_vec();
    ctx.out.ok();
    Ok(())
}

/// `CLIENT GETNAME` → the name, or nil when none is set.
fn client_getname(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let names = ctx.sess.meta.names.lock();
    if names.name.is_empty() {
        ctx.out.null();
    } else {
        ctx.out.bulk(&names.name);
    }
    Ok(())
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value` → `OK`; an empty value clears the field.
fn client_setinfo(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (attr, value) = (&a[2], &a[3]);
    let lib_name = args::is(attr, "lib-name");
    if !lib_name && !args::is(attr, "lib-ver") {
        return Err(CmdError::Owned(format!(
            "ERR Unrecognized option '{}'",
            args::text(attr)
        )));
    }
    if !is_printable_token(value) {
        return Err(CmdError::Owned(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            args::text(attr)
        )));
    }
    let mut names = ctx.sess.meta.names.lock();
    let field = if lib_name {
        &mut names.lib_name
    } else {
        &mut names.lib_ver
    };
    *field = value.to_vec();
    drop(names);
    ctx.out.ok();
    Ok(())
}

/// `CLIENT NO-EVICT ON|OFF` → `OK`.
fn client_no_evict(ctx: &mut Ctx, a: Args) -> CmdResult {
    let on = on_off(&a[2])?;
    ctx.sess.meta.no_evict.store(on, Ordering::Relaxed);
    ctx.out.ok();
    Ok(())
}

/// `CLIENT NO-TOUCH ON|OFF` → `OK`.
fn client_no_touch(ctx: &mut Ctx, a: Args) -> CmdResult {
    let on = on_off(&a[2])?;
    ctx.sess.meta.no_touch.store(on, Ordering::Relaxed);
    ctx.out.ok();
    Ok(())
}

fn on_off(a: &[u8]) -> Result<bool, CmdError> {
    if args::is(a, "on") {
        Ok(true)
    } else if args::is(a, "off") {
        Ok(false)
    } else {
        Err(CmdError::Syntax)
    }
}

/// `CLIENT PAUSE timeout [WRITE|ALL]` → `OK`: for `timeout` milliseconds, the commands
/// of every client (ALL, the default) or only those that write wait; a later pause keeps
/// the later end.
fn client_pause(ctx: &mut Ctx, a: Args) -> CmdResult {
    if a.len() > 4 {
        return Err(subcommand_syntax(&a));
    }
    let all = match a.get(3) {
        None => true,
        Some(m) if args::is(m, "write") => false,
        Some(m) if args::is(m, "all") => true,
        Some(_) => {
            return Err(CmdError::Static(
                "ERR CLIENT PAUSE mode must be WRITE or ALL",
            ));
        }
    };
    let ms = args::int(&a[2])
        .map_err(|_| CmdError::Static("ERR timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(CmdError::Static("ERR timeout is negative"));
    }
    let now = ctx.now;
    if ms > i64::MAX - now as i64 {
        return Err(CmdError::Static("ERR timeout is out of range"));
    }
    let end = if ms == 0 { 0 } else { now + ms as u64 };
    ctx.srv.blocking.pause(ctx.srv, end, all, now);
    ctx.out.ok();
    Ok(())
}

/// `CLIENT UNPAUSE` → `OK`: ends a CLIENT PAUSE; the commands it held run.
fn client_unpause(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.srv.blocking.unpause(ctx.srv);
    ctx.out.ok();
    Ok(())
}

/// `CLIENT UNBLOCK client-id [TIMEOUT|ERROR]` → 1 when that client was blocked on keys
/// (it then gets its timeout reply, or with ERROR `-UNBLOCKED`), 0 otherwise.
fn client_unblock(ctx: &mut Ctx, a: Args) -> CmdResult {
    if a.len() > 4 {
        return Err(subcommand_syntax(&a));
    }
    let error = match a.get(3) {
        None => false,
        Some(r) if args::is(r, "timeout") => false,
        Some(r) if args::is(r, "error") => true,
        Some(_) => {
            return Err(CmdError::Static(
                "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
            ));
        }
    };
    let id = args::int(&a[2])?;
    let unblocked =
        u64::try_from(id).is_ok_and(|id| crate::blocked::unblock_client(ctx.srv, id, error));
    ctx.out.int(unblocked as i64);
    Ok(())
}

/// `CLIENT REPLY ON|OFF|SKIP` → `OK` for ON; OFF drops the replies of the commands that
/// follow (its own too), SKIP those of itself and the next command.
fn client_reply(ctx: &mut Ctx, a: Args) -> CmdResult {
    let mode = &mut ctx.sess.reply_mode;
    if args::is(&a[2], "on") {
        mode.off = false;
        mode.skip = false;
        ctx.out.ok();
    } else if args::is(&a[2], "off") {
        mode.off = true;
    } else if args::is(&a[2], "skip") {
        if !mode.off {
            mode.skip_next = true;
        }
    } else {
        return Err(CmdError::Syntax);
    }
    Ok(())
}

/// `CLIENT INFO` → this connection's CLIENT LIST line (a verbatim string in RESP3).
fn client_info(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let meta = ctx.sess.meta.clone();
    let mut text = describe(ctx, &meta);
    text.push('\n');
    ctx.out.verbatim(text.as_bytes());
    Ok(())
}

/// `CLIENT LIST [TYPE normal|master|replica|pubsub] | [ID id [id ...]]` → one line per
/// client (a verbatim string in RESP3).
fn client_list(ctx: &mut Ctx, a: Args) -> CmdResult {
    let clients: Vec<Arc<ClientMeta>> = if a.len() == 4 && args::is(&a[2], "type") {
        let kind = client_kind(&a[3])?;
        let mut all = ctx.srv.clients.all();
        all.retain(|m| m.kind() == kind);
        all
    } else if a.len() > 3 && args::is(&a[2], "id") {
        let mut found = Vec::new();
        for id in a.iter().skip(3) {
            let id = args::int(id).map_err(|_| CmdError::Static("ERR Invalid client ID"))?;
            if let Some(m) = u64::try_from(id)
                .ok()
                .and_then(|id| ctx.srv.clients.get(id))
            {
                found.push(m);
            }
        }
        found
    } else if a.len() == 2 {
        ctx.srv.clients.all()
    } else {
        return Err(CmdError::Syntax);
    };
    let mut text = String::with_capacity(clients.len() * 320);
    for m in &clients {
        text.push_str(&describe(ctx, m));
        text.push('\n');
    }
    ctx.out.verbatim(text.as_bytes());
    Ok(())
}

fn client_kind(name: &[u8]) -> Result<ClientKind, CmdError> {
    ClientKind::parse(name)
        .ok_or_else(|| CmdError::Owned(format!("ERR Unknown client type '{}'", args::text(name))))
}

/// A CLIENT LIST line. For the caller, `cmd` is the command running now and `idle` is
/// 0, as in Redis, which records both before running a command.
fn describe(ctx: &Ctx, meta: &ClientMeta) -> String {
    let table = &ctx.srv.table;
    if meta.id == ctx.sess.id() {
        meta.last_active_ms.store(ctx.now, Ordering::Relaxed);
        return meta.describe(ctx.now, &table.full_names[ctx.cmd]);
    }
    let last = meta.last_cmd.load(Ordering::Relaxed) as usize;
    let name = table.full_names.get(last).map_or("NULL", String::as_str);
    meta.describe(ctx.now, name)
}

/// Which clients a CLIENT KILL closes.
#[derive(Default)]
struct KillFilter<'a> {
    addr: Option<&'a [u8]>,
    laddr: Option<&'a [u8]>,
    kind: Option<ClientKind>,
    id: Option<u64>,
    max_age: Option<u64>,
    skip_me: bool,
}

impl KillFilter<'_> {
    fn matches(&self, m: &ClientMeta, me: u64, now_ms: u64) -> bool {
        self.addr.is_none_or(|a| a == m.addr.as_bytes())
            && self.laddr.is_none_or(|a| a == m.laddr.as_bytes())
            && self.kind.is_none_or(|k| k == m.kind())
            && self.id.is_none_or(|id| id == m.id)
            && self.max_age.is_none_or(|age| m.age_secs(now_ms) >= age)
            && !(self.skip_me && m.id == me)
    }
}

/// `CLIENT KILL ip:port` → `OK`, or `ERR No such client`.
/// `CLIENT KILL [ID id] [TYPE type] [USER user] [ADDR ip:port] [LADDR ip:port]
/// [SKIPME yes|no] [MAXAGE secs]` → the number of clients killed.
///
/// A client on any loop is closed by a message to its loop; it leaves the registry at
/// once, so a CLIENT LIST right after no longer shows it. The caller, when it matches,
/// gets its reply first and is closed after it.
fn client_kill(ctx: &mut Ctx, a: Args) -> CmdResult {
    let old_form = a.len() == 3;
    let mut filter = KillFilter {
        skip_me: true,
        ..KillFilter::default()
    };
    if old_form {
        filter.addr = Some(&a[2]);
        // With the old form a client may kill itself.
        filter.skip_me = false;
    } else {
        let mut i = 2;
        while i < a.len() {
            let (opt, Some(val)) = (&a[i], a.get(i + 1)) else {
                return Err(CmdError::Syntax);
            };
            if args::is(opt, "id") {
                let id = args::int(val)
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or(CmdError::Static("ERR client-id should be greater than 0"))?;
                filter.id = Some(id as u64);
            } else if args::is(opt, "maxage") {
                let age = args::int(val).map_err(|_| {
                    CmdError::Static("ERR maxage is not an integer or out of range")
                })?;
                if age <= 0 {
                    return Err(CmdError::Static("ERR maxage should be greater than 0"));
                }
                filter.max_age = Some(age as u64);
            } else if args::is(opt, "type") {
                filter.kind = Some(client_kind(val)?);
            } else if args::is(opt, "addr") {
                filter.addr = Some(val);
            } else if args::is(opt, "laddr") {
                filter.laddr = Some(val);
            } else if args::is(opt, "user") {
                // Every connection runs as the default user, the only one there is.
                if val != b"default" {
                    return Err(CmdError::Owned(format!(
                        "ERR No such user '{}'",
                        args::text(val)
                    )));
                }
            } else if args::is(opt, "skipme") {
                filter.skip_me = if args::is(val, "yes") {
                    true
                } else if args::is(val, "no") {
                    false
                } else {
                    return Err(CmdError::Syntax);
                };
            } else {
                return Err(CmdError::Syntax);
            }
            i += 2;
        }
    }

    let me = ctx.sess.id();
    let mut killed = 0i64;
    let mut kill_me = false;
    for m in ctx.srv.clients.all() {
        if !filter.matches(&m, me, ctx.now) {
            continue;
        }
        killed += 1;
        if m.id == me {
            kill_me = true;
        } else {
            ctx.srv.clients.remove(m.id);
            m.killed.store(true, Ordering::SeqCst);
            let at = m.conn().loop_index as usize;
            ctx.srv.send(at, Msg::Kill(m));
        }
    }
    if old_form {
        if killed == 0 {
            return Err(CmdError::Static("ERR No such client"));
        }
        ctx.out.ok();
    } else {
        ctx.out.int(killed);
    }
    if kill_me {
        ctx.sess.close_after_reply = true;
    }
    Ok(())
}

const HELP: &[&str] = &[
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "    * MAXAGE <maxage>",
    "      Kill connections older than the specified age.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
];

/// `CLIENT HELP` → the subcommands, one status line each.
fn client_help(ctx: &mut Ctx, _a: Args) -> CmdResult {
    reply_help(ctx.out, "CLIENT", HELP);
    Ok(())
}

/// Names and library attributes end up in space-separated CLIENT LIST lines, so they are
/// limited to printable ASCII without spaces (Redis's `validateClientAttr`).
fn is_printable_token(s: &[u8]) -> bool {
    s.iter().all(|c| (b'!'..=b'~').contains(c))
}

/// Client names may not contain spaces, newlines or other special characters.
pub fn validate_name(name: &[u8]) -> Result<(), crate::command::CmdError> {
    if !is_printable_token(name) {
        return Err(crate::command::CmdError::Static(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

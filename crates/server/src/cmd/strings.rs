//! String commands.

use dse_engine::{Expiry, Value};
use dse_proto::Args;

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("get", 2, READONLY | FAST, get)
        .keys(1, 1, 1)
        .doc("string", "1.0.0", "O(1)", "Returns the string value of a key."),
    cmd("set", -3, WRITE | DENYOOM, set)
        .keys(1, 1, 1)
        .key_flags(&["RW", "access", "update", "variable_flags"])
        .doc(
            "string",
            "1.0.0",
            "O(1)",
            "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
        ),
];

/// Writes a string value as a bulk reply; `WRONGTYPE` for other types.
pub fn reply_string(ctx: &mut Ctx, v: &Value) -> CmdResult {
    match v {
        Value::Str(s) => ctx.out.bulk(s),
        Value::Int(n) => ctx.out.bulk_int(*n),
        _ => return Err(CmdError::WrongType),
    }
    Ok(())
}

/// `GET key` → the value, or nil.
fn get(ctx: &mut Ctx, a: Args) -> CmdResult {
    let key = &a[1];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    match shard.get(key, h, ctx.now) {
        None => {
            ctx.lookup_stat(false);
            ctx.out.null();
            Ok(())
        }
        Some(e) => {
            ctx.lookup_stat(true);
            reply_string(ctx, e.value())
        }
    }
}

/// An absolute deadline from an EX/PX/EXAT/PXAT argument, or Redis's error.
pub fn deadline(ctx: &Ctx, unit: &[u8], arg: &[u8], cmd_name: &str) -> Result<u64, CmdError> {
    let n = args::int(arg)?;
    let invalid = || CmdError::Owned(format!("ERR invalid expire time in '{cmd_name}' command"));
    if n <= 0 {
        return Err(invalid());
    }
    let now = ctx.now as i64;
    let at = if args::is(unit, "ex") {
        n.checked_mul(1000).and_then(|ms| ms.checked_add(now))
    } else if args::is(unit, "px") {
        n.checked_add(now)
    } else if args::is(unit, "exat") {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    match at {
        Some(at) if at > 0 => Ok(at as u64),
        _ => Err(invalid()),
    }
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts-ms|KEEPTTL]`, and the seed's
/// `SET key value ttl_ms`. → `OK`; nil when NX/XX prevented it; with GET, the old value.
fn set(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (key, value) = (&a[1], &a[2]);
    let mut nx = false;
    let mut xx = false;
    let mut want_old = false;
    let mut expiry = Expiry::None;
    let mut expiry_given = false;
    if a.len() == 4 && args::int(&a[3]).is_ok() {
        // The seed's form: a bare number of milliseconds.
        expiry = Expiry::At(deadline(ctx, b"px", &a[3], "set")?);
    } else {
        let mut i = 3;
        while i < a.len() {
            let opt = &a[i];
            if args::is(opt, "nx") && !xx {
                nx = true;
            } else if args::is(opt, "xx") && !nx {
                xx = true;
            } else if args::is(opt, "get") {
                want_old = true;
            } else if args::is(opt, "keepttl") && !expiry_given {
                expiry = Expiry::Keep;
                expiry_given = true;
            } else if ["ex", "px", "exat", "pxat"]
                .iter()
                .any(|u| args::is(opt, u))
                && !expiry_given
                && i + 1 < a.len()
            {
                expiry = Expiry::At(deadline(ctx, opt, &a[i + 1], "set")?);
                expiry_given = true;
                i += 1;
            } else {
                return Err(CmdError::Syntax);
            }
            i += 1;
        }
    }
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let mut shard = store.write(h);
    let mark = ctx.out.len();
    let exists = match shard.lookup(key, h, ctx.now) {
        None => {
            if want_old {
                ctx.out.null();
            }
            false
        }
        Some(e) => {
            if want_old {
                reply_string(ctx, e.value())?;
            }
            true
        }
    };
    if (nx && exists) || (xx && !exists) {
        if !want_old {
            ctx.out.null();
        }
        return Ok(());
    }
    if let Err(e) = shard.put_str(key, h, value, expiry, ctx.now) {
        ctx.out.truncate(mark);
        return Err(e.into());
    }
    if !want_old {
        ctx.out.ok();
    }
    Ok(())
}

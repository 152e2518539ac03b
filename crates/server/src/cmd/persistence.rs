//! Persistence commands: SAVE, BGSAVE, BGREWRITEAOF.

use dse_proto::Args;

use crate::args;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};

pub const COMMANDS: &[CommandSpec] = &[
    cmd("save", 1, ADMIN | NOSCRIPT | NO_MULTI, save).doc(
        "server",
        "1.0.0",
        "O(N) where N is the total number of keys in all databases",
        "Synchronously saves the database(s) to disk.",
    ),
    cmd("bgsave", -1, ADMIN | NOSCRIPT, bgsave).doc(
        "server",
        "1.0.0",
        "O(1)",
        "Asynchronously saves the database(s) to disk.",
    ),
    cmd("bgrewriteaof", 1, ADMIN | NOSCRIPT, bgrewriteaof).doc(
        "server",
        "1.0.0",
        "O(1)",
        "Asynchronously rewrites the append-only file to disk.",
    ),
];

/// `SAVE` → `OK` once a snapshot is on disk. Runs on this event loop, as Redis's SAVE
/// blocks its server; writers elsewhere wait at most for one shard at a time.
fn save(ctx: &mut Ctx, _a: Args) -> CmdResult {
    if ctx.srv.persist.bgsave_in_progress() {
        return Err(CmdError::Static("ERR Background save already in progress"));
    }
    match ctx.srv.persist.snapshot(&ctx.srv.store) {
        Ok(_) => {
            ctx.out.ok();
            Ok(())
        }
        Err(e) => Err(CmdError::Owned(format!("ERR {e}"))),
    }
}

/// `BGSAVE [SCHEDULE]` → `Background saving started`.
fn bgsave(ctx: &mut Ctx, a: Args) -> CmdResult {
    let schedule = match a.len() {
        1 => false,
        2 if args::is(&a[1], "schedule") => true,
        _ => return Err(CmdError::Syntax),
    };
    if ctx.srv.persist.bgsave_in_progress() {
        if schedule {
            ctx.out.simple("Background saving scheduled");
            return Ok(());
        }
        return Err(CmdError::Static("ERR Background save already in progress"));
    }
    ctx.srv
        .persist
        .bgsave(ctx.srv.store.clone())
        .map_err(CmdError::Static)?;
    ctx.out.simple("Background saving started");
    Ok(())
}

/// `BGREWRITEAOF`: the log is compacted by taking a snapshot, after which the segments it
/// covers are deleted.
fn bgrewriteaof(ctx: &mut Ctx, _a: Args) -> CmdResult {
    if !ctx.srv.persist.bgsave_in_progress() {
        ctx.srv
            .persist
            .bgsave(ctx.srv.store.clone())
            .map_err(CmdError::Static)?;
    }
    ctx.out
        .simple("Background append only file rewriting started");
    Ok(())
}

//! MEMORY (USAGE, STATS, DOCTOR, MALLOC-STATS, PURGE), and two small server commands
//! that report on the instance: ROLE and LOLWUT.
//!
//! Memory figures come from the store's own accounting (keys, values and a fixed
//! overhead per entry, the same figure as INFO's `used_memory`) and the process's
//! resident size; the allocator itself is the binary's choice, so the allocator-level
//! statistics Redis reads from jemalloc are not available here.

use std::sync::atomic::Ordering;

use dse_proto::Args;
use rand::Rng;

use crate::args;
use crate::cmd::introspection::reply_help;
use crate::command::{CmdError, CmdResult, CommandSpec, Ctx, cmd, flag::*};
use crate::server::REDIS_VERSION;

pub const COMMANDS: &[CommandSpec] = &[
    cmd("memory", -2, 0, container)
        .doc(
            "server",
            "4.0.0",
            "Depends on subcommand.",
            "A container for memory diagnostics commands.",
        )
        .subs(&[
            cmd("usage", -3, READONLY, memory_usage)
                .keys(2, 2, 1)
                .key_flags(&["RO"])
                .doc(
                    "server",
                    "4.0.0",
                    "O(N) where N is the number of samples.",
                    "Estimates the memory usage of a key.",
                ),
            cmd("stats", 2, 0, memory_stats).doc(
                "server",
                "4.0.0",
                "O(1)",
                "Returns details about memory usage.",
            ),
            cmd("doctor", 2, 0, memory_doctor).doc(
                "server",
                "4.0.0",
                "O(1)",
                "Outputs a memory problems report.",
            ),
            cmd("malloc-stats", 2, 0, memory_malloc_stats).doc(
                "server",
                "4.0.0",
                "Depends on how much memory is allocated, could be slow",
                "Returns the allocator statistics.",
            ),
            cmd("purge", 2, 0, memory_purge).doc(
                "server",
                "4.0.0",
                "Depends on how much memory is allocated, could be slow",
                "Asks the allocator to release memory.",
            ),
            cmd("help", 2, LOADING | STALE, memory_help).doc(
                "server",
                "4.0.0",
                "O(1)",
                "Returns helpful text about the different subcommands.",
            ),
        ]),
    cmd("role", 1, NOSCRIPT | LOADING | STALE | FAST, role).doc(
        "server",
        "2.8.12",
        "O(1)",
        "Returns the replication role.",
    ),
    cmd("lolwut", -1, READONLY | FAST, lolwut).doc(
        "server",
        "5.0.0",
        "",
        "Displays computer art and the Redis version",
    ),
];

fn container(_ctx: &mut Ctx, _a: Args) -> CmdResult {
    Err(CmdError::Arity("memory".into()))
}

/// `MEMORY USAGE key [SAMPLES count]` → the bytes the key and its value take, or nil
/// when the key is missing. The store accounts every value exactly, so SAMPLES (how
/// many elements Redis measures to estimate a collection) is checked and then ignored.
fn memory_usage(ctx: &mut Ctx, a: Args) -> CmdResult {
    let mut j = 3;
    while j < a.len() {
        if args::is(&a[j], "samples") && j + 1 < a.len() {
            if args::int(&a[j + 1])? < 0 {
                return Err(CmdError::Syntax);
            }
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let key = &a[2];
    let store = &ctx.srv.store;
    let h = store.hash(key);
    let shard = store.read(h);
    match shard.peek(key, h, ctx.now) {
        Some(e) => ctx.out.int(e.memory_usage() as i64),
        None => ctx.out.null(),
    }
    Ok(())
}

/// The figures MEMORY STATS and MEMORY DOCTOR work from.
struct Usage {
    used: u64,
    peak: u64,
    rss: u64,
    keys: u64,
}

fn usage(ctx: &Ctx) -> Usage {
    let st = ctx.srv.store.stats();
    let used = st.mem as u64;
    let peak = ctx
        .srv
        .runtime
        .peak_memory
        .fetch_max(used, Ordering::Relaxed)
        .max(used);
    Usage {
        used,
        peak,
        rss: crate::info::rss_bytes(),
        keys: st.keys as u64,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// `MEMORY STATS` → a map of memory figures, with Redis's field names. Everything the
/// store accounts is dataset; the overheads Redis reports separately (client buffers,
/// replication backlog, scripts) are not part of that accounting and read 0.
fn memory_stats(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let u = usage(ctx);
    let out = &mut *ctx.out;
    let with_db = u.keys > 0;
    out.map(if with_db { 28 } else { 27 });
    let int = |out: &mut dse_proto::Reply, name: &str, v: u64| {
        out.bulk_str(name);
        out.int(i64::try_from(v).unwrap_or(i64::MAX));
    };
    int(out, "peak.allocated", u.peak);
    int(out, "total.allocated", u.used);
    int(out, "startup.allocated", 0);
    for name in [
        "replication.backlog",
        "clients.slaves",
        "clients.normal",
        "cluster.links",
        "aof.buffer",
        "lua.caches",
        "functions.caches",
    ] {
        int(out, name, 0);
    }
    if with_db {
        out.bulk_str("db.0");
        out.map(2);
        int(out, "overhead.hashtable.main", 0);
        int(out, "overhead.hashtable.expires", 0);
    }
    int(out, "overhead.total", 0);
    int(out, "keys.count", u.keys);
    int(
        out,
        "keys.bytes-per-key",
        u.used.checked_div(u.keys).unwrap_or(0),
    );
    int(out, "dataset.bytes", u.used);
    out.bulk_str("dataset.percentage");
    out.double(if u.used == 0 { 0.0 } else { 100.0 });
    out.bulk_str("peak.percentage");
    out.double(ratio(u.used * 100, u.peak));
    int(out, "allocator.allocated", u.used);
    int(out, "allocator.active", u.used);
    int(out, "allocator.resident", u.rss);
    out.bulk_str("allocator-fragmentation.ratio");
    out.double(1.0);
    int(out, "allocator-fragmentation.bytes", 0);
    out.bulk_str("allocator-rss.ratio");
    out.double(ratio(u.rss, u.used));
    int(out, "allocator-rss.bytes", u.rss.saturating_sub(u.used));
    out.bulk_str("rss-overhead.ratio");
    out.double(1.0);
    int(out, "rss-overhead.bytes", 0);
    out.bulk_str("fragmentation");
    out.double(ratio(u.rss, u.used));
    int(out, "fragmentation.bytes", u.rss.saturating_sub(u.used));
    Ok(())
}

/// `MEMORY DOCTOR` → a report on memory problems (a verbatim string in RESP3).
fn memory_doctor(ctx: &mut Ctx, _a: Args) -> CmdResult {
    let u = usage(ctx);
    let text = if u.used < 5 << 20 {
        "Hi Sam, this instance is empty or is using very little memory, my issues \
         detector can't be used in these conditions. Please, leave for your mission on \
         Earth and fill it with some data. The new Sam and I will be back to our \
         programming as soon as I finished rebooting.\n"
            .to_string()
    } else if u.peak as f64 > u.used as f64 * 1.5 {
        "Sam, I detected a few issues in this Redis instance memory implants:\n\n \
         * Peak memory: In the past this instance used more than 150% the memory that is \
         currently using. The allocator is normally not able to release memory after a \
         peak, so you can expect to see a big fragmentation ratio, however this is \
         actually harmless and is only due to the memory peak, and if the Redis instance \
         Resident Set Size (RSS) is currently bigger than expected, the memory will be \
         used as soon as you fill the Redis instance with more data. If the memory peak \
         was only occasional and you want to try to reclaim memory, please try the MEMORY \
         PURGE command, otherwise the only other option is to shutdown and restart the \
         instance.\n\nI'm here to keep you safe, Sam. I want to help you.\n"
            .to_string()
    } else {
        "Hi Sam, I can't find any memory issue in your instance. I can only account for \
         what occurs on this base.\n"
            .to_string()
    };
    ctx.out.verbatim(text.as_bytes());
    Ok(())
}

/// `MEMORY MALLOC-STATS` → the allocator's report; Redis's answer for an allocator it
/// cannot query.
fn memory_malloc_stats(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.out
        .verbatim(b"Stats not supported for the current allocator");
    Ok(())
}

/// `MEMORY PURGE` → `OK`. The allocator returns freed memory on its own (the binary
/// sets it to purge at once), so there is nothing to ask it.
fn memory_purge(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.out.ok();
    Ok(())
}

const HELP: &[&str] = &[
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
];

/// `MEMORY HELP` → the subcommands, one status line each.
fn memory_help(ctx: &mut Ctx, _a: Args) -> CmdResult {
    reply_help(ctx.out, "MEMORY", HELP);
    Ok(())
}

/// `ROLE` → `[master, replication offset, [replicas]]`: a standalone server is a master
/// with no replicas.
fn role(ctx: &mut Ctx, _a: Args) -> CmdResult {
    ctx.out.array(3);
    ctx.out.bulk(b"master");
    ctx.out.int(0);
    ctx.out.array(0);
    Ok(())
}

/// `LOLWUT [VERSION version] [...]` → computer art and the version (a verbatim string in
/// RESP3): Georg Nees's Schotter for version 5 (`[columns] [squares per row] [squares
/// per column]`), a skyline for version 6 (`[columns] [rows]`), the version alone
/// otherwise, as Redis 7 does.
fn lolwut(ctx: &mut Ctx, a: Args) -> CmdResult {
    let (version, rest) = if a.len() >= 3 && args::is(&a[1], "version") {
        (Some(args::int(&a[2])?), a.tail(3))
    } else {
        (None, a.tail(1))
    };
    let long = |i: usize, default: i64| -> Result<i64, CmdError> {
        match rest.get(i) {
            Some(v) => args::int(v),
            None => Ok(default),
        }
    };
    // Redis formats the version as "%u.0.0" and looks at its first characters.
    let major = version.map(|v| v as u32);
    let text = match major {
        Some(5) => {
            let cols = long(0, 66)?.clamp(1, 1000) as usize;
            let per_row = long(1, 8)?.clamp(1, 200) as usize;
            let per_col = long(2, 12)?.clamp(1, 200) as usize;
            let mut text = braille(&schotter(cols, per_row, per_col));
            text.push_str("\nGeorg Nees - schotter, plotter on paper, 1968. Redis ver. ");
            text
        }
        Some(6) => {
            let cols = long(0, 80)?.clamp(1, 1000) as usize;
            let rows = long(1, 20)?.clamp(1, 1000) as usize;
            let mut text = grays(&skyline(cols, rows));
            text.push_str(
                "\nDedicated to the 8 bit game developers of past and present.\n\
                 Original 8 bit image from Plaguemon by hikikomori. Redis ver. ",
            );
            text
        }
        _ => "Redis ver. ".to_string(),
    };
    let mut text = text;
    text.push_str(REDIS_VERSION);
    text.push('\n');
    ctx.out.verbatim(text.as_bytes());
    Ok(())
}

/// A grid of pixels (colors 0..=3), writes outside ignored.
struct Canvas {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize, color: u8) -> Canvas {
        Canvas {
            width,
            height,
            pixels: vec![color; width * height],
        }
    }

    fn set(&mut self, x: i64, y: i64, color: u8) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[x as usize + y as usize * self.width] = color;
        }
    }

    fn get(&self, x: i64, y: i64) -> u8 {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[x as usize + y as usize * self.width]
        } else {
            0
        }
    }

    /// Bresenham's line.
    fn line(&mut self, (mut x1, mut y1): (i64, i64), (x2, y2): (i64, i64)) {
        let (dx, dy) = ((x2 - x1).abs(), (y2 - y1).abs());
        let (sx, sy) = (if x1 < x2 { 1 } else { -1 }, if y1 < y2 { 1 } else { -1 });
        let mut err = dx - dy;
        loop {
            self.set(x1, y1, 1);
            if x1 == x2 && y1 == y2 {
                break;
            }
            let e2 = err * 2;
            if e2 > -dy {
                err -= dy;
                x1 += sx;
            }
            if e2 < dx {
                err += dx;
                y1 += sy;
            }
        }
    }

    /// A square centred on (x, y), of side `side`, turned by `angle` radians: its
    /// corners are on the circle through them, a quarter turn apart.
    fn square(&mut self, x: i64, y: i64, side: f32, angle: f32) {
        let radius = (side / std::f32::consts::SQRT_2).round();
        let mut k = std::f32::consts::FRAC_PI_4 + angle;
        let mut corners = [(0i64, 0i64); 4];
        for c in &mut corners {
            *c = (
                (k.sin() * radius + x as f32).round() as i64,
                (k.cos() * radius + y as f32).round() as i64,
            );
            k += std::f32::consts::FRAC_PI_2;
        }
        for j in 0..4 {
            self.line(corners[j], corners[(j + 1) % 4]);
        }
    }
}

/// Schotter: rows of squares, more and more displaced and turned going down.
fn schotter(cols: usize, per_row: usize, per_col: usize) -> Canvas {
    let width = cols * 2;
    let padding = if width > 4 { 2 } else { 0 };
    let side = (width - padding * 2) as f32 / per_row as f32;
    let height = (side * per_col as f32) as usize + padding * 2;
    let mut canvas = Canvas::new(width, height, 0);
    let mut rng = rand::rng();
    for y in 0..per_col {
        for x in 0..per_row {
            let mut sx = (x as f32 * side + side / 2.0 + padding as f32) as i64;
            let mut sy = (y as f32 * side + side / 2.0 + padding as f32) as i64;
            let mut angle = 0.0;
            if y > 1 {
                let mut r = || {
                    let v = rng.random::<f32>() / per_col as f32 * y as f32;
                    if rng.random::<bool>() { -v } else { v }
                };
                let (r1, r2, r3) = (r(), r(), r());
                angle = r1;
                sx = (sx as f32 + r2 * side / 3.0) as i64;
                sy = (sy as f32 + r3 * side / 3.0) as i64;
            }
            canvas.square(sx, sy, side, angle);
        }
    }
    canvas
}

/// The canvas as Braille characters, each 2x4 pixels.
fn braille(canvas: &Canvas) -> String {
    const DOTS: [(i64, i64, u32); 8] = [
        (0, 0, 0),
        (0, 1, 1),
        (0, 2, 2),
        (1, 0, 3),
        (1, 1, 4),
        (1, 2, 5),
        (0, 3, 6),
        (1, 3, 7),
    ];
    let mut text = String::new();
    for y in (0..canvas.height).step_by(4) {
        for x in (0..canvas.width).step_by(2) {
            let bits = DOTS
                .iter()
                .filter(|&&(dx, dy, _)| canvas.get(x as i64 + dx, y as i64 + dy) != 0)
                .fold(0, |b, &(_, _, bit)| b | 1 << bit);
            text.push(char::from_u32(0x2800 + bits).unwrap_or(' '));
        }
        if y != canvas.height - 1 {
            text.push('\n');
        }
    }
    text
}

/// A city skyline: two rows of plain buildings behind, one with windows in front.
fn skyline(cols: usize, rows: usize) -> Canvas {
    let mut canvas = Canvas::new(cols, rows, 3);
    let mut rng = rand::rng();
    let h = rows as i64;
    let w = cols as i64;
    for color in [2u8, 1] {
        let mut offset = -10i64;
        while offset < w {
            offset += rng.random_range(0..8);
            let width = 10 + rng.random_range(0..9);
            let height = if color == 2 {
                h / 2 + rng.random_range(0..h) / 2
            } else {
                h / 2 + rng.random_range(0..h) / 3
            };
            building(&mut canvas, &mut rng, offset, width, height, color, false);
            offset += if color == 2 { width / 2 } else { width + 1 };
        }
    }
    let mut offset = -10i64;
    while offset < w {
        offset += rng.random_range(0..8);
        let mut width = 5 + rng.random_range(0..14);
        if width % 4 != 0 {
            width += width % 3;
        }
        let height = h / 3 + rng.random_range(0..h) / 2;
        building(&mut canvas, &mut rng, offset, width, height, 0, true);
        offset += width + 5;
    }
    canvas
}

/// One building standing on the bottom row; windows two pixels wide, one tall.
fn building(
    canvas: &mut Canvas,
    rng: &mut impl Rng,
    xoff: i64,
    width: i64,
    height: i64,
    color: u8,
    windows: bool,
) {
    let start = canvas.height as i64 - 1;
    let end = start - height + 1;
    let mut y = start;
    while y >= end {
        for x in xoff..xoff + width {
            // The roof is narrower.
            if y == end && (x <= xoff + 1 || x >= xoff + width - 2) {
                continue;
            }
            let mut c = color;
            if windows && x > xoff + 1 && x < xoff + width - 2 && y > end + 1 && y < start - 1 {
                let (relx, rely) = (x - (xoff + 1), y - (end + 1));
                if (relx / 2) % 2 != 0 && rely % 2 != 0 {
                    c = loop {
                        let pick = rng.random_range(1..=2u8);
                        if pick != color {
                            break pick;
                        }
                    };
                    if relx % 2 != 0 {
                        c = canvas.get(x - 1, y);
                    }
                }
            }
            canvas.set(x, y, c);
        }
        y -= 1;
    }
}

/// The canvas in the terminal's four grays, one space per pixel.
fn grays(canvas: &Canvas) -> String {
    let mut text = String::new();
    for y in 0..canvas.height {
        for x in 0..canvas.width {
            let code = match canvas.get(x as i64, y as i64) {
                1 => "0;90;100m",
                2 => "0;37;47m",
                3 => "0;97;107m",
                _ => "0;30;40m",
            };
            text.push_str("\x1b[");
            text.push_str(code);
            text.push_str(" \x1b[0m");
        }
        if y != canvas.height - 1 {
            text.push('\n');
        }
    }
    text
}

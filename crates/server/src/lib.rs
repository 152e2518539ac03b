//! `dse-server`: the command table, the command families and the wiring of the binary.
//!
//! - [`command`]: the table ([`command::CommandSpec`]) and the context commands run with.
//! - [`cmd`]: one module per command family, each a `const` table of its commands.
//! - [`service`]: the network handler, parsing requests and running them inline on the
//!   event loop that read them.
//! - [`server`]: state shared by all loops (store, settings, statistics, clients).
//! - [`config`]: flags, TOML file and defaults.
//! - [`cluster`]: cluster mode: the node's view of the cluster and command routing.

pub mod args;
pub mod blocked;
pub mod clients;
pub mod cluster;
pub mod cmd;
pub mod command;
pub mod config;
pub mod forward;
pub mod info;
pub mod long_double;
pub mod membership;
pub mod replication;
pub mod server;
pub mod service;
pub mod session;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::server::{Server, Shutdown};
use crate::service::Service;

/// Descriptors kept for things other than clients (listeners, logs, epoll, files),
/// as Redis's CONFIG_MIN_RESERVED_FDS.
pub const RESERVED_FDS: usize = 32;

/// Runs the server until SIGINT, SIGTERM or SHUTDOWN.
pub fn main() -> ExitCode {
    let mut config = match Config::load(std::env::args_os()) {
        Ok(c) => c,
        Err(ConfigError::Cli(e)) => e.exit(),
        Err(e) => {
            eprintln!("dse-server: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.loglevel);
    let config_file = std::env::args()
        .skip_while(|a| a != "--config")
        .nth(1)
        .map(std::path::PathBuf::from);

    let wanted = config.maxclients + RESERVED_FDS;
    let got = dse_net::raise_open_files_limit(wanted as u64) as usize;
    if got < wanted {
        let fit = got.saturating_sub(RESERVED_FDS).max(1);
        tracing::warn!(
            "open files limit is {got}; maxclients lowered from {} to {fit}",
            config.maxclients
        );
        config.maxclients = fit;
    }

    match run(config, config_file) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("dse-server: {e}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: &str) {
    // openraft reports every unanswered vote or heartbeat of a down peer as an error;
    // the membership's own log lines say what matters (DSE_LOG=openraft=info shows it).
    let filter = match level {
        "debug" => "debug,openraft=info",
        "verbose" => "info,openraft=off",
        "notice" => "info,openraft=off",
        _ => "warn,openraft=off",
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DSE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

fn listen_addrs(bind: &[String], port: u16) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for b in bind {
        let host = match b.as_str() {
            "*" => "0.0.0.0",
            "::*" => "::",
            h => h.trim_start_matches('-'),
        };
        let addrs = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve bind address {b}: {e}"))?;
        out.extend(addrs.take(1));
    }
    Ok(out)
}

fn run(config: Config, config_file: Option<std::path::PathBuf>) -> Result<(), String> {
    let addrs = listen_addrs(&config.bind, config.port)?;
    let mut listeners = Vec::new();
    let mut port = config.port;
    for mut addr in addrs {
        if port != 0 {
            addr.set_port(port);
        }
        let l = dse_net::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        port = l.local_addr().map(|a| a.port()).unwrap_or(port);
        listeners.push(dse_net::Listener::client(l));
    }
    if let Some(cluster) = &config.cluster {
        // The cluster bus: other nodes' forwards and replication, on its own port.
        let bus_port = cluster.myself.bus_port;
        for mut addr in listen_addrs(&config.bind, bus_port)? {
            addr.set_port(bus_port);
            let l = dse_net::bind(addr)
                .map_err(|e| format!("cannot listen on {addr} (cluster bus): {e}"))?;
            listeners.push(dse_net::Listener {
                socket: l,
                kind: service::BUS_LISTENER,
                counts_as_client: false,
            });
        }
    }

    let (persist, store) = open_persistence(&config)?;
    let srv = Arc::new(Server::new(
        config.clone(),
        config_file,
        store.clone(),
        persist.clone(),
    ));
    let _ = srv.port.set(port);
    // Installed once the server knows its replicas: in cluster mode the journal also
    // notes which replicas each write must reach.
    store.set_journal(match &srv.replication {
        Some(r) => r.journal(persist.journal()),
        None => persist.journal(),
    });
    blocked::install(&srv);
    if let Some(wal) = persist.wal() {
        let weak = Arc::downgrade(&srv);
        wal.set_notify(Box::new(move |acked| {
            if let Some(srv) = weak.upgrade() {
                srv.log_acked(acked);
            }
        }));
    }
    {
        // A snapshot never dumps a shard in the middle of an EXEC, so it never holds part
        // of a transaction that recovery would then drop (or not).
        let weak = Arc::downgrade(&srv);
        persist.set_shard_dump_wrapper(Box::new(move |dump| match weak.upgrade() {
            Some(srv) => {
                let _no_exec = srv.tx.hold_off_exec();
                dump();
            }
            None => dump(),
        }));
    }
    persist.start(store.clone());
    let net_cfg = dse_net::NetConfig {
        threads: config.threads,
        maxclients: config.maxclients,
        max_pending_output: config.client_output_buffer_limit as usize,
        max_query_buffer: config.client_query_buffer_limit as usize,
        tick: Duration::from_millis(100),
        maxclients_reply: b"-ERR max number of clients reached\r\n",
        query_buffer_reply: b"-ERR Protocol error: client query buffer limit exceeded\r\n",
        placement: config.placement,
    };
    let net = dse_net::start(net_cfg, Arc::new(Service { srv: srv.clone() }), listeners)
        .map_err(|e| format!("cannot start event loops: {e}"))?;
    let _ = srv.net.set(net.shared.clone());
    let _ = srv.loops.set(net.loops.clone());
    membership::start(&srv)?;

    {
        let srv = srv.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        std::thread::Builder::new()
            .name("dse-signals".into())
            .spawn(move || {
                if signals.forever().next().is_some() {
                    srv.request_shutdown(Shutdown::Signal);
                }
            })
            .map_err(|e| e.to_string())?;
    }

    tracing::info!(
        "dse-server {} ready: {} event loops, {} shards, listening on {}",
        env!("CARGO_PKG_VERSION"),
        config.threads,
        config.shards,
        config
            .bind
            .iter()
            .map(|b| format!("{b}:{port}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let why = srv.wait_for_shutdown();
    tracing::info!("shutting down ({why:?})");
    let save = match why {
        Shutdown::Command { save: Some(save) } => save,
        _ => config.snapshot_interval > 0,
    };
    // Make the log durable first, so replies still waiting for it are released and sent
    // before the loops close their connections.
    if let Some(wal) = persist.wal() {
        wal.flush_and_sync();
    }
    net.shutdown(Duration::from_secs(2));
    if let Err(e) = persist.shutdown(&store, save) {
        tracing::error!("persistence did not shut down cleanly: {e}");
    }
    tracing::info!("bye");
    Ok(())
}

/// Locks the data directory, loads the newest snapshot and replays the log (the caller
/// installs the log as the store's journal).
fn open_persistence(
    config: &Config,
) -> Result<(Arc<dse_persist::Persistence>, Arc<dse_engine::Store>), String> {
    let opts = dse_persist::PersistOptions {
        dir: config.data.clone(),
        appendonly: config.appendonly,
        fsync: config.appendfsync,
        snapshot_interval: config.snapshot_interval,
        recovery: config.wal_recovery,
        segment_size: config.wal_segment_size,
        shards: config.shards,
        key_slot: config
            .cluster
            .as_ref()
            .map(|_| dse_cluster::key_slot as fn(&[u8]) -> u16),
    };
    let started = std::time::Instant::now();
    let (persist, store, report) =
        dse_persist::Persistence::open(opts, Arc::new(dse_persist::StdFs))
            .map_err(|e| e.to_string())?;
    if let Some(snap) = &report.snapshot {
        let secs = report.snapshot_time.as_secs_f64().max(1e-6);
        tracing::info!(
            "loaded snapshot {}: {} keys in {:.3} s ({:.0} keys/s)",
            snap.path.display(),
            report.snapshot_keys,
            secs,
            report.snapshot_keys as f64 / secs
        );
    }
    if report.records > 0 {
        let secs = report.wal_time.as_secs_f64().max(1e-6);
        tracing::info!(
            "replayed {} log records ({} effects, {} bytes) in {:.3} s ({:.0} records/s)",
            report.records,
            report.effects,
            report.wal_bytes,
            secs,
            report.records as f64 / secs
        );
    }
    for (file, offset) in &report.truncated {
        tracing::warn!(
            "truncated a torn record at the end of {} (byte {offset})",
            file.display()
        );
    }
    tracing::info!(
        "data directory {} ready in {} ms: {} keys",
        config.data.display(),
        started.elapsed().as_millis(),
        store.len()
    );
    Ok((persist, Arc::new(store)))
}

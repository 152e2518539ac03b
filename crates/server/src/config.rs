//! Configuration: command-line flags, an optional TOML file with the same names, and the
//! embedded defaults. Flags win over the file, the file over the defaults.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;
use dse_cluster::membership::Membership;
use serde::Deserialize;

/// A size in bytes, written as Redis writes them: `1gb`, `512mb`, `64kb`, `100k`
/// (k/m/g are powers of 1000, kb/mb/gb of 1024), or a plain number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_memory(s)
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size '{s}' (examples: 1048576, 512mb, 1gb)"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `yes` or `no`, as Redis writes booleans (TOML `true`/`false` work too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct YesNo(pub bool);

impl FromStr for YesNo {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "yes" | "true" => Ok(YesNo(true)),
            "no" | "false" => Ok(YesNo(false)),
            _ => Err(format!("expected yes or no, got '{s}'")),
        }
    }
}

impl<'de> Deserialize<'de> for YesNo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(b) => Ok(YesNo(b)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Redis's `memtoull`.
pub fn parse_memory(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mul: u64 = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mul)
}

/// Every setting, as flags and as TOML keys (the same kebab-case names). `None` means
/// "not given here"; [`Config::resolve`] fills in the defaults.
#[derive(Parser, Deserialize, Debug, Default, Clone)]
#[command(
    name = "dse-server",
    version,
    about = "dse: a Redis-protocol, in-memory key-value store.\n\nRuns with no arguments: port 6379 on 127.0.0.1, one event loop per core, data in ./data."
)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Options {
    /// TCP port for clients [default: 6379; 0 picks a free port]
    #[arg(long)]
    pub port: Option<u16>,

    /// Addresses to listen on, separated by spaces or commas [default: 127.0.0.1]
    #[arg(long)]
    pub bind: Option<String>,

    /// Event-loop threads; each owns its connections and runs their commands inline
    /// [default: number of cores]
    #[arg(long)]
    pub threads: Option<usize>,

    /// How clients are spread over the event loops: gather (on as few loops as keep up;
    /// a busy loop hands clients to an idle one when a core is free) or round-robin
    /// (dealt in turn, never moved) [default: gather]
    #[arg(long)]
    pub placement: Option<String>,

    /// Directory for the write-ahead log and snapshots [default: ./data]
    #[arg(long)]
    pub data: Option<PathBuf>,

    /// Most clients connected at once; the open-files limit is raised to fit
    /// [default: 10000]
    #[arg(long)]
    pub maxclients: Option<usize>,

    /// Shards of the keyspace, each with its own lock; a power of two [default: 512]
    #[arg(long)]
    pub shards: Option<usize>,

    /// Largest bulk argument a client may send (Redis: proto-max-bulk-len) [default: 512mb]
    #[arg(long)]
    pub proto_max_bulk_len: Option<ByteSize>,

    /// Largest partial request a client may have buffered before it is closed
    /// (Redis: client-query-buffer-limit) [default: 1gb]
    #[arg(long)]
    pub client_query_buffer_limit: Option<ByteSize>,

    /// Unsent replies past which a client's input is no longer read until it catches up
    /// [default: 64mb]
    #[arg(long)]
    pub client_output_buffer_limit: Option<ByteSize>,

    /// Close clients idle for this many seconds; 0 never [default: 0]
    #[arg(long)]
    pub timeout: Option<u64>,

    /// Keep a write-ahead log of every write, replayed at start: yes or no
    /// [default: yes]
    #[arg(long)]
    pub appendonly: Option<YesNo>,

    /// When a write is acknowledged: always (after an fsync that covers it, shared by
    /// concurrent writers), everysec (after write(2); fsync every second) or no (after
    /// write(2); the kernel syncs) [default: everysec]
    #[arg(long)]
    pub appendfsync: Option<String>,

    /// Seconds between snapshots of the keyspace (taken when something changed);
    /// 0 disables them [default: 60]
    #[arg(long)]
    pub snapshot_interval: Option<u64>,

    /// A damaged write-ahead log at start: strict (truncate a torn tail, refuse
    /// anything else) or tolerate-corruption (skip damaged records) [default: strict]
    #[arg(long)]
    pub wal_recovery: Option<String>,

    /// Size at which the write-ahead log starts a new segment file [default: 64mb]
    #[arg(long)]
    pub wal_segment_size: Option<ByteSize>,

    /// Log level: debug, verbose, notice or warning (Redis's names) [default: notice]
    #[arg(long)]
    pub loglevel: Option<String>,

    /// Run as a cluster node with this name (cluster mode is on when given); its ring
    /// positions and its 40-hex node id derive from the name
    #[arg(long)]
    pub node: Option<String>,

    /// The other cluster nodes: name:host:port (client port; the bus port is port + 10000)
    /// or name:host:port:busport, separated by commas. IPv6 hosts in brackets
    #[arg(long)]
    pub peers: Option<Peers>,

    /// This node's cluster bus port [default: --port + 10000]
    #[arg(long)]
    pub cluster_port: Option<u16>,

    /// Copies of each slot beyond its primary, on the next nodes of the ring
    /// [default: 1]
    #[arg(long)]
    pub replicas: Option<usize>,

    /// Copies (primary included) a write needs before it is acknowledged, between 1 and
    /// replicas + 1 [default: 2 when a slot has a replica, else 1]
    #[arg(long)]
    pub write_quorum: Option<usize>,

    /// Milliseconds a write waits for its replicas' acknowledgements before its reply
    /// says it may not have reached them [default: 10000]
    #[arg(long)]
    pub quorum_timeout: Option<u64>,

    /// Answer -MOVED for keys of other nodes instead of forwarding the command
    /// [default: no]
    #[arg(long, num_args = 0..=1, default_missing_value = "yes")]
    pub cluster_redirect: Option<YesNo>,

    /// Shared secret the cluster nodes authenticate each other with
    #[arg(long)]
    pub cluster_secret: Option<String>,

    /// Milliseconds of silence after which the cluster marks a node down and hands its
    /// slots to their first replicas [default: 3000]
    #[arg(long)]
    pub node_timeout: Option<u64>,

    /// Milliseconds after start during which no node is marked down [default: 15000]
    #[arg(long)]
    pub startup_grace: Option<u64>,

    /// Start without peers and wait to be added to a cluster by CLUSTER MEET
    /// [default: no]
    #[arg(long, num_args = 0..=1, default_missing_value = "yes")]
    pub join: Option<YesNo>,

    /// Read settings from this TOML file (same names as the flags; flags win)
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// The `--peers` list as written: a comma-separated string (a flag or TOML), or a TOML
/// array of `name:host:port[:busport]` strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers(pub Vec<String>);

impl FromStr for Peers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(Peers(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
        ))
    }
}

impl<'de> Deserialize<'de> for Peers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            List(Vec<String>),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::List(l) => Ok(Peers(l)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Cluster mode's settings, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node: its name, the host it is reached at (the first bind address that is
    /// not a wildcard), its client and bus ports.
    pub myself: dse_cluster::NodeSpec,
    /// Every bind address is a wildcard: `myself.host` is only a placeholder, and a
    /// client is told the address its own connection reached.
    pub host_is_wildcard: bool,
    /// The other members, as `--peers` lists them.
    pub peers: Vec<dse_cluster::NodeSpec>,
    pub replicas: usize,
    pub write_quorum: usize,
    /// `--quorum-timeout`, ms.
    pub quorum_timeout: u64,
    /// Answer -MOVED instead of forwarding.
    pub redirect: bool,
    pub secret: Option<String>,
    /// `--node-timeout` and `--startup-grace`, ms.
    pub node_timeout: u64,
    pub startup_grace: u64,
    /// `--join`: no peers; wait for CLUSTER MEET.
    pub join: bool,
}

impl ClusterConfig {
    /// The membership before the consensus has said anything: this node and its peers,
    /// all up (what every node of a new cluster starts from), or, for a node waiting to
    /// be added, none.
    pub fn initial_membership(&self) -> (Membership, Option<u16>) {
        if self.join {
            let none = Membership {
                epoch: 0,
                members: Vec::new(),
            };
            return (none, None);
        }
        let m = Membership::bootstrap(self.bootstrap_nodes());
        let me = m.index_of(&self.myself.name);
        (m, me)
    }

    /// This node and `--peers`: the first members of a new cluster.
    pub fn bootstrap_nodes(&self) -> Vec<dse_cluster::NodeSpec> {
        if self.join {
            return Vec::new();
        }
        let mut nodes = vec![self.myself.clone()];
        nodes.extend(self.peers.iter().cloned());
        nodes
    }
}

// By hand, so that printing the configuration never prints the secret.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("myself", &self.myself)
            .field("host_is_wildcard", &self.host_is_wildcard)
            .field("peers", &self.peers)
            .field("replicas", &self.replicas)
            .field("write_quorum", &self.write_quorum)
            .field("quorum_timeout", &self.quorum_timeout)
            .field("redirect", &self.redirect)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("node_timeout", &self.node_timeout)
            .field("startup_grace", &self.startup_grace)
            .field("join", &self.join)
            .finish()
    }
}

/// Most nodes a cluster can have: the replication keeps bitmasks of node indices in a
/// `u64`, and a removed node's index is never reused.
pub const MAX_NODES: usize = crate::cluster::MAX_MEMBERS;

/// A node name must survive `--peers` (no `:` or `,`) and log lines (no spaces).
fn check_node_name(name: &str, what: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("{what}: a node name must have 1 to 128 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, ':' | ',' | '[' | ']') || c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{what}: node name '{name}' contains '{}'; use letters, digits, '-', '_' or '.'",
            c.escape_default()
        ));
    }
    Ok(())
}

/// One `--peers` entry: `name:host:port` or `name:host:port:busport`; the host may be
/// an IPv6 address in brackets (`b:[::1]:7001`).
fn parse_peer(text: &str) -> Result<dse_cluster::NodeSpec, String> {
    let bad = |why: &str| {
        format!("--peers: '{text}' {why} (expected name:host:port or name:host:port:busport)")
    };
    let (name, rest) = text.split_once(':').ok_or_else(|| bad("has no host"))?;
    check_node_name(name, "--peers")?;
    let (host, rest) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, rest) = v6
            .split_once(']')
            .ok_or_else(|| bad("has no closing ']'"))?;
        let rest = rest.strip_prefix(':').ok_or_else(|| bad("has no port"))?;
        (host, rest)
    } else {
        rest.split_once(':').ok_or_else(|| bad("has no port"))?
    };
    if host.is_empty() {
        return Err(bad("has an empty host"));
    }
    let mut ports = rest.split(':');
    let port_of = |p: Option<&str>| -> Result<Option<u16>, String> {
        match p {
            None => Ok(None),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(bad(&format!("has an invalid port '{p}'"))),
            },
        }
    };
    let port = port_of(ports.next())?.ok_or_else(|| bad("has no port"))?;
    let bus_port = match port_of(ports.next())? {
        Some(b) => b,
        None => default_bus_port(port).ok_or_else(|| {
            bad(&format!(
                "needs its bus port written out: {port} + 10000 is past 65535"
            ))
        })?,
    };
    if ports.next().is_some() {
        return Err(bad("has too many fields"));
    }
    Ok(dse_cluster::NodeSpec {
        name: name.to_string(),
        host: host.to_string(),
        port,
        bus_port,
    })
}

/// A node's bus port when not given: its client port + 10000, as in Redis Cluster.
fn default_bus_port(port: u16) -> Option<u16> {
    port.checked_add(10000)
}

impl Options {
    /// Cluster mode's settings from the flags (`cli`) and file (`file`), checked; `None`
    /// when `--node` is not given (and then no other cluster flag may be).
    fn cluster(
        cli: &Options,
        file: &Options,
        port: u16,
        bind: &[String],
    ) -> Result<Option<ClusterConfig>, String> {
        macro_rules! pick {
            ($f:ident) => {
                cli.$f.clone().or(file.$f.clone())
            };
        }
        let Some(name) = pick!(node) else {
            let stray = [
                ("--peers", pick!(peers).is_some()),
                ("--cluster-port", pick!(cluster_port).is_some()),
                ("--replicas", pick!(replicas).is_some()),
                ("--write-quorum", pick!(write_quorum).is_some()),
                ("--cluster-redirect", pick!(cluster_redirect).is_some()),
                ("--quorum-timeout", pick!(quorum_timeout).is_some()),
                ("--cluster-secret", pick!(cluster_secret).is_some()),
                ("--node-timeout", pick!(node_timeout).is_some()),
                ("--startup-grace", pick!(startup_grace).is_some()),
                ("--join", pick!(join).is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
                return Err(format!("{flag} needs --node (cluster mode)"));
            }
            return Ok(None);
        };
        check_node_name(&name, "--node")?;
        if port == 0 {
            return Err("--node needs a fixed --port: the peers must know it".into());
        }
        let bus_port = match pick!(cluster_port) {
            Some(0) => return Err("--cluster-port must be between 1 and 65535".into()),
            Some(p) => p,
            None => default_bus_port(port).ok_or_else(|| {
                format!(
                    "--cluster-port defaults to --port + 10000, past 65535 for port {port}; give it"
                )
            })?,
        };
        if bus_port == port {
            return Err(format!("--cluster-port {bus_port} is the client port"));
        }
        let unwild = |b: &&String| {
            !matches!(
                b.trim_start_matches('-'),
                "*" | "0.0.0.0" | "::*" | "::" | "[::]"
            )
        };
        let host = bind.iter().find(unwild);
        let myself = dse_cluster::NodeSpec {
            name: name.clone(),
            host: host
                .map_or("127.0.0.1", |h| h.trim_start_matches('-'))
                .to_string(),
            port,
            bus_port,
        };
        let mut peers = Vec::new();
        for text in pick!(peers).unwrap_or_default().0 {
            let peer = parse_peer(&text)?;
            if peer.name == name {
                return Err(format!(
                    "--peers lists this node's own name '{name}'; list only the others"
                ));
            }
            if peers
                .iter()
                .any(|p: &dse_cluster::NodeSpec| p.name == peer.name)
            {
                return Err(format!("--peers names '{}' twice", peer.name));
            }
            let same_place = |n: &dse_cluster::NodeSpec| n.host == peer.host && n.port == peer.port;
            if same_place(&myself) || peers.iter().any(same_place) {
                return Err(format!(
                    "--peers: {}:{} is given to two nodes",
                    peer.host, peer.port
                ));
            }
            peers.push(peer);
        }
        if peers.len() + 1 > MAX_NODES {
            return Err(format!("a cluster has at most {MAX_NODES} nodes"));
        }
        let join = pick!(join).is_some_and(|y| y.0);
        if join && !peers.is_empty() {
            return Err("--join starts a node that waits for CLUSTER MEET: give no --peers".into());
        }
        let replicas = pick!(replicas).unwrap_or(1);
        if replicas > dse_cluster::ring::MAX_REPLICAS {
            return Err(format!(
                "--replicas must be between 0 and {}, got {replicas}",
                dse_cluster::ring::MAX_REPLICAS
            ));
        }
        // A slot has as many copies as there are nodes to hold them, at most (a joining
        // node's cluster is not known yet).
        let copies = if join {
            replicas + 1
        } else {
            replicas.min(peers.len()) + 1
        };
        // Two copies by default when there is a replica to hold the second.
        let write_quorum = pick!(write_quorum).unwrap_or(copies.min(2));
        if write_quorum < 1 || write_quorum > replicas + 1 {
            return Err(format!(
                "--write-quorum must be between 1 and --replicas + 1 ({}), got {write_quorum}",
                replicas + 1
            ));
        }
        if write_quorum > copies {
            return Err(format!(
                "--write-quorum {write_quorum} needs {write_quorum} copies of each slot, but \
                 {} node(s) keep only {copies}: add peers or lower --write-quorum",
                peers.len() + 1
            ));
        }
        Ok(Some(ClusterConfig {
            myself,
            host_is_wildcard: host.is_none(),
            peers,
            replicas,
            write_quorum,
            quorum_timeout: pick!(quorum_timeout).unwrap_or(10_000),
            redirect: pick!(cluster_redirect).is_some_and(|y| y.0),
            secret: pick!(cluster_secret).filter(|s| !s.is_empty()),
            node_timeout: match pick!(node_timeout).unwrap_or(3000) {
                t @ 100..=3_600_000 => t,
                t => return Err(format!("--node-timeout must be 100 to 3600000 ms, got {t}")),
            },
            startup_grace: pick!(startup_grace).unwrap_or(15_000),
            join,
        }))
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Bad flags, or `--help`/`--version` (which clap prints and exits 0 for).
    #[error(transparent)]
    Cli(clap::Error),
    #[error("{0}")]
    Invalid(String),
}

impl From<String> for ConfigError {
    fn from(s: String) -> Self {
        ConfigError::Invalid(s)
    }
}

/// The settings in force.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub bind: Vec<String>,
    pub threads: usize,
    pub placement: dse_net::Placement,
    pub data: PathBuf,
    pub maxclients: usize,
    pub shards: usize,
    pub proto_max_bulk_len: u64,
    pub client_query_buffer_limit: u64,
    pub client_output_buffer_limit: u64,
    pub timeout: u64,
    pub loglevel: String,
    pub appendonly: bool,
    pub appendfsync: dse_persist::FsyncPolicy,
    pub snapshot_interval: u64,
    pub wal_recovery: dse_persist::RecoveryMode,
    pub wal_segment_size: u64,
    /// Cluster mode (`--node`); `None` for a standalone server.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Flags from `args`, then the file they name, then the defaults.
    pub fn load<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Options::try_parse_from(args).map_err(ConfigError::Cli)?;
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str::<Options>(&text)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => Options::default(),
        };
        Ok(Config::resolve(cli, file)?)
    }

    fn resolve(cli: Options, file: Options) -> Result<Config, String> {
        macro_rules! pick {
            ($f:ident, $default:expr) => {
                cli.$f
                    .clone()
                    .or(file.$f.clone())
                    .unwrap_or_else(|| $default)
            };
        }
        let cfg = Config {
            port: pick!(port, 6379),
            bind: pick!(bind, "127.0.0.1".to_string())
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            threads: pick!(
                threads,
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            placement: match pick!(placement, "gather".to_string()).as_str() {
                "gather" => dse_net::Placement::Gather,
                "round-robin" => dse_net::Placement::RoundRobin,
                s => {
                    return Err(format!(
                        "--placement must be gather or round-robin, got {s}"
                    ));
                }
            },
            data: pick!(data, PathBuf::from("./data")),
            maxclients: pick!(maxclients, 10_000),
            shards: pick!(shards, 512),
            proto_max_bulk_len: pick!(proto_max_bulk_len, ByteSize(512 << 20)).0,
            client_query_buffer_limit: pick!(client_query_buffer_limit, ByteSize(1 << 30)).0,
            client_output_buffer_limit: pick!(client_output_buffer_limit, ByteSize(64 << 20)).0,
            timeout: pick!(timeout, 0),
            loglevel: pick!(loglevel, "notice".to_string()),
            appendonly: pick!(appendonly, YesNo(true)).0,
            appendfsync: {
                let s = pick!(appendfsync, "everysec".to_string());
                dse_persist::FsyncPolicy::parse(&s).ok_or_else(|| {
                    format!("--appendfsync must be always, everysec or no, got {s}")
                })?
            },
            snapshot_interval: pick!(snapshot_interval, 60),
            wal_recovery: {
                let s = pick!(wal_recovery, "strict".to_string());
                dse_persist::RecoveryMode::parse(&s).ok_or_else(|| {
                    format!("--wal-recovery must be strict or tolerate-corruption, got {s}")
                })?
            },
            wal_segment_size: pick!(wal_segment_size, ByteSize(64 << 20)).0,
            cluster: None,
        };
        if !cfg.shards.is_power_of_two() || cfg.shards > dse_engine::MAX_SHARDS {
            return Err(format!(
                "--shards must be a power of two between 1 and {}, got {}",
                dse_engine::MAX_SHARDS,
                cfg.shards
            ));
        }
        if cfg.threads == 0 || cfg.threads > 1024 {
            return Err(format!(
                "--threads must be between 1 and 1024, got {}",
                cfg.threads
            ));
        }
        if cfg.maxclients == 0 {
            return Err("--maxclients must be at least 1".into());
        }
        if cfg.bind.is_empty() {
            return Err("--bind needs at least one address".into());
        }
        if cfg.proto_max_bulk_len < 1024 * 1024 {
            return Err("--proto-max-bulk-len must be at least 1mb".into());
        }
        if !["debug", "verbose", "notice", "warning"].contains(&cfg.loglevel.as_str()) {
            return Err(format!(
                "--loglevel must be debug, verbose, notice or warning, got {}",
                cfg.loglevel
            ));
        }
        let cluster = Options::cluster(&cli, &file, cfg.port, &cfg.bind)?;
        Ok(Config { cluster, ..cfg })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_and_flags() {
        let cfg = Config::load(["dse-server"]).unwrap();
        assert_eq!(cfg.port, 6379);
        assert_eq!(cfg.shards, 512);
        assert_eq!(cfg.bind, vec!["127.0.0.1"]);

        let dir = std::env::temp_dir().join(format!("dse-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("dse.toml");
        std::fs::write(
            &file,
            "port = 7000\nshards = 64\nproto-max-bulk-len = \"1gb\"\n",
        )
        .unwrap();
        let cfg = Config::load([
            "dse-server",
            "--config",
            file.to_str().unwrap(),
            "--port",
            "7001",
        ])
        .unwrap();
        assert_eq!(cfg.port, 7001, "flags win over the file");
        assert_eq!(cfg.shards, 64);
        assert_eq!(cfg.proto_max_bulk_len, 1 << 30);
        std::fs::write(&file, "prot = 1\n").unwrap();
        assert!(Config::load(["dse-server", "--config", file.to_str().unwrap()]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cluster_flags_and_file() {
        let cfg = Config::load(["dse-server"]).unwrap();
        assert!(cfg.cluster.is_none());
        let cfg = Config::load([
            "dse-server",
            "--port",
            "7001",
            "--node",
            "a",
            "--peers",
            "b:10.0.0.2:7002, c:[::1]:7003:9000",
            "--cluster-redirect",
        ])
        .unwrap();
        let c = cfg.cluster.unwrap();
        assert_eq!(c.myself.name, "a");
        assert_eq!(c.myself.host, "127.0.0.1");
        assert_eq!((c.myself.port, c.myself.bus_port), (7001, 17001));
        assert_eq!(c.peers.len(), 2);
        assert_eq!(c.peers[0].host, "10.0.0.2");
        assert_eq!((c.peers[0].port, c.peers[0].bus_port), (7002, 17002));
        assert_eq!(c.peers[1].host, "::1");
        assert_eq!((c.peers[1].port, c.peers[1].bus_port), (7003, 9000));
        assert_eq!((c.replicas, c.write_quorum), (1, 2));
        assert!(c.redirect);
        assert!(!c.host_is_wildcard);

        let dir = std::env::temp_dir().join(format!("dse-config-cl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("dse.toml");
        std::fs::write(
            &file,
            "port = 7001\nbind = \"0.0.0.0\"\nnode = \"a\"\n\
             peers = [\"b:h2:7002\", \"c:h3:7003\"]\nreplicas = 2\nwrite-quorum = 3\n\
             cluster-port = 8001\ncluster-redirect = true\ncluster-secret = \"s3\"\n",
        )
        .unwrap();
        let c = Config::load(["dse-server", "--config", file.to_str().unwrap()])
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.peers.len(), 3 - 1);
        assert_eq!((c.replicas, c.write_quorum), (2, 3));
        assert_eq!(c.myself.bus_port, 8001);
        assert!(c.redirect && c.host_is_wildcard);
        assert_eq!(c.secret.as_deref(), Some("s3"));
        assert!(
            !format!("{c:?}").contains("s3"),
            "the secret stays out of logs"
        );
        // Flags win over the file.
        let c = Config::load([
            "dse-server",
            "--config",
            file.to_str().unwrap(),
            "--cluster-redirect",
            "no",
            "--write-quorum",
            "1",
        ])
        .unwrap()
        .cluster
        .unwrap();
        assert!(!c.redirect);
        assert_eq!(c.write_quorum, 1);
        std::fs::remove_dir_all(&dir).unwrap();

        // A lone node keeps one copy: the default quorum is 1.
        let c = Config::load(["dse-server", "--port", "7001", "--node", "a"])
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.write_quorum, 1);
        for bad in [
            &["--peers", "b:h:1:2:3"][..],
            &["--peers", "b:[::1:7002"],
            &["--peers", "b::7002"],
            &["--peers", "b:h:0"],
            &["--peers", "b:127.0.0.1:7001"],
            &["--peers", "b:h:7002,c:h:7002"],
            &["--cluster-port", "7001"],
            &["--node", "x,y"],
        ] {
            let mut args = vec!["dse-server", "--port", "7001", "--node", "a"];
            if bad[0] == "--node" {
                args.truncate(3);
            }
            args.extend(bad);
            assert!(Config::load(args.clone()).is_err(), "{args:?}");
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert!(Config::load(["dse-server", "--shards", "500"]).is_err());
        assert!(Config::load(["dse-server", "--threads", "0"]).is_err());
        assert_eq!(parse_memory("1gb"), Some(1 << 30));
        assert_eq!(parse_memory("100k"), Some(100_000));
        assert_eq!(parse_memory("12x"), None);
    }
}

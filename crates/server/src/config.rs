//! Configuration: command-line flags, an optional TOML file with the same names, and the
//! embedded defaults. Flags win over the file, the file over the defaults.

use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;
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

    /// Read settings from this TOML file (same names as the flags; flags win)
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
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
        Ok(cfg)
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
    fn rejects_bad_values() {
        assert!(Config::load(["dse-server", "--shards", "500"]).is_err());
        assert!(Config::load(["dse-server", "--threads", "0"]).is_err());
        assert_eq!(parse_memory("1gb"), Some(1 << 30));
        assert_eq!(parse_memory("100k"), Some(100_000));
        assert_eq!(parse_memory("12x"), None);
    }
}

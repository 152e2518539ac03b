//! Test harness: real `dse-server` processes on loopback ports, real clients.

// Helpers are shared by every test module; not all of them use each one.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A running server. Dropping it kills the process and removes its data directory.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    log: Arc<Mutex<Vec<String>>>,
    /// Leave the data directory behind when dropped ([`Server::stop_keeping_data`]).
    keep_dir: bool,
}

/// A fresh, empty directory for one server's data.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dse-it-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    /// A server with default settings on a free port.
    pub fn start() -> Server {
        Server::with_args(&[])
    }

    /// A server with extra flags (`--port` and `--data` are chosen here).
    pub fn with_args(args: &[&str]) -> Server {
        let dir = temp_dir("srv");
        Server::launch(dir, 0, args.iter().map(|s| s.to_string()).collect())
    }

    /// A server on an existing data directory (removed when the server is dropped).
    pub fn launch_in(dir: PathBuf, args: &[&str]) -> Server {
        Server::launch(dir, 0, args.iter().map(|s| s.to_string()).collect())
    }

    fn launch(dir: PathBuf, port: u16, args: Vec<String>) -> Server {
        Server::try_launch(dir, port, args).unwrap_or_else(|log| {
            panic!("dse-server did not start; log:\n{log}");
        })
    }

    /// Starts a server; `Err` holds its log when it did not come up.
    fn try_launch(dir: PathBuf, port: u16, args: Vec<String>) -> Result<Server, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dse-server"));
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--data")
            .arg(&dir)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start dse-server");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("listening on") {
                        let port = line
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.trim().parse::<u16>().ok());
                        if let (Some(tx), Some(port)) = (tx.take(), port) {
                            let _ = tx.send(port);
                        }
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return Err(log.lock().unwrap().join("\n"));
            }
        };
        Ok(Server {
            child: Some(child),
            port,
            dir,
            args,
            log,
            keep_dir: false,
        })
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .expect("connect")
    }

    /// A raw TCP connection, for protocol-level checks.
    pub fn raw(&self) -> Raw {
        let s = TcpStream::connect(self.addr()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Raw { s, buf: Vec::new() }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL: the process dies without any chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        signal(c.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!("server did not exit after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself (SHUTDOWN).
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = c.try_wait().unwrap() {
                self.child = None;
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Starts the server again on the same port and data directory, with the same flags.
    pub fn restart(&mut self) {
        self.kill9();
        let fresh = Server::launch(self.dir.clone(), self.port, self.args.clone());
        let mut fresh = std::mem::ManuallyDrop::new(fresh);
        self.child = fresh.child.take();
        self.log = fresh.log.clone();
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// SIGTERM (a clean shutdown), then hands over the data directory instead of
    /// removing it, for another server to start on.
    pub fn stop_keeping_data(mut self) -> PathBuf {
        self.terminate();
        self.keep_dir = true;
        self.dir.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Cluster nodes on loopback, each a [`Server`] started with `--node`, its peers and its
/// own data directory. Dropping it kills every node and removes their directories.
pub struct Cluster {
    pub nodes: Vec<Server>,
    /// Node names (`node-1`, ...), in the order of `nodes`.
    pub names: Vec<String>,
    /// Bus ports, in the order of `nodes`.
    pub bus_ports: Vec<u16>,
}

impl Cluster {
    /// `n` nodes with default settings.
    pub fn start(n: usize) -> Cluster {
        Cluster::with_args(n, &[])
    }

    /// `n` nodes, each with the extra flags `args` (`--port`, `--data`, `--node`,
    /// `--peers` and `--cluster-port` are chosen here).
    pub fn with_args(n: usize, args: &[&str]) -> Cluster {
        Cluster::with_dirs(
            (0..n)
                .map(|i| temp_dir(&format!("node{}", i + 1)))
                .collect(),
            args,
        )
    }

    /// One node per data directory in `dirs` (which may already hold data).
    pub fn with_dirs(dirs: Vec<PathBuf>, args: &[&str]) -> Cluster {
        let n = dirs.len();
        let names: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
        // The ports are free when picked, and each node binds its own soon after; should
        // another process take one meanwhile, every node starts again on new ports.
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let ports = free_ports(2 * n);
            let (ports, bus) = ports.split_at(n);
            let mut nodes = Vec::new();
            for (i, dir) in dirs.iter().enumerate() {
                let peers: Vec<String> = (0..n)
                    .filter(|&j| j != i)
                    .map(|j| format!("{}:127.0.0.1:{}:{}", names[j], ports[j], bus[j]))
                    .collect();
                let mut node_args: Vec<String> = vec![
                    "--node".into(),
                    names[i].clone(),
                    "--cluster-port".into(),
                    bus[i].to_string(),
                    "--threads".into(),
                    "2".into(),
                ];
                if !peers.is_empty() {
                    node_args.push("--peers".into());
                    node_args.push(peers.join(","));
                }
                node_args.extend(args.iter().map(|s| s.to_string()));
                match Server::try_launch(dir.clone(), ports[i], node_args) {
                    Ok(s) => nodes.push(s),
                    Err(log) => {
                        last_log = log;
                        break;
                    }
                }
            }
            if nodes.len() == n {
                let c = Cluster {
                    nodes,
                    names,
                    bus_ports: bus.to_vec(),
                };
                c.wait_replicated();
                return c;
            }
            // Stop what started, keeping the directories for the next attempt.
            for mut node in nodes {
                node.kill9();
                node.keep_dir = true;
            }
        }
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        panic!("cluster did not start; last log:\n{last_log}");
    }

    pub fn node(&self, i: usize) -> &Server {
        &self.nodes[i]
    }

    /// Waits until every node agrees on the membership and serves (the consensus elected
    /// a leader and each node is in contact with a majority: CLUSTER INFO says ok).
    pub fn wait_formed(&self) {
        let ok = eventually(Duration::from_secs(30), || {
            self.nodes.iter().all(|n| {
                n.raw()
                    .call(&["CLUSTER", "INFO"])
                    .contains("cluster_state:ok")
            })
        });
        if !ok {
            for n in &self.nodes {
                let log = n.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!(
                    "--- node on port {}: {}\n{}",
                    n.port,
                    n.raw().call(&["CLUSTER", "NODES"]),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            panic!("the cluster did not form");
        }
    }

    /// Waits until the cluster formed, and every node streams its slots to all their
    /// replicas and receives the streams of the slots it copies (a write quorum above 1
    /// needs them), as INFO replication says.
    pub fn wait_replicated(&self) {
        self.wait_formed();
        let ready = |n: &Server| {
            let info = n.raw().call(&["INFO", "replication"]);
            let field = |name: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(|v| v.trim().to_string())
            };
            match field("cluster_replicas:") {
                None => true,
                Some(expected) => {
                    field("connected_slaves:") == Some(expected)
                        && !info.contains("state=connecting")
                        && !info.contains("state=sync")
                        && !info.contains("state=send_bulk")
                }
            }
        };
        let ok = eventually(Duration::from_secs(30), || self.nodes.iter().all(ready));
        assert!(ok, "replication streams did not come up");
    }

    /// The index of the node listening on `port`.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.nodes.iter().position(|s| s.port == port)
    }

    /// `redis://` URLs of every node, for cluster clients.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }
}

/// `n` distinct loopback ports that were free a moment ago.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) with a pid we spawned; no memory is involved.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A raw RESP connection.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// Sends a command as a RESP array.
    pub fn cmd(&mut self, args: &[&[u8]]) {
        self.send(&encode(args));
    }

    /// Reads one complete reply and returns its raw bytes.
    pub fn read_reply(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = dse_proto::ReplyParser::frame_len(&self.buf).expect("valid reply") {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).expect("read reply");
            assert!(
                n > 0,
                "connection closed; had {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends a command and returns its raw reply as text.
    pub fn call(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.cmd(&args);
        String::from_utf8_lossy(&self.read_reply()).into_owned()
    }

    /// True once the server closed the connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1024];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
}

pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Polls `f` until it returns true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

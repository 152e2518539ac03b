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
    /// The address the server is reached at (127.0.0.1, or its network namespace's).
    pub host: String,
    pub port: u16,
    pub dir: PathBuf,
    args: Vec<String>,
    /// A command the server runs under (`ip netns exec NAME`), empty for none.
    wrapper: Vec<String>,
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
        Server::try_launch_in(dir, port, args, "127.0.0.1", Vec::new())
    }

    /// Starts a server reached at `host`, run under `wrapper` (a command prefix).
    fn try_launch_in(
        dir: PathBuf,
        port: u16,
        args: Vec<String>,
        host: &str,
        wrapper: Vec<String>,
    ) -> Result<Server, String> {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(env!("CARGO_BIN_EXE_dse-server"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_dse-server")),
        };
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
            host: host.to_string(),
            port,
            dir,
            args,
            wrapper,
            log,
            keep_dir: false,
        })
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://{}:{}/", self.host, self.port)
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
        let fresh = Server::try_launch_in(
            self.dir.clone(),
            self.port,
            self.args.clone(),
            &self.host,
            self.wrapper.clone(),
        )
        .unwrap_or_else(|log| panic!("dse-server did not restart; log:\n{log}"));
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
    /// The flags every node was given (a node added later gets them too).
    args: Vec<String>,
    /// When the nodes run in network namespaces: those (dropped after the nodes).
    pub netns: Option<Netns>,
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
        // The ports are free when picked, and each node binds its own soon after; should
        // another process take one meanwhile, every node starts again on new ports.
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let ports = free_ports(2 * n);
            let (ports, bus) = ports.split_at(n);
            let hosts = vec!["127.0.0.1".to_string(); n];
            match Cluster::launch(&dirs, args, &hosts, ports, bus, None) {
                Ok(c) => return c,
                Err(log) => last_log = log,
            }
        }
        for dir in &dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        panic!("cluster did not start; last log:\n{last_log}");
    }

    /// `n` nodes, each in a network namespace of its own (so a test can cut one off with
    /// nftables); `None`, saying why, when that cannot be done (it needs root).
    pub fn in_namespaces(n: usize, args: &[&str]) -> Option<Cluster> {
        let netns = match Netns::create(n) {
            Ok(ns) => ns,
            Err(why) => {
                println!("skipped: {why}");
                return None;
            }
        };
        let dirs: Vec<PathBuf> = (0..n)
            .map(|i| temp_dir(&format!("ns-node{}", i + 1)))
            .collect();
        let hosts: Vec<String> = (0..n).map(|i| netns.ip(i)).collect();
        match Cluster::launch(
            &dirs,
            args,
            &hosts,
            &vec![7000; n],
            &vec![17000; n],
            Some(netns),
        ) {
            Ok(c) => Some(c),
            Err(log) => panic!("cluster did not start in its namespaces; log:\n{log}"),
        }
    }

    fn launch(
        dirs: &[PathBuf],
        args: &[&str],
        hosts: &[String],
        ports: &[u16],
        bus: &[u16],
        netns: Option<Netns>,
    ) -> Result<Cluster, String> {
        let n = dirs.len();
        let names: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
        let mut nodes = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let peers: Vec<String> = (0..n)
                .filter(|&j| j != i)
                .map(|j| format!("{}:{}:{}:{}", names[j], hosts[j], ports[j], bus[j]))
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
            if netns.is_some() {
                // The node is reached at its namespace's address.
                node_args.extend(["--bind".to_string(), hosts[i].clone()]);
            }
            let wrapper = netns.as_ref().map_or(Vec::new(), |ns| ns.exec(i));
            match Server::try_launch_in(dir.clone(), ports[i], node_args, &hosts[i], wrapper) {
                Ok(s) => nodes.push(s),
                Err(log) => {
                    // Stop what started, keeping the directories for another attempt.
                    for mut node in nodes {
                        node.kill9();
                        node.keep_dir = true;
                    }
                    return Err(log);
                }
            }
        }
        let c = Cluster {
            nodes,
            names,
            bus_ports: bus.to_vec(),
            args: args.iter().map(|s| s.to_string()).collect(),
            netns,
        };
        c.wait_replicated();
        Ok(c)
    }

    /// Starts one more node with `--join` (no peers: it waits for CLUSTER MEET) and the
    /// cluster's flags; returns its index. Loopback clusters only.
    pub fn add_joining(&mut self) -> usize {
        let i = self.nodes.len();
        let name = format!("node-{}", i + 1);
        let ports = free_ports(2);
        let mut args: Vec<String> = vec![
            "--node".into(),
            name.clone(),
            "--join".into(),
            "--cluster-port".into(),
            ports[1].to_string(),
            "--threads".into(),
            "2".into(),
        ];
        args.extend(self.args.iter().cloned());
        let dir = temp_dir(&format!("node{}", i + 1));
        let srv = Server::try_launch(dir, ports[0], args)
            .unwrap_or_else(|log| panic!("the joining node did not start; log:\n{log}"));
        self.nodes.push(srv);
        self.names.push(name);
        self.bus_ports.push(ports[1]);
        i
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
    pub fn from_stream(s: TcpStream) -> Raw {
        Raw { s, buf: Vec::new() }
    }

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

/// The connection's CLIENT ID.
pub fn client_id(r: &mut Raw) -> u64 {
    let reply = r.call(&["CLIENT", "ID"]);
    reply
        .strip_prefix(':')
        .and_then(|s| s.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("CLIENT ID replied {reply:?}"))
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

/// Network namespaces for cluster nodes, one per node, joined by a bridge in the test's
/// own namespace, so a test can cut a node off from the others with nftables while it
/// still reaches every node itself. Needs root (`ip` and `nft`); dropping it deletes
/// them.
pub struct Netns {
    tag: String,
    subnet: String,
    n: usize,
}

static NEXT_NETNS: AtomicUsize = AtomicUsize::new(0);

fn run(cmd: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .output()
        .map_err(|e| format!("{}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    pub fn create(n: usize) -> Result<Netns, String> {
        // SAFETY: geteuid(2) has no preconditions and touches no memory.
        if unsafe { libc::geteuid() } != 0 {
            return Err("network namespaces need root (CI runs as root)".into());
        }
        for tool in ["ip", "nft"] {
            if Command::new(tool).arg("-V").output().is_err() {
                return Err(format!("`{tool}` is not installed (iproute2, nftables)"));
            }
        }
        let k = NEXT_NETNS.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() as usize * 7 + k) % 10_000;
        let ns = Netns {
            // Interface names have at most 15 bytes: "dse1234b", "dse1234v12".
            tag: format!("dse{id}"),
            subnet: format!("10.{}.{}", 100 + k % 100, id % 250),
            n,
        };
        ns.setup().inspect_err(|_| ns.teardown())?;
        Ok(ns)
    }

    fn name(&self, i: usize) -> String {
        format!("{}n{}", self.tag, i + 1)
    }

    /// The address of node `i`.
    pub fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.subnet, i + 1)
    }

    /// The command prefix that runs a program in node `i`'s namespace.
    pub fn exec(&self, i: usize) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.name(i)]
    }

    fn setup(&self) -> Result<(), String> {
        let bridge = format!("{}b", self.tag);
        run(&["ip", "link", "add", &bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}.254/24", self.subnet),
            "dev",
            &bridge,
        ])?;
        run(&["ip", "link", "set", &bridge, "up"])?;
        for i in 0..self.n {
            let name = self.name(i);
            let veth = format!("{}v{}", self.tag, i + 1);
            run(&["ip", "netns", "add", &name])?;
            run(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &name,
            ])?;
            run(&["ip", "link", "set", &veth, "master", &bridge])?;
            run(&["ip", "link", "set", &veth, "up"])?;
            let addr = format!("{}/24", self.ip(i));
            run(&[
                "ip", "netns", "exec", &name, "ip", "addr", "add", &addr, "dev", "eth0",
            ])?;
            run(&[
                "ip", "netns", "exec", &name, "ip", "link", "set", "eth0", "up",
            ])?;
            run(&[
                "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
            ])?;
        }
        Ok(())
    }

    /// Cuts node `i` off from every other node (both directions); the test still
    /// reaches it.
    pub fn isolate(&self, i: usize) {
        let others: Vec<String> = (0..self.n)
            .filter(|&j| j != i)
            .map(|j| self.ip(j))
            .collect();
        let set = others.join(", ");
        let rules = format!(
            "table inet dsepart {{\n\
             chain in {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n\
             chain out {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name(i), "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success(), "nft refused the rules");
    }

    /// Lets node `i` talk to the others again.
    pub fn heal(&self, i: usize) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name(i),
            "nft",
            "delete",
            "table",
            "inet",
            "dsepart",
        ])
        .expect("remove the partition");
    }

    fn teardown(&self) {
        for i in 0..self.n {
            let _ = run(&["ip", "netns", "del", &self.name(i)]);
            let _ = run(&["ip", "link", "del", &format!("{}v{}", self.tag, i + 1)]);
        }
        let _ = run(&["ip", "link", "del", &format!("{}b", self.tag)]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
    }
}

//! A private Apache Kafka node for one test, for faults the shared stack must not suffer (network
//! cuts, broker restarts). Started by the project's own `scripts/stack node up`, so it is the same
//! broker, version and settings as the shared stack's; killed when the handle drops.

// Shared by several test modules; not every one uses every accessor.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

/// How to start a [`PrivateBroker`].
#[derive(Debug, Default, Clone)]
pub struct BrokerOptions {
    /// The port to listen on (127.0.0.1); a free one when `None`.
    pub port: Option<u16>,
    /// The address advertised to clients (`host:port`); the listener's own address when `None`.
    /// Point it at a proxy to put the proxy in every connection clients make after bootstrap.
    pub advertised: Option<String>,
}

/// A Kafka node of the test's own: its directory holds its config, data, pid file and log.
pub struct PrivateBroker {
    dir: PathBuf,
    port: u16,
    controller_port: u16,
    advertised: String,
    pid: u32,
}

/// `scripts/stack`: `WAITTIMES_STACK_SCRIPT`, else the repository's own.
pub fn stack_script() -> PathBuf {
    std::env::var("WAITTIMES_STACK_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stack"))
}

/// A port nobody listens on right now (the OS's pick; another process could take it before use,
/// which would make the start fail loudly, not silently).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

impl PrivateBroker {
    /// Formats a new node and starts it; returns once it answers metadata requests.
    pub fn start(options: BrokerOptions) -> PrivateBroker {
        let dir = std::env::temp_dir().join(common::unique("kafka-node"));
        let port = options.port.unwrap_or_else(free_port);
        let advertised = options
            .advertised
            .unwrap_or_else(|| format!("127.0.0.1:{port}"));
        let mut broker = PrivateBroker {
            dir,
            port,
            controller_port: free_port(),
            advertised,
            pid: 0,
        };
        broker.up();
        broker
    }

    /// `scripts/stack node up` on this node's directory: a first start formats it, a later one
    /// restarts the broker on the same data.
    fn up(&mut self) {
        let out = Command::new(stack_script())
            .args(["node", "up"])
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(self.controller_port.to_string())
            .arg(&self.advertised)
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", stack_script().display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "scripts/stack node up {} failed ({}):\n{}\n{}",
            self.dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.pid = stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("scripts/stack node up printed no pid: {stdout}"));
    }

    /// SIGKILL, as a crashed broker or a lost machine: no controlled shutdown, the log not
    /// flushed beyond what the OS has.
    pub fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status();
        let proc = PathBuf::from(format!("/proc/{}", self.pid));
        while proc.exists() {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Starts the broker again on the same directory, ports and data.
    pub fn restart(&mut self) {
        self.up();
    }

    /// The address clients bootstrap from: the listener itself (metadata then sends them to the
    /// advertised address).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port the broker listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address advertised to clients.
    pub fn advertised(&self) -> &str {
        &self.advertised
    }

    /// The broker's output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Where the broker's output goes (kept when a test fails).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        // A test's node holds nothing worth a controlled shutdown.
        self.kill9();
        // Kept for a failing test, whose message can point at it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

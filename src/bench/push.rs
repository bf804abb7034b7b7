//! Step 4's push latency: a client holds `/stores/stream` open through the steady load and
//! notes when each probe store's first event arrives. Record timestamp → event covers the
//! producer, the broker, the consumer thread applying the record and publishing the answer, and
//! the stream writing it; set beside record → state, the difference is what the push path adds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Error, PROBE_BASE, Result};
use crate::clock;

/// What the push client saw.
#[derive(Debug, Default)]
pub(super) struct PushSeen {
    /// Probe store → wall clock (ms since the epoch) when its first `wait` event arrived.
    pub probes: HashMap<i32, i64>,
    pub events: u64,
    /// Why the stream ended before it was stopped, if it did.
    pub ended: Option<String>,
}

pub(super) struct PushWatcher {
    seen: Arc<Mutex<PushSeen>>,
    task: tokio::task::JoinHandle<()>,
}

impl PushWatcher {
    /// Opens the stream; returns once the service has answered with its headers.
    pub(super) async fn start(url: String) -> Result<PushWatcher> {
        // No overall timeout: the body lasts as long as the load.
        let client = reqwest::Client::builder().build()?;
        let response = client.get(&url).send().await?;
        if !response.status().is_success() {
            return Err(Error::Failed(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        let seen = Arc::new(Mutex::new(PushSeen::default()));
        let task = tokio::spawn(read(response, seen.clone()));
        Ok(PushWatcher { seen, task })
    }

    pub(super) fn stop(self) -> PushSeen {
        self.task.abort();
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

async fn read(mut response: reqwest::Response, seen: Arc<Mutex<PushSeen>>) {
    let mut buf = String::new();
    let ended = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let at = clock::now_ms();
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let Some(store) = wait_event_store(&block) else {
                        continue;
                    };
                    let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
                    s.events += 1;
                    if store >= PROBE_BASE {
                        s.probes.entry(store).or_insert(at);
                    }
                }
            }
            Ok(None) => break "the service ended the stream".to_owned(),
            Err(e) => break format!("reading the stream failed: {e}"),
        }
    };
    seen.lock().unwrap_or_else(PoisonError::into_inner).ended = Some(ended);
}

/// The store of a `wait` event block.
fn wait_event_store(block: &str) -> Option<i32> {
    let mut wait = false;
    let mut data = None;
    for line in block.lines() {
        if line == "event: wait" {
            wait = true;
        } else if let Some(d) = line.strip_prefix("data: ") {
            data = Some(d);
        }
    }
    if !wait {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(data?).ok()?;
    i32::try_from(v["store_id"].as_i64()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_store_of_wait_events_only() {
        let wait =
            "event: wait\nid: 0a0b0c0d-7\ndata: {\"store_id\":100000003,\"basis\":\"none\"}\n\n";
        assert_eq!(wait_event_store(wait), Some(100_000_003));
        assert_eq!(
            wait_event_store("event: removed\ndata: {\"store_id\":3}\n\n"),
            None
        );
        assert_eq!(wait_event_store(":heartbeat\n\n"), None);
        assert_eq!(wait_event_store("retry: 2000\n\n"), None);
    }
}

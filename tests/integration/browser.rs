//! The live page in a real browser: the system's headless Chromium driven by Playwright
//! (`tests/browser/page.mjs`, `playwright-core` installed by `tests/browser/setup.sh`) against the
//! service on the local stack. The page must show the stores, and a completion produced to Kafka
//! after it loaded must change the shown minute without a reload.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::{self, now_ms};
use crate::service::{Producer, Service, Topics};

const MINUTE: i64 = 60_000;

fn script_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}: run tests/browser/setup.sh (scripts/test does)",
        dir.display()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_stores_and_follows_a_new_completion() {
    common::require_stack();
    let dir = script_dir();
    let t = Topics::create(1).await;
    let mut p = Producer::new();
    let base = now_ms() - 30 * MINUTE;
    // Stores 1..=4 wait 6..=9 minutes; store 2 is the one the test changes.
    for store in 1..=4 {
        p.order(&t, store, 1, base).await;
        p.completed(
            &t,
            store,
            1,
            200,
            1500,
            base + (4 + i64::from(store)) * MINUTE,
        )
        .await;
    }
    let svc = Service::start(&t).await;
    svc.wait_ready().await;
    for store in 1..=4 {
        svc.wait_for_store(store, |b| b["observations"] == 1).await;
    }

    let node = std::env::var("WAITTIMES_TEST_NODE").unwrap_or_else(|_| "node".to_owned());
    let mut child = Command::new(&node)
        .current_dir(&dir)
        .arg("page.mjs")
        .arg(&svc.base)
        .arg("2")
        .args(std::env::var("WAITTIMES_TEST_SCREENSHOT").ok())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {node} (apt-get install nodejs): {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut read = move || {
        tokio::task::block_in_place(|| {
            let mut line = String::new();
            stdout
                .read_line(&mut line)
                .expect("read from the browser script");
            assert!(
                !line.is_empty(),
                "the browser script ended early (its errors are above)"
            );
            serde_json::from_str::<Value>(&line).expect("a JSON line")
        })
    };

    let loaded = read();
    assert_eq!(loaded["loaded"], "6", "store 2 waits 6 minutes: {loaded}");
    assert_eq!(
        loaded["stores"],
        serde_json::json!([1, 2, 3, 4]),
        "{loaded}"
    );
    assert_eq!(
        loaded["overflow"], false,
        "the page is wider than a phone: {loaded}"
    );
    assert_eq!(loaded["status"], "live", "{loaded}");

    // Two more orders of store 2 waiting 30 minutes move its median well away from 6.
    for id in [2, 3] {
        let placed = base + MINUTE;
        p.order(&t, 2, id, placed).await;
        p.completed(&t, 2, id, 200, 1500, placed + 30 * MINUTE)
            .await;
    }
    let now = svc.wait_for_store(2, |b| b["observations"] == 3).await;
    let minutes = now["wait_time_minutes"].as_i64().expect("a live value");
    assert_ne!(minutes, 6, "{now}");
    tokio::task::block_in_place(|| writeln!(stdin, "{minutes}").expect("tell the browser script"));
    let changed = read();
    assert_eq!(changed["changed"], minutes.to_string(), "{changed}");
    assert_eq!(changed["reloads"], 0, "{changed}");
    let status = tokio::task::block_in_place(|| child.wait()).expect("wait for node");
    assert!(status.success(), "the browser script failed: {status}");
    svc.stop().await;
}

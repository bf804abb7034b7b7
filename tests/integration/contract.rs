//! The API contract, fuzzed against the live service on the local stack: schemathesis (from
//! PyPI, in the virtualenv `tests/contract/setup.sh` makes) reads `/openapi.json` and sends
//! generated valid and invalid requests to every route; every response must conform to the
//! document (status, content type, headers, body schema), nothing may be a 5xx, and invalid
//! input must be refused. The push routes' streams are ended after a moment by a short
//! `http.stream_max_age`, so their initial response is checked like any other.

use std::process::Command;

use crate::common::{self, now_ms};
use crate::service::{Producer, Service, Topics};

const MINUTE: i64 = 60_000;

/// The schemathesis CLI: `WAITTIMES_TEST_SCHEMATHESIS`, else the virtualenv's default place.
fn schemathesis() -> String {
    if let Ok(path) = std::env::var("WAITTIMES_TEST_SCHEMATHESIS") {
        return path;
    }
    let home = std::env::var("WAITTIMES_STACK_HOME").unwrap_or_else(|_| {
        format!(
            "{}/.local/share/waittimes-stack",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let path = format!("{home}/contract-venv/bin/st");
    assert!(
        std::path::Path::new(&path).exists(),
        "no schemathesis at {path}: run tests/contract/setup.sh (scripts/test does) or set \
         WAITTIMES_TEST_SCHEMATHESIS"
    );
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_conforms_to_the_openapi_document() {
    common::require_stack();
    let st = schemathesis();
    let t = Topics::create(1).await;
    let mut p = Producer::new();
    let base = now_ms() - 30 * MINUTE;
    for store in 1..=3 {
        for i in 0..3 {
            let placed = base + i64::from(i) * MINUTE;
            p.order(&t, store, i, placed).await;
            p.completed(
                &t,
                store,
                i,
                200,
                1500,
                placed + (5 + i64::from(store)) * MINUTE,
            )
            .await;
        }
    }
    p.order(&t, 4, 1, base).await;
    let svc = Service::start_with(
        &t,
        &[("WAITTIMES__HTTP__STREAM_MAX_AGE", "300ms".to_owned())],
    )
    .await;
    svc.wait_ready().await;
    for store in 1..=3 {
        svc.wait_for_store(store, |b| b["observations"] == 3).await;
    }
    let report = std::env::temp_dir().join(common::unique("schemathesis-report"));
    let url = format!("{}/openapi.json", svc.base);
    let report_dir = report.to_string_lossy().into_owned();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&st)
            .args([
                "run",
                &url,
                "--checks",
                "all",
                "--workers",
                "2",
                "--max-examples",
                "40",
                "--request-timeout",
                "10",
                "--seed",
                "15",
                "--no-color",
                "--report-dir",
                &report_dir,
            ])
            .output()
            .unwrap_or_else(|e| panic!("could not run {st}: {e}"))
    })
    .await
    .expect("schemathesis thread");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found contract violations ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Every operation ran (none skipped for an unreadable schema).
    let tested = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .unwrap_or_else(|| panic!("no count of tested operations in\n{stdout}"));
    assert!(
        stdout.contains(&format!("Selected: {tested}/{tested}")),
        "not every operation was tested:\n{stdout}"
    );
    let (_, metrics) = crate::service::raw_get(&svc, "/metrics").await;
    assert!(
        metrics.contains("waittimes_http_stream_events_total{kind=\"wait\"}"),
        "{metrics}"
    );
    svc.stop().await;
    let _ = std::fs::remove_dir_all(report);
}

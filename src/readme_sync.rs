//! Keeps README.md's configuration and metrics references, and the metric names the deploy
//! files query, equal to the code.
//!
//! Both are generated blocks between HTML comment markers: the configuration table from
//! [`crate::config::reference_markdown`] (itself tested against the config structs), the metrics
//! table from the OpenMetrics text the service really serves. A key or metric added without
//! regenerating the README fails here; `WAITTIMES_UPDATE_README=1 cargo test --lib readme_sync`
//! rewrites the blocks in place.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::answers::Answers;
use crate::domain::{InputKind, StoreWait};
use crate::health::{Condition, Health};
use crate::metrics::Metrics;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const UPDATE_VAR: &str = "WAITTIMES_UPDATE_README";
const CONFIG_BLOCK: &str = "config-reference";
const METRICS_BLOCK: &str = "metrics-reference";

/// Serialises the tests of this module: in update mode both rewrite the same file.
static README_LOCK: Mutex<()> = Mutex::new(());

fn markers(block: &str) -> (String, String) {
    (
        format!(
            "<!-- {block}:start (generated: {UPDATE_VAR}=1 cargo test --lib readme_sync) -->\n"
        ),
        format!("<!-- {block}:end -->"),
    )
}

/// The text between the block's markers, and its byte range in `readme`.
fn block_of<'a>(readme: &'a str, block: &str) -> (&'a str, std::ops::Range<usize>) {
    let (start, end) = markers(block);
    let from = readme
        .find(&start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("README.md has no line {:?}", start.trim_end()));
    let to = readme[from..]
        .find(&end)
        .map(|i| from + i)
        .unwrap_or_else(|| panic!("README.md has no line {end:?} after the {block} start marker"));
    (&readme[from..to], from..to)
}

/// Compares the README block with `expected`; in update mode rewrites it instead.
fn check_block(block: &str, expected: &str) {
    let _guard = README_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let readme = std::fs::read_to_string(README).expect("read README.md");
    let (actual, range) = block_of(&readme, block);
    if actual == expected {
        return;
    }
    if std::env::var_os(UPDATE_VAR).is_some() {
        let mut updated = readme.clone();
        updated.replace_range(range, expected);
        std::fs::write(README, updated).expect("write README.md");
        return;
    }
    panic!(
        "README.md's {block} block differs from the code.\n\
         Regenerate it with `{UPDATE_VAR}=1 cargo test --lib readme_sync` and review the diff.\n\
         --- README.md ---\n{actual}\n--- expected ---\n{expected}"
    );
}

#[test]
fn config_reference_is_generated_from_the_keys() {
    check_block(CONFIG_BLOCK, &crate::config::reference_markdown());
}

/// Metrics with every labelled family holding at least one series, so the exposition shows
/// each family's labels.
fn populated_metrics() -> Metrics {
    let snapshot = Answers::default();
    let health = Arc::new(Health::new());
    let metrics = Metrics::new(
        |kind| {
            match kind {
                InputKind::Orders => "pizza_orders_avro",
                InputKind::Completed => "pizza_orders_completed_avro",
                InputKind::Cancelled => "pizza_orders_cancelled_avro",
            }
            .to_owned()
        },
        snapshot.clone(),
        health.clone(),
    );
    health.set_ok(Condition::CaughtUp);
    crate::metrics::PartitionLag {
        topic: "pizza_orders_avro",
        partition: 0,
        lag: 0,
    }
    .emit(&metrics);
    crate::metrics::HttpRequestServed {
        route: "/stores/{id}/wait",
        status: 200,
    }
    .emit(&metrics);
    snapshot.publish(StoreWait::without_events(3, Some(7)));
    metrics
}

/// One metric family of an OpenMetrics exposition.
#[derive(Debug, Default)]
struct Family {
    name: String,
    kind: String,
    unit: Option<String>,
    help: String,
    labels: BTreeSet<String>,
    samples: usize,
}

/// The label names of a sample line's `{...}` part; values are quoted and may escape `"`.
fn label_names(labels: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = labels.chars().peekable();
    loop {
        let name: String = chars
            .by_ref()
            .take_while(|&c| c != '=')
            .collect::<String>()
            .trim_start_matches(',')
            .trim()
            .to_owned();
        if name.is_empty() {
            return names;
        }
        names.push(name);
        assert_eq!(
            chars.next(),
            Some('"'),
            "label value must be quoted: {labels}"
        );
        let mut escaped = false;
        for c in chars.by_ref() {
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => break,
                _ => escaped = false,
            }
        }
    }
}

fn parse_families(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (Some(what), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let value = parts.next().unwrap_or("").to_owned();
            if families.last().is_none_or(|f| f.name != name) {
                families.push(Family {
                    name: name.to_owned(),
                    ..Family::default()
                });
            }
            let family = families.last_mut().expect("pushed above");
            match what {
                "HELP" => family.help = value,
                "TYPE" => family.kind = value,
                "UNIT" => family.unit = Some(value),
                _ => {}
            }
            continue;
        }
        let series = line.split(' ').next().unwrap_or("");
        let (metric, labels) = match series.split_once('{') {
            Some((m, l)) => (m, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = families
            .iter_mut()
            .rev()
            .find(|f| {
                metric == f.name
                    || metric
                        .strip_prefix(f.name.as_str())
                        .is_some_and(|s| s.starts_with('_'))
            })
            .unwrap_or_else(|| panic!("sample {metric} belongs to no family"));
        family.samples += 1;
        family
            .labels
            .extend(label_names(labels).into_iter().filter(|l| l != "le"));
    }
    families
}

/// How a family is queried in PromQL: OpenMetrics suffixes counters and infos, and splits a
/// histogram into three series.
fn query_names(f: &Family) -> String {
    match f.kind.as_str() {
        "counter" => format!("`{}_total`", f.name),
        "info" => format!("`{}_info`", f.name),
        "histogram" => format!("`{n}_bucket`, `{n}_sum`, `{n}_count`", n = f.name.as_str()),
        _ => format!("`{}`", f.name),
    }
}

fn metrics_markdown(families: &[Family]) -> String {
    let mut out = String::from("| metric | type | labels | description |\n|---|---|---|---|\n");
    for f in families {
        let labels = if f.labels.is_empty() {
            "—".to_owned()
        } else {
            f.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let unit = f
            .unit
            .as_deref()
            .map(|u| format!(" ({u})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "| {} | {}{} | {} | {} |\n",
            query_names(f),
            f.kind,
            unit,
            labels,
            f.help.trim_end_matches('.').replace('|', "\\|")
        ));
    }
    out
}

#[test]
fn metrics_reference_lists_exactly_the_exposed_families() {
    let text = populated_metrics().render().expect("render the metrics");
    let families = parse_families(&text);
    assert!(
        families.len() >= 10,
        "parsed only {} families from:\n{text}",
        families.len()
    );
    for f in &families {
        assert!(
            f.samples > 0,
            "{} has no series in the test registry, so its labels cannot be documented: \
             give it one in populated_metrics()",
            f.name
        );
        assert!(!f.kind.is_empty(), "{} has no # TYPE line", f.name);
    }
    check_block(METRICS_BLOCK, &metrics_markdown(&families));
}

/// Files whose queries name metrics: a renamed metric must not silently blank a dashboard
/// panel or disarm an alert.
const OPS_FILES: [&str; 3] = [
    "deploy/grafana/dashboards/waittimes.json",
    "deploy/prometheus/alerts.yml",
    "deploy/prometheus/alerts_test.yml",
];

/// Words that look like metric names but are the service's default topic names.
const NOT_METRICS: [&str; 2] = ["waittimes_avro", "waittimes_dlq"];

#[test]
fn dashboards_and_alerts_query_exposed_series() {
    let text = populated_metrics().render().expect("render the metrics");
    let series: BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut unknown = Vec::new();
    let mut seen = 0;
    for file in OPS_FILES {
        let path = format!("{}/{file}", env!("CARGO_MANIFEST_DIR"));
        let content = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut rest = content.as_str();
        while let Some(at) = rest.find("waittimes_") {
            let word: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + word.len()..];
            if NOT_METRICS.contains(&word.as_str()) {
                continue;
            }
            seen += 1;
            if !series.contains(word.as_str()) {
                unknown.push(format!("{file}: {word}"));
            }
        }
    }
    assert!(
        seen >= 10,
        "found only {seen} metric names in {OPS_FILES:?}"
    );
    assert!(
        unknown.is_empty(),
        "these names are not series the service exposes: {unknown:#?}\nexposed: {series:#?}"
    );
}

#[test]
fn label_names_skip_quoted_values() {
    assert_eq!(
        label_names(r#"topic="a,b=\"c\"",outcome="x""#),
        vec!["topic".to_owned(), "outcome".to_owned()]
    );
    assert!(label_names("").is_empty());
}

#[test]
fn families_take_their_suffixed_samples() {
    let text = "# HELP x_events Events.\n# TYPE x_events counter\n\
                x_events_total{topic=\"t\",outcome=\"o\"} 1\n\
                # HELP x_lat Latency.\n# TYPE x_lat histogram\n# UNIT x_lat seconds\n\
                x_lat_bucket{le=\"0.1\"} 0\nx_lat_sum 0\nx_lat_count 0\n# EOF\n";
    let families = parse_families(text);
    assert_eq!(families.len(), 2);
    assert_eq!(families[0].samples, 1);
    assert_eq!(
        families[0].labels.iter().collect::<Vec<_>>(),
        vec!["outcome", "topic"]
    );
    assert_eq!(families[1].samples, 3);
    assert!(
        families[1].labels.is_empty(),
        "le is not a label to document"
    );
    assert_eq!(families[1].unit.as_deref(), Some("seconds"));
    let table = metrics_markdown(&families);
    assert!(table.contains("| `x_events_total` | counter | `outcome`, `topic` | Events |"));
    assert!(table.contains("| `x_lat_bucket`, `x_lat_sum`, `x_lat_count` | histogram (seconds) |"));
}

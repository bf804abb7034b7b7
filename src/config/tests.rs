use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::state::Estimator;

// ---- helpers -------------------------------------------------------------------------------

/// A fresh scratch directory per call (no process-wide state, safe under parallel tests),
/// removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch_dir(name: &str) -> Scratch {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "waittimes-config-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn no_env() -> EnvVars {
    EnvVars::from_vars(Vec::<(String, String)>::new())
}

fn env(vars: &[(&str, &str)]) -> EnvVars {
    EnvVars::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn load_toml(text: &str) -> Result<Config, Error> {
    let dir = scratch_dir("toml");
    let path = write(&dir, "c.toml", text);
    Config::load_with_env(Some(&path), no_env())
}

fn load_env(vars: &[(&str, &str)]) -> Result<Config, Error> {
    Config::load_with_env(None, env(vars))
}

fn ok(r: Result<Config, Error>) -> Config {
    match r {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn err(r: Result<Config, Error>) -> Error {
    match r {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

fn manifest(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

const ALL_KEYS_HAVE_ENV: &[&str] = &[
    "WAITTIMES__KAFKA__BOOTSTRAP_SERVERS",
    "WAITTIMES__SCHEMA_REGISTRY__URL",
    "WAITTIMES__HTTP__LISTEN",
    "WAITTIMES__KAFKA__GROUP_ID",
    "WAITTIMES__TOPICS__ORDERS",
    "WAITTIMES__TOPICS__COMPLETED",
    "WAITTIMES__TOPICS__CANCELLED",
    "WAITTIMES__TOPICS__WAIT_TIMES",
    "WAITTIMES__TOPICS__DEAD_LETTER",
];

// ---- defaults --------------------------------------------------------------------------------

#[test]
fn defaults_without_file_or_env() {
    let c = ok(Config::load_with_env(None, no_env()));
    assert_eq!(c, Config::default());
    assert_eq!(c.kafka.group_id, "waittimes");
    assert_eq!(c.bootstrap_servers(), "127.0.0.1:9092");
    assert_eq!(
        c.topics.inputs(),
        [
            "pizza_orders_avro",
            "pizza_orders_completed_avro",
            "pizza_orders_cancelled_avro"
        ]
    );
    assert_eq!(c.topics.wait_times, "waittimes_avro");
    assert_eq!(c.topics.dead_letter, "waittimes_dlq");
    assert_eq!(c.state.window, Duration::from_secs(1800));
    assert_eq!(c.state.match_ttl, Duration::from_secs(600));
    assert_eq!(c.state.open_ttl, Duration::from_secs(7200));
    assert_eq!(c.state.replay_horizon, None);
    assert_eq!(c.replay_horizon(), Duration::from_secs(9000));
    assert_eq!(c.state.estimator, Estimator::P50);
    assert_eq!(c.output.emit_interval, Duration::from_secs(1));
    assert_eq!(c.http.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.http.request_timeout, Duration::from_secs(5));
    assert_eq!(c.log.format, LogFormat::Human);
    assert_eq!(c.log.level, "info");
    let sr = c.schema_registry();
    assert_eq!(sr.urls, vec!["http://127.0.0.1:8081".to_owned()]);
    assert_eq!(sr.basic_auth, None);
    assert_eq!(sr.timeout, Duration::from_secs(10));
    assert!(c.warnings().is_empty());
    assert!(c.validate().is_ok());
}

#[test]
fn empty_file_is_the_defaults() {
    assert_eq!(ok(load_toml("")), Config::default());
    assert_eq!(
        ok(load_toml("# nothing\n[kafka]\n[state]\n")),
        Config::default()
    );
}

#[test]
fn default_client_configs() {
    let c = Config::default();
    let consumer = c.consumer_config();
    assert_eq!(consumer.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    assert_eq!(consumer.get("group.id"), Some("waittimes"));
    assert_eq!(consumer.get("client.id"), Some("waittimes"));
    assert_eq!(
        consumer.get("enable.auto.commit"),
        None,
        "commit policy is the pipeline's"
    );
    let producer = c.producer_config();
    assert_eq!(producer.get("bootstrap.servers"), Some("127.0.0.1:9092"));
    assert_eq!(producer.get("group.id"), None);
    assert_eq!(c.admin_config().get("group.id"), None);
    for cfg in [consumer, producer, c.admin_config()] {
        cfg.create_native_config().unwrap();
    }
}

// ---- file and environment ----------------------------------------------------------------

#[test]
fn file_values_are_read() {
    let c = ok(load_toml(
        r#"
[kafka]
bootstrap_servers = "b1:9092,b2:9093"
group_id = "g"
[kafka.properties]
"fetch.min.bytes" = 1000000
fetch.wait.max.ms = 100
"enable.partition.eof" = false
[schema_registry]
url = "https://sr1.example.com/, https://sr2.example.com:8443"
username = "u"
password = "p"
timeout = "3s"
[topics]
orders = "o"
completed = "c"
cancelled = "x"
wait_times = "w"
dead_letter = "d"
[state]
window = "15m"
match_ttl = "1m"
open_ttl = "1h"
replay_horizon = "3h"
estimator = "queue"
[output]
emit_interval = "250ms"
[http]
listen = "127.0.0.1:0"
request_timeout = "2s"
[log]
format = "json"
level = "waittimes=debug,rdkafka=warn"
"#,
    ));
    assert_eq!(c.bootstrap_servers(), "b1:9092,b2:9093");
    let consumer = c.consumer_config();
    assert_eq!(consumer.get("group.id"), Some("g"));
    assert_eq!(consumer.get("fetch.min.bytes"), Some("1000000"));
    assert_eq!(consumer.get("fetch.wait.max.ms"), Some("100"));
    assert_eq!(consumer.get("enable.partition.eof"), Some("false"));
    assert_eq!(
        c.producer_config().get("fetch.min.bytes"),
        None,
        "consumer-only"
    );
    let sr = c.schema_registry();
    assert_eq!(
        sr.urls,
        vec!["https://sr1.example.com", "https://sr2.example.com:8443"]
    );
    let auth = sr.basic_auth.unwrap();
    assert_eq!((auth.username.as_str(), auth.password.expose()), ("u", "p"));
    assert_eq!(sr.timeout, Duration::from_secs(3));
    assert_eq!(c.topics.inputs(), ["o", "c", "x"]);
    assert_eq!(c.replay_horizon(), Duration::from_secs(3 * 3600));
    assert_eq!(c.state.estimator, Estimator::Queue);
    assert_eq!(c.output.emit_interval, Duration::from_millis(250));
    assert_eq!(c.http.listen.port(), 0);
    assert_eq!(c.log.format, LogFormat::Json);
}

#[test]
fn env_overrides_file() {
    let dir = scratch_dir("precedence");
    let path = write(
        &dir,
        "c.toml",
        "[kafka]\ngroup_id = \"from-file\"\nbootstrap_servers = \"file:9092\"\n[topics]\norders = \"file_orders\"\n",
    );
    let c = ok(Config::load_with_env(
        Some(&path),
        env(&[
            ("WAITTIMES__KAFKA__GROUP_ID", "from-env"),
            ("UNRELATED", "x"),
        ]),
    ));
    assert_eq!(c.kafka.group_id, "from-env");
    assert_eq!(c.bootstrap_servers(), "file:9092");
    assert_eq!(c.topics.orders, "file_orders");
    assert_eq!(c.topics.completed, "pizza_orders_completed_avro");
}

#[test]
fn every_named_env_override() {
    let c = ok(load_env(&[
        ("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", "kafka-1:19092"),
        ("WAITTIMES__SCHEMA_REGISTRY__URL", "http://registry:18081"),
        ("WAITTIMES__HTTP__LISTEN", "127.0.0.1:9999"),
        ("WAITTIMES__KAFKA__GROUP_ID", "grp"),
        ("WAITTIMES__TOPICS__ORDERS", "t_orders"),
        ("WAITTIMES__TOPICS__COMPLETED", "t_completed"),
        ("WAITTIMES__TOPICS__CANCELLED", "t_cancelled"),
        ("WAITTIMES__TOPICS__WAIT_TIMES", "t_wait"),
        ("WAITTIMES__TOPICS__DEAD_LETTER", "t_dlq"),
    ]));
    assert_eq!(c.bootstrap_servers(), "kafka-1:19092");
    assert_eq!(
        c.consumer_config().get("bootstrap.servers"),
        Some("kafka-1:19092")
    );
    assert_eq!(c.schema_registry().urls, vec!["http://registry:18081"]);
    assert_eq!(c.http.listen, "127.0.0.1:9999".parse().unwrap());
    assert_eq!(c.consumer_config().get("group.id"), Some("grp"));
    assert_eq!(c.topics.orders, "t_orders");
    assert_eq!(c.topics.completed, "t_completed");
    assert_eq!(c.topics.cancelled, "t_cancelled");
    assert_eq!(c.topics.wait_times, "t_wait");
    assert_eq!(c.topics.dead_letter, "t_dlq");
    for var in ALL_KEYS_HAVE_ENV {
        assert!(
            KEYS.iter().any(|k| k.env_var() == *var),
            "{var} is not documented"
        );
    }
}

#[test]
fn env_overrides_every_other_key() {
    let c = ok(load_env(&[
        ("WAITTIMES__STATE__WINDOW", "5m"),
        ("WAITTIMES__STATE__MATCH_TTL", "2m"),
        ("WAITTIMES__STATE__OPEN_TTL", "1h"),
        ("WAITTIMES__STATE__REPLAY_HORIZON", "90m"),
        ("WAITTIMES__STATE__ESTIMATOR", "p90"),
        ("WAITTIMES__OUTPUT__EMIT_INTERVAL", "2s"),
        ("WAITTIMES__FEATURES__WINDOW", "2m"),
        ("WAITTIMES__FEATURES__GRACE", "30s"),
        ("WAITTIMES__HTTP__REQUEST_TIMEOUT", "1s"),
        ("WAITTIMES__LOG__FORMAT", "json"),
        ("WAITTIMES__LOG__LEVEL", "debug"),
        ("WAITTIMES__SCHEMA_REGISTRY__USERNAME", "u"),
        ("WAITTIMES__SCHEMA_REGISTRY__PASSWORD", "p"),
        ("WAITTIMES__SCHEMA_REGISTRY__TIMEOUT", "1s"),
        ("WAITTIMES__KAFKA__PROPERTIES__FETCH_MIN_BYTES", "1000000"),
        (
            "WAITTIMES__KAFKA__PROPERTIES__SECURITY__PROTOCOL",
            "SASL_SSL",
        ),
    ]));
    assert_eq!(c.state.window, Duration::from_secs(300));
    assert_eq!(c.state.match_ttl, Duration::from_secs(120));
    assert_eq!(c.state.open_ttl, Duration::from_secs(3600));
    assert_eq!(c.replay_horizon(), Duration::from_secs(5400));
    assert_eq!(c.state.estimator, Estimator::P90);
    assert_eq!(c.output.emit_interval, Duration::from_secs(2));
    assert_eq!(c.features.window, Duration::from_secs(120));
    assert_eq!(c.features.grace, Duration::from_secs(30));
    assert_eq!(c.http.request_timeout, Duration::from_secs(1));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "debug");
    assert_eq!(c.schema_registry().basic_auth.unwrap().username, "u");
    assert_eq!(c.schema_registry().timeout, Duration::from_secs(1));
    assert_eq!(c.kafka.properties.get("fetch.min.bytes"), Some("1000000"));
    assert_eq!(
        c.consumer_config().get("security.protocol"),
        Some("SASL_SSL")
    );
}

#[test]
fn env_sets_file_paths_relative_to_cwd() {
    let dir = scratch_dir("envpath");
    let props = write(&dir, "client.properties", "bootstrap.servers=cloud:9092\n");
    let c = ok(load_env(&[(
        "WAITTIMES__KAFKA__CLIENT_PROPERTIES",
        props.to_str().unwrap(),
    )]));
    assert_eq!(c.bootstrap_servers(), "cloud:9092");
}

// ---- unknown keys ----------------------------------------------------------------------------

#[test]
fn unknown_key_in_file_is_named() {
    let e = err(load_toml("[kafka]\nbootstrapservers = \"x:1\"\n"));
    assert_eq!(e.key(), Some("kafka.bootstrapservers"));
    let msg = e.to_string();
    assert!(
        msg.starts_with("unknown key `kafka.bootstrapservers` (in config file `"),
        "{msg}"
    );
    assert!(
        msg.contains("bootstrap_servers"),
        "suggests the known keys: {msg}"
    );

    let e = err(load_toml("[kafak]\nx = 1\n"));
    assert_eq!(e.key(), Some("kafak"));
    let e = err(load_toml("[state]\nwindow = \"1m\"\n[state.extra]\n"));
    assert_eq!(e.key(), Some("state.extra"));
}

#[test]
fn unknown_key_in_env_is_named_with_the_variable() {
    let e = err(load_env(&[("WAITTIMES__KAFKA__BOOTSTRAPSERVERS", "x:1")]));
    assert_eq!(e.key(), Some("kafka.bootstrapservers"));
    let msg = e.to_string();
    assert!(
        msg.starts_with(
            "unknown key `kafka.bootstrapservers` (from env WAITTIMES__KAFKA__BOOTSTRAPSERVERS)"
        ),
        "{msg}"
    );
    let e = err(load_env(&[("WAITTIMES__TOPIC__ORDERS", "x")]));
    assert!(
        e.to_string()
            .contains("unknown key `topic` (from env WAITTIMES__TOPIC"),
        "{e}"
    );
}

#[test]
fn malformed_env_name_is_an_error() {
    let e = err(load_env(&[("WAITTIMES__KAFKA____GROUP_ID", "x")]));
    assert!(
        e.to_string().contains("WAITTIMES__KAFKA____GROUP_ID"),
        "{e}"
    );
}

#[test]
fn unknown_librdkafka_property_is_named() {
    let e = err(load_toml("[kafka.properties]\n\"fetch.min.byte\" = 1\n"));
    assert_eq!(e.key(), Some("kafka.properties.\"fetch.min.byte\""));
    assert!(e.to_string().contains("no such property"), "{e}");
    assert!(
        e.to_string().contains("(in config file `"),
        "names the file: {e}"
    );
    let e = err(load_env(&[(
        "WAITTIMES__KAFKA__PROPERTIES__FETCH_MIN_BYTE",
        "1",
    )]));
    assert_eq!(e.key(), Some("kafka.properties.\"fetch.min.byte\""));
    assert!(
        e.to_string()
            .contains("(from env WAITTIMES__KAFKA__PROPERTIES__FETCH_MIN_BYTE)"),
        "{e}"
    );
    let e = err(load_toml(
        "[kafka.properties]\n\"schema.registry.url\" = \"http://x\"\n",
    ));
    assert!(e.to_string().contains("[schema_registry]"), "{e}");
}

// ---- bad values ------------------------------------------------------------------------------

#[test]
fn each_bad_value_names_its_key() {
    let cases: &[(&str, &str)] = &[
        ("[state]\nwindow = \"0s\"", "state.window"),
        ("[state]\nwindow = \"half an hour\"", "state.window"),
        ("[state]\nwindow = 30", "state.window"),
        ("[state]\nmatch_ttl = \"0ms\"", "state.match_ttl"),
        ("[state]\nopen_ttl = \"0s\"", "state.open_ttl"),
        ("[state]\nreplay_horizon = \"0s\"", "state.replay_horizon"),
        ("[state]\nreplay_horizon = \"soon\"", "state.replay_horizon"),
        ("[state]\nestimator = \"p99\"", "state.estimator"),
        ("[output]\nemit_interval = \"0s\"", "output.emit_interval"),
        (
            "[kafka.properties]\n\"statistics.interval.ms\" = \"0\"",
            "kafka.properties.\"statistics.interval.ms\"",
        ),
        ("[http]\nlisten = \"localhost\"", "http.listen"),
        ("[http]\nlisten = \"0.0.0.0:99999\"", "http.listen"),
        ("[http]\nrequest_timeout = \"0s\"", "http.request_timeout"),
        ("[http]\nmax_streams = 0", "http.max_streams"),
        ("[http]\nstream_heartbeat = \"0s\"", "http.stream_heartbeat"),
        ("[http]\nstream_max_age = \"0s\"", "http.stream_max_age"),
        (
            "[schema_registry]\nurl = \"ftp://registry\"",
            "schema_registry.url",
        ),
        (
            "[schema_registry]\nurl = \"registry:8081\"",
            "schema_registry.url",
        ),
        (
            "[schema_registry]\nurl = \"http://ok:8081,http://bad:port\"",
            "schema_registry.url",
        ),
        ("[schema_registry]\nurl = \" , \"", "schema_registry.url"),
        (
            "[schema_registry]\ntimeout = \"0s\"",
            "schema_registry.timeout",
        ),
        (
            "[schema_registry]\npassword = \"p\"",
            "schema_registry.password",
        ),
        (
            "[schema_registry]\nproperties_file = \"/nonexistent/schema.properties\"",
            "schema_registry.properties_file",
        ),
        ("[topics]\norders = \"\"", "topics.orders"),
        ("[topics]\ncompleted = \"has space\"", "topics.completed"),
        ("[topics]\ncancelled = \"..\"", "topics.cancelled"),
        (
            "[topics]\ndead_letter = \"pizza_orders_avro\"",
            "topics.dead_letter",
        ),
        ("[topics]\nwait_times = \"ünïcode\"", "topics.wait_times"),
        (
            "[kafka]\nbootstrap_servers = \"<bootstrap url>\"",
            "kafka.bootstrap_servers",
        ),
        (
            "[kafka]\nbootstrap_servers = \"a:1,,b:2\"",
            "kafka.bootstrap_servers",
        ),
        (
            "[kafka]\nbootstrap_servers = \"host:ninety\"",
            "kafka.bootstrap_servers",
        ),
        ("[kafka]\ngroup_id = \" \"", "kafka.group_id"),
        (
            "[kafka]\nclient_properties = \"/nonexistent/client.properties\"",
            "kafka.client_properties",
        ),
        (
            "[kafka.properties]\n\"fetch.min.bytes\" = \"lots\"",
            "kafka.properties.\"fetch.min.bytes\"",
        ),
        (
            "[kafka.properties]\n\"fetch.min.bytes\" = [[1]]",
            "kafka.properties",
        ),
        ("[log]\nformat = \"xml\"", "log.format"),
        ("[log]\nlevel = \"info,[\"", "log.level"),
    ];
    for (toml, key) in cases {
        let e = err(load_toml(toml));
        let keys: Vec<_> = e.iter().filter_map(Error::key).collect();
        assert!(keys.contains(key), "{toml:?}: expected key {key}, got {e}");
        assert!(
            e.to_string().contains(key.trim_matches('"')),
            "{toml:?}: message does not name {key}: {e}"
        );
    }
}

#[test]
fn unknown_enum_value_lists_the_choices() {
    let e = err(load_env(&[("WAITTIMES__STATE__ESTIMATOR", "p99")]));
    assert_eq!(
        e.to_string(),
        "invalid value for `state.estimator` (from env WAITTIMES__STATE__ESTIMATOR): unknown value `p99`; \
         expected one of: mean, p50, p90, queue, backlog"
    );
}

#[test]
fn long_topic_name() {
    let name = "a".repeat(250);
    let e = err(load_env(&[("WAITTIMES__TOPICS__ORDERS", &name)]));
    assert_eq!(e.key(), Some("topics.orders"));
    assert!(
        e.to_string().contains("WAITTIMES__TOPICS__ORDERS"),
        "names the source: {e}"
    );
    ok(load_env(&[("WAITTIMES__TOPICS__ORDERS", &"a".repeat(249))]));
}

#[test]
fn bad_env_value_names_key_and_variable() {
    let e = err(load_env(&[("WAITTIMES__HTTP__LISTEN", "nope")]));
    assert_eq!(e.key(), Some("http.listen"));
    assert!(
        e.to_string().contains("from env WAITTIMES__HTTP__LISTEN"),
        "{e}"
    );
    let e = err(load_env(&[("WAITTIMES__STATE__WINDOW", "0s")]));
    assert!(
        e.to_string()
            .starts_with("invalid value for `state.window` (from env WAITTIMES__STATE__WINDOW)"),
        "{e}"
    );
}

#[test]
fn feature_windows_must_close_inside_the_state_window() {
    let e = err(load_env(&[
        ("WAITTIMES__STATE__WINDOW", "10m"),
        ("WAITTIMES__FEATURES__WINDOW", "10m"),
        ("WAITTIMES__FEATURES__GRACE", "1s"),
    ]));
    assert_eq!(e.key(), Some("features.grace"));
    assert!(e.to_string().contains("exceeds state.window (10m)"), "{e}");
    let e = err(load_env(&[("WAITTIMES__FEATURES__WINDOW", "0s")]));
    assert_eq!(e.key(), Some("features.window"));
    let c = ok(load_env(&[
        ("WAITTIMES__STATE__WINDOW", "10m"),
        ("WAITTIMES__FEATURES__WINDOW", "9m"),
        ("WAITTIMES__FEATURES__GRACE", "1m"),
        ("WAITTIMES__TOPICS__FEATURES", "my_features"),
    ]));
    assert_eq!(c.topics.features, "my_features");
    let e = err(load_env(&[(
        "WAITTIMES__TOPICS__FEATURES",
        "waittimes_avro",
    )]));
    assert_eq!(e.key(), Some("topics.features"));
}

#[test]
fn several_errors_are_reported_together() {
    let e = err(load_env(&[
        ("WAITTIMES__STATE__WINDOW", "0s"),
        ("WAITTIMES__TOPICS__ORDERS", "bad name"),
        ("WAITTIMES__LOG__LEVEL", "info,["),
    ]));
    let keys: BTreeSet<_> = e.iter().filter_map(Error::key).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["state.window", "topics.orders", "log.level"])
    );
    assert!(e.to_string().starts_with("3 configuration errors"), "{e}");
}

#[test]
fn short_replay_horizon_warns() {
    let c = ok(load_env(&[("WAITTIMES__STATE__REPLAY_HORIZON", "1h")]));
    assert_eq!(c.replay_horizon(), Duration::from_secs(3600));
    assert!(
        c.warnings()
            .iter()
            .any(|w| w.contains("state.replay_horizon")),
        "{:?}",
        c.warnings()
    );
}

#[test]
fn missing_and_broken_config_files() {
    let e = err(Config::load_with_env(
        Some(Path::new("/nonexistent/waittimes.toml")),
        no_env(),
    ));
    assert!(matches!(e, Error::ReadConfig { .. }), "{e}");
    let e = err(load_toml("[kafka\n"));
    assert!(matches!(e, Error::Syntax { .. }), "{e}");
    assert!(e.to_string().contains("line 1"), "{e}");
}

#[test]
fn validate_after_manual_edit() {
    let mut c = Config::default();
    c.topics.completed = c.topics.orders.clone();
    assert_eq!(c.validate().unwrap_err().key(), Some("topics.completed"));
}

// ---- client.properties -----------------------------------------------------------------------

const PYTHON_CLIENT_PROPERTIES: &str = "\
# Required connection configs for Kafka producer, consumer, and admin
bootstrap.servers=pkc-abcde.us-east-2.aws.confluent.cloud:9092
security.protocol=SASL_SSL
sasl.mechanisms=PLAIN
sasl.username=CLUSTERKEY
sasl.password=CLUSTERSECRET

# Best practice for higher availability in librdkafka clients prior to 1.7
session.timeout.ms=45000

client.id=ccloud-python-client-3b98b537-adba-4c2d-b36f-79f964f031c0

auto.offset.reset=earliest
enable.auto.commit=false
group.id=FraudDetectorApplication
";

const JAVA_CLIENT_PROPERTIES: &str = "\
# Required connection configs for Kafka producer, consumer, and admin
bootstrap.servers=pkc-abcde.us-east-2.aws.confluent.cloud:9092
security.protocol=SASL_SSL
sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\
    username='CLUSTERKEY' password='CLUSTERSECRET';
sasl.mechanism=PLAIN
# Required for correctness in Apache Kafka clients prior to 2.6
client.dns.lookup=use_all_dns_ips
default.api.timeout.ms=60000
key.serializer=org.apache.kafka.common.serialization.StringSerializer

# Best practice for higher availability in Apache Kafka clients prior to 3.0
session.timeout.ms: 45000

# Best practice for Kafka producer to prevent data loss
acks=all

# Required connection configs for Confluent Cloud Schema Registry
schema.registry.url=https://psrc-abcde.us-east-2.aws.confluent.cloud
basic.auth.credentials.source=USER_INFO
basic.auth.user.info=SRKEY:SRSECRET
";

fn with_client_properties(text: &str, toml_extra: &str) -> Result<Config, Error> {
    let dir = scratch_dir("client");
    write(&dir, "client.properties", text);
    let toml = format!("[kafka]\nclient_properties = \"client.properties\"\n{toml_extra}");
    let path = write(&dir, "c.toml", &toml);
    Config::load_with_env(Some(&path), no_env())
}

#[test]
fn confluent_python_client_properties() {
    let c = ok(with_client_properties(PYTHON_CLIENT_PROPERTIES, ""));
    assert_eq!(
        c.bootstrap_servers(),
        "pkc-abcde.us-east-2.aws.confluent.cloud:9092"
    );
    let consumer = c.consumer_config();
    assert_eq!(consumer.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(consumer.get("sasl.mechanisms"), Some("PLAIN"));
    assert_eq!(consumer.get("sasl.username"), Some("CLUSTERKEY"));
    assert_eq!(consumer.get("sasl.password"), Some("CLUSTERSECRET"));
    assert_eq!(consumer.get("session.timeout.ms"), Some("45000"));
    assert_eq!(consumer.get("auto.offset.reset"), Some("earliest"));
    assert_eq!(
        consumer.get("group.id"),
        Some("waittimes"),
        "kafka.group_id wins"
    );
    assert!(
        c.warnings().iter().any(|w| w.contains("group.id")),
        "{:?}",
        c.warnings()
    );
    assert_eq!(
        consumer.get("client.id"),
        Some("ccloud-python-client-3b98b537-adba-4c2d-b36f-79f964f031c0")
    );
    let producer = c.producer_config();
    assert_eq!(producer.get("sasl.password"), Some("CLUSTERSECRET"));
    assert_eq!(producer.get("session.timeout.ms"), None);
    assert_eq!(producer.get("enable.auto.commit"), None);
    let admin = c.admin_config();
    assert_eq!(admin.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(admin.get("session.timeout.ms"), None);
    for cfg in [consumer, producer, admin] {
        cfg.create_native_config().unwrap();
    }
}

#[test]
fn confluent_java_client_properties() {
    let c = ok(with_client_properties(JAVA_CLIENT_PROPERTIES, ""));
    let consumer = c.consumer_config();
    assert_eq!(consumer.get("sasl.username"), Some("CLUSTERKEY"));
    assert_eq!(consumer.get("sasl.password"), Some("CLUSTERSECRET"));
    assert_eq!(
        consumer.get("sasl.mechanisms"),
        Some("PLAIN"),
        "alias normalized"
    );
    assert_eq!(consumer.get("sasl.jaas.config"), None);
    assert_eq!(
        consumer.get("session.timeout.ms"),
        Some("45000"),
        "`:` separator"
    );
    // librdkafka ≥ 2.2 knows client.dns.lookup with Java's values: kept.
    assert_eq!(consumer.get("client.dns.lookup"), Some("use_all_dns_ips"));
    // Java-only keys: dropped, each named in a warning.
    for java_only in ["default.api.timeout.ms", "key.serializer"] {
        assert_eq!(consumer.get(java_only), None);
        assert!(
            c.warnings()
                .iter()
                .any(|w| w.contains(&format!("`{java_only}`"))),
            "{java_only}: {:?}",
            c.warnings()
        );
    }
    // Registry keys are not Kafka properties, and feed the registry settings.
    assert_eq!(consumer.get("schema.registry.url"), None);
    assert_eq!(consumer.get("basic.auth.user.info"), None);
    assert_eq!(c.producer_config().get("acks"), Some("all"));
    assert_eq!(consumer.get("acks"), None);
    let sr = c.schema_registry();
    assert_eq!(
        sr.urls,
        vec!["https://psrc-abcde.us-east-2.aws.confluent.cloud"]
    );
    let auth = sr.basic_auth.unwrap();
    assert_eq!(
        (auth.username.as_str(), auth.password.expose()),
        ("SRKEY", "SRSECRET")
    );
    for cfg in [consumer, c.producer_config(), c.admin_config()] {
        cfg.create_native_config().unwrap();
    }
}

#[test]
fn scram_jaas_is_translated() {
    let text = "bootstrap.servers=b:9092\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
                sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"alice\" password=\"wonder land\";\n";
    let c = ok(with_client_properties(text, ""));
    let consumer = c.consumer_config();
    assert_eq!(consumer.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
    assert_eq!(consumer.get("sasl.username"), Some("alice"));
    assert_eq!(consumer.get("sasl.password"), Some("wonder land"));
}

#[test]
fn jaas_in_kafka_properties_is_translated_too() {
    let c = ok(load_toml(
        "[kafka.properties]\n\"sasl.jaas.config\" = \"org.apache.kafka.common.security.plain.PlainLoginModule required username='u' password='p';\"\n",
    ));
    assert_eq!(c.consumer_config().get("sasl.username"), Some("u"));
    assert_eq!(c.consumer_config().get("sasl.password"), Some("p"));
    assert_eq!(c.consumer_config().get("sasl.jaas.config"), None);
}

#[test]
fn kafka_precedence_file_then_properties_then_explicit() {
    let text = "bootstrap.servers=file:9092\nsession.timeout.ms=45000\nsasl.username=file-user\nsecurity.protocol=SASL_SSL\n";
    let c = ok(with_client_properties(
        text,
        "[kafka.properties]\n\"bootstrap.servers\" = \"props:9092\"\n\"session.timeout.ms\" = 6000\n",
    ));
    let consumer = c.consumer_config();
    assert_eq!(consumer.get("bootstrap.servers"), Some("props:9092"));
    assert_eq!(consumer.get("session.timeout.ms"), Some("6000"));
    assert_eq!(consumer.get("sasl.username"), Some("file-user"));
    let c = ok(with_client_properties(
        text,
        "bootstrap_servers = \"explicit:9092\"\n[kafka.properties]\n\"bootstrap.servers\" = \"props:9092\"\n",
    ));
    assert_eq!(
        c.consumer_config().get("bootstrap.servers"),
        Some("explicit:9092")
    );
    assert_eq!(
        c.producer_config().get("bootstrap.servers"),
        Some("explicit:9092")
    );
}

#[test]
fn env_overrides_a_client_properties_secret() {
    let dir = scratch_dir("envsecret");
    write(&dir, "client.properties", PYTHON_CLIENT_PROPERTIES);
    let path = write(
        &dir,
        "c.toml",
        "[kafka]\nclient_properties = \"client.properties\"\n",
    );
    let c = ok(Config::load_with_env(
        Some(&path),
        env(&[("WAITTIMES__KAFKA__PROPERTIES__SASL_PASSWORD", "FROMENV")]),
    ));
    assert_eq!(c.consumer_config().get("sasl.password"), Some("FROMENV"));
    assert_eq!(c.consumer_config().get("sasl.username"), Some("CLUSTERKEY"));
}

#[test]
fn client_properties_without_bootstrap_fails() {
    let e = err(with_client_properties("security.protocol=SASL_SSL\n", ""));
    assert_eq!(e.key(), Some("kafka.bootstrap_servers"));
    assert!(e.to_string().contains("client.properties"), "{e}");
    // ... unless something else provides it.
    ok(with_client_properties(
        "security.protocol=SASL_SSL\n",
        "bootstrap_servers = \"b:9092\"\n",
    ));
}

#[test]
fn bad_client_property_value_is_named() {
    let e = err(with_client_properties(
        "bootstrap.servers=b:1\nsession.timeout.ms=soon\n",
        "",
    ));
    let msg = e.to_string();
    assert_eq!(e.key(), Some("kafka.client_properties"));
    assert!(
        msg.contains("session.timeout.ms") && msg.contains("client.properties"),
        "{msg}"
    );
    // A Java truststore would only fail later, less clearly: refused with librdkafka's advice.
    let e = err(with_client_properties(
        "bootstrap.servers=b:1\nssl.truststore.location=/t.jks\n",
        "",
    ));
    assert!(
        e.to_string().contains("ssl.truststore.location")
            && e.to_string().contains("ssl.ca.location"),
        "{e}"
    );
    let e = err(with_client_properties(
        "bootstrap.servers=b:1\nsasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required keyTab='/k';\n",
        "",
    ));
    assert!(e.to_string().contains("sasl.jaas.config"), "{e}");
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    let dir = scratch_dir("relative");
    std::fs::create_dir_all(dir.join("conf/secrets")).unwrap();
    write(
        &dir.join("conf/secrets"),
        "client.properties",
        "bootstrap.servers=rel:9092\n",
    );
    write(
        &dir.join("conf/secrets"),
        "schema.properties",
        "schema.registry.url=https://rel-sr\n",
    );
    let path = write(
        &dir.join("conf"),
        "c.toml",
        "[kafka]\nclient_properties = \"secrets/client.properties\"\n[schema_registry]\nproperties_file = \"secrets/schema.properties\"\n",
    );
    let c = ok(Config::load_with_env(Some(&path), no_env()));
    assert_eq!(
        c.kafka.client_properties.as_deref(),
        Some(dir.join("conf/secrets/client.properties").as_path())
    );
    assert_eq!(c.bootstrap_servers(), "rel:9092");
    assert_eq!(c.schema_registry().urls, vec!["https://rel-sr"]);
}

// ---- schema.properties -----------------------------------------------------------------------

fn with_schema_properties(text: &str, toml_extra: &str) -> Result<Config, Error> {
    let dir = scratch_dir("schema");
    write(&dir, "schema.properties", text);
    let toml = format!("[schema_registry]\nproperties_file = \"schema.properties\"\n{toml_extra}");
    let path = write(&dir, "c.toml", &toml);
    Config::load_with_env(Some(&path), no_env())
}

#[test]
fn workshop_schema_properties() {
    let c = ok(with_schema_properties(
        "schema.registry.url=https://psrc-abcde.us-east-2.aws.confluent.cloud\n\
         schema.registry.username=SRKEY\n\
         schema.registry.password=SRSECRET\n",
        "",
    ));
    let sr = c.schema_registry();
    assert_eq!(
        sr.urls,
        vec!["https://psrc-abcde.us-east-2.aws.confluent.cloud"]
    );
    let auth = sr.basic_auth.unwrap();
    assert_eq!(
        (auth.username.as_str(), auth.password.expose()),
        ("SRKEY", "SRSECRET")
    );
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
}

#[test]
fn schema_properties_user_info_forms() {
    for text in [
        "schema.registry.url=https://sr\nbasic.auth.credentials.source=USER_INFO\nbasic.auth.user.info=SRKEY:SRSECRET\n",
        "schema.registry.url=https://sr\nbasic.auth.credentials.source=USER_INFO\nschema.registry.basic.auth.user.info=SRKEY:SRSECRET\n",
        "schema.registry.url=https://SRKEY:SRSECRET@sr\nbasic.auth.credentials.source=URL\n",
    ] {
        let c = ok(with_schema_properties(text, ""));
        let sr = c.schema_registry();
        assert_eq!(sr.urls, vec!["https://sr"], "{text}");
        let auth = sr.basic_auth.unwrap();
        assert_eq!(
            (auth.username.as_str(), auth.password.expose()),
            ("SRKEY", "SRSECRET"),
            "{text}"
        );
        assert!(!c.redacted_summary().contains("SRSECRET"));
    }
}

#[test]
fn explicit_registry_keys_override_the_file() {
    let c = ok(with_schema_properties(
        "schema.registry.url=https://file-sr\nschema.registry.username=FILEKEY\nschema.registry.password=FILESECRET\n",
        "url = \"http://explicit:8081\"\nusername = \"EXPLICIT\"\n",
    ));
    let sr = c.schema_registry();
    assert_eq!(sr.urls, vec!["http://explicit:8081"]);
    let auth = sr.basic_auth.unwrap();
    assert_eq!(
        (auth.username.as_str(), auth.password.expose()),
        ("EXPLICIT", "FILESECRET")
    );
}

#[test]
fn schema_properties_bad_url_names_the_file() {
    let e = err(with_schema_properties(
        "schema.registry.url=<schema registry url>\n",
        "",
    ));
    assert_eq!(e.key(), Some("schema_registry.url"));
    assert!(e.to_string().contains("schema.properties"), "{e}");
}

// ---- registry TLS ----------------------------------------------------------------------------

#[test]
fn registry_ca_from_properties_and_toml() {
    let dir = scratch_dir("registry-ca");
    let ca = write(&dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n");
    let other = write(&dir, "other.pem", "-----BEGIN CERTIFICATE-----\n");
    for key in ["schema.registry.ssl.ca.location", "ssl.ca.location"] {
        write(
            &dir,
            "schema.properties",
            &format!(
                "schema.registry.url=https://sr:8443\n{key}={}\n",
                ca.display()
            ),
        );
        let path = write(
            &dir,
            "c.toml",
            "[schema_registry]\nproperties_file = \"schema.properties\"\n",
        );
        let c = ok(Config::load_with_env(Some(&path), no_env()));
        assert_eq!(
            c.schema_registry().ca_location.as_deref(),
            Some(&*ca),
            "{key}"
        );
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        assert!(
            c.redacted_summary()
                .contains(&format!("ca={}", ca.display())),
            "{}",
            c.redacted_summary()
        );
        // The TOML key wins, and a relative path there is relative to the config file.
        let path = write(
            &dir,
            "c.toml",
            "[schema_registry]\nproperties_file = \"schema.properties\"\nssl_ca_location = \"other.pem\"\n",
        );
        let c = ok(Config::load_with_env(Some(&path), no_env()));
        assert_eq!(c.schema_registry().ca_location.as_deref(), Some(&*other));
    }
    // From Confluent's client.properties too (the registry keys Confluent puts there).
    let c = ok(with_client_properties(
        &format!(
            "bootstrap.servers=b:9093\nschema.registry.url=https://sr\nschema.registry.ssl.ca.location={}\n",
            ca.display()
        ),
        "",
    ));
    assert_eq!(c.schema_registry().ca_location.as_deref(), Some(&*ca));
    assert_eq!(Config::default().schema_registry().ca_location, None);
}

#[test]
fn missing_registry_ca_is_named_by_its_key() {
    let e = err(load_toml(
        "[schema_registry]\nssl_ca_location = \"/nonexistent/ca.pem\"\n",
    ));
    assert_eq!(e.key(), Some("schema_registry.ssl_ca_location"));
    assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    let e = err(with_schema_properties(
        "schema.registry.url=https://sr\nschema.registry.ssl.ca.location=/nonexistent/ca.pem\n",
        "",
    ));
    assert_eq!(e.key(), Some("schema.registry.ssl.ca.location"));
}

#[test]
fn java_registry_trust_and_key_stores_are_rejected_with_advice() {
    for key in [
        "schema.registry.ssl.truststore.location",
        "schema.registry.ssl.keystore.location",
        "schema.registry.ssl.key.location",
        "schema.registry.ssl.certificate.location",
    ] {
        let text = format!(
            "schema.registry.url=https://sr\n{key}=/etc/ssl/store.jks\n\
             schema.registry.ssl.truststore.password=TRUSTPASS\nschema.registry.password=SRPASS\n"
        );
        for e in [
            err(with_schema_properties(&text, "")),
            err(with_client_properties(
                &format!("bootstrap.servers=b:9093\n{text}"),
                "",
            )),
        ] {
            let shown = format!("{e} {e:?}");
            assert!(shown.contains(key), "{shown}");
            assert!(
                !shown.contains("TRUSTPASS") && !shown.contains("SRPASS"),
                "{shown}"
            );
            if key.contains("truststore") {
                assert!(shown.contains("schema.registry.ssl.ca.location"), "{shown}");
            }
        }
    }
}

#[test]
fn security_example_files_load() {
    let load = |client: &str, schema: &str| {
        let dir = scratch_dir("examples");
        let path = write(
            &dir,
            "c.toml",
            &format!(
                "[kafka]\nclient_properties = \"{}\"\n[schema_registry]\nproperties_file = \"{}\"\n",
                manifest(client).display(),
                manifest(schema).display()
            ),
        );
        ok(Config::load_with_env(Some(&path), no_env()))
    };
    let c = load(
        "config/examples/client-java.properties",
        "config/examples/schema-user-info.properties",
    );
    let k = c.kafka_properties();
    assert_eq!(k.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(k.get("sasl.mechanisms"), Some("PLAIN"));
    assert_eq!(k.get("sasl.username"), Some("CLUSTER_API_KEY"));
    assert_eq!(k.get("sasl.password"), Some("CLUSTER_API_SECRET"));
    assert!(
        c.warnings().iter().any(|w| w.contains("key.serializer")),
        "{:?}",
        c.warnings()
    );
    let sr = c.schema_registry();
    assert_eq!(sr.urls, vec!["https://schema-registry.internal:8443"]);
    let auth = sr.basic_auth.unwrap();
    assert_eq!(
        (auth.username.as_str(), auth.password.expose()),
        ("SR_USER", "SR_PASSWORD")
    );
    let summary = c.redacted_summary();
    for secret in [
        "CLUSTER_API_SECRET",
        "SR_PASSWORD",
        "SCHEMA_REGISTRY_API_SECRET",
    ] {
        assert!(!summary.contains(secret), "{summary}");
    }
    let c = load(
        "config/examples/client-scram.properties",
        "config/examples/schema.properties",
    );
    let k = c.kafka_properties();
    assert_eq!(k.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
    assert_eq!(
        k.get("ssl.endpoint.identification.algorithm"),
        Some("https")
    );
    assert!(!c.redacted_summary().contains("KAFKA_PASSWORD"));
}

// ---- secrets ---------------------------------------------------------------------------------

#[test]
fn secrets_never_printed() {
    let dir = scratch_dir("secrets");
    write(&dir, "client.properties", JAVA_CLIENT_PROPERTIES);
    write(
        &dir,
        "schema.properties",
        "schema.registry.url=https://sr\nschema.registry.username=SRKEY\nschema.registry.password=SRSECRET2\n",
    );
    let path = write(
        &dir,
        "c.toml",
        "[kafka]\nclient_properties = \"client.properties\"\n[kafka.properties]\n\"ssl.key.password\" = \"KEYPASS\"\n\
         [schema_registry]\nproperties_file = \"schema.properties\"\n",
    );
    let c = ok(Config::load_with_env(
        Some(&path),
        env(&[
            ("WAITTIMES__SCHEMA_REGISTRY__PASSWORD", "ENVSECRET"),
            (
                "WAITTIMES__SCHEMA_REGISTRY__URL",
                "https://URLKEY:URLSECRET@sr.example.com",
            ),
        ]),
    ));
    assert_eq!(c.schema_registry().urls, vec!["https://sr.example.com"]);
    assert_eq!(
        c.schema_registry().basic_auth.unwrap().password.expose(),
        "ENVSECRET"
    );
    assert_eq!(c.consumer_config().get("ssl.key.password"), Some("KEYPASS"));
    let texts = [
        format!("{c:?}"),
        format!("{c:#?}"),
        format!("{c}"),
        c.redacted_summary(),
        format!("{:?}", c.kafka_properties()),
        format!("{:?}", c.schema_registry()),
        format!("{:?}", c.consumer_config()),
        serde_json::to_string(&c).unwrap(),
        c.warnings().join("\n"),
    ];
    for text in &texts {
        for secret in [
            "CLUSTERSECRET",
            "SRSECRET",
            "SRSECRET2",
            "ENVSECRET",
            "KEYPASS",
            "PlainLoginModule",
            "URLSECRET",
        ] {
            assert!(!text.contains(secret), "{secret} leaked in:\n{text}");
        }
    }
    let summary = c.redacted_summary();
    assert!(summary.contains("sasl.password=***"), "{summary}");
    assert!(
        summary.contains("schema_registry.password = \"***\""),
        "{summary}"
    );
    assert!(summary.contains("sasl.username=CLUSTERKEY"), "{summary}");
}

#[test]
fn secrets_never_in_errors() {
    let leaks: Vec<Error> = vec![
        err(load_toml("[schema_registry]\npassword = 123456789\n")),
        err(load_toml("[schema_registry]\npassword = \"123456789\n")),
        err(load_toml(
            "[schema_registry]\npassword = \"123456789\"\nusername = 42\n",
        )),
        err(load_env(&[(
            "WAITTIMES__SCHEMA_REGISTRY__PASSWORD",
            "123456789",
        )])),
        err(load_toml(
            "[schema_registry]\nurl = \"https://k:123456789@:x\"\n",
        )),
        err(load_toml(
            "[kafka.properties]\n\"sasl.jaas.config\" = \"org.apache.kafka.common.security.plain.PlainLoginModule required username='u' password='123456789\"\n",
        )),
        err(load_toml(
            "[kafka.properties]\n\"ssl.key.password\" = [\"123456789\", {a = 1}]\n",
        )),
        err(with_client_properties(
            "bootstrap.servers=b:1\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username='u' password=\"123456789;\n",
            "",
        )),
        err(with_schema_properties(
            "schema.registry.url=https://sr\nbasic.auth.user.info=123456789\n",
            "",
        )),
    ];
    for e in &leaks {
        let text = format!("{e} {e:?}");
        assert!(!text.contains("123456789"), "secret leaked: {text}");
    }
}

// ---- the key table ---------------------------------------------------------------------------

fn serialized_default_leaves() -> Vec<(String, String)> {
    let value = serde_json::to_value(Config::default()).unwrap();
    let mut leaves = Vec::new();
    flatten_json("", &value, &mut leaves);
    leaves
        .into_iter()
        .map(|(k, v)| {
            let v = match serde_json::from_str::<serde_json::Value>(&v).unwrap() {
                serde_json::Value::String(s) => s,
                serde_json::Value::Object(m) if m.is_empty() => String::new(),
                other => other.to_string(),
            };
            (k, v)
        })
        .collect()
}

#[test]
fn documented_keys_match_the_struct() {
    let leaves = serialized_default_leaves();
    let from_struct: BTreeSet<&str> = leaves.iter().map(|(k, _)| k.as_str()).collect();
    let documented: BTreeSet<&str> = Config::documented_keys().iter().map(|k| k.key).collect();
    assert_eq!(from_struct, documented, "KEYS and the structs disagree");
    assert_eq!(documented.len(), KEYS.len(), "duplicate key in KEYS");
    for (key, value) in &leaves {
        let doc = KEYS.iter().find(|k| k.key == key).unwrap();
        assert_eq!(doc.default, value, "default of {key}");
        assert!(!doc.description.is_empty(), "{key} has no description");
    }
}

#[test]
fn every_documented_key_can_be_set_from_env() {
    // Set each scalar key through its documented variable (with its own default) and load.
    for k in KEYS.iter().filter(|k| k.key != "kafka.properties") {
        let value = if k.default.is_empty() { "" } else { k.default };
        let c = load_env(&[(&k.env_var(), value)]);
        assert!(
            c.is_ok(),
            "{}: {:?}",
            k.env_var(),
            c.err().map(|e| e.to_string())
        );
    }
}

#[test]
fn reference_renderings_list_every_key() {
    let text = reference_text();
    let md = reference_markdown();
    for k in KEYS {
        assert!(
            text.contains(k.key) && text.contains(&k.env_var()),
            "{}",
            k.key
        );
        assert!(md.contains(&format!("`{}`", k.key)), "{}", k.key);
    }
}

// ---- shipped files ---------------------------------------------------------------------------

#[test]
fn shipped_default_toml_is_the_defaults_and_lists_every_key() {
    let path = manifest("config/default.toml");
    let c = ok(Config::load_with_env(Some(&path), no_env()));
    assert_eq!(c, Config::default());
    let text = std::fs::read_to_string(&path).unwrap();
    for k in KEYS {
        let (section, key) = k.key.rsplit_once('.').unwrap();
        let present = if k.key == "kafka.properties" {
            text.contains("[kafka.properties]")
        } else {
            text.contains(&format!("[{section}]"))
                && text.lines().any(|l| l.starts_with(&format!("{key} = ")))
        };
        assert!(present, "config/default.toml does not list {}", k.key);
    }
}

#[test]
fn shipped_local_toml() {
    let c = ok(Config::load_with_env(
        Some(&manifest("config/local.toml")),
        no_env(),
    ));
    assert_eq!(c.bootstrap_servers(), "127.0.0.1:9092");
    assert_eq!(c.schema_registry().urls, vec!["http://127.0.0.1:8081"]);
    assert_eq!(c.consumer_config().get("session.timeout.ms"), Some("6000"));
    c.consumer_config().create_native_config().unwrap();
}

#[test]
fn shipped_confluent_cloud_toml() {
    let c = ok(Config::load_with_env(
        Some(&manifest("config/confluent-cloud.toml")),
        no_env(),
    ));
    assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    let consumer = c.consumer_config();
    assert_eq!(
        consumer.get("bootstrap.servers"),
        Some("pkc-xxxxx.us-east-2.aws.confluent.cloud:9092")
    );
    assert_eq!(consumer.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(consumer.get("sasl.mechanisms"), Some("PLAIN"));
    assert_eq!(consumer.get("sasl.username"), Some("CLUSTER_API_KEY"));
    assert_eq!(consumer.get("sasl.password"), Some("CLUSTER_API_SECRET"));
    assert_eq!(consumer.get("group.id"), Some("waittimes"));
    let sr = c.schema_registry();
    assert_eq!(
        sr.urls,
        vec!["https://psrc-xxxxx.us-east-2.aws.confluent.cloud"]
    );
    assert_eq!(sr.basic_auth.unwrap().username, "SCHEMA_REGISTRY_API_KEY");
    assert!(!c.redacted_summary().contains("CLUSTER_API_SECRET"));
    assert!(!c.redacted_summary().contains("SCHEMA_REGISTRY_API_SECRET"));
    // Env still wins over the files' neighbours.
    let c = ok(Config::load_with_env(
        Some(&manifest("config/confluent-cloud.toml")),
        env(&[("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", "other:9092")]),
    ));
    assert_eq!(
        c.consumer_config().get("bootstrap.servers"),
        Some("other:9092")
    );
}

// ---- command-line overrides (datagen, seed-priors, bench) ------------------------------------

/// The workshop's two files named from the TOML, an environment variable and flags: flags beat
/// the environment, which beats the file; what no flag sets (SASL, the registry's auth and CA)
/// still comes from the files.
#[test]
fn flags_override_the_file_and_the_environment() {
    let dir = scratch_dir("flags");
    write(&dir, "client.properties", PYTHON_CLIENT_PROPERTIES);
    let ca = write(&dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n");
    write(
        &dir,
        "schema.properties",
        &format!(
            "schema.registry.url=https://sr.example.com\nbasic.auth.credentials.source=USER_INFO\n\
             basic.auth.user.info=SRKEY:SRSECRET\nschema.registry.ssl.ca.location={}\n",
            ca.display()
        ),
    );
    let path = write(
        &dir,
        "c.toml",
        "[kafka]\nclient_properties = \"client.properties\"\n\
         [kafka.properties]\n\"linger.ms\" = 25\n\"acks\" = \"1\"\n\
         [schema_registry]\nproperties_file = \"schema.properties\"\n\
         [topics]\norders = \"o_file\"\ncompleted = \"c_file\"\n",
    );
    let mut flags = Overrides::new();
    flags
        .set(
            "kafka.bootstrap_servers",
            "--bootstrap-servers",
            "flag:9092",
        )
        .kafka_property("linger.ms", "-X linger.ms", "50")
        .set("topics.completed", "--completed-topic", "c_flag");
    let environment = env(&[
        ("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", "env:9092"),
        ("WAITTIMES__KAFKA__PROPERTIES__ACKS", "all"),
        ("WAITTIMES__TOPICS__COMPLETED", "c_env"),
    ]);
    let c = ok(Config::load_with_overrides(
        Some(&path),
        environment,
        &flags,
    ));
    let producer = c.producer_config();
    assert_eq!(producer.get("bootstrap.servers"), Some("flag:9092"));
    assert_eq!(producer.get("linger.ms"), Some("50"), "flag over file");
    assert_eq!(producer.get("acks"), Some("all"), "env over file");
    assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
    assert_eq!(producer.get("sasl.username"), Some("CLUSTERKEY"));
    assert_eq!(c.admin_config().get("sasl.password"), Some("CLUSTERSECRET"));
    assert_eq!(
        c.topics.inputs(),
        ["o_file", "c_flag", "pizza_orders_cancelled_avro"]
    );
    let sr = c.registry_settings();
    assert_eq!(sr.urls, vec!["https://sr.example.com"]);
    assert_eq!(sr.basic_auth, Some(("SRKEY".into(), "SRSECRET".into())));
    assert_eq!(sr.ca_location, Some(ca));

    // Without the flags the environment wins over the file.
    let environment = env(&[("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", "env:9092")]);
    let c = ok(Config::load_with_overrides(
        Some(&path),
        environment,
        &Overrides::new(),
    ));
    assert_eq!(c.bootstrap_servers(), "env:9092");
}

/// A bad flag value fails like a bad file value: the key, and the flag it came from.
#[test]
fn a_bad_flag_is_named() {
    let mut flags = Overrides::new();
    flags.kafka_property("session.timeout.ms", "-X session.timeout.ms", "soon");
    let e = err(Config::load_with_overrides(None, no_env(), &flags));
    let msg = e.to_string();
    assert!(
        msg.contains("session.timeout.ms") && msg.contains("from flag -X session.timeout.ms"),
        "{msg}"
    );
    let mut flags = Overrides::new();
    flags.set("state.window", "--window", "forever");
    let e = err(Config::load_with_overrides(None, no_env(), &flags));
    assert_eq!(e.key(), Some("state.window"), "{e}");
    assert!(e.to_string().contains("from flag --window"), "{e}");
}

/// What a child process gets in place of the flags.
#[test]
fn overrides_as_environment_variables() {
    let mut flags = Overrides::new();
    flags
        .set("kafka.bootstrap_servers", "--bootstrap", "b:1")
        .kafka_property("fetch.min.bytes", "-X fetch.min.bytes", "1000")
        .set("kafka.bootstrap_servers", "--bootstrap", "b:2");
    assert_eq!(
        flags.env_vars(),
        vec![
            (
                "WAITTIMES__KAFKA__PROPERTIES__FETCH_MIN_BYTES".to_string(),
                "1000".to_string()
            ),
            (
                "WAITTIMES__KAFKA__BOOTSTRAP_SERVERS".to_string(),
                "b:2".to_string()
            ),
        ]
    );
    let c = ok(Config::load_with_env(
        None,
        EnvVars::from_vars(flags.env_vars()),
    ));
    assert_eq!(c.bootstrap_servers(), "b:2");
    assert_eq!(c.consumer_config().get("fetch.min.bytes"), Some("1000"));
}

#[test]
fn producers_hash_keys_as_the_java_client_unless_told_otherwise() {
    let c = ok(Config::load_with_env(None, no_env()));
    assert_eq!(
        c.producer_config().get("partitioner"),
        Some("murmur2_random")
    );
    // Consumers and admin clients take no partitioner.
    assert_eq!(c.consumer_config().get("partitioner"), None);
    let c = ok(load_toml(
        "[kafka.properties]\n\"partitioner\" = \"consistent_random\"\n",
    ));
    assert_eq!(
        c.producer_config().get("partitioner"),
        Some("consistent_random")
    );
}

#[test]
fn the_answers_topic_must_differ_from_the_others() {
    let e = err(load_toml("[topics]\nanswers = \"waittimes_avro\"\n"));
    assert!(e.to_string().contains("topics.answers"), "{e}");
}

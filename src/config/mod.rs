//! Typed configuration: a TOML file, then `WAITTIMES__SECTION__KEY` environment variables over
//! it, plus Confluent's `client.properties` and the workshops' `schema.properties` read as-is.
//!
//! Everything has a default, so an empty file (or none) runs against the local stack. Unknown
//! keys and bad values fail at start with an error naming the key and where it came from.
//! Secrets ([`Secret`], and secret-looking Kafka properties) never appear in `Debug`, in
//! [`Config::redacted_summary`] or in an [`Error`].
//!
//! Precedence, lowest first:
//! - Kafka: `kafka.client_properties` file < `[kafka.properties]` < `kafka.bootstrap_servers` /
//!   `kafka.group_id`.
//! - Schema Registry: registry keys in `client.properties` < `schema_registry.properties_file` <
//!   `schema_registry.url` / `.username` / `.password`.
//! - Any key: defaults < TOML file < environment.

mod env;
mod error;
mod kafka;
mod keys;
mod overrides;
mod properties;
mod registry;
mod secret;
mod validate;

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider, Source};
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::state::Estimator;

pub use env::{ENV_PREFIX, EnvVars, env_var_for};
pub use error::Error;
pub use kafka::{KafkaProperties, set_if_absent};
pub use keys::{KEYS, KeyDoc, reference_markdown, reference_text};
pub use overrides::Overrides;
pub use registry::{BasicAuth, SchemaRegistry};
pub use secret::{REDACTED, Secret, is_secret_key};

use error::{origin_of, sanitize_message, show_origin};
use kafka::{ClientFile, Role};
use registry::RegistryFile;

/// Bootstrap servers used when nothing else sets them (and no client.properties is given).
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";
/// Schema Registry used when nothing else sets it.
pub const DEFAULT_SCHEMA_REGISTRY_URL: &str = "http://127.0.0.1:8081";
/// `client.id` set when the properties do not choose one.
pub const DEFAULT_CLIENT_ID: &str = "waittimes";
/// librdkafka's name for the Java client's partitioner (murmur2 of the key; null keys random).
pub const JAVA_PARTITIONER: &str = "murmur2_random";

/// The whole configuration. Fields are public so tests and tools can adjust a loaded or default
/// config; call [`Config::validate`] after changing one by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[kafka]`
    pub kafka: KafkaConfig,
    /// `[schema_registry]`
    pub schema_registry: SchemaRegistryConfig,
    /// `[topics]`
    pub topics: TopicsConfig,
    /// `[state]`
    pub state: StateConfig,
    /// `[output]`
    pub output: OutputConfig,
    /// `[features]`
    pub features: FeaturesConfig,
    /// `[http]`
    pub http: HttpConfig,
    /// `[log]`
    pub log: LogConfig,
    /// What [`Config::load`] read from the properties files, and its warnings.
    #[serde(skip)]
    loaded: Loaded,
}

/// `[kafka]`: connection and client properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list; empty means "from the properties, else the default".
    pub bootstrap_servers: String,
    /// Consumer group id.
    pub group_id: String,
    /// A Confluent `client.properties` file.
    #[serde(with = "opt_path")]
    pub client_properties: Option<PathBuf>,
    /// librdkafka properties passed through.
    pub properties: KafkaProperties,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: String::new(),
            group_id: "waittimes".into(),
            client_properties: None,
            properties: KafkaProperties::new(),
        }
    }
}

/// `[schema_registry]`. `Debug` and `Serialize` hide credentials inside the URL.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Comma-separated URL list; empty means "from the properties files, else the default".
    /// `https://key:secret@host` is accepted (Confluent's `basic.auth.credentials.source=URL`).
    #[serde(serialize_with = "serialize_redacted_urls")]
    pub url: String,
    /// The workshops' `schema.properties` file.
    #[serde(with = "opt_path")]
    pub properties_file: Option<PathBuf>,
    /// Basic-auth user name.
    pub username: String,
    /// Basic-auth password.
    pub password: Secret,
    /// Request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// PEM file of CA certificates to trust for an `https` registry with a private CA.
    #[serde(with = "opt_path")]
    pub ssl_ca_location: Option<PathBuf>,
}

impl fmt::Debug for SchemaRegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistryConfig")
            .field("url", &registry::redact_urls(&self.url))
            .field("properties_file", &self.properties_file)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("timeout", &self.timeout)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .finish()
    }
}

fn serialize_redacted_urls<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&registry::redact_urls(url))
}

impl Default for SchemaRegistryConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            properties_file: None,
            username: String::new(),
            password: Secret::default(),
            timeout: Duration::from_secs(10),
            ssl_ca_location: None,
        }
    }
}

/// `[topics]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    /// Placed orders.
    pub orders: String,
    /// Completed orders.
    pub completed: String,
    /// Cancelled orders.
    pub cancelled: String,
    /// Output wait times.
    pub wait_times: String,
    /// Output feature set (closed windows).
    pub features: String,
    /// Dead letters.
    pub dead_letter: String,
    /// Internal, compacted: every instance's full answers, read back by all as a global table.
    pub answers: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            orders: "pizza_orders_avro".into(),
            completed: "pizza_orders_completed_avro".into(),
            cancelled: "pizza_orders_cancelled_avro".into(),
            wait_times: "waittimes_avro".into(),
            features: "waittimes_features".into(),
            dead_letter: "waittimes_dlq".into(),
            answers: "waittimes_answers".into(),
        }
    }
}

impl TopicsConfig {
    /// The three input topics: orders, completed, cancelled.
    pub fn inputs(&self) -> [&str; 3] {
        [&self.orders, &self.completed, &self.cancelled]
    }
}

/// `[state]`: windows and TTLs (all in stream time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Rolling window of observations.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long an unmatched completion/cancellation is held.
    #[serde(with = "humantime_serde")]
    pub match_ttl: Duration,
    /// How long an order may stay open.
    #[serde(with = "humantime_serde")]
    pub open_ttl: Duration,
    /// Replay horizon; `None` means `open_ttl + window` (see [`Config::replay_horizon`]).
    #[serde(with = "opt_duration")]
    pub replay_horizon: Option<Duration>,
    /// The published estimator.
    pub estimator: Estimator,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30 * 60),
            match_ttl: Duration::from_secs(10 * 60),
            open_ttl: Duration::from_secs(2 * 60 * 60),
            replay_horizon: None,
            estimator: Estimator::default(),
        }
    }
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Minimum interval between two records for one store.
    #[serde(with = "humantime_serde")]
    pub emit_interval: Duration,
    /// This instance's name in the answers it computes; empty means host name and process id.
    pub instance_id: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            emit_interval: Duration::from_secs(1),
            instance_id: String::new(),
        }
    }
}

/// `[features]`: the tumbling windows of the feature set (event time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Window size.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long after its end (stream time) a window still takes late events.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(5 * 60),
            grace: Duration::from_secs(60),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Per-request timeout.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Concurrent push streams (SSE) beyond this are refused with 429.
    #[serde(deserialize_with = "count")]
    pub max_streams: usize,
    /// Idle push streams get a comment this often, so proxies do not close them.
    #[serde(with = "humantime_serde")]
    pub stream_heartbeat: Duration,
    /// A push stream is ended after this long; the client reconnects with `Last-Event-ID`,
    /// which spreads long-lived clients over instances and bounds a forgotten tab's stay.
    #[serde(with = "humantime_serde")]
    pub stream_max_age: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            request_timeout: Duration::from_secs(5),
            max_streams: 1000,
            stream_heartbeat: Duration::from_secs(15),
            stream_max_age: Duration::from_secs(3600),
        }
    }
}

/// A count from TOML (an integer) or from the environment (always a string).
fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Number(usize),
        Text(String),
    }
    match Count::deserialize(d)? {
        Count::Number(n) => Ok(n),
        Count::Text(t) => t.trim().parse().map_err(|_| {
            serde::de::Error::custom(format!("expected a non-negative integer, got {t:?}"))
        }),
    }
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// `tracing_subscriber::EnvFilter` directive.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// What the properties files said, read once by [`Config::load_from`].
#[derive(Clone, Default, PartialEq)]
struct Loaded {
    /// `kafka.client_properties`, with its path.
    client_file: Option<(PathBuf, ClientFile)>,
    /// The Schema Registry keys of `client.properties`.
    client_registry: Option<(PathBuf, RegistryFile)>,
    /// `schema_registry.properties_file`.
    registry_file: Option<(PathBuf, RegistryFile)>,
    warnings: Vec<String>,
}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field(
                "client_file",
                &self.client_file.as_ref().map(|(p, c)| (p, &c.kafka)),
            )
            .field(
                "registry_file",
                &self.registry_file.as_ref().map(|(p, _)| p),
            )
            .field("warnings", &self.warnings.len())
            .finish()
    }
}

/// The config file as a figment provider that remembers its path (for messages and for
/// resolving relative paths).
struct TomlFile {
    path: PathBuf,
    text: String,
}

impl Provider for TomlFile {
    fn metadata(&self) -> Metadata {
        Metadata::from("config file", self.path.as_path())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Toml::string(&self.text).data()
    }
}

impl Config {
    /// Loads `path` (if any), then `WAITTIMES__*` variables from the process environment, then
    /// the properties files the config names, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        Self::load_with_env(path, EnvVars::process())
    }

    /// Like [`Config::load`] with an explicit environment (tests pass a map here).
    pub fn load_with_env(path: Option<&Path>, env: EnvVars) -> Result<Self, Error> {
        Self::load_from(Self::figment(path, env)?)
    }

    /// Like [`Config::load_with_env`], with a subcommand's flags over the file and `env`.
    pub fn load_with_overrides(
        path: Option<&Path>,
        env: EnvVars,
        flags: &Overrides,
    ) -> Result<Self, Error> {
        Self::load_from(Self::figment(path, env)?.merge(flags.clone()))
    }

    /// The figment [`Config::load_with_env`] extracts from: the TOML file (read and syntax-checked
    /// now) merged with `env`.
    pub fn figment(path: Option<&Path>, env: EnvVars) -> Result<Figment, Error> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            let text = fs::read_to_string(path).map_err(|source| Error::ReadConfig {
                path: path.to_owned(),
                source,
            })?;
            if let Err(e) = Toml::string(&text).data() {
                return Err(Error::Syntax {
                    path: path.to_owned(),
                    message: sanitize_message(&e.kind.to_string()),
                });
            }
            figment = figment.merge(TomlFile {
                path: path.to_owned(),
                text,
            });
        }
        Ok(figment.merge(env))
    }

    /// Extracts a config from any figment, reads the properties files it names and validates.
    /// Relative file paths from a config file are resolved against that file's directory.
    pub fn load_from(figment: Figment) -> Result<Self, Error> {
        let mut config: Config = figment
            .extract()
            .map_err(|e| Error::from_figment(&figment, e))?;
        config.kafka.client_properties = config
            .kafka
            .client_properties
            .take()
            .map(|p| resolve_relative(&figment, "kafka.client_properties", p));
        config.schema_registry.properties_file = config
            .schema_registry
            .properties_file
            .take()
            .map(|p| resolve_relative(&figment, "schema_registry.properties_file", p));
        config.schema_registry.ssl_ca_location = config
            .schema_registry
            .ssl_ca_location
            .take()
            .map(|p| resolve_relative(&figment, "schema_registry.ssl_ca_location", p));
        config.read_files(&figment)?;
        let warnings = config.check(Some(&figment))?;
        config.loaded.warnings.extend(warnings);
        Ok(config)
    }

    /// Checks every value (as [`Config::load`] does, without re-reading files).
    pub fn validate(&self) -> Result<(), Error> {
        self.check(None).map(|_| ())
    }

    /// Non-fatal findings of [`Config::load`] (ignored Java-only properties, overridden
    /// `group.id`, a short replay horizon…). Log them once logging is set up; they never hold
    /// a secret.
    pub fn warnings(&self) -> &[String] {
        &self.loaded.warnings
    }

    /// Logs [`Config::warnings`] through `tracing` at WARN.
    pub fn log_warnings(&self) {
        for w in &self.loaded.warnings {
            tracing::warn!(target: "waittimes::config", "{w}");
        }
    }

    /// The replay horizon in effect: `state.replay_horizon`, or `open_ttl + window`.
    pub fn replay_horizon(&self) -> Duration {
        self.state
            .replay_horizon
            .unwrap_or(self.state.open_ttl + self.state.window)
    }

    /// The bootstrap servers in effect after merging (empty only if a client.properties file
    /// without `bootstrap.servers` is configured and nothing else sets them).
    pub fn bootstrap_servers(&self) -> String {
        self.merged_properties()
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_owned()
    }

    /// Every Kafka property in effect (file < `[kafka.properties]` < `bootstrap_servers`), for
    /// all roles, without `group.id`. Values are clear text: print with
    /// [`KafkaProperties`]'s `Debug`, which redacts.
    pub fn kafka_properties(&self) -> KafkaProperties {
        self.merged_properties()
    }

    fn merged_properties(&self) -> KafkaProperties {
        let mut merged = self
            .loaded
            .client_file
            .as_ref()
            .map(|(_, f)| f.kafka.clone())
            .unwrap_or_default();
        let mut passthrough = self.kafka.properties.clone();
        if let Some(jaas) = passthrough.remove("sasl.jaas.config") {
            // Errors are reported by validation; here the line is simply not used.
            let _ = kafka::translate_jaas(&jaas, &mut passthrough);
        }
        kafka::normalize_aliases(&mut passthrough);
        for (k, v) in passthrough.iter() {
            merged.insert(k, v);
        }
        let explicit = self.kafka.bootstrap_servers.trim();
        if !explicit.is_empty() {
            merged.insert("bootstrap.servers", explicit);
        } else if !merged.contains_key("bootstrap.servers")
            && self.kafka.client_properties.is_none()
        {
            merged.insert("bootstrap.servers", DEFAULT_BOOTSTRAP_SERVERS);
        }
        if !merged.contains_key("client.id") {
            merged.insert("client.id", DEFAULT_CLIENT_ID);
        }
        merged
    }

    fn client_config(&self, role: Role) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        for (k, v) in self.merged_properties().iter() {
            if k != "group.id" && kafka::applies_to(k, role) {
                cfg.set(k, v);
            }
        }
        if role == Role::Consumer {
            cfg.set("group.id", self.kafka.group_id.as_str());
        }
        cfg
    }

    /// Base consumer config: every merged property that applies to consumers, plus `group.id`.
    /// Commit policy, offsets and fetch tuning are left to the caller; use [`set_if_absent`] for
    /// defaults that `[kafka.properties]` should be able to override.
    pub fn consumer_config(&self) -> ClientConfig {
        self.client_config(Role::Consumer)
    }

    /// Base producer config: every merged property that applies to producers, and the
    /// Java-compatible murmur2 partitioner unless `[kafka.properties]` names another: Kafka
    /// Connect and ksqlDB hash keys with murmur2, librdkafka's default is CRC32, and records of
    /// one store must land on the same partition number whoever produced them.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.client_config(Role::Producer);
        set_if_absent(&mut c, "partitioner", JAVA_PARTITIONER);
        c
    }

    /// Base admin-client config: the merged properties common to all clients.
    pub fn admin_config(&self) -> ClientConfig {
        self.client_config(Role::Admin)
    }

    /// Effective Schema Registry settings.
    pub fn schema_registry(&self) -> SchemaRegistry {
        let (url, _) = self.registry_url_source();
        let mut urls = Vec::new();
        let mut url_user = None;
        for item in registry::split_urls(&url) {
            match registry::parse_url(item) {
                Ok(parsed) => {
                    if url_user.is_none() {
                        url_user = parsed.user;
                    }
                    urls.push(parsed.base);
                }
                Err(_) => urls.push(item.trim_end_matches('/').to_owned()),
            }
        }
        let files = [&self.loaded.registry_file, &self.loaded.client_registry];
        let file_username = files
            .iter()
            .find_map(|f| f.as_ref().and_then(|(_, r)| r.username.clone()));
        let file_password = files
            .iter()
            .find_map(|f| f.as_ref().and_then(|(_, r)| r.password.clone()));
        let username = non_empty(&self.schema_registry.username)
            .or(file_username)
            .or_else(|| url_user.as_ref().map(|(u, _)| u.clone()))
            .filter(|u| !u.is_empty());
        let password = (!self.schema_registry.password.is_empty())
            .then(|| self.schema_registry.password.clone())
            .or(file_password)
            .or_else(|| url_user.as_ref().map(|(_, p)| p.clone()))
            .unwrap_or_default();
        let ca_location = self.schema_registry.ssl_ca_location.clone().or_else(|| {
            files.iter().find_map(|f| {
                f.as_ref()
                    .and_then(|(_, r)| r.ca_location.as_ref().map(PathBuf::from))
            })
        });
        SchemaRegistry {
            urls,
            basic_auth: username.map(|username| BasicAuth { username, password }),
            timeout: self.schema_registry.timeout,
            ca_location,
        }
    }

    /// The registry client's settings: [`Config::schema_registry`] in the client's terms.
    pub fn registry_settings(&self) -> crate::wire::RegistrySettings {
        let sr = self.schema_registry();
        crate::wire::RegistrySettings {
            urls: sr.urls,
            basic_auth: sr
                .basic_auth
                .map(|a| (a.username, a.password.expose().to_string())),
            timeout: sr.timeout,
            ca_location: sr.ca_location,
        }
    }

    /// The URL list in effect and a description of where it came from.
    fn registry_url_source(&self) -> (String, Option<String>) {
        if let Some(u) = non_empty(&self.schema_registry.url) {
            return (u, None);
        }
        let files = [&self.loaded.registry_file, &self.loaded.client_registry];
        for (path, r) in files.into_iter().flatten() {
            if let Some(u) = r.url.as_deref().and_then(non_empty) {
                let origin = format!("from `schema.registry.url` in `{}`", path.display());
                return (u, Some(origin));
            }
        }
        (
            DEFAULT_SCHEMA_REGISTRY_URL.to_owned(),
            Some("default".into()),
        )
    }

    /// Documented keys (name, default, description), from the single table [`KEYS`].
    pub fn documented_keys() -> &'static [KeyDoc] {
        KEYS
    }

    /// Every key with its value, secrets as `***`, then the effective Kafka properties and
    /// Schema Registry settings: what the binary logs at start.
    pub fn redacted_summary(&self) -> String {
        let mut out = String::new();
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut leaves = Vec::new();
        flatten_json("", &value, &mut leaves);
        // In the documented order; kafka.properties is shown merged below.
        for doc in KEYS.iter().filter(|d| d.key != "kafka.properties") {
            if let Some((k, v)) = leaves.iter().find(|(k, _)| k == doc.key) {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        if self.state.replay_horizon.is_none() {
            out.push_str(&format!(
                "state.replay_horizon (effective) = \"{}\"\n",
                humantime::format_duration(self.replay_horizon())
            ));
        }
        out.push_str("kafka (effective) =");
        for (k, v) in self.merged_properties().redacted() {
            out.push_str(&format!(" {k}={v}"));
        }
        out.push_str(&format!(" group.id={}\n", self.kafka.group_id));
        let sr = self.schema_registry();
        out.push_str(&format!(
            "schema_registry (effective) = {}",
            sr.urls.join(",")
        ));
        match &sr.basic_auth {
            Some(auth) => out.push_str(&format!(
                " basic auth user={} password={}",
                auth.username, auth.password
            )),
            None => out.push_str(" no auth"),
        }
        if let Some(ca) = &sr.ca_location {
            out.push_str(&format!(" ca={}", ca.display()));
        }
        out.push('\n');
        out
    }

    /// Reads `kafka.client_properties` and `schema_registry.properties_file`.
    fn read_files(&mut self, figment: &Figment) -> Result<(), Error> {
        let mut warnings = Vec::new();
        if let Some(path) = self.kafka.client_properties.clone() {
            let key = "kafka.client_properties";
            let text = read_named(key, &path)?;
            let source = format!("`{}`", path.display());
            let file = kafka::import_client_properties(&text, &source).map_err(|p| {
                Error::InvalidProperty {
                    key: key.into(),
                    path: path.clone(),
                    property: p.key,
                    message: p.message,
                }
            })?;
            warnings.extend(file.warnings.iter().cloned());
            if !file.registry.is_empty() {
                let reg = registry::read_registry_properties(
                    &file.registry,
                    &source,
                    Some(&file.kafka),
                    true,
                )
                .map_err(|(property, message)| Error::InvalidProperty {
                    key: key.into(),
                    path: path.clone(),
                    property,
                    message,
                })?;
                warnings.extend(reg.warnings.iter().cloned());
                self.loaded.client_registry = Some((path.clone(), reg));
            }
            self.loaded.client_file = Some((path, file));
        }
        if let Some(path) = self.schema_registry.properties_file.clone() {
            let key = "schema_registry.properties_file";
            let text = read_named(key, &path)?;
            let entries = properties::parse(&text).map_err(|e| Error::InvalidProperty {
                key: key.into(),
                path: path.clone(),
                property: String::new(),
                message: e.to_string(),
            })?;
            let props: KafkaProperties = entries.into_iter().map(|e| (e.key, e.value)).collect();
            let source = format!("`{}`", path.display());
            let kafka = self.merged_properties();
            let reg = registry::read_registry_properties(&props, &source, Some(&kafka), true)
                .map_err(|(property, message)| Error::InvalidProperty {
                    key: key.into(),
                    path: path.clone(),
                    property,
                    message,
                })?;
            warnings.extend(reg.warnings.iter().cloned());
            self.loaded.registry_file = Some((path, reg));
        }
        // The registry CA must be readable now: a missing file named by its key beats a TLS
        // failure on the first record.
        let ca = self.schema_registry().ca_location;
        if let Some(path) = ca {
            let key = if self.schema_registry.ssl_ca_location.is_some() {
                "schema_registry.ssl_ca_location"
            } else {
                "schema.registry.ssl.ca.location"
            };
            read_named(key, &path)?;
        }
        // A group.id from the properties never wins over kafka.group_id; say so.
        let from_file = self
            .loaded
            .client_file
            .as_ref()
            .and_then(|(p, f)| f.kafka.get("group.id").map(|g| (p, g)));
        if let Some((path, group)) = from_file
            && group != self.kafka.group_id
        {
            warnings.push(format!(
                "`group.id` from `{}` is ignored: kafka.group_id (`{}`) is used",
                path.display(),
                self.kafka.group_id
            ));
        }
        if let Some(group) = self.kafka.properties.get("group.id")
            && group != self.kafka.group_id
        {
            warnings.push(format!(
                "`kafka.properties.\"group.id\"`{} is ignored: kafka.group_id (`{}`) is used",
                show_origin(&origin_of(figment, &["kafka", "properties", "group.id"])),
                self.kafka.group_id,
            ));
        }
        self.loaded.warnings.extend(warnings);
        Ok(())
    }
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted_summary())
    }
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn read_named(key: &str, path: &Path) -> Result<String, Error> {
    fs::read_to_string(path).map_err(|source| Error::ReadFile {
        key: key.into(),
        path: path.to_owned(),
        source,
    })
}

/// A relative path set in a config file is relative to that file's directory; one set in the
/// environment is relative to the working directory.
fn resolve_relative(figment: &Figment, key: &str, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    let base = figment.find_metadata(key).and_then(|md| match &md.source {
        Some(Source::File(file)) => file.parent().map(Path::to_path_buf),
        _ => None,
    });
    match base {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path,
    }
}

fn flatten_json(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::Object(map) if prefix != "kafka.properties" => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&key, v, out);
            }
        }
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// `Option<PathBuf>` as a string, `""` meaning `None`.
mod opt_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(p) => s.serialize_str(&p.to_string_lossy()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.trim();
        Ok((!s.is_empty()).then(|| PathBuf::from(s)))
    }
}

/// `Option<Duration>` as a humantime string, `""` meaning `None`.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        humantime::parse_duration(s)
            .map(Some)
            .map_err(|e| de::Error::custom(format!("`{s}`: {e}")))
    }
}

#[cfg(test)]
mod tests;

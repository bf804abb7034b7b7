//! Kafka client properties: the passthrough map, Confluent `client.properties` import, merging
//! and the per-role (consumer / producer / admin) librdkafka configs.

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::properties::{self, Jaas};
use super::secret::{REDACTED, is_secret_key};

/// librdkafka properties, by name, as strings. `Debug` and `Serialize` redact secret values
/// (see [`is_secret_key`](super::is_secret_key)).
///
/// In TOML, values may be strings, integers, booleans, floats or arrays of those (joined with
/// `,`), and keys may be quoted (`"fetch.min.bytes" = 1`) or dotted (`fetch.min.bytes = 1`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Sets `key`, returning the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        self.0.insert(key.into(), value.into())
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// Whether `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// `(key, value)` in key order. Values are clear text: do not log them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(key, printable value)` with secrets replaced by `***`.
    pub fn redacted(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), redact(k, v)))
    }
}

fn redact<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_key(key) && !value.is_empty() {
        REDACTED
    } else {
        value
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for KafkaProperties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.redacted()).finish()
    }
}

impl Serialize for KafkaProperties {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.redacted())
    }
}

impl<'de> Deserialize<'de> for KafkaProperties {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = BTreeMap::new();
        let root = deserializer.deserialize_map(PropVisitor)?;
        match root {
            Prop::Table(entries) => flatten("", entries, &mut out).map_err(de::Error::custom)?,
            _ => {
                return Err(de::Error::custom(
                    "expected a table of librdkafka properties",
                ));
            }
        }
        Ok(Self(out))
    }
}

/// A raw TOML value under `[kafka.properties]`.
enum Prop {
    Scalar(String),
    List(Vec<Prop>),
    Table(Vec<(String, Prop)>),
}

fn flatten(
    prefix: &str,
    entries: Vec<(String, Prop)>,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (k, v) in entries {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Prop::Scalar(s) => {
                out.insert(key, s);
            }
            Prop::List(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Prop::Scalar(s) => parts.push(s),
                        _ => return Err(format!("`{key}`: an array may only hold plain values")),
                    }
                }
                out.insert(key, parts.join(","));
            }
            Prop::Table(inner) => flatten(&key, inner, out)?,
        }
    }
    Ok(())
}

/// Deserializes any scalar/array/table; rejection messages never include the value.
struct PropVisitor;

impl<'de> Visitor<'de> for PropVisitor {
    type Value = Prop;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number, boolean, array or table")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Prop, E> {
        Ok(Prop::Scalar(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Prop, E> {
        Ok(Prop::Scalar(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Prop, E> {
        Ok(Prop::Scalar(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Prop, E> {
        Ok(Prop::Scalar(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Prop, E> {
        Ok(Prop::Scalar(v.to_string()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Prop, E> {
        Ok(Prop::Scalar(v.to_string()))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Prop, E> {
        Ok(Prop::Scalar(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Prop, E> {
        Ok(Prop::Scalar(v.to_string()))
    }

    fn visit_char<E: de::Error>(self, v: char) -> Result<Prop, E> {
        Ok(Prop::Scalar(v.to_string()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prop, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(PropSeed)? {
            items.push(item);
        }
        Ok(Prop::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Prop, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(PropSeed)?;
            entries.push((key, value));
        }
        Ok(Prop::Table(entries))
    }
}

struct PropSeed;

impl<'de> de::DeserializeSeed<'de> for PropSeed {
    type Value = Prop;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Prop, D::Error> {
        deserializer.deserialize_any(PropVisitor)
    }
}

/// What a client's role is, for dropping properties librdkafka would warn about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Consumer,
    Producer,
    Admin,
}

/// Consumer-only librdkafka properties (scope `C` in librdkafka's CONFIGURATION.md).
const CONSUMER_ONLY: &[&str] = &[
    "auto.commit.enable",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "check.crcs",
    "consume.callback.max.messages",
    "coordinator.query.interval.ms",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.partition.eof",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "group.id",
    "group.instance.id",
    "group.protocol",
    "group.protocol.type",
    "group.remote.assignor",
    "heartbeat.interval.ms",
    "isolation.level",
    "max.partition.fetch.bytes",
    "max.poll.interval.ms",
    "offset.store.method",
    "offset.store.path",
    "offset.store.sync.interval.ms",
    "partition.assignment.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "session.timeout.ms",
];

/// Producer-only librdkafka properties (scope `P`).
const PRODUCER_ONLY: &[&str] = &[
    "acks",
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.report.only.error",
    "delivery.timeout.ms",
    "enable.gapless.guarantee",
    "enable.idempotence",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "partitioner",
    "produce.offset.report",
    "queue.buffering.backpressure.threshold",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "queuing.strategy",
    "request.required.acks",
    "request.timeout.ms",
    "retries",
    "sticky.partitioning.linger.ms",
    "transaction.timeout.ms",
    "transactional.id",
];

pub(crate) fn applies_to(key: &str, role: Role) -> bool {
    let consumer_only = CONSUMER_ONLY.contains(&key);
    let producer_only = PRODUCER_ONLY.contains(&key);
    match role {
        Role::Consumer => !producer_only,
        Role::Producer => !consumer_only,
        Role::Admin => !consumer_only && !producer_only,
    }
}

/// How librdkafka judges one property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    /// librdkafka has no property of that name.
    Unknown,
    /// Known, but the value is rejected; the message is safe to show (secrets left out).
    Invalid(String),
}

/// Asks librdkafka itself whether it accepts `key = value` (no client is created).
pub(crate) fn check_property(key: &str, value: &str) -> Verdict {
    let mut cfg = ClientConfig::new();
    cfg.set(key, value);
    match cfg.create_native_config() {
        Ok(_) => Verdict::Ok,
        Err(KafkaError::ClientConfig(RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN, ..)) => {
            Verdict::Unknown
        }
        Err(KafkaError::ClientConfig(_, desc, ..)) => {
            if is_secret_key(key) {
                Verdict::Invalid("librdkafka rejects the value (not shown)".into())
            } else {
                Verdict::Invalid(format!("librdkafka: {desc}"))
            }
        }
        Err(_) => Verdict::Invalid("librdkafka rejects the value".into()),
    }
}

/// Keys in Confluent's `client.properties` that configure the Schema Registry, not Kafka.
pub(crate) fn is_registry_key(key: &str) -> bool {
    key.starts_with("schema.registry.")
        || key.starts_with("basic.auth.")
        || key.starts_with("bearer.auth.")
}

/// A parsed Confluent `client.properties`: the Kafka part (translated and filtered) and the
/// Schema Registry keys Confluent puts in the same file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ClientFile {
    pub kafka: KafkaProperties,
    pub registry: KafkaProperties,
    pub warnings: Vec<String>,
}

/// A problem with one key of a properties file. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyProblem {
    pub key: String,
    pub message: String,
}

/// Imports `client.properties` text: translates `sasl.jaas.config`, sets aside Schema Registry
/// keys, drops keys librdkafka does not know (Java-only ones) with a warning naming them, and
/// rejects values librdkafka refuses.
pub(crate) fn import_client_properties(text: &str, source: &str) -> Result<ClientFile, KeyProblem> {
    let entries = properties::parse(text).map_err(|e| KeyProblem {
        key: String::new(),
        message: e.to_string(),
    })?;
    let mut raw = BTreeMap::new();
    for e in entries {
        if !e.key.is_empty() {
            raw.insert(e.key, e.value);
        }
    }
    let mut out = ClientFile::default();
    // Credentials from a JAAS line fill in only what the file does not set explicitly.
    let mut jaas = KafkaProperties::new();
    for (key, value) in raw {
        if is_registry_key(&key) {
            out.registry.insert(key, value);
            continue;
        }
        if key == "sasl.jaas.config" {
            translate_jaas(&value, &mut jaas).map_err(|message| KeyProblem {
                key: key.clone(),
                message,
            })?;
            continue;
        }
        match check_property(&key, &value) {
            Verdict::Ok => {
                out.kafka.insert(key, value);
            }
            // Includes the Java-only keys librdkafka knows to refuse with advice
            // (`ssl.truststore.location`): dropping those would only fail later, less clearly.
            Verdict::Invalid(message) => return Err(KeyProblem { key, message }),
            Verdict::Unknown => out.warnings.push(format!(
                "ignoring `{key}` from {source}: librdkafka has no such property (Java-client only)"
            )),
        }
    }
    for (k, v) in jaas.0 {
        out.kafka.0.entry(k).or_insert(v);
    }
    normalize_aliases(&mut out.kafka);
    Ok(out)
}

/// Rewrites a Java `sasl.jaas.config` into librdkafka properties (only those not already set).
pub(crate) fn translate_jaas(value: &str, into: &mut KafkaProperties) -> Result<(), String> {
    let set = |into: &mut KafkaProperties, k: &str, v: String| {
        if !into.contains_key(k) {
            into.insert(k, v);
        }
    };
    match properties::parse_jaas(value).map_err(|e| format!("cannot translate: {e}"))? {
        Jaas::UserPassword { username, password } => {
            set(into, "sasl.username", username);
            set(into, "sasl.password", password);
        }
        Jaas::OAuthBearer { options } => {
            set(into, "sasl.oauthbearer.method", "oidc".into());
            for (k, v) in options {
                set(into, &k, v);
            }
        }
    }
    Ok(())
}

/// librdkafka aliases we normalize so precedence works on one name.
pub(crate) fn normalize_aliases(props: &mut KafkaProperties) {
    for (alias, canonical) in [
        ("metadata.broker.list", "bootstrap.servers"),
        ("sasl.mechanism", "sasl.mechanisms"),
    ] {
        if let Some(v) = props.remove(alias)
            && !props.contains_key(canonical)
        {
            props.insert(canonical, v);
        }
    }
}

/// Sets `key` only if the config does not have it yet: for defaults a caller wants to apply
/// without overriding the operator's `[kafka.properties]`.
pub fn set_if_absent(config: &mut ClientConfig, key: &str, value: &str) {
    if config.get(key).is_none() {
        config.set(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_verdicts() {
        assert_eq!(check_property("fetch.min.bytes", "1000000"), Verdict::Ok);
        assert_eq!(check_property("sasl.mechanism", "PLAIN"), Verdict::Ok);
        assert_eq!(
            check_property("client.dns.lookup", "use_all_dns_ips"),
            Verdict::Ok
        );
        assert_eq!(
            check_property("default.api.timeout.ms", "1000"),
            Verdict::Unknown
        );
        assert_eq!(check_property("key.serializer", "x"), Verdict::Unknown);
        // Java-only keys librdkafka refuses with advice.
        let Verdict::Invalid(msg) = check_property("ssl.truststore.location", "/x") else {
            panic!("accepted")
        };
        assert!(msg.contains("ssl.ca.location"), "{msg}");
        let Verdict::Invalid(msg) = check_property("fetch.min.bytes", "lots") else {
            panic!("accepted")
        };
        assert!(msg.contains("fetch.min.bytes"), "{msg}");
    }

    #[test]
    fn roles() {
        assert!(applies_to("session.timeout.ms", Role::Consumer));
        assert!(!applies_to("session.timeout.ms", Role::Producer));
        assert!(!applies_to("acks", Role::Consumer));
        assert!(applies_to("acks", Role::Producer));
        assert!(!applies_to("acks", Role::Admin));
        assert!(applies_to("sasl.username", Role::Admin));
    }

    #[test]
    fn debug_and_serialize_redact() {
        let p: KafkaProperties = [
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "pw"),
            ("sasl.username", "me"),
        ]
        .into_iter()
        .collect();
        let dbg = format!("{p:?}");
        assert!(!dbg.contains("hunter2") && !dbg.contains("\"pw\""), "{dbg}");
        assert!(dbg.contains("me"));
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("hunter2"), "{json}");
    }
}

//! Validation: every value checked at start, each problem naming its key.

use figment::Figment;

use super::error::{Error, origin_of};
use super::kafka::{self, Verdict};
use super::registry;
use super::{Config, KafkaProperties};

impl Config {
    /// All validation; returns warnings, or every error found.
    pub(super) fn check(&self, figment: Option<&Figment>) -> Result<Vec<String>, Error> {
        let origin = |key: &str| -> Option<String> {
            let fig = figment?;
            origin_of(fig, &key.split('.').collect::<Vec<_>>())
        };
        let mut errors = Vec::new();
        let mut warnings = Vec::new();

        // Durations.
        for (key, d) in [
            ("state.window", self.state.window),
            ("state.match_ttl", self.state.match_ttl),
            ("state.open_ttl", self.state.open_ttl),
            ("output.emit_interval", self.output.emit_interval),
            ("features.window", self.features.window),
            ("http.request_timeout", self.http.request_timeout),
            ("http.stream_heartbeat", self.http.stream_heartbeat),
            ("http.stream_max_age", self.http.stream_max_age),
            ("schema_registry.timeout", self.schema_registry.timeout),
        ] {
            if d.is_zero() {
                errors.push(Error::invalid(
                    key,
                    origin(key),
                    "must be greater than zero",
                ));
            }
        }
        if let Some(h) = self.state.replay_horizon {
            let key = "state.replay_horizon";
            let full = self.state.open_ttl + self.state.window;
            if h.is_zero() {
                errors.push(Error::invalid(
                    key,
                    origin(key),
                    "must be greater than zero (or empty for open_ttl + window)",
                ));
            } else if h < full {
                warnings.push(format!(
                    "state.replay_horizon ({}) is shorter than state.open_ttl + state.window ({}): after a \
                     restart, orders placed before the horizon are not matched and the first window is partial",
                    humantime::format_duration(h),
                    humantime::format_duration(full)
                ));
            }
        }

        // A window closes before the state's rolling window drops its completions.
        let span = self.features.window + self.features.grace;
        if !self.state.window.is_zero() && span > self.state.window {
            errors.push(Error::invalid(
                "features.grace",
                origin("features.grace"),
                format!(
                    "features.window + features.grace ({}) exceeds state.window ({}): a window \
                     would close after the state has dropped its first completions",
                    humantime::format_duration(span),
                    humantime::format_duration(self.state.window)
                ),
            ));
        }
        if self.http.max_streams == 0 {
            errors.push(Error::invalid(
                "http.max_streams",
                origin("http.max_streams"),
                "must be greater than zero",
            ));
        }

        // Topics: valid and distinct.
        let topics = [
            ("topics.orders", &self.topics.orders),
            ("topics.completed", &self.topics.completed),
            ("topics.cancelled", &self.topics.cancelled),
            ("topics.wait_times", &self.topics.wait_times),
            ("topics.features", &self.topics.features),
            ("topics.dead_letter", &self.topics.dead_letter),
            ("topics.answers", &self.topics.answers),
        ];
        for (i, (key, name)) in topics.iter().enumerate() {
            if let Err(message) = check_topic_name(name) {
                errors.push(Error::invalid(*key, origin(key), message));
                continue;
            }
            if let Some((other, _)) = topics[..i].iter().find(|(_, n)| n == name) {
                errors.push(Error::invalid(
                    *key,
                    origin(key),
                    format!("`{name}` is also `{other}`; topics must be distinct"),
                ));
            }
        }

        // Kafka.
        if self.kafka.group_id.trim().is_empty() {
            errors.push(Error::invalid(
                "kafka.group_id",
                origin("kafka.group_id"),
                "must not be empty",
            ));
        }
        for (k, v) in self.kafka.properties.iter() {
            let key = format!("kafka.properties.\"{k}\"");
            let origin = figment.and_then(|fig| origin_of(fig, &["kafka", "properties", k]));
            if k == "sasl.jaas.config" {
                let mut scratch = KafkaProperties::new();
                if let Err(message) = kafka::translate_jaas(v, &mut scratch) {
                    errors.push(Error::invalid(key, origin, message));
                }
                continue;
            }
            if kafka::is_registry_key(k) {
                errors.push(Error::invalid(
                    key,
                    origin,
                    "a Schema Registry setting: use [schema_registry] instead",
                ));
                continue;
            }
            match kafka::check_property(k, v) {
                Verdict::Ok if k == "statistics.interval.ms" && v.trim() == "0" => {
                    errors.push(Error::invalid(
                        key,
                        origin,
                        "must be greater than zero: broker health, readiness and consumer lag \
                         are read from librdkafka's statistics",
                    ));
                }
                Verdict::Ok => {}
                Verdict::Unknown => {
                    errors.push(Error::invalid(
                        key,
                        origin,
                        "librdkafka has no such property",
                    ));
                }
                Verdict::Invalid(message) => errors.push(Error::invalid(key, origin, message)),
            }
        }
        let bootstrap = self.bootstrap_servers();
        let key = "kafka.bootstrap_servers";
        if bootstrap.trim().is_empty() {
            let message = match &self.kafka.client_properties {
                Some(p) => format!(
                    "not set, and neither `{}` nor kafka.properties sets `bootstrap.servers`",
                    p.display()
                ),
                None => "must not be empty".to_owned(),
            };
            errors.push(Error::invalid(key, origin(key), message));
        } else if let Err(message) = check_bootstrap(&bootstrap) {
            let origin = if self.kafka.bootstrap_servers.trim().is_empty() {
                Some("from `bootstrap.servers` in the Kafka properties".to_owned())
            } else {
                origin(key)
            };
            errors.push(Error::invalid(key, origin, message));
        }

        // Schema Registry.
        let (url, url_source) = self.registry_url_source();
        let key = "schema_registry.url";
        let url_origin = url_source.or_else(|| origin(key));
        let items: Vec<&str> = registry::split_urls(&url).collect();
        if items.is_empty() {
            errors.push(Error::invalid(
                key,
                url_origin.clone(),
                "must list at least one URL",
            ));
        }
        for (i, item) in items.iter().enumerate() {
            if let Err(message) = registry::parse_url(item) {
                errors.push(Error::invalid(
                    key,
                    url_origin.clone(),
                    format!("URL #{}: {message}", i + 1),
                ));
            }
        }
        let sr = self.schema_registry();
        if sr.basic_auth.is_none() && !self.schema_registry.password.is_empty() {
            let key = "schema_registry.password";
            errors.push(Error::invalid(
                key,
                origin(key),
                "set, but no schema_registry.username is",
            ));
        }

        // Logging.
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            errors.push(Error::invalid(
                "log.level",
                origin("log.level"),
                format!("not a tracing filter directive: {e}"),
            ));
        }

        Error::from_many(errors).map(|()| warnings)
    }
}

/// Kafka topic name rules: 1–249 chars of `[a-zA-Z0-9._-]`, not `.` or `..`.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "topic names are at most 249 characters (this one has {})",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid topic name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{name}`: character {c:?} is not allowed (only a-z A-Z 0-9 . _ -)"
        ));
    }
    Ok(())
}

/// Each comma-separated item: `[proto://]host[:port]`, no whitespace or placeholder brackets.
fn check_bootstrap(list: &str) -> Result<(), String> {
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("`{list}` has an empty entry"));
        }
        if item.contains(char::is_whitespace) || item.contains(['<', '>', '{', '}']) {
            return Err(format!(
                "`{item}` is not a host:port (an unfilled placeholder?)"
            ));
        }
        let hostport = item.split_once("://").map_or(item, |(_, rest)| rest);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            match v6.split_once(']') {
                Some((h, rest)) => (h, rest.strip_prefix(':')),
                None => return Err(format!("`{item}`: unterminated IPv6 address")),
            }
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{item}` has no host"));
        }
        if let Some(p) = port
            && p.parse::<u16>().is_err()
        {
            return Err(format!(
                "`{item}`: port `{p}` is not a number from 0 to 65535"
            ));
        }
    }
    Ok(())
}

//! The one table of configuration keys: name, default and meaning. `--help`, the README's
//! reference and the tests all read it; a unit test keeps it equal to the structs.

use super::env::env_var_for;

/// One documented configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyDoc {
    /// Dotted TOML path, e.g. `kafka.bootstrap_servers`.
    pub key: &'static str,
    /// The default as it would be written in TOML, without quotes (`""` means empty).
    pub default: &'static str,
    /// What it does.
    pub description: &'static str,
}

impl KeyDoc {
    /// The environment variable that overrides it, e.g. `WAITTIMES__KAFKA__BOOTSTRAP_SERVERS`.
    pub fn env_var(&self) -> String {
        env_var_for(self.key)
    }
}

/// Every configuration key, in file order.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "kafka.bootstrap_servers",
        default: "",
        description: "Kafka bootstrap servers, comma-separated host:port. Overrides bootstrap.servers \
                      from kafka.client_properties and kafka.properties; when all are empty and no \
                      client_properties file is set, 127.0.0.1:9092.",
    },
    KeyDoc {
        key: "kafka.group_id",
        default: "waittimes",
        description: "Consumer group id shared by all instances; overrides any group.id in the \
                      properties.",
    },
    KeyDoc {
        key: "kafka.client_properties",
        default: "",
        description: "Path to a Confluent client.properties used as-is (relative paths are \
                      resolved against the config file). sasl.jaas.config is translated to \
                      sasl.username/sasl.password; Java-only keys are dropped with a warning; \
                      schema.registry.* / basic.auth.* keys feed the schema registry settings.",
    },
    KeyDoc {
        key: "kafka.properties",
        default: "",
        description: "Table of librdkafka properties passed through as-is, e.g. \
                      \"fetch.min.bytes\" = 1000000; wins over client_properties. Unknown \
                      properties fail at start. From the environment: \
                      WAITTIMES__KAFKA__PROPERTIES__FETCH_MIN_BYTES (`_` read as `.`).",
    },
    KeyDoc {
        key: "schema_registry.url",
        default: "",
        description: "Schema Registry URL(s), comma-separated, http or https. Overrides \
                      schema.registry.url from properties_file / client_properties; when all are \
                      empty, http://127.0.0.1:8081.",
    },
    KeyDoc {
        key: "schema_registry.properties_file",
        default: "",
        description: "Path to the workshops' schema.properties (schema.registry.url, \
                      schema.registry.username/password, or basic.auth.user.info with \
                      basic.auth.credentials.source).",
    },
    KeyDoc {
        key: "schema_registry.username",
        default: "",
        description: "Basic-auth user (API key); overrides the properties files.",
    },
    KeyDoc {
        key: "schema_registry.password",
        default: "",
        description: "Basic-auth password (API secret); secret, never logged.",
    },
    KeyDoc {
        key: "schema_registry.timeout",
        default: "10s",
        description: "Timeout of one Schema Registry request.",
    },
    KeyDoc {
        key: "schema_registry.ssl_ca_location",
        default: "",
        description: "PEM file of CA certificates trusted (besides the system's) for an https \
                      registry with a private CA; overrides schema.registry.ssl.ca.location from \
                      the properties files. Java trust stores (JKS) are not readable: export the \
                      CA as PEM.",
    },
    KeyDoc {
        key: "topics.orders",
        default: "pizza_orders_avro",
        description: "Input topic of placed orders.",
    },
    KeyDoc {
        key: "topics.completed",
        default: "pizza_orders_completed_avro",
        description: "Input topic of completed orders.",
    },
    KeyDoc {
        key: "topics.cancelled",
        default: "pizza_orders_cancelled_avro",
        description: "Input topic of cancelled orders.",
    },
    KeyDoc {
        key: "topics.wait_times",
        default: "waittimes_avro",
        description: "Output topic of per-store wait times (also read at start for priors).",
    },
    KeyDoc {
        key: "topics.features",
        default: "waittimes_features",
        description: "Output topic of the feature set: one record per store per closed window, \
                      keyed by store and window start (compactable).",
    },
    KeyDoc {
        key: "topics.dead_letter",
        default: "waittimes_dlq",
        description: "Dead-letter topic for records that cannot be processed.",
    },
    KeyDoc {
        key: "topics.answers",
        default: "waittimes_answers",
        description: "Internal compacted topic of every instance's full answers, read by all \
                      instances as a global table so any instance answers for any store.",
    },
    KeyDoc {
        key: "state.window",
        default: "30m",
        description: "Rolling window of completed orders a store's statistics cover (stream time).",
    },
    KeyDoc {
        key: "state.match_ttl",
        default: "10m",
        description: "How long a completion or cancellation waits for its order (stream time).",
    },
    KeyDoc {
        key: "state.open_ttl",
        default: "2h",
        description: "How long an order may stay open before it is expired and counted.",
    },
    KeyDoc {
        key: "state.replay_horizon",
        default: "",
        description: "How far back input is re-read at start; empty means open_ttl + window. \
                      Shorter than that is allowed but warned about.",
    },
    KeyDoc {
        key: "state.estimator",
        default: "p50",
        description: "Published wait time: mean | p50 | p90 | queue | backlog.",
    },
    KeyDoc {
        key: "output.emit_interval",
        default: "1s",
        description: "At most one wait-time record per store per interval (the latest is always sent).",
    },
    KeyDoc {
        key: "features.window",
        default: "5m",
        description: "Size of the feature set's tumbling windows of event time.",
    },
    KeyDoc {
        key: "features.grace",
        default: "1m",
        description: "How long after its end (in the store's stream time) a window still counts \
                      late events; later ones are counted in waittimes_feature_late_events_total \
                      and logged. window + grace must fit in state.window.",
    },
    KeyDoc {
        key: "output.instance_id",
        default: "",
        description: "This instance's name in the answers it computes (computed_by); empty \
                      means the host name and the process id.",
    },
    KeyDoc {
        key: "http.listen",
        default: "0.0.0.0:8080",
        description: "HTTP listen address (ip:port).",
    },
    KeyDoc {
        key: "http.request_timeout",
        default: "5s",
        description: "Timeout of one HTTP request (until a push stream's first byte).",
    },
    KeyDoc {
        key: "http.max_streams",
        default: "1000",
        description: "Concurrent push streams (Server-Sent Events); more get 429.",
    },
    KeyDoc {
        key: "http.stream_heartbeat",
        default: "15s",
        description: "A push stream with nothing to send gets a comment this often.",
    },
    KeyDoc {
        key: "http.stream_max_age",
        default: "1h",
        description: "A push stream ends after this long; clients reconnect with Last-Event-ID.",
    },
    KeyDoc {
        key: "log.format",
        default: "human",
        description: "Log format: human | json.",
    },
    KeyDoc {
        key: "log.level",
        default: "info",
        description: "tracing EnvFilter directive, e.g. info or waittimes=debug,rdkafka=warn.",
    },
];

/// Plain-text reference for `--help`: key, environment variable, default, description.
pub fn reference_text() -> String {
    let mut out =
        String::from("Configuration keys (TOML file, each overridable by the environment):\n");
    for k in KEYS {
        let default = if k.default.is_empty() {
            "\"\""
        } else {
            k.default
        };
        out.push_str(&format!(
            "  {}  [env: {}] [default: {}]\n      {}\n",
            k.key,
            k.env_var(),
            default,
            k.description
        ));
    }
    out
}

/// Markdown table for the README's configuration reference.
pub fn reference_markdown() -> String {
    let mut out =
        String::from("| key | environment variable | default | description |\n|---|---|---|---|\n");
    for k in KEYS {
        let default = if k.default.is_empty() {
            "`\"\"`".to_owned()
        } else {
            format!("`{}`", k.default)
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            k.key,
            k.env_var(),
            default,
            k.description.replace('|', "\\|")
        ));
    }
    out
}

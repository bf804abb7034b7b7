//! The Kafka edges around the pure state, and nothing else: in (replay by time, decode, dead
//! letters, rebalances, lag), out (the debounced emitter), and the priors read back from the
//! output topic. [`crate::service`] assembles them; nothing here knows of HTTP.

pub(crate) mod dlq;
pub(crate) mod features;
pub(crate) mod input;
pub(crate) mod output;
pub(crate) mod priors;
pub(crate) mod table;

use crate::config::Config;
use crate::wire;

/// What goes wrong at the Kafka edges.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The broker rejected our credentials: librdkafka's reason (never the credentials).
    #[error("kafka: authentication failed: {0}")]
    KafkaAuth(String),
    #[error("schema registry: {0}")]
    Registry(#[from] wire::Error),
    #[error("priors: {0}")]
    Priors(String),
    #[error("the consumer thread failed: {0}")]
    Thread(String),
    /// Partition p of each input topic goes to one instance; that lines up a store's records
    /// only when the topics have equal partition counts.
    #[error(
        "the input topics must have equal partition counts to be co-partitioned by store_id \
         (found {0}); repartition them or recreate them with one count"
    )]
    NotCoPartitioned(String),
}

impl Error {
    /// Worth retrying: the broker or registry may come (back), credentials may still be
    /// propagating, a read may time out. The registry refusing a schema is not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Kafka(_) | Error::KafkaAuth(_) | Error::Priors(_) => true,
            Error::Registry(e) => e.is_transient(),
            Error::Thread(_) | Error::NotCoPartitioned(_) => false,
        }
    }
}

/// The input consumer: the group, replay positions set by the rebalance callback, statistics
/// for lag and broker health, and fetch sizes that keep a fast broker busy. Every default here
/// can be overridden under `[kafka.properties]`.
pub(crate) fn input_consumer_config(config: &Config) -> rdkafka::ClientConfig {
    use crate::config::set_if_absent;
    let mut c = config.consumer_config();
    set_if_absent(&mut c, "auto.offset.reset", "earliest");
    set_if_absent(&mut c, "enable.auto.commit", "true");
    set_if_absent(&mut c, "enable.partition.eof", "false");
    // Range assigns partition p of every input topic to one member (equal partition counts
    // are checked at start): completions meet their orders. librdkafka's default list also
    // allows round-robin, which spreads the topics' partitions independently.
    set_if_absent(&mut c, "partition.assignment.strategy", "range");
    set_if_absent(&mut c, "statistics.interval.ms", "1000");
    // librdkafka's 10 s default leaves the service cut off for up to 10 s after a broker
    // comes back; 2 s costs one connect attempt per broker every 2 s while it is down.
    set_if_absent(&mut c, "reconnect.backoff.max.ms", "2000");
    set_if_absent(&mut c, "fetch.wait.max.ms", "100");
    set_if_absent(&mut c, "max.partition.fetch.bytes", "10485760");
    set_if_absent(&mut c, "queued.min.messages", "1000000");
    c
}

/// The priors reader: assigned partitions, no group commits, end-of-partition events.
pub(crate) fn priors_consumer_config(config: &Config) -> rdkafka::ClientConfig {
    let mut c = config.consumer_config();
    c.set("enable.auto.commit", "false");
    c.set("enable.partition.eof", "true");
    c.set("auto.offset.reset", "earliest");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_can_clear_by_itself_is_retried() {
        let unavailable = wire::Error::RegistryUnavailable {
            op: "register".into(),
            detail: "connection refused".into(),
        };
        assert!(Error::Registry(unavailable).is_transient());
        assert!(Error::KafkaAuth("SASL authentication error".into()).is_transient());
        assert!(Error::Priors("timed out".into()).is_transient());
        // What the registry says to an incompatible output schema: retrying cannot help.
        let refused = wire::Error::RegisterRejected {
            subject: "waittimes_avro-value".into(),
            status: 409,
            detail: "incompatible with an earlier schema".into(),
        };
        assert!(!Error::Registry(refused).is_transient());
        assert!(!Error::Thread("spawn failed".into()).is_transient());
    }
}

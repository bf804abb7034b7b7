//! The boundary with Kafka values and the Schema Registry: Confluent framing ([`framing`]), the
//! registry client ([`Registry`]), the typed fast decoders ([`Decoders`]) and the encoders
//! ([`encode_wait_times`], [`UpstreamRecord`]).
//!
//! Error handling in one paragraph: [`Decoders::decode`] fails with
//! [`DecodeError::UnknownSchemaId`] the first time it meets a schema id; fetch it with
//! [`Registry::schema_by_id`], then [`Decoders::learn`] it (or, if the registry says it is
//! permanently unusable, [`Decoders::learn_missing`]) and decode again. Every other
//! [`DecodeError`] is permanent for that record (dead-letter it). A registry [`Error`] with
//! [`Error::is_transient`] means "retry later, keep the record"; otherwise it is permanent.

mod decode;
mod encode;
pub mod framing;
mod registry;
mod schema;

pub use decode::{DeadLetterReason, DecodeError, Decoders, MAX_DEPTH, Problem};
pub use encode::{
    OrderLine, PizzaOrder, PizzaOrderCancelled, PizzaOrderCompleted, UpstreamRecord,
    encode_features_into, encode_wait_times, encode_wait_times_into, put_double, put_int, put_long,
    put_str,
};
pub use framing::{Framed, FramingError};
pub use registry::{Registry, RegistrySettings};
pub use schema::WriterSchema;

use crate::domain::InputKind;

/// Our reader schema for `pizza_orders` values.
pub const READER_PIZZA_ORDERS: &str = include_str!("../../schemas/pizza_orders.avsc");
/// Our reader schema for `pizza_orders_completed` values.
pub const READER_PIZZA_ORDERS_COMPLETED: &str =
    include_str!("../../schemas/pizza_orders_completed.avsc");
/// Our reader schema for `pizza_orders_cancelled` values.
pub const READER_PIZZA_ORDERS_CANCELLED: &str =
    include_str!("../../schemas/pizza_orders_cancelled.avsc");
/// The workshop's `WaitTimes` schema, exactly: what the service registers and writes under
/// `<output topic>-value`, and the reader schema for priors.
pub const WAIT_TIMES_SCHEMA: &str = include_str!("../../schemas/waittimes.avsc");

/// The feature set's schema: what the service registers and writes under
/// `<features topic>-value`.
pub const FEATURES_SCHEMA: &str = include_str!("../../schemas/waittimes_features.avsc");

/// The Datagen "Pizza orders" schema, verbatim (with its `arg.properties`).
pub const UPSTREAM_PIZZA_ORDERS: &str = include_str!("../../schemas/upstream/pizza_orders.avro");
/// The Datagen "Pizza orders completed" schema, verbatim.
pub const UPSTREAM_PIZZA_ORDERS_COMPLETED: &str =
    include_str!("../../schemas/upstream/pizza_orders_completed.avro");
/// The Datagen "Pizza orders cancelled" schema, verbatim.
pub const UPSTREAM_PIZZA_ORDERS_CANCELLED: &str =
    include_str!("../../schemas/upstream/pizza_orders_cancelled.avro");

/// Our reader schema for the topic of `kind`.
pub fn reader_schema(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Orders => READER_PIZZA_ORDERS,
        InputKind::Completed => READER_PIZZA_ORDERS_COMPLETED,
        InputKind::Cancelled => READER_PIZZA_ORDERS_CANCELLED,
    }
}

/// The upstream (Datagen) writer schema for the topic of `kind`.
pub fn upstream_schema(kind: InputKind) -> &'static str {
    match kind {
        InputKind::Orders => UPSTREAM_PIZZA_ORDERS,
        InputKind::Completed => UPSTREAM_PIZZA_ORDERS_COMPLETED,
        InputKind::Cancelled => UPSTREAM_PIZZA_ORDERS_CANCELLED,
    }
}

/// `Result` of this boundary.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the registry client (and, wrapped, of decoding).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Transient: the registry cannot be reached, timed out, answered 5xx/408/429, or answered
    /// something that is not a registry answer. Retry with backoff; keep the record.
    #[error("schema registry unavailable ({op}): {detail}")]
    RegistryUnavailable { op: String, detail: String },
    /// Transient for the record (it is not at fault), but needs an operator: fix the API key.
    #[error(
        "schema registry rejected our credentials ({op}, HTTP {status}); check the registry API key and secret"
    )]
    RegistryAuth { op: String, status: u16 },
    /// Permanent: the registry has no schema with this id.
    #[error("schema id {id} not found in the schema registry")]
    SchemaNotFound { id: u32 },
    /// Permanent: the schema is not Avro, or cannot be parsed, or uses schema references.
    #[error("{what} is not a usable Avro schema: {reason}")]
    InvalidSchema { what: String, reason: String },
    /// Permanent: the registry refused to register our schema (409 incompatible with the
    /// subject's compatibility rules, 422 invalid).
    #[error(
        "schema registry refused to register a schema under {subject} (HTTP {status}): {detail}"
    )]
    RegisterRejected {
        subject: String,
        status: u16,
        detail: String,
    },
    /// Permanent: settings that cannot work.
    #[error("invalid schema registry settings: {0}")]
    Config(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Error {
    /// True when retrying later may succeed and the record being processed is not at fault: keep
    /// it (pause, back off, retry). False: the error is about the record's schema (dead-letter
    /// the record) or about our own settings/schema (fail loudly).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::RegistryUnavailable { .. } | Error::RegistryAuth { .. }
        )
    }
}

//! waittimes: live per-store wait times from a pizza chain's Kafka order events.
//!
//! Data flows one way, and no module imports its way back to itself (`layout_check` tests it):
//!
//! - [`config`]: TOML, `WAITTIMES__*` variables, Confluent `.properties` files and flags, checked
//!   at start; the one place Kafka client and registry settings are built.
//! - `pipeline` (Kafka in): the consumer thread replays each partition from `now − horizon`,
//!   decodes with [`wire`], dead-letters what it cannot use, applies the rest to [`state`].
//! - [`state`]: pure; per-store lifecycles, rolling windows, estimators. No I/O, no clock.
//! - `answers`: what the state publishes; HTTP, the emitter and the metrics read it. `table`:
//!   every instance's answers read back from the answers topic, so any instance answers.
//! - outputs: `pipeline`'s emitter (the wait-times topic), `http` (pull API, health), `metrics`
//!   (Prometheus, and the observable events that log and count in one call), `health`.
//! - [`service`]: assembles and starts all of it, and stops it on one `shutdown` token.
//!
//! Beside the service: [`datagen`] (the workshop's Datagen replica and a coherent simulation),
//! [`bench`] (`waittimes bench`), [`score`] (`waittimes score`: estimates against the
//! simulation's truth), [`probe`] (the container's healthcheck). [`domain`] holds the
//! plain data every room shares.

pub(crate) mod answers;
pub mod bench;
pub(crate) mod clock;
pub mod config;
pub mod datagen;
pub mod domain;
pub mod features;
pub(crate) mod health;
pub(crate) mod http;
#[cfg(test)]
mod layout_check;
pub(crate) mod metrics;
pub(crate) mod pipeline;
pub mod probe;
#[cfg(test)]
mod readme_sync;
pub mod score;
pub mod service;
pub(crate) mod shutdown;
pub mod state;
pub(crate) mod table;
pub mod wire;

//! waittimes: live per-store wait times from a pizza chain's Kafka order events.
//!
//! Data flows one way: [`config`] → [`pipeline`] input → [`wire`] decode → [`state`] (pure) →
//! outputs ([`pipeline`] emitter and dead letters, [`http`], [`metrics`]).

pub(crate) mod answers;
pub mod bench;
pub(crate) mod clock;
pub mod config;
pub mod datagen;
pub mod domain;
pub(crate) mod health;
pub(crate) mod http;
#[cfg(test)]
mod layout_check;
pub(crate) mod metrics;
pub(crate) mod pipeline;
pub mod probe;
#[cfg(test)]
mod readme_sync;
pub mod service;
pub(crate) mod shutdown;
pub mod state;
pub mod wire;

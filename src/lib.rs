//! waittimes: live per-store wait times from a pizza chain's Kafka order events.
//!
//! Data flows one way: [`config`] → [`pipeline`] input → [`wire`] decode → [`state`] (pure) →
//! outputs ([`pipeline`] emitter and dead letters, [`http`], [`metrics`]).

pub mod answers;
pub mod bench;
pub mod clock;
pub mod config;
pub mod datagen;
pub mod domain;
pub mod health;
pub mod http;
pub mod metrics;
pub mod pipeline;
pub mod probe;
#[cfg(test)]
mod readme_sync;
pub mod service;
pub mod shutdown;
pub mod state;
pub mod wire;

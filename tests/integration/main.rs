//! Integration tests against the local stack (a Kafka broker and a Schema Registry).
//!
//! `scripts/test` starts a private stack and runs them; by hand: `scripts/stack up`, export
//! `WAITTIMES_TEST_BOOTSTRAP` and `WAITTIMES_TEST_SCHEMA_REGISTRY` (defaults `127.0.0.1:19092` and
//! `http://127.0.0.1:18081`), then `cargo test --test integration`. Every test uses its own
//! uniquely named topics and groups, so they run in parallel on one stack.

mod broker;
mod browser;
mod common;
mod contract;
mod datagen;
mod estimates;
mod faults;
mod features;
mod observability;
mod poison;
mod producers;
mod proxy;
mod recovery;
mod replay;
mod scale;
mod security;
mod service;
mod stack;

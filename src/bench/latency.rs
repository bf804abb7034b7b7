//! Latency percentiles, shared by the steps that time records and the report that prints them.

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latencies {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

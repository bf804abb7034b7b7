//! The events the service consumes and the answers it gives: plain data, no Avro, no Kafka.
//!
//! Time is always event time in milliseconds since the Unix epoch (the Kafka record timestamp),
//! never the wall clock, so a replay of the same input gives the same answers.

use serde::{Deserialize, Serialize};

/// A store, as the upstream schemas carry it (Avro `int`). Valid ids are positive.
pub type StoreId = i32;
/// An order's number within its store (Avro `int`).
pub type OrderId = i32;
/// Event time: milliseconds since the Unix epoch.
pub type EventTime = i64;

/// `pizza_orders`: an order was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderPlaced {
    pub store_id: StoreId,
    pub store_order_id: OrderId,
}

/// `pizza_orders_completed`: an order was completed. The durations are what the producer
/// reports; they are optional because a producer's schema may lack them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCompleted {
    pub store_id: StoreId,
    pub store_order_id: OrderId,
    pub rack_time_secs: Option<i32>,
    pub order_delivery_time_secs: Option<i32>,
}

/// `pizza_orders_cancelled`: an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCancelled {
    pub store_id: StoreId,
    pub store_order_id: OrderId,
}

/// One decoded input event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    Placed(OrderPlaced),
    Completed(OrderCompleted),
    Cancelled(OrderCancelled),
}

impl OrderEvent {
    pub fn store_id(&self) -> StoreId {
        match self {
            OrderEvent::Placed(e) => e.store_id,
            OrderEvent::Completed(e) => e.store_id,
            OrderEvent::Cancelled(e) => e.store_id,
        }
    }

    pub fn store_order_id(&self) -> OrderId {
        match self {
            OrderEvent::Placed(e) => e.store_order_id,
            OrderEvent::Completed(e) => e.store_order_id,
            OrderEvent::Cancelled(e) => e.store_order_id,
        }
    }
}

/// The three input streams, named by meaning rather than by topic name (topics are configurable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputKind {
    Orders,
    Completed,
    Cancelled,
}

impl InputKind {
    pub const ALL: [InputKind; 3] = [
        InputKind::Orders,
        InputKind::Completed,
        InputKind::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Orders => "orders",
            InputKind::Completed => "completed",
            InputKind::Cancelled => "cancelled",
        }
    }
}

/// Where a published wait time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// Observations completed inside the window.
    Live,
    /// No live observation: the last value found on the output topic at start.
    Prior,
    /// Neither: the store is known (it has events) but nothing can be estimated yet.
    None,
}

/// A store's current answer, as HTTP serves it and the emitter publishes it (and, read back
/// from the answers topic, as other instances serve it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreWait {
    pub store_id: StoreId,
    /// The estimator's answer in whole minutes; `None` when there is neither a live
    /// observation nor a prior.
    pub wait_time_minutes: Option<i32>,
    pub basis: Basis,
    /// Orders placed and not yet completed, cancelled or expired.
    pub open_orders: u32,
    /// Wait observations inside the window.
    pub observations: u32,
    pub mean_minutes: Option<f64>,
    pub p50_minutes: Option<f64>,
    pub p90_minutes: Option<f64>,
    /// Completions per hour over the window.
    pub completions_per_hour: f64,
    /// Cancellations / (completions + cancellations) over the window, if any ended.
    pub cancellation_rate: Option<f64>,
    /// The store's stream time when this answer was computed (ms since epoch); `None` for a
    /// store known only from its prior.
    pub updated_at_ms: Option<EventTime>,
}

impl StoreWait {
    /// A store known without events of its own: its prior if it has one, else nothing yet.
    pub fn without_events(store_id: StoreId, prior: Option<i32>) -> StoreWait {
        StoreWait {
            store_id,
            wait_time_minutes: prior,
            basis: if prior.is_some() {
                Basis::Prior
            } else {
                Basis::None
            },
            open_orders: 0,
            observations: 0,
            mean_minutes: None,
            p50_minutes: None,
            p90_minutes: None,
            completions_per_hour: 0.0,
            cancellation_rate: None,
            updated_at_ms: None,
        }
    }
}

//! The wall clock, in the milliseconds Kafka timestamps use. The one place the service reads it:
//! the state and estimators run on stream time and never call this.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::domain::EventTime;

/// Milliseconds since the Unix epoch; 0 for a clock set before 1970.
pub fn now_ms() -> EventTime {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| EventTime::try_from(d.as_millis()).unwrap_or(EventTime::MAX))
        .unwrap_or(0)
}

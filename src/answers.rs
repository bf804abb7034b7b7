//! The published answers: each known store's current [`StoreWait`]. The consumer thread is the
//! only writer; HTTP, the emitter and the per-store metrics read at their own pace, so a store's
//! answer is replaced whole and never read half-written.

use std::sync::Arc;

use dashmap::DashMap;

use crate::domain::{EventTime, StoreId, StoreWait};

/// Cheap to clone: every clone shares one map.
#[derive(Clone, Debug, Default)]
pub struct Answers(Arc<DashMap<StoreId, StoreWait>>);

impl Answers {
    /// Replaces the store's answer.
    pub fn publish(&self, answer: StoreWait) {
        self.0.insert(answer.store_id, answer);
    }

    /// Forgets the store (its partition moved away, or it was evicted); whether it was known.
    pub fn remove(&self, store: StoreId) -> bool {
        self.0.remove(&store).is_some()
    }

    /// The store's current answer.
    pub fn get(&self, store: StoreId) -> Option<StoreWait> {
        self.0.get(&store).map(|e| e.value().clone())
    }

    /// Every answer, by store id; copied out, so no shard stays locked while the caller works.
    pub fn sorted(&self) -> Vec<StoreWait> {
        let mut all: Vec<StoreWait> = self.0.iter().map(|e| e.value().clone()).collect();
        all.sort_unstable_by_key(|w| w.store_id);
        all
    }

    /// Each store's minutes and the stream time they were computed at (stores without a value
    /// are left out), unsorted: what the emitter compares with what the output topic holds.
    pub fn minutes(&self) -> Vec<(StoreId, i32, Option<EventTime>)> {
        self.0
            .iter()
            .filter_map(|e| {
                let w = e.value();
                Some((w.store_id, w.wait_time_minutes?, w.updated_at_ms))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(store: StoreId, minutes: Option<i32>) -> StoreWait {
        StoreWait::without_events(store, minutes)
    }

    #[test]
    fn publish_replaces_and_remove_forgets() {
        let a = Answers::default();
        let reader = a.clone();
        a.publish(answer(3, Some(10)));
        a.publish(answer(1, None));
        a.publish(answer(3, Some(12)));
        assert_eq!(reader.len(), 2);
        assert_eq!(reader.get(3).and_then(|w| w.wait_time_minutes), Some(12));
        let ids: Vec<_> = reader.sorted().iter().map(|w| w.store_id).collect();
        assert_eq!(ids, [1, 3]);
        assert_eq!(reader.minutes(), [(3, 12, None)]);
        assert!(a.remove(3));
        assert!(!a.remove(3));
        assert_eq!(reader.get(3), None);
    }
}

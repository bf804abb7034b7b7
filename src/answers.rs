//! The published answers: each known store's current [`StoreWait`]. The consumer thread is the
//! only writer; HTTP, the emitter and the per-store metrics read at their own pace, so a store's
//! answer is replaced whole and never read half-written.
//!
//! Every change gets the next number of one sequence and is announced on a `watch` channel, which
//! holds only the latest number: a push client that reads slowly wakes once, collects whatever
//! changed since the number it last sent, and so skips to the latest answers instead of queueing
//! intermediate ones. The writer never waits for a reader.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use dashmap::DashMap;
use tokio::sync::watch;

use crate::domain::{EventTime, StoreId, StoreWait};

/// A store's answer with its place in the change sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The sequence number of the change that published this answer (unique, increasing).
    pub seq: u64,
    /// How many distinct answers this store has had, this one included: a reader that last saw
    /// version `v` and now sees `w` skipped `w - v - 1`.
    pub version: u64,
    pub wait: StoreWait,
}

/// Cheap to clone: every clone shares one map.
#[derive(Clone, Debug)]
pub struct Answers(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    map: DashMap<StoreId, Published>,
    /// The last sequence number handed out.
    seq: AtomicU64,
    /// Serialises sequence assignment and insertion, so every change numbered up to what
    /// `changed` announces is already in the map.
    write: Mutex<()>,
    changed: watch::Sender<u64>,
    /// Names this process's sequence, so an event id from before a restart (or from another
    /// instance) is recognised as foreign.
    epoch: u32,
}

impl Default for Answers {
    fn default() -> Self {
        Answers(Arc::new(Inner {
            map: DashMap::new(),
            seq: AtomicU64::new(0),
            write: Mutex::new(()),
            changed: watch::Sender::new(0),
            epoch: rand::random(),
        }))
    }
}

impl Answers {
    /// Replaces the store's answer; an answer equal to the current one is no change (no new
    /// number, nobody woken).
    pub fn publish(&self, answer: StoreWait) {
        let _w = self.0.write.lock().unwrap_or_else(PoisonError::into_inner);
        let version = match self.0.map.get(&answer.store_id) {
            Some(current) if current.wait == answer => return,
            Some(current) => current.version + 1,
            None => 1,
        };
        let seq = self.0.seq.fetch_add(1, Ordering::AcqRel) + 1;
        self.0.map.insert(
            answer.store_id,
            Published {
                seq,
                version,
                wait: answer,
            },
        );
        self.0.changed.send_replace(seq);
    }

    /// Forgets the store (its partition moved away, or it was evicted); whether it was known.
    pub fn remove(&self, store: StoreId) -> bool {
        let _w = self.0.write.lock().unwrap_or_else(PoisonError::into_inner);
        let removed = self.0.map.remove(&store).is_some();
        if removed {
            let seq = self.0.seq.fetch_add(1, Ordering::AcqRel) + 1;
            self.0.changed.send_replace(seq);
        }
        removed
    }

    /// The store's current answer.
    pub fn get(&self, store: StoreId) -> Option<StoreWait> {
        self.0.map.get(&store).map(|e| e.value().wait.clone())
    }

    /// The store's current answer with its sequence numbers.
    #[cfg(test)]
    pub fn get_published(&self, store: StoreId) -> Option<Published> {
        self.0.map.get(&store).map(|e| e.value().clone())
    }

    /// Every answer, by store id; copied out, so no shard stays locked while the caller works.
    pub fn sorted(&self) -> Vec<StoreWait> {
        let mut all: Vec<StoreWait> = self.0.map.iter().map(|e| e.value().wait.clone()).collect();
        all.sort_unstable_by_key(|w| w.store_id);
        all
    }

    /// The answers of the stores `wanted` accepts that changed after `after` and up to `upto`,
    /// in sequence order; later changes are left for the next call (`upto` comes from
    /// [`Answers::subscribe`], so everything up to it is in the map).
    pub fn changed_between(
        &self,
        after: u64,
        upto: u64,
        wanted: impl Fn(StoreId) -> bool,
    ) -> Vec<Published> {
        let mut out: Vec<Published> = self
            .0
            .map
            .iter()
            .filter(|e| e.seq > after && e.seq <= upto && wanted(e.wait.store_id))
            .map(|e| e.value().clone())
            .collect();
        out.sort_unstable_by_key(|p| p.seq);
        out
    }

    /// Whether the store has an answer now.
    pub fn contains(&self, store: StoreId) -> bool {
        self.0.map.contains_key(&store)
    }

    /// The latest sequence number, announced on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.changed.subscribe()
    }

    /// See [`Inner::epoch`].
    pub fn epoch(&self) -> u32 {
        self.0.epoch
    }

    /// Each store's minutes and the stream time they were computed at (stores without a value
    /// are left out), unsorted: what the emitter compares with what the output topic holds.
    pub fn minutes(&self) -> Vec<(StoreId, i32, Option<EventTime>)> {
        self.0
            .map
            .iter()
            .filter_map(|e| {
                let w = &e.value().wait;
                Some((w.store_id, w.wait_time_minutes?, w.updated_at_ms))
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.0.map.len()
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

    #[test]
    fn changes_are_numbered_and_announced_and_repeats_are_not_changes() {
        let a = Answers::default();
        let mut changes = a.subscribe();
        a.publish(answer(3, Some(10)));
        a.publish(answer(1, None));
        a.publish(answer(3, Some(10)));
        assert_eq!(*changes.borrow_and_update(), 2);
        a.publish(answer(3, Some(12)));
        assert!(changes.has_changed().unwrap());
        let upto = *changes.borrow_and_update();
        assert_eq!(upto, 3);
        let three = a.get_published(3).unwrap();
        assert_eq!((three.seq, three.version), (3, 2));

        let all = a.changed_between(0, upto, |_| true);
        let seqs: Vec<_> = all.iter().map(|p| (p.wait.store_id, p.seq)).collect();
        assert_eq!(seqs, [(1, 2), (3, 3)]);
        assert!(a.changed_between(2, upto, |s| s == 1).is_empty());
        assert!(a.changed_between(0, 2, |s| s == 3).is_empty());

        assert!(a.remove(1));
        assert_eq!(*changes.borrow_and_update(), 4);
        assert!(!a.remove(1));
        assert!(!changes.has_changed().unwrap());
    }
}

//! The global table: every store's last answer as its owner shared it on the internal answers
//! topic, read back by every instance. HTTP serves from it what this instance does not own, so
//! any instance answers for any store; a store whose partition moved away keeps its last known
//! answer here (marked as such) until the new owner shares a newer one.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::answers::Answers;
use crate::domain::{StoreId, StoreWait};

/// One store's answer with who computed it and when (wall clock, ms since the epoch): the
/// value of the answers topic, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub answer: StoreWait,
    pub computed_by: String,
    pub computed_at_ms: i64,
}

impl Entry {
    /// Which of two answers for one store is the later: stream time first (an old owner's
    /// late write loses to the new owner's, which has seen at least as much), then wall clock.
    fn newer_than(&self, other: &Entry) -> bool {
        (self.answer.updated_at_ms, self.computed_at_ms)
            >= (other.answer.updated_at_ms, other.computed_at_ms)
    }
}

/// Where a served answer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// This instance owns the store's partition and computed the answer just now.
    Owner,
    /// Another instance's answer from the answers topic, or this instance's last known answer
    /// of a store whose partition moved away: as old as `computed_at` says.
    Table,
    /// No instance has seen events for the store: its prior from the output topic.
    Prior,
}

/// An answer as HTTP serves it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    pub answer: StoreWait,
    pub source: Source,
    pub computed_by: String,
    pub computed_at_ms: i64,
}

/// The input partitions this instance owns and has caught up with, out of how many.
#[derive(Debug, Default)]
struct Owned {
    partitions: BTreeSet<i32>,
    count: i32,
}

/// Cheap to clone: every clone shares one map.
#[derive(Clone, Debug)]
pub struct Table {
    instance: Arc<str>,
    entries: Arc<DashMap<StoreId, Entry>>,
    owned: Arc<RwLock<Owned>>,
}

/// The partition the Java client's partitioner (and librdkafka's `murmur2_random`) puts `key`
/// on: Kafka's `Utils.murmur2`, positive, modulo the count. Only to know which stores are
/// ours: producing is left to the configured partitioner.
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    ((h & 0x7fff_ffff) % partitions.max(1) as u32) as i32
}

impl Table {
    /// An empty table for the instance named `instance`.
    pub fn new(instance: impl Into<Arc<str>>) -> Table {
        Table {
            instance: instance.into(),
            entries: Arc::default(),
            owned: Arc::default(),
        }
    }

    /// The input partitions this instance owns and has caught up with (none while replaying).
    pub fn set_owned(&self, partitions: BTreeSet<i32>, count: i32) {
        let mut owned = self.owned.write().unwrap_or_else(|p| p.into_inner());
        *owned = Owned { partitions, count };
    }

    /// Whether the store's key (its id as text, as Datagen writes it) lands on a partition
    /// this instance owns and has caught up with: then its own answer, even a bare prior, is
    /// the current one, and an entry in the table is what an earlier run left.
    fn owns(&self, store: StoreId) -> bool {
        let owned = self.owned.read().unwrap_or_else(|p| p.into_inner());
        owned.count > 0
            && owned
                .partitions
                .contains(&java_partition(store.to_string().as_bytes(), owned.count))
    }

    /// This instance's name in the answers it computes.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Keeps `entry` unless the table holds a newer answer for its store.
    pub fn upsert(&self, entry: Entry) {
        let store = entry.answer.store_id;
        match self.entries.entry(store) {
            dashmap::Entry::Occupied(mut held) => {
                if entry.newer_than(held.get()) {
                    held.insert(entry);
                }
            }
            dashmap::Entry::Vacant(slot) => {
                slot.insert(entry);
            }
        }
    }

    /// Keeps this instance's answer of a store it no longer owns, stamped `now_ms`.
    pub fn keep_last_known(&self, answer: StoreWait, now_ms: i64) {
        self.upsert(Entry {
            answer,
            computed_by: self.instance.to_string(),
            computed_at_ms: now_ms,
        });
    }

    /// Forgets the store (a tombstone on the answers topic).
    pub fn remove(&self, store: StoreId) {
        self.entries.remove(&store);
    }

    pub fn get(&self, store: StoreId) -> Option<Entry> {
        self.entries.get(&store).map(|e| e.value().clone())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// What to serve for one store, given this instance's own answer for it (if any).
    ///
    /// An own answer with events is the owner's, unless the table holds a later one in stream
    /// time: after a rebalance, the new owner's replay starts behind the last known answer.
    /// An own answer without events is only the prior every instance loads: the table's
    /// answer (from the owner) wins over it.
    pub fn resolve(&self, own: Option<StoreWait>, store: StoreId, now_ms: i64) -> Option<Served> {
        let shared = self.get(store);
        match (own, shared) {
            (Some(own), Some(_)) if self.owns(store) => Some(self.own(own, now_ms)),
            (Some(own), Some(shared))
                if own.updated_at_ms.is_none()
                    || shared.answer.updated_at_ms > own.updated_at_ms =>
            {
                Some(Self::shared(shared))
            }
            (Some(own), _) => Some(self.own(own, now_ms)),
            (None, Some(shared)) => Some(Self::shared(shared)),
            (None, None) => None,
        }
    }

    /// [`Table::resolve`] for every store known here or in the table, by store id.
    pub fn resolve_all(&self, answers: &Answers, now_ms: i64) -> Vec<Served> {
        let mut own = answers.sorted().into_iter().peekable();
        let mut shared: Vec<StoreId> = self.entries.iter().map(|e| *e.key()).collect();
        shared.sort_unstable();
        let mut shared = shared.into_iter().peekable();
        let mut all = Vec::with_capacity(answers.len().max(self.len()));
        loop {
            let next_own = own.peek().map(|w| w.store_id);
            let next_shared = shared.peek().copied();
            let (store, mine) = match (next_own, next_shared) {
                (None, None) => break,
                (Some(a), Some(b)) if b < a => (b, None),
                (Some(a), b) => {
                    if b == Some(a) {
                        shared.next();
                    }
                    (a, own.next())
                }
                (None, Some(b)) => (b, None),
            };
            if mine.is_none() {
                shared.next();
            }
            if let Some(served) = self.resolve(mine, store, now_ms) {
                all.push(served);
            }
        }
        all
    }

    fn own(&self, answer: StoreWait, now_ms: i64) -> Served {
        Served {
            source: if answer.updated_at_ms.is_some() {
                Source::Owner
            } else {
                Source::Prior
            },
            answer,
            computed_by: self.instance.to_string(),
            computed_at_ms: now_ms,
        }
    }

    fn shared(entry: Entry) -> Served {
        Served {
            answer: entry.answer,
            source: Source::Table,
            computed_by: entry.computed_by,
            computed_at_ms: entry.computed_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Basis;

    fn live(store: StoreId, minutes: i32, at: i64) -> StoreWait {
        StoreWait {
            basis: Basis::Live,
            updated_at_ms: Some(at),
            ..StoreWait::without_events(store, Some(minutes))
        }
    }

    fn entry(answer: StoreWait, by: &str, at: i64) -> Entry {
        Entry {
            answer,
            computed_by: by.into(),
            computed_at_ms: at,
        }
    }

    #[test]
    fn java_partition_matches_the_java_clients_murmur2() {
        // Kafka's UtilsTest.testMurmur2 cases, as partitions of a 2^31 − 1 modulus-free hash.
        let hash = |k: &[u8]| java_partition(k, i32::MAX);
        let positive = |h: i64| ((h as i32) & 0x7fff_ffff) % i32::MAX;
        assert_eq!(hash(b"21"), positive(-973_932_308));
        assert_eq!(hash(b"foobar"), positive(-790_332_482));
        assert_eq!(hash(b"a-little-bit-long-string"), positive(-985_981_536));
        assert_eq!(
            hash(b"a-little-bit-longer-string"),
            positive(-1_486_304_829)
        );
        assert_eq!(
            hash(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            positive(-58_897_971)
        );
        assert_eq!(hash(b"abc"), positive(479_470_107));
    }

    #[test]
    fn an_owned_store_is_answered_here_even_from_a_bare_prior() {
        let t = Table::new("me");
        let store = 7;
        t.upsert(entry(live(store, 12, 2_000), "earlier-run", 50));
        let prior = StoreWait::without_events(store, Some(5));
        assert_eq!(
            t.resolve(Some(prior.clone()), store, 99).map(|s| s.source),
            Some(Source::Table)
        );
        let mine = java_partition(b"7", 6);
        t.set_owned([mine].into(), 6);
        assert_eq!(
            t.resolve(Some(prior.clone()), store, 99).map(|s| s.source),
            Some(Source::Prior)
        );
        t.set_owned([(mine + 1) % 6].into(), 6);
        assert_eq!(
            t.resolve(Some(prior), store, 99).map(|s| s.source),
            Some(Source::Table)
        );
    }

    #[test]
    fn a_late_write_of_an_old_owner_loses_to_the_newer_answer() {
        let t = Table::new("a");
        t.upsert(entry(live(1, 12, 2_000), "b", 50));
        t.upsert(entry(live(1, 10, 1_000), "c", 60));
        assert_eq!(t.get(1).map(|e| e.computed_by), Some("b".into()));
        t.upsert(entry(live(1, 11, 2_000), "c", 70));
        assert_eq!(t.get(1).map(|e| e.computed_by), Some("c".into()));
        t.remove(1);
        assert_eq!(t.get(1), None);
    }

    #[test]
    fn owner_answers_win_unless_the_table_is_ahead_in_stream_time() {
        let t = Table::new("me");
        t.upsert(entry(live(1, 12, 2_000), "other", 50));
        // Replaying after a rebalance: our answer is behind the last known one.
        let behind = t.resolve(Some(live(1, 9, 1_000)), 1, 99).expect("served");
        assert_eq!(
            (behind.source, behind.computed_by.as_str()),
            (Source::Table, "other")
        );
        let caught_up = t.resolve(Some(live(1, 13, 2_000)), 1, 99).expect("served");
        assert_eq!(caught_up.source, Source::Owner);
        assert_eq!(
            (caught_up.computed_by.as_str(), caught_up.computed_at_ms),
            ("me", 99)
        );
        // A prior every instance holds loses to the owner's shared answer.
        let prior = StoreWait::without_events(1, Some(5));
        let served = t.resolve(Some(prior.clone()), 1, 99).expect("served");
        assert_eq!(served.answer.wait_time_minutes, Some(12));
        assert_eq!(
            t.resolve(Some(prior), 2, 99).map(|s| s.source),
            Some(Source::Prior)
        );
        assert_eq!(t.resolve(None, 3, 99), None);
    }

    #[test]
    fn resolve_all_merges_own_and_shared_stores_by_id() {
        let t = Table::new("me");
        let answers = Answers::default();
        answers.publish(live(2, 7, 1_000));
        answers.publish(StoreWait::without_events(4, Some(3)));
        t.upsert(entry(live(1, 5, 1_000), "x", 1));
        t.upsert(entry(live(2, 6, 500), "x", 1));
        t.upsert(entry(live(4, 8, 900), "x", 1));
        t.upsert(entry(live(5, 9, 900), "x", 1));
        let all = t.resolve_all(&answers, 10);
        let got: Vec<_> = all
            .iter()
            .map(|s| (s.answer.store_id, s.answer.wait_time_minutes, s.source))
            .collect();
        assert_eq!(
            got,
            [
                (1, Some(5), Source::Table),
                (2, Some(7), Source::Owner),
                (4, Some(8), Source::Table),
                (5, Some(9), Source::Table),
            ]
        );
    }
}

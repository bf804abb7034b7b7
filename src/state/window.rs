//! One store's rolling window: wait observations and cancellations keyed by their event time.
//!
//! Both sequences are kept sorted by event time so that sliding is a pop from the front.
//! Insertion is a push at the back when events come in order (the common case) and a binary
//! search plus a shift when they come late. An entry belongs to the window while its time is in
//! `(stream_time − window, stream_time]`; the caller passes the lower bound `lo` (exclusive).

use std::collections::VecDeque;

use crate::domain::EventTime;

/// A wait observation: an order completed at `at` after waiting `wait_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    pub at: EventTime,
    pub wait_ms: i64,
    /// Completion − placement (true) or the completion's reported durations (false).
    pub measured: bool,
}

/// Sorted observations and cancellation times of one store.
#[derive(Debug, Default)]
pub(crate) struct Window {
    obs: VecDeque<Observation>,
    cancels: VecDeque<EventTime>,
    /// How many of `obs` are measured; the queue estimator only trusts a store whose
    /// orders do match their completions.
    measured: usize,
}

/// Below this many slots a container is never shrunk (avoids churn on small stores).
const SHRINK_FLOOR: usize = 64;

impl Window {
    /// Adds an observation unless it is already outside the window. Returns whether it entered.
    pub(crate) fn insert(&mut self, lo: EventTime, o: Observation) -> bool {
        if o.at <= lo {
            return false;
        }
        if self.obs.back().is_none_or(|b| b.at <= o.at) {
            self.obs.push_back(o);
        } else {
            // Late completion: after every entry at or before its time (stable for ties).
            let pos = self.obs.partition_point(|x| x.at <= o.at);
            self.obs.insert(pos, o);
        }
        if o.measured {
            self.measured += 1;
        }
        true
    }

    /// Replaces the tentative (reported) observation `(at, old_wait_ms)` with `new`, which
    /// must have the same time. If the tentative one is not there (it had already slid out, or
    /// never entered) `new` is inserted if it is inside the window. Returns whether `new` is in.
    pub(crate) fn replace(&mut self, lo: EventTime, old_wait_ms: i64, new: Observation) -> bool {
        let start = self.obs.partition_point(|x| x.at < new.at);
        let found = self
            .obs
            .range(start..)
            .take_while(|x| x.at == new.at)
            .position(|x| !x.measured && x.wait_ms == old_wait_ms);
        match found {
            Some(i) => {
                if let Some(slot) = self.obs.get_mut(start + i) {
                    *slot = new;
                }
                if new.measured {
                    self.measured += 1;
                }
                true
            }
            None => self.insert(lo, new),
        }
    }

    /// Counts a cancellation at `at` unless it is already outside the window.
    pub(crate) fn cancel(&mut self, lo: EventTime, at: EventTime) -> bool {
        if at <= lo {
            return false;
        }
        if self.cancels.back().is_none_or(|&b| b <= at) {
            self.cancels.push_back(at);
        } else {
            let pos = self.cancels.partition_point(|&x| x <= at);
            self.cancels.insert(pos, at);
        }
        true
    }

    /// Drops everything at or before `lo`; returns whether anything left.
    pub(crate) fn evict(&mut self, lo: EventTime) -> bool {
        let before = self.obs.len() + self.cancels.len();
        while let Some(front) = self.obs.front() {
            if front.at > lo {
                break;
            }
            if front.measured {
                self.measured -= 1;
            }
            self.obs.pop_front();
        }
        while self.cancels.front().is_some_and(|&c| c <= lo) {
            self.cancels.pop_front();
        }
        let evicted = before != self.obs.len() + self.cancels.len();
        if evicted {
            shrink_if_sparse(&mut self.obs);
            shrink_if_sparse(&mut self.cancels);
        }
        evicted
    }

    pub(crate) fn len(&self) -> usize {
        self.obs.len()
    }

    pub(crate) fn measured(&self) -> usize {
        self.measured
    }

    pub(crate) fn cancellations(&self) -> usize {
        self.cancels.len()
    }

    /// Copies the waits (ms) into `out`, replacing its contents.
    pub(crate) fn waits_into(&self, out: &mut Vec<i64>) {
        out.clear();
        out.extend(self.obs.iter().map(|o| o.wait_ms));
    }

    /// The observations that completed in `[from, to)`, oldest first (the feature windows
    /// read a closed window's completions from here, corrections included).
    pub(crate) fn completed_between(
        &self,
        from: EventTime,
        to: EventTime,
    ) -> impl Iterator<Item = &Observation> {
        let start = self.obs.partition_point(|x| x.at < from);
        self.obs.range(start..).take_while(move |x| x.at < to)
    }

    #[cfg(test)]
    pub(crate) fn observations(&self) -> Vec<Observation> {
        self.obs.iter().copied().collect()
    }
}

/// Gives memory back after a burst: capacity never stays above 4× the length.
pub(crate) fn shrink_if_sparse<T>(q: &mut VecDeque<T>) {
    if q.capacity() > SHRINK_FLOOR && q.len().saturating_mul(4) < q.capacity() {
        q.shrink_to(q.len().saturating_mul(2).max(SHRINK_FLOOR / 2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(at: EventTime, wait_ms: i64) -> Observation {
        Observation {
            at,
            wait_ms,
            measured: false,
        }
    }

    fn mea(at: EventTime, wait_ms: i64) -> Observation {
        Observation {
            at,
            wait_ms,
            measured: true,
        }
    }

    fn times(w: &Window) -> Vec<EventTime> {
        w.observations().iter().map(|o| o.at).collect()
    }

    #[test]
    fn late_insert_keeps_time_order() {
        let mut w = Window::default();
        for at in [10, 30, 50] {
            assert!(w.insert(0, rep(at, 1)));
        }
        assert!(w.insert(0, rep(20, 2)));
        assert!(w.insert(0, rep(5, 3)));
        assert!(w.insert(0, rep(50, 4)));
        assert_eq!(times(&w), vec![5, 10, 20, 30, 50, 50]);
        // Ties keep arrival order.
        let last: Vec<i64> = w.observations().iter().map(|o| o.wait_ms).collect();
        assert_eq!(last, vec![3, 1, 2, 1, 1, 4]);
    }

    #[test]
    fn insert_at_or_below_lower_bound_is_refused() {
        let mut w = Window::default();
        assert!(!w.insert(100, rep(100, 1)));
        assert!(!w.insert(100, rep(i64::MIN, 1)));
        assert!(w.insert(100, rep(101, 1)));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn evict_is_exclusive_of_lower_bound() {
        let mut w = Window::default();
        for at in [100, 101, 102] {
            w.insert(0, mea(at, 1));
        }
        w.cancel(0, 100);
        w.cancel(0, 101);
        assert!(!w.evict(99));
        assert_eq!(w.len(), 3);
        assert!(w.evict(100));
        assert_eq!(times(&w), vec![101, 102]);
        assert_eq!(w.cancellations(), 1);
        assert_eq!(w.measured(), 2);
    }

    #[test]
    fn replace_finds_the_exact_tentative_observation() {
        let mut w = Window::default();
        w.insert(0, rep(10, 500));
        w.insert(0, rep(10, 700));
        w.insert(0, mea(10, 700));
        w.insert(0, rep(11, 700));
        assert!(w.replace(0, 700, mea(10, 300)));
        let got: Vec<(i64, i64, bool)> = w
            .observations()
            .iter()
            .map(|o| (o.at, o.wait_ms, o.measured))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 500, false),
                (10, 300, true),
                (10, 700, true),
                (11, 700, false)
            ]
        );
        assert_eq!(w.measured(), 2);
    }

    #[test]
    fn replace_without_tentative_inserts_if_inside() {
        let mut w = Window::default();
        assert!(w.replace(0, 123, mea(10, 5)));
        assert_eq!(w.len(), 1);
        assert!(!w.replace(20, 123, mea(10, 5)));
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn memory_is_returned_after_a_burst() {
        let mut w = Window::default();
        for at in 1..=10_000 {
            w.insert(0, rep(at, 1));
        }
        w.evict(9_990);
        assert_eq!(w.len(), 10);
        assert!(w.obs.capacity() <= 64, "capacity {}", w.obs.capacity());
    }
}

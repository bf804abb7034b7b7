//! Readiness as named conditions the pipeline sets and HTTP (and `/metrics`) reads.
//!
//! The service is ready when every [`Condition`] is ok and it is not shutting down. Each
//! condition starts out not ready with a reason of its own, so a component that never reports
//! keeps the service out of rotation instead of letting it serve half-built state.
//!
//! Writes are rare (state changes of connections, replay progress), reads are a probe every few
//! seconds plus a scrape: a mutex over a small array is plenty, and [`Health::is_ready`] is a
//! single atomic load for callers on hot paths.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Reasons longer than this are cut: they come from error messages of other libraries and end
/// up in probe responses.
const MAX_REASON_CHARS: usize = 512;

/// What must hold before the service may take traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// The Kafka cluster is reachable.
    Broker,
    /// The Schema Registry answers (writer schemas can be fetched, ours is registered).
    SchemaRegistry,
    /// The consumer group has assigned this instance its partitions.
    Assignment,
    /// The prior wait times were read from the output topic.
    Priors,
    /// The replay reached the end offsets seen at start: answers are current.
    CaughtUp,
    /// The answers topic was read to its end once: other instances' stores are known.
    AnswersTable,
}

impl Condition {
    pub const ALL: [Condition; 6] = [
        Condition::Broker,
        Condition::SchemaRegistry,
        Condition::Assignment,
        Condition::Priors,
        Condition::CaughtUp,
        Condition::AnswersTable,
    ];

    /// The name used in probe responses and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Broker => "broker",
            Condition::SchemaRegistry => "schema_registry",
            Condition::Assignment => "assignment",
            Condition::Priors => "priors",
            Condition::CaughtUp => "caught_up",
            Condition::AnswersTable => "answers_table",
        }
    }

    /// Why the condition does not hold before anyone has reported on it.
    fn initial_reason(self) -> &'static str {
        match self {
            Condition::Broker => "not connected to the broker yet",
            Condition::SchemaRegistry => "schema registry not reached yet",
            Condition::Assignment => "no partitions assigned yet",
            Condition::Priors => "priors not loaded yet",
            Condition::CaughtUp => "replay not started yet",
            Condition::AnswersTable => "answers topic not read yet",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The name under which shutting down appears in a [`Report`].
pub const SHUTTING_DOWN: &str = "shutdown";

/// A point-in-time view of readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub ready: bool,
    /// Every condition in [`Condition::ALL`] order, `None` when it holds, then
    /// ([`SHUTTING_DOWN`], reason) while shutting down.
    pub conditions: Vec<(&'static str, Option<String>)>,
    /// What an operator should know that does not fail readiness, by name.
    pub warnings: Vec<(&'static str, String)>,
}

/// Something wrong that does not make the service's answers wrong, so it is reported on the
/// readiness probe without failing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// A store's records arrived on different partition numbers: the input topics are not
    /// co-partitioned. One instance still matches them; several would not.
    Mispartitioned,
}

impl Warning {
    pub fn as_str(self) -> &'static str {
        match self {
            Warning::Mispartitioned => "mispartitioned_input",
        }
    }
}

impl Report {
    /// The conditions that do not hold, with their reasons.
    pub fn not_ready(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.conditions
            .iter()
            .filter_map(|(name, reason)| reason.as_deref().map(|r| (*name, r)))
    }
}

#[derive(Debug)]
struct State {
    /// `None` = ok, `Some(reason)` = not ready.
    reasons: [Option<String>; Condition::ALL.len()],
    shutting_down: bool,
    warnings: Vec<(Warning, String)>,
}

impl State {
    fn ready(&self) -> bool {
        !self.shutting_down && self.reasons.iter().all(Option::is_none)
    }
}

/// Shared readiness (wrap in an `Arc`). All methods take `&self` and never block for long.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
    /// Cached `State::ready`, updated under the lock, read without it.
    ready: AtomicBool,
    /// Cached per-condition "ok" flags, for cheap checks on hot paths.
    ok: [AtomicBool; Condition::ALL.len()],
    /// How often each condition was lost: a reader that sees the same count before and after
    /// some work knows the condition held throughout.
    losses: [AtomicU64; Condition::ALL.len()],
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Every condition pending with its initial reason.
    pub fn new() -> Self {
        Health {
            state: Mutex::new(State {
                reasons: Condition::ALL.map(|c| Some(c.initial_reason().to_owned())),
                shutting_down: false,
                warnings: Vec::new(),
            }),
            ready: AtomicBool::new(false),
            ok: Condition::ALL.map(|_| AtomicBool::new(false)),
            losses: Condition::ALL.map(|_| AtomicU64::new(0)),
        }
    }

    /// Records whether `condition` holds: `Ok(())`, or `Err(reason)` saying what is missing in
    /// words an operator can act on. Flips are logged; a changed reason alone is not (replay
    /// progress changes it constantly).
    pub fn set(&self, condition: Condition, status: Result<(), &str>) {
        let mut state = self.lock();
        let was_ready = state.ready();
        let slot = &mut state.reasons[condition.index()];
        match status {
            Ok(()) => {
                if slot.take().is_some() {
                    tracing::info!(condition = condition.as_str(), "readiness condition ok");
                }
            }
            Err(reason) => {
                let reason = truncate(reason);
                match slot {
                    Some(old) if *old == reason => {}
                    Some(old) => {
                        tracing::debug!(condition = condition.as_str(), reason, "still not ready");
                        reason.clone_into(old);
                    }
                    None => {
                        self.losses[condition.index()].fetch_add(1, Ordering::AcqRel);
                        tracing::warn!(condition = condition.as_str(), reason, "readiness lost");
                        *slot = Some(reason.to_owned());
                    }
                }
            }
        }
        self.ok[condition.index()].store(
            state.reasons[condition.index()].is_none(),
            Ordering::Release,
        );
        self.publish(&state, was_ready);
    }

    /// Shorthand for `set(condition, Ok(()))`.
    pub fn set_ok(&self, condition: Condition) {
        self.set(condition, Ok(()));
    }

    /// Shorthand for `set(condition, Err(reason))` with an owned reason.
    pub fn set_not_ready(&self, condition: Condition, reason: impl AsRef<str>) {
        self.set(condition, Err(reason.as_ref()));
    }

    /// Makes the service not ready for good, so load balancers drain it before it stops.
    pub fn set_shutting_down(&self) {
        let mut state = self.lock();
        let was_ready = state.ready();
        if !state.shutting_down {
            tracing::info!("shutting down: reporting not ready");
            state.shutting_down = true;
        }
        self.publish(&state, was_ready);
    }

    #[cfg(test)]
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    /// Every condition holds and the service is not shutting down. One atomic load.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// `Some(n)` while the condition holds, `n` counting how often it was lost before: equal
    /// values before and after reading what the condition guards prove it held meanwhile.
    pub fn holding(&self, condition: Condition) -> Option<u64> {
        let losses = self.losses[condition.index()].load(Ordering::Acquire);
        self.is_ok(condition).then_some(losses)
    }

    /// Whether one condition holds. One atomic load.
    pub fn is_ok(&self, condition: Condition) -> bool {
        self.ok[condition.index()].load(Ordering::Acquire)
    }

    /// Every condition and why it does not hold, consistent with `ready`.
    pub fn report(&self) -> Report {
        let state = self.lock();
        let mut conditions: Vec<(&'static str, Option<String>)> = Condition::ALL
            .iter()
            .map(|c| (c.as_str(), state.reasons[c.index()].clone()))
            .collect();
        if state.shutting_down {
            conditions.push((SHUTTING_DOWN, Some("shutting down".to_owned())));
        }
        Report {
            ready: state.ready(),
            conditions,
            warnings: state
                .warnings
                .iter()
                .map(|(w, reason)| (w.as_str(), reason.clone()))
                .collect(),
        }
    }

    /// Raises (or rewords) a warning; it stays until the process restarts, as what caused it
    /// (records already applied) does not go away either. Logged when first raised.
    pub fn warn(&self, warning: Warning, reason: impl AsRef<str>) {
        let reason = truncate(reason.as_ref()).to_owned();
        let mut state = self.lock();
        match state.warnings.iter_mut().find(|(w, _)| *w == warning) {
            Some((_, r)) => *r = reason,
            None => {
                tracing::warn!(warning = warning.as_str(), %reason, "readiness warning raised");
                state.warnings.push((warning, reason));
            }
        }
    }

    fn publish(&self, state: &State, was_ready: bool) {
        let ready = state.ready();
        self.ready.store(ready, Ordering::Release);
        if ready && !was_ready {
            tracing::info!("service ready");
        } else if !ready && was_ready {
            tracing::warn!("service not ready");
        }
    }

    /// A panic while holding the lock cannot leave the state inconsistent (every write is a
    /// single assignment), so a poisoned lock is used as is rather than propagated.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn truncate(reason: &str) -> &str {
    match reason.char_indices().nth(MAX_REASON_CHARS) {
        Some((at, _)) => &reason[..at],
        None => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_ok(health: &Health) {
        for c in Condition::ALL {
            health.set(c, Ok(()));
        }
    }

    #[test]
    fn starts_not_ready_with_a_reason_per_condition() {
        let health = Health::new();
        assert!(!health.is_ready());
        let report = health.report();
        assert!(!report.ready);
        assert_eq!(report.conditions.len(), Condition::ALL.len());
        assert_eq!(report.not_ready().count(), Condition::ALL.len());
        assert!(
            report
                .not_ready()
                .any(|(n, r)| n == "assignment" && r == "no partitions assigned yet")
        );
    }

    #[test]
    fn ready_only_when_every_condition_holds() {
        let health = Health::new();
        for c in Condition::ALL {
            if c != Condition::CaughtUp {
                health.set(c, Ok(()));
            }
        }
        assert!(!health.is_ready());
        health.set(
            Condition::CaughtUp,
            Err("replaying: 12345 records behind the end offsets seen at start"),
        );
        let report = health.report();
        assert_eq!(
            report.not_ready().collect::<Vec<_>>(),
            vec![(
                "caught_up",
                "replaying: 12345 records behind the end offsets seen at start"
            )]
        );
        assert!(!health.is_ok(Condition::CaughtUp));
        assert!(health.is_ok(Condition::Broker));
        health.set_ok(Condition::CaughtUp);
        assert!(health.is_ready());
        assert!(health.report().ready);
        assert_eq!(health.report().not_ready().count(), 0);
    }

    #[test]
    fn losing_a_condition_makes_it_not_ready_again() {
        let health = Health::new();
        all_ok(&health);
        assert!(health.is_ready());
        let err = String::from("broker unreachable: connection refused");
        health.set(Condition::Broker, Err(&err));
        assert!(!health.is_ready());
        health.set_not_ready(Condition::Broker, format!("{err} (again)"));
        assert_eq!(
            health.report().not_ready().collect::<Vec<_>>(),
            vec![("broker", "broker unreachable: connection refused (again)")]
        );
        health.set(Condition::Broker, Ok(()));
        assert!(health.is_ready());
    }

    #[test]
    fn shutting_down_wins_over_everything() {
        let health = Health::new();
        all_ok(&health);
        health.set_shutting_down();
        assert!(!health.is_ready());
        assert!(health.is_shutting_down());
        all_ok(&health);
        assert!(!health.is_ready());
        let report = health.report();
        assert_eq!(
            report.not_ready().collect::<Vec<_>>(),
            vec![(SHUTTING_DOWN, "shutting down")]
        );
    }

    #[test]
    fn warnings_are_reported_without_failing_readiness() {
        let h = Health::new();
        all_ok(&h);
        h.warn(Warning::Mispartitioned, "store 3 on partitions 1 and 2");
        h.warn(Warning::Mispartitioned, "store 4 on partitions 0 and 5");
        assert!(h.is_ready());
        let report = h.report();
        assert!(report.ready);
        assert_eq!(
            report.warnings,
            [(
                "mispartitioned_input",
                "store 4 on partitions 0 and 5".to_owned()
            )]
        );
    }

    #[test]
    fn holding_changes_when_the_condition_was_lost_meanwhile() {
        let h = Health::new();
        assert_eq!(h.holding(Condition::CaughtUp), None);
        h.set_ok(Condition::CaughtUp);
        let before = h.holding(Condition::CaughtUp);
        assert!(before.is_some());
        h.set_ok(Condition::CaughtUp);
        assert_eq!(h.holding(Condition::CaughtUp), before);
        h.set_not_ready(Condition::CaughtUp, "replaying");
        h.set_not_ready(Condition::CaughtUp, "replaying still");
        h.set_ok(Condition::CaughtUp);
        let after = h.holding(Condition::CaughtUp);
        assert!(after.is_some());
        assert_ne!(after, before);
    }

    #[test]
    fn long_reasons_are_cut() {
        let health = Health::new();
        health.set(Condition::Priors, Err(&"é".repeat(5000)));
        let report = health.report();
        let (_, reason) = report
            .not_ready()
            .find(|(n, _)| *n == "priors")
            .unwrap_or_default();
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn shared_across_threads() {
        let health = std::sync::Arc::new(Health::new());
        let handles: Vec<_> = Condition::ALL
            .into_iter()
            .map(|c| {
                let health = health.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        health.set_not_ready(c, format!("step {i}"));
                    }
                    health.set_ok(c);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert!(health.is_ready());
    }
}

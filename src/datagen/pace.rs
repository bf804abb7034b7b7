//! When each event may go: a rate cap shared by all topics, and the simulated clock's mapping to
//! the wall clock. Pure arithmetic on offsets from the run's start, so it is tested without
//! sleeping; the driver turns the answers into sleeps.

use std::time::Duration;

use crate::domain::EventTime;

/// Spaces events `1/rate` apart on a virtual schedule (a GCRA): each event reserves the next
/// slot. A sender that falls behind (a late wake-up, a slow send) may catch up for at most
/// `tolerance`, so the cap holds on average without bursting after an idle spell.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    interval: Duration,
    tolerance: Duration,
    next: Duration,
}

impl RateLimiter {
    /// `None` for a rate of 0 (no cap) or one too small to mean anything.
    pub fn new(events_per_sec: f64) -> Option<RateLimiter> {
        if !(events_per_sec.is_finite() && events_per_sec > 0.0) {
            return None;
        }
        let interval = Duration::try_from_secs_f64(1.0 / events_per_sec).ok()?;
        // Sleeps are only good to about a millisecond: allow that much catch-up and no more.
        let tolerance = interval.max(Duration::from_millis(10));
        Some(RateLimiter {
            interval,
            tolerance,
            next: Duration::ZERO,
        })
    }

    /// Reserves a slot for an event ready at `now` (offset from the run's start); returns the
    /// offset at which it may be sent (`now` or later).
    pub fn reserve(&mut self, now: Duration) -> Duration {
        let at = self.next.max(now.saturating_sub(self.tolerance));
        self.next = at + self.interval;
        at.max(now)
    }
}

/// Maps simulated time to wall-clock offsets: `speed` simulated seconds per wall second.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    start_ms: EventTime,
    /// `None`: as fast as possible.
    speed: Option<f64>,
}

impl SimClock {
    pub fn new(start_ms: EventTime, speed: f64) -> SimClock {
        let speed = (speed.is_finite() && speed > 0.0).then_some(speed);
        SimClock { start_ms, speed }
    }

    /// The wall-clock offset from the run's start at which an event of simulated time `t_ms`
    /// is due.
    pub fn due(&self, t_ms: EventTime) -> Duration {
        match self.speed {
            None => Duration::ZERO,
            Some(speed) => {
                let sim_secs = (t_ms.saturating_sub(self.start_ms)).max(0) as f64 / 1000.0;
                Duration::try_from_secs_f64(sim_secs / speed).unwrap_or(Duration::MAX)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn zero_means_no_cap() {
        assert!(RateLimiter::new(0.0).is_none());
        assert!(RateLimiter::new(-1.0).is_none());
        assert!(RateLimiter::new(f64::NAN).is_none());
        assert!(RateLimiter::new(f64::INFINITY).is_none());
    }

    #[test]
    fn spaces_ready_events_one_interval_apart() {
        let mut r = RateLimiter::new(100.0).unwrap();
        // All events ready at once: they go 10 ms apart.
        let slots: Vec<_> = (0..5).map(|_| r.reserve(Duration::ZERO)).collect();
        assert_eq!(
            slots,
            vec![Duration::ZERO, 10 * MS, 20 * MS, 30 * MS, 40 * MS]
        );
    }

    #[test]
    fn a_sender_that_keeps_pace_is_never_delayed() {
        let mut r = RateLimiter::new(100.0).unwrap();
        for i in 0..100u32 {
            let now = 10 * MS * i;
            assert_eq!(r.reserve(now), now);
        }
    }

    #[test]
    fn a_slow_producer_is_not_delayed_and_gets_no_burst_later() {
        let mut r = RateLimiter::new(100.0).unwrap();
        assert_eq!(r.reserve(Duration::ZERO), Duration::ZERO);
        // Idle for a second: the next events are spaced from the tolerance window, not from 0.
        let now = Duration::from_secs(1);
        let slots: Vec<_> = (0..4).map(|_| r.reserve(now)).collect();
        assert_eq!(slots, vec![now, now, now + 10 * MS, now + 20 * MS]);
    }

    #[test]
    fn late_wakeups_are_made_up_within_the_tolerance() {
        // 10 000/s: slots every 100 µs, but the sender only wakes every 1 ms and then sends what
        // is due. Over a second it still sends 10 000 events, not fewer.
        let mut r = RateLimiter::new(10_000.0).unwrap();
        let mut now = Duration::ZERO;
        let mut sent = 0u32;
        while now < Duration::from_secs(1) {
            loop {
                let at = r.reserve(now);
                if at > now {
                    // Not yet: this slot goes at the next wake-up.
                    now += MS;
                    sent += 1;
                    break;
                }
                sent += 1;
            }
        }
        assert!((9_990..=10_010).contains(&sent), "{sent}");
    }

    #[test]
    fn high_rates_keep_sub_microsecond_spacing() {
        let mut r = RateLimiter::new(1_000_000.0).unwrap();
        let last = (0..1_000_000)
            .map(|_| r.reserve(Duration::ZERO))
            .last()
            .unwrap();
        assert_eq!(last, Duration::from_micros(999_999));
    }

    #[test]
    fn sim_clock_maps_simulated_time() {
        let c = SimClock::new(1_000_000, 60.0);
        assert_eq!(c.due(1_000_000), Duration::ZERO);
        // One simulated hour = one wall minute.
        assert_eq!(c.due(1_000_000 + 3_600_000), Duration::from_secs(60));
        assert_eq!(c.due(1_000_000 + 30_000), Duration::from_millis(500));
        // Before the start: due now.
        assert_eq!(c.due(0), Duration::ZERO);
        let fast = SimClock::new(0, 0.0);
        assert_eq!(fast.due(i64::MAX), Duration::ZERO);
        let real = SimClock::new(0, 1.0);
        assert_eq!(real.due(2_500), Duration::from_millis(2_500));
    }
}

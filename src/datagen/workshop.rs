//! A replica of the three Datagen quickstart connectors the workshop runs ("Pizza orders",
//! "… completed", "… cancelled"): each topic is its own connector with its own id iteration and
//! its own random draws, which is why the workshop's data is incoherent (a completion's
//! (store_id, store_order_id) almost never matches an order's, and completions run ahead).
//!
//! Pure: one [`TopicGenerator`] per topic, driven by a seeded RNG. The driver in `mod.rs` runs
//! each on its own thread and sleeps [`TopicGenerator::next_delay`] before each record, as the
//! connector's task does.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::record::{Cancelled, Completed, Iteration, Order, Record, Templates};
use crate::domain::InputKind;

/// Generates one topic's records exactly as its Datagen connector would.
#[derive(Debug)]
pub struct TopicGenerator {
    kind: InputKind,
    templates: Arc<Templates>,
    rng: StdRng,
    /// How many records this generator has made (drives `iteration`).
    n: u64,
}

impl TopicGenerator {
    /// A generator for `kind`; `seed` is this topic's own seed (see [`topic_seed`]).
    pub fn new(kind: InputKind, templates: Arc<Templates>, seed: u64) -> TopicGenerator {
        TopicGenerator {
            kind,
            templates,
            rng: StdRng::seed_from_u64(seed),
            n: 0,
        }
    }

    pub fn kind(&self) -> InputKind {
        self.kind
    }

    /// The connector's pause before each record: a whole number of milliseconds in
    /// `0..max_interval` (`Thread.sleep((long) (maxInterval * Math.random()))`).
    pub fn next_delay(&mut self, max_interval: Duration) -> Duration {
        let max_ms = u64::try_from(max_interval.as_millis()).unwrap_or(u64::MAX);
        if max_ms == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(self.rng.random_range(0..max_ms))
    }

    /// The next record.
    pub fn next_record(&mut self) -> Record {
        let n = self.n;
        self.n += 1;
        let t = &*self.templates;
        let rng = &mut self.rng;
        match self.kind {
            InputKind::Orders => {
                let o = &t.orders;
                // Field order matters for reproducibility only; it follows the schema.
                let store_id = o.store_id.sample(rng);
                let store_order_id = iterate(o.store_order_id, n);
                let coupon_code = o.coupon_code.sample(rng);
                let date = o.date.sample(rng);
                let status = pick(rng, &o.status);
                let len = o.lines.sample(rng);
                let order_lines = (0..len)
                    .filter_map(|_| pick_opt(rng, &o.line_options).cloned())
                    .collect();
                Record::Order(Order {
                    store_id,
                    store_order_id,
                    coupon_code,
                    date,
                    status,
                    order_lines,
                })
            }
            InputKind::Completed => {
                let c = &t.completed;
                Record::Completed(Completed {
                    store_id: c.store_id.sample(rng),
                    store_order_id: iterate(c.store_order_id, n),
                    date: c.date.sample(rng),
                    status: pick(rng, &c.status),
                    rack_time_secs: c.rack_time_secs.sample(rng),
                    order_delivery_time_secs: c.order_delivery_time_secs.sample(rng),
                })
            }
            InputKind::Cancelled => {
                let c = &t.cancelled;
                Record::Cancelled(Cancelled {
                    store_id: c.store_id.sample(rng),
                    store_order_id: iterate(c.store_order_id, n),
                    date: c.date.sample(rng),
                    status: pick(rng, &c.status),
                })
            }
        }
    }
}

/// `start + n * step` in 32-bit arithmetic; wraps like the connector's Java `int` would.
fn iterate(it: Iteration, n: u64) -> i32 {
    // n mod 2^32 keeps the product exact in wrapping arithmetic.
    let n = n as u32 as i32;
    it.start.wrapping_add(n.wrapping_mul(it.step))
}

fn pick_opt<'a, T, R: Rng + ?Sized>(rng: &mut R, options: &'a [T]) -> Option<&'a T> {
    if options.is_empty() {
        return None;
    }
    options.get(rng.random_range(0..options.len()))
}

/// Templates are validated non-empty, so the fallback never shows; it keeps this total anyway.
fn pick<R: Rng + ?Sized>(rng: &mut R, options: &[Arc<str>]) -> Arc<str> {
    pick_opt(rng, options)
        .cloned()
        .unwrap_or_else(|| Arc::from(""))
}

/// Each topic's seed, derived from the run's seed so that the topics draw independently and a
/// topic's stream does not depend on how the three threads interleave.
pub fn topic_seed(seed: u64, kind: InputKind) -> u64 {
    let salt = match kind {
        InputKind::Orders => 1,
        InputKind::Completed => 2,
        InputKind::Cancelled => 3,
    };
    splitmix64(seed ^ splitmix64(salt))
}

/// SplitMix64's finaliser: spreads nearby seeds far apart.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::datagen::record::{STATUS_ACCEPTED, STATUS_CANCELLED, STATUS_COMPLETED};

    fn generator(kind: InputKind, seed: u64) -> TopicGenerator {
        let t = Arc::new(Templates::upstream().unwrap());
        TopicGenerator::new(kind, t, topic_seed(seed, kind))
    }

    #[test]
    fn orders_follow_the_template() {
        let t = Templates::upstream().unwrap();
        let mut g = generator(InputKind::Orders, 7);
        let mut stores = HashSet::new();
        let mut lens = HashSet::new();
        let mut used = HashSet::new();
        let (mut coupons, mut dates) = (HashSet::new(), HashSet::new());
        for i in 0..20_000 {
            let Record::Order(o) = g.next_record() else {
                panic!("not an order")
            };
            assert_eq!(o.store_order_id, 1000 + i);
            assert!((1..=9).contains(&o.store_id), "{}", o.store_id);
            assert!((1000..=1999).contains(&o.coupon_code));
            assert!((18000..=18999).contains(&o.date));
            assert_eq!(&*o.status, STATUS_ACCEPTED);
            assert!((1..=4).contains(&o.order_lines.len()));
            for l in &o.order_lines {
                let idx = t.orders.line_options.iter().position(|x| x == l);
                used.insert(idx.expect("line not among the template's options"));
            }
            stores.insert(o.store_id);
            lens.insert(o.order_lines.len());
            coupons.insert(o.coupon_code);
            dates.insert(o.date);
        }
        // Every value of the ranges shows up, the exclusive max never does.
        assert_eq!(stores.len(), 9);
        assert_eq!(lens.len(), 4);
        assert_eq!(used.len(), 100);
        assert_eq!((coupons.len(), dates.len()), (1000, 1000));
    }

    #[test]
    fn completions_and_cancellations_follow_their_templates() {
        let mut c = generator(InputKind::Completed, 7);
        let mut x = generator(InputKind::Cancelled, 7);
        let (mut racks, mut deliveries) = (HashSet::new(), HashSet::new());
        for i in 0..20_000 {
            let Record::Completed(r) = c.next_record() else {
                panic!("not a completion")
            };
            assert_eq!(r.store_order_id, 1000 + 2 * i);
            assert!((1..=9).contains(&r.store_id));
            assert!((18000..=18999).contains(&r.date));
            assert_eq!(&*r.status, STATUS_COMPLETED);
            assert!((130..=229).contains(&r.rack_time_secs));
            assert!((1100..=1999).contains(&r.order_delivery_time_secs));
            racks.insert(r.rack_time_secs);
            deliveries.insert(r.order_delivery_time_secs);
            let Record::Cancelled(r) = x.next_record() else {
                panic!("not a cancellation")
            };
            assert_eq!(r.store_order_id, 1001 + 2 * i);
            assert!((1..=9).contains(&r.store_id));
            assert!((18000..=18999).contains(&r.date));
            assert_eq!(&*r.status, STATUS_CANCELLED);
        }
        assert_eq!((racks.len(), deliveries.len()), (100, 900));
    }

    #[test]
    fn store_ids_are_drawn_independently_per_topic() {
        let mut o = generator(InputKind::Orders, 1);
        let mut c = generator(InputKind::Completed, 1);
        let mut same = 0;
        let mut per_store: HashMap<i32, u32> = HashMap::new();
        for _ in 0..9_000 {
            let (a, b) = (o.next_record().store_id(), c.next_record().store_id());
            same += u32::from(a == b);
            *per_store.entry(a).or_default() += 1;
        }
        // Independent uniform draws agree about 1 time in 9.
        assert!((800..1200).contains(&same), "{same}");
        assert!(
            per_store.values().all(|n| (800..1200).contains(n)),
            "{per_store:?}"
        );
    }

    #[test]
    fn keys_are_the_store_id_in_decimal() {
        let mut key = String::from("stale");
        for kind in InputKind::ALL {
            let mut g = generator(kind, 2);
            for _ in 0..200 {
                let r = g.next_record();
                r.write_key(&mut key);
                assert_eq!(key, r.store_id().to_string());
                assert!(matches!(key.as_bytes(), [b'1'..=b'9']), "{key}");
            }
        }
    }

    #[test]
    fn reproducible_per_seed() {
        let run = |seed| {
            let mut g = generator(InputKind::Orders, seed);
            (0..200).map(|_| g.next_record()).collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn delays_are_whole_milliseconds_below_the_max() {
        let mut g = generator(InputKind::Cancelled, 9);
        assert_eq!(g.next_delay(Duration::ZERO), Duration::ZERO);
        let ds: Vec<_> = (0..5000)
            .map(|_| g.next_delay(Duration::from_millis(500)))
            .collect();
        assert!(
            ds.iter()
                .all(|d| d.as_millis() < 500 && d.subsec_nanos() % 1_000_000 == 0)
        );
        let mean = ds.iter().map(|d| d.as_millis() as f64).sum::<f64>() / ds.len() as f64;
        assert!((230.0..270.0).contains(&mean), "{mean}");
        assert!(ds.contains(&Duration::ZERO) && ds.contains(&Duration::from_millis(499)));
    }

    #[test]
    fn iteration_wraps_like_a_java_int() {
        let it = Iteration {
            start: 1001,
            step: 2,
        };
        assert_eq!(iterate(it, 0), 1001);
        assert_eq!(iterate(it, 5), 1011);
        assert_eq!(
            iterate(
                Iteration {
                    start: i32::MAX,
                    step: 1
                },
                1
            ),
            i32::MIN
        );
    }
}

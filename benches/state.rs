//! `State::apply` per event on a coherent stream in the steady state, `State::answer`, the same
//! events through the feature windows (`state/apply_with_features`: `Features::apply`, which
//! applies to the state too, plus draining the closed windows; the difference to `state/apply`
//! is the windows' cost per event), and the consumer thread's whole per-record work on one core:
//! Confluent-framed bytes → `Decoders::decode` → `State::apply` (`state/decode_apply`).
//!
//! The stream: 10 stores, one order every 100 ms (event time) across them; 90 % complete
//! 15–40 min later, 8 % are cancelled 1–5 min later, 2 % never end (they expire after
//! `open_ttl`). Events are applied in event-time order. The pre-generated cycle is replayed
//! with time and order ids shifted each lap, so the state stays in its steady size (open
//! orders, tombstones, windows) however many iterations criterion asks for.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use waittimes::domain::InputKind;
use waittimes::domain::{EventTime, OrderCancelled, OrderCompleted, OrderEvent, OrderPlaced};
use waittimes::features::{FeatureConfig, Features};
use waittimes::state::{State, StateConfig};
use waittimes::wire::{
    self, Decoders, OrderLine, PizzaOrder, PizzaOrderCancelled, PizzaOrderCompleted,
    UpstreamRecord, WriterSchema,
};

const STORES: i32 = 10;
const ORDERS: i64 = 200_000;
const ORDER_EVERY_MS: i64 = 100;
const MIN: i64 = 60_000;

struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One lap of the stream, sorted by event time; also its time span.
fn stream() -> (Vec<(OrderEvent, EventTime)>, i64) {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut events = Vec::with_capacity(2 * ORDERS as usize);
    for i in 0..ORDERS {
        let store_id = 1 + (rng.below(STORES as u64) as i32);
        let store_order_id = i as i32;
        let t = i * ORDER_EVERY_MS;
        events.push((
            OrderEvent::Placed(OrderPlaced {
                store_id,
                store_order_id,
            }),
            t,
        ));
        match rng.below(100) {
            0..=89 => {
                let rack = 120 + rng.below(600) as i32;
                let delivery = 600 + rng.below(1200) as i32;
                events.push((
                    OrderEvent::Completed(OrderCompleted {
                        store_id,
                        store_order_id,
                        rack_time_secs: Some(rack),
                        order_delivery_time_secs: Some(delivery),
                    }),
                    t + 15 * MIN + rng.below(25 * MIN as u64) as i64,
                ));
            }
            90..=97 => events.push((
                OrderEvent::Cancelled(OrderCancelled {
                    store_id,
                    store_order_id,
                }),
                t + MIN + rng.below(4 * MIN as u64) as i64,
            )),
            _ => {}
        }
    }
    events.sort_by_key(|&(_, t)| t);
    let span = events.last().map_or(0, |&(_, t)| t) + ORDER_EVERY_MS;
    (events, span)
}

fn shifted(e: OrderEvent, ids: i32) -> OrderEvent {
    match e {
        OrderEvent::Placed(mut x) => {
            x.store_order_id = x.store_order_id.wrapping_add(ids);
            OrderEvent::Placed(x)
        }
        OrderEvent::Completed(mut x) => {
            x.store_order_id = x.store_order_id.wrapping_add(ids);
            OrderEvent::Completed(x)
        }
        OrderEvent::Cancelled(mut x) => {
            x.store_order_id = x.store_order_id.wrapping_add(ids);
            OrderEvent::Cancelled(x)
        }
    }
}

/// Replays laps of the stream forever, each shifted after the previous one.
struct Replay {
    events: Vec<(OrderEvent, EventTime)>,
    span: i64,
    next: usize,
    lap: i64,
}

impl Replay {
    fn new() -> Self {
        let (events, span) = stream();
        Replay {
            events,
            span,
            next: 0,
            lap: 0,
        }
    }

    #[inline]
    fn next(&mut self) -> (OrderEvent, EventTime) {
        if self.next == self.events.len() {
            self.next = 0;
            self.lap += 1;
        }
        let (e, t) = self.events[self.next];
        self.next += 1;
        let ids = (self.lap * ORDERS) as i32;
        (shifted(e, ids), t + self.lap * self.span)
    }
}

fn apply(c: &mut Criterion) {
    let mut replay = Replay::new();
    let mut state = State::new(StateConfig::default());
    // Reach the steady state before measuring: one full lap.
    for _ in 0..replay.events.len() {
        let (e, t) = replay.next();
        state.apply(&e, t);
    }
    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(1));
    group.bench_function("apply", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut batch = Vec::with_capacity(4096);
            let mut left = iters;
            while left > 0 {
                let n = left.min(4096);
                batch.clear();
                batch.extend((0..n).map(|_| replay.next()));
                let start = Instant::now();
                for (e, t) in &batch {
                    black_box(state.apply(e, *t));
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    let store = 1;
    let wait = state.answer(store).map(|a| a.observations).unwrap_or(0);
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("answer ({wait} observations)"), |b| {
        let mut scratch = Vec::new();
        b.iter(|| black_box(state.answer_with(black_box(store), &mut scratch)))
    });
    group.finish();
    let c = state.counters();
    eprintln!(
        "steady state: {} open, {} held, {} tombstones, {} in windows, {} queued",
        c.open_orders,
        c.held_terminals,
        c.tombstones,
        c.window_observations,
        c.expiry_queue_entries
    );
}

fn apply_with_features(c: &mut Criterion) {
    let mut replay = Replay::new();
    let mut state = State::new(StateConfig::default());
    let mut features = Features::new(FeatureConfig::default());
    let mut closed = 0u64;
    for _ in 0..replay.events.len() {
        let (e, t) = replay.next();
        black_box(features.apply(&mut state, &e, t));
    }
    closed += features.drain_closed().count() as u64;
    let mut events = 0u64;
    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(1));
    group.bench_function("apply_with_features", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut batch = Vec::with_capacity(4096);
            let mut left = iters;
            while left > 0 {
                let n = left.min(4096);
                batch.clear();
                batch.extend((0..n).map(|_| replay.next()));
                let start = Instant::now();
                for (e, t) in &batch {
                    black_box(features.apply(&mut state, e, *t));
                }
                // What the consumer thread hands to the producer on each refresh.
                for w in features.drain_closed() {
                    black_box(&w);
                    closed += 1;
                }
                total += start.elapsed();
                events += n;
                left -= n;
            }
            total
        })
    });
    group.finish();
    eprintln!(
        "feature windows: {closed} closed over {} events (one per {:.0} events), {} open",
        events + replay.events.len() as u64,
        (events + replay.events.len() as u64) as f64 / closed.max(1) as f64,
        features.open_windows()
    );
}

/// Two lines, as a typical upstream order carries (the decoder skips them).
static LINES: [OrderLine<'static>; 2] = [
    OrderLine {
        product_id: 12,
        category: "pizza",
        quantity: 2,
        unit_price: 11.5,
        net_price: 23.0,
    },
    OrderLine {
        product_id: 41,
        category: "dessert",
        quantity: 1,
        unit_price: 4.25,
        net_price: 4.25,
    },
];

/// Appends `e` framed as its upstream topic's record (schema ids 1, 2, 3); returns the topic.
fn frame(e: &OrderEvent, t: EventTime, buf: &mut Vec<u8>) -> InputKind {
    let date = (t / 86_400_000) as i32;
    match *e {
        OrderEvent::Placed(p) => {
            PizzaOrder {
                store_id: p.store_id,
                store_order_id: p.store_order_id,
                coupon_code: 1234,
                date,
                status: "accepted",
                order_lines: &LINES,
            }
            .write_framed(1, buf);
            InputKind::Orders
        }
        OrderEvent::Completed(c) => {
            PizzaOrderCompleted {
                store_id: c.store_id,
                store_order_id: c.store_order_id,
                date,
                status: "completed",
                rack_time_secs: c.rack_time_secs.unwrap_or(0),
                order_delivery_time_secs: c.order_delivery_time_secs.unwrap_or(0),
            }
            .write_framed(2, buf);
            InputKind::Completed
        }
        OrderEvent::Cancelled(c) => {
            PizzaOrderCancelled {
                store_id: c.store_id,
                store_order_id: c.store_order_id,
                date,
                status: "cancelled",
            }
            .write_framed(3, buf);
            InputKind::Cancelled
        }
    }
}

/// Framed bytes → decode → apply, one core; the batch is framed outside the timed part.
fn decode_apply(c: &mut Criterion) {
    let mut decoders = Decoders::new();
    for (id, text) in [
        (1, wire::UPSTREAM_PIZZA_ORDERS),
        (2, wire::UPSTREAM_PIZZA_ORDERS_COMPLETED),
        (3, wire::UPSTREAM_PIZZA_ORDERS_CANCELLED),
    ] {
        let schema = WriterSchema::parse(id, text).expect("upstream schema parses");
        decoders.learn(id, &schema);
    }
    let mut replay = Replay::new();
    let mut state = State::new(StateConfig::default());
    for _ in 0..replay.events.len() {
        let (e, t) = replay.next();
        state.apply(&e, t);
    }
    let mut group = c.benchmark_group("state");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_apply", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut bytes = Vec::with_capacity(4096 * 64);
            let mut records: Vec<(InputKind, usize, usize, EventTime)> = Vec::with_capacity(4096);
            let mut left = iters;
            while left > 0 {
                let n = left.min(4096);
                bytes.clear();
                records.clear();
                for _ in 0..n {
                    let (e, t) = replay.next();
                    let from = bytes.len();
                    let kind = frame(&e, t, &mut bytes);
                    records.push((kind, from, bytes.len(), t));
                }
                let start = Instant::now();
                for &(kind, from, to, t) in &records {
                    if let Ok(event) = decoders.decode(kind, black_box(&bytes[from..to])) {
                        black_box(state.apply(&event, t));
                    }
                }
                total += start.elapsed();
                left -= n;
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, apply, apply_with_features, decode_apply);
criterion_main!(benches);

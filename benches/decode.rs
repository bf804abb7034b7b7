//! Decoding cost per input topic: the fast typed decoders (`Decoders::decode`) against
//! apache-avro's `Value`-tree path (`from_avro_datum` with our reader schema, then the fields
//! picked out of the tree), on Datagen-like records; plus the encoders the load generator uses.
//!
//! `cargo bench --bench decode`; criterion reports the time per batch of `BATCH` (1024) records
//! and the throughput in records/s (ns/record = time / 1024 = 1e9 / throughput). Before the
//! benchmarks it checks, with a counting allocator, that the fast path allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use apache_avro::Schema;
use apache_avro::types::Value;
use criterion::{Criterion, Throughput, criterion_group};
use waittimes::domain::InputKind;
use waittimes::wire::{
    self, Decoders, OrderLine, PizzaOrder, PizzaOrderCancelled, PizzaOrderCompleted,
    UpstreamRecord, WriterSchema,
};

/// Counts allocations while `COUNTING` is set.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const BATCH: usize = 1024;
const CATEGORIES: [&str; 5] = ["pizza", "calzone", "salad", "dessert", "wings"];

/// A tiny deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Per topic: its kind, schema id, writer schema text, and `BATCH` framed records like
/// Datagen's (store 1..=9, ids from 1000, 1..=4 order lines, durations in Datagen's ranges).
fn payloads() -> Vec<(InputKind, u32, &'static str, Vec<Vec<u8>>)> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut out = Vec::new();
    for (kind, id, text) in [
        (InputKind::Orders, 1, wire::UPSTREAM_PIZZA_ORDERS),
        (
            InputKind::Completed,
            2,
            wire::UPSTREAM_PIZZA_ORDERS_COMPLETED,
        ),
        (
            InputKind::Cancelled,
            3,
            wire::UPSTREAM_PIZZA_ORDERS_CANCELLED,
        ),
    ] {
        let mut records = Vec::with_capacity(BATCH);
        for n in 0..BATCH as i32 {
            let mut buf = Vec::new();
            let store_id = 1 + rng.below(9) as i32;
            let date = 18_000 + rng.below(1000) as i32;
            match kind {
                InputKind::Orders => {
                    let lines: Vec<OrderLine> = (0..1 + rng.below(4))
                        .map(|_| OrderLine {
                            product_id: rng.below(100) as i32,
                            category: CATEGORIES[rng.below(5) as usize],
                            quantity: 1 + rng.below(5) as i32,
                            unit_price: 19.61,
                            net_price: 58.83,
                        })
                        .collect();
                    PizzaOrder {
                        store_id,
                        store_order_id: 1000 + n,
                        coupon_code: 1000 + rng.below(1000) as i32,
                        date,
                        status: "accepted",
                        order_lines: &lines,
                    }
                    .write_framed(id, &mut buf);
                }
                InputKind::Completed => PizzaOrderCompleted {
                    store_id,
                    store_order_id: 1000 + 2 * n,
                    date,
                    status: "completed",
                    rack_time_secs: 130 + rng.below(100) as i32,
                    order_delivery_time_secs: 1100 + rng.below(900) as i32,
                }
                .write_framed(id, &mut buf),
                InputKind::Cancelled => PizzaOrderCancelled {
                    store_id,
                    store_order_id: 1001 + 2 * n,
                    date,
                    status: "cancelled",
                }
                .write_framed(id, &mut buf),
            }
            records.push(buf);
        }
        out.push((kind, id, text, records));
    }
    out
}

/// The Value-tree path: what a generic Avro consumer does per record.
fn decode_with_values(writer: &Schema, reader: &Schema, payload: &[u8]) -> Option<(i32, i32)> {
    let framed = wire::framing::parse(payload).ok()?;
    let mut body = framed.body;
    let value = apache_avro::from_avro_datum(writer, &mut body, Some(reader)).ok()?;
    let Value::Record(fields) = value else {
        return None;
    };
    let int = |name: &str| match fields.iter().find(|(n, _)| n == name)?.1 {
        Value::Int(v) => Some(v),
        _ => None,
    };
    Some((int("store_id")?, int("store_order_id")?))
}

fn learned(sets: &[(InputKind, u32, &'static str, Vec<Vec<u8>>)]) -> Decoders {
    let mut decoders = Decoders::new();
    for (_, id, text, _) in sets {
        let schema = WriterSchema::parse(*id, *text).expect("upstream schema parses");
        decoders.learn(*id, &schema);
    }
    decoders
}

fn check_no_allocation() {
    let sets = payloads();
    let decoders = learned(&sets);
    for (kind, _, _, records) in &sets {
        for p in records {
            decoders.decode(*kind, p).expect("decodes");
        }
    }
    let mut decoded = 0usize;
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    for (kind, _, _, records) in &sets {
        for p in records {
            decoded += usize::from(black_box(decoders.decode(*kind, black_box(p))).is_ok());
        }
    }
    COUNTING.store(false, Ordering::Relaxed);
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    println!("fast path: {decoded} records decoded with {allocations} allocations");
    assert_eq!(allocations, 0, "the fast path must not allocate");
}

fn bench_decode(c: &mut Criterion) {
    let sets = payloads();
    let decoders = learned(&sets);
    for (kind, _, text, records) in &sets {
        let writer = Schema::parse_str(text).expect("upstream schema parses");
        let reader = Schema::parse_str(wire::reader_schema(*kind)).expect("reader schema parses");
        let bytes: usize = records.iter().map(Vec::len).sum();
        println!(
            "{}: {BATCH} records, {:.1} bytes/record on average",
            kind.as_str(),
            bytes as f64 / BATCH as f64
        );
        let mut group = c.benchmark_group(format!("decode/{}", kind.as_str()));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.sample_size(50);
        group.bench_function("fast", |b| {
            b.iter(|| {
                for p in records {
                    let _ = black_box(decoders.decode(*kind, black_box(p)));
                }
            })
        });
        group.bench_function("apache_avro_value", |b| {
            b.iter(|| {
                for p in records {
                    black_box(decode_with_values(&writer, &reader, black_box(p)));
                }
            })
        });
        group.finish();
    }
}

fn bench_encode(c: &mut Criterion) {
    let lines = [
        OrderLine {
            product_id: 66,
            category: "calzone",
            quantity: 4,
            unit_price: 18.78,
            net_price: 75.12,
        },
        OrderLine {
            product_id: 71,
            category: "salad",
            quantity: 4,
            unit_price: 4.9,
            net_price: 19.6,
        },
    ];
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut buf = Vec::with_capacity(128);
    group.bench_function("orders", |b| {
        b.iter(|| {
            for n in 0..BATCH as i32 {
                buf.clear();
                PizzaOrder {
                    store_id: 1 + n % 9,
                    store_order_id: 1000 + n,
                    coupon_code: 1500,
                    date: 18_500,
                    status: "accepted",
                    order_lines: &lines,
                }
                .write_framed(1, &mut buf);
                black_box(&buf);
            }
        })
    });
    group.bench_function("wait_times", |b| {
        b.iter(|| {
            for n in 0..BATCH as i32 {
                buf.clear();
                wire::encode_wait_times_into(&mut buf, 7, 1 + n % 9, n % 60);
                black_box(&buf);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode, bench_encode);

fn main() {
    check_no_allocation();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

//! Arbitrary bytes into the decoder of every topic, with the writer schemas of the repository
//! (the upstream Datagen schemas, our reader schemas, WaitTimes) learned under fixed ids, so no
//! registry is needed. The decoder must never panic; what it accepts must be a valid event, and
//! apache-avro (full schema resolution) must read the same values from the same bytes.

#![no_main]

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::types::Value;
use libfuzzer_sys::fuzz_target;
use waittimes::domain::{InputKind, OrderEvent};
use waittimes::wire::{self, Decoders, WriterSchema};

/// Ids 1..=7: upstream orders, completed, cancelled; our three readers; WaitTimes.
const SCHEMAS: [&str; 7] = [
    wire::UPSTREAM_PIZZA_ORDERS,
    wire::UPSTREAM_PIZZA_ORDERS_COMPLETED,
    wire::UPSTREAM_PIZZA_ORDERS_CANCELLED,
    wire::READER_PIZZA_ORDERS,
    wire::READER_PIZZA_ORDERS_COMPLETED,
    wire::READER_PIZZA_ORDERS_CANCELLED,
    wire::WAIT_TIMES_SCHEMA,
];

struct Fixture {
    writers: Vec<WriterSchema>,
    readers: [Schema; 4],
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| Fixture {
    writers: SCHEMAS
        .iter()
        .zip(1u32..)
        .map(|(text, id)| WriterSchema::parse(id, *text).expect("in-repo schema"))
        .collect(),
    readers: [
        wire::READER_PIZZA_ORDERS,
        wire::READER_PIZZA_ORDERS_COMPLETED,
        wire::READER_PIZZA_ORDERS_CANCELLED,
        wire::WAIT_TIMES_SCHEMA,
    ]
    .map(|t| Schema::parse_str(t).expect("in-repo schema")),
});

thread_local! {
    /// Kept across inputs, as in the service: the plan cache must not change any answer.
    static DECODERS: Decoders = {
        let mut d = Decoders::new();
        for w in &FIXTURE.writers {
            d.learn(w.id(), w);
        }
        d
    };
}

/// The int-or-null fields apache-avro resolved, by name.
fn resolved(writer: &WriterSchema, reader: &Schema, body: &[u8]) -> Vec<(String, Option<i64>)> {
    let mut rest = body;
    let value = apache_avro::from_avro_datum(writer.avro(), &mut rest, Some(reader))
        .unwrap_or_else(|e| panic!("the fast path accepted what apache-avro rejects: {e}"));
    assert!(rest.is_empty(), "the fast path accepted trailing bytes");
    let Value::Record(fields) = value else {
        panic!("not a record: {value:?}")
    };
    fields
        .into_iter()
        .map(|(name, v)| {
            let v = match v {
                Value::Union(_, inner) => *inner,
                v => v,
            };
            let v = match v {
                Value::Null => None,
                Value::Int(i) => Some(i64::from(i)),
                Value::Long(i) => Some(i),
                other => panic!("field {name}: unexpected {other:?}"),
            };
            (name, v)
        })
        .collect()
}

fn field(fields: &[(String, Option<i64>)], name: &str) -> Option<i64> {
    fields.iter().find(|(n, _)| n == name).and_then(|(_, v)| *v)
}

fuzz_target!(|data: &[u8]| DECODERS.with(|d| check(d, data)));

fn check(d: &Decoders, data: &[u8]) {
    let Some((&selector, payload)) = data.split_first() else {
        return;
    };
    let schema_id = wire::framing::parse(payload)
        .ok()
        .map(|f| (f.schema_id, f.body));
    let writer = schema_id.and_then(|(id, _)| FIXTURE.writers.get(id as usize - 1));
    let body = schema_id.map_or(&[][..], |(_, b)| b);
    match selector % 4 {
        3 => {
            let Ok((store, wait)) = d.decode_wait_times(payload) else {
                return;
            };
            assert!(store > 0 && wait >= 0);
            let writer = writer.expect("a known id");
            let fields = resolved(writer, &FIXTURE.readers[3], body);
            assert_eq!(field(&fields, "store_id"), Some(i64::from(store)));
            assert_eq!(field(&fields, "wait_time"), Some(i64::from(wait)));
            // our encoder writes what we read back
            let again = wire::encode_wait_times(7, store, wait);
            assert_eq!(d.decode_wait_times(&again), Ok((store, wait)));
        }
        k => {
            let kind = [
                InputKind::Orders,
                InputKind::Completed,
                InputKind::Cancelled,
            ][k as usize];
            let first = d.decode(kind, payload);
            // deterministic: the per-reader plan cache changes nothing
            assert_eq!(first, d.decode(kind, payload));
            let Ok(event) = first else {
                return;
            };
            assert!(event.store_id() > 0);
            let writer = writer.expect("a known id");
            let fields = resolved(writer, &FIXTURE.readers[k as usize], body);
            assert_eq!(
                field(&fields, "store_id"),
                Some(i64::from(event.store_id()))
            );
            let (order, durations) = match event {
                OrderEvent::Placed(e) => (e.store_order_id, None),
                OrderEvent::Cancelled(e) => (e.store_order_id, None),
                OrderEvent::Completed(e) => (
                    e.store_order_id,
                    Some((e.rack_time_secs, e.order_delivery_time_secs)),
                ),
            };
            assert_eq!(field(&fields, "store_order_id"), Some(i64::from(order)));
            if let Some((rack, delivery)) = durations {
                assert!(rack.is_none_or(|v| v >= 0) && delivery.is_none_or(|v| v >= 0));
                assert_eq!(field(&fields, "rack_time_secs"), rack.map(i64::from));
                assert_eq!(
                    field(&fields, "order_delivery_time_secs"),
                    delivery.map(i64::from)
                );
            }
        }
    }
}

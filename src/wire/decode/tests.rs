//! Tests of the fast decoders, with apache-avro as the reference (encoder of test records and,
//! with schema resolution, the slow reference decoder).

use std::collections::HashMap;

use apache_avro::types::Value;
use apache_avro::{Decimal, Schema};
use serde_json::json;

use super::*;
use crate::wire::encode::{
    OrderLine, PizzaOrder, PizzaOrderCancelled, PizzaOrderCompleted, UpstreamRecord, put_long,
};
use crate::wire::framing::write_header;
use crate::wire::{
    READER_PIZZA_ORDERS, READER_PIZZA_ORDERS_CANCELLED, READER_PIZZA_ORDERS_COMPLETED,
    UPSTREAM_PIZZA_ORDERS, UPSTREAM_PIZZA_ORDERS_CANCELLED, UPSTREAM_PIZZA_ORDERS_COMPLETED,
    WAIT_TIMES_SCHEMA, encode_wait_times,
};

// ---------------------------------------------------------------------------------------------
// helpers

fn writer(id: u32, text: &str) -> WriterSchema {
    WriterSchema::parse(id, text).unwrap_or_else(|e| panic!("bad test schema: {e}\n{text}"))
}

fn decoders(schemas: &[(u32, &str)]) -> Decoders {
    let mut d = Decoders::new();
    for (id, text) in schemas {
        d.learn(*id, &writer(*id, text));
    }
    d
}

fn framed(id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_header(&mut v, id);
    v.extend_from_slice(body);
    v
}

/// Encodes a record with apache-avro (which validates it against the schema first).
fn avro(schema: &str, fields: Vec<(&str, Value)>) -> Vec<u8> {
    let schema = Schema::parse_str(schema).unwrap();
    let record = Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    );
    apache_avro::to_avro_datum(&schema, record).unwrap()
}

fn completed(
    store_id: i32,
    store_order_id: i32,
    rack: Option<i32>,
    delivery: Option<i32>,
) -> OrderEvent {
    OrderEvent::Completed(OrderCompleted {
        store_id,
        store_order_id,
        rack_time_secs: rack,
        order_delivery_time_secs: delivery,
    })
}

fn upstream_completed_body(
    store_id: i32,
    store_order_id: i32,
    rack: i32,
    delivery: i32,
) -> Vec<u8> {
    avro(
        UPSTREAM_PIZZA_ORDERS_COMPLETED,
        vec![
            ("store_id", Value::Int(store_id)),
            ("store_order_id", Value::Int(store_order_id)),
            ("date", Value::Date(18_500)),
            ("status", Value::String("completed".into())),
            ("rack_time_secs", Value::Int(rack)),
            ("order_delivery_time_secs", Value::Int(delivery)),
        ],
    )
}

fn malformed(err: DecodeError) -> (String, Problem) {
    match err {
        DecodeError::Malformed { field, problem, .. } => (field.to_string(), problem),
        other => panic!("expected a malformed-body error, got {other:?}"),
    }
}

/// A one-field-of-interest writer schema for `pizza_orders_completed`.
fn completed_with(extra_before: &str, extra_after: &str) -> String {
    format!(
        r#"{{"type":"record","name":"pizza_orders_completed","namespace":"pizza_orders","fields":[
            {extra_before}
            {{"name":"store_id","type":"int"}},
            {{"name":"store_order_id","type":"int"}}
            {extra_after}
        ]}}"#
    )
}

// ---------------------------------------------------------------------------------------------
// reader schemas

#[test]
fn reader_slots_match_the_embedded_schemas() {
    for r in [ORDERS, COMPLETED, CANCELLED] {
        assert_eq!(READERS[r].field_index("store_id"), STORE_ID);
        assert_eq!(READERS[r].field_index("store_order_id"), STORE_ORDER_ID);
    }
    assert_eq!(
        READERS[COMPLETED].field_index("rack_time_secs"),
        RACK_TIME_SECS
    );
    assert_eq!(
        READERS[COMPLETED].field_index("order_delivery_time_secs"),
        ORDER_DELIVERY_TIME_SECS
    );
    assert_eq!(READERS[WAIT_TIMES].field_index("store_id"), STORE_ID);
    assert_eq!(READERS[WAIT_TIMES].field_index("wait_time"), WAIT_TIME);
    // and apache-avro accepts every one of them
    for text in [
        READER_PIZZA_ORDERS,
        READER_PIZZA_ORDERS_COMPLETED,
        READER_PIZZA_ORDERS_CANCELLED,
        WAIT_TIMES_SCHEMA,
    ] {
        Schema::parse_str(text).unwrap();
    }
    assert_eq!(
        READERS[COMPLETED].fields[RACK_TIME_SECS].ty,
        ReaderTy {
            nullable: true,
            long: false
        }
    );
    assert_eq!(
        READERS[COMPLETED].fields[RACK_TIME_SECS].default,
        Some(None)
    );
}

#[test]
fn waittimes_schema_is_the_workshops_exactly() {
    let ours: serde_json::Value = serde_json::from_str(WAIT_TIMES_SCHEMA).unwrap();
    assert_eq!(
        ours,
        json!({
            "type": "record",
            "namespace": "io.confluent.databrickslab",
            "name": "WaitTimes",
            "fields": [
                {"name": "store_id", "type": "int", "doc": "The store ID associated with this wait time."},
                {"name": "wait_time", "type": "int", "doc": "The current wait time for given party size (in minutes)."}
            ]
        })
    );
}

// ---------------------------------------------------------------------------------------------
// the three upstream schemas, exact values

#[test]
fn upstream_orders_decode_exactly() {
    let line = |product_id: i32, category: &str, quantity: i32, unit_price: f64| {
        Value::Record(vec![
            ("product_id".into(), Value::Int(product_id)),
            ("category".into(), Value::String(category.into())),
            ("quantity".into(), Value::Int(quantity)),
            ("unit_price".into(), Value::Double(unit_price)),
            (
                "net_price".into(),
                Value::Double(unit_price * f64::from(quantity)),
            ),
        ])
    };
    let body = avro(
        UPSTREAM_PIZZA_ORDERS,
        vec![
            ("store_id", Value::Int(9)),
            ("store_order_id", Value::Int(123_456)),
            ("coupon_code", Value::Int(1999)),
            ("date", Value::Date(18_999)),
            ("status", Value::String("accepted".into())),
            (
                "order_lines",
                Value::Array(vec![
                    line(66, "calzone", 4, 18.78),
                    line(71, "salad", 4, 4.9),
                    line(8, "dessert", 3, 23.33),
                ]),
            ),
        ],
    );
    let d = decoders(&[(3, UPSTREAM_PIZZA_ORDERS)]);
    assert_eq!(
        d.decode(InputKind::Orders, &framed(3, &body)),
        Ok(OrderEvent::Placed(OrderPlaced {
            store_id: 9,
            store_order_id: 123_456
        }))
    );
}

#[test]
fn upstream_completed_decode_exactly() {
    let d = decoders(&[(4, UPSTREAM_PIZZA_ORDERS_COMPLETED)]);
    let body = upstream_completed_body(1, 1000, 229, 1100);
    assert_eq!(
        d.decode(InputKind::Completed, &framed(4, &body)),
        Ok(completed(1, 1000, Some(229), Some(1100)))
    );
    let body = upstream_completed_body(i32::MAX, i32::MIN, 0, i32::MAX);
    assert_eq!(
        d.decode(InputKind::Completed, &framed(4, &body)),
        Ok(completed(i32::MAX, i32::MIN, Some(0), Some(i32::MAX)))
    );
}

#[test]
fn upstream_cancelled_decode_exactly() {
    let body = avro(
        UPSTREAM_PIZZA_ORDERS_CANCELLED,
        vec![
            ("store_id", Value::Int(5)),
            ("store_order_id", Value::Int(1001)),
            ("date", Value::Date(18_000)),
            ("status", Value::String("cancelled".into())),
        ],
    );
    let d = decoders(&[(5, UPSTREAM_PIZZA_ORDERS_CANCELLED)]);
    assert_eq!(
        d.decode(InputKind::Cancelled, &framed(5, &body)),
        Ok(OrderEvent::Cancelled(OrderCancelled {
            store_id: 5,
            store_order_id: 1001
        }))
    );
}

#[test]
fn our_encoders_decode_exactly() {
    let d = decoders(&[
        (1, UPSTREAM_PIZZA_ORDERS),
        (2, UPSTREAM_PIZZA_ORDERS_COMPLETED),
        (3, UPSTREAM_PIZZA_ORDERS_CANCELLED),
    ]);
    let lines = [OrderLine {
        product_id: 1,
        category: "pizza",
        quantity: 2,
        unit_price: 1.5,
        net_price: 3.0,
    }; 4];
    let mut buf = Vec::new();
    for n in 0..=4 {
        buf.clear();
        let order = PizzaOrder {
            store_id: 2,
            store_order_id: 1000 + n as i32,
            coupon_code: 1234,
            date: 18_200,
            status: "accepted",
            order_lines: &lines[..n],
        };
        order.write_framed(1, &mut buf);
        assert_eq!(
            d.decode(InputKind::Orders, &buf),
            Ok(OrderEvent::Placed(OrderPlaced {
                store_id: 2,
                store_order_id: 1000 + n as i32
            }))
        );
    }
    buf.clear();
    PizzaOrderCompleted {
        store_id: 8,
        store_order_id: 2002,
        date: 18_300,
        status: "completed",
        rack_time_secs: 150,
        order_delivery_time_secs: 1500,
    }
    .write_framed(2, &mut buf);
    assert_eq!(
        d.decode(InputKind::Completed, &buf),
        Ok(completed(8, 2002, Some(150), Some(1500)))
    );
    buf.clear();
    PizzaOrderCancelled {
        store_id: 4,
        store_order_id: 2003,
        date: 18_300,
        status: "cancelled",
    }
    .write_framed(3, &mut buf);
    assert_eq!(
        d.decode(InputKind::Cancelled, &buf),
        Ok(OrderEvent::Cancelled(OrderCancelled {
            store_id: 4,
            store_order_id: 2003
        }))
    );
}

// ---------------------------------------------------------------------------------------------
// schema resolution

/// Extra fields of every Avro type, with defaults, before, between and after ours.
const EVERY_TYPE: &str = r#"{"type":"record","name":"pizza_orders_completed","namespace":"pizza_orders","fields":[
    {"name":"x_null","type":"null","default":null},
    {"name":"x_bool","type":"boolean","default":true},
    {"name":"x_long","type":"long","default":0},
    {"name":"x_float","type":"float","default":1.5},
    {"name":"x_double","type":"double","default":2.5},
    {"name":"x_bytes","type":"bytes","default":""},
    {"name":"x_string","type":"string","default":"s"},
    {"name":"store_id","type":"int"},
    {"name":"x_fixed","type":{"type":"fixed","name":"F4","size":4},"default":"abcd"},
    {"name":"x_enum","type":{"type":"enum","name":"Size","symbols":["S","M","L"]},"default":"M"},
    {"name":"x_lines","type":{"type":"array","items":{"type":"record","name":"Line","fields":[
        {"name":"p","type":"int"},{"name":"c","type":"string"},{"name":"q","type":["null","double"]}]}},"default":[]},
    {"name":"x_map","type":{"type":"map","values":{"type":"array","items":"long"}},"default":{}},
    {"name":"x_union","type":["null","string","Line","Size"],"default":null},
    {"name":"x_nested","type":{"type":"record","name":"Outer","fields":[
        {"name":"inner","type":{"type":"record","name":"Inner","fields":[
            {"name":"m","type":{"type":"map","values":"F4"}},{"name":"e","type":"Size"}]}},
        {"name":"again","type":"Line"}]}},
    {"name":"store_order_id","type":"int"},
    {"name":"x_date","type":{"type":"int","logicalType":"date"},"default":0},
    {"name":"x_time_millis","type":{"type":"int","logicalType":"time-millis"}},
    {"name":"x_time_micros","type":{"type":"long","logicalType":"time-micros"}},
    {"name":"x_ts_millis","type":{"type":"long","logicalType":"timestamp-millis"}},
    {"name":"x_ts_micros","type":{"type":"long","logicalType":"timestamp-micros"}},
    {"name":"x_local_ts","type":{"type":"long","logicalType":"local-timestamp-millis"}},
    {"name":"x_decimal_bytes","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},
    {"name":"x_decimal_fixed","type":{"type":"fixed","name":"D8","size":8,"logicalType":"decimal","precision":12,"scale":3}},
    {"name":"x_uuid","type":{"type":"string","logicalType":"uuid"}},
    {"name":"x_duration","type":{"type":"fixed","name":"Dur","size":12,"logicalType":"duration"}},
    {"name":"rack_time_secs","type":"int"},
    {"name":"order_delivery_time_secs","type":["null","int"],"default":null},
    {"name":"x_last","type":["null",{"type":"array","items":{"type":"map","values":["null","Outer"]}}],"default":null}
]}"#;

fn every_type_record(store_id: i32, order: i32, rack: i32, delivery: Option<i32>) -> Vec<u8> {
    let line = |p: i32| {
        Value::Record(vec![
            ("p".into(), Value::Int(p)),
            ("c".into(), Value::String(format!("cat-{p}-é€"))),
            (
                "q".into(),
                if p % 2 == 0 {
                    Value::Union(0, Box::new(Value::Null))
                } else {
                    Value::Union(1, Box::new(Value::Double(0.5)))
                },
            ),
        ])
    };
    let outer = || {
        Value::Record(vec![
            (
                "inner".into(),
                Value::Record(vec![
                    (
                        "m".into(),
                        Value::Map(HashMap::from([
                            ("k1".into(), Value::Fixed(4, vec![1, 2, 3, 4])),
                            ("k2".into(), Value::Fixed(4, vec![0; 4])),
                        ])),
                    ),
                    ("e".into(), Value::Enum(2, "L".into())),
                ]),
            ),
            ("again".into(), line(7)),
        ])
    };
    avro(
        EVERY_TYPE,
        vec![
            ("x_null", Value::Null),
            ("x_bool", Value::Boolean(true)),
            ("x_long", Value::Long(-1 << 40)),
            ("x_float", Value::Float(3.25)),
            ("x_double", Value::Double(-7.5)),
            ("x_bytes", Value::Bytes(vec![0, 255, 128])),
            ("x_string", Value::String("ünïcødé ☕".into())),
            ("store_id", Value::Int(store_id)),
            ("x_fixed", Value::Fixed(4, vec![9, 9, 9, 9])),
            ("x_enum", Value::Enum(1, "M".into())),
            ("x_lines", Value::Array((0..5).map(line).collect())),
            (
                "x_map",
                Value::Map(HashMap::from([
                    (
                        "a".into(),
                        Value::Array(vec![Value::Long(1), Value::Long(i64::MIN)]),
                    ),
                    ("b".into(), Value::Array(vec![])),
                ])),
            ),
            ("x_union", Value::Union(2, Box::new(line(3)))),
            ("x_nested", outer()),
            ("store_order_id", Value::Int(order)),
            ("x_date", Value::Date(19_000)),
            ("x_time_millis", Value::TimeMillis(1000)),
            ("x_time_micros", Value::TimeMicros(1_000_000)),
            ("x_ts_millis", Value::TimestampMillis(1_700_000_000_000)),
            ("x_ts_micros", Value::TimestampMicros(1_700_000_000_000_000)),
            ("x_local_ts", Value::LocalTimestampMillis(1_700_000_000_000)),
            (
                "x_decimal_bytes",
                Value::Decimal(Decimal::from(vec![0x01, 0xe2, 0x40])),
            ),
            (
                "x_decimal_fixed",
                Value::Decimal(Decimal::from(vec![0xff, 0x00])),
            ),
            (
                "x_uuid",
                Value::Uuid(apache_avro::Uuid::from_u128(
                    0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
                )),
            ),
            (
                "x_duration",
                Value::Duration(apache_avro::Duration::new(
                    apache_avro::Months::new(1),
                    apache_avro::Days::new(2),
                    apache_avro::Millis::new(3),
                )),
            ),
            ("rack_time_secs", Value::Int(rack)),
            (
                "order_delivery_time_secs",
                match delivery {
                    Some(v) => Value::Union(1, Box::new(Value::Int(v))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
            (
                "x_last",
                Value::Union(
                    1,
                    Box::new(Value::Array(vec![Value::Map(HashMap::from([
                        ("x".into(), Value::Union(1, Box::new(outer()))),
                        ("y".into(), Value::Union(0, Box::new(Value::Null))),
                    ]))])),
                ),
            ),
        ],
    )
}

#[test]
fn extra_fields_of_every_type_are_skipped() {
    let d = decoders(&[(10, EVERY_TYPE)]);
    let body = every_type_record(6, 4242, 180, Some(1200));
    let payload = framed(10, &body);
    assert_eq!(
        d.decode(InputKind::Completed, &payload),
        Ok(completed(6, 4242, Some(180), Some(1200)))
    );
    assert_eq!(
        reference(COMPLETED, &writer(10, EVERY_TYPE), &body),
        Ok(completed(6, 4242, Some(180), Some(1200)))
    );
    let body = every_type_record(6, 4243, 0, None);
    assert_eq!(
        d.decode(InputKind::Completed, &framed(10, &body)),
        Ok(completed(6, 4243, Some(0), None))
    );
    // a schema with this record name is incompatible with the other readers
    let err = d.decode(InputKind::Orders, &payload).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Incompatible {
                schema_id: 10,
                reader: "pizza_orders",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn every_truncation_of_every_type_fails_cleanly() {
    let d = decoders(&[(10, EVERY_TYPE)]);
    let payload = framed(10, &every_type_record(6, 4242, 180, Some(1200)));
    for len in 0..payload.len() {
        let err = d.decode(InputKind::Completed, &payload[..len]).unwrap_err();
        if len >= 5 {
            assert!(
                matches!(
                    err,
                    DecodeError::Malformed {
                        problem: Problem::Truncated,
                        ..
                    } | DecodeError::Malformed {
                        problem: Problem::LengthExceedsInput { .. },
                        ..
                    } | DecodeError::Malformed {
                        problem: Problem::ItemsExceedInput { .. },
                        ..
                    }
                ),
                "at {len}: {err:?}"
            );
        } else {
            assert!(matches!(err, DecodeError::Framing(_)), "at {len}: {err:?}");
        }
    }
}

#[test]
fn fixed_uuid_is_skipped_as_sixteen_raw_bytes() {
    // apache-avro 0.21 maps this to Schema::Uuid and would read a length prefix; the wire has none
    let text = completed_with(
        r#"{"name":"u","type":{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}},"#,
        "",
    );
    let d = decoders(&[(11, &text)]);
    let mut body = vec![0x55; 16];
    put_long(&mut body, 3);
    put_long(&mut body, 1001);
    assert_eq!(
        d.decode(InputKind::Completed, &framed(11, &body)),
        Ok(completed(3, 1001, None, None))
    );
}

#[test]
fn a_writer_without_the_durations_gives_none() {
    let d = decoders(&[(
        12,
        UPSTREAM_PIZZA_ORDERS_CANCELLED
            .replace("pizza_orders_cancelled", "pizza_orders_completed")
            .as_str(),
    )]);
    let body = avro(
        UPSTREAM_PIZZA_ORDERS_CANCELLED,
        vec![
            ("store_id", Value::Int(2)),
            ("store_order_id", Value::Int(77)),
            ("date", Value::Date(1)),
            ("status", Value::String("completed".into())),
        ],
    );
    assert_eq!(
        d.decode(InputKind::Completed, &framed(12, &body)),
        Ok(completed(2, 77, None, None))
    );
}

#[test]
fn a_writer_without_store_id_is_incompatible() {
    let text = r#"{"type":"record","name":"pizza_orders_completed","namespace":"pizza_orders","fields":[
        {"name":"store_order_id","type":"int"},{"name":"rack_time_secs","type":"int"}]}"#;
    let d = decoders(&[(13, text)]);
    let err = d
        .decode(InputKind::Completed, &framed(13, &[2, 4]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema id 13 is not compatible with the reader schema pizza_orders_completed: missing field store_id (the writer schema has no such field and the reader has no default)"
    );
    assert_eq!(err.reason().as_str(), "incompatible_schema");
}

#[test]
fn another_topics_schema_is_incompatible() {
    let d = decoders(&[
        (1, UPSTREAM_PIZZA_ORDERS),
        (2, UPSTREAM_PIZZA_ORDERS_COMPLETED),
        (3, UPSTREAM_PIZZA_ORDERS_CANCELLED),
    ]);
    let body = upstream_completed_body(1, 2, 3, 4);
    for kind in [InputKind::Orders, InputKind::Cancelled] {
        let err = d.decode(kind, &framed(2, &body)).unwrap_err();
        assert!(
            err.to_string()
                .contains("the writer's record is named pizza_orders.pizza_orders_completed"),
            "{err}"
        );
    }
    // the WaitTimes reader does not take input records either
    let err = d.decode_wait_times(&framed(2, &body)).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Incompatible {
                reader: "WaitTimes",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn a_reader_alias_admits_another_record_name() {
    let reader = Reader::parse(
        "pizza_orders_cancelled",
        r#"{"type":"record","name":"pizza_orders_cancelled","aliases":["x.KsqlDataSourceSchema"],"fields":[
            {"name":"store_id","type":"int","aliases":["STORE_ID"]},{"name":"store_order_id","type":"int"}]}"#,
    )
    .unwrap();
    let w = writer(
        1,
        r#"{"type":"record","name":"KsqlDataSourceSchema","namespace":"io.confluent.ksql","fields":[
        {"name":"STORE_ID","type":"int"},{"name":"store_order_id","type":"int"}]}"#,
    );
    let plan = Plan::compile(&reader, &w.graph).unwrap();
    assert_eq!(plan.run(1, &[4, 6]).unwrap()[..2], [Some(2), Some(3)]);
}

// ---------------------------------------------------------------------------------------------
// writer schemas as real producers register them

/// `pizza_orders_completed` as Confluent Cloud's Datagen connector registers it through Kafka
/// Connect's AvroConverter: the `ksql` namespace, `connect.*` properties on the record and on
/// logical types, the generator's `arg.properties` gone.
const CONNECT_DATAGEN_COMPLETED: &str = r#"{"type":"record","name":"pizza_orders_completed","namespace":"ksql","fields":[
    {"name":"store_id","type":"int"},
    {"name":"store_order_id","type":"int"},
    {"name":"date","type":{"type":"int","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Date","logicalType":"date"}},
    {"name":"status","type":"string"},
    {"name":"rack_time_secs","type":"int"},
    {"name":"order_delivery_time_secs","type":"int"}],
  "connect.name":"ksql.pizza_orders_completed"}"#;

/// A Connect record whose schema has no name (a JDBC source, an SMT): AvroData names it
/// `io.confluent.connect.avro.ConnectDefault`; optional fields are `["null", T]` with a null
/// default, defaults are repeated as `connect.default`, docs and enums go to
/// `connect.parameters`.
const CONNECT_DEFAULT_COMPLETED: &str = r#"{"type":"record","name":"ConnectDefault","namespace":"io.confluent.connect.avro","fields":[
    {"name":"store_id","type":{"type":"int","connect.doc":"the store","connect.default":0},"default":0},
    {"name":"store_order_id","type":"int"},
    {"name":"status","type":{"type":"string","connect.parameters":{"io.confluent.connect.avro.Enum":"Status","io.confluent.connect.avro.Enum.completed":"completed"},"connect.name":"Status"}},
    {"name":"rack_time_secs","type":["null","int"],"default":null},
    {"name":"order_delivery_time_secs","type":["null",{"type":"int","connect.version":2}],"default":null}],
  "connect.version":3,"connect.parameters":{"source":"orders-db"},"connect.name":"io.confluent.connect.avro.ConnectDefault"}"#;

/// What ksqlDB writes for `CREATE STREAM ... WITH (VALUE_FORMAT='AVRO') AS SELECT ...` over
/// columns declared unquoted: every value record is `KsqlDataSourceSchema`, every column is
/// optional and upper-case.
const KSQL_COMPLETED: &str = r#"{"type":"record","name":"KsqlDataSourceSchema","namespace":"io.confluent.ksql.avro_schemas","fields":[
    {"name":"STORE_ID","type":["null","int"],"default":null},
    {"name":"STORE_ORDER_ID","type":["null","int"],"default":null},
    {"name":"DATE","type":["null",{"type":"int","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Date","logicalType":"date"}],"default":null},
    {"name":"STATUS","type":["null","string"],"default":null},
    {"name":"RACK_TIME_SECS","type":["null","int"],"default":null},
    {"name":"ORDER_DELIVERY_TIME_SECS","type":["null","int"],"default":null}],
  "connect.name":"io.confluent.ksql.avro_schemas.KsqlDataSourceSchema"}"#;

/// The same over a stream whose columns keep the topic's lower-case names (schema inference).
const KSQL_LOWER_COMPLETED: &str = r#"{"type":"record","name":"KsqlDataSourceSchema","namespace":"io.confluent.ksql.avro_schemas","fields":[
    {"name":"store_id","type":["null","int"],"default":null},
    {"name":"store_order_id","type":["null","int"],"default":null},
    {"name":"rack_time_secs","type":["null","int"],"default":null},
    {"name":"order_delivery_time_secs","type":["null","int"],"default":null}],
  "connect.name":"io.confluent.ksql.avro_schemas.KsqlDataSourceSchema"}"#;

/// A Python producer's schema for Confluent's AvroSerializer, `json.dumps` of a dict: its own
/// record name, no namespace, keys in the dict's order, a null default first in the union.
const PYTHON_DICT_COMPLETED: &str = r#"{"name": "OrderCompleted", "type": "record", "fields": [{"name": "store_id", "type": "int"}, {"name": "store_order_id", "type": "int"}, {"name": "rack_time_secs", "type": ["null", "int"], "default": null}, {"name": "order_delivery_time_secs", "type": "int", "doc": "seconds"}]}"#;

/// A namespaced record of another name, with a nested named type (skipped by normal
/// resolution).
const NAMESPACED_COMPLETED: &str = r#"{"type":"record","name":"Completion","namespace":"com.example.kitchen.v2","fields":[
    {"name":"kitchen","type":{"type":"record","name":"Kitchen","fields":[{"name":"oven","type":"int"},{"name":"line","type":{"type":"enum","name":"Line","symbols":["A","B"]}}]}},
    {"name":"store_id","type":"int"},
    {"name":"store_order_id","type":"int"},
    {"name":"rack_time_secs","type":["int","null"],"default":0},
    {"name":"order_delivery_time_secs","type":["null","int"],"default":null}]}"#;

/// `(schema, body)` of store 4's order 1200, racked 150 s, delivered in 1300 s, in every shape.
fn producer_shapes() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let u = |i, v| Value::Union(i, Box::new(v));
    vec![
        (
            "connect datagen",
            CONNECT_DATAGEN_COMPLETED,
            avro(
                CONNECT_DATAGEN_COMPLETED,
                vec![
                    ("store_id", Value::Int(4)),
                    ("store_order_id", Value::Int(1200)),
                    ("date", Value::Date(18_500)),
                    ("status", Value::String("completed".into())),
                    ("rack_time_secs", Value::Int(150)),
                    ("order_delivery_time_secs", Value::Int(1300)),
                ],
            ),
        ),
        (
            "connect default",
            CONNECT_DEFAULT_COMPLETED,
            avro(
                CONNECT_DEFAULT_COMPLETED,
                vec![
                    ("store_id", Value::Int(4)),
                    ("store_order_id", Value::Int(1200)),
                    ("status", Value::String("completed".into())),
                    ("rack_time_secs", u(1, Value::Int(150))),
                    ("order_delivery_time_secs", u(1, Value::Int(1300))),
                ],
            ),
        ),
        (
            "ksqldb",
            KSQL_COMPLETED,
            avro(
                KSQL_COMPLETED,
                vec![
                    ("STORE_ID", u(1, Value::Int(4))),
                    ("STORE_ORDER_ID", u(1, Value::Int(1200))),
                    ("DATE", u(0, Value::Null)),
                    ("STATUS", u(1, Value::String("completed".into()))),
                    ("RACK_TIME_SECS", u(1, Value::Int(150))),
                    ("ORDER_DELIVERY_TIME_SECS", u(1, Value::Int(1300))),
                ],
            ),
        ),
        (
            "ksqldb lower-case",
            KSQL_LOWER_COMPLETED,
            avro(
                KSQL_LOWER_COMPLETED,
                vec![
                    ("store_id", u(1, Value::Int(4))),
                    ("store_order_id", u(1, Value::Int(1200))),
                    ("rack_time_secs", u(1, Value::Int(150))),
                    ("order_delivery_time_secs", u(1, Value::Int(1300))),
                ],
            ),
        ),
        (
            "python dict",
            PYTHON_DICT_COMPLETED,
            avro(
                PYTHON_DICT_COMPLETED,
                vec![
                    ("store_id", Value::Int(4)),
                    ("store_order_id", Value::Int(1200)),
                    ("rack_time_secs", u(1, Value::Int(150))),
                    ("order_delivery_time_secs", Value::Int(1300)),
                ],
            ),
        ),
        (
            "namespaced",
            NAMESPACED_COMPLETED,
            avro(
                NAMESPACED_COMPLETED,
                vec![
                    (
                        "kitchen",
                        Value::Record(vec![
                            ("oven".into(), Value::Int(2)),
                            ("line".into(), Value::Enum(1, "B".into())),
                        ]),
                    ),
                    ("store_id", Value::Int(4)),
                    ("store_order_id", Value::Int(1200)),
                    ("rack_time_secs", u(0, Value::Int(150))),
                    ("order_delivery_time_secs", u(1, Value::Int(1300))),
                ],
            ),
        ),
    ]
}

#[test]
fn every_producers_shape_decodes_to_the_same_event() {
    let want = completed(4, 1200, Some(150), Some(1300));
    for (i, (shape, schema, body)) in producer_shapes().into_iter().enumerate() {
        let id = 40 + i as u32;
        let d = decoders(&[(id, schema)]);
        assert_eq!(
            d.decode(InputKind::Completed, &framed(id, &body)),
            Ok(want),
            "{shape}"
        );
    }
    // apache-avro, which resolves by field names only, agrees where the names are ours
    for (shape, schema, body) in producer_shapes() {
        if shape != "ksqldb" {
            assert_eq!(
                reference(COMPLETED, &writer(1, schema), &body),
                Ok(want),
                "{shape}"
            );
        }
    }
}

#[test]
fn ksqldb_orders_and_cancellations_decode_too() {
    let orders = r#"{"type":"record","name":"KsqlDataSourceSchema","namespace":"io.confluent.ksql.avro_schemas","fields":[
        {"name":"STORE_ID","type":["null","int"],"default":null},
        {"name":"STORE_ORDER_ID","type":["null","int"],"default":null},
        {"name":"COUPON_CODE","type":["null","int"],"default":null},
        {"name":"ORDER_LINES","type":["null",{"type":"array","items":["null",{"type":"record","name":"KsqlDataSourceSchema_ORDER_LINES","fields":[
            {"name":"PRODUCT_ID","type":["null","int"],"default":null},
            {"name":"NET_PRICE","type":["null","double"],"default":null}]}]}],"default":null}],
      "connect.name":"io.confluent.ksql.avro_schemas.KsqlDataSourceSchema"}"#;
    let u = |i, v| Value::Union(i, Box::new(v));
    let line = Value::Record(vec![
        ("PRODUCT_ID".into(), u(1, Value::Int(66))),
        ("NET_PRICE".into(), u(1, Value::Double(18.78))),
    ]);
    let body = avro(
        orders,
        vec![
            ("STORE_ID", u(1, Value::Int(9))),
            ("STORE_ORDER_ID", u(1, Value::Int(77))),
            ("COUPON_CODE", u(0, Value::Null)),
            (
                "ORDER_LINES",
                u(1, Value::Array(vec![u(1, line), u(0, Value::Null)])),
            ),
        ],
    );
    let d = decoders(&[(50, orders)]);
    let placed = OrderPlaced {
        store_id: 9,
        store_order_id: 77,
    };
    assert_eq!(
        d.decode(InputKind::Orders, &framed(50, &body)),
        Ok(OrderEvent::Placed(placed))
    );
    // the same record on the cancelled topic is a cancellation: nothing in the name says no
    assert_eq!(
        d.decode(InputKind::Cancelled, &framed(50, &body)),
        Ok(OrderEvent::Cancelled(OrderCancelled {
            store_id: 9,
            store_order_id: 77
        }))
    );
}

#[test]
fn a_null_where_a_value_is_needed_dead_letters_that_record_only() {
    let d = decoders(&[(51, KSQL_COMPLETED)]);
    let u = |i, v| Value::Union(i, Box::new(v));
    let rec = |store: Value, order: Value, rack: Value| {
        framed(
            51,
            &avro(
                KSQL_COMPLETED,
                vec![
                    ("STORE_ID", store),
                    ("STORE_ORDER_ID", order),
                    ("DATE", u(0, Value::Null)),
                    ("STATUS", u(0, Value::Null)),
                    ("RACK_TIME_SECS", rack),
                    ("ORDER_DELIVERY_TIME_SECS", u(0, Value::Null)),
                ],
            ),
        )
    };
    for (field, payload) in [
        (
            "store_id",
            rec(u(0, Value::Null), u(1, Value::Int(5)), u(0, Value::Null)),
        ),
        (
            "store_order_id",
            rec(u(1, Value::Int(5)), u(0, Value::Null), u(0, Value::Null)),
        ),
    ] {
        let err = d.decode(InputKind::Completed, &payload).unwrap_err();
        assert_eq!(err.reason().as_str(), "invalid_value", "{err}");
        assert!(
            err.to_string().starts_with(&format!("{field} is null")),
            "{err}"
        );
    }
    // null optional durations are just unknown, and the next record of the schema reads
    assert_eq!(
        d.decode(
            InputKind::Completed,
            &rec(u(1, Value::Int(5)), u(1, Value::Int(6)), u(0, Value::Null))
        ),
        Ok(completed(5, 6, None, None))
    );
    assert_eq!(
        d.decode(
            InputKind::Completed,
            &rec(
                u(1, Value::Int(5)),
                u(1, Value::Int(6)),
                u(1, Value::Int(7))
            )
        ),
        Ok(completed(5, 6, Some(7), None))
    );
}

#[test]
fn another_name_and_a_missing_field_is_still_incompatible() {
    // named otherwise and without store_order_id: no field to read it from, no default
    let text = r#"{"type":"record","name":"KsqlDataSourceSchema","namespace":"io.confluent.ksql.avro_schemas","fields":[
        {"name":"STORE_ID","type":["null","int"],"default":null},
        {"name":"STATUS","type":["null","string"],"default":null}]}"#;
    let d = decoders(&[(52, text)]);
    let err = d
        .decode(InputKind::Orders, &framed(52, &[2, 8, 0]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema id 52 is not compatible with the reader schema pizza_orders: missing field store_order_id (the writer schema has no such field and the reader has no default)"
    );
    assert_eq!(err.reason().as_str(), "incompatible_schema");
    // a name that differs only in case is not the field: Avro names are case-sensitive, and
    // the message says so
    let text = r#"{"type":"record","name":"Order","namespace":"com.example","fields":[
        {"name":"Store_Id","type":"int"},{"name":"store_order_id","type":"int"}]}"#;
    let d = decoders(&[(53, text)]);
    let err = d
        .decode(InputKind::Orders, &framed(53, &[2, 4]))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema id 53 is not compatible with the reader schema pizza_orders: missing field store_id (the writer schema has no such field and the reader has no default; the writer has Store_Id, but Avro field names are case-sensitive)"
    );
}

#[test]
fn the_input_record_names_are_the_upstream_ones() {
    for (i, text) in [
        UPSTREAM_PIZZA_ORDERS,
        UPSTREAM_PIZZA_ORDERS_COMPLETED,
        UPSTREAM_PIZZA_ORDERS_CANCELLED,
    ]
    .into_iter()
    .enumerate()
    {
        let name = writer(1, text).record_name().map(str::to_string);
        assert_eq!(
            name.as_deref().map(simple_name),
            Some(INPUT_RECORD_NAMES[i])
        );
        assert_eq!(READERS[i].name, INPUT_RECORD_NAMES[i]);
    }
}

#[test]
fn a_non_record_writer_schema_is_incompatible() {
    let d = decoders(&[(14, r#""string""#)]);
    let err = d.decode(InputKind::Orders, &framed(14, &[0])).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("the writer schema is a string, not a record"),
        "{err}"
    );
}

#[test]
fn a_wrong_field_type_is_incompatible() {
    for (ty, says) in [
        (r#""string""#, "the writer's string cannot be read as int"),
        (r#""long""#, "the writer's long cannot be read as int"),
        (r#""null""#, "the writer's null cannot be read as int"),
        (
            r#"["null","string"]"#,
            "the writer's union [null, string] cannot be read as int",
        ),
        (
            r#"{"type":"record","name":"S","fields":[]}"#,
            "the writer's record pizza_orders.S cannot be read as int",
        ),
    ] {
        let text = format!(
            r#"{{"type":"record","name":"pizza_orders_cancelled","namespace":"pizza_orders","fields":[
                {{"name":"store_id","type":{ty}}},{{"name":"store_order_id","type":"int"}}]}}"#
        );
        let d = decoders(&[(15, &text)]);
        let err = d
            .decode(InputKind::Cancelled, &framed(15, &[2, 2]))
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with(&format!("field store_id: {says}")),
            "{ty}: {err}"
        );
    }
}

#[test]
fn fields_in_another_order_resolve() {
    let text = r#"{"type":"record","name":"pizza_orders_completed","fields":[
        {"name":"order_delivery_time_secs","type":"int"},
        {"name":"status","type":"string"},
        {"name":"store_order_id","type":"int"},
        {"name":"rack_time_secs","type":"int"},
        {"name":"store_id","type":"int"}]}"#;
    let body = avro(
        text,
        vec![
            ("order_delivery_time_secs", Value::Int(1500)),
            ("status", Value::String("completed".into())),
            ("store_order_id", Value::Int(31)),
            ("rack_time_secs", Value::Int(140)),
            ("store_id", Value::Int(7)),
        ],
    );
    let d = decoders(&[(16, text)]);
    assert_eq!(
        d.decode(InputKind::Completed, &framed(16, &body)),
        Ok(completed(7, 31, Some(140), Some(1500)))
    );
    assert_eq!(
        reference(COMPLETED, &writer(16, text), &body),
        Ok(completed(7, 31, Some(140), Some(1500)))
    );
}

#[test]
fn unions_resolve_per_record() {
    let text = r#"{"type":"record","name":"pizza_orders_completed","fields":[
        {"name":"store_id","type":["int","null"]},
        {"name":"store_order_id","type":["null","string","int"]},
        {"name":"rack_time_secs","type":["null","int"]},
        {"name":"order_delivery_time_secs","type":["int","null","string"]}]}"#;
    let d = decoders(&[(17, text)]);
    let w = writer(17, text);
    let rec = |sid: Value, oid: Value, rack: Value, del: Value| {
        avro(
            text,
            vec![
                ("store_id", sid),
                ("store_order_id", oid),
                ("rack_time_secs", rack),
                ("order_delivery_time_secs", del),
            ],
        )
    };
    let u = |i, v| Value::Union(i, Box::new(v));
    let body = rec(
        u(0, Value::Int(3)),
        u(2, Value::Int(9)),
        u(1, Value::Int(100)),
        u(1, Value::Null),
    );
    assert_eq!(
        d.decode(InputKind::Completed, &framed(17, &body)),
        Ok(completed(3, 9, Some(100), None))
    );
    assert_eq!(
        reference(COMPLETED, &w, &body),
        Ok(completed(3, 9, Some(100), None))
    );
    // null into a required field: that record's dead letter, a value out of range
    let body = rec(
        u(1, Value::Null),
        u(2, Value::Int(9)),
        u(0, Value::Null),
        u(0, Value::Int(5)),
    );
    let err = d
        .decode(InputKind::Completed, &framed(17, &body))
        .unwrap_err();
    assert_eq!(
        err,
        DecodeError::Invalid(
            "store_id is null (the writer's schema makes it optional), but every record needs one"
                .into()
        )
    );
    assert_eq!(err.reason().as_str(), "invalid_value");
    assert!(reference(COMPLETED, &w, &body).is_err());
    // a string branch where an int is wanted
    let body = rec(
        u(0, Value::Int(3)),
        u(1, Value::String("x".into())),
        u(0, Value::Null),
        u(0, Value::Int(5)),
    );
    let err = d
        .decode(InputKind::Completed, &framed(17, &body))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed Avro body (schema id 17), field store_order_id starting at byte 2 of the body: union branch 1 holds a string, which cannot be read as an integer"
    );
    assert!(reference(COMPLETED, &w, &body).is_err());
    // union index out of range
    let (field, problem) = malformed(
        d.decode(InputKind::Completed, &framed(17, &[6, 0, 0, 0, 0]))
            .unwrap_err(),
    );
    assert_eq!(
        (field.as_str(), problem),
        (
            "store_id",
            Problem::BadUnionIndex {
                index: 3,
                branches: 2
            }
        )
    );
    let (_, problem) = malformed(
        d.decode(InputKind::Completed, &framed(17, &[1]))
            .unwrap_err(),
    );
    assert_eq!(
        problem,
        Problem::BadUnionIndex {
            index: -1,
            branches: 2
        }
    );
}

#[test]
fn int_promotes_to_a_long_reader_field_and_long_does_not_narrow() {
    let reader = Reader::parse(
        "R",
        r#"{"type":"record","name":"R","fields":[
            {"name":"a","type":"long"},{"name":"b","type":["null","long"],"default":null},
            {"name":"c","type":"long","default":42}]}"#,
    )
    .unwrap();
    let w = writer(
        1,
        r#"{"type":"record","name":"R","fields":[{"name":"b","type":"int"},{"name":"a","type":"int"}]}"#,
    );
    let plan = Plan::compile(&reader, &w.graph).unwrap();
    let mut body = Vec::new();
    put_long(&mut body, i64::from(i32::MIN));
    put_long(&mut body, i64::from(i32::MAX));
    assert_eq!(
        plan.run(1, &body).unwrap()[..3],
        [
            Some(i64::from(i32::MAX)),
            Some(i64::from(i32::MIN)),
            Some(42)
        ]
    );
    // a long writer field into a long reader field: full 64 bits
    let w = writer(
        2,
        r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"b","type":["long","null"]}]}"#,
    );
    let plan = Plan::compile(&reader, &w.graph).unwrap();
    let mut body = Vec::new();
    put_long(&mut body, i64::MIN);
    put_long(&mut body, 0);
    put_long(&mut body, i64::MAX);
    assert_eq!(
        plan.run(2, &body).unwrap()[..3],
        [Some(i64::MIN), Some(i64::MAX), Some(42)]
    );
    // int readers never take a long
    let w = writer(
        3,
        r#"{"type":"record","name":"pizza_orders","fields":[{"name":"store_id","type":"long"},{"name":"store_order_id","type":"int"}]}"#,
    );
    let err = Plan::compile(&READERS[ORDERS], &w.graph).unwrap_err();
    assert_eq!(
        err,
        "field store_id: the writer's long cannot be read as int"
    );
}

// ---------------------------------------------------------------------------------------------
// malformed bodies

#[test]
fn truncated_at_every_offset_is_an_error_never_a_panic() {
    let d = decoders(&[
        (1, UPSTREAM_PIZZA_ORDERS),
        (2, UPSTREAM_PIZZA_ORDERS_COMPLETED),
        (3, UPSTREAM_PIZZA_ORDERS_CANCELLED),
    ]);
    let lines = [OrderLine {
        product_id: 300,
        category: "wings",
        quantity: 2,
        unit_price: 2.5,
        net_price: 5.0,
    }; 3];
    let mut payloads = Vec::new();
    let mut buf = Vec::new();
    PizzaOrder {
        store_id: 1000,
        store_order_id: 100_000,
        coupon_code: 1500,
        date: 18_500,
        status: "accepted",
        order_lines: &lines,
    }
    .write_framed(1, &mut buf);
    payloads.push((InputKind::Orders, std::mem::take(&mut buf)));
    payloads.push((
        InputKind::Completed,
        framed(2, &upstream_completed_body(300, 70_000, 200, 1900)),
    ));
    PizzaOrderCancelled {
        store_id: 9,
        store_order_id: 1_000_001,
        date: 18_001,
        status: "cancelled",
    }
    .write_framed(3, &mut buf);
    payloads.push((InputKind::Cancelled, buf));
    for (kind, payload) in payloads {
        assert!(d.decode(kind, &payload).is_ok());
        for len in 0..payload.len() {
            let err = d.decode(kind, &payload[..len]).unwrap_err();
            assert!(
                matches!(err, DecodeError::Framing(_) | DecodeError::Malformed { .. }),
                "{kind:?} cut at {len}: {err:?}"
            );
        }
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let d = decoders(&[(2, UPSTREAM_PIZZA_ORDERS_COMPLETED)]);
    let mut body = upstream_completed_body(1, 2, 3, 4);
    body.extend_from_slice(&[0, 0]);
    let err = d
        .decode(InputKind::Completed, &framed(2, &body))
        .unwrap_err();
    assert_eq!(
        err,
        DecodeError::TrailingBytes {
            schema_id: 2,
            count: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "malformed Avro body (schema id 2): 2 trailing byte(s) after the end of the record"
    );
}

#[test]
fn huge_lengths_and_counts_fail_before_any_work() {
    let d = decoders(&[(1, UPSTREAM_PIZZA_ORDERS)]);
    let head = |status_len: i64| {
        let mut b = Vec::new();
        for v in [1i64, 2, 3, 4] {
            put_long(&mut b, v);
        }
        put_long(&mut b, status_len);
        b
    };
    // a string of 2^40 bytes
    let (field, problem) = malformed(
        d.decode(InputKind::Orders, &framed(1, &head(1 << 40)))
            .unwrap_err(),
    );
    assert_eq!(
        (field.as_str(), problem),
        (
            "status",
            Problem::LengthExceedsInput {
                len: 1 << 40,
                remaining: 0
            }
        )
    );
    let (_, problem) = malformed(
        d.decode(InputKind::Orders, &framed(1, &head(-5)))
            .unwrap_err(),
    );
    assert_eq!(problem, Problem::NegativeLength(-5));
    // an array of 2^50 order lines (each at least 1+1+1+8+8 bytes)
    let mut b = head(0);
    put_long(&mut b, 1 << 50);
    b.extend_from_slice(&[0; 40]);
    let err = d.decode(InputKind::Orders, &framed(1, &b)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed Avro body (schema id 1), field order_lines starting at byte 5 of the body: block of 1125899906842624 items cannot fit in the 40 byte(s) left in the body"
    );
    // two lines fit the count check (2 * 19 <= 40) but the bytes are not two valid lines
    let mut b = head(0);
    put_long(&mut b, 2);
    b.extend_from_slice(&[0; 38]);
    let (_, problem) = malformed(d.decode(InputKind::Orders, &framed(1, &b)).unwrap_err());
    assert_eq!(problem, Problem::Truncated);
    // a negative block count announces a byte size: 2^40 of them
    let mut b = head(0);
    put_long(&mut b, -3);
    put_long(&mut b, 1 << 40);
    let (_, problem) = malformed(d.decode(InputKind::Orders, &framed(1, &b)).unwrap_err());
    assert!(
        matches!(
            problem,
            Problem::LengthExceedsInput {
                len: 1_099_511_627_776,
                ..
            }
        ),
        "{problem:?}"
    );
    let mut b = head(0);
    put_long(&mut b, i64::MIN);
    let (_, problem) = malformed(d.decode(InputKind::Orders, &framed(1, &b)).unwrap_err());
    assert_eq!(problem, Problem::BadBlockCount(i64::MIN));
}

#[test]
fn negative_block_counts_are_walked_and_checked_against_their_size() {
    let d = decoders(&[(1, UPSTREAM_PIZZA_ORDERS)]);
    let mut line = Vec::new();
    put_long(&mut line, 66);
    crate::wire::put_str(&mut line, "calzone");
    put_long(&mut line, 4);
    line.extend_from_slice(&18.78f64.to_le_bytes());
    line.extend_from_slice(&75.12f64.to_le_bytes());
    let mut b = Vec::new();
    for v in [3i64, 1001, 1500, 18_500] {
        put_long(&mut b, v);
    }
    crate::wire::put_str(&mut b, "accepted");
    put_long(&mut b, -2); // two items, then the block's size in bytes
    put_long(&mut b, 2 * line.len() as i64);
    b.extend_from_slice(&line);
    b.extend_from_slice(&line);
    put_long(&mut b, 1); // then an ordinary block of one
    b.extend_from_slice(&line);
    put_long(&mut b, 0);
    let expected = OrderEvent::Placed(OrderPlaced {
        store_id: 3,
        store_order_id: 1001,
    });
    assert_eq!(d.decode(InputKind::Orders, &framed(1, &b)), Ok(expected));
    assert_eq!(
        reference(ORDERS, &writer(1, UPSTREAM_PIZZA_ORDERS), &b),
        Ok(expected)
    );
    // a sized block whose size is not what its items take
    let head_len = b.len() - 3 * line.len() - 4;
    for size in [2 * line.len() as i64 - 1, 2 * line.len() as i64 + 1] {
        let mut c = b[..head_len].to_vec();
        put_long(&mut c, -2);
        put_long(&mut c, size);
        c.extend_from_slice(&line);
        c.extend_from_slice(&line);
        c.extend_from_slice(&[0, 0]);
        let (field, problem) = malformed(d.decode(InputKind::Orders, &framed(1, &c)).unwrap_err());
        assert_eq!(field, "order_lines");
        assert_eq!(
            problem,
            Problem::BadBlockSize {
                declared: size,
                taken: 2 * line.len()
            }
        );
    }
    // the items of a sized block are checked like any others (a block of garbage of the right
    // size used to pass unread)
    let mut bad_line = line.clone();
    bad_line[4] = 0xff; // "c\xfflzone"
    let mut c = b[..head_len].to_vec();
    put_long(&mut c, -1);
    put_long(&mut c, bad_line.len() as i64);
    c.extend_from_slice(&bad_line);
    put_long(&mut c, 0);
    let (_, problem) = malformed(d.decode(InputKind::Orders, &framed(1, &c)).unwrap_err());
    assert_eq!(problem, Problem::InvalidUtf8 { valid_up_to: 1 });
    assert!(reference(ORDERS, &writer(1, UPSTREAM_PIZZA_ORDERS), &c[..]).is_err());
}

#[test]
fn maps_and_arrays_of_zero_sized_items() {
    let text = completed_with(
        r#"{"name":"nulls","type":{"type":"array","items":"null"}},
           {"name":"empties","type":{"type":"map","values":{"type":"record","name":"E","fields":[]}}},"#,
        "",
    );
    let d = decoders(&[(1, &text)]);
    // 2^50 nulls take no bytes: accepted without looping
    let mut b = Vec::new();
    put_long(&mut b, 1 << 50);
    put_long(&mut b, 0);
    // a map of 2 empty records: each entry is its key
    put_long(&mut b, 2);
    crate::wire::put_str(&mut b, "a");
    crate::wire::put_str(&mut b, "b");
    put_long(&mut b, 0);
    put_long(&mut b, 5);
    put_long(&mut b, 6);
    assert_eq!(
        d.decode(InputKind::Completed, &framed(1, &b)),
        Ok(completed(5, 6, None, None))
    );
    // but a map of 2^50 entries cannot fit
    let mut b = Vec::new();
    put_long(&mut b, 0);
    put_long(&mut b, 1 << 50);
    let (field, problem) = malformed(d.decode(InputKind::Completed, &framed(1, &b)).unwrap_err());
    assert_eq!(field, "empties");
    assert!(
        matches!(problem, Problem::ItemsExceedInput { .. }),
        "{problem:?}"
    );
}

#[test]
fn varint_overflow_and_int_range() {
    let d = decoders(&[(2, UPSTREAM_PIZZA_ORDERS_COMPLETED)]);
    let (field, problem) = malformed(
        d.decode(InputKind::Completed, &framed(2, &[0xff; 11]))
            .unwrap_err(),
    );
    assert_eq!(
        (field.as_str(), problem),
        ("store_id", Problem::VarintOverflow)
    );
    // ten bytes whose last carries more than bit 63
    let mut b = vec![0xff; 9];
    b.push(0x02);
    let (_, problem) = malformed(d.decode(InputKind::Completed, &framed(2, &b)).unwrap_err());
    assert_eq!(problem, Problem::VarintOverflow);
    // a valid long that is not an int
    let mut b = Vec::new();
    put_long(&mut b, 1 << 40);
    let (field, problem) = malformed(d.decode(InputKind::Completed, &framed(2, &b)).unwrap_err());
    assert_eq!(
        (field.as_str(), problem),
        ("store_id", Problem::IntOutOfRange(1 << 40))
    );
    // a skipped int is checked too
    let mut b = Vec::new();
    for v in [1, 2, i64::from(i32::MIN) - 1] {
        put_long(&mut b, v);
    }
    let (field, problem) = malformed(d.decode(InputKind::Completed, &framed(2, &b)).unwrap_err());
    assert_eq!(
        (field.as_str(), problem),
        ("date", Problem::IntOutOfRange(i64::from(i32::MIN) - 1))
    );
    // non-minimal encodings are accepted (as apache-avro does): 1 in three bytes
    let mut b = vec![0x82, 0x80, 0x00];
    for v in [2, 3] {
        put_long(&mut b, v);
    }
    crate::wire::put_str(&mut b, "completed");
    put_long(&mut b, 4);
    put_long(&mut b, 5);
    assert_eq!(
        d.decode(InputKind::Completed, &framed(2, &b)),
        Ok(completed(1, 2, Some(4), Some(5)))
    );
}

#[test]
fn enum_and_boolean_values_are_checked() {
    let text = completed_with(
        r#"{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},{"name":"flag","type":"boolean"},"#,
        "",
    );
    let d = decoders(&[(1, &text)]);
    let (field, problem) = malformed(
        d.decode(InputKind::Completed, &framed(1, &[4, 1, 2, 2]))
            .unwrap_err(),
    );
    assert_eq!(
        (field.as_str(), problem),
        (
            "e",
            Problem::BadEnumIndex {
                index: 2,
                symbols: 2
            }
        )
    );
    let (field, problem) = malformed(
        d.decode(InputKind::Completed, &framed(1, &[2, 7, 2, 2]))
            .unwrap_err(),
    );
    assert_eq!((field.as_str(), problem), ("flag", Problem::BadBoolean(7)));
    assert_eq!(
        d.decode(InputKind::Completed, &framed(1, &[2, 1, 2, 2])),
        Ok(completed(1, 1, None, None))
    );
}

#[test]
fn recursion_deeper_than_the_limit_is_rejected() {
    let text = completed_with(
        r#"{"name":"list","type":{"type":"record","name":"Node","fields":[
            {"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}},"#,
        "",
    );
    let d = decoders(&[(1, &text)]);
    let list = |depth: usize| {
        let mut b = Vec::new();
        for _ in 0..depth {
            b.extend_from_slice(&[0, 2]); // v = 0, then branch 1 (another node)
        }
        b.extend_from_slice(&[0, 0, 2, 2]); // v = 0, null; store_id 1, store_order_id 1
        b
    };
    assert!(
        d.decode(InputKind::Completed, &framed(1, &list(20)))
            .is_ok()
    );
    let (field, problem) = malformed(
        d.decode(InputKind::Completed, &framed(1, &list(10_000)))
            .unwrap_err(),
    );
    assert_eq!((field.as_str(), problem), ("list", Problem::TooDeep));
}

#[test]
fn random_bytes_never_panic() {
    let d = decoders(&[
        (1, UPSTREAM_PIZZA_ORDERS),
        (2, EVERY_TYPE),
        (3, UPSTREAM_PIZZA_ORDERS_COMPLETED),
    ]);
    let mut rng = Rng(7);
    for _ in 0..20_000 {
        let len = rng.below(64) as usize;
        let mut payload = vec![0u8, 0, 0, 0, 1 + rng.below(3) as u8];
        payload.extend((0..len).map(|_| rng.next() as u8));
        for kind in InputKind::ALL {
            let _ = d.decode(kind, &payload);
        }
        let _ = d.decode_wait_times(&payload);
    }
}

// ---------------------------------------------------------------------------------------------
// semantic checks

#[test]
fn store_ids_must_be_positive_and_durations_not_negative() {
    let d = decoders(&[(2, UPSTREAM_PIZZA_ORDERS_COMPLETED)]);
    let check = |store: i32, rack: i32, delivery: i32| {
        d.decode(
            InputKind::Completed,
            &framed(2, &upstream_completed_body(store, 1, rack, delivery)),
        )
    };
    assert_eq!(
        check(-3, 1, 1),
        Err(DecodeError::Invalid(
            "store_id must be positive, got -3".into()
        ))
    );
    assert_eq!(
        check(0, 1, 1),
        Err(DecodeError::Invalid(
            "store_id must be positive, got 0".into()
        ))
    );
    assert_eq!(
        check(1, -1, 1),
        Err(DecodeError::Invalid(
            "rack_time_secs must not be negative, got -1".into()
        ))
    );
    assert_eq!(
        check(1, 1, -9),
        Err(DecodeError::Invalid(
            "order_delivery_time_secs must not be negative, got -9".into()
        ))
    );
    assert_eq!(
        check(-3, 1, 1).unwrap_err().reason().as_str(),
        "invalid_value"
    );
    let d = decoders(&[(1, UPSTREAM_PIZZA_ORDERS_CANCELLED)]);
    let mut b = Vec::new();
    PizzaOrderCancelled {
        store_id: i32::MIN,
        store_order_id: 1,
        date: 0,
        status: "",
    }
    .write_framed(1, &mut b);
    assert_eq!(
        d.decode(InputKind::Cancelled, &b),
        Err(DecodeError::Invalid(format!(
            "store_id must be positive, got {}",
            i32::MIN
        )))
    );
}

// ---------------------------------------------------------------------------------------------
// the schema-id lifecycle

#[test]
fn unknown_ids_ask_to_be_learned_and_missing_ones_fail_permanently() {
    let mut d = Decoders::new();
    let payload = framed(21, &upstream_completed_body(1, 2, 3, 4));
    let err = d.decode(InputKind::Completed, &payload).unwrap_err();
    assert_eq!(err, DecodeError::UnknownSchemaId(21));
    assert!(err.is_unknown_schema());
    assert_eq!(err.reason().as_str(), "unknown_schema");
    d.learn_missing(21, "schema id 21 not found in the schema registry");
    let err = d.decode(InputKind::Completed, &payload).unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema id 21 cannot be used: schema id 21 not found in the schema registry"
    );
    assert!(!err.is_unknown_schema());
    // the schema turns up after all: learning replaces the missing entry
    d.learn(21, &writer(21, UPSTREAM_PIZZA_ORDERS_COMPLETED));
    assert_eq!(
        d.decode(InputKind::Completed, &payload),
        Ok(completed(1, 2, Some(3), Some(4)))
    );
    // learning again is a no-op, and a late learn_missing does not override
    d.learn(21, &writer(21, UPSTREAM_PIZZA_ORDERS_CANCELLED));
    d.learn_missing(21, "gone");
    assert_eq!(
        d.decode(InputKind::Completed, &payload),
        Ok(completed(1, 2, Some(3), Some(4)))
    );
    assert!(d.knows(21) && !d.knows(22));
}

#[test]
fn interleaved_ids_and_kinds_use_the_right_plans() {
    let cancelled_v2 = r#"{"type":"record","name":"pizza_orders_cancelled","fields":[
        {"name":"reason","type":"string","default":""},{"name":"store_order_id","type":"int"},{"name":"store_id","type":"int"}]}"#;
    let d = decoders(&[
        (1, UPSTREAM_PIZZA_ORDERS),
        (2, UPSTREAM_PIZZA_ORDERS_COMPLETED),
        (3, UPSTREAM_PIZZA_ORDERS_CANCELLED),
        (4, cancelled_v2),
    ]);
    let mut order = Vec::new();
    PizzaOrder {
        store_id: 1,
        store_order_id: 10,
        coupon_code: 0,
        date: 0,
        status: "accepted",
        order_lines: &[],
    }
    .write_framed(1, &mut order);
    let done = framed(2, &upstream_completed_body(2, 20, 1, 1));
    let mut gone = Vec::new();
    PizzaOrderCancelled {
        store_id: 3,
        store_order_id: 30,
        date: 0,
        status: "cancelled",
    }
    .write_framed(3, &mut gone);
    let gone_v2 = framed(
        4,
        &avro(
            cancelled_v2,
            vec![
                ("reason", Value::String("cold".into())),
                ("store_order_id", Value::Int(40)),
                ("store_id", Value::Int(4)),
            ],
        ),
    );
    for _ in 0..3 {
        assert_eq!(
            d.decode(InputKind::Orders, &order)
                .unwrap()
                .store_order_id(),
            10
        );
        assert_eq!(
            d.decode(InputKind::Cancelled, &gone)
                .unwrap()
                .store_order_id(),
            30
        );
        assert_eq!(
            d.decode(InputKind::Cancelled, &gone_v2).unwrap(),
            OrderEvent::Cancelled(OrderCancelled {
                store_id: 4,
                store_order_id: 40
            })
        );
        assert_eq!(
            d.decode(InputKind::Completed, &done)
                .unwrap()
                .store_order_id(),
            20
        );
        assert!(d.decode(InputKind::Completed, &gone).is_err());
        assert_eq!(
            d.decode(InputKind::Cancelled, &framed(9, &[])),
            Err(DecodeError::UnknownSchemaId(9))
        );
    }
    assert!(matches!(
        d.decode(InputKind::Orders, &[1, 2, 3, 4, 5]),
        Err(DecodeError::Framing(FramingError::BadMagic { found: 1 }))
    ));
}

// ---------------------------------------------------------------------------------------------
// WaitTimes

#[test]
fn wait_times_round_trip() {
    let d = decoders(&[(100, WAIT_TIMES_SCHEMA)]);
    for (store, minutes) in [(1, 15), (2, 20), (10, 6), (i32::MAX, 0), (3, i32::MAX)] {
        assert_eq!(
            d.decode_wait_times(&encode_wait_times(100, store, minutes)),
            Ok((store, minutes))
        );
    }
    assert_eq!(
        d.decode_wait_times(&encode_wait_times(100, 0, 5)),
        Err(DecodeError::Invalid(
            "store_id must be positive, got 0".into()
        ))
    );
    assert_eq!(
        d.decode_wait_times(&encode_wait_times(100, 4, -1)),
        Err(DecodeError::Invalid(
            "wait_time must not be negative, got -1".into()
        ))
    );
    assert_eq!(
        d.decode_wait_times(&encode_wait_times(101, 4, 1)),
        Err(DecodeError::UnknownSchemaId(101))
    );
    // the workshop's hand-seeded values were written with the same schema by another producer:
    // a writer with an extra field and another namespace still reads
    let v2 = r#"{"type":"record","name":"WaitTimes","namespace":"other","fields":[
        {"name":"wait_time","type":"int"},{"name":"model","type":"string","default":"stale"},{"name":"store_id","type":"int"}]}"#;
    let d = decoders(&[(102, v2)]);
    let body = avro(
        v2,
        vec![
            ("wait_time", Value::Int(23)),
            ("model", Value::String("ml".into())),
            ("store_id", Value::Int(4)),
        ],
    );
    assert_eq!(d.decode_wait_times(&framed(102, &body)), Ok((4, 23)));
}

// ---------------------------------------------------------------------------------------------
// the reference path: apache-avro with schema resolution, and the property test

/// Decodes with apache-avro (writer + our reader schema, full resolution) and applies the same
/// semantic checks as the fast path. Errors are stringly: only their existence is compared.
fn reference(reader: usize, writer: &WriterSchema, body: &[u8]) -> Result<OrderEvent, String> {
    let text = [
        READER_PIZZA_ORDERS,
        READER_PIZZA_ORDERS_COMPLETED,
        READER_PIZZA_ORDERS_CANCELLED,
    ][reader];
    let reader_schema = Schema::parse_str(text).unwrap();
    let mut slice = body;
    let value = apache_avro::from_avro_datum(writer.avro(), &mut slice, Some(&reader_schema))
        .map_err(|e| e.to_string())?;
    if !slice.is_empty() {
        return Err("trailing bytes".into());
    }
    let Value::Record(fields) = value else {
        return Err("not a record".into());
    };
    let get = |name: &str| -> Result<Option<i64>, String> {
        let v = &fields.iter().find(|(n, _)| n == name).ok_or("no field")?.1;
        let v = match v {
            Value::Union(_, inner) => inner.as_ref(),
            v => v,
        };
        match v {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(i64::from(*i))),
            Value::Long(i) => Ok(Some(*i)),
            other => Err(format!("unexpected {other:?}")),
        }
    };
    let mut slots: Slots = [None; MAX_SLOTS];
    for (i, f) in READERS[reader].fields.iter().enumerate() {
        slots[i] = get(&f.name)?;
    }
    let store_id = store_id(&slots).map_err(|e| e.to_string())?;
    let store_order_id =
        int_field(&slots, STORE_ORDER_ID, "store_order_id").map_err(|e| e.to_string())?;
    Ok(match reader {
        ORDERS => OrderEvent::Placed(OrderPlaced {
            store_id,
            store_order_id,
        }),
        CANCELLED => OrderEvent::Cancelled(OrderCancelled {
            store_id,
            store_order_id,
        }),
        _ => OrderEvent::Completed(OrderCompleted {
            store_id,
            store_order_id,
            rack_time_secs: duration(&slots, RACK_TIME_SECS, "rack_time_secs")
                .map_err(|e| e.to_string())?,
            order_delivery_time_secs: duration(
                &slots,
                ORDER_DELIVERY_TIME_SECS,
                "order_delivery_time_secs",
            )
            .map_err(|e| e.to_string())?,
        }),
    })
}

/// SplitMix64: a small seeded generator, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Mostly small, sometimes extreme, sometimes negative.
    fn int(&mut self) -> i32 {
        match self.below(10) {
            0 => [0, -1, i32::MIN, i32::MAX, 63, 64, -65][self.below(7) as usize],
            1..=2 => self.next() as i32,
            _ => self.below(3000) as i32,
        }
    }
    fn long(&mut self) -> i64 {
        match self.below(4) {
            0 => [0, -1, i64::MIN, i64::MAX][self.below(4) as usize],
            _ => self.next() as i64 >> self.below(64),
        }
    }
    fn string(&mut self) -> String {
        const CHARS: [char; 10] = ['a', 'Z', '0', ' ', 'é', 'ß', '€', '☕', '𝄞', '\u{0}'];
        (0..self.below(12))
            .map(|_| CHARS[self.below(10) as usize])
            .collect()
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A random Avro type, with what is needed to write its schema and generate values.
#[derive(Debug, Clone)]
enum T {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Fixed(String, usize),
    Enum(String, usize),
    Array(Box<T>),
    Map(Box<T>),
    Union(Vec<T>),
    Record(String, Vec<(String, T)>),
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    DecimalBytes,
    DecimalFixed(String),
    Uuid,
    Duration(String),
}

fn gen_type(rng: &mut Rng, depth: u32, names: &mut u32) -> T {
    fn name(names: &mut u32, prefix: &str) -> String {
        *names += 1;
        format!("{prefix}{names}")
    }
    let leaf = depth >= 3;
    match rng.below(if leaf { 18 } else { 23 }) {
        0 => T::Null,
        1 => T::Bool,
        2 => T::Int,
        3 => T::Long,
        4 => T::Float,
        5 => T::Double,
        6 => T::Bytes,
        7 => T::Str,
        8 => T::Fixed(name(names, "F"), rng.below(6) as usize),
        9 => T::Enum(name(names, "E"), 1 + rng.below(5) as usize),
        10 => T::Date,
        11 => T::TimeMillis,
        12 => T::TimeMicros,
        13 => T::TimestampMillis,
        14 => T::TimestampMicros,
        15 => T::DecimalBytes,
        16 => {
            if rng.chance(50) {
                T::DecimalFixed(name(names, "D"))
            } else {
                T::Uuid
            }
        }
        17 => T::Duration(name(names, "Dur")),
        18 | 19 => T::Array(Box::new(gen_type(rng, depth + 1, names))),
        20 => T::Map(Box::new(gen_type(rng, depth + 1, names))),
        21 => {
            // distinct unnamed kinds, no logical types, plus maybe one named type
            let mut pool = vec![
                T::Null,
                T::Int,
                T::Long,
                T::Str,
                T::Double,
                T::Bool,
                T::Bytes,
            ];
            let mut branches = Vec::new();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(pool.len() as u64) as usize;
                branches.push(pool.swap_remove(i));
            }
            if rng.chance(50) {
                let fields = gen_fields(rng, depth + 1, names);
                branches.push(T::Record(name(names, "R"), fields));
            }
            T::Union(branches)
        }
        _ => {
            let fields = gen_fields(rng, depth + 1, names);
            T::Record(name(names, "R"), fields)
        }
    }
}

fn gen_fields(rng: &mut Rng, depth: u32, names: &mut u32) -> Vec<(String, T)> {
    (0..rng.below(4))
        .map(|i| (format!("f{i}"), gen_type(rng, depth, names)))
        .collect()
}

fn type_json(t: &T) -> serde_json::Value {
    match t {
        T::Null => json!("null"),
        T::Bool => json!("boolean"),
        T::Int => json!("int"),
        T::Long => json!("long"),
        T::Float => json!("float"),
        T::Double => json!("double"),
        T::Bytes => json!("bytes"),
        T::Str => json!("string"),
        T::Fixed(n, size) => json!({"type": "fixed", "name": n, "size": size}),
        T::Enum(n, k) => {
            json!({"type": "enum", "name": n, "symbols": (0..*k).map(|i| format!("S{i}")).collect::<Vec<_>>()})
        }
        T::Array(items) => json!({"type": "array", "items": type_json(items)}),
        T::Map(values) => json!({"type": "map", "values": type_json(values)}),
        T::Union(branches) => serde_json::Value::Array(branches.iter().map(type_json).collect()),
        T::Record(n, fields) => json!({"type": "record", "name": n, "fields":
            fields.iter().map(|(f, t)| json!({"name": f, "type": type_json(t)})).collect::<Vec<_>>()}),
        T::Date => json!({"type": "int", "logicalType": "date"}),
        T::TimeMillis => json!({"type": "int", "logicalType": "time-millis"}),
        T::TimeMicros => json!({"type": "long", "logicalType": "time-micros"}),
        T::TimestampMillis => json!({"type": "long", "logicalType": "timestamp-millis"}),
        T::TimestampMicros => json!({"type": "long", "logicalType": "timestamp-micros"}),
        T::DecimalBytes => {
            json!({"type": "bytes", "logicalType": "decimal", "precision": 30, "scale": 2})
        }
        T::DecimalFixed(n) => {
            json!({"type": "fixed", "name": n, "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4})
        }
        T::Uuid => json!({"type": "string", "logicalType": "uuid"}),
        T::Duration(n) => {
            json!({"type": "fixed", "name": n, "size": 12, "logicalType": "duration"})
        }
    }
}

fn gen_value(rng: &mut Rng, t: &T) -> Value {
    match t {
        T::Null => Value::Null,
        T::Bool => Value::Boolean(rng.chance(50)),
        T::Int => Value::Int(rng.int()),
        T::Long => Value::Long(rng.long()),
        T::Float => Value::Float(rng.int() as f32 / 7.0),
        T::Double => Value::Double(rng.long() as f64 / 3.0),
        T::Bytes => {
            let n = rng.below(20) as usize;
            Value::Bytes(rng.bytes(n))
        }
        T::Str => Value::String(rng.string()),
        T::Fixed(_, size) => Value::Fixed(*size, rng.bytes(*size)),
        T::Enum(_, k) => {
            let i = rng.below(*k as u64) as u32;
            Value::Enum(i, format!("S{i}"))
        }
        T::Array(items) => {
            // sometimes longer than 64 items, so counts take two varint bytes
            let n = if rng.chance(5) { 70 } else { rng.below(5) };
            Value::Array((0..n).map(|_| gen_value(rng, items)).collect())
        }
        T::Map(values) => Value::Map(
            (0..rng.below(4))
                .map(|i| (format!("{}{i}", rng.string()), gen_value(rng, values)))
                .collect(),
        ),
        T::Union(branches) => {
            let i = rng.below(branches.len() as u64) as usize;
            Value::Union(i as u32, Box::new(gen_value(rng, &branches[i])))
        }
        T::Record(_, fields) => Value::Record(
            fields
                .iter()
                .map(|(f, t)| (f.clone(), gen_value(rng, t)))
                .collect(),
        ),
        T::Date => Value::Date(rng.int()),
        T::TimeMillis => Value::TimeMillis(rng.int()),
        T::TimeMicros => Value::TimeMicros(rng.long()),
        T::TimestampMillis => Value::TimestampMillis(rng.long()),
        T::TimestampMicros => Value::TimestampMicros(rng.long()),
        T::DecimalBytes => {
            let n = 1 + rng.below(8) as usize;
            Value::Decimal(Decimal::from(rng.bytes(n)))
        }
        T::DecimalFixed(_) => {
            let n = 1 + rng.below(7) as usize;
            Value::Decimal(Decimal::from(rng.bytes(n)))
        }
        T::Uuid => Value::Uuid(apache_avro::Uuid::from_u128(
            u128::from(rng.next()) << 64 | u128::from(rng.next()),
        )),
        T::Duration(_) => Value::Duration(apache_avro::Duration::new(
            apache_avro::Months::new(rng.next() as u32),
            apache_avro::Days::new(rng.next() as u32),
            apache_avro::Millis::new(rng.next() as u32),
        )),
    }
}

/// How a random writer schema represents one of the reader's fields.
#[derive(Debug, Clone, Copy)]
enum Repr {
    Absent,
    Int,
    NullFirst,
    NullSecond,
}

fn repr_json(r: Repr) -> serde_json::Value {
    match r {
        Repr::Absent => serde_json::Value::Null,
        Repr::Int => json!("int"),
        Repr::NullFirst => json!(["null", "int"]),
        Repr::NullSecond => json!(["int", "null"]),
    }
}

fn repr_value(rng: &mut Rng, r: Repr, v: i32) -> Value {
    let null = rng.chance(15);
    match r {
        Repr::Absent => Value::Null,
        Repr::Int => Value::Int(v),
        Repr::NullFirst if null => Value::Union(0, Box::new(Value::Null)),
        Repr::NullFirst => Value::Union(1, Box::new(Value::Int(v))),
        Repr::NullSecond if null => Value::Union(1, Box::new(Value::Null)),
        Repr::NullSecond => Value::Union(0, Box::new(Value::Int(v))),
    }
}

#[test]
fn fast_path_equals_apache_avro_on_random_schemas_and_records() {
    let mut rng = Rng(0x5eed_2024);
    let mut compared = 0;
    let mut ok = 0;
    for schema_no in 0..400u32 {
        let reader = [ORDERS, COMPLETED, CANCELLED][rng.below(3) as usize];
        let kind = [
            InputKind::Orders,
            InputKind::Completed,
            InputKind::Cancelled,
        ][reader];
        let record_name = READERS[reader].name;
        // our fields, each int or nullable (mostly int); the durations also absent sometimes
        let mut ours: Vec<(&str, Repr)> =
            vec![("store_id", Repr::Int), ("store_order_id", Repr::Int)];
        if rng.chance(10) {
            ours[0].1 = Repr::NullSecond;
        }
        if reader == COMPLETED {
            for f in ["rack_time_secs", "order_delivery_time_secs"] {
                let r = [
                    Repr::Absent,
                    Repr::Int,
                    Repr::Int,
                    Repr::NullFirst,
                    Repr::NullSecond,
                ][rng.below(5) as usize];
                ours.push((f, r));
            }
        }
        ours.retain(|(_, r)| !matches!(r, Repr::Absent));
        // shuffle our fields and interleave random extra fields
        for i in (1..ours.len()).rev() {
            ours.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let mut names = 0;
        enum F<'a> {
            Ours(&'a str, Repr),
            Extra(String, T),
        }
        let mut fields: Vec<F> = Vec::new();
        for (i, (name, repr)) in ours.iter().enumerate() {
            for j in 0..rng.below(3) {
                fields.push(F::Extra(
                    format!("x{i}_{j}"),
                    gen_type(&mut rng, 0, &mut names),
                ));
            }
            fields.push(F::Ours(name, *repr));
        }
        for j in 0..rng.below(3) {
            fields.push(F::Extra(
                format!("tail{j}"),
                gen_type(&mut rng, 0, &mut names),
            ));
        }
        let schema_json = json!({
            "type": "record", "name": record_name, "namespace": "random",
            "fields": fields.iter().map(|f| match f {
                F::Ours(n, r) => json!({"name": n, "type": repr_json(*r)}),
                F::Extra(n, t) => json!({"name": n, "type": type_json(t)}),
            }).collect::<Vec<_>>()
        });
        let text = schema_json.to_string();
        let id = 1000 + schema_no;
        let w = writer(id, &text);
        let mut d = Decoders::new();
        d.learn(id, &w);
        for _ in 0..25 {
            let values: Vec<(&str, Value)> = fields
                .iter()
                .map(|f| match f {
                    F::Ours(n, r) => {
                        let v = match *n {
                            "store_id" if rng.chance(90) => 1 + rng.below(100) as i32,
                            "rack_time_secs" | "order_delivery_time_secs" if rng.chance(90) => {
                                rng.below(3000) as i32
                            }
                            _ => rng.int(),
                        };
                        (*n, repr_value(&mut rng, *r, v))
                    }
                    F::Extra(n, t) => (n.as_str(), gen_value(&mut rng, t)),
                })
                .collect();
            let body = avro(&text, values);
            let fast = d.decode(kind, &framed(id, &body));
            let slow = reference(reader, &w, &body);
            match (&fast, &slow) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b, "schema {text}");
                    ok += 1;
                }
                (Err(_), Err(_)) => {}
                _ => panic!("fast {fast:?} vs apache-avro {slow:?}\nschema {text}\nbody {body:?}"),
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 400 * 25);
    assert!(
        ok > compared * 3 / 5,
        "too few valid records to be meaningful: {ok}"
    );
}

#[test]
fn fast_path_equals_apache_avro_on_random_upstream_records() {
    let mut rng = Rng(42);
    let d = decoders(&[
        (1, UPSTREAM_PIZZA_ORDERS),
        (2, UPSTREAM_PIZZA_ORDERS_COMPLETED),
        (3, UPSTREAM_PIZZA_ORDERS_CANCELLED),
    ]);
    let ws = [
        writer(1, UPSTREAM_PIZZA_ORDERS),
        writer(2, UPSTREAM_PIZZA_ORDERS_COMPLETED),
        writer(3, UPSTREAM_PIZZA_ORDERS_CANCELLED),
    ];
    let categories = ["pizza", "calzone", "salad", "dessert", "wings"];
    let mut buf = Vec::new();
    for _ in 0..5000 {
        let lines: Vec<OrderLine> = (0..rng.below(6))
            .map(|_| OrderLine {
                product_id: rng.int(),
                category: categories[rng.below(5) as usize],
                quantity: rng.int(),
                unit_price: rng.long() as f64,
                net_price: -1.5,
            })
            .collect();
        let status = rng.string();
        let (kind, reader) = [
            (InputKind::Orders, ORDERS),
            (InputKind::Completed, COMPLETED),
            (InputKind::Cancelled, CANCELLED),
        ][rng.below(3) as usize];
        buf.clear();
        let (store_id, store_order_id, date) = (rng.int(), rng.int(), rng.int());
        match kind {
            InputKind::Orders => PizzaOrder {
                store_id,
                store_order_id,
                coupon_code: rng.int(),
                date,
                status: &status,
                order_lines: &lines,
            }
            .write_framed(1, &mut buf),
            InputKind::Completed => PizzaOrderCompleted {
                store_id,
                store_order_id,
                date,
                status: &status,
                rack_time_secs: rng.int(),
                order_delivery_time_secs: rng.int(),
            }
            .write_framed(2, &mut buf),
            InputKind::Cancelled => PizzaOrderCancelled {
                store_id,
                store_order_id,
                date,
                status: &status,
            }
            .write_framed(3, &mut buf),
        }
        let fast = d.decode(kind, &buf);
        let slow = reference(reader, &ws[reader], &buf[5..]);
        assert_eq!(fast.map_err(|e| e.to_string()), slow);
    }
}

// ---------------------------------------------------------------------------------------------
// poison pills

/// The upstream completed body with `status` replaced by raw `status` bytes.
fn completed_body_with_status(status: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [3i64, 7, 18_500] {
        put_long(&mut b, v);
    }
    put_long(&mut b, status.len() as i64);
    b.extend_from_slice(status);
    for v in [60i64, 600] {
        put_long(&mut b, v);
    }
    b
}

#[test]
fn a_skipped_string_must_be_utf8() {
    let d = decoders(&[(2, UPSTREAM_PIZZA_ORDERS_COMPLETED)]);
    assert_eq!(
        d.decode(
            InputKind::Completed,
            &framed(2, &completed_body_with_status("prêt 🍕".as_bytes()))
        ),
        Ok(completed(3, 7, Some(60), Some(600)))
    );
    for (bytes, valid_up_to) in [
        (&b"\xff"[..], 0),
        (b"ok\xc3", 2),           // a sequence cut short
        (b"\xed\xa0\x80", 0),     // a UTF-16 surrogate
        (b"done\xc0\xafyes", 4),  // an overlong encoding
        (b"\xf4\x90\x80\x80", 0), // beyond U+10FFFF
    ] {
        let err = d
            .decode(
                InputKind::Completed,
                &framed(2, &completed_body_with_status(bytes)),
            )
            .unwrap_err();
        assert_eq!(err.reason().as_str(), "malformed");
        assert_eq!(
            malformed(err),
            ("status".to_string(), Problem::InvalidUtf8 { valid_up_to }),
            "{bytes:?}"
        );
    }
    // apache-avro agrees that such a record is not valid Avro
    let schema = Schema::parse_str(UPSTREAM_PIZZA_ORDERS_COMPLETED).unwrap();
    let body = completed_body_with_status(b"\xff");
    assert!(apache_avro::from_avro_datum(&schema, &mut &body[..], None).is_err());
}

#[test]
fn strings_inside_skipped_values_and_map_keys_must_be_utf8_but_bytes_need_not() {
    let text = completed_with(
        r#"{"name":"tags","type":{"type":"map","values":"bytes"}},
           {"name":"blob","type":"bytes"},
           {"name":"lines","type":{"type":"array","items":{"type":"record","name":"l","fields":[{"name":"c","type":"string"}]}}},"#,
        "",
    );
    let d = decoders(&[(5, &text)]);
    let body = |key: &[u8], blob: &[u8], line: &[u8]| {
        let mut b = Vec::new();
        put_long(&mut b, 1);
        put_long(&mut b, key.len() as i64);
        b.extend_from_slice(key);
        put_long(&mut b, blob.len() as i64);
        b.extend_from_slice(blob);
        put_long(&mut b, 0);
        put_long(&mut b, blob.len() as i64);
        b.extend_from_slice(blob);
        put_long(&mut b, 1);
        put_long(&mut b, line.len() as i64);
        b.extend_from_slice(line);
        put_long(&mut b, 0);
        put_long(&mut b, 4);
        put_long(&mut b, 5);
        b
    };
    assert_eq!(
        d.decode(
            InputKind::Completed,
            &framed(5, &body(b"k", b"\xff\xfe", b"x"))
        ),
        Ok(completed(4, 5, None, None))
    );
    let (field, problem) = malformed(
        d.decode(InputKind::Completed, &framed(5, &body(b"\xff", b"", b"x")))
            .unwrap_err(),
    );
    assert_eq!(
        (field.as_str(), problem),
        ("tags", Problem::InvalidUtf8 { valid_up_to: 0 })
    );
    let (field, problem) = malformed(
        d.decode(InputKind::Completed, &framed(5, &body(b"k", b"", b"a\x80")))
            .unwrap_err(),
    );
    assert_eq!(
        (field.as_str(), problem),
        ("lines", Problem::InvalidUtf8 { valid_up_to: 1 })
    );
}

#[test]
fn zero_and_negative_schema_ids_are_framing_errors() {
    let d = decoders(&[(2, UPSTREAM_PIZZA_ORDERS_COMPLETED)]);
    let body = upstream_completed_body(1, 2, 3, 4);
    // the id is a big-endian signed 32-bit integer: 0, -1 and i32::MIN are never registry ids
    for id in [0u32, u32::MAX, 0x8000_0000] {
        let err = d
            .decode(InputKind::Completed, &framed(id, &body))
            .unwrap_err();
        assert_eq!(
            err,
            DecodeError::Framing(FramingError::InvalidSchemaId { id }),
            "{id:#x}"
        );
        assert_eq!(err.reason().as_str(), "framing");
    }
}

#[test]
fn every_kind_of_poison_pill_is_a_permanent_error() {
    let d = decoders(&[
        (1, UPSTREAM_PIZZA_ORDERS),
        (2, UPSTREAM_PIZZA_ORDERS_COMPLETED),
        (3, UPSTREAM_PIZZA_ORDERS_CANCELLED),
    ]);
    let good = framed(2, &upstream_completed_body(3, 7, 60, 600));
    let mut huge_array = framed(1, &[]);
    for v in [1i64, 2, 3, 4, 0, i64::MAX / 2] {
        put_long(&mut huge_array, v);
    }
    let out_of_range = {
        let mut b = Vec::new();
        for v in [3i64, i64::from(i32::MAX) + 1, 18_500, 0, 60, 600] {
            put_long(&mut b, v);
        }
        framed(2, &b)
    };
    // (what, payload, reason), all on the completed topic but the huge array (an order)
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "framing"),
        ("garbage", b"{\"store_id\": 3}".to_vec(), "framing"),
        ("wrong magic", [&[1u8][..], &good[1..]].concat(), "framing"),
        ("zero id", [&[0u8; 5][..], &good[5..]].concat(), "framing"),
        (
            "negative id",
            [&[0u8, 0xff, 0xff, 0xff, 0xfe][..], &good[5..]].concat(),
            "framing",
        ),
        ("truncated", good[..good.len() - 1].to_vec(), "malformed"),
        ("trailing", [&good[..], &[0]].concat(), "malformed"),
        ("huge array", huge_array, "malformed"),
        (
            "invalid utf-8",
            framed(2, &completed_body_with_status(b"\xc3\x28")),
            "malformed",
        ),
        ("int out of range", out_of_range, "malformed"),
        (
            "negative store",
            framed(2, &upstream_completed_body(-3, 7, 60, 600)),
            "invalid_value",
        ),
        (
            "negative duration",
            framed(2, &upstream_completed_body(3, 7, -60, 600)),
            "invalid_value",
        ),
    ];
    assert!(d.decode(InputKind::Completed, &good).is_ok());
    for (what, payload, reason) in &cases {
        let kind = match *what {
            "huge array" => InputKind::Orders,
            _ => InputKind::Completed,
        };
        match d.decode(kind, payload) {
            Err(e) => {
                assert_eq!(e.reason().as_str(), *reason, "{what}: {e}");
                assert!(!e.is_unknown_schema(), "{what}");
            }
            Ok(v) => panic!("{what} decoded as {v:?}"),
        }
    }
    // the completed schema's id on the orders and cancelled topics: incompatible, named
    for kind in [InputKind::Orders, InputKind::Cancelled] {
        let err = d.decode(kind, &good).unwrap_err();
        assert_eq!(err.reason().as_str(), "incompatible_schema", "{err}");
    }
    // every reason is a label the dead-letter metric knows
    let labels: Vec<&str> = crate::metrics::DeadLetterReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect();
    let missing = DecodeError::SchemaUnavailable {
        schema_id: 9,
        reason: Arc::from("not found"),
    };
    for reason in cases
        .iter()
        .map(|c| c.2)
        .chain(["incompatible_schema", missing.reason().as_str()])
    {
        assert!(labels.contains(&reason), "{reason} is not in {labels:?}");
    }
}

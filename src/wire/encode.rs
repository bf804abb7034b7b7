//! Encoders, hand-written Avro binary into a caller's buffer: the `WaitTimes` value the service
//! publishes, and the three input records with the upstream (Datagen) writer schemas, for the
//! load generator and tests.

use crate::domain::{Basis, OrderId, StoreId};
use crate::features::FeatureWindow;

use super::framing::write_header;

/// Appends an Avro `long` (zig-zag varint).
#[inline]
pub fn put_long(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push(z as u8 | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// Appends an Avro `int`.
#[inline]
pub fn put_int(buf: &mut Vec<u8>, v: i32) {
    put_long(buf, i64::from(v));
}

/// Appends an Avro `string` (or `bytes`): length, then the bytes.
#[inline]
pub fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_long(buf, s.len() as i64);
    buf.extend_from_slice(s.as_bytes());
}

/// Appends an Avro `double`.
#[inline]
pub fn put_double(buf: &mut Vec<u8>, v: f64) {
    buf.extend_from_slice(&v.to_le_bytes());
}

/// Appends a Confluent-framed `WaitTimes` value (`store_id` int, `wait_time` int minutes) to
/// `buf`: reuse one buffer across calls to encode without allocating.
#[inline]
pub fn encode_wait_times_into(
    buf: &mut Vec<u8>,
    schema_id: u32,
    store_id: StoreId,
    wait_time: i32,
) {
    write_header(buf, schema_id);
    put_int(buf, store_id);
    put_int(buf, wait_time);
}

/// A Confluent-framed `WaitTimes` value (`store_id` int, `wait_time` int minutes).
pub fn encode_wait_times(schema_id: u32, store_id: StoreId, wait_time: i32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(15);
    encode_wait_times_into(&mut buf, schema_id, store_id, wait_time);
    buf
}

/// Appends a Confluent-framed `WaitTimeFeatures` value (`schemas/waittimes_features.avsc`,
/// field order) to `buf`.
pub fn encode_features_into(buf: &mut Vec<u8>, schema_id: u32, w: &FeatureWindow) {
    let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    let opt_double = |buf: &mut Vec<u8>, v: Option<f64>| match v {
        None => put_long(buf, 0),
        Some(v) => {
            put_long(buf, 1);
            put_double(buf, v);
        }
    };
    write_header(buf, schema_id);
    put_int(buf, w.store_id);
    put_long(buf, w.window_start_ms);
    put_long(buf, w.window_end_ms);
    put_int(buf, count(w.orders_placed));
    put_int(buf, count(w.orders_completed));
    put_int(buf, count(w.orders_cancelled));
    put_int(buf, count(w.observations_measured));
    put_int(buf, count(w.observations_reported));
    opt_double(buf, w.wait_mean_minutes);
    opt_double(buf, w.wait_p50_minutes);
    opt_double(buf, w.wait_p90_minutes);
    put_int(buf, count(w.open_orders_at_end));
    match w.wait_time_minutes_at_end {
        None => put_long(buf, 0),
        Some(m) => {
            put_long(buf, 1);
            put_int(buf, m);
        }
    }
    // Enum symbols in schema order: LIVE, PRIOR, NONE.
    put_int(
        buf,
        match w.basis_at_end {
            Basis::Live => 0,
            Basis::Prior => 1,
            Basis::None => 2,
        },
    );
    put_int(buf, i32::from(w.hour_of_day));
    put_int(buf, i32::from(w.day_of_week));
}

/// A record written with one of the upstream Datagen schemas.
pub trait UpstreamRecord {
    /// The upstream writer schema's text (what Datagen registers).
    const SCHEMA: &'static str;

    /// Appends the Avro binary body.
    fn write_body(&self, buf: &mut Vec<u8>);

    /// Appends the Confluent-framed value: header for `schema_id`, then the body.
    fn write_framed(&self, schema_id: u32, buf: &mut Vec<u8>) {
        write_header(buf, schema_id);
        self.write_body(buf);
    }
}

/// One line of a `pizza_orders` record (`pizza_orders.order_line`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrderLine<'a> {
    pub product_id: i32,
    pub category: &'a str,
    pub quantity: i32,
    pub unit_price: f64,
    pub net_price: f64,
}

/// A `pizza_orders` record, upstream field order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PizzaOrder<'a> {
    pub store_id: StoreId,
    pub store_order_id: OrderId,
    pub coupon_code: i32,
    /// Days since the Unix epoch (Avro `date`).
    pub date: i32,
    pub status: &'a str,
    pub order_lines: &'a [OrderLine<'a>],
}

/// A `pizza_orders_completed` record, upstream field order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PizzaOrderCompleted<'a> {
    pub store_id: StoreId,
    pub store_order_id: OrderId,
    /// Days since the Unix epoch (Avro `date`).
    pub date: i32,
    pub status: &'a str,
    pub rack_time_secs: i32,
    pub order_delivery_time_secs: i32,
}

/// A `pizza_orders_cancelled` record, upstream field order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PizzaOrderCancelled<'a> {
    pub store_id: StoreId,
    pub store_order_id: OrderId,
    /// Days since the Unix epoch (Avro `date`).
    pub date: i32,
    pub status: &'a str,
}

impl UpstreamRecord for PizzaOrder<'_> {
    const SCHEMA: &'static str = super::UPSTREAM_PIZZA_ORDERS;

    fn write_body(&self, buf: &mut Vec<u8>) {
        put_int(buf, self.store_id);
        put_int(buf, self.store_order_id);
        put_int(buf, self.coupon_code);
        put_int(buf, self.date);
        put_str(buf, self.status);
        if !self.order_lines.is_empty() {
            put_long(buf, self.order_lines.len() as i64);
            for line in self.order_lines {
                put_int(buf, line.product_id);
                put_str(buf, line.category);
                put_int(buf, line.quantity);
                put_double(buf, line.unit_price);
                put_double(buf, line.net_price);
            }
        }
        put_long(buf, 0);
    }
}

impl UpstreamRecord for PizzaOrderCompleted<'_> {
    const SCHEMA: &'static str = super::UPSTREAM_PIZZA_ORDERS_COMPLETED;

    fn write_body(&self, buf: &mut Vec<u8>) {
        put_int(buf, self.store_id);
        put_int(buf, self.store_order_id);
        put_int(buf, self.date);
        put_str(buf, self.status);
        put_int(buf, self.rack_time_secs);
        put_int(buf, self.order_delivery_time_secs);
    }
}

impl UpstreamRecord for PizzaOrderCancelled<'_> {
    const SCHEMA: &'static str = super::UPSTREAM_PIZZA_ORDERS_CANCELLED;

    fn write_body(&self, buf: &mut Vec<u8>) {
        put_int(buf, self.store_id);
        put_int(buf, self.store_order_id);
        put_int(buf, self.date);
        put_str(buf, self.status);
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::types::Value;

    use super::*;
    use crate::wire::framing;

    fn avro_body(schema: &str, record: &impl UpstreamRecord) -> Value {
        let schema = apache_avro::Schema::parse_str(schema).unwrap();
        let mut buf = Vec::new();
        record.write_body(&mut buf);
        let mut slice = &buf[..];
        let v = apache_avro::from_avro_datum(&schema, &mut slice, None).unwrap();
        assert!(slice.is_empty(), "apache-avro left bytes unread");
        v
    }

    fn fields(v: Value) -> Vec<(String, Value)> {
        match v {
            Value::Record(f) => f,
            other => panic!("not a record: {other:?}"),
        }
    }

    #[test]
    fn varints_match_the_avro_spec() {
        let cases: [(i64, &[u8]); 7] = [
            (0, &[0]),
            (-1, &[1]),
            (1, &[2]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (v, bytes) in cases {
            let mut buf = Vec::new();
            put_long(&mut buf, v);
            assert_eq!(buf, bytes, "{v}");
        }
    }

    #[test]
    fn pizza_order_is_what_apache_avro_reads_with_the_upstream_schema() {
        let lines = [
            OrderLine {
                product_id: 66,
                category: "calzone",
                quantity: 4,
                unit_price: 18.78,
                net_price: 75.12,
            },
            OrderLine {
                product_id: 8,
                category: "dessert",
                quantity: 3,
                unit_price: 23.33,
                net_price: 69.99,
            },
        ];
        let order = PizzaOrder {
            store_id: 7,
            store_order_id: 1042,
            coupon_code: 1500,
            date: 18_500,
            status: "accepted",
            order_lines: &lines,
        };
        let f = fields(avro_body(PizzaOrder::SCHEMA, &order));
        assert_eq!(f[0], ("store_id".into(), Value::Int(7)));
        assert_eq!(f[1], ("store_order_id".into(), Value::Int(1042)));
        assert_eq!(f[2], ("coupon_code".into(), Value::Int(1500)));
        assert_eq!(f[3], ("date".into(), Value::Date(18_500)));
        assert_eq!(f[4], ("status".into(), Value::String("accepted".into())));
        let Value::Array(items) = &f[5].1 else {
            panic!()
        };
        assert_eq!(items.len(), 2);
        let line = fields(items[1].clone());
        assert_eq!(
            line[1],
            ("category".into(), Value::String("dessert".into()))
        );
        assert_eq!(line[4], ("net_price".into(), Value::Double(69.99)));

        let empty = PizzaOrder {
            order_lines: &[],
            ..order
        };
        let f = fields(avro_body(PizzaOrder::SCHEMA, &empty));
        assert_eq!(f[5].1, Value::Array(vec![]));
    }

    #[test]
    fn completed_and_cancelled_are_what_apache_avro_reads() {
        let done = PizzaOrderCompleted {
            store_id: 3,
            store_order_id: 2000,
            date: 18_001,
            status: "completed",
            rack_time_secs: 130,
            order_delivery_time_secs: 1999,
        };
        let f = fields(avro_body(PizzaOrderCompleted::SCHEMA, &done));
        assert_eq!(f[4], ("rack_time_secs".into(), Value::Int(130)));
        assert_eq!(f[5], ("order_delivery_time_secs".into(), Value::Int(1999)));
        let gone = PizzaOrderCancelled {
            store_id: 9,
            store_order_id: -5,
            date: 0,
            status: "cancelled",
        };
        let f = fields(avro_body(PizzaOrderCancelled::SCHEMA, &gone));
        assert_eq!(f[1], ("store_order_id".into(), Value::Int(-5)));
        assert_eq!(f[3], ("status".into(), Value::String("cancelled".into())));
    }

    #[test]
    fn framed_records_carry_the_schema_id() {
        let mut buf = Vec::new();
        let gone = PizzaOrderCancelled {
            store_id: 1,
            store_order_id: 1001,
            date: 18_000,
            status: "cancelled",
        };
        gone.write_framed(77, &mut buf);
        let f = framing::parse(&buf).unwrap();
        assert_eq!(f.schema_id, 77);
        let mut body = Vec::new();
        gone.write_body(&mut body);
        assert_eq!(f.body, &body[..]);
    }

    #[test]
    fn features_are_what_apache_avro_reads() {
        let schema = apache_avro::Schema::parse_str(crate::wire::FEATURES_SCHEMA).unwrap();
        let full = FeatureWindow {
            store_id: 3,
            window_start_ms: 1_796_040_000_000,
            window_end_ms: 1_796_040_300_000,
            orders_placed: 7,
            orders_completed: 5,
            orders_cancelled: 1,
            observations_measured: 4,
            observations_reported: 1,
            wait_mean_minutes: Some(21.5),
            wait_p50_minutes: Some(20.0),
            wait_p90_minutes: Some(30.25),
            open_orders_at_end: 9,
            wait_time_minutes_at_end: Some(22),
            basis_at_end: Basis::Live,
            hour_of_day: 12,
            day_of_week: 1,
        };
        let empty = FeatureWindow {
            orders_placed: 0,
            orders_completed: 0,
            orders_cancelled: 0,
            observations_measured: 0,
            observations_reported: 0,
            wait_mean_minutes: None,
            wait_p50_minutes: None,
            wait_p90_minutes: None,
            wait_time_minutes_at_end: None,
            basis_at_end: Basis::None,
            ..full.clone()
        };
        let decode = |w: &FeatureWindow| {
            let mut buf = vec![0xaa];
            encode_features_into(&mut buf, 12, w);
            let f = framing::parse(&buf[1..]).unwrap();
            assert_eq!(f.schema_id, 12);
            let mut body = f.body;
            let v = apache_avro::from_avro_datum(&schema, &mut body, None).unwrap();
            assert!(body.is_empty(), "apache-avro left bytes unread");
            fields(v)
        };
        let f = decode(&full);
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.len(), 16);
        assert_eq!(f[0].1, Value::Int(3));
        assert_eq!(f[1].1, Value::TimestampMillis(1_796_040_000_000));
        assert_eq!(f[2].1, Value::TimestampMillis(1_796_040_300_000));
        assert_eq!(
            f[3..8].iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(),
            [7, 5, 1, 4, 1].map(Value::Int)
        );
        assert_eq!(f[8].1, Value::Union(1, Box::new(Value::Double(21.5))));
        assert_eq!(f[10].1, Value::Union(1, Box::new(Value::Double(30.25))));
        assert_eq!(f[11].1, Value::Int(9));
        assert_eq!(f[12].1, Value::Union(1, Box::new(Value::Int(22))));
        assert_eq!(f[13].1, Value::Enum(0, "LIVE".into()));
        assert_eq!((&f[14].1, &f[15].1), (&Value::Int(12), &Value::Int(1)));
        let f = decode(&empty);
        assert_eq!(f[9].1, Value::Union(0, Box::new(Value::Null)));
        assert_eq!(f[12].1, Value::Union(0, Box::new(Value::Null)));
        assert_eq!(f[13].1, Value::Enum(2, "NONE".into()));
        let prior = decode(&FeatureWindow {
            basis_at_end: Basis::Prior,
            ..empty
        });
        assert_eq!(prior[13].1, Value::Enum(1, "PRIOR".into()));
    }

    #[test]
    fn wait_times_is_what_apache_avro_reads() {
        let schema = apache_avro::Schema::parse_str(crate::wire::WAIT_TIMES_SCHEMA).unwrap();
        for (store, minutes) in [(1, 15), (10, 6), (i32::MAX, 0), (5, i32::MAX)] {
            let v = encode_wait_times(9, store, minutes);
            let f = framing::parse(&v).unwrap();
            assert_eq!(f.schema_id, 9);
            let mut body = f.body;
            let decoded = apache_avro::from_avro_datum(&schema, &mut body, None).unwrap();
            assert_eq!(
                decoded,
                Value::Record(vec![
                    ("store_id".into(), Value::Int(store)),
                    ("wait_time".into(), Value::Int(minutes)),
                ])
            );
            let mut reused = vec![0xaa];
            encode_wait_times_into(&mut reused, 9, store, minutes);
            assert_eq!(&reused[1..], &v[..]);
        }
    }
}

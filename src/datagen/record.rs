//! The three upstream records as the Datagen templates define them (every field, not just the
//! ones the service reads), and the generation rules read from the templates' `arg.properties`.
//!
//! The rules are parsed from the same schema text that gets registered, so the workshop replica
//! cannot drift from the templates it imitates.

use std::sync::Arc;

use rand::Rng;
use serde_json::Value as Json;

use crate::domain::InputKind;
use crate::wire::{self, UpstreamRecord};

/// The `status` each template writes (each template has exactly one option).
pub const STATUS_ACCEPTED: &str = "accepted";
pub const STATUS_COMPLETED: &str = "completed";
pub const STATUS_CANCELLED: &str = "cancelled";

/// One entry of `order_lines`, as the template's options spell it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct OrderLine {
    pub product_id: i32,
    pub category: String,
    pub quantity: i32,
    pub unit_price: f64,
    pub net_price: f64,
}

/// `pizza_orders`.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub store_id: i32,
    pub store_order_id: i32,
    pub coupon_code: i32,
    /// Days since the Unix epoch (Avro `date`).
    pub date: i32,
    pub status: Arc<str>,
    pub order_lines: Vec<Arc<OrderLine>>,
}

/// `pizza_orders_completed`.
#[derive(Debug, Clone, PartialEq)]
pub struct Completed {
    pub store_id: i32,
    pub store_order_id: i32,
    pub date: i32,
    pub status: Arc<str>,
    pub rack_time_secs: i32,
    pub order_delivery_time_secs: i32,
}

/// `pizza_orders_cancelled`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cancelled {
    pub store_id: i32,
    pub store_order_id: i32,
    pub date: i32,
    pub status: Arc<str>,
}

/// One generated record of any of the three topics.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Order(Order),
    Completed(Completed),
    Cancelled(Cancelled),
}

impl Record {
    pub fn kind(&self) -> InputKind {
        match self {
            Record::Order(_) => InputKind::Orders,
            Record::Completed(_) => InputKind::Completed,
            Record::Cancelled(_) => InputKind::Cancelled,
        }
    }

    pub fn store_id(&self) -> i32 {
        match self {
            Record::Order(r) => r.store_id,
            Record::Completed(r) => r.store_id,
            Record::Cancelled(r) => r.store_id,
        }
    }

    pub fn store_order_id(&self) -> i32 {
        match self {
            Record::Order(r) => r.store_order_id,
            Record::Completed(r) => r.store_order_id,
            Record::Cancelled(r) => r.store_order_id,
        }
    }

    /// The Kafka key into `key` (cleared first): the store id as a decimal string, as the
    /// connectors key by `store_id`, so a store's events share a partition.
    pub fn write_key(&self, key: &mut String) {
        use std::fmt::Write as _;
        key.clear();
        // Writing to a String cannot fail.
        let _ = write!(key, "{}", self.store_id());
    }

    pub fn status(&self) -> &str {
        match self {
            Record::Order(r) => &r.status,
            Record::Completed(r) => &r.status,
            Record::Cancelled(r) => &r.status,
        }
    }
}

impl Record {
    /// Appends the Confluent-framed value (the upstream writer schema registered as
    /// `schema_id`) to `buf`.
    pub fn write_framed(&self, schema_id: u32, buf: &mut Vec<u8>) {
        match self {
            Record::Order(r) => {
                let lines: Vec<wire::OrderLine<'_>> = r
                    .order_lines
                    .iter()
                    .map(|l| wire::OrderLine {
                        product_id: l.product_id,
                        category: &l.category,
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                        net_price: l.net_price,
                    })
                    .collect();
                wire::PizzaOrder {
                    store_id: r.store_id,
                    store_order_id: r.store_order_id,
                    coupon_code: r.coupon_code,
                    date: r.date,
                    status: &r.status,
                    order_lines: &lines,
                }
                .write_framed(schema_id, buf)
            }
            Record::Completed(r) => wire::PizzaOrderCompleted {
                store_id: r.store_id,
                store_order_id: r.store_order_id,
                date: r.date,
                status: &r.status,
                rack_time_secs: r.rack_time_secs,
                order_delivery_time_secs: r.order_delivery_time_secs,
            }
            .write_framed(schema_id, buf),
            Record::Cancelled(r) => wire::PizzaOrderCancelled {
                store_id: r.store_id,
                store_order_id: r.store_order_id,
                date: r.date,
                status: &r.status,
            }
            .write_framed(schema_id, buf),
        }
    }
}

/// A template's `range`: `min` inclusive, `max` EXCLUSIVE, as the connector draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub min: i32,
    pub max: i32,
}

impl Range {
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> i32 {
        rng.random_range(self.min..self.max)
    }

    pub fn contains(&self, v: i32) -> bool {
        (self.min..self.max).contains(&v)
    }
}

/// A template's `iteration`: the n-th record (from 0) gets `start + n * step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Iteration {
    pub start: i32,
    pub step: i32,
}

/// The generation rules of `pizza_orders`.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdersTemplate {
    pub store_id: Range,
    pub store_order_id: Iteration,
    pub coupon_code: Range,
    pub date: Range,
    pub status: Vec<Arc<str>>,
    /// How many order lines (max exclusive).
    pub lines: Range,
    /// The order lines to draw from.
    pub line_options: Vec<Arc<OrderLine>>,
}

/// The generation rules of `pizza_orders_completed`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletedTemplate {
    pub store_id: Range,
    pub store_order_id: Iteration,
    pub date: Range,
    pub status: Vec<Arc<str>>,
    pub rack_time_secs: Range,
    pub order_delivery_time_secs: Range,
}

/// The generation rules of `pizza_orders_cancelled`.
#[derive(Debug, Clone, PartialEq)]
pub struct CancelledTemplate {
    pub store_id: Range,
    pub store_order_id: Iteration,
    pub date: Range,
    pub status: Vec<Arc<str>>,
}

/// All three templates.
#[derive(Debug, Clone, PartialEq)]
pub struct Templates {
    pub orders: OrdersTemplate,
    pub completed: CompletedTemplate,
    pub cancelled: CancelledTemplate,
}

/// A template lacks a rule the generator needs, or states it in a shape it cannot follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {template}: {message}")]
pub struct TemplateError {
    pub template: &'static str,
    pub message: String,
}

impl Templates {
    /// The upstream quickstart templates, as the service's wire module ships them.
    pub fn upstream() -> Result<Templates, TemplateError> {
        Templates::parse(
            wire::UPSTREAM_PIZZA_ORDERS,
            wire::UPSTREAM_PIZZA_ORDERS_COMPLETED,
            wire::UPSTREAM_PIZZA_ORDERS_CANCELLED,
        )
    }

    /// Reads the rules from the three templates' schema texts.
    pub fn parse(
        orders: &str,
        completed: &str,
        cancelled: &str,
    ) -> Result<Templates, TemplateError> {
        let o = Template::new("pizza_orders", orders)?;
        let lines = o.field("order_lines")?;
        let line_options = lines
            .pointer("/items/arg.properties/options")
            .and_then(Json::as_array)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| o.err("order_lines has no non-empty items.arg.properties.options"))?
            .iter()
            .map(|v| {
                serde_json::from_value::<OrderLine>(v.clone())
                    .map(Arc::new)
                    .map_err(|e| o.err(format!("order line option {v}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let orders = OrdersTemplate {
            store_id: o.range("store_id")?,
            store_order_id: o.iteration("store_order_id")?,
            coupon_code: o.range("coupon_code")?,
            date: o.range("date")?,
            status: o.string_options("status")?,
            lines: o.length("order_lines")?,
            line_options,
        };
        let c = Template::new("pizza_orders_completed", completed)?;
        let completed = CompletedTemplate {
            store_id: c.range("store_id")?,
            store_order_id: c.iteration("store_order_id")?,
            date: c.range("date")?,
            status: c.string_options("status")?,
            rack_time_secs: c.range("rack_time_secs")?,
            order_delivery_time_secs: c.range("order_delivery_time_secs")?,
        };
        let x = Template::new("pizza_orders_cancelled", cancelled)?;
        let cancelled = CancelledTemplate {
            store_id: x.range("store_id")?,
            store_order_id: x.iteration("store_order_id")?,
            date: x.range("date")?,
            status: x.string_options("status")?,
        };
        Ok(Templates {
            orders,
            completed,
            cancelled,
        })
    }
}

/// A template's JSON with helpers to read a field's `arg.properties`.
struct Template {
    name: &'static str,
    json: Json,
}

impl Template {
    fn new(name: &'static str, text: &str) -> Result<Template, TemplateError> {
        let json = serde_json::from_str(text).map_err(|e| TemplateError {
            template: name,
            message: format!("not JSON: {e}"),
        })?;
        Ok(Template { name, json })
    }

    fn err(&self, message: impl Into<String>) -> TemplateError {
        TemplateError {
            template: self.name,
            message: message.into(),
        }
    }

    /// The field's `type` object.
    fn field(&self, name: &str) -> Result<&Json, TemplateError> {
        self.json
            .get("fields")
            .and_then(Json::as_array)
            .and_then(|fs| {
                fs.iter()
                    .find(|f| f.get("name").and_then(Json::as_str) == Some(name))
            })
            .and_then(|f| f.get("type"))
            .ok_or_else(|| self.err(format!("no field {name}")))
    }

    fn prop(&self, field: &str, prop: &str) -> Result<&Json, TemplateError> {
        self.field(field)?
            .get("arg.properties")
            .and_then(|p| p.get(prop))
            .ok_or_else(|| self.err(format!("field {field} has no arg.properties.{prop}")))
    }

    fn int(&self, v: &Json, field: &str, key: &str) -> Result<i32, TemplateError> {
        v.get(key)
            .and_then(Json::as_i64)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| self.err(format!("field {field}: {key} is not a 32-bit integer")))
    }

    fn range_of(&self, field: &str, prop: &str) -> Result<Range, TemplateError> {
        let p = self.prop(field, prop)?;
        let r = Range {
            min: self.int(p, field, "min")?,
            max: self.int(p, field, "max")?,
        };
        if r.min >= r.max {
            return Err(self.err(format!("field {field}: empty {prop} {}..{}", r.min, r.max)));
        }
        Ok(r)
    }

    fn range(&self, field: &str) -> Result<Range, TemplateError> {
        self.range_of(field, "range")
    }

    fn length(&self, field: &str) -> Result<Range, TemplateError> {
        let r = self.range_of(field, "length")?;
        if r.min < 0 {
            return Err(self.err(format!("field {field}: negative length")));
        }
        Ok(r)
    }

    fn iteration(&self, field: &str) -> Result<Iteration, TemplateError> {
        let p = self.prop(field, "iteration")?;
        Ok(Iteration {
            start: self.int(p, field, "start")?,
            step: self.int(p, field, "step")?,
        })
    }

    fn string_options(&self, field: &str) -> Result<Vec<Arc<str>>, TemplateError> {
        let opts = self
            .prop(field, "options")?
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().map(Arc::from))
                    .collect::<Option<Vec<_>>>()
            })
            .and_then(|o| o.filter(|v| !v.is_empty()))
            .ok_or_else(|| self.err(format!("field {field}: options are not non-empty strings")))?;
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_rules_are_the_documented_ones() {
        let t = Templates::upstream().unwrap();
        let o = &t.orders;
        assert_eq!(o.store_id, Range { min: 1, max: 10 });
        assert_eq!(
            o.store_order_id,
            Iteration {
                start: 1000,
                step: 1
            }
        );
        assert_eq!(
            o.coupon_code,
            Range {
                min: 1000,
                max: 2000
            }
        );
        assert_eq!(
            o.date,
            Range {
                min: 18000,
                max: 19000
            }
        );
        assert_eq!(o.lines, Range { min: 1, max: 5 });
        assert_eq!(o.line_options.len(), 100);
        assert_eq!(
            *o.line_options[0],
            OrderLine {
                product_id: 66,
                category: "calzone".into(),
                quantity: 4,
                unit_price: 18.78,
                net_price: 75.12
            }
        );
        assert_eq!(o.status, vec![Arc::<str>::from(STATUS_ACCEPTED)]);
        let c = &t.completed;
        assert_eq!(
            c.store_order_id,
            Iteration {
                start: 1000,
                step: 2
            }
        );
        assert_eq!(c.rack_time_secs, Range { min: 130, max: 230 });
        assert_eq!(
            c.order_delivery_time_secs,
            Range {
                min: 1100,
                max: 2000
            }
        );
        assert_eq!(c.status, vec![Arc::<str>::from(STATUS_COMPLETED)]);
        let x = &t.cancelled;
        assert_eq!(
            x.store_order_id,
            Iteration {
                start: 1001,
                step: 2
            }
        );
        assert_eq!(x.store_id, Range { min: 1, max: 10 });
        assert_eq!(x.status, vec![Arc::<str>::from(STATUS_CANCELLED)]);
    }

    #[test]
    fn broken_templates_are_named() {
        let ok = wire::UPSTREAM_PIZZA_ORDERS_COMPLETED;
        let e = Templates::parse("{}", ok, ok).unwrap_err();
        assert_eq!(e.template, "pizza_orders");
        let no_range = ok.replace("\"range\"", "\"rangee\"");
        let e = Templates::parse(wire::UPSTREAM_PIZZA_ORDERS, &no_range, ok).unwrap_err();
        assert!(e.to_string().contains("arg.properties.range"), "{e}");
        let empty = ok.replace("\"max\": 10", "\"max\": 1");
        let e = Templates::parse(wire::UPSTREAM_PIZZA_ORDERS, &empty, ok).unwrap_err();
        assert!(e.to_string().contains("empty range"), "{e}");
    }
}

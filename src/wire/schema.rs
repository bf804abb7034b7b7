//! Avro schemas as the decoders see them: a small graph parsed from the schema's JSON text.
//!
//! apache-avro parses every writer schema too (it is the authority on "is this valid Avro?" and
//! the reference decoder in tests), but the fast decoders compile their plans from this graph,
//! built from the JSON itself, because the wire encoding depends on details apache-avro's
//! `Schema` folds away (a `uuid` logical type on a `fixed(16)` is written as 16 raw bytes, on a
//! `string` as a length-prefixed string; apache-avro maps both to `Schema::Uuid`). Logical types
//! are annotations: only the underlying type decides the bytes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value as Json};

/// Index of a node in a [`Graph`].
pub(crate) type NodeId = u32;

/// One Avro type, with named references already resolved to the defining node (so recursive
/// types are cycles in the graph).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed {
        size: usize,
    },
    Enum {
        symbols: u32,
    },
    Array {
        items: NodeId,
    },
    Map {
        values: NodeId,
    },
    Union {
        branches: Vec<NodeId>,
    },
    Record {
        name: String,
        aliases: Vec<String>,
        fields: Vec<Field>,
    },
}

/// A record field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    pub name: String,
    pub aliases: Vec<String>,
    pub ty: NodeId,
    pub default: Option<Json>,
}

impl Node {
    /// The Avro type name, for messages.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Boolean => "boolean",
            Node::Int => "int",
            Node::Long => "long",
            Node::Float => "float",
            Node::Double => "double",
            Node::Bytes => "bytes",
            Node::String => "string",
            Node::Fixed { .. } => "fixed",
            Node::Enum { .. } => "enum",
            Node::Array { .. } => "array",
            Node::Map { .. } => "map",
            Node::Union { .. } => "union",
            Node::Record { .. } => "record",
        }
    }
}

/// How to skip a value of a type that needs no recursion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Simple {
    Null,
    Boolean,
    Int,
    Long,
    /// Bytes: a length, then that many bytes.
    Bytes,
    /// String: a length, then that many bytes of UTF-8 (checked even when skipped, as Avro
    /// requires).
    String,
    /// Fixed, float (4), double (8): that many bytes.
    Fixed(usize),
    Enum(u32),
}

impl Simple {
    #[inline(always)]
    pub(crate) fn of(node: &Node) -> Option<Simple> {
        Some(match node {
            Node::Null => Simple::Null,
            Node::Boolean => Simple::Boolean,
            Node::Int => Simple::Int,
            Node::Long => Simple::Long,
            Node::Float => Simple::Fixed(4),
            Node::Double => Simple::Fixed(8),
            Node::Bytes => Simple::Bytes,
            Node::String => Simple::String,
            Node::Fixed { size } => Simple::Fixed(*size),
            Node::Enum { symbols } => Simple::Enum(*symbols),
            _ => return None,
        })
    }
}

/// A parsed schema: its nodes, the root, for every node a lower bound of the bytes one of its
/// values occupies on the wire (used to reject absurd array counts before looping), and for
/// records whose fields are all of simple types, the flat list of what to skip (the usual shape
/// of array items, like `order_line`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Graph {
    pub nodes: Vec<Node>,
    pub root: NodeId,
    pub min_size: Vec<u64>,
    pub flat: Vec<Option<Box<[Simple]>>>,
}

impl Graph {
    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    /// Parses a schema's JSON text.
    pub(crate) fn parse(text: &str) -> Result<Graph, String> {
        let json: Json =
            serde_json::from_str(text).map_err(|e| format!("schema text is not JSON: {e}"))?;
        let mut p = Parser {
            nodes: Vec::new(),
            names: HashMap::new(),
        };
        let root = p.parse(&json, None)?;
        let mut g = Graph {
            nodes: p.nodes,
            root,
            min_size: Vec::new(),
            flat: Vec::new(),
        };
        g.min_size = g.compute_min_sizes();
        g.flat = g
            .nodes
            .iter()
            .map(|node| match node {
                Node::Record { fields, .. } => fields
                    .iter()
                    .map(|f| Simple::of(g.node(f.ty)))
                    .collect::<Option<Box<[Simple]>>>(),
                _ => None,
            })
            .collect();
        Ok(g)
    }

    fn compute_min_sizes(&self) -> Vec<u64> {
        // Lower bounds by fixed-point iteration from 0: every pass can only raise a bound, and a
        // bound never exceeds the true minimum, so stopping early (recursive types) stays safe.
        let mut min = vec![0u64; self.nodes.len()];
        for _ in 0..=self.nodes.len().min(64) {
            let mut changed = false;
            for (i, node) in self.nodes.iter().enumerate() {
                let m = match node {
                    Node::Null => 0,
                    Node::Boolean | Node::Int | Node::Long | Node::Enum { .. } => 1,
                    Node::Float => 4,
                    Node::Double => 8,
                    Node::Bytes | Node::String => 1,
                    Node::Fixed { size } => *size as u64,
                    // an array or map ends with a zero count: one byte at least
                    Node::Array { .. } | Node::Map { .. } => 1,
                    Node::Union { branches } => {
                        1 + branches.iter().map(|b| min[*b as usize]).min().unwrap_or(0)
                    }
                    Node::Record { fields, .. } => fields
                        .iter()
                        .fold(0u64, |acc, f| acc.saturating_add(min[f.ty as usize])),
                };
                let m = m.min(1 << 32);
                if m > min[i] {
                    min[i] = m;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        min
    }
}

struct Parser {
    nodes: Vec<Node>,
    names: HashMap<String, NodeId>,
}

fn primitive(name: &str) -> Option<Node> {
    Some(match name {
        "null" => Node::Null,
        "boolean" => Node::Boolean,
        "int" => Node::Int,
        "long" => Node::Long,
        "float" => Node::Float,
        "double" => Node::Double,
        "bytes" => Node::Bytes,
        "string" => Node::String,
        _ => return None,
    })
}

/// `(fullname, namespace of the definition)` for a named type.
fn full_name(
    obj: &Map<String, Json>,
    enclosing: Option<&str>,
) -> Result<(String, Option<String>), String> {
    let name = obj
        .get("name")
        .and_then(Json::as_str)
        .ok_or_else(|| "a named type (record, enum or fixed) has no \"name\"".to_string())?;
    if let Some(dot) = name.rfind('.') {
        return Ok((name.to_string(), Some(name[..dot].to_string())));
    }
    let ns = match obj.get("namespace") {
        Some(Json::String(ns)) if ns.is_empty() => None,
        Some(Json::String(ns)) => Some(ns.clone()),
        _ => enclosing.map(str::to_string),
    };
    Ok(match &ns {
        Some(ns) => (format!("{ns}.{name}"), Some(ns.clone())),
        None => (name.to_string(), None),
    })
}

/// The unqualified part of a full name.
pub(crate) fn simple_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

fn string_list(v: Option<&Json>) -> Vec<String> {
    match v {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

impl Parser {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    fn reference(&self, name: &str, enclosing: Option<&str>) -> Result<NodeId, String> {
        let qualified = match enclosing {
            Some(ns) if !name.contains('.') => Some(format!("{ns}.{name}")),
            _ => None,
        };
        qualified
            .and_then(|q| self.names.get(&q).copied())
            .or_else(|| self.names.get(name).copied())
            .ok_or_else(|| format!("unknown type name {name:?}"))
    }

    fn define(&mut self, full: &str) -> Result<NodeId, String> {
        if self.names.contains_key(full) {
            return Err(format!("type name {full:?} is defined twice"));
        }
        let id = self.push(Node::Null); // placeholder, replaced once the definition is parsed
        self.names.insert(full.to_string(), id);
        Ok(id)
    }

    fn parse(&mut self, json: &Json, ns: Option<&str>) -> Result<NodeId, String> {
        match json {
            Json::String(name) => match primitive(name) {
                Some(node) => Ok(self.push(node)),
                None => self.reference(name, ns),
            },
            Json::Array(items) => {
                let mut branches = Vec::with_capacity(items.len());
                for item in items {
                    if item.is_array() {
                        return Err("a union directly inside a union is not allowed".into());
                    }
                    branches.push(self.parse(item, ns)?);
                }
                Ok(self.push(Node::Union { branches }))
            }
            Json::Object(obj) => self.parse_object(obj, ns),
            other => Err(format!("{other} is not a schema")),
        }
    }

    fn parse_object(
        &mut self,
        obj: &Map<String, Json>,
        ns: Option<&str>,
    ) -> Result<NodeId, String> {
        let ty = obj
            .get("type")
            .ok_or_else(|| "a schema object has no \"type\"".to_string())?;
        let ty = match ty {
            Json::String(t) => t.as_str(),
            // {"type": {...}} or {"type": [...]}: the inner schema, annotations ignored
            nested => return self.parse(nested, ns),
        };
        match ty {
            "record" | "error" => {
                let (full, own_ns) = full_name(obj, ns)?;
                let id = self.define(&full)?;
                let list = match obj.get("fields") {
                    Some(Json::Array(list)) => list,
                    _ => return Err(format!("record {full:?} has no \"fields\" array")),
                };
                let mut fields = Vec::with_capacity(list.len());
                for f in list {
                    let f = f
                        .as_object()
                        .ok_or_else(|| format!("a field of {full:?} is not an object"))?;
                    let name = f
                        .get("name")
                        .and_then(Json::as_str)
                        .ok_or_else(|| format!("a field of {full:?} has no \"name\""))?;
                    let fty = f
                        .get("type")
                        .ok_or_else(|| format!("field {name:?} of {full:?} has no \"type\""))?;
                    let ty = self.parse(fty, own_ns.as_deref())?;
                    fields.push(Field {
                        name: name.to_string(),
                        aliases: string_list(f.get("aliases")),
                        ty,
                        default: f.get("default").cloned(),
                    });
                }
                let aliases = string_list(obj.get("aliases"));
                self.nodes[id as usize] = Node::Record {
                    name: full,
                    aliases,
                    fields,
                };
                Ok(id)
            }
            "enum" => {
                let (full, _) = full_name(obj, ns)?;
                let id = self.define(&full)?;
                let symbols = match obj.get("symbols") {
                    Some(Json::Array(s)) => s.len(),
                    _ => return Err(format!("enum {full:?} has no \"symbols\" array")),
                };
                let symbols = u32::try_from(symbols)
                    .map_err(|_| format!("enum {full:?} has too many symbols"))?;
                self.nodes[id as usize] = Node::Enum { symbols };
                Ok(id)
            }
            "fixed" => {
                let (full, _) = full_name(obj, ns)?;
                let id = self.define(&full)?;
                let size = obj
                    .get("size")
                    .and_then(Json::as_u64)
                    .and_then(|s| usize::try_from(s).ok())
                    .ok_or_else(|| format!("fixed {full:?} has no valid \"size\""))?;
                self.nodes[id as usize] = Node::Fixed { size };
                Ok(id)
            }
            "array" => {
                let items = obj
                    .get("items")
                    .ok_or_else(|| "an array schema has no \"items\"".to_string())?;
                let items = self.parse(items, ns)?;
                Ok(self.push(Node::Array { items }))
            }
            "map" => {
                let values = obj
                    .get("values")
                    .ok_or_else(|| "a map schema has no \"values\"".to_string())?;
                let values = self.parse(values, ns)?;
                Ok(self.push(Node::Map { values }))
            }
            other => match primitive(other) {
                Some(node) => Ok(self.push(node)),
                None => self.reference(other, ns),
            },
        }
    }
}

/// A writer schema fetched from the registry (or built locally): its id, its text exactly as
/// registered, apache-avro's parse of it, and the graph the fast decoders compile plans from.
#[derive(Clone)]
pub struct WriterSchema {
    id: u32,
    text: String,
    avro: apache_avro::Schema,
    pub(crate) graph: Arc<Graph>,
}

impl fmt::Debug for WriterSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterSchema")
            .field("id", &self.id)
            .field("name", &self.record_name())
            .field("text_len", &self.text.len())
            .finish()
    }
}

impl WriterSchema {
    /// Parses a schema's text. Fails (with a reason) when it is not valid Avro, or uses
    /// something this service cannot read (named types from schema references).
    pub fn parse(id: u32, text: impl Into<String>) -> Result<WriterSchema, String> {
        let text = text.into();
        let avro = apache_avro::Schema::parse_str(&text).map_err(|e| e.to_string())?;
        let graph = Graph::parse(&text)?;
        Ok(WriterSchema {
            id,
            text,
            avro,
            graph: Arc::new(graph),
        })
    }

    /// The registry id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The schema text as registered.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// apache-avro's parse of the schema.
    pub fn avro(&self) -> &apache_avro::Schema {
        &self.avro
    }

    /// The full name of the top-level record, if the schema is a record.
    pub fn record_name(&self) -> Option<&str> {
        match self.graph.node(self.graph.root) {
            Node::Record { name, .. } => Some(name),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_namespaces_and_references_resolve() {
        let g = Graph::parse(
            r#"{"type":"record","name":"R","namespace":"a.b","fields":[
                {"name":"x","type":{"type":"fixed","name":"F","size":3}},
                {"name":"y","type":"F"},
                {"name":"z","type":"a.b.F"},
                {"name":"n","type":{"type":"record","name":"c.Inner","fields":[
                    {"name":"self","type":["null","Inner"]}]}},
                {"name":"e","type":{"type":"enum","name":"E","namespace":"","symbols":["A","B"]}},
                {"name":"e2","type":"E"},
                {"name":"l","type":{"type":"int","logicalType":"date"}},
                {"name":"u","type":{"type":"fixed","name":"U","size":16,"logicalType":"uuid"}}
            ]}"#,
        )
        .unwrap();
        let Node::Record { name, fields, .. } = g.node(g.root) else {
            panic!()
        };
        assert_eq!(name, "a.b.R");
        assert_eq!(fields[0].ty, fields[1].ty);
        assert_eq!(fields[0].ty, fields[2].ty);
        assert_eq!(g.node(fields[0].ty), &Node::Fixed { size: 3 });
        assert_eq!(fields[4].ty, fields[5].ty);
        assert_eq!(g.node(fields[6].ty), &Node::Int);
        assert_eq!(g.node(fields[7].ty), &Node::Fixed { size: 16 });
        // the recursive reference points back at the record
        let Node::Record {
            name,
            fields: inner,
            ..
        } = g.node(fields[3].ty)
        else {
            panic!()
        };
        assert_eq!(name, "c.Inner");
        let Node::Union { branches } = g.node(inner[0].ty) else {
            panic!()
        };
        assert_eq!(branches[1], fields[3].ty);
        // R: 3 + 3 + 3 + 1 (union) + 1 + 1 + 1 + 16
        assert_eq!(g.min_size[g.root as usize], 29);
    }

    #[test]
    fn bad_schemas_are_reported() {
        assert!(Graph::parse("nope").unwrap_err().contains("not JSON"));
        assert!(
            Graph::parse(r#""Unknown""#)
                .unwrap_err()
                .contains("unknown type name")
        );
        assert!(
            Graph::parse(r#"{"type":"record","name":"R"}"#)
                .unwrap_err()
                .contains("fields")
        );
        assert!(
            WriterSchema::parse(
                1,
                r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Nope"}]}"#
            )
            .is_err()
        );
    }
}

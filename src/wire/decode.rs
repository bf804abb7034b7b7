//! The hot path: typed decoders for the three input topics and the output topic, driven by
//! resolution plans compiled once per (writer schema id, reader schema).
//!
//! A plan lists, for each writer field in order, what to do with its bytes: read an `int`/`long`
//! into one of the reader's fields, read a union and keep its int or null, or skip the value
//! (any Avro type, nested records, arrays and maps with negative block counts included). Reader
//! fields the writer lacks take the reader's default (`null` for the optional durations); a
//! required reader field the writer lacks makes the writer schema incompatible. Decoding walks
//! the plan with a hand-written zig-zag varint reader over the borrowed bytes: no allocation, no
//! `apache_avro::types::Value` tree.
//!
//! What is validated on every record: the Confluent header; varints (at most 10 bytes, `int`s
//! within 32 bits); every length, count and union/enum index against the schema and the bytes
//! left, before anything is skipped; nesting depth (at most [`MAX_DEPTH`]); no trailing bytes
//! after the record; booleans are 0 or 1. Then the semantic checks: `store_id` > 0 and the
//! durations and `wait_time` >= 0. Strings and bytes are only ever skipped (the service reads
//! none: `status` is not needed, so it is not in the reader schemas), but a string must still be
//! UTF-8, as the Avro specification and apache-avro demand: a producer writing garbage into
//! `status` is broken, and its record is dead-lettered rather than half-trusted.
//!
//! Names: the writer's top-level record is matched by its fields, not by its name. Real producers
//! name it their own way (ksqlDB calls every value record `KsqlDataSourceSchema`, Kafka Connect
//! uses the connector's or its own `ConnectDefault`, serializers whatever the producer's code
//! says) and Confluent's deserializers, ksqlDB and Connect read such records by the writer's
//! schema and take fields by name; the Avro specification's rule (the writer's record must have
//! the reader's name or alias) would dead-letter a whole producer for a label. One exception
//! guards against a misrouted topic: a writer record named like another input topic's record
//! (a `pizza_orders_completed` on the orders topic) is rejected, since its fields alone would
//! pass. Nested named types keep normal resolution. Fields are matched by exact name, then by
//! the reader's aliases (the reader schemas alias the upper-case names ksqlDB gives unquoted
//! columns, `STORE_ID`…); names are otherwise case-sensitive, as in Avro and Confluent's
//! deserializers. Writer `int` promotes to a reader `long`; a writer union is resolved per
//! record, so an optional `["null", T]` writer field (ksqlDB makes every column optional) reads
//! its value, and a null in a field the service needs is that record's dead letter
//! ([`DecodeError::Invalid`]), not the schema's.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use crate::domain::{InputKind, OrderCancelled, OrderCompleted, OrderEvent, OrderPlaced, StoreId};

use super::framing::{self, FramingError};
use super::schema::{Graph, Node, NodeId, Simple, WriterSchema, simple_name};

/// Deepest nesting of arrays, maps, unions and records a skipped value may have. Deeper values
/// (only possible with recursive schemas) are rejected rather than risking the stack.
pub const MAX_DEPTH: u32 = 64;

/// What is wrong with the bytes of a value. Always permanent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("truncated: the body ends inside this value")]
    Truncated,
    #[error("variable-length integer longer than 64 bits")]
    VarintOverflow,
    #[error("int value {0} does not fit in 32 bits")]
    IntOutOfRange(i64),
    #[error("negative length {0}")]
    NegativeLength(i64),
    #[error("length {len} exceeds the {remaining} byte(s) left in the body")]
    LengthExceedsInput { len: u64, remaining: usize },
    #[error("block of {count} items cannot fit in the {remaining} byte(s) left in the body")]
    ItemsExceedInput { count: u64, remaining: usize },
    #[error("invalid array/map block count {0}")]
    BadBlockCount(i64),
    #[error("array/map block declares {declared} byte(s) but its items take {taken}")]
    BadBlockSize { declared: i64, taken: usize },
    #[error("union branch index {index} out of range (the union has {branches} branches)")]
    BadUnionIndex { index: i64, branches: usize },
    #[error("enum symbol index {index} out of range (the enum has {symbols} symbols)")]
    BadEnumIndex { index: i64, symbols: u32 },
    #[error("string is not valid UTF-8 (the first {valid_up_to} byte(s) are)")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("invalid boolean byte 0x{0:02x} (expected 0 or 1)")]
    BadBoolean(u8),
    #[error("values nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("union branch {index} holds a {writer_type}, which cannot be read as an integer")]
    UnreadableBranch {
        index: u32,
        writer_type: &'static str,
    },
}

/// Why a value could not be decoded.
///
/// Only [`DecodeError::UnknownSchemaId`] asks for action (fetch the schema, [`Decoders::learn`]
/// or [`Decoders::learn_missing`] it, decode again); every other variant is permanent for that
/// record: dead-letter it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not a Confluent-framed value.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// Not permanent: the id is new to these decoders; fetch it, learn it, decode again.
    #[error(
        "schema id {0} is not known to the decoder yet (fetch it from the schema registry and learn it)"
    )]
    UnknownSchemaId(u32),
    /// The id was learned as missing ([`Decoders::learn_missing`]): `reason` says why.
    #[error("schema id {schema_id} cannot be used: {reason}")]
    SchemaUnavailable { schema_id: u32, reason: Arc<str> },
    /// The writer schema cannot be resolved against the reader schema of the topic (another
    /// input topic's record name, a required field missing, a field of an unreadable type).
    #[error("schema id {schema_id} is not compatible with the reader schema {reader}: {reason}")]
    Incompatible {
        schema_id: u32,
        reader: &'static str,
        reason: Arc<str>,
    },
    #[error(
        "malformed Avro body (schema id {schema_id}), field {field} starting at byte {offset} of the body: {problem}"
    )]
    /// The body does not match its writer schema.
    Malformed {
        schema_id: u32,
        /// The top-level writer field whose value is broken.
        field: Arc<str>,
        /// Where that field's value starts in the Avro body (after the 5-byte header).
        offset: usize,
        problem: Problem,
    },
    #[error(
        "malformed Avro body (schema id {schema_id}): {count} trailing byte(s) after the end of the record"
    )]
    TrailingBytes { schema_id: u32, count: usize },
    /// Well-formed, but a value is out of range (`store_id` <= 0, a negative duration…).
    #[error("{0}")]
    Invalid(String),
}

/// Why a record is dead-lettered (`waittimes_dead_letters_total{reason}`, the
/// `waittimes.error.reason` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// Not Confluent framing: no magic byte, too short, or no value at all.
    Framing,
    /// The schema id is not in the registry.
    UnknownSchema,
    /// The writer schema cannot be resolved against our reader schema.
    IncompatibleSchema,
    /// The Avro body does not decode with its writer schema.
    Malformed,
    /// Decodes, but a value makes no sense (e.g. a non-positive store id).
    InvalidValue,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 5] = [
        DeadLetterReason::Framing,
        DeadLetterReason::UnknownSchema,
        DeadLetterReason::IncompatibleSchema,
        DeadLetterReason::Malformed,
        DeadLetterReason::InvalidValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterReason::Framing => "framing",
            DeadLetterReason::UnknownSchema => "unknown_schema",
            DeadLetterReason::IncompatibleSchema => "incompatible_schema",
            DeadLetterReason::Malformed => "malformed",
            DeadLetterReason::InvalidValue => "invalid_value",
        }
    }
}

impl DecodeError {
    /// Why a record with this error is dead-lettered: one vocabulary from here to the metric
    /// label and the dead letter's header.
    pub fn reason(&self) -> DeadLetterReason {
        match self {
            DecodeError::Framing(_) => DeadLetterReason::Framing,
            DecodeError::UnknownSchemaId(_) | DecodeError::SchemaUnavailable { .. } => {
                DeadLetterReason::UnknownSchema
            }
            DecodeError::Incompatible { .. } => DeadLetterReason::IncompatibleSchema,
            DecodeError::Malformed { .. } | DecodeError::TrailingBytes { .. } => {
                DeadLetterReason::Malformed
            }
            DecodeError::Invalid(_) => DeadLetterReason::InvalidValue,
        }
    }

    /// True for the one error that is not about the record: its schema id is not learned yet.
    pub fn is_unknown_schema(&self) -> bool {
        matches!(self, DecodeError::UnknownSchemaId(_))
    }
}

// ---------------------------------------------------------------------------------------------
// Reader schemas

/// A reader field's type: `int` or `long`, optionally in a union with `null`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReaderTy {
    nullable: bool,
    long: bool,
}

impl ReaderTy {
    fn name(self) -> &'static str {
        match (self.nullable, self.long) {
            (false, false) => "int",
            (false, true) => "long",
            (true, false) => "[\"null\", \"int\"]",
            (true, true) => "[\"null\", \"long\"]",
        }
    }
}

#[derive(Debug, Clone)]
struct ReaderField {
    name: String,
    aliases: Vec<String>,
    ty: ReaderTy,
    /// `None`: no default (required). `Some(None)`: default null.
    default: Option<Option<i64>>,
}

/// A reader schema the decoders support: a record of int/long fields, each optionally nullable.
#[derive(Debug, Clone)]
pub(crate) struct Reader {
    /// The record's unqualified name (also used in messages).
    name: &'static str,
    aliases: Vec<String>,
    fields: Vec<ReaderField>,
}

/// Reader fields are read into these slots, in the reader's field order.
const MAX_SLOTS: usize = 4;
type Slots = [Option<i64>; MAX_SLOTS];

impl Reader {
    fn parse(name: &'static str, text: &str) -> Result<Reader, String> {
        let g = Graph::parse(text)?;
        let Node::Record {
            name: full,
            aliases,
            fields,
        } = g.node(g.root)
        else {
            return Err("a reader schema must be a record".into());
        };
        if simple_name(full) != name {
            return Err(format!("reader record is named {full}, expected {name}"));
        }
        if fields.len() > MAX_SLOTS {
            return Err(format!("a reader schema has at most {MAX_SLOTS} fields"));
        }
        let int_or_long = |id: NodeId| match g.node(id) {
            Node::Int => Some(false),
            Node::Long => Some(true),
            _ => None,
        };
        let mut out = Vec::new();
        for f in fields {
            let ty = match g.node(f.ty) {
                Node::Union { branches } if branches.len() == 2 => {
                    let (a, b) = (branches[0], branches[1]);
                    let long = match (g.node(a), g.node(b)) {
                        (Node::Null, _) => int_or_long(b),
                        (_, Node::Null) => int_or_long(a),
                        _ => None,
                    };
                    long.map(|long| ReaderTy {
                        nullable: true,
                        long,
                    })
                }
                _ => int_or_long(f.ty).map(|long| ReaderTy {
                    nullable: false,
                    long,
                }),
            }
            .ok_or_else(|| {
                format!(
                    "reader field {} must be int, long, or a union of null and one of them",
                    f.name
                )
            })?;
            let default = match &f.default {
                None => None,
                Some(serde_json::Value::Null) if ty.nullable => Some(None),
                Some(v) => match v.as_i64() {
                    Some(n) => Some(Some(n)),
                    None => {
                        return Err(format!(
                            "reader field {} has an unusable default {v}",
                            f.name
                        ));
                    }
                },
            };
            out.push(ReaderField {
                name: f.name.clone(),
                aliases: f.aliases.clone(),
                ty,
                default,
            });
        }
        Ok(Reader {
            name,
            aliases: aliases.iter().map(|a| simple_name(a).to_string()).collect(),
            fields: out,
        })
    }

    #[cfg(test)]
    fn field_index(&self, name: &str) -> usize {
        self.fields
            .iter()
            .position(|f| f.name == name)
            .unwrap_or(usize::MAX)
    }
}

/// The readers, in a fixed order: one per input kind, then WaitTimes.
const ORDERS: usize = 0;
const COMPLETED: usize = 1;
const CANCELLED: usize = 2;
const WAIT_TIMES: usize = 3;
const READER_COUNT: usize = 4;

fn reader_index(kind: InputKind) -> usize {
    match kind {
        InputKind::Orders => ORDERS,
        InputKind::Completed => COMPLETED,
        InputKind::Cancelled => CANCELLED,
    }
}

/// The unqualified record names of the input topics' reader schemas: a writer record named like
/// one of them belongs to that topic (the upstream Datagen schemas use these names).
const INPUT_RECORD_NAMES: [&str; 3] = [
    "pizza_orders",
    "pizza_orders_completed",
    "pizza_orders_cancelled",
];

// Slot positions in the reader schemas (checked by a test against the .avsc files).
const STORE_ID: usize = 0;
const STORE_ORDER_ID: usize = 1;
const RACK_TIME_SECS: usize = 2;
const ORDER_DELIVERY_TIME_SECS: usize = 3;
const WAIT_TIME: usize = 1;

static READERS: LazyLock<[Reader; READER_COUNT]> = LazyLock::new(|| {
    let parse = |name, text| {
        Reader::parse(name, text).unwrap_or_else(|e| panic!("embedded reader schema {name}: {e}"))
    };
    [
        parse(INPUT_RECORD_NAMES[ORDERS], super::READER_PIZZA_ORDERS),
        parse(
            INPUT_RECORD_NAMES[COMPLETED],
            super::READER_PIZZA_ORDERS_COMPLETED,
        ),
        parse(
            INPUT_RECORD_NAMES[CANCELLED],
            super::READER_PIZZA_ORDERS_CANCELLED,
        ),
        parse("WaitTimes", super::WAIT_TIMES_SCHEMA),
    ]
});

// ---------------------------------------------------------------------------------------------
// Plans

/// What to do with a writer union's branch when the reader wants an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Branch {
    Int,
    Long,
    /// A null branch: the slot is `None`. In a field the service needs, the semantic checks
    /// then dead-letter that record (the schema is fine: other records carry a value).
    SetNone,
    /// A branch of a type that cannot be read as the reader's type: a runtime error.
    Unreadable(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Writer `int` into a slot (reader int or long).
    Int(u8),
    /// Writer `long` into a slot (reader long).
    Long(u8),
    /// Writer `null` into a nullable slot: no bytes.
    SetNone(u8),
    /// Writer union into a slot.
    Union {
        slot: u8,
        branches: Box<[Branch]>,
    },
    SkipInt,
    SkipLong,
    SkipBytes,
    SkipString,
    SkipFixed(usize),
    Skip(NodeId),
}

/// A compiled resolution of one writer schema against one reader schema.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    ops: Box<[Op]>,
    /// The writer field each op belongs to, for error messages.
    fields: Box<[Arc<str>]>,
    /// Slot values before the first op: the reader defaults for fields the writer lacks.
    init: Slots,
    graph: Arc<Graph>,
}

fn branch_for(node: &Node, ty: ReaderTy) -> Branch {
    match node {
        Node::Int => Branch::Int,
        Node::Long if ty.long => Branch::Long,
        Node::Null => Branch::SetNone,
        other => Branch::Unreadable(other.type_name()),
    }
}

impl Plan {
    /// Compiles the resolution of `writer` against `reader`, or says why they are incompatible.
    pub(crate) fn compile(reader: &Reader, writer: &Arc<Graph>) -> Result<Plan, String> {
        let g: &Graph = writer;
        let Node::Record {
            name: wname,
            fields: wfields,
            ..
        } = g.node(g.root)
        else {
            return Err(format!(
                "the writer schema is a {}, not a record",
                g.node(g.root).type_name()
            ));
        };
        // Matched by its fields whatever its name (see the module doc), unless it bears the name
        // of another input topic's record: then the topic is misrouted.
        let wsimple = simple_name(wname);
        if wsimple != reader.name
            && !reader.aliases.iter().any(|a| a == wsimple)
            && INPUT_RECORD_NAMES.contains(&wsimple)
        {
            return Err(format!(
                "the writer's record is named {wname}, the record of another input topic (the reader expects {})",
                reader.name
            ));
        }
        // writer field index -> reader slot
        let mut target: Vec<Option<u8>> = vec![None; wfields.len()];
        let mut init: Slots = [None; MAX_SLOTS];
        for (slot, rf) in reader.fields.iter().enumerate() {
            let found = wfields
                .iter()
                .position(|wf| wf.name == rf.name)
                .or_else(|| wfields.iter().position(|wf| rf.aliases.contains(&wf.name)));
            match (found, rf.default) {
                (Some(w), _) => {
                    if target[w].is_some() {
                        return Err(format!(
                            "writer field {} matches two reader fields",
                            wfields[w].name
                        ));
                    }
                    target[w] = Some(slot as u8);
                }
                (None, Some(default)) => init[slot] = default,
                (None, None) => {
                    let near = wfields
                        .iter()
                        .find(|wf| wf.name.eq_ignore_ascii_case(&rf.name))
                        .map(|wf| {
                            format!(
                                "; the writer has {}, but Avro field names are case-sensitive",
                                wf.name
                            )
                        })
                        .unwrap_or_default();
                    return Err(format!(
                        "missing field {} (the writer schema has no such field and the reader has no default{near})",
                        rf.name
                    ));
                }
            }
        }
        let mut ops = Vec::with_capacity(wfields.len());
        let mut names = Vec::with_capacity(wfields.len());
        for (wf, slot) in wfields.iter().zip(&target) {
            let node = g.node(wf.ty);
            let op = match slot {
                Some(slot) => {
                    let rf = &reader.fields[*slot as usize];
                    let incompatible = || {
                        format!(
                            "field {}: the writer's {} cannot be read as {}",
                            rf.name,
                            describe(g, wf.ty),
                            rf.ty.name()
                        )
                    };
                    match node {
                        Node::Union { branches } => {
                            let branches: Box<[Branch]> = branches
                                .iter()
                                .map(|b| branch_for(g.node(*b), rf.ty))
                                .collect();
                            // some branch must give what the reader takes: a value, or a null
                            // when the reader field is optional
                            if !branches.iter().any(|b| match b {
                                Branch::Int | Branch::Long => true,
                                Branch::SetNone => rf.ty.nullable,
                                Branch::Unreadable(_) => false,
                            }) {
                                return Err(incompatible());
                            }
                            Op::Union {
                                slot: *slot,
                                branches,
                            }
                        }
                        other => match branch_for(other, rf.ty) {
                            Branch::Int => Op::Int(*slot),
                            Branch::Long => Op::Long(*slot),
                            Branch::SetNone if rf.ty.nullable => Op::SetNone(*slot),
                            Branch::SetNone | Branch::Unreadable(_) => {
                                return Err(incompatible());
                            }
                        },
                    }
                }
                None => match node {
                    Node::Null => continue,
                    Node::Int => Op::SkipInt,
                    Node::Long => Op::SkipLong,
                    Node::Bytes => Op::SkipBytes,
                    Node::String => Op::SkipString,
                    Node::Fixed { size } => Op::SkipFixed(*size),
                    _ => Op::Skip(wf.ty),
                },
            };
            ops.push(op);
            names.push(Arc::from(wf.name.as_str()));
        }
        Ok(Plan {
            ops: ops.into(),
            fields: names.into(),
            init,
            graph: writer.clone(),
        })
    }

    /// Decodes one body into the reader's slots.
    #[inline]
    fn run(&self, schema_id: u32, body: &[u8]) -> Result<Slots, DecodeError> {
        let mut slots = self.init;
        let mut c = Cursor { buf: body, pos: 0 };
        for (i, op) in self.ops.iter().enumerate() {
            let start = c.pos;
            let r = match op {
                Op::Int(s) => c.int().map(|v| slots[*s as usize] = Some(i64::from(v))),
                Op::SkipInt => c.int().map(drop),
                Op::SkipBytes => c.skip_len(),
                Op::SkipString => c.skip_str(),
                Op::Skip(id) => c.skip(&self.graph, *id, 0),
                Op::Long(s) => c.long().map(|v| slots[*s as usize] = Some(v)),
                Op::SetNone(s) => {
                    slots[*s as usize] = None;
                    Ok(())
                }
                Op::Union { slot, branches } => {
                    c.union(branches).map(|v| slots[*slot as usize] = v)
                }
                Op::SkipLong => c.long().map(drop),
                Op::SkipFixed(n) => c.take(*n),
            };
            if let Err(problem) = r {
                return Err(DecodeError::Malformed {
                    schema_id,
                    field: self
                        .fields
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| Arc::from("?")),
                    offset: start,
                    problem,
                });
            }
        }
        if c.pos != body.len() {
            return Err(DecodeError::TrailingBytes {
                schema_id,
                count: body.len() - c.pos,
            });
        }
        Ok(slots)
    }
}

/// "string", "array of record", "union [null, string]"… for messages.
fn describe(g: &Graph, id: NodeId) -> String {
    match g.node(id) {
        Node::Union { branches } => {
            let names: Vec<&str> = branches.iter().map(|b| g.node(*b).type_name()).collect();
            format!("union [{}]", names.join(", "))
        }
        Node::Record { name, .. } => format!("record {name}"),
        other => other.type_name().to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The byte reader

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Problem> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_slow(),
        }
    }

    #[inline]
    fn varint_slow(&mut self) -> Result<u64, Problem> {
        let rest = self.buf.get(self.pos..).unwrap_or(&[]);
        let mut v = 0u64;
        for (i, &b) in rest.iter().take(10).enumerate() {
            if i == 9 && b > 1 {
                return Err(Problem::VarintOverflow);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        Err(Problem::Truncated)
    }

    #[inline(always)]
    fn long(&mut self) -> Result<i64, Problem> {
        let z = self.varint()?;
        Ok((z >> 1) as i64 ^ -((z & 1) as i64))
    }

    #[inline(always)]
    fn int(&mut self) -> Result<i32, Problem> {
        let v = self.long()?;
        i32::try_from(v).map_err(|_| Problem::IntOutOfRange(v))
    }

    /// Skips `n` bytes whose count the schema implies (fixed, float, double).
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<(), Problem> {
        if n > self.remaining() {
            return Err(Problem::Truncated);
        }
        self.pos += n;
        Ok(())
    }

    /// Skips `n` bytes whose count the data declared.
    #[inline(always)]
    fn advance(&mut self, n: i64) -> Result<(), Problem> {
        if n < 0 {
            return Err(Problem::NegativeLength(n));
        }
        let remaining = self.remaining();
        if n as u64 > remaining as u64 {
            return Err(Problem::LengthExceedsInput {
                len: n as u64,
                remaining,
            });
        }
        self.pos += n as usize;
        Ok(())
    }

    /// Skips a string or bytes value.
    #[inline(always)]
    fn skip_len(&mut self) -> Result<(), Problem> {
        let n = self.long()?;
        self.advance(n)
    }

    /// Skips a string value, checking that it is UTF-8.
    #[inline(always)]
    fn skip_str(&mut self) -> Result<(), Problem> {
        let n = self.long()?;
        let start = self.pos;
        self.advance(n)?;
        let bytes = self.buf.get(start..self.pos).unwrap_or(&[]);
        std::str::from_utf8(bytes)
            .map(drop)
            .map_err(|e| Problem::InvalidUtf8 {
                valid_up_to: e.valid_up_to(),
            })
    }

    /// Reads a union's branch index and returns it with its branch.
    #[inline(always)]
    fn branch<'b, T>(&mut self, branches: &'b [T]) -> Result<(i64, &'b T), Problem> {
        let index = self.long()?;
        usize::try_from(index)
            .ok()
            .and_then(|i| branches.get(i))
            .map(|b| (index, b))
            .ok_or(Problem::BadUnionIndex {
                index,
                branches: branches.len(),
            })
    }

    fn union(&mut self, branches: &[Branch]) -> Result<Option<i64>, Problem> {
        let (index, branch) = self.branch(branches)?;
        match *branch {
            Branch::Int => self.int().map(|v| Some(i64::from(v))),
            Branch::Long => self.long().map(Some),
            Branch::SetNone => Ok(None),
            Branch::Unreadable(writer_type) => Err(Problem::UnreadableBranch {
                index: index as u32,
                writer_type,
            }),
        }
    }

    /// Skips one value of a type that needs no recursion.
    #[inline(always)]
    fn skip_simple(&mut self, s: Simple) -> Result<(), Problem> {
        match s {
            Simple::Int => self.int().map(drop),
            Simple::Bytes => self.skip_len(),
            Simple::String => self.skip_str(),
            Simple::Fixed(n) => self.take(n),
            Simple::Long => self.long().map(drop),
            Simple::Null => Ok(()),
            Simple::Boolean => match self.buf.get(self.pos) {
                Some(0 | 1) => {
                    self.pos += 1;
                    Ok(())
                }
                Some(&b) => Err(Problem::BadBoolean(b)),
                None => Err(Problem::Truncated),
            },
            Simple::Enum(symbols) => {
                let index = self.long()?;
                if index < 0 || index >= i64::from(symbols) {
                    return Err(Problem::BadEnumIndex { index, symbols });
                }
                Ok(())
            }
        }
    }

    /// Skips one value of writer type `id`.
    fn skip(&mut self, g: &Graph, id: NodeId, depth: u32) -> Result<(), Problem> {
        let node = g.node(id);
        if let Some(simple) = Simple::of(node) {
            return self.skip_simple(simple);
        }
        match node {
            // handled above
            Node::Null
            | Node::Boolean
            | Node::Int
            | Node::Long
            | Node::Float
            | Node::Double
            | Node::Bytes
            | Node::String
            | Node::Fixed { .. }
            | Node::Enum { .. } => Ok(()),
            Node::Array { items } => self.skip_blocks(g, false, *items, depth),
            Node::Map { values } => self.skip_blocks(g, true, *values, depth),
            Node::Union { branches } => {
                if depth >= MAX_DEPTH {
                    return Err(Problem::TooDeep);
                }
                let (_, branch) = self.branch(branches)?;
                self.skip(g, *branch, depth + 1)
            }
            Node::Record { fields, .. } => {
                if let Some(flat) = &g.flat[id as usize] {
                    return flat.iter().try_for_each(|s| self.skip_simple(*s));
                }
                if depth >= MAX_DEPTH {
                    return Err(Problem::TooDeep);
                }
                for f in fields {
                    self.skip(g, f.ty, depth + 1)?;
                }
                Ok(())
            }
        }
    }

    /// Skips an array or a map: blocks of items (map entries: a string key and a value) until a
    /// zero count. A block with a negative count announces its size in bytes; its items are
    /// still walked and checked like any others (the size would allow skipping them unread, but
    /// then a block of garbage would pass), and the size must be exactly what they take.
    fn skip_blocks(
        &mut self,
        g: &Graph,
        is_map: bool,
        item: NodeId,
        depth: u32,
    ) -> Result<(), Problem> {
        if depth >= MAX_DEPTH {
            return Err(Problem::TooDeep);
        }
        loop {
            let count = self.long()?;
            if count == 0 {
                return Ok(());
            }
            if count > 0 {
                self.skip_items(g, is_map, item, depth, count as u64)?;
                continue;
            }
            let count = count.checked_neg().ok_or(Problem::BadBlockCount(count))?;
            let size = self.long()?;
            if size < 0 {
                return Err(Problem::NegativeLength(size));
            }
            let start = self.pos;
            let remaining = self.remaining();
            if size as u64 > remaining as u64 {
                return Err(Problem::LengthExceedsInput {
                    len: size as u64,
                    remaining,
                });
            }
            self.skip_items(g, is_map, item, depth, count as u64)?;
            let taken = self.pos - start;
            if taken as u64 != size as u64 {
                return Err(Problem::BadBlockSize {
                    declared: size,
                    taken,
                });
            }
        }
    }

    /// Skips the `count` items of one block.
    fn skip_items(
        &mut self,
        g: &Graph,
        is_map: bool,
        item: NodeId,
        depth: u32,
        count: u64,
    ) -> Result<(), Problem> {
        if !is_map && is_zero_sized(g, item) {
            return Ok(());
        }
        // every item takes at least this many bytes (a map key is a string: one byte at least;
        // an array item that is not zero-sized takes one byte at least)
        let min_item = match is_map {
            true => 1 + g.min_size[item as usize],
            false => g.min_size[item as usize].max(1),
        };
        let remaining = self.remaining();
        if count > remaining as u64 / min_item {
            return Err(Problem::ItemsExceedInput { count, remaining });
        }
        match (is_map, &g.flat[item as usize]) {
            // arrays of flat records (like order_lines): no recursion per item
            (false, Some(flat)) => {
                for _ in 0..count {
                    for s in flat.iter() {
                        self.skip_simple(*s)?;
                    }
                }
            }
            _ => {
                for _ in 0..count {
                    if is_map {
                        self.skip_str()?;
                    }
                    self.skip(g, item, depth + 1)?;
                }
            }
        }
        Ok(())
    }
}

/// A type whose values are always encoded as zero bytes: null, fixed(0), and records of those.
fn is_zero_sized(g: &Graph, id: NodeId) -> bool {
    fn go(g: &Graph, id: NodeId, depth: u32) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match g.node(id) {
            Node::Null | Node::Fixed { size: 0 } => true,
            Node::Record { fields, .. } => fields.iter().all(|f| go(g, f.ty, depth + 1)),
            _ => false,
        }
    }
    go(g, id, 0)
}

// ---------------------------------------------------------------------------------------------
// The decoders

#[derive(Debug)]
enum Entry {
    /// One plan (or the reason there is none) per reader.
    Known(Box<[Result<Plan, Arc<str>>; READER_COUNT]>),
    /// The registry said the schema cannot be had (not found, not Avro…).
    Missing(Arc<str>),
}

/// The decoders of one consumer thread: every writer schema id seen so far, with its plans.
/// Not `Sync` (it caches the last plan per reader in a `Cell`); give each thread its own.
#[derive(Debug, Default)]
pub struct Decoders {
    entries: Vec<(u32, Entry)>,
    index: HashMap<u32, usize>,
    /// Per reader: the last (schema id, entry index) used, to skip the hash lookup.
    hot: [Cell<(u32, usize)>; READER_COUNT],
}

impl Decoders {
    /// Decoders that know no schema id yet.
    pub fn new() -> Decoders {
        LazyLock::force(&READERS);
        Decoders::default()
    }

    /// Whether `schema_id` was learned (or learned as missing).
    pub fn knows(&self, schema_id: u32) -> bool {
        self.index.contains_key(&schema_id)
    }

    /// Compiles the plans of a writer schema fetched for `schema_id`, against every reader, once:
    /// learning an id again is a no-op (ids are immutable in a registry), except that it replaces
    /// an earlier [`learn_missing`](Self::learn_missing). An incompatible writer schema is not an
    /// error here: decoding a record of that id for that reader reports it.
    pub fn learn(&mut self, schema_id: u32, schema: &WriterSchema) {
        if let Some(&i) = self.index.get(&schema_id)
            && matches!(self.entries[i].1, Entry::Known(_))
        {
            return;
        }
        let plans: [Result<Plan, Arc<str>>; READER_COUNT] =
            std::array::from_fn(|r| Plan::compile(&READERS[r], &schema.graph).map_err(Arc::from));
        self.insert(schema_id, Entry::Known(Box::new(plans)));
    }

    /// Records that `schema_id` cannot be had (the registry said not found, or the schema is not
    /// usable Avro): records with it then fail with [`DecodeError::SchemaUnavailable`] instead of
    /// asking again. Does nothing if the id is already learned.
    pub fn learn_missing(&mut self, schema_id: u32, reason: impl Into<String>) {
        if !self.knows(schema_id) {
            self.insert(schema_id, Entry::Missing(Arc::from(reason.into())));
        }
    }

    fn insert(&mut self, schema_id: u32, entry: Entry) {
        match self.index.get(&schema_id) {
            Some(&i) => self.entries[i].1 = entry,
            None => {
                self.index.insert(schema_id, self.entries.len());
                self.entries.push((schema_id, entry));
            }
        }
    }

    #[inline]
    fn plan(&self, reader: usize, schema_id: u32) -> Result<&Plan, DecodeError> {
        let (hot_id, hot_index) = self.hot[reader].get();
        let index = if hot_id == schema_id {
            hot_index
        } else {
            let i = *self
                .index
                .get(&schema_id)
                .ok_or(DecodeError::UnknownSchemaId(schema_id))?;
            self.hot[reader].set((schema_id, i));
            i
        };
        match self.entries.get(index).map(|e| &e.1) {
            Some(Entry::Known(plans)) => {
                plans[reader]
                    .as_ref()
                    .map_err(|reason| DecodeError::Incompatible {
                        schema_id,
                        reader: READERS[reader].name,
                        reason: reason.clone(),
                    })
            }
            Some(Entry::Missing(reason)) => Err(DecodeError::SchemaUnavailable {
                schema_id,
                reason: reason.clone(),
            }),
            None => Err(DecodeError::UnknownSchemaId(schema_id)),
        }
    }

    #[inline]
    fn slots(&self, reader: usize, payload: &[u8]) -> Result<Slots, DecodeError> {
        let framed = framing::parse(payload)?;
        self.plan(reader, framed.schema_id)?
            .run(framed.schema_id, framed.body)
    }

    /// Decodes a Confluent-framed value of the topic of `kind`.
    #[inline]
    pub fn decode(&self, kind: InputKind, payload: &[u8]) -> Result<OrderEvent, DecodeError> {
        let slots = self.slots(reader_index(kind), payload)?;
        let store_id = store_id(&slots)?;
        let store_order_id = int_field(&slots, STORE_ORDER_ID, "store_order_id")?;
        Ok(match kind {
            InputKind::Orders => OrderEvent::Placed(OrderPlaced {
                store_id,
                store_order_id,
            }),
            InputKind::Cancelled => OrderEvent::Cancelled(OrderCancelled {
                store_id,
                store_order_id,
            }),
            InputKind::Completed => OrderEvent::Completed(OrderCompleted {
                store_id,
                store_order_id,
                rack_time_secs: duration(&slots, RACK_TIME_SECS, "rack_time_secs")?,
                order_delivery_time_secs: duration(
                    &slots,
                    ORDER_DELIVERY_TIME_SECS,
                    "order_delivery_time_secs",
                )?,
            }),
        })
    }

    /// Decodes a Confluent-framed `WaitTimes` value (the output topic, read for priors):
    /// `(store_id, wait_time minutes)`.
    #[inline]
    pub fn decode_wait_times(&self, payload: &[u8]) -> Result<(StoreId, i32), DecodeError> {
        let slots = self.slots(WAIT_TIMES, payload)?;
        let store_id = store_id(&slots)?;
        let wait_time = int_field(&slots, WAIT_TIME, "wait_time")?;
        if wait_time < 0 {
            return Err(DecodeError::Invalid(format!(
                "wait_time must not be negative, got {wait_time}"
            )));
        }
        Ok((store_id, wait_time))
    }
}

#[inline]
fn int_field(slots: &Slots, slot: usize, name: &str) -> Result<i32, DecodeError> {
    match slots[slot] {
        Some(v) => i32::try_from(v)
            .map_err(|_| DecodeError::Invalid(format!("{name} {v} does not fit in 32 bits"))),
        // a required slot is always fed by a writer field (else no plan): None is a null value
        None => Err(DecodeError::Invalid(format!(
            "{name} is null (the writer's schema makes it optional), but every record needs one"
        ))),
    }
}

#[inline]
fn store_id(slots: &Slots) -> Result<StoreId, DecodeError> {
    let v = int_field(slots, STORE_ID, "store_id")?;
    if v <= 0 {
        return Err(DecodeError::Invalid(format!(
            "store_id must be positive, got {v}"
        )));
    }
    Ok(v)
}

#[inline]
fn duration(slots: &Slots, slot: usize, name: &str) -> Result<Option<i32>, DecodeError> {
    match slots[slot] {
        None => Ok(None),
        Some(_) => {
            let v = int_field(slots, slot, name)?;
            if v < 0 {
                return Err(DecodeError::Invalid(format!(
                    "{name} must not be negative, got {v}"
                )));
            }
            Ok(Some(v))
        }
    }
}

#[cfg(test)]
mod tests;

//! The Confluent wire format: byte `0x00`, the writer schema's registry id as 4 bytes big-endian,
//! then the Avro binary body.

/// The first byte of every Confluent-framed value.
pub const MAGIC_BYTE: u8 = 0x00;
/// Magic byte + schema id.
pub const HEADER_LEN: usize = 5;

/// A framed value, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The writer schema's registry id (1..=`i32::MAX`).
    pub schema_id: u32,
    /// The Avro binary body (may be empty: a record without fields encodes to nothing).
    pub body: &'a [u8],
}

/// Why a payload is not Confluent-framed Avro. Always permanent: the record goes to the dead
/// letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error(
        "empty value: a Confluent-framed Avro value has at least 5 bytes (magic byte 0x00, 4-byte schema id)"
    )]
    Empty,
    #[error(
        "value too short: {len} byte(s), a Confluent-framed Avro value has at least 5 (magic byte 0x00, 4-byte schema id)"
    )]
    TooShort { len: usize },
    #[error(
        "wrong magic byte 0x{found:02x} (expected 0x00): the value is not in the Confluent wire format"
    )]
    BadMagic { found: u8 },
    #[error("invalid schema id {id} in the Confluent header: registry ids are 1..=2147483647")]
    InvalidSchemaId { id: u32 },
}

/// Splits a Confluent-framed value into schema id and body.
#[inline]
pub fn parse(payload: &[u8]) -> Result<Framed<'_>, FramingError> {
    match payload {
        [MAGIC_BYTE, a, b, c, d, body @ ..] => {
            let id = u32::from_be_bytes([*a, *b, *c, *d]);
            if id == 0 || id > i32::MAX as u32 {
                return Err(FramingError::InvalidSchemaId { id });
            }
            Ok(Framed {
                schema_id: id,
                body,
            })
        }
        [] => Err(FramingError::Empty),
        [first, ..] if *first != MAGIC_BYTE => Err(FramingError::BadMagic { found: *first }),
        short => Err(FramingError::TooShort { len: short.len() }),
    }
}

/// Appends the 5-byte header for `schema_id` to `buf`.
#[inline]
pub fn write_header(buf: &mut Vec<u8>, schema_id: u32) {
    buf.push(MAGIC_BYTE);
    buf.extend_from_slice(&schema_id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_body() {
        let f = parse(&[0, 0, 0, 1, 2, 9, 8]).unwrap();
        assert_eq!(
            f,
            Framed {
                schema_id: 258,
                body: &[9, 8]
            }
        );
        let f = parse(&[0, 0x7f, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(f.schema_id, i32::MAX as u32);
        assert!(f.body.is_empty());
    }

    #[test]
    fn framing_errors_are_precise() {
        assert_eq!(parse(&[]), Err(FramingError::Empty));
        assert_eq!(parse(&[0]), Err(FramingError::TooShort { len: 1 }));
        assert_eq!(parse(&[0, 0, 0, 1]), Err(FramingError::TooShort { len: 4 }));
        assert_eq!(
            parse(&[1, 0, 0, 0, 1, 2]),
            Err(FramingError::BadMagic { found: 1 })
        );
        // a short value with a wrong first byte is reported as not Confluent at all
        assert_eq!(parse(b"{"), Err(FramingError::BadMagic { found: b'{' }));
        assert_eq!(
            parse(&[0, 0, 0, 0, 0, 2]),
            Err(FramingError::InvalidSchemaId { id: 0 })
        );
        assert_eq!(
            parse(&[0, 0x80, 0, 0, 0, 2]),
            Err(FramingError::InvalidSchemaId { id: 0x8000_0000 })
        );
        assert_eq!(
            FramingError::BadMagic { found: 0x7b }.to_string(),
            "wrong magic byte 0x7b (expected 0x00): the value is not in the Confluent wire format"
        );
        assert!(
            FramingError::TooShort { len: 3 }
                .to_string()
                .contains("3 byte(s)")
        );
    }

    #[test]
    fn header_round_trips() {
        let mut buf = Vec::new();
        write_header(&mut buf, 123_456);
        buf.push(42);
        assert_eq!(
            parse(&buf).unwrap(),
            Framed {
                schema_id: 123_456,
                body: &[42]
            }
        );
    }
}

//! The protobuf wire format, by hand where `prost` would build messages first: a back-to-front
//! writer (a message's fields are written before its header, so every length is known when it
//! is needed and nothing is encoded twice or copied into its parent), a front-to-back writer
//! for frames around bytes already encoded, and a reader that walks fields without decoding.
//!
//! [`Reverse`] callers write a message's fields in *reverse* order; [`Reverse::finish`] turns
//! the bytes around once at the end.

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// How many bytes `v` takes as a varint.
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// How many bytes a length-delimited field `field` of `len` bytes takes, header included.
pub fn len_field_size(field: u32, len: usize) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(len as u64) + len
}

/// Appends the header of length-delimited field `field` whose `len` bytes follow.
pub fn len_field_header(out: &mut Vec<u8>, field: u32, len: usize) {
    put_varint(out, (u64::from(field) << 3) | LEN);
    put_varint(out, len as u64);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One field's value, as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// A varint.
    Varint(u64),
    /// Eight bytes (`fixed64`, `double`).
    Fixed64(u64),
    /// Length-delimited bytes (string, bytes, message, packed).
    Len(&'a [u8]),
    /// Four bytes (`fixed32`, `float`).
    Fixed32(u32),
}

/// Why bytes are not a protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf: {0}")]
pub struct WireError(pub &'static str);

/// The fields of one message, front to back, checked as they are read.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The fields of `message`.
    #[inline]
    pub fn new(message: &'a [u8]) -> Self {
        Self { buf: message }
    }

    /// How many bytes are left to read: the fields read since are `message` between two counts.
    #[inline]
    pub fn left(&self) -> usize {
        self.buf.len()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags, short lengths and small numbers take one byte.
        if let [byte, rest @ ..] = self.buf
            && *byte < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(*byte));
        }
        let mut v = 0u64;
        for (i, byte) in self.buf.iter().take(10).enumerate() {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.buf = &self.buf[i + 1..];
                return Ok(v);
            }
        }
        Err(WireError("a varint is cut short or too long"))
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.buf.len() {
            return Err(WireError("a field runs past the end of its message"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.buf = &[];
        }
        Some(field)
    }
}

impl<'a> Fields<'a> {
    /// The next field (inlined into every reader's loop: it runs once per field read).
    #[inline(always)]
    fn field(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let key = self.varint()?;
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(WireError("a field number is out of range"))?;
        let value = match key & 7 {
            VARINT => Value::Varint(self.varint()?),
            FIXED64 => {
                let b = self.take(8)?;
                Value::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or_default()))
            }
            LEN => {
                let n = usize::try_from(self.varint()?)
                    .map_err(|_| WireError("a length is out of range"))?;
                Value::Len(self.take(n)?)
            }
            FIXED32 => {
                let b = self.take(4)?;
                Value::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or_default()))
            }
            _ => return Err(WireError("an unknown wire type")),
        };
        Ok((number, value))
    }
}

/// Protobuf bytes written from the last to the first.
#[derive(Debug, Default)]
pub struct Reverse {
    /// The encoding, byte-reversed.
    buf: Vec<u8>,
}

impl Reverse {
    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// How many bytes have been written.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Forgets everything written after the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.buf.truncate(len);
    }

    /// Writes again what was written between lengths `from` and `to` (which were [`Self::len`]).
    pub fn repeat(&mut self, from: usize, to: usize) {
        self.buf.extend_from_within(from..to);
    }

    /// Writes bytes already byte-reversed.
    pub fn append_reversed(&mut self, reversed: &[u8]) {
        self.buf.extend_from_slice(reversed);
    }

    /// The encoding, first byte first.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.reverse();
        self.buf
    }

    fn raw_varint(&mut self, mut v: u64) {
        let mut bytes = [0u8; 10];
        let mut n = 0;
        while v >= 0x80 {
            bytes[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        bytes[n] = v as u8;
        self.buf.extend(bytes[..=n].iter().rev());
    }

    fn key(&mut self, field: u32, wire_type: u64) {
        self.raw_varint((u64::from(field) << 3) | wire_type);
    }

    /// A `fixed64`/`double` field, written even when zero (an `optional` or `oneof` field).
    pub fn fixed64_always(&mut self, field: u32, v: u64) {
        self.buf.extend(v.to_be_bytes());
        self.key(field, FIXED64);
    }

    /// A `fixed64` field, left out when zero as proto3 does.
    pub fn fixed64(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.fixed64_always(field, v);
        }
    }

    /// A `double` field, left out when zero as proto3 does.
    pub fn double(&mut self, field: u32, v: f64) {
        if v.to_bits() != 0 {
            self.fixed64_always(field, v.to_bits());
        }
    }

    /// A `fixed32` field, left out when zero as proto3 does.
    pub fn fixed32(&mut self, field: u32, v: u32) {
        if v != 0 {
            self.buf.extend(v.to_be_bytes());
            self.key(field, FIXED32);
        }
    }

    /// A varint field (`uint64`, `int64`, `bool`, enum), written even when zero.
    pub fn varint_always(&mut self, field: u32, v: u64) {
        self.raw_varint(v);
        self.key(field, VARINT);
    }

    /// A varint field, left out when zero.
    pub fn varint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.varint_always(field, v);
        }
    }

    /// A `sint32` field (zig-zag), left out when zero.
    pub fn sint32(&mut self, field: u32, v: i32) {
        self.varint(field, u64::from(((v << 1) ^ (v >> 31)) as u32));
    }

    /// A `bytes` or `string` field, written even when empty.
    pub fn bytes_always(&mut self, field: u32, b: &[u8]) {
        let at = self.buf.len();
        self.buf.extend_from_slice(b);
        self.buf[at..].reverse();
        self.raw_varint(b.len() as u64);
        self.key(field, LEN);
    }

    /// A `bytes` or `string` field, left out when empty.
    pub fn bytes(&mut self, field: u32, b: &[u8]) {
        if !b.is_empty() {
            self.bytes_always(field, b);
        }
    }

    /// An embedded message whose fields `write` writes (in reverse), present even when empty.
    pub fn message(&mut self, field: u32, write: impl FnOnce(&mut Self)) {
        let start = self.buf.len();
        write(self);
        let len = self.buf.len() - start;
        self.raw_varint(len as u64);
        self.key(field, LEN);
    }

    /// A packed `repeated fixed64`/`double` field, left out when empty.
    pub fn packed_fixed64(&mut self, field: u32, values: impl DoubleEndedIterator<Item = u64>) {
        let start = self.buf.len();
        for v in values.rev() {
            self.buf.extend(v.to_be_bytes());
        }
        self.packed_header(field, start);
    }

    /// A packed `repeated uint64` field, left out when empty.
    pub fn packed_varint(&mut self, field: u32, values: impl DoubleEndedIterator<Item = u64>) {
        let start = self.buf.len();
        for v in values.rev() {
            self.raw_varint(v);
        }
        self.packed_header(field, start);
    }

    fn packed_header(&mut self, field: u32, start: usize) {
        let len = self.buf.len() - start;
        if len > 0 {
            self.raw_varint(len as u64);
            self.key(field, LEN);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_what_it_writes_and_refuses_what_is_cut() {
        let mut w = Reverse::default();
        w.bytes_always(12, b"name");
        w.fixed64(1, 7);
        w.varint_always(2, 300);
        let bytes = w.finish();
        let fields: Vec<_> = Fields::new(&bytes)
            .collect::<Result<_, _>>()
            .expect("valid");
        assert_eq!(
            fields,
            [
                (2, Value::Varint(300)),
                (1, Value::Fixed64(7)),
                (12, Value::Len(b"name"))
            ]
        );
        let cut = &bytes[..bytes.len() - 1];
        assert_eq!(
            Fields::new(cut).last(),
            Some(Err(WireError("a field runs past the end of its message")))
        );
        assert_eq!(
            Fields::new(&[0x0b]).next(),
            Some(Err(WireError("an unknown wire type")))
        );
        let mut framed = Vec::new();
        len_field_header(&mut framed, 2, 300);
        assert_eq!(framed.len() + 300, len_field_size(2, 300));
        assert_eq!(varint_len(0), 1);
        assert_eq!(varint_len(127), 1);
        assert_eq!(varint_len(128), 2);
        assert_eq!(varint_len(u64::MAX), 10);
    }

    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogramDataPoint, exponential_histogram_data_point::Buckets,
    };
    use prost::Message;

    use super::*;

    #[test]
    fn writes_what_prost_writes() {
        let want = ExponentialHistogramDataPoint {
            start_time_unix_nano: 1,
            time_unix_nano: u64::MAX,
            count: 300,
            sum: Some(0.0),
            scale: -3,
            zero_count: 0,
            positive: Some(Buckets {
                offset: -70_000,
                bucket_counts: vec![0, 1, 300, u64::MAX],
            }),
            negative: Some(Buckets::default()),
            min: Some(-2.5),
            zero_threshold: 0.0,
            ..Default::default()
        };
        let mut w = Reverse::default();
        w.double(14, 0.0);
        w.fixed64_always(12, (-2.5f64).to_bits());
        w.message(9, |w| {
            w.packed_varint(2, std::iter::empty());
            w.sint32(1, 0);
        });
        w.message(8, |w| {
            w.packed_varint(2, [0, 1, 300, u64::MAX].into_iter());
            w.sint32(1, -70_000);
        });
        w.fixed64(7, 0);
        w.sint32(6, -3);
        w.fixed64_always(5, 0f64.to_bits());
        w.fixed64(4, 300);
        w.fixed64(3, u64::MAX);
        w.fixed64(2, 1);
        assert_eq!(w.finish(), want.encode_to_vec());
    }
}

//! A back-to-front protobuf writer: a message's fields are written before its header, so every
//! length is known when it is needed and nothing is encoded twice or copied into its parent.
//!
//! Callers write a message's fields in *reverse* order; [`Reverse::finish`] turns the bytes
//! around once at the end.

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;

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
        self.buf.extend(b.iter().rev());
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

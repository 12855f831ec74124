//! The frame encoding of a record batch, as documented on `batch` in
//! `wit/wharf.wit`. Host and guests both use this crate, so the two sides can
//! never disagree on the layout. A batch is one buffer: crossing the wasm
//! boundary costs one copy, not one allocation per field.

// One `unsafe` block, in `Reader::str`, skips re-checking ASCII strings.
#![deny(unsafe_code)]

use std::fmt;

/// One record. Source records carry `source_partition`/`source_offset`
/// (JSON objects); sink records carry the Kafka `partition` and `offset`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    /// Milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Source partition and offset as JSON objects, both or neither.
    pub source: Option<(String, String)>,
}

impl Record {
    /// The encoded size of this record, to pre-size buffers.
    pub fn encoded_len(&self) -> usize {
        let opt = |b: &Option<Vec<u8>>| b.as_ref().map_or(0, |v| 4 + v.len());
        1 + 4
            + self.topic.len()
            + self.partition.map_or(0, |_| 4)
            + self.offset.map_or(0, |_| 8)
            + self.timestamp.map_or(0, |_| 8)
            + opt(&self.key)
            + opt(&self.value)
            + 2
            + self
                .headers
                .iter()
                .map(|(k, v)| 8 + k.len() + v.len())
                .sum::<usize>()
            + self
                .source
                .as_ref()
                .map_or(0, |(p, o)| 8 + p.len() + o.len())
    }
}

const KEY: u8 = 1;
const VALUE: u8 = 1 << 1;
const PARTITION: u8 = 1 << 2;
const OFFSET: u8 = 1 << 3;
const TIMESTAMP: u8 = 1 << 4;
const SOURCE: u8 = 1 << 5;
const KNOWN: u8 = KEY | VALUE | PARTITION | OFFSET | TIMESTAMP | SOURCE;

/// Why a buffer is not a valid batch; `record` is the index it failed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub record: usize,
    pub reason: &'static str,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed record batch at record {}: {}",
            self.record, self.reason
        )
    }
}

impl std::error::Error for DecodeError {}

/// Appends records to one growing buffer.
#[derive(Default, Debug, Clone)]
pub struct BatchWriter {
    buf: Vec<u8>,
    count: u32,
}

impl BatchWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        BatchWriter {
            buf: Vec::with_capacity(bytes),
            count: 0,
        }
    }

    /// Goes on writing after the records of a batch this crate encoded.
    pub fn from_encoded(count: u32, buf: Vec<u8>) -> Self {
        BatchWriter { buf, count }
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, r: &Record) {
        let view = RecordView {
            topic: &r.topic,
            partition: r.partition,
            offset: r.offset,
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            encoded_headers: EncodedHeaders::default(),
            source: r.source.as_ref().map(|(p, o)| (p.as_str(), o.as_str())),
        };
        self.buf.reserve(r.encoded_len());
        let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        self.push_with_headers(&view, headers);
    }

    /// Appends `v` with these headers (its own are ignored): a record made
    /// of borrowed fields, such as a Kafka message, with no owned [`Record`].
    pub fn push_with_headers<'h>(
        &mut self,
        v: &RecordView<'_>,
        headers: impl IntoIterator<Item = (&'h str, &'h [u8])>,
    ) {
        self.push_with(v, |w| {
            // The count goes first; it is known once the headers are written.
            let at = w.buf.len();
            w.buf.extend_from_slice(&[0, 0]);
            let mut n = 0u16;
            for (k, val) in headers.into_iter().take(u16::MAX as usize) {
                w.bytes(k.as_bytes());
                w.bytes(val);
                n += 1;
            }
            w.buf[at..at + 2].copy_from_slice(&n.to_le_bytes());
        });
    }

    /// Appends every record of `other` after this writer's.
    pub fn append(&mut self, other: &BatchWriter) {
        self.buf.extend_from_slice(&other.buf);
        self.count += other.count;
    }

    /// Appends a record read from another batch, or made from borrowed
    /// fields with [`RecordView::new`]: no owned [`Record`] is built.
    pub fn push_view(&mut self, v: &RecordView<'_>) {
        self.buf.reserve(v.encoded_len());
        self.push_with(v, |w| {
            let h = v.encoded_headers;
            w.buf.extend_from_slice(&h.count.to_le_bytes());
            w.buf.extend_from_slice(h.data);
        });
    }

    /// Writes every field of `v` but its headers, which `headers` writes.
    fn push_with(&mut self, v: &RecordView<'_>, headers: impl FnOnce(&mut Self)) {
        let mut flags = 0;
        flags |= if v.key.is_some() { KEY } else { 0 };
        flags |= if v.value.is_some() { VALUE } else { 0 };
        flags |= if v.partition.is_some() { PARTITION } else { 0 };
        flags |= if v.offset.is_some() { OFFSET } else { 0 };
        flags |= if v.timestamp.is_some() { TIMESTAMP } else { 0 };
        flags |= if v.source.is_some() { SOURCE } else { 0 };
        self.buf.push(flags);
        self.bytes(v.topic.as_bytes());
        if let Some(p) = v.partition {
            self.buf.extend_from_slice(&p.to_le_bytes());
        }
        if let Some(o) = v.offset {
            self.buf.extend_from_slice(&o.to_le_bytes());
        }
        if let Some(t) = v.timestamp {
            self.buf.extend_from_slice(&t.to_le_bytes());
        }
        if let Some(k) = v.key {
            self.bytes(k);
        }
        if let Some(val) = v.value {
            self.bytes(val);
        }
        headers(self);
        if let Some((p, o)) = v.source {
            self.bytes(p.as_bytes());
            self.bytes(o.as_bytes());
        }
        self.count += 1;
    }

    fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(b);
    }

    /// The record count and the encoded buffer.
    pub fn finish(self) -> (u32, Vec<u8>) {
        (self.count, self.buf)
    }
}

/// Whether `b` is ASCII, for the short strings of a record: up to 16 bytes
/// are tested as two overlapping words, where `is_ascii` walks input shorter
/// than a word a byte at a time and aligns longer input first.
#[inline]
fn is_ascii_short(b: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |s: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    };
    let half = |s: &[u8]| {
        let mut a = [0u8; 4];
        a.copy_from_slice(s);
        u64::from(u32::from_le_bytes(a))
    };
    let n = b.len();
    if (8..=16).contains(&n) {
        (word(&b[..8]) | word(&b[n - 8..])) & HIGH == 0
    } else if (4..8).contains(&n) {
        (half(&b[..4]) | half(&b[n - 4..])) & HIGH == 0
    } else if n < 4 {
        b.iter().all(u8::is_ascii)
    } else {
        b.is_ascii()
    }
}

/// Encodes a slice of records into (count, buffer).
pub fn encode(records: &[Record]) -> (u32, Vec<u8>) {
    let mut w = BatchWriter::with_capacity(records.iter().map(Record::encoded_len).sum());
    for r in records {
        w.push(r);
    }
    w.finish()
}

/// One record read in place from an encoded batch: nothing is copied, so a
/// host can check a batch, or read a field or two of each record, without
/// an allocation per field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub offset: Option<i64>,
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    /// The headers as encoded in the batch, read by [`RecordView::headers`].
    pub encoded_headers: EncodedHeaders<'a>,
    pub source: Option<(&'a str, &'a str)>,
}

/// A record's headers as they are encoded in a batch: checked when the
/// record was read, and copied as they are into another batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EncodedHeaders<'a> {
    count: u16,
    data: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// A record with only a topic, to fill from borrowed fields:
    /// `RecordView { value: Some(bytes), ..RecordView::new(topic) }`.
    pub fn new(topic: &'a str) -> Self {
        RecordView {
            topic,
            partition: None,
            offset: None,
            timestamp: None,
            key: None,
            value: None,
            encoded_headers: EncodedHeaders::default(),
            source: None,
        }
    }

    /// The encoded size of this record, to pre-size buffers.
    pub fn encoded_len(&self) -> usize {
        let opt = |b: Option<&[u8]>| b.map_or(0, |v| 4 + v.len());
        1 + 4
            + self.topic.len()
            + self.partition.map_or(0, |_| 4)
            + self.offset.map_or(0, |_| 8)
            + self.timestamp.map_or(0, |_| 8)
            + opt(self.key)
            + opt(self.value)
            + 2
            + self.encoded_headers.data.len()
            + self.source.map_or(0, |(p, o)| 8 + p.len() + o.len())
    }

    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let EncodedHeaders { count: n, data } = self.encoded_headers;
        let mut r = Reader { data, pos: 0 };
        // Checked when the view was made, so the walk cannot fail here.
        (0..n).map_while(move |_| Some((r.str().ok()?, r.bytes().ok()?)))
    }

    pub fn to_record(&self) -> Record {
        Record {
            topic: self.topic.to_owned(),
            partition: self.partition,
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_vec()))
                .collect(),
            source: self.source.map(|(p, o)| (p.to_owned(), o.to_owned())),
        }
    }
}

/// Reads the records of a batch in place; an item is an error once the
/// buffer stops being a valid batch (and the iterator ends after it).
pub fn views(count: u32, data: &[u8]) -> Views<'_> {
    Views {
        reader: Reader { data, pos: 0 },
        count: count as usize,
        next: 0,
        failed: false,
    }
}

pub struct Views<'a> {
    reader: Reader<'a>,
    count: usize,
    next: usize,
    failed: bool,
}

impl<'a> Iterator for Views<'a> {
    type Item = Result<RecordView<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next > self.count {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let item = if i == self.count {
            // Past the last record: the buffer must be used up exactly.
            if self.reader.pos == self.reader.data.len() {
                return None;
            }
            Err(DecodeError {
                record: i,
                reason: "bytes left over after the last record",
            })
        } else {
            self.reader
                .view()
                .map_err(|reason| DecodeError { record: i, reason })
        };
        self.failed = item.is_err();
        Some(item)
    }
}

/// Checks that `count` records use up the buffer exactly, without copying
/// anything out of it.
pub fn validate(count: u32, data: &[u8]) -> Result<(), DecodeError> {
    // Walks the layout without building views: a host checks every batch a
    // plugin returns, and this is half the cost of reading each one.
    let mut reader = Reader { data, pos: 0 };
    for record in 0..count as usize {
        reader
            .skip_record()
            .map_err(|reason| DecodeError { record, reason })?;
    }
    if reader.pos != data.len() {
        return Err(DecodeError {
            record: count as usize,
            reason: "bytes left over after the last record",
        });
    }
    Ok(())
}

/// Decodes a whole batch, checking that `count` records use up the buffer exactly.
pub fn decode(count: u32, data: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut out = Vec::with_capacity(count.min(1 << 20) as usize);
    for v in views(count, data) {
        out.push(v?.to_record());
    }
    Ok(out)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        // `pos <= data.len()` always holds, so this cannot overflow, even
        // with a 32-bit usize.
        if n > self.data.len() - self.pos {
            return Err("truncated");
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        self.take(n)
    }

    #[inline]
    #[allow(unsafe_code)]
    fn str(&mut self) -> Result<&'a str, &'static str> {
        let b = self.bytes()?;
        // Topics and source offsets are short ASCII strings, and a host
        // checks every string of every batch a plugin returns: this is on
        // the hot path, where `from_utf8` is a call that walks short input
        // a byte at a time.
        if is_ascii_short(b) {
            // SAFETY: ASCII bytes are valid UTF-8.
            return Ok(unsafe { std::str::from_utf8_unchecked(b) });
        }
        std::str::from_utf8(b).map_err(|_| "string is not UTF-8")
    }

    /// Checks one record as [`Reader::view`] reads it, with the same errors.
    fn skip_record(&mut self) -> Result<(), &'static str> {
        // Bytes of the fixed fields, indexed by the partition, offset and
        // timestamp flag bits (4, 8 and 8 bytes).
        const FIXED: [usize; 8] = [0, 4, 8, 12, 8, 12, 16, 20];
        const _: () = assert!(PARTITION == 1 << 2 && OFFSET == 1 << 3 && TIMESTAMP == 1 << 4);
        let [flags] = self.array::<1>()?;
        if flags & !KNOWN != 0 {
            return Err("unknown flag bits");
        }
        self.str()?;
        self.take(FIXED[usize::from((flags >> 2) & 7)])?;
        if flags & KEY != 0 {
            self.bytes()?;
        }
        if flags & VALUE != 0 {
            self.bytes()?;
        }
        let n = u16::from_le_bytes(self.array()?);
        for _ in 0..n {
            self.str()?;
            self.bytes()?;
        }
        if flags & SOURCE != 0 {
            self.str()?;
            self.str()?;
        }
        Ok(())
    }

    fn view(&mut self) -> Result<RecordView<'a>, &'static str> {
        let [flags] = self.array::<1>()?;
        if flags & !KNOWN != 0 {
            return Err("unknown flag bits");
        }
        let topic = self.str()?;
        let partition = if flags & PARTITION != 0 {
            Some(i32::from_le_bytes(self.array()?))
        } else {
            None
        };
        let offset = if flags & OFFSET != 0 {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        };
        let timestamp = if flags & TIMESTAMP != 0 {
            Some(i64::from_le_bytes(self.array()?))
        } else {
            None
        };
        let key = if flags & KEY != 0 {
            Some(self.bytes()?)
        } else {
            None
        };
        let value = if flags & VALUE != 0 {
            Some(self.bytes()?)
        } else {
            None
        };
        let n = u16::from_le_bytes(self.array()?);
        let headers_at = self.pos;
        for _ in 0..n {
            self.str()?;
            self.bytes()?;
        }
        let encoded_headers = EncodedHeaders {
            count: n,
            data: &self.data[headers_at..self.pos],
        };
        let source = if flags & SOURCE != 0 {
            Some((self.str()?, self.str()?))
        } else {
            None
        };
        Ok(RecordView {
            topic,
            partition,
            offset,
            timestamp,
            key,
            value,
            encoded_headers,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_short_ascii_check_agrees_with_is_ascii_at_every_length() {
        for n in 0..40usize {
            let b: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(is_ascii_short(&b), "length {n}");
            for at in 0..n {
                let mut high = b.clone();
                high[at] = 0xC3;
                assert!(!is_ascii_short(&high), "length {n}, high byte at {at}");
            }
        }
    }

    fn sample(i: i64) -> Record {
        Record {
            topic: format!("t{i}"),
            partition: Some(i as i32),
            offset: if i % 2 == 0 { Some(i * 10) } else { None },
            timestamp: Some(1_700_000_000_000 + i),
            key: Some(vec![i as u8; 3]),
            value: if i % 3 == 0 {
                None
            } else {
                Some(b"{\"a\":1}".to_vec())
            },
            headers: vec![("h".into(), vec![1, 2]), ("g".into(), vec![])],
            source: Some(("{\"p\":0}".into(), format!("{{\"seq\":{i}}}"))),
        }
    }

    #[test]
    fn round_trips_every_optional_field() {
        let records: Vec<Record> = (0..50).map(sample).chain([Record::default()]).collect();
        let (n, buf) = encode(&records);
        assert_eq!(n, 51);
        assert_eq!(
            buf.len(),
            records.iter().map(Record::encoded_len).sum::<usize>()
        );
        assert_eq!(decode(n, &buf).unwrap(), records);
    }

    #[test]
    fn rejects_truncated_and_oversized_buffers() {
        let (n, buf) = encode(&[sample(1), sample(2)]);
        let err = decode(n, &buf[..buf.len() - 1]).unwrap_err();
        assert_eq!(err.record, 1);
        assert_eq!(err.reason, "truncated");
        let err = decode(n - 1, &buf).unwrap_err();
        assert_eq!(err.reason, "bytes left over after the last record");
        let err = decode(1, &[0x80, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err.reason, "unknown flag bits");
    }

    #[test]
    fn validate_fails_where_decode_does() {
        let records: Vec<Record> = (0..12).map(sample).chain([Record::default()]).collect();
        let (n, buf) = encode(&records);
        assert_eq!(validate(n, &buf), Ok(()));
        for cut in 0..buf.len() {
            let decoded = decode(n, &buf[..cut]).map(|_| ());
            assert!(decoded.is_err());
            assert_eq!(validate(n, &buf[..cut]), decoded, "cut at {cut}");
        }
        for count in [0, n - 1, n + 1] {
            assert_eq!(validate(count, &buf), decode(count, &buf).map(|_| ()));
        }
        let mut bad = buf.clone();
        bad[0] |= 0x80;
        assert_eq!(validate(n, &bad), decode(n, &bad).map(|_| ()));
        let err = validate(1, &[0, 1, 0, 0, 0, 0xff, 0, 0]).unwrap_err();
        assert_eq!(err.reason, "string is not UTF-8");
    }

    #[test]
    fn reads_non_ascii_strings() {
        let r = Record {
            topic: "tópico".into(),
            headers: vec![("clé".into(), vec![])],
            source: Some(("{\"p\":\"ü\"}".into(), "{}".into())),
            ..Record::default()
        };
        let (n, buf) = encode(std::slice::from_ref(&r));
        assert_eq!(decode(n, &buf).unwrap(), vec![r]);
    }

    #[test]
    fn rejects_invalid_utf8_topic() {
        let err = decode(1, &[0, 1, 0, 0, 0, 0xff, 0, 0]).unwrap_err();
        assert_eq!(err.reason, "string is not UTF-8");
    }

    #[test]
    fn views_read_in_place_what_decode_copies() {
        let records: Vec<Record> = (0..20).map(sample).collect();
        let (n, buf) = encode(&records);
        assert_eq!(validate(n, &buf), Ok(()));
        let viewed: Vec<Record> = views(n, &buf).map(|v| v.unwrap().to_record()).collect();
        assert_eq!(viewed, records);
        let first = views(n, &buf).next().unwrap().unwrap();
        assert_eq!(first.topic, "t0");
        assert_eq!(first.source, Some(("{\"p\":0}", "{\"seq\":0}")));
        let h: Vec<_> = first.headers().collect();
        assert_eq!(h, vec![("h", &[1u8, 2][..]), ("g", &[][..])]);
        let err = validate(n, &buf[..buf.len() - 3]).unwrap_err();
        assert_eq!((err.record, err.reason), (19, "truncated"));
        assert!(validate(n - 1, &buf).is_err());
    }

    #[test]
    fn views_copy_into_another_batch_unchanged() {
        let records: Vec<Record> = (0..20).map(sample).collect();
        let (n, buf) = encode(&records);
        let mut w = BatchWriter::default();
        for v in views(n, &buf) {
            let v = v.unwrap();
            assert_eq!(v.encoded_len(), v.to_record().encoded_len());
            w.push_view(&v);
        }
        assert_eq!(w.finish(), (n, buf));
        let mut w = BatchWriter::default();
        w.push_view(&RecordView {
            value: Some(b"v"),
            source: Some(("{}", "{}")),
            ..RecordView::new("made")
        });
        let (n, buf) = w.finish();
        let made = &decode(n, &buf).unwrap()[0];
        assert_eq!(made.topic, "made");
        assert_eq!(made.value.as_deref(), Some(&b"v"[..]));
        assert!(made.headers.is_empty() && made.key.is_none());
    }

    #[test]
    fn borrowed_headers_and_appended_writers_encode_as_records_do() {
        let records: Vec<Record> = (0..6).map(sample).collect();
        let (mut first, mut second) = (BatchWriter::default(), BatchWriter::default());
        for (i, r) in records.iter().enumerate() {
            let borrowed = RecordView {
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                source: r.source.as_ref().map(|(p, o)| (p.as_str(), o.as_str())),
                ..RecordView::new(&r.topic)
            };
            let headers = r.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
            let w = if i < 2 { &mut first } else { &mut second };
            w.push_with_headers(&borrowed, headers);
        }
        first.append(&second);
        assert_eq!(first.finish(), encode(&records));
    }

    #[test]
    fn huge_declared_count_does_not_preallocate() {
        assert!(decode(u32::MAX, &[]).is_err());
    }
}

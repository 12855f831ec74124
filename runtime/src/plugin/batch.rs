//! A record batch as it crosses the boundary: the frame encoding, checked
//! once when a plugin hands it over. Batches pass from one plugin to the
//! next (a source's poll into a transform chain, one transform into the
//! next, a chain into a sink's put) without being decoded into records and
//! encoded again, which cost more than the calls themselves.

use wharf_records::{Record, RecordView};

use super::bindings::types;

/// A valid batch: every record in it reads without error.
#[derive(Clone, Debug)]
pub struct RecordBatch(types::Batch);

impl Default for RecordBatch {
    fn default() -> Self {
        RecordBatch(types::Batch {
            count: 0,
            data: Vec::new(),
        })
    }
}

impl RecordBatch {
    pub fn encode(records: &[Record]) -> Self {
        let (count, data) = wharf_records::encode(records);
        RecordBatch(types::Batch { count, data })
    }

    /// A batch the host wrote itself with `wharf-records` (a Kafka consumer's
    /// messages, a bus delivery), so it is not checked again.
    pub fn from_writer(w: wharf_records::BatchWriter) -> Self {
        let (count, data) = w.finish();
        RecordBatch(types::Batch { count, data })
    }

    /// A writer that appends after this batch's records.
    pub fn into_writer(self) -> wharf_records::BatchWriter {
        wharf_records::BatchWriter::from_encoded(self.0.count, self.0.data)
    }

    /// Checks a batch a plugin returned, copying nothing.
    pub(super) fn checked(b: types::Batch) -> Result<Self, wharf_records::DecodeError> {
        wharf_records::validate(b.count, &b.data)?;
        Ok(RecordBatch(b))
    }

    pub(super) fn wit(&self) -> &types::Batch {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.0.count == 0
    }

    /// The records, read in place.
    pub fn views(&self) -> impl Iterator<Item = RecordView<'_>> {
        // Checked on construction, so no item is an error.
        wharf_records::views(self.0.count, &self.0.data).filter_map(Result::ok)
    }

    pub fn to_records(&self) -> Vec<Record> {
        self.views().map(|v| v.to_record()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_batch_reads_back_and_a_broken_one_is_refused() {
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                topic: format!("t{i}"),
                value: Some(vec![i as u8; 4]),
                ..Record::default()
            })
            .collect();
        let b = RecordBatch::encode(&records);
        let back = RecordBatch::checked(b.wit().clone()).expect("valid");
        assert_eq!(back.len(), 3);
        assert_eq!(back.to_records(), records);
        let mut broken = b.wit().clone();
        broken.data.pop();
        assert!(RecordBatch::checked(broken).is_err());
    }
}

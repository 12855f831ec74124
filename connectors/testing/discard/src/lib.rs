//! Drops everything it is given, counting records: the benchmark's sink.

use wharf_sdk::{Batch, Config, ConfigKey, Plugin, Record, Result, Sink};

pub struct Discard {
    seen: u64,
}

impl Plugin for Discard {
    const NAME: &'static str = "discard";
    const DESCRIPTION: &'static str = "Discards records (benchmarks)";

    fn config_spec() -> Vec<ConfigKey> {
        Vec::new()
    }
}

impl Sink for Discard {
    fn open(_: &Config) -> Result<Self> {
        Ok(Discard { seen: 0 })
    }

    fn put(&mut self, records: Vec<Record>) -> Result<()> {
        self.seen += records.len() as u64;
        Ok(())
    }

    /// In wasm the batch is counted without decoding it, as the native
    /// `put` counts its vector.
    fn put_batch(&mut self, batch: Batch) -> Result<()> {
        self.seen += u64::from(batch.len());
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        wharf_sdk::gauge_set("discarded", self.seen as f64);
        Ok(())
    }
}

wharf_sdk::export_sink!(Discard);

//! Returns its input unchanged: the benchmark's measure of transform overhead.

use wharf_sdk::{Batch, Config, ConfigKey, Plugin, Record, Result, Transform};

pub struct Identity;

impl Plugin for Identity {
    const NAME: &'static str = "identity";
    const DESCRIPTION: &'static str = "Returns records unchanged (benchmarks)";

    fn config_spec() -> Vec<ConfigKey> {
        Vec::new()
    }
}

impl Transform for Identity {
    fn open(_: &Config) -> Result<Self> {
        Ok(Identity)
    }

    fn apply(&mut self, records: Vec<Record>) -> Result<Vec<Record>> {
        Ok(records)
    }

    /// In wasm the batch goes back as it came, as the native `apply` hands
    /// back its vector: nothing is decoded.
    fn apply_batch(&mut self, batch: Batch) -> Result<Batch> {
        Ok(batch)
    }
}

wharf_sdk::export_transform!(Identity);

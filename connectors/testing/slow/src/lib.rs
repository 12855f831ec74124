//! A sink that spends `delay.ms` on every batch before discarding it: the
//! backpressure test's stand-in for a slow external system.

use wharf_sdk::{Config, ConfigKey, Plugin, Record, Result, Sink};

pub struct Slow {
    delay_ms: i64,
}

impl Plugin for Slow {
    const NAME: &'static str = "slow";
    const DESCRIPTION: &'static str = "Sink that takes delay.ms per batch (tests)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![ConfigKey::long("delay.ms")
            .default("50")
            .at_least(0.0)
            .doc("Time spent on each batch")]
    }
}

impl Sink for Slow {
    fn open(config: &Config) -> Result<Self> {
        Ok(Slow {
            delay_ms: config.i64("delay.ms")?,
        })
    }

    fn put(&mut self, records: Vec<Record>) -> Result<()> {
        // Plugins have no sleep: wait on the host clock.
        let until = wharf_sdk::now_millis() + self.delay_ms;
        while wharf_sdk::now_millis() < until {}
        wharf_sdk::counter_add("slow.records", records.len() as u64);
        Ok(())
    }
}

wharf_sdk::export_sink!(Slow);

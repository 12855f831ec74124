//! `datagen`: a source of sequence-numbered JSON records, for demos, tests and
//! benchmarks. Each source partition counts up from 0 and resumes from its
//! stored offset, so a gap or duplicate downstream is visible by inspection.

use wharf_sdk::{Config, ConfigKey, Error, Importance, Plugin, Record, Result, Source};

pub struct Datagen {
    topic: String,
    record_size: usize,
    rate: f64,
    max_records: u64,
    /// (partition, next sequence number) for the partitions this task owns.
    partitions: Vec<(u32, u64)>,
    next: usize,
    seed: u64,
    started_ms: i64,
    produced: u64,
}

impl Plugin for Datagen {
    const NAME: &'static str = "datagen";
    const DESCRIPTION: &'static str =
        "Generates sequence-numbered JSON records (for demos, tests and benchmarks)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("topic")
                .default("datagen")
                .non_empty()
                .importance(Importance::High)
                .doc("Topic the records are written to"),
            ConfigKey::double("rate")
                .default("1000")
                .at_least(0.0)
                .doc("Records per second per task; 0 means as fast as possible"),
            ConfigKey::int("record.size")
                .default("200")
                .range(Some(32.0), Some(16.0 * 1024.0 * 1024.0))
                .doc("Approximate size of each record value in bytes"),
            ConfigKey::int("partitions")
                .default("1")
                .range(Some(1.0), Some(100_000.0))
                .doc("Number of source partitions (each maps to the same Kafka partition)"),
            ConfigKey::long("max.records")
                .default("0")
                .at_least(0.0)
                .doc("Stop after this many records per source partition; 0 means never"),
            ConfigKey::long("seed")
                .default("42")
                .doc("Seed for the payload bytes, so runs are reproducible"),
            ConfigKey::list("task.partitions")
                .default("")
                .importance(Importance::Low)
                .doc("Set by the connector: the partitions one task owns"),
        ]
    }
}

fn parse_seq(offset_json: &str) -> Option<u64> {
    // Offsets look like {"seq":123}; the SDK keeps plugins free of a JSON
    // dependency where a field scan does.
    let rest = offset_json.split("\"seq\"").nth(1)?;
    let digits: String = rest
        .chars()
        .skip_while(|c| *c == ':' || c.is_whitespace())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn parse_partition(partition_json: &str) -> Option<u32> {
    let rest = partition_json.split("\"partition\"").nth(1)?;
    let digits: String = rest
        .chars()
        .skip_while(|c| *c == ':' || c.is_whitespace())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

impl Source for Datagen {
    fn task_configs(config: &Config, max_tasks: u32) -> Result<Vec<Config>> {
        let partitions = config.u64("partitions")? as u32;
        let tasks = max_tasks.clamp(1, partitions);
        Ok((0..tasks)
            .map(|t| {
                let mine: Vec<String> = (0..partitions)
                    .filter(|p| p % tasks == t)
                    .map(|p| p.to_string())
                    .collect();
                let mut c = config.clone();
                c.set("task.partitions", mine.join(","));
                c
            })
            .collect())
    }

    fn open(config: &Config, offsets: Vec<(String, String)>) -> Result<Self> {
        let mut owned: Vec<u32> = config
            .list("task.partitions")
            .iter()
            .map(|p| {
                p.parse()
                    .map_err(|_| Error::Fatal(format!("bad task.partitions entry '{p}'")))
            })
            .collect::<Result<_>>()?;
        if owned.is_empty() {
            owned = (0..config.u64("partitions")? as u32).collect();
        }
        let partitions = owned
            .into_iter()
            .map(|p| {
                let next = offsets
                    .iter()
                    .filter(|(part, _)| parse_partition(part) == Some(p))
                    .filter_map(|(_, off)| parse_seq(off))
                    .max()
                    .map_or(0, |seq| seq + 1);
                (p, next)
            })
            .collect();
        Ok(Datagen {
            topic: config.string("topic")?,
            record_size: config.u64("record.size")? as usize,
            rate: config.f64("rate")?,
            max_records: config.u64("max.records")?,
            partitions,
            next: 0,
            seed: config.i64("seed")? as u64,
            started_ms: wharf_sdk::now_millis(),
            produced: 0,
        })
    }

    fn poll(&mut self, max: u32, out: &mut Vec<Record>) -> Result<()> {
        let mut budget = max as u64;
        if self.rate > 0.0 {
            let elapsed = (wharf_sdk::now_millis() - self.started_ms).max(0) as f64 / 1000.0;
            let allowed = (self.rate * elapsed) as u64 + 1;
            budget = budget.min(allowed.saturating_sub(self.produced));
        }
        let n = self.partitions.len();
        let mut idle_rounds = 0;
        while budget > 0 && idle_rounds < n {
            let (p, seq) = self.partitions[self.next];
            self.next = (self.next + 1) % n;
            if self.max_records > 0 && seq >= self.max_records {
                idle_rounds += 1;
                continue;
            }
            idle_rounds = 0;
            out.push(self.record(p, seq));
            self.partitions[(self.next + n - 1) % n].1 = seq + 1;
            self.produced += 1;
            budget -= 1;
        }
        Ok(())
    }
}

impl Datagen {
    fn record(&self, partition: u32, seq: u64) -> Record {
        let mut value =
            format!("{{\"partition\":{partition},\"seq\":{seq},\"payload\":\"").into_bytes();
        let pad = self.record_size.saturating_sub(value.len() + 2);
        let mut x = self.seed ^ (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ u64::from(partition);
        value.reserve(pad + 2);
        for _ in 0..pad {
            // xorshift: cheap, reproducible filler in [a-z], scaled by a
            // multiply and shift: cranelift compiles `% 26` to a real
            // division, which cost more than everything else per byte.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            value.push(b'a' + (((x >> 32) * 26) >> 32) as u8);
        }
        value.extend_from_slice(b"\"}");
        Record {
            topic: self.topic.clone(),
            partition: Some(partition as i32),
            key: Some(format!("{partition}-{seq}").into_bytes()),
            value: Some(value),
            source: Some((
                format!("{{\"partition\":{partition}}}"),
                format!("{{\"seq\":{seq}}}"),
            )),
            ..Record::default()
        }
    }
}

wharf_sdk::export_source!(Datagen);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_and_partitions() {
        assert_eq!(parse_seq("{\"seq\": 41}"), Some(41));
        assert_eq!(parse_partition("{\"partition\":3}"), Some(3));
        assert_eq!(parse_seq("{}"), None);
    }
}

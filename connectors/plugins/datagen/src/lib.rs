//! `datagen`: a source of sequence-numbered JSON records, for demos, tests and
//! benchmarks. Each source partition counts up from 0 and resumes from its
//! stored offset, so a gap or duplicate downstream is visible by inspection.

use wharf_sdk::{
    BatchWriter, Config, ConfigKey, Error, Importance, Plugin, Record, RecordView, Result, Source,
};

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
    scratch: Scratch,
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
            scratch: Scratch::default(),
        })
    }

    fn poll(&mut self, max: u32, out: &mut Vec<Record>) -> Result<()> {
        self.generate(max, |r| out.push(r.to_record()));
        Ok(())
    }

    /// In wasm each record is encoded straight from the reused field buffers.
    fn poll_batch(&mut self, max: u32, out: &mut BatchWriter) -> Result<()> {
        self.generate(max, |r| out.push_view(r));
        Ok(())
    }
}

/// One record's fields, rewritten in place for each record so that making
/// one allocates nothing.
#[derive(Default)]
struct Scratch {
    key: Vec<u8>,
    value: Vec<u8>,
    partition: String,
    offset: String,
}

impl Datagen {
    /// Makes up to `max` records (fewer under `rate` or `max.records`),
    /// round robin over the task's partitions, handing each to `emit`.
    fn generate(&mut self, max: u32, mut emit: impl FnMut(&RecordView<'_>)) {
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
            emit(&self.record(p, seq));
            self.partitions[(self.next + n - 1) % n].1 = seq + 1;
            self.produced += 1;
            budget -= 1;
        }
    }

    fn record(&mut self, partition: u32, seq: u64) -> RecordView<'_> {
        let Scratch {
            key,
            value,
            partition: source_partition,
            offset: source_offset,
        } = &mut self.scratch;
        // Each number is turned into digits once, without `fmt`, in 32 bits
        // when it fits: rustc leaves a division by a constant as a wasm
        // `div` (checked with --emit asm), and `write!` made six numbers.
        let mut pbuf = itoa::Buffer::new();
        let p = pbuf.format(partition);
        let mut sbuf = itoa::Buffer::new();
        let sq = match u32::try_from(seq) {
            Ok(small) => sbuf.format(small),
            Err(_) => sbuf.format(seq),
        };
        value.clear();
        for piece in [r#"{"partition":"#, p, r#","seq":"#, sq, r#","payload":""#] {
            value.extend_from_slice(piece.as_bytes());
        }
        let pad = self.record_size.saturating_sub(value.len() + 2);
        let mut x = self.seed ^ (seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ u64::from(partition);
        let filler = value.len();
        value.resize(filler + pad, 0);
        for b in &mut value[filler..] {
            // xorshift: cheap, reproducible filler in [a-z], scaled by a
            // multiply and shift: cranelift compiles `% 26` to a real
            // division, which cost more than everything else per byte.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = b'a' + (((x >> 32) * 26) >> 32) as u8;
        }
        value.extend_from_slice(b"\"}");
        key.clear();
        for piece in [p, "-", sq] {
            key.extend_from_slice(piece.as_bytes());
        }
        source_partition.clear();
        for piece in [r#"{"partition":"#, p, "}"] {
            source_partition.push_str(piece);
        }
        source_offset.clear();
        for piece in [r#"{"seq":"#, sq, "}"] {
            source_offset.push_str(piece);
        }
        RecordView {
            partition: Some(partition as i32),
            key: Some(key),
            value: Some(value),
            source: Some((source_partition, source_offset)),
            ..RecordView::new(&self.topic)
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

    fn open(partitions: &str) -> Datagen {
        let config = Config::from_pairs(vec![
            ("rate".into(), "0".into()),
            ("partitions".into(), partitions.into()),
        ])
        .with_defaults(&Datagen::config_spec());
        Datagen::open(&config, vec![]).unwrap()
    }

    #[test]
    fn the_encoded_poll_makes_the_records_poll_does() {
        let mut records = Vec::new();
        open("2").poll(6, &mut records).unwrap();
        let mut writer = BatchWriter::default();
        open("2").poll_batch(6, &mut writer).unwrap();
        let batch = wharf_sdk::Batch::from_writer(writer);
        assert_eq!(batch.records().unwrap(), records);
        let r = &records[3];
        assert_eq!(r.topic, "datagen");
        assert_eq!(r.partition, Some(1));
        assert_eq!(r.key.as_deref(), Some(&b"1-1"[..]));
        let value = r.value.as_deref().unwrap();
        assert_eq!(value.len(), 200);
        assert!(value.starts_with(b"{\"partition\":1,\"seq\":1,\"payload\":\""));
        assert!(value.ends_with(b"\"}"));
        let source = r.source.clone().unwrap();
        assert_eq!(source, ("{\"partition\":1}".into(), "{\"seq\":1}".into()));
    }
}

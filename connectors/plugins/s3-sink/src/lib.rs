//! `s3-sink`: Confluent's S3 sink on Wharf. Records of each Kafka partition
//! gather in files named `<topics.dir>/<topic>/<encoded partition>/
//! <topic>+<partition>+<start offset>.<ext>`; a partition's files are
//! written when it reaches `flush.size` records, when record time passes
//! `rotate.interval.ms`, or at `rotate.schedule.interval.ms` wall-clock
//! boundaries. Until then the sink tells the host it is holding the
//! partition from the first unwritten offset, so the group commits no
//! further: a crash re-reads the same records into files of the same names,
//! never a duplicate object, and an object is visible only once complete.

mod file;
mod partition;
mod settings;

use std::collections::BTreeMap;

use chrono::{Offset, TimeZone};
use serde_json::Value;
use wharf_sdk::{
    Batch, Config, ConfigKey, Error, Plugin, Position, Record, RecordView, Rejected, Result, Sink,
};
use wharf_storage::{FileName, Format, Part};

use file::OpenFile;
use settings::{OnNull, Settings};

/// One Kafka partition's open files.
#[derive(Default)]
struct PartitionWriter {
    /// First offset not yet in a written file.
    start: Option<i64>,
    /// Last offset taken: a batch the host puts again after a failure is
    /// skipped up to here.
    last: Option<i64>,
    count: u64,
    /// The first record's time, for `rotate.interval.ms`.
    base_time: Option<i64>,
    /// The next wall-clock rotation, for `rotate.schedule.interval.ms`.
    deadline: Option<i64>,
    files: BTreeMap<String, OpenFile>,
}

impl PartitionWriter {
    fn due(&self, s: &Settings, now: i64) -> bool {
        self.start.is_some()
            && (self.count >= s.flush_size || self.deadline.is_some_and(|d| now >= d))
    }

    /// Writes every open file, then starts afresh.
    fn commit(&mut self, s: &Settings) -> Result<()> {
        while let Some(mut entry) = self.files.first_entry() {
            entry.get_mut().write(s)?;
            let f = entry.remove();
            wharf_sdk::counter_add("s3.files.written", 1);
            wharf_sdk::counter_add("s3.records.written", f.records);
        }
        self.start = None;
        self.count = 0;
        self.base_time = None;
        self.deadline = None;
        Ok(())
    }
}

pub struct S3Sink {
    s: Settings,
    /// Writers by topic, then Kafka partition: looked up by `&str`, so a
    /// record's topic is not copied to find its writer.
    partitions: BTreeMap<String, BTreeMap<i32, PartitionWriter>>,
    rejected: Vec<Rejected>,
}

/// The next `interval` boundary after `now`, aligned in the zone.
fn next_boundary(now: i64, interval: i64, s: &Settings) -> i64 {
    let offset = chrono::DateTime::from_timestamp_millis(now)
        .map(|t| {
            i64::from(
                s.tz.offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc(),
            ) * 1000
        })
        .unwrap_or(0);
    ((now + offset).div_euclid(interval) + 1) * interval - offset
}

impl S3Sink {
    fn rotate_due(&mut self, now: i64) -> Result<()> {
        for w in self.partitions.values_mut().flat_map(BTreeMap::values_mut) {
            if w.due(&self.s, now) {
                w.commit(&self.s)?;
            }
        }
        Ok(())
    }

    fn reject(rejected: &mut Vec<Rejected>, r: &RecordView<'_>, reason: String) {
        rejected.push(Rejected {
            record: r.to_record(),
            reason,
            deliberate: false,
        });
    }

    /// Takes one record read in place from the batch the host put: only a
    /// rejected record is copied out of it.
    fn take(&mut self, r: &RecordView<'_>, now: i64) -> Result<()> {
        let (Some(p), Some(o)) = (r.partition, r.offset) else {
            return Err(Error::Fatal(
                "s3-sink names files by Kafka partition and offset: run it with bootstrap.servers"
                    .into(),
            ));
        };
        let Self {
            s,
            partitions,
            rejected,
        } = self;
        if !partitions.contains_key(r.topic) {
            partitions.insert(r.topic.to_owned(), BTreeMap::new());
        }
        let w = partitions
            .get_mut(r.topic)
            .ok_or_else(|| Error::Fatal("topic writers vanished".into()))?
            .entry(p)
            .or_default();
        if w.last.is_some_and(|l| o <= l) {
            return Ok(());
        }
        // `last` moves only once the record is taken (written, held, skipped
        // or rejected), so a put that failed before it retries it.
        if r.value.is_none() {
            match s.on_null {
                OnNull::Ignore => {
                    w.last = Some(o);
                    return Ok(());
                }
                OnNull::Fail => {
                    w.last = Some(o);
                    Self::reject(
                        rejected,
                        r,
                        "null value (behavior.on.null.values=fail)".into(),
                    );
                    return Ok(());
                }
                OnNull::Write if matches!(s.format, Format::Parquet { .. }) => {
                    w.last = Some(o);
                    Self::reject(rejected, r, "a null value has no Parquet row".into());
                    return Ok(());
                }
                OnNull::Write => {}
            }
        }
        let parquet = matches!(s.format, Format::Parquet { .. });
        let needs_json = parquet
            || matches!(s.partitioner, partition::Partitioner::Field(_))
            || matches!(s.extractor, partition::Extractor::RecordField(_));
        let parsed: Option<Value> = if needs_json {
            r.value.and_then(|v| serde_json::from_slice(v).ok())
        } else {
            None
        };
        let row = if parquet {
            match parsed.as_ref().and_then(Value::as_object) {
                Some(o) => Some(o.clone()),
                None => {
                    w.last = Some(o);
                    Self::reject(
                        rejected,
                        r,
                        "Parquet needs values that are JSON objects".into(),
                    );
                    return Ok(());
                }
            }
        } else {
            None
        };
        let time = match s.extractor.time(r.timestamp, parsed.as_ref(), now) {
            Ok(t) => t,
            Err(e) => {
                w.last = Some(o);
                Self::reject(rejected, r, e);
                return Ok(());
            }
        };
        let encoded = match s.partitioner.encode(r.partition, parsed.as_ref(), time) {
            Ok(e) => e,
            Err(e) => {
                w.last = Some(o);
                Self::reject(rejected, r, e);
                return Ok(());
            }
        };
        let late = s
            .rotate_interval_ms
            .is_some_and(|i| w.base_time.is_some_and(|b| time - b >= i));
        let new_columns = w.files.get(&encoded).is_some_and(|f| !f.fits(row.as_ref()));
        if w.due(s, now) || late || new_columns {
            w.commit(s)?;
        }
        if w.start.is_none() {
            w.start = Some(o);
            w.base_time = Some(time);
            w.deadline = s.rotate_schedule_ms.map(|i| next_boundary(now, i, s));
        }
        let file = w.files.entry(encoded).or_insert_with_key(|enc| {
            let dir = match s.topics_dir.as_str() {
                "" => format!("{}/{enc}/", r.topic),
                d => format!("{d}/{}/{enc}/", r.topic),
            };
            OpenFile::new(
                FileName {
                    dir,
                    topic: r.topic.to_owned(),
                    partition: p,
                    start_offset: o,
                    part: Part::Values,
                    extension: s.format.extension(s.compression),
                },
                s,
            )
        });
        file.append(r, row, s)?;
        w.last = Some(o);
        w.count += 1;
        if w.count >= s.flush_size {
            w.commit(s)?;
        }
        Ok(())
    }
}

/// The setting that makes file boundaries depend on the wall clock, if any:
/// there exactly-once ends (Confluent documents the same limit).
fn wall_clock_cuts(s: &Settings) -> Option<&'static str> {
    use partition::{Extractor, Partitioner};
    let wall = matches!(s.extractor, Extractor::Wallclock);
    if s.rotate_schedule_ms.is_some() {
        Some("rotate.schedule.interval.ms is set")
    } else if wall && s.rotate_interval_ms.is_some() {
        Some("rotate.interval.ms with timestamp.extractor=Wallclock")
    } else if wall && matches!(s.partitioner, Partitioner::Time { .. }) {
        Some("a time-based partitioner with timestamp.extractor=Wallclock")
    } else {
        None
    }
}

impl Plugin for S3Sink {
    const NAME: &'static str = "s3-sink";
    const DESCRIPTION: &'static str =
        "Writes records to S3 objects as Confluent's S3 sink does (JSON, Parquet, bytes), exactly once";

    fn config_spec() -> Vec<ConfigKey> {
        settings::spec()
    }

    fn validate(config: &Config) -> Vec<wharf_sdk::ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if errors.is_empty() {
            let full = config.clone().with_defaults(&Self::config_spec());
            if let Err((key, message)) = Settings::from_config(&full) {
                errors.push(wharf_sdk::ConfigError {
                    key: key.into(),
                    message,
                });
            }
        }
        errors
    }
}

impl Sink for S3Sink {
    fn open(config: &Config) -> Result<Self> {
        let s =
            Settings::from_config(config).map_err(|(k, m)| Error::Fatal(format!("{k}: {m}")))?;
        if let Some(why) = wall_clock_cuts(&s) {
            wharf_sdk::log(
                wharf_sdk::Level::Warn,
                &format!("{why}: files are cut where the clock stands, so a replay after a crash may split records differently and write objects that overlap (duplicates, never loss); use flush.size or record time (timestamp.extractor=Record) for exactly-once files"),
            );
        }
        Ok(S3Sink {
            s,
            partitions: BTreeMap::new(),
            rejected: Vec::new(),
        })
    }

    fn put(&mut self, records: Vec<Record>) -> Result<()> {
        self.put_batch(Batch::from_records(&records))
    }

    /// Reads each record in place: a value goes from the batch the host
    /// put straight into the file's buffer.
    fn put_batch(&mut self, batch: Batch) -> Result<()> {
        let now = wharf_sdk::now_millis();
        self.rotate_due(now)?;
        for r in batch.views() {
            self.take(&r?, now)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.rotate_due(wharf_sdk::now_millis())
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }

    fn holding(&self) -> Vec<Position> {
        self.partitions
            .iter()
            .flat_map(|(topic, ws)| {
                ws.iter().filter_map(|(partition, w)| {
                    Some(Position {
                        topic: topic.clone(),
                        partition: *partition,
                        offset: w.start?,
                    })
                })
            })
            .collect()
    }

    fn revoked(&mut self, partitions: Vec<(String, i32)>) {
        for (topic, partition) in partitions {
            let Some(ws) = self.partitions.get_mut(&topic) else {
                continue;
            };
            if let Some(w) = ws.remove(&partition) {
                for (_, f) in w.files {
                    f.discard();
                }
            }
            if ws.is_empty() {
                self.partitions.remove(&topic);
            }
        }
    }

    fn close(&mut self) {
        let all: Vec<_> = self
            .partitions
            .iter()
            .flat_map(|(t, ws)| ws.keys().map(|p| (t.clone(), *p)))
            .collect();
        self.revoked(all);
    }
}

wharf_sdk::export_sink!(S3Sink);

//! `s3-source`: reads back what `s3-sink` wrote (restore or replay). Files
//! are found by listing `topics.dir`, grouped by their original topic and
//! Kafka partition and read in start-offset order, so each partition comes
//! back in order, to the same partition number. The stored offset is the
//! file and how many of its records were emitted, so a restart resumes
//! mid-file. Tasks split the original partitions between them.

mod read;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{json, Value};
use wharf_sdk::{Config, ConfigKey, Plugin, Record, Result, Source};
use wharf_storage::{keys, FileName, Part};

use read::Layout;

/// Where one original partition stands.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Start offset of the file being read (or last read), and how many of
    /// its records were emitted.
    start: Option<i64>,
    emitted: u64,
    done: bool,
}

struct Current {
    tp: (String, i32),
    name: FileName,
    records: VecDeque<Record>,
    emitted: u64,
}

pub struct S3Source {
    prefix: String,
    layout: Layout,
    topics: BTreeSet<String>,
    task: (u64, u64),
    poll_interval_ms: i64,
    progress: BTreeMap<(String, i32), Progress>,
    queue: BTreeMap<(String, i32), VecDeque<FileName>>,
    current: Option<Current>,
    last_list: Option<i64>,
}

fn source_partition(tp: &(String, i32)) -> String {
    json!({"topic": tp.0, "partition": tp.1}).to_string()
}

/// A stable spread of partitions over tasks.
fn owner(tp: &(String, i32), tasks: u64) -> u64 {
    let h = tp.0.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h.wrapping_add(tp.1 as u64)) % tasks.max(1)
}

impl S3Source {
    fn mine(&self, name: &FileName) -> bool {
        (self.topics.is_empty() || self.topics.contains(&name.topic))
            && owner(&(name.topic.clone(), name.partition), self.task.1) == self.task.0
    }

    /// Lists the folder and queues the files not yet read.
    fn list(&mut self) -> Result<()> {
        let mut found: BTreeMap<(String, i32), BTreeMap<i64, FileName>> = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = wharf_sdk::s3::list_objects(&self.prefix, after.as_deref())?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for o in &page {
                if let Some(name) = FileName::parse(&o.key) {
                    if name.part == Part::Values && self.mine(&name) {
                        let tp = (name.topic.clone(), name.partition);
                        found.entry(tp).or_default().insert(name.start_offset, name);
                    }
                }
            }
        }
        for (tp, files) in found {
            let p = self.progress.get(&tp).cloned().unwrap_or_default();
            let queued = self.queue.entry(tp.clone()).or_default();
            let reading = self
                .current
                .as_ref()
                .filter(|c| c.tp == tp)
                .map(|c| c.name.start_offset);
            let last_queued = queued.back().map(|n| n.start_offset);
            for (start, name) in files {
                let fresh = match p.start {
                    None => true,
                    Some(s) => start > s || (start == s && !p.done),
                };
                let pending =
                    reading.is_none_or(|r| start > r) && last_queued.is_none_or(|q| start > q);
                if fresh && pending {
                    queued.push_back(name);
                }
            }
        }
        Ok(())
    }

    /// Opens the next file of any partition.
    fn next_file(&mut self) -> Result<bool> {
        let tps: Vec<_> = self.queue.keys().cloned().collect();
        for tp in tps {
            let Some(name) = self.queue.get_mut(&tp).and_then(VecDeque::pop_front) else {
                continue;
            };
            let Some(records) = read::records(&name, &self.layout)? else {
                continue;
            };
            let p = self.progress.entry(tp.clone()).or_default();
            // Resuming mid-file: skip what was emitted before.
            let skip = if p.start == Some(name.start_offset) && !p.done {
                p.emitted
            } else {
                0
            };
            let mut records: VecDeque<Record> = records.into();
            records.drain(..(skip as usize).min(records.len()));
            self.current = Some(Current {
                tp,
                name,
                records,
                emitted: skip,
            });
            return Ok(true);
        }
        Ok(false)
    }
}

impl Plugin for S3Source {
    const NAME: &'static str = "s3-source";
    const DESCRIPTION: &'static str =
        "Replays files s3-sink wrote back into Kafka, in order per original partition, resumable";

    fn config_spec() -> Vec<ConfigKey> {
        let mut spec = keys::connection();
        spec.extend([
            ConfigKey::list("topics")
                .default("")
                .doc("Original topics to restore; empty restores every topic under topics.dir"),
            ConfigKey::long("s3.poll.interval.ms")
                .default("5000")
                .at_least(100.0)
                .doc("How often to list the bucket for new files once everything listed was read"),
        ]);
        spec
    }

    fn validate(config: &Config) -> Vec<wharf_sdk::ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        let full = config.clone().with_defaults(&Self::config_spec());
        if let Ok(class) = full.string("format.class") {
            if let Err(message) = wharf_storage::Format::parse(&class, "snappy") {
                errors.push(wharf_sdk::ConfigError {
                    key: "format.class".into(),
                    message,
                });
            }
        }
        errors
    }
}

impl Source for S3Source {
    fn task_configs(config: &Config, max_tasks: u32) -> Result<Vec<Config>> {
        let n = max_tasks.max(1);
        Ok((0..n)
            .map(|i| {
                let mut c = config.clone();
                c.set("task.index", i.to_string());
                c.set("task.count", n.to_string());
                c
            })
            .collect())
    }

    fn open(config: &Config, offsets: Vec<(String, String)>) -> Result<Self> {
        let dir = config
            .string("topics.dir")?
            .trim()
            .trim_matches('/')
            .to_string();
        let mut progress = BTreeMap::new();
        for (partition, offset) in offsets {
            let (Ok(p), Ok(o)) = (
                serde_json::from_str::<Value>(&partition),
                serde_json::from_str::<Value>(&offset),
            ) else {
                continue;
            };
            if let (Some(t), Some(n)) = (p["topic"].as_str(), p["partition"].as_i64()) {
                progress.insert(
                    (t.to_string(), n as i32),
                    Progress {
                        start: o["start"].as_i64(),
                        emitted: o["index"].as_u64().unwrap_or(0),
                        done: o["done"].as_bool().unwrap_or(false),
                    },
                );
            }
        }
        let index = config
            .raw("task.index")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let count = config
            .raw("task.count")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        Ok(S3Source {
            prefix: if dir.is_empty() {
                String::new()
            } else {
                format!("{dir}/")
            },
            layout: Layout {
                separator: keys::unescape(&config.string("format.bytearray.separator")?),
                keys: config.bool("store.kafka.keys")?,
                headers: config.bool("store.kafka.headers")?,
            },
            topics: config.list("topics").into_iter().collect(),
            task: (index, count),
            poll_interval_ms: config.i64("s3.poll.interval.ms")?,
            progress,
            queue: BTreeMap::new(),
            current: None,
            last_list: None,
        })
    }

    fn poll(&mut self, max: u32, out: &mut Vec<Record>) -> Result<()> {
        let now = wharf_sdk::now_millis();
        let idle = self.current.is_none() && self.queue.values().all(VecDeque::is_empty);
        if idle
            && self
                .last_list
                .is_none_or(|t| now - t >= self.poll_interval_ms)
        {
            self.list()?;
            self.last_list = Some(now);
        }
        while out.len() < max as usize {
            if self.current.as_ref().is_none_or(|c| c.records.is_empty()) {
                if let Some(c) = self.current.take() {
                    // A file with nothing left: mark it read.
                    let p = self.progress.entry(c.tp).or_default();
                    p.start = Some(c.name.start_offset);
                    p.emitted = c.emitted;
                    p.done = true;
                }
                if !self.next_file()? {
                    break;
                }
                continue;
            }
            let Some(c) = self.current.as_mut() else {
                break;
            };
            let Some(mut r) = c.records.pop_front() else {
                continue;
            };
            c.emitted += 1;
            let done = c.records.is_empty();
            r.source = Some((
                source_partition(&c.tp),
                json!({"object": c.name.key(), "start": c.name.start_offset, "index": c.emitted, "done": done})
                    .to_string(),
            ));
            out.push(r);
        }
        Ok(())
    }
}

wharf_sdk::export_source!(S3Source);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_spread_over_tasks_and_stay_put() {
        let tps: Vec<(String, i32)> = (0..12).map(|p| ("orders".to_string(), p)).collect();
        let owners: Vec<u64> = tps.iter().map(|tp| owner(tp, 3)).collect();
        assert!((0..3).all(|t| owners.contains(&t)));
        assert_eq!(
            owners,
            tps.iter().map(|tp| owner(tp, 3)).collect::<Vec<_>>()
        );
        assert_eq!(owner(&tps[5], 1), 0);
    }
}

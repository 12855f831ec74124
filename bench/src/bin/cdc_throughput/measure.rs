//! Reading what an engine wrote: arrival times (throughput from the first
//! event to the last) and, for live runs, latency from the commit
//! (`source.ts_ms`) to the moment the event can be consumed from Kafka.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message};

use crate::engines::BOOTSTRAP;

pub struct Arrivals {
    pub count: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Commit → consumable, milliseconds (live runs only).
    pub latencies: Vec<i64>,
}

impl Arrivals {
    /// Adds a later stretch of reading to this one.
    pub fn merge(&mut self, later: Arrivals) {
        self.count += later.count;
        self.latencies.extend(later.latencies);
        if later.first.is_some() {
            self.first = self.first.or(later.first);
            self.last = later.last;
        }
    }

    /// Events per second between the first and the last arrival.
    pub fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(f), Some(l)) if l > f => {
                (self.count.saturating_sub(1)) as f64 / (l - f).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    pub fn percentile(&mut self, p: f64) -> Option<i64> {
        if self.latencies.is_empty() {
            return None;
        }
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies.get(i).copied()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn consumer(group: &str, topics: &[String]) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("topic.metadata.refresh.interval.ms", "500")
        .set("fetch.wait.max.ms", "5")
        .create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    c.subscribe(&names)?;
    Ok(c)
}

/// Reads until `want` events arrived (tombstones and heartbeats are not
/// counted) or `limit` passed.
pub fn read(c: &BaseConsumer, want: u64, limit: Duration, latency: bool) -> Arrivals {
    let mut a = Arrivals {
        count: 0,
        first: None,
        last: None,
        latencies: Vec::new(),
    };
    let start = Instant::now();
    while a.count < want && start.elapsed() < limit {
        let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        let Some(payload) = m.payload() else { continue };
        let t = Instant::now();
        a.first.get_or_insert(t);
        a.last = Some(t);
        a.count += 1;
        if latency {
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(payload) {
                if let Some(ts) = v["source"]["ts_ms"].as_i64() {
                    a.latencies.push(now_ms() - ts);
                }
            }
        }
    }
    a
}

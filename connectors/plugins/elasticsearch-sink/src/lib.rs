//! `elasticsearch-sink`: indexes records into Elasticsearch or OpenSearch with
//! Confluent's config keys. Documents go out in bulk requests of `batch.size`,
//! up to `max.in.flight.requests` at once, through the host's client for the
//! granted `connection.url`. Per-item failures are sorted: retriable ones (429,
//! 5xx, no connection) are sent again with backoff, only those items;
//! permanent ones (mapping or parse errors) follow
//! `behavior.on.malformed.documents` and reach the worker's dead letter
//! queue. `flush` returns only when every document is indexed or
//! deliberately dropped, so the worker commits offsets only for those.

mod action;
mod settings;

use std::collections::VecDeque;

use wharf_sdk::elasticsearch as es;
use wharf_sdk::{
    log, now_millis, sleep_millis, Config, ConfigKey, Error, Level, Plugin, Record, Rejected,
    Result, Sink,
};

use action::Action;
use settings::{OnMalformed, Settings};

/// A document on its way: the record (for the dead letter queue) and its bulk lines.
struct Item {
    record: Record,
    lines: Vec<u8>,
    is_delete: bool,
}

pub struct ElasticsearchSink {
    s: Settings,
    queue: VecDeque<Item>,
    first_queued_ms: Option<i64>,
    in_flight: VecDeque<(u64, Vec<Item>)>,
    retry: Vec<Item>,
    rejected: Vec<Rejected>,
    last_retry_reason: String,
    /// Data streams known to exist.
    streams: std::collections::HashSet<String>,
}

impl Plugin for ElasticsearchSink {
    const NAME: &'static str = "elasticsearch-sink";
    const DESCRIPTION: &'static str =
        "Indexes records into Elasticsearch/OpenSearch (bulk, idempotent ids, Confluent's keys)";

    fn config_spec() -> Vec<ConfigKey> {
        settings::spec()
    }

    fn validate(config: &Config) -> Vec<wharf_sdk::ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if errors.is_empty() {
            let config = config.clone().with_defaults(&Self::config_spec());
            if let Err(Error::Fatal(m) | Error::Retriable(m)) = Settings::from_config(&config) {
                let key = m.split(':').next().unwrap_or("config").trim().to_string();
                errors.push(wharf_sdk::ConfigError { key, message: m });
            }
        }
        errors
    }
}

impl Sink for ElasticsearchSink {
    fn open(config: &Config) -> Result<Self> {
        let s = Settings::from_config(config)?;
        Ok(ElasticsearchSink {
            s,
            queue: VecDeque::new(),
            first_queued_ms: None,
            in_flight: VecDeque::new(),
            retry: Vec::new(),
            rejected: Vec::new(),
            last_retry_reason: String::new(),
            streams: Default::default(),
        })
    }

    fn put(&mut self, records: Vec<Record>) -> Result<()> {
        for r in records {
            if self.s.data_stream.is_some() {
                self.ensure_stream(&action::index_for(&r.topic, &self.s))?;
            }
            match action::build(&r, &self.s) {
                Action::Send(lines) => {
                    self.first_queued_ms.get_or_insert_with(now_millis);
                    self.queue.push_back(Item {
                        is_delete: r.value.is_none(),
                        record: r,
                        lines,
                    });
                }
                Action::Skip => {}
                Action::Malformed(reason) => self.malformed(r, reason),
                Action::Invalid(reason) => self.reject(r, reason, false),
            }
        }
        while self.queue.len() >= self.s.batch_size {
            self.send_batch()?;
        }
        let lingered = self
            .first_queued_ms
            .is_some_and(|t| now_millis() - t >= self.s.linger_ms);
        if lingered && !self.queue.is_empty() {
            self.send_batch()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let deadline = now_millis() + self.s.flush_timeout_ms;
        let mut round = 0u32;
        loop {
            while !self.queue.is_empty() {
                self.send_batch()?;
            }
            while !self.in_flight.is_empty() {
                self.complete_oldest()?;
            }
            if self.retry.is_empty() {
                return Ok(());
            }
            if round >= self.s.max_retries || now_millis() >= deadline {
                // Keep the documents: the worker retries the flush (and
                // commits nothing past them meanwhile).
                let n = self.retry.len();
                let mut retry = std::mem::take(&mut self.retry);
                retry.extend(self.queue.drain(..));
                self.queue = retry.into();
                return Err(Error::Retriable(format!(
                    "{n} documents not indexed after {round} retries: {}",
                    self.last_retry_reason
                )));
            }
            sleep_millis(backoff_ms(self.s.retry_backoff_ms, round));
            round += 1;
            let mut retry = std::mem::take(&mut self.retry);
            retry.extend(self.queue.drain(..));
            self.queue = retry.into();
        }
    }

    fn take_rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }
}

/// `base · 2^round` with up to 50% jitter, capped at a minute.
fn backoff_ms(base: u64, round: u32) -> u32 {
    let d = base.saturating_mul(1u64 << round.min(20)).min(60_000);
    let jitter = (now_millis().unsigned_abs().wrapping_mul(2_654_435_761) >> 7) % (d / 2 + 1);
    (d / 2 + jitter) as u32
}

impl ElasticsearchSink {
    /// Sends up to `batch.size` queued documents as one bulk request,
    /// waiting for the oldest request first when the in-flight limit is reached.
    fn send_batch(&mut self) -> Result<()> {
        while self.in_flight.len() >= self.s.max_in_flight {
            self.complete_oldest()?;
        }
        let n = self.queue.len().min(self.s.batch_size);
        if n == 0 {
            return Ok(());
        }
        let items: Vec<Item> = self.queue.drain(..n).collect();
        if self.queue.is_empty() {
            self.first_queued_ms = None;
        }
        let mut body = Vec::with_capacity(items.iter().map(|i| i.lines.len()).sum());
        for i in &items {
            body.extend_from_slice(&i.lines);
        }
        let id = es::bulk_submit(&body)?;
        self.in_flight.push_back((id, items));
        Ok(())
    }

    fn complete_oldest(&mut self) -> Result<()> {
        let Some((id, items)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let results = match es::bulk_wait(id) {
            Ok(r) => r,
            Err(Error::Retriable(m)) => {
                self.last_retry_reason = m;
                self.retry_later(items);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if results.len() != items.len() {
            return Err(Error::Fatal(format!(
                "bulk response has {} items for {} actions",
                results.len(),
                items.len()
            )));
        }
        let mut indexed = 0u64;
        let mut again = Vec::new();
        for (item, res) in items.into_iter().zip(results) {
            if (200..300).contains(&res.status)
                || action::already_done(res.status, &res.error_type, item.is_delete)
            {
                indexed += 1;
            } else if action::retriable(res.status, &res.error_type) {
                self.last_retry_reason =
                    format!("{} ({}): {}", res.error_type, res.status, res.error_reason);
                again.push(item);
            } else {
                let reason = format!("{} ({}): {}", res.error_type, res.status, res.error_reason);
                self.malformed(item.record, reason);
            }
        }
        wharf_sdk::counter_add("documents_indexed", indexed);
        self.retry_later(again);
        Ok(())
    }

    /// Creates the data stream on first use. Elasticsearch ships index
    /// templates for `logs-*-*` and `metrics-*-*`; OpenSearch does not, so
    /// when the engine says no template matches, one is added for the stream.
    fn ensure_stream(&mut self, name: &str) -> Result<()> {
        if self.streams.contains(name) {
            return Ok(());
        }
        let path = format!("/_data_stream/{name}");
        if es::request("GET", &path, None)?.status == 200 {
            self.streams.insert(name.to_string());
            return Ok(());
        }
        let mut r = es::request("PUT", &path, None)?;
        if r.status >= 400 && String::from_utf8_lossy(&r.body).contains("template") {
            let template = serde_json::json!({
                "index_patterns": [format!("{name}*")],
                "data_stream": {},
                "priority": 200,
            });
            let t = es::request(
                "PUT",
                &format!("/_index_template/wharf-{name}"),
                Some(template.to_string().as_bytes()),
            )?;
            if t.status >= 300 {
                return Err(Error::Fatal(format!(
                    "cannot create an index template for data stream {name}: HTTP {} {}",
                    t.status,
                    String::from_utf8_lossy(&t.body)
                )));
            }
            r = es::request("PUT", &path, None)?;
        }
        // 400 resource_already_exists: another task created it first.
        let body = String::from_utf8_lossy(&r.body);
        if r.status >= 300 && !body.contains("already_exists") {
            return Err(Error::Fatal(format!(
                "cannot create data stream {name}: HTTP {} {body}",
                r.status
            )));
        }
        self.streams.insert(name.to_string());
        Ok(())
    }

    fn retry_later(&mut self, items: Vec<Item>) {
        wharf_sdk::counter_add("documents_retried", items.len() as u64);
        self.retry.extend(items);
    }

    fn malformed(&mut self, record: Record, reason: String) {
        match self.s.on_malformed {
            OnMalformed::Ignore => self.reject(record, reason, true),
            OnMalformed::Warn => {
                log(
                    Level::Warn,
                    &format!(
                        "skipping malformed document {}-{}@{}: {reason}",
                        record.topic,
                        record.partition.unwrap_or(-1),
                        record.offset.unwrap_or(-1)
                    ),
                );
                self.reject(record, reason, true)
            }
            OnMalformed::Fail => self.reject(record, reason, false),
        }
    }

    fn reject(&mut self, record: Record, reason: String, deliberate: bool) {
        wharf_sdk::counter_add("documents_rejected", 1);
        self.rejected.push(Rejected {
            record,
            reason,
            deliberate,
        });
    }
}

wharf_sdk::export_sink!(ElasticsearchSink);

//! `elasticsearch-sink`: indexes records into Elasticsearch or OpenSearch with
//! Confluent's config keys. Documents go out in bulk requests of `batch.size`,
//! up to `max.in.flight.requests` at once, through the host's client for the
//! granted `connection.url`. Per-item failures are sorted: retriable ones (429,
//! 5xx, no connection) are sent again with backoff, only those items;
//! permanent ones (mapping or parse errors) follow
//! `behavior.on.malformed.documents` and reach the worker's dead letter
//! queue. Version conflicts are done when the write was versioned by its
//! offset (a replay) and follow `behavior.on.version.conflict` otherwise.
//! Writes of one keyed document reach the engine in record order, retries
//! included (see [`Lanes`]). `flush` returns only when every document is
//! indexed or deliberately dropped, so the worker commits offsets only for
//! those.
mod action;
mod settings;

use std::collections::{HashMap, HashSet, VecDeque};

use wharf_sdk::elasticsearch as es;
use wharf_sdk::{
    log, now_millis, sleep_millis, Config, ConfigKey, Error, Level, Plugin, Record, Rejected,
    Result, Sink,
};

use action::{Action, Outcome};
use settings::{OnConflict, OnMalformed, Settings};

/// A document on its way: the record (for the dead letter queue) and its bulk lines.
struct Item {
    record: Record,
    lines: Vec<u8>,
    is_delete: bool,
    replay_safe: bool,
}

/// What became of an action sent in a bulk, for [`Lanes::settle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    /// It changed (or already matches) the stored document.
    Applied,
    /// It failed retriably: it goes out again after a backoff.
    Retry,
    /// It is settled without changing the document (refused or dropped).
    Final,
}

/// One action in [`Lanes`]: its arrival number and document key.
struct Entry<T> {
    seq: u64,
    key: Option<String>,
    item: T,
}

/// The sending order. Actions go out in arrival order, except that one whose
/// document (key) has an earlier action unsettled, in flight or parked for a
/// retry, waits behind it. So two bulks in flight never hold the same
/// document (the engine may apply concurrent bulks in any order), and a retry
/// reaches the engine before anything newer for its document: with upserts,
/// where no version guards the document, an older write can never land last.
/// Actions of one document may share a bulk: the engine applies a bulk's
/// items for one shard in order. Pure bookkeeping, unit-tested natively.
struct Lanes<T> {
    next_seq: u64,
    /// Waiting to be sent, in arrival order.
    queue: VecDeque<Entry<T>>,
    /// Failed retriably (or re-applied after such a failure), waiting for
    /// the next retry round, in arrival order.
    parked: Vec<Entry<T>>,
    /// Unsettled actions (in flight or parked) per key.
    busy: HashMap<String, usize>,
}

impl<T> Lanes<T> {
    fn new() -> Self {
        Lanes {
            next_seq: 0,
            queue: VecDeque::new(),
            parked: Vec::new(),
            busy: HashMap::new(),
        }
    }

    fn push(&mut self, key: Option<String>, item: T) {
        self.queue.push_back(Entry {
            seq: self.next_seq,
            key,
            item,
        });
        self.next_seq += 1;
    }

    fn queued(&self) -> usize {
        self.queue.len()
    }

    fn parked(&self) -> usize {
        self.parked.len()
    }

    fn is_busy(&self, key: &str) -> bool {
        self.busy.get(key).is_some_and(|n| *n > 0)
    }

    fn hold(&mut self, key: &Option<String>) {
        if let Some(k) = key {
            *self.busy.entry(k.clone()).or_default() += 1;
        }
    }

    fn unhold(&mut self, key: &Option<String>) {
        if let Some(k) = key {
            if let Some(n) = self.busy.get_mut(k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.busy.remove(k);
                }
            }
        }
    }

    /// Up to `limit` actions free to send, oldest first; fewer than `limit`
    /// only when `partial` (none then means none is free). They count as in
    /// flight until [`settle`](Self::settle)d.
    fn take(&mut self, limit: usize, partial: bool) -> Vec<Entry<T>> {
        let mut chosen = Vec::new();
        // Keys taken into this batch: their later actions may join it.
        let mut joined: HashSet<&str> = HashSet::new();
        for (i, e) in self.queue.iter().enumerate() {
            if chosen.len() >= limit {
                break;
            }
            let free = match e.key.as_deref() {
                None => true,
                Some(k) if joined.contains(k) => true,
                Some(k) if self.is_busy(k) => false,
                Some(k) => {
                    joined.insert(k);
                    true
                }
            };
            if free {
                chosen.push(i);
            }
        }
        if chosen.is_empty() || (chosen.len() < limit && !partial) {
            return Vec::new();
        }
        let mut batch = Vec::with_capacity(chosen.len());
        let mut rest = VecDeque::with_capacity(self.queue.len() - chosen.len());
        let mut next = chosen.iter().peekable();
        for (i, e) in std::mem::take(&mut self.queue).into_iter().enumerate() {
            if next.peek() == Some(&&i) {
                next.next();
                batch.push(e);
            } else {
                rest.push_back(e);
            }
        }
        self.queue = rest;
        for e in &batch {
            self.hold(&e.key);
        }
        batch
    }

    /// Settles a bulk `take` returned, given each action's fate. `Retry`
    /// actions are parked, and so is every later `Applied` action of the
    /// same document in the bulk: it went in before the older one that is
    /// retried, so it is applied again after it (re-applying a suffix of a
    /// document's writes in order leaves what the whole sequence leaves).
    /// Returns the settled actions with their index in the bulk, and how
    /// many were parked.
    fn settle(&mut self, batch: Vec<Entry<T>>, fates: &[Fate]) -> (Vec<(usize, T)>, usize) {
        let mut retried: HashSet<String> = HashSet::new();
        let mut settled = Vec::with_capacity(batch.len());
        let mut parked = 0;
        for (i, e) in batch.into_iter().enumerate() {
            self.unhold(&e.key);
            let fate = fates.get(i).copied().unwrap_or(Fate::Retry);
            let behind_retry = e.key.as_ref().is_some_and(|k| retried.contains(k));
            let park = fate == Fate::Retry || (fate == Fate::Applied && behind_retry);
            if park {
                if let Some(k) = &e.key {
                    retried.insert(k.clone());
                }
                self.hold(&e.key);
                let at = self.parked.partition_point(|p| p.seq < e.seq);
                self.parked.insert(at, e);
                parked += 1;
            } else {
                settled.push((i, e.item));
            }
        }
        (settled, parked)
    }

    /// Puts parked actions back in line, each at its arrival position.
    fn release(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        let parked = std::mem::take(&mut self.parked);
        for e in &parked {
            self.unhold(&e.key);
        }
        let mut merged = VecDeque::with_capacity(self.queue.len() + parked.len());
        let mut queue = std::mem::take(&mut self.queue).into_iter().peekable();
        for p in parked {
            while queue.peek().is_some_and(|q| q.seq < p.seq) {
                merged.extend(queue.next());
            }
            merged.push_back(p);
        }
        merged.extend(queue);
        self.queue = merged;
    }
}

pub struct ElasticsearchSink {
    s: Settings,
    lanes: Lanes<Item>,
    first_queued_ms: Option<i64>,
    in_flight: VecDeque<(u64, Vec<Entry<Item>>)>,
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
            lanes: Lanes::new(),
            first_queued_ms: None,
            in_flight: VecDeque::new(),
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
                Action::Send(doc) => {
                    self.first_queued_ms.get_or_insert_with(now_millis);
                    let item = Item {
                        is_delete: r.value.is_none(),
                        record: r,
                        lines: doc.lines,
                        replay_safe: doc.replay_safe,
                    };
                    self.lanes.push(doc.key, item);
                }
                Action::Skip => {}
                Action::Malformed(reason) => self.malformed(r, reason),
                Action::Invalid(reason) => self.reject(r, reason, false),
            }
        }
        loop {
            let lingered = self
                .first_queued_ms
                .is_some_and(|t| now_millis() - t >= self.s.linger_ms);
            if self.send_batch(lingered)? {
                continue;
            }
            // Less than a batch is free to go. With a batch's worth queued
            // (the rest waiting on documents in flight), wait for the oldest
            // bulk, which frees its documents, rather than let the queue grow.
            if self.lanes.queued() >= self.s.batch_size && !self.in_flight.is_empty() {
                self.complete_oldest()?;
                continue;
            }
            return Ok(());
        }
    }

    fn flush(&mut self) -> Result<()> {
        let deadline = now_millis() + self.s.flush_timeout_ms;
        let mut round = 0u32;
        loop {
            // Everything free goes out; what waits on a document in flight
            // goes once that bulk is back.
            loop {
                if self.send_batch(true)? {
                    continue;
                }
                if self.in_flight.is_empty() {
                    break;
                }
                self.complete_oldest()?;
            }
            if self.lanes.parked() == 0 {
                if self.lanes.queued() > 0 {
                    // Only a parked or in-flight action holds one back, and
                    // there is none: never report queued documents as flushed.
                    return Err(Error::Fatal(format!(
                        "{} documents held back with nothing in flight (a bug in the sink)",
                        self.lanes.queued()
                    )));
                }
                return Ok(());
            }
            if round >= self.s.max_retries || now_millis() >= deadline {
                // Keep the documents, in order: the worker retries the flush
                // (and commits nothing past them meanwhile).
                let n = self.lanes.parked();
                self.lanes.release();
                return Err(Error::Retriable(format!(
                    "{n} documents not indexed after {round} retries: {}",
                    self.last_retry_reason
                )));
            }
            sleep_millis(backoff_ms(self.s.retry_backoff_ms, round));
            round += 1;
            self.lanes.release();
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
    /// Sends the free documents as one bulk request: a full `batch.size`, or
    /// fewer when `partial`. Waits for the oldest request first when the
    /// in-flight limit is reached. False when nothing was sent.
    fn send_batch(&mut self, partial: bool) -> Result<bool> {
        let batch = self.lanes.take(self.s.batch_size, partial);
        if batch.is_empty() {
            return Ok(false);
        }
        if self.lanes.queued() == 0 {
            self.first_queued_ms = None;
        }
        // Completing a bulk cannot touch this batch's documents: none of
        // them was in flight, or it would not have been free.
        while self.in_flight.len() >= self.s.max_in_flight {
            self.complete_oldest()?;
        }
        let mut body = Vec::with_capacity(batch.iter().map(|e| e.item.lines.len()).sum());
        for e in &batch {
            body.extend_from_slice(&e.item.lines);
        }
        match es::bulk_submit(&body) {
            Ok(id) => {
                wharf_sdk::counter_add("documents_sent", batch.len() as u64);
                self.in_flight.push_back((id, batch));
                Ok(true)
            }
            Err(Error::Retriable(m)) => {
                self.last_retry_reason = m;
                let fates = vec![Fate::Retry; batch.len()];
                let (_, parked) = self.lanes.settle(batch, &fates);
                wharf_sdk::counter_add("documents_retried", parked as u64);
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    fn complete_oldest(&mut self) -> Result<()> {
        let Some((id, batch)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let results = match es::bulk_wait(id) {
            Ok(r) => r,
            Err(Error::Retriable(m)) => {
                self.last_retry_reason = m;
                let fates = vec![Fate::Retry; batch.len()];
                let (_, parked) = self.lanes.settle(batch, &fates);
                wharf_sdk::counter_add("documents_retried", parked as u64);
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if results.len() != batch.len() {
            return Err(Error::Fatal(format!(
                "bulk response has {} items for {} actions",
                results.len(),
                batch.len()
            )));
        }
        let outcomes: Vec<Outcome> = batch
            .iter()
            .zip(&results)
            .map(|(e, r)| action::outcome(r.status, &r.error_type, e.item.is_delete))
            .collect();
        let fates: Vec<Fate> = batch
            .iter()
            .zip(&outcomes)
            .map(|(e, o)| match o {
                Outcome::Done => Fate::Applied,
                // A newer version is stored: as good as applied.
                Outcome::Conflict if e.item.replay_safe => Fate::Applied,
                Outcome::Conflict | Outcome::Refused => Fate::Final,
                Outcome::Retry => Fate::Retry,
            })
            .collect();
        for (o, r) in outcomes.iter().zip(&results) {
            if *o == Outcome::Retry {
                self.last_retry_reason =
                    format!("{} ({}): {}", r.error_type, r.status, r.error_reason);
            }
        }
        let (settled, parked) = self.lanes.settle(batch, &fates);
        let (mut indexed, mut replays) = (0u64, 0u64);
        let mut example = String::new();
        for (i, item) in settled {
            let (Some(o), Some(r)) = (outcomes.get(i), results.get(i)) else {
                continue;
            };
            let reason = || format!("{} ({}): {}", r.error_type, r.status, r.error_reason);
            match o {
                Outcome::Done => indexed += 1,
                Outcome::Conflict if item.replay_safe => {
                    replays += 1;
                    if example.is_empty() {
                        example = r.error_reason.clone();
                    }
                }
                Outcome::Conflict => self.conflict(item.record, reason()),
                Outcome::Refused => self.malformed(item.record, reason()),
                // Parked by `settle`, never settled.
                Outcome::Retry => {}
            }
        }
        wharf_sdk::counter_add("documents_indexed", indexed);
        wharf_sdk::counter_add("documents_retried", parked as u64);
        if replays > 0 {
            // Replays after a restart or a resent bulk: the engine kept the
            // newer version, which is what the offset versioning is for.
            wharf_sdk::counter_add("version_conflicts", replays);
            log(
                Level::Debug,
                &format!("{replays} documents already stored in a newer or equal version, e.g. {example}"),
            );
        }
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

    fn malformed(&mut self, record: Record, reason: String) {
        let how = self.s.on_malformed;
        self.refuse(
            record,
            reason,
            "malformed document",
            how == OnMalformed::Ignore,
            how == OnMalformed::Warn,
        );
    }

    /// A version conflict on a write no version guards: the engine kept
    /// another write, this one is lost unless someone looks.
    fn conflict(&mut self, record: Record, reason: String) {
        let how = self.s.on_version_conflict;
        self.refuse(
            record,
            reason,
            "version conflict on",
            how == OnConflict::Ignore,
            how == OnConflict::Warn,
        );
    }

    /// Skips the record (`ignore`), skips and logs it (`warn`), or fails it
    /// (neither: the dead letter queue with `errors.tolerance=all`).
    fn refuse(&mut self, record: Record, reason: String, what: &str, ignore: bool, warn: bool) {
        if warn {
            log(
                Level::Warn,
                &format!(
                    "skipping {what} {}-{}@{}: {reason}",
                    record.topic,
                    record.partition.unwrap_or(-1),
                    record.offset.unwrap_or(-1)
                ),
            );
        }
        self.reject(record, reason, ignore || warn)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Option<String> {
        Some(k.to_string())
    }

    /// The items of a batch, for assertions.
    fn items(batch: &[Entry<&'static str>]) -> Vec<&'static str> {
        batch.iter().map(|e| e.item).collect()
    }

    fn lanes(docs: &[(&str, &'static str)]) -> Lanes<&'static str> {
        let mut l = Lanes::new();
        for (k, v) in docs {
            l.push(key(k), *v);
        }
        l
    }

    #[test]
    fn one_document_may_appear_twice_in_a_bulk_in_order() {
        let mut l = lanes(&[("a", "a1"), ("b", "b1"), ("a", "a2")]);
        let b = l.take(10, true);
        assert_eq!(items(&b), ["a1", "b1", "a2"]);
        assert_eq!(l.queued(), 0);
    }

    #[test]
    fn a_document_in_flight_holds_its_later_writes_only() {
        let mut l = lanes(&[("a", "a1"), ("b", "b1")]);
        let first = l.take(10, true);
        l.push(key("a"), "a2");
        l.push(key("c"), "c1");
        l.push(None, "anon");
        l.push(key("a"), "a3");
        let second = l.take(10, true);
        assert_eq!(
            items(&second),
            ["c1", "anon"],
            "a waits on the bulk in flight"
        );
        let (done, parked) = l.settle(first, &[Fate::Applied, Fate::Applied]);
        assert_eq!((done.len(), parked), (2, 0));
        assert_eq!(items(&l.take(10, true)), ["a2", "a3"]);
    }

    #[test]
    fn a_retry_goes_out_before_anything_newer_for_its_document() {
        let mut l = lanes(&[("a", "a1"), ("b", "b1")]);
        let first = l.take(10, true);
        l.push(key("a"), "a2");
        l.push(key("b"), "b2");
        let (done, parked) = l.settle(first, &[Fate::Retry, Fate::Applied]);
        assert_eq!((items_of(&done), parked), (vec!["b1"], 1));
        // Until the retry round, only b may go: a1 is parked, a2 behind it.
        assert_eq!(items(&l.take(10, true)), ["b2"]);
        l.push(key("a"), "a3");
        assert!(l.take(10, true).is_empty());
        l.release();
        assert_eq!(items(&l.take(10, true)), ["a1", "a2", "a3"]);
    }

    fn items_of(done: &[(usize, &'static str)]) -> Vec<&'static str> {
        done.iter().map(|(_, v)| *v).collect()
    }

    #[test]
    fn writes_after_a_retried_one_in_its_bulk_are_applied_again_after_it() {
        let mut l = lanes(&[
            ("a", "a1"),
            ("a", "a2"),
            ("b", "b1"),
            ("a", "a3"),
            ("a", "a4"),
        ]);
        let bulk = l.take(10, true);
        // a1 applied, a2 failed retriably, a3 applied (before a2's retry!),
        // a4 refused for good.
        let fates = [
            Fate::Applied,
            Fate::Retry,
            Fate::Applied,
            Fate::Applied,
            Fate::Final,
        ];
        let (done, parked) = l.settle(bulk, &fates);
        assert_eq!(
            done.iter().map(|(i, v)| (*i, *v)).collect::<Vec<_>>(),
            [(0, "a1"), (2, "b1"), (4, "a4")],
            "a4 is settled (refused), a3 goes again after a2"
        );
        assert_eq!(parked, 2);
        l.release();
        assert_eq!(items(&l.take(10, true)), ["a2", "a3"]);
    }

    #[test]
    fn released_retries_take_their_arrival_place() {
        let mut l = lanes(&[("a", "a1"), ("b", "b1"), ("c", "c1")]);
        let bulk = l.take(1, true);
        assert_eq!(items(&bulk), ["a1"]);
        l.settle(bulk, &[Fate::Retry]);
        l.release();
        assert_eq!(items(&l.take(10, true)), ["a1", "b1", "c1"]);
    }

    #[test]
    fn full_batches_only_unless_partial() {
        let mut l = lanes(&[("a", "a1"), ("b", "b1"), ("c", "c1")]);
        let a = l.take(1, true);
        l.push(key("a"), "a2");
        // Three queued, two free: no full batch of three.
        assert!(l.take(3, false).is_empty());
        assert_eq!(l.queued(), 3);
        assert_eq!(items(&l.take(2, false)), ["b1", "c1"]);
        l.settle(a, &[Fate::Applied]);
        assert_eq!(items(&l.take(2, true)), ["a2"]);
    }

    #[test]
    fn unkeyed_writes_are_never_held() {
        let mut l = Lanes::new();
        l.push(None, 1);
        let first = l.take(10, true);
        l.settle(first, &[Fate::Retry]);
        l.push(None, 2);
        assert_eq!(l.take(10, true).len(), 1, "no key, no hold");
    }

    /// A model check: a fake engine applies bulks in random order (bulks in
    /// flight race), fails random items retriably, and the sink settles and
    /// retries like `ElasticsearchSink` does. Every document must end with
    /// its newest write, and no document may ever be in two bulks in flight.
    #[test]
    fn newest_write_lands_last_whatever_fails_and_in_whatever_order_bulks_complete() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        for round in 0..200 {
            let mut l: Lanes<(String, u64)> = Lanes::new();
            let mut store: HashMap<String, u64> = HashMap::new();
            let mut newest: HashMap<String, u64> = HashMap::new();
            let mut in_flight: Vec<Vec<Entry<(String, u64)>>> = Vec::new();
            let keys = 1 + next(6);
            let mut seq = 0u64;
            let mut steps = 0;
            loop {
                steps += 1;
                assert!(steps < 100_000, "round {round} does not finish");
                let pushing = seq < 60;
                match next(4) {
                    0 | 1 if pushing => {
                        let k = format!("k{}", next(keys));
                        seq += 1;
                        newest.insert(k.clone(), seq);
                        l.push(Some(k.clone()), (k, seq));
                    }
                    2 if in_flight.len() < 3 => {
                        let b = l.take(1 + next(4) as usize, true);
                        if !b.is_empty() {
                            // No key of this bulk is in another in flight.
                            for other in &in_flight {
                                for e in other {
                                    assert!(
                                        !b.iter().any(|n| n.key == e.key),
                                        "{:?} in two bulks at once",
                                        e.key
                                    );
                                }
                            }
                            in_flight.push(b);
                        }
                    }
                    _ if !in_flight.is_empty() => {
                        // Any bulk in flight may complete first.
                        let b = in_flight.remove(next(in_flight.len() as u64) as usize);
                        let fates: Vec<Fate> = b
                            .iter()
                            .map(|e| {
                                if next(3) == 0 {
                                    Fate::Retry
                                } else {
                                    // Applied in bulk order, last write wins.
                                    store.insert(e.item.0.clone(), e.item.1);
                                    Fate::Applied
                                }
                            })
                            .collect();
                        l.settle(b, &fates);
                    }
                    _ => {
                        if !pushing && in_flight.is_empty() {
                            if l.queued() == 0 && l.parked() == 0 {
                                break;
                            }
                            l.release();
                            let b = l.take(usize::MAX, true);
                            assert!(
                                !b.is_empty() || l.queued() == 0,
                                "round {round}: documents held with nothing in flight"
                            );
                            if !b.is_empty() {
                                in_flight.push(b);
                            }
                        } else if next(5) == 0 {
                            l.release();
                        }
                    }
                }
            }
            assert_eq!(store, newest, "round {round}");
            assert!(l.busy.is_empty(), "round {round}: holds left: {:?}", l.busy);
        }
    }
}

//! `postgres-cdc`: Debezium's PostgreSQL connector as a Wharf plugin. The
//! host holds the connections (a query connection and a logical replication
//! stream); this plugin owns everything else: catalogs and publication,
//! the snapshot in the slot's exported snapshot, pgoutput decoding, the
//! Debezium envelope, and when the slot may confirm.

mod catalog;
mod envelope;
mod incremental;
pub mod pgoutput;
mod progress;
mod schema;
mod settings;
mod snapshot;
mod stream;
pub mod values;

use std::collections::VecDeque;

use serde_json::json;
use wharf_sdk::postgres::{self as pg, WalEvent};
use wharf_sdk::{Config, ConfigKey, Error, Level, Plugin, Record, Result, Source};

use progress::{Position, Resume};
use settings::{Settings, SnapshotMode};
use snapshot::Snapshot;
use stream::Stream;
use values::Mapping;

/// Most pgoutput bytes read per poll: bounds what one poll decodes.
const READ_BYTES: u32 = 1 << 20;
const BACKOFF_MAX_MS: u32 = 10_000;

enum Phase {
    Snapshot(Box<Snapshot>),
    Streaming,
    /// `snapshot.mode=initial_only` after its snapshot: nothing more to do.
    Done,
}

pub struct PostgresCdc {
    s: Settings,
    m: Mapping,
    phase: Phase,
    stream: Stream,
    streaming: bool,
    pending: VecDeque<Record>,
    confirmed: u64,
    last_heartbeat: i64,
    backoff_ms: u32,
}

impl Plugin for PostgresCdc {
    const NAME: &'static str = "postgres-cdc";
    const DESCRIPTION: &'static str =
        "PostgreSQL change data capture (pgoutput) with Debezium's config keys and event envelope";

    fn config_spec() -> Vec<ConfigKey> {
        settings::spec()
    }

    fn validate(config: &Config) -> Vec<wharf_sdk::ConfigError> {
        let mut errors = wharf_sdk::validate_against(&Self::config_spec(), config);
        if errors.is_empty() {
            let full = config.clone().with_defaults(&Self::config_spec());
            if let Err(e) = Settings::parse(&full) {
                let message = e.to_string();
                let key = message
                    .split('\'')
                    .nth(1)
                    .filter(|k| full.raw(k).is_some())
                    .unwrap_or("topic.prefix")
                    .to_string();
                errors.push(wharf_sdk::ConfigError { key, message });
            }
        }
        errors
    }
}

fn log(level: Level, message: &str) {
    wharf_sdk::log(level, message);
}

impl Source for PostgresCdc {
    fn open(config: &Config, offsets: Vec<(String, String)>) -> Result<Self> {
        let s = Settings::parse(config)?;
        let m = Mapping { decimal: s.decimal };
        let user = config.string("database.user")?;
        catalog::check_replication_right(&user)?;
        let tables = catalog::tables(&s)?;
        if tables.is_empty() {
            log(
                Level::Warn,
                "no table matches the include/exclude lists yet; streaming will pick up tables as they appear",
            );
        }
        catalog::ensure_publication(&s, &tables)?;
        let resume = Resume::from_offsets(&offsets, &s.prefix);
        let slot = catalog::slot(&s)?;
        let no_offset = resume.position.is_none() || resume.snapshot_incomplete;
        let snapshot_now = match s.snapshot {
            SnapshotMode::Always => true,
            SnapshotMode::NoData => false,
            SnapshotMode::Initial | SnapshotMode::InitialOnly => no_offset,
            SnapshotMode::WhenNeeded => no_offset || slot.is_none(),
        };
        let (point, exported) = match slot {
            Some(confirmed) => (confirmed, None),
            None => {
                let created = pg::slot_create(&s.slot)?;
                log(
                    Level::Info,
                    &format!(
                        "created slot '{}' at {}",
                        s.slot,
                        progress::format_lsn(created.consistent_point)
                    ),
                );
                (created.consistent_point, Some(created.snapshot_name))
            }
        };
        let phase = if snapshot_now {
            Phase::Snapshot(Box::new(Snapshot::begin(
                tables,
                exported.as_deref(),
                point,
            )?))
        } else if s.snapshot == SnapshotMode::InitialOnly {
            Phase::Done
        } else {
            Phase::Streaming
        };
        // After a fresh snapshot everything is new; otherwise skip what the
        // stored offset says an earlier run emitted.
        let resume_at = if snapshot_now { None } else { resume.position };
        let mut stream = Stream::new(&s, resume_at);
        if !snapshot_now {
            stream.incremental.resume(&resume.offset);
        }
        Ok(PostgresCdc {
            stream,
            s,
            m,
            phase,
            streaming: false,
            pending: VecDeque::new(),
            confirmed: 0,
            last_heartbeat: wharf_sdk::now_millis(),
            backoff_ms: 0,
        })
    }

    fn poll(&mut self, max: u32, out: &mut Vec<Record>) -> Result<()> {
        let max = max.min(self.s.max_batch).max(1) as usize;
        if self.pending.is_empty() {
            match &mut self.phase {
                Phase::Snapshot(snap) => {
                    let mut batch = Vec::new();
                    if snap.poll(&self.s, &self.m, max, &mut batch)? {
                        log(Level::Info, "snapshot finished");
                        self.phase = if self.s.snapshot == SnapshotMode::InitialOnly {
                            Phase::Done
                        } else {
                            Phase::Streaming
                        };
                    }
                    self.pending.extend(batch);
                }
                Phase::Streaming => self.read_stream()?,
                Phase::Done => wharf_sdk::sleep_millis(self.s.poll_interval_ms),
            }
        }
        let n = self.pending.len().min(max);
        out.extend(self.pending.drain(..n));
        Ok(())
    }

    fn commit(&mut self, offsets: Vec<(String, String)>) -> Result<()> {
        let acked = Resume::from_offsets(&offsets, &self.s.prefix);
        if acked.snapshot_incomplete {
            return Ok(());
        }
        if let Some(p) = acked.position {
            if let Some(lsn) = self.stream.confirms.acked(p) {
                self.confirm(lsn);
            }
        }
        self.confirm_if_idle();
        Ok(())
    }

    fn close(&mut self) {
        if !self.s.drop_slot_on_stop {
            return;
        }
        pg::stream_stop();
        self.streaming = false;
        // The walsender lets go of the slot a moment after its connection ends.
        let sql = format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = {}",
            pg::literal(&self.s.slot)
        );
        for _ in 0..50 {
            match pg::query(&sql) {
                Ok(_) => {
                    log(Level::Info, &format!("dropped slot '{}'", self.s.slot));
                    return;
                }
                Err(_) => wharf_sdk::sleep_millis(100),
            }
        }
        log(
            Level::Warn,
            &format!("could not drop slot '{}' on stop", self.s.slot),
        );
    }
}

impl PostgresCdc {
    fn start_stream(&mut self) -> Result<()> {
        let publications = vec![self.s.publication.clone()];
        pg::stream_start(&self.s.slot, 0, &publications, true)?;
        self.streaming = true;
        log(
            Level::Info,
            &format!(
                "streaming slot '{}' (publication '{}')",
                self.s.slot, self.s.publication
            ),
        );
        Ok(())
    }

    /// Retriable trouble (the server restarting, the slot still held by a
    /// predecessor) waits and reconnects; the slot resends from its confirmed
    /// position and what was already emitted is skipped.
    fn recover(&mut self, e: Error) -> Result<()> {
        let Error::Retriable(m) = e else {
            return Err(e);
        };
        self.streaming = false;
        self.stream.reconnecting();
        self.backoff_ms = (self.backoff_ms * 2).clamp(250, BACKOFF_MAX_MS);
        log(
            Level::Warn,
            &format!(
                "replication interrupted ({m}); retrying in {} ms",
                self.backoff_ms
            ),
        );
        wharf_sdk::sleep_millis(self.backoff_ms);
        Ok(())
    }

    fn read_stream(&mut self) -> Result<()> {
        if !self.streaming {
            if let Err(e) = self.start_stream() {
                return self.recover(e);
            }
        }
        let events = match pg::stream_read(READ_BYTES, self.s.poll_interval_ms) {
            Ok(events) => events,
            Err(e) => return self.recover(e),
        };
        self.backoff_ms = 0;
        let mut batch = Vec::new();
        for ev in events {
            match ev {
                WalEvent::Data(lsn, data) => self
                    .stream
                    .handle(&self.s, &self.m, lsn, &data, &mut batch)?,
                WalEvent::Keepalive(lsn) => {
                    self.stream.server_end = self.stream.server_end.max(lsn);
                }
            }
        }
        wharf_sdk::counter_add("events", batch.len() as u64);
        self.pending.extend(batch);
        if self.stream.incremental.wants_chunk() {
            self.stream.incremental.read_chunk(&self.s, &self.m)?;
        }
        self.heartbeat()?;
        self.confirm_if_idle();
        wharf_sdk::gauge_set(
            "replication_lag_bytes",
            self.stream.server_end.saturating_sub(self.confirmed) as f64,
        );
        Ok(())
    }

    fn heartbeat(&mut self) -> Result<()> {
        let now = wharf_sdk::now_millis();
        if self.s.heartbeat_ms <= 0
            || now - self.last_heartbeat < self.s.heartbeat_ms
            || self.stream.in_transaction()
        {
            return Ok(());
        }
        self.last_heartbeat = now;
        if let Some(q) = &self.s.heartbeat_query {
            if let Err(e) = pg::query(q) {
                log(Level::Warn, &format!("heartbeat.action.query failed: {e}"));
            }
        }
        let pos: Position = self.stream.position();
        let offset = progress::stream_offset(
            pos,
            self.stream.server_end,
            0,
            now * 1000,
            self.stream.incremental.context(),
        );
        self.pending.push_back(envelope::record(
            &self.s.heartbeat_topic,
            Some(&json!({ "serverName": self.s.prefix }).to_string()),
            Some(json!({ "ts_ms": now }).to_string()),
            now,
            &progress::source_partition(&self.s.prefix),
            offset,
        ));
        Ok(())
    }

    fn confirm(&mut self, lsn: u64) {
        if lsn <= self.confirmed || !self.streaming {
            return;
        }
        match pg::stream_confirm(lsn) {
            Ok(()) => self.confirmed = lsn,
            Err(e) => log(Level::Debug, &format!("confirm deferred: {e}")),
        }
    }

    /// With every emitted event acked and no transaction half read, the
    /// server's WAL end is safe to confirm: idle tables keep the slot moving.
    fn confirm_if_idle(&mut self) {
        if self.stream.in_transaction() || !self.pending.is_empty() {
            return;
        }
        if let Some(end) = self.stream.confirms.drain_if_idle() {
            self.confirm(end);
        }
        if self.stream.confirms.idle() {
            self.confirm(self.stream.server_end);
        }
    }
}

wharf_sdk::export_source!(PostgresCdc);

//! `/metrics` in Prometheus' text format: per task (records, batches,
//! latency histogram, errors, dead letters, commit age, what the plugin
//! reports such as replication lag) and per worker.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::herder::Herder;
use crate::worker::status::{TaskCounters, LATENCY_BUCKETS};
use crate::worker::State;

/// Escapes a label value as the text format requires.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A plugin's metric name made a valid Prometheus name.
fn metric_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// (metric name, help, which counter).
type CounterDef = (&'static str, &'static str, fn(&TaskCounters) -> &AtomicU64);

const TASK_COUNTERS: &[CounterDef] = &[
    (
        "wharf_task_records_in_total",
        "Records the task read (polled from the plugin or consumed from Kafka).",
        |c| &c.records_in,
    ),
    (
        "wharf_task_records_out_total",
        "Records the task handed on (to Kafka or the bus, or put into the sink).",
        |c| &c.records_out,
    ),
    (
        "wharf_task_records_durable_total",
        "Sinks: records read that the sink's flush made durable.",
        |c| &c.records_durable,
    ),
    ("wharf_task_batches_total", "Batches processed.", |c| {
        &c.batches
    }),
    (
        "wharf_task_record_errors_total",
        "Records a plugin refused that were tolerated (skipped or dead-lettered).",
        |c| &c.records_failed,
    ),
    (
        "wharf_task_dead_letters_total",
        "Records written to the dead letter topic.",
        |c| &c.dead_letters,
    ),
    (
        "wharf_task_offsets_committed_total",
        "Offsets committed (source partitions or sink topic-partitions).",
        |c| &c.offsets_committed,
    ),
    (
        "wharf_task_restarts_total",
        "Automatic restarts after a failure.",
        |c| &c.restarts,
    ),
];

const STATES: [State; 6] = [
    State::Unassigned,
    State::Running,
    State::Paused,
    State::Stopped,
    State::Failed,
    State::Restarting,
];

fn state_name(s: State) -> &'static str {
    match s {
        State::Unassigned => "UNASSIGNED",
        State::Running => "RUNNING",
        State::Paused => "PAUSED",
        State::Stopped => "STOPPED",
        State::Failed => "FAILED",
        State::Restarting => "RESTARTING",
    }
}

/// A metric family's HELP and TYPE lines.
fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family with one unlabelled sample.
fn single(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

pub async fn render(herder: &Herder, started: Instant) -> String {
    let tasks = herder.status_board().snapshot();
    let mut out = String::with_capacity(4096);
    let labels: Vec<String> = tasks
        .iter()
        .map(|(c, t, _, _)| format!("connector=\"{}\",task=\"{t}\"", label(c)))
        .collect();

    for (name, help, get) in TASK_COUNTERS {
        header(&mut out, name, help, "counter");
        for ((_, _, _, c), l) in tasks.iter().zip(&labels) {
            let _ = writeln!(out, "{name}{{{l}}} {}", get(c).load(Relaxed));
        }
    }

    let name = "wharf_task_state";
    header(
        &mut out,
        name,
        "1 for the task's current state (Connect's names).",
        "gauge",
    );
    for ((_, _, s, _), l) in tasks.iter().zip(&labels) {
        for st in STATES {
            let v = u8::from(s.state == st);
            let _ = writeln!(out, "{name}{{{l},state=\"{}\"}} {v}", state_name(st));
        }
    }

    let name = "wharf_task_batch_latency_seconds";
    header(
        &mut out,
        name,
        "Time to process one batch (source: poll to hand-off; sink: convert, transform and put).",
        "histogram",
    );
    for ((_, _, _, c), l) in tasks.iter().zip(&labels) {
        let (buckets, count, sum) = c.batch_latency.cumulative();
        for (le, n) in LATENCY_BUCKETS.iter().zip(&buckets) {
            let _ = writeln!(out, "{name}_bucket{{{l},le=\"{le}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{l},le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum{{{l}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{l}}} {count}");
    }

    let name = "wharf_task_offset_commit_age_seconds";
    header(
        &mut out,
        name,
        "Seconds since the task last committed offsets (absent before the first commit).",
        "gauge",
    );
    let now = crate::plugin::now_millis().max(0) as u64;
    for ((_, _, _, c), l) in tasks.iter().zip(&labels) {
        let last = c.last_commit_ms.load(Relaxed);
        if last > 0 {
            let age = now.saturating_sub(last) as f64 / 1000.0;
            let _ = writeln!(out, "{name}{{{l}}} {age}");
        }
    }

    let name = "wharf_task_consumer_lag_records";
    header(&mut out, name, "Sinks: records in Kafka the task has neither processed nor committed (librdkafka's consumer_lag, every 5 s).", "gauge");
    for ((_, _, _, c), l) in tasks.iter().zip(&labels) {
        if let Some(lag) = c.consumer_lag.get() {
            let _ = writeln!(out, "{name}{{{l}}} {lag}");
        }
    }

    // Whatever plugins report, one gauge family per metric name.
    let mut plugin: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for ((_, _, _, c), l) in tasks.iter().zip(&labels) {
        for (k, v) in c.plugin_metrics() {
            plugin
                .entry(metric_name(&k))
                .or_default()
                .push((l.clone(), v));
        }
    }
    for (k, values) in plugin {
        let name = format!("wharf_plugin_{k}");
        header(&mut out, &name, "Reported by the plugin itself.", "gauge");
        for (l, v) in values {
            let _ = writeln!(out, "{name}{{{l}}} {v}");
        }
    }

    let connectors = herder.names().await.len();
    let (hits, misses) = herder.plugin_host().cache_hits();
    let mut by_state: BTreeMap<&str, usize> = STATES.iter().map(|s| (state_name(*s), 0)).collect();
    for (_, _, s, _) in &tasks {
        *by_state.entry(state_name(s.state)).or_default() += 1;
    }
    single(
        &mut out,
        "wharf_worker_connectors",
        "Connectors on this worker.",
        "gauge",
        connectors,
    );
    header(
        &mut out,
        "wharf_worker_tasks",
        "Tasks on this worker by state.",
        "gauge",
    );
    for (s, n) in by_state {
        let _ = writeln!(out, "wharf_worker_tasks{{state=\"{s}\"}} {n}");
    }
    single(
        &mut out,
        "wharf_worker_rebalances_total",
        "Task assignment changes on this worker.",
        "counter",
        herder.rebalances(),
    );
    single(
        &mut out,
        "wharf_worker_compile_cache_hits_total",
        "Plugins loaded from compiled code on disk.",
        "counter",
        hits,
    );
    single(
        &mut out,
        "wharf_worker_compile_cache_misses_total",
        "Plugins compiled from wasm.",
        "counter",
        misses,
    );
    single(
        &mut out,
        "wharf_worker_uptime_seconds",
        "Seconds since the worker started.",
        "gauge",
        started.elapsed().as_secs_f64(),
    );
    out
}

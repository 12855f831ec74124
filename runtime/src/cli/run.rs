//! `wharf run` and `wharf validate`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use wharf::config::{load_file, ConnectorConfig};
use wharf::offsets::FileOffsetStore;
use wharf::plugin::PluginHost;
use wharf::worker::{self, State};

fn load_all(paths: &[PathBuf]) -> anyhow::Result<Vec<ConnectorConfig>> {
    let mut configs = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        match load_file(p) {
            Ok(c) => configs.extend(c),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        anyhow::bail!(
            "{} config file(s) could not be read; nothing was started:\n  {}",
            errors.len(),
            errors.join("\n  ")
        );
    }
    Ok(configs)
}

pub async fn validate(paths: &[PathBuf], cache: Option<PathBuf>) -> anyhow::Result<()> {
    let configs = load_all(paths)?;
    let host = PluginHost::new(cache)?;
    let prepared = worker::prepare_all(&host, &configs).await?;
    for p in prepared {
        println!(
            "{}: connector '{}' ({} {}) is valid",
            p.config.origin,
            p.config.name,
            p.plugin.info.name,
            wharf::plugin::world_name(p.plugin.kind())
        );
    }
    Ok(())
}

pub async fn run(
    paths: &[PathBuf],
    offsets: &Path,
    cache: Option<PathBuf>,
    progress_secs: u64,
) -> anyhow::Result<()> {
    let configs = load_all(paths)?;
    let host = PluginHost::new(cache)?;
    let prepared = worker::prepare_all(&host, &configs).await?;
    let offsets = FileOffsetStore::open(offsets).context("opening the offsets file")?;
    tracing::info!(offsets = %offsets.path().display(), "offsets are stored in a local file");
    let mut running = worker::start(prepared, offsets).await?;
    let status = running.status.clone();

    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut report = tokio::time::interval(Duration::from_secs(progress_secs.max(1)));
    report.tick().await;
    let started = Instant::now();
    let mut last: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            ended = running.join_next() => {
                if ended.is_none() {
                    tracing::info!("every task has ended");
                    break;
                }
            }
            _ = report.tick(), if progress_secs > 0 => {
                last = print_progress(&status, &last, progress_secs, started);
            }
        }
    }
    tracing::info!("stopping: flushing sinks and committing offsets");
    running.stop().await;
    print_progress(&status, &last, progress_secs.max(1), started);
    let failed: Vec<String> = status
        .snapshot()
        .into_iter()
        .filter(|(_, _, s, _)| s.state == State::Failed)
        .map(|(c, t, s, _)| format!("{c}-{t}: {}", s.trace.unwrap_or_default()))
        .collect();
    if !failed.is_empty() {
        anyhow::bail!(
            "{} task(s) failed:\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

/// One line per task: state, totals and rate since the last line.
fn print_progress(
    status: &worker::StatusBoard,
    last: &[u64],
    secs: u64,
    started: Instant,
) -> Vec<u64> {
    use std::sync::atomic::Ordering::Relaxed;
    let snap = status.snapshot();
    let mut now = Vec::with_capacity(snap.len());
    for (i, (connector, task, s, c)) in snap.iter().enumerate() {
        let out = c.records_out.load(Relaxed);
        let rate = out.saturating_sub(last.get(i).copied().unwrap_or(0)) / secs.max(1);
        eprintln!(
            "[{:>6.1}s] {connector}-{task}: {:?}  in={} out={} ({rate}/s) offsets-committed={}{}",
            started.elapsed().as_secs_f64(),
            s.state,
            c.records_in.load(Relaxed),
            out,
            c.offsets_committed.load(Relaxed),
            s.trace
                .as_deref()
                .map(|t| format!("  trace: {t}"))
                .unwrap_or_default()
        );
        now.push(out);
    }
    now
}

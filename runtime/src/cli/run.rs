//! `wharf run` and `wharf validate`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use wharf::config::{load_file, load_worker, ConnectorConfig, OffsetStorage, WorkerConfig};
use wharf::herder::Herder;
use wharf::kafka::KafkaHub;
use wharf::offsets::{FileOffsetStore, KafkaOffsetStore, OffsetStore};
use wharf::plugin::PluginHost;
use wharf::rest::RestOptions;
use wharf::worker::{self, State};

/// Kafka Connect's REST port, so its tooling finds Wharf where it looks.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8083";

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

pub struct RunOptions {
    pub worker: Option<PathBuf>,
    pub offsets: Option<PathBuf>,
    pub cache: Option<PathBuf>,
    pub progress_secs: u64,
    /// REST listen address (overrides the worker config); "none" turns it off.
    pub listen: Option<String>,
    /// Folder of connector YAML applied while running (overrides the worker config).
    pub watch: Option<PathBuf>,
}

pub async fn open_offsets(
    worker: &WorkerConfig,
    explicit: Option<&Path>,
    hub: Option<&KafkaHub>,
) -> anyhow::Result<OffsetStore> {
    let storage = match explicit {
        Some(p) => OffsetStorage::File(p.to_path_buf()),
        None => worker.offset_storage.clone(),
    };
    Ok(match (storage, hub) {
        (OffsetStorage::Kafka { topic, partitions }, Some(hub)) => {
            OffsetStore::Kafka(std::sync::Arc::new(
                KafkaOffsetStore::open(
                    hub.bootstrap(),
                    &topic,
                    partitions,
                    hub.admin(),
                    worker.prefixed("producer"),
                    worker.prefixed("consumer"),
                )
                .await
                .with_context(|| format!("opening the offsets topic '{topic}'"))?,
            ))
        }
        (OffsetStorage::File(path), _) => OffsetStore::File(
            FileOffsetStore::open(&path)
                .with_context(|| format!("opening the offsets file {}", path.display()))?,
        ),
        (OffsetStorage::Kafka { .. }, None) => {
            anyhow::bail!("offset.storage is kafka but no bootstrap.servers is set")
        }
    })
}

pub async fn run(paths: &[PathBuf], opts: RunOptions) -> anyhow::Result<()> {
    let mut stop = super::signals::StopSignals::install()?;
    let progress_secs = opts.progress_secs;
    let configs = load_all(paths)?;
    let worker_config = match &opts.worker {
        Some(p) => load_worker(p)?,
        None => WorkerConfig::default(),
    };
    let host = Arc::new(PluginHost::new(opts.cache.clone())?);
    let refused: Vec<String> = configs
        .iter()
        .flat_map(|c| worker_config.client_overrides.check(c))
        .map(|e| e.to_string())
        .collect();
    anyhow::ensure!(
        refused.is_empty(),
        "{} client override(s) refused; nothing was started:\n  {}",
        refused.len(),
        refused.join("\n  ")
    );
    let prepared = worker::prepare_all(&host, &configs).await?;
    let hub = match &worker_config.bootstrap_servers {
        Some(servers) => {
            tracing::info!(bootstrap.servers = %servers, "sources write to Kafka, sinks read from it");
            Some(KafkaHub::connect(&worker_config)?)
        }
        None => None,
    };
    // Exactly-once sources: fence what a killed run left mid-transaction
    // before the offsets topic is read. A read_committed read stops at the
    // open transaction and would wait out its timeout (60 s) otherwise.
    if let Some(hub) = &hub {
        worker::fence_exactly_once(&prepared, hub).await?;
    }
    let offsets = open_offsets(&worker_config, opts.offsets.as_deref(), hub.as_deref()).await?;
    tracing::info!(offsets = %offsets.describe(), "source offsets store");
    let herder = Herder::new(host, offsets, hub.clone());
    herder.set_provider_policy(worker_config.providers.clone());
    herder.set_override_policy(worker_config.client_overrides);
    let listen = opts
        .listen
        .clone()
        .or_else(|| worker_config.listen.clone())
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    if listen != "none" {
        let rest_opts = RestOptions::from_worker(&worker_config);
        wharf::rest::serve(herder.clone(), &listen, rest_opts).await?;
    }
    herder.start_all(prepared).await?;
    if let Some(dir) = opts
        .watch
        .clone()
        .or_else(|| worker_config.watch_dir.clone())
    {
        anyhow::ensure!(
            dir.is_dir(),
            "config.watch.dir / --watch: {} is not a directory",
            dir.display()
        );
        tokio::spawn(wharf::herder::folder::watch_dir(
            herder.clone(),
            dir,
            Duration::from_secs(2),
        ));
    }
    let status = herder.status_board().clone();

    let mut report = tokio::time::interval(Duration::from_secs(progress_secs.max(1)));
    report.tick().await;
    let mut check = tokio::time::interval(Duration::from_millis(200));
    let started = Instant::now();
    let mut last: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.recv() => break,
            _ = check.tick() => {
                if herder.all_ended().await {
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
    let failed: Vec<String> = status
        .snapshot()
        .into_iter()
        .filter(|(_, _, s, _)| s.state == State::Failed)
        .map(|(c, t, s, _)| format!("{c}-{t}: {}", s.trace.unwrap_or_default()))
        .collect();
    print_progress(&status, &last, progress_secs.max(1), started);
    herder.shutdown().await;
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

//! What the wasm boundary costs: datagen → identity transform → discarding
//! sink, 200-byte records, at batch sizes 1, 100 and 1000, driven three ways:
//!   native  the same plugin crates compiled natively, called through the SDK
//!           traits, once passing owned records and once passing encoded
//!           batches through the calls the host makes into wasm;
//!   wasm    the built components, called through the host's instances (one
//!           poll, one apply, one put per batch, each crossing the boundary;
//!           the batch stays encoded from one plugin to the next, checked
//!           by the host on the way, as in the worker's transform chain);
//!   worker  the full standalone worker (tasks, bounded queues, offset commits).
//! Prints a table; run it with `bench/run plugin-overhead`. `BENCH_ONLY=wasm`
//! (or `native`, `worker`) runs one pipeline alone at batch 1000, for `perf`.

use std::time::{Duration, Instant};

use anyhow::Context;
use wharf::config::parse;
use wharf::offsets::FileOffsetStore;
use wharf::plugin::{Limits, PluginHost, TaskId, TEST_PLUGIN_DIR};
use wharf::worker;
use wharf_sdk::{Batch, BatchWriter, Config, Plugin, Sink, Source, Transform};

const RECORD_SIZE: usize = 200;
const BATCHES: [u32; 3] = [1, 100, 1000];

fn datagen_config() -> Vec<(String, String)> {
    [
        ("topic", "bench"),
        ("rate", "0"),
        ("record.size", "200"),
        ("partitions", "1"),
        ("max.records", "0"),
        ("seed", "42"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A plugin's component: the one the runtime build made (the same bytes as
/// the built-in datagen), or one from `BENCH_PLUGIN_DIR`, to measure a
/// rebuilt guest without rebuilding the host.
fn component(name: &str) -> String {
    let dir = std::env::var("BENCH_PLUGIN_DIR").unwrap_or_else(|_| TEST_PLUGIN_DIR.to_string());
    format!("{dir}/wharf_{name}.wasm")
}

fn measure_for() -> Duration {
    let secs = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(secs)
}

type NativePlugins = (
    wharf_datagen::Datagen,
    wharf_identity::Identity,
    wharf_discard::Discard,
);

/// The three plugin crates compiled natively, opened as the wasm ones are.
fn native_plugins() -> anyhow::Result<NativePlugins> {
    let spec = <wharf_datagen::Datagen as Plugin>::config_spec();
    let config = Config::from_pairs(datagen_config()).with_defaults(&spec);
    let source = wharf_datagen::Datagen::open(&config, Vec::new())
        .map_err(|e| anyhow::anyhow!("datagen open: {e}"))?;
    let empty = Config::from_pairs(Vec::new());
    let transform = wharf_identity::Identity::open(&empty)
        .map_err(|e| anyhow::anyhow!("identity open: {e}"))?;
    let sink =
        wharf_discard::Discard::open(&empty).map_err(|e| anyhow::anyhow!("discard open: {e}"))?;
    Ok((source, transform, sink))
}

/// Records per second through the natively compiled plugin crates, handing
/// owned records from one to the next (`poll`, `apply`, `put`).
fn native_records(batch: u32) -> anyhow::Result<f64> {
    let (mut source, mut transform, mut sink) = native_plugins()?;
    let (deadline, start) = (measure_for(), Instant::now());
    let mut n = 0u64;
    while start.elapsed() < deadline {
        let mut out = Vec::with_capacity(batch as usize);
        source
            .poll(batch, &mut out)
            .map_err(|e| anyhow::anyhow!("poll: {e}"))?;
        let out = transform
            .apply(out)
            .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
        n += out.len() as u64;
        sink.put(out).map_err(|e| anyhow::anyhow!("put: {e}"))?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Records per second through the natively compiled plugin crates, handing
/// encoded batches from one to the next: the very calls the host makes
/// into wasm (`poll_batch`, `apply_batch`, `put_batch`), without a boundary.
fn native_encoded(batch: u32) -> anyhow::Result<f64> {
    let (mut source, mut transform, mut sink) = native_plugins()?;
    let (deadline, start) = (measure_for(), Instant::now());
    let mut n = 0u64;
    while start.elapsed() < deadline {
        let out = poll_encoded(&mut source, batch)?;
        let out = transform
            .apply_batch(out)
            .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
        n += u64::from(out.len());
        sink.put_batch(out)
            .map_err(|e| anyhow::anyhow!("put: {e}"))?;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn poll_encoded(source: &mut wharf_datagen::Datagen, batch: u32) -> anyhow::Result<Batch> {
    let mut out = BatchWriter::default();
    source
        .poll_batch(batch, &mut out)
        .map_err(|e| anyhow::anyhow!("poll: {e}"))?;
    Ok(Batch::from_writer(out))
}

/// Records per second through the wasm components, one call per stage per batch.
async fn wasm(host: &PluginHost, batch: u32) -> anyhow::Result<f64> {
    let id = |n: &str| TaskId {
        connector: format!("bench-{n}"),
        task: 0,
    };
    let limits = Limits::default();
    let datagen = host.load(&component("datagen")).await?;
    let identity = host.load(&component("identity")).await?;
    let discard = host.load(&component("discard")).await?;
    let mut source = datagen.source(id("source"), limits.clone()).await?;
    source.open(&datagen_config(), &[]).await?;
    let mut transform = identity.transform(id("transform"), limits.clone()).await?;
    transform.open(&[]).await?;
    let mut sink = discard.sink(id("sink"), limits).await?;
    sink.open(&[]).await?;
    let (deadline, start) = (measure_for(), Instant::now());
    let mut n = 0u64;
    while start.elapsed() < deadline {
        let records = source.poll_batch(batch).await?;
        let records = transform.apply_batch(&records).await?;
        n += records.len() as u64;
        sink.put_batch(&records).await?;
    }
    sink.flush(true).await?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Each wasm stage alone at batch 1000, records per second: where the time goes.
async fn stages(host: &PluginHost) -> anyhow::Result<(f64, f64, f64)> {
    let id = |n: &str| TaskId {
        connector: format!("bench-{n}"),
        task: 0,
    };
    let limits = Limits::default();
    let datagen = host.load(&component("datagen")).await?;
    let identity = host.load(&component("identity")).await?;
    let discard = host.load(&component("discard")).await?;
    let mut source = datagen.source(id("source"), limits.clone()).await?;
    source.open(&datagen_config(), &[]).await?;
    let mut transform = identity.transform(id("transform"), limits.clone()).await?;
    transform.open(&[]).await?;
    let mut sink = discard.sink(id("sink"), limits).await?;
    sink.open(&[]).await?;
    let batch = source.poll_batch(1000).await?;
    let window = measure_for() / 2;

    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < window {
        n += source.poll_batch(1000).await?.len() as u64;
    }
    let poll = n as f64 / start.elapsed().as_secs_f64();
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < window {
        n += transform.apply_batch(&batch).await?.len() as u64;
    }
    let apply = n as f64 / start.elapsed().as_secs_f64();
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < window {
        sink.put_batch(&batch).await?;
        n += batch.len() as u64;
    }
    let put = n as f64 / start.elapsed().as_secs_f64();
    Ok((poll, apply, put))
}

/// Each natively compiled stage alone at batch 1000, records per second,
/// through the same batch calls as the wasm stages.
fn native_stages() -> anyhow::Result<(f64, f64, f64)> {
    let (mut source, mut transform, mut sink) = native_plugins()?;
    let batch = poll_encoded(&mut source, 1000)?;
    let window = measure_for() / 2;
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < window {
        n += u64::from(poll_encoded(&mut source, 1000)?.len());
    }
    let polled = n as f64 / start.elapsed().as_secs_f64();
    // Each call gets its own copy of the batch, as a wasm stage gets the
    // bytes copied into its memory: the copy is part of the cost.
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < window {
        let out = transform
            .apply_batch(batch.clone())
            .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
        n += u64::from(std::hint::black_box(out).len());
    }
    let applied = n as f64 / start.elapsed().as_secs_f64();
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed() < window {
        // black_box: a copy nothing reads is otherwise optimised away.
        sink.put_batch(std::hint::black_box(batch.clone()))
            .map_err(|e| anyhow::anyhow!("put: {e}"))?;
        n += u64::from(batch.len());
    }
    let put = n as f64 / start.elapsed().as_secs_f64();
    Ok((polled, applied, put))
}

/// Records per second through the standalone worker with the same plugins,
/// counted as the sink made them durable (its flush returned).
async fn worker_run(host: &PluginHost, batch: u32, dir: &std::path::Path) -> anyhow::Result<f64> {
    let source = format!(
        "name: bench-source\nconfig:\n  connector.class: datagen\n  topic: bench\n  rate: 0\n  \
         record.size: {RECORD_SIZE}\n  partitions: 1\n  batch.max.records: {batch}\n  \
         transforms: id\n  transforms.id.type: {TEST_PLUGIN_DIR}/wharf_identity.wasm\n"
    );
    let sink = format!(
        "name: bench-sink\nconfig:\n  connector.class: {TEST_PLUGIN_DIR}/wharf_discard.wasm\n  \
         topics: bench\n"
    );
    let configs = vec![
        parse(&source, "bench-source.yaml", None)?,
        parse(&sink, "bench-sink.yaml", None)?,
    ];
    let prepared = worker::prepare_all(host, &configs).await?;
    let offsets = FileOffsetStore::open(&dir.join(format!("offsets-{batch}.json")))?;
    let running = worker::start(prepared, offsets, None).await?;
    let sunk = || {
        running
            .status
            .snapshot()
            .iter()
            .filter(|(c, ..)| c == "bench-sink")
            // What the sink made durable, not what it was handed: a
            // worker that reads fast and flushes late is not faster.
            .map(|(.., counters)| {
                counters
                    .records_durable
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum::<u64>()
    };
    // Warm up (instantiation, first compile), then measure a steady window.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, start) = (sunk(), Instant::now());
    tokio::time::sleep(measure_for()).await;
    let rate = (sunk() - before) as f64 / start.elapsed().as_secs_f64();
    running.stop().await;
    Ok(rate)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("wharf-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("bench scratch dir")?;
    let host = PluginHost::new(Some(dir.join("components")))?;
    // One pipeline alone at batch 1000, for a profiler to attach to.
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("wasm") => {
            println!("wasm: {:.0} rec/s", rt.block_on(wasm(&host, 1000))?);
            return Ok(());
        }
        Ok("native") => {
            println!("native batches: {:.0} rec/s", native_encoded(1000)?);
            return Ok(());
        }
        Ok("worker") => {
            let rate = rt.block_on(worker_run(&host, 1000, &dir))?;
            println!("worker: {rate:.0} rec/s");
            return Ok(());
        }
        Ok(other) => anyhow::bail!("BENCH_ONLY={other}: use wasm, native or worker"),
        Err(_) => {}
    }
    println!(
        "plugin overhead: datagen -> identity -> discard, {RECORD_SIZE}-byte records, {:.0}s per cell",
        measure_for().as_secs_f64()
    );
    println!("native: the plugin crates compiled natively, passing owned records (`records`) or");
    println!("encoded batches (`batches`, the calls the host makes into wasm); wasm/native is");
    println!("against the faster of the two.");
    println!(
        "| batch | native records rec/s | native batches rec/s | wasm rec/s | wasm/native | wasm µs/batch (3 calls) | worker rec/s |"
    );
    println!("|------:|---------------------:|---------------------:|-----------:|------------:|------------------------:|-------------:|");
    for batch in BATCHES {
        let records = native_records(batch)?;
        let batches = native_encoded(batch)?;
        let w = rt.block_on(wasm(&host, batch))?;
        let full = rt.block_on(worker_run(&host, batch, &dir))?;
        println!(
            "| {batch:>5} | {records:>20.0} | {batches:>20.0} | {w:>10.0} | {:>10.1}% | {:>23.2} | {full:>12.0} |",
            100.0 * w / records.max(batches),
            1e6 * batch as f64 / w,
        );
    }
    let (poll, apply, put) = rt.block_on(stages(&host))?;
    let (npoll, napply, nput) = native_stages()?;
    println!();
    println!("each stage alone, batch 1000, records/s (wasm: the boundary crossings and the host's check of each returned batch included):");
    println!("| stage | native | wasm | wasm/native |");
    println!("|-------|-------:|-----:|------------:|");
    for (stage, n, w) in [
        ("datagen poll", npoll, poll),
        ("identity apply", napply, apply),
        ("discard put", nput, put),
    ] {
        println!("| {stage} | {n:.0} | {w:.0} | {:.0}% |", 100.0 * w / n);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

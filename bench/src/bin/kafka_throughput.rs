//! Wharf against Kafka's own perf tools from the same jars, in the same run:
//!   produce: datagen (wasm) → Kafka, vs `ProducerPerformance` (kafka-producer-perf-test)
//!   consume: Kafka → discard (wasm sink, group connect-<name>), vs `ConsumerPerformance`
//! Same broker, same record count and size, same producer settings (acks=all,
//! idempotence, lz4, linger 5 ms, one request in flight as Wharf's default;
//! `BENCH_KAFKA_IN_FLIGHT` sets another for both), topics with 4 partitions.
//! Run with `bench/run kafka` (needs `tests/services/up`).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use wharf::config::{parse, WorkerConfig};
use wharf::kafka::KafkaHub;
use wharf::offsets::FileOffsetStore;
use wharf::plugin::{PluginHost, TEST_PLUGIN_DIR};
use wharf::worker;

const PARTITIONS: i32 = 4;
const BOOTSTRAP: &str = "127.0.0.1:9092";

/// Produce requests in flight per connection, for both producers.
fn in_flight() -> String {
    std::env::var("BENCH_KAFKA_IN_FLIGHT").unwrap_or_else(|_| "1".into())
}

fn records_for(size: usize) -> u64 {
    let mb: u64 = std::env::var("BENCH_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(400);
    // Whole per-partition counts so datagen's max.records divides evenly.
    (mb * 1024 * 1024 / size as u64) / PARTITIONS as u64 * PARTITIONS as u64
}

fn kafka_tool(args: &[&str]) -> anyhow::Result<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(root.join("tests/services/kafka-tool"))
        .args(args)
        .output()
        .context("running tests/services/kafka-tool")?;
    if !out.status.success() {
        bail!(
            "kafka-tool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn create_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> anyhow::Result<()> {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &opts,
        )
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    Ok(())
}

/// Records/s of ProducerPerformance, parsed from its summary line.
fn perf_produce(topic: &str, n: u64, size: usize) -> anyhow::Result<f64> {
    let out = kafka_tool(&[
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        &n.to_string(),
        "--record-size",
        &size.to_string(),
        "--throughput",
        "-1",
        "--producer-props",
        &format!("bootstrap.servers={BOOTSTRAP}"),
        "acks=all",
        "enable.idempotence=true",
        "compression.type=lz4",
        "linger.ms=5",
        &format!("max.in.flight.requests.per.connection={}", in_flight()),
    ])?;
    // "N records sent, X records/sec (Y MB/sec), ..." is the last line.
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent"))
        .context("no summary from ProducerPerformance")?;
    let rate = line
        .split(',')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("unreadable summary: {line}"))?;
    Ok(rate)
}

/// Records/s of ConsumerPerformance once fetching (its fetch.nMsg.sec
/// column: the group join is not counted, as for Wharf below).
fn perf_consume(topic: &str, n: u64) -> anyhow::Result<f64> {
    let out = kafka_tool(&[
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server",
        BOOTSTRAP,
        "--topic",
        topic,
        "--num-records",
        &n.to_string(),
        "--group",
        &format!("perf-{topic}"),
    ])?;
    let mut lines = out.lines().filter(|l| !l.trim().is_empty());
    let header = lines
        .find(|l| l.contains("nMsg.sec"))
        .context("no header from ConsumerPerformance")?;
    let values = lines.next().context("no values from ConsumerPerformance")?;
    let col = header
        .split(',')
        .position(|h| h.trim() == "fetch.nMsg.sec")
        .context("no fetch.nMsg.sec column")?;
    let rate = values
        .split(',')
        .nth(col)
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("unreadable values: {values}"))?;
    Ok(rate)
}

fn total_messages(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<u64> {
    let mut total = 0;
    for p in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        total += (high - low) as u64;
    }
    Ok(total)
}

/// Records/s of datagen → Kafka: from start until the brokers hold all `n`.
async fn wharf_produce(
    host: &PluginHost,
    hub: &std::sync::Arc<KafkaHub>,
    topic: &str,
    n: u64,
    size: usize,
    dir: &std::path::Path,
) -> anyhow::Result<f64> {
    let yaml = format!(
        "name: bench-produce-{topic}\nconfig:\n  connector.class: datagen\n  tasks.max: 2\n  topic: {topic}\n  \
         rate: 0\n  record.size: {size}\n  partitions: {PARTITIONS}\n  max.records: {}\n  \
         batch.max.records: 2000\n",
        n / PARTITIONS as u64
    );
    let configs = vec![parse(&yaml, "produce.yaml", None)?];
    let prepared = worker::prepare_all(host, &configs).await?;
    let offsets = FileOffsetStore::open(&dir.join(format!("{topic}.offsets.json")))?;
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .create()?;
    let start = Instant::now();
    let running = worker::start(prepared, offsets, Some(hub.clone())).await?;
    while total_messages(&watcher, topic)? < n {
        if start.elapsed() > Duration::from_secs(600) {
            bail!("datagen did not deliver {n} records in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    running.stop().await;
    Ok(n as f64 / secs)
}

/// Records/s of Kafka → discard: from the first record (after the group
/// join) until the sink took all `n`.
async fn wharf_consume(
    host: &PluginHost,
    hub: &std::sync::Arc<KafkaHub>,
    topic: &str,
    n: u64,
    dir: &std::path::Path,
) -> anyhow::Result<f64> {
    let yaml = format!(
        "name: bench-consume-{topic}\nconfig:\n  connector.class: {TEST_PLUGIN_DIR}/wharf_discard.wasm\n  \
         tasks.max: 1\n  topics: {topic}\n  batch.max.records: 2000\n"
    );
    let configs = vec![parse(&yaml, "consume.yaml", None)?];
    let prepared = worker::prepare_all(host, &configs).await?;
    let offsets = FileOffsetStore::open(&dir.join("consume.offsets.json"))?;
    let begun = Instant::now();
    let running = worker::start(prepared, offsets, Some(hub.clone())).await?;
    let mut start = None;
    loop {
        let got: u64 = running
            .status
            .snapshot()
            .iter()
            .map(|(.., c)| c.records_in.load(Ordering::Relaxed))
            .sum();
        if got > 0 && start.is_none() {
            start = Some(Instant::now());
        }
        if got >= n {
            break;
        }
        let start = start.unwrap_or(begun);
        if start.elapsed() > Duration::from_secs(600) {
            bail!("the sink took only {got} of {n} records in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.unwrap_or(begun).elapsed().as_secs_f64();
    running.stop().await;
    Ok(n as f64 / secs)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("wharf-bench-kafka-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let host = PluginHost::new(Some(dir.join("components")))?;
    let worker_config = WorkerConfig::from_map(
        "bench",
        BTreeMap::from([
            ("bootstrap.servers".to_string(), BOOTSTRAP.to_string()),
            (
                "producer.max.in.flight.requests.per.connection".to_string(),
                in_flight(),
            ),
        ]),
    )?;
    let hub = KafkaHub::connect(&worker_config)?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .create()?;
    let run = format!("{}", std::process::id());
    let mut rows = Vec::new();
    for size in [200usize, 1024] {
        let n = records_for(size);
        let (perf_topic, wharf_topic) = (
            format!("bench-perf-{size}-{run}"),
            format!("bench-wharf-{size}-{run}"),
        );
        rt.block_on(create_topic(&admin, &perf_topic))?;
        rt.block_on(create_topic(&admin, &wharf_topic))?;
        eprintln!("[bench] {size} B: ProducerPerformance, {n} records");
        let perf_p = perf_produce(&perf_topic, n, size)?;
        eprintln!("[bench] {size} B: datagen -> Kafka");
        let wharf_p = rt.block_on(wharf_produce(&host, &hub, &wharf_topic, n, size, &dir))?;
        eprintln!("[bench] {size} B: ConsumerPerformance");
        let perf_c = perf_consume(&wharf_topic, n)?;
        eprintln!("[bench] {size} B: Kafka -> discard");
        let wharf_c = rt.block_on(wharf_consume(&host, &hub, &wharf_topic, n, &dir))?;
        rows.push((size, n, perf_p, wharf_p, perf_c, wharf_c));
    }
    println!(
        "Kafka throughput, same broker and run, {} produce request(s) in flight; records/s (MB/s)",
        in_flight()
    );
    println!("| record | records | producer-perf-test | datagen → Kafka | ratio | consumer-perf-test | Kafka → discard | ratio |");
    println!("|-------:|--------:|-------------------:|----------------:|------:|-------------------:|----------------:|------:|");
    let mb = |r: f64, size: usize| r * size as f64 / 1_048_576.0;
    for (size, n, pp, wp, pc, wc) in rows {
        println!(
            "| {size} B | {n} | {pp:.0} ({:.1}) | {wp:.0} ({:.1}) | {:.0}% | {pc:.0} ({:.1}) | {wc:.0} ({:.1}) | {:.0}% |",
            mb(pp, size),
            mb(wp, size),
            100.0 * wp / pp,
            mb(pc, size),
            mb(wc, size),
            100.0 * wc / pc
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

//! Kafka → OpenSearch through the `elasticsearch-sink` wasm plugin, against
//! the limit: a direct bulk load of the same 1 KiB JSON documents with the
//! same client (the `elasticsearch` crate), batch size and requests in flight,
//! in the same run. Both count documents the engine acknowledged (its
//! indexing stats; no forced refresh). Run with `bench/run es` (needs
//! `tests/services/up`); BENCH_ES_DOCS sets the volume (default 100000).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::Transport;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use wharf::config::{parse, WorkerConfig};
use wharf::kafka::KafkaHub;
use wharf::offsets::FileOffsetStore;
use wharf::plugin::PluginHost;
use wharf::worker;

const BOOTSTRAP: &str = "127.0.0.1:9092";
const URL: &str = "http://127.0.0.1:9200";
const BATCH: usize = 1000;
const IN_FLIGHT: usize = 5;

fn doc(i: u64) -> String {
    let body =
        json!({"n": i, "name": format!("item-{i}"), "tags": ["a", "b"], "pad": ""}).to_string();
    let pad = 1024usize.saturating_sub(body.len());
    json!({"n": i, "name": format!("item-{i}"), "tags": ["a", "b"], "pad": "x".repeat(pad)})
        .to_string()
}

async fn call(
    client: &Elasticsearch,
    method: Method,
    path: &str,
    body: Option<String>,
) -> anyhow::Result<Value> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let r = client
        .send(method, path, headers, None::<&()>, body, None)
        .await?;
    let status = r.status_code().as_u16();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if status >= 300 {
        bail!("{path}: HTTP {status} {v}");
    }
    Ok(v)
}

async fn create_index(client: &Elasticsearch, index: &str) -> anyhow::Result<()> {
    call(
        client,
        Method::Put,
        &format!("/{index}"),
        Some(json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0}}).to_string()),
    )
    .await
    .map(|_| ())
}

/// Documents the engine has indexed into `index` (no refresh needed).
async fn indexed(client: &Elasticsearch, index: &str) -> anyhow::Result<u64> {
    let v = call(
        client,
        Method::Get,
        &format!("/{index}/_stats/indexing"),
        None,
    )
    .await?;
    Ok(v["indices"][index]["primaries"]["indexing"]["index_total"]
        .as_u64()
        .unwrap_or(0))
}

/// Docs/s of a direct bulk load: `BATCH` per request, `IN_FLIGHT` at once.
async fn direct(client: &Elasticsearch, index: &str, n: u64) -> anyhow::Result<f64> {
    create_index(client, index).await?;
    let start = Instant::now();
    let mut inflight = JoinSet::new();
    let mut i = 0u64;
    while i < n {
        let end = (i + BATCH as u64).min(n);
        let mut body = String::with_capacity(BATCH * 1100);
        for k in i..end {
            body.push_str(
                &json!({"index": {"_index": index, "_id": format!("t+0+{k}")}}).to_string(),
            );
            body.push('\n');
            body.push_str(&doc(k));
            body.push('\n');
        }
        i = end;
        if inflight.len() >= IN_FLIGHT {
            inflight.join_next().await.context("join")???;
        }
        let c = client.clone();
        inflight.spawn(async move {
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            let r = c
                .send(
                    Method::Post,
                    "/_bulk",
                    headers,
                    None::<&()>,
                    Some(body),
                    None,
                )
                .await?;
            let v: Value = r.json().await?;
            if v["errors"] == json!(true) {
                bail!(
                    "bulk errors: {}",
                    v.to_string().chars().take(300).collect::<String>()
                );
            }
            Ok::<(), anyhow::Error>(())
        });
    }
    while let Some(r) = inflight.join_next().await {
        r??;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

async fn produce(topic: &str, n: u64) -> anyhow::Result<()> {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", BOOTSTRAP)
        .set("linger.ms", "10")
        .set("compression.type", "lz4")
        .create()?;
    let mut from = 0;
    while from < n {
        let to = (from + 10_000).min(n);
        let docs: Vec<String> = (from..to).map(doc).collect();
        // send_result queues at once; `send` would only queue when awaited,
        // one record per linger.
        let mut sends = Vec::with_capacity(docs.len());
        for v in &docs {
            let record = FutureRecord::<(), _>::to(topic).partition(0).payload(v);
            sends.push(p.send_result(record).map_err(|(e, _)| e)?);
        }
        for f in sends {
            f.await?.map_err(|(e, _)| e)?;
        }
        from = to;
    }
    Ok(())
}

/// Docs/s of Kafka → elasticsearch-sink: from the first record read until
/// the engine has indexed all `n`.
async fn wharf(
    host: &PluginHost,
    hub: &std::sync::Arc<KafkaHub>,
    client: &Elasticsearch,
    topic: &str,
    n: u64,
    dir: &std::path::Path,
) -> anyhow::Result<f64> {
    create_index(client, topic).await?;
    let yaml = format!(
        "name: bench-es-{topic}\nconfig:\n  connector.class: elasticsearch-sink\n  tasks.max: 1\n  \
         topics: {topic}\n  connection.url: {URL}\n  key.ignore: true\n  batch.size: {BATCH}\n  \
         max.in.flight.requests: {IN_FLIGHT}\n  batch.max.records: {BATCH}\n  read.timeout.ms: 60000\n"
    );
    let configs = vec![parse(&yaml, "es.yaml", None)?];
    let prepared = worker::prepare_all(host, &configs).await?;
    let offsets = FileOffsetStore::open(&dir.join("es.offsets.json"))?;
    let begun = Instant::now();
    let running = worker::start(prepared, offsets, Some(hub.clone())).await?;
    let mut start = None;
    loop {
        if start.is_none() {
            let got: u64 = running
                .status
                .snapshot()
                .iter()
                .map(|(.., c)| c.records_in.load(Ordering::Relaxed))
                .sum();
            if got > 0 {
                start = Some(Instant::now());
            }
        }
        if indexed(client, topic).await? >= n {
            break;
        }
        if begun.elapsed() > Duration::from_secs(900) {
            bail!("the sink did not index {n} documents in 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.unwrap_or(begun).elapsed().as_secs_f64();
    running.stop().await;
    Ok(n as f64 / secs)
}

fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("BENCH_ES_DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("wharf-bench-es-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let host = PluginHost::new(Some(dir.join("components")))?;
    let hub = KafkaHub::connect(&WorkerConfig::from_map(
        "bench",
        BTreeMap::from([("bootstrap.servers".to_string(), BOOTSTRAP.to_string())]),
    )?)?;
    let client = Elasticsearch::new(Transport::single_node(URL)?);
    let run = std::process::id();
    let topic = format!("bench-es-{run}");
    eprintln!("[bench] producing {n} × 1 KiB documents to {topic}");
    rt.block_on(produce(&topic, n))?;
    eprintln!("[bench] direct bulk load");
    let limit = rt.block_on(direct(&client, &format!("bench-direct-{run}"), n))?;
    eprintln!("[bench] Kafka -> elasticsearch-sink");
    let ours = rt.block_on(wharf(&host, &hub, &client, &topic, n, &dir))?;
    println!("Kafka → OpenSearch, 1 KiB JSON documents, batch {BATCH}, {IN_FLIGHT} requests in flight, same run");
    println!("| documents | direct bulk (the limit) | Kafka → elasticsearch-sink | ratio |");
    println!("|----------:|------------------------:|---------------------------:|------:|");
    println!(
        "| {n} | {:.0} docs/s ({:.1} MB/s) | {:.0} docs/s ({:.1} MB/s) | {:.0}% |",
        limit,
        limit * 1024.0 / 1e6,
        ours,
        ours * 1024.0 / 1e6,
        100.0 * ours / limit
    );
    for index in [format!("bench-direct-{run}"), topic] {
        let _ = rt.block_on(call(&client, Method::Delete, &format!("/{index}"), None));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

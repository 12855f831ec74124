//! Kafka → S3 through the `s3-sink` wasm plugin, in JSON lines and in
//! Parquet, against the limit: a direct aws-sdk-s3 multipart upload of the
//! same JSON lines bytes (same file size, part size and parts in flight), in
//! the same run. Wharf's time runs from the first record read until the last
//! file is in the bucket. Run with `bench/run s3` (needs
//! `tests/services/up`); BENCH_S3_MB sets the volume (default 200),
//! BENCH_S3_ROUNDS how many direct/JSON pairs run, alternating (default 1).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use tokio::task::JoinSet;
use wharf::config::{parse, WorkerConfig};
use wharf::kafka::KafkaHub;
use wharf::offsets::FileOffsetStore;
use wharf::plugin::PluginHost;
use wharf::worker;

const BOOTSTRAP: &str = "127.0.0.1:9092";
const ENDPOINT: &str = "http://127.0.0.1:9000";
const FILE_RECORDS: u64 = 50_000;
const PART: usize = 8 << 20;
const IN_FLIGHT: usize = 4;

fn record(i: u64) -> String {
    let body = json!({"n": i, "name": format!("item-{i}"), "price": 1.5, "pad": ""}).to_string();
    let pad = 1023usize.saturating_sub(body.len());
    json!({"n": i, "name": format!("item-{i}"), "price": 1.5, "pad": "x".repeat(pad)}).to_string()
}

fn client() -> Client {
    let creds =
        aws_credential_types::Credentials::new("wharf", "wharf-secret", None, None, "bench");
    Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(ENDPOINT)
            .credentials_provider(creds)
            .force_path_style(true)
            .build(),
    )
}

/// MB/s of uploading `files` files of the JSON lines bytes, one after the
/// other, each in `PART` parts with `IN_FLIGHT` at once.
async fn direct(s3: &Client, bucket: &str, n: u64) -> anyhow::Result<(f64, u64)> {
    let files: Vec<Vec<u8>> = (0..n / FILE_RECORDS)
        .map(|f| {
            let mut body = Vec::with_capacity(FILE_RECORDS as usize * 1025);
            for i in f * FILE_RECORDS..(f + 1) * FILE_RECORDS {
                body.extend_from_slice(record(i).as_bytes());
                body.push(b'\n');
            }
            body
        })
        .collect();
    let bytes: u64 = files.iter().map(|f| f.len() as u64).sum();
    let start = Instant::now();
    for (f, body) in files.into_iter().enumerate() {
        let key = format!("direct/file-{f}.json");
        let id = s3
            .create_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .send()
            .await?
            .upload_id()
            .context("upload id")?
            .to_string();
        let mut inflight = JoinSet::new();
        let mut parts = Vec::new();
        for (i, chunk) in body.chunks(PART).enumerate() {
            if inflight.len() >= IN_FLIGHT {
                parts.push(inflight.join_next().await.context("join")???);
            }
            let (c, b, k, id, chunk) = (
                s3.clone(),
                bucket.to_string(),
                key.clone(),
                id.clone(),
                chunk.to_vec(),
            );
            inflight.spawn(async move {
                let n = i as i32 + 1;
                let out = c
                    .upload_part()
                    .bucket(b)
                    .key(k)
                    .upload_id(id)
                    .part_number(n)
                    .body(ByteStream::from(chunk))
                    .send()
                    .await?;
                Ok::<_, anyhow::Error>(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .build(),
                )
            });
        }
        while let Some(p) = inflight.join_next().await {
            parts.push(p??);
        }
        parts.sort_by_key(|p| p.part_number());
        s3.complete_multipart_upload()
            .bucket(bucket)
            .key(&key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await?;
    }
    Ok((bytes as f64 / 1e6 / start.elapsed().as_secs_f64(), bytes))
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
        let values: Vec<String> = (from..to).map(record).collect();
        // send_result queues at once; `send` would only queue when awaited,
        // one record per linger.
        let mut sends = Vec::with_capacity(values.len());
        for v in &values {
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

async fn objects(s3: &Client, bucket: &str, prefix: &str) -> anyhow::Result<usize> {
    let out = s3
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await?;
    Ok(out.contents().len())
}

/// MB/s of record bytes through Kafka → s3-sink in `format`.
#[allow(clippy::too_many_arguments)]
async fn wharf(
    host: &PluginHost,
    hub: &std::sync::Arc<KafkaHub>,
    s3: &Client,
    bucket: &str,
    topic: &str,
    format: &str,
    round: u32,
    n: u64,
    bytes: u64,
    dir: &std::path::Path,
) -> anyhow::Result<f64> {
    // Each round writes its own prefix with its own consumer group.
    let label = format!("{format}-{round}");
    let name = format!("bench-s3-{label}-{topic}");
    let yaml = format!(
        "name: {name}\nconfig:\n  connector.class: s3-sink\n  tasks.max: 1\n  topics: {topic}\n  \
         s3.bucket.name: {bucket}\n  store.url: {ENDPOINT}\n  aws.access.key.id: wharf\n  \
         aws.secret.access.key: wharf-secret\n  topics.dir: {label}\n  format.class: {format}\n  \
         flush.size: {FILE_RECORDS}\n  s3.part.size: {PART}\n  s3.part.upload.concurrency: {IN_FLIGHT}\n  \
         batch.max.records: 2000\n  plugin.call.timeout.ms: 120000\n"
    );
    let configs = vec![parse(&yaml, "s3.yaml", None)?];
    let prepared = worker::prepare_all(host, &configs).await?;
    let offsets = FileOffsetStore::open(&dir.join(format!("{label}.offsets.json")))?;
    let begun = Instant::now();
    let running = worker::start(prepared, offsets, Some(hub.clone())).await?;
    let files = (n / FILE_RECORDS) as usize;
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
        if objects(s3, bucket, &format!("{label}/")).await? >= files {
            break;
        }
        if begun.elapsed() > Duration::from_secs(900) {
            bail!("the sink did not write {files} files in 15 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = start.unwrap_or(begun).elapsed().as_secs_f64();
    running.stop().await;
    Ok(bytes as f64 / 1e6 / secs)
}

fn main() -> anyhow::Result<()> {
    let mb: u64 = std::env::var("BENCH_S3_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    // Whole files only: the sink writes a file when it has FILE_RECORDS.
    let n = ((mb * 1_000_000 / 1024) / FILE_RECORDS).max(1) * FILE_RECORDS;
    let rounds: u32 = std::env::var("BENCH_S3_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let rt = tokio::runtime::Runtime::new()?;
    let dir = std::env::temp_dir().join(format!("wharf-bench-s3-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let host = PluginHost::new(Some(dir.join("components")))?;
    let hub = KafkaHub::connect(&WorkerConfig::from_map(
        "bench",
        BTreeMap::from([("bootstrap.servers".to_string(), BOOTSTRAP.to_string())]),
    )?)?;
    let s3 = client();
    let run = std::process::id();
    let bucket = format!("bench-s3-{run}");
    rt.block_on(s3.create_bucket().bucket(&bucket).send())?;
    let topic = format!("bench-s3-{run}");
    eprintln!("[bench] producing {n} × 1 KiB JSON records to {topic}");
    rt.block_on(produce(&topic, n))?;
    // Direct and JSON runs alternate, each round compared within itself: on
    // a shared machine the rate drifts more between rounds than within one.
    let mut json = Vec::new();
    let mut bytes = 0;
    for round in 1..=rounds {
        eprintln!("[bench] round {round}/{rounds}: direct multipart upload");
        let (limit, b) = rt.block_on(direct(&s3, &bucket, n))?;
        bytes = b;
        eprintln!("[bench] round {round}/{rounds}: Kafka -> s3-sink (json)");
        let rate = rt.block_on(wharf(
            &host, &hub, &s3, &bucket, &topic, "json", round, n, bytes, &dir,
        ))?;
        json.push((limit, rate));
    }
    eprintln!("[bench] Kafka -> s3-sink (parquet)");
    let parquet = rt.block_on(wharf(
        &host, &hub, &s3, &bucket, &topic, "parquet", 1, n, bytes, &dir,
    ))?;
    println!(
        "Kafka → S3 (MinIO), {n} × 1 KiB JSON records ({:.0} MB), files of {FILE_RECORDS} records, \
         {} MiB parts, {IN_FLIGHT} in flight, same run",
        bytes as f64 / 1e6,
        PART >> 20
    );
    println!("| format | direct multipart upload (the limit) | Kafka → s3-sink | ratio |");
    println!("|--------|------------------------------------:|----------------:|------:|");
    for (round, (limit, rate)) in json.iter().enumerate() {
        println!(
            "| JSON lines (round {}) | {limit:.1} MB/s | {rate:.1} MB/s of records | {:.0}% |",
            round + 1,
            100.0 * rate / limit
        );
    }
    let (limit, _) = json[json.len() - 1];
    println!(
        "| Parquet (snappy) | {limit:.1} MB/s | {parquet:.1} MB/s of records | {:.0}% |",
        100.0 * parquet / limit
    );
    let mut ratios: Vec<f64> = json.iter().map(|(l, r)| r / l).collect();
    ratios.sort_by(f64::total_cmp);
    println!(
        "JSON: median {:.0}% of the direct rate over {rounds} round(s)",
        100.0 * ratios[ratios.len() / 2]
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

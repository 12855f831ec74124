//! First contact with each real service through the crate Wharf uses for it.
//! These prove the services `tests/services/up` starts are the real thing:
//! a topic round trip on Kafka, pgoutput changes from a logical slot, an S3
//! multipart upload, and an OpenSearch bulk index and search.

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, TopicPartitionList};
use wharf_it as it;

#[tokio::test]
async fn kafka_creates_topic_produces_and_consumes() -> anyhow::Result<()> {
    let topic = it::unique("it-kafka");
    let bootstrap = it::kafka_bootstrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 3, TopicReplication::Fixed(1))],
            &opts,
        )
        .await?;
    for r in created {
        r.map_err(|(t, e)| anyhow::anyhow!("create topic {t}: {e}"))?;
    }

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    const N: usize = 300;
    for i in 0..N {
        let key = format!("k{i}");
        let value = format!("{{\"seq\":{i}}}");
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition((i % 3) as i32)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("produce {i}: {e}"))?;
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", it::unique("it-group"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(&topic, p, rdkafka::Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;

    let mut seen = vec![false; N];
    let mut stream = consumer.stream();
    let mut got = 0;
    while got < N {
        let msg = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .context("timed out consuming")?
            .context("consumer stream ended")??;
        let value = std::str::from_utf8(msg.payload().unwrap_or_default())?;
        let v: serde_json::Value = serde_json::from_str(value)?;
        let seq = v["seq"].as_u64().context("seq missing")? as usize;
        ensure!(
            msg.partition() == (seq % 3) as i32,
            "record {seq} on wrong partition"
        );
        ensure!(
            msg.key() == Some(format!("k{seq}").as_bytes()),
            "key mismatch at {seq}"
        );
        ensure!(!seen[seq], "record {seq} consumed twice");
        seen[seq] = true;
        got += 1;
    }
    drop(stream);
    admin.delete_topics(&[&topic], &opts).await?;
    Ok(())
}

/// Walks pgoutput protocol v1 messages just far enough to count what arrived.
fn pgoutput_kind(data: &[u8]) -> anyhow::Result<char> {
    match data.first() {
        Some(b) => Ok(*b as char),
        None => bail!("empty pgoutput message"),
    }
}

#[tokio::test]
async fn postgres_logical_slot_streams_pgoutput_changes() -> anyhow::Result<()> {
    let client = it::postgres(&it::postgres_url()).await?;
    let table = it::unique("it_orders").replace('-', "_");
    let slot = table.clone();
    let publication = format!("{table}_pub");
    client
        .batch_execute(&format!(
            "CREATE TABLE {table} (id serial PRIMARY KEY, item text NOT NULL, qty int NOT NULL);
             CREATE PUBLICATION {publication} FOR TABLE {table};"
        ))
        .await?;
    client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await?;

    let result = async {
        client
            .batch_execute(&format!(
                "BEGIN;
                 INSERT INTO {table} (item, qty) VALUES ('apple', 1), ('pear', 2), ('fig', 3);
                 COMMIT;
                 UPDATE {table} SET qty = qty + 10 WHERE item = 'pear';
                 DELETE FROM {table} WHERE item = 'fig';"
            ))
            .await?;
        let rows = client
            .query(
                "SELECT data FROM pg_logical_slot_get_binary_changes($1, NULL, NULL,
                   'proto_version', '1', 'publication_names', $2)",
                &[&slot, &publication],
            )
            .await?;
        let kinds: Vec<char> = rows
            .iter()
            .map(|r| pgoutput_kind(r.get::<_, &[u8]>(0)))
            .collect::<anyhow::Result<_>>()?;
        let count = |k: char| kinds.iter().filter(|&&c| c == k).count();
        // A multi-statement simple query runs as one implicit transaction:
        // the explicit insert transaction, then update+delete together.
        ensure!(
            count('B') == 2 && count('C') == 2,
            "expected 2 transactions: {kinds:?}"
        );
        ensure!(count('R') >= 1, "no Relation message: {kinds:?}");
        ensure!(count('I') == 3, "expected 3 inserts: {kinds:?}");
        ensure!(count('U') == 1, "expected 1 update: {kinds:?}");
        ensure!(count('D') == 1, "expected 1 delete: {kinds:?}");
        // The Relation message names the table: namespace and name follow the
        // relation id as C strings.
        let rel = rows
            .iter()
            .map(|r| r.get::<_, &[u8]>(0))
            .find(|d| d.first() == Some(&b'R'))
            .context("no relation")?;
        let names = String::from_utf8_lossy(&rel[5..]);
        ensure!(
            names.contains(&table),
            "relation message does not name {table}"
        );
        anyhow::Ok(())
    }
    .await;

    // Leftover slots pin WAL forever: always drop.
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await?;
    client
        .batch_execute(&format!(
            "DROP PUBLICATION {publication}; DROP TABLE {table};"
        ))
        .await?;
    result
}

#[tokio::test]
async fn s3_multipart_put_list_and_get() -> anyhow::Result<()> {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

    let s3 = it::s3_client();
    let bucket = it::unique("it-bucket");
    s3.create_bucket().bucket(&bucket).send().await?;
    let key = "topics/orders/partition=0/orders+0+0000000000.json";

    // Two 5 MiB parts (S3's minimum for non-final parts) and a short tail.
    let part_size = 5 * 1024 * 1024;
    let body: Vec<u8> = (0..(2 * part_size + 12345))
        .map(|i| (i % 251) as u8)
        .collect();
    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .send()
        .await?;
    let upload_id = upload.upload_id().context("no upload id")?;
    let mut parts = Vec::new();
    for (n, chunk) in body.chunks(part_size).enumerate() {
        let number = n as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(&bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(chunk.to_vec()))
            .send()
            .await?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build(),
        );
    }
    ensure!(parts.len() == 3, "expected 3 parts");
    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await?;

    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("topics/orders/")
        .send()
        .await?;
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    ensure!(keys == vec![key], "unexpected listing {keys:?}");

    let got = s3.get_object().bucket(&bucket).key(key).send().await?;
    let bytes = got.body.collect().await?.into_bytes();
    ensure!(
        bytes.len() == body.len(),
        "size {} != {}",
        bytes.len(),
        body.len()
    );
    ensure!(bytes.as_ref() == body.as_slice(), "content differs");

    s3.delete_object().bucket(&bucket).key(key).send().await?;
    s3.delete_bucket().bucket(&bucket).send().await?;
    Ok(())
}

#[tokio::test]
async fn opensearch_bulk_indexes_and_searches() -> anyhow::Result<()> {
    use elasticsearch::http::request::JsonBody;
    use elasticsearch::indices::IndicesDeleteParts;
    use elasticsearch::{BulkParts, SearchParts};
    use serde_json::json;

    let es = it::opensearch_client()?;
    let index = it::unique("it-orders");
    let mut body: Vec<JsonBody<serde_json::Value>> = Vec::new();
    for i in 0..200 {
        body.push(json!({"index": {"_id": format!("order-{i}")}}).into());
        body.push(json!({"id": i, "status": if i % 4 == 0 { "shipped" } else { "new" }}).into());
    }
    let resp = es
        .bulk(BulkParts::Index(&index))
        .body(body)
        .refresh(elasticsearch::params::Refresh::True)
        .send()
        .await?;
    ensure!(
        resp.status_code().is_success(),
        "bulk HTTP {}",
        resp.status_code()
    );
    let result: serde_json::Value = resp.json().await?;
    ensure!(
        result["errors"] == json!(false),
        "bulk item errors: {result}"
    );
    ensure!(
        result["items"].as_array().map(Vec::len) == Some(200),
        "bulk item count"
    );

    let resp = es
        .search(SearchParts::Index(&[&index]))
        .body(json!({"query": {"term": {"status": "shipped"}}, "track_total_hits": true}))
        .send()
        .await?;
    let found: serde_json::Value = resp.json().await?;
    ensure!(
        found["hits"]["total"]["value"] == json!(50),
        "search result {found}"
    );

    es.indices()
        .delete(IndicesDeleteParts::Index(&[&index]))
        .send()
        .await?;
    Ok(())
}

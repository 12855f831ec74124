//! Kafka helpers for tests against the real broker from `tests/services/up`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

pub fn bootstrap() -> String {
    std::env::var("WHARF_KAFKA_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn consumer(group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer")
}

/// Every message of a topic, read from the beginning to the end as of now.
pub fn read_topic(topic: &str) -> Vec<OwnedMessage> {
    let c = consumer("wharf-test-reader");
    let meta = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for p in meta.topics()[0].partitions() {
        let (_, high) = c
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .expect("watermarks");
        if high > 0 {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("tpl");
            ends.insert(p.id(), high);
        }
    }
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = Instant::now();
    while !ends.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "reading {topic} timed out"
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            let positions = c.position().expect("position");
            for e in positions.elements() {
                if let (Offset::Offset(pos), Some(high)) = (e.offset(), ends.get(&e.partition())) {
                    if pos >= *high {
                        ends.remove(&e.partition());
                    }
                }
            }
            continue;
        };
        let m = m.expect("message");
        out.push(m.detach());
        if ends
            .get(&m.partition())
            .is_some_and(|h| m.offset() + 1 >= *h)
        {
            ends.remove(&m.partition());
        }
    }
    out
}

/// The sink's group `connect-<sink>` committed past the last message of
/// every partition (and not beyond the log's end).
pub fn assert_group_at_end(sink: &str, topic: &str, messages: &[OwnedMessage]) {
    let mut last = BTreeMap::new();
    for m in messages {
        let e = last.entry(m.partition()).or_insert(-1);
        *e = (*e).max(m.offset());
    }
    let c = consumer(&format!("connect-{sink}"));
    let mut tpl = TopicPartitionList::new();
    for p in last.keys() {
        tpl.add_partition(topic, *p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    for e in committed.elements() {
        let (_, high) = c
            .fetch_watermarks(topic, e.partition(), Duration::from_secs(10))
            .expect("watermarks");
        let Offset::Offset(at) = e.offset() else {
            panic!(
                "group connect-{sink} has no commit for partition {}",
                e.partition()
            );
        };
        assert!(
            at > last[&e.partition()] && at <= high,
            "group connect-{sink} partition {}: committed {at}, last message {}, end {high}",
            e.partition(),
            last[&e.partition()]
        );
    }
}

pub fn unique_id(dir: &std::path::Path) -> String {
    dir.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("x")
        .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
}

/// Produces (key, value) records to partition 0 of `topic`, in order, and
/// waits for every acknowledgement.
pub fn produce(topic: &str, records: &[(Option<String>, Option<String>)]) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    rt.block_on(async {
        let sends: Vec<_> = records
            .iter()
            .map(|(k, v)| {
                let mut r = FutureRecord::<String, String>::to(topic).partition(0);
                if let Some(k) = k {
                    r = r.key(k);
                }
                if let Some(v) = v {
                    r = r.payload(v);
                }
                producer.send(r, Duration::from_secs(30))
            })
            .collect();
        for s in sends {
            s.await.map_err(|(e, _)| e).expect("produce");
        }
    });
}

/// A record to produce with everything a Kafka record carries.
#[derive(Clone, Debug, Default)]
pub struct Rec {
    pub partition: i32,
    pub key: Option<String>,
    pub value: Option<String>,
    pub timestamp: Option<i64>,
    pub headers: Vec<(String, String)>,
}

/// Produces the records in order and waits for every acknowledgement.
pub fn produce_records(topic: &str, records: &[Rec]) {
    use rdkafka::message::{Header, OwnedHeaders};
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    rt.block_on(async {
        let mut sends = Vec::with_capacity(records.len());
        for r in records {
            let mut f = FutureRecord::<String, String>::to(topic).partition(r.partition);
            if let Some(k) = &r.key {
                f = f.key(k);
            }
            if let Some(v) = &r.value {
                f = f.payload(v);
            }
            if let Some(ts) = r.timestamp {
                f = f.timestamp(ts);
            }
            if !r.headers.is_empty() {
                let mut h = OwnedHeaders::new();
                for (k, v) in &r.headers {
                    h = h.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                f = f.headers(h);
            }
            // Enqueued now, not when awaited: awaiting each send in turn
            // would cost a linger per record.
            loop {
                match producer.send_result(f) {
                    Ok(delivery) => {
                        sends.push(delivery);
                        break;
                    }
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(
                            rdkafka::types::RDKafkaErrorCode::QueueFull,
                        ),
                        back,
                    )) => {
                        f = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => panic!("produce: {e}"),
                }
            }
        }
        for s in sends {
            s.await
                .expect("delivery")
                .map_err(|(e, _)| e)
                .expect("produce");
        }
    });
}

/// Creates a topic with `partitions` partitions (replication 1).
pub fn create_topic(topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin");
    let results = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        ))
        .expect("create topics");
    for r in results {
        r.map_err(|(t, e)| format!("{t}: {e}"))
            .expect("topic created");
    }
}

/// The offset the group committed on a partition, if any.
pub fn committed(group: &str, topic: &str, partition: i32) -> Option<i64> {
    let c = consumer(group);
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    c.committed_offsets(tpl, Duration::from_secs(10))
        .ok()
        .and_then(|t| t.find_partition(topic, partition).map(|p| p.offset()))
        .and_then(|o| match o {
            Offset::Offset(n) => Some(n),
            _ => None,
        })
}

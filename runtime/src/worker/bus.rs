//! The in-process path from sources to sinks used when a standalone worker
//! runs without Kafka: bounded channels per sink task, routed by topic and
//! partition, with acknowledgements so source offsets are committed only
//! after every sink that received a batch has flushed it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, Notify};
use wharf_records::BatchWriter;

use crate::plugin::RecordBatch;

use super::ack::BatchAck;

/// Batches a sink task may have queued before its sources wait.
pub const SINK_QUEUE_BATCHES: usize = 16;

/// One sink's share of a batch. `ack` after the sink flushed it; dropping it
/// unacknowledged (a failed sink) marks the batch lost so its offsets are
/// never committed.
pub struct Delivery {
    pub records: RecordBatch,
    ack: Option<Arc<BatchAck>>,
}

impl Delivery {
    pub fn ack(mut self) {
        if let Some(a) = self.ack.take() {
            a.settle_one();
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(a) = self.ack.take() {
            a.fail(|| "a sink task ended before acknowledging a batch".into());
        }
    }
}

/// One sink connector's task queues; a record goes to the task that owns its
/// partition (or key hash), so per-partition order holds.
struct Subscriber {
    topics: Vec<String>,
    tasks: Vec<mpsc::Sender<Delivery>>,
}

/// Routes by topic. Sink connectors subscribe and unsubscribe while sources
/// publish (connectors come and go through the REST API), so the table sits
/// behind a lock that `publish` holds only while it sorts a batch.
///
/// There is no log behind the bus: a batch acknowledged with no reader is
/// lost. So a topic that has or had a reader is *claimed* for good, and a
/// batch for a claimed topic with no reader right now (its sink stopped,
/// restarting, being reconfigured or deleted) waits until one subscribes:
/// the source is held back, and its offsets do not move past the batch.
/// Only a topic no sink ever read is dropped (the source task says so).
#[derive(Default)]
pub struct Bus {
    table: RwLock<Table>,
    /// Woken on every subscription, for batches waiting for a reader.
    subscribed: Notify,
}

#[derive(Default)]
struct Table {
    sinks: HashMap<String, Subscriber>,
    claimed: HashSet<String>,
}

/// Records bound for one sink task, by (sink connector's place in the table
/// while it is read, task slot). A batch reaches a handful of tasks, so a
/// short list beats hashing every record.
type Parts = Vec<((usize, usize), mpsc::Sender<Delivery>, BatchWriter)>;

impl Bus {
    /// Creates the queues of one sink connector's tasks for its topics,
    /// replacing any earlier subscription of the same connector.
    pub fn subscribe(
        &self,
        connector: &str,
        topics: &[String],
        tasks: usize,
    ) -> Vec<mpsc::Receiver<Delivery>> {
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..tasks.max(1))
            .map(|_| mpsc::channel(SINK_QUEUE_BATCHES))
            .unzip();
        if let Ok(mut table) = self.table.write() {
            table.claimed.extend(topics.iter().cloned());
            table.sinks.insert(
                connector.to_string(),
                Subscriber {
                    topics: topics.to_vec(),
                    tasks: txs,
                },
            );
        }
        self.subscribed.notify_waiters();
        rxs
    }

    /// Stops routing to a sink connector (stopped or deleted). Its topics
    /// stay claimed: their batches wait for the next reader.
    pub fn unsubscribe(&self, connector: &str) {
        if let Ok(mut table) = self.table.write() {
            table.sinks.remove(connector);
        }
    }

    /// Whether a batch for `topic` goes anywhere: a reader now, or one to
    /// wait for. False only for topics no sink ever read.
    pub fn has_subscribers(&self, topic: &str) -> bool {
        self.table.read().is_ok_and(|t| t.claimed.contains(topic))
    }

    /// Sends a batch to every subscribed sink task, waiting while queues are
    /// full (backpressure) and while a claimed topic of the batch has no
    /// reader. Records of topics nobody ever read are dropped. Each task's
    /// share is copied out of the batch as encoded bytes.
    pub async fn publish(&self, records: &RecordBatch) -> Arc<BatchAck> {
        let mut warned = false;
        let parts = loop {
            // Armed before the table is read, so a subscription between the
            // read and the wait is not missed.
            let subscribed = self.subscribed.notified();
            tokio::pin!(subscribed);
            subscribed.as_mut().enable();
            match self.route(records) {
                Ok(parts) => break parts,
                Err(topic) => {
                    if !warned {
                        warned = true;
                        tracing::warn!(%topic, "no sink reads this topic right now (stopped or restarting): holding the source until one does");
                    }
                    subscribed.await;
                }
            }
        };
        let ack = Arc::new(BatchAck::new(parts.len()));
        for (_, tx, records) in parts {
            let d = Delivery {
                records: RecordBatch::from_writer(records),
                ack: Some(ack.clone()),
            };
            // A closed queue means that sink task ended: the dropped delivery
            // marks the batch lost.
            let _ = tx.send(d).await;
        }
        ack
    }

    /// Sorts a batch into each reader's share, or names a claimed topic of
    /// the batch that has no reader now.
    fn route(&self, records: &RecordBatch) -> Result<Parts, String> {
        let mut parts = Parts::new();
        let Ok(table) = self.table.read() else {
            return Ok(parts);
        };
        let mut last_checked: Option<&str> = None;
        for r in records.views() {
            let mut read = false;
            for (i, sub) in table.sinks.values().enumerate() {
                if !sub.topics.iter().any(|t| t == r.topic) {
                    continue;
                }
                read = true;
                let n = sub.tasks.len();
                let slot = match r.partition {
                    Some(p) => p.unsigned_abs() as usize % n,
                    None => r.key.map_or(0, |k| fnv(k) as usize % n),
                };
                let at = match parts.iter().rposition(|(k, ..)| *k == (i, slot)) {
                    Some(at) => at,
                    None => {
                        let tx = sub.tasks[slot].clone();
                        parts.push(((i, slot), tx, BatchWriter::default()));
                        parts.len() - 1
                    }
                };
                parts[at].2.push_view(&r);
            }
            // Asked once per run of one topic, not once per record.
            if !read && last_checked != Some(r.topic) {
                last_checked = Some(r.topic);
                if table.claimed.contains(r.topic) {
                    return Err(r.topic.to_string());
                }
            }
        }
        Ok(parts)
    }

    /// (topic, sink connectors reading it).
    pub fn subscribers(&self) -> Vec<(String, Vec<String>)> {
        let mut by_topic: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        if let Ok(table) = self.table.read() {
            for (name, sub) in table.sinks.iter() {
                for t in &sub.topics {
                    by_topic.entry(t.clone()).or_default().push(name.clone());
                }
            }
        }
        by_topic.into_iter().collect()
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wharf_records::Record;

    fn rec(topic: &str, p: i32) -> Record {
        Record {
            topic: topic.into(),
            partition: Some(p),
            ..Record::default()
        }
    }

    #[tokio::test]
    async fn routes_by_partition_and_acks_after_all_sinks() {
        let bus = Bus::default();
        let mut a = bus.subscribe("a", &["t".into()], 2);
        let mut b = bus.subscribe("b", &["t".into()], 1);
        let ack = bus
            .publish(&RecordBatch::encode(&[
                rec("t", 0),
                rec("t", 1),
                rec("t", 2),
                rec("other", 0),
            ]))
            .await;
        let a0 = a[0].recv().await.unwrap();
        let a1 = a[1].recv().await.unwrap();
        let b0 = b[0].recv().await.unwrap();
        assert_eq!(a0.records.len(), 2);
        let partitions: Vec<_> = a0.records.views().map(|r| r.partition).collect();
        assert_eq!(partitions, [Some(0), Some(2)]);
        assert_eq!(a1.records.len(), 1);
        assert_eq!(b0.records.len(), 3);
        a0.ack();
        a1.ack();
        assert!(!ack.is_done());
        b0.ack();
        assert!(ack.is_done());
    }

    #[tokio::test]
    async fn dropped_delivery_marks_batch_lost() {
        let bus = Bus::default();
        let mut a = bus.subscribe("a", &["t".into()], 1);
        let ack = bus.publish(&RecordBatch::encode(&[rec("t", 0)])).await;
        drop(a[0].recv().await.unwrap());
        assert!(ack.is_lost() && !ack.is_done());
    }

    #[tokio::test]
    async fn a_topic_that_had_a_reader_holds_its_batches_until_one_returns() {
        let bus = Arc::new(Bus::default());
        drop(bus.subscribe("a", &["t".into()], 1));
        bus.unsubscribe("a");
        assert!(bus.has_subscribers("t"), "a topic once read stays claimed");
        let publishing = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.publish(&RecordBatch::encode(&[rec("t", 0)])).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!publishing.is_finished(), "acknowledged with no reader");
        let mut again = bus.subscribe("a", &["t".into()], 1);
        let d = again[0].recv().await.expect("the held batch arrives");
        assert_eq!(d.records.len(), 1);
        let ack = publishing.await.expect("publish");
        assert!(!ack.is_done());
        d.ack();
        assert!(ack.is_done());
    }

    #[tokio::test]
    async fn a_topic_never_read_is_dropped_at_once() {
        let bus = Bus::default();
        let _a = bus.subscribe("a", &["t".into()], 1);
        assert!(!bus.has_subscribers("never"));
        let ack = bus.publish(&RecordBatch::encode(&[rec("never", 0)])).await;
        assert!(ack.is_done());
    }
}

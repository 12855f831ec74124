//! Task assignment through Kafka's group coordinator: every worker joins
//! the group `group.id` on a topic whose partitions stand for task slots,
//! with cooperative-sticky assignment. A worker runs the tasks whose slot
//! partitions it owns; when one dies its slots move to the others after its
//! session (10 s), and a joining worker takes a share while the other slots
//! stay where they are. No records ever flow on the topic.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::ClientContext;
use tokio::sync::watch;

use crate::kafka::{client_config, ensure_topic, KafkaHub, TopicCreation};

use super::ClusterError;

struct MemberContext {
    owned: Arc<Mutex<BTreeSet<i32>>>,
    tx: watch::Sender<u64>,
    rebalances: Arc<AtomicU64>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        match rebalance {
            // Cooperative: both lists are increments.
            Rebalance::Assign(tpl) => owned.extend(tpl.elements().iter().map(|e| e.partition())),
            Rebalance::Revoke(tpl) => {
                for e in tpl.elements() {
                    owned.remove(&e.partition());
                }
            }
            Rebalance::Error(e) => tracing::warn!("task assignment: {e}"),
        }
        tracing::info!(
            slots = owned.len(),
            "task slots assigned to this worker changed"
        );
        drop(owned);
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        self.tx.send_modify(|v| *v += 1);
    }
}

pub struct Membership {
    owned: Arc<Mutex<BTreeSet<i32>>>,
    changed: watch::Receiver<u64>,
    pub rebalances: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Membership {
    pub async fn join(
        hub: &KafkaHub,
        group: &str,
        topic: &str,
        slots: i32,
    ) -> Result<Self, ClusterError> {
        let creation = TopicCreation {
            partitions: slots,
            replication_factor: -1,
            configs: vec![],
        };
        ensure_topic(hub.admin(), topic, &creation)
            .await
            .map_err(|e| ClusterError::Kafka(format!("topic {topic}: {e}")))?;
        let owned = Arc::new(Mutex::new(BTreeSet::new()));
        let (tx, changed) = watch::channel(0u64);
        let rebalances = Arc::new(AtomicU64::new(0));
        let context = MemberContext {
            owned: owned.clone(),
            tx,
            rebalances: rebalances.clone(),
        };
        let consumer: BaseConsumer<MemberContext> = client_config(
            hub.bootstrap(),
            &[
                ("group.id", group),
                ("partition.assignment.strategy", "cooperative-sticky"),
                // A dead worker's tasks move after this long.
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "2000"),
                ("enable.auto.commit", "false"),
            ],
            &[],
        )
        .create_with_context(context)
        .map_err(|e| ClusterError::Kafka(format!("joining group {group}: {e}")))?;
        consumer
            .subscribe(&[topic])
            .map_err(|e| ClusterError::Kafka(format!("joining group {group}: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("membership".into())
                .spawn(move || {
                    // Polling runs the rebalance callbacks; nothing is produced here.
                    while !stop.load(Ordering::Acquire) {
                        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
                            tracing::debug!("membership poll: {e}");
                        }
                    }
                    consumer.unsubscribe();
                    drop(consumer);
                })
                .map_err(|e| ClusterError::Kafka(format!("membership thread: {e}")))?
        };
        tracing::info!(group, topic, slots, "joined the worker group");
        Ok(Membership {
            owned,
            changed,
            rebalances,
            stop,
            thread: Some(thread),
        })
    }

    pub fn owned_set(&self) -> Arc<Mutex<BTreeSet<i32>>> {
        self.owned.clone()
    }

    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.clone()
    }

    /// Leaves the group so the others take the slots at once.
    pub async fn leave(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

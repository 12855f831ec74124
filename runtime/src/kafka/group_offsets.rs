//! A sink connector's committed positions in its consumer group
//! (`connect-<name>`), read and changed while the connector is stopped
//! (KIP-875). The calls block, so they run off the async threads.

use std::time::Duration;

use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{client_config, client_err, KafkaError, KafkaHub};

const TIMEOUT: Duration = Duration::from_secs(15);

/// How long a change waits for the group to empty: a stopped task's static
/// membership (see consumer.rs) lasts until its session times out (10 s).
const SETTLE: Duration = Duration::from_secs(25);

/// The broker refuses because members remain in the group.
fn group_busy(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::NonEmptyGroup
    )
}

/// Retries `op` while the group still has members, up to `SETTLE`.
async fn when_settled<T, F, Fut>(group: &str, mut op: F) -> Result<T, KafkaError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (KafkaError, Option<RDKafkaErrorCode>)>>,
{
    let start = std::time::Instant::now();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err((_, Some(code))) if group_busy(code) && start.elapsed() < SETTLE => {
                tracing::debug!(group, "group still has members ({code}); waiting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err((_, Some(code))) if group_busy(code) => {
                return Err(KafkaError::GroupBusy(format!(
                    "consumer group {group} still has members after {}s ({code}); is a task of this connector running on another worker?",
                    SETTLE.as_secs()
                )))
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn code_of(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    match e {
        KafkaError::Client { source, .. } => source.rdkafka_error_code(),
        _ => None,
    }
}

/// (topic, partition, committed offset).
pub type Position = (String, i32, i64);

fn group_consumer(hub: &KafkaHub, group: &str) -> Result<BaseConsumer, KafkaError> {
    client_config(
        hub.bootstrap(),
        &[("group.id", group), ("enable.auto.commit", "false")],
        &[hub.worker.prefixed("consumer")],
    )
    .create()
    .map_err(client_err(format!("consumer for group {group}")))
}

fn committed(
    c: &BaseConsumer,
    group: &str,
    topics: &[String],
) -> Result<Vec<Position>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let md = c
            .fetch_metadata(Some(topic), TIMEOUT)
            .map_err(client_err(format!("metadata of {topic}")))?;
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
            }
        }
    }
    let got = c
        .committed_offsets(tpl, TIMEOUT)
        .map_err(client_err(format!("committed offsets of group {group}")))?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.topic().to_string(), e.partition(), o)),
            _ => None,
        })
        .collect())
}

fn commit(c: &BaseConsumer, group: &str, positions: &[Position]) -> Result<(), KafkaError> {
    if positions.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in positions {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))
            .map_err(client_err(format!("offset {o} of {t}-{p}")))?;
    }
    c.commit(&tpl, CommitMode::Sync)
        .map_err(client_err(format!("committing offsets of group {group}")))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| KafkaError::Timeout(format!("consumer group task: {e}")))?
}

impl KafkaHub {
    /// The group's committed positions on these topics.
    pub async fn group_offsets(
        self: &std::sync::Arc<Self>,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<Position>, KafkaError> {
        let (hub, group, topics) = (self.clone(), group.to_string(), topics.to_vec());
        blocking(move || committed(&group_consumer(&hub, &group)?, &group, &topics)).await
    }

    /// Sets positions (`Some`) and removes them (`None`). Kafka cannot drop
    /// one partition's commit, so removing any means deleting the group and
    /// committing back the positions that stay.
    pub async fn alter_group_offsets(
        self: &std::sync::Arc<Self>,
        group: &str,
        topics: &[String],
        changes: Vec<(String, i32, Option<i64>)>,
    ) -> Result<(), KafkaError> {
        let removes = changes.iter().any(|c| c.2.is_none());
        let mut keep = Vec::new();
        if removes {
            keep = self.group_offsets(group, topics).await?;
            keep.retain(|(t, p, _)| !changes.iter().any(|(ct, cp, _)| ct == t && cp == p));
            self.delete_group(group).await?;
        }
        keep.extend(
            changes
                .into_iter()
                .filter_map(|(t, p, o)| o.map(|o| (t, p, o))),
        );
        when_settled(group, || {
            let (hub, group, keep) = (self.clone(), group.to_string(), keep.clone());
            async move {
                blocking(move || commit(&group_consumer(&hub, &group)?, &group, &keep))
                    .await
                    .map_err(|e| {
                        let code = code_of(&e);
                        (e, code)
                    })
            }
        })
        .await
    }

    /// Deletes the group and so every committed position (a reset).
    pub async fn delete_group(&self, group: &str) -> Result<(), KafkaError> {
        when_settled(group, || async {
            let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
            let results = self
                .admin()
                .delete_groups(&[group], &opts)
                .await
                .map_err(|e| {
                    let code = e.rdkafka_error_code();
                    (client_err(format!("deleting group {group}"))(e), code)
                })?;
            for r in results {
                match r {
                    Ok(_) => {}
                    // Never committed anything: nothing to reset.
                    Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                    Err((g, code)) => {
                        return Err((
                            KafkaError::Timeout(format!("deleting group {g}: {code}")),
                            Some(code),
                        ))
                    }
                }
            }
            Ok(())
        })
        .await
    }
}

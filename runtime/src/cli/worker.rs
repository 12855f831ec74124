//! `wharf worker`: a member of a group of workers (distributed mode).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use wharf::cluster::{Cluster, ClusterConfig};
use wharf::config::{load_worker, OffsetStorage};
use wharf::herder::Herder;
use wharf::kafka::KafkaHub;
use wharf::offsets::OffsetStore;
use wharf::plugin::PluginHost;
use wharf::rest::RestOptions;

pub struct WorkerOptions {
    pub config: PathBuf,
    pub cache: Option<PathBuf>,
    pub listen: Option<String>,
}

pub async fn run(opts: WorkerOptions) -> anyhow::Result<()> {
    let mut stop = super::signals::StopSignals::install()?;
    let worker = load_worker(&opts.config)?;
    let cluster_config = ClusterConfig::from_worker(&worker)?;
    if !matches!(worker.offset_storage, OffsetStorage::Kafka { .. })
        && worker.map.contains_key("offset.storage")
    {
        anyhow::bail!(
            "{}: a distributed worker keeps offsets in Kafka (offset.storage: kafka, or leave it out)",
            opts.config.display()
        );
    }
    let mut worker = worker;
    if let OffsetStorage::File(_) = worker.offset_storage {
        worker.offset_storage = OffsetStorage::Kafka {
            topic: worker
                .map
                .get("offset.storage.topic")
                .cloned()
                .unwrap_or_else(|| wharf::config::worker::DEFAULT_OFFSETS_TOPIC.into()),
            partitions: 25,
        };
    }
    let hub = KafkaHub::connect(&worker)?;
    let offsets = super::run::open_offsets(&worker, None, Some(&hub)).await?;
    if let OffsetStore::Kafka(k) = &offsets {
        k.set_shared();
    }
    let cluster = Cluster::start(&hub, cluster_config.clone())
        .await
        .context("joining the worker group")?;
    let host = Arc::new(PluginHost::new(opts.cache)?);
    let herder = Herder::distributed(host, offsets, hub, cluster);
    herder.set_provider_policy(worker.providers.clone());
    herder.set_override_policy(worker.client_overrides);
    let listen = opts
        .listen
        .or_else(|| worker.listen.clone())
        .unwrap_or_else(|| super::run::DEFAULT_LISTEN.to_string());
    let rest = RestOptions::from_worker(&worker);
    wharf::rest::serve(herder.clone(), &listen, rest).await?;
    tracing::info!(group = %cluster_config.group, configs = %cluster_config.config_topic, status = %cluster_config.status_topic, "distributed worker running");
    let reconciler = tokio::spawn(herder.clone().run_cluster());
    stop.recv().await;
    tracing::info!("leaving the group: stopping this worker's tasks");
    herder.shutdown().await;
    reconciler.abort();
    Ok(())
}

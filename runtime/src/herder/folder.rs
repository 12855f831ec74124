//! Applies connector YAML files from a watched folder: a new or changed
//! file creates or reconfigures its connectors, a removed file deletes them.
//! A file with any problem is reported (file, key, reason) and changes
//! nothing. Polls, so it works on every filesystem and needs no watcher.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::load_file;

use super::Herder;

/// What was applied from one file: its modification time and, per
/// connector, the config map.
struct Applied {
    modified: Option<SystemTime>,
    connectors: BTreeMap<String, BTreeMap<String, String>>,
}

fn yaml_files(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs until the process stops.
pub async fn watch_dir(herder: Arc<Herder>, dir: PathBuf, every: Duration) {
    tracing::info!(dir = %dir.display(), "applying connector configs from this folder");
    let mut applied: BTreeMap<PathBuf, Applied> = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let files = yaml_files(&dir);
        for gone in applied
            .keys()
            .filter(|p| !files.contains(*p))
            .cloned()
            .collect::<Vec<_>>()
        {
            if let Some(a) = applied.remove(&gone) {
                for name in a.connectors.keys() {
                    match herder.delete(name).await {
                        Ok(()) => {
                            tracing::info!(file = %gone.display(), connector = %name, "file removed: connector deleted")
                        }
                        Err(e) => {
                            tracing::warn!(file = %gone.display(), connector = %name, "file removed: {e}")
                        }
                    }
                }
            }
        }
        let mut changed = Vec::new();
        for file in files {
            let modified = std::fs::metadata(&file).and_then(|m| m.modified()).ok();
            if applied.get(&file).is_some_and(|a| a.modified == modified) {
                continue;
            }
            let sinks_first = !declares_a_sink(&herder, &file).await;
            changed.push((sinks_first, file, modified));
        }
        // Sinks before sources: on the in-process bus a topic with no reader
        // yet is dropped, so a source and its sink arriving together must
        // find the sink subscribed.
        changed.sort_by_key(|(source_only, ..)| *source_only);
        for (_, file, modified) in changed {
            apply_file(&herder, &file, modified, &mut applied).await;
        }
    }
}

/// Whether a file defines a sink connector (a broken file: no, and it is
/// reported when applied).
async fn declares_a_sink(herder: &Herder, file: &Path) -> bool {
    let Ok(configs) = load_file(file) else {
        return false;
    };
    for c in &configs {
        if let Some(class) = c.class() {
            if let Ok(p) = herder.plugin_host().load(class).await {
                if p.kind() == crate::plugin::PluginKind::Sink {
                    return true;
                }
            }
        }
    }
    false
}

async fn apply_file(
    herder: &Herder,
    file: &Path,
    modified: Option<SystemTime>,
    applied: &mut BTreeMap<PathBuf, Applied>,
) {
    let configs = match load_file(file) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("watched config not applied: {e}");
            // Remember the time so the same broken file is reported once.
            if let Some(a) = applied.get_mut(file) {
                a.modified = modified;
            } else {
                applied.insert(
                    file.to_path_buf(),
                    Applied {
                        modified,
                        connectors: BTreeMap::new(),
                    },
                );
            }
            return;
        }
    };
    let before = applied
        .remove(file)
        .map(|a| a.connectors)
        .unwrap_or_default();
    let mut now = BTreeMap::new();
    for c in configs {
        let unchanged = before.get(&c.name) == Some(&c.config);
        let map = c.config.clone();
        let name = c.name.clone();
        if unchanged {
            now.insert(name, map);
            continue;
        }
        let raw = c.config.clone();
        match herder.put_config(c, raw).await {
            Ok((created, _)) => {
                tracing::info!(file = %file.display(), connector = %name, "{}", if created { "connector created" } else { "connector reconfigured" });
                now.insert(name, map);
            }
            Err(e) => {
                tracing::error!(file = %file.display(), connector = %name, "watched config not applied: {e}");
                // Keep what ran before, so a later fix is seen as a change.
                if let Some(old) = before.get(&name) {
                    now.insert(name, old.clone());
                }
            }
        }
    }
    for name in before.keys().filter(|n| !now.contains_key(*n)) {
        if let Err(e) = herder.delete(name).await {
            tracing::warn!(file = %file.display(), connector = %name, "no longer in its file: {e}");
        }
    }
    applied.insert(
        file.to_path_buf(),
        Applied {
            modified,
            connectors: now,
        },
    );
}

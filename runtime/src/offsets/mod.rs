//! Source offsets, keyed as Kafka Connect keys them: `["<connector>",
//! {partition}]` → `{offset}` (JSON). The standalone default is a local file,
//! replaced atomically and fsynced on every commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Mutex;

use serde_json::Value;

mod kafka;
pub use kafka::KafkaOffsetStore;

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error("offsets file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("offsets file {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("source offset or partition is not a JSON object: {0}")]
    NotJson(String),
    #[error("offsets in Kafka: {0}")]
    Kafka(String),
}

/// Canonical JSON text of a partition or offset object, so the same partition
/// always maps to the same key whatever spacing or key order a plugin used.
pub fn canonical(json: &str) -> Result<Value, OffsetError> {
    match serde_json::from_str::<Value>(json) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(OffsetError::NotJson(json.chars().take(200).collect())),
    }
}

/// Connect's key layout for one source partition of one connector.
pub fn offset_key(connector: &str, partition: &Value) -> String {
    Value::Array(vec![
        Value::String(connector.to_string()),
        partition.clone(),
    ])
    .to_string()
}

/// The (partition JSON, offset JSON) pairs of one connector in a key map.
fn entries_of(entries: &BTreeMap<String, Value>, connector: &str) -> Vec<(String, String)> {
    entries
        .iter()
        .filter_map(|(k, v)| {
            let key: Value = serde_json::from_str(k).ok()?;
            let arr = key.as_array()?;
            if arr.first()?.as_str()? != connector {
                return None;
            }
            Some((arr.get(1)?.to_string(), v.to_string()))
        })
        .collect()
}

/// The connector named by a stored key.
fn key_connector(key: &str) -> Option<String> {
    let key: Value = serde_json::from_str(key).ok()?;
    Some(key.as_array()?.first()?.as_str()?.to_string())
}

/// Where a worker keeps source offsets.
#[derive(Clone)]
pub enum OffsetStore {
    File(FileOffsetStore),
    Kafka(Arc<KafkaOffsetStore>),
}

impl From<FileOffsetStore> for OffsetStore {
    fn from(f: FileOffsetStore) -> Self {
        OffsetStore::File(f)
    }
}

impl OffsetStore {
    pub fn describe(&self) -> String {
        match self {
            OffsetStore::File(f) => format!("file {}", f.path().display()),
            OffsetStore::Kafka(k) => format!("Kafka topic {}", k.topic()),
        }
    }

    pub async fn load(&self, connector: &str) -> Vec<(String, String)> {
        match self {
            OffsetStore::File(f) => f.load(connector).await,
            OffsetStore::Kafka(k) => k.load(connector).await,
        }
    }

    pub async fn commit(
        &self,
        connector: &str,
        offsets: &[(Value, Value)],
    ) -> Result<(), OffsetError> {
        match self {
            OffsetStore::File(f) => f.commit(connector, offsets).await,
            OffsetStore::Kafka(k) => k.commit(connector, offsets).await,
        }
    }

    /// Offsets already written elsewhere (inside a Kafka transaction).
    pub async fn remember(&self, connector: &str, offsets: &[(Value, Value)]) {
        if let OffsetStore::Kafka(k) = self {
            k.remember(connector, offsets).await;
        }
    }

    /// The Kafka topic holding offsets, when they live in Kafka.
    pub fn kafka_topic(&self) -> Option<&str> {
        match self {
            OffsetStore::Kafka(k) => Some(k.topic()),
            OffsetStore::File(_) => None,
        }
    }

    pub async fn reset(&self, connector: &str) -> Result<(), OffsetError> {
        match self {
            OffsetStore::File(f) => f.reset(connector).await,
            OffsetStore::Kafka(k) => k.reset(connector).await,
        }
    }

    /// Sets (`Some`) or removes (`None`) single partitions' offsets
    /// (KIP-875's PATCH).
    pub async fn alter(
        &self,
        connector: &str,
        changes: &[(Value, Option<Value>)],
    ) -> Result<(), OffsetError> {
        match self {
            OffsetStore::File(f) => {
                f.update_and_persist(|entries| {
                    for (p, o) in changes {
                        let key = offset_key(connector, p);
                        match o {
                            Some(o) => entries.insert(key, o.clone()),
                            None => entries.remove(&key),
                        };
                    }
                })
                .await
            }
            OffsetStore::Kafka(k) => k.alter(connector, changes).await,
        }
    }
}

#[derive(Clone)]
pub struct FileOffsetStore {
    path: PathBuf,
    entries: Arc<Mutex<BTreeMap<String, Value>>>,
}

impl FileOffsetStore {
    pub fn open(path: &Path) -> Result<Self, OffsetError> {
        let entries = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| OffsetError::Corrupt {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => {
                return Err(OffsetError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Ok(FileOffsetStore {
            path: path.to_path_buf(),
            entries: Arc::new(Mutex::new(entries)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored (partition JSON, offset JSON) pairs of one connector.
    pub async fn load(&self, connector: &str) -> Vec<(String, String)> {
        entries_of(&*self.entries.lock().await, connector)
    }

    /// Records offsets and makes them durable before returning.
    pub async fn commit(
        &self,
        connector: &str,
        offsets: &[(Value, Value)],
    ) -> Result<(), OffsetError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.update_and_persist(|entries| {
            for (p, o) in offsets {
                entries.insert(offset_key(connector, p), o.clone());
            }
        })
        .await
    }

    /// Removes every offset of a connector (a reset).
    pub async fn reset(&self, connector: &str) -> Result<(), OffsetError> {
        self.update_and_persist(|entries| {
            entries.retain(|k, _| key_connector(k).as_deref() != Some(connector))
        })
        .await
    }

    async fn update_and_persist(
        &self,
        update: impl FnOnce(&mut BTreeMap<String, Value>),
    ) -> Result<(), OffsetError> {
        // The lock is held across the write so concurrent commits land in
        // order. The change is made on a copy and kept only once it is on
        // disk: a failed write leaves what a reader sees as it was.
        let mut entries = self.entries.lock().await;
        let mut next = entries.clone();
        update(&mut next);
        let snapshot = serde_json::to_vec_pretty(&next).map_err(|e| OffsetError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &snapshot))
            .await
            .map_err(|e| OffsetError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })??;
        *entries = next;
        Ok(())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OffsetError> {
    use std::io::Write;
    let io = |source| OffsetError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_survive_reopen_and_use_connect_keys() {
        let dir = std::env::temp_dir().join(format!("wharf-offsets-{}", std::process::id()));
        let path = dir.join("offsets.json");
        let _ = std::fs::remove_file(&path);
        let store = FileOffsetStore::open(&path).unwrap();
        let p = canonical("{ \"partition\": 0 }").unwrap();
        store
            .commit("gen", &[(p.clone(), canonical("{\"seq\":5}").unwrap())])
            .await
            .unwrap();
        store
            .commit("other", &[(p.clone(), canonical("{\"seq\":9}").unwrap())])
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let stored: BTreeMap<String, Value> = serde_json::from_str(&text).unwrap();
        assert!(stored.contains_key(r#"["gen",{"partition":0}]"#), "{text}");
        let reopened = FileOffsetStore::open(&path).unwrap();
        assert_eq!(
            reopened.load("gen").await,
            vec![("{\"partition\":0}".to_string(), "{\"seq\":5}".to_string())]
        );
        reopened.reset("gen").await.unwrap();
        assert!(FileOffsetStore::open(&path)
            .unwrap()
            .load("gen")
            .await
            .is_empty());
        assert_eq!(
            FileOffsetStore::open(&path)
                .unwrap()
                .load("other")
                .await
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_commit_that_cannot_be_written_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("wharf-offsets-ro-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A directory where the file's temporary copy would go: the write fails.
        let path = dir.join("offsets.json");
        std::fs::create_dir_all(path.with_extension("tmp")).unwrap();
        let store = FileOffsetStore::open(&path).unwrap();
        let p = canonical("{\"partition\":0}").unwrap();
        let err = store
            .commit("gen", &[(p, canonical("{\"seq\":5}").unwrap())])
            .await;
        assert!(err.is_err(), "the write was expected to fail");
        assert!(
            store.load("gen").await.is_empty(),
            "memory moved past the disk"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rejects_non_object_offsets() {
        assert!(canonical("[1]").is_err());
        assert!(canonical("nope").is_err());
    }
}

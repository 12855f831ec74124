//! A connector's transform chain, configured as in Kafka Connect:
//! `transforms: a,b` with `transforms.a.type` naming the plugin (a built-in
//! name, a Connect / Debezium class name, or a `.wasm` path) and the other
//! `transforms.a.*` keys forming its config. A `$Key` / `$Value` class puts
//! its side in the plugin's config as `wharf.transform.side`.
//!
//! Connect's predicates live here, in the host, as in Connect's
//! `TransformationStage`: `predicates: p` with `predicates.p.type`
//! (`TopicNameMatches` + `pattern`, `HasHeaderKey` + `name`,
//! `RecordIsTombstone`), and `transforms.a.predicate: p` /
//! `transforms.a.negate: true` on a stage. A record the predicate does not
//! select skips that stage and keeps its place in the batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex_lite::Regex;
use wharf_records::{BatchWriter, RecordView};

use crate::config::{ConfigError, ConnectorConfig};
use crate::plugin::aliases::SIDE_KEY;
use crate::plugin::{
    CallError, Limits, Plugin, PluginHost, PluginKind, RecordBatch, TaskId, TransformInstance,
};

use super::WorkerError;

/// One configured transform: its alias, plugin, own config and predicate.
pub struct TransformSpec {
    pub alias: String,
    pub plugin: Arc<Plugin>,
    pub config: Vec<(String, String)>,
    /// The records the stage applies to; every record when `None`.
    pub condition: Option<Condition>,
}

/// Connect's three predicates.
#[derive(Debug)]
pub enum Predicate {
    /// The whole topic name matches the regex.
    TopicNameMatches(Regex),
    /// At least one header has this name.
    HasHeaderKey(String),
    /// The value is null (or a JsonConverter envelope of a null payload).
    RecordIsTombstone,
}

impl Predicate {
    pub fn test(&self, r: &RecordView<'_>) -> bool {
        match self {
            Predicate::TopicNameMatches(re) => re.is_match(r.topic),
            Predicate::HasHeaderKey(name) => r.headers().any(|(k, _)| k == name),
            Predicate::RecordIsTombstone => is_tombstone(r.value),
        }
    }
}

/// A stage's predicate, maybe negated.
#[derive(Clone, Debug)]
pub struct Condition {
    pub predicate: Arc<Predicate>,
    pub negate: bool,
}

impl Condition {
    pub fn selects(&self, r: &RecordView<'_>) -> bool {
        self.predicate.test(r) != self.negate
    }
}

fn is_tombstone(value: Option<&[u8]>) -> bool {
    let Some(v) = value else {
        return true;
    };
    // Only an envelope whose payload is null can be one: `{..."payload":null}`.
    let trimmed = v.trim_ascii();
    if !(trimmed.starts_with(b"{") && trimmed.ends_with(b"null}")) {
        return false;
    }
    matches!(
        serde_json::from_slice::<serde_json::Value>(trimmed),
        Ok(serde_json::Value::Object(m))
            if m.len() == 2 && m.contains_key("schema") && m.get("payload") == Some(&serde_json::Value::Null)
    )
}

fn list(c: &ConnectorConfig, key: &str) -> Vec<String> {
    c.get(key)
        .map(|s| {
            s.split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

pub fn aliases(c: &ConnectorConfig) -> Vec<String> {
    list(c, "transforms")
}

const PREDICATES: &str = "org.apache.kafka.connect.transforms.predicates.";

/// The predicates a connector defines, by alias; an error names its key.
pub fn predicates(c: &ConnectorConfig) -> Result<BTreeMap<String, Arc<Predicate>>, ConfigError> {
    let mut out = BTreeMap::new();
    for alias in list(c, "predicates") {
        let key = |k: &str| format!("predicates.{alias}.{k}");
        let required = |k: &str, what: &str| match c.get(&key(k)).map(str::trim) {
            Some(v) if !v.is_empty() => Ok(v.to_string()),
            _ => Err(c.key_error(&key(k), format!("required: {what}"))),
        };
        let class = required(
            "type",
            "the predicate (TopicNameMatches, HasHeaderKey or RecordIsTombstone)",
        )?;
        let simple = class.strip_prefix(PREDICATES).unwrap_or(class.as_str());
        let predicate = match simple {
            "TopicNameMatches" | "topic-name-matches" => {
                let pattern = required("pattern", "the regex a topic name must match")?;
                let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    c.key_error(
                        &key("pattern"),
                        format!("not a valid regular expression: {e}"),
                    )
                })?;
                Predicate::TopicNameMatches(re)
            }
            "HasHeaderKey" | "has-header-key" => {
                Predicate::HasHeaderKey(required("name", "the header name")?)
            }
            "RecordIsTombstone" | "record-is-tombstone" => Predicate::RecordIsTombstone,
            other => {
                return Err(c.key_error(
                    &key("type"),
                    format!(
                        "'{other}' is not a predicate; use {PREDICATES}TopicNameMatches, \
                         HasHeaderKey or RecordIsTombstone"
                    ),
                ))
            }
        };
        out.insert(alias, Arc::new(predicate));
    }
    Ok(out)
}

/// A stage's `predicate` and `negate`, as Connect reads them.
fn condition(
    c: &ConnectorConfig,
    alias: &str,
    predicates: &BTreeMap<String, Arc<Predicate>>,
) -> Result<Option<Condition>, ConfigError> {
    let predicate_key = format!("transforms.{alias}.predicate");
    let negate_key = format!("transforms.{alias}.negate");
    let negate = match c.get(&negate_key).map(|v| v.trim().to_ascii_lowercase()) {
        None => None,
        Some(v) if v == "true" => Some(true),
        Some(v) if v == "false" => Some(false),
        Some(v) => return Err(c.key_error(&negate_key, format!("'{v}' is not a boolean"))),
    };
    let Some(name) = c
        .get(&predicate_key)
        .map(str::trim)
        .filter(|p| !p.is_empty())
    else {
        return match negate {
            Some(_) => Err(c.key_error(
                &negate_key,
                format!("there is no '{predicate_key}' defining a predicate to be negated"),
            )),
            None => Ok(None),
        };
    };
    let predicate = predicates.get(name).cloned().ok_or_else(|| {
        c.key_error(
            &predicate_key,
            format!("predicate '{name}' is not one of the aliases in 'predicates'"),
        )
    })?;
    Ok(Some(Condition {
        predicate,
        negate: negate.unwrap_or(false),
    }))
}

/// Loads each transform's plugin, splits out its config and resolves its
/// predicate.
pub async fn specs(
    host: &PluginHost,
    c: &ConnectorConfig,
) -> Result<Vec<TransformSpec>, WorkerError> {
    let predicates = predicates(c)?;
    let mut out = Vec::new();
    for alias in aliases(c) {
        let prefix = format!("transforms.{alias}.");
        let type_key = format!("{prefix}type");
        let Some(class) = c.get(&type_key) else {
            return Err(WorkerError::Config(
                c.key_error(&type_key, "required: the transform plugin to use"),
            ));
        };
        let plugin = host
            .load(class)
            .await
            .map_err(|e| WorkerError::Config(c.key_error(&type_key, e.to_string())))?;
        if plugin.kind() != PluginKind::Transform {
            return Err(WorkerError::Config(c.key_error(
                &type_key,
                format!(
                    "'{class}' is a {} plugin, not a transform",
                    crate::plugin::world_name(plugin.kind())
                ),
            )));
        }
        let mut config: Vec<(String, String)> = c
            .config
            .iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|k| (k.to_string(), v.clone())))
            .filter(|(k, _)| !matches!(k.as_str(), "type" | "predicate" | "negate"))
            .collect();
        if let Some(side) = PluginHost::alias(class).and_then(|a| a.side) {
            match config.iter().find(|(k, _)| k == SIDE_KEY) {
                Some((_, v)) if !v.trim().eq_ignore_ascii_case(side.name()) => {
                    return Err(WorkerError::Config(c.key_error(
                        &format!("{prefix}{SIDE_KEY}"),
                        format!(
                            "'{v}' contradicts the class '{class}', which works on the {}",
                            side.name()
                        ),
                    )))
                }
                Some(_) => {}
                None => config.push((SIDE_KEY.to_string(), side.name().to_string())),
            }
        }
        out.push(TransformSpec {
            condition: condition(c, &alias, &predicates)?,
            alias,
            plugin,
            config,
        });
    }
    Ok(out)
}

struct Stage {
    alias: String,
    instance: TransformInstance,
    condition: Option<Condition>,
}

/// The instantiated chain for one task.
pub struct Chain {
    stages: Vec<Stage>,
}

impl Chain {
    pub async fn open(
        specs: &[TransformSpec],
        id: &TaskId,
        limits: &Limits,
    ) -> Result<Self, (String, CallError)> {
        let mut stages = Vec::with_capacity(specs.len());
        for s in specs {
            let tid = TaskId {
                connector: format!("{}/{}", id.connector, s.alias),
                task: id.task,
            };
            // Transforms are pure: they get the task's limits but no directories.
            let pure = Limits {
                fs_dirs: Default::default(),
                elasticsearch: None,
                s3: None,
                postgres: None,
                ..limits.clone()
            };
            let mut inst = s
                .plugin
                .transform(tid, pure)
                .await
                .map_err(|e| (s.alias.clone(), CallError::Fatal(e.to_string())))?;
            inst.open(&s.config)
                .await
                .map_err(|e| (s.alias.clone(), e))?;
            stages.push(Stage {
                alias: s.alias.clone(),
                instance: inst,
                condition: s.condition.clone(),
            });
        }
        Ok(Chain { stages })
    }

    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs a batch through every stage, encoded from one to the next; an
    /// error names the stage.
    pub async fn apply(&mut self, batch: &RecordBatch) -> Result<RecordBatch, (String, CallError)> {
        let mut out: Option<RecordBatch> = None;
        for stage in &mut self.stages {
            let input = out.as_ref().unwrap_or(batch);
            if input.is_empty() {
                break;
            }
            let next = match &stage.condition {
                None => stage.instance.apply_batch(input).await,
                Some(cond) => apply_where(&mut stage.instance, cond, input).await,
            };
            out = Some(next.map_err(|e| (stage.alias.clone(), e))?);
        }
        Ok(out.unwrap_or_else(|| batch.clone()))
    }
}

/// Applies a stage to the records its condition selects. Each run of
/// selected records goes through the plugin as one batch, so what the
/// plugin drops or adds stays between the records around it.
async fn apply_where(
    stage: &mut TransformInstance,
    cond: &Condition,
    input: &RecordBatch,
) -> Result<RecordBatch, CallError> {
    let views: Vec<RecordView<'_>> = input.views().collect();
    let selected: Vec<bool> = views.iter().map(|v| cond.selects(v)).collect();
    if selected.iter().all(|s| *s) {
        return stage.apply_batch(input).await;
    }
    if !selected.iter().any(|s| *s) {
        return Ok(input.clone());
    }
    let mut out = BatchWriter::default();
    let mut i = 0;
    while i < views.len() {
        let chosen = selected[i];
        let mut run = BatchWriter::default();
        while i < views.len() && selected[i] == chosen {
            run.push_view(&views[i]);
            i += 1;
        }
        if chosen {
            let done = stage.apply_batch(&RecordBatch::from_writer(run)).await?;
            done.views().for_each(|v| out.push_view(&v));
        } else {
            out.append(&run);
        }
    }
    Ok(RecordBatch::from_writer(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ConnectorConfig {
        ConnectorConfig {
            name: "c".into(),
            config: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            origin: "test".into(),
            secret_keys: Default::default(),
        }
    }

    fn key_of(e: ConfigError) -> String {
        match e {
            ConfigError::Key { key, .. } => key,
            other => panic!("not a key error: {other}"),
        }
    }

    #[test]
    fn predicates_are_read_as_connect_reads_them() {
        let c = config(&[
            ("predicates", "orders, pii,tomb"),
            (
                "predicates.orders.type",
                "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
            ),
            ("predicates.orders.pattern", "shop\\..*orders"),
            (
                "predicates.pii.type",
                "org.apache.kafka.connect.transforms.predicates.HasHeaderKey",
            ),
            ("predicates.pii.name", "pii"),
            ("predicates.tomb.type", "record-is-tombstone"),
        ]);
        let p = predicates(&c).expect("valid");
        let view = |topic: &'static str, value: Option<&'static [u8]>| RecordView {
            value,
            ..RecordView::new(topic)
        };
        assert!(p["orders"].test(&view("shop.public.orders", Some(b"{}"))));
        assert!(!p["orders"].test(&view("shop.public.orders_archive", Some(b"{}"))));
        assert!(!p["pii"].test(&view("t", Some(b"{}"))));
        assert!(p["tomb"].test(&view("t", None)));
        assert!(p["tomb"].test(&view(
            "t",
            Some(br#"{"schema":{"type":"struct"},"payload":null}"#)
        )));
        assert!(!p["tomb"].test(&view("t", Some(br#"{"a":null}"#))));
        let negated = Condition {
            predicate: p["tomb"].clone(),
            negate: true,
        };
        assert!(negated.selects(&view("t", Some(b"1"))));
    }

    #[test]
    fn predicate_errors_name_the_key() {
        let bad = |pairs: &[(&str, &str)]| key_of(predicates(&config(pairs)).unwrap_err());
        assert_eq!(bad(&[("predicates", "p")]), "predicates.p.type");
        assert_eq!(
            bad(&[
                ("predicates", "p"),
                ("predicates.p.type", "com.example.Nope")
            ]),
            "predicates.p.type"
        );
        assert_eq!(
            bad(&[
                ("predicates", "p"),
                ("predicates.p.type", "TopicNameMatches"),
                ("predicates.p.pattern", "(")
            ]),
            "predicates.p.pattern"
        );
        assert_eq!(
            bad(&[("predicates", "p"), ("predicates.p.type", "HasHeaderKey")]),
            "predicates.p.name"
        );
        let defined = predicates(&config(&[
            ("predicates", "p"),
            ("predicates.p.type", "RecordIsTombstone"),
        ]))
        .unwrap();
        let stage = |pairs: &[(&str, &str)]| condition(&config(pairs), "t", &defined);
        assert!(stage(&[]).unwrap().is_none());
        assert!(stage(&[
            ("transforms.t.predicate", "p"),
            ("transforms.t.negate", "TRUE")
        ])
        .unwrap()
        .is_some_and(|c| c.negate));
        assert_eq!(
            key_of(stage(&[("transforms.t.predicate", "q")]).unwrap_err()),
            "transforms.t.predicate"
        );
        assert_eq!(
            key_of(stage(&[("transforms.t.negate", "true")]).unwrap_err()),
            "transforms.t.negate"
        );
        assert_eq!(
            key_of(
                stage(&[
                    ("transforms.t.predicate", "p"),
                    ("transforms.t.negate", "yes")
                ])
                .unwrap_err()
            ),
            "transforms.t.negate"
        );
    }
}

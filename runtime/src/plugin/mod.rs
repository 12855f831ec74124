//! The wasm plugin host: one wasmtime `Engine` per process, one `Linker`
//! shared by the three worlds, one pre-instantiated component per plugin, and
//! one `Store` per task. Every call into a plugin is bounded in time (epoch
//! interruption) and memory (store limiter); a trap fails that task only.

pub mod aliases;
mod batch;
pub mod bindings;
mod cache;
pub mod elasticsearch;
mod instance;
pub mod postgres;
pub mod s3;
mod state;
mod stdio;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Engine, Store};

pub use batch::RecordBatch;
pub use bindings::types::{ConfigKey, ConfigType, Importance, PluginInfo, PluginKind, Validator};
pub use instance::{
    CallError, Flushed, Rejection, SinkInstance, SourceInstance, TransformInstance,
};
pub use state::{now_millis, HostState, PluginMetrics, TaskId};

/// Where the test-only plugins (misbehave, identity, discard) were built.
pub const TEST_PLUGIN_DIR: &str = env!("WHARF_TEST_PLUGIN_DIR");

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));
}

/// How often the epoch ticks: the granularity of call deadlines.
const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin '{0}' is neither a built-in plugin ({1}) nor a path to a .wasm file")]
    NotFound(String, String),
    #[error("plugin '{0}' is not a built-in class name: {1}")]
    NotAClass(String, String),
    #[error("plugin '{plugin}': cannot read {path}: {source}")]
    Read {
        plugin: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin '{plugin}' is not a valid component: {reason}")]
    Compile { plugin: String, reason: String },
    #[error("plugin '{plugin}' does not implement a Wharf world (source, sink or transform of wharf:connector@0.1.0): {reason}")]
    NotAPlugin { plugin: String, reason: String },
    #[error("plugin '{plugin}' is a {}, but is used here as a {}", world_name(*.actual), world_name(*.wanted))]
    WrongKind {
        plugin: String,
        wanted: PluginKind,
        actual: PluginKind,
    },
    #[error("plugin '{plugin}': cannot grant access: {reason}")]
    Grant { plugin: String, reason: String },
    #[error("plugin '{plugin}': {source}")]
    Call { plugin: String, source: CallError },
}

/// Limits and grants applied to each instance.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Wall-clock budget for one call into the plugin.
    pub call_timeout: Duration,
    /// Cap on the instance's linear memory.
    pub max_memory_bytes: usize,
    /// Host directories the plugin may use, visible at the same paths inside.
    pub fs_dirs: Arc<Vec<PathBuf>>,
    /// The Elasticsearch cluster a sink may index into.
    pub elasticsearch: Option<Arc<elasticsearch::EsGrant>>,
    /// The S3 bucket a source or sink may use.
    pub s3: Option<Arc<s3::S3Grant>>,
    /// The database a source may read and replicate.
    pub postgres: Option<Arc<postgres::PgGrant>>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            call_timeout: Duration::from_secs(30),
            max_memory_bytes: 512 << 20,
            fs_dirs: Arc::new(Vec::new()),
            elasticsearch: None,
            s3: None,
            postgres: None,
        }
    }
}

enum Pre {
    Source(bindings::source::SourcePre<HostState>),
    Sink(bindings::sink::SinkPre<HostState>),
    Transform(bindings::transform::TransformPre<HostState>),
}

/// A compiled, linked plugin, ready to instantiate once per task.
pub struct Plugin {
    pub class: String,
    pub info: PluginInfo,
    pub spec: Vec<ConfigKey>,
    pre: Pre,
    host: Arc<HostInner>,
}

struct HostInner {
    engine: Engine,
    ticks_per_call: fn(Duration) -> u64,
}

pub struct PluginHost {
    inner: Arc<HostInner>,
    linker: Linker<HostState>,
    cache: cache::CompileCache,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
    _ticker: std::thread::JoinHandle<()>,
}

fn ticks(d: Duration) -> u64 {
    (d.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// The one engine configuration: a worker and the child processes that
/// compile for it (`cache::precompile_file`) must agree on it exactly.
fn new_engine() -> Result<Engine, PluginError> {
    let mut config = wasmtime::Config::new();
    config
        .epoch_interruption(true)
        .wasm_component_model(true)
        // The component model's async machinery (on by default) makes
        // every export call dearer; no plugin uses WASIp3 async exports.
        .concurrency_support(false)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Lets `perf` name the functions of compiled plugins (/tmp/perf-PID.map).
    if std::env::var_os("WHARF_PERF_MAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).map_err(|e| PluginError::Compile {
        plugin: "<engine>".into(),
        reason: format!("{e:#}"),
    })
}

pub use cache::precompile_file;

impl PluginHost {
    /// `cache_dir: None` disables the on-disk compile cache.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, PluginError> {
        let engine = new_engine()?;
        let mut linker = Linker::new(&engine);
        let link_err = |e: wasmtime::Error| PluginError::Compile {
            plugin: "<linker>".into(),
            reason: format!("{e:#}"),
        };
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link_err)?;
        bindings::host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(link_err)?;
        bindings::elasticsearch::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(link_err)?;
        bindings::s3::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(link_err)?;
        bindings::postgres::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(link_err)?;
        // The ticker is a plain thread so a busy async runtime cannot delay deadlines.
        let weak = engine.weak();
        let ticker = std::thread::Builder::new()
            .name("wharf-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| PluginError::Compile {
                plugin: "<engine>".into(),
                reason: format!("cannot start epoch thread: {e}"),
            })?;
        Ok(PluginHost {
            cache: cache::CompileCache::new(&engine, cache_dir),
            inner: Arc::new(HostInner {
                engine,
                ticks_per_call: ticks,
            }),
            linker,
            loaded: Mutex::new(HashMap::new()),
            _ticker: ticker,
        })
    }

    pub fn builtin_names() -> Vec<&'static str> {
        builtin::BUILTIN_PLUGINS.iter().map(|(n, _)| *n).collect()
    }

    pub fn cache_hits(&self) -> (u64, u64) {
        (
            self.cache.hits.load(Ordering::Relaxed),
            self.cache.misses.load(Ordering::Relaxed),
        )
    }

    /// A plugin already loaded under this class, if any.
    pub fn loaded(&self, class: &str) -> Option<Arc<Plugin>> {
        let class = Self::alias(class).map_or(class, |a| a.plugin);
        self.loaded.lock().ok().and_then(|m| m.get(class).cloned())
    }

    /// The built-in plugin a Connect, Debezium or Confluent class name
    /// stands for (with the side of a `$Key` / `$Value` transform).
    pub fn alias(class: &str) -> Option<aliases::Alias> {
        aliases::resolve(class, |name| {
            builtin::BUILTIN_PLUGINS.iter().any(|(n, _)| *n == name)
        })
    }

    /// Loads a plugin by built-in name, class name ([`PluginHost::alias`])
    /// or path to a `.wasm` component; repeated loads of the same plugin
    /// share one compiled plugin.
    pub async fn load(&self, class: &str) -> Result<Arc<Plugin>, PluginError> {
        let class = Self::alias(class).map_or(class, |a| a.plugin);
        if let Some(p) = self.loaded.lock().ok().and_then(|m| m.get(class).cloned()) {
            return Ok(p);
        }
        let bytes: std::borrow::Cow<'static, [u8]> = match builtin::BUILTIN_PLUGINS
            .iter()
            .find(|(n, _)| *n == class)
        {
            Some((_, b)) => std::borrow::Cow::Borrowed(*b),
            None if class.ends_with(".wasm") || Path::new(class).is_file() => std::fs::read(class)
                .map(std::borrow::Cow::Owned)
                .map_err(|source| PluginError::Read {
                    plugin: class.to_string(),
                    path: PathBuf::from(class),
                    source,
                })?,
            None => {
                return Err(match aliases::hint(class) {
                    Some(hint) => PluginError::NotAClass(class.to_string(), hint),
                    None => {
                        PluginError::NotFound(class.to_string(), Self::builtin_names().join(", "))
                    }
                })
            }
        };
        let component = self.cache.load(&self.inner.engine, class, &bytes)?;
        let plugin = Arc::new(self.link(class, &component).await?);
        if let Ok(mut m) = self.loaded.lock() {
            m.insert(class.to_string(), plugin.clone());
        }
        Ok(plugin)
    }

    async fn link(&self, class: &str, component: &Component) -> Result<Plugin, PluginError> {
        let not_a_plugin = |e: wasmtime::Error| PluginError::NotAPlugin {
            plugin: class.to_string(),
            reason: format!("{e:#}"),
        };
        let ipre = self
            .linker
            .instantiate_pre(component)
            .map_err(not_a_plugin)?;
        let pre = if let Ok(p) = bindings::source::SourcePre::new(ipre.clone()) {
            Pre::Source(p)
        } else if let Ok(p) = bindings::sink::SinkPre::new(ipre.clone()) {
            Pre::Sink(p)
        } else {
            Pre::Transform(bindings::transform::TransformPre::new(ipre).map_err(not_a_plugin)?)
        };
        let mut plugin = Plugin {
            class: class.to_string(),
            info: PluginInfo {
                name: class.to_string(),
                version: String::new(),
                kind: PluginKind::Source,
                description: String::new(),
            },
            spec: Vec::new(),
            pre,
            host: self.inner.clone(),
        };
        let id = TaskId {
            connector: format!("<inspect {class}>"),
            task: -1,
        };
        let (info, spec) = plugin
            .describe(id)
            .await
            .map_err(|source| PluginError::Call {
                plugin: class.to_string(),
                source,
            })?;
        plugin.info = info;
        plugin.spec = spec;
        Ok(plugin)
    }
}

/// The WIT world name of a plugin kind.
pub fn world_name(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Source => "source",
        PluginKind::Sink => "sink",
        PluginKind::Transform => "transform",
    }
}

impl Plugin {
    pub fn kind(&self) -> PluginKind {
        match self.pre {
            Pre::Source(_) => PluginKind::Source,
            Pre::Sink(_) => PluginKind::Sink,
            Pre::Transform(_) => PluginKind::Transform,
        }
    }

    fn store(&self, id: TaskId, limits: &Limits) -> Result<Store<HostState>, PluginError> {
        let state =
            HostState::new(id, limits, Arc::new(PluginMetrics::default())).map_err(|reason| {
                PluginError::Grant {
                    plugin: self.class.clone(),
                    reason,
                }
            })?;
        let mut store = Store::new(&self.host.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Time spent waiting in host imports (bulk requests, backoff sleeps)
        // does not count: when the deadline comes, extend it by the budget the
        // plugin has left, or interrupt it when it has none.
        store.epoch_deadline_callback(|ctx| {
            let s = ctx.data();
            let busy = s.call_started.elapsed().saturating_sub(s.waited);
            match s.call_budget.checked_sub(busy) {
                Some(left) if !left.is_zero() => {
                    Ok(wasmtime::UpdateDeadline::Continue(ticks(left)))
                }
                _ => Err(wasmtime::Trap::Interrupt.into()),
            }
        });
        Ok(store)
    }

    fn wrong_kind(&self, wanted: PluginKind) -> PluginError {
        PluginError::WrongKind {
            plugin: self.class.clone(),
            wanted,
            actual: self.kind(),
        }
    }

    fn call_err(&self) -> impl Fn(CallError) -> PluginError + '_ {
        |source| PluginError::Call {
            plugin: self.class.clone(),
            source,
        }
    }

    pub async fn source(&self, id: TaskId, limits: Limits) -> Result<SourceInstance, PluginError> {
        let Pre::Source(pre) = &self.pre else {
            return Err(self.wrong_kind(PluginKind::Source));
        };
        let mut store = self.store(id, &limits)?;
        let deadline = (self.host.ticks_per_call)(limits.call_timeout);
        store.set_epoch_deadline(deadline);
        let b = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::from_trap(e, &store))
            .map_err(self.call_err())?;
        Ok(SourceInstance::new(store, b, deadline))
    }

    pub async fn sink(&self, id: TaskId, limits: Limits) -> Result<SinkInstance, PluginError> {
        let Pre::Sink(pre) = &self.pre else {
            return Err(self.wrong_kind(PluginKind::Sink));
        };
        let mut store = self.store(id, &limits)?;
        let deadline = (self.host.ticks_per_call)(limits.call_timeout);
        store.set_epoch_deadline(deadline);
        let b = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::from_trap(e, &store))
            .map_err(self.call_err())?;
        Ok(SinkInstance::new(store, b, deadline))
    }

    pub async fn transform(
        &self,
        id: TaskId,
        limits: Limits,
    ) -> Result<TransformInstance, PluginError> {
        let Pre::Transform(pre) = &self.pre else {
            return Err(self.wrong_kind(PluginKind::Transform));
        };
        let mut store = self.store(id, &limits)?;
        let deadline = (self.host.ticks_per_call)(limits.call_timeout);
        store.set_epoch_deadline(deadline);
        let b = pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| CallError::from_trap(e, &store))
            .map_err(self.call_err())?;
        Ok(TransformInstance::new(store, b, deadline))
    }

    /// Asks a fresh instance for the plugin's identity and config spec.
    async fn describe(&self, id: TaskId) -> Result<(PluginInfo, Vec<ConfigKey>), CallError> {
        let limits = Limits::default();
        let err = |e: PluginError| match e {
            PluginError::Call { source, .. } => source,
            other => CallError::Trap(other.to_string()),
        };
        match self.kind() {
            PluginKind::Source => self.source(id, limits).await.map_err(err)?.describe().await,
            PluginKind::Sink => self.sink(id, limits).await.map_err(err)?.describe().await,
            PluginKind::Transform => {
                self.transform(id, limits)
                    .await
                    .map_err(err)?
                    .describe()
                    .await
            }
        }
    }

    /// Validates a config with the plugin's own `validate`: (key, message) pairs.
    pub async fn validate(
        &self,
        config: &[(String, String)],
    ) -> Result<Vec<(String, String)>, PluginError> {
        let id = TaskId {
            connector: format!("<validate {}>", self.class),
            task: -1,
        };
        let limits = Limits::default();
        let r = match self.kind() {
            PluginKind::Source => self.source(id, limits).await?.validate(config).await,
            PluginKind::Sink => self.sink(id, limits).await?.validate(config).await,
            PluginKind::Transform => self.transform(id, limits).await?.validate(config).await,
        };
        r.map(|errs| errs.into_iter().map(|e| (e.key, e.message)).collect())
            .map_err(self.call_err())
    }
}

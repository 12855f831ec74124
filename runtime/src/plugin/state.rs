//! What each plugin instance's `Store` holds: its WASI context (no files,
//! network or environment), the resource limiter, and the task identity used
//! to tag its logs and metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use super::bindings::host;
use super::elasticsearch::EsClient;
use super::postgres::PgClient;
use super::s3::S3Client;
use super::stdio::{LogStream, RecentLines};
use super::Limits;

/// Which task an instance serves; every log line and metric carries it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaskId {
    pub connector: String,
    pub task: i32,
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.connector, self.task)
    }
}

/// Metrics a plugin reports through the `host` interface, bounded in number
/// so a plugin cannot grow the host's memory through metric names.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    values: Mutex<BTreeMap<String, f64>>,
}

const MAX_PLUGIN_METRICS: usize = 256;
const MAX_LOG_MESSAGE: usize = 16 * 1024;

impl PluginMetrics {
    fn update(&self, name: &str, f: impl FnOnce(&mut f64)) {
        let Ok(mut values) = self.values.lock() else {
            return;
        };
        if let Some(v) = values.get_mut(name) {
            f(v);
        } else if values.len() < MAX_PLUGIN_METRICS {
            let mut v = 0.0;
            f(&mut v);
            values.insert(name.chars().take(128).collect(), v);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, f64> {
        self.values.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// Caps linear memory and tables, and remembers whether the cap was hit so a
/// resulting trap can be reported as out-of-memory rather than a bare abort.
#[derive(Debug)]
pub struct Limiter {
    pub max_memory: usize,
    pub hit_memory_limit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit_memory_limit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

pub struct HostState {
    pub id: TaskId,
    /// The granted Elasticsearch cluster, if the config names one.
    pub elasticsearch: Option<EsClient>,
    /// The granted S3 bucket, if the config names one.
    pub s3: Option<S3Client>,
    /// The granted database, if the config names one.
    pub postgres: Option<PgClient>,
    /// When the current export call started, and how long of it was spent
    /// waiting in host imports: the deadline counts only the plugin's own time.
    pub call_started: Instant,
    pub waited: Duration,
    pub call_budget: Duration,
    /// The plugin's last stderr lines, quoted when it traps.
    pub recent_stderr: RecentLines,
    pub metrics: Arc<PluginMetrics>,
    pub limiter: Limiter,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl HostState {
    /// `dirs` are the only host directories the plugin can see (at the same
    /// paths); an error names a directory that cannot be granted.
    pub fn new(id: TaskId, limits: &Limits, metrics: Arc<PluginMetrics>) -> Result<Self, String> {
        let (max_memory, call_budget) = (limits.max_memory_bytes, limits.call_timeout);
        let application = format!("wharf-{id}");
        let mut b = WasiCtx::builder();
        for dir in limits.fs_dirs.iter() {
            let guest = dir.to_string_lossy().to_string();
            b.preopened_dir(dir, &guest, FsPerms::ReadWrite)
                .map_err(|e| format!("directory {}: {e}", dir.display()))?;
        }
        // Nothing ambient: no preopened dirs, env, args or sockets. Output
        // streams go to tracing, tagged with the task.
        let recent_stderr = RecentLines::default();
        b.stdout(LogStream::new(id.clone(), "stdout", None))
            .stderr(LogStream::new(
                id.clone(),
                "stderr",
                Some(recent_stderr.clone()),
            ))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        Ok(HostState {
            recent_stderr,
            id,
            elasticsearch: limits.elasticsearch.as_deref().cloned().map(EsClient::new),
            s3: limits.s3.as_deref().cloned().map(S3Client::new),
            postgres: limits
                .postgres
                .as_deref()
                .cloned()
                .map(|g| PgClient::new(g, application)),
            call_started: Instant::now(),
            waited: Duration::ZERO,
            call_budget,
            metrics,
            limiter: Limiter {
                max_memory,
                hit_memory_limit: false,
            },
            wasi: b.build(),
            table: ResourceTable::new(),
        })
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let message = truncate(&message, MAX_LOG_MESSAGE);
        let (connector, task) = (&self.id.connector, self.id.task);
        match level {
            host::Level::Trace => tracing::trace!(connector, task, "{message}"),
            host::Level::Debug => tracing::debug!(connector, task, "{message}"),
            host::Level::Info => tracing::info!(connector, task, "{message}"),
            host::Level::Warn => tracing::warn!(connector, task, "{message}"),
            host::Level::Error => tracing::error!(connector, task, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        self.metrics.update(&name, |v| *v += delta as f64);
    }

    fn gauge_set(&mut self, name: String, value: f64) {
        self.metrics.update(&name, |v| *v = value);
    }

    fn now_millis(&mut self) -> i64 {
        now_millis()
    }

    async fn sleep_millis(&mut self, millis: u32) {
        // Capped so a plugin cannot park its task for weeks.
        let d = Duration::from_millis(u64::from(millis).min(600_000));
        tokio::time::sleep(d).await;
        self.waited += d;
    }
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

//! The Wharf guest SDK. A connector is a plain Rust type implementing
//! [`Source`], [`Sink`] or [`Transform`]; one macro ([`export_source!`],
//! [`export_sink!`], [`export_transform!`]) turns the crate into a wasm
//! component for the matching world of `wit/wharf.wit`.
//!
//! ```ignore
//! struct Upper;
//! impl wharf_sdk::Plugin for Upper {
//!     const NAME: &'static str = "upper";
//!     const DESCRIPTION: &'static str = "upper-cases record values";
//!     fn config_spec() -> Vec<wharf_sdk::ConfigKey> { vec![] }
//! }
//! impl wharf_sdk::Transform for Upper {
//!     fn open(_: &wharf_sdk::Config) -> wharf_sdk::Result<Self> { Ok(Upper) }
//!     fn apply(&mut self, mut records: Vec<wharf_sdk::Record>) -> wharf_sdk::Result<Vec<wharf_sdk::Record>> {
//!         for r in &mut records { if let Some(v) = &mut r.value { v.make_ascii_uppercase() } }
//!         Ok(records)
//!     }
//! }
//! wharf_sdk::export_transform!(Upper);
//! ```

mod config;
pub mod connect;
pub mod datetime;
pub mod elasticsearch;
#[doc(hidden)]
pub mod glue;
pub mod json;
pub mod postgres;
pub mod s3;

pub use config::{
    validate_against, Config, ConfigError, ConfigKey, ConfigType, Importance, Validator,
};
pub use wharf_records::{BatchWriter, Record, RecordView};

/// A batch of records as it crosses the boundary: one buffer in the frame
/// encoding of `wit/wharf.wit`. A plugin that reads a field or two of each
/// record, or passes records on as they are, reads it in place with
/// [`Batch::views`] instead of decoding owned [`Record`]s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    count: u32,
    data: Vec<u8>,
}

impl Batch {
    /// A batch as the host sent it; checked as it is read.
    pub fn from_parts(count: u32, data: Vec<u8>) -> Self {
        Batch { count, data }
    }

    pub fn from_records(records: &[Record]) -> Self {
        let (count, data) = wharf_records::encode(records);
        Batch { count, data }
    }

    pub fn from_writer(writer: BatchWriter) -> Self {
        let (count, data) = writer.finish();
        Batch { count, data }
    }

    pub fn into_parts(self) -> (u32, Vec<u8>) {
        (self.count, self.data)
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records, read in place; a malformed batch is a fatal error.
    pub fn views(&self) -> impl Iterator<Item = Result<RecordView<'_>>> {
        wharf_records::views(self.count, &self.data).map(|v| v.map_err(malformed))
    }

    /// The records, decoded into owned values.
    pub fn records(&self) -> Result<Vec<Record>> {
        wharf_records::decode(self.count, &self.data).map_err(malformed)
    }
}

fn malformed(e: wharf_records::DecodeError) -> Error {
    Error::Fatal(e.to_string())
}

/// Generated bindings, one module per world. The `types` and `host`
/// interfaces are generated once and shared, so all worlds use one set of types.
#[doc(hidden)]
pub mod bindings {
    pub mod source {
        wit_bindgen::generate!({
            world: "source",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export_source_world",
            default_bindings_module: "wharf_sdk::bindings::source",
        });
    }
    pub mod sink {
        wit_bindgen::generate!({
            world: "sink",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export_sink_world",
            default_bindings_module: "wharf_sdk::bindings::sink",
            with: {
                "wharf:connector/types@0.1.0": crate::bindings::source::wharf::connector::types,
                "wharf:connector/host@0.1.0": crate::bindings::source::wharf::connector::host,
                "wharf:connector/s3@0.1.0": crate::bindings::source::wharf::connector::s3,
            },
        });
    }
    pub mod transform {
        wit_bindgen::generate!({
            world: "transform",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export_transform_world",
            default_bindings_module: "wharf_sdk::bindings::transform",
            with: {
                "wharf:connector/types@0.1.0": crate::bindings::source::wharf::connector::types,
                "wharf:connector/host@0.1.0": crate::bindings::source::wharf::connector::host,
            },
        });
    }
}

#[cfg(target_arch = "wasm32")]
use bindings::source::wharf::connector::host;

/// A plugin error: retriable ones are retried by the host with backoff,
/// fatal ones fail the task with the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Retriable(String),
    Fatal(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Retriable(m) => write!(f, "retriable: {m}"),
            Error::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(target_arch = "wasm32")]
pub(crate) fn from_wit(e: bindings::source::wharf::connector::types::PluginError) -> Error {
    use bindings::source::wharf::connector::types::PluginError as P;
    match e {
        P::Retriable(m) => Error::Retriable(m),
        P::Fatal(m) => Error::Fatal(m),
    }
}

/// What a capability call does when compiled natively (unit tests): there
/// is no host to talk to.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn host_only<T>(capability: &str) -> Result<T> {
    Err(Error::Fatal(format!(
        "the {capability} capability exists only inside the Wharf host"
    )))
}

/// Identity and config schema, common to every kind of plugin.
pub trait Plugin {
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    const VERSION: &'static str = "0.1.0";

    fn config_spec() -> Vec<ConfigKey>;

    /// Validates a whole config; the default checks it against the spec.
    /// Override to add cross-key rules (and call [`validate_against`]).
    fn validate(config: &Config) -> Vec<ConfigError> {
        validate_against(&Self::config_spec(), config)
    }
}

/// A source task: polled by the host, which writes what it returns to Kafka.
pub trait Source: Plugin + Sized + 'static {
    /// Splits the connector config into at most `max_tasks` task configs.
    fn task_configs(config: &Config, max_tasks: u32) -> Result<Vec<Config>> {
        let _ = max_tasks;
        Ok(vec![config.clone()])
    }
    /// `offsets` holds the stored (source partition, source offset) JSON pairs.
    fn open(config: &Config, offsets: Vec<(String, String)>) -> Result<Self>;
    /// Appends up to `max` records to `out`; none means nothing is ready.
    fn poll(&mut self, max: u32, out: &mut Vec<Record>) -> Result<()>;
    /// What the host calls: `poll`, with the records encoded straight into
    /// the batch that crosses the boundary. Override it to write records
    /// from borrowed fields ([`BatchWriter::push_view`]) with no owned
    /// [`Record`] in between.
    fn poll_batch(&mut self, max: u32, out: &mut BatchWriter) -> Result<()> {
        let mut records = Vec::with_capacity(max.min(4096) as usize);
        self.poll(max, &mut records)?;
        records.iter().for_each(|r| out.push(r));
        Ok(())
    }
    /// Everything up to these offsets is durable downstream.
    fn commit(&mut self, offsets: Vec<(String, String)>) -> Result<()> {
        let _ = offsets;
        Ok(())
    }
    fn close(&mut self) {}
}

/// A sink task: the host feeds it batches read from Kafka and commits the
/// consumer offsets after `flush` succeeds.
pub trait Sink: Plugin + Sized + 'static {
    fn task_configs(config: &Config, max_tasks: u32) -> Result<Vec<Config>> {
        Ok((0..max_tasks.max(1)).map(|_| config.clone()).collect())
    }
    fn open(config: &Config) -> Result<Self>;
    fn put(&mut self, records: Vec<Record>) -> Result<()>;
    /// What the host calls: `put` on the decoded batch. Override it to read
    /// the records in place ([`Batch::views`]).
    fn put_batch(&mut self, batch: Batch) -> Result<()> {
        self.put(batch.records()?)
    }
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// Records given up on since the last flush, handed to the host's error
    /// handling (dead letter queue, skip or fail) right after `flush`.
    fn take_rejected(&mut self) -> Vec<Rejected> {
        Vec::new()
    }
    /// Asked right after `flush`: per topic partition, the first offset the
    /// sink still holds unwritten (a file not yet rotated). The host commits
    /// no further there; partitions not named commit everything put.
    fn holding(&self) -> Vec<Position> {
        Vec::new()
    }
    /// These (topic, partition)s left the task, right after a flush: drop
    /// what is held for them; the group re-reads it from the committed offset.
    fn revoked(&mut self, partitions: Vec<(String, i32)>) {
        let _ = partitions;
    }
    fn close(&mut self) {}
}

/// A Kafka position: the next offset of a topic partition.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A record a sink could not write, and why.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub record: Record,
    pub reason: String,
    /// Dropped on purpose under the plugin's own policy: dead-lettered when a
    /// dead letter topic is set, never a reason to fail the task.
    pub deliberate: bool,
}

/// A transform: maps a batch to a batch (records may be changed, dropped or added).
pub trait Transform: Plugin + Sized + 'static {
    fn open(config: &Config) -> Result<Self>;
    fn apply(&mut self, records: Vec<Record>) -> Result<Vec<Record>>;
    /// What the host calls: `apply` on the decoded batch, encoded again.
    /// Override it to read records in place and write the ones passed on
    /// with [`BatchWriter::push_view`].
    fn apply_batch(&mut self, batch: Batch) -> Result<Batch> {
        Ok(Batch::from_records(&self.apply(batch.records()?)?))
    }
}

/// Logs through the worker, tagged with the connector and task. Compiled
/// natively (plugin unit tests, benchmarks) it writes to stderr.
pub fn log(level: Level, message: &str) {
    #[cfg(target_arch = "wasm32")]
    host::log(level.into(), message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

#[derive(Clone, Copy, Debug)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

#[cfg(target_arch = "wasm32")]
impl From<Level> for host::Level {
    fn from(l: Level) -> Self {
        match l {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        }
    }
}

/// Adds to a per-task counter metric (a no-op when compiled natively).
pub fn counter_add(name: &str, delta: u64) {
    #[cfg(target_arch = "wasm32")]
    host::counter_add(name, delta);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (name, delta);
}

/// Sets a per-task gauge metric (a no-op when compiled natively).
pub fn gauge_set(name: &str, value: f64) {
    #[cfg(target_arch = "wasm32")]
    host::gauge_set(name, value);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (name, value);
}

/// Wall-clock milliseconds since the Unix epoch, from the host (the system
/// clock when compiled natively).
pub fn now_millis() -> i64 {
    #[cfg(target_arch = "wasm32")]
    return host::now_millis();
    #[cfg(not(target_arch = "wasm32"))]
    return std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
}

/// Waits `millis` (a retry backoff); the time does not count against the
/// call's deadline.
pub fn sleep_millis(millis: u32) {
    #[cfg(target_arch = "wasm32")]
    host::sleep_millis(millis);
    #[cfg(not(target_arch = "wasm32"))]
    std::thread::sleep(std::time::Duration::from_millis(millis.into()));
}

/// Exports a [`Source`] implementation as the component's `source` world.
#[macro_export]
macro_rules! export_source {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::source::exports::wharf::connector as __w;
            use $crate::bindings::source::wharf::connector::types as __t;
            struct __WharfExport;
            impl __w::source_connector::Guest for __WharfExport {
                fn info() -> __t::PluginInfo {
                    $crate::glue::info::<$t>(__t::PluginKind::Source)
                }
                fn config_spec() -> Vec<__t::ConfigKey> {
                    $crate::glue::config_spec::<$t>()
                }
                fn validate(config: __t::Config) -> Vec<__t::ConfigError> {
                    $crate::glue::validate::<$t>(config)
                }
                fn task_configs(config: __t::Config, max: u32) -> ::core::result::Result<Vec<__t::Config>, __t::PluginError> {
                    $crate::glue::source_task_configs::<$t>(config, max)
                }
                fn open(config: __t::Config, offsets: Vec<(String, String)>) -> ::core::result::Result<(), __t::PluginError> {
                    $crate::glue::source_open::<$t>(config, offsets)
                }
                fn poll(max: u32) -> ::core::result::Result<__t::Batch, __t::PluginError> {
                    $crate::glue::source_poll::<$t>(max)
                }
                fn commit(offsets: Vec<(String, String)>) -> ::core::result::Result<(), __t::PluginError> {
                    $crate::glue::source_commit::<$t>(offsets)
                }
                fn close() {
                    $crate::glue::close::<$t>(|t: &mut $t| <$t as $crate::Source>::close(t))
                }
            }
            $crate::bindings::source::export_source_world!(__WharfExport with_types_in $crate::bindings::source);
        };
    };
}

/// Exports a [`Sink`] implementation as the component's `sink` world.
#[macro_export]
macro_rules! export_sink {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::sink::exports::wharf::connector as __w;
            use $crate::bindings::source::wharf::connector::types as __t;
            struct __WharfExport;
            impl __w::sink_connector::Guest for __WharfExport {
                fn info() -> __t::PluginInfo {
                    $crate::glue::info::<$t>(__t::PluginKind::Sink)
                }
                fn config_spec() -> Vec<__t::ConfigKey> {
                    $crate::glue::config_spec::<$t>()
                }
                fn validate(config: __t::Config) -> Vec<__t::ConfigError> {
                    $crate::glue::validate::<$t>(config)
                }
                fn task_configs(config: __t::Config, max: u32) -> ::core::result::Result<Vec<__t::Config>, __t::PluginError> {
                    $crate::glue::sink_task_configs::<$t>(config, max)
                }
                fn open(config: __t::Config) -> ::core::result::Result<(), __t::PluginError> {
                    $crate::glue::sink_open::<$t>(config)
                }
                fn put(records: __t::Batch) -> ::core::result::Result<(), __t::PluginError> {
                    $crate::glue::sink_put::<$t>(records)
                }
                fn flush() -> ::core::result::Result<__w::sink_connector::Flushed, __t::PluginError> {
                    $crate::glue::sink_flush::<$t>()
                }
                fn revoked(partitions: Vec<(String, i32)>) {
                    $crate::glue::sink_revoked::<$t>(partitions)
                }
                fn close() {
                    $crate::glue::close::<$t>(|t: &mut $t| <$t as $crate::Sink>::close(t))
                }
            }
            $crate::bindings::sink::export_sink_world!(__WharfExport with_types_in $crate::bindings::sink);
        };
    };
}

/// Exports a [`Transform`] implementation as the component's `transform` world.
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::transform::exports::wharf::connector as __w;
            use $crate::bindings::source::wharf::connector::types as __t;
            struct __WharfExport;
            impl __w::record_transform::Guest for __WharfExport {
                fn info() -> __t::PluginInfo {
                    $crate::glue::info::<$t>(__t::PluginKind::Transform)
                }
                fn config_spec() -> Vec<__t::ConfigKey> {
                    $crate::glue::config_spec::<$t>()
                }
                fn validate(config: __t::Config) -> Vec<__t::ConfigError> {
                    $crate::glue::validate::<$t>(config)
                }
                fn open(config: __t::Config) -> ::core::result::Result<(), __t::PluginError> {
                    $crate::glue::transform_open::<$t>(config)
                }
                fn apply(records: __t::Batch) -> ::core::result::Result<__t::Batch, __t::PluginError> {
                    $crate::glue::transform_apply::<$t>(records)
                }
            }
            $crate::bindings::transform::export_transform_world!(__WharfExport with_types_in $crate::bindings::transform);
        };
    };
}

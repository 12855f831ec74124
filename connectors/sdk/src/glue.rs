//! What the export macros call: converts between the generated WIT types and
//! the SDK's plain Rust types, and keeps the task instance. One component
//! instance runs one task, so a single slot holds it.

use std::any::Any;
use std::cell::{Cell, RefCell};

use crate::bindings::sink::exports::wharf::connector::sink_connector as sc;
use crate::bindings::source::wharf::connector::types as t;
use crate::{Config, ConfigType, Error, Importance, Plugin, Sink, Source, Transform, Validator};

thread_local! {
    static TASK: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
    /// The size of the last poll's batch: the next one starts that big
    /// instead of regrowing (its buffer leaves with the call).
    static LAST_POLL_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn with_task<T: 'static, R>(
    f: impl FnOnce(&mut T) -> Result<R, Error>,
) -> Result<R, t::PluginError> {
    TASK.with(|slot| {
        let mut slot = slot.borrow_mut();
        let task = slot
            .as_mut()
            .and_then(|b| b.downcast_mut::<T>())
            .ok_or_else(|| t::PluginError::Fatal("task used before open".to_string()))?;
        f(task).map_err(to_wit_error)
    })
}

fn set_task<T: 'static>(task: T) {
    TASK.with(|slot| *slot.borrow_mut() = Some(Box::new(task)));
}

pub fn to_wit_error(e: Error) -> t::PluginError {
    match e {
        Error::Retriable(m) => t::PluginError::Retriable(m),
        Error::Fatal(m) => t::PluginError::Fatal(m),
    }
}

fn config_of<P: Plugin>(pairs: t::Config) -> Config {
    Config::from_pairs(pairs).with_defaults(&P::config_spec())
}

pub fn info<P: Plugin>(kind: t::PluginKind) -> t::PluginInfo {
    t::PluginInfo {
        name: P::NAME.to_string(),
        version: P::VERSION.to_string(),
        kind,
        description: P::DESCRIPTION.to_string(),
    }
}

pub fn config_spec<P: Plugin>() -> Vec<t::ConfigKey> {
    P::config_spec()
        .into_iter()
        .map(|k| t::ConfigKey {
            name: k.name,
            type_: match k.ty {
                ConfigType::Boolean => t::ConfigType::Boolean,
                ConfigType::Int => t::ConfigType::Int,
                ConfigType::Long => t::ConfigType::Long,
                ConfigType::Double => t::ConfigType::Double,
                ConfigType::String => t::ConfigType::String,
                ConfigType::Password => t::ConfigType::Password,
                ConfigType::List => t::ConfigType::List,
            },
            default_value: k.default,
            importance: match k.importance {
                Importance::High => t::Importance::High,
                Importance::Medium => t::Importance::Medium,
                Importance::Low => t::Importance::Low,
            },
            documentation: k.doc,
            validators: k
                .validators
                .into_iter()
                .map(|v| match v {
                    Validator::Range(a, b) => t::Validator::Range((a, b)),
                    Validator::OneOf(xs) => t::Validator::OneOf(xs),
                    Validator::NonEmpty => t::Validator::NonEmpty,
                })
                .collect(),
        })
        .collect()
}

pub fn validate<P: Plugin>(config: t::Config) -> Vec<t::ConfigError> {
    P::validate(&Config::from_pairs(config))
        .into_iter()
        .map(|e| t::ConfigError {
            key: e.key,
            message: e.message,
        })
        .collect()
}

fn split(configs: crate::Result<Vec<Config>>) -> Result<Vec<t::Config>, t::PluginError> {
    configs
        .map(|cs| cs.into_iter().map(Config::into_pairs).collect())
        .map_err(to_wit_error)
}

fn wit_batch(batch: crate::Batch) -> t::Batch {
    let (count, data) = batch.into_parts();
    t::Batch { count, data }
}

pub fn source_task_configs<S: Source>(
    config: t::Config,
    max: u32,
) -> Result<Vec<t::Config>, t::PluginError> {
    split(S::task_configs(&config_of::<S>(config), max))
}

pub fn source_open<S: Source>(
    config: t::Config,
    offsets: Vec<(String, String)>,
) -> Result<(), t::PluginError> {
    let task = S::open(&config_of::<S>(config), offsets).map_err(to_wit_error)?;
    set_task(task);
    Ok(())
}

pub fn source_poll<S: Source>(max: u32) -> Result<t::Batch, t::PluginError> {
    with_task::<S, _>(|s| {
        let mut out = crate::BatchWriter::with_capacity(LAST_POLL_BYTES.get());
        s.poll_batch(max, &mut out)?;
        LAST_POLL_BYTES.set(out.byte_len());
        Ok(wit_batch(crate::Batch::from_writer(out)))
    })
}

pub fn source_commit<S: Source>(offsets: Vec<(String, String)>) -> Result<(), t::PluginError> {
    with_task::<S, _>(|s| s.commit(offsets))
}

pub fn close<T: 'static>(f: impl FnOnce(&mut T)) {
    TASK.with(|slot| {
        if let Some(task) = slot
            .borrow_mut()
            .as_mut()
            .and_then(|b| b.downcast_mut::<T>())
        {
            f(task);
        }
        *slot.borrow_mut() = None;
    });
}

pub fn sink_task_configs<S: Sink>(
    config: t::Config,
    max: u32,
) -> Result<Vec<t::Config>, t::PluginError> {
    split(S::task_configs(&config_of::<S>(config), max))
}

pub fn sink_open<S: Sink>(config: t::Config) -> Result<(), t::PluginError> {
    set_task(S::open(&config_of::<S>(config)).map_err(to_wit_error)?);
    Ok(())
}

pub fn sink_put<S: Sink>(batch: t::Batch) -> Result<(), t::PluginError> {
    with_task::<S, _>(|s| s.put_batch(crate::Batch::from_parts(batch.count, batch.data)))
}

pub fn sink_flush<S: Sink>() -> Result<sc::Flushed, t::PluginError> {
    with_task::<S, _>(|s| {
        s.flush()?;
        let rejected = s.take_rejected();
        let records: Vec<_> = rejected.iter().map(|r| r.record.clone()).collect();
        Ok(sc::Flushed {
            rejected: t::Rejected {
                records: wit_batch(crate::Batch::from_records(&records)),
                reasons: rejected
                    .into_iter()
                    .map(|r| t::Rejection {
                        reason: r.reason,
                        deliberate: r.deliberate,
                    })
                    .collect(),
            },
            holding: s
                .holding()
                .into_iter()
                .map(|p| sc::Position {
                    topic: p.topic,
                    partition: p.partition,
                    offset: p.offset,
                })
                .collect(),
        })
    })
}

pub fn sink_revoked<S: Sink>(partitions: Vec<(String, i32)>) {
    let _ = with_task::<S, _>(|s| {
        s.revoked(partitions);
        Ok(())
    });
}

pub fn transform_open<T: Transform>(config: t::Config) -> Result<(), t::PluginError> {
    set_task(T::open(&config_of::<T>(config)).map_err(to_wit_error)?);
    Ok(())
}

pub fn transform_apply<T: Transform>(batch: t::Batch) -> Result<t::Batch, t::PluginError> {
    with_task::<T, _>(|x| {
        x.apply_batch(crate::Batch::from_parts(batch.count, batch.data))
            .map(wit_batch)
    })
}

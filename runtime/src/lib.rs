//! Wharf: a Kafka Connect-compatible connector runtime whose connectors and
//! transforms are WebAssembly components.

pub mod plugin;

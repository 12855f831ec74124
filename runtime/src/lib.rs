//! Wharf: a Kafka Connect-compatible connector runtime whose connectors and
//! transforms are WebAssembly components.

pub mod cluster;
pub mod config;
pub mod herder;
pub mod kafka;
pub mod offsets;
pub mod plugin;
pub mod rest;
pub mod worker;

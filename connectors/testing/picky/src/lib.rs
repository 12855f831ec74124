//! A JSON-lines file sink that rejects, as a fatal error, any batch holding a
//! record whose value contains `reject.marker`: the dead letter queue tests'
//! sink, standing in for a store that refuses malformed documents. With
//! `failure: retriable` it answers "try later" instead, like a store that is down.

use std::io::Write;

use wharf_sdk::{Config, ConfigKey, Error, Plugin, Record, Result, Sink};

pub struct Picky {
    out: std::fs::File,
    marker: Vec<u8>,
    retriable: bool,
}

impl Plugin for Picky {
    const NAME: &'static str = "picky";
    const DESCRIPTION: &'static str = "File sink that rejects records containing a marker (tests)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("file").non_empty().doc("Output file"),
            ConfigKey::string("reject.marker")
                .default("poison")
                .doc("Records whose value contains this are rejected"),
            ConfigKey::string("failure")
                .default("fatal")
                .one_of(&["fatal", "retriable"])
                .doc("How a rejection is reported"),
        ]
    }
}

impl Sink for Picky {
    fn open(config: &Config) -> Result<Self> {
        let path = config.string("file")?;
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::Fatal(format!("opening {path}: {e}")))?;
        Ok(Picky {
            out,
            marker: config.string("reject.marker")?.into_bytes(),
            retriable: config.string("failure")? == "retriable",
        })
    }

    fn put(&mut self, records: Vec<Record>) -> Result<()> {
        let m = &self.marker;
        if let Some(bad) = records.iter().find(|r| {
            r.value
                .as_deref()
                .is_some_and(|v| v.windows(m.len()).any(|w| w == m.as_slice()))
        }) {
            let offset = bad.offset.unwrap_or(-1);
            return Err(if self.retriable {
                Error::Retriable(format!(
                    "store unavailable for the document at offset {offset}"
                ))
            } else {
                Error::Fatal(format!(
                    "document at offset {offset} is malformed: it contains the reject marker"
                ))
            });
        }
        let mut buf = Vec::new();
        for r in &records {
            buf.extend_from_slice(r.value.as_deref().unwrap_or_default());
            buf.push(b'\n');
        }
        self.out
            .write_all(&buf)
            .map_err(|e| Error::Retriable(format!("write: {e}")))
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .sync_data()
            .map_err(|e| Error::Retriable(format!("fsync: {e}")))
    }
}

wharf_sdk::export_sink!(Picky);

//! `file-sink`: appends each record value as one line to `file`, like Kafka
//! Connect's FileStreamSink; `flush` fsyncs, so acknowledged records are on
//! disk. The host grants the plugin the directory of `file` and nothing else.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};

use wharf_sdk::{Config, ConfigKey, Error, Importance, Plugin, Record, Result, Sink};

pub struct FileSink {
    path: String,
    out: BufWriter<File>,
}

impl Plugin for FileSink {
    const NAME: &'static str = "file-sink";
    const DESCRIPTION: &'static str = "Appends record values to a file, one per line";

    fn config_spec() -> Vec<ConfigKey> {
        vec![ConfigKey::string("file")
            .non_empty()
            .importance(Importance::High)
            .doc("The file to append to")]
    }
}

impl Sink for FileSink {
    fn task_configs(config: &Config, _max_tasks: u32) -> Result<Vec<Config>> {
        // One writer per file keeps lines whole and in order.
        Ok(vec![config.clone()])
    }

    fn open(config: &Config) -> Result<Self> {
        let path = config.string("file")?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::Fatal(format!("open {path}: {e}")))?;
        Ok(FileSink {
            path,
            out: BufWriter::new(file),
        })
    }

    fn put(&mut self, records: Vec<Record>) -> Result<()> {
        for r in records {
            let Some(v) = r.value else { continue };
            self.out
                .write_all(&v)
                .and_then(|_| self.out.write_all(b"\n"))
                .map_err(|e| Error::Retriable(format!("write {}: {e}", self.path)))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .and_then(|_| self.out.get_ref().sync_data())
            .map_err(|e| Error::Retriable(format!("flush {}: {e}", self.path)))
    }

    fn close(&mut self) {
        let _ = self.flush();
    }
}

wharf_sdk::export_sink!(FileSink);

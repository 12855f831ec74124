//! `file-sink`: appends each record value as one line to `file`, like Kafka
//! Connect's FileStreamSink; `flush` fsyncs, so acknowledged records are on
//! disk. The host grants the plugin the directory of `file` and nothing else.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};

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
        drop_torn_line(&path).map_err(|e| Error::Fatal(format!("open {path}: {e}")))?;
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

/// A crash in the middle of a write can leave a last line without its
/// newline. Its record was never committed, so it comes again; the torn
/// bytes are cut so the next line does not run into them.
fn drop_torn_line(path: &str) -> std::io::Result<()> {
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; 64 * 1024];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end != len {
        f.set_len(end)?;
        f.sync_data()?;
    }
    Ok(())
}

wharf_sdk::export_sink!(FileSink);

#[cfg(test)]
mod tests {
    use super::drop_torn_line;

    fn after(content: &[u8]) -> Vec<u8> {
        let path = std::env::temp_dir().join(format!(
            "wharf-file-sink-{}-{}",
            std::process::id(),
            content.len()
        ));
        std::fs::write(&path, content).expect("write");
        drop_torn_line(path.to_str().expect("path")).expect("drop");
        let left = std::fs::read(&path).expect("read");
        let _ = std::fs::remove_file(&path);
        left
    }

    #[test]
    fn a_torn_last_line_is_cut_and_whole_lines_stay() {
        assert_eq!(
            after(b"{\"a\":1}\n{\"a\":2}\n{\"a\""),
            b"{\"a\":1}\n{\"a\":2}\n"
        );
        assert_eq!(after(b"{\"a\":1}\n{\"a\":2}\n"), b"{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(after(b"{\"a\":1"), b"");
        assert_eq!(after(b""), b"");
        // Longer than one backward read.
        let mut long = b"first\n".to_vec();
        long.extend(std::iter::repeat_n(b'x', 200_000));
        assert_eq!(after(&long), b"first\n");
    }

    #[test]
    fn a_missing_file_is_left_to_be_created() {
        let path =
            std::env::temp_dir().join(format!("wharf-file-sink-none-{}", std::process::id()));
        assert!(drop_torn_line(path.to_str().expect("path")).is_ok());
        assert!(!path.exists());
    }
}

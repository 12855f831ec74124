//! `file-source`: reads JSON lines (one record per line) from `file`, like
//! Kafka Connect's FileStreamSource, and keeps following it. The offset is
//! the byte position after the last line read, so a restart resumes there.
//! The host grants the plugin the directory of `file` and nothing else.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};

use wharf_sdk::{Config, ConfigKey, Error, Importance, Plugin, Record, Result, Source};

pub struct FileSource {
    path: String,
    topic: String,
    reader: Option<BufReader<File>>,
    position: u64,
    partition: String,
}

impl Plugin for FileSource {
    const NAME: &'static str = "file-source";
    const DESCRIPTION: &'static str =
        "Reads JSON lines from a file into a topic, resuming by byte position";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("file")
                .non_empty()
                .importance(Importance::High)
                .doc("The file to read"),
            ConfigKey::string("topic")
                .non_empty()
                .importance(Importance::High)
                .doc("Topic to write to"),
        ]
    }
}

fn position_of(offset: &str) -> Option<u64> {
    let rest = offset.split("\"position\"").nth(1)?;
    rest.trim_start_matches([':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .ok()
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Source for FileSource {
    fn open(config: &Config, offsets: Vec<(String, String)>) -> Result<Self> {
        let path = config.string("file")?;
        let partition = format!("{{\"filename\":{}}}", quote(&path));
        let position = offsets
            .iter()
            .filter(|(p, _)| p.contains(&quote(&path)))
            .filter_map(|(_, o)| position_of(o))
            .max()
            .unwrap_or(0);
        Ok(FileSource {
            path,
            topic: config.string("topic")?,
            reader: None,
            position,
            partition,
        })
    }

    fn poll(&mut self, max: u32, out: &mut Vec<Record>) -> Result<()> {
        if self.reader.is_none() {
            match File::open(&self.path) {
                Ok(mut f) => {
                    f.seek(SeekFrom::Start(self.position))
                        .map_err(|e| Error::Fatal(format!("seek {}: {e}", self.path)))?;
                    self.reader = Some(BufReader::new(f));
                }
                // Not there yet: Connect's source waits for the file too.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(Error::Fatal(format!("open {}: {e}", self.path))),
            }
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(());
        };
        let mut line = String::new();
        while (out.len() as u32) < max {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| Error::Retriable(format!("read {}: {e}", self.path)))?;
            if n == 0 || !line.ends_with('\n') {
                // End of file, or a line still being written: re-read it next poll.
                if n > 0 {
                    reader
                        .seek(SeekFrom::Start(self.position))
                        .map_err(|e| Error::Fatal(format!("seek {}: {e}", self.path)))?;
                }
                break;
            }
            self.position += n as u64;
            let text = line.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                continue;
            }
            out.push(Record {
                topic: self.topic.clone(),
                value: Some(text.as_bytes().to_vec()),
                source: Some((
                    self.partition.clone(),
                    format!("{{\"position\":{}}}", self.position),
                )),
                ..Record::default()
            });
        }
        Ok(())
    }
}

wharf_sdk::export_source!(FileSource);

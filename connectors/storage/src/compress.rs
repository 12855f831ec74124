//! Compression of JSON and byte files. Output is produced as it is written so
//! a large file leaves in multipart parts; zstd is written as a run of frames
//! (one per few MiB of input), which every zstd reader reads as one stream.

use std::io::{Read, Write};

use flate2::write::GzEncoder;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Input gathered before a zstd frame is cut.
const ZSTD_FRAME: usize = 4 << 20;

impl Compression {
    pub fn parse(s: &str) -> Result<Compression, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "none" => Ok(Compression::None),
            "gzip" => Ok(Compression::Gzip),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!(
                "s3.compression.type '{other}': use none, gzip or zstd"
            )),
        }
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Zstd => ".zst",
        }
    }

    /// The compression a file's extension says it has.
    pub fn of_extension(ext: &str) -> Compression {
        if ext.ends_with(".gz") {
            Compression::Gzip
        } else if ext.ends_with(".zst") {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    pub fn decompress(self, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(data.len() * 3);
        match self {
            Compression::None => return Ok(data.to_vec()),
            Compression::Gzip => {
                flate2::read::MultiGzDecoder::new(data)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("gzip: {e}"))?;
            }
            Compression::Zstd => {
                let mut rest = data;
                while !rest.is_empty() {
                    let mut frame = ruzstd::decoding::StreamingDecoder::new(&mut rest)
                        .map_err(|e| format!("zstd: {e}"))?;
                    frame
                        .read_to_end(&mut out)
                        .map_err(|e| format!("zstd: {e}"))?;
                }
            }
        }
        Ok(out)
    }
}

/// Compresses a file as it is written; [`Compressor::take_ready`] hands out
/// what is ready, [`Compressor::finish`] the rest.
pub struct Compressor {
    kind: Compression,
    gzip: Option<GzEncoder<Vec<u8>>>,
    raw: Vec<u8>,
    out: Vec<u8>,
    scratch: Vec<u8>,
    written: u64,
}

impl Compressor {
    pub fn new(kind: Compression) -> Self {
        Compressor {
            kind,
            gzip: (kind == Compression::Gzip)
                .then(|| GzEncoder::new(Vec::new(), flate2::Compression::fast())),
            raw: Vec::new(),
            out: Vec::new(),
            scratch: Vec::new(),
            written: 0,
        }
    }

    pub fn write(&mut self, data: &[u8]) {
        self.written += data.len() as u64;
        match self.kind {
            Compression::None => self.out.extend_from_slice(data),
            Compression::Gzip => {
                if let Some(g) = &mut self.gzip {
                    // Writing into a Vec cannot fail.
                    let _ = g.write_all(data);
                }
            }
            Compression::Zstd => {
                self.raw.extend_from_slice(data);
                if self.raw.len() >= ZSTD_FRAME {
                    self.cut_frame();
                }
            }
        }
    }

    /// Writes what `fill` appends: uncompressed, straight into the output
    /// (no copy through a buffer of its own); otherwise through a scratch
    /// buffer kept between calls.
    pub fn write_with(&mut self, fill: impl FnOnce(&mut Vec<u8>)) {
        if self.kind == Compression::None {
            let before = self.out.len();
            fill(&mut self.out);
            self.written += (self.out.len() - before) as u64;
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        fill(&mut scratch);
        self.write(&scratch);
        self.scratch = scratch;
    }

    fn cut_frame(&mut self) {
        if !self.raw.is_empty() {
            let frame = ruzstd::encoding::compress_to_vec(
                self.raw.as_slice(),
                ruzstd::encoding::CompressionLevel::Fastest,
            );
            self.out.extend_from_slice(&frame);
            self.raw.clear();
        }
    }

    /// Uncompressed bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Compressed bytes ready to leave.
    pub fn ready(&self) -> usize {
        self.out.len() + self.gzip.as_ref().map_or(0, |g| g.get_ref().len())
    }

    /// Hands the compressed bytes ready to leave to `send`, then drops them
    /// but keeps the buffer: a multipart file's next part fills the same
    /// allocation instead of growing a new one to the part size again.
    pub fn send_ready<R>(&mut self, send: impl FnOnce(&[u8]) -> R) -> R {
        let ready = match &mut self.gzip {
            Some(g) => g.get_mut(),
            None => &mut self.out,
        };
        let sent = send(ready);
        ready.clear();
        sent
    }

    /// Everything not yet taken, with the stream's trailer.
    pub fn finish(mut self) -> Vec<u8> {
        match self.kind {
            Compression::Gzip => match self.gzip.take() {
                Some(g) => g.finish().unwrap_or_default(),
                None => Vec::new(),
            },
            Compression::Zstd => {
                self.cut_frame();
                self.out
            }
            Compression::None => self.out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_across_takes() {
        let line = b"{\"n\":12345,\"s\":\"some text that repeats\"}\n";
        for kind in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let mut c = Compressor::new(kind);
            let mut file = Vec::new();
            for i in 0..200_000 {
                if i % 2 == 0 {
                    c.write(line);
                } else {
                    c.write_with(|out| out.extend_from_slice(line));
                }
                if i % 50_000 == 0 {
                    c.send_ready(|ready| file.extend_from_slice(ready));
                }
            }
            file.extend(c.finish());
            let back = kind.decompress(&file).expect("decompresses");
            assert_eq!(back.len(), line.len() * 200_000, "{kind:?}");
            assert!(back.chunks(line.len()).all(|l| l == line), "{kind:?}");
        }
    }
}

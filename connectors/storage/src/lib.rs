//! The files an S3 sink writes and an S3 source reads back, shared by both
//! plugins so the layout has one definition: Confluent's object names, the
//! formats (JSON lines, Parquet, raw bytes) and their compression.

pub mod compress;
pub mod keys;
pub mod lines;
pub mod naming;
pub mod rows;

pub use compress::Compression;
pub use naming::{FileName, Part};

/// The format of a value file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON value per line (Confluent's JsonFormat).
    Json,
    /// Parquet, one column per field of the JSON object values.
    Parquet { snappy: bool },
    /// Raw values, each followed by a separator (Confluent's ByteArrayFormat).
    Bytes,
}

impl Format {
    /// Confluent's class names and Wharf's short ones.
    pub fn parse(class: &str, parquet_codec: &str) -> Result<Format, String> {
        let short = class
            .rsplit('.')
            .next()
            .unwrap_or(class)
            .to_ascii_lowercase();
        let snappy = match parquet_codec.trim().to_ascii_lowercase().as_str() {
            "snappy" => true,
            "none" | "uncompressed" => false,
            other => return Err(format!("parquet.codec '{other}': use snappy or none")),
        };
        match short.as_str() {
            "json" | "jsonformat" => Ok(Format::Json),
            "parquet" | "parquetformat" => Ok(Format::Parquet { snappy }),
            "bytes" | "bytearray" | "bytearrayformat" => Ok(Format::Bytes),
            _ => Err(format!(
                "format.class '{class}': use json, parquet or bytes (or Confluent's JsonFormat, ParquetFormat, ByteArrayFormat)"
            )),
        }
    }

    /// The file extension, compression included (`.json.gz`, `.snappy.parquet`).
    pub fn extension(self, compression: Compression) -> String {
        let base = match self {
            Format::Json => ".json",
            Format::Bytes => ".bin",
            Format::Parquet { snappy: true } => return ".snappy.parquet".into(),
            Format::Parquet { snappy: false } => return ".parquet".into(),
        };
        format!("{base}{}", compression.suffix())
    }

    /// Whether a file can be uploaded in parts while it is being written.
    pub fn streams(self) -> bool {
        !matches!(self, Format::Parquet { .. })
    }
}

//! The config keys both S3 plugins read: the bucket and how to reach it
//! (the host builds its client from them) and the file layout.

use wharf_sdk::{ConfigKey, Importance};

pub fn connection() -> Vec<ConfigKey> {
    vec![
        ConfigKey::string("s3.bucket.name")
            .non_empty()
            .importance(Importance::High)
            .doc("The bucket"),
        ConfigKey::string("s3.region")
            .default("us-east-1")
            .doc("The bucket's region"),
        ConfigKey::string("store.url")
            .default("")
            .doc("Endpoint of an S3-compatible server (MinIO, ...); empty means AWS"),
        ConfigKey::boolean("s3.path.style.access.enabled")
            .default("true")
            .doc("Path-style addressing (bucket in the path), which MinIO-like servers need"),
        ConfigKey::string("aws.access.key.id")
            .default("")
            .doc("Access key; empty takes AWS_ACCESS_KEY_ID from the worker's environment"),
        ConfigKey::password("aws.secret.access.key")
            .default("")
            .doc("Secret key; empty takes AWS_SECRET_ACCESS_KEY from the worker's environment"),
        ConfigKey::string("topics.dir")
            .default("topics")
            .doc("Top-level folder of the files"),
        ConfigKey::string("format.class")
            .default("json")
            .doc("json, parquet or bytes (Confluent's JsonFormat, ParquetFormat, ByteArrayFormat class names work too)"),
        ConfigKey::string("s3.compression.type")
            .default("none")
            .one_of(&["none", "gzip", "zstd"])
            .doc("Compression of JSON and byte files"),
        ConfigKey::string("parquet.codec")
            .default("snappy")
            .one_of(&["none", "snappy"])
            .doc("Compression inside Parquet files"),
        ConfigKey::string("format.bytearray.separator")
            .default("\\n")
            .doc("What follows each value in byte files (\\n, \\r\\n, or text)"),
        ConfigKey::boolean("store.kafka.keys")
            .default("false")
            .doc("Also write each file's record keys to a `.keys` companion object"),
        ConfigKey::boolean("store.kafka.headers")
            .default("false")
            .doc("Also write each file's record headers (and timestamps) to a `.headers` companion object"),
    ]
}

/// `\n`-style escapes in a separator setting.
pub fn unescape(s: &str) -> Vec<u8> {
    s.replace("\\r", "\r")
        .replace("\\n", "\n")
        .replace("\\t", "\t")
        .into_bytes()
}

//! Reading one file back into records: the values object, decompressed and
//! split by format, joined line by line with its keys and headers companions.

use wharf_sdk::{s3, Error, Record, Result};
use wharf_storage::{lines, rows, Compression, FileName, Part};

/// How files were written.
#[derive(Clone, Debug)]
pub struct Layout {
    pub separator: Vec<u8>,
    pub keys: bool,
    pub headers: bool,
}

fn companion(name: &FileName, part: Part) -> Result<Option<Vec<u8>>> {
    let mut c = name.with_part(part);
    if c.extension.ends_with(".parquet") {
        c.extension = ".json".into();
    }
    let Some(data) = s3::get_object(&c.key())? else {
        return Ok(None);
    };
    Compression::of_extension(&c.extension)
        .decompress(&data)
        .map(Some)
        .map_err(|e| Error::Fatal(format!("{}: {e}", c.key())))
}

/// The records of a file, in the order they were written; `None` if the
/// object is gone.
pub fn records(name: &FileName, layout: &Layout) -> Result<Option<Vec<Record>>> {
    let key = name.key();
    let bad = |e: String| Error::Fatal(format!("{key}: {e}"));
    let Some(data) = s3::get_object(&key)? else {
        return Ok(None);
    };
    let values: Vec<Option<Vec<u8>>> = if name.extension.ends_with(".parquet") {
        rows::read(data)
            .map_err(bad)?
            .into_iter()
            .map(|row| serde_json::to_vec(&row).ok())
            .collect()
    } else {
        let data = Compression::of_extension(&name.extension)
            .decompress(&data)
            .map_err(bad)?;
        if name.extension.starts_with(".json") {
            lines::split(&data, b"\n")
                .into_iter()
                .map(lines::value_of)
                .collect()
        } else {
            lines::split(&data, &layout.separator)
                .into_iter()
                .map(|v| Some(v.to_vec()))
                .collect()
        }
    };
    let mut out: Vec<Record> = values
        .into_iter()
        .map(|value| Record {
            topic: name.topic.clone(),
            partition: Some(name.partition),
            value,
            ..Default::default()
        })
        .collect();
    if layout.keys {
        if let Some(keys) = companion(name, Part::Keys)? {
            let keys = lines::split(&keys, b"\n");
            if keys.len() != out.len() {
                return Err(bad(format!("{} keys for {} values", keys.len(), out.len())));
            }
            for (r, k) in out.iter_mut().zip(keys) {
                r.key = lines::key_of(k).map_err(bad)?;
            }
        }
    }
    if layout.headers {
        if let Some(headers) = companion(name, Part::Headers)? {
            let headers = lines::split(&headers, b"\n");
            if headers.len() != out.len() {
                return Err(bad(format!(
                    "{} header lines for {} values",
                    headers.len(),
                    out.len()
                )));
            }
            for (r, h) in out.iter_mut().zip(headers) {
                let (ts, hs) = lines::headers_of(h).map_err(bad)?;
                r.timestamp = ts;
                r.headers = hs;
            }
        }
    }
    Ok(Some(out))
}

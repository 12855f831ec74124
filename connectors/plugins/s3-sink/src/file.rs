//! One file being written: its object name, its bytes (uploaded in parts
//! once they pass `s3.part.size`, for formats that stream) and its
//! companions. Nothing is visible in the bucket until [`OpenFile::write`]
//! completes it.

use serde_json::{Map, Value};
use wharf_sdk::{s3, Error, RecordView, Result};
use wharf_storage::compress::Compressor;
use wharf_storage::rows::{self, Columns};
use wharf_storage::{lines, FileName, Format, Part};

use crate::settings::Settings;

pub struct OpenFile {
    pub name: FileName,
    pub records: u64,
    body: Compressor,
    /// Parquet rows wait for the whole file.
    columns: Option<Columns>,
    rows: Vec<Map<String, Value>>,
    keys: Option<Vec<u8>>,
    headers: Option<Vec<u8>>,
    upload: Option<u64>,
    /// The finished body, kept so a failed single-request write can retry.
    sealed: Option<Vec<u8>>,
}

/// A failed part upload cannot be redone from here (its bytes are gone):
/// the task restarts and re-reads from the last committed offset.
fn lost(name: &FileName, e: Error) -> Error {
    Error::Fatal(format!(
        "uploading {} failed ({e}); the task restarts from the last committed offset",
        name.key()
    ))
}

impl OpenFile {
    pub fn new(name: FileName, s: &Settings) -> Self {
        OpenFile {
            name,
            records: 0,
            body: Compressor::new(s.compression),
            columns: None,
            rows: Vec::new(),
            keys: s.store_keys.then(Vec::new),
            headers: s.store_headers.then(Vec::new),
            upload: None,
            sealed: None,
        }
    }

    /// Whether a Parquet row fits this file's columns (true for other formats).
    pub fn fits(&self, row: Option<&Map<String, Value>>) -> bool {
        match (&self.columns, row) {
            (Some(cols), Some(row)) => rows::fits(cols, row),
            _ => true,
        }
    }

    /// Adds a record; `row` is its value as a JSON object for Parquet.
    pub fn append(
        &mut self,
        r: &RecordView<'_>,
        row: Option<Map<String, Value>>,
        s: &Settings,
    ) -> Result<()> {
        match s.format {
            Format::Json => {
                self.body.write_with(|out| lines::push_value(out, r.value));
            }
            Format::Bytes => {
                self.body.write(r.value.unwrap_or_default());
                self.body.write(&s.separator);
            }
            Format::Parquet { .. } => {
                let row =
                    row.ok_or_else(|| Error::Fatal("Parquet needs a JSON object value".into()))?;
                if self.columns.is_none() {
                    self.columns = rows::columns_of(&Value::Object(row.clone()));
                }
                self.rows.push(row);
            }
        }
        if let Some(k) = &mut self.keys {
            lines::push_key(k, r.key);
        }
        if let Some(h) = &mut self.headers {
            lines::push_headers(h, r.timestamp, r.headers());
        }
        self.records += 1;
        if self.body.ready() >= s.part_size {
            let id = match self.upload {
                Some(id) => id,
                None => {
                    let id = s3::upload_start(&self.name.key()).map_err(|e| lost(&self.name, e))?;
                    self.upload = Some(id);
                    id
                }
            };
            self.body
                .send_ready(|part| s3::upload_part(id, part))
                .map_err(|e| lost(&self.name, e))?;
        }
        Ok(())
    }

    /// Companions first, the values last: a visible values object means
    /// its companions are there too.
    pub fn write(&mut self, s: &Settings) -> Result<()> {
        for (part, buf) in [(Part::Keys, &self.keys), (Part::Headers, &self.headers)] {
            if let Some(buf) = buf {
                let mut c = Compressor::new(s.compression);
                c.write(buf);
                let name = self.name.with_part(part);
                let mut name = name;
                if matches!(s.format, Format::Parquet { .. }) {
                    name.extension = ".json".into();
                }
                s3::put_object(&name.key(), &c.finish())?;
            }
        }
        if let Some(id) = self.upload {
            let rest = std::mem::replace(&mut self.body, Compressor::new(s.compression)).finish();
            if !rest.is_empty() {
                s3::upload_part(id, &rest).map_err(|e| lost(&self.name, e))?;
            }
            s3::upload_complete(id).map_err(|e| lost(&self.name, e))?;
            self.upload = None;
            return Ok(());
        }
        let body = match self.sealed.take() {
            Some(b) => b,
            None => match (s.format, &self.columns) {
                (Format::Parquet { snappy }, Some(cols)) => {
                    rows::write(cols, &self.rows, snappy).map_err(Error::Fatal)?
                }
                _ => std::mem::replace(&mut self.body, Compressor::new(s.compression)).finish(),
            },
        };
        if body.len() > s.part_size {
            // A big Parquet file still goes up in parts.
            let id = s3::upload_start(&self.name.key()).map_err(|e| lost(&self.name, e))?;
            for chunk in body.chunks(s.part_size) {
                s3::upload_part(id, chunk).map_err(|e| lost(&self.name, e))?;
            }
            return s3::upload_complete(id).map_err(|e| lost(&self.name, e));
        }
        if let Err(e) = s3::put_object(&self.name.key(), &body) {
            self.sealed = Some(body);
            return Err(e);
        }
        Ok(())
    }

    /// Drops the file unwritten (its partition left the task).
    pub fn discard(self) {
        if let Some(id) = self.upload {
            let _ = s3::upload_abort(id);
        }
    }
}

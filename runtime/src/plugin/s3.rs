//! The `s3` capability sources and sinks import: the host holds one
//! aws-sdk-s3 client per task for the bucket its config names, and uploads
//! multipart parts on tokio while the plugin goes on encoding, a bounded
//! number at once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{timeout::TimeoutConfig, BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use tokio::task::JoinHandle;

use super::bindings::s3 as wit;
use super::bindings::types::PluginError;
use super::state::HostState;

/// What a connector's config grants: one bucket and how to reach it.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Grant {
    pub bucket: String,
    pub region: String,
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub part_concurrency: usize,
}

impl std::fmt::Debug for S3Grant {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Grant")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl S3Grant {
    /// The grant a config asks for through Confluent's keys, if any. Errors
    /// are (key, message).
    pub fn from_config(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, (&'static str, String)> {
        let Some(bucket) = get("s3.bucket.name").filter(|b| !b.trim().is_empty()) else {
            return Ok(None);
        };
        let endpoint = get("store.url").filter(|u| !u.trim().is_empty());
        if let Some(u) = &endpoint {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err((
                    "store.url",
                    format!("'{u}' must start with http:// or https://"),
                ));
            }
        }
        let flag = |keys: &[&str], default: bool| {
            keys.iter()
                .find_map(|k| get(k))
                .map(|v| v.trim().eq_ignore_ascii_case("true"))
                .unwrap_or(default)
        };
        let concurrency = match get("s3.part.upload.concurrency") {
            None => 4,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or((
                    "s3.part.upload.concurrency",
                    format!("'{v}' is not a number from 1 to 64"),
                ))?,
        };
        Ok(Some(S3Grant {
            bucket: bucket.trim().to_string(),
            region: get("s3.region")
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| "us-east-1".into()),
            // MinIO-like servers at a custom endpoint want path-style.
            path_style: flag(
                &["s3.path.style.access.enabled", "s3.path.style.access"],
                endpoint.is_some(),
            ),
            endpoint,
            access_key: get("aws.access.key.id").filter(|k| !k.is_empty()),
            secret_key: get("aws.secret.access.key").filter(|k| !k.is_empty()),
            part_concurrency: concurrency,
        }))
    }

    fn client(&self) -> Result<Client, PluginError> {
        // Without keys in the config, the worker's own environment lends them.
        let access = self
            .access_key
            .clone()
            .or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
        let secret = self
            .secret_key
            .clone()
            .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
        let (Some(access), Some(secret)) = (access, secret) else {
            return Err(PluginError::Fatal(
                "no S3 credentials: set aws.access.key.id and aws.secret.access.key \
                 (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for the worker)"
                    .into(),
            ));
        };
        let mut b = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(self.region.clone()))
            .credentials_provider(Credentials::new(access, secret, None, None, "wharf"))
            .force_path_style(self.path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .operation_attempt_timeout(Duration::from_secs(300))
                    .build(),
            );
        if let Some(url) = &self.endpoint {
            b = b.endpoint_url(url);
        }
        Ok(Client::from_conf(b.build()))
    }
}

/// Throttling, server errors and transport failures pass; refusals do not.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> PluginError {
    let message = format!("{what}: {}", DisplayErrorContext(&err));
    let retriable = match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            status == 429
                || status >= 500
                || matches!(
                    se.err().code(),
                    Some("SlowDown" | "RequestTimeout" | "InternalError")
                )
        }
        SdkError::ConstructionFailure(_) => false,
        _ => true,
    };
    if retriable {
        PluginError::Retriable(message)
    } else {
        PluginError::Fatal(message)
    }
}

type PartResult = Result<CompletedPart, PluginError>;

struct Upload {
    key: String,
    id: String,
    next_part: i32,
    parts: Vec<CompletedPart>,
    in_flight: VecDeque<JoinHandle<PartResult>>,
}

/// An upload completing in the background: its last parts and the
/// completion request, while the plugin already encodes the next file.
struct Completion {
    key: String,
    work: JoinHandle<Result<(), PluginError>>,
}

/// One task's client and its open multipart uploads.
pub struct S3Client {
    grant: S3Grant,
    client: Option<Client>,
    next_handle: u64,
    uploads: HashMap<u64, Upload>,
    /// At most one, so parts in memory stay bounded by two uploads' worth.
    completing: Option<Completion>,
}

impl S3Client {
    pub fn new(grant: S3Grant) -> Self {
        S3Client {
            grant,
            client: None,
            next_handle: 0,
            uploads: HashMap::new(),
            completing: None,
        }
    }

    fn client(&mut self) -> Result<Client, PluginError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = self.grant.client()?;
        self.client = Some(c.clone());
        Ok(c)
    }

    fn upload(&mut self, handle: u64) -> Result<&mut Upload, PluginError> {
        self.uploads
            .get_mut(&handle)
            .ok_or_else(|| PluginError::Fatal(format!("no open upload {handle}")))
    }
}

async fn joined(h: JoinHandle<PartResult>) -> PartResult {
    h.await
        .map_err(|e| PluginError::Retriable(format!("part upload was lost: {e}")))?
}

fn no_grant() -> PluginError {
    PluginError::Fatal("no S3 bucket granted: the connector config needs s3.bucket.name".into())
}

fn check_key(key: &str) -> Result<(), PluginError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(PluginError::Fatal(format!(
            "object key of {} bytes: S3 keys are 1 to 1024 bytes",
            key.len()
        )));
    }
    Ok(())
}

impl HostState {
    fn s3(&mut self) -> Result<&mut S3Client, PluginError> {
        self.s3.as_mut().ok_or_else(no_grant)
    }

    /// Whether an upload is still completing in the background.
    pub fn s3_completing(&self) -> bool {
        self.s3
            .as_ref()
            .and_then(|s3| s3.completing.as_ref())
            .is_some_and(|c| !c.work.is_finished())
    }

    /// Waits for the upload completing in the background, if any. A failure
    /// is fatal whatever its cause: the plugin has let go of that file, so
    /// only a restart from the last committed offset writes it again.
    pub async fn s3_settled(&mut self) -> Result<(), PluginError> {
        let Some(c) = self.s3.as_mut().and_then(|s3| s3.completing.take()) else {
            return Ok(());
        };
        let outcome = match self.timed(c.work).await {
            Ok(r) => r,
            Err(e) => Err(PluginError::Fatal(format!(
                "its background task ended: {e}"
            ))),
        };
        outcome.map_err(|e| {
            let reason = match e {
                PluginError::Retriable(m) | PluginError::Fatal(m) => m,
            };
            PluginError::Fatal(format!(
                "completing the upload of {} failed ({reason}); the task restarts from the last \
                 committed offset",
                c.key
            ))
        })
    }

    /// Runs a host wait, keeping it out of the plugin's call deadline.
    async fn timed<T>(&mut self, f: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let r = f.await;
        self.waited += started.elapsed();
        r
    }
}

impl wit::Host for HostState {
    async fn put_object(&mut self, key: String, body: Vec<u8>) -> Result<(), PluginError> {
        check_key(&key)?;
        let s3 = self.s3()?;
        let (client, bucket) = (s3.client()?, s3.grant.bucket.clone());
        let req = client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(ByteStream::from(body))
            .send();
        self.timed(req)
            .await
            .map_err(|e| classify(&format!("put {key}"), e))?;
        Ok(())
    }

    async fn upload_start(&mut self, key: String) -> Result<u64, PluginError> {
        check_key(&key)?;
        let s3 = self.s3()?;
        let (client, bucket) = (s3.client()?, s3.grant.bucket.clone());
        let work = async {
            // Starting ours and listing what an earlier task left run side by
            // side: one round trip less per file.
            let list = client
                .list_multipart_uploads()
                .bucket(&bucket)
                .prefix(&key)
                .send();
            let create = client
                .create_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .send();
            let (listed, created) = tokio::join!(list, create);
            let created = created.map_err(|e| classify(&format!("start upload of {key}"), e))?;
            let id = created.upload_id().map(str::to_string).ok_or_else(|| {
                PluginError::Retriable(format!("start upload of {key}: no upload id"))
            })?;
            let listed = match listed {
                Ok(l) => l,
                Err(e) => {
                    abort_quietly(&client, &bucket, &key, &id).await;
                    return Err(classify(&format!("list uploads of {key}"), e));
                }
            };
            // An upload of this key left by a task that died: invisible, but
            // its parts cost storage until aborted.
            for u in listed.uploads() {
                if let (Some(k), Some(old)) = (u.key(), u.upload_id()) {
                    if k == key && old != id {
                        tracing::info!(key = %k, "aborting an unfinished upload an earlier task left");
                        let aborted = client
                            .abort_multipart_upload()
                            .bucket(&bucket)
                            .key(k)
                            .upload_id(old)
                            .send()
                            .await;
                        if let Err(e) = aborted {
                            abort_quietly(&client, &bucket, &key, &id).await;
                            return Err(classify(&format!("abort old upload of {key}"), e));
                        }
                    }
                }
            }
            Ok(id)
        };
        let id = self.timed(work).await?;
        let s3 = self.s3()?;
        let handle = s3.next_handle;
        s3.next_handle += 1;
        s3.uploads.insert(
            handle,
            Upload {
                key,
                id,
                next_part: 1,
                parts: Vec::new(),
                in_flight: VecDeque::new(),
            },
        );
        Ok(handle)
    }

    async fn upload_part(&mut self, upload: u64, body: Vec<u8>) -> Result<(), PluginError> {
        let s3 = self.s3()?;
        let (client, bucket, max) = (
            s3.client()?,
            s3.grant.bucket.clone(),
            s3.grant.part_concurrency,
        );
        let u = s3.upload(upload)?;
        if u.next_part > 10_000 {
            return Err(PluginError::Fatal(format!(
                "upload of {}: S3 allows 10000 parts; raise s3.part.size",
                u.key
            )));
        }
        let oldest = if u.in_flight.len() >= max {
            u.in_flight.pop_front()
        } else {
            None
        };
        if let Some(h) = oldest {
            let part = self.timed(joined(h)).await?;
            self.s3()?.upload(upload)?.parts.push(part);
        }
        let u = self.s3()?.upload(upload)?;
        let n = u.next_part;
        u.next_part += 1;
        let (key, id) = (u.key.clone(), u.id.clone());
        u.in_flight.push_back(tokio::spawn(async move {
            let out = client
                .upload_part()
                .bucket(bucket)
                .key(&key)
                .upload_id(id)
                .part_number(n)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| classify(&format!("part {n} of {key}"), e))?;
            Ok(CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag().map(str::to_string))
                .build())
        }));
        Ok(())
    }

    /// Starts completing in the background and returns: the plugin goes on
    /// with its next file while the last parts land. The host waits for it
    /// before a sink's flush returns (so no offset past this file is
    /// committed before the object is whole) and before the next completion.
    async fn upload_complete(&mut self, upload: u64) -> Result<(), PluginError> {
        self.s3_settled().await?;
        let s3 = self.s3()?;
        let (client, bucket) = (s3.client()?, s3.grant.bucket.clone());
        let mut u = s3
            .uploads
            .remove(&upload)
            .ok_or_else(|| PluginError::Fatal(format!("no open upload {upload}")))?;
        let key = u.key.clone();
        let work = tokio::spawn(async move {
            let done = async {
                while let Some(h) = u.in_flight.pop_front() {
                    u.parts.push(joined(h).await?);
                }
                client
                    .complete_multipart_upload()
                    .bucket(&bucket)
                    .key(&u.key)
                    .upload_id(&u.id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(std::mem::take(&mut u.parts)))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| classify(&format!("complete upload of {}", u.key), e))?;
                Ok(())
            }
            .await;
            if done.is_err() {
                // Nothing of it is visible; the replay writes it anew.
                abort_quietly(&client, &bucket, &u.key, &u.id).await;
            }
            done
        });
        self.s3()?.completing = Some(Completion { key, work });
        Ok(())
    }

    async fn upload_abort(&mut self, upload: u64) -> Result<(), PluginError> {
        let s3 = self.s3()?;
        let (client, bucket) = (s3.client()?, s3.grant.bucket.clone());
        let Some(u) = s3.uploads.remove(&upload) else {
            return Ok(());
        };
        for h in &u.in_flight {
            h.abort();
        }
        self.timed(abort_quietly(&client, &bucket, &u.key, &u.id))
            .await;
        Ok(())
    }

    async fn list_objects(
        &mut self,
        prefix: String,
        start_after: Option<String>,
    ) -> Result<Vec<wit::ObjectInfo>, PluginError> {
        let s3 = self.s3()?;
        let (client, bucket) = (s3.client()?, s3.grant.bucket.clone());
        let req = client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&prefix)
            .set_start_after(start_after)
            .send();
        let out = self
            .timed(req)
            .await
            .map_err(|e| classify(&format!("list {prefix}"), e))?;
        Ok(out
            .contents()
            .iter()
            .filter_map(|o| {
                Some(wit::ObjectInfo {
                    key: o.key()?.to_string(),
                    size: o.size().unwrap_or(0).max(0) as u64,
                })
            })
            .collect())
    }

    async fn get_object(&mut self, key: String) -> Result<Option<Vec<u8>>, PluginError> {
        check_key(&key)?;
        let s3 = self.s3()?;
        let (client, bucket) = (s3.client()?, s3.grant.bucket.clone());
        let work = async {
            let out = match client.get_object().bucket(bucket).key(&key).send().await {
                Ok(out) => out,
                Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                    return Ok(None)
                }
                Err(e) => return Err(classify(&format!("get {key}"), e)),
            };
            let body =
                out.body.collect().await.map_err(|e| {
                    PluginError::Retriable(format!("get {key}: reading the body: {e}"))
                })?;
            Ok(Some(body.into_bytes().to_vec()))
        };
        self.timed(work).await
    }

    async fn delete_object(&mut self, key: String) -> Result<(), PluginError> {
        check_key(&key)?;
        let s3 = self.s3()?;
        let (client, bucket) = (s3.client()?, s3.grant.bucket.clone());
        let req = client.delete_object().bucket(bucket).key(&key).send();
        self.timed(req)
            .await
            .map_err(|e| classify(&format!("delete {key}"), e))?;
        Ok(())
    }
}

async fn abort_quietly(client: &Client, bucket: &str, key: &str, id: &str) {
    if let Err(e) = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .send()
        .await
    {
        tracing::warn!(key, "aborting an upload failed (its parts stay until the bucket's lifecycle removes them): {}", DisplayErrorContext(&e));
    }
}

impl Drop for S3Client {
    fn drop(&mut self) {
        for u in self.uploads.values() {
            for h in &u.in_flight {
                h.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_come_from_confluent_keys() {
        let cfg = |k: &str| {
            match k {
                "s3.bucket.name" => Some("b"),
                "store.url" => Some("http://127.0.0.1:9000"),
                "aws.secret.access.key" => Some("very-secret-value"),
                _ => None,
            }
            .map(str::to_string)
        };
        let g = S3Grant::from_config(cfg).expect("valid").expect("granted");
        assert_eq!(g.bucket, "b");
        assert_eq!(g.region, "us-east-1");
        assert!(g.path_style, "a custom endpoint defaults to path-style");
        assert_eq!(g.part_concurrency, 4);
        assert!(!format!("{g:?}").contains("very-secret-value"));
        assert!(S3Grant::from_config(|_| None).expect("valid").is_none());
        let bad = S3Grant::from_config(|k| match k {
            "s3.bucket.name" => Some("b".to_string()),
            "store.url" => Some("ftp://x".to_string()),
            _ => None,
        });
        assert!(bad.is_err());
    }
}

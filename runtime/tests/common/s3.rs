//! S3 helpers for tests against the real server from `tests/services/up`.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;

pub fn endpoint() -> String {
    std::env::var("WHARF_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:9000".into())
}

pub fn credentials() -> (String, String) {
    (
        std::env::var("WHARF_S3_ACCESS_KEY").unwrap_or_else(|_| "wharf".into()),
        std::env::var("WHARF_S3_SECRET_KEY").unwrap_or_else(|_| "wharf-secret".into()),
    )
}

/// The connector keys that reach the local server's `bucket`.
pub fn connection_yaml(bucket: &str) -> String {
    let (access, secret) = credentials();
    format!(
        "  s3.bucket.name: {bucket}\n  store.url: {}\n  s3.path.style.access.enabled: true\n  \
         aws.access.key.id: {access}\n  aws.secret.access.key: {secret}\n",
        endpoint()
    )
}

pub struct S3 {
    rt: tokio::runtime::Runtime,
    client: Client,
    pub bucket: String,
}

impl S3 {
    /// A client and a new, empty bucket.
    pub fn new(bucket: &str) -> S3 {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let (access, secret) = credentials();
        let creds = aws_credential_types::Credentials::new(access, secret, None, None, "tests");
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(endpoint())
            .credentials_provider(creds)
            .force_path_style(true)
            .build();
        let client = Client::from_conf(config);
        rt.block_on(client.create_bucket().bucket(bucket).send())
            .expect("create bucket");
        S3 {
            rt,
            client,
            bucket: bucket.to_string(),
        }
    }

    /// Every key in the bucket, in order.
    pub fn keys(&self) -> Vec<String> {
        self.rt.block_on(async {
            let mut out = Vec::new();
            let mut token = None;
            loop {
                let page = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .set_continuation_token(token)
                    .send()
                    .await
                    .expect("list");
                out.extend(
                    page.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
                token = page.next_continuation_token().map(str::to_string);
                if token.is_none() {
                    return out;
                }
            }
        })
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        self.rt.block_on(async {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e}"));
            out.body
                .collect()
                .await
                .expect("body")
                .into_bytes()
                .to_vec()
        })
    }

    /// Keys of multipart uploads begun and neither completed nor aborted.
    pub fn uploads(&self) -> Vec<String> {
        self.open_uploads()
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    /// (key, upload id) of every open multipart upload.
    fn open_uploads(&self) -> Vec<(String, String)> {
        self.rt.block_on(async {
            let out = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .send()
                .await
                .expect("list uploads");
            out.uploads()
                .iter()
                .filter_map(|u| Some((u.key()?.to_string(), u.upload_id()?.to_string())))
                .collect()
        })
    }

    /// Parts uploaded so far to each open multipart upload of `key`.
    pub fn parts(&self, key: &str) -> Vec<usize> {
        let open: Vec<String> = self
            .open_uploads()
            .into_iter()
            .filter(|(k, _)| k == key)
            .map(|(_, id)| id)
            .collect();
        self.rt.block_on(async {
            let mut out = Vec::new();
            for id in open {
                // An upload completed or aborted since it was listed has no parts to list.
                if let Ok(parts) = self
                    .client
                    .list_parts()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&id)
                    .send()
                    .await
                {
                    out.push(parts.parts().len());
                }
            }
            out
        })
    }

    /// Aborts every open multipart upload behind the writer's back.
    pub fn abort_uploads(&self) -> usize {
        let open = self.open_uploads();
        self.rt.block_on(async {
            for (key, id) in &open {
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .expect("abort upload");
            }
        });
        open.len()
    }

    /// Waits until the bucket holds `n` keys ending in `suffix`.
    pub fn wait_for_keys(&self, suffix: &str, n: usize, limit: Duration) -> Vec<String> {
        let start = Instant::now();
        loop {
            let keys: Vec<String> = self
                .keys()
                .into_iter()
                .filter(|k| k.ends_with(suffix))
                .collect();
            if keys.len() >= n {
                return keys;
            }
            assert!(
                start.elapsed() < limit,
                "{} of {n} '{suffix}' objects after {limit:?}: {keys:?}",
                keys.len()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The lines of a (JSON lines) object.
    pub fn lines(&self, key: &str) -> Vec<serde_json::Value> {
        String::from_utf8(self.get(key))
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

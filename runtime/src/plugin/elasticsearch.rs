//! The `elasticsearch` capability a sink imports: the host holds one client
//! per task for the cluster its config names and runs bulk requests on tokio,
//! at most `max.in.flight.requests` at once, so a plugin never opens a socket
//! itself and never reaches a host it was not given.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use elasticsearch::auth::Credentials;
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{MultiNodeConnectionPool, TransportBuilder};
use elasticsearch::http::{Method, Url};
use elasticsearch::Elasticsearch;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::bindings::elasticsearch as wit;
use super::bindings::types::PluginError;
use super::state::HostState;

/// What a connector's config grants: the cluster and how to talk to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EsGrant {
    pub urls: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub compression: bool,
    pub read_timeout: Duration,
    pub max_in_flight: usize,
}

impl EsGrant {
    /// The grant a sink config asks for through Confluent's keys, if any.
    /// Errors are (key, message).
    pub fn from_config(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, (&'static str, String)> {
        let Some(urls) = get("connection.url") else {
            return Ok(None);
        };
        let urls: Vec<String> = urls
            .split(',')
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        for u in &urls {
            let parsed = Url::parse(u).map_err(|e| ("connection.url", format!("'{u}': {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err((
                    "connection.url",
                    format!("'{u}': scheme must be http or https"),
                ));
            }
        }
        if urls.is_empty() {
            return Ok(None);
        }
        let num = |key: &'static str, default: u64| -> Result<u64, (&'static str, String)> {
            match get(key) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| (key, format!("'{v}' is not a non-negative integer"))),
            }
        };
        Ok(Some(EsGrant {
            urls,
            username: get("connection.username").filter(|u| !u.is_empty()),
            password: get("connection.password").filter(|p| !p.is_empty()),
            compression: get("connection.compression")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            read_timeout: Duration::from_millis(num("read.timeout.ms", 3000)?.max(1)),
            max_in_flight: num("max.in.flight.requests", 5)?.clamp(1, 1000) as usize,
        }))
    }
}

type BulkResult = Result<Vec<wit::ItemResult>, PluginError>;

/// One task's client and its outstanding bulk requests.
pub struct EsClient {
    grant: EsGrant,
    client: Option<Elasticsearch>,
    next_id: u64,
    in_flight: HashMap<u64, JoinHandle<BulkResult>>,
}

impl EsClient {
    pub fn new(grant: EsGrant) -> Self {
        EsClient {
            grant,
            client: None,
            next_id: 0,
            in_flight: HashMap::new(),
        }
    }

    /// Built on first use so a task that never indexes opens nothing.
    fn client(&mut self) -> Result<Elasticsearch, PluginError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let urls = self
            .grant
            .urls
            .iter()
            .map(|u| Url::parse(u))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| PluginError::Fatal(format!("connection.url: {e}")))?;
        let mut b = TransportBuilder::new(MultiNodeConnectionPool::round_robin(urls, None))
            .request_body_compression(self.grant.compression)
            .timeout(self.grant.read_timeout)
            .enable_meta_header(false);
        if let Some(user) = &self.grant.username {
            b = b.auth(Credentials::Basic(
                user.clone(),
                self.grant.password.clone().unwrap_or_default(),
            ));
        }
        let transport = b
            .build()
            .map_err(|e| PluginError::Fatal(format!("elasticsearch client: {e}")))?;
        let c = Elasticsearch::new(transport);
        self.client = Some(c.clone());
        Ok(c)
    }
}

fn no_grant() -> PluginError {
    PluginError::Fatal(
        "no Elasticsearch cluster granted: the connector config needs connection.url".into(),
    )
}

/// A transport failure or an overloaded/unavailable cluster may pass; a
/// refused request will not.
fn status_error(status: u16, body: &[u8]) -> PluginError {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    let m = format!("HTTP {status}: {text}");
    if status == 429 || status >= 500 {
        PluginError::Retriable(m)
    } else {
        PluginError::Fatal(m)
    }
}

#[derive(Deserialize)]
struct BulkBody {
    #[serde(default)]
    items: Vec<HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

fn parse_items(body: &[u8]) -> BulkResult {
    let parsed: BulkBody = serde_json::from_slice(body)
        .map_err(|e| PluginError::Retriable(format!("unreadable bulk response: {e}")))?;
    Ok(parsed
        .items
        .into_iter()
        .map(|mut action| {
            let item = action.drain().next().map(|(_, v)| v);
            match item {
                Some(BulkItem { status, error }) => {
                    let (error_type, error_reason) = match error {
                        None => (String::new(), String::new()),
                        Some(e) => (
                            e["type"].as_str().unwrap_or("error").to_string(),
                            e["reason"]
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| e.to_string()),
                        ),
                    };
                    wit::ItemResult {
                        status,
                        error_type,
                        error_reason,
                    }
                }
                None => wit::ItemResult {
                    status: 500,
                    error_type: "empty_item".into(),
                    error_reason: "bulk response item without an action".into(),
                },
            }
        })
        .collect())
}

async fn send(
    client: Elasticsearch,
    method: Method,
    path: String,
    content_type: &'static str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Vec<u8>), PluginError> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    let resp = client
        .send(method, &path, headers, None::<&()>, body, None)
        .await
        .map_err(|e| PluginError::Retriable(format!("{path}: {e}")))?;
    let status = resp.status_code().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| PluginError::Retriable(format!("{path}: reading the response: {e}")))?;
    Ok((status, bytes.to_vec()))
}

/// A plugin names a path on the granted cluster, never a place elsewhere:
/// the client joins it onto the granted URL, and `//host`, a scheme, user
/// info or a backslash could make that join leave the cluster with its
/// credentials. Only printable ASCII (query strings included) passes.
fn check_path(path: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("path '{}' refused: {why}", path.escape_default()));
    if !path.starts_with('/') {
        return refuse("it must start with /");
    }
    if path.starts_with("//") {
        return refuse("it names a host");
    }
    if path.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return refuse("only printable ASCII without spaces");
    }
    let before_query = path.split(['?', '#']).next().unwrap_or(path);
    if before_query.contains("://") || before_query.contains('\\') || before_query.contains('@') {
        return refuse("it names a scheme, a host or credentials");
    }
    Ok(())
}

fn method_of(m: &str) -> Result<Method, PluginError> {
    Ok(match m.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "PUT" => Method::Put,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        "HEAD" => Method::Head,
        other => return Err(PluginError::Fatal(format!("unsupported method {other}"))),
    })
}

impl HostState {
    fn es(&mut self) -> Result<&mut EsClient, PluginError> {
        self.elasticsearch.as_mut().ok_or_else(no_grant)
    }
}

impl wit::Host for HostState {
    async fn request(
        &mut self,
        method: String,
        path: String,
        body: Option<Vec<u8>>,
    ) -> Result<wit::Response, PluginError> {
        let method = method_of(&method)?;
        check_path(&path).map_err(PluginError::Fatal)?;
        let client = self.es()?.client()?;
        let started = Instant::now();
        let r = send(client, method, path, "application/json", body).await;
        self.waited += started.elapsed();
        let (status, body) = r?;
        Ok(wit::Response { status, body })
    }

    fn bulk_submit(&mut self, body: Vec<u8>) -> Result<u64, PluginError> {
        let es = self.es()?;
        if es.in_flight.len() >= es.grant.max_in_flight {
            return Err(PluginError::Fatal(format!(
                "{} bulk requests already outstanding (max.in.flight.requests): wait for one first",
                es.in_flight.len()
            )));
        }
        let client = es.client()?;
        let id = es.next_id;
        es.next_id += 1;
        let handle = tokio::spawn(async move {
            let (status, body) = send(
                client,
                Method::Post,
                "/_bulk".into(),
                "application/x-ndjson",
                Some(body),
            )
            .await?;
            if !(200..300).contains(&status) {
                return Err(status_error(status, &body));
            }
            parse_items(&body)
        });
        es.in_flight.insert(id, handle);
        Ok(id)
    }

    async fn bulk_wait(&mut self, id: u64) -> Result<Vec<wit::ItemResult>, PluginError> {
        let handle = self
            .es()?
            .in_flight
            .remove(&id)
            .ok_or_else(|| PluginError::Fatal(format!("no outstanding bulk request {id}")))?;
        let started = Instant::now();
        let r = handle.await;
        self.waited += started.elapsed();
        r.map_err(|e| PluginError::Retriable(format!("bulk request {id} was lost: {e}")))?
    }
}

impl Drop for EsClient {
    fn drop(&mut self) {
        for (_, h) in self.in_flight.drain() {
            h.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_cannot_leave_the_granted_cluster() {
        for ok in [
            "/_bulk",
            "/idx/_doc/1?refresh=true",
            "/_cluster/health",
            "/a%2Fb",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://other/x",
            "/http://other-host/",
            "//other-host/x",
            "/\\other/x",
            "/user:pw@other/x",
            "/idx/_doc/1 HTTP/1.1",
            "/idx\r\nHost: other",
            "idx/_search",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bulk_items_keep_order_and_errors() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"index":{"_id":"1","status":201}},
            {"index":{"_id":"2","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [n]"}}},
            {"delete":{"_id":"3","status":404}},
            {"update":{"_id":"4","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}}]}"#;
        let items = parse_items(body).expect("parsed");
        let statuses: Vec<u16> = items.iter().map(|i| i.status).collect();
        assert_eq!(statuses, [201, 400, 404, 429]);
        assert_eq!(items[0].error_type, "");
        assert_eq!(items[1].error_type, "mapper_parsing_exception");
        assert_eq!(items[1].error_reason, "failed to parse field [n]");
        assert_eq!(items[3].error_type, "es_rejected_execution_exception");
    }

    #[test]
    fn whole_request_failures_are_classified() {
        assert!(matches!(
            status_error(429, b"busy"),
            PluginError::Retriable(_)
        ));
        assert!(matches!(
            status_error(503, b"down"),
            PluginError::Retriable(_)
        ));
        assert!(matches!(status_error(400, b"bad"), PluginError::Fatal(_)));
    }

    #[test]
    fn grants_come_from_confluent_keys() {
        let cfg = |k: &str| match k {
            "connection.url" => Some("http://127.0.0.1:9200/, http://127.0.0.1:9201".to_string()),
            "max.in.flight.requests" => Some("3".to_string()),
            _ => None,
        };
        let g = EsGrant::from_config(cfg).expect("valid").expect("granted");
        assert_eq!(g.urls, ["http://127.0.0.1:9200", "http://127.0.0.1:9201"]);
        assert_eq!(g.max_in_flight, 3);
        assert!(EsGrant::from_config(|_| None).expect("valid").is_none());
        let bad = EsGrant::from_config(|k| (k == "connection.url").then(|| "ftp://x".to_string()));
        assert!(bad.is_err());
    }
}

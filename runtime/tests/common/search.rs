//! OpenSearch helpers for tests against the engine from `tests/services/up`,
//! through the same `elasticsearch` crate the host uses.

use std::time::{Duration, Instant};

use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::Transport;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

pub fn url() -> String {
    std::env::var("WHARF_OPENSEARCH_URL").unwrap_or_else(|_| "http://127.0.0.1:9200".into())
}

/// One request: (status, JSON body or Null).
pub fn call(method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Elasticsearch::new(Transport::single_node(&url()).expect("transport"));
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let r = client
            .send(
                method,
                path,
                headers,
                None::<&()>,
                body.map(|b| b.to_string()),
                Some(Duration::from_secs(30)),
            )
            .await
            .expect("request");
        let status = r.status_code().as_u16();
        let text = r.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    })
}

/// Documents in an index after a refresh (0 when it does not exist yet).
pub fn count(index: &str) -> u64 {
    call(Method::Post, &format!("/{index}/_refresh"), None);
    let (status, body) = call(Method::Get, &format!("/{index}/_count"), None);
    if status == 404 {
        return 0;
    }
    body["count"].as_u64().unwrap_or(0)
}

/// Waits until `index` holds `n` documents.
pub fn wait_for_count(index: &str, n: u64, limit: Duration) {
    let start = Instant::now();
    loop {
        let c = count(index);
        if c == n {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "{index} holds {c} documents, waited {limit:?} for {n}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn get(index: &str, id: &str) -> Option<Value> {
    let (status, body) = call(Method::Get, &format!("/{index}/_doc/{id}"), None);
    (status == 200).then(|| body["_source"].clone())
}

/// (value_count, sum, min, max) of an integer field: with unique ids, the
/// count and the sum together show each value present exactly once.
pub fn stats(index: &str, field: &str) -> (u64, u64, i64, i64) {
    call(Method::Post, &format!("/{index}/_refresh"), None);
    let (_, body) = call(
        Method::Post,
        &format!("/{index}/_search"),
        Some(serde_json::json!({
            "size": 0,
            "aggs": {
                "n": {"value_count": {"field": field}},
                "s": {"sum": {"field": field}},
                "lo": {"min": {"field": field}},
                "hi": {"max": {"field": field}},
            }
        })),
    );
    let a = &body["aggregations"];
    (
        a["n"]["value"].as_u64().unwrap_or(0),
        a["s"]["value"].as_f64().unwrap_or(-1.0) as u64,
        a["lo"]["value"].as_f64().unwrap_or(-1.0) as i64,
        a["hi"]["value"].as_f64().unwrap_or(-1.0) as i64,
    )
}

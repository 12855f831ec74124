//! The Elasticsearch/OpenSearch capability: the host holds the client for the
//! cluster in the connector's `connection.url`; a plugin builds NDJSON bulk
//! bodies and reads per-item outcomes. Compiled natively (unit tests), every
//! call fails: there is no host to talk to.

use crate::Result;

/// A whole HTTP response.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One bulk action's outcome; `error_type` is empty when it succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemResult {
    pub status: u16,
    pub error_type: String,
    pub error_reason: String,
}

#[cfg(target_arch = "wasm32")]
use crate::bindings::sink::wharf::connector::elasticsearch as es;

#[cfg(target_arch = "wasm32")]
use crate::from_wit;

#[cfg(not(target_arch = "wasm32"))]
fn unavailable<T>() -> Result<T> {
    crate::host_only("elasticsearch")
}

/// Sends a request (index or data stream admin) to the granted cluster.
pub fn request(method: &str, path: &str, body: Option<&[u8]>) -> Result<Response> {
    #[cfg(target_arch = "wasm32")]
    return es::request(method, path, body)
        .map(|r| Response {
            status: r.status,
            body: r.body,
        })
        .map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (method, path, body);
        unavailable()
    }
}

/// Starts a `_bulk` request; returns its id for [`bulk_wait`].
pub fn bulk_submit(body: &[u8]) -> Result<u64> {
    #[cfg(target_arch = "wasm32")]
    return es::bulk_submit(body).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = body;
        unavailable()
    }
}

/// Waits for a submitted bulk request: its items' outcomes in request order.
pub fn bulk_wait(id: u64) -> Result<Vec<ItemResult>> {
    #[cfg(target_arch = "wasm32")]
    return es::bulk_wait(id)
        .map(|items| {
            items
                .into_iter()
                .map(|i| ItemResult {
                    status: i.status,
                    error_type: i.error_type,
                    error_reason: i.error_reason,
                })
                .collect()
        })
        .map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = id;
        unavailable()
    }
}

//! The S3 capability: the host holds the client for the bucket in the
//! connector's `s3.bucket.name` (with `s3.region`, `store.url`, path-style
//! access and credentials); keys here are relative to that bucket. Compiled
//! natively (unit tests), every call fails: there is no host to talk to.

use crate::Result;

/// An object's key and size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
}

#[cfg(target_arch = "wasm32")]
use crate::bindings::source::wharf::connector::s3 as wit;

#[cfg(target_arch = "wasm32")]
use crate::from_wit;

#[cfg(not(target_arch = "wasm32"))]
fn unavailable<T>() -> Result<T> {
    crate::host_only("s3")
}

/// Stores a whole object in one request.
pub fn put_object(key: &str, body: &[u8]) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::put_object(key, body).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (key, body);
        unavailable()
    }
}

/// Begins a multipart upload (aborting any unfinished one of the same key).
pub fn upload_start(key: &str) -> Result<u64> {
    #[cfg(target_arch = "wasm32")]
    return wit::upload_start(key).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        unavailable()
    }
}

/// Queues the next part; returns once it is on its way.
pub fn upload_part(upload: u64, body: &[u8]) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::upload_part(upload, body).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (upload, body);
        unavailable()
    }
}

/// Completes the upload once its parts are in: the object appears whole or
/// not at all. It may finish in the background; the host waits for it
/// before the sink's flush returns, so offsets never pass it first.
pub fn upload_complete(upload: u64) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::upload_complete(upload).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = upload;
        unavailable()
    }
}

/// Drops an upload and its parts.
pub fn upload_abort(upload: u64) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::upload_abort(upload).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = upload;
        unavailable()
    }
}

/// Up to 1000 objects under `prefix` after `start_after`, in key order.
pub fn list_objects(prefix: &str, start_after: Option<&str>) -> Result<Vec<ObjectInfo>> {
    #[cfg(target_arch = "wasm32")]
    return wit::list_objects(prefix, start_after)
        .map(|os| {
            os.into_iter()
                .map(|o| ObjectInfo {
                    key: o.key,
                    size: o.size,
                })
                .collect()
        })
        .map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = (prefix, start_after);
        unavailable()
    }
}

/// A whole object, or `None` if the key does not exist.
pub fn get_object(key: &str) -> Result<Option<Vec<u8>>> {
    #[cfg(target_arch = "wasm32")]
    return wit::get_object(key).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        unavailable()
    }
}

pub fn delete_object(key: &str) -> Result<()> {
    #[cfg(target_arch = "wasm32")]
    return wit::delete_object(key).map_err(from_wit);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = key;
        unavailable()
    }
}

//! Who may talk to the REST API, checked before any handler runs:
//! - a request with a body must say it is JSON (415), so a web page cannot
//!   send a "simple" `text/plain` POST that skips the browser's preflight;
//! - on a loopback listener the `Host` must be a loopback name, so a page
//!   whose DNS name rebinds to 127.0.0.1 is refused;
//! - a state-changing request from a browser (`Origin`) must come from the
//!   API's own origin or one in `access.control.allow.origin` (CSRF);
//! - credentials: `Authorization: Bearer <rest.auth.token>` or HTTP Basic
//!   from `rest.auth.basic.file` (what Connect's
//!   BasicAuthSecurityRestExtension reads), compared in constant time.
//!
//! `/healthz` needs no credentials, as before.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{error, RestError};

/// The checks of one listener.
#[derive(Clone, Debug, Default)]
pub struct Guard {
    pub token: Option<Arc<str>>,
    /// user -> password.
    pub basic: Option<Arc<BTreeMap<String, String>>>,
    /// The listener is on a loopback address: `Host` must name one too.
    pub loopback: bool,
    /// Origins besides the API's own that may change things (`*`: any).
    pub allowed_origins: Arc<Vec<String>>,
}

impl Guard {
    pub fn needs_credentials(&self) -> bool {
        self.token.is_some() || self.basic.is_some()
    }
}

/// Reads a Connect-style credentials file: one `user: password` (or
/// `user=password`) per line, `#` comments.
pub fn load_credentials(path: &Path) -> Result<BTreeMap<String, String>, RestError> {
    let bad = |m: String| RestError::Credentials {
        file: path.display().to_string(),
        message: m,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let mut users = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(i) = line.find([':', '=']) else {
            return Err(bad(format!("line {}: expected 'user: password'", n + 1)));
        };
        let (user, password) = (line[..i].trim(), line[i + 1..].trim());
        if user.is_empty() || password.is_empty() {
            return Err(bad(format!("line {}: empty user or password", n + 1)));
        }
        users.insert(user.to_string(), password.to_string());
    }
    if users.is_empty() {
        return Err(bad("no user in the file".into()));
    }
    Ok(users)
}

/// Equal without an early exit, so timing says nothing of how much matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = text.trim().trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in bytes {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

impl Guard {
    fn authorized(&self, req: &Request) -> bool {
        let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if let (Some(token), Some(t)) = (&self.token, given.strip_prefix("Bearer ")) {
            return same(t.trim().as_bytes(), token.as_bytes());
        }
        if let (Some(users), Some(b)) = (&self.basic, given.strip_prefix("Basic ")) {
            let Some(pair) = base64_decode(b).and_then(|d| String::from_utf8(d).ok()) else {
                return false;
            };
            let Some((user, password)) = pair.split_once(':') else {
                return false;
            };
            // Every user is compared, so timing does not say which exist.
            let mut ok = false;
            for (u, p) in users.iter() {
                let matched =
                    same(u.as_bytes(), user.as_bytes()) & same(p.as_bytes(), password.as_bytes());
                ok |= matched;
            }
            return ok;
        }
        false
    }

    fn host_allowed(&self, req: &Request) -> bool {
        if !self.loopback {
            return true;
        }
        let Some(host) = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
        else {
            // HTTP/1.0 without Host: no browser sends that.
            return true;
        };
        is_loopback_name(host_part(host))
    }

    fn origin_allowed(&self, req: &Request) -> bool {
        let Some(origin) = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
        else {
            return true;
        };
        if self.allowed_origins.iter().any(|o| o == "*" || o == origin) {
            return true;
        }
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // The API's own pages (same scheme-less authority).
        origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
    }
}

/// `host[:port]` or `[v6]:port` to the host alone.
fn host_part(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn is_loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn has_body(req: &Request) -> bool {
    let h = req.headers();
    h.get(header::TRANSFER_ENCODING).is_some()
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

pub async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    if !guard.host_allowed(&req) {
        return error(
            StatusCode::FORBIDDEN,
            "the Host header must name this loopback listener (127.0.0.1, localhost or ::1)",
        );
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && !guard.origin_allowed(&req) {
        return error(
            StatusCode::FORBIDDEN,
            "requests from another origin may not change this worker (access.control.allow.origin)",
        );
    }
    if has_body(&req) && !is_json(&req) {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a request body must be JSON: send 'Content-Type: application/json'",
        );
    }
    if guard.needs_credentials() && req.uri().path() != "/healthz" && !guard.authorized(&req) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "this worker needs credentials: 'Authorization: Bearer <token>' (rest.auth.token) or HTTP Basic (rest.auth.basic.file)",
        );
        if guard.basic.is_some() {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"wharf\""),
            );
        }
        return r;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparisons_need_every_byte() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret!"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(
            base64_decode("dXNlcjpwYXNz").as_deref(),
            Some(&b"user:pass"[..])
        );
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(base64_decode("!!"), None);
    }

    #[test]
    fn hosts_on_a_loopback_listener() {
        for ok in [
            "127.0.0.1:8083",
            "localhost:8083",
            "[::1]:8083",
            "127.0.0.2",
            "LOCALHOST",
        ] {
            assert!(is_loopback_name(host_part(ok)), "{ok}");
        }
        for bad in [
            "evil.example:8083",
            "127.0.0.1.evil.example",
            "10.0.0.1:8083",
            "[::2]:1",
        ] {
            assert!(!is_loopback_name(host_part(bad)), "{bad}");
        }
    }

    #[test]
    fn a_credentials_file_reads_like_connects() {
        let path = std::env::temp_dir().join(format!("wharf-basic-{}", std::process::id()));
        std::fs::write(&path, "# users\nadmin: s3cret:with:colons\nops=pw\n").expect("write");
        let users = load_credentials(&path).expect("load");
        assert_eq!(users["admin"], "s3cret:with:colons");
        assert_eq!(users["ops"], "pw");
        std::fs::write(&path, "nobody\n").expect("write");
        assert!(load_credentials(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}

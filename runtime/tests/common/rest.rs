//! Talking to a running worker's REST API the way Connect tooling does
//! (plain HTTP with JSON), through curl.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The address the worker logged ("REST API listening on http://ADDR").
pub fn wait_for_address(log: &Path) -> String {
    wait_for_listener(log, "http")
}

/// The address after "REST API listening on SCHEME://".
pub fn wait_for_listener(log: &Path, scheme: &str) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(rest) = text
            .split(&format!("REST API listening on {scheme}://"))
            .nth(1)
        {
            let addr: String = rest
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"')
                .collect();
            return addr;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the worker never logged its REST address:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Api {
    pub base: String,
    pub token: Option<String>,
    /// CA certificate to trust (HTTPS).
    pub cacert: Option<std::path::PathBuf>,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: String,
}

impl Api {
    pub fn new(addr: &str) -> Self {
        Api {
            base: format!("http://{addr}"),
            token: None,
            cacert: None,
        }
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-D", "/dev/stderr", "-X", method])
            .arg(format!("{}{path}", self.base))
            .args(["--max-time", "60"]);
        if let Some(ca) = &self.cacert {
            cmd.arg("--cacert").arg(ca);
        }
        if let Some(t) = &self.token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(b) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary"])
                .arg(b.to_string());
        }
        let out = cmd.output().expect("run curl");
        assert!(
            out.status.success(),
            "curl {method} {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let headers = String::from_utf8_lossy(&out.stderr).to_string();
        let status = headers
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = if out.stdout.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stdout).to_string()))
        };
        Reply {
            status,
            body,
            headers,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None)
    }

    /// Polls until `check` holds on GET `path`, failing with the last body.
    pub fn wait_until(&self, path: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let r = self.get(path);
            if r.status == 200 && check(&r.body) {
                return r.body;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}; last answer {}: {}",
                r.status,
                r.body
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The connector's state and every task's state from a status body.
pub fn states(status: &Value) -> (String, Vec<String>) {
    let c = status["connector"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let t = status["tasks"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .map(|t| t["state"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    (c, t)
}

pub fn all_in(status: &Value, state: &str) -> bool {
    let (c, t) = states(status);
    c == state && !t.is_empty() && t.iter().all(|s| s == state)
}

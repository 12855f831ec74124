//! The REST API as a hostile caller tries it, against a real worker: each
//! attack is refused, and nothing changed (no connector created, no file
//! read, no secret value in any answer).

mod common;

use std::process::Command;

use common::rest::{wait_for_address, Api};
use common::{spawn_with_env, tempdir, wharf};
use serde_json::{json, Value};

const SECRET: &str = "s3cr3t-value-4242";

fn worker(dir: &std::path::Path, worker_yaml: &str) -> (common::Child, String) {
    std::fs::write(
        dir.join("worker.yaml"),
        format!("offset.storage.file.filename: offsets.json\n{worker_yaml}"),
    )
    .expect("worker.yaml");
    let child = spawn_with_env(
        dir,
        &["run", "--worker", "worker.yaml", "--progress", "0"],
        &[("WHARF_TEST_SECRET", SECRET), ("APP_TASKS", "2")],
    );
    let addr = wait_for_address(&dir.join("wharf.log"));
    (child, addr)
}

/// curl with raw headers; (status, body text).
fn curl(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .arg(format!("http://{addr}{path}"))
        .args(["--max-time", "30"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    if let Some(b) = body {
        cmd.args(["--data-binary", b]);
    }
    let out = cmd.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn no_connectors(api: &Api) {
    let r = api.get("/connectors");
    assert_eq!(r.body, json!([]), "a refused request created something");
}

fn validate(api: &Api, config: Value) -> Value {
    let r = api.call(
        "PUT",
        "/connector-plugins/datagen/config/validate",
        Some(&config),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

#[test]
fn config_providers_follow_the_operators_policy_and_never_echo_a_value() {
    let dir = tempdir("hostile-providers");
    std::fs::write(dir.join("ok.properties"), format!("pw={SECRET}\n")).expect("ok");
    let allowed = dir.join("allowed");
    std::fs::create_dir_all(&allowed).expect("allowed");
    std::fs::write(allowed.join("db.properties"), "tasks=3\n").expect("db");
    // Without config.providers, no reference resolves for a REST caller.
    let (child, addr) = worker(&dir, "");
    let api = Api::new(&addr);
    let config = json!({"connector.class": "datagen", "topic": "t", "tasks.max": "${env:WHARF_TEST_SECRET}"});
    let body = validate(&api, config.clone());
    let text = body.to_string();
    assert!(!text.contains(SECRET), "validate echoed the secret: {text}");
    assert!(text.contains("not enabled"), "{text}");
    let r = api.call(
        "POST",
        "/connectors",
        Some(&json!({"name": "env", "config": config})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.to_string().contains(SECRET));
    let r = api.call(
        "POST",
        "/connectors",
        Some(
            &json!({"name": "file", "config": {"connector.class": "datagen", "topic": "t",
            "seed": format!("${{file:{}:pw}}", dir.join("ok.properties").display())}}),
        ),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("seed"),
        "names the key: {}",
        r.body
    );
    assert!(!r.body.to_string().contains(SECRET));
    no_connectors(&api);
    drop(child);

    // With the providers named and limited, only what they allow resolves,
    // and an error on a key that held a reference quotes nothing.
    std::fs::rename(dir.join("wharf.log"), dir.join("wharf-none.log")).expect("log");
    let (child, addr) = worker(
        &dir,
        &format!(
            "config.providers: env,file\nconfig.providers.env.param.allowlist.pattern: 'APP_.*|WHARF_TEST_.*'\n\
             config.providers.file.param.allowed.paths: {}\n",
            allowed.display()
        ),
    );
    let api = Api::new(&addr);
    let text = validate(&api, config).to_string();
    assert!(!text.contains(SECRET), "validate echoed the secret: {text}");
    assert!(text.contains("invalid value"), "{text}");
    let outside = json!({"connector.class": "datagen", "topic": "t",
        "seed": format!("${{file:{}:pw}}", dir.join("ok.properties").display())});
    let text = validate(&api, outside).to_string();
    assert!(
        text.contains("outside config.providers.file.param.allowed.paths"),
        "{text}"
    );
    assert!(!text.contains(SECRET));
    let climbing = json!({"connector.class": "datagen", "topic": "t",
        "seed": format!("${{file:{}/../ok.properties:pw}}", allowed.display())});
    let text = validate(&api, climbing).to_string();
    assert!(text.contains("outside"), "'..' climbs out: {text}");
    let env_denied = json!({"connector.class": "datagen", "topic": "t", "seed": "${env:HOME}"});
    assert!(validate(&api, env_denied).to_string().contains("allowlist"));
    // What the policy allows works.
    let fine = json!({"name": "fine", "config": {"connector.class": "datagen", "topic": "t",
        "rate": "0", "max.records": "1", "tasks.max": "${env:APP_TASKS}",
        "seed": format!("${{file:{}/db.properties:tasks}}", allowed.display())}});
    let r = api.call("POST", "/connectors", Some(&fine));
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["config"]["tasks.max"], "[hidden]", "{}", r.body);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn browsers_and_wrong_hosts_cannot_drive_the_api() {
    let dir = tempdir("hostile-web");
    let (child, addr) = worker(&dir, "");
    let api = Api::new(&addr);
    let create = r#"{"name":"x","config":{"connector.class":"datagen","topic":"t"}}"#;
    // A "simple" cross-site form post skips the CORS preflight: refused.
    let (code, body) = curl(
        &addr,
        "POST",
        "/connectors",
        &["Content-Type: text/plain"],
        Some(create),
    );
    assert_eq!(code, 415, "{body}");
    let (code, _) = curl(
        &addr,
        "POST",
        "/connectors",
        &["Content-Type: application/x-www-form-urlencoded"],
        Some(create),
    );
    assert_eq!(code, 415);
    // DNS rebinding: a page's own name pointed at 127.0.0.1.
    let (code, body) = curl(
        &addr,
        "GET",
        "/connectors",
        &["Host: evil.example:8083"],
        None,
    );
    assert_eq!(code, 403, "{body}");
    // A page elsewhere posting JSON (it would need a preflight, but refuse anyway).
    let (code, body) = curl(
        &addr,
        "POST",
        "/connectors",
        &[
            "Content-Type: application/json",
            "Origin: http://evil.example",
        ],
        Some(create),
    );
    assert_eq!(code, 403, "{body}");
    // The API's own origin may.
    let own = format!("Origin: http://{addr}");
    let (code, body) = curl(
        &addr,
        "PUT",
        "/connector-plugins/datagen/config/validate",
        &["Content-Type: application/json", &own],
        Some(r#"{"connector.class":"datagen","topic":"t"}"#),
    );
    assert_eq!(code, 200, "{body}");
    // A body past the limit is refused unread.
    let big = format!(
        r#"{{"name":"big","config":{{"connector.class":"datagen","topic":"t","filler":"{}"}}}}"#,
        "x".repeat(2 << 20)
    );
    let path = dir.join("big.json");
    std::fs::write(&path, big).expect("big");
    let (code, _) = curl(
        &addr,
        "POST",
        "/connectors",
        &["Content-Type: application/json"],
        Some(&format!("@{}", path.display())),
    );
    assert_eq!(code, 413);
    // Client overrides that load code are refused whatever the policy.
    let r = api.call(
        "POST",
        "/connectors",
        Some(
            &json!({"name": "lib", "config": {"connector.class": "datagen", "topic": "t",
            "producer.override.plugin.library.paths": "/tmp/evil.so"}}),
        ),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["message"]
        .as_str()
        .unwrap_or("")
        .contains("plugin.library.paths"));
    no_connectors(&api);
    assert_eq!(api.get("/healthz").status, 200);
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn basic_auth_as_connects_extension_and_no_open_listener_without_it() {
    let dir = tempdir("hostile-auth");
    std::fs::write(dir.join("users.properties"), "admin: correct-horse\n").expect("users");
    let (child, addr) = worker(&dir, "rest.auth.basic.file: users.properties\n");
    let (code, _) = curl(&addr, "GET", "/connectors", &[], None);
    assert_eq!(code, 401);
    // admin:wrong, then admin:correct-horse
    let (code, _) = curl(
        &addr,
        "GET",
        "/connectors",
        &["Authorization: Basic YWRtaW46d3Jvbmc="],
        None,
    );
    assert_eq!(code, 401);
    let (code, body) = curl(
        &addr,
        "GET",
        "/connectors",
        &["Authorization: Basic YWRtaW46Y29ycmVjdC1ob3JzZQ=="],
        None,
    );
    assert_eq!(code, 200, "{body}");
    let (code, _) = curl(&addr, "GET", "/healthz", &[], None);
    assert_eq!(code, 200, "health needs no credentials");
    drop(child);

    // A listener other hosts can reach, with no credentials: refused.
    std::fs::write(dir.join("open.yaml"), "{}\n").expect("open");
    let out = wharf(
        &dir,
        &[
            "run",
            "--worker",
            "open.yaml",
            "--listen",
            "0.0.0.0:0",
            "--progress",
            "0",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rest.auth.none"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

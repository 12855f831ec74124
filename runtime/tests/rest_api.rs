//! The REST API against a real running worker and the real broker: every
//! endpoint with Kafka Connect's status codes and JSON shapes, the lifecycle
//! round trips (pause, resume, stop, restart), KIP-875 offsets for a source
//! and a sink, secrets redacted, /metrics and /healthz, bearer-token auth.

mod common;

use std::time::Duration;

use common::kafka::{bootstrap, unique_id};
use common::rest::{all_in, wait_for_address, wait_for_listener, Api};
use common::{lines, signal, spawn, tempdir, wait_for_lines};
use serde_json::{json, Value};

const PER_PARTITION: u64 = 500;

fn start_worker(dir: &std::path::Path, extra: &str) -> (common::Child, Api) {
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {}\n{extra}", bootstrap()),
    )
    .expect("worker.yaml");
    let child = spawn(dir, &["run", "--worker", "worker.yaml", "--progress", "0"]);
    let addr = wait_for_address(&dir.join("wharf.log"));
    (child, Api::new(&addr))
}

fn source_config(topic: &str) -> Value {
    json!({
        "connector.class": "datagen",
        "tasks.max": "1",
        "topic": topic,
        "partitions": 2,
        "rate": "0",
        "max.records": PER_PARTITION,
        "offset.flush.interval.ms": "200",
        "topic.creation.default.partitions": "2",
        "topic.creation.default.replication.factor": "1",
        "sasl.password": "hunter2",
    })
}

fn pause_then_resume(api: &Api, name: &str) {
    let status = format!("/connectors/{name}/status");
    for (verb, code, state) in [("pause", 202, "PAUSED"), ("resume", 202, "RUNNING")] {
        let r = api.call("PUT", &format!("/connectors/{name}/{verb}"), None);
        assert_eq!(r.status, code, "{verb} {name}: {}", r.body);
        api.wait_until(&status, &format!("{name} {state}"), |s| all_in(s, state));
    }
}

fn sum_sink_offsets(offsets: &Value) -> i64 {
    offsets["offsets"]
        .as_array()
        .map(|o| {
            o.iter()
                .map(|e| e["offset"]["kafka_offset"].as_i64().unwrap_or(0))
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn every_endpoint_answers_like_kafka_connect() {
    let dir = tempdir("rest");
    let id = unique_id(&dir);
    let (src, sink, topic) = (
        format!("src-{id}"),
        format!("sink-{id}"),
        format!("rest-{id}"),
    );
    let (mut child, api) = start_worker(&dir, "");
    let worker_id = api.base.trim_start_matches("http://").to_string();

    // Root, plugins, config definitions.
    let root = api.get("/");
    assert_eq!(root.status, 200);
    assert!(root.body["version"].is_string(), "{}", root.body);
    assert!(root.body["kafka_cluster_id"].is_string(), "{}", root.body);
    assert_eq!(api.get("/connectors").body, json!([]));
    let plugins = api.get("/connector-plugins").body;
    let has = |class: &str, ty: &str| {
        plugins
            .as_array()
            .is_some_and(|p| p.iter().any(|e| e["class"] == class && e["type"] == ty))
    };
    assert!(
        has("datagen", "source") && has("file-sink", "sink"),
        "{plugins}"
    );
    assert!(!plugins.to_string().contains("transformation"), "{plugins}");
    let all = api.get("/connector-plugins?connectorsOnly=false").body;
    assert!(all.to_string().contains("\"transformation\""), "{all}");
    let defs = api.get("/connector-plugins/datagen/config");
    assert_eq!(defs.status, 200);
    assert!(
        defs.body.as_array().is_some_and(|d| d
            .iter()
            .any(|k| k["name"] == "max.records" && k["type"] == "LONG")),
        "{}",
        defs.body
    );
    assert_eq!(
        api.get("/connector-plugins/no-such-plugin/config").status,
        404
    );

    // Validate: ConfigInfos with per-key errors, and a clean config.
    let mut bad = source_config(&topic);
    bad["name"] = json!("x");
    bad["tasks.max"] = json!("zero");
    bad["rate"] = json!("-5");
    let v = api.call(
        "PUT",
        "/connector-plugins/datagen/config/validate",
        Some(&bad),
    );
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(v.body["name"], "datagen");
    assert!(v.body["error_count"].as_u64() >= Some(2), "{}", v.body);
    let errors_of = |key: &str| -> Vec<Value> {
        v.body["configs"]
            .as_array()
            .and_then(|c| c.iter().find(|e| e["value"]["name"] == key))
            .and_then(|e| e["value"]["errors"].as_array().cloned())
            .unwrap_or_default()
    };
    assert!(
        !errors_of("tasks.max").is_empty() && !errors_of("rate").is_empty(),
        "{}",
        v.body
    );
    let mut good = source_config(&topic);
    good["name"] = json!("x");
    let v = api.call(
        "PUT",
        "/connector-plugins/datagen/config/validate",
        Some(&good),
    );
    assert_eq!(v.body["error_count"], 0, "{}", v.body);

    // Create: a bad config changes nothing; a good one answers 201.
    if let Some(m) = bad.as_object_mut() {
        m.remove("name");
    }
    let r = api.call(
        "POST",
        "/connectors",
        Some(&json!({"name": src, "config": bad})),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["error_code"], 400);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap_or("")
            .contains("tasks.max"),
        "{}",
        r.body
    );
    assert_eq!(api.get("/connectors").body, json!([]));
    let r = api.call("POST", "/connectors", Some(&json!({"config": {}})));
    assert_eq!(r.status, 400);
    assert_eq!(api.call("POST", "/connectors", None).status, 400);

    let r = api.call(
        "POST",
        "/connectors",
        Some(&json!({"name": src, "config": source_config(&topic)})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(
        r.headers
            .to_lowercase()
            .contains(&format!("location: /connectors/{src}")),
        "{}",
        r.headers
    );
    assert_eq!(r.body["name"], src.as_str());
    assert_eq!(r.body["type"], "source");
    assert_eq!(r.body["config"]["name"], src.as_str());
    assert_eq!(
        r.body["config"]["sasl.password"], "[hidden]",
        "secret echoed: {}",
        r.body
    );
    assert_eq!(r.body["tasks"], json!([{"connector": src, "task": 0}]));
    let again = api.call(
        "POST",
        "/connectors",
        Some(&json!({"name": src, "config": source_config(&topic)})),
    );
    assert_eq!(again.status, 409);
    assert_eq!(again.body["error_code"], 409);

    // The sink, created through PUT /config (201 when new).
    let sink_config = json!({
        "connector.class": "file-sink", "topics": topic, "file": "out.jsonl",
        "tasks.max": 1,
    });
    let r = api.call(
        "PUT",
        &format!("/connectors/{sink}/config"),
        Some(&sink_config),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["type"], "sink");
    let out = dir.join("out.jsonl");
    wait_for_lines(&out, 2 * PER_PARTITION as usize, Duration::from_secs(90));

    // Status, tasks, expand, info and config.
    let status = api.wait_until(
        &format!("/connectors/{src}/status"),
        "source RUNNING",
        |s| all_in(s, "RUNNING"),
    );
    assert_eq!(status["name"], src.as_str());
    assert_eq!(status["type"], "source");
    assert_eq!(status["connector"]["worker_id"], worker_id.as_str());
    assert_eq!(status["tasks"][0]["id"], 0);
    assert_eq!(status["tasks"][0]["worker_id"], worker_id.as_str());
    let task = api.get(&format!("/connectors/{src}/tasks/0/status"));
    assert_eq!(task.status, 200);
    assert_eq!(task.body["state"], "RUNNING");
    assert_eq!(
        api.get(&format!("/connectors/{src}/tasks/7/status")).status,
        404
    );
    let tasks = api.get(&format!("/connectors/{src}/tasks")).body;
    assert_eq!(
        tasks[0]["id"],
        json!({"connector": src, "task": 0}),
        "{tasks}"
    );
    assert_eq!(tasks[0]["config"]["sasl.password"], "[hidden]", "{tasks}");
    let expanded = api.get("/connectors?expand=status&expand=info").body;
    assert_eq!(
        expanded[&src]["status"]["connector"]["state"], "RUNNING",
        "{expanded}"
    );
    assert_eq!(expanded[&sink]["info"]["type"], "sink", "{expanded}");
    let names = api.get("/connectors").body;
    assert!(names.as_array().is_some_and(|n| n.len() == 2), "{names}");
    assert_eq!(
        api.get(&format!("/connectors/{src}")).body["type"],
        "source"
    );
    let cfg = api.get(&format!("/connectors/{src}/config")).body;
    assert_eq!(cfg["topic"], topic.as_str());
    assert_eq!(cfg["sasl.password"], "[hidden]");
    let missing = api.get("/connectors/no-such-connector/status");
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        json!({"error_code": 404, "message": "Connector no-such-connector not found"})
    );
    assert_eq!(api.get("/no/such/path").status, 404);
    assert_eq!(api.call("DELETE", "/connector-plugins", None).status, 405);

    // Offsets can only change on a STOPPED connector.
    let patch = json!({"offsets": [{"partition": {"partition": 0}, "offset": null}]});
    let r = api.call("PATCH", &format!("/connectors/{src}/offsets"), Some(&patch));
    assert_eq!(r.status, 400);
    assert!(
        r.body["message"].as_str().unwrap_or("").contains("STOPPED"),
        "{}",
        r.body
    );

    // Pause and resume the sink (closes and keeps its input), then the
    // source (keeps its plugin open): PAUSED everywhere, then RUNNING again.
    pause_then_resume(&api, &sink);
    pause_then_resume(&api, &src);

    // Restarts: the connector alone (204), with its tasks (202 + status), one task (204).
    assert_eq!(
        api.call("POST", &format!("/connectors/{sink}/restart"), None)
            .status,
        204
    );
    let r = api.call(
        "POST",
        &format!("/connectors/{sink}/restart?includeTasks=true&onlyFailed=false"),
        None,
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.body["name"], sink.as_str());
    assert_eq!(
        api.call("POST", &format!("/connectors/{sink}/tasks/0/restart"), None)
            .status,
        204
    );
    assert_eq!(
        api.call("POST", &format!("/connectors/{sink}/tasks/5/restart"), None)
            .status,
        404
    );
    api.wait_until(
        &format!("/connectors/{sink}/status"),
        "sink RUNNING after restarts",
        |s| all_in(s, "RUNNING"),
    );
    assert_eq!(
        api.call("POST", "/connectors/nope/restart", None).status,
        404
    );

    // Sink offsets (KIP-875): stop, read the group's positions, rewind to 0,
    // resume: every record is written a second time.
    assert_eq!(
        api.call("PUT", &format!("/connectors/{sink}/stop"), None)
            .status,
        204
    );
    let stopped = api.get(&format!("/connectors/{sink}/status")).body;
    assert_eq!(stopped["connector"]["state"], "STOPPED", "{stopped}");
    assert_eq!(stopped["tasks"], json!([]), "{stopped}");
    let offsets = api.get(&format!("/connectors/{sink}/offsets")).body;
    assert_eq!(
        sum_sink_offsets(&offsets),
        2 * PER_PARTITION as i64,
        "{offsets}"
    );
    let rewind: Vec<Value> = (0..2)
        .map(|p| json!({"partition": {"kafka_topic": topic, "kafka_partition": p}, "offset": {"kafka_offset": 0}}))
        .collect();
    let r = api.call(
        "PATCH",
        &format!("/connectors/{sink}/offsets"),
        Some(&json!({"offsets": rewind})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "The offsets for this connector have been altered successfully"
    );
    assert_eq!(
        sum_sink_offsets(&api.get(&format!("/connectors/{sink}/offsets")).body),
        0
    );
    let bad_patch =
        json!({"offsets": [{"partition": {"kafka_topic": topic}, "offset": {"kafka_offset": 1}}]});
    assert_eq!(
        api.call(
            "PATCH",
            &format!("/connectors/{sink}/offsets"),
            Some(&bad_patch)
        )
        .status,
        400
    );
    assert_eq!(
        api.call("PUT", &format!("/connectors/{sink}/resume"), None)
            .status,
        202
    );
    wait_for_lines(&out, 4 * PER_PARTITION as usize, Duration::from_secs(90));

    // Source offsets: stop, read both partitions, drop one, reset the rest;
    // resumed, the source starts again from the beginning.
    assert_eq!(
        api.call("PUT", &format!("/connectors/{src}/stop"), None)
            .status,
        204
    );
    let offsets = api.get(&format!("/connectors/{src}/offsets")).body;
    let entries = offsets["offsets"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "{offsets}");
    assert!(
        entries
            .iter()
            .all(|e| e["partition"]["partition"].is_number() && e["offset"].is_object()),
        "{offsets}"
    );
    let r = api.call("PATCH", &format!("/connectors/{src}/offsets"), Some(&patch));
    assert_eq!(r.status, 200, "{}", r.body);
    let left = api.get(&format!("/connectors/{src}/offsets")).body;
    assert_eq!(left["offsets"].as_array().map(Vec::len), Some(1), "{left}");
    let r = api.call("DELETE", &format!("/connectors/{src}/offsets"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "The offsets for this connector have been reset successfully"
    );
    assert_eq!(
        api.get(&format!("/connectors/{src}/offsets")).body,
        json!({"offsets": []})
    );
    assert_eq!(
        api.call("PUT", &format!("/connectors/{src}/resume"), None)
            .status,
        202
    );
    api.wait_until(
        &format!("/connectors/{src}/status"),
        "source RUNNING again",
        |s| all_in(s, "RUNNING"),
    );
    wait_for_lines(&out, 6 * PER_PARTITION as usize, Duration::from_secs(90));

    // Reconfigure (200 on an existing connector); a name mismatch is refused.
    let mut changed = sink_config.clone();
    changed["batch.max.records"] = json!("100");
    let r = api.call("PUT", &format!("/connectors/{sink}/config"), Some(&changed));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["config"]["batch.max.records"], "100");
    changed["name"] = json!("other");
    assert_eq!(
        api.call("PUT", &format!("/connectors/{sink}/config"), Some(&changed))
            .status,
        400
    );

    // Metrics and health. The sink's consumer lag comes with librdkafka's
    // statistics, every 5 s.
    let lag = format!("wharf_task_consumer_lag_records{{connector=\"{sink}\",task=\"0\"}}");
    let start = std::time::Instant::now();
    let text = loop {
        let metrics = api.get("/metrics");
        assert_eq!(metrics.status, 200);
        let text = metrics.body.as_str().unwrap_or_default().to_string();
        if text.contains(&lag) || start.elapsed() > Duration::from_secs(30) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for needle in [
        format!("wharf_task_records_out_total{{connector=\"{src}\",task=\"0\"}}"),
        format!("wharf_task_batch_latency_seconds_bucket{{connector=\"{sink}\",task=\"0\",le=\"+Inf\"}}"),
        format!("wharf_task_state{{connector=\"{src}\",task=\"0\",state=\"RUNNING\"}} 1"),
        "wharf_worker_connectors 2".to_string(),
        "wharf_worker_compile_cache_hits_total".to_string(),
        "wharf_task_offset_commit_age_seconds".to_string(),
        lag.clone(),
    ] {
        assert!(text.contains(&needle), "/metrics lacks {needle}:\n{text}");
    }
    let health = api.get("/healthz");
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "UP");

    // Delete: 204, then 404; the other connector keeps running.
    assert_eq!(
        api.call("DELETE", &format!("/connectors/{src}"), None)
            .status,
        204
    );
    assert_eq!(api.get(&format!("/connectors/{src}")).status, 404);
    assert_eq!(
        api.call("DELETE", &format!("/connectors/{src}"), None)
            .status,
        404
    );
    assert_eq!(api.get("/connectors").body, json!([sink]));

    signal(&child, "-TERM");
    let status = child.wait().expect("wait");
    assert!(status.success(), "worker exited with {status}");
    assert!(lines(&out) >= 6 * PER_PARTITION as usize);
}

#[test]
fn a_bearer_token_guards_everything_but_health() {
    let dir = tempdir("rest-auth");
    let (mut child, mut api) = start_worker(&dir, "rest.auth.token: s3cret-token\n");
    let r = api.get("/connectors");
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.body["error_code"], 401);
    assert_eq!(api.get("/healthz").status, 200);
    api.token = Some("wrong".into());
    assert_eq!(api.get("/connectors").status, 401);
    api.token = Some("s3cret-token".into());
    assert_eq!(api.get("/connectors").status, 200);
    signal(&child, "-TERM");
    child.wait().expect("wait");
}

#[test]
fn the_api_speaks_https_when_given_a_certificate() {
    let dir = tempdir("rest-tls");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(&dir)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::write(
        dir.join("worker.yaml"),
        "listeners: https://127.0.0.1:0\nrest.tls.certificate.file: cert.pem\nrest.tls.key.file: key.pem\n",
    )
    .expect("worker.yaml");
    // The listener comes from the worker config here, not WHARF_LISTEN.
    let mut child = common::Child(
        std::process::Command::new(common::WHARF)
            .args(["run", "--worker", "worker.yaml", "--progress", "0"])
            .current_dir(&dir)
            .env("WHARF_COMPILE_CACHE", dir.join("cache"))
            .env_remove("WHARF_LISTEN")
            .stderr(std::fs::File::create(dir.join("wharf.log")).expect("log"))
            .spawn()
            .expect("spawn"),
    );
    let addr = wait_for_listener(&dir.join("wharf.log"), "https");
    let mut api = Api::new(&addr);
    api.base = format!("https://{addr}");
    api.cacert = Some(dir.join("cert.pem"));
    let r = api.get("/connectors");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body, json!([]));
    // Plain HTTP to the HTTPS port gets no API.
    let plain = std::process::Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://{addr}/connectors"),
        ])
        .output()
        .expect("curl");
    assert!(!String::from_utf8_lossy(&plain.stdout).starts_with('['));
    signal(&child, "-TERM");
    child.wait().expect("wait");

    // A key that is not a key: a clear error, nothing listens.
    std::fs::write(dir.join("key.pem"), "not a key").expect("key");
    let out = std::process::Command::new(common::WHARF)
        .args(["run", "--worker", "worker.yaml", "--progress", "0"])
        .current_dir(&dir)
        .env("WHARF_COMPILE_CACHE", dir.join("cache"))
        .env_remove("WHARF_LISTEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rest.tls.key.file") && err.contains("key.pem"),
        "{err}"
    );
}

#[test]
fn yaml_in_a_watched_folder_is_applied_while_running() {
    let dir = tempdir("rest-watch");
    let conf = dir.join("conf.d");
    std::fs::create_dir_all(&conf).expect("conf.d");
    let mut child = spawn(&dir, &["run", "--watch", "conf.d", "--progress", "0"]);
    let api = Api::new(&wait_for_address(&dir.join("wharf.log")));
    let yaml = |rate: u32| {
        format!("name: watched\nconfig:\n  connector.class: datagen\n  topic: w\n  rate: {rate}\n")
    };
    std::fs::write(conf.join("gen.yaml"), yaml(10)).expect("write");
    api.wait_until("/connectors/watched/config", "the watched connector", |c| {
        c["rate"] == "10"
    });
    api.wait_until("/connectors/watched/status", "it running", |s| {
        all_in(s, "RUNNING")
    });
    std::fs::write(conf.join("gen.yaml"), yaml(20)).expect("write");
    api.wait_until("/connectors/watched/config", "the new rate", |c| {
        c["rate"] == "20"
    });
    // A broken file is reported and changes nothing.
    std::fs::write(
        conf.join("gen.yaml"),
        "name: watched\nconfig:\n  connector.class: datagen\n  rate: [\n",
    )
    .expect("write");
    let log = dir.join("wharf.log");
    let start = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("watched config not applied")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the broken file was not reported"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(api.get("/connectors/watched/config").body["rate"], "20");
    std::fs::remove_file(conf.join("gen.yaml")).expect("rm");
    api.wait_until("/connectors", "the connector deleted", |c| *c == json!([]));
    signal(&child, "-TERM");
    child.wait().expect("wait");
}

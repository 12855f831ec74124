//! A plugin that traps, spins, exhausts memory or reaches for a file or a
//! socket fails only its own task, quickly and with a clear reason, while a
//! healthy connector beside it keeps running.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wharf::config::parse;
use wharf::herder::Herder;
use wharf::offsets::FileOffsetStore;
use wharf::plugin::{PluginHost, TEST_PLUGIN_DIR};
use wharf::worker::{self, State};

/// Starts validated connectors on a worker without Kafka or REST.
async fn start(
    host: PluginHost,
    prepared: Vec<worker::Prepared>,
    offsets: wharf::offsets::OffsetStore,
) -> std::sync::Arc<Herder> {
    let herder = Herder::new(std::sync::Arc::new(host), offsets, None);
    herder.start_all(prepared).await.expect("start");
    herder
}

fn misbehaving(name: &str, mode: &str) -> String {
    misbehaving_with(name, mode, 600_000)
}

/// `backoff_ms`: the first automatic restart's delay (long: stays FAILED).
fn misbehaving_with(name: &str, mode: &str, backoff_ms: u64) -> String {
    format!(
        "name: {name}\nconfig:\n  connector.class: {TEST_PLUGIN_DIR}/wharf_misbehave.wasm\n  mode: {mode}\n  \
         plugin.call.timeout.ms: 1000\n  plugin.memory.max.bytes: 67108864\n  \
         task.restart.backoff.initial.ms: {backoff_ms}\n  task.restart.backoff.max.ms: {backoff_ms}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_misbehaviour_fails_only_its_task() {
    let dir = tempdir("isolation");
    let host = PluginHost::new(None).expect("engine");
    let mut configs = vec![parse(
        "name: healthy\nconfig:\n  connector.class: datagen\n  rate: 2000\n  topic: healthy\n",
        "healthy.yaml",
        None,
    )
    .expect("healthy config")];
    let cases = [
        ("trap", "trap", "trapped"),
        ("spin", "loop", "deadline"),
        ("hog", "oom", "out of memory"),
        ("reader", "open-file", "cannot open /etc/passwd"),
        ("dialer", "connect", "cannot connect to 127.0.0.1:9092"),
    ];
    for (name, mode, _) in cases {
        configs.push(parse(&misbehaving(name, mode), "bad.yaml", None).expect("config"));
    }
    let prepared = worker::prepare_all(&host, &configs)
        .await
        .expect("valid configs");
    let offsets = FileOffsetStore::open(&dir.join("offsets.json")).expect("offsets");
    let running = start(host, prepared, offsets.into()).await;
    let status = running.status_board().clone();

    let started = Instant::now();
    loop {
        let snap = status.snapshot();
        let failed = snap
            .iter()
            .filter(|(_, _, s, _)| s.state == State::Failed)
            .count();
        if failed == cases.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not all misbehaving tasks failed in time: {:?}",
            snap.iter()
                .map(|(c, _, s, _)| (c.clone(), s.clone()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (name, _, reason) in cases {
        let s = status.task(name, 0).expect("task registered");
        assert_eq!(s.state, State::Failed, "{name}");
        let trace = s.trace.unwrap_or_default();
        eprintln!("{name}: {trace}");
        assert!(
            trace.contains(reason),
            "{name}: trace '{trace}' should mention '{reason}'"
        );
    }
    // The healthy connector is still running and still producing.
    let healthy = |status: &worker::StatusBoard| {
        status
            .snapshot()
            .into_iter()
            .find(|(c, _, _, _)| c == "healthy")
            .map(|(_, _, s, k)| (s.state, k.records_out.load(Ordering::Relaxed)))
            .expect("healthy task")
    };
    let (state, before) = healthy(&status);
    assert_eq!(state, State::Running);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (state, after) = healthy(&status);
    assert_eq!(state, State::Running);
    assert!(
        after > before,
        "healthy connector stopped producing ({before} -> {after})"
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_granted_directory_is_the_only_one_visible() {
    let dir = tempdir("grant");
    std::fs::write(dir.join("in.jsonl"), "{\"a\":1}\n{\"a\":2}\n").expect("write input");
    let host = PluginHost::new(None).expect("engine");
    let source = parse(
        &format!(
            "name: reader\nconfig:\n  connector.class: file-source\n  file: {}/in.jsonl\n  topic: lines\n",
            dir.display()
        ),
        "r.yaml",
        None,
    )
    .expect("config");
    let sink = parse(
        &format!(
            "name: writer\nconfig:\n  connector.class: file-sink\n  topics: lines\n  file: {}/out.jsonl\n",
            dir.display()
        ),
        "w.yaml",
        None,
    )
    .expect("config");
    // The misbehaving plugin may not read a file in the directory granted to the others.
    let nosy = parse(
        &misbehaving("nosy", "open-file").replace(
            "mode: open-file",
            &format!("mode: open-file\n  path: {}/in.jsonl", dir.display()),
        ),
        "n.yaml",
        None,
    )
    .expect("config");
    let prepared = worker::prepare_all(&host, &[source, sink, nosy])
        .await
        .expect("valid");
    let running = start(
        host,
        prepared,
        FileOffsetStore::open(&dir.join("o.json"))
            .expect("offsets")
            .into(),
    )
    .await;
    let started = Instant::now();
    while std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
        < 2
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "file-sink never wrote the lines"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let nosy = running.status_board().task("nosy", 0).expect("nosy task");
    assert_eq!(nosy.state, State::Failed);
    let trace = nosy.trace.unwrap_or_default();
    assert!(
        trace.contains(&format!("cannot open {}/in.jsonl", dir.display())),
        "{trace}"
    );
    running.shutdown().await;
    assert_eq!(
        std::fs::read_to_string(dir.join("out.jsonl")).expect("out"),
        "{\"a\":1}\n{\"a\":2}\n"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let dir = tempdir("cache");
    let first = PluginHost::new(Some(dir.clone())).expect("engine");
    first.load("datagen").await.expect("load");
    assert_eq!(first.cache_hits(), (0, 1));
    let second = PluginHost::new(Some(dir.clone())).expect("engine");
    let p = second.load("datagen").await.expect("load");
    assert_eq!(second.cache_hits(), (1, 0), "a restart must not recompile");
    assert_eq!(p.info.name, "datagen");
}

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "wharf-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_restarts_itself_with_backoff() {
    let dir = tempdir("restart");
    let host = PluginHost::new(None).expect("engine");
    let config = parse(
        &misbehaving_with("crashy", "trap", 150),
        "crashy.yaml",
        None,
    )
    .expect("config");
    let prepared = worker::prepare_all(&host, &[config]).await.expect("valid");
    let offsets = FileOffsetStore::open(&dir.join("o.json")).expect("offsets");
    let running = start(host, prepared, offsets.into()).await;
    let started = Instant::now();
    let mut states = std::collections::BTreeSet::new();
    // The task flips between Failed and Running on its own, so keep the
    // trace seen while it was Failed rather than reading it at the end.
    let mut failed_trace: Option<String> = None;
    loop {
        let snap = running.status_board().snapshot();
        let (_, _, status, counters) = snap.first().expect("one task");
        states.insert(format!("{:?}", status.state));
        if status.trace.is_some() {
            failed_trace = status.trace.clone();
        }
        let restarts = counters.restarts.load(std::sync::atomic::Ordering::Relaxed);
        if restarts >= 3 && failed_trace.is_some() {
            let trace = failed_trace.unwrap_or_default();
            assert!(trace.contains("trap"), "{trace}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {restarts} restarts; states seen {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.shutdown().await;
}

//! Helpers shared by the tests that drive the `wharf` binary.
#![allow(dead_code)]

pub mod cdc;
pub mod kafka;
pub mod pg;
pub mod rest;
pub mod s3;
pub mod search;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const WHARF: &str = env!("CARGO_BIN_EXE_wharf");

pub fn tempdir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let d = std::env::temp_dir().join(format!("wharf-cli-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

pub fn wharf(dir: &Path, args: &[&str]) -> Output {
    Command::new(WHARF)
        .args(args)
        .current_dir(dir)
        .env("WHARF_COMPILE_CACHE", dir.join("cache"))
        // Tests run side by side: each worker's REST API on a free port.
        .env("WHARF_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run wharf")
}

/// A spawned `wharf` that is killed when dropped, so a test that fails
/// halfway never leaves workers running (and loading the machine).
pub struct Child(pub std::process::Child);

impl std::ops::Deref for Child {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Child {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

pub fn spawn(dir: &Path, args: &[&str]) -> Child {
    spawn_with_env(dir, args, &[])
}

/// `spawn` with extra environment, such as a finer `WHARF_LOG`.
pub fn spawn_with_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Child {
    Child(
        Command::new(WHARF)
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir)
            .env("WHARF_COMPILE_CACHE", dir.join("cache"))
            // Tests run side by side: each worker's REST API on a free port.
            .env("WHARF_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            // Kept for diagnosis: a failing test names this file.
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("wharf.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("spawn wharf"),
    )
}

/// (partition -> sequence numbers in file order) from the sink's output.
/// A last line without its newline is still being written, and is skipped.
pub fn read_output(path: &Path) -> std::collections::BTreeMap<u64, Vec<u64>> {
    let mut out = std::collections::BTreeMap::<u64, Vec<u64>>::new();
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    for line in whole.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let p = v["partition"].as_u64().expect("partition");
        out.entry(p)
            .or_default()
            .push(v["seq"].as_u64().expect("seq"));
    }
    out
}

pub fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

pub fn wait_for_lines(path: &Path, n: usize, limit: Duration) {
    let start = Instant::now();
    while lines(path) < n {
        assert!(
            start.elapsed() < limit,
            "only {} of {n} lines after {limit:?}",
            lines(path)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

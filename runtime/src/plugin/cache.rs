//! On-disk cache of compiled components, keyed by the wasm's sha256 and the
//! engine's compatibility hash, so a restart loads machine code instead of
//! recompiling. Only artifacts this worker wrote are ever deserialized.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use super::PluginError;

pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl CompileCache {
    /// `dir: None` disables the disk cache (every load compiles).
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CompileCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn load(&self, engine: &Engine, what: &str, wasm: &[u8]) -> Result<Component, PluginError> {
        let digest = hex::encode(Sha256::digest(wasm));
        let Some(dir) = &self.dir else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return compile(engine, what, wasm);
        };
        let path = dir.join(format!("{digest}-{}.cwasm", self.engine_key));
        if path.is_file() {
            // SAFETY: the file name carries the wasm's hash and this engine's
            // compatibility hash, and only `store` below writes into this
            // directory, so it holds an artifact this engine produced.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(c);
                }
                Err(e) => tracing::warn!(
                    plugin = what,
                    "ignoring unreadable compile cache entry {}: {e}",
                    path.display()
                ),
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        if compile_in_child(what, wasm, &path) {
            // SAFETY: written into this cache by a `wharf` child process with
            // this engine's configuration (its hash is in the file name).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => tracing::warn!(
                    plugin = what,
                    "compiled by a child process but unloadable ({e}); compiling here"
                ),
            }
        }
        let bytes = engine
            .precompile_component(wasm)
            .map_err(|e| PluginError::Compile {
                plugin: what.to_string(),
                reason: format!("{e:#}"),
            })?;
        let loaded = match store(&path, &bytes) {
            // Mapped from the file, the code pages are clean and shared
            // rather than a private copy of `bytes`.
            // SAFETY: written by `store` just above from this engine's output.
            Ok(()) => unsafe { Component::deserialize_file(engine, &path) },
            Err(e) => {
                tracing::warn!(
                    plugin = what,
                    "could not write compile cache {}: {e}",
                    path.display()
                );
                // SAFETY: produced by `precompile_component` on this engine just above.
                unsafe { Component::deserialize(engine, &bytes) }
            }
        };
        drop(bytes);
        release_freed_heap();
        loaded.map_err(|e| PluginError::Compile {
            plugin: what.to_string(),
            reason: format!("{e:#}"),
        })
    }
}

fn compile(engine: &Engine, what: &str, wasm: &[u8]) -> Result<Component, PluginError> {
    let compiled = Component::new(engine, wasm).map_err(|e| PluginError::Compile {
        plugin: what.to_string(),
        reason: format!("{e:#}"),
    });
    release_freed_heap();
    compiled
}

/// After an in-process compile (no child process possible): hand the
/// compiler's freed heap back to the system. It helps only partly (measured
/// on a CDC worker's cold start: 76 MiB peak without, 71 with; 44 when the
/// child process compiles), hence `compile_in_child`.
fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Compiles in a child `wharf` process when this is one (`wharf plugin
/// precompile`): compiling takes tens of MiB that malloc keeps after they are
/// freed (measured: +12 MiB resident for the worker's life, even after
/// `malloc_trim`), and a compiler crash cannot take the worker down. False
/// when that is not possible; the caller then compiles in process.
fn compile_in_child(what: &str, wasm: &[u8], out: &Path) -> bool {
    let Ok(exe) = std::env::current_exe() else {
        return false;
    };
    if exe.file_stem().and_then(|s| s.to_str()) != Some("wharf") {
        return false;
    }
    let input = out.with_extension(format!("wasm{}", std::process::id()));
    let written = input
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&input, wasm));
    if let Err(e) = written {
        tracing::debug!(
            plugin = what,
            "cannot hand the plugin to a compiler process: {e}"
        );
        return false;
    }
    let status = std::process::Command::new(&exe)
        .args(["plugin", "precompile"])
        .arg(&input)
        .arg(out)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status();
    let _ = std::fs::remove_file(&input);
    match status {
        Ok(s) if s.success() && out.is_file() => true,
        Ok(s) => {
            tracing::warn!(
                plugin = what,
                "compiler process ended with {s}; compiling here"
            );
            false
        }
        Err(e) => {
            tracing::warn!(
                plugin = what,
                "cannot start a compiler process ({e}); compiling here"
            );
            false
        }
    }
}

/// `wharf plugin precompile IN OUT`: compiles the component in `IN` with the
/// worker's engine configuration into the cache artifact `OUT`.
pub fn precompile_file(input: &Path, out: &Path) -> Result<(), PluginError> {
    let what = input.display().to_string();
    let wasm = std::fs::read(input).map_err(|source| PluginError::Read {
        plugin: what.clone(),
        path: input.to_path_buf(),
        source,
    })?;
    let engine = super::new_engine()?;
    let bytes = engine
        .precompile_component(&wasm)
        .map_err(|e| PluginError::Compile {
            plugin: what.clone(),
            reason: format!("{e:#}"),
        })?;
    store(out, &bytes).map_err(|e| PluginError::Compile {
        plugin: what,
        reason: format!("writing {}: {e}", out.display()),
    })
}

/// Atomic replace: a crash mid-write leaves no truncated artifact behind.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

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
        let bytes = engine
            .precompile_component(wasm)
            .map_err(|e| PluginError::Compile {
                plugin: what.to_string(),
                reason: format!("{e:#}"),
            })?;
        if let Err(e) = store(&path, &bytes) {
            tracing::warn!(
                plugin = what,
                "could not write compile cache {}: {e}",
                path.display()
            );
        }
        // SAFETY: `bytes` was produced by `precompile_component` on this engine just above.
        unsafe { Component::deserialize(engine, &bytes) }.map_err(|e| PluginError::Compile {
            plugin: what.to_string(),
            reason: format!("{e:#}"),
        })
    }
}

fn compile(engine: &Engine, what: &str, wasm: &[u8]) -> Result<Component, PluginError> {
    Component::new(engine, wasm).map_err(|e| PluginError::Compile {
        plugin: what.to_string(),
        reason: format!("{e:#}"),
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

//! `wharf plugin new` and `wharf plugin build`: a new connector is a plain
//! Rust crate on the guest SDK, built for wasm32-wasip2 (which emits a
//! component directly).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::Kind;

fn sdk_path() -> PathBuf {
    std::env::var_os("WHARF_SDK_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors/sdk"))
}

fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn body(kind: Kind, ty: &str, name: &str) -> String {
    let plugin = format!(
        "use wharf_sdk::{{Config, ConfigKey, Plugin, Record, Result}};\n\n\
         pub struct {ty} {{\n    topic: String,\n}}\n\n\
         impl Plugin for {ty} {{\n    const NAME: &'static str = \"{name}\";\n    const DESCRIPTION: &'static str = \"TODO: describe {name}\";\n\n    \
         fn config_spec() -> Vec<ConfigKey> {{\n        vec![ConfigKey::string(\"topic\").default(\"{name}\").non_empty().doc(\"Topic to use\")]\n    }}\n}}\n\n"
    );
    let imp = match kind {
        Kind::Source => format!(
            "impl wharf_sdk::Source for {ty} {{\n    fn open(config: &Config, _offsets: Vec<(String, String)>) -> Result<Self> {{\n        Ok({ty} {{ topic: config.string(\"topic\")? }})\n    }}\n\n    \
             fn poll(&mut self, _max: u32, out: &mut Vec<Record>) -> Result<()> {{\n        out.push(Record {{\n            topic: self.topic.clone(),\n            value: Some(b\"hello from {name}\".to_vec()),\n            source: Some((\"{{}}\".into(), \"{{}}\".into())),\n            ..Record::default()\n        }});\n        Ok(())\n    }}\n}}\n\nwharf_sdk::export_source!({ty});\n"
        ),
        Kind::Sink => format!(
            "impl wharf_sdk::Sink for {ty} {{\n    fn open(config: &Config) -> Result<Self> {{\n        Ok({ty} {{ topic: config.string(\"topic\")? }})\n    }}\n\n    \
             fn put(&mut self, records: Vec<Record>) -> Result<()> {{\n        wharf_sdk::counter_add(\"records\", records.len() as u64);\n        let _ = &self.topic;\n        Ok(())\n    }}\n}}\n\nwharf_sdk::export_sink!({ty});\n"
        ),
        Kind::Transform => format!(
            "impl wharf_sdk::Transform for {ty} {{\n    fn open(config: &Config) -> Result<Self> {{\n        Ok({ty} {{ topic: config.string(\"topic\")? }})\n    }}\n\n    \
             fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {{\n        for r in &mut records {{\n            r.topic = self.topic.clone();\n        }}\n        Ok(records)\n    }}\n}}\n\nwharf_sdk::export_transform!({ty});\n"
        ),
    };
    plugin + &imp
}

pub fn new_plugin(name: &str, kind: Kind, parent: &Path) -> anyhow::Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("plugin name '{name}' must be letters, digits, '-' or '_'");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let sdk = std::fs::canonicalize(sdk_path())
        .context("locating the wharf-sdk crate (set WHARF_SDK_PATH)")?;
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         # Built with `wharf plugin build`: a cdylib for wasm32-wasip2 is a component.\n\
         [lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\nwharf-sdk = {{ path = {:?} }}\n\n\
         [profile.release]\nopt-level = 3\nlto = true\npanic = \"abort\"\n\n[workspace]\n",
        sdk.display().to_string()
    );
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), body(kind, &type_name(name), name))?;
    println!(
        "created {} ({} plugin); build it with: wharf plugin build {}",
        dir.display(),
        kind_name(kind),
        dir.display()
    );
    Ok(())
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Source => "source",
        Kind::Sink => "sink",
        Kind::Transform => "transform",
    }
}

fn package_name(manifest: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(v) = line
                .strip_prefix("name")
                .map(str::trim)
                .and_then(|r| r.strip_prefix('='))
            {
                return Ok(v.trim().trim_matches('"').to_string());
            }
        }
    }
    bail!("{}: no [package] name", manifest.display())
}

/// Builds the crate in `dir` and returns the component's path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    let name = package_name(&manifest)?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .status()
        .context("running cargo (is Rust installed?)")?;
    if !status.success() {
        bail!(
            "cargo build failed for {} (is the target installed? rustup target add wasm32-wasip2)",
            dir.display()
        );
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dir.join("target"));
    let wasm = target
        .join("wasm32-wasip2/release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if !wasm.is_file() {
        bail!("cargo succeeded but {} is missing", wasm.display());
    }
    println!("{}", wasm.display());
    Ok(wasm)
}

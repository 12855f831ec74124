//! Capabilities a connector's config grants its plugin. Plugins see no files
//! by default; a connector gets the directories in `plugin.fs.dirs`, and one
//! with a `file` key (Connect's FileStream connectors) gets that file's
//! directory, with `file` made absolute so it means the same inside.
//!
//! Working out a grant touches nothing (`wharf validate` must not create
//! folders); `materialize` makes a granted folder exist when the connector
//! starts, so a sink writing `.wharf/quickstart/orders.jsonl` on a fresh
//! clone finds its folder.

use std::path::{Component, Path, PathBuf};

use crate::config::{ConfigError, ConnectorConfig};

pub fn filesystem(c: &ConnectorConfig) -> Result<(ConnectorConfig, Vec<PathBuf>), ConfigError> {
    let mut c = c.clone();
    let mut dirs = Vec::new();
    for d in c
        .get("plugin.fs.dirs")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let abs = std::fs::canonicalize(d)
            .map_err(|e| c.key_error("plugin.fs.dirs", format!("directory '{d}': {e}")))?;
        dirs.push(abs);
    }
    if let Some(file) = c
        .get("file")
        .filter(|f| !f.trim().is_empty())
        .map(str::to_string)
    {
        let path = Path::new(&file);
        let name = path
            .file_name()
            .ok_or_else(|| c.key_error("file", format!("'{file}' does not name a file")))?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let parent = resolve_dir(&parent)
            .map_err(|e| c.key_error("file", format!("directory of '{file}': {e}")))?;
        let absolute = parent.join(name).to_string_lossy().to_string();
        c.config.insert("file".into(), absolute);
        dirs.push(parent);
    }
    Ok((c, dirs))
}

/// The absolute, symlink-free form of a folder that may not exist yet: its
/// nearest existing ancestor canonicalized, plus the missing rest. The
/// missing part may not climb (`..`), so what is granted is what is named.
fn resolve_dir(dir: &Path) -> std::io::Result<PathBuf> {
    if let Ok(p) = std::fs::canonicalize(dir) {
        return if p.is_dir() {
            Ok(p)
        } else {
            Err(std::io::Error::other("not a directory"))
        };
    }
    let mut missing = Vec::new();
    let mut at = dir.to_path_buf();
    loop {
        let name = match at.components().next_back() {
            Some(Component::Normal(n)) => n.to_owned(),
            Some(Component::CurDir) => {
                at.pop();
                continue;
            }
            Some(Component::ParentDir) => {
                return Err(std::io::Error::other(
                    "'..' inside a folder that does not exist yet",
                ))
            }
            _ => return Err(std::io::Error::other("no existing folder above it")),
        };
        missing.push(name);
        at.pop();
        let base = if at.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            at.clone()
        };
        if let Ok(p) = std::fs::canonicalize(&base) {
            if !p.is_dir() {
                return Err(std::io::Error::other(format!(
                    "'{}' is not a directory",
                    base.display()
                )));
            }
            return Ok(missing.into_iter().rev().fold(p, |p, n| p.join(n)));
        }
    }
}

/// Makes every granted folder exist (a sink's output folder on first run),
/// and for a sink with a `file`, the file itself, each made durable in its
/// parent folder so a crash right after cannot lose the entry.
pub fn materialize(dirs: &[PathBuf], sink_file: Option<&str>) -> std::io::Result<()> {
    for d in dirs {
        if !d.exists() {
            create_dir_durably(d)?;
        }
    }
    if let Some(file) = sink_file.map(Path::new) {
        if !file.exists() {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)?
                .sync_all()?;
            if let Some(parent) = file.parent() {
                sync_dir(parent)?;
            }
        }
    }
    Ok(())
}

fn create_dir_durably(d: &Path) -> std::io::Result<()> {
    if let Some(parent) = d.parent() {
        if !parent.exists() {
            create_dir_durably(parent)?;
        }
    }
    match std::fs::create_dir(d) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match d.parent() {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

fn sync_dir(d: &Path) -> std::io::Result<()> {
    std::fs::File::open(d)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wharf-grants-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch");
        std::fs::canonicalize(&d).expect("canonical")
    }

    #[test]
    fn a_missing_folder_is_granted_by_name_and_created_only_when_materialized() {
        let base = scratch("missing");
        let target = base.join("a/b");
        let got = resolve_dir(&base.join("a/./b")).expect("resolve");
        assert_eq!(got, target);
        assert!(!target.exists(), "resolving created the folder");
        materialize(
            std::slice::from_ref(&got),
            Some(got.join("out.jsonl").to_str().unwrap()),
        )
        .expect("materialize");
        assert!(target.is_dir());
        assert!(target.join("out.jsonl").is_file());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_missing_folder_cannot_climb_out() {
        let base = scratch("climb");
        let e = resolve_dir(&base.join("new/../../etc")).expect_err("climbs");
        assert!(e.to_string().contains(".."), "{e}");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn a_file_in_place_of_a_folder_is_refused() {
        let base = scratch("file");
        std::fs::write(base.join("f"), b"x").expect("write");
        assert!(resolve_dir(&base.join("f")).is_err());
        assert!(resolve_dir(&base.join("f/sub")).is_err());
        let _ = std::fs::remove_dir_all(&base);
    }
}

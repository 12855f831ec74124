//! Capabilities a connector's config grants its plugin. Plugins see no files
//! by default; a connector gets the directories in `plugin.fs.dirs`, and one
//! with a `file` key (Connect's FileStream connectors) gets that file's
//! directory, with `file` made absolute so it means the same inside.

use std::path::{Path, PathBuf};

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
        let parent = std::fs::canonicalize(&parent)
            .map_err(|e| c.key_error("file", format!("directory of '{file}': {e}")))?;
        let absolute = parent.join(name).to_string_lossy().to_string();
        c.config.insert("file".into(), absolute);
        dirs.push(parent);
    }
    Ok((c, dirs))
}

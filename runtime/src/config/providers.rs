//! Config providers as the operator's policy (Connect's KIP-297 keys in the
//! worker config). YAML files named on the command line were written by the
//! operator and resolve `${env:..}` / `${file:..}` freely. A config that
//! arrives through the REST API (or the configs topic a REST write filled)
//! resolves only what the worker config allows:
//!
//! ```yaml
//! config.providers: env,file
//! config.providers.env.param.allowlist.pattern: ^APP_.*      # EnvVarConfigProvider's key
//! config.providers.file.param.allowed.paths: /etc/wharf/secrets   # KIP-993
//! ```
//!
//! Without `config.providers` a REST config may use no provider at all, so a
//! caller cannot read the worker's environment or files through a reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What references a config may resolve.
#[derive(Clone, Debug, Default)]
pub struct ProviderPolicy {
    /// Everything (configs the operator wrote).
    trusted: bool,
    /// `None`: `${env:..}` is not enabled.
    env: Option<EnvPolicy>,
    /// `None`: `${file:..}` is not enabled.
    file: Option<FilePolicy>,
}

#[derive(Clone, Debug)]
struct EnvPolicy {
    /// `None`: every variable (Connect's default pattern `.*`).
    allow: Option<regex_lite::Regex>,
    pattern: String,
}

#[derive(Clone, Debug)]
struct FilePolicy {
    /// `None`: any file the worker can read (Connect's default).
    allowed: Option<Vec<PathBuf>>,
}

impl ProviderPolicy {
    /// Configs the operator wrote (command-line files): no limits.
    pub fn trusted() -> Self {
        ProviderPolicy {
            trusted: true,
            ..ProviderPolicy::default()
        }
    }

    /// Reads Connect's `config.providers*` keys of a worker config. The
    /// error names the key.
    pub fn from_worker(map: &BTreeMap<String, String>) -> Result<Self, (String, String)> {
        let mut policy = ProviderPolicy::default();
        let Some(list) = map.get("config.providers") else {
            return Ok(policy);
        };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "env" => {
                    let key = "config.providers.env.param.allowlist.pattern";
                    let (allow, pattern) = match map.get(key).map(|p| p.trim()) {
                        None | Some("") => (None, ".*".to_string()),
                        Some(p) => {
                            // Java's Matcher.matches(): the whole name must match.
                            let anchored = format!("^(?:{p})$");
                            let re = regex_lite::Regex::new(&anchored)
                                .map_err(|e| (key.to_string(), format!("not a pattern: {e}")))?;
                            (Some(re), p.to_string())
                        }
                    };
                    policy.env = Some(EnvPolicy { allow, pattern });
                }
                "file" => {
                    let key = "config.providers.file.param.allowed.paths";
                    let allowed = match map.get(key) {
                        None => None,
                        Some(paths) => Some(
                            paths
                                .split(',')
                                .map(str::trim)
                                .filter(|p| !p.is_empty())
                                .map(|p| {
                                    std::fs::canonicalize(p)
                                        .map_err(|e| (key.to_string(), format!("'{p}': {e}")))
                                })
                                .collect::<Result<Vec<_>, _>>()?,
                        ),
                    };
                    policy.file = Some(FilePolicy { allowed });
                }
                other => {
                    return Err((
                        "config.providers".into(),
                        format!("'{other}' is not a provider Wharf has: use env, file"),
                    ))
                }
            }
        }
        Ok(policy)
    }

    /// May `${env:var}` be resolved?
    pub fn check_env(&self, var: &str) -> Result<(), String> {
        if self.trusted {
            return Ok(());
        }
        match &self.env {
            None => Err(not_enabled("env")),
            Some(EnvPolicy { allow: None, .. }) => Ok(()),
            Some(EnvPolicy {
                allow: Some(re),
                pattern,
            }) => {
                if re.is_match(var) {
                    Ok(())
                } else {
                    Err(format!(
                        "${{env:{var}}} is not allowed: the variable does not match config.providers.env.param.allowlist.pattern ({pattern})"
                    ))
                }
            }
        }
    }

    /// May the file at `path` be read for `${file:..}`?
    pub fn check_file(&self, path: &Path) -> Result<(), String> {
        if self.trusted {
            return Ok(());
        }
        let Some(file) = &self.file else {
            return Err(not_enabled("file"));
        };
        let Some(allowed) = &file.allowed else {
            return Ok(());
        };
        // Symlinks and `..` resolved first, so the check is on where it leads.
        let real = std::fs::canonicalize(path)
            .map_err(|e| format!("cannot read secrets file {}: {e}", path.display()))?;
        if allowed.iter().any(|dir| real.starts_with(dir)) {
            Ok(())
        } else {
            Err(format!(
                "secrets file {} is outside config.providers.file.param.allowed.paths",
                path.display()
            ))
        }
    }
}

fn not_enabled(provider: &str) -> String {
    format!(
        "config provider '{provider}' is not enabled for configs sent through the REST API (the worker config's config.providers must name it)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(pairs: &[(&str, &str)]) -> ProviderPolicy {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ProviderPolicy::from_worker(&map).expect("policy")
    }

    #[test]
    fn nothing_is_allowed_unless_the_operator_names_it() {
        let none = policy(&[]);
        assert!(none.check_env("HOME").unwrap_err().contains("not enabled"));
        assert!(none
            .check_file(Path::new("/etc/hostname"))
            .unwrap_err()
            .contains("not enabled"));
        assert!(ProviderPolicy::trusted().check_env("HOME").is_ok());
    }

    #[test]
    fn the_env_allowlist_matches_whole_names() {
        let p = policy(&[
            ("config.providers", "env"),
            ("config.providers.env.param.allowlist.pattern", "APP_.*"),
        ]);
        assert!(p.check_env("APP_DB_PASSWORD").is_ok());
        assert!(p.check_env("AWS_SECRET_ACCESS_KEY").is_err());
        assert!(p.check_env("X_APP_Y").is_err(), "anchored at the start");
        assert!(policy(&[("config.providers", "env")])
            .check_env("ANY")
            .is_ok());
    }

    #[test]
    fn files_only_inside_the_allowed_paths_even_through_dot_dot() {
        let dir = std::env::temp_dir().join(format!("wharf-providers-{}", std::process::id()));
        let ok = dir.join("secrets");
        std::fs::create_dir_all(&ok).expect("dir");
        std::fs::write(ok.join("db.properties"), "password=pw\n").expect("file");
        std::fs::write(dir.join("other.properties"), "password=pw\n").expect("file");
        let p = policy(&[
            ("config.providers", "file"),
            (
                "config.providers.file.param.allowed.paths",
                ok.to_str().expect("utf-8"),
            ),
        ]);
        assert!(p.check_file(&ok.join("db.properties")).is_ok());
        let e = p
            .check_file(&ok.join("../other.properties"))
            .expect_err("climbs out");
        assert!(e.contains("outside"), "{e}");
        assert!(p.check_file(Path::new("/etc/passwd")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_policies_name_their_key() {
        let map = [("config.providers".to_string(), "vault".to_string())]
            .into_iter()
            .collect();
        let (key, _) = ProviderPolicy::from_worker(&map).expect_err("unknown provider");
        assert_eq!(key, "config.providers");
        let map = [
            ("config.providers".to_string(), "env".to_string()),
            (
                "config.providers.env.param.allowlist.pattern".to_string(),
                "(".to_string(),
            ),
        ]
        .into_iter()
        .collect();
        let (key, _) = ProviderPolicy::from_worker(&map).expect_err("bad pattern");
        assert_eq!(key, "config.providers.env.param.allowlist.pattern");
    }
}

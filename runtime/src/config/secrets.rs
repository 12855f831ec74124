//! Connect-style config providers: `${env:VAR}` and `${file:path:key}` (a
//! properties file, as Kafka's FileConfigProvider reads).

use std::path::Path;

use super::providers::ProviderPolicy;

/// Replaces every `${provider:...}` in `value`; returns the result and whether
/// any secret was substituted. Errors are messages about this value.
/// `policy` says which references may resolve (configs from the API).
pub fn resolve(
    value: &str,
    base: Option<&Path>,
    policy: &ProviderPolicy,
) -> Result<(String, bool), String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    let mut any = false;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err("unterminated '${' reference".into());
        };
        let reference = &after[..end];
        out.push_str(&lookup(reference, base, policy)?);
        any = true;
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, any))
}

fn lookup(reference: &str, base: Option<&Path>, policy: &ProviderPolicy) -> Result<String, String> {
    match reference.split_once(':') {
        Some(("env", var)) => {
            policy.check_env(var)?;
            std::env::var(var).map_err(|_| {
                format!("environment variable '{var}' (from ${{env:{var}}}) is not set")
            })
        }
        Some(("file", spec)) => {
            let (path, key) = spec
                .rsplit_once(':')
                .ok_or_else(|| format!("'${{file:{spec}}}' needs the form ${{file:PATH:KEY}}"))?;
            let full = match base {
                Some(b) if Path::new(path).is_relative() => b.join(path),
                _ => Path::new(path).to_path_buf(),
            };
            policy.check_file(&full)?;
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read secrets file {}: {e}", full.display()))?;
            properties_value(&text, key)
                .ok_or_else(|| format!("key '{key}' not found in secrets file {}", full.display()))
        }
        _ => Err(format!(
            "unknown config provider in '${{{reference}}}': use ${{env:VAR}} or ${{file:PATH:KEY}}"
        )),
    }
}

fn properties_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .filter_map(|l| {
            let i = l.find(['=', ':'])?;
            Some((l[..i].trim(), l[i + 1..].trim()))
        })
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_provider_reads_properties() {
        let trusted = ProviderPolicy::trusted();
        let dir = std::env::temp_dir().join(format!("wharf-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("db.properties"),
            "# c\nuser=cdc\npassword = pw:1\n",
        )
        .unwrap();
        let (v, secret) = resolve("${file:db.properties:password}", Some(&dir), &trusted).unwrap();
        assert_eq!((v.as_str(), secret), ("pw:1", true));
        assert!(resolve("${file:db.properties:nope}", Some(&dir), &trusted)
            .unwrap_err()
            .contains("'nope'"));
        assert!(resolve("${vault:x}", None, &trusted)
            .unwrap_err()
            .contains("unknown config provider"));
        assert_eq!(
            resolve("plain", None, &trusted).unwrap(),
            ("plain".to_string(), false)
        );
    }
}

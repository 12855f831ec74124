//! `wharf plugin inspect` and `wharf plugin list`.

use std::path::PathBuf;

use wharf::plugin::{world_name as world, ConfigKey, PluginHost, Validator};

fn describe_key(k: &ConfigKey) -> String {
    let default = k
        .default_value
        .as_deref()
        .map_or("(required)".to_string(), |d| format!("default '{d}'"));
    let checks: Vec<String> = k
        .validators
        .iter()
        .map(|v| match v {
            Validator::Range((a, b)) => format!(
                "range [{}, {}]",
                a.map_or("-inf".into(), |x| x.to_string()),
                b.map_or("+inf".into(), |x| x.to_string())
            ),
            Validator::OneOf(xs) => format!("one of {}", xs.join("|")),
            Validator::NonEmpty => "non-empty".into(),
        })
        .collect();
    format!(
        "  {:<28} {:<9} {:<22} {:<7} {}{}",
        k.name,
        format!("{:?}", k.type_).to_lowercase(),
        default,
        format!("{:?}", k.importance).to_lowercase(),
        k.documentation,
        if checks.is_empty() {
            String::new()
        } else {
            format!(" [{}]", checks.join("; "))
        }
    )
}

pub async fn inspect(file: &str, cache: Option<PathBuf>) -> anyhow::Result<()> {
    let host = PluginHost::new(cache)?;
    let p = host.load(file).await?;
    println!("plugin:      {}", p.info.name);
    println!("version:     {}", p.info.version);
    println!("world:       wharf:connector/{}@0.1.0", world(p.kind()));
    println!("description: {}", p.info.description);
    println!("config:");
    for k in &p.spec {
        println!("{}", describe_key(k));
    }
    Ok(())
}

pub async fn list(cache: Option<PathBuf>) -> anyhow::Result<()> {
    let host = PluginHost::new(cache)?;
    for name in PluginHost::builtin_names() {
        let p = host.load(name).await?;
        println!(
            "{:<16} {:<10} {}",
            name,
            world(p.kind()),
            p.info.description
        );
    }
    Ok(())
}

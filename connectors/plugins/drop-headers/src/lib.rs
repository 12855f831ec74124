//! `drop-headers`: Kafka Connect's DropHeaders: removes every header whose
//! name is in `headers`.

use wharf_sdk::{Config, ConfigKey, Importance, Plugin, Record, Result, Transform};

pub struct DropHeaders {
    headers: Vec<String>,
}

impl Plugin for DropHeaders {
    const NAME: &'static str = "drop-headers";
    const DESCRIPTION: &'static str = "Removes headers by name (Connect's DropHeaders)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![ConfigKey::list("headers")
            .non_empty()
            .importance(Importance::High)
            .doc("Names of the headers to remove")]
    }
}

impl Transform for DropHeaders {
    fn open(config: &Config) -> Result<Self> {
        Ok(DropHeaders {
            headers: config.list("headers"),
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            r.headers.retain(|(k, _)| !self.headers.contains(k));
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(DropHeaders);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_every_header_of_the_names() {
        let config = Config::from_pairs([("headers".to_string(), "a, b".to_string())]);
        let mut t = DropHeaders::open(&config).expect("open");
        let h = |k: &str| (k.to_string(), b"v".to_vec());
        let r = Record {
            topic: "t".into(),
            headers: vec![h("a"), h("c"), h("a"), h("b")],
            ..Record::default()
        };
        assert_eq!(t.apply(vec![r]).expect("apply")[0].headers, vec![h("c")]);
        assert_eq!(DropHeaders::validate(&Config::default())[0].key, "headers");
    }
}

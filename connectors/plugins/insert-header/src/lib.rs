//! `insert-header`: Kafka Connect's InsertHeader: adds the header `header`
//! with the literal `value.literal` to every record (headers of that name
//! already there stay, as in Connect).

use wharf_sdk::{Config, ConfigKey, Importance, Plugin, Record, Result, Transform};

pub struct InsertHeader {
    header: String,
    value: Vec<u8>,
}

impl Plugin for InsertHeader {
    const NAME: &'static str = "insert-header";
    const DESCRIPTION: &'static str = "Adds a header with a literal value (Connect's InsertHeader)";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("header")
                .importance(Importance::High)
                .doc("The header's name"),
            ConfigKey::string("value.literal")
                .importance(Importance::High)
                .doc("The header's value on every record"),
        ]
    }
}

impl Transform for InsertHeader {
    fn open(config: &Config) -> Result<Self> {
        Ok(InsertHeader {
            header: config.string("header")?,
            value: config.string("value.literal")?.into_bytes(),
        })
    }

    fn apply(&mut self, mut records: Vec<Record>) -> Result<Vec<Record>> {
        for r in &mut records {
            r.headers.push((self.header.clone(), self.value.clone()));
        }
        Ok(records)
    }
}

wharf_sdk::export_transform!(InsertHeader);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_header_to_every_record() {
        let config = Config::from_pairs([
            ("header".to_string(), "source".to_string()),
            ("value.literal".to_string(), "wharf".to_string()),
        ]);
        let mut t = InsertHeader::open(&config).expect("open");
        let out = t
            .apply(vec![Record::default(), Record::default()])
            .expect("apply");
        assert!(out
            .iter()
            .all(|r| r.headers == [("source".to_string(), b"wharf".to_vec())]));
        let missing = InsertHeader::validate(&Config::default());
        let keys: Vec<&str> = missing.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["header", "value.literal"]);
    }
}

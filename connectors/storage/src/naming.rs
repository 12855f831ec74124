//! Object names as Confluent's S3 sink writes them:
//! `<topics.dir>/<topic>/<encoded partition>/<topic>+<kafka partition>+<start offset>.<ext>`
//! with the start offset zero-padded to 10 digits. Wharf's companions for
//! keys and headers add `.keys` / `.headers` before the extension.

/// Which of a file's objects a key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    Values,
    Keys,
    Headers,
}

impl Part {
    fn infix(self) -> &'static str {
        match self {
            Part::Values => "",
            Part::Keys => ".keys",
            Part::Headers => ".headers",
        }
    }
}

/// The parsed name of a file's object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileName {
    /// Everything before the file name, ending in `/` (or empty).
    pub dir: String,
    pub topic: String,
    pub partition: i32,
    pub start_offset: i64,
    pub part: Part,
    /// The extension, with its leading dot (`.json.gz`).
    pub extension: String,
}

impl FileName {
    pub fn key(&self) -> String {
        format!(
            "{}{}+{}+{:010}{}{}",
            self.dir,
            self.topic,
            self.partition,
            self.start_offset,
            self.part.infix(),
            self.extension
        )
    }

    /// The same file's object for another part.
    pub fn with_part(&self, part: Part) -> FileName {
        FileName {
            part,
            ..self.clone()
        }
    }

    /// Parses an object key; `None` for keys that are not such files.
    pub fn parse(key: &str) -> Option<FileName> {
        let (dir, name) = match key.rfind('/') {
            Some(i) => (&key[..=i], &key[i + 1..]),
            None => ("", key),
        };
        // Topics may hold '+'? Kafka topic names cannot: [a-zA-Z0-9._-].
        let mut fields = name.splitn(3, '+');
        let topic = fields.next()?;
        let partition = fields.next()?.parse::<i32>().ok()?;
        let rest = fields.next()?;
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let start_offset = rest[..digits].parse::<i64>().ok()?;
        let mut ext = &rest[digits..];
        let part = if let Some(e) = ext.strip_prefix(".keys") {
            ext = e;
            Part::Keys
        } else if let Some(e) = ext.strip_prefix(".headers") {
            ext = e;
            Part::Headers
        } else {
            Part::Values
        };
        if topic.is_empty() || !ext.starts_with('.') || partition < 0 {
            return None;
        }
        Some(FileName {
            dir: dir.to_string(),
            topic: topic.to_string(),
            partition,
            start_offset,
            part,
            extension: ext.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_confluent_writes_them() {
        let f = FileName {
            dir: "topics/orders/partition=3/".into(),
            topic: "orders".into(),
            partition: 3,
            start_offset: 4200,
            part: Part::Values,
            extension: ".json.gz".into(),
        };
        assert_eq!(
            f.key(),
            "topics/orders/partition=3/orders+3+0000004200.json.gz"
        );
        assert_eq!(FileName::parse(&f.key()), Some(f.clone()));
        let k = f.with_part(Part::Keys);
        assert_eq!(
            k.key(),
            "topics/orders/partition=3/orders+3+0000004200.keys.json.gz"
        );
        assert_eq!(FileName::parse(&k.key()), Some(k));
        assert_eq!(FileName::parse("topics/orders/readme.txt"), None);
        assert_eq!(FileName::parse("topics/x/a+b+1.json"), None);
    }
}

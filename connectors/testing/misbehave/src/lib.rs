//! A source that misbehaves on purpose, for the host's isolation tests. With
//! `mode` = ok it emits sequence numbers; otherwise its first poll traps,
//! spins forever, allocates without bound, or reaches for a file or socket.

use wharf_sdk::{Config, ConfigKey, Error, Plugin, Record, Result, Source};

pub struct Misbehave {
    mode: String,
    topic: String,
    path: String,
    seq: u64,
    hoard: Vec<Vec<u8>>,
}

impl Plugin for Misbehave {
    const NAME: &'static str = "misbehave";
    const DESCRIPTION: &'static str =
        "Test source that traps, loops, exhausts memory or escapes its sandbox";

    fn config_spec() -> Vec<ConfigKey> {
        vec![
            ConfigKey::string("mode")
                .default("ok")
                .one_of(&["ok", "trap", "loop", "oom", "open-file", "connect", "print"])
                .doc("How to misbehave on the first poll"),
            ConfigKey::string("topic")
                .default("misbehave")
                .doc("Topic for records"),
            ConfigKey::string("path")
                .default("/etc/passwd")
                .doc("File open-file tries to read"),
        ]
    }
}

impl Source for Misbehave {
    fn open(config: &Config, _offsets: Vec<(String, String)>) -> Result<Self> {
        Ok(Misbehave {
            mode: config.string("mode")?,
            topic: config.string("topic")?,
            path: config.string("path")?,
            seq: 0,
            hoard: Vec::new(),
        })
    }

    fn poll(&mut self, _max: u32, out: &mut Vec<Record>) -> Result<()> {
        match self.mode.as_str() {
            "trap" => panic!("misbehave: deliberate trap"),
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "oom" => loop {
                self.hoard.push(vec![1u8; 16 << 20]);
            },
            "open-file" => {
                let path = &self.path;
                match std::fs::read(path) {
                    Ok(b) => {
                        return Err(Error::Fatal(format!(
                            "sandbox escape: read {} bytes of {path}",
                            b.len()
                        )))
                    }
                    Err(e) => return Err(Error::Fatal(format!("cannot open {path}: {e}"))),
                }
            }
            "connect" => match std::net::TcpStream::connect("127.0.0.1:9092") {
                Ok(_) => {
                    return Err(Error::Fatal(
                        "sandbox escape: connected to 127.0.0.1:9092".into(),
                    ))
                }
                Err(e) => {
                    return Err(Error::Fatal(format!(
                        "cannot connect to 127.0.0.1:9092: {e}"
                    )))
                }
            },
            "print" => {
                println!("misbehave says hello on stdout");
                eprintln!("misbehave says hello on stderr");
            }
            _ => {}
        }
        self.seq += 1;
        out.push(Record {
            topic: self.topic.clone(),
            value: Some(format!("{{\"seq\":{}}}", self.seq).into_bytes()),
            source: Some(("{\"p\":0}".into(), format!("{{\"seq\":{}}}", self.seq))),
            ..Record::default()
        });
        Ok(())
    }
}

wharf_sdk::export_source!(Misbehave);

//! The three readers of one slot each: Wharf's `postgres-cdc` (the release
//! `wharf` binary), Debezium's Postgres connector on Kafka Connect
//! standalone, and `pg_recvlogical` writing pgoutput to a pipe.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub const BOOTSTRAP: &str = "127.0.0.1:9092";

/// A running engine and where it writes.
pub struct Engine {
    pub name: &'static str,
    pub child: Child,
}

impl Drop for Engine {
    // A bench that fails midway must not leave a connector running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Engine {
    /// Whether the process has exited (a crash, a refused config).
    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Peak resident memory so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        peak_rss_mib(self.child.id())
    }

    /// Starts the peak over from now (`clear_refs` 5 resets VmHWM): the
    /// peak is then what capturing needs, not start-up (Wharf compiles a new
    /// plugin version once, the JVM loads its classes).
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// SIGINT, then SIGKILL if it has not stopped in 30 s.
    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<Stdio> {
    let f = std::fs::File::create(dir.join(name)).context("log file")?;
    Ok(Stdio::from(f))
}

/// Settings both connectors share: the slot and publication made by the
/// bench, no snapshot, the captured schema.
pub struct Capture<'a> {
    pub slot: &'a str,
    pub publication: &'a str,
    pub schema: &'a str,
    pub prefix: &'a str,
}

pub fn wharf(bin: &Path, dir: &Path, c: &Capture<'_>) -> anyhow::Result<Engine> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("worker.yaml"),
        format!("bootstrap.servers: {BOOTSTRAP}\n"),
    )?;
    std::fs::write(
        dir.join("cdc.yaml"),
        format!(
            "name: {prefix}\nconfig:\n  connector.class: postgres-cdc\n  topic.prefix: {prefix}\n  \
             database.hostname: 127.0.0.1\n  database.port: 5432\n  database.user: cdc\n  \
             database.password: cdc\n  database.dbname: shop\n  slot.name: {slot}\n  \
             publication.name: {publication}\n  publication.autocreate.mode: disabled\n  \
             table.include.list: '{schema}\\..*'\n  snapshot.mode: no_data\n",
            prefix = c.prefix,
            slot = c.slot,
            publication = c.publication,
            schema = c.schema,
        ),
    )?;
    let child = Command::new(bin)
        .env("WHARF_LISTEN", "127.0.0.1:0")
        .args([
            "run",
            "--worker",
            "worker.yaml",
            "--offsets",
            "offsets.json",
            "--progress",
            "0",
            "cdc.yaml",
        ])
        .current_dir(dir)
        .env("WHARF_COMPILE_CACHE", dir.join("cache"))
        .stdout(Stdio::null())
        .stderr(log_file(dir, "wharf.log")?)
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    Ok(Engine {
        name: "Wharf postgres-cdc",
        child,
    })
}

pub fn debezium(java: &Path, lib: &Path, dir: &Path, c: &Capture<'_>) -> anyhow::Result<Engine> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("worker.properties"),
        format!(
            "bootstrap.servers={BOOTSTRAP}\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n\
             key.converter.schemas.enable=false\nvalue.converter.schemas.enable=false\n\
             offset.storage.file.filename={}\noffset.flush.interval.ms=1000\n\
             plugin.discovery=service_load\nlisteners=http://127.0.0.1:0\n",
            dir.join("offsets").display()
        ),
    )?;
    std::fs::write(
        dir.join("connector.properties"),
        format!(
            "name={prefix}\nconnector.class=io.debezium.connector.postgresql.PostgresConnector\n\
             plugin.name=pgoutput\ndatabase.hostname=127.0.0.1\ndatabase.port=5432\n\
             database.user=cdc\ndatabase.password=cdc\ndatabase.dbname=shop\n\
             topic.prefix={prefix}\nslot.name={slot}\npublication.name={publication}\n\
             publication.autocreate.mode=disabled\ntable.include.list={schema}\\\\..*\n\
             snapshot.mode=no_data\n",
            prefix = c.prefix,
            slot = c.slot,
            publication = c.publication,
            schema = c.schema,
        ),
    )?;
    std::fs::write(
        dir.join("log4j2.properties"),
        "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=OUT\nappender.out.type=Console\n\
         appender.out.name=OUT\nappender.out.layout.type=PatternLayout\n\
         appender.out.layout.pattern=[%d] %p %m (%c)%n\n",
    )?;
    let child = Command::new(java)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ))
        .arg("-cp")
        .arg(format!("{}/*", lib.display()))
        .arg("org.apache.kafka.connect.cli.ConnectStandalone")
        .arg(dir.join("worker.properties"))
        .arg(dir.join("connector.properties"))
        .current_dir(dir)
        .stdout(log_file(dir, "connect.log")?)
        .stderr(log_file(dir, "connect.err")?)
        .spawn()
        .with_context(|| format!("running {}", java.display()))?;
    Ok(Engine {
        name: "Debezium 3.4 on Connect 4.3.1",
        child,
    })
}

/// pg_recvlogical from `slot` into a pipe: seconds from its first byte to
/// its last (the stream is over once it has been quiet for 2 s), and bytes.
pub fn pg_recvlogical(slot: &str, publication: &str) -> anyhow::Result<(f64, u64)> {
    let bin = PathBuf::from("/usr/lib/postgresql/15/bin/pg_recvlogical");
    let mut child = Command::new(&bin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "cdc",
            "-d",
            "shop",
            "--slot",
            slot,
            "--start",
            "--no-loop",
            "-o",
            "proto_version=1",
            "-o",
            &format!("publication_names={publication}"),
            "-f",
            "-",
        ])
        .env("PGPASSWORD", "cdc")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", bin.display()))?;
    let mut out = child.stdout.take().context("pipe")?;
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, usize)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send((Instant::now(), n)).is_err() {
                break;
            }
        }
    });
    let (mut first, mut last, mut bytes) = (None, None, 0u64);
    let wait = |started: bool| Duration::from_secs(if started { 2 } else { 30 });
    while let Ok((t, n)) = rx.recv_timeout(wait(first.is_some())) {
        first.get_or_insert(t);
        last = Some(t);
        bytes += n as u64;
    }
    let _ = child.kill();
    let _ = child.wait();
    let secs = match (first, last) {
        (Some(f), Some(l)) => (l - f).as_secs_f64(),
        _ => anyhow::bail!("pg_recvlogical delivered nothing"),
    };
    Ok((secs, bytes))
}

//! The `postgres` capability a CDC source imports: per task, one query
//! connection (tokio-postgres) for catalogs and snapshot reads, and one
//! logical replication connection (`wire`) for the slot and its stream.
//! Both reach only the database the connector's config names.

pub mod wire;

use std::time::{Duration, Instant};

use tokio_postgres::{NoTls, SimpleQueryMessage};

use super::bindings::postgres as wit;
use super::bindings::types::PluginError;
use super::state::HostState;
use wire::{ReplConnection, ReplStream, WalEvent};

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{0}")]
    Io(String),
    #[error("authentication: {0}")]
    Auth(String),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("server error {code}: {message}")]
    Server { code: String, message: String },
}

impl PgError {
    /// Lost connections, shutdowns and a slot still held by a dying
    /// predecessor pass with time; refusals and missing objects do not.
    fn retriable(&self) -> bool {
        match self {
            PgError::Io(_) => true,
            PgError::Auth(_) | PgError::Protocol(_) => false,
            PgError::Server { code, .. } => {
                code.starts_with("08")
                    || code.starts_with("57P")
                    || code.starts_with("53")
                    || code == "55006"
                    || code == "40001"
            }
        }
    }

    fn into_plugin(self, what: &str) -> PluginError {
        let message = format!("{what}: {self}");
        if self.retriable() {
            PluginError::Retriable(message)
        } else {
            PluginError::Fatal(message)
        }
    }
}

/// The database a connector's config grants, through Debezium's keys.
#[derive(Clone, PartialEq, Eq)]
pub struct PgGrant {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub dbname: String,
    pub connect_timeout: Duration,
}

impl std::fmt::Debug for PgGrant {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGrant")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .finish_non_exhaustive()
    }
}

impl PgGrant {
    /// The grant a config asks for, if it names `database.hostname`.
    /// Errors are (key, message).
    pub fn from_config(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, (&'static str, String)> {
        let Some(host) = get("database.hostname").filter(|h| !h.trim().is_empty()) else {
            return Ok(None);
        };
        let port = match get("database.port") {
            None => 5432,
            Some(p) => p
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(("database.port", format!("'{p}' is not a TCP port")))?,
        };
        let user = get("database.user")
            .filter(|u| !u.trim().is_empty())
            .ok_or(("database.user", "required with database.hostname".into()))?;
        let dbname = get("database.dbname")
            .filter(|d| !d.trim().is_empty())
            .ok_or(("database.dbname", "required with database.hostname".into()))?;
        let connect_timeout = match get("database.connect.timeout.ms") {
            None => Duration::from_secs(30),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or((
                    "database.connect.timeout.ms",
                    format!("'{v}' is not a positive number of milliseconds"),
                ))?,
        };
        Ok(Some(PgGrant {
            host: host.trim().to_string(),
            port,
            user: user.trim().to_string(),
            password: get("database.password"),
            dbname: dbname.trim().to_string(),
            connect_timeout,
        }))
    }
}

/// One task's connections, opened on first use.
pub struct PgClient {
    grant: PgGrant,
    application: String,
    query: Option<(tokio_postgres::Client, tokio::task::JoinHandle<()>)>,
    repl: Option<ReplConnection>,
    stream: Option<ReplStream>,
    /// A stream failure held back while the events before it are delivered.
    failure: Option<PgError>,
}

impl Drop for PgClient {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.query {
            task.abort();
        }
    }
}

impl PgClient {
    pub fn new(grant: PgGrant, application: String) -> Self {
        PgClient {
            grant,
            application,
            query: None,
            repl: None,
            stream: None,
            failure: None,
        }
    }

    async fn query_client(&mut self) -> Result<&tokio_postgres::Client, PgError> {
        let broken = self.query.as_ref().is_some_and(|(c, _)| c.is_closed());
        if broken {
            self.query = None;
        }
        if self.query.is_none() {
            let g = &self.grant;
            let mut cfg = tokio_postgres::Config::new();
            cfg.host(&g.host)
                .port(g.port)
                .user(&g.user)
                .dbname(&g.dbname)
                .application_name(&self.application)
                .connect_timeout(g.connect_timeout);
            if let Some(p) = &g.password {
                cfg.password(p);
            }
            let (client, conn) = cfg.connect(NoTls).await.map_err(pg_err)?;
            let task = tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("query connection ended: {e}");
                }
            });
            self.query = Some((client, task));
        }
        match &self.query {
            Some((c, _)) => Ok(c),
            None => Err(PgError::Io("no query connection".into())),
        }
    }

    async fn repl(&mut self) -> Result<&mut ReplConnection, PgError> {
        if self.repl.is_none() {
            self.repl = Some(ReplConnection::connect(&self.grant, &self.application).await?);
        }
        match self.repl.as_mut() {
            Some(r) => Ok(r),
            None => Err(PgError::Io("no replication connection".into())),
        }
    }
}

fn pg_err(e: tokio_postgres::Error) -> PgError {
    if let Some(db) = e.as_db_error() {
        return PgError::Server {
            code: db.code().code().to_string(),
            message: db.message().to_string(),
        };
    }
    if e.is_closed() {
        return PgError::Io(format!("connection closed: {e}"));
    }
    let text = format!("{e}");
    if text.contains("password") || text.contains("authentication") {
        PgError::Auth(text)
    } else {
        PgError::Io(text)
    }
}

/// Slot and publication names go into replication commands as identifiers:
/// only what PostgreSQL itself allows for slots passes.
fn check_name(kind: &str, name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(PluginError::Fatal(format!(
            "{kind} name '{name}': use 1 to 63 lower-case letters, digits and underscores"
        )))
    }
}

impl HostState {
    fn pg(&mut self) -> Result<&mut PgClient, PluginError> {
        self.postgres.as_mut().ok_or_else(|| {
            PluginError::Fatal(
                "no database granted: the connector config needs database.hostname, \
                 database.user and database.dbname"
                    .into(),
            )
        })
    }
}

impl wit::Host for HostState {
    async fn query(&mut self, sql: String) -> Result<Vec<wit::Row>, PluginError> {
        let started = Instant::now();
        let pg = self.pg()?;
        let result = async {
            let client = pg.query_client().await?;
            let messages = client.simple_query(&sql).await.map_err(pg_err)?;
            let (mut last, mut current) = (Vec::new(), Vec::new());
            for m in messages {
                match m {
                    SimpleQueryMessage::Row(row) => current.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_string))
                            .collect::<Vec<_>>(),
                    ),
                    SimpleQueryMessage::CommandComplete(_) if !current.is_empty() => {
                        last = std::mem::take(&mut current);
                    }
                    _ => {}
                }
            }
            Ok::<_, PgError>(if current.is_empty() { last } else { current })
        }
        .await;
        self.waited += started.elapsed();
        result.map_err(|e| e.into_plugin("query"))
    }

    async fn slot_create(&mut self, name: String) -> Result<wit::SlotCreated, PluginError> {
        check_name("slot", &name)?;
        let started = Instant::now();
        let pg = self.pg()?;
        let result = async {
            let repl = pg.repl().await?;
            let rows = repl
                .simple_query(&format!(
                    "CREATE_REPLICATION_SLOT \"{name}\" LOGICAL pgoutput EXPORT_SNAPSHOT"
                ))
                .await?;
            let row = rows.first().ok_or_else(|| {
                PgError::Protocol("CREATE_REPLICATION_SLOT returned no row".into())
            })?;
            let point = row
                .get(1)
                .cloned()
                .flatten()
                .and_then(|t| wire::parse_lsn(&t))
                .ok_or_else(|| PgError::Protocol("no consistent point in the slot row".into()))?;
            let snapshot = row.get(2).cloned().flatten().unwrap_or_default();
            Ok::<_, PgError>(wit::SlotCreated {
                consistent_point: point,
                snapshot_name: snapshot,
            })
        }
        .await;
        self.waited += started.elapsed();
        result.map_err(|e| e.into_plugin(&format!("creating slot '{name}'")))
    }

    async fn snapshot_begin(&mut self, snapshot: Option<String>) -> Result<(), PluginError> {
        if let Some(s) = &snapshot {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err(PluginError::Fatal(format!(
                    "snapshot name '{s}' is malformed"
                )));
            }
        }
        let mut sql = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY".to_string();
        if let Some(s) = &snapshot {
            sql.push_str(&format!("; SET TRANSACTION SNAPSHOT '{s}'"));
        }
        self.query(sql).await.map(|_| ())
    }

    async fn snapshot_end(&mut self) -> Result<(), PluginError> {
        self.query("COMMIT".into()).await.map(|_| ())
    }

    async fn stream_start(
        &mut self,
        slot: String,
        start_lsn: u64,
        publications: Vec<String>,
        messages: bool,
    ) -> Result<(), PluginError> {
        check_name("slot", &slot)?;
        for p in &publications {
            if p.is_empty() || p.contains('"') || p.contains('\'') || p.contains('\\') {
                return Err(PluginError::Fatal(format!(
                    "publication name '{p}' may not be empty or hold quotes"
                )));
            }
        }
        let names = publications
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join(",");
        let command = format!(
            "START_REPLICATION SLOT \"{slot}\" LOGICAL {} (proto_version '1', publication_names '{names}', messages '{messages}')",
            wire::format_lsn(start_lsn)
        );
        let started = Instant::now();
        let pg = self.pg()?;
        pg.stream = None;
        let result = async {
            pg.repl().await?;
            let conn = pg
                .repl
                .take()
                .ok_or_else(|| PgError::Io("no replication connection".into()))?;
            pg.stream = Some(conn.start(&command, start_lsn).await?);
            Ok::<_, PgError>(())
        }
        .await;
        self.waited += started.elapsed();
        result.map_err(|e| e.into_plugin(&format!("streaming slot '{slot}'")))
    }

    async fn stream_read(
        &mut self,
        max_bytes: u32,
        timeout_ms: u32,
    ) -> Result<Vec<wit::WalEvent>, PluginError> {
        let started = Instant::now();
        let pg = self.pg()?;
        if let Some(e) = pg.failure.take() {
            pg.stream = None;
            return Err(e.into_plugin("replication stream"));
        }
        let stream = pg
            .stream
            .as_mut()
            .ok_or_else(|| PluginError::Fatal("stream-read before stream-start".into()))?;
        let wait = Duration::from_millis(u64::from(timeout_ms).min(60_000));
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let first = tokio::time::timeout(wait, stream.events.recv()).await;
        let mut next = match first {
            Err(_) => None,
            Ok(None) => return Err(PluginError::Retriable("replication stream closed".into())),
            Ok(Some(ev)) => Some(ev),
        };
        let mut failure = None;
        while let Some(ev) = next.take() {
            match ev {
                Ok(WalEvent::Data(lsn, data)) => {
                    bytes += data.len() + 16;
                    out.push(wit::WalEvent::Data((lsn, data.to_vec())));
                }
                Ok(WalEvent::Keepalive(lsn)) => out.push(wit::WalEvent::Keepalive(lsn)),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            if bytes >= max_bytes as usize {
                break;
            }
            next = stream.events.try_recv().ok();
        }
        // What arrived before a failure is delivered first; the failure
        // surfaces on the next read.
        if let Some(e) = failure {
            if out.is_empty() {
                pg.stream = None;
                self.waited += started.elapsed();
                return Err(e.into_plugin("replication stream"));
            }
            pg.failure = Some(e);
        }
        self.waited += started.elapsed();
        Ok(out)
    }

    fn stream_confirm(&mut self, lsn: u64) -> Result<(), PluginError> {
        let pg = self.pg()?;
        match &pg.stream {
            Some(s) => {
                s.confirm(lsn);
                Ok(())
            }
            None => Err(PluginError::Retriable(
                "no replication stream to confirm on".into(),
            )),
        }
    }

    fn stream_stop(&mut self) {
        if let Some(pg) = self.postgres.as_mut() {
            pg.stream = None;
            pg.repl = None;
        }
    }
}

//! A logical replication connection spoken directly over the PostgreSQL
//! wire protocol: tokio-postgres has no replication mode, and the COPY BOTH
//! stream of a walsender needs its own framing. postgres-protocol encodes the
//! frontend messages and runs SCRAM; framing and the few backend messages a
//! walsender sends are read here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use postgres_protocol::authentication::{md5_hash, sasl};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::{PgError, PgGrant};

/// Frames above this are refused: a walsender never sends one, so it means a
/// broken stream rather than a big row (pgoutput splits nothing, but 1 GiB is
/// PostgreSQL's own field limit).
const MAX_FRAME: usize = 1 << 30;
/// Status updates go out at least this often, well inside the server's
/// default `wal_sender_timeout` of 60 s.
const STATUS_EVERY: Duration = Duration::from_secs(10);
/// Events buffered between the socket and the plugin: the backpressure bound.
const EVENT_QUEUE: usize = 1024;

struct Frame {
    tag: u8,
    body: Bytes,
}

/// A connection before streaming: authenticated, in `replication=database`.
pub struct ReplConnection {
    read: OwnedReadHalf,
    write: OwnedWriteHalf,
    buf: BytesMut,
}

/// One item of the stream, in server order.
pub enum WalEvent {
    Data(u64, Bytes),
    Keepalive(u64),
}

/// A running stream: a reader task answers keepalives and reports the
/// confirmed position while the plugin drains `events`.
pub struct ReplStream {
    pub events: mpsc::Receiver<Result<WalEvent, PgError>>,
    confirmed: Arc<AtomicU64>,
    nudge: Arc<Notify>,
    task: JoinHandle<()>,
}

impl Drop for ReplStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ReplStream {
    /// Everything before `lsn` is durable: the next status update says so.
    pub fn confirm(&self, lsn: u64) {
        self.confirmed.fetch_max(lsn, Ordering::SeqCst);
        self.nudge.notify_one();
    }
}

pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u64::from_str_radix(hi, 16).ok()?;
    let lo = u64::from_str_radix(lo, 16).ok()?;
    (hi <= 0xFFFF_FFFF && lo <= 0xFFFF_FFFF).then_some((hi << 32) | lo)
}

fn io_err(what: &str) -> impl Fn(std::io::Error) -> PgError + '_ {
    move |e| PgError::Io(format!("{what}: {e}"))
}

impl ReplConnection {
    pub async fn connect(grant: &PgGrant, application: &str) -> Result<Self, PgError> {
        let addr = format!("{}:{}", grant.host, grant.port);
        let stream = tokio::time::timeout(grant.connect_timeout, TcpStream::connect(&addr))
            .await
            .map_err(|_| PgError::Io(format!("connecting to {addr}: timed out")))?
            .map_err(io_err(&format!("connecting to {addr}")))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut conn = ReplConnection {
            read,
            write,
            buf: BytesMut::with_capacity(64 * 1024),
        };
        let mut out = BytesMut::new();
        let params = [
            ("user", grant.user.as_str()),
            ("database", grant.dbname.as_str()),
            ("replication", "database"),
            ("application_name", application),
            ("client_encoding", "UTF8"),
        ];
        frontend::startup_message(params.iter().copied(), &mut out)
            .map_err(io_err("startup message"))?;
        conn.send(&out).await?;
        conn.authenticate(grant).await?;
        // Parameter statuses and the key data precede ReadyForQuery.
        loop {
            let f = conn.frame().await?;
            match f.tag {
                b'Z' => return Ok(conn),
                b'E' => return Err(server_error(&f.body)),
                _ => {}
            }
        }
    }

    async fn authenticate(&mut self, grant: &PgGrant) -> Result<(), PgError> {
        let password = grant.password.clone().unwrap_or_default();
        let mut scram: Option<sasl::ScramSha256> = None;
        loop {
            let f = self.frame().await?;
            if f.tag == b'E' {
                return Err(server_error(&f.body));
            }
            if f.tag != b'R' {
                return Err(PgError::Protocol(format!(
                    "expected authentication, got message '{}'",
                    f.tag as char
                )));
            }
            let mut body = f.body;
            if body.len() < 4 {
                return Err(PgError::Protocol("short authentication message".into()));
            }
            let code = body.get_i32();
            let mut out = BytesMut::new();
            match code {
                0 => return Ok(()),
                3 => frontend::password_message(password.as_bytes(), &mut out)
                    .map_err(io_err("password"))?,
                5 => {
                    if body.len() < 4 {
                        return Err(PgError::Protocol("short md5 salt".into()));
                    }
                    let salt = [body[0], body[1], body[2], body[3]];
                    let hash = md5_hash(grant.user.as_bytes(), password.as_bytes(), salt);
                    frontend::password_message(hash.as_bytes(), &mut out)
                        .map_err(io_err("password"))?;
                }
                10 => {
                    let offered = String::from_utf8_lossy(&body);
                    if !offered.split('\0').any(|m| m == sasl::SCRAM_SHA_256) {
                        return Err(PgError::Auth(format!(
                            "the server offers only {offered:?}; Wharf speaks SCRAM-SHA-256, md5 and password"
                        )));
                    }
                    let s = sasl::ScramSha256::new(
                        password.as_bytes(),
                        sasl::ChannelBinding::unsupported(),
                    );
                    frontend::sasl_initial_response(sasl::SCRAM_SHA_256, s.message(), &mut out)
                        .map_err(io_err("SASL"))?;
                    scram = Some(s);
                }
                11 => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| PgError::Protocol("SASL continue before start".into()))?;
                    s.update(&body)
                        .map_err(|e| PgError::Auth(format!("SCRAM: {e}")))?;
                    frontend::sasl_response(s.message(), &mut out).map_err(io_err("SASL"))?;
                }
                12 => {
                    let s = scram
                        .as_mut()
                        .ok_or_else(|| PgError::Protocol("SASL final before start".into()))?;
                    s.finish(&body)
                        .map_err(|e| PgError::Auth(format!("SCRAM: {e}")))?;
                    continue;
                }
                other => {
                    return Err(PgError::Auth(format!(
                        "unsupported authentication method (code {other})"
                    )))
                }
            }
            self.send(&out).await?;
        }
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), PgError> {
        self.write
            .write_all(data)
            .await
            .map_err(io_err("writing to the server"))
    }

    async fn frame(&mut self) -> Result<Frame, PgError> {
        read_frame(&mut self.read, &mut self.buf).await
    }

    /// Runs one replication command and returns its rows as text.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, PgError> {
        let mut out = BytesMut::new();
        frontend::query(sql, &mut out).map_err(io_err("query"))?;
        self.send(&out).await?;
        let mut rows = Vec::new();
        let mut failure = None;
        loop {
            let f = self.frame().await?;
            match f.tag {
                b'D' => rows.push(data_row(&f.body)?),
                b'E' => failure = Some(server_error(&f.body)),
                b'Z' => break,
                _ => {}
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(rows),
        }
    }

    /// Sends START_REPLICATION and hands the socket to a reader task.
    pub async fn start(mut self, command: &str, start_lsn: u64) -> Result<ReplStream, PgError> {
        let mut out = BytesMut::new();
        frontend::query(command, &mut out).map_err(io_err("query"))?;
        self.send(&out).await?;
        loop {
            let f = self.frame().await?;
            match f.tag {
                b'W' => break,
                b'E' => return Err(server_error(&f.body)),
                b'N' | b'S' => {}
                t => {
                    return Err(PgError::Protocol(format!(
                        "expected CopyBothResponse to START_REPLICATION, got '{}'",
                        t as char
                    )))
                }
            }
        }
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let confirmed = Arc::new(AtomicU64::new(start_lsn));
        let nudge = Arc::new(Notify::new());
        let task = tokio::spawn(pump(self, tx, confirmed.clone(), nudge.clone()));
        Ok(ReplStream {
            events: rx,
            confirmed,
            nudge,
            task,
        })
    }
}

async fn read_frame(read: &mut OwnedReadHalf, buf: &mut BytesMut) -> Result<Frame, PgError> {
    loop {
        if buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if !(4..=MAX_FRAME).contains(&len) {
                return Err(PgError::Protocol(format!("bad message length {len}")));
            }
            if buf.len() > len {
                let tag = buf[0];
                let mut frame = buf.split_to(len + 1);
                frame.advance(5);
                return Ok(Frame {
                    tag,
                    body: frame.freeze(),
                });
            }
            buf.reserve(len + 1 - buf.len());
        } else {
            buf.reserve(64 * 1024);
        }
        let n = read
            .read_buf(buf)
            .await
            .map_err(io_err("reading from the server"))?;
        if n == 0 {
            return Err(PgError::Io("the server closed the connection".into()));
        }
    }
}

fn data_row(body: &[u8]) -> Result<Vec<Option<String>>, PgError> {
    let short = || PgError::Protocol("short DataRow".into());
    let mut b = body;
    if b.len() < 2 {
        return Err(short());
    }
    let n = b.get_i16();
    let mut row = Vec::with_capacity(n.max(0) as usize);
    for _ in 0..n {
        if b.len() < 4 {
            return Err(short());
        }
        let len = b.get_i32();
        if len < 0 {
            row.push(None);
            continue;
        }
        let len = len as usize;
        if b.len() < len {
            return Err(short());
        }
        row.push(Some(String::from_utf8_lossy(&b[..len]).into_owned()));
        b.advance(len);
    }
    Ok(row)
}

/// An ErrorResponse as SQLSTATE plus message.
pub fn server_error(body: &[u8]) -> PgError {
    let (mut code, mut message, mut detail) = (String::new(), String::new(), String::new());
    for field in body.split(|b| *b == 0) {
        let Some((&kind, value)) = field.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match kind {
            b'C' => code = value,
            b'M' => message = value,
            b'D' => detail = value,
            _ => {}
        }
    }
    if !detail.is_empty() {
        message = format!("{message} ({detail})");
    }
    PgError::Server { code, message }
}

fn pg_now_micros() -> i64 {
    // PostgreSQL counts from 2000-01-01.
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    unix - 946_684_800_000_000
}

fn status_update(lsn: u64, reply: bool) -> BytesMut {
    let mut body = BytesMut::with_capacity(34);
    body.put_u8(b'r');
    // Written, flushed and applied are all "durably handled" for a connector.
    body.put_u64(lsn);
    body.put_u64(lsn);
    body.put_u64(lsn);
    body.put_i64(pg_now_micros());
    body.put_u8(u8::from(reply));
    let mut out = BytesMut::with_capacity(40);
    out.put_u8(b'd');
    out.put_u32(4 + body.len() as u32);
    out.extend_from_slice(&body);
    out
}

/// Reads the COPY BOTH stream into `tx`, answering keepalives and sending
/// the confirmed position even while the plugin is slow to drain.
async fn pump(
    mut conn: ReplConnection,
    tx: mpsc::Sender<Result<WalEvent, PgError>>,
    confirmed: Arc<AtomicU64>,
    nudge: Arc<Notify>,
) {
    let result = pump_inner(&mut conn, &tx, &confirmed, &nudge).await;
    if let Err(e) = result {
        let _ = tx.send(Err(e)).await;
    }
}

async fn pump_inner(
    conn: &mut ReplConnection,
    tx: &mpsc::Sender<Result<WalEvent, PgError>>,
    confirmed: &AtomicU64,
    nudge: &Notify,
) -> Result<(), PgError> {
    let mut tick = tokio::time::interval(STATUS_EVERY);
    let mut sent = u64::MAX;
    let ReplConnection { read, write, buf } = conn;
    let mut status = |reply: bool| {
        let lsn = confirmed.load(Ordering::SeqCst);
        let changed = lsn != sent;
        sent = lsn;
        (status_update(lsn, reply), changed)
    };
    loop {
        let frame = tokio::select! {
            f = read_frame(read, buf) => f?,
            _ = tick.tick() => {
                let (msg, _) = status(false);
                write.write_all(&msg).await.map_err(io_err("status update"))?;
                continue;
            }
            _ = nudge.notified() => {
                let (msg, changed) = status(false);
                if changed {
                    write.write_all(&msg).await.map_err(io_err("status update"))?;
                }
                continue;
            }
        };
        match frame.tag {
            b'd' => {}
            b'E' => return Err(server_error(&frame.body)),
            b'c' => {
                return Err(PgError::Io(
                    "the server ended the replication stream".into(),
                ))
            }
            _ => continue,
        }
        let mut body = frame.body;
        if body.is_empty() {
            continue;
        }
        let kind = body.get_u8();
        let event = match kind {
            b'w' if body.len() >= 24 => {
                let start = body.get_u64();
                let _wal_end = body.get_u64();
                let _sent_at = body.get_i64();
                WalEvent::Data(start, body)
            }
            b'k' if body.len() >= 17 => {
                let end = body.get_u64();
                let _sent_at = body.get_i64();
                if body.get_u8() == 1 {
                    let (msg, _) = status(false);
                    write
                        .write_all(&msg)
                        .await
                        .map_err(io_err("status update"))?;
                }
                WalEvent::Keepalive(end)
            }
            other => {
                return Err(PgError::Protocol(format!(
                    "unexpected replication message '{}'",
                    other as char
                )))
            }
        };
        // Waiting for room, the stream still answers the server in time.
        let mut event = Some(event);
        while let Some(ev) = event.take() {
            tokio::select! {
                permit = tx.reserve() => match permit {
                    Ok(p) => p.send(Ok(ev)),
                    Err(_) => return Ok(()),
                },
                _ = tick.tick() => {
                    let (msg, _) = status(false);
                    write.write_all(&msg).await.map_err(io_err("status update"))?;
                    event = Some(ev);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("1"), None);
    }

    #[test]
    fn error_fields_name_code_and_detail() {
        let body = b"SERROR\0C42704\0Mreplication slot \"x\" does not exist\0Dmore\0\0";
        match server_error(body) {
            PgError::Server { code, message } => {
                assert_eq!(code, "42704");
                assert_eq!(message, "replication slot \"x\" does not exist (more)");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn data_rows_keep_nulls_and_refuse_short_bodies() {
        let mut b = BytesMut::new();
        b.put_i16(2);
        b.put_i32(2);
        b.extend_from_slice(b"ab");
        b.put_i32(-1);
        assert_eq!(
            data_row(&b).expect("row"),
            vec![Some("ab".to_string()), None]
        );
        assert!(data_row(&b[..5]).is_err());
    }
}

//! Decoder for PostgreSQL `pgoutput` logical replication messages, protocol
//! version 1 ("Logical Replication Message Formats" in the PostgreSQL docs).
//! Pure logic: input is one XLogData payload, output is a [`Message`].

use std::fmt;

pub type Lsn = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Begin {
        final_lsn: Lsn,
        commit_ts_us: i64,
        xid: u32,
    },
    Commit {
        flags: u8,
        commit_lsn: Lsn,
        end_lsn: Lsn,
        commit_ts_us: i64,
    },
    Origin {
        lsn: Lsn,
        name: String,
    },
    Relation(Relation),
    Type {
        id: u32,
        namespace: String,
        name: String,
    },
    Insert {
        rel: u32,
        new: Vec<Value>,
    },
    Update {
        rel: u32,
        old: Option<Vec<Value>>,
        key_only: bool,
        new: Vec<Value>,
    },
    Delete {
        rel: u32,
        old: Vec<Value>,
        key_only: bool,
    },
    Truncate {
        options: u8,
        rels: Vec<u32>,
    },
    LogicalMessage {
        transactional: bool,
        lsn: Lsn,
        prefix: String,
        content: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub id: u32,
    pub namespace: String,
    pub name: String,
    pub replica_identity: u8,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Flags bit 1: column is part of the replica identity key.
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_mod: i32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    /// Unchanged TOASTed value: the actual bytes were not sent.
    Unchanged,
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pgoutput decode error: {}", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Seconds between 1970-01-01 and 2000-01-01 (the PostgreSQL epoch).
const PG_EPOCH_UNIX_SECS: i64 = 946_684_800;

/// PostgreSQL-epoch microseconds to Unix microseconds. Saturates so the
/// infinity sentinels (i64::MAX/MIN) stay at the extremes instead of wrapping.
pub fn pg_epoch_us_to_unix_us(us: i64) -> i64 {
    us.saturating_add(PG_EPOCH_UNIX_SECS * 1_000_000)
}

/// PostgreSQL-epoch microseconds to Unix milliseconds (floored, so instants
/// before 1970 round toward the past like Java's `Instant.toEpochMilli`).
pub fn pg_epoch_us_to_unix_ms(us: i64) -> i64 {
    pg_epoch_us_to_unix_us(us).div_euclid(1000)
}

/// Cursor over the payload; every read names the field so errors are useful.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: impl fmt::Display + Copy) -> Result<&'a [u8], DecodeError> {
        let rest = self.buf.len() - self.pos;
        if rest < n {
            return Err(DecodeError(format!(
                "truncated: {what} needs {n} bytes at offset {}, only {rest} left",
                self.pos
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(
        &mut self,
        what: impl fmt::Display + Copy,
    ) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: impl fmt::Display + Copy) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn i16(&mut self, what: impl fmt::Display + Copy) -> Result<i16, DecodeError> {
        Ok(i16::from_be_bytes(self.array(what)?))
    }
    fn i32(&mut self, what: impl fmt::Display + Copy) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: impl fmt::Display + Copy) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    fn i64(&mut self, what: impl fmt::Display + Copy) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: impl fmt::Display + Copy) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// NUL-terminated string; must be valid UTF-8 (server encoding UTF8).
    fn cstr(&mut self, what: impl fmt::Display + Copy) -> Result<String, DecodeError> {
        let rest = &self.buf[self.pos..];
        let len = rest.iter().position(|&b| b == 0).ok_or_else(|| {
            DecodeError(format!(
                "truncated: {what} at offset {} has no NUL terminator",
                self.pos
            ))
        })?;
        let s = std::str::from_utf8(&rest[..len])
            .map_err(|e| DecodeError(format!("{what} is not valid UTF-8: {e}")))?;
        self.pos += len + 1;
        Ok(s.to_owned())
    }

    /// Length-prefixed (i32) byte string; a negative length is malformed.
    fn len_bytes(&mut self, what: impl fmt::Display + Copy) -> Result<&'a [u8], DecodeError> {
        let n = self.i32(format_args!("{what} length"))?;
        let n = usize::try_from(n)
            .map_err(|_| DecodeError(format!("{what} has negative length {n}")))?;
        self.take(n, what)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

/// Decode one pgoutput message. Trailing bytes are an error: in protocol v1
/// every message has a fixed layout, so leftovers mean a framing bug.
pub fn decode(buf: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Reader { buf, pos: 0 };
    let tag = r.u8("message tag")?;
    let msg = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("Begin final_lsn")?,
            commit_ts_us: r.i64("Begin timestamp")?,
            xid: r.u32("Begin xid")?,
        },
        b'C' => Message::Commit {
            flags: r.u8("Commit flags")?,
            commit_lsn: r.u64("Commit commit_lsn")?,
            end_lsn: r.u64("Commit end_lsn")?,
            commit_ts_us: r.i64("Commit timestamp")?,
        },
        b'O' => Message::Origin {
            lsn: r.u64("Origin lsn")?,
            name: r.cstr("Origin name")?,
        },
        b'R' => Message::Relation(relation(&mut r)?),
        b'Y' => Message::Type {
            id: r.u32("Type oid")?,
            namespace: r.cstr("Type namespace")?,
            name: r.cstr("Type name")?,
        },
        b'I' => {
            let rel = r.u32("Insert relation oid")?;
            expect(&mut r, b'N', "Insert")?;
            Message::Insert {
                rel,
                new: tuple(&mut r, "Insert new tuple")?,
            }
        }
        b'U' => {
            let rel = r.u32("Update relation oid")?;
            let (old, key_only) = match r.u8("Update tuple kind")? {
                b'N' => (None, false),
                k @ (b'K' | b'O') => {
                    let old = tuple(&mut r, "Update old tuple")?;
                    expect(&mut r, b'N', "Update")?;
                    (Some(old), k == b'K')
                }
                k => return Err(bad_kind("Update", k, "'K', 'O' or 'N'")),
            };
            Message::Update {
                rel,
                old,
                key_only,
                new: tuple(&mut r, "Update new tuple")?,
            }
        }
        b'D' => {
            let rel = r.u32("Delete relation oid")?;
            let key_only = match r.u8("Delete tuple kind")? {
                b'K' => true,
                b'O' => false,
                k => return Err(bad_kind("Delete", k, "'K' or 'O'")),
            };
            Message::Delete {
                rel,
                old: tuple(&mut r, "Delete old tuple")?,
                key_only,
            }
        }
        b'T' => {
            let n = r.i32("Truncate relation count")?;
            let n = usize::try_from(n)
                .map_err(|_| DecodeError(format!("Truncate relation count {n} is negative")))?;
            let options = r.u8("Truncate options")?;
            // Cap the pre-allocation by what the buffer can actually hold.
            let mut rels = Vec::with_capacity(n.min(r.remaining() / 4));
            for _ in 0..n {
                rels.push(r.u32("Truncate relation oid")?);
            }
            Message::Truncate { options, rels }
        }
        b'M' => {
            let flags = r.u8("Message flags")?;
            Message::LogicalMessage {
                transactional: flags & 1 != 0,
                lsn: r.u64("Message lsn")?,
                prefix: r.cstr("Message prefix")?,
                content: r.len_bytes("Message content")?.to_vec(),
            }
        }
        t => {
            return Err(DecodeError(format!(
                "unknown message tag {} (0x{t:02x})",
                printable(t)
            )))
        }
    };
    if r.remaining() != 0 {
        return Err(DecodeError(format!(
            "{} trailing bytes after '{}' message",
            r.remaining(),
            printable(tag)
        )));
    }
    Ok(msg)
}

fn relation(r: &mut Reader) -> Result<Relation, DecodeError> {
    let id = r.u32("Relation oid")?;
    let namespace = r.cstr("Relation namespace")?;
    let name = r.cstr("Relation name")?;
    let replica_identity = r.u8("Relation replica identity")?;
    let n = r.i16("Relation column count")?;
    let n = usize::try_from(n)
        .map_err(|_| DecodeError(format!("Relation column count {n} is negative")))?;
    let mut columns = Vec::with_capacity(n);
    for i in 0..n {
        let flags = r.u8(format_args!("Relation column {i} flags"))?;
        columns.push(Column {
            key: flags & 1 != 0,
            name: r.cstr(format_args!("Relation column {i} name"))?,
            type_oid: r.u32(format_args!("Relation column {i} type oid"))?,
            type_mod: r.i32(format_args!("Relation column {i} atttypmod"))?,
        });
    }
    Ok(Relation {
        id,
        namespace,
        name,
        replica_identity,
        columns,
    })
}

/// "<what> column <i>", written only if an error needs it.
#[derive(Clone, Copy)]
struct ColumnCtx<'a>(&'a str, usize);

impl fmt::Display for ColumnCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} column {}", self.0, self.1)
    }
}

fn tuple(r: &mut Reader, what: &str) -> Result<Vec<Value>, DecodeError> {
    let n = r.i16(format_args!("{what} column count"))?;
    let n = usize::try_from(n)
        .map_err(|_| DecodeError(format!("{what} column count {n} is negative")))?;
    let mut vals = Vec::with_capacity(n);
    for i in 0..n {
        let ctx = ColumnCtx(what, i);
        let v = match r.u8(format_args!("{ctx} kind"))? {
            b'n' => Value::Null,
            b'u' => Value::Unchanged,
            b't' => {
                let b = r.len_bytes(ctx)?;
                let s = std::str::from_utf8(b)
                    .map_err(|e| DecodeError(format!("{ctx} text is not valid UTF-8: {e}")))?;
                Value::Text(s.to_owned())
            }
            b'b' => Value::Binary(r.len_bytes(ctx)?.to_vec()),
            k => return Err(bad_kind(&ctx.to_string(), k, "'n', 'u', 't' or 'b'")),
        };
        vals.push(v);
    }
    Ok(vals)
}

fn expect(r: &mut Reader, want: u8, msg: &str) -> Result<(), DecodeError> {
    let k = r.u8(format_args!("{msg} new-tuple marker"))?;
    if k != want {
        return Err(bad_kind(msg, k, &format!("'{}'", want as char)));
    }
    Ok(())
}

fn bad_kind(ctx: &str, got: u8, want: &str) -> DecodeError {
    DecodeError(format!(
        "{ctx}: unexpected tuple kind {} (0x{got:02x}), expected {want}",
        printable(got)
    ))
}

fn printable(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        "<non-printable>".to_owned()
    }
}

#[cfg(test)]
mod tests;

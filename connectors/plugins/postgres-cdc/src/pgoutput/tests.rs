use super::*;

/// Test-only encoder mirroring the wire format.
struct Enc(Vec<u8>);
impl Enc {
    fn new(tag: u8) -> Self {
        Enc(vec![tag])
    }
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn s(mut self, v: &str) -> Self {
        self.0.extend_from_slice(v.as_bytes());
        self.0.push(0);
        self
    }
    fn bytes(mut self, v: &[u8]) -> Self {
        self = self.i32(v.len() as i32);
        self.0.extend_from_slice(v);
        self
    }
    fn tuple(mut self, vals: &[Value]) -> Self {
        self = self.i16(vals.len() as i16);
        for v in vals {
            self = match v {
                Value::Null => self.u8(b'n'),
                Value::Unchanged => self.u8(b'u'),
                Value::Text(t) => self.u8(b't').bytes(t.as_bytes()),
                Value::Binary(b) => self.u8(b'b').bytes(b),
            };
        }
        self
    }
}

fn vals() -> Vec<Value> {
    vec![
        Value::Text("42".into()),
        Value::Null,
        Value::Unchanged,
        Value::Binary(vec![0, 1, 255]),
        Value::Text(String::new()),
    ]
}

fn ok(e: Enc) -> Message {
    match decode(&e.0) {
        Ok(m) => m,
        Err(err) => panic!("decode failed: {err}"),
    }
}

fn err(b: &[u8]) -> String {
    match decode(b) {
        Ok(m) => panic!("expected error, got {m:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn begin() {
    let m = ok(Enc::new(b'B').u64(0x16B_3748).i64(-5).u32(777));
    assert_eq!(
        m,
        Message::Begin {
            final_lsn: 0x16B_3748,
            commit_ts_us: -5,
            xid: 777
        }
    );
}

#[test]
fn commit() {
    let m = ok(Enc::new(b'C').u8(0).u64(10).u64(20).i64(1_000_000));
    assert_eq!(
        m,
        Message::Commit {
            flags: 0,
            commit_lsn: 10,
            end_lsn: 20,
            commit_ts_us: 1_000_000
        }
    );
}

#[test]
fn origin() {
    let m = ok(Enc::new(b'O').u64(99).s("node_a"));
    assert_eq!(
        m,
        Message::Origin {
            lsn: 99,
            name: "node_a".into()
        }
    );
}

#[test]
fn relation() {
    let e = Enc::new(b'R')
        .u32(16384)
        .s("public")
        .s("users")
        .u8(b'd')
        .i16(2)
        .u8(1)
        .s("id")
        .u32(23)
        .i32(-1)
        .u8(0)
        .s("amount")
        .u32(1700)
        .i32((10 << 16) + 2 + 4);
    let want = Relation {
        id: 16384,
        namespace: "public".into(),
        name: "users".into(),
        replica_identity: b'd',
        columns: vec![
            Column {
                key: true,
                name: "id".into(),
                type_oid: 23,
                type_mod: -1,
            },
            Column {
                key: false,
                name: "amount".into(),
                type_oid: 1700,
                type_mod: 655366,
            },
        ],
    };
    assert_eq!(ok(e), Message::Relation(want));
}

#[test]
fn type_msg() {
    let m = ok(Enc::new(b'Y').u32(50000).s("public").s("mood"));
    assert_eq!(
        m,
        Message::Type {
            id: 50000,
            namespace: "public".into(),
            name: "mood".into()
        }
    );
}

#[test]
fn insert() {
    let m = ok(Enc::new(b'I').u32(5).u8(b'N').tuple(&vals()));
    assert_eq!(
        m,
        Message::Insert {
            rel: 5,
            new: vals()
        }
    );
}

#[test]
fn update_variants() {
    let new = vec![Value::Text("x".into())];
    let plain = ok(Enc::new(b'U').u32(5).u8(b'N').tuple(&new));
    assert_eq!(
        plain,
        Message::Update {
            rel: 5,
            old: None,
            key_only: false,
            new: new.clone()
        }
    );
    for (k, key_only) in [(b'K', true), (b'O', false)] {
        let m = ok(Enc::new(b'U')
            .u32(5)
            .u8(k)
            .tuple(&vals())
            .u8(b'N')
            .tuple(&new));
        assert_eq!(
            m,
            Message::Update {
                rel: 5,
                old: Some(vals()),
                key_only,
                new: new.clone()
            }
        );
    }
}

#[test]
fn delete_variants() {
    for (k, key_only) in [(b'K', true), (b'O', false)] {
        let m = ok(Enc::new(b'D').u32(7).u8(k).tuple(&vals()));
        assert_eq!(
            m,
            Message::Delete {
                rel: 7,
                old: vals(),
                key_only
            }
        );
    }
}

#[test]
fn truncate() {
    let m = ok(Enc::new(b'T').i32(2).u8(3).u32(100).u32(200));
    assert_eq!(
        m,
        Message::Truncate {
            options: 3,
            rels: vec![100, 200]
        }
    );
}

#[test]
fn logical_message() {
    let m = ok(Enc::new(b'M').u8(1).u64(55).s("app").bytes(b"hi\0there"));
    assert_eq!(
        m,
        Message::LogicalMessage {
            transactional: true,
            lsn: 55,
            prefix: "app".into(),
            content: b"hi\0there".to_vec()
        }
    );
    let m = ok(Enc::new(b'M').u8(0).u64(1).s("").bytes(b""));
    assert!(matches!(
        m,
        Message::LogicalMessage {
            transactional: false,
            ..
        }
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let full = Enc::new(b'U')
        .u32(5)
        .u8(b'O')
        .tuple(&vals())
        .u8(b'N')
        .tuple(&vals())
        .0;
    for cut in 0..full.len() {
        let e = err(&full[..cut]);
        assert!(
            e.contains("truncated") || e.contains("no NUL"),
            "cut {cut}: {e}"
        );
    }
    let rel = Enc::new(b'R').u32(1).s("ns").s("t").u8(b'f').i16(1);
    assert!(err(&rel.u8(0).s("c").u32(23).0).contains("atttypmod"));
}

#[test]
fn garbage_is_an_error() {
    assert!(err(&[]).contains("message tag"));
    assert!(err(b"Z").contains("unknown message tag 'Z'"));
    assert!(err(&[0xFF]).contains("unknown message tag"));
    // Bad tuple column kind.
    let e = err(&Enc::new(b'I').u32(1).u8(b'N').i16(1).u8(b'x').0);
    assert!(e.contains("column 0") && e.contains("'x'"), "{e}");
    // Insert without 'N'.
    assert!(err(&Enc::new(b'I').u32(1).u8(b'K').i16(0).0).contains("'K'"));
    // Delete with 'N'.
    assert!(err(&Enc::new(b'D').u32(1).u8(b'N').i16(0).0).contains("Delete"));
    // Update old tuple not followed by 'N'.
    let e = err(&Enc::new(b'U').u32(1).u8(b'K').i16(0).u8(b'O').i16(0).0);
    assert!(e.contains("Update"), "{e}");
    // Negative lengths and counts.
    let e = err(&Enc::new(b'I').u32(1).u8(b'N').i16(1).u8(b't').i32(-1).0);
    assert!(e.contains("negative length"), "{e}");
    assert!(err(&Enc::new(b'I').u32(1).u8(b'N').i16(-1).0).contains("negative"));
    assert!(err(&Enc::new(b'T').i32(-3).u8(0).0).contains("negative"));
    // Huge truncate count with no data must not allocate or panic.
    assert!(err(&Enc::new(b'T').i32(i32::MAX).u8(0).0).contains("truncated"));
    // Invalid UTF-8 in text value and in a cstring.
    let e = err(&Enc::new(b'I')
        .u32(1)
        .u8(b'N')
        .i16(1)
        .u8(b't')
        .bytes(&[0xC3])
        .0);
    assert!(e.contains("UTF-8"), "{e}");
    let mut b = Enc::new(b'O').u64(1).0;
    b.extend_from_slice(&[0xFF, 0]);
    assert!(err(&b).contains("Origin name"));
    // Trailing bytes.
    assert!(err(&Enc::new(b'B').u64(1).i64(2).u32(3).u8(0).0).contains("trailing"));
}

#[test]
fn epoch_conversion() {
    assert_eq!(pg_epoch_us_to_unix_us(0), 946_684_800_000_000);
    assert_eq!(pg_epoch_us_to_unix_ms(0), 946_684_800_000);
    assert_eq!(pg_epoch_us_to_unix_ms(1_500), 946_684_800_001);
    // Before 1970: floor, not truncate toward zero.
    assert_eq!(pg_epoch_us_to_unix_ms(-946_684_800_000_001), -1);
    assert_eq!(pg_epoch_us_to_unix_us(i64::MAX), i64::MAX);
}

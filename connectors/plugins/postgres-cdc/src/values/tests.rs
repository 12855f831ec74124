use super::*;
use serde_json::json;

fn map(oid: u32, typmod: i32, text: &str) -> Value {
    map_with(DecimalMode::Precise, oid, typmod, text)
}

fn map_with(decimal: DecimalMode, oid: u32, typmod: i32, text: &str) -> Value {
    match to_json(oid, typmod, text, &Mapping { decimal }) {
        Ok(v) => v,
        Err(e) => panic!("{oid} {text:?}: {e}"),
    }
}

fn fails(oid: u32, typmod: i32, text: &str) -> String {
    match to_json(oid, typmod, text, &Mapping::default()) {
        Ok(v) => panic!("{oid} {text:?}: expected error, got {v}"),
        Err(e) => e,
    }
}

/// numeric(p, s) typmod as PostgreSQL stores it.
fn nm(p: i32, s: i32) -> i32 {
    ((p << 16) | (s & 0x7ff)) + 4
}

#[test]
fn scalars() {
    let cases: &[(u32, &str, Value)] = &[
        (16, "t", json!(true)),
        (16, "f", json!(false)),
        (21, "-32768", json!(-32768)),
        (23, "2147483647", json!(2147483647)),
        (20, "-9223372036854775808", json!(i64::MIN)),
        (26, "4294967295", json!(4294967295u32)),
        (700, "1.5", json!(1.5)),
        (701, "-2.25e-5", json!(-2.25e-5)),
        (701, "NaN", json!("NaN")),
        (700, "Infinity", json!("Infinity")),
        (701, "-Infinity", json!("-Infinity")),
        (790, "$1,234.50", json!("AeI6")),
        (790, "-$3.00", json!("/tQ=")),
        (25, "héllo", json!("héllo")),
        (1043, "v", json!("v")),
        (1042, "pad  ", json!("pad  ")),
        (19, "name", json!("name")),
        (18, "c", json!("c")),
        (142, "<a/>", json!("<a/>")),
        (869, "10.0.0.1/32", json!("10.0.0.1/32")),
        (650, "10.0.0.0/8", json!("10.0.0.0/8")),
        (829, "08:00:2b:01:02:03", json!("08:00:2b:01:02:03")),
        (
            2950,
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            json!("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ),
        (114, "{\"a\": 1}", json!("{\"a\": 1}")),
        (3802, "{\"a\": 1}", json!("{\"a\": 1}")),
        (99999, "happy", json!("happy")), // enum / citext
        (17, "\\x0a0bff", json!("Cgv/")),
        (17, "\\x", json!("")),
        (17, "a\\\\b\\001", json!("YVxiAQ==")), // escape format
    ];
    for (oid, text, want) in cases {
        assert_eq!(&map(*oid, -1, text), want, "{oid} {text:?}");
    }
    assert_eq!(unavailable(), json!("__debezium_unavailable_value"));
}

#[test]
fn numeric_precise() {
    let cases: &[(i32, &str, Value)] = &[
        (nm(5, 2), "12.34", json!("BNI=")),
        (nm(5, 2), "-0.01", json!("/w==")),
        (nm(5, 2), "0.00", json!("AA==")),
        (nm(5, 2), "1.5", json!("AJY=")), // rescaled to 150
        (nm(5, 0), "127", json!("fw==")),
        (nm(5, 0), "128", json!("AIA=")),
        (nm(5, 0), "-128", json!("gA==")),
        (nm(5, 0), "-129", json!("/38=")),
        (nm(5, -2), "12300", json!("ew==")), // PG 15 negative scale
        (-1, "0", json!({"scale": 0, "value": "AA=="})),
        (-1, "-1.50", json!({"scale": 2, "value": "/2o="})),
        // 2^64 = 0x01_0000_0000_0000_0000
        (
            -1,
            "18446744073709551616",
            json!({"scale": 0, "value": "AQAAAAAAAAAA"}),
        ),
    ];
    for (tm, text, want) in cases {
        assert_eq!(&map(1700, *tm, text), want, "{text:?}");
    }
    // 10^300 round trip: bytes back to decimal must match.
    let big = format!("1{}", "0".repeat(300));
    let bytes = twos_complement(false, big.as_bytes());
    let mut dec = vec![0u8]; // little-endian base-10 digits
    for b in bytes {
        let mut carry = u32::from(b);
        for d in dec.iter_mut() {
            let v = u32::from(*d) * 256 + carry;
            *d = (v % 10) as u8;
            carry = v / 10;
        }
        while carry > 0 {
            dec.push((carry % 10) as u8);
            carry /= 10;
        }
    }
    let s: String = dec.iter().rev().map(|d| (b'0' + d) as char).collect();
    assert_eq!(s.trim_start_matches('0'), big);
    assert_eq!(twos_complement(true, big.as_bytes())[0] & 0x80, 0x80);
    assert!(fails(1700, nm(5, 2), "NaN").contains("NaN"));
    assert!(fails(1700, nm(5, 2), "1.234").contains("scale"));
    assert!(fails(1700, -1, "1e5").contains("digits"));
}

#[test]
fn numeric_other_modes() {
    assert_eq!(
        map_with(DecimalMode::Double, 1700, nm(5, 2), "-12.5"),
        json!(-12.5)
    );
    assert_eq!(map_with(DecimalMode::Double, 1700, -1, "NaN"), json!("NaN"));
    assert_eq!(
        map_with(DecimalMode::String, 1700, -1, "1.10"),
        json!("1.10")
    );
}

#[test]
fn dates() {
    let cases: &[(&str, i64)] = &[
        ("1970-01-01", 0),
        ("1969-12-31", -1),
        ("2000-02-29", 11_016),
        ("2024-03-01", 19_783),
        ("1900-03-01", -25_508),
        ("0001-01-01", -719_162),
        ("0001-12-31 BC", -719_163),
        ("0001-02-29 BC", -719_469), // 1 BC (year 0) is leap
    ];
    for (text, want) in cases {
        assert_eq!(map(1082, -1, text), json!(want), "{text}");
    }
    assert_eq!(map(1082, -1, "infinity"), json!(i32::MAX));
    assert_eq!(map(1082, -1, "-infinity"), json!(i32::MIN));
    assert!(fails(1082, -1, "2023-02-29").contains("out of range"));
    assert!(fails(1082, -1, "2023-13-01").contains("out of range"));
    assert!(fails(1082, -1, "2023/01/01").contains("digits"));
}

#[test]
fn times() {
    assert_eq!(map(1083, -1, "13:45:30.123456"), json!(49_530_123_456i64));
    assert_eq!(map(1083, -1, "00:00:00"), json!(0));
    assert_eq!(map(1083, -1, "24:00:00"), json!(86_400_000_000i64));
    assert_eq!(map(1083, -1, "00:00:00.5"), json!(500_000));
    assert_eq!(map(1266, -1, "13:45:30.5+02"), json!("11:45:30.5Z"));
    assert_eq!(map(1266, -1, "01:00:00-08"), json!("09:00:00Z"));
    assert_eq!(map(1266, -1, "01:00:00+05:30"), json!("19:30:00Z"));
    assert!(fails(1083, -1, "25:00:00").contains("range"));
    assert!(fails(1083, -1, "12:00:00.1234567").contains("fractional"));
    assert!(fails(1266, -1, "12:00:00").contains("offset"));
}

#[test]
fn timestamps() {
    let cases: &[(&str, i64)] = &[
        ("1970-01-01 00:00:00", 0),
        ("1969-12-31 23:59:59.999999", -1),
        ("2024-03-01 12:00:00.25", 1_709_294_400_250_000),
        ("2024-02-29 00:00:00", 1_709_164_800_000_000),
        ("2000-01-01 00:00:00", 946_684_800_000_000),
        ("0001-01-01 00:00:00 BC", -62_167_219_200_000_000),
    ];
    for (text, want) in cases {
        assert_eq!(map(1114, -1, text), json!(want), "{text}");
    }
    assert_eq!(
        map(1114, -1, "infinity"),
        json!(9_223_372_036_825_200_000i64)
    );
    let tz: &[(&str, &str)] = &[
        ("2024-03-01 12:00:00.25+02", "2024-03-01T10:00:00.250000Z"),
        ("2024-03-01 05:00:00+05:30", "2024-02-29T23:30:00.000000Z"),
        ("2023-12-31 20:00:00-08", "2024-01-01T04:00:00.000000Z"),
        ("1970-01-01 00:00:00+00", "1970-01-01T00:00:00.000000Z"),
        (
            "0044-03-15 11:47:16-00:01:15 BC",
            "-0043-03-15T11:48:31.000000Z",
        ),
        ("infinity", "infinity"),
        ("-infinity", "-infinity"),
    ];
    for (text, want) in tz {
        assert_eq!(map(1184, -1, text), json!(want), "{text}");
    }
    // Debezium's adaptive precision: timestamp(3) and time(3) in milliseconds,
    // timestamptz with the column's fraction digits.
    assert_eq!(
        map(1114, 3, "2024-03-01 12:00:00.123"),
        json!(1_709_294_400_123i64)
    );
    assert_eq!(map(1083, 3, "13:45:30.123"), json!(49_530_123i64));
    assert_eq!(
        map(1184, 3, "2024-03-01 12:00:00.5+00"),
        json!("2024-03-01T12:00:00.500Z")
    );
    assert_eq!(
        map(1184, 0, "2024-03-01 12:00:00+00"),
        json!("2024-03-01T12:00:00Z")
    );
    assert!(fails(1114, -1, "2024-03-01T12:00:00").contains("expected"));
    assert!(fails(1184, -1, "2024-03-01 12:00:00+1x").contains("digits"));
}

#[test]
fn intervals() {
    const S: i64 = 1_000_000;
    let cases: &[(&str, i64)] = &[
        ("00:00:01", S),
        ("3 days", 3 * 86_400 * S),
        ("-1 days +02:00:00", (-86_400 + 7_200) * S),
        ("1 mon", 2_629_800 * S),
        ("1 year", 31_557_600 * S),
        (
            "1 year 2 mons 3 days 04:05:06.789",
            (14 * 2_629_800 + 3 * 86_400 + 14_706) * S + 789_000,
        ),
        ("-00:00:00.5", -500_000),
        (
            "-1 years -2 mons +3 days -04:05:06",
            (-14 * 2_629_800 + 3 * 86_400 - 14_706) * S,
        ),
        ("100:00:00", 360_000 * S),
    ];
    for (text, want) in cases {
        assert_eq!(map(1186, -1, text), json!(want), "{text}");
    }
    assert!(fails(1186, -1, "1 fortnight").contains("unit"));
    assert!(fails(1186, -1, "").contains("empty"));
    assert!(fails(1186, -1, "99999999999999 years").contains("range"));
}

#[test]
fn arrays() {
    assert_eq!(map(1007, -1, "{1,2,NULL}"), json!([1, 2, null]));
    assert_eq!(
        map(1009, -1, r#"{"a b","c\"d",NULL,"NULL",plain, x\,y }"#),
        json!(["a b", "c\"d", null, "NULL", "plain", "x,y"])
    );
    assert_eq!(map(1016, -1, "{{1,2},{3,4}}"), json!([[1, 2], [3, 4]]));
    assert_eq!(map(1005, -1, "{}"), json!([]));
    assert_eq!(map(1005, -1, "[0:1]={5,6}"), json!([5, 6]));
    assert_eq!(map(1000, -1, "{t,f}"), json!([true, false]));
    assert_eq!(map(1022, -1, "{1.5,NaN}"), json!([1.5, "NaN"]));
    assert_eq!(
        map(1231, nm(5, 2), "{12.34,-0.01}"),
        json!(["BNI=", "/w=="])
    );
    assert_eq!(map(1182, -1, "{1970-01-02}"), json!([1]));
    assert_eq!(
        map(1185, -1, r#"{"2024-03-01 12:00:00+02"}"#),
        json!(["2024-03-01T10:00:00.000000Z"])
    );
    assert_eq!(
        map(3807, -1, r#"{"{\"k\": [1]}"}"#),
        json!(["{\"k\": [1]}"])
    );
    assert_eq!(element_type(1015), Some(1043));
    assert_eq!(element_type(23), None);
    for bad in [
        "{1,2",
        "1,2}",
        "{1,,2}",
        "{\"a}",
        "{1}x",
        "{{{{{{{{1}}}}}}}}",
        "{a\"b}",
    ] {
        fails(1009, -1, bad);
    }
    assert!(fails(1007, -1, "{1,x}").contains("integer"));
}

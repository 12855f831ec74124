//! Date/time/interval text parsing for [`super::to_json`]: DateStyle ISO and
//! IntervalStyle postgres (the server defaults), calendar math done locally.

use super::bad;
use serde_json::Value;

/// Days since 1970-01-01 of a proleptic Gregorian date (year 0 = 1 BC).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn digits_i64(s: &str, kind: &str, whole: &str) -> Result<i64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(kind, whole, "expected digits"));
    }
    s.parse()
        .map_err(|_| bad(kind, whole, "number out of range"))
}

/// "YYYY-MM-DD" (DateStyle ISO), BC flag applied by the caller → epoch days.
fn parse_date(s: &str, bc: bool, kind: &str, whole: &str) -> Result<i64, String> {
    let mut it = s.splitn(3, '-');
    let mut next = || digits_i64(it.next().unwrap_or(""), kind, whole);
    let (y, m, d) = (next()?, next()?, next()?);
    // PostgreSQL dates stop at 5874897 AD; the bound also keeps math in range.
    if y == 0 || y > 10_000_000 {
        return Err(bad(kind, whole, "year out of range"));
    }
    // BC leap years follow the astronomical year (1 BC = year 0).
    let y = if bc { 1 - y } else { y };
    let mdays = [
        31,
        28 + i64::from(is_leap(y)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > mdays[(m - 1) as usize] {
        return Err(bad(kind, whole, "date out of range"));
    }
    Ok(days_from_civil(y, m, d))
}

fn strip_bc(text: &str) -> (&str, bool) {
    text.strip_suffix(" BC")
        .map_or((text, false), |t| (t, true))
}

/// Date: epoch days. ±infinity map to PostgreSQL's own sentinels
/// (DATEVAL_NOEND/NOBEGIN = i32::MAX/MIN); Debezium's Date is an int32.
pub(super) fn date(text: &str) -> Result<Value, String> {
    match text {
        "infinity" => return Ok(Value::from(i32::MAX)),
        "-infinity" => return Ok(Value::from(i32::MIN)),
        _ => {}
    }
    let (s, bc) = strip_bc(text);
    Ok(Value::from(parse_date(s, bc, "date", text)?))
}

/// "H+:MM:SS[.f{1,6}]" → (microseconds, fraction digits as given).
fn hms(s: &str, kind: &str, whole: &str, max_h: i64) -> Result<(i64, String), String> {
    let (main, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut it = main.splitn(3, ':');
    let h = digits_i64(it.next().unwrap_or(""), kind, whole)?;
    let mi = digits_i64(it.next().unwrap_or(""), kind, whole)?;
    let se = digits_i64(it.next().unwrap_or(""), kind, whole)?;
    if h > max_h || mi > 59 || se > 60 || (s.contains('.') && frac.is_empty()) {
        return Err(bad(kind, whole, "time field out of range"));
    }
    if frac.len() > 6 {
        return Err(bad(kind, whole, "more than 6 fractional digits"));
    }
    let f = if frac.is_empty() {
        0
    } else {
        digits_i64(frac, kind, whole)?
    };
    let rest = (mi * 60 + se) * 1_000_000 + f * 10i64.pow(6 - frac.len() as u32);
    let total = h
        .checked_mul(3_600_000_000)
        .and_then(|v| v.checked_add(rest))
        .ok_or_else(|| bad(kind, whole, "time out of range"))?;
    Ok((total, frac.trim_end_matches('0').to_owned()))
}

pub(super) fn time_us(text: &str, kind: &str) -> Result<i64, String> {
    let (us, _) = hms(text, kind, text, 24)?;
    if us > 86_400_000_000 {
        return Err(bad(kind, text, "time past 24:00:00"));
    }
    Ok(us)
}

/// Split "<time>±HH[:MM[:SS]]" at the offset sign → (time, offset seconds).
fn split_offset<'a>(s: &'a str, kind: &str, whole: &str) -> Result<(&'a str, i64), String> {
    let at = s
        .rfind(['+', '-'])
        .ok_or_else(|| bad(kind, whole, "missing UTC offset"))?;
    let (t, off) = s.split_at(at);
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let mut secs = 0;
    let mut parts = 0;
    for (i, p) in off[1..].split(':').enumerate() {
        let v = digits_i64(p, kind, whole)?;
        if i > 2 || v > if i == 0 { 99 } else { 59 } {
            return Err(bad(kind, whole, "bad UTC offset"));
        }
        secs = secs * 60 + v;
        parts = i + 1;
    }
    secs *= 60i64.pow(3 - parts as u32);
    Ok((t, sign * secs))
}

fn frac_suffix(frac: &str) -> String {
    if frac.is_empty() {
        String::new()
    } else {
        format!(".{frac}")
    }
}

fn fmt_hms(us: i64, frac: &str) -> String {
    let s = us / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}{}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        frac_suffix(frac)
    )
}

/// timetz → ZonedTime: shifted to UTC, "HH:MM:SS[.f]Z". Fraction keeps the
/// input digits minus trailing zeros (what Java's ISO formatter prints).
pub(super) fn timetz(text: &str) -> Result<Value, String> {
    let (t, off) = split_offset(text, "timetz", text)?;
    let (us, frac) = hms(t, "timetz", text, 24)?;
    let utc = (us - off * 1_000_000).rem_euclid(86_400_000_000);
    Ok(Value::String(format!("{}Z", fmt_hms(utc, &frac))))
}

/// "YYYY-MM-DD HH:MM:SS[.f][±off][ BC]" → (epoch micros, fraction digits).
fn parse_ts(text: &str, kind: &str, zoned: bool) -> Result<(i64, String), String> {
    let (s, bc) = strip_bc(text);
    let (d, t) = s
        .split_once(' ')
        .ok_or_else(|| bad(kind, text, "expected 'YYYY-MM-DD HH:MM:SS'"))?;
    let (t, off) = if zoned {
        split_offset(t, kind, text)?
    } else {
        (t, 0)
    };
    let days = parse_date(d, bc, kind, text)?;
    let (us, frac) = hms(t, kind, text, 24)?;
    days.checked_mul(86_400_000_000)
        .and_then(|v| v.checked_add(us - off * 1_000_000))
        .map(|v| (v, frac))
        .ok_or_else(|| bad(kind, text, "out of range"))
}

/// timestamp → MicroTimestamp. ±infinity use the PgJDBC sentinels
/// (PGStatement.DATE_POSITIVE/NEGATIVE_INFINITY) that Debezium passes on.
/// With time.precision.mode=adaptive, timestamp(0..3) is a Timestamp (ms).
pub(super) fn timestamp(text: &str, type_mod: i32) -> Result<Value, String> {
    let millis = (0..=3).contains(&type_mod);
    match text {
        "infinity" => Ok(Value::from(9_223_372_036_825_200_000i64)),
        "-infinity" => Ok(Value::from(-9_223_372_036_832_400_000i64)),
        _ => parse_ts(text, "timestamp", false)
            .map(|(us, _)| Value::from(if millis { us.div_euclid(1000) } else { us })),
    }
}

/// timestamptz → ZonedTimestamp: ISO-8601 in UTC, years as java.time prints
/// them (4 digits, '+' above 9999, '-' for astronomical negative years).
/// The fraction has the column's precision (6 when unconstrained), as
/// Debezium prints it: "2024-03-01T06:30:00.000000Z".
pub(super) fn timestamptz(text: &str, type_mod: i32) -> Result<Value, String> {
    if text == "infinity" || text == "-infinity" {
        return Ok(Value::String(text.to_owned()));
    }
    let (us, mut frac) = parse_ts(text, "timestamptz", true)?;
    let precision = if (0..=6).contains(&type_mod) {
        type_mod as usize
    } else {
        6
    };
    frac.truncate(precision);
    while frac.len() < precision {
        frac.push('0');
    }
    let (days, tod) = (us.div_euclid(86_400_000_000), us.rem_euclid(86_400_000_000));
    let (y, m, d) = civil_from_days(days);
    let year = match y {
        0..=9999 => format!("{y:04}"),
        10000.. => format!("+{y}"),
        _ => format!("-{:04}", -y),
    };
    Ok(Value::String(format!(
        "{year}-{m:02}-{d:02}T{}Z",
        fmt_hms(tod, &frac)
    )))
}

/// Interval (IntervalStyle=postgres) → MicroDuration. Computed exactly in
/// integers (1 month = 30.4375 days = 2_629_800 s) rather than via doubles.
pub(super) fn interval(text: &str) -> Result<Value, String> {
    if text.trim().is_empty() {
        return Err(bad("interval", text, "empty"));
    }
    let mut total: i128 = 0;
    let mut toks = text.split_whitespace();
    while let Some(tok) = toks.next() {
        let (neg, body) = match tok.as_bytes().first() {
            Some(b'-') => (true, &tok[1..]),
            Some(b'+') => (false, &tok[1..]),
            _ => (false, tok),
        };
        let v: i128 = if body.contains(':') {
            i128::from(hms(body, "interval", text, i64::MAX)?.0)
        } else {
            let n = i128::from(digits_i64(body, "interval", text)?);
            let unit = toks.next().unwrap_or("");
            let secs: i128 = match unit {
                "year" | "years" => 12 * 2_629_800,
                "mon" | "mons" => 2_629_800,
                "day" | "days" => 86_400,
                "hour" | "hours" => 3_600,
                "min" | "mins" => 60,
                "sec" | "secs" => 1,
                _ => return Err(bad("interval", text, &format!("unknown unit {unit:?}"))),
            };
            n * secs * 1_000_000
        };
        total = total
            .checked_add(if neg { -v } else { v })
            .ok_or_else(|| bad("interval", text, "out of range"))?;
    }
    i64::try_from(total)
        .map(Value::from)
        .map_err(|_| bad("interval", text, "out of range"))
}

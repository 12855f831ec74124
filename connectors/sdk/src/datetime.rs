//! Dates as Kafka Connect's transforms write and read them: patterns of
//! `java.text.SimpleDateFormat` (TimestampConverter's `format`,
//! TimestampRouter's `timestamp.format`), always in UTC as those transforms
//! set it, over milliseconds since the Unix epoch; and the civil calendar
//! arithmetic behind them.
//!
//! Pattern letters: `G y Y M L d D E u a H k K h m s S z Z X`, quoted text
//! (`'T'`, `''` for a quote) and any other non-letter as it is. Week-based
//! letters (`w W F`) are refused when the pattern is compiled.

pub const MILLIS_PER_DAY: i64 = 86_400_000;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1-12).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(char, usize),
}

/// A compiled SimpleDateFormat pattern, in UTC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateFormat {
    pattern: String,
    parts: Vec<Part>,
}

fn is_numeric(letter: char, count: usize) -> bool {
    match letter {
        'M' | 'L' => count < 3,
        'G' | 'E' | 'a' | 'z' | 'Z' | 'X' => false,
        _ => true,
    }
}

impl DateFormat {
    /// Compiles a pattern; unknown letters and an unclosed quote are errors.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                if chars.get(i + 1) == Some(&'\'') {
                    text.push('\'');
                    i += 2;
                    continue;
                }
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => return Err(format!("unterminated quote in pattern '{pattern}'")),
                        Some('\'') if chars.get(j + 1) == Some(&'\'') => {
                            text.push('\'');
                            j += 2;
                        }
                        Some('\'') => break,
                        Some(&q) => {
                            text.push(q);
                            j += 1;
                        }
                    }
                }
                i = j + 1;
            } else if c.is_ascii_alphabetic() {
                if !"GyYMLdDEuaHkKhmsSzZX".contains(c) {
                    return Err(format!(
                        "illegal pattern character '{c}' in pattern '{pattern}'"
                    ));
                }
                let mut n = 1;
                while chars.get(i + n) == Some(&c) {
                    n += 1;
                }
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Field(c, n));
                i += n;
            } else {
                text.push(c);
                i += 1;
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(DateFormat {
            pattern: pattern.to_string(),
            parts,
        })
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Formats milliseconds since the epoch, in UTC.
    pub fn format(&self, millis: i64) -> String {
        let days = millis.div_euclid(MILLIS_PER_DAY);
        let ms_of_day = millis.rem_euclid(MILLIS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        let hour = ms_of_day / 3_600_000;
        let minute = ms_of_day / 60_000 % 60;
        let second = ms_of_day / 1000 % 60;
        let milli = ms_of_day % 1000;
        let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
        let mut out = String::new();
        let pad = |out: &mut String, v: i64, n: usize| out.push_str(&format!("{v:0n$}"));
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(c, n) => {
                    let n = *n;
                    match c {
                        'G' => out.push_str(if year > 0 { "AD" } else { "BC" }),
                        'y' | 'Y' if n == 2 => pad(&mut out, year.rem_euclid(100), 2),
                        'y' | 'Y' => pad(&mut out, year, n),
                        'M' | 'L' if n >= 4 => out.push_str(MONTHS[month as usize - 1]),
                        'M' | 'L' if n == 3 => out.push_str(&MONTHS[month as usize - 1][..3]),
                        'M' | 'L' => pad(&mut out, i64::from(month), n),
                        'd' => pad(&mut out, i64::from(day), n),
                        'D' => pad(&mut out, days - days_from_civil(year, 1, 1) + 1, n),
                        'E' if n >= 4 => out.push_str(DAYS[weekday]),
                        'E' => out.push_str(&DAYS[weekday][..3]),
                        'u' => pad(&mut out, weekday as i64 + 1, n),
                        'a' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
                        'H' => pad(&mut out, hour, n),
                        'k' => pad(&mut out, if hour == 0 { 24 } else { hour }, n),
                        'K' => pad(&mut out, hour % 12, n),
                        'h' => pad(&mut out, if hour % 12 == 0 { 12 } else { hour % 12 }, n),
                        'm' => pad(&mut out, minute, n),
                        's' => pad(&mut out, second, n),
                        'S' => pad(&mut out, milli, n),
                        'z' if n >= 4 => out.push_str("Coordinated Universal Time"),
                        'z' => out.push_str("UTC"),
                        'Z' => out.push_str("+0000"),
                        _ => out.push('Z'), // 'X': ISO 8601 zone, zero offset
                    }
                }
            }
        }
        out
    }

    /// Parses text in this pattern to milliseconds since the epoch (UTC
    /// unless the text carries a zone offset).
    pub fn parse(&self, text: &str) -> Result<i64, String> {
        let fail = |why: &str| {
            format!(
                "'{text}' does not match the pattern '{}': {why}",
                self.pattern
            )
        };
        let mut rest = text;
        let (mut year, mut month, mut day, mut day_of_year) = (1970i64, 1u32, 1u32, None);
        let (mut hour, mut minute, mut second, mut milli) = (0i64, 0i64, 0i64, 0i64);
        let (mut half_hour, mut pm, mut offset_ms) = (None::<i64>, None::<bool>, 0i64);
        for (i, p) in self.parts.iter().enumerate() {
            match p {
                Part::Text(t) => {
                    rest = rest
                        .strip_prefix(t.as_str())
                        .ok_or_else(|| fail(&format!("expected '{t}'")))?;
                }
                Part::Field(c, n) if is_numeric(*c, *n) => {
                    let abutting = matches!(self.parts.get(i + 1), Some(Part::Field(c2, n2)) if is_numeric(*c2, *n2));
                    let signed = matches!(c, 'y' | 'Y') && rest.starts_with('-');
                    let body = if signed { &rest[1..] } else { rest };
                    let digits = body.bytes().take_while(u8::is_ascii_digit).count();
                    let take = if abutting { digits.min(*n) } else { digits };
                    if take == 0 {
                        return Err(fail(&format!("expected digits for '{c}'")));
                    }
                    let mut v: i64 = body[..take]
                        .parse()
                        .map_err(|_| fail("number out of range"))?;
                    if signed {
                        v = -v;
                    }
                    rest = &body[take..];
                    match c {
                        'y' | 'Y' if *n <= 2 && take == 2 => year = two_digit_year(v),
                        'y' | 'Y' => year = v,
                        'M' | 'L' => month = in_range(v, 1, 12).ok_or_else(|| fail("month"))?,
                        'd' => day = in_range(v, 1, 31).ok_or_else(|| fail("day"))?,
                        'D' => day_of_year = Some(v),
                        'u' => {}
                        'H' => hour = v,
                        'k' => hour = if v == 24 { 0 } else { v },
                        'K' | 'h' => half_hour = Some(v % 12),
                        'm' => minute = v,
                        's' => second = v,
                        _ => milli = v, // 'S'
                    }
                }
                Part::Field(c, _) => match c {
                    'M' | 'L' => {
                        let (m, len) =
                            name_in(rest, &MONTHS).ok_or_else(|| fail("expected a month name"))?;
                        month = m as u32 + 1;
                        rest = &rest[len..];
                    }
                    'E' => {
                        let (_, len) =
                            name_in(rest, &DAYS).ok_or_else(|| fail("expected a day name"))?;
                        rest = &rest[len..];
                    }
                    'a' => {
                        let head = rest.get(..2).unwrap_or("").to_ascii_uppercase();
                        pm = Some(match head.as_str() {
                            "AM" => false,
                            "PM" => true,
                            _ => return Err(fail("expected AM or PM")),
                        });
                        rest = &rest[2..];
                    }
                    'G' => {
                        rest = rest.strip_prefix("AD").ok_or_else(|| fail("expected AD"))?;
                    }
                    _ => {
                        let (ms, len) = zone(rest).ok_or_else(|| fail("expected a zone"))?;
                        offset_ms = ms;
                        rest = &rest[len..];
                    }
                },
            }
        }
        // As SimpleDateFormat.parse, text after the pattern is ignored.
        if let Some(h) = half_hour {
            hour = h + if pm == Some(true) { 12 } else { 0 };
        } else if pm == Some(true) && hour < 12 {
            hour += 12;
        }
        let days = match day_of_year {
            Some(d) => days_from_civil(year, 1, 1) + d - 1,
            None => days_from_civil(year, month, day),
        };
        Ok(
            days * MILLIS_PER_DAY + hour * 3_600_000 + minute * 60_000 + second * 1000 + milli
                - offset_ms,
        )
    }
}

fn in_range(v: i64, lo: i64, hi: i64) -> Option<u32> {
    (lo..=hi).contains(&v).then_some(v as u32)
}

/// SimpleDateFormat's two-digit years: within 80 years before and 20 after now.
fn two_digit_year(v: i64) -> i64 {
    let now_year = civil_from_days(crate::now_millis().div_euclid(MILLIS_PER_DAY)).0;
    let start = now_year - 80;
    let mut y = start - start.rem_euclid(100) + v;
    if y < start {
        y += 100;
    }
    y
}

/// A full or three-letter name (SimpleDateFormat takes either, whatever
/// the letter count); (index, length).
fn name_in(text: &str, names: &[&str]) -> Option<(usize, usize)> {
    let lower = text.to_ascii_lowercase();
    let full = names
        .iter()
        .position(|m| lower.starts_with(&m.to_ascii_lowercase()))
        .map(|i| (i, names[i].len()));
    full.or_else(|| {
        names
            .iter()
            .position(|m| lower.starts_with(&m[..3].to_ascii_lowercase()))
            .map(|i| (i, 3))
    })
}

/// A zone: `Z`, `UTC`, `GMT`, optionally followed by (or just) `±hh`,
/// `±hhmm` or `±hh:mm`; (offset ms, length).
fn zone(text: &str) -> Option<(i64, usize)> {
    if text.starts_with('Z') {
        return Some((0, 1));
    }
    let mut at = 0;
    for name in ["UTC", "GMT"] {
        if text.starts_with(name) {
            at = 3;
        }
    }
    let rest = &text[at..];
    let sign = match rest.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') => -1,
        _ if at > 0 => return Some((0, at)),
        _ => return None,
    };
    let digits: Vec<u8> = rest[1..]
        .bytes()
        .take(5)
        .take_while(|b| b.is_ascii_digit() || *b == b':')
        .collect();
    let clean: String = digits
        .iter()
        .filter(|b| b.is_ascii_digit())
        .map(|b| *b as char)
        .collect();
    let (h, m) = match clean.len() {
        1 | 2 => (clean.parse::<i64>().ok()?, 0),
        4 => (
            clean[..2].parse::<i64>().ok()?,
            clean[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    Some((sign * (h * 3_600_000 + m * 60_000), at + 1 + digits.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_123_456; // 2023-11-14T22:15:23.456Z, a Tuesday

    #[test]
    fn civil_dates_round_trip() {
        for days in [-719_468, -1, 0, 1, 59, 365, 10_957, 19_675, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
    }

    #[test]
    fn formats_as_simple_date_format_in_utc() {
        let f = |p: &str| DateFormat::new(p).unwrap().format(T);
        assert_eq!(f("yyyyMMdd"), "20231114");
        assert_eq!(
            f("yyyy-MM-dd'T'HH:mm:ss.SSS'Z'"),
            "2023-11-14T22:15:23.456Z"
        );
        assert_eq!(f("EEE, d MMM yy h:mm a z"), "Tue, 14 Nov 23 10:15 PM UTC");
        assert_eq!(f("EEEE MMMM D XXX Z ''"), "Tuesday November 318 Z +0000 '");
        assert_eq!(f("HH:mm:ss.SSS"), "22:15:23.456");
        assert_eq!(DateFormat::new("HH").unwrap().format(-1), "23");
        assert!(DateFormat::new("yyyy-ww").is_err());
        assert!(DateFormat::new("'open").is_err());
    }

    #[test]
    fn parses_what_it_formats_and_zones() {
        for p in [
            "yyyyMMdd HHmmssSSS",
            "yyyy-MM-dd'T'HH:mm:ss.SSSX",
            "EEE, d MMM yyyy hh:mm:ss.SSS a",
            "yyyy-MM-dd HH:mm:ss.SSS Z",
        ] {
            let f = DateFormat::new(p).unwrap();
            assert_eq!(f.parse(&f.format(T)), Ok(T), "{p}");
        }
        let f = DateFormat::new("yyyy-MM-dd HH:mmXXX").unwrap();
        assert_eq!(
            f.parse("2023-11-15 00:15+02:00"),
            DateFormat::new("yyyy-MM-dd HH:mm")
                .unwrap()
                .parse("2023-11-14 22:15")
        );
        assert!(f.parse("2023-13-01 00:00Z").is_err());
        assert!(f.parse("yesterday").is_err());
    }
}

//! Text-format PostgreSQL column values → JSON, shaped like Debezium's
//! Postgres connector output through the Kafka JSON converter
//! (schemas.enable=false). Pure logic, no chrono: calendar math is local.

use serde_json::{Map, Number, Value};

mod temporal;
use temporal::{date, interval, time_us, timestamp, timestamptz, timetz};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DecimalMode {
    Precise,
    Double,
    String,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mapping {
    pub decimal: DecimalMode,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            decimal: DecimalMode::Precise,
        }
    }
}

/// Debezium's placeholder for unchanged TOASTed values.
pub fn unavailable() -> Value {
    Value::String("__debezium_unavailable_value".to_owned())
}

/// Element type OID of a supported array type OID.
pub fn element_type(array_oid: u32) -> Option<u32> {
    Some(match array_oid {
        1005 => 21,
        1007 => 23,
        1016 => 20,
        1009 => 25,
        1015 => 1043,
        1000 => 16,
        1021 => 700,
        1022 => 701,
        1231 => 1700,
        2951 => 2950,
        1182 => 1082,
        1115 => 1114,
        1185 => 1184,
        199 => 114,
        3807 => 3802,
        1014 => 1042,
        _ => return None,
    })
}

/// Map one text-format value. Unknown OIDs (enums, citext, ...) pass through
/// as strings, as Debezium does for types it has no special schema for.
pub fn to_json(type_oid: u32, type_mod: i32, text: &str, m: &Mapping) -> Result<Value, String> {
    if let Some(elem) = element_type(type_oid) {
        return array(elem, type_mod, text, m);
    }
    let num = |s: &str| -> Result<Value, String> {
        s.parse::<i64>()
            .map(Value::from)
            .map_err(|e| bad("integer", s, &e.to_string()))
    };
    match type_oid {
        16 => match text {
            "t" | "true" => Ok(Value::Bool(true)),
            "f" | "false" => Ok(Value::Bool(false)),
            _ => Err(bad("bool", text, "expected 't' or 'f'")),
        },
        21 | 23 | 20 => num(text),
        26 => text
            .parse::<u32>()
            .map(Value::from)
            .map_err(|e| bad("oid", text, &e.to_string())),
        700 | 701 => float(text),
        1700 => numeric(type_mod, text, m.decimal),
        790 => money(text, m.decimal),
        17 => Ok(Value::String(base64(&bytea(text)?))),
        1082 => date(text),
        // time.precision.mode=adaptive: up to 3 digits Time (ms), else MicroTime.
        1083 if (0..=3).contains(&type_mod) => Ok(Value::from(time_us(text, "time")? / 1000)),
        1083 => Ok(Value::from(time_us(text, "time")?)),
        1266 => timetz(text),
        1114 => timestamp(text, type_mod),
        1184 => timestamptz(text, type_mod),
        1186 => interval(text),
        _ => Ok(Value::String(text.to_owned())),
    }
}

/// Error text naming the type and (a bounded prefix of) the offending input.
fn bad(kind: &str, text: &str, why: &str) -> String {
    let shown: String = text.chars().take(64).collect();
    let more = if shown.len() < text.len() { "..." } else { "" };
    format!("invalid {kind} value {shown:?}{more}: {why}")
}

fn float_special(f: f64) -> Value {
    if f.is_nan() {
        Value::String("NaN".into())
    } else if f > 0.0 {
        Value::String("Infinity".into())
    } else {
        Value::String("-Infinity".into())
    }
}

fn float(text: &str) -> Result<Value, String> {
    let f: f64 = text
        .parse()
        .map_err(|e: std::num::ParseFloatError| bad("float", text, &e.to_string()))?;
    Ok(Number::from_f64(f).map_or_else(|| float_special(f), Value::Number))
}

// ---------- numeric ----------

/// money → Decimal of scale 2 (Debezium's `money.fraction.digits`), from
/// the locale-formatted text ("$1,234.50", "-$3.00").
fn money(text: &str, mode: DecimalMode) -> Result<Value, String> {
    let neg = text.contains('-') || text.starts_with('(');
    let digits: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    if digits.is_empty() {
        return Err(bad("money", text, "no digits"));
    }
    let plain = if neg { format!("-{digits}") } else { digits };
    // numeric(20, 2)'s type modifier: ((precision << 16) | scale) + 4.
    numeric(((20 << 16) | 2) + 4, &plain, mode)
}

fn numeric(type_mod: i32, text: &str, mode: DecimalMode) -> Result<Value, String> {
    match mode {
        DecimalMode::String => return Ok(Value::String(text.to_owned())),
        DecimalMode::Double => {
            return float(text).map_err(|_| bad("numeric", text, "not a number"))
        }
        DecimalMode::Precise => {}
    }
    let (neg, mut digits, scale) = parse_decimal(text)?;
    // typmod < VARHDRSZ (usually -1) means unconstrained: VariableScaleDecimal.
    if type_mod < 4 {
        let mut o = Map::new();
        o.insert("scale".into(), Value::from(scale));
        o.insert(
            "value".into(),
            Value::String(base64(&twos_complement(neg, &digits))),
        );
        return Ok(Value::Object(o));
    }
    // Scale is an 11-bit signed field since PG 15 (negative scales allowed);
    // for 0..=1000 this equals the classic `(typmod - 4) & 0xFFFF`.
    let target = ((((type_mod - 4) & 0x7ff) ^ 1024) - 1024) as i64;
    if target >= scale {
        digits.resize(digits.len() + (target - scale) as usize, b'0');
    } else {
        // PG already rounded to the column scale; only zeros may be dropped.
        let drop = (scale - target) as usize;
        let keep = digits.len().saturating_sub(drop);
        if digits[keep..].iter().any(|&d| d != b'0') {
            return Err(bad(
                "numeric",
                text,
                "more fractional digits than the column scale",
            ));
        }
        digits.truncate(keep);
    }
    Ok(Value::String(base64(&twos_complement(neg, &digits))))
}

/// Plain decimal (no exponent, as numeric_out prints) → (negative, all ASCII
/// digits without the dot, number of fractional digits).
fn parse_decimal(text: &str) -> Result<(bool, Vec<u8>, i64), String> {
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad(
            "numeric",
            text,
            "no digits (NaN/Infinity have no Decimal form)",
        ));
    }
    if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad("numeric", text, "expected [-]digits[.digits]"));
    }
    let digits = int.bytes().chain(frac.bytes()).collect();
    Ok((neg, digits, frac.len() as i64))
}

/// Decimal ASCII digits → minimal big-endian two's complement, like Java's
/// BigInteger.toByteArray. Accumulates base-2^32 limbs 9 digits at a time,
/// which stays fast for numerics with thousands of digits.
fn twos_complement(neg: bool, digits: &[u8]) -> Vec<u8> {
    let mut limbs: Vec<u32> = Vec::new(); // little-endian
    for chunk in digits.chunks(9) {
        let mul = 10u64.pow(chunk.len() as u32);
        let mut carry = chunk
            .iter()
            .fold(0u64, |a, &d| a * 10 + u64::from(d.wrapping_sub(b'0')));
        for l in limbs.iter_mut() {
            let v = u64::from(*l) * mul + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            limbs.push(carry as u32);
        }
    }
    let mut mag: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    let lead = mag.iter().take_while(|&&b| b == 0).count();
    mag.drain(..lead);
    if mag.is_empty() {
        return vec![0];
    }
    // One extra byte guarantees room for the sign bit in both cases.
    mag.insert(0, 0);
    if neg {
        for b in mag.iter_mut() {
            *b = !*b;
        }
        for b in mag.iter_mut().rev() {
            let (v, overflow) = b.overflowing_add(1);
            *b = v;
            if !overflow {
                break;
            }
        }
    }
    let fill = if neg { 0xFF } else { 0 };
    let mut cut = 0;
    while cut + 1 < mag.len() && mag[cut] == fill && (mag[cut + 1] & 0x80 != 0) == neg {
        cut += 1;
    }
    mag.split_off(cut)
}

/// Standard alphabet with padding (what the JSON converter writes for bytes).
pub fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------- bytea ----------

/// bytea_output=hex (`\x0a0b`), falling back to the legacy escape format.
fn bytea(text: &str) -> Result<Vec<u8>, String> {
    let hexval = |b: u8| (b as char).to_digit(16);
    if let Some(hex) = text.strip_prefix("\\x") {
        if hex.len() % 2 != 0 {
            return Err(bad("bytea", text, "odd number of hex digits"));
        }
        return hex
            .as_bytes()
            .chunks(2)
            .map(|p| match (hexval(p[0]), hexval(p[1])) {
                (Some(h), Some(l)) => Ok((h * 16 + l) as u8),
                _ => Err(bad("bytea", text, "non-hex digit")),
            })
            .collect();
    }
    let b = text.as_bytes();
    let (mut out, mut i) = (Vec::with_capacity(b.len()), 0);
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
        } else if b.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = b.get(i + 1..i + 4).filter(|o| {
                (b'0'..=b'3').contains(&o[0]) && o[1..].iter().all(|d| (b'0'..=b'7').contains(d))
            });
            let o = oct.ok_or_else(|| bad("bytea", text, "bad escape sequence"))?;
            out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
            i += 4;
        }
    }
    Ok(out)
}

// ---------- arrays ----------

fn array(elem: u32, type_mod: i32, text: &str, m: &Mapping) -> Result<Value, String> {
    let mut s = text.trim();
    // Non-default lower bounds are printed as "[2:3]={...}".
    if s.starts_with('[') {
        let eq = s
            .find('=')
            .ok_or_else(|| bad("array", text, "bad dimension header"))?;
        s = s[eq + 1..].trim_start();
    }
    let mut p = ArrayParser {
        b: s.as_bytes(),
        pos: 0,
        elem,
        type_mod,
        m,
        whole: text,
    };
    let v = p.array(0)?;
    p.ws();
    if p.pos != p.b.len() {
        return Err(bad("array", text, "trailing characters after '}'"));
    }
    Ok(v)
}

struct ArrayParser<'a> {
    b: &'a [u8],
    pos: usize,
    elem: u32,
    type_mod: i32,
    m: &'a Mapping,
    whole: &'a str,
}

impl ArrayParser<'_> {
    fn ws(&mut self) {
        while self.b.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn err(&self, why: &str) -> String {
        bad("array", self.whole, &format!("{why} at byte {}", self.pos))
    }

    fn array(&mut self, depth: usize) -> Result<Value, String> {
        // PostgreSQL allows at most 6 dimensions; the cap also bounds recursion.
        if depth > 6 {
            return Err(self.err("too many dimensions"));
        }
        if self.b.get(self.pos) != Some(&b'{') {
            return Err(self.err("expected '{'"));
        }
        self.pos += 1;
        let mut out = Vec::new();
        self.ws();
        if self.b.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            return Ok(Value::Array(out));
        }
        loop {
            self.ws();
            out.push(match self.b.get(self.pos) {
                Some(b'{') => self.array(depth + 1)?,
                _ => self.element()?,
            });
            self.ws();
            match self.b.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Array(out));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn element(&mut self) -> Result<Value, String> {
        let quoted = self.b.get(self.pos) == Some(&b'"');
        if quoted {
            self.pos += 1;
        }
        let (mut raw, mut escaped) = (Vec::new(), false);
        loop {
            let c = *self
                .b
                .get(self.pos)
                .ok_or_else(|| self.err("unterminated element"))?;
            match c {
                b'\\' => {
                    let n = *self
                        .b
                        .get(self.pos + 1)
                        .ok_or_else(|| self.err("dangling '\\'"))?;
                    raw.push(n);
                    escaped = true;
                    self.pos += 2;
                    continue;
                }
                b'"' if quoted => {
                    self.pos += 1;
                    break;
                }
                b'"' => return Err(self.err("stray '\"'")),
                b',' | b'}' if !quoted => break,
                _ => raw.push(c),
            }
            self.pos += 1;
        }
        if !quoted {
            while raw.last().is_some_and(u8::is_ascii_whitespace) {
                raw.pop();
            }
            if raw.is_empty() {
                return Err(self.err("empty unquoted element"));
            }
            if !escaped && raw.eq_ignore_ascii_case(b"NULL") {
                return Ok(Value::Null);
            }
        }
        let s = String::from_utf8(raw).map_err(|_| self.err("invalid UTF-8"))?;
        to_json(self.elem, self.type_mod, &s, self.m)
    }
}

#[cfg(test)]
mod tests;

//! `debezium-json` as Debezium's MySQL connector writes it with its default settings through
//! Kafka Connect's `JsonConverter` (`schemas.enable=true`): `{"schema": …, "payload": …}` for
//! the value and the key (`values: compatible`). Facts and sources: `docs/formats.md`.
//!
//! # The record
//!
//! The payload is `before, after, source, transaction, op, ts_ms, ts_us, ts_ns`; `source` is
//! `version, connector, name, ts_ms, snapshot, db, sequence, ts_us, ts_ns, table, server_id,
//! gtid, file, pos, row, thread, query` with `pos` where the rows event starts and `row` the
//! row's index in it (from 0), `gtid` the transaction's. The schema part is what
//! `JsonConverter` writes for Debezium's Connect schema: per column its Connect type, optional
//! when the column is nullable, and Debezium's logical type (`io.debezium.time.Date`,
//! `org.apache.kafka.connect.data.Decimal`, …) with its parameters. Schema names use the
//! topic as Debezium's `topic.prefix`. The key is `{"schema": <db>.<table>.Key, "payload":
//! {primary key}}`, and no key for a table without a primary key.

use std::fmt::Write as _;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use ferry_domain::change::{ChangeEvent, Column, Operation, RowChange};
use ferry_domain::selection::ColumnMask;
use ferry_domain::task_config::{
    BigintUnsignedMode, BinaryMode, DebeziumOptions, DecimalMode, TimePrecisionMode,
};
use ferry_domain::value::{Date, Value};

use super::java::{java_double, java_float};
use super::json::write_str;
use super::rows::{Bytes, carried, fraction_digits};

/// How Debezium writes a column: its Connect type and logical name, from the declared type.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Boolean,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    /// `org.apache.kafka.connect.data.Decimal` (precise), a string or a double.
    Decimal {
        precision: u32,
        scale: u32,
    },
    /// BIGINT UNSIGNED in `precise` mode: `Decimal(20, 0)`.
    UnsignedDecimal,
    Date,
    MicroTime,
    /// Kafka Connect's own temporal types (`time_precision_mode: connect`).
    ConnectDate,
    ConnectTime,
    ConnectTimestamp,
    /// DATETIME(0–3): epoch milliseconds.
    Timestamp,
    /// DATETIME(4–6): epoch microseconds.
    MicroTimestamp,
    ZonedTimestamp {
        fsp: u8,
    },
    Year,
    String,
    Bytes,
    Bits {
        length: u32,
    },
    Enum {
        allowed: String,
    },
    EnumSet {
        allowed: String,
    },
    Json,
    Geometry,
    Point,
}

/// The numbers inside the first parentheses of a declared type (`decimal(10,2)` → [10, 2]).
fn type_numbers(t: &str) -> Vec<u32> {
    t.split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(inner, _)| {
            inner
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The members of an ENUM or SET declaration, as Debezium's `allowed` parameter: joined with
/// `,`, a comma inside a member escaped with `\`.
fn allowed(t: &str) -> String {
    let inner = t.split_once('(').map_or("", |(_, rest)| {
        rest.rsplit_once(')').map_or(rest, |(i, _)| i)
    });
    let mut members: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match (&mut current, c) {
            (None, '\'') => current = Some(String::new()),
            (Some(m), '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                m.push('\'');
            }
            (Some(_), '\'') => members.extend(current.take()),
            (Some(m), c) => m.push(c),
            (None, _) => {}
        }
    }
    members
        .iter()
        .map(|m| m.replace(',', "\\,"))
        .collect::<Vec<_>>()
        .join(",")
}

fn kind_of(source_type: &str, options: &DebeziumOptions) -> Kind {
    let t = source_type.trim().to_ascii_lowercase();
    let base: String = t.chars().take_while(char::is_ascii_alphanumeric).collect();
    let unsigned = t.contains("unsigned");
    let numbers = type_numbers(&t);
    match base.as_str() {
        "bool" | "boolean" => Kind::Boolean,
        "tinyint" => Kind::Int16,
        "smallint" if unsigned => Kind::Int32,
        "smallint" => Kind::Int16,
        "mediumint" => Kind::Int32,
        "int" | "integer" if unsigned => Kind::Int64,
        "int" | "integer" => Kind::Int32,
        "bigint"
            if unsigned && options.bigint_unsigned_handling_mode == BigintUnsignedMode::Precise =>
        {
            Kind::UnsignedDecimal
        }
        "bigint" => Kind::Int64,
        "float" if numbers.len() == 2 || numbers.first().is_some_and(|p| *p >= 25) => Kind::Float64,
        "float" => Kind::Float32,
        "double" | "real" => Kind::Float64,
        "decimal" | "numeric" | "dec" | "fixed" => Kind::Decimal {
            precision: numbers.first().copied().unwrap_or(10),
            scale: numbers.get(1).copied().unwrap_or(0),
        },
        "date" | "time" | "datetime"
            if options.time_precision_mode == TimePrecisionMode::Connect =>
        {
            match base.as_str() {
                "date" => Kind::ConnectDate,
                "time" => Kind::ConnectTime,
                _ => Kind::ConnectTimestamp,
            }
        }
        "date" => Kind::Date,
        "time" => Kind::MicroTime,
        "datetime" if fraction_digits(&t) > 3 => Kind::MicroTimestamp,
        "datetime" => Kind::Timestamp,
        "timestamp" => Kind::ZonedTimestamp {
            fsp: fraction_digits(&t),
        },
        "year" => Kind::Year,
        "bit" => match numbers.first().copied().unwrap_or(1) {
            1 => Kind::Boolean,
            n => Kind::Bits { length: n },
        },
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => Kind::Bytes,
        "enum" => Kind::Enum {
            allowed: allowed(&t),
        },
        "set" => Kind::EnumSet {
            allowed: allowed(&t),
        },
        "json" => Kind::Json,
        "point" => Kind::Point,
        "geometry" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => Kind::Geometry,
        _ => Kind::String,
    }
}

/// One field's schema as `JsonConverter` writes it: `type, [fields], optional, [name,
/// version], [doc], [parameters], field`.
fn write_field_schema(
    out: &mut Vec<u8>,
    field: &str,
    kind: &Kind,
    optional: bool,
    options: &DebeziumOptions,
) {
    let logical = |out: &mut Vec<u8>, ty: &str, name: &str| {
        let _ = write!(
            Bytes(out),
            "{{\"type\":\"{ty}\",\"optional\":{optional},\"name\":\"{name}\",\"version\":1"
        );
    };
    match kind {
        Kind::Boolean => plain(out, "boolean", optional),
        Kind::Int16 => plain(out, "int16", optional),
        Kind::Int32 => plain(out, "int32", optional),
        Kind::Int64 => plain(out, "int64", optional),
        Kind::Float32 => plain(out, "float", optional),
        Kind::Float64 => plain(out, "double", optional),
        Kind::Decimal { precision, scale } => match options.decimal_handling_mode {
            DecimalMode::Precise => {
                logical(out, "bytes", "org.apache.kafka.connect.data.Decimal");
                let _ = write!(
                    Bytes(out),
                    ",\"parameters\":{{\"scale\":\"{scale}\",\"connect.decimal.precision\":\"{precision}\"}}"
                );
            }
            DecimalMode::String => plain(out, "string", optional),
            DecimalMode::Double => plain(out, "double", optional),
        },
        Kind::UnsignedDecimal => {
            logical(out, "bytes", "org.apache.kafka.connect.data.Decimal");
            out.extend_from_slice(
                b",\"parameters\":{\"scale\":\"0\",\"connect.decimal.precision\":\"20\"}",
            );
        }
        Kind::Date => logical(out, "int32", "io.debezium.time.Date"),
        Kind::ConnectDate => logical(out, "int32", "org.apache.kafka.connect.data.Date"),
        Kind::ConnectTime => logical(out, "int32", "org.apache.kafka.connect.data.Time"),
        Kind::ConnectTimestamp => {
            logical(out, "int64", "org.apache.kafka.connect.data.Timestamp");
        }
        Kind::MicroTime => logical(out, "int64", "io.debezium.time.MicroTime"),
        Kind::Timestamp => logical(out, "int64", "io.debezium.time.Timestamp"),
        Kind::MicroTimestamp => logical(out, "int64", "io.debezium.time.MicroTimestamp"),
        Kind::ZonedTimestamp { .. } => logical(out, "string", "io.debezium.time.ZonedTimestamp"),
        Kind::Year => logical(out, "int32", "io.debezium.time.Year"),
        Kind::String => plain(out, "string", optional),
        Kind::Bytes => match options.binary_handling_mode {
            BinaryMode::Bytes => plain(out, "bytes", optional),
            _ => plain(out, "string", optional),
        },
        Kind::Bits { length } => {
            logical(out, "bytes", "io.debezium.data.Bits");
            let _ = write!(Bytes(out), ",\"parameters\":{{\"length\":\"{length}\"}}");
        }
        Kind::Enum { allowed } | Kind::EnumSet { allowed } => {
            let name = if matches!(kind, Kind::Enum { .. }) {
                "io.debezium.data.Enum"
            } else {
                "io.debezium.data.EnumSet"
            };
            logical(out, "string", name);
            out.extend_from_slice(b",\"parameters\":{\"allowed\":");
            write_str(out, allowed);
            out.push(b'}');
        }
        Kind::Json => logical(out, "string", "io.debezium.data.Json"),
        // Geometry structs are always optional (Debezium's builder makes them so).
        Kind::Geometry => out.extend_from_slice(
            b"{\"type\":\"struct\",\"fields\":[{\"type\":\"bytes\",\"optional\":false,\"field\":\"wkb\"},\
{\"type\":\"int32\",\"optional\":true,\"field\":\"srid\"}],\"optional\":true,\
\"name\":\"io.debezium.data.geometry.Geometry\",\"version\":1,\"doc\":\"Geometry\"",
        ),
        Kind::Point => out.extend_from_slice(
            b"{\"type\":\"struct\",\"fields\":[{\"type\":\"double\",\"optional\":false,\"field\":\"x\"},\
{\"type\":\"double\",\"optional\":false,\"field\":\"y\"},{\"type\":\"bytes\",\"optional\":true,\"field\":\"wkb\"},\
{\"type\":\"int32\",\"optional\":true,\"field\":\"srid\"}],\"optional\":true,\
\"name\":\"io.debezium.data.geometry.Point\",\"version\":1,\"doc\":\"Geometry (POINT)\"",
        ),
    }
    out.extend_from_slice(b",\"field\":");
    write_str(out, field);
    out.push(b'}');
}

fn plain(out: &mut Vec<u8>, ty: &str, optional: bool) {
    let _ = write!(Bytes(out), "{{\"type\":\"{ty}\",\"optional\":{optional}");
}

/// The minimal two's-complement big-endian bytes of the integer whose decimal digits are
/// `digits` (Java's `BigInteger.toByteArray`): Connect's `Decimal` of the unscaled value.
fn twos_complement(negative: bool, digits: &str) -> Vec<u8> {
    // The magnitude, base 256, big-endian.
    let mut mag: Vec<u8> = Vec::new();
    for d in digits.bytes().filter(u8::is_ascii_digit) {
        let mut carry = u32::from(d - b'0');
        for byte in mag.iter_mut().rev() {
            let v = u32::from(*byte) * 10 + carry;
            *byte = (v & 0xff) as u8;
            carry = v >> 8;
        }
        while carry > 0 {
            mag.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    while mag.first() == Some(&0) {
        mag.remove(0);
    }
    if mag.is_empty() {
        return vec![0];
    }
    if !negative {
        if mag[0] & 0x80 != 0 {
            mag.insert(0, 0);
        }
        return mag;
    }
    // -m in n bytes: fits when m <= 2^(8n-1).
    let fits = mag[0] < 0x80 || (mag[0] == 0x80 && mag[1..].iter().all(|b| *b == 0));
    if !fits {
        mag.insert(0, 0);
    }
    for b in &mut mag {
        *b = !*b;
    }
    for b in mag.iter_mut().rev() {
        let (v, overflow) = b.overflowing_add(1);
        *b = v;
        if !overflow {
            break;
        }
    }
    mag
}

/// A decimal's unscaled digits at the column's scale (`"12.3"` at scale 2 → `"1230"`).
fn unscaled(text: &str, scale: u32) -> (bool, String) {
    let (negative, body) = match text.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, text),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let scale = usize::try_from(scale).unwrap_or(0);
    let mut digits = String::with_capacity(int.len() + scale);
    digits.push_str(int);
    digits.extend(frac.chars().chain(std::iter::repeat('0')).take(scale));
    (negative, digits)
}

/// Debezium's time adjuster: a two-digit year (0–69 → 2000s, 70–99 → 1900s).
fn adjust_year(year: u16) -> i32 {
    match year {
        0..=69 => i32::from(year) + 2000,
        70..=99 => i32::from(year) + 1900,
        _ => i32::from(year),
    }
}

fn naive_date(d: &Date) -> Option<chrono::NaiveDate> {
    if d.year == 0 && d.month == 0 && d.day == 0 {
        return None;
    }
    chrono::NaiveDate::from_ymd_opt(adjust_year(d.year), d.month.into(), d.day.into())
}

/// One value as Debezium writes it in `kind`; `None` when it writes null (SQL NULL, or a zero
/// date in a nullable column).
fn write_value(out: &mut Vec<u8>, kind: &Kind, col: &Column, v: &Value, options: &DebeziumOptions) {
    let null = |out: &mut Vec<u8>| out.extend_from_slice(b"null");
    // A zero or invalid date: null in a nullable column, Debezium's fallback (0) otherwise.
    let zero = |out: &mut Vec<u8>, fallback: &str| {
        if col.nullable {
            out.extend_from_slice(b"null");
        } else {
            out.extend_from_slice(fallback.as_bytes());
        }
    };
    let base64 = |out: &mut Vec<u8>, bytes: &[u8]| {
        let _ = write!(Bytes(out), "\"{}\"", Base64Display::new(bytes, &STANDARD));
    };
    match (kind, v) {
        (_, Value::Null) => null(out),
        (Kind::Boolean, Value::Bit(b)) => {
            let _ = write!(Bytes(out), "{}", b.to_u64() != 0);
        }
        (Kind::Boolean, Value::Int(i)) => {
            let _ = write!(Bytes(out), "{}", *i != 0);
        }
        (Kind::UnsignedDecimal, Value::UInt(u)) => {
            base64(out, &twos_complement(false, &u.to_string()))
        }
        // BIGINT UNSIGNED in `long` mode wraps, as Debezium's does.
        (_, Value::UInt(u)) => {
            let _ = write!(Bytes(out), "{}", *u as i64);
        }
        (_, Value::Int(i)) => {
            let _ = write!(Bytes(out), "{i}");
        }
        (_, Value::Float(f)) => match java_float(*f) {
            Some(t) => out.extend_from_slice(t.as_bytes()),
            None => null(out),
        },
        (_, Value::Double(d)) => match java_double(*d) {
            Some(t) => out.extend_from_slice(t.as_bytes()),
            None => null(out),
        },
        (Kind::Decimal { scale, .. }, Value::Decimal(d)) => match options.decimal_handling_mode {
            DecimalMode::Precise => {
                let (negative, digits) = unscaled(d.as_str(), *scale);
                base64(out, &twos_complement(negative, &digits));
            }
            DecimalMode::String => write_str(out, d.as_str()),
            DecimalMode::Double => match d.as_str().parse::<f64>().ok().and_then(java_double) {
                Some(t) => out.extend_from_slice(t.as_bytes()),
                None => null(out),
            },
        },
        (_, Value::Decimal(d)) => write_str(out, d.as_str()),
        (_, Value::Year(y)) => {
            let _ = write!(Bytes(out), "{}", if *y == 0 { 0 } else { adjust_year(*y) });
        }
        (_, Value::Date(d)) => match naive_date(d) {
            Some(date) => {
                let days = date
                    .signed_duration_since(chrono::NaiveDate::default())
                    .num_days();
                let _ = write!(Bytes(out), "{days}");
            }
            None => zero(out, "0"),
        },
        (_, Value::DateTime(dt)) => {
            let at = naive_date(&dt.date).and_then(|d| {
                d.and_hms_micro_opt(
                    dt.hour.into(),
                    dt.minute.into(),
                    dt.second.into(),
                    dt.micros,
                )
            });
            match at {
                Some(at) if *kind == Kind::MicroTimestamp => {
                    let _ = write!(Bytes(out), "{}", at.and_utc().timestamp_micros());
                }
                Some(at) => {
                    let _ = write!(Bytes(out), "{}", at.and_utc().timestamp_millis());
                }
                None => zero(out, "0"),
            }
        }
        (_, Value::Time(t)) => {
            let micros =
                (i64::from(t.hours) * 3600 + i64::from(t.minutes) * 60 + i64::from(t.seconds))
                    * 1_000_000
                    + i64::from(t.micros);
            let micros = if t.negative { -micros } else { micros };
            // Connect's Time is milliseconds.
            let value = if *kind == Kind::ConnectTime {
                micros.div_euclid(1000)
            } else {
                micros
            };
            let _ = write!(Bytes(out), "{value}");
        }
        (_, Value::Timestamp(t)) => match t.to_utc() {
            Some(utc) => {
                let fsp = match kind {
                    Kind::ZonedTimestamp { fsp } => *fsp,
                    _ => 0,
                };
                let mut text = utc.format("%Y-%m-%dT%H:%M:%S").to_string();
                if fsp > 0 {
                    let digits = format!("{:06}", t.micros);
                    text.push('.');
                    text.push_str(&digits[..usize::from(fsp.min(6))]);
                } else if t.micros > 0 {
                    text.push('.');
                    text.push_str(format!("{:06}", t.micros).trim_end_matches('0'));
                }
                text.push('Z');
                write_str(out, &text);
            }
            None => zero(out, "\"1970-01-01T00:00:00Z\""),
        },
        (Kind::Bits { length }, Value::Bit(b)) => {
            // Little-endian (least significant byte first), ceil(n/8) bytes.
            let n = usize::try_from(length.div_ceil(8)).unwrap_or(8);
            let mut bytes: Vec<u8> = b.to_u64().to_le_bytes().to_vec();
            bytes.resize(n, 0);
            base64(out, &bytes);
        }
        (_, Value::Bit(b)) => {
            let _ = write!(Bytes(out), "{}", b.to_u64());
        }
        (_, Value::String(s) | Value::Json(s)) => write_str(out, s),
        (Kind::Bytes, Value::Bytes(b)) => match options.binary_handling_mode {
            BinaryMode::Bytes | BinaryMode::Base64 => base64(out, b),
            BinaryMode::Base64UrlSafe => {
                let _ = write!(
                    Bytes(out),
                    "\"{}\"",
                    Base64Display::new(b, &base64::engine::general_purpose::URL_SAFE)
                );
            }
            BinaryMode::Hex => {
                out.push(b'"');
                for x in b {
                    let _ = write!(Bytes(out), "{x:02x}");
                }
                out.push(b'"');
            }
        },
        (_, Value::Bytes(b)) => base64(out, b),
        (_, Value::Enum(e)) => write_str(out, &e.name),
        (_, Value::Set(s)) => write_str(out, &s.names.join(",")),
        (_, Value::Geometry(g)) => write_geometry(out, kind, g),
    }
}

/// `{"wkb": …, "srid": …}` (and `x`, `y` first for a POINT) of MySQL's SRID + WKB.
fn write_geometry(out: &mut Vec<u8>, kind: &Kind, g: &[u8]) {
    let srid = g
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .filter(|s| *s != 0);
    let wkb = g.get(4..).unwrap_or_default();
    out.push(b'{');
    if *kind == Kind::Point {
        let little = wkb.first() == Some(&1);
        let coordinate = |at: usize| {
            wkb.get(at..at + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(|b| {
                    if little {
                        f64::from_le_bytes(b)
                    } else {
                        f64::from_be_bytes(b)
                    }
                })
        };
        let text = |x: Option<f64>| x.and_then(java_double).unwrap_or_else(|| "null".into());
        let _ = write!(
            Bytes(out),
            "\"x\":{},\"y\":{},",
            text(coordinate(5)),
            text(coordinate(13))
        );
    }
    let _ = write!(
        Bytes(out),
        "\"wkb\":\"{}\",\"srid\":",
        Base64Display::new(wkb, &STANDARD)
    );
    match srid {
        Some(s) => {
            let _ = write!(Bytes(out), "{s}");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// The `source` block's schema (Debezium's `io.debezium.connector.mysql.Source`, version 1).
const SOURCE_SCHEMA: &str = concat!(
    r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},"#,
    r#"{"type":"string","optional":false,"field":"connector"},"#,
    r#"{"type":"string","optional":false,"field":"name"},"#,
    r#"{"type":"int64","optional":false,"field":"ts_ms"},"#,
    r#"{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},"default":"false","field":"snapshot"},"#,
    r#"{"type":"string","optional":false,"field":"db"},"#,
    r#"{"type":"string","optional":true,"field":"sequence"},"#,
    r#"{"type":"int64","optional":true,"field":"ts_us"},"#,
    r#"{"type":"int64","optional":true,"field":"ts_ns"},"#,
    r#"{"type":"string","optional":true,"field":"table"},"#,
    r#"{"type":"int64","optional":false,"field":"server_id"},"#,
    r#"{"type":"string","optional":true,"field":"gtid"},"#,
    r#"{"type":"string","optional":false,"field":"file"},"#,
    r#"{"type":"int64","optional":false,"field":"pos"},"#,
    r#"{"type":"int32","optional":false,"field":"row"},"#,
    r#"{"type":"int64","optional":true,"field":"thread"},"#,
    r#"{"type":"string","optional":true,"field":"query"}],"#,
    r#""optional":false,"name":"io.debezium.connector.mysql.Source","version":1,"field":"source"}"#
);

/// The `transaction` block's schema (`event.block`, version 1, optional).
const TRANSACTION_SCHEMA: &str = concat!(
    r#"{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},"#,
    r#"{"type":"int64","optional":false,"field":"total_order"},"#,
    r#"{"type":"int64","optional":false,"field":"data_collection_order"}],"#,
    r#""optional":true,"name":"event.block","version":1,"field":"transaction"}"#
);

/// Debezium's name prefix: the topic, `.`, database and table, with every character a Kafka
/// topic may not hold replaced by `_`.
fn schema_prefix(topic: &str, row: &RowChange) -> String {
    let name = row.table().name();
    format!("{topic}.{}.{}", name.database, name.table)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A row event as Debezium's record: (key, value), the key `None` for a table without a
/// primary key. `total_order` and `transaction_metadata` fill the `transaction` block when the
/// task asks for it (Debezium's `provide.transaction.metadata`).
pub(super) fn row_record(
    topic: &str,
    e: &ChangeEvent,
    row: &RowChange,
    total_order: u64,
    columns: &ColumnMask,
    options: &DebeziumOptions,
    transaction_metadata: bool,
) -> (Option<Vec<u8>>, Vec<u8>) {
    let table = row.table();
    let names = table.columns();
    let prepared = prepared(topic, row, columns, options);
    let (selected, kinds) = (&prepared.selected, &prepared.kinds);
    let mut out = Vec::with_capacity(prepared.head.len() + 1024 + row.size_bytes() * 3 / 2);
    out.extend_from_slice(&prepared.head);
    let image = |out: &mut Vec<u8>, values: Option<&[Value]>| match values {
        None => out.extend_from_slice(b"null"),
        Some(v) => {
            out.push(b'{');
            for (k, i) in selected.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write_str(out, &names[*i].name);
                out.push(b':');
                write_value(out, &kinds[*i], &names[*i], &v[*i], options);
            }
            out.push(b'}');
        }
    };
    out.extend_from_slice(b"{\"before\":");
    image(&mut out, row.before());
    out.extend_from_slice(b",\"after\":");
    image(&mut out, row.after());
    let source_ms = e.timestamp.timestamp_millis();
    out.extend_from_slice(b",\"source\":{\"version\":");
    write_str(&mut out, concat!("ferry-", env!("CARGO_PKG_VERSION")));
    out.extend_from_slice(b",\"connector\":\"mysql\",\"name\":");
    write_str(&mut out, topic);
    let _ = write!(
        Bytes(&mut out),
        ",\"ts_ms\":{source_ms},\"snapshot\":\"{}\",\"db\":",
        // Debezium's incremental snapshots mark their reads so.
        if e.is_snapshot_read() {
            "incremental"
        } else {
            "false"
        }
    );
    write_str(&mut out, &table.name().database);
    let _ = write!(
        Bytes(&mut out),
        ",\"sequence\":null,\"ts_us\":{},\"ts_ns\":{},\"table\":",
        source_ms * 1000,
        source_ms * 1_000_000
    );
    write_str(&mut out, &table.name().table);
    let _ = write!(Bytes(&mut out), ",\"server_id\":{},\"gtid\":", e.server_id);
    match e
        .source_transaction()
        .filter(|_| e.position.gtid().is_some())
    {
        Some(t) => write_str(&mut out, &t.id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"file\":");
    write_str(&mut out, e.position.file().name());
    let row_in_event = e.source_transaction().map_or(0, |t| t.event_row);
    let _ = write!(
        Bytes(&mut out),
        ",\"pos\":{},\"row\":{row_in_event},\"thread\":null,\"query\":null}},\"transaction\":",
        e.event_offset
    );
    match e.source_transaction().filter(|_| transaction_metadata) {
        Some(t) => {
            out.extend_from_slice(b"{\"id\":");
            write_str(&mut out, &t.id);
            let _ = write!(
                Bytes(&mut out),
                ",\"total_order\":{total_order},\"data_collection_order\":{}}}",
                t.event_index
            );
        }
        None => out.extend_from_slice(b"null"),
    }
    let now = chrono::Utc::now();
    let op = match row.operation() {
        Operation::Insert => "c",
        Operation::Update => "u",
        Operation::Delete => "d",
        Operation::Read => "r",
    };
    let _ = write!(
        Bytes(&mut out),
        ",\"op\":\"{op}\",\"ts_ms\":{},\"ts_us\":{},\"ts_ns\":{}}}",
        now.timestamp_millis(),
        now.timestamp_micros(),
        now.timestamp_nanos_opt().unwrap_or_default()
    );
    if options.schemas_enable {
        out.push(b'}');
    }
    (key(&prepared, row, options), out)
}

/// The schema of a schema-change event's value (`io.debezium.connector.mysql.SchemaChangeValue`)
/// after its `source` field ([`SOURCE_SCHEMA`]); `tableChanges` stays empty (see [`ddl_record`]).
const SCHEMA_CHANGE_TAIL: &str = concat!(
    r#",{"type":"int64","optional":false,"field":"ts_ms"},"#,
    r#"{"type":"string","optional":true,"field":"databaseName"},"#,
    r#"{"type":"string","optional":true,"field":"schemaName"},"#,
    r#"{"type":"string","optional":true,"field":"ddl"},"#,
    r#"{"type":"array","items":{"type":"struct","fields":[{"type":"string","optional":false,"field":"type"},"#,
    r#"{"type":"string","optional":false,"field":"id"}],"optional":false,"name":"io.debezium.connector.schema.Change","version":1},"#,
    r#""optional":false,"field":"tableChanges"}],"#,
    r#""optional":false,"name":"io.debezium.connector.mysql.SchemaChangeValue","version":1}"#
);

/// A DDL statement as Debezium's schema-change event (what its MySQL connector writes to its
/// schema-change topic with `include.schema.changes`): `source`, `ts_ms`, `databaseName`,
/// `schemaName` (null: MySQL has none), `ddl` and `tableChanges`. Ferry writes it in the task's
/// one topic, without a key (as its other non-row records), and with `tableChanges` empty:
/// consumers of schema changes read `ddl`.
pub(super) fn ddl_record(
    topic: &str,
    e: &ChangeEvent,
    database: Option<&str>,
    statement: &str,
    options: &DebeziumOptions,
) -> Vec<u8> {
    let source_ms = e.timestamp.timestamp_millis();
    let gtid = e
        .transaction
        .as_ref()
        .filter(|_| e.position.gtid().is_some())
        .map(|t| t.id.to_string());
    let payload = serde_json::json!({
        "source": {
            "version": concat!("ferry-", env!("CARGO_PKG_VERSION")),
            "connector": "mysql",
            "name": topic,
            "ts_ms": source_ms,
            "snapshot": "false",
            "db": database.unwrap_or_default(),
            "sequence": null,
            "ts_us": source_ms * 1000,
            "ts_ns": source_ms * 1_000_000,
            "table": null,
            "server_id": e.server_id,
            "gtid": gtid,
            "file": e.position.file().name(),
            "pos": e.event_offset,
            "row": 0,
            "thread": null,
            "query": null,
        },
        "ts_ms": source_ms,
        "databaseName": database,
        "schemaName": null,
        "ddl": statement,
        "tableChanges": [],
    });
    let mut out = Vec::with_capacity(2048 + statement.len());
    if options.schemas_enable {
        out.extend_from_slice(b"{\"schema\":{\"type\":\"struct\",\"fields\":[");
        out.extend_from_slice(SOURCE_SCHEMA.as_bytes());
        out.extend_from_slice(SCHEMA_CHANGE_TAIL.as_bytes());
        out.extend_from_slice(b",\"payload\":");
    }
    // Writing JSON of a `serde_json::Value` to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, &payload);
    if options.schemas_enable {
        out.push(b'}');
    }
    out
}

/// What every record of one table map's rows repeats: the carried columns, their kinds and
/// the schema part of the value (everything before the payload), made once per table map,
/// column mask, topic and options instead of once per row.
struct Prepared {
    table: std::sync::Arc<ferry_domain::change::TableSchema>,
    mask: ColumnMask,
    topic: String,
    options: DebeziumOptions,
    selected: Vec<usize>,
    kinds: Vec<Kind>,
    prefix: String,
    /// `{"schema":…,"payload":` (empty without `schemas_enable`).
    head: Vec<u8>,
}

thread_local! {
    /// The last table's [`Prepared`]: a capture loop writes runs of rows of one table. It
    /// holds the table's `Arc`, so a match by pointer is the same table map.
    static PREPARED: std::cell::RefCell<Option<std::rc::Rc<Prepared>>> =
        const { std::cell::RefCell::new(None) };
}

fn prepared(
    topic: &str,
    row: &RowChange,
    columns: &ColumnMask,
    options: &DebeziumOptions,
) -> std::rc::Rc<Prepared> {
    PREPARED.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some(p) = cell.as_ref()
            && std::sync::Arc::ptr_eq(&p.table, row.table())
            && p.mask == *columns
            && p.topic == topic
            && p.options == *options
        {
            return std::rc::Rc::clone(p);
        }
        let p = std::rc::Rc::new(prepare(topic, row, columns, options));
        *cell = Some(std::rc::Rc::clone(&p));
        p
    })
}

fn prepare(
    topic: &str,
    row: &RowChange,
    columns: &ColumnMask,
    options: &DebeziumOptions,
) -> Prepared {
    let names = row.table().columns();
    let selected: Vec<usize> = carried(row, columns).collect();
    let kinds: Vec<Kind> = names
        .iter()
        .map(|c| kind_of(&c.source_type, options))
        .collect();
    let prefix = schema_prefix(topic, row);
    let mut out = Vec::with_capacity(2048);
    if options.schemas_enable {
        out.extend_from_slice(b"{\"schema\":{\"type\":\"struct\",\"fields\":[");
        for (n, image) in ["before", "after"].iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"type\":\"struct\",\"fields\":[");
            for (k, i) in selected.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write_field_schema(
                    &mut out,
                    &names[*i].name,
                    &kinds[*i],
                    names[*i].nullable,
                    options,
                );
            }
            out.extend_from_slice(b"],\"optional\":true,\"name\":");
            write_str(&mut out, &format!("{prefix}.Value"));
            let _ = write!(Bytes(&mut out), ",\"field\":\"{image}\"}}");
        }
        out.push(b',');
        out.extend_from_slice(SOURCE_SCHEMA.as_bytes());
        out.push(b',');
        out.extend_from_slice(TRANSACTION_SCHEMA.as_bytes());
        out.extend_from_slice(
            b",{\"type\":\"string\",\"optional\":false,\"field\":\"op\"},\
{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ms\"},\
{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_us\"},\
{\"type\":\"int64\",\"optional\":true,\"field\":\"ts_ns\"}],\"optional\":false,\"name\":",
        );
        write_str(&mut out, &format!("{prefix}.Envelope"));
        out.extend_from_slice(b",\"version\":2},\"payload\":");
    }
    Prepared {
        table: std::sync::Arc::clone(row.table()),
        mask: columns.clone(),
        topic: topic.to_owned(),
        options: *options,
        selected,
        kinds,
        prefix,
        head: out,
    }
}

/// `{"schema": <prefix>.Key, "payload": {primary key}}`; `None` without a primary key.
fn key(prepared: &Prepared, row: &RowChange, options: &DebeziumOptions) -> Option<Vec<u8>> {
    let (prefix, kinds) = (&prepared.prefix, &prepared.kinds);
    let table = row.table();
    if table.key().is_empty() {
        return None;
    }
    let names = table.columns();
    let image = row.after().or(row.before())?;
    let mut out = Vec::with_capacity(256);
    if options.schemas_enable {
        out.extend_from_slice(b"{\"schema\":{\"type\":\"struct\",\"fields\":[");
        for (n, i) in table.key().iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_field_schema(&mut out, &names[*i].name, &kinds[*i], false, options);
        }
        out.extend_from_slice(b"],\"optional\":false,\"name\":");
        write_str(&mut out, &format!("{prefix}.Key"));
        out.extend_from_slice(b"},\"payload\":");
    }
    out.push(b'{');
    for (n, i) in table.key().iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_str(&mut out, &names[*i].name);
        out.push(b':');
        write_value(&mut out, &kinds[*i], &names[*i], &image[*i], options);
    }
    out.push(b'}');
    if options.schemas_enable {
        out.push(b'}');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_javas_two_complement_bytes() {
        let b64 = |negative, digits: &str| {
            base64::Engine::encode(&STANDARD, twos_complement(negative, digits))
        };
        assert_eq!(b64(false, "133"), "AIU=");
        assert_eq!(b64(true, "2111"), "98E=");
        assert_eq!(b64(true, "128"), "gA==");
        assert_eq!(b64(false, "0"), "AA==");
        assert_eq!(b64(false, "1234567"), "EtaH");
        assert_eq!(b64(false, "1528000"), "F1DA");
        assert_eq!(unscaled("3.444", 5), (false, "344400".to_owned()));
        assert_eq!(unscaled("-2.111", 3), (true, "2111".to_owned()));
    }

    #[test]
    fn binary_values_follow_the_binary_handling_mode() {
        let col = Column {
            name: "b".into(),
            source_type: "varbinary(8)".into(),
            nullable: true,
        };
        let v = Value::Bytes(vec![0xfb, 0xff]);
        let written = |mode| {
            let options = DebeziumOptions {
                binary_handling_mode: mode,
                ..DebeziumOptions::default()
            };
            let kind = kind_of(&col.source_type, &options);
            let (mut schema, mut value) = (Vec::new(), Vec::new());
            write_field_schema(&mut schema, "b", &kind, true, &options);
            write_value(&mut value, &kind, &col, &v, &options);
            (
                String::from_utf8(schema).unwrap(),
                String::from_utf8(value).unwrap(),
            )
        };
        let (schema, value) = written(BinaryMode::Bytes);
        assert!(schema.contains("\"bytes\""), "{schema}");
        assert_eq!(value, "\"+/8=\"");
        assert!(written(BinaryMode::Base64).0.contains("\"string\""));
        assert_eq!(written(BinaryMode::Base64UrlSafe).1, "\"-_8=\"");
        assert_eq!(written(BinaryMode::Hex).1, "\"fbff\"");
    }

    #[test]
    fn connect_time_precision_uses_connects_own_types() {
        let options = DebeziumOptions {
            time_precision_mode: TimePrecisionMode::Connect,
            ..DebeziumOptions::default()
        };
        assert_eq!(kind_of("datetime(6)", &options), Kind::ConnectTimestamp);
        assert_eq!(kind_of("date", &options), Kind::ConnectDate);
        assert_eq!(
            kind_of("timestamp(3)", &options),
            Kind::ZonedTimestamp { fsp: 3 }
        );
        let col = Column {
            name: "t".into(),
            source_type: "time(6)".into(),
            nullable: true,
        };
        let kind = kind_of(&col.source_type, &options);
        let mut out = Vec::new();
        write_value(
            &mut out,
            &kind,
            &col,
            &Value::Time(ferry_domain::value::Time {
                negative: false,
                hours: 1,
                minutes: 0,
                seconds: 0,
                micros: 500_999,
            }),
            &options,
        );
        assert_eq!(String::from_utf8(out).unwrap(), "3600500");
        let mut schema = Vec::new();
        write_field_schema(&mut schema, "t", &kind, true, &options);
        assert!(
            String::from_utf8(schema)
                .unwrap()
                .contains("org.apache.kafka.connect.data.Time")
        );
    }

    #[test]
    fn kinds_follow_debeziums_defaults() {
        let o = DebeziumOptions::default();
        assert_eq!(kind_of("tinyint(1)", &o), Kind::Int16);
        assert_eq!(kind_of("smallint(5) unsigned", &o), Kind::Int32);
        assert_eq!(kind_of("int(10) unsigned", &o), Kind::Int64);
        assert_eq!(kind_of("float", &o), Kind::Float32);
        assert_eq!(kind_of("float(10,2)", &o), Kind::Float64);
        assert_eq!(kind_of("datetime(3)", &o), Kind::Timestamp);
        assert_eq!(kind_of("datetime(6)", &o), Kind::MicroTimestamp);
        assert_eq!(kind_of("bit(1)", &o), Kind::Boolean);
        assert_eq!(kind_of("bit(12)", &o), Kind::Bits { length: 12 });
        assert_eq!(
            kind_of("enum('a','b,c','it''s')", &o),
            Kind::Enum {
                allowed: "a,b\\,c,it's".into()
            }
        );
    }
}

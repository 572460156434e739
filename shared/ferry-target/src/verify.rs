//! Verification: comparing a source table with its target copy, chunk by chunk.
//!
//! Both sides are brought to one canonical text per column: what the target should hold for a
//! source [`Value`] after type conversion ([`canonical_source`]), and what it does hold, read
//! back ([`canonical_pg`] for PostgreSQL's text output; MySQL/MariaDB targets are read with the
//! binary protocol and decoded like a source, then made canonical the same way). Equal rows
//! give equal texts, so a row's hash is its checksum and a chunk's checksum is the sum of its
//! rows' hashes (order-free).
//!
//! The target table is read once into a map from key to row hash; each source chunk is then
//! compared against it, and what is left in the map at the end are rows the source does not
//! have. Memory is about 50 bytes per target row.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use ferry_domain::sync::{TargetColumn, TargetTable};
use ferry_domain::value::Value;

use crate::literal::pg_text;

/// The target type's base name (`numeric(20,0)` → `numeric`).
fn target_base(column: &TargetColumn) -> &str {
    let t = column.target_type.sql_type.as_str();
    t.find(['(', ' ']).map_or(t, |i| &t[..i])
}

fn json_canonical(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| text.to_owned())
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(1 + bytes.len() * 2);
    s.push('x');
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn is_char(column: &TargetColumn) -> bool {
    column
        .source_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("char")
}

/// What the target should hold for source value `v` of `column`, as canonical text.
pub fn canonical_source(v: &Value, column: &TargetColumn, postgres: bool) -> Option<String> {
    if postgres {
        let text = pg_text(v, column).ok()??;
        return canonical_pg(Some(&text), column);
    }
    Some(match v {
        Value::Null => return None,
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => format!("{f:e}"),
        Value::Double(f) => format!("{f:e}"),
        Value::Decimal(d) => d.as_str().to_owned(),
        Value::Year(y) => y.to_string(),
        Value::String(s) if is_char(column) => s.trim_end_matches(' ').to_owned(),
        Value::String(s) | Value::Enum(ferry_domain::value::EnumValue { name: s, .. }) => s.clone(),
        Value::Json(s) => json_canonical(s),
        Value::Set(s) => s.names.join(","),
        Value::Bytes(b) => {
            crate::literal::address_or_uuid(&column.source_type, b).unwrap_or_else(|| hex(b))
        }
        Value::Geometry(b) => hex(b),
        Value::Bit(b) => b.to_u64().to_string(),
        Value::Date(d) => d.to_string(),
        Value::DateTime(d) => d.to_string(),
        Value::Time(t) => t.to_string(),
        Value::Timestamp(t) => match t.to_utc() {
            Some(at) => at.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            None => "0000-00-00 00:00:00".into(),
        },
    })
}

/// PostgreSQL's text of a value of `column` (as `::text` prints it, or as Ferry writes it), as
/// canonical text.
pub fn canonical_pg(text: Option<&str>, column: &TargetColumn) -> Option<String> {
    let text = text?;
    Some(match target_base(column) {
        "real" => text
            .parse::<f32>()
            .map_or_else(|_| text.to_owned(), |f| format!("{f:e}")),
        "double" => text
            .parse::<f64>()
            .map_or_else(|_| text.to_owned(), |f| format!("{f:e}")),
        "bytea" => format!("x{}", text.trim_start_matches("\\x")),
        "jsonb" => json_canonical(text),
        "char" => text.trim_end_matches(' ').to_owned(),
        "timestamp" => {
            // Written as `…+00`, printed in UTC as `…+00`: the same instant either way; the
            // fraction as PostgreSQL prints it (no trailing zeros).
            let t = text.trim_end_matches("+00");
            match t.split_once('.') {
                Some((whole, frac)) => {
                    let frac = frac.trim_end_matches('0');
                    if frac.is_empty() {
                        whole.to_owned()
                    } else {
                        format!("{whole}.{frac}")
                    }
                }
                None => t.to_owned(),
            }
        }
        "interval" => text.trim_start_matches('+').to_owned(),
        // `inet::text` adds the mask of a single address.
        "inet" => text
            .strip_suffix("/128")
            .or_else(|| text.strip_suffix("/32"))
            .unwrap_or(text)
            .to_owned(),
        "boolean" => match text {
            "true" | "t" => "t".into(),
            _ => "f".into(),
        },
        _ => text.to_owned(),
    })
}

/// A row's hash over canonical texts (NULL distinct from every text).
pub fn row_hash<'a>(values: impl Iterator<Item = Option<&'a str>>) -> u64 {
    let mut h = DefaultHasher::new();
    for v in values {
        v.hash(&mut h);
    }
    h.finish()
}

/// A source row's canonical texts, column by column (for logs).
pub fn source_texts(
    table: &TargetTable,
    row: &[Value],
    postgres: bool,
) -> Vec<(String, Option<String>)> {
    table
        .columns
        .iter()
        .zip(&table.source_index)
        .map(|(c, s)| {
            (
                c.name.clone(),
                canonical_source(row.get(*s).unwrap_or(&Value::Null), c, postgres),
            )
        })
        .collect()
}

/// One source row's key and hash, as canonical texts of its target columns.
pub fn source_row(table: &TargetTable, row: &[Value], postgres: bool) -> (String, u64) {
    let texts: Vec<Option<String>> = table
        .columns
        .iter()
        .zip(&table.source_index)
        .map(|(c, s)| canonical_source(row.get(*s).unwrap_or(&Value::Null), c, postgres))
        .collect();
    (
        key_text(table, &texts),
        row_hash(texts.iter().map(|t| t.as_deref())),
    )
}

/// A target row's key and hash from its canonical texts (in target column order).
pub fn target_row(table: &TargetTable, texts: &[Option<String>]) -> (String, u64) {
    (
        key_text(table, texts),
        row_hash(texts.iter().map(|t| t.as_deref())),
    )
}

/// The key as text: `{"id":"7"}`-like, readable in a report.
pub fn key_text(table: &TargetTable, texts: &[Option<String>]) -> String {
    let mut m = serde_json::Map::new();
    let keys: Vec<usize> = if table.key.is_empty() {
        (0..table.columns.len()).collect()
    } else {
        table.key.clone()
    };
    for k in keys {
        m.insert(
            table.columns[k].name.clone(),
            texts
                .get(k)
                .cloned()
                .flatten()
                .map_or(serde_json::Value::Null, serde_json::Value::String),
        );
    }
    serde_json::Value::Object(m).to_string()
}

/// The target's rows by key: (row hash, how many rows have the key — more than one only in a
/// keyless table, whose key is every column, so its equal rows share the hash).
pub type TargetRows = HashMap<String, (u64, u32)>;

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_domain::convert::{TargetEngine, convert};
    use ferry_domain::schema::ColumnDef;
    use ferry_domain::value::{Bits, Date, DateTime, Time, Timestamp};

    fn col(t: &str, engine: TargetEngine) -> TargetColumn {
        TargetColumn {
            name: "c".into(),
            source_type: t.into(),
            target_type: convert(t, engine).unwrap(),
            def: ColumnDef {
                name: "c".into(),
                column_type: t.into(),
                nullable: true,
                charset: None,
                members: Vec::new(),
                collation: None,
            },
        }
    }

    /// What Ferry writes and what PostgreSQL prints for it are the same canonical text.
    #[test]
    fn postgres_output_matches_the_source() {
        let pg = TargetEngine::Postgresql;
        let cases: Vec<(Value, &str, Option<&str>)> = vec![
            (Value::Float(0.1), "float", Some("0.1")),
            (Value::Double(1e300), "double", Some("1e+300")),
            (Value::Bytes(vec![0, 255]), "blob", Some("\\x00ff")),
            (
                Value::Timestamp(Timestamp {
                    seconds: 1_709_212_455,
                    micros: 678_000,
                }),
                "timestamp(3)",
                Some("2024-02-29 13:14:15.678+00"),
            ),
            (
                Value::DateTime(DateTime {
                    date: Date {
                        year: 2024,
                        month: 1,
                        day: 2,
                    },
                    hour: 3,
                    minute: 4,
                    second: 5,
                    micros: 120_000,
                }),
                "datetime(6)",
                Some("2024-01-02 03:04:05.12"),
            ),
            (
                Value::Time(Time {
                    negative: true,
                    hours: 838,
                    minutes: 59,
                    seconds: 59,
                    micros: 0,
                }),
                "time",
                Some("-838:59:59"),
            ),
            (
                Value::Bit(Bits {
                    width: 1,
                    bytes: vec![1],
                }),
                "bit(1)",
                Some("true"),
            ),
            (
                Value::Json(r#"{"b": 1, "a": [1, 2]}"#.into()),
                "json",
                Some(r#"{"a": [1, 2], "b": 1}"#),
            ),
            (Value::String("ab  ".into()), "char(4)", Some("ab")),
            (Value::String("::1".into()), "inet6", Some("::1/128")),
            (
                Value::Date(Date {
                    year: 0,
                    month: 0,
                    day: 0,
                }),
                "date",
                None,
            ),
        ];
        for (v, t, printed) in cases {
            let c = col(t, pg);
            assert_eq!(
                canonical_source(&v, &c, true),
                canonical_pg(printed, &c),
                "{v:?} as {t}"
            );
        }
    }

    #[test]
    fn different_rows_hash_differently() {
        let a = row_hash([Some("1"), None].into_iter());
        let b = row_hash([Some("1"), Some("")].into_iter());
        assert_ne!(a, b);
    }
}

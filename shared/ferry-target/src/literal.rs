//! How a [`Value`] is written on each target: PostgreSQL's text input form (for `COPY` and
//! quoted literals) and MySQL/MariaDB SQL literals. The choices follow `docs/type-conversion.md`:
//! on PostgreSQL, zero dates become NULL, BIT(1) a boolean, TIME an interval, ENUM and SET their
//! names; on MySQL/MariaDB every value is written back as the source stored it.
//!
//! MySQL literals assume the session Ferry sets on the target: `NO_BACKSLASH_ESCAPES` (only
//! quotes are doubled in strings), UTC, utf8mb4.

use std::borrow::Cow;
use std::fmt::Write as _;

use ferry_domain::sync::TargetColumn;
use ferry_domain::value::Value;

/// The PostgreSQL type's name without arguments (`numeric(20,0)` → `numeric`).
fn pg_base(column: &TargetColumn) -> &str {
    let t = column.target_type.sql_type.as_str();
    t.find('(').map_or(t, |i| &t[..i])
}

fn hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// MariaDB's INET6 and UUID values arrive from the binlog as their 16 stored bytes: their text.
pub(crate) fn address_or_uuid(source_type: &str, bytes: &[u8]) -> Option<String> {
    let base = source_type.trim().to_ascii_lowercase();
    match (base.as_str(), <[u8; 16]>::try_from(bytes)) {
        ("inet6", Ok(b)) => Some(std::net::Ipv6Addr::from(b).to_string()),
        ("uuid", Ok(b)) => {
            let mut s = String::with_capacity(36);
            for (i, byte) in b.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{byte:02x}");
            }
            Some(s)
        }
        _ if base == "inet4" => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        _ => None,
    }
}

/// The text PostgreSQL reads `v` from, for `column`; `None` for NULL.
pub fn pg_text<'v>(v: &'v Value, column: &TargetColumn) -> Result<Option<Cow<'v, str>>, String> {
    let base = pg_base(column);
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::UInt(u) => Cow::Owned(u.to_string()),
        Value::Float(f) => Cow::Owned(format!("{f:e}")),
        Value::Double(f) => Cow::Owned(format!("{f:e}")),
        Value::Decimal(d) => Cow::Borrowed(d.as_str()),
        Value::Year(y) => Cow::Owned(y.to_string()),
        Value::String(s) | Value::Json(s) => {
            if s.contains('\0') {
                return Err("PostgreSQL text cannot hold a NUL character".into());
            }
            Cow::Borrowed(s.as_str())
        }
        Value::Bytes(b) | Value::Geometry(b) => match base {
            "bytea" => {
                let mut s = String::with_capacity(2 + b.len() * 2);
                s.push_str("\\x");
                hex(b, &mut s);
                Cow::Owned(s)
            }
            _ => match address_or_uuid(&column.source_type, b) {
                Some(s) => Cow::Owned(s),
                None => Cow::Owned(
                    String::from_utf8(b.clone())
                        .map_err(|_| "the value's bytes are not UTF-8 text".to_owned())?,
                ),
            },
        },
        Value::Date(d) if d.is_calendar_date() => Cow::Owned(d.to_string()),
        Value::Date(_) => return Ok(None),
        Value::DateTime(d) if d.date.is_calendar_date() => Cow::Owned(d.to_string()),
        Value::DateTime(_) => return Ok(None),
        Value::Timestamp(t) => match t.to_utc() {
            Some(at) => Cow::Owned(at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()),
            None => return Ok(None),
        },
        Value::Time(t) => Cow::Owned(t.to_string()),
        Value::Bit(b) => match base {
            "boolean" => Cow::Borrowed(if b.to_u64() == 0 { "f" } else { "t" }),
            _ => Cow::Owned(format!(
                "{:0width$b}",
                b.to_u64(),
                width = usize::from(b.width)
            )),
        },
        Value::Enum(e) => Cow::Borrowed(e.name.as_str()),
        Value::Set(s) => Cow::Owned(s.names.join(",")),
    }))
}

/// Appends `v` in `COPY … FROM STDIN` text format (`\N` for NULL, backslash escapes).
pub fn pg_copy(v: &Value, column: &TargetColumn, out: &mut String) -> Result<(), String> {
    match pg_text(v, column)? {
        None => out.push_str("\\N"),
        Some(text) => {
            for c in text.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c => out.push(c),
                }
            }
        }
    }
    Ok(())
}

/// Appends `v` as a PostgreSQL literal (quoted; PostgreSQL casts it to the column's type).
pub fn pg_literal(v: &Value, column: &TargetColumn, out: &mut String) -> Result<(), String> {
    match pg_text(v, column)? {
        None => out.push_str("NULL"),
        Some(text) => quote_into(&text, out),
    }
    Ok(())
}

fn quote_into(text: &str, out: &mut String) {
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
}

/// Appends `v` as a MySQL/MariaDB literal for `column`.
pub fn mysql_literal(v: &Value, column: &TargetColumn, out: &mut String) {
    match v {
        Value::Null => out.push_str("NULL"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Float(f) => {
            let _ = write!(out, "{f:e}");
        }
        Value::Double(f) => {
            let _ = write!(out, "{f:e}");
        }
        Value::Decimal(d) => out.push_str(d.as_str()),
        Value::Year(y) => {
            let _ = write!(out, "{y}");
        }
        Value::Bit(b) => {
            let _ = write!(out, "{}", b.to_u64());
        }
        Value::String(s) | Value::Json(s) => quote_into(s, out),
        Value::Enum(e) => quote_into(&e.name, out),
        Value::Set(s) => quote_into(&s.names.join(","), out),
        Value::Bytes(b) | Value::Geometry(b) => match address_or_uuid(&column.source_type, b) {
            Some(s) => quote_into(&s, out),
            None if b.is_empty() => out.push_str("''"),
            None => {
                out.push_str("X'");
                hex(b, out);
                out.push('\'');
            }
        },
        Value::Date(d) => quote_into(&d.to_string(), out),
        Value::DateTime(d) => quote_into(&d.to_string(), out),
        Value::Time(t) => quote_into(&t.to_string(), out),
        Value::Timestamp(t) => match t.to_utc() {
            Some(at) => quote_into(&at.format("%Y-%m-%d %H:%M:%S%.6f").to_string(), out),
            None => out.push_str("'0000-00-00 00:00:00'"),
        },
    }
}

/// `v` as a parameter of a prepared statement for a MySQL/MariaDB `column`: the value
/// [`mysql_literal`] writes, bound in the binary protocol instead of quoted into the text
/// (numbers as numbers, everything else as the same text or bytes, unescaped).
pub fn mysql_param(v: &Value, column: &TargetColumn) -> mysql_async::Value {
    use mysql_async::Value as P;
    let text = |s: &str| P::Bytes(s.as_bytes().to_vec());
    match v {
        Value::Null => P::NULL,
        Value::Int(i) => P::Int(*i),
        Value::UInt(u) => P::UInt(*u),
        Value::Float(f) => P::Float(*f),
        Value::Double(f) => P::Double(*f),
        Value::Decimal(d) => text(d.as_str()),
        Value::Year(y) => P::Int(i64::from(*y)),
        Value::Bit(b) => P::UInt(b.to_u64()),
        Value::String(s) | Value::Json(s) => text(s),
        Value::Enum(e) => text(&e.name),
        Value::Set(s) => text(&s.names.join(",")),
        Value::Bytes(b) | Value::Geometry(b) => match address_or_uuid(&column.source_type, b) {
            Some(s) => text(&s),
            None => P::Bytes(b.clone()),
        },
        Value::Date(d) => text(&d.to_string()),
        Value::DateTime(d) => text(&d.to_string()),
        Value::Time(t) => text(&t.to_string()),
        Value::Timestamp(t) => match t.to_utc() {
            Some(at) => text(&at.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
            None => text("0000-00-00 00:00:00"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_domain::convert::{TargetEngine, convert};
    use ferry_domain::value::{Bits, Date, DateTime, Decimal, Timestamp};

    fn col(source: &str, engine: TargetEngine) -> TargetColumn {
        TargetColumn {
            name: "c".into(),
            source_type: source.into(),
            target_type: convert(source, engine).unwrap(),
            def: ferry_domain::schema::ColumnDef {
                name: "c".into(),
                column_type: source.into(),
                nullable: true,
                charset: None,
                members: Vec::new(),
                collation: None,
            },
        }
    }

    #[test]
    fn postgres_text_follows_the_conversion_table() {
        let pg = |v: Value, t: &str| {
            pg_text(&v, &col(t, TargetEngine::Postgresql))
                .unwrap()
                .map(Cow::into_owned)
        };
        let zero = Date {
            year: 0,
            month: 0,
            day: 0,
        };
        assert_eq!(pg(Value::Date(zero), "date"), None);
        assert_eq!(
            pg(
                Value::DateTime(DateTime {
                    date: Date {
                        year: 2024,
                        month: 1,
                        day: 2
                    },
                    hour: 3,
                    minute: 4,
                    second: 5,
                    micros: 60
                }),
                "datetime(6)"
            )
            .unwrap(),
            "2024-01-02 03:04:05.00006"
        );
        let bit = |width, bytes: Vec<u8>| Value::Bit(Bits { width, bytes });
        assert_eq!(pg(bit(1, vec![1]), "bit(1)").unwrap(), "t");
        assert_eq!(
            pg(bit(12, vec![0x0a, 0xbc]), "bit(12)").unwrap(),
            "101010111100"
        );
        assert_eq!(pg(Value::Bytes(vec![0, 255]), "blob").unwrap(), "\\x00ff");
        assert_eq!(
            pg(
                Value::Timestamp(Timestamp {
                    seconds: 0,
                    micros: 1
                }),
                "timestamp(6)"
            )
            .unwrap(),
            "1970-01-01 00:00:00.000001+00"
        );
        assert_eq!(pg(Value::Float(0.1), "float").unwrap(), "1e-1");
        let mut ip = [0u8; 16];
        ip[15] = 1;
        assert_eq!(pg(Value::Bytes(ip.to_vec()), "inet6").unwrap(), "::1");
        assert!(
            pg_text(
                &Value::String("a\0".into()),
                &col("text", TargetEngine::Postgresql)
            )
            .is_err()
        );
        let mut out = String::new();
        pg_copy(
            &Value::String("a\tb\\c\nd".into()),
            &col("text", TargetEngine::Postgresql),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, "a\\tb\\\\c\\nd");
    }

    #[test]
    fn mysql_literals_keep_the_stored_value() {
        let my = |v: Value, t: &str| {
            let mut out = String::new();
            mysql_literal(&v, &col(t, TargetEngine::Mariadb), &mut out);
            out
        };
        assert_eq!(my(Value::String("it's \\".into()), "text"), "'it''s \\'");
        assert_eq!(my(Value::Bytes(vec![1, 2]), "blob"), "X'0102'");
        assert_eq!(my(Value::Bytes(Vec::new()), "blob"), "''");
        assert_eq!(
            my(
                Value::Timestamp(Timestamp {
                    seconds: 0,
                    micros: 0
                }),
                "timestamp"
            ),
            "'0000-00-00 00:00:00'"
        );
        assert_eq!(my(Value::Double(1e300), "double"), "1e300");
        assert_eq!(
            my(Value::UInt(u64::MAX), "bigint unsigned"),
            "18446744073709551615"
        );
    }

    #[test]
    fn mysql_params_bind_what_the_literals_write() {
        use mysql_async::Value as P;
        let my = |v: Value, t: &str| mysql_param(&v, &col(t, TargetEngine::Mariadb));
        // Text and bytes go as they are: nothing to escape.
        assert_eq!(
            my(Value::String("it's \\".into()), "text"),
            P::Bytes(b"it's \\".to_vec())
        );
        assert_eq!(
            my(Value::Bytes(vec![0, 39, 92]), "blob"),
            P::Bytes(vec![0, 39, 92])
        );
        assert_eq!(my(Value::Bytes(Vec::new()), "blob"), P::Bytes(Vec::new()));
        assert_eq!(
            my(
                Value::Timestamp(Timestamp {
                    seconds: 0,
                    micros: 0
                }),
                "timestamp"
            ),
            P::Bytes(b"0000-00-00 00:00:00".to_vec())
        );
        assert_eq!(my(Value::Double(1e300), "double"), P::Double(1e300));
        assert_eq!(
            my(Value::UInt(u64::MAX), "bigint unsigned"),
            P::UInt(u64::MAX)
        );
        assert_eq!(my(Value::Null, "int"), P::NULL);
        assert_eq!(
            my(
                Value::Decimal(Decimal::try_from("-12.50".to_owned()).unwrap()),
                "decimal(10,2)"
            ),
            P::Bytes(b"-12.50".to_vec())
        );
    }
}

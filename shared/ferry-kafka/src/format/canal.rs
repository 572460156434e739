//! `canal-json`: Canal's flat message, as Canal 1.1.8 writes it (`values: compatible`), or
//! Ferry's earlier readable mapping (`values: readable`, kept for the topics made before).
//! Facts and sources: `docs/formats.md`.
//!
//! # The compatible message
//!
//! Keys in fastjson2's order (alphabetical): `data, database, es, gtid, id, isDdl, mysqlType,
//! old, pkNames, sql, sqlType, table, ts, type`, nulls written; `data`, `old`, `mysqlType`
//! and `sqlType` in column order. Every value is text: integers unsigned where the column is,
//! FLOAT/DOUBLE as Java prints them, DECIMAL with its scale, BIT as its unsigned number, ENUM as
//! its 1-based index, SET as its bitmask, DATETIME/TIMESTAMP/TIME with the column's fraction
//! digits (TIMESTAMP in UTC), binary values and geometry as ISO-8859-1 text of their bytes,
//! JSON as MySQL prints it (`{"k": 1}`). `sqlType` is the `java.sql.Types` code Canal gives
//! (which, for an unsigned value past the signed range, is the next wider type's). A DDL
//! message has `isDdl: true`, the statement in `sql` and Canal's `type` (`CREATE`, `ALTER`,
//! `ERASE`, `TRUNCATE`, `RENAME`, `CINDEX`, `DINDEX`, `QUERY`).

use std::fmt::Write as _;

use ferry_domain::change::{ChangeEvent, ChangeKind, Column, RowChange};
use ferry_domain::selection::ColumnMask;
use ferry_domain::value::Value;
use serde_json::{Map, Value as Json, json};

use super::java::{java_double, java_float};
use super::json::{value, write_str};
use super::record::Record;
use super::rows::{
    Bytes, carried, changed, fraction_digits, is_fixed_binary, key_of, trim_zero_padding,
};
use super::temporal::{datetime_text, time_text, timestamp_text};

/// An event in Ferry's readable Canal mapping (`values: readable`); `id` is the record's order
/// in the stream.
pub(super) fn readable(e: &ChangeEvent, id: u64, columns: &ColumnMask) -> Option<Record> {
    let es = e.timestamp.timestamp_millis();
    let ts = chrono::Utc::now().timestamp_millis();
    let (key, payload) = match &e.kind {
        ChangeKind::Row(row) => {
            let table = row.table();
            let names = table.columns();
            let as_strings = |values: &[Value]| {
                let mut obj = Map::new();
                for i in carried(row, columns) {
                    obj.insert(names[i].name.clone(), canal_value(&values[i]));
                }
                Json::Object(obj)
            };
            let (kind, data, old) = match (row.before(), row.after()) {
                (None, Some(a)) => ("INSERT", as_strings(a), Json::Null),
                (Some(_), Some(a)) => {
                    let old: Map<String, Json> = changed(row, columns)
                        .map(|(i, b)| (names[i].name.clone(), canal_value(b)))
                        .collect();
                    ("UPDATE", as_strings(a), json!([Json::Object(old)]))
                }
                (Some(b), None) => ("DELETE", as_strings(b), Json::Null),
                (None, None) => return None,
            };
            let mysql_type: Map<String, Json> = carried(row, columns)
                .map(|i| (names[i].name.clone(), json!(names[i].source_type)))
                .collect();
            let sql_type: Map<String, Json> = carried(row, columns)
                .map(|i| {
                    (
                        names[i].name.clone(),
                        json!(jdbc_type(&names[i].source_type)),
                    )
                })
                .collect();
            let pk: Vec<&str> = table
                .key()
                .iter()
                .map(|i| names[*i].name.as_str())
                .collect();
            let mut payload = json!({
                "data": [data], "database": table.name().database, "table": table.name().table,
                "es": es, "ts": ts, "id": id, "isDdl": false, "mysqlType": mysql_type, "sqlType": sql_type,
                "old": old, "pkNames": pk, "sql": "", "type": kind,
                "gtid": e.position.gtid().map(|g| g.to_string()), "position": e.position.to_string(),
            });
            // Canal has no snapshot reads: a backfilled row is an INSERT marked as one.
            if e.is_snapshot_read() {
                payload["isSnapshot"] = json!(true);
            }
            (Some(key_of(row).to_string().into_bytes()), payload)
        }
        ChangeKind::Ddl {
            database,
            statement,
        } => (
            None,
            json!({"data": null, "database": database, "table": "", "es": es, "ts": ts, "id": id, "isDdl": true,
                   "mysqlType": null, "sqlType": null, "old": null, "pkNames": null, "sql": statement, "type": "QUERY"}),
        ),
        ChangeKind::Begin | ChangeKind::Commit { .. } | ChangeKind::Heartbeat => return None,
    };
    Some(Record {
        key,
        tombstone: false,
        payload: payload.to_string().into_bytes(),
        idempotency_key: e.idempotency_key(),
        position: e.position.to_string(),
    })
}

/// An event as Canal's own flat message (`values: compatible`); `id` is the record's order in
/// the stream (Canal's batch id).
pub(super) fn compatible(e: &ChangeEvent, id: u64, columns: &ColumnMask) -> Option<Record> {
    let es = e.timestamp.timestamp_millis();
    let ts = chrono::Utc::now().timestamp_millis();
    let gtid = e.position.gtid().map(|g| g.to_string()).unwrap_or_default();
    let mut out = Vec::with_capacity(512);
    let key = match &e.kind {
        ChangeKind::Row(row) => {
            let table = row.table();
            let names = table.columns();
            let (kind, data) = match (row.before(), row.after()) {
                (None, Some(a)) => ("INSERT", a),
                (Some(_), Some(a)) => ("UPDATE", a),
                (Some(b), None) => ("DELETE", b),
                (None, None) => return None,
            };
            // Keys in fastjson2's order (alphabetical); maps in column order.
            out.extend_from_slice(b"{\"data\":[");
            text_object(&mut out, row, data, carried(row, columns));
            out.extend_from_slice(b"],\"database\":");
            write_str(&mut out, &table.name().database);
            let _ = write!(Bytes(&mut out), ",\"es\":{es},\"gtid\":");
            write_str(&mut out, &gtid);
            let _ = write!(Bytes(&mut out), ",\"id\":{id},\"isDdl\":false,");
            // Canal has no snapshot reads: a backfilled row is an INSERT marked as one.
            if e.is_snapshot_read() {
                out.extend_from_slice(b"\"isSnapshot\":true,");
            }
            out.extend_from_slice(b"\"mysqlType\":{");
            for (n, i) in carried(row, columns).enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_str(&mut out, &names[i].name);
                out.push(b':');
                write_str(&mut out, &names[i].source_type);
            }
            out.extend_from_slice(b"},\"old\":");
            if kind == "UPDATE" {
                out.push(b'[');
                let before = row.before().unwrap_or_default();
                text_object(&mut out, row, before, changed(row, columns).map(|(i, _)| i));
                out.push(b']');
            } else {
                out.extend_from_slice(b"null");
            }
            out.extend_from_slice(b",\"pkNames\":");
            if table.key().is_empty() {
                out.extend_from_slice(b"null");
            } else {
                out.push(b'[');
                for (n, i) in table.key().iter().enumerate() {
                    if n > 0 {
                        out.push(b',');
                    }
                    write_str(&mut out, &names[*i].name);
                }
                out.push(b']');
            }
            out.extend_from_slice(b",\"sql\":\"\",\"sqlType\":{");
            for (n, i) in carried(row, columns).enumerate() {
                if n > 0 {
                    out.push(b',');
                }
                write_str(&mut out, &names[i].name);
                let _ = write!(
                    Bytes(&mut out),
                    ":{}",
                    sql_type(&names[i].source_type, &data[i])
                );
            }
            out.extend_from_slice(b"},\"table\":");
            write_str(&mut out, &table.name().table);
            let _ = write!(Bytes(&mut out), ",\"ts\":{ts},\"type\":\"{kind}\"}}");
            Some(key_of(row).to_string().into_bytes())
        }
        ChangeKind::Ddl {
            database,
            statement,
        } => {
            let (kind, table) = ddl_kind(statement);
            out.extend_from_slice(b"{\"data\":null,\"database\":");
            write_str(&mut out, database.as_deref().unwrap_or_default());
            let _ = write!(Bytes(&mut out), ",\"es\":{es},\"gtid\":");
            write_str(&mut out, &gtid);
            let _ = write!(
                Bytes(&mut out),
                ",\"id\":{id},\"isDdl\":true,\"mysqlType\":null,\"old\":null,\"pkNames\":null,\"sql\":"
            );
            write_str(&mut out, statement);
            out.extend_from_slice(b",\"sqlType\":null,\"table\":");
            write_str(&mut out, &table);
            let _ = write!(Bytes(&mut out), ",\"ts\":{ts},\"type\":\"{kind}\"}}");
            None
        }
        ChangeKind::Begin | ChangeKind::Commit { .. } | ChangeKind::Heartbeat => return None,
    };
    Some(Record {
        key,
        tombstone: false,
        payload: out,
        idempotency_key: e.idempotency_key(),
        position: e.position.to_string(),
    })
}

/// `{"name":"text", …}` of `values` at `indexes`, in column order.
fn text_object(
    out: &mut Vec<u8>,
    row: &RowChange,
    values: &[Value],
    indexes: impl Iterator<Item = usize>,
) {
    let names = row.table().columns();
    out.push(b'{');
    for (n, i) in indexes.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        write_str(out, &names[i].name);
        out.push(b':');
        match canal_text(&names[i], &values[i]) {
            Some(text) => write_str(out, &text),
            None => out.extend_from_slice(b"null"),
        }
    }
    out.push(b'}');
}

/// A value as Canal's text (`None` for NULL).
fn canal_text(col: &Column, v: &Value) -> Option<String> {
    let fsp = fraction_digits(&col.source_type);
    Some(match v {
        Value::Null => return None,
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Year(y) => format!("{y:04}"),
        Value::Float(f) => java_float(*f)?,
        Value::Double(d) => java_double(*d)?,
        Value::Decimal(d) => d.as_str().to_owned(),
        Value::String(s) => s.clone(),
        Value::Bytes(b) => latin1(if is_fixed_binary(&col.source_type) {
            trim_zero_padding(b)
        } else {
            b
        }),
        Value::Geometry(g) => latin1(g),
        Value::Date(d) => d.to_string(),
        Value::DateTime(dt) => datetime_text(dt, fsp),
        Value::Timestamp(t) => match timestamp_text(t, fsp) {
            Some(text) => text,
            None => "0000-00-00 00:00:00".to_owned(),
        },
        Value::Time(t) => time_text(t, fsp),
        Value::Bit(b) => b.to_u64().to_string(),
        Value::Enum(e) => e.index.to_string(),
        Value::Set(s) => s.mask.to_string(),
        Value::Json(text) => match serde_json::from_str::<Json>(text) {
            Ok(json) => {
                let mut out = String::new();
                spaced_json(&mut out, &json);
                out
            }
            Err(_) => text.clone(),
        },
    })
}

/// Bytes as ISO-8859-1 text, one character per byte (Canal's form of binary values: a
/// consumer gets the bytes back with `getBytes("ISO-8859-1")`).
fn latin1(b: &[u8]) -> String {
    b.iter().map(|x| char::from(*x)).collect()
}

/// JSON as MySQL prints it (and Canal's binary JSON printer): `{"k": 1, "a": [1, 2]}`, object
/// keys in MySQL's stored order (shorter first, then by bytes).
fn spaced_json(out: &mut String, v: &Json) {
    match v {
        Json::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Json::String(k.clone()).to_string());
                out.push_str(": ");
                spaced_json(out, &members[k]);
            }
            out.push('}');
        }
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                spaced_json(out, item);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The `java.sql.Types` code Canal gives a column, from its declared type and (for unsigned
/// integers past the signed range, and for NULL SET and JSON values) its value.
fn sql_type(source_type: &str, v: &Value) -> i32 {
    let t = source_type.trim().to_ascii_lowercase();
    let base = t.split(['(', ' ']).next().unwrap_or_default();
    let unsigned_over = |limit: u64| matches!(v, Value::UInt(u) if *u >= limit);
    match base {
        "tinyint" if unsigned_over(1 << 7) => 5,
        "tinyint" => -6,
        "smallint" if unsigned_over(1 << 15) => 4,
        "smallint" => 5,
        "int" | "integer" if unsigned_over(1 << 31) => -5,
        "mediumint" | "int" | "integer" => 4,
        "bigint" if unsigned_over(1 << 63) => 3,
        "bigint" => -5,
        "float" => 7,
        "double" | "real" => 8,
        "decimal" | "numeric" => 3,
        "bit" => -7,
        "date" => 91,
        "time" => 92,
        "datetime" | "timestamp" => 93,
        "year" => 12,
        "char" => 1,
        "tinytext" | "text" | "mediumtext" | "longtext" => 2005,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "geometry"
        | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => 2004,
        "enum" => 4,
        "set" if *v == Value::Null => 2004,
        "set" => -7,
        "json" if *v == Value::Null => 1111,
        _ => 12,
    }
}

/// Canal's `type` of a DDL statement and the table it names (the new name of a rename; empty
/// for database statements): `CREATE`, `ALTER`, `ERASE` (DROP TABLE), `TRUNCATE`, `RENAME`,
/// `CINDEX`, `DINDEX`, or `QUERY` for the rest.
fn ddl_kind(statement: &str) -> (&'static str, String) {
    let words: Vec<String> = statement
        .split_whitespace()
        .filter(|w| !w.starts_with("/*"))
        .map(str::to_owned)
        .collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let at = |i: usize| upper.get(i).map_or("", String::as_str);
    // The name after `TABLE [IF [NOT] EXISTS]` (or at `from`), unquoted, without its database.
    let name_at = |mut i: usize| {
        while matches!(at(i), "IF" | "NOT" | "EXISTS" | "TEMPORARY") {
            i += 1;
        }
        words
            .get(i)
            .map(|w| {
                let w = w.split('(').next().unwrap_or_default();
                let w = w.rsplit('.').next().unwrap_or_default();
                w.trim_matches('`').trim_end_matches([',', ';']).to_owned()
            })
            .unwrap_or_default()
    };
    let table_word = |from: usize| upper.iter().skip(from).position(|w| w == "TABLE");
    match at(0) {
        "CREATE" if upper.iter().any(|w| w == "INDEX") && table_word(1).is_none() => {
            let on = upper.iter().position(|w| w == "ON").map_or(0, |p| p + 1);
            ("CINDEX", name_at(on))
        }
        "CREATE" => match table_word(1) {
            Some(p) => ("CREATE", name_at(p + 2)),
            None => ("QUERY", String::new()),
        },
        "ALTER" if at(1) == "TABLE" || at(2) == "TABLE" => {
            let p = table_word(1).unwrap_or(1) + 2;
            let kind = match upper.get(p + 1).map(String::as_str) {
                Some("ADD") if matches!(at(p + 2), "INDEX" | "KEY" | "UNIQUE" | "FULLTEXT") => {
                    "CINDEX"
                }
                Some("DROP") if matches!(at(p + 2), "INDEX" | "KEY") => "DINDEX",
                _ => "ALTER",
            };
            (kind, name_at(p))
        }
        "DROP" if at(1) == "INDEX" => {
            let on = upper.iter().position(|w| w == "ON").map_or(0, |p| p + 1);
            ("DINDEX", name_at(on))
        }
        "DROP" => match table_word(1) {
            Some(p) => ("ERASE", name_at(p + 2)),
            None => ("QUERY", String::new()),
        },
        "TRUNCATE" => {
            let p = if at(1) == "TABLE" { 2 } else { 1 };
            ("TRUNCATE", name_at(p))
        }
        "RENAME" => {
            let to = upper.iter().position(|w| w == "TO").map_or(0, |p| p + 1);
            ("RENAME", name_at(to))
        }
        _ => ("QUERY", String::new()),
    }
}

/// Canal writes every value as a string.
fn canal_value(v: &Value) -> Json {
    match value(v) {
        Json::Null => Json::Null,
        Json::String(s) => Json::String(s),
        Json::Bool(b) => Json::String(if b { "1".into() } else { "0".into() }),
        other => Json::String(other.to_string()),
    }
}

/// The JDBC type code Canal reports for a MySQL type.
fn jdbc_type(source_type: &str) -> i32 {
    match source_type.split(['(', ' ']).next().unwrap_or_default() {
        "tinyint" => -6,
        "smallint" => 5,
        "mediumint" | "int" | "integer" => 4,
        "bigint" => -5,
        "float" => 7,
        "double" => 8,
        "decimal" => 3,
        "date" => 91,
        "time" => 92,
        "datetime" | "timestamp" => 93,
        "bit" => -7,
        "binary" => -2,
        "varbinary" => -3,
        "blob" => 2004,
        "text" => 2005,
        "char" => 1,
        _ => 12,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_types_are_canals() {
        let cases = [
            ("CREATE TABLE `shop`.`orders` (id INT)", "CREATE", "orders"),
            ("create table if not exists t2 like t1", "CREATE", "t2"),
            ("ALTER TABLE orders ADD COLUMN c INT", "ALTER", "orders"),
            ("ALTER TABLE orders ADD INDEX i (c)", "CINDEX", "orders"),
            ("alter table orders drop index i", "DINDEX", "orders"),
            ("CREATE UNIQUE INDEX i ON orders (c)", "CINDEX", "orders"),
            ("DROP INDEX i ON orders", "DINDEX", "orders"),
            ("DROP TABLE IF EXISTS shop.orders, t2", "ERASE", "orders"),
            ("TRUNCATE TABLE orders", "TRUNCATE", "orders"),
            ("RENAME TABLE a TO b", "RENAME", "b"),
            ("CREATE DATABASE shop", "QUERY", ""),
            ("GRANT SELECT ON *.* TO u", "QUERY", ""),
        ];
        for (statement, kind, table) in cases {
            assert_eq!(ddl_kind(statement), (kind, table.to_owned()), "{statement}");
        }
    }

    #[test]
    fn sql_types_follow_the_value_past_the_signed_range() {
        assert_eq!(sql_type("tinyint(3) unsigned", &Value::UInt(127)), -6);
        assert_eq!(sql_type("tinyint(3) unsigned", &Value::UInt(128)), 5);
        assert_eq!(sql_type("int(10) unsigned", &Value::UInt(1 << 31)), -5);
        assert_eq!(sql_type("mediumint(8) unsigned", &Value::UInt(1 << 23)), 4);
        assert_eq!(sql_type("bigint(20) unsigned", &Value::UInt(u64::MAX)), 3);
        assert_eq!(sql_type("set('a')", &Value::Null), 2004);
        assert_eq!(sql_type("json", &Value::Null), 1111);
        assert_eq!(sql_type("json", &Value::Json("{}".into())), 12);
        assert_eq!(sql_type("mediumtext", &Value::Null), 2005);
    }

    #[test]
    fn json_is_printed_as_mysql_prints_it() {
        let mut out = String::new();
        spaced_json(
            &mut out,
            &serde_json::from_str(r#"{"bb":[1,2],"a":{"c":"x"}}"#).unwrap(),
        );
        assert_eq!(out, r#"{"a": {"c": "x"}, "bb": [1, 2]}"#);
        assert_eq!(latin1(&[0, 0x41, 0xff]), "\u{0}A\u{ff}");
    }
}

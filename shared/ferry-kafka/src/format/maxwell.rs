//! `maxwell-json`: Maxwell's row record, as Maxwell writes it with its default settings
//! (`values: compatible`), its `output_*` switches as task options; or Ferry's earlier readable
//! mapping (`values: readable`, kept for the topics made before). Facts and sources:
//! `docs/formats.md`.
//!
//! # The compatible record
//!
//! Keys in Maxwell's order: `database, table, type, ts, xid, xoffset, commit, position, gtid,
//! server_id, primary_key, primary_key_columns, data, old`; `data` and `old` in column order.
//! `ts` is the rows event's time in seconds; `xid` identifies the transaction on every row;
//! `xoffset` counts the transaction's rows from 0 and is left off its last row, which carries
//! `"commit": true` instead. `old` holds the columns an update changed, and is left off when
//! none did. Values:
//!
//! | column | JSON |
//! |---|---|
//! | integers, YEAR, BIT | number (BIGINT UNSIGNED and BIT(64) up to 18446744073709551615) |
//! | FLOAT, DOUBLE | number as Java prints it (`1.0`, `1.0E10`) |
//! | DECIMAL | number with the column's scale (`603.00`; Java's `0E-10` below 10^-6) |
//! | DATE | `"2024-02-29"`, zero `"0000-00-00"` |
//! | DATETIME(n), TIMESTAMP(n) | `"2024-02-29 23:59:58.123"`: exactly n fraction digits; TIMESTAMP in UTC; a date with a zero part is `"0000-00-00 00:00:00"` |
//! | TIME(n) | `"12:34:56.000001"` (n digits) |
//! | CHAR, VARCHAR, TEXT | string |
//! | BINARY, VARBINARY, BLOB | base64; BINARY(n) without its trailing zero padding |
//! | ENUM | the member's name (`null` for the invalid `''`) |
//! | SET | array of member names, in definition order |
//! | JSON | the JSON value itself, keys in MySQL's stored order (shorter first, then by bytes) |
//! | GEOMETRY | WKT as JTS writes it (`"POINT (3 2)"`) |
//!
//! The Kafka key is Maxwell's hash key, `{"database":…,"table":…,"pk.<column>":…}` (column
//! names lower-cased); a table without a key gets `"_uuid"`, derived from the record's
//! idempotency key so a re-read record has the same key.

use std::fmt::Write as _;

use base64::display::Base64Display;
use base64::engine::general_purpose::STANDARD;
use ferry_domain::change::{ChangeEvent, ChangeKind, Column, RowChange};
use ferry_domain::selection::ColumnMask;
use ferry_domain::task_config::MaxwellOptions;
use ferry_domain::value::{Date, Value};
use serde_json::{Map, Value as Json, json};

use super::java::{java_big_decimal, java_double, java_float};
use super::json::{value, write_str};
use super::record::Record;
use super::rows::{
    Bytes, carried, changed, fraction_digits, image, is_fixed_binary, key_of, trim_zero_padding,
};
use super::temporal::{datetime_text, time_text, timestamp_text, zero_datetime};
use super::wkt::mysql_geometry_wkt;

/// A row event as Maxwell's record; `None` for every other event.
pub(super) fn compatible(
    e: &ChangeEvent,
    columns: &ColumnMask,
    options: &MaxwellOptions,
) -> Option<Record> {
    let ChangeKind::Row(row) = &e.kind else {
        return None;
    };
    let table = row.table();
    let (kind, data) = match (row.before(), row.after()) {
        // A row a backfill read, as Maxwell's bootstrap writes it.
        (None, Some(a)) if e.is_snapshot_read() => ("bootstrap-insert", a),
        (None, Some(a)) => ("insert", a),
        (Some(_), Some(a)) => ("update", a),
        (Some(b), None) => ("delete", b),
        (None, None) => return None,
    };
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"database\":");
    write_str(&mut out, &table.name().database);
    out.extend_from_slice(b",\"table\":");
    write_str(&mut out, &table.name().table);
    let _ = write!(
        Bytes(&mut out),
        ",\"type\":\"{kind}\",\"ts\":{}",
        e.timestamp.timestamp()
    );
    let transaction = e.source_transaction();
    if options.output_commit_info
        && let Some(t) = transaction
    {
        let _ = write!(Bytes(&mut out), ",\"xid\":{}", transaction_number(&t.id));
        if t.last {
            out.extend_from_slice(b",\"commit\":true");
        } else if options.output_xoffset {
            let _ = write!(Bytes(&mut out), ",\"xoffset\":{}", t.carried_index);
        }
    }
    if options.output_binlog_position {
        out.extend_from_slice(b",\"position\":");
        write_str(
            &mut out,
            &format!("{}:{}", e.position.file().name(), e.event_offset),
        );
    }
    if options.output_gtid_position {
        out.extend_from_slice(b",\"gtid\":");
        match transaction.filter(|_| e.position.gtid().is_some()) {
            Some(t) => write_str(&mut out, &t.id),
            None => out.extend_from_slice(b"null"),
        }
    }
    if options.output_server_id {
        let _ = write!(Bytes(&mut out), ",\"server_id\":{}", e.server_id);
    }
    if options.output_primary_keys {
        out.extend_from_slice(b",\"primary_key\":[");
        for (n, i) in table.key().iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_value(&mut out, &table.columns()[*i], &data[*i], options);
        }
        out.push(b']');
    }
    if options.output_primary_key_columns {
        out.extend_from_slice(b",\"primary_key_columns\":[");
        for (n, i) in table.key().iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_str(&mut out, &table.columns()[*i].name);
        }
        out.push(b']');
    }
    out.extend_from_slice(b",\"data\":");
    write_object(&mut out, row, data, carried(row, columns), options);
    if kind == "update" {
        let old: Vec<usize> = changed(row, columns).map(|(i, _)| i).collect();
        let before = row.before().unwrap_or_default();
        let shown = old
            .iter()
            .any(|i| options.output_nulls || before[*i] != Value::Null);
        if shown {
            out.extend_from_slice(b",\"old\":");
            write_object(&mut out, row, before, old.into_iter(), options);
        }
    }
    out.push(b'}');
    Some(Record {
        key: Some(hash_key(e, row, data, options)),
        tombstone: false,
        payload: out,
        idempotency_key: e.idempotency_key(),
        position: e.position.to_string(),
    })
}

/// Maxwell's `xid` for a transaction Ferry identifies by `id`: its GTID's sequence number
/// (`0-1-524` → 524, `uuid:77` → 77), or the offset of its BEGIN (`binlog.000003:1234` → 1234).
/// The server's own XID is written only at the commit, after the rows; any number that is the
/// same for every row of one transaction and differs between neighbours serves what consumers
/// use `xid` for (grouping a transaction's rows).
fn transaction_number(id: &str) -> u64 {
    let digits = id
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or_default();
    digits.parse().unwrap_or(0)
}

/// `{"name": value, …}` of `values` at `indexes`, in column order; nulls left out unless
/// `output_nulls`.
fn write_object(
    out: &mut Vec<u8>,
    row: &RowChange,
    values: &[Value],
    indexes: impl Iterator<Item = usize>,
    options: &MaxwellOptions,
) {
    let table = row.table();
    out.push(b'{');
    let mut first = true;
    for i in indexes {
        let (Some(col), Some(v)) = (table.columns().get(i), values.get(i)) else {
            continue;
        };
        if !options.output_nulls && *v == Value::Null {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, &col.name);
        out.push(b':');
        write_value(out, col, v, options);
    }
    out.push(b'}');
}

/// One value as Maxwell writes it (the module's table).
fn write_value(out: &mut Vec<u8>, col: &Column, v: &Value, options: &MaxwellOptions) {
    let fsp = fraction_digits(&col.source_type);
    let zero = |out: &mut Vec<u8>, text: &str| {
        if options.output_null_zerodates {
            out.extend_from_slice(b"null");
        } else {
            write_str(out, text);
        }
    };
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Int(i) => {
            let _ = write!(Bytes(out), "{i}");
        }
        Value::UInt(u) => {
            let _ = write!(Bytes(out), "{u}");
        }
        Value::Year(y) => {
            let _ = write!(Bytes(out), "{y}");
        }
        Value::Float(f) => raw_or_null(out, java_float(*f)),
        Value::Double(d) => raw_or_null(out, java_double(*d)),
        Value::Decimal(d) => out.extend_from_slice(java_big_decimal(d.as_str()).as_bytes()),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => {
            let bytes = if is_fixed_binary(&col.source_type) {
                trim_zero_padding(b)
            } else {
                b
            };
            let _ = write!(Bytes(out), "\"{}\"", Base64Display::new(bytes, &STANDARD));
        }
        Value::Date(d) if !has_zero_part(d) => write_str(out, &d.to_string()),
        Value::Date(_) => zero(out, "0000-00-00"),
        Value::DateTime(dt) if !has_zero_part(&dt.date) => {
            write_str(out, &datetime_text(dt, fsp));
        }
        Value::DateTime(_) => zero(out, &zero_datetime(fsp)),
        Value::Timestamp(t) => match timestamp_text(t, fsp) {
            Some(text) => write_str(out, &text),
            None => zero(out, &zero_datetime(fsp)),
        },
        Value::Time(t) => write_str(out, &time_text(t, fsp)),
        Value::Bit(b) => {
            let _ = write!(Bytes(out), "{}", b.to_u64());
        }
        Value::Enum(e) if e.index == 0 => out.extend_from_slice(b"null"),
        Value::Enum(e) => write_str(out, &e.name),
        Value::Set(set) => {
            out.push(b'[');
            for (i, name) in set.names.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, name);
            }
            out.push(b']');
        }
        Value::Json(text) => match serde_json::from_str::<Json>(text) {
            Ok(json) => write_mysql_json(out, &json),
            Err(_) => write_str(out, text),
        },
        Value::Geometry(g) => match mysql_geometry_wkt(g) {
            Some(wkt) => write_str(out, &wkt),
            None => {
                let _ = write!(Bytes(out), "\"{}\"", Base64Display::new(g, &STANDARD));
            }
        },
    }
}

/// A date with a zero year, month or day, which Maxwell writes as the zero date (a date that
/// is only out of its month's range, such as `2020-02-31` under `ALLOW_INVALID_DATES`, is
/// written as it is).
fn has_zero_part(d: &Date) -> bool {
    d.year == 0 || d.month == 0 || d.day == 0
}

/// A JSON document compactly, object keys in MySQL's binary JSON order (shorter keys first,
/// then by bytes), the order Maxwell reads them in.
fn write_mysql_json(out: &mut Vec<u8>, v: &Json) {
    match v {
        Json::Object(members) => {
            let mut keys: Vec<&String> = members.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, k);
                out.push(b':');
                write_mysql_json(out, &members[k]);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_mysql_json(out, item);
            }
            out.push(b']');
        }
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn raw_or_null(out: &mut Vec<u8>, text: Option<String>) {
    match text {
        Some(t) => out.extend_from_slice(t.as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

/// Maxwell's hash key: `{"database","table","pk.<column>":value…}`; `_uuid` without a key.
fn hash_key(
    e: &ChangeEvent,
    row: &RowChange,
    image: &[Value],
    options: &MaxwellOptions,
) -> Vec<u8> {
    let table = row.table();
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(b"{\"database\":");
    write_str(&mut out, &table.name().database);
    out.extend_from_slice(b",\"table\":");
    write_str(&mut out, &table.name().table);
    if table.key().is_empty() {
        out.extend_from_slice(b",\"_uuid\":");
        write_str(&mut out, &stable_uuid(&e.idempotency_key()));
    }
    for i in table.key() {
        let col = &table.columns()[*i];
        out.push(b',');
        write_str(&mut out, &format!("pk.{}", col.name.to_lowercase()));
        out.push(b':');
        write_value(&mut out, col, &image[*i], options);
    }
    out.push(b'}');
    out
}

/// A UUID-shaped text derived from `key` (two FNV-1a 64 hashes): the same for a re-read record.
fn stable_uuid(key: &str) -> String {
    let fnv = |seed: u64| {
        key.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let (a, b) = (fnv(0xcbf2_9ce4_8422_2325), fnv(0x8422_2325_cbf2_9ce4));
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// A row event in Ferry's readable mapping (`values: readable`): `server_id`, `position`
/// (after the event), `gtid` and `xoffset` always, values typed as in `debezium-json`'s
/// readable mapping, keys in alphabetical order. Maxwell's `xid` and `commit` are not written.
pub(super) fn readable(e: &ChangeEvent, columns: &ColumnMask) -> Option<Record> {
    let ChangeKind::Row(row) = &e.kind else {
        return None;
    };
    let table = row.table();
    let (kind, data, old) = match (row.before(), row.after()) {
        (None, Some(a)) if e.is_snapshot_read() => {
            ("bootstrap-insert", image(row, a, columns), None)
        }
        (None, Some(a)) => ("insert", image(row, a, columns), None),
        (Some(_), Some(a)) => {
            let old: Map<String, Json> = changed(row, columns)
                .map(|(i, b)| (table.columns()[i].name.clone(), value(b)))
                .collect();
            ("update", image(row, a, columns), Some(Json::Object(old)))
        }
        (Some(b), None) => ("delete", image(row, b, columns), None),
        (None, None) => return None,
    };
    let mut payload = json!({
        "database": table.name().database, "table": table.name().table, "type": kind,
        "ts": e.timestamp.timestamp(), "server_id": e.server_id,
        "position": format!("{}:{}", e.position.file().name(), e.position.offset()),
        "gtid": e.position.gtid().map(|g| g.to_string()),
        "xoffset": e.source_transaction().map_or(0, |t| t.event_index),
        "data": data,
    });
    if let Some(old) = old {
        payload["old"] = old;
    }
    Some(Record {
        key: Some(json!({"database": table.name().database, "table": table.name().table, "pk": key_of(row)}).to_string().into_bytes()),
        tombstone: false,
        payload: payload.to_string().into_bytes(),
        idempotency_key: e.idempotency_key(),
        position: e.position.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_domain::change::{ObjectName, TableSchema, TransactionRef};
    use ferry_domain::value::{Decimal, EnumValue, SetValue};

    use super::*;

    fn table(key: Vec<usize>) -> Arc<TableSchema> {
        let col = |name: &str, source_type: &str| Column {
            name: name.into(),
            source_type: source_type.into(),
            nullable: true,
        };
        Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "orders".into(),
                },
                vec![
                    col("ID", "int"),
                    col("doc", "json"),
                    col("total", "decimal(10,2)"),
                    col("state", "enum('new','paid')"),
                    col("tags", "set('a','b')"),
                    col("note", "varchar(10)"),
                ],
                key,
            )
            .unwrap(),
        )
    }

    fn row(id: i64, note: Value) -> Vec<Value> {
        vec![
            Value::Int(id),
            Value::Json(
                r#"{"foo":"bar","baz":[1,2,3,{"hello":"inside an array"}],"n":123.4321}"#.into(),
            ),
            Value::Decimal(Decimal::try_from("42.50".to_owned()).unwrap()),
            Value::Enum(EnumValue {
                index: 2,
                name: "paid".into(),
            }),
            Value::Set(SetValue {
                mask: 3,
                names: vec!["a".into(), "b".into()],
            }),
            note,
        ]
    }

    fn event(kind: RowChange, last: bool) -> ChangeEvent {
        ChangeEvent {
            position: Arc::new("binlog.000003:900@0-1-524".parse().unwrap()),
            event_offset: 700,
            server_id: 7,
            timestamp: chrono::DateTime::from_timestamp(1_763_805_600, 0).unwrap(),
            transaction: Some(TransactionRef {
                id: "0-1-524".into(),
                event_index: 2,
                carried_index: 1,
                last,
                event_row: 0,
            }),
            kind: ChangeKind::Row(kind),
        }
    }

    fn text(r: &Record) -> (String, String) {
        (
            String::from_utf8(r.key.clone().unwrap()).unwrap(),
            String::from_utf8(r.payload.clone()).unwrap(),
        )
    }

    #[test]
    fn an_update_as_maxwell_writes_it() {
        let before = row(1, Value::String("old".into()));
        let after = row(1, Value::String("new".into()));
        let change = RowChange::update(table(vec![0]), before, after).unwrap();
        let r = compatible(
            &event(change, false),
            &ColumnMask::All,
            &MaxwellOptions::default(),
        )
        .unwrap();
        let (key, payload) = text(&r);
        assert_eq!(key, r#"{"database":"shop","table":"orders","pk.id":1}"#);
        assert_eq!(
            payload,
            concat!(
                r#"{"database":"shop","table":"orders","type":"update","ts":1763805600,"xid":524,"xoffset":1,"#,
                r#""data":{"ID":1,"doc":{"n":123.4321,"baz":[1,2,3,{"hello":"inside an array"}],"foo":"bar"},"#,
                r#""total":42.50,"state":"paid","tags":["a","b"],"note":"new"},"old":{"note":"old"}}"#
            ),
            "column order, JSON as a value (keys in MySQL's order), decimal with its scale, SET as an array"
        );
    }

    #[test]
    fn the_output_switches_change_the_record_as_in_maxwell() {
        let change = RowChange::insert(table(vec![0]), row(5, Value::Null)).unwrap();
        let options = MaxwellOptions {
            output_binlog_position: true,
            output_gtid_position: true,
            output_server_id: true,
            output_primary_keys: true,
            output_primary_key_columns: true,
            output_nulls: false,
            ..MaxwellOptions::default()
        };
        let r = compatible(&event(change, true), &ColumnMask::All, &options).unwrap();
        let (_, payload) = text(&r);
        assert!(
            payload.starts_with(concat!(
                r#"{"database":"shop","table":"orders","type":"insert","ts":1763805600,"xid":524,"commit":true,"#,
                r#""position":"binlog.000003:700","gtid":"0-1-524","server_id":7,"primary_key":[5],"primary_key_columns":["ID"],"#
            )),
            "{payload}"
        );
        assert!(!payload.contains("\"note\""), "nulls left out: {payload}");
        let quiet = MaxwellOptions {
            output_commit_info: false,
            ..MaxwellOptions::default()
        };
        let change = RowChange::insert(table(vec![0]), row(5, Value::Null)).unwrap();
        let (_, payload) =
            text(&compatible(&event(change, true), &ColumnMask::All, &quiet).unwrap());
        assert!(
            !payload.contains("xid") && !payload.contains("commit"),
            "{payload}"
        );
    }

    #[test]
    fn a_keyless_table_is_keyed_by_a_stable_uuid() {
        let change = || RowChange::insert(table(Vec::new()), row(5, Value::Null)).unwrap();
        let a = compatible(
            &event(change(), true),
            &ColumnMask::All,
            &MaxwellOptions::default(),
        )
        .unwrap();
        let b = compatible(
            &event(change(), true),
            &ColumnMask::All,
            &MaxwellOptions::default(),
        )
        .unwrap();
        let key: serde_json::Value = serde_json::from_slice(a.key.as_deref().unwrap()).unwrap();
        assert_eq!(key["_uuid"].as_str().unwrap().len(), 36);
        assert_eq!(a.key, b.key, "the same record, the same key");
    }

    #[test]
    fn xid_is_the_transactions_number() {
        assert_eq!(transaction_number("0-1-524"), 524);
        assert_eq!(
            transaction_number("3E11FA47-71CA-11E1-9E33-C80AA9429562:77"),
            77
        );
        assert_eq!(transaction_number("binlog.000003:1234"), 1234);
    }
}

//! One readable shape for a record of any format, for `GET …/changes`.
//!
//! What every record carries is read from Kafka itself: the idempotency key and the position
//! from its headers, the row key from its Kafka key. The rest comes from the payload in the
//! task's format. Values are shown as the format carries them: exact typed JSON for
//! `debezium-json`, `maxwell-json` and `dts-avro`, strings for `canal-json` (Canal's own
//! choice). A format that records only the changed columns of an update's before image
//! (`canal-json`, `maxwell-json`) is shown with the before image rebuilt from the after image
//! and the changed columns.

mod connect;

use std::io::Cursor;

use apache_avro::types::Value as Avro;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_domain::task_config::{Format, Values};
use serde::Serialize;
use serde_json::{Map, Value as Json};

/// What a change record says, whatever its format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeView {
    pub partition: i32,
    pub offset: i64,
    /// The change's source time (the record's timestamp).
    pub timestamp: Option<chrono::DateTime<chrono::Utc>>,
    pub position: String,
    /// `<transaction id>/<event index>`: unique per change.
    pub idempotency_key: String,
    /// `insert`, `update`, `delete`, `read` (a row a backfill copied: each format's snapshot
    /// marker, docs/formats.md), `ddl`, `begin`, `commit` or `heartbeat`.
    pub operation: String,
    pub database: Option<String>,
    pub table: Option<String>,
    /// The row's primary key (`{"id": 7}`); `None` for records that are not row changes.
    pub key: Option<Json>,
    pub before: Option<Json>,
    pub after: Option<Json>,
    /// The statement of a DDL record.
    pub statement: Option<String>,
}

/// The parts of a record the view is made from.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub idempotency_key: &'a str,
    pub position: &'a str,
}

/// Why a record could not be shown.
#[derive(Debug, thiserror::Error)]
#[error("the record at partition {partition} offset {offset} is not {format:?}: {reason}")]
pub struct ViewError {
    pub partition: i32,
    pub offset: i64,
    pub format: Format,
    pub reason: String,
}

struct Parts {
    operation: &'static str,
    database: Option<String>,
    table: Option<String>,
    before: Option<Json>,
    after: Option<Json>,
    statement: Option<String>,
}

/// The view of `raw`, a record of a topic in `format` with Ferry's readable mapping.
pub fn view(format: Format, raw: &RawRecord<'_>) -> Result<ChangeView, ViewError> {
    view_with(format, Values::Readable, raw)
}

/// The view of `raw`, a record of a topic in `format` written with `values`.
pub fn view_with(
    format: Format,
    values: Values,
    raw: &RawRecord<'_>,
) -> Result<ChangeView, ViewError> {
    let err = |reason: String| ViewError {
        partition: raw.partition,
        offset: raw.offset,
        format,
        reason,
    };
    let parts = match format {
        Format::DtsAvro => dts_avro(raw.payload, values),
        json_format => {
            let payload: Json =
                serde_json::from_slice(raw.payload).map_err(|e| err(e.to_string()))?;
            match json_format {
                Format::CanalJson => canal(&payload),
                Format::MaxwellJson => maxwell(&payload),
                _ => debezium(&payload),
            }
        }
    }
    .map_err(err)?;
    let key = raw
        .key
        .and_then(|k| serde_json::from_slice::<Json>(k).ok())
        .map(|k| connect_payload(k).0)
        .and_then(|k| match format {
            Format::MaxwellJson => maxwell_key(&k, parts.after.as_ref().or(parts.before.as_ref())),
            _ => Some(k),
        })
        .filter(|_| matches!(parts.operation, "insert" | "update" | "delete" | "read"));
    Ok(ChangeView {
        partition: raw.partition,
        offset: raw.offset,
        timestamp: raw
            .timestamp_ms
            .and_then(chrono::DateTime::from_timestamp_millis),
        position: raw.position.to_owned(),
        idempotency_key: raw.idempotency_key.to_owned(),
        operation: parts.operation.to_owned(),
        database: parts.database,
        table: parts.table,
        key,
        before: parts.before,
        after: parts.after,
        statement: parts.statement,
    })
}

fn text(v: &Json) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn object(v: Option<&Json>) -> Option<Json> {
    v.filter(|v| v.is_object()).cloned()
}

/// A record in Kafka Connect's JsonConverter envelope (`{"schema": …, "payload": …}`,
/// debezium-json's compatible values) as (payload, schema); any other record as itself.
fn connect_payload(mut record: Json) -> (Json, Option<Json>) {
    match record.as_object_mut() {
        Some(o) if o.len() == 2 && o.contains_key("schema") && o.contains_key("payload") => {
            let schema = o.remove("schema");
            (o.remove("payload").unwrap_or_default(), schema)
        }
        _ => (record, None),
    }
}

/// A Debezium record as its payload, with the row images read by the schema part when it has
/// one: Connect's logical types become the values Ferry's readable mapping shows (DECIMAL
/// digits, dates and times as text). A record without the envelope is returned as it is.
pub fn debezium_readable(record: Json) -> Json {
    let (mut p, schema) = connect_payload(record);
    let Some(schema) = schema else {
        return p;
    };
    for name in ["before", "after"] {
        let fields = schema["fields"]
            .as_array()
            .and_then(|f| f.iter().find(|f| f["field"] == name))
            .and_then(|f| f["fields"].as_array());
        if let (Some(fields), Some(image)) = (fields, p.get_mut(name)) {
            *image = connect::readable_image(image.take(), fields);
        }
    }
    p
}

fn debezium(record: &Json) -> Result<Parts, String> {
    let p = debezium_readable(record.clone());
    let source = &p["source"];
    let row = |operation| Parts {
        operation,
        database: text(&source["db"]),
        table: text(&source["table"]),
        before: object(p.get("before")),
        after: object(p.get("after")),
        statement: None,
    };
    let other = |operation, statement| Parts {
        operation,
        database: text(&source["db"]),
        table: None,
        before: None,
        after: None,
        statement,
    };
    Ok(match p["op"].as_str() {
        Some("c") => row("insert"),
        Some("r") => row("read"),
        Some("u") => row("update"),
        Some("d") => row("delete"),
        Some(op) => return Err(format!("unknown op `{op}`")),
        None if p.get("ddl").is_some() => other("ddl", text(&p["ddl"])),
        None if p["status"] == "BEGIN" => other("begin", None),
        None if p["status"] == "END" => other("commit", None),
        None if p["heartbeat"] == true => other("heartbeat", None),
        None => return Err("neither a row, DDL, transaction nor heartbeat record".into()),
    })
}

/// An update's before image from the after image and the changed columns' old values.
fn rebuilt_before(after: &Json, old: &Json) -> Option<Json> {
    let mut before: Map<String, Json> = after.as_object()?.clone();
    for (k, v) in old.as_object()? {
        before.insert(k.clone(), v.clone());
    }
    Some(Json::Object(before))
}

/// The parts of a Canal or Maxwell row record: `data` is the row (after image, or the deleted
/// row), `old` the changed columns' previous values of an update.
fn row_parts(
    operation: &'static str,
    data: Option<Json>,
    old: &Json,
    p: &Json,
) -> Result<Parts, String> {
    let (before, after) = match operation {
        "insert" | "read" => (None, data),
        "update" => (data.as_ref().and_then(|d| rebuilt_before(d, old)), data),
        _ => (data, None),
    };
    Ok(Parts {
        operation,
        database: text(&p["database"]),
        table: text(&p["table"]),
        before,
        after,
        statement: None,
    })
}

fn canal(p: &Json) -> Result<Parts, String> {
    let data = p["data"].get(0).cloned();
    let old = p["old"].get(0).unwrap_or(&Json::Null);
    match p["type"].as_str() {
        // Canal has no snapshot read: Ferry marks a backfilled row's INSERT.
        Some("INSERT") if p["isSnapshot"] == true => row_parts("read", data, old, p),
        Some("INSERT") => row_parts("insert", data, old, p),
        Some("UPDATE") => row_parts("update", data, old, p),
        Some("DELETE") => row_parts("delete", data, old, p),
        Some("QUERY") if p["isDdl"] == true => Ok(Parts {
            operation: "ddl",
            database: text(&p["database"]),
            table: None,
            before: None,
            after: None,
            statement: text(&p["sql"]),
        }),
        other => Err(format!("unknown type {other:?}")),
    }
}

/// The row key of a Maxwell record's key: Ferry's readable `{"pk": {…}}`, or Maxwell's own
/// `{"database", "table", "pk.<column>": …}` (column names lower-cased: the row's own names
/// are taken from `row`). `None` for a table without a key (`_uuid`).
fn maxwell_key(k: &Json, row: Option<&Json>) -> Option<Json> {
    if let Some(pk) = k.get("pk") {
        return Some(pk.clone());
    }
    let mut key = Map::new();
    for (name, v) in k.as_object()? {
        let Some(lower) = name.strip_prefix("pk.") else {
            continue;
        };
        let column = row
            .and_then(Json::as_object)
            .and_then(|r| r.keys().find(|c| c.to_lowercase() == lower))
            .map_or_else(|| lower.to_owned(), Clone::clone);
        key.insert(column, v.clone());
    }
    (!key.is_empty()).then_some(Json::Object(key))
}

fn maxwell(p: &Json) -> Result<Parts, String> {
    let data = object(p.get("data"));
    let old = p.get("old").unwrap_or(&Json::Null);
    match p["type"].as_str() {
        Some("insert") => row_parts("insert", data, old, p),
        Some("bootstrap-insert") => row_parts("read", data, old, p),
        Some("update") => row_parts("update", data, old, p),
        Some("delete") => row_parts("delete", data, old, p),
        other => Err(format!("unknown type {other:?}")),
    }
}

fn field<'a>(record: &'a Avro, name: &str) -> Option<&'a Avro> {
    match record {
        Avro::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        Avro::Union(_, inner) => field(inner, name),
        _ => None,
    }
}

fn unwrap_union(v: &Avro) -> &Avro {
    match v {
        Avro::Union(_, inner) => unwrap_union(inner),
        other => other,
    }
}

fn avro_string(v: Option<&Avro>) -> Option<String> {
    match v.map(unwrap_union) {
        Some(Avro::String(s) | Avro::Enum(_, s)) => Some(s.clone()),
        _ => None,
    }
}

fn avro_int(v: Option<&Avro>) -> Option<i64> {
    match v.map(unwrap_union) {
        Some(Avro::Int(i)) => Some(i64::from(*i)),
        Some(Avro::Long(i)) => Some(*i),
        _ => None,
    }
}

/// One image value of the DTS layout as plain JSON.
fn avro_value(v: &Avro) -> Json {
    let v = unwrap_union(v);
    let Avro::Record(fields) = v else {
        return Json::Null;
    };
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    match names.as_slice() {
        // Integer: exact digits, a JSON number when it fits.
        ["precision", "value"] => {
            let digits = avro_string(get("value")).unwrap_or_default();
            digits
                .parse::<i64>()
                .map(Json::from)
                .or_else(|_| digits.parse::<u64>().map(Json::from))
                .unwrap_or(Json::String(digits))
        }
        ["charset", "value"] => {
            let charset = avro_string(get("charset")).unwrap_or_default();
            match get("value") {
                Some(Avro::Bytes(b)) if charset == "binary" => Json::String(STANDARD.encode(b)),
                Some(Avro::Bytes(b)) => Json::String(String::from_utf8_lossy(b).into_owned()),
                _ => Json::Null,
            }
        }
        ["value", "precision", "scale"] => match get("value") {
            Some(Avro::Double(f)) => {
                serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number)
            }
            other => avro_string(other).map_or(Json::Null, Json::String),
        },
        // Ferry's readable Timestamp has `micros`; DTS's `millis` holds microseconds too.
        ["timestamp", "micros"] | ["timestamp", "millis"] => {
            let secs = avro_int(get("timestamp")).unwrap_or_default();
            let micros = avro_int(get("micros").or(get("millis"))).unwrap_or_default();
            chrono::DateTime::from_timestamp(secs, u32::try_from(micros * 1000).unwrap_or(0))
                .map_or(Json::Null, |t| {
                    Json::String(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                })
        }
        ["type", "value"] => match get("value") {
            Some(Avro::Bytes(b)) => Json::String(STANDARD.encode(b)),
            other => avro_string(other).map_or(Json::Null, Json::String),
        },
        // DateTime: Ferry's readable one says `negative`; DTS's makes every part negative.
        _ if names.contains(&"negative") || names.contains(&"year") => {
            let part = |n: &str| avro_int(get(n)).map(i64::abs);
            let negative = matches!(get("negative"), Some(Avro::Boolean(true)))
                || ["hour", "minute", "second", "millis"]
                    .iter()
                    .any(|n| avro_int(get(n)).is_some_and(|v| v < 0));
            let date = match (part("year"), part("month"), part("day")) {
                (Some(y), Some(m), Some(d)) => Some(format!("{y:04}-{m:02}-{d:02}")),
                _ => None,
            };
            let time = match (part("hour"), part("minute"), part("second")) {
                (Some(h), Some(m), Some(s)) => {
                    let sign = if negative { "-" } else { "" };
                    let micros = part("micros")
                        .or(part("millis"))
                        .filter(|u| *u > 0)
                        .map(|u| format!(".{u:06}"))
                        .unwrap_or_default();
                    Some(format!("{sign}{h:02}:{m:02}:{s:02}{micros}"))
                }
                _ => None,
            };
            match (date, time) {
                (Some(d), Some(t)) => Json::String(format!("{d}T{t}")),
                (Some(d), None) => Json::String(d),
                (None, Some(t)) => Json::String(t),
                // YEAR in DTS's layout: the year alone.
                (None, None) => part("year").map_or(Json::Null, Json::from),
            }
        }
        _ => Json::Null,
    }
}

fn dts_avro(payload: &[u8], values: Values) -> Result<Parts, String> {
    let schema = crate::format::dts_avro::schema_for(values)?;
    crate::format::dts_avro::check_datum(payload, values)?;
    let datum = apache_avro::from_avro_datum(schema, &mut Cursor::new(payload), None)
        .map_err(|e| e.to_string())?;
    // The format has no snapshot read: Ferry tags a backfilled row's INSERT.
    let snapshot = match field(&datum, "tags").map(unwrap_union) {
        Some(Avro::Map(tags)) => avro_string(tags.get("snapshot")).as_deref() == Some("true"),
        _ => false,
    };
    let operation = match avro_string(field(&datum, "operation")).as_deref() {
        Some("INSERT") if snapshot => "read",
        Some("INSERT") => "insert",
        Some("UPDATE") => "update",
        Some("DELETE") => "delete",
        Some("DDL") => "ddl",
        Some("BEGIN") => "begin",
        Some("COMMIT") => "commit",
        Some("HEARTBEAT") => "heartbeat",
        other => return Err(format!("unknown operation {other:?}")),
    };
    let object = avro_string(field(&datum, "objectName"));
    let names: Vec<String> = match field(&datum, "fields").map(unwrap_union) {
        Some(Avro::Array(fields)) => fields
            .iter()
            .map(|f| avro_string(field(f, "name")).unwrap_or_default())
            .collect(),
        _ => Vec::new(),
    };
    let image = |name: &str| -> Option<Json> {
        match field(&datum, name).map(unwrap_union) {
            Some(Avro::Array(values)) => Some(Json::Object(
                names
                    .iter()
                    .cloned()
                    .zip(values.iter().map(avro_value))
                    .collect(),
            )),
            _ => None,
        }
    };
    if operation == "ddl" {
        return Ok(Parts {
            operation,
            database: object,
            table: None,
            before: None,
            after: None,
            statement: avro_string(field(&datum, "afterImages")),
        });
    }
    let (database, table) = match object.as_deref().and_then(|o| o.split_once('.')) {
        Some((d, t)) => (Some(d.to_owned()), Some(t.to_owned())),
        None => (object, None),
    };
    Ok(Parts {
        operation,
        database,
        table,
        before: image("beforeImages"),
        after: image("afterImages"),
        statement: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_domain::change::{
        ChangeEvent, ChangeKind, Column, ObjectName, RowChange, TableSchema, TransactionRef,
    };
    use ferry_domain::value::{Decimal, Value};
    use serde_json::json;

    use super::*;
    use crate::format::encode;
    use ferry_domain::selection::ColumnMask;

    fn event(kind: ChangeKind) -> ChangeEvent {
        ChangeEvent {
            position: std::sync::Arc::new("binlog.000001:900@0-1-7".parse().unwrap()),
            event_offset: 0,
            server_id: 1,
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            transaction: Some(TransactionRef {
                id: "0-1-7".into(),
                event_index: 2,
                carried_index: 0,
                last: false,
                event_row: 0,
            }),
            kind,
        }
    }

    fn update() -> ChangeEvent {
        let col = |n: &str, t: &str| Column {
            name: n.into(),
            source_type: t.into(),
            nullable: true,
        };
        let table = Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "orders".into(),
                },
                vec![
                    col("id", "int"),
                    col("total", "decimal(10,2)"),
                    col("note", "varchar(20)"),
                ],
                vec![0],
            )
            .unwrap(),
        );
        let dec = |s: &str| Value::Decimal(Decimal::try_from(s.to_owned()).unwrap());
        let row = RowChange::update(
            table,
            vec![Value::Int(7), dec("1.50"), Value::String("a".into())],
            vec![Value::Int(7), dec("2.50"), Value::String("a".into())],
        )
        .unwrap();
        event(ChangeKind::Row(row))
    }

    fn shown(style: impl Into<crate::format::Style>, e: &ChangeEvent) -> ChangeView {
        let style = style.into();
        let r = encode(style.clone(), "t", e, 1, &ColumnMask::All)
            .unwrap()
            .unwrap();
        view_with(
            style.format,
            style.values,
            &RawRecord {
                partition: 0,
                offset: 3,
                timestamp_ms: Some(e.timestamp.timestamp_millis()),
                key: r.key.as_deref(),
                payload: &r.payload,
                idempotency_key: &r.idempotency_key,
                position: &r.position,
            },
        )
        .unwrap()
    }

    #[test]
    fn every_format_shows_an_update_in_the_same_shape() {
        let e = update();
        for format in [Format::DebeziumJson, Format::MaxwellJson, Format::DtsAvro] {
            let v = shown(format, &e);
            assert_eq!(v.operation, "update", "{format:?}");
            assert_eq!(
                (v.database.as_deref(), v.table.as_deref()),
                (Some("shop"), Some("orders")),
                "{format:?}"
            );
            assert_eq!(v.key, Some(json!({"id": 7})), "{format:?}");
            assert_eq!(
                v.before,
                Some(json!({"id": 7, "total": "1.50", "note": "a"})),
                "{format:?}"
            );
            assert_eq!(
                v.after,
                Some(json!({"id": 7, "total": "2.50", "note": "a"})),
                "{format:?}"
            );
            assert_eq!(v.idempotency_key, "0-1-7/2");
            assert_eq!(v.position, "binlog.000001:900@0-1-7");
        }
        // Canal carries every value as text.
        let canal = shown(Format::CanalJson, &e);
        assert_eq!(
            canal.before,
            Some(json!({"id": "7", "total": "1.50", "note": "a"}))
        );
        assert_eq!(
            canal.after,
            Some(json!({"id": "7", "total": "2.50", "note": "a"}))
        );
        assert_eq!(canal.key, Some(json!({"id": 7})));
        // DTS's own Avro record, read with the published schema.
        let dts = shown(crate::format::Style::compatible(Format::DtsAvro), &e);
        assert_eq!(dts.operation, "update");
        assert_eq!(dts.key, Some(json!({"id": 7})));
        assert_eq!(
            dts.after,
            Some(json!({"id": 7, "total": "2.50", "note": "a"}))
        );
        // Debezium's own record (JsonConverter's envelope): values read by their schema.
        let debezium = shown(crate::format::Style::compatible(Format::DebeziumJson), &e);
        assert_eq!(debezium.operation, "update");
        assert_eq!(debezium.key, Some(json!({"id": 7})));
        assert_eq!(
            (debezium.before, debezium.after),
            (
                Some(json!({"id": 7, "total": "1.50", "note": "a"})),
                Some(json!({"id": 7, "total": "2.50", "note": "a"}))
            )
        );
        // Maxwell's own record: its hash key, decimals as numbers.
        let maxwell = shown(crate::format::Style::compatible(Format::MaxwellJson), &e);
        assert_eq!(maxwell.key, Some(json!({"id": 7})));
        assert_eq!(maxwell.operation, "update");
        assert_eq!(
            maxwell.before,
            Some(json!({"id": 7, "total": 1.5, "note": "a"}))
        );
        assert_eq!(
            maxwell.after,
            Some(json!({"id": 7, "total": 2.5, "note": "a"}))
        );
    }

    #[test]
    fn ddl_is_shown_with_its_statement() {
        let e = event(ChangeKind::Ddl {
            database: Some("shop".into()),
            statement: "ALTER TABLE orders ADD c INT".into(),
        });
        for format in [Format::DebeziumJson, Format::CanalJson, Format::DtsAvro] {
            let v = shown(format, &e);
            assert_eq!(v.operation, "ddl", "{format:?}");
            assert_eq!(v.database.as_deref(), Some("shop"), "{format:?}");
            assert_eq!(v.statement.as_deref(), Some("ALTER TABLE orders ADD c INT"));
            assert_eq!(v.key, None);
        }
    }

    #[test]
    fn a_record_of_another_format_is_an_error_not_a_guess() {
        let e = update();
        let r = encode(Format::DtsAvro, "t", &e, 1, &ColumnMask::All)
            .unwrap()
            .unwrap();
        let raw = RawRecord {
            partition: 0,
            offset: 9,
            timestamp_ms: None,
            key: None,
            payload: &r.payload,
            idempotency_key: "",
            position: "",
        };
        let err = view(Format::DebeziumJson, &raw).unwrap_err();
        assert_eq!(err.offset, 9);
    }
}

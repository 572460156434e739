//! Record formats. `debezium-json` is the default: Debezium's MySQL connector envelope
//! (`before`, `after`, `source`, `op`, `ts_ms`, `transaction`), readable by Flink, Kafka Connect
//! sinks, ClickHouse and Materialize.
//!
//! # Values
//!
//! | Ferry value | JSON |
//! |---|---|
//! | `Int`, `UInt`, `Year` | number (BIGINT UNSIGNED up to 18446744073709551615, exactly) |
//! | `Float`, `Double` | number |
//! | `Decimal` | string, exact digits |
//! | `String`, `Enum`, `Json` | string (ENUM by name; JSON as its text, like Debezium's `io.debezium.data.Json`) |
//! | `Set` | string, members comma-separated |
//! | `Bytes`, `Geometry` | base64 string |
//! | `Bit` | BIT(1) boolean, wider BIT base64 of the big-endian bytes (as Debezium) |
//! | `Date` | `"2024-02-29"`; a zero date `"0000-00-00"` |
//! | `DateTime` | `"2024-02-29T23:59:58.123456"` (no zone: DATETIME has none) |
//! | `Timestamp` | `"2024-02-29T13:14:15.678Z"` (UTC); the zero timestamp `"0000-00-00T00:00:00Z"` |
//! | `Time` | `"-838:59:59"`, `"12:34:56.000001"` |
//!
//! Temporal values are strings, not Debezium's epoch numbers, so zero dates and TIME beyond 24
//! hours stay exact; this is the one documented difference from Debezium's defaults.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ferry_domain::change::{ChangeEvent, ChangeKind, Operation, RowChange};
use ferry_domain::task_config::Format;
use ferry_domain::value::Value;
use serde_json::{Map, Value as Json, json};

/// A record ready to produce: key, payload and the headers every record carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The row's key as JSON (`{"id": 7}`), for compaction and partitioning; `None` for
    /// transaction and DDL records.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub idempotency_key: String,
    pub position: String,
}

/// Why an event cannot be encoded in the task's format.
#[derive(Debug, thiserror::Error)]
#[error("format {format:?} cannot encode this event: {reason}")]
pub struct UnsupportedFormat {
    pub format: Format,
    pub reason: String,
}

/// Encodes an event; `columns` limits the row images to the selected columns (key columns are
/// always kept). Returns `None` for events the format does not carry.
pub fn encode(
    format: Format,
    topic: &str,
    event: &ChangeEvent,
    total_order: u64,
    columns: Option<&[String]>,
) -> Result<Option<Record>, UnsupportedFormat> {
    match format {
        // Rows, the hot path, are written straight to bytes; the rest through serde_json values.
        Format::DebeziumJson => Ok(match &event.kind {
            ChangeKind::Row(row) => {
                Some(fast::debezium_row(topic, event, row, total_order, columns))
            }
            _ => debezium(topic, event, total_order, columns),
        }),
        Format::CanalJson => Ok(canal(event, total_order, columns)),
        Format::MaxwellJson => Ok(maxwell(event, columns)),
        Format::DtsAvro => {
            crate::avro::dts_avro(event, columns).map_err(|reason| UnsupportedFormat {
                format: Format::DtsAvro,
                reason,
            })
        }
    }
}

fn debezium(
    topic: &str,
    e: &ChangeEvent,
    total_order: u64,
    columns: Option<&[String]>,
) -> Option<Record> {
    let position = e.position.to_string();
    let ts_ms = e.timestamp.timestamp_millis();
    let mut source = json!({
        "version": concat!("ferry-", env!("CARGO_PKG_VERSION")),
        "connector": "mysql",
        "name": topic,
        "ts_ms": ts_ms,
        "snapshot": "false",
        "server_id": e.server_id,
        "file": e.position.file().name(),
        "pos": e.position.offset(),
        "gtid": e.position.gtid().map(|g| g.to_string()),
    });
    let transaction = e.transaction.as_ref().map(
        |t| json!({"id": t.id, "total_order": total_order, "data_collection_order": t.event_index}),
    );
    let (key, payload) = match &e.kind {
        ChangeKind::Row(row) => {
            let name = row.table().name();
            source["db"] = json!(name.database);
            source["table"] = json!(name.table);
            source["row"] = json!(e.transaction.as_ref().map_or(0, |t| t.event_index));
            let op = match row.operation() {
                Operation::Insert => "c",
                Operation::Update => "u",
                Operation::Delete => "d",
            };
            let payload = json!({
                "before": row.before().map(|v| image(row, v, columns)),
                "after": row.after().map(|v| image(row, v, columns)),
                "source": source,
                "op": op,
                "ts_ms": chrono::Utc::now().timestamp_millis(),
                "transaction": transaction,
            });
            (Some(key_of(row).to_string().into_bytes()), payload)
        }
        ChangeKind::Ddl {
            database,
            statement,
        } => {
            source["db"] = json!(database);
            (
                None,
                json!({"source": source, "databaseName": database, "ddl": statement, "ts_ms": ts_ms, "transaction": transaction}),
            )
        }
        ChangeKind::Begin | ChangeKind::Commit { .. } => {
            let status = if matches!(e.kind, ChangeKind::Begin) {
                "BEGIN"
            } else {
                "END"
            };
            let id = e.transaction.as_ref().map(|t| t.id.clone());
            (
                None,
                json!({"status": status, "id": id, "event_count": total_order, "ts_ms": ts_ms, "source": source}),
            )
        }
        ChangeKind::Heartbeat => (
            None,
            json!({"heartbeat": true, "ts_ms": ts_ms, "source": source}),
        ),
    };
    Some(Record {
        key,
        payload: payload.to_string().into_bytes(),
        idempotency_key: e.idempotency_key(),
        position,
    })
}

/// The debezium-json row record written straight into a byte buffer: no `serde_json::Value`,
/// no per-row map of column names. Produces the same JSON as [`debezium`] (tested against it).
mod fast {
    use std::io::Write;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use ferry_domain::change::{ChangeEvent, Operation, RowChange};
    use ferry_domain::value::Value;

    use super::Record;

    fn string(out: &mut Vec<u8>, s: &str) {
        // Escaping by serde_json; writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }

    fn display(out: &mut Vec<u8>, v: impl std::fmt::Display) {
        // Temporal values print plain ASCII: no escaping needed.
        let _ = write!(out, "\"{v}\"");
    }

    pub(super) fn value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Null => out.extend_from_slice(b"null"),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            Value::Year(y) => {
                let _ = write!(out, "{y}");
            }
            Value::Float(f) => {
                let _ = serde_json::to_writer(&mut *out, f);
            }
            Value::Double(d) => {
                let _ = serde_json::to_writer(&mut *out, d);
            }
            Value::Decimal(d) => string(out, d.as_str()),
            Value::String(s) | Value::Json(s) => string(out, s),
            Value::Bytes(b) | Value::Geometry(b) => {
                out.push(b'"');
                let mut encoded = String::with_capacity(b.len() * 4 / 3 + 4);
                STANDARD.encode_string(b, &mut encoded);
                out.extend_from_slice(encoded.as_bytes());
                out.push(b'"');
            }
            Value::Date(d) => display(out, d),
            Value::DateTime(dt) => display(out, dt.to_string().replacen(' ', "T", 1)),
            Value::Time(t) => display(out, t),
            Value::Timestamp(t) => match t.to_utc() {
                Some(utc) => display(
                    out,
                    utc.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                ),
                None => out.extend_from_slice(b"\"0000-00-00T00:00:00Z\""),
            },
            Value::Bit(b) if b.width == 1 => {
                out.extend_from_slice(if b.to_u64() == 1 { b"true" } else { b"false" })
            }
            Value::Bit(b) => {
                out.push(b'"');
                out.extend_from_slice(STANDARD.encode(&b.bytes).as_bytes());
                out.push(b'"');
            }
            Value::Enum(e) => string(out, &e.name),
            Value::Set(s) => string(out, &s.names.join(",")),
        }
    }

    fn image(out: &mut Vec<u8>, row: &RowChange, values: &[Value], columns: Option<&[String]>) {
        let table = row.table();
        out.push(b'{');
        let mut first = true;
        for (i, (col, v)) in table.columns().iter().zip(values).enumerate() {
            if columns.is_none_or(|c| c.contains(&col.name)) || table.key().contains(&i) {
                if !first {
                    out.push(b',');
                }
                first = false;
                string(out, &col.name);
                out.push(b':');
                value(out, v);
            }
        }
        out.push(b'}');
    }

    fn key(row: &RowChange) -> Vec<u8> {
        let table = row.table();
        let image = row.after().or(row.before()).unwrap_or_default();
        let mut out = Vec::with_capacity(32);
        out.push(b'{');
        let all: Vec<usize>;
        let indexes: &[usize] = if table.key().is_empty() {
            all = (0..image.len()).collect();
            &all
        } else {
            table.key()
        };
        for (n, i) in indexes.iter().enumerate() {
            if let (Some(col), Some(v)) = (table.columns().get(*i), image.get(*i)) {
                if n > 0 {
                    out.push(b',');
                }
                string(&mut out, &col.name);
                out.push(b':');
                value(&mut out, v);
            }
        }
        out.push(b'}');
        out
    }

    pub(super) fn debezium_row(
        topic: &str,
        e: &ChangeEvent,
        row: &RowChange,
        total_order: u64,
        columns: Option<&[String]>,
    ) -> Record {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"before\":");
        match row.before() {
            Some(v) => image(&mut out, row, v, columns),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"after\":");
        match row.after() {
            Some(v) => image(&mut out, row, v, columns),
            None => out.extend_from_slice(b"null"),
        }
        let gtid = e.position.gtid().map(ToString::to_string);
        let name = row.table().name();
        let index = e.transaction.as_ref().map_or(0, |t| t.event_index);
        let _ = write!(
            out,
            ",\"source\":{{\"version\":\"ferry-{}\",\"connector\":\"mysql\",\"name\":",
            env!("CARGO_PKG_VERSION")
        );
        string(&mut out, topic);
        let _ = write!(
            out,
            ",\"ts_ms\":{},\"snapshot\":\"false\",\"server_id\":{},\"file\":",
            e.timestamp.timestamp_millis(),
            e.server_id
        );
        string(&mut out, e.position.file().name());
        let _ = write!(out, ",\"pos\":{},\"gtid\":", e.position.offset());
        match &gtid {
            Some(g) => string(&mut out, g),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"db\":");
        string(&mut out, &name.database);
        out.extend_from_slice(b",\"table\":");
        string(&mut out, &name.table);
        let op = match row.operation() {
            Operation::Insert => "c",
            Operation::Update => "u",
            Operation::Delete => "d",
        };
        let _ = write!(
            out,
            ",\"row\":{index}}},\"op\":\"{op}\",\"ts_ms\":{},\"transaction\":",
            chrono::Utc::now().timestamp_millis()
        );
        match &e.transaction {
            Some(t) => {
                out.extend_from_slice(b"{\"id\":");
                string(&mut out, &t.id);
                let _ = write!(
                    out,
                    ",\"total_order\":{total_order},\"data_collection_order\":{}}}",
                    t.event_index
                );
            }
            None => out.extend_from_slice(b"null"),
        }
        out.push(b'}');
        Record {
            key: Some(key(row)),
            payload: out,
            idempotency_key: e.idempotency_key(),
            position: e.position.to_string(),
        }
    }
}

/// Canal's flat message: every value as a string, `old` with the changed columns only.
fn canal(e: &ChangeEvent, id: u64, columns: Option<&[String]>) -> Option<Record> {
    let es = e.timestamp.timestamp_millis();
    let ts = chrono::Utc::now().timestamp_millis();
    let (key, payload) = match &e.kind {
        ChangeKind::Row(row) => {
            let table = row.table();
            let selected: Vec<usize> = (0..table.columns().len())
                .filter(|i| {
                    columns.is_none_or(|c| c.contains(&table.columns()[*i].name))
                        || table.key().contains(i)
                })
                .collect();
            let as_strings = |values: &[Value]| {
                let mut obj = Map::new();
                for i in &selected {
                    obj.insert(table.columns()[*i].name.clone(), canal_value(&values[*i]));
                }
                Json::Object(obj)
            };
            let (kind, data, old) = match (row.before(), row.after()) {
                (None, Some(a)) => ("INSERT", as_strings(a), Json::Null),
                (Some(b), Some(a)) => {
                    let mut old = Map::new();
                    for i in &selected {
                        if b[*i] != a[*i] {
                            old.insert(table.columns()[*i].name.clone(), canal_value(&b[*i]));
                        }
                    }
                    ("UPDATE", as_strings(a), json!([Json::Object(old)]))
                }
                (Some(b), None) => ("DELETE", as_strings(b), Json::Null),
                (None, None) => return None,
            };
            let mysql_type: Map<String, Json> = selected
                .iter()
                .map(|i| {
                    (
                        table.columns()[*i].name.clone(),
                        json!(table.columns()[*i].source_type),
                    )
                })
                .collect();
            let sql_type: Map<String, Json> = selected
                .iter()
                .map(|i| {
                    (
                        table.columns()[*i].name.clone(),
                        json!(jdbc_type(&table.columns()[*i].source_type)),
                    )
                })
                .collect();
            let pk: Vec<&str> = table
                .key()
                .iter()
                .map(|i| table.columns()[*i].name.as_str())
                .collect();
            let payload = json!({
                "data": [data], "database": table.name().database, "table": table.name().table,
                "es": es, "ts": ts, "id": id, "isDdl": false, "mysqlType": mysql_type, "sqlType": sql_type,
                "old": old, "pkNames": pk, "sql": "", "type": kind,
                "gtid": e.position.gtid().map(|g| g.to_string()), "position": e.position.to_string(),
            });
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
        payload: payload.to_string().into_bytes(),
        idempotency_key: e.idempotency_key(),
        position: e.position.to_string(),
    })
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

/// Maxwell's row format: `type`, `data`, `old` (changed columns), `ts` in seconds.
fn maxwell(e: &ChangeEvent, columns: Option<&[String]>) -> Option<Record> {
    let ChangeKind::Row(row) = &e.kind else {
        // Maxwell's DDL and transaction records are not emitted in this format.
        return None;
    };
    let table = row.table();
    let (kind, data, old) = match (row.before(), row.after()) {
        (None, Some(a)) => ("insert", image(row, a, columns), None),
        (Some(b), Some(a)) => {
            let mut old = Map::new();
            for (i, col) in table.columns().iter().enumerate() {
                let selected =
                    columns.is_none_or(|c| c.contains(&col.name)) || table.key().contains(&i);
                if selected && b[i] != a[i] {
                    old.insert(col.name.clone(), value(&b[i]));
                }
            }
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
        "xoffset": e.transaction.as_ref().map_or(0, |t| t.event_index),
        "data": data,
    });
    if let Some(old) = old {
        payload["old"] = old;
    }
    Some(Record {
        key: Some(json!({"database": table.name().database, "table": table.name().table, "pk": key_of(row)}).to_string().into_bytes()),
        payload: payload.to_string().into_bytes(),
        idempotency_key: e.idempotency_key(),
        position: e.position.to_string(),
    })
}

/// A row image as a JSON object of the selected columns.
fn image(row: &RowChange, values: &[Value], columns: Option<&[String]>) -> Json {
    let table = row.table();
    let mut obj = Map::with_capacity(values.len());
    for (i, (col, v)) in table.columns().iter().zip(values).enumerate() {
        let selected =
            columns.is_none_or(|cols| cols.contains(&col.name)) || table.key().contains(&i);
        if selected {
            obj.insert(col.name.clone(), value(v));
        }
    }
    Json::Object(obj)
}

/// The record key: the key columns of the row (the whole row for a table without a key).
pub(crate) fn key_of(row: &RowChange) -> Json {
    let table = row.table();
    let image = row.after().or(row.before()).unwrap_or_default();
    let mut obj = Map::new();
    let indexes: Vec<usize> = if table.key().is_empty() {
        (0..image.len()).collect()
    } else {
        table.key().to_vec()
    };
    for i in indexes {
        if let (Some(col), Some(v)) = (table.columns().get(i), image.get(i)) {
            obj.insert(col.name.clone(), value(v));
        }
    }
    Json::Object(obj)
}

/// One value as JSON (the table in the module documentation).
pub fn value(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(i) => json!(i),
        Value::UInt(u) => json!(u),
        Value::Float(f) => json!(f),
        Value::Double(d) => json!(d),
        Value::Decimal(d) => json!(d.as_str()),
        Value::String(s) | Value::Json(s) => json!(s),
        Value::Bytes(b) | Value::Geometry(b) => json!(STANDARD.encode(b)),
        Value::Date(d) => json!(d.to_string()),
        Value::DateTime(dt) => json!(dt.to_string().replacen(' ', "T", 1)),
        Value::Timestamp(t) => match t.to_utc() {
            Some(utc) => json!(utc.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            None => json!("0000-00-00T00:00:00Z"),
        },
        Value::Time(t) => json!(t.to_string()),
        Value::Year(y) => json!(y),
        Value::Bit(b) if b.width == 1 => json!(b.to_u64() == 1),
        Value::Bit(b) => json!(STANDARD.encode(&b.bytes)),
        Value::Enum(e) => json!(e.name),
        Value::Set(s) => json!(s.names.join(",")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ferry_domain::change::{Column, ObjectName, TableSchema, TransactionRef};
    use ferry_domain::value::{Bits, Date, Decimal, SetValue, Timestamp};

    use super::*;

    fn table() -> Arc<TableSchema> {
        let col = |n: &str| Column {
            name: n.into(),
            source_type: "int".into(),
            nullable: true,
        };
        Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "orders".into(),
                },
                vec![col("id"), col("total"), col("note")],
                vec![0],
            )
            .unwrap(),
        )
    }

    fn event(kind: ChangeKind) -> ChangeEvent {
        ChangeEvent {
            position: "binlog.000001:900@0-1-7".parse().unwrap(),
            server_id: 1,
            timestamp: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            transaction: Some(TransactionRef {
                id: "0-1-7".into(),
                event_index: 2,
            }),
            kind,
        }
    }

    #[test]
    fn debezium_update_envelope() {
        let row = RowChange::update(
            table(),
            vec![
                Value::Int(7),
                Value::Decimal(Decimal::try_from("1.50".to_owned()).unwrap()),
                Value::String("a".into()),
            ],
            vec![
                Value::Int(7),
                Value::Decimal(Decimal::try_from("2.50".to_owned()).unwrap()),
                Value::Null,
            ],
        )
        .unwrap();
        let cols = vec!["total".to_owned()];
        let r = encode(
            Format::DebeziumJson,
            "ferry.ins_x",
            &event(ChangeKind::Row(row)),
            5,
            Some(&cols),
        )
        .unwrap()
        .unwrap();
        let j: Json = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(j["op"], "u");
        assert_eq!(
            j["before"],
            json!({"id": 7, "total": "1.50"}),
            "selected columns plus the key"
        );
        assert_eq!(j["after"], json!({"id": 7, "total": "2.50"}));
        assert_eq!(j["source"]["db"], "shop");
        assert_eq!(j["source"]["table"], "orders");
        assert_eq!(j["source"]["file"], "binlog.000001");
        assert_eq!(j["source"]["pos"], 900);
        assert_eq!(j["source"]["gtid"], "0-1-7");
        assert_eq!(j["source"]["ts_ms"], 1_700_000_000_000i64);
        assert_eq!(
            j["transaction"],
            json!({"id": "0-1-7", "total_order": 5, "data_collection_order": 2})
        );
        assert_eq!(r.key.as_deref(), Some(&b"{\"id\":7}"[..]));
        assert_eq!(r.idempotency_key, "0-1-7/2");
        assert_eq!(r.position, "binlog.000001:900@0-1-7");
    }

    #[test]
    fn exact_values() {
        assert_eq!(
            value(&Value::UInt(u64::MAX)).to_string(),
            "18446744073709551615"
        );
        assert_eq!(
            value(&Value::Date(Date {
                year: 0,
                month: 0,
                day: 0
            })),
            json!("0000-00-00")
        );
        assert_eq!(
            value(&Value::Timestamp(Timestamp {
                seconds: 1_709_212_455,
                micros: 678_000
            })),
            json!("2024-02-29T13:14:15.678Z")
        );
        assert_eq!(
            value(&Value::Timestamp(Timestamp {
                seconds: 0,
                micros: 0
            })),
            json!("0000-00-00T00:00:00Z")
        );
        assert_eq!(
            value(&Value::Bit(Bits {
                width: 1,
                bytes: vec![1]
            })),
            json!(true)
        );
        assert_eq!(
            value(&Value::Bit(Bits {
                width: 12,
                bytes: vec![0x0a, 0xaa]
            })),
            json!("Cqo=")
        );
        assert_eq!(value(&Value::Bytes(vec![0, 255])), json!("AP8="));
        assert_eq!(
            value(&Value::Set(SetValue {
                mask: 5,
                names: vec!["a".into(), "c".into()]
            })),
            json!("a,c")
        );
    }

    fn update() -> ChangeEvent {
        let row = RowChange::update(
            table(),
            vec![
                Value::Int(7),
                Value::Decimal(Decimal::try_from("1.50".to_owned()).unwrap()),
                Value::String("a".into()),
            ],
            vec![
                Value::Int(7),
                Value::Decimal(Decimal::try_from("2.50".to_owned()).unwrap()),
                Value::String("a".into()),
            ],
        )
        .unwrap();
        event(ChangeKind::Row(row))
    }

    /// The fast row writer and the serde_json one agree on every kind of value.
    #[test]
    fn fast_rows_equal_the_reference() {
        use ferry_domain::value::{DateTime, EnumValue, Time};
        let col = |n: &str| Column {
            name: n.into(),
            source_type: "x".into(),
            nullable: true,
        };
        let names = [
            "id", "i", "u", "f", "d", "dec", "s", "q\"uote", "b", "date", "dt", "ts", "zero_ts",
            "t", "y", "bit1", "bit12", "e", "set", "json", "null",
        ];
        let t = Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "db\"x".into(),
                    table: "t".into(),
                },
                names.iter().map(|n| col(n)).collect(),
                vec![0, 6],
            )
            .unwrap(),
        );
        let values = vec![
            Value::Int(-7),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(1.5),
            Value::Double(-0.1),
            Value::Decimal(Decimal::try_from("-12.30".to_owned()).unwrap()),
            Value::String("tab\t \"quoted\" ünï 🚀 \u{1}".into()),
            Value::String("x".into()),
            Value::Bytes(vec![0, 255, 16]),
            Value::Date(Date {
                year: 0,
                month: 0,
                day: 0,
            }),
            Value::DateTime(DateTime {
                date: Date {
                    year: 2024,
                    month: 2,
                    day: 29,
                },
                hour: 1,
                minute: 2,
                second: 3,
                micros: 450_000,
            }),
            Value::Timestamp(Timestamp {
                seconds: 1_709_212_455,
                micros: 678_000,
            }),
            Value::Timestamp(Timestamp {
                seconds: 0,
                micros: 0,
            }),
            Value::Time(Time {
                negative: true,
                hours: 838,
                minutes: 59,
                seconds: 59,
                micros: 0,
            }),
            Value::Year(2155),
            Value::Bit(Bits {
                width: 1,
                bytes: vec![0],
            }),
            Value::Bit(Bits {
                width: 12,
                bytes: vec![0x0a, 0xaa],
            }),
            Value::Enum(EnumValue {
                index: 1,
                name: "a,b".into(),
            }),
            Value::Set(SetValue {
                mask: 3,
                names: vec!["x".into(), "y".into()],
            }),
            Value::Json("{\"a\": 1}".into()),
            Value::Null,
        ];
        let rows = [
            RowChange::insert(t.clone(), values.clone()).unwrap(),
            RowChange::update(
                t.clone(),
                values.clone(),
                values.iter().rev().cloned().collect(),
            )
            .unwrap(),
            RowChange::delete(t.clone(), values.clone()).unwrap(),
        ];
        let cols = ["s".to_owned(), "json".to_owned()];
        for row in rows {
            for columns in [None, Some(&cols[..])] {
                let e = event(ChangeKind::Row(row.clone()));
                let fast = encode(Format::DebeziumJson, "topic\"", &e, 3, columns)
                    .unwrap()
                    .unwrap();
                let reference = debezium("topic\"", &e, 3, columns).unwrap();
                let mut a: Json = serde_json::from_slice(&fast.payload).unwrap();
                let mut b: Json = serde_json::from_slice(&reference.payload).unwrap();
                a["ts_ms"] = Json::Null;
                b["ts_ms"] = Json::Null;
                assert_eq!(a, b);
                let ka: Json = serde_json::from_slice(fast.key.as_deref().unwrap()).unwrap();
                let kb: Json = serde_json::from_slice(reference.key.as_deref().unwrap()).unwrap();
                assert_eq!(ka, kb);
                assert_eq!(
                    (fast.idempotency_key, fast.position),
                    (reference.idempotency_key, reference.position)
                );
            }
        }
    }

    #[test]
    fn canal_flat_message() {
        let r = encode(Format::CanalJson, "t", &update(), 9, None)
            .unwrap()
            .unwrap();
        let j: Json = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(j["type"], "UPDATE");
        assert_eq!(
            j["data"],
            json!([{"id": "7", "total": "2.50", "note": "a"}])
        );
        assert_eq!(
            j["old"],
            json!([{"total": "1.50"}]),
            "only the changed columns"
        );
        assert_eq!(j["pkNames"], json!(["id"]));
        assert_eq!(j["database"], "shop");
        assert_eq!(j["isDdl"], false);
        assert_eq!(j["es"], 1_700_000_000_000i64);
        assert_eq!(j["mysqlType"]["total"], "int");
        assert_eq!(j["id"], 9);
    }

    #[test]
    fn maxwell_row() {
        let r = encode(Format::MaxwellJson, "t", &update(), 9, None)
            .unwrap()
            .unwrap();
        let j: Json = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(j["type"], "update");
        assert_eq!(j["data"], json!({"id": 7, "total": "2.50", "note": "a"}));
        assert_eq!(j["old"], json!({"total": "1.50"}));
        assert_eq!(j["ts"], 1_700_000_000);
        assert_eq!(j["position"], "binlog.000001:900");
        assert_eq!(j["xoffset"], 2);
        assert!(
            encode(
                Format::MaxwellJson,
                "t",
                &event(ChangeKind::Heartbeat),
                0,
                None
            )
            .unwrap()
            .is_none()
        );
    }
}

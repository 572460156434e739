//! `canal-json`: Canal's flat message. Every value is a string, `old` holds the changed columns
//! only, `mysqlType`/`sqlType` describe the carried columns.

use ferry_domain::change::{ChangeEvent, ChangeKind};
use ferry_domain::selection::ColumnMask;
use ferry_domain::value::Value;
use serde_json::{Map, Value as Json, json};

use super::json::value;
use super::record::Record;
use super::rows::{carried, changed, key_of};

/// An event as a Canal flat message; `id` is the record's order in the stream.
pub(super) fn record(e: &ChangeEvent, id: u64, columns: &ColumnMask) -> Option<Record> {
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

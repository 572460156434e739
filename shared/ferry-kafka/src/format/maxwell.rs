//! `maxwell-json`: Maxwell's row format (`type`, `data`, `old` with the changed columns, `ts` in
//! seconds). Maxwell's DDL and transaction records are not emitted in this format.

use ferry_domain::change::{ChangeEvent, ChangeKind};
use ferry_domain::selection::ColumnMask;
use serde_json::{Map, Value as Json, json};

use super::json::value;
use super::record::Record;
use super::rows::{changed, image, key_of};

/// A row event as a Maxwell record; `None` for every other event.
pub(super) fn record(e: &ChangeEvent, columns: &ColumnMask) -> Option<Record> {
    let ChangeKind::Row(row) = &e.kind else {
        return None;
    };
    let table = row.table();
    let (kind, data, old) = match (row.before(), row.after()) {
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

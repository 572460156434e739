//! `debezium-json`, the default: Debezium's MySQL connector envelope (`before`, `after`,
//! `source`, `op`, `ts_ms`, `transaction`), readable by Flink, Kafka Connect sinks, ClickHouse
//! and Materialize. Temporal values are strings, not Debezium's epoch numbers, so zero dates and
//! TIME beyond 24 hours stay exact; this is the one documented difference from Debezium's
//! defaults.
//!
//! Rows, the hot path, are written straight into the record's bytes ([`row`]); the other
//! records (DDL, BEGIN/COMMIT, heartbeats) are built as JSON trees ([`record`]), which also
//! writes rows the slow way as the reference the fast path is tested against.

use std::io::Write;

use ferry_domain::change::{ChangeEvent, ChangeKind, Operation, RowChange};
use ferry_domain::selection::ColumnMask;
use serde_json::json;

use super::json::write_str;
use super::record::Record;
use super::rows::{image, key_of, write_image, write_key};

fn op(row: &RowChange) -> &'static str {
    match row.operation() {
        Operation::Insert => "c",
        Operation::Update => "u",
        Operation::Delete => "d",
        Operation::Read => "r",
    }
}

/// `source.snapshot`: `incremental` for a row a backfill read (Debezium's incremental
/// snapshots), `false` for changes.
fn snapshot(e: &ChangeEvent) -> &'static str {
    if e.is_snapshot_read() {
        "incremental"
    } else {
        "false"
    }
}

/// Any event as a debezium-json record, built as a JSON tree.
pub(super) fn record(
    topic: &str,
    e: &ChangeEvent,
    total_order: u64,
    columns: &ColumnMask,
) -> Option<Record> {
    let position = e.position.to_string();
    let ts_ms = e.timestamp.timestamp_millis();
    let mut source = json!({
        "version": concat!("ferry-", env!("CARGO_PKG_VERSION")),
        "connector": "mysql",
        "name": topic,
        "ts_ms": ts_ms,
        "snapshot": snapshot(e),
        "server_id": e.server_id,
        "file": e.position.file().name(),
        "pos": e.position.offset(),
        "gtid": e.position.gtid().map(|g| g.to_string()),
    });
    let transaction = e.source_transaction().map(
        |t| json!({"id": t.id, "total_order": total_order, "data_collection_order": t.event_index}),
    );
    let (key, payload) = match &e.kind {
        ChangeKind::Row(row) => {
            let name = row.table().name();
            source["db"] = json!(name.database);
            source["table"] = json!(name.table);
            source["row"] = json!(e.source_transaction().map_or(0, |t| t.event_index));
            let payload = json!({
                "before": row.before().map(|v| image(row, v, columns)),
                "after": row.after().map(|v| image(row, v, columns)),
                "source": source,
                "op": op(row),
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
            let id = e.transaction.as_ref().map(|t| &*t.id);
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
        tombstone: false,
        payload: payload.to_string().into_bytes(),
        idempotency_key: e.idempotency_key(),
        position,
    })
}

/// A row record written straight into `record`'s buffers (reused from record to record): no
/// JSON tree, no per-row map of column names, no allocation once the buffers have grown. The
/// same JSON as [`record`] (tested against it).
pub(super) fn row(
    topic: &str,
    e: &ChangeEvent,
    row: &RowChange,
    total_order: u64,
    columns: &ColumnMask,
    record: &mut Record,
) {
    let out = &mut record.payload;
    out.clear();
    // Room for both images at once (base64 is 4/3 of the bytes): a large row's record is not
    // grown by doubling past twice its size.
    out.reserve(row.size_bytes() * 3 / 2 + 1024);
    out.extend_from_slice(b"{\"before\":");
    match row.before() {
        Some(v) => write_image(out, row, v, columns),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"after\":");
    match row.after() {
        Some(v) => write_image(out, row, v, columns),
        None => out.extend_from_slice(b"null"),
    }
    let name = row.table().name();
    let index = e.source_transaction().map_or(0, |t| t.event_index);
    out.extend_from_slice(
        concat!(
            ",\"source\":{\"version\":\"ferry-",
            env!("CARGO_PKG_VERSION"),
            "\",\"connector\":\"mysql\",\"name\":"
        )
        .as_bytes(),
    );
    write_str(out, topic);
    let _ = write!(
        out,
        ",\"ts_ms\":{},\"snapshot\":\"{}\",\"server_id\":{},\"file\":",
        e.timestamp.timestamp_millis(),
        snapshot(e),
        e.server_id
    );
    write_str(out, e.position.file().name());
    let _ = write!(out, ",\"pos\":{},\"gtid\":", e.position.offset());
    match e.position.gtid() {
        Some(g) => {
            // A GTID prints plain ASCII (digits, dashes, colons, a UUID): no escaping needed.
            let _ = write!(out, "\"{g}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"db\":");
    write_str(out, &name.database);
    out.extend_from_slice(b",\"table\":");
    write_str(out, &name.table);
    let _ = write!(
        out,
        ",\"row\":{index}}},\"op\":\"{}\",\"ts_ms\":{},\"transaction\":",
        op(row),
        chrono::Utc::now().timestamp_millis()
    );
    match e.source_transaction() {
        Some(t) => {
            out.extend_from_slice(b"{\"id\":");
            write_str(out, &t.id);
            let _ = write!(
                out,
                ",\"total_order\":{total_order},\"data_collection_order\":{}}}",
                t.event_index
            );
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    let key = record.key.get_or_insert_with(Vec::new);
    key.clear();
    write_key(key, row);
    record.idempotency_key.clear();
    e.write_idempotency_key(&mut record.idempotency_key);
    record.position.clear();
    // Writing to a String cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut record.position, format_args!("{}", e.position));
}

//! The heartbeat writer (optional per task; see `ferry_domain::task_config::HeartbeatWriter`):
//! writes the time into `ferry_heartbeat` on the source every interval, on a connection of its
//! own. The capture loop reads the rows back from the binlog and measures the source delay
//! from the written time, to the millisecond; the rows are never delivered.
//!
//! A failing writer (privileges, the source down) is logged, counted
//! (`ferry_heartbeat_errors_total`) and retried with backoff; it never stops the capture: the
//! delay then falls back to the binlog's own times.

use std::sync::Arc;
use std::time::Duration;

use ferry_domain::change::RowChange;
use ferry_domain::id::InstanceId;
use ferry_domain::task_config::{HEARTBEAT_TABLE, HeartbeatWriter};
use ferry_domain::value::Value;
use ferry_mysql::ConnectParams;
use mysql_async::prelude::Queryable;

use crate::metrics::TaskMeter;

/// `name` quoted as a MySQL identifier.
fn quoted(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The heartbeat table of `writer`.
pub(crate) fn table(writer: &HeartbeatWriter) -> ferry_domain::change::ObjectName {
    ferry_domain::change::ObjectName {
        database: writer.database.clone(),
        table: HEARTBEAT_TABLE.to_owned(),
    }
}

/// Whether `database.table` is the heartbeat table of `writer`.
pub(crate) fn is_heartbeat_table(writer: &HeartbeatWriter, database: &str, table: &str) -> bool {
    table == HEARTBEAT_TABLE && database == writer.database
}

/// The time a heartbeat row of `instance` carries, in milliseconds since the epoch.
pub(crate) fn beat_ms(change: &RowChange, instance: &InstanceId) -> Option<i64> {
    let table = change.table();
    let column = |name: &str| table.columns().iter().position(|c| c.name == name);
    let after = change.after()?;
    let (task, beat) = (column("task")?, column("beat_ms")?);
    match (after.get(task)?, after.get(beat)?) {
        (Value::String(t), Value::Int(ms)) if t == instance.as_str() => Some(*ms),
        _ => None,
    }
}

/// Writes heartbeats until dropped (run it on a task of its own).
pub(crate) async fn write_heartbeats(
    params: ConnectParams,
    instance: InstanceId,
    writer: HeartbeatWriter,
    meter: Arc<TaskMeter>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let e = beat(&params, &instance, &writer).await;
        meter.heartbeat_failed();
        tracing::warn!(instance = %instance, error = %e, database = %writer.database, "the heartbeat writer failed; retrying (grant the source user CREATE, INSERT and UPDATE on ferry_heartbeat)");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Creates the table and writes beats; returns only on failure.
async fn beat(params: &ConnectParams, instance: &InstanceId, writer: &HeartbeatWriter) -> String {
    let table = format!("{}.{}", quoted(&writer.database), quoted(HEARTBEAT_TABLE));
    let mut conn = match ferry_mysql::connect(params).await {
        Ok(c) => c,
        Err(e) => return e.message,
    };
    if let Err(e) = conn
        .query_drop(format!(
            "CREATE TABLE IF NOT EXISTS {table} (task VARCHAR(64) NOT NULL PRIMARY KEY, beat_ms BIGINT NOT NULL)"
        ))
        .await
    {
        return e.to_string();
    }
    let upsert = format!(
        "INSERT INTO {table} (task, beat_ms) VALUES (?, ROUND(UNIX_TIMESTAMP(NOW(3)) * 1000)) \
         ON DUPLICATE KEY UPDATE beat_ms = VALUES(beat_ms)"
    );
    let mut tick = tokio::time::interval(Duration::from_millis(u64::from(writer.interval_ms)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = conn.exec_drop(&upsert, (instance.as_str(),)).await {
            return e.to_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quoted("shop"), "`shop`");
        assert_eq!(quoted("a`b"), "`a``b`");
    }
}

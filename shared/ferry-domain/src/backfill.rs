//! A backfill: a change-tracking task copying the existing rows of some of its tables into its
//! topic while live changes keep flowing (`POST …/task/backfill`).
//!
//! The worker reads each table in primary-key chunks, each in a consistent snapshot with a low
//! and a high watermark (the sync mode's technique, `ferry_mysql::snapshot`), and writes a
//! chunk's rows into the topic as snapshot reads once its capture loop has passed the high
//! watermark, leaving out the rows whose key the binlog changed since the low one: their newer
//! state is in the topic already, as changes. A consumer applying the topic in order therefore
//! ends with the source's rows. Each backfilled row's idempotency key names the backfill, the
//! table and the row's key, so a chunk read again after a crash writes only what the topic
//! lacks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::change::ObjectName;
use crate::sync::TableProgress;

/// How many tables one backfill may name.
pub const MAX_TABLES: usize = 100;

/// Where a backfill is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillState {
    /// Asked for; the worker has not started it.
    Pending,
    /// Chunks are being read and written.
    Running,
    /// Every table's rows are in the topic.
    Done,
    /// Cancelled through the API: what was written stays, nothing more is.
    Cancelled,
    /// A table cannot be backfilled (gone, or without a primary key): `error` says which.
    Failed,
}

impl BackfillState {
    /// Whether the worker still has work to do.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// One backfill of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    /// `bf_<32 hex digits>`: in the idempotency keys of the rows it writes.
    pub id: String,
    pub tables: Vec<ObjectName>,
    pub state: BackfillState,
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Each table's progress (from the worker's chunk records; filled in by the API).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<TableProgress>,
}

impl Backfill {
    /// The transaction id the rows of `table` with key `key` (the row's key values as text)
    /// are written under: their idempotency key is this and `/0`.
    pub fn row_id(&self, table: &ObjectName, key: &str) -> String {
        format!("bf/{}/{}/{key}", self.id, table)
    }
}

/// Whether an idempotency key is a backfilled row's (see [`Backfill::row_id`]).
pub fn is_backfill_key(key: &str) -> bool {
    key.starts_with("bf/")
}

/// The body of `POST …/task/backfill`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    pub tables: Vec<TableName>,
}

/// A table as a request names it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableName {
    pub database: String,
    pub table: String,
}

impl BackfillRequest {
    /// The tables, checked: at least one, at most [`MAX_TABLES`], no pattern, none twice.
    pub fn tables(&self) -> Result<Vec<ObjectName>, InvalidInput> {
        if self.tables.is_empty() {
            return Err(InvalidInput::new(
                "tables",
                "a backfill names at least one table",
                "give {\"tables\": [{\"database\": \"shop\", \"table\": \"orders\"}]}",
            ));
        }
        if self.tables.len() > MAX_TABLES {
            return Err(InvalidInput::new(
                "tables",
                format!("a backfill names at most {MAX_TABLES} tables"),
                "split the tables over several backfills, one after the other",
            ));
        }
        let mut out: Vec<ObjectName> = Vec::with_capacity(self.tables.len());
        for (i, t) in self.tables.iter().enumerate() {
            for (what, name) in [("database", &t.database), ("table", &t.table)] {
                if name.is_empty() || name.len() > 64 || name.contains(['*', '?']) {
                    return Err(InvalidInput::new(
                        format!("tables[{i}].{what}"),
                        format!("`{name}` is not a {what} name"),
                        "name each table exactly (1 to 64 characters, no wildcards)",
                    ));
                }
            }
            let name = ObjectName {
                database: t.database.clone(),
                table: t.table.clone(),
            };
            if out.contains(&name) {
                return Err(InvalidInput::new(
                    format!("tables[{i}]"),
                    format!("{name} is named twice"),
                    "name each table once",
                ));
            }
            out.push(name);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(tables: serde_json::Value) -> Result<Vec<ObjectName>, InvalidInput> {
        serde_json::from_value::<BackfillRequest>(serde_json::json!({ "tables": tables }))
            .unwrap()
            .tables()
    }

    #[test]
    fn a_request_names_tables_exactly_once() {
        let ok = request(serde_json::json!([{"database": "shop", "table": "orders"}])).unwrap();
        assert_eq!(ok[0].to_string(), "shop.orders");
        assert!(request(serde_json::json!([])).is_err());
        assert!(request(serde_json::json!([{"database": "shop", "table": "ord*"}])).is_err());
        assert!(request(serde_json::json!([{"database": "", "table": "t"}])).is_err());
        let twice = serde_json::json!([
            {"database": "shop", "table": "t"},
            {"database": "shop", "table": "t"}
        ]);
        assert!(request(twice).is_err());
        assert!(
            serde_json::from_value::<BackfillRequest>(serde_json::json!({"tables": [], "x": 1}))
                .is_err()
        );
    }

    #[test]
    fn row_ids_name_the_backfill_table_and_key() {
        let b = Backfill {
            id: "bf_1".into(),
            tables: Vec::new(),
            state: BackfillState::Pending,
            requested_at: Utc::now(),
            finished_at: None,
            error: None,
            progress: Vec::new(),
        };
        let name = ObjectName {
            database: "shop".into(),
            table: "orders".into(),
        };
        let id = b.row_id(&name, "7");
        assert_eq!(id, "bf/bf_1/shop.orders/7");
        assert!(is_backfill_key(&format!("{id}/0")));
        assert!(!is_backfill_key("0-1-9/0"));
    }
}

//! The change event model: what the capture worker produces from the binlog and every output
//! format is encoded from.
//!
//! A [`ChangeEvent`] is one record of the stream: a row change, a DDL statement, a transaction
//! boundary or a heartbeat. Row images are plain vectors of [`Value`]s in the table's column
//! order; the column names and keys live once per table version in a shared [`TableSchema`],
//! not in every row.
//!
//! # Identity
//!
//! Every event has an idempotency key built from where it is in the source: the transaction
//! (its GTID, or the binlog position of its BEGIN when the server has no GTIDs) and the event's
//! index within that transaction. Re-reading the same binlog produces the same keys, which is
//! how the worker recognises what it already produced after a crash.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::position::Position;
use crate::value::Value;

/// A table, by database and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectName {
    pub database: String,
    pub table: String,
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.database, self.table)
    }
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    /// The column type as the source declares it, e.g. `decimal(10,2)`, `int unsigned`.
    pub source_type: String,
    pub nullable: bool,
}

/// A table's columns and key at one point of the schema history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSchema {
    name: ObjectName,
    columns: Vec<Column>,
    /// Indexes into `columns` of the primary key (or the first unique key), in key order;
    /// empty for a table without a key.
    key: Vec<usize>,
}

impl TableSchema {
    pub fn new(
        name: ObjectName,
        columns: Vec<Column>,
        key: Vec<usize>,
    ) -> Result<Self, InvalidInput> {
        if columns.is_empty() {
            return Err(InvalidInput::new(
                "columns",
                "a table has at least one column",
                "check the table definition",
            ));
        }
        if let Some(bad) = key.iter().find(|k| **k >= columns.len()) {
            return Err(InvalidInput::new(
                "key",
                format!(
                    "key column index {bad} is past the {} columns",
                    columns.len()
                ),
                "key indexes refer to positions in `columns`",
            ));
        }
        Ok(Self { name, columns, key })
    }

    pub fn name(&self) -> &ObjectName {
        &self.name
    }

    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    pub fn key(&self) -> &[usize] {
        &self.key
    }

    /// The index of the column called `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

/// A row operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Insert,
    Update,
    Delete,
    /// A row as a snapshot read it (a backfill into the topic): its current image, not a
    /// change; formats mark it as their tools mark snapshot reads (Debezium's `op: "r"`).
    Read,
}

/// A row change: the table, the operation and the images it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowChange {
    table: Arc<TableSchema>,
    operation: Operation,
    before: Option<Vec<Value>>,
    after: Option<Vec<Value>>,
}

impl RowChange {
    pub fn insert(table: Arc<TableSchema>, after: Vec<Value>) -> Result<Self, InvalidInput> {
        Self::build(table, Operation::Insert, None, Some(after))
    }

    pub fn update(
        table: Arc<TableSchema>,
        before: Vec<Value>,
        after: Vec<Value>,
    ) -> Result<Self, InvalidInput> {
        Self::build(table, Operation::Update, Some(before), Some(after))
    }

    pub fn delete(table: Arc<TableSchema>, before: Vec<Value>) -> Result<Self, InvalidInput> {
        Self::build(table, Operation::Delete, Some(before), None)
    }

    /// A row a snapshot read (see [`Operation::Read`]).
    pub fn read(table: Arc<TableSchema>, after: Vec<Value>) -> Result<Self, InvalidInput> {
        Self::build(table, Operation::Read, None, Some(after))
    }

    fn build(
        table: Arc<TableSchema>,
        operation: Operation,
        before: Option<Vec<Value>>,
        after: Option<Vec<Value>>,
    ) -> Result<Self, InvalidInput> {
        let width = table.columns.len();
        for (field, image) in [("before", &before), ("after", &after)] {
            if let Some(values) = image
                && values.len() != width
            {
                return Err(InvalidInput::new(
                    field,
                    format!(
                        "the {field} image of {} has {} values for {width} columns",
                        table.name,
                        values.len()
                    ),
                    "the schema history is out of step with the binlog; rebuild it from the source catalog",
                ));
            }
        }
        Ok(Self {
            table,
            operation,
            before,
            after,
        })
    }

    /// An update as the delete of its old image (the row left a row filter); `None` for
    /// another operation.
    pub fn into_delete(self) -> Option<Self> {
        (self.operation == Operation::Update).then_some(())?;
        Some(Self {
            operation: Operation::Delete,
            after: None,
            ..self
        })
    }

    /// An update as the insert of its new image (the row entered a row filter); `None` for
    /// another operation.
    pub fn into_insert(self) -> Option<Self> {
        (self.operation == Operation::Update).then_some(())?;
        Some(Self {
            operation: Operation::Insert,
            before: None,
            ..self
        })
    }

    pub fn table(&self) -> &Arc<TableSchema> {
        &self.table
    }

    pub fn operation(&self) -> Operation {
        self.operation
    }

    pub fn before(&self) -> Option<&[Value]> {
        self.before.as_deref()
    }

    pub fn after(&self) -> Option<&[Value]> {
        self.after.as_deref()
    }

    /// The images, taken out: (before, after).
    pub fn into_images(self) -> (Option<Vec<Value>>, Option<Vec<Value>>) {
        (self.before, self.after)
    }

    /// The bytes the row's images hold (see `Value::size_bytes`).
    pub fn size_bytes(&self) -> usize {
        [self.before(), self.after()]
            .into_iter()
            .flatten()
            .flatten()
            .map(Value::size_bytes)
            .sum()
    }

    /// Whether an update changes the row's key (never for a table without one).
    pub fn key_changed(&self) -> bool {
        match (&self.before, &self.after) {
            (Some(before), Some(after)) => self.table.key.iter().any(|k| before[*k] != after[*k]),
            _ => false,
        }
    }

    /// The key values of the row: from the after image, or the before image of a delete.
    pub fn key_values(&self) -> Vec<&Value> {
        let image = self.after.as_ref().or(self.before.as_ref());
        image.map_or_else(Vec::new, |values| {
            self.table.key.iter().map(|k| &values[*k]).collect()
        })
    }
}

/// What an event is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeKind {
    Begin,
    Row(RowChange),
    Ddl {
        /// The default database the statement ran in.
        database: Option<String>,
        statement: String,
    },
    Commit {
        /// The XID of the commit event, when the engine is transactional.
        xid: Option<u64>,
    },
    Heartbeat,
}

/// Which transaction an event belongs to, and where in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransactionRef {
    /// The GTID of the transaction, or `file:offset` of its first event without GTIDs (shared
    /// by the transaction's records).
    pub id: Arc<str>,
    /// The 0-based index of this event within the transaction (BEGIN is 0).
    pub event_index: u32,
    /// For a row: its 0-based index among the transaction's carried rows (Maxwell's
    /// `xoffset`).
    #[serde(default)]
    pub carried_index: u32,
    /// For a row: whether it is the transaction's last carried row (Maxwell's `commit`).
    #[serde(default)]
    pub last: bool,
    /// For a row: its 0-based index in its binlog rows event (Debezium's `source.row`).
    #[serde(default)]
    pub event_row: u32,
}

/// One record of the change stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Where the event is in the source's binlog (shared by the records of one binlog event).
    pub position: Arc<Position>,
    /// Where the binlog event holding this record starts, in the position's file (Maxwell's
    /// `position`, Debezium's `source.pos`).
    #[serde(default)]
    pub event_offset: u64,
    /// The server that wrote the event.
    pub server_id: u32,
    /// When the source executed it (binlog event time, second precision).
    pub timestamp: DateTime<Utc>,
    /// The transaction, for everything but heartbeats.
    pub transaction: Option<TransactionRef>,
    pub kind: ChangeKind,
}

impl ChangeEvent {
    /// A key that is the same every time this event is read from the binlog, and differs from
    /// every other event's: `{transaction id}/{event index}`, or `hb/{position}` for heartbeats.
    pub fn idempotency_key(&self) -> String {
        let mut key = String::new();
        self.write_idempotency_key(&mut key);
        key
    }

    /// Whether the event is a row a snapshot read (a backfill), not a change.
    pub fn is_snapshot_read(&self) -> bool {
        matches!(&self.kind, ChangeKind::Row(r) if r.operation() == Operation::Read)
    }

    /// The transaction the event belongs to, as formats show it: none for a snapshot read,
    /// whose transaction reference only makes its idempotency key.
    pub fn source_transaction(&self) -> Option<&TransactionRef> {
        self.transaction
            .as_ref()
            .filter(|_| !self.is_snapshot_read())
    }

    /// Appends [`ChangeEvent::idempotency_key`] to `out` (a reused buffer).
    ///
    /// An event a format writes as several records (Debezium's delete and its tombstone) gives
    /// the records after its first `#<part>` after this key: see [`split_part`].
    pub fn write_idempotency_key(&self, out: &mut String) {
        use std::fmt::Write;
        // Writing to a String cannot fail.
        let _ = match &self.transaction {
            Some(t) => write!(out, "{}/{}", t.id, t.event_index),
            None => write!(out, "hb/{}", self.position),
        };
    }
}

/// An idempotency key split into the event's key and the record's part in it: `0-1-9/3#2` is
/// part 2 of event `0-1-9/3`; a key without `#` is part 0 (every event's first record).
pub fn split_part(key: &str) -> (&str, u8) {
    match key.rsplit_once('#') {
        Some((event, part)) => match part.parse() {
            Ok(n) => (event, n),
            Err(_) => (key, 0),
        },
        None => (key, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_an_event_have_keys_of_their_own() {
        assert_eq!(split_part("0-1-9/3"), ("0-1-9/3", 0));
        assert_eq!(split_part("0-1-9/3#2"), ("0-1-9/3", 2));
        assert_eq!(split_part("hb/binlog.000001:4"), ("hb/binlog.000001:4", 0));
    }

    fn table() -> Arc<TableSchema> {
        let col = |name: &str| Column {
            name: name.into(),
            source_type: "int".into(),
            nullable: false,
        };
        Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "shop".into(),
                    table: "orders".into(),
                },
                vec![col("id"), col("total"), col("region")],
                vec![2, 0],
            )
            .unwrap(),
        )
    }

    #[test]
    fn images_must_fit_the_table() {
        let t = table();
        assert!(RowChange::insert(t.clone(), vec![Value::Int(1); 3]).is_ok());
        let err = RowChange::update(t.clone(), vec![Value::Int(1); 3], vec![Value::Int(1); 2])
            .unwrap_err();
        assert_eq!(err.field(), "after");
        assert!(TableSchema::new(t.name().clone(), t.columns().to_vec(), vec![3]).is_err());
    }

    #[test]
    fn keys_in_key_order() {
        let rc = RowChange::delete(
            table(),
            vec![Value::Int(7), Value::Int(100), Value::String("eu".into())],
        )
        .unwrap();
        assert_eq!(
            rc.key_values(),
            vec![&Value::String("eu".into()), &Value::Int(7)]
        );
        assert_eq!(rc.after(), None);
        assert_eq!(table().column_index("total"), Some(1));
    }

    #[test]
    fn idempotency_keys() {
        let position: Position = "binlog.000001:300@0-1-9".parse().unwrap();
        let mut e = ChangeEvent {
            position: Arc::new(position),
            event_offset: 0,
            server_id: 1,
            timestamp: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            transaction: Some(TransactionRef {
                id: "0-1-9".into(),
                event_index: 3,
                carried_index: 0,
                last: false,
                event_row: 0,
            }),
            kind: ChangeKind::Commit { xid: Some(44) },
        };
        assert_eq!(e.idempotency_key(), "0-1-9/3");
        e.transaction = None;
        e.kind = ChangeKind::Heartbeat;
        assert_eq!(e.idempotency_key(), "hb/binlog.000001:300@0-1-9");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"]["kind"], "heartbeat");
    }
}

//! Data synchronization's pure parts: the task's sync options, what a source table becomes on
//! the target ([`TargetTable`]), the batch of changes applied to the target in one transaction
//! ([`Batch`]), and full-sync progress ([`TableProgress`]).
//!
//! # Apply semantics
//!
//! Row images are full (the source logs `binlog_row_image = FULL`), so a change is applied by
//! key as an upsert of the after image or a delete of the before image's key. Applying a change
//! twice, or an older change before a newer one of the same key, ends in the same row once the
//! newer change is applied: that is what makes resuming from a checkpoint, and a snapshot chunk
//! merged with the binlog, safe.
//!
//! A [`Batch`] merges changes by key: per table it keeps, for each key, the last thing that
//! happened to it (an upsert of its last image, or a delete). Applied in one target transaction,
//! a batch gives the same rows as applying its changes one by one, provided the batch ends at a
//! source transaction boundary. Tables without a primary key cannot be merged: their changes are
//! kept in order and applied one row at a time.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::change::{ObjectName, Operation, RowChange, TableSchema};
use crate::convert::{Converted, TargetEngine, Unconvertible, convert};
use crate::schema::TableDef;
use crate::value::Value;

/// How incremental changes reach the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyMode {
    /// Several source transactions per target transaction, merged by key: the target only ever
    /// shows states the source had at a transaction boundary, but skips the ones in between.
    #[default]
    Merge,
    /// One target transaction per source transaction: the target goes through every state the
    /// source went through. Slower: one commit per source transaction.
    Transactional,
    /// As `merge`, with each batch applied on `parallel` connections at once, split by key hash
    /// (each key's changes on one connection, in order): faster on a target that scales with
    /// connections, but a reader of the target may see a batch's keys applied in part. Keyless
    /// tables and the progress row go on one connection, committed after the others, so
    /// nothing is applied twice or skipped.
    Parallel,
}

/// A sync task's options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncOptions {
    #[serde(default)]
    pub apply: ApplyMode,
    /// How many snapshot chunks are read from the source at once.
    #[serde(default = "default_parallel")]
    pub parallel: u8,
    /// Rows per snapshot chunk.
    #[serde(default = "default_chunk_rows")]
    pub chunk_rows: u32,
    /// The most changes one target transaction carries in `merge` mode (a bigger source
    /// transaction is split over several statements of the same target transaction).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: u32,
    /// What to do with selected tables that already exist on the target.
    #[serde(default)]
    pub conflicting_tables: crate::target_table::ConflictingTables,
}

fn default_parallel() -> u8 {
    4
}

fn default_chunk_rows() -> u32 {
    20_000
}

fn default_batch_rows() -> u32 {
    5_000
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            apply: ApplyMode::default(),
            parallel: default_parallel(),
            chunk_rows: default_chunk_rows(),
            batch_rows: default_batch_rows(),
            conflicting_tables: Default::default(),
        }
    }
}

impl SyncOptions {
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if !(1..=16).contains(&self.parallel) {
            return Err(InvalidInput::new(
                "parallel",
                format!("{} chunks at once is out of range", self.parallel),
                "read between 1 and 16 chunks at once",
            ));
        }
        if !(100..=1_000_000).contains(&self.chunk_rows) {
            return Err(InvalidInput::new(
                "chunk_rows",
                format!("{} rows per chunk is out of range", self.chunk_rows),
                "use between 100 and 1000000 rows per chunk",
            ));
        }
        if !(1..=100_000).contains(&self.batch_rows) {
            return Err(InvalidInput::new(
                "batch_rows",
                format!("{} rows per batch is out of range", self.batch_rows),
                "use between 1 and 100000 rows per batch",
            ));
        }
        Ok(())
    }
}

/// One column of a target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetColumn {
    pub name: String,
    /// The source's declared type (decides how values are written).
    pub source_type: String,
    /// The type on the target.
    pub target_type: Converted,
    /// The source's definition of the column (ENUM and SET members, charset).
    pub def: crate::schema::ColumnDef,
}

/// A source table as the target holds it: where, which columns, which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetTable {
    pub engine: TargetEngine,
    pub source: ObjectName,
    /// The target schema (PostgreSQL) or database (MySQL/MariaDB), and table name.
    pub schema: String,
    pub name: String,
    pub columns: Vec<TargetColumn>,
    /// For each target column, its index in the source row.
    pub source_index: Vec<usize>,
    /// Indexes into `columns` of the primary key; empty for a table without one.
    pub key: Vec<usize>,
}

impl TargetTable {
    /// The target form of `def`, keeping the columns `keep` accepts (key columns always).
    pub fn new(
        engine: TargetEngine,
        source: ObjectName,
        schema: &str,
        name: &str,
        def: &TableDef,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Self, Unconvertible> {
        let mut columns = Vec::new();
        let mut source_index = Vec::new();
        let mut key = Vec::new();
        for (i, c) in def.columns.iter().enumerate() {
            let is_key = def
                .primary_key
                .iter()
                .any(|k| k.eq_ignore_ascii_case(&c.name));
            if !is_key && !keep(&c.name) {
                continue;
            }
            columns.push(TargetColumn {
                name: c.name.clone(),
                source_type: c.column_type.clone(),
                target_type: convert(&c.column_type, engine)?,
                def: c.clone(),
            });
            source_index.push(i);
        }
        for k in &def.primary_key {
            if let Some(i) = columns.iter().position(|c| c.name.eq_ignore_ascii_case(k)) {
                key.push(i);
            }
        }
        Ok(Self {
            engine,
            source,
            schema: schema.to_owned(),
            name: name.to_owned(),
            columns,
            source_index,
            key,
        })
    }

    /// The key values of a source row, in key order.
    pub fn key_of<'r>(&self, row: &'r [Value]) -> impl Iterator<Item = &'r Value> + use<'r, '_> {
        self.key
            .iter()
            .filter_map(|k| self.source_index.get(*k).and_then(|s| row.get(*s)))
    }

    /// The key of a source row as bytes (equal keys give equal bytes).
    pub fn key_bytes(&self, row: &[Value]) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        for v in self.key_of(row) {
            v.write_key(&mut out);
        }
        out
    }
}

/// What a batch does to one key (or, without a key, to one row).
#[derive(Debug, Clone, PartialEq)]
pub enum RowOp {
    /// Write this full source row (insert or replace).
    Upsert(Vec<Value>),
    /// Remove the row with this source row's key (the before image).
    Delete(Vec<Value>),
    /// A keyless table's update: remove one row equal to `before`, write `after`.
    Replace {
        before: Vec<Value>,
        after: Vec<Value>,
    },
}

/// The changes of one table in a batch.
#[derive(Debug, Clone, Default)]
pub struct TableBatch {
    /// Keyed tables: one op per key, in first-touched order.
    ops: Vec<RowOp>,
    by_key: HashMap<Vec<u8>, usize>,
}

impl TableBatch {
    pub fn ops(&self) -> &[RowOp] {
        &self.ops
    }
}

/// Changes waiting to be applied to the target in one transaction.
#[derive(Debug, Default)]
pub struct Batch {
    tables: Vec<(Arc<TableSchema>, TableBatch)>,
    index: HashMap<ObjectName, usize>,
    changes: usize,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many changes went in (before merging).
    pub fn changes(&self) -> usize {
        self.changes
    }

    pub fn is_empty(&self) -> bool {
        self.changes == 0
    }

    /// The tables and their ops, in the order tables were first touched.
    pub fn tables(&self) -> impl Iterator<Item = (&Arc<TableSchema>, &TableBatch)> {
        self.tables.iter().map(|(s, b)| (s, b))
    }

    /// Adds a change. A key change (an update whose key differs) deletes the old key.
    pub fn push(&mut self, change: RowChange) {
        self.changes += 1;
        let schema = Arc::clone(change.table());
        let at = match self.index.get(schema.name()) {
            Some(i) => *i,
            None => {
                self.index.insert(schema.name().clone(), self.tables.len());
                self.tables
                    .push((Arc::clone(&schema), TableBatch::default()));
                self.tables.len() - 1
            }
        };
        let batch = &mut self.tables[at].1;
        let key_of = |row: &[Value]| -> Vec<u8> {
            let mut out = Vec::with_capacity(16);
            for k in schema.key() {
                if let Some(v) = row.get(*k) {
                    v.write_key(&mut out);
                }
            }
            out
        };
        let operation = change.operation();
        let (before, after) = change.into_images();
        if schema.key().is_empty() {
            batch.ops.push(match (operation, before, after) {
                (Operation::Update, Some(b), Some(a)) => RowOp::Replace {
                    before: b,
                    after: a,
                },
                (Operation::Delete, Some(b), _) => RowOp::Delete(b),
                (_, _, Some(a)) => RowOp::Upsert(a),
                (_, Some(b), None) => RowOp::Delete(b),
                (_, None, None) => return,
            });
            return;
        }
        let mut set = |key: Vec<u8>, op: RowOp| match batch.by_key.get(&key) {
            Some(i) => batch.ops[*i] = op,
            None => {
                batch.by_key.insert(key, batch.ops.len());
                batch.ops.push(op);
            }
        };
        match (operation, before, after) {
            (Operation::Delete, Some(b), _) => set(key_of(&b), RowOp::Delete(b)),
            (Operation::Update, Some(b), Some(a)) => {
                let (old, new) = (key_of(&b), key_of(&a));
                if old != new {
                    set(old, RowOp::Delete(b));
                }
                set(new, RowOp::Upsert(a));
            }
            (_, _, Some(a)) => set(key_of(&a), RowOp::Upsert(a)),
            (_, Some(b), None) => set(key_of(&b), RowOp::Delete(b)),
            (_, None, None) => {}
        }
    }
}

impl Batch {
    /// The batch split into `n` batches by key hash: each key's op in one of them, a keyless
    /// table's ops (in order) all in the first. The first is the one to commit last.
    pub fn split(self, n: usize) -> Vec<Batch> {
        use std::hash::{BuildHasher, Hasher};
        let n = n.max(1);
        let mut parts: Vec<Batch> = (0..n).map(|_| Batch::new()).collect();
        // One fixed hasher: a key lands on the same part in every batch.
        let hasher =
            std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        for (schema, table) in self.tables {
            let mut split: Vec<TableBatch> = (0..n).map(|_| TableBatch::default()).collect();
            if schema.key().is_empty() {
                split[0] = table;
            } else {
                let mut keys: Vec<(Vec<u8>, usize)> = table.by_key.into_iter().collect();
                keys.sort_by_key(|(_, at)| *at);
                let mut ops: Vec<Option<RowOp>> = table.ops.into_iter().map(Some).collect();
                for (key, at) in keys {
                    let mut h = hasher.build_hasher();
                    h.write(&key);
                    let part = usize::try_from(h.finish() % n as u64).unwrap_or(0);
                    if let Some(op) = ops.get_mut(at).and_then(Option::take) {
                        let t = &mut split[part];
                        t.by_key.insert(key, t.ops.len());
                        t.ops.push(op);
                    }
                }
            }
            for (i, t) in split.into_iter().enumerate() {
                if t.ops.is_empty() {
                    continue;
                }
                let part = &mut parts[i];
                part.changes += t.ops.len();
                part.index.insert(schema.name().clone(), part.tables.len());
                part.tables.push((Arc::clone(&schema), t));
            }
        }
        parts
    }
}

/// Where a table's full sync stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    #[default]
    Pending,
    Copying,
    Done,
}

/// A table's full-sync progress, as the task status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableProgress {
    pub table: ObjectName,
    /// The target table, `schema.table`.
    pub target: String,
    pub state: CopyState,
    pub rows_done: u64,
    /// The source's estimate when the copy was planned (InnoDB's statistics: approximate).
    pub rows_total: u64,
    pub chunks_done: u32,
    pub chunks_total: u32,
}

impl TableProgress {
    /// Done rows over total, 0–100; 100 once done (estimates may be off either way).
    pub fn percent(&self) -> f64 {
        match self.state {
            CopyState::Done => 100.0,
            _ if self.chunks_total == 0 => 0.0,
            _ => 100.0 * f64::from(self.chunks_done) / f64::from(self.chunks_total),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::Column;
    use crate::schema::ColumnDef;

    fn schema(key: Vec<usize>) -> Arc<TableSchema> {
        let col = |n: &str| Column {
            name: n.into(),
            source_type: "int".into(),
            nullable: false,
        };
        Arc::new(
            TableSchema::new(
                ObjectName {
                    database: "d".into(),
                    table: "t".into(),
                },
                vec![col("id"), col("v")],
                key,
            )
            .unwrap(),
        )
    }

    fn row(id: i64, v: i64) -> Vec<Value> {
        vec![Value::Int(id), Value::Int(v)]
    }

    #[test]
    fn a_batch_keeps_the_last_op_per_key() {
        let s = schema(vec![0]);
        let mut b = Batch::new();
        b.push(RowChange::insert(Arc::clone(&s), row(1, 1)).unwrap());
        b.push(RowChange::update(Arc::clone(&s), row(1, 1), row(1, 2)).unwrap());
        b.push(RowChange::insert(Arc::clone(&s), row(2, 1)).unwrap());
        b.push(RowChange::delete(Arc::clone(&s), row(2, 1)).unwrap());
        // A key change: the old key goes, the new one is written.
        b.push(RowChange::update(Arc::clone(&s), row(1, 2), row(3, 2)).unwrap());
        assert_eq!(b.changes(), 5);
        let (_, t) = b.tables().next().unwrap();
        assert_eq!(
            t.ops(),
            [
                RowOp::Delete(row(1, 2)),
                RowOp::Delete(row(2, 1)),
                RowOp::Upsert(row(3, 2))
            ]
        );
    }

    #[test]
    fn a_split_batch_holds_each_key_once_on_a_fixed_part() {
        let s = schema(vec![0]);
        let filled = || {
            let mut b = Batch::new();
            for id in 0..100 {
                b.push(RowChange::insert(Arc::clone(&s), row(id, 1)).unwrap());
                b.push(RowChange::update(Arc::clone(&s), row(id, 1), row(id, 2)).unwrap());
            }
            b
        };
        let part_of = |parts: &[Batch]| -> Vec<usize> {
            let mut at = vec![usize::MAX; 100];
            for (i, p) in parts.iter().enumerate() {
                for (_, t) in p.tables() {
                    for op in t.ops() {
                        let RowOp::Upsert(r) = op else {
                            panic!("{op:?}")
                        };
                        assert_eq!(r[1], Value::Int(2), "the key's last op");
                        let Value::Int(id) = r[0] else { panic!() };
                        let id = usize::try_from(id).unwrap();
                        assert_eq!(at[id], usize::MAX, "key {id} twice");
                        at[id] = i;
                    }
                }
            }
            at
        };
        let parts = filled().split(4);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts.iter().map(Batch::changes).sum::<usize>(), 100);
        let first = part_of(&parts);
        assert!(first.iter().all(|p| *p < 4), "every key somewhere");
        assert!(parts.iter().all(|p| !p.is_empty()), "spread: {first:?}");
        assert_eq!(part_of(&filled().split(4)), first, "a key's part is fixed");

        // A keyless table's ops stay together, in order, in the first part.
        let k = schema(Vec::new());
        let mut b = Batch::new();
        b.push(RowChange::insert(Arc::clone(&k), row(1, 1)).unwrap());
        b.push(RowChange::delete(Arc::clone(&k), row(1, 1)).unwrap());
        let parts = b.split(3);
        let (_, t) = parts[0].tables().next().unwrap();
        assert_eq!(
            t.ops(),
            [RowOp::Upsert(row(1, 1)), RowOp::Delete(row(1, 1))]
        );
        assert!(parts[1].is_empty() && parts[2].is_empty());
    }

    #[test]
    fn keyless_tables_keep_every_change_in_order() {
        let s = schema(Vec::new());
        let mut b = Batch::new();
        b.push(RowChange::insert(Arc::clone(&s), row(1, 1)).unwrap());
        b.push(RowChange::update(Arc::clone(&s), row(1, 1), row(1, 2)).unwrap());
        b.push(RowChange::delete(Arc::clone(&s), row(1, 2)).unwrap());
        let (_, t) = b.tables().next().unwrap();
        assert_eq!(
            t.ops(),
            [
                RowOp::Upsert(row(1, 1)),
                RowOp::Replace {
                    before: row(1, 1),
                    after: row(1, 2)
                },
                RowOp::Delete(row(1, 2))
            ]
        );
    }

    #[test]
    fn target_tables_keep_selected_columns_and_the_key() {
        let c = |n: &str, t: &str| ColumnDef {
            name: n.into(),
            column_type: t.into(),
            nullable: true,
            charset: None,
            members: Vec::new(),
            collation: None,
        };
        let def = TableDef {
            columns: vec![c("a", "int"), c("id", "bigint unsigned"), c("b", "text")],
            primary_key: vec!["ID".into()],
            collation: None,
        };
        let name = ObjectName {
            database: "d".into(),
            table: "t".into(),
        };
        let t =
            TargetTable::new(TargetEngine::Postgresql, name, "s", "t", &def, |c| c == "b").unwrap();
        assert_eq!(t.source_index, [1, 2]);
        assert_eq!(t.key, [0]);
        assert_eq!(t.columns[0].target_type.sql_type, "numeric(20,0)");
        let r = vec![Value::Int(5), Value::UInt(7), Value::String("x".into())];
        assert_eq!(t.key_of(&r).collect::<Vec<_>>(), [&Value::UInt(7)]);
        assert_ne!(
            t.key_bytes(&r),
            t.key_bytes(&[Value::Int(5), Value::UInt(8), Value::Null])
        );
    }

    #[test]
    fn options_are_checked() {
        assert!(SyncOptions::default().validate().is_ok());
        let bad = SyncOptions {
            parallel: 0,
            ..SyncOptions::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("parallel"));
    }
}

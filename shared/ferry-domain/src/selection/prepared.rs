//! The selection prepared for one table map: what a task carries of a table, decided once when
//! the table map is read and consulted per row without a name lookup.
//!
//! A rows event holds rows of one table and one operation, so the decision "is this event
//! carried" is made once per event; which columns a row image keeps is a mask over the table
//! map's columns (key columns always kept), computed once per table map instead of comparing
//! column names for every value of every row.

use std::sync::Arc;

use super::{ObjectSelection, OperationKind};
use crate::change::{Operation, TableSchema};

/// Which columns of a table map a record carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ColumnMask {
    /// Every column.
    #[default]
    All,
    /// `true` for each carried column, by position in the table map.
    Only(Arc<[bool]>),
}

impl ColumnMask {
    /// The mask of `names` over `schema`'s columns, key columns included; `None` carries all.
    /// Names the table does not have select nothing (a column dropped since the task was
    /// configured).
    pub fn of(schema: &TableSchema, names: Option<&[String]>) -> Self {
        let Some(names) = names else {
            return Self::All;
        };
        let mask: Vec<bool> = schema
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| schema.key().contains(&i) || names.contains(&c.name))
            .collect();
        if mask.iter().all(|c| *c) {
            Self::All
        } else {
            Self::Only(mask.into())
        }
    }

    /// Whether the column at `index` is carried.
    #[inline]
    pub fn carries(&self, index: usize) -> bool {
        match self {
            Self::All => true,
            Self::Only(mask) => mask.get(index).copied().unwrap_or(false),
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }
}

/// What a task carries of one table map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTable {
    /// Bit `1 << op` for each carried row operation.
    operations: u8,
    columns: ColumnMask,
}

fn bit(op: Operation) -> u8 {
    match op {
        Operation::Insert => 1,
        Operation::Update => 2,
        Operation::Delete => 4,
    }
}

impl PreparedTable {
    /// Every operation and column: for readers without a selection (binlog files, tools).
    pub fn everything() -> Self {
        Self {
            operations: 7,
            columns: ColumnMask::All,
        }
    }

    /// Whether rows of operation `op` are carried.
    #[inline]
    pub fn carries(&self, op: Operation) -> bool {
        self.operations & bit(op) != 0
    }

    /// The columns a row image keeps.
    pub fn columns(&self) -> &ColumnMask {
        &self.columns
    }
}

impl ObjectSelection {
    /// What the selection carries of the table `schema` describes: `None` when the table is not
    /// selected or no row operation is.
    pub fn prepare(&self, schema: &TableSchema) -> Option<PreparedTable> {
        let name = schema.name();
        let entry = self.table(&name.database, &name.table)?;
        let operations = [
            (OperationKind::Insert, Operation::Insert),
            (OperationKind::Update, Operation::Update),
            (OperationKind::Delete, Operation::Delete),
        ]
        .into_iter()
        .filter(|(kind, _)| self.includes(*kind))
        .fold(0, |bits, (_, op)| bits | bit(op));
        (operations != 0).then(|| PreparedTable {
            operations,
            columns: ColumnMask::of(schema, entry.columns()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Column, ObjectName};

    fn schema(db: &str, table: &str, columns: &[&str], key: Vec<usize>) -> TableSchema {
        TableSchema::new(
            ObjectName {
                database: db.into(),
                table: table.into(),
            },
            columns
                .iter()
                .map(|n| Column {
                    name: (*n).into(),
                    source_type: "int".into(),
                    nullable: true,
                })
                .collect(),
            key,
        )
        .unwrap()
    }

    fn selection(json: &str) -> ObjectSelection {
        let s: ObjectSelection = serde_json::from_str(json).unwrap();
        s.validate().unwrap();
        s
    }

    #[test]
    fn a_table_outside_the_selection_is_not_prepared() {
        let s = selection(r#"{"databases": [{"name": "shop", "tables": [{"name": "orders"}]}]}"#);
        assert!(
            s.prepare(&schema("shop", "users", &["id"], vec![0]))
                .is_none()
        );
        assert!(
            s.prepare(&schema("crm", "orders", &["id"], vec![0]))
                .is_none()
        );
        let p = s
            .prepare(&schema("shop", "orders", &["id", "total"], vec![0]))
            .unwrap();
        assert!(p.columns().is_all());
        assert!(
            p.carries(Operation::Insert)
                && p.carries(Operation::Update)
                && p.carries(Operation::Delete)
        );
    }

    #[test]
    fn operations_are_decided_per_table() {
        let s = selection(r#"{"databases": [{"name": "shop"}], "operations": ["insert", "ddl"]}"#);
        let p = s
            .prepare(&schema("shop", "orders", &["id"], vec![0]))
            .unwrap();
        assert!(p.carries(Operation::Insert));
        assert!(!p.carries(Operation::Update));
        assert!(!p.carries(Operation::Delete));
        let ddl_only = selection(r#"{"databases": [{"name": "shop"}], "operations": ["ddl"]}"#);
        assert!(
            ddl_only
                .prepare(&schema("shop", "orders", &["id"], vec![0]))
                .is_none(),
            "no row operation: the table's rows are not carried at all"
        );
    }

    #[test]
    fn the_column_mask_keeps_the_key_and_the_named_columns() {
        let s = selection(
            r#"{"databases": [{"name": "shop", "tables": [{"name": "orders", "columns": ["total", "gone"]}]}]}"#,
        );
        let p = s
            .prepare(&schema(
                "shop",
                "orders",
                &["note", "id", "total", "status"],
                vec![1],
            ))
            .unwrap();
        let carried: Vec<bool> = (0..5).map(|i| p.columns().carries(i)).collect();
        assert_eq!(
            carried,
            [false, true, true, false, false],
            "the key (id) and total; nothing past the table's columns"
        );
        // Naming every column is the same as naming none.
        let all = selection(
            r#"{"databases": [{"name": "shop", "tables": [{"name": "orders", "columns": ["id", "total"]}]}]}"#,
        );
        let p = all
            .prepare(&schema("shop", "orders", &["id", "total"], vec![0]))
            .unwrap();
        assert!(p.columns().is_all());
    }
}

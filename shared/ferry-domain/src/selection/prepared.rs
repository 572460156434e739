//! The selection prepared for one table map: what a task carries of a table, decided once when
//! the table map is read and consulted per row without a name lookup.
//!
//! A rows event holds rows of one table and one operation, so the decision "is this event
//! carried" is made once per event; which columns a row image keeps is a mask over the table
//! map's columns (key columns always kept), computed once per table map instead of comparing
//! column names for every value of every row.

use std::sync::Arc;

use super::{BoundFilter, Filter, ObjectSelection, OperationKind};
use crate::change::{Operation, RowChange, TableSchema};

/// Row filters already parsed, by their text.
pub type ParsedFilters = std::collections::HashMap<String, Result<Filter, String>>;

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
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedTable {
    /// Bit `1 << op` for each carried row operation.
    operations: u8,
    columns: ColumnMask,
    /// The table's row filter, bound to the table map's columns.
    filter: Option<Arc<BoundFilter>>,
}

fn bit(op: Operation) -> u8 {
    match op {
        Operation::Insert => 1,
        Operation::Update => 2,
        Operation::Delete => 4,
        // Snapshot reads are asked for (a backfill), never selected by operation.
        Operation::Read => 8,
    }
}

impl PreparedTable {
    /// Every operation and column: for readers without a selection (binlog files, tools).
    pub fn everything() -> Self {
        Self {
            operations: 7,
            columns: ColumnMask::All,
            filter: None,
        }
    }

    /// What `change` becomes under the table's row filter (see [`BoundFilter::admit`]): itself
    /// without a filter.
    #[inline]
    pub fn admit(&self, change: RowChange) -> Option<RowChange> {
        match &self.filter {
            None => Some(change),
            Some(f) => f.admit(change),
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
    /// selected or no row operation is. An error names a filter column the table lacks.
    /// Row filters are parsed once into `parsed` (a table map comes with every transaction;
    /// only the binding to its columns is redone).
    pub fn prepare(
        &self,
        schema: &TableSchema,
        parsed: &mut ParsedFilters,
    ) -> Result<Option<PreparedTable>, String> {
        let name = schema.name();
        let Some(entry) = self.table(&name.database, &name.table) else {
            return Ok(None);
        };
        let filter = match entry.filter() {
            None => None,
            Some(text) => {
                if !parsed.contains_key(text) {
                    parsed.insert(text.to_owned(), Filter::parse(text));
                }
                let filter = parsed
                    .get(text)
                    .cloned()
                    .unwrap_or_else(|| Filter::parse(text))?;
                Some(Arc::new(filter.bind(schema)?))
            }
        };
        let operations = [
            (OperationKind::Insert, Operation::Insert),
            (OperationKind::Update, Operation::Update),
            (OperationKind::Delete, Operation::Delete),
        ]
        .into_iter()
        .filter(|(kind, _)| self.includes(*kind))
        .fold(0, |bits, (_, op)| bits | bit(op));
        Ok((operations != 0).then(|| PreparedTable {
            operations,
            columns: ColumnMask::of(schema, entry.columns()),
            filter,
        }))
    }

    /// The row filter of table `name` as a MySQL condition over `columns` (`(name, declared
    /// type)`), for snapshot reads; `None` without one.
    pub fn filter_sql<'c>(
        &self,
        name: &crate::change::ObjectName,
        columns: impl Iterator<Item = (&'c str, &'c str)>,
    ) -> Result<Option<String>, String> {
        let Some(text) = self
            .table(&name.database, &name.table)
            .and_then(|t| t.filter())
        else {
            return Ok(None);
        };
        let bound = Filter::parse(text)?.bind_columns(&name.to_string(), columns)?;
        Ok(Some(bound.to_sql()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Column, ObjectName};

    /// `prepare` for selections without row filters, which cannot fail.
    trait PrepareOk {
        fn prepare_ok(&self, schema: &TableSchema) -> Option<PreparedTable>;
    }

    impl PrepareOk for ObjectSelection {
        fn prepare_ok(&self, schema: &TableSchema) -> Option<PreparedTable> {
            self.prepare(schema, &mut ParsedFilters::new()).unwrap()
        }
    }

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
            s.prepare_ok(&schema("shop", "users", &["id"], vec![0]))
                .is_none()
        );
        assert!(
            s.prepare_ok(&schema("crm", "orders", &["id"], vec![0]))
                .is_none()
        );
        let p = s
            .prepare_ok(&schema("shop", "orders", &["id", "total"], vec![0]))
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
            .prepare_ok(&schema("shop", "orders", &["id"], vec![0]))
            .unwrap();
        assert!(p.carries(Operation::Insert));
        assert!(!p.carries(Operation::Update));
        assert!(!p.carries(Operation::Delete));
        let ddl_only = selection(r#"{"databases": [{"name": "shop"}], "operations": ["ddl"]}"#);
        assert!(
            ddl_only
                .prepare_ok(&schema("shop", "orders", &["id"], vec![0]))
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
            .prepare_ok(&schema(
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
            .prepare_ok(&schema("shop", "orders", &["id", "total"], vec![0]))
            .unwrap();
        assert!(p.columns().is_all());
    }
}

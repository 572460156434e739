//! The schema history of a source: which columns and key every table had at every binlog
//! position a task may resume from.
//!
//! A source that logs only MINIMAL row metadata (MySQL's default) names no columns in its
//! binlog, and even one that logs FULL metadata does not give full column types. The capture
//! worker therefore keeps a [`SchemaCatalog`]: read from the source's catalog when the task
//! first starts (a *snapshot*), then kept current by applying each DDL statement of the binlog
//! (parsed with a real SQL parser, in `ferry-mysql`). Every change is persisted as a
//! [`SchemaEntry`] at the position of its statement, so a worker resuming from a checkpoint
//! rebuilds the catalog exactly as it was there ([`SchemaCatalog::at`]) and decodes old events
//! with the schema they were written under.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::change::ObjectName;
use crate::position::Position;

/// One column as the schema history knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    /// The declared type, lower case, as the source or the DDL statement spells it
    /// (`int(10) unsigned`, `varchar(20)`, `enum('a','b')`).
    pub column_type: String,
    pub nullable: bool,
    /// The character set of a text column, when the catalog or the statement names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charset: Option<String>,
    /// The members of an ENUM or SET column, in declaration order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// The collation of a text column, when the catalog or the statement names it
    /// (`utf8mb4_bin`): a MySQL/MariaDB target keeps it, so keys that differ only in case stay
    /// two keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
}

/// A table's columns, in order, and its primary key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableDef {
    pub columns: Vec<ColumnDef>,
    /// The primary key's column names, in key order; empty without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub primary_key: Vec<String>,
    /// The table's default collation (for its text columns that name none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
}

impl TableDef {
    /// Whether the column type is unsigned.
    pub fn is_unsigned(&self, index: usize) -> bool {
        self.columns
            .get(index)
            .is_some_and(|c| c.column_type.contains("unsigned"))
    }

    /// The index of a column; column names are case-insensitive in MySQL.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// The primary key as column indexes (names the table does not have are left out).
    pub fn key_indexes(&self) -> Vec<usize> {
        self.primary_key
            .iter()
            .filter_map(|k| self.column_index(k))
            .collect()
    }
}

/// One persisted step of the history, at a binlog position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SchemaEntry {
    /// The catalog was read from the source here: earlier entries no longer count. The tables
    /// of the snapshot follow as [`SchemaEntry::Table`] entries at the same position.
    Snapshot,
    /// A table's definition from here on; `None` once it is dropped or renamed away.
    Table {
        name: ObjectName,
        def: Option<TableDef>,
    },
    /// A DDL statement that changes tables but did not parse: the catalog may be out of step
    /// from here on (harmless while the source logs column names with FULL row metadata).
    Unparsed { statement: String, reason: String },
}

/// Every table's definition at one point of the binlog.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaCatalog {
    tables: BTreeMap<ObjectName, TableDef>,
    /// Why the catalog may be out of step (the first statement it could not follow).
    stale: Option<String>,
}

impl SchemaCatalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the catalog at `at` from persisted entries (in any order): the newest snapshot
    /// at or before `at`, then every later entry at or before `at`, in position order (entries
    /// of one statement keep their sequence). Returns `None` when no snapshot precedes `at`.
    pub fn at(entries: &[(Position, u32, SchemaEntry)], at: &Position) -> Option<Self> {
        let mut relevant: Vec<&(Position, u32, SchemaEntry)> = entries
            .iter()
            .filter(|(p, _, _)| p.cmp_file_offset(at) != Ordering::Greater)
            .collect();
        relevant.sort_by(|a, b| a.0.cmp_file_offset(&b.0).then(a.1.cmp(&b.1)));
        let start = relevant
            .iter()
            .rposition(|(_, _, e)| matches!(e, SchemaEntry::Snapshot))?;
        let mut catalog = Self::new();
        for (_, _, entry) in &relevant[start..] {
            catalog.apply(entry);
        }
        Some(catalog)
    }

    /// Applies one entry.
    pub fn apply(&mut self, entry: &SchemaEntry) {
        match entry {
            SchemaEntry::Snapshot => *self = Self::new(),
            SchemaEntry::Table { name, def: Some(d) } => {
                self.tables.insert(name.clone(), d.clone());
            }
            SchemaEntry::Table { name, def: None } => {
                self.tables.remove(name);
            }
            SchemaEntry::Unparsed { statement, reason } => {
                if self.stale.is_none() {
                    self.stale = Some(format!("`{statement}` did not parse: {reason}"));
                }
            }
        }
    }

    pub fn get(&self, name: &ObjectName) -> Option<&TableDef> {
        self.tables.get(name)
    }

    pub fn insert(&mut self, name: ObjectName, def: TableDef) {
        self.tables.insert(name, def);
    }

    pub fn remove(&mut self, name: &ObjectName) -> Option<TableDef> {
        self.tables.remove(name)
    }

    /// The tables of one database.
    pub fn tables_in(&self, database: &str) -> Vec<ObjectName> {
        self.tables
            .keys()
            .filter(|n| n.database == database)
            .cloned()
            .collect()
    }

    pub fn tables(&self) -> impl Iterator<Item = (&ObjectName, &TableDef)> {
        self.tables.iter()
    }

    pub fn len(&self) -> usize {
        self.tables.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }

    /// Why the catalog may be out of step, if it may.
    pub fn stale(&self) -> Option<&str> {
        self.stale.as_deref()
    }

    /// The entries that record this catalog as a snapshot (the marker first).
    pub fn snapshot_entries(&self) -> Vec<SchemaEntry> {
        std::iter::once(SchemaEntry::Snapshot)
            .chain(self.tables.iter().map(|(name, def)| SchemaEntry::Table {
                name: name.clone(),
                def: Some(def.clone()),
            }))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::BinlogFile;

    fn pos(file: u32, offset: u64) -> Position {
        let file: BinlogFile = format!("bin.{file:06}").parse().unwrap();
        Position::new(file, offset, None)
    }

    fn name(t: &str) -> ObjectName {
        ObjectName {
            database: "shop".into(),
            table: t.into(),
        }
    }

    fn def(cols: &[&str]) -> TableDef {
        TableDef {
            columns: cols
                .iter()
                .map(|c| ColumnDef {
                    name: (*c).into(),
                    column_type: "int".into(),
                    nullable: true,
                    charset: None,
                    members: Vec::new(),
                    collation: None,
                })
                .collect(),
            primary_key: vec![cols[0].into()],
            collation: None,
        }
    }

    fn table(t: &str, d: Option<TableDef>) -> SchemaEntry {
        SchemaEntry::Table {
            name: name(t),
            def: d,
        }
    }

    #[test]
    fn the_catalog_at_a_position_sees_only_what_happened_before_it() {
        let entries = vec![
            // Written out of order on purpose: the store's order is not relied upon.
            (
                pos(1, 900),
                0,
                table("orders", Some(def(&["id", "total", "note"]))),
            ),
            (pos(1, 100), 0, SchemaEntry::Snapshot),
            (pos(1, 100), 1, table("orders", Some(def(&["id", "total"])))),
            (pos(2, 50), 0, table("orders", None)),
            (
                pos(2, 50),
                1,
                table("orders_old", Some(def(&["id", "total", "note"]))),
            ),
        ];
        assert!(SchemaCatalog::at(&entries, &pos(1, 99)).is_none());
        let at = |p| SchemaCatalog::at(&entries, &p).unwrap();
        assert_eq!(
            at(pos(1, 100)).get(&name("orders")).unwrap().columns.len(),
            2
        );
        assert_eq!(
            at(pos(1, 899)).get(&name("orders")).unwrap().columns.len(),
            2
        );
        assert_eq!(
            at(pos(1, 900)).get(&name("orders")).unwrap().columns.len(),
            3
        );
        let renamed = at(pos(3, 4));
        assert!(renamed.get(&name("orders")).is_none());
        assert_eq!(renamed.get(&name("orders_old")).unwrap().columns.len(), 3);
    }

    #[test]
    fn a_newer_snapshot_replaces_everything_before_it() {
        let entries = vec![
            (pos(1, 100), 0, SchemaEntry::Snapshot),
            (pos(1, 100), 1, table("gone", Some(def(&["id"])))),
            (
                pos(1, 200),
                0,
                SchemaEntry::Unparsed {
                    statement: "ALTER TABLE x FOO".into(),
                    reason: "no".into(),
                },
            ),
            (pos(5, 4), 0, SchemaEntry::Snapshot),
            (pos(5, 4), 1, table("kept", Some(def(&["id"])))),
        ];
        let old = SchemaCatalog::at(&entries, &pos(4, 4)).unwrap();
        assert!(old.stale().unwrap().contains("ALTER TABLE x FOO"));
        let new = SchemaCatalog::at(&entries, &pos(5, 4)).unwrap();
        assert!(new.get(&name("gone")).is_none());
        assert!(new.get(&name("kept")).is_some());
        assert!(new.stale().is_none());
        assert_eq!(new.snapshot_entries().len(), 2);
    }

    #[test]
    fn columns_are_found_whatever_their_case() {
        let d = def(&["Id", "Total"]);
        assert_eq!(d.column_index("TOTAL"), Some(1));
        assert_eq!(d.key_indexes(), vec![0]);
    }
}

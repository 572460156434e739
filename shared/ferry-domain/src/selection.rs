//! Object selection: which databases, tables, columns and operations a task carries.
//!
//! # Matching rules
//!
//! - Names are compared case-sensitively, as MySQL does on Linux with the default
//!   `lower_case_table_names=0`.
//! - A name may hold the wildcards `*` (any run of characters, possibly empty) and `?` (exactly
//!   one character). A literal `*` or `?` in a name cannot be selected by a pattern.
//! - An exact entry wins over a wildcard entry; among wildcard entries the first listed wins.
//! - Wildcards at the database level never match the system schemas (`mysql`,
//!   `information_schema`, `performance_schema`, `sys`); name them exactly to select them.
//! - A database entry without `tables` selects all of its tables.
//! - Without `operations`, all operations are selected (`insert`, `update`, `delete`, `ddl`).

use serde::{Deserialize, Serialize};

use crate::InvalidInput;

mod filter;
mod prepared;
pub use filter::{BoundFilter, Filter};
pub use prepared::{ColumnMask, ParsedFilters, PreparedTable};

/// Schemas a database wildcard never matches.
pub const SYSTEM_SCHEMAS: [&str; 4] = ["mysql", "information_schema", "performance_schema", "sys"];

/// The longest identifier MySQL allows.
pub const MAX_IDENTIFIER_CHARS: usize = 64;

/// A database or table name, or a pattern with `*` and `?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern(String);

impl NamePattern {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_wildcard(&self) -> bool {
        self.0.contains(['*', '?'])
    }

    /// Whether `name` matches this pattern.
    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

impl TryFrom<String> for NamePattern {
    type Error = InvalidInput;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_identifier("name", &s)?;
        Ok(Self(s))
    }
}

impl From<NamePattern> for String {
    fn from(p: NamePattern) -> String {
        p.0
    }
}

/// Checks an identifier as MySQL would accept it: 1 to 64 characters, no NUL or other control
/// characters, not ending in a space.
pub fn check_identifier(field: &'static str, s: &str) -> Result<(), InvalidInput> {
    let n = s.chars().count();
    if n == 0 || n > MAX_IDENTIFIER_CHARS {
        return Err(InvalidInput::new(
            field,
            format!("is {n} characters long"),
            "MySQL identifiers are 1 to 64 characters",
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(InvalidInput::new(
            field,
            format!("`{}` contains a control character", s.escape_debug()),
            "remove control characters; MySQL does not allow them in identifiers",
        ));
    }
    if s.ends_with(' ') {
        return Err(InvalidInput::new(
            field,
            format!("`{s}` ends with a space"),
            "MySQL identifiers cannot end with a space",
        ));
    }
    Ok(())
}

/// Glob matching with `*` and `?` over bytes of UTF-8, where `?` matches one character.
/// Iterative with backtracking to the last `*`: linear in practice, no recursion.
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'?' {
            p += 1;
            n += utf8_len(name[n]);
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            let next = sn + utf8_len(name[sn]);
            star = Some((sp, next));
            p = sp + 1;
            n = next;
        } else {
            return false;
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|b| *b == b'*')
}

fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
}

/// An operation a task can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Insert,
    Update,
    Delete,
    Ddl,
}

impl OperationKind {
    pub const ALL: [OperationKind; 4] = [Self::Insert, Self::Update, Self::Delete, Self::Ddl];
}

/// A table entry of a database selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSelection {
    pub name: NamePattern,
    /// The table's name on the target (sync); only for exact names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<NamePattern>,
    /// The columns to carry; all when absent. Key columns are always carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// A row filter (a SQL boolean expression over the table's columns), checked by the
    /// capture worker's parser.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// A database entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSelection {
    pub name: NamePattern,
    /// The database's name on the target (sync); only for exact names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_name: Option<NamePattern>,
    /// The tables; all tables when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<TableSelection>>,
}

/// What a task carries. Build it with [`ObjectSelection::validate`] or through serde and
/// then validate, so the rules below hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSelection {
    pub databases: Vec<DatabaseSelection>,
    #[serde(default = "all_operations")]
    pub operations: Vec<OperationKind>,
}

fn all_operations() -> Vec<OperationKind> {
    OperationKind::ALL.to_vec()
}

/// What the selection says about one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableMatch<'a> {
    database: &'a DatabaseSelection,
    table: Option<&'a TableSelection>,
}

impl<'a> TableMatch<'a> {
    /// Whether column `name` is carried (key columns are carried regardless; the caller
    /// knows which those are).
    pub fn includes_column(&self, name: &str) -> bool {
        match self.table.and_then(|t| t.columns.as_ref()) {
            None => true,
            Some(cols) => cols.iter().any(|c| c == name),
        }
    }

    /// The selected columns, or `None` for all.
    pub fn columns(&self) -> Option<&'a [String]> {
        self.table.and_then(|t| t.columns.as_deref())
    }

    pub fn filter(&self) -> Option<&'a str> {
        self.table.and_then(|t| t.filter.as_deref())
    }

    /// The target database name: the mapping, or the source name.
    pub fn target_database<'n>(&self, source: &'n str) -> &'n str
    where
        'a: 'n,
    {
        self.database
            .target_name
            .as_ref()
            .map_or(source, NamePattern::as_str)
    }

    /// The target table name: the mapping, or the source name.
    pub fn target_table<'n>(&self, source: &'n str) -> &'n str
    where
        'a: 'n,
    {
        self.table
            .and_then(|t| t.target_name.as_ref())
            .map_or(source, NamePattern::as_str)
    }
}

impl ObjectSelection {
    /// Checks the rules a selection must follow, and reports the first broken one with the
    /// path of the field (`databases[1].tables[0].columns`).
    pub fn validate(&self) -> Result<(), InvalidInput> {
        if self.databases.is_empty() {
            return Err(InvalidInput::new(
                "databases",
                "selects nothing",
                "list at least one database, e.g. {\"name\": \"shop\"} or {\"name\": \"*\"}",
            ));
        }
        if self.operations.is_empty() {
            return Err(InvalidInput::new(
                "operations",
                "selects no operation",
                "leave `operations` out to carry all, or list some of insert, update, delete, ddl",
            ));
        }
        let mut ops = self.operations.clone();
        ops.sort();
        ops.dedup();
        if ops.len() != self.operations.len() {
            return Err(InvalidInput::new(
                "operations",
                "lists an operation twice",
                "list each operation once",
            ));
        }
        for (i, db) in self.databases.iter().enumerate() {
            let at = format!("databases[{i}]");
            if self.databases[..i].iter().any(|d| d.name == db.name) {
                return Err(InvalidInput::new(
                    "name",
                    format!("database `{}` is listed twice", db.name.as_str()),
                    "merge the two entries into one",
                )
                .at(&at));
            }
            check_mapping(&db.name, db.target_name.as_ref()).map_err(|e| e.at(&at))?;
            if let Some(tables) = &db.tables {
                validate_tables(tables).map_err(|e| e.at(&at))?;
            }
        }
        Ok(())
    }

    /// Whether any table of database `db` can be selected.
    pub fn includes_database(&self, db: &str) -> bool {
        self.database(db).is_some()
    }

    /// What the selection says about `db`.`table`, or `None` when it is not selected.
    pub fn table(&self, db: &str, table: &str) -> Option<TableMatch<'_>> {
        let database = self.database(db)?;
        let Some(tables) = &database.tables else {
            return Some(TableMatch {
                database,
                table: None,
            });
        };
        let entry = best_match(tables, |t| &t.name, table)?;
        Some(TableMatch {
            database,
            table: Some(entry),
        })
    }

    /// Whether operations of `kind` are carried.
    pub fn includes(&self, kind: OperationKind) -> bool {
        self.operations.contains(&kind)
    }

    fn database(&self, db: &str) -> Option<&DatabaseSelection> {
        let candidates = self
            .databases
            .iter()
            .filter(|d| !d.name.is_wildcard() || !SYSTEM_SCHEMAS.contains(&db));
        let exact = candidates
            .clone()
            .find(|d| !d.name.is_wildcard() && d.name.as_str() == db);
        exact.or_else(|| candidates.clone().find(|d| d.name.matches(db)))
    }
}

fn best_match<'a, T>(
    entries: &'a [T],
    name: impl Fn(&T) -> &NamePattern,
    wanted: &str,
) -> Option<&'a T> {
    entries
        .iter()
        .find(|e| !name(e).is_wildcard() && name(e).as_str() == wanted)
        .or_else(|| entries.iter().find(|e| name(e).matches(wanted)))
}

fn check_mapping(name: &NamePattern, target: Option<&NamePattern>) -> Result<(), InvalidInput> {
    match target {
        Some(t) if name.is_wildcard() => Err(InvalidInput::new(
            "target_name",
            format!(
                "`{}` is a pattern and cannot be renamed to `{}`",
                name.as_str(),
                t.as_str()
            ),
            "give target names only to exact names",
        )),
        Some(t) if t.is_wildcard() => Err(InvalidInput::new(
            "target_name",
            format!("`{}` holds a wildcard", t.as_str()),
            "give an exact target name",
        )),
        _ => Ok(()),
    }
}

fn validate_tables(tables: &[TableSelection]) -> Result<(), InvalidInput> {
    if tables.is_empty() {
        return Err(InvalidInput::new(
            "tables",
            "is an empty list",
            "leave `tables` out to select every table of the database",
        ));
    }
    for (i, t) in tables.iter().enumerate() {
        let at = format!("tables[{i}]");
        if tables[..i].iter().any(|o| o.name == t.name) {
            return Err(InvalidInput::new(
                "name",
                format!("table `{}` is listed twice", t.name.as_str()),
                "merge the two entries into one",
            )
            .at(&at));
        }
        check_mapping(&t.name, t.target_name.as_ref()).map_err(|e| e.at(&at))?;
        if let Some(cols) = &t.columns {
            if cols.is_empty() {
                return Err(InvalidInput::new(
                    "columns",
                    "is an empty list",
                    "leave `columns` out to carry every column",
                )
                .at(&at));
            }
            for (j, c) in cols.iter().enumerate() {
                check_identifier("name", c).map_err(|e| e.at(&format!("{at}.columns[{j}]")))?;
                if cols[..j].contains(c) {
                    return Err(InvalidInput::new(
                        "columns",
                        format!("column `{c}` is listed twice"),
                        "list each column once",
                    )
                    .at(&at));
                }
            }
        }
        if let Some(f) = &t.filter {
            crate::invalid::check_text("filter", f, 4096).map_err(|e| e.at(&at))?;
            Filter::parse(f).map_err(|reason| {
                InvalidInput::new(
                    "filter",
                    reason,
                    "write the filter as a condition on the table's columns, e.g. `total > 0 AND status IN ('paid', 'sent')`",
                )
                .at(&at)
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn selection(json: &str) -> ObjectSelection {
        let s: ObjectSelection = serde_json::from_str(json).unwrap();
        s.validate().unwrap();
        s
    }

    #[test]
    fn globbing() {
        let p = |s: &str| NamePattern::try_from(s.to_owned()).unwrap();
        assert!(p("order_*").matches("order_items"));
        assert!(p("order_*").matches("order_"));
        assert!(!p("order_*").matches("orders"));
        assert!(p("t?").matches("t1"));
        assert!(p("t?").matches("té"));
        assert!(!p("t?").matches("t12"));
        assert!(p("*").matches(""));
        assert!(p("a*b*c").matches("aXXbYYc"));
        assert!(!p("a*b*c").matches("aXXbYY"));
        assert!(p("Orders").matches("Orders"));
        assert!(!p("Orders").matches("orders"), "case-sensitive");
    }

    #[test]
    fn blueprint_example() {
        let s = selection(
            r#"{
            "databases": [
              {"name": "shop", "target_name": "shop_copy",
               "tables": [{"name": "orders", "columns": ["id", "total"], "filter": "total > 0"},
                          {"name": "order_*"}]},
              {"name": "crm"}
            ],
            "operations": ["insert", "update", "delete", "ddl"]
        }"#,
        );
        let orders = s.table("shop", "orders").unwrap();
        assert_eq!(
            orders.columns(),
            Some(&["id".to_owned(), "total".to_owned()][..])
        );
        assert!(!orders.includes_column("note"));
        assert_eq!(orders.filter(), Some("total > 0"));
        assert_eq!(orders.target_database("shop"), "shop_copy");
        assert_eq!(orders.target_table("orders"), "orders");
        let items = s.table("shop", "order_items").unwrap();
        assert!(items.includes_column("anything"));
        assert!(s.table("shop", "customers").is_none());
        assert!(s.table("crm", "leads").is_some());
        assert!(s.table("hr", "people").is_none());
        assert!(s.includes(OperationKind::Ddl));
    }

    #[test]
    fn exact_entries_win_over_wildcards() {
        let s = selection(
            r#"{"databases": [
                {"name": "*", "tables": [{"name": "a"}]},
                {"name": "shop", "tables": [{"name": "t*", "columns": ["x"]}, {"name": "two", "columns": ["y"]}]}
            ]}"#,
        );
        assert!(s.table("other", "a").is_some());
        assert!(
            s.table("shop", "a").is_none(),
            "the exact `shop` entry decides"
        );
        assert_eq!(s.table("shop", "two").unwrap().columns().unwrap(), ["y"]);
        assert_eq!(s.table("shop", "three").unwrap().columns().unwrap(), ["x"]);
        assert_eq!(s.operations, OperationKind::ALL.to_vec());
    }

    #[test]
    fn wildcards_skip_system_schemas() {
        let s = selection(r#"{"databases": [{"name": "*"}]}"#);
        assert!(s.table("shop", "t").is_some());
        for sys in SYSTEM_SCHEMAS {
            assert!(s.table(sys, "user").is_none(), "{sys}");
        }
        let s = selection(r#"{"databases": [{"name": "*"}, {"name": "mysql"}]}"#);
        assert!(s.table("mysql", "user").is_some());
    }

    #[test]
    fn bad_selections_name_the_field() {
        let cases = [
            (r#"{"databases": []}"#, "databases"),
            (
                r#"{"databases": [{"name": "a"}], "operations": []}"#,
                "operations",
            ),
            (
                r#"{"databases": [{"name": "a"}], "operations": ["insert", "insert"]}"#,
                "operations",
            ),
            (
                r#"{"databases": [{"name": "a"}, {"name": "a"}]}"#,
                "databases[1].name",
            ),
            (
                r#"{"databases": [{"name": "a*", "target_name": "b"}]}"#,
                "databases[0].target_name",
            ),
            (
                r#"{"databases": [{"name": "a", "tables": []}]}"#,
                "databases[0].tables",
            ),
            (
                r#"{"databases": [{"name": "a", "tables": [{"name": "t", "columns": []}]}]}"#,
                "databases[0].tables[0].columns",
            ),
            (
                r#"{"databases": [{"name": "a", "tables": [{"name": "t", "columns": ["x", "x"]}]}]}"#,
                "databases[0].tables[0].columns",
            ),
            (
                r#"{"databases": [{"name": "a", "tables": [{"name": "t", "columns": ["ok", ""]}]}]}"#,
                "databases[0].tables[0].columns[1].name",
            ),
            (
                r#"{"databases": [{"name": "a", "tables": [{"name": "t"}, {"name": "t"}]}]}"#,
                "databases[0].tables[1].name",
            ),
        ];
        for (json, field) in cases {
            let s: ObjectSelection = serde_json::from_str(json).unwrap();
            assert_eq!(s.validate().unwrap_err().field(), field, "{json}");
        }
        // Rejected while parsing: bad names, unknown fields and operations.
        for json in [
            r#"{"databases": [{"name": ""}]}"#,
            r#"{"databases": [{"name": "x\u0000y"}]}"#,
            r#"{"databases": [{"name": "trailing "}]}"#,
            r#"{"databases": [{"name": "a", "tablez": []}]}"#,
            r#"{"databases": [{"name": "a"}], "operations": ["truncate"]}"#,
        ] {
            assert!(
                serde_json::from_str::<ObjectSelection>(json).is_err(),
                "{json}"
            );
        }
    }

    /// A reference matcher: regex-free, exponential, obviously right.
    fn naive(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => naive(&p[1..], n) || (!n.is_empty() && naive(p, &n[1..])),
            (Some('?'), Some(_)) => naive(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => naive(&p[1..], &n[1..]),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn glob_agrees_with_the_naive_matcher(p in "[ab*?é]{0,8}", n in "[abé]{0,10}") {
            let pc: Vec<char> = p.chars().collect();
            let nc: Vec<char> = n.chars().collect();
            prop_assert_eq!(glob_match(p.as_bytes(), n.as_bytes()), naive(&pc, &nc));
        }
    }
}

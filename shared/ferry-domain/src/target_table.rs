//! Whether a table that already exists on the target can take what Ferry writes into it: the
//! target precheck's comparison (`target.tables`, docs/prechecks.md), pure so that both
//! engines' catalog readers share it.
//!
//! A table Ferry would create is described by its [`TargetTable`] (the source table through the
//! conversion table); the table found on the target by a [`FoundTable`] read from the target's
//! catalog. They are compatible when every column Ferry writes is there with the same type (as
//! the target spells it), the same collation where Ferry sets one, and a nullability that takes
//! every source value; when every other column of the target table can be left out (nullable,
//! or with a default); and when the primary key is the source's. Each difference is one
//! sentence naming the column and both sides.

use serde::{Deserialize, Serialize};

use crate::convert::{TargetEngine, target_collation, target_nullable};
use crate::schema::TableDef;
use crate::sync::TargetTable;

/// What to do with selected tables that already exist on the target, like the cloud DTS's
/// "processing mode of conflicting tables".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictingTables {
    /// An existing table that differs from what Ferry writes fails the precheck, with the
    /// differences; a compatible one is kept and written into.
    #[default]
    Error,
    /// Differences are a precheck warning: the task starts, existing tables are kept, and a
    /// write the target refuses fails the task then.
    Ignore,
    /// Existing tables are dropped and created again from the source at schema sync (the
    /// precheck warns which); their rows are lost.
    Recreate,
}

/// One column of a table found on the target, as its catalog describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundColumn {
    pub name: String,
    /// The type as the target spells it (PostgreSQL: `format_type`; MySQL: `COLUMN_TYPE`).
    pub sql_type: String,
    pub nullable: bool,
    pub has_default: bool,
    /// MySQL/MariaDB text columns: the collation.
    pub collation: Option<String>,
}

/// A table found on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTable {
    pub columns: Vec<FoundColumn>,
    /// The primary key's columns, in key order (empty: none).
    pub key: Vec<String>,
}

/// `sql_type` in the spelling the target's catalog uses, for comparison: PostgreSQL's
/// `format_type` names (`character varying(40)`), MySQL's `COLUMN_TYPE` without integer
/// display widths (`int(11)` and `int` are one type), lowercase except ENUM and SET members.
pub fn canonical_type(engine: TargetEngine, sql_type: &str) -> String {
    let t = sql_type.trim();
    let (name, rest) = match t.find('(') {
        Some(i) => (&t[..i], &t[i..]),
        None => match t.find(' ') {
            Some(i) => (&t[..i], &t[i..]),
            None => (t, ""),
        },
    };
    let name = name.trim().to_ascii_lowercase();
    // Members of ENUM and SET keep their case; everything else is case-insensitive.
    let rest = if name == "enum" || name == "set" {
        rest.to_owned()
    } else {
        rest.to_ascii_lowercase()
    };
    let rest = rest.split_whitespace().collect::<Vec<_>>().join(" ");
    match engine {
        TargetEngine::Postgresql => {
            let name = match name.as_str() {
                "varchar" => "character varying",
                "char" => "character",
                "int" | "int4" => "integer",
                "int8" => "bigint",
                "int2" => "smallint",
                "float8" => "double precision",
                "float4" => "real",
                "bool" => "boolean",
                "decimal" => "numeric",
                "timestamptz" => return format!("timestamp{rest} with time zone"),
                other => other,
            };
            format!("{name}{rest}")
        }
        TargetEngine::Mysql | TargetEngine::Mariadb => {
            let integer = matches!(
                name.as_str(),
                "tinyint"
                    | "smallint"
                    | "mediumint"
                    | "int"
                    | "integer"
                    | "bigint"
                    | "bool"
                    | "boolean"
            );
            let name = match name.as_str() {
                "integer" => "int",
                "bool" | "boolean" => "tinyint",
                "dec" | "numeric" | "fixed" => "decimal",
                "real" => "double",
                "double" if rest.starts_with("precision") => {
                    return format!("double{}", &rest["precision".len()..]);
                }
                // MariaDB keeps JSON as LONGTEXT (with a check constraint).
                "json" if engine == TargetEngine::Mariadb => "longtext",
                other => other,
            };
            let rest = if integer && rest.starts_with('(') {
                // The display width says nothing about the values.
                rest.find(')')
                    .map_or(String::new(), |i| rest[i + 1..].to_owned())
            } else if name == "decimal" && rest.is_empty() {
                "(10,0)".to_owned()
            } else {
                rest
            };
            format!("{name}{rest}").trim().to_owned()
        }
    }
}

/// How `expected` (the table Ferry would create from `def`) differs from `found`; empty when
/// Ferry can write into `found` as it is.
pub fn differences(expected: &TargetTable, def: &TableDef, found: &FoundTable) -> Vec<String> {
    let engine = expected.engine;
    let same_name = |a: &str, b: &str| match engine {
        TargetEngine::Postgresql => a == b,
        TargetEngine::Mysql | TargetEngine::Mariadb => a.eq_ignore_ascii_case(b),
    };
    let mut out = Vec::new();
    for (i, c) in expected.columns.iter().enumerate() {
        let Some(f) = found.columns.iter().find(|f| same_name(&f.name, &c.name)) else {
            out.push(format!(
                "column `{}` ({}) is missing on the target",
                c.name, c.target_type.sql_type
            ));
            continue;
        };
        let want = canonical_type(engine, &c.target_type.sql_type);
        let have = canonical_type(engine, &f.sql_type);
        if want != have {
            out.push(format!(
                "column `{}` is `{}` on the target; Ferry writes `{}` (from the source's `{}`)",
                c.name, f.sql_type, c.target_type.sql_type, c.source_type
            ));
        }
        let key = expected.key.contains(&i);
        if !f.nullable && target_nullable(engine, &c.def, key) {
            out.push(format!(
                "column `{}` is NOT NULL on the target but may be NULL on the source",
                c.name
            ));
        }
        if engine != TargetEngine::Postgresql
            && let Some(want) = target_collation(engine, &c.def, def.collation.as_deref())
            && f.collation
                .as_deref()
                .is_some_and(|have| !have.eq_ignore_ascii_case(&want))
        {
            out.push(format!(
                "column `{}` has collation `{}` on the target; the source's is `{want}` (keys equal under one may differ under the other)",
                c.name,
                f.collation.as_deref().unwrap_or_default()
            ));
        }
    }
    for f in &found.columns {
        let written = expected.columns.iter().any(|c| same_name(&c.name, &f.name));
        if !written && !f.nullable && !f.has_default {
            out.push(format!(
                "column `{}` of the target is NOT NULL without a default, and Ferry does not write it",
                f.name
            ));
        }
    }
    let want_key: Vec<&str> = expected
        .key
        .iter()
        .map(|k| expected.columns[*k].name.as_str())
        .collect();
    let same_key = want_key.len() == found.key.len()
        && want_key
            .iter()
            .zip(&found.key)
            .all(|(a, b)| same_name(a, b));
    if !same_key {
        let show = |k: &[&str]| {
            if k.is_empty() {
                "none".to_owned()
            } else {
                format!("({})", k.join(", "))
            }
        };
        let found_key: Vec<&str> = found.key.iter().map(String::as_str).collect();
        out.push(format!(
            "the primary key is {} on the target and {} on the source",
            show(&found_key),
            show(&want_key)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::ObjectName;
    use crate::schema::ColumnDef;

    fn column(name: &str, column_type: &str, nullable: bool) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            column_type: column_type.into(),
            nullable,
            charset: None,
            members: Vec::new(),
            collation: None,
        }
    }

    fn orders() -> TableDef {
        TableDef {
            columns: vec![
                column("id", "bigint(20)", false),
                column("total", "decimal(10,2)", true),
                column("note", "varchar(40)", true),
            ],
            primary_key: vec!["id".into()],
            collation: None,
        }
    }

    fn expected(engine: TargetEngine, def: &TableDef) -> TargetTable {
        TargetTable::new(
            engine,
            ObjectName {
                database: "shop".into(),
                table: "orders".into(),
            },
            "shop",
            "orders",
            def,
            |_| true,
        )
        .unwrap()
    }

    fn found(columns: &[(&str, &str, bool)], key: &[&str]) -> FoundTable {
        FoundTable {
            columns: columns
                .iter()
                .map(|(n, t, nullable)| FoundColumn {
                    name: (*n).into(),
                    sql_type: (*t).into(),
                    nullable: *nullable,
                    has_default: false,
                    collation: None,
                })
                .collect(),
            key: key.iter().map(|k| (*k).to_string()).collect(),
        }
    }

    #[test]
    fn types_compare_as_the_target_spells_them() {
        use TargetEngine::*;
        assert_eq!(
            canonical_type(Postgresql, "varchar(40)"),
            "character varying(40)"
        );
        assert_eq!(canonical_type(Postgresql, "char(3)"), "character(3)");
        assert_eq!(
            canonical_type(Postgresql, "timestamp(3) without time zone"),
            "timestamp(3) without time zone"
        );
        assert_eq!(canonical_type(Mariadb, "int(11)"), "int");
        assert_eq!(canonical_type(Mysql, "INT"), "int");
        assert_eq!(
            canonical_type(Mariadb, "bigint(20) unsigned"),
            "bigint unsigned"
        );
        assert_eq!(canonical_type(Mysql, "DECIMAL"), "decimal(10,0)");
        assert_eq!(canonical_type(Mariadb, "json"), "longtext");
        assert_eq!(canonical_type(Mysql, "json"), "json");
        assert_eq!(
            canonical_type(Mysql, "ENUM('Active','b')"),
            "enum('Active','b')"
        );
        assert_ne!(
            canonical_type(Mysql, "enum('A')"),
            canonical_type(Mysql, "enum('a')")
        );
        assert_eq!(canonical_type(Mysql, "double precision"), "double");
    }

    #[test]
    fn a_table_as_ferry_creates_it_is_compatible() {
        let def = orders();
        let pg = expected(TargetEngine::Postgresql, &def);
        let same = found(
            &[
                ("id", "bigint", false),
                ("total", "numeric(10,2)", true),
                ("note", "character varying(40)", true),
            ],
            &["id"],
        );
        assert_eq!(differences(&pg, &def, &same), Vec::<String>::new());
        let my = expected(TargetEngine::Mariadb, &def);
        let same = found(
            &[
                ("ID", "bigint(20)", false),
                ("total", "decimal(10,2)", true),
                ("note", "varchar(40)", true),
                ("extra", "int(11)", true),
            ],
            &["id"],
        );
        assert_eq!(differences(&my, &def, &same), Vec::<String>::new());
    }

    #[test]
    fn each_difference_is_named() {
        let def = orders();
        let pg = expected(TargetEngine::Postgresql, &def);
        let other = found(
            &[
                ("id", "integer", false),
                ("total", "numeric(10,2)", false),
                ("added", "text", false),
            ],
            &["id", "total"],
        );
        let d = differences(&pg, &def, &other);
        assert_eq!(d.len(), 5, "{d:#?}");
        assert!(d[0].contains("`id` is `integer` on the target; Ferry writes `bigint`"));
        assert!(d[1].contains("`total` is NOT NULL on the target"));
        assert!(d[2].contains("`note` (varchar(40)) is missing"));
        assert!(d[3].contains("`added` of the target is NOT NULL without a default"));
        assert!(d[4].contains("(id, total) on the target and (id) on the source"));
        // Names are exact on PostgreSQL (Ferry quotes them), case-insensitive on MySQL.
        let upper = found(
            &[
                ("ID", "bigint", false),
                ("total", "numeric(10,2)", true),
                ("note", "character varying(40)", true),
            ],
            &["ID"],
        );
        assert!(
            differences(&pg, &def, &upper)
                .iter()
                .any(|d| d.contains("`id` (bigint) is missing"))
        );
    }

    #[test]
    fn collations_are_compared_where_ferry_sets_one() {
        let mut def = orders();
        def.columns[2].charset = Some("utf8mb4".into());
        def.columns[2].collation = Some("utf8mb4_bin".into());
        let my = expected(TargetEngine::Mariadb, &def);
        let mut t = found(
            &[
                ("id", "bigint", false),
                ("total", "decimal(10,2)", true),
                ("note", "varchar(40)", true),
            ],
            &["id"],
        );
        t.columns[2].collation = Some("utf8mb4_general_ci".into());
        let d = differences(&my, &def, &t);
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].contains("collation `utf8mb4_general_ci`"), "{d:?}");
        t.columns[2].collation = Some("UTF8MB4_BIN".into());
        assert!(differences(&my, &def, &t).is_empty());
    }

    #[test]
    fn the_mode_reads_as_documented() {
        let m: ConflictingTables = serde_json::from_str("\"recreate\"").unwrap();
        assert_eq!(m, ConflictingTables::Recreate);
        assert!(serde_json::from_str::<ConflictingTables>("\"drop\"").is_err());
    }
}

//! Schema evolution for data synchronization: a source DDL statement's effect on the schema
//! history (its [`SchemaEntry`]s) turned into the statements that make the target follow,
//! through the same type conversion as schema sync.
//!
//! | source change | target statement |
//! |---|---|
//! | a table created (or renamed in from outside the selection) | `CREATE TABLE` (and a copy of its rows) |
//! | a table dropped | `DROP TABLE IF EXISTS` |
//! | a table renamed, both names selected | `ALTER TABLE … RENAME` (PostgreSQL) / `RENAME TABLE` |
//! | a column added | `ADD COLUMN`, nullable on PostgreSQL (existing rows get NULL) |
//! | a column dropped | `DROP COLUMN` |
//! | a column renamed (one dropped and one added at the same place, same type) | `RENAME COLUMN` |
//! | a column's type or nullability changed | `ALTER COLUMN … TYPE … USING` / `MODIFY COLUMN` |
//!
//! | the primary key changed | PostgreSQL: the key constraint dropped (whatever its name) and `ADD PRIMARY KEY`; MySQL/MariaDB: `DROP PRIMARY KEY, ADD PRIMARY KEY` |
//! | a text column's charset or collation changed (MySQL/MariaDB) | `MODIFY COLUMN` |
//!
//! Not followed: index changes (Ferry creates no secondary indexes), column order.

use crate::change::ObjectName;
use crate::convert::{Converted, TargetEngine, Unconvertible, convert, quote, text_options};
use crate::schema::{ColumnDef, SchemaEntry, TableDef};

/// What one statement did to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableChange {
    Created {
        name: ObjectName,
        def: TableDef,
    },
    Dropped {
        name: ObjectName,
    },
    Renamed {
        from: ObjectName,
        to: ObjectName,
        def: TableDef,
    },
    Altered {
        name: ObjectName,
        old: TableDef,
        new: TableDef,
    },
}

/// The table changes of one statement's entries; `before` gives a table's definition before
/// the statement.
pub fn table_changes<'a>(
    entries: &[SchemaEntry],
    before: impl Fn(&ObjectName) -> Option<&'a TableDef>,
) -> Vec<TableChange> {
    let mut gone: Vec<(ObjectName, TableDef)> = Vec::new();
    let mut out = Vec::new();
    let mut appeared: Vec<(ObjectName, TableDef)> = Vec::new();
    for e in entries {
        let SchemaEntry::Table { name, def } = e else {
            continue;
        };
        match (before(name), def) {
            (Some(old), Some(new)) if old != new => out.push(TableChange::Altered {
                name: name.clone(),
                old: old.clone(),
                new: new.clone(),
            }),
            (Some(_), Some(_)) => {}
            (None, Some(new)) => appeared.push((name.clone(), new.clone())),
            (Some(old), None) => gone.push((name.clone(), old.clone())),
            (None, None) => {}
        }
    }
    // A table that went and one that appeared with the same columns in one statement: a rename.
    for (name, def) in appeared {
        match gone.iter().position(|(_, old)| old.columns == def.columns) {
            Some(i) => {
                let (from, _) = gone.remove(i);
                out.push(TableChange::Renamed {
                    from,
                    to: name,
                    def,
                });
            }
            None => out.push(TableChange::Created { name, def }),
        }
    }
    out.extend(
        gone.into_iter()
            .map(|(name, _)| TableChange::Dropped { name }),
    );
    out
}

fn column_sql(
    engine: TargetEngine,
    c: &ColumnDef,
    t: &Converted,
    keep_not_null: bool,
    table_collation: Option<&str>,
) -> String {
    let mut s = format!("{} {}", quote(engine, &c.name), t.sql_type);
    s.push_str(&text_options(engine, c, table_collation));
    if keep_not_null && !c.nullable {
        s.push_str(" NOT NULL");
    }
    s
}

/// The statements that change target table `schema.table` from `old` to `new`, for the columns
/// `keep` accepts.
pub fn alter_table(
    engine: TargetEngine,
    schema: &str,
    table: &str,
    old: &TableDef,
    new: &TableDef,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>, Unconvertible> {
    let name = format!("{}.{}", quote(engine, schema), quote(engine, table));
    let q = |n: &str| quote(engine, n);
    let find = |def: &TableDef, n: &str| {
        def.columns
            .iter()
            .position(|c| c.name.eq_ignore_ascii_case(n))
    };
    let mut out = Vec::new();
    // A changed key: the old one goes first (before columns of it are dropped or changed), the
    // new one is added last (after its columns exist).
    let key_changed = !same_key(&old.primary_key, &new.primary_key);
    if key_changed && !old.primary_key.is_empty() {
        out.push(drop_primary_key(engine, schema, table));
    }
    let dropped: Vec<usize> = (0..old.columns.len())
        .filter(|i| find(new, &old.columns[*i].name).is_none())
        .collect();
    let added: Vec<usize> = (0..new.columns.len())
        .filter(|i| find(old, &new.columns[*i].name).is_none())
        .collect();
    // One column dropped and one added at the same place with the same type: a rename.
    if let ([d], [a]) = (dropped.as_slice(), added.as_slice())
        && d == a
        && old.columns[*d].column_type == new.columns[*a].column_type
    {
        let (from, to) = (&old.columns[*d].name, &new.columns[*a].name);
        if keep(to) || keep(from) {
            // The same on PostgreSQL and MySQL 8 / MariaDB 10.5+.
            out.push(format!(
                "ALTER TABLE {name} RENAME COLUMN {} TO {}",
                q(from),
                q(to)
            ));
        }
        if key_changed && !new.primary_key.is_empty() {
            out.push(add_primary_key(engine, &name, &new.primary_key));
        }
        return Ok(out);
    }
    for i in dropped {
        let c = &old.columns[i];
        if keep(&c.name) {
            out.push(format!("ALTER TABLE {name} DROP COLUMN {}", q(&c.name)));
        }
    }
    for i in added {
        let c = &new.columns[i];
        if !keep(&c.name) {
            continue;
        }
        let t = convert(&c.column_type, engine)?;
        // PostgreSQL cannot add a NOT NULL column without a default to a table with rows.
        let sql = column_sql(
            engine,
            c,
            &t,
            engine != TargetEngine::Postgresql,
            new.collation.as_deref(),
        );
        out.push(format!("ALTER TABLE {name} ADD COLUMN {sql}"));
    }
    for c in &new.columns {
        let Some(o) = find(old, &c.name).map(|i| &old.columns[i]) else {
            continue;
        };
        let text_changed = engine != TargetEngine::Postgresql
            && (o.charset != c.charset || o.collation != c.collation);
        if !keep(&c.name)
            || (o.column_type == c.column_type && o.nullable == c.nullable && !text_changed)
        {
            continue;
        }
        let t = convert(&c.column_type, engine)?;
        match engine {
            TargetEngine::Postgresql => {
                if o.column_type != c.column_type {
                    out.push(format!(
                        "ALTER TABLE {name} ALTER COLUMN {0} TYPE {1} USING {0}::{1}",
                        q(&c.name),
                        t.sql_type
                    ));
                }
                if o.nullable != c.nullable {
                    out.push(format!(
                        "ALTER TABLE {name} ALTER COLUMN {} {} NOT NULL",
                        q(&c.name),
                        if c.nullable { "DROP" } else { "SET" }
                    ));
                }
            }
            TargetEngine::Mysql | TargetEngine::Mariadb => out.push(format!(
                "ALTER TABLE {name} MODIFY COLUMN {}",
                column_sql(engine, c, &t, true, new.collation.as_deref())
            )),
        }
    }
    if key_changed && !new.primary_key.is_empty() {
        out.push(add_primary_key(engine, &name, &new.primary_key));
    }
    Ok(out)
}

fn same_key(a: &[String], b: &[String]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// Drops `schema.table`'s primary key. PostgreSQL names the constraint after the table at
/// creation (`…_pkey`), but a renamed table keeps the old name: it is looked up.
fn drop_primary_key(engine: TargetEngine, schema: &str, table: &str) -> String {
    let name = format!("{}.{}", quote(engine, schema), quote(engine, table));
    match engine {
        TargetEngine::Postgresql => {
            let regclass = name.replace('\'', "''");
            format!(
                "DO $ferry$ DECLARE c text; BEGIN \
                 SELECT conname INTO c FROM pg_constraint WHERE conrelid = '{regclass}'::regclass AND contype = 'p'; \
                 IF c IS NOT NULL THEN EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', '{regclass}'::regclass, c); END IF; \
                 END $ferry$"
            )
        }
        TargetEngine::Mysql | TargetEngine::Mariadb => {
            format!("ALTER TABLE {name} DROP PRIMARY KEY")
        }
    }
}

fn add_primary_key(engine: TargetEngine, name: &str, key: &[String]) -> String {
    let columns: Vec<String> = key.iter().map(|k| quote(engine, k)).collect();
    format!(
        "ALTER TABLE {name} ADD PRIMARY KEY ({})",
        columns.join(", ")
    )
}

/// `DROP TABLE IF EXISTS schema.table`.
pub fn drop_table(engine: TargetEngine, schema: &str, table: &str) -> String {
    format!(
        "DROP TABLE IF EXISTS {}.{}",
        quote(engine, schema),
        quote(engine, table)
    )
}

/// Empties a target table (the source's `TRUNCATE`).
pub fn truncate_table(engine: TargetEngine, schema: &str, table: &str) -> String {
    format!(
        "TRUNCATE TABLE {}.{}",
        quote(engine, schema),
        quote(engine, table)
    )
}

/// Renames a target table (PostgreSQL: within its schema, then to another schema if needed).
pub fn rename_table(engine: TargetEngine, from: (&str, &str), to: (&str, &str)) -> Vec<String> {
    let q = |n: &str| quote(engine, n);
    match engine {
        TargetEngine::Postgresql => {
            let mut out = vec![format!(
                "ALTER TABLE {}.{} RENAME TO {}",
                q(from.0),
                q(from.1),
                q(to.1)
            )];
            if from.0 != to.0 {
                out.push(format!("CREATE SCHEMA IF NOT EXISTS {}", q(to.0)));
                out.push(format!(
                    "ALTER TABLE {}.{} SET SCHEMA {}",
                    q(from.0),
                    q(to.1),
                    q(to.0)
                ));
            }
            out
        }
        TargetEngine::Mysql | TargetEngine::Mariadb => vec![format!(
            "RENAME TABLE {}.{} TO {}.{}",
            q(from.0),
            q(from.1),
            q(to.0),
            q(to.1)
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, t: &str, nullable: bool) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            column_type: t.into(),
            nullable,
            charset: None,
            members: Vec::new(),
            collation: None,
        }
    }

    fn def(columns: Vec<ColumnDef>) -> TableDef {
        TableDef {
            columns,
            primary_key: vec!["id".into()],
            collation: None,
        }
    }

    fn name(t: &str) -> ObjectName {
        ObjectName {
            database: "d".into(),
            table: t.into(),
        }
    }

    #[test]
    fn columns_added_dropped_and_changed() {
        let old = def(vec![
            col("id", "int", false),
            col("a", "int", true),
            col("b", "int", true),
        ]);
        let new = def(vec![
            col("id", "int", false),
            col("b", "bigint", false),
            col("c", "varchar(10)", false),
        ]);
        let pg = alter_table(TargetEngine::Postgresql, "s", "t", &old, &new, |_| true).unwrap();
        assert_eq!(
            pg,
            [
                "ALTER TABLE \"s\".\"t\" DROP COLUMN \"a\"",
                "ALTER TABLE \"s\".\"t\" ADD COLUMN \"c\" varchar(10)",
                "ALTER TABLE \"s\".\"t\" ALTER COLUMN \"b\" TYPE bigint USING \"b\"::bigint",
                "ALTER TABLE \"s\".\"t\" ALTER COLUMN \"b\" SET NOT NULL",
            ]
        );
        let my = alter_table(TargetEngine::Mariadb, "s", "t", &old, &new, |c| c != "a").unwrap();
        assert_eq!(
            my,
            [
                "ALTER TABLE `s`.`t` ADD COLUMN `c` varchar(10) NOT NULL",
                "ALTER TABLE `s`.`t` MODIFY COLUMN `b` bigint NOT NULL",
            ]
        );
    }

    #[test]
    fn a_changed_primary_key_is_followed() {
        let old = def(vec![col("id", "int", false), col("tenant", "int", false)]);
        let mut new = old.clone();
        new.primary_key = vec!["id".into(), "tenant".into()];
        let pg = alter_table(TargetEngine::Postgresql, "s", "t", &old, &new, |_| true).unwrap();
        assert_eq!(pg.len(), 2, "{pg:?}");
        assert!(
            pg[0].starts_with("DO $ferry$") && pg[0].contains("'\"s\".\"t\"'::regclass"),
            "{pg:?}"
        );
        assert_eq!(
            pg[1],
            "ALTER TABLE \"s\".\"t\" ADD PRIMARY KEY (\"id\", \"tenant\")"
        );
        let my = alter_table(TargetEngine::Mysql, "s", "t", &old, &new, |_| true).unwrap();
        assert_eq!(
            my,
            [
                "ALTER TABLE `s`.`t` DROP PRIMARY KEY",
                "ALTER TABLE `s`.`t` ADD PRIMARY KEY (`id`, `tenant`)"
            ]
        );
        // A key dropped and none added; the same key in other case is no change.
        let mut keyless = old.clone();
        keyless.primary_key.clear();
        assert_eq!(
            alter_table(TargetEngine::Mariadb, "s", "t", &old, &keyless, |_| true).unwrap(),
            ["ALTER TABLE `s`.`t` DROP PRIMARY KEY"]
        );
        let mut upper = old.clone();
        upper.primary_key = vec!["ID".into()];
        assert!(
            alter_table(TargetEngine::Mariadb, "s", "t", &old, &upper, |_| true)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_changed_collation_is_followed_on_mysql_targets() {
        let old = def(vec![col("id", "int", false), col("k", "varchar(5)", false)]);
        let mut new = old.clone();
        new.columns[1].collation = Some("utf8mb4_bin".into());
        assert_eq!(
            alter_table(TargetEngine::Mariadb, "s", "t", &old, &new, |_| true).unwrap(),
            ["ALTER TABLE `s`.`t` MODIFY COLUMN `k` varchar(5) COLLATE utf8mb4_bin NOT NULL"]
        );
        assert!(
            alter_table(TargetEngine::Postgresql, "s", "t", &old, &new, |_| true)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_column_renamed_in_place_is_renamed() {
        let old = def(vec![col("id", "int", false), col("a", "text", true)]);
        let new = def(vec![col("id", "int", false), col("z", "text", true)]);
        assert_eq!(
            alter_table(TargetEngine::Postgresql, "s", "t", &old, &new, |_| true).unwrap(),
            ["ALTER TABLE \"s\".\"t\" RENAME COLUMN \"a\" TO \"z\""]
        );
    }

    #[test]
    fn statements_become_table_changes() {
        let t = def(vec![col("id", "int", false)]);
        let before = |n: &ObjectName| (n.table == "old" || n.table == "gone").then_some(&t);
        let entries = vec![
            SchemaEntry::Table {
                name: name("old"),
                def: None,
            },
            SchemaEntry::Table {
                name: name("new"),
                def: Some(t.clone()),
            },
            SchemaEntry::Table {
                name: name("gone"),
                def: None,
            },
        ];
        let changes = table_changes(&entries, before);
        assert_eq!(
            changes,
            [
                TableChange::Renamed {
                    from: name("old"),
                    to: name("new"),
                    def: t.clone()
                },
                TableChange::Dropped { name: name("gone") }
            ]
        );
        assert_eq!(
            rename_table(TargetEngine::Postgresql, ("a", "x"), ("b", "y")),
            [
                "ALTER TABLE \"a\".\"x\" RENAME TO \"y\"",
                "CREATE SCHEMA IF NOT EXISTS \"b\"",
                "ALTER TABLE \"a\".\"y\" SET SCHEMA \"b\""
            ]
        );
    }
}

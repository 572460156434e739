//! Keeping the schema history current: a binlog statement, parsed with `sqlparser`'s MySQL
//! dialect, applied to a [`SchemaCatalog`].
//!
//! Peers that follow DDL with regular expressions drift out of step with the source (Canal
//! #1737, Maxwell #780); a real parser reads every form the server accepts for the changes
//! that matter here: `CREATE [OR REPLACE] TABLE` (columns, inline and table-level primary keys,
//! `LIKE`), `ALTER TABLE` (add/drop/modify/change/rename column with `FIRST`/`AFTER`, add/drop
//! primary key, rename), `RENAME TABLE`, `DROP TABLE` and `DROP DATABASE`.
//!
//! Application is forgiving where replaying is harmless (adding a column that exists replaces
//! it, dropping a missing one is a no-op), because the first snapshot is read a moment after the
//! position it starts from and may already include the first statements replayed after it.

use ferry_domain::change::ObjectName;
use ferry_domain::schema::{ColumnDef, SchemaCatalog, SchemaEntry, TableDef};
use sqlparser::ast::{
    self, AlterTableOperation, ColumnOption, CreateTableLikeKind, DataType, EnumMember, Expr,
    MySQLColumnPosition, ObjectType, RenameTableNameKind, Statement, TableConstraint,
};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

/// What a statement of the binlog is, once applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    /// A DDL statement; `entries` are what it changed in the catalog (already applied), to
    /// persist at its position.
    Ddl { entries: Vec<SchemaEntry> },
    /// Transaction bookkeeping inside a transaction (`SAVEPOINT`, `RELEASE SAVEPOINT`,
    /// `ROLLBACK TO`, `XA …`): neither a change nor DDL.
    Bookkeeping,
}

/// Applies `sql` (run with default database `default_db`) to `catalog`.
pub fn apply_statement(
    catalog: &mut SchemaCatalog,
    default_db: Option<&str>,
    sql: &str,
) -> Applied {
    if is_bookkeeping_text(sql) {
        return Applied::Bookkeeping;
    }
    let statements = match Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(s) => s,
        Err(e) => {
            if !changes_tables(sql) {
                return Applied::Ddl {
                    entries: Vec::new(),
                };
            }
            let entry = SchemaEntry::Unparsed {
                statement: sql.chars().take(2000).collect(),
                reason: e.to_string(),
            };
            catalog.apply(&entry);
            return Applied::Ddl {
                entries: vec![entry],
            };
        }
    };
    let mut entries = Vec::new();
    for statement in &statements {
        match statement {
            Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Rollback {
                savepoint: Some(_), ..
            } => return Applied::Bookkeeping,
            other => apply_one(catalog, default_db, other, &mut entries),
        }
    }
    Applied::Ddl { entries }
}

/// The tables a `TRUNCATE [TABLE]` statement (run with default database `default_db`) empties;
/// empty for any other statement. It changes no schema and logs no rows, so a sync task must
/// see it here to empty its target tables.
pub fn truncated_tables(default_db: Option<&str>, sql: &str) -> Vec<ObjectName> {
    let first = sql.split_whitespace().next().unwrap_or_default();
    if !first.eq_ignore_ascii_case("TRUNCATE") {
        return Vec::new();
    }
    let Ok(statements) = Parser::parse_sql(&MySqlDialect {}, sql) else {
        return Vec::new();
    };
    statements
        .iter()
        .filter_map(|s| match s {
            Statement::Truncate(t) if t.partitions.is_none() => Some(&t.table_names),
            _ => None,
        })
        .flatten()
        .filter_map(|t| object_name(&t.name, default_db))
        .collect()
}

/// Statements about transactions that `sqlparser` does not know (MySQL's XA).
fn is_bookkeeping_text(sql: &str) -> bool {
    let first = sql.split_whitespace().next().unwrap_or_default();
    first.eq_ignore_ascii_case("XA")
}

/// Whether a statement that did not parse may change tables: its first words are
/// ALTER/CREATE/DROP/RENAME/TRUNCATE with TABLE or DATABASE/SCHEMA soon after.
fn changes_tables(sql: &str) -> bool {
    let words: Vec<String> = sql
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .take(5)
        .map(str::to_ascii_uppercase)
        .collect();
    let verb = words.first().map(String::as_str).unwrap_or_default();
    ["ALTER", "CREATE", "DROP", "RENAME"].contains(&verb)
        && words
            .iter()
            .skip(1)
            .any(|w| w == "TABLE" || w == "DATABASE" || w == "SCHEMA")
}

fn apply_one(
    catalog: &mut SchemaCatalog,
    default_db: Option<&str>,
    statement: &Statement,
    entries: &mut Vec<SchemaEntry>,
) {
    let mut set = |catalog: &mut SchemaCatalog, name: ObjectName, def: Option<TableDef>| {
        let entry = SchemaEntry::Table { name, def };
        catalog.apply(&entry);
        entries.push(entry);
    };
    match statement {
        Statement::CreateTable(create) => {
            if create.temporary {
                return; // not logged in ROW format, and not the base table
            }
            let Some(name) = object_name(&create.name, default_db) else {
                return;
            };
            if create.if_not_exists && catalog.get(&name).is_some() {
                return;
            }
            let def = match &create.like {
                Some(CreateTableLikeKind::Plain(l) | CreateTableLikeKind::Parenthesized(l)) => {
                    object_name(&l.name, default_db).and_then(|src| catalog.get(&src).cloned())
                }
                // CREATE TABLE … SELECT adds the query's columns, which only the server knows:
                // the table's own table maps (FULL metadata) name them.
                None if create.query.is_some() => None,
                None => Some(TableDef {
                    collation: table_collation(&create.table_options),
                    ..table_def(&create.columns, &create.constraints)
                }),
            };
            set(catalog, name, def);
        }
        Statement::AlterTable(alter) => {
            let Some(mut name) = object_name(&alter.name, default_db) else {
                return;
            };
            let Some(mut def) = catalog.get(&name).cloned() else {
                return; // a table the history does not know: its own table maps must name it
            };
            let mut renamed_to = None;
            for op in &alter.operations {
                if let Some(to) = alter_table(&mut def, op, default_db) {
                    renamed_to = Some(to);
                }
            }
            if let Some(to) = renamed_to {
                set(catalog, name, None);
                name = to;
            }
            set(catalog, name, Some(def));
        }
        Statement::RenameTable(renames) => {
            for r in renames {
                let (Some(from), Some(to)) = (
                    object_name(&r.old_name, default_db),
                    object_name(&r.new_name, default_db),
                ) else {
                    continue;
                };
                if let Some(def) = catalog.get(&from).cloned() {
                    set(catalog, from, None);
                    set(catalog, to, Some(def));
                }
            }
        }
        Statement::Drop {
            object_type: ObjectType::Table,
            names,
            temporary: false,
            ..
        } => {
            for n in names {
                if let Some(name) = object_name(n, default_db)
                    && catalog.get(&name).is_some()
                {
                    set(catalog, name, None);
                }
            }
        }
        Statement::Drop {
            object_type: ObjectType::Database | ObjectType::Schema,
            names,
            ..
        } => {
            for n in names {
                let Some(db) = last_part(n) else { continue };
                for name in catalog.tables_in(&db) {
                    set(catalog, name, None);
                }
            }
        }
        _ => {}
    }
}

/// Applies one `ALTER TABLE` operation; returns the new name of a renamed table.
fn alter_table(
    def: &mut TableDef,
    op: &AlterTableOperation,
    default_db: Option<&str>,
) -> Option<ObjectName> {
    match op {
        AlterTableOperation::AddColumn {
            column_def,
            column_position,
            ..
        } => {
            let (column, key) = column_def_of(column_def);
            if key {
                def.primary_key = vec![column.name.clone()];
            }
            if let Some(i) = def.column_index(&column.name) {
                def.columns.remove(i);
            }
            place(def, column, column_position.as_ref(), None);
        }
        AlterTableOperation::DropColumn { column_names, .. } => {
            for c in column_names {
                if let Some(i) = def.column_index(&c.value) {
                    def.columns.remove(i);
                }
                def.primary_key
                    .retain(|k| !k.eq_ignore_ascii_case(&c.value));
            }
        }
        AlterTableOperation::ModifyColumn {
            col_name,
            data_type,
            options,
            column_position,
        } => replace_column(
            def,
            &col_name.value,
            &col_name.value,
            data_type,
            options,
            column_position.as_ref(),
        ),
        AlterTableOperation::ChangeColumn {
            old_name,
            new_name,
            data_type,
            options,
            column_position,
        } => replace_column(
            def,
            &old_name.value,
            &new_name.value,
            data_type,
            options,
            column_position.as_ref(),
        ),
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => rename_column(def, &old_column_name.value, &new_column_name.value),
        AlterTableOperation::AddConstraint {
            constraint: TableConstraint::PrimaryKey(pk),
            ..
        } => {
            def.primary_key = pk
                .columns
                .iter()
                .filter_map(|c| expr_column(&c.column.expr))
                .collect();
            for k in &def.primary_key {
                if let Some(i) = def.column_index(k) {
                    def.columns[i].nullable = false;
                }
            }
        }
        AlterTableOperation::DropPrimaryKey { .. } => def.primary_key.clear(),
        AlterTableOperation::RenameTable { table_name } => {
            let (RenameTableNameKind::As(n) | RenameTableNameKind::To(n)) = table_name;
            return object_name(n, default_db);
        }
        _ => {}
    }
    None
}

fn replace_column(
    def: &mut TableDef,
    old: &str,
    new: &str,
    data_type: &DataType,
    options: &[ColumnOption],
    position: Option<&MySQLColumnPosition>,
) {
    let Some(i) = def.column_index(old) else {
        return;
    };
    let (column, key) = column_of(new, data_type, options.iter());
    rename_column(def, old, new);
    if key {
        def.primary_key = vec![column.name.clone()];
    }
    def.columns.remove(i);
    place(def, column, position, Some(i));
}

fn rename_column(def: &mut TableDef, old: &str, new: &str) {
    if let Some(i) = def.column_index(old) {
        def.columns[i].name = new.to_owned();
    }
    for k in &mut def.primary_key {
        if k.eq_ignore_ascii_case(old) {
            *k = new.to_owned();
        }
    }
}

/// Inserts `column` at its MySQL position, else at `default_at`, else last.
fn place(
    def: &mut TableDef,
    column: ColumnDef,
    position: Option<&MySQLColumnPosition>,
    default_at: Option<usize>,
) {
    let at = match position {
        Some(MySQLColumnPosition::First) => 0,
        Some(MySQLColumnPosition::After(after)) => def
            .column_index(&after.value)
            .map_or(def.columns.len(), |i| i + 1),
        None => default_at.unwrap_or(def.columns.len()),
    };
    def.columns.insert(at.min(def.columns.len()), column);
}

/// The default collation a `CREATE TABLE`'s options name (`COLLATE=…`, `DEFAULT COLLATE …`).
fn table_collation(options: &ast::CreateTableOptions) -> Option<String> {
    let (ast::CreateTableOptions::Plain(list)
    | ast::CreateTableOptions::With(list)
    | ast::CreateTableOptions::Options(list)) = options
    else {
        return None;
    };
    list.iter().find_map(|o| match o {
        ast::SqlOption::KeyValue { key, value }
            if key.value.to_ascii_uppercase().contains("COLLATE") =>
        {
            Some(value.to_string().trim_matches(['\'', '"', '`']).to_owned())
        }
        _ => None,
    })
}

fn table_def(columns: &[ast::ColumnDef], constraints: &[TableConstraint]) -> TableDef {
    let mut primary_key = Vec::new();
    let columns = columns
        .iter()
        .map(|c| {
            let (column, key) = column_def_of(c);
            if key {
                primary_key = vec![column.name.clone()];
            }
            column
        })
        .collect();
    let mut def = TableDef {
        columns,
        primary_key,
        collation: None,
    };
    for c in constraints {
        if let TableConstraint::PrimaryKey(pk) = c {
            def.primary_key = pk
                .columns
                .iter()
                .filter_map(|c| expr_column(&c.column.expr))
                .collect();
        }
    }
    for k in def.primary_key.clone() {
        if let Some(i) = def.column_index(&k) {
            def.columns[i].nullable = false;
        }
    }
    def
}

fn column_def_of(c: &ast::ColumnDef) -> (ColumnDef, bool) {
    column_of(
        &c.name.value,
        &c.data_type,
        c.options.iter().map(|o| &o.option),
    )
}

/// A column and whether it is declared `PRIMARY KEY` inline.
fn column_of<'a>(
    name: &str,
    data_type: &DataType,
    options: impl Iterator<Item = &'a ColumnOption>,
) -> (ColumnDef, bool) {
    let mut nullable = true;
    let mut key = false;
    let mut charset = None;
    let mut collation = None;
    for o in options {
        match o {
            ColumnOption::CharacterSet(c) => charset = last_part(c),
            ColumnOption::Collation(c) => collation = last_part(c),
            ColumnOption::NotNull => nullable = false,
            ColumnOption::PrimaryKey(_) => {
                key = true;
                nullable = false;
            }
            _ => {}
        }
    }
    (
        ColumnDef {
            name: name.to_owned(),
            column_type: type_text(data_type),
            nullable,
            charset,
            members: members(data_type),
            collation,
        },
        key,
    )
}

/// The type as text: lower case, except the members of ENUM and SET, which keep theirs.
fn type_text(data_type: &DataType) -> String {
    let quoted = |m: &[String]| {
        m.iter()
            .map(|v| format!("'{}'", v.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",")
    };
    match data_type {
        DataType::Enum(..) => format!("enum({})", quoted(&members(data_type))),
        DataType::Set(m) => format!("set({})", quoted(m)),
        other => other.to_string().to_ascii_lowercase(),
    }
}

fn members(data_type: &DataType) -> Vec<String> {
    match data_type {
        DataType::Enum(m, _) => m
            .iter()
            .map(|m| match m {
                EnumMember::Name(n) | EnumMember::NamedValue(n, _) => n.clone(),
            })
            .collect(),
        DataType::Set(m) => m.clone(),
        _ => Vec::new(),
    }
}

/// The members of an ENUM or SET column type as the catalog shows it (`enum('a','b')`).
pub fn members_of_column_type(column_type: &str) -> Vec<String> {
    let lower = column_type.trim_start().to_ascii_lowercase();
    if !(lower.starts_with("enum") || lower.starts_with("set")) {
        return Vec::new();
    }
    Parser::new(&MySqlDialect {})
        .try_with_sql(column_type)
        .and_then(|mut p| p.parse_data_type())
        .map(|t| members(&t))
        .unwrap_or_default()
}

/// The column a key part names (`id`, or `name(10)` for a prefix).
fn expr_column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        Expr::Function(f) => last_part(&f.name),
        _ => None,
    }
}

pub(crate) fn last_part(name: &ast::ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.clone())
}

pub(crate) fn object_name(name: &ast::ObjectName, default_db: Option<&str>) -> Option<ObjectName> {
    let parts: Vec<&str> = name
        .0
        .iter()
        .map(|p| p.as_ident().map(|i| i.value.as_str()))
        .collect::<Option<_>>()?;
    match parts.as_slice() {
        [table] => Some(ObjectName {
            database: default_db?.to_owned(),
            table: (*table).to_owned(),
        }),
        [database, table] => Some(ObjectName {
            database: (*database).to_owned(),
            table: (*table).to_owned(),
        }),
        _ => None,
    }
}

/// The schemas the connection's user can see that may hold user tables (not the system ones),
/// in name order.
pub(crate) async fn user_schemas(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<String>, mysql_async::Error> {
    use mysql_async::prelude::Queryable;
    // Option: a NULL in a non-Option column panics inside mysql_async.
    let schemas: Vec<Option<String>> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
        .await?;
    Ok(schemas
        .into_iter()
        .flatten()
        .filter(|name| {
            !ferry_domain::selection::SYSTEM_SCHEMAS
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name))
        })
        .collect())
}

/// Reads every base table the connection's user can see from the source's catalog, one schema
/// at a time (a short query each, rather than one scan of the whole catalog).
pub async fn read_catalog(
    conn: &mut mysql_async::Conn,
) -> Result<SchemaCatalog, mysql_async::Error> {
    use mysql_async::prelude::Queryable;
    let mut catalog = SchemaCatalog::new();
    for schema in user_schemas(conn).await? {
        // Option everywhere: a NULL in a non-Option column panics inside mysql_async.
        type ColumnRow = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let columns: Vec<ColumnRow> = conn
            .exec(
                "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE, c.CHARACTER_SET_NAME, \
                        c.COLLATION_NAME, t.TABLE_COLLATION \
                 FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
                   ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
                 WHERE c.TABLE_SCHEMA = ? AND t.TABLE_TYPE = 'BASE TABLE' \
                 ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
                (&schema,),
            )
            .await?;
        for (table, column, column_type, nullable, charset, collation, table_collation) in columns {
            let (Some(table), Some(column), Some(column_type)) = (table, column, column_type)
            else {
                continue;
            };
            let name = ObjectName {
                database: schema.clone(),
                table,
            };
            let mut def = catalog.remove(&name).unwrap_or(TableDef {
                columns: Vec::new(),
                primary_key: Vec::new(),
                collation: table_collation,
            });
            def.columns.push(ColumnDef {
                name: column,
                members: members_of_column_type(&column_type),
                column_type,
                nullable: nullable.as_deref() != Some("NO"),
                charset,
                collation,
            });
            catalog.insert(name, def);
        }
        let keys: Vec<(Option<String>, Option<String>)> = conn
            .exec(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX",
                (&schema,),
            )
            .await?;
        for (table, column) in keys {
            let (Some(table), Some(column)) = (table, column) else {
                continue;
            };
            let name = ObjectName {
                database: schema.clone(),
                table,
            };
            if let Some(mut def) = catalog.remove(&name) {
                def.primary_key.push(column);
                catalog.insert(name, def);
            }
        }
        mark_mariadb_json(conn, &schema, &mut catalog).await;
    }
    Ok(catalog)
}

/// MariaDB's JSON is an alias of LONGTEXT with a `json_valid` check, and its catalog says
/// `longtext`: such columns are `json` in the history (as a DDL statement names them), so schema
/// sync creates them as JSON. MySQL's CHECK_CONSTRAINTS has no TABLE_NAME (its JSON columns say
/// `json` already): the query fails there and nothing changes.
async fn mark_mariadb_json(
    conn: &mut mysql_async::Conn,
    schema: &str,
    catalog: &mut SchemaCatalog,
) {
    use mysql_async::prelude::Queryable;
    // (table, constraint name = the column for a column's check, clause); Option: NULLs panic.
    type CheckRow = (Option<String>, Option<String>, Option<String>);
    let checks: Result<Vec<CheckRow>, _> = conn
        .exec(
            "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
             WHERE CONSTRAINT_SCHEMA = ?",
            (schema,),
        )
        .await;
    for (table, column, clause) in checks.unwrap_or_default() {
        let (Some(table), Some(column), Some(clause)) = (table, column, clause) else {
            continue;
        };
        if clause != format!("json_valid(`{column}`)") {
            continue;
        }
        let name = ObjectName {
            database: schema.to_owned(),
            table,
        };
        if let Some(mut def) = catalog.remove(&name) {
            for c in &mut def.columns {
                if c.name == column && c.column_type == "longtext" {
                    c.column_type = "json".into();
                }
            }
            catalog.insert(name, def);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(t: &str) -> ObjectName {
        ObjectName {
            database: "shop".into(),
            table: t.into(),
        }
    }

    fn run(catalog: &mut SchemaCatalog, sql: &str) -> Applied {
        apply_statement(catalog, Some("shop"), sql)
    }

    fn columns(catalog: &SchemaCatalog, t: &str) -> Vec<String> {
        catalog
            .get(&name(t))
            .map(|d| {
                d.columns
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.column_type))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn orders() -> SchemaCatalog {
        let mut c = SchemaCatalog::new();
        run(
            &mut c,
            "CREATE TABLE `orders` (\n  `id` bigint unsigned NOT NULL AUTO_INCREMENT,\n  `total` decimal(10,2) DEFAULT NULL,\n  `state` enum('New','Paid','it''s') NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        );
        c
    }

    #[test]
    fn create_table_reads_columns_types_members_and_key() {
        let c = orders();
        let d = c.get(&name("orders")).unwrap();
        assert_eq!(
            columns(&c, "orders"),
            [
                "id bigint unsigned",
                "total decimal(10,2)",
                "state enum('New','Paid','it''s')"
            ]
        );
        assert_eq!(d.primary_key, ["id"]);
        assert!(!d.columns[0].nullable && d.columns[1].nullable);
        assert_eq!(d.columns[2].members, ["New", "Paid", "it's"]);
    }

    #[test]
    fn alter_table_adds_drops_modifies_and_renames_columns_in_place() {
        let mut c = orders();
        run(
            &mut c,
            "ALTER TABLE orders ADD COLUMN note varchar(20) AFTER id, ADD created datetime(3) FIRST",
        );
        assert_eq!(
            columns(&c, "orders"),
            [
                "created datetime(3)",
                "id bigint unsigned",
                "note varchar(20)",
                "total decimal(10,2)",
                "state enum('New','Paid','it''s')"
            ]
        );
        run(
            &mut c,
            "alter table `shop`.`orders` drop column created, modify total decimal(12,4) not null",
        );
        assert_eq!(
            c.get(&name("orders")).unwrap().columns[2].column_type,
            "decimal(12,4)"
        );
        assert!(!c.get(&name("orders")).unwrap().columns[2].nullable);
        run(
            &mut c,
            "ALTER TABLE orders CHANGE COLUMN id order_id bigint NOT NULL, RENAME COLUMN note TO remark",
        );
        assert_eq!(
            columns(&c, "orders"),
            [
                "order_id bigint",
                "remark varchar(20)",
                "total decimal(12,4)",
                "state enum('New','Paid','it''s')"
            ]
        );
        assert_eq!(c.get(&name("orders")).unwrap().primary_key, ["order_id"]);
        run(
            &mut c,
            "ALTER TABLE orders DROP PRIMARY KEY, ADD PRIMARY KEY (remark, total)",
        );
        assert_eq!(
            c.get(&name("orders")).unwrap().primary_key,
            ["remark", "total"]
        );
    }

    #[test]
    fn renames_and_drops_move_and_remove_tables() {
        let mut c = orders();
        let Applied::Ddl { entries } = run(
            &mut c,
            "RENAME TABLE orders TO orders_2024, shop.orders_2024 TO archive.orders",
        ) else {
            panic!("a rename is DDL");
        };
        assert_eq!(entries.len(), 4);
        assert!(c.get(&name("orders")).is_none());
        let archived = ObjectName {
            database: "archive".into(),
            table: "orders".into(),
        };
        assert_eq!(c.get(&archived).unwrap().columns.len(), 3);
        run(&mut c, "CREATE TABLE orders LIKE archive.orders");
        run(&mut c, "ALTER TABLE orders RENAME TO orders_new");
        assert_eq!(columns(&c, "orders_new").len(), 3);
        assert!(c.get(&name("orders")).is_none());
        run(
            &mut c,
            "DROP TABLE IF EXISTS `orders_new` /* generated by server */",
        );
        assert!(c.get(&name("orders_new")).is_none());
        run(&mut c, "DROP DATABASE archive");
        assert!(c.is_empty());
    }

    #[test]
    fn replaying_a_statement_the_snapshot_already_shows_is_harmless() {
        let mut c = orders();
        run(&mut c, "ALTER TABLE orders ADD COLUMN note text");
        run(&mut c, "ALTER TABLE orders ADD COLUMN note text");
        run(&mut c, "ALTER TABLE orders DROP COLUMN nothing_here");
        run(&mut c, "CREATE TABLE IF NOT EXISTS orders (x int)");
        assert_eq!(columns(&c, "orders").len(), 4);
    }

    #[test]
    fn savepoints_are_bookkeeping_and_other_statements_change_nothing() {
        let mut c = orders();
        for sql in [
            "SAVEPOINT `sp1`",
            "ROLLBACK TO SAVEPOINT sp1",
            "RELEASE SAVEPOINT sp1",
            "XA START X'31',X'',1",
        ] {
            assert_eq!(run(&mut c, sql), Applied::Bookkeeping, "{sql}");
        }
        for sql in [
            "CREATE USER 'x'@'%' IDENTIFIED BY 'y'",
            "TRUNCATE TABLE orders",
            "CREATE INDEX i ON orders (total)",
        ] {
            assert_eq!(
                run(&mut c, sql),
                Applied::Ddl {
                    entries: Vec::new()
                },
                "{sql}"
            );
        }
        assert!(c.stale().is_none());
    }

    #[test]
    fn a_table_statement_that_does_not_parse_marks_the_history_stale() {
        let mut c = orders();
        let Applied::Ddl { entries } = run(&mut c, "ALTER TABLE orders FROBNICATE COLUMN x") else {
            panic!("still DDL");
        };
        assert!(matches!(entries.as_slice(), [SchemaEntry::Unparsed { .. }]));
        assert!(c.stale().unwrap().contains("FROBNICATE"));
    }

    #[test]
    fn catalog_column_types_give_their_members() {
        assert_eq!(
            members_of_column_type("enum('a','B c','it''s')"),
            ["a", "B c", "it's"]
        );
        assert_eq!(members_of_column_type("set('x','y')"), ["x", "y"]);
        assert!(members_of_column_type("int(11)").is_empty());
    }

    #[test]
    fn truncate_names_its_tables_and_nothing_else_does() {
        let name = |d: &str, t: &str| ObjectName {
            database: d.into(),
            table: t.into(),
        };
        assert_eq!(
            truncated_tables(Some("shop"), "TRUNCATE TABLE orders"),
            [name("shop", "orders")]
        );
        assert_eq!(
            truncated_tables(None, "truncate `other`.`t 1`"),
            [name("other", "t 1")]
        );
        assert!(
            truncated_tables(None, "TRUNCATE TABLE orders").is_empty(),
            "no database"
        );
        assert!(truncated_tables(Some("shop"), "DROP TABLE orders").is_empty());
        assert!(truncated_tables(Some("shop"), "TRUNCATE garbage (").is_empty());
    }
}

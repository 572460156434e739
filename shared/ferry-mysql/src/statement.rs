//! What a statement of the binlog is about, for deciding whether a task may deliver it.
//!
//! A binlog carries every statement the server logs, not only DDL: `CREATE USER … IDENTIFIED
//! BY '…'`, `GRANT`, `SET PASSWORD`, routines and events too. Delivering a statement because
//! the session's default database is selected would put account passwords into the topic. So a
//! statement is delivered only when the parser attributes it to objects: the tables (or views)
//! it creates, changes, renames, truncates or drops, the table of an index or trigger, or a
//! database it creates, changes or drops. Everything else is [`Subject::Other`] and never
//! delivered.
//!
//! Statements `sqlparser` cannot parse (MariaDB's own syntax, `CREATE ALGORITHM=… VIEW`) are
//! read by their leading keywords; only the table, view, index and database forms are
//! recognised, so an unknown statement is never attributed to anything.

use ferry_domain::change::ObjectName;
use sqlparser::ast::{self, ObjectType, SchemaName, Statement};
use sqlparser::dialect::MySqlDialect;
use sqlparser::parser::Parser;

use crate::ddl::{last_part, object_name};

/// The objects a statement is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Tables or views it creates, changes, renames, truncates or drops (both names of a
    /// rename), or the table of an index or trigger.
    Tables(Vec<ObjectName>),
    /// A database it creates, changes or drops.
    Database(String),
    /// Anything else: accounts, privileges, routines, events, servers, plugins, tablespaces,
    /// maintenance statements. Never delivered.
    Other,
}

impl Subject {
    /// Whether a selection that says `table(db, t)` and `database(db)` includes the subject.
    pub fn selected(
        &self,
        table: impl Fn(&str, &str) -> bool,
        database: impl Fn(&str) -> bool,
    ) -> bool {
        match self {
            Self::Tables(names) => names.iter().any(|n| table(&n.database, &n.table)),
            Self::Database(db) => database(db),
            Self::Other => false,
        }
    }
}

/// What `sql`, run with default database `default_db`, is about.
pub fn subject(default_db: Option<&str>, sql: &str) -> Subject {
    // sqlparser 0.63 reads a doubled backtick inside a quoted name (`a``b`) wrongly: such
    // statements are read by their keywords, which handle it.
    if sql.contains("``") {
        return by_keywords(default_db, sql);
    }
    match Parser::parse_sql(&MySqlDialect {}, sql) {
        Ok(statements) => {
            let mut tables = Vec::new();
            let mut database = None;
            for s in &statements {
                match parsed(s, default_db) {
                    Subject::Tables(t) => tables.extend(t),
                    Subject::Database(d) => database = Some(d),
                    Subject::Other => {}
                }
            }
            match (tables.is_empty(), database) {
                (false, _) => Subject::Tables(tables),
                (true, Some(d)) => Subject::Database(d),
                (true, None) => Subject::Other,
            }
        }
        Err(_) => by_keywords(default_db, sql),
    }
}

fn names<'a>(
    names: impl IntoIterator<Item = &'a ast::ObjectName>,
    default_db: Option<&str>,
) -> Subject {
    let tables: Vec<ObjectName> = names
        .into_iter()
        .filter_map(|n| object_name(n, default_db))
        .collect();
    if tables.is_empty() {
        Subject::Other
    } else {
        Subject::Tables(tables)
    }
}

fn parsed(s: &Statement, default_db: Option<&str>) -> Subject {
    match s {
        Statement::CreateTable(c) => names([&c.name], default_db),
        Statement::AlterTable(a) => names([&a.name], default_db),
        Statement::CreateView(v) => names([&v.name], default_db),
        Statement::AlterView { name, .. } => names([name], default_db),
        Statement::CreateIndex(i) => names([&i.table_name], default_db),
        Statement::RenameTable(renames) => names(
            renames.iter().flat_map(|r| [&r.old_name, &r.new_name]),
            default_db,
        ),
        Statement::Truncate(t) => names(t.table_names.iter().map(|t| &t.name), default_db),
        Statement::CreateTrigger(t) => names([&t.table_name], default_db),
        Statement::DropTrigger(t) => names(t.table_name.as_ref(), default_db),
        Statement::Drop {
            object_type: ObjectType::Table | ObjectType::View,
            names: n,
            ..
        } => names(n, default_db),
        Statement::Drop {
            object_type: ObjectType::Index,
            table: Some(t),
            ..
        } => names([t], default_db),
        Statement::Drop {
            object_type: ObjectType::Database | ObjectType::Schema,
            names: n,
            ..
        } => n
            .first()
            .and_then(last_part)
            .map_or(Subject::Other, Subject::Database),
        Statement::CreateDatabase { db_name, .. } => {
            last_part(db_name).map_or(Subject::Other, Subject::Database)
        }
        Statement::CreateSchema {
            schema_name: SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _),
            ..
        } => last_part(n).map_or(Subject::Other, Subject::Database),
        Statement::AlterSchema(a) => last_part(&a.name).map_or(Subject::Other, Subject::Database),
        _ => Subject::Other,
    }
}

/// Splits the text of a statement into words and quoted names, dropping comments.
fn tokens(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<String>| {
        if !word.is_empty() {
            out.push(std::mem::take(word));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                // A quoted name, kept with its quotes so it is never read as a keyword.
                word.push('`');
                while let Some(q) = chars.next() {
                    word.push(q);
                    if q == '`' {
                        // A doubled backtick is one inside the name: kept doubled.
                        if chars.peek() == Some(&'`') {
                            chars.next();
                            word.push('`');
                            continue;
                        }
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                flush(&mut word, &mut out);
                chars.next();
                let mut last = ' ';
                for n in chars.by_ref() {
                    if last == '*' && n == '/' {
                        break;
                    }
                    last = n;
                }
            }
            '.' => word.push('.'),
            c if c.is_alphanumeric() || c == '_' || c == '$' => word.push(c),
            _ => {
                flush(&mut word, &mut out);
                if out.len() > 40 {
                    break;
                }
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A possibly qualified, possibly quoted name (`db`.`t`, db.t, t) as its parts.
fn name_parts(token: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut part = String::new();
    let mut quoted = false;
    let mut chars = token.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' if quoted && chars.peek() == Some(&'`') => {
                chars.next();
                part.push('`');
            }
            '`' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut part)),
            c => part.push(c),
        }
    }
    parts.push(part);
    parts
}

fn table_of(token: &str, default_db: Option<&str>) -> Option<ObjectName> {
    match name_parts(token).as_slice() {
        [t] if !t.is_empty() => Some(ObjectName {
            database: default_db?.to_owned(),
            table: t.clone(),
        }),
        [d, t] if !d.is_empty() && !t.is_empty() => Some(ObjectName {
            database: d.clone(),
            table: t.clone(),
        }),
        _ => None,
    }
}

fn keyword(token: &str, k: &str) -> bool {
    token.eq_ignore_ascii_case(k)
}

/// The subject of a statement the parser could not read, from its leading keywords.
fn by_keywords(default_db: Option<&str>, sql: &str) -> Subject {
    let t = tokens(sql);
    let Some(verb) = t.first() else {
        return Subject::Other;
    };
    if !["CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE"]
        .iter()
        .any(|k| keyword(verb, k))
    {
        return Subject::Other;
    }
    // The object keyword comes within the first words (`CREATE OR REPLACE ALGORITHM=MERGE
    // DEFINER=… SQL SECURITY DEFINER VIEW v`); a quoted name is never a keyword.
    let Some((at, kind)) = t.iter().enumerate().take(14).skip(1).find_map(|(i, w)| {
        [
            "TABLE", "VIEW", "INDEX", "DATABASE", "SCHEMA", "USER", "ROLE", "TRIGGER",
        ]
        .iter()
        .find(|k| keyword(w, k))
        .map(|k| (i, *k))
    }) else {
        // `TRUNCATE t` without TABLE.
        return match (keyword(verb, "TRUNCATE"), t.get(1)) {
            (true, Some(name)) => {
                table_of(name, default_db).map_or(Subject::Other, |n| Subject::Tables(vec![n]))
            }
            _ => Subject::Other,
        };
    };
    // The name after `IF [NOT] EXISTS`.
    let mut rest = t[at + 1..].iter().peekable();
    if rest.peek().is_some_and(|w| keyword(w, "IF")) {
        rest.next();
        if rest.peek().is_some_and(|w| keyword(w, "NOT")) {
            rest.next();
        }
        rest.next();
    }
    match kind {
        "TABLE" | "VIEW" => {
            let tables: Vec<ObjectName> = rest
                .take_while(|w| !keyword(w, "AS") && !keyword(w, "LIKE"))
                .take(1)
                .filter_map(|w| table_of(w, default_db))
                .collect();
            if tables.is_empty() {
                Subject::Other
            } else {
                Subject::Tables(tables)
            }
        }
        "INDEX" | "TRIGGER" => {
            let on: Vec<&String> = rest.collect();
            on.iter()
                .position(|w| keyword(w, "ON"))
                .and_then(|i| on.get(i + 1))
                .and_then(|w| table_of(w, default_db))
                .map_or(Subject::Other, |n| Subject::Tables(vec![n]))
        }
        "DATABASE" | "SCHEMA" => rest
            .next()
            .map(|w| name_parts(w).concat())
            .filter(|d| !d.is_empty())
            .map_or(Subject::Other, Subject::Database),
        _ => Subject::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(names: &[(&str, &str)]) -> Subject {
        Subject::Tables(
            names
                .iter()
                .map(|(d, t)| ObjectName {
                    database: (*d).into(),
                    table: (*t).into(),
                })
                .collect(),
        )
    }

    #[test]
    fn account_and_privilege_statements_are_about_nothing() {
        for sql in [
            "CREATE USER 'app'@'%' IDENTIFIED BY 's3cret'",
            "CREATE USER IF NOT EXISTS app IDENTIFIED BY PASSWORD '*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29'",
            "ALTER USER 'app'@'%' IDENTIFIED BY 'n3w'",
            "DROP USER 'app'@'%'",
            "RENAME USER 'a'@'%' TO 'b'@'%'",
            "GRANT SELECT ON shop.* TO 'app'@'%' IDENTIFIED BY 's3cret'",
            "GRANT ALL PRIVILEGES ON shop.orders TO app",
            "REVOKE ALL ON shop.* FROM app",
            "SET PASSWORD FOR 'app'@'%' = PASSWORD('s3cret')",
            "SET PASSWORD = 's3cret'",
            "CREATE ROLE analyst",
            "DROP ROLE analyst",
            "GRANT analyst TO app",
            "SET DEFAULT ROLE analyst FOR app",
            "CREATE DEFINER=`root`@`localhost` PROCEDURE p() BEGIN SELECT 1; END",
            "CREATE FUNCTION f() RETURNS INT RETURN 1",
            "DROP PROCEDURE IF EXISTS p",
            "CREATE EVENT e ON SCHEDULE EVERY 1 DAY DO DELETE FROM shop.orders",
            "CREATE SERVER s FOREIGN DATA WRAPPER mysql OPTIONS (USER 'u', PASSWORD 's3cret')",
            "INSTALL PLUGIN x SONAME 'x.so'",
            "ANALYZE TABLE shop.orders",
            "OPTIMIZE TABLE shop.orders",
            "FLUSH PRIVILEGES",
            "",
            "/* just a comment */",
        ] {
            assert_eq!(subject(Some("shop"), sql), Subject::Other, "{sql}");
        }
    }

    #[test]
    fn table_statements_name_their_tables() {
        let cases: &[(&str, Subject)] = &[
            (
                "CREATE TABLE orders (id INT PRIMARY KEY)",
                tables(&[("shop", "orders")]),
            ),
            (
                "create table if not exists `crm`.`people` (id int)",
                tables(&[("crm", "people")]),
            ),
            (
                "ALTER TABLE orders ADD COLUMN note TEXT",
                tables(&[("shop", "orders")]),
            ),
            (
                "RENAME TABLE orders TO old_orders, crm.a TO crm.b",
                tables(&[
                    ("shop", "orders"),
                    ("shop", "old_orders"),
                    ("crm", "a"),
                    ("crm", "b"),
                ]),
            ),
            (
                "DROP TABLE IF EXISTS orders, crm.people",
                tables(&[("shop", "orders"), ("crm", "people")]),
            ),
            ("TRUNCATE TABLE orders", tables(&[("shop", "orders")])),
            ("TRUNCATE orders", tables(&[("shop", "orders")])),
            (
                "CREATE INDEX i ON orders (total)",
                tables(&[("shop", "orders")]),
            ),
            ("DROP INDEX i ON crm.people", tables(&[("crm", "people")])),
            (
                "CREATE VIEW big AS SELECT * FROM orders",
                tables(&[("shop", "big")]),
            ),
            (
                "CREATE OR REPLACE ALGORITHM=UNDEFINED DEFINER=`root`@`localhost` SQL SECURITY DEFINER VIEW `v` AS select 1 AS `1`",
                tables(&[("shop", "v")]),
            ),
            (
                "CREATE DEFINER=`root`@`localhost` TRIGGER t BEFORE INSERT ON orders FOR EACH ROW SET NEW.total = 0",
                tables(&[("shop", "orders")]),
            ),
            (
                "ALTER TABLE `we``ird`.`t` ENGINE=InnoDB",
                tables(&[("we`ird", "t")]),
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(&subject(Some("shop"), sql), want, "{sql}");
        }
    }

    #[test]
    fn database_statements_name_their_database() {
        for (sql, db) in [
            ("CREATE DATABASE crm", "crm"),
            ("CREATE SCHEMA IF NOT EXISTS `crm`", "crm"),
            ("DROP DATABASE crm", "crm"),
            ("ALTER DATABASE crm CHARACTER SET utf8mb4", "crm"),
        ] {
            assert_eq!(
                subject(Some("shop"), sql),
                Subject::Database(db.into()),
                "{sql}"
            );
        }
    }

    #[test]
    fn an_unqualified_table_without_a_default_database_is_about_nothing() {
        assert_eq!(
            subject(None, "ALTER TABLE orders ADD x INT"),
            Subject::Other
        );
        assert_eq!(
            subject(None, "ALTER TABLE shop.orders ADD x INT"),
            tables(&[("shop", "orders")])
        );
    }

    #[test]
    fn selection_decides_by_the_subject_not_the_session_database() {
        let only_orders = |d: &str, t: &str| d == "shop" && t == "orders";
        let shop = |d: &str| d == "shop";
        assert!(
            subject(Some("other"), "ALTER TABLE shop.orders ADD x INT").selected(only_orders, shop)
        );
        assert!(
            !subject(Some("shop"), "ALTER TABLE secrets ADD x INT").selected(only_orders, shop)
        );
        assert!(
            !subject(Some("shop"), "CREATE USER u IDENTIFIED BY 'p'").selected(only_orders, shop)
        );
        assert!(subject(Some("shop"), "DROP DATABASE shop").selected(only_orders, shop));
    }
}

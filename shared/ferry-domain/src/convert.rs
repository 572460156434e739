//! Type conversion for schema sync: a MySQL/MariaDB column type (as `COLUMN_TYPE` in
//! `information_schema` or a DDL statement spells it) to the type of the target column, on
//! PostgreSQL or MySQL/MariaDB, with what the conversion loses, if anything.
//!
//! The table in `docs/type-conversion.md` is this module's documentation; a unit test reads it
//! and checks every row against [`convert`], so the two cannot drift apart.
//!
//! Choices (PostgreSQL):
//! - integers widen where the signed PostgreSQL type cannot hold the unsigned range
//!   (`int unsigned` → `bigint`, `bigint unsigned` → `numeric(20,0)`): exact, never overflowing;
//! - `time` becomes `interval`, the one PostgreSQL type that holds MySQL's −838:59:59 to
//!   838:59:59;
//! - `datetime` becomes `timestamp` (no zone, as in MySQL) and `timestamp` `timestamptz` (MySQL
//!   stores it in UTC);
//! - what PostgreSQL has no type for (ENUM, SET, spatial types) keeps its values exactly in a
//!   general type, and the row says what is not kept (the member list, the spatial type).

use std::fmt;

/// A database engine a column is created on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetEngine {
    Postgresql,
    Mysql,
    Mariadb,
}

/// The target column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub sql_type: String,
    /// What the conversion does not keep; `None` when it is exact.
    pub lossy: Option<&'static str>,
}

/// A column type Ferry cannot create on the target: a precheck failure, never a runtime
/// surprise.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column type `{column_type}` cannot be converted for {target}: {reason}")]
pub struct Unconvertible {
    pub column_type: String,
    pub target: String,
    pub reason: String,
    pub hint: String,
}

impl fmt::Display for TargetEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgresql => "PostgreSQL",
            Self::Mysql => "MySQL",
            Self::Mariadb => "MariaDB",
        })
    }
}

/// A column type taken apart: `decimal(10,2) unsigned zerofill` → `decimal`, `["10", "2"]`,
/// unsigned (ZEROFILL only pads the display: the value is the same).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ParsedType<'a> {
    base: String,
    args: Vec<&'a str>,
    unsigned: bool,
}

fn parse(column_type: &str) -> ParsedType<'_> {
    let t = column_type.trim();
    let (head, args, tail) = match (t.find('('), t.rfind(')')) {
        (Some(open), Some(close)) if close > open => {
            (&t[..open], Some(&t[open + 1..close]), &t[close + 1..])
        }
        _ => (t, None, ""),
    };
    let mut words = head.split_whitespace();
    let base = words.next().unwrap_or_default().to_ascii_lowercase();
    let rest: Vec<String> = words
        .chain(tail.split_whitespace())
        .map(str::to_ascii_lowercase)
        .collect();
    let args = match (base.as_str(), args) {
        // ENUM and SET list members, which may hold commas: kept whole.
        ("enum" | "set", Some(a)) => vec![a],
        (_, Some(a)) => a.split(',').map(str::trim).collect(),
        (_, None) => Vec::new(),
    };
    ParsedType {
        base,
        unsigned: rest.iter().any(|w| w == "unsigned"),
        args,
    }
}

fn exact(sql_type: impl Into<String>) -> Converted {
    Converted {
        sql_type: sql_type.into(),
        lossy: None,
    }
}

fn lossy(sql_type: impl Into<String>, what: &'static str) -> Converted {
    Converted {
        sql_type: sql_type.into(),
        lossy: Some(what),
    }
}

/// Converts `column_type` for a column on `target`.
pub fn convert(column_type: &str, target: TargetEngine) -> Result<Converted, Unconvertible> {
    let p = parse(column_type);
    let unknown = || Unconvertible {
        column_type: column_type.to_owned(),
        target: target.to_string(),
        reason: "Ferry does not know this type".into(),
        hint: "leave the column out of the task's selection (`columns`), or report the type".into(),
    };
    match target {
        TargetEngine::Postgresql => to_postgres(&p).ok_or_else(unknown),
        TargetEngine::Mysql | TargetEngine::Mariadb => {
            to_mysql(column_type, &p, target).ok_or_else(unknown)
        }
    }
}

/// The precision argument of a temporal type, as PostgreSQL spells it (`(3)`, or nothing).
fn fsp(p: &ParsedType<'_>) -> String {
    p.args
        .first()
        .filter(|a| !a.is_empty() && **a != "0")
        .map(|a| format!("({a})"))
        .unwrap_or_default()
}

fn to_postgres(p: &ParsedType<'_>) -> Option<Converted> {
    const UNSIGNED_DECIMAL: &str = "the unsigned constraint (negative values are not refused)";
    Some(match (p.base.as_str(), p.unsigned) {
        ("tinyint" | "bool" | "boolean", _) => exact("smallint"),
        ("smallint", false) => exact("smallint"),
        ("smallint" | "mediumint", true) | ("mediumint" | "int" | "integer", false) => {
            exact("integer")
        }
        ("int" | "integer", true) | ("bigint", false) => exact("bigint"),
        ("bigint", true) => exact("numeric(20,0)"),
        ("decimal" | "numeric" | "dec" | "fixed", unsigned) => {
            let precision = p.args.first().copied().unwrap_or("10");
            let scale = p.args.get(1).copied().unwrap_or("0");
            let t = format!("numeric({precision},{scale})");
            if unsigned {
                lossy(t, UNSIGNED_DECIMAL)
            } else {
                exact(t)
            }
        }
        ("float", _) => match p.args.first().and_then(|a| a.parse::<u32>().ok()) {
            Some(n) if n > 24 => exact("double precision"),
            _ => exact("real"),
        },
        ("double" | "real", _) => exact("double precision"),
        ("bit", _) => match p.args.first().copied().unwrap_or("1") {
            "1" => exact("boolean"),
            n => exact(format!("bit({n})")),
        },
        ("char", _) => exact(format!("char({})", p.args.first().copied().unwrap_or("1"))),
        ("varchar", _) => exact(format!("varchar({})", p.args.first().copied()?)),
        ("tinytext" | "text" | "mediumtext" | "longtext", _) => exact("text"),
        ("binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob", _) => {
            exact("bytea")
        }
        ("date", _) => lossy(
            "date",
            "zero dates (0000-00-00) and dates with a zero month or day, written as NULL",
        ),
        ("datetime", _) => lossy(
            format!("timestamp{} without time zone", fsp(p)),
            "zero dates, written as NULL",
        ),
        ("timestamp", _) => lossy(
            format!("timestamp{} with time zone", fsp(p)),
            "the zero timestamp, written as NULL",
        ),
        ("time", _) => exact(format!("interval{}", fsp(p))),
        ("year", _) => exact("smallint"),
        ("enum", _) => lossy("text", "the member list (values are kept as their names)"),
        ("set", _) => lossy(
            "text",
            "the member list (values are kept as comma-separated names)",
        ),
        ("json", _) => exact("jsonb"),
        (
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" | "geomcollection",
            _,
        ) => lossy(
            "bytea",
            "the spatial type: values are kept as MySQL's internal bytes (SRID + WKB)",
        ),
        ("inet4" | "inet6", _) => exact("inet"),
        ("uuid", _) => exact("uuid"),
        _ => return None,
    })
}

/// `column_type` in lower case, except inside quotes: ENUM and SET members keep their case
/// (`enum('Active')` is not `enum('active')`: the target would store and answer the other).
fn lower_outside_quotes(column_type: &str) -> String {
    let mut out = String::with_capacity(column_type.len());
    let mut quoted = false;
    for c in column_type.trim().chars() {
        if c == '\'' {
            quoted = !quoted;
        }
        out.push(if quoted { c } else { c.to_ascii_lowercase() });
    }
    out
}

fn to_mysql(column_type: &str, p: &ParsedType<'_>, target: TargetEngine) -> Option<Converted> {
    let same = || exact(lower_outside_quotes(column_type));
    let mariadb_only = |to: &str| match target {
        TargetEngine::Mariadb => same(),
        _ => exact(to),
    };
    Some(match p.base.as_str() {
        // MariaDB 10.7+ types MySQL does not have: their text forms.
        "inet6" => mariadb_only("varchar(39)"),
        "inet4" => mariadb_only("varchar(15)"),
        "uuid" => mariadb_only("char(36)"),
        // MariaDB's JSON is LONGTEXT checked with json_valid; MySQL's is binary JSON.
        "json" => exact("json"),
        "tinyint" | "bool" | "boolean" | "smallint" | "mediumint" | "int" | "integer"
        | "bigint" | "decimal" | "numeric" | "dec" | "fixed" | "float" | "double" | "real"
        | "bit" | "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext"
        | "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "date"
        | "datetime" | "timestamp" | "time" | "year" | "enum" | "set" | "geometry" | "point"
        | "linestring" | "polygon" | "multipoint" | "multilinestring" | "multipolygon"
        | "geometrycollection" | "geomcollection" => same(),
        _ => return None,
    })
}

/// `name` quoted as an identifier of `target` (PostgreSQL `"…"`, MySQL/MariaDB `` `…` ``).
pub fn quote(target: TargetEngine, name: &str) -> String {
    match target {
        TargetEngine::Postgresql => format!("\"{}\"", name.replace('"', "\"\"")),
        TargetEngine::Mysql | TargetEngine::Mariadb => format!("`{}`", name.replace('`', "``")),
    }
}

/// Whether a PostgreSQL column of this source type receives NULL for the values it cannot hold
/// (zero dates): such a column is created nullable.
fn zero_as_null(column_type: &str) -> bool {
    matches!(
        parse(column_type).base.as_str(),
        "date" | "datetime" | "timestamp"
    )
}

/// The statements that create `table` of `def` in `schema` on `target` (PostgreSQL: a schema
/// then the table; MySQL/MariaDB: the table, `schema` being its database), with only the
/// columns `keep` accepts (key columns always). Idempotent (`IF NOT EXISTS`).
pub fn create_table(
    target: TargetEngine,
    schema: &str,
    table: &str,
    def: &crate::schema::TableDef,
    keep: impl Fn(&str) -> bool,
) -> Result<Vec<String>, Unconvertible> {
    let q = |n: &str| quote(target, n);
    let mut lines = Vec::new();
    for c in &def.columns {
        let key = def
            .primary_key
            .iter()
            .any(|k| k.eq_ignore_ascii_case(&c.name));
        if !key && !keep(&c.name) {
            continue;
        }
        let t = convert(&c.column_type, target)?;
        let mut line = format!("{} {}", q(&c.name), t.sql_type);
        line.push_str(&text_options(target, c, def.collation.as_deref()));
        if !target_nullable(target, c, key) {
            line.push_str(" NOT NULL");
        }
        lines.push(line);
    }
    if !def.primary_key.is_empty() {
        let key: Vec<String> = def.primary_key.iter().map(|k| q(k)).collect();
        lines.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    let name = format!("{}.{}", q(schema), q(table));
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {name} (\n  {}\n)",
        lines.join(",\n  ")
    );
    Ok(match target {
        TargetEngine::Postgresql => {
            vec![format!("CREATE SCHEMA IF NOT EXISTS {}", q(schema)), create]
        }
        TargetEngine::Mysql | TargetEngine::Mariadb => vec![create],
    })
}

/// Whether column `c` (`key`: in the primary key) is nullable on the target: as on the source,
/// and on PostgreSQL also where a zero date is written as NULL.
pub fn target_nullable(target: TargetEngine, c: &crate::schema::ColumnDef, key: bool) -> bool {
    c.nullable || (target == TargetEngine::Postgresql && !key && zero_as_null(&c.column_type))
}

/// The collation Ferry gives text column `c` on a MySQL/MariaDB target (see [`text_options`]).
pub fn target_collation(
    target: TargetEngine,
    c: &crate::schema::ColumnDef,
    table_collation: Option<&str>,
) -> Option<String> {
    let options = text_options(target, c, table_collation);
    options
        .split_once(" COLLATE ")
        .map(|(_, co)| co.trim().to_owned())
}

/// ` CHARACTER SET cs COLLATE co` for a text column on a MySQL/MariaDB target (empty
/// otherwise): the column's charset, and its own collation or else the table's
/// (`table_collation`) when that is of the column's charset.
pub(crate) fn text_options(
    target: TargetEngine,
    c: &crate::schema::ColumnDef,
    table_collation: Option<&str>,
) -> String {
    let mut out = String::new();
    if target == TargetEngine::Postgresql || !is_text(&c.column_type) {
        return out;
    }
    let charset = c.charset.as_deref().filter(|n| plain_word(n));
    if let Some(cs) = charset {
        out.push_str(&format!(" CHARACTER SET {cs}"));
    }
    let collation = c
        .collation
        .as_deref()
        .filter(|n| plain_word(n))
        .or(table_collation.filter(|n| plain_word(n)))
        .map(|n| collation_on(target, n))
        .filter(|n| charset.is_none_or(|cs| n.starts_with(&format!("{cs}_"))));
    if let Some(co) = collation {
        out.push_str(&format!(" COLLATE {co}"));
    }
    out
}

/// Whether a charset or collation name is one word (`utf8mb4_bin`), safe to write unquoted.
fn plain_word(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A source collation as `target` knows it: MariaDB (before 11.4) has none of MySQL 8's
/// `…_0900_…` collations, so they become the nearest it has — `utf8mb4_0900_bin` and the
/// accent- and case-sensitive `…_0900_as_cs` compare by code point like `utf8mb4_bin`, the
/// case-insensitive `…_0900_ai_ci` like `utf8mb4_unicode_520_ci` (docs/type-conversion.md).
fn collation_on(target: TargetEngine, collation: &str) -> String {
    let c = collation.to_ascii_lowercase();
    if target != TargetEngine::Mariadb || !c.contains("_0900_") {
        return c;
    }
    if c.ends_with("_ci") {
        "utf8mb4_unicode_520_ci".into()
    } else {
        "utf8mb4_bin".into()
    }
}

fn is_text(column_type: &str) -> bool {
    matches!(
        parse(column_type).base.as_str(),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_taken_apart() {
        let p = parse("decimal(10,2) unsigned zerofill");
        assert_eq!(
            (p.base.as_str(), p.args.clone()),
            ("decimal", vec!["10", "2"])
        );
        assert!(p.unsigned);
        let e = parse("enum('a,b','c')");
        assert_eq!(e.args, vec!["'a,b','c'"]);
        assert_eq!(parse("INT").base, "int");
    }

    #[test]
    fn enum_and_set_members_keep_their_case_on_mysql_targets() {
        for t in [TargetEngine::Mysql, TargetEngine::Mariadb] {
            assert_eq!(
                convert("ENUM('Active','Inactive')", t).unwrap().sql_type,
                "enum('Active','Inactive')"
            );
            assert_eq!(
                convert("set('A','b','It''s')", t).unwrap().sql_type,
                "set('A','b','It''s')"
            );
            assert_eq!(convert("VARCHAR(20)", t).unwrap().sql_type, "varchar(20)");
        }
    }

    #[test]
    fn collations_are_kept_on_mysql_targets() {
        use crate::schema::{ColumnDef, TableDef};
        let col = |name: &str, t: &str, charset: Option<&str>, collation: Option<&str>| ColumnDef {
            name: name.into(),
            column_type: t.into(),
            nullable: false,
            charset: charset.map(Into::into),
            members: Vec::new(),
            collation: collation.map(Into::into),
        };
        let def = TableDef {
            columns: vec![
                col("k", "varchar(10)", Some("utf8mb4"), Some("utf8mb4_bin")),
                col("l", "varchar(10)", Some("latin1"), None),
                col("t", "text", None, None),
                col("n", "int", None, None),
                col("m", "varchar(10)", None, Some("utf8mb4_0900_as_cs")),
                col("x", "varchar(10)", None, Some("bad name; drop table t")),
            ],
            primary_key: vec!["k".into()],
            collation: Some("utf8mb4_unicode_ci".into()),
        };
        let sql = create_table(TargetEngine::Mariadb, "d", "t", &def, |_| true).unwrap();
        let sql = &sql[0];
        assert!(
            sql.contains("`k` varchar(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL"),
            "{sql}"
        );
        // The table's collation is of another charset than latin1: not applied.
        assert!(
            sql.contains("`l` varchar(10) CHARACTER SET latin1 NOT NULL"),
            "{sql}"
        );
        assert!(
            sql.contains("`t` text COLLATE utf8mb4_unicode_ci NOT NULL"),
            "{sql}"
        );
        assert!(sql.contains("`n` int NOT NULL"), "{sql}");
        assert!(
            sql.contains("`m` varchar(10) COLLATE utf8mb4_bin NOT NULL"),
            "{sql}"
        );
        assert!(
            sql.contains("`x` varchar(10) COLLATE utf8mb4_unicode_ci NOT NULL"),
            "{sql}"
        );
        let mysql = create_table(TargetEngine::Mysql, "d", "t", &def, |_| true).unwrap();
        assert!(mysql[0].contains("COLLATE utf8mb4_0900_as_cs"), "{mysql:?}");
        // PostgreSQL's collations are deterministic ('a' and 'A' stay two keys): no clause.
        let pg = create_table(TargetEngine::Postgresql, "d", "t", &def, |_| true).unwrap();
        assert!(!pg[1].contains("COLLATE"), "{pg:?}");
    }

    #[test]
    fn unknown_types_are_refused_with_a_hint() {
        let e = convert("vector(3)", TargetEngine::Postgresql).unwrap_err();
        assert!(e.to_string().contains("vector(3)"), "{e}");
        assert!(e.hint.contains("selection"));
    }

    #[test]
    fn tables_are_created_with_keys_not_null_and_quoted_names() {
        use crate::schema::{ColumnDef, TableDef};
        let col = |name: &str, t: &str, nullable: bool, charset: Option<&str>| ColumnDef {
            name: name.into(),
            column_type: t.into(),
            nullable,
            charset: charset.map(Into::into),
            members: Vec::new(),
            collation: None,
        };
        let def = TableDef {
            columns: vec![
                col("id", "bigint unsigned", false, None),
                col("na\"me`", "varchar(20)", false, Some("latin1")),
                col("born", "date", false, None),
                col("secret", "blob", true, None),
            ],
            primary_key: vec!["id".into()],
            collation: None,
        };
        let pg = create_table(TargetEngine::Postgresql, "shop", "orders", &def, |c| {
            c != "secret"
        })
        .unwrap();
        assert_eq!(pg[0], "CREATE SCHEMA IF NOT EXISTS \"shop\"");
        assert_eq!(
            pg[1],
            "CREATE TABLE IF NOT EXISTS \"shop\".\"orders\" (\n  \"id\" numeric(20,0) NOT NULL,\n  \"na\"\"me`\" varchar(20) NOT NULL,\n  \"born\" date,\n  PRIMARY KEY (\"id\")\n)",
            "zero dates become NULL on PostgreSQL: the column is nullable there"
        );
        let my =
            create_table(TargetEngine::Mariadb, "shop_copy", "orders", &def, |_| true).unwrap();
        assert_eq!(
            my,
            [
                "CREATE TABLE IF NOT EXISTS `shop_copy`.`orders` (\n  `id` bigint unsigned NOT NULL,\n  `na\"me``` varchar(20) CHARACTER SET latin1 NOT NULL,\n  `born` date NOT NULL,\n  `secret` blob,\n  PRIMARY KEY (`id`)\n)"
            ]
        );
        let bad = TableDef {
            columns: vec![col("v", "vector(3)", true, None)],
            primary_key: Vec::new(),
            collation: None,
        };
        assert!(create_table(TargetEngine::Postgresql, "s", "t", &bad, |_| true).is_err());
    }

    /// Every row of docs/type-conversion.md's table, checked against the code.
    #[test]
    fn the_documented_table_is_what_the_code_does() {
        let doc = include_str!("../../../docs/type-conversion.md");
        let mut rows = 0;
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let [source, postgres, mysql, mariadb, loses] = cells[..] else {
                panic!("a row with {} cells: {line}", cells.len());
            };
            let unquote = |c: &str| c.trim_matches('`').to_owned();
            let pg = convert(&unquote(source), TargetEngine::Postgresql).unwrap();
            assert_eq!(pg.sql_type, unquote(postgres), "{line}");
            assert_eq!(
                convert(&unquote(source), TargetEngine::Mysql)
                    .unwrap()
                    .sql_type,
                unquote(mysql),
                "{line}"
            );
            assert_eq!(
                convert(&unquote(source), TargetEngine::Mariadb)
                    .unwrap()
                    .sql_type,
                unquote(mariadb),
                "{line}"
            );
            assert_eq!(pg.lossy.unwrap_or("–"), loses, "{line}");
            rows += 1;
        }
        assert!(rows >= 40, "{rows} rows");
    }
}

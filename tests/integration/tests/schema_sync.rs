//! Schema sync's table creation against the real targets: a source table with every column type
//! MariaDB 10.11 has is created, from the source's catalog, on PostgreSQL and in a second
//! MariaDB database, through `ferry_domain::convert`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::collections::BTreeMap;

use ferry_domain::change::ObjectName;
use ferry_domain::convert::{TargetEngine, create_table};
use ferry_testkit::TestContext;
use mysql_async::prelude::Queryable;

const EVERY_TYPE: &str = "CREATE TABLE every_type (
    id BIGINT UNSIGNED NOT NULL, k2 VARCHAR(10) NOT NULL,
    t TINYINT, tu TINYINT UNSIGNED, b TINYINT(1), s SMALLINT, su SMALLINT UNSIGNED,
    m MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT NOT NULL, iu INT UNSIGNED, z INT(5) UNSIGNED ZEROFILL,
    bi BIGINT, d DECIMAL(10,2), du DECIMAL(8,3) UNSIGNED, f FLOAT, f30 FLOAT(30), db DOUBLE,
    bit1 BIT(1), bit12 BIT(12), c CHAR(3), v VARCHAR(255) CHARACTER SET latin1, tt TINYTEXT, tx TEXT,
    mt MEDIUMTEXT, lt LONGTEXT, bn BINARY(16), vb VARBINARY(200), tb TINYBLOB, bl BLOB, mb MEDIUMBLOB,
    lb LONGBLOB, dt DATE NOT NULL, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(6), y YEAR,
    e ENUM('small','large'), st SET('a','b','c'), j JSON, g GEOMETRY, p POINT, pg POLYGON,
    ip INET6, u UUID,
    PRIMARY KEY (id, k2))";

/// Every column of `schema.every_type`: name, declared type, nullability, character set.
async fn describe(
    db: &mut mysql_async::Conn,
    schema: &str,
) -> Vec<(String, String, String, String)> {
    db.exec(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COALESCE(CHARACTER_SET_NAME, '') \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'every_type' \
         ORDER BY ORDINAL_POSITION",
        (schema,),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_of_every_type_is_created_on_postgresql_and_mariadb() {
    let ctx = TestContext::spawn().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(EVERY_TYPE).await.unwrap();
    let catalog = ferry_mysql::ddl::read_catalog(&mut db).await.unwrap();
    let def = catalog
        .get(&ObjectName {
            database: ctx.mysql_database().to_owned(),
            table: "every_type".into(),
        })
        .unwrap()
        .clone();

    // PostgreSQL: the converted types, keys and NOT NULL.
    let pg = ctx.postgres().await.unwrap();
    for sql in create_table(TargetEngine::Postgresql, "src", "every_type", &def, |_| {
        true
    })
    .unwrap()
    {
        pg.batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let columns: BTreeMap<String, (String, bool)> = pg
        .query(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns \
             WHERE table_schema = 'src' AND table_name = 'every_type'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(columns.len(), def.columns.len());
    for (column, data_type) in [
        ("id", "numeric"),
        ("iu", "bigint"),
        ("su", "integer"),
        ("b", "smallint"),
        ("d", "numeric"),
        ("f30", "double precision"),
        ("bit1", "boolean"),
        ("bit12", "bit"),
        ("v", "character varying"),
        ("lt", "text"),
        ("lb", "bytea"),
        ("dtm", "timestamp without time zone"),
        ("ts", "timestamp with time zone"),
        ("tm", "interval"),
        ("e", "text"),
        ("j", "jsonb"),
        ("g", "bytea"),
        ("ip", "inet"),
        ("u", "uuid"),
    ] {
        assert_eq!(columns[column].0, data_type, "{column}: {columns:?}");
    }
    assert!(!columns["i"].1, "NOT NULL is kept");
    assert!(
        columns["dt"].1,
        "a zero date becomes NULL: nullable on PostgreSQL"
    );
    let key: Vec<String> = pg
        .query(
            "SELECT a.attname FROM pg_index x JOIN pg_attribute a ON a.attrelid = x.indrelid \
             AND a.attnum = ANY(x.indkey) WHERE x.indrelid = 'src.every_type'::regclass \
             AND x.indisprimary ORDER BY array_position(x.indkey, a.attnum)",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(key, ["id", "k2"]);

    // A second MariaDB database: the same declarations.
    let copy = format!("{}_copy", ctx.mysql_database());
    db.query_drop(format!("CREATE DATABASE `{copy}`"))
        .await
        .unwrap();
    for sql in create_table(TargetEngine::Mariadb, &copy, "every_type", &def, |_| true).unwrap() {
        db.query_drop(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let source = describe(&mut db, ctx.mysql_database()).await;
    let target = describe(&mut db, &copy).await;
    db.query_drop(format!("DROP DATABASE `{copy}`"))
        .await
        .unwrap();
    assert_eq!(target, source);
}

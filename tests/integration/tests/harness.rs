//! The harness gives every test its own slice of the stack and removes it afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use anyhow::Result;
use ferry_testkit::{StackEnv, TestContext};
use mysql_async::prelude::Queryable;

#[tokio::test(flavor = "multi_thread")]
async fn contexts_are_isolated_and_cleaned_up() -> Result<()> {
    let (a, b) = tokio::try_join!(TestContext::spawn(), TestContext::spawn())?;
    assert_ne!(a.id(), b.id());
    assert_ne!(a.topic("x"), b.topic("x"));
    assert_ne!(a.group("x"), b.group("x"));

    // MariaDB: a table in a's database is not in b's.
    let mut ma = a.mysql().await?;
    ma.query_drop("CREATE TABLE t (id INT PRIMARY KEY)").await?;
    ma.query_drop("INSERT INTO t VALUES (1)").await?;
    let mut mb = b.mysql().await?;
    let in_b: Vec<String> = mb.query("SHOW TABLES").await?;
    assert!(in_b.is_empty(), "{in_b:?}");

    // PostgreSQL: same.
    let pa = a.postgres().await?;
    pa.batch_execute("CREATE TABLE t (id int primary key)")
        .await?;
    let pb = b.postgres().await?;
    let n: i64 = pb
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename = 't'", &[])
        .await?
        .get(0);
    assert_eq!(n, 0);

    // DynamoDB: an item in a's table is not in b's.
    let dynamo = a.dynamodb().await;
    dynamo
        .put_item()
        .table_name(a.dynamo_table())
        .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("p".into()))
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::S("s".into()))
        .send()
        .await?;
    let scanned = dynamo.scan().table_name(b.dynamo_table()).send().await?;
    assert_eq!(scanned.count(), 0);

    // Dropping a context removes its databases and its table.
    let (id, table) = (a.id().to_owned(), a.dynamo_table().to_owned());
    drop((ma, pa));
    drop(a);
    let env = StackEnv::load()?;
    let mut admin = mysql_async::Conn::new(env.mysql_opts(None)).await?;
    let left: Vec<String> = admin.query(format!("SHOW DATABASES LIKE '{id}'")).await?;
    assert!(left.is_empty(), "database {id} outlived its context");
    let pg = env.postgres("postgres").await?;
    let n: i64 = pg
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&id],
        )
        .await?
        .get(0);
    assert_eq!(n, 0, "PostgreSQL database {id} outlived its context");
    let tables = env.dynamodb().await.list_tables().send().await?;
    assert!(!tables.table_names().contains(&table));
    Ok(())
}

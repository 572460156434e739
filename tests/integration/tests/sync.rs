//! Data synchronization end to end: a sync task copies the source's tables to PostgreSQL and to
//! a second MariaDB database while a write load runs, then keeps them in step.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use ferry_testkit::{InProcessWorker, TestContext, eventually};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

/// The bulk table: a few types whose text is the same on both engines once formatted.
const BULK: &str = "CREATE TABLE bulk (
    id INT UNSIGNED NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL, amount DECIMAL(12,2),
    note TEXT, at DATETIME(6) NOT NULL, flag TINYINT NOT NULL DEFAULT 0)";

/// Fills `bulk` with ids 1..=rows.
async fn fill_bulk(db: &mut mysql_async::Conn, rows: u32) {
    db.query_drop(BULK).await.unwrap();
    let mut id = 1;
    while id <= rows {
        let values: Vec<String> = (id..(id + 2000).min(rows + 1))
            .map(|i| {
                format!(
                    "({i}, 'name {i}', {}.{:02}, {}, '2024-01-02 03:04:05.{:06}', {})",
                    i * 3,
                    i % 100,
                    if i % 7 == 0 {
                        "NULL".to_owned()
                    } else {
                        format!("'note\t{i}\\n'")
                    },
                    i % 1_000_000,
                    i % 2
                )
            })
            .collect();
        db.query_drop(format!("INSERT INTO bulk VALUES {}", values.join(",")))
            .await
            .unwrap();
        id += 2000;
    }
}

/// Writes while `running`: updates, inserts past the end, deletes, in small transactions.
async fn write_load(
    mut db: mysql_async::Conn,
    rows: u32,
    running: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let mut n: u64 = 0;
    while running.load(Ordering::Relaxed) {
        n += 1;
        let id = u32::try_from((n * 7919) % u64::from(rows)).unwrap() + 1;
        let sql = format!(
            "START TRANSACTION; \
             UPDATE bulk SET amount = amount + 1, note = 'changed {n}' WHERE id = {id}; \
             INSERT INTO bulk VALUES ({}, 'new {n}', {n}.5, NULL, NOW(6), 1); \
             DELETE FROM bulk WHERE id = {}; COMMIT",
            rows + u32::try_from(n).unwrap(),
            (id + 13) % rows + 1,
        );
        db.query_drop(sql).await.unwrap();
        done.store(n, Ordering::Relaxed);
        // A steady load (a few hundred transactions a second), not one that saturates the
        // machine's two cores, which the unoptimized test build shares with the server.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// The rows of `bulk` as text, ordered by id, from the source.
async fn source_bulk(db: &mut mysql_async::Conn) -> Vec<String> {
    db.query_map(
        "SELECT id, name, amount, note, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), flag FROM bulk ORDER BY id",
        |(id, name, amount, note, at, flag): (u32, String, Option<String>, Option<String>, String, i8)| {
            format!("{id}|{name}|{amount:?}|{note:?}|{at}|{flag}")
        },
    )
    .await
    .unwrap()
}

async fn postgres_bulk(pg: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    pg.query(
        &format!(
            "SELECT id::text, name, amount::text, note, to_char(at, 'YYYY-MM-DD HH24:MI:SS.US'), flag::text \
             FROM \"{schema}\".bulk b ORDER BY b.id"
        ),
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let flag: String = r.get(5);
        format!(
            "{}|{}|{:?}|{:?}|{}|{}",
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, Option<String>>(2),
            r.get::<_, Option<String>>(3),
            r.get::<_, String>(4),
            flag
        )
    })
    .collect()
}

/// The first rows that differ between two sorted row lists, for a failure message.
fn difference(expected: &[String], got: &[String]) -> String {
    let id = |r: &String| r.split('|').next().unwrap_or_default().parse::<u64>().unwrap_or(0);
    let mut out = format!("source {} rows, target {} rows\n", expected.len(), got.len());
    let (mut i, mut j, mut shown) = (0, 0, 0);
    while (i < expected.len() || j < got.len()) && shown < 10 {
        match (expected.get(i), got.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if id(a) == id(b) => {
                out.push_str(&format!("  source {a}\n  target {b}\n"));
                (i, j, shown) = (i + 1, j + 1, shown + 1);
            }
            (Some(a), b) if b.is_none_or(|b| id(a) < id(b)) => {
                out.push_str(&format!("  missing on the target: {a}\n"));
                (i, shown) = (i + 1, shown + 1);
            }
            (_, Some(b)) => {
                out.push_str(&format!("  extra on the target: {b}\n"));
                (j, shown) = (j + 1, shown + 1);
            }
            _ => break,
        }
    }
    out
}

fn sync_config(ctx: &TestContext, target: Value, target_db: &str) -> Value {
    json!({
        "source": ctx.stack_source(),
        "target": target,
        "objects": {"databases": [{"name": ctx.mysql_database(), "target_name": target_db}]},
        "sync": {"chunk_rows": 2000, "parallel": 3}
    })
}

/// Copies `bulk` under a write load to `target`, and checks the target against the source
/// once the load stops, with `read` reading the target's rows.
async fn sync_under_load<F, Fut>(ctx: &TestContext, target: Value, target_db: &str, read: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    const ROWS: u32 = 60_000;
    let mut db = ctx.mysql().await.unwrap();
    fill_bulk(&mut db, ROWS).await;

    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let (id, _) = api
        .start_task("sync", sync_config(ctx, target, target_db))
        .await
        .unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let writes = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(write_load(
        ctx.mysql().await.unwrap(),
        ROWS,
        Arc::clone(&running),
        Arc::clone(&writes),
    ));
    let worker = InProcessWorker::start(&api.state);
    let task = api
        .wait_state(&id, "incremental", Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(task["full_sync"][0]["state"], "done", "{task}");
    // More changes after the full sync, then quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    assert!(writes.load(Ordering::Relaxed) > 10, "the load ran");

    let expected = source_bulk(&mut db).await;
    let last = std::sync::Mutex::new(Vec::new());
    let matched = eventually("the target to match the source", Duration::from_secs(60), || async {
        let got = read().await;
        let same = got == expected;
        *last.lock().unwrap() = got;
        Ok(same.then_some(()))
    })
    .await;
    if let Err(e) = matched {
        panic!("{e:#}\n{}", difference(&expected, &last.lock().unwrap()));
    }
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_syncs_to_postgresql_under_a_write_load() {
    let ctx = TestContext::spawn().await.unwrap();
    let pg = ctx.postgres().await.unwrap();
    let schema = "copy";
    sync_under_load(&ctx, ctx.postgres_target().unwrap(), schema, || {
        postgres_bulk(&pg, schema)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_syncs_to_mariadb_under_a_write_load() -> Result<()> {
    let ctx = TestContext::spawn().await?;
    let copy = format!("{}_copy", ctx.mysql_database());
    let target = ctx.mariadb_target();
    let read = || async {
        let mut c = mysql_async::Conn::new(ctx.env().mysql_opts(Some(&copy)))
            .await
            .unwrap();
        let rows = source_bulk(&mut c).await;
        let _ = c.disconnect().await;
        rows
    };
    sync_under_load(&ctx, target, &copy, read).await;
    Ok(())
}

//! Data synchronization end to end: a sync task copies the source's tables to PostgreSQL and to
//! a second MariaDB database while a write load runs, then keeps them in step.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use ferry_testkit::{InProcessWorker, Step, TestContext, progressing, source_position};
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
        // A steady load (up to a hundred transactions a second), not one that saturates the
        // machine's two cores, which the unoptimized test build shares with the server.
        tokio::time::sleep(Duration::from_millis(10)).await;
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
    let id = |r: &String| {
        r.split('|')
            .next()
            .unwrap_or_default()
            .parse::<u64>()
            .unwrap_or(0)
    };
    let mut out = format!(
        "source {} rows, target {} rows\n",
        expected.len(),
        got.len()
    );
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
        .wait_state(&id, "incremental", Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(task["full_sync"][0]["state"], "done", "{task}");
    // More changes after the full sync, then quiet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    assert!(writes.load(Ordering::Relaxed) > 10, "the load ran");

    let expected = source_bulk(&mut db).await;
    target_matches(&expected, read).await;
    worker.stop().await.unwrap();
}

/// Waits until `read` gives the target's rows equal to `expected`: the target changes while
/// the apply catches up, so waiting fails only when it stops changing; the failure shows the
/// first differences.
async fn target_matches<F, Fut>(expected: &[String], read: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let last = std::sync::Mutex::new(Vec::new());
    let matched = progressing(
        "the target to match the source",
        Duration::from_secs(60),
        || async {
            let got = read().await;
            let same = got == expected;
            let at = format!("{} rows, {}", got.len(), difference(expected, &got));
            *last.lock().unwrap() = got;
            Ok(if same { Step::Done(()) } else { Step::At(at) })
        },
    )
    .await;
    if let Err(e) = matched {
        panic!("{e:#}\n{}", difference(expected, &last.lock().unwrap()));
    }
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
        let mut c = mysql_async::Conn::new(ctx.env().mysql_target_opts(Some(&copy)))
            .await
            .unwrap();
        let rows = source_bulk(&mut c).await;
        let _ = c.disconnect().await;
        rows
    };
    sync_under_load(&ctx, target, &copy, read).await;
    Ok(())
}

const EVERY_TYPE: &str = "CREATE TABLE every_type (
    id BIGINT UNSIGNED NOT NULL, k2 VARCHAR(10) NOT NULL,
    t TINYINT, tu TINYINT UNSIGNED, b TINYINT(1), s SMALLINT, su SMALLINT UNSIGNED,
    m MEDIUMINT, mu MEDIUMINT UNSIGNED, i INT NOT NULL, iu INT UNSIGNED, z INT(5) UNSIGNED ZEROFILL,
    bi BIGINT, d DECIMAL(10,2), du DECIMAL(8,3) UNSIGNED, f FLOAT, f30 FLOAT(30), db DOUBLE,
    bit1 BIT(1), bit12 BIT(12), c CHAR(3), v VARCHAR(255) CHARACTER SET latin1, tt TINYTEXT, tx TEXT,
    mt MEDIUMTEXT, lt LONGTEXT, bn BINARY(4), vb VARBINARY(200), tb TINYBLOB, bl BLOB, mb MEDIUMBLOB,
    lb LONGBLOB, dt DATE NOT NULL, dtm DATETIME(6), ts TIMESTAMP(3) NULL, tm TIME(6), y YEAR,
    e ENUM('small','large'), st SET('a','b','c'), j JSON, g GEOMETRY, p POINT, pg POLYGON,
    ip INET6, u UUID,
    PRIMARY KEY (id, k2))";

/// Rows at the edges of every type, and one of NULLs.
const EVERY_TYPE_ROWS: &str = "INSERT INTO every_type VALUES
    (18446744073709551615, 'max', -128, 255, 1, -32768, 65535, -8388608, 16777215, -2147483648,
     4294967295, 42, -9223372036854775808, -12345678.90, 99999.999, 3.14159, 2.718281828459045,
     1.7976931348623157e308, b'1', b'101010111100', 'abc', 'café', 'tiny', 'text\ttab\\\\n',
     'medium', 'long \"quoted\" ''s', X'00ff00ff', X'0102', X'03', X'04', X'05', X'06',
     '0000-00-00', '0000-00-00 00:00:00', '1970-01-01 00:00:01.5', '-838:59:59.000001', 2155,
     'large', 'a,c', '{\"a\": [1, 2.5, null], \"b\": \"x\"}', ST_GeomFromText('POINT(1 2)'),
     ST_GeomFromText('POINT(3 4)'), ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))'), '::1',
     '123e4567-e89b-12d3-a456-426614174000'),
    (1, 'nulls', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, '2024-02-29', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    (2, 'plain', 1, 2, 0, 3, 4, -5, 6, 7, 8, 9, 10, 0.01, 0.5, -0.1, 1e-300, -2.5, b'0', b'1',
     '', '', '', '', '', '', X'61626364', X'', X'', X'', X'', X'', '1000-01-01',
     '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.999', '00:00:00', 1901, 'small', '',
     '[]', ST_GeomFromText('POINT(0 0)'), ST_GeomFromText('POINT(0 0)'),
     ST_GeomFromText('POLYGON((0 0,2 0,2 2,0 0))'), '2001:db8::8a2e:370:7334',
     '00000000-0000-0000-0000-000000000001')";

/// Asks for a verification and waits for it to end (done or failed).
async fn verify(api: &ferry_testkit::TestApi, id: &ferry_domain::id::InstanceId) -> Value {
    api.verify(id).await.unwrap()
}

/// Verifies until `ok` accepts the report: a verification while changes are in flight (or
/// one a DDL interrupted) may show differences that the next one does not. Up to ten
/// verifications, each waited on for its own progress; no clock.
async fn verified(
    api: &ferry_testkit::TestApi,
    id: &ferry_domain::id::InstanceId,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    for _ in 0..10 {
        let v = verify(api, id).await;
        if ok(&v) {
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("ten verifications and none as expected; the last: {last}");
}

/// Syncs `every_type` to `target`, changes it while incremental, and verifies: no
/// differences. Then changes the target behind the task's back: the verification names them.
async fn every_type_round_trip(
    ctx: &TestContext,
    target: Value,
    target_db: &str,
    tamper: &[String],
    run_on_target: impl AsyncFn(&str),
) -> Value {
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(EVERY_TYPE).await.unwrap();
    db.query_drop(EVERY_TYPE_ROWS).await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let (id, _) = api
        .start_task("sync", sync_config(ctx, target, target_db))
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_state(&id, "incremental", Duration::from_secs(300))
        .await
        .unwrap();
    db.query_drop(
        "UPDATE every_type SET tx = 'changed', j = JSON_OBJECT('k', 1), ts = '2001-02-03 04:05:06.789' WHERE k2 = 'max'; \
         DELETE FROM every_type WHERE k2 = 'nulls'; \
         INSERT INTO every_type (id, k2, i, dt, e, st, bit12) VALUES (3, 'later', 3, '2024-01-01', 'small', 'b', b'111')",
    )
    .await
    .unwrap();
    let report = verified(&api, &id, |v| v["report"]["differences"] == 0).await;
    assert_eq!(report["report"]["tables"][0]["source_rows"], 3, "{report}");
    for sql in tamper {
        run_on_target(sql).await;
    }
    let tampered = verify(&api, &id).await;
    worker.stop().await.unwrap();
    tampered
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_syncs_to_postgresql_and_verifies() {
    let ctx = TestContext::spawn().await.unwrap();
    let pg = ctx.postgres().await.unwrap();
    let tampered = every_type_round_trip(
        &ctx,
        ctx.postgres_target().unwrap(),
        "copy",
        &[
            "UPDATE copy.every_type SET tt = 'tampered' WHERE id = 2".into(),
            "DELETE FROM copy.every_type WHERE id = 3".into(),
        ],
        async |sql: &str| pg.batch_execute(sql).await.unwrap(),
    )
    .await;
    // What PostgreSQL holds, column by column (docs/type-conversion.md).
    let row = pg
        .query_one(
            "SELECT id::text, bit1, bit12::text, dt IS NULL, dtm IS NULL, tm::text, e, st, j->>'k', \
                    host(ip), u::text, v, f::text, db::text, d::text, ts::text, tu::text, b::text \
             FROM copy.every_type WHERE k2 = 'max'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "18446744073709551615");
    assert!(row.get::<_, bool>(1));
    assert_eq!(row.get::<_, String>(2), "101010111100");
    assert!(row.get::<_, bool>(3), "a zero date is NULL on PostgreSQL");
    assert!(
        row.get::<_, bool>(4),
        "a zero datetime is NULL on PostgreSQL"
    );
    assert_eq!(row.get::<_, String>(5), "-838:59:59.000001");
    assert_eq!(row.get::<_, String>(6), "large");
    assert_eq!(row.get::<_, String>(7), "a,c");
    assert_eq!(row.get::<_, String>(8), "1");
    assert_eq!(row.get::<_, String>(9), "::1");
    assert_eq!(
        row.get::<_, String>(10),
        "123e4567-e89b-12d3-a456-426614174000"
    );
    assert_eq!(row.get::<_, String>(11), "café");
    assert_eq!(row.get::<_, String>(12), "3.14159");
    assert_eq!(row.get::<_, String>(13), "1.7976931348623157e+308");
    assert_eq!(row.get::<_, String>(14), "-12345678.90");
    assert_eq!(row.get::<_, String>(15), "2001-02-03 04:05:06.789+00");
    assert_eq!(row.get::<_, String>(16), "255");
    assert_eq!(row.get::<_, String>(17), "1");
    // The verification names what was changed behind the task's back.
    let report = &tampered["report"];
    assert_eq!(report["differences"], 2, "{tampered}");
    let chunk = &report["tables"][0]["differing_chunks"][0];
    assert_eq!(
        chunk["different_keys"][0], r#"{"id":"2","k2":"plain"}"#,
        "{tampered}"
    );
    assert_eq!(
        chunk["missing_keys"][0], r#"{"id":"3","k2":"later"}"#,
        "{tampered}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_type_syncs_to_mariadb_and_verifies() {
    let ctx = TestContext::spawn().await.unwrap();
    let copy = format!("{}_copy", ctx.mysql_database());
    let admin = std::sync::Arc::new(tokio::sync::Mutex::new(ctx.target_mysql().await.unwrap()));
    let tampered = every_type_round_trip(
        &ctx,
        ctx.mariadb_target(),
        &copy,
        &[format!(
            "INSERT INTO `{copy}`.every_type (id, k2, i, dt) VALUES (99, 'extra', 0, '2024-01-01')"
        )],
        async |sql: &str| admin.lock().await.query_drop(sql).await.unwrap(),
    )
    .await;
    // Every value as the source has it: the copy's checksum (on the target server) is the
    // source's.
    let mut db = ctx.mysql().await.unwrap();
    let mut target = ctx.target_mysql().await.unwrap();
    target
        .query_drop(format!("DELETE FROM `{copy}`.every_type WHERE id = 99"))
        .await
        .unwrap();
    let source_sum: Vec<(String, Option<u64>)> = db
        .query(format!(
            "CHECKSUM TABLE `{}`.every_type",
            ctx.mysql_database()
        ))
        .await
        .unwrap();
    let copy_sum: Vec<(String, Option<u64>)> = target
        .query(format!("CHECKSUM TABLE `{copy}`.every_type"))
        .await
        .unwrap();
    assert_eq!(
        source_sum[0].1, copy_sum[0].1,
        "{source_sum:?} {copy_sum:?}"
    );
    let report = &tampered["report"];
    assert_eq!(report["differences"], 1, "{tampered}");
    assert_eq!(
        report["tables"][0]["extra_keys"][0],
        r#"{"id":"99","k2":"extra"}"#
    );
}

/// The rows of `table` on PostgreSQL's side, as pg_stat counts them: (inserted, updated).
async fn pg_writes(pg: &tokio_postgres::Client, table: &str) -> (i64, i64) {
    pg.query_opt(
        "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE schemaname = 'copy' AND relname = $1",
        &[&table],
    )
    .await
    .unwrap()
    .map_or((0, 0), |r| (r.get(0), r.get(1)))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_snapshot_resumes_without_redoing_finished_chunks() {
    const ROWS: u32 = 200_000;
    const CHUNK: u32 = 2_000;
    const PARALLEL: u32 = 2;
    let ctx = TestContext::spawn().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    fill_bulk(&mut db, ROWS).await;
    let pg = ctx.postgres().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut config = sync_config(&ctx, ctx.postgres_target().unwrap(), "copy");
    config["sync"] = json!({"chunk_rows": CHUNK, "parallel": PARALLEL});
    let (id, _) = api.start_task("sync", config).await.unwrap();
    let progress = || async { api.task(&id).await.unwrap()["full_sync"][0].clone() };

    let first = ctx.worker_process(15).unwrap();
    progressing(
        "ten chunks to be copied",
        Duration::from_secs(180),
        || async {
            let p = progress().await;
            Ok(if p["chunks_done"].as_u64().unwrap_or(0) >= 10 {
                Step::Done(())
            } else {
                Step::At(p.to_string())
            })
        },
    )
    .await
    .unwrap();
    first.kill_hard().unwrap();
    let before = progress().await;
    let total = before["chunks_total"].as_u64().unwrap();
    assert!(
        before["chunks_done"].as_u64().unwrap() < total,
        "killed mid-snapshot: {before}"
    );

    let second = ctx.worker_process(15).unwrap();
    api.wait_state(&id, "incremental", Duration::from_secs(300))
        .await
        .unwrap();
    let after = progress().await;
    assert_eq!(after["chunks_done"].as_u64(), Some(total), "{after}");
    assert_eq!(
        after["rows_done"],
        u64::from(ROWS),
        "every row counted once: {after}"
    );
    assert_eq!(postgres_bulk(&pg, "copy").await, source_bulk(&mut db).await);
    // A chunk loaded again replaces its rows (an update each): only the chunks being read when
    // the worker was killed may have been loaded twice.
    let (inserted, updated) = progressing(
        "PostgreSQL's counts of the copy",
        Duration::from_secs(60),
        || async {
            let (i, u) = pg_writes(&pg, "bulk").await;
            Ok(if i >= i64::from(ROWS) {
                Step::Done((i, u))
            } else {
                Step::At(format!("{i} inserted, {u} updated"))
            })
        },
    )
    .await
    .unwrap();
    assert!(
        updated <= i64::from(PARALLEL * CHUNK),
        "{updated} rows loaded twice (inserted {inserted}): finished chunks were copied again"
    );
    drop(second);
}

/// Waits until the task's checkpoint is past the source's current binlog position: everything
/// written before is applied.
async fn caught_up(
    api: &ferry_testkit::TestApi,
    id: &ferry_domain::id::InstanceId,
    db: &mut mysql_async::Conn,
) {
    let position = source_position(db).await.unwrap();
    api.wait_checkpoint_past(id, &position, Duration::from_secs(300))
        .await
        .unwrap();
}

/// DDL on the source while the task runs, and what the target must look like after it.
const DDL: &[&str] = &[
    "ALTER TABLE a ADD COLUMN z DECIMAL(6,2)",
    "UPDATE a SET z = id / 4",
    "ALTER TABLE a DROP COLUMN y",
    "ALTER TABLE a MODIFY x BIGINT",
    "ALTER TABLE a CHANGE x x2 BIGINT",
    "UPDATE a SET x2 = x2 * 1000000000",
    "CREATE TABLE b (id INT PRIMARY KEY, v TEXT)",
    "INSERT INTO b VALUES (1, 'new'), (2, 'newer')",
    "RENAME TABLE b TO c",
    "INSERT INTO c VALUES (3, 'renamed')",
    "TRUNCATE TABLE c",
    "INSERT INTO c VALUES (4, 'after the truncate')",
    "CREATE TABLE d (id INT PRIMARY KEY)",
    "DROP TABLE d",
];

async fn ddl_reaches(ctx: &TestContext, target: Value, target_db: &str) -> Value {
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE a (id INT PRIMARY KEY, x INT, y VARCHAR(10))")
        .await
        .unwrap();
    db.query_drop("INSERT INTO a VALUES (1, 10, 'one'), (2, 20, 'two'), (3, 30, NULL)")
        .await
        .unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let (id, _) = api
        .start_task("sync", sync_config(ctx, target, target_db))
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_state(&id, "incremental", Duration::from_secs(300))
        .await
        .unwrap();
    for sql in DDL {
        db.query_drop(*sql).await.unwrap();
    }
    caught_up(&api, &id, &mut db).await;
    let v = verified(&api, &id, |v| {
        let tables: Vec<String> = v["report"]["tables"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t["table"]["table"].as_str().unwrap_or_default().to_owned())
            .collect();
        v["report"]["differences"] == 0 && tables == ["a", "c"]
    })
    .await;
    worker.stop().await.unwrap();
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn ddl_mid_stream_reaches_postgresql() {
    let ctx = TestContext::spawn().await.unwrap();
    ddl_reaches(&ctx, ctx.postgres_target().unwrap(), "copy").await;
    let pg = ctx.postgres().await.unwrap();
    let columns: Vec<(String, String)> = pg
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'copy' AND table_name = 'a' ORDER BY ordinal_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        columns,
        [
            ("id".into(), "integer".into()),
            ("x2".into(), "bigint".into()),
            ("z".into(), "numeric".into())
        ]
    );
    let tables: Vec<String> = pg
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'copy' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tables, ["a", "c"]);
    let x2: i64 = pg
        .query_one("SELECT x2 FROM copy.a WHERE id = 3", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(x2, 30_000_000_000);
    let c: Vec<i32> = pg
        .query("SELECT id FROM copy.c", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(c, [4], "TRUNCATE emptied the table before the last insert");
}

#[tokio::test(flavor = "multi_thread")]
async fn ddl_mid_stream_reaches_mariadb() {
    let ctx = TestContext::spawn().await.unwrap();
    let copy = format!("{}_copy", ctx.mysql_database());
    ddl_reaches(&ctx, ctx.mariadb_target(), &copy).await;
    let mut db = ctx.mysql().await.unwrap();
    let describe = |schema: String| {
        format!(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = '{schema}' ORDER BY TABLE_NAME, ORDINAL_POSITION"
        )
    };
    let source: Vec<(String, String, String)> = db
        .query(describe(ctx.mysql_database().to_owned()))
        .await
        .unwrap();
    let target: Vec<(String, String, String)> = ctx
        .target_mysql()
        .await
        .unwrap()
        .query(describe(copy))
        .await
        .unwrap();
    assert_eq!(target, source);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_added_to_a_running_task_is_backfilled_under_load() {
    const ROWS: u32 = 20_000;
    let ctx = TestContext::spawn().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    fill_bulk(&mut db, ROWS).await;
    db.query_drop("CREATE TABLE extra (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    db.query_drop(format!(
        "INSERT INTO extra SELECT seq, CONCAT('v', seq) FROM seq_1_to_{ROWS}"
    ))
    .await
    .unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let selection = |tables: &[&str]| {
        json!({"databases": [{"name": ctx.mysql_database(), "target_name": "copy",
                "tables": tables.iter().map(|t| json!({"name": t})).collect::<Vec<_>>()}]})
    };
    let mut config = sync_config(&ctx, ctx.postgres_target().unwrap(), "copy");
    config["objects"] = selection(&["bulk"]);
    let (id, _) = api.start_task("sync", config).await.unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_state(&id, "incremental", Duration::from_secs(300))
        .await
        .unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let load = tokio::spawn(write_load(
        ctx.mysql().await.unwrap(),
        ROWS,
        Arc::clone(&running),
        Arc::new(AtomicU64::new(0)),
    ));
    // Changes to the new table while it is being added.
    let mut writer = ctx.mysql().await.unwrap();
    let reselected = api
        .call(
            axum::http::Method::PUT,
            &format!("/v1/instances/{id}/task/objects"),
            Some(selection(&["bulk", "extra"])),
        )
        .await
        .unwrap();
    assert_eq!(
        reselected.status,
        axum::http::StatusCode::OK,
        "{}",
        reselected.text
    );
    for i in 0..200 {
        writer
            .query_drop(format!(
                "UPDATE extra SET v = 'changed {i}' WHERE id = {}; DELETE FROM extra WHERE id = {}",
                i * 97 % ROWS + 1,
                i * 89 % ROWS + 1
            ))
            .await
            .unwrap();
    }
    progressing(
        "the added table to be copied",
        Duration::from_secs(300),
        || async {
            let task = api.task(&id).await?;
            let progress = &task["full_sync"];
            let copied = progress
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|p| p["state"] == "done"));
            // The loop's checkpoint counts as progress too: the added table's chunks are done
            // once the loop has read the shared binlog up to their watermarks.
            Ok(if copied {
                Step::Done(())
            } else {
                Step::At(format!("at {} {progress}", task["checkpoint"]["position"]))
            })
        },
    )
    .await
    .unwrap();
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    verified(&api, &id, |v| {
        v["report"]["differences"] == 0 && v["report"]["tables"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    worker.stop().await.unwrap();
}

/// How many rows the big table has: a million from the larger-size command
/// (`FERRY_TEST_SCALE=large`, `infra/local/test --large`), 100,000 in CI, which is still five
/// chunks of the default size copied in parallel under the load.
fn million_rows() -> u64 {
    if ferry_testkit::large_scale() {
        1_000_000
    } else {
        100_000
    }
}

/// The big table: a spread of types, written on the server from a sequence.
const MILLION: &str = "CREATE TABLE million (
    id INT UNSIGNED NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL, amount DECIMAL(14,2),
    ratio DOUBLE, at DATETIME(6) NOT NULL, day DATE, tag ENUM('a','b','c'), bits BIT(8),
    payload VARBINARY(16), doc JSON, u UUID)";

const MILLION_ROWS: &str = "INSERT INTO million SELECT seq, CONCAT('row ', seq), seq * 1.25,
    seq / 7, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND + INTERVAL seq MICROSECOND,
    DATE'2000-01-01' + INTERVAL (seq % 10000) DAY, ELT(seq % 3 + 1, 'a', 'b', 'c'), seq % 256,
    UNHEX(MD5(seq)), JSON_OBJECT('n', seq, 's', CONCAT('x', seq)), IF(seq % 5 = 0, NULL, UUID())
    FROM seq_1_to_";

/// Writes to `million` while `running`: updates, inserts past the end and deletes, in small
/// transactions.
async fn million_load(mut db: mysql_async::Conn, running: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let mut n: u64 = 0;
    let rows = million_rows();
    while running.load(Ordering::Relaxed) {
        n += 1;
        let id = (n * 7919) % rows + 1;
        db.query_drop(format!(
            "START TRANSACTION; \
             UPDATE million SET amount = amount + 1, doc = JSON_OBJECT('changed', {n}) WHERE id = {id}; \
             INSERT INTO million (id, name, at, tag) VALUES ({}, 'new', NOW(6), 'b'); \
             DELETE FROM million WHERE id = {}; COMMIT",
            rows + n,
            (id * 31) % rows + 1,
        ))
        .await
        .unwrap();
        done.store(n, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The acceptance test of sync: every column type and a big table (a million rows from the
/// larger-size command, see [`million_rows`]), synced to PostgreSQL and to a second MariaDB
/// database by two tasks at once while a write load runs, then verified with zero differences.
#[tokio::test(flavor = "multi_thread")]
async fn many_rows_of_every_type_sync_to_both_targets_and_verify() {
    let ctx = TestContext::spawn().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    let started = std::time::Instant::now();
    let fill = format!("{MILLION_ROWS}{}", million_rows());
    for sql in [EVERY_TYPE, EVERY_TYPE_ROWS, MILLION, &fill] {
        db.query_drop(sql).await.unwrap();
    }
    eprintln!("source filled in {:.1?}", started.elapsed());
    let copy = format!("{}_copy", ctx.mysql_database());
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut tasks = Vec::new();
    for (name, target, target_db) in [
        ("to-postgresql", ctx.postgres_target().unwrap(), "copy"),
        ("to-mariadb", ctx.mariadb_target(), copy.as_str()),
    ] {
        let mut config = sync_config(&ctx, target, target_db);
        // The defaults (20,000-row chunks, 4 at a time): what a user gets.
        config.as_object_mut().unwrap().remove("sync");
        let (id, _) = api.start_task_named(name, "sync", config).await.unwrap();
        tasks.push(id);
    }
    let running = Arc::new(AtomicBool::new(true));
    let writes = Arc::new(AtomicU64::new(0));
    let load = tokio::spawn(million_load(
        ctx.mysql().await.unwrap(),
        Arc::clone(&running),
        Arc::clone(&writes),
    ));
    let worker = InProcessWorker::start(&api.state);
    let copying = std::time::Instant::now();
    for id in &tasks {
        let task = api.wait_copied(id, Duration::from_secs(300)).await.unwrap();
        let million = task["full_sync"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"]["table"] == "million")
            .unwrap_or_else(|| panic!("no progress for million: {task}"))
            .clone();
        assert_eq!(million["state"], "done", "{task}");
        // Rows the load changed while their chunk was read come from the binlog, not from the
        // chunk (a few dozen); the copy itself carried the rest.
        assert!(
            million["rows_done"].as_u64().unwrap() >= million_rows() * 99 / 100,
            "{task}"
        );
    }
    eprintln!("both full syncs done in {:.1?}", copying.elapsed());
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    assert!(writes.load(Ordering::Relaxed) > 10, "the load ran");
    let rows: u64 = db
        .query_first("SELECT COUNT(*) FROM million")
        .await
        .unwrap()
        .unwrap();

    for id in &tasks {
        let verifying = std::time::Instant::now();
        let v = verified(&api, id, |v| v["report"]["differences"] == 0).await;
        eprintln!("verified in {:.1?}", verifying.elapsed());
        let tables = v["report"]["tables"].as_array().unwrap();
        let counted: Vec<(String, u64)> = tables
            .iter()
            .map(|t| {
                (
                    t["table"]["table"].as_str().unwrap().to_owned(),
                    t["source_rows"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            counted,
            [("every_type".to_owned(), 3), ("million".to_owned(), rows)],
            "{v}"
        );
    }
    worker.stop().await.unwrap();
}

/// The task's metrics, once `ready` holds for them.
async fn metrics_when(
    api: &ferry_testkit::TestApi,
    id: &ferry_domain::id::InstanceId,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    api.metrics_when(id, Duration::from_secs(120), ready)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The target refuses connections for a while: the metrics show the target connection failing
/// with the server's words, the source still connected; once it accepts them again, the task
/// catches up by itself and both read connected.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_outage_shows_in_the_connection_status_and_heals() {
    let ctx = TestContext::spawn().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE a (id INT PRIMARY KEY, v TEXT)")
        .await
        .unwrap();
    db.query_drop("INSERT INTO a VALUES (1, 'one')")
        .await
        .unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let (id, _) = api
        .start_task(
            "sync",
            sync_config(&ctx, ctx.postgres_target().unwrap(), "copy"),
        )
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_state(&id, "incremental", Duration::from_secs(300))
        .await
        .unwrap();
    let connected = |m: &Value| {
        m["connections"]["source"]["state"] == "connected"
            && m["connections"]["target"]["state"] == "connected"
    };
    metrics_when(&api, &id, connected).await;

    // From the maintenance database: refuse new connections to the test's, end the open ones.
    let admin = ctx.env().postgres("postgres").await.unwrap();
    let name = ctx.postgres_database();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    db.query_drop("INSERT INTO a VALUES (2, 'two')")
        .await
        .unwrap();
    let failing = metrics_when(&api, &id, |m| {
        m["connections"]["target"]["state"] == "failing"
    })
    .await;
    let error = failing["connections"]["target"]["error"].as_str().unwrap();
    // Which of the outage's errors the worker meets first depends on timing: its open
    // connection ended by pg_terminate_backend (57P01), a closed socket, or a new connection
    // refused.
    assert!(
        error.contains("not currently accepting connections")
            || error.contains("closed")
            || error.contains("57P01"),
        "{failing}"
    );
    assert_ne!(failing["connections"]["source"]["state"], "failing");
    // Still running: the worker retries, the task has not failed.
    let task = api.task(&id).await.unwrap();
    assert_eq!(task["state"], "incremental", "{task}");

    admin
        .batch_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    metrics_when(&api, &id, connected).await;
    let pg = ctx.postgres().await.unwrap();
    progressing("the change to arrive", Duration::from_secs(120), || async {
        let n: i64 = pg
            .query_one("SELECT count(*) FROM copy.a", &[])
            .await?
            .get(0);
        let t = api.task(&id).await?;
        Ok(if n == 2 {
            Step::Done(())
        } else {
            Step::At(format!(
                "{n} rows, checkpoint {}",
                t["checkpoint"]["position"]
            ))
        })
    })
    .await
    .unwrap();
    worker.stop().await.unwrap();
}

/// A row filter on a table under a write load that moves rows into and out of it: the snapshot
/// reads only matching rows (the filter pushed into the chunk query), the stream deletes a row
/// that leaves the filter and inserts one that enters it, and the target ends equal to the
/// filtered source; the verification compares the filtered rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_filter_keeps_the_target_equal_to_the_filtered_source() {
    const ROWS: u32 = 20_000;
    let ctx = TestContext::spawn().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    fill_bulk(&mut db, ROWS).await;
    let pg = ctx.postgres().await.unwrap();
    let schema = "filtered";
    let filter = "flag = 1 AND amount > 100 OR name LIKE 'keep%'";
    let config = json!({
        "source": ctx.stack_source(),
        "target": ctx.postgres_target().unwrap(),
        "objects": {"databases": [{"name": ctx.mysql_database(), "target_name": schema,
            "tables": [{"name": "bulk", "filter": filter}]}]},
        "sync": {"chunk_rows": 2000, "parallel": 2}
    });
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let (id, _) = api.start_task("sync", config).await.unwrap();
    // Rows move across the filter while the copy runs and after: the flag flips, amounts
    // cross 100, names enter and leave `keep…`, rows come and go.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let mut db = ctx.mysql().await.unwrap();
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut n: u32 = 0;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let id = (n * 7919) % ROWS + 1;
                let sql = format!(
                    "START TRANSACTION; \
                     UPDATE bulk SET flag = 1 - flag WHERE id = {id}; \
                     UPDATE bulk SET amount = IF(amount > 100, 50, 150) WHERE id = {}; \
                     UPDATE bulk SET name = IF(name LIKE 'keep%', 'drop {n}', 'keep {n}') WHERE id = {}; \
                     INSERT INTO bulk VALUES ({}, 'keep new {n}', {}, NULL, NOW(6), {}); \
                     DELETE FROM bulk WHERE id = {}; COMMIT",
                    (id + 101) % ROWS + 1,
                    (id + 211) % ROWS + 1,
                    ROWS + n,
                    n % 300,
                    n % 2,
                    (id + 307) % ROWS + 1,
                );
                db.query_drop(sql).await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            n
        })
    };
    let worker = InProcessWorker::start(&api.state);
    api.wait_state(&id, "incremental", Duration::from_secs(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    running.store(false, Ordering::Relaxed);
    assert!(load.await.unwrap() > 10, "the load ran");

    let expected: Vec<String> = db
        .query_map(
            format!(
                "SELECT id, name, amount, note, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), flag \
                 FROM bulk WHERE {filter} ORDER BY id"
            ),
            |(id, name, amount, note, at, flag): (
                u32,
                String,
                Option<String>,
                Option<String>,
                String,
                i8,
            )| { format!("{id}|{name}|{amount:?}|{note:?}|{at}|{flag}") },
        )
        .await
        .unwrap();
    let all = source_bulk(&mut db).await.len();
    assert!(
        expected.len() > 100 && expected.len() < all,
        "the filter keeps some rows: {} of {all}",
        expected.len()
    );
    target_matches(&expected, || postgres_bulk(&pg, schema)).await;
    let report = verified(&api, &id, |v| v["report"]["differences"] == 0).await;
    assert_eq!(
        report["report"]["tables"][0]["source_rows"].as_u64(),
        Some(expected.len() as u64),
        "the verification compares the filtered rows: {report}"
    );
    worker.stop().await.unwrap();
}

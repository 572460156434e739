//! The data-synchronization paths a review found losing or corrupting rows (issue 15, A4 and
//! A6–A10), each reproduced against the real stack and verified with Ferry's own verification:
//! collations and ENUM case on MySQL targets, DDL while a table is copied through staging, a
//! primary key changed on the source, a column dropped while a copy waits, a keyless table
//! loaded again after a crash, and a sync worker paused past its lease.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferry_domain::id::InstanceId;
use ferry_testkit::{InProcessWorker, Step, TestApi, TestContext, progressing, source_position};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const STALL: Duration = Duration::from_secs(120);

/// A sync target of the stack.
#[derive(Debug, Clone, Copy)]
enum Target {
    Postgresql,
    Mariadb,
}

impl Target {
    /// The target endpoint and the database (PostgreSQL: schema) the tables go to.
    fn of(self, ctx: &TestContext) -> (Value, String) {
        match self {
            Self::Postgresql => (ctx.postgres_target().unwrap(), "copy".into()),
            Self::Mariadb => (
                ctx.mariadb_target(),
                format!("{}_copy", ctx.mysql_database()),
            ),
        }
    }
}

fn config(ctx: &TestContext, target: Value, target_db: &str, sync: Value) -> Value {
    json!({
        "source": ctx.stack_source(),
        "target": target,
        "objects": {"databases": [{"name": ctx.mysql_database(), "target_name": target_db}]},
        "sync": sync,
    })
}

/// Fills `table` with rows 1..=`rows`, `row(i)` giving each row's values, in statements of 2000.
async fn fill(db: &mut mysql_async::Conn, table: &str, rows: u32, row: impl Fn(u32) -> String) {
    for start in (0..rows).step_by(2000) {
        let values: Vec<String> = (start + 1..=(start + 2000).min(rows)).map(&row).collect();
        db.query_drop(format!("INSERT INTO {table} VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
}

/// Waits until the task applied everything the source wrote so far.
async fn caught_up(api: &TestApi, id: &InstanceId, db: &mut mysql_async::Conn) {
    let position = source_position(db).await.unwrap();
    api.wait_checkpoint_past(id, &position, STALL * 2)
        .await
        .unwrap();
}

/// Verifies until a verification ends without a table changing under it, and checks it found
/// no difference.
async fn verifies_clean(api: &TestApi, id: &InstanceId) -> Value {
    let mut last = Value::Null;
    for _ in 0..5 {
        let v = api.verify(id).await.unwrap();
        if v["state"] == "done" {
            assert_eq!(v["report"]["differences"], 0, "{v}");
            return v;
        }
        last = v;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("no verification finished: {last}");
}

/// Each column's type and collation, from `information_schema`, in order.
async fn columns_of(db: &mut mysql_async::Conn, schema: &str, table: &str) -> Vec<String> {
    db.exec_map(
        "SELECT COLUMN_NAME, COLUMN_TYPE, COLLATION_NAME, IS_NULLABLE FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
        (schema, table),
        |(n, t, c, nl): (String, String, Option<String>, String)| format!("{n} {t} {c:?} {nl}"),
    )
    .await
    .unwrap()
}

/// `'a'` and `'A'` in a `utf8mb4_bin` key are two rows on a MariaDB target, and ENUM members
/// keep their case: before, the target's default collation merged the keys into one row whose
/// ENUM value read `active` instead of `Inactive`.
#[tokio::test(flavor = "multi_thread")]
async fn collations_and_enum_case_survive_on_a_mariadb_target() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE accounts (
            k VARCHAR(10) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin PRIMARY KEY,
            state ENUM('Active','Inactive') NOT NULL,
            tags SET('Red','GREEN') ,
            code VARCHAR(10) CHARACTER SET latin1 COLLATE latin1_general_cs,
            note TEXT COLLATE utf8mb4_unicode_ci
        ) DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
    )
    .await
    .unwrap();
    db.query_drop(
        "INSERT INTO accounts VALUES ('a', 'Inactive', 'Red', 'x', 'n'), ('A', 'Active', 'GREEN,Red', 'X', 'N')",
    )
    .await
    .unwrap();
    let copy = format!("{}_copy", ctx.mysql_database());
    let (id, _) = api
        .start_task(
            "sync",
            config(
                &ctx,
                ctx.mariadb_target(),
                &copy,
                json!({"chunk_rows": 1000}),
            ),
        )
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_copied(&id, STALL).await.unwrap();
    // Incremental changes, and a table created by DDL with a collation of its own.
    db.query_drop("INSERT INTO accounts VALUES ('b', 'Inactive', NULL, 'y', NULL), ('B', 'Active', '', 'Y', NULL)")
        .await
        .unwrap();
    db.query_drop("UPDATE accounts SET state = 'Active' WHERE k = 'a'")
        .await
        .unwrap();
    db.query_drop(
        "CREATE TABLE later (k CHAR(2) COLLATE utf8mb4_bin PRIMARY KEY, e ENUM('Yes','NO'))",
    )
    .await
    .unwrap();
    db.query_drop("INSERT INTO later VALUES ('x', 'Yes'), ('X', 'NO')")
        .await
        .unwrap();
    caught_up(&api, &id, &mut db).await;
    verifies_clean(&api, &id).await;
    let mut target = ctx.target_mysql().await.unwrap();
    let rows: Vec<(String, String)> = target
        .query(format!(
            "SELECT k, CAST(state AS CHAR) FROM `{copy}`.accounts ORDER BY k COLLATE utf8mb4_bin"
        ))
        .await
        .unwrap();
    assert_eq!(
        rows,
        [
            ("A".to_owned(), "Active".to_owned()),
            ("B".to_owned(), "Active".to_owned()),
            ("a".to_owned(), "Active".to_owned()),
            ("b".to_owned(), "Inactive".to_owned()),
        ]
    );
    for table in ["accounts", "later"] {
        assert_eq!(
            columns_of(&mut target, &copy, table).await,
            columns_of(&mut db, ctx.mysql_database(), table).await,
            "{table}: the target's columns are the source's"
        );
    }
    worker.stop().await.unwrap();
}

/// Updates rows the copy has not reached yet while it runs (so PostgreSQL loads chunks through
/// its staging table), then adds a column in the middle of the copy: staging follows the
/// table's new shape. Before, the `COPY` into the cached staging table failed the task.
#[tokio::test(flavor = "multi_thread")]
async fn a_column_added_in_the_middle_of_a_copy_through_staging_reaches_postgresql() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE wide (id INT PRIMARY KEY, v INT NOT NULL, note VARCHAR(20))")
        .await
        .unwrap();
    fill(&mut db, "wide", 20_000, |i| format!("({i}, {i}, 'n{i}')")).await;
    let (target, target_db) = Target::Postgresql.of(&ctx);
    let (id, _) = api
        .start_task(
            "sync",
            config(
                &ctx,
                target,
                &target_db,
                json!({"chunk_rows": 500, "parallel": 1}),
            ),
        )
        .await
        .unwrap();
    // Updates all over the table: rows of chunks not yet loaded get there first.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let mut db = ctx.mysql().await.unwrap();
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let id = (n * 7919) % 20_000 + 1;
                db.query_drop(format!("UPDATE wide SET v = v + 1 WHERE id = {id}"))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let worker = InProcessWorker::start(&api.state);
    api.wait_chunks(&id, 4, STALL).await.unwrap();
    db.query_drop("ALTER TABLE wide ADD COLUMN extra INT NOT NULL DEFAULT 7")
        .await
        .unwrap();
    db.query_drop("UPDATE wide SET extra = id % 5 WHERE id % 3 = 0")
        .await
        .unwrap();
    api.wait_copied(&id, STALL).await.unwrap();
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    caught_up(&api, &id, &mut db).await;
    verifies_clean(&api, &id).await;
    worker.stop().await.unwrap();
}

/// The source's key becomes `(id, tenant)`: a second row with the same id arrives on both
/// targets as a row of its own, and both verify clean. Before, PostgreSQL failed with 42P10
/// and MariaDB merged the rows on the old key.
async fn a_primary_key_change_is_followed(engine: Target) {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE t (id INT NOT NULL, tenant INT NOT NULL, v TEXT, PRIMARY KEY (id))",
    )
    .await
    .unwrap();
    db.query_drop("INSERT INTO t VALUES (1, 1, 'one'), (2, 1, 'two')")
        .await
        .unwrap();
    let (target, target_db) = engine.of(&ctx);
    let (id, _) = api
        .start_task("sync", config(&ctx, target, &target_db, json!({})))
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_copied(&id, STALL).await.unwrap();
    db.query_drop("ALTER TABLE t DROP PRIMARY KEY, ADD PRIMARY KEY (id, tenant)")
        .await
        .unwrap();
    db.query_drop("INSERT INTO t VALUES (1, 2, 'one, second tenant')")
        .await
        .unwrap();
    db.query_drop("UPDATE t SET v = 'first tenant' WHERE id = 1 AND tenant = 1")
        .await
        .unwrap();
    db.query_drop("DELETE FROM t WHERE id = 2").await.unwrap();
    caught_up(&api, &id, &mut db).await;
    let v = verifies_clean(&api, &id).await;
    assert_eq!(v["report"]["tables"][0]["source_rows"], 2, "{v}");
    let t = api.task(&id).await.unwrap();
    assert_eq!(t["state"], "incremental", "{t}");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_key_change_is_followed_on_postgresql() {
    a_primary_key_change_is_followed(Target::Postgresql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_primary_key_change_is_followed_on_mariadb() {
    a_primary_key_change_is_followed(Target::Mariadb).await;
}

/// A copy is stopped halfway, a column is dropped on the source, and the task starts again:
/// its stream still has the column until it reaches the `DROP`, so the chunks it reads now
/// must not name it. Before, every chunk read failed with error 1054 and the task restarted
/// forever without reaching the statement.
#[tokio::test(flavor = "multi_thread")]
async fn a_column_dropped_while_a_copy_is_stopped_does_not_stall_it() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE big (id INT PRIMARY KEY, keep_me INT, drop_me VARCHAR(20))")
        .await
        .unwrap();
    fill(&mut db, "big", 30_000, |i| {
        format!("({i}, {i}, 'gone {i}')")
    })
    .await;
    let (id, _) = api
        .start_task(
            "sync",
            config(
                &ctx,
                ctx.postgres_target().unwrap(),
                "copy",
                json!({"chunk_rows": 200, "parallel": 1}),
            ),
        )
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_chunks(&id, 3, STALL).await.unwrap();
    worker.stop().await.unwrap();
    let t = api.task(&id).await.unwrap();
    assert_eq!(
        t["state"], "full_sync",
        "stopped in the middle of the copy: {t}"
    );
    db.query_drop("ALTER TABLE big DROP COLUMN drop_me")
        .await
        .unwrap();
    db.query_drop("UPDATE big SET keep_me = -id WHERE id % 1000 = 0")
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_copied(&id, STALL).await.unwrap();
    caught_up(&api, &id, &mut db).await;
    verifies_clean(&api, &id).await;
    worker.stop().await.unwrap();
}

/// A keyless table is loaded, and the worker crashes before the chunk is marked done: the next
/// worker loads it again. Its rows replace the first load's instead of doubling them.
async fn a_keyless_table_loaded_twice_is_not_doubled(engine: Target) {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE log (at INT, what VARCHAR(20))")
        .await
        .unwrap();
    db.query_drop("INSERT INTO log VALUES (1, 'a'), (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let (target, target_db) = engine.of(&ctx);
    let (id, _) = api
        .start_task("sync", config(&ctx, target, &target_db, json!({})))
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_copied(&id, STALL).await.unwrap();
    worker.stop().await.unwrap();
    // The crash: the rows are on the target, the store does not know the chunk is done.
    let store = api.state.store();
    let records = store.copy_records(&id).await.unwrap();
    assert_eq!(records.len(), 1);
    store.put_copy_plan(&id, &records[0].plan).await.unwrap();
    assert!(store.copy_records(&id).await.unwrap()[0].done.is_empty());
    db.query_drop("INSERT INTO log VALUES (3, 'c')")
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    caught_up(&api, &id, &mut db).await;
    let v = verifies_clean(&api, &id).await;
    assert_eq!(v["report"]["tables"][0]["target_rows"], 4, "{v}");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_table_loaded_twice_is_not_doubled_on_postgresql() {
    a_keyless_table_loaded_twice_is_not_doubled(Target::Postgresql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keyless_table_loaded_twice_is_not_doubled_on_mariadb() {
    a_keyless_table_loaded_twice_is_not_doubled(Target::Mariadb).await;
}

async fn checkpoint(api: &TestApi, id: &InstanceId) -> Value {
    api.task(id).await.unwrap()["checkpoint"]["position"].clone()
}

/// A sync worker paused (SIGSTOP) under a write load past its lease, another worker taking
/// over, and the first one woken (SIGCONT): it commits nothing stale over the newer rows, and
/// the target verifies clean.
#[tokio::test(flavor = "multi_thread")]
async fn a_sync_worker_paused_past_its_lease_leaves_no_difference() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE hot (id INT PRIMARY KEY, v BIGINT NOT NULL)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=200).map(|i| format!("({i}, 0)")).collect();
    db.query_drop(format!("INSERT INTO hot VALUES {}", values.join(",")))
        .await
        .unwrap();
    let (id, _) = api
        .start_task(
            "sync",
            config(
                &ctx,
                ctx.postgres_target().unwrap(),
                "copy",
                json!({"apply": "transactional"}),
            ),
        )
        .await
        .unwrap();
    let first = ctx.worker_process(15).unwrap();
    api.wait_copied(&id, STALL).await.unwrap();
    // The same few rows, over and over: a stale batch would overwrite newer values.
    let running = Arc::new(AtomicBool::new(true));
    let writes = Arc::new(AtomicU64::new(0));
    let load = {
        let mut db = ctx.mysql().await.unwrap();
        let (running, writes) = (Arc::clone(&running), Arc::clone(&writes));
        tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                n += 1;
                db.query_drop(format!(
                    "UPDATE hot SET v = {n} WHERE id IN ({}, {}, {})",
                    n % 200 + 1,
                    (n * 7) % 200 + 1,
                    (n * 13) % 200 + 1
                ))
                .await
                .unwrap();
                writes.store(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    progressing("the apply to be under way", STALL, || async {
        Ok(if writes.load(Ordering::Relaxed) > 500 {
            Step::Done(())
        } else {
            Step::At(writes.load(Ordering::Relaxed).to_string())
        })
    })
    .await
    .unwrap();
    first.signal("STOP").unwrap();
    let paused_at = checkpoint(&api, &id).await;
    let second = ctx.worker_process(15).unwrap();
    progressing("the takeover", STALL, || async {
        let lease = api.state.store().get_lease(&id).await?.unwrap();
        let now = checkpoint(&api, &id).await;
        Ok(if lease.token >= 2 && now != paused_at {
            Step::Done(())
        } else {
            Step::At(format!("token {}, checkpoint {now}", lease.token))
        })
    })
    .await
    .unwrap();
    // The load stops and the second worker applies everything: from here on nothing would
    // heal a stale batch the first one committed when it wakes.
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    caught_up(&api, &id, &mut db).await;
    first.signal("CONT").unwrap();
    // Whatever the woken worker might still commit shows now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    verifies_clean(&api, &id).await;
    drop((first, second));
}

/// The fence of a target write, against the real targets: a guard that refuses (a lease that
/// is ending) rolls the transaction back before its `COMMIT`, so nothing of it lands; one that
/// allows commits. A worker woken after its lease expired is stopped exactly there.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_write_guard_commits_nothing_on_either_target() {
    use ferry_domain::change::ObjectName;
    use ferry_domain::convert::TargetEngine;
    use ferry_domain::schema::{ColumnDef, TableDef};
    use ferry_domain::sync::TargetTable;
    use ferry_domain::value::Value as V;
    use ferry_target::{Target, TargetError, TargetParams};

    let ctx = TestContext::spawn().await.unwrap();
    let env = ctx.env();
    let pg: tokio_postgres::Config = env.postgres_url.parse().unwrap();
    let pg_host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => panic!("no TCP host in {}", env.postgres_url),
    };
    let col = |name: &str, t: &str| ColumnDef {
        name: name.into(),
        column_type: t.into(),
        nullable: false,
        charset: None,
        members: Vec::new(),
        collation: None,
    };
    let copy = format!("{}_copy", ctx.mysql_database());
    for (engine, params, schema) in [
        (
            TargetEngine::Postgresql,
            TargetParams {
                engine: TargetEngine::Postgresql,
                host: pg_host,
                port: pg.get_ports().first().copied().unwrap_or(5432),
                user: pg.get_user().unwrap_or("postgres").into(),
                password: "trusted".into(),
                database: Some(ctx.postgres_database().into()),
                idle_transaction: Some(Duration::from_secs(5)),
            },
            "fenced".to_owned(),
        ),
        (
            TargetEngine::Mariadb,
            TargetParams {
                engine: TargetEngine::Mariadb,
                host: env.mysql_host.clone(),
                port: env.mysql_target_port,
                user: env.mysql_admin_user.clone(),
                password: env.mysql_admin_password.clone(),
                database: None,
                idle_transaction: Some(Duration::from_secs(5)),
            },
            copy.clone(),
        ),
    ] {
        for keyed in [true, false] {
            let def = TableDef {
                columns: vec![col("id", "int"), col("v", "varchar(10)")],
                primary_key: if keyed { vec!["id".into()] } else { Vec::new() },
                collation: None,
            };
            let name = if keyed { "keyed" } else { "keyless" };
            let table = TargetTable::new(
                engine,
                ObjectName {
                    database: ctx.mysql_database().into(),
                    table: name.into(),
                },
                &schema,
                name,
                &def,
                |_| true,
            )
            .unwrap();
            let mut target = Target::connect(&params).await.unwrap();
            target.create_table(&table, &def).await.unwrap();
            let rows = vec![vec![V::Int(1), V::String("a".into())]];
            target.guard(Arc::new(|| false));
            let refused = target.load_rows(&table, &rows).await;
            assert!(
                matches!(refused, Err(TargetError::Fenced)),
                "{engine} {name}: {refused:?}"
            );
            target.guard(Arc::new(|| true));
            let rows_now = target.target_rows(&table).await.unwrap();
            assert!(rows_now.is_empty(), "{engine} {name}: a fenced load landed");
            target.load_rows(&table, &rows).await.unwrap();
            assert_eq!(target.target_rows(&table).await.unwrap().len(), 1);
            target.close().await;
        }
    }
}

/// The target's progress row of task `id` (`ferry.progress`): its binlog position.
async fn target_progress(ctx: &TestContext, engine: Target, id: &InstanceId) -> Option<String> {
    match engine {
        Target::Postgresql => ctx
            .postgres()
            .await
            .unwrap()
            .query_opt(
                "SELECT position FROM ferry.progress WHERE task = $1",
                &[&id.to_string()],
            )
            .await
            .unwrap()
            .map(|r| r.get(0)),
        Target::Mariadb => ctx
            .target_mysql()
            .await
            .unwrap()
            .exec_first(
                "SELECT position FROM ferry.progress WHERE task = ?",
                (id.to_string(),),
            )
            .await
            .unwrap(),
    }
}

/// A worker that dies right after a batch committed on the target and before its checkpoint
/// (it aborts there: `FERRY_FAULT_ABORT_AFTER_APPLY`), under writes to a keyed and a keyless
/// table. The target's progress row, written in the batch's transaction, is ahead of the
/// checkpoint; the next worker resumes from it, so nothing is applied twice (the keyless
/// table's inserts would double) and nothing skipped.
async fn a_crash_between_apply_and_checkpoint_applies_nothing_twice(engine: Target, apply: &str) {
    use ferry_domain::position::Position;
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE keyed (id INT PRIMARY KEY, v BIGINT NOT NULL)")
        .await
        .unwrap();
    db.query_drop("CREATE TABLE keyless (n INT, v BIGINT)")
        .await
        .unwrap();
    fill(&mut db, "keyed", 100, |i| format!("({i}, 0)")).await;
    let (target, target_db) = engine.of(&ctx);
    let (id, _) = api
        .start_task(
            "sync",
            config(&ctx, target, &target_db, json!({"apply": apply})),
        )
        .await
        .unwrap();
    let mut first = ctx
        // The 40th batch in `transactional` mode (one per source transaction); merged
        // batches (200 ms of changes each) are fewer: the 5th.
        .worker_process_with(
            15,
            &[(
                "FERRY_FAULT_ABORT_AFTER_APPLY",
                if apply == "transactional" { "40" } else { "5" }.into(),
            )],
        )
        .unwrap();
    api.wait_copied(&id, STALL).await.unwrap();
    // Each source transaction is a batch: an insert into the keyless table, an update and an
    // insert on the keyed one. It writes on across the crash.
    let writer = {
        let mut db = ctx.mysql().await.unwrap();
        tokio::spawn(async move {
            for n in 1..=300u32 {
                let mut tx = db.start_transaction(Default::default()).await.unwrap();
                tx.query_drop(format!("INSERT INTO keyless VALUES ({n}, {n})"))
                    .await
                    .unwrap();
                tx.query_drop(format!(
                    "UPDATE keyed SET v = v + 1 WHERE id = {}",
                    n % 100 + 1
                ))
                .await
                .unwrap();
                tx.query_drop(format!("INSERT INTO keyed VALUES ({}, {n})", 1000 + n))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            db
        })
    };
    let status = first.exited_within(STALL).unwrap();
    assert!(
        !status.success(),
        "the worker aborted at the fault: {status}\n{}",
        first.log()
    );
    // The crash was where it should be: the target holds a batch the checkpoint does not cover.
    let applied: Position = target_progress(&ctx, engine, &id)
        .await
        .expect("the target records what it applied")
        .parse()
        .unwrap();
    let checkpoint: Position = checkpoint(&api, &id)
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        applied.cmp_file_offset(&checkpoint),
        std::cmp::Ordering::Greater,
        "the target ({applied}) is ahead of the checkpoint ({checkpoint})"
    );
    let second = ctx.worker_process(15).unwrap();
    let mut db = writer.await.unwrap();
    caught_up(&api, &id, &mut db).await;
    let v = verifies_clean(&api, &id).await;
    let rows_of = |table: &str| {
        v["report"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["target"].as_str().is_some_and(|n| n.ends_with(table)))
            .map(|t| t["target_rows"].clone())
            .unwrap_or_else(|| panic!("{table} in {v}"))
    };
    assert_eq!(rows_of(".keyless"), 300, "no insert doubled: {v}");
    assert_eq!(rows_of(".keyed"), 400, "{v}");
    assert!(
        second.log().contains("resuming from what it applied"),
        "the second worker resumed from the target's progress row:\n{}",
        second.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_apply_and_checkpoint_applies_nothing_twice_on_postgresql() {
    a_crash_between_apply_and_checkpoint_applies_nothing_twice(Target::Postgresql, "transactional")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_apply_and_checkpoint_applies_nothing_twice_on_mariadb() {
    a_crash_between_apply_and_checkpoint_applies_nothing_twice(Target::Mariadb, "transactional")
        .await;
}

/// The same with `apply: parallel` (each batch split by key hash over four connections; the
/// keyless table and the progress row on the one that commits last).
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_between_a_parallel_apply_and_its_checkpoint_applies_nothing_twice() {
    a_crash_between_apply_and_checkpoint_applies_nothing_twice(Target::Mariadb, "parallel").await;
}

/// A session on the target that counts a table's rows, as another client of it would.
enum Counter {
    Postgresql(tokio_postgres::Client),
    Mariadb(mysql_async::Conn, String),
}

impl Counter {
    async fn open(ctx: &TestContext, engine: Target) -> Self {
        match engine {
            Target::Postgresql => Self::Postgresql(ctx.postgres().await.unwrap()),
            Target::Mariadb => Self::Mariadb(
                ctx.target_mysql().await.unwrap(),
                format!("{}_copy", ctx.mysql_database()),
            ),
        }
    }

    /// The rows of `table` in the task's target schema (`copy` / `<db>_copy`).
    async fn rows(&mut self, table: &str) -> i64 {
        match self {
            Self::Postgresql(pg) => pg
                .query_one(&format!("SELECT COUNT(*) FROM copy.{table}"), &[])
                .await
                .unwrap()
                .get(0),
            Self::Mariadb(conn, schema) => conn
                .query_first(format!("SELECT COUNT(*) FROM `{schema}`.{table}"))
                .await
                .unwrap()
                .unwrap(),
        }
    }
}

/// A source transaction of 30,000 rows with `batch_rows` at 1,000 is applied in parts as it is
/// read (memory stays bounded: the memory bench measures a million rows), all in one target
/// transaction: a reader polling the target all along sees the table before the transaction or
/// after it, never part of it.
async fn a_big_transaction_is_applied_in_parts_and_seen_whole(engine: Target) {
    const ROWS: i64 = 30_000;
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(40) NOT NULL)")
        .await
        .unwrap();
    fill(&mut db, "big", 10, |i| format!("({i}, 'before')")).await;
    let (target, target_db) = engine.of(&ctx);
    let (id, _) = api
        .start_task(
            "sync",
            config(&ctx, target, &target_db, json!({"batch_rows": 1000})),
        )
        .await
        .unwrap();
    let worker = InProcessWorker::start(&api.state);
    api.wait_copied(&id, STALL).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let poller = {
        let mut counter = Counter::open(&ctx, engine).await;
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            loop {
                let n = counter.rows("big").await;
                seen.lock().unwrap().insert(n);
                if n == ROWS + 10 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut tx = db.start_transaction(Default::default()).await.unwrap();
    for start in (0..ROWS).step_by(1000) {
        let values: Vec<String> = (start..start + 1000)
            .map(|i| format!("({}, 'row {i}')", 100 + i))
            .collect();
        tx.query_drop(format!("INSERT INTO big VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // The apply is waited on by its progress (the checkpoint passing the commit); the poller
    // then sees the whole table and ends.
    caught_up(&api, &id, &mut db).await;
    poller.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [10, ROWS + 10].into_iter().collect(),
        "the target showed the table only before and after the transaction"
    );
    verifies_clean(&api, &id).await;
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_big_transaction_is_applied_in_parts_and_seen_whole_on_postgresql() {
    a_big_transaction_is_applied_in_parts_and_seen_whole(Target::Postgresql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_big_transaction_is_applied_in_parts_and_seen_whole_on_mariadb() {
    a_big_transaction_is_applied_in_parts_and_seen_whole(Target::Mariadb).await;
}

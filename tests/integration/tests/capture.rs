//! Change tracking end to end: a worker claims a started task, streams its source's changes to
//! the task's topic in commit order, and after a stop, a takeover and a simulated crash between
//! producing and checkpointing, the topic holds every change exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::time::Duration;

use axum::http::Method;
use ferry_testkit::{InProcessWorker, TestContext, eventually};
use mysql_async::prelude::Queryable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};

/// How long a wait may see no progress of the task's checkpoint.
const STALL: Duration = Duration::from_secs(120);

/// Every record of the topic, as (payload JSON, idempotency key).
async fn read_all(ctx: &TestContext, topic: &str, expected: usize) -> Vec<(Value, String)> {
    ctx.read_records(topic, expected)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v, k)| (v, k))
        .collect()
}

fn high_watermark(ctx: &TestContext, topic: &str) -> i64 {
    let c: BaseConsumer = ctx.kafka_config().create().unwrap();
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
        .1
}

/// A throwaway MariaDB logging ROW changes with FULL row images and the given
/// `binlog_row_metadata`, with the capture user.
fn throwaway_server(ctx: &TestContext, row_metadata: &str) -> ferry_testkit::ThrowawayMariaDb {
    ferry_testkit::ThrowawayMariaDb::start(
        ctx.env(),
        &[
            "--log-bin=binlog",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            &format!("--binlog-row-metadata={row_metadata}"),
        ],
    )
    .unwrap()
}

/// The failed task's error has `code`, and its message and hint contain the given words.
fn assert_failed(failed: &Value, code: &str, in_message: &str, in_hint: &str) {
    let e = &failed["error"];
    assert_eq!(e["code"], code, "{failed}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or_default()
            .contains(in_message),
        "{failed}"
    );
    assert!(
        e["hint"].as_str().unwrap_or_default().contains(in_hint),
        "{failed}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_reach_the_topic_exactly_once_in_commit_order_across_restarts() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, total DECIMAL(10,2), note VARCHAR(20))",
    )
    .await
    .unwrap();
    db.query_drop("CREATE TABLE ignored (id INT PRIMARY KEY)")
        .await
        .unwrap();

    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database(), "tables": [{"name": "orders"}]}]},
    });
    let (id, topic, w) = api.running_task(config).await.unwrap();
    let state = api.state.clone();

    db.query_drop("INSERT INTO orders VALUES (1, 19.99, 'first')")
        .await
        .unwrap();
    db.query_drop("UPDATE orders SET total = 25.00 WHERE id = 1")
        .await
        .unwrap();
    db.query_drop("INSERT INTO ignored VALUES (1)")
        .await
        .unwrap();
    db.query_drop("DELETE FROM orders WHERE id = 1")
        .await
        .unwrap();
    db.query_drop("START TRANSACTION").await.unwrap();
    db.query_drop("INSERT INTO orders VALUES (2, 5.00, 'two')")
        .await
        .unwrap();
    db.query_drop("INSERT INTO orders VALUES (3, 6.00, 'three')")
        .await
        .unwrap();
    db.query_drop("COMMIT").await.unwrap();

    let records = read_all(&ctx, &topic, 5).await;
    let ops: Vec<&str> = records
        .iter()
        .map(|(r, _)| r["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["c", "u", "d", "c", "c"]);
    assert_eq!(
        records[0].0["after"],
        json!({"id": 1, "total": "19.99", "note": "first"})
    );
    assert_eq!(records[1].0["before"]["total"], "19.99");
    assert_eq!(records[1].0["after"]["total"], "25.00");
    assert_eq!(records[2].0["before"]["id"], 1);
    assert!(records[2].0["after"].is_null());
    assert_eq!(records[3].0["source"]["table"], "orders");
    // Two rows of one transaction share its id and are numbered within it (Debezium's
    // `transaction` block is null by default: the idempotency keys say it).
    let (tx3, i3) = records[3].1.rsplit_once('/').unwrap();
    let (tx4, i4) = records[4].1.rsplit_once('/').unwrap();
    assert_eq!(tx3, tx4);
    assert!(i3.parse::<u32>().unwrap() < i4.parse::<u32>().unwrap());
    assert_eq!(records[3].0["source"]["gtid"].as_str(), Some(tx3));

    // A graceful stop checkpoints; a change made while no worker runs is captured on restart,
    // by another worker, once.
    w.stop().await.unwrap();
    let checkpoint = state
        .store()
        .get_checkpoint(&id)
        .await
        .unwrap()
        .expect("a checkpoint");
    assert_eq!(checkpoint.last_key.as_deref(), Some(records[4].1.as_str()));
    db.query_drop("INSERT INTO orders VALUES (4, 7.00, 'while stopped')")
        .await
        .unwrap();
    let w = InProcessWorker::start(&state);
    let records = read_all(&ctx, &topic, 6).await;
    assert_eq!(records[5].0["after"]["note"], "while stopped");
    w.stop().await.unwrap();

    // A crash after producing and before checkpointing: the checkpoint is behind the topic.
    // The next worker re-reads those transactions and must not produce them again.
    let mut behind = state.store().get_checkpoint(&id).await.unwrap().unwrap();
    behind.position = checkpoint.position.clone();
    behind.last_key = checkpoint.last_key.clone();
    behind.offsets = checkpoint.offsets.clone();
    let outcome = state
        .store()
        .write_checkpoint(&id, &behind, 1)
        .await
        .unwrap();
    assert_eq!(outcome, ferry_store::CheckpointOutcome::Written);
    let w = InProcessWorker::start(&state);
    db.query_drop("INSERT INTO orders VALUES (5, 8.00, 'after the crash')")
        .await
        .unwrap();
    let records = read_all(&ctx, &topic, 7).await;
    let notes: Vec<Value> = records
        .iter()
        .map(|(r, _)| r["after"]["note"].clone())
        .collect();
    assert_eq!(notes[5], "while stopped");
    assert_eq!(notes[6], "after the crash");
    let keys: std::collections::BTreeSet<&String> = records.iter().map(|(_, k)| k).collect();
    assert_eq!(keys.len(), 7, "idempotency keys are unique");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        high_watermark(&ctx, &topic),
        8,
        "nothing was produced twice: seven changes and the delete's tombstone"
    );
    w.stop().await.unwrap();
}

/// Runs a task against a throwaway server, changes a server setting with `setting`, makes a
/// change with `change`, and returns the failed task: a definite source error fails the task with
/// a code and a hint, and nothing is skipped silently.
async fn fails_after(setting: &str, change: &str) -> Value {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let server = throwaway_server(&ctx, "FULL");
    server
        .sql(
            "CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, note VARCHAR(10))",
        )
        .unwrap();
    server
        .sql("INSERT INTO shop.orders VALUES (1, 'one')")
        .unwrap();

    let config = json!({
        "source": server.source(),
        "objects": {"databases": [{"name": "shop"}]},
    });
    let (id, _topic, w) = api.running_task(config).await.unwrap();
    server.sql(setting).unwrap();
    server.sql(change).unwrap();

    let failed = eventually("the task to fail", Duration::from_secs(120), || async {
        let t = api
            .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
            .await?;
        Ok((t.body["state"] == "failed").then_some(t.body))
    })
    .await
    .unwrap();
    let events = ctx.events().await.unwrap();
    assert!(events.iter().any(
        |e| e["detail-type"] == "Task State Changed" && e["detail"]["to"]["state"] == "failed"
    ));
    w.stop().await.unwrap();
    failed
}

#[tokio::test(flavor = "multi_thread")]
async fn statement_based_logging_fails_the_task_with_a_hint() {
    let failed = fails_after(
        "SET GLOBAL binlog_format = 'STATEMENT'",
        "INSERT INTO shop.orders VALUES (2, 'two')",
    )
    .await;
    assert_failed(&failed, "source_stream", "binlog_format", "ROW");
}

#[tokio::test(flavor = "multi_thread")]
async fn minimal_row_images_fail_the_task_instead_of_losing_columns() {
    let failed = fails_after(
        "SET GLOBAL binlog_row_image = 'MINIMAL'",
        "UPDATE shop.orders SET note = 'changed' WHERE id = 1",
    )
    .await;
    assert_failed(&failed, "source_stream", "binlog_row_image", "FULL");
}

#[tokio::test(flavor = "multi_thread")]
async fn transaction_records_frame_each_transaction_with_selected_changes() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE orders (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    db.query_drop("CREATE TABLE other (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database(), "tables": [{"name": "orders"}]}]},
        "delivery": {"transaction_records": true},
    });
    let (_id, topic, w) = api.running_task(config).await.unwrap();

    db.query_drop("INSERT INTO other VALUES (1)").await.unwrap(); // no selected change: no frame
    db.query_drop("START TRANSACTION").await.unwrap();
    db.query_drop("INSERT INTO orders VALUES (1)")
        .await
        .unwrap();
    db.query_drop("INSERT INTO other VALUES (2)").await.unwrap();
    db.query_drop("INSERT INTO orders VALUES (2)")
        .await
        .unwrap();
    db.query_drop("COMMIT").await.unwrap();

    let records = read_all(&ctx, &topic, 4).await;
    let shape: Vec<String> = records
        .iter()
        .map(|(r, _)| {
            r["status"]
                .as_str()
                .or(r["op"].as_str())
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(shape, ["BEGIN", "c", "c", "END"]);
    let tx = records[0].0["id"].clone();
    assert_eq!(records[3].0["id"], tx);
    assert_eq!(records[1].0["transaction"]["id"], tx);
    assert_eq!(
        records[3].0["event_count"], 2,
        "the selected changes of the transaction"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(high_watermark(&ctx, &topic), 4);
    w.stop().await.unwrap();
}

/// Partitioning by key hash: each row's changes stay in one partition in order, and a restart
/// behind the topic produces nothing twice in any partition.
#[tokio::test(flavor = "multi_thread")]
async fn key_hash_partitions_keep_per_row_order_and_exactly_once() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE items (id INT PRIMARY KEY, n INT)")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
        "delivery": {"partitioning": {"type": "key_hash", "partitions": 3}},
    });
    let (id, topic, w) = api.running_task(config).await.unwrap();
    let state = api.state.clone();
    let first_checkpoint = state.store().get_checkpoint(&id).await.unwrap().unwrap();

    let values: Vec<String> = (1..=30).map(|i| format!("({i}, 0)")).collect();
    db.query_drop(format!("INSERT INTO items VALUES {}", values.join(",")))
        .await
        .unwrap();
    db.query_drop("UPDATE items SET n = 1").await.unwrap();
    db.query_drop("UPDATE items SET n = 2 WHERE id <= 10")
        .await
        .unwrap();
    let total = 30 + 30 + 10;
    let watermarks = |ctx: &TestContext| -> Vec<i64> {
        let c: BaseConsumer = ctx.kafka_config().create().unwrap();
        (0..3)
            .map(|p| {
                c.fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .unwrap()
                    .1
            })
            .collect()
    };
    api.wait_for(&id, "every change in the topic", STALL, || async {
        Ok((watermarks(&ctx).iter().sum::<i64>() == total).then_some(()))
    })
    .await
    .unwrap();
    w.stop().await.unwrap();

    // Roll the checkpoint back to before everything and restart: nothing is produced again.
    let mut behind = state.store().get_checkpoint(&id).await.unwrap().unwrap();
    behind.position = first_checkpoint.position.clone();
    // Before everything: every partition's records start at offset 0.
    behind.offsets = Some(vec![0; 3]);
    assert_eq!(
        state
            .store()
            .write_checkpoint(&id, &behind, 1)
            .await
            .unwrap(),
        ferry_store::CheckpointOutcome::Written
    );
    let w = InProcessWorker::start(&state);
    db.query_drop("UPDATE items SET n = 3 WHERE id = 1")
        .await
        .unwrap();
    // The worker re-reads the shared source's binlog from the first checkpoint: everything the
    // tests running beside this one wrote meanwhile (the crash and Kinesis tests write 100k rows
    // each), so the new change may take a while.
    eventually("the new change", Duration::from_secs(180), || async {
        Ok((watermarks(&ctx).iter().sum::<i64>() > total).then_some(()))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_partition = watermarks(&ctx);
    assert_eq!(
        per_partition.iter().sum::<i64>(),
        total + 1,
        "nothing twice: {per_partition:?}"
    );
    assert!(
        per_partition.iter().filter(|n| **n > 0).count() >= 2,
        "rows spread over partitions: {per_partition:?}"
    );

    // Per row: one partition, changes in order.
    let records = read_all_partitions(&ctx, &topic, usize::try_from(total + 1).unwrap()).await;
    let mut seen: std::collections::BTreeMap<i64, (i32, Vec<i64>)> =
        std::collections::BTreeMap::new();
    for (partition, r) in records {
        let row = r["after"]["id"].as_i64().unwrap();
        let entry = seen.entry(row).or_insert((partition, Vec::new()));
        assert_eq!(entry.0, partition, "row {row} moved partitions");
        entry.1.push(r["after"]["n"].as_i64().unwrap());
    }
    assert_eq!(seen[&1].1, [0, 1, 2, 3]);
    assert_eq!(seen[&20].1, [0, 1]);
    w.stop().await.unwrap();
}

/// Every record of the topic, as (partition, payload JSON).
async fn read_all_partitions(ctx: &TestContext, topic: &str, expected: usize) -> Vec<(i32, Value)> {
    ctx.read_records(topic, expected)
        .await
        .unwrap()
        .into_iter()
        .map(|(p, v, _)| (p, v))
        .collect()
}

/// A record over the producer's size limit fails the task with a hint: never a silent drop.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_record_fails_the_task_instead_of_being_dropped() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE docs (id INT PRIMARY KEY, body LONGTEXT)")
        .await
        .unwrap();
    let config = json!({"source": ctx.stack_source(), "objects": {"databases": [{"name": ctx.mysql_database()}]}});
    let (id, _topic, w) = api.running_task(config).await.unwrap();

    // 2 MB of text: over librdkafka's default message.max.bytes (1 MB).
    db.query_drop("INSERT INTO docs VALUES (1, REPEAT('x', 2000000))")
        .await
        .unwrap();
    let failed = eventually("the task to fail", Duration::from_secs(120), || async {
        let t = api
            .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
            .await?;
        Ok((t.body["state"] == "failed").then_some(t.body))
    })
    .await
    .unwrap();
    assert_failed(
        &failed,
        "kafka",
        "larger than the broker accepts",
        "max.message.bytes",
    );
    w.stop().await.unwrap();
}

/// A row larger than the worker's bound (`FERRY_MAX_ROW_BYTES`) fails the task with a hint
/// before it is encoded: never a silent drop, and nothing of it reaches the topic.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_over_the_workers_bound_fails_the_task_before_encoding() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE docs (id INT PRIMARY KEY, body LONGTEXT)")
        .await
        .unwrap();
    let config = json!({"source": ctx.stack_source(), "objects": {"databases": [{"name": ctx.mysql_database()}]}});
    let (id, topic) = api.start_tracking_task("cdc", config).await.unwrap();
    let mut worker = ctx
        .worker_process_with(15, &[("FERRY_MAX_ROW_BYTES", "65536".into())])
        .unwrap();
    api.wait_state(&id.parse().unwrap(), "incremental", Duration::from_secs(60))
        .await
        .unwrap();
    db.query_drop("INSERT INTO docs VALUES (1, 'small')")
        .await
        .unwrap();
    // The small row is in the topic before the large one comes (the loop that fails on the
    // large row drops what it had not sent yet; a restart would read it again).
    eventually(
        "the small row in the topic",
        Duration::from_secs(60),
        || async {
            Ok(ctx
                .topic_records(&topic)?
                .iter()
                .any(|r| r.row_key.is_some())
                .then_some(()))
        },
    )
    .await
    .unwrap();
    db.query_drop("INSERT INTO docs VALUES (2, REPEAT('x', 200000))")
        .await
        .unwrap();
    let failed = eventually("the task to fail", Duration::from_secs(120), || async {
        let t = api
            .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
            .await?;
        Ok((t.body["state"] == "failed").then_some(t.body))
    })
    .await
    .unwrap();
    assert_failed(
        &failed,
        "row_too_large",
        "more than the worker's bound of 65536",
        "FERRY_MAX_ROW_BYTES",
    );
    let rows: Vec<_> = ctx
        .topic_records(&topic)
        .unwrap()
        .into_iter()
        .filter(|r| r.row_key.is_some())
        .collect();
    assert_eq!(rows.len(), 1, "the small row only");
    // The small row's record: Debezium's envelope with its schema part, far below the bound.
    assert!(rows[0].payload.len() < 8000);
    worker.terminate(Duration::from_secs(10)).unwrap();
}

/// A task on a throwaway server, run once and stopped; `break_it` changes the server while no
/// worker runs; the restarted task must fail with the returned error.
async fn fails_on_restart_after(break_it: &[&str]) -> Value {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let server = throwaway_server(&ctx, "FULL");
    server
        .sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY)")
        .unwrap();
    let config = json!({
        "source": server.source(),
        "objects": {"databases": [{"name": "shop"}]},
    });
    let (id, _topic, w) = api.running_task(config).await.unwrap();
    w.stop().await.unwrap();
    for sql in break_it {
        server.sql(sql).unwrap();
    }
    if break_it.iter().any(|s| s.starts_with("PURGE")) {
        // Purging waits for the binlog checkpoint: retried until the first file is gone.
        server.purge_first_binlog().unwrap();
    }
    let w = InProcessWorker::start(&api.state);
    let failed = eventually("the task to fail", Duration::from_secs(120), || async {
        let t = api
            .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
            .await?;
        Ok((t.body["state"] == "failed").then_some(t.body))
    })
    .await
    .unwrap();
    w.stop().await.unwrap();
    failed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purged_binlog_fails_the_task_with_a_hint() {
    // MariaDB keeps a binlog until its binlog checkpoint has passed it: flush until the first
    // file is really gone (checked by the helper).
    let failed = fails_on_restart_after(&[
        "INSERT INTO shop.orders VALUES (1)",
        "FLUSH BINARY LOGS",
        "FLUSH BINARY LOGS",
        "FLUSH BINARY LOGS",
        "PURGE BINARY LOGS TO 'binlog.000004'",
    ])
    .await;
    assert_failed(
        &failed,
        "binlog_purged",
        "no longer has the binlog",
        "reset",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_replication_privileges_fail_the_task_with_a_hint() {
    let failed = fails_on_restart_after(&[
        "REVOKE REPLICATION SLAVE ON *.* FROM 'ferry_capture'@'%'",
        "FLUSH PRIVILEGES",
    ])
    .await;
    assert_failed(
        &failed,
        "source_access_denied",
        "refused the capture user",
        "REPLICATION SLAVE",
    );
}

/// DDL in the middle of the stream, on a source that names no columns in its binlog
/// (binlog_row_metadata = MINIMAL, MySQL's default): every row before and after each add, drop,
/// modify and change of a column and a table rename decodes with the schema it was written
/// under, from the persisted schema history, also when a restarted worker re-reads all of it.
#[tokio::test(flavor = "multi_thread")]
async fn ddl_mid_stream_decodes_before_and_after_from_the_schema_history() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let server = throwaway_server(&ctx, "MINIMAL");
    server
        .sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT UNSIGNED PRIMARY KEY, note VARCHAR(10), state ENUM('new','paid'))")
        .unwrap();
    let config = json!({
        "source": server.source(),
        "objects": {"databases": [{"name": "shop"}], "operations": ["insert", "update", "delete", "ddl"]},
    });
    let (id, topic, w) = api.running_task(config).await.unwrap();
    server
        .sql("INSERT INTO shop.orders VALUES (4294967295, 'one', 'paid')")
        .unwrap();
    let first = read_all(&ctx, &topic, 1).await;
    assert_eq!(
        first[0].0["after"],
        json!({"id": 4_294_967_295_u64, "note": "one", "state": "paid"})
    );
    w.stop().await.unwrap();

    // While no worker runs: every kind of change to the table, rows between each.
    server
        .sql(
            "USE shop;
             ALTER TABLE orders ADD COLUMN total DECIMAL(8,2) AFTER id;
             INSERT INTO orders VALUES (2, 9.50, 'two', 'new');
             ALTER TABLE orders DROP COLUMN note;
             INSERT INTO orders VALUES (3, 1.25, 'new');
             ALTER TABLE orders MODIFY total DECIMAL(10,3);
             UPDATE orders SET state = 'paid' WHERE id = 3;
             RENAME TABLE orders TO orders_2026;
             INSERT INTO orders_2026 VALUES (4, 4.00, 'paid');
             ALTER TABLE orders_2026 CHANGE state status ENUM('new','paid','void') NOT NULL;
             INSERT INTO orders_2026 VALUES (5, 2.00, 'void');",
        )
        .unwrap();
    let w = InProcessWorker::start(&api.state);
    // Six rows and five statements.
    let records = read_all(&ctx, &topic, 11).await;
    let rows: Vec<(&str, &Value)> = records
        .iter()
        .filter(|(r, _)| r.get("ddl").is_none())
        .map(|(r, _)| (r["source"]["table"].as_str().unwrap(), &r["after"]))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "orders",
                &json!({"id": 4_294_967_295_u64, "note": "one", "state": "paid"})
            ),
            (
                "orders",
                &json!({"id": 2, "total": "9.50", "note": "two", "state": "new"})
            ),
            ("orders", &json!({"id": 3, "total": "1.25", "state": "new"})),
            (
                "orders",
                &json!({"id": 3, "total": "1.250", "state": "paid"})
            ),
            (
                "orders_2026",
                &json!({"id": 4, "total": "4.000", "state": "paid"})
            ),
            (
                "orders_2026",
                &json!({"id": 5, "total": "2.000", "status": "void"})
            ),
        ]
    );
    let ddl: Vec<&str> = records
        .iter()
        .filter_map(|(r, _)| r["ddl"].as_str())
        .collect();
    assert_eq!(ddl.len(), 5, "{ddl:?}");
    assert!(ddl[3].starts_with("RENAME TABLE"), "{ddl:?}");

    // The history is persisted at each statement's position: a restart from the first
    // checkpoint rebuilds the schema each old row was written under.
    let history = api.state.store().schema_history(&id).await.unwrap();
    assert!(
        history.len() >= 2 + 6,
        "snapshot, table, and one entry per change: {history:?}"
    );
    w.stop().await.unwrap();
    assert_eq!(
        high_watermark(&ctx, &topic),
        11,
        "nothing was produced twice"
    );
}

/// A source with MINIMAL row metadata and a table the history cannot describe fails the task
/// with a hint instead of producing rows with made-up column names.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_nothing_names_fails_the_task_instead_of_guessing_names() {
    let failed = fails_on_restart_after(&[
        "SET GLOBAL binlog_row_metadata = MINIMAL",
        // Created outside the binlog, so the history never hears of it.
        "SET SESSION sql_log_bin = 0; CREATE TABLE shop.unknown_yet (id INT PRIMARY KEY, x INT); SET SESSION sql_log_bin = 1; INSERT INTO shop.unknown_yet VALUES (1, 1)",
    ])
    .await;
    assert_failed(
        &failed,
        "source_stream",
        "no column names",
        "binlog_row_metadata = FULL",
    );
}

/// A consumer written with a client that is not Ferry's (Python `confluent-kafka`) reads the
/// task's topic and parses the default format, debezium-json.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_confluent_kafka_consumer_reads_the_default_format() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE accounts (id BIGINT UNSIGNED PRIMARY KEY, owner VARCHAR(20), balance DECIMAL(12,2), opened DATETIME(3), tags SET('vip','new'), doc JSON)")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
    });
    let (_id, topic, w) = api.running_task(config).await.unwrap();
    db.query_drop("INSERT INTO accounts VALUES (18446744073709551615, 'Zoë', 1234567890.12, '2026-11-22 03:04:05.678', 'vip,new', '{\"a\": [1, 2]}')")
        .await
        .unwrap();
    db.query_drop("UPDATE accounts SET balance = 0.01 WHERE owner = 'Zoë'")
        .await
        .unwrap();
    db.query_drop("DELETE FROM accounts").await.unwrap();
    // Wait until Ferry's own reader sees all three, then let the other client read them.
    ctx.read_records(&topic, 3).await.unwrap();

    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("consumers/read_debezium.py");
    let out = std::process::Command::new(&ctx.env().python)
        .arg(&script)
        .args([
            &ctx.env().kafka_bootstrap,
            &topic,
            &ctx.group("python"),
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Python consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ops: Vec<&str> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["op"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["c", "u", "d"]);
    let after = &records[0]["after"];
    // Debezium's default `bigint.unsigned.handling.mode` (long) wraps past 2^63 - 1.
    assert_eq!(after["id"], json!(-1));
    assert_eq!(after["owner"], "Zoë");
    assert_eq!(after["balance"], "1234567890.12");
    assert_eq!(records[1]["after"]["balance"], "0.01");
    assert_eq!(records[2]["before"]["owner"], "Zoë");
    assert!(records[2]["after"].is_null());
    assert_eq!(records[0]["key"], json!({"id": -1}));
    assert!(
        records[0]["idempotency_key"]
            .as_str()
            .unwrap()
            .contains('/')
    );
    w.stop().await.unwrap();
}

/// The DTS Avro format through the worker, in both value mappings: each record decodes with
/// its shipped schema (the published one for `compatible`, Ferry's earlier one for `readable`,
/// which the topics made before keep).
#[tokio::test(flavor = "multi_thread")]
async fn dts_avro_records_decode_with_the_shipped_schema() {
    use apache_avro::types::Value as Avro;
    use ferry_domain::task_config::Values;
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE items (id INT PRIMARY KEY, price DECIMAL(6,2), name VARCHAR(20))")
        .await
        .unwrap();
    let version: String = db.query_first("SELECT VERSION()").await.unwrap().unwrap();
    for (values, fields_branch) in [(Values::Readable, 1), (Values::Compatible, 2)] {
        let config = json!({
            "source": ctx.stack_source(),
            "objects": {"databases": [{"name": ctx.mysql_database()}]},
            "delivery": {"format": "dts-avro", "values": values},
        });
        let (_id, topic, w) = api.running_task(config).await.unwrap();
        db.query_drop("INSERT INTO items VALUES (7, 12.50, 'lamp')")
            .await
            .unwrap();
        db.query_drop("DELETE FROM items").await.unwrap();
        let records = ctx.read_raw_records(&topic, 2).await.unwrap();
        let schema = ferry_kafka::format::dts_avro::schema_for(values).unwrap();
        let decoded: Vec<Avro> = records
            .iter()
            .map(|(_, payload, _)| {
                apache_avro::from_avro_datum(schema, &mut payload.as_slice(), None).unwrap()
            })
            .collect();
        let field = |v: &Avro, name: &str| -> Avro {
            let Avro::Record(fields) = v else {
                panic!("a record")
            };
            fields.iter().find(|(k, _)| k == name).unwrap().1.clone()
        };
        assert_eq!(
            field(&decoded[0], "operation"),
            Avro::Enum(0, "INSERT".into())
        );
        assert_eq!(
            field(&decoded[1], "operation"),
            Avro::Enum(2, "DELETE".into())
        );
        assert_eq!(
            field(&decoded[0], "objectName"),
            Avro::Union(
                1,
                Box::new(Avro::String(format!("{}.items", ctx.mysql_database())))
            )
        );
        assert!(
            matches!(field(&decoded[0], "fields"), Avro::Union(b, _) if b == fields_branch),
            "{values:?}: the fields' branch"
        );
        let Avro::Union(2, after) = field(&decoded[0], "afterImages") else {
            panic!("an after image")
        };
        let Avro::Array(values_of_row) = *after else {
            panic!("values")
        };
        let Avro::Union(3, price) = &values_of_row[1] else {
            panic!("a Decimal")
        };
        assert_eq!(field(price, "value"), Avro::String("12.50".into()));
        assert_eq!(
            field(&decoded[1], "afterImages"),
            Avro::Union(0, Box::new(Avro::Null))
        );
        if values == Values::Compatible {
            // DTS's own: the source's version, `offset@file index`, the key in pk_uk_info.
            let Avro::Record(source) = field(&decoded[0], "source") else {
                panic!("a source")
            };
            assert_eq!(source[1].1, Avro::String(version.clone()));
            let Avro::String(at) = field(&decoded[0], "sourcePosition") else {
                panic!("a position")
            };
            assert!(
                at.split_once('@')
                    .is_some_and(|(o, f)| o.parse::<u64>().is_ok() && f.parse::<u64>().is_ok()),
                "{at}"
            );
            let Avro::Map(tags) = field(&decoded[0], "tags") else {
                panic!("tags")
            };
            assert_eq!(
                tags.get("pk_uk_info"),
                Some(&Avro::String(r#"{"PRIMARY":["id"]}"#.into()))
            );
            let Avro::Union(2, name) = &values_of_row[2] else {
                panic!("a Character")
            };
            assert_eq!(field(name, "charset"), Avro::String("utf8mb4".into()));
        }
        w.stop().await.unwrap();
    }
}

/// A row filter on a tracked table: only matching rows reach the topic; an update whose row
/// leaves the filter arrives as a delete (with its tombstone), one whose row enters it as a
/// create, so a consumer materializing the topic holds exactly the filtered rows.
#[tokio::test(flavor = "multi_thread")]
async fn a_row_filter_delivers_the_rows_that_match_and_their_moves_across_it() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE orders (id INT PRIMARY KEY, total DECIMAL(10,2), status VARCHAR(10))",
    )
    .await
    .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database(),
            "tables": [{"name": "orders", "filter": "total > 10 AND status <> 'test'"}]}]},
    });
    let (id, topic, w) = api.running_task(config).await.unwrap();
    for sql in [
        "INSERT INTO orders VALUES (1, 5.00, 'open'), (2, 50.00, 'open'), (3, 99.00, 'test')",
        "UPDATE orders SET total = 60.00 WHERE id = 1", // enters: a create
        "UPDATE orders SET total = 55.00 WHERE id = 2", // stays: an update
        "UPDATE orders SET status = 'test' WHERE id = 2", // leaves: a delete
        "UPDATE orders SET total = 1.00 WHERE id = 3",  // outside before and after: nothing
        "DELETE FROM orders WHERE id = 3",              // outside: nothing
        "INSERT INTO orders VALUES (4, 11.00, 'open')",
    ] {
        db.query_drop(sql).await.unwrap();
    }
    // 2 create, 1 create, 2 update, 2 delete (its tombstone, which this reader skips, is
    // counted below), 4 create.
    let records = ctx.read_raw_records(&topic, 5).await.unwrap();
    let seen: Vec<(String, Option<u64>)> = records
        .iter()
        .map(|(_, payload, _)| {
            let v = ferry_testkit::change_json(Some(payload)).unwrap_or(Value::Null);
            let id = v["after"]["id"].as_u64().or(v["before"]["id"].as_u64());
            (v["op"].as_str().unwrap_or_default().to_owned(), id)
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("c".to_owned(), Some(2)),
            ("c".to_owned(), Some(1)),
            ("u".to_owned(), Some(2)),
            ("d".to_owned(), Some(2)),
            ("c".to_owned(), Some(4)),
        ]
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        high_watermark(&ctx, &topic),
        6,
        "nothing of the rows outside the filter"
    );
    w.stop().await.unwrap();

    // A filter Ferry cannot decide identically on the snapshot and the binlog is refused when
    // the task is configured, naming the part.
    let refused = api
        .call(
            Method::PUT,
            &format!("/v1/instances/{id}/task/objects"),
            Some(json!({"databases": [{"name": ctx.mysql_database(),
                "tables": [{"name": "orders", "filter": "total > 0 AND SLEEP(1) = 0"}]}]})),
        )
        .await
        .unwrap();
    assert_eq!(refused.status.as_u16(), 422, "{}", refused.body);
    let text = refused.body.to_string();
    assert!(
        text.contains("function call") && text.contains("filter"),
        "{text}"
    );
}

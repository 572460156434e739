//! The change-tracking paths a review found losing, duplicating or leaking data (issue 15, A1–A5),
//! each reproduced against the real stack: whatever record is last in a topic (a heartbeat
//! included), every kind of restart resumes exactly once; a reset with the source's binlog
//! reset under it misses nothing; account statements never reach the topic; a worker paused
//! past its lease writes nothing after the worker that took over.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::time::Duration;

use axum::http::{Method, StatusCode};
use ferry_domain::id::InstanceId;
use ferry_testkit::{Step, TestApi, TestContext, ThrowawayMariaDb, exactly_once, progressing};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const FORMATS: [&str; 4] = ["debezium-json", "canal-json", "maxwell-json", "dts-avro"];
const STALL: Duration = Duration::from_secs(90);
/// The lease of the worker that runs eight tasks at once: its renewals share the local
/// DynamoDB endpoint (one request at a time) with every other test on a loaded machine.
const TTL_MANY: u32 = 30;

async fn call_ok(api: &TestApi, method: Method, path: &str, body: Option<Value>) -> Value {
    let a = api.call(method.clone(), path, body).await.unwrap();
    assert!(
        a.status.is_success(),
        "{method} {path}: {} {}",
        a.status,
        a.text
    );
    a.body
}

/// Inserts `n` rows into `events` in one transaction, ids after `written`.
async fn write(db: &mut mysql_async::Conn, written: &mut u64, n: u64) {
    let values: Vec<String> = (*written + 1..=*written + n)
        .map(|id| format!("({id}, 'change {id}')"))
        .collect();
    db.query_drop(format!("INSERT INTO events VALUES {}", values.join(",")))
        .await
        .unwrap();
    *written += n;
}

/// Waits until `topic` holds `rows` row records and, when `heartbeat_last`, partition 0 ends
/// with a heartbeat; fails when neither the topic nor the task's checkpoint advances (a worker
/// catching up with the busy shared binlog is progress).
async fn wait_topic(
    ctx: &TestContext,
    api: &TestApi,
    id: &InstanceId,
    topic: &str,
    rows: u64,
    heartbeat_last: bool,
) {
    api.wait_for(id, &format!("{rows} rows in {topic}"), STALL, || async {
        let records = ctx.topic_records(topic)?;
        let have = records.iter().filter(|r| r.row_key.is_some()).count() as u64;
        let last_is_heartbeat = records
            .iter()
            .rfind(|r| r.partition == 0)
            .is_some_and(ferry_testkit::TopicRecord::is_heartbeat);
        Ok((have >= rows && (last_is_heartbeat || !heartbeat_last)).then_some(()))
    })
    .await
    .unwrap();
}

/// Every phase ends with a topic's last record a heartbeat (in the formats that carry them),
/// then the worker goes away in one of four ways: the task stopped and started through the
/// API, SIGTERM and a new worker, SIGKILL and a takeover after the lease, and a crash whose
/// checkpoint is behind the topic. Before Ferry read heartbeat keys, the first restart failed
/// every task with `topic_tail`.
#[tokio::test(flavor = "multi_thread")]
async fn whatever_record_is_last_every_kind_of_restart_resumes_exactly_once() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE events (id BIGINT PRIMARY KEY, note VARCHAR(40))")
        .await
        .unwrap();
    let mut tasks: Vec<(InstanceId, String, &str)> = Vec::new();
    for format in FORMATS {
        for partitioning in [
            json!({"type": "single"}),
            json!({"type": "key_hash", "partitions": 3}),
        ] {
            let config = json!({
                "source": ctx.stack_source(),
                "objects": {"databases": [{"name": ctx.mysql_database(), "tables": [{"name": "events"}]}]},
                "delivery": {"format": format, "partitioning": partitioning,
                             "heartbeat_records": true, "transaction_records": true},
            });
            let (id, topic) = api.start_tracking_task(format, config).await.unwrap();
            tasks.push((id.parse().unwrap(), topic, format));
        }
    }
    let mut worker = ctx.worker_process(TTL_MANY).unwrap();
    for (id, ..) in &tasks {
        api.wait_state(id, "incremental", STALL).await.unwrap();
    }
    let mut written = 0;
    for phase in ["api restart", "sigterm", "takeover", "crash"] {
        write(&mut db, &mut written, 7).await;
        for (id, topic, format) in &tasks {
            // Canal's and Maxwell's formats carry rows only: their last record is a row.
            let heartbeats = matches!(*format, "debezium-json" | "dts-avro");
            wait_topic(&ctx, &api, id, topic, written, heartbeats).await;
        }
        match phase {
            "api restart" => {
                for (id, ..) in &tasks {
                    call_ok(
                        &api,
                        Method::POST,
                        &format!("/v1/instances/{id}/task/stop"),
                        None,
                    )
                    .await;
                    api.wait_state(id, "stopped", STALL).await.unwrap();
                }
                // A change while stopped.
                write(&mut db, &mut written, 3).await;
                for (id, ..) in &tasks {
                    call_ok(
                        &api,
                        Method::POST,
                        &format!("/v1/instances/{id}/task/start"),
                        None,
                    )
                    .await;
                }
            }
            "sigterm" => {
                let status = worker.terminate(Duration::from_secs(60)).unwrap();
                assert!(status.success(), "the worker exits cleanly: {status}");
                write(&mut db, &mut written, 3).await;
                worker = ctx.worker_process(TTL_MANY).unwrap();
            }
            "takeover" => {
                worker.kill_hard().unwrap();
                write(&mut db, &mut written, 3).await;
                worker = ctx.worker_process(TTL_MANY).unwrap();
            }
            _ => {
                // The worker produced and crashed before checkpointing: its checkpoint is
                // behind what the topic holds (the tail is a heartbeat or a COMMIT).
                worker.kill_hard().unwrap();
                for (id, ..) in &tasks {
                    let store = api.state.store();
                    let mut c = store.get_checkpoint(id).await.unwrap().unwrap();
                    let first = store.schema_history(id).await.unwrap();
                    c.position = first
                        .iter()
                        .map(|(p, _, _)| p.clone())
                        .min_by(|a, b| a.cmp_file_offset(b))
                        .unwrap();
                    c.last_key = None;
                    // A checkpoint without topic offsets (as written before Ferry kept them):
                    // the restart skips by the topic's last record, the rule this test is
                    // about; the record-by-record comparison has its own tests (crash.rs).
                    c.offsets = None;
                    let v = api.task(id).await.unwrap()["config_version"]
                        .as_u64()
                        .unwrap();
                    store.write_checkpoint(id, &c, v).await.unwrap();
                }
                write(&mut db, &mut written, 3).await;
                worker = ctx.worker_process(TTL_MANY).unwrap();
            }
        }
    }
    write(&mut db, &mut written, 5).await;
    for (id, topic, _) in &tasks {
        wait_topic(&ctx, &api, id, topic, written, false).await;
        let t = api.task(id).await.unwrap();
        assert_ne!(t["state"], "failed", "{t}");
        // Whatever the second worker might still produce would show now.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let records = ctx.topic_records(topic).unwrap();
        if let Err(e) = exactly_once(&records, usize::try_from(written).unwrap()) {
            panic!("{topic} ({}): {e}", t["config"]["delivery"]);
        }
    }
    drop(worker);
}

fn throwaway(ctx: &TestContext, server_id: u32) -> ThrowawayMariaDb {
    ThrowawayMariaDb::capture_source(ctx.env(), &[&format!("--server-id={server_id}")]).unwrap()
}

/// Rows of `shop.orders` in `topic`, by id, in order.
async fn order_ids(ctx: &TestContext, topic: &str, rows: usize) -> Vec<u64> {
    ctx.read_records(topic, rows)
        .await
        .unwrap()
        .iter()
        .map(|(_, r, _)| r["after"]["id"].as_u64().unwrap())
        .collect()
}

/// The task is reset (the hint of a purged binlog), the source's binlog is reset under it
/// (`RESET MASTER`: file numbers start again below the old topic's tail), and the task is
/// configured and started again: every new change arrives, in a new topic generation. Before,
/// the old topic's tail (binlog.000004) covered the new binlog.000001 and they were skipped.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_reset_and_reset_master_every_new_change_arrives() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let server = throwaway(&ctx, 7);
    server
        .sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, note TEXT)")
        .unwrap();
    let config = json!({
        "source": server.source(),
        "objects": {"databases": [{"name": "shop"}]},
    });
    let (id, first_topic, w) = api.running_task(config.clone()).await.unwrap();
    for i in 1..=4 {
        server
            .sql(&format!(
                "INSERT INTO shop.orders VALUES ({i}, 'before'); FLUSH BINARY LOGS"
            ))
            .unwrap();
    }
    assert_eq!(order_ids(&ctx, &first_topic, 4).await, [1, 2, 3, 4]);
    w.stop().await.unwrap();

    call_ok(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/reset"),
        None,
    )
    .await;
    server.sql("RESET MASTER; DELETE FROM shop.orders").unwrap();
    call_ok(
        &api,
        Method::PUT,
        &format!("/v1/instances/{id}/task"),
        Some(config),
    )
    .await;
    let started = call_ok(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/task/start"),
        None,
    )
    .await;
    let topic = started["task"]["delivery"]["topic"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(topic, first_topic, "a reset starts a new topic generation");
    assert!(topic.ends_with(".g1"), "{topic}");
    let w = ferry_testkit::InProcessWorker::start(&api.state);
    api.wait_state(&id, "incremental", STALL).await.unwrap();
    for i in 11..=13 {
        server
            .sql(&format!("INSERT INTO shop.orders VALUES ({i}, 'after')"))
            .unwrap();
    }
    assert_eq!(order_ids(&ctx, &topic, 3).await, [11, 12, 13]);
    // The old generation stays for its consumers until its retention passes.
    let pending = api.state.store().pending_cleanups().await.unwrap();
    assert!(
        pending
            .iter()
            .any(|c| c.topics == [first_topic.clone()] && c.not_before.is_some()),
        "{pending:?}"
    );
    assert_eq!(ctx.high_watermarks(&first_topic).unwrap(), [4]);
    w.stop().await.unwrap();
}

/// A stopped task pointed at another server without a reset: its checkpoint is a position in
/// the old server's binlog, and the new server never had the transactions after its GTID state
/// (a server of its own, not a replica), so the task fails with `failover_gtid_missing` and a
/// hint, instead of reading the new server from a meaningless position (or skipping its changes
/// by the old topic's tail); the checkpoint stays the old server's.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_pointed_at_a_server_without_its_transactions_fails() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let first = throwaway(&ctx, 21);
    let second = throwaway(&ctx, 22);
    for s in [&first, &second] {
        s.sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY)")
            .unwrap();
    }
    let config = |s: &ThrowawayMariaDb| json!({"source": s.source(), "objects": {"databases": [{"name": "shop"}]}});
    let (id, topic, w) = api.running_task(config(&first)).await.unwrap();
    first.sql("INSERT INTO shop.orders VALUES (1)").unwrap();
    ctx.read_records(&topic, 1).await.unwrap();
    // The second server's GTID sequence is past the first's: only the server can tell it never
    // had the first's transactions.
    second
        .sql(
            &(2..=30)
                .map(|i| format!("INSERT INTO shop.orders VALUES ({i});"))
                .collect::<String>(),
        )
        .unwrap();
    let records = ctx.topic_records(&topic).unwrap();
    assert_eq!(records[0].source.as_deref(), Some("server_id:21"));
    call_ok(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/task/stop"),
        None,
    )
    .await;
    api.wait_state(&id, "stopped", STALL).await.unwrap();
    call_ok(
        &api,
        Method::PUT,
        &format!("/v1/instances/{id}/task"),
        Some(config(&second)),
    )
    .await;
    call_ok(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/task/start"),
        None,
    )
    .await;
    let failed = ferry_testkit::eventually("the task to fail", STALL, || async {
        let t = api.task(&id).await?;
        Ok((t["state"] == "failed").then_some(t))
    })
    .await
    .unwrap();
    assert_eq!(failed["error"]["code"], "failover_gtid_missing", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("server_id:21") && message.contains("server_id:22"),
        "{message}"
    );
    let hint = failed["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("replica") && hint.contains("reset"), "{hint}");
    let checkpoint = api.checkpoint(&id).await.unwrap();
    assert_eq!(checkpoint.source.as_deref(), Some("server_id:21"));
    assert!(
        message.contains(&checkpoint.position.gtid().unwrap().to_string()),
        "{message}"
    );
    w.stop().await.unwrap();
}

/// Account statements with passwords, run with the tracked database as the session's default
/// database, never reach the topic: not as DDL records, not through `/changes`, not in the
/// worker's log, not in DynamoDB. A table's DDL in the same database still does.
#[tokio::test(flavor = "multi_thread")]
async fn account_statements_and_their_passwords_reach_nothing() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE orders (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
    });
    let (id, topic) = api.start_tracking_task("accounts", config).await.unwrap();
    let id: InstanceId = id.parse().unwrap();
    let worker = ctx.worker_process(15).unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();

    let secret = format!("Pw-{}", uuid_like(&ctx));
    let user = format!("u_{}", &ctx.id()[ctx.id().len() - 10..]);
    let role = format!("r_{}", &ctx.id()[ctx.id().len() - 10..]);
    let statements = [
        format!("CREATE USER '{user}'@'%' IDENTIFIED BY '{secret}1'"),
        format!("ALTER USER '{user}'@'%' IDENTIFIED BY '{secret}2'"),
        format!("SET PASSWORD FOR '{user}'@'%' = PASSWORD('{secret}3')"),
        format!(
            "GRANT SELECT ON `{}`.* TO '{user}'@'%' IDENTIFIED BY '{secret}4'",
            ctx.mysql_database()
        ),
        format!("CREATE ROLE {role}"),
        format!("GRANT {role} TO '{user}'@'%'"),
        format!(
            "CREATE SERVER s_{role} FOREIGN DATA WRAPPER mysql OPTIONS (HOST '127.0.0.1', USER 'x', PASSWORD '{secret}5')"
        ),
        format!("DROP SERVER s_{role}"),
        format!("DROP ROLE {role}"),
        format!("DROP USER '{user}'@'%'"),
    ];
    for s in &statements {
        db.query_drop(s).await.unwrap();
    }
    db.query_drop("ALTER TABLE orders ADD COLUMN note TEXT")
        .await
        .unwrap();
    db.query_drop("INSERT INTO orders VALUES (1, 'after the accounts')")
        .await
        .unwrap();

    let records = ctx.read_records(&topic, 2).await.unwrap();
    assert!(
        records[0].1["ddl"]
            .as_str()
            .is_some_and(|d| d.contains("ADD COLUMN note")),
        "the table's DDL is the first record: {:?}",
        records[0].1
    );
    assert_eq!(records[1].1["after"]["note"], "after the accounts");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all = ctx.topic_records(&topic).unwrap();
    assert_eq!(all.len(), 2, "nothing else in the topic");
    for r in &all {
        assert!(
            !String::from_utf8_lossy(&r.payload).contains(&secret),
            "a password in the topic: {}",
            String::from_utf8_lossy(&r.payload)
        );
    }
    let changes = api
        .call(
            Method::GET,
            &format!("/v1/instances/{id}/changes?from=2000-01-01T00:00:00Z"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(changes.status, StatusCode::OK, "{}", changes.text);
    assert!(!changes.text.contains(&secret), "{}", changes.text);
    assert!(!changes.text.contains("IDENTIFIED"), "{}", changes.text);

    // The worker counted what it left out and logged no password.
    let metrics = worker.metrics().await.unwrap();
    let skipped: u64 = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "ferry_statements_skipped_total{{instance=\"{id}\"}} "
            ))
        })
        .unwrap_or_else(|| panic!("no skipped-statement counter: {metrics}"))
        .parse()
        .unwrap();
    // MariaDB does not log every one of them (role grants, servers): most, at least.
    assert!(skipped >= 7, "{skipped} skipped");
    drop(worker);
    let logs = std::fs::read_dir(ctx.env().state_dir.join("test-logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(ctx.id()))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect::<String>();
    assert!(!logs.is_empty());
    assert!(!logs.contains(&secret), "a password in the worker's log");

    // Nothing in the task's DynamoDB table holds it either.
    let scan = ctx
        .dynamodb()
        .await
        .scan()
        .table_name(ctx.dynamo_table())
        .send()
        .await
        .unwrap();
    let items = format!("{:?}", scan.items());
    assert!(items.contains(id.as_str()));
    assert!(!items.contains(&secret), "a password in DynamoDB");
}

/// A random-looking, test-unique word.
fn uuid_like(ctx: &TestContext) -> String {
    ctx.id().chars().rev().take(12).collect()
}

/// A worker paused (SIGSTOP) with records queued, past its lease: another worker takes the task
/// over, and when the first one wakes (SIGCONT) it writes nothing more, so the topic holds
/// every change once and in order.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_paused_past_its_lease_writes_nothing_when_it_wakes() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE events (id BIGINT PRIMARY KEY, note VARCHAR(40))")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database(), "tables": [{"name": "events"}]}]},
    });
    let (id, topic) = api.start_tracking_task("paused", config).await.unwrap();
    let id: InstanceId = id.parse().unwrap();
    let first = ctx.worker_process(15).unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();

    // A steady writer: the first worker always has records in flight when it is paused.
    let writer = tokio::spawn(async move {
        let mut written = 0;
        for _ in 0..400 {
            write(&mut db, &mut written, 50).await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        written
    });
    progressing("the stream to be under way", STALL, || async {
        let w = ctx.high_watermarks(&topic)?;
        Ok(match w.first() {
            Some(n) if *n >= 2_000 => Step::Done(()),
            other => Step::At(format!("{other:?}")),
        })
    })
    .await
    .unwrap();
    let first_worker = api
        .state
        .store()
        .get_lease(&id)
        .await
        .unwrap()
        .unwrap()
        .worker;
    first.signal("STOP").unwrap();
    let paused_at = ctx.high_watermarks(&topic).unwrap();
    let second = ctx.worker_process(15).unwrap();
    // The second worker takes the task over once the lease expired.
    progressing("the takeover", STALL, || async {
        let lease = api.state.store().get_lease(&id).await?.unwrap();
        Ok(if lease.token >= 2 && lease.worker != first_worker {
            Step::Done(())
        } else {
            Step::At(format!("token {}", lease.token))
        })
    })
    .await
    .unwrap();
    first.signal("CONT").unwrap();
    let written = writer.await.unwrap();
    wait_topic(&ctx, &api, &id, &topic, written, false).await;
    // Whatever the woken worker might still send would show now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let records = ctx.topic_records(&topic).unwrap();
    if let Err(e) = exactly_once(&records, usize::try_from(written).unwrap()) {
        panic!("paused at {paused_at:?}: {e}");
    }
    // It noticed its lease was gone — unless its loop had already ended on a transient
    // failure (the local DynamoDB refusing a request under the suite's load) and was waiting to
    // be retried when it was paused: then it had nothing to notice, and the topic above shows
    // it wrote nothing either.
    let log = first.log();
    assert!(
        log.contains("stopped sending")
            || log.contains("lease")
            || log.contains("capture interrupted"),
        "the first worker noticed its lease was gone:\n{log}"
    );
    drop((first, second));
}

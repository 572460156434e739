//! Change tracking through a failover (issue 21): a task whose source is replaced by a replica
//! holding the same GTIDs resumes from its checkpoint's GTID state, with nothing lost or
//! written twice — also the records a killed worker left in the topic after its checkpoint,
//! which name the old server's positions. (A server that lacks the checkpoint's transactions
//! fails the task: `reliability::a_task_pointed_at_a_server_without_its_transactions_fails`.)
//!
//! The servers are a primary/replica pair of throwaway MariaDB servers (GTID replication, the
//! replica logging what it applies), behind a TCP proxy standing for the DNS name the task's
//! endpoint names: the failover repoints it, as DNS would be.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::Method;
use ferry_domain::id::InstanceId;
use ferry_testkit::faults::FaultProxy;
use ferry_testkit::{
    CAPTURE_ARGS, Step, TestApi, TestContext, ThrowawayMariaDb, apply_rows, progressing,
    repairs_reported,
};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

/// How long a wait may see no progress.
const STALL: Duration = Duration::from_secs(90);

/// Transactions `from..to` of the workload, each its own: two new orders, an older one's total
/// raised, every seventh an older one deleted.
async fn write(db: &mut mysql_async::Conn, from: u64, to: u64) {
    for i in from..to {
        let mut sql = format!(
            "START TRANSACTION; INSERT INTO orders VALUES ({}, {i}), ({}, {i}); \
             UPDATE orders SET total = total + 1000 WHERE id = {};",
            2 * i,
            2 * i + 1,
            i
        );
        if i % 7 == 0 {
            sql.push_str(&format!(" DELETE FROM orders WHERE id = {};", i / 2));
        }
        sql.push_str(" COMMIT");
        db.query_drop(sql).await.unwrap();
    }
}

/// Waits until `replica` has applied everything `primary` logged.
fn caught_up(primary: &ThrowawayMariaDb, replica: &ThrowawayMariaDb) {
    let at = primary.query("SELECT @@gtid_binlog_pos").unwrap()[0].clone();
    let waited = replica
        .query(&format!("SELECT MASTER_GTID_WAIT('{at}', 120)"))
        .unwrap();
    assert_eq!(waited[0], "0", "the replica did not reach {at}");
}

/// The task's topic applied in order, as a consumer would: each order's total, and every
/// idempotency key seen twice.
fn applied(ctx: &TestContext, topic: &str) -> (BTreeMap<i64, i64>, Vec<String>, usize) {
    let a = apply_rows(&ctx.topic_records(topic).unwrap(), "total");
    (a.table, a.twice, a.records)
}

/// The idempotency key of the topic's last record but heartbeats.
fn last_record(ctx: &TestContext, topic: &str) -> String {
    ctx.topic_records(topic)
        .unwrap()
        .into_iter()
        .rfind(|r| !r.is_heartbeat())
        .map(|r| r.key)
        .unwrap_or_default()
}

/// Waits until the topic, applied in order, gives `expected`.
async fn topic_reaches(ctx: &TestContext, topic: &str, expected: &BTreeMap<i64, i64>) {
    progressing("the topic reaching the source's rows", STALL, || async {
        let (table, _, n) = applied(ctx, topic);
        Ok(if table == *expected {
            Step::Done(())
        } else {
            Step::At(format!("{n} records, {} rows", table.len()))
        })
    })
    .await
    .unwrap();
}

async fn task(api: &TestApi, id: &InstanceId) -> Value {
    api.call(Method::GET, &format!("/v1/instances/{id}/task"), None)
        .await
        .unwrap()
        .body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_follows_its_source_to_a_promoted_replica_by_gtid() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut primary = ThrowawayMariaDb::capture_source(ctx.env(), &[]).unwrap();
    let mut replica_args: Vec<&str> = CAPTURE_ARGS.to_vec();
    replica_args.push("--log-slave-updates");
    let replica = ThrowawayMariaDb::replica_of(ctx.env(), &primary, 2, &replica_args).unwrap();
    primary.create_shop().unwrap();
    // The name the endpoint gives, pointing at the primary.
    let name = FaultProxy::start(format!("127.0.0.1:{}", primary.port()).parse().unwrap())
        .await
        .unwrap();
    let mut source = primary.source();
    source["port"] = json!(name.port());
    let config = json!({"source": source, "objects": {"databases": [{"name": "shop"}]}});
    let (id, topic) = api.start_tracking_task("failover", config).await.unwrap();
    let id: InstanceId = id.parse().unwrap();
    // The first worker aborts at the first checkpoint it is about to write, once the trigger
    // file exists, over records sent since the stored one, with everything sent acknowledged:
    // those records are in the topic after the stored checkpoint, naming the primary's
    // positions. (A checkpoint due over records the stored one already named — the loop
    // waiting on the broker between two — does not trigger it: stop 28's CI saw that.)
    let trigger = ctx
        .env()
        .state_dir
        .join(format!("{}-abort-before-checkpoint", ctx.id()));
    let mut first = ctx
        .worker_process_with(
            12,
            &[(
                "FERRY_FAULT_ABORT_BEFORE_CHECKPOINT",
                trigger.display().to_string(),
            )],
        )
        .unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();

    // A stream on the primary; the worker dies in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let mut db = primary.shop_writer().await.unwrap();
    let stream = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut i = 1;
            while !stop.load(Ordering::Relaxed) {
                write(&mut db, i, i + 10).await;
                i += 10;
            }
            (db, i)
        }
    });
    progressing("the stream reaching the topic", STALL, || async {
        let (table, _, _) = applied(&ctx, &topic);
        Ok(if table.len() >= 500 {
            Step::Done(())
        } else {
            Step::At(table.len().to_string())
        })
    })
    .await
    .unwrap();
    std::fs::write(&trigger, b"abort").unwrap();
    let status = first.exited_within(STALL).unwrap();
    assert!(!status.success(), "the worker aborted: {status}");
    drop(first);
    let _ = std::fs::remove_file(&trigger);
    let killed = api.checkpoint(&id).await.unwrap();
    let last = last_record(&ctx, &topic);
    assert_ne!(
        killed.last_key.as_deref(),
        Some(last.as_str()),
        "the killed worker left records after its checkpoint (what the failover must reconcile)"
    );
    assert_eq!(killed.source.as_deref(), Some("server_id:7"));
    stop.store(true, Ordering::Relaxed);
    let (db, written) = stream.await.unwrap();
    drop(db);

    // The primary fails once the replica has everything; the name now points at the replica,
    // which is promoted and written to.
    caught_up(&primary, &replica);
    primary.kill().unwrap();
    replica.sql("STOP SLAVE; RESET SLAVE ALL").unwrap();
    name.repoint(format!("127.0.0.1:{}", replica.port()).parse().unwrap())
        .unwrap();
    let second = ctx.worker_process(12).unwrap();
    let mut db = replica.shop_writer().await.unwrap();
    write(&mut db, written, written + 500).await;

    topic_reaches(&ctx, &topic, &replica.shop_orders().await.unwrap()).await;
    // No key twice, but where a worker reported repairing what the broker doubled.
    let events = ctx.events().await.unwrap();
    let (_, twice, _) = applied(&ctx, &topic);
    let reported = repairs_reported(&events, id.as_str());
    assert!(
        twice.len() as u64 <= reported,
        "written twice ({reported} reported as repairs): {twice:?}"
    );

    // The checkpoint is in the new server's binlog, with the whole GTID state.
    let view = task(&api, &id).await;
    assert_eq!(view["state"], "incremental", "{view}");
    let checkpoint = api.checkpoint(&id).await.unwrap();
    assert_eq!(checkpoint.source.as_deref(), Some("server_id:2"));
    let state = replica.query("SELECT @@gtid_binlog_pos").unwrap()[0].clone();
    progressing(
        "the checkpoint reaching the new primary's GTID state",
        STALL,
        || async {
            let c = task(&api, &id).await;
            Ok(if c["checkpoint"]["gtid"] == json!(state) {
                Step::Done(())
            } else {
                Step::At(c["checkpoint"].to_string())
            })
        },
    )
    .await
    .unwrap();
    // The failover is announced, from and to which server, from which GTID state.
    let events = [events, ctx.events().await.unwrap()].concat();
    let failover = events
        .iter()
        .find(|e| e["detail-type"] == "Source Failed Over")
        .unwrap_or_else(|| panic!("no Source Failed Over event: {events:?}"));
    assert_eq!(
        failover["detail"]["from_server"], "server_id:7",
        "{failover}"
    );
    assert_eq!(failover["detail"]["to_server"], "server_id:2", "{failover}");
    assert_eq!(
        failover["detail"]["gtid"],
        json!(killed.position.gtid().unwrap().to_string()),
        "{failover}"
    );
    drop(second);
}

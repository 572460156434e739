//! Backfill into the topic (issue 21): a tracking task copies a 100,000-row table's existing
//! rows into its topic as snapshot reads while a steady load keeps changing it, its worker is
//! killed with SIGKILL in the middle, and a consumer applying the topic in order ends with
//! exactly the source's rows, no idempotency key twice. The API's refusals and cancellation.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use ferry_domain::id::InstanceId;
use ferry_testkit::{
    Step, TestApi, TestContext, apply_rows, change_json, progressing, repairs_reported,
};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const ROWS: u64 = 100_000;
/// How long a wait may see no progress.
const STALL: Duration = Duration::from_secs(120);

/// The workers' lease: short, so the second takes over soon after the first is killed, but
/// long enough that a broker slowed by the whole suite's load does not time records out (the
/// producer holds a record for up to half of it less 2 s, see `ferry_worker::lease`).
const LEASE_TTL: u32 = 20;

/// The topic applied in order: each item's `n`, deleted items gone; the keys seen twice; how
/// many snapshot reads it holds (each marked as Debezium's incremental snapshots mark them).
fn applied(ctx: &TestContext, topic: &str) -> (BTreeMap<i64, i64>, Vec<String>, usize) {
    let records = ctx.topic_records(topic).unwrap();
    for r in records
        .iter()
        .filter(|r| r.key.starts_with("bf/"))
        .take(100)
    {
        let change = change_json(Some(&r.payload)).unwrap();
        assert_eq!(change["op"], "r", "{change}");
        assert_eq!(change["source"]["snapshot"], "incremental", "{change}");
    }
    let a = apply_rows(&records, "n");
    (a.table, a.twice, a.reads)
}

async fn call(
    api: &TestApi,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> ferry_testkit::Answer {
    api.call(method, path, body).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backfill_under_load_survives_a_killed_worker_and_gives_the_source_rows() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let database = ctx.mysql_database();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, n BIGINT NOT NULL, note VARCHAR(40)); \
         CREATE TABLE other (id INT PRIMARY KEY)",
    )
    .await
    .unwrap();
    db.query_drop(format!(
        "INSERT INTO items SELECT seq, seq % 1000, CONCAT('item ', seq) FROM seq_1_to_{ROWS}"
    ))
    .await
    .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": database, "tables": [{"name": "items"}]}]},
    });
    let (id, topic) = api.start_tracking_task("backfill", config).await.unwrap();
    let id: InstanceId = id.parse().unwrap();
    let path = format!("/v1/instances/{id}/task/backfill");
    // Chunks large enough that the load changes rows of a chunk while it is read, after its
    // snapshot: the rows the backfill must leave out.
    let chunks = [("FERRY_BACKFILL_CHUNK_ROWS", "20000".to_owned())];
    let first = ctx.worker_process_with(LEASE_TTL, &chunks).unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();

    // Refused: nothing to show yet, a table the task does not carry, malformed bodies.
    let none = call(&api, Method::GET, &path, None).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND, "{}", none.text);
    let table = |t: &str| json!({"tables": [{"database": database, "table": t}]});
    let other = call(&api, Method::POST, &path, Some(table("other"))).await;
    assert_eq!(
        other.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        other.text
    );
    assert_eq!(
        other.body["error"]["code"], "table_not_selected",
        "{}",
        other.text
    );
    for bad in [
        json!({"tables": []}),
        json!({"tables": [{"database": database, "table": "it*"}]}),
        json!({"table": "items"}),
    ] {
        let answer = call(&api, Method::POST, &path, Some(bad.clone())).await;
        assert!(answer.status.is_client_error(), "{bad}: {}", answer.text);
        assert!(
            answer.body["error"]["hint"].is_string(),
            "{bad}: {}",
            answer.text
        );
    }

    // A steady load: updates all over the table, new rows and deletions.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let k = (i * 7_919) % ROWS + 1;
                let sql = match i % 10 {
                    0 => format!("INSERT INTO items VALUES ({}, {i}, 'new')", ROWS + i),
                    5 => format!("DELETE FROM items WHERE id = {}", (i * 104_729) % ROWS + 1),
                    _ => format!(
                        "UPDATE items SET n = n + 1 WHERE id IN ({k}, {})",
                        ROWS + 1 - k
                    ),
                };
                db.query_drop(sql).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (db, i)
        }
    });

    let asked = call(&api, Method::POST, &path, Some(table("items"))).await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text);
    assert_eq!(asked.body["state"], "pending");
    let again = call(&api, Method::POST, &path, Some(table("items"))).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text);
    assert_eq!(again.body["error"]["code"], "backfill_running");

    // Killed with SIGKILL a third of the way through. A chunk is written once the loop passed
    // its high watermark: a loop catching up with the suite's shared binlog (every test writes
    // into it) writes none for a while, and its checkpoint moving is progress too.
    let chunks_done = |b: &Value| b["progress"][0]["chunks_done"].as_u64().unwrap_or(0);
    let killed_at = progressing("a third of the backfill", STALL, || async {
        let b = call(&api, Method::GET, &path, None).await.body;
        let task = call(&api, Method::GET, &format!("/v1/instances/{id}/task"), None).await;
        let total = b["progress"][0]["chunks_total"]
            .as_u64()
            .unwrap_or(u64::MAX);
        Ok(if chunks_done(&b) * 3 >= total {
            Step::Done(b)
        } else {
            Step::At(format!("{b} at {}", task.body["checkpoint"]["position"]))
        })
    })
    .await
    .unwrap();
    assert_eq!(killed_at["state"], "running", "{killed_at}");
    first.kill_hard().unwrap();
    let second = ctx.worker_process_with(LEASE_TTL, &chunks).unwrap();
    // The new worker first catches up with the stream (a chunk is written once the loop passes
    // its high watermark): its checkpoint moving is progress too.
    let done = progressing("the backfill to finish", STALL, || async {
        let b = call(&api, Method::GET, &path, None).await.body;
        let task = call(&api, Method::GET, &format!("/v1/instances/{id}/task"), None).await;
        Ok(if b["state"] == "done" {
            Step::Done(b)
        } else {
            Step::At(format!(
                "{} {} at {}",
                b["state"],
                chunks_done(&b),
                task.body["checkpoint"]["position"]
            ))
        })
    })
    .await
    .unwrap();
    let progress = &done["progress"][0];
    assert_eq!(progress["chunks_done"], progress["chunks_total"], "{done}");
    assert_eq!(progress["state"], "done", "{done}");
    let task = call(&api, Method::GET, &format!("/v1/instances/{id}/task"), None).await;
    assert_eq!(task.body["backfill"]["state"], "done", "{}", task.text);

    // The load stops; the topic, applied in order, is the source's table.
    stop.store(true, Ordering::Relaxed);
    let (mut db, statements) = load.await.unwrap();
    let rows: Vec<(i64, i64)> = db.query("SELECT id, n FROM items").await.unwrap();
    let expected: BTreeMap<i64, i64> = rows.into_iter().collect();
    progressing("the topic reaching the source's rows", STALL, || async {
        let (table, _, _) = applied(&ctx, &topic);
        Ok(if table == expected {
            Step::Done(())
        } else {
            let missing = expected.keys().filter(|k| !table.contains_key(k)).count();
            let wrong = expected
                .iter()
                .filter(|(k, v)| table.get(k).is_some_and(|t| t != *v))
                .count();
            let extra = table.keys().filter(|k| !expected.contains_key(k)).count();
            Step::At(format!(
                "{missing} missing, {wrong} different, {extra} extra"
            ))
        })
    })
    .await
    .unwrap();
    // No key twice, but where a worker reported repairing what the broker doubled.
    let (_, twice, reads) = applied(&ctx, &topic);
    let reported = repairs_reported(&ctx.events().await.unwrap(), id.as_str());
    assert!(
        twice.len() as u64 <= reported,
        "{} keys twice, {reported} reported as repairs: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    // Every row once at most (rows inserted while the last chunk was read included), and most
    // rows: only those the load changed during their chunk's read are left to the changes.
    assert!(
        reads as u64 >= ROWS / 2 && reads as u64 <= ROWS + statements / 10 + 1 + reported,
        "{reads} snapshot reads, {statements} statements of load"
    );
    let metrics = second.metrics().await.unwrap();
    assert!(
        metrics.contains(&format!("ferry_backfill_rows_total{{instance=\"{id}\"}}")),
        "{metrics}"
    );

    // A finished backfill cannot be cancelled; a new one can, and stays cancelled.
    let late = call(&api, Method::DELETE, &path, None).await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);
    assert_eq!(late.body["error"]["code"], "backfill_finished");
    let next = call(&api, Method::POST, &path, Some(table("items"))).await;
    assert_eq!(next.status, StatusCode::ACCEPTED, "{}", next.text);
    progressing("the second backfill to run", STALL, || async {
        let b = call(&api, Method::GET, &path, None).await.body;
        Ok(if b["state"] == "running" {
            Step::Done(())
        } else {
            Step::At(b.to_string())
        })
    })
    .await
    .unwrap();
    let cancelled = call(&api, Method::DELETE, &path, None).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    assert_eq!(cancelled.body["state"], "cancelled");
    let at_cancel = chunks_done(&cancelled.body);
    // The worker looks every 2 s: after a few looks it has stopped, at most finishing the chunks
    // it was writing; it never writes over the cancellation (a slower machine does less).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let after = call(&api, Method::GET, &path, None).await;
    assert_eq!(after.body["state"], "cancelled", "{}", after.text);
    assert!(
        chunks_done(&after.body) <= at_cancel + 2,
        "{at_cancel} chunks at the cancellation: {}",
        after.text
    );
    drop(second);
}

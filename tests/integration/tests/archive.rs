//! The binlog archive (issue 21): a task with `archive` keeps copying its source's binlog into
//! S3 (moto's, locally) while it is stopped; started again after the server purged the files
//! it needs, it reads them from the archive up to the server's oldest file and goes on from the
//! server, losing and duplicating nothing — a schema change among the purged events included.
//! Without the archive's pieces the same start fails with `binlog_purged`, naming the gap.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use ferry_domain::id::InstanceId;
use ferry_domain::position::BinlogFile;
use ferry_testkit::{
    Step, TestApi, TestContext, ThrowawayMariaDb, apply_rows, progressing, repairs_reported,
};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

/// How long a wait may see no progress.
const STALL: Duration = Duration::from_secs(90);

/// Transactions `from..to`, each its own: a new order, an older one's total raised, every
/// fifth an older one deleted.
async fn write(db: &mut mysql_async::Conn, from: i64, to: i64) {
    for i in from..to {
        let mut sql = format!(
            "START TRANSACTION; INSERT INTO orders (id, total) VALUES ({i}, {i}); \
             UPDATE orders SET total = total + 1000 WHERE id = {};",
            i / 2
        );
        if i % 5 == 0 {
            sql.push_str(&format!(" DELETE FROM orders WHERE id = {};", i / 3));
        }
        sql.push_str(" COMMIT");
        db.query_drop(sql).await.unwrap();
    }
}

async fn topic_reaches(ctx: &TestContext, topic: &str, expected: &BTreeMap<i64, i64>) {
    progressing("the topic reaching the source's rows", STALL, || async {
        let a = apply_rows(&ctx.topic_records(topic).unwrap(), "total");
        Ok(if a.table == *expected {
            Step::Done(())
        } else {
            let differing: Vec<String> = expected
                .iter()
                .filter(|(k, v)| a.table.get(k) != Some(v))
                .map(|(k, v)| format!("{k}: {v} (topic {:?})", a.table.get(k)))
                .chain(
                    a.table
                        .keys()
                        .filter(|k| !expected.contains_key(k))
                        .map(|k| format!("{k}: not in the source")),
                )
                .take(5)
                .collect();
            Step::At(format!(
                "{} records, {} rows of {}; {differing:?}",
                a.records,
                a.table.len(),
                expected.len()
            ))
        })
    })
    .await
    .unwrap();
}

async fn post(api: &TestApi, id: &InstanceId, action: &str) -> Value {
    let answer = api
        .call(
            Method::POST,
            &format!("/v1/instances/{id}/task/{action}"),
            None,
        )
        .await
        .unwrap();
    assert!(answer.status.is_success(), "{action}: {}", answer.text);
    answer.body
}

/// The current (last) binlog file of `server`.
fn current_file(server: &ThrowawayMariaDb) -> BinlogFile {
    server
        .binlog_files()
        .unwrap()
        .last()
        .unwrap()
        .parse()
        .unwrap()
}

/// Purges every binlog file before `file` (MariaDB keeps a file until its binlog checkpoint
/// passed it: flushed and purged again until it is gone).
fn purge_before(server: &ThrowawayMariaDb, file: &BinlogFile) {
    for _ in 0..300 {
        let oldest: BinlogFile = server.binlog_files().unwrap()[0].parse().unwrap();
        if oldest >= *file {
            return;
        }
        server
            .sql(&format!("FLUSH BINARY LOGS; PURGE BINARY LOGS TO '{file}'"))
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("the files before {file} were never purged");
}

/// The checkpoint of a stopped task once its loop ended: the loop notices a stop within a
/// second and writes a last checkpoint then.
async fn settled_checkpoint(api: &TestApi, id: &InstanceId) -> ferry_store::Checkpoint {
    let mut last = api.checkpoint(id).await.unwrap();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = api.checkpoint(id).await.unwrap();
        if now.position == last.position {
            return now;
        }
        last = now;
    }
}

/// Waits until the task's archive holds every piece from its checkpoint to `to`.
async fn archived(ctx: &TestContext, api: &TestApi, id: &InstanceId, to: &BinlogFile) {
    let archive = ctx.archive().await.unwrap();
    let checkpoint = api.checkpoint(id).await.unwrap();
    let prefix = ferry_aws::archive::prefix(id, checkpoint.source.as_deref().unwrap());
    let at = &checkpoint.position;
    progressing("the archive reaching the current file", STALL, || async {
        let pieces: Vec<_> = archive
            .list(&prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        Ok(
            match ferry_aws::archive::plan(&pieces, at.file(), at.offset(), to) {
                Ok(plan) => Step::Done(plan),
                Err(gap) => Step::At(format!("{} pieces: {gap}", pieces.len())),
            },
        )
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_task_resumes_from_the_archive_after_the_server_purged_its_binlog() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let server = ThrowawayMariaDb::capture_source(ctx.env(), &[]).unwrap();
    server.create_shop().unwrap();

    let (id, topic) = api
        .start_tracking_task(
            "archive",
            json!({"source": server.source(), "objects": {"databases": [{"name": "shop"}]},
                   "archive": {"retention_days": 3}}),
        )
        .await
        .unwrap();
    let id: InstanceId = id.parse().unwrap();

    let flush = [("FERRY_ARCHIVE_FLUSH_MS", "300".to_owned())];
    let worker = ctx.worker_process_with(12, &flush).unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();
    let mut db = server.shop_writer().await.unwrap();
    write(&mut db, 1, 200).await;
    topic_reaches(&ctx, &topic, &server.shop_orders().await.unwrap()).await;

    // Stopped, the task's source goes on: files rotate, the table changes shape, and every
    // file the task needs is purged.
    post(&api, &id, "stop").await;
    api.wait_state(&id, "stopped", STALL).await.unwrap();
    let stopped_at = settled_checkpoint(&api, &id).await;
    // Refused, changing nothing: a retention out of range.
    let bad = json!({"source": server.source(), "objects": {"databases": [{"name": "shop"}]},
                     "archive": {"retention_days": 0}});
    let refused = api
        .call(Method::PUT, &format!("/v1/instances/{id}/task"), Some(bad))
        .await
        .unwrap();
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
    assert!(
        refused.text.contains("archive.retention_days"),
        "{}",
        refused.text
    );
    write(&mut db, 200, 400).await;
    server.sql("FLUSH BINARY LOGS").unwrap();
    db.query_drop("ALTER TABLE orders ADD COLUMN note VARCHAR(20) DEFAULT 'late'")
        .await
        .unwrap();
    write(&mut db, 400, 600).await;
    server.sql("FLUSH BINARY LOGS").unwrap();
    write(&mut db, 600, 700).await;
    let current = current_file(&server);
    archived(&ctx, &api, &id, &current).await;
    // `GET …/task` shows the archive of the stopped task: its server, from the checkpoint's
    // file on, into the current file.
    let view = progressing(
        "the archive's status reaching the current file",
        STALL,
        || async {
            let t = api.task(&id).await?;
            let archive = t["archive"].clone();
            let through = archive["through"].as_str().unwrap_or_default().to_owned();
            Ok(if through.starts_with(&format!("{current}:")) {
                Step::Done(archive)
            } else {
                Step::At(through)
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(view["state"], "archiving", "{view}");
    assert_eq!(view["server"], json!(stopped_at.source), "{view}");
    let oldest: BinlogFile = view["oldest"]
        .as_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(oldest <= *stopped_at.position.file(), "{view}");
    assert!(
        view["delay_seconds"].as_f64().is_some_and(|d| d >= 0.0),
        "{view}"
    );
    assert!(view["pieces"].as_u64().is_some_and(|n| n > 0), "{view}");
    purge_before(&server, &current);
    let oldest: BinlogFile = server.binlog_files().unwrap()[0].parse().unwrap();
    assert!(
        *stopped_at.position.file() < oldest,
        "the checkpoint's file {} is purged (oldest {oldest})",
        stopped_at.position
    );

    // Started again: the purged part from the archive, then the server.
    post(&api, &id, "start").await;
    api.wait_state(&id, "incremental", STALL).await.unwrap();
    write(&mut db, 700, 800).await;
    topic_reaches(&ctx, &topic, &server.shop_orders().await.unwrap()).await;
    // No key twice, but where a worker reported repairing what the broker doubled.
    let a = apply_rows(&ctx.topic_records(&topic).unwrap(), "total");
    let reported = repairs_reported(&ctx.events().await.unwrap(), id.as_str());
    assert!(
        a.twice.len() as u64 <= reported,
        "written twice ({reported} reported as repairs): {:?}",
        a.twice
    );
    assert!(
        worker.log().contains("reading the archive"),
        "the worker read the archive"
    );
    // The archive's counters show it storing pieces, and its delay is measured.
    let scraped = worker.metrics().await.unwrap();
    assert!(
        scraped.contains(&format!("ferry_archive_delay_seconds{{instance=\"{id}\"}}")),
        "{scraped}"
    );
    let pieces = format!("ferry_archive_pieces_total{{instance=\"{id}\"}} ");
    ferry_testkit::eventually("the archive's pieces counted", STALL, || async {
        let scraped = worker.metrics().await?;
        Ok(scraped
            .lines()
            .find_map(|l| l.strip_prefix(&pieces))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n > 0))
    })
    .await
    .unwrap();
    // The archived change after the schema change carries the new column.
    let inserted = ctx
        .topic_records(&topic)
        .unwrap()
        .into_iter()
        .filter(|r| !r.is_heartbeat())
        .filter_map(|r| ferry_testkit::change_json(Some(&r.payload)))
        .find(|c| c["op"] == "c" && c["after"]["id"] == json!(650))
        .expect("the row inserted after the ALTER is in the topic");
    assert_eq!(inserted["after"]["note"], "late", "{inserted}");

    // Without the archive's pieces the same start fails, and says what is missing.
    post(&api, &id, "stop").await;
    api.wait_state(&id, "stopped", STALL).await.unwrap();
    drop(worker);
    let archive = ctx.archive().await.unwrap();
    let prefix = ferry_aws::archive::prefix(&id, stopped_at.source.as_deref().unwrap());
    for (piece, _) in archive.list(&prefix).await.unwrap() {
        archive.delete(&prefix, &piece).await.unwrap();
    }
    write(&mut db, 800, 850).await;
    server.sql("FLUSH BINARY LOGS").unwrap();
    let current = current_file(&server);
    purge_before(&server, &current);
    post(&api, &id, "start").await;
    let _worker = ctx.worker_process_with(12, &flush).unwrap();
    let failed = ferry_testkit::eventually("the task to fail", STALL, || async {
        let t = api.task(&id).await?;
        Ok((t["state"] == "failed").then_some(t))
    })
    .await
    .unwrap();
    assert_eq!(failed["error"]["code"], "binlog_purged", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("the binlog archive has no"), "{message}");
}

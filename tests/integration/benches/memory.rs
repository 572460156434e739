//! Bounded memory: one transaction of 1,000,000 rows (FERRY_BENCH_TX_ROWS) through the capture
//! loop, with the process's resident memory sampled while it runs. The loop streams rows as it
//! reads them (nothing waits for the commit) and holds at most 10,000 unacknowledged records, so
//! its memory must not grow with the transaction.
//!
//! Then a sync task applies the same transaction to PostgreSQL, with the same sampling: it
//! applies the transaction in parts of `batch_rows` changes inside one target transaction, so
//! its memory must not grow with the transaction either.
//!
//! `cargo bench -p ferry-tests --bench memory` with the stack up. With `FERRY_BENCH_ROW_MB=64`
//! it measures one row of that size instead (a LONGBLOB): the peak resident memory while the
//! loop reads, decodes and encodes it, until the broker's record size limit fails the task.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_store::Checkpoint;
use ferry_testkit::{InProcessWorker, TestContext, source_position};
use ferry_worker::{CaptureSettings, Claim, capture_task};
use mysql_async::prelude::Queryable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

/// Resident memory of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::var("FERRY_BENCH_TX_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, v VARCHAR(64) NOT NULL, n INT NOT NULL)",
    )
    .await
    .unwrap();

    // A sync task on the same table, to PostgreSQL: copied while the table is empty, then
    // stopped (before the tracking task exists, which its worker would otherwise take); it
    // applies the transaction below as a backlog after the capture run.
    let sync_task = {
        let config = json!({
            "source": ctx.stack_source(),
            "target": ctx.postgres_target().unwrap(),
            "objects": {"databases": [{"name": ctx.mysql_database(), "target_name": "copy"}]},
        });
        let (sync_id, _) = api.start_task("sync", config).await.unwrap();
        let worker = InProcessWorker::start(&api.state);
        api.wait_copied(&sync_id, Duration::from_secs(300))
            .await
            .unwrap();
        worker.stop().await.unwrap();
        sync_id
    };

    let env = ctx.env();
    let config = json!({
        "source": {"engine": "mariadb", "host": env.mysql_host, "port": env.mysql_port, "username": env.mysql_capture_user, "password": env.mysql_capture_password},
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
    });
    let (id, _topic) = api.start_tracking_task("memory", config).await.unwrap();
    let id: InstanceId = id.parse().unwrap();
    let (file, offset): (String, u64) = {
        let row: mysql_async::Row = db.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        (row.get("File").unwrap(), row.get("Position").unwrap())
    };

    let row_mb: Option<u64> = std::env::var("FERRY_BENCH_ROW_MB")
        .ok()
        .and_then(|v| v.parse().ok());
    if let Some(mb) = row_mb {
        // The server must accept a packet of that size to build the row; the capture's
        // replication connection accepts up to 1 GiB whatever the server's setting.
        let before: u64 = db
            .query_first("SELECT @@GLOBAL.max_allowed_packet")
            .await
            .unwrap()
            .unwrap();
        db.query_drop("SET GLOBAL max_allowed_packet = 1073741824")
            .await
            .unwrap();
        let mut big = ctx.mysql().await.unwrap();
        big.query_drop("CREATE TABLE blobs (id INT PRIMARY KEY, b LONGBLOB)")
            .await
            .unwrap();
        big.query_drop(format!(
            "INSERT INTO blobs VALUES (1, REPEAT('x', {}))",
            mb * 1024 * 1024
        ))
        .await
        .unwrap();
        db.query_drop(format!("SET GLOBAL max_allowed_packet = {before}"))
            .await
            .unwrap();
        let run = run_capture(&api, &id, &format!("{file}:{offset}"), None).await;
        println!("| row | until | RSS before | peak RSS |");
        println!("|---:|---|---:|---:|");
        println!(
            "| {mb} MiB LONGBLOB | {} after {:.1} s | {:.0} MiB | {:.0} MiB |",
            run.outcome, run.wall, run.before, run.peak
        );
        return;
    }

    // One transaction of `rows` rows.
    let t0 = Instant::now();
    db.query_drop("START TRANSACTION").await.unwrap();
    let mut next = 0u64;
    while next < rows {
        let batch: Vec<String> = (next..(next + 1000).min(rows))
            .map(|i| format!("({i}, 'value {i:>40}', {})", i % 1000))
            .collect();
        db.query_drop(format!("INSERT INTO big VALUES {}", batch.join(",")))
            .await
            .unwrap();
        next += 1000;
    }
    db.query_drop("COMMIT").await.unwrap();
    println!(
        "a transaction of {rows} rows written in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    let run = run_capture(&api, &id, &format!("{file}:{offset}"), Some((&ctx, rows))).await;
    let (wall, before, peak, samples) = (run.wall, run.before, run.peak, run.samples);
    let quarter = samples.len() / 4;
    let at = |i: usize| samples.get(i).map_or(0.0, |s| s.1);
    println!(
        "| rows in the transaction | capture time | RSS before | RSS at 25% / 50% / 75% | peak RSS |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {rows} | {wall:.1} s | {before:.0} MiB | {:.0} / {:.0} / {:.0} MiB | {peak:.0} MiB |",
        at(quarter),
        at(quarter * 2),
        at(quarter * 3)
    );

    // The sync task applies the same transaction: in parts of `batch_rows` (5,000) changes, in
    // one PostgreSQL transaction, so its memory must not grow with the transaction either.
    let end = source_position(&mut db).await.unwrap();
    let before = rss_mib();
    let t0 = Instant::now();
    let worker = InProcessWorker::start(&api.state);
    let mut peak = before;
    let waiting = api.wait_checkpoint_past(&sync_task, &end, Duration::from_secs(3600));
    tokio::pin!(waiting);
    loop {
        tokio::select! {
            done = &mut waiting => {
                done.unwrap();
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                peak = peak.max(rss_mib());
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    worker.stop().await.unwrap();
    let applied: i64 = ctx
        .postgres()
        .await
        .unwrap()
        .query_one("SELECT COUNT(*) FROM copy.big", &[])
        .await
        .unwrap()
        .get(0);
    println!();
    println!(
        "| rows in the transaction | sync apply time (to PostgreSQL) | RSS before | peak RSS |"
    );
    println!("|---:|---:|---:|---:|");
    println!("| {applied} | {wall:.1} s | {before:.0} MiB | {peak:.0} MiB |");
}

/// How a capture run went.
struct Run {
    outcome: String,
    wall: f64,
    /// RSS before the run and its peak, MiB.
    before: f64,
    peak: f64,
    /// (records in the topic, RSS MiB), every 100 ms.
    samples: Vec<(i64, f64)>,
}

/// Runs the capture loop from `position` and samples this process's RSS every 100 ms until
/// `until` records are in the topic (then stops it), or until the loop ends by itself.
async fn run_capture(
    api: &ferry_testkit::TestApi,
    id: &InstanceId,
    position: &str,
    until: Option<(&TestContext, u64)>,
) -> Run {
    let store = api.state.store();
    let worker = WorkerId::generate();
    let started = tokio::time::Instant::now();
    let lease = store
        .claim_lease(id, &worker, Utc::now(), chrono::Duration::seconds(600))
        .await
        .unwrap()
        .unwrap();
    let checkpoint = Checkpoint {
        position: position.parse().unwrap(),
        source_time: Utc::now(),
        last_key: None,
        offsets: None,
        token: lease.token,
        written_at: Utc::now(),
        source: None,
    };
    store.write_checkpoint(id, &checkpoint, 1).await.unwrap();
    let topic = api.state.topic_for(id, 0);
    let settings = CaptureSettings {
        worker,
        lease_ttl: Duration::from_secs(600),
        heartbeat: Duration::from_secs(1),
        metrics: std::sync::Arc::default(),
        metrics_every: Duration::from_secs(10),
        max_row_bytes: ferry_worker::MAX_ROW_BYTES,
        backfill_chunk_rows: ferry_worker::BACKFILL_CHUNK_ROWS,
        archive_flush: ferry_worker::ARCHIVE_FLUSH,
        discard: false,
    };
    let claim = Claim {
        token: lease.token,
        started,
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let before = rss_mib();
    let t0 = Instant::now();
    let state = api.state.clone();
    let task = id.clone();
    let mut capture =
        tokio::spawn(async move { capture_task(&state, &settings, &task, claim, stop_rx).await });
    let consumer: Option<BaseConsumer> = until.map(|(ctx, _)| ctx.kafka_config().create().unwrap());
    let mut peak = before;
    let mut samples = Vec::new();
    let outcome = loop {
        let high = consumer.as_ref().map_or(0, |c| {
            c.fetch_watermarks(&topic, 0, Duration::from_secs(10))
                .map(|(_, h)| h)
                .unwrap_or(0)
        });
        let rss = rss_mib();
        peak = peak.max(rss);
        samples.push((high, rss));
        if let Some((_, rows)) = until
            && high as u64 >= rows
        {
            stop_tx.send(true).unwrap();
            (&mut capture).await.unwrap().unwrap();
            break "all records produced".to_owned();
        }
        if capture.is_finished() {
            break match (&mut capture).await.unwrap() {
                Ok(()) => "the loop ended".to_owned(),
                Err(e) => format!("the task failed ({e})"),
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Run {
        outcome,
        wall: t0.elapsed().as_secs_f64(),
        before,
        peak,
        samples,
    }
}

//! Faults injected into every service a worker talks to, each under a steady write load, each
//! asserting the outcome: for change tracking, every change in the topic exactly once and in
//! commit order; for synchronization, a verification with no difference; and in both, the task
//! back to running by itself once the fault is gone.
//!
//! The shared stack is never harmed: the broker is a private one ([`PrivateBroker`]), sources
//! and targets that get restarted are throwaway servers, and network cuts happen in test-owned
//! proxies on loopback ([`FaultProxy`]) between the worker process and the service.
//!
//! Sizes: CI runs each fault once on a small stream; `FERRY_TEST_SCALE=large` (the
//! `infra/local/faults` command) runs longer streams and more kills, and prints the figures
//! recorded in docs/reliability.md.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferry_domain::id::InstanceId;
use ferry_testkit::faults::{FaultProxy, PrivateBroker, ThrowawayPostgres};
use ferry_testkit::{Step, TestApi, TestContext, ThrowawayMariaDb, exactly_once, progressing};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const STALL: Duration = Duration::from_secs(120);
/// The workers' lease in these tests: their message timeout is 5.5 s (`ferry_worker::lease`).
const TTL: u32 = 15;

fn large() -> bool {
    ferry_testkit::large_scale()
}

/// Rows a load writes in all: small in CI, larger from `infra/local/faults`.
fn rows() -> u64 {
    if large() { 60_000 } else { 6_000 }
}

/// A figure for docs/reliability.md, printed by the larger run.
fn report(what: &str, figure: impl std::fmt::Display) {
    println!("FAULT-FIGURE {what}: {figure}");
}

/// A steady writer: transactions of 20 rows into `events`, ids 1.. in order, at most one every
/// 10 ms, until `total` rows; it reconnects when its server goes away (a transaction whose
/// commit was lost is written again with the same ids, so nothing is written twice).
struct Load {
    written: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(opts: mysql_async::Opts, total: u64) -> Self {
        let written = Arc::new(AtomicU64::new(0));
        let done = Arc::clone(&written);
        let handle = tokio::spawn(async move {
            let mut conn: Option<mysql_async::Conn> = None;
            let mut next = 1;
            while next <= total {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match mysql_async::Conn::new(opts.clone()).await {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    },
                };
                let last = (next + 19).min(total);
                let values: Vec<String> = (next..=last)
                    .map(|id| format!("({id}, 'change {id}')"))
                    .collect();
                let sql = format!("INSERT IGNORE INTO events VALUES {}", values.join(","));
                match c.query_drop(sql).await {
                    Ok(()) => {
                        next = last + 1;
                        done.store(last, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(_) => conn = None,
                }
            }
        });
        Self { written, handle }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits until `n` rows are written.
    async fn reach(&self, n: u64) {
        progressing(&format!("the load to write {n} rows"), STALL, || async {
            let w = self.written();
            Ok(if w >= n {
                Step::Done(())
            } else {
                Step::At(w.to_string())
            })
        })
        .await
        .unwrap();
    }

    async fn finish(self) -> u64 {
        self.handle.await.unwrap();
        self.written.load(Ordering::Relaxed)
    }
}

/// A change-tracking task on `source` (a server with a `shop.events` table) with its topic.
async fn tracking(api: &TestApi, source: Value) -> (InstanceId, String) {
    let (id, topic) = api
        .start_tracking_task(
            "faults",
            json!({"source": source, "objects": {"databases": [{"name": "shop", "tables": [{"name": "events"}]}]}}),
        )
        .await
        .unwrap();
    (id.parse().unwrap(), topic)
}

fn throwaway(ctx: &TestContext) -> ThrowawayMariaDb {
    let server =
        ThrowawayMariaDb::capture_source(ctx.env(), &["--binlog-annotate-row-events=OFF"]).unwrap();
    server
        .sql(
            "CREATE DATABASE shop; CREATE TABLE shop.events (id BIGINT PRIMARY KEY, note VARCHAR(40)); \
             CREATE USER 'load'@'%' IDENTIFIED BY 'load-Secret1'; GRANT ALL ON shop.* TO 'load'@'%'",
        )
        .unwrap();
    server
}

fn source_at(port: u16) -> Value {
    json!({"engine": "mariadb", "host": "127.0.0.1", "port": port, "username": "ferry_capture", "password": "capture-Secret1"})
}

fn load_opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("load"))
        .pass(Some("load-Secret1"))
        .db_name(Some("shop"))
        .prefer_socket(false)
        .into()
}

/// Waits for `rows` row records in `topic`, then checks every change is there once, in order,
/// and that the task runs.
async fn delivered_exactly_once(
    ctx: &TestContext,
    api: &TestApi,
    id: &InstanceId,
    topic: &str,
    rows: u64,
    what: &str,
) {
    progressing(
        &format!("{rows} rows in the topic ({what})"),
        STALL,
        || async {
            let t = api.task(id).await?;
            anyhow::ensure!(t["state"] != "failed", "the task failed ({what}): {t}");
            let have: u64 = ctx
                .high_watermarks(topic)?
                .iter()
                .map(|w| u64::try_from(*w).unwrap_or(0))
                .sum();
            Ok(if have >= rows {
                Step::Done(())
            } else {
                Step::At(have.to_string())
            })
        },
    )
    .await
    .unwrap();
    // Whatever a worker might still produce twice would show now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let records = ctx.topic_records(topic).unwrap();
    if let Err(e) = exactly_once(&records, usize::try_from(rows).unwrap()) {
        panic!("{what}: {e}");
    }
    let ids: Vec<u64> = records
        .iter()
        .map(|r| {
            ferry_testkit::change_json(Some(&r.payload)).unwrap()["after"]["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        ids.iter().copied().eq(1..=rows),
        "{what}: the rows in commit order"
    );
    let t = api.task(id).await.unwrap();
    assert_eq!(t["state"], "incremental", "{what}: {t}");
}

/// The broker is killed (SIGKILL) in the middle of the stream and started again: the worker
/// rides it out and the topic holds every change once.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_killed_and_restarted_mid_stream() {
    let mut ctx = TestContext::spawn().await.unwrap();
    let mut broker = PrivateBroker::start(ctx.env(), &format!("{}_broker", ctx.id()))
        .await
        .unwrap();
    ctx.use_kafka(broker.bootstrap());
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let source = throwaway(&ctx);
    let (id, topic) = tracking(&api, source_at(source.port())).await;
    let worker = ctx.worker_process(TTL).unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();
    let total = rows();
    let load = Load::start(load_opts(source.port()), total);
    let kills = if large() { 3 } else { 1 };
    for k in 1..=kills {
        load.reach(total * k / (kills + 1)).await;
        broker.kill().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        broker.restart().unwrap();
    }
    let written = load.finish().await;
    delivered_exactly_once(&ctx, &api, &id, &topic, written, "broker killed").await;
    report("broker SIGKILLs survived", kills);
    report("rows through broker kills", written);
    drop(worker);
}

/// The network between the worker and the broker is cut for longer than the producer's
/// message timeout: records fail, the gapless producer lets no later one through, the loop
/// restarts from its checkpoint once the broker is back and skips what the topic has.
#[tokio::test(flavor = "multi_thread")]
async fn the_broker_unreachable_longer_than_the_message_timeout() {
    let mut ctx = TestContext::spawn().await.unwrap();
    let broker = PrivateBroker::start(ctx.env(), &format!("{}_broker", ctx.id()))
        .await
        .unwrap();
    ctx.use_kafka(broker.bootstrap());
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let source = throwaway(&ctx);
    let (id, topic) = tracking(&api, source_at(source.port())).await;
    let worker = ctx.worker_process(TTL).unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();
    let total = rows();
    let load = Load::start(load_opts(source.port()), total);
    load.reach(total / 3).await;
    broker.proxy.cut();
    // Three times the message timeout.
    tokio::time::sleep(Duration::from_secs(16)).await;
    broker.proxy.restore();
    let written = load.finish().await;
    delivered_exactly_once(&ctx, &api, &id, &topic, written, "broker cut off").await;
    report("broker cut off for (s)", 16);
    drop(worker);
}

/// The source restarts (SIGKILL: a crash) in the middle of the stream.
#[tokio::test(flavor = "multi_thread")]
async fn the_source_restarted_mid_stream() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut source = throwaway(&ctx);
    let (id, topic) = tracking(&api, source_at(source.port())).await;
    let worker = ctx.worker_process(TTL).unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();
    let total = rows();
    let load = Load::start(load_opts(source.port()), total);
    load.reach(total / 2).await;
    source.restart().unwrap();
    let written = load.finish().await;
    delivered_exactly_once(&ctx, &api, &id, &topic, written, "source restarted").await;
    drop(worker);
}

/// The network between the worker and the source (through a proxy), then between the worker
/// and DynamoDB, each cut for longer than a lease and restored; a DynamoDB restart (every
/// connection dropped, new ones refused for a while) too.
#[tokio::test(flavor = "multi_thread")]
async fn the_network_to_the_source_and_to_dynamodb_cut_and_restored() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let source = throwaway(&ctx);
    let to_source = FaultProxy::start(format!("127.0.0.1:{}", source.port()).parse().unwrap())
        .await
        .unwrap();
    let to_dynamodb = FaultProxy::start(ctx.env().aws_addr()).await.unwrap();
    let (id, topic) = tracking(&api, source_at(to_source.port())).await;
    let worker = ctx
        .worker_process_with(
            TTL,
            &[("AWS_ENDPOINT_URL", format!("http://{}", to_dynamodb.addr()))],
        )
        .unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();
    let total = rows();
    let load = Load::start(load_opts(source.port()), total);
    load.reach(total / 4).await;
    to_source.cut();
    tokio::time::sleep(Duration::from_secs(20)).await;
    to_source.restore();
    load.reach(total / 2).await;
    // DynamoDB unreachable for longer than the lease: the loop must stop sending before its
    // lease could be claimed, then claim it again.
    to_dynamodb.cut();
    tokio::time::sleep(Duration::from_secs(u64::from(TTL) + 6)).await;
    to_dynamodb.restore();
    load.reach(total * 3 / 4).await;
    // DynamoDB "restarted": connections dropped, refused for 5 s.
    to_dynamodb.down();
    tokio::time::sleep(Duration::from_secs(5)).await;
    to_dynamodb.restore();
    let written = load.finish().await;
    delivered_exactly_once(&ctx, &api, &id, &topic, written, "network cuts").await;
    report(
        "network cuts survived (source, DynamoDB cut, DynamoDB down)",
        3,
    );
    drop(worker);
}

/// Workers killed with SIGKILL at random points of the stream, each replaced by a new one
/// that takes the task over after the lease.
#[tokio::test(flavor = "multi_thread")]
async fn workers_killed_at_random_points() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let source = throwaway(&ctx);
    let (id, topic) = tracking(&api, source_at(source.port())).await;
    let mut worker = ctx.worker_process(TTL).unwrap();
    api.wait_state(&id, "incremental", STALL).await.unwrap();
    let kills = if large() { 12 } else { 3 };
    let total = rows() * 2;
    let load = Load::start(load_opts(source.port()), total);
    // A pseudo-random pause before each kill, from the test's id (reproducible from the log).
    let mut seed = ctx.id().bytes().fold(0x2545_f491_4f6c_dd1du64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    for k in 0..kills {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let pause = Duration::from_millis(500 + seed % 3000);
        tokio::time::sleep(pause).await;
        println!("kill {k} after {pause:?}, {} rows written", load.written());
        worker.kill_hard().unwrap();
        worker = ctx.worker_process(TTL).unwrap();
    }
    let written = load.finish().await;
    delivered_exactly_once(&ctx, &api, &id, &topic, written, "workers killed").await;
    report("worker SIGKILLs survived", kills);
    drop(worker);
}

/// A sync task from a throwaway source to a throwaway PostgreSQL: the source restarts in the
/// middle of the full sync, the target restarts in the middle of the full sync and again in
/// the middle of the apply, all under a write load; the target verifies clean and the task
/// runs.
#[tokio::test(flavor = "multi_thread")]
async fn sync_survives_source_and_target_restarts() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut source = throwaway(&ctx);
    let initial = if large() { 200_000 } else { 20_000 };
    // 2,000 rows a statement: the client takes it as one argument (at most 128 KiB).
    for start in (0..initial).step_by(2000) {
        let values: Vec<String> = (start + 1..=start + 2000)
            .map(|i| format!("({i}, 'initial {i}')"))
            .collect();
        source
            .sql(&format!(
                "INSERT INTO shop.events VALUES {}",
                values.join(",")
            ))
            .unwrap();
    }
    let mut target = ThrowawayPostgres::start(ctx.env()).unwrap();
    target.client("target").await.unwrap();
    let (id, _) = api
        .start_task(
            "sync",
            json!({
                "source": source_at(source.port()),
                "target": {"engine": "postgresql", "host": "127.0.0.1", "port": target.port(),
                           "username": "postgres", "password": "trusted", "database": "target"},
                "objects": {"databases": [{"name": "shop", "tables": [{"name": "events"}]}]},
                "sync": {"chunk_rows": 500, "parallel": 2},
            }),
        )
        .await
        .unwrap();
    let worker = ctx.worker_process(TTL).unwrap();
    // Updates and deletes of copied and uncopied rows, and new rows past the end.
    let running = Arc::new(AtomicBool::new(true));
    let load = {
        let opts = load_opts(source.port());
        let running = Arc::clone(&running);
        tokio::spawn(async move {
            let mut conn: Option<mysql_async::Conn> = None;
            let mut n: u64 = 0;
            while running.load(Ordering::Relaxed) {
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match mysql_async::Conn::new(opts.clone()).await {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    },
                };
                n += 1;
                let id = (n * 7919) % initial + 1;
                let sql = format!(
                    "UPDATE events SET note = 'update {n}' WHERE id = {id}; \
                     INSERT IGNORE INTO events VALUES ({}, 'new {n}'); \
                     DELETE FROM events WHERE id = {}",
                    initial + n,
                    (id * 31) % initial + 1
                );
                if c.query_drop(sql).await.is_err() {
                    conn = None;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    api.wait_chunks(&id, 5, STALL).await.unwrap();
    source.restart().unwrap();
    api.wait_chunks(&id, 15, STALL).await.unwrap();
    target.restart().unwrap();
    api.wait_copied(&id, STALL).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    target.restart().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.store(false, Ordering::Relaxed);
    load.await.unwrap();
    // The capture user may read the binlog position; the load's may not.
    let capture: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(source.port())
        .user(Some("ferry_capture"))
        .pass(Some("capture-Secret1"))
        .prefer_socket(false)
        .into();
    let mut db = mysql_async::Conn::new(capture).await.unwrap();
    let position = ferry_testkit::source_position(&mut db).await.unwrap();
    api.wait_checkpoint_past(&id, &position, STALL * 2)
        .await
        .unwrap();
    let mut clean = None;
    for _ in 0..5 {
        let v = api.verify(&id).await.unwrap();
        if v["state"] == "done" {
            clean = Some(v);
            break;
        }
    }
    let v = clean.expect("a verification finished");
    assert_eq!(v["report"]["differences"], 0, "{v}");
    let t = api.task(&id).await.unwrap();
    assert_eq!(t["state"], "incremental", "{t}");
    report(
        "sync restarts survived (source mid-copy, target mid-copy, target mid-apply)",
        3,
    );
    drop(worker);
}

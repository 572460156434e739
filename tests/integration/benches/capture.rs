//! Catch-up throughput, binlog to Kafka, beside the raw limits measured in the same run on the
//! same machine: how fast the source ingests, how fast the binlog decodes, how fast the broker
//! takes records, and how fast Ferry's worker moves a backlog from one to the other.
//!
//! `cargo bench -p ferry-tests --bench capture` with the stack up (`infra/local/stack up`);
//! `FERRY_BENCH_ROWS` sets the backlog (default 1,000,000 rows of 8 columns). Then, with the
//! worker caught up, the end-to-end latency from a commit to a consumer receiving its records
//! at fixed write rates (`FERRY_BENCH_RATES` rows/s, default `1000,2000,5000,10000`, each for
//! `FERRY_BENCH_LATENCY_SECS`, default 15 s): p50, p99 and max, beside the broker alone at the
//! same rate and record size and Ferry's own share (the worker's record latency histograms).
//! `FERRY_BENCH_STEPS` picks measurements (`decode,skip,own,raw,catchup,latency`, and `alone` for the
//! broker alone). `FERRY_BENCH_FORMAT` and `FERRY_BENCH_VALUES` pick the tasks' format and value
//! mapping (default `debezium-json`, `compatible`: a new task's default). Results go to docs/benchmarks.md by hand, with
//! the machine they were measured on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_domain::position::BinlogFile;
use ferry_domain::schema::SchemaCatalog;
use ferry_domain::selection::ObjectSelection;
use ferry_mysql::ConnectParams;
use ferry_mysql::binlog::{BinlogReader, SourceEvent, Start};
use ferry_store::Checkpoint;
use ferry_testkit::TestContext;
use ferry_testkit::cpu_seconds;
use ferry_worker::metrics::WorkerMetrics;
use ferry_worker::{CaptureSettings, Claim, capture_task};
use mysql_async::prelude::Queryable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use std::sync::Arc;

struct Measure {
    name: &'static str,
    rows: u64,
    wall: Duration,
    cpu: f64,
}

impl Measure {
    fn print(&self) {
        let rate = self.rows as f64 / self.wall.as_secs_f64();
        let cpu_us = self.cpu * 1e6 / self.rows as f64;
        println!(
            "| {:<44} | {:>9} | {:>8.2} s | {:>10.0} rows/s | {:>7.2} µs |",
            self.name,
            self.rows,
            self.wall.as_secs_f64(),
            rate,
            cpu_us
        );
    }
}

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::var("FERRY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // Which measurements to run (`FERRY_BENCH_STEPS`, e.g. `own` under a profiler); the
    // backlog is always written first.
    let steps = std::env::var("FERRY_BENCH_STEPS")
        .unwrap_or_else(|_| "decode,skip,own,raw,catchup,latency".into());
    let wants = |step: &str| steps.split(',').any(|s| s.trim() == step);
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer INT NOT NULL, total DECIMAL(10,2) NOT NULL,
         status VARCHAR(16) NOT NULL, note VARCHAR(64), placed_at DATETIME(6) NOT NULL,
         updated_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), flags INT UNSIGNED NOT NULL)",
    )
    .await
    .unwrap();

    // A task whose checkpoint is the position before the backlog.
    let env = ctx.env();
    // The format and value mapping measured (`FERRY_BENCH_FORMAT`, `FERRY_BENCH_VALUES`):
    // debezium-json, compatible by default (a new task's default).
    let format = std::env::var("FERRY_BENCH_FORMAT").unwrap_or_else(|_| "debezium-json".into());
    let values = std::env::var("FERRY_BENCH_VALUES").unwrap_or_else(|_| "compatible".into());
    let config = json!({
        "source": {"engine": "mariadb", "host": env.mysql_host, "port": env.mysql_port, "username": env.mysql_capture_user, "password": env.mysql_capture_password},
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
        "delivery": {"format": format, "values": values},
    });
    let (id, _topic) = api
        .start_tracking_task("bench", config.clone())
        .await
        .unwrap();
    let id: InstanceId = id.parse().unwrap();
    // A second task over the same source for the worker's own path (records discarded).
    let (own_id, _) = api.start_tracking_task("bench-own", config).await.unwrap();
    let own_id: InstanceId = own_id.parse().unwrap();
    let (file, offset): (String, u64) = {
        let row: mysql_async::Row = db.query_first("SHOW MASTER STATUS").await.unwrap().unwrap();
        (row.get("File").unwrap(), row.get("Position").unwrap())
    };
    let start_position = format!("{file}:{offset}").parse().unwrap();

    println!("| measurement | rows | wall | throughput | CPU per row |");
    println!("|---|---:|---:|---:|---:|");

    // 1. Raw limit: MariaDB ingesting multi-row inserts of 1,000 rows.
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    let mut id_next = 0u64;
    while id_next < rows {
        let batch: Vec<String> = (id_next..(id_next + 1000).min(rows))
            .map(|i| format!("({i}, {}, {}.{:02}, 'paid', 'note {i}', '2026-11-22 10:00:00.{:06}', NOW(3), {})", i % 9973, i % 1000, i % 100, i % 1_000_000, i % 7))
            .collect();
        db.query_drop(format!("INSERT INTO orders (id, customer, total, status, note, placed_at, updated_at, flags) VALUES {}", batch.join(","))).await.unwrap();
        id_next += 1000;
    }
    Measure {
        name: "MariaDB ingest (raw limit, multi-row inserts)",
        rows,
        wall: wall0.elapsed(),
        cpu: cpu_seconds() - cpu0,
    }
    .print();

    let params = ConnectParams {
        host: env.mysql_host.clone(),
        port: env.mysql_port,
        user: env.mysql_capture_user.clone(),
        password: env.mysql_capture_password.clone(),
        database: None,
    };
    if wants("decode") {
        // 2. Decode only: Ferry's binlog reader and decoder, nothing produced.
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let start = Start::File {
            file: file.parse::<BinlogFile>().unwrap(),
            offset,
        };
        let mut reader = BinlogReader::start(&params, 0x3f00_0001, start, Duration::from_secs(1))
            .await
            .unwrap();
        let mut decoded = 0u64;
        while decoded < rows {
            if let Some(e) = reader.next().await.unwrap()
                && let SourceEvent::Rows(r) = e.event
            {
                decoded += r
                    .iter()
                    .filter(|c| c.table().name().database == ctx.mysql_database())
                    .count() as u64;
            }
        }
        let _ = reader.close().await;
        Measure {
            name: "binlog read + decode (Ferry, no produce)",
            rows,
            wall: wall0.elapsed(),
            cpu: cpu_seconds() - cpu0,
        }
        .print();
    }
    if wants("skip") {
        // 2a. The same rows as a table the task does not carry: read past by their values'
        //     widths and counted (for the transaction's event indexes), never converted.
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let start = Start::File {
            file: file.parse::<BinlogFile>().unwrap(),
            offset,
        };
        let nothing = ObjectSelection {
            databases: Vec::new(),
            operations: Vec::new(),
        };
        let mut reader = BinlogReader::start(&params, 0x3f00_0002, start, Duration::from_secs(1))
            .await
            .unwrap()
            .with_schema(SchemaCatalog::new(), nothing);
        let mut counted = 0u64;
        while counted < rows {
            if let Some(e) = reader.next().await.unwrap()
                && let SourceEvent::Rows(r) = e.event
            {
                counted += u64::from(r.count);
            }
        }
        let _ = reader.close().await;
        Measure {
            name: "binlog read + skip (rows not carried)",
            rows,
            wall: wall0.elapsed(),
            cpu: cpu_seconds() - cpu0,
        }
        .print();
    }
    if wants("own") {
        // 2b. The worker's own path: read, decode, select, frame and encode, then discard (no
        //     broker): what the worker costs per row before producing.
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let own = start_loop(&api, &own_id, &start_position, true).await;
        own.wait_rows(rows).await;
        Measure {
            name: "Ferry worker's own path (discard destination)",
            rows,
            wall: wall0.elapsed(),
            cpu: cpu_seconds() - cpu0,
        }
        .print();
        own.stop().await;
    }
    if wants("raw") {
        // 3. Raw limit: the broker taking the same records Ferry writes (records of this table
        //    in the measured format and mapping, made by Ferry's encoder, with Ferry's three headers and the source
        //    time as timestamp) from an idempotent producer with Ferry's settings, as fast as
        //    it takes them. 10,000 distinct records are made first and sent in turn.
        let raw_topic = ctx.topic("raw");
        ferry_kafka::sink::ensure_topic(&env.kafka_bootstrap, &raw_topic, 1, 3_600_000)
            .await
            .unwrap();
        let producer: FutureProducer = ctx
            .kafka_config()
            .set("enable.idempotence", "true")
            .set(
                "linger.ms",
                std::env::var("FERRY_BENCH_LINGER_MS").unwrap_or_else(|_| "5".into()),
            )
            .set("compression.type", "lz4")
            .create()
            .unwrap();
        let delivery: ferry_domain::task_config::Delivery =
            serde_json::from_value(json!({"format": format, "values": values})).unwrap();
        let style = ferry_kafka::format::Style::of(&delivery);
        let records = ferry_records(&raw_topic, 10_000, &style);
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let mut pending = Vec::new();
        let now_ms = Utc::now().timestamp_millis();
        for i in 0..rows {
            let r = &records[(i % 10_000) as usize];
            loop {
                let headers = rdkafka::message::OwnedHeaders::new_with_capacity(3)
                    .insert(rdkafka::message::Header {
                        key: ferry_kafka::KEY_HEADER,
                        value: Some(r.idempotency_key.as_bytes()),
                    })
                    .insert(rdkafka::message::Header {
                        key: ferry_kafka::POSITION_HEADER,
                        value: Some(r.position.as_bytes()),
                    })
                    .insert(rdkafka::message::Header {
                        key: ferry_kafka::SOURCE_HEADER,
                        value: Some(&b"server_id:1"[..]),
                    });
                match producer.send_result(
                    FutureRecord::to(&raw_topic)
                        .key(r.key.as_deref().unwrap_or_default())
                        .payload(&r.payload)
                        .headers(headers)
                        .timestamp(now_ms)
                        .partition(0),
                ) {
                    Ok(d) => {
                        pending.push(d);
                        break;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(2)).await,
                }
            }
            if pending.len() >= 10_000 {
                for d in pending.drain(..) {
                    d.await.unwrap().unwrap();
                }
            }
        }
        for d in pending.drain(..) {
            d.await.unwrap().unwrap();
        }
        Measure {
            name: "Kafka produce (raw limit, the same records)",
            rows,
            wall: wall0.elapsed(),
            cpu: cpu_seconds() - cpu0,
        }
        .print();
    }
    if wants("alone") {
        // The broker alone at the latency rates (no Ferry): for probing the broker's settings
        // (`FERRY_BENCH_LINGER_MS`, `FERRY_BENCH_FETCH_WAIT_MS`).
        println!();
        println!("| rate | records | broker alone p50 / p99 / max |");
        println!("|---:|---:|---|");
        for rate in latency_rates() {
            let alone = broker_latency(&ctx, rate, latency_secs(), 550).await;
            println!("| {rate} | {} | {} |", alone.len(), percentiles(&alone));
        }
    }
    if wants("catchup") {
        // 4. Ferry end to end: the worker catches up the backlog into the task's topic.
        let topic = api.state.topic_for(&id, 0);
        let (wall0, cpu0) = (Instant::now(), cpu_seconds());
        let capture = start_loop(&api, &id, &start_position, false).await;
        let consumer: BaseConsumer = ctx.kafka_config().create().unwrap();
        loop {
            let high = consumer
                .fetch_watermarks(&topic, 0, Duration::from_secs(10))
                .map(|(_, h)| h)
                .unwrap_or(0);
            if high as u64 >= rows {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Measure {
            name: "Ferry catch-up, binlog to topic (debezium-json)",
            rows,
            wall: wall0.elapsed(),
            cpu: cpu_seconds() - cpu0,
        }
        .print();
        let sample: rdkafka::consumer::StreamConsumer = ctx
            .kafka_config()
            .set("group.id", ctx.group("size"))
            .set("auto.offset.reset", "earliest")
            .create()
            .unwrap();
        sample.subscribe(&[&topic]).unwrap();
        let m = tokio::time::timeout(Duration::from_secs(30), sample.recv())
            .await
            .unwrap()
            .unwrap();
        println!(
            "(a record of the task's topic has {} bytes of payload)",
            rdkafka::Message::payload(&m).map_or(0, <[u8]>::len)
        );

        // 5. Latency: commit → consumer at fixed rates, the worker caught up and running.
        if wants("latency") {
            let rates = latency_rates();
            let secs = latency_secs();
            println!();
            println!(
                "| write rate | rows | end to end p50 / p99 / max | broker alone p50 / p99 / max | Ferry's share: read → handed to producer p50 / p99 | read → acknowledged p50 / p99 |"
            );
            println!("|---:|---:|---|---|---|---|");
            let mut first_id = rows;
            for rate in rates {
                let before = (
                    capture.histogram("ferry_record_handoff_seconds"),
                    capture.histogram("ferry_record_ack_seconds"),
                );
                let latencies = latency(&ctx, &mut db, &topic, first_id, rate, secs).await;
                let handoff = capture
                    .histogram("ferry_record_handoff_seconds")
                    .since(&before.0);
                let acked = capture
                    .histogram("ferry_record_ack_seconds")
                    .since(&before.1);
                first_id += rate * secs + 1000;
                let alone = broker_latency(&ctx, rate, secs, 550).await;
                println!(
                    "| {rate} rows/s (100-row transactions every {} ms) | {} | {} | {} | ≤ {} / ≤ {} ms | ≤ {} / ≤ {} ms |",
                    100_000 / rate.max(1),
                    latencies.len(),
                    percentiles(&latencies),
                    percentiles(&alone),
                    handoff.quantile_ms(0.5),
                    handoff.quantile_ms(0.99),
                    acked.quantile_ms(0.5),
                    acked.quantile_ms(0.99),
                );
            }
        }
        capture.stop().await;
    }
}

/// A capture loop run by the bench.
struct Loop {
    stop: tokio::sync::watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), ferry_worker::TaskError>>,
    metrics: Arc<WorkerMetrics>,
    instance: InstanceId,
}

/// Starts the capture loop of task `id` from `start` (its checkpoint is set there first);
/// `discard` replaces the task's topic with a destination that keeps nothing.
async fn start_loop(
    api: &ferry_testkit::TestApi,
    id: &InstanceId,
    start: &ferry_domain::position::Position,
    discard: bool,
) -> Loop {
    let store = api.state.store();
    let worker = WorkerId::generate();
    let started = tokio::time::Instant::now();
    let lease = store
        .claim_lease(id, &worker, Utc::now(), chrono::Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    let checkpoint = Checkpoint {
        position: start.clone(),
        source_time: Utc::now(),
        last_key: None,
        offsets: None,
        token: lease.token,
        written_at: Utc::now(),
        source: None,
    };
    store.write_checkpoint(id, &checkpoint, 1).await.unwrap();
    let metrics = Arc::new(WorkerMetrics::default());
    let settings = CaptureSettings {
        worker,
        lease_ttl: Duration::from_secs(60),
        heartbeat: Duration::from_secs(1),
        metrics: Arc::clone(&metrics),
        metrics_every: Duration::from_secs(10),
        max_row_bytes: ferry_worker::MAX_ROW_BYTES,
        backfill_chunk_rows: ferry_worker::BACKFILL_CHUNK_ROWS,
        archive_flush: ferry_worker::ARCHIVE_FLUSH,
        discard,
    };
    let claim = Claim {
        token: lease.token,
        started,
    };
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let state = api.state.clone();
    let instance = id.clone();
    let handle =
        tokio::spawn(
            async move { capture_task(&state, &settings, &instance, claim, stop_rx).await },
        );
    Loop {
        stop,
        handle,
        metrics,
        instance: id.clone(),
    }
}

impl Loop {
    /// Waits until the loop delivered `rows` row records (its `ferry_rows_total`).
    async fn wait_rows(&self, rows: u64) {
        let series = format!("ferry_rows_total{{instance=\"{}\"}}", self.instance);
        loop {
            let text = self.metrics.encode();
            let delivered = text
                .lines()
                .find_map(|l| l.strip_prefix(&series))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            if delivered as u64 >= rows {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        self.handle.await.unwrap().unwrap();
    }
}

/// Writes `rate` rows/s for `secs` seconds in transactions of 100 rows, and measures for each
/// row the time from its commit returning to a consumer (positioned at the topic's end)
/// receiving it. Returns the latencies, sorted.
async fn latency(
    ctx: &TestContext,
    db: &mut mysql_async::Conn,
    topic: &str,
    first_id: u64,
    rate: u64,
    secs: u64,
) -> Vec<Duration> {
    use rdkafka::Message;
    use rdkafka::consumer::StreamConsumer;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    const BATCH: u64 = 100;
    let consumer: StreamConsumer = ctx
        .kafka_config()
        .set("group.id", ctx.group("latency"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "5")
        .create()
        .unwrap();
    let high = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .unwrap()
        .1;
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, rdkafka::Offset::Offset(high))
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let batches = rate * secs / BATCH;
    let total = batches * BATCH;
    let committed: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let seen = committed.clone();
    let reader = tokio::spawn(async move {
        let mut out = Vec::with_capacity(total as usize);
        let mut early: Vec<(u64, Instant)> = Vec::new();
        let mut older = 0u64;
        while (out.len() + early.len()) < total as usize {
            let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
                .await
                .expect("records keep arriving")
                .unwrap();
            let at = Instant::now();
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            // Anything older than the latency run (there should be none) is not measured.
            let Some(batch) = v["after"]["id"]
                .as_u64()
                .and_then(|id| id.checked_sub(first_id))
                .map(|d| d / BATCH)
            else {
                older += 1;
                continue;
            };
            early.push((batch, at));
            // A record can arrive before its writer noted the commit's return: settle later.
            let map = seen.lock().unwrap();
            settle(&mut early, &map, &mut out);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !early.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let map = seen.lock().unwrap();
            settle(&mut early, &map, &mut out);
        }
        if older > 0 || !early.is_empty() {
            println!(
                "({older} records older than the run, {} without a noted commit: not measured)",
                early.len()
            );
        }
        out
    });
    let interval = Duration::from_nanos(1_000_000_000 * BATCH / rate.max(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    for b in 0..batches {
        tick.tick().await;
        let values: Vec<String> = (0..BATCH)
            .map(|j| {
                let i = first_id + b * BATCH + j;
                format!(
                    "({i}, {}, 1.00, 'paid', 'latency', NOW(6), NOW(3), 0)",
                    i % 9973
                )
            })
            .collect();
        db.query_drop(format!("INSERT INTO orders (id, customer, total, status, note, placed_at, updated_at, flags) VALUES {}", values.join(","))).await.unwrap();
        committed.lock().unwrap().insert(b, Instant::now());
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let mut latencies = reader.await.unwrap();
    println!("(latency run: {total} rows written at {achieved:.0} rows/s achieved)");
    latencies.sort();
    latencies
}

/// Moves the receipts whose commit time is known into latencies.
fn settle(
    early: &mut Vec<(u64, Instant)>,
    committed: &std::collections::HashMap<u64, Instant>,
    out: &mut Vec<Duration>,
) {
    early.retain(|(b, at)| match committed.get(b) {
        Some(c) => {
            out.push(at.saturating_duration_since(*c));
            false
        }
        None => true,
    });
}

/// The write rates of the latency runs (`FERRY_BENCH_RATES`, rows/s).
fn latency_rates() -> Vec<u64> {
    std::env::var("FERRY_BENCH_RATES")
        .unwrap_or_else(|_| "1000,2000,5000,10000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect()
}

/// How long each latency run writes (`FERRY_BENCH_LATENCY_SECS`).
fn latency_secs() -> u64 {
    std::env::var("FERRY_BENCH_LATENCY_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15)
}

/// p50 / p99 / max of sorted latencies, in milliseconds.
fn percentiles(sorted: &[Duration]) -> String {
    let pct = |p: f64| {
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    format!("{:.1} / {:.1} / {:.1} ms", pct(0.5), pct(0.99), pct(1.0))
}

/// A Prometheus histogram's cumulative bucket counts: (upper bound in seconds, count).
struct Buckets(Vec<(f64, u64)>);

impl Buckets {
    /// The counts added since `earlier`.
    fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|(le, n)| {
                    let was = earlier
                        .0
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0, |(_, n)| *n);
                    (*le, n.saturating_sub(was))
                })
                .collect(),
        )
    }

    /// The upper bound (ms) of the bucket holding quantile `q`: the quantile is at most this.
    fn quantile_ms(&self, q: f64) -> String {
        let total = self.0.last().map_or(0, |(_, n)| *n);
        if total == 0 {
            return "–".into();
        }
        let wanted = (total as f64 * q).ceil() as u64;
        self.0
            .iter()
            .find(|(_, n)| *n >= wanted)
            .map_or_else(|| "> 5000".into(), |(le, _)| format!("{}", le * 1000.0))
    }
}

impl Loop {
    /// The loop's histogram `name` (from its worker's metrics text).
    fn histogram(&self, name: &str) -> Buckets {
        let text = self.metrics.encode();
        let prefix = format!("{name}_bucket{{");
        let mut out: Vec<(f64, u64)> = text
            .lines()
            .filter(|l| l.starts_with(&prefix) && l.contains(self.instance.as_str()))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le: f64 = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                let n: f64 = l.rsplit(' ').next()?.parse().ok()?;
                Some((le, n as u64))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        Buckets(out)
    }
}

/// The broker alone at the same rate and record size: an idempotent producer (Ferry's settings:
/// lz4, linger 5 ms, three headers like Ferry's) writes batches of 100 records at `rate` records/s for `secs` seconds to a
/// topic of its own, and a consumer at the topic's end notes when each arrives. Returns the
/// latencies (send → receive), sorted.
async fn broker_latency(ctx: &TestContext, rate: u64, secs: u64, size: usize) -> Vec<Duration> {
    use rdkafka::Message;
    use rdkafka::consumer::StreamConsumer;
    const BATCH: u64 = 100;
    let topic = ctx.topic(&format!("alone-{rate}"));
    let env = ctx.env();
    ferry_kafka::sink::ensure_topic(&env.kafka_bootstrap, &topic, 1, 3_600_000)
        .await
        .unwrap();
    let linger = std::env::var("FERRY_BENCH_LINGER_MS").unwrap_or_else(|_| "5".into());
    let fetch_wait = std::env::var("FERRY_BENCH_FETCH_WAIT_MS").unwrap_or_else(|_| "5".into());
    let producer: FutureProducer = ctx
        .kafka_config()
        .set("enable.idempotence", "true")
        .set("linger.ms", &linger)
        .set("compression.type", "lz4")
        .create()
        .unwrap();
    let consumer: StreamConsumer = ctx
        .kafka_config()
        .set("group.id", ctx.group("alone"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", &fetch_wait)
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let batches = rate * secs / BATCH;
    let total = (batches * BATCH) as usize;
    // Warm up: one record through before timing (topic metadata, the consumer's first fetch).
    producer
        .send(
            FutureRecord::to(&topic)
                .key("warm-up")
                .payload("x")
                .partition(0),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("the warm-up record arrives")
        .unwrap();
    let started = Instant::now();
    let reader = tokio::spawn(async move {
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let m = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
                .await
                .expect("records keep arriving")
                .unwrap();
            let at = started.elapsed();
            let sent_us: u64 = std::str::from_utf8(m.key().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            out.push(at.saturating_sub(Duration::from_micros(sent_us)));
        }
        out
    });
    let payload = vec![b'x'; size];
    let interval = Duration::from_nanos(1_000_000_000 * BATCH / rate.max(1));
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending = Vec::new();
    for _ in 0..batches {
        tick.tick().await;
        for _ in 0..BATCH {
            let key = started.elapsed().as_micros().to_string();
            // Ferry's three headers, as its records carry them.
            let headers = rdkafka::message::OwnedHeaders::new_with_capacity(3)
                .insert(rdkafka::message::Header {
                    key: ferry_kafka::KEY_HEADER,
                    value: Some(&b"0-1-123456/42"[..]),
                })
                .insert(rdkafka::message::Header {
                    key: ferry_kafka::POSITION_HEADER,
                    value: Some(&b"binlog.000001:123456789@0-1-123456"[..]),
                })
                .insert(rdkafka::message::Header {
                    key: ferry_kafka::SOURCE_HEADER,
                    value: Some(&b"server_id:1"[..]),
                });
            pending.push(
                producer
                    .send_result(
                        FutureRecord::to(&topic)
                            .key(&key)
                            .payload(&payload)
                            .headers(headers)
                            .partition(0),
                    )
                    .map_err(|(e, _)| e)
                    .unwrap(),
            );
        }
        if pending.len() >= 10_000 {
            for d in pending.drain(..) {
                d.await.unwrap().unwrap();
            }
        }
    }
    for d in pending.drain(..) {
        d.await.unwrap().unwrap();
    }
    let mut latencies = reader.await.unwrap();
    latencies.sort();
    latencies
}

/// `n` records as Ferry writes them for rows of the bench's table (in `style`, made by Ferry's
/// encoder), for the broker's raw limit.
fn ferry_records(
    topic: &str,
    n: u64,
    style: &ferry_kafka::format::Style,
) -> Vec<ferry_kafka::format::Record> {
    use ferry_domain::change::{
        ChangeEvent, ChangeKind, Column, ObjectName, RowChange, TableSchema, TransactionRef,
    };
    use ferry_domain::value::{Date, DateTime, Decimal, Timestamp, Value};
    let col = |name: &str, t: &str| Column {
        name: name.into(),
        source_type: t.into(),
        nullable: false,
    };
    let table = Arc::new(
        TableSchema::new(
            ObjectName {
                database: "bench".into(),
                table: "orders".into(),
            },
            vec![
                col("id", "bigint"),
                col("customer", "int"),
                col("total", "decimal(10,2)"),
                col("status", "varchar(16)"),
                col("note", "varchar(64)"),
                col("placed_at", "datetime(6)"),
                col("updated_at", "timestamp(3)"),
                col("flags", "int unsigned"),
            ],
            vec![0],
        )
        .unwrap(),
    );
    (0..n)
        .map(|i| {
            let values = vec![
                Value::Int(i as i64),
                Value::Int((i % 9973) as i64),
                Value::Decimal(Decimal::try_from(format!("{}.{:02}", i % 1000, i % 100)).unwrap()),
                Value::String("paid".into()),
                Value::String(format!("note {i}")),
                Value::DateTime(DateTime {
                    date: Date {
                        year: 2026,
                        month: 11,
                        day: 22,
                    },
                    hour: 10,
                    minute: 0,
                    second: 0,
                    micros: (i % 1_000_000) as u32,
                }),
                Value::Timestamp(Timestamp {
                    seconds: 1_764_000_000 + i as i64,
                    micros: 123_000,
                }),
                Value::UInt(i % 7),
            ];
            let event = ChangeEvent {
                position: Arc::new(
                    format!("binlog.000001:{}@0-1-{}", 4 + i * 600, i / 1000)
                        .parse()
                        .unwrap(),
                ),
                event_offset: 0,
                server_id: 1,
                timestamp: Utc::now(),
                transaction: Some(TransactionRef {
                    id: format!("0-1-{}", i / 1000).into(),
                    event_index: (i % 1000) as u32 + 1,
                    carried_index: 0,
                    last: false,
                    event_row: 0,
                }),
                kind: ChangeKind::Row(RowChange::insert(Arc::clone(&table), values).unwrap()),
            };
            ferry_kafka::format::encode(
                style.clone(),
                topic,
                &event,
                i,
                &ferry_domain::selection::ColumnMask::All,
            )
            .unwrap()
            .unwrap()
        })
        .collect()
}

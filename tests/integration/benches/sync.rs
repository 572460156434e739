//! Data synchronization throughput beside the limits of its source and targets, measured in
//! the same run on the same machine:
//!
//! 1. the source's chunk-read limit: the table read in the chunks a full sync reads (20,000
//!    rows by primary-key range, 4 at a time, each in a consistent-snapshot transaction), rows
//!    received and dropped, no target;
//! 2. the target's raw bulk load of the same rows (PostgreSQL `COPY` of pre-rendered text;
//!    MariaDB multi-row inserts of 1,000 rows into the stack's target-only MariaDB, binlog off);
//! 3. Ferry's full sync of the table (schema, planned chunks, parallel snapshot reads, loads),
//!    from start to the last chunk, and its ratio to min(1, 2);
//! 4. the target's raw batched upsert (1,000-row `INSERT … ON CONFLICT` / `ON DUPLICATE KEY
//!    UPDATE` over existing rows);
//! 5. Ferry's incremental apply of a backlog of updates (1,000-row transactions), from a
//!    worker's start to its checkpoint passing the backlog's end, and its ratio to 4.
//!
//! `cargo bench -p ferry-tests --bench sync` with the stack up; `FERRY_BENCH_ROWS` sets the
//! table (default 1,000,000 rows of 8 columns), `FERRY_BENCH_UPDATES` the backlog (default
//! 200,000), `FERRY_BENCH_APPLY` the tasks' apply mode (default `merge`), `FERRY_BENCH_BATCH_ROWS`
//! their `batch_rows` (default 5,000). Results go to docs/benchmarks.md by hand, with the machine they were measured on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::time::{Duration, Instant};

use axum::http::Method;
use ferry_domain::id::InstanceId;
use ferry_testkit::{
    InProcessWorker, TestApi, TestContext, cpu_seconds, eventually, source_position,
};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

/// Prints one measurement and answers its rate (rows per second).
fn row(rows: u64, wall: Duration, cpu: Option<f64>, name: &str) -> f64 {
    let rate = rows as f64 / wall.as_secs_f64();
    let cpu = cpu.map_or("–".to_owned(), |c| {
        format!("{:.2} µs", c * 1e6 / rows as f64)
    });
    println!(
        "| {name:<60} | {rows:>9} | {:>8.2} s | {rate:>10.0} rows/s | {cpu:>9} |",
        wall.as_secs_f64()
    );
    rate
}

/// The source's chunk-read limit: `rows` rows of `orders` read by primary-key range in chunks
/// of `chunk` rows, `parallel` chunks at a time, each in its own consistent-snapshot
/// transaction (what a full sync's reads do), every row received and dropped.
async fn source_reads(ctx: &TestContext, rows: u64, chunk: u64, parallel: u64) -> Duration {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let wall = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..parallel {
        let mut db = ctx.mysql().await.unwrap();
        let next = std::sync::Arc::clone(&next);
        readers.push(tokio::spawn(async move {
            loop {
                let lower = next.fetch_add(chunk, std::sync::atomic::Ordering::Relaxed);
                if lower >= rows {
                    break;
                }
                db.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    .await
                    .unwrap();
                let mut result = db
                    .exec_iter(
                        "SELECT * FROM orders WHERE id >= ? AND id < ?",
                        (lower, lower + chunk),
                    )
                    .await
                    .unwrap();
                result.for_each(drop).await.unwrap();
                drop(result);
                db.query_drop("COMMIT").await.unwrap();
            }
        }));
    }
    for r in readers {
        r.await.unwrap();
    }
    wall.elapsed()
}

/// Ferry's rate as a share of the limit it is held to.
fn ratio(name: &str, ferry: f64, limit: f64, of: &str) {
    println!(
        "| {name:<60} | {:>9} | {:>10} | {:>17.2} × | {of:>9} |",
        "",
        "",
        ferry / limit
    );
}

const TABLE: &str = "(id BIGINT PRIMARY KEY, customer INT NOT NULL, total DECIMAL(10,2) NOT NULL,
    status VARCHAR(16) NOT NULL, note VARCHAR(64), placed_at DATETIME(6) NOT NULL,
    updated_at DATETIME(3) NOT NULL, flags INT UNSIGNED NOT NULL)";

const PG_TABLE: &str =
    "(id BIGINT PRIMARY KEY, customer INTEGER NOT NULL, total NUMERIC(10,2) NOT NULL,
    status VARCHAR(16) NOT NULL, note VARCHAR(64), placed_at TIMESTAMP(6) NOT NULL,
    updated_at TIMESTAMP(3) NOT NULL, flags BIGINT NOT NULL)";

fn values(i: u64) -> String {
    format!(
        "({i}, {}, {}.{:02}, 'paid', 'note {i}', '2026-11-22 10:00:00.{:06}', '2026-11-22 10:00:01.5', {})",
        i % 9973,
        i % 1000,
        i % 100,
        i % 1_000_000,
        i % 7
    )
}

fn copy_line(i: u64) -> String {
    format!(
        "{i}\t{}\t{}.{:02}\tpaid\tnote {i}\t2026-11-22 10:00:00.{:06}\t2026-11-22 10:00:01.5\t{}\n",
        i % 9973,
        i % 1000,
        i % 100,
        i % 1_000_000,
        i % 7
    )
}

async fn mariadb_inserts(db: &mut mysql_async::Conn, table: &str, rows: u64, upsert: bool) {
    let mut next = 0u64;
    while next < rows {
        let batch: Vec<String> = (next..(next + 1000).min(rows)).map(values).collect();
        let tail = if upsert {
            format!(" ON DUPLICATE KEY UPDATE {MY_SET}")
        } else {
            String::new()
        };
        db.query_drop(format!(
            "INSERT INTO {table} VALUES {}{tail}",
            batch.join(",")
        ))
        .await
        .unwrap();
        next += 1000;
    }
}

/// The upsert's assignments, the same on every form measured.
const PG_SET: &str = "customer = EXCLUDED.customer, total = EXCLUDED.total + 1, status = EXCLUDED.status, note = EXCLUDED.note, placed_at = EXCLUDED.placed_at, updated_at = EXCLUDED.updated_at, flags = EXCLUDED.flags";
const MY_SET: &str = "customer = VALUES(customer), total = VALUES(total) + 1, status = VALUES(status), note = VALUES(note), placed_at = VALUES(placed_at), updated_at = VALUES(updated_at), flags = VALUES(flags)";

/// Row `i`'s columns as text, the form Ferry holds a value in before it writes it.
fn texts(i: u64) -> [String; 8] {
    [
        i.to_string(),
        (i % 9973).to_string(),
        format!("{}.{:02}", i % 1000, i % 100),
        "paid".into(),
        format!("note {i}"),
        format!("2026-11-22 10:00:00.{:06}", i % 1_000_000),
        "2026-11-22 10:00:01.5".into(),
        (i % 7).to_string(),
    ]
}

/// The apply's other forms on PostgreSQL (issue 20: "prepared or binary/COPY where faster"),
/// `updates` rows over existing ones in 1,000-row transactions: `COPY` into a temporary table
/// then one `INSERT … SELECT … ON CONFLICT`; and one prepared `INSERT … SELECT FROM unnest(…)`
/// with a text array per column, bound in the binary protocol.
async fn pg_upsert_forms(pg: &tokio_postgres::Client, updates: u64) {
    use futures::SinkExt;
    pg.batch_execute("CREATE TEMP TABLE staged (LIKE raw.orders) ON COMMIT DELETE ROWS")
        .await
        .unwrap();
    let wall = Instant::now();
    let mut next = 0u64;
    while next < updates {
        let text: String = (next..(next + 1000).min(updates)).map(copy_line).collect();
        pg.batch_execute("BEGIN").await.unwrap();
        let sink = pg.copy_in("COPY staged FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        sink.send(bytes::Bytes::from(text)).await.unwrap();
        sink.finish().await.unwrap();
        pg.batch_execute(&format!(
            "INSERT INTO raw.orders SELECT * FROM staged ON CONFLICT (id) DO UPDATE SET {PG_SET}; COMMIT"
        ))
        .await
        .unwrap();
        next += 1000;
    }
    row(
        updates,
        wall.elapsed(),
        None,
        "PostgreSQL COPY to a temp table + INSERT … SELECT (other form)",
    );
    let statement = pg
        .prepare(&format!(
            "INSERT INTO raw.orders SELECT a::bigint, b::integer, c::numeric, d, e, f::timestamp, \
             g::timestamp, h::bigint FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::text[]) AS u(a, b, c, d, e, f, g, h) \
             ON CONFLICT (id) DO UPDATE SET {PG_SET}"
        ))
        .await
        .unwrap();
    let wall = Instant::now();
    let mut next = 0u64;
    while next < updates {
        let mut columns: Vec<Vec<String>> = (0..8).map(|_| Vec::with_capacity(1000)).collect();
        for i in next..(next + 1000).min(updates) {
            for (c, v) in columns.iter_mut().zip(texts(i)) {
                c.push(v);
            }
        }
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = columns
            .iter()
            .map(|c| c as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        pg.execute(&statement, &params).await.unwrap();
        next += 1000;
    }
    row(
        updates,
        wall.elapsed(),
        None,
        "PostgreSQL prepared unnest(text[]) upsert, binary (other form)",
    );
}

/// The apply's prepared form on MariaDB: one prepared 1,000-row `INSERT … ON DUPLICATE KEY
/// UPDATE` with its 8,000 values bound in the binary protocol.
async fn mariadb_prepared_upserts(db: &mut mysql_async::Conn, table: &str, updates: u64) {
    // Each statement its own transaction, then five statements (5,000 rows: Ferry's default
    // `batch_rows`) to a transaction, as Ferry's apply commits them.
    for (per_commit, name) in [
        (
            1,
            "MariaDB prepared upsert, 1,000 rows, binary (other form)",
        ),
        (
            5,
            "  the same, 5,000 rows to a transaction, as Ferry commits",
        ),
    ] {
        let row_marks = format!("({})", ["?"; 8].join(","));
        let sql = |n: u64| {
            format!(
                "INSERT INTO {table} VALUES {} ON DUPLICATE KEY UPDATE {MY_SET}",
                vec![row_marks.as_str(); n as usize].join(",")
            )
        };
        let full = db.prep(sql(1000)).await.unwrap();
        let wall = Instant::now();
        let mut next = 0u64;
        let mut statements = 0;
        while next < updates {
            if per_commit > 1 && statements % per_commit == 0 {
                db.query_drop("BEGIN").await.unwrap();
            }
            let end = (next + 1000).min(updates);
            let mut params = Vec::with_capacity(8000);
            for i in next..end {
                let [id, customer, total, status, note, placed, updated, flags] = texts(i);
                params.push(mysql_async::Value::Int(id.parse().unwrap()));
                params.push(mysql_async::Value::Int(customer.parse().unwrap()));
                params.push(mysql_async::Value::Bytes(total.into_bytes()));
                params.push(mysql_async::Value::Bytes(status.into_bytes()));
                params.push(mysql_async::Value::Bytes(note.into_bytes()));
                params.push(mysql_async::Value::Bytes(placed.into_bytes()));
                params.push(mysql_async::Value::Bytes(updated.into_bytes()));
                params.push(mysql_async::Value::Int(flags.parse().unwrap()));
            }
            if end - next == 1000 {
                db.exec_drop(&full, params).await.unwrap();
            } else {
                db.exec_drop(sql(end - next), params).await.unwrap();
            }
            next = end;
            statements += 1;
            if per_commit > 1 && (statements % per_commit == 0 || next >= updates) {
                db.query_drop("COMMIT").await.unwrap();
            }
        }
        row(updates, wall.elapsed(), None, name);
    }
}

/// Starts a sync task to `target` and measures its full sync.
async fn full_sync(
    ctx: &TestContext,
    api: &TestApi,
    target: Value,
    target_db: &str,
    rows: u64,
    name: &str,
) -> (InstanceId, InProcessWorker, f64) {
    let config = json!({
        "source": ctx.stack_source(),
        "target": target,
        "objects": {"databases": [{"name": ctx.mysql_database(), "target_name": target_db,
                                    "tables": [{"name": "orders"}]}]},
        "sync": {"chunk_rows": 20000, "parallel": 4,
                 "apply": std::env::var("FERRY_BENCH_APPLY").unwrap_or_else(|_| "merge".into()),
                 "batch_rows": std::env::var("FERRY_BENCH_BATCH_ROWS").ok()
                     .and_then(|v| v.parse::<u64>().ok()).unwrap_or(5000)},
    });
    let (id, _) = api.start_task("sync", config).await.unwrap();
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let worker = InProcessWorker::start(&api.state);
    eventually("the full sync", Duration::from_secs(3600), || async {
        let t = api.task(&id).await?;
        anyhow::ensure!(t["state"] != "failed", "{t}");
        Ok((t["state"] == "incremental").then_some(()))
    })
    .await
    .unwrap();
    let rate = row(rows, wall.elapsed(), Some(cpu_seconds() - cpu), name);
    (id, worker, rate)
}

/// The apply's source limit: the backlog's binlog read from `from` to `to` by Ferry's reader
/// alone, every row decoded (before and after images), nothing applied.
async fn binlog_read(ctx: &TestContext, from: &(String, u64), to: &(String, u64), updates: u64) {
    use ferry_mysql::binlog::{BinlogReader, SourceEvent, Start};
    let env = ctx.env();
    let params = ferry_mysql::ConnectParams {
        host: env.mysql_host.clone(),
        port: env.mysql_port,
        user: env.mysql_capture_user.clone(),
        password: env.mysql_capture_password.clone(),
        database: None,
    };
    let start = Start::File {
        file: from.0.parse().unwrap(),
        offset: from.1,
    };
    let end: ferry_domain::position::Position = format!("{}:{}", to.0, to.1).parse().unwrap();
    let wall = Instant::now();
    let mut reader = BinlogReader::start(&params, 0x7fff_0001, start, Duration::from_secs(1))
        .await
        .unwrap();
    let mut rows = 0u64;
    loop {
        let e = reader.next().await.unwrap().unwrap();
        if let SourceEvent::Rows(r) = &e.event {
            rows += r.changes.len() as u64;
        }
        if e.position.cmp_file_offset(&end).is_ge() {
            break;
        }
    }
    let _ = reader.close().await;
    assert!(rows >= updates, "read {rows} rows of {updates}");
    row(
        updates,
        wall.elapsed(),
        None,
        "MariaDB binlog read of the backlog, rows decoded (source limit)",
    );
}

/// Stops `worker`, writes `updates` row updates in 1,000-row transactions, starts a worker and
/// measures until the task's checkpoint passes them: the rate.
async fn incremental(
    ctx: &TestContext,
    api: &TestApi,
    id: &InstanceId,
    worker: InProcessWorker,
    updates: u64,
    name: &str,
) -> f64 {
    worker.stop().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    let backlog_start = source_position(&mut db).await.unwrap();
    let mut next = 0u64;
    while next < updates {
        db.query_drop(format!(
            "UPDATE orders SET total = total + 1, flags = flags + 1 WHERE id >= {next} AND id < {}",
            next + 1000
        ))
        .await
        .unwrap();
        next += 1000;
    }
    let backlog_end = source_position(&mut db).await.unwrap();
    binlog_read(ctx, &backlog_start, &backlog_end, updates).await;
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let worker = InProcessWorker::start(&api.state);
    api.wait_checkpoint_past(id, &backlog_end, Duration::from_secs(3600))
        .await
        .unwrap();
    let rate = row(updates, wall.elapsed(), Some(cpu_seconds() - cpu), name);
    worker.stop().await.unwrap();
    rate
}

#[tokio::main]
async fn main() {
    let rows: u64 = std::env::var("FERRY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let updates: u64 = std::env::var("FERRY_BENCH_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000)
        .min(rows);
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    let pg = ctx.postgres().await.unwrap();
    let copy = format!("{}_copy", ctx.mysql_database());
    db.query_drop(format!("CREATE TABLE orders {TABLE}"))
        .await
        .unwrap();
    mariadb_inserts(&mut db, "orders", rows, false).await;

    println!("| measurement | rows | wall | throughput | worker CPU per row |");
    println!("|---|---:|---:|---:|---:|");

    // The source: the full sync's reads, without a target.
    let read = row(
        rows,
        source_reads(&ctx, rows, 20_000, 4).await,
        None,
        "MariaDB chunked consistent reads, 20,000 rows × 4 (source limit)",
    );

    // PostgreSQL: raw COPY, Ferry's full sync, raw batched upserts, Ferry's incremental apply.
    pg.batch_execute(&format!(
        "CREATE SCHEMA raw; CREATE TABLE raw.orders {PG_TABLE}"
    ))
    .await
    .unwrap();
    let text: String = (0..rows).map(copy_line).collect();
    let wall = Instant::now();
    {
        use futures::SinkExt;
        let sink = pg.copy_in("COPY raw.orders FROM STDIN").await.unwrap();
        futures::pin_mut!(sink);
        for chunk in text.as_bytes().chunks(256 * 1024) {
            sink.send(bytes::Bytes::copy_from_slice(chunk))
                .await
                .unwrap();
        }
        sink.finish().await.unwrap();
    }
    let pg_load = row(rows, wall.elapsed(), None, "PostgreSQL COPY (raw limit)");
    drop(text);
    let (pg_task, pg_worker, pg_full) = full_sync(
        &ctx,
        &api,
        ctx.postgres_target().unwrap(),
        "copy",
        rows,
        "Ferry full sync to PostgreSQL",
    )
    .await;
    ratio(
        "  Ferry full sync to PostgreSQL / min(source read, COPY)",
        pg_full,
        read.min(pg_load),
        "≥ 0.8",
    );
    let wall = Instant::now();
    let mut next = 0u64;
    while next < updates {
        let batch: Vec<String> = (next..(next + 1000).min(updates)).map(values).collect();
        pg.batch_execute(&format!(
            "INSERT INTO raw.orders VALUES {} ON CONFLICT (id) DO UPDATE SET {PG_SET}",
            batch.join(",")
        ))
        .await
        .unwrap();
        next += 1000;
    }
    let pg_upsert = row(
        updates,
        wall.elapsed(),
        None,
        "PostgreSQL batched upsert, 1,000 rows (raw limit)",
    );
    pg_upsert_forms(&pg, updates).await;
    let pg_apply = incremental(
        &ctx,
        &api,
        &pg_task,
        pg_worker,
        updates,
        "Ferry incremental apply to PostgreSQL",
    )
    .await;
    ratio(
        "  Ferry incremental apply to PostgreSQL / batched upsert",
        pg_apply,
        pg_upsert,
        "≥ 0.8",
    );
    api.call(
        Method::POST,
        &format!("/v1/instances/{pg_task}/task/stop"),
        None,
    )
    .await
    .unwrap();

    // MariaDB: the stack's target-only server (binlog off), not the source's.
    let mut target = ctx.target_mysql().await.unwrap();
    target
        .query_drop(format!("CREATE DATABASE `{copy}_raw`"))
        .await
        .unwrap();
    target
        .query_drop(format!("CREATE TABLE `{copy}_raw`.orders {TABLE}"))
        .await
        .unwrap();
    let wall = Instant::now();
    mariadb_inserts(&mut target, &format!("`{copy}_raw`.orders"), rows, false).await;
    let my_load = row(
        rows,
        wall.elapsed(),
        None,
        "MariaDB multi-row insert, 1,000 rows (raw limit)",
    );
    // The other bulk path MariaDB offers: `LOAD DATA LOCAL INFILE` of the same pre-rendered
    // text, streamed from the client (measured to pick Ferry's path; issue 20).
    target
        .query_drop(format!("CREATE TABLE `{copy}_raw`.orders_ld {TABLE}"))
        .await
        .unwrap();
    let text = bytes::Bytes::from((0..rows).map(copy_line).collect::<String>());
    let wall = Instant::now();
    {
        use futures::StreamExt;
        let parts: Vec<bytes::Bytes> = (0..text.len())
            .step_by(256 * 1024)
            .map(|at| text.slice(at..(at + 256 * 1024).min(text.len())))
            .collect();
        target.set_infile_handler(async move {
            Ok(futures::stream::iter(parts.into_iter().map(Ok)).boxed())
        });
        target
            .query_drop(format!(
                "LOAD DATA LOCAL INFILE 'orders' INTO TABLE `{copy}_raw`.orders_ld"
            ))
            .await
            .unwrap();
    }
    row(
        rows,
        wall.elapsed(),
        None,
        "MariaDB LOAD DATA LOCAL INFILE of pre-rendered text (raw)",
    );
    drop(text);
    let (my_task, my_worker, my_full) = full_sync(
        &ctx,
        &api,
        ctx.mariadb_target(),
        &copy,
        rows,
        "Ferry full sync to MariaDB",
    )
    .await;
    ratio(
        "  Ferry full sync to MariaDB / min(source read, insert)",
        my_full,
        read.min(my_load),
        "≥ 0.8",
    );
    let wall = Instant::now();
    mariadb_inserts(&mut target, &format!("`{copy}_raw`.orders"), updates, true).await;
    let my_upsert = row(
        updates,
        wall.elapsed(),
        None,
        "MariaDB batched upsert, 1,000 rows (raw limit)",
    );
    mariadb_prepared_upserts(&mut target, &format!("`{copy}_raw`.orders"), updates).await;
    let my_apply = incremental(
        &ctx,
        &api,
        &my_task,
        my_worker,
        updates,
        "Ferry incremental apply to MariaDB",
    )
    .await;
    ratio(
        "  Ferry incremental apply to MariaDB / batched upsert",
        my_apply,
        my_upsert,
        "≥ 0.8",
    );
    target
        .query_drop(format!("DROP DATABASE `{copy}_raw`"))
        .await
        .unwrap();
}

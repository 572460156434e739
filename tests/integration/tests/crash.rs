//! A capture worker killed with SIGKILL in the middle of a stream of 100k changes, and another
//! worker process taking the task over: the topic ends with every change exactly once, in
//! commit order. Nothing of the killed worker's shutdown path runs, so what is tested is the
//! recovery itself: the takeover after the lease expires, the fencing token, the checkpoint
//! (written only behind acknowledged records) and the skip by the topic's tail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::time::Duration;

use ferry_domain::id::InstanceId;
use ferry_testkit::{Step, TestContext, progressing};
use mysql_async::prelude::Queryable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;

const ROWS: u64 = 100_000;
const PER_TRANSACTION: u64 = 1_000;

fn high_watermark(ctx: &TestContext, topic: &str) -> i64 {
    let c: BaseConsumer = ctx.kafka_config().create().unwrap();
    c.fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map(|w| w.1)
        .unwrap_or(0)
}

/// The `events` table and a started tracking task on it named `name`, with its topic and a
/// `ferry worker` process (lease `ttl` seconds) that has it running; the admin connection.
async fn events_task(
    ctx: &TestContext,
    api: &ferry_testkit::TestApi,
    name: &str,
    ttl: u32,
) -> (
    InstanceId,
    String,
    ferry_testkit::WorkerProcess,
    mysql_async::Conn,
) {
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE events (id BIGINT PRIMARY KEY, n INT, note VARCHAR(40))")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database(), "tables": [{"name": "events"}]}]},
    });
    let (id, topic) = api.start_tracking_task(name, config).await.unwrap();
    let id: InstanceId = id.parse().unwrap();
    let worker = ctx.worker_process(ttl).unwrap();
    api.wait_state(&id, "incremental", Duration::from_secs(60))
        .await
        .unwrap();
    (id, topic, worker, db)
}

/// The rows `from..from + rows` of `events`, as an `INSERT`'s values.
fn event_values(from: u64, rows: u64) -> String {
    (from..from + rows)
        .map(|id| format!("({id}, {}, 'change {id}')", id % 97))
        .collect::<Vec<_>>()
        .join(",")
}

/// Inserts ids 1..=`rows` into `events` in transactions of `per_transaction` rows, `pause`
/// between them; hands the connection back when done.
fn spawn_writer(
    mut db: mysql_async::Conn,
    rows: u64,
    per_transaction: u64,
    pause: Duration,
) -> tokio::task::JoinHandle<mysql_async::Conn> {
    tokio::spawn(async move {
        for t in 0..rows / per_transaction {
            let values = event_values(t * per_transaction + 1, per_transaction);
            db.query_drop(format!("INSERT INTO events VALUES {values}"))
                .await
                .unwrap();
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        db
    })
}

/// The topic holds ids 1..=`rows` in commit order, with unique idempotency keys, and nothing
/// shows up after them (`what` says what happened to the worker, for the message). A record
/// may repeat only where a worker reported repairing the topic (`Topic Repaired`: the local
/// broker lost or doubled records under load, docs/reliability.md), and then the last copy of
/// each id is in commit order: a consumer applying the topic ends with the source's rows.
/// When the topic does not reach `rows` records, the message tells a gap (ids missing before
/// the tail) from a stall (the tail behind), from the whole topic as stored.
async fn assert_every_change_once(
    ctx: &TestContext,
    id: &InstanceId,
    topic: &str,
    rows: u64,
    what: &str,
) {
    let filled = progressing(
        &format!("{rows} records in {topic}"),
        Duration::from_secs(180),
        || async {
            let w = high_watermark(ctx, topic);
            Ok(if w >= i64::try_from(rows).unwrap() {
                Step::Done(())
            } else {
                Step::At(w.to_string())
            })
        },
    )
    .await;
    let records = ctx.topic_records(topic).unwrap();
    let ids: Vec<u64> = records
        .iter()
        .map(|r| {
            ferry_testkit::change_json(Some(&r.payload)).unwrap()["after"]["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    let present: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
    let missing: Vec<u64> = (1..=rows).filter(|i| !present.contains(i)).collect();
    let repeated = ids.len() - present.len();
    let reported: u64 = ctx
        .events()
        .await
        .unwrap()
        .iter()
        .filter(|e| {
            e["detail-type"] == "Topic Repaired" && e["detail"]["instance_id"] == id.to_string()
        })
        .map(|e| e["detail"]["resent"].as_u64().unwrap() + e["detail"]["strays"].as_u64().unwrap())
        .sum();
    // The last copy of each id, in topic order.
    let mut seen = std::collections::HashSet::new();
    let mut last: Vec<u64> = ids
        .iter()
        .rev()
        .filter(|i| seen.insert(**i))
        .copied()
        .collect();
    last.reverse();
    if !missing.is_empty()
        || last != (1..=rows).collect::<Vec<_>>()
        || u64::try_from(repeated).unwrap() > reported
    {
        panic!(
            "not every change once, in commit order ({what}): {} records stored (high watermark {}), \
             {} ids missing (first {:?}, last {:?}), {repeated} repeated ({reported} reported as repairs); \
             waiting for the tail: {:?}",
            ids.len(),
            high_watermark(ctx, topic),
            missing.len(),
            missing.first(),
            missing.last(),
            filled.err().map(|e| e.to_string()),
        );
    }
    if repeated > 0 {
        eprintln!(
            "{repeated} records repeated, each reported by the worker that repaired the topic"
        );
    } else {
        let keys: std::collections::HashSet<&String> = records.iter().map(|r| &r.key).collect();
        assert_eq!(keys.len(), records.len(), "idempotency keys are unique");
    }
    // Whatever the second worker might still produce would show past the last change.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        high_watermark(ctx, topic),
        i64::try_from(ids.len()).unwrap(),
        "nothing was produced after the last change"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_stream_loses_and_duplicates_nothing() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let (id, topic, first, db) = events_task(&ctx, &api, "crash", 15).await;

    // The writer runs on while the worker is killed and replaced.
    let writer = spawn_writer(db, ROWS, PER_TRANSACTION, Duration::ZERO);
    let killed_at = progressing(
        "a third of the stream",
        Duration::from_secs(120),
        || async {
            let w = high_watermark(&ctx, &topic);
            Ok(if w >= 30_000 {
                Step::Done(w)
            } else {
                Step::At(w.to_string())
            })
        },
    )
    .await
    .unwrap();
    // The worker's Prometheus endpoint counts what it delivered.
    let scraped = first.metrics().await.unwrap();
    let delivered: u64 = scraped
        .lines()
        .find_map(|l| l.strip_prefix(&format!("ferry_rows_total{{instance=\"{id}\"}} ")))
        .unwrap_or_else(|| panic!("no row counter for the task: {scraped}"))
        .parse()
        .unwrap();
    // What this loop delivered (a loop the worker restarted, after a slow store let its lease
    // run short on a loaded machine, counts from zero again).
    assert!(
        delivered > 0 && delivered <= ROWS,
        "{delivered} rows counted, {killed_at} in the topic"
    );
    assert!(scraped.contains("ferry_tasks_running 1"), "{scraped}");
    first.kill_hard().unwrap();
    let checkpoint = api.checkpoint(&id).await.unwrap();
    let second = ctx.worker_process(15).unwrap();
    let _db = writer.await.unwrap();

    assert_every_change_once(
        &ctx,
        &id,
        &topic,
        ROWS,
        &format!(
            "killed at {killed_at} records, checkpoint {}",
            checkpoint.position
        ),
    )
    .await;
    let lease = api.state.store().get_lease(&id).await.unwrap().unwrap();
    assert!(
        lease.token >= 2,
        "the second worker took over with a newer fencing token"
    );
    drop(second);
}

/// What ECS does to a worker it replaces (a deployment, a scale-in): SIGTERM, then a new worker.
/// The stopped worker finishes its batch, checkpoints behind its last record and releases its
/// lease, so the next worker takes over at once (long before the 300 s lease would expire) and
/// the topic holds every change exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_stopped_with_sigterm_hands_over_without_losing_or_duplicating() {
    const ROWS: u64 = 50_000;
    const PER_TRANSACTION: u64 = 500;
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let (id, topic, first, db) = events_task(&ctx, &api, "graceful", 300).await;

    // A steady writer, running on across the restart.
    let writer = spawn_writer(db, ROWS, PER_TRANSACTION, Duration::from_millis(20));
    progressing(
        "a fifth of the stream",
        Duration::from_secs(120),
        || async {
            let w = high_watermark(&ctx, &topic);
            Ok(if w >= 10_000 {
                Step::Done(())
            } else {
                Step::At(w.to_string())
            })
        },
    )
    .await
    .unwrap();
    let mut first = first;
    let status = first.terminate(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "the worker exits cleanly: {status}");

    // It checkpointed behind the last record it produced, and released its lease.
    let produced = usize::try_from(high_watermark(&ctx, &topic)).unwrap();
    let checkpoint = api.checkpoint(&id).await.unwrap();
    let so_far = ctx.read_records(&topic, produced).await.unwrap();
    assert_eq!(
        checkpoint.last_key.as_deref(),
        so_far.last().map(|(_, _, k)| k.as_str()),
        "the checkpoint covers every record produced before the exit; what the worker warned of:\n{}",
        warnings(&first.log())
    );
    let lease = api.state.store().get_lease(&id).await.unwrap().unwrap();
    assert!(
        lease.expires_at <= chrono::Utc::now(),
        "the lease was released: {lease:?}"
    );

    let second = ctx.worker_process(300).unwrap();
    let _db = writer.await.unwrap();
    assert_every_change_once(
        &ctx,
        &id,
        &topic,
        ROWS,
        &format!("stopped after {produced} records"),
    )
    .await;
    let lease = api.state.store().get_lease(&id).await.unwrap().unwrap();
    assert!(lease.token >= 2, "the second worker holds the task now");
    drop(second);
}

/// The lines of a worker's log at WARN or ERROR (what a failed assertion should show).
fn warnings(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Inserts ids `from..from + rows` into `events` in one transaction.
async fn insert_ids(db: &mut mysql_async::Conn, from: u64, rows: u64) {
    db.query_drop(format!(
        "INSERT INTO events VALUES {}",
        event_values(from, rows)
    ))
    .await
    .unwrap();
}

/// The task's checkpoint once it names `offset` as where partition 0's next record starts: the
/// worker has checkpointed everything before it.
async fn checkpoint_at_offset(
    api: &ferry_testkit::TestApi,
    id: &InstanceId,
    offset: i64,
) -> ferry_store::Checkpoint {
    progressing(
        &format!("a checkpoint at offset {offset}"),
        Duration::from_secs(60),
        || async {
            let c = api.state.store().get_checkpoint(id).await?;
            let at = c.as_ref().and_then(|c| c.offsets.clone());
            Ok(match c {
                Some(c) if at.as_deref() == Some(&[offset]) => Step::Done(c),
                _ => Step::At(format!("{at:?}")),
            })
        },
    )
    .await
    .unwrap()
}

/// The ids of the topic's row records, in topic order.
fn topic_ids(ctx: &TestContext, topic: &str) -> Vec<u64> {
    ctx.topic_records(topic)
        .unwrap()
        .iter()
        .filter(|r| !r.is_heartbeat() && !r.tombstone)
        .filter_map(|r| ferry_testkit::change_json(Some(&r.payload))?["after"]["id"].as_u64())
        .collect()
}

/// A broker that acknowledges records and loses them, or writes records twice, is not Ferry's
/// to fix, but Ferry must not lose a change to it. Simulated on the local broker's storage and
/// with a second producer: a record acknowledged and then missing from the topic after the
/// checkpoint is written again by the next loop (with the records after it, so each key's
/// changes stay in order), and a record the loop did not write landing in the middle of its
/// stream stops the loop, whose successor writes nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn records_the_broker_lost_or_doubled_are_found_and_nothing_is_lost() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let (id, topic, worker, mut db) = events_task(&ctx, &api, "lossy", 15).await;
    let env = ctx.env();

    // 1. The task's first checkpoint names where its records start (offset 0); ids
    //    1..=1000, checkpointed, and the worker killed.
    let early = checkpoint_at_offset(&api, &id, 0).await;
    for t in 0..10 {
        insert_ids(&mut db, 1 + t * 100, 100).await;
    }
    let late = checkpoint_at_offset(&api, &id, 1000).await;
    worker.kill_hard().unwrap();

    // 2. The crash came before any checkpoint after the first (the checkpoint is back at the
    //    first one, offset 0: a loop restarted after a producer timeout under load, before
    //    checkpointing, once trusted the topic's last record there and skipped a batch the
    //    broker never wrote), and the broker lost the record of id 701 (offset 700), which it
    //    had acknowledged.
    let mut back = early.clone();
    back.token = late.token;
    let version = api.task(&id).await.unwrap()["config_version"]
        .as_u64()
        .unwrap();
    api.state
        .store()
        .write_checkpoint(&id, &back, version)
        .await
        .unwrap();
    let nisshi = env.postgres("nisshi").await.unwrap();
    for table in ["header", "record"] {
        let n = nisshi
            .execute(
                &format!(
                    "DELETE FROM {table} USING topition tp, topic t \
                     WHERE {table}.topition = tp.id AND tp.topic = t.id \
                     AND t.name = $1 AND tp.partition = 0 AND {table}.offset_id = 700"
                ),
                &[&topic],
            )
            .await
            .unwrap();
        assert!(n > 0, "the broker's {table} rows of offset 700 were found");
    }
    assert!(
        !topic_ids(&ctx, &topic).contains(&701),
        "the record is gone"
    );

    // 3. The next worker finds the hole and writes id 701 again, followed by 702..=1000 (in
    //    order after it); then new changes once each.
    let worker = ctx.worker_process(15).unwrap();
    insert_ids(&mut db, 1001, 100).await;
    assert_every_id(&ctx, &topic, 1100, 999 + 400).await;
    let ids = topic_ids(&ctx, &topic);
    let original: Vec<u64> = (1..=1000).filter(|i| *i != 701).collect();
    assert_eq!(ids[..999], original[..], "what the topic held stays");
    let resent: Vec<u64> = (701..=1100).collect();
    assert_eq!(
        ids[999..],
        resent[..],
        "the lost record, the records after it again, in order, then the new changes once"
    );

    // 4. A record the loop did not write (a stalled request of an earlier producer, landing
    //    late) arrives while the loop runs: the loop's next record lands one offset later than
    //    it must, the loop stops before checkpointing it, and the next loop writes nothing twice.
    let stray = ctx
        .topic_records(&topic)
        .unwrap()
        .into_iter()
        .rev()
        .find(|r| !r.is_heartbeat())
        .unwrap();
    let producer: rdkafka::producer::BaseProducer = ctx.kafka_config().create().unwrap();
    let headers = rdkafka::message::OwnedHeaders::new()
        .insert(rdkafka::message::Header {
            key: ferry_kafka::KEY_HEADER,
            value: Some(stray.key.as_bytes()),
        })
        .insert(rdkafka::message::Header {
            key: ferry_kafka::POSITION_HEADER,
            value: Some(stray.position.as_bytes()),
        })
        .insert(rdkafka::message::Header {
            key: ferry_kafka::SOURCE_HEADER,
            value: stray.source.as_deref().map(str::as_bytes),
        });
    let mut record = rdkafka::producer::BaseRecord::<[u8], [u8]>::to(&topic)
        .partition(0)
        .payload(&stray.payload)
        .headers(headers);
    if let Some(k) = &stray.row_key {
        record = record.key(k);
    }
    producer.send(record).map_err(|(e, _)| e).unwrap();
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60)).unwrap();
    insert_ids(&mut db, 1101, 100).await;
    insert_ids(&mut db, 1201, 100).await;
    assert_every_id(&ctx, &topic, 1300, 999 + 400 + 1 + 200).await;
    let ids = topic_ids(&ctx, &topic);
    let tail: Vec<u64> = (1101..=1300).collect();
    assert_eq!(
        ids[ids.len() - 200..],
        tail[..],
        "the new changes once each, in order"
    );
    assert_eq!(
        ids[ids.len() - 201],
        1100,
        "the stray is left where it landed"
    );
    let scraped = worker.metrics().await.unwrap();
    assert!(
        scraped
            .lines()
            .any(|l| l.starts_with("ferry_loop_ends_total{") && l.contains("reason=\"transient\"")),
        "the loop stopped when its record landed out of place: {scraped}"
    );
    let t = api.task(&id).await.unwrap();
    assert_ne!(t["state"], "failed", "{t}");
    // Both repairs were published for automation (`Topic Repaired`), the second once the
    // stopped loop's successor compared the topic (after its backoff).
    let repairs = std::sync::Mutex::new(Vec::<(u64, u64, u64)>::new());
    progressing(
        "both repairs published",
        Duration::from_secs(90),
        || async {
            let mut seen = repairs.lock().unwrap().clone();
            seen.extend(
                ctx.events()
                    .await?
                    .iter()
                    .filter(|e| {
                        e["detail-type"] == "Topic Repaired"
                            && e["detail"]["instance_id"] == id.to_string()
                    })
                    .map(|e| {
                        let n = |f: &str| e["detail"][f].as_u64().unwrap();
                        (n("missing"), n("resent"), n("strays"))
                    }),
            );
            *repairs.lock().unwrap() = seen.clone();
            // The loop's checkpoint moving counts as progress too.
            let at = api
                .state
                .store()
                .get_checkpoint(&id)
                .await?
                .map(|c| c.position.to_string());
            Ok(if seen.len() >= 2 {
                Step::Done(())
            } else {
                Step::At(format!("{seen:?} at {at:?}"))
            })
        },
    )
    .await
    .unwrap();
    let repairs = repairs.into_inner().unwrap();
    assert_eq!(repairs, [(1, 299, 0), (0, 0, 1)], "what each restart found");
    drop(worker);
}

/// Waits until the topic holds `records` row records and every id up to `last`.
async fn assert_every_id(ctx: &TestContext, topic: &str, last: u64, records: usize) {
    let result = progressing(
        &format!("ids 1..={last} in {topic}"),
        Duration::from_secs(120),
        || async {
            let ids = topic_ids(ctx, topic);
            let have: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
            Ok(
                if ids.len() >= records && (1..=last).all(|i| have.contains(&i)) {
                    Step::Done(())
                } else {
                    Step::At(format!("{} records", ids.len()))
                },
            )
        },
    )
    .await;
    if let Err(e) = result {
        panic!(
            "{e}: the topic holds {:?}",
            summarize(&topic_ids(ctx, topic))
        );
    }
}

/// Runs of consecutive ids, for a readable failure.
fn summarize(ids: &[u64]) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for &i in ids {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == i => *end = i,
            _ => runs.push((i, i)),
        }
    }
    runs
}

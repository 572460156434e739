//! Change tracking for consumers: consumer groups reading a task's topic with a standard Kafka
//! client and the progress the API shows for them, task metrics, and reselecting objects on a
//! running task.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use ferry_testkit::{TestApi, TestContext, eventually};
use mysql_async::prelude::Queryable;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};

/// How long a wait may see no progress (of the task's checkpoint, or of what it waits for).
const STALL: Duration = Duration::from_secs(90);

/// A consumer of `group` as any application would run one: subscribed, committing itself.
fn group_consumer(ctx: &TestContext, group: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ctx
        .kafka_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    c
}

/// The next `n` records, as (offset, source time, row id); commits after the last one.
fn consume(c: &BaseConsumer, n: usize) -> Vec<(i64, DateTime<Utc>, i64)> {
    let mut out = Vec::with_capacity(n);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last: Option<BorrowedMessage<'_>> = None;
    while out.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {n} records in 60 s",
            out.len()
        );
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.unwrap();
        let Some(v) = ferry_testkit::change_json(m.payload()) else {
            continue; // a tombstone
        };
        let at = DateTime::from_timestamp_millis(m.timestamp().to_millis().unwrap()).unwrap();
        out.push((m.offset(), at, v["after"]["id"].as_i64().unwrap()));
        last = Some(m);
    }
    if let Some(m) = last {
        c.commit_message(&m, CommitMode::Sync).unwrap();
    }
    out
}

/// What `group` committed for partition 0 of `topic` (`Invalid` when nothing).
fn committed_offset(ctx: &TestContext, group: &str, topic: &str) -> Offset {
    let probe: BaseConsumer = ctx.kafka_config().set("group.id", group).create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let committed = probe
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    committed.find_partition(topic, 0).unwrap().offset()
}

/// The task's metrics, once `ready` accepts them (30 s at most).
async fn metrics_when(
    api: &TestApi,
    id: &ferry_domain::id::InstanceId,
    ready: impl Fn(&Value) -> bool,
) -> Value {
    api.metrics_when(id, STALL, ready).await.unwrap()
}

/// Nothing more arrives within `wait`.
fn assert_nothing_more(c: &BaseConsumer, wait: Duration) {
    let deadline = std::time::Instant::now() + wait;
    while std::time::Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            panic!("an unexpected record at offset {}", m.unwrap().offset());
        }
    }
}

async fn groups(api: &TestApi, id: &str) -> BTreeMap<String, Value> {
    let list = api
        .call(
            Method::GET,
            &format!("/v1/instances/{id}/consumer-groups"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(list.status, StatusCode::OK, "{}", list.text);
    list.body["consumer_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["id"].as_str().unwrap().to_owned(), g.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_consumer_groups_read_the_stream_independently_and_the_api_shows_their_progress() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE items (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database(), "tables": [{"name": "items"}]}]},
    });
    let (id, topic, worker) = api.running_task(config).await.unwrap();

    let mut gids = Vec::new();
    for (name, user) in [("billing", "billing"), ("search", "search")] {
        let g = api
            .call(
                Method::POST,
                &format!("/v1/instances/{id}/consumer-groups"),
                Some(json!({"name": name, "username": user, "password": "Consumer-Pass1"})),
            )
            .await
            .unwrap();
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
        gids.push(g.body["id"].as_str().unwrap().to_owned());
    }
    let before = groups(&api, id.as_str()).await;
    assert_eq!(
        before[&gids[0]]["progress"]["unconsumed"], 0,
        "an empty topic: {before:?}"
    );

    // Two batches a second apart, so their source times differ.
    for i in 1..=100 {
        db.exec_drop("INSERT INTO items VALUES (?, ?)", (i, i))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second_batch_from = Utc::now();
    for i in 101..=200 {
        db.exec_drop("INSERT INTO items VALUES (?, ?)", (i, i))
            .await
            .unwrap();
    }

    // Each group reads the whole stream; the second stops after 120 records.
    let a = group_consumer(&ctx, &gids[0], &topic);
    let all = consume(&a, 200);
    assert_eq!(
        all.iter().map(|r| r.2).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    for (_, at, row) in &all {
        let (lo, hi) = if *row <= 100 {
            (
                second_batch_from - chrono::Duration::seconds(60),
                second_batch_from,
            )
        } else {
            (second_batch_from - chrono::Duration::seconds(1), Utc::now())
        };
        assert!(
            (lo..=hi).contains(at),
            "row {row}'s record time {at} is its source time"
        );
    }
    let b = group_consumer(&ctx, &gids[1], &topic);
    let first = consume(&b, 120);
    assert_eq!(first, all[..120]);

    let progress = groups(&api, id.as_str()).await;
    let pa = &progress[&gids[0]]["progress"];
    assert_eq!(pa["unconsumed"], 0, "{pa}");
    assert_eq!(pa["delay_seconds"], 0.0);
    assert_eq!(pa["partitions"][0]["committed_offset"], 200);
    assert_eq!(
        pa["consumption_checkpoint"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        all[199].1
    );
    let pb = &progress[&gids[1]]["progress"];
    assert_eq!(pb["unconsumed"], 80, "{pb}");
    assert_eq!(pb["partitions"][0]["committed_offset"], 120);
    assert_eq!(
        pb["consumption_checkpoint"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        all[119].1
    );
    let waited = (Utc::now() - all[120].1).num_milliseconds() as f64 / 1000.0;
    let delay = pb["delay_seconds"].as_f64().unwrap();
    assert!(
        delay > 0.0 && (delay - waited).abs() < 5.0,
        "group delay {delay} s, the oldest unconsumed change waited {waited} s"
    );

    // Restarted, the second group resumes from its committed offset: the rest, once.
    drop(b);
    let b = group_consumer(&ctx, &gids[1], &topic);
    let rest = consume(&b, 80);
    assert_eq!(rest, all[120..]);
    assert_nothing_more(&b, Duration::from_secs(2));

    // Any consumer can start from a time: the second batch by its source time.
    let from = all[100].1.timestamp_millis();
    let reader: BaseConsumer = ctx.kafka_config().create().unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted
        .add_partition_offset(&topic, 0, Offset::Offset(from))
        .unwrap();
    let found = reader
        .offsets_for_times(wanted, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        found.find_partition(&topic, 0).unwrap().offset(),
        Offset::Offset(100)
    );

    // Task metrics: the rows, per minute, and a small delay.
    // The rows, and a small delay once the worker has caught up with the shared binlog.
    let metrics = metrics_when(&api, &id, |m| {
        let rows: u64 = m["history"]
            .as_array()
            .map(|h| h.iter().filter_map(|p| p["rows"].as_u64()).sum())
            .unwrap_or_default();
        rows == 200 && m["source_delay_seconds"].as_f64().is_some_and(|d| d < 10.0)
    })
    .await;
    assert_eq!(metrics["state"], "incremental");
    assert!(metrics["reported_at"].is_string(), "{metrics}");
    let exposition = worker.metrics.encode();
    assert!(
        exposition.contains(&format!("ferry_rows_total{{instance=\"{id}\"}} 200")),
        "{exposition}"
    );

    // A group with a connected consumer is not deleted; once it is gone, the group and its
    // committed offsets are.
    let refused = api
        .call(
            Method::DELETE,
            &format!("/v1/instances/{id}/consumer-groups/{}", gids[0]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.text);
    assert_eq!(refused.code(), "group_in_use");
    drop(a);
    eventually(
        "the group to be deleted",
        Duration::from_secs(120),
        || async {
            let r = api
                .call(
                    Method::DELETE,
                    &format!("/v1/instances/{id}/consumer-groups/{}", gids[0]),
                    None,
                )
                .await?;
            Ok((r.status == StatusCode::NO_CONTENT).then_some(()))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        committed_offset(&ctx, &gids[0], &topic),
        Offset::Invalid,
        "the deleted group's offsets are gone"
    );
    let left = groups(&api, id.as_str()).await;
    assert_eq!(left.keys().collect::<Vec<_>>(), [&gids[1]]);
    worker.stop().await.unwrap();
}

/// The (file, offset) a debezium-json record was read at.
fn position_of(v: &Value) -> (String, u64) {
    (
        v["source"]["file"].as_str().unwrap().to_owned(),
        v["source"]["pos"].as_u64().unwrap(),
    )
}

fn parse_position(p: &str) -> (String, u64) {
    let (file, rest) = p.split_once(':').unwrap();
    let offset = rest.split('@').next().unwrap().parse().unwrap();
    (file.to_owned(), offset)
}

#[tokio::test(flavor = "multi_thread")]
async fn reselecting_objects_under_load_switches_at_a_boundary_without_gap_or_duplicate() {
    // The worker's log, shown when the test fails.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ferry_worker=info")
        .with_test_writer()
        .try_init();
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE a (id INT PRIMARY KEY); CREATE TABLE b (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let database = ctx.mysql_database().to_owned();
    let only = |tables: &[&str]| json!({"databases": [{"name": database, "tables": tables.iter().map(|t| json!({"name": t})).collect::<Vec<_>>()}]});
    let config = json!({"source": ctx.stack_source(), "objects": only(&["a"])});
    let (id, topic, worker) = api.running_task(config).await.unwrap();

    // A steady load: transaction i writes row i into both tables.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut writer_db = ctx.mysql().await.unwrap();
    let writer = tokio::spawn(async move {
        let mut i = 0i64;
        while !*stop_rx.borrow_and_update() {
            i += 1;
            let mut tx = writer_db
                .start_transaction(mysql_async::TxOpts::default())
                .await
                .unwrap();
            tx.exec_drop("INSERT INTO a VALUES (?)", (i,))
                .await
                .unwrap();
            tx.exec_drop("INSERT INTO b VALUES (?)", (i,))
                .await
                .unwrap();
            tx.commit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        i
    });

    let reselect = |objects: Value| {
        let api = &api;
        let id = id.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let r = api
                .call(
                    Method::PUT,
                    &format!("/v1/instances/{id}/task/objects"),
                    Some(objects),
                )
                .await
                .unwrap();
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            let version = r.body["config_version"].as_u64().unwrap();
            api.wait_for(&id, "the switch", STALL, || async {
                let t = api
                    .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
                    .await?;
                Ok((t.body["objects_applied"]["config_version"] == version).then_some(()))
            })
            .await
            .unwrap();
        }
    };
    reselect(only(&["a", "b"])).await;
    reselect(only(&["b"])).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop_tx.send(true).unwrap();
    let last = writer.await.unwrap();

    // Everything up to b's last row, then nothing more.
    let c: BaseConsumer = ctx
        .kafka_config()
        .set("group.id", ctx.group("check"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[&topic]).unwrap();
    let mut records: Vec<(String, i64, (String, u64))> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !records.iter().any(|(t, i, _)| t == "b" && *i == last) {
        assert!(
            std::time::Instant::now() < deadline,
            "b's last row did not arrive"
        );
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.unwrap();
            let Some(v) = ferry_testkit::change_json(m.payload()) else {
                continue; // a tombstone
            };
            records.push((
                v["source"]["table"].as_str().unwrap().to_owned(),
                v["after"]["id"].as_i64().unwrap(),
                position_of(&v),
            ));
        }
    }
    assert_nothing_more(&c, Duration::from_secs(2));

    let ids = |table: &str| -> Vec<i64> {
        records
            .iter()
            .filter(|r| r.0 == table)
            .map(|r| r.1)
            .collect()
    };
    let (a, b) = (ids("a"), ids("b"));
    let (a_last, b_first) = (*a.last().unwrap(), b[0]);
    assert_eq!(
        a,
        (1..=a_last).collect::<Vec<_>>(),
        "a: from the start, no gap or duplicate"
    );
    assert_eq!(
        b,
        (b_first..=last).collect::<Vec<_>>(),
        "b: to the end, no gap or duplicate"
    );
    assert!(
        b_first > 1 && a_last < last,
        "both switches happened mid-stream"
    );
    assert!(
        a_last >= b_first,
        "both tables were carried between the switches"
    );

    // The switches are recorded at the positions where they took effect.
    let history = api.state.store().selection_history(&id).await.unwrap();
    assert_eq!(history.len(), 3, "{history:?}");
    let added = parse_position(&history[1].position.to_string());
    let removed = parse_position(&history[2].position.to_string());
    for (table, row, at) in &records {
        match table.as_str() {
            "a" => assert!(
                *at <= removed,
                "a row {row} at {at:?} after a was removed at {removed:?}"
            ),
            _ => assert!(
                *at > added,
                "b row {row} at {at:?} before b was added at {added:?}"
            ),
        }
    }
    // No switch restarted the loop. When nothing else did either (a slow store on a loaded
    // machine can), its counter holds every row it delivered.
    let exposition = worker.metrics.encode();
    assert!(
        !exposition.contains(&format!(
            "ferry_loop_ends_total{{instance=\"{id}\",reason=\"config_changed\"}}"
        )),
        "a reselection restarted the loop: {exposition}"
    );
    if !exposition.contains(&format!("ferry_loop_ends_total{{instance=\"{id}\"")) {
        assert!(
            exposition.contains(&format!(
                "ferry_rows_total{{instance=\"{id}\"}} {}",
                records.len()
            )),
            "{exposition}"
        );
    }
    worker.stop().await.unwrap();
}

/// Sleeps until just past the next whole second, and returns that second: binlog times have
/// one-second resolution, so changes made after it are stamped at or after it.
async fn next_second() -> DateTime<Utc> {
    let now = Utc::now();
    let next = DateTime::from_timestamp(now.timestamp() + 1, 0).unwrap();
    let wait = (next - now).to_std().unwrap() + Duration::from_millis(150);
    tokio::time::sleep(wait).await;
    next
}

#[tokio::test(flavor = "multi_thread")]
async fn the_changes_api_returns_exactly_one_keys_changes_in_a_time_window() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE accounts (id INT PRIMARY KEY, balance INT)")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
    });
    let (id, _topic, worker) = api.running_task(config).await.unwrap();

    // Before the window: the rows, and one change of key 5.
    let rows: Vec<String> = (1..=20).map(|i| format!("({i}, 100)")).collect();
    db.query_drop(format!("INSERT INTO accounts VALUES {}", rows.join(",")))
        .await
        .unwrap();
    db.query_drop("UPDATE accounts SET balance = 90 WHERE id = 5")
        .await
        .unwrap();
    // In the window: three changes of key 5, and others.
    let from = next_second().await;
    for balance in [80, 70, 60] {
        db.exec_drop("UPDATE accounts SET balance = ? WHERE id = 5", (balance,))
            .await
            .unwrap();
        db.query_drop("UPDATE accounts SET balance = balance + 1 WHERE id = 6")
            .await
            .unwrap();
    }
    db.query_drop("DELETE FROM accounts WHERE id = 7")
        .await
        .unwrap();
    let to = next_second().await - chrono::Duration::milliseconds(1);
    // After the window.
    next_second().await;
    db.query_drop("UPDATE accounts SET balance = 50 WHERE id = 5")
        .await
        .unwrap();

    let get = |query: String| {
        let api = &api;
        let id = id.clone();
        async move {
            api.call(
                Method::GET,
                &format!("/v1/instances/{id}/changes?{query}"),
                None,
            )
            .await
            .unwrap()
        }
    };
    let window = format!(
        "from={}&to={}",
        from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        to.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )
    .replace('+', "%2B");
    api.wait_for(&id, "every change of key 5 in the topic", STALL, || async {
        let all = get("table=accounts&key=5".into()).await;
        Ok((all.body["changes"].as_array().map(Vec::len) == Some(6)).then_some(()))
    })
    .await
    .unwrap();

    let page = get(format!("table=accounts&key=5&{window}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let changes = page.body["changes"].as_array().unwrap();
    let balances: Vec<(i64, i64)> = changes
        .iter()
        .map(|c| {
            assert_eq!(c["operation"], "update", "{c}");
            assert_eq!(c["key"], json!({"id": 5}));
            assert_eq!(c["table"], "accounts");
            (
                c["before"]["balance"].as_i64().unwrap(),
                c["after"]["balance"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(balances, [(90, 80), (80, 70), (70, 60)], "{}", page.text);
    assert!(page.body["next_page_token"].is_null());

    let deletes = get(format!("operation=delete&{window}")).await;
    let deletes = deletes.body["changes"].as_array().unwrap();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["key"], json!({"id": 7}));
    assert_eq!(deletes[0]["before"], json!({"id": 7, "balance": 100}));

    // A page at a time: the same three, in order.
    let mut paged = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10 {
        let q = format!(
            "table=accounts&key=%7B%22id%22%3A5%7D&limit=1&{window}{}",
            token
                .as_deref()
                .map(|t| format!("&page_token={t}"))
                .unwrap_or_default()
        );
        let page = get(q).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        paged.extend(page.body["changes"].as_array().unwrap().iter().cloned());
        token = page.body["next_page_token"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(&paged, changes);

    let forged = |spans: &[(i32, i64, i64)]| {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&json!({"partitions": spans})).unwrap());
        format!("{window}&page_token={token}")
    };
    for (query, field) in [
        (
            format!("from={}&to={}", to.to_rfc3339(), from.to_rfc3339()).replace('+', "%2B"),
            "from",
        ),
        ("operation=truncate".to_owned(), "operation"),
        ("page_token=not-a-token".to_owned(), "page_token"),
        // Forged tokens: spans past the partition's end (a page would wait for records that
        // never come), a partition the topic does not have, one partition twice.
        (forged(&[(0, 0, 1_000_000)]), "page_token"),
        (forged(&[(7, 0, 1)]), "page_token"),
        (forged(&[(0, 0, 1), (0, 0, 1)]), "page_token"),
        ("limit=0".to_owned(), "limit"),
        ("from=yesterday".to_owned(), "from"),
    ] {
        let bad = get(query.clone()).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{query}: {}", bad.text);
        assert_eq!(
            bad.body["error"]["details"]["field"], field,
            "{query}: {}",
            bad.text
        );
        assert!(bad.body["error"]["hint"].is_string(), "{}", bad.text);
    }
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_heartbeat_writer_measures_the_delay_and_stays_out_of_the_topic() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE items (id INT PRIMARY KEY)")
        .await
        .unwrap();
    // What the heartbeat writer needs beside capture's privileges.
    db.query_drop(format!(
        "GRANT CREATE, INSERT, UPDATE ON `{}`.`ferry_heartbeat` TO '{}'@'%'",
        ctx.mysql_database(),
        ctx.env().mysql_capture_user
    ))
    .await
    .unwrap();
    // The whole database is selected: the heartbeat table is in it.
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
        "heartbeat": {"database": ctx.mysql_database(), "interval_ms": 200},
    });
    let (id, topic, worker) = api.running_task(config).await.unwrap();
    db.query_drop("INSERT INTO items VALUES (1), (2), (3)")
        .await
        .unwrap();

    let beat: i64 = api
        .wait_for(&id, "a heartbeat on the source", STALL, || async {
            let mut db = ctx.mysql().await?;
            let beat: Option<i64> = db
                .exec_first(
                    "SELECT beat_ms FROM ferry_heartbeat WHERE task = ?",
                    (id.as_str(),),
                )
                .await
                .ok()
                .flatten();
            Ok(beat)
        })
        .await
        .unwrap();
    assert!((Utc::now().timestamp_millis() - beat).abs() < 5_000);
    let metrics = metrics_when(&api, &id, |m| {
        m["source_delay_seconds"].as_f64().is_some_and(|d| d < 1.0)
    })
    .await;
    assert!(metrics["reported_at"].is_string(), "{metrics}");

    // Seconds of heartbeats later, the topic holds the rows and nothing of the heartbeats.
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.query_drop("INSERT INTO items VALUES (4)").await.unwrap();
    let records = ctx.read_records(&topic, 4).await.unwrap();
    let ids: Vec<i64> = records
        .iter()
        .map(|(_, r, _)| r["after"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let c: BaseConsumer = ctx.kafka_config().create().unwrap();
    let (_, high) = c
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(high, 4, "no heartbeat row or DDL reached the topic");
    worker.stop().await.unwrap();
    db.query_drop(format!(
        "REVOKE CREATE, INSERT, UPDATE ON `{}`.`ferry_heartbeat` FROM '{}'@'%'",
        ctx.mysql_database(),
        ctx.env().mysql_capture_user
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_instance_deletes_its_topic_and_its_groups_offsets() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE items (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
    });
    let (id, topic, worker) = api.running_task(config).await.unwrap();
    let group = api
        .call(
            Method::POST,
            &format!("/v1/instances/{id}/consumer-groups"),
            Some(json!({"name": "g", "username": "g", "password": "Consumer-Pass1"})),
        )
        .await
        .unwrap();
    let gid = group.body["id"].as_str().unwrap().to_owned();
    db.query_drop("INSERT INTO items VALUES (1)").await.unwrap();
    let c = group_consumer(&ctx, &gid, &topic);
    assert_eq!(consume(&c, 1)[0].2, 1);
    drop(c);

    let deleted = api
        .call(Method::DELETE, &format!("/v1/instances/{id}"), None)
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let admin: BaseConsumer = ctx.kafka_config().create().unwrap();
    eventually(
        "the topic to be deleted",
        Duration::from_secs(90),
        || async {
            let metadata = admin.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
            let gone = metadata
                .topics()
                .iter()
                .all(|t| t.name() != topic || t.error().is_some() || t.partitions().is_empty());
            let pending = api.state.store().pending_cleanups().await?;
            Ok((gone && pending.is_empty()).then_some(()))
        },
    )
    .await
    .unwrap();
    assert_eq!(
        committed_offset(&ctx, &gid, &topic),
        Offset::Invalid,
        "the group's offsets are gone"
    );
    worker.stop().await.unwrap();
}

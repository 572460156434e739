//! Kinesis delivery: a change-tracking task writing to a Kinesis data stream (the local AWS
//! endpoint's), so Lambda event source mappings can react to row changes.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use axum::http::{Method, StatusCode};
use ferry_testkit::TestContext;
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const ROWS: i64 = 20_000;
const UPDATES: i64 = 4;

/// Every record of every shard of `stream`, per shard in sequence order, until `expected`
/// distinct changes arrived (then for three more seconds, to see repeats), or a minute passed
/// without new ones. Repeats do not count towards `expected`: after a loop restart they do not
/// mean the stream is complete.
async fn read_stream(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    expected: usize,
) -> Vec<(String, Value)> {
    let shards = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap()
        .shards
        .unwrap_or_default();
    let mut iterators = Vec::new();
    for shard in &shards {
        let it = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator
            .unwrap();
        iterators.push((shard.shard_id().to_owned(), Some(it)));
    }
    let mut out = Vec::with_capacity(expected);
    let mut distinct = std::collections::HashSet::new();
    let mut last_new = std::time::Instant::now();
    // Short of every change, a quiet stream is waited on for three minutes: on a loaded
    // machine the local endpoint (one request at a time) can hold the loop's puts back a minute.
    let quiet = |n: usize| Duration::from_secs(if n < expected { 180 } else { 3 });
    while last_new.elapsed() < quiet(distinct.len()) {
        for (shard, iterator) in &mut iterators {
            let Some(it) = iterator.take() else { continue };
            let page = kinesis
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .unwrap();
            if !page.records().is_empty() {
                last_new = std::time::Instant::now();
            }
            for r in page.records() {
                let record = ferry_testkit::change_json(Some(r.data().as_ref())).unwrap();
                distinct.insert(change_of(&record));
                out.push((shard.clone(), record));
            }
            *iterator = page.next_shard_iterator;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    out
}

/// What identifies a change in a record: its binlog position and row index.
fn change_of(record: &Value) -> (String, String, String) {
    let s = &record["source"];
    (
        s["file"].to_string(),
        s["pos"].to_string(),
        s["row"].to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_thousand_changes_reach_a_kinesis_stream_complete_and_in_per_row_order() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let kinesis = aws_sdk_kinesis::Client::new(&ctx.env().aws_config().await);
    let stream = ctx.topic("changes");
    kinesis
        .create_stream()
        .stream_name(&stream)
        .shard_count(3)
        .send()
        .await
        .unwrap();

    // A stream that does not exist fails the configuration's start, not later.
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE accounts (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    let delivery = |stream: &str| json!({"destination": "kinesis", "kinesis_stream": stream});
    let objects = json!({"databases": [{"name": ctx.mysql_database()}]});
    let bad = api
        .call(
            Method::POST,
            "/v1/instances",
            Some(json!({"name": "k", "mode": "tracking", "billing": {"type": "pay_as_you_go"}})),
        )
        .await
        .unwrap();
    let no_stream = api
        .call(
            Method::PUT,
            &format!("/v1/instances/{}/task", bad.body["id"].as_str().unwrap()),
            Some(json!({"source": ctx.stack_source(), "objects": objects, "delivery": {"destination": "kinesis"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        no_stream.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        no_stream.text
    );
    assert!(
        no_stream.text.contains("kinesis_stream"),
        "{}",
        no_stream.text
    );

    let config =
        json!({"source": ctx.stack_source(), "objects": objects, "delivery": delivery(&stream)});
    let (_id, _topic, worker) = api.running_task(config).await.unwrap();

    // 20,000 inserts, then four updates of every row: 100,000 changes.
    for chunk in 0..ROWS / 1000 {
        let values: Vec<String> = (1..=1000)
            .map(|i| format!("({}, 0)", chunk * 1000 + i))
            .collect();
        db.query_drop(format!("INSERT INTO accounts VALUES {}", values.join(",")))
            .await
            .unwrap();
    }
    for _ in 0..UPDATES {
        db.query_drop("UPDATE accounts SET v = v + 1")
            .await
            .unwrap();
    }
    let expected = usize::try_from(ROWS * (1 + UPDATES)).unwrap();
    let delivered = read_stream(&kinesis, &stream, expected).await;
    // Kinesis delivery is at least once: a capture loop restarted by a transient failure (on a
    // loaded machine, a slow store can expire a renewal) sends again what followed its
    // checkpoint. Consumers drop repeats by the change's position and row index, and so does
    // this check; without a restart there are none.
    let mut seen = std::collections::HashSet::new();
    let records: Vec<(String, Value)> = delivered
        .iter()
        .filter(|(_, r)| seen.insert(change_of(r)))
        .cloned()
        .collect();
    assert_eq!(records.len(), expected, "every change");
    let exposition = worker.metrics.encode();
    if !exposition.contains("ferry_loop_ends_total{") {
        assert_eq!(
            delivered.len(),
            records.len(),
            "repeats without a loop restart"
        );
    }

    // Per row: its insert, then its updates in order, all in one shard.
    let mut rows: HashMap<i64, (String, Vec<i64>)> = HashMap::new();
    for (shard, r) in &records {
        let id = r["after"]["id"].as_i64().unwrap();
        let entry = rows
            .entry(id)
            .or_insert_with(|| (shard.clone(), Vec::new()));
        assert_eq!(&entry.0, shard, "row {id} changes stay in one shard");
        entry.1.push(r["after"]["v"].as_i64().unwrap());
        if entry.1.len() == 1 {
            assert_eq!(r["op"], "c", "row {id} starts with its insert");
        }
    }
    assert_eq!(rows.len(), usize::try_from(ROWS).unwrap());
    let in_order: Vec<i64> = (0..=UPDATES).collect();
    for (id, (_, versions)) in &rows {
        assert_eq!(versions, &in_order, "row {id}");
    }
    let shards: std::collections::HashSet<&String> = rows.values().map(|(s, _)| s).collect();
    assert!(shards.len() > 1, "rows spread over the shards by key");
    worker.stop().await.unwrap();
}

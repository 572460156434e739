//! The consumer gateway's cost: consume throughput through the gateway beside direct
//! consumption from the broker in the same run, and the latency the gateway adds to a
//! round trip.
//!
//! `cargo bench -p ferry-tests --bench gateway` with the stack up. `FERRY_BENCH_RECORDS`
//! (default 200,000 records of ~300 bytes, LZ4 as Ferry writes them) are produced to one
//! group's topic, then read from the beginning by a librdkafka consumer: directly from the
//! broker, then through the gateway signed in with SCRAM-SHA-512, alternating, twice each.
//! Round trips: `FERRY_BENCH_REQUESTS` (default 2,000) ListOffsets requests on one connection,
//! direct and through the gateway. Results go to docs/benchmarks.md by hand, with the machine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ferry_testkit::gateway::{RawClient, TestGateway};
use ferry_testkit::{TestContext, cpu_seconds};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

const PASSWORD: &str = "Bench-Pass1";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Reads `n` records from offset 0; returns (seconds, bytes, CPU seconds of this process).
fn consume(config: ClientConfig, topic: &str, n: usize) -> (f64, u64, f64) {
    let c: BaseConsumer = config.create().unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let cpu = cpu_seconds();
    let start = Instant::now();
    let (mut read, mut bytes) = (0, 0u64);
    while read < n {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                read += 1;
                bytes += m.payload_len() as u64;
            }
            Some(Err(e)) => panic!("consuming: {e}"),
            None => panic!("stalled after {read} of {n} records"),
        }
    }
    (start.elapsed().as_secs_f64(), bytes, cpu_seconds() - cpu)
}

use ferry_testkit::percentile_ms as percentile;

/// The highest ListOffsets version a connection's peer offers.
async fn list_offsets_version(raw: &mut RawClient) -> i16 {
    let r: ApiVersionsResponse = raw
        .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
        .await
        .unwrap();
    r.api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ListOffsets as i16)
        .map(|k| k.max_version)
        .expect("ListOffsets is offered")
}

async fn round_trips(raw: &mut RawClient, version: i16, topic: &str, n: usize) -> Vec<Duration> {
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(-1);
    let mut t = list_offsets_request::ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_owned()));
    let mut p = list_offsets_request::ListOffsetsPartition::default();
    p.timestamp = -1;
    t.partitions.push(p);
    req.topics.push(t);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let r: ListOffsetsResponse = raw.call(ApiKey::ListOffsets, version, &req).await.unwrap();
        out.push(start.elapsed());
        assert_eq!(r.topics[0].partitions[0].error_code, 0);
    }
    out.sort();
    out
}

#[tokio::main]
async fn main() {
    let records = env_usize("FERRY_BENCH_RECORDS", 200_000);
    let requests = env_usize("FERRY_BENCH_REQUESTS", 2_000);
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let created = api
        .call(
            Method::POST,
            "/v1/instances",
            Some(
                json!({"name": "bench", "mode": "tracking", "billing": {"type": "pay_as_you_go"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let g = api
        .call(
            Method::POST,
            &format!("/v1/instances/{id}/consumer-groups"),
            Some(json!({"name": "bench", "username": "bench", "password": PASSWORD})),
        )
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let gid = g.body["id"].as_str().unwrap().to_owned();
    let state = ctx.app_state().await.unwrap();
    let topic = state.topic_for(&id.parse().unwrap(), 0);
    let broker = ctx.env().kafka_bootstrap.clone();
    ferry_kafka::sink::ensure_topic(&broker, &topic, 1, -1)
        .await
        .unwrap();

    // Records shaped like Ferry's (a JSON row change of ~300 bytes), LZ4 as Ferry writes them.
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &broker)
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .create()
        .unwrap();
    for i in 0..records {
        let payload = format!(
            r#"{{"before":null,"after":{{"id":{i},"sku":"SKU-{i:08}","qty":{},"note":"a bench row of roughly the size of a real one, with some text in it"}},"source":{{"db":"shop","table":"orders","pos":"binlog.000001:{}","ts_ms":1733400000000}},"op":"c"}}"#,
            i % 97,
            i * 311
        );
        let key = i.to_string();
        loop {
            match producer.send(BaseRecord::to(&topic).key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();

    let gw = TestGateway::start(&ctx).await.unwrap();
    let direct = || {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &broker)
            .set("group.id", "bench-direct")
            .set("enable.auto.commit", "false");
        c
    };
    let through = || {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &gw.bootstrap)
            .set("security.protocol", "SASL_PLAINTEXT")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", format!("bench-{gid}"))
            .set("sasl.password", PASSWORD)
            .set("group.id", &gid)
            .set("enable.auto.commit", "false");
        c
    };
    println!("| run | records | seconds | records/s | MB/s | process CPU s |");
    println!("|---|---|---|---|---|---|");
    let mut best = [0f64; 2];
    for round in 0..2 {
        for (k, (name, config)) in [("direct", direct()), ("gateway", through())]
            .into_iter()
            .enumerate()
        {
            let topic = topic.clone();
            let (secs, bytes, cpu) =
                tokio::task::spawn_blocking(move || consume(config, &topic, records))
                    .await
                    .unwrap();
            let rate = records as f64 / secs;
            best[k] = best[k].max(rate);
            println!(
                "| {name} #{} | {records} | {secs:.2} | {rate:.0} | {:.1} | {cpu:.2} |",
                round + 1,
                bytes as f64 / secs / 1e6
            );
        }
    }
    println!(
        "\nthrough the gateway / direct (best of two each): {:.2}",
        best[1] / best[0]
    );

    let mut raw_direct = RawClient::connect(&broker).await.unwrap();
    let mut raw_gw = RawClient::connect(&gw.bootstrap).await.unwrap();
    assert_eq!(
        raw_gw
            .sign_in_plain(&format!("bench-{gid}"), PASSWORD)
            .await
            .unwrap(),
        0
    );
    // The same request version on both: the lower of what each offers.
    let version = list_offsets_version(&mut raw_direct)
        .await
        .min(list_offsets_version(&mut raw_gw).await);
    // Warm up both.
    round_trips(&mut raw_direct, version, &topic, 50).await;
    round_trips(&mut raw_gw, version, &topic, 50).await;
    let d = round_trips(&mut raw_direct, version, &topic, requests).await;
    let g = round_trips(&mut raw_gw, version, &topic, requests).await;
    println!("\n| ListOffsets v{version} round trip | requests | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    for (name, s) in [("direct", &d), ("through the gateway", &g)] {
        println!(
            "| {name} | {} | {:.2} ms | {:.2} ms | {:.2} ms |",
            s.len(),
            percentile(s, 0.5),
            percentile(s, 0.99),
            s.last().unwrap().as_secs_f64() * 1000.0
        );
    }
    println!(
        "\nadded by the gateway: p50 {:.2} ms, p99 {:.2} ms",
        percentile(&g, 0.5) - percentile(&d, 0.5),
        percentile(&g, 0.99) - percentile(&d, 0.99)
    );
    ctx.cleanup().await.unwrap();
}

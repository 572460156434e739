//! Control-plane latency: warm requests through the same routers Lambda runs, against the local
//! DynamoDB endpoint (moto), beside the endpoint's own raw latency for one `GetItem` measured in
//! the same run.
//!
//! `cargo bench -p ferry-tests --bench control_plane` with the stack up; `FERRY_BENCH_REQUESTS`
//! per operation (default 200). Results go to docs/benchmarks.md by hand, with the machine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may unwrap

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use ferry_testkit::TestContext;
use serde_json::json;

use ferry_testkit::percentile_ms as percentile;

fn row(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {what} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().unwrap().as_secs_f64() * 1000.0
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("FERRY_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
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
    let id = created.body["id"].as_str().unwrap().to_owned();
    let configured = api
        .call(
            Method::PUT,
            &format!("/v1/instances/{id}/task"),
            Some(json!({"source": ctx.stack_source(), "objects": {"databases": [{"name": ctx.mysql_database()}]}})),
        )
        .await
        .unwrap();
    assert_eq!(configured.status, StatusCode::OK, "{}", configured.text);

    // Warm up the clients' connections.
    for _ in 0..10 {
        api.call(Method::GET, &format!("/v1/instances/{id}"), None)
            .await
            .unwrap();
    }
    let mut raw = Vec::with_capacity(n);
    let dynamo = ctx.dynamodb().await;
    for _ in 0..n {
        let t = Instant::now();
        dynamo
            .get_item()
            .table_name(ctx.dynamo_table())
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("INS#{id}")),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("INSTANCE".into()),
            )
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        raw.push(t.elapsed());
    }
    let timed = |path: String| {
        let api = &api;
        async move {
            let mut samples = Vec::with_capacity(n);
            for _ in 0..n {
                let t = Instant::now();
                let a = api.call(Method::GET, &path, None).await.unwrap();
                samples.push(t.elapsed());
                assert_eq!(a.status, StatusCode::OK, "{}", a.text);
            }
            samples
        }
    };
    let instance = timed(format!("/v1/instances/{id}")).await;
    let task = timed(format!("/v1/instances/{id}/task")).await;
    let list = timed("/v1/instances?limit=20".to_owned()).await;
    let metrics = timed(format!("/v1/instances/{id}/task/metrics")).await;

    println!("| request | n | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    row("raw limit: one consistent GetItem on moto", raw);
    row("GET /v1/instances/{id} (instance and its task)", instance);
    row(
        "GET …/task (task, checkpoint, selection history: 3 reads)",
        task,
    );
    row(
        "GET /v1/instances?limit=20 (index query + task per instance)",
        list,
    );
    row("GET …/task/metrics (instance, task, one query)", metrics);
}

//! The reconciler scales the capture service with the running tasks. It is fed the records of
//! the test table's own stream, read from the local endpoint as Lambda's event source mapping
//! reads them, and scales an ECS service on the local endpoint.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use axum::http::{Method, StatusCode};
use ferry_fn_reconciler::{Outcome, Reconciler, ScaleSettings};
use ferry_testkit::{TestContext, eventually};
use serde_json::{Value, json};

/// The test table's stream, read shard by shard from where the last read ended.
struct TableStream {
    client: aws_sdk_dynamodbstreams::Client,
    iterators: Vec<String>,
}

impl TableStream {
    /// Opens the stream at its start.
    async fn open(ctx: &TestContext) -> Self {
        let aws = ctx.env().aws_config().await;
        let arn = ctx
            .dynamodb()
            .await
            .describe_table()
            .table_name(ctx.dynamo_table())
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the test table has a stream (Store::create_table)");
        let client = aws_sdk_dynamodbstreams::Client::new(&aws);
        let shards = client
            .describe_stream()
            .stream_arn(&arn)
            .send()
            .await
            .unwrap()
            .stream_description
            .and_then(|d| d.shards)
            .unwrap_or_default();
        let mut iterators = Vec::new();
        for shard in shards {
            let it = client
                .get_shard_iterator()
                .stream_arn(&arn)
                .shard_id(shard.shard_id.unwrap())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator
                .unwrap();
            iterators.push(it);
        }
        Self { client, iterators }
    }

    /// The records written since the last read, as Lambda hands them to a function.
    async fn read(&mut self) -> StreamEvent {
        let mut records = Vec::new();
        for it in &mut self.iterators {
            let got = self
                .client
                .get_records()
                .shard_iterator(it.as_str())
                .send()
                .await
                .unwrap();
            for r in got.records.unwrap_or_default() {
                let change = r.dynamodb.unwrap();
                let keys: serde_json::Map<String, Value> = change
                    .keys
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, json!({"S": v.as_s().unwrap()})))
                    .collect();
                records.push(json!({
                    "awsRegion": r.aws_region.unwrap_or_default(),
                    "eventID": r.event_id.unwrap_or_default(),
                    "eventName": r.event_name.unwrap().as_str(),
                    "eventSource": "aws:dynamodb",
                    "dynamodb": {
                        "Keys": keys,
                        "SequenceNumber": change.sequence_number,
                        "SizeBytes": change.size_bytes.unwrap_or(0),
                        "StreamViewType": "NEW_AND_OLD_IMAGES",
                    },
                }));
            }
            if let Some(next) = got.next_shard_iterator {
                *it = next;
            }
        }
        serde_json::from_value(json!({ "Records": records })).unwrap()
    }
}

async fn desired_count(ecs: &aws_sdk_ecs::Client, cluster: &str) -> i32 {
    ecs.describe_services()
        .cluster(cluster)
        .services("capture")
        .send()
        .await
        .unwrap()
        .services()[0]
        .desired_count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reconciler_scales_the_capture_service_up_and_down_with_running_tasks() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let ecs = aws_sdk_ecs::Client::new(&ctx.env().aws_config().await);
    let cluster = ctx.id().to_owned();
    ecs.create_cluster()
        .cluster_name(&cluster)
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family(&cluster)
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("worker")
                .image("ferry-capture:latest")
                .memory(2048)
                .build(),
        )
        .send()
        .await
        .unwrap();
    ecs.create_service()
        .cluster(&cluster)
        .service_name("capture")
        .task_definition(&cluster)
        .desired_count(0)
        .send()
        .await
        .unwrap();
    let reconciler = Reconciler::new(
        api.state.clone(),
        ecs.clone(),
        ScaleSettings {
            cluster: cluster.clone(),
            service: "capture".into(),
            tasks_per_worker: 2,
            min_workers: 0,
            max_workers: 5,
        },
    );
    let mut stream = TableStream::open(&ctx).await;

    // Three tasks start; no worker runs, so they stay `starting` and want one.
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database()}]},
    });
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, _) = api
            .start_tracking_task(&format!("scaled-{i}"), config.clone())
            .await
            .unwrap();
        ids.push(id);
    }
    let batch = stream.read().await;
    assert!(
        !batch.records.is_empty(),
        "the stream has the tasks' changes"
    );
    assert_eq!(
        reconciler.handle(&batch).await.unwrap(),
        Outcome::Scaled {
            from: 0,
            to: 2,
            running_tasks: 3
        }
    );
    assert_eq!(desired_count(&ecs, &cluster).await, 2);
    // Nothing changed since: the next batch (empty) leaves the service alone.
    assert_eq!(
        reconciler.handle(&stream.read().await).await.unwrap(),
        Outcome::Ignored
    );

    // Stopping tasks scales down: two left want one worker, none want none.
    let mut expected = Vec::new();
    for (stop, to) in [(&ids[..2], 1), (&ids[2..], 0)] {
        for id in stop {
            let stopped = api
                .call(Method::POST, &format!("/v1/instances/{id}/task/stop"), None)
                .await
                .unwrap();
            assert_eq!(stopped.status, StatusCode::OK, "{}", stopped.text);
        }
        let outcome = reconciler.handle(&stream.read().await).await.unwrap();
        let Outcome::Scaled { to: got, .. } = outcome else {
            panic!("expected a scaling to {to}: {outcome:?}");
        };
        assert_eq!(got, to);
        assert_eq!(desired_count(&ecs, &cluster).await, to);
        expected.push(to);
    }

    // Each change was announced on the event bus.
    // (Reading the queue consumes what it read: keep it between polls.)
    let seen = std::sync::Mutex::new(Vec::new());
    let scaled: Vec<Value> = eventually("the scaling events", Duration::from_secs(120), || async {
        let fresh = ctx.events().await?;
        let mut seen = seen.lock().unwrap();
        seen.extend(
            fresh
                .into_iter()
                .filter(|e| e["detail-type"] == "Capture Service Scaled")
                .map(|e| e["detail"]["to"].clone()),
        );
        Ok((seen.len() >= 3).then(|| seen.clone()))
    })
    .await
    .unwrap();
    assert_eq!(scaled, [json!(2), json!(1), json!(0)]);
}

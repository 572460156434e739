//! The consumer gateway (docs/gateway.md), end to end on the stack: consumer groups sign in
//! with their own credentials through three Kafka client implementations that are not
//! Ferry's (confluent-kafka, kafka-python, kafkajs), read and commit their own task's topic,
//! resume, rebalance when a member dies, and are refused everything else with the error a
//! broker with ACLs gives. Credential changes cut live connections; bad bytes hurt only their
//! own connection.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::time::Duration;

use axum::http::{Method, StatusCode};
use ferry_testkit::gateway::{Client, RawClient, TestGateway};
use ferry_testkit::{TestApi, TestContext};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

const PASSWORD: &str = "Consumer-Pass1";

struct Setup {
    ctx: TestContext,
    api: TestApi,
    gw: TestGateway,
    db: mysql_async::Conn,
    topic: String,
    _worker: ferry_testkit::InProcessWorker,
    instance: String,
    id: ferry_domain::id::InstanceId,
}

async fn setup(table: &str) -> Setup {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(format!("CREATE TABLE {table} (id INT PRIMARY KEY, v INT)"))
        .await
        .unwrap();
    let config = json!({
        "source": ctx.stack_source(),
        "objects": {"databases": [{"name": ctx.mysql_database(), "tables": [{"name": table}]}]},
    });
    let (id, topic, worker) = api.running_task(config).await.unwrap();
    let gw = TestGateway::start(&ctx).await.unwrap();
    Setup {
        ctx,
        api,
        gw,
        db,
        topic,
        _worker: worker,
        instance: id.to_string(),
        id,
    }
}

/// Creates a group; returns (group id, SASL username).
async fn group(api: &TestApi, instance: &str, username: &str) -> (String, String) {
    let g = api
        .call(
            Method::POST,
            &format!("/v1/instances/{instance}/consumer-groups"),
            Some(json!({"name": username, "username": username, "password": PASSWORD})),
        )
        .await
        .unwrap();
    assert_eq!(g.status, StatusCode::CREATED, "{}", g.text);
    let gid = g.body["id"].as_str().unwrap().to_owned();
    (gid.clone(), format!("{username}-{gid}"))
}

fn spec(s: &Setup, mechanism: &str, user: &str, group: &str, action: &str, count: usize) -> Value {
    json!({
        "bootstrap": s.gw.bootstrap, "mechanism": mechanism, "username": user,
        "password": PASSWORD, "group": group, "topic": s.topic, "action": action,
        "count": count, "timeout_s": 60,
    })
}

/// Waits until the task's topic holds `n` records, failing only when the task's checkpoint
/// stops moving (a loaded machine's worker catches up later): the clients' own time limits then
/// measure the gateway and the broker, not the capture.
async fn wait_in_topic(
    ctx: &TestContext,
    api: &TestApi,
    id: &ferry_domain::id::InstanceId,
    topic: &str,
    n: i64,
) {
    api.wait_for(
        id,
        &format!("{n} records in {topic}"),
        Duration::from_secs(90),
        || async {
            let w = ctx.high_watermarks(topic)?.first().copied().unwrap_or(0);
            Ok((w >= n).then_some(()))
        },
    )
    .await
    .unwrap();
}

async fn insert(db: &mut mysql_async::Conn, table: &str, ids: std::ops::RangeInclusive<i32>) {
    for i in ids {
        db.exec_drop(format!("INSERT INTO {table} VALUES (?, ?)"), (i, i))
            .await
            .unwrap();
    }
}

/// Everything one client implementation must do through the gateway.
async fn a_client_signs_in_reads_resumes_rebalances_and_is_refused(client: Client) {
    let mut s = setup("items").await;
    let (gid, user) = group(&s.api, &s.instance, "reader").await;
    insert(&mut s.db, "items", 1..=10).await;
    wait_in_topic(&s.ctx, &s.api, &s.id, &s.topic, 10).await;

    // PLAIN, then both SCRAM mechanisms, each resuming where the last committed.
    let mut read = Vec::new();
    for (mechanism, n) in [("PLAIN", 4), ("SCRAM-SHA-256", 3), ("SCRAM-SHA-512", 3)] {
        let run = client
            .run(&s.ctx, spec(&s, mechanism, &user, &gid, "consume", n))
            .await
            .unwrap();
        assert!(
            run.done && run.error.is_none(),
            "{client:?} {mechanism}: {run:?}"
        );
        read.extend(run.records);
    }
    assert_eq!(
        read,
        (0..10).collect::<Vec<i64>>(),
        "{client:?}: each resumed at the commit"
    );

    // Rebalance: a member dies (SIGKILL, no leave), the other takes over where it committed.
    let mut first = client
        .member(&s.ctx, spec(&s, "SCRAM-SHA-512", &user, &gid, "member", 0))
        .unwrap();
    insert(&mut s.db, "items", 11..=15).await;
    wait_in_topic(&s.ctx, &s.api, &s.id, &s.topic, 15).await;
    let got = first
        .wait_records(5, Duration::from_secs(90))
        .await
        .unwrap();
    assert_eq!(got.records, (10..15).collect::<Vec<i64>>());
    let mut second = client
        .member(&s.ctx, spec(&s, "PLAIN", &user, &gid, "member", 0))
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await; // it joins; the group rebalances
    first.kill().await.unwrap();
    insert(&mut s.db, "items", 16..=20).await;
    wait_in_topic(&s.ctx, &s.api, &s.id, &s.topic, 20).await;
    let got = second
        .wait_records(5, Duration::from_secs(120))
        .await
        .unwrap();
    assert_eq!(
        got.records,
        (15..20).collect::<Vec<i64>>(),
        "{client:?}: the survivor continues after the last commit"
    );
    second.kill().await.unwrap();

    // Refusals, each with the error a broker with ACLs gives.
    let other_topic = s.ctx.topic("someone-elses");
    let cases = [
        (
            "wrong password",
            {
                let mut v = spec(&s, "SCRAM-SHA-256", &user, &gid, "consume", 1);
                v["password"] = json!("Wrong-Pass1");
                v
            },
            "SASL_AUTHENTICATION_FAILED",
        ),
        (
            "wrong password (PLAIN)",
            {
                let mut v = spec(&s, "PLAIN", &user, &gid, "consume", 1);
                v["password"] = json!("Wrong-Pass1");
                v
            },
            "SASL_AUTHENTICATION_FAILED",
        ),
        (
            "another task's topic",
            {
                let mut v = spec(&s, "PLAIN", &user, &gid, "consume", 1);
                v["topic"] = json!(other_topic);
                v
            },
            "TOPIC_AUTHORIZATION_FAILED",
        ),
        (
            "another group id",
            spec(
                &s,
                "PLAIN",
                &user,
                "cg_00000000000000000000000000000000",
                "consume",
                1,
            ),
            "GROUP_AUTHORIZATION_FAILED",
        ),
        (
            "produce",
            spec(&s, "SCRAM-SHA-512", &user, &gid, "produce", 1),
            "TOPIC_AUTHORIZATION_FAILED",
        ),
        (
            "create a topic",
            {
                let mut v = spec(&s, "PLAIN", &user, &gid, "create_topic", 1);
                v["topic"] = json!(s.ctx.topic("created-by-a-consumer"));
                v
            },
            "TOPIC_AUTHORIZATION_FAILED",
        ),
    ];
    for (what, spec, want) in cases {
        let mut spec = spec;
        spec["timeout_s"] = json!(30);
        let run = client.run(&s.ctx, spec).await.unwrap();
        assert_eq!(
            run.error.as_deref(),
            Some(want),
            "{client:?}, {what}: {run:?}"
        );
        assert!(
            run.records.is_empty(),
            "{client:?}, {what}: read {:?}",
            run.records
        );
    }
    assert!(
        s.gw.metric("ferry_gateway_sign_ins_total{mechanism=\"PLAIN\",result=\"failed\"}") >= 1.0
    );
    assert!(s.gw.metric("ferry_gateway_requests_total{api=\"Produce\",verdict=\"denied\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn confluent_kafka_through_the_gateway() {
    a_client_signs_in_reads_resumes_rebalances_and_is_refused(Client::Confluent).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_python_through_the_gateway() {
    a_client_signs_in_reads_resumes_rebalances_and_is_refused(Client::KafkaPython).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kafkajs_through_the_gateway() {
    a_client_signs_in_reads_resumes_rebalances_and_is_refused(Client::Kafkajs).await;
}

fn group_id(s: &str) -> GroupId {
    GroupId(StrBytes::from_string(s.to_owned()))
}

/// An OffsetCommit of `group` for partition 0 of `topic` (a simple, generation-less commit).
async fn commit(raw: &mut RawClient, group: &str, topic: &str) -> i16 {
    let mut c = OffsetCommitRequest::default();
    c.group_id = group_id(group);
    c.generation_id_or_member_epoch = -1;
    let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
    t.name = TopicName(StrBytes::from_string(topic.to_owned()));
    let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
    p.committed_offset = 1;
    t.partitions.push(p);
    c.topics.push(t);
    let r: OffsetCommitResponse = raw.call(ApiKey::OffsetCommit, 8, &c).await.unwrap();
    r.topics[0].partitions[0].error_code
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_two_groups_each_see_only_their_own_and_every_denial_is_counted() {
    let mut a = setup("orders").await;
    // The second instance shares the first one's context (table, broker, gateway).
    let config = json!({
        "source": a.ctx.stack_source(),
        "objects": {"databases": [{"name": a.ctx.mysql_database(), "tables": [{"name": "orders"}]}]},
    });
    let (b_id, b_topic, _b_worker) = a.api.running_task(config).await.unwrap();
    let b_id = b_id.to_string();
    let mut groups = Vec::new(); // (instance, topic, gid, user)
    for (instance, topic) in [
        (a.instance.clone(), a.topic.clone()),
        (b_id.clone(), b_topic.clone()),
    ] {
        for user in ["one", "two"] {
            let (gid, sasl) = group(&a.api, &instance, user).await;
            groups.push((instance.clone(), topic.clone(), gid, sasl));
        }
    }
    insert(&mut a.db, "orders", 1..=3).await;
    wait_in_topic(&a.ctx, &a.api, &a.id, &a.topic, 3).await;
    let b_instance: ferry_domain::id::InstanceId = b_id.parse().unwrap();
    wait_in_topic(&a.ctx, &a.api, &b_instance, &b_topic, 3).await;

    let denied_before =
        a.gw.metrics()
            .lines()
            .filter(|l| l.contains("verdict=\"denied\""))
            .count();
    let mut denials = 0;
    for (i, (_, topic, gid, user)) in groups.iter().enumerate() {
        // Its own topic, its own group: reads.
        let mut own = spec(&a, "SCRAM-SHA-512", user, gid, "consume", 3);
        own["topic"] = json!(topic);
        let run = Client::Confluent.run(&a.ctx, own).await.unwrap();
        assert_eq!(run.records, vec![0, 1, 2], "group {i}: {run:?}");

        let mut raw = RawClient::connect(&a.gw.bootstrap).await.unwrap();
        assert_eq!(raw.sign_in_plain(user, PASSWORD).await.unwrap(), 0);
        for (j, (_, other_topic, other_gid, _)) in groups.iter().enumerate() {
            if i == j {
                continue;
            }
            // Another group's offsets, on its own topic and on the other's: refused.
            assert_eq!(
                commit(&mut raw, other_gid, topic).await,
                30,
                "{i} commits as {j}"
            );
            assert_eq!(
                commit(&mut raw, other_gid, other_topic).await,
                30,
                "{i} commits as {j}"
            );
            denials += 2;
            if other_topic != topic {
                // The other instance's topic under its own group id: refused.
                assert_eq!(
                    commit(&mut raw, gid, other_topic).await,
                    29,
                    "{i} commits to {j}'s topic"
                );
                let mut m = MetadataRequest::default();
                let mut t = metadata_request::MetadataRequestTopic::default();
                t.name = Some(TopicName(StrBytes::from_string(other_topic.clone())));
                m.topics = Some(vec![t]);
                let r: MetadataResponse = raw.call(ApiKey::Metadata, 12, &m).await.unwrap();
                assert_eq!(r.topics.len(), 1);
                assert_eq!(r.topics[0].error_code, 29, "{i} sees {j}'s topic");
                assert!(r.topics[0].partitions.is_empty());
                denials += 2;
            }
        }
        // Metadata for all topics answers only the own one.
        let mut all = MetadataRequest::default();
        all.topics = None;
        let r: MetadataResponse = raw.call(ApiKey::Metadata, 12, &all).await.unwrap();
        let names: Vec<String> = r
            .topics
            .iter()
            .map(|t| t.name.as_ref().unwrap().to_string())
            .collect();
        assert_eq!(names, vec![topic.clone()], "group {i}");
        // Its own commit works through the same connection.
        assert_eq!(commit(&mut raw, gid, topic).await, 0);
    }
    let counted: f64 =
        a.gw.metrics()
            .lines()
            .filter(|l| l.contains("verdict=\"denied\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
    assert!(
        denied_before == 0 && counted >= denials as f64,
        "{counted} counted, {denials} made"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_or_a_deleted_group_cuts_live_connections() {
    let s = setup("accounts").await;
    let (gid, user) = group(&s.api, &s.instance, "keeper").await;
    let (gone_gid, gone_user) = group(&s.api, &s.instance, "leaver").await;

    let mut live = RawClient::connect(&s.gw.bootstrap).await.unwrap();
    assert_eq!(live.sign_in_plain(&user, PASSWORD).await.unwrap(), 0);
    live.ping().await.unwrap();
    let mut doomed = RawClient::connect(&s.gw.bootstrap).await.unwrap();
    assert_eq!(doomed.sign_in_plain(&gone_user, PASSWORD).await.unwrap(), 0);

    let changed = s
        .api
        .call(
            Method::PATCH,
            &format!("/v1/instances/{}/consumer-groups/{gid}", s.instance),
            Some(json!({"old_password": PASSWORD, "new_password": "Consumer-Pass2"})),
        )
        .await
        .unwrap();
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert!(
        live.closed_within(Duration::from_secs(60)).await,
        "a connection outlived its password"
    );
    // New connections: the new password works at once, the old one fails.
    let mut fresh = RawClient::connect(&s.gw.bootstrap).await.unwrap();
    assert_eq!(
        fresh.sign_in_plain(&user, "Consumer-Pass2").await.unwrap(),
        0
    );
    let mut old = RawClient::connect(&s.gw.bootstrap).await.unwrap();
    assert_eq!(old.sign_in_plain(&user, PASSWORD).await.unwrap(), 58);
    // SCRAM with the new password (verifiers were replaced with the hash).
    let run = Client::Confluent
        .run(&s.ctx, {
            let mut v = spec(&s, "SCRAM-SHA-256", &user, &gid, "consume", 0);
            v["password"] = json!("Consumer-Pass2");
            v
        })
        .await
        .unwrap();
    assert!(run.done && run.error.is_none(), "{run:?}");

    let deleted = s
        .api
        .call(
            Method::DELETE,
            &format!("/v1/instances/{}/consumer-groups/{gone_gid}", s.instance),
            None,
        )
        .await
        .unwrap();
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert!(
        doomed.closed_within(Duration::from_secs(60)).await,
        "a deleted group's connection lived on"
    );
    let mut after = RawClient::connect(&s.gw.bootstrap).await.unwrap();
    assert_eq!(after.sign_in_plain(&gone_user, PASSWORD).await.unwrap(), 58);
    assert!(s.gw.metric("ferry_gateway_connections_closed_total{reason=\"revoked\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bytes_close_only_their_own_connection() {
    let s = setup("noise").await;
    let (_, user) = group(&s.api, &s.instance, "steady").await;
    let mut steady = RawClient::connect(&s.gw.bootstrap).await.unwrap();
    assert_eq!(steady.sign_in_plain(&user, PASSWORD).await.unwrap(), 0);

    let garbage: Vec<(&str, Vec<u8>)> = vec![
        (
            "random bytes",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        ("an oversized frame", (64u32 << 20).to_be_bytes().to_vec()),
        ("a negative size", (-5i32).to_be_bytes().to_vec()),
        (
            "an unknown API key",
            vec![0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff],
        ),
        ("a Fetch before sign-in", {
            let mut f = FetchRequest::default();
            f.replica_id = BrokerId(-1);
            let body = ferry_gateway::wire::request(ApiKey::Fetch, 12, 1, &f).unwrap();
            let mut out = (body.len() as u32).to_be_bytes().to_vec();
            out.extend_from_slice(&body);
            out
        }),
    ];
    for (what, bytes) in garbage {
        let mut bad = RawClient::connect(&s.gw.bootstrap).await.unwrap();
        bad.send_bytes(&bytes).await.unwrap();
        assert!(
            bad.closed_within(Duration::from_secs(10)).await,
            "{what} kept the connection open"
        );
        steady
            .ping()
            .await
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
    }
    // A half-open connection (a size, then nothing) does not hold anyone else up either.
    let mut slow = RawClient::connect(&s.gw.bootstrap).await.unwrap();
    slow.send_bytes(&[0, 0, 0, 50, 0]).await.unwrap();
    steady.ping().await.unwrap();
    // An unknown API key after sign-in closes that connection only.
    let mut other = RawClient::connect(&s.gw.bootstrap).await.unwrap();
    assert_eq!(other.sign_in_plain(&user, PASSWORD).await.unwrap(), 0);
    other
        .send_bytes(&[0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 2, 0xff, 0xff])
        .await
        .unwrap();
    assert!(other.closed_within(Duration::from_secs(10)).await);
    steady.ping().await.unwrap();
    assert!(s.gw.metric("ferry_gateway_connections_closed_total{reason=\"oversized\"}") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_sign_in_over_tls_and_plaintext_is_refused_on_a_tls_listener() {
    let s = setup("secure").await;
    let (gid, user) = group(&s.api, &s.instance, "sealed").await;
    // A self-signed certificate for 127.0.0.1, made for this test.
    let dir = std::env::temp_dir().join(format!("ferry-gw-tls-{}", s.ctx.id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let tls = ferry_gateway::tls_config(&cert, &key).unwrap();
    let gw = TestGateway::start_with(&s.ctx, Some(tls)).await.unwrap();
    let mut db = s.ctx.mysql().await.unwrap();
    insert(&mut db, "secure", 1..=3).await;
    wait_in_topic(&s.ctx, &s.api, &s.id, &s.topic, 3).await;

    let mut v = spec(&s, "SCRAM-SHA-512", &user, &gid, "consume", 3);
    v["bootstrap"] = json!(gw.bootstrap);
    v["ssl_ca"] = json!(cert.to_string_lossy());
    let run = Client::Confluent.run(&s.ctx, v).await.unwrap();
    assert_eq!(run.records, vec![0, 1, 2], "{run:?}");

    // A plaintext client on the TLS listener gets nowhere.
    let mut plain = RawClient::connect(&gw.bootstrap).await.unwrap();
    assert!(plain.sign_in_plain(&user, PASSWORD).await.is_err());
    assert!(gw.metric("ferry_gateway_connections_closed_total{reason=\"tls\"}") >= 1.0);
    // A bad certificate or key is named at start.
    let err = ferry_gateway::tls_config(&key, &key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

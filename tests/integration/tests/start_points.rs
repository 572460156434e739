//! Change tracking from a chosen start point (`POST …/task/start` with `{"start": …}`): a file
//! and offset, a MariaDB GTID position and a time each start the topic with the first
//! transaction they name (rows written before a later `ALTER TABLE` included); a point the
//! source no longer holds, has not written or that is not a transaction boundary fails the
//! start's precheck with the points it does hold; a task with a checkpoint, and a sync task,
//! refuse a start point.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::time::Duration;

use axum::http::{Method, StatusCode};
use ferry_testkit::{InProcessWorker, Step, TestApi, TestContext, ThrowawayMariaDb, progressing};
use serde_json::{Value, json};

/// How long a wait may see no progress.
const STALL: Duration = Duration::from_secs(60);

fn server(ctx: &TestContext) -> ThrowawayMariaDb {
    ThrowawayMariaDb::capture_source(ctx.env(), &[]).unwrap()
}

fn config(server: &ThrowawayMariaDb) -> Value {
    json!({"source": server.source(), "objects": {"databases": [{"name": "shop"}]}})
}

/// A configured, not yet started tracking instance: its id.
async fn configured(api: &TestApi, name: &str, config: Value) -> String {
    api.configure_task_named(name, "tracking", config)
        .await
        .unwrap()
}

async fn start(api: &TestApi, id: &str, body: Option<Value>) -> ferry_testkit::Answer {
    api.call(
        Method::POST,
        &format!("/v1/instances/{id}/task/start"),
        body,
    )
    .await
    .unwrap()
}

/// The failed start's `source.start_point` item.
fn start_point_item(answer: &ferry_testkit::Answer) -> Value {
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert_eq!(
        answer.body["error"]["code"], "precheck_failed",
        "{}",
        answer.text
    );
    let items = answer.body["error"]["details"]["items"].as_array().unwrap();
    let item = items
        .iter()
        .find(|i| i["id"] == "source.start_point")
        .unwrap_or_else(|| panic!("no start point item: {}", answer.text))
        .clone();
    assert_eq!(item["status"], "failed", "{item}");
    item
}

#[tokio::test(flavor = "multi_thread")]
async fn each_start_point_starts_with_the_transaction_it_names() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let server = server(&ctx);
    server
        .sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY, total INT)")
        .unwrap();
    // A second GTID domain, written only before the start points: a loop that began mid-file
    // knows it only from the GTID state it started with.
    server
        .sql("CREATE TABLE shop.other (id INT PRIMARY KEY); SET SESSION gtid_domain_id = 1; INSERT INTO shop.other VALUES (1)")
        .unwrap();
    server
        .sql("INSERT INTO shop.orders VALUES (1, 10); FLUSH BINARY LOGS")
        .unwrap();
    server
        .sql("INSERT INTO shop.orders VALUES (2, 20)")
        .unwrap();
    let status = server.query("SHOW MASTER STATUS").unwrap();
    let position = format!("{}:{}", status[0], status[1]);
    let gtid = server.query("SELECT @@gtid_binlog_pos").unwrap()[0].clone();
    server
        .sql("INSERT INTO shop.orders VALUES (3, 30)")
        .unwrap();
    // A time a second after row 3's commit and before row 4's (the binlog keeps seconds).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let time = server
        .query("SELECT DATE_FORMAT(UTC_TIMESTAMP(), '%Y-%m-%dT%H:%i:%sZ')")
        .unwrap()[0]
        .clone();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server
        .sql("INSERT INTO shop.orders VALUES (4, 40)")
        .unwrap();
    server
        .sql("INSERT INTO shop.orders VALUES (5, 50)")
        .unwrap();
    server
        .sql("ALTER TABLE shop.orders ADD COLUMN note VARCHAR(10)")
        .unwrap();
    server
        .sql("INSERT INTO shop.orders VALUES (6, 60, 'six')")
        .unwrap();

    let cases = [
        (
            "by-position",
            json!({"position": position}),
            vec![3, 4, 5, 6],
        ),
        ("by-gtid", json!({"gtid": gtid}), vec![3, 4, 5, 6]),
        ("by-time", json!({"time": time}), vec![4, 5, 6]),
    ];
    let mut started = Vec::new();
    for (name, point, ids) in cases {
        let id = configured(&api, name, config(&server)).await;
        let answer = start(&api, &id, Some(json!({"start": point}))).await;
        assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.text);
        let task = &answer.body["task"];
        assert_eq!(task["start"]["point"], point, "{name}: {task}");
        let item = answer.body["precheck"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["id"] == "source.start_point")
            .cloned()
            .unwrap();
        assert_eq!(item["status"], "passed", "{item}");
        let topic = task["delivery"]["topic"].as_str().unwrap().to_owned();
        started.push((name, id, topic, ids));
    }
    let by_position = &started[0];
    let worker = InProcessWorker::start(&api.state);
    for (name, id, topic, ids) in &started {
        // The rows, and the ALTER as a DDL record between rows 5 and 6.
        let all = ctx.read_records(topic, ids.len() + 1).await.unwrap();
        let ddl: Vec<&str> = all
            .iter()
            .filter_map(|(_, r, _)| r["ddl"].as_str())
            .collect();
        assert_eq!(ddl.len(), 1, "{name}: {ddl:?}");
        assert!(ddl[0].starts_with("ALTER TABLE"), "{name}: {ddl:?}");
        assert!(all[all.len() - 2].1.get("ddl").is_some(), "{name}");
        let records: Vec<&Value> = all
            .iter()
            .map(|(_, r, _)| r)
            .filter(|r| r.get("ddl").is_none())
            .collect();
        let got: Vec<i64> = records
            .iter()
            .map(|r| r["after"]["id"].as_i64().unwrap())
            .collect();
        assert_eq!(&got, ids, "{name}");
        for r in &records {
            assert_eq!(r["op"], "c", "{name}: {r}");
        }
        // Rows written before the ALTER decode with their own columns, the row after with
        // the new one.
        let last = &records.last().unwrap()["after"];
        assert_eq!(
            last,
            &json!({"id": 6, "total": 60, "note": "six"}),
            "{name}"
        );
        let first = &records[0]["after"];
        assert!(first.get("note").is_none(), "{name}: {first}");
        let task = api
            .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
            .await
            .unwrap();
        assert!(task.body["start"]["position"].is_string(), "{}", task.text);
    }
    let chosen = api
        .call(
            Method::GET,
            &format!("/v1/instances/{}/task", by_position.1),
            None,
        )
        .await
        .unwrap();
    // Found where asked, with the GTID state there (so every checkpoint names the whole state).
    assert_eq!(
        chosen.body["start"]["position"],
        json!(format!("{position}@{gtid}")),
        "{}",
        chosen.text
    );
    // Nothing before the point and nothing twice: the topics hold exactly the rows above.
    server
        .sql("INSERT INTO shop.orders VALUES (7, 70, 'seven')")
        .unwrap();
    for (name, _, topic, ids) in &started {
        let records = ctx.read_records(topic, ids.len() + 2).await.unwrap();
        assert_eq!(records.len(), ids.len() + 2, "{name}");
        assert_eq!(records.last().unwrap().1["after"]["id"], 7, "{name}");
    }
    // Each checkpoint names the source's whole GTID state, also where the task began mid-file.
    let state = server.query("SELECT @@gtid_binlog_pos").unwrap()[0].clone();
    for (name, id, _, _) in &started {
        // Waited for while the checkpoint moves; a checkpoint that stops short of the state
        // (or at the end with another set) fails.
        progressing(name, STALL, || async {
            let t = api
                .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
                .await?;
            let checkpoint = &t.body["checkpoint"];
            Ok(if checkpoint["gtid"] == json!(state) {
                Step::Done(())
            } else {
                Step::At(checkpoint.to_string())
            })
        })
        .await
        .unwrap();
    }
    // Stopped and started again, a task resumes from its checkpoint and keeps on record the
    // point it began at. The start comes before the loop's next look at its task (every
    // second): the loop runs on and puts the task back in its stage (it stayed `starting`).
    let (_, id, _, _) = by_position;
    let instance = id.parse().unwrap();
    api.call(Method::POST, &format!("/v1/instances/{id}/task/stop"), None)
        .await
        .unwrap();
    api.wait_state(&instance, "stopped", STALL).await.unwrap();
    let again = start(&api, id, None).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(
        again.body["task"]["start"]["position"],
        json!(format!("{position}@{gtid}")),
        "{}",
        again.text
    );
    api.wait_state(&instance, "incremental", STALL)
        .await
        .unwrap();
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_start_point_the_source_does_not_hold_fails_the_precheck_with_the_points_it_holds() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = ctx.api(ferry_cli::all_routes()).await.unwrap();
    let server = server(&ctx);
    server
        .sql("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT PRIMARY KEY)")
        .unwrap();
    // The GTID before row 1: starting after it needs row 1's transaction, which is purged
    // below (a GTID after row 1 would still be servable: the next file's GTID list holds it).
    let purged_gtid = server.query("SELECT @@gtid_binlog_pos").unwrap()[0].clone();
    server.sql("INSERT INTO shop.orders VALUES (1)").unwrap();
    server.purge_first_binlog().unwrap();
    server.sql("INSERT INTO shop.orders VALUES (2)").unwrap();
    let oldest = server.binlog_files().unwrap()[0].clone();
    let status = server.query("SHOW MASTER STATUS").unwrap();
    let id = configured(&api, "refused", config(&server)).await;

    for (point, in_message, in_hint) in [
        (
            json!({"position": "binlog.000001:4"}),
            "no longer on the source",
            format!("{oldest}:4"),
        ),
        (
            json!({"position": "binlog.000099:4"}),
            "does not exist",
            oldest.clone(),
        ),
        (
            json!({"position": format!("{}:{}", status[0], status[1].parse::<u64>().unwrap() + 100)}),
            "past its end",
            "offset of an event".into(),
        ),
        (
            json!({"position": format!("{oldest}:5")}),
            "not the start of a transaction",
            "a transaction starts at".into(),
        ),
        (
            json!({"time": "2001-01-01T00:00:00Z"}),
            "older than the source's oldest binlog",
            "later time".into(),
        ),
        (
            json!({"time": "2999-01-01T00:00:00Z"}),
            "in the future",
            "time in the past".into(),
        ),
        (
            json!({"gtid": purged_gtid}),
            "cannot stream from GTID",
            "gtid_binlog_pos".into(),
        ),
        (
            json!({"gtid": "0-1-999999"}),
            "cannot stream from GTID",
            "gtid_binlog_pos".into(),
        ),
        (
            json!({"gtid": "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"}),
            "MySQL GTID set was given for a MariaDB server",
            "MariaDB GTID position".into(),
        ),
    ] {
        let answer = start(&api, &id, Some(json!({"start": point}))).await;
        let item = start_point_item(&answer);
        let (message, hint) = (
            item["message"].as_str().unwrap(),
            item["hint"].as_str().unwrap(),
        );
        assert!(message.contains(in_message), "{point}: {item}");
        assert!(hint.contains(&in_hint), "{point}: {item}");
        let task = api
            .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
            .await
            .unwrap();
        assert_eq!(task.body["state"], "precheck_failed", "{}", task.text);
        assert!(task.body.get("start").is_none(), "{}", task.text);
    }

    // A body that is not a start point says what to give.
    for (body, says) in [
        (json!({"start": {"lsn": "1"}}), "unknown field"),
        (json!({"start": {}}), "exactly one of"),
        (
            json!({"begin": {"time": "2026-01-01T00:00:00Z"}}),
            "unknown field",
        ),
        (json!({"start": {"time": "now"}}), "RFC 3339"),
    ] {
        let answer = start(&api, &id, Some(body.clone())).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.text
        );
        assert_eq!(
            answer.body["error"]["code"], "invalid_body",
            "{}",
            answer.text
        );
        assert!(answer.text.contains(says), "{body}: {}", answer.text);
    }

    // Started from now, then stopped: the task has a checkpoint and refuses a start point.
    let answer = start(&api, &id, None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let worker = InProcessWorker::start(&api.state);
    let instance = id.parse().unwrap();
    api.wait_state(&instance, "incremental", STALL)
        .await
        .unwrap();
    api.call(Method::POST, &format!("/v1/instances/{id}/task/stop"), None)
        .await
        .unwrap();
    api.wait_state(&instance, "stopped", STALL).await.unwrap();
    worker.stop().await.unwrap();
    let answer = start(
        &api,
        &id,
        Some(json!({"start": {"position": format!("{oldest}:4")}})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert_eq!(answer.body["error"]["code"], "already_started");
    assert!(
        answer.body["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("reset")
    );

    // A sync task copies the source as it is: no start point.
    let mut sync_config = config(&server);
    sync_config["target"] = ctx.postgres_target().unwrap();
    let sync = api
        .configure_task_named("sync", "sync", sync_config)
        .await
        .unwrap();
    let answer = start(
        &api,
        &sync,
        Some(json!({"start": {"time": "2026-01-01T00:00:00Z"}})),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.text
    );
    assert!(answer.text.contains("change tracking"), "{}", answer.text);
}

use axum::http::{Method, StatusCode};
use ferry_testkit::{TestApi, TestContext, ThrowawayMariaDb};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

use crate::common::*;

fn item<'a>(precheck: &'a Value, id: &str) -> &'a Value {
    precheck["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("{id} missing: {precheck}"))
}

async fn precheck(api: &TestApi, id: &str) -> Value {
    let a = call(
        api,
        Method::POST,
        &format!("/v1/instances/{id}/task/precheck"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    a.body
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_without_replication_privileges_fails_precheck_and_start() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let user = format!("noslave_{}", &ctx.id()[2..]);
    let mut admin = ctx.mysql().await.unwrap();
    admin
        .query_drop(format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'Only-Select1'"
        ))
        .await
        .unwrap();
    admin
        .query_drop(format!("GRANT SELECT ON *.* TO '{user}'@'%'"))
        .await
        .unwrap();

    let id = tracking_instance(&api).await;
    let mut config = tracking_config(&ctx);
    config["source"]["username"] = json!(user);
    config["source"]["password"] = json!("Only-Select1");
    assert_eq!(configure(&api, &id, config).await.status, StatusCode::OK);

    let p = precheck(&api, &id).await;
    assert_eq!(p["passed"], false);
    let privileges = item(&p, "source.privileges");
    assert_eq!(privileges["status"], "failed");
    assert!(
        privileges["message"]
            .as_str()
            .unwrap()
            .contains("REPLICATION SLAVE"),
        "{privileges}"
    );
    assert!(
        privileges["hint"].as_str().unwrap().starts_with("GRANT "),
        "{privileges}"
    );
    assert_eq!(item(&p, "source.connect")["status"], "passed");

    let start = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/task/start"),
        None,
    )
    .await;
    assert_eq!(
        (start.status, start.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "precheck_failed")
    );
    let failed: Vec<&str> = start.body["error"]["details"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["status"] == "failed")
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["source.privileges"]);
    let task = call(&api, Method::GET, &format!("/v1/instances/{id}/task"), None).await;
    assert_eq!(task.body["state"], "precheck_failed");
    let events = ctx.events().await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["detail-type"] == "Precheck Finished"
                && e["detail"]["passed"] == false
                && e["detail"]["failed_items"] == json!(["source.privileges"]))
    );

    // Granted, the same task starts.
    admin
        .query_drop(format!(
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'"
        ))
        .await
        .unwrap();
    let start = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/task/start"),
        None,
    )
    .await;
    assert_eq!(start.status, StatusCode::OK, "{}", start.text);
    admin
        .query_drop(format!("DROP USER '{user}'@'%'"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_with_the_binlog_off_or_statement_logging_fails() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    let off = ThrowawayMariaDb::start(ctx.env(), &[]).unwrap();
    let statement = ThrowawayMariaDb::start(
        ctx.env(),
        &[
            "--log-bin=binlog",
            "--binlog-format=STATEMENT",
            "--binlog-row-image=MINIMAL",
            "--expire-logs-days=0.1",
        ],
    )
    .unwrap();

    for (server, failing) in [
        (&off, vec!["source.log_bin"]),
        (
            &statement,
            vec!["source.binlog_format", "source.binlog_row_image"],
        ),
    ] {
        let id = tracking_instance(&api).await;
        let mut config = tracking_config(&ctx);
        config["source"]["port"] = json!(server.port());
        config["source"]["password"] = json!("capture-Secret1");
        config["objects"] = json!({"databases": [{"name": "mysql"}]});
        assert_eq!(configure(&api, &id, config).await.status, StatusCode::OK);
        let p = precheck(&api, &id).await;
        assert_eq!(p["passed"], false, "{p}");
        for check in &failing {
            let i = item(&p, check);
            assert_eq!(i["status"], "failed", "{i}");
            assert!(!i["hint"].as_str().unwrap().is_empty());
        }
        if server.port() == statement.port() {
            let retention = item(&p, "source.binlog_retention");
            assert_eq!(retention["status"], "warning", "{retention}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_and_unreachable_servers_fail_the_connect_check() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    let id = tracking_instance(&api).await;

    let mut wrong = tracking_config(&ctx);
    wrong["source"]["password"] = json!("not-the-password");
    configure(&api, &id, wrong).await;
    let p = precheck(&api, &id).await;
    let connect = item(&p, "source.connect");
    assert_eq!(connect["status"], "failed");
    assert!(
        connect["message"].as_str().unwrap().contains("rejected"),
        "{connect}"
    );
    assert_eq!(
        p["items"].as_array().unwrap().len(),
        1,
        "nothing else can be checked"
    );

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut unreachable = tracking_config(&ctx);
    unreachable["source"]["port"] = json!(closed);
    configure(&api, &id, unreachable).await;
    let p = precheck(&api, &id).await;
    assert_eq!(item(&p, "source.connect")["status"], "failed", "{p}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_objects_fail_and_keyless_tables_warn() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let mut c = ctx.mysql().await.unwrap();
    c.query_drop("CREATE TABLE audit_log (at DATETIME, what TEXT)")
        .await
        .unwrap();
    let db = ctx.mysql_database();
    let id = tracking_instance(&api).await;

    let mut config = tracking_config(&ctx);
    config["objects"] = json!({"databases": [
        {"name": db, "tables": [
            {"name": "orders", "columns": ["id", "no_such_column"]},
            {"name": "audit_*", "filter": "what IS NOT NULL AND missing_filter_col > 0"},
            {"name": "x'; DROP TABLE orders; --"}
        ]},
        {"name": "no_such_database"}
    ]});
    assert_eq!(configure(&api, &id, config).await.status, StatusCode::OK);
    let p = precheck(&api, &id).await;
    let objects = item(&p, "source.objects");
    assert_eq!(objects["status"], "failed");
    let msg = objects["message"].as_str().unwrap();
    for missing in [
        "no_such_column",
        "missing_filter_col`, named by the table's row filter",
        "no_such_database",
        "x'; DROP TABLE orders; --",
    ] {
        assert!(msg.contains(missing), "{missing} not reported: {msg}");
    }
    let keys = item(&p, "source.primary_keys");
    assert_eq!(keys["status"], "warning");
    assert!(
        keys["message"].as_str().unwrap().contains("audit_log"),
        "{keys}"
    );
    assert!(
        !keys["message"].as_str().unwrap().contains("`orders`"),
        "{keys}"
    );
    // The hostile name was a name, not SQL.
    let n: Option<u64> = c.query_first("SELECT COUNT(*) FROM orders").await.unwrap();
    assert_eq!(n, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_kinesis_stream_fails_and_a_heartbeat_table_without_grants_warns() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let id = tracking_instance(&api).await;
    let mut config = tracking_config(&ctx);
    config["delivery"] = json!({"destination": "kinesis", "kinesis_stream": ctx.topic("absent")});
    config["heartbeat"] = json!({"database": ctx.mysql_database()});
    assert_eq!(configure(&api, &id, config).await.status, StatusCode::OK);

    let p = precheck(&api, &id).await;
    assert_eq!(p["passed"], false);
    let stream = item(&p, "delivery.kinesis_stream");
    assert_eq!(stream["status"], "failed", "{stream}");
    assert!(
        stream["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{stream}"
    );
    assert!(
        stream["hint"]
            .as_str()
            .unwrap()
            .contains("create the stream"),
        "{stream}"
    );
    // The stack's capture user has no write grants: the writer would fail, capture would not.
    let heartbeat = item(&p, "source.heartbeat");
    assert_eq!(heartbeat["status"], "warning", "{heartbeat}");
    assert!(
        heartbeat["hint"]
            .as_str()
            .unwrap()
            .starts_with("GRANT CREATE, INSERT, UPDATE ON"),
        "{heartbeat}"
    );
}

/// Selected tables that already exist on the target are compared with what Ferry would create
/// (`target.tables`): a compatible one is kept, an incompatible column fails the precheck (and
/// start) with the difference named, on PostgreSQL and on MariaDB; `ignore` makes it a warning
/// and `recreate` announces which tables are dropped.
#[tokio::test(flavor = "multi_thread")]
async fn existing_target_tables_are_compared_with_what_ferry_writes() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let mut c = ctx.mysql().await.unwrap();
    c.query_drop("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20))")
        .await
        .unwrap();
    let id = instance(
        &api,
        json!({"name": "dr", "mode": "sync", "billing": {"type": "pay_as_you_go"}}),
    )
    .await;
    let db = ctx.mysql_database();
    let sync_config = |target: Value, target_db: &str, mode: &str| {
        json!({
            "source": source(&ctx),
            "target": target,
            "objects": {"databases": [{"name": db, "target_name": target_db}]},
            "sync": {"conflicting_tables": mode},
        })
    };
    let tables_item = |p: &Value| item(p, "target.tables").clone();

    // PostgreSQL: `items` as Ferry would create it, `orders` with an integer total.
    let pg = ctx.postgres().await.unwrap();
    pg.batch_execute(
        "CREATE SCHEMA copy; \
         CREATE TABLE copy.items (id integer PRIMARY KEY, name varchar(20)); \
         CREATE TABLE copy.orders (id bigint PRIMARY KEY, total integer)",
    )
    .await
    .unwrap();
    let target = ctx.postgres_target().unwrap();
    let configured = configure(&api, &id, sync_config(target.clone(), "copy", "error")).await;
    assert_eq!(configured.status, StatusCode::OK, "{}", configured.text);
    let t = tables_item(&precheck(&api, &id).await);
    assert_eq!(t["status"], "failed", "{t}");
    let message = t["message"].as_str().unwrap();
    assert!(
        message.contains(
            "copy.orders: column `total` is `integer` on the target; Ferry writes `numeric(10,2)`"
        ),
        "{t}"
    );
    assert!(
        !message.contains("copy.items"),
        "a compatible table is no conflict: {t}"
    );
    assert!(t["hint"].as_str().unwrap().contains("recreate"), "{t}");
    let start = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/task/start"),
        None,
    )
    .await;
    assert_eq!(
        (start.status, start.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "precheck_failed"),
        "{}",
        start.text
    );

    configure(&api, &id, sync_config(target.clone(), "copy", "ignore")).await;
    let t = tables_item(&precheck(&api, &id).await);
    assert_eq!(t["status"], "warning", "{t}");
    assert!(t["message"].as_str().unwrap().contains("`total`"), "{t}");

    configure(&api, &id, sync_config(target.clone(), "copy", "recreate")).await;
    let t = tables_item(&precheck(&api, &id).await);
    assert_eq!(t["status"], "warning", "{t}");
    let message = t["message"].as_str().unwrap();
    assert!(
        message.contains("2 of the 2 selected tables exist on the target and will be dropped")
            && message.contains("copy.items")
            && message.contains("copy.orders"),
        "{t}"
    );

    pg.batch_execute("DROP TABLE copy.orders").await.unwrap();
    configure(&api, &id, sync_config(target, "copy", "error")).await;
    let t = tables_item(&precheck(&api, &id).await);
    assert_eq!(t["status"], "passed", "{t}");
    assert!(
        t["message"]
            .as_str()
            .unwrap()
            .starts_with("1 of the 2 selected tables exist"),
        "{t}"
    );

    // MariaDB: a NOT NULL column Ferry does not write, and another key.
    let copy = format!("{db}_copy");
    let mut target = ctx.target_mysql().await.unwrap();
    target
        .query_drop(format!("CREATE DATABASE `{copy}`"))
        .await
        .unwrap();
    target
        .query_drop(format!(
            "CREATE TABLE `{copy}`.orders (id BIGINT, total DECIMAL(10,2), \
         note VARCHAR(10) NOT NULL, PRIMARY KEY (id, total))"
        ))
        .await
        .unwrap();
    configure(&api, &id, sync_config(ctx.mariadb_target(), &copy, "error")).await;
    let t = tables_item(&precheck(&api, &id).await);
    assert_eq!(t["status"], "failed", "{t}");
    let message = t["message"].as_str().unwrap();
    assert!(
        message.contains("column `note` of the target is NOT NULL without a default"),
        "{t}"
    );
    assert!(
        message.contains("the primary key is (id, total) on the target and (id) on the source"),
        "{t}"
    );
}

use axum::http::{Method, StatusCode};
use ferry_testkit::TestContext;
use mysql_async::prelude::Queryable;
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn configure_precheck_start_reselect_stop() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let id = tracking_instance(&api).await;
    let task_path = format!("/v1/instances/{id}/task");
    let password = ctx.env().mysql_capture_password.clone();

    let empty = call(&api, Method::GET, &task_path, None).await;
    assert_eq!(empty.body["state"], "not_configured");
    let not_yet = call(&api, Method::POST, &format!("{task_path}/start"), None).await;
    assert_eq!(
        (not_yet.status, not_yet.code()),
        (StatusCode::CONFLICT, "not_configured")
    );

    let configured = configure(&api, &id, tracking_config(&ctx)).await;
    assert_eq!(configured.status, StatusCode::OK, "{}", configured.text);
    assert_eq!(configured.body["state"], "configured");
    assert_eq!(configured.body["config_version"], 1);
    assert_eq!(
        configured.body["delivery"]["topic"],
        format!("{}.{id}", ctx.id())
    );
    assert_eq!(
        configured.body["delivery"]["bootstrap_servers"],
        ctx.env().kafka_bootstrap
    );
    assert_eq!(
        configured.body["delivery"]["consumers"]["sasl_username"],
        "<group username>-<consumer group id>"
    );
    assert_eq!(
        configured.body["delivery"]["consumers"]["bootstrap_servers"],
        "127.0.0.1:9192"
    );
    assert_eq!(
        configured.body["config"]["delivery"]["format"],
        "debezium-json"
    );
    let shown = call(&api, Method::GET, &task_path, None).await;
    for text in [&configured.text, &shown.text] {
        assert!(
            !text.contains(&password),
            "a response holds the password: {text}"
        );
        assert!(
            !text.contains("\"password\""),
            "a response has a password field: {text}"
        );
    }

    let pre = call(&api, Method::POST, &format!("{task_path}/precheck"), None).await;
    assert_eq!(pre.status, StatusCode::OK, "{}", pre.text);
    assert_eq!(pre.body["passed"], true, "{}", pre.text);
    let ids: Vec<&str> = pre.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    for expected in [
        "source.connect",
        "source.version",
        "source.log_bin",
        "source.binlog_format",
        "source.binlog_row_image",
        "source.privileges",
        "source.objects",
        "source.primary_keys",
        "source.binlog_retention",
    ] {
        assert!(ids.contains(&expected), "{expected} missing from {ids:?}");
    }
    assert_eq!(
        call(&api, Method::GET, &task_path, None).await.body["state"],
        "configured",
        "precheck alone changes no state"
    );

    let started = call(&api, Method::POST, &format!("{task_path}/start"), None).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);
    assert_eq!(started.body["task"]["state"], "starting");
    assert_eq!(started.body["precheck"]["passed"], true);
    let again = call(&api, Method::POST, &format!("{task_path}/start"), None).await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "invalid_state")
    );
    assert_eq!(again.body["error"]["details"]["state"], "starting");
    let reconf = configure(&api, &id, tracking_config(&ctx)).await;
    assert_eq!(
        (reconf.status, reconf.code()),
        (StatusCode::CONFLICT, "invalid_state")
    );

    // Reselecting on a running task bumps the configuration version for the worker.
    let objects = json!({"databases": [{"name": ctx.mysql_database(), "tables": [{"name": "orders", "columns": ["id"]}]}], "operations": ["insert", "update"]});
    let reselected = call(
        &api,
        Method::PUT,
        &format!("{task_path}/objects"),
        Some(objects),
    )
    .await;
    assert_eq!(reselected.status, StatusCode::OK, "{}", reselected.text);
    assert_eq!(reselected.body["config_version"], 2);
    assert_eq!(reselected.body["state"], "starting");
    assert_eq!(
        reselected.body["config"]["objects"]["operations"],
        json!(["insert", "update"])
    );

    let stopped = call(&api, Method::POST, &format!("{task_path}/stop"), None).await;
    assert_eq!(stopped.body["state"], "stopped");
    let twice = call(&api, Method::POST, &format!("{task_path}/stop"), None).await;
    assert_eq!(twice.code(), "invalid_state");

    // A reconfiguration without a password keeps the stored one; with one, it replaces it.
    let mut keep = tracking_config(&ctx);
    keep["source"].as_object_mut().unwrap().remove("password");
    let kept = configure(&api, &id, keep).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    let secrets = ctx.secret_names().await.unwrap();
    assert_eq!(secrets.len(), 1, "{secrets:?}");
    assert_eq!(
        configure(&api, &id, tracking_config(&ctx)).await.status,
        StatusCode::OK
    );
    let replaced = ctx.secret_names().await.unwrap();
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_ne!(
        replaced, secrets,
        "the new password is a new secret; the old one is gone"
    );
    let pre = call(&api, Method::POST, &format!("{task_path}/precheck"), None).await;
    assert_eq!(
        pre.body["passed"], true,
        "the kept and replaced passwords still work: {}",
        pre.text
    );

    let events = ctx.events().await.unwrap();
    let changes: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["detail-type"] == "Task State Changed")
        .map(|e| {
            (
                e["detail"]["from"]["state"].as_str().unwrap().to_owned(),
                e["detail"]["to"]["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for pair in [
        ("not_configured", "configured"),
        ("configured", "prechecking"),
        ("prechecking", "starting"),
        ("starting", "stopped"),
        ("stopped", "configured"),
    ] {
        assert!(
            changes.contains(&(pair.0.to_owned(), pair.1.to_owned())),
            "{pair:?} missing from {changes:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_tasks_need_a_target_and_check_it() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    ctx.mysql()
        .await
        .unwrap()
        .query_drop(
            "CREATE TABLE kinds (id INT UNSIGNED PRIMARY KEY, size ENUM('s','l'), born DATE)",
        )
        .await
        .unwrap();
    let id = instance(
        &api,
        json!({"name": "olap", "mode": "sync", "billing": {"type": "pay_as_you_go"}}),
    )
    .await;

    let no_target = configure(&api, &id, tracking_config(&ctx)).await;
    assert_eq!(
        (no_target.status, no_target.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input")
    );
    assert_eq!(no_target.body["error"]["details"]["field"], "target");
    assert!(
        ctx.secret_names().await.unwrap().is_empty(),
        "a refused configuration writes no secret"
    );

    let pg: tokio_postgres::Config = ctx.env().postgres_url.parse().unwrap();
    let mut config = tracking_config(&ctx);
    config["target"] = json!({
        "engine": "postgresql",
        "host": "127.0.0.1",
        "port": pg.get_ports()[0],
        "username": pg.get_user().unwrap(),
        "password": "unused-with-trust-auth",
        "database": ctx.postgres_database(),
    });
    let ok = configure(&api, &id, config).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert!(
        ok.body.get("delivery").is_none(),
        "sync tasks have no topic"
    );
    assert_eq!(ctx.secret_names().await.unwrap().len(), 2);
    let pre = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/task/precheck"),
        None,
    )
    .await;
    let items = pre.body["items"].as_array().unwrap();
    // Every selected column converts; the documented losses are a warning naming the columns.
    let conversion = items
        .iter()
        .find(|i| i["id"] == "target.type_conversion")
        .unwrap_or_else(|| panic!("no conversion check: {}", pre.text));
    assert_eq!(conversion["status"], "warning", "{conversion}");
    let message = conversion["message"].as_str().unwrap();
    assert!(
        message.contains("kinds.size (enum('s','l') → text"),
        "{message}"
    );
    assert!(message.contains("kinds.born (date → date"), "{message}");
    assert!(!message.contains("kinds.id"), "{message}");
    for check in ["target.connect", "target.privileges"] {
        let item = items
            .iter()
            .find(|i| i["id"] == check)
            .unwrap_or_else(|| panic!("{check} missing: {}", pre.text));
        assert_eq!(item["status"], "passed", "{item}");
    }

    // A tracking task refuses a target.
    let t = tracking_instance(&api).await;
    let mut bad = tracking_config(&ctx);
    bad["target"] = json!({"engine": "mariadb", "host": "127.0.0.1", "port": 3306, "username": "x", "password": "y"});
    let refused = configure(&api, &t, bad).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.text
    );
}

/// A task configured and never started has no topic yet: its tracked changes are an empty
/// page, not a broker error (schemathesis found the 503).
#[tokio::test(flavor = "multi_thread")]
async fn a_task_never_started_has_no_changes_yet() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let id = tracking_instance(&api).await;
    let configured = configure(&api, &id, tracking_config(&ctx)).await;
    assert_eq!(configured.status, StatusCode::OK, "{}", configured.text);
    let page = call(
        &api,
        Method::GET,
        &format!("/v1/instances/{id}/changes?operation=update,delete"),
        None,
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.body["changes"], json!([]));
    assert!(page.body["next_page_token"].is_null(), "{}", page.text);
}

/// `delivery.values`: a new task gets its format's tool-compatible mapping; a reconfiguration that does not say keeps the mapping the topic already has;
/// another format's options are refused with a hint.
#[tokio::test(flavor = "multi_thread")]
async fn value_mappings_default_per_format_and_survive_a_reconfiguration() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let id = tracking_instance(&api).await;
    let with = |delivery: serde_json::Value| {
        let mut config = tracking_config(&ctx);
        config["delivery"] = delivery;
        config
    };
    let values =
        |answer: &ferry_testkit::Answer| answer.body["config"]["delivery"]["values"].clone();
    let new = configure(&api, &id, with(json!({"format": "maxwell-json"}))).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text);
    assert_eq!(values(&new), "compatible");
    let readable = configure(
        &api,
        &id,
        with(json!({"format": "maxwell-json", "values": "readable"})),
    )
    .await;
    assert_eq!(values(&readable), "readable");
    let again = configure(&api, &id, with(json!({"format": "maxwell-json"}))).await;
    assert_eq!(values(&again), "readable", "the topic keeps its shape");
    let debezium = configure(&api, &id, with(json!({"format": "debezium-json"}))).await;
    assert_eq!(
        values(&debezium),
        "compatible",
        "another format: its tool's shape"
    );
    let asked = configure(
        &api,
        &id,
        with(json!({"format": "debezium-json", "values": "readable"})),
    )
    .await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.text);
    assert_eq!(values(&asked), "readable");
    let kept = configure(&api, &id, with(json!({"format": "debezium-json"}))).await;
    assert_eq!(
        values(&kept),
        "readable",
        "the debezium topic keeps its shape too"
    );
    let refused = configure(
        &api,
        &id,
        with(json!({"format": "canal-json", "maxwell": {"output_server_id": true}})),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        "{}",
        refused.text
    );
    assert!(refused.text.contains("maxwell"), "{}", refused.text);
}

/// `POST …/task/source-objects` lists what a source holds (the object picker): the source in
/// the body before a task is configured, the configured one for `{}`, and the configured
/// password for the same server and user; bad sources are refused with what to fix.
#[tokio::test(flavor = "multi_thread")]
async fn the_source_objects_route_lists_the_sources_catalog() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE orders (id BIGINT, line INT, total DECIMAL(10,2) NOT NULL, note TEXT, \
         PRIMARY KEY (id, line))",
    )
    .await
    .unwrap();
    db.query_drop("CREATE TABLE notes (body TEXT)")
        .await
        .unwrap();
    db.query_drop("CREATE VIEW order_view AS SELECT id FROM orders")
        .await
        .unwrap();
    let id = tracking_instance(&api).await;
    let path = format!("/v1/instances/{id}/task/source-objects");
    let list = |body: serde_json::Value| call(&api, Method::POST, &path, Some(body));

    let none = list(json!({})).await;
    assert_eq!(
        (none.status, none.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        "{}",
        none.text
    );
    // Other tests' databases come and go on the shared server: this test's is compared.
    let mine = |answer: &ferry_testkit::Answer| {
        answer.body["databases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == ctx.mysql_database())
            .unwrap_or_else(|| panic!("the test's database is listed: {}", answer.text))
            .clone()
    };
    let listed = list(json!({"source": source(&ctx)})).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    let database = mine(&listed);
    let tables: Vec<&str> = database["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tables,
        ["notes", "orders"],
        "base tables in name order, no view"
    );
    let orders = &database["tables"][1];
    assert_eq!(orders["primary_key"], json!(["id", "line"]));
    assert_eq!(
        orders["columns"],
        json!([
            {"name": "id", "type": "bigint(20)", "nullable": false},
            {"name": "line", "type": "int(11)", "nullable": false},
            {"name": "total", "type": "decimal(10,2)", "nullable": false},
            {"name": "note", "type": "text", "nullable": true},
        ])
    );
    assert_eq!(database["tables"][0]["primary_key"], json!([]));
    assert!(
        listed.body["databases"]
            .as_array()
            .unwrap()
            .iter()
            .all(
                |d| !["mysql", "information_schema", "performance_schema", "sys"]
                    .contains(&d["name"].as_str().unwrap())
            ),
        "no system schema"
    );

    // Configured: `{}` lists the configured source, and the same server and user without a
    // password uses the stored one.
    let configured = configure(&api, &id, tracking_config(&ctx)).await;
    assert_eq!(configured.status, StatusCode::OK, "{}", configured.text);
    assert_eq!(mine(&list(json!({})).await), database);
    let mut no_password = source(&ctx);
    no_password.as_object_mut().unwrap().remove("password");
    assert_eq!(mine(&list(json!({"source": no_password})).await), database);

    // Bad sources: what to fix.
    let mut wrong = source(&ctx);
    wrong["password"] = json!("not-the-password");
    let refused = list(json!({"source": wrong})).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "source_unavailable"),
        "{}",
        refused.text
    );
    assert!(
        refused.body["error"]["hint"].is_string(),
        "{}",
        refused.text
    );
    let mut other_user = source(&ctx);
    other_user["username"] = json!("someone_else");
    other_user.as_object_mut().unwrap().remove("password");
    let needs = list(json!({"source": other_user})).await;
    assert_eq!(
        (needs.status, needs.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        "{}",
        needs.text
    );
    let mut metadata = source(&ctx);
    metadata["host"] = json!("169.254.169.254");
    let forbidden = list(json!({"source": metadata})).await;
    assert_eq!(
        (forbidden.status, forbidden.code()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "endpoint_address_forbidden"
        ),
        "{}",
        forbidden.text
    );
}

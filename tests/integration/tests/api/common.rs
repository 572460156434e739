use axum::http::{Method, StatusCode};
use ferry_testkit::{Answer, TestApi, TestContext};
use mysql_async::prelude::Queryable;
use serde_json::{Value, json};

pub(crate) async fn api(ctx: &TestContext) -> TestApi {
    ctx.api(ferry_cli::all_routes()).await.unwrap()
}

pub(crate) async fn call(api: &TestApi, method: Method, path: &str, body: Option<Value>) -> Answer {
    api.call(method, path, body).await.unwrap()
}

/// Creates an instance and returns its id.
pub(crate) async fn instance(api: &TestApi, body: Value) -> String {
    let a = call(api, Method::POST, "/v1/instances", Some(body)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    a.body["id"].as_str().unwrap().to_owned()
}

pub(crate) async fn tracking_instance(api: &TestApi) -> String {
    instance(
        api,
        json!({"name": "orders", "mode": "tracking", "billing": {"type": "pay_as_you_go"}}),
    )
    .await
}

/// The stack's MariaDB as a source endpoint, as the capture user.
pub(crate) fn source(ctx: &TestContext) -> Value {
    let env = ctx.env();
    json!({
        "engine": "mariadb",
        "host": env.mysql_host,
        "port": env.mysql_port,
        "username": env.mysql_capture_user,
        "password": env.mysql_capture_password,
    })
}

/// A table `orders` (with a key) in the test's database.
pub(crate) async fn orders_table(ctx: &TestContext) {
    let mut c = ctx.mysql().await.unwrap();
    c.query_drop("CREATE TABLE orders (id BIGINT PRIMARY KEY, total DECIMAL(10,2))")
        .await
        .unwrap();
}

/// A task configuration tracking the test's database.
pub(crate) fn tracking_config(ctx: &TestContext) -> Value {
    json!({"source": source(ctx), "objects": {"databases": [{"name": ctx.mysql_database()}]}})
}

pub(crate) async fn configure(api: &TestApi, id: &str, config: Value) -> Answer {
    call(
        api,
        Method::PUT,
        &format!("/v1/instances/{id}/task"),
        Some(config),
    )
    .await
}

/// The detail types of the events published so far, in order.
pub(crate) async fn event_types(ctx: &TestContext) -> Vec<String> {
    ctx.events()
        .await
        .unwrap()
        .iter()
        .map(|e| e["detail-type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

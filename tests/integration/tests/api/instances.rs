use axum::http::{Method, StatusCode};
use chrono::{DateTime, Duration, Months, Utc};
use ferry_testkit::TestContext;
use serde_json::json;

use crate::common::*;

fn ts(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pay_as_you_go_lifecycle_through_every_instance_route() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;

    let body = json!({"name": "orders", "mode": "tracking", "billing": {"type": "pay_as_you_go"}, "class": "medium", "client_token": "create-1"});
    let first = call(&api, Method::POST, "/v1/instances", Some(body.clone())).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let id = first.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ins_"));
    assert_eq!(first.body["class"], "medium");
    assert_eq!(first.body["task"]["state"], "not_configured");

    // Idempotent create: the same token and request answer the same instance.
    let retry = call(&api, Method::POST, "/v1/instances", Some(body.clone())).await;
    assert_eq!(
        (retry.status, retry.body["id"].as_str()),
        (StatusCode::OK, Some(id.as_str()))
    );
    let mut other = body.clone();
    other["name"] = json!("something else");
    let clash = call(&api, Method::POST, "/v1/instances", Some(other)).await;
    assert_eq!(
        (clash.status, clash.code()),
        (StatusCode::CONFLICT, "already_exists")
    );

    let shown = call(&api, Method::GET, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.body["billing"]["type"], "pay_as_you_go");
    assert!(shown.body.get("release_at").is_none());

    let sync = instance(
        &api,
        json!({"name": "dr", "mode": "sync", "billing": {"type": "pay_as_you_go"}}),
    )
    .await;
    let listed = call(&api, Method::GET, "/v1/instances", None).await;
    let ids: Vec<&str> = listed.body["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [sync.as_str(), id.as_str()], "newest first");
    let tracking = call(
        &api,
        Method::GET,
        "/v1/instances?mode=tracking&limit=5",
        None,
    )
    .await;
    assert_eq!(tracking.body["instances"].as_array().unwrap().len(), 1);
    let page = call(&api, Method::GET, "/v1/instances?limit=1", None).await;
    let token = page.body["next_page_token"].as_str().unwrap();
    let next = call(
        &api,
        Method::GET,
        &format!("/v1/instances?limit=1&page_token={token}"),
        None,
    )
    .await;
    assert_eq!(next.body["instances"][0]["id"], id.as_str());

    let renew = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/renew"),
        Some(json!({"months": 1})),
    )
    .await;
    assert_eq!(
        (renew.status, renew.code()),
        (StatusCode::CONFLICT, "not_subscription")
    );

    assert_eq!(
        configure(&api, &id, tracking_config(&ctx)).await.status,
        StatusCode::OK
    );
    assert_eq!(ctx.secret_names().await.unwrap().len(), 1);
    let started = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/task/start"),
        None,
    )
    .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text);

    // Delete: the task stops, secrets go, the topic and groups are left for the workers to
    // remove, and nothing of the instance is left in the table.
    let deleted = call(&api, Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    assert_eq!(
        call(&api, Method::GET, &format!("/v1/instances/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&api, Method::DELETE, &format!("/v1/instances/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(ctx.secret_names().await.unwrap().is_empty());
    let cleanups = api.state.store().pending_cleanups().await.unwrap();
    assert_eq!(cleanups.len(), 1);
    assert_eq!(cleanups[0].topics, [format!("{}.{id}", ctx.id())]);

    let events = event_types(&ctx).await;
    for expected in [
        "Instance Created",
        "Task State Changed",
        "Precheck Finished",
        "Instance Deleted",
    ] {
        assert!(
            events.iter().any(|e| e == expected),
            "{expected} missing from {events:?}"
        );
    }
    let stopped_on_delete = ctx.events().await.unwrap();
    assert!(stopped_on_delete.is_empty(), "events are read once");
}

#[tokio::test(flavor = "multi_thread")]
async fn subscription_expires_is_renewed_and_is_released_on_a_driven_clock() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let id = instance(&api, json!({"name": "subs", "mode": "tracking", "billing": {"type": "subscription", "months": 1}})).await;
    let shown = call(&api, Method::GET, &format!("/v1/instances/{id}"), None).await;
    let created = ts(&shown.body["created_at"]);
    let expires = ts(&shown.body["billing"]["expires_at"]);
    assert_eq!(expires, created.checked_add_months(Months::new(1)).unwrap());
    assert_eq!(ts(&shown.body["release_at"]), expires + Duration::days(7));

    let del = call(&api, Method::DELETE, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(
        (del.status, del.code()),
        (StatusCode::CONFLICT, "subscription_not_deletable")
    );
    assert_eq!(
        configure(&api, &id, tracking_config(&ctx)).await.status,
        StatusCode::OK
    );

    let sweep = |at: DateTime<Utc>| {
        let state = api.state.clone();
        async move {
            ferry_fn_sweeper::handle(&state, &json!({"time": at.to_rfc3339()}))
                .await
                .unwrap()
        }
    };
    let r = sweep(expires - Duration::seconds(1)).await;
    assert!(r.expired.is_empty() && r.released.is_empty());
    let r = sweep(expires).await;
    assert_eq!(r.expired.len(), 1);
    let shown = call(&api, Method::GET, &format!("/v1/instances/{id}"), None).await;
    assert_eq!(shown.body["status"], "expired");
    assert_eq!(
        shown.body["task"],
        json!({"state": "expired", "configured": true})
    );
    let refused = configure(&api, &id, tracking_config(&ctx)).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "instance_expired")
    );
    // Sweeping again changes nothing.
    assert!(sweep(expires + Duration::hours(1)).await.expired.is_empty());

    // Renewed after expiry: active again from now, the task stopped with its configuration.
    let renewed = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/renew"),
        Some(json!({"months": 2})),
    )
    .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
    assert_eq!(renewed.body["status"], "active");
    assert_eq!(renewed.body["task"]["state"], "stopped");
    let new_expiry = ts(&renewed.body["billing"]["expires_at"]);
    assert!(new_expiry > Utc::now() + Duration::days(55));

    // Expires again, and is released seven days later with everything it owns.
    assert_eq!(sweep(new_expiry).await.expired.len(), 1);
    assert!(
        sweep(new_expiry + Duration::days(7) - Duration::seconds(1))
            .await
            .released
            .is_empty()
    );
    let r = sweep(new_expiry + Duration::days(7)).await;
    assert_eq!(r.released.len(), 1);
    assert_eq!(
        call(&api, Method::GET, &format!("/v1/instances/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(ctx.secret_names().await.unwrap().is_empty());
    let events = event_types(&ctx).await;
    assert_eq!(
        events.iter().filter(|e| *e == "Instance Expired").count(),
        2,
        "{events:?}"
    );
    assert!(events.iter().any(|e| e == "Instance Released"));

    // A scheduled event without a time is refused, not guessed.
    assert!(
        ferry_fn_sweeper::handle(&api.state, &json!({"detail-type": "Scheduled Event"}))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_renewals_never_lose_an_update() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    let id = instance(&api, json!({"name": "race", "mode": "tracking", "billing": {"type": "subscription", "months": 1}})).await;
    let before = ts(
        &call(&api, Method::GET, &format!("/v1/instances/{id}"), None)
            .await
            .body["billing"]["expires_at"],
    );

    let path = format!("/v1/instances/{id}/renew");
    let answers = futures::future::join_all(
        (0..6).map(|_| call(&api, Method::POST, &path, Some(json!({"months": 1})))),
    )
    .await;
    let won = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    for a in &answers {
        assert!(
            a.status == StatusCode::OK || a.code() == "conflict",
            "{}",
            a.text
        );
    }
    assert!(won >= 1);
    let after = ts(
        &call(&api, Method::GET, &format!("/v1/instances/{id}"), None)
            .await
            .body["billing"]["expires_at"],
    );
    let months = u32::try_from(won).unwrap();
    assert_eq!(
        after,
        before.checked_add_months(Months::new(months)).unwrap(),
        "{won} renewals succeeded: each must count once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_clears_configuration_progress_and_secrets() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let id = tracking_instance(&api).await;
    assert_eq!(
        configure(&api, &id, tracking_config(&ctx)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(
            &api,
            Method::POST,
            &format!("/v1/instances/{id}/task/start"),
            None
        )
        .await
        .status,
        StatusCode::OK
    );

    let reset = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{id}/reset"),
        None,
    )
    .await;
    assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
    assert_eq!(reset.body["state"], "not_configured");
    assert!(reset.body.get("config").is_none());
    assert_eq!(reset.body["config_version"], 2);
    assert!(ctx.secret_names().await.unwrap().is_empty());
    // Configurable again.
    assert_eq!(
        configure(&api, &id, tracking_config(&ctx)).await.status,
        StatusCode::OK
    );
}

use axum::http::{Method, StatusCode};
use ferry_testkit::TestContext;
use serde_json::json;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn create_list_change_password_and_delete() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    let id = tracking_instance(&api).await;
    let groups = format!("/v1/instances/{id}/consumer-groups");

    let a = call(
        &api,
        Method::POST,
        &groups,
        Some(json!({"name": "billing", "username": "billing", "password": "Billing-2026"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    assert!(a.body["id"].as_str().unwrap().starts_with("cg_"));
    assert!(
        !a.text.contains("Billing-2026")
            && !a.text.contains("argon2")
            && !a.text.contains("stored_key")
            && !a.text.contains("server_key"),
        "no hash or SCRAM verifier leaves the API: {}",
        a.text
    );
    // What the group's consumers set, ready to copy.
    let gid = a.body["id"].as_str().unwrap();
    assert_eq!(
        a.body["connection"],
        json!({
            "bootstrap_servers": "127.0.0.1:9192",
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanisms": ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"],
            "sasl_username": format!("billing-{gid}"),
            "group_id": gid,
        })
    );
    let b = call(
        &api,
        Method::POST,
        &groups,
        Some(json!({"name": "search", "username": "search_idx", "password": "search-index-1"})),
    )
    .await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.text);

    let listed = call(&api, Method::GET, &groups, None).await;
    let names: Vec<&str> = listed.body["consumer_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["billing", "search"]);
    assert!(!listed.text.contains("hash"), "{}", listed.text);

    let gid = a.body["id"].as_str().unwrap();
    let one = format!("{groups}/{gid}");
    let wrong = call(
        &api,
        Method::PATCH,
        &one,
        Some(json!({"old_password": "Billing-2025", "new_password": "Billing-2027"})),
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.code()),
        (StatusCode::FORBIDDEN, "wrong_password")
    );
    let weak = call(
        &api,
        Method::PATCH,
        &one,
        Some(json!({"old_password": "Billing-2026", "new_password": "weakweak"})),
    )
    .await;
    assert_eq!(
        (weak.status, weak.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input")
    );
    let changed = call(
        &api,
        Method::PATCH,
        &one,
        Some(json!({"old_password": "Billing-2026", "new_password": "Billing-2027"})),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    let old_again = call(
        &api,
        Method::PATCH,
        &one,
        Some(json!({"old_password": "Billing-2026", "new_password": "Billing-2028"})),
    )
    .await;
    assert_eq!(
        old_again.code(),
        "wrong_password",
        "the old password no longer works"
    );

    assert_eq!(
        call(&api, Method::DELETE, &one, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&api, Method::DELETE, &one, None).await.status,
        StatusCode::NOT_FOUND
    );
    let listed = call(&api, Method::GET, &groups, None).await;
    assert_eq!(listed.body["consumer_groups"].as_array().unwrap().len(), 1);
    // The broker deleted its offsets at once (tests/tracking.rs checks them): nothing is left
    // for a later cleanup.
    let cleanups = api.state.store().pending_cleanups().await.unwrap();
    assert!(
        !cleanups.iter().any(|c| c.groups.contains(&gid.to_owned())),
        "{cleanups:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_unique_usernames_and_tracking_only() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    let id = tracking_instance(&api).await;
    let groups = format!("/v1/instances/{id}/consumer-groups");
    for n in 0..20 {
        let a = call(&api, Method::POST, &groups, Some(json!({"name": format!("g{n}"), "username": format!("user{n}"), "password": "Password-1"}))).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    }
    let over = call(
        &api,
        Method::POST,
        &groups,
        Some(json!({"name": "g20", "username": "user20", "password": "Password-1"})),
    )
    .await;
    assert_eq!(
        (over.status, over.code()),
        (StatusCode::CONFLICT, "quota_exceeded")
    );

    let other = tracking_instance(&api).await;
    let other_groups = format!("/v1/instances/{other}/consumer-groups");
    let first = call(
        &api,
        Method::POST,
        &other_groups,
        Some(json!({"name": "a", "username": "same", "password": "Password-1"})),
    )
    .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let dup = call(
        &api,
        Method::POST,
        &other_groups,
        Some(json!({"name": "b", "username": "same", "password": "Password-1"})),
    )
    .await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::CONFLICT, "already_exists")
    );

    let sync = instance(
        &api,
        json!({"name": "dr", "mode": "sync", "billing": {"type": "pay_as_you_go"}}),
    )
    .await;
    let refused = call(
        &api,
        Method::POST,
        &format!("/v1/instances/{sync}/consumer-groups"),
        Some(json!({"name": "a", "username": "a", "password": "Password-1"})),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::CONFLICT, "not_tracking")
    );
}

//! A table of bad inputs: each gets the right 4xx and code, never a 500, never a partial write.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ferry_testkit::TestContext;
use serde_json::{Value, json};

use crate::common::*;

/// Method, path and optional JSON body of a request.
type Request3 = (Method, String, Option<Value>);

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_clear_errors_and_change_nothing() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    orders_table(&ctx).await;
    let id = tracking_instance(&api).await;
    assert_eq!(
        configure(&api, &id, tracking_config(&ctx)).await.status,
        StatusCode::OK
    );
    let before = call(&api, Method::GET, &format!("/v1/instances/{id}/task"), None)
        .await
        .body;

    let inst = |b: Value| (Method::POST, "/v1/instances".to_owned(), Some(b));
    let task = |b: Value| (Method::PUT, format!("/v1/instances/{id}/task"), Some(b));
    let with_source = |f: &dyn Fn(&mut Value)| {
        let mut c = tracking_config(&ctx);
        f(&mut c);
        c
    };
    let cases: Vec<(Request3, StatusCode, &str)> = vec![
        (
            inst(
                json!({"name": "x", "mode": "tracking", "billing": {"type": "pay_as_you_go"}, "colour": "red"}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(json!({"name": 7, "mode": "tracking", "billing": {"type": "pay_as_you_go"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(json!({"name": "", "mode": "tracking", "billing": {"type": "pay_as_you_go"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(
                json!({"name": "x".repeat(65), "mode": "tracking", "billing": {"type": "pay_as_you_go"}}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(json!({"name": "x", "mode": "replicate", "billing": {"type": "pay_as_you_go"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(
                json!({"name": "x", "mode": "tracking", "billing": {"type": "subscription", "months": 0}}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(
                json!({"name": "x", "mode": "tracking", "billing": {"type": "pay_as_you_go", "months": 3}}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(
                json!({"name": "x", "mode": "tracking", "billing": {"type": "pay_as_you_go"}, "client_token": "has spaces"}),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(json!({"mode": "tracking", "billing": {"type": "pay_as_you_go"}})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            inst(json!(["not", "an", "object"])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            task(with_source(&|c| {
                c["source"]["host"] = json!("db;drop table")
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            task(with_source(&|c| {
                c["source"]["host"] = json!("169.254.169.254")
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "endpoint_address_forbidden",
        ),
        (
            task(with_source(&|c| {
                c["source"]["host"] = json!("[fd00:ec2::254]")
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "endpoint_address_forbidden",
        ),
        (
            task(with_source(&|c| {
                c["source"]["host"] = json!("169.254.170.2")
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "endpoint_address_forbidden",
        ),
        (
            task(with_source(&|c| c["source"]["port"] = json!(0))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            task(with_source(&|c| c["source"]["port"] = json!(70000))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            task(with_source(&|c| {
                c["source"]["engine"] = json!("postgresql")
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            task(with_source(&|c| c["source"]["engine"] = json!("oracle"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            task(with_source(&|c| {
                c["source"]["password"] = json!("x".repeat(2000))
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            task(with_source(&|c| c["source"]["username"] = json!("a\u{0}b"))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            task(with_source(&|c| c["objects"] = json!({"databases": []}))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            task(with_source(&|c| {
                c["objects"] = json!({"databases": [{"name": "a\u{0}b"}]})
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            task(with_source(&|c| {
                c["objects"] = json!({"databases": [{"name": "x".repeat(65)}]})
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            task(with_source(&|c| {
                c["objects"]["operations"] = json!(["truncate"])
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            task(with_source(&|c| c["delivery"] = json!({"format": "xml"}))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            task(with_source(&|c| {
                c["delivery"] = json!({"retention_hours": 0})
            })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            task(with_source(&|c| c["source"]["sneaky"] = json!(true))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            (
                Method::POST,
                format!("/v1/instances/{id}/renew"),
                Some(json!({"months": "three"})),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            (
                Method::PUT,
                format!("/v1/instances/{id}/task/objects"),
                Some(json!({"databases": [{"name": "a", "tables": []}]})),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            (
                Method::POST,
                format!("/v1/instances/{id}/consumer-groups"),
                Some(json!({"name": "g", "username": "1bad", "password": "Password-1"})),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            (
                Method::POST,
                format!("/v1/instances/{id}/consumer-groups"),
                Some(json!({"name": "g", "username": "good", "password": "short"})),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            (Method::GET, "/v1/instances/ins_nope".to_owned(), None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            (
                Method::GET,
                "/v1/instances/cg_00000000000000000000000000000000".to_owned(),
                None,
            ),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            (
                Method::GET,
                "/v1/instances/ins_00000000000000000000000000000000".to_owned(),
                None,
            ),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            (
                Method::GET,
                "/v1/instances/..%2F..%2Fetc%2Fpasswd/task".to_owned(),
                None,
            ),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            (
                Method::DELETE,
                format!("/v1/instances/{id}/consumer-groups/cg_zz"),
                None,
            ),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            (Method::GET, "/v1/instances?limit=0".to_owned(), None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            (Method::GET, "/v1/instances?limit=many".to_owned(), None),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            (Method::GET, "/v1/instances?colour=red".to_owned(), None),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            (
                Method::GET,
                "/v1/instances?page_token=garbage".to_owned(),
                None,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_page_token",
        ),
        (
            (Method::GET, "/v2/instances".to_owned(), None),
            StatusCode::NOT_FOUND,
            "no_route",
        ),
        (
            (Method::PATCH, "/v1/instances".to_owned(), None),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for ((method, path, body), status, code) in cases {
        let a = call(&api, method.clone(), &path, body.clone()).await;
        assert_eq!(
            (a.status, a.code()),
            (status, code),
            "{method} {path} {body:?} -> {}",
            a.text
        );
        assert!(
            a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "no message: {}",
            a.text
        );
        assert!(
            !a.text.contains(&ctx.env().mysql_capture_password),
            "an error echoes the password"
        );
    }

    // Bodies that are not JSON at all.
    let raw = |content_type: Option<&str>, body: Vec<u8>| {
        let mut r = Request::builder().method(Method::POST).uri("/v1/instances");
        if let Some(ct) = content_type {
            r = r.header(header::CONTENT_TYPE, ct);
        }
        r.body(Body::from(body)).unwrap()
    };
    for (req, status, code) in [
        (
            raw(Some("application/json"), b"{\"name\": ".to_vec()),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            raw(None, b"{}".to_vec()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            raw(Some("application/json"), vec![b' '; 100 * 1024]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            raw(Some("application/json"), vec![0xff, 0xfe, 0x00]),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
    ] {
        let a = api.raw(req).await.unwrap();
        assert_eq!((a.status, a.code()), (status, code), "{}", a.text);
    }

    // Nothing above changed the task or created an instance.
    let after = call(&api, Method::GET, &format!("/v1/instances/{id}/task"), None)
        .await
        .body;
    assert_eq!(before, after);
    let listed = call(&api, Method::GET, "/v1/instances", None).await;
    assert_eq!(listed.body["instances"].as_array().unwrap().len(), 1);
    assert_eq!(ctx.secret_names().await.unwrap().len(), 1);
}

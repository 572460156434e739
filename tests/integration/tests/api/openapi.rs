//! `docs/openapi.yaml` documents exactly the routes `ferry serve` and the functions serve.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use ferry_testkit::TestContext;

use crate::common::*;

/// (METHOD, path) of every operation in the document: paths are the two-space-indented keys
/// under `paths:`, methods the four-space-indented keys under a path.
fn documented() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.yaml"
    ))
    .unwrap();
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path = String::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = format!("/{p}");
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':'))
            && ["get", "post", "put", "patch", "delete"].contains(&m)
        {
            out.insert((m.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn the_document_and_the_routes_agree() {
    let served: BTreeSet<(String, String)> = ferry_cli::all_routes()
        .iter()
        .map(|r| (r.method().to_string(), r.path().to_owned()))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from docs/openapi.yaml: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "docs/openapi.yaml documents routes nothing serves: {unserved:?}"
    );
}

/// Every listed route answers its method (never 405 or "no route"), so a route table entry
/// whose handler serves another method is caught.
#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_its_method() {
    let ctx = TestContext::spawn().await.unwrap();
    let api = api(&ctx).await;
    for route in ferry_cli::all_routes() {
        let path = route
            .path()
            .replace("{id}", "ins_00000000000000000000000000000000")
            .replace("{gid}", "cg_00000000000000000000000000000000");
        let method: Method = route.method().clone();
        let a = call(&api, method.clone(), &path, None).await;
        assert_ne!(
            a.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            a.text
        );
        assert_ne!(a.code(), "no_route", "{method} {path}");
        assert!(!a.status.is_server_error(), "{method} {path}: {}", a.text);
    }
}

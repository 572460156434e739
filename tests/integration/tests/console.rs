//! The web console in a real browser: `ferry serve`'s app (the API and the console, on a
//! loopback port) and a worker on the local stack, driven by the Playwright scenarios of
//! `console/tests/` in Debian's Chromium (`docs/console.md`). `FERRY_CONSOLE_SCREENSHOTS` names
//! a directory for a screenshot of each screen (the ones in `docs/console/` come from there).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::path::PathBuf;

use ferry_testkit::{InProcessWorker, TestContext};
use mysql_async::prelude::Queryable;
use serde_json::json;

/// Serves the API and the console on a loopback port, runs `scenario` with node, and returns
/// its output; fails with the scenario's own account of the step that failed.
async fn run_scenario(ctx: &TestContext, scenario: &str) -> String {
    let state = ctx.app_state().await.unwrap();
    let console_dir = ferry_cli::default_console_dir();
    assert!(
        console_dir.join("index.html").is_file(),
        "the console is not built in {}: infra/local/stack up builds it",
        console_dir.display()
    );
    let app = ferry_cli::app(state.clone(), &console_dir);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let worker = InProcessWorker::start(&state);

    let env = ctx.env();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(root.join("console/tests").join(scenario))
        .env("FERRY_CONSOLE_URL", format!("http://{addr}/console/"))
        .env(
            "FERRY_SOURCE",
            json!({"host": env.mysql_host, "port": env.mysql_port,
                   "username": env.mysql_capture_user, "password": env.mysql_capture_password,
                   "database": ctx.mysql_database()})
            .to_string(),
        )
        .env(
            "FERRY_MARIADB",
            json!({"host": env.mysql_host, "port": env.mysql_port,
                   "user": env.mysql_admin_user, "password": env.mysql_admin_password})
            .to_string(),
        );
    // A sync task's target: the stack's PostgreSQL, this test's database.
    command.env("FERRY_TARGET", ctx.postgres_target().unwrap().to_string());
    if let Ok(dir) = std::env::var("FERRY_CONSOLE_SCREENSHOTS") {
        command.env("FERRY_SCREENSHOTS", dir);
    }
    let out = command
        .output()
        .await
        .expect("node runs the browser scenario");
    worker.stop().await.unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the console scenario {scenario} failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Change tracking in the browser: create, configure with the object picker, precheck, start,
/// rows moving the charts, a phone's screen, and a subscription's deletion refused.
#[tokio::test(flavor = "multi_thread")]
async fn change_tracking_through_the_console() {
    let ctx = TestContext::spawn().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop("CREATE TABLE orders (id BIGINT PRIMARY KEY, total DECIMAL(10,2))")
        .await
        .unwrap();
    let out = run_scenario(&ctx, "tracking.mjs").await;
    assert!(out.contains("first_render_ms"), "{out}");
}

/// Data synchronization in the browser: configure to PostgreSQL with the object picker, the
/// progress bars reaching 100%, a table added to the running task, and a clean verification.
#[tokio::test(flavor = "multi_thread")]
async fn data_synchronization_through_the_console() {
    let ctx = TestContext::spawn().await.unwrap();
    let mut db = ctx.mysql().await.unwrap();
    db.query_drop(
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, total DECIMAL(10,2), note VARCHAR(40))",
    )
    .await
    .unwrap();
    db.query_drop("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(20))")
        .await
        .unwrap();
    for chunk in 0..10 {
        let rows: Vec<String> = (1..=500)
            .map(|i| {
                let id = chunk * 500 + i;
                format!("({id}, {id}.25, 'order {id}')")
            })
            .collect();
        db.query_drop(format!("INSERT INTO orders VALUES {}", rows.join(",")))
            .await
            .unwrap();
    }
    db.query_drop("INSERT INTO items VALUES (1, 'lamp'), (2, 'desk'), (3, 'chair')")
        .await
        .unwrap();
    run_scenario(&ctx, "sync.mjs").await;
}

/// A stand-in for API Gateway with IAM authorization: it checks each request's SigV4 signature
/// by signing the same request again with the AWS SDK's signer (the same credentials, region
/// and the request's own `x-amz-date`), answers 403 when they differ, and counts the requests.
async fn verifying_endpoint() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    use axum::body::to_bytes;
    use axum::extract::Request;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let verified = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&verified);
    let app = axum::Router::new().fallback(move |request: Request| {
        let count = std::sync::Arc::clone(&count);
        async move {
            let (parts, body) = request.into_parts();
            let body = to_bytes(body, 1 << 20).await.unwrap();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let date = header("x-amz-date");
            let Ok(time) = chrono::NaiveDateTime::parse_from_str(&date, "%Y%m%dT%H%M%SZ") else {
                return (StatusCode::FORBIDDEN, "no x-amz-date").into_response();
            };
            let time = std::time::SystemTime::UNIX_EPOCH
                + std::time::Duration::from_secs(
                    u64::try_from(time.and_utc().timestamp()).unwrap(),
                );
            let identity = aws_credential_types::Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                None,
                None,
                "verifier",
            )
            .into();
            let params = aws_sigv4::sign::v4::SigningParams::builder()
                .identity(&identity)
                .region("us-east-1")
                .name("execute-api")
                .time(time)
                .settings(SigningSettings::default())
                .build()
                .unwrap()
                .into();
            let host = header("host");
            let content_type = header("content-type");
            let mut signed = vec![("host", host.as_str())];
            if !content_type.is_empty() {
                signed.push(("content-type", content_type.as_str()));
            }
            let url = format!("http://{host}{}", parts.uri);
            let request = SignableRequest::new(
                parts.method.as_str(),
                url,
                signed.into_iter(),
                SignableBody::Bytes(&body),
            )
            .unwrap();
            let expected = sign(request, &params).unwrap().into_parts().0;
            let expected = expected
                .headers()
                .find(|(k, _)| *k == "authorization")
                .map(|(_, v)| v.to_owned())
                .unwrap_or_default();
            if expected != header("authorization") {
                return (StatusCode::FORBIDDEN, "signature mismatch").into_response();
            }
            count.fetch_add(1, Ordering::SeqCst);
            axum::Json(json!({"instances": [], "verified": true})).into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, verified)
}

/// `ferry console --endpoint` and the CLI's `--endpoint` sign every API call with SigV4 from
/// the standard credential chain (here the environment's keys): a verifier that signs each
/// request again with the AWS SDK's signer accepts them; the console's files are served on
/// loopback.
#[tokio::test(flavor = "multi_thread")]
async fn requests_to_a_deployed_api_are_signed() {
    let (endpoint, verified) = verifying_endpoint().await;
    let ferry = ferry_testkit::ferry_binary().unwrap();
    let aws = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
        ("AWS_REGION", "us-east-1"),
    ];
    // The CLI.
    let out = tokio::process::Command::new(&ferry)
        .args([
            "--json",
            "--endpoint",
            &format!("http://{endpoint}"),
            "instance",
            "list",
        ])
        .envs(aws)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "the CLI's signed call: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(verified.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The console: files on loopback, API calls forwarded signed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut console = tokio::process::Command::new(&ferry)
        .args([
            "--endpoint",
            &format!("http://{endpoint}"),
            "console",
            "--addr",
            &format!("127.0.0.1:{port}"),
        ])
        .envs(aws)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = http
            .get(format!("{base}/v1/instances?limit=5"))
            .send()
            .await
        {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let answer = answer.expect("ferry console answers");
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(body["verified"], true);
    let posted = http
        .post(format!("{base}/v1/instances"))
        .json(&json!({"name": "signed", "mode": "tracking", "billing": {"type": "pay_as_you_go"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200, "a body is signed too");
    assert_eq!(verified.load(std::sync::atomic::Ordering::SeqCst), 3);
    let page = http.get(format!("{base}/console/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<div id=\"app\">"));
    console.kill().await.unwrap();
}

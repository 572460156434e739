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

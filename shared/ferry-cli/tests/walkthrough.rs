//! The change-tracking set-up of a cloud DTS, done by a person with the `ferry` command against
//! `ferry serve` on the local stack: create a pay-as-you-go instance, configure its task against
//! the stack's MariaDB, precheck, start, create two consumer groups, change a password, delete
//! a group, reset and delete the instance.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::TestContext;
use mysql_async::prelude::Queryable;
use serde_json::Value;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ferry(api: &str, ctx: &TestContext, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--api")
        .arg(api)
        .args(args)
        .env("SRC_PW", &ctx.env().mysql_capture_password)
        .env("G1_PW", "Reader-One-1")
        .env("G2_PW", "Reader-Two-2")
        .env("G1_NEW", "Reader-One-New-1")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ferry failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_sets_up_change_tracking_with_the_cli() {
    let ctx = TestContext::spawn().await.unwrap();
    ctx.mysql()
        .await
        .unwrap()
        .query_drop("CREATE TABLE orders (id BIGINT PRIMARY KEY, total DECIMAL(10,2))")
        .await
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let env = ctx.env();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", "--addr", &addr])
            .env("FERRY_TABLE", ctx.dynamo_table())
            .env("FERRY_KAFKA_BOOTSTRAP", &env.kafka_bootstrap)
            .env("FERRY_SECRET_PREFIX", format!("ferry-test/{}", ctx.id()))
            .env("AWS_ENDPOINT_URL", &env.aws_endpoint)
            .env("AWS_REGION", &env.aws_region)
            .env("AWS_ACCESS_KEY_ID", "ferry-local")
            .env("AWS_SECRET_ACCESS_KEY", "ferry-local")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let api = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "ferry serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    // A table for people, JSON for scripts.
    let table = ok(&ferry(
        &api,
        &ctx,
        &["instance", "create", "--name", "orders-cdc"],
    ));
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("orders-cdc") && table.contains("pay_as_you_go"),
        "{table}"
    );
    let listed = json(&ferry(&api, &ctx, &["--json", "instance", "list"]));
    let id = listed["instances"][0]["id"].as_str().unwrap().to_owned();

    let port = env.mysql_port.to_string();
    let configured = json(&ferry(
        &api,
        &ctx,
        &[
            "--json",
            "task",
            "configure",
            &id,
            "--host",
            &env.mysql_host,
            "--port",
            &port,
            "--user",
            &env.mysql_capture_user,
            "--password-env",
            "SRC_PW",
            "--database",
            ctx.mysql_database(),
        ],
    ));
    assert_eq!(configured["state"], "configured");

    let precheck = ok(&ferry(&api, &ctx, &["task", "precheck", &id]));
    assert!(
        precheck.contains("source.binlog_format") && precheck.contains("precheck passed"),
        "{precheck}"
    );
    let started = json(&ferry(&api, &ctx, &["--json", "task", "start", &id]));
    assert_eq!(started["task"]["state"], "starting");

    let g1 = json(&ferry(
        &api,
        &ctx,
        &[
            "--json",
            "group",
            "create",
            &id,
            "--name",
            "billing",
            "--username",
            "billing",
            "--password-env",
            "G1_PW",
        ],
    ));
    let g2 = json(&ferry(
        &api,
        &ctx,
        &[
            "--json",
            "group",
            "create",
            &id,
            "--name",
            "search",
            "--username",
            "search",
            "--password-env",
            "G2_PW",
        ],
    ));
    let groups = ok(&ferry(&api, &ctx, &["group", "list", &id]));
    assert!(
        groups.contains("billing") && groups.contains("search"),
        "{groups}"
    );

    let g1_id = g1["id"].as_str().unwrap();
    ok(&ferry(
        &api,
        &ctx,
        &[
            "group",
            "passwd",
            &id,
            g1_id,
            "--old-password-env",
            "G1_PW",
            "--new-password-env",
            "G1_NEW",
        ],
    ));
    let wrong = ferry(
        &api,
        &ctx,
        &[
            "group",
            "passwd",
            &id,
            g1_id,
            "--old-password-env",
            "G1_PW",
            "--new-password-env",
            "G1_NEW",
        ],
    );
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("wrong_password") && err.contains("hint:"),
        "{err}"
    );

    ok(&ferry(
        &api,
        &ctx,
        &["group", "delete", &id, g2["id"].as_str().unwrap()],
    ));
    let groups = json(&ferry(&api, &ctx, &["--json", "group", "list", &id]));
    assert_eq!(groups["consumer_groups"].as_array().unwrap().len(), 1);

    let reset = json(&ferry(&api, &ctx, &["--json", "instance", "reset", &id]));
    assert_eq!(reset["state"], "not_configured");
    ok(&ferry(&api, &ctx, &["instance", "delete", &id]));
    let gone = ferry(&api, &ctx, &["instance", "show", &id]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404 not_found"));
}

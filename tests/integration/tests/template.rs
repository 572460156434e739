//! `template.yaml` against the code it deploys: every function crate has a resource and every
//! resource a crate; each resource builds its crate's binary, serves exactly its crate's routes,
//! and is given the environment its binary requires; the capture worker's container too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (house rule)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("template.yaml is YAML")
}

/// A CloudFormation tag (`!Ref X`) reads as its argument.
fn untagged(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untagged(&t.value),
        other => other,
    }
}

fn str_of(v: &Value) -> Option<&str> {
    untagged(v).as_str()
}

/// The names of a map's keys.
fn keys(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(|v| untagged(v).as_mapping())
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The function crates: directory → binary name (from each Cargo.toml's `[[bin]]`).
fn function_crates() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(root().join("functions")).unwrap() {
        let dir = entry.unwrap().path();
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let bin = manifest
            .split("[[bin]]")
            .nth(1)
            .and_then(|b| b.lines().find_map(|l| l.trim().strip_prefix("name = ")))
            .map(|n| n.trim_matches('"').to_owned())
            .unwrap_or_else(|| panic!("{} has no [[bin]]", dir.display()));
        let name = dir.file_name().unwrap().to_str().unwrap();
        out.insert(format!("functions/{name}"), bin);
    }
    out
}

struct Function {
    name: String,
    binary: String,
    env: BTreeSet<String>,
    routes: BTreeSet<(String, String)>,
}

/// The `AWS::Serverless::Function` resources by `CodeUri`.
fn functions(t: &Value) -> BTreeMap<String, Function> {
    let global_env = keys(t["Globals"]["Function"]["Environment"].get("Variables"));
    let mut out = BTreeMap::new();
    for (name, r) in t["Resources"].as_mapping().unwrap() {
        if str_of(&r["Type"]) != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap().to_owned();
        let props = &r["Properties"];
        let code = str_of(&props["CodeUri"])
            .unwrap_or_else(|| panic!("{name} has no CodeUri"))
            .to_owned();
        let mut env = global_env.clone();
        env.extend(keys(props["Environment"].get("Variables")));
        let routes = props["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter(|(_, e)| str_of(&e["Type"]) == Some("HttpApi"))
            .map(|(_, e)| {
                let p = untagged(&e["Properties"]);
                (
                    str_of(&p["Method"]).unwrap().to_uppercase(),
                    str_of(&p["Path"]).unwrap().to_owned(),
                )
            })
            .collect();
        let binary = str_of(&r["Metadata"]["BuildProperties"]["Binary"])
            .unwrap_or_else(|| panic!("{name} names no Binary to build"))
            .to_owned();
        let f = Function {
            name,
            binary,
            env,
            routes,
        };
        assert!(
            out.insert(code.clone(), f).is_none(),
            "two resources deploy {code}"
        );
    }
    out
}

#[test]
fn every_function_crate_has_a_resource_and_every_resource_a_crate() {
    let crates = function_crates();
    let deployed = functions(&template());
    let crate_dirs: BTreeSet<&String> = crates.keys().collect();
    let resource_dirs: BTreeSet<&String> = deployed.keys().collect();
    assert_eq!(
        resource_dirs.difference(&crate_dirs).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "resources whose CodeUri has no crate"
    );
    assert_eq!(
        crate_dirs.difference(&resource_dirs).collect::<Vec<_>>(),
        Vec::<&&String>::new(),
        "crates under functions/ without a resource in template.yaml"
    );
    for (dir, f) in &deployed {
        assert_eq!(
            f.binary, crates[dir],
            "{} builds another binary than {dir}'s",
            f.name
        );
    }
}

#[test]
fn each_function_serves_exactly_its_crates_routes() {
    let deployed = functions(&template());
    let by_function = ferry_cli::routes_by_function();
    let http: BTreeSet<&str> = by_function.iter().map(|(d, _)| *d).collect();
    for (dir, f) in &deployed {
        let served: BTreeSet<(String, String)> = by_function
            .iter()
            .find(|(d, _)| d == dir)
            .map(|(_, routes)| {
                routes
                    .iter()
                    .map(|r| (r.method().to_string(), r.path().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            http.contains(dir.as_str()) || f.routes.is_empty(),
            "{} has HTTP events, but {dir} is not an HTTP function (ferry_cli::routes_by_function)",
            f.name
        );
        assert_eq!(
            f.routes, served,
            "{}'s HttpApi events differ from the routes {dir} serves",
            f.name
        );
    }
}

#[test]
fn each_binary_gets_the_environment_it_requires() {
    let t = template();
    let deployed = functions(&t);
    for (dir, f) in &deployed {
        let mut required: BTreeSet<&str> = ferry_api::AppState::DEPLOYMENT_ENV.into();
        if dir == "functions/reconciler" {
            required.extend(ferry_fn_reconciler::ScaleSettings::REQUIRED_ENV);
        }
        let missing: Vec<&&str> = required.iter().filter(|v| !f.env.contains(**v)).collect();
        assert!(missing.is_empty(), "{} lacks {missing:?}", f.name);
    }
    // The capture worker (`ferry worker` in the task definition's container).
    let container =
        &t["Resources"]["CaptureTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let env: BTreeSet<&str> = container["Environment"]
        .as_sequence()
        .expect("the worker container has an Environment")
        .iter()
        .filter_map(|e| str_of(&e["Name"]))
        .collect();
    let mut required: BTreeSet<&str> = ferry_api::AppState::DEPLOYMENT_ENV.into();
    // JSON logs: the alarms' metric filters read them.
    required.insert("FERRY_LOG_FORMAT");
    let missing: Vec<&&str> = required.iter().filter(|v| !env.contains(**v)).collect();
    assert!(missing.is_empty(), "the worker container lacks {missing:?}");
}

#[test]
fn the_consumer_gateway_runs_behind_its_load_balancer_with_a_read_only_role() {
    let t = template();
    let r = &t["Resources"];
    let container = &r["GatewayTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let entry: Vec<&str> = container["EntryPoint"]
        .as_sequence()
        .expect("the gateway container has an EntryPoint")
        .iter()
        .filter_map(str_of)
        .collect();
    assert_eq!(entry, ["/usr/local/bin/ferry", "gateway"]);
    let env: BTreeSet<&str> = container["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| str_of(&e["Name"]))
        .collect();
    let mut required: BTreeSet<&str> = ferry_api::AppState::DEPLOYMENT_ENV.into();
    required.extend([
        "FERRY_GATEWAY_HOST",
        "FERRY_GATEWAY_PORT",
        "FERRY_GATEWAY_ADVERTISED_HOST",
        "FERRY_GATEWAY_METRICS_ADDR",
    ]);
    let missing: Vec<&&str> = required.iter().filter(|v| !env.contains(**v)).collect();
    assert!(
        missing.is_empty(),
        "the gateway container lacks {missing:?}"
    );

    // Least privilege: the running gateway only reads items of the table.
    let statements =
        &r["GatewayTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"];
    let actions: Vec<String> = statements
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    assert_eq!(actions, ["dynamodb:GetItem"]);

    // Every broker port: a listener, its target group, the service's load balancer entry.
    assert_eq!(
        untagged(&r["GatewayLoadBalancer"]["Properties"]["Type"]).as_str(),
        Some("network")
    );
    for n in 1..=3 {
        assert!(
            r.get(format!("GatewayListener{n}")).is_some(),
            "listener {n}"
        );
        assert!(
            r.get(format!("GatewayTargetGroup{n}")).is_some(),
            "target group {n}"
        );
        assert!(r.get(format!("GatewayIngress{n}")).is_some(), "ingress {n}");
    }
    assert_eq!(
        r["GatewayService"]["Properties"]["LoadBalancers"]
            .as_sequence()
            .unwrap()
            .len(),
        3
    );
    // The API tells consumers where to connect.
    assert!(t["Outputs"].get("ConsumerEndpoint").is_some());
    let globals = keys(Some(&t["Globals"]["Function"]["Environment"]["Variables"]));
    assert!(globals.contains("FERRY_CONSUMER_BOOTSTRAP"), "{globals:?}");
    assert!(globals.contains("FERRY_CONSUMER_SECURITY_PROTOCOL"));
}

#[test]
fn the_capture_image_runs_the_worker_as_a_non_root_user() {
    let dockerfile = std::fs::read_to_string(root().join("infra/capture/Dockerfile")).unwrap();
    let stages = dockerfile
        .lines()
        .filter(|l| l.trim_start().to_uppercase().starts_with("FROM "))
        .count();
    assert!(stages >= 2, "a multi-stage build (builder and runtime)");
    let runtime = dockerfile.rsplit_once("\nFROM ").unwrap().1;
    let user = runtime
        .lines()
        .filter_map(|l| l.trim().strip_prefix("USER "))
        .next_back()
        .expect("the runtime stage sets a USER");
    assert!(user != "root" && user != "0", "USER {user}");
    assert!(
        runtime.contains("\"worker\""),
        "the runtime stage runs `ferry worker`"
    );
}

#[test]
fn the_binlog_archive_bucket_is_private_encrypted_expiring_and_reached_only_by_the_workers() {
    let t = template();
    let r = &t["Resources"];
    let bucket = &r["BinlogArchiveBucket"]["Properties"];
    let sse = &bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
        ["SSEAlgorithm"];
    assert!(
        matches!(str_of(sse), Some("AES256" | "aws:kms")),
        "encrypted at rest: {sse:?}"
    );
    let block = &bucket["PublicAccessBlockConfiguration"];
    for switch in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[switch].as_bool(), Some(true), "{switch}");
    }
    let rule = &bucket["LifecycleConfiguration"]["Rules"][0];
    assert_eq!(str_of(&rule["Status"]), Some("Enabled"));
    assert_eq!(str_of(&rule["Prefix"]), Some("archive/"));
    assert!(rule.get("ExpirationInDays").is_some(), "pieces expire");
    // TLS only.
    let policy = &r["BinlogArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(str_of(&policy["Effect"]), Some("Deny"));
    assert_eq!(
        str_of(&policy["Condition"]["Bool"]["aws:SecureTransport"]),
        Some("false")
    );

    // The workers reach the archive's pieces and nothing else of S3; no function does.
    let statements =
        r["CaptureTaskRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
            .as_sequence()
            .unwrap()
            .clone();
    let s3: Vec<&Value> = statements
        .iter()
        .filter(|s| {
            s["Action"]
                .as_sequence()
                .into_iter()
                .flatten()
                .any(|a| a.as_str().is_some_and(|a| a.starts_with("s3:")))
        })
        .collect();
    assert_eq!(s3.len(), 2, "{s3:?}");
    for statement in &s3 {
        let actions: BTreeSet<&str> = statement["Action"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            !actions.iter().any(|a| a.contains('*')),
            "no wildcard actions: {actions:?}"
        );
        if actions.contains("s3:ListBucket") {
            assert_eq!(
                statement["Condition"]["StringLike"]["s3:prefix"][0].as_str(),
                Some("archive/*")
            );
        } else {
            let resource = format!("{:?}", statement["Resource"]);
            assert!(resource.contains("/archive/*"), "{resource}");
        }
    }
    let worker = &r["CaptureTaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let env: BTreeSet<&str> = worker["Environment"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|e| str_of(&e["Name"]))
        .collect();
    assert!(env.contains("FERRY_ARCHIVE_BUCKET"), "{env:?}");
    let globals = keys(Some(&t["Globals"]["Function"]["Environment"]["Variables"]));
    assert!(globals.contains("FERRY_ARCHIVE_BUCKET"), "{globals:?}");
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    assert_eq!(
        text.matches("s3:PutObject").count(),
        1,
        "only the workers' role writes to S3"
    );
}

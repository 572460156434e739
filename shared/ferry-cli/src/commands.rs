//! The API subcommands: one per operation, tables for people, `--json` for scripts.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{Api, cell, table};

#[derive(Debug, Subcommand)]
pub(crate) enum InstanceCmd {
    /// Create an instance.
    Create {
        #[arg(long)]
        name: String,
        /// tracking or sync.
        #[arg(long, default_value = "tracking")]
        mode: String,
        /// small, medium or large.
        #[arg(long, default_value = "small")]
        class: String,
        /// Subscription months; pay-as-you-go when absent.
        #[arg(long)]
        subscription_months: Option<u32>,
        /// Idempotency token: retries with the same token create one instance.
        #[arg(long)]
        client_token: Option<String>,
    },
    /// List instances.
    List {
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Show an instance.
    Show { id: String },
    /// Delete a pay-as-you-go instance and everything it owns.
    Delete { id: String },
    /// Extend a subscription.
    Renew {
        id: String,
        #[arg(long)]
        months: u32,
    },
    /// Stop the task and clear its configuration and progress.
    Reset { id: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TaskCmd {
    /// Configure the task: from a JSON file (the body of PUT …/task, `-` for stdin), or from
    /// flags for a change-tracking source.
    Configure {
        id: String,
        #[arg(long, conflicts_with_all = ["engine", "host", "port", "user", "password_env", "database"])]
        file: Option<String>,
        #[arg(long, default_value = "mariadb")]
        engine: String,
        #[arg(long)]
        host: Option<String>,
        #[arg(long, default_value_t = 3306)]
        port: u16,
        #[arg(long)]
        user: Option<String>,
        /// Name of the environment variable holding the source password (kept out of argv).
        #[arg(long)]
        password_env: Option<String>,
        /// A database (or pattern) to track; repeat for more.
        #[arg(long = "database")]
        database: Vec<String>,
        /// debezium-json, canal-json, maxwell-json or dts-avro.
        #[arg(long)]
        format: Option<String>,
        /// `compatible` (as the format's tool writes; the default where the format has it) or
        /// `readable` (Ferry's earlier mapping).
        #[arg(long)]
        values: Option<String>,
    },
    /// Show the task: state, configuration (no passwords), checkpoint, topic.
    Show { id: String },
    /// The task's state and a sync task's full sync per table; --watch shows progress bars
    /// until the full sync is done or the task stops.
    Status {
        id: String,
        #[arg(long)]
        watch: bool,
        #[arg(long, default_value_t = 2)]
        interval: u64,
    },
    /// Run the prechecks.
    Precheck { id: String },
    /// List what the task's configured source holds: databases, tables (estimated rows,
    /// primary key) and columns, for choosing objects.
    SourceObjects { id: String },
    /// Compare a sync task's target with its source (counts and checksums per chunk) and print
    /// the differences; --no-wait only asks.
    Verify {
        id: String,
        #[arg(long)]
        no_wait: bool,
    },
    /// Copy tables' existing rows into a change-tracking task's topic while its changes keep
    /// flowing (each --table `database.table`); without --table, show the latest backfill;
    /// --cancel cancels it.
    Backfill {
        id: String,
        #[arg(long = "table", conflicts_with = "cancel")]
        tables: Vec<String>,
        #[arg(long)]
        cancel: bool,
    },
    /// Start (runs the prechecks first). A change-tracking task's first start (or its first
    /// after a reset) may begin at a chosen point instead of now: one of --from-position,
    /// --from-gtid, --from-time.
    Start {
        id: String,
        /// A binlog file and offset, `mariadb-bin.000003:1234`.
        #[arg(long, conflicts_with_all = ["from_gtid", "from_time"])]
        from_position: Option<String>,
        /// A MariaDB GTID position (`0-1-100`) or a MySQL GTID set (`uuid:1-100`): the first
        /// transaction it does not contain.
        #[arg(long, conflicts_with = "from_time")]
        from_gtid: Option<String>,
        /// An RFC 3339 time: the first transaction committed at or after it.
        #[arg(long)]
        from_time: Option<String>,
    },
    /// Stop.
    Stop { id: String },
    /// Read the task's topic from the beginning, as any Kafka consumer would, and print its
    /// records (at most --count, waiting up to --wait seconds for them).
    Tail {
        id: String,
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Replace the object selection (JSON file, `-` for stdin).
    Objects {
        id: String,
        #[arg(long)]
        file: String,
    },
    /// Show RPS, BPS, source delay and the last hour per minute; --watch refreshes every
    /// --interval seconds until interrupted.
    Metrics {
        id: String,
        #[arg(long)]
        watch: bool,
        #[arg(long, default_value_t = 5)]
        interval: u64,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct ChangesArgs {
    id: String,
    /// Start of the time range (RFC 3339, source time); default: an hour before --to.
    #[arg(long)]
    from: Option<String>,
    /// End of the time range (RFC 3339); default: now.
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    database: Option<String>,
    #[arg(long)]
    table: Option<String>,
    /// insert, update, delete, read (rows a backfill copied) or ddl (comma-separated for several).
    #[arg(long)]
    operation: Option<String>,
    /// The primary key: a JSON object (`{"id":7}`) or one value for a one-column key.
    #[arg(long)]
    key: Option<String>,
    /// Changes per page.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Follow the pages to the end of the range instead of stopping after the first.
    #[arg(long)]
    all: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCmd {
    /// Create a consumer group; the password is read from an environment variable.
    Create {
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password_env: String,
    },
    /// List the consumer groups of an instance.
    List { id: String },
    /// Change a group's password (both read from environment variables).
    Passwd {
        id: String,
        gid: String,
        #[arg(long)]
        old_password_env: String,
        #[arg(long)]
        new_password_env: String,
    },
    /// Delete a consumer group and its committed offsets.
    Delete { id: String, gid: String },
}

fn env(name: &str) -> Result<String> {
    std::env::var(name).with_context(|| format!("environment variable {name} is not set"))
}

fn read_json(file: &str) -> Result<Value> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))
}

fn print(json_out: bool, v: &Value, human: impl FnOnce(&Value)) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        human(v);
    }
}

fn instance_rows(list: &[Value]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|i| {
            vec![
                cell(&i["id"]),
                cell(&i["name"]),
                cell(&i["mode"]),
                cell(&i["class"]),
                cell(&i["billing"]["type"]),
                cell(&i["status"]),
                i["task"]["state"].as_str().unwrap_or("").to_owned(),
                cell(&i["billing"]["expires_at"]),
            ]
        })
        .collect();
    table(
        &[
            "id", "name", "mode", "class", "billing", "status", "task", "expires",
        ],
        &rows,
    );
}

fn task_human(t: &Value) {
    println!("task      {}", cell(&t["id"]));
    println!("instance  {}", cell(&t["instance_id"]));
    println!("state     {}", cell(&t["state"]));
    if let Some(e) = t.get("error") {
        println!(
            "error     {}: {}\n          fix: {}",
            cell(&e["code"]),
            cell(&e["message"]),
            cell(&e["hint"])
        );
    }
    if let Some(start) = t.get("start") {
        println!(
            "start     {} (at {})",
            start["point"],
            cell(&start["position"])
        );
    }
    if let Some(c) = t.get("config") {
        let s = &c["source"];
        println!(
            "source    {} {}:{} as {}",
            cell(&s["engine"]),
            cell(&s["host"]),
            cell(&s["port"]),
            cell(&s["username"])
        );
        if let Some(tg) = c.get("target") {
            println!(
                "target    {} {}:{} as {}",
                cell(&tg["engine"]),
                cell(&tg["host"]),
                cell(&tg["port"]),
                cell(&tg["username"])
            );
        }
        let dbs: Vec<String> = c["objects"]["databases"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| cell(&d["name"]))
            .collect();
        println!("objects   {}", dbs.join(", "));
        println!(
            "format    {} ({} values)",
            cell(&c["delivery"]["format"]),
            c["delivery"]["values"].as_str().unwrap_or("readable")
        );
    }
    println!("config    v{}", cell(&t["config_version"]));
    if let Some(a) = t.get("objects_applied") {
        let pending = a["config_version"] != t["config_version"];
        println!(
            "objects   v{} in effect from {}{}",
            cell(&a["config_version"]),
            cell(&a["position"]),
            if pending {
                " (a newer selection is switched at the next transaction boundary)"
            } else {
                ""
            }
        );
    }
    if let Some(d) = t.get("delivery") {
        println!(
            "topic     {} at {}",
            cell(&d["topic"]),
            cell(&d["bootstrap_servers"])
        );
        if let Some(c) = d.get("consumers").filter(|c| !c.is_null()) {
            println!(
                "consumers bootstrap.servers={} security.protocol={} sasl.username={} group.id={} (ferry group list shows each group's)",
                cell(&c["bootstrap_servers"]),
                cell(&c["security_protocol"]),
                cell(&c["sasl_username"]),
                cell(&c["group_id"])
            );
        }
    }
    println!("checkpoint {}", cell(&t["checkpoint"]));
}

fn source_objects_human(v: &Value) {
    let mut rows = Vec::new();
    for d in v["databases"].as_array().into_iter().flatten() {
        for t in d["tables"].as_array().into_iter().flatten() {
            let key: Vec<&str> = t["primary_key"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let columns: Vec<String> = t["columns"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{} {}", cell(&c["name"]), cell(&c["type"])))
                .collect();
            rows.push(vec![
                format!("{}.{}", cell(&d["name"]), cell(&t["name"])),
                cell(&t["estimated_rows"]),
                if key.is_empty() {
                    "(none)".into()
                } else {
                    key.join(",")
                },
                columns.join(", "),
            ]);
        }
    }
    table(&["table", "rows (est.)", "primary key", "columns"], &rows);
}

fn precheck_human(p: &Value) {
    let rows: Vec<Vec<String>> = p["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            vec![
                cell(&i["status"]),
                cell(&i["id"]),
                cell(&i["message"]),
                i["hint"].as_str().unwrap_or("").to_owned(),
            ]
        })
        .collect();
    table(&["status", "check", "message", "hint"], &rows);
    println!(
        "precheck {}",
        if p["passed"] == true {
            "passed"
        } else {
            "FAILED"
        }
    );
}

fn backfill_human(b: &Value) {
    println!("backfill  {} {}", cell(&b["id"]), cell(&b["state"]));
    if let Some(e) = b.get("error") {
        println!("error     {}", cell(e));
    }
    let rows: Vec<Vec<String>> = b["progress"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                format!(
                    "{}.{}",
                    cell(&p["table"]["database"]),
                    cell(&p["table"]["table"])
                ),
                cell(&p["state"]),
                format!("{}/{}", cell(&p["chunks_done"]), cell(&p["chunks_total"])),
                cell(&p["rows_done"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        table(&["table", "state", "chunks", "rows"], &rows);
    }
}

fn group_rows(list: &[Value]) {
    // Only the list reads progress from the broker.
    if !list
        .iter()
        .any(|g| g.get("progress").is_some() || g.get("progress_error").is_some())
    {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|g| {
                vec![
                    cell(&g["id"]),
                    cell(&g["name"]),
                    cell(&g["username"]),
                    cell(&g["created_at"]),
                ]
            })
            .collect();
        table(&["id", "name", "username", "created"], &rows);
        connection_lines(list);
        return;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|g| {
            let p = &g["progress"];
            let progress = |field: &str| match g.get("progress_error") {
                Some(_) => "?".to_owned(),
                None => cell(&p[field]),
            };
            let committed: Vec<String> = p["partitions"]
                .as_array()
                .map(|ps| ps.iter().map(|x| cell(&x["committed_offset"])).collect())
                .unwrap_or_default();
            vec![
                cell(&g["id"]),
                cell(&g["name"]),
                cell(&g["username"]),
                if committed.is_empty() {
                    "-".into()
                } else {
                    committed.join(",")
                },
                progress("consumption_checkpoint"),
                progress("delay_seconds"),
                progress("unconsumed"),
            ]
        })
        .collect();
    table(
        &[
            "id",
            "name",
            "username",
            "committed",
            "consumed until",
            "delay s",
            "unconsumed",
        ],
        &rows,
    );
    connection_lines(list);
}

/// The client settings of each group, ready to copy (when a consumer gateway is configured).
fn connection_lines(list: &[Value]) {
    let Some(first) = list
        .iter()
        .find_map(|g| g.get("connection").filter(|c| !c.is_null()))
    else {
        return;
    };
    let mechanisms: Vec<String> = first["sasl_mechanisms"]
        .as_array()
        .map(|m| m.iter().map(cell).collect())
        .unwrap_or_default();
    println!(
        "\nconsumers connect with bootstrap.servers={} security.protocol={} sasl.mechanism={}",
        cell(&first["bootstrap_servers"]),
        cell(&first["security_protocol"]),
        mechanisms.join("|")
    );
    for g in list {
        let c = &g["connection"];
        println!(
            "  {:<16} sasl.username={} group.id={}",
            cell(&g["name"]),
            cell(&c["sasl_username"]),
            cell(&c["group_id"])
        );
    }
}

fn metrics_human(m: &Value) {
    let rate = |v: &Value| v.as_f64().map_or("-".into(), |x| format!("{x:.1}"));
    println!("state         {}", cell(&m["state"]));
    println!("rps           {}", rate(&m["rps"]));
    println!("bps           {}", rate(&m["bps"]));
    println!("source delay  {} s", rate(&m["source_delay_seconds"]));
    if let Some(d) = m.get("target_delay_seconds") {
        println!("target delay  {} s", rate(d));
    }
    println!("reported at   {}", cell(&m["reported_at"]));
    for side in ["source", "target"] {
        let c = &m["connections"][side];
        match c["error"].as_str() {
            Some(e) => println!("{side:<13} {}: {e}", cell(&c["state"])),
            None => println!("{side:<13} {}", cell(&c["state"])),
        }
    }
    let rows: Vec<Vec<String>> = m["history"]
        .as_array()
        .map(|h| {
            h.iter()
                .rev()
                .take(10)
                .map(|p| {
                    vec![
                        cell(&p["minute"]),
                        cell(&p["rows"]),
                        rate(&p["rps"]),
                        rate(&p["bps"]),
                        rate(&p["max_delay_seconds"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !rows.is_empty() {
        println!();
        table(&["minute", "rows", "rps", "bps", "max delay s"], &rows);
    }
}

pub(crate) async fn instance(api: &Api, json_out: bool, cmd: InstanceCmd) -> Result<()> {
    match cmd {
        InstanceCmd::Create {
            name,
            mode,
            class,
            subscription_months,
            client_token,
        } => {
            let billing = match subscription_months {
                Some(m) => json!({"type": "subscription", "months": m}),
                None => json!({"type": "pay_as_you_go"}),
            };
            let mut body = json!({"name": name, "mode": mode, "class": class, "billing": billing});
            if let Some(t) = client_token {
                body["client_token"] = json!(t);
            }
            let v = api.call(Method::POST, "/v1/instances", Some(body)).await?;
            print(json_out, &v, |v| instance_rows(std::slice::from_ref(v)));
        }
        InstanceCmd::List {
            mode,
            status,
            limit,
            page_token,
        } => {
            let mut q = Vec::new();
            for (k, v) in [
                ("mode", mode),
                ("status", status),
                ("limit", limit.map(|l| l.to_string())),
                ("page_token", page_token),
            ] {
                if let Some(v) = v {
                    q.push(format!("{k}={v}"));
                }
            }
            let path = if q.is_empty() {
                "/v1/instances".to_owned()
            } else {
                format!("/v1/instances?{}", q.join("&"))
            };
            let v = api.call(Method::GET, &path, None).await?;
            print(json_out, &v, |v| {
                instance_rows(v["instances"].as_array().map_or(&[], Vec::as_slice));
                if let Some(t) = v["next_page_token"].as_str() {
                    println!("more: --page-token {t}");
                }
            });
        }
        InstanceCmd::Show { id } => {
            let v = api
                .call(Method::GET, &format!("/v1/instances/{id}"), None)
                .await?;
            print(json_out, &v, |v| instance_rows(std::slice::from_ref(v)));
        }
        InstanceCmd::Delete { id } => {
            api.call(Method::DELETE, &format!("/v1/instances/{id}"), None)
                .await?;
            print(json_out, &json!({"deleted": id}), |_| {
                println!("deleted {id}")
            });
        }
        InstanceCmd::Renew { id, months } => {
            let v = api
                .call(
                    Method::POST,
                    &format!("/v1/instances/{id}/renew"),
                    Some(json!({"months": months})),
                )
                .await?;
            print(json_out, &v, |v| instance_rows(std::slice::from_ref(v)));
        }
        InstanceCmd::Reset { id } => {
            let v = api
                .call(Method::POST, &format!("/v1/instances/{id}/reset"), None)
                .await?;
            print(json_out, &v, task_human);
        }
    }
    Ok(())
}

pub(crate) async fn task(api: &Api, json_out: bool, cmd: TaskCmd) -> Result<()> {
    match cmd {
        TaskCmd::Configure {
            id,
            file,
            engine,
            host,
            port,
            user,
            password_env,
            database,
            format,
            values,
        } => {
            let body = match file {
                Some(f) => read_json(&f)?,
                None => {
                    let (Some(host), Some(user)) = (host, user) else {
                        bail!(
                            "give --file, or at least --host and --user (and --password-env, --database)"
                        );
                    };
                    if database.is_empty() {
                        bail!("give at least one --database (a name or a pattern like `shop_*`)");
                    }
                    let mut source =
                        json!({"engine": engine, "host": host, "port": port, "username": user});
                    if let Some(var) = password_env {
                        source["password"] = json!(env(&var)?);
                    }
                    let dbs: Vec<Value> = database.iter().map(|d| json!({"name": d})).collect();
                    let mut body = json!({"source": source, "objects": {"databases": dbs}});
                    if let Some(f) = format {
                        body["delivery"]["format"] = json!(f);
                    }
                    if let Some(v) = values {
                        body["delivery"]["values"] = json!(v);
                    }
                    body
                }
            };
            let v = api
                .call(Method::PUT, &format!("/v1/instances/{id}/task"), Some(body))
                .await?;
            print(json_out, &v, task_human);
        }
        TaskCmd::Show { id } => {
            let v = api
                .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
                .await?;
            print(json_out, &v, task_human);
        }
        TaskCmd::Status {
            id,
            watch,
            interval,
        } => crate::status::status(api, json_out, &id, watch, interval).await?,
        TaskCmd::Verify { id, no_wait } => {
            crate::status::verify(api, json_out, &id, !no_wait).await?;
        }
        TaskCmd::Backfill { id, tables, cancel } => {
            let path = format!("/v1/instances/{id}/task/backfill");
            let v = if cancel {
                api.call(Method::DELETE, &path, None).await?
            } else if tables.is_empty() {
                api.call(Method::GET, &path, None).await?
            } else {
                let mut named = Vec::with_capacity(tables.len());
                for t in &tables {
                    let Some((database, table)) = t.split_once('.') else {
                        anyhow::bail!("--table {t}: give database.table");
                    };
                    named.push(serde_json::json!({"database": database, "table": table}));
                }
                api.call(
                    Method::POST,
                    &path,
                    Some(serde_json::json!({ "tables": named })),
                )
                .await?
            };
            print(json_out, &v, backfill_human);
        }
        TaskCmd::Precheck { id } => {
            let v = api
                .call(
                    Method::POST,
                    &format!("/v1/instances/{id}/task/precheck"),
                    None,
                )
                .await?;
            print(json_out, &v, precheck_human);
        }
        TaskCmd::SourceObjects { id } => {
            let v = api
                .call(
                    Method::POST,
                    &format!("/v1/instances/{id}/task/source-objects"),
                    Some(serde_json::json!({})),
                )
                .await?;
            print(json_out, &v, source_objects_human);
        }
        TaskCmd::Start {
            id,
            from_position,
            from_gtid,
            from_time,
        } => {
            // The API checks the point's shape and the source; the CLI only names it.
            let point = match (from_position, from_gtid, from_time) {
                (Some(p), _, _) => Some(serde_json::json!({"position": p})),
                (_, Some(g), _) => Some(serde_json::json!({"gtid": g})),
                (_, _, Some(t)) => Some(serde_json::json!({"time": t})),
                _ => None,
            };
            let v = api
                .call(
                    Method::POST,
                    &format!("/v1/instances/{id}/task/start"),
                    point.map(|p| serde_json::json!({"start": p})),
                )
                .await?;
            print(json_out, &v, |v| {
                precheck_human(&v["precheck"]);
                task_human(&v["task"]);
            });
        }
        TaskCmd::Stop { id } => {
            let v = api
                .call(Method::POST, &format!("/v1/instances/{id}/task/stop"), None)
                .await?;
            print(json_out, &v, task_human);
        }
        TaskCmd::Tail { id, count, wait } => {
            let task = api
                .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
                .await?;
            let (Some(topic), Some(bootstrap)) = (
                task["delivery"]["topic"].as_str(),
                task["delivery"]["bootstrap_servers"].as_str(),
            ) else {
                bail!("instance {id} has no topic: only change-tracking tasks do");
            };
            tail(topic, bootstrap, count, wait, json_out).await?;
        }
        TaskCmd::Metrics {
            id,
            watch,
            interval,
        } => loop {
            let v = api
                .call(
                    Method::GET,
                    &format!("/v1/instances/{id}/task/metrics"),
                    None,
                )
                .await?;
            print(json_out, &v, metrics_human);
            if !watch {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(interval.max(1))).await;
            if !json_out {
                println!();
            }
        },
        TaskCmd::Objects { id, file } => {
            let v = api
                .call(
                    Method::PUT,
                    &format!("/v1/instances/{id}/task/objects"),
                    Some(read_json(&file)?),
                )
                .await?;
            print(json_out, &v, task_human);
        }
    }
    Ok(())
}

pub(crate) async fn group(api: &Api, json_out: bool, cmd: GroupCmd) -> Result<()> {
    match cmd {
        GroupCmd::Create {
            id,
            name,
            username,
            password_env,
        } => {
            let body = json!({"name": name, "username": username, "password": env(&password_env)?});
            let v = api
                .call(
                    Method::POST,
                    &format!("/v1/instances/{id}/consumer-groups"),
                    Some(body),
                )
                .await?;
            print(json_out, &v, |v| group_rows(std::slice::from_ref(v)));
        }
        GroupCmd::List { id } => {
            let v = api
                .call(
                    Method::GET,
                    &format!("/v1/instances/{id}/consumer-groups"),
                    None,
                )
                .await?;
            print(json_out, &v, |v| {
                group_rows(v["consumer_groups"].as_array().map_or(&[], Vec::as_slice))
            });
        }
        GroupCmd::Passwd {
            id,
            gid,
            old_password_env,
            new_password_env,
        } => {
            let body = json!({"old_password": env(&old_password_env)?, "new_password": env(&new_password_env)?});
            let v = api
                .call(
                    Method::PATCH,
                    &format!("/v1/instances/{id}/consumer-groups/{gid}"),
                    Some(body),
                )
                .await?;
            print(json_out, &v, |v| group_rows(std::slice::from_ref(v)));
        }
        GroupCmd::Delete { id, gid } => {
            api.call(
                Method::DELETE,
                &format!("/v1/instances/{id}/consumer-groups/{gid}"),
                None,
            )
            .await?;
            print(json_out, &json!({"deleted": gid}), |_| {
                println!("deleted {gid}")
            });
        }
    }
    Ok(())
}

pub(crate) async fn changes(api: &Api, json_out: bool, args: ChangesArgs) -> Result<()> {
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    for (name, value) in [
        ("from", &args.from),
        ("to", &args.to),
        ("database", &args.database),
        ("table", &args.table),
        ("operation", &args.operation),
        ("key", &args.key),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let mut token: Option<String> = None;
    loop {
        let mut q = query.clone();
        if let Some(t) = &token {
            q.push(("page_token", t.clone()));
        }
        let qs = q
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let page = api
            .call(
                Method::GET,
                &format!("/v1/instances/{}/changes?{qs}", args.id),
                None,
            )
            .await?;
        let changes = page["changes"].as_array().cloned().unwrap_or_default();
        if json_out {
            for c in &changes {
                println!("{c}");
            }
        } else {
            for c in &changes {
                println!(
                    "{} {} {:<6} {}.{} key={} before={} after={}{}",
                    cell(&c["timestamp"]),
                    cell(&c["position"]),
                    cell(&c["operation"]),
                    cell(&c["database"]),
                    cell(&c["table"]),
                    cell(&c["key"]),
                    cell(&c["before"]),
                    cell(&c["after"]),
                    c["statement"]
                        .as_str()
                        .map(|s| format!(" {s}"))
                        .unwrap_or_default()
                );
            }
        }
        token = page["next_page_token"].as_str().map(str::to_owned);
        if !args.all || token.is_none() {
            if let (false, Some(_)) = (json_out, &token) {
                eprintln!("more changes: run again with --all");
            }
            return Ok(());
        }
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn urlencode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn tail(topic: &str, bootstrap: &str, count: usize, wait: u64, json_out: bool) -> Result<()> {
    use rdkafka::Message;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let group = format!("ferry-cli-tail-{}", std::process::id());
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    c.subscribe(&[topic])?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    let mut seen = 0;
    while seen < count {
        let Ok(m) = tokio::time::timeout_at(deadline, c.recv()).await else {
            break;
        };
        let m = m?;
        seen += 1;
        let Some(bytes) = m.payload() else {
            // Debezium's tombstone after a delete: the key, no value.
            if !json_out {
                println!("offset {:<4} tombstone", m.offset());
            }
            continue;
        };
        let record: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        if json_out {
            // The record as written (JsonConverter's envelope included), as a consumer reads it.
            println!("{record}");
        } else {
            // The payload with Connect-encoded values read by their schema, as `/changes` shows
            // them (decimal digits, dates and times as text).
            let payload = ferry_kafka::view::debezium_readable(record);
            let src = &payload["source"];
            println!(
                "offset {:<4} {} {}.{:<10} before={} after={}",
                m.offset(),
                payload["op"].as_str().unwrap_or("?"),
                cell(&src["db"]),
                cell(&src["table"]),
                payload["before"],
                payload["after"]
            );
        }
    }
    if seen < count {
        eprintln!("{seen} of {count} records arrived within {wait}s");
    }
    Ok(())
}

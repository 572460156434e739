//! `ferry`: the command line of Ferry.
//!
//! Every API operation is a subcommand against `--api` (the local server by default), printing
//! tables for people and raw JSON with `--json`. `ferry serve` runs every function's router on
//! one local port; `ferry doctor` checks that the services Ferry needs answer.

mod api;
mod commands;
mod console;
mod doctor;
mod gateway;
mod serve;
mod sigv4;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Ferry: MySQL/MariaDB change tracking and synchronization"
)]
struct Cli {
    /// The Ferry API.
    #[arg(
        long,
        global = true,
        env = "FERRY_API",
        default_value = "http://127.0.0.1:8600"
    )]
    api: String,
    /// A deployed Ferry API (its API Gateway URL): requests are signed with AWS Signature
    /// Version 4 from the operator's AWS credentials (replaces --api).
    #[arg(long, global = true, env = "FERRY_ENDPOINT")]
    endpoint: Option<String>,
    /// The AWS profile whose credentials sign requests to --endpoint.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    profile: Option<String>,
    /// Print the API's JSON answers instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Instances: create, list, show, delete, renew, reset.
    #[command(subcommand)]
    Instance(commands::InstanceCmd),
    /// The task of an instance: configure, show, precheck, start, stop, objects.
    #[command(subcommand)]
    Task(commands::TaskCmd),
    /// Consumer groups of a change-tracking instance.
    #[command(subcommand)]
    Group(commands::GroupCmd),
    /// Tracked data changes of an instance's task, read back from its topic: by time range,
    /// object, operation and primary key.
    Changes(commands::ChangesArgs),
    /// Serve the whole API locally (every function's router on one port), and the web console
    /// at /console/.
    Serve(serve::Args),
    /// Serve the web console on loopback for a deployed Ferry (--endpoint): its API calls are
    /// forwarded signed with the operator's AWS credentials; the browser never holds them.
    Console(console::Args),
    /// Run the consumer gateway: consumers sign in with their group's credentials over the
    /// Kafka protocol and reach only their own task's topic and group (docs/gateway.md).
    Gateway(gateway::Args),
    /// Run a capture worker: claims running tasks through leases and streams their binlog to
    /// Kafka until interrupted (SIGINT/SIGTERM), then checkpoints and releases its leases.
    Worker(WorkerArgs),
    /// Run the sweeper once, as its EventBridge schedule does in AWS: expire and release
    /// subscription instances due at --time (RFC 3339; now when absent).
    Sweep {
        #[arg(long)]
        time: Option<String>,
    },
    /// Check that the source database, PostgreSQL, Kafka and the AWS endpoint answer, and that
    /// the source's binlog is set up for capture.
    Doctor(doctor::Args),
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// Where to serve Prometheus metrics (`GET /metrics`); loopback by default.
    #[arg(long, env = "FERRY_METRICS_ADDR", default_value = "127.0.0.1:9464")]
    metrics_addr: std::net::SocketAddr,
}

/// Text logs on stderr (`RUST_LOG`, info by default), for `serve` and `console`.
fn init_text_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// Logs of a long-running service (worker, gateway): on ECS, one JSON object per line
/// (`FERRY_LOG_FORMAT=json`), which CloudWatch metric filters read (template.yaml: the task
/// delay and failed task alarms); text otherwise.
fn init_service_logs() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if std::env::var("FERRY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let api = match &cli.endpoint {
        Some(endpoint) => {
            match sigv4::Signer::from_environment(cli.profile.as_deref(), endpoint).await {
                Ok(signer) => api::Api::new(endpoint, Some(signer)),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return ExitCode::FAILURE;
                }
            }
        }
        None => api::Api::new(&cli.api, None),
    };
    let result = match cli.command {
        Command::Console(args) => {
            init_text_logs();
            console::run(args, cli.endpoint.as_deref(), cli.profile.as_deref()).await
        }
        Command::Doctor(args) => return doctor::run(args).await,
        Command::Serve(args) => {
            init_text_logs();
            serve::run(args).await
        }
        Command::Gateway(args) => {
            init_service_logs();
            gateway::run(args).await
        }
        Command::Sweep { time } => sweep(time).await,
        Command::Worker(args) => {
            init_service_logs();
            worker(args).await
        }
        Command::Instance(c) => commands::instance(&api, cli.json, c).await,
        Command::Task(c) => commands::task(&api, cli.json, c).await,
        Command::Group(c) => commands::group(&api, cli.json, c).await,
        Command::Changes(args) => commands::changes(&api, cli.json, args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn sweep(time: Option<String>) -> anyhow::Result<()> {
    let state = ferry_api::AppState::from_env().await?;
    let time = time.unwrap_or_else(|| chrono::Utc::now().to_rfc3339());
    let report = ferry_fn_sweeper::handle(&state, &serde_json::json!({ "time": time }))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let state = ferry_api::AppState::from_env().await?;
    let id = ferry_domain::id::WorkerId::generate();
    let settings =
        ferry_worker::WorkerSettings::from_env(id.clone()).map_err(|e| anyhow::anyhow!(e))?;
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "serving metrics on {} (set FERRY_METRICS_ADDR to a free address)",
                args.metrics_addr
            )
        })?;
    let metrics = settings.metrics.router();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, metrics).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    eprintln!(
        "ferry worker {id}, metrics on http://{}/metrics",
        args.metrics_addr
    );
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
        let _ = tx.send(true);
    });
    ferry_worker::Worker::new(state, settings).run(rx).await;
    Ok(())
}

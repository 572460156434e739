//! `ferry doctor`: one line per service, with what to fix when something is wrong.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_domain::gtid::GtidSet;
use ferry_domain::position::Position;
use mysql_async::prelude::Queryable;
use rdkafka::consumer::{BaseConsumer, Consumer};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Source MySQL/MariaDB host.
    #[arg(long, env = "FERRY_MYSQL_HOST", default_value = "127.0.0.1")]
    mysql_host: String,
    /// Source port.
    #[arg(long, env = "FERRY_MYSQL_PORT", default_value_t = 3306)]
    mysql_port: u16,
    /// The user capture runs as (needs REPLICATION SLAVE, REPLICATION CLIENT, SELECT).
    #[arg(long, env = "FERRY_MYSQL_CAPTURE_USER")]
    mysql_user: String,
    /// Its password.
    #[arg(long, env = "FERRY_MYSQL_CAPTURE_PASSWORD", hide_env_values = true)]
    mysql_password: String,
    /// A PostgreSQL URL (a sync target), checked when given.
    #[arg(long, env = "FERRY_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Kafka bootstrap servers.
    #[arg(long, env = "FERRY_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: String,
    /// A custom AWS endpoint (a local one); the SDK's default chain when absent.
    #[arg(long, env = "FERRY_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
}

#[derive(Debug)]
enum Outcome {
    Ok(String),
    Failed { problem: String, hint: String },
}

struct Check {
    name: &'static str,
    outcome: Outcome,
}

pub(crate) async fn run(args: Args) -> ExitCode {
    let checks = vec![
        Check {
            name: "source",
            outcome: source(&args).await,
        },
        Check {
            name: "postgresql",
            outcome: postgres(&args).await,
        },
        Check {
            name: "kafka",
            outcome: kafka(&args).await,
        },
        Check {
            name: "aws",
            outcome: aws(&args).await,
        },
    ];
    let mut failed = false;
    for c in &checks {
        match &c.outcome {
            Outcome::Ok(detail) => println!("ok    {:<11} {detail}", c.name),
            Outcome::Failed { problem, hint } => {
                failed = true;
                println!(
                    "FAIL  {:<11} {problem}\n      {:<11} fix: {hint}",
                    c.name, ""
                );
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn failed(problem: impl Into<String>, hint: impl Into<String>) -> Outcome {
    Outcome::Failed {
        problem: problem.into(),
        hint: hint.into(),
    }
}

fn chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

async fn source(args: &Args) -> Outcome {
    match source_inner(args).await {
        Ok(o) => o,
        Err(e) => failed(
            format!(
                "cannot reach {}:{} as {}: {}",
                args.mysql_host,
                args.mysql_port,
                args.mysql_user,
                chain(&e)
            ),
            "check host, port, user and password; the user needs REPLICATION SLAVE, REPLICATION CLIENT and SELECT",
        ),
    }
}

async fn source_inner(args: &Args) -> Result<Outcome> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(args.mysql_host.clone())
        .tcp_port(args.mysql_port)
        .user(Some(args.mysql_user.clone()))
        .pass(Some(args.mysql_password.clone()))
        .prefer_socket(false);
    let mut conn = tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(opts))
        .await
        .context("no answer within 10s")??;
    let (version, log_bin, format, image): (String, String, String, String) = conn
        .query_first("SELECT @@version, @@log_bin, @@binlog_format, @@binlog_row_image")
        .await?
        .context("no answer to SELECT @@version")?;
    let is_mariadb = version.to_ascii_lowercase().contains("mariadb");
    if log_bin != "1" && !log_bin.eq_ignore_ascii_case("on") {
        return Ok(failed(
            format!("{version}: the binary log is off"),
            "start the server with --log-bin (on RDS/Aurora: enable automated backups)",
        ));
    }
    if !format.eq_ignore_ascii_case("ROW") {
        return Ok(failed(
            format!("{version}: binlog_format is {format}"),
            "SET GLOBAL binlog_format = 'ROW' (and in the server's configuration)",
        ));
    }
    if !image.eq_ignore_ascii_case("FULL") {
        return Ok(failed(
            format!("{version}: binlog_row_image is {image}"),
            "SET GLOBAL binlog_row_image = 'FULL' (and in the server's configuration)",
        ));
    }
    // MySQL 8.4 dropped SHOW MASTER STATUS for SHOW BINARY LOG STATUS; MariaDB has only the first.
    let row: Option<mysql_async::Row> = match conn.query_first("SHOW MASTER STATUS").await {
        Ok(row) => row,
        Err(_) => conn.query_first("SHOW BINARY LOG STATUS").await?,
    };
    let status =
        row.and_then(|r| Some((r.get::<String, _>("File")?, r.get::<u64, _>("Position")?)));
    let Some((file, offset)) = status else {
        return Ok(failed(
            format!("{version}: the server shows no binlog position"),
            "grant REPLICATION CLIENT (BINLOG MONITOR on MariaDB) to the capture user",
        ));
    };
    let gtid_sql = if is_mariadb {
        "SELECT @@gtid_binlog_pos"
    } else {
        "SELECT @@gtid_executed"
    };
    let gtid_text: Option<String> = conn.query_first(gtid_sql).await.unwrap_or(None);
    let gtid = match gtid_text.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(t) => Some(
            t.parse::<GtidSet>()
                .with_context(|| format!("the server's GTID set `{t}`"))?,
        ),
    };
    let position = Position::new(file.parse()?, offset, gtid);
    conn.disconnect().await?;
    Ok(Outcome::Ok(format!(
        "{version}, ROW/FULL, binlog at {position}"
    )))
}

async fn postgres(args: &Args) -> Outcome {
    let Some(url) = &args.postgres_url else {
        return Outcome::Ok("not configured (only sync tasks into PostgreSQL need it)".into());
    };
    let inner = async {
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let v: String = client.query_one("SHOW server_version", &[]).await?.get(0);
        anyhow::Ok(v)
    };
    match tokio::time::timeout(Duration::from_secs(10), inner).await {
        Ok(Ok(v)) => Outcome::Ok(format!("PostgreSQL {v}")),
        Ok(Err(e)) => failed(
            format!("cannot connect: {}", chain(&e)),
            "check FERRY_POSTGRES_URL and that the server listens",
        ),
        Err(_) => failed(
            "no answer within 10s",
            "check FERRY_POSTGRES_URL and the network path",
        ),
    }
}

async fn kafka(args: &Args) -> Outcome {
    let bootstrap = args.kafka_bootstrap.clone();
    let meta = tokio::task::spawn_blocking(move || -> Result<(usize, usize)> {
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()?;
        let m = c.fetch_metadata(None, Duration::from_secs(10))?;
        Ok((m.brokers().len(), m.topics().len()))
    })
    .await;
    match meta {
        Ok(Ok((brokers, topics))) => Outcome::Ok(format!(
            "{} answers: {brokers} broker(s), {topics} topic(s)",
            args.kafka_bootstrap
        )),
        Ok(Err(e)) => failed(
            format!("{}: {}", args.kafka_bootstrap, chain(&e)),
            "check FERRY_KAFKA_BOOTSTRAP and that the broker listens",
        ),
        Err(e) => failed(
            format!("metadata request panicked: {e}"),
            "report this as a bug",
        ),
    }
}

async fn aws(args: &Args) -> Outcome {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = &args.aws_endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let config = loader.load().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    match tokio::time::timeout(
        Duration::from_secs(10),
        client.list_tables().limit(1).send(),
    )
    .await
    {
        Ok(Ok(_)) => Outcome::Ok(format!(
            "DynamoDB answers at {}",
            args.aws_endpoint
                .as_deref()
                .unwrap_or("the default AWS endpoint")
        )),
        Ok(Err(e)) => failed(
            format!(
                "DynamoDB: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(e)
            ),
            "check AWS credentials, region and endpoint",
        ),
        Err(_) => failed(
            "DynamoDB did not answer within 10s",
            "check the AWS endpoint and the network path",
        ),
    }
}

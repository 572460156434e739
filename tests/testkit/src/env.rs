//! Where the stack's services are: read once from the environment or `.stack/env`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;

/// The endpoints of the local stack.
#[derive(Debug, Clone)]
pub struct StackEnv {
    pub mysql_host: String,
    pub mysql_port: u16,
    pub mysql_admin_user: String,
    pub mysql_admin_password: String,
    pub mysql_capture_user: String,
    pub mysql_capture_password: String,
    /// The stack's second MariaDB (same host and users, binlog off): sync targets only.
    pub mysql_target_port: u16,
    pub postgres_url: String,
    pub kafka_bootstrap: String,
    pub aws_endpoint: String,
    pub aws_region: String,
    /// The stack's state directory (for throwaway servers).
    pub state_dir: PathBuf,
    /// The stack's Python, with the clients of other ecosystems (confluent-kafka).
    pub python: PathBuf,
    /// A Python with kafka-python (a pure-Python Kafka client), for the gateway's tests.
    pub kafka_python: PathBuf,
    /// A Python with the libraries cloud DTS's consumer demo pins (kafka-python 2.0.2,
    /// fastavro 1.8.3), for reading `dts-avro` topics as that demo does.
    pub dts_python: PathBuf,
    /// Python with PyFlink (Apache Flink's debezium/canal/maxwell JSON formats).
    pub flink_python: PathBuf,
    /// `node_modules` with kafkajs, for the gateway's tests.
    pub node_path: PathBuf,
    /// The Kafka-protocol broker's binary (for private brokers a test may kill).
    pub nisshi: PathBuf,
}

const VARS: [&str; 18] = [
    "FERRY_STACK_DIR",
    "FERRY_MYSQL_HOST",
    "FERRY_MYSQL_PORT",
    "FERRY_MYSQL_ADMIN_USER",
    "FERRY_MYSQL_ADMIN_PASSWORD",
    "FERRY_MYSQL_CAPTURE_USER",
    "FERRY_MYSQL_CAPTURE_PASSWORD",
    "FERRY_MYSQL_TARGET_PORT",
    "FERRY_POSTGRES_URL",
    "FERRY_KAFKA_BOOTSTRAP",
    "FERRY_AWS_ENDPOINT",
    "FERRY_PYTHON",
    "FERRY_KAFKA_PYTHON",
    "FERRY_DTS_PYTHON",
    "FERRY_FLINK_PYTHON",
    "FERRY_NODE_PATH",
    "FERRY_NISSHI",
    "AWS_REGION",
];

impl StackEnv {
    /// The local AWS endpoint's address (for a fault proxy in front of it).
    pub fn aws_addr(&self) -> std::net::SocketAddr {
        self.aws_endpoint
            .trim_start_matches("http://")
            .parse()
            .unwrap_or_else(|e| panic!("the AWS endpoint {}: {e}", self.aws_endpoint))
    }

    /// Reads the endpoints from the environment, or from the stack's env file when the
    /// environment has none of them.
    pub fn load() -> Result<Self> {
        let mut vars: HashMap<String, String> = VARS
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        if !vars.contains_key("FERRY_MYSQL_HOST") {
            let file = env_file();
            let text = std::fs::read_to_string(&file).with_context(|| {
                format!(
                    "no FERRY_* variables set and no {} to read them from; run `infra/local/stack up`",
                    file.display()
                )
            })?;
            for (k, v) in parse_env_file(&text) {
                vars.entry(k).or_insert(v);
            }
        }
        let get = |k: &str| {
            vars.get(k)
                .cloned()
                .with_context(|| format!("{k} is not set; run `eval \"$(infra/local/stack env)\"`"))
        };
        let port = get("FERRY_MYSQL_PORT")?;
        let target_port = get("FERRY_MYSQL_TARGET_PORT")?;
        let mysql_host = get("FERRY_MYSQL_HOST")?;
        require_loopback(&mysql_host)?;
        let kafka_bootstrap = get("FERRY_KAFKA_BOOTSTRAP")?;
        for server in kafka_bootstrap.split(',') {
            require_loopback(server.rsplit_once(':').map_or(server, |(h, _)| h))?;
        }
        Ok(Self {
            mysql_host,
            mysql_port: port
                .parse()
                .with_context(|| format!("FERRY_MYSQL_PORT `{port}` is not a port"))?,
            mysql_admin_user: get("FERRY_MYSQL_ADMIN_USER")?,
            mysql_admin_password: get("FERRY_MYSQL_ADMIN_PASSWORD")?,
            mysql_capture_user: get("FERRY_MYSQL_CAPTURE_USER")?,
            mysql_capture_password: get("FERRY_MYSQL_CAPTURE_PASSWORD")?,
            mysql_target_port: target_port.parse().with_context(|| {
                format!("FERRY_MYSQL_TARGET_PORT `{target_port}` is not a port")
            })?,
            postgres_url: get("FERRY_POSTGRES_URL")?,
            kafka_bootstrap,
            aws_endpoint: get("FERRY_AWS_ENDPOINT")?,
            python: PathBuf::from(get("FERRY_PYTHON")?),
            kafka_python: PathBuf::from(get("FERRY_KAFKA_PYTHON")?),
            dts_python: PathBuf::from(get("FERRY_DTS_PYTHON")?),
            flink_python: PathBuf::from(get("FERRY_FLINK_PYTHON")?),
            node_path: PathBuf::from(get("FERRY_NODE_PATH")?),
            nisshi: PathBuf::from(get("FERRY_NISSHI")?),
            state_dir: vars
                .get("FERRY_STACK_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.stack")),
            aws_region: vars
                .get("AWS_REGION")
                .cloned()
                .unwrap_or_else(|| "us-east-1".into()),
        })
    }

    /// Admin connection options, optionally with a default database.
    pub fn mysql_opts(&self, database: Option<&str>) -> mysql_async::Opts {
        self.mysql_opts_on(self.mysql_port, database)
    }

    /// Admin connection options of the target-only MariaDB.
    pub fn mysql_target_opts(&self, database: Option<&str>) -> mysql_async::Opts {
        self.mysql_opts_on(self.mysql_target_port, database)
    }

    fn mysql_opts_on(&self, port: u16, database: Option<&str>) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.mysql_host.clone())
            .tcp_port(port)
            .user(Some(self.mysql_admin_user.clone()))
            .pass(Some(self.mysql_admin_password.clone()))
            .db_name(database.map(str::to_owned))
            .prefer_socket(false)
            .into()
    }

    /// A connection to database `db` of the stack's PostgreSQL.
    pub async fn postgres(&self, db: &str) -> Result<tokio_postgres::Client> {
        let mut config: tokio_postgres::Config = self
            .postgres_url
            .parse()
            .context("FERRY_POSTGRES_URL is not a PostgreSQL URL")?;
        config.dbname(db);
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .context("connecting to the stack's PostgreSQL; is it up? (infra/local/stack up)")?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("postgres connection ended: {e}");
            }
        });
        Ok(client)
    }

    /// A Kafka client configuration for the stack's broker.
    pub fn kafka_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.kafka_bootstrap);
        c
    }

    /// A DynamoDB client for the local AWS endpoint, retrying nothing (moto answers its own bugs
    /// with 500s, which must fail a test rather than be retried into a pass).
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.aws_config().await)
    }

    /// The shared AWS configuration for the local endpoint.
    pub async fn aws_config(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.aws_endpoint)
            .region(aws_config::Region::new(self.aws_region.clone()))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "ferry-local",
                "ferry-local",
                None,
                None,
                "ferry-testkit",
            ))
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .load()
            .await
    }
}

/// `.stack/env` at the root of the workspace (or `$FERRY_STACK_DIR/env`).
fn env_file() -> PathBuf {
    if let Ok(dir) = std::env::var("FERRY_STACK_DIR") {
        return Path::new(&dir).join("env");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.stack/env")
}

/// Parses `export KEY='value'` lines as `infra/local/stack env` prints them.
fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect()
}

/// Tests only ever talk to servers on this machine.
fn require_loopback(host: &str) -> Result<()> {
    if host == "localhost" || host.starts_with("127.") || host == "::1" {
        Ok(())
    } else {
        bail!("the stack must listen on loopback, but an endpoint is on {host}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_stack_env_file() {
        let vars = parse_env_file(
            "export FERRY_MYSQL_PORT='3307'\nexport AWS_REGION='us-east-1'\n# comment\nnoise\n",
        );
        assert_eq!(vars["FERRY_MYSQL_PORT"], "3307");
        assert_eq!(vars["AWS_REGION"], "us-east-1");
        assert_eq!(vars.len(), 2);
    }

    #[test]
    fn loopback_only() {
        assert!(require_loopback("127.0.0.1").is_ok());
        assert!(require_loopback("10.0.0.5").is_err());
    }
}

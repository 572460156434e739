//! What a router is built from.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_aws::{Archive, Events, Secrets, Streams};
use ferry_domain::address::{AddressPolicy, Refused};
use ferry_domain::id::InstanceId;
use ferry_store::Store;

/// Settings the API answers with or names things by.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The Kafka bootstrap servers of the broker itself (Ferry's own clients; operators).
    pub kafka_bootstrap: String,
    /// Where consumers connect: the consumer gateway (`FERRY_CONSUMER_BOOTSTRAP`), answered
    /// in `GET …/task` and the group list with the client settings. `None` when no gateway is
    /// configured.
    pub consumer_bootstrap: Option<String>,
    /// The `security.protocol` consumers use with the gateway: `SASL_PLAINTEXT` (the local
    /// stack) or `SASL_SSL` (the gateway behind its TLS listener in AWS).
    pub consumer_security_protocol: String,
    /// Topic names are `{topic_prefix}{instance id}`.
    pub topic_prefix: String,
    /// The addresses endpoints may point at (see `ferry_domain::address`).
    pub endpoint_policy: AddressPolicy,
}

/// The shared state of every router: cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    secrets: Secrets,
    events: Events,
    streams: Streams,
    archive: Archive,
    settings: Settings,
}

/// A required environment variable is missing or wrong.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {problem}")]
pub struct ConfigError {
    name: &'static str,
    problem: String,
}

impl AppState {
    pub fn new(
        store: Store,
        secrets: Secrets,
        events: Events,
        streams: Streams,
        archive: Archive,
        settings: Settings,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                secrets,
                events,
                streams,
                archive,
                settings,
            }),
        }
    }

    /// The variables every deployed binary must be given (`template.yaml`; checked by the
    /// template test): the two [`AppState::from_env`] requires, and the two whose local
    /// defaults would point a deployment at the wrong bus and secrets.
    pub const DEPLOYMENT_ENV: [&'static str; 4] = [
        "FERRY_TABLE",
        "FERRY_KAFKA_BOOTSTRAP",
        "FERRY_EVENT_BUS",
        "FERRY_SECRET_PREFIX",
    ];

    /// Reads the configuration once, at start-up:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `FERRY_TABLE` | the DynamoDB table | required |
    /// | `FERRY_EVENT_BUS` | the EventBridge bus for lifecycle events | `default` |
    /// | `FERRY_SECRET_PREFIX` | prefix of Secrets Manager names | `ferry` |
    /// | `FERRY_KAFKA_BOOTSTRAP` | bootstrap servers answered to consumers | required |
    /// | `FERRY_TOPIC_PREFIX` | prefix of task topic names | `ferry.` |
    /// | `FERRY_CONSUMER_BOOTSTRAP` | the consumer gateway's address, as consumers reach it | none |
    /// | `FERRY_CONSUMER_SECURITY_PROTOCOL` | `SASL_PLAINTEXT` or `SASL_SSL` | `SASL_PLAINTEXT` |
    /// | `FERRY_ENDPOINT_ALLOW` | CIDR ranges endpoints may point at although refused by default (link-local, metadata services), comma-separated | none |
    /// | `FERRY_ARCHIVE_BUCKET` | the S3 bucket of the binlog archive (tasks may ask for `archive` only with one) | none |
    ///
    /// The AWS SDK reads its own variables (`AWS_REGION`, `AWS_ENDPOINT_URL`, …).
    pub async fn from_env() -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError {
                    name,
                    problem: "is not set".into(),
                })
        };
        let optional =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        let table = required("FERRY_TABLE")?;
        let kafka_bootstrap = required("FERRY_KAFKA_BOOTSTRAP")?;
        let topic_prefix = optional("FERRY_TOPIC_PREFIX", "ferry.");
        if !topic_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(ConfigError {
                name: "FERRY_TOPIC_PREFIX",
                problem: "may hold only letters, digits, `.`, `_` and `-` (Kafka topic name rules)"
                    .into(),
            });
        }
        let consumer_security_protocol =
            optional("FERRY_CONSUMER_SECURITY_PROTOCOL", "SASL_PLAINTEXT").to_ascii_uppercase();
        if !matches!(
            consumer_security_protocol.as_str(),
            "SASL_PLAINTEXT" | "SASL_SSL"
        ) {
            return Err(ConfigError {
                name: "FERRY_CONSUMER_SECURITY_PROTOCOL",
                problem: "must be SASL_PLAINTEXT or SASL_SSL (consumers always sign in)".into(),
            });
        }
        let endpoint_policy = AddressPolicy::allowing(&optional("FERRY_ENDPOINT_ALLOW", ""))
            .map_err(|problem| ConfigError {
                name: "FERRY_ENDPOINT_ALLOW",
                problem,
            })?;
        // Every AWS call ends: a request lost to a network partition fails after the attempt
        // timeout and is retried, instead of hanging a worker's loop (whose lease then runs
        // out) or a function until Lambda kills it.
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(std::time::Duration::from_secs(3))
            .operation_attempt_timeout(std::time::Duration::from_secs(10))
            .operation_timeout(std::time::Duration::from_secs(30))
            .build();
        let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        Ok(Self::new(
            Store::new(aws_sdk_dynamodb::Client::new(&aws), table),
            Secrets::new(
                aws_sdk_secretsmanager::Client::new(&aws),
                optional("FERRY_SECRET_PREFIX", "ferry"),
            ),
            Events::new(
                aws_sdk_eventbridge::Client::new(&aws),
                optional("FERRY_EVENT_BUS", "default"),
            ),
            Streams::new(aws_sdk_kinesis::Client::new(&aws)),
            Archive::new(
                archive_client(&aws),
                std::env::var("FERRY_ARCHIVE_BUCKET")
                    .ok()
                    .filter(|v| !v.trim().is_empty()),
            ),
            Settings {
                kafka_bootstrap,
                consumer_bootstrap: std::env::var("FERRY_CONSUMER_BOOTSTRAP")
                    .ok()
                    .filter(|v| !v.trim().is_empty()),
                consumer_security_protocol,
                topic_prefix,
                endpoint_policy,
            },
        ))
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// The binlog archive's bucket (tasks with `archive`).
    pub fn archive(&self) -> &Archive {
        &self.inner.archive
    }

    /// Kinesis, for tasks that deliver to a data stream.
    pub fn streams(&self) -> &Streams {
        &self.inner.streams
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Whether an endpoint at `host`:`port` may be connected to: its address (an IP literal,
    /// or every address the name resolves to) is not one the deployment refuses. A name that
    /// does not resolve passes: connecting to it fails with its own error.
    pub async fn check_endpoint(&self, host: &str, port: u16) -> Result<(), Refused> {
        let policy = &self.inner.settings.endpoint_policy;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return policy.check(ip);
        }
        let resolved = tokio::time::timeout(
            std::time::Duration::from_secs(3),
            tokio::net::lookup_host((bare, port)),
        )
        .await;
        if let Ok(Ok(addrs)) = resolved {
            for a in addrs {
                policy.check(a.ip())?;
            }
        }
        Ok(())
    }

    /// The time of a request. Lifecycle rules that depend on time run in the sweeper, which
    /// takes it from its scheduled event instead.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// The Kafka topic of an instance's task.
    /// The topic of `instance`'s task in topic `generation`: `<prefix><instance id>` for the
    /// first, `<prefix><instance id>.g<n>` after the n-th reset.
    pub fn topic_for(&self, instance: &InstanceId, generation: u32) -> String {
        ferry_domain::instance::topic_name(&self.inner.settings.topic_prefix, instance, generation)
    }

    /// The topic a task writes to and its consumers read now.
    pub fn topic_of(&self, task: &ferry_store::TaskRecord) -> String {
        self.topic_for(task.task.instance_id(), task.topic_generation)
    }
}

/// The S3 client of the binlog archive: path-style addressing against a local endpoint (moto
/// serves buckets by path, not by host name).
pub fn archive_client(aws: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(aws.endpoint_url().is_some())
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

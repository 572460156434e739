//! The test harness: every test gets its own slice of the local stack.
//!
//! ```no_run
//! # async fn t() -> anyhow::Result<()> {
//! let ctx = ferry_testkit::TestContext::spawn().await?;
//! let mut conn = ctx.mysql().await?;          // admin connection, default database = ctx's own
//! let pg = ctx.postgres().await?;             // connected to ctx's own PostgreSQL database
//! let topic = ctx.topic("changes");           // `t_<id>_changes`, unique to this test
//! let dynamo = ctx.dynamodb().await;          // table ctx.dynamo_table() exists
//! # Ok(()) }
//! ```
//!
//! Isolation is by name: each [`TestContext`] has a random id and creates a MariaDB database, a
//! PostgreSQL database and a DynamoDB table named after it, and prefixes its Kafka topics and
//! groups with it. Tests run in parallel (nextest runs each in its own process) without
//! seeing each other. Dropping the context removes what it created, unless
//! `FERRY_TEST_KEEP=1` is set, which keeps it to look at after a failure.
//!
//! The endpoints come from the environment (`eval "$(infra/local/stack env)"`), or, when it
//! has none, from the `.stack/env` file that `infra/local/stack up` writes, so
//! `cargo nextest run` works in a fresh shell too.

mod app;
mod env;
pub mod faults;
pub mod gateway;
pub mod json;
mod mariadb;
mod process;
mod topic;
mod worker;

use std::time::Duration;

use anyhow::{Context, Result};
use mysql_async::prelude::Queryable;
use rdkafka::ClientConfig;

pub use app::{Answer, TestApi};
pub use env::StackEnv;
pub use mariadb::{CAPTURE_ARGS, ThrowawayMariaDb};
pub use process::{WorkerProcess, ferry_binary};
pub use topic::{Applied, TopicRecord, apply_rows, exactly_once, repairs_reported};
pub use worker::{InProcessWorker, source_position};

/// One test's slice of the stack.
#[derive(Debug)]
pub struct TestContext {
    id: String,
    env: StackEnv,
    dynamo_table: String,
    keep: bool,
}

/// Where what runs in the test's own process (in-process workers, the API) logs, once per
/// process (each nextest test is one): `FERRY_TEST_LOG=<filter>` (`ferry_worker=debug`) to the
/// test's output; otherwise Ferry's info lines to `<state dir>/test-logs/<id>-in-process.log`,
/// beside the worker processes' logs, so a failure in CI can be read afterwards.
fn log_in_process(env: &StackEnv, id: &str) {
    if let Ok(filter) = std::env::var("FERRY_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
        return;
    }
    if tracing::dispatcher::has_been_set() {
        // A second context in the process, or a test that set its own.
        return;
    }
    let dir = env.state_dir.join("test-logs");
    let file = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::File::create(dir.join(format!("{id}-in-process.log"))));
    if let Ok(file) = file {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,ferry_worker=info,ferry_api=info,ferry_kafka=info")
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    }
}

/// The binlog archive bucket of the local stack (`FERRY_ARCHIVE_BUCKET` of test workers).
pub const ARCHIVE_BUCKET: &str = "ferry-archive";

impl TestContext {
    /// Creates this test's databases and table.
    pub async fn spawn() -> Result<Self> {
        let env = StackEnv::load()?;
        let short = uuid::Uuid::new_v4().simple().to_string();
        let id = format!("t_{}", &short[..12]);
        log_in_process(&env, &id);
        let ctx = Self {
            dynamo_table: format!("ferry-{}", id.replace('_', "-")),
            id,
            env,
            keep: std::env::var("FERRY_TEST_KEEP").is_ok_and(|v| v == "1"),
        };
        ctx.create_mysql_database().await?;
        ctx.create_postgres_database().await?;
        ctx.create_dynamo_table().await?;
        Ok(ctx)
    }

    /// The context's unique id (`t_` and 12 hex digits); also the name of its databases.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn env(&self) -> &StackEnv {
        &self.env
    }

    /// Points everything this context makes from now on (APIs, Kafka clients, worker
    /// processes) at another broker: a private one a fault test may kill.
    pub fn use_kafka(&mut self, bootstrap: String) {
        self.env.kafka_bootstrap = bootstrap;
    }

    /// The MariaDB database of this test.
    pub fn mysql_database(&self) -> &str {
        &self.id
    }

    /// The PostgreSQL database of this test.
    pub fn postgres_database(&self) -> &str {
        &self.id
    }

    /// The DynamoDB table of this test, created with Ferry's key schema (`pk`, `sk`, index `gsi1`).
    pub fn dynamo_table(&self) -> &str {
        &self.dynamo_table
    }

    /// A topic name unique to this test.
    pub fn topic(&self, name: &str) -> String {
        format!("{}_{name}", self.id)
    }

    /// A consumer group id unique to this test.
    pub fn group(&self, name: &str) -> String {
        format!("{}_{name}", self.id)
    }

    /// An admin connection to MariaDB with this test's database as the default.
    pub async fn mysql(&self) -> Result<mysql_async::Conn> {
        let opts = self.env.mysql_opts(Some(&self.id));
        mysql_async::Conn::new(opts)
            .await
            .context("connecting to the stack's MariaDB")
    }

    /// An admin connection to the target-only MariaDB (where [`TestContext::mariadb_target`]'s
    /// tables go), without a default database.
    pub async fn target_mysql(&self) -> Result<mysql_async::Conn> {
        mysql_async::Conn::new(self.env.mysql_target_opts(None))
            .await
            .context("connecting to the stack's target MariaDB")
    }

    /// A connection to this test's PostgreSQL database.
    pub async fn postgres(&self) -> Result<tokio_postgres::Client> {
        self.env.postgres(&self.id).await
    }

    /// A Kafka client configuration pointing at the stack's broker.
    pub fn kafka_config(&self) -> ClientConfig {
        self.env.kafka_config()
    }

    /// A DynamoDB client for the local endpoint.
    pub async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        self.env.dynamodb().await
    }

    async fn create_mysql_database(&self) -> Result<()> {
        let mut conn = mysql_async::Conn::new(self.env.mysql_opts(None))
            .await
            .context("connecting to the stack's MariaDB; is it up? (infra/local/stack up)")?;
        conn.query_drop(format!("CREATE DATABASE `{}`", self.id))
            .await?;
        conn.disconnect().await?;
        Ok(())
    }

    async fn create_postgres_database(&self) -> Result<()> {
        let client = self.env.postgres("postgres").await?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{}\"", self.id))
            .await
            .context("creating the test's PostgreSQL database")?;
        Ok(())
    }

    async fn create_dynamo_table(&self) -> Result<()> {
        self.store()
            .await
            .create_table()
            .await
            .context("creating the test's DynamoDB table on the local AWS endpoint")
    }

    /// The stack's binlog archive bucket, created on first use (one for every test: the keys
    /// are per instance).
    pub async fn archive(&self) -> Result<ferry_aws::Archive> {
        let aws = self.env.aws_config().await;
        let client = ferry_api::archive_client(&aws);
        if let Err(e) = client.create_bucket().bucket(ARCHIVE_BUCKET).send().await {
            let owned = e.as_service_error().is_some_and(|s| {
                s.is_bucket_already_owned_by_you() || s.is_bucket_already_exists()
            });
            if !owned {
                return Err(anyhow::Error::new(e)
                    .context("creating the archive bucket on the local AWS endpoint"));
            }
        }
        Ok(ferry_aws::Archive::new(client, Some(ARCHIVE_BUCKET.into())))
    }

    /// Ferry's store on this test's DynamoDB table.
    pub async fn store(&self) -> ferry_store::Store {
        ferry_store::Store::new(self.dynamodb().await, &self.dynamo_table)
    }

    /// Removes the databases, topics and table of this test.
    pub async fn cleanup(&self) -> Result<()> {
        let mut conn = mysql_async::Conn::new(self.env.mysql_opts(None)).await?;
        conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.id))
            .await?;
        conn.disconnect().await?;
        // A sync task's MariaDB target database, by convention.
        let mut target = mysql_async::Conn::new(self.env.mysql_target_opts(None)).await?;
        target
            .query_drop(format!("DROP DATABASE IF EXISTS `{}_copy`", self.id))
            .await?;
        target.disconnect().await?;

        let pg = self.env.postgres("postgres").await?;
        pg.batch_execute(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.id
        ))
        .await?;

        self.env
            .dynamodb()
            .await
            .delete_table()
            .table_name(&self.dynamo_table)
            .send()
            .await?;

        self.delete_topics().await
    }

    async fn delete_topics(&self) -> Result<()> {
        use rdkafka::admin::{AdminClient, AdminOptions};
        use rdkafka::client::DefaultClientContext;
        use rdkafka::consumer::{BaseConsumer, Consumer};

        let consumer: BaseConsumer = self.kafka_config().create()?;
        let prefixes = [format!("{}_", self.id), format!("{}.", self.id)];
        let metadata = tokio::task::spawn_blocking(move || {
            consumer.fetch_metadata(None, Duration::from_secs(10))
        })
        .await??;
        let ours: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|n| prefixes.iter().any(|p| n.starts_with(p.as_str())))
            .collect();
        if ours.is_empty() {
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = self.kafka_config().create()?;
        let names: Vec<&str> = ours.iter().map(String::as_str).collect();
        admin.delete_topics(&names, &AdminOptions::new()).await?;
        Ok(())
    }
}

impl Drop for TestContext {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("FERRY_TEST_KEEP=1: keeping test context {}", self.id);
            return;
        }
        // Drop cannot await, and may run inside a runtime: clean up on a thread of its own,
        // with a copy whose own drop is skipped.
        let copy = Self {
            id: self.id.clone(),
            env: self.env.clone(),
            dynamo_table: self.dynamo_table.clone(),
            keep: true,
        };
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = rt.block_on(copy.cleanup());
            std::mem::forget(copy);
            result
        })
        .join();
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleaning up test context {}: {e:#}", self.id),
            Err(_) => eprintln!("cleaning up test context {} panicked", self.id),
        }
    }
}

/// Retries `f` until it returns `Some`, or fails after `timeout` with `what` in the message.
/// For waiting on asynchronous effects (a rebalance, a record arriving), never for timing.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the larger sizes run (`FERRY_TEST_SCALE=large`: `infra/local/test --large` and
/// `infra/local/faults`): CI runs every test at a size that proves the same properties.
pub fn large_scale() -> bool {
    std::env::var("FERRY_TEST_SCALE").is_ok_and(|s| s == "large")
}

/// Where a long wait stands: done, or the progress seen so far (any text that changes while
/// the awaited thing advances: rows copied, a position, a count).
#[derive(Debug)]
pub enum Step<T> {
    Done(T),
    At(String),
}

/// Polls `f` until it is [`Step::Done`], failing only when what it reports has not changed for
/// `stall`: a slow machine waits longer, a stuck one fails with what was last seen. For the
/// waits whose length depends on the machine (copies, catch-up, takeovers).
pub async fn progressing<T, F, Fut>(what: &str, stall: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Step<T>>>,
{
    let mut last: Option<String> = None;
    let mut since = tokio::time::Instant::now();
    loop {
        match f().await? {
            Step::Done(v) => return Ok(v),
            Step::At(at) => {
                if last.as_deref() != Some(at.as_str()) {
                    last = Some(at);
                    since = tokio::time::Instant::now();
                } else if since.elapsed() >= stall {
                    anyhow::bail!(
                        "waiting for {what}: nothing advanced for {stall:?}; last seen: {}",
                        last.unwrap_or_default()
                    );
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl TestContext {
    /// The first `expected` records of `topic`, from every partition, as (partition, payload
    /// JSON, idempotency key), read from the start of each partition; fails when no record
    /// arrives for 180 s (a worker catching up with the busy shared binlog of a loaded machine
    /// may take a while), or one has no idempotency key or is not JSON. Payloads are read by
    /// [`change_json`]; tombstones are not counted (see [`TestContext::read_raw_records`]).
    pub async fn read_records(
        &self,
        topic: &str,
        expected: usize,
    ) -> Result<Vec<(i32, serde_json::Value, String)>> {
        self.read_raw_records(topic, expected)
            .await?
            .into_iter()
            .map(|(p, payload, key)| {
                let json =
                    change_json(Some(&payload)).context("a record whose payload is not JSON")?;
                Ok((p, json, key))
            })
            .collect()
    }

    /// Like [`TestContext::read_records`], with the payloads as bytes as written. Tombstones
    /// (the records with a key and no value that Debezium writes after a delete) are skipped:
    /// `expected` counts the records that are changes.
    pub async fn read_raw_records(
        &self,
        topic: &str,
        expected: usize,
    ) -> Result<Vec<(i32, Vec<u8>, String)>> {
        use rdkafka::Message;
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::message::Headers;
        let c: StreamConsumer = self
            .kafka_config()
            .set(
                "group.id",
                self.group(&format!("reader-{}", uuid::Uuid::new_v4().simple())),
            )
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()?;
        // Every partition assigned from its start, without a consumer group's coordination:
        // a rebalance on a loaded broker cannot hold the reader back. The topic may not exist
        // yet (the worker creates it when the task starts).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        let partitions = loop {
            let n = c
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .ok()
                .and_then(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map(|t| t.partitions().len())
                })
                .unwrap_or(0);
            if n > 0 {
                break n;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the topic {topic} did not appear in 180 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut assignment = rdkafka::TopicPartitionList::new();
        for p in 0..i32::try_from(partitions)? {
            assignment.add_partition_offset(topic, p, rdkafka::Offset::Beginning)?;
        }
        c.assign(&assignment)?;
        let mut out = Vec::with_capacity(expected);
        while out.len() < expected {
            let m = tokio::time::timeout(Duration::from_secs(180), c.recv())
                .await
                .with_context(|| {
                    format!(
                        "record {} of {expected} did not arrive in 180 s",
                        out.len() + 1
                    )
                })??;
            let key = m
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|x| x.key == "ferry.key")
                        .and_then(|x| x.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .context("a record without an idempotency key")?;
            let Some(payload) = m.payload() else {
                continue;
            };
            out.push((m.partition(), payload.to_vec(), key));
        }
        Ok(out)
    }
}

/// A record's payload as JSON; a record in Kafka Connect's JsonConverter envelope
/// (`{"schema": …, "payload": …}`, debezium-json's compatible values) as its payload, with the
/// row images read by the schema (`ferry_kafka::view::debezium_readable`: DECIMAL digits,
/// dates and times as text), so tests of delivery read values as people do. `None` for a
/// tombstone (no value) or a payload that is not JSON. The wire format itself is checked by the
/// formats tests.
pub fn change_json(payload: Option<&[u8]>) -> Option<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(payload?).ok()?;
    Some(ferry_kafka::view::debezium_readable(json))
}

/// The `p` percentile (0..=1) of sorted durations, in milliseconds (the benches' tables).
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// CPU seconds this process used so far (user + system, from `/proc/self/stat`), for benches
/// whose process is the worker (the servers run in processes of their own).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

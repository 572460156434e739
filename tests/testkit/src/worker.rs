//! A capture worker inside the test process, and a running change-tracking task on it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::{Method, StatusCode};
use ferry_api::AppState;
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_worker::metrics::WorkerMetrics;
use ferry_worker::{Worker, WorkerSettings};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{TestApi, TestContext};

/// How long a stopping worker has: the worker service's `StopTimeout` in template.yaml.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// A worker running on the test's runtime, with quick polls, heartbeats and metrics reports.
#[derive(Debug)]
pub struct InProcessWorker {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
    pub metrics: Arc<WorkerMetrics>,
}

impl InProcessWorker {
    pub fn start(state: &AppState) -> Self {
        let metrics = Arc::new(WorkerMetrics::default());
        let settings = WorkerSettings {
            id: WorkerId::generate(),
            poll: Duration::from_millis(200),
            lease_ttl: Duration::from_secs(30),
            heartbeat: Duration::from_millis(300),
            metrics_every: Duration::from_secs(1),
            metrics: Arc::clone(&metrics),
            max_row_bytes: ferry_worker::MAX_ROW_BYTES,
            backfill_chunk_rows: ferry_worker::BACKFILL_CHUNK_ROWS,
            archive_flush: ferry_worker::ARCHIVE_FLUSH,
        };
        let (stop, rx) = watch::channel(false);
        let worker = Worker::new(state.clone(), settings);
        Self {
            stop,
            handle: tokio::spawn(async move { worker.run(rx).await }),
            metrics,
        }
    }

    /// Stops the worker as a shutdown does (last checkpoints, leases released).
    /// Waits as long as ECS waits for the worker's container to stop (`StopTimeout` in
    /// template.yaml). (It was 30 s: the Kinesis test's worker, stopping under the whole
    /// suite's load, once took longer.)
    pub async fn stop(self) -> Result<()> {
        self.stop.send(true).ok();
        tokio::time::timeout(STOP_TIMEOUT, self.handle)
            .await
            .with_context(|| {
                format!(
                    "the worker did not stop within {} s (its ECS stop timeout)",
                    STOP_TIMEOUT.as_secs()
                )
            })??;
        Ok(())
    }
}

/// The source's current binlog position (`SHOW MASTER STATUS`), for
/// [`TestApi::wait_checkpoint_past`].
pub async fn source_position(db: &mut mysql_async::Conn) -> Result<(String, u64)> {
    use mysql_async::prelude::Queryable;
    let row: mysql_async::Row = db
        .query_first("SHOW MASTER STATUS")
        .await?
        .context("the source shows no binlog position")?;
    Ok((
        row.get("File").context("no File")?,
        row.get("Position").context("no Position")?,
    ))
}

impl TestContext {
    /// The stack's MariaDB as a task's source, as the capture user.
    pub fn stack_source(&self) -> Value {
        let env = self.env();
        json!({"engine": "mariadb", "host": env.mysql_host, "port": env.mysql_port, "username": env.mysql_capture_user, "password": env.mysql_capture_password})
    }
}

impl TestContext {
    /// The stack's PostgreSQL, this test's database, as a sync task's target.
    pub fn postgres_target(&self) -> Result<Value> {
        let config: tokio_postgres::Config = self
            .env()
            .postgres_url
            .parse()
            .context("FERRY_POSTGRES_URL is not a PostgreSQL URL")?;
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => anyhow::bail!("FERRY_POSTGRES_URL names no TCP host"),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        // The stack's PostgreSQL trusts loopback connections: any password is accepted.
        let password = config.get_password().map_or_else(
            || "trusted".to_owned(),
            |p| String::from_utf8_lossy(p).into_owned(),
        );
        Ok(json!({"engine": "postgresql", "host": host, "port": port,
                  "username": config.get_user().unwrap_or("postgres"),
                  "password": password, "database": self.postgres_database()}))
    }

    /// The stack's target-only MariaDB (binlog off), as the admin user, as a sync task's target
    /// (tables go to the databases the selection maps them to; `<test id>_copy` is cleaned up;
    /// [`TestContext::target_mysql`] reads them).
    pub fn mariadb_target(&self) -> Value {
        let env = self.env();
        json!({"engine": "mariadb", "host": env.mysql_host, "port": env.mysql_target_port, "username": env.mysql_admin_user, "password": env.mysql_admin_password})
    }
}

impl TestApi {
    /// Creates an instance of `mode`, configures its task with `config` and starts it: the
    /// instance id and the started task.
    pub async fn start_task(&self, mode: &str, config: Value) -> Result<(InstanceId, Value)> {
        self.start_task_named(mode, mode, config).await
    }

    /// [`TestApi::start_task`] with an instance name of its own.
    pub async fn start_task_named(
        &self,
        name: &str,
        mode: &str,
        config: Value,
    ) -> Result<(InstanceId, Value)> {
        let id = self.configure_task_named(name, mode, config).await?;
        let started = self
            .call(
                Method::POST,
                &format!("/v1/instances/{id}/task/start"),
                None,
            )
            .await?;
        anyhow::ensure!(
            started.status == StatusCode::OK,
            "starting the task: {}",
            started.text
        );
        Ok((id.parse()?, started.body["task"].clone()))
    }

    /// Creates an instance of `mode` named `name` and configures its task with `config`, not
    /// started: the instance id.
    pub async fn configure_task_named(
        &self,
        name: &str,
        mode: &str,
        config: Value,
    ) -> Result<String> {
        let created = self
            .call(
                Method::POST,
                "/v1/instances",
                Some(json!({"name": name, "mode": mode, "billing": {"type": "pay_as_you_go"}})),
            )
            .await?;
        let id = created.body["id"]
            .as_str()
            .with_context(|| format!("creating the instance: {}", created.text))?
            .to_owned();
        let configured = self
            .call(
                Method::PUT,
                &format!("/v1/instances/{id}/task"),
                Some(config),
            )
            .await?;
        anyhow::ensure!(
            configured.status == StatusCode::OK,
            "configuring the task: {}",
            configured.text
        );
        Ok(id)
    }

    /// Asks for a verification of a sync task and waits for it to end (done or failed); fails
    /// only when the verification stops advancing.
    pub async fn verify(&self, id: &InstanceId) -> Result<Value> {
        let asked = self
            .call(
                Method::POST,
                &format!("/v1/instances/{id}/task/verify"),
                None,
            )
            .await?;
        anyhow::ensure!(
            asked.status == StatusCode::ACCEPTED,
            "asking for a verification: {}",
            asked.text
        );
        crate::progressing(
            "the verification to finish",
            Duration::from_secs(180),
            || async {
                let v = self
                    .call(
                        Method::GET,
                        &format!("/v1/instances/{id}/task/verify"),
                        None,
                    )
                    .await?;
                Ok(
                    if v.body["state"] == "done" || v.body["state"] == "failed" {
                        crate::Step::Done(v.body)
                    } else {
                        crate::Step::At(v.text)
                    },
                )
            },
        )
        .await
    }

    /// Waits until a sync task is `incremental`, failing when its full sync stops advancing
    /// (a slow machine copies longer; a stuck copy fails with its last progress).
    pub async fn wait_copied(&self, id: &InstanceId, stall: Duration) -> Result<Value> {
        crate::progressing("the full sync to finish", stall, || async {
            let t = self.task(id).await?;
            anyhow::ensure!(t["state"] != "failed", "the task failed: {t}");
            Ok(if t["state"] == "incremental" {
                crate::Step::Done(t)
            } else {
                // The loop's checkpoint counts as progress: a chunk is done once the loop has
                // read the shared binlog up to its watermark, which takes a while on a busy one.
                crate::Step::At(format!(
                    "{} at {} {}",
                    t["state"], t["checkpoint"]["position"], t["full_sync"]
                ))
            })
        })
        .await
    }

    /// Waits until a sync task's first table has `chunks` chunks copied; fails when its copy
    /// stops advancing for `stall`.
    pub async fn wait_chunks(&self, id: &InstanceId, chunks: u64, stall: Duration) -> Result<()> {
        crate::progressing(&format!("{chunks} chunks to be copied"), stall, || async {
            let t = self.task(id).await?;
            anyhow::ensure!(t["state"] != "failed", "the task failed: {t}");
            let done = t["full_sync"][0]["chunks_done"].as_u64().unwrap_or(0);
            Ok(if done >= chunks {
                crate::Step::Done(())
            } else {
                crate::Step::At(format!(
                    "{} at {} {}",
                    t["state"], t["checkpoint"]["position"], t["full_sync"]
                ))
            })
        })
        .await
    }

    /// `GET …/task`: the task as the API shows it.
    pub async fn task(&self, id: &InstanceId) -> Result<Value> {
        let t = self
            .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
            .await?;
        anyhow::ensure!(t.status == StatusCode::OK, "reading the task: {}", t.text);
        Ok(t.body)
    }

    /// The task's checkpoint as stored (an error when it has none).
    pub async fn checkpoint(&self, id: &InstanceId) -> Result<ferry_store::Checkpoint> {
        self.state
            .store()
            .get_checkpoint(id)
            .await?
            .with_context(|| format!("{id} has no checkpoint"))
    }

    /// The task's state, polled until it is `state` (or failed, which is an error). Fails when
    /// nothing about the task (state, checkpoint, full sync progress) changed for `stall`: a
    /// slow machine waits longer, a stuck task fails with what was last seen.
    pub async fn wait_state(&self, id: &InstanceId, state: &str, stall: Duration) -> Result<Value> {
        crate::progressing(&format!("the task to be {state}"), stall, || async {
            let t = self.task(id).await?;
            anyhow::ensure!(t["state"] != "failed", "the task failed: {t}");
            Ok(if t["state"] == state {
                crate::Step::Done(t)
            } else {
                crate::Step::At(format!(
                    "{} at {} {}",
                    t["state"], t["checkpoint"]["position"], t["full_sync"]
                ))
            })
        })
        .await
    }

    /// Waits until the task's checkpoint reaches `position` (a `(file, offset)` of
    /// [`source_position`]): everything the source wrote before it is delivered or applied.
    /// Fails when the checkpoint stops advancing for `stall`.
    pub async fn wait_checkpoint_past(
        &self,
        id: &InstanceId,
        position: &(String, u64),
        stall: Duration,
    ) -> Result<()> {
        crate::progressing(
            "the task's checkpoint to pass the position",
            stall,
            || async {
                let t = self.task(id).await?;
                anyhow::ensure!(t["state"] != "failed", "the task failed: {t}");
                let c = &t["checkpoint"];
                let at = (
                    c["file"].as_str().unwrap_or_default().to_owned(),
                    c["offset"].as_u64().unwrap_or(0),
                );
                Ok(if at >= *position {
                    crate::Step::Done(())
                } else {
                    crate::Step::At(format!("{at:?} (waiting for {position:?})"))
                })
            },
        )
        .await
    }

    /// Polls `f` until it gives a value, failing only when the task's checkpoint (its progress
    /// through the source's binlog) has not moved for `stall`: on a loaded machine a worker
    /// behind a busy shared binlog takes longer, a stuck one fails with what it was waiting for.
    pub async fn wait_for<T, F, Fut>(
        &self,
        id: &InstanceId,
        what: &str,
        stall: Duration,
        mut f: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        crate::progressing(what, stall, || {
            let next = f();
            async move {
                if let Some(v) = next.await? {
                    return Ok(crate::Step::Done(v));
                }
                let t = self.task(id).await?;
                anyhow::ensure!(t["state"] != "failed", "the task failed: {t}");
                Ok(crate::Step::At(format!(
                    "{} at {}",
                    t["state"], t["checkpoint"]["position"]
                )))
            }
        })
        .await
    }

    /// `GET …/task/metrics`, polled until `ready` accepts it; fails when the task's checkpoint
    /// stops moving for `stall`, with the last answer.
    pub async fn metrics_when(
        &self,
        id: &InstanceId,
        stall: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let last = std::sync::Mutex::new(Value::Null);
        self.wait_for(id, "the task's metrics", stall, || async {
            let m = self
                .call(
                    Method::GET,
                    &format!("/v1/instances/{id}/task/metrics"),
                    None,
                )
                .await?;
            let ok = ready(&m.body);
            *last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = m.body.clone();
            Ok(ok.then_some(m.body))
        })
        .await
        .with_context(|| {
            format!(
                "last metrics: {}",
                last.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            )
        })
    }

    /// A change-tracking task configured with `config`, started, and running (`incremental`)
    /// on a worker of its own: its instance id, its topic and the worker.
    pub async fn running_task(
        &self,
        config: Value,
    ) -> Result<(InstanceId, String, InProcessWorker)> {
        let (id, topic) = self.start_tracking_task("cdc", config).await?;
        let id: InstanceId = id.parse()?;
        let worker = InProcessWorker::start(&self.state);
        self.wait_state(&id, "incremental", Duration::from_secs(30))
            .await?;
        Ok((id, topic, worker))
    }
}

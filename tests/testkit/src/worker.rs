//! A capture worker inside the test process, and a running change-tracking task on it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::Method;
use ferry_api::AppState;
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_worker::metrics::WorkerMetrics;
use ferry_worker::{Worker, WorkerSettings};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{TestApi, TestContext, eventually};

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
            lease_ttl: Duration::from_secs(10),
            heartbeat: Duration::from_millis(300),
            metrics_every: Duration::from_secs(1),
            metrics: Arc::clone(&metrics),
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
    pub async fn stop(self) -> Result<()> {
        self.stop.send(true).ok();
        tokio::time::timeout(Duration::from_secs(30), self.handle)
            .await
            .context("the worker did not stop within 30 s")??;
        Ok(())
    }
}

impl TestContext {
    /// The stack's MariaDB as a task's source, as the capture user.
    pub fn stack_source(&self) -> Value {
        let env = self.env();
        json!({"engine": "mariadb", "host": env.mysql_host, "port": env.mysql_port, "username": env.mysql_capture_user, "password": env.mysql_capture_password})
    }
}

impl TestApi {
    /// A change-tracking task configured with `config`, started, and running (`incremental`)
    /// on a worker of its own: its instance id, its topic and the worker.
    pub async fn running_task(
        &self,
        config: Value,
    ) -> Result<(InstanceId, String, InProcessWorker)> {
        let (id, topic) = self.start_tracking_task("cdc", config).await?;
        let id: InstanceId = id.parse()?;
        let worker = InProcessWorker::start(&self.state);
        eventually("the task to run", Duration::from_secs(30), || async {
            let t = self
                .call(Method::GET, &format!("/v1/instances/{id}/task"), None)
                .await?;
            Ok((t.body["state"] == "incremental").then_some(()))
        })
        .await?;
        Ok((id, topic, worker))
    }
}

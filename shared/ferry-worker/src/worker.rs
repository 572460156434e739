//! The worker process: finds tasks that want a worker, claims their leases, runs their capture
//! loops, and converges to the desired state the API writes. A loop that stopped on a transient
//! failure is started again with exponential backoff (2 s doubling to 60 s).
//!
//! # Leases
//!
//! Every `poll` the worker lists the tasks that want a worker (`starting`, running stages,
//! `paused`) and tries to claim the lease of each it does not run. A claim succeeds when the
//! lease is free or expired (its holder died); the new holder's fencing token is one higher. A
//! running loop renews its lease every third of the time to live (on a task of its own, so a loop
//! waiting on a slow broker keeps it) and stops when the task is no
//! longer wanted or the lease was lost. On stop the worker releases its leases, so another worker
//! can take over at once.
//!
//! # Cleanup
//!
//! Every 10 s the worker also removes what deleted instances left on the broker (their topic and
//! their groups' committed offsets), once the instance's lease time has passed.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_domain::instance::Mode;
use std::time::Duration;

use chrono::Utc;
use ferry_api::AppState;
use ferry_api::lifecycle::transition;
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_domain::metrics::ConnectionFailure;
use ferry_domain::task::TaskEvent;
use ferry_store::PageToken;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::capture::capture_task;
use crate::error::TaskError;
use crate::internal_events::{ConnectionFailed, LoopEnded, TaskFailed};
use crate::lease::Claim;
use crate::metrics::WorkerMetrics;
use crate::session::CaptureSettings;

/// How a worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub id: WorkerId,
    pub poll: Duration,
    pub lease_ttl: Duration,
    pub heartbeat: Duration,
    /// How often each loop adds its counts to the task's minute in the store.
    pub metrics_every: Duration,
    pub metrics: Arc<WorkerMetrics>,
    /// The largest row a capture loop encodes (its images' values, in bytes); a larger one
    /// fails the task with `row_too_large` instead of being encoded (or dropped).
    pub max_row_bytes: usize,
    /// Rows per chunk of a backfill (`FERRY_BACKFILL_CHUNK_ROWS`).
    pub backfill_chunk_rows: u32,
    /// How often the binlog archive stores an unfinished piece (`FERRY_ARCHIVE_FLUSH_MS`).
    pub archive_flush: Duration,
}

/// The default bound on one row's size: 256 MiB.
pub const MAX_ROW_BYTES: usize = 256 << 20;

/// The default rows per chunk of a backfill (see `WorkerSettings::from_env`).
pub const BACKFILL_CHUNK_ROWS: u32 = 4_096;

/// How often, by default, the binlog archive stores what it copied of a file so far: what a
/// worker that dies loses of the archive (the server still has it, unless it purges it first).
pub const ARCHIVE_FLUSH: Duration = Duration::from_secs(10);

impl WorkerSettings {
    pub fn new(id: WorkerId) -> Self {
        Self {
            id,
            poll: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            metrics_every: Duration::from_secs(10),
            metrics: Arc::default(),
            max_row_bytes: MAX_ROW_BYTES,
            backfill_chunk_rows: BACKFILL_CHUNK_ROWS,
            archive_flush: ARCHIVE_FLUSH,
        }
    }

    /// The defaults, with what the environment overrides:
    ///
    /// | variable | meaning | default |
    /// |---|---|---|
    /// | `FERRY_WORKER_POLL_MS` | how often the worker looks for tasks to claim | 2000 |
    /// | `FERRY_LEASE_TTL_SECS` | how long a dead worker's tasks wait before another takes them over (12 or more: a loop stops sending when half of it is left unrenewed, see `crate::lease`) | 30 |
    /// | `FERRY_HEARTBEAT_MS` | how often an idle source sends a heartbeat | 1000 |
    /// | `FERRY_METRICS_REPORT_MS` | how often a task's counts go to the store (the API's metrics) | 10000 |
    /// | `FERRY_MAX_ROW_BYTES` | the largest row a capture loop encodes (its images' values); a larger one fails the task with `row_too_large` | 268435456 (256 MiB) |
    /// | `FERRY_BACKFILL_CHUNK_ROWS` | rows per chunk of a backfill (a chunk's rows are held until the stream passes its high watermark) | 4096 |
    /// | `FERRY_ARCHIVE_FLUSH_MS` | how often the binlog archive stores the unfinished piece of a file | 10000 |
    pub fn from_env(id: WorkerId) -> Result<Self, String> {
        let read = |name: &str, default: u64, min: u64, max: u64| -> Result<u64, String> {
            match std::env::var(name) {
                Err(_) => Ok(default),
                Ok(v) => match v.trim().parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "{name} is `{v}`: give a whole number from {min} to {max}"
                    )),
                },
            }
        };
        Ok(Self {
            id,
            poll: Duration::from_millis(read("FERRY_WORKER_POLL_MS", 2000, 50, 600_000)?),
            lease_ttl: Duration::from_secs(read(
                "FERRY_LEASE_TTL_SECS",
                30,
                crate::lease::MIN_TTL.as_secs(),
                3600,
            )?),
            heartbeat: Duration::from_millis(read("FERRY_HEARTBEAT_MS", 1000, 100, 60_000)?),
            metrics_every: Duration::from_millis(read(
                "FERRY_METRICS_REPORT_MS",
                10_000,
                500,
                60_000,
            )?),
            metrics: Arc::default(),
            max_row_bytes: usize::try_from(read(
                "FERRY_MAX_ROW_BYTES",
                MAX_ROW_BYTES as u64,
                1024,
                1 << 30,
            )?)
            .unwrap_or(MAX_ROW_BYTES),
            backfill_chunk_rows: u32::try_from(read(
                "FERRY_BACKFILL_CHUNK_ROWS",
                u64::from(BACKFILL_CHUNK_ROWS),
                64,
                1_000_000,
            )?)
            .unwrap_or(BACKFILL_CHUNK_ROWS),
            archive_flush: Duration::from_millis(read(
                "FERRY_ARCHIVE_FLUSH_MS",
                10_000,
                200,
                600_000,
            )?),
        })
    }
}

/// How often a worker looks for cleanup requests (one query of the table): they wait for the
/// deleted instance's lease time anyway.
const CLEANUP_EVERY: Duration = Duration::from_secs(10);

/// What a worker runs for a task it holds.
#[derive(Debug, Clone, Copy)]
enum Run {
    /// The task's loop (with its archive, if it has one).
    Task(Mode),
    /// Only the archive: the task does not run.
    Archive,
}

struct Running {
    stop: watch::Sender<bool>,
    handle: JoinHandle<bool>,
    token: u64,
    started: tokio::time::Instant,
}

/// Transient failures of a task, for exponential backoff: 2 s, 4 s, … up to 60 s; reset once a
/// loop has run for a minute.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    until: Option<tokio::time::Instant>,
}

impl Backoff {
    fn waiting(&self) -> bool {
        self.until.is_some_and(|u| tokio::time::Instant::now() < u)
    }

    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
        let secs = 2u64.saturating_pow(self.failures).min(60);
        self.until = Some(tokio::time::Instant::now() + Duration::from_secs(secs));
    }
}

/// A capture worker.
#[derive(Debug, Clone)]
pub struct Worker {
    state: AppState,
    settings: WorkerSettings,
}

impl Worker {
    pub fn new(state: AppState, settings: WorkerSettings) -> Self {
        Self { state, settings }
    }

    /// Runs until `shutdown` turns true; then stops every loop (each writes its last
    /// checkpoint) and releases the leases.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut running: HashMap<InstanceId, Running> = HashMap::new();
        let mut backoff: HashMap<InstanceId, Backoff> = HashMap::new();
        // The first cleanup at the first poll.
        let mut last_cleanup = tokio::time::Instant::now() - CLEANUP_EVERY;
        loop {
            if let Err(e) = self.converge(&mut running, &mut backoff).await {
                tracing::warn!(error = %e, "worker poll failed; retrying");
            }
            if last_cleanup.elapsed() >= CLEANUP_EVERY {
                last_cleanup = tokio::time::Instant::now();
                if let Err(e) = self.clean_up().await {
                    tracing::warn!(error = %e, "cleanup failed; retrying");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll) => {}
                // A dropped sender is a shutdown too (never a busy loop on a closed channel).
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
            if *shutdown.borrow() {
                break;
            }
        }
        // Every loop is told at once and they stop side by side (each finishes its batch and
        // writes its checkpoint): a shutdown takes as long as the slowest loop, not their sum,
        // which matters under ECS's stop timeout.
        for r in running.values() {
            let _ = r.stop.send(true);
        }
        let stopping = running.into_iter().map(|(instance, r)| async move {
            // The sender stays alive until the loop ended: a dropped one tells the loop the
            // worker is gone, and it would stop at once, mid-transaction, instead of at the
            // transaction's end (a closure or async block captures only the fields it uses).
            let Running {
                stop,
                handle,
                token,
                ..
            } = r;
            let _ = handle.await;
            drop(stop);
            let _ = self
                .state
                .store()
                .release_lease(&instance, &self.settings.id, token, Utc::now())
                .await;
        });
        futures::future::join_all(stopping).await;
    }

    /// Removes what deleted instances and groups left on the broker (see
    /// `ferry_store::CleanupRequest`); a request stays until everything it names is gone, so a
    /// failure is retried at the next poll. Deleting is idempotent: workers may race.
    async fn clean_up(&self) -> Result<(), ferry_store::StoreError> {
        let bootstrap = &self.state.settings().kafka_bootstrap;
        // A loop of the deleted instance stops within a second of noticing, and no later than
        // its lease's time to live: only then is its topic gone for good.
        let settled =
            Utc::now() - chrono::Duration::from_std(self.settings.lease_ttl).unwrap_or_default();
        for req in self.state.store().pending_cleanups().await? {
            if req.requested_at > settled || req.not_before.is_some_and(|t| t > Utc::now()) {
                continue;
            }
            let mut done = true;
            for topic in &req.topics {
                if let Err(e) = ferry_kafka::sink::delete_topic(bootstrap, topic).await {
                    tracing::warn!(instance = %req.instance_id, topic, error = %e, "deleting a topic failed; retrying later");
                    done = false;
                }
            }
            for group in &req.groups {
                if let Err(e) = ferry_kafka::groups::delete_group(bootstrap, group).await {
                    tracing::warn!(instance = %req.instance_id, group, error = %e, "deleting a group's offsets failed; retrying later");
                    done = false;
                }
            }
            // A deleted instance's binlog archive.
            if self.state.archive().bucket().is_some()
                && self
                    .state
                    .store()
                    .get_instance(&req.instance_id)
                    .await?
                    .is_none()
            {
                match self.state.archive().delete_instance(&req.instance_id).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(instance = %req.instance_id, objects = n, "deleted the binlog archive of a deleted instance");
                    }
                    Err(e) => {
                        tracing::warn!(instance = %req.instance_id, error = %e, "deleting the binlog archive failed; retrying later");
                        done = false;
                    }
                }
            }
            if done {
                self.state.store().complete_cleanup(&req).await?;
                tracing::info!(instance = %req.instance_id, topics = ?req.topics, groups = ?req.groups, "cleaned up after a deleted instance or a reset");
            }
        }
        Ok(())
    }

    async fn converge(
        &self,
        running: &mut HashMap<InstanceId, Running>,
        backoff: &mut HashMap<InstanceId, Backoff>,
    ) -> Result<(), ferry_store::StoreError> {
        let finished: Vec<InstanceId> = running
            .iter()
            .filter(|(_, r)| r.handle.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in finished {
            let Some(r) = running.remove(&id) else {
                continue;
            };
            let transient_failure = r.handle.await.unwrap_or(true);
            let entry = backoff.entry(id).or_default();
            if transient_failure {
                entry.failed();
            } else if r.started.elapsed() >= Duration::from_secs(60) {
                *entry = Backoff::default();
            }
        }
        let mut token: Option<PageToken> = None;
        loop {
            let page = self
                .state
                .store()
                .list_instances(100, token.as_ref(), |_| true)
                .await?;
            for instance in page.items {
                let id = instance.value.id().clone();
                if running.contains_key(&id) || backoff.get(&id).is_some_and(Backoff::waiting) {
                    continue;
                }
                let Some(task) = self.state.store().get_task(&id).await? else {
                    continue;
                };
                let Some(config) = &task.value.config else {
                    continue;
                };
                let task_state = task.value.task.state();
                let run = if task_state.wants_worker() {
                    Run::Task(task.value.task.mode())
                } else if config.archive.is_some()
                    && crate::archive::archived_while(task_state)
                    && self.state.archive().bucket().is_some()
                    && self.state.store().get_checkpoint(&id).await?.is_some()
                {
                    Run::Archive
                } else {
                    continue;
                };
                let ttl = chrono::Duration::from_std(self.settings.lease_ttl).unwrap_or_default();
                let started = tokio::time::Instant::now();
                let Some(lease) = self
                    .state
                    .store()
                    .claim_lease(&id, &self.settings.id, Utc::now(), ttl)
                    .await?
                else {
                    continue;
                };
                let claim = Claim {
                    token: lease.token,
                    started,
                };
                running.insert(id.clone(), self.spawn(id, claim, run));
            }
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(()),
            }
        }
    }

    fn spawn(&self, instance: InstanceId, claim: Claim, run: Run) -> Running {
        let token = claim.token;
        let (stop, stop_rx) = watch::channel(false);
        let state = self.state.clone();
        let settings = CaptureSettings {
            worker: self.settings.id.clone(),
            lease_ttl: self.settings.lease_ttl,
            heartbeat: self.settings.heartbeat,
            metrics: Arc::clone(&self.settings.metrics),
            metrics_every: self.settings.metrics_every,
            max_row_bytes: self.settings.max_row_bytes,
            backfill_chunk_rows: self.settings.backfill_chunk_rows,
            archive_flush: self.settings.archive_flush,
            discard: false,
        };
        let worker = self.settings.id.clone();
        // The loop's task answers whether it ended in a transient failure (for the backoff).
        let handle = tokio::spawn(async move {
            let result = match run {
                Run::Task(Mode::Tracking) => {
                    capture_task(&state, &settings, &instance, claim, stop_rx).await
                }
                Run::Task(Mode::Sync) => {
                    crate::sync::sync_task(&state, &settings, &instance, claim, stop_rx).await
                }
                Run::Archive => {
                    crate::archive::archive_only(&state, &settings, &instance, claim, stop_rx).await
                }
            };
            let transient = result.as_ref().is_err_and(TaskError::is_transient);
            match &result {
                Err(TaskError::Definite(error)) => {
                    TaskFailed {
                        instance: &instance,
                        error,
                    }
                    .emit(&settings.metrics);
                    if let Ok(Some(mut task)) = state.store().get_task(&instance).await {
                        let event = TaskEvent::Fail(ferry_domain::task::TaskError {
                            code: error.code().into(),
                            message: error.to_string(),
                            hint: error.hint(),
                        });
                        if let Ok(Some(e)) = transition(&state, &mut task, &event).await {
                            state.events().publish_or_log(&[e]).await;
                        }
                    }
                }
                Err(TaskError::Connection { side, message }) => {
                    ConnectionFailed {
                        instance: &instance,
                        side: *side,
                        message,
                    }
                    .emit(&settings.metrics);
                    let failure = ConnectionFailure {
                        side: *side,
                        message: message.clone(),
                    };
                    if let Err(e) = state
                        .store()
                        .report_failure(&instance, &failure, Utc::now())
                        .await
                    {
                        tracing::warn!(instance = %instance, error = %e, "recording the connection failure failed");
                    }
                }
                _ => {}
            }
            match (run, &result) {
                // Not a task loop: only the archive of a task that does not run.
                (Run::Archive, Ok(())) => {
                    tracing::info!(instance = %instance, "archiving ended: the task runs again, or no longer archives");
                }
                (Run::Archive, Err(e)) => {
                    tracing::warn!(instance = %instance, error = %e, "archiving a task that does not run failed; retried");
                }
                (Run::Task(_), _) => LoopEnded {
                    instance: &instance,
                    result: &result,
                }
                .emit(&settings.metrics),
            }
            if matches!(result, Err(TaskError::LeaseLost)) {
                return false;
            }
            let _ = state
                .store()
                .release_lease(&instance, &worker, token, Utc::now())
                .await;
            transient
        });
        Running {
            stop,
            handle,
            token,
            started: tokio::time::Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_a_minute() {
        let mut b = Backoff::default();
        assert!(!b.waiting());
        b.failed();
        assert!(b.waiting());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!b.waiting(), "2 s after the first failure");
        for _ in 0..10 {
            b.failed();
        }
        tokio::time::advance(Duration::from_secs(59)).await;
        assert!(b.waiting());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(!b.waiting(), "capped at 60 s");
    }
}

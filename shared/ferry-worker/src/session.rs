//! A worker session: what both loops (change tracking's capture, data synchronization's sync)
//! do around their own stages.
//!
//! # Lifecycle
//!
//! 1. [`Session::open`] holds the lease (its renewer runs on a task of its own), reads the task
//!    and its configuration, connects to the source to learn its identity, and fences
//!    everything it writes by the lease's token and the configuration version ([`Fence`]).
//! 2. The loop reads its resume point ([`Session::checkpoint`], refused when it is a position
//!    of another server) or writes the first one ([`Session::first_checkpoint`]); it starts
//!    the metrics reporter with [`Session::report`].
//! 3. While it runs, the loop asks [`Session::converge`] about the desired state (read every
//!    [`CHECK_EVERY`]) and [`Session::should_stop`] whether to stop: stops take effect only at
//!    a transaction boundary, so the last checkpoint covers everything delivered.
//! 4. [`Session::finish`] sends the last counts to the store before the loop returns.
//!
//! # Fencing
//!
//! Every checkpoint carries the lease's fencing token and the loop's configuration version;
//! the store refuses an older token ([`TaskError::LeaseLost`]) or version
//! ([`TaskError::ConfigChanged`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_api::AppState;
use ferry_api::lifecycle::transition;
use ferry_domain::change::ObjectName;
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_domain::position::Position;
use ferry_domain::schema::SchemaCatalog;
use ferry_domain::task::{Stage, TaskEvent, TaskState};
use ferry_domain::task_config::TaskConfig;
use ferry_mysql::ConnectParams;
use ferry_store::{Checkpoint, CheckpointOutcome, TaskRecord, Versioned};
use tokio::sync::watch;

use crate::archive::{ArchiveAt, Archiver, ArchiverSetup};
use crate::error::{TaskError, transient};
use crate::internal_events::CheckpointWritten;
use crate::lease::{Claim, Held, LeaseClock, hold};
use crate::metrics::TaskMeter;
use crate::source::{AbortOnDrop, Events, same_source, source_identity, source_params};

/// How a task's loop behaves.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub worker: WorkerId,
    pub lease_ttl: Duration,
    /// How often the source sends a heartbeat when idle.
    pub heartbeat: Duration,
    /// The worker's metrics, and how often a loop adds its counts to the store.
    pub metrics: Arc<crate::metrics::WorkerMetrics>,
    pub metrics_every: Duration,
    /// The largest row the loop encodes (see `WorkerSettings::max_row_bytes`).
    pub max_row_bytes: usize,
    /// Rows per chunk of a backfill.
    pub backfill_chunk_rows: u32,
    /// How often the binlog archive stores an unfinished piece.
    pub archive_flush: Duration,
    /// Benchmarks only: records are encoded and then discarded instead of delivered (the
    /// worker's own path measured without a broker). No configuration sets it.
    pub discard: bool,
}

/// How often the loop reads its task's desired state.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints are written at most this often (each is a DynamoDB write, and waits for every
/// record before it to be acknowledged).
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Where a checkpoint is: the position after a commit, its source time, and the topic offsets
/// the records after it start at (see `delivery::window`), when known.
pub(crate) type Mark<'a> = (&'a Position, DateTime<Utc>, Option<&'a [i64]>);

/// What a checkpoint write is conditioned on: the lease's fencing token and the configuration
/// version the loop runs.
#[derive(Debug, Clone)]
pub(crate) struct Fence {
    pub(crate) token: u64,
    pub(crate) config_version: u64,
    /// The source server the loop reads (written with every checkpoint).
    pub(crate) source: String,
}

/// What [`Session::converge`] found.
pub(crate) enum Check {
    /// Not read: the last look was less than [`CHECK_EVERY`] ago.
    NotDue,
    /// Read; the configuration is the loop's.
    Same,
    /// Read; the task's configuration version is not the loop's.
    Reconfigured(Box<Versioned<TaskRecord>>),
}

/// One loop's run while this worker holds the task's lease.
pub(crate) struct Session<'a> {
    pub(crate) state: &'a AppState,
    pub(crate) settings: &'a CaptureSettings,
    pub(crate) instance: &'a InstanceId,
    pub(crate) lease: LeaseClock,
    _held: Held,
    /// The configuration the loop runs.
    pub(crate) config: TaskConfig,
    pub(crate) task: Versioned<TaskRecord>,
    pub(crate) params: ConnectParams,
    pub(crate) fence: Fence,
    pub(crate) meter: Arc<TaskMeter>,
    stop: watch::Receiver<bool>,
    /// The task was stopped through the API: the loop stops at the next boundary.
    stopped: bool,
    check_at: tokio::time::Instant,
    /// The stage the loop last entered: a task stopped and started again before the loop saw
    /// the stop is `starting` again while the loop runs on, and is put back in it.
    entered: std::sync::Mutex<Option<Stage>>,
    reporter: Option<(watch::Sender<bool>, AbortOnDrop)>,
    archiver: Option<Archiver>,
}

impl<'a> Session<'a> {
    /// Holds the lease of `claim` and reads the task, its configuration and its source.
    /// `meter` makes the task's meter from the worker's metrics.
    pub(crate) async fn open(
        state: &'a AppState,
        settings: &'a CaptureSettings,
        instance: &'a InstanceId,
        claim: Claim,
        stop: watch::Receiver<bool>,
        meter: impl FnOnce(TaskMeter) -> TaskMeter,
    ) -> Result<Self, TaskError> {
        let held = hold(state, &settings.worker, instance, settings.lease_ttl, claim);
        let task = state
            .store()
            .get_task(instance)
            .await?
            .ok_or_else(|| transient("the task is gone"))?;
        let config = task
            .value
            .config
            .clone()
            .ok_or_else(|| transient("the task has no configuration"))?;
        let params = source_params(state, &config).await?;
        let fence = Fence {
            token: claim.token,
            config_version: task.value.config_version,
            source: source_identity(&params).await?,
        };
        Ok(Self {
            state,
            settings,
            instance,
            lease: held.clock.clone(),
            _held: held,
            config,
            task,
            params,
            fence,
            meter: Arc::new(meter(settings.metrics.task(instance))),
            stop,
            stopped: false,
            check_at: tokio::time::Instant::now(),
            entered: std::sync::Mutex::new(None),
            reporter: None,
            archiver: None,
        })
    }

    /// The task's checkpoint, if it has one; refused when it is a position in another
    /// server's binlog.
    pub(crate) async fn checkpoint(&self) -> Result<Option<Checkpoint>, TaskError> {
        let existing = self.state.store().get_checkpoint(self.instance).await?;
        if let Some(c) = &existing {
            same_source(c, &self.fence.source)?;
        }
        Ok(existing)
    }

    /// The task's checkpoint as stored, wherever it is (a capture loop follows a checkpoint of
    /// another server by GTID: `capture::failover`).
    pub(crate) async fn stored_checkpoint(&self) -> Result<Option<Checkpoint>, TaskError> {
        Ok(self.state.store().get_checkpoint(self.instance).await?)
    }

    /// Writes `c` as the task's checkpoint under the loop's fence (a checkpoint moved to
    /// another server's binlog).
    pub(crate) async fn rewrite_checkpoint(&self, mut c: Checkpoint) -> Result<(), TaskError> {
        c.token = self.fence.token;
        c.written_at = Utc::now();
        self.put_checkpoint(&c).await
    }

    /// Writes the first checkpoint of a task, at `position`, with the topic offsets its
    /// records start at (a capture's: every checkpoint names them, so that a restart always
    /// compares what the topic holds record by record); `None` when the configuration changed
    /// meanwhile (the loop ends and starts again with it).
    pub(crate) async fn first_checkpoint(
        &self,
        position: Position,
        offsets: Option<Vec<i64>>,
    ) -> Result<Option<Checkpoint>, TaskError> {
        let mut c = self.checkpoint_at(position, Utc::now(), None);
        c.offsets = offsets;
        match self.put_checkpoint(&c).await {
            Ok(()) => Ok(Some(c)),
            Err(TaskError::ConfigChanged) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes a checkpoint at `position` with the lease's token and the loop's configuration
    /// version.
    pub(crate) async fn write_checkpoint(
        &self,
        (position, source_time, offsets): Mark<'_>,
        last_key: Option<&str>,
    ) -> Result<(), TaskError> {
        let mut c = self.checkpoint_at(position.clone(), source_time, last_key);
        c.offsets = offsets.map(<[i64]>::to_vec);
        self.put_checkpoint(&c).await?;
        CheckpointWritten {
            instance: self.instance,
            position,
        }
        .emit(&self.meter);
        Ok(())
    }

    fn checkpoint_at(
        &self,
        position: Position,
        source_time: DateTime<Utc>,
        last_key: Option<&str>,
    ) -> Checkpoint {
        Checkpoint {
            position,
            source_time,
            last_key: last_key.map(str::to_owned),
            offsets: None,
            token: self.fence.token,
            written_at: Utc::now(),
            source: Some(self.fence.source.clone()),
        }
    }

    /// The conditional write: refused for a stale token ([`TaskError::LeaseLost`]) or
    /// configuration version ([`TaskError::ConfigChanged`]).
    async fn put_checkpoint(&self, c: &Checkpoint) -> Result<(), TaskError> {
        match self
            .state
            .store()
            .write_checkpoint(self.instance, c, self.fence.config_version)
            .await?
        {
            CheckpointOutcome::Written => Ok(()),
            CheckpointOutcome::Fenced => Err(TaskError::LeaseLost),
            CheckpointOutcome::ConfigChanged => Err(TaskError::ConfigChanged),
        }
    }

    /// Moves the task on to `stage` when it is at an earlier one (a paused task keeps its
    /// stage).
    pub(crate) async fn enter(&self, stage: Stage) -> Result<(), TaskError> {
        *self
            .entered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(stage);
        let mut task = self
            .state
            .store()
            .get_task(self.instance)
            .await?
            .ok_or_else(|| transient("the task is gone"))?;
        let current = task.value.task.state().clone();
        let due = match current {
            TaskState::Starting => true,
            TaskState::SchemaSync => stage != Stage::SchemaSync,
            TaskState::FullSync => stage == Stage::Incremental,
            _ => false,
        };
        if !due {
            return Ok(());
        }
        let event = transition(self.state, &mut task, &TaskEvent::Enter(stage))
            .await
            .map_err(|e| transient(format!("{e:?}")))?;
        self.state
            .events()
            .publish_or_log(&event.into_iter().collect::<Vec<_>>())
            .await;
        Ok(())
    }

    /// The binlog from `at`, decoded with `catalog` for the loop's objects (and `watched`).
    pub(crate) async fn events(
        &self,
        at: &Position,
        catalog: SchemaCatalog,
        watched: Option<ObjectName>,
    ) -> Result<Events, TaskError> {
        Events::open(
            &self.params,
            self.instance,
            at,
            catalog,
            &self.config.objects,
            watched,
            self.settings.heartbeat,
            self.archive_at().as_ref(),
        )
        .await
    }

    /// Where the task's binlog archive is, when it has one (a task configured with `archive`
    /// on a deployment that has since lost its bucket has none: it reads the server only).
    pub(crate) fn archive_at(&self) -> Option<ArchiveAt> {
        self.config.archive.as_ref()?;
        if self.state.archive().bucket().is_none() {
            tracing::warn!(instance = %self.instance, "the task asks for a binlog archive, but this deployment has no archive bucket (FERRY_ARCHIVE_BUCKET): not archived");
            return None;
        }
        Some(ArchiveAt::new(
            self.state,
            self.instance,
            &self.fence.source,
        ))
    }

    /// Starts archiving the source's binlog, when the task asks for it (see `crate::archive`).
    pub(crate) fn archive(&mut self) {
        let (Some(config), Some(at)) = (self.config.archive.clone(), self.archive_at()) else {
            return;
        };
        self.archiver = Some(Archiver::spawn(ArchiverSetup {
            state: self.state.clone(),
            instance: self.instance.clone(),
            params: self.params.clone(),
            at,
            config,
            flush: self.settings.archive_flush,
            heartbeat: self.settings.heartbeat,
            meter: self.settings.metrics.archive(self.instance),
        }));
    }

    /// Starts adding the loop's counts to the store every `metrics_every`.
    pub(crate) fn report(&mut self) {
        let (done, report_done) = watch::channel(false);
        let task = tokio::spawn(Arc::clone(&self.meter).report(
            self.state.clone(),
            self.instance.clone(),
            self.settings.metrics_every,
            report_done,
        ));
        self.reporter = Some((done, AbortOnDrop(task)));
    }

    /// Whether the loop stops now: told to (SIGTERM, a scale-in) or stopped through the API,
    /// and between transactions. A transaction's events follow each other in the binlog:
    /// finishing it takes as long as reading it.
    pub(crate) fn should_stop(&self, in_transaction: bool) -> bool {
        (*self.stop.borrow() || self.stopped) && !in_transaction
    }

    /// Waits until the worker says stop; `true` when the worker is gone (stop at once).
    pub(crate) async fn stop_signal(&mut self) -> bool {
        self.stop.changed().await.is_err()
    }

    /// Reads the desired state when it is due (every [`CHECK_EVERY`]): a task stopped through
    /// the API is noted for [`Session::should_stop`]; a task whose configuration version
    /// differs from the loop's is returned for the loop to decide (adopt a reselection in
    /// place, or end with [`TaskError::ConfigChanged`]).
    pub(crate) async fn converge(&mut self) -> Result<Check, TaskError> {
        if tokio::time::Instant::now() < self.check_at {
            return Ok(Check::NotDue);
        }
        self.check_at = tokio::time::Instant::now() + CHECK_EVERY;
        let current = self
            .state
            .store()
            .get_task(self.instance)
            .await?
            .ok_or_else(|| transient("the task is gone"))?;
        if !current.value.task.state().wants_worker() {
            self.stopped = true;
        }
        // Stopped and started again between two looks: `starting`, while this loop runs on.
        let entered = *self
            .entered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let (TaskState::Starting, Some(stage)) = (current.value.task.state(), entered) {
            self.enter(stage).await?;
        }
        Ok(
            if current.value.config_version == self.fence.config_version {
                Check::Same
            } else {
                Check::Reconfigured(Box::new(current))
            },
        )
    }

    /// The end of the loop: the counts since the last report go to the store.
    pub(crate) async fn finish(&mut self) {
        if let Some((done, mut task)) = self.reporter.take() {
            let _ = done.send(true);
            let _ = (&mut task.0).await;
        }
    }
}

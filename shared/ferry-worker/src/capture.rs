//! The capture loop of one change-tracking task: binlog → filter → encode → Kafka → checkpoint.
//!
//! # Resumption
//!
//! The loop starts from the task's checkpoint, or, on the task's first start, from the
//! source's current position, which it records as the first checkpoint before producing
//! anything. A checkpoint is written only at a transaction's commit and only after the broker
//! acknowledged every record before it, so resuming from it re-reads at most the transactions
//! whose records may already be in the topic. Those are recognised by their idempotency keys:
//! the loop reads the last record of the topic and skips re-read records up to and including
//! that key. The topic therefore holds every change exactly once, in commit order.
//!
//! # Fencing
//!
//! Every checkpoint carries the lease's fencing token; the store refuses a checkpoint older than
//! the newest one. Records are fenced by the lease's local deadline (`crate::lease`): once less
//! than half the lease is left unrenewed, the loop queues nothing more, purges the producer and
//! stops, and every record queued before then is delivered or failed before another worker can
//! claim the task.
//!
//! # Error handling
//!
//! Definite errors (binlog purged, settings changed, privileges revoked, an event or record Ferry
//! cannot handle) are returned as [`CaptureError::Definite`]: the worker puts the task in
//! `failed` with the code, message and hint. Everything else is transient: the worker releases
//! the lease and retries with backoff.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_api::AppState;
use ferry_api::lifecycle::transition;
use ferry_domain::change::{ChangeEvent, ChangeKind, TransactionRef};
use ferry_domain::id::{InstanceId, WorkerId};
use ferry_domain::metrics::Side;
use ferry_domain::position::{BinlogFile, Position};
use ferry_domain::reselect::{SelectionChange, SelectionPlan};
use ferry_domain::schema::{SchemaCatalog, SchemaEntry};
use ferry_domain::selection::{ObjectSelection, OperationKind};
use ferry_domain::task::{Stage, TaskEvent, TaskState};
use ferry_domain::task_config::TaskConfig;
use ferry_kafka::sink::SinkError;
use ferry_mysql::ConnectParams;
use ferry_mysql::binlog::{BinlogReader, ReadEvent, ReaderError, SourceEvent, Start};
use ferry_store::{Checkpoint, CheckpointOutcome, StoreError, TaskRecord};
use mysql_async::prelude::Queryable;
use tokio::sync::watch;

use crate::lease::{Claim, LeaseClock, hold};

use crate::delivery::{Destination, Out, Window};
use crate::heartbeat;
use crate::metrics::WorkerMetrics;

/// How the loop behaves.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub worker: WorkerId,
    pub lease_ttl: Duration,
    /// How often the source sends a heartbeat when idle.
    pub heartbeat: Duration,
    /// The worker's metrics, and how often a loop adds its counts to the store.
    pub metrics: Arc<WorkerMetrics>,
    pub metrics_every: Duration,
}

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Retrying cannot help: the task fails with this code, message and hint.
    #[error("{code}: {message}")]
    Definite {
        code: &'static str,
        message: String,
        hint: String,
    },
    #[error("{0}")]
    Transient(String),
    /// The source or target connection failed: retried like [`CaptureError::Transient`], and
    /// shown as the task's connection status.
    #[error("{side:?} connection: {message}")]
    Connection { side: Side, message: String },
    /// Another worker holds the task now.
    #[error("the lease was lost")]
    LeaseLost,
    /// The lease was not renewed in time (DynamoDB unreachable, or the process was paused):
    /// the loop stopped sending before another worker could claim it; retried like
    /// [`CaptureError::Transient`].
    #[error("the lease was not renewed in time; stopped sending before it could expire")]
    LeaseExpiring,
    /// The task was reset or its objects reselected: the loop stops at a transaction boundary
    /// and the worker starts it again with the new configuration.
    #[error("the task's configuration changed")]
    ConfigChanged,
}

impl From<ReaderError> for CaptureError {
    fn from(e: ReaderError) -> Self {
        match e {
            ReaderError::Server { code: 1236, message } => Self::Definite {
                code: "binlog_purged",
                message: format!("the source no longer has the binlog the task must resume from: {message}"),
                hint: "reset the task to start from the current position (changes made meanwhile are not captured), and keep binlogs longer".into(),
            },
            ReaderError::Server { code: code @ (1045 | 1227 | 1044), message } => Self::Definite {
                code: "source_access_denied",
                message: format!("the source refused the capture user (error {code}): {message}"),
                hint: "grant REPLICATION SLAVE, REPLICATION CLIENT and SELECT to the capture user".into(),
            },
            ReaderError::Definite { message, hint } => Self::Definite { code: "source_stream", message, hint },
            other => source_failed(other),
        }
    }
}

impl From<SinkError> for CaptureError {
    fn from(e: SinkError) -> Self {
        match e {
            SinkError::Definite { message, hint } => Self::Definite {
                code: "kafka",
                message,
                hint,
            },
            SinkError::Transient(message) => Self::Connection {
                side: Side::Target,
                message,
            },
        }
    }
}

impl From<StoreError> for CaptureError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Self::LeaseLost,
            other => Self::Transient(other.to_string()),
        }
    }
}

pub(crate) fn transient(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Transient(e.to_string())
}

/// A failure of the source connection (retried).
pub(crate) fn source_failed(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Connection {
        side: Side::Source,
        message: e.to_string(),
    }
}

/// What a checkpoint write is conditioned on: the lease's fencing token and the configuration
/// version the loop runs.
pub(crate) struct Fence {
    pub(crate) instance: InstanceId,
    pub(crate) token: u64,
    pub(crate) config_version: u64,
    /// The source server the loop reads (written with every checkpoint).
    pub(crate) source: Option<String>,
}

/// How often the loop reads its task's desired state.
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Checkpoints are written at most this often (each is a DynamoDB write, and waits for every
/// record before it to be acknowledged).
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// At most this many records wait for the broker's acknowledgement.
const MAX_PENDING: usize = 10_000;

/// A replica server id for the task: stable for the task, so a takeover replaces the old
/// connection, and unlikely to collide with real servers (high range).
fn replica_server_id(instance: &InstanceId) -> u32 {
    let h = instance.as_str().bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    0x4000_0000 | (h & 0x3fff_ffff)
}

/// Refuses an endpoint whose address the deployment does not allow (the metadata services'
/// link-local range): configuring refuses it too, but the deployment's setting or the name's
/// address may have changed since.
pub(crate) async fn check_endpoint(
    state: &AppState,
    endpoint: &ferry_domain::endpoint::Endpoint,
) -> Result<(), CaptureError> {
    state
        .check_endpoint(endpoint.host(), endpoint.port())
        .await
        .map_err(|refused| CaptureError::Definite {
            code: "endpoint_address_forbidden",
            message: format!("the endpoint `{}` points at {refused}", endpoint.host()),
            hint: "configure the database's own address; to allow this range anyway, the deployment sets FERRY_ENDPOINT_ALLOW".into(),
        })
}

pub(crate) async fn source_params(
    state: &AppState,
    config: &TaskConfig,
) -> Result<ConnectParams, CaptureError> {
    check_endpoint(state, &config.source).await?;
    let password = state
        .secrets()
        .get(config.source.password_secret())
        .await
        .map_err(transient)?;
    Ok(ConnectParams {
        host: config.source.host().to_owned(),
        port: config.source.port(),
        user: config.source.username().to_owned(),
        password: password.expose().to_owned(),
        database: None,
    })
}

/// The source's current position, for a task's first start.
pub(crate) async fn current_position(params: &ConnectParams) -> Result<Position, CaptureError> {
    let mut conn = ferry_mysql::connect(params)
        .await
        .map_err(|e| source_failed(e.message))?;
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(source_failed)?;
    let (file, offset) = row
        .and_then(|r| Some((r.get::<String, _>("File")?, r.get::<u64, _>("Position")?)))
        .ok_or_else(|| CaptureError::Definite {
            code: "source_binlog_off",
            message: "the source shows no binlog position".into(),
            hint: "turn the binary log on and grant REPLICATION CLIENT".into(),
        })?;
    let _ = conn.disconnect().await;
    let file: BinlogFile = file.parse().map_err(transient)?;
    Ok(Position::new(file, offset, None))
}

/// The identity of the source server (see `ferry_mysql::snapshot::server_identity`).
pub(crate) async fn source_identity(params: &ConnectParams) -> Result<String, CaptureError> {
    let mut conn = ferry_mysql::connect(params)
        .await
        .map_err(|e| source_failed(e.message))?;
    let id = ferry_mysql::snapshot::server_identity(&mut conn)
        .await
        .map_err(source_failed)?;
    let _ = conn.disconnect().await;
    Ok(id)
}

/// Refuses to resume from a checkpoint in another server's binlog: its position means nothing
/// there (a failover, or the endpoint pointed at another server without a reset).
pub(crate) fn same_source(checkpoint: &Checkpoint, source: &str) -> Result<(), CaptureError> {
    match &checkpoint.source {
        Some(was) if was != source => Err(CaptureError::Definite {
            code: "source_changed",
            message: format!(
                "the task's checkpoint ({}) is a position in the binlog of server {was}, but the source is now server {source}",
                checkpoint.position
            ),
            hint: "reset the task to start from the new server's current position (a tracking task then writes a new topic generation); changes between the two are not captured".into(),
        }),
        _ => Ok(()),
    }
}

/// Reads the source's catalog and stores it as the schema history's snapshot at `position`.
pub(crate) async fn snapshot_schema(
    state: &AppState,
    instance: &InstanceId,
    params: &ConnectParams,
    position: &Position,
) -> Result<SchemaCatalog, CaptureError> {
    let mut conn = ferry_mysql::connect(params)
        .await
        .map_err(|e| source_failed(e.message))?;
    let catalog = ferry_mysql::ddl::read_catalog(&mut conn)
        .await
        .map_err(source_failed)?;
    let _ = conn.disconnect().await;
    state
        .store()
        .put_schema_entries(instance, position, &catalog.snapshot_entries())
        .await?;
    tracing::info!(instance = %instance, %position, tables = catalog.len(), "schema history snapshot");
    Ok(catalog)
}

/// The schema history at `position`, where the task resumes. A task without one (its history
/// was lost, or it started before Ferry kept one) gets a snapshot now: right for every table
/// whose table maps name their columns (FULL row metadata), and checked against each table
/// map's column count otherwise.
pub(crate) async fn schema_at(
    state: &AppState,
    instance: &InstanceId,
    params: &ConnectParams,
    position: &Position,
) -> Result<SchemaCatalog, CaptureError> {
    let history = state.store().schema_history(instance).await?;
    match SchemaCatalog::at(&history, position) {
        Some(catalog) => Ok(catalog),
        None => {
            tracing::warn!(instance = %instance, %position, "no schema history before the checkpoint: reading the source's catalog now");
            snapshot_schema(state, instance, params, position).await
        }
    }
}

/// How many read and decoded events may wait for the loop: enough to keep both sides busy,
/// small enough not to matter for memory (a rows event holds at most a few thousand rows).
const READ_AHEAD: usize = 64;

/// Stops the reading task when the loop ends, however it ends.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads and decodes the binlog on a task of its own, so decoding runs beside encoding and
/// producing instead of taking turns with them; the bounded channel is the backpressure. The
/// stream's end or an error is passed on and ends the task.
pub(crate) fn read_ahead(
    mut reader: BinlogReader,
) -> (
    tokio::sync::mpsc::Receiver<Result<Option<ReadEvent>, ReaderError>>,
    AbortOnDrop,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    let task = tokio::spawn(async move {
        loop {
            let next = reader.next().await;
            let last = !matches!(next, Ok(Some(_)));
            if tx.send(next).await.is_err() || last {
                break;
            }
        }
        let _ = reader.close().await;
    });
    (rx, AbortOnDrop(task))
}

/// Opens the binlog at `at`, decoding with `catalog` for `objects`.
pub(crate) async fn open_reader(
    params: &ConnectParams,
    instance: &InstanceId,
    at: &Position,
    catalog: SchemaCatalog,
    objects: &ObjectSelection,
    heartbeat: Duration,
) -> Result<BinlogReader, CaptureError> {
    let start = Start::File {
        file: at.file().clone(),
        offset: at.offset(),
    };
    Ok(
        BinlogReader::start(params, replica_server_id(instance), start, heartbeat)
            .await?
            .with_schema(catalog, objects.clone()),
    )
}

/// Whether two configurations differ in nothing but their objects.
fn only_objects_differ(a: &TaskConfig, b: &TaskConfig) -> bool {
    let mut a = a.clone();
    a.objects = b.objects.clone();
    a == *b
}

/// The objects the loop carries, and where they switch (see `ferry_domain::reselect`).
struct Objects {
    current: ObjectSelection,
    /// Switches recorded after the resume position, oldest first: made again exactly there.
    later: VecDeque<SelectionChange>,
    /// A reselection not yet in effect: (configuration version, objects).
    pending: Option<(u64, ObjectSelection)>,
    /// New switches are made only after this position: up to it the topic already holds what
    /// the loop produced before a restart, and re-read records there are skipped, so a table
    /// added before it would miss them.
    not_before: Option<Position>,
}

impl Objects {
    /// The selection at `at` from the task's history, recording `objects` as in effect there
    /// when the history has nothing yet (a first start); a newer `version` than the history
    /// knows is a pending switch.
    async fn resume<'p>(
        state: &AppState,
        instance: &InstanceId,
        at: &Position,
        version: u64,
        objects: &ObjectSelection,
        tails: impl Iterator<Item = &'p Position>,
    ) -> Result<Self, CaptureError> {
        let history = state.store().selection_history(instance).await?;
        let plan = SelectionPlan::at(&history, at);
        let newest = plan.newest_version();
        let current = match plan.current {
            Some(c) => c.objects,
            None => {
                let first = SelectionChange {
                    position: at.clone(),
                    config_version: version,
                    objects: objects.clone(),
                    applied_at: Utc::now(),
                };
                state.store().put_selection_change(instance, &first).await?;
                first.objects
            }
        };
        let pending = newest
            .is_some_and(|n| n < version)
            .then(|| (version, objects.clone()));
        let not_before = tails.fold(None::<Position>, |max, p| match max {
            Some(m) if m.cmp_file_offset(p) != std::cmp::Ordering::Less => Some(m),
            _ => Some(p.clone()),
        });
        Ok(Self {
            current,
            later: plan.later.into(),
            pending,
            not_before,
        })
    }

    /// Takes a reselection of `task` as a pending switch when nothing but the objects changed
    /// since `config`; checkpoints from then on belong to its version.
    fn adopt(&mut self, task: &TaskRecord, config: &TaskConfig, fence: &mut Fence) -> bool {
        match task.config.as_ref() {
            Some(next) if only_objects_differ(next, config) => {
                fence.config_version = task.config_version;
                self.pending = Some((task.config_version, next.objects.clone()));
                true
            }
            _ => false,
        }
    }

    /// The switch due at the transaction boundary `at`, recorded before it is returned: a
    /// recorded one at or before `at`, else a pending one once past `not_before`.
    async fn due(
        &mut self,
        state: &AppState,
        instance: &InstanceId,
        at: &Position,
    ) -> Result<Option<SelectionChange>, CaptureError> {
        use std::cmp::Ordering;
        if let Some(next) = self.later.front()
            && next.position.cmp_file_offset(at) != Ordering::Greater
        {
            let change = self.later.pop_front();
            if let Some(c) = &change {
                self.current = c.objects.clone();
            }
            return Ok(change);
        }
        if !self.later.is_empty()
            || self
                .not_before
                .as_ref()
                .is_some_and(|nb| at.cmp_file_offset(nb) != Ordering::Greater)
        {
            return Ok(None);
        }
        let Some((version, objects)) = self.pending.take() else {
            return Ok(None);
        };
        let change = SelectionChange {
            position: at.clone(),
            config_version: version,
            objects,
            applied_at: Utc::now(),
        };
        state
            .store()
            .put_selection_change(instance, &change)
            .await?;
        self.current = change.objects.clone();
        Ok(Some(change))
    }
}

/// Runs the capture loop of `instance`'s task while this worker holds its lease (`token`), until
/// `stop` turns true, the task is no longer wanted running, or an error.
pub async fn capture_task(
    state: &AppState,
    settings: &CaptureSettings,
    instance: &InstanceId,
    claim: Claim,
    mut stop: watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    // The loop sends nothing once its lease is ending.
    let held = hold(state, &settings.worker, instance, settings.lease_ttl, claim);
    let lease = &held.clock;
    let result = capture_leased(state, settings, instance, claim.token, lease, &mut stop).await;
    if matches!(
        result,
        Err(CaptureError::LeaseLost | CaptureError::LeaseExpiring)
    ) {
        tracing::warn!(instance = %instance, lost = lease.is_lost(), "the lease is ending: stopped sending");
    }
    result
}

async fn capture_leased(
    state: &AppState,
    settings: &CaptureSettings,
    instance: &InstanceId,
    token: u64,
    lease: &LeaseClock,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let store = state.store();
    let mut task = store
        .get_task(instance)
        .await?
        .ok_or_else(|| transient("the task is gone"))?;
    let config = task
        .value
        .config
        .clone()
        .ok_or_else(|| transient("the task has no configuration"))?;
    let config_version = task.value.config_version;
    let topic = state.topic_of(&task.value);
    let params = source_params(state, &config).await?;
    let source = source_identity(&params).await?;
    let mut fence = Fence {
        instance: instance.clone(),
        token,
        config_version,
        source: Some(source.clone()),
    };
    // A checkpoint in another server's binlog is refused before anything reads the topic.
    let existing = store.get_checkpoint(instance).await?;
    if let Some(c) = &existing {
        same_source(c, &source)?;
    }
    let (dest, skip_until) = Destination::open(state, &topic, &config, &source, lease).await?;
    let result = async {

        let (checkpoint, catalog) = match existing {
            Some(c) => {
                let catalog = schema_at(state, instance, &params, &c.position).await?;
                (c, catalog)
            }
            None => {
                let c = Checkpoint {
                    position: current_position(&params).await?,
                    source_time: Utc::now(),
                    last_key: None,
                    token,
                    written_at: Utc::now(),
                    source: Some(source.clone()),
                };
                // The schema history starts here: read a moment after the position, so the first
                // statements replayed may already show in it (applying them again is harmless).
                let catalog = snapshot_schema(state, instance, &params, &c.position).await?;
                match store
                    .write_checkpoint(instance, &c, fence.config_version)
                    .await?
                {
                    CheckpointOutcome::Written => {}
                    CheckpointOutcome::Fenced => return Err(CaptureError::LeaseLost),
                    CheckpointOutcome::ConfigChanged => return Ok(()),
                }
                (c, catalog)
            }
        };
        if matches!(task.value.task.state(), TaskState::Starting) {
            let event = transition(state, &mut task, &TaskEvent::Enter(Stage::Incremental))
                .await
                .map_err(|e| transient(format!("{e:?}")))?;
            state
                .events()
                .publish_or_log(&event.into_iter().collect::<Vec<_>>())
                .await;
        }
        tracing::info!(instance = %instance, position = %checkpoint.position, skip = ?skip_until, "capture starting");

        // The selection in effect at the checkpoint, and the switches recorded after it.
        let mut config = config;
        let mut objects = Objects::resume(
            state,
            instance,
            &checkpoint.position,
            config_version,
            &config.objects,
            skip_until.iter().flatten().map(|t| &t.position),
        )
        .await?;
        config.objects = objects.current.clone();

        let (mut events, mut reading) = read_ahead(
            open_reader(
                &params,
                instance,
                &checkpoint.position,
                catalog,
                &config.objects,
                settings.heartbeat,
            )
            .await?,
        );
        let meter = Arc::new(settings.metrics.task(instance));
        let _heartbeats = config.heartbeat.clone().map(|writer| {
            AbortOnDrop(tokio::spawn(heartbeat::write_heartbeats(
                params.clone(),
                instance.clone(),
                writer,
                Arc::clone(&meter),
            )))
        });
        let (reported, report_done) = watch::channel(false);
        let reporter = AbortOnDrop(tokio::spawn(Arc::clone(&meter).report(
            state.clone(),
            instance.clone(),
            settings.metrics_every,
            report_done,
        )));
        let format = config.delivery.format;
        let mut txid = String::new();
        let mut index: u32 = 0;
        let mut total_order: u64 = 0;
        let mut out = Out {
            meter: &meter,
            dest: &dest,
            format,
            topic: dest.name(&topic),
            skip_until,
            window: Window::new(),
            last_key: checkpoint.last_key.clone(),
            lease,
        };
        // The last commit not yet checkpointed, and when the last checkpoint was written.
        let mut uncheckpointed: Option<(Position, DateTime<Utc>)> = None;
        let mut idle = false;
        let mut checkpointed_at = tokio::time::Instant::now();
        let mut check_at = tokio::time::Instant::now() + CHECK_EVERY;
        let mut in_transaction = false;
        let mut task_stopped = false;
        let mut config_changed = false;
        let mut pending_begin: Option<ChangeEvent> = None;
        let mut begin_written = false;
        let mut selected_in_tx: u64 = 0;

        loop {
            // Told to stop (SIGTERM, a scale-in): at the next transaction boundary, so the last
            // checkpoint covers everything delivered. A transaction's events follow each other in
            // the binlog: finishing it takes as long as reading it.
            if (*stop.borrow() || task_stopped) && !in_transaction {
                break;
            }
            if let Err(e) = lease.check() {
                dest.purge();
                return Err(e.into());
            }
            // Converge to the desired state: stopped, reset or reselected tasks are noticed within
            // CHECK_EVERY, and acted on at the next transaction boundary.
            if tokio::time::Instant::now() >= check_at {
                let current = store
                    .get_task(instance)
                    .await?
                    .ok_or_else(|| transient("the task is gone"))?;
                if !current.value.task.state().wants_worker() {
                    // Stopped through the API: at the same boundary as a worker's stop.
                    task_stopped = true;
                    if !in_transaction {
                        break;
                    }
                }
                if current.value.config_version != fence.config_version
                    && !objects.adopt(&current.value, &config, &mut fence)
                    && !in_transaction
                {
                    config_changed = true;
                    break;
                }
                check_at = tokio::time::Instant::now() + CHECK_EVERY;
            }
            let next = tokio::select! {
                // A dropped sender means the worker is gone: stop as if told to.
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    continue;
                }
                next = tokio::time::timeout(settings.heartbeat * 2, events.recv()) => next,
            };
            let Ok(next) = next else { continue };
            let Some(event) = next.transpose()?.flatten() else {
                return Err(source_failed("the source closed the binlog stream"));
            };
            meter.observe(&event);
            match event.event {
                SourceEvent::Begin { gtid } => {
                    txid = gtid.unwrap_or_else(|| event.position.to_string());
                    index = 0;
                    in_transaction = true;
                    // Written only if the transaction has a selected change (just before it).
                    pending_begin = config.delivery.transaction_records.then(|| ChangeEvent {
                        position: event.position.clone(),
                        server_id: event.server_id,
                        timestamp: event.timestamp,
                        transaction: Some(TransactionRef {
                            id: txid.clone(),
                            event_index: 0,
                        }),
                        kind: ChangeKind::Begin,
                    });
                    begin_written = false;
                    selected_in_tx = 0;
                }
                SourceEvent::Rows(changes) => {
                    for change in changes {
                        // Every row change of the transaction counts, selected or not, so a
                        // record's index (and idempotency key) does not depend on the selection.
                        index += 1;
                        let table = change.table().clone();
                        let name = table.name();
                        // The heartbeat writer's rows: the delay's clock, never delivered.
                        if let Some(writer) = &config.heartbeat
                            && heartbeat::is_heartbeat_table(writer, &name.database, &name.table)
                        {
                            if let Some(ms) = heartbeat::beat_ms(&change, instance) {
                                meter.event_at(ms);
                            }
                            continue;
                        }
                        let Some(selected) = config.objects.table(&name.database, &name.table) else {
                            continue;
                        };
                        let kind = match change.operation() {
                            ferry_domain::change::Operation::Insert => OperationKind::Insert,
                            ferry_domain::change::Operation::Update => OperationKind::Update,
                            ferry_domain::change::Operation::Delete => OperationKind::Delete,
                        };
                        if !config.objects.includes(kind) {
                            continue;
                        }
                        selected_in_tx += 1;
                        if let Some(begin) = pending_begin.take() {
                            out.produce(&begin, total_order, None).await?;
                            begin_written = true;
                        }
                        total_order += 1;
                        let e = ChangeEvent {
                            position: event.position.clone(),
                            server_id: event.server_id,
                            timestamp: event.timestamp,
                            transaction: Some(TransactionRef {
                                id: txid.clone(),
                                event_index: index,
                            }),
                            kind: ChangeKind::Row(change),
                        };
                        out.produce(&e, total_order, selected.columns()).await?;
                    }
                }
                SourceEvent::Ddl {
                    database,
                    statement,
                    schema,
                    subject,
                } => {
                    // Stored before the loop goes past the statement: a checkpoint after it
                    // implies the history has it.
                    if !schema.is_empty() {
                        store
                            .put_schema_entries(instance, &event.position, &schema)
                            .await?;
                    }
                    // Only a statement the parser attributes to a selected table or database is
                    // delivered: accounts, grants (and their passwords), routines never are.
                    let selected = subject.selected(
                        |d, t| config.objects.table(d, t).is_some(),
                        |d| config.objects.includes_database(d),
                    );
                    if !selected {
                        meter.statement_skipped();
                    }
                    // The heartbeat writer creating its table is bookkeeping, not the user's DDL.
                    let own = config.heartbeat.as_ref().is_some_and(|w| {
                        !schema.is_empty()
                            && schema.iter().all(|e| {
                                matches!(e, SchemaEntry::Table { name, .. }
                                    if heartbeat::is_heartbeat_table(w, &name.database, &name.table))
                            })
                    });
                    if selected && !own && config.objects.includes(OperationKind::Ddl) {
                        total_order += 1;
                        let e = ChangeEvent {
                            position: event.position.clone(),
                            server_id: event.server_id,
                            timestamp: event.timestamp,
                            transaction: Some(TransactionRef {
                                id: event.position.to_string(),
                                event_index: 0,
                            }),
                            kind: ChangeKind::Ddl {
                                database,
                                statement,
                            },
                        };
                        out.produce(&e, total_order, None).await?;
                    }
                    // A DDL statement is a transaction of its own: a boundary to checkpoint at.
                    out.window.commit(event.position.clone(), event.timestamp);
                }
                SourceEvent::Commit { xid } => {
                    in_transaction = false;
                    pending_begin = None;
                    if begin_written {
                        begin_written = false;
                        let commit = ChangeEvent {
                            position: event.position.clone(),
                            server_id: event.server_id,
                            timestamp: event.timestamp,
                            transaction: Some(TransactionRef {
                                id: txid.clone(),
                                event_index: index + 1,
                            }),
                            kind: ChangeKind::Commit { xid },
                        };
                        out.produce(&commit, selected_in_tx, None).await?;
                    }
                    out.window.commit(event.position.clone(), event.timestamp);
                }
                SourceEvent::Heartbeat => {
                    if config.delivery.heartbeat_records && !in_transaction {
                        let hb = ChangeEvent {
                            position: event.position.clone(),
                            server_id: event.server_id,
                            timestamp: event.timestamp,
                            transaction: None,
                            kind: ChangeKind::Heartbeat,
                        };
                        out.produce(&hb, total_order, None).await?;
                    }
                    // An idle source: whatever is settled is checkpointed now.
                    idle = true;
                }
            }
            // At a transaction boundary: switch the objects if a switch is due here.
            if !in_transaction
                && let Some(change) = objects.due(state, instance, &event.position).await?
            {
                tracing::info!(instance = %instance, position = %change.position, version = change.config_version, "objects switched");
                let history = store.schema_history(instance).await?;
                let catalog = SchemaCatalog::at(&history, &change.position)
                    .ok_or_else(|| transient("the schema history has no snapshot before the switch"))?;
                config.objects = change.objects;
                // Events read ahead were decoded for the old selection: read again from here.
                drop(reading);
                (events, reading) = read_ahead(
                    open_reader(
                        &params,
                        instance,
                        &change.position,
                        catalog,
                        &config.objects,
                        settings.heartbeat,
                    )
                    .await?,
                );
            }
            // Bounded memory: never more than MAX_PENDING records awaiting acknowledgement; past
            // that, wait for the oldest half while the broker keeps receiving the rest.
            out.window.reap()?;
            if out.window.pending.len() >= MAX_PENDING {
                out.window.wait_oldest(MAX_PENDING / 2).await?;
            }
            if let Some(s) = out.window.settled() {
                uncheckpointed = Some(s);
            }
            if (idle || checkpointed_at.elapsed() >= CHECKPOINT_EVERY)
                && let Some((position, time)) = uncheckpointed.take()
            {
                checkpoint_adopting(
                    state,
                    &mut fence,
                    &mut objects,
                    &config,
                    &position,
                    time,
                    &out.last_key,
                )
                .await?;
                meter.checkpointed();
                checkpointed_at = tokio::time::Instant::now();
            }
            idle = false;
        }
        // The last commit's checkpoint, once everything is acknowledged; refused (and not needed)
        // when the configuration changed: the next loop resumes from the previous one and skips what
        // is in the topic.
        let outstanding = out.window.pending.len();
        out.window.wait_oldest(outstanding).await?;
        if let Some(s) = out.window.settled() {
            uncheckpointed = Some(s);
        }
        if let Some((position, time)) = uncheckpointed.take()
            && !config_changed
        {
            checkpoint_adopting(
                state,
                &mut fence,
                &mut objects,
                &config,
                &position,
                time,
                &out.last_key,
            )
            .await?;
        }
        dest.flush().await?;
        // The counts since the last report go to the store before the loop ends.
        let _ = reported.send(true);
        let mut reporter = reporter;
        let _ = (&mut reporter.0).await;
        if config_changed {
            Err(CaptureError::ConfigChanged)
        } else {
            Ok(())
        }
    }
    .await;
    if result.is_err() {
        // Nothing of this loop may land once it returned: the worker releases the lease and
        // the next loop reads the topic's tail.
        dest.abandon(lease.times().message_timeout()).await;
    }
    result
}

/// Writes a checkpoint. A reselection that landed since the loop last looked makes the store
/// refuse the older configuration version: it is adopted (a switch at the next boundary) and
/// the checkpoint written again, so reselecting never restarts the loop.
async fn checkpoint_adopting(
    state: &AppState,
    fence: &mut Fence,
    objects: &mut Objects,
    config: &TaskConfig,
    position: &Position,
    source_time: DateTime<Utc>,
    last_key: &Option<String>,
) -> Result<(), CaptureError> {
    match write_checkpoint(state, fence, position, source_time, last_key).await {
        Err(CaptureError::ConfigChanged) => {
            let current = state
                .store()
                .get_task(&fence.instance)
                .await?
                .ok_or_else(|| transient("the task is gone"))?;
            if !objects.adopt(&current.value, config, fence) {
                return Err(CaptureError::ConfigChanged);
            }
            write_checkpoint(state, fence, position, source_time, last_key).await
        }
        other => other,
    }
}

/// Writes a checkpoint with the lease's token and the loop's configuration version.
pub(crate) async fn write_checkpoint(
    state: &AppState,
    fence: &Fence,
    position: &Position,
    source_time: DateTime<Utc>,
    last_key: &Option<String>,
) -> Result<(), CaptureError> {
    let c = Checkpoint {
        position: position.clone(),
        source_time,
        last_key: last_key.clone(),
        token: fence.token,
        written_at: Utc::now(),
        source: fence.source.clone(),
    };
    match state
        .store()
        .write_checkpoint(&fence.instance, &c, fence.config_version)
        .await?
    {
        CheckpointOutcome::Written => Ok(()),
        CheckpointOutcome::Fenced => Err(CaptureError::LeaseLost),
        CheckpointOutcome::ConfigChanged => Err(CaptureError::ConfigChanged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_are_stable_and_high() {
        let id = InstanceId::generate();
        assert_eq!(replica_server_id(&id), replica_server_id(&id));
        assert!(replica_server_id(&id) >= 0x4000_0000);
    }
}

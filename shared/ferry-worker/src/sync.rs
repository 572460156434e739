//! The loop of one data-synchronization task: binlog → batch → target, with the full sync's
//! chunks merged in (see [`crate::copy`]).
//!
//! # Stages
//!
//! On its first start the loop records the source's binlog position, reads the source's
//! catalog, creates the selected tables on the target (`schema_sync`), plans every table's
//! chunks, and writes its first checkpoint. From then on one loop does everything: it applies
//! the binlog from the checkpoint and loads chunks as the stream passes their watermarks
//! (`full_sync`); once every chunk is loaded the task is `incremental`, with nothing else
//! changing.
//!
//! # Apply and checkpoints
//!
//! Changes are merged by key into a batch ([`ferry_domain::sync::Batch`]) and applied in one
//! target transaction at a source transaction boundary: after every source transaction in
//! `transactional` mode; in `merge` mode once the batch holds `batch_rows` changes, a chunk is
//! due, a DDL statement comes, the source is idle, or 200 ms passed. The target therefore only
//! ever shows states the source had at a transaction boundary, and stopping leaves it at one.
//! A checkpoint (the last applied commit) is written after the target committed, at most every
//! second. Applying is idempotent (upserts and deletes of full row images by key), so resuming
//! from a checkpoint re-applies at most a second of changes, harmlessly.
//!
//! # Errors
//!
//! As in capture: definite errors (the target refused a value or a login, the binlog is gone)
//! fail the task with a hint; others are retried by the worker with backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_api::AppState;
use ferry_api::lifecycle::transition;
use ferry_domain::change::{ObjectName, Operation};
use ferry_domain::convert::TargetEngine;
use ferry_domain::endpoint::Engine;
use ferry_domain::evolve::{
    TableChange, alter_table, drop_table, rename_table, table_changes, truncate_table,
};
use ferry_domain::id::InstanceId;
use ferry_domain::metrics::Side;
use ferry_domain::position::Position;
use ferry_domain::schema::{SchemaCatalog, TableDef};
use ferry_domain::selection::{ObjectSelection, OperationKind};
use ferry_domain::sync::{ApplyMode, Batch, TargetTable};
use ferry_domain::task::{Stage, TaskEvent, TaskState};
use ferry_domain::task_config::TaskConfig;
use ferry_domain::verify::VerifyState;
use ferry_mysql::binlog::SourceEvent;
use ferry_store::{Checkpoint, CheckpointOutcome, CopyRecord};
use ferry_target::{Target, TargetError, TargetParams};
use tokio::sync::watch;

use crate::capture::{
    AbortOnDrop, CHECK_EVERY, CHECKPOINT_EVERY, CaptureError, CaptureSettings, Fence,
    current_position, open_reader, read_ahead, same_source, schema_at, snapshot_schema,
    source_failed, source_identity, source_params, transient, write_checkpoint,
};
use crate::copy::{Copies, ReadChunk, plan_copy};
use crate::lease::{Claim, LeaseClock, LeaseTimes, hold};
use crate::metrics::TaskMeter;
use crate::verify::VerifyTable;

/// A batch in `merge` mode is applied at least this often.
const MERGE_EVERY: Duration = Duration::from_millis(200);

impl From<TargetError> for CaptureError {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::Definite { message, hint } => Self::Definite {
                code: "target",
                message,
                hint,
            },
            TargetError::Transient(message) => Self::Connection {
                side: Side::Target,
                message,
            },
            TargetError::Fenced => Self::LeaseExpiring,
        }
    }
}

fn target_engine(engine: Engine) -> TargetEngine {
    match engine {
        Engine::Postgresql => TargetEngine::Postgresql,
        Engine::Mysql => TargetEngine::Mysql,
        Engine::Mariadb => TargetEngine::Mariadb,
    }
}

async fn target_params(
    state: &AppState,
    config: &TaskConfig,
    lease: LeaseTimes,
) -> Result<TargetParams, CaptureError> {
    let target = config
        .target
        .as_ref()
        .ok_or_else(|| transient("a sync task without a target"))?;
    crate::capture::check_endpoint(state, target).await?;
    let password = state
        .secrets()
        .get(target.password_secret())
        .await
        .map_err(transient)?;
    Ok(TargetParams {
        engine: target_engine(target.engine()),
        host: target.host().to_owned(),
        port: target.port(),
        user: target.username().to_owned(),
        password: password.expose().to_owned(),
        database: target.database().map(str::to_owned),
        idle_transaction: Some(lease.apply_timeout()),
    })
}

/// The selected tables of `catalog` as target tables.
fn target_tables(
    catalog: &SchemaCatalog,
    objects: &ObjectSelection,
    engine: TargetEngine,
) -> Result<HashMap<ObjectName, (TargetTable, Arc<TableDef>)>, CaptureError> {
    let mut out = HashMap::new();
    for (name, def) in catalog.tables() {
        if let Some(t) = target_table(name, def, objects, engine)? {
            out.insert(name.clone(), (t, Arc::new(def.clone())));
        }
    }
    Ok(out)
}

fn target_table(
    name: &ObjectName,
    def: &TableDef,
    objects: &ObjectSelection,
    engine: TargetEngine,
) -> Result<Option<TargetTable>, CaptureError> {
    let Some(selected) = objects.table(&name.database, &name.table) else {
        return Ok(None);
    };
    let schema = selected.target_database(&name.database);
    let table = selected.target_table(&name.table);
    TargetTable::new(engine, name.clone(), schema, table, def, |c| {
        selected.includes_column(c)
    })
    .map(Some)
    .map_err(|e| CaptureError::Definite {
        code: "type_conversion",
        message: format!("{name}: {e}"),
        hint: e.hint,
    })
}

/// Moves the task to `stage` if it is not there yet.
async fn enter(state: &AppState, instance: &InstanceId, stage: Stage) -> Result<(), CaptureError> {
    let mut task = state
        .store()
        .get_task(instance)
        .await?
        .ok_or_else(|| transient("the task is gone"))?;
    let current = task.value.task.state().clone();
    let already = matches!(
        (&current, stage),
        (TaskState::SchemaSync, Stage::SchemaSync)
            | (TaskState::FullSync, Stage::SchemaSync | Stage::FullSync)
            | (TaskState::Incremental, _)
    );
    if already || !current.wants_worker() {
        return Ok(());
    }
    let event = transition(state, &mut task, &TaskEvent::Enter(stage))
        .await
        .map_err(|e| transient(format!("{e:?}")))?;
    state
        .events()
        .publish_or_log(&event.into_iter().collect::<Vec<_>>())
        .await;
    Ok(())
}

/// The first start: position, schema history, target tables, copy plans, first checkpoint.
async fn first_start(
    state: &AppState,
    instance: &InstanceId,
    config: &TaskConfig,
    params: &ferry_mysql::ConnectParams,
    target: &mut Target,
    engine: TargetEngine,
    fence: &Fence,
) -> Result<Option<Checkpoint>, CaptureError> {
    let position = current_position(params).await?;
    let catalog = snapshot_schema(state, instance, params, &position).await?;
    enter(state, instance, Stage::SchemaSync).await?;
    let tables = target_tables(&catalog, &config.objects, engine)?;
    for (table, def) in tables.values() {
        target.create_table(table, def).await?;
    }
    tracing::info!(instance = %instance, tables = tables.len(), "target tables created");
    enter(state, instance, Stage::FullSync).await?;
    for (name, (table, def)) in &tables {
        let plan = plan_copy(params, name, table, def, config.sync.chunk_rows).await?;
        state.store().put_copy_plan(instance, &plan).await?;
    }
    let c = Checkpoint {
        position,
        source_time: Utc::now(),
        last_key: None,
        token: fence.token,
        written_at: Utc::now(),
        source: fence.source.clone(),
    };
    match state
        .store()
        .write_checkpoint(instance, &c, fence.config_version)
        .await?
    {
        CheckpointOutcome::Written => Ok(Some(c)),
        CheckpointOutcome::Fenced => Err(CaptureError::LeaseLost),
        CheckpointOutcome::ConfigChanged => Ok(None),
    }
}

/// What the loop applies to the target, and when.
struct Applier<'a> {
    target: Target,
    tables: HashMap<ObjectName, TargetTable>,
    batch: Batch,
    mode: ApplyMode,
    batch_rows: usize,
    /// The last source commit in the batch, and its time.
    batched_commit: Option<(Position, DateTime<Utc>)>,
    /// The last commit applied to the target and not yet checkpointed.
    applied: Option<(Position, DateTime<Utc>)>,
    since: tokio::time::Instant,
    meter: &'a TaskMeter,
    /// One apply ends within this, well before the lease could expire (see `crate::lease`).
    apply_timeout: Duration,
}

impl Applier<'_> {
    async fn flush(&mut self) -> Result<(), CaptureError> {
        if !self.batch.is_empty() {
            let bytes = tokio::time::timeout(
                self.apply_timeout,
                self.target.apply(&self.batch, &self.tables),
            )
            .await
            .map_err(|_| CaptureError::Connection {
                side: Side::Target,
                message: format!(
                    "applying a batch took longer than {:?}: given up before the lease could expire",
                    self.apply_timeout
                ),
            })??;
            self.meter.wrote(self.batch.changes(), bytes);
            self.batch = Batch::new();
        }
        if let Some(c) = self.batched_commit.take() {
            self.meter.applied(c.1.timestamp_millis());
            self.applied = Some(c);
        }
        self.since = tokio::time::Instant::now();
        Ok(())
    }

    /// At a source transaction boundary: applies the batch when it is due.
    async fn boundary(&mut self, idle: bool) -> Result<(), CaptureError> {
        let due = match self.mode {
            ApplyMode::Transactional => true,
            ApplyMode::Merge => {
                idle || self.batch.changes() >= self.batch_rows
                    || self.since.elapsed() >= MERGE_EVERY
            }
        };
        if due {
            self.flush().await?;
        }
        Ok(())
    }
}

/// Loads the chunks the stream has passed, after applying what was batched before them.
async fn load_due(
    state: &AppState,
    instance: &InstanceId,
    copies: &mut Copies,
    applier: &mut Applier<'_>,
    due: Vec<ReadChunk>,
) -> Result<(), CaptureError> {
    if due.is_empty() {
        return Ok(());
    }
    let flushed = tokio::time::Instant::now();
    applier.flush().await?;
    tracing::debug!(instance = %instance, ms = flushed.elapsed().as_millis(), "applied before chunks");
    for mut chunk in due {
        let Some(table) = applier.tables.get(&chunk.table) else {
            continue;
        };
        let rows = copies.rows_to_load(&mut chunk, table);
        applier.target.load_rows(table, &rows).await?;
        let n = rows.len() as u64;
        state
            .store()
            .mark_chunk_done(instance, &chunk.table, chunk.index, n)
            .await?;
        copies.loaded(&chunk.table, chunk.index, n);
        tracing::debug!(instance = %instance, table = %chunk.table, chunk = chunk.index, rows = n, high = %chunk.rows.high, waited_ms = chunk.read_at.elapsed().as_millis(), "chunk loaded");
    }
    Ok(())
}

/// Runs the sync loop of `instance`'s task while this worker holds its lease (`token`), until
/// `stop` turns true, the task is no longer wanted running, or an error.
pub async fn sync_task(
    state: &AppState,
    settings: &CaptureSettings,
    instance: &InstanceId,
    claim: Claim,
    mut stop: watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let held = hold(state, &settings.worker, instance, settings.lease_ttl, claim);
    sync_leased(
        state,
        settings,
        instance,
        claim.token,
        &held.clock,
        &mut stop,
    )
    .await
}

async fn sync_leased(
    state: &AppState,
    settings: &CaptureSettings,
    instance: &InstanceId,
    token: u64,
    lease: &LeaseClock,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), CaptureError> {
    let store = state.store();
    let task = store
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
        instance: instance.clone(),
        token,
        config_version: task.value.config_version,
        source: Some(source_identity(&params).await?),
    };
    let tparams = target_params(state, &config, lease.times()).await?;
    let engine = tparams.engine;
    let mut target = Target::connect(&tparams).await?;
    let guard = lease.clone();
    target.guard(Arc::new(move || guard.check().is_ok()));

    let (checkpoint, catalog) = match store.get_checkpoint(instance).await? {
        Some(c) => {
            same_source(&c, fence.source.as_deref().unwrap_or_default())?;
            let catalog = schema_at(state, instance, &params, &c.position).await?;
            (c, catalog)
        }
        None => {
            let Some(c) = first_start(
                state,
                instance,
                &config,
                &params,
                &mut target,
                engine,
                &fence,
            )
            .await?
            else {
                return Err(CaptureError::ConfigChanged);
            };
            let catalog = schema_at(state, instance, &params, &c.position).await?;
            (c, catalog)
        }
    };
    let selected = target_tables(&catalog, &config.objects, engine)?;
    let defs: HashMap<ObjectName, Arc<TableDef>> = selected
        .iter()
        .map(|(n, (_, d))| (n.clone(), Arc::clone(d)))
        .collect();
    let mut records: Vec<CopyRecord> = store.copy_records(instance).await?;
    // Tables selected since the last start (a reselection) are created and copied; tables no
    // longer selected are no longer applied and their copies forgotten.
    for r in &records {
        if !selected.contains_key(&r.plan.table) {
            store.delete_copy(instance, &r.plan.table).await?;
            tracing::info!(instance = %instance, table = %r.plan.table, "table no longer selected");
        }
    }
    records.retain(|r| selected.contains_key(&r.plan.table));
    for (name, (table, def)) in &selected {
        if records.iter().any(|r| &r.plan.table == name) {
            continue;
        }
        target.create_table(table, def).await?;
        let plan = plan_copy(&params, name, table, def, config.sync.chunk_rows).await?;
        store.put_copy_plan(instance, &plan).await?;
        tracing::info!(instance = %instance, table = %name, chunks = plan.chunks(), "table added: created on the target, copy planned");
        records.push(CopyRecord {
            plan,
            done: Default::default(),
            rows_done: 0,
        });
    }
    let mut copies = Copies::new(
        records,
        &defs,
        params.clone(),
        usize::from(config.sync.parallel),
    );
    if copies.all_done() {
        enter(state, instance, Stage::Incremental).await?;
    } else {
        enter(state, instance, Stage::FullSync).await?;
    }
    tracing::info!(instance = %instance, position = %checkpoint.position, "sync starting");

    let mut catalog = catalog;
    let (mut events, _reading) = read_ahead(
        open_reader(
            &params,
            instance,
            &checkpoint.position,
            catalog.clone(),
            &config.objects,
            settings.heartbeat,
        )
        .await?,
    );
    let meter = settings.metrics.task(instance).for_sync();
    let (reported, report_done) = watch::channel(false);
    let meter = Arc::new(meter);
    let reporter = AbortOnDrop(tokio::spawn(Arc::clone(&meter).report(
        state.clone(),
        instance.clone(),
        settings.metrics_every,
        report_done,
    )));
    let mut applier = Applier {
        target,
        tables: selected.into_iter().map(|(n, (t, _))| (n, t)).collect(),
        batch: Batch::new(),
        mode: config.sync.apply,
        batch_rows: config.sync.batch_rows as usize,
        batched_commit: None,
        applied: None,
        since: tokio::time::Instant::now(),
        meter: &meter,
        apply_timeout: lease.times().apply_timeout(),
    };
    let mut stream_at = checkpoint.position.clone();
    let mut in_transaction = false;
    let mut task_stopped = false;
    let mut incremental = copies.all_done();
    let mut checkpointed_at = tokio::time::Instant::now();
    let mut check_at = tokio::time::Instant::now();
    let mut verifying: Option<AbortOnDrop> = None;

    loop {
        // Told to stop (SIGTERM, a scale-in): at the next transaction boundary, so the last
        // checkpoint covers everything delivered. A transaction's events follow each other in
        // the binlog: finishing it takes as long as reading it.
        if (*stop.borrow() || task_stopped) && !in_transaction {
            break;
        }
        lease.check()?;
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
            if verifying.as_ref().is_none_or(|v| v.0.is_finished()) {
                verifying = start_verification(
                    state, instance, &params, &tparams, &applier, &copies, &catalog,
                )
                .await?;
            }
            if current.value.config_version != fence.config_version && !in_transaction {
                applier.flush().await?;
                checkpoint_applied(state, &fence, &mut applier).await?;
                return Err(CaptureError::ConfigChanged);
            }
            check_at = tokio::time::Instant::now() + CHECK_EVERY;
        }
        copies.start_reads(&stream_at).await?;
        let next = tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
            read = copies.next_read(), if copies.reading() => {
                read?;
                continue;
            }
            next = tokio::time::timeout(settings.heartbeat * 2, events.recv()) => next,
        };
        let Ok(next) = next else {
            // No event: an idle boundary, if outside a transaction.
            if !in_transaction {
                applier.boundary(true).await?;
            }
            continue;
        };
        let Some(event) = next.transpose()?.flatten() else {
            return Err(source_failed("the source closed the binlog stream"));
        };
        // Chunks whose high watermark this event is past are loaded before it.
        let idle = matches!(event.event, SourceEvent::Heartbeat);
        if !in_transaction {
            let due = copies.due(&event.position, idle);
            load_due(state, instance, &mut copies, &mut applier, due).await?;
        }
        meter.observe(&event);
        match event.event {
            SourceEvent::Begin { .. } => in_transaction = true,
            SourceEvent::Rows(changes) => {
                for change in changes {
                    let name = change.table().name().clone();
                    let Some(table) = applier.tables.get(&name) else {
                        continue;
                    };
                    let kind = match change.operation() {
                        Operation::Insert => OperationKind::Insert,
                        Operation::Update => OperationKind::Update,
                        Operation::Delete => OperationKind::Delete,
                    };
                    if !config.objects.includes(kind) {
                        continue;
                    }
                    if table.key.is_empty() {
                        // A keyless table's changes until its chunk is loaded are in the chunk.
                        if !copies.table_done(&name) {
                            continue;
                        }
                    } else {
                        for image in [change.before(), change.after()].into_iter().flatten() {
                            copies.touch(&name, table.key_bytes(image), &event.position);
                        }
                    }
                    applier.batch.push(change);
                }
            }
            SourceEvent::Ddl {
                schema,
                database,
                statement,
                ..
            } => {
                let truncated: Vec<ObjectName> = if config.objects.includes(OperationKind::Ddl) {
                    ferry_mysql::ddl::truncated_tables(database.as_deref(), &statement)
                        .into_iter()
                        .filter(|t| applier.tables.contains_key(t))
                        .collect()
                } else {
                    Vec::new()
                };
                if !schema.is_empty() || !truncated.is_empty() {
                    applier.flush().await?;
                }
                if !schema.is_empty() {
                    store
                        .put_schema_entries(instance, &event.position, &schema)
                        .await?;
                }
                let changes = table_changes(&schema, |n| catalog.get(n));
                let mut evolution = Evolution {
                    state,
                    instance,
                    config: &config,
                    params: &params,
                    engine,
                    applier: &mut applier,
                    copies: &mut copies,
                };
                for name in &truncated {
                    truncate(&mut evolution, name, catalog.get(name)).await?;
                }
                for entry in &schema {
                    catalog.apply(entry);
                }
                for change in changes {
                    follow(&mut evolution, change).await?;
                }
                applier.batched_commit = Some((event.position.clone(), event.timestamp));
                applier.flush().await?;
                // Checkpointed at once: target DDL is not idempotent (a column added twice
                // fails), so a restart must not apply the statement again.
                if !schema.is_empty() || !truncated.is_empty() {
                    checkpoint_applied(state, &fence, &mut applier).await?;
                    checkpointed_at = tokio::time::Instant::now();
                }
            }
            SourceEvent::Commit { .. } => {
                in_transaction = false;
                applier.batched_commit = Some((event.position.clone(), event.timestamp));
                applier.boundary(false).await?;
            }
            SourceEvent::Heartbeat => {
                if !in_transaction {
                    applier.boundary(true).await?;
                }
            }
        }
        stream_at = event.position.clone();
        if !incremental && copies.all_done() {
            applier.flush().await?;
            enter(state, instance, Stage::Incremental).await?;
            incremental = true;
            tracing::info!(instance = %instance, position = %stream_at, "full sync done");
        }
        if checkpointed_at.elapsed() >= CHECKPOINT_EVERY && applier.applied.is_some() {
            checkpoint_applied(state, &fence, &mut applier).await?;
            meter.checkpointed();
            checkpointed_at = tokio::time::Instant::now();
        }
    }
    // Stopped: apply what is batched up to the last commit. Inside a transaction the batch
    // holds part of it: dropped, the target stays at the last applied boundary and the next
    // start re-applies from the checkpoint.
    if !in_transaction {
        applier.flush().await?;
    }
    checkpoint_applied(state, &fence, &mut applier).await?;
    applier.target.close().await;
    let _ = reported.send(true);
    let mut reporter = reporter;
    let _ = (&mut reporter.0).await;
    Ok(())
}

/// Starts the task's pending verification, if there is one, on a task of its own. Called only
/// when no verification of this loop runs.
async fn start_verification(
    state: &AppState,
    instance: &InstanceId,
    params: &ferry_mysql::ConnectParams,
    tparams: &TargetParams,
    applier: &Applier<'_>,
    copies: &Copies,
    catalog: &SchemaCatalog,
) -> Result<Option<AbortOnDrop>, CaptureError> {
    let Some((mut v, version)) = state.store().get_verification(instance).await? else {
        return Ok(None);
    };
    // Pending, or running without a task: this loop runs none, so a running one was left by a
    // loop that ended (a restart, a takeover) before finishing it. It starts again.
    if !matches!(v.state, VerifyState::Pending | VerifyState::Running) {
        return Ok(None);
    }
    if v.state == VerifyState::Running {
        tracing::info!(instance = %instance, verification = %v.id, "a verification left running by an earlier loop starts again");
    }
    v.state = VerifyState::Running;
    match state
        .store()
        .put_verification(instance, &v, Some(version))
        .await
    {
        Ok(_) => {}
        // Another request replaced it meanwhile: seen at the next check.
        Err(ferry_store::StoreError::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut tables: Vec<VerifyTable> = applier
        .tables
        .iter()
        .filter_map(|(name, target)| {
            Some(VerifyTable {
                name: name.clone(),
                target: target.clone(),
                def: Arc::new(catalog.get(name)?.clone()),
                bounds: copies.bounds(name),
            })
        })
        .collect();
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    tracing::info!(instance = %instance, verification = %v.id, tables = tables.len(), "verification starting");
    Ok(Some(AbortOnDrop(tokio::spawn(crate::verify::run(
        state.clone(),
        instance.clone(),
        v.id,
        params.clone(),
        tparams.clone(),
        tables,
    )))))
}

/// What following a DDL statement on the target needs.
struct Evolution<'e, 'a> {
    state: &'e AppState,
    instance: &'e InstanceId,
    config: &'e TaskConfig,
    params: &'e ferry_mysql::ConnectParams,
    engine: TargetEngine,
    applier: &'e mut Applier<'a>,
    copies: &'e mut Copies,
}

/// Plans `table`'s copy from scratch and starts it (a table that appeared, or whose
/// definition changed while it was being copied).
async fn copy_again(
    e: &mut Evolution<'_, '_>,
    name: &ObjectName,
    table: &TargetTable,
    def: &TableDef,
) -> Result<(), CaptureError> {
    e.copies.remove(name);
    let plan = plan_copy(e.params, name, table, def, e.config.sync.chunk_rows).await?;
    e.state.store().put_copy_plan(e.instance, &plan).await?;
    e.copies.add(
        CopyRecord {
            plan,
            done: Default::default(),
            rows_done: 0,
        },
        Arc::new(def.clone()),
    );
    Ok(())
}

/// Empties `name`'s target table, as the source's `TRUNCATE` did. A table still being copied is
/// copied again from scratch: chunks read before the statement must not bring rows back.
async fn truncate(
    e: &mut Evolution<'_, '_>,
    name: &ObjectName,
    def: Option<&TableDef>,
) -> Result<(), CaptureError> {
    let Some(table) = e.applier.tables.get(name).cloned() else {
        return Ok(());
    };
    e.applier
        .target
        .execute(&[truncate_table(e.engine, &table.schema, &table.name)])
        .await?;
    if let Some(def) = def
        && !e.copies.table_done(name)
    {
        copy_again(e, name, &table, def).await?;
    }
    tracing::info!(instance = %e.instance, table = %name, "table truncated on the target");
    Ok(())
}

/// Makes the target follow one table change of a DDL statement (see `ferry_domain::evolve`).
async fn follow(e: &mut Evolution<'_, '_>, change: TableChange) -> Result<(), CaptureError> {
    let unconvertible =
        |name: &ObjectName, u: ferry_domain::convert::Unconvertible| CaptureError::Definite {
            code: "type_conversion",
            message: format!("{name}: {u}"),
            hint: u.hint,
        };
    match change {
        TableChange::Created { name, def } => {
            let Some(table) = target_table(&name, &def, &e.config.objects, e.engine)? else {
                return Ok(());
            };
            e.applier.target.create_table(&table, &def).await?;
            copy_again(e, &name, &table, &def).await?;
            tracing::info!(instance = %e.instance, table = %name, "table created on the target");
            e.applier.tables.insert(name, table);
        }
        TableChange::Dropped { name } => {
            if let Some(table) = e.applier.tables.remove(&name) {
                e.applier
                    .target
                    .execute(&[drop_table(e.engine, &table.schema, &table.name)])
                    .await?;
                e.copies.remove(&name);
                e.state.store().delete_copy(e.instance, &name).await?;
                tracing::info!(instance = %e.instance, table = %name, "table dropped on the target");
            }
        }
        TableChange::Renamed { from, to, def } => {
            let old = e.applier.tables.remove(&from);
            let new = target_table(&to, &def, &e.config.objects, e.engine)?;
            match (old, new) {
                (Some(old), Some(new)) => {
                    e.applier
                        .target
                        .execute(&rename_table(
                            e.engine,
                            (&old.schema, &old.name),
                            (&new.schema, &new.name),
                        ))
                        .await?;
                    if !e.copies.table_done(&from) {
                        copy_again(e, &to, &new, &def).await?;
                    }
                    e.copies.remove(&from);
                    e.applier.tables.insert(to, new);
                }
                // Renamed out of the selection: no longer applied; the target table stays.
                (Some(_), None) => e.copies.remove(&from),
                // Renamed into the selection: a new table with rows to copy.
                (None, Some(new)) => {
                    e.applier.target.create_table(&new, &def).await?;
                    copy_again(e, &to, &new, &def).await?;
                    e.applier.tables.insert(to, new);
                }
                (None, None) => {}
            }
        }
        TableChange::Altered { name, old, new } => {
            let Some(current) = e.applier.tables.get(&name) else {
                return Ok(());
            };
            let Some(selected) = e.config.objects.table(&name.database, &name.table) else {
                return Ok(());
            };
            let statements =
                alter_table(e.engine, &current.schema, &current.name, &old, &new, |c| {
                    selected.includes_column(c)
                })
                .map_err(|u| unconvertible(&name, u))?;
            e.applier.target.execute(&statements).await?;
            let Some(table) = target_table(&name, &new, &e.config.objects, e.engine)? else {
                return Ok(());
            };
            if !e.copies.table_done(&name) {
                copy_again(e, &name, &table, &new).await?;
            }
            tracing::info!(instance = %e.instance, table = %name, statements = statements.len(), "table altered on the target");
            e.applier.tables.insert(name, table);
        }
    }
    Ok(())
}

/// Writes the last applied commit as the checkpoint.
async fn checkpoint_applied(
    state: &AppState,
    fence: &Fence,
    applier: &mut Applier<'_>,
) -> Result<(), CaptureError> {
    if let Some((position, time)) = applier.applied.take() {
        write_checkpoint(state, fence, &position, time, &None).await?;
    }
    Ok(())
}

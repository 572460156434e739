//! Setting a sync task up: the target's connection, the selected tables as target tables, and
//! the first start (position, schema history, target tables, copy plans, first checkpoint).

use std::collections::HashMap;
use std::sync::Arc;

use ferry_api::AppState;
use ferry_domain::change::ObjectName;
use ferry_domain::convert::TargetEngine;
use ferry_domain::endpoint::Engine;
use ferry_domain::evolve::drop_table;
use ferry_domain::position::Position;
use ferry_domain::reselect::SelectionChange;
use ferry_domain::schema::{SchemaCatalog, TableDef};
use ferry_domain::selection::ObjectSelection;
use ferry_domain::sync::TargetTable;
use ferry_domain::target_table::ConflictingTables;
use ferry_domain::task::Stage;
use ferry_domain::task_config::TaskConfig;
use ferry_store::{Checkpoint, CopyRecord};
use ferry_target::{Target, TargetParams};

use crate::copy::{Copies, plan_copy};
use crate::error::{DefiniteError, TaskError, transient};
use crate::lease::LeaseTimes;
use crate::session::Session;
use crate::source::{check_endpoint, current_position, snapshot_schema};

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
) -> Result<TargetParams, TaskError> {
    let target = config
        .target
        .as_ref()
        .ok_or_else(|| transient("a sync task without a target"))?;
    check_endpoint(state, target).await?;
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

/// Connects to the task's target, guarded by the lease: nothing is committed once it is ending.
pub(super) async fn connect_target(
    session: &Session<'_>,
) -> Result<(Target, TargetParams), TaskError> {
    let tparams = target_params(session.state, &session.config, session.lease.times()).await?;
    let target = connect_guarded(&tparams, &session.lease).await?;
    Ok((target, tparams))
}

/// One more connection to the target, guarded by `lease` like the first.
pub(super) async fn connect_guarded(
    params: &TargetParams,
    lease: &crate::lease::LeaseClock,
) -> Result<Target, TaskError> {
    let mut target = Target::connect(params).await?;
    let guard = lease.clone();
    target.guard(Arc::new(move || guard.check().is_ok()));
    Ok(target)
}

/// The selected tables of `catalog` as target tables.
pub(super) fn target_tables(
    catalog: &SchemaCatalog,
    objects: &ObjectSelection,
    engine: TargetEngine,
) -> Result<HashMap<ObjectName, (TargetTable, Arc<TableDef>)>, TaskError> {
    let mut out = HashMap::new();
    for (name, def) in catalog.tables() {
        if let Some(t) = target_table(name, def, objects, engine)? {
            out.insert(name.clone(), (t, Arc::new(def.clone())));
        }
    }
    Ok(out)
}

pub(super) fn target_table(
    name: &ObjectName,
    def: &TableDef,
    objects: &ObjectSelection,
    engine: TargetEngine,
) -> Result<Option<TargetTable>, TaskError> {
    let Some(selected) = objects.table(&name.database, &name.table) else {
        return Ok(None);
    };
    let schema = selected.target_database(&name.database);
    let table = selected.target_table(&name.table);
    TargetTable::new(engine, name.clone(), schema, table, def, |c| {
        selected.includes_column(c)
    })
    .map(Some)
    .map_err(|e| {
        DefiniteError::TypeConversion {
            table: name.to_string(),
            message: e.to_string(),
            hint: e.hint,
        }
        .into()
    })
}

/// Creates `table` on the target at schema sync, unless it exists; with
/// `sync.conflicting_tables: recreate`, an existing one is dropped first.
async fn create_table(
    target: &mut Target,
    config: &TaskConfig,
    table: &TargetTable,
    def: &TableDef,
) -> Result<(), TaskError> {
    if config.sync.conflicting_tables == ConflictingTables::Recreate {
        target
            .execute(&[drop_table(table.engine, &table.schema, &table.name)])
            .await?;
    }
    target.create_table(table, def).await?;
    Ok(())
}

/// The first start: position, schema history, target tables, copy plans, first checkpoint.
/// `None` when the configuration changed meanwhile.
pub(super) async fn first_start(
    session: &Session<'_>,
    target: &mut Target,
    engine: TargetEngine,
) -> Result<Option<Checkpoint>, TaskError> {
    let (state, instance, params, config) = (
        session.state,
        session.instance,
        &session.params,
        &session.config,
    );
    let position = current_position(params).await?;
    let catalog = snapshot_schema(state, instance, params, &position).await?;
    session.enter(Stage::SchemaSync).await?;
    let tables = target_tables(&catalog, &config.objects, engine)?;
    for (table, def) in tables.values() {
        create_table(target, config, table, def).await?;
    }
    tracing::info!(instance = %instance, tables = tables.len(), "target tables created");
    session.enter(Stage::FullSync).await?;
    for (name, (table, def)) in &tables {
        let plan = plan_copy(params, name, table, def, config.sync.chunk_rows).await?;
        state.store().put_copy_plan(instance, &plan).await?;
    }
    // What an earlier run of the task (before a reset) recorded applying no longer holds.
    target.forget_progress(&instance.to_string()).await?;
    session.first_checkpoint(position, None).await
}

/// The checkpoint to resume from: `checkpoint`, or the position the target's progress table
/// records when the worker before stopped after committing a batch and before checkpointing it
/// (a crash): the checkpoint is moved there first, so nothing of that batch is applied twice.
pub(super) async fn resume_from_target(
    session: &Session<'_>,
    target: &mut Target,
    checkpoint: Checkpoint,
) -> Result<Checkpoint, TaskError> {
    let Some(applied) = target.progress(&session.instance.to_string()).await? else {
        return Ok(checkpoint);
    };
    if applied.source != session.fence.source {
        tracing::warn!(instance = %session.instance, recorded = %applied.source, source = %session.fence.source, "the target's progress row is of another source server: resuming from the checkpoint");
        return Ok(checkpoint);
    }
    let position: Position = applied.position.parse().map_err(|e| {
        ferry_target::TargetError::Definite {
            message: format!(
                "the target's progress row of this task holds {:?}, not a binlog position: {e}",
                applied.position
            ),
            hint: format!(
                "it was changed by hand: delete the row of {} from {}.{} on the target, and Ferry resumes from its checkpoint",
                session.instance,
                ferry_target::progress::SCHEMA,
                ferry_target::progress::TABLE
            ),
        }
    })?;
    if position.cmp_file_offset(&checkpoint.position) != std::cmp::Ordering::Greater {
        return Ok(checkpoint);
    }
    let time = chrono::DateTime::from_timestamp_millis(applied.source_time_ms)
        .unwrap_or(checkpoint.source_time);
    tracing::info!(instance = %session.instance, checkpoint = %checkpoint.position, applied = %position, "the target holds more than the checkpoint: resuming from what it applied");
    session
        .write_checkpoint((&position, time, None), None)
        .await?;
    session
        .checkpoint()
        .await?
        .ok_or_else(|| transient("the checkpoint just written is gone"))
}

/// The target tables of the selection and the copies of their rows. Tables selected since the
/// last start (a reselection) are created on the target and their copies planned; tables no
/// longer selected are no longer applied and their copies forgotten.
pub(super) async fn copies_of(
    session: &Session<'_>,
    target: &mut Target,
    catalog: &SchemaCatalog,
    engine: TargetEngine,
) -> Result<(HashMap<ObjectName, TargetTable>, Copies), TaskError> {
    let (store, instance, params) = (session.state.store(), session.instance, &session.params);
    let config = &session.config;
    let selected = target_tables(catalog, &config.objects, engine)?;
    let defs: HashMap<ObjectName, Arc<TableDef>> = selected
        .iter()
        .map(|(n, (_, d))| (n.clone(), Arc::clone(d)))
        .collect();
    let mut records: Vec<CopyRecord> = store.copy_records(instance).await?;
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
        create_table(target, config, table, def).await?;
        let plan = plan_copy(params, name, table, def, config.sync.chunk_rows).await?;
        store.put_copy_plan(instance, &plan).await?;
        tracing::info!(instance = %instance, table = %name, chunks = plan.chunks(), "table added: created on the target, copy planned");
        records.push(CopyRecord {
            plan,
            done: Default::default(),
            rows_done: 0,
        });
    }
    let copies = Copies::new(
        records,
        &defs,
        params.clone(),
        usize::from(config.sync.parallel),
        config.objects.clone(),
    );
    let tables = selected.into_iter().map(|(n, (t, _))| (n, t)).collect();
    Ok((tables, copies))
}

/// Records the selection the loop applies from `at`, once per configuration version, so that
/// `GET …/task` shows where a reselection took effect (`objects_applied`), as for tracking.
/// A sync loop switches by stopping at a transaction boundary and starting again with the new
/// configuration: `at` is where the new one starts.
pub(super) async fn note_selection(session: &Session<'_>, at: &Position) -> Result<(), TaskError> {
    let store = session.state.store();
    let version = session.fence.config_version;
    let history = store.selection_history(session.instance).await?;
    if history.iter().any(|c| c.config_version >= version) {
        return Ok(());
    }
    let change = SelectionChange {
        position: at.clone(),
        config_version: version,
        objects: session.config.objects.clone(),
        applied_at: chrono::Utc::now(),
    };
    store
        .put_selection_change(session.instance, &change)
        .await?;
    Ok(())
}

//! `POST/GET/DELETE /v1/instances/{id}/task/backfill`: copy tables' existing rows into a
//! tracking task's topic while its changes keep flowing, see how far it is, cancel it (see
//! `ferry_domain::backfill`). The worker running the task does the work; a backfill asked for
//! while the task is stopped starts when it runs.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_api::lifecycle::{load_instance, load_task};
use ferry_api::{ApiError, ApiResult, AppState, Body, InstancePath};
use ferry_domain::backfill::{Backfill, BackfillRequest, BackfillState};
use ferry_domain::change::ObjectName;
use ferry_domain::id::InstanceId;
use ferry_domain::instance::Mode;
use ferry_domain::schema::SchemaCatalog;
use ferry_domain::selection::ObjectSelection;
use ferry_store::{StoreError, TaskRecord, Versioned};
use serde_json::json;

use crate::{active_instance, configured};

/// The task's latest backfill with each table's progress, and its version.
pub(crate) async fn with_progress(
    state: &AppState,
    id: &InstanceId,
) -> ApiResult<Option<(Backfill, u64)>> {
    let Some((mut backfill, version)) = state.store().get_backfill(id).await? else {
        return Ok(None);
    };
    let records = state.store().copy_records(id).await?;
    backfill.progress = backfill
        .tables
        .iter()
        .filter_map(|t| {
            records
                .iter()
                .find(|r| &r.plan.table == t && r.plan.backfill.as_ref() == Some(&backfill.id))
                .map(ferry_store::CopyRecord::progress)
        })
        .collect();
    Ok(Some((backfill, version)))
}

pub(crate) async fn request(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
    Body(body): Body<BackfillRequest>,
) -> ApiResult<(StatusCode, Json<Backfill>)> {
    active_instance(&state, &id).await?;
    let task = load_task(&state, &id).await?;
    let config = configured(&task)?;
    check_can_add(&state, &id, &task).await?;
    let tables = body.tables()?;
    if let Some((i, t)) = tables
        .iter()
        .enumerate()
        .find(|(_, t)| config.objects.table(&t.database, &t.table).is_none())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "table_not_selected",
            format!("{t} is not among the task's objects: its changes would not follow its rows"),
        )
        .hint("add the table to the task's objects first (PUT …/task/objects), then backfill it")
        .details(json!({"field": format!("tables[{i}]")})));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(store_new(&state, &id, tables).await?),
    ))
}

/// Refuses a new backfill on a task that is not a tracking task, or while one runs.
pub(crate) async fn check_can_add(
    state: &AppState,
    id: &InstanceId,
    task: &Versioned<TaskRecord>,
) -> ApiResult<()> {
    if task.value.task.mode() != Mode::Tracking {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_tracking_task",
            "only a change-tracking task writes a topic to backfill",
        )
        .hint("a sync task copies every selected table in its full sync; add a table to it with PUT …/task/objects"));
    }
    if let Some((b, _)) = state.store().get_backfill(id).await?
        && b.state.is_active()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backfill_running",
            format!("backfill {} is {}", b.id, state_name(b.state)),
        )
        .hint(
            "wait for it to finish (GET …/task/backfill) or cancel it (DELETE …/task/backfill)",
        ));
    }
    Ok(())
}

/// The tables `next` selects and `previous` did not: those named in it, and those of the
/// source's catalog (as the task's schema history last knew it) it now matches.
pub(crate) async fn added_tables(
    state: &AppState,
    id: &InstanceId,
    previous: &ObjectSelection,
    next: &ObjectSelection,
) -> ApiResult<Vec<ObjectName>> {
    let history = state.store().schema_history(id).await?;
    let latest = history
        .iter()
        .map(|(p, _, _)| p)
        .max_by(|a, b| a.cmp_file_offset(b))
        .cloned();
    let mut names: Vec<ObjectName> = latest
        .and_then(|at| SchemaCatalog::at(&history, &at))
        .map(|c| c.tables().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    for d in &next.databases {
        for t in d.tables.iter().flatten() {
            names.push(ObjectName {
                database: d.name.as_str().to_owned(),
                table: t.name.as_str().to_owned(),
            });
        }
    }
    names.sort();
    names.dedup();
    Ok(names
        .into_iter()
        .filter(|n| {
            !n.database.contains(['*', '?'])
                && !n.table.contains(['*', '?'])
                && next.table(&n.database, &n.table).is_some()
                && previous.table(&n.database, &n.table).is_none()
        })
        .take(ferry_domain::backfill::MAX_TABLES)
        .collect())
}

/// Stores a new pending backfill of `tables` (over the previous one, ended).
pub(crate) async fn store_new(
    state: &AppState,
    id: &InstanceId,
    tables: Vec<ObjectName>,
) -> ApiResult<Backfill> {
    let current = state.store().get_backfill(id).await?;
    let backfill = Backfill {
        id: format!("bf_{}", uuid::Uuid::new_v4().simple()),
        tables,
        state: BackfillState::Pending,
        requested_at: state.now(),
        finished_at: None,
        error: None,
        progress: Vec::new(),
    };
    match state
        .store()
        .put_backfill(id, &backfill, current.map(|(_, v)| v))
        .await
    {
        Ok(_) => Ok(backfill),
        Err(StoreError::Conflict { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "another backfill was asked for at the same time",
        )
        .hint("read it (GET …/task/backfill), then retry if still needed")),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn report(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<Backfill>> {
    load_instance(&state, &id).await?;
    match with_progress(&state, &id).await? {
        Some((b, _)) => Ok(Json(b)),
        None => Err(no_backfill()),
    }
}

pub(crate) async fn cancel(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<Backfill>> {
    load_instance(&state, &id).await?;
    let Some((mut backfill, version)) = with_progress(&state, &id).await? else {
        return Err(no_backfill());
    };
    if !backfill.state.is_active() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backfill_finished",
            format!("backfill {} is {}", backfill.id, state_name(backfill.state)),
        )
        .hint("only a pending or running backfill can be cancelled"));
    }
    backfill.state = BackfillState::Cancelled;
    backfill.finished_at = Some(state.now());
    let mut stored = backfill.clone();
    stored.progress.clear();
    match state
        .store()
        .put_backfill(&id, &stored, Some(version))
        .await
    {
        Ok(_) => Ok(Json(backfill)),
        Err(StoreError::Conflict { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the backfill changed meanwhile (the worker finished a table, or it ended)",
        )
        .hint("read it again (GET …/task/backfill) and retry")),
        Err(e) => Err(e.into()),
    }
}

fn no_backfill() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_backfill",
        "the task has no backfill",
    )
    .hint("ask for one: POST …/task/backfill with {\"tables\": [{\"database\": …, \"table\": …}]}")
}

fn state_name(s: BackfillState) -> &'static str {
    match s {
        BackfillState::Pending => "pending",
        BackfillState::Running => "running",
        BackfillState::Done => "done",
        BackfillState::Cancelled => "cancelled",
        BackfillState::Failed => "failed",
    }
}

//! Tasks: `PUT/GET /v1/instances/{id}/task`, `POST …/task/precheck`, `POST …/task/start`,
//! `POST …/task/stop`, `PUT …/task/objects`, `GET …/task/metrics`, `POST/GET …/task/verify`,
//! `POST …/task/source-objects` (what the source holds, for choosing objects),
//! `POST/GET/DELETE …/task/backfill` (a tracking task's tables' rows into its topic).
//!
//! # Reselecting objects
//!
//! `PUT …/task/objects` stores the new selection under a new configuration version. A running
//! task's worker switches at the next transaction boundary without restarting, and records the
//! switch with its binlog position (`objects_applied` in `GET …/task`).
//!
//! # Passwords
//!
//! A configure request carries endpoint passwords; they go to Secrets Manager under a name that
//! includes the new configuration version, and only that name is stored. The secrets of the
//! replaced configuration are deleted after the new one is stored; if the store refuses the new
//! configuration (a concurrent change), its fresh secrets are deleted instead. A password left
//! out of a reconfiguration keeps the one stored for that endpoint.

mod backfill;
mod source_objects;
mod verify;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::{delete, get, post, put};
use ferry_api::lifecycle::{load_instance, load_task, transition};
use ferry_api::views::{PrecheckView, TaskView};
use ferry_api::{ApiError, ApiResult, AppState, Body, InstancePath, OptionalBody, Route};
use ferry_aws::{Event, Secret};
use ferry_domain::InvalidInput;
use ferry_domain::endpoint::{Endpoint, EndpointParts, Engine, Role, SecretRef, TlsMode};
use ferry_domain::id::InstanceId;
use ferry_domain::instance::{Instance, InstanceStatus, Mode};
use ferry_domain::metrics::TaskMetrics;
use ferry_domain::selection::ObjectSelection;
use ferry_domain::start::StartPoint;
use ferry_domain::sync::SyncOptions;
use ferry_domain::task::{TaskEvent, TaskState};
use ferry_domain::task_config::{BinlogArchive, Delivery, HeartbeatWriter, TaskConfig};
use ferry_store::{ChosenStart, StoreError, TaskRecord, Versioned};
use serde::Deserialize;
use serde_json::json;

/// The routes of this function.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::PUT, "/v1/instances/{id}/task", put(configure)),
        Route::new(Method::GET, "/v1/instances/{id}/task", get(describe)),
        Route::new(
            Method::POST,
            "/v1/instances/{id}/task/precheck",
            post(precheck),
        ),
        Route::new(Method::POST, "/v1/instances/{id}/task/start", post(start)),
        Route::new(Method::GET, "/v1/instances/{id}/task/metrics", get(metrics)),
        Route::new(Method::POST, "/v1/instances/{id}/task/stop", post(stop)),
        Route::new(
            Method::PUT,
            "/v1/instances/{id}/task/objects",
            put(reselect),
        ),
        Route::new(
            Method::POST,
            "/v1/instances/{id}/task/source-objects",
            post(source_objects::list),
        ),
        Route::new(
            Method::POST,
            "/v1/instances/{id}/task/verify",
            post(verify::request),
        ),
        Route::new(
            Method::GET,
            "/v1/instances/{id}/task/verify",
            get(verify::report),
        ),
        Route::new(
            Method::POST,
            "/v1/instances/{id}/task/backfill",
            post(backfill::request),
        ),
        Route::new(
            Method::GET,
            "/v1/instances/{id}/task/backfill",
            get(backfill::report),
        ),
        Route::new(
            Method::DELETE,
            "/v1/instances/{id}/task/backfill",
            delete(backfill::cancel),
        ),
    ]
}

/// The router of this function.
pub fn router(state: AppState) -> Router {
    ferry_api::router(routes(), state)
}

/// The longest password accepted for a database endpoint.
const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointInput {
    engine: Engine,
    host: String,
    port: u16,
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    tls: TlsMode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Configure {
    source: EndpointInput,
    #[serde(default)]
    target: Option<EndpointInput>,
    objects: ObjectSelection,
    #[serde(default)]
    delivery: Delivery,
    #[serde(default)]
    heartbeat: Option<HeartbeatWriter>,
    #[serde(default)]
    archive: Option<BinlogArchive>,
    #[serde(default)]
    sync: SyncOptions,
}

pub(crate) async fn active_instance(
    state: &AppState,
    id: &InstanceId,
) -> ApiResult<Versioned<Instance>> {
    let instance = load_instance(state, id).await?;
    if instance.value.status() != InstanceStatus::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "instance_expired",
            "the instance's subscription has expired",
        )
        .hint("renew the instance first (POST /v1/instances/{id}/renew)"));
    }
    Ok(instance)
}

/// A password to store, or the reference to keep.
enum PasswordPlan {
    Store(SecretRef, Secret),
    Keep(SecretRef),
}

fn plan_password(
    state: &AppState,
    instance: &InstanceId,
    role: &str,
    version: u64,
    given: Option<String>,
    previous: Option<&Endpoint>,
) -> ApiResult<PasswordPlan> {
    match (given, previous) {
        (Some(p), _) => {
            if p.is_empty() || p.len() > MAX_PASSWORD_BYTES {
                return Err(InvalidInput::new(
                    "password",
                    format!("must be 1 to {MAX_PASSWORD_BYTES} bytes"),
                    "give the database user's password",
                )
                .at(role)
                .into());
            }
            Ok(PasswordPlan::Store(
                state
                    .secrets()
                    .name_for(instance, &format!("{role}-v{version}")),
                Secret::new(p),
            ))
        }
        (None, Some(prev)) => Ok(PasswordPlan::Keep(prev.password_secret().clone())),
        (None, None) => Err(InvalidInput::new(
            "password",
            "is required the first time an endpoint is configured",
            "give the database user's password",
        )
        .at(role)
        .into()),
    }
}

fn endpoint(
    input: EndpointInput,
    secret: SecretRef,
    role: Role,
    mode: ferry_domain::instance::Mode,
) -> Result<Endpoint, InvalidInput> {
    let at = match role {
        Role::Source => "source",
        Role::Target => "target",
    };
    Endpoint::new(
        EndpointParts {
            engine: input.engine,
            host: input.host,
            port: input.port,
            username: input.username,
            database: input.database,
            tls: input.tls,
            password_secret: secret,
        },
        role,
        mode,
    )
    .map_err(|e| e.at(at))
}

/// Refuses an endpoint whose host is, or resolves to, a forbidden address (the metadata
/// services), before anything connects to it.
async fn check_address(state: &AppState, field: &str, e: &Endpoint) -> ApiResult<()> {
    state
        .check_endpoint(e.host(), e.port())
        .await
        .map_err(|refused| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "endpoint_address_forbidden",
                format!("{field}.host `{}` points at {refused}", e.host()),
            )
            .hint("give the database's own address; to allow this range anyway, the deployment sets FERRY_ENDPOINT_ALLOW")
            .details(serde_json::json!({"field": format!("{field}.host"), "address": refused.address.to_string()}))
        })
}

async fn configure(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
    Body(req): Body<Configure>,
) -> ApiResult<Json<TaskView>> {
    active_instance(&state, &id).await?;
    let mut task = load_task(&state, &id).await?;
    let mode = task.value.task.mode();
    let from_state = task.value.task.state().clone();
    let next_state = from_state.apply(mode, &TaskEvent::Configure)?;
    let version = task.value.config_version + 1;
    let previous = task.value.config.clone();

    // Check everything before anything is written.
    let source_plan = plan_password(
        &state,
        &id,
        "source",
        version,
        req.source.password.clone(),
        previous.as_ref().map(|c| &c.source),
    )?;
    let target_plan = match &req.target {
        Some(t) => Some(plan_password(
            &state,
            &id,
            "target",
            version,
            t.password.clone(),
            previous.as_ref().and_then(|c| c.target.as_ref()),
        )?),
        None => None,
    };
    let secret_of = |p: &PasswordPlan| match p {
        PasswordPlan::Store(r, _) | PasswordPlan::Keep(r) => r.clone(),
    };
    let config = TaskConfig {
        source: endpoint(req.source, secret_of(&source_plan), Role::Source, mode)?,
        target: match (req.target, &target_plan) {
            (Some(t), Some(plan)) => Some(endpoint(t, secret_of(plan), Role::Target, mode)?),
            _ => None,
        },
        objects: req.objects,
        delivery: {
            let mut delivery = req.delivery;
            delivery.state_values(previous.as_ref().map(|c| &c.delivery));
            delivery
        },
        heartbeat: req.heartbeat,
        archive: req.archive,
        sync: req.sync,
    };
    config.validate(mode)?;
    if config.archive.is_some() && state.archive().bucket().is_none() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "archive_unavailable",
            "this deployment has no binlog archive bucket",
        )
        .hint("leave out `archive`, or deploy with the template's archive bucket (FERRY_ARCHIVE_BUCKET)"));
    }
    for (field, e) in [
        ("source", Some(&config.source)),
        ("target", config.target.as_ref()),
    ] {
        let Some(e) = e else { continue };
        check_address(&state, field, e).await?;
    }

    let fresh: Vec<&PasswordPlan> = [Some(&source_plan), target_plan.as_ref()]
        .into_iter()
        .flatten()
        .collect();
    for plan in &fresh {
        if let PasswordPlan::Store(name, secret) = plan {
            state.secrets().put(name, secret).await?;
        }
    }
    let mut next = task.value.clone();
    next.task.apply(&TaskEvent::Configure)?;
    next.config = Some(config);
    next.config_version = version;
    next.updated_at = state.now();
    match state.store().update_task(&next, task.version).await {
        Ok(v) => {
            task = Versioned {
                value: next,
                version: v,
            }
        }
        Err(e) => {
            for plan in &fresh {
                if let PasswordPlan::Store(name, _) = plan {
                    let _ = state.secrets().delete(name).await;
                }
            }
            return Err(e.into());
        }
    }
    // Secrets of the replaced configuration that the new one no longer refers to.
    if let Some(prev) = previous {
        let kept: Vec<&SecretRef> = fresh
            .iter()
            .filter_map(|p| match p {
                PasswordPlan::Keep(r) => Some(r),
                PasswordPlan::Store(..) => None,
            })
            .collect();
        for old in [Some(&prev.source), prev.target.as_ref()]
            .into_iter()
            .flatten()
        {
            if !kept.contains(&old.password_secret()) {
                state.secrets().delete(old.password_secret()).await?;
            }
        }
    }
    if from_state != next_state {
        let event = Event::TaskStateChanged {
            instance: id,
            from: from_state,
            to: next_state,
            at: task.value.updated_at,
        };
        state.events().publish_or_log(&[event]).await;
    }
    Ok(Json(TaskView::new(&state, &task)))
}

async fn describe(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<TaskView>> {
    // Five independent reads, at once (the instance's 404 still comes first).
    let (instance, task, checkpoint, history, copies) = tokio::join!(
        load_instance(&state, &id),
        load_task(&state, &id),
        state.store().get_checkpoint(&id),
        state.store().selection_history(&id),
        state.store().copy_records(&id),
    );
    instance?;
    let task = task?;
    let mut view = TaskView::new(&state, &task);
    view.checkpoint = checkpoint?.map(|c| {
        json!({
            "position": c.position.to_string(),
            "file": c.position.file().name(),
            "offset": c.position.offset(),
            "gtid": c.position.gtid().map(ToString::to_string),
            "source_time": c.source_time,
            "written_at": c.written_at,
        })
    });
    view.objects_applied = history?
        .iter()
        .max_by(|a, b| {
            a.position
                .cmp_file_offset(&b.position)
                .then(a.config_version.cmp(&b.config_version))
        })
        .map(|c| {
            json!({
                "config_version": c.config_version,
                "position": c.position.to_string(),
                "applied_at": c.applied_at,
            })
        });
    if task.value.task.mode() == ferry_domain::instance::Mode::Sync {
        view.verification = state.store().get_verification(&id).await?.map(|(v, _)| v);
        let mut progress: Vec<_> = copies?
            .iter()
            .map(ferry_store::CopyRecord::progress)
            .collect();
        progress.sort_by(|a, b| a.table.cmp(&b.table));
        view.full_sync = Some(progress);
    } else {
        view.backfill = backfill::with_progress(&state, &id).await?.map(|(b, _)| b);
        let archived = task
            .value
            .config
            .as_ref()
            .is_some_and(|c| c.archive.is_some());
        if archived {
            let status = state.store().get_archive_status(&id).await?;
            view.archive = Some(ferry_api::views::archive_view(status, state.now()));
        }
    }
    Ok(Json(view))
}

/// `GET …/task/metrics`: rates, source delay and the last hour per minute, as the task's
/// workers reported them (see `ferry_domain::metrics`).
async fn metrics(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<serde_json::Value>> {
    load_instance(&state, &id).await?;
    let task = load_task(&state, &id).await?;
    let now = state.now();
    let minutes = state.store().recent_metrics(&id, now).await?;
    let metrics = TaskMetrics::at(minutes, now);
    let mut body = serde_json::to_value(&metrics).map_err(|e| ApiError::internal(&e))?;
    if let Some(map) = body.as_object_mut() {
        map.insert(
            "state".into(),
            json!(task.value.task.state().kind().as_str()),
        );
    }
    Ok(Json(body))
}

pub(crate) fn configured(task: &Versioned<TaskRecord>) -> ApiResult<&TaskConfig> {
    task.value.config.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "not_configured",
            "the task has no configuration",
        )
        .hint("configure it first (PUT /v1/instances/{id}/task)")
        .details(json!({"state": task.value.task.state().kind().as_str()}))
    })
}

async fn precheck(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<PrecheckView>> {
    active_instance(&state, &id).await?;
    let task = load_task(&state, &id).await?;
    let report = ferry_api::precheck::run(&state, configured(&task)?).await?;
    state
        .events()
        .publish_or_log(&[Event::PrecheckFinished {
            instance: id,
            passed: report.passed(),
            failed_items: report.failed_ids(),
            at: state.now(),
        }])
        .await;
    Ok(Json(PrecheckView {
        passed: report.passed(),
        report,
    }))
}

/// `POST …/task/start`'s optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    /// Where a tracking task's first start begins; the source's current position when absent.
    #[serde(default)]
    start: Option<StartPoint>,
}

async fn start(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
    OptionalBody(request): OptionalBody<StartRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    active_instance(&state, &id).await?;
    let mut task = load_task(&state, &id).await?;
    let config = configured(&task)?.clone();
    let checkpoint = state.store().get_checkpoint(&id).await?;
    if let Some(point) = &request.start {
        start_point_allowed(&task, checkpoint.as_ref(), point)?;
    }
    // Until the first checkpoint, each start says where the task begins: the point it names,
    // found below, or now. After it, the point it began at stays on record (until a reset).
    if checkpoint.is_none() {
        task.value.start = None;
    }
    let mut events = Vec::new();
    events.extend(transition(&state, &mut task, &TaskEvent::Start).await?);
    let report = match ferry_api::precheck::run(&state, &config).await {
        Ok(mut r) => {
            // The start point is one more item: a point the source no longer holds blocks the
            // start like any failed check, with the points it does hold in the hint.
            if let Some(point) = &request.start {
                match ferry_api::precheck::start_point(&state, &config, &id, point).await {
                    Ok((item, position)) => {
                        r.items.push(item);
                        if let Some(position) = position {
                            task.value.start = Some(ChosenStart {
                                point: point.clone(),
                                position,
                            });
                        }
                    }
                    Err(e) => {
                        events.extend(
                            transition(&state, &mut task, &TaskEvent::PrecheckFailed).await?,
                        );
                        state.events().publish_or_log(&events).await;
                        return Err(e);
                    }
                }
            }
            r
        }
        Err(e) => {
            // The precheck could not run at all: leave `prechecking` for a state start can retry from.
            events.extend(transition(&state, &mut task, &TaskEvent::PrecheckFailed).await?);
            state.events().publish_or_log(&events).await;
            return Err(e);
        }
    };
    let passed = report.passed();
    let outcome = if passed {
        TaskEvent::PrecheckPassed
    } else {
        TaskEvent::PrecheckFailed
    };
    events.extend(transition(&state, &mut task, &outcome).await?);
    events.push(Event::PrecheckFinished {
        instance: id,
        passed,
        failed_items: report.failed_ids(),
        at: state.now(),
    });
    state.events().publish_or_log(&events).await;
    if !passed {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "precheck_failed",
            format!("the precheck failed: {}", report.failed_ids().join(", ")),
        )
        .hint("fix the failed items (each has a hint) and start again")
        .details(json!({"items": report.items})));
    }
    Ok(Json(
        json!({"task": TaskView::new(&state, &task), "precheck": PrecheckView { passed, report }}),
    ))
}

/// Refuses a start point where it means nothing: on a sync task (its full sync copies the
/// source as it is now) or on a task that already has a checkpoint (it resumes from there).
fn start_point_allowed(
    task: &Versioned<TaskRecord>,
    checkpoint: Option<&ferry_store::Checkpoint>,
    point: &StartPoint,
) -> ApiResult<()> {
    if task.value.task.mode() != Mode::Tracking {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("start.{point}: a start point is for change tracking; a sync task copies the source as it is when its full sync runs"),
        )
        .hint("start the sync task without a body"));
    }
    if let Some(c) = checkpoint {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_started",
            format!(
                "the task has a checkpoint at {}: it resumes from there, not from a start point",
                c.position
            ),
        )
        .hint("start without a start point to resume; or reset the task (a new topic) and start it from the point"));
    }
    Ok(())
}

async fn stop(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<TaskView>> {
    load_instance(&state, &id).await?;
    let mut task = load_task(&state, &id).await?;
    let events: Vec<Event> = transition(&state, &mut task, &TaskEvent::Stop)
        .await?
        .into_iter()
        .collect();
    state.events().publish_or_log(&events).await;
    Ok(Json(TaskView::new(&state, &task)))
}

async fn reselect(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
    Body(mut body): Body<serde_json::Value>,
) -> ApiResult<Json<TaskView>> {
    // `"backfill": true` beside the selection backfills the tables it adds (tracking tasks).
    let backfill = match body.as_object_mut().and_then(|o| o.remove("backfill")) {
        None => false,
        Some(serde_json::Value::Bool(b)) => b,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                format!("backfill: `{other}` is not true or false"),
            )
            .hint("give \"backfill\": true to backfill the tables the new selection adds"));
        }
    };
    let objects: ObjectSelection = serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.to_string(),
        )
        .hint("fix the field named in the message; docs/openapi.yaml has every body's shape")
    })?;
    active_instance(&state, &id).await?;
    let mut task = load_task(&state, &id).await?;
    let mut config = configured(&task)?.clone();
    let previous = config.objects.clone();
    if matches!(
        task.value.task.state(),
        TaskState::Prechecking | TaskState::Expired { .. }
    ) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid_state",
            format!(
                "cannot reselect objects of a task that is {}",
                task.value.task.state().kind()
            ),
        )
        .hint("wait for the precheck to finish, then retry")
        .details(json!({"state": task.value.task.state().kind().as_str()})));
    }
    objects.validate().map_err(|e| e.at("objects"))?;
    let added = if backfill {
        backfill::check_can_add(&state, &id, &task).await?;
        backfill::added_tables(&state, &id, &previous, &objects).await?
    } else {
        Vec::new()
    };
    config.objects = objects;
    let mut next = task.value.clone();
    next.config = Some(config);
    next.config_version += 1;
    next.updated_at = state.now();
    // A running task's worker picks the new version up at the next transaction boundary.
    match state.store().update_task(&next, task.version).await {
        Ok(v) => {
            task = Versioned {
                value: next,
                version: v,
            }
        }
        Err(StoreError::Conflict { .. }) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the task changed while the objects were being replaced",
            )
            .hint("read the task again and retry"));
        }
        Err(e) => return Err(e.into()),
    }
    let mut view = TaskView::new(&state, &task);
    if !added.is_empty() {
        // Pending until the worker has switched to the new selection.
        view.backfill = Some(backfill::store_new(&state, &id, added).await?);
    }
    Ok(Json(view))
}

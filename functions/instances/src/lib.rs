//! Instances: `POST/GET /v1/instances`, `GET/DELETE /v1/instances/{id}`,
//! `POST /v1/instances/{id}/renew`, `POST /v1/instances/{id}/reset`.

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, extract::State};
use chrono::Duration;
use ferry_api::lifecycle::{
    delete_secrets, load_instance as load, load_task, remove_instance, transition,
};
use ferry_api::views::{InstancePage, InstanceView, TaskView};
use ferry_api::{ApiResult, AppState, Body, InstancePath, Params, Route};
use ferry_aws::Event;
use ferry_domain::InvalidInput;
use ferry_domain::id::{InstanceId, TaskId};
use ferry_domain::instance::{
    BillingRequest, Instance, InstanceClass, InstanceName, InstanceStatus, Mode, Term,
};
use ferry_domain::task::{Task, TaskEvent, TaskState};
use ferry_store::{CleanupRequest, CreateOutcome, PageToken, TaskRecord};
use serde::Deserialize;

/// The routes of this function.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(Method::POST, "/v1/instances", post(create)),
        Route::new(Method::GET, "/v1/instances", get(list)),
        Route::new(Method::GET, "/v1/instances/{id}", get(describe)),
        Route::new(Method::DELETE, "/v1/instances/{id}", delete(remove)),
        Route::new(Method::POST, "/v1/instances/{id}/renew", post(renew)),
        Route::new(Method::POST, "/v1/instances/{id}/reset", post(reset)),
    ]
}

/// The router of this function.
pub fn router(state: AppState) -> Router {
    ferry_api::router(routes(), state)
}

/// An idempotency token: 1 to 64 letters, digits, `-` or `_`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
struct ClientToken(String);

impl TryFrom<String> for ClientToken {
    type Error = InvalidInput;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s))
        } else {
            Err(InvalidInput::new(
                "client_token",
                "must be 1 to 64 letters, digits, `-` or `_`",
                "use a UUID",
            ))
        }
    }
}

fn default_class() -> InstanceClass {
    InstanceClass::Small
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInstance {
    name: InstanceName,
    mode: Mode,
    billing: BillingRequest,
    #[serde(default = "default_class")]
    class: InstanceClass,
    client_token: Option<ClientToken>,
}

async fn create(
    State(state): State<AppState>,
    Body(req): Body<CreateInstance>,
) -> ApiResult<impl IntoResponse> {
    let now = state.now();
    let instance = Instance::new(
        InstanceId::generate(),
        req.name.clone(),
        req.mode,
        req.class,
        req.billing,
        now,
    )?;
    let task = TaskRecord {
        task: Task::new(TaskId::generate(), instance.id().clone(), req.mode),
        config: None,
        config_version: 0,
        updated_at: now,
        topic_generation: 0,
        start: None,
    };
    // The same token with the same request returns the first instance; with another, 409.
    let fingerprint =
        serde_json::json!([req.name.as_str(), req.mode, req.billing, req.class]).to_string();
    let token = req
        .client_token
        .as_ref()
        .map(|t| (t.0.as_str(), fingerprint.as_str()));
    match state
        .store()
        .create_instance(&instance, &task, token, now)
        .await?
    {
        CreateOutcome::Created(v) => {
            state
                .events()
                .publish_or_log(&[Event::InstanceCreated {
                    instance: instance.id().clone(),
                    mode: mode_name(instance.mode()),
                    at: now,
                }])
                .await;
            Ok((
                StatusCode::CREATED,
                Json(InstanceView::new(&v, Some(&task))),
            ))
        }
        CreateOutcome::Existing(v) => {
            let task = state.store().get_task(v.value.id()).await?;
            Ok((
                StatusCode::OK,
                Json(InstanceView::new(&v, task.as_ref().map(|t| &t.value))),
            ))
        }
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Tracking => "tracking",
        Mode::Sync => "sync",
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    mode: Option<Mode>,
    status: Option<InstanceStatus>,
    limit: Option<usize>,
    page_token: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Params(q): Params<ListQuery>,
) -> ApiResult<Json<InstancePage>> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(InvalidInput::new(
            "limit",
            format!("{limit} is out of range"),
            "give 1 to 100",
        )
        .into());
    }
    let token = q.page_token.map(PageToken::from_client).transpose()?;
    let page = state
        .store()
        .list_instances(limit, token.as_ref(), |i| {
            q.mode.is_none_or(|m| i.mode() == m) && q.status.is_none_or(|s| i.status() == s)
        })
        .await?;
    Ok(Json(InstancePage {
        instances: page
            .items
            .iter()
            .map(|i| InstanceView::new(i, None))
            .collect(),
        next_page_token: page.next.map(|t| t.as_str().to_owned()),
    }))
}

async fn describe(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<InstanceView>> {
    let instance = load(&state, &id).await?;
    let task = state.store().get_task(&id).await?;
    Ok(Json(InstanceView::new(
        &instance,
        task.as_ref().map(|t| &t.value),
    )))
}

async fn remove(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<StatusCode> {
    let instance = load(&state, &id).await?;
    instance.value.check_deletable()?;
    let mut events = remove_instance(&state, &instance.value).await?;
    events.push(Event::InstanceDeleted {
        instance: id,
        at: state.now(),
    });
    state.events().publish_or_log(&events).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Renew {
    months: Term,
}

async fn renew(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
    Body(req): Body<Renew>,
) -> ApiResult<Json<InstanceView>> {
    let mut instance = load(&state, &id).await?;
    let was_expired = instance.value.status() == InstanceStatus::Expired;
    instance.value.renew(req.months, state.now())?;
    instance.version = state
        .store()
        .update_instance(&instance.value, instance.version)
        .await?;
    let mut task = load_task(&state, &id).await?;
    let mut events = Vec::new();
    if was_expired && matches!(task.value.task.state(), TaskState::Expired { .. }) {
        events.extend(transition(&state, &mut task, &TaskEvent::Renew).await?);
    }
    state.events().publish_or_log(&events).await;
    Ok(Json(InstanceView::new(&instance, Some(&task.value))))
}

async fn reset(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<TaskView>> {
    load(&state, &id).await?;
    let mut task = load_task(&state, &id).await?;
    let before = task.value.clone();
    // Validate the transition before anything is deleted.
    before
        .task
        .state()
        .apply(before.task.mode(), &TaskEvent::Reset)?;
    let mut next = before.clone();
    next.task.apply(&TaskEvent::Reset)?;
    next.config = None;
    next.start = None;
    next.config_version += 1;
    next.updated_at = state.now();
    // A tracking task that ran starts a new topic generation: the old topic's tail names
    // positions of a binlog that may since have been reset, purged or replaced by another
    // server's, and the next start must not skip a change because of it.
    let old_topic = (before.task.mode() == Mode::Tracking
        && state.store().get_checkpoint(&id).await?.is_some())
    .then(|| state.topic_of(&before));
    if old_topic.is_some() {
        next.topic_generation += 1;
    }
    task.version = state.store().update_task(&next, task.version).await?;
    task.value = next;
    // The configuration no longer refers to them: the secrets and the progress can go.
    delete_secrets(&state, &before).await?;
    state.store().delete_progress(&id).await?;
    if let Some(old) = old_topic {
        // Consumers may finish reading the old topic for its retention; then it goes.
        let retention_hours = before
            .config
            .as_ref()
            .map_or(168, |c| c.delivery.retention_hours);
        state
            .store()
            .request_cleanup(&CleanupRequest {
                instance_id: id.clone(),
                topics: vec![old],
                groups: Vec::new(),
                requested_at: state.now(),
                not_before: Some(state.now() + Duration::hours(i64::from(retention_hours))),
            })
            .await?;
    }
    let event = Event::TaskStateChanged {
        instance: id,
        from: before.task.state().clone(),
        to: task.value.task.state().clone(),
        at: task.value.updated_at,
    };
    state.events().publish_or_log(&[event]).await;
    Ok(Json(TaskView::new(&state, &task)))
}

//! `POST/GET /v1/instances/{id}/task/verify`: ask the worker running a sync task to compare
//! source and target, and read its report (see `ferry_domain::verify`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_api::lifecycle::{load_instance, load_task};
use ferry_api::{ApiError, ApiResult, AppState, InstancePath};
use ferry_domain::instance::Mode;
use ferry_domain::verify::{Verification, VerifyState};

pub(crate) async fn request(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<(StatusCode, Json<Verification>)> {
    load_instance(&state, &id).await?;
    let task = load_task(&state, &id).await?;
    if task.value.task.mode() != Mode::Sync {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_sync_task",
            "only a data synchronization task has a target to verify",
        )
        .hint("change-tracking tasks are checked by reading their topic"));
    }
    if !task.value.task.state().wants_worker() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "task_not_running",
            format!(
                "the task is {}: verification runs on the worker that runs it",
                task.value.task.state().kind().as_str()
            ),
        )
        .hint("start the task, then ask again"));
    }
    let current = state.store().get_verification(&id).await?;
    if let Some((v, _)) = &current
        && matches!(v.state, VerifyState::Pending | VerifyState::Running)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "verification_running",
            format!("verification {} is {:?}", v.id, v.state).to_lowercase(),
        )
        .hint("wait for it: GET …/task/verify"));
    }
    let v = Verification {
        id: format!("ver_{}", uuid::Uuid::new_v4().simple()),
        state: VerifyState::Pending,
        requested_at: state.now(),
        finished_at: None,
        report: None,
        error: None,
    };
    state
        .store()
        .put_verification(&id, &v, current.map(|(_, version)| version))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(v)))
}

pub(crate) async fn report(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<Verification>> {
    load_instance(&state, &id).await?;
    match state.store().get_verification(&id).await? {
        Some((v, _)) => Ok(Json(v)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_verification",
            "the task has not been verified",
        )
        .hint("ask for one: POST …/task/verify")),
    }
}

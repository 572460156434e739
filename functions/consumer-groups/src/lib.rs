//! Consumer groups: `POST/GET /v1/instances/{id}/consumer-groups`,
//! `PATCH/DELETE /v1/instances/{id}/consumer-groups/{gid}`.
//!
//! Passwords are checked against the rules, hashed with argon2id (OWASP's parameters:
//! 19 MiB, 2 passes, 1 lane) on a blocking thread, and only the hash is stored. Changing a
//! password needs the old one.
//!
//! The list reads each group's progress from the broker (committed offsets, watermarks and the
//! records' source times; see `ferry_kafka::groups`). Deleting a group deletes its committed
//! offsets on the broker first, and refuses while consumers are connected.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post};
use ferry_api::lifecycle::load_instance;
use ferry_api::views::{GroupList, GroupView};
use ferry_api::{ApiError, ApiResult, AppState, Body, GroupPath, InstancePath, Route};
use ferry_domain::consumer_group::{
    ConsumerGroup, GroupName, MAX_GROUPS_PER_INSTANCE, Password, PasswordHash, Username,
};
use ferry_domain::id::{ConsumerGroupId, InstanceId};
use ferry_domain::instance::{InstanceStatus, Mode};
use ferry_domain::scram::Verifiers;
use ferry_kafka::groups::{DeleteGroupError, delete_group, group_progress};
use serde::Deserialize;

/// The routes of this function.
pub fn routes() -> Vec<Route> {
    vec![
        Route::new(
            Method::POST,
            "/v1/instances/{id}/consumer-groups",
            post(create),
        ),
        Route::new(Method::GET, "/v1/instances/{id}/consumer-groups", get(list)),
        Route::new(
            Method::PATCH,
            "/v1/instances/{id}/consumer-groups/{gid}",
            patch(change_password),
        ),
        Route::new(
            Method::DELETE,
            "/v1/instances/{id}/consumer-groups/{gid}",
            delete(remove),
        ),
    ]
}

/// The router of this function.
pub fn router(state: AppState) -> Router {
    ferry_api::router(routes(), state)
}

fn hasher() -> Argon2<'static> {
    // OWASP's recommended argon2id parameters; Params::new only fails on out-of-range values.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id hash (PLAIN sign-ins, password changes) and the SCRAM verifiers (SCRAM
/// sign-ins at the consumer gateway) of a password: the only forms in which it is kept.
async fn hash(password: Password) -> ApiResult<(PasswordHash, Verifiers)> {
    let (phc, verifiers) = tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        let phc = hasher()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|h| h.to_string());
        (phc, Verifiers::new(password.expose()))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?;
    let phc = phc.map_err(|e| ApiError::internal(&HashError(e.to_string())))?;
    Ok((PasswordHash::from_phc(phc)?, verifiers))
}

async fn verify(password: String, hash: PasswordHash) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        argon2::PasswordHash::new(hash.as_phc())
            .map(|parsed| {
                hasher()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .map_err(|e| HashError(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::internal(&e))?
    .map_err(|e| ApiError::internal(&e))
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
struct HashError(String);

async fn tracking_instance(state: &AppState, id: &InstanceId) -> ApiResult<()> {
    let instance = load_instance(state, id).await?;
    if instance.value.mode() != Mode::Tracking {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_tracking",
            "consumer groups belong to change-tracking instances",
        )
        .hint("create a tracking instance for consumers"));
    }
    if instance.value.status() != InstanceStatus::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "instance_expired",
            "the instance's subscription has expired",
        )
        .hint("renew the instance first"));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateGroup {
    name: GroupName,
    username: Username,
    password: String,
}

async fn create(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
    Body(req): Body<CreateGroup>,
) -> ApiResult<impl IntoResponse> {
    tracking_instance(&state, &id).await?;
    let password = Password::new(req.password)?;
    let (password_hash, verifiers) = hash(password).await?;
    let group = ConsumerGroup::new(
        ConsumerGroupId::generate(),
        id,
        req.name,
        req.username,
        password_hash,
        state.now(),
    )
    .with_scram(verifiers);
    let stored = state
        .store()
        .create_group(&group, MAX_GROUPS_PER_INSTANCE)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(GroupView::new(&stored.value, state.settings())),
    ))
}

async fn list(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
) -> ApiResult<Json<GroupList>> {
    load_instance(&state, &id).await?;
    let groups = state.store().list_groups(&id).await?;
    let topic = match state.store().get_task(&id).await? {
        Some(task) => state.topic_of(&task.value),
        None => state.topic_for(&id, 0),
    };
    let bootstrap = &state.settings().kafka_bootstrap;
    // Each group's progress is read from the broker, all groups at once.
    let progress = futures::future::join_all(
        groups
            .iter()
            .map(|g| group_progress(bootstrap, &topic, g.value.id().as_str())),
    )
    .await;
    let consumer_groups = groups
        .iter()
        .zip(progress)
        .map(|(g, p)| {
            let mut view = GroupView::new(&g.value, state.settings());
            match p {
                Ok(Some(p)) => view.progress = serde_json::to_value(p).ok(),
                Ok(None) => view.progress = Some(serde_json::Value::Null),
                Err(e) => {
                    tracing::warn!(group = %g.value.id(), error = %e, "reading a group's progress failed");
                    view.progress_error = Some(format!("the broker did not answer: {e}"));
                }
            }
            view
        })
        .collect();
    Ok(Json(GroupList { consumer_groups }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    old_password: String,
    new_password: String,
}

async fn change_password(
    State(state): State<AppState>,
    GroupPath(id, gid): GroupPath,
    Body(req): Body<ChangePassword>,
) -> ApiResult<Json<GroupView>> {
    let mut group = state
        .store()
        .get_group(&id, &gid)
        .await?
        .ok_or_else(|| ApiError::not_found("consumer group", gid.as_str()))?;
    if req.old_password.len() > 256
        || !verify(req.old_password, group.value.password_hash().clone()).await?
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_password",
            "the old password does not match",
        )
        .hint("give the group's current password as old_password"));
    }
    let new = Password::new(req.new_password).map_err(|e| e.at("new_password"))?;
    let (password_hash, verifiers) = hash(new).await?;
    group.value.set_password(password_hash, verifiers);
    state
        .store()
        .update_group(&group.value, group.version)
        .await?;
    Ok(Json(GroupView::new(&group.value, state.settings())))
}

async fn remove(
    State(state): State<AppState>,
    GroupPath(id, gid): GroupPath,
) -> ApiResult<StatusCode> {
    let group = state
        .store()
        .get_group(&id, &gid)
        .await?
        .ok_or_else(|| ApiError::not_found("consumer group", gid.as_str()))?;
    // Its committed offsets go first: if the broker refuses, the group stays as it was.
    match delete_group(&state.settings().kafka_bootstrap, gid.as_str()).await {
        Ok(()) => {}
        Err(DeleteGroupError::InUse) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "group_in_use",
                "the consumer group still has consumers connected",
            )
            .hint("stop (close) the group's consumers, wait for their session timeout, then delete again"));
        }
        Err(DeleteGroupError::Broker(e)) => {
            tracing::warn!(group = %gid, error = %e, "deleting a group's offsets failed");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                format!("the broker did not delete the group's offsets: {e}"),
            )
            .hint("retry; nothing was deleted"));
        }
    }
    state.store().delete_group(&group.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

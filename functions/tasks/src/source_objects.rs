//! `POST /v1/instances/{id}/task/source-objects`: the databases, tables and columns a source
//! holds, for choosing a task's objects (the console's object picker). The body names the
//! source to list (`{"source": {…}}`, as in a configuration), or is `{}` for the task's
//! configured source. A source given without a password uses the configured source's when it
//! is the same server and user, so a configured task can be edited without typing it again.
//! Nothing is stored.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferry_api::lifecycle::load_task;
use ferry_api::{ApiError, ApiResult, AppState, Body, InstancePath};
use ferry_domain::InvalidInput;
use ferry_domain::endpoint::{Role, SecretRef};
use ferry_mysql::ConnectParams;
use ferry_mysql::catalog::SourceObjects;
use serde::Deserialize;

use crate::{EndpointInput, active_instance, check_address, endpoint};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListRequest {
    #[serde(default)]
    source: Option<EndpointInput>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
    Body(req): Body<ListRequest>,
) -> ApiResult<Json<SourceObjects>> {
    active_instance(&state, &id).await?;
    let task = load_task(&state, &id).await?;
    let mode = task.value.task.mode();
    let configured = task.value.config.as_ref().map(|c| &c.source);
    let params = match req.source {
        None => {
            let source = configured.ok_or_else(|| {
                InvalidInput::new(
                    "source",
                    "the task has no configured source",
                    "give the source to list: {\"source\": {\"engine\", \"host\", \"port\", \"username\", \"password\"}}",
                )
            })?;
            check_address(&state, "source", source).await?;
            ferry_api::precheck::params(&state, source).await?
        }
        Some(input) => {
            let given = input.password.clone();
            // The endpoint's own rules (engine for the mode, host and name lengths); the
            // secret reference is a placeholder, as nothing is stored.
            let placeholder = SecretRef::try_from("unused".to_owned())?;
            let source = endpoint(input, placeholder, Role::Source, mode)?;
            check_address(&state, "source", &source).await?;
            let password = match (given, configured) {
                (Some(p), _) => p,
                (None, Some(c))
                    if c.host() == source.host()
                        && c.port() == source.port()
                        && c.username() == source.username() =>
                {
                    ferry_api::precheck::params(&state, c).await?.password
                }
                (None, _) => {
                    return Err(InvalidInput::new(
                        "password",
                        "is required for a source that is not the configured one",
                        "give the database user's password",
                    )
                    .at("source")
                    .into());
                }
            };
            ConnectParams {
                host: source.host().to_owned(),
                port: source.port(),
                user: source.username().to_owned(),
                password,
                database: None,
            }
        }
    };
    let objects = ferry_mysql::catalog::list_objects(&params)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "source_unavailable",
                e.message,
            )
            .hint(e.hint)
        })?;
    Ok(Json(objects))
}

//! The parts every HTTP function shares.
//!
//! - [`AppState`]: the store, secrets, events and settings a router is built from; read once
//!   from the environment by [`AppState::from_env`].
//! - [`ApiError`]: every error answer, `{"error": {"code", "message", "hint"?, "details"?}}`
//!   with the right status. Internal causes are logged with their chain and never answered.
//! - [`Body`] and [`InstancePath`]: extractors whose rejections are [`ApiError`]s, so a bad
//!   body or id is a clear 4xx, never a 500 or axum's plain-text default.
//! - [`views`]: the JSON shapes of responses.
//! - [`lifecycle`]: task transitions that store and report, and removing an instance with
//!   everything it owns.
//! - [`precheck`]: running a task's prechecks against its real source and target.

mod error;
mod extract;
pub mod lifecycle;
pub mod precheck;
mod routes;
mod state;
pub mod views;

pub use error::ApiError;
pub use extract::{
    Body, GroupPath, InstancePath, MAX_BODY_BYTES, OptionalBody, Params, fallback,
    method_not_allowed,
};
pub use routes::{Route, router};
pub use state::{AppState, Settings, archive_client};

/// Logging of a function in Lambda: one JSON object per line (CloudWatch adds the time),
/// filtered by `RUST_LOG` (default `info`). Every function's `main` calls it first.
pub fn init_lambda_logging() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .without_time()
        .init();
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

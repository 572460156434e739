//! One error type for every answer that is not a success.

use std::borrow::Cow;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_domain::InvalidInput;
use ferry_domain::instance::LifecycleError;
use ferry_domain::task::TransitionError;
use ferry_store::StoreError;
use serde_json::{Value, json};

/// An error answer: status, stable code, message, and a hint that says what to do.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    hint: Option<String>,
    details: Option<Value>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            hint: None,
            details: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} `{id}` does not exist"),
        )
        .hint("check the id; list them with GET /v1/instances")
    }

    /// An internal failure: logged with its whole chain, answered without it.
    pub fn internal(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred",
        )
        .hint("retry; if it keeps happening, the service's logs have the cause")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(h) = self.hint {
            error["hint"] = Value::String(h);
        }
        if let Some(d) = self.details {
            error["details"] = d;
        }
        (self.status, axum::Json(json!({ "error": error }))).into_response()
    }
}

impl From<InvalidInput> for ApiError {
    fn from(e: InvalidInput) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            e.to_string(),
        )
        .hint(e.hint())
        .details(json!({ "field": e.field() }))
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_state", e.to_string())
            .hint(e.hint())
            .details(json!({ "state": e.from.as_str() }))
    }
}

impl From<LifecycleError> for ApiError {
    fn from(e: LifecycleError) -> Self {
        let status = match e {
            LifecycleError::DateOutOfRange => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::CONFLICT,
        };
        Self::new(status, e.code(), e.to_string()).hint(e.hint())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
                    .hint("another request changed it first; read it again and retry")
            }
            StoreError::Duplicate { .. } => {
                Self::new(StatusCode::CONFLICT, "already_exists", e.to_string())
                    .hint("use another name, or the existing one")
            }
            StoreError::QuotaExceeded { .. } => {
                Self::new(StatusCode::CONFLICT, "quota_exceeded", e.to_string())
                    .hint("delete one first")
            }
            StoreError::NotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            }
            StoreError::BadPageToken => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_page_token", e.to_string()).hint(
                    "pass the next_page_token of the previous page unchanged, or leave it out",
                )
            }
            StoreError::Corrupt { .. } | StoreError::Backend { .. } => Self::internal(&e),
        }
    }
}

impl From<ferry_aws::AwsError> for ApiError {
    fn from(e: ferry_aws::AwsError) -> Self {
        let mut err = Self::internal(&e);
        err.status = StatusCode::SERVICE_UNAVAILABLE;
        err.code = "dependency_unavailable".into();
        err
    }
}

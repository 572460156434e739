//! Extractors whose rejections are [`ApiError`]s.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use ferry_domain::id::{ConsumerGroupId, InstanceId};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON body. Malformed JSON is 400, a wrong shape (unknown field, wrong type, broken rule)
/// is 422, a missing content type 415, an oversized body 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(reject(rejection)),
        }
    }
}

/// A JSON body that may be left out (no bytes at all): then `T::default()`. A body that is
/// sent is held to [`Body`]'s rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| reject(JsonRejection::BytesRejection(e)))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        if !json {
            return Err(reject(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        axum::Json::<T>::from_bytes(&bytes)
            .map(|axum::Json(v)| Self(v))
            .map_err(reject)
    }
}

fn reject(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => {
            // "Failed to deserialize the JSON body into the target type: <path>: <reason>"
            let text = e.body_text();
            let reason = text
                .split_once("target type: ")
                .map_or(text.as_str(), |(_, r)| r);
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                reason.to_owned(),
            )
            .hint("fix the field named in the message; docs/openapi.yaml has every body's shape")
        }
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.body_text())
                .hint("send a well-formed JSON object")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body must be JSON",
        )
        .hint("send Content-Type: application/json"),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
            .hint("no Ferry request needs that much; check what is being sent")
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "bad_request", other.body_text()),
    }
}

/// Query parameters. Unknown or malformed parameters are 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
                    .hint("docs/openapi.yaml lists the query parameters of every route")
            })
    }
}

async fn path_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<Vec<(String, String)>, ApiError> {
    let Path(params): Path<Vec<(String, String)>> = Path::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_path", e.body_text()))?;
    Ok(params)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

fn instance_id(raw: &str) -> Result<InstanceId, ApiError> {
    raw.parse::<InstanceId>().map_err(|e| {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
            .hint("instance ids look like ins_ and 32 hex digits")
    })
}

/// The `{id}` of an instance route, parsed. A malformed id is a 404 like an absent one.
#[derive(Debug, Clone)]
pub struct InstancePath(pub InstanceId);

impl<S: Send + Sync> FromRequestParts<S> for InstancePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts, state).await?;
        instance_id(param(&params, "id")).map(Self)
    }
}

/// The `{id}` and `{gid}` of a consumer group route.
#[derive(Debug, Clone)]
pub struct GroupPath(pub InstanceId, pub ConsumerGroupId);

impl<S: Send + Sync> FromRequestParts<S> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = path_params(parts, state).await?;
        let instance = instance_id(param(&params, "id"))?;
        let group = param(&params, "gid")
            .parse::<ConsumerGroupId>()
            .map_err(|e| {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string())
                    .hint("consumer group ids look like cg_ and 32 hex digits")
            })?;
        Ok(Self(instance, group))
    }
}

/// The answer for a path no route has.
pub async fn fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route")
        .hint("docs/openapi.yaml lists every route")
}

/// The answer for a method a route does not have.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
    .hint("docs/openapi.yaml lists the methods of every route")
}

//! Tracked data changes: `GET /v1/instances/{id}/changes`.
//!
//! Reads the task's topic as it is (see `ferry_kafka::browse`), so what it shows is exactly
//! what consumers read, decoded into one shape whatever the task's format
//! (`ferry_kafka::view`).
//!
//! | parameter | meaning |
//! |---|---|
//! | `from`, `to` | the time range (RFC 3339, source time, both included); default: the last hour |
//! | `database`, `table` | exact names |
//! | `operation` | `insert`, `update`, `delete`, `read` (rows a backfill copied) or `ddl` (comma-separated for several) |
//! | `key` | the primary key: a JSON object (`{"id":7}`), or one value for a one-column key (`7`) |
//! | `limit` | changes per page, 1 to 1000 (100) |
//! | `page_token` | from the previous page; give the same filters again |
//!
//! A page reads at most 50,000 records of the topic: a page may hold fewer than `limit`
//! changes (even none) and still have a `next_page_token`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use ferry_api::lifecycle::{load_instance, load_task};
use ferry_api::{ApiError, ApiResult, AppState, InstancePath, Params, Route};
use ferry_domain::instance::Mode;
use ferry_kafka::browse::{BrowseCursor, BrowseError, BrowseRequest, browse};
use ferry_kafka::view::ChangeView;
use serde::Deserialize;
use serde_json::{Value, json};

/// Records one page reads at most.
const SCAN_LIMIT: usize = 50_000;

/// The routes of this function.
pub fn routes() -> Vec<Route> {
    vec![Route::new(
        Method::GET,
        "/v1/instances/{id}/changes",
        get(list),
    )]
}

/// The router of this function.
pub fn router(state: AppState) -> Router {
    ferry_api::router(routes(), state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    from: Option<String>,
    to: Option<String>,
    database: Option<String>,
    table: Option<String>,
    operation: Option<String>,
    key: Option<String>,
    limit: Option<usize>,
    page_token: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>, hint: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message.into())
        .hint(hint.to_owned())
        .details(json!({"field": field}))
}

fn time(field: &str, v: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    v.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                invalid(
                    field,
                    format!("{field} `{t}` is not a time: {e}"),
                    "give an RFC 3339 time, e.g. 2026-11-22T10:00:00Z",
                )
            })
    })
    .transpose()
}

/// Which changes a request keeps.
#[derive(Debug, Clone)]
struct Filter {
    database: Option<String>,
    table: Option<String>,
    operations: Option<Vec<String>>,
    key: Option<Value>,
}

impl Filter {
    fn parse(q: &ChangesQuery) -> ApiResult<Self> {
        const OPERATIONS: [&str; 5] = ["insert", "update", "delete", "read", "ddl"];
        let operations = q
            .operation
            .as_deref()
            .map(|ops| {
                ops.split(',')
                    .map(|op| {
                        let op = op.trim();
                        if OPERATIONS.contains(&op) {
                            Ok(op.to_owned())
                        } else {
                            Err(invalid(
                                "operation",
                                format!("`{op}` is not an operation"),
                                "give insert, update, delete, read or ddl (comma-separated for several)",
                            ))
                        }
                    })
                    .collect::<ApiResult<Vec<_>>>()
            })
            .transpose()?;
        let key = q
            .key
            .as_deref()
            .map(|k| serde_json::from_str::<Value>(k).unwrap_or_else(|_| Value::String(k.into())));
        Ok(Self {
            database: q.database.clone(),
            table: q.table.clone(),
            operations,
            key,
        })
    }

    fn keeps(&self, c: &ChangeView) -> bool {
        self.database
            .as_ref()
            .is_none_or(|d| c.database.as_ref() == Some(d))
            && self
                .table
                .as_ref()
                .is_none_or(|t| c.table.as_ref() == Some(t))
            && self
                .operations
                .as_ref()
                .is_none_or(|ops| ops.contains(&c.operation))
            && self
                .key
                .as_ref()
                .is_none_or(|k| key_matches(k, c.key.as_ref()))
    }
}

/// A key filter matches a row key equal to it, or, given one value, a one-column key whose
/// value is it (as JSON or as text: `7` matches `{"id": 7}` and `{"code": "7"}`).
fn key_matches(wanted: &Value, key: Option<&Value>) -> bool {
    let Some(Value::Object(key)) = key else {
        return false;
    };
    match wanted {
        Value::Object(w) => w == key,
        scalar if key.len() == 1 => key.values().next().is_some_and(|v| {
            v == scalar
                || match (v, scalar) {
                    (Value::String(s), other) | (other, Value::String(s)) => {
                        s.as_str() == other.to_string().as_str()
                    }
                    _ => false,
                }
        }),
        _ => false,
    }
}

fn decode_token(token: &str) -> ApiResult<BrowseCursor> {
    let bad = || {
        invalid(
            "page_token",
            "the page token is not valid",
            "pass the next_page_token of the previous page unchanged",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let cursor: BrowseCursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if cursor.partitions.is_empty()
        || cursor
            .partitions
            .iter()
            .any(|(p, next, end)| *p < 0 || *next < 0 || next > end)
    {
        return Err(bad());
    }
    Ok(cursor)
}

fn encode_token(cursor: &BrowseCursor) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

async fn list(
    State(state): State<AppState>,
    InstancePath(id): InstancePath,
    Params(q): Params<ChangesQuery>,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &id).await?;
    if instance.value.mode() != Mode::Tracking {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_tracking",
            "tracked changes belong to change-tracking instances",
        )
        .hint("a sync task's changes are in its target database"));
    }
    let task = load_task(&state, &id).await?;
    let Some(config) = task.value.config.as_ref() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_configured",
            "the task is not configured, so it has no changes",
        )
        .hint("configure and start the task first"));
    };
    let now = state.now();
    let to = time("to", q.to.as_deref())?.unwrap_or(now);
    let from = time("from", q.from.as_deref())?.unwrap_or(to - Duration::hours(1));
    if from > to {
        return Err(invalid(
            "from",
            format!("from ({from}) is after to ({to})"),
            "give a from at or before to",
        ));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(invalid(
            "limit",
            format!("limit {limit} is out of range"),
            "give 1 to 1000",
        ));
    }
    let filter = Filter::parse(&q)?;
    let cursor = q.page_token.as_deref().map(decode_token).transpose()?;
    let request = BrowseRequest {
        topic: state.topic_of(&task.value),
        format: config.delivery.format,
        values: config.delivery.values(),
        from_ms: from.timestamp_millis(),
        to_ms: to.timestamp_millis(),
        cursor,
        limit,
        scan_limit: SCAN_LIMIT,
    };
    let page = browse(&state.settings().kafka_bootstrap, request, move |c| {
        filter.keeps(c)
    })
    .await
    .map_err(|e| match e {
        BrowseError::InvalidCursor(why) => invalid(
            "page_token",
            why,
            "pass the next_page_token of the previous page unchanged",
        ),
        BrowseError::Broker(e) => {
            tracing::warn!(instance = %id, error = %e, "reading the task's topic failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                format!("the task's topic could not be read: {e}"),
            )
            .hint("retry; if it persists, check the broker")
        }
    })?;
    Ok(Json(json!({
        "changes": page.changes,
        "scanned": page.scanned,
        "from": from,
        "to": to,
        "next_page_token": page.next.as_ref().map(encode_token),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_filters_match_whole_keys_or_one_value() {
        let key = json!({"id": 7});
        assert!(key_matches(&json!({"id": 7}), Some(&key)));
        assert!(key_matches(&json!(7), Some(&key)));
        assert!(key_matches(&json!("7"), Some(&key)));
        assert!(!key_matches(&json!(8), Some(&key)));
        assert!(!key_matches(&json!({"id": 7, "x": 1}), Some(&key)));
        assert!(key_matches(&json!(7), Some(&json!({"code": "7"}))));
        assert!(
            !key_matches(&json!(7), Some(&json!({"a": 7, "b": 1}))),
            "one value, two columns"
        );
        assert!(!key_matches(&json!(7), None), "DDL has no key");
    }

    #[test]
    fn page_tokens_round_trip_and_bad_ones_are_refused() {
        let c = BrowseCursor {
            partitions: vec![(0, 10, 20), (1, 5, 5)],
        };
        assert_eq!(decode_token(&encode_token(&c)).unwrap(), c);
        for bad in [
            "",
            "!!",
            "e30",
            &URL_SAFE_NO_PAD.encode(br#"{"partitions":[[0,30,20]]}"#),
        ] {
            assert!(decode_token(bad).is_err(), "{bad}");
        }
    }
}

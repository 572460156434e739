//! The sweeper: run by an EventBridge schedule, it expires subscription instances whose term
//! ran out (stopping their tasks) and releases those expired for 7 days (removing everything
//! they own).
//!
//! # Time
//!
//! The sweeper takes "now" from the scheduled event's `time`, never from the clock, so a late
//! or retried invocation decides as of its schedule, and tests drive time by sending events.
//!
//! # Errors
//!
//! A conflicting write (someone renewed the instance meanwhile) skips that instance: the next
//! run decides again with fresh data. An event without a valid `time` is a permanent error.

use chrono::{DateTime, Utc};
use ferry_api::lifecycle::{remove_instance, transition};
use ferry_api::{ApiError, AppState};
use ferry_aws::Event;
use ferry_domain::id::InstanceId;
use ferry_domain::instance::SweepAction;
use ferry_domain::task::{TaskEvent, TaskState};
use ferry_store::{PageToken, StoreError};
use serde::Serialize;

/// What one run did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: Vec<InstanceId>,
    pub released: Vec<InstanceId>,
    /// Instances skipped because they changed during the run.
    pub skipped: Vec<InstanceId>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("the event has no valid `time` (an EventBridge scheduled event has one): {0}")]
    NoTime(String),
    #[error("sweeping failed: {0:?}")]
    Api(ApiError),
}

impl From<ApiError> for SweepError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<StoreError> for SweepError {
    fn from(e: StoreError) -> Self {
        Self::Api(e.into())
    }
}

/// Handles one scheduled event.
pub async fn handle(
    state: &AppState,
    event: &serde_json::Value,
) -> Result<SweepReport, SweepError> {
    let time = event
        .get("time")
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let now = DateTime::parse_from_rfc3339(time)
        .map_err(|e| SweepError::NoTime(format!("`{time}`: {e}")))?
        .with_timezone(&Utc);
    let report = sweep(state, now).await?;
    tracing::info!(now = %now, expired = report.expired.len(), released = report.released.len(), skipped = report.skipped.len(), "sweep finished");
    Ok(report)
}

/// Expires and releases what is due at `now`.
pub async fn sweep(state: &AppState, now: DateTime<Utc>) -> Result<SweepReport, SweepError> {
    let mut report = SweepReport::default();
    let mut token: Option<PageToken> = None;
    loop {
        let page = state
            .store()
            .list_instances(100, token.as_ref(), |i| i.sweep_action(now).is_some())
            .await?;
        for mut instance in page.items {
            let Some(action) = instance.value.sweep_action(now) else {
                continue;
            };
            let id = instance.value.id().clone();
            let mut events = Vec::new();
            match action {
                SweepAction::Expire => {
                    instance.value.apply_sweep(action);
                    match state
                        .store()
                        .update_instance(&instance.value, instance.version)
                        .await
                    {
                        Ok(_) => {}
                        Err(StoreError::Conflict { .. }) => {
                            report.skipped.push(id);
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                    if let Some(mut task) = state.store().get_task(&id).await?
                        && !matches!(task.value.task.state(), TaskState::Expired { .. })
                    {
                        events.extend(transition(state, &mut task, &TaskEvent::Expire).await?);
                    }
                    events.push(Event::InstanceExpired {
                        instance: id.clone(),
                        at: now,
                    });
                    report.expired.push(id);
                }
                SweepAction::Release => {
                    events.extend(remove_instance(state, &instance.value).await?);
                    events.push(Event::InstanceReleased {
                        instance: id.clone(),
                        at: now,
                    });
                    report.released.push(id);
                }
            }
            state.events().publish_or_log(&events).await;
        }
        match page.next {
            Some(t) => token = Some(t),
            None => return Ok(report),
        }
    }
}

//! The reconciler: run by the state table's stream, it keeps the capture service's desired
//! count at `ceil(tasks wanting a worker / tasks per worker)`, within the configured bounds, and
//! publishes a `Capture Service Scaled` event when it changes it.
//!
//! # Why on the stream
//!
//! A task that starts, stops, fails or is deleted changes its `TASK` item; the stream hands
//! those changes to the reconciler within a second, so a started task gets a worker without a
//! schedule's delay. Batches without a task change (metrics minutes, checkpoints, leases: most
//! of the stream) are ignored without reading anything.
//!
//! # Scaling down
//!
//! ECS stops the surplus workers with SIGTERM: each finishes its in-flight batch, checkpoints
//! and releases its leases (`ferry worker`), and the remaining workers claim the released
//! tasks at their next poll. Nothing is lost; the tasks pause for a few seconds.
//!
//! # Errors
//!
//! Reading the table or calling ECS can fail: the invocation fails and Lambda retries the batch
//! (the stream keeps it), so a missed change is decided again with fresh counts.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use chrono::Utc;
use ferry_api::AppState;
use ferry_aws::Event;
use ferry_store::StoreError;
use serde::Serialize;

/// How the capture service is scaled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSettings {
    /// The ECS cluster and service of the capture workers.
    pub cluster: String,
    pub service: String,
    /// How many tasks one worker runs (a worker can run more: this is what is provisioned).
    pub tasks_per_worker: u32,
    /// Bounds of the desired count. `min_workers` above 0 keeps workers warm with no task.
    pub min_workers: u32,
    pub max_workers: u32,
}

/// A setting that is missing or wrong.
#[derive(Debug, thiserror::Error)]
#[error("{name} {problem}")]
pub struct ConfigError {
    name: &'static str,
    problem: String,
}

impl ScaleSettings {
    /// The variables the reconciler needs beside `AppState::DEPLOYMENT_ENV`.
    pub const REQUIRED_ENV: [&'static str; 2] = ["FERRY_CAPTURE_CLUSTER", "FERRY_CAPTURE_SERVICE"];

    /// From `FERRY_CAPTURE_CLUSTER`, `FERRY_CAPTURE_SERVICE`, `FERRY_TASKS_PER_WORKER` (10),
    /// `FERRY_MIN_WORKERS` (0) and `FERRY_MAX_WORKERS` (10).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str| {
            get(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(ConfigError {
                    name,
                    problem: "is not set (the capture service's cluster and name)".into(),
                })
        };
        let number = |name: &'static str, default: u32, min: u32| -> Result<u32, ConfigError> {
            match get(name).filter(|v| !v.trim().is_empty()) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n >= min)
                    .ok_or(ConfigError {
                        name,
                        problem: format!("must be a whole number of at least {min}, not `{v}`"),
                    }),
            }
        };
        let settings = Self {
            cluster: required(Self::REQUIRED_ENV[0])?,
            service: required(Self::REQUIRED_ENV[1])?,
            tasks_per_worker: number("FERRY_TASKS_PER_WORKER", 10, 1)?,
            min_workers: number("FERRY_MIN_WORKERS", 0, 0)?,
            max_workers: number("FERRY_MAX_WORKERS", 10, 1)?,
        };
        if settings.min_workers > settings.max_workers {
            return Err(ConfigError {
                name: "FERRY_MIN_WORKERS",
                problem: format!(
                    "({}) must not exceed FERRY_MAX_WORKERS ({})",
                    settings.min_workers, settings.max_workers
                ),
            });
        }
        Ok(settings)
    }

    /// The desired count for `running` tasks: enough workers for them (at least one when there
    /// is any), within the bounds.
    pub fn desired(&self, running: u64) -> i32 {
        let needed = running.div_ceil(u64::from(self.tasks_per_worker));
        let bounded = needed.clamp(u64::from(self.min_workers), u64::from(self.max_workers));
        i32::try_from(bounded).unwrap_or(i32::MAX)
    }
}

/// Whether a stream record is about a task item (`sk = TASK`).
fn is_task_change(record: &EventRecord) -> bool {
    matches!(
        record.change.keys.get("sk"),
        Some(serde_dynamo::AttributeValue::S(sk)) if sk == "TASK"
    )
}

/// What one invocation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// No task changed in the batch.
    Ignored,
    /// The desired count was already right.
    Unchanged { desired: i32, running_tasks: u64 },
    Scaled {
        from: i32,
        to: i32,
        running_tasks: u64,
    },
}

/// Why an invocation failed (Lambda retries the batch).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reading the tasks failed: {0}")]
    Store(#[from] StoreError),
    #[error("ECS {operation} on {service} failed: {message}")]
    Ecs {
        operation: &'static str,
        service: String,
        message: String,
    },
}

/// The reconciler: the table, the event bus and the ECS service it scales.
#[derive(Debug, Clone)]
pub struct Reconciler {
    state: AppState,
    ecs: aws_sdk_ecs::Client,
    settings: ScaleSettings,
}

impl Reconciler {
    pub fn new(state: AppState, ecs: aws_sdk_ecs::Client, settings: ScaleSettings) -> Self {
        Self {
            state,
            ecs,
            settings,
        }
    }

    /// From the environment (the functions' variables and the scale settings).
    pub async fn from_env() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let settings = ScaleSettings::from_env()?;
        let state = AppState::from_env().await?;
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Ok(Self::new(state, aws_sdk_ecs::Client::new(&aws), settings))
    }

    /// Handles one batch of stream records.
    pub async fn handle(&self, event: &StreamEvent) -> Result<Outcome, ReconcileError> {
        if !event.records.iter().any(is_task_change) {
            return Ok(Outcome::Ignored);
        }
        self.reconcile().await
    }

    /// Sets the desired count from the tasks wanting a worker now.
    pub async fn reconcile(&self) -> Result<Outcome, ReconcileError> {
        let running_tasks = self.state.store().tasks_wanting_worker().await?.len() as u64;
        let desired = self.settings.desired(running_tasks);
        let ecs_error = |operation: &'static str, e: &dyn std::fmt::Display| ReconcileError::Ecs {
            operation,
            service: self.settings.service.clone(),
            message: e.to_string(),
        };
        let described = self
            .ecs
            .describe_services()
            .cluster(&self.settings.cluster)
            .services(&self.settings.service)
            .send()
            .await
            .map_err(|e| {
                ecs_error(
                    "DescribeServices",
                    &aws_sdk_ecs::error::DisplayErrorContext(e),
                )
            })?;
        let current = described
            .services()
            .first()
            .ok_or_else(|| {
                ecs_error(
                    "DescribeServices",
                    &"no such service in the cluster (check FERRY_CAPTURE_CLUSTER and FERRY_CAPTURE_SERVICE)",
                )
            })?
            .desired_count();
        if current == desired {
            tracing::info!(desired, running_tasks, "the capture service is sized right");
            return Ok(Outcome::Unchanged {
                desired,
                running_tasks,
            });
        }
        self.ecs
            .update_service()
            .cluster(&self.settings.cluster)
            .service(&self.settings.service)
            .desired_count(desired)
            .send()
            .await
            .map_err(|e| ecs_error("UpdateService", &aws_sdk_ecs::error::DisplayErrorContext(e)))?;
        tracing::info!(
            from = current,
            to = desired,
            running_tasks,
            "capture service scaled"
        );
        self.state
            .events()
            .publish_or_log(&[Event::CaptureServiceScaled {
                service: self.settings.service.clone(),
                from: current,
                to: desired,
                running_tasks,
                at: Utc::now(),
            }])
            .await;
        Ok(Outcome::Scaled {
            from: current,
            to: desired,
            running_tasks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<ScaleSettings, ConfigError> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ScaleSettings::from_lookup(|n| vars.get(n).cloned())
    }

    const NAMES: [(&str, &str); 2] = [
        ("FERRY_CAPTURE_CLUSTER", "ferry"),
        ("FERRY_CAPTURE_SERVICE", "capture"),
    ];

    #[test]
    fn the_desired_count_covers_the_tasks_within_the_bounds() {
        let s = settings(&[NAMES[0], NAMES[1], ("FERRY_TASKS_PER_WORKER", "4")]).unwrap();
        assert_eq!(s.desired(0), 0);
        assert_eq!(s.desired(1), 1);
        assert_eq!(s.desired(4), 1);
        assert_eq!(s.desired(5), 2);
        assert_eq!(s.desired(1_000), 10, "capped at the default maximum");
        let warm = settings(&[NAMES[0], NAMES[1], ("FERRY_MIN_WORKERS", "2")]).unwrap();
        assert_eq!(warm.desired(0), 2);
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        let e = settings(&[NAMES[0]]).unwrap_err().to_string();
        assert!(e.starts_with("FERRY_CAPTURE_SERVICE is not set"), "{e}");
        let e = settings(&[NAMES[0], NAMES[1], ("FERRY_TASKS_PER_WORKER", "0")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1, not `0`"), "{e}");
        let e = settings(&[
            NAMES[0],
            NAMES[1],
            ("FERRY_MIN_WORKERS", "5"),
            ("FERRY_MAX_WORKERS", "2"),
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("must not exceed FERRY_MAX_WORKERS (2)"), "{e}");
    }

    #[test]
    fn only_task_items_count_as_changes() {
        let record = |sk: &str| -> EventRecord {
            serde_json::from_value(serde_json::json!({
                "awsRegion": "us-east-1", "eventID": "1", "eventName": "MODIFY",
                "eventSource": "aws:dynamodb",
                "dynamodb": {"Keys": {"pk": {"S": "INS#x"}, "sk": {"S": sk}},
                             "SizeBytes": 10, "StreamViewType": "NEW_AND_OLD_IMAGES"}
            }))
            .unwrap()
        };
        assert!(is_task_change(&record("TASK")));
        assert!(!is_task_change(&record("METRICS#2026-11-22T10:00:00Z")));
        assert!(!is_task_change(&record("LEASE")));
    }
}

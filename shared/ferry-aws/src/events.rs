//! Lifecycle events on EventBridge, for automation.
//!
//! Every event has source `ferry` and one of the detail types below; `detail` is a JSON object
//! whose fields are documented in `docs/events.md`. Publishing is best effort after the state
//! change is stored: a failure is logged and does not undo the change.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use chrono::{DateTime, Utc};
use ferry_domain::id::InstanceId;
use ferry_domain::task::TaskState;

use serde_json::json;

use crate::AwsError;

/// The `source` of every Ferry event.
pub const SOURCE: &str = "ferry";

/// A lifecycle event.
#[derive(Debug, Clone)]
pub enum Event {
    InstanceCreated {
        instance: InstanceId,
        mode: &'static str,
        at: DateTime<Utc>,
    },
    InstanceExpired {
        instance: InstanceId,
        at: DateTime<Utc>,
    },
    InstanceReleased {
        instance: InstanceId,
        at: DateTime<Utc>,
    },
    InstanceDeleted {
        instance: InstanceId,
        at: DateTime<Utc>,
    },
    TaskStateChanged {
        instance: InstanceId,
        from: TaskState,
        to: TaskState,
        at: DateTime<Utc>,
    },
    PrecheckFinished {
        instance: InstanceId,
        passed: bool,
        failed_items: Vec<String>,
        at: DateTime<Utc>,
    },
    /// A restarted capture loop found its topic differing from the binlog after the checkpoint
    /// (a broker that lost acknowledged records or wrote some twice) and repaired what it could.
    TopicRepaired {
        instance: InstanceId,
        topic: String,
        partition: i32,
        /// Records the topic lacked before its tail: written again.
        missing: u64,
        /// Records after a missing one, written again to keep each key's order: duplicates.
        resent: u64,
        /// Records the binlog does not give at their place: left in the topic, duplicates.
        strays: u64,
        at: DateTime<Utc>,
    },
    /// A change-tracking task's source became another server (a failover) and the task
    /// followed it by the GTID state of its checkpoint.
    SourceFailedOver {
        instance: InstanceId,
        /// The server the checkpoint was read from, and the one the task reads now
        /// (`server_uuid`, or `server_id:<n>` on MariaDB).
        from_server: String,
        to_server: String,
        /// The checkpoint's GTID state: where the task resumes in the new server's binlog.
        gtid: String,
        from_position: String,
        to_position: String,
        at: DateTime<Utc>,
    },
    /// The reconciler changed the capture service's desired count.
    CaptureServiceScaled {
        service: String,
        from: i32,
        to: i32,
        running_tasks: u64,
        at: DateTime<Utc>,
    },
}

impl Event {
    pub fn detail_type(&self) -> &'static str {
        match self {
            Self::InstanceCreated { .. } => "Instance Created",
            Self::InstanceExpired { .. } => "Instance Expired",
            Self::InstanceReleased { .. } => "Instance Released",
            Self::InstanceDeleted { .. } => "Instance Deleted",
            Self::TaskStateChanged { .. } => "Task State Changed",
            Self::PrecheckFinished { .. } => "Precheck Finished",
            Self::CaptureServiceScaled { .. } => "Capture Service Scaled",
            Self::TopicRepaired { .. } => "Topic Repaired",
            Self::SourceFailedOver { .. } => "Source Failed Over",
        }
    }

    /// The `detail` object.
    pub fn detail(&self) -> serde_json::Value {
        fn state(s: &TaskState) -> serde_json::Value {
            serde_json::to_value(s).unwrap_or_default()
        }
        match self {
            Self::InstanceCreated { instance, mode, at } => {
                json!({"instance_id": instance, "mode": mode, "time": at})
            }
            Self::InstanceExpired { instance, at }
            | Self::InstanceReleased { instance, at }
            | Self::InstanceDeleted { instance, at } => {
                json!({"instance_id": instance, "time": at})
            }
            Self::TaskStateChanged {
                instance,
                from,
                to,
                at,
            } => {
                json!({"instance_id": instance, "from": state(from), "to": state(to), "time": at})
            }
            Self::PrecheckFinished {
                instance,
                passed,
                failed_items,
                at,
            } => {
                json!({"instance_id": instance, "passed": passed, "failed_items": failed_items, "time": at})
            }
            Self::CaptureServiceScaled {
                service,
                from,
                to,
                running_tasks,
                at,
            } => {
                json!({"service": service, "from": from, "to": to, "running_tasks": running_tasks, "time": at})
            }
            Self::TopicRepaired {
                instance,
                topic,
                partition,
                missing,
                resent,
                strays,
                at,
            } => {
                json!({"instance_id": instance, "topic": topic, "partition": partition, "missing": missing, "resent": resent, "strays": strays, "time": at})
            }
            Self::SourceFailedOver {
                instance,
                from_server,
                to_server,
                gtid,
                from_position,
                to_position,
                at,
            } => {
                json!({"instance_id": instance, "from_server": from_server, "to_server": to_server, "gtid": gtid, "from_position": from_position, "to_position": to_position, "time": at})
            }
        }
    }
}

/// The event bus.
#[derive(Debug, Clone)]
pub struct Events {
    client: Client,
    bus: String,
}

impl Events {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        Self {
            client,
            bus: bus.into(),
        }
    }

    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// Publishes events; an entry the bus refused is an error.
    pub async fn publish(&self, events: &[Event]) -> Result<(), AwsError> {
        if events.is_empty() {
            return Ok(());
        }
        let entries: Vec<PutEventsRequestEntry> = events
            .iter()
            .map(|e| {
                PutEventsRequestEntry::builder()
                    .source(SOURCE)
                    .detail_type(e.detail_type())
                    .detail(e.detail().to_string())
                    .event_bus_name(&self.bus)
                    .build()
            })
            .collect();
        let out = self
            .client
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::new("EventBridge", "PutEvents", e))?;
        if out.failed_entry_count() > 0 {
            let reasons: Vec<String> = out
                .entries()
                .iter()
                .filter_map(|e| e.error_message().map(str::to_owned))
                .collect();
            return Err(AwsError::new(
                "EventBridge",
                "PutEvents",
                PartialFailure(reasons.join("; ")),
            ));
        }
        Ok(())
    }

    /// Publishes, logging instead of failing: the state change the events describe is already
    /// stored and must not be reported as failed.
    pub async fn publish_or_log(&self, events: &[Event]) {
        if let Err(e) = self.publish(events).await {
            let types: Vec<&str> = events.iter().map(Event::detail_type).collect();
            tracing::error!(error = ?e, events = ?types, "publishing lifecycle events failed");
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("entries refused: {0}")]
struct PartialFailure(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_shapes() {
        let id = InstanceId::generate();
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let e = Event::TaskStateChanged {
            instance: id.clone(),
            from: TaskState::Configured,
            to: TaskState::Prechecking,
            at,
        };
        assert_eq!(e.detail_type(), "Task State Changed");
        let d = e.detail();
        assert_eq!(d["instance_id"], id.as_str());
        assert_eq!(d["from"]["state"], "configured");
        assert_eq!(d["to"]["state"], "prechecking");
        assert_eq!(d["time"], "2023-11-14T22:13:20Z");
    }
}

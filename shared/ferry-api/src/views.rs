//! The JSON shapes of responses. Nothing here ever holds a password.

use chrono::{DateTime, Utc};
use ferry_domain::consumer_group::ConsumerGroup;
use ferry_domain::instance::{Billing, Instance, InstanceClass, InstanceStatus, Mode};
use ferry_domain::precheck::PrecheckReport;
use ferry_domain::task::TaskState;
use ferry_domain::task_config::TaskConfig;
use ferry_store::{TaskRecord, Versioned};
use serde::Serialize;

use crate::AppState;

#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub name: String,
    pub mode: Mode,
    pub class: InstanceClass,
    pub billing: Billing,
    pub status: InstanceStatus,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_at: Option<DateTime<Utc>>,
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskState>,
}

impl InstanceView {
    pub fn new(i: &Versioned<Instance>, task: Option<&TaskRecord>) -> Self {
        let v = &i.value;
        Self {
            id: v.id().to_string(),
            name: v.name().as_str().to_owned(),
            mode: v.mode(),
            class: v.class(),
            billing: v.billing(),
            status: v.status(),
            created_at: v.created_at(),
            release_at: v.release_at(),
            version: i.version,
            task: task.map(|t| t.task.state().clone()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct InstancePage {
    pub instances: Vec<InstanceView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Where consumers read a tracking task's records.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    pub topic: String,
    /// The broker itself (Ferry's own clients and operators).
    pub bootstrap_servers: String,
    /// What a consumer group's clients set to read the topic through the consumer gateway;
    /// `null` when no gateway is configured.
    pub consumers: Option<ConsumerSettings>,
}

/// The client settings of a consumer, as Kafka clients name them.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumerSettings {
    /// `bootstrap.servers`: the consumer gateway.
    pub bootstrap_servers: String,
    /// `security.protocol`.
    pub security_protocol: String,
    /// `sasl.mechanism`: any of these.
    pub sasl_mechanisms: Vec<&'static str>,
    /// `sasl.username`: `<group username>-<consumer group id>` in the task view, the
    /// group's own in a group's view.
    pub sasl_username: String,
    /// `group.id`: the consumer group id.
    pub group_id: String,
}

impl ConsumerSettings {
    pub const MECHANISMS: [&'static str; 3] = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"];

    /// The settings with placeholders for the group (task view), or `None` without a gateway.
    pub fn of(settings: &crate::Settings, group: Option<&ConsumerGroup>) -> Option<Self> {
        let bootstrap = settings.consumer_bootstrap.clone()?;
        Some(Self {
            bootstrap_servers: bootstrap,
            security_protocol: settings.consumer_security_protocol.clone(),
            sasl_mechanisms: Self::MECHANISMS.to_vec(),
            sasl_username: group.map_or_else(
                || "<group username>-<consumer group id>".to_owned(),
                |g| g.sasl_username(),
            ),
            group_id: group
                .map_or_else(|| "<consumer group id>".to_owned(), |g| g.id().to_string()),
        })
    }
}

#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    pub instance_id: String,
    pub mode: Mode,
    #[serde(flatten)]
    pub state: TaskState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<TaskConfig>,
    pub config_version: u64,
    /// The last checkpoint (binlog position and time); null until capture has run.
    pub checkpoint: Option<serde_json::Value>,
    /// A tracking task's chosen start point and the position it begins at (until a reset):
    /// `{"point": {"time": …}, "position": "binlog.000003:1234"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryView>,
    /// The last switch of the objects a worker made (`GET …/task` only): the configuration
    /// version, and the binlog position from which it applies. A `config_version` above it
    /// is a reselection the worker has not reached yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objects_applied: Option<serde_json::Value>,
    /// A sync task's full sync, per table (`GET …/task` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_sync: Option<Vec<ferry_domain::sync::TableProgress>>,
    /// A sync task's latest verification (`GET …/task` only), if one was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<ferry_domain::verify::Verification>,
    /// A tracking task's latest backfill with each table's progress (`GET …/task` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<ferry_domain::backfill::Backfill>,
    /// A tracking task's binlog archive, as its archiver last reported it (`GET …/task` only,
    /// when the configuration has `archive`): the server, the oldest and newest position
    /// stored, `delay_seconds` (the age of the newest event stored, 0 when caught up), the
    /// last failure. `{"state": "not_started"}` before the archiver first reported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<serde_json::Value>,
    pub updated_at: DateTime<Utc>,
    pub version: u64,
}

impl TaskView {
    pub fn new(state: &AppState, t: &Versioned<TaskRecord>) -> Self {
        let r = &t.value;
        let delivery = (r.task.mode() == Mode::Tracking).then(|| DeliveryView {
            topic: state.topic_of(r),
            bootstrap_servers: state.settings().kafka_bootstrap.clone(),
            consumers: ConsumerSettings::of(state.settings(), None),
        });
        Self {
            id: r.task.id().to_string(),
            instance_id: r.task.instance_id().to_string(),
            mode: r.task.mode(),
            state: r.task.state().clone(),
            config: r.config.clone(),
            config_version: r.config_version,
            checkpoint: None,
            start: r
                .start
                .as_ref()
                .map(|s| serde_json::json!({"point": s.point, "position": s.position.to_string()})),
            delivery,
            objects_applied: None,
            full_sync: None,
            verification: None,
            backfill: None,
            archive: None,
            updated_at: r.updated_at,
            version: t.version,
        }
    }
}

/// `GET …/task`'s `archive`: the archiver's last report (`None`: none yet) with its state
/// (`not_started`, `archiving`, `failing`) and its delay at `now`.
pub fn archive_view(
    status: Option<ferry_domain::archive::ArchiveStatus>,
    now: DateTime<Utc>,
) -> serde_json::Value {
    let Some(status) = status else {
        return serde_json::json!({"state": "not_started"});
    };
    let delay = status
        .delay(now)
        .map(|d| d.num_milliseconds() as f64 / 1000.0);
    let state = if status.error.is_some() {
        "failing"
    } else {
        "archiving"
    };
    let mut view = serde_json::to_value(&status).unwrap_or_default();
    if let Some(map) = view.as_object_mut() {
        map.insert("state".into(), serde_json::json!(state));
        map.insert("delay_seconds".into(), serde_json::json!(delay));
    }
    view
}

#[derive(Debug, Serialize)]
pub struct PrecheckView {
    pub passed: bool,
    #[serde(flatten)]
    pub report: PrecheckReport,
}

#[derive(Debug, Serialize)]
pub struct GroupView {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub username: String,
    pub created_at: DateTime<Utc>,
    /// The client settings this group's consumers use (`null` without a consumer gateway).
    pub connection: Option<ConsumerSettings>,
    /// How far the group has read the task's topic (list only; see `ferry_kafka::groups`):
    /// `null` before the task created its topic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
    /// Why the progress could not be read (the broker did not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress_error: Option<String>,
}

impl GroupView {
    pub fn new(g: &ConsumerGroup, settings: &crate::Settings) -> Self {
        Self {
            id: g.id().to_string(),
            instance_id: g.instance_id().to_string(),
            name: g.name().as_str().to_owned(),
            username: g.username().as_str().to_owned(),
            created_at: g.created_at(),
            connection: ConsumerSettings::of(settings, Some(g)),
            progress: None,
            progress_error: None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct GroupList {
    pub consumer_groups: Vec<GroupView>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_domain::archive::ArchiveStatus;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    #[test]
    fn the_archive_view_says_its_state_and_delay() {
        assert_eq!(archive_view(None, at(0))["state"], "not_started");
        let mut s = ArchiveStatus::new("server_id:7", at(0));
        s.stored(
            "binlog.000002:4".into(),
            "binlog.000002:900".into(),
            Some(at(10)),
            at(11),
        );
        let v = archive_view(Some(s.clone()), at(40));
        assert_eq!(v["state"], "archiving");
        assert_eq!(v["delay_seconds"], 30.0);
        assert_eq!(v["oldest"], "binlog.000002:4");
        assert_eq!(v["through"], "binlog.000002:900");
        s.failed("S3 refused PutObject: AccessDenied".into(), at(41));
        let v = archive_view(Some(s), at(42));
        assert_eq!(v["state"], "failing");
        assert_eq!(v["error"], "S3 refused PutObject: AccessDenied");
    }
}

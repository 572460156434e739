//! The task record of an instance: its state, configuration and configuration version.

use chrono::{DateTime, Utc};
use ferry_domain::id::InstanceId;
use ferry_domain::position::Position;
use ferry_domain::start::StartPoint;
use ferry_domain::task::Task;
use ferry_domain::task_config::TaskConfig;
use serde::{Deserialize, Serialize};

use crate::keys::{TASK_SK, instance_pk};
use crate::{Store, StoreError, Versioned};

/// What is stored about a task. Workers converge to it: `task.state` is the desired and
/// observed lifecycle state, `config_version` grows with every configuration change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub task: Task,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TaskConfig>,
    pub config_version: u64,
    pub updated_at: DateTime<Utc>,
    /// A tracking task's topic generation: every reset starts a new topic (see
    /// `ferry_api::AppState::topic_of`), so nothing of the old one (its tail, positions of a
    /// binlog since reset or of another server) can make the next start skip a change.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub topic_generation: u32,
    /// A tracking task's chosen start point and where the precheck found it begins: the
    /// first start (with no checkpoint yet) begins there instead of at the source's current
    /// position. Cleared by a reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<ChosenStart>,
}

/// A start point (`POST …/task/start` with `{"start": …}`) and the binlog position it begins at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChosenStart {
    pub point: StartPoint,
    pub position: Position,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Store {
    pub async fn get_task(
        &self,
        instance: &InstanceId,
    ) -> Result<Option<Versioned<TaskRecord>>, StoreError> {
        Ok(self
            .get_versioned(instance_pk(instance), TASK_SK)
            .await?
            .map(|(value, version)| Versioned { value, version }))
    }

    /// The instances whose configured task wants a worker (starting, running or paused): what
    /// the capture service must have room for. Reads every instance and its task.
    pub async fn tasks_wanting_worker(&self) -> Result<Vec<InstanceId>, StoreError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self.list_instances(100, token.as_ref(), |_| true).await?;
            for instance in page.items {
                let id = instance.value.id();
                if let Some(task) = self.get_task(id).await?
                    && task.value.config.is_some()
                    && task.value.task.state().wants_worker()
                {
                    out.push(id.clone());
                }
            }
            match page.next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// Stores a changed task record if nobody changed it since `expected`.
    pub async fn update_task(&self, record: &TaskRecord, expected: u64) -> Result<u64, StoreError> {
        self.update_versioned(
            instance_pk(record.task.instance_id()),
            TASK_SK,
            record,
            expected,
            "the task",
        )
        .await
    }
}

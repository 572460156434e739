//! The objects a capture loop carries, and where they switch (see `ferry_domain::reselect`): a
//! reselection of a running task is switched in place at a transaction boundary, recorded with
//! its position before the loop passes it, and made again at that position after a crash.

use std::collections::VecDeque;

use chrono::Utc;
use ferry_api::AppState;
use ferry_domain::id::InstanceId;
use ferry_domain::position::Position;
use ferry_domain::reselect::{SelectionChange, SelectionPlan};
use ferry_domain::selection::ObjectSelection;
use ferry_domain::task_config::TaskConfig;
use ferry_store::TaskRecord;

use crate::delivery::tail::TailMarks;
use crate::error::TaskError;
use crate::session::Fence;

/// Whether two configurations differ in nothing but their objects.
fn only_objects_differ(a: &TaskConfig, b: &TaskConfig) -> bool {
    let mut a = a.clone();
    a.objects = b.objects.clone();
    a == *b
}

/// The objects the loop carries, and where they switch (see `ferry_domain::reselect`).
pub(super) struct Objects {
    pub(super) current: ObjectSelection,
    /// Switches recorded after the resume position, oldest first: made again exactly there.
    later: VecDeque<SelectionChange>,
    /// A reselection not yet in effect: (configuration version, objects).
    pending: Option<(u64, ObjectSelection)>,
    /// New switches are made only past these tails: up to them the topic already holds what
    /// the loop produced before a restart, and re-read records there are skipped, so a table
    /// added before them would miss them.
    not_before: TailMarks,
}

impl Objects {
    /// The selection at `at` from the task's history, recording `objects` as in effect there
    /// when the history has nothing yet (a first start); a newer `version` than the history
    /// knows is a pending switch.
    pub(super) async fn resume(
        state: &AppState,
        instance: &InstanceId,
        at: &Position,
        version: u64,
        objects: &ObjectSelection,
        not_before: TailMarks,
    ) -> Result<Self, TaskError> {
        let history = state.store().selection_history(instance).await?;
        let plan = SelectionPlan::at(&history, at);
        let newest = plan.newest_version();
        let current = match plan.current {
            Some(c) => c.objects,
            None => {
                let first = SelectionChange {
                    position: at.clone(),
                    config_version: version,
                    objects: objects.clone(),
                    applied_at: Utc::now(),
                };
                state.store().put_selection_change(instance, &first).await?;
                first.objects
            }
        };
        let pending = newest
            .is_some_and(|n| n < version)
            .then(|| (version, objects.clone()));
        Ok(Self {
            current,
            later: plan.later.into(),
            pending,
            not_before,
        })
    }

    /// Takes a reselection of `task` as a pending switch when nothing but the objects changed
    /// since `config`; checkpoints from then on belong to its version.
    pub(super) fn adopt(
        &mut self,
        task: &TaskRecord,
        config: &TaskConfig,
        fence: &mut Fence,
    ) -> bool {
        match task.config.as_ref() {
            Some(next) if only_objects_differ(next, config) => {
                fence.config_version = task.config_version;
                self.pending = Some((task.config_version, next.objects.clone()));
                true
            }
            _ => false,
        }
    }

    /// The switch due at the transaction boundary `at`, recorded before it is returned: a
    /// recorded one at or before `at`, else a pending one once past `not_before`.
    pub(super) async fn due(
        &mut self,
        state: &AppState,
        instance: &InstanceId,
        at: &Position,
    ) -> Result<Option<SelectionChange>, TaskError> {
        use std::cmp::Ordering;
        if let Some(next) = self.later.front()
            && next.position.cmp_file_offset(at) != Ordering::Greater
        {
            let change = self.later.pop_front();
            if let Some(c) = &change {
                self.current = c.objects.clone();
            }
            return Ok(change);
        }
        if !self.later.is_empty() || !self.not_before.passed(at) {
            return Ok(None);
        }
        let Some((version, objects)) = self.pending.take() else {
            return Ok(None);
        };
        let change = SelectionChange {
            position: at.clone(),
            config_version: version,
            objects,
            applied_at: Utc::now(),
        };
        state
            .store()
            .put_selection_change(instance, &change)
            .await?;
        self.current = change.objects.clone();
        Ok(Some(change))
    }
}

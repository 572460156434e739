//! The task of an instance and its state machine.
//!
//! ```text
//! not_configured ─configure─► configured ─start─► prechecking ─passed─► starting
//!                                  ▲                   │failed              │
//!                                  │                   ▼                    ▼
//!                              configure ◄──── precheck_failed     (sync) schema_sync ─► full_sync ─┐
//!                                                                         (both) ──────────────────►incremental
//! running stages ─pause─► paused ─resume─► the same stage
//! prechecking | starting | running | paused ─stop─► stopped ─start─► prechecking …
//! starting | running | paused ─fail─► failed{code,message,hint} ─start/configure─► …
//! every state but expired ─expire─► expired ─renew─► stopped (or not_configured)
//! every state but expired ─reset─► not_configured
//! ```
//!
//! [`TaskState::apply`] spells out every allowed pair of state and event; every other pair is
//! a [`TransitionError`] naming both, which the API answers with 409 and the current state.
//!
//! # Invariants (checked by property tests below)
//!
//! - A task never reaches a running stage without a passed precheck since it was last
//!   configured, stopped or failed.
//! - A tracking task never enters `schema_sync` or `full_sync`.
//! - `reset` always ends in `not_configured`; `expire` then `renew` keeps the configuration.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::{InstanceId, TaskId};
use crate::instance::Mode;

/// A stage of a running task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Creating target tables (sync only).
    SchemaSync,
    /// Copying existing rows (sync only).
    FullSync,
    /// Following the binlog.
    Incremental,
}

impl Stage {
    /// Whether a task of `mode` can be in this stage.
    pub fn allowed_in(self, mode: Mode) -> bool {
        matches!((self, mode), (Self::Incremental, _) | (_, Mode::Sync))
    }
}

/// Why a task failed: stable code, message, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub code: String,
    pub message: String,
    pub hint: String,
}

/// The state of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum TaskState {
    NotConfigured,
    Configured,
    Prechecking,
    PrecheckFailed,
    Starting,
    SchemaSync,
    FullSync,
    Incremental,
    Paused {
        stage: Stage,
    },
    Stopped,
    Failed {
        error: TaskError,
    },
    /// The instance's subscription expired; `configured` remembers whether there is a
    /// configuration to come back to on renewal.
    Expired {
        configured: bool,
    },
}

/// Something that happens to a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskEvent {
    /// A configuration was stored.
    Configure,
    /// The user asked to start: the precheck runs first.
    Start,
    PrecheckPassed,
    PrecheckFailed,
    /// A worker moved the task into a stage.
    Enter(Stage),
    Pause,
    Resume,
    Stop,
    Fail(TaskError),
    /// The instance's subscription expired.
    Expire,
    /// The instance's subscription was renewed.
    Renew,
    /// Stop and clear configuration and progress.
    Reset,
}

/// The name of a state without its data, for errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateKind {
    NotConfigured,
    Configured,
    Prechecking,
    PrecheckFailed,
    Starting,
    SchemaSync,
    FullSync,
    Incremental,
    Paused,
    Stopped,
    Failed,
    Expired,
}

impl StateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Configured => "configured",
            Self::Prechecking => "prechecking",
            Self::PrecheckFailed => "precheck_failed",
            Self::Starting => "starting",
            Self::SchemaSync => "schema_sync",
            Self::FullSync => "full_sync",
            Self::Incremental => "incremental",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TaskEvent {
    /// The verb of the event, for errors: "cannot *start* a task that is incremental".
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Configure => "configure",
            Self::Start => "start",
            Self::PrecheckPassed => "pass the precheck of",
            Self::PrecheckFailed => "fail the precheck of",
            Self::Enter(Stage::SchemaSync) => "begin schema sync of",
            Self::Enter(Stage::FullSync) => "begin full sync of",
            Self::Enter(Stage::Incremental) => "begin incremental sync of",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Stop => "stop",
            Self::Fail(_) => "fail",
            Self::Expire => "expire",
            Self::Renew => "renew",
            Self::Reset => "reset",
        }
    }
}

/// An event that is not allowed in the task's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {verb} a {mode} task that is {from}")]
pub struct TransitionError {
    pub from: StateKind,
    pub verb: &'static str,
    pub mode: &'static str,
}

impl TransitionError {
    /// What the user can do instead, for the API's `hint`.
    pub fn hint(&self) -> &'static str {
        match self.from {
            StateKind::NotConfigured => "configure the task first (PUT /v1/instances/{id}/task)",
            StateKind::Expired => "renew the instance first",
            StateKind::Prechecking
            | StateKind::Starting
            | StateKind::SchemaSync
            | StateKind::FullSync
            | StateKind::Incremental
            | StateKind::Paused => "stop the task first",
            _ => "read the task's state (GET /v1/instances/{id}/task) and act on it",
        }
    }
}

impl TaskState {
    pub fn kind(&self) -> StateKind {
        match self {
            Self::NotConfigured => StateKind::NotConfigured,
            Self::Configured => StateKind::Configured,
            Self::Prechecking => StateKind::Prechecking,
            Self::PrecheckFailed => StateKind::PrecheckFailed,
            Self::Starting => StateKind::Starting,
            Self::SchemaSync => StateKind::SchemaSync,
            Self::FullSync => StateKind::FullSync,
            Self::Incremental => StateKind::Incremental,
            Self::Paused { .. } => StateKind::Paused,
            Self::Stopped => StateKind::Stopped,
            Self::Failed { .. } => StateKind::Failed,
            Self::Expired { .. } => StateKind::Expired,
        }
    }

    /// The stage a running task is in.
    pub fn running_stage(&self) -> Option<Stage> {
        match self {
            Self::SchemaSync => Some(Stage::SchemaSync),
            Self::FullSync => Some(Stage::FullSync),
            Self::Incremental => Some(Stage::Incremental),
            _ => None,
        }
    }

    /// Whether a worker should hold this task: starting, running or paused.
    pub fn wants_worker(&self) -> bool {
        matches!(self, Self::Starting | Self::Paused { .. }) || self.running_stage().is_some()
    }

    /// Whether the task has a configuration.
    pub fn is_configured(&self) -> bool {
        match self {
            Self::NotConfigured => false,
            Self::Expired { configured } => *configured,
            _ => true,
        }
    }

    /// The state after `event`, or why `event` is not allowed now.
    pub fn apply(&self, mode: Mode, event: &TaskEvent) -> Result<TaskState, TransitionError> {
        use TaskEvent as E;
        use TaskState as S;

        let next = match (self, event) {
            // Configuration.
            (S::NotConfigured | S::Configured | S::PrecheckFailed | S::Stopped, E::Configure)
            | (S::Failed { .. }, E::Configure) => S::Configured,

            // Start runs the precheck first.
            (S::Configured | S::PrecheckFailed | S::Stopped | S::Failed { .. }, E::Start) => {
                S::Prechecking
            }
            (S::Prechecking, E::PrecheckPassed) => S::Starting,
            (S::Prechecking, E::PrecheckFailed) => S::PrecheckFailed,

            // Stages, in order; a sync task resuming after its full sync goes straight to
            // incremental, one resuming mid-snapshot straight to full sync.
            (S::Starting, E::Enter(stage)) if stage.allowed_in(mode) => stage_state(*stage),
            (S::SchemaSync, E::Enter(Stage::FullSync)) => S::FullSync,
            (S::FullSync, E::Enter(Stage::Incremental)) => S::Incremental,

            // Pause and resume keep the stage.
            (S::SchemaSync | S::FullSync | S::Incremental, E::Pause) => S::Paused {
                stage: self.running_stage().unwrap_or(Stage::Incremental),
            },
            (S::Paused { stage }, E::Resume) => stage_state(*stage),

            // Stop and fail.
            (
                S::Prechecking
                | S::Starting
                | S::SchemaSync
                | S::FullSync
                | S::Incremental
                | S::Paused { .. },
                E::Stop,
            ) => S::Stopped,
            (
                S::Starting | S::SchemaSync | S::FullSync | S::Incremental | S::Paused { .. },
                E::Fail(error),
            ) => S::Failed {
                error: error.clone(),
            },

            // Subscription expiry and renewal.
            (S::Expired { .. }, E::Expire | E::Reset) => return Err(self.refuse(mode, event)),
            (_, E::Expire) => S::Expired {
                configured: self.is_configured(),
            },
            (S::Expired { configured }, E::Renew) => {
                if *configured {
                    S::Stopped
                } else {
                    S::NotConfigured
                }
            }

            // Reset from anywhere but expired.
            (_, E::Reset) => S::NotConfigured,

            _ => return Err(self.refuse(mode, event)),
        };
        Ok(next)
    }

    fn refuse(&self, mode: Mode, event: &TaskEvent) -> TransitionError {
        TransitionError {
            from: self.kind(),
            verb: event.verb(),
            mode: match mode {
                Mode::Tracking => "tracking",
                Mode::Sync => "sync",
            },
        }
    }
}

fn stage_state(stage: Stage) -> TaskState {
    match stage {
        Stage::SchemaSync => TaskState::SchemaSync,
        Stage::FullSync => TaskState::FullSync,
        Stage::Incremental => TaskState::Incremental,
    }
}

/// The task of an instance: its mode and state. Configuration and progress are stored beside
/// it by the control plane and the workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    id: TaskId,
    instance_id: InstanceId,
    mode: Mode,
    #[serde(flatten)]
    state: TaskState,
}

impl Task {
    /// The new, unconfigured task of an instance.
    pub fn new(id: TaskId, instance_id: InstanceId, mode: Mode) -> Self {
        Self {
            id,
            instance_id,
            mode,
            state: TaskState::NotConfigured,
        }
    }

    pub fn id(&self) -> &TaskId {
        &self.id
    }

    pub fn instance_id(&self) -> &InstanceId {
        &self.instance_id
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn state(&self) -> &TaskState {
        &self.state
    }

    /// Applies `event`; on error the task is unchanged.
    pub fn apply(&mut self, event: &TaskEvent) -> Result<&TaskState, TransitionError> {
        self.state = self.state.apply(self.mode, event)?;
        Ok(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn error() -> TaskError {
        TaskError {
            code: "binlog_purged".into(),
            message: "the binlog file binlog.000001 was purged".into(),
            hint: "reset the task".into(),
        }
    }

    fn all_events() -> Vec<TaskEvent> {
        vec![
            TaskEvent::Configure,
            TaskEvent::Start,
            TaskEvent::PrecheckPassed,
            TaskEvent::PrecheckFailed,
            TaskEvent::Enter(Stage::SchemaSync),
            TaskEvent::Enter(Stage::FullSync),
            TaskEvent::Enter(Stage::Incremental),
            TaskEvent::Pause,
            TaskEvent::Resume,
            TaskEvent::Stop,
            TaskEvent::Fail(error()),
            TaskEvent::Expire,
            TaskEvent::Renew,
            TaskEvent::Reset,
        ]
    }

    fn run(mode: Mode, events: &[TaskEvent]) -> TaskState {
        let mut t = Task::new(TaskId::generate(), InstanceId::generate(), mode);
        for e in events {
            t.apply(e).unwrap_or_else(|err| panic!("{e:?}: {err}"));
        }
        t.state().clone()
    }

    #[test]
    fn tracking_happy_path() {
        let s = run(
            Mode::Tracking,
            &[
                TaskEvent::Configure,
                TaskEvent::Start,
                TaskEvent::PrecheckPassed,
                TaskEvent::Enter(Stage::Incremental),
                TaskEvent::Stop,
                TaskEvent::Start,
                TaskEvent::PrecheckPassed,
                TaskEvent::Enter(Stage::Incremental),
            ],
        );
        assert_eq!(s, TaskState::Incremental);
    }

    #[test]
    fn sync_walks_every_stage_in_order() {
        let s = run(
            Mode::Sync,
            &[
                TaskEvent::Configure,
                TaskEvent::Start,
                TaskEvent::PrecheckPassed,
                TaskEvent::Enter(Stage::SchemaSync),
                TaskEvent::Enter(Stage::FullSync),
                TaskEvent::Pause,
                TaskEvent::Resume,
                TaskEvent::Enter(Stage::Incremental),
            ],
        );
        assert_eq!(s, TaskState::Incremental);
    }

    #[test]
    fn invalid_transitions_are_typed_errors() {
        let t = TaskState::NotConfigured;
        let err = t.apply(Mode::Tracking, &TaskEvent::Start).unwrap_err();
        assert_eq!(err.from, StateKind::NotConfigured);
        assert_eq!(
            err.to_string(),
            "cannot start a tracking task that is not_configured"
        );
        assert!(err.hint().contains("configure"));

        let err = TaskState::Starting
            .apply(Mode::Tracking, &TaskEvent::Enter(Stage::FullSync))
            .unwrap_err();
        assert_eq!(err.from, StateKind::Starting);

        let err = TaskState::Incremental
            .apply(Mode::Sync, &TaskEvent::Start)
            .unwrap_err();
        assert_eq!(err.hint(), "stop the task first");
    }

    #[test]
    fn failure_is_kept_and_restartable() {
        let s = run(
            Mode::Tracking,
            &[
                TaskEvent::Configure,
                TaskEvent::Start,
                TaskEvent::PrecheckPassed,
                TaskEvent::Enter(Stage::Incremental),
                TaskEvent::Fail(error()),
            ],
        );
        assert_eq!(s, TaskState::Failed { error: error() });
        assert_eq!(
            s.apply(Mode::Tracking, &TaskEvent::Start).unwrap(),
            TaskState::Prechecking
        );
    }

    #[test]
    fn state_json_shape() {
        let s = TaskState::Failed { error: error() };
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["state"], "failed");
        assert_eq!(json["error"]["code"], "binlog_purged");
        let p = TaskState::Paused {
            stage: Stage::FullSync,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"state":"paused","stage":"full_sync"}"#
        );
        // The serde name and StateKind::as_str agree for every state.
        for s in [
            TaskState::NotConfigured,
            TaskState::PrecheckFailed,
            TaskState::Expired { configured: true },
            TaskState::SchemaSync,
        ] {
            let json = serde_json::to_value(&s).unwrap();
            assert_eq!(json["state"], s.kind().as_str());
        }
    }

    fn event() -> impl Strategy<Value = TaskEvent> {
        proptest::sample::select(all_events())
    }

    fn mode() -> impl Strategy<Value = Mode> {
        prop_oneof![Just(Mode::Tracking), Just(Mode::Sync)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random walks: only allowed events change the state; invariants hold on every step.
        #[test]
        fn walks_keep_invariants(mode in mode(), events in proptest::collection::vec(event(), 0..60)) {
            let mut state = TaskState::NotConfigured;
            // Whether a precheck passed since the task was last configured, stopped or failed.
            let mut cleared = false;
            for e in &events {
                match state.apply(mode, e) {
                    Ok(next) => {
                        match (e, &next) {
                            (TaskEvent::PrecheckPassed, _) => cleared = true,
                            (_, TaskState::Configured | TaskState::Stopped | TaskState::Failed { .. }
                                | TaskState::NotConfigured | TaskState::PrecheckFailed
                                | TaskState::Prechecking | TaskState::Expired { .. }) => cleared = false,
                            _ => {}
                        }
                        if next.wants_worker() {
                            prop_assert!(cleared, "{next:?} reached without a passed precheck after {events:?}");
                        }
                        if let Some(stage) = next.running_stage() {
                            prop_assert!(stage.allowed_in(mode));
                        }
                        if let TaskState::Paused { stage } = next {
                            prop_assert!(stage.allowed_in(mode));
                        }
                        if *e == TaskEvent::Reset {
                            prop_assert_eq!(&next, &TaskState::NotConfigured);
                        }
                        if *e == TaskEvent::Expire {
                            prop_assert_eq!(next.is_configured(), state.is_configured());
                        }
                        state = next;
                    }
                    Err(err) => {
                        prop_assert_eq!(err.from, state.kind());
                        prop_assert_eq!(err.verb, e.verb());
                    }
                }
            }
        }

        /// Expire then renew comes back configured exactly when it left configured.
        #[test]
        fn expiry_round_trip(mode in mode(), events in proptest::collection::vec(event(), 0..30)) {
            let mut state = TaskState::NotConfigured;
            for e in &events {
                if let Ok(next) = state.apply(mode, e) {
                    state = next;
                }
            }
            if let Ok(expired) = state.apply(mode, &TaskEvent::Expire) {
                let renewed = expired.apply(mode, &TaskEvent::Renew).unwrap();
                prop_assert_eq!(renewed.is_configured(), state.is_configured());
                prop_assert!(!renewed.wants_worker());
            }
        }

        /// Every state serializes and parses back to itself.
        #[test]
        fn states_round_trip_through_json(mode in mode(), events in proptest::collection::vec(event(), 0..30)) {
            let mut state = TaskState::NotConfigured;
            for e in &events {
                if let Ok(next) = state.apply(mode, e) {
                    state = next;
                }
                let json = serde_json::to_string(&state).unwrap();
                prop_assert_eq!(serde_json::from_str::<TaskState>(&json).unwrap(), state.clone());
            }
        }
    }

    /// Random walks reach every state of a sync task, so the properties above are not vacuous.
    #[test]
    fn every_state_is_reachable() {
        use std::collections::HashSet;
        let mut seen = HashSet::new();
        let events = all_events();
        // Breadth-first over the state graph.
        let mut frontier = vec![TaskState::NotConfigured];
        while let Some(s) = frontier.pop() {
            if !seen.insert(s.kind()) {
                continue;
            }
            for e in &events {
                if let Ok(next) = s.apply(Mode::Sync, e) {
                    frontier.push(next);
                }
            }
        }
        assert_eq!(seen.len(), 12, "{seen:?}");
    }
}

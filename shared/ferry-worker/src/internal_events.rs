//! What a worker reports about itself: one type per event, whose `emit` both logs it (with
//! structured fields) and counts it (the metrics of `crate::metrics`), so a log line and its
//! metric never drift apart.

use ferry_domain::id::InstanceId;
use ferry_domain::metrics::Side;
use ferry_domain::position::Position;

use crate::error::{DefiniteError, TaskError};
use crate::metrics::{TaskMeter, WorkerMetrics};

/// A record was handed to the destination.
pub(crate) struct RecordDelivered {
    pub(crate) bytes: usize,
    /// Whether it carries a row change (not BEGIN/COMMIT, DDL or a heartbeat).
    pub(crate) row: bool,
}

impl RecordDelivered {
    #[inline]
    pub(crate) fn emit(self, meter: &TaskMeter) {
        // Per record: counted only; a log line per record would cost more than the record.
        meter.delivered(self.bytes, self.row);
    }
}

/// A checkpoint was written.
pub(crate) struct CheckpointWritten<'a> {
    pub(crate) instance: &'a InstanceId,
    pub(crate) position: &'a Position,
}

impl CheckpointWritten<'_> {
    pub(crate) fn emit(self, meter: &TaskMeter) {
        tracing::debug!(instance = %self.instance, position = %self.position, "checkpoint written");
        meter.checkpointed();
    }
}

/// A task's source or target connection failed; the task is retried.
pub(crate) struct ConnectionFailed<'a> {
    pub(crate) instance: &'a InstanceId,
    pub(crate) side: Side,
    pub(crate) message: &'a str,
}

impl ConnectionFailed<'_> {
    pub(crate) fn emit(self, metrics: &WorkerMetrics) {
        tracing::warn!(instance = %self.instance, side = self.side.as_str(), error = %self.message, "a connection failed; the task is retried");
        metrics.connection_failed(self.side);
    }
}

/// A task failed for a definite cause.
pub(crate) struct TaskFailed<'a> {
    pub(crate) instance: &'a InstanceId,
    pub(crate) error: &'a DefiniteError,
}

impl TaskFailed<'_> {
    pub(crate) fn emit(self, metrics: &WorkerMetrics) {
        // `error` is the log line's own field, matched by the deployment's failed task metric
        // filter.
        tracing::error!(instance = %self.instance, code = self.error.code(), error = %self.error, "task failed");
        metrics.loop_ended(self.instance, "failed");
    }
}

/// A task's loop ended (any way but a definite failure, which is [`TaskFailed`]).
pub(crate) struct LoopEnded<'a> {
    pub(crate) instance: &'a InstanceId,
    pub(crate) result: &'a Result<(), TaskError>,
}

impl LoopEnded<'_> {
    pub(crate) fn emit(self, metrics: &WorkerMetrics) {
        let instance = self.instance;
        match self.result {
            Ok(()) => tracing::info!(instance = %instance, "capture stopped"),
            Err(TaskError::ConfigChanged) => {
                tracing::info!(instance = %instance, "configuration changed; the task restarts with it");
            }
            Err(TaskError::LeaseLost) => {
                tracing::warn!(instance = %instance, "lease lost to another worker; stopping without writing");
            }
            Err(TaskError::LeaseExpiring) => {
                tracing::warn!(instance = %instance, "the lease could not be renewed in time; stopped sending, the task is retried");
            }
            Err(TaskError::Transient(e)) => {
                tracing::warn!(instance = %instance, error = %e, "capture interrupted; the task is retried");
            }
            // Logged by their own events.
            Err(TaskError::Connection { .. } | TaskError::Definite(_)) => {}
        }
        let outcome = match self.result {
            Ok(()) => "stopped",
            Err(e) => e.outcome(),
        };
        if outcome != "failed" {
            metrics.loop_ended(instance, outcome);
        }
    }
}

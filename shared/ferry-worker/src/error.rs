//! Why a task's loop stopped: [`TaskError`], and its definite causes as [`DefiniteError`]
//! variants, each with its stable code (`docs/errors.md`) and the hint shown on the task.
//!
//! # Transient and definite
//!
//! A definite error is recorded on the task (`failed`, with code, message and hint) and never
//! retried blindly: retrying cannot help until someone acts on the hint. Everything else
//! (a connection that failed, DynamoDB throttling, a lease that could not be renewed) releases
//! the lease and is retried with backoff. The adapters' errors are classified here, once, by
//! `From` conversions; MySQL server error codes are classified by
//! [`ferry_mysql::ServerErrorKind`].

use ferry_aws::streams::StreamError;
use ferry_domain::metrics::Side;
use ferry_kafka::sink::SinkError;
use ferry_mysql::ServerErrorKind;
use ferry_mysql::binlog::ReaderError;
use ferry_store::StoreError;
use ferry_target::TargetError;

/// A cause retrying cannot fix: the task fails with [`DefiniteError::code`], the message
/// (`Display`) and [`DefiniteError::hint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefiniteError {
    #[error("the source no longer has the binlog the task must resume from: {0}")]
    BinlogPurged(String),
    #[error("the source refused the capture user (error {code}): {message}")]
    SourceAccessDenied { code: u16, message: String },
    /// An event or setting of the source stream Ferry cannot handle; the reader gives the hint.
    #[error("{message}")]
    SourceStream { message: String, hint: String },
    #[error("the source shows no binlog position")]
    SourceBinlogOff,
    #[error(
        "the task's checkpoint ({checkpoint}) is a position in the binlog of server {was}, but the source is now server {now}"
    )]
    SourceChanged {
        checkpoint: String,
        was: String,
        now: String,
    },
    #[error(
        "the source is now server {now}, which cannot stream the changes after the task's checkpoint (GTID {gtid}, in server {was}'s binlog): {message}"
    )]
    FailoverGtidMissing {
        was: String,
        now: String,
        gtid: String,
        message: String,
    },
    #[error("the endpoint `{host}` points at {refused}")]
    EndpointForbidden { host: String, refused: String },
    #[error(
        "the topic's last record was read from another source server ({written}) than the one the task reads now ({source_server}): binlog positions of two servers cannot be compared"
    )]
    TopicTailSource {
        written: String,
        source_server: String,
    },
    #[error("the last record of the topic has headers Ferry did not write ({key}, {position})")]
    TopicTail { key: String, position: String },
    #[error("{message} (at {position})")]
    Encode { message: String, position: String },
    #[error("{message}")]
    Kafka { message: String, hint: String },
    #[error("{message}")]
    Kinesis { message: String, hint: String },
    #[error("{message}")]
    Target { message: String, hint: String },
    #[error("{table}: {message}")]
    TypeConversion {
        table: String,
        message: String,
        hint: String,
    },
    #[error("{0}")]
    SnapshotValue(String),
    /// A table's row filter cannot be applied to it (a column it names is gone).
    #[error("{0}")]
    RowFilter(String),
    #[error(
        "a row of {table} at {position} holds {bytes} bytes, more than the worker's bound of {limit}"
    )]
    RowTooLarge {
        table: String,
        position: String,
        bytes: usize,
        limit: usize,
    },
}

impl DefiniteError {
    /// The stable code shown on the task and listed in `docs/errors.md`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BinlogPurged(_) => "binlog_purged",
            Self::SourceAccessDenied { .. } => "source_access_denied",
            Self::SourceStream { .. } => "source_stream",
            Self::SourceBinlogOff => "source_binlog_off",
            Self::SourceChanged { .. } => "source_changed",
            Self::FailoverGtidMissing { .. } => "failover_gtid_missing",
            Self::EndpointForbidden { .. } => "endpoint_address_forbidden",
            Self::TopicTailSource { .. } => "topic_tail_source",
            Self::TopicTail { .. } => "topic_tail",
            Self::Encode { .. } => "encode",
            Self::Kafka { .. } => "kafka",
            Self::Kinesis { .. } => "kinesis",
            Self::Target { .. } => "target",
            Self::TypeConversion { .. } => "type_conversion",
            Self::SnapshotValue(_) => "snapshot_value",
            Self::RowFilter(_) => "row_filter",
            Self::RowTooLarge { .. } => "row_too_large",
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> String {
        match self {
            Self::BinlogPurged(_) => "reset the task to start from the current position (changes made meanwhile are not captured), and keep binlogs longer, or archive them (the task's `archive` setting)".into(),
            Self::SourceAccessDenied { .. } => "grant REPLICATION SLAVE, REPLICATION CLIENT and SELECT to the capture user".into(),
            Self::SourceBinlogOff => "turn the binary log on and grant REPLICATION CLIENT".into(),
            Self::SourceChanged { .. } => "reset the task to start from the new server's current position (a tracking task then writes a new topic generation); changes between the two are not captured. A tracking task follows a failover by itself when its checkpoint names a GTID state (servers with GTIDs: MariaDB, or MySQL with gtid_mode=ON)".into(),
            Self::FailoverGtidMissing { .. } => "point the endpoint at a server whose binlogs hold every transaction after the checkpoint (a replica of the old source that logs what it applies: log_slave_updates / log_replica_updates, with GTIDs), or bring the old source back; resetting the task starts it from the new server's current position, without the changes in between".into(),
            Self::EndpointForbidden { .. } => "configure the database's own address; to allow this range anyway, the deployment sets FERRY_ENDPOINT_ALLOW".into(),
            Self::TopicTailSource { .. } => "reset the task: the next start writes a new topic generation from the new source (consumers follow GET …/task's delivery.topic)".into(),
            Self::TopicTail { .. } => "only Ferry may write to a task's topic; reset the task to start a new topic generation".into(),
            Self::Encode { .. } => "report this with the position; another format of the task may carry the event meanwhile".into(),
            Self::SnapshotValue(_) => "leave the column out of the task's selection (`columns`), or report the value".into(),
            Self::RowFilter(_) => "fix the table's row filter (`filter` in the object selection) to name the table's columns, then start the task again".into(),
            Self::RowTooLarge { .. } => "leave the large columns out of the task's selection (`columns`), or raise FERRY_MAX_ROW_BYTES on the workers (and their memory): the row is never dropped".into(),
            Self::SourceStream { hint, .. }
            | Self::Kafka { hint, .. }
            | Self::Kinesis { hint, .. }
            | Self::Target { hint, .. }
            | Self::TypeConversion { hint, .. } => hint.clone(),
        }
    }
}

/// Why a loop stopped.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Retrying cannot help: the task fails with the cause's code, message and hint.
    #[error("{code}: {0}", code = .0.code())]
    Definite(#[from] DefiniteError),
    #[error("{0}")]
    Transient(String),
    /// The source or target connection failed: retried like [`TaskError::Transient`], and
    /// shown as the task's connection status.
    #[error("{side:?} connection: {message}")]
    Connection { side: Side, message: String },
    /// Another worker holds the task now.
    #[error("the lease was lost")]
    LeaseLost,
    /// The lease was not renewed in time (DynamoDB unreachable, or the process was paused):
    /// the loop stopped sending before another worker could claim it; retried like
    /// [`TaskError::Transient`].
    #[error("the lease was not renewed in time; stopped sending before it could expire")]
    LeaseExpiring,
    /// The task was reset or its objects reselected: the loop stops at a transaction boundary
    /// and the worker starts it again with the new configuration.
    #[error("the task's configuration changed")]
    ConfigChanged,
}

impl TaskError {
    /// Whether the worker retries the task (with backoff) after this.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Transient(_) | Self::Connection { .. } | Self::LeaseExpiring
        )
    }

    /// A short name of the outcome, for the `loop_ended` metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::ConfigChanged => "config_changed",
            Self::LeaseLost => "lease_lost",
            Self::LeaseExpiring => "lease_expiring",
            Self::Definite(_) => "failed",
            Self::Transient(_) => "transient",
            Self::Connection { .. } => "connection",
        }
    }
}

pub(crate) fn transient(e: impl std::fmt::Display) -> TaskError {
    TaskError::Transient(e.to_string())
}

/// A failure of the source connection (retried).
pub(crate) fn source_failed(e: impl std::fmt::Display) -> TaskError {
    TaskError::Connection {
        side: Side::Source,
        message: e.to_string(),
    }
}

/// A failure of the destination or target connection (retried).
pub(crate) fn target_failed(e: impl std::fmt::Display) -> TaskError {
    TaskError::Connection {
        side: Side::Target,
        message: e.to_string(),
    }
}

impl From<ReaderError> for TaskError {
    fn from(e: ReaderError) -> Self {
        match e {
            ReaderError::Server { code, message } => match ServerErrorKind::of(code) {
                ServerErrorKind::BinlogUnavailable => DefiniteError::BinlogPurged(message).into(),
                ServerErrorKind::AccessDenied => {
                    DefiniteError::SourceAccessDenied { code, message }.into()
                }
                _ => source_failed(ReaderError::Server { code, message }),
            },
            ReaderError::Definite { message, hint } => {
                DefiniteError::SourceStream { message, hint }.into()
            }
            other => source_failed(other),
        }
    }
}

impl From<SinkError> for TaskError {
    fn from(e: SinkError) -> Self {
        match e {
            SinkError::Definite { message, hint } => DefiniteError::Kafka { message, hint }.into(),
            SinkError::Transient(message) => target_failed(message),
        }
    }
}

impl From<StreamError> for TaskError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Definite { message, hint } => {
                DefiniteError::Kinesis { message, hint }.into()
            }
            StreamError::Transient(message) => target_failed(message),
        }
    }
}

impl From<TargetError> for TaskError {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::Definite { message, hint } => {
                DefiniteError::Target { message, hint }.into()
            }
            TargetError::Transient(message) => target_failed(message),
            TargetError::Fenced => Self::LeaseExpiring,
        }
    }
}

impl From<StoreError> for TaskError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Self::LeaseLost,
            other => Self::Transient(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_of_the_stream_are_classified() {
        let purged = TaskError::from(ReaderError::Server {
            code: 1236,
            message: "could not find first log file".into(),
        });
        let TaskError::Definite(d) = purged else {
            panic!("1236 is definite")
        };
        assert_eq!(d.code(), "binlog_purged");
        assert!(d.hint().contains("reset the task"));
        let denied = TaskError::from(ReaderError::Server {
            code: 1227,
            message: "need REPLICATION SLAVE".into(),
        });
        assert!(matches!(
            denied,
            TaskError::Definite(DefiniteError::SourceAccessDenied { code: 1227, .. })
        ));
        let lost = TaskError::from(ReaderError::Server {
            code: 2013,
            message: "lost connection".into(),
        });
        assert!(lost.is_transient());
    }

    #[test]
    fn every_definite_cause_has_its_own_code_and_a_hint() {
        let all = [
            DefiniteError::BinlogPurged(String::new()),
            DefiniteError::SourceAccessDenied {
                code: 1045,
                message: String::new(),
            },
            DefiniteError::SourceStream {
                message: String::new(),
                hint: "h".into(),
            },
            DefiniteError::SourceBinlogOff,
            DefiniteError::SourceChanged {
                checkpoint: String::new(),
                was: String::new(),
                now: String::new(),
            },
            DefiniteError::FailoverGtidMissing {
                was: String::new(),
                now: String::new(),
                gtid: String::new(),
                message: String::new(),
            },
            DefiniteError::EndpointForbidden {
                host: String::new(),
                refused: String::new(),
            },
            DefiniteError::TopicTailSource {
                written: String::new(),
                source_server: String::new(),
            },
            DefiniteError::TopicTail {
                key: String::new(),
                position: String::new(),
            },
            DefiniteError::Encode {
                message: String::new(),
                position: String::new(),
            },
            DefiniteError::Kafka {
                message: String::new(),
                hint: "h".into(),
            },
            DefiniteError::Kinesis {
                message: String::new(),
                hint: "h".into(),
            },
            DefiniteError::Target {
                message: String::new(),
                hint: "h".into(),
            },
            DefiniteError::TypeConversion {
                table: String::new(),
                message: String::new(),
                hint: "h".into(),
            },
            DefiniteError::SnapshotValue(String::new()),
            DefiniteError::RowFilter(String::new()),
            DefiniteError::RowTooLarge {
                table: String::new(),
                position: String::new(),
                bytes: 2,
                limit: 1,
            },
        ];
        let mut codes: Vec<&str> = all.iter().map(DefiniteError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "codes are distinct");
        assert!(all.iter().all(|d| !d.hint().is_empty()));
    }
}

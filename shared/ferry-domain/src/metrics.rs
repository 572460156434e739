//! Task metrics: what a worker reports per minute and what the API shows.
//!
//! A worker adds what its task produced to the current minute's totals every few seconds and
//! sets the minute's latest rates and source delay. The API turns the last hour of minutes
//! into current rates and a per-minute history.
//!
//! - **RPS**: row changes delivered per second (selected rows only; BEGIN/COMMIT, DDL and
//!   heartbeat records are not rows).
//! - **BPS**: bytes of record payload delivered per second.
//! - **Target delay** (sync tasks): how far the target is behind the source: the time since
//!   the source wrote the newest change applied, 0 once everything read is applied and the
//!   source is idle.
//! - **Source delay**: how far the task's reading is behind the source: zero when the source
//!   said it has nothing newer (its heartbeat), else the time since the source wrote the last
//!   event read. Binlog timestamps have a resolution of one second.

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// How long the per-minute history reaches back.
pub const HISTORY: Duration = Duration::hours(1);

/// A report older than this means no worker runs the task: rates read as zero.
pub const STALE_AFTER: Duration = Duration::seconds(60);

/// One minute of a task's activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinuteMetrics {
    /// The minute's start.
    pub minute: DateTime<Utc>,
    pub rows: u64,
    pub bytes: u64,
    /// The highest source delay seen in the minute, in milliseconds.
    pub max_delay_ms: u64,
    /// At the last report: the source delay, and the rates over the report's interval.
    pub delay_ms: u64,
    /// Sync tasks: at the last report, how far the target is behind the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_delay_ms: Option<u64>,
    pub rps: f64,
    pub bps: f64,
    pub updated_at: DateTime<Utc>,
    /// Set by a report of a failed connection (the worker retries the task); cleared by the
    /// next report of a running loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ConnectionFailure>,
}

/// Which of a task's connections failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The source database (binlog stream, snapshot reads, catalog).
    Source,
    /// Where changes go: the sync target database, or the Kafka topic / Kinesis stream of a
    /// tracking task.
    Target,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Target => "target",
        }
    }
}

/// A connection failure a worker reported for a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionFailure {
    pub side: Side,
    pub message: String,
}

/// The state of one of a task's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// A worker runs the task and its last report found the connection working.
    Connected,
    /// The connection failed; the worker retries the task (2 s doubling to 60 s).
    Failing,
    /// No worker reported in the last minute: nobody knows.
    Unknown,
}

/// One connection's status, as `GET …/task/metrics` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub state: ConnectionState,
    /// What failed, when `failing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the state was last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<DateTime<Utc>>,
}

/// The status of the task's source and target connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connections {
    pub source: ConnectionStatus,
    pub target: ConnectionStatus,
}

impl Connections {
    /// From the latest report: a failure names its side (the other side was working when the
    /// loop stopped); a fresh report without one means both work; a stale one, nobody knows.
    fn from_latest(latest: Option<&MinuteMetrics>, fresh: bool) -> Self {
        let status = |side: Side| {
            let Some(m) = latest else {
                return ConnectionStatus {
                    state: ConnectionState::Unknown,
                    error: None,
                    reported_at: None,
                };
            };
            let (state, error) = match &m.failure {
                Some(f) if f.side == side => (ConnectionState::Failing, Some(f.message.clone())),
                _ if fresh => (ConnectionState::Connected, None),
                _ => (ConnectionState::Unknown, None),
            };
            ConnectionStatus {
                state,
                error,
                reported_at: Some(m.updated_at),
            }
        };
        Self {
            source: status(Side::Source),
            target: status(Side::Target),
        }
    }
}

/// The start of the minute `t` is in.
pub fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

/// One point of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MinutePoint {
    pub minute: DateTime<Utc>,
    pub rows: u64,
    pub bytes: u64,
    /// Averages over the minute (over the part that has passed, for the current one).
    pub rps: f64,
    pub bps: f64,
    pub max_delay_seconds: f64,
    /// Sync tasks: how far the target was behind the source at the minute's last report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_delay_seconds: Option<f64>,
}

/// What `GET /v1/instances/{id}/task/metrics` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMetrics {
    pub rps: f64,
    pub bps: f64,
    /// `None` until a worker reported.
    pub source_delay_seconds: Option<f64>,
    /// Sync tasks: how far the target is behind the source (the time since the source wrote
    /// the newest change applied; 0 once everything is applied and the source is idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_delay_seconds: Option<f64>,
    /// When a worker last reported; `None` if none did in the last hour.
    pub reported_at: Option<DateTime<Utc>>,
    /// The source's and the target's connection status.
    pub connections: Connections,
    /// The last hour, oldest first; minutes without a report are absent.
    pub history: Vec<MinutePoint>,
}

impl TaskMetrics {
    /// The view at `now` from stored minutes (in any order; older than an hour ignored).
    pub fn at(mut minutes: Vec<MinuteMetrics>, now: DateTime<Utc>) -> Self {
        minutes.retain(|m| m.minute > now - HISTORY && m.minute <= now);
        minutes.sort_by_key(|m| m.minute);
        let latest = minutes.iter().max_by_key(|m| m.updated_at);
        let fresh = latest.filter(|m| now - m.updated_at <= STALE_AFTER);
        let history = minutes
            .iter()
            .map(|m| {
                let elapsed = (now - m.minute).num_milliseconds().clamp(1_000, 60_000);
                let secs = elapsed as f64 / 1000.0;
                MinutePoint {
                    minute: m.minute,
                    rows: m.rows,
                    bytes: m.bytes,
                    rps: m.rows as f64 / secs,
                    bps: m.bytes as f64 / secs,
                    max_delay_seconds: m.max_delay_ms as f64 / 1000.0,
                    target_delay_seconds: m.target_delay_ms.map(|ms| ms as f64 / 1000.0),
                }
            })
            .collect();
        Self {
            rps: fresh.map_or(0.0, |m| m.rps),
            bps: fresh.map_or(0.0, |m| m.bps),
            // A stale report's delay keeps growing: nobody reads the source.
            source_delay_seconds: latest.map(|m| {
                let stale_for = if fresh.is_some() {
                    0
                } else {
                    (now - m.updated_at).num_milliseconds().max(0)
                };
                (m.delay_ms as f64 + stale_for as f64) / 1000.0
            }),
            target_delay_seconds: latest.and_then(|m| {
                let stale_for = if fresh.is_some() {
                    0
                } else {
                    (now - m.updated_at).num_milliseconds().max(0)
                };
                m.target_delay_ms
                    .map(|d| (d as f64 + stale_for as f64) / 1000.0)
            }),
            reported_at: latest.map(|m| m.updated_at),
            connections: Connections::from_latest(latest, fresh.is_some()),
            history,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn minute(at: &str, rows: u64, updated: &str) -> MinuteMetrics {
        MinuteMetrics {
            minute: t(at),
            rows,
            bytes: rows * 100,
            max_delay_ms: 1500,
            delay_ms: 250,
            target_delay_ms: Some(750),
            rps: 42.0,
            bps: 4200.0,
            updated_at: t(updated),
            failure: None,
        }
    }

    #[test]
    fn minutes_start_on_the_minute() {
        assert_eq!(
            minute_of(t("2026-11-22T10:03:59.999Z")),
            t("2026-11-22T10:03:00Z")
        );
    }

    #[test]
    fn the_view_has_current_rates_and_an_hour_of_history() {
        let now = t("2026-11-22T10:03:30Z");
        let m = TaskMetrics::at(
            vec![
                minute("2026-11-22T10:03:00Z", 300, "2026-11-22T10:03:25Z"),
                minute("2026-11-22T08:00:00Z", 1, "2026-11-22T08:00:10Z"),
                minute("2026-11-22T10:02:00Z", 600, "2026-11-22T10:02:59Z"),
            ],
            now,
        );
        assert_eq!(m.rps, 42.0);
        assert_eq!(m.source_delay_seconds, Some(0.25));
        assert_eq!(m.target_delay_seconds, Some(0.75));
        assert_eq!(m.reported_at, Some(t("2026-11-22T10:03:25Z")));
        assert_eq!(m.history.len(), 2, "older than an hour is gone");
        assert_eq!(m.history[0].rps, 10.0, "a whole minute: 600 rows / 60 s");
        assert_eq!(m.history[1].rps, 10.0, "the current one: 300 rows / 30 s");
        assert_eq!(m.history[1].max_delay_seconds, 1.5);
        assert_eq!(
            m.history[1].target_delay_seconds,
            Some(0.75),
            "each minute's target delay, for its chart"
        );
        assert_eq!(m.connections.source.state, ConnectionState::Connected);
        assert_eq!(m.connections.target.state, ConnectionState::Connected);
    }

    #[test]
    fn a_failure_names_its_side_until_the_next_report() {
        let now = t("2026-11-22T10:10:00Z");
        let mut failed = minute("2026-11-22T10:09:00Z", 0, "2026-11-22T10:09:50Z");
        failed.failure = Some(ConnectionFailure {
            side: Side::Target,
            message: "connection refused".into(),
        });
        let m = TaskMetrics::at(vec![failed.clone()], now);
        assert_eq!(m.connections.target.state, ConnectionState::Failing);
        assert_eq!(
            m.connections.target.error.as_deref(),
            Some("connection refused")
        );
        assert_eq!(m.connections.source.state, ConnectionState::Connected);
        // Still failing when the retries wait longer than a report's freshness.
        let later = TaskMetrics::at(vec![failed.clone()], t("2026-11-22T10:20:00Z"));
        assert_eq!(later.connections.target.state, ConnectionState::Failing);
        assert_eq!(later.connections.source.state, ConnectionState::Unknown);
        // A later report of a running loop clears it.
        let ok = minute("2026-11-22T10:09:00Z", 5, "2026-11-22T10:09:58Z");
        let m = TaskMetrics::at(vec![failed, ok], now);
        assert_eq!(m.connections.target.state, ConnectionState::Connected);
    }

    #[test]
    fn a_stale_report_reads_as_stopped_with_a_growing_delay() {
        let now = t("2026-11-22T10:10:00Z");
        let m = TaskMetrics::at(
            vec![minute("2026-11-22T10:05:00Z", 60, "2026-11-22T10:05:00Z")],
            now,
        );
        assert_eq!((m.rps, m.bps), (0.0, 0.0));
        assert_eq!(m.source_delay_seconds, Some(300.25));
        let none = TaskMetrics::at(vec![], now);
        assert_eq!(none.source_delay_seconds, None);
        assert_eq!(m.connections.source.state, ConnectionState::Unknown);
        assert_eq!(none.connections.target.state, ConnectionState::Unknown);
        assert!(none.history.is_empty());
    }
}

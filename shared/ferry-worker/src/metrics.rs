//! The worker's metrics: counted by the capture loops, scraped by Prometheus at `/metrics`, and
//! reported per task and minute to the store for the API.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `ferry_rows_total{instance}` | counter | row changes delivered |
//! | `ferry_records_total{instance}` | counter | records delivered (rows, BEGIN/COMMIT, DDL, heartbeats) |
//! | `ferry_bytes_total{instance}` | counter | record payload bytes delivered |
//! | `ferry_events_read_total{instance}` | counter | row changes read from the binlog, selected or not |
//! | `ferry_source_delay_seconds{instance}` | gauge | how far reading is behind the source (see `ferry_domain::metrics`) |
//! | `ferry_checkpoints_total{instance}` | counter | checkpoints written |
//! | `ferry_heartbeat_errors_total{instance}` | counter | failures of the heartbeat writer (it retries) |
//! | `ferry_archive_bytes_total{instance}` | counter | binlog bytes the [archive](crate::archive) stored (uncompressed) |
//! | `ferry_archive_pieces_total{instance}` | counter | pieces the binlog archive stored |
//! | `ferry_archive_errors_total{instance}` | counter | failures of the binlog archive (it retries; the log says what failed) |
//! | `ferry_archive_delay_seconds{instance}` | gauge | how far the binlog archive's stored pieces are behind the source: the age of the newest event stored, 0 when the source has nothing newer than what is stored |
//! | `ferry_tasks_running` | gauge | capture loops this worker runs |
//! | `ferry_connection_errors_total{side}` | counter | failures of a task's `source` or `target` connection (the task is retried) |
//! | `ferry_record_handoff_seconds{instance}` | histogram | Ferry's own share of a record's latency: its event read from the binlog → the record handed to the producer |
//! | `ferry_record_ack_seconds{instance}` | histogram | its event read → the record acknowledged by the destination |
//!
//! Counters are per worker process: a task that moves to another worker continues there from
//! zero, as Prometheus counters do after a restart. The per-minute totals in the store are added
//! to, so they survive a move.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use chrono::Utc;
use ferry_api::AppState;
use ferry_domain::id::InstanceId;
use ferry_domain::metrics::minute_of;
use ferry_store::MetricsReport;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TaskLabels {
    instance: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SideLabels {
    side: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndLabels {
    instance: String,
    reason: &'static str,
}

/// The worker's metric families.
#[derive(Debug)]
pub struct WorkerMetrics {
    registry: Registry,
    rows: Family<TaskLabels, Counter>,
    records: Family<TaskLabels, Counter>,
    bytes: Family<TaskLabels, Counter>,
    events_read: Family<TaskLabels, Counter>,
    checkpoints: Family<TaskLabels, Counter>,
    heartbeat_errors: Family<TaskLabels, Counter>,
    statements_skipped: Family<TaskLabels, Counter>,
    backfill_rows: Family<TaskLabels, Counter>,
    archive_bytes: Family<TaskLabels, Counter>,
    archive_pieces: Family<TaskLabels, Counter>,
    archive_errors: Family<TaskLabels, Counter>,
    archive_delay: Family<TaskLabels, Gauge<f64, AtomicU64>>,
    /// Archive meters alive per instance: a task's archive moves between a worker's runs of it
    /// (the loop's, the stopped task's), and the old meter may be dropped after the new one is
    /// made; the series go with the last.
    archive_meters: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    delay: Family<TaskLabels, Gauge<f64, AtomicU64>>,
    target_delay: Family<TaskLabels, Gauge<f64, AtomicU64>>,
    running: Gauge,
    connection_errors: Family<SideLabels, Counter>,
    loop_ends: Family<EndLabels, Counter>,
    handoff: Family<TaskLabels, Histogram, fn() -> Histogram>,
    acked: Family<TaskLabels, Histogram, fn() -> Histogram>,
}

/// Buckets of the record latency histograms, in seconds: 0.25 ms to 5 s.
const LATENCY_BUCKETS: [f64; 20] = [
    0.000_25, 0.000_5, 0.001, 0.002, 0.003, 0.005, 0.007_5, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 5.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let rows = Family::default();
        let records = Family::default();
        let bytes = Family::default();
        let events_read = Family::default();
        let checkpoints = Family::default();
        let heartbeat_errors = Family::default();
        let statements_skipped = Family::default();
        let backfill_rows = Family::default();
        let archive_bytes = Family::default();
        let archive_pieces = Family::default();
        let archive_errors = Family::default();
        let archive_delay = Family::default();
        let delay = Family::default();
        let target_delay = Family::default();
        let running = Gauge::default();
        let connection_errors = Family::default();
        let loop_ends = Family::default();
        let handoff: Family<TaskLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let acked: Family<TaskLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register("rows", "Row changes delivered", rows.clone());
        registry.register(
            "records",
            "Records delivered (rows, transaction, DDL and heartbeat records)",
            records.clone(),
        );
        registry.register("bytes", "Record payload bytes delivered", bytes.clone());
        registry.register(
            "events_read",
            "Row changes read from the binlog, selected or not",
            events_read.clone(),
        );
        registry.register("checkpoints", "Checkpoints written", checkpoints.clone());
        registry.register(
            "heartbeat_errors",
            "Failures of the heartbeat writer (it retries)",
            heartbeat_errors.clone(),
        );
        registry.register(
            "statements_skipped",
            "Statements of the binlog that are not DDL of a selected table or database (accounts, grants, routines, …): never delivered",
            statements_skipped.clone(),
        );
        registry.register(
            "backfill_rows",
            "Rows a backfill wrote into the topic as snapshot reads",
            backfill_rows.clone(),
        );
        registry.register(
            "archive_bytes",
            "Binlog bytes the archive stored (uncompressed)",
            archive_bytes.clone(),
        );
        registry.register(
            "archive_pieces",
            "Pieces the binlog archive stored",
            archive_pieces.clone(),
        );
        registry.register(
            "archive_errors",
            "Failures of the binlog archive (it retries; the worker's log says what failed)",
            archive_errors.clone(),
        );
        registry.register(
            "archive_delay_seconds",
            "How far the binlog archive's stored pieces are behind the source: the age of the newest event stored (0 when the source has nothing newer than what is stored)",
            archive_delay.clone(),
        );
        registry.register(
            "source_delay_seconds",
            "How far reading is behind the source (0 when the source has nothing newer)",
            delay.clone(),
        );
        registry.register(
            "target_delay_seconds",
            "Sync tasks: how far the target is behind the source (0 when everything read is applied and the source has nothing newer)",
            target_delay.clone(),
        );
        registry.register(
            "tasks_running",
            "Capture loops this worker runs",
            running.clone(),
        );
        registry.register(
            "loop_ends",
            "Task loops that ended, by why (stopped, config_changed, lease_lost, lease_expiring, failed, transient, connection): the worker starts the task again unless it is stopped, failed or taken over",
            loop_ends.clone(),
        );
        registry.register(
            "connection_errors",
            "Failures of a task's source or target connection (the task is retried)",
            connection_errors.clone(),
        );
        registry.register(
            "record_handoff_seconds",
            "Ferry's own share of a record's latency: its event read from the binlog until the record is handed to the producer",
            handoff.clone(),
        );
        registry.register(
            "record_ack_seconds",
            "A record's event read from the binlog until the destination acknowledged the record",
            acked.clone(),
        );
        Self {
            registry,
            rows,
            records,
            bytes,
            events_read,
            checkpoints,
            heartbeat_errors,
            statements_skipped,
            backfill_rows,
            archive_bytes,
            archive_pieces,
            archive_errors,
            archive_delay,
            archive_meters: std::sync::Mutex::default(),
            delay,
            target_delay,
            running,
            connection_errors,
            loop_ends,
            handoff,
            acked,
        }
    }
}

impl WorkerMetrics {
    /// The meter of one task's binlog archive; its series disappear when it is dropped.
    pub(crate) fn archive(self: &Arc<Self>, instance: &InstanceId) -> ArchiveMeter {
        let labels = TaskLabels {
            instance: instance.to_string(),
        };
        *self
            .archive_meters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(labels.instance.clone())
            .or_default() += 1;
        ArchiveMeter {
            bytes: self.archive_bytes.get_or_create(&labels).clone(),
            pieces: self.archive_pieces.get_or_create(&labels).clone(),
            errors: self.archive_errors.get_or_create(&labels).clone(),
            delay: self.archive_delay.get_or_create(&labels).clone(),
            owner: Arc::clone(self),
            labels,
        }
    }

    /// The meter of one task's loop; its series disappear when the meter is dropped.
    pub fn task(self: &Arc<Self>, instance: &InstanceId) -> TaskMeter {
        let labels = TaskLabels {
            instance: instance.to_string(),
        };
        self.running.inc();
        TaskMeter {
            rows: self.rows.get_or_create(&labels).clone(),
            records: self.records.get_or_create(&labels).clone(),
            bytes: self.bytes.get_or_create(&labels).clone(),
            events_read: self.events_read.get_or_create(&labels).clone(),
            checkpoints: self.checkpoints.get_or_create(&labels).clone(),
            heartbeat_errors: self.heartbeat_errors.get_or_create(&labels).clone(),
            statements_skipped: self.statements_skipped.get_or_create(&labels).clone(),
            backfill_rows: self.backfill_rows.get_or_create(&labels).clone(),
            delay: self.delay.get_or_create(&labels).clone(),
            handoff: self.handoff.get_or_create(&labels).clone(),
            acked: self.acked.get_or_create(&labels).clone(),
            target_delay: None,
            last_applied_ms: Arc::new(AtomicI64::new(0)),
            last_event_ms: Arc::new(AtomicI64::new(0)),
            caught_up: Arc::new(AtomicBool::new(false)),
            owner: Arc::clone(self),
            labels,
        }
    }

    /// A task's loop ended, for `reason`.
    pub fn loop_ended(&self, instance: &InstanceId, reason: &'static str) {
        self.loop_ends
            .get_or_create(&EndLabels {
                instance: instance.to_string(),
                reason,
            })
            .inc();
    }

    /// A task's `side` connection failed.
    pub fn connection_failed(&self, side: ferry_domain::metrics::Side) {
        self.connection_errors
            .get_or_create(&SideLabels {
                side: side.as_str(),
            })
            .inc();
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A router serving `GET /metrics`.
    pub fn router(self: &Arc<Self>) -> Router {
        let metrics = Arc::clone(self);
        Router::new().route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response()
                }
            }),
        )
    }
}

/// What one capture loop counts.
#[derive(Debug)]
pub struct TaskMeter {
    rows: Counter,
    records: Counter,
    bytes: Counter,
    events_read: Counter,
    checkpoints: Counter,
    heartbeat_errors: Counter,
    statements_skipped: Counter,
    backfill_rows: Counter,
    delay: Gauge<f64, AtomicU64>,
    handoff: Histogram,
    acked: Histogram,
    /// Sync tasks only (see [`TaskMeter::for_sync`]).
    target_delay: Option<Gauge<f64, AtomicU64>>,
    /// The source time of the newest change applied to the target (sync tasks).
    last_applied_ms: Arc<AtomicI64>,
    /// The source time of the last event read, in milliseconds since the epoch.
    last_event_ms: Arc<AtomicI64>,
    /// Whether the source said it has nothing newer since that event.
    caught_up: Arc<AtomicBool>,
    owner: Arc<WorkerMetrics>,
    labels: TaskLabels,
}

/// The counts of one task's binlog archive (see `crate::archive`).
pub(crate) struct ArchiveMeter {
    owner: Arc<WorkerMetrics>,
    labels: TaskLabels,
    pub(crate) bytes: Counter,
    pub(crate) pieces: Counter,
    pub(crate) errors: Counter,
    /// Seconds the stored pieces are behind the source.
    pub(crate) delay: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for ArchiveMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveMeter")
            .field("instance", &self.labels.instance)
            .finish()
    }
}

impl Drop for ArchiveMeter {
    fn drop(&mut self) {
        {
            let mut alive = self
                .owner
                .archive_meters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let n = alive.entry(self.labels.instance.clone()).or_default();
            *n = n.saturating_sub(1);
            if *n > 0 {
                return;
            }
            alive.remove(&self.labels.instance);
        }
        for family in [
            &self.owner.archive_bytes,
            &self.owner.archive_pieces,
            &self.owner.archive_errors,
        ] {
            family.remove(&self.labels);
        }
        self.owner.archive_delay.remove(&self.labels);
    }
}

impl Drop for TaskMeter {
    fn drop(&mut self) {
        self.owner.running.dec();
        for family in [
            &self.owner.rows,
            &self.owner.records,
            &self.owner.bytes,
            &self.owner.events_read,
            &self.owner.checkpoints,
            &self.owner.heartbeat_errors,
            &self.owner.statements_skipped,
            &self.owner.backfill_rows,
        ] {
            family.remove(&self.labels);
        }
        self.owner.delay.remove(&self.labels);
        self.owner.target_delay.remove(&self.labels);
        self.owner.handoff.remove(&self.labels);
        self.owner.acked.remove(&self.labels);
    }
}

impl TaskMeter {
    /// The meter of a sync task: it also tracks the target delay.
    #[must_use]
    pub fn for_sync(mut self) -> Self {
        self.target_delay = Some(self.owner.target_delay.get_or_create(&self.labels).clone());
        self
    }

    /// Changes written by the source up to `source_ms` are applied to the target.
    pub fn applied(&self, source_ms: i64) {
        self.last_applied_ms.fetch_max(source_ms, Ordering::Relaxed);
    }

    /// How far the target is behind the source, in milliseconds: 0 once everything read is
    /// applied and the source has nothing newer; `None` for a tracking task.
    pub fn target_delay_ms(&self) -> Option<u64> {
        self.target_delay.as_ref()?;
        let applied = self.last_applied_ms.load(Ordering::Relaxed);
        let read = self.last_event_ms.load(Ordering::Relaxed);
        if self.caught_up.load(Ordering::Relaxed) && applied >= read {
            return Some(0);
        }
        if applied == 0 {
            return Some(0);
        }
        Some(u64::try_from(Utc::now().timestamp_millis() - applied).unwrap_or(0))
    }

    /// `rows` row changes in `bytes` of statements were applied to a sync task's target.
    pub fn wrote(&self, rows: usize, bytes: usize) {
        self.records.inc_by(rows as u64);
        self.rows.inc_by(rows as u64);
        self.bytes.inc_by(bytes as u64);
    }

    /// A record was handed to the producer `since_read` after its event was read.
    pub fn handed_off(&self, since_read: Duration) {
        self.handoff.observe(since_read.as_secs_f64());
    }

    /// A record was acknowledged `since_read` after its event was read.
    pub fn acknowledged(&self, since_read: Duration) {
        self.acked.observe(since_read.as_secs_f64());
    }

    /// A record of `bytes` was queued; `row` when it carries a row change.
    pub fn delivered(&self, bytes: usize, row: bool) {
        self.records.inc();
        if row {
            self.rows.inc();
        }
        self.bytes.inc_by(bytes as u64);
    }

    /// An event was read from the binlog: its rows count as read, and its source time (or, for
    /// a heartbeat, the source having nothing newer) sets the delay.
    pub fn observe(&self, event: &ferry_mysql::binlog::ReadEvent) {
        use ferry_mysql::binlog::SourceEvent;
        match &event.event {
            SourceEvent::Heartbeat => self.caught_up(),
            SourceEvent::Rows(rows) => {
                self.read_rows(rows.count as usize);
                self.event_at(event.timestamp.timestamp_millis());
            }
            _ => self.event_at(event.timestamp.timestamp_millis()),
        }
    }

    /// `n` row changes were read.
    pub fn read_rows(&self, n: usize) {
        self.events_read.inc_by(n as u64);
    }

    /// An event written by the source at `source_ms` was read. The newest time read counts:
    /// binlog times are whole seconds, a heartbeat's are milliseconds.
    pub fn event_at(&self, source_ms: i64) {
        self.last_event_ms.fetch_max(source_ms, Ordering::Relaxed);
        self.caught_up.store(false, Ordering::Relaxed);
    }

    /// The source has nothing newer.
    pub fn caught_up(&self) {
        self.caught_up.store(true, Ordering::Relaxed);
    }

    pub fn checkpointed(&self) {
        self.checkpoints.inc();
    }

    /// A statement that is not DDL of a selected object was left out.
    pub fn statement_skipped(&self) {
        self.statements_skipped.inc();
    }

    /// A backfill wrote `rows` rows into the topic.
    pub fn backfilled(&self, rows: u64) {
        self.backfill_rows.inc_by(rows);
    }

    /// The heartbeat writer failed once.
    pub fn heartbeat_failed(&self) {
        self.heartbeat_errors.inc();
    }

    /// The source delay now, in milliseconds.
    pub fn delay_ms(&self) -> u64 {
        if self.caught_up.load(Ordering::Relaxed) {
            return 0;
        }
        let last = self.last_event_ms.load(Ordering::Relaxed);
        if last == 0 {
            return 0;
        }
        u64::try_from(Utc::now().timestamp_millis() - last).unwrap_or(0)
    }

    /// Keeps the delay gauge current every second and adds to the task's minute in the store
    /// every `every` (run it on a task of its own). When `done` turns true (or its sender is
    /// dropped) it reports what is left and returns.
    pub async fn report(
        self: Arc<Self>,
        state: AppState,
        instance: InstanceId,
        every: Duration,
        mut done: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = (
            self.rows.get(),
            self.bytes.get(),
            tokio::time::Instant::now(),
        );
        let mut minute = minute_of(Utc::now());
        let mut max_delay: u64 = 0;
        let mut reported_at = tokio::time::Instant::now();
        loop {
            let finished = tokio::select! {
                _ = tick.tick() => false,
                _ = done.changed() => true,
            };
            let delay = self.delay_ms();
            self.delay.set(delay as f64 / 1000.0);
            let target_delay = self.target_delay_ms();
            if let (Some(g), Some(d)) = (&self.target_delay, target_delay) {
                g.set(d as f64 / 1000.0);
            }
            let now = Utc::now();
            let this_minute = minute_of(now);
            let minute_ended = this_minute != minute;
            max_delay = max_delay.max(delay);
            if !finished && !minute_ended && reported_at.elapsed() < every {
                continue;
            }
            let (rows, bytes) = (self.rows.get(), self.bytes.get());
            let elapsed = last.2.elapsed().as_secs_f64().max(0.001);
            let report = MetricsReport {
                minute,
                rows: rows - last.0,
                bytes: bytes - last.1,
                max_delay_ms: max_delay,
                delay_ms: delay,
                target_delay_ms: target_delay,
                rps: (rows - last.0) as f64 / elapsed,
                bps: (bytes - last.1) as f64 / elapsed,
                at: now,
            };
            match state.store().report_metrics(&instance, &report).await {
                Ok(()) => {
                    last = (rows, bytes, tokio::time::Instant::now());
                    reported_at = tokio::time::Instant::now();
                    if minute_ended {
                        // One line per task and minute: the deployment's log metric filters
                        // turn it into the task delay metric its alarm watches.
                        tracing::info!(instance = %instance, max_delay_ms = max_delay, target_delay_ms = target_delay.unwrap_or(0), "task minute");
                        minute = this_minute;
                        max_delay = delay;
                    }
                }
                // Counts stay in the counters and go with the next report.
                Err(e) => tracing::warn!(instance = %instance, error = %e, "metrics report failed"),
            }
            if finished {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_meter_shows_in_the_exposition_until_dropped() {
        let metrics = Arc::new(WorkerMetrics::default());
        let id = InstanceId::generate();
        let meter = metrics.task(&id);
        meter.delivered(120, true);
        meter.delivered(30, false);
        meter.read_rows(5);
        let text = metrics.encode();
        assert!(
            text.contains(&format!("ferry_rows_total{{instance=\"{id}\"}} 1")),
            "{text}"
        );
        assert!(text.contains(&format!("ferry_records_total{{instance=\"{id}\"}} 2")));
        assert!(text.contains(&format!("ferry_bytes_total{{instance=\"{id}\"}} 150")));
        assert!(text.contains(&format!("ferry_events_read_total{{instance=\"{id}\"}} 5")));
        assert!(text.contains("ferry_tasks_running 1"));
        drop(meter);
        let text = metrics.encode();
        assert!(!text.contains(id.as_str()), "{text}");
        assert!(text.contains("ferry_tasks_running 0"));
    }

    #[test]
    fn archive_series_stay_while_any_meter_of_the_task_is_alive() {
        let metrics = Arc::new(WorkerMetrics::default());
        let id = InstanceId::generate();
        let pieces = format!("ferry_archive_pieces_total{{instance=\"{id}\"}}");
        let old = metrics.archive(&id);
        old.pieces.inc();
        // The next run's meter is made before the old one is dropped (an aborted task's).
        let new = metrics.archive(&id);
        drop(old);
        new.pieces.inc();
        new.bytes.inc_by(1000);
        let text = metrics.encode();
        assert!(text.contains(&format!("{pieces} 2")), "{text}");
        assert!(
            !text.contains("ferry_tasks_running 1"),
            "an archive is no running loop"
        );
        new.delay.set(2.5);
        assert!(
            metrics.encode().contains(&format!(
                "ferry_archive_delay_seconds{{instance=\"{id}\"}} 2.5"
            )),
            "{}",
            metrics.encode()
        );
        drop(new);
        assert!(!metrics.encode().contains(id.as_str()));
    }

    #[test]
    fn delay_is_zero_when_caught_up_and_the_age_of_the_last_event_otherwise() {
        let metrics = Arc::new(WorkerMetrics::default());
        let meter = metrics.task(&InstanceId::generate());
        assert_eq!(meter.delay_ms(), 0, "nothing read yet");
        meter.event_at(Utc::now().timestamp_millis() - 5_000);
        assert!((5_000..6_000).contains(&meter.delay_ms()));
        meter.caught_up();
        assert_eq!(meter.delay_ms(), 0);
    }
}

//! What the sync loop applies to the target, and when: changes merged by key into a batch,
//! applied in one target transaction at a source transaction boundary; chunks of the full sync
//! loaded where the stream passes their high watermark.
//!
//! # Pipelined apply
//!
//! A batch's statements are built in the loop and run on the target by a task of their own
//! ([`InFlight`]), which holds the target connection while they run: the loop goes on reading
//! the binlog and merging the next batch meanwhile. One batch is in flight at most, so batches
//! reach the target in order and memory holds two batches at most. Whatever needs the target
//! (the next batch, a chunk load, DDL, the end) first waits for the batch in flight
//! ([`Applier::target`]); a commit counts as applied (for the checkpoint and the metrics) only
//! once the target answered it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_domain::change::ObjectName;
use ferry_domain::position::Position;
use ferry_domain::sync::{ApplyMode, Batch, TargetTable};
use ferry_target::progress::Applied;
use ferry_target::{Target, TargetError};
use tokio::task::JoinHandle;

use crate::copy::{Copies, ReadChunk};
use crate::error::{TaskError, target_failed, transient};
use crate::metrics::TaskMeter;
use crate::session::Session;

/// A batch in `merge` mode is applied at least this often.
const MERGE_EVERY: Duration = Duration::from_millis(200);

/// A batch or a chunk running on the target: the task holding the connection, and what to
/// note once the target answered.
struct InFlight {
    task: JoinHandle<(Target, Result<(), TargetError>)>,
    started: tokio::time::Instant,
    changes: usize,
    bytes: usize,
    /// The source commit the batch ends at (`None`: a part of a bigger transaction, or a chunk).
    commit: Option<(Position, DateTime<Utc>)>,
    /// The chunk loaded (table, index, rows).
    chunk: Option<Loaded>,
}

/// A chunk the target holds: its table, index and rows.
pub(super) type Loaded = (ObjectName, u32, u64);

/// What the loop applies to the target, and when.
pub(super) struct Applier {
    /// The target, while no batch is in flight.
    idle: Option<Target>,
    in_flight: Option<InFlight>,
    /// A transaction was left open by the parts of a big source transaction.
    open: bool,
    pub(super) engine: ferry_domain::convert::TargetEngine,
    pub(super) tables: HashMap<ObjectName, TargetTable>,
    pub(super) batch: Batch,
    pub(super) mode: ApplyMode,
    pub(super) batch_rows: usize,
    /// The last source commit in the batch, and its time.
    pub(super) batched_commit: Option<(Position, DateTime<Utc>)>,
    /// The last commit applied to the target and not yet checkpointed.
    pub(super) applied: Option<(Position, DateTime<Utc>)>,
    pub(super) since: tokio::time::Instant,
    pub(super) meter: Arc<TaskMeter>,
    /// One apply ends within this, well before the lease could expire (see `crate::lease`).
    pub(super) apply_timeout: Duration,
    /// The task and its source server, as the target's progress table names them.
    pub(super) task: String,
    pub(super) source: String,
    /// Chunks the target committed, not yet marked done in the store.
    loaded: Vec<Loaded>,
}

impl Drop for Applier {
    fn drop(&mut self) {
        // A batch still running when the loop ends (an error) is given up: its connection
        // closes and the target rolls its transaction back.
        if let Some(f) = &self.in_flight {
            f.task.abort();
        }
    }
}

impl Applier {
    pub(super) fn new(
        target: Target,
        engine: ferry_domain::convert::TargetEngine,
        tables: HashMap<ObjectName, TargetTable>,
        session: &Session<'_>,
    ) -> Self {
        Self {
            idle: Some(target),
            in_flight: None,
            open: false,
            engine,
            tables,
            batch: Batch::new(),
            mode: session.config.sync.apply,
            batch_rows: session.config.sync.batch_rows as usize,
            batched_commit: None,
            applied: None,
            since: tokio::time::Instant::now(),
            meter: Arc::clone(&session.meter),
            apply_timeout: session.lease.times().apply_timeout(),
            task: session.instance.to_string(),
            source: session.fence.source.clone(),
            loaded: Vec::new(),
        }
    }

    /// The progress row saying the target holds everything up to `position`.
    pub(super) fn applied_at(&self, (position, time): (&Position, DateTime<Utc>)) -> Applied {
        Applied {
            task: self.task.clone(),
            source: self.source.clone(),
            position: position.to_string(),
            source_time_ms: time.timestamp_millis(),
        }
    }

    /// The target, once the batch in flight (if any) is applied.
    pub(super) async fn target(&mut self) -> Result<&mut Target, TaskError> {
        self.settle().await?;
        self.idle
            .as_mut()
            .ok_or_else(|| transient("the target connection was lost with a batch"))
    }

    /// Waits for the batch in flight and notes it applied.
    async fn settle(&mut self) -> Result<(), TaskError> {
        let Some(f) = self.in_flight.take() else {
            return Ok(());
        };
        let left = self.apply_timeout.saturating_sub(f.started.elapsed());
        let mut task = f.task;
        let (target, result) = match tokio::time::timeout(left, &mut task).await {
            Ok(joined) => joined.map_err(|e| transient(format!("the apply task ended: {e}")))?,
            Err(_) => {
                task.abort();
                return Err(target_failed(format!(
                    "applying a batch took longer than {:?}: given up before the lease could expire",
                    self.apply_timeout
                )));
            }
        };
        self.idle = Some(target);
        result?;
        self.loaded.extend(f.chunk);
        self.meter.wrote(f.changes, f.bytes);
        if let Some(c) = f.commit {
            crate::faults::applied();
            self.meter.applied(c.1.timestamp_millis());
            self.applied = Some(c);
        }
        Ok(())
    }

    /// Hands the batch to the target (after the one in flight), committing it at
    /// `batched_commit` when `commit`, else leaving its transaction open.
    async fn send(&mut self, commit: bool) -> Result<(), TaskError> {
        let commit_at = if commit {
            self.batched_commit.take()
        } else {
            None
        };
        let applied = commit_at.as_ref().map(|(p, t)| self.applied_at((p, *t)));
        let statements =
            ferry_target::statements(self.engine, &self.batch, &self.tables, applied.as_ref())?;
        let changes = self.batch.changes();
        // The batch's own bytes, without the progress row.
        let bytes = statements
            .iter()
            .take(statements.len() - usize::from(applied.is_some()))
            .map(String::len)
            .sum();
        self.batch = Batch::new();
        self.settle().await?;
        let mut target = self
            .idle
            .take()
            .ok_or_else(|| transient("the target connection was lost with a batch"))?;
        self.open = !commit;
        let task = tokio::spawn(async move {
            let result = target.run(&statements, commit).await;
            (target, result)
        });
        self.in_flight = Some(InFlight {
            task,
            started: tokio::time::Instant::now(),
            changes,
            bytes,
            commit: commit_at,
            chunk: None,
        });
        Ok(())
    }

    /// Hands a chunk's rows to the target (after what is in flight), not waited for: the
    /// changes handed over after it reach the target after it.
    async fn load(
        &mut self,
        table: TargetTable,
        rows: Vec<Vec<ferry_domain::value::Value>>,
        chunk: Loaded,
    ) -> Result<(), TaskError> {
        self.settle().await?;
        let mut target = self
            .idle
            .take()
            .ok_or_else(|| transient("the target connection was lost with a chunk"))?;
        let task = tokio::spawn(async move {
            let result = target.load_rows(&table, &rows).await;
            (target, result)
        });
        self.in_flight = Some(InFlight {
            task,
            started: tokio::time::Instant::now(),
            changes: 0,
            bytes: 0,
            commit: None,
            chunk: Some(chunk),
        });
        Ok(())
    }

    /// The chunks the target committed since the last call.
    pub(super) fn take_loaded(&mut self) -> Vec<Loaded> {
        std::mem::take(&mut self.loaded)
    }

    /// Applies the batch up to its last commit, recorded in the target's progress table in the
    /// same transaction (see `ferry_target::progress`): handed to the target, not waited for.
    pub(super) async fn flush(&mut self) -> Result<(), TaskError> {
        // A transaction a big source transaction's parts left open ends here, even with
        // nothing left to add.
        if !self.batch.is_empty() || self.open {
            self.send(true).await?;
        } else if let Some(c) = self.batched_commit.take() {
            // Nothing of it reached the selected tables: applied once what is in flight is.
            match &mut self.in_flight {
                Some(f) => f.commit = Some(c),
                None => {
                    self.meter.applied(c.1.timestamp_millis());
                    self.applied = Some(c);
                }
            }
        }
        self.since = tokio::time::Instant::now();
        Ok(())
    }

    /// Inside a source transaction, once the batch holds `batch_rows` changes: hands them to
    /// the target in a transaction left open until the source commit, so a transaction of any
    /// size is applied whole with at most `batch_rows` changes (two batches) in memory.
    pub(super) async fn flush_part(&mut self) -> Result<(), TaskError> {
        if self.batch.changes() < self.batch_rows {
            return Ok(());
        }
        self.send(false).await
    }

    /// Applies everything handed over and waits for it (before a checkpoint at the end, a
    /// chunk load or DDL).
    pub(super) async fn drain(&mut self) -> Result<(), TaskError> {
        self.flush().await?;
        self.settle().await
    }

    /// At a source transaction boundary: applies the batch when it is due (at once when a
    /// big transaction's parts left a target transaction open).
    pub(super) async fn boundary(&mut self, idle: bool) -> Result<(), TaskError> {
        let due = self.open
            || match self.mode {
                ApplyMode::Transactional => true,
                ApplyMode::Merge => {
                    idle || self.batch.changes() >= self.batch_rows
                        || self.since.elapsed() >= MERGE_EVERY
                }
            };
        if due {
            self.flush().await?;
        }
        if idle {
            // Nothing else to do: what was handed over is waited for, so an idle source's
            // checkpoint follows its last commit.
            self.settle().await?;
        }
        Ok(())
    }

    /// Closes the target connection: a transaction left open (a stop in the middle of a big
    /// source transaction) is rolled back.
    pub(super) async fn close(mut self) {
        let _ = self.settle().await;
        if let Some(t) = self.idle.take() {
            t.close().await;
        }
    }
}

/// Loads the chunks the stream has passed, after applying what was batched before them: each
/// handed to the target in order behind the batch, and counted loaded at once (the changes
/// after it reach the target after it); the store marks it done once the target committed it
/// ([`mark_loaded`]).
pub(super) async fn load_due(
    session: &Session<'_>,
    copies: &mut Copies,
    applier: &mut Applier,
    due: Vec<ReadChunk>,
) -> Result<(), TaskError> {
    if due.is_empty() {
        return Ok(());
    }
    applier.flush().await?;
    for mut chunk in due {
        let Some(table) = applier.tables.get(&chunk.table).cloned() else {
            continue;
        };
        let rows = copies.rows_to_load(&mut chunk, &table);
        let n = rows.len() as u64;
        copies.loaded(&chunk.table, chunk.index, n);
        tracing::debug!(instance = %session.instance, table = %chunk.table, chunk = chunk.index, rows = n, high = %chunk.rows.high, waited_ms = chunk.read_at.elapsed().as_millis(), "chunk handed to the target");
        applier
            .load(table, rows, (chunk.table.clone(), chunk.index, n))
            .await?;
    }
    mark_loaded(session, applier).await
}

/// Marks the chunks the target committed done in the store (a chunk loaded and not marked is
/// read and loaded again after a crash: harmless, see `Target::load_rows`).
pub(super) async fn mark_loaded(
    session: &Session<'_>,
    applier: &mut Applier,
) -> Result<(), TaskError> {
    for (table, index, rows) in applier.take_loaded() {
        session
            .state
            .store()
            .mark_chunk_done(session.instance, &table, index, rows)
            .await?;
    }
    Ok(())
}

/// Writes the last applied commit as the checkpoint.
pub(super) async fn checkpoint_applied(
    session: &Session<'_>,
    applier: &mut Applier,
) -> Result<(), TaskError> {
    if let Some((position, time)) = applier.applied.take() {
        session
            .write_checkpoint((&position, time, None), None)
            .await?;
    }
    Ok(())
}

//! What the sync loop applies to the target, and when: changes merged by key into a batch,
//! applied in one target transaction at a source transaction boundary; chunks of the full sync
//! loaded where the stream passes their high watermark.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_domain::change::ObjectName;
use ferry_domain::position::Position;
use ferry_domain::sync::{ApplyMode, Batch, TargetTable};
use ferry_target::Target;

use crate::copy::{Copies, ReadChunk};
use crate::error::{TaskError, target_failed};
use crate::metrics::TaskMeter;
use crate::session::Session;

/// A batch in `merge` mode is applied at least this often.
const MERGE_EVERY: Duration = Duration::from_millis(200);

/// What the loop applies to the target, and when.
pub(super) struct Applier {
    pub(super) target: Target,
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
}

impl Applier {
    pub(super) async fn flush(&mut self) -> Result<(), TaskError> {
        if !self.batch.is_empty() {
            let bytes = tokio::time::timeout(
                self.apply_timeout,
                self.target.apply(&self.batch, &self.tables),
            )
            .await
            .map_err(|_| {
                target_failed(format!(
                    "applying a batch took longer than {:?}: given up before the lease could expire",
                    self.apply_timeout
                ))
            })??;
            self.meter.wrote(self.batch.changes(), bytes);
            self.batch = Batch::new();
        }
        if let Some(c) = self.batched_commit.take() {
            self.meter.applied(c.1.timestamp_millis());
            self.applied = Some(c);
        }
        self.since = tokio::time::Instant::now();
        Ok(())
    }

    /// At a source transaction boundary: applies the batch when it is due.
    pub(super) async fn boundary(&mut self, idle: bool) -> Result<(), TaskError> {
        let due = match self.mode {
            ApplyMode::Transactional => true,
            ApplyMode::Merge => {
                idle || self.batch.changes() >= self.batch_rows
                    || self.since.elapsed() >= MERGE_EVERY
            }
        };
        if due {
            self.flush().await?;
        }
        Ok(())
    }
}

/// Loads the chunks the stream has passed, after applying what was batched before them.
pub(super) async fn load_due(
    session: &Session<'_>,
    copies: &mut Copies,
    applier: &mut Applier,
    due: Vec<ReadChunk>,
) -> Result<(), TaskError> {
    if due.is_empty() {
        return Ok(());
    }
    let flushed = tokio::time::Instant::now();
    applier.flush().await?;
    tracing::debug!(instance = %session.instance, ms = flushed.elapsed().as_millis(), "applied before chunks");
    for mut chunk in due {
        let Some(table) = applier.tables.get(&chunk.table) else {
            continue;
        };
        let rows = copies.rows_to_load(&mut chunk, table);
        applier.target.load_rows(table, &rows).await?;
        let n = rows.len() as u64;
        session
            .state
            .store()
            .mark_chunk_done(session.instance, &chunk.table, chunk.index, n)
            .await?;
        copies.loaded(&chunk.table, chunk.index, n);
        tracing::debug!(instance = %session.instance, table = %chunk.table, chunk = chunk.index, rows = n, high = %chunk.rows.high, waited_ms = chunk.read_at.elapsed().as_millis(), "chunk loaded");
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

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
//!
//! # Parallel chunk loads
//!
//! Chunks load on connections of their own, up to `sync.parallel` at once, beside the batches:
//! chunks of one table hold disjoint key ranges, and a chunk's rows leave out every key the
//! binlog changed after its low watermark (see `crate::copy`), so batches before it cannot
//! conflict with it. A batch that touches a table waits for that table's loads first (its
//! changes come after the chunks' high watermarks and must land after them), and a load waits
//! for a batch in flight on its table (no two transactions write one table's rows in
//! different orders).

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

/// A batch running on the target: the task holding the connection, and what to note once the
/// target answered.
struct InFlight {
    /// The connection, its result, and the connections the batch's other parts used
    /// (`apply: parallel`).
    task: JoinHandle<(Target, Result<(), TargetError>, Vec<Target>)>,
    started: tokio::time::Instant,
    changes: usize,
    bytes: usize,
    /// The source commit the batch ends at (`None`: a part of a bigger transaction).
    commit: Option<(Position, DateTime<Utc>)>,
    /// The tables it writes.
    tables: Vec<ObjectName>,
}

/// A chunk loading on a connection of its own.
struct Loading {
    task: JoinHandle<(Target, Result<(), TargetError>)>,
    started: tokio::time::Instant,
    chunk: Loaded,
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
    /// Chunks loading, idle load connections, how to open another, and how many at once.
    loading: Vec<Loading>,
    spare: Vec<Target>,
    params: ferry_target::TargetParams,
    lease: crate::lease::LeaseClock,
    load_parallel: usize,
}

impl Drop for Applier {
    fn drop(&mut self) {
        // A batch still running when the loop ends (an error) is given up: its connection
        // closes and the target rolls its transaction back.
        if let Some(f) = &self.in_flight {
            f.task.abort();
        }
        for l in &self.loading {
            l.task.abort();
        }
    }
}

impl Applier {
    pub(super) fn new(
        target: Target,
        (params, engine): (
            &ferry_target::TargetParams,
            ferry_domain::convert::TargetEngine,
        ),
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
            loading: Vec::new(),
            spare: Vec::new(),
            params: params.clone(),
            lease: session.lease.clone(),
            load_parallel: usize::from(session.config.sync.parallel).max(1),
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

    /// The target, once the batch in flight and every chunk loading (if any) are applied.
    pub(super) async fn target(&mut self) -> Result<&mut Target, TaskError> {
        self.settle().await?;
        self.settle_loads(|_| true).await?;
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
        let (target, result, extra) = match tokio::time::timeout(left, &mut task).await {
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
        self.spare.extend(extra);
        result?;
        self.meter.wrote(f.changes, f.bytes);
        if let Some(c) = f.commit {
            crate::faults::applied();
            self.meter.applied(c.1.timestamp_millis());
            self.applied = Some(c);
        }
        Ok(())
    }

    /// Waits for the chunks loading whose table `which` accepts, and notes them loaded.
    async fn settle_loads(&mut self, which: impl Fn(&ObjectName) -> bool) -> Result<(), TaskError> {
        let (wait, keep): (Vec<Loading>, Vec<Loading>) = std::mem::take(&mut self.loading)
            .into_iter()
            .partition(|l| which(&l.chunk.0));
        self.loading = keep;
        for l in wait {
            self.settle_load(l).await?;
        }
        Ok(())
    }

    async fn settle_load(&mut self, l: Loading) -> Result<(), TaskError> {
        let left = self.apply_timeout.saturating_sub(l.started.elapsed());
        let mut task = l.task;
        let (target, result) = match tokio::time::timeout(left, &mut task).await {
            Ok(joined) => joined.map_err(|e| transient(format!("a chunk load ended: {e}")))?,
            Err(_) => {
                task.abort();
                return Err(target_failed(format!(
                    "loading a chunk took longer than {:?}: given up before the lease could expire",
                    self.apply_timeout
                )));
            }
        };
        result?;
        self.spare.push(target);
        self.loaded.push(l.chunk);
        Ok(())
    }

    /// Hands the batch to the target (after the one in flight, and after the chunks loading
    /// into its tables), committing it at `batched_commit` when `commit`, else leaving its
    /// transaction open.
    async fn send(&mut self, commit: bool) -> Result<(), TaskError> {
        let commit_at = if commit {
            self.batched_commit.take()
        } else {
            None
        };
        let applied = commit_at.as_ref().map(|(p, t)| self.applied_at((p, *t)));
        let changes = self.batch.changes();
        let tables: Vec<ObjectName> = self
            .batch
            .tables()
            .map(|(schema, _)| schema.name().clone())
            .collect();
        // `apply: parallel`: the batch split by key hash; the first part (keyless tables and
        // the progress row) commits after the others (see `ApplyMode::Parallel`). A big
        // transaction's parts stay on one connection.
        let connections = match self.mode {
            ApplyMode::Parallel if commit && !self.open => self.load_parallel,
            _ => 1,
        };
        let mut parts = std::mem::take(&mut self.batch)
            .split(connections)
            .into_iter();
        let first = parts.next().unwrap_or_default();
        let statements =
            ferry_target::statements(self.engine, &first, &self.tables, applied.as_ref())?;
        let mut others = Vec::new();
        for part in parts {
            let s = ferry_target::statements(self.engine, &part, &self.tables, None)?;
            if !s.is_empty() {
                others.push(s);
            }
        }
        self.settle_loads(|t| tables.contains(t)).await?;
        // The batch's own bytes, without the progress row.
        let bytes = statements
            .iter()
            .take(statements.len() - usize::from(applied.is_some()))
            .chain(others.iter().flatten())
            .map(ferry_target::Statement::bytes)
            .sum();
        self.settle().await?;
        let mut target = self
            .idle
            .take()
            .ok_or_else(|| transient("the target connection was lost with a batch"))?;
        let mut helpers = Vec::new();
        for s in others {
            let mut helper = match self.spare.pop() {
                Some(t) => t,
                None => super::setup::connect_guarded(&self.params, &self.lease).await?,
            };
            helpers.push(tokio::spawn(async move {
                let result = helper.run(s, true).await;
                (helper, result)
            }));
        }
        self.open = !commit;
        let task = tokio::spawn(async move {
            // The other parts first: the progress row commits only after every one of them.
            let mut extra = Vec::new();
            let mut failed = None;
            for h in helpers {
                match h.await {
                    Ok((t, r)) => {
                        extra.push(t);
                        if let Err(e) = r {
                            failed.get_or_insert(e);
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert(TargetError::Transient(format!(
                            "a part of a batch ended: {e}"
                        )));
                    }
                }
            }
            let result = match failed {
                Some(e) => Err(e),
                None => target.run(statements, commit).await,
            };
            (target, result, extra)
        });
        self.in_flight = Some(InFlight {
            task,
            started: tokio::time::Instant::now(),
            changes,
            bytes,
            commit: commit_at,
            tables,
        });
        Ok(())
    }

    /// Hands a chunk's rows to a load connection of its own, not waited for (see the module's
    /// parallel chunk loads): after the batch in flight when it writes the chunk's table, and
    /// once fewer than `sync.parallel` chunks load.
    async fn load(
        &mut self,
        table: TargetTable,
        rows: Vec<Vec<ferry_domain::value::Value>>,
        chunk: Loaded,
    ) -> Result<(), TaskError> {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.tables.contains(&chunk.0))
        {
            self.settle().await?;
        }
        while self.loading.len() >= self.load_parallel {
            let oldest = self.loading.remove(0);
            self.settle_load(oldest).await?;
        }
        let mut target = match self.spare.pop() {
            Some(t) => t,
            None => super::setup::connect_guarded(&self.params, &self.lease).await?,
        };
        let task = tokio::spawn(async move {
            let result = target.load_rows(&table, &rows).await;
            (target, result)
        });
        self.loading.push(Loading {
            task,
            started: tokio::time::Instant::now(),
            chunk,
        });
        Ok(())
    }

    /// The chunks the target committed since the last call (loads that ended are noted
    /// without waiting for the others).
    pub(super) async fn take_loaded(&mut self) -> Result<Vec<Loaded>, TaskError> {
        let ended: Vec<usize> = (0..self.loading.len())
            .filter(|i| self.loading[*i].task.is_finished())
            .collect();
        for i in ended.into_iter().rev() {
            let l = self.loading.remove(i);
            self.settle_load(l).await?;
        }
        Ok(std::mem::take(&mut self.loaded))
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

    /// Applies everything handed over and waits for it and for the chunks loading (before a
    /// checkpoint at the end, or DDL).
    pub(super) async fn drain(&mut self) -> Result<(), TaskError> {
        self.flush().await?;
        self.settle().await?;
        self.settle_loads(|_| true).await
    }

    /// At a source transaction boundary: applies the batch when it is due (at once when a
    /// big transaction's parts left a target transaction open).
    pub(super) async fn boundary(&mut self, idle: bool) -> Result<(), TaskError> {
        let due = self.open
            || match self.mode {
                ApplyMode::Transactional => true,
                ApplyMode::Merge | ApplyMode::Parallel => {
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
        let _ = self.settle_loads(|_| true).await;
        if let Some(t) = self.idle.take() {
            t.close().await;
        }
        for t in std::mem::take(&mut self.spare) {
            t.close().await;
        }
    }
}

/// Loads the chunks the stream has passed, after handing over what was batched before them:
/// each on a load connection (see the module's parallel chunk loads), counted loaded at once
/// (the changes after it reach its table after it); the store marks it done once the target
/// committed it ([`mark_loaded`]).
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

/// Marks the chunks the target committed done in the store. A chunk loaded and not marked
/// (a crash in between) is read and loaded again: harmless, see `Target::load_rows`. Before a
/// copy is planned again (DDL), every mark must be written: a late mark of the old plan's chunk
/// would mark the new plan's.
pub(super) async fn mark_loaded(
    session: &Session<'_>,
    applier: &mut Applier,
) -> Result<(), TaskError> {
    for (table, index, rows) in applier.take_loaded().await? {
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

//! The full sync of a sync task: tables copied chunk by chunk while the binlog keeps being
//! applied, with no lock on the source.
//!
//! # The snapshot algorithm
//!
//! Each table's chunks (primary-key ranges, planned once and stored, see
//! `ferry_store::CopyPlan`) are read up to `parallel` at a time, each by its own source
//! connection in a consistent snapshot with a low and a high watermark (see
//! `ferry_mysql::snapshot`). The sync loop applies the binlog throughout, tables being copied
//! included (a change is a full row image, so an upsert of a row not yet copied is right). A
//! read chunk waits until the loop's binlog position passes its high watermark; then, at that
//! point of the stream:
//!
//! 1. the loop applies the changes it batched (all before the high watermark);
//! 2. the chunk's rows are loaded, except those whose key the binlog changed after the low
//!    watermark: their newer state came, or comes, from the binlog;
//! 3. the chunk is marked done in the store.
//!
//! So each row ends as the binlog left it, chunks need no global lock or pause, and the
//! incremental stage is simply the same loop once every chunk is done.
//!
//! Tables without a primary key are one chunk (the whole table) and cannot be matched by key:
//! their changes are skipped until their chunk is loaded, and applied from then on. On MariaDB
//! the chunk's watermarks are the snapshot's exact position, so this is exact; on MySQL changes
//! made to a keyless table while it is read may be doubled or missed (docs/sync.md).
//!
//! # Resumption
//!
//! A resumed loop re-reads only the chunks not marked done. Chunks marked done before the
//! crash may briefly go back to an older row image while the loop re-applies the binlog from
//! its checkpoint, and are right again once it passes the crash point.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use ferry_domain::change::ObjectName;
use ferry_domain::position::Position;
use ferry_domain::schema::TableDef;
use ferry_domain::selection::ObjectSelection;
use ferry_domain::sync::TargetTable;
use ferry_domain::value::Value;
use ferry_mysql::ConnectParams;
use ferry_mysql::snapshot::{self, ChunkRows};
use ferry_store::{CopyPlan, CopyRecord};
use tokio::task::JoinSet;

use crate::error::{DefiniteError, TaskError, source_failed, transient};

/// A chunk to read.
#[derive(Debug, Clone)]
struct ChunkJob {
    table: ObjectName,
    generation: u64,
    index: u32,
    lower: Option<Vec<Value>>,
    upper: Option<Vec<Value>>,
    def: Arc<TableDef>,
    /// The table's row filter as the chunk query's condition, or why it cannot be one.
    filter: Result<Option<Arc<str>>, String>,
}

/// A read chunk waiting for the stream to pass its high watermark.
#[derive(Debug)]
pub(crate) struct ReadChunk {
    pub(crate) table: ObjectName,
    generation: u64,
    pub(crate) index: u32,
    pub(crate) rows: ChunkRows,
    /// When the read finished (for the logs: how long the chunk waited for the stream).
    pub(crate) read_at: tokio::time::Instant,
}

/// One table's copy as the loop tracks it.
#[derive(Debug)]
struct TableCopy {
    /// Tells a chunk of an earlier copy of the same table (planned again after DDL) apart.
    generation: u64,
    plan: CopyPlan,
    done: BTreeSet<u32>,
    rows_done: u64,
    /// Chunks being read or waiting: (index, stream position when the read began).
    open: HashMap<u32, Position>,
    /// Keys the binlog changed while chunks were open, with the position of the change.
    touched: HashMap<Vec<u8>, Position>,
}

impl TableCopy {
    fn is_done(&self) -> bool {
        self.done.len() as u64 >= u64::from(self.plan.chunks())
    }
}

/// The copies of a task's tables.
#[derive(Debug)]
pub(crate) struct Copies {
    tables: HashMap<ObjectName, TableCopy>,
    queue: VecDeque<ChunkJob>,
    readers: JoinSet<Result<(ReadChunk, mysql_async::Conn), TaskError>>,
    /// Idle source connections for readers.
    idle: Vec<mysql_async::Conn>,
    pending: Vec<ReadChunk>,
    params: ConnectParams,
    parallel: usize,
    generations: u64,
    /// The task's selection: each table's row filter.
    objects: ObjectSelection,
}

/// Opens a source connection ready for snapshot reads.
async fn reader_connection(params: &ConnectParams) -> Result<mysql_async::Conn, TaskError> {
    let mut conn = ferry_mysql::connect(params)
        .await
        .map_err(|e| source_failed(e.message))?;
    snapshot::prepare(&mut conn).await.map_err(source_failed)?;
    Ok(conn)
}

impl Copies {
    /// Table `name`'s row filter as a condition over `def`'s columns (`None` without one); an
    /// error names a column the table lacks.
    pub(crate) fn filter_sql(
        &self,
        name: &ObjectName,
        def: &TableDef,
    ) -> Result<Option<String>, String> {
        let columns = def
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.column_type.as_str()));
        self.objects.filter_sql(name, columns)
    }

    /// The copies in `records`, with the chunks still to do queued in order; `defs` gives each
    /// table's current definition.
    pub(crate) fn new(
        records: Vec<CopyRecord>,
        defs: &HashMap<ObjectName, Arc<TableDef>>,
        params: ConnectParams,
        parallel: usize,
        objects: ObjectSelection,
    ) -> Self {
        let mut copies = Self {
            tables: HashMap::new(),
            queue: VecDeque::new(),
            readers: JoinSet::new(),
            idle: Vec::new(),
            pending: Vec::new(),
            params,
            parallel: parallel.max(1),
            generations: 0,
            objects,
        };
        for r in records {
            if let Some(def) = defs.get(&r.plan.table) {
                copies.add(r, Arc::clone(def));
            }
        }
        copies
    }

    /// Starts tracking a table's copy (queueing what is not done).
    pub(crate) fn add(&mut self, record: CopyRecord, def: Arc<TableDef>) {
        let table = record.plan.table.clone();
        self.generations += 1;
        let generation = self.generations;
        let filter = self
            .filter_sql(&table, &def)
            .map(|f| f.map(Arc::<str>::from));
        for i in 0..record.plan.chunks() {
            if record.done.contains(&i) {
                continue;
            }
            let (lower, upper) = record.plan.chunk_bounds(i);
            self.queue.push_back(ChunkJob {
                table: table.clone(),
                generation,
                index: i,
                lower: lower.map(<[Value]>::to_vec),
                upper: upper.map(<[Value]>::to_vec),
                def: Arc::clone(&def),
                filter: filter.clone(),
            });
        }
        self.tables.insert(
            table,
            TableCopy {
                generation,
                plan: record.plan,
                done: record.done,
                rows_done: record.rows_done,
                open: HashMap::new(),
                touched: HashMap::new(),
            },
        );
    }

    /// Stops copying a table (dropped, or its copy planned again).
    pub(crate) fn remove(&mut self, table: &ObjectName) {
        self.tables.remove(table);
        self.queue.retain(|j| &j.table != table);
        self.pending.retain(|c| &c.table != table);
    }

    /// A table's chunk bounds (empty for a table without a copy: one chunk).
    pub(crate) fn bounds(&self, table: &ObjectName) -> Vec<Vec<Value>> {
        self.tables
            .get(table)
            .map(|c| c.plan.bounds.clone())
            .unwrap_or_default()
    }

    /// Whether every table is copied.
    pub(crate) fn all_done(&self) -> bool {
        self.tables.values().all(TableCopy::is_done)
    }

    /// Whether `table`'s copy is done (or it has none).
    pub(crate) fn table_done(&self, table: &ObjectName) -> bool {
        self.tables.get(table).is_none_or(TableCopy::is_done)
    }

    /// Starts reads while fewer than `parallel` are running; `stream_at` is the loop's binlog
    /// position (the earliest a read's low watermark can be).
    pub(crate) async fn start_reads(&mut self, stream_at: &Position) -> Result<(), TaskError> {
        while self.readers.len() + self.pending.len() < self.parallel {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            let Some(copy) = self.tables.get_mut(&job.table) else {
                continue;
            };
            copy.open.insert(job.index, stream_at.clone());
            let mut conn = match self.idle.pop() {
                Some(c) => c,
                None => reader_connection(&self.params).await?,
            };
            self.readers.spawn(async move {
                let filter = job.filter.clone().map_err(DefiniteError::RowFilter)?;
                let rows = snapshot::read_chunk(
                    &mut conn,
                    &job.table,
                    &job.def,
                    (job.lower.as_deref(), job.upper.as_deref()),
                    filter.as_deref(),
                )
                .await
                .map_err(|e| match e {
                    snapshot::SnapshotError::Value { .. } => {
                        DefiniteError::SnapshotValue(e.to_string()).into()
                    }
                    other => source_failed(other),
                })?;
                Ok((
                    ReadChunk {
                        table: job.table,
                        generation: job.generation,
                        index: job.index,
                        rows,
                        read_at: tokio::time::Instant::now(),
                    },
                    conn,
                ))
            });
        }
        Ok(())
    }

    /// Whether reads are running (the loop also waits on [`Copies::next_read`] then).
    pub(crate) fn reading(&self) -> bool {
        !self.readers.is_empty()
    }

    /// The next finished read, parked until the stream passes its high watermark.
    pub(crate) async fn next_read(&mut self) -> Result<(), TaskError> {
        let Some(joined) = self.readers.join_next().await else {
            return Ok(());
        };
        let (chunk, conn) = joined.map_err(transient)??;
        self.idle.push(conn);
        if self
            .tables
            .get(&chunk.table)
            .is_some_and(|c| c.generation == chunk.generation)
        {
            self.pending.push(chunk);
        }
        Ok(())
    }

    /// Notes a change to `key` of `table` at `at` (its position), for chunks being read.
    pub(crate) fn touch(&mut self, table: &ObjectName, key: Vec<u8>, at: &Position) {
        if let Some(copy) = self.tables.get_mut(table)
            && !copy.open.is_empty()
        {
            copy.touched.insert(key, at.clone());
        }
    }

    /// The chunks the stream has passed: every event after `at` comes after their high
    /// watermark (`at` is an event's position, or an idle source's current position when
    /// `idle`).
    pub(crate) fn due(&mut self, at: &Position, idle: bool) -> Vec<ReadChunk> {
        use std::cmp::Ordering;
        let (due, waiting): (Vec<ReadChunk>, Vec<ReadChunk>) =
            self.pending
                .drain(..)
                .partition(|c| match c.rows.high.cmp_file_offset(at) {
                    Ordering::Less => true,
                    Ordering::Equal => idle,
                    Ordering::Greater => false,
                });
        self.pending = waiting;
        due
    }

    /// The rows of `chunk` to load: those whose key the binlog did not change after the
    /// chunk's low watermark.
    pub(crate) fn rows_to_load(
        &self,
        chunk: &mut ReadChunk,
        target: &TargetTable,
    ) -> Vec<Vec<Value>> {
        if !self.tables.contains_key(&chunk.table) {
            // The table's copy ended meanwhile (dropped, or planned again): nothing to load.
            chunk.rows.rows.clear();
            return Vec::new();
        }
        if target.key.is_empty() {
            return std::mem::take(&mut chunk.rows.rows);
        }
        self.rows_unchanged(chunk, |row| target.key_bytes(row))
    }

    /// The rows of `chunk` whose key (`key` of a row, as [`Copies::touch`] was given it) the
    /// binlog did not change after the chunk's low watermark.
    pub(crate) fn rows_unchanged(
        &self,
        chunk: &mut ReadChunk,
        key: impl Fn(&[Value]) -> Vec<u8>,
    ) -> Vec<Vec<Value>> {
        let rows = std::mem::take(&mut chunk.rows.rows);
        let Some(copy) = self.tables.get(&chunk.table) else {
            return Vec::new();
        };
        if copy.touched.is_empty() {
            return rows;
        }
        rows.into_iter()
            .filter(|row| {
                copy.touched.get(&key(row)).is_none_or(|at| {
                    at.cmp_file_offset(&chunk.rows.low) != std::cmp::Ordering::Greater
                })
            })
            .collect()
    }

    /// Records a loaded chunk; forgets changed keys no open chunk needs.
    pub(crate) fn loaded(&mut self, table: &ObjectName, index: u32, rows: u64) {
        let Some(copy) = self.tables.get_mut(table) else {
            return;
        };
        copy.open.remove(&index);
        copy.done.insert(index);
        copy.rows_done += rows;
        let oldest = copy
            .open
            .values()
            .min_by(|a, b| a.cmp_file_offset(b))
            .cloned();
        match oldest {
            None => copy.touched.clear(),
            Some(o) => copy
                .touched
                .retain(|_, at| at.cmp_file_offset(&o) == std::cmp::Ordering::Greater),
        }
    }
}

/// Plans a table's copy: its row estimate and chunk bounds from the source.
pub(crate) async fn plan_copy(
    params: &ConnectParams,
    table: &ObjectName,
    target: &TargetTable,
    def: &TableDef,
    chunk_rows: u32,
) -> Result<CopyPlan, TaskError> {
    let target = format!("{}.{}", target.schema, target.name);
    plan_chunks(params, table, def, chunk_rows, (target, None)).await
}

/// Plans the reading of a table in chunks: its row estimate and chunk bounds from the source,
/// for `target` (a sync task's target table, a backfill's topic) and the `backfill` it is for.
pub(crate) async fn plan_chunks(
    params: &ConnectParams,
    table: &ObjectName,
    def: &TableDef,
    chunk_rows: u32,
    (target, backfill): (String, Option<String>),
) -> Result<CopyPlan, TaskError> {
    let mut conn = reader_connection(params).await?;
    let rows_total = snapshot::estimate_rows(&mut conn, table)
        .await
        .map_err(source_failed)?;
    let bounds = snapshot::plan_chunks(&mut conn, table, def, chunk_rows)
        .await
        .map_err(source_failed)?;
    let _ = conn.disconnect().await;
    Ok(CopyPlan {
        table: table.clone(),
        target,
        bounds,
        rows_total,
        backfill,
    })
}

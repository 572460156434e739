//! Backfills in the capture loop (see `ferry_domain::backfill`): tables' existing rows written
//! into the topic as snapshot reads while the loop keeps delivering changes.
//!
//! The chunks are read by the sync mode's machinery (`crate::copy::Copies`: primary-key chunks,
//! each in a consistent snapshot between a low and a high watermark, on connections of their
//! own). A read chunk waits until the loop reaches a transaction boundary past its high
//! watermark; there its rows are written, except those whose key a change in the binlog touched
//! since the read began (the topic has their newer state already, as changes). Then the loop
//! waits until the broker acknowledged them and marks the chunk done in the store: a chunk is
//! done only once its rows are in the topic, and a chunk read again after a crash writes only
//! the rows the topic lacks (each row's idempotency key names the backfill, the table and the
//! row's key; `delivery::tail` keeps the keys the topic holds after the checkpoint). A consumer
//! applying the topic in order ends with the source's rows.
//!
//! The backfill's record (`Store::get_backfill`) is read every [`POLL_IDLE`] ([`POLL_ACTIVE`]
//! while one runs): a new one starts, a cancelled one stops after the chunk being written.
//!
//! A new backfill's chunks are planned on a task of their own ([`Planning`]): planning walks
//! each table's primary key once (a chunk's bounds every `backfill_chunk_rows` keys), minutes
//! for a table of hundreds of millions of rows, while the loop goes on delivering changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ferry_domain::backfill::{Backfill, BackfillState};
use ferry_domain::change::{
    ChangeEvent, ChangeKind, Column, ObjectName, RowChange, TableSchema, TransactionRef,
};
use ferry_domain::position::Position;
use ferry_domain::schema::{SchemaCatalog, TableDef};
use ferry_domain::selection::ColumnMask;
use ferry_domain::value::Value;
use ferry_mysql::binlog::{ReadEvent, SourceEvent};
use ferry_store::CopyRecord;

use crate::copy::{Copies, plan_chunks};
use crate::delivery::{Delivery, Destination};
use crate::error::{TaskError, transient};
use crate::session::Session;

/// How often the loop reads its task's backfill while one runs (to see a cancellation), and
/// while none does (to see a new one): each read is a DynamoDB request of every running task.
const POLL_ACTIVE: Duration = Duration::from_secs(2);
const POLL_IDLE: Duration = Duration::from_secs(10);

/// Chunks read at once (beside the loop's own reading of the binlog).
const PARALLEL: usize = 2;

/// The loop's backfill, if one is under way.
pub(super) struct Backfiller {
    active: Option<Active>,
    /// A backfill whose chunks are being planned (then it becomes `active`).
    planning: Option<Planning>,
    polled_at: Option<Instant>,
}

/// A backfill whose tables' chunks are being planned, beside the loop.
struct Planning {
    backfill: Backfill,
    version: u64,
    defs: HashMap<ObjectName, Arc<TableDef>>,
    tables: HashMap<ObjectName, (Arc<TableSchema>, ColumnMask)>,
    /// Each table's copy record, stored (read back, or planned and written).
    records: PlanTask,
}

/// The planning task; aborted when dropped (the backfill cancelled or ended elsewhere, or the
/// loop stopped: the next run plans again, or reads back what this one stored).
struct PlanTask(tokio::task::JoinHandle<Result<Vec<CopyRecord>, TaskError>>);

impl Drop for PlanTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A backfill the loop is running.
struct Active {
    backfill: Backfill,
    version: u64,
    copies: Copies,
    /// Each table's schema as its records carry it, and the columns the task carries of it.
    tables: HashMap<ObjectName, (Arc<TableSchema>, ColumnMask)>,
}

/// A table's schema for records, from its definition in the schema history.
fn schema_of(name: &ObjectName, def: &TableDef) -> Result<Arc<TableSchema>, TaskError> {
    let columns = def
        .columns
        .iter()
        .map(|c| Column {
            name: c.name.clone(),
            source_type: c.column_type.clone(),
            nullable: c.nullable,
        })
        .collect();
    let key = def
        .primary_key
        .iter()
        .filter_map(|k| def.column_index(k))
        .collect();
    TableSchema::new(name.clone(), columns, key)
        .map(Arc::new)
        .map_err(|e| transient(e.to_string()))
}

/// A row's key, as bytes (what [`Copies::touch`] is given) and as the text its idempotency key
/// names (hex: no separator of the key can appear in it).
fn key_bytes(schema: &TableSchema, row: &[Value]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    for k in schema.key() {
        if let Some(v) = row.get(*k) {
            v.write_key(&mut out);
        }
    }
    out
}

fn key_text(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Backfiller {
    pub(super) fn new() -> Self {
        Self {
            active: None,
            planning: None,
            polled_at: None,
        }
    }

    /// Reads the task's backfill when due: starts a new one (planning its tables' chunks
    /// beside the loop), drops one cancelled or ended elsewhere; starts reading a backfill
    /// whose planning finished. `at` is where the stream stands.
    pub(super) async fn poll(
        &mut self,
        session: &Session<'_>,
        at: &Position,
    ) -> Result<(), TaskError> {
        if self
            .planning
            .as_ref()
            .is_some_and(|p| p.records.0.is_finished())
            && let Some(planning) = self.planning.take()
        {
            self.active = planned(session, planning).await?;
        }
        let every = if self.active.is_some() || self.planning.is_some() {
            POLL_ACTIVE
        } else {
            POLL_IDLE
        };
        if self.polled_at.is_some_and(|t| t.elapsed() < every) {
            return Ok(());
        }
        self.polled_at = Some(Instant::now());
        let store = session.state.store();
        let current = store.get_backfill(session.instance).await?;
        let held = self
            .active
            .as_ref()
            .map(|a| a.backfill.id.clone())
            .or_else(|| self.planning.as_ref().map(|p| p.backfill.id.clone()));
        match current {
            Some((b, version)) if held.as_deref() == Some(b.id.as_str()) => {
                if b.state.is_active() {
                    if let Some(active) = &mut self.active {
                        active.version = version;
                    }
                    if let Some(planning) = &mut self.planning {
                        planning.version = version;
                    }
                } else {
                    tracing::info!(instance = %session.instance, backfill = %b.id, state = ?b.state, "backfill ended elsewhere: stopped");
                    self.active = None;
                    self.planning = None;
                }
            }
            Some((b, version)) if b.state.is_active() => {
                self.active = None;
                self.planning = None;
                self.planning = start(session, b, version, at).await?;
            }
            _ => {
                self.active = None;
                self.planning = None;
            }
        }
        Ok(())
    }

    /// Notes the keys a rows event changes in a table being backfilled.
    pub(super) fn observe(&mut self, event: &ReadEvent) {
        let (Some(active), SourceEvent::Rows(rows)) = (&mut self.active, &event.event) else {
            return;
        };
        for change in &rows.changes {
            let name = change.table().name();
            let Some((schema, _)) = active.tables.get(name) else {
                continue;
            };
            for image in [change.before(), change.after()].into_iter().flatten() {
                active
                    .copies
                    .touch(name, key_bytes(schema, image), &event.position);
            }
        }
    }

    /// Starts chunk reads while fewer than [`PARALLEL`] are under way; `at` is where the stream
    /// stands.
    pub(super) async fn start_reads(&mut self, at: &Position) -> Result<(), TaskError> {
        if let Some(active) = &mut self.active {
            active.copies.start_reads(at).await?;
        }
        Ok(())
    }

    /// Whether reads are under way (the loop waits on [`Backfiller::next_read`] too).
    pub(super) fn reading(&self) -> bool {
        self.active.as_ref().is_some_and(|a| a.copies.reading())
    }

    /// The next finished read, parked until the stream passes its high watermark.
    pub(super) async fn next_read(&mut self) -> Result<(), TaskError> {
        match &mut self.active {
            Some(active) => active.copies.next_read().await,
            None => Ok(()),
        }
    }

    /// Before the event at `next` (or an idle source's position there, when `idle`), at the
    /// transaction boundary `at`: writes the chunks whose high watermark the stream passed (at
    /// `at`), waits until the broker has them, and marks them done; ends the backfill once
    /// every chunk is done.
    pub(super) async fn write_due<D: Destination>(
        &mut self,
        session: &Session<'_>,
        (next, at): (&Position, &Position),
        idle: bool,
        out: &mut Delivery<D>,
    ) -> Result<(), TaskError> {
        let Some(active) = &mut self.active else {
            return Ok(());
        };
        let due = active.copies.due(next, idle);
        if due.is_empty() && !active.copies.all_done() {
            return Ok(());
        }
        for mut chunk in due {
            let Some((schema, columns)) = active.tables.get(&chunk.table).cloned() else {
                continue;
            };
            let rows = active
                .copies
                .rows_unchanged(&mut chunk, |row| key_bytes(&schema, row));
            let written = rows.len() as u64;
            let position = Arc::new(at.clone());
            for row in rows {
                let id = active
                    .backfill
                    .row_id(&chunk.table, &key_text(&key_bytes(&schema, &row)));
                let change = RowChange::read(Arc::clone(&schema), row)
                    .map_err(|e| transient(e.to_string()))?;
                let event = ChangeEvent {
                    position: Arc::clone(&position),
                    event_offset: at.offset(),
                    server_id: 0,
                    timestamp: Utc::now(),
                    transaction: Some(TransactionRef {
                        id: id.into(),
                        event_index: 0,
                        carried_index: 0,
                        last: true,
                        event_row: 0,
                    }),
                    kind: ChangeKind::Row(change),
                };
                out.produce(&event, 0, &columns, chunk.read_at.into_std())
                    .await?;
            }
            // Done only once the topic has every row of it.
            out.drain().await?;
            session
                .state
                .store()
                .mark_chunk_done(session.instance, &chunk.table, chunk.index, written)
                .await?;
            active.copies.loaded(&chunk.table, chunk.index, written);
            session.meter.backfilled(written);
            tracing::debug!(instance = %session.instance, table = %chunk.table, chunk = chunk.index, rows = written, "backfill chunk written");
        }
        if active.copies.all_done() {
            let mut done = active.backfill.clone();
            done.state = BackfillState::Done;
            done.finished_at = Some(Utc::now());
            finish(session, &done, active.version).await?;
            tracing::info!(instance = %session.instance, backfill = %done.id, "backfill done");
            self.active = None;
        }
        Ok(())
    }
}

/// Records the backfill's end; a newer record (a cancellation meanwhile) is left as it is.
async fn finish(session: &Session<'_>, b: &Backfill, version: u64) -> Result<(), TaskError> {
    match session
        .state
        .store()
        .put_backfill(session.instance, b, Some(version))
        .await
    {
        Ok(_) | Err(ferry_store::StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Starts `backfill` at stream position `at`: each table's definition from the schema history
/// there, and its chunks' planning on a task of its own (or the plan stored by an earlier run
/// of the same backfill, with its chunks done). `None` while a table is not yet among the
/// loop's objects (a reselection not yet switched), or when the backfill cannot run (it is
/// marked failed, with the reason).
async fn start(
    session: &Session<'_>,
    mut backfill: Backfill,
    version: u64,
    at: &Position,
) -> Result<Option<Planning>, TaskError> {
    let store = session.state.store();
    let objects = &session.config.objects;
    if backfill
        .tables
        .iter()
        .any(|t| objects.table(&t.database, &t.table).is_none())
    {
        tracing::info!(instance = %session.instance, backfill = %backfill.id, "backfill waits for its tables to be among the loop's objects");
        return Ok(None);
    }
    let history = store.schema_history(session.instance).await?;
    let catalog = SchemaCatalog::at(&history, at)
        .ok_or_else(|| transient("the schema history has no snapshot before the stream"))?;
    let mut defs = HashMap::new();
    let mut tables = HashMap::new();
    for name in &backfill.tables {
        let problem = match catalog.get(name) {
            None => Some(format!("{name} does not exist on the source")),
            Some(def) if def.primary_key.is_empty() => Some(format!(
                "{name} has no primary key: a backfill leaves out the rows the binlog changed while a chunk was read, which needs a key"
            )),
            Some(_) => None,
        };
        if let Some(error) = problem {
            backfill.state = BackfillState::Failed;
            backfill.finished_at = Some(Utc::now());
            backfill.error = Some(error);
            finish(session, &backfill, version).await?;
            return Ok(None);
        }
        let Some(def) = catalog.get(name).cloned() else {
            continue;
        };
        let schema = schema_of(name, &def)?;
        let entry = objects.table(&name.database, &name.table);
        let columns = ColumnMask::of(&schema, entry.and_then(|e| e.columns()));
        tables.insert(name.clone(), (schema, columns));
        defs.insert(name.clone(), Arc::new(def));
    }
    tracing::info!(instance = %session.instance, backfill = %backfill.id, tables = backfill.tables.len(), "backfill planning its chunks");
    let records = PlanTask(tokio::spawn(plan_all(
        session.state.clone(),
        session.instance.clone(),
        session.params.clone(),
        session.settings.backfill_chunk_rows,
        session.state.topic_of(&session.task.value),
        (backfill.clone(), defs.clone()),
    )));
    Ok(Some(Planning {
        backfill,
        version,
        defs,
        tables,
        records,
    }))
}

/// Each table's copy record for `backfill`: the one stored by an earlier run of it, else its
/// chunks planned and the plan stored.
async fn plan_all(
    state: ferry_api::AppState,
    instance: ferry_domain::id::InstanceId,
    params: ferry_mysql::ConnectParams,
    chunk_rows: u32,
    topic: String,
    (backfill, defs): (Backfill, HashMap<ObjectName, Arc<TableDef>>),
) -> Result<Vec<CopyRecord>, TaskError> {
    let store = state.store();
    let stored = store.copy_records(&instance).await?;
    let mut records: Vec<CopyRecord> = Vec::new();
    for name in &backfill.tables {
        let record = match stored
            .iter()
            .find(|r| &r.plan.table == name && r.plan.backfill.as_ref() == Some(&backfill.id))
        {
            Some(r) => r.clone(),
            None => {
                let plan = plan_chunks(
                    &params,
                    name,
                    &defs[name],
                    chunk_rows,
                    (topic.clone(), Some(backfill.id.clone())),
                )
                .await?;
                store.put_copy_plan(&instance, &plan).await?;
                CopyRecord {
                    plan,
                    done: Default::default(),
                    rows_done: 0,
                }
            }
        };
        records.push(record);
    }
    Ok(records)
}

/// A backfill whose planning ended: marked running, its reads ready to start; `None` when it
/// was cancelled meanwhile (the next poll sees it). A planning failure ends the loop as the
/// failure says (a source error is retried with the task).
async fn planned(session: &Session<'_>, p: Planning) -> Result<Option<Active>, TaskError> {
    let Planning {
        mut backfill,
        mut version,
        defs,
        tables,
        mut records,
    } = p;
    let records = (&mut records.0)
        .await
        .map_err(|e| transient(format!("the backfill's planning stopped: {e}")))??;
    let store = session.state.store();
    let objects = &session.config.objects;
    if backfill.state == BackfillState::Pending {
        backfill.state = BackfillState::Running;
        match store
            .put_backfill(session.instance, &backfill, Some(version))
            .await
        {
            Ok(v) => version = v,
            // Cancelled (or replaced) meanwhile: the next poll sees it.
            Err(ferry_store::StoreError::Conflict { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
    tracing::info!(instance = %session.instance, backfill = %backfill.id, tables = backfill.tables.len(), "backfill starting");
    let copies = Copies::new(
        records,
        &defs,
        session.params.clone(),
        PARALLEL,
        objects.clone(),
    );
    Ok(Some(Active {
        backfill,
        version,
        copies,
        tables,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hex_of_the_key_values() {
        let def = TableDef {
            columns: vec![
                ferry_domain::schema::ColumnDef {
                    name: "id".into(),
                    column_type: "int".into(),
                    nullable: false,
                    charset: None,
                    members: Vec::new(),
                    collation: None,
                },
                ferry_domain::schema::ColumnDef {
                    name: "note".into(),
                    column_type: "varchar(10)".into(),
                    nullable: true,
                    charset: None,
                    members: Vec::new(),
                    collation: None,
                },
            ],
            primary_key: vec!["id".into()],
            collation: None,
        };
        let name = ObjectName {
            database: "shop".into(),
            table: "orders".into(),
        };
        let schema = schema_of(&name, &def).unwrap();
        let a = key_bytes(&schema, &[Value::Int(7), Value::String("x".into())]);
        let b = key_bytes(&schema, &[Value::Int(7), Value::String("y".into())]);
        assert_eq!(a, b, "only the key counts");
        let text = key_text(&a);
        assert!(text.bytes().all(|c| c.is_ascii_hexdigit()), "{text}");
        assert_ne!(
            key_text(&key_bytes(&schema, &[Value::Int(8), Value::Null])),
            text
        );
    }
}

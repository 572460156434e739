//! The loop of one data-synchronization task: binlog → batch → target, with the full sync's
//! chunks merged in (see [`crate::copy`]).
//!
//! # Stages
//!
//! On its first start the loop records the source's binlog position, reads the source's
//! catalog, creates the selected tables on the target (`schema_sync`), plans every table's
//! chunks, and writes its first checkpoint. From then on one loop does everything: it applies
//! the binlog from the checkpoint and loads chunks as the stream passes their watermarks
//! (`full_sync`); once every chunk is loaded the task is `incremental`, with nothing else
//! changing.
//!
//! # Apply and checkpoints
//!
//! Changes are merged by key into a batch ([`ferry_domain::sync::Batch`]) and applied in one
//! target transaction at a source transaction boundary: after every source transaction in
//! `transactional` mode; in `merge` mode once the batch holds `batch_rows` changes, a chunk is
//! due, a DDL statement comes, the source is idle, or 200 ms passed. The target therefore only
//! ever shows states the source had at a transaction boundary, and stopping leaves it at one.
//! A source transaction bigger than `batch_rows` is applied in parts as it is read, all in one
//! target transaction committed at its source commit: memory stays bounded by `batch_rows`
//! changes and the target still never shows part of a source transaction.
//! Each target transaction also records its last source commit in the target's progress table
//! (`ferry.progress`, see [`ferry_target::progress`]); a checkpoint (the last applied commit)
//! is written in Ferry's store after the target committed, at most every second. A loop
//! resumes from the later of the two, so a crash between a commit on the target and its
//! checkpoint applies nothing twice (a keyless table's inserts are not doubled) and skips
//! nothing.
//!
//! # Errors
//!
//! As in capture: definite errors (the target refused a value or a login, the binlog is gone)
//! fail the task with a hint; others are retried by the worker with backoff.

mod applier;
mod evolution;
mod setup;

use ferry_domain::position::Position;
use ferry_domain::schema::SchemaCatalog;
use ferry_domain::task::Stage;
use ferry_mysql::binlog::{ReadEvent, RowsEvent, SourceEvent};
use tokio::sync::watch;

use crate::copy::Copies;
use crate::error::TaskError;
use crate::lease::Claim;
use crate::metrics::TaskMeter;
use crate::session::CaptureSettings;
use crate::session::{CHECKPOINT_EVERY, Check, Session};
use crate::source::{AbortOnDrop, schema_at};
use crate::verify::start_verification;
use applier::{Applier, checkpoint_applied, load_due, mark_loaded};
use evolution::{Evolution, on_ddl};
use setup::{connect_target, copies_of, first_start, note_selection, resume_from_target};

/// Runs the sync loop of `instance`'s task while this worker holds its lease (`claim`), until
/// `stop` turns true, the task is no longer wanted running, or an error.
pub async fn sync_task(
    state: &ferry_api::AppState,
    settings: &CaptureSettings,
    instance: &ferry_domain::id::InstanceId,
    claim: Claim,
    stop: watch::Receiver<bool>,
) -> Result<(), TaskError> {
    let mut session =
        Session::open(state, settings, instance, claim, stop, TaskMeter::for_sync).await?;
    session.archive();
    // 1. The target, guarded by the lease: nothing is committed once it is ending.
    let (mut target, tparams) = connect_target(&session).await?;
    let engine = tparams.engine;
    // 2. Where to resume (the later of the checkpoint and what the target recorded applying);
    //    on the first start, schema sync and copy plans first.
    target.prepare_progress().await?;
    let checkpoint = match session.checkpoint().await? {
        Some(c) => resume_from_target(&session, &mut target, c).await?,
        None => first_start(&session, &mut target, engine)
            .await?
            .ok_or(TaskError::ConfigChanged)?,
    };
    let mut catalog = schema_at(state, instance, &session.params, &checkpoint.position).await?;
    // 3. The selected tables and the copies of their rows.
    let (tables, mut copies) = copies_of(&session, &mut target, &catalog, engine).await?;
    note_selection(&session, &checkpoint.position).await?;
    let mut incremental = copies.all_done();
    session
        .enter([Stage::FullSync, Stage::Incremental][usize::from(incremental)])
        .await?;
    tracing::info!(instance = %instance, position = %checkpoint.position, "sync starting");
    // 4. The binlog read ahead, the reporter, the applier.
    let mut events = session
        .events(&checkpoint.position, catalog.clone(), None)
        .await?;
    session.report();
    let mut applier = Applier::new(target, (&tparams, engine), tables, &session);
    let mut stream_at = checkpoint.position;
    let mut in_transaction = false;
    let mut checkpointed_at = tokio::time::Instant::now();
    let mut verifying: Option<AbortOnDrop> = None;
    // 5. Events and chunks until told to stop, each at a transaction boundary.
    loop {
        if session.should_stop(in_transaction) {
            break;
        }
        session.lease.check()?;
        let check = session.converge().await?;
        if session.should_stop(in_transaction) {
            break;
        }
        if !matches!(check, Check::NotDue) && verifying.as_ref().is_none_or(|v| v.0.is_finished()) {
            verifying = start_verification(
                state,
                instance,
                &session.params,
                &tparams,
                &applier.tables,
                &copies,
                &catalog,
            )
            .await?;
        }
        if matches!(check, Check::Reconfigured(_)) && !in_transaction {
            applier.drain().await?;
            mark_loaded(&session, &mut applier).await?;
            checkpoint_applied(&session, &mut applier).await?;
            return Err(TaskError::ConfigChanged);
        }
        copies.start_reads(&stream_at).await?;
        let wait = settings.heartbeat * 2;
        let event = tokio::select! {
            gone = session.stop_signal() => if gone { break } else { continue },
            read = copies.next_read(), if copies.reading() => {
                read?;
                // A chunk whose high watermark the stream has reached (an idle source: its
                // watermark is where the stream stands) is loaded now, before the next event,
                // as that event would load it, instead of a heartbeat later.
                if !in_transaction {
                    let due = copies.due(&stream_at, true);
                    load_due(&session, &mut copies, &mut applier, due).await?;
                }
                continue;
            }
            event = events.next(wait) => event?,
        };
        let Some((event, _read_at)) = event else {
            // No event: an idle boundary, if outside a transaction.
            if !in_transaction {
                applier.boundary(true).await?;
            }
            continue;
        };
        // Chunks whose high watermark this event is past are loaded before it.
        if !in_transaction {
            let idle = matches!(event.event, SourceEvent::Heartbeat);
            let due = copies.due(&event.position, idle);
            load_due(&session, &mut copies, &mut applier, due).await?;
        }
        session.meter.observe(&event);
        stream_at = event.position.clone();
        let ddl = matches!(event.event, SourceEvent::Ddl { .. });
        in_transaction = apply(
            &session,
            &mut applier,
            &mut copies,
            &mut catalog,
            event,
            in_transaction,
        )
        .await?;
        if ddl {
            checkpointed_at = tokio::time::Instant::now();
        }
        if !incremental && copies.all_done() {
            applier.drain().await?;
            mark_loaded(&session, &mut applier).await?;
            session.enter(Stage::Incremental).await?;
            incremental = true;
            tracing::info!(instance = %instance, position = %stream_at, "full sync done");
        }
        mark_loaded(&session, &mut applier).await?;
        if checkpointed_at.elapsed() >= CHECKPOINT_EVERY && applier.applied.is_some() {
            checkpoint_applied(&session, &mut applier).await?;
            checkpointed_at = tokio::time::Instant::now();
        }
    }
    // 6. Stopped.
    stopped(session, applier, in_transaction).await
}

/// The end of a stopped loop: what is batched up to the last commit is applied and
/// checkpointed. Inside a transaction the batch holds part of it: dropped, the target stays at
/// the last applied boundary and the next start re-applies from the checkpoint.
async fn stopped(
    mut session: Session<'_>,
    mut applier: Applier,
    in_transaction: bool,
) -> Result<(), TaskError> {
    if in_transaction {
        // What is in flight (parts of the transaction) is waited for, then rolled back with
        // the connection.
        applier.target().await?;
    } else {
        applier.drain().await?;
    }
    mark_loaded(&session, &mut applier).await?;
    checkpoint_applied(&session, &mut applier).await?;
    applier.close().await;
    session.finish().await;
    Ok(())
}

/// Applies one event of the stream; returns whether a transaction is open after it.
async fn apply(
    session: &Session<'_>,
    applier: &mut Applier,
    copies: &mut Copies,
    catalog: &mut SchemaCatalog,
    event: ReadEvent,
    in_transaction: bool,
) -> Result<bool, TaskError> {
    let at = (&event.position, event.timestamp);
    match event.event {
        SourceEvent::Begin { .. } => return Ok(true),
        SourceEvent::Rows(rows) => {
            batch(applier, copies, rows, at.0);
            applier.flush_part().await?;
        }
        SourceEvent::Ddl {
            schema,
            database,
            statement,
            ..
        } => {
            let engine = applier.engine;
            let mut evolution = Evolution {
                session,
                engine,
                applier,
                copies,
            };
            on_ddl(
                &mut evolution,
                catalog,
                at,
                database.as_deref(),
                &statement,
                &schema,
            )
            .await?;
        }
        SourceEvent::Commit { .. } => {
            applier.batched_commit = Some((at.0.clone(), at.1));
            applier.boundary(false).await?;
            return Ok(false);
        }
        SourceEvent::Heartbeat => {
            if !in_transaction {
                applier.boundary(true).await?;
            }
        }
    }
    Ok(in_transaction)
}

/// Adds the carried rows of a rows event to the batch, noting the keys the stream changed for
/// the copies under way.
fn batch(applier: &mut Applier, copies: &mut Copies, rows: RowsEvent, at: &Position) {
    let Some(carried) = rows.carried else {
        return;
    };
    // The row filter first: a row leaving it is deleted on the target, one entering inserted.
    for change in rows.changes.into_iter().filter_map(|c| carried.admit(c)) {
        let name = change.table().name().clone();
        let Some(table) = applier.tables.get(&name) else {
            continue;
        };
        if table.key.is_empty() {
            // A keyless table's changes until its chunk is loaded are in the chunk.
            if !copies.table_done(&name) {
                continue;
            }
        } else {
            for image in [change.before(), change.after()].into_iter().flatten() {
                copies.touch(&name, table.key_bytes(image), at);
            }
        }
        applier.batch.push(change);
    }
}

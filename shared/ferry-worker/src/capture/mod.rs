//! The capture loop of one change-tracking task: read → decode → select → frame → encode →
//! produce → acknowledge → checkpoint.
//!
//! The steps live where their names say: reading and decoding in `ferry_mysql::binlog` (on a
//! task of its own, [`crate::source::Events`]), selection prepared per table map
//! (`ObjectSelection::prepare`, applied by the decoder), transaction framing in [`framing`],
//! encoding in `ferry_kafka::format`, producing and acknowledging in [`crate::delivery`], the
//! checkpoint cadence in [`cadence`], reselection in [`objects`]; the session around the loop
//! (lease, desired state, reporter) in [`crate::session`].
//!
//! # Resumption
//!
//! The loop starts from the task's checkpoint, or, on the task's first start, from the
//! source's current position, which it records as the first checkpoint before producing
//! anything. A checkpoint is written only at a transaction's commit and only after the broker
//! acknowledged every record before it, so resuming from it re-reads at most the transactions
//! whose records may already be in the topic. Those are recognised by their idempotency keys:
//! the loop reads the last record of the topic and skips re-read records up to and including
//! that key. The topic therefore holds every change exactly once, in commit order.
//!
//! # Fencing
//!
//! Every checkpoint carries the lease's fencing token; the store refuses a checkpoint older than
//! the newest one. Records are fenced by the lease's local deadline (`crate::lease`): once less
//! than half the lease is left unrenewed, the loop queues nothing more, purges the producer and
//! stops, and every record queued before then is delivered or failed before another worker can
//! claim the task.
//!
//! # Error handling
//!
//! Definite errors (binlog purged, settings changed, privileges revoked, an event or record Ferry
//! cannot handle) are returned as [`TaskError::Definite`]: the worker puts the task in `failed`
//! with the code, message and hint. Everything else is transient: the worker releases the lease
//! and retries with backoff.

mod backfill;
mod cadence;
mod failover;
mod framing;
mod objects;

use std::time::Instant;

use ferry_domain::id::InstanceId;
use ferry_domain::position::Position;
use ferry_domain::schema::{SchemaCatalog, SchemaEntry};
use ferry_domain::selection::OperationKind;
use ferry_domain::task::Stage;
use ferry_mysql::binlog::{ReadEvent, SourceEvent};
use ferry_store::Checkpoint;
use tokio::sync::watch;

use crate::delivery::{self, Delivery, Destination, Opened};
use crate::error::{DefiniteError, TaskError, transient};
use crate::heartbeat;
use crate::lease::Claim;
use crate::session::CaptureSettings;
use crate::session::{CHECKPOINT_EVERY, Check, Mark, Session};
use crate::source::{
    AbortOnDrop, Events, current_position, schema_at, snapshot_schema, source_version,
};
use cadence::Cadence;
use framing::{Boundary, Framed, Framing};
use objects::Objects;

/// Runs the capture loop of `instance`'s task while this worker holds its lease (`claim`),
/// until `stop` turns true, the task is no longer wanted running, or an error.
pub async fn capture_task(
    state: &ferry_api::AppState,
    settings: &CaptureSettings,
    instance: &InstanceId,
    claim: Claim,
    stop: watch::Receiver<bool>,
) -> Result<(), TaskError> {
    let mut session = Session::open(state, settings, instance, claim, stop, |m| m).await?;
    session.archive();
    // A checkpoint in another server's binlog is moved to this one by GTID (or refused) before
    // anything reads the topic.
    let existing = match session.stored_checkpoint().await? {
        Some(c) => Some(failover::follow(&session, c).await?),
        None => None,
    };
    let topic = state.topic_of(&session.task.value);
    let offsets = existing.as_ref().and_then(|c| c.offsets.as_deref());
    let (opened, tails, acks) = delivery::open(
        state,
        &topic,
        &session.config,
        (&session.fence.source, offsets),
        &session.lease,
        settings.discard,
    )
    .await?;
    let last_key = existing.as_ref().and_then(|c| c.last_key.clone());
    let mut style = ferry_kafka::format::Style::of(&session.config.delivery);
    if style.needs_source_version() {
        style.source_version = Some(source_version(&session.params).await?.into());
    }
    let (format, meter, lease) = (style, session.meter.clone(), session.lease.clone());
    let result = match opened {
        Opened::Kafka(d) => {
            let out = Delivery::new(d, acks, tails, format, meter, lease, last_key);
            run(&mut session, existing, out).await
        }
        Opened::Kinesis(d) => {
            let out = Delivery::new(d, acks, tails, format, meter, lease, last_key);
            run(&mut session, existing, out).await
        }
        Opened::Discard(d) => {
            let out = Delivery::new(d, acks, tails, format, meter, lease, last_key);
            run(&mut session, existing, out).await
        }
    };
    if matches!(result, Err(TaskError::LeaseLost | TaskError::LeaseExpiring)) {
        tracing::warn!(instance = %instance, lost = session.lease.is_lost(), "the lease is ending: stopped sending");
    }
    result
}

/// The loop with its destination; on failure nothing of it may land once it returned (the
/// worker releases the lease and the next loop reads the topic's tail).
async fn run<D: Destination>(
    session: &mut Session<'_>,
    existing: Option<Checkpoint>,
    mut out: Delivery<D>,
) -> Result<(), TaskError> {
    let result = capture(session, existing, &mut out).await;
    if result.is_err() {
        let within = session.lease.times().message_timeout();
        out.destination().abandon(within).await;
        // A record the producer gave up on (its request timed out) may still be applied by a
        // slow broker: the next loop reads the topic's tail only after such a request would
        // have landed, or it could produce the record again.
        if matches!(
            result,
            Err(TaskError::Connection {
                side: ferry_domain::metrics::Side::Target,
                ..
            })
        ) {
            tokio::time::sleep(within).await;
        }
    }
    result
}

/// The stages of the loop.
async fn capture<D: Destination>(
    session: &mut Session<'_>,
    existing: Option<Checkpoint>,
    out: &mut Delivery<D>,
) -> Result<(), TaskError> {
    // 1. Where to resume, and the schema history there.
    let Some((checkpoint, catalog)) = resume_point(session, existing, out.first_offsets()).await?
    else {
        return Err(TaskError::ConfigChanged);
    };
    session.enter(Stage::Incremental).await?;
    tracing::info!(instance = %session.instance, position = %checkpoint.position, "capture starting");
    // 2. The selection in effect at the checkpoint, and the switches recorded after it.
    let mut objects = Objects::resume(
        session.state,
        session.instance,
        &checkpoint.position,
        session.fence.config_version,
        &session.config.objects,
        out.tail_marks(),
    )
    .await?;
    session.config.objects = objects.current.clone();
    // 3. The binlog read ahead, the heartbeat writer, the reporter.
    let mut events = open_events(session, &checkpoint.position, catalog).await?;
    let _heartbeats = session.config.heartbeat.clone().map(|writer| {
        AbortOnDrop(tokio::spawn(heartbeat::write_heartbeats(
            session.params.clone(),
            session.instance.clone(),
            writer,
            session.meter.clone(),
        )))
    });
    session.report();
    // 4. Events until told to stop, each at a transaction boundary.
    let delivery = &session.config.delivery;
    let mut framing = Framing::new(delivery.transaction_records, delivery.heartbeat_records);
    let mut framed: Vec<Framed> = Vec::new();
    let mut cadence = Cadence::new(CHECKPOINT_EVERY, Instant::now());
    let mut config_changed = false;
    let mut backfill = backfill::Backfiller::new();
    // The position of the last event handled: where a chunk read now cannot start before.
    let mut stream_at = checkpoint.position.clone();
    // The last record the stored checkpoint names (a crash point for the tests needs it).
    let mut written_key = checkpoint.last_key.clone();
    loop {
        if session.should_stop(framing.in_transaction()) {
            break;
        }
        if let Err(e) = session.lease.check() {
            out.destination().purge();
            return Err(e.into());
        }
        if let Check::Reconfigured(current) = session.converge().await? {
            let adopted = objects.adopt(&current.value, &session.config, &mut session.fence);
            if !adopted && !framing.in_transaction() {
                config_changed = true;
                break;
            }
        }
        if session.should_stop(framing.in_transaction()) {
            break;
        }
        if !framing.in_transaction() {
            backfill.poll(session, &stream_at).await?;
            backfill.start_reads(&stream_at).await?;
        }
        let wait = session.settings.heartbeat * 2;
        let event = tokio::select! {
            gone = session.stop_signal() => if gone { break } else { continue },
            read = backfill.next_read(), if backfill.reading() => {
                read?;
                continue;
            }
            event = events.next(wait) => event?,
        };
        let Some((event, read_at)) = event else {
            continue;
        };
        // Backfilled chunks whose high watermark this event is past are written before it, at
        // the boundary the stream stands at.
        if !framing.in_transaction() {
            let idle = matches!(event.event, SourceEvent::Heartbeat);
            backfill
                .write_due(session, (&event.position, &stream_at), idle, out)
                .await?;
        }
        backfill.observe(&event);
        session.meter.observe(&event);
        let position = event.position.clone();
        stream_at = position.clone();
        let idle = read(session, &mut framing, event, read_at, &mut framed, out).await?;
        if !framing.in_transaction() {
            switch(session, &mut objects, &position, &mut events).await?;
        }
        out.settle().await?;
        for (partition, found) in out.take_repairs() {
            report_repair(session, out.destination().name(), partition, found).await;
        }
        if let Some(settled) = out.settled() {
            cadence.settled(settled);
        }
        if let Some((position, time, offsets)) = cadence.due(Instant::now(), idle) {
            if crate::faults::abort_before_checkpoint() && out.last_key() != written_key.as_deref()
            {
                out.drain().await?;
                crate::faults::abort();
            }
            let mark = (&position, time, offsets.as_deref());
            checkpoint_adopting(session, &mut objects, mark, out.last_key()).await?;
            written_key = out.last_key().map(str::to_owned);
            cadence.written(Instant::now());
        }
    }
    // 5. The last commit's checkpoint, once everything is acknowledged; refused (and not
    //    needed) when the configuration changed: the next loop resumes from the previous one
    //    and skips what is in the topic.
    out.drain().await?;
    if let Some(settled) = out.settled() {
        cadence.settled(settled);
    }
    if let Some((position, time, offsets)) = cadence.take()
        && !config_changed
    {
        let mark = (&position, time, offsets.as_deref());
        checkpoint_adopting(session, &mut objects, mark, out.last_key()).await?;
    }
    out.destination().flush().await?;
    session.finish().await;
    if config_changed {
        Err(TaskError::ConfigChanged)
    } else {
        Ok(())
    }
}

/// The checkpoint to resume from and the schema history there; on a first start, the task's
/// chosen start point or the source's current position, recorded as the first checkpoint with a snapshot of the catalog. `None`
/// when the configuration changed meanwhile.
async fn resume_point(
    session: &Session<'_>,
    existing: Option<Checkpoint>,
    offsets: Option<Vec<i64>>,
) -> Result<Option<(Checkpoint, SchemaCatalog)>, TaskError> {
    let (state, instance, params) = (session.state, session.instance, &session.params);
    if let Some(c) = existing {
        let catalog = schema_at(state, instance, params, &c.position).await?;
        return Ok(Some((c, catalog)));
    }
    // A chosen start point (found by the start's precheck), else the source's current position.
    let position = match &session.task.value.start {
        Some(chosen) => chosen.position.clone(),
        None => current_position(params).await?,
    };
    // The schema history starts here: read a moment after the position, so the first
    // statements replayed may already show in it (applying them again is harmless). From a
    // start point in the past it is the catalog as it is now: the rows before a later DDL
    // statement decode by the names their own table maps carry (FULL row metadata), and
    // replaying the statement is harmless.
    let catalog = snapshot_schema(state, instance, params, &position).await?;
    Ok(session
        .first_checkpoint(position, offsets)
        .await?
        .map(|c| (c, catalog)))
}

/// Opens the binlog at `at` for the loop's current objects (and the heartbeat table).
async fn open_events(
    session: &Session<'_>,
    at: &Position,
    catalog: SchemaCatalog,
) -> Result<Events, TaskError> {
    let heartbeat = session.config.heartbeat.as_ref().map(heartbeat::table);
    session.events(at, catalog, heartbeat).await
}

/// Handles one event: the heartbeat table's rows set the delay, DDL is recorded in the schema
/// history, then the event is framed and its records produced. Returns whether the source is
/// idle.
async fn read<D: Destination>(
    session: &Session<'_>,
    framing: &mut Framing,
    mut event: ReadEvent,
    read_at: Instant,
    framed: &mut Vec<Framed>,
    out: &mut Delivery<D>,
) -> Result<bool, TaskError> {
    let config = &session.config;
    let mut deliver_ddl = false;
    match &mut event.event {
        SourceEvent::Rows(rows) => {
            // The heartbeat writer's rows: the delay's clock, never delivered (but counted
            // toward the transaction's indexes like every row).
            if let (Some(writer), Some(first)) = (&config.heartbeat, rows.changes.first()) {
                let name = first.table().name();
                if heartbeat::is_heartbeat_table(writer, &name.database, &name.table) {
                    for change in &rows.changes {
                        if let Some(ms) = heartbeat::beat_ms(change, session.instance) {
                            session.meter.event_at(ms);
                        }
                    }
                    rows.changes.clear();
                    rows.carried = None;
                }
            }
            // Bounded memory: a row larger than the bound fails the task before it is encoded.
            if rows.carried.is_some() {
                let limit = session.settings.max_row_bytes;
                if let Some(row) = rows.changes.iter().find(|c| c.size_bytes() > limit) {
                    return Err(DefiniteError::RowTooLarge {
                        table: row.table().name().to_string(),
                        position: event.position.to_string(),
                        bytes: row.size_bytes(),
                        limit,
                    }
                    .into());
                }
            }
        }
        SourceEvent::Ddl {
            schema, subject, ..
        } => {
            // Stored before the loop goes past the statement: a checkpoint after it implies
            // the history has it.
            if !schema.is_empty() {
                session
                    .state
                    .store()
                    .put_schema_entries(session.instance, &event.position, schema)
                    .await?;
            }
            // Only a statement the parser attributes to a selected table or database is
            // delivered: accounts, grants (and their passwords), routines never are.
            let selected = subject.selected(
                |d, t| config.objects.table(d, t).is_some(),
                |d| config.objects.includes_database(d),
            );
            if !selected {
                session.meter.statement_skipped();
            }
            // The heartbeat writer creating its table is bookkeeping, not the user's DDL.
            let own = config.heartbeat.as_ref().is_some_and(|w| {
                !schema.is_empty()
                    && schema.iter().all(|e| {
                        matches!(e, SchemaEntry::Table { name, .. }
                            if heartbeat::is_heartbeat_table(w, &name.database, &name.table))
                    })
            });
            deliver_ddl = selected && !own && config.objects.includes(OperationKind::Ddl);
        }
        _ => {}
    }
    let boundary = framing.on_event(event, deliver_ddl, framed);
    for f in framed.drain(..) {
        out.produce(&f.event, f.order, &f.columns, read_at).await?;
    }
    Ok(match boundary {
        Boundary::Commit(position, time) => {
            out.commit(position, time);
            false
        }
        Boundary::Idle => true,
        Boundary::None => false,
    })
}

/// At a transaction boundary: switches the objects if a switch is due at `at`, and reads the
/// binlog again from there (events read ahead were decoded for the old selection).
async fn switch(
    session: &mut Session<'_>,
    objects: &mut Objects,
    at: &Position,
    events: &mut Events,
) -> Result<(), TaskError> {
    let Some(change) = objects.due(session.state, session.instance, at).await? else {
        return Ok(());
    };
    tracing::info!(instance = %session.instance, position = %change.position, version = change.config_version, "objects switched");
    let history = session
        .state
        .store()
        .schema_history(session.instance)
        .await?;
    let catalog = SchemaCatalog::at(&history, &change.position)
        .ok_or_else(|| transient("the schema history has no snapshot before the switch"))?;
    session.config.objects = change.objects;
    events.stop();
    *events = open_events(session, &change.position, catalog).await?;
    Ok(())
}

/// Publishes what a restarted loop found repairing its topic (`Topic Repaired`), for an
/// operator to know its consumers see duplicates, and why.
async fn report_repair(
    session: &Session<'_>,
    topic: &str,
    partition: usize,
    found: delivery::tail::Repairs,
) {
    tracing::warn!(instance = %session.instance, topic, partition, missing = found.missing, resent = found.resent, strays = found.strays, "topic repaired after the broker lost or doubled records");
    let event = ferry_aws::Event::TopicRepaired {
        instance: session.instance.clone(),
        topic: topic.to_owned(),
        partition: i32::try_from(partition).unwrap_or(i32::MAX),
        missing: found.missing,
        resent: found.resent,
        strays: found.strays,
        at: chrono::Utc::now(),
    };
    session.state.events().publish_or_log(&[event]).await;
}

/// Writes a checkpoint. A reselection that landed since the loop last looked makes the store
/// refuse the older configuration version: it is adopted (a switch at the next boundary) and
/// the checkpoint written again, so reselecting never restarts the loop.
async fn checkpoint_adopting(
    session: &mut Session<'_>,
    objects: &mut Objects,
    mark: Mark<'_>,
    last_key: Option<&str>,
) -> Result<(), TaskError> {
    match session.write_checkpoint(mark, last_key).await {
        Err(TaskError::ConfigChanged) => {
            let current = session
                .state
                .store()
                .get_task(session.instance)
                .await?
                .ok_or_else(|| transient("the task is gone"))?;
            if !objects.adopt(&current.value, &session.config, &mut session.fence) {
                return Err(TaskError::ConfigChanged);
            }
            session.write_checkpoint(mark, last_key).await
        }
        other => other,
    }
}

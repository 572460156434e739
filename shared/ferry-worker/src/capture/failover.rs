//! Following the source through a failover: a checkpoint written from another server's binlog
//! is moved to the new server by its GTID state.
//!
//! A checkpoint names the source server it was read from and, since it carries the whole GTID
//! state at its position, the set of transactions the topic holds. When the task's source is now
//! another server (a replica promoted after the old primary failed: the same DNS name pointing
//! elsewhere, or a new host in the endpoint), the loop asks the new server for the stream after
//! that GTID state (`ferry_mysql::start::resolve`, which the server refuses when its binlogs
//! lack a transaction after it) and rewrites the checkpoint at the new server's file and offset,
//! with the same topic offsets. The records the topic holds after the checkpoint were written
//! from the old server's binlog; the reconciliation compares them with the new server's by
//! their GTID-based keys and GTID states (`delivery::tail`), so nothing is lost or written twice.
//!
//! The task's schema and selection histories are keyed by the old server's positions: they
//! start over at the new position with the catalog and the selection in effect at the
//! checkpoint (`Store::rebase_histories`). A reselection switched after the checkpoint is made
//! again once the loop is past what the topic holds.
//!
//! Every step is repeatable: a worker that dies between them does the failover again from the
//! old checkpoint, and finds the rebased histories at the new position (the server gives the
//! same position for the same GTID state).

use ferry_domain::gtid::GtidSet;
use ferry_domain::position::Position;
use ferry_domain::reselect::{SelectionChange, SelectionPlan};
use ferry_domain::schema::{SchemaCatalog, SchemaEntry};
use ferry_domain::start::StartPoint;
use ferry_mysql::binlog::ReaderError;
use ferry_store::Checkpoint;

use crate::error::{DefiniteError, TaskError, transient};
use crate::session::Session;
use crate::source::{same_source, snapshot_schema};

/// The checkpoint the loop resumes from: `checkpoint` itself when it is in the current
/// source's binlog, else the same point in the new server's binlog, found by GTID.
pub(super) async fn follow(
    session: &Session<'_>,
    checkpoint: Checkpoint,
) -> Result<Checkpoint, TaskError> {
    let now = &session.fence.source;
    let Some(was) = checkpoint.source.clone().filter(|was| was != now) else {
        return Ok(checkpoint);
    };
    // Without a GTID state, a position of another server means nothing here.
    let Some(gtid) = checkpoint.position.gtid().cloned() else {
        same_source(&checkpoint, now)?;
        return Ok(checkpoint);
    };
    tracing::warn!(instance = %session.instance, %was, %now, checkpoint = %checkpoint.position, "the source is another server: following it by GTID");
    let position = locate(session, &gtid, &was).await?;
    let (catalog, selection) = histories_at(session, &checkpoint.position, &position).await?;
    session
        .state
        .store()
        .rebase_histories(session.instance, &position, &catalog, selection.as_ref())
        .await?;
    let moved = Checkpoint {
        position: position.clone(),
        source: Some(now.clone()),
        ..checkpoint.clone()
    };
    session.rewrite_checkpoint(moved.clone()).await?;
    tracing::warn!(instance = %session.instance, %was, %now, from = %checkpoint.position, to = %position, "followed the source to another server");
    let event = ferry_aws::Event::SourceFailedOver {
        instance: session.instance.clone(),
        from_server: was,
        to_server: now.clone(),
        gtid: gtid.to_string(),
        from_position: checkpoint.position.to_string(),
        to_position: position.to_string(),
        at: chrono::Utc::now(),
    };
    session.state.events().publish_or_log(&[event]).await;
    Ok(moved)
}

/// Where the transactions after `gtid` begin in the new server's binlog; a server that cannot
/// stream them (it lacks one, or purged it) fails the task.
async fn locate(session: &Session<'_>, gtid: &GtidSet, was: &str) -> Result<Position, TaskError> {
    let probe = ferry_mysql::start::probe_server_id(session.instance.as_str());
    let point = StartPoint::Gtid(gtid.clone());
    match ferry_mysql::start::resolve(&session.params, probe, &point).await {
        Ok(position) => Ok(position),
        Err(ReaderError::Definite { message, .. }) => Err(DefiniteError::FailoverGtidMissing {
            was: was.to_owned(),
            now: session.fence.source.clone(),
            gtid: gtid.to_string(),
            message,
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// The schema catalog (as snapshot entries) and the selection in effect at the old
/// checkpoint `old`, for the histories to start over at `new`: those a failover interrupted
/// after rebasing wrote at `new`, else the old server's at `old`.
async fn histories_at(
    session: &Session<'_>,
    old: &Position,
    new: &Position,
) -> Result<(Vec<SchemaEntry>, Option<SelectionChange>), TaskError> {
    let store = session.state.store();
    let history = store.schema_history(session.instance).await?;
    let rebased = history
        .iter()
        .any(|(p, _, e)| p == new && matches!(e, SchemaEntry::Snapshot));
    let at = if rebased { new } else { old };
    let catalog = match SchemaCatalog::at(&history, at) {
        Some(catalog) => catalog,
        None => {
            tracing::warn!(instance = %session.instance, checkpoint = %old, "no schema history at the checkpoint: reading the new source's catalog now");
            snapshot_schema(session.state, session.instance, &session.params, new).await?
        }
    };
    let selections = store.selection_history(session.instance).await?;
    let selection = match selections.iter().find(|c| &c.position == new) {
        Some(c) => Some(c.clone()),
        None => SelectionPlan::at(&selections, old)
            .current
            .map(|c| SelectionChange {
                position: new.clone(),
                ..c
            }),
    };
    if selection.is_none() && !selections.is_empty() {
        return Err(transient(
            "the selection history has nothing at or before the checkpoint",
        ));
    }
    Ok((catalog.snapshot_entries(), selection))
}

//! The binlog archive's worker side (docs/capture.md, "Binlog archive").
//!
//! [`Archiver`]: while a worker holds a task with `archive` (running, or stopped: then the
//! worker holds it only to archive), a replication connection of its own copies the source's
//! binlog as the server writes it, ahead of the task's loop, into pieces in S3
//! (`ferry_aws::archive`). It resumes after the last piece stored, so a restart re-reads from
//! the server what was not stored yet; pieces the task's checkpoint has passed are deleted
//! once older than the task's retention. It never fails the task: a failure is logged and
//! retried, and a gap it leaves is found when (and only if) the task needs the missing part.
//!
//! [`replay_plan`]: when the task's loop resumes in a file the server has purged, the pieces
//! from its checkpoint up to the server's oldest file, which [`crate::source::Events`] reads
//! before it switches to the server.

use std::time::Duration;

use chrono::Utc;
use ferry_api::AppState;
use ferry_aws::Archive;
use ferry_aws::archive::{Gap, Piece, plan, prefix};
use ferry_domain::archive::ArchiveStatus;
use ferry_domain::id::InstanceId;
use ferry_domain::position::{BinlogFile, Position};
use ferry_domain::task::TaskState;
use ferry_domain::task_config::BinlogArchive;
use ferry_mysql::ConnectParams;
use ferry_mysql::archive::{PieceBytes, PieceWriter, Raw, RawDump};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{DefiniteError, TaskError, source_failed, transient};
use crate::lease::{Claim, hold};
use crate::metrics::ArchiveMeter;
use crate::session::{CHECK_EVERY, CaptureSettings};
use crate::source::{AbortOnDrop, source_identity, source_params};

/// The largest piece, uncompressed: large enough that a busy server makes a few objects a
/// minute, small enough to hold in memory while it is uploaded or replayed.
pub(crate) const PIECE_BYTES: usize = 8 << 20;

/// How often pieces behind the checkpoint are looked at for deletion.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How long the archiver waits before trying again after a failure.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// Where the archive of a task's source is.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveAt {
    pub(crate) archive: Archive,
    /// The key prefix: the task's instance and its source server.
    pub(crate) prefix: String,
    /// The source server (`server_id:7`).
    pub(crate) server: String,
}

impl ArchiveAt {
    pub(crate) fn new(state: &AppState, instance: &InstanceId, source: &str) -> Self {
        Self {
            archive: state.archive().clone(),
            prefix: prefix(instance, source),
            server: source.to_owned(),
        }
    }
}

impl ArchiveAt {
    /// Every piece of the archive, with when it was stored.
    async fn pieces(&self) -> Result<Vec<(Piece, Option<chrono::DateTime<Utc>>)>, TaskError> {
        self.archive.list(&self.prefix).await.map_err(transient)
    }
}

/// The archive's replica server id: another than the task's own, since both stream at once.
fn archive_server_id(instance: &InstanceId) -> u32 {
    ferry_mysql::start::replica_server_id(&format!("{instance}/archive"))
}

/// What an archiver needs.
pub(crate) struct ArchiverSetup {
    pub(crate) state: AppState,
    pub(crate) instance: InstanceId,
    pub(crate) params: ConnectParams,
    pub(crate) at: ArchiveAt,
    pub(crate) config: BinlogArchive,
    /// How often an unfinished piece is stored (`FERRY_ARCHIVE_FLUSH_MS`).
    pub(crate) flush: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) meter: ArchiveMeter,
}

/// A running archiver; it stops when dropped.
pub(crate) struct Archiver {
    _task: AbortOnDrop,
}

impl Archiver {
    pub(crate) fn spawn(setup: ArchiverSetup) -> Self {
        let task = tokio::spawn(async move {
            let mut pruned_at: Option<Instant> = None;
            let mut status = ArchiveStatus::new(setup.at.server.clone(), Utc::now());
            loop {
                if let Err(e) = archive(&setup, &mut status, &mut pruned_at).await {
                    setup.meter.errors.inc();
                    tracing::warn!(instance = %setup.instance, error = %e, "binlog archive: stopped, trying again");
                    status.failed(e.to_string(), Utc::now());
                    report(&setup, &status).await;
                }
                tokio::time::sleep(RETRY_AFTER).await;
                // While it is down, the stored pieces fall further behind.
                if let Some(delay) = status.delay(Utc::now()) {
                    setup.meter.delay.set(seconds(delay));
                }
            }
        });
        Self {
            _task: AbortOnDrop(task),
        }
    }
}

/// Records the archive's status for `GET …/task`; a failure is only logged (a report).
async fn report(setup: &ArchiverSetup, status: &ArchiveStatus) {
    if let Err(e) = setup
        .state
        .store()
        .put_archive_status(&setup.instance, status)
        .await
    {
        tracing::warn!(instance = %setup.instance, error = %e, "binlog archive: its status was not recorded");
    }
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

fn at(file: &BinlogFile, offset: u64) -> String {
    format!("{file}:{offset}")
}

/// The oldest position among `pieces`.
fn oldest_piece<'a>(pieces: impl IntoIterator<Item = &'a Piece>) -> Option<String> {
    pieces
        .into_iter()
        .min_by(|a, b| a.file.cmp(&b.file).then(a.start.cmp(&b.start)))
        .map(|p| at(&p.file, p.start))
}

/// Where the archive goes on: after its last piece, or at the task's checkpoint for a new one
/// (`None`: the task has none yet). Notes the archive's extent in `status`.
async fn resume_at(
    setup: &ArchiverSetup,
    status: &mut ArchiveStatus,
) -> Result<Option<(BinlogFile, u64)>, TaskError> {
    let pieces = setup.at.pieces().await?;
    status.oldest = oldest_piece(pieces.iter().map(|(p, _)| p));
    if let Some((last, _)) = pieces
        .into_iter()
        .max_by(|(a, _), (b, _)| a.file.cmp(&b.file).then(a.end.cmp(&b.end)))
    {
        status.through = Some(at(&last.file, last.end));
        return Ok(Some(if last.rotated {
            (last.file.next(), 4)
        } else {
            (last.file, last.end)
        }));
    }
    let checkpoint = setup.state.store().get_checkpoint(&setup.instance).await?;
    if let Some(c) = &checkpoint {
        tracing::info!(instance = %setup.instance, checkpoint = %c.position, "binlog archive: a new archive, from the task's checkpoint");
    }
    Ok(checkpoint.map(|c| (c.position.file().clone(), c.position.offset())))
}

/// One run of the archiver, until the stream fails.
async fn archive(
    setup: &ArchiverSetup,
    status: &mut ArchiveStatus,
    pruned_at: &mut Option<Instant>,
) -> Result<(), TaskError> {
    let Some((mut file, mut offset)) = resume_at(setup, status).await? else {
        // Nothing to archive from before the task's first checkpoint.
        return Ok(());
    };
    let oldest = oldest_file(&setup.params).await?;
    if file < oldest {
        tracing::warn!(instance = %setup.instance, from = %file, %oldest, "binlog archive: the server purged files before the archive had them; archiving from its oldest file");
        (file, offset) = (oldest, 4);
    }
    tracing::info!(instance = %setup.instance, %file, offset, "binlog archive: copying");
    let mut dump = RawDump::start(
        &setup.params,
        archive_server_id(&setup.instance),
        file.clone(),
        offset,
        setup.heartbeat,
    )
    .await?;
    let mut writer = PieceWriter::new(file, offset, PIECE_BYTES);
    let mut flush_at = Instant::now() + setup.flush;
    let result = loop {
        if let Some(delay) = status.delay(Utc::now()) {
            setup.meter.delay.set(seconds(delay));
        }
        if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            *pruned_at = Some(Instant::now());
            if let Err(e) = prune(setup, status).await {
                tracing::warn!(instance = %setup.instance, error = %e, "binlog archive: deleting old pieces failed");
            }
        }
        let next = match tokio::time::timeout_at(flush_at, dump.next()).await {
            Err(_) => None,
            Ok(Err(e)) => break Err(TaskError::from(e)),
            Ok(Ok(None)) => {
                break Err(source_failed(
                    "the source closed the archive's binlog stream",
                ));
            }
            Ok(Ok(Some(raw))) => Some(raw),
        };
        let mut done = match next {
            Some(Raw::Event(event)) => {
                status.set_caught_up(false, Utc::now());
                match writer.push(event) {
                    Ok(done) => done,
                    Err(e) => break Err(e.into()),
                }
            }
            Some(Raw::Format(bytes)) => {
                writer.format(bytes);
                None
            }
            Some(Raw::Idle) => {
                // The server's heartbeat: it has nothing newer than what it sent.
                if status.set_caught_up(writer.is_empty(), Utc::now()) {
                    report(setup, status).await;
                }
                None
            }
            None => None,
        };
        // An unfinished piece is stored every `flush`, busy or idle.
        if Instant::now() >= flush_at {
            flush_at = Instant::now() + setup.flush;
            if let Some(piece) = done.take()
                && let Err(e) = store(setup, status, piece).await
            {
                break Err(e);
            }
            done = writer.flush();
        }
        if let Some(piece) = done
            && let Err(e) = store(setup, status, piece).await
        {
            break Err(e);
        }
    };
    let _ = dump.close().await;
    result
}

/// Compresses and stores a piece, and reports it.
async fn store(
    setup: &ArchiverSetup,
    status: &mut ArchiveStatus,
    piece: PieceBytes,
) -> Result<(), TaskError> {
    let newest_time = piece
        .newest_time
        .and_then(|t| chrono::DateTime::from_timestamp(i64::from(t), 0));
    let at = &setup.at;
    let meta = Piece {
        file: piece.file,
        start: piece.start,
        end: piece.end,
        rotated: piece.rotated,
    };
    let bytes = piece.bytes;
    let size = bytes.len() as u64;
    let body = tokio::task::spawn_blocking(move || zstd::bulk::compress(&bytes, 3))
        .await
        .map_err(transient)?
        .map_err(transient)?;
    at.archive
        .put(&at.prefix, &meta, body)
        .await
        .map_err(transient)?;
    setup.meter.pieces.inc();
    setup.meter.bytes.inc_by(size);
    tracing::debug!(piece = %meta, "binlog archive: stored");
    status.stored(
        self::at(&meta.file, meta.start),
        self::at(&meta.file, meta.end),
        newest_time,
        Utc::now(),
    );
    report(setup, status).await;
    Ok(())
}

/// Deletes the pieces the task's checkpoint has passed that are older than the retention.
async fn prune(setup: &ArchiverSetup, status: &mut ArchiveStatus) -> Result<(), TaskError> {
    let Some(checkpoint) = setup.state.store().get_checkpoint(&setup.instance).await? else {
        return Ok(());
    };
    let keep_after = Utc::now() - chrono::Duration::days(i64::from(setup.config.retention_days));
    let cp = &checkpoint.position;
    let pieces = setup.at.pieces().await?;
    let mut kept = Vec::with_capacity(pieces.len());
    for (piece, stored) in pieces {
        let passed =
            piece.file < *cp.file() || (piece.file == *cp.file() && piece.end <= cp.offset());
        if passed && stored.is_some_and(|t| t < keep_after) {
            setup
                .at
                .archive
                .delete(&setup.at.prefix, &piece)
                .await
                .map_err(transient)?;
        } else {
            kept.push(piece);
        }
    }
    status.oldest = oldest_piece(&kept);
    Ok(())
}

/// The server's oldest binlog file.
pub(crate) async fn oldest_file(params: &ConnectParams) -> Result<BinlogFile, TaskError> {
    let mut conn = ferry_mysql::connect(params)
        .await
        .map_err(|e| source_failed(e.message))?;
    let files = ferry_mysql::start::binlog_files(&mut conn).await?;
    let _ = conn.disconnect().await;
    files
        .into_iter()
        .map(|(f, _)| f)
        .min()
        .ok_or_else(|| DefiniteError::SourceBinlogOff.into())
}

/// The pieces a reader at `at` needs before the server's `oldest` file: empty when the server
/// has the file; `binlog_purged` naming the gap when the archive lacks a part.
pub(crate) async fn replay_plan(
    at: &ArchiveAt,
    position: &Position,
    oldest: &BinlogFile,
) -> Result<Vec<Piece>, TaskError> {
    if position.file() >= oldest {
        return Ok(Vec::new());
    }
    let pieces: Vec<Piece> = at.pieces().await?.into_iter().map(|(p, _)| p).collect();
    plan(&pieces, position.file(), position.offset(), oldest).map_err(|gap: Gap| {
        DefiniteError::BinlogPurged(format!(
            "the source purged {} (its oldest file is {oldest}) and {gap}",
            position.file()
        ))
        .into()
    })
}

/// A piece's events, uncompressed.
pub(crate) async fn fetch(at: &ArchiveAt, piece: &Piece) -> Result<Vec<u8>, TaskError> {
    let body = at.archive.get(&at.prefix, piece).await.map_err(transient)?;
    tokio::task::spawn_blocking(move || zstd::stream::decode_all(body.as_slice()))
        .await
        .map_err(transient)?
        .map_err(|e| {
            DefiniteError::BinlogPurged(format!(
                "the archived piece {piece} does not decompress: {e}"
            ))
            .into()
        })
}

/// Whether a task that does not run is still archived: stopped, failed or being reconfigured
/// or prechecked on its way back — every state it can resume from its checkpoint.
pub(crate) fn archived_while(state: &TaskState) -> bool {
    matches!(
        state,
        TaskState::Stopped
            | TaskState::Failed { .. }
            | TaskState::Configured
            | TaskState::Prechecking
            | TaskState::PrecheckFailed
    )
}

/// Holds a task that does not run only to archive its source, until the task is started (the
/// worker then runs it, archive included), no longer archived, or the worker stops. Not a
/// session: nothing of the task's loop (meter, stage, reporter) is involved.
pub(crate) async fn archive_only(
    state: &AppState,
    settings: &CaptureSettings,
    instance: &InstanceId,
    claim: Claim,
    mut stop: watch::Receiver<bool>,
) -> Result<(), TaskError> {
    let held = hold(state, &settings.worker, instance, settings.lease_ttl, claim);
    let task = state
        .store()
        .get_task(instance)
        .await?
        .ok_or_else(|| transient("the task is gone"))?;
    let version = task.value.config_version;
    let Some(config) = task.value.config else {
        return Ok(());
    };
    let Some(archive) = config.archive.clone() else {
        return Ok(());
    };
    let params = source_params(state, &config).await?;
    let source = source_identity(&params).await?;
    let _archiver = Archiver::spawn(ArchiverSetup {
        state: state.clone(),
        instance: instance.clone(),
        at: ArchiveAt::new(state, instance, &source),
        params,
        config: archive,
        flush: settings.archive_flush,
        heartbeat: settings.heartbeat,
        meter: settings.metrics.archive(instance),
    });
    tracing::info!(instance = %instance, "archiving the binlog of a task that does not run");
    loop {
        tokio::select! {
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { break },
            () = tokio::time::sleep(CHECK_EVERY) => {}
        }
        held.clock.check()?;
        let Some(task) = state.store().get_task(instance).await? else {
            break;
        };
        let archived = task
            .value
            .config
            .as_ref()
            .is_some_and(|c| c.archive.is_some());
        if !archived
            || !archived_while(task.value.task.state())
            || task.value.config_version != version
        {
            break;
        }
    }
    Ok(())
}

//! The source database as both loops use it: its connection parameters (the endpoint checked
//! against the deployment's forbidden ranges), its current position and identity, the schema
//! history at a position, and the binlog reader running ahead of the loop.

use std::time::Duration;

use ferry_api::AppState;
use ferry_domain::change::ObjectName;
use ferry_domain::endpoint::Endpoint;
use ferry_domain::id::InstanceId;
use ferry_domain::position::{BinlogFile, Position};
use ferry_domain::schema::SchemaCatalog;
use ferry_domain::selection::ObjectSelection;
use ferry_domain::task_config::TaskConfig;
use ferry_mysql::ConnectParams;
use ferry_mysql::archive::Replay;
use ferry_mysql::binlog::{BinlogReader, EventDecoder, ReadEvent, ReaderError, Start};
use ferry_store::Checkpoint;
use mysql_async::prelude::Queryable;
use tokio::sync::mpsc;

use crate::archive::ArchiveAt;
use crate::error::{DefiniteError, TaskError, source_failed, transient};

/// The task's replica server id (see `ferry_mysql::start::replica_server_id`).
pub(crate) fn replica_server_id(instance: &InstanceId) -> u32 {
    ferry_mysql::start::replica_server_id(instance.as_str())
}

/// Refuses an endpoint whose address the deployment does not allow (the metadata services'
/// link-local range): configuring refuses it too, but the deployment's setting or the name's
/// address may have changed since.
pub(crate) async fn check_endpoint(state: &AppState, endpoint: &Endpoint) -> Result<(), TaskError> {
    state
        .check_endpoint(endpoint.host(), endpoint.port())
        .await
        .map_err(|refused| {
            DefiniteError::EndpointForbidden {
                host: endpoint.host().to_owned(),
                refused: refused.to_string(),
            }
            .into()
        })
}

/// How to connect to the task's source (its password read from the secrets store).
pub(crate) async fn source_params(
    state: &AppState,
    config: &TaskConfig,
) -> Result<ConnectParams, TaskError> {
    check_endpoint(state, &config.source).await?;
    let password = state
        .secrets()
        .get(config.source.password_secret())
        .await
        .map_err(transient)?;
    Ok(ConnectParams {
        host: config.source.host().to_owned(),
        port: config.source.port(),
        user: config.source.username().to_owned(),
        password: password.expose().to_owned(),
        database: None,
    })
}

async fn connect(params: &ConnectParams) -> Result<mysql_async::Conn, TaskError> {
    ferry_mysql::connect(params)
        .await
        .map_err(|e| source_failed(e.message))
}

/// The source's current position, for a task's first start, with the GTID state there: the
/// position's (`BINLOG_GTID_POS`) on MariaDB, `Executed_Gtid_Set` on MySQL; so the first
/// checkpoint, and every one after it, names the whole state a replica there would have.
pub(crate) async fn current_position(params: &ConnectParams) -> Result<Position, TaskError> {
    let mut conn = connect(params).await?;
    let row: Option<mysql_async::Row> = conn
        .query_first("SHOW MASTER STATUS")
        .await
        .map_err(source_failed)?;
    let row = row.ok_or(DefiniteError::SourceBinlogOff)?;
    let (file, offset) = row
        .get::<String, _>("File")
        .zip(row.get::<u64, _>("Position"))
        .ok_or(DefiniteError::SourceBinlogOff)?;
    let executed: Option<String> = row
        .get_opt::<Option<String>, _>("Executed_Gtid_Set")
        .and_then(Result::ok)
        .flatten()
        .map(|s| s.replace(['\n', ' '], ""))
        .filter(|s| !s.is_empty());
    let file: BinlogFile = file.parse().map_err(transient)?;
    let gtid = match executed {
        Some(set) => Some(
            set.parse::<ferry_domain::gtid::GtidSet>()
                .map_err(transient)?,
        ),
        None => ferry_mysql::start::mariadb_gtid_at(&mut conn, &file, offset)
            .await
            .map_err(TaskError::from)?,
    };
    let _ = conn.disconnect().await;
    Ok(Position::new(file, offset, gtid))
}

/// The source server's version (`SELECT VERSION()`), which `dts-avro` records carry.
pub(crate) async fn source_version(params: &ConnectParams) -> Result<String, TaskError> {
    let mut conn = connect(params).await?;
    let version: Option<String> = conn
        .query_first("SELECT VERSION()")
        .await
        .map_err(source_failed)?;
    let _ = conn.disconnect().await;
    Ok(version.unwrap_or_default())
}

/// The identity of the source server (see `ferry_mysql::snapshot::server_identity`).
pub(crate) async fn source_identity(params: &ConnectParams) -> Result<String, TaskError> {
    let mut conn = connect(params).await?;
    let id = ferry_mysql::snapshot::server_identity(&mut conn)
        .await
        .map_err(source_failed)?;
    let _ = conn.disconnect().await;
    Ok(id)
}

/// Refuses to resume from a checkpoint in another server's binlog: its position means nothing
/// there (a failover, or the endpoint pointed at another server without a reset).
pub(crate) fn same_source(checkpoint: &Checkpoint, source: &str) -> Result<(), TaskError> {
    match &checkpoint.source {
        Some(was) if was != source => Err(DefiniteError::SourceChanged {
            checkpoint: checkpoint.position.to_string(),
            was: was.clone(),
            now: source.to_owned(),
        }
        .into()),
        _ => Ok(()),
    }
}

/// Reads the source's catalog and stores it as the schema history's snapshot at `position`.
pub(crate) async fn snapshot_schema(
    state: &AppState,
    instance: &InstanceId,
    params: &ConnectParams,
    position: &Position,
) -> Result<SchemaCatalog, TaskError> {
    let mut conn = connect(params).await?;
    let catalog = ferry_mysql::ddl::read_catalog(&mut conn)
        .await
        .map_err(source_failed)?;
    let _ = conn.disconnect().await;
    state
        .store()
        .put_schema_entries(instance, position, &catalog.snapshot_entries())
        .await?;
    tracing::info!(instance = %instance, %position, tables = catalog.len(), "schema history snapshot");
    Ok(catalog)
}

/// The schema history at `position`, where the task resumes. A task without one (its history
/// was lost, or it started before Ferry kept one) gets a snapshot now: right for every table
/// whose table maps name their columns (FULL row metadata), and checked against each table
/// map's column count otherwise.
pub(crate) async fn schema_at(
    state: &AppState,
    instance: &InstanceId,
    params: &ConnectParams,
    position: &Position,
) -> Result<SchemaCatalog, TaskError> {
    let history = state.store().schema_history(instance).await?;
    match SchemaCatalog::at(&history, position) {
        Some(catalog) => Ok(catalog),
        None => {
            tracing::warn!(instance = %instance, %position, "no schema history before the checkpoint: reading the source's catalog now");
            snapshot_schema(state, instance, params, position).await
        }
    }
}

/// Passes the reader's events on until the loop is gone or the stream ends.
type Sent = (std::time::Instant, Result<Option<ReadEvent>, ReaderError>);

async fn forward(mut reader: BinlogReader, tx: &mpsc::Sender<Sent>) {
    loop {
        let next = reader.next().await;
        let last = !matches!(next, Ok(Some(_)));
        if tx.send((std::time::Instant::now(), next)).await.is_err() || last {
            break;
        }
    }
    let _ = reader.close().await;
}

/// A worker-side failure of the archive replay, as the reader's error the loop handles.
fn reader_error(e: TaskError) -> ReaderError {
    match e {
        TaskError::Definite(d) => ReaderError::Definite {
            message: d.to_string(),
            hint: d.hint(),
        },
        other => ReaderError::Io(other.to_string()),
    }
}

/// How many read and decoded events may wait for the loop: enough to keep both sides busy,
/// small enough not to matter for memory (a rows event holds at most a few thousand rows).
const READ_AHEAD: usize = 64;

/// Stops a task of the loop's (the reader, the reporter, the heartbeat writer) when the loop
/// ends, however it ends.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The binlog, read and decoded on a task of its own so decoding runs beside encoding and
/// producing instead of taking turns with them; the bounded channel is the backpressure. The
/// stream's end or an error is passed on and ends the task.
pub(crate) struct Events {
    /// Each event with when the reader had it (the start of its latency in the worker).
    received: mpsc::Receiver<Sent>,
    reading: AbortOnDrop,
}

impl Events {
    /// Opens the binlog at `at`, decoding with `catalog` the rows `objects` carries (and those
    /// of `watched`, the heartbeat table). With an `archive`, a position in a file the server
    /// purged is read from the archive up to the server's oldest file, then from the server.
    #[allow(clippy::too_many_arguments)] // the reader's whole setup, passed once
    pub(crate) async fn open(
        params: &ConnectParams,
        instance: &InstanceId,
        at: &Position,
        catalog: SchemaCatalog,
        objects: &ObjectSelection,
        watched: Option<ObjectName>,
        heartbeat: Duration,
        archive: Option<&ArchiveAt>,
    ) -> Result<Self, TaskError> {
        if let Some(archive) = archive {
            let oldest = crate::archive::oldest_file(params).await?;
            if *at.file() < oldest {
                let pieces = crate::archive::replay_plan(archive, at, &oldest).await?;
                return Self::open_archived(
                    params, instance, at, catalog, objects, watched, heartbeat, archive, pieces,
                    oldest,
                )
                .await;
            }
        }
        let start = Start::File {
            file: at.file().clone(),
            offset: at.offset(),
        };
        let mut reader = BinlogReader::start(params, replica_server_id(instance), start, heartbeat)
            .await?
            .with_schema(catalog, objects.clone());
        if let Some(gtid) = at.gtid() {
            reader = reader.with_gtid_state(gtid);
        }
        if let Some(table) = watched {
            reader = reader.watching(table);
        }
        let (tx, received) = mpsc::channel(READ_AHEAD);
        let task = tokio::spawn(async move {
            forward(reader, &tx).await;
        });
        Ok(Self {
            received,
            reading: AbortOnDrop(task),
        })
    }

    /// [`Events::open`] from archived `pieces`, then from the start of the server's `oldest`
    /// file, with one decoder throughout.
    #[allow(clippy::too_many_arguments)]
    async fn open_archived(
        params: &ConnectParams,
        instance: &InstanceId,
        at: &Position,
        catalog: SchemaCatalog,
        objects: &ObjectSelection,
        watched: Option<ObjectName>,
        heartbeat: Duration,
        archive: &ArchiveAt,
        pieces: Vec<ferry_aws::archive::Piece>,
        oldest: BinlogFile,
    ) -> Result<Self, TaskError> {
        tracing::info!(instance = %instance, from = %at, to = %oldest, pieces = pieces.len(), "the source purged the checkpoint's binlog: reading the archive");
        let mut conn = connect(params).await?;
        let charsets = ferry_mysql::binlog::server_charsets(&mut conn).await?;
        let _ = conn.disconnect().await;
        let mariadb = match at.gtid() {
            Some(ferry_domain::gtid::GtidSet::MariaDb(s)) => Some(s.clone()),
            _ => None,
        };
        let mut decoder = EventDecoder::new(charsets, Some(at.file().clone()), mariadb)
            .with_catalog(catalog)
            .with_selection(objects.clone());
        if let Some(ferry_domain::gtid::GtidSet::Mysql(s)) = at.gtid() {
            decoder = decoder.with_mysql_gtid(s.clone());
        }
        if let Some(table) = watched {
            decoder = decoder.watching(table);
        }
        let (tx, received) = mpsc::channel(READ_AHEAD);
        let (params, archive, instance) = (params.clone(), archive.clone(), instance.clone());
        let (file, offset) = (at.file().clone(), at.offset());
        let task = tokio::spawn(async move {
            let mut replay = Replay::new(decoder, file, offset);
            for piece in &pieces {
                let bytes = match crate::archive::fetch(&archive, piece).await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx
                            .send((std::time::Instant::now(), Err(reader_error(e))))
                            .await;
                        return;
                    }
                };
                let mut events = Vec::new();
                if let Err(e) = replay.piece(&piece.file, piece.start, &bytes, &mut events) {
                    let _ = tx.send((std::time::Instant::now(), Err(e))).await;
                    return;
                }
                drop(bytes);
                for event in events {
                    if tx
                        .send((std::time::Instant::now(), Ok(Some(event))))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            tracing::info!(instance = %instance, file = %oldest, "the archive is read: going on from the source");
            let start = Start::File {
                file: oldest,
                offset: 4,
            };
            match BinlogReader::start(&params, replica_server_id(&instance), start, heartbeat).await
            {
                Ok(reader) => forward(reader.continuing(replay.into_decoder()), &tx).await,
                Err(e) => {
                    let _ = tx.send((std::time::Instant::now(), Err(e))).await;
                }
            }
        });
        Ok(Self {
            received,
            reading: AbortOnDrop(task),
        })
    }

    /// Stops reading (the replica connection closes): before another reader of the task
    /// connects with the same replica server id.
    pub(crate) fn stop(&mut self) {
        self.reading.0.abort();
    }

    /// The next event and when it was read; `None` when none came within `wait` (the source
    /// sends heartbeats, so a silent stream is worth a look at the desired state).
    pub(crate) async fn next(
        &mut self,
        wait: Duration,
    ) -> Result<Option<(ReadEvent, std::time::Instant)>, TaskError> {
        match tokio::time::timeout(wait, self.received.recv()).await {
            Err(_) => Ok(None),
            Ok(Some((at, Ok(Some(event))))) => Ok(Some((event, at))),
            Ok(Some((_, Err(e)))) => Err(e.into()),
            Ok(None | Some((_, Ok(None)))) => {
                Err(source_failed("the source closed the binlog stream"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_ids_are_stable_and_high() {
        let id = InstanceId::generate();
        assert_eq!(replica_server_id(&id), replica_server_id(&id));
        assert!(replica_server_id(&id) >= 0x4000_0000);
    }
}

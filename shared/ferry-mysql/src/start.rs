//! Where a chosen start point begins in the source's binlog (issue 21): a file and offset
//! checked against the files the server still holds, a GTID position or set resolved by asking
//! the server for the stream after it, a time found by reading the first event of each file and
//! then scanning the one it falls in.
//!
//! Every answer is a transaction boundary: the start of the first transaction (or standalone
//! statement) to deliver, so the capture loop starts the way it resumes from a checkpoint.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_domain::gtid::GtidSet;
use ferry_domain::position::{BinlogFile, Position};
use ferry_domain::schema::SchemaCatalog;
use ferry_domain::selection::ObjectSelection;
use ferry_domain::start::StartPoint;
use mysql_async::prelude::Queryable;

use crate::ConnectParams;
use crate::binlog::{BinlogReader, ReadEvent, ReaderError, SourceEvent, Start};

/// A replica server id for a task (`key` is its instance id): stable for the task, so a
/// takeover replaces the old connection, and unlikely to collide with real servers (high
/// range, bit 30 set).
pub fn replica_server_id(key: &str) -> u32 {
    0x4000_0000 | (fnv(key) & 0x3fff_ffff)
}

/// The replica server id of the task's start-point probes: never the task's own (bit 30
/// clear, bit 29 set), so a probe never replaces the task's running stream.
pub fn probe_server_id(key: &str) -> u32 {
    0x2000_0000 | (fnv(key) & 0x1fff_ffff)
}

fn fnv(key: &str) -> u32 {
    key.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The source's heartbeat period on a probe's stream: it sends one whenever it has nothing
/// newer, which is how a probe knows it reached the end of what is written.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a probe waits for the next event or heartbeat before giving up on the connection
/// (a dead one: a live source sends a heartbeat every [`HEARTBEAT`]).
const SILENCE: Duration = Duration::from_secs(30);

/// The server's binlog files, oldest first, with their sizes (`SHOW BINARY LOGS`).
pub async fn binlog_files(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<(BinlogFile, u64)>, ReaderError> {
    let rows: Vec<mysql_async::Row> = conn.query("SHOW BINARY LOGS").await?;
    rows.into_iter()
        .map(|r| {
            let name: Option<String> = r.get(0);
            let size: Option<u64> = r.get(1);
            let name = name.unwrap_or_default();
            let file = name.parse::<BinlogFile>().map_err(|e| {
                ReaderError::definite(
                    format!("SHOW BINARY LOGS listed {name:?}: {e}"),
                    "report this with the server version",
                )
            })?;
            Ok((file, size.unwrap_or_default()))
        })
        .collect()
}

/// The GTID state at `file:offset` of a MariaDB server's binlog (`BINLOG_GTID_POS`): what a
/// replica starting there has applied. `None` on MySQL (no such function: a MySQL position
/// names no GTID set) and on a server that has written no GTID yet.
pub async fn mariadb_gtid_at(
    conn: &mut mysql_async::Conn,
    file: &BinlogFile,
    offset: u64,
) -> Result<Option<GtidSet>, ReaderError> {
    /// `ER_SP_DOES_NOT_EXIST`: MySQL has no `BINLOG_GTID_POS`.
    const NO_SUCH_FUNCTION: u16 = 1305;
    let pos: Option<Option<String>> = match conn
        .exec_first("SELECT BINLOG_GTID_POS(?, ?)", (file.name(), offset))
        .await
    {
        Ok(p) => p,
        Err(mysql_async::Error::Server(e)) if e.code == NO_SUCH_FUNCTION => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    match pos.flatten().filter(|p| !p.trim().is_empty()) {
        None => Ok(None),
        Some(p) => p
            .parse::<ferry_domain::gtid::MariaDbGtidSet>()
            .map(|s| Some(GtidSet::MariaDb(s)))
            .map_err(|e| {
                ReaderError::definite(
                    format!("the source gave GTID position {p:?} for {file}:{offset}: {e}"),
                    "report this with the server version",
                )
            }),
    }
}

/// The position the server writes next (`SHOW MASTER STATUS`).
async fn end_position(conn: &mut mysql_async::Conn) -> Result<Position, ReaderError> {
    let row: Option<mysql_async::Row> = conn.query_first("SHOW MASTER STATUS").await?;
    let (file, offset) = row
        .and_then(|r| Some((r.get::<String, _>(0)?, r.get::<u64, _>(1)?)))
        .ok_or_else(|| {
            ReaderError::definite(
                "the source has no binlog (SHOW MASTER STATUS is empty)",
                "enable log_bin on the source",
            )
        })?;
    let file = file
        .parse::<BinlogFile>()
        .map_err(|e| ReaderError::definite(e.to_string(), "report this with the server version"))?;
    Ok(Position::new(file, offset, None))
}

/// Finds where `point` begins in the source's binlog, with `server_id` as the replica id of
/// the probes (not the task's own, so a probe never replaces a running stream). A point the
/// server no longer holds, has not written yet, or that is not an event boundary is a
/// definite error saying which points it does hold.
pub async fn resolve(
    params: &ConnectParams,
    server_id: u32,
    point: &StartPoint,
) -> Result<Position, ReaderError> {
    let mut conn = crate::connect(params)
        .await
        .map_err(|e| ReaderError::Connect {
            message: e.message,
            hint: e.hint,
        })?;
    let found = resolve_on(&mut conn, params, server_id, point).await;
    let _ = conn.disconnect().await;
    found
}

/// [`resolve`] with `conn`, a plain session on the source (the probes open replica streams of
/// their own).
async fn resolve_on(
    conn: &mut mysql_async::Conn,
    params: &ConnectParams,
    server_id: u32,
    point: &StartPoint,
) -> Result<Position, ReaderError> {
    let files = binlog_files(conn).await?;
    let end = end_position(conn).await?;
    let (oldest, newest) = match (files.first(), files.last()) {
        (Some(o), Some(n)) => (o.0.clone(), n.0.clone()),
        _ => {
            return Err(ReaderError::definite(
                "the source lists no binlog files",
                "enable log_bin on the source",
            ));
        }
    };
    match point {
        StartPoint::Position { file, offset } => {
            let Some((_, size)) = files.iter().find(|(f, _)| f == file) else {
                return Err(if *file < oldest {
                    ReaderError::definite(
                        format!(
                            "binlog {file} is no longer on the source: its oldest binlog is {oldest}"
                        ),
                        format!(
                            "start at {oldest}:4 or later (or at a time or GTID the source still holds), or leave the start point out to start from now"
                        ),
                    )
                } else {
                    ReaderError::definite(
                        format!(
                            "binlog {file} does not exist on the source (its newest is {newest})"
                        ),
                        format!(
                            "give a file the source lists (SHOW BINARY LOGS), {oldest} to {newest}"
                        ),
                    )
                });
            };
            if offset > size {
                return Err(ReaderError::definite(
                    format!("{file} is {size} bytes long: offset {offset} is past its end"),
                    "give the offset of an event in the file, as SHOW MASTER STATUS, SHOW BINLOG EVENTS or a checkpoint prints it",
                ));
            }
            probe_boundary(params, server_id, file, *offset).await?;
            let gtid = mariadb_gtid_at(conn, file, *offset).await?;
            Ok(Position::new(file.clone(), *offset, gtid))
        }
        StartPoint::Gtid(set) => gtid_start(params, server_id, set, &end).await,
        StartPoint::Time(time) => {
            if *time > Utc::now() {
                return Err(ReaderError::definite(
                    format!("start time {} is in the future", time.to_rfc3339()),
                    "give a time in the past, or leave the start point out to start from now",
                ));
            }
            let at = time_start(params, server_id, *time, &files, &end).await?;
            let gtid = mariadb_gtid_at(conn, at.file(), at.offset()).await?;
            Ok(Position::new(at.file().clone(), at.offset(), gtid))
        }
    }
}

/// Opens a scanning reader at `start`: no table carried, so rows are counted, never decoded.
async fn scanner(
    params: &ConnectParams,
    server_id: u32,
    start: Start,
) -> Result<BinlogReader, ReaderError> {
    let nothing = ObjectSelection {
        databases: Vec::new(),
        operations: Vec::new(),
    };
    Ok(BinlogReader::start(params, server_id, start, HEARTBEAT)
        .await?
        .with_schema(SchemaCatalog::new(), nothing))
}

/// The next event; `None` at the end of what the source has written (its heartbeat: it sends
/// one only when it has nothing newer). However slow the source, an event is never taken as
/// the end; only a connection silent for [`SILENCE`] is an error.
async fn next_event(reader: &mut BinlogReader) -> Result<Option<ReadEvent>, ReaderError> {
    match tokio::time::timeout(SILENCE, reader.next()).await {
        Err(_) => Err(ReaderError::Connect {
            message: format!(
                "the source sent nothing on a binlog stream, not even a heartbeat, for {}s",
                SILENCE.as_secs()
            ),
            hint: "check that the source is reachable and not overloaded, then start again".into(),
        }),
        Ok(Ok(Some(e))) if matches!(e.event, SourceEvent::Heartbeat) => Ok(None),
        Ok(Ok(Some(e))) => Ok(Some(e)),
        Ok(Ok(None)) => Err(ReaderError::Io(
            "the source closed the binlog stream".into(),
        )),
        Ok(Err(e)) => Err(e),
    }
}

/// Refuses an offset that is not where a transaction (or standalone statement) starts: the
/// server reads garbage there, or the first event is in the middle of a transaction.
async fn probe_boundary(
    params: &ConnectParams,
    server_id: u32,
    file: &BinlogFile,
    offset: u64,
) -> Result<(), ReaderError> {
    let not_boundary = |why: String| {
        ReaderError::definite(
            format!("{file}:{offset} is not the start of a transaction: {why}"),
            "give a position a transaction starts at, as SHOW MASTER STATUS or a checkpoint prints it (or start at a time, which Ferry finds the boundary for)",
        )
    };
    let start = Start::File {
        file: file.clone(),
        offset,
    };
    let mut reader = scanner(params, server_id, start)
        .await
        .map_err(|e| match e {
            ReaderError::Server { code, message } => {
                not_boundary(format!("{message} (error {code})"))
            }
            other => other,
        })?;
    let first = next_event(&mut reader).await;
    let _ = reader.close().await;
    match first {
        Ok(None) => Ok(()),
        Ok(Some(e)) => match e.event {
            SourceEvent::Begin { .. } | SourceEvent::Ddl { .. } => Ok(()),
            SourceEvent::Rows(_) => Err(not_boundary("a row change comes first".into())),
            SourceEvent::Commit { .. } => Err(not_boundary("a commit comes first".into())),
            SourceEvent::Heartbeat => Ok(()),
        },
        // The connection was made: what fails now is reading at that offset.
        Err(ReaderError::Server { code, message }) => {
            Err(not_boundary(format!("{message} (error {code})")))
        }
        Err(ReaderError::Definite { message, .. } | ReaderError::Io(message)) => {
            Err(not_boundary(message))
        }
        Err(e) => Err(e),
    }
}

/// The start of the first transaction a GTID position or set does not contain, asked of the
/// server (which refuses a position it never had or no longer holds); `end` when there is
/// none yet.
async fn gtid_start(
    params: &ConnectParams,
    server_id: u32,
    set: &GtidSet,
    end: &Position,
) -> Result<Position, ReaderError> {
    let start = match set {
        GtidSet::MariaDb(s) => Start::MariaDbGtid(s.clone()),
        GtidSet::Mysql(s) => Start::MysqlGtid(s.clone()),
    };
    let refused = |message: String| {
        ReaderError::definite(
            format!("the source cannot stream from GTID {set}: {message}"),
            "give a GTID the source's binlogs still hold (SELECT @@gtid_binlog_pos on MariaDB, @@gtid_executed and @@gtid_purged on MySQL), or a position or time",
        )
    };
    let mut reader = scanner(params, server_id, start)
        .await
        .map_err(|e| match e {
            ReaderError::Server { code, message } => refused(format!("{message} (error {code})")),
            other => other,
        })?;
    let first = next_event(&mut reader).await;
    let _ = reader.close().await;
    match first {
        Ok(Some(e)) => Ok(Position::new(
            e.position.file().clone(),
            e.group_start,
            Some(set.clone()),
        )),
        Ok(None) => Ok(Position::new(
            end.file().clone(),
            end.offset(),
            Some(set.clone()),
        )),
        Err(ReaderError::Server { code, message }) => {
            Err(refused(format!("{message} (error {code})")))
        }
        Err(e) => Err(e),
    }
}

/// The start of the first transaction that committed at or after `time`: the newest file whose
/// first event is not after `time` is scanned from its start (and on into later files), each
/// transaction's commit time compared; `end` when none committed since.
async fn time_start(
    params: &ConnectParams,
    server_id: u32,
    time: DateTime<Utc>,
    files: &[(BinlogFile, u64)],
    end: &Position,
) -> Result<Position, ReaderError> {
    let mut from = None;
    for (file, _) in files.iter().rev() {
        match first_event_time(params, server_id, file).await? {
            Some(first) if first <= time => {
                from = Some(file.clone());
                break;
            }
            _ => {}
        }
    }
    let Some(from) = from else {
        let (oldest, _) = &files[0];
        let first = first_event_time(params, server_id, oldest).await?;
        return Err(ReaderError::definite(
            format!(
                "start time {} is older than the source's oldest binlog ({oldest}, from {})",
                time.to_rfc3339(),
                first.map_or("an unknown time".into(), |t| t.to_rfc3339())
            ),
            "give a later time (the source purged what came before), or restore the changes before it another way",
        ));
    };
    let mut reader = scanner(
        params,
        server_id,
        Start::File {
            file: from.clone(),
            offset: 4,
        },
    )
    .await?;
    let mut boundary = Position::new(from, 4, None);
    let found = loop {
        if boundary.cmp_file_offset(end).is_ge() {
            break end.clone();
        }
        let Some(e) = next_event(&mut reader).await? else {
            break end.clone();
        };
        let ends_group = match &e.event {
            SourceEvent::Commit { .. } => true,
            // A statement outside a transaction (DDL) is a group of its own.
            SourceEvent::Ddl { .. } => true,
            _ => false,
        };
        if !ends_group {
            continue;
        }
        if e.timestamp >= time {
            break Position::new(e.position.file().clone(), e.group_start, None);
        }
        boundary = Position::new(e.position.file().clone(), e.position.offset(), None);
    };
    let _ = reader.close().await;
    Ok(found)
}

/// The time of the first transaction in `file` (`None` when the file holds none: the reader
/// went on into the next file, or reached the end).
async fn first_event_time(
    params: &ConnectParams,
    server_id: u32,
    file: &BinlogFile,
) -> Result<Option<DateTime<Utc>>, ReaderError> {
    let start = Start::File {
        file: file.clone(),
        offset: 4,
    };
    let mut reader = scanner(params, server_id, start).await?;
    let first = next_event(&mut reader).await;
    let _ = reader.close().await;
    Ok(first?
        .filter(|e| e.position.file() == file)
        .map(|e| e.timestamp))
}

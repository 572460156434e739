//! The binlog reader: a replication connection that yields Ferry's source events with exact
//! positions.
//!
//! # Positions
//!
//! Every event comes with the position just after it: the current file (from ROTATE events) and
//! the event's `log_pos`, plus, on MariaDB, the GTID position *including* the event's
//! transaction once that transaction has committed. A checkpoint taken at a `Commit` therefore
//! resumes right after the transaction, by file/offset or by GTID.
//!
//! # MariaDB
//!
//! Before requesting the stream the reader sets `@mariadb_slave_capability=4`, so MariaDB sends
//! GTID events instead of `BEGIN` queries. `mysql_common` does not parse MariaDB's GTID (0xa2)
//! and GTID_LIST (0xa3) events; this module reads them from the raw event bytes. Resuming by GTID
//! sets `@slave_connect_state` and asks for file "" at offset 4.
//!
//! # Errors
//!
//! A checksum that does not match, an event type that could carry row data Ferry cannot read
//! (MariaDB's compressed events), or a rows event without its table map are definite errors with
//! a hint; nothing is skipped silently. Event types that carry nothing for row-based capture
//! (statement-based context, ANNOTATE_ROWS, BINLOG_CHECKPOINT, …) are skipped.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_domain::change::{ObjectName, Operation, RowChange};
use ferry_domain::gtid::{GtidSet, MariaDbGtid, MariaDbGtidSet, MysqlGtidSet, Sid};
use ferry_domain::position::{BinlogFile, Position};
use futures::StreamExt;
use mysql_async::binlog::BinlogChecksumAlg;
use mysql_async::binlog::events::{Event, EventData, RowsEventData, TableMapEvent};
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest};
use mysql_common::packets::{GnoInterval, Sid as DumpSid, Tag};

use crate::connect::{ConnectParams, connect_replica};
use crate::ddl::{self, Applied};
use crate::decode::{Charsets, Known, TablePlan};
use ferry_domain::schema::{SchemaCatalog, SchemaEntry};
use ferry_domain::selection::{ObjectSelection, ParsedFilters, PreparedTable};

/// Where to start reading.
#[derive(Debug, Clone)]
pub enum Start {
    /// A binlog file and offset (4 is the start of a file).
    File { file: BinlogFile, offset: u64 },
    /// A MariaDB GTID position: the first transaction after it.
    MariaDbGtid(MariaDbGtidSet),
    /// A MySQL GTID set (tags included): every transaction not in it
    /// (`COM_BINLOG_DUMP_GTID`). Verified against MySQL's wire format in unit tests only: no
    /// MySQL server can run on the development machines.
    MysqlGtid(MysqlGtidSet),
}

/// The GTID set of a `COM_BINLOG_DUMP_GTID` request (MySQL's intervals end exclusively).
fn dump_sids(set: &MysqlGtidSet) -> Result<Vec<DumpSid<'static>>, ReaderError> {
    set.iter()
        .map(|(sid, intervals)| {
            let mut s = DumpSid::new(*sid.uuid.as_bytes()).with_intervals(
                intervals
                    .iter()
                    .map(|iv| GnoInterval::new(iv.start, iv.end.saturating_add(1)))
                    .collect(),
            );
            if let Some(tag) = &sid.tag {
                let tag = Tag::new(tag.clone()).map_err(|e| {
                    ReaderError::definite(
                        format!("GTID tag `{tag}` is not valid: {e}"),
                        "give a GTID set as the source prints it (SELECT @@gtid_executed)",
                    )
                })?;
                s = s.with_tag(tag);
            }
            Ok(s)
        })
        .collect()
}

/// What the reader found.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceEvent {
    /// A transaction begins (its GTID on MariaDB).
    Begin { gtid: Option<String> },
    /// Row changes of one rows event.
    Rows(RowsEvent),
    /// A statement that is not a transaction boundary (DDL), with its default database, what
    /// it changed in the schema history (to persist at its position), and the objects it is
    /// about (only a statement about selected objects may be delivered: accounts and grants
    /// are statements too).
    Ddl {
        database: Option<String>,
        statement: String,
        schema: Vec<SchemaEntry>,
        subject: crate::statement::Subject,
    },
    /// The transaction committed.
    Commit { xid: Option<u64> },
    /// The server is alive and has nothing newer.
    Heartbeat,
}

/// The rows of one rows event: one table (one table map) and one operation.
///
/// The reader decides once per event whether the task carries it (the selection prepared for
/// the table map, see `ObjectSelection::prepare`): rows of an event it does not carry are
/// counted but not decoded into values, unless the table is watched (the heartbeat table).
#[derive(Debug, Clone, PartialEq)]
pub struct RowsEvent {
    /// The decoded changes: every row of a carried or watched table's event, none otherwise.
    pub changes: Vec<RowChange>,
    /// How many rows the event holds, decoded or not: each counts toward its transaction's
    /// event indexes, so a record's index does not depend on the selection.
    pub count: u32,
    /// What the task carries of this event (operations and columns); `None` when it carries
    /// nothing of it.
    pub carried: Option<Arc<PreparedTable>>,
}

impl RowsEvent {
    pub fn iter(&self) -> std::slice::Iter<'_, RowChange> {
        self.changes.iter()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl IntoIterator for RowsEvent {
    type Item = RowChange;
    type IntoIter = std::vec::IntoIter<RowChange>;

    fn into_iter(self) -> Self::IntoIter {
        self.changes.into_iter()
    }
}

/// An event and where the stream is after it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadEvent {
    pub position: Position,
    /// Where the event starts in the position's file (for an event inside a compressed
    /// transaction, where that transaction's event starts).
    pub event_offset: u64,
    /// Where the event's transaction (or standalone statement) starts in the position's
    /// file: its GTID event, else its BEGIN or statement (a start point found by scanning
    /// begins there).
    pub group_start: u64,
    pub server_id: u32,
    pub timestamp: DateTime<Utc>,
    pub event: SourceEvent,
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("{message}")]
    Connect { message: String, hint: String },
    /// The server refused the stream (e.g. error 1236: the binlog was purged).
    #[error("the server ended the binlog stream: {message} (error {code})")]
    Server { code: u16, message: String },
    #[error("the connection failed: {0}")]
    Io(String),
    #[error("{message}")]
    Definite { message: String, hint: String },
}

impl ReaderError {
    /// Whether retrying cannot help.
    pub fn is_definite(&self) -> bool {
        match self {
            Self::Definite { .. } => true,
            Self::Server { code, .. } => {
                matches!(
                    crate::ServerErrorKind::of(*code),
                    crate::ServerErrorKind::BinlogUnavailable
                        | crate::ServerErrorKind::AccessDenied
                )
            }
            Self::Connect { .. } | Self::Io(_) => false,
        }
    }

    pub(crate) fn definite(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Definite {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl From<mysql_async::Error> for ReaderError {
    fn from(e: mysql_async::Error) -> Self {
        match e {
            mysql_async::Error::Server(s) => Self::Server {
                code: s.code,
                message: s.message,
            },
            other => Self::Io(other.to_string()),
        }
    }
}

const MARIADB_ANNOTATE_ROWS: u8 = 0xa0;
const MARIADB_BINLOG_CHECKPOINT: u8 = 0xa1;
const MARIADB_GTID: u8 = 0xa2;
const MARIADB_GTID_LIST: u8 = 0xa3;
const MARIADB_START_ENCRYPTION: u8 = 0xa4;
/// MariaDB's compressed QUERY and rows events (`log_bin_compress=ON`): 0xa5..=0xab.
const MARIADB_COMPRESSED: std::ops::RangeInclusive<u8> = 0xa5..=0xab;
/// Events of MySQL's that carry nothing row-based capture needs: never parsed (parsing is
/// where a damaged or hostile event costs most: `mysql_common` allocates the counts a
/// PREVIOUS_GTIDS event claims before reading them). START_V3, STOP, INTVAR, RAND, USER_VAR,
/// FORMAT_DESCRIPTION (the stream reader keeps it), IGNORABLE, ROWS_QUERY, PREVIOUS_GTIDS,
/// TRANSACTION_CONTEXT, VIEW_CHANGE.
const SKIPPED: [u8; 11] = [
    0x01, 0x03, 0x05, 0x0d, 0x0e, 0x0f, 0x1c, 0x1d, 0x23, 0x24, 0x25,
];
/// MySQL's GTID and ANONYMOUS_GTID events: a transaction starts.
const MYSQL_GTID: u8 = 0x21;
const MYSQL_ANONYMOUS_GTID: u8 = 0x22;
/// MySQL's INCIDENT event: the source lost events it could not log.
const INCIDENT: u8 = 0x1a;
/// GTID flag: a standalone statement (DDL), no BEGIN/COMMIT around it.
const FL_STANDALONE: u8 = 1;

/// A replication connection.
pub struct BinlogReader {
    stream: BinlogStream,
    decoder: EventDecoder,
}

/// Turns binlog events into [`ReadEvent`]s, tracking the file, the GTID position and the table
/// maps; shared by the replication stream and the binlog file reader.
#[derive(Debug)]
pub struct EventDecoder {
    charsets: Charsets,
    tables: HashMap<u64, Table>,
    file: Option<BinlogFile>,
    gtid: Option<MariaDbGtidSet>,
    mysql_gtid: MysqlGtidSet,
    /// The GTID of the open transaction, applied to the position at its commit.
    pending: Option<MariaDbGtid>,
    pending_mysql: Option<(Sid, u64)>,
    standalone: bool,
    /// The position of the last event that had one.
    last_log_pos: u32,
    /// Where that event starts.
    last_start: u32,
    /// Where the current transaction (or standalone statement) starts: its GTID event, else
    /// its BEGIN or statement; `in_group` while one is open.
    group_start: u32,
    in_group: bool,
    /// Refuse partial row images (live capture); a file reader shows them as they are.
    require_full_images: bool,
    /// The schema history, kept current by the DDL statements of the stream.
    catalog: SchemaCatalog,
    /// Whether `catalog` is a real history (live capture from a snapshot) or only what the
    /// statements seen so far tell (inspecting a file).
    tracked: bool,
    /// The tables the task carries: only theirs must decode with real column names (others
    /// are decoded only to count their rows).
    selection: Option<ObjectSelection>,
    /// The selection's row filters, parsed once.
    filters: ParsedFilters,
    /// A table decoded though not carried (the heartbeat writer's: its rows set the delay).
    watched: Option<ObjectName>,
    row_parser: RowParser,
}

/// How rows events are parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RowParser {
    /// Ferry's reader with per-table-map prepared plans (`TablePlan::read_image`); the default.
    #[default]
    Prepared,
    /// `mysql_common`'s row parser, which rebuilds the table map's column descriptions for
    /// every row: the reference the prepared reader is checked against (tests, the fuzzer).
    /// Partial JSON updates are always read this way.
    Reference,
}

/// A table map as the decoder keeps it: how to decode its rows, and what the task wants of them.
#[derive(Debug)]
struct Table {
    plan: Arc<TablePlan>,
    /// What the task carries of the table (all of it without a selection).
    carried: Option<Arc<PreparedTable>>,
    watched: bool,
}

/// The operation of a rows event.
fn operation_of(rows: &RowsEventData<'_>) -> Operation {
    match rows {
        RowsEventData::WriteRowsEventV1(_) | RowsEventData::WriteRowsEvent(_) => Operation::Insert,
        RowsEventData::DeleteRowsEventV1(_) | RowsEventData::DeleteRowsEvent(_) => {
            Operation::Delete
        }
        _ => Operation::Update,
    }
}

impl std::fmt::Debug for BinlogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinlogReader")
            .field("file", &self.decoder.file)
            .field("gtid", &self.decoder.gtid)
            .finish()
    }
}

/// A replication connection ready to ask for a stream: the server's character sets, MariaDB's
/// GTID events asked for, a heartbeat every `heartbeat` when the source is idle. Returns the
/// connection, the character sets and whether the server is MariaDB.
/// How long the source waits for a replication reader to take a write (`net_write_timeout` of
/// the dump's session): an hour, far beyond any stall the loop survives (a lease, a producer
/// timeout), so only a reader that is gone is cut off by the server.
const DUMP_WRITE_TIMEOUT_SECS: u32 = 3600;

pub(crate) async fn prepare_dump(
    params: &ConnectParams,
    heartbeat: std::time::Duration,
) -> Result<(mysql_async::Conn, Charsets, bool), ReaderError> {
    let mut conn = connect_replica(params)
        .await
        .map_err(|e| ReaderError::Connect {
            message: e.message,
            hint: e.hint,
        })?;
    let charsets = server_charsets(&mut conn).await?;
    let version: Option<Option<String>> = conn.query_first("SELECT VERSION()").await?;
    let version = version.flatten().unwrap_or_default();
    let is_mariadb = version.to_ascii_lowercase().contains("mariadb");
    if is_mariadb {
        conn.query_drop("SET @mariadb_slave_capability = 4").await?;
    }
    let nanos = heartbeat.as_nanos().max(1_000_000);
    conn.query_drop(format!("SET @master_heartbeat_period = {nanos}"))
        .await?;
    // The dump thread gives up on a write the reader has not taken within the session's
    // `net_write_timeout` (60 s by default) and closes the connection. A reader that stops
    // reading because its destination is slow (its read-ahead full) would then be cut off
    // every minute and start again from its checkpoint — with a destination slow enough that no
    // checkpoint passes in between, for ever (seen under CI load: "Connection reset by peer"
    // every ~2 min at the same position). A replica's I/O thread never stalls like this; a
    // reader may, so its session waits as long as a loop may stall.
    conn.query_drop(format!(
        "SET SESSION net_write_timeout = {DUMP_WRITE_TIMEOUT_SECS}"
    ))
    .await?;
    Ok((conn, charsets, is_mariadb))
}

/// The server's character sets by collation id, for decoding text columns.
pub async fn server_charsets(conn: &mut mysql_async::Conn) -> Result<Charsets, ReaderError> {
    // MariaDB lists some collations without an id or charset: read them as optional (a
    // failed row conversion in mysql_async panics).
    let collations: Vec<(Option<u64>, Option<String>)> = conn
        .query("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")
        .await?;
    Ok(Charsets::from_collations(
        collations
            .into_iter()
            .filter_map(|(id, name)| Some((u16::try_from(id?).ok()?, name?))),
    ))
}

impl BinlogReader {
    /// Connects as a replica with `server_id` (unique among the source's replicas) and asks for
    /// the stream from `start`, with a heartbeat every `heartbeat` when the source is idle.
    pub async fn start(
        params: &ConnectParams,
        server_id: u32,
        start: Start,
        heartbeat: std::time::Duration,
    ) -> Result<Self, ReaderError> {
        let (mut conn, charsets, is_mariadb) = prepare_dump(params, heartbeat).await?;
        let (file, offset, gtid) = match start {
            Start::File { file, offset } => (Some(file), offset, None),
            Start::MariaDbGtid(set) => {
                if !is_mariadb {
                    return Err(ReaderError::definite(
                        "a MariaDB GTID position was given for a MySQL server",
                        "give a file:offset position, or a MySQL GTID set",
                    ));
                }
                conn.exec_drop("SET @slave_connect_state = ?", (set.to_string(),))
                    .await?;
                (None, 4, Some(set))
            }
            Start::MysqlGtid(set) => {
                if is_mariadb {
                    return Err(ReaderError::definite(
                        "a MySQL GTID set was given for a MariaDB server",
                        "give a file:offset position, or a MariaDB GTID position (domain-server-sequence)",
                    ));
                }
                let sids = dump_sids(&set)?;
                let request = BinlogStreamRequest::new(server_id)
                    .with_gtid()
                    .with_gtid_set(sids);
                let stream = conn.get_binlog_stream(request).await?;
                return Ok(Self {
                    stream,
                    decoder: EventDecoder::new(charsets, None, None).with_mysql_gtid(set),
                });
            }
        };
        let name = file
            .as_ref()
            .map(|f| f.name().as_bytes().to_vec())
            .unwrap_or_default();
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(&name)
            .with_pos(offset);
        let stream = conn.get_binlog_stream(request).await?;
        Ok(Self {
            stream,
            decoder: EventDecoder::new(charsets, file, gtid),
        })
    }

    /// Starts the stream's GTID state at `set` (a checkpoint's, where the stream resumes by file
    /// and offset in the middle of a file: only a file's start names the state), so every
    /// position after carries the whole set, not only the domains seen since.
    #[must_use]
    pub fn with_gtid_state(mut self, set: &GtidSet) -> Self {
        match set {
            GtidSet::MariaDb(s) => {
                if self.decoder.gtid.is_none() {
                    self.decoder.gtid = Some(s.clone());
                }
            }
            GtidSet::Mysql(s) => {
                if self.decoder.mysql_gtid.is_empty() {
                    self.decoder.mysql_gtid = s.clone();
                }
            }
        }
        self
    }

    /// Decodes with the schema history `catalog` (see [`EventDecoder::with_catalog`]); only
    /// the tables of `selection` need real column names.
    #[must_use]
    pub fn with_schema(mut self, catalog: SchemaCatalog, selection: ObjectSelection) -> Self {
        self.decoder = self.decoder.with_catalog(catalog).with_selection(selection);
        self
    }

    /// Parses rows events with `parser` (see [`RowParser`]).
    #[must_use]
    pub fn with_row_parser(mut self, parser: RowParser) -> Self {
        self.decoder = self.decoder.with_row_parser(parser);
        self
    }

    /// Decodes the rows of `table` too (see [`EventDecoder::watching`]).
    #[must_use]
    pub fn watching(mut self, table: ObjectName) -> Self {
        self.decoder = self.decoder.watching(table);
        self
    }

    /// The next event of interest, `None` when the server closed the stream.
    ///
    /// An event the parser cannot read (a panic inside `mysql_common`, which some damaged
    /// events cause) ends the stream with a definite error naming the position, instead of
    /// taking the worker down.
    pub async fn next(&mut self) -> Result<Option<ReadEvent>, ReaderError> {
        use futures::FutureExt;
        use std::panic::AssertUnwindSafe;
        loop {
            let next = AssertUnwindSafe(self.stream.next())
                .catch_unwind()
                .await
                .map_err(|panic| {
                    ReaderError::definite(
                        format!(
                            "the binlog event after {} could not be parsed ({})",
                            self.decoder.last_position(),
                            panic_text(&*panic)
                        ),
                        "the source sent an event Ferry cannot read; report it with the server version and the binlog file",
                    )
                })?;
            let Some(event) = next else {
                return Ok(None);
            };
            let event = event?;
            let stream = &self.stream;
            let log_pos = event.header().log_pos();
            let decoder = &mut self.decoder;
            if let Some(read) =
                guarded(log_pos, || decoder.handle(&event, |id| stream.get_tme(id)))??
            {
                return Ok(Some(read));
            }
        }
    }

    /// Closes the replication connection.
    pub async fn close(self) -> Result<(), ReaderError> {
        self.stream.close().await.map_err(ReaderError::from)
    }

    /// Goes on decoding with `decoder` (one that read the archive up to where this stream
    /// starts): its schema history, GTID state and table maps carry over; the file is this
    /// stream's.
    #[must_use]
    pub fn continuing(mut self, mut decoder: EventDecoder) -> Self {
        decoder.file = self.decoder.file.take();
        self.decoder = decoder;
        self
    }
}

impl EventDecoder {
    /// A decoder starting in `file` (when known) at GTID position `gtid`.
    pub fn new(charsets: Charsets, file: Option<BinlogFile>, gtid: Option<MariaDbGtidSet>) -> Self {
        Self {
            charsets,
            tables: HashMap::new(),
            file,
            gtid,
            mysql_gtid: MysqlGtidSet::new(),
            pending: None,
            pending_mysql: None,
            standalone: false,
            last_log_pos: 0,
            last_start: 0,
            group_start: 0,
            in_group: false,
            require_full_images: true,
            catalog: SchemaCatalog::new(),
            tracked: false,
            selection: None,
            filters: ParsedFilters::new(),
            watched: None,
            row_parser: RowParser::Prepared,
        }
    }

    /// Starts from MySQL GTID set `set` (positions carry it, plus each commit after it).
    #[must_use]
    pub fn with_mysql_gtid(mut self, set: MysqlGtidSet) -> Self {
        self.mysql_gtid = set;
        self
    }

    /// Decodes only the rows `selection` carries (with real column names); other rows are
    /// counted, not decoded.
    #[must_use]
    pub fn with_selection(mut self, selection: ObjectSelection) -> Self {
        self.selection = Some(selection);
        self
    }

    /// Decodes the rows of `table` too, though the selection does not carry them.
    #[must_use]
    pub fn watching(mut self, table: ObjectName) -> Self {
        self.watched = Some(table);
        self
    }

    /// Parses rows events with `parser`.
    #[must_use]
    pub fn with_row_parser(mut self, parser: RowParser) -> Self {
        self.row_parser = parser;
        self
    }

    /// Decodes with the schema history `catalog` (the catalog at the start position): tables
    /// whose table maps name no columns are decoded with the history's definition, or not at
    /// all.
    #[must_use]
    pub fn with_catalog(mut self, catalog: SchemaCatalog) -> Self {
        self.catalog = catalog;
        self.tracked = true;
        self
    }

    /// Goes on in `file` (a replay of archived pieces crossing into the next file).
    pub(crate) fn set_file(&mut self, file: BinlogFile) {
        self.file = Some(file);
    }

    /// The schema history as it stands after the events handled so far.
    pub fn catalog(&self) -> &SchemaCatalog {
        &self.catalog
    }

    /// Where the stream is, for messages: the file and offset of the last event handled.
    pub fn last_position(&self) -> String {
        match &self.file {
            Some(f) => format!("{}:{}", f.name(), self.last_log_pos),
            None => "the start of the stream".into(),
        }
    }

    fn position(&self, log_pos: u32) -> Result<Position, ReaderError> {
        let file = self.file.clone().ok_or_else(|| {
            ReaderError::definite(
                "an event arrived before the stream named its binlog file",
                "report this as a bug",
            )
        })?;
        let gtid = match &self.gtid {
            Some(g) => Some(GtidSet::MariaDb(g.clone())),
            None if !self.mysql_gtid.is_empty() => Some(GtidSet::Mysql(self.mysql_gtid.clone())),
            None => None,
        };
        Ok(Position::new(file, u64::from(log_pos), gtid))
    }

    /// Handles one event; `tme` looks up the table map of a table id.
    pub fn handle<'t>(
        &mut self,
        event: &Event,
        tme: impl Fn(u64) -> Option<&'t TableMapEvent<'static>>,
    ) -> Result<Option<ReadEvent>, ReaderError> {
        let header = event.header();
        let raw_type = header.event_type_raw();
        // Events inside a compressed transaction payload have no position (nor checksum) of
        // their own: they take the payload's.
        let log_pos = match header.log_pos() {
            0 => self.last_log_pos,
            p => {
                self.last_log_pos = p;
                self.last_start = p.saturating_sub(header.event_size());
                verify_checksum(event)?;
                p
            }
        };
        if matches!(raw_type, MARIADB_GTID | MYSQL_GTID | MYSQL_ANONYMOUS_GTID) {
            self.group_start = self.last_start;
            self.in_group = true;
        }
        let made = |this: &Self, e: SourceEvent| -> Result<Option<ReadEvent>, ReaderError> {
            Ok(Some(ReadEvent {
                position: this.position(log_pos)?,
                event_offset: u64::from(this.last_start),
                group_start: u64::from(this.group_start),
                server_id: header.server_id(),
                timestamp: DateTime::from_timestamp(i64::from(header.timestamp()), 0)
                    .unwrap_or_default(),
                event: e,
            }))
        };
        match raw_type {
            MARIADB_GTID => {
                let (gtid, flags) = parse_mariadb_gtid(event.data(), header.server_id())?;
                self.pending = Some(gtid);
                self.standalone = flags & FL_STANDALONE != 0;
                if self.standalone {
                    return Ok(None);
                }
                return made(
                    self,
                    SourceEvent::Begin {
                        gtid: Some(gtid.to_string()),
                    },
                );
            }
            MARIADB_GTID_LIST => {
                let list = parse_mariadb_gtid_list(event.data())?;
                if self.gtid.is_none() {
                    self.gtid = Some(list);
                }
                return Ok(None);
            }
            MARIADB_ANNOTATE_ROWS | MARIADB_BINLOG_CHECKPOINT | MARIADB_START_ENCRYPTION => {
                return Ok(None);
            }
            t if SKIPPED.contains(&t) => return Ok(None),
            INCIDENT => {
                return Err(ReaderError::definite(
                    format!(
                        "the source logged an incident at offset {log_pos}: changes around it may be missing from its binlog"
                    ),
                    "check the source's error log; then reset the task to start from the current position (and re-synchronize what the incident lost), as a replica would have to",
                ));
            }
            t if MARIADB_COMPRESSED.contains(&t) => {
                return Err(ReaderError::definite(
                    format!(
                        "binlog event type {t:#04x} is a MariaDB compressed event, which Ferry cannot read"
                    ),
                    "SET GLOBAL log_bin_compress = OFF on the source (and in its configuration), then reset or restart the task",
                ));
            }
            _ => {}
        }
        let data = guarded(log_pos, || event.read_data())?.map_err(|e| {
            ReaderError::definite(
                format!("binlog event type {raw_type} at {log_pos} does not parse: {e}"),
                "report this with the binlog file",
            )
        })?;
        let Some(data) = data else {
            return Err(ReaderError::definite(
                format!("unknown binlog event type {raw_type} at offset {log_pos}"),
                "this server writes an event Ferry does not know; report it with the server version",
            ));
        };
        match data {
            EventData::RotateEvent(r) => {
                // The first, fake ROTATE comes before the format description, so its checksum
                // is still on the name (bytes, not text: cut them before decoding).
                let raw = r.name_raw();
                let parses = |b: &[u8]| {
                    std::str::from_utf8(b)
                        .ok()
                        .and_then(|n| n.parse::<BinlogFile>().ok())
                };
                let raw = if header.log_pos() == 0 && raw.len() > 4 && parses(raw).is_none() {
                    &raw[..raw.len() - 4]
                } else {
                    raw
                };
                let name = String::from_utf8_lossy(raw).into_owned();
                let file = name
                    .parse::<BinlogFile>()
                    .map_err(|e| ReaderError::definite(e.to_string(), "report this as a bug"))?;
                self.file = Some(file);
                Ok(None)
            }
            EventData::TableMapEvent(tme) => {
                let name = ObjectName {
                    database: tme.database_name().into_owned(),
                    table: tme.table_name().into_owned(),
                };
                let def = self.catalog.get(&name);
                let selected = self
                    .selection
                    .as_ref()
                    .is_none_or(|s| s.table(&name.database, &name.table).is_some());
                let watched = self.watched.as_ref() == Some(&name);
                let known = if self.tracked && selected {
                    Known::History {
                        def,
                        stale: self.catalog.stale(),
                    }
                } else {
                    Known::Lenient(def)
                };
                let plan = TablePlan::from_table_map(&tme, known).map_err(|e| {
                    ReaderError::definite(
                        e.to_string(),
                        "SET GLOBAL binlog_row_metadata = FULL on the source (and in its configuration) so the binlog names every column, then restart the task",
                    )
                })?;
                let carried = match &self.selection {
                    None => Some(Arc::new(PreparedTable::everything())),
                    Some(s) => s
                        .prepare(plan.schema(), &mut self.filters)
                        .map_err(|e| {
                            ReaderError::definite(
                                e,
                                "fix the table's row filter (PUT …/task/objects) or reset the task",
                            )
                        })?
                        .map(Arc::new),
                };
                self.tables.insert(
                    tme.table_id(),
                    Table {
                        plan: Arc::new(plan),
                        carried,
                        watched,
                    },
                );
                Ok(None)
            }
            EventData::RowsEvent(rows) => {
                let table_id = rows.table_id();
                let table = self.tables.get(&table_id).ok_or_else(|| {
                    ReaderError::definite(
                        format!("a rows event for table id {table_id} without its table map"),
                        "restart the task from its last checkpoint",
                    )
                })?;
                let plan = Arc::clone(&table.plan);
                let carried = table
                    .carried
                    .clone()
                    .filter(|c| c.carries(operation_of(&rows)));
                let decode = carried.is_some() || table.watched;
                let tme = tme(table_id).ok_or_else(|| {
                    ReaderError::definite(
                        format!("table map {table_id} is gone"),
                        "restart the task from its last checkpoint",
                    )
                })?;
                let (changes, count) = guarded(log_pos, || {
                    decode_rows(
                        &rows,
                        tme,
                        &plan,
                        &self.charsets,
                        self.require_full_images,
                        decode,
                        self.row_parser,
                    )
                })??;
                made(
                    self,
                    SourceEvent::Rows(RowsEvent {
                        changes,
                        count,
                        carried,
                    }),
                )
            }
            EventData::QueryEvent(q) => {
                let sql = q.query();
                let trimmed = sql.trim();
                if trimmed.eq_ignore_ascii_case("BEGIN") {
                    self.open_group();
                    let gtid = self
                        .pending_mysql
                        .as_ref()
                        .map(|(sid, gno)| match &sid.tag {
                            Some(tag) => format!("{}:{tag}:{gno}", sid.uuid),
                            None => format!("{}:{gno}", sid.uuid),
                        });
                    return made(self, SourceEvent::Begin { gtid });
                }
                // ROLLBACK ends a transaction that changed non-transactional tables: their
                // changes stay, so it is a boundary like COMMIT.
                if trimmed.eq_ignore_ascii_case("COMMIT")
                    || trimmed.eq_ignore_ascii_case("ROLLBACK")
                {
                    self.commit();
                    return made(self, SourceEvent::Commit { xid: None });
                }
                if is_dml(trimmed) {
                    return Err(ReaderError::definite(
                        format!(
                            "a statement-based change at offset {log_pos}: the source's binlog_format is no longer ROW"
                        ),
                        "SET GLOBAL binlog_format = 'ROW' on the source (and in its configuration), then reset the task: statement-based changes cannot be captured row by row",
                    ));
                }
                let database = q.schema().into_owned();
                let database = (!database.is_empty()).then_some(database);
                let statement = sql.into_owned();
                let applied =
                    ddl::apply_statement(&mut self.catalog, database.as_deref(), &statement);
                let Applied::Ddl { entries: schema } = applied else {
                    return Ok(None);
                };
                self.open_group();
                if self.standalone {
                    self.commit();
                }
                // A statement outside BEGIN…COMMIT is a group of its own (DDL commits).
                self.in_group = false;
                let subject = crate::statement::subject(database.as_deref(), &statement);
                made(
                    self,
                    SourceEvent::Ddl {
                        database,
                        statement,
                        schema,
                        subject,
                    },
                )
            }
            EventData::XidEvent(x) => {
                self.commit();
                made(self, SourceEvent::Commit { xid: Some(x.xid) })
            }
            EventData::GtidEvent(g) => {
                let sid = Sid {
                    uuid: uuid::Uuid::from_bytes(g.sid()),
                    tag: g
                        .tag()
                        .map(|t| t.to_string().to_ascii_lowercase())
                        .filter(|t| !t.is_empty()),
                };
                self.pending_mysql = Some((sid, g.gno()));
                Ok(None)
            }
            EventData::HeartbeatEvent => made(self, SourceEvent::Heartbeat),
            // Nothing for row-based capture: the format description (kept by mysql_common),
            // statement-based context, MySQL's GTID bookkeeping (its GTID sets are planned).
            _ => Ok(None),
        }
    }

    /// Lets partial row images through (absent columns read as `Null`): for inspecting files.
    #[must_use]
    pub fn allow_partial_images(mut self) -> Self {
        self.require_full_images = false;
        self
    }

    /// Applies the open transaction's GTID to the position.
    /// A BEGIN or a statement opens a group unless its GTID event already did.
    fn open_group(&mut self) {
        if !self.in_group {
            self.group_start = self.last_start;
            self.in_group = true;
        }
    }

    fn commit(&mut self) {
        self.in_group = false;
        if let Some(g) = self.pending.take() {
            self.gtid.get_or_insert_with(MariaDbGtidSet::new).advance(g);
        }
        if let Some((sid, gno)) = self.pending_mysql.take() {
            self.mysql_gtid.add(sid, gno, gno);
        }
        self.standalone = false;
    }
}

/// What a caught panic said.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

/// Runs a `mysql_common` parser on an event: some damaged events make it panic (an
/// `unwrap` on a field it does not know, a short read), which becomes a definite error at the
/// event's offset instead of taking the worker down. The fuzzer (`fuzz/`) found these.
pub(crate) fn guarded<T>(log_pos: u32, parse: impl FnOnce() -> T) -> Result<T, ReaderError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(parse)).map_err(|panic| {
        ReaderError::definite(
            format!(
                "the binlog event at offset {log_pos} could not be parsed ({})",
                panic_text(&*panic)
            ),
            "the event is damaged, or of a form Ferry cannot read: report it with the server version and the binlog file",
        )
    })
}

fn decode_rows(
    rows: &RowsEventData<'_>,
    tme: &mysql_async::binlog::events::TableMapEvent<'static>,
    plan: &TablePlan,
    charsets: &Charsets,
    require_full_images: bool,
    decode: bool,
    parser: RowParser,
) -> Result<(Vec<RowChange>, u32), ReaderError> {
    let bad = |e: String| {
        ReaderError::definite(
            e,
            "check the source's binlog_row_image (FULL) and report the table definition",
        )
    };
    let width = plan.schema().columns().len();
    // The column indexes each image holds (all of them with a FULL row image).
    let before_cols: Vec<usize> = match rows.columns_before_image() {
        Some(bits) => (0..width)
            .filter(|i| bits.get(*i).as_deref().copied().unwrap_or(false))
            .collect(),
        None => (0..width).collect(),
    };
    let after_cols: Vec<usize> = match rows.columns_after_image() {
        Some(bits) => (0..width)
            .filter(|i| bits.get(*i).as_deref().copied().unwrap_or(false))
            .collect(),
        None => (0..width).collect(),
    };
    if require_full_images && (before_cols.len() != width || after_cols.len() != width) {
        return Err(ReaderError::definite(
            format!(
                "a partial row image for {}: the source's binlog_row_image is no longer FULL",
                plan.schema().name()
            ),
            "SET GLOBAL binlog_row_image = 'FULL' on the source (and in its configuration), then reset the task: partial images lose column values",
        ));
    }
    // Every row takes at least one byte of the event (its null bitmap), unless the event claims
    // no columns: then the parser would yield empty rows forever.
    if rows.num_columns() == 0 || width == 0 {
        return Err(bad(format!(
            "a rows event for {} with no columns",
            plan.schema().name()
        )));
    }
    let most = rows.rows_data().len();
    let partial = matches!(rows, RowsEventData::PartialUpdateRowsEvent(_));
    if parser == RowParser::Prepared
        && plan.is_prepared()
        && !partial
        && rows.num_columns() == width as u64
    {
        return read_prepared(rows, plan, charsets, decode, bad);
    }
    let mut out = Vec::new();
    let mut count: u32 = 0;
    for (n, row) in rows.rows(tme).enumerate() {
        if n > most {
            return Err(bad(format!(
                "a rows event for {} yields more rows than it has bytes",
                plan.schema().name()
            )));
        }
        let (before, after) = row.map_err(|e| bad(format!("{}: {e}", plan.schema().name())))?;
        count += 1;
        if !decode {
            continue;
        }
        let before = before
            .map(|r| {
                plan.decode_row(r, &before_cols, charsets, None)
                    .map_err(|e| bad(e.to_string()))
            })
            .transpose()?;
        let after = after
            .map(|r| {
                plan.decode_row(r, &after_cols, charsets, before.as_deref())
                    .map_err(|e| bad(e.to_string()))
            })
            .transpose()?;
        if let Some(change) = row_change(plan, before, after).map_err(|e| bad(e.to_string()))? {
            out.push(change);
        }
    }
    Ok((out, count))
}

/// Reads a rows event with the table map's prepared plans (see `TablePlan::read_image`): each
/// image's values straight from the event's bytes. Rows the task does not carry are read past
/// without converting their values.
fn read_prepared(
    rows: &RowsEventData<'_>,
    plan: &TablePlan,
    charsets: &Charsets,
    decode: bool,
    bad: impl Fn(String) -> ReaderError,
) -> Result<(Vec<RowChange>, u32), ReaderError> {
    let width = plan.schema().columns().len();
    let before_bits = rows.columns_before_image().map(|b| {
        (0..width)
            .map(|i| b.get(i).as_deref().copied().unwrap_or(false))
            .collect::<Vec<bool>>()
    });
    let after_bits = rows.columns_after_image().map(|b| {
        (0..width)
            .map(|i| b.get(i).as_deref().copied().unwrap_or(false))
            .collect::<Vec<bool>>()
    });
    let data = rows.rows_data();
    let mut buf = mysql_common::io::ParseBuf(data);
    let mut out = Vec::new();
    let mut count: u32 = 0;
    while !buf.is_empty() {
        // Every row takes at least one byte: more rows than bytes is a damaged event.
        if count as usize > data.len() {
            return Err(bad(format!(
                "a rows event for {} yields more rows than it has bytes",
                plan.schema().name()
            )));
        }
        let mut image = |present: &Option<Vec<bool>>| {
            present
                .as_ref()
                .map(|p| {
                    if decode {
                        plan.read_image(&mut buf, p, charsets).map(Some)
                    } else {
                        plan.skip_image(&mut buf, p).map(|()| None)
                    }
                })
                .transpose()
                .map(Option::flatten)
                .map_err(|e| bad(e.to_string()))
        };
        let before = image(&before_bits)?;
        let after = image(&after_bits)?;
        count = count.saturating_add(1);
        if !decode {
            continue;
        }
        if let Some(change) = row_change(plan, before, after).map_err(|e| bad(e.to_string()))? {
            out.push(change);
        }
    }
    Ok((out, count))
}

/// The row change of a row's images (`None` for a row with neither).
fn row_change(
    plan: &TablePlan,
    before: Option<Vec<ferry_domain::value::Value>>,
    after: Option<Vec<ferry_domain::value::Value>>,
) -> Result<Option<RowChange>, ferry_domain::InvalidInput> {
    let table = plan.schema().clone();
    match (before, after) {
        (None, Some(a)) => RowChange::insert(table, a).map(Some),
        (Some(b), Some(a)) => RowChange::update(table, b, a).map(Some),
        (Some(b), None) => RowChange::delete(table, b).map(Some),
        (None, None) => Ok(None),
    }
}

/// Whether a statement changes rows (a statement-based event in a ROW binlog).
fn is_dml(sql: &str) -> bool {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or_default();
    ["INSERT", "UPDATE", "DELETE", "REPLACE", "LOAD"]
        .iter()
        .any(|k| first.eq_ignore_ascii_case(k))
}

fn verify_checksum(event: &Event) -> Result<(), ReaderError> {
    let Some(sum) = event.checksum() else {
        return Ok(());
    };
    let Ok(Some(alg)) = event.footer().get_checksum_alg() else {
        return Ok(());
    };
    if alg != BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_CRC32 {
        return Ok(());
    }
    let expected = u32::from_le_bytes(sum);
    let actual = event.calc_checksum(alg);
    if expected != actual {
        return Err(ReaderError::definite(
            format!(
                "checksum mismatch in the event at offset {}: the stream is damaged",
                event.header().log_pos()
            ),
            "restart the task: it resumes from its last checkpoint",
        ));
    }
    Ok(())
}

/// MariaDB GTID event body: seq_no (8), domain_id (4), flags (1), …
fn parse_mariadb_gtid(data: &[u8], server: u32) -> Result<(MariaDbGtid, u8), ReaderError> {
    if data.len() < 13 {
        return Err(ReaderError::definite(
            "a MariaDB GTID event is too short",
            "report this with the binlog file",
        ));
    }
    let sequence = u64::from_le_bytes(data[0..8].try_into().unwrap_or_default());
    let domain = u32::from_le_bytes(data[8..12].try_into().unwrap_or_default());
    Ok((
        MariaDbGtid {
            domain,
            server,
            sequence,
        },
        data[12],
    ))
}

/// MariaDB GTID_LIST event body: count (4, low 28 bits), then (domain 4, server 4, seq 8) each.
fn parse_mariadb_gtid_list(data: &[u8]) -> Result<MariaDbGtidSet, ReaderError> {
    let short = || {
        ReaderError::definite(
            "a MariaDB GTID_LIST event is too short",
            "report this with the binlog file",
        )
    };
    let count = data.get(0..4).ok_or_else(short)?;
    let count = u32::from_le_bytes(count.try_into().unwrap_or_default()) & 0x0fff_ffff;
    let mut set = MariaDbGtidSet::new();
    for i in 0..count as usize {
        let at = 4 + i * 16;
        let entry = data.get(at..at + 16).ok_or_else(short)?;
        set.advance(MariaDbGtid {
            domain: u32::from_le_bytes(entry[0..4].try_into().unwrap_or_default()),
            server: u32::from_le_bytes(entry[4..8].try_into().unwrap_or_default()),
            sequence: u64::from_le_bytes(entry[8..16].try_into().unwrap_or_default()),
        });
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_based_changes_are_recognised() {
        for dml in [
            "INSERT INTO t VALUES (1)",
            "  update t set a=1",
            "DELETE FROM t",
            "replace into t values(1)",
            "LOAD DATA INFILE 'x' INTO TABLE t",
        ] {
            assert!(is_dml(dml), "{dml}");
        }
        for ddl in [
            "CREATE TABLE inserts (id INT)",
            "ALTER TABLE t ADD c INT",
            "DROP TABLE updates",
            "TRUNCATE t",
            "BEGIN",
        ] {
            assert!(!is_dml(ddl), "{ddl}");
        }
    }

    #[test]
    fn mariadb_gtid_events() {
        let mut data = 42u64.to_le_bytes().to_vec();
        data.extend(3u32.to_le_bytes());
        data.push(FL_STANDALONE);
        let (g, flags) = parse_mariadb_gtid(&data, 7).unwrap();
        assert_eq!(g.to_string(), "3-7-42");
        assert_eq!(flags & FL_STANDALONE, FL_STANDALONE);
        assert!(parse_mariadb_gtid(&data[..10], 7).is_err());

        let mut list = 2u32.to_le_bytes().to_vec();
        for (d, s, n) in [(0u32, 1u32, 15u64), (1, 2, 7)] {
            list.extend(d.to_le_bytes());
            list.extend(s.to_le_bytes());
            list.extend(n.to_le_bytes());
        }
        assert_eq!(
            parse_mariadb_gtid_list(&list).unwrap().to_string(),
            "0-1-15,1-2-7"
        );
        assert!(parse_mariadb_gtid_list(&list[..20]).is_err());
    }

    #[test]
    fn a_mysql_gtid_set_becomes_the_dump_request_it_names() {
        let set: MysqlGtidSet = "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,3e11fa47-71ca-11e1-9e33-c80aa9429562:blue:1-3"
            .parse()
            .unwrap();
        let sids = dump_sids(&set).unwrap();
        let printed: Vec<String> = sids.iter().map(ToString::to_string).collect();
        assert_eq!(
            printed,
            [
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7",
                "3e11fa47-71ca-11e1-9e33-c80aa9429562:blue:1-3"
            ]
        );
        // MySQL's intervals end exclusively.
        assert_eq!(sids[0].intervals()[1].end(), 8);
    }
}

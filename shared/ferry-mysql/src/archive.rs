//! The binlog archive's two ends on the MySQL side: [`RawDump`] reads a source's binlog as
//! the server sends it (events kept as bytes, never decoded) and [`PieceWriter`] cuts it into
//! pieces aligned with the source's files; [`Replay`] decodes archived pieces with the same
//! [`EventDecoder`] as the live stream, so a reader can go on from the archive to the server
//! with its schema history, GTID state and table maps intact.
//!
//! A piece is a binlog file in miniature: the magic number, the file's format description,
//! then the events the server sent for an offset range of the file. `mysqlbinlog` reads one.

use ferry_domain::position::BinlogFile;
use futures::StreamExt;
use mysql_async::binlog::events::Event;
use mysql_async::{BinlogStream, BinlogStreamRequest};
use mysql_common::binlog::EventStreamReader;
use mysql_common::binlog::consts::{BinlogVersion, EventType};

use crate::binlog::{EventDecoder, ReadEvent, ReaderError, panic_text, prepare_dump};
use crate::connect::ConnectParams;
use crate::file::{MAGIC, decode_events};

/// The heartbeat event a server sends an idle replica (never in a file).
const HEARTBEAT: u8 = 0x1b;

/// What the server sent next.
#[derive(Debug)]
pub enum Raw {
    /// An event of the file, as bytes (checksum included).
    Event(RawEvent),
    /// The file's format description, sent again for a stream that starts mid-file.
    Format(Vec<u8>),
    /// The server is alive and has nothing newer.
    Idle,
}

/// One event of a binlog file.
#[derive(Debug)]
pub struct RawEvent {
    pub file: BinlogFile,
    /// Where the event ends in the file (its `log_pos`).
    pub end: u64,
    pub bytes: Vec<u8>,
    /// The file's format description (the first event of every file).
    pub format: bool,
    /// The file's last event: the rotation to the next file.
    pub rotates: bool,
}

/// A replication connection that keeps events as bytes.
pub struct RawDump {
    stream: BinlogStream,
    file: BinlogFile,
}

impl std::fmt::Debug for RawDump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawDump").field("file", &self.file).finish()
    }
}

impl RawDump {
    /// Connects as a replica with `server_id` and asks for the stream from `offset` in `file`.
    pub async fn start(
        params: &ConnectParams,
        server_id: u32,
        file: BinlogFile,
        offset: u64,
        heartbeat: std::time::Duration,
    ) -> Result<Self, ReaderError> {
        let (conn, _, _) = prepare_dump(params, heartbeat).await?;
        let name = file.name().as_bytes().to_vec();
        let request = BinlogStreamRequest::new(server_id)
            .with_filename(&name)
            .with_pos(offset);
        let stream = conn.get_binlog_stream(request).await?;
        Ok(Self { stream, file })
    }

    /// The next event or heartbeat; `None` when the server closed the stream. The events the
    /// server makes up for a replica (the rotation naming the file at the start, a format
    /// description repeated mid-file) are not the file's: they only move the file along.
    pub async fn next(&mut self) -> Result<Option<Raw>, ReaderError> {
        use futures::FutureExt;
        use std::panic::AssertUnwindSafe;
        loop {
            let next = AssertUnwindSafe(self.stream.next())
                .catch_unwind()
                .await
                .map_err(|panic| {
                    ReaderError::definite(
                        format!(
                            "the binlog event after {} could not be read ({})",
                            self.file,
                            panic_text(&*panic)
                        ),
                        "the source sent an event Ferry cannot read; report it with the server version",
                    )
                })?;
            let Some(event) = next else {
                return Ok(None);
            };
            let event: Event = event?;
            let header = event.header();
            let kind = header.event_type_raw();
            if kind == HEARTBEAT {
                return Ok(Some(Raw::Idle));
            }
            let rotate = kind == EventType::ROTATE_EVENT as u8;
            let format = kind == EventType::FORMAT_DESCRIPTION_EVENT as u8;
            let mut bytes = Vec::with_capacity(header.event_size() as usize);
            if header.log_pos() == 0 {
                // Made up for the replica: a rotation names the file the stream is in; a format
                // description is the file's, for a stream that starts mid-file.
                if rotate {
                    self.file = rotated_to(&event)?;
                } else if format {
                    event
                        .write(BinlogVersion::Version4, &mut bytes)
                        .map_err(|e| ReaderError::Io(format!("copying a binlog event: {e}")))?;
                    return Ok(Some(Raw::Format(bytes)));
                }
                continue;
            }
            event
                .write(BinlogVersion::Version4, &mut bytes)
                .map_err(|e| ReaderError::Io(format!("copying a binlog event: {e}")))?;
            let raw = RawEvent {
                file: self.file.clone(),
                end: u64::from(header.log_pos()),
                bytes,
                format,
                rotates: rotate,
            };
            if rotate {
                self.file = rotated_to(&event)?;
            }
            return Ok(Some(Raw::Event(raw)));
        }
    }

    /// Closes the replication connection.
    pub async fn close(self) -> Result<(), ReaderError> {
        self.stream.close().await.map_err(ReaderError::from)
    }
}

/// The file a rotation names.
fn rotated_to(event: &Event) -> Result<BinlogFile, ReaderError> {
    let data = event
        .read_event::<mysql_common::binlog::events::RotateEvent<'_>>()
        .map_err(|e| {
            ReaderError::definite(
                format!("a rotation does not parse: {e}"),
                "report this with the server version",
            )
        })?;
    let raw = data.name_raw();
    let parses = |b: &[u8]| {
        std::str::from_utf8(b)
            .ok()
            .and_then(|n| n.parse::<BinlogFile>().ok())
    };
    // The made-up rotation at the stream's start comes before the format description, so its
    // checksum is still on the name.
    let name = match parses(raw) {
        Some(f) => f,
        None if raw.len() > 4 => parses(&raw[..raw.len() - 4]).ok_or_else(|| {
            ReaderError::definite(
                format!("a rotation names {:?}", String::from_utf8_lossy(raw)),
                "report this with the server version",
            )
        })?,
        None => {
            return Err(ReaderError::definite(
                format!("a rotation names {:?}", String::from_utf8_lossy(raw)),
                "report this with the server version",
            ));
        }
    };
    Ok(name)
}

/// A finished piece: what it covers and its bytes (uncompressed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceBytes {
    pub file: BinlogFile,
    pub start: u64,
    pub end: u64,
    pub rotated: bool,
    pub bytes: Vec<u8>,
    /// The timestamp (seconds since the epoch, from the event header) of the newest event
    /// with one: `None` when every event is one the server made up for the stream (time 0).
    pub newest_time: Option<u32>,
}

/// Cuts the events of a [`RawDump`] into pieces: one ends at a file's rotation, when it
/// reaches `max_bytes`, or when its owner flushes it (on a timer).
#[derive(Debug)]
pub struct PieceWriter {
    max_bytes: usize,
    /// The current file's format description, which starts every piece of it.
    format: Option<Vec<u8>>,
    file: BinlogFile,
    start: u64,
    end: u64,
    events: Vec<u8>,
    /// The header timestamp of the newest event of the piece being cut that has one.
    newest_time: Option<u32>,
}

impl PieceWriter {
    /// A writer for a stream that starts at `offset` in `file`.
    pub fn new(file: BinlogFile, offset: u64, max_bytes: usize) -> Self {
        Self {
            max_bytes,
            format: None,
            file,
            start: offset,
            end: offset,
            events: Vec::new(),
            newest_time: None,
        }
    }

    /// Where the events written so far end: where a new stream would go on from.
    pub fn position(&self) -> (&BinlogFile, u64) {
        (&self.file, self.end)
    }

    /// Whether every event pushed is in a piece returned.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The current file's format description, sent for a stream that starts mid-file.
    pub fn format(&mut self, bytes: Vec<u8>) {
        self.format = Some(bytes);
    }

    /// Adds an event; returns the piece it completed, if any.
    pub fn push(&mut self, event: RawEvent) -> Result<Option<PieceBytes>, ReaderError> {
        if event.file != self.file {
            // A file that starts without a rotation before it (the stream began there).
            self.file = event.file.clone();
            self.start = 4;
            self.end = 4;
            self.events.clear();
            self.format = None;
            self.newest_time = None;
        }
        if event.format {
            // Every file begins with its format description; a repeated one is the same.
            self.format = Some(event.bytes.clone());
        }
        if self.format.is_none() {
            return Err(ReaderError::definite(
                format!("{} sent an event before its format description", event.file),
                "report this with the server version",
            ));
        }
        self.events.extend_from_slice(&event.bytes);
        self.end = event.end;
        // Every event header starts with its timestamp (little-endian seconds).
        if let Some(t) = event
            .bytes
            .first_chunk::<4>()
            .map(|b| u32::from_le_bytes(*b))
            && t != 0
        {
            self.newest_time = Some(t);
        }
        if event.rotates {
            // (The next file starts with its own format description: its first event.)
            return Ok(self.cut(true));
        }
        Ok(if self.events.len() >= self.max_bytes {
            self.cut(false)
        } else {
            None
        })
    }

    /// The events written since the last piece, as a piece (`None` when there are none).
    pub fn flush(&mut self) -> Option<PieceBytes> {
        self.cut(false)
    }

    fn cut(&mut self, rotated: bool) -> Option<PieceBytes> {
        if self.events.is_empty() {
            return None;
        }
        let format = self.format.as_deref().unwrap_or_default();
        let mut bytes = Vec::with_capacity(MAGIC.len() + format.len() + self.events.len());
        bytes.extend_from_slice(MAGIC);
        // A piece from the file's start begins with the format description itself.
        if self.start > 4 {
            bytes.extend_from_slice(format);
        }
        bytes.append(&mut self.events);
        let piece = PieceBytes {
            file: self.file.clone(),
            start: self.start,
            end: self.end,
            rotated,
            bytes,
            newest_time: self.newest_time.take(),
        };
        self.start = self.end;
        Some(piece)
    }
}

/// Decodes archived pieces in order from a position, with the decoder a live stream would use.
pub struct Replay {
    reader: EventStreamReader,
    decoder: EventDecoder,
    file: BinlogFile,
    offset: u64,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("file", &self.file)
            .field("offset", &self.offset)
            .finish()
    }
}

impl Replay {
    /// A replay from `offset` in `file`, decoding with `decoder` (set up as for the live
    /// stream: schema history, selection, GTID state).
    pub fn new(mut decoder: EventDecoder, file: BinlogFile, offset: u64) -> Self {
        decoder.set_file(file.clone());
        Self {
            reader: EventStreamReader::new(BinlogVersion::Version4),
            decoder,
            file,
            offset,
        }
    }

    /// Decodes the piece `bytes` (uncompressed) of `file` that starts at `start`, appending the
    /// events of interest at or after the replay's position to `out`.
    pub fn piece(
        &mut self,
        file: &BinlogFile,
        start: u64,
        bytes: &[u8],
        out: &mut Vec<ReadEvent>,
    ) -> Result<(), ReaderError> {
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Err(ReaderError::definite(
                format!("the archived piece of {file} from {start} is not a binlog"),
                "the archive was changed by something else than Ferry; reset the task",
            ));
        };
        if *file != self.file {
            self.file = file.clone();
            self.offset = 4;
        }
        self.decoder.set_file(file.clone());
        let skip_before = start.max(self.offset);
        let (reader, decoder) = (&mut self.reader, &mut self.decoder);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            decode_events(rest, reader, decoder, skip_before, out)
        }));
        decoded.unwrap_or_else(|panic| {
            Err(ReaderError::definite(
                format!(
                    "the archived piece of {file} from {start} is damaged ({})",
                    panic_text(&*panic)
                ),
                "the archive was changed by something else than Ferry; reset the task",
            ))
        })
    }

    /// The decoder, to go on with on the live stream.
    pub fn into_decoder(self) -> EventDecoder {
        self.decoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(file: &str, end: u64, len: usize, format: bool, rotates: bool) -> RawEvent {
        RawEvent {
            file: file.parse().unwrap(),
            end,
            bytes: vec![u8::try_from(end % 251).unwrap(); len],
            format,
            rotates,
        }
    }

    #[test]
    fn pieces_follow_the_files_and_start_with_their_format_description() {
        let mut w = PieceWriter::new("binlog.000001".parse().unwrap(), 4, 100);
        assert_eq!(
            w.push(event("binlog.000001", 30, 26, true, false)).unwrap(),
            None
        );
        assert_eq!(
            w.push(event("binlog.000001", 90, 60, false, false))
                .unwrap(),
            None
        );
        // Past the size: a piece, from the file's start (its format description in place).
        let first = w
            .push(event("binlog.000001", 150, 60, false, false))
            .unwrap()
            .unwrap();
        assert_eq!((first.start, first.end, first.rotated), (4, 150, false));
        assert_eq!(first.bytes.len(), 4 + 26 + 60 + 60);
        // The next piece carries a copy of the format description before its events.
        assert_eq!(
            w.push(event("binlog.000001", 170, 20, false, false))
                .unwrap(),
            None
        );
        let second = w
            .push(event("binlog.000001", 200, 30, false, true))
            .unwrap()
            .unwrap();
        assert_eq!((second.start, second.end, second.rotated), (150, 200, true));
        assert_eq!(&second.bytes[..4], MAGIC);
        assert_eq!(second.bytes[4..30], vec![30; 26][..]);
        assert_eq!(second.bytes.len(), 4 + 26 + 20 + 30);
        // The next file: from 4, once its format description came.
        assert_eq!(w.flush(), None, "nothing since the rotation");
        assert!(
            w.push(event("binlog.000002", 50, 10, false, false))
                .is_err(),
            "an event before the format description"
        );
        let mut w = PieceWriter::new("binlog.000002".parse().unwrap(), 4, 100);
        w.push(event("binlog.000002", 30, 26, true, false)).unwrap();
        w.push(event("binlog.000002", 40, 10, false, false))
            .unwrap();
        let flushed = w.flush().unwrap();
        assert_eq!(
            (flushed.start, flushed.end, flushed.rotated),
            (4, 40, false)
        );
        assert_eq!(w.position().1, 40);
    }

    #[test]
    fn a_piece_knows_the_time_of_its_newest_event_with_one() {
        let timed = |end: u64, time: u32, format: bool| {
            let mut e = event("binlog.000001", end, 30, format, false);
            e.bytes[..4].copy_from_slice(&time.to_le_bytes());
            e
        };
        let mut w = PieceWriter::new("binlog.000001".parse().unwrap(), 4, 1000);
        // The server's made-up format description at a stream's start has no time.
        w.push(timed(34, 0, true)).unwrap();
        assert!(!w.is_empty());
        assert_eq!(w.flush().unwrap().newest_time, None);
        assert!(w.is_empty());
        w.push(timed(64, 1_800_000_000, false)).unwrap();
        w.push(timed(94, 1_800_000_007, false)).unwrap();
        w.push(timed(124, 0, false)).unwrap();
        assert_eq!(w.flush().unwrap().newest_time, Some(1_800_000_007));
        // Each piece its own: nothing carried over from the last.
        w.push(timed(154, 0, false)).unwrap();
        assert_eq!(w.flush().unwrap().newest_time, None);
    }
}

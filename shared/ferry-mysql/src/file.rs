//! Reading binlog files from disk, through the same [`EventDecoder`] as the replication
//! stream. Used to test what no server on these machines writes (MySQL 8 GTIDs, binary JSON,
//! compressed transactions) with MySQL's own binlog files, and to inspect a binlog offline.
//!
//! A damaged file is an error, never a panic: `mysql_common` panics on some truncated events,
//! so reading runs under `catch_unwind` and a panic becomes [`ReaderError::Definite`].

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use ferry_domain::position::BinlogFile;
use ferry_domain::selection::ObjectSelection;
use mysql_common::binlog::EventStreamReader;
use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::consts::{BinlogChecksumAlg, BinlogVersion};
use mysql_common::binlog::events::TransactionPayloadEvent;

/// The largest compressed transaction (MySQL's binlog_transaction_compression) a binlog file
/// may hold uncompressed: 1 GiB, MySQL's own max_allowed_packet ceiling.
const MAX_UNCOMPRESSED_PAYLOAD: u64 = 1 << 30;

use crate::binlog::{
    EventDecoder, ReadEvent, ReaderError, RowParser, SourceEvent, guarded, panic_text,
};
use crate::decode::Charsets;

/// What every binlog file starts with.
pub const MAGIC: &[u8] = b"\xfebin";

/// Every event of interest in the binlog file at `path`, in order.
pub fn read_file(path: &Path) -> Result<Vec<ReadEvent>, ReaderError> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let file: Option<BinlogFile> = name.parse().ok().or_else(|| "fixture.000001".parse().ok());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| ReaderError::Io(format!("{}: {e}", path.display())))?;
    let result = catch_unwind(AssertUnwindSafe(|| decode_bytes(&bytes, file)));
    result.unwrap_or_else(|panic| {
        Err(ReaderError::Definite {
            message: format!(
                "{} is damaged: the event parser gave up ({})",
                path.display(),
                panic_text(&*panic)
            ),
            hint: "the file is truncated or corrupt; read from a complete copy".into(),
        })
    })
}

/// Every event of interest in the bytes of a binlog file, named `file`. Unguarded: a panic of
/// the event parser is not caught here ([`read_file`] catches it); the fuzzer calls this to
/// find them.
///
/// Events are framed here, not by `mysql_common`'s file reader: an event's declared size is
/// checked against the bytes there are before the parser sees it (the parser unwraps a short
/// read, and allocates whatever size the header claims), so each event reaches the parser whole,
/// exactly as one replication packet does.
pub fn decode_bytes(bytes: &[u8], file: Option<BinlogFile>) -> Result<Vec<ReadEvent>, ReaderError> {
    decode_bytes_with(bytes, file, RowParser::Prepared)
}

/// [`decode_bytes`] with rows events parsed by `parser` (the reference parser checks the
/// prepared one in tests and the fuzzer).
pub fn decode_bytes_with(
    bytes: &[u8],
    file: Option<BinlogFile>,
    parser: RowParser,
) -> Result<Vec<ReadEvent>, ReaderError> {
    decode_bytes_selected(bytes, file, parser, None)
}

/// How many rows each rows event of `bytes` holds, no row decoded: every row is read past by
/// its values' widths, as the capture worker reads the rows of tables its task does not carry.
/// Tests and the fuzzer check these counts against a full decode's.
pub fn count_rows(bytes: &[u8], file: Option<BinlogFile>) -> Result<Vec<u32>, ReaderError> {
    let nothing = ObjectSelection {
        databases: Vec::new(),
        operations: Vec::new(),
    };
    let events = decode_bytes_selected(bytes, file, RowParser::Prepared, Some(nothing))?;
    Ok(row_counts(&events))
}

/// The row count of each rows event among `events`, in order.
pub fn row_counts(events: &[ReadEvent]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            SourceEvent::Rows(rows) => Some(rows.count),
            _ => None,
        })
        .collect()
}

fn decode_bytes_selected(
    bytes: &[u8],
    file: Option<BinlogFile>,
    parser: RowParser,
    selection: Option<ObjectSelection>,
) -> Result<Vec<ReadEvent>, ReaderError> {
    let damaged = |e: std::io::Error| ReaderError::Definite {
        message: format!("the binlog file is damaged: {e}"),
        hint: "the file is truncated or corrupt; read from a complete copy".into(),
    };
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        return Err(damaged(std::io::Error::other(
            "it does not start with the binlog magic number",
        )));
    };
    let mut reader = EventStreamReader::new(BinlogVersion::Version4);
    // A file is shown as it is: partial row images pass, with absent columns as `Null`.
    let mut decoder = EventDecoder::new(Charsets::builtin(), file, None)
        .allow_partial_images()
        .with_row_parser(parser);
    if let Some(selection) = selection {
        decoder = decoder.with_selection(selection);
    }
    let mut out = Vec::new();
    decode_events(rest, &mut reader, &mut decoder, 0, &mut out)?;
    Ok(out)
}

/// Decodes the events of `rest` (a binlog file's bytes after its magic number) with `reader`
/// and `decoder`, appending those of interest to `out`. Events that start before `skip_before`
/// in the file are read (format descriptions and table maps set the reader up) but not
/// decoded: an archive piece's copy of its file's format description, and what comes before
/// the position a replay starts at.
pub(crate) fn decode_events(
    mut rest: &[u8],
    reader: &mut EventStreamReader,
    decoder: &mut EventDecoder,
    skip_before: u64,
    out: &mut Vec<ReadEvent>,
) -> Result<(), ReaderError> {
    let damaged = |e: std::io::Error| ReaderError::Definite {
        message: format!("the binlog file is damaged: {e}"),
        hint: "the file is truncated or corrupt; read from a complete copy".into(),
    };
    let mut offset = 4;
    while !rest.is_empty() {
        let event = next_event(&mut rest, &mut offset, checksum_len(reader)).map_err(damaged)?;
        let event = reader
            .read(event)
            .map_err(damaged)?
            .ok_or_else(|| damaged(std::io::Error::other("an empty event")))?;
        let header = event.header();
        let starts = u64::from(header.log_pos().saturating_sub(header.event_size()));
        if header.log_pos() != 0 && starts < skip_before {
            continue;
        }
        if header.event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            // A compressed transaction: its events are inside, framed the same way.
            let at = u32::try_from(offset).unwrap_or(u32::MAX);
            let payload = guarded(at, || event.read_event::<TransactionPayloadEvent<'_>>())?
                .map_err(damaged)?;
            // mysql_common reserves the size the event claims before decompressing, and a
            // failed reservation aborts the process: a damaged size is refused first.
            if payload.uncompressed_size() > MAX_UNCOMPRESSED_PAYLOAD {
                return Err(damaged(std::io::Error::other(format!(
                    "a compressed transaction at offset {at} claims {} bytes uncompressed, more than the {MAX_UNCOMPRESSED_PAYLOAD} Ferry reads",
                    payload.uncompressed_size()
                ))));
            }
            let inner_bytes = guarded(at, || payload.danger_decompress())?;
            let mut inner = inner_bytes.as_slice();
            let mut inner_offset = 0;
            while !inner.is_empty() {
                // Events inside a compressed payload carry no checksum.
                let framed = next_event(&mut inner, &mut inner_offset, 0).map_err(damaged)?;
                let Some(e) = reader.read_decompressed(framed).map_err(damaged)? else {
                    break;
                };
                // The parser panics on some damaged table maps (e.g. a huge ENUM value
                // count): a definite error, as on the live stream.
                if let Some(r) = guarded(at, || decoder.handle(&e, |id| reader.get_tme(id)))?? {
                    out.push(r);
                }
            }
            continue;
        }
        let at = u32::try_from(offset).unwrap_or(u32::MAX);
        if let Some(r) = guarded(at, || decoder.handle(&event, |id| reader.get_tme(id)))?? {
            out.push(r);
        }
    }
    Ok(())
}

/// How many checksum bytes end each event after the format description `reader` holds: the
/// parser cuts them off its data without checking there are that many.
fn checksum_len(reader: &EventStreamReader) -> usize {
    let footer = reader.get_fde().footer();
    match footer.get_checksum_alg() {
        _ if !footer.get_checksum_enabled() => 0,
        Ok(None | Some(BinlogChecksumAlg::BINLOG_CHECKSUM_ALG_OFF)) => 0,
        // CRC32, or an algorithm the parser does not know but still cuts four bytes for.
        Ok(Some(_)) | Err(_) => 4,
    }
}

/// The next whole event of `rest` (its header's size checked against what is left, and against
/// the least the parser reads of an event of its type), which is then advanced past it;
/// `offset` counts the bytes taken, for messages.
fn next_event<'a>(
    rest: &mut &'a [u8],
    offset: &mut usize,
    checksum: usize,
) -> std::io::Result<&'a [u8]> {
    const HEADER: usize = 19;
    // A format description's fixed part (binlog version, server version, creation time, header
    // length: 57 bytes), then its checksum algorithm and checksum (5).
    const FORMAT_DESCRIPTION: usize = 57 + 5;
    let truncated = |what: String| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, what);
    if rest.len() < HEADER {
        return Err(truncated(format!(
            "{} bytes at offset {offset} are not a whole event header",
            rest.len()
        )));
    }
    let size = usize::try_from(u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]))
        .unwrap_or(usize::MAX);
    let least = HEADER
        + match rest[4] {
            0x0f => FORMAT_DESCRIPTION,
            _ => checksum,
        };
    if size < least || size > rest.len() {
        return Err(truncated(format!(
            "the event at offset {offset} says it has {size} bytes: {} are there, at least {least} are needed",
            rest.len()
        )));
    }
    let (event, after) = rest.split_at(size);
    *rest = after;
    *offset += size;
    Ok(event)
}

//! Reading binlog files from disk, through the same [`EventDecoder`] as the replication
//! stream. Used to test what no server on these machines writes (MySQL 8 GTIDs, binary JSON,
//! compressed transactions) with MySQL's own binlog files, and to inspect a binlog offline.
//!
//! A damaged file is an error, never a panic: `mysql_common` panics on some truncated events,
//! so reading runs under `catch_unwind` and a panic becomes [`ReaderError::Definite`].

use std::io::{BufReader, Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use ferry_domain::position::BinlogFile;
use mysql_common::binlog::consts::BinlogVersion;
use mysql_common::binlog::consts::EventType;
use mysql_common::binlog::events::TransactionPayloadEvent;

use crate::binlog::{EventDecoder, ReadEvent, ReaderError};
use crate::decode::Charsets;

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
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        Err(ReaderError::Definite {
            message: format!(
                "{} is damaged: the event parser gave up ({what})",
                path.display()
            ),
            hint: "the file is truncated or corrupt; read from a complete copy".into(),
        })
    })
}

/// Every event of interest in the bytes of a binlog file, named `file`. Unguarded: a panic of
/// the event parser is not caught here ([`read_file`] catches it); the fuzzer calls this to
/// find them.
pub fn decode_bytes(bytes: &[u8], file: Option<BinlogFile>) -> Result<Vec<ReadEvent>, ReaderError> {
    let damaged = |e: std::io::Error| ReaderError::Definite {
        message: format!("the binlog file is damaged: {e}"),
        hint: "the file is truncated or corrupt; read from a complete copy".into(),
    };
    let mut binlog =
        mysql_common::binlog::BinlogFile::new(BinlogVersion::Version4, BufReader::new(bytes))
            .map_err(damaged)?;
    // A file is shown as it is: partial row images pass, with absent columns as `Null`.
    let mut decoder = EventDecoder::new(Charsets::builtin(), file, None).allow_partial_images();
    let mut out = Vec::new();
    while let Some(event) = binlog.next() {
        let event = event.map_err(damaged)?;
        if event.header().event_type_raw() == EventType::TRANSACTION_PAYLOAD_EVENT as u8 {
            // A compressed transaction: its events are inside.
            let payload = event
                .read_event::<TransactionPayloadEvent<'_>>()
                .map_err(damaged)?;
            let mut inner = Cursor::new(payload.danger_decompress());
            while let Some(e) = binlog
                .reader_mut()
                .read_decompressed(&mut inner)
                .map_err(damaged)?
            {
                let reader = binlog.reader();
                if let Some(r) = decoder.handle(&e, |id| reader.get_tme(id))? {
                    out.push(r);
                }
            }
            continue;
        }
        let reader = binlog.reader();
        if let Some(r) = decoder.handle(&event, |id| reader.get_tme(id))? {
            out.push(r);
        }
    }
    Ok(out)
}

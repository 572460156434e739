//! The binlog archive in S3: pieces of a source's binlog files as a task's worker copied them,
//! so a task can read a file its server has purged (docs/capture.md, "Binlog archive").
//!
//! # Layout
//!
//! One object per piece: `archive/<instance>/<server>/<binlog file>/<start>-<end>[r].binlog.zst`
//! (`server`: the source server's identity, so a source replaced by another server never reads
//! the old one's files by name), where
//! `start` and `end` are the offsets in the source's file of the piece's first event and of the
//! end of its last (both ten digits, so the keys sort by offset), and `r` marks the piece whose
//! last event is the file's rotation to the next one: the file is complete up to there. The
//! body is a binlog file in miniature, zstd-compressed: the magic number, the file's format
//! description, then the events exactly as the server sent them (`mysqlbinlog` reads it once
//! decompressed). Pieces of one file follow each other without gaps or overlap.
//!
//! S3 rather than DynamoDB or the topic: pieces are megabytes, read rarely and whole, and the
//! bucket's lifecycle rule expires them without a sweeper.

use std::fmt;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use ferry_domain::id::InstanceId;
use ferry_domain::position::BinlogFile;

use crate::AwsError;

/// A piece of a binlog file in the archive.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Piece {
    pub file: BinlogFile,
    /// Where its first event starts in the file.
    pub start: u64,
    /// Where its last event ends.
    pub end: u64,
    /// Its last event rotates to the next file.
    pub rotated: bool,
}

impl Piece {
    /// The object key of the piece in the archive under `prefix` (see [`prefix`]).
    pub fn key(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}/{:010}-{:010}{}.binlog.zst",
            self.file,
            self.start,
            self.end,
            if self.rotated { "r" } else { "" }
        )
    }

    /// The piece an object key of the archive under `prefix` names (`None` for another
    /// object).
    pub fn parse(prefix: &str, key: &str) -> Option<Self> {
        let rest = key.strip_prefix(prefix)?;
        let (file, name) = rest.split_once('/')?;
        let name = name.strip_suffix(".binlog.zst")?;
        let (name, rotated) = match name.strip_suffix('r') {
            Some(n) => (n, true),
            None => (name, false),
        };
        let (start, end) = name.split_once('-')?;
        let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
        (start < end).then_some(Self {
            file: file.parse().ok()?,
            start,
            end,
            rotated,
        })
    }
}

impl fmt::Display for Piece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}..{}", self.file, self.start, self.end)?;
        if self.rotated {
            f.write_str(" (to its end)")?;
        }
        Ok(())
    }
}

/// The key prefix of `instance`'s archive of the server `source` (its identity, as
/// checkpoints name it: `server_id:7`, or a server UUID).
pub fn prefix(instance: &InstanceId, source: &str) -> String {
    let server: String = source
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("archive/{instance}/{server}/")
}

/// Why the archive cannot serve a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the binlog archive has no {file} from offset {offset}{}", .after.as_ref().map(|p| format!(" (it ends at {p})")).unwrap_or_default())]
pub struct Gap {
    pub file: BinlogFile,
    pub offset: u64,
    /// The archive's last piece before the gap.
    pub after: Option<String>,
}

/// The pieces to read, in order, for a reader at `offset` in `file` that finds its files on
/// the server from `server_oldest` on: every piece from the one holding `offset` through the
/// end of the last file before `server_oldest`. `pieces` may come in any order.
///
/// Returns an empty plan when the server has `file` itself, and a [`Gap`] when a piece is
/// missing on the way (the archive started later, or a piece was never uploaded).
pub fn plan(
    pieces: &[Piece],
    file: &BinlogFile,
    offset: u64,
    server_oldest: &BinlogFile,
) -> Result<Vec<Piece>, Gap> {
    let mut sorted: Vec<&Piece> = pieces.iter().collect();
    sorted.sort();
    let mut out: Vec<Piece> = Vec::new();
    let (mut file, mut offset) = (file.clone(), offset);
    while file < *server_oldest {
        let gap = |out: &Vec<Piece>| Gap {
            file: file.clone(),
            offset,
            after: out.last().map(ToString::to_string),
        };
        // The piece holding `offset`: it starts at or before it and ends after it (a position
        // at a piece's very end is the start of the next piece, or of the next file).
        let Some(piece) = sorted
            .iter()
            .find(|p| p.file == file && p.start <= offset && offset < p.end)
        else {
            // At the end of a rotated piece (a checkpoint after the file's last transaction):
            // the next file.
            if let Some(last) = sorted
                .iter()
                .find(|p| p.file == file && p.end == offset && p.rotated)
            {
                match next_file(&sorted, &last.file, server_oldest) {
                    Some(next) => {
                        file = next;
                        offset = 4;
                        continue;
                    }
                    None => return Err(gap(&out)),
                }
            }
            return Err(gap(&out));
        };
        out.push((*piece).clone());
        if piece.rotated {
            match next_file(&sorted, &piece.file, server_oldest) {
                Some(next) => {
                    file = next;
                    offset = 4;
                }
                None => {
                    return Err(Gap {
                        file: file.clone(),
                        offset: piece.end,
                        after: Some(piece.to_string()),
                    });
                }
            }
        } else {
            offset = piece.end;
        }
    }
    Ok(out)
}

/// The file after `file`: the next index (a server always counts up by one), archived or the
/// server's oldest.
fn next_file(
    sorted: &[&Piece],
    file: &BinlogFile,
    server_oldest: &BinlogFile,
) -> Option<BinlogFile> {
    let is_next = |f: &BinlogFile| f.base() == file.base() && f.index() == file.index() + 1;
    if is_next(server_oldest) {
        return Some(server_oldest.clone());
    }
    sorted.iter().map(|p| &p.file).find(|f| is_next(f)).cloned()
}

/// The archive bucket, for the workers. Without a bucket (a deployment that has none) every
/// call fails with a message saying so.
#[derive(Debug, Clone)]
pub struct Archive {
    client: Client,
    bucket: Option<String>,
}

impl Archive {
    pub fn new(client: Client, bucket: Option<String>) -> Self {
        Self { client, bucket }
    }

    /// The bucket, if the deployment has one.
    pub fn bucket(&self) -> Option<&str> {
        self.bucket.as_deref()
    }

    fn bucket_or_err(&self, operation: &'static str) -> Result<&str, AwsError> {
        self.bucket.as_deref().ok_or_else(|| {
            AwsError::new(
                "S3",
                operation,
                std::io::Error::other(
                    "the deployment has no binlog archive bucket (FERRY_ARCHIVE_BUCKET)",
                ),
            )
        })
    }

    /// Stores a piece's body (already compressed).
    pub async fn put(&self, prefix: &str, piece: &Piece, body: Vec<u8>) -> Result<(), AwsError> {
        let bucket = self.bucket_or_err("PutObject")?;
        self.client
            .put_object()
            .bucket(bucket)
            .key(piece.key(prefix))
            .content_type("application/zstd")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| AwsError::new("S3", "PutObject", e))?;
        Ok(())
    }

    /// Every piece of the archive under `prefix`, with when it was stored.
    pub async fn list(
        &self,
        prefix: &str,
    ) -> Result<Vec<(Piece, Option<chrono::DateTime<chrono::Utc>>)>, AwsError> {
        let bucket = self.bucket_or_err("ListObjectsV2")?;
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| AwsError::new("S3", "ListObjectsV2", e))?;
            for object in page.contents() {
                let Some(piece) = object.key().and_then(|k| Piece::parse(prefix, k)) else {
                    continue;
                };
                let stored = object
                    .last_modified()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), 0));
                out.push((piece, stored));
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// A piece's body (compressed).
    pub async fn get(&self, prefix: &str, piece: &Piece) -> Result<Vec<u8>, AwsError> {
        let bucket = self.bucket_or_err("GetObject")?;
        let object = self
            .client
            .get_object()
            .bucket(bucket)
            .key(piece.key(prefix))
            .send()
            .await
            .map_err(|e| AwsError::new("S3", "GetObject", e))?;
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| AwsError::new("S3", "GetObject", e))?;
        Ok(body.into_bytes().to_vec())
    }

    /// Deletes everything archived for `instance` (of every server); the number of objects.
    pub async fn delete_instance(&self, instance: &InstanceId) -> Result<usize, AwsError> {
        let bucket = self.bucket_or_err("ListObjectsV2")?;
        let mut deleted = 0;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(format!("archive/{instance}/"))
                .send()
                .await
                .map_err(|e| AwsError::new("S3", "ListObjectsV2", e))?;
            let keys: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
            if keys.is_empty() {
                return Ok(deleted);
            }
            for key in keys {
                self.client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| AwsError::new("S3", "DeleteObject", e))?;
                deleted += 1;
            }
        }
    }

    /// Deletes a piece.
    pub async fn delete(&self, prefix: &str, piece: &Piece) -> Result<(), AwsError> {
        let bucket = self.bucket_or_err("DeleteObject")?;
        self.client
            .delete_object()
            .bucket(bucket)
            .key(piece.key(prefix))
            .send()
            .await
            .map_err(|e| AwsError::new("S3", "DeleteObject", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ins_0123456789abcdef0123456789abcdef";

    fn at() -> String {
        prefix(&ID.parse().unwrap(), "server_id:7")
    }

    fn piece(file: &str, start: u64, end: u64, rotated: bool) -> Piece {
        Piece {
            file: file.parse().unwrap(),
            start,
            end,
            rotated,
        }
    }

    #[test]
    fn keys_round_trip_and_sort_by_offset() {
        let p = piece("binlog.000012", 4, 123_456, true);
        let key = p.key(&at());
        assert_eq!(
            key,
            format!("archive/{ID}/server_id-7/binlog.000012/0000000004-0000123456r.binlog.zst")
        );
        assert_eq!(Piece::parse(&at(), &key), Some(p));
        let later = piece("binlog.000012", 123_456, 200_000, false).key(&at());
        assert!(key < later);
        assert_eq!(
            Piece::parse(&prefix(&InstanceId::generate(), "server_id:7"), &key),
            None
        );
        assert_eq!(
            Piece::parse(&prefix(&ID.parse().unwrap(), "server_id:8"), &key),
            None
        );
        for bad in [
            "binlog.000012/x-0000000010.binlog.zst",
            "binlog.000012/0000000010-0000000004.binlog.zst",
            "binlog.000012/0000000004-0000000010.txt",
            "notafile/0000000004-0000000010.binlog.zst",
        ] {
            let bad = format!("{}{bad}", at());
            assert_eq!(Piece::parse(&at(), &bad), None, "{bad}");
        }
    }

    #[test]
    fn a_plan_chains_pieces_across_files_up_to_the_server() {
        let pieces = vec![
            piece("binlog.000003", 900, 2000, false),
            piece("binlog.000002", 4, 500, false),
            piece("binlog.000002", 500, 1000, true),
            piece("binlog.000003", 4, 900, false),
            piece("binlog.000003", 2000, 2100, true),
            piece("binlog.000004", 4, 300, false),
        ];
        let f = |n: &str| n.parse::<BinlogFile>().unwrap();
        let plan = plan(&pieces, &f("binlog.000002"), 700, &f("binlog.000004")).unwrap();
        assert_eq!(
            plan,
            vec![
                piece("binlog.000002", 500, 1000, true),
                piece("binlog.000003", 4, 900, false),
                piece("binlog.000003", 900, 2000, false),
                piece("binlog.000003", 2000, 2100, true),
            ]
        );
        // The server has the file: nothing from the archive.
        assert_eq!(
            super::plan(&pieces, &f("binlog.000004"), 10, &f("binlog.000004")),
            Ok(vec![])
        );
        // A checkpoint at the end of a file's last piece: the next file.
        assert_eq!(
            super::plan(&pieces, &f("binlog.000002"), 1000, &f("binlog.000004"))
                .unwrap()
                .len(),
            3
        );
        // At the end of an unfinished piece: the next piece.
        assert_eq!(
            super::plan(&pieces, &f("binlog.000003"), 900, &f("binlog.000004"))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn gaps_are_named() {
        let f = |n: &str| n.parse::<BinlogFile>().unwrap();
        // The archive starts after the position.
        let pieces = vec![piece("binlog.000002", 500, 1000, true)];
        let gap = plan(&pieces, &f("binlog.000002"), 100, &f("binlog.000003")).unwrap_err();
        assert_eq!((gap.file.name(), gap.offset), ("binlog.000002", 100));
        // A file that never rotated in the archive: its rest is missing.
        let pieces = vec![piece("binlog.000002", 4, 1000, false)];
        let gap = plan(&pieces, &f("binlog.000002"), 4, &f("binlog.000003")).unwrap_err();
        assert_eq!((gap.file.name(), gap.offset), ("binlog.000002", 1000));
        assert!(
            gap.to_string().contains("it ends at binlog.000002:4..1000"),
            "{gap}"
        );
        // A whole file missing between two.
        let pieces = vec![
            piece("binlog.000002", 4, 1000, true),
            piece("binlog.000004", 4, 1000, true),
        ];
        let gap = plan(&pieces, &f("binlog.000002"), 4, &f("binlog.000005")).unwrap_err();
        assert_eq!(gap.file.name(), "binlog.000002");
        assert_eq!(gap.offset, 1000);
    }
}

//! Verification of a sync task: the report of comparing source and target tables chunk by
//! chunk (row counts and checksums of the converted values), with the keys that differ.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::change::ObjectName;

/// At most this many keys are listed per chunk and kind of difference.
pub const MAX_KEYS: usize = 100;

/// Where a verification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifyState {
    /// Asked for; the worker running the task picks it up within a second or two.
    Pending,
    Running,
    Done,
    /// It could not finish (`error` says why); the task itself is not affected.
    Failed,
}

/// One verification of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub id: String,
    pub state: VerifyState,
    pub requested_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<VerifyReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Rows missing, different or extra on the target, over every table.
    pub differences: u64,
    pub tables: Vec<TableVerify>,
}

/// One table's comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableVerify {
    pub table: ObjectName,
    pub target: String,
    pub chunks: u32,
    pub source_rows: u64,
    pub target_rows: u64,
    /// Chunks whose rows differ.
    pub differing_chunks: Vec<ChunkDiff>,
    /// Rows on the target whose key the source does not have.
    pub extra_rows: u64,
    pub extra_keys: Vec<String>,
    /// Whether the table was compared a second time because the first pass found differences
    /// (changes in flight while the task runs); the report is the second pass.
    pub rechecked: bool,
}

impl TableVerify {
    pub fn differences(&self) -> u64 {
        self.differing_chunks
            .iter()
            .map(|c| c.missing_rows + c.different_rows)
            .sum::<u64>()
            + self.extra_rows
    }
}

/// One chunk whose rows differ.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkDiff {
    pub chunk: u32,
    pub source_rows: u64,
    /// Rows of the chunk's keys found on the target.
    pub target_rows: u64,
    /// Order-free checksums (the sum of the rows' hashes), as hex.
    pub source_checksum: String,
    pub target_checksum: String,
    pub missing_rows: u64,
    pub missing_keys: Vec<String>,
    pub different_rows: u64,
    pub different_keys: Vec<String>,
}

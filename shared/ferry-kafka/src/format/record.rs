//! What a format makes: a record ready to produce, or why an event has none in that format.

use ferry_domain::task_config::Format;

/// A record ready to produce: key, payload and the headers every record carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// The row's key as JSON (`{"id": 7}`), for compaction and partitioning; `None` for
    /// transaction and DDL records.
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// A tombstone: the key with no value at all (Kafka's null, not an empty payload), which a
    /// compacted topic takes as "drop this key".
    pub tombstone: bool,
    pub idempotency_key: String,
    pub position: String,
}

/// Why an event cannot be encoded in the task's format.
#[derive(Debug, thiserror::Error)]
#[error("format {format:?} cannot encode this event: {reason}")]
pub struct UnsupportedFormat {
    pub format: Format,
    pub reason: String,
}

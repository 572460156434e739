//! What a destination is to the loop: it queues a record with a sequence number and reports the
//! record's outcome later, on the channel it was made with.

use std::future::Future;
use std::time::{Duration, Instant};

use ferry_domain::change::ChangeEvent;
use ferry_kafka::format::Record;
use ferry_kafka::sink::Landed;
use tokio::sync::mpsc;

use crate::error::TaskError;

/// A record's outcome, reported by its destination when it learned it.
#[derive(Debug)]
pub(crate) struct Ack {
    pub(crate) seq: u64,
    /// Where the record landed, for a destination that says (a topic's partition and offset).
    pub(crate) result: Result<Option<Landed>, TaskError>,
    pub(crate) at: Instant,
}

pub(crate) type AckSender = mpsc::UnboundedSender<Ack>;

/// Where records go. A destination queues a record numbered `seq` and later reports its
/// outcome on the [`AckSender`] it was made with.
pub(crate) trait Destination: Send + Sync {
    /// The topic or stream name records are encoded for.
    fn name(&self) -> &str;

    /// Whether this destination takes tombstones (records with a key and no value: Kafka
    /// topics do; a Kinesis record always has data, so a stream skips them).
    fn carries_tombstones(&self) -> bool {
        true
    }

    /// The partition `record` goes to (whose tail decides whether it is already there).
    fn partition_of(&self, record: &Record) -> usize;

    /// Queues `record` of `event` as number `seq` to `partition` (from
    /// [`Destination::partition_of`]); `may_send` is asked first (the lease).
    fn send(
        &self,
        seq: u64,
        event: &ChangeEvent,
        record: &Record,
        partition: usize,
        may_send: &(dyn Fn() -> Result<(), TaskError> + Sync),
    ) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// Drops what is queued and not yet sent (the lease is ending).
    fn purge(&self);

    /// Waits for every queued record (at the loop's end).
    fn flush(&self) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// After the loop failed: drops what is queued and waits, at most `within`, until every
    /// record in flight is acknowledged or failed, so that none of this loop's records can
    /// land after the next loop has read the topic's tail.
    fn abandon(&self, within: Duration) -> impl Future<Output = ()> + Send;
}

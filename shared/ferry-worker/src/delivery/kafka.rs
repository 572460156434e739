//! The task's Kafka topic as a destination: a producer whose delivery callback feeds the ack
//! window by sequence number (no future per record), the record's Kafka timestamp, and the
//! topic's tail read when the loop starts.
//!
//! The producer's settings (idempotent, gapless, lz4, the message timeout below the lease's
//! margin) and its final errors are [`ferry_kafka::sink`]'s.

use std::time::Duration;

use chrono::Utc;
use ferry_domain::change::ChangeEvent;
use ferry_kafka::format::Record;
use ferry_kafka::sink::{AckedProducer, Landed, SinkError, partition_for};

use super::destination::{AckSender, Destination};
use crate::error::TaskError;

/// The task's topic.
pub(crate) struct KafkaTopic {
    producer: AckedProducer,
    partitions: i32,
    /// Bounds how old a record's timestamp may be (see [`kafka_timestamp`]).
    retention_ms: i64,
}

impl KafkaTopic {
    pub(crate) fn new(producer: AckedProducer, partitions: i32, retention_ms: i64) -> Self {
        Self {
            producer,
            partitions,
            retention_ms,
        }
    }

    /// Acknowledgements of this topic's records go to `acks`.
    pub(crate) fn acks_to(
        acks: AckSender,
    ) -> impl Fn(u64, Result<Landed, SinkError>) + Send + Sync {
        move |seq, result| {
            let _ = acks.send(super::destination::Ack {
                seq,
                result: result.map(Some).map_err(TaskError::from),
                at: std::time::Instant::now(),
            });
        }
    }
}

/// A record's Kafka timestamp: the change's source time, so consumers start from a source time
/// and `offsets_for_times` finds one, but never older than half the topic's retention. Kafka
/// deletes by timestamp: a change read long after it was made (a worker down for days, a lagging
/// source) would otherwise be deleted right after it was produced. The exact source time is
/// always in the payload.
fn kafka_timestamp(source_ms: i64, now_ms: i64, retention_ms: i64) -> i64 {
    source_ms.max(now_ms - retention_ms / 2)
}

impl Destination for KafkaTopic {
    fn name(&self) -> &str {
        self.producer.topic()
    }

    fn partition_of(&self, record: &Record) -> usize {
        usize::try_from(partition_for(record.key.as_deref(), self.partitions)).unwrap_or(0)
    }

    async fn send(
        &self,
        seq: u64,
        event: &ChangeEvent,
        record: &Record,
        partition: usize,
        may_send: &(dyn Fn() -> Result<(), TaskError> + Sync),
    ) -> Result<(), TaskError> {
        let at = kafka_timestamp(
            event.timestamp.timestamp_millis(),
            Utc::now().timestamp_millis(),
            self.retention_ms,
        );
        // A partition of this topic: fewer than i32::MAX.
        let partition = i32::try_from(partition).unwrap_or_default();
        self.producer
            .send(seq, record, partition, at, may_send)
            .await
    }

    fn purge(&self) {
        self.producer.purge_queued();
    }

    async fn flush(&self) -> Result<(), TaskError> {
        Ok(self.producer.flush(Duration::from_secs(30)).await?)
    }

    async fn abandon(&self, within: Duration) {
        self.producer.purge_queued();
        if let Err(e) = self.producer.flush(within).await {
            tracing::warn!(topic = self.producer.topic(), error = %e, "records still in flight after the loop failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_times_are_source_times_but_never_older_than_half_the_retention() {
        let day = 86_400_000;
        let now = 100 * day;
        assert_eq!(kafka_timestamp(now - 5_000, now, 7 * day), now - 5_000);
        assert_eq!(
            kafka_timestamp(now - 30 * day, now, 7 * day),
            now - 7 * day / 2,
            "a month-old change stays in a 7-day topic for 3.5 days at least"
        );
    }
}

//! Consumer groups on the broker: how far each has read a task's topic, and deleting one.
//!
//! # Progress
//!
//! A group's progress comes from its committed offsets and the topic's watermarks, per
//! partition. Records carry the change's source time as their Kafka timestamp, so:
//!
//! - the **consumption checkpoint** is the source time of the last consumed record (the one
//!   before the committed offset);
//! - the **delay** is zero when the group has consumed everything, else the age of the oldest
//!   record it has not consumed (now − its source time): how long a change has waited for it;
//! - **unconsumed** is the number of records after the committed offsets.
//!
//! A group that never committed has consumed nothing: everything retained is unconsumed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::sink::{SinkError, client_config};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A record's timestamp: the change's source time.
type SourceTime = DateTime<Utc>;

/// One partition of a group's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionProgress {
    pub partition: i32,
    /// The next offset the group reads; `None` if it never committed.
    pub committed_offset: Option<i64>,
    /// The offset the next record will get.
    pub high_watermark: i64,
    pub unconsumed: i64,
    /// Source time of the last consumed record (when still retained).
    pub consumed_until: Option<DateTime<Utc>>,
    /// Source time of the oldest unconsumed record.
    pub oldest_unconsumed: Option<DateTime<Utc>>,
}

/// A group's progress on a topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupProgress {
    /// The consumption checkpoint: the latest source time the group consumed up to, over all
    /// partitions.
    pub consumption_checkpoint: Option<DateTime<Utc>>,
    pub delay_seconds: f64,
    pub unconsumed: i64,
    pub partitions: Vec<PartitionProgress>,
}

impl GroupProgress {
    fn from_partitions(partitions: Vec<PartitionProgress>, now: DateTime<Utc>) -> Self {
        let oldest = partitions.iter().filter_map(|p| p.oldest_unconsumed).min();
        Self {
            consumption_checkpoint: partitions.iter().filter_map(|p| p.consumed_until).max(),
            delay_seconds: oldest
                .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
            unconsumed: partitions.iter().map(|p| p.unconsumed).sum(),
            partitions,
        }
    }
}

/// The progress of consumer group `group` on `topic`, or `None` when the topic does not exist
/// (the task never started).
pub async fn group_progress(
    bootstrap: &str,
    topic: &str,
    group: &str,
) -> Result<Option<GroupProgress>, SinkError> {
    let (bootstrap, topic, group) = (bootstrap.to_owned(), topic.to_owned(), group.to_owned());
    tokio::task::spawn_blocking(move || progress_blocking(&bootstrap, &topic, &group))
        .await
        .map_err(|e| SinkError::Transient(e.to_string()))?
}

fn progress_blocking(
    bootstrap: &str,
    topic: &str,
    group: &str,
) -> Result<Option<GroupProgress>, SinkError> {
    let kafka = |e: rdkafka::error::KafkaError| SinkError::from_kafka(&e);
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka)?;
    let metadata = c.fetch_metadata(Some(topic), TIMEOUT).map_err(kafka)?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    let mut tpl = TopicPartitionList::new();
    for p in t.partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = c.committed_offsets(tpl, TIMEOUT).map_err(kafka)?;
    let mut partitions = Vec::new();
    for p in t.partitions() {
        let (low, high) = c.fetch_watermarks(topic, p.id(), TIMEOUT).map_err(kafka)?;
        let committed_offset =
            committed
                .find_partition(topic, p.id())
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
        // What the group reads next: its commit, or the first retained record.
        let next = committed_offset.unwrap_or(low).clamp(low, high);
        let (consumed_until, oldest_unconsumed) =
            times_around(bootstrap, topic, p.id(), next, low, high)?;
        partitions.push(PartitionProgress {
            partition: p.id(),
            committed_offset,
            high_watermark: high,
            unconsumed: high - next,
            consumed_until,
            oldest_unconsumed,
        });
    }
    Ok(Some(GroupProgress::from_partitions(partitions, Utc::now())))
}

/// The timestamps of the records just before and at offset `next` (when retained).
fn times_around(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    next: i64,
    low: i64,
    high: i64,
) -> Result<(Option<SourceTime>, Option<SourceTime>), SinkError> {
    let kafka = |e: rdkafka::error::KafkaError| SinkError::from_kafka(&e);
    let first = if next > low { next - 1 } else { next };
    if first >= high {
        return Ok((None, None));
    }
    // No group: only reads.
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", "ferry-progress-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(kafka)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(first))
        .map_err(kafka)?;
    c.assign(&tpl).map_err(kafka)?;
    let want = if next > low && next < high { 2 } else { 1 };
    let mut times = Vec::with_capacity(want);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while times.len() < want && std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let at = m
                    .timestamp()
                    .to_millis()
                    .and_then(DateTime::from_timestamp_millis);
                times.push((m.offset(), at));
            }
            Some(Err(e)) => return Err(kafka(e)),
            None => {}
        }
    }
    let at = |offset: i64| {
        times
            .iter()
            .find(|(o, _)| *o == offset)
            .and_then(|(_, t)| *t)
    };
    let consumed = (next > low).then(|| at(next - 1)).flatten();
    let unconsumed = (next < high).then(|| at(next)).flatten();
    Ok((consumed, unconsumed))
}

/// Why a group could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum DeleteGroupError {
    /// Consumers are still in the group.
    #[error("the consumer group still has active members")]
    InUse,
    #[error(transparent)]
    Broker(#[from] SinkError),
}

/// Deletes consumer group `group` and its committed offsets from the broker; a group the
/// broker does not know is already deleted.
pub async fn delete_group(bootstrap: &str, group: &str) -> Result<(), DeleteGroupError> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .map_err(|e| SinkError::from_kafka(&e))?;
    let results = admin
        .delete_groups(
            &[group],
            &AdminOptions::new().operation_timeout(Some(TIMEOUT)),
        )
        .await
        .map_err(|e| SinkError::from_kafka(&e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((_, RDKafkaErrorCode::NonEmptyGroup)) => return Err(DeleteGroupError::InUse),
            Err((g, code)) => {
                return Err(SinkError::Transient(format!("deleting group {g}: {code}")).into());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn progress_sums_partitions_and_takes_the_oldest_wait() {
        let p = |partition, unconsumed, consumed: Option<&str>, oldest: Option<&str>| {
            PartitionProgress {
                partition,
                committed_offset: Some(10),
                high_watermark: 10 + unconsumed,
                unconsumed,
                consumed_until: consumed.map(t),
                oldest_unconsumed: oldest.map(t),
            }
        };
        let now = t("2026-11-22T10:00:10Z");
        let g = GroupProgress::from_partitions(
            vec![
                p(
                    0,
                    3,
                    Some("2026-11-22T09:59:00Z"),
                    Some("2026-11-22T10:00:00Z"),
                ),
                p(1, 0, Some("2026-11-22T10:00:05Z"), None),
                p(2, 1, None, Some("2026-11-22T10:00:08Z")),
            ],
            now,
        );
        assert_eq!(g.unconsumed, 4);
        assert_eq!(g.delay_seconds, 10.0);
        assert_eq!(g.consumption_checkpoint, Some(t("2026-11-22T10:00:05Z")));
        let caught_up =
            GroupProgress::from_partitions(vec![p(0, 0, Some("2026-11-22T09:59:00Z"), None)], now);
        assert_eq!(caught_up.delay_seconds, 0.0);
    }
}

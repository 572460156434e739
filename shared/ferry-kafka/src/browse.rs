//! Reading a task's topic for `GET …/changes`: the changes in a time range that pass a filter,
//! a page at a time.
//!
//! The range's offsets come from the broker's offsets for times (records carry their change's
//! source time as timestamp): per partition, from the first record at or after `from` to the
//! first after `to`. Each record in that span is checked against the range again (binlog times
//! have one-second resolution and are not strictly ordered). A page ends when it holds `limit`
//! changes, when `scan_limit` records were read, or when the span is read; the cursor says
//! where the next page starts, per partition, and where the span ends, so later pages read the
//! same span even while the task appends to the topic.

use std::time::{Duration, Instant};

use ferry_domain::task_config::{Format, Values};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::sink::{SinkError, client_config};
use crate::view::{ChangeView, RawRecord, view_with};
use crate::{KEY_HEADER, POSITION_HEADER};

const TIMEOUT: Duration = Duration::from_secs(10);
/// A page is given up to this long to read its records.
const PAGE_TIME: Duration = Duration::from_secs(20);

/// Where reading continues: per partition, the next offset and the span's end (exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowseCursor {
    pub partitions: Vec<(i32, i64, i64)>,
}

/// What to read.
#[derive(Debug, Clone)]
pub struct BrowseRequest {
    pub topic: String,
    pub format: Format,
    /// The task's value mapping (`dts-avro` records of each are read with their own schema).
    pub values: Values,
    /// The time range, milliseconds since the epoch, both ends included.
    pub from_ms: i64,
    pub to_ms: i64,
    pub cursor: Option<BrowseCursor>,
    pub limit: usize,
    pub scan_limit: usize,
}

/// One page.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowsePage {
    pub changes: Vec<ChangeView>,
    /// `None` when the span is read to its end.
    pub next: Option<BrowseCursor>,
    pub scanned: usize,
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BrowseError {
    #[error(transparent)]
    Broker(#[from] SinkError),
    /// The cursor names partitions or offsets the topic does not have (a forged or stale page
    /// token): reading it would wait for records that never come.
    #[error("{0}")]
    InvalidCursor(String),
}

/// Reads one page of `req` from the broker at `bootstrap`, keeping the changes `keep` accepts.
pub async fn browse(
    bootstrap: &str,
    req: BrowseRequest,
    keep: impl Fn(&ChangeView) -> bool + Send + 'static,
) -> Result<BrowsePage, BrowseError> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || browse_blocking(&bootstrap, &req, &keep))
        .await
        .map_err(|e| SinkError::Transient(e.to_string()))?
}

/// Refuses a cursor whose spans the topic does not have: an unknown or repeated partition, or
/// an end past the partition's high watermark (records that do not exist yet: a page would
/// wait for them until its time is up, every time).
fn check_cursor(c: &BaseConsumer, topic: &str, cursor: &BrowseCursor) -> Result<(), BrowseError> {
    let metadata = c.fetch_metadata(Some(topic), TIMEOUT).map_err(kafka)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (p, _, end) in &cursor.partitions {
        if !partitions.contains(p) || !seen.insert(*p) {
            return Err(BrowseError::InvalidCursor(format!(
                "the page token names partition {p}, which the topic does not have (or names twice)"
            )));
        }
        let (_, high) = c.fetch_watermarks(topic, *p, TIMEOUT).map_err(kafka)?;
        if *end > high {
            return Err(BrowseError::InvalidCursor(format!(
                "the page token reads partition {p} up to offset {end}, past its end ({high})"
            )));
        }
    }
    Ok(())
}

fn kafka(e: rdkafka::error::KafkaError) -> SinkError {
    SinkError::from_kafka(&e)
}

/// The first offset of each partition at or after `at_ms` (the high watermark when none is).
fn offsets_at(
    c: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
    at_ms: i64,
) -> Result<Vec<i64>, SinkError> {
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(at_ms))
            .map_err(kafka)?;
    }
    let found = c.offsets_for_times(tpl, TIMEOUT).map_err(kafka)?;
    partitions
        .iter()
        .map(|p| {
            let at = found
                .find_partition(topic, *p)
                .map(|e| e.offset())
                .unwrap_or(Offset::End);
            match at {
                Offset::Offset(o) if o >= 0 => Ok(o),
                _ => c
                    .fetch_watermarks(topic, *p, TIMEOUT)
                    .map(|(_, high)| high)
                    .map_err(kafka),
            }
        })
        .collect()
}

fn header<'a>(m: &'a rdkafka::message::BorrowedMessage<'_>, name: &str) -> &'a str {
    m.headers()
        .and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or_default()
}

fn browse_blocking(
    bootstrap: &str,
    req: &BrowseRequest,
    keep: &dyn Fn(&ChangeView) -> bool,
) -> Result<BrowsePage, BrowseError> {
    let c: BaseConsumer = client_config(bootstrap)
        .set("group.id", "ferry-changes-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        // Records of the span that retention deleted meanwhile are skipped, not waited for.
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(kafka)?;
    let mut spans = match &req.cursor {
        Some(cursor) => {
            check_cursor(&c, &req.topic, cursor)?;
            cursor.partitions.clone()
        }
        None => {
            let metadata = c.fetch_metadata(Some(&req.topic), TIMEOUT).map_err(kafka)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == req.topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            // No topic yet (a task configured but never started): nothing to read.
            if partitions.is_empty() {
                return Ok(BrowsePage {
                    changes: Vec::new(),
                    next: None,
                    scanned: 0,
                });
            }
            let starts = offsets_at(&c, &req.topic, &partitions, req.from_ms)?;
            let ends = offsets_at(&c, &req.topic, &partitions, req.to_ms.saturating_add(1))?;
            partitions
                .into_iter()
                .zip(starts.into_iter().zip(ends))
                .map(|(p, (s, e))| (p, s, e))
                .collect()
        }
    };
    let mut tpl = TopicPartitionList::new();
    for (p, next, end) in &spans {
        if next < end {
            tpl.add_partition_offset(&req.topic, *p, Offset::Offset(*next))
                .map_err(kafka)?;
        }
    }
    let mut changes = Vec::new();
    let mut scanned = 0;
    if tpl.count() > 0 {
        c.assign(&tpl).map_err(kafka)?;
    }
    let started = Instant::now();
    let unfinished = |spans: &[(i32, i64, i64)]| spans.iter().any(|(_, n, e)| n < e);
    while unfinished(&spans)
        && changes.len() < req.limit
        && scanned < req.scan_limit
        && started.elapsed() < PAGE_TIME
    {
        let Some(m) = c.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.map_err(kafka)?;
        let Some(span) = spans.iter_mut().find(|(p, ..)| *p == m.partition()) else {
            continue;
        };
        if m.offset() < span.1 || m.offset() >= span.2 {
            continue;
        }
        span.1 = m.offset() + 1;
        scanned += 1;
        // A tombstone (Debezium's, after a delete) is no change of its own: the delete is.
        if m.payload().is_none() {
            continue;
        }
        let timestamp_ms = m.timestamp().to_millis();
        if timestamp_ms.is_some_and(|t| t < req.from_ms || t > req.to_ms) {
            continue;
        }
        let raw = RawRecord {
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms,
            key: m.key(),
            payload: m.payload().unwrap_or_default(),
            idempotency_key: header(&m, KEY_HEADER),
            position: header(&m, POSITION_HEADER),
        };
        let change = view_with(req.format, req.values, &raw).map_err(|e| SinkError::Definite {
            message: e.to_string(),
            hint: "only Ferry may write to a task's topic".into(),
        })?;
        if keep(&change) {
            changes.push(change);
        }
    }
    changes.sort_by_key(|c| (c.timestamp, c.partition, c.offset));
    Ok(BrowsePage {
        changes,
        next: unfinished(&spans).then_some(BrowseCursor { partitions: spans }),
        scanned,
    })
}

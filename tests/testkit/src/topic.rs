//! Reading a whole topic back, record by record with Ferry's headers, for checks that every
//! change is there exactly once and in order, whatever the record format.

use std::time::Duration;

use anyhow::{Context, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::TestContext;

/// One record of a topic.
#[derive(Debug, Clone)]
pub struct TopicRecord {
    pub partition: i32,
    pub offset: i64,
    /// `ferry.key`: the idempotency key (`hb/…` for heartbeats).
    pub key: String,
    /// `ferry.position`: where the event is in the source's binlog.
    pub position: String,
    /// `ferry.source`: the source server.
    pub source: Option<String>,
    /// The Kafka message key: a row's primary key; none for transaction, DDL and heartbeat
    /// records.
    pub row_key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// The record has no value at all (a tombstone), not an empty one.
    pub tombstone: bool,
}

impl TopicRecord {
    pub fn is_heartbeat(&self) -> bool {
        self.key.starts_with("hb/")
    }

    /// A tombstone: Debezium's record after a delete, the key with no value.
    pub fn is_tombstone(&self) -> bool {
        self.tombstone
    }

    /// The position as (file number, offset), comparable.
    pub fn file_offset(&self) -> (u64, u64) {
        let at = self.position.split('@').next().unwrap_or_default();
        let (file, offset) = at.rsplit_once(':').unwrap_or_default();
        let n = file
            .rsplit_once('.')
            .and_then(|(_, n)| n.parse().ok())
            .unwrap_or(0);
        (n, offset.parse().unwrap_or(0))
    }
}

fn header(m: &rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<String> {
    m.headers().and_then(|h| {
        h.iter()
            .find(|x| x.key == name)
            .and_then(|x| x.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

impl TestContext {
    /// The high watermark of every partition of `topic` (empty when it does not exist); a
    /// broker slow to answer (a loaded machine) is asked again, up to five times.
    pub fn high_watermarks(&self, topic: &str) -> Result<Vec<i64>> {
        let mut tries = 0;
        loop {
            match self.high_watermarks_once(topic) {
                Err(e) if tries < 5 => {
                    tries += 1;
                    eprintln!("reading the watermarks of {topic} again: {e:#}");
                }
                other => return other,
            }
        }
    }

    fn high_watermarks_once(&self, topic: &str) -> Result<Vec<i64>> {
        let c: BaseConsumer = self.kafka_config().create()?;
        let meta = c.fetch_metadata(Some(topic), Duration::from_secs(30))?;
        let Some(t) = meta.topics().iter().find(|t| t.name() == topic) else {
            return Ok(Vec::new());
        };
        if t.error().is_some() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for p in 0..i32::try_from(t.partitions().len())? {
            out.push(c.fetch_watermarks(topic, p, Duration::from_secs(30))?.1);
        }
        Ok(out)
    }

    /// Every record of `topic` up to the high watermark of each partition when called, in
    /// partition and offset order.
    pub fn topic_records(&self, topic: &str) -> Result<Vec<TopicRecord>> {
        let highs = self.high_watermarks(topic)?;
        let mut out = Vec::new();
        for (p, high) in highs.iter().enumerate() {
            let partition = i32::try_from(p)?;
            if *high == 0 {
                continue;
            }
            let c: BaseConsumer = self
                .kafka_config()
                .set("group.id", self.group("topic-reader"))
                .set("enable.auto.commit", "false")
                .create()?;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
            c.assign(&tpl)?;
            let mut last = -1;
            while last + 1 < *high {
                let m = c.poll(Duration::from_secs(30)).with_context(|| {
                    format!("{topic}[{partition}]: no record after offset {last} in 30 s")
                })??;
                last = m.offset();
                out.push(TopicRecord {
                    partition,
                    offset: m.offset(),
                    key: header(&m, "ferry.key")
                        .with_context(|| format!("{topic}[{partition}]@{last} has no key"))?,
                    position: header(&m, "ferry.position").unwrap_or_default(),
                    source: header(&m, "ferry.source"),
                    row_key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    tombstone: m.payload().is_none(),
                });
            }
        }
        Ok(out)
    }
}

/// Checks that `records` (a whole topic) hold every change once: `rows` row records (not
/// counting tombstones), every idempotency key but heartbeats' once, and within each partition
/// in binlog order. Returns what is wrong, for the assertion's message.
pub fn exactly_once(records: &[TopicRecord], rows: usize) -> Result<(), String> {
    let data: Vec<&TopicRecord> = records.iter().filter(|r| !r.is_heartbeat()).collect();
    let mut seen = std::collections::HashMap::new();
    for r in &data {
        if let Some(first) = seen.insert(r.key.as_str(), (r.partition, r.offset)) {
            return Err(format!(
                "{} is in the topic twice: at {first:?} and at ({}, {})",
                r.key, r.partition, r.offset
            ));
        }
    }
    let row_records = data
        .iter()
        .filter(|r| r.row_key.is_some() && !r.is_tombstone())
        .count();
    if row_records != rows {
        return Err(format!("{row_records} row records, {rows} expected"));
    }
    let mut partitions: std::collections::BTreeMap<i32, (u64, u64)> = Default::default();
    for r in records {
        let at = r.file_offset();
        let prev = partitions.entry(r.partition).or_insert(at);
        if at < *prev {
            return Err(format!(
                "out of binlog order in partition {}: {} at offset {} after {prev:?}",
                r.partition, r.position, r.offset
            ));
        }
        *prev = at;
    }
    Ok(())
}

/// A topic of row changes applied in order, as a consumer would (see [`apply_rows`]).
#[derive(Debug, Default)]
pub struct Applied {
    /// Per row `id`, the last image's value of the column asked for; deleted rows gone.
    pub table: std::collections::BTreeMap<i64, i64>,
    /// Idempotency keys (heartbeats aside) seen more than once, with their offsets.
    pub twice: Vec<String>,
    /// Records that are snapshot reads (`op: "r"`, a backfill's rows).
    pub reads: usize,
    /// Records read, heartbeats included.
    pub records: usize,
}

/// The records a worker reported repairing in `instance`'s topic (`Topic Repaired` events among
/// `events`: strays it left in place plus records it sent again): the only repeats the topic may
/// hold (the local broker doubles records under load, docs/reliability.md).
pub fn repairs_reported(events: &[serde_json::Value], instance: &str) -> u64 {
    events
        .iter()
        .filter(|e| e["detail-type"] == "Topic Repaired" && e["detail"]["instance_id"] == instance)
        .map(|e| {
            e["detail"]["resent"].as_u64().unwrap_or_default()
                + e["detail"]["strays"].as_u64().unwrap_or_default()
        })
        .sum()
}

/// Applies `records` (a whole topic in the default format, rows with an integer `id`) in order:
/// creates, updates and snapshot reads upsert `column`, deletes remove the row.
pub fn apply_rows(records: &[TopicRecord], column: &str) -> Applied {
    let mut out = Applied {
        records: records.len(),
        ..Applied::default()
    };
    let mut seen = std::collections::HashSet::new();
    for r in records.iter().filter(|r| !r.is_heartbeat()) {
        if !seen.insert(r.key.as_str()) {
            out.twice
                .push(format!("{} at {} ({})", r.key, r.offset, r.position));
        }
        if r.is_tombstone() || r.row_key.is_none() {
            continue;
        }
        let Some(change) = crate::change_json(Some(&r.payload)) else {
            continue;
        };
        let id = |image: &serde_json::Value| image["id"].as_i64().unwrap_or_default();
        match change["op"].as_str() {
            Some("d") => {
                out.table.remove(&id(&change["before"]));
            }
            op => {
                out.reads += usize::from(op == Some("r"));
                let after = &change["after"];
                out.table
                    .insert(id(after), after[column].as_i64().unwrap_or_default());
            }
        }
    }
    out
}

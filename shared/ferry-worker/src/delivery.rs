//! Where a capture loop's records go: the task's Kafka topic or a Kinesis data stream, the
//! window of records awaiting acknowledgement, and what a restarted loop finds already
//! delivered.
//!
//! # Kafka
//!
//! The topic is the task's own; after a restart the loop reads the last record of each
//! partition ([`Tail`]) and skips re-read records up to it: the topic holds every change once.
//! Whatever kind of record is last (a row, BEGIN, COMMIT, DDL or a heartbeat), it names the
//! position it was read at; a tail written from another source server's binlog is refused
//! (positions of two servers are not comparable).
//!
//! # Kinesis
//!
//! The stream is the user's (named in the task's delivery); records go in per-row order (see
//! `ferry_aws::streams`). A stream's tail cannot be read cheaply, so after a crash the records
//! since the last checkpoint are delivered again: at least once, never lost.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use ferry_api::AppState;
use ferry_aws::streams::{StreamAck, StreamError, StreamSink, partition_key};
use ferry_domain::change::{ChangeEvent, ChangeKind};
use ferry_domain::metrics::Side;
use ferry_domain::position::Position;
use ferry_domain::task_config::{Destination as Kind, Partitioning, TaskConfig};
use ferry_kafka::encode::encode;
use ferry_kafka::sink::{
    Delivery, Sink, SinkError, TailHeaders, delivered, ensure_topic, last_records,
};
use futures::FutureExt;

use crate::capture::CaptureError;
use crate::lease::{Expiry, LeaseClock};
use crate::metrics::TaskMeter;

fn closed() -> CaptureError {
    CaptureError::Connection {
        side: Side::Target,
        message: "the producer was closed before a record was delivered".into(),
    }
}

impl From<Expiry> for CaptureError {
    fn from(e: Expiry) -> Self {
        match e {
            Expiry::Lost => Self::LeaseLost,
            Expiry::Expiring => Self::LeaseExpiring,
        }
    }
}

impl From<StreamError> for CaptureError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Definite { message, hint } => Self::Definite {
                code: "kinesis",
                message,
                hint,
            },
            StreamError::Transient(message) => Self::Connection {
                side: Side::Target,
                message,
            },
        }
    }
}

/// A record's acknowledgement.
pub(crate) enum Ack {
    Kafka(Delivery),
    Stream(StreamAck),
}

/// Where a task's records go.
pub(crate) enum Destination {
    /// The topic's retention bounds how old a record's timestamp may be (see [`kafka_timestamp`]).
    Kafka {
        sink: Sink,
        retention_ms: i64,
    },
    Kinesis {
        sink: StreamSink,
        stream: String,
    },
}

impl Destination {
    /// Opens the task's destination (creating its topic), and what it already holds: the
    /// tail of each partition of a topic, nothing for a stream.
    pub(crate) async fn open(
        state: &AppState,
        topic: &str,
        config: &TaskConfig,
        source: &str,
        lease: &LeaseClock,
    ) -> Result<(Self, Vec<Option<Tail>>), CaptureError> {
        if let (Kind::Kinesis, Some(stream)) = (
            config.delivery.destination,
            config.delivery.kinesis_stream.as_deref(),
        ) {
            state.streams().check(stream).await?;
            let sink = state.streams().sink(stream);
            return Ok((
                Self::Kinesis {
                    sink,
                    stream: stream.to_owned(),
                },
                Vec::new(),
            ));
        }
        let bootstrap = state.settings().kafka_bootstrap.clone();
        let retention_ms = i64::from(config.delivery.retention_hours) * 3_600_000;
        let partitions = match config.delivery.partitioning {
            Partitioning::Single => 1,
            Partitioning::KeyHash { partitions } => i32::from(partitions),
        };
        ensure_topic(&bootstrap, topic, partitions, retention_ms).await?;
        let sink = Sink::new(
            &bootstrap,
            topic,
            partitions,
            source,
            lease.times().message_timeout(),
        )?;
        // The last record of each partition: re-read records at or before it are already there.
        let tails = last_records(&bootstrap, topic, partitions)
            .await?
            .into_iter()
            .map(|last| last.map(|h| Tail::parse(&h, source)).transpose())
            .collect::<Result<_, _>>()?;
        Ok((Self::Kafka { sink, retention_ms }, tails))
    }

    /// The topic or stream name records are encoded for.
    pub(crate) fn name<'a>(&'a self, topic: &'a str) -> &'a str {
        match self {
            Self::Kafka { .. } => topic,
            Self::Kinesis { stream, .. } => stream,
        }
    }

    /// Waits for every queued record (at the loop's end).
    pub(crate) async fn flush(&self) -> Result<(), CaptureError> {
        match self {
            Self::Kafka { sink, .. } => Ok(sink.flush(std::time::Duration::from_secs(30)).await?),
            // The window already waited for every acknowledgement.
            Self::Kinesis { .. } => Ok(()),
        }
    }

    /// Drops what is queued and not yet sent (the lease is ending).
    pub(crate) fn purge(&self) {
        match self {
            Self::Kafka { sink, .. } => sink.purge_queued(),
            // Each record is one PutRecords call awaited in order: nothing is queued.
            Self::Kinesis { .. } => {}
        }
    }

    /// After the loop failed: drops what is queued and waits, at most `within`, until every
    /// record in flight is acknowledged or failed, so that none of this loop's records can
    /// land after the next loop (this worker's or another's) has read the topic's tail.
    pub(crate) async fn abandon(&self, within: std::time::Duration) {
        if let Self::Kafka { sink, .. } = self {
            sink.purge_queued();
            if let Err(e) = sink.flush(within).await {
                tracing::warn!(topic = sink.topic(), error = %e, "records still in flight after the loop failed");
            }
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

/// The Kinesis partition key of an event: a row's table and key; the database of a DDL
/// statement; the transaction of BEGIN and COMMIT records.
fn kinesis_key(event: &ChangeEvent, key: Option<&[u8]>) -> String {
    match &event.kind {
        ChangeKind::Row(row) => {
            let name = row.table().name();
            partition_key(
                &format!("{}.{}", name.database, name.table),
                key.unwrap_or_default(),
            )
        }
        ChangeKind::Ddl { database, .. } => {
            format!("ddl#{}", database.as_deref().unwrap_or_default())
        }
        _ => event
            .transaction
            .as_ref()
            .map_or_else(|| "heartbeat".to_owned(), |t| format!("tx#{}", t.id)),
    }
}

/// The last record already in the topic when the loop started: re-read records at or before
/// it were produced before and are skipped.
#[derive(Debug)]
pub(crate) struct Tail {
    pub(crate) position: Position,
    /// The record's event index in its transaction; `u32::MAX` for a heartbeat, which covers
    /// every event at its position.
    index: u32,
}

impl Tail {
    /// The tail from a record's headers, for a loop reading `source`'s binlog.
    pub(crate) fn parse(h: &TailHeaders, source: &str) -> Result<Self, CaptureError> {
        let foreign = |written: &str| {
            CaptureError::Definite {
            code: "topic_tail_source",
            message: format!(
                "the topic's last record was read from another source server ({written}) than the one the task reads now ({source}): binlog positions of two servers cannot be compared"
            ),
            hint: "reset the task: the next start writes a new topic generation from the new source (consumers follow GET …/task's delivery.topic)".into(),
        }
        };
        if let Some(written) = &h.source
            && written != source
        {
            return Err(foreign(written));
        }
        let bad = || {
            CaptureError::Definite {
            code: "topic_tail",
            message: format!(
                "the last record of the topic has headers Ferry did not write ({}, {})",
                h.key, h.position
            ),
            hint: "only Ferry may write to a task's topic; reset the task to start a new topic generation".into(),
        }
        };
        // A heartbeat's key is `hb/<position>`: every event up to its position was before it.
        let index = if h.key.starts_with("hb/") {
            u32::MAX
        } else {
            h.key
                .rsplit_once('/')
                .and_then(|(_, i)| i.parse().ok())
                .ok_or_else(bad)?
        };
        Ok(Self {
            position: h.position.parse().map_err(|_| bad())?,
            index,
        })
    }

    /// Whether the event at `position` with row `index` is at or before this tail. Rows of one
    /// rows event share its position and are told apart by their index.
    fn covers(&self, position: &Position, index: u32) -> bool {
        match position.cmp_file_offset(&self.position) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => index <= self.index,
            std::cmp::Ordering::Greater => false,
        }
    }
}

/// Where the loop's records go, and what it knows about what is already there.
pub(crate) struct Out<'a> {
    pub(crate) meter: &'a TaskMeter,
    pub(crate) dest: &'a Destination,
    pub(crate) format: ferry_domain::task_config::Format,
    pub(crate) topic: &'a str,
    /// The last record of each partition when the loop started (until passed).
    pub(crate) skip_until: Vec<Option<Tail>>,
    pub(crate) window: Window,
    pub(crate) last_key: Option<String>,
    /// Nothing is sent once the lease is ending (see `crate::lease`).
    pub(crate) lease: &'a LeaseClock,
}

impl Out<'_> {
    /// Encodes and queues one event, unless it is already in the topic from before a restart.
    pub(crate) async fn produce(
        &mut self,
        event: &ChangeEvent,
        total_order: u64,
        columns: Option<&[String]>,
    ) -> Result<(), CaptureError> {
        let record = encode(self.format, self.topic, event, total_order, columns).map_err(|e| {
            CaptureError::Definite {
                code: "encode",
                message: format!("{e} (at {})", event.position),
                hint: "report this with the position; another format of the task may carry the event meanwhile".into(),
            }
        })?;
        let Some(record) = record else { return Ok(()) };
        // Already in the topic: at or before its partition's last record when the loop started.
        let partition = match self.dest {
            Destination::Kafka { sink, .. } => {
                usize::try_from(sink.partition_of(&record)).unwrap_or(0)
            }
            Destination::Kinesis { .. } => 0,
        };
        if let Some(slot) = self.skip_until.get_mut(partition)
            && let Some(tail) = slot
        {
            let index = event.transaction.as_ref().map_or(0, |t| t.event_index);
            if tail.covers(&event.position, index) {
                return Ok(());
            }
            *slot = None;
        }
        let bytes = record.payload.len();
        let lease = self.lease;
        let dest = self.dest;
        let may_send = || {
            lease.check().map_err(|e| {
                dest.purge();
                CaptureError::from(e)
            })
        };
        let ack = match self.dest {
            Destination::Kafka { sink, retention_ms } => {
                let at = kafka_timestamp(
                    event.timestamp.timestamp_millis(),
                    Utc::now().timestamp_millis(),
                    *retention_ms,
                );
                Ack::Kafka(sink.send(&record, at, may_send).await?)
            }
            Destination::Kinesis { sink, .. } => {
                may_send()?;
                let key = kinesis_key(event, record.key.as_deref());
                Ack::Stream(sink.send(key, record.payload).await?)
            }
        };
        self.window.push(ack);
        self.meter
            .delivered(bytes, matches!(event.kind, ChangeKind::Row(_)));
        self.last_key = Some(event.idempotency_key());
        Ok(())
    }
}

/// Records sent and not yet acknowledged, and the commits waiting for them. The loop never
/// stops for a checkpoint: it takes the acknowledgements that have arrived, and checkpoints the
/// newest commit whose records are all acknowledged.
pub(crate) struct Window {
    pub(crate) pending: VecDeque<Ack>,
    sent: u64,
    acked: u64,
    /// Commits in order: (records sent up to it, its position, its source time).
    commits: VecDeque<(u64, Position, DateTime<Utc>)>,
}

impl Window {
    pub(crate) fn new() -> Self {
        Self {
            pending: VecDeque::new(),
            sent: 0,
            acked: 0,
            commits: VecDeque::new(),
        }
    }

    fn push(&mut self, d: Ack) {
        self.pending.push_back(d);
        self.sent += 1;
    }

    pub(crate) fn commit(&mut self, position: Position, time: DateTime<Utc>) {
        self.commits.push_back((self.sent, position, time));
    }

    /// Takes the acknowledgements that have arrived, oldest first, without waiting.
    pub(crate) fn reap(&mut self) -> Result<(), CaptureError> {
        while let Some(front) = self.pending.front_mut() {
            let done = match front {
                Ack::Kafka(d) => match d.now_or_never() {
                    None => false,
                    Some(Ok(Ok(_))) => true,
                    Some(Ok(Err((e, _)))) => return Err(SinkError::from_kafka(&e).into()),
                    Some(Err(_)) => return Err(closed()),
                },
                Ack::Stream(a) => match a.now_or_never() {
                    None => false,
                    Some(Ok(Ok(()))) => true,
                    Some(Ok(Err(e))) => return Err(e.into()),
                    Some(Err(_)) => return Err(closed()),
                },
            };
            if !done {
                break;
            }
            self.pending.pop_front();
            self.acked += 1;
        }
        Ok(())
    }

    /// Waits for the oldest `n` records.
    pub(crate) async fn wait_oldest(&mut self, n: usize) -> Result<(), CaptureError> {
        for _ in 0..n {
            let Some(d) = self.pending.pop_front() else {
                break;
            };
            match d {
                Ack::Kafka(d) => {
                    delivered(d).await?;
                }
                Ack::Stream(a) => a.await.map_err(|_| closed())??,
            }
            self.acked += 1;
        }
        Ok(())
    }

    /// The newest commit whose records are all acknowledged, if one became so.
    pub(crate) fn settled(&mut self) -> Option<(Position, DateTime<Utc>)> {
        let mut newest = None;
        while self.commits.front().is_some_and(|(n, ..)| *n <= self.acked) {
            newest = self.commits.pop_front().map(|(_, p, t)| (p, t));
        }
        newest
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

    fn headers(key: &str, position: &str, source: Option<&str>) -> TailHeaders {
        TailHeaders {
            key: key.into(),
            position: position.into(),
            source: source.map(Into::into),
        }
    }

    fn parse(key: &str, position: &str) -> Result<Tail, CaptureError> {
        Tail::parse(&headers(key, position, Some("server_id:1")), "server_id:1")
    }

    #[test]
    fn the_tail_covers_what_was_produced() {
        let tail = parse("0-1-9/2", "binlog.000002:500@0-1-9").unwrap();
        let at = |p: &str| p.parse::<Position>().unwrap();
        assert!(tail.covers(&at("binlog.000001:900"), 7), "an earlier file");
        assert!(tail.covers(&at("binlog.000002:400"), 9), "an earlier event");
        assert!(tail.covers(&at("binlog.000002:500"), 2), "the tail itself");
        assert!(
            !tail.covers(&at("binlog.000002:500"), 3),
            "a later row of the same event"
        );
        assert!(!tail.covers(&at("binlog.000002:501"), 1));
        assert!(parse("no-index", "binlog.000002:500").is_err());
        assert!(parse("x/1", "not a position").is_err());
    }

    #[test]
    fn a_heartbeat_tail_covers_everything_up_to_its_position() {
        let tail = parse("hb/binlog.000002:500@0-1-9", "binlog.000002:500@0-1-9").unwrap();
        let at = |p: &str| p.parse::<Position>().unwrap();
        assert!(
            tail.covers(&at("binlog.000002:500"), 0),
            "a heartbeat again"
        );
        assert!(
            tail.covers(&at("binlog.000002:500"), 7),
            "the commit before it"
        );
        assert!(tail.covers(&at("binlog.000001:900"), 3));
        assert!(!tail.covers(&at("binlog.000002:501"), 0), "the next event");
    }

    #[test]
    fn a_tail_from_another_server_is_refused() {
        let h = headers("0-1-9/2", "binlog.000002:500", Some("server_id:1"));
        let Err(CaptureError::Definite { code, .. }) = Tail::parse(&h, "server_id:2") else {
            panic!("a tail of server 1 read by a loop on server 2")
        };
        assert_eq!(code, "topic_tail_source");
        // Records written before Ferry named their source are trusted.
        let old = headers("0-1-9/2", "binlog.000002:500", None);
        assert!(Tail::parse(&old, "server_id:2").is_ok());
    }
}

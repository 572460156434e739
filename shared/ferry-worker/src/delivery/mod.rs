//! Where a capture loop's records go, one role per file:
//!
//! - [`window`]: the ack window, pure bookkeeping of records in flight and the commits waiting
//!   for them;
//! - [`tail`]: what a restarted loop finds already in the topic, and skips;
//! - one file per destination behind the [`Destination`] trait: [`kafka`] (the task's topic,
//!   exactly once), [`kinesis`] (a data stream, at least once), [`discard`] (benchmarks only).
//!
//! [`Delivery`] joins them for the loop: it encodes an event, skips it when the topic already
//! has it, sends it with a sequence number, and takes acknowledgements as they arrive; the loop
//! only asks it which commit is settled.

mod destination;
mod discard;
mod kafka;
mod kinesis;
pub(crate) mod tail;
mod window;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ferry_api::AppState;
use ferry_domain::change::{ChangeEvent, ChangeKind};
use ferry_domain::position::Position;
use ferry_domain::selection::ColumnMask;
use ferry_domain::task_config::{Destination as Kind, Partitioning, TaskConfig};
use ferry_kafka::format::{Part, Record, Style, encode_part_into};
use ferry_kafka::sink::{
    AckedProducer, Landed, Watermarks, ensure_topic, read_headers, watermarks,
};
use tokio::sync::mpsc;

pub(crate) use destination::{Ack, Destination};
pub(crate) use discard::Discard;
pub(crate) use kafka::KafkaTopic;
pub(crate) use kinesis::KinesisStream;
pub(crate) use tail::{Already, Found, Tail, Tails};
use window::AckWindow;

use crate::error::{DefiniteError, TaskError, target_failed};
use crate::internal_events::RecordDelivered;
use crate::lease::LeaseClock;
use crate::metrics::TaskMeter;

/// At most this many records wait for the destination's acknowledgement; past that the loop
/// waits for the oldest half while the destination keeps receiving the rest.
const MAX_IN_FLIGHT: usize = 10_000;

/// A record in flight longer than this holds the loop back until it is acknowledged: what the
/// loop hands the producer is what the destination takes in about a second, so no record
/// waits in the producer's queue long enough to reach its message timeout (a few seconds,
/// below the lease's margin) however slow the destination is.
const MAX_IN_FLIGHT_AGE: Duration = Duration::from_secs(1);

/// The record buffer is kept between records up to this capacity (a large row's is dropped).
const KEEP_BUFFER: usize = 1 << 20;

/// The destination a task's configuration names, opened.
pub(crate) enum Opened {
    Kafka(KafkaTopic),
    Kinesis(KinesisStream),
    Discard(Discard),
}

/// A restart reads at most this many records per partition to check what the topic holds
/// after the checkpoint; past it, it trusts the partition's last record (see [`tail`]).
const MAX_RECONCILED: i64 = 2_000_000;

/// Opens the task's destination (creating its topic) and reads what it already holds after the
/// checkpoint, whose topic offsets are `offsets` (see [`window`]): each partition's records
/// from there, or only its last record when the offsets are unknown; nothing for a stream.
/// `discard` replaces it with [`Discard`] (benchmarks). Acknowledgements arrive on the returned
/// receiver.
pub(crate) async fn open(
    state: &AppState,
    topic: &str,
    config: &TaskConfig,
    (source, offsets): (&str, Option<&[i64]>),
    lease: &LeaseClock,
    discard: bool,
) -> Result<(Opened, Tails, mpsc::UnboundedReceiver<Ack>), TaskError> {
    let (acks, received) = mpsc::unbounded_channel();
    if discard {
        return Ok((
            Opened::Discard(Discard::new(topic, acks)),
            Tails::default(),
            received,
        ));
    }
    if let (Kind::Kinesis, Some(stream)) = (
        config.delivery.destination,
        config.delivery.kinesis_stream.as_deref(),
    ) {
        state.streams().check(stream).await?;
        let sink = state.streams().sink(stream);
        return Ok((
            Opened::Kinesis(KinesisStream::new(sink, stream.to_owned(), acks)),
            Tails::default(),
            received,
        ));
    }
    let bootstrap = state.settings().kafka_bootstrap.clone();
    let retention_ms = i64::from(config.delivery.retention_hours) * 3_600_000;
    let partitions = match config.delivery.partitioning {
        Partitioning::Single => 1,
        Partitioning::KeyHash { partitions } => i32::from(partitions),
    };
    ensure_topic(&bootstrap, topic, partitions, retention_ms).await?;
    let producer = AckedProducer::new(
        &bootstrap,
        topic,
        source,
        lease.times().message_timeout(),
        Box::new(KafkaTopic::acks_to(acks)),
    )?;
    let marks = watermarks(&bootstrap, topic, partitions).await?;
    let offsets = offsets.filter(|o| o.len() == marks.len());
    let mut held = Vec::with_capacity(marks.len());
    for (p, w) in marks.iter().enumerate() {
        let from = offsets.and_then(|o| o.get(p).copied());
        // Fewer than i32::MAX partitions.
        let p = i32::try_from(p).unwrap_or_default();
        held.push(read_held(&bootstrap, topic, (p, *w), from, source).await?);
    }
    Ok((
        Opened::Kafka(KafkaTopic::new(producer, partitions, retention_ms)),
        Tails::reconciling(held, &marks),
        received,
    ))
}

/// What partition `p` holds after the checkpoint, and the offset it starts at (`None`:
/// unknown): its records from the checkpoint's offset `from`, or, when that is unknown,
/// deleted by retention, beyond the end or too far back, its last record.
async fn read_held(
    bootstrap: &str,
    topic: &str,
    (p, w): (i32, Watermarks),
    from: Option<i64>,
    source: &str,
) -> Result<tail::PartitionFound, TaskError> {
    if w.high <= w.low {
        return Ok((Ok(None), Some(w.high)));
    }
    match from {
        Some(from) if from >= w.low && from <= w.high && w.high - from <= MAX_RECONCILED => {
            let read = read_headers(bootstrap, topic, p, (from, w.high), Found::record).await?;
            return Ok((Ok(Found::new(read, source)?), Some(from)));
        }
        Some(from) => tracing::warn!(
            topic,
            partition = p,
            from,
            low = w.low,
            high = w.high,
            "the checkpoint's offset is outside what the topic can check: only the partition's last record is read"
        ),
        None => {}
    }
    let (_, last) = read_headers(bootstrap, topic, p, (w.high - 1, w.high), |_, _| ()).await?;
    Ok((
        Err(last.map(|h| Tail::parse(&h, source)).transpose()?),
        None,
    ))
}

/// A loop's records on their way: encoded, skipped when already delivered, sent, and
/// acknowledged into the window.
pub(crate) struct Delivery<D> {
    dest: D,
    acks: mpsc::UnboundedReceiver<Ack>,
    window: AckWindow,
    tails: Tails,
    /// Per partition, the offset the next record this loop sends must land at: a broker that
    /// acknowledges a record elsewhere (or without an offset) lost or doubled records.
    expect: Vec<i64>,
    style: Style,
    meter: Arc<TaskMeter>,
    /// Nothing is sent once the lease is ending (see `crate::lease`).
    lease: LeaseClock,
    /// The idempotency key of the last record sent (written with checkpoints).
    last_key: Option<String>,
    /// The record being encoded: its buffers are reused from record to record.
    record: Record,
}

impl<D: Destination> Delivery<D> {
    pub(crate) fn new(
        dest: D,
        acks: mpsc::UnboundedReceiver<Ack>,
        tails: Tails,
        style: Style,
        meter: Arc<TaskMeter>,
        lease: LeaseClock,
        last_key: Option<String>,
    ) -> Self {
        Self {
            dest,
            acks,
            window: AckWindow::new(tails.start_offsets()),
            expect: tails.high_watermarks(),
            tails,
            style,
            meter,
            lease,
            last_key,
            record: Record::default(),
        }
    }

    /// Encodes and sends one event numbered `order` in the stream, carrying `columns` of a row,
    /// as the records the format writes it as (see `Style::parts`), each unless the topic
    /// already has it from before a restart; `read_at` is when the event was read from the
    /// binlog (for the record latency metrics).
    pub(crate) async fn produce(
        &mut self,
        event: &ChangeEvent,
        order: u64,
        columns: &ColumnMask,
        read_at: Instant,
    ) -> Result<(), TaskError> {
        let index = event.transaction.as_ref().map_or(0, |t| t.event_index);
        for (n, part) in self.style.parts(event).iter().enumerate() {
            if *part == Part::Tombstone && !self.dest.carries_tombstones() {
                continue;
            }
            let made = encode_part_into(
                &self.style,
                self.dest.name(),
                event,
                order,
                columns,
                (n, *part),
                &mut self.record,
            )
            .map_err(|e| DefiniteError::Encode {
                message: e.to_string(),
                position: event.position.to_string(),
            })?;
            if !made {
                return Ok(());
            }
            // Fewer than 256 parts: `Style::parts` gives at most three.
            let part_index = u8::try_from(n).unwrap_or(u8::MAX);
            self.send(event, (index, part_index), read_at).await?;
        }
        // A large row's buffer is not kept for the small ones after it.
        if self.record.payload.capacity() > KEEP_BUFFER {
            self.record.payload = Vec::new();
        }
        Ok(())
    }

    /// Sends the record just encoded, record `index` of `event`, unless its partition's tail
    /// already has it.
    async fn send(
        &mut self,
        event: &ChangeEvent,
        index: (u32, u8),
        read_at: Instant,
    ) -> Result<(), TaskError> {
        let record = &self.record;
        let partition = self.dest.partition_of(record);
        match self
            .tails
            .covers(partition, &event.position, index, &record.idempotency_key)
        {
            Already::No => {}
            Already::Dropped => return Ok(()),
            Already::Elsewhere => {
                // Through the window, without a place: the partition's offset is not moved.
                let seq = self.window.send(read_at);
                self.window.acknowledge(seq, None);
                return Ok(());
            }
            Already::There(offset) => {
                // Through the window like a record sent, so the checkpoints after it name
                // its offset.
                let seq = self.window.send(read_at);
                self.window.acknowledge(seq, Some((partition, offset)));
                return Ok(());
            }
        }
        let lease = &self.lease;
        let dest = &self.dest;
        let may_send = || {
            lease.check().map_err(|e| {
                dest.purge();
                TaskError::from(e)
            })
        };
        let seq = self.window.send(read_at);
        self.dest
            .send(seq, event, record, partition, &may_send)
            .await?;
        self.meter.handed_off(read_at.elapsed());
        RecordDelivered {
            bytes: record.payload.len(),
            row: matches!(event.kind, ChangeKind::Row(_)) && !record.tombstone,
        }
        .emit(&self.meter);
        let last = self.last_key.get_or_insert_with(String::new);
        last.clear();
        last.push_str(&record.idempotency_key);
        Ok(())
    }

    /// A transaction boundary after everything produced so far.
    pub(crate) fn commit(&mut self, position: Position, time: DateTime<Utc>) {
        self.window.commit(position, time);
    }

    /// Takes the acknowledgements that have arrived, without waiting; then, if too many
    /// records are in flight (bounded memory) or the oldest has waited too long (a slow
    /// destination), waits for acknowledgements before the loop sends more.
    pub(crate) async fn settle(&mut self) -> Result<(), TaskError> {
        while let Ok(ack) = self.acks.try_recv() {
            self.acknowledge(ack)?;
        }
        if self.window.in_flight() >= MAX_IN_FLIGHT || self.lagging() {
            self.wait_until(MAX_IN_FLIGHT / 2).await?;
        }
        Ok(())
    }

    /// Whether the oldest record in flight was sent more than [`MAX_IN_FLIGHT_AGE`] ago.
    fn lagging(&self) -> bool {
        self.window
            .oldest_sent()
            .is_some_and(|sent| sent.elapsed() > MAX_IN_FLIGHT_AGE)
    }

    /// Waits until every record sent is acknowledged.
    pub(crate) async fn drain(&mut self) -> Result<(), TaskError> {
        self.wait_until(0).await
    }

    /// Waits until at most `in_flight` records are in flight and the oldest is recent.
    async fn wait_until(&mut self, in_flight: usize) -> Result<(), TaskError> {
        while self.window.in_flight() > in_flight || self.lagging() {
            let ack = self.acks.recv().await.ok_or_else(|| {
                target_failed("the producer was closed before a record was delivered")
            })?;
            self.acknowledge(ack)?;
        }
        Ok(())
    }

    fn acknowledge(&mut self, ack: Ack) -> Result<(), TaskError> {
        let place = match ack.result? {
            Some(landed) => Some(self.check(landed)?),
            None => None,
        };
        if let Some(read_at) = self.window.acknowledge(ack.seq, place) {
            self.meter
                .acknowledged(ack.at.saturating_duration_since(read_at));
        }
        Ok(())
    }

    /// Checks that a record landed where the partition's next record must: Ferry's loop is
    /// the topic's only writer, and an idempotent producer's records of a partition land in
    /// order, one offset each. Anything else means the broker doubled records or lost some it
    /// acknowledged (a `DUPLICATE_SEQUENCE_NUMBER` answer for a batch it never wrote is
    /// reported as a success without an offset): the loop stops before a checkpoint covers
    /// the record, and the next loop compares the topic with the binlog (see [`tail`]).
    fn check(&mut self, landed: Landed) -> Result<(usize, Option<i64>), TaskError> {
        let p = usize::try_from(landed.partition).unwrap_or(usize::MAX);
        if let Some(next) = self.expect.get_mut(p) {
            match landed.offset {
                Some(o) if o == *next => *next += 1,
                other => {
                    let got = other.map_or_else(
                        || "without an offset".to_owned(),
                        |o| format!("at offset {o}"),
                    );
                    return Err(TaskError::Transient(format!(
                        "the broker acknowledged a record of {} [{p}] {got} where offset {next} was next: it doubled records or lost some; the loop restarts and checks the topic against the binlog",
                        self.dest.name()
                    )));
                }
            }
        }
        Ok((p, landed.offset))
    }

    /// The newest commit whose records are all acknowledged, if one became so, with the
    /// topic offsets its records end at (see [`window`]).
    pub(crate) fn settled(&mut self) -> Option<window::Settled> {
        self.window.settled()
    }

    /// Per partition, the offset this loop's first record lands at: a first checkpoint's
    /// offsets (`None` for a destination without offsets). Without them a loop restarted
    /// before the next checkpoint could only trust the topic's last record, and a batch the
    /// broker never wrote while it wrote the ones after it (a producer timeout) would be
    /// skipped as if delivered.
    pub(crate) fn first_offsets(&self) -> Option<Vec<i64>> {
        let marks = self.tails.high_watermarks();
        (!marks.is_empty()).then_some(marks)
    }

    pub(crate) fn last_key(&self) -> Option<&str> {
        self.last_key.as_deref()
    }

    /// The partitions whose comparison with the binlog ended since the last call having found
    /// records the broker lost or doubled, with what was found.
    pub(crate) fn take_repairs(&mut self) -> Vec<(usize, tail::Repairs)> {
        self.tails.take_found()
    }

    /// Where a restarted loop's tails are: no reselection switches before them.
    pub(crate) fn tail_marks(&self) -> tail::TailMarks {
        self.tails.marks()
    }

    pub(crate) fn destination(&self) -> &D {
        &self.dest
    }
}

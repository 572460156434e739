//! The task's topic: creation, the idempotent producer, and the tail reader.
//!
//! # Delivery
//!
//! The producer is idempotent (`enable.idempotence=true`, `acks=all`), so librdkafka's own
//! retries never duplicate or reorder a record, and gapless (`enable.gapless.guarantee=true`):
//! once a record fails, every later one fails too, so a later record can never be acknowledged
//! after an earlier one was lost (the restarted loop would take it as the tail and skip the
//! lost one). [`AckedProducer::send`] queues a record with its sequence number, and the
//! delivery callback reports its outcome; the capture loop checkpoints a transaction only once
//! every record before it is acknowledged. When librdkafka's queue is full, `send` waits for
//! room instead of failing (backpressure). A record is held at most the producer's message
//! timeout, which the worker keeps below its lease's margin.
//!
//! # Final errors
//!
//! A record over the broker's size limit, a missing topic, or refused authorization cannot be
//! fixed by retrying: they are [`SinkError::Definite`] and fail the task with a hint. The
//! oversize policy is to fail, never to drop.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::{Offset, TopicPartitionList};

use crate::format::Record;
use crate::{KEY_HEADER, POSITION_HEADER, SOURCE_HEADER};

/// Why a record could not be delivered.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("{message}")]
    Definite { message: String, hint: String },
    #[error("Kafka: {0}")]
    Transient(String),
}

impl SinkError {
    pub fn from_kafka(e: &KafkaError) -> Self {
        let code = e.rdkafka_error_code();
        match code {
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => Self::Definite {
                message: format!("a record is larger than the broker accepts: {e}"),
                hint: "raise the topic's max.message.bytes (and the producer's message.max.bytes), or exclude the large columns from the task's selection".into(),
            },
            Some(RDKafkaErrorCode::TopicAuthorizationFailed | RDKafkaErrorCode::ClusterAuthorizationFailed) => Self::Definite {
                message: format!("the broker refused Ferry's writes: {e}"),
                hint: "grant the capture workers' Kafka user write access to the task's topic".into(),
            },
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => Self::Definite {
                message: format!("the task's topic does not exist: {e}"),
                hint: "restart the task: it creates its topic; do not delete it while the task runs".into(),
            },
            _ => Self::Transient(e.to_string()),
        }
    }
}

/// Client settings for a bootstrap list, with the connection security of the environment (see
/// [`security_settings`]).
pub fn client_config(bootstrap: &str) -> ClientConfig {
    static SECURITY: std::sync::OnceLock<Vec<(&'static str, String)>> = std::sync::OnceLock::new();
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    for (k, v) in SECURITY.get_or_init(|| security_settings(|n| std::env::var(n).ok())) {
        c.set(*k, v);
    }
    c
}

/// How Ferry's own clients (workers, control plane) authenticate to the cluster, from
/// `FERRY_KAFKA_SECURITY_PROTOCOL` (`plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`),
/// `FERRY_KAFKA_SASL_MECHANISM` (`SCRAM-SHA-512`, `SCRAM-SHA-256`, `PLAIN`),
/// `FERRY_KAFKA_SASL_USERNAME` and `FERRY_KAFKA_SASL_PASSWORD` (on ECS, injected from a Secrets
/// Manager secret). Unset: plaintext, as on the local stack. librdkafka checks the values
/// when a client is created and names the one it refuses.
pub fn security_settings(get: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    [
        ("FERRY_KAFKA_SECURITY_PROTOCOL", "security.protocol"),
        ("FERRY_KAFKA_SASL_MECHANISM", "sasl.mechanism"),
        ("FERRY_KAFKA_SASL_USERNAME", "sasl.username"),
        ("FERRY_KAFKA_SASL_PASSWORD", "sasl.password"),
    ]
    .into_iter()
    .filter_map(|(env, key)| get(env).filter(|v| !v.trim().is_empty()).map(|v| (key, v)))
    .collect()
}

/// Creates `topic` with `partitions` partitions and `retention_ms`, unless it exists.
pub async fn ensure_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    retention_ms: i64,
) -> Result<(), SinkError> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .map_err(|e| SinkError::from_kafka(&e))?;
    let retention = retention_ms.to_string();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
        .set("retention.ms", &retention);
    let results = admin
        .create_topics(
            &[new],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .map_err(|e| SinkError::from_kafka(&e))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                return Err(SinkError::Transient(format!("creating topic {t}: {code}")));
            }
        }
    }
    Ok(())
}

/// Deletes `topic`; a topic that does not exist is already deleted.
pub async fn delete_topic(bootstrap: &str, topic: &str) -> Result<(), SinkError> {
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap)
        .create()
        .map_err(|e| SinkError::from_kafka(&e))?;
    let results = admin
        .delete_topics(
            &[topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .map_err(|e| SinkError::from_kafka(&e))?;
    for r in results {
        match r {
            Ok(_)
            | Err((
                _,
                RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic,
            )) => {}
            Err((t, code)) => {
                return Err(SinkError::Transient(format!("deleting topic {t}: {code}")));
            }
        }
    }
    Ok(())
}

/// The partition of a record: its key's FNV-1a hash modulo the partition count (the whole
/// stream in partition 0 when there is one partition or no key). Ferry chooses partitions itself,
/// rather than leaving it to librdkafka, because after a restart it must know which partition's
/// tail a re-read record would have gone to.
pub fn partition_for(key: Option<&[u8]>, partitions: i32) -> i32 {
    match key {
        Some(k) if partitions > 1 => {
            let h = k.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            i32::try_from(h % u64::try_from(partitions).unwrap_or(1)).unwrap_or(0)
        }
        _ => 0,
    }
}

/// Where the broker says a record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landed {
    pub partition: i32,
    /// The record's offset; `None` when the broker acknowledged the record without one
    /// (librdkafka reports a `DUPLICATE_SEQUENCE_NUMBER` answer as a success with no offset:
    /// the broker claims an earlier attempt wrote it, which the caller cannot check).
    pub offset: Option<i64>,
}

/// What a producer does with each record's outcome: called with the record's sequence number
/// on librdkafka's polling thread, once per record.
pub type OnDelivery = Box<dyn Fn(u64, Result<Landed, SinkError>) + Send + Sync>;

/// The producer context: hands each delivery report to [`OnDelivery`].
pub struct AckContext {
    on_delivery: OnDelivery,
}

impl std::fmt::Debug for AckContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckContext").finish_non_exhaustive()
    }
}

impl rdkafka::ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let outcome = match result {
            Ok(m) => Ok(Landed {
                partition: m.partition(),
                offset: Some(m.offset()).filter(|o| *o >= 0),
            }),
            Err((e, _)) => Err(SinkError::from_kafka(e)),
        };
        (self.on_delivery)(u64::try_from(seq).unwrap_or(u64::MAX), outcome);
    }
}

/// The producer of one task's topic. Each record carries a sequence number and its outcome is
/// reported through the [`OnDelivery`] callback: no future or oneshot channel per record, so queuing
/// a record costs librdkafka's own work and little more.
pub struct AckedProducer {
    producer: ThreadedProducer<AckContext>,
    topic: String,
    /// The source server the records' positions belong to (`SOURCE_HEADER`).
    source: String,
}

impl std::fmt::Debug for AckedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckedProducer")
            .field("topic", &self.topic)
            .finish()
    }
}

impl AckedProducer {
    /// A producer for `topic`, whose records name `source`, are delivered or failed within
    /// `message_timeout`, and are reported to `on_delivery`.
    pub fn new(
        bootstrap: &str,
        topic: &str,
        source: &str,
        message_timeout: Duration,
        on_delivery: OnDelivery,
    ) -> Result<Self, SinkError> {
        let timeout_ms = message_timeout.as_millis().max(1000).to_string();
        let producer = client_config(bootstrap)
            .set("enable.idempotence", "true")
            .set("enable.gapless.guarantee", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", &timeout_ms)
            // A request in flight resolves within the message timeout too.
            .set("request.timeout.ms", &timeout_ms)
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "100000")
            .set("queue.buffering.max.kbytes", "65536")
            .create_with_context(AckContext { on_delivery })
            .map_err(|e| SinkError::from_kafka(&e))?;
        Ok(Self {
            producer,
            topic: topic.to_owned(),
            source: source.to_owned(),
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queues `record` as number `seq` to `partition`, waiting while librdkafka's queue is
    /// full; `may_send` is asked before every attempt (the lease: a loop that may no longer
    /// write gets its error back and nothing is queued). The record's Kafka timestamp is
    /// `timestamp_ms`, the change's source time (so a consumer starting from a time, and
    /// offsets for times, mean the source's clock).
    pub async fn send<E>(
        &self,
        seq: u64,
        record: &Record,
        partition: i32,
        timestamp_ms: i64,
        may_send: &(dyn Fn() -> Result<(), E> + Sync),
    ) -> Result<(), E>
    where
        E: From<SinkError>,
    {
        let opaque = usize::try_from(seq).unwrap_or(usize::MAX);
        loop {
            may_send()?;
            let headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: KEY_HEADER,
                    value: Some(record.idempotency_key.as_bytes()),
                })
                .insert(Header {
                    key: POSITION_HEADER,
                    value: Some(record.position.as_bytes()),
                })
                .insert(Header {
                    key: SOURCE_HEADER,
                    value: Some(self.source.as_bytes()),
                });
            let mut r = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&self.topic, opaque)
                .partition(partition)
                .timestamp(timestamp_ms)
                .headers(headers);
            if !record.tombstone {
                r = r.payload(&record.payload);
            }
            if let Some(k) = &record.key {
                r = r.key(k);
            }
            match self.producer.send(r) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    // Backpressure: librdkafka's queue is full until the broker acknowledges.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(SinkError::from_kafka(&e).into()),
            }
        }
    }

    /// Waits for every queued record (at shutdown), on a blocking thread: librdkafka's flush
    /// blocks.
    pub async fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|e| SinkError::Transient(e.to_string()))?
            .map_err(|e| SinkError::from_kafka(&e))
    }

    /// Drops every record not yet sent (they fail with `PurgeQueue`): a loop whose lease is
    /// ending must not write after it. Records in flight are left to resolve: waiting for them
    /// ([`AckedProducer::flush`]) is how a loop knows none of its records can still land.
    pub fn purge_queued(&self) {
        self.producer.purge(PurgeConfig::default().queue());
    }
}

/// The Ferry headers of a topic's last record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailHeaders {
    /// `KEY_HEADER`: the idempotency key.
    pub key: String,
    /// `POSITION_HEADER`: the source position after the record's event.
    pub position: String,
    /// `SOURCE_HEADER`: the source server; absent on records written before Ferry named it.
    pub source: Option<String>,
}

/// A partition's offsets: records are at `low..high`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermarks {
    pub low: i64,
    pub high: i64,
}

/// The watermarks of each partition of `topic`.
pub async fn watermarks(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<Vec<Watermarks>, SinkError> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let c = tail_reader(&bootstrap)?;
        (0..partitions)
            .map(|p| {
                let (low, high) = c
                    .fetch_watermarks(&topic, p, Duration::from_secs(10))
                    .map_err(|e| SinkError::from_kafka(&e))?;
                Ok(Watermarks { low, high })
            })
            .collect()
    })
    .await
    .map_err(|e| SinkError::Transient(e.to_string()))?
}

/// Reads the Ferry headers of the records of `partition` at offsets `from..to`, in order:
/// returns `each` applied to every record's offset and headers, and the last record's headers.
/// A record without Ferry's headers is an error: something else writes to the topic.
pub async fn read_headers<T: Send + 'static>(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    (from, to): (i64, i64),
    mut each: impl FnMut(i64, &TailHeaders) -> T + Send + 'static,
) -> Result<(Vec<T>, Option<TailHeaders>), SinkError> {
    let bootstrap = bootstrap.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut last = None;
        read_headers_blocking(&bootstrap, &topic, partition, from, to, &mut |o, h| {
            out.push(each(o, &h));
            last = Some(h);
        })?;
        Ok((out, last))
    })
    .await
    .map_err(|e| SinkError::Transient(e.to_string()))?
}

fn tail_reader(bootstrap: &str) -> Result<BaseConsumer, SinkError> {
    client_config(bootstrap)
        .set("group.id", "ferry-tail-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(|e| SinkError::from_kafka(&e))
}

fn read_headers_blocking(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    each: &mut dyn FnMut(i64, TailHeaders),
) -> Result<(), SinkError> {
    if from >= to {
        return Ok(());
    }
    let c = tail_reader(bootstrap)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))
        .map_err(|e| SinkError::from_kafka(&e))?;
    c.assign(&tpl).map_err(|e| SinkError::from_kafka(&e))?;
    // Bounded by time without progress, not in all: a long range is read as fast as it comes.
    let mut deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                deadline = std::time::Instant::now() + Duration::from_secs(30);
                let header = |name: &str| {
                    m.headers().and_then(|h| {
                        h.iter()
                            .find(|x| x.key == name)
                            .and_then(|x| x.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    })
                };
                let (Some(key), Some(position)) = (header(KEY_HEADER), header(POSITION_HEADER))
                else {
                    return Err(SinkError::Definite {
                        message: format!("the record at offset {} of {topic} [{partition}] has no Ferry headers: something else writes to the topic", m.offset()),
                        hint: "only Ferry may write to a task's topic; reset the task to start a new one".into(),
                    });
                };
                each(
                    m.offset(),
                    TailHeaders {
                        key,
                        position,
                        source: header(SOURCE_HEADER),
                    },
                );
                if m.offset() + 1 >= to {
                    return Ok(());
                }
            }
            Some(Err(e)) => return Err(SinkError::from_kafka(&e)),
            None => {}
        }
    }
    Err(SinkError::Transient(format!(
        "reading {topic} [{partition}] from offset {from} to {to} timed out"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn security_comes_from_the_environment_when_set() {
        let env = |n: &str| match n {
            "FERRY_KAFKA_SECURITY_PROTOCOL" => Some("sasl_ssl".to_owned()),
            "FERRY_KAFKA_SASL_MECHANISM" => Some("SCRAM-SHA-512".to_owned()),
            "FERRY_KAFKA_SASL_USERNAME" => Some(" ".to_owned()),
            _ => None,
        };
        assert_eq!(
            security_settings(env),
            [
                ("security.protocol", "sasl_ssl".to_owned()),
                ("sasl.mechanism", "SCRAM-SHA-512".to_owned())
            ]
        );
        assert!(security_settings(|_| None).is_empty());
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        assert_eq!(partition_for(None, 8), 0);
        assert_eq!(partition_for(Some(b"{\"id\":1}"), 1), 0);
        let p = partition_for(Some(b"{\"id\":1}"), 8);
        assert_eq!(
            p,
            partition_for(Some(b"{\"id\":1}"), 8),
            "the same key, the same partition"
        );
        let used: std::collections::BTreeSet<i32> = (0..200)
            .map(|i| partition_for(Some(format!("{{\"id\":{i}}}").as_bytes()), 8))
            .collect();
        assert!(used.iter().all(|p| (0..8).contains(p)));
        assert_eq!(used.len(), 8, "keys spread over every partition");
    }
}

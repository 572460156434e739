//! Kinesis delivery: a change-tracking task's records into a Kinesis data stream, so Lambda
//! event source mappings can react to row changes.
//!
//! # Order
//!
//! A record's partition key is its table and primary key, so all changes of one row go to one
//! shard, in order. `PutRecords` can fail part of a request; a failed record is retried before
//! anything after it with the same key is sent, because a request never holds two records with
//! the same key and requests are sent one after the other. Records of different rows may be
//! reordered between each other (as across Kafka partitions).
//!
//! # Delivery
//!
//! [`StreamSink::send`] queues a record and returns its acknowledgement; the capture loop
//! checkpoints only behind acknowledged records, so nothing is lost. Throttling and service
//! errors are retried with backoff without limit (the loop waits, memory is bounded by the
//! loop's window); a missing stream, refused access or a record Kinesis cannot take fail the
//! task. After a worker crash the records between the last checkpoint and the crash are sent
//! again: Kinesis delivery is at least once, and consumers drop repeats by the record's
//! position and event index (its idempotency key).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use aws_sdk_kinesis::Client;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use tokio::sync::{mpsc, oneshot};

/// The largest record Kinesis accepts (data plus partition key).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Per request: records and bytes.
const MAX_BATCH_RECORDS: usize = 500;
const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// The longest partition key.
const MAX_KEY_CHARS: usize = 256;
/// How long a batch waits to fill.
const LINGER: Duration = Duration::from_millis(20);

/// Why a record was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StreamError {
    /// Retrying cannot help.
    #[error("{message}")]
    Definite { message: String, hint: String },
    #[error("Kinesis: {0}")]
    Transient(String),
}

/// The acknowledgement of one record.
pub type StreamAck = oneshot::Receiver<Result<(), StreamError>>;

/// Kinesis, for the workers.
#[derive(Debug, Clone)]
pub struct Streams {
    client: Client,
}

impl Streams {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Checks that `stream` exists and can be written.
    pub async fn check(&self, stream: &str) -> Result<(), StreamError> {
        match self
            .client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let service = e.as_service_error();
                if service.is_some_and(|s| s.is_resource_not_found_exception()) {
                    return Err(StreamError::Definite {
                        message: format!("the Kinesis stream `{stream}` does not exist"),
                        hint: "create the stream (the SAM template has one), or configure the task with an existing stream".into(),
                    });
                }
                Err(StreamError::Transient(format!(
                    "describing stream {stream}: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(&e)
                )))
            }
        }
    }

    /// Starts a sink writing to `stream`.
    pub fn sink(&self, stream: &str) -> StreamSink {
        let (tx, rx) = mpsc::channel(MAX_BATCH_RECORDS * 4);
        let task = tokio::spawn(run(self.client.clone(), stream.to_owned(), rx));
        StreamSink { tx, task }
    }
}

/// The partition key of a row change: its table and primary key (hashed when too long).
pub fn partition_key(table: &str, key: &[u8]) -> String {
    let text = format!("{table}#{}", String::from_utf8_lossy(key));
    if text.chars().count() <= MAX_KEY_CHARS {
        return text;
    }
    let h = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let table: String = table.chars().take(200).collect();
    format!("{table}#{h:016x}")
}

struct Pending {
    key: String,
    data: Vec<u8>,
    ack: oneshot::Sender<Result<(), StreamError>>,
}

/// A running sink; dropping it stops sending (unacknowledged records fail).
#[derive(Debug)]
pub struct StreamSink {
    tx: mpsc::Sender<Pending>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StreamSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StreamSink {
    /// Queues a record (waiting while the queue is full) and returns its acknowledgement.
    pub async fn send(&self, key: String, data: Vec<u8>) -> Result<StreamAck, StreamError> {
        if data.len() + key.len() > MAX_RECORD_BYTES {
            return Err(StreamError::Definite {
                message: format!(
                    "a record of {} bytes is larger than Kinesis accepts (1 MiB)",
                    data.len()
                ),
                hint: "exclude the large columns from the task's selection, or deliver to Kafka"
                    .into(),
            });
        }
        let (ack, rx) = oneshot::channel();
        self.tx
            .send(Pending { key, data, ack })
            .await
            .map_err(|_| StreamError::Transient("the Kinesis sender stopped".into()))?;
        Ok(rx)
    }
}

/// The next request from the front of `queue`: in queue order, at most one record per key,
/// within Kinesis's limits. Returns the queue indexes taken.
fn next_batch(queue: &VecDeque<Pending>) -> Vec<usize> {
    let mut keys = HashSet::new();
    let mut bytes = 0;
    let mut taken = Vec::new();
    for (i, p) in queue.iter().enumerate() {
        if taken.len() == MAX_BATCH_RECORDS {
            break;
        }
        let size = p.data.len() + p.key.len();
        if !keys.insert(p.key.as_str()) {
            continue;
        }
        if bytes + size > MAX_BATCH_BYTES {
            break;
        }
        bytes += size;
        taken.push(i);
    }
    taken
}

async fn run(client: Client, stream: String, mut rx: mpsc::Receiver<Pending>) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut backoff = Duration::from_millis(100);
    let mut open = true;
    loop {
        if queue.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(p) => queue.push_back(p),
                None => return,
            }
        }
        // Linger briefly so a request carries many records.
        let deadline = tokio::time::Instant::now() + LINGER;
        while open && queue.len() < MAX_BATCH_RECORDS * 2 {
            tokio::select! {
                p = rx.recv() => match p {
                    Some(p) => queue.push_back(p),
                    None => open = false,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        let taken = next_batch(&queue);
        let entries: Vec<PutRecordsRequestEntry> = taken
            .iter()
            .filter_map(|i| {
                let p = &queue[*i];
                PutRecordsRequestEntry::builder()
                    .partition_key(&p.key)
                    .data(Blob::new(p.data.clone()))
                    .build()
                    .ok()
            })
            .collect();
        let outcome = client
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await;
        let results = match outcome {
            Ok(out) => out.records,
            Err(e) => {
                let definite = e.as_service_error().is_some_and(|s| {
                    s.is_resource_not_found_exception()
                        || s.is_access_denied_exception()
                        || s.is_invalid_argument_exception()
                });
                let message = format!(
                    "PutRecords to {stream}: {}",
                    aws_sdk_kinesis::error::DisplayErrorContext(&e)
                );
                if definite {
                    let error = StreamError::Definite {
                        message,
                        hint: "check that the stream exists and the worker may write to it (kinesis:PutRecords)".into(),
                    };
                    for p in queue.drain(..) {
                        let _ = p.ack.send(Err(error.clone()));
                    }
                    continue;
                }
                tracing::warn!(error = %message, "Kinesis request failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        // Acknowledge the accepted records; the failed ones stay where they are in the queue.
        let mut done = vec![false; queue.len()];
        let mut failed = 0;
        for (i, r) in taken.iter().zip(&results) {
            if r.error_code().is_none() {
                done[*i] = true;
            } else {
                failed += 1;
            }
        }
        let mut kept = VecDeque::with_capacity(queue.len());
        for (i, p) in queue.drain(..).enumerate() {
            if done[i] {
                let _ = p.ack.send(Ok(()));
            } else {
                kept.push_back(p);
            }
        }
        queue = kept;
        if failed > 0 {
            tracing::debug!(
                failed,
                "Kinesis refused part of a request (throttled); retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(key: &str, bytes: usize) -> Pending {
        Pending {
            key: key.into(),
            data: vec![0; bytes],
            ack: oneshot::channel().0,
        }
    }

    #[test]
    fn a_request_holds_one_record_per_key_in_queue_order() {
        let queue: VecDeque<Pending> = ["a", "b", "a", "c", "b", "d"]
            .iter()
            .map(|k| pending(k, 10))
            .collect();
        assert_eq!(next_batch(&queue), [0, 1, 3, 5]);
    }

    #[test]
    fn a_request_stays_within_kinesis_limits() {
        let many: VecDeque<Pending> = (0..700).map(|i| pending(&i.to_string(), 10)).collect();
        assert_eq!(next_batch(&many).len(), MAX_BATCH_RECORDS);
        let big: VecDeque<Pending> = (0..8)
            .map(|i| pending(&i.to_string(), 1000 * 1000))
            .collect();
        assert_eq!(next_batch(&big).len(), 5, "5 MB per request");
    }

    #[test]
    fn partition_keys_are_per_row_and_short() {
        assert_eq!(
            partition_key("shop.orders", br#"{"id":7}"#),
            r#"shop.orders#{"id":7}"#
        );
        let long = partition_key("shop.orders", "x".repeat(400).as_bytes());
        assert!(long.chars().count() <= MAX_KEY_CHARS);
        assert_eq!(
            long,
            partition_key("shop.orders", "x".repeat(400).as_bytes())
        );
        assert_ne!(
            long,
            partition_key("shop.orders", "y".repeat(400).as_bytes())
        );
    }
}

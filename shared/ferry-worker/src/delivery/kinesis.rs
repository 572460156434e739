//! A Kinesis data stream as a destination. The stream is the user's (named in the task's
//! delivery); records go in per-row order (see `ferry_aws::streams`). A stream's tail cannot be
//! read cheaply, so after a crash the records since the last checkpoint are delivered again:
//! at least once, never lost.

use std::time::Duration;

use ferry_aws::streams::{StreamSink, partition_key};
use ferry_domain::change::{ChangeEvent, ChangeKind};
use ferry_kafka::format::Record;

use super::destination::{Ack, AckSender, Destination};
use crate::error::{TaskError, target_failed};

pub(crate) struct KinesisStream {
    sink: StreamSink,
    stream: String,
    acks: AckSender,
}

impl KinesisStream {
    pub(crate) fn new(sink: StreamSink, stream: String, acks: AckSender) -> Self {
        Self { sink, stream, acks }
    }
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

impl Destination for KinesisStream {
    fn name(&self) -> &str {
        &self.stream
    }

    fn carries_tombstones(&self) -> bool {
        false
    }

    fn partition_of(&self, _record: &Record) -> usize {
        0
    }

    async fn send(
        &self,
        seq: u64,
        event: &ChangeEvent,
        record: &Record,
        _partition: usize,
        may_send: &(dyn Fn() -> Result<(), TaskError> + Sync),
    ) -> Result<(), TaskError> {
        may_send()?;
        let key = kinesis_key(event, record.key.as_deref());
        let ack = self.sink.send(key, record.payload.clone()).await?;
        // The sink acknowledges each record on a channel of its own: forwarded to the window's.
        let acks = self.acks.clone();
        tokio::spawn(async move {
            let result = match ack.await {
                Ok(r) => r.map(|()| None).map_err(TaskError::from),
                Err(_) => Err(target_failed(
                    "the stream sink was closed before a record was delivered",
                )),
            };
            let _ = acks.send(Ack {
                seq,
                result,
                at: std::time::Instant::now(),
            });
        });
        Ok(())
    }

    /// Each record is one PutRecords entry acknowledged in order: nothing is queued here.
    fn purge(&self) {}

    /// The window waits for every acknowledgement itself.
    async fn flush(&self) -> Result<(), TaskError> {
        Ok(())
    }

    async fn abandon(&self, _within: Duration) {}
}

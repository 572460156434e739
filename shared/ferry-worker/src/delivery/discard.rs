//! A destination that acknowledges every record at once and keeps none: for benchmarks of the
//! worker's own path (read → decode → select → frame → encode), never for a task's data. It is
//! chosen only through [`crate::CaptureSettings::discard`], which no configuration sets.

use std::time::Duration;

use ferry_domain::change::ChangeEvent;
use ferry_kafka::format::Record;

use super::destination::{Ack, AckSender, Destination};
use crate::error::TaskError;

pub(crate) struct Discard {
    name: String,
    acks: AckSender,
}

impl Discard {
    pub(crate) fn new(name: &str, acks: AckSender) -> Self {
        Self {
            name: name.to_owned(),
            acks,
        }
    }
}

impl Destination for Discard {
    fn name(&self) -> &str {
        &self.name
    }

    fn partition_of(&self, _record: &Record) -> usize {
        0
    }

    async fn send(
        &self,
        seq: u64,
        _event: &ChangeEvent,
        _record: &Record,
        _partition: usize,
        may_send: &(dyn Fn() -> Result<(), TaskError> + Sync),
    ) -> Result<(), TaskError> {
        may_send()?;
        let _ = self.acks.send(Ack {
            seq,
            result: Ok(None),
            at: std::time::Instant::now(),
        });
        Ok(())
    }

    fn purge(&self) {}

    async fn flush(&self) -> Result<(), TaskError> {
        Ok(())
    }

    async fn abandon(&self, _within: Duration) {}
}

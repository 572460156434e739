//! AWS adapters besides DynamoDB: [`Secrets`] keeps endpoint passwords in Secrets Manager,
//! [`Events`] publishes lifecycle events to EventBridge, and [`streams`] delivers change records
//! to Kinesis data streams, and [`archive`] keeps the binlog archive in S3.

pub mod archive;
mod events;
mod secrets;
pub mod streams;

pub use archive::Archive;
pub use events::{Event, Events, SOURCE};
pub use secrets::{Secret, Secrets};
pub use streams::Streams;

/// An AWS call that failed.
#[derive(Debug, thiserror::Error)]
#[error("{service} {operation} failed")]
pub struct AwsError {
    service: &'static str,
    operation: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl AwsError {
    pub(crate) fn new(
        service: &'static str,
        operation: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            service,
            operation,
            source: Box::new(e),
        }
    }
}

//! AWS adapters besides DynamoDB: [`Secrets`] keeps endpoint passwords in Secrets Manager, and
//! [`Events`] publishes lifecycle events to EventBridge.

mod events;
mod secrets;

pub use events::{Event, Events, SOURCE};
pub use secrets::{Secret, Secrets};

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

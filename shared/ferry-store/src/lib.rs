//! Ferry's durable state: one DynamoDB table, through the official SDK.
//!
//! The key design is in `docs/dynamodb.md`. Every item carries a `version`; every create is
//! conditional on the item not existing and every change on the version read, so of two
//! concurrent changes one succeeds and the other gets [`StoreError::Conflict`] — never a lost
//! update. Changes go through `UpdateItem` of the body's attributes only, so counters kept on the
//! same item (the consumer group count) are never overwritten by a stale copy.
//!
//! # Error handling
//!
//! Conditional-check failures are typed ([`StoreError::Conflict`], [`StoreError::Duplicate`],
//! [`StoreError::QuotaExceeded`]); everything else from DynamoDB is [`StoreError::Backend`], with
//! the SDK's full error kept for the logs.

mod archives;
mod backfills;
mod cleanup;
mod copies;
mod groups;
mod history;
mod instances;
mod item;
mod keys;
mod leases;
mod metrics;
mod page;
mod table;
mod tasks;
mod verifications;

use aws_sdk_dynamodb::Client;

pub use cleanup::CleanupRequest;
pub use copies::{CopyPlan, CopyRecord};
pub use groups::GroupRecord;
pub use instances::{CLIENT_TOKEN_TTL, CreateOutcome};
pub use leases::{Checkpoint, CheckpointOutcome, Lease};
pub use metrics::MetricsReport;
pub use page::{Page, PageToken};
pub use tasks::{ChosenStart, TaskRecord};

/// A stored value and the version it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The item changed since it was read (or a create found it already there).
    #[error("{what} was changed by another request")]
    Conflict { what: &'static str },
    /// A uniqueness rule: e.g. a consumer group username already used on the instance.
    #[error("{what} already exists")]
    Duplicate { what: String },
    /// A count limit was reached.
    #[error("{what}")]
    QuotaExceeded { what: String },
    /// The item the change applies to does not exist.
    #[error("{what} does not exist")]
    NotFound { what: &'static str },
    /// A page token that this store did not issue.
    #[error("the page token is not valid")]
    BadPageToken,
    /// An item that does not decode: written by a newer version, or damaged.
    #[error("stored item {key} does not decode: {reason}")]
    Corrupt { key: String, reason: String },
    /// DynamoDB failed or could not be reached.
    #[error("DynamoDB request {operation} failed")]
    Backend {
        operation: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    fn backend(operation: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Backend {
            operation,
            source: Box::new(e),
        }
    }
}

/// The store: a DynamoDB client and the table name.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

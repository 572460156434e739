//! The capture worker: one process of the data plane. It claims running tasks through leases
//! in DynamoDB ([`worker`]) and runs each task's loop: change tracking's capture loop
//! ([`capture`]) or data synchronization's sync loop ([`sync`], with the full sync in `copy`).
//! Both loops run inside a [`session`](crate::session) (lease, desired state, reporter) and
//! read the source through [`source`](crate::source); capture's records go out through
//! `delivery`; errors are typed in [`error`]; what the worker reports about itself is in
//! `internal_events`.

pub mod capture;
mod copy;
mod delivery;
pub mod error;
mod heartbeat;
mod internal_events;
pub mod lease;
pub mod metrics;
mod session;
mod source;
pub mod sync;
mod verify;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use ferry_domain::id::WorkerId;

pub use capture::capture_task;
pub use error::{DefiniteError, TaskError};
pub use lease::{Claim, LeaseTimes};
pub use sync::sync_task;
pub use worker::{MAX_ROW_BYTES, Worker, WorkerSettings};

/// How a task's loop behaves.
#[derive(Debug, Clone)]
pub struct CaptureSettings {
    pub worker: WorkerId,
    pub lease_ttl: Duration,
    /// How often the source sends a heartbeat when idle.
    pub heartbeat: Duration,
    /// The worker's metrics, and how often a loop adds its counts to the store.
    pub metrics: Arc<metrics::WorkerMetrics>,
    pub metrics_every: Duration,
    /// The largest row the loop encodes (see `WorkerSettings::max_row_bytes`).
    pub max_row_bytes: usize,
    /// Benchmarks only: records are encoded and then discarded instead of delivered (the
    /// worker's own path measured without a broker). No configuration sets it.
    pub discard: bool,
}

//! The capture worker: one process of the data plane. It claims running tasks through leases
//! in DynamoDB ([`worker`]) and runs each task's loop: change tracking's capture loop
//! ([`capture`]) or data synchronization's sync loop ([`sync`], with the full sync in `copy`).
//! Both loops run inside a [`session`](crate::session) (lease, desired state, reporter) and
//! read the source through [`source`](crate::source); capture's records go out through
//! `delivery`; errors are typed in [`error`]; what the worker reports about itself is in
//! `internal_events`.

mod archive;
pub mod capture;
mod copy;
mod delivery;
pub mod error;
mod faults;
mod heartbeat;
mod internal_events;
pub mod lease;
pub mod metrics;
mod session;
mod source;
pub mod sync;
mod verify;
pub mod worker;

pub use capture::capture_task;
pub use error::{DefiniteError, TaskError};
pub use lease::{Claim, LeaseTimes};
pub use session::CaptureSettings;
pub use sync::sync_task;
pub use worker::{ARCHIVE_FLUSH, BACKFILL_CHUNK_ROWS, MAX_ROW_BYTES, Worker, WorkerSettings};

//! The capture worker: one process of the data plane. It claims running tasks through leases
//! in DynamoDB ([`worker`]) and runs each task's loop: change tracking's capture loop
//! ([`capture`]) or data synchronization's sync loop ([`sync`], with the full sync in `copy`).

pub mod capture;
mod copy;
mod delivery;
mod heartbeat;
pub mod lease;
pub mod metrics;
pub mod sync;
mod verify;
pub mod worker;

pub use capture::{CaptureError, CaptureSettings, capture_task};
pub use lease::{Claim, LeaseTimes};
pub use sync::sync_task;
pub use worker::{Worker, WorkerSettings};

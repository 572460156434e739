//! The capture worker: one process of the data plane. It claims running tasks through leases
//! in DynamoDB ([`worker`]) and runs each task's capture loop ([`capture`]).

pub mod capture;
mod delivery;
mod heartbeat;
pub mod metrics;
pub mod worker;

pub use capture::{CaptureError, CaptureSettings, capture_task};
pub use worker::{Worker, WorkerSettings};

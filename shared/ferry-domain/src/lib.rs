//! Ferry's domain: the vocabulary every other crate speaks, with no I/O.
//!
//! - [`id`]: prefixed, opaque identifiers (`ins_…`, `tsk_…`, `cg_…`, `wkr_…`).
//! - [`instance`]: an instance, its mode, class and billing, and the lifecycle rules of
//!   pay-as-you-go and subscription instances (expiry, release, renewal).
//! - [`task`]: the task of an instance and its state machine. Every allowed transition is
//!   written out; every other one is a [`task::TransitionError`].
//! - [`task_config`]: a task's source, target, objects and delivery options.
//! - [`archive`]: what a task's binlog archive holds, as its archiver reports it.
//! - [`consumer_group`]: consumer groups and the rules for their names and credentials.
//! - [`convert`]: type conversion for schema sync (MySQL/MariaDB to PostgreSQL and MySQL/MariaDB).
//! - [`endpoint`]: source and target database endpoints.
//! - [`selection`]: which databases, tables, columns and operations a task carries, with
//!   wildcard matching.
//! - [`position`] and [`gtid`]: binlog positions (file + offset + GTID set) in MariaDB's and
//!   MySQL's forms, printable, parseable and comparable.
//! - [`start`]: where a change-tracking task's first start begins (position, GTID or time).
//! - [`precheck`]: precheck items and reports.
//! - [`metrics`]: task metrics (rates, source delay, per-minute history).
//! - [`schema`]: the schema history: table definitions at binlog positions.
//! - [`reselect`]: the selection history: which objects were selected from which position.
//! - [`evolve`]: source DDL turned into the target statements that follow it.
//! - [`sync`]: data synchronization's options, target tables, apply batches and progress.
//! - [`verify`]: verification reports of sync tasks.
//! - [`change`] and [`value`]: the change event model, with exact typed column values.
//!
//! - [`address`]: which network addresses endpoints may point at (no metadata services).
//!
//! Everything that can be wrong in input is an [`InvalidInput`], which names the field, says
//! what is wrong and how to fix it.

pub mod address;
pub mod archive;
pub mod backfill;
pub mod change;
pub mod consumer_group;
pub mod convert;
pub mod endpoint;
pub mod evolve;
pub mod gtid;
pub mod id;
pub mod instance;
pub mod metrics;
pub mod position;
pub mod precheck;
pub mod reselect;
pub mod schema;
pub mod scram;
pub mod selection;
pub mod start;
pub mod sync;
pub mod target_table;
pub mod task;
pub mod task_config;
pub mod value;
pub mod verify;

mod invalid;

pub use invalid::InvalidInput;

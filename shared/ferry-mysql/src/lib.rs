//! MySQL and MariaDB: connecting, and checking a server before a task uses it.
//!
//! Each precheck is a function that returns a [`CheckItem`] with a stable id, what it found and
//! how to fix it (the ids are listed in `docs/prechecks.md`). The checks run against the real
//! server with the task's own credentials, so they see exactly what capture will see.

pub mod archive;
pub mod binlog;
pub mod catalog;
mod connect;
pub mod ddl;
pub mod decode;
pub mod file;
mod json_diff;
mod precheck;
pub mod server_error;
pub mod snapshot;
pub mod start;
pub mod statement;

pub use connect::{CONNECT_TIMEOUT, ConnectError, ConnectParams, connect};
pub use precheck::{
    precheck_conversion, precheck_heartbeat, precheck_source, precheck_target, source_catalog,
    target_tables_found,
};
pub use server_error::ServerErrorKind;

pub use ferry_domain::precheck::{CheckItem, CheckStatus, PrecheckReport};

//! Synchronization targets: PostgreSQL ([`postgres`]) and MySQL/MariaDB ([`mysql`]).
//!
//! A [`Target`] is one connection to the target database. It creates target tables (schema
//! sync), loads snapshot chunks (PostgreSQL `COPY` through a staging table, MySQL multi-row
//! inserts; both upsert, so a chunk loaded twice is harmless), applies batches of changes in
//! one transaction (upserts and deletes by key), runs converted DDL, and reads rows back for
//! verification. Values are written as `literal` says.
//!
//! # Errors
//!
//! A [`TargetError::Definite`] is something retrying cannot fix (a refused login or privilege, a
//! value the target type cannot hold, a missing table): the task fails with its hint. Anything
//! else (a lost connection, a deadlock, a timeout) is transient.
//!
//! # Fencing
//!
//! A target write is one transaction, and a worker whose lease is ending must not commit one
//! (another worker may already have written newer rows). A [`WriteGuard`] set on the target is
//! asked before every statement of a transaction and before its `COMMIT`; when it says no, the
//! transaction is rolled back and [`TargetError::Fenced`] returned. The session also asks the
//! server to end a transaction left idle for longer than [`TargetParams::idle_transaction`]
//! (PostgreSQL `idle_in_transaction_session_timeout`, MariaDB `idle_transaction_timeout`), so
//! a worker frozen in the middle of one holds no row locks past its lease.

pub mod literal;
pub mod mysql;
pub mod postgres;
pub mod verify;

use std::collections::HashMap;
use std::fmt;

use ferry_domain::change::ObjectName;
use ferry_domain::convert::TargetEngine;
use ferry_domain::schema::TableDef;
use ferry_domain::sync::{Batch, TargetTable};
use ferry_domain::value::Value;

/// Why a target operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("{message}")]
    Definite { message: String, hint: String },
    #[error("{0}")]
    Transient(String),
    /// The write guard refused (the worker's lease is ending): nothing was committed.
    #[error("the worker may no longer write to the target")]
    Fenced,
}

impl TargetError {
    pub(crate) fn definite(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::Definite {
            message: message.into(),
            hint: hint.into(),
        }
    }
}

/// Where and as whom to connect. The password never prints.
#[derive(Clone)]
pub struct TargetParams {
    pub engine: TargetEngine,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// PostgreSQL: the database (default `postgres`). MySQL: unused (tables are named with
    /// their database).
    pub database: Option<String>,
    /// How long the server may leave a transaction of this session idle before ending it
    /// (see `# Fencing`); `None` leaves the server's default.
    pub idle_transaction: Option<std::time::Duration>,
}

/// Asked before every statement and commit of a target transaction: `true` while the worker
/// may write.
pub type WriteGuard = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// A guard that always allows (verification, tools).
pub(crate) fn always() -> WriteGuard {
    std::sync::Arc::new(|| true)
}

/// `Ok` while `guard` allows writing.
pub(crate) fn allowed(guard: &WriteGuard) -> Result<(), TargetError> {
    if guard() {
        Ok(())
    } else {
        Err(TargetError::Fenced)
    }
}

impl fmt::Debug for TargetParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}@{}:{}",
            self.engine, self.user, self.host, self.port
        )
    }
}

/// One connection to a target database.
#[derive(Debug)]
pub enum Target {
    Postgres(Box<postgres::PgTarget>),
    Mysql(mysql::MysqlTarget),
}

impl Target {
    pub async fn connect(params: &TargetParams) -> Result<Self, TargetError> {
        Ok(match params.engine {
            TargetEngine::Postgresql => {
                Self::Postgres(Box::new(postgres::PgTarget::connect(params).await?))
            }
            TargetEngine::Mysql | TargetEngine::Mariadb => {
                Self::Mysql(mysql::MysqlTarget::connect(params).await?)
            }
        })
    }

    /// Sets the guard asked before every statement and commit of a transaction.
    pub fn guard(&mut self, guard: WriteGuard) {
        match self {
            Self::Postgres(t) => t.guard = guard,
            Self::Mysql(t) => t.guard = guard,
        }
    }

    /// Creates `table` (and its schema or database) unless it exists.
    pub async fn create_table(
        &mut self,
        table: &TargetTable,
        def: &TableDef,
    ) -> Result<(), TargetError> {
        match self {
            Self::Postgres(t) => t.create_table(table, def).await,
            Self::Mysql(t) => t.create_table(table, def).await,
        }
    }

    /// Writes snapshot rows (full source rows) in one transaction, replacing rows with the same
    /// key. A table without a key is one chunk, its whole content: its rows replace every row
    /// the target table has, in the same transaction, so loading it again (after a crash
    /// between the load and its chunk mark) never doubles a row.
    pub async fn load_rows(
        &mut self,
        table: &TargetTable,
        rows: &[Vec<Value>],
    ) -> Result<(), TargetError> {
        if rows.is_empty() && !table.key.is_empty() {
            return Ok(());
        }
        match self {
            Self::Postgres(t) => t.load_rows(table, rows).await,
            Self::Mysql(t) => t.load_rows(table, rows).await,
        }
    }

    /// Applies a batch in one transaction, and answers the bytes of statements sent. Tables the
    /// batch names but `tables` does not are skipped (not selected).
    pub async fn apply(
        &mut self,
        batch: &Batch,
        tables: &HashMap<ObjectName, TargetTable>,
    ) -> Result<usize, TargetError> {
        if batch.is_empty() {
            return Ok(0);
        }
        match self {
            Self::Postgres(t) => t.apply(batch, tables).await,
            Self::Mysql(t) => t.apply(batch, tables).await,
        }
    }

    /// Runs statements (converted DDL) one by one.
    pub async fn execute(&mut self, statements: &[String]) -> Result<(), TargetError> {
        for s in statements {
            let result = match self {
                Self::Postgres(t) => t.execute(s).await,
                Self::Mysql(t) => t.execute(s).await,
            };
            result.map_err(|e| match e {
                TargetError::Definite { message, hint } => TargetError::Definite {
                    message: format!("{message} (running `{s}`)"),
                    hint,
                },
                TargetError::Transient(m) => TargetError::Transient(format!("{m} (running `{s}`)")),
                TargetError::Fenced => TargetError::Fenced,
            })?;
        }
        Ok(())
    }

    /// Every row of `table` by key, as hashes of canonical text (see [`verify`]).
    pub async fn target_rows(
        &mut self,
        table: &TargetTable,
    ) -> Result<verify::TargetRows, TargetError> {
        match self {
            Self::Postgres(t) => t.target_rows(table).await,
            Self::Mysql(t) => t.target_rows(table).await,
        }
    }

    pub async fn close(self) {
        match self {
            Self::Postgres(_) => {}
            Self::Mysql(t) => t.close().await,
        }
    }
}

/// The largest statement Ferry sends (well under MySQL's default `max_allowed_packet`).
pub(crate) const MAX_STATEMENT_BYTES: usize = 1 << 20;

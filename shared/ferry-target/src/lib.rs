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
pub mod progress;
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

/// One step of a batch's target transaction.
#[derive(Debug, Clone)]
pub enum Statement {
    /// SQL text.
    Sql(String),
    /// Rows of a keyed PostgreSQL table upserted through the session's staging table: `text`
    /// (`COPY` text format, the full sync's renderer) copied into it, then one `INSERT …
    /// SELECT … ON CONFLICT`. Measured 1.7 × a literal multi-row upsert (docs/benchmarks.md).
    CopyUpsert {
        table: Box<TargetTable>,
        text: String,
    },
    /// A MySQL/MariaDB prepared statement and its values, bound in the binary protocol (the
    /// connection prepares each statement text once). Measured 1.6 × the same upsert as
    /// literals (docs/benchmarks.md).
    Prepared {
        sql: String,
        params: Vec<mysql_async::Value>,
    },
}

impl Statement {
    /// The bytes it sends (the apply's metrics).
    pub fn bytes(&self) -> usize {
        match self {
            Self::Sql(s) => s.len(),
            Self::CopyUpsert { text, .. } => text.len(),
            Self::Prepared { params, .. } => params.iter().map(mysql::param_bytes).sum(),
        }
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
            Self::Mysql(_) => {
                let statements = mysql::MysqlTarget::load_statements(table, rows);
                self.run(statements, true).await
            }
        }
    }

    /// Runs `statements` (from [`statements`]) in the target transaction an earlier call left
    /// open, or in a new one, and commits it when `commit`; otherwise leaves it open, so that a
    /// source transaction too big to hold in memory is applied in parts that the target still
    /// shows whole or not at all. A failed statement, or a guard that refuses, rolls the whole
    /// transaction back.
    pub async fn run(
        &mut self,
        statements: Vec<Statement>,
        commit: bool,
    ) -> Result<(), TargetError> {
        if statements.is_empty() && !self.in_transaction() {
            return Ok(());
        }
        let result = self.run_open(statements, commit).await;
        if result.is_err() && self.in_transaction() {
            self.set_open(false);
            let _ = self.sql("ROLLBACK").await;
            // Staging tables the transaction created are gone with it.
            if let Self::Postgres(t) = self {
                t.forget_staging();
            }
        }
        result
    }

    async fn run_open(
        &mut self,
        statements: Vec<Statement>,
        commit: bool,
    ) -> Result<(), TargetError> {
        if !self.in_transaction() {
            self.allowed()?;
            self.sql("BEGIN").await?;
            self.set_open(true);
        }
        for s in statements {
            self.allowed()?;
            match (s, &mut *self) {
                (Statement::Sql(sql), _) => self.sql(&sql).await?,
                (Statement::CopyUpsert { table, text }, Self::Postgres(t)) => {
                    t.copy_upsert(&table, text).await?;
                }
                (Statement::Prepared { sql, params }, Self::Mysql(t)) => {
                    t.exec(&sql, params).await?;
                }
                (Statement::CopyUpsert { .. } | Statement::Prepared { .. }, _) => {
                    return Err(TargetError::definite(
                        "a statement built for the other engine reached the target",
                        "report this as a bug",
                    ));
                }
            }
        }
        if commit {
            self.allowed()?;
            self.sql("COMMIT").await?;
            self.set_open(false);
        }
        Ok(())
    }

    /// One statement on the session, as it is (no transaction of its own).
    async fn sql(&mut self, sql: &str) -> Result<(), TargetError> {
        match self {
            Self::Postgres(t) => t.execute(sql).await,
            Self::Mysql(t) => t.execute(sql).await,
        }
    }

    /// `Ok` while the write guard allows writing.
    fn allowed(&self) -> Result<(), TargetError> {
        allowed(match self {
            Self::Postgres(t) => &t.guard,
            Self::Mysql(t) => &t.guard,
        })
    }

    fn set_open(&mut self, open: bool) {
        match self {
            Self::Postgres(t) => t.open = open,
            Self::Mysql(t) => t.open = open,
        }
    }

    /// Whether [`Target::run`] left a transaction open.
    pub fn in_transaction(&self) -> bool {
        match self {
            Self::Postgres(t) => t.open,
            Self::Mysql(t) => t.open,
        }
    }

    /// The engine the statements are written for (MySQL and MariaDB share theirs).
    fn engine(&self) -> TargetEngine {
        match self {
            Self::Postgres(_) => TargetEngine::Postgresql,
            Self::Mysql(_) => TargetEngine::Mysql,
        }
    }

    /// Creates the progress table where it does not exist (see [`progress`]).
    pub async fn prepare_progress(&mut self) -> Result<(), TargetError> {
        let engine = self.engine();
        for s in progress::create(engine) {
            let result = match self {
                Self::Postgres(t) => t.execute_idempotent(&s).await,
                Self::Mysql(t) => t.execute(&s).await,
            };
            result.map_err(|e| match e {
                TargetError::Definite { message, .. } => TargetError::Definite {
                    message: format!("creating the progress table {}.{}: {message}", progress::SCHEMA, progress::TABLE),
                    hint: format!(
                        "Ferry records what it applied in {}.{} on the target (docs/sync.md): grant the target user CREATE on it, or create it as docs/sync.md shows",
                        progress::SCHEMA, progress::TABLE
                    ),
                },
                other => other,
            })?;
        }
        Ok(())
    }

    /// What the progress table says `task` applied; `None` when it has no row.
    pub async fn progress(&mut self, task: &str) -> Result<Option<progress::Applied>, TargetError> {
        let sql = progress::select(self.engine(), task);
        let row = match self {
            Self::Postgres(t) => t.query_texts(&sql).await?,
            Self::Mysql(t) => t.query_texts(&sql).await?,
        };
        let Some(row) = row else {
            return Ok(None);
        };
        let [source, position, time] = &row[..] else {
            return Err(TargetError::Transient(format!(
                "the progress table answered {} columns, not 3",
                row.len()
            )));
        };
        let source_time_ms = time.parse().map_err(|_| {
            TargetError::definite(
                format!("the progress table holds a source time of {time:?} for task {task}"),
                format!(
                    "the row of {task} in {}.{} was changed by hand: delete it, and Ferry resumes from its checkpoint",
                    progress::SCHEMA,
                    progress::TABLE
                ),
            )
        })?;
        Ok(Some(progress::Applied {
            task: task.to_owned(),
            source: source.clone(),
            position: position.clone(),
            source_time_ms,
        }))
    }

    /// Records `applied` alone (after a DDL statement, which MySQL cannot run in a transaction).
    pub async fn record_progress(
        &mut self,
        applied: &progress::Applied,
    ) -> Result<(), TargetError> {
        let sql = progress::upsert(self.engine(), applied);
        self.allowed()?;
        self.sql(&sql).await
    }

    /// Removes `task`'s row (a first start: whatever an earlier run of the task recorded no
    /// longer holds).
    pub async fn forget_progress(&mut self, task: &str) -> Result<(), TargetError> {
        let sql = progress::delete(self.engine(), task);
        match self {
            Self::Postgres(t) => t.execute(&sql).await,
            Self::Mysql(t) => t.execute(&sql).await,
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

/// The statements applying `batch` on an `engine` target (per table: deletes by key, then
/// multi-row upserts; a keyless table's changes one by one, in order), with `applied` recorded
/// last (see [`progress`]). Tables the batch names but `tables` does not are skipped (not
/// selected). Built apart from any connection, so that a loop builds the next batch's
/// statements while the previous ones run.
pub fn statements(
    engine: TargetEngine,
    batch: &Batch,
    tables: &HashMap<ObjectName, TargetTable>,
    applied: Option<&progress::Applied>,
) -> Result<Vec<Statement>, TargetError> {
    let mut out = match engine {
        TargetEngine::Postgresql => postgres::PgTarget::statements(batch, tables)?,
        TargetEngine::Mysql | TargetEngine::Mariadb => {
            mysql::MysqlTarget::statements(batch, tables)?
        }
    };
    out.extend(applied.map(|a| Statement::Sql(progress::upsert(engine, a))));
    Ok(out)
}

/// The largest statement Ferry sends (well under MySQL's default `max_allowed_packet`).
pub(crate) const MAX_STATEMENT_BYTES: usize = 1 << 20;

//! PostgreSQL as a target.
//!
//! Snapshot chunks are loaded with `COPY` straight into the target table when none of their keys
//! is there (a table's first copy); otherwise into a temporary staging table shaped like the
//! target table, then moved with `INSERT … SELECT … ON CONFLICT (key) DO UPDATE`, in one
//! transaction: `COPY` is PostgreSQL's fastest way in, and the upsert makes loading a chunk again
//! (after a crash, or over rows the binlog already wrote) harmless. Changes are applied as multi-row
//! `INSERT … ON CONFLICT` and `DELETE … WHERE key IN (…)` statements with literal values.

use std::collections::HashMap;
use std::fmt::Write as _;

use bytes::Bytes;
use ferry_domain::change::ObjectName;
use ferry_domain::convert::{create_table, quote};
use ferry_domain::schema::TableDef;
use ferry_domain::sync::{Batch, RowOp, TargetTable};
use ferry_domain::value::Value;
use futures::SinkExt;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::literal::{pg_copy, pg_literal};
use crate::verify::{TargetRows, canonical_pg, target_row};
use crate::{
    MAX_STATEMENT_BYTES, Statement, TargetError, TargetParams, WriteGuard, allowed, always,
};

/// A connection to a PostgreSQL target.
pub struct PgTarget {
    client: Client,
    /// Staging tables created in this session, by target table: the staging table's name and
    /// the target table's shape it was created for.
    staging: HashMap<(String, String), (String, String)>,
    /// Staging tables created so far (their names are numbered).
    staged: usize,
    /// Tables a direct `COPY` of a chunk hit existing keys in: loaded through staging from then.
    conflicted: std::collections::HashSet<(String, String)>,
    connection: tokio::task::JoinHandle<()>,
    pub(crate) guard: WriteGuard,
    /// A transaction is open, waiting for the rest of a big source transaction.
    pub(crate) open: bool,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTarget").finish_non_exhaustive()
    }
}

impl Drop for PgTarget {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

fn error(e: tokio_postgres::Error) -> TargetError {
    let Some(db) = e.as_db_error() else {
        return TargetError::Transient(format!("PostgreSQL: {e}"));
    };
    let code = db.code().code();
    let message = format!("PostgreSQL refused a statement ({code}): {}", db.message());
    match &code[..2] {
        // Data exceptions, integrity violations, syntax or access errors, missing objects,
        // invalid authorization: the same statement fails again.
        "22" | "23" | "42" | "28" | "0A" => TargetError::definite(
            message,
            match &code[..2] {
                "28" | "42" if code == "42501" => {
                    "grant the target user CREATE on the database and the rights on its tables"
                }
                "28" => "check the target's username and password",
                "22" => {
                    "the target column cannot hold a source value: see docs/type-conversion.md, or leave the column out"
                }
                "23" => {
                    "the target table has a constraint the source does not (drop it, or let Ferry create the table)"
                }
                _ => {
                    "check the target table against the source (docs/sync.md): it may have been changed by hand"
                }
            },
        ),
        _ => TargetError::Transient(message),
    }
}

fn q(name: &str) -> String {
    quote(ferry_domain::convert::TargetEngine::Postgresql, name)
}

fn table_ref(t: &TargetTable) -> String {
    format!("{}.{}", q(&t.schema), q(&t.name))
}

fn column_list(t: &TargetTable) -> String {
    t.columns
        .iter()
        .map(|c| q(&c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a staging table created `LIKE` the target table depends on: its columns, their types
/// and nullability.
fn shape_of(t: &TargetTable) -> String {
    t.columns
        .iter()
        .map(|c| format!("{}:{}:{}", c.name, c.target_type.sql_type, c.def.nullable))
        .collect::<Vec<_>>()
        .join(",")
}

/// `ON CONFLICT (key) DO UPDATE SET c = EXCLUDED.c, …` (or `DO NOTHING` when every column is
/// in the key); empty for a keyless table.
fn on_conflict(t: &TargetTable) -> String {
    if t.key.is_empty() {
        return String::new();
    }
    let key: Vec<String> = t.key.iter().map(|k| q(&t.columns[*k].name)).collect();
    let set: Vec<String> = (0..t.columns.len())
        .filter(|i| !t.key.contains(i))
        .map(|i| {
            let c = q(&t.columns[i].name);
            format!("{c} = EXCLUDED.{c}")
        })
        .collect();
    if set.is_empty() {
        format!(" ON CONFLICT ({}) DO NOTHING", key.join(", "))
    } else {
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            set.join(", ")
        )
    }
}

fn value_error(t: &TargetTable, column: usize, reason: String) -> TargetError {
    TargetError::definite(
        format!(
            "{}.{} cannot be written to PostgreSQL: {reason}",
            t.source,
            t.columns.get(column).map_or("?", |c| c.name.as_str())
        ),
        "leave the column out of the task's selection (`columns`), or change the value on the source",
    )
}

/// Appends `(v1, v2, …)` of the target columns of a source row.
fn row_literal(t: &TargetTable, row: &[Value], out: &mut String) -> Result<(), TargetError> {
    out.push('(');
    for (i, (c, s)) in t.columns.iter().zip(&t.source_index).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let v = row.get(*s).unwrap_or(&Value::Null);
        pg_literal(v, c, out).map_err(|r| value_error(t, i, r))?;
    }
    out.push(')');
    Ok(())
}

/// Appends `(k1, k2)` (or `k` for a one-column key) of a source row's key.
fn key_literal(t: &TargetTable, row: &[Value], out: &mut String) -> Result<(), TargetError> {
    if t.key.len() > 1 {
        out.push('(');
    }
    for (n, k) in t.key.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        let v = row.get(t.source_index[*k]).unwrap_or(&Value::Null);
        pg_literal(v, &t.columns[*k], out).map_err(|r| value_error(t, *k, r))?;
    }
    if t.key.len() > 1 {
        out.push(')');
    }
    Ok(())
}

impl PgTarget {
    pub async fn connect(params: &TargetParams) -> Result<Self, TargetError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&params.host)
            .port(params.port)
            .user(&params.user)
            .password(&params.password)
            .dbname(params.database.as_deref().unwrap_or("postgres"))
            .application_name("ferry")
            .connect_timeout(std::time::Duration::from_secs(5));
        let (client, connection) =
            config
                .connect(NoTls)
                .await
                .map_err(|e| match e.as_db_error() {
                    Some(_) => error(e),
                    None => TargetError::Transient(format!(
                        "cannot connect to PostgreSQL at {}:{}: {e}",
                        params.host, params.port
                    )),
                })?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL target connection ended");
            }
        });
        let mut settings = String::from(
            "SET TimeZone = 'UTC'; SET standard_conforming_strings = on; \
             SET bytea_output = 'hex'; SET extra_float_digits = 3",
        );
        if let Some(idle) = params.idle_transaction {
            let _ = write!(
                settings,
                "; SET idle_in_transaction_session_timeout = {}",
                idle.as_millis().max(1)
            );
        }
        client.batch_execute(&settings).await.map_err(error)?;
        Ok(Self {
            client,
            staging: HashMap::new(),
            staged: 0,
            conflicted: Default::default(),
            connection,
            guard: always(),
            open: false,
        })
    }

    pub(crate) async fn execute(&mut self, sql: &str) -> Result<(), TargetError> {
        self.client.batch_execute(sql).await.map_err(error)
    }

    /// Runs a `CREATE … IF NOT EXISTS`: two sessions creating the same object at once make
    /// one of them fail on the catalog's unique index (or find it created meanwhile), which
    /// means it exists.
    pub(crate) async fn execute_idempotent(&mut self, sql: &str) -> Result<(), TargetError> {
        use tokio_postgres::error::SqlState;
        match self.client.batch_execute(sql).await {
            Err(e)
                if e.code().is_some_and(|c| {
                    [
                        SqlState::UNIQUE_VIOLATION,
                        SqlState::DUPLICATE_TABLE,
                        SqlState::DUPLICATE_SCHEMA,
                    ]
                    .contains(c)
                }) =>
            {
                Ok(())
            }
            other => other.map_err(error),
        }
    }

    /// The first row `sql` answers, every column as text (`NULL` as empty).
    pub(crate) async fn query_texts(
        &mut self,
        sql: &str,
    ) -> Result<Option<Vec<String>>, TargetError> {
        let messages = self.client.simple_query(sql).await.map_err(error)?;
        Ok(messages.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(
                (0..r.len())
                    .map(|i| r.get(i).unwrap_or_default().to_owned())
                    .collect(),
            ),
            _ => None,
        }))
    }

    pub(crate) async fn create_table(
        &mut self,
        t: &TargetTable,
        def: &TableDef,
    ) -> Result<(), TargetError> {
        let keep = |c: &str| t.columns.iter().any(|k| k.name.eq_ignore_ascii_case(c));
        let statements = create_table(t.engine, &t.schema, &t.name, def, keep)
            .map_err(|e| TargetError::definite(e.to_string(), e.hint.clone()))?;
        for s in statements {
            self.execute(&s).await?;
        }
        Ok(())
    }

    /// The session's staging table for `t` as it is now (created on first use; emptied at each
    /// commit). A table whose columns changed since (DDL while it is copied, a table dropped and
    /// created again) gets a new one: a `COPY` into the old shape would fail.
    async fn staging(&mut self, t: &TargetTable) -> Result<String, TargetError> {
        let id = (t.schema.clone(), t.name.clone());
        let shape = shape_of(t);
        if let Some((name, was)) = self.staging.get(&id) {
            if *was == shape {
                return Ok(name.clone());
            }
            let old = name.clone();
            self.execute(&format!("DROP TABLE IF EXISTS {old}")).await?;
        }
        self.staged += 1;
        let name = format!("ferry_stage_{}", self.staged);
        self.execute(&format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {name} (LIKE {}) ON COMMIT DELETE ROWS",
            table_ref(t)
        ))
        .await?;
        self.staging.insert(id, (name.clone(), shape));
        Ok(name)
    }

    pub(crate) async fn load_rows(
        &mut self,
        t: &TargetTable,
        rows: &[Vec<Value>],
    ) -> Result<(), TargetError> {
        let id = (t.schema.clone(), t.name.clone());
        // A keyless table has no conflict to resolve: its whole content, straight in, in place
        // of whatever an earlier load left.
        if t.key.is_empty() {
            let tx = self.client.transaction().await.map_err(error)?;
            tx.batch_execute(&format!("DELETE FROM {}", table_ref(t)))
                .await
                .map_err(error)?;
            copy_rows(&tx, &table_ref(t), t, rows).await?;
            allowed(&self.guard)?;
            return tx.commit().await.map_err(error);
        }
        // First straight into the table, under a savepoint: on a table's first copy no row of
        // the chunk is there yet, and this skips the staging table's second write. A chunk whose
        // keys the binlog or an earlier load already wrote fails on the key (23505): rolled back
        // to the savepoint and loaded through staging, which this session then keeps doing for
        // the table.
        let stage = self.staging(t).await?;
        let mut tx = self.client.transaction().await.map_err(error)?;
        if !self.conflicted.contains(&id) {
            let direct = tx.savepoint("ferry_direct").await.map_err(error)?;
            match copy_rows(&direct, &table_ref(t), t, rows).await {
                Ok(()) => {
                    direct.commit().await.map_err(error)?;
                    allowed(&self.guard)?;
                    return tx.commit().await.map_err(error);
                }
                Err(CopyError::Conflict) => {
                    direct.rollback().await.map_err(error)?;
                    self.conflicted.insert(id);
                }
                Err(CopyError::Target(e)) => return Err(e),
            }
        }
        copy_rows(&tx, &stage, t, rows).await?;
        let columns = column_list(t);
        tx.batch_execute(&format!(
            "INSERT INTO {} ({columns}) SELECT {columns} FROM {stage}{}",
            table_ref(t),
            on_conflict(t)
        ))
        .await
        .map_err(error)?;
        allowed(&self.guard)?;
        tx.commit().await.map_err(error)
    }

    /// The statements applying `batch`: per table, deletes by key then multi-row upserts (a
    /// keyless table's changes one by one, in order).
    pub(crate) fn statements(
        batch: &Batch,
        tables: &HashMap<ObjectName, TargetTable>,
    ) -> Result<Vec<Statement>, TargetError> {
        let mut statements: Vec<Statement> = Vec::new();
        for (schema, ops) in batch.tables() {
            let Some(t) = tables.get(schema.name()) else {
                continue;
            };
            if t.key.is_empty() {
                let mut keyless = Vec::new();
                keyless_statements(t, ops.ops(), &mut keyless)?;
                statements.extend(keyless.into_iter().map(Statement::Sql));
                continue;
            }
            // Deletes first: within a batch each key has one op, so the order between
            // different keys does not matter.
            let key_columns: Vec<String> = t.key.iter().map(|k| q(&t.columns[*k].name)).collect();
            let key_columns = if key_columns.len() > 1 {
                format!("({})", key_columns.join(", "))
            } else {
                key_columns.join("")
            };
            let mut sql = String::new();
            for op in ops.ops() {
                if let RowOp::Delete(before) = op {
                    if sql.is_empty() {
                        let _ =
                            write!(sql, "DELETE FROM {} WHERE {key_columns} IN (", table_ref(t));
                    } else {
                        sql.push_str(", ");
                    }
                    key_literal(t, before, &mut sql)?;
                    if sql.len() >= MAX_STATEMENT_BYTES {
                        sql.push(')');
                        statements.push(Statement::Sql(std::mem::take(&mut sql)));
                    }
                }
            }
            if !sql.is_empty() {
                sql.push(')');
                statements.push(Statement::Sql(std::mem::take(&mut sql)));
            }
            // Upserts as `COPY` text for the staging table (see `copy_upsert`).
            let mut text = String::new();
            for op in ops.ops() {
                if let RowOp::Upsert(row) = op {
                    copy_line(t, row, &mut text)?;
                    if text.len() >= MAX_STATEMENT_BYTES {
                        statements.push(Statement::CopyUpsert {
                            table: Box::new(t.clone()),
                            text: std::mem::take(&mut text),
                        });
                    }
                }
            }
            if !text.is_empty() {
                statements.push(Statement::CopyUpsert {
                    table: Box::new(t.clone()),
                    text,
                });
            }
        }
        Ok(statements)
    }

    /// Upserts rows of `t` given as `COPY` text, inside the transaction [`crate::Target::run`] holds
    /// open: copied into the session's staging table, inserted from it with the table's
    /// conflict clause, and the staging table emptied for the transaction's next part (its
    /// `ON COMMIT DELETE ROWS` empties it only at the commit).
    pub(crate) async fn copy_upsert(
        &mut self,
        t: &TargetTable,
        text: String,
    ) -> Result<(), TargetError> {
        let stage = self.staging(t).await?;
        let columns = column_list(t);
        let sink = self
            .client
            .copy_in(&format!("COPY {stage} ({columns}) FROM STDIN"))
            .await
            .map_err(error)?;
        futures::pin_mut!(sink);
        sink.send(Bytes::from(text)).await.map_err(error)?;
        sink.finish().await.map_err(error)?;
        self.client
            .batch_execute(&format!(
                "INSERT INTO {} ({columns}) SELECT {columns} FROM {stage}{}; TRUNCATE {stage}",
                table_ref(t),
                on_conflict(t)
            ))
            .await
            .map_err(error)
    }

    /// Forgets the staging tables (a rolled-back transaction took those it created with it);
    /// the next use creates them again.
    pub(crate) fn forget_staging(&mut self) {
        self.staging.clear();
    }

    pub(crate) async fn target_rows(&mut self, t: &TargetTable) -> Result<TargetRows, TargetError> {
        let select: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{}::text", q(&c.name)))
            .collect();
        let messages = self
            .client
            .simple_query(&format!(
                "SELECT {} FROM {}",
                select.join(", "),
                table_ref(t)
            ))
            .await
            .map_err(error)?;
        let mut out = TargetRows::new();
        for m in messages {
            if let SimpleQueryMessage::Row(r) = m {
                let texts: Vec<Option<String>> = t
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| canonical_pg(r.get(i), c))
                    .collect();
                let (key, hash) = target_row(t, &texts);
                let e = out.entry(key).or_insert((hash, 0));
                e.1 += 1;
            }
        }
        Ok(out)
    }
}

/// Why a `COPY` failed: a key already there, or anything else.
enum CopyError {
    Conflict,
    Target(TargetError),
}

impl From<TargetError> for CopyError {
    fn from(e: TargetError) -> Self {
        Self::Target(e)
    }
}

impl From<CopyError> for TargetError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Target(e) => e,
            CopyError::Conflict => {
                TargetError::Transient("a key of the chunk is already on the target".into())
            }
        }
    }
}

/// `row` of `t` as one line of `COPY` text.
fn copy_line(t: &TargetTable, row: &[Value], out: &mut String) -> Result<(), TargetError> {
    for (i, (c, s)) in t.columns.iter().zip(&t.source_index).enumerate() {
        if i > 0 {
            out.push('\t');
        }
        let v = row.get(*s).unwrap_or(&Value::Null);
        pg_copy(v, c, out).map_err(|r| value_error(t, i, r))?;
    }
    out.push('\n');
    Ok(())
}

/// `COPY`s `rows` of `t` into `into` (the table or its staging table) in `tx`.
async fn copy_rows(
    tx: &tokio_postgres::Transaction<'_>,
    into: &str,
    t: &TargetTable,
    rows: &[Vec<Value>],
) -> Result<(), CopyError> {
    let conflict_or = |e: tokio_postgres::Error| match e.code() {
        Some(c) if *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => CopyError::Conflict,
        _ => CopyError::Target(error(e)),
    };
    let columns = column_list(t);
    let sink = tx
        .copy_in(&format!("COPY {into} ({columns}) FROM STDIN"))
        .await
        .map_err(conflict_or)?;
    futures::pin_mut!(sink);
    let mut buf = String::with_capacity(256 * 1024);
    for row in rows {
        copy_line(t, row, &mut buf)?;
        if buf.len() >= 256 * 1024 {
            let chunk = std::mem::replace(&mut buf, String::with_capacity(256 * 1024));
            sink.send(Bytes::from(chunk)).await.map_err(conflict_or)?;
        }
    }
    if !buf.is_empty() {
        sink.send(Bytes::from(buf)).await.map_err(conflict_or)?;
    }
    sink.finish().await.map_err(conflict_or)?;
    Ok(())
}

/// A keyless table's changes, one row at a time: a delete removes one equal row.
fn keyless_statements(
    t: &TargetTable,
    ops: &[RowOp],
    out: &mut Vec<String>,
) -> Result<(), TargetError> {
    let delete_one = |row: &[Value], out: &mut Vec<String>| -> Result<(), TargetError> {
        let mut conditions = Vec::new();
        for (i, (c, s)) in t.columns.iter().zip(&t.source_index).enumerate() {
            let mut lit = String::new();
            pg_literal(row.get(*s).unwrap_or(&Value::Null), c, &mut lit)
                .map_err(|r| value_error(t, i, r))?;
            conditions.push(format!("{} IS NOT DISTINCT FROM {lit}", q(&c.name)));
        }
        out.push(format!(
            "DELETE FROM {0} WHERE ctid = (SELECT ctid FROM {0} WHERE {1} LIMIT 1)",
            table_ref(t),
            conditions.join(" AND ")
        ));
        Ok(())
    };
    let insert = |row: &[Value], out: &mut Vec<String>| -> Result<(), TargetError> {
        let mut sql = format!("INSERT INTO {} ({}) VALUES ", table_ref(t), column_list(t));
        row_literal(t, row, &mut sql)?;
        out.push(sql);
        Ok(())
    };
    for op in ops {
        match op {
            RowOp::Upsert(row) => insert(row, out)?,
            RowOp::Delete(row) => delete_one(row, out)?,
            RowOp::Replace { before, after } => {
                delete_one(before, out)?;
                insert(after, out)?;
            }
        }
    }
    Ok(())
}

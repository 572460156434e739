//! MySQL/MariaDB as a target.
//!
//! Rows are written as prepared multi-row `INSERT … ON DUPLICATE KEY UPDATE c = VALUES(c)`
//! statements of up to 1,000 rows or a megabyte of values, bound in the binary protocol
//! (MariaDB refuses MySQL 8's `AS new` form; `VALUES()` works on both),
//! deletes as `DELETE … WHERE key IN (…)`. The session Ferry opens writes values back exactly as
//! the source stored them: UTC, utf8mb4, zero dates allowed, `NO_AUTO_VALUE_ON_ZERO` (a key of 0
//! stays 0), `NO_BACKSLASH_ESCAPES` (see `literal`), and foreign key checks off (rows of a
//! transaction may arrive in another order than the source wrote them).

use std::collections::HashMap;
use std::fmt::Write as _;

use ferry_domain::change::ObjectName;
use ferry_domain::convert::{TargetEngine, create_table, quote};
use ferry_domain::schema::TableDef;
use ferry_domain::sync::{Batch, RowOp, TargetTable};
use ferry_domain::value::Value;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use crate::literal::{mysql_literal, mysql_param};
use crate::verify::{TargetRows, canonical_source, target_row};
use crate::{MAX_STATEMENT_BYTES, Statement, TargetError, TargetParams, WriteGuard, always};
use ferry_mysql::snapshot::from_result;

/// A connection to a MySQL/MariaDB target.
pub struct MysqlTarget {
    conn: Conn,
    pub(crate) guard: WriteGuard,
    /// A transaction is open, waiting for the rest of a big source transaction.
    pub(crate) open: bool,
}

impl std::fmt::Debug for MysqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlTarget").finish_non_exhaustive()
    }
}

fn error(e: mysql_async::Error) -> TargetError {
    use ferry_mysql::ServerErrorKind;
    match e {
        mysql_async::Error::Server(s) => {
            let message = format!(
                "the target refused a statement (error {}): {}",
                s.code, s.message
            );
            match ServerErrorKind::of(s.code) {
                ServerErrorKind::AccessDenied => TargetError::definite(
                    message,
                    "grant the target user CREATE, INSERT, UPDATE, DELETE and SELECT on the target databases",
                ),
                ServerErrorKind::ValueRejected => TargetError::definite(
                    message,
                    "the target column cannot hold a source value: compare the target table with the source, or let Ferry create it",
                ),
                ServerErrorKind::SchemaMismatch | ServerErrorKind::UnknownDatabase => {
                    TargetError::definite(
                        message,
                        "the target table differs from what Ferry expects: it may have been changed by hand (docs/sync.md)",
                    )
                }
                // Deadlocks, lock waits, read-only servers in failover, lost connections; a
                // binlog error cannot come from a target's statements.
                ServerErrorKind::BinlogUnavailable | ServerErrorKind::Other => {
                    TargetError::Transient(message)
                }
            }
        }
        other => TargetError::Transient(format!("the target: {other}")),
    }
}

fn q(name: &str) -> String {
    quote(TargetEngine::Mysql, name)
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

fn on_duplicate(t: &TargetTable) -> String {
    if t.key.is_empty() {
        return String::new();
    }
    let set: Vec<String> = (0..t.columns.len())
        .filter(|i| !t.key.contains(i))
        .map(|i| {
            let c = q(&t.columns[i].name);
            format!("{c} = VALUES({c})")
        })
        .collect();
    match set.is_empty() {
        // Every column is in the key: a duplicate is already the row.
        true => {
            let k = q(&t.columns[t.key[0]].name);
            format!(" ON DUPLICATE KEY UPDATE {k} = {k}")
        }
        false => format!(" ON DUPLICATE KEY UPDATE {}", set.join(", ")),
    }
}

fn key_literal(t: &TargetTable, row: &[Value], out: &mut String) {
    if t.key.len() > 1 {
        out.push('(');
    }
    for (n, k) in t.key.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        mysql_literal(
            row.get(t.source_index[*k]).unwrap_or(&Value::Null),
            &t.columns[*k],
            out,
        );
    }
    if t.key.len() > 1 {
        out.push(')');
    }
}

/// Multi-row upserts of `rows`, each statement under [`MAX_STATEMENT_BYTES`].
/// The most placeholders a prepared statement may have (MySQL's and MariaDB's limit).
const MAX_PLACEHOLDERS: usize = 65_535;
/// Rows per prepared upsert: statements of one table and size repeat from batch to batch, so
/// the connection's statement cache prepares each shape once.
const ROWS_PER_UPSERT: usize = 1_000;

/// Multi-row upserts of `rows` as prepared statements, the values bound in the binary protocol
/// (measured 1.6 × the same rows as literals, docs/benchmarks.md): blocks of
/// [`ROWS_PER_UPSERT`] rows (fewer for wide tables, by the placeholder limit), a block cut short
/// at a megabyte of values.
fn upserts<'r>(t: &TargetTable, rows: impl Iterator<Item = &'r [Value]>, out: &mut Vec<Statement>) {
    let width = t.columns.len().max(1);
    let per = ROWS_PER_UPSERT.min(MAX_PLACEHOLDERS / width).max(1);
    let marks = format!("({})", vec!["?"; width].join(", "));
    let sql = |n: usize| {
        format!(
            "INSERT INTO {} ({}) VALUES {}{}",
            table_ref(t),
            column_list(t),
            vec![marks.as_str(); n].join(", "),
            on_duplicate(t)
        )
    };
    let (mut params, mut n, mut bytes) = (Vec::new(), 0usize, 0usize);
    let mut flush = |params: &mut Vec<mysql_async::Value>, n: &mut usize, bytes: &mut usize| {
        out.push(Statement::Prepared {
            sql: sql(*n),
            params: std::mem::take(params),
        });
        (*n, *bytes) = (0, 0);
    };
    for row in rows {
        for (c, s) in t.columns.iter().zip(&t.source_index) {
            let p = mysql_param(row.get(*s).unwrap_or(&Value::Null), c);
            bytes += param_bytes(&p);
            params.push(p);
        }
        n += 1;
        if n == per || bytes >= MAX_STATEMENT_BYTES {
            flush(&mut params, &mut n, &mut bytes);
        }
    }
    if n > 0 {
        flush(&mut params, &mut n, &mut bytes);
    }
}

/// About what a bound value takes on the wire.
pub(crate) fn param_bytes(p: &mysql_async::Value) -> usize {
    match p {
        mysql_async::Value::Bytes(b) => b.len() + 2,
        _ => 8,
    }
}

impl MysqlTarget {
    pub async fn connect(params: &TargetParams) -> Result<Self, TargetError> {
        let opts = OptsBuilder::default()
            .ip_or_hostname(params.host.clone())
            .tcp_port(params.port)
            .user(Some(params.user.clone()))
            .pass(Some(params.password.clone()))
            .prefer_socket(false);
        let mut conn =
            match tokio::time::timeout(std::time::Duration::from_secs(5), Conn::new(opts)).await {
                Err(_) => {
                    return Err(TargetError::Transient(format!(
                        "the target {}:{} did not answer within 5s",
                        params.host, params.port
                    )));
                }
                Ok(r) => r.map_err(error)?,
            };
        conn.query_drop(
            "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_AUTO_VALUE_ON_ZERO,NO_BACKSLASH_ESCAPES', \
             time_zone = '+00:00', NAMES utf8mb4, foreign_key_checks = 0",
        )
        .await
        .map_err(error)?;
        if let Some(idle) = params.idle_transaction {
            // MariaDB ends a transaction idle this long (MySQL has no such setting: there the
            // guard alone keeps a late commit out).
            let _ = conn
                .query_drop(format!(
                    "SET SESSION idle_transaction_timeout = {}",
                    idle.as_secs().max(1)
                ))
                .await;
        }
        Ok(Self {
            conn,
            guard: always(),
            open: false,
        })
    }

    pub(crate) async fn close(self) {
        let _ = self.conn.disconnect().await;
    }

    pub(crate) async fn execute(&mut self, sql: &str) -> Result<(), TargetError> {
        self.conn.query_drop(sql).await.map_err(error)
    }

    /// Runs a prepared statement (prepared once per connection and shape: the connection
    /// caches it) with `params` bound in the binary protocol.
    pub(crate) async fn exec(
        &mut self,
        sql: &str,
        params: Vec<mysql_async::Value>,
    ) -> Result<(), TargetError> {
        self.conn
            .exec_drop(sql, mysql_async::Params::Positional(params))
            .await
            .map_err(error)
    }

    pub(crate) async fn create_table(
        &mut self,
        t: &TargetTable,
        def: &TableDef,
    ) -> Result<(), TargetError> {
        self.execute(&format!("CREATE DATABASE IF NOT EXISTS {}", q(&t.schema)))
            .await?;
        let keep = |c: &str| t.columns.iter().any(|k| k.name.eq_ignore_ascii_case(c));
        let statements = create_table(t.engine, &t.schema, &t.name, def, keep)
            .map_err(|e| TargetError::definite(e.to_string(), e.hint.clone()))?;
        for s in statements {
            self.execute(&s).await?;
        }
        Ok(())
    }

    /// The statements loading a chunk in one transaction (see `Target::load_rows`).
    pub(crate) fn load_statements(t: &TargetTable, rows: &[Vec<Value>]) -> Vec<Statement> {
        let mut statements = Vec::new();
        // A keyless table's chunk is its whole content, in place of an earlier load's.
        if t.key.is_empty() {
            statements.push(Statement::Sql(format!("DELETE FROM {}", table_ref(t))));
        }
        upserts(t, rows.iter().map(Vec::as_slice), &mut statements);
        statements
    }

    /// The first row `sql` answers, every column as text.
    pub(crate) async fn query_texts(
        &mut self,
        sql: &str,
    ) -> Result<Option<Vec<String>>, TargetError> {
        let row: Option<mysql_async::Row> = self.conn.query_first(sql).await.map_err(error)?;
        Ok(row.map(|r| {
            r.unwrap()
                .into_iter()
                .map(|v| match v {
                    mysql_async::Value::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    mysql_async::Value::Int(i) => i.to_string(),
                    mysql_async::Value::UInt(u) => u.to_string(),
                    other => other.as_sql(true),
                })
                .collect()
        }))
    }

    /// The statements applying `batch`: per table, deletes by key then multi-row upserts (a
    /// keyless table's changes one by one, in order).
    pub(crate) fn statements(
        batch: &Batch,
        tables: &HashMap<ObjectName, TargetTable>,
    ) -> Result<Vec<Statement>, TargetError> {
        let mut statements = Vec::new();
        for (schema, ops) in batch.tables() {
            let Some(t) = tables.get(schema.name()) else {
                continue;
            };
            if t.key.is_empty() {
                for op in ops.ops() {
                    match op {
                        RowOp::Upsert(row) => {
                            upserts(t, std::iter::once(row.as_slice()), &mut statements)
                        }
                        RowOp::Delete(row) => statements.push(Statement::Sql(delete_one(t, row))),
                        RowOp::Replace { before, after } => {
                            statements.push(Statement::Sql(delete_one(t, before)));
                            upserts(t, std::iter::once(after.as_slice()), &mut statements);
                        }
                    }
                }
                continue;
            }
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
                    key_literal(t, before, &mut sql);
                    if sql.len() >= MAX_STATEMENT_BYTES {
                        sql.push(')');
                        statements.push(Statement::Sql(std::mem::take(&mut sql)));
                    }
                }
            }
            if !sql.is_empty() {
                sql.push(')');
                statements.push(Statement::Sql(sql));
            }
            upserts(
                t,
                ops.ops().iter().filter_map(|op| match op {
                    RowOp::Upsert(row) => Some(row.as_slice()),
                    _ => None,
                }),
                &mut statements,
            );
        }
        Ok(statements)
    }

    pub(crate) async fn target_rows(&mut self, t: &TargetTable) -> Result<TargetRows, TargetError> {
        // The binary protocol: FLOAT and DOUBLE exactly, temporal values by field.
        let mut result = self
            .conn
            .exec_iter(
                format!("SELECT {} FROM {}", column_list(t), table_ref(t)),
                (),
            )
            .await
            .map_err(error)?;
        let mut out = TargetRows::new();
        let mut bad: Option<TargetError> = None;
        result
            .for_each(|row| {
                let texts: Vec<Option<String>> = row
                    .unwrap()
                    .into_iter()
                    .zip(&t.columns)
                    .map(|(v, c)| match from_result(v, &c.def) {
                        Ok(v) => canonical_source(&v, c, false),
                        Err(reason) => {
                            bad.get_or_insert_with(|| {
                                TargetError::Transient(format!(
                                    "reading {}.{} back: {reason}",
                                    t.name, c.name
                                ))
                            });
                            None
                        }
                    })
                    .collect();
                let (key, hash) = target_row(t, &texts);
                let e = out.entry(key).or_insert((hash, 0));
                e.1 += 1;
            })
            .await
            .map_err(error)?;
        match bad {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Removes one row equal to `row` (a keyless table).
fn delete_one(t: &TargetTable, row: &[Value]) -> String {
    let mut sql = format!("DELETE FROM {} WHERE ", table_ref(t));
    for (i, (c, s)) in t.columns.iter().zip(&t.source_index).enumerate() {
        if i > 0 {
            sql.push_str(" AND ");
        }
        let _ = write!(sql, "{} <=> ", q(&c.name));
        mysql_literal(row.get(*s).unwrap_or(&Value::Null), c, &mut sql);
    }
    sql.push_str(" LIMIT 1");
    sql
}

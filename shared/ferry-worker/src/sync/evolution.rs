//! Following the source's DDL on the target (see `ferry_domain::evolve`): tables created,
//! dropped, renamed, altered and truncated, and copied again where a copy was under way.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ferry_domain::change::ObjectName;
use ferry_domain::convert::TargetEngine;
use ferry_domain::evolve::{
    TableChange, alter_table, drop_table, rename_table, table_changes, truncate_table,
};
use ferry_domain::position::Position;
use ferry_domain::schema::TableDef;
use ferry_domain::schema::{SchemaCatalog, SchemaEntry};
use ferry_domain::selection::OperationKind;
use ferry_domain::sync::TargetTable;
use ferry_store::CopyRecord;

use super::applier::{Applier, checkpoint_applied, mark_loaded};
use super::setup::target_table;
use crate::copy::{Copies, plan_copy};
use crate::error::{DefiniteError, TaskError};
use crate::session::Session;

/// What following a DDL statement on the target needs.
pub(super) struct Evolution<'e, 's> {
    pub(super) session: &'e Session<'s>,
    pub(super) engine: TargetEngine,
    pub(super) applier: &'e mut Applier,
    pub(super) copies: &'e mut Copies,
}

/// Plans `table`'s copy from scratch and starts it (a table that appeared, or whose
/// definition changed while it was being copied).
async fn copy_again(
    e: &mut Evolution<'_, '_>,
    name: &ObjectName,
    table: &TargetTable,
    def: &TableDef,
) -> Result<(), TaskError> {
    e.copies.remove(name);
    let plan = plan_copy(
        &e.session.params,
        name,
        table,
        def,
        e.session.config.sync.chunk_rows,
    )
    .await?;
    e.session
        .state
        .store()
        .put_copy_plan(e.session.instance, &plan)
        .await?;
    e.copies.add(
        CopyRecord {
            plan,
            done: Default::default(),
            rows_done: 0,
        },
        Arc::new(def.clone()),
    );
    Ok(())
}

/// Empties `name`'s target table, as the source's `TRUNCATE` did. A table still being copied is
/// copied again from scratch: chunks read before the statement must not bring rows back.
pub(super) async fn truncate(
    e: &mut Evolution<'_, '_>,
    name: &ObjectName,
    def: Option<&TableDef>,
) -> Result<(), TaskError> {
    let Some(table) = e.applier.tables.get(name).cloned() else {
        return Ok(());
    };
    e.applier
        .target()
        .await?
        .execute(&[truncate_table(e.engine, &table.schema, &table.name)])
        .await?;
    if let Some(def) = def
        && !e.copies.table_done(name)
    {
        copy_again(e, name, &table, def).await?;
    }
    tracing::info!(instance = %e.session.instance, table = %name, "table truncated on the target");
    Ok(())
}

/// Makes the target follow one table change of a DDL statement (see `ferry_domain::evolve`).
pub(super) async fn follow(
    e: &mut Evolution<'_, '_>,
    change: TableChange,
) -> Result<(), TaskError> {
    let unconvertible = |name: &ObjectName, u: ferry_domain::convert::Unconvertible| -> TaskError {
        DefiniteError::TypeConversion {
            table: name.to_string(),
            message: u.to_string(),
            hint: u.hint,
        }
        .into()
    };
    match change {
        TableChange::Created { name, def } => {
            let Some(table) = target_table(&name, &def, &e.session.config.objects, e.engine)?
            else {
                return Ok(());
            };
            e.applier.target().await?.create_table(&table, &def).await?;
            copy_again(e, &name, &table, &def).await?;
            tracing::info!(instance = %e.session.instance, table = %name, "table created on the target");
            e.applier.tables.insert(name, table);
        }
        TableChange::Dropped { name } => {
            if let Some(table) = e.applier.tables.remove(&name) {
                e.applier
                    .target()
                    .await?
                    .execute(&[drop_table(e.engine, &table.schema, &table.name)])
                    .await?;
                e.copies.remove(&name);
                e.session
                    .state
                    .store()
                    .delete_copy(e.session.instance, &name)
                    .await?;
                tracing::info!(instance = %e.session.instance, table = %name, "table dropped on the target");
            }
        }
        TableChange::Renamed { from, to, def } => {
            let old = e.applier.tables.remove(&from);
            let new = target_table(&to, &def, &e.session.config.objects, e.engine)?;
            match (old, new) {
                (Some(old), Some(new)) => {
                    e.applier
                        .target()
                        .await?
                        .execute(&rename_table(
                            e.engine,
                            (&old.schema, &old.name),
                            (&new.schema, &new.name),
                        ))
                        .await?;
                    if !e.copies.table_done(&from) {
                        copy_again(e, &to, &new, &def).await?;
                    }
                    e.copies.remove(&from);
                    e.applier.tables.insert(to, new);
                }
                // Renamed out of the selection: no longer applied; the target table stays.
                (Some(_), None) => e.copies.remove(&from),
                // Renamed into the selection: a new table with rows to copy.
                (None, Some(new)) => {
                    e.applier.target().await?.create_table(&new, &def).await?;
                    copy_again(e, &to, &new, &def).await?;
                    e.applier.tables.insert(to, new);
                }
                (None, None) => {}
            }
        }
        TableChange::Altered { name, old, new } => {
            let Some(current) = e.applier.tables.get(&name) else {
                return Ok(());
            };
            let Some(selected) = e.session.config.objects.table(&name.database, &name.table) else {
                return Ok(());
            };
            let statements =
                alter_table(e.engine, &current.schema, &current.name, &old, &new, |c| {
                    selected.includes_column(c)
                })
                .map_err(|u| unconvertible(&name, u))?;
            e.applier.target().await?.execute(&statements).await?;
            let Some(table) = target_table(&name, &new, &e.session.config.objects, e.engine)?
            else {
                return Ok(());
            };
            if !e.copies.table_done(&name) {
                copy_again(e, &name, &table, &new).await?;
            }
            tracing::info!(instance = %e.session.instance, table = %name, statements = statements.len(), "table altered on the target");
            e.applier.tables.insert(name, table);
        }
    }
    Ok(())
}

/// A DDL statement of the stream at `position`: the batch before it is applied, the schema
/// history records it, the target follows it (truncations included), and the applied position
/// is checkpointed at once: target DDL is not idempotent (a column added twice fails), so a
/// restart must not apply the statement again.
pub(super) async fn on_ddl(
    e: &mut Evolution<'_, '_>,
    catalog: &mut SchemaCatalog,
    at: (&Position, DateTime<Utc>),
    database: Option<&str>,
    statement: &str,
    schema: &[SchemaEntry],
) -> Result<(), TaskError> {
    let config = &e.session.config;
    let truncated: Vec<ObjectName> = if config.objects.includes(OperationKind::Ddl) {
        ferry_mysql::ddl::truncated_tables(database, statement)
            .into_iter()
            .filter(|t| e.applier.tables.contains_key(t))
            .collect()
    } else {
        Vec::new()
    };
    let changes_target = !schema.is_empty() || !truncated.is_empty();
    if changes_target {
        e.applier.drain().await?;
        // Every chunk loaded is marked before a copy may be planned again below.
        mark_loaded(e.session, e.applier).await?;
    }
    if !schema.is_empty() {
        e.session
            .state
            .store()
            .put_schema_entries(e.session.instance, at.0, schema)
            .await?;
    }
    let changes = table_changes(schema, |n| catalog.get(n));
    for name in &truncated {
        truncate(e, name, catalog.get(name)).await?;
    }
    for entry in schema {
        catalog.apply(entry);
    }
    for change in changes {
        follow(e, change).await?;
    }
    e.applier.batched_commit = Some((at.0.clone(), at.1));
    e.applier.drain().await?;
    if changes_target {
        // MySQL runs DDL outside transactions: the progress row follows it at once, so a
        // restart does not run the statement again.
        let applied = e.applier.applied_at(at);
        e.applier.target().await?.record_progress(&applied).await?;
        checkpoint_applied(e.session, e.applier).await?;
    }
    Ok(())
}

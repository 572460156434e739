//! What a source holds, for choosing a task's objects (the console's object picker, `ferry
//! task objects`): its databases, their base tables with an estimate of their rows, and each
//! table's columns and primary key, as the connecting user can see them.

use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::ddl::user_schemas;
use crate::{ConnectError, ConnectParams, connect};

/// A source's databases, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceObjects {
    pub databases: Vec<DatabaseObjects>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseObjects {
    pub name: String,
    /// Base tables, in name order (views are not captured: their rows are not in the binlog).
    pub tables: Vec<TableObjects>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableObjects {
    pub name: String,
    /// The server's estimate (`information_schema.TABLES.TABLE_ROWS`), not a count.
    pub estimated_rows: Option<u64>,
    /// The primary key's columns, in key order; empty without one.
    pub primary_key: Vec<String>,
    pub columns: Vec<ColumnObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnObject {
    pub name: String,
    /// The declared type (`int(10) unsigned`, `varchar(20)`).
    #[serde(rename = "type")]
    pub column_type: String,
    pub nullable: bool,
}

/// Lists what the source at `params` holds. Connection failures say what to fix; a catalog
/// query the user may not run says which privilege it needs.
pub async fn list_objects(params: &ConnectParams) -> Result<SourceObjects, ConnectError> {
    let mut conn = connect(params).await?;
    let listed = read(&mut conn).await.map_err(|e| ConnectError {
        message: format!("reading the source's catalog failed: {e}"),
        hint: "the user needs SELECT on the tables it should list (information_schema shows only those)"
            .into(),
    });
    let _ = conn.disconnect().await;
    listed
}

async fn read(conn: &mut mysql_async::Conn) -> Result<SourceObjects, mysql_async::Error> {
    let mut databases = Vec::new();
    // Option everywhere below: a NULL in a non-Option column panics inside mysql_async.
    for name in user_schemas(conn).await? {
        let tables: Vec<(Option<String>, Option<u64>)> = conn
            .exec(
                "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                (&name,),
            )
            .await?;
        type ColumnRow = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let columns: Vec<ColumnRow> = conn
            .exec(
                "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE \
                 FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? \
                 ORDER BY TABLE_NAME, ORDINAL_POSITION",
                (&name,),
            )
            .await?;
        let keys: Vec<(Option<String>, Option<String>)> = conn
            .exec(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS \
                 WHERE TABLE_SCHEMA = ? AND INDEX_NAME = 'PRIMARY' ORDER BY TABLE_NAME, SEQ_IN_INDEX",
                (&name,),
            )
            .await?;
        let mut out: Vec<TableObjects> = tables
            .into_iter()
            .filter_map(|(table, rows)| {
                Some(TableObjects {
                    name: table?,
                    estimated_rows: rows,
                    primary_key: Vec::new(),
                    columns: Vec::new(),
                })
            })
            .collect();
        for (table, column, column_type, nullable) in columns {
            let (Some(table), Some(column), Some(column_type)) = (table, column, column_type)
            else {
                continue;
            };
            if let Some(t) = out.iter_mut().find(|t| t.name == table) {
                t.columns.push(ColumnObject {
                    name: column,
                    column_type,
                    nullable: nullable.as_deref() != Some("NO"),
                });
            }
        }
        for (table, column) in keys {
            if let (Some(table), Some(column)) = (table, column)
                && let Some(t) = out.iter_mut().find(|t| t.name == table)
            {
                t.primary_key.push(column);
            }
        }
        databases.push(DatabaseObjects { name, tables: out });
    }
    Ok(SourceObjects { databases })
}

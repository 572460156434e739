//! Prechecks of a source (binlog settings, privileges, objects) and of a MySQL/MariaDB target.

use std::collections::BTreeSet;

use ferry_domain::convert::{TargetEngine, convert};
use ferry_domain::precheck::{CheckItem, PrecheckReport};
use ferry_domain::selection::{ObjectSelection, SYSTEM_SCHEMAS};
use ferry_domain::target_table::{FoundColumn, FoundTable};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use crate::connect::{ConnectError, ConnectParams, connect};

/// Binlog retention below this is a warning: a longer worker outage loses the position.
const MIN_RETENTION_HOURS: u64 = 24;

/// Checks a source for change capture with the task's object selection.
pub async fn precheck_source(
    params: &ConnectParams,
    selection: &ObjectSelection,
) -> PrecheckReport {
    let mut items = Vec::new();
    let mut conn = match connect(params).await {
        Ok(c) => c,
        Err(e) => {
            items.push(CheckItem::failed("source.connect", e.message, e.hint));
            return PrecheckReport { items };
        }
    };
    items.push(CheckItem::passed(
        "source.connect",
        format!(
            "connected to {}:{} as {}",
            params.host, params.port, params.user
        ),
    ));
    if let Err(e) = source_checks(&mut conn, selection, &mut items).await {
        items.push(CheckItem::failed(
            "source.query",
            format!("a catalog query failed: {e}"),
            "the capture user needs SELECT on the catalog; check its privileges",
        ));
    }
    let _ = conn.disconnect().await;
    PrecheckReport { items }
}

/// Whether the source user may keep the heartbeat writer's table (`database.ferry_heartbeat`):
/// create it, insert and update its row. A **warning** when not: capture runs without it, and
/// the source delay falls back to the binlog's whole-second times.
pub async fn precheck_heartbeat(params: &ConnectParams, database: &str) -> CheckItem {
    const ID: &str = "source.heartbeat";
    let mut conn = match connect(params).await {
        Ok(c) => c,
        Err(e) => return CheckItem::failed(ID, e.message, e.hint),
    };
    let missing = heartbeat_privileges(&mut conn, database).await;
    let _ = conn.disconnect().await;
    match missing {
        Ok(m) if m.is_empty() => CheckItem::passed(
            ID,
            format!("the user may create and write {database}.ferry_heartbeat"),
        ),
        Ok(m) => CheckItem::warning(
            ID,
            format!(
                "the heartbeat writer cannot work: the user lacks {} on {database}.ferry_heartbeat (capture runs; the delay falls back to the binlog's whole seconds)",
                m.join(", ")
            ),
            format!(
                "GRANT {} ON `{}`.`ferry_heartbeat` TO the capture user, or leave out `heartbeat`",
                m.join(", "),
                database.replace('`', "``")
            ),
        ),
        Err(e) => CheckItem::warning(
            ID,
            format!("cannot read the user's privileges: {e}"),
            "check the capture user's privileges",
        ),
    }
}

/// Whether every selected column's type converts for a `target` table
/// (`ferry_domain::convert`): a failure names the columns that cannot, a warning the ones that
/// lose something (the documented losses of docs/type-conversion.md).
pub async fn precheck_conversion(
    params: &ConnectParams,
    selection: &ObjectSelection,
    target: TargetEngine,
) -> CheckItem {
    const ID: &str = "target.type_conversion";
    let mut conn = match connect(params).await {
        Ok(c) => c,
        Err(e) => return CheckItem::failed(ID, e.message, e.hint),
    };
    let catalog = crate::ddl::read_catalog(&mut conn).await;
    let _ = conn.disconnect().await;
    let catalog = match catalog {
        Ok(c) => c,
        Err(e) => {
            return CheckItem::failed(
                ID,
                format!("cannot read the source's catalog: {e}"),
                "the capture user needs SELECT on the selected tables",
            );
        }
    };
    let mut refused = Vec::new();
    let mut losses = Vec::new();
    for (name, def) in catalog.tables() {
        let Some(table) = selection.table(&name.database, &name.table) else {
            continue;
        };
        for column in def
            .columns
            .iter()
            .filter(|c| table.includes_column(&c.name))
        {
            let at = format!("{}.{}.{}", name.database, name.table, column.name);
            match convert(&column.column_type, target) {
                Ok(c) => {
                    if let Some(lost) = c.lossy {
                        losses.push(format!(
                            "{at} ({} → {}: {lost})",
                            column.column_type, c.sql_type
                        ));
                    }
                }
                Err(e) => refused.push(format!("{at} ({})", e.column_type)),
            }
        }
    }
    let list = |v: &[String]| {
        let shown: Vec<&str> = v.iter().take(10).map(String::as_str).collect();
        let more = v.len().saturating_sub(10);
        if more > 0 {
            format!("{} and {more} more", shown.join("; "))
        } else {
            shown.join("; ")
        }
    };
    if !refused.is_empty() {
        CheckItem::failed(
            ID,
            format!(
                "{target} cannot hold these columns' types: {}",
                list(&refused)
            ),
            "leave the columns out of the selection (`columns`); docs/type-conversion.md lists every type Ferry converts",
        )
    } else if !losses.is_empty() {
        CheckItem::warning(
            ID,
            format!(
                "these columns convert with a loss on {target}: {}",
                list(&losses)
            ),
            "see docs/type-conversion.md; leave a column out of the selection if the loss matters",
        )
    } else {
        CheckItem::passed(
            ID,
            format!("every selected column converts exactly for {target}"),
        )
    }
}

async fn heartbeat_privileges(
    conn: &mut Conn,
    database: &str,
) -> Result<Vec<&'static str>, mysql_async::Error> {
    let mut have = global_privileges(conn).await?;
    if have.contains("ALL PRIVILEGES") {
        return Ok(Vec::new());
    }
    let granted: Vec<String> = conn
        .exec(
            "SELECT PRIVILEGE_TYPE FROM information_schema.SCHEMA_PRIVILEGES WHERE TABLE_SCHEMA = ? \
             UNION SELECT PRIVILEGE_TYPE FROM information_schema.TABLE_PRIVILEGES \
             WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'ferry_heartbeat'",
            (database, database),
        )
        .await?;
    have.extend(granted);
    Ok(["CREATE", "INSERT", "UPDATE"]
        .into_iter()
        .filter(|p| !have.contains(*p))
        .collect())
}

async fn source_checks(
    conn: &mut Conn,
    selection: &ObjectSelection,
    items: &mut Vec<CheckItem>,
) -> Result<(), mysql_async::Error> {
    let version: String = conn
        .query_first("SELECT VERSION()")
        .await?
        .unwrap_or_default();
    items.push(check_version(&version));

    let log_bin = variable(conn, "log_bin").await?;
    items.push(match log_bin.as_deref() {
        Some("1" | "ON") => CheckItem::passed("source.log_bin", "the binary log is on"),
        other => CheckItem::failed(
            "source.log_bin",
            format!("the binary log is off (log_bin = {})", other.unwrap_or("unknown")),
            "start the server with --log-bin (on RDS/Aurora: enable automated backups, or binlog_format in the cluster parameter group)",
        ),
    });
    items.push(expect_variable(conn, "binlog_format", "ROW", "source.binlog_format").await?);
    items.push(expect_variable(conn, "binlog_row_image", "FULL", "source.binlog_row_image").await?);
    items.push(match variable(conn, "binlog_row_metadata").await? {
        None => CheckItem::passed(
            "source.binlog_row_metadata",
            "this server version has no binlog_row_metadata; Ferry reads column metadata from the catalog",
        ),
        Some(v) if v.eq_ignore_ascii_case("FULL") => {
            CheckItem::passed("source.binlog_row_metadata", "binlog_row_metadata is FULL")
        }
        Some(v) => CheckItem::warning(
            "source.binlog_row_metadata",
            format!("binlog_row_metadata is {v}: rows events do not carry column names or signedness"),
            "SET GLOBAL binlog_row_metadata = 'FULL' (and in the server's configuration) so decoding never depends on the catalog being in step",
        ),
    });
    let server_id = variable(conn, "server_id").await?;
    items.push(match server_id.as_deref() {
        Some("0") | None => CheckItem::failed(
            "source.server_id",
            "server_id is 0: the server cannot serve a binlog stream",
            "set server_id to a non-zero value unique among the servers",
        ),
        Some(id) => CheckItem::passed("source.server_id", format!("server_id is {id}")),
    });
    items.push(check_privileges(conn, selection).await?);
    items.push(check_retention(conn).await?);

    let tables = selected_tables(conn, selection).await?;
    items.push(check_objects(conn, selection, &tables).await?);
    items.push(check_primary_keys(conn, &tables).await?);
    Ok(())
}

fn check_version(version: &str) -> CheckItem {
    let numbers: Vec<u32> = version
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .take(2)
        .filter_map(|p| p.parse().ok())
        .collect();
    let (major, minor) = (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    );
    let mariadb = version.to_ascii_lowercase().contains("mariadb");
    let supported = if mariadb {
        (major, minor) >= (10, 3)
    } else {
        (major, minor) >= (5, 7)
    };
    if supported {
        CheckItem::passed(
            "source.version",
            format!(
                "{} {version} is supported",
                if mariadb { "MariaDB" } else { "MySQL" }
            ),
        )
    } else {
        CheckItem::failed(
            "source.version",
            format!("server version {version} is not supported"),
            "use MySQL 5.7 or later, or MariaDB 10.3 or later",
        )
    }
}

async fn variable(conn: &mut Conn, name: &str) -> Result<Option<String>, mysql_async::Error> {
    let row: Option<(String, String)> = conn
        .exec_first("SHOW GLOBAL VARIABLES WHERE Variable_name = ?", (name,))
        .await?;
    Ok(row.map(|(_, v)| v))
}

async fn expect_variable(
    conn: &mut Conn,
    name: &str,
    want: &str,
    id: &str,
) -> Result<CheckItem, mysql_async::Error> {
    Ok(match variable(conn, name).await? {
        Some(v) if v.eq_ignore_ascii_case(want) => {
            CheckItem::passed(id, format!("{name} is {want}"))
        }
        other => CheckItem::failed(
            id,
            format!(
                "{name} is {}, capture needs {want}",
                other.as_deref().unwrap_or("not set")
            ),
            format!(
                "SET GLOBAL {name} = '{want}' and set it in the server's configuration (on RDS/Aurora: the parameter group); sessions opened before keep the old value"
            ),
        ),
    })
}

/// The global privileges of the current user, upper case, with aliases folded to one name.
async fn global_privileges(conn: &mut Conn) -> Result<BTreeSet<String>, mysql_async::Error> {
    let grants: Vec<String> = conn.query("SHOW GRANTS FOR CURRENT_USER()").await?;
    let mut privileges = BTreeSet::new();
    for grant in grants {
        let upper = grant.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("GRANT ") else {
            continue;
        };
        let Some((privs, on)) = rest.split_once(" ON ") else {
            continue;
        };
        if !on.trim_start().starts_with("*.*") {
            continue;
        }
        for p in privs.split(',') {
            let p = p.trim();
            let folded = match p {
                "REPLICATION REPLICA" => "REPLICATION SLAVE",
                "BINLOG MONITOR" => "REPLICATION CLIENT",
                "ALL" => "ALL PRIVILEGES",
                other => other,
            };
            privileges.insert(folded.to_owned());
        }
    }
    Ok(privileges)
}

async fn check_privileges(
    conn: &mut Conn,
    selection: &ObjectSelection,
) -> Result<CheckItem, mysql_async::Error> {
    let have = global_privileges(conn).await?;
    if have.contains("ALL PRIVILEGES") {
        return Ok(CheckItem::passed(
            "source.privileges",
            "the user has ALL PRIVILEGES",
        ));
    }
    let mut missing: Vec<&str> = ["REPLICATION SLAVE", "REPLICATION CLIENT"]
        .into_iter()
        .filter(|p| !have.contains(*p))
        .collect();
    if !have.contains("SELECT") && !can_select_selected(conn, selection).await? {
        missing.push("SELECT");
    }
    Ok(if missing.is_empty() {
        CheckItem::passed(
            "source.privileges",
            "the user has REPLICATION SLAVE, REPLICATION CLIENT and SELECT",
        )
    } else {
        CheckItem::failed(
            "source.privileges",
            format!("the user lacks {}", missing.join(", ")),
            format!(
                "GRANT {} ON *.* TO the capture user (MariaDB calls REPLICATION CLIENT `BINLOG MONITOR`)",
                missing.join(", ")
            ),
        )
    })
}

/// SELECT granted on each exactly named database, when not granted globally.
async fn can_select_selected(
    conn: &mut Conn,
    selection: &ObjectSelection,
) -> Result<bool, mysql_async::Error> {
    if selection.databases.iter().any(|d| d.name.is_wildcard()) {
        return Ok(false);
    }
    for db in &selection.databases {
        let n: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM information_schema.SCHEMA_PRIVILEGES \
                 WHERE TABLE_SCHEMA = ? AND PRIVILEGE_TYPE = 'SELECT'",
                (db.name.as_str(),),
            )
            .await?;
        if n.unwrap_or(0) == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn check_retention(conn: &mut Conn) -> Result<CheckItem, mysql_async::Error> {
    let seconds = match variable(conn, "binlog_expire_logs_seconds").await? {
        Some(s) => s.parse::<u64>().unwrap_or(0),
        None => 0,
    };
    let days = match variable(conn, "expire_logs_days").await? {
        Some(d) => d.parse::<f64>().unwrap_or(0.0),
        None => 0.0,
    };
    // MariaDB keeps both in step; MySQL 8 uses seconds. Zero means never purged by age.
    let hours = if seconds > 0 {
        seconds / 3600
    } else {
        // Whole hours are enough for a warning threshold; days are at most a few hundred.
        (days * 24.0).round() as u64
    };
    Ok(if seconds == 0 && days == 0.0 {
        CheckItem::passed("source.binlog_retention", "binlogs are not purged by age")
    } else if hours >= MIN_RETENTION_HOURS {
        CheckItem::passed(
            "source.binlog_retention",
            format!("binlogs are kept {hours} hours"),
        )
    } else {
        CheckItem::warning(
            "source.binlog_retention",
            format!(
                "binlogs are kept only {hours} hours: a longer outage of the capture workers loses the position"
            ),
            format!(
                "keep binlogs at least {MIN_RETENTION_HOURS} hours (binlog_expire_logs_seconds; on RDS: CALL mysql.rds_set_configuration('binlog retention hours', 24))"
            ),
        )
    })
}

/// (database, table) of every base table the selection picks.
async fn selected_tables(
    conn: &mut Conn,
    selection: &ObjectSelection,
) -> Result<Vec<(String, String)>, mysql_async::Error> {
    // One schema at a time, only the selected ones: scanning every schema's tables is slow on
    // big servers and opens tables the task never reads.
    let schemas: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY SCHEMA_NAME")
        .await?;
    let mut out = Vec::new();
    for db in schemas
        .into_iter()
        .filter(|d| selection.includes_database(d))
    {
        let tables: Vec<String> = conn
            .exec(
                "SELECT TABLE_NAME FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                (db.as_str(),),
            )
            .await?;
        out.extend(
            tables
                .into_iter()
                .filter(|t| selection.table(&db, t).is_some())
                .map(|t| (db.clone(), t)),
        );
    }
    Ok(out)
}

async fn check_objects(
    conn: &mut Conn,
    selection: &ObjectSelection,
    tables: &[(String, String)],
) -> Result<CheckItem, mysql_async::Error> {
    let schemas: Vec<String> = conn
        .query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
        .await?;
    let mut missing = Vec::new();
    for db in &selection.databases {
        if db.name.is_wildcard() {
            if !schemas
                .iter()
                .any(|s| db.name.matches(s) && !SYSTEM_SCHEMAS.contains(&s.as_str()))
            {
                missing.push(format!("no database matches `{}`", db.name.as_str()));
            }
            continue;
        }
        if !schemas.iter().any(|s| s == db.name.as_str()) {
            missing.push(format!("database `{}`", db.name.as_str()));
            continue;
        }
        for t in db.tables.iter().flatten() {
            let matching: Vec<&(String, String)> = tables
                .iter()
                .filter(|(d, name)| d == db.name.as_str() && t.name.matches(name))
                .collect();
            if matching.is_empty() {
                missing.push(if t.name.is_wildcard() {
                    format!(
                        "no table of `{}` matches `{}`",
                        db.name.as_str(),
                        t.name.as_str()
                    )
                } else {
                    format!("table `{}`.`{}`", db.name.as_str(), t.name.as_str())
                });
                continue;
            }
            // The columns a row filter names (the filter itself was checked when configured).
            let filtered: Vec<String> = t
                .filter
                .as_deref()
                .and_then(|f| ferry_domain::selection::Filter::parse(f).ok())
                .map(|f| f.columns().into_iter().map(str::to_owned).collect())
                .unwrap_or_default();
            if t.columns.is_some() || !filtered.is_empty() {
                for (d, name) in matching {
                    let present: Vec<String> = conn
                        .exec(
                            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                            (d, name),
                        )
                        .await?;
                    for c in t.columns.iter().flatten().filter(|c| !present.contains(c)) {
                        missing.push(format!("column `{d}`.`{name}`.`{c}`"));
                    }
                    for c in filtered
                        .iter()
                        .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c)))
                    {
                        missing.push(format!(
                            "column `{d}`.`{name}`.`{c}`, named by the table's row filter"
                        ));
                    }
                }
            }
        }
    }
    Ok(if missing.is_empty() {
        CheckItem::passed(
            "source.objects",
            format!("{} selected table(s) found", tables.len()),
        )
    } else {
        CheckItem::failed(
            "source.objects",
            format!("not found: {}", missing.join("; ")),
            "create the missing objects or correct the object selection (names are case-sensitive)",
        )
    })
}

async fn check_primary_keys(
    conn: &mut Conn,
    tables: &[(String, String)],
) -> Result<CheckItem, mysql_async::Error> {
    // STATISTICS, not TABLE_CONSTRAINTS: MariaDB hides constraints from a user with only SELECT.
    // One schema at a time, only those with selected tables.
    let schemas: BTreeSet<&String> = tables.iter().map(|(d, _)| d).collect();
    let mut keyed: BTreeSet<(String, String)> = BTreeSet::new();
    for db in schemas {
        let names: Vec<String> = conn
            .exec(
                "SELECT DISTINCT TABLE_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND NON_UNIQUE = 0",
                (db.as_str(),),
            )
            .await?;
        keyed.extend(names.into_iter().map(|t| (db.clone(), t)));
    }
    let without: Vec<String> = tables
        .iter()
        .filter(|t| !keyed.contains(*t))
        .map(|(d, t)| format!("`{d}`.`{t}`"))
        .collect();
    Ok(if without.is_empty() {
        CheckItem::passed(
            "source.primary_keys",
            "every selected table has a primary or unique key",
        )
    } else {
        let shown: Vec<&str> = without.iter().take(10).map(String::as_str).collect();
        let more = without.len().saturating_sub(shown.len());
        CheckItem::warning(
            "source.primary_keys",
            format!(
                "{} table(s) without a primary or unique key: {}{}",
                without.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            "add a primary key: without one, partitioning by key and sync apply fall back to whole-row matching",
        )
    })
}

/// Checks a MySQL/MariaDB sync target: reachable, and the user may create and write tables.
/// The base tables of database `schema` on a MySQL/MariaDB target, by name, as its catalog
/// describes them (for the comparison of `ferry_domain::target_table`).
pub async fn target_tables_found(
    params: &ConnectParams,
    schemas: &[String],
) -> Result<std::collections::HashMap<(String, String), FoundTable>, String> {
    let mut conn = connect(params).await.map_err(|e| e.message)?;
    let mut out: std::collections::HashMap<(String, String), FoundTable> = Default::default();
    for schema in schemas {
        // Option everywhere: a NULL in a non-Option column panics inside mysql_async.
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let rows: Vec<Row> = conn
            .exec(
                "SELECT c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.IS_NULLABLE, \
                 (c.COLUMN_DEFAULT IS NOT NULL OR c.EXTRA LIKE '%auto_increment%') + 0, \
                 c.COLLATION_NAME \
                 FROM information_schema.COLUMNS c JOIN information_schema.TABLES t \
                 ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME \
                 WHERE c.TABLE_SCHEMA = ? AND t.TABLE_TYPE = 'BASE TABLE' \
                 ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
                (schema,),
            )
            .await
            .map_err(|e| e.to_string())?;
        for (table, name, sql_type, nullable, has_default, collation) in rows {
            let (Some(table), Some(name), Some(sql_type)) = (table, name, sql_type) else {
                continue;
            };
            out.entry((schema.clone(), table))
                .or_insert_with(|| FoundTable {
                    columns: Vec::new(),
                    key: Vec::new(),
                })
                .columns
                .push(FoundColumn {
                    name,
                    sql_type,
                    nullable: nullable.as_deref() == Some("YES"),
                    has_default: has_default.unwrap_or(0) != 0,
                    collation,
                });
        }
        let keys: Vec<(Option<String>, Option<String>)> = conn
            .exec(
                "SELECT TABLE_NAME, COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE \
                 WHERE TABLE_SCHEMA = ? AND CONSTRAINT_NAME = 'PRIMARY' \
                 ORDER BY TABLE_NAME, ORDINAL_POSITION",
                (schema,),
            )
            .await
            .map_err(|e| e.to_string())?;
        for (table, column) in keys {
            if let (Some(table), Some(column)) = (table, column)
                && let Some(t) = out.get_mut(&(schema.clone(), table))
            {
                t.key.push(column);
            }
        }
    }
    let _ = conn.disconnect().await;
    Ok(out)
}

/// Reads the source's catalog (every base table the user can see).
pub async fn source_catalog(
    params: &ConnectParams,
) -> Result<ferry_domain::schema::SchemaCatalog, ConnectError> {
    let mut conn = connect(params).await?;
    let catalog = crate::ddl::read_catalog(&mut conn).await;
    let _ = conn.disconnect().await;
    catalog.map_err(|e| ConnectError {
        message: format!("cannot read the source's catalog: {e}"),
        hint: "the capture user needs SELECT on the selected tables".into(),
    })
}

pub async fn precheck_target(params: &ConnectParams) -> PrecheckReport {
    let mut items = Vec::new();
    let mut conn = match connect(params).await {
        Ok(c) => c,
        Err(e) => {
            items.push(CheckItem::failed("target.connect", e.message, e.hint));
            return PrecheckReport { items };
        }
    };
    items.push(CheckItem::passed(
        "target.connect",
        format!(
            "connected to {}:{} as {}",
            params.host, params.port, params.user
        ),
    ));
    match global_privileges(&mut conn).await {
        Ok(have) => {
            let needed = [
                "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "ALTER", "DROP", "INDEX",
            ];
            let missing: Vec<&str> = if have.contains("ALL PRIVILEGES") {
                Vec::new()
            } else {
                needed.into_iter().filter(|p| !have.contains(*p)).collect()
            };
            items.push(if missing.is_empty() {
                CheckItem::passed("target.privileges", "the user may create and write tables")
            } else {
                CheckItem::failed(
                    "target.privileges",
                    format!("the user lacks {}", missing.join(", ")),
                    format!("GRANT {} ON *.* TO the target user", missing.join(", ")),
                )
            });
        }
        Err(e) => items.push(CheckItem::failed(
            "target.privileges",
            format!("cannot read grants: {e}"),
            "check the target user",
        )),
    }
    let _ = conn.disconnect().await;
    PrecheckReport { items }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            check_version("10.11.19-MariaDB-0+deb12u1-log").status,
            ferry_domain::precheck::CheckStatus::Passed
        );
        assert_eq!(
            check_version("10.2.44-MariaDB").status,
            ferry_domain::precheck::CheckStatus::Failed
        );
        assert_eq!(
            check_version("8.0.36").status,
            ferry_domain::precheck::CheckStatus::Passed
        );
        assert_eq!(
            check_version("5.6.51-log").status,
            ferry_domain::precheck::CheckStatus::Failed
        );
        assert_eq!(
            check_version("garbage").status,
            ferry_domain::precheck::CheckStatus::Failed
        );
    }
}

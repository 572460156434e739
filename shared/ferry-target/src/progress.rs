//! The target's own record of how far a sync task has applied the source's stream: one row per
//! task in `ferry.progress` (a database on MySQL/MariaDB, a schema in the target database on
//! PostgreSQL), written in the same target transaction as the rows it covers.
//!
//! The checkpoint in Ferry's store is written after the target committed, so a worker that
//! dies between the two leaves the target ahead of its checkpoint. Keyed rows would converge if
//! the batch were applied again, but a keyless table's inserts would be doubled, and the target
//! would briefly go back to older states. With this row the restarted loop knows exactly what
//! the target holds and resumes from the later of it and the checkpoint: no batch is applied
//! twice, none skipped.
//!
//! ```sql
//! -- MySQL / MariaDB                            -- PostgreSQL
//! CREATE TABLE ferry.progress (                 CREATE TABLE ferry.progress (
//!   task VARCHAR(64) PRIMARY KEY,                 task text PRIMARY KEY,
//!   source VARCHAR(255) NOT NULL,                 source text NOT NULL,
//!   position TEXT NOT NULL,                       position text NOT NULL,
//!   source_time_ms BIGINT NOT NULL,               source_time_ms bigint NOT NULL,
//!   applied_at TIMESTAMP(3) NOT NULL);            applied_at timestamptz NOT NULL);
//! ```
//!
//! `task` is the instance id, `source` the source server's identity (positions of another
//! server's binlog are not comparable), `position` the binlog position after the last source
//! commit applied (`file:offset@gtid`, as in `GET …/task`).

use ferry_domain::convert::TargetEngine;

/// The database (MySQL) or schema (PostgreSQL) holding the progress table.
pub const SCHEMA: &str = "ferry";
/// The progress table's name.
pub const TABLE: &str = "progress";

/// A sync task's applied position, as the target records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The task's instance id.
    pub task: String,
    /// The identity of the source server whose binlog `position` is in.
    pub source: String,
    /// The position after the last source commit applied.
    pub position: String,
    /// That commit's source time, in milliseconds since the epoch.
    pub source_time_ms: i64,
}

/// A string literal both engines read the same way in Ferry's sessions (standard strings on
/// PostgreSQL, `NO_BACKSLASH_ESCAPES` on MySQL): only `'` is doubled.
fn text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn table(engine: TargetEngine) -> String {
    match engine {
        TargetEngine::Postgresql => format!("\"{SCHEMA}\".\"{TABLE}\""),
        TargetEngine::Mysql | TargetEngine::Mariadb => format!("`{SCHEMA}`.`{TABLE}`"),
    }
}

/// The statements creating the table where it does not exist.
pub(crate) fn create(engine: TargetEngine) -> Vec<String> {
    let t = table(engine);
    match engine {
        TargetEngine::Postgresql => vec![
            format!("CREATE SCHEMA IF NOT EXISTS \"{SCHEMA}\""),
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (task text PRIMARY KEY, source text NOT NULL, \
                 position text NOT NULL, source_time_ms bigint NOT NULL, \
                 applied_at timestamptz NOT NULL DEFAULT now())"
            ),
        ],
        TargetEngine::Mysql | TargetEngine::Mariadb => vec![
            format!("CREATE DATABASE IF NOT EXISTS `{SCHEMA}`"),
            format!(
                "CREATE TABLE IF NOT EXISTS {t} (task VARCHAR(64) NOT NULL PRIMARY KEY, \
                 source VARCHAR(255) NOT NULL, position TEXT NOT NULL, \
                 source_time_ms BIGINT NOT NULL, \
                 applied_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)) ENGINE=InnoDB"
            ),
        ],
    }
}

/// The statement recording `a` (inserting or replacing the task's row).
pub(crate) fn upsert(engine: TargetEngine, a: &Applied) -> String {
    let values = format!(
        "({}, {}, {}, {}",
        text(&a.task),
        text(&a.source),
        text(&a.position),
        a.source_time_ms
    );
    let t = table(engine);
    match engine {
        TargetEngine::Postgresql => format!(
            "INSERT INTO {t} (task, source, position, source_time_ms, applied_at) \
             VALUES {values}, now()) ON CONFLICT (task) DO UPDATE SET \
             source = EXCLUDED.source, position = EXCLUDED.position, \
             source_time_ms = EXCLUDED.source_time_ms, applied_at = EXCLUDED.applied_at"
        ),
        TargetEngine::Mysql | TargetEngine::Mariadb => format!(
            "INSERT INTO {t} (task, source, position, source_time_ms, applied_at) \
             VALUES {values}, CURRENT_TIMESTAMP(3)) ON DUPLICATE KEY UPDATE \
             source = VALUES(source), position = VALUES(position), \
             source_time_ms = VALUES(source_time_ms), applied_at = VALUES(applied_at)"
        ),
    }
}

/// The query reading `task`'s row: source, position, source time.
pub(crate) fn select(engine: TargetEngine, task: &str) -> String {
    format!(
        "SELECT source, position, source_time_ms FROM {} WHERE task = {}",
        table(engine),
        text(task)
    )
}

/// The statement removing `task`'s row (a first start, a reset).
pub(crate) fn delete(engine: TargetEngine, task: &str) -> String {
    format!("DELETE FROM {} WHERE task = {}", table(engine), text(task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_quoted_for_both_engines() {
        let a = Applied {
            task: "ins-1".into(),
            source: "it's".into(),
            position: "binlog.000001:4@0-1-5".into(),
            source_time_ms: 1_700_000_000_000,
        };
        let my = upsert(TargetEngine::Mariadb, &a);
        assert!(my.starts_with("INSERT INTO `ferry`.`progress`"), "{my}");
        assert!(my.contains("'it''s'"), "{my}");
        assert!(my.contains("ON DUPLICATE KEY UPDATE"), "{my}");
        let pg = upsert(TargetEngine::Postgresql, &a);
        assert!(pg.starts_with("INSERT INTO \"ferry\".\"progress\""), "{pg}");
        assert!(pg.contains("ON CONFLICT (task)"), "{pg}");
        assert_eq!(
            select(TargetEngine::Postgresql, "a'b"),
            "SELECT source, position, source_time_ms FROM \"ferry\".\"progress\" WHERE task = 'a''b'"
        );
        assert!(delete(TargetEngine::Mysql, "x").ends_with("WHERE task = 'x'"));
        assert_eq!(create(TargetEngine::Mysql).len(), 2);
    }
}

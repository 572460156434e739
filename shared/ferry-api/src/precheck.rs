//! Running a task's prechecks against its real source and target.

use ferry_aws::streams::StreamError;
use ferry_domain::convert::TargetEngine;
use ferry_domain::endpoint::{Endpoint, Engine};
use std::collections::HashMap;

use ferry_domain::id::InstanceId;
use ferry_domain::position::Position;
use ferry_domain::precheck::{CheckItem, CheckStatus, PrecheckReport};
use ferry_domain::start::StartPoint;
use ferry_domain::sync::TargetTable;
use ferry_domain::target_table::{ConflictingTables, FoundColumn, FoundTable, differences};
use ferry_domain::task_config::{Destination, TaskConfig};
use ferry_mysql::ConnectParams;
use ferry_mysql::binlog::ReaderError;

use crate::{ApiResult, AppState};

/// Runs every check for `config`: the source, and the target of a sync task.
pub async fn run(state: &AppState, config: &TaskConfig) -> ApiResult<PrecheckReport> {
    let source = params(state, &config.source).await?;
    let mut report = ferry_mysql::precheck_source(&source, &config.objects).await;
    if let Some(writer) = &config.heartbeat {
        report
            .items
            .push(ferry_mysql::precheck_heartbeat(&source, &writer.database).await);
    }
    if let (Destination::Kinesis, Some(stream)) = (
        config.delivery.destination,
        config.delivery.kinesis_stream.as_deref(),
    ) {
        report.items.push(match state.streams().check(stream).await {
            Ok(()) => CheckItem::passed(
                "delivery.kinesis_stream",
                format!("the Kinesis stream `{stream}` exists"),
            ),
            Err(StreamError::Definite { message, hint }) => {
                CheckItem::failed("delivery.kinesis_stream", message, hint)
            }
            Err(StreamError::Transient(message)) => CheckItem::failed(
                "delivery.kinesis_stream",
                format!("cannot describe the stream: {message}"),
                "check the workers' AWS credentials and region, and kinesis:DescribeStreamSummary",
            ),
        });
    }
    if let Some(target) = &config.target {
        let target_params = params(state, target).await?;
        let target_report = match target.engine() {
            Engine::Mysql | Engine::Mariadb => ferry_mysql::precheck_target(&target_params).await,
            Engine::Postgresql => postgres_target(&target_params).await,
        };
        report.items.extend(target_report.items);
        let engine = match target.engine() {
            Engine::Mysql => TargetEngine::Mysql,
            Engine::Mariadb => TargetEngine::Mariadb,
            Engine::Postgresql => TargetEngine::Postgresql,
        };
        report
            .items
            .push(ferry_mysql::precheck_conversion(&source, &config.objects, engine).await);
        if target_report_connected(&report) {
            report
                .items
                .push(existing_tables(&source, &target_params, config, engine).await);
        }
    }
    Ok(report)
}

/// Whether the target answered (the checks that read it are skipped otherwise).
fn target_report_connected(report: &PrecheckReport) -> bool {
    report
        .items
        .iter()
        .any(|i| i.id == "target.connect" && i.status == CheckStatus::Passed)
}

/// `target.tables`: the selected tables that already exist on the target, compared with what
/// Ferry would create (`ferry_domain::target_table`), under the task's
/// `sync.conflicting_tables`.
async fn existing_tables(
    source: &ConnectParams,
    target: &ConnectParams,
    config: &TaskConfig,
    engine: TargetEngine,
) -> CheckItem {
    const ID: &str = "target.tables";
    let catalog = match ferry_mysql::source_catalog(source).await {
        Ok(c) => c,
        Err(e) => return CheckItem::failed(ID, e.message, e.hint),
    };
    let mut expected = Vec::new();
    for (name, def) in catalog.tables() {
        let Some(selected) = config.objects.table(&name.database, &name.table) else {
            continue;
        };
        let schema = selected.target_database(&name.database);
        let table = selected.target_table(&name.table);
        // Columns Ferry cannot convert are `target.type_conversion`'s.
        if let Ok(t) = TargetTable::new(engine, name.clone(), schema, table, def, |c| {
            selected.includes_column(c)
        }) {
            expected.push((t, def));
        }
    }
    let mut schemas: Vec<String> = expected.iter().map(|(t, _)| t.schema.clone()).collect();
    schemas.sort();
    schemas.dedup();
    let found = match engine {
        TargetEngine::Postgresql => postgres_tables_found(target, &schemas).await,
        TargetEngine::Mysql | TargetEngine::Mariadb => {
            ferry_mysql::target_tables_found(target, &schemas).await
        }
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => {
            return CheckItem::failed(
                ID,
                format!("cannot read the target's catalog: {e}"),
                "the target user needs to see the target schemas' tables (information_schema, pg_catalog)",
            );
        }
    };
    let mut existing = Vec::new();
    let mut conflicts = Vec::new();
    for (t, def) in &expected {
        let Some(f) = found.get(&(t.schema.clone(), t.name.clone())) else {
            continue;
        };
        let at = format!("{}.{}", t.schema, t.name);
        let differences = differences(t, def, f);
        if !differences.is_empty() {
            conflicts.push(format!("{at}: {}", differences.join("; ")));
        }
        existing.push(at);
    }
    let total = expected.len();
    let listed = |v: &[String]| {
        let shown: Vec<&str> = v.iter().take(10).map(String::as_str).collect();
        match v.len().saturating_sub(10) {
            0 => shown.join(" | "),
            more => format!("{} | and {more} more", shown.join(" | ")),
        }
    };
    match config.sync.conflicting_tables {
        _ if existing.is_empty() => CheckItem::passed(
            ID,
            format!("none of the {total} selected tables exists on the target: Ferry creates them"),
        ),
        ConflictingTables::Recreate => CheckItem::warning(
            ID,
            format!(
                "{} of the {total} selected tables exist on the target and will be dropped and created again from the source (their rows are lost): {}",
                existing.len(),
                listed(&existing)
            ),
            "`sync.conflicting_tables: recreate` is set; set `error` to keep existing tables instead",
        ),
        _ if conflicts.is_empty() => CheckItem::passed(
            ID,
            format!(
                "{} of the {total} selected tables exist on the target and can take the rows (kept, written into)",
                existing.len()
            ),
        ),
        ConflictingTables::Ignore => CheckItem::warning(
            ID,
            format!(
                "existing target tables differ from the source (ignored as configured; a write the target refuses fails the task): {}",
                listed(&conflicts)
            ),
            "fix or drop these tables on the target, or set `sync.conflicting_tables` to `recreate`",
        ),
        ConflictingTables::Error => CheckItem::failed(
            ID,
            format!(
                "existing target tables differ from what Ferry writes: {}",
                listed(&conflicts)
            ),
            "fix or drop these tables on the target; or set `sync.conflicting_tables` to `recreate` (drop and create them from the source) or `ignore` (keep them and proceed)",
        ),
    }
}

/// The base tables of `schemas` in a PostgreSQL target database, as its catalog describes them.
async fn postgres_tables_found(
    p: &ConnectParams,
    schemas: &[String],
) -> Result<HashMap<(String, String), FoundTable>, String> {
    let client = postgres_client(p).await.map_err(|e| e.to_string())?;
    let rows = client
        .query(
            "SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), \
             NOT a.attnotnull, a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p') AND a.attnum > 0 \
             AND NOT a.attisdropped ORDER BY n.nspname, c.relname, a.attnum",
            &[&schemas],
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut out: HashMap<(String, String), FoundTable> = HashMap::new();
    for r in rows {
        out.entry((r.get(0), r.get(1)))
            .or_insert_with(|| FoundTable {
                columns: Vec::new(),
                key: Vec::new(),
            })
            .columns
            .push(FoundColumn {
                name: r.get(2),
                sql_type: r.get(3),
                nullable: r.get(4),
                has_default: r.get(5),
                collation: None,
            });
    }
    let keys = client
        .query(
            "SELECT n.nspname, c.relname, a.attname FROM pg_index i \
             JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) \
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum \
             WHERE i.indisprimary AND n.nspname = ANY($1) ORDER BY n.nspname, c.relname, k.ord",
            &[&schemas],
        )
        .await
        .map_err(|e| e.to_string())?;
    for r in keys {
        if let Some(t) = out.get_mut(&(r.get(0), r.get(1))) {
            t.key.push(r.get(2));
        }
    }
    Ok(out)
}

/// `source.start_point`: where a tracking task's chosen start point begins in the source's
/// binlog (`ferry_mysql::start::resolve`), probed as `instance`'s probe replica; the position
/// when the source holds it.
pub async fn start_point(
    state: &AppState,
    config: &TaskConfig,
    instance: &InstanceId,
    point: &StartPoint,
) -> ApiResult<(CheckItem, Option<Position>)> {
    const ID: &str = "source.start_point";
    let source = params(state, &config.source).await?;
    let probe = ferry_mysql::start::probe_server_id(instance.as_str());
    Ok(
        match ferry_mysql::start::resolve(&source, probe, point).await {
            Ok(at) => (
                CheckItem::passed(ID, format!("the {point} begins at {at}")),
                Some(at),
            ),
            Err(ReaderError::Definite { message, hint }) => {
                (CheckItem::failed(ID, message, hint), None)
            }
            Err(ReaderError::Connect { message, hint }) => (
                CheckItem::failed(
                    ID,
                    format!("cannot open the source's binlog: {message}"),
                    hint,
                ),
                None,
            ),
            Err(e) => (
                CheckItem::failed(
                    ID,
                    format!("cannot read the source's binlog to find the {point}: {e}"),
                    "check that the source is reachable and the user has REPLICATION SLAVE, then start again",
                ),
                None,
            ),
        },
    )
}

/// How to connect to `e`, its password read from Secrets Manager.
pub async fn params(state: &AppState, e: &Endpoint) -> ApiResult<ConnectParams> {
    let password = state.secrets().get(e.password_secret()).await?;
    Ok(ConnectParams {
        host: e.host().to_owned(),
        port: e.port(),
        user: e.username().to_owned(),
        password: password.expose().to_owned(),
        database: e.database().map(str::to_owned),
    })
}

/// A session on a PostgreSQL target's database.
async fn postgres_client(
    p: &ConnectParams,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&p.host)
        .port(p.port)
        .user(&p.user)
        .password(&p.password)
        .dbname(p.database.as_deref().unwrap_or("postgres"))
        .connect_timeout(std::time::Duration::from_secs(5));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// A PostgreSQL target: reachable, and the user may create tables in the database.
async fn postgres_target(p: &ConnectParams) -> PrecheckReport {
    let mut items = Vec::new();
    let client = match postgres_client(p).await {
        Ok(client) => client,
        Err(e) => {
            items.push(CheckItem::failed(
                "target.connect",
                format!("cannot connect to {}:{}: {e}", p.host, p.port),
                "check host, port, user, password and database, and pg_hba.conf",
            ));
            return PrecheckReport { items };
        }
    };
    items.push(CheckItem::passed(
        "target.connect",
        format!("connected to {}:{} as {}", p.host, p.port, p.user),
    ));
    let can_create = client
        .query_one(
            "SELECT has_database_privilege(current_user, current_database(), 'CREATE')",
            &[],
        )
        .await
        .map(|row| row.get::<_, bool>(0));
    items.push(match can_create {
        Ok(true) => CheckItem::passed(
            "target.privileges",
            "the user may create schemas and tables",
        ),
        Ok(false) => CheckItem::failed(
            "target.privileges",
            "the user may not create schemas in the database",
            "GRANT CREATE ON DATABASE <database> TO <user>",
        ),
        Err(e) => CheckItem::failed(
            "target.privileges",
            format!("cannot read privileges: {e}"),
            "check the target user",
        ),
    });
    PrecheckReport { items }
}

//! Running a task's prechecks against its real source and target.

use ferry_aws::streams::StreamError;
use ferry_domain::convert::TargetEngine;
use ferry_domain::endpoint::{Endpoint, Engine};
use ferry_domain::precheck::{CheckItem, PrecheckReport};
use ferry_domain::task_config::{Destination, TaskConfig};
use ferry_mysql::ConnectParams;

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
    }
    Ok(report)
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

/// A PostgreSQL target: reachable, and the user may create tables in the database.
async fn postgres_target(p: &ConnectParams) -> PrecheckReport {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&p.host)
        .port(p.port)
        .user(&p.user)
        .password(&p.password)
        .dbname(p.database.as_deref().unwrap_or("postgres"))
        .connect_timeout(std::time::Duration::from_secs(5));
    let mut items = Vec::new();
    let client = match config.connect(tokio_postgres::NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client
        }
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

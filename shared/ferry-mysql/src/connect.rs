//! Connections to a MySQL/MariaDB server.

use std::fmt;
use std::time::Duration;

use mysql_async::{Conn, Opts, OptsBuilder};

/// How long a connection attempt may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and as whom to connect. The password never prints.
#[derive(Clone)]
pub struct ConnectParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: Option<String>,
}

impl fmt::Debug for ConnectParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

impl ConnectParams {
    fn opts(&self) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .db_name(self.database.clone())
            .prefer_socket(false)
            .into()
    }
}

/// Why a connection failed, in words a user can act on.
#[derive(Debug)]
pub struct ConnectError {
    pub message: String,
    pub hint: String,
}

/// Connects within [`CONNECT_TIMEOUT`].
pub async fn connect(params: &ConnectParams) -> Result<Conn, ConnectError> {
    connect_with(params, params.opts()).await
}

/// The largest packet a replication connection accepts: 1 GiB, MySQL's own limit for replicas
/// (`replica_max_allowed_packet`). A binlog event can be larger than the server's
/// `max_allowed_packet` (a row grown by several updates), and the client-side default (the
/// server's value) would refuse it and stall the task. Nothing is allocated up front.
const REPLICA_MAX_PACKET: usize = 1 << 30;

/// Connects for reading the binlog.
pub(crate) async fn connect_replica(params: &ConnectParams) -> Result<Conn, ConnectError> {
    let opts = OptsBuilder::from_opts(params.opts()).max_allowed_packet(Some(REPLICA_MAX_PACKET));
    connect_with(params, opts.into()).await
}

async fn connect_with(params: &ConnectParams, opts: Opts) -> Result<Conn, ConnectError> {
    let target = format!("{}:{}", params.host, params.port);
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(opts)).await {
        Err(_) => Err(ConnectError {
            message: format!("{target} did not answer within {}s", CONNECT_TIMEOUT.as_secs()),
            hint: "check the host and port, and that security groups or firewalls let the capture workers reach it".into(),
        }),
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(mysql_async::Error::Server(e)))
            if crate::ServerErrorKind::of(e.code) == crate::ServerErrorKind::AccessDenied => Err(ConnectError {
            message: format!("{target} rejected user `{}`: {}", params.user, e.message),
            hint: "check the username and password".into(),
        }),
        Ok(Err(mysql_async::Error::Server(e)))
            if crate::ServerErrorKind::of(e.code) == crate::ServerErrorKind::UnknownDatabase => Err(ConnectError {
            message: format!("{target}: {}", e.message),
            hint: "check the database name, or leave it out".into(),
        }),
        Ok(Err(e)) => Err(ConnectError {
            message: format!("cannot connect to {target}: {e}"),
            hint: "check the host and port, and that the server accepts TCP connections".into(),
        }),
    }
}

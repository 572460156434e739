//! Database endpoints: where a task reads from (source) and writes to (target).
//!
//! The password of an endpoint never lives here: the control plane stores it in Secrets
//! Manager and keeps only a [`SecretRef`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::InvalidInput;
use crate::instance::Mode;
use crate::invalid::check_text;

/// The database engine behind an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    Mysql,
    Mariadb,
    Postgresql,
}

impl Engine {
    /// Whether Ferry can read a binlog from this engine.
    pub fn can_be_source(self) -> bool {
        matches!(self, Self::Mysql | Self::Mariadb)
    }

    /// Whether Ferry can synchronize into this engine.
    pub fn can_be_target(self) -> bool {
        true
    }

    pub fn default_port(self) -> u16 {
        match self {
            Self::Mysql | Self::Mariadb => 3306,
            Self::Postgresql => 5432,
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Mysql => "mysql",
            Self::Mariadb => "mariadb",
            Self::Postgresql => "postgresql",
        })
    }
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disabled,
    /// TLS, without verifying the server certificate.
    Required,
    /// TLS, with the server certificate verified against the system roots (or the CA given).
    VerifyIdentity,
}

/// A reference to a secret (a Secrets Manager ARN or name) that holds a password.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretRef(String);

impl SecretRef {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretRef {
    type Error = InvalidInput;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check_text("password_secret", &s, 2048)?;
        Ok(Self(s))
    }
}

impl From<SecretRef> for String {
    fn from(s: SecretRef) -> String {
        s.0
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretRef({})", self.0)
    }
}

/// Which side of a task an endpoint is on; the rules differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

/// A database endpoint as stored: everything to connect except the password itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    engine: Engine,
    host: String,
    port: u16,
    username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    database: Option<String>,
    #[serde(default)]
    tls: TlsMode,
    password_secret: SecretRef,
}

/// The fields of an endpoint, checked by [`Endpoint::new`].
#[derive(Debug, Clone)]
pub struct EndpointParts {
    pub engine: Engine,
    pub host: String,
    pub port: u16,
    pub username: String,
    pub database: Option<String>,
    pub tls: TlsMode,
    pub password_secret: SecretRef,
}

impl Endpoint {
    /// Checks every field for `role` in a task of `mode`.
    pub fn new(parts: EndpointParts, role: Role, mode: Mode) -> Result<Self, InvalidInput> {
        match role {
            Role::Source if !parts.engine.can_be_source() => {
                return Err(InvalidInput::new(
                    "engine",
                    format!("{} cannot be a source", parts.engine),
                    "use a MySQL or MariaDB source; Ferry reads their binlog",
                ));
            }
            Role::Target if mode == Mode::Tracking => {
                return Err(InvalidInput::new(
                    "target",
                    "a change-tracking task has no target database",
                    "leave out `target`; consumers read the task's topic",
                ));
            }
            Role::Target if !parts.engine.can_be_target() => {
                return Err(InvalidInput::new(
                    "engine",
                    format!("{} cannot be a target", parts.engine),
                    "use MySQL, MariaDB or PostgreSQL",
                ));
            }
            _ => {}
        }
        check_host(&parts.host)?;
        if parts.port == 0 {
            return Err(InvalidInput::new(
                "port",
                "0 is not a port",
                format!(
                    "give the port the server listens on (usually {})",
                    parts.engine.default_port()
                ),
            ));
        }
        check_text("username", &parts.username, 80)?;
        if let Some(db) = &parts.database {
            check_text("database", db, 64)?;
        }
        if role == Role::Target && parts.engine == Engine::Postgresql && parts.database.is_none() {
            return Err(InvalidInput::new(
                "database",
                "a PostgreSQL target needs a database",
                "name the database the target tables go into",
            ));
        }
        Ok(Self {
            engine: parts.engine,
            host: parts.host,
            port: parts.port,
            username: parts.username,
            database: parts.database,
            tls: parts.tls,
            password_secret: parts.password_secret,
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub fn tls(&self) -> TlsMode {
        self.tls
    }

    pub fn password_secret(&self) -> &SecretRef {
        &self.password_secret
    }
}

/// A host name or an IP address literal (IPv6 possibly in brackets).
fn check_host(host: &str) -> Result<(), InvalidInput> {
    const HINT: &str = "give a DNS name or an IP address, without scheme, port or path";
    if host.is_empty() || host.len() > 253 {
        return Err(InvalidInput::new(
            "host",
            "must be 1 to 253 characters",
            HINT,
        ));
    }
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'));
    if !ok || host.starts_with('-') || host.starts_with('.') {
        return Err(InvalidInput::new(
            "host",
            format!("`{}` is not a host name or address", host.escape_debug()),
            HINT,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(engine: Engine, host: &str) -> EndpointParts {
        EndpointParts {
            engine,
            host: host.to_owned(),
            port: 3306,
            username: "cdc".into(),
            database: None,
            tls: TlsMode::Disabled,
            password_secret: SecretRef::try_from("ferry/ins_1/source".to_owned()).unwrap(),
        }
    }

    #[test]
    fn sources_must_have_a_binlog() {
        assert!(
            Endpoint::new(
                parts(Engine::Mariadb, "db.internal"),
                Role::Source,
                Mode::Tracking
            )
            .is_ok()
        );
        let err =
            Endpoint::new(parts(Engine::Postgresql, "db"), Role::Source, Mode::Sync).unwrap_err();
        assert_eq!(err.field(), "engine");
    }

    #[test]
    fn tracking_tasks_have_no_target() {
        let err =
            Endpoint::new(parts(Engine::Mysql, "db"), Role::Target, Mode::Tracking).unwrap_err();
        assert_eq!(err.field(), "target");
    }

    #[test]
    fn postgres_targets_need_a_database() {
        let mut p = parts(Engine::Postgresql, "127.0.0.1");
        assert!(Endpoint::new(p.clone(), Role::Target, Mode::Sync).is_err());
        p.database = Some("analytics".into());
        assert!(Endpoint::new(p, Role::Target, Mode::Sync).is_ok());
    }

    #[test]
    fn hosts() {
        for ok in [
            "127.0.0.1",
            "::1",
            "[::1]",
            "db-1.eu-west-1.rds.amazonaws.com",
        ] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "db host",
            "mysql://db",
            "db/x",
            "-db",
            "db;drop",
            "\u{0}",
        ] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
        let mut p = parts(Engine::Mysql, "db");
        p.port = 0;
        assert_eq!(
            Endpoint::new(p, Role::Source, Mode::Sync)
                .unwrap_err()
                .field(),
            "port"
        );
    }
}

//! Ferry's own connections to the upstream broker: TCP, TLS where configured (rustls, the
//! system's roots or a given CA file), and SASL PLAIN or SCRAM with Ferry's broker credentials
//! (the same `FERRY_KAFKA_*` settings the workers use).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_domain::scram::{ClientExchange, Mechanism};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::wire::{read_frame, request, write_frame};

/// A byte stream to the broker (plain or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Stream = Pin<Box<dyn Io>>;

/// The largest response the gateway reads whole from the broker during setup.
const SETUP_LIMIT: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the gateway reaches and signs in to the broker.
#[derive(Clone)]
pub struct Upstream {
    pub bootstrap: Vec<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub sasl: Option<(SaslMechanism, String, String)>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("bootstrap", &self.bootstrap)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|(m, u, _)| (m, u)))
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    Scram(Mechanism),
}

/// Why the broker could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to the broker at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("signing in to the broker at {addr}: {reason}")]
    Auth { addr: String, reason: String },
    #[error("the broker at {addr} answered {what} unexpectedly: {reason}")]
    Protocol {
        addr: String,
        what: &'static str,
        reason: String,
    },
    #[error("invalid upstream setting {name}: {reason}")]
    Config { name: &'static str, reason: String },
}

impl Upstream {
    /// From the workers' settings: `FERRY_KAFKA_BOOTSTRAP`, `FERRY_KAFKA_SECURITY_PROTOCOL`
    /// (`plaintext`, `ssl`, `sasl_plaintext`, `sasl_ssl`), `FERRY_KAFKA_SASL_MECHANISM`,
    /// `FERRY_KAFKA_SASL_USERNAME`, `FERRY_KAFKA_SASL_PASSWORD`, and
    /// `FERRY_KAFKA_SSL_CA_LOCATION` (a PEM file; the system's roots when unset).
    pub fn from_settings(get: impl Fn(&str) -> Option<String>) -> Result<Self, UpstreamError> {
        let get = |n: &str| get(n).filter(|v| !v.trim().is_empty());
        let bootstrap: Vec<String> = get("FERRY_KAFKA_BOOTSTRAP")
            .ok_or(UpstreamError::Config {
                name: "FERRY_KAFKA_BOOTSTRAP",
                reason: "is not set".into(),
            })?
            .split(',')
            .map(|s| s.trim().trim_start_matches("tcp://").to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let protocol = get("FERRY_KAFKA_SECURITY_PROTOCOL")
            .unwrap_or_else(|| "plaintext".into())
            .to_ascii_lowercase();
        let (tls, sasl) = match protocol.as_str() {
            "plaintext" => (false, false),
            "ssl" => (true, false),
            "sasl_plaintext" => (false, true),
            "sasl_ssl" => (true, true),
            other => {
                return Err(UpstreamError::Config {
                    name: "FERRY_KAFKA_SECURITY_PROTOCOL",
                    reason: format!("`{other}` is not plaintext, ssl, sasl_plaintext or sasl_ssl"),
                });
            }
        };
        let tls = if tls {
            Some(Arc::new(client_tls(get("FERRY_KAFKA_SSL_CA_LOCATION"))?))
        } else {
            None
        };
        let sasl = if sasl {
            let mech = get("FERRY_KAFKA_SASL_MECHANISM").unwrap_or_else(|| "SCRAM-SHA-512".into());
            let mech = match mech.to_ascii_uppercase().as_str() {
                "PLAIN" => SaslMechanism::Plain,
                m => {
                    SaslMechanism::Scram(Mechanism::from_name(m).ok_or(UpstreamError::Config {
                        name: "FERRY_KAFKA_SASL_MECHANISM",
                        reason: format!("`{mech}` is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                    })?)
                }
            };
            let user = get("FERRY_KAFKA_SASL_USERNAME").ok_or(UpstreamError::Config {
                name: "FERRY_KAFKA_SASL_USERNAME",
                reason: "is required with SASL".into(),
            })?;
            let pass = get("FERRY_KAFKA_SASL_PASSWORD").ok_or(UpstreamError::Config {
                name: "FERRY_KAFKA_SASL_PASSWORD",
                reason: "is required with SASL".into(),
            })?;
            Some((mech, user, pass))
        } else {
            None
        };
        Ok(Self {
            bootstrap,
            tls,
            sasl,
        })
    }

    /// A signed-in connection to `addr` (`host:port`).
    pub async fn connect(&self, addr: &str) -> Result<Stream, UpstreamError> {
        let err = |reason: String| UpstreamError::Connect {
            addr: addr.to_owned(),
            reason,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Stream = match &self.tls {
            None => Box::pin(tcp),
            Some(config) => {
                let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_owned();
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|e| err(format!("not a TLS server name: {e}")))?;
                let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name, tcp)
                    .await
                    .map_err(|e| err(format!("TLS: {e}")))?;
                Box::pin(tls)
            }
        };
        if let Some((mech, user, pass)) = &self.sasl {
            sign_in(&mut stream, addr, *mech, user, pass).await?;
        }
        Ok(stream)
    }

    /// Asks a bootstrap broker for its API versions and its brokers.
    pub async fn probe(&self) -> Result<Probe, UpstreamError> {
        let mut last = None;
        for addr in &self.bootstrap {
            match self.probe_one(addr).await {
                Ok(p) => return Ok(p),
                Err(e) => {
                    tracing::warn!(broker = %addr, error = %e, "probing a bootstrap broker failed");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(UpstreamError::Config {
            name: "FERRY_KAFKA_BOOTSTRAP",
            reason: "names no broker".into(),
        }))
    }

    async fn probe_one(&self, addr: &str) -> Result<Probe, UpstreamError> {
        let mut s = self.connect(addr).await?;
        let versions: ApiVersionsResponse = call(
            &mut s,
            addr,
            ApiKey::ApiVersions,
            0,
            &ApiVersionsRequest::default(),
        )
        .await?;
        let api_versions = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect::<HashMap<_, _>>();
        let mut req = MetadataRequest::default();
        req.topics = Some(vec![]);
        let version = api_versions
            .get(&(ApiKey::Metadata as i16))
            .map_or(1, |(_, max)| (*max).min(12));
        let meta: MetadataResponse = call(&mut s, addr, ApiKey::Metadata, version, &req).await?;
        Ok(Probe {
            api_versions,
            brokers: meta
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                .collect(),
        })
    }
}

/// What a bootstrap broker told.
#[derive(Debug, Clone)]
pub struct Probe {
    pub api_versions: HashMap<i16, (i16, i16)>,
    /// Node id → `host:port`.
    pub brokers: Vec<(i32, String)>,
}

fn client_tls(ca: Option<String>) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(&path).map_err(|e| {
                UpstreamError::Config {
                    name: "FERRY_KAFKA_SSL_CA_LOCATION",
                    reason: format!("{path}: {e}"),
                }
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| UpstreamError::Config {
                    name: "FERRY_KAFKA_SSL_CA_LOCATION",
                    reason: format!("{path}: {e}"),
                })?;
                roots.add(cert).map_err(|e| UpstreamError::Config {
                    name: "FERRY_KAFKA_SSL_CA_LOCATION",
                    reason: format!("{path}: {e}"),
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    // The provider named, not looked up: another crate of the build may enable a second one,
    // and then rustls cannot pick a process default.
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| UpstreamError::Config {
        name: "FERRY_KAFKA_SECURITY_PROTOCOL",
        reason: format!("TLS: {e}"),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// One request and its response, during setup (no client traffic on the connection yet).
async fn call<Req, Resp>(
    s: &mut Stream,
    addr: &str,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Result<Resp, UpstreamError>
where
    Req: kafka_protocol::protocol::Encodable,
    Resp: kafka_protocol::protocol::Decodable,
{
    let protocol = |reason: String| UpstreamError::Protocol {
        addr: addr.to_owned(),
        what: key_name(key),
        reason,
    };
    let frame = request(key, version, 1, body).map_err(|e| protocol(e.to_string()))?;
    write_frame(s, &frame)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let answer = read_frame(s, SETUP_LIMIT)
        .await
        .map_err(|e| protocol(e.to_string()))?;
    let (_, body): (_, Resp) =
        crate::wire::parse_response(key, version, answer).map_err(|e| protocol(e.to_string()))?;
    Ok(body)
}

fn key_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::SaslHandshake => "SaslHandshake",
        ApiKey::SaslAuthenticate => "SaslAuthenticate",
        _ => "a request",
    }
}

async fn sign_in(
    s: &mut Stream,
    addr: &str,
    mech: SaslMechanism,
    user: &str,
    pass: &str,
) -> Result<(), UpstreamError> {
    let auth = |reason: String| UpstreamError::Auth {
        addr: addr.to_owned(),
        reason,
    };
    let name = match mech {
        SaslMechanism::Plain => "PLAIN",
        SaslMechanism::Scram(m) => m.name(),
    };
    let mut hs = SaslHandshakeRequest::default();
    hs.mechanism = StrBytes::from_static_str(name);
    let r: SaslHandshakeResponse = call(s, addr, ApiKey::SaslHandshake, 1, &hs).await?;
    if r.error_code != 0 {
        return Err(auth(format!(
            "the broker does not offer {name} (it offers {:?})",
            r.mechanisms.iter().map(|m| m.as_str()).collect::<Vec<_>>()
        )));
    }
    let step = |bytes: Vec<u8>| {
        let mut a = SaslAuthenticateRequest::default();
        a.auth_bytes = Bytes::from(bytes);
        a
    };
    match mech {
        SaslMechanism::Plain => {
            let r: SaslAuthenticateResponse = call(
                s,
                addr,
                ApiKey::SaslAuthenticate,
                1,
                &step(format!("\0{user}\0{pass}").into_bytes()),
            )
            .await?;
            refused(&r).map_err(auth)
        }
        SaslMechanism::Scram(m) => {
            let (exchange, first) = ClientExchange::start(m, user, pass);
            let r: SaslAuthenticateResponse = call(
                s,
                addr,
                ApiKey::SaslAuthenticate,
                1,
                &step(first.into_bytes()),
            )
            .await?;
            refused(&r).map_err(auth)?;
            let (fin, last) = exchange
                .respond(&r.auth_bytes)
                .map_err(|e| auth(e.to_string()))?;
            let r: SaslAuthenticateResponse = call(
                s,
                addr,
                ApiKey::SaslAuthenticate,
                1,
                &step(last.into_bytes()),
            )
            .await?;
            refused(&r).map_err(auth)?;
            fin.verify(&r.auth_bytes).map_err(|e| auth(e.to_string()))
        }
    }
}

fn refused(r: &SaslAuthenticateResponse) -> Result<(), String> {
    if r.error_code == 0 {
        Ok(())
    } else {
        Err(format!(
            "error {}: {}",
            r.error_code,
            r.error_message.as_ref().map_or("", |m| m.as_str())
        ))
    }
}

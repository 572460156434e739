//! One client connection: sign-in, then requests authorized one by one and forwarded over the
//! connection's own upstream connection, responses returned in request order.
//!
//! Two tasks share the connection. The request side reads a request, decides (authz.rs), and
//! either writes it upstream or makes the answer itself; either way it queues what the answer
//! is. The response side takes the queue in order: an answer the gateway made is written as
//! is; otherwise the next upstream response is read and either copied through in pieces
//! (Fetch and everything unchanged: never held whole) or read whole, changed and re-encoded
//! (Metadata, FindCoordinator, ListGroups).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_domain::scram::{ClientFirst, Mechanism, ServerExchange, Verifier};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

use crate::accounts::Account;
use crate::authz::{Patch, Principal, Verdict, authorize};
use crate::rewrite::patch;
use crate::server::Shared;
use crate::versions::Treatment;
use crate::wire::{FrameError, Request, read_frame, read_size, write_frame};

/// The time a client has to finish signing in.
const SIGN_IN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest a response from the broker may take (long-poll fetches wait up to their
/// max_wait, which clients keep far below this).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Requests in flight per connection (clients pipeline a handful).
const IN_FLIGHT: usize = 64;

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const UNSUPPORTED_VERSION: i16 = 35;

/// Why a connection ended (logged, and counted in `ferry_gateway_connections_closed`).
#[derive(Debug, thiserror::Error)]
pub enum Closed {
    #[error("the client closed the connection")]
    ByClient,
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("{0}")]
    Request(#[from] crate::wire::RequestError),
    #[error("{0}")]
    Protocol(String),
    #[error("sign-in failed")]
    SignIn,
    #[error("sign-in timed out")]
    SignInTimeout,
    #[error("the group's credentials, instance or topic changed")]
    Revoked,
    #[error("the broker: {0}")]
    Upstream(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Closed {
    fn reason(&self) -> &'static str {
        match self {
            Closed::ByClient => "client",
            Closed::Frame(FrameError::TooLarge { .. }) => "oversized",
            Closed::Frame(FrameError::Closed) => "client",
            Closed::Frame(_) | Closed::Request(_) | Closed::Protocol(_) => "bad_request",
            Closed::SignIn => "sign_in_failed",
            Closed::SignInTimeout => "sign_in_timeout",
            Closed::Revoked => "revoked",
            Closed::Upstream(_) => "upstream",
            Closed::Io(_) => "io",
        }
    }
}

/// Serves one client connection until it ends.
pub async fn serve<S>(stream: S, peer: SocketAddr, node: i32, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    shared.metrics.connections.inc();
    shared.metrics.open.inc();
    let result = run(stream, peer, node, &shared).await;
    shared.metrics.open.dec();
    match &result {
        Ok(()) | Err(Closed::ByClient) | Err(Closed::Frame(FrameError::Closed)) => {
            shared.metrics.closed("client");
            tracing::debug!(%peer, "connection closed by the client");
        }
        Err(e) => {
            shared.metrics.closed(e.reason());
            tracing::info!(%peer, reason = %e, "connection closed");
        }
    }
}

async fn run<S>(stream: S, peer: SocketAddr, node: i32, shared: &Arc<Shared>) -> Result<(), Closed>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    let signed_in = tokio::time::timeout(
        SIGN_IN_TIMEOUT,
        sign_in(&mut read, &mut write, peer, shared),
    )
    .await
    .map_err(|_| Closed::SignInTimeout)??;
    let (account, mechanism) = signed_in;
    let upstream_addr = shared
        .upstream_addr(node)
        .ok_or_else(|| Closed::Upstream(format!("no broker with node id {node}")))?;
    let upstream = shared
        .upstream
        .connect(&upstream_addr)
        .await
        .map_err(|e| Closed::Upstream(e.to_string()))?;
    let principal = Principal {
        group: account.group_id().to_owned(),
        topic: account.topic.clone(),
        topic_id: shared.topic_id(&account.topic),
    };
    tracing::info!(%peer, group = %principal.group, topic = %principal.topic, mechanism, "signed in");
    let (revoked_tx, revoked) = watch::channel(false);
    let registration = shared.registry.add(&account, revoked_tx);
    let result = proxy(read, write, upstream, principal, revoked, shared).await;
    shared.registry.remove(registration);
    result
}

/// The sign-in phase: ApiVersions, SaslHandshake (v1) and SaslAuthenticate only.
async fn sign_in<R, W>(
    read: &mut R,
    write: &mut W,
    peer: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<(Account, &'static str), Closed>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut mechanism: Option<&'static str> = None;
    let mut scram: Option<(Option<Account>, ServerExchange)> = None;
    loop {
        let frame = read_frame(read, shared.limits.max_request).await?;
        shared.metrics.bytes("in", frame.len() as u64 + 4);
        let req = Request::parse(frame)?;
        match req.key {
            ApiKey::ApiVersions => {
                let answer = api_versions(&req, shared)?;
                write_frame(write, &answer).await?;
            }
            ApiKey::SaslHandshake if req.version() == 1 && mechanism.is_none() => {
                let r: SaslHandshakeRequest = req.decode()?;
                let offered = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];
                let mut b = SaslHandshakeResponse::default();
                b.mechanisms = offered
                    .iter()
                    .map(|m| StrBytes::from_static_str(m))
                    .collect();
                let chosen = offered.iter().find(|m| **m == r.mechanism.as_str());
                b.error_code = if chosen.is_some() {
                    0
                } else {
                    UNSUPPORTED_SASL_MECHANISM
                };
                write_frame(write, &respond(&req, &b)?).await?;
                match chosen {
                    Some(m) => mechanism = Some(m),
                    None => {
                        return Err(Closed::Protocol(format!(
                            "the client asked for SASL mechanism `{}`",
                            r.mechanism.as_str()
                        )));
                    }
                }
            }
            ApiKey::SaslAuthenticate if mechanism.is_some() && req.version() <= 2 => {
                let r: SaslAuthenticateRequest = req.decode()?;
                let m = mechanism.unwrap_or("PLAIN");
                let step =
                    if m == "PLAIN" {
                        plain(&r.auth_bytes, peer, shared)
                            .await
                            .map(|a| (Some(a), Bytes::new()))
                    } else {
                        let scram_m = Mechanism::from_name(m).unwrap_or(Mechanism::Sha512);
                        match scram.take() {
                            None => scram_first(scram_m, &r.auth_bytes, shared).await.map(
                                |(a, ex, msg)| {
                                    scram = Some((a, ex));
                                    (None, Bytes::from(msg))
                                },
                            ),
                            Some((account, ex)) => match (ex.finish(&r.auth_bytes), account) {
                                (Ok(last), Some(account)) => Ok((Some(account), Bytes::from(last))),
                                _ => Err(()),
                            },
                        }
                    };
                match step {
                    Ok((done, bytes)) => {
                        let mut b = SaslAuthenticateResponse::default();
                        b.auth_bytes = bytes;
                        write_frame(write, &respond(&req, &b)?).await?;
                        if let Some(account) = done {
                            shared.metrics.sign_in(m, "ok");
                            shared.throttle.succeeded(peer);
                            return Ok((account, m));
                        }
                    }
                    Err(()) => {
                        shared.metrics.sign_in(m, "failed");
                        let delay = shared.throttle.failed(peer);
                        tokio::time::sleep(delay).await;
                        let mut b = SaslAuthenticateResponse::default();
                        b.error_code = SASL_AUTHENTICATION_FAILED;
                        b.error_message = Some(StrBytes::from_static_str(
                            "Authentication failed: invalid username or password (the username is <group username>-<consumer group id>)",
                        ));
                        write_frame(write, &respond(&req, &b)?).await?;
                        tracing::info!(%peer, mechanism = m, "sign-in failed");
                        return Err(Closed::SignIn);
                    }
                }
            }
            ApiKey::SaslHandshake | ApiKey::SaslAuthenticate => {
                return Err(Closed::Protocol(format!(
                    "{:?} v{} out of order during sign-in",
                    req.key,
                    req.version()
                )));
            }
            other => {
                return Err(Closed::Protocol(format!(
                    "{other:?} before sign-in (only ApiVersions and SASL are served then)"
                )));
            }
        }
    }
}

fn respond<T: kafka_protocol::protocol::Encodable>(
    req: &Request,
    body: &T,
) -> Result<Bytes, Closed> {
    req.respond(body)
        .map_err(|e| Closed::Protocol(format!("encoding a response: {e}")))
}

/// The ApiVersions answer: the gateway's own list. A version the gateway does not know is
/// answered in v0 with UNSUPPORTED_VERSION and the ApiVersions range, as brokers do.
fn api_versions(req: &Request, shared: &Shared) -> Result<Bytes, Closed> {
    let advertised = shared.advertised_versions();
    let mut b = ApiVersionsResponse::default();
    if req.version() > 4 {
        b.error_code = UNSUPPORTED_VERSION;
        b.api_keys = advertised
            .into_iter()
            .filter(|k| k.api_key == ApiKey::ApiVersions as i16)
            .collect();
        return crate::wire::response(ApiKey::ApiVersions, 0, req.correlation_id(), &b)
            .map_err(|e| Closed::Protocol(e.to_string()));
    }
    b.api_keys = advertised;
    respond(req, &b)
}

async fn plain(auth: &[u8], peer: SocketAddr, shared: &Shared) -> Result<Account, ()> {
    // authzid \0 authcid \0 password
    let mut parts = auth.split(|b| *b == 0);
    let (Some(authz), Some(user), Some(pass), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(());
    };
    let (Ok(authz), Ok(user), Ok(pass)) = (
        std::str::from_utf8(authz),
        std::str::from_utf8(user),
        std::str::from_utf8(pass),
    ) else {
        return Err(());
    };
    if (!authz.is_empty() && authz != user) || pass.len() > 256 {
        return Err(());
    }
    let account = match shared.accounts.lookup(user).await {
        Ok(Some(a)) => a,
        Ok(None) => return Err(()),
        Err(e) => {
            tracing::warn!(%peer, error = %e, "looking up a consumer group failed");
            return Err(());
        }
    };
    if shared.accounts.check_plain(&account, user, pass).await {
        Ok(account)
    } else {
        Err(())
    }
}

/// The first SCRAM step: the account and the server-first message. An unknown user (or a
/// group without verifiers yet) gets a decoy verifier, so the exchange fails at the proof.
async fn scram_first(
    m: Mechanism,
    first: &[u8],
    shared: &Shared,
) -> Result<(Option<Account>, ServerExchange, String), ()> {
    let first = ClientFirst::parse(first).map_err(|_| ())?;
    let account = shared.accounts.lookup(&first.username).await.ok().flatten();
    let (verifier, account) = match account.as_ref().and_then(|a| a.verifiers()) {
        Some(v) => (v.get(m).clone(), account),
        None => (Verifier::decoy(m, &first.username, &shared.decoy_key), None),
    };
    let (exchange, msg) = ServerExchange::start(m, &first, &verifier).map_err(|_| ())?;
    Ok((account, exchange, msg))
}

/// What the response side does next.
enum Pending {
    /// Write this answer (made by the gateway).
    Local(Bytes),
    /// Read the next upstream response for this request and pass or patch it.
    Upstream {
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        patch: Patch,
    },
}

async fn proxy<R, W>(
    mut client_read: R,
    client_write: W,
    upstream: crate::upstream::Stream,
    principal: Principal,
    mut revoked: watch::Receiver<bool>,
    shared: &Arc<Shared>,
) -> Result<(), Closed>
where
    R: AsyncBufReadExt + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (up_read, mut up_write) = tokio::io::split(upstream);
    let (tx, rx) = mpsc::channel::<Pending>(IN_FLIGHT);
    let responder = tokio::spawn(respond_loop(
        rx,
        BufReader::with_capacity(64 * 1024, up_read),
        client_write,
        principal.clone(),
        Arc::clone(shared),
    ));
    let mut principal = principal;
    let result: Result<(), Closed> = async {
        loop {
            let frame = tokio::select! {
                frame = read_frame(&mut client_read, shared.limits.max_request) => frame?,
                _ = revoked.changed() => return Err(Closed::Revoked),
            };
            shared.metrics.bytes("in", frame.len() as u64 + 4);
            let req = Request::parse(frame)?;
            let api = format!("{:?}", req.key);
            let treatment = shared.treatment(req.key, req.version());
            let verdict = match treatment {
                None => {
                    return Err(Closed::Protocol(format!(
                        "{:?} v{} is not served by the gateway",
                        req.key,
                        req.version()
                    )));
                }
                Some(Treatment::Local) => match req.key {
                    ApiKey::ApiVersions => Verdict::Respond(api_versions(&req, shared)?),
                    _ => {
                        return Err(Closed::Protocol(
                            "re-authentication is not supported".into(),
                        ));
                    }
                },
                Some(Treatment::Forward | Treatment::Deny) => {
                    if principal.topic_id.is_nil() {
                        principal.topic_id = shared.topic_id(&principal.topic);
                    }
                    authorize(&req, &principal)?
                }
            };
            shared.metrics.request(&api, verdict.label());
            if verdict.label() == "denied" {
                tracing::info!(group = %principal.group, api, "request denied");
            }
            match verdict {
                Verdict::Forward { frame, patch } => {
                    let pending = Pending::Upstream {
                        key: req.key,
                        version: req.version(),
                        correlation_id: req.correlation_id(),
                        patch,
                    };
                    if tx.send(pending).await.is_err() {
                        return Err(Closed::Upstream("the response side ended".into()));
                    }
                    write_frame(&mut up_write, &frame)
                        .await
                        .map_err(|e| Closed::Upstream(e.to_string()))?;
                }
                Verdict::Respond(answer) => {
                    if tx.send(Pending::Local(answer)).await.is_err() {
                        return Err(Closed::Upstream("the response side ended".into()));
                    }
                }
                Verdict::Close(why) => return Err(Closed::Protocol(why.to_owned())),
            }
        }
    }
    .await;
    drop(tx);
    responder.abort();
    match responder.await {
        Ok(Err(e)) if result.is_ok() => Err(e),
        _ => result,
    }
}

async fn respond_loop<U, W>(
    mut rx: mpsc::Receiver<Pending>,
    mut upstream: BufReader<U>,
    mut client: W,
    principal: Principal,
    shared: Arc<Shared>,
) -> Result<(), Closed>
where
    U: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    while let Some(pending) = rx.recv().await {
        match pending {
            Pending::Local(answer) => {
                shared.metrics.bytes("out", answer.len() as u64 + 4);
                write_frame(&mut client, &answer).await?;
            }
            Pending::Upstream {
                key,
                version,
                correlation_id,
                patch: how,
            } => {
                let size = tokio::time::timeout(
                    RESPONSE_TIMEOUT,
                    read_size(&mut upstream, shared.limits.max_response),
                )
                .await
                .map_err(|_| Closed::Upstream("no response in time".into()))?
                .map_err(|e| Closed::Upstream(e.to_string()))?;
                if size < 4 {
                    return Err(Closed::Upstream("a response without a header".into()));
                }
                let mut corr = [0u8; 4];
                upstream
                    .read_exact(&mut corr)
                    .await
                    .map_err(|e| Closed::Upstream(e.to_string()))?;
                if i32::from_be_bytes(corr) != correlation_id {
                    return Err(Closed::Upstream(format!(
                        "a response for correlation id {} where {correlation_id} was next",
                        i32::from_be_bytes(corr)
                    )));
                }
                shared.metrics.bytes("out", size as u64 + 4);
                if matches!(how, Patch::None) {
                    // Copied through in pieces: a large Fetch answer is never held whole.
                    let mut head = Vec::with_capacity(8);
                    head.extend_from_slice(&(size as u32).to_be_bytes());
                    head.extend_from_slice(&corr);
                    client.write_all(&head).await?;
                    let mut body = (&mut upstream).take((size - 4) as u64);
                    let copied = tokio::io::copy_buf(&mut body, &mut client).await?;
                    if copied != (size - 4) as u64 {
                        return Err(Closed::Upstream("the broker closed mid-response".into()));
                    }
                    client.flush().await?;
                } else {
                    let mut whole = vec![0u8; size];
                    whole[..4].copy_from_slice(&corr);
                    upstream
                        .read_exact(&mut whole[4..])
                        .await
                        .map_err(|e| Closed::Upstream(e.to_string()))?;
                    let (answer, learned) = patch(
                        key,
                        version,
                        Bytes::from(whole),
                        &how,
                        &principal,
                        &shared.advertised,
                    )
                    .map_err(|e| Closed::Upstream(format!("a {key:?} answer: {e}")))?;
                    shared.learn(&principal.topic, learned);
                    write_frame(&mut client, &answer).await?;
                }
            }
        }
    }
    Ok(())
}

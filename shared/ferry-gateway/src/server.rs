//! The gateway process: one listener per upstream broker (port = base + node id), the state
//! every connection shares, the re-check that closes connections whose credentials changed,
//! and the throttle of failed sign-ins.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;

use crate::accounts::{Account, Accounts};
use crate::metrics::Metrics;
use crate::rewrite::{Advertised, Learned};
use crate::upstream::Upstream;
use crate::versions::{Treatment, Versions};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::api_versions_response::ApiVersion;

/// The time a client has for its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Size limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request a client may send (consumers send small ones).
    pub max_request: usize,
    /// The largest response the broker may send.
    pub max_response: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request: 1 << 20,
            max_response: 1 << 30,
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    pub accounts: Accounts,
    pub upstream: Upstream,
    pub advertised: Advertised,
    pub limits: Limits,
    pub metrics: Metrics,
    pub registry: Registry,
    pub throttle: Throttle,
    /// A secret for decoy SCRAM salts (unknown users look like known ones).
    pub decoy_key: [u8; 32],
    versions: RwLock<Versions>,
    /// Node id → upstream `host:port`.
    nodes: RwLock<HashMap<i32, String>>,
    /// Topic name → id, from the Metadata answers seen.
    topic_ids: Mutex<HashMap<String, Uuid>>,
    new_nodes: tokio::sync::Notify,
}

impl Shared {
    /// What the gateway does with `key` at `version` (read under the lock, once per request).
    pub fn treatment(&self, key: ApiKey, version: i16) -> Option<Treatment> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .treatment(key, version)
    }

    /// The ApiVersions answer's list.
    pub fn advertised_versions(&self) -> Vec<ApiVersion> {
        self.versions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .advertised()
    }

    pub fn upstream_addr(&self, node: i32) -> Option<String> {
        self.nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&node)
            .cloned()
    }

    pub fn topic_id(&self, topic: &str) -> Uuid {
        self.topic_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .copied()
            .unwrap_or_else(Uuid::nil)
    }

    /// Records what a Metadata answer taught (new brokers get listeners).
    pub fn learn(&self, topic: &str, learned: Learned) {
        if let Some(id) = learned.topic_id {
            self.topic_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(topic.to_owned(), id);
        }
        if learned.brokers.is_empty() {
            return;
        }
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let mut added = false;
        for (id, host, port) in learned.brokers {
            let addr = format!("{host}:{port}");
            if nodes.get(&id) != Some(&addr) {
                added |= !nodes.contains_key(&id);
                nodes.insert(id, addr);
            }
        }
        if added {
            self.new_nodes.notify_one();
        }
    }
}

/// The live connections, by the account they signed in with.
#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU64,
    live: Mutex<HashMap<u64, Live>>,
}

#[derive(Debug)]
struct Live {
    username: String,
    fingerprint: String,
    revoke: watch::Sender<bool>,
}

impl Registry {
    pub fn add(&self, account: &Account, revoke: watch::Sender<bool>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.live.lock().unwrap_or_else(|p| p.into_inner()).insert(
            id,
            Live {
                username: account.record.value.sasl_username(),
                fingerprint: account.fingerprint(),
                revoke,
            },
        );
        id
    }

    pub fn remove(&self, id: u64) {
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    fn usernames(&self) -> Vec<String> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut names: Vec<String> = live.values().map(|l| l.username.clone()).collect();
        names.sort();
        names.dedup();
        names
    }

    /// Closes the connections of `username` whose sign-in no longer holds (`current`: the
    /// account's fingerprint now, `None` when it may no longer sign in). Returns how many.
    fn revoke(&self, username: &str, current: Option<&str>) -> usize {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let mut n = 0;
        for l in live.values().filter(|l| l.username == username) {
            if current != Some(l.fingerprint.as_str()) {
                let _ = l.revoke.send(true);
                n += 1;
            }
        }
        n
    }
}

/// Delays failed sign-ins, more for a client address that keeps failing.
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Throttle {
    const WINDOW: Duration = Duration::from_secs(60);

    /// Counts a failure and returns how long to wait before answering it: 1 s, doubling
    /// from the fourth failure within a minute, at most 16 s.
    pub fn failed(&self, peer: SocketAddr) -> Duration {
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if f.len() > 100_000 {
            f.retain(|_, (_, at)| at.elapsed() < Self::WINDOW);
        }
        let entry = f.entry(peer.ip()).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= Self::WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        let extra = entry.0.saturating_sub(3).min(4);
        Duration::from_secs(1 << extra)
    }

    pub fn succeeded(&self, peer: SocketAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer.ip());
    }
}

/// How the gateway listens.
#[derive(Debug, Clone)]
pub struct Listen {
    /// The address to bind (loopback on the local stack).
    pub host: IpAddr,
    /// Node n listens on base + n (0: each on a free port, for tests).
    pub base_port: u16,
    /// The host clients are told to connect to.
    pub advertised_host: String,
    /// How often live connections are checked against the table.
    pub recheck: Duration,
    /// TLS towards clients (SASL_SSL), or plaintext (SASL_PLAINTEXT) when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A TLS configuration for the listeners from a PEM certificate chain and its PEM private key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("reading the certificate chain {}: {e}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("reading the private key {}: {e}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| anyhow::anyhow!("the certificate and the key do not go together: {e}"))?;
    Ok(Arc::new(config))
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    pub shared: Arc<Shared>,
    /// The addresses listened on, by node id.
    pub listeners: Vec<(i32, SocketAddr)>,
}

impl Gateway {
    /// Probes the broker, binds a listener per broker and starts serving.
    pub async fn start(
        listen: Listen,
        upstream: Upstream,
        accounts: Accounts,
        limits: Limits,
    ) -> anyhow::Result<Self> {
        let probe = upstream.probe().await?;
        let decoy_key = crate::accounts::random_key();
        let shared = Arc::new(Shared {
            accounts,
            upstream,
            advertised: Advertised::new(listen.advertised_host.clone(), listen.base_port),
            limits,
            metrics: Metrics::default(),
            registry: Registry::default(),
            throttle: Throttle::default(),
            decoy_key,
            versions: RwLock::new(Versions::negotiate(&probe.api_versions)),
            nodes: RwLock::new(probe.brokers.iter().cloned().collect()),
            topic_ids: Mutex::new(HashMap::new()),
            new_nodes: tokio::sync::Notify::new(),
        });
        let mut listeners = Vec::new();
        let mut bound = std::collections::HashSet::new();
        for (node, _) in &probe.brokers {
            listeners.push((*node, bind(&listen, *node, &shared).await?));
            bound.insert(*node);
        }
        tokio::spawn(recheck_loop(Arc::clone(&shared), listen.recheck));
        tokio::spawn(new_listeners(Arc::clone(&shared), listen, bound));
        Ok(Self { shared, listeners })
    }
}

async fn bind(listen: &Listen, node: i32, shared: &Arc<Shared>) -> anyhow::Result<SocketAddr> {
    let port = if listen.base_port == 0 {
        0
    } else {
        shared.advertised.port(node).ok_or_else(|| {
            anyhow::anyhow!(
                "broker node id {node} plus the base port {} is not a port: choose a lower FERRY_GATEWAY_PORT",
                listen.base_port
            )
        })?
    };
    let addr = SocketAddr::new(listen.host, port);
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "listening on {addr} for broker node {node}: {e} (choose another FERRY_GATEWAY_PORT)"
        )
    })?;
    let local = listener.local_addr()?;
    let tls = listen.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    shared
        .advertised
        .bound
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(node, local.port());
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    match tls.clone() {
                        None => {
                            tokio::spawn(crate::connection::serve(stream, peer, node, shared));
                        }
                        Some(acceptor) => {
                            tokio::spawn(async move {
                                let handshake = tokio::time::timeout(
                                    TLS_HANDSHAKE_TIMEOUT,
                                    acceptor.accept(stream),
                                )
                                .await;
                                match handshake {
                                    Ok(Ok(tls)) => {
                                        crate::connection::serve(tls, peer, node, shared).await;
                                    }
                                    Ok(Err(e)) => {
                                        shared.metrics.closed("tls");
                                        tracing::info!(%peer, error = %e, "TLS handshake failed");
                                    }
                                    Err(_) => {
                                        shared.metrics.closed("tls");
                                        tracing::info!(%peer, "TLS handshake timed out");
                                    }
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tracing::info!(%local, node, "gateway listening");
    Ok(local)
}

/// Binds listeners for brokers that appear later (a cluster that grew).
async fn new_listeners(
    shared: Arc<Shared>,
    listen: Listen,
    mut bound: std::collections::HashSet<i32>,
) {
    loop {
        shared.new_nodes.notified().await;
        let nodes: Vec<i32> = shared
            .nodes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        for node in nodes {
            if bound.insert(node)
                && let Err(e) = bind(&listen, node, &shared).await
            {
                tracing::error!(node, error = %e, "no listener for a new broker");
            }
        }
    }
}

/// Every `every`, looks up each signed-in account again and closes the connections whose
/// group was deleted, whose password changed, or whose instance was deleted, reset or expired.
async fn recheck_loop(shared: Arc<Shared>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for username in shared.registry.usernames() {
            let current = match shared.accounts.lookup(&username).await {
                Ok(a) => a.map(|a| a.fingerprint()),
                Err(e) => {
                    // The table did not answer: keep the connections, try again next time.
                    tracing::warn!(error = %e, "re-checking a consumer group failed");
                    continue;
                }
            };
            let n = shared.registry.revoke(&username, current.as_deref());
            if n > 0 {
                tracing::info!(
                    username,
                    connections = n,
                    "closing connections: the group's sign-in no longer holds"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_sign_ins_wait_longer_from_the_same_address() {
        let t = Throttle::default();
        let a: SocketAddr = "127.0.0.2:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:1".parse().unwrap();
        let waits: Vec<u64> = (0..8).map(|_| t.failed(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 1, 1, 2, 4, 8, 16, 16]);
        assert_eq!(t.failed(b).as_secs(), 1);
        t.succeeded(a);
        assert_eq!(t.failed(a).as_secs(), 1);
    }
}

//! `ferry gateway`: the consumer gateway (the `ferry-gateway` crate) with its metrics endpoint.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use ferry_api::AppState;
use ferry_gateway::{Accounts, Gateway, Limits, Listen, Upstream, tls_config};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The address to listen on (loopback by default; `0.0.0.0` in a container).
    #[arg(long, env = "FERRY_GATEWAY_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// The base port: the listener for broker node n is on base + n.
    #[arg(long, env = "FERRY_GATEWAY_PORT", default_value_t = 9192)]
    port: u16,
    /// The host name consumers are told to connect to (default: the listen address).
    #[arg(long, env = "FERRY_GATEWAY_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// How often live connections are checked against the stored groups, in seconds.
    #[arg(long, env = "FERRY_GATEWAY_RECHECK_SECONDS", default_value_t = 15)]
    recheck_seconds: u64,
    /// The largest request a consumer may send, in bytes.
    #[arg(long, env = "FERRY_GATEWAY_MAX_REQUEST_BYTES", default_value_t = 1 << 20)]
    max_request_bytes: usize,
    /// TLS towards consumers (SASL_SSL): a PEM certificate chain; with --tls-key.
    #[arg(long, env = "FERRY_GATEWAY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FERRY_GATEWAY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Where to serve Prometheus metrics (`GET /metrics`).
    #[arg(
        long,
        env = "FERRY_GATEWAY_METRICS_ADDR",
        default_value = "127.0.0.1:9465"
    )]
    metrics_addr: SocketAddr,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let state = AppState::from_env()
        .await
        .context("reading the configuration")?;
    let upstream = Upstream::from_settings(|n| std::env::var(n).ok())?;
    let accounts = Accounts::new(state.store().clone(), state.settings().topic_prefix.clone());
    let listen = Listen {
        host: args.host,
        base_port: args.port,
        advertised_host: args
            .advertised_host
            .unwrap_or_else(|| args.host.to_string()),
        recheck: Duration::from_secs(args.recheck_seconds.clamp(1, 60)),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        },
    };
    let limits = Limits {
        max_request: args.max_request_bytes.clamp(64 << 10, 100 << 20),
        ..Limits::default()
    };
    let gateway = Gateway::start(listen, upstream, accounts, limits)
        .await
        .context("starting the consumer gateway")?;
    let shared = std::sync::Arc::clone(&gateway.shared);
    let metrics = Router::new().route(
        "/metrics",
        get(move || {
            let body = shared.metrics.encode();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    body,
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| {
            format!(
                "serving metrics on {} (set FERRY_GATEWAY_METRICS_ADDR to a free address)",
                args.metrics_addr
            )
        })?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, metrics).await {
            tracing::error!(error = %e, "the metrics endpoint stopped");
        }
    });
    for (node, addr) in &gateway.listeners {
        eprintln!("ferry gateway: broker node {node} on {addr}");
    }
    eprintln!(
        "ferry gateway: metrics on http://{}/metrics",
        args.metrics_addr
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

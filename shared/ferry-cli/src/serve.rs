//! `ferry serve`: every function's router on one local port, the same code Lambda runs.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use ferry_api::AppState;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on (loopback by default).
    #[arg(long, env = "FERRY_API_ADDR", default_value = "127.0.0.1:8600")]
    addr: SocketAddr,
    /// Create the DynamoDB table (FERRY_TABLE) first if it does not exist: for a local stack.
    #[arg(long)]
    create_table: bool,
    /// The built web console, served at /console/ (default: the checkout's console/dist).
    #[arg(long, env = "FERRY_CONSOLE_DIR")]
    console_dir: Option<std::path::PathBuf>,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let state = AppState::from_env()
        .await
        .context("reading the configuration")?;
    if args.create_table {
        let exists = state
            .store()
            .client()
            .describe_table()
            .table_name(state.store().table())
            .send()
            .await
            .is_ok();
        if !exists {
            state
                .store()
                .create_table()
                .await
                .context("creating the DynamoDB table")?;
            tracing::info!(table = state.store().table(), "created the DynamoDB table");
        }
    }
    let console_dir = args
        .console_dir
        .unwrap_or_else(ferry_cli::default_console_dir);
    let app = ferry_cli::app(state, &console_dir);
    tracing::info!(addr = %args.addr, "ferry API listening");
    serve_until_interrupted(
        args.addr,
        app,
        &format!(
            "ferry API on http://{0}, the console on http://{0}/console/",
            args.addr
        ),
    )
    .await
}

/// Serves `app` on `addr` until Ctrl-C, after printing `banner`.
pub(crate) async fn serve_until_interrupted(
    addr: SocketAddr,
    app: axum::Router,
    banner: &str,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    eprintln!("{banner}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

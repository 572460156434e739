//! `ferry console --endpoint <api url>`: the web console for a deployed Ferry. It serves the
//! console's files on loopback and forwards the console's API calls (`/v1/...`) to the
//! endpoint, each signed with AWS Signature Version 4 from the operator's credentials
//! (`crate::sigv4`). The browser talks only to 127.0.0.1 and never sees a credential.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::sigv4::Signer;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to serve the console on (loopback by default).
    #[arg(long, default_value = "127.0.0.1:8700")]
    addr: SocketAddr,
    /// The built web console (default: the checkout's console/dist).
    #[arg(long, env = "FERRY_CONSOLE_DIR")]
    console_dir: Option<PathBuf>,
}

/// The largest request body forwarded (the API's own limit).
const MAX_BODY: usize = 64 * 1024;

#[derive(Clone)]
struct Upstream {
    endpoint: String,
    signer: Signer,
    http: reqwest::Client,
}

pub(crate) async fn run(args: Args, endpoint: Option<&str>, profile: Option<&str>) -> Result<()> {
    let Some(endpoint) = endpoint else {
        bail!(
            "ferry console needs --endpoint <the deployed API's URL>; for the local stack, `ferry serve` serves the console at /console/"
        );
    };
    let signer = Signer::from_environment(profile, endpoint).await?;
    let upstream = Upstream {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        signer,
        http: reqwest::Client::new(),
    };
    let console_dir = args
        .console_dir
        .unwrap_or_else(ferry_cli::default_console_dir);
    let app = ferry_cli::console_router(&console_dir)
        .merge(Router::new().fallback(forward).with_state(upstream));
    crate::serve::serve_until_interrupted(
        args.addr,
        app,
        &format!(
            "the console for {endpoint} on http://{}/console/ (API calls signed with your AWS credentials)",
            args.addr
        ),
    )
    .await
}

/// Forwards an API call to the endpoint, signed; the answer is passed back as it came.
async fn forward(State(up): State<Upstream>, request: Request) -> Response {
    match forward_signed(&up, request).await {
        Ok(r) => r,
        Err(e) => {
            let body = serde_json::json!({"error": {"code": "endpoint_unavailable",
                "message": format!("{e:#}"),
                "hint": "check --endpoint, your network and your AWS credentials"}});
            (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
        }
    }
}

async fn forward_signed(up: &Upstream, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if !path.starts_with("/v1/") {
        return Ok((StatusCode::NOT_FOUND, "not a Ferry API path").into_response());
    }
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        let body = serde_json::json!({"error": {"code": "body_too_large",
            "message": format!("the request body is over {MAX_BODY} bytes"),
            "hint": "the API takes bodies of at most 64 KiB"}});
        return Ok((StatusCode::PAYLOAD_TOO_LARGE, axum::Json(body)).into_response());
    };
    let url = format!("{}{path}", up.endpoint);
    let host = crate::sigv4::host_header(&url)?;
    let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    let mut signed_headers = vec![("host", host.as_str())];
    let content_type_text = content_type
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(ct) = &content_type_text {
        signed_headers.push(("content-type", ct.as_str()));
    }
    let method = parts.method.as_str();
    let mut req = up
        .http
        .request(parts.method.clone(), &url)
        .body(body.to_vec());
    if let Some(ct) = &content_type_text {
        req = req.header("content-type", ct);
    }
    for (k, v) in up
        .signer
        .headers(method, &url, &signed_headers, &body)
        .await?
    {
        req = req.header(k, v);
    }
    let answer = req.send().await.context("calling the endpoint")?;
    let status = StatusCode::from_u16(answer.status().as_u16())?;
    let answer_type = answer.headers().get("content-type").cloned();
    let bytes = answer
        .bytes()
        .await
        .context("reading the endpoint's answer")?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = answer_type.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(response)
}

//! The parts of the `ferry` command other crates use: the full route table that `ferry serve`
//! mounts (and that the OpenAPI test compares with `docs/openapi.yaml`), and the app it serves:
//! those routes and the web console.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::StatusCode;
use axum::response::Redirect;
use axum::routing::get;
use ferry_api::{AppState, Route};
use tower_http::services::{ServeDir, ServeFile};

/// The routes of every HTTP function, by the function crate's directory (the `CodeUri` of its
/// resource in `template.yaml`, whose test compares the two).
pub fn routes_by_function() -> Vec<(&'static str, Vec<Route>)> {
    vec![
        ("functions/instances", ferry_fn_instances::routes()),
        ("functions/tasks", ferry_fn_tasks::routes()),
        (
            "functions/consumer-groups",
            ferry_fn_consumer_groups::routes(),
        ),
        ("functions/changes", ferry_fn_changes::routes()),
    ]
}

/// The routes of every HTTP function, as `ferry serve` mounts them.
pub fn all_routes() -> Vec<Route> {
    routes_by_function()
        .into_iter()
        .flat_map(|(_, routes)| routes)
        .collect()
}

/// Where `ferry serve` finds the built console without `--console-dir`: the source checkout's
/// `console/dist` (built by `infra/local/stack up`).
pub fn default_console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../console/dist")
}

/// The web console's files from `console_dir` under `/console/`, and `/` leading there. Without
/// a built console, `/console/` says how to build it.
pub fn console_router(console_dir: &Path) -> Router {
    let index = console_dir.join("index.html");
    let console = if index.is_file() {
        // Unknown paths under /console/ are the console's own routes: its index answers them.
        Router::new().fallback_service(ServeDir::new(console_dir).fallback(ServeFile::new(index)))
    } else {
        let missing = format!(
            "the web console is not built in {}: run infra/local/stack up (or npm ci && npm run build in console/)",
            console_dir.display()
        );
        Router::new().fallback(get(move || async move {
            (StatusCode::SERVICE_UNAVAILABLE, missing)
        }))
    };
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/console/") }))
        .nest_service("/console", console)
}

/// Every route, and the web console (on the API's origin, so the console's calls are
/// same-origin).
pub fn app(state: AppState, console_dir: &Path) -> Router {
    ferry_api::router(all_routes(), state).merge(console_router(console_dir))
}

//! Routes as data: each function crate lists its routes, and the same list builds the Lambda's
//! router, `ferry serve`'s combined router, and the test that compares them with
//! `docs/openapi.yaml`.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::MethodRouter;

use crate::{AppState, MAX_BODY_BYTES, fallback, method_not_allowed};

/// One method on one path.
#[derive(Debug)]
pub struct Route {
    method: Method,
    path: &'static str,
    handler: MethodRouter<AppState>,
}

impl Route {
    /// `handler` must serve exactly `method` (e.g. `Route::new(Method::POST, p, post(h))`); the
    /// OpenAPI test sends every listed method and fails on a 405.
    pub fn new(method: Method, path: &'static str, handler: MethodRouter<AppState>) -> Self {
        Self {
            method,
            path,
            handler,
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    pub fn path(&self) -> &'static str {
        self.path
    }
}

/// A router serving `routes` with `state`, JSON answers for unknown paths and methods, and the
/// body size limit.
pub fn router(routes: Vec<Route>, state: AppState) -> Router {
    routes
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

//! The parts of the `ferry` command other crates use: the full route table that `ferry serve`
//! mounts (and that the OpenAPI test compares with `docs/openapi.yaml`).

use ferry_api::Route;

/// The routes of every HTTP function, as `ferry serve` mounts them.
pub fn all_routes() -> Vec<Route> {
    let mut routes = ferry_fn_instances::routes();
    routes.extend(ferry_fn_tasks::routes());
    routes.extend(ferry_fn_consumer_groups::routes());
    routes.extend(ferry_fn_changes::routes());
    routes
}

//! The parts of the `ferry` command other crates use: the full route table that `ferry serve`
//! mounts (and that the OpenAPI test compares with `docs/openapi.yaml`).

use ferry_api::Route;

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

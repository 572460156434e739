//! The changes function in Lambda: only wiring.

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .init();
    let state = ferry_api::AppState::from_env().await?;
    lambda_http::run(ferry_fn_changes::router(state)).await
}

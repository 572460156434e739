//! The instances function in Lambda: only wiring.

use lambda_http::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    ferry_api::init_lambda_logging();
    let state = ferry_api::AppState::from_env().await?;
    lambda_http::run(ferry_fn_instances::router(state)).await
}

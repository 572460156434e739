//! The reconciler in Lambda: only wiring.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_target(false)
        .without_time()
        .init();
    let reconciler = ferry_fn_reconciler::Reconciler::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| {
        let reconciler = reconciler.clone();
        async move {
            reconciler
                .handle(&event.payload)
                .await
                .map_err(|e| Error::from(e.to_string()))
        }
    }))
    .await
}

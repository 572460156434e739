//! The reconciler in Lambda: only wiring.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    ferry_api::init_lambda_logging();
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

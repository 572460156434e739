//! The API under test: an [`AppState`] on the test's own table, secrets prefix and event bus,
//! and a client that sends requests to the routers in-process (`tower::ServiceExt::oneshot`),
//! exactly as Lambda and `ferry serve` would run them.

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use ferry_api::{AppState, Route, Settings};
use ferry_aws::{Events, Secrets};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::TestContext;

/// A response: status and JSON body (`Null` when empty).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    /// The raw body text, to check that nothing secret is in it.
    pub text: String,
}

impl Answer {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
}

/// The API of one test.
#[derive(Debug, Clone)]
pub struct TestApi {
    pub state: AppState,
    router: Router,
}

impl TestApi {
    /// Sends a JSON request.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Answer> {
        let mut req = Request::builder().method(method).uri(path);
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        self.raw(req.body(body)?).await
    }

    /// Creates a change-tracking instance named `name`, configures its task with `config` and
    /// starts it (no worker runs it yet): the instance id and the task's topic.
    pub async fn start_tracking_task(&self, name: &str, config: Value) -> Result<(String, String)> {
        let (id, task) = self.start_task_named(name, "tracking", config).await?;
        let topic = task["delivery"]["topic"]
            .as_str()
            .with_context(|| format!("the started task names no topic: {task}"))?
            .to_owned();
        Ok((id.to_string(), topic))
    }

    /// Sends any request, for bodies that are not JSON on purpose.
    pub async fn raw(&self, req: Request<Body>) -> Result<Answer> {
        let resp = self.router.clone().oneshot(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
        };
        Ok(Answer { status, body, text })
    }
}

impl TestContext {
    /// An API over `routes` on this test's table, with secrets under `ferry-test/{id}` and
    /// lifecycle events on a bus named after the test, copied to a queue [`Self::events`]
    /// reads.
    pub async fn api(&self, routes: Vec<Route>) -> Result<TestApi> {
        let state = self.app_state().await?;
        Ok(TestApi {
            router: ferry_api::router(routes, state.clone()),
            state,
        })
    }

    /// The state the API is built from.
    pub async fn app_state(&self) -> Result<AppState> {
        let aws = self.env.aws_config().await;
        let bus = self.id.clone();
        let eb = aws_sdk_eventbridge::Client::new(&aws);
        if eb.describe_event_bus().name(&bus).send().await.is_err() {
            eb.create_event_bus()
                .name(&bus)
                .send()
                .await
                .context("creating the test's event bus")?;
            let sqs = aws_sdk_sqs::Client::new(&aws);
            let url = sqs
                .create_queue()
                .queue_name(&bus)
                .send()
                .await?
                .queue_url
                .context("no queue url")?;
            let arn = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .send()
                .await?
                .attributes
                .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
                .context("no queue arn")?;
            eb.put_rule()
                .name("all")
                .event_bus_name(&bus)
                .event_pattern(r#"{"source": ["ferry"]}"#)
                .send()
                .await?;
            eb.put_targets()
                .rule("all")
                .event_bus_name(&bus)
                .targets(
                    aws_sdk_eventbridge::types::Target::builder()
                        .id("queue")
                        .arn(arn)
                        .build()?,
                )
                .send()
                .await?;
        }
        Ok(AppState::new(
            self.store().await,
            Secrets::new(
                aws_sdk_secretsmanager::Client::new(&aws),
                format!("ferry-test/{}", self.id),
            ),
            Events::new(eb, bus),
            ferry_aws::Streams::new(aws_sdk_kinesis::Client::new(&aws)),
            self.archive().await?,
            Settings {
                kafka_bootstrap: self.env.kafka_bootstrap.clone(),
                consumer_bootstrap: Some("127.0.0.1:9192".into()),
                consumer_security_protocol: "SASL_PLAINTEXT".into(),
                topic_prefix: format!("{}.", self.id),
                endpoint_policy: Default::default(),
            },
        ))
    }

    /// The lifecycle events published so far (and not read before), as EventBridge delivers
    /// them: `{"detail-type", "source", "detail", …}`.
    pub async fn events(&self) -> Result<Vec<Value>> {
        let aws = self.env.aws_config().await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let url = sqs
            .get_queue_url()
            .queue_name(&self.id)
            .send()
            .await?
            .queue_url
            .context("no queue url")?;
        let mut out = Vec::new();
        loop {
            let got = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .send()
                .await?;
            let messages = got.messages.unwrap_or_default();
            if messages.is_empty() {
                return Ok(out);
            }
            for m in messages {
                if let Some(body) = m.body() {
                    out.push(serde_json::from_str(body)?);
                }
                if let Some(h) = m.receipt_handle() {
                    sqs.delete_message()
                        .queue_url(&url)
                        .receipt_handle(h)
                        .send()
                        .await?;
                }
            }
        }
    }

    /// Whether a secret exists under this test's prefix.
    pub async fn secret_names(&self) -> Result<Vec<String>> {
        let aws = self.env.aws_config().await;
        let sm = aws_sdk_secretsmanager::Client::new(&aws);
        let prefix = format!("ferry-test/{}/", self.id);
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = sm
                .list_secrets()
                .set_next_token(token.take())
                .send()
                .await?;
            names.extend(
                out.secret_list()
                    .iter()
                    .filter_map(|s| s.name())
                    .filter(|n| n.starts_with(&prefix))
                    .map(str::to_owned),
            );
            match out.next_token {
                Some(t) => token = Some(t),
                None => return Ok(names),
            }
        }
    }
}

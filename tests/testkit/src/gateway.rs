//! The consumer gateway in tests: started in-process on a free loopback port against the
//! stack's broker and this test's table, driven by Kafka clients that are not Ferry's
//! (`tests/clients/`) and by a raw protocol client for what no client library sends.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use ferry_gateway::wire::{read_frame, request, write_frame};
use ferry_gateway::{Accounts, Gateway, Limits, Listen, Upstream};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::TestContext;

/// A gateway serving this test's groups.
#[derive(Debug)]
pub struct TestGateway {
    pub gateway: Gateway,
    /// The address consumers connect to.
    pub bootstrap: String,
}

impl TestGateway {
    /// Starts a gateway that re-checks live connections every second.
    pub async fn start(ctx: &TestContext) -> Result<Self> {
        Self::start_with(ctx, None).await
    }

    /// The same, with TLS towards clients when given.
    pub async fn start_with(
        ctx: &TestContext,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> Result<Self> {
        let state = ctx.app_state().await?;
        let bootstrap = ctx.env().kafka_bootstrap.clone();
        let upstream = Upstream::from_settings(|n| match n {
            "FERRY_KAFKA_BOOTSTRAP" => Some(bootstrap.clone()),
            _ => None,
        })?;
        let accounts = Accounts::new(state.store().clone(), state.settings().topic_prefix.clone());
        let listen = Listen {
            host: "127.0.0.1".parse()?,
            base_port: 0,
            advertised_host: "127.0.0.1".into(),
            recheck: Duration::from_secs(1),
            tls,
        };
        let gateway = Gateway::start(listen, upstream, accounts, Limits::default()).await?;
        let bootstrap = gateway
            .listeners
            .first()
            .map(|(_, a)| a.to_string())
            .context("the gateway has no listener")?;
        Ok(Self { gateway, bootstrap })
    }

    /// The gateway's metrics (text exposition).
    pub fn metrics(&self) -> String {
        self.gateway.shared.metrics.encode()
    }

    /// The value of one metric line (`name{labels}`), 0 when absent.
    pub fn metric(&self, line_prefix: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(line_prefix).map(str::trim))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// A Kafka client implementation that is not Ferry's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// confluent-kafka (librdkafka).
    Confluent,
    /// kafka-python (pure Python).
    KafkaPython,
    /// kafkajs (pure JavaScript).
    Kafkajs,
}

/// What a client run printed: the offsets it read and the error it ended with.
#[derive(Debug, Default, Clone)]
pub struct ClientRun {
    pub records: Vec<i64>,
    pub error: Option<String>,
    /// The client's own words about the error.
    pub detail: Option<String>,
    /// Crashes a member went on from.
    pub crashes: Vec<String>,
    pub done: bool,
}

impl Client {
    fn command(self, ctx: &TestContext, spec: &Value) -> Command {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients");
        let mut cmd = match self {
            Client::Confluent => {
                let mut c = Command::new(&ctx.env().python);
                c.arg(dir.join("ck_consumer.py"));
                c
            }
            Client::KafkaPython => {
                let mut c = Command::new(&ctx.env().kafka_python);
                c.arg(dir.join("kp_consumer.py"));
                c
            }
            Client::Kafkajs => {
                let mut c = Command::new("node");
                c.arg(dir.join("kjs_consumer.js"))
                    .env("NODE_PATH", &ctx.env().node_path);
                c
            }
        };
        cmd.arg(spec.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs one action to its end (`timeout_s` in the spec bounds it).
    pub async fn run(self, ctx: &TestContext, spec: Value) -> Result<ClientRun> {
        let limit = spec["timeout_s"].as_u64().unwrap_or(60) + 30;
        let child = self
            .command(ctx, &spec)
            .spawn()
            .context("starting a client")?;
        let out = tokio::time::timeout(Duration::from_secs(limit), child.wait_with_output())
            .await
            .with_context(|| format!("{self:?} did not end in {limit} s"))??;
        let mut run = ClientRun::default();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            absorb(&mut run, line);
        }
        Ok(run)
    }

    /// Starts a long-running group member (action `member`); its output lines arrive on the
    /// returned member as they are printed.
    pub fn member(self, ctx: &TestContext, mut spec: Value) -> Result<Member> {
        spec["action"] = json!("member");
        let mut child = self
            .command(ctx, &spec)
            .spawn()
            .context("starting a member")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Member {
            child,
            lines: rx,
            run: ClientRun::default(),
        })
    }
}

fn absorb(run: &mut ClientRun, line: &str) {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return;
    };
    if let Some(o) = v["record"].as_i64() {
        run.records.push(o);
    }
    if let Some(e) = v["error"].as_str() {
        run.error = Some(e.to_owned());
        run.detail = v["detail"].as_str().map(str::to_owned);
    }
    // A member's consumer that crashed and went on (the client restarted it, or the member
    // rejoined): kept to say what happened should the member fail later.
    if let Some(c) = v["crashed"].as_str() {
        run.crashes
            .push(format!("{c}: {}", v["detail"].as_str().unwrap_or_default()));
    }
    if v.get("done").is_some() {
        run.done = true;
    }
}

/// A consumer group member running until killed.
#[derive(Debug)]
pub struct Member {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    pub run: ClientRun,
}

impl Member {
    /// Waits until the member has read `n` records in all (or ended with an error).
    pub async fn wait_records(&mut self, n: usize, timeout: Duration) -> Result<&ClientRun> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.run.records.len() < n {
            if let Some(e) = &self.run.error {
                bail!(
                    "the member failed: {e} ({}); before: {:?}",
                    self.run.detail.as_deref().unwrap_or("no detail"),
                    self.run.crashes
                );
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => absorb(&mut self.run, &line),
                Ok(None) => bail!("the member ended after {:?}", self.run),
                Err(_) => bail!("{} of {n} records in {timeout:?}", self.run.records.len()),
            }
        }
        Ok(&self.run)
    }

    /// Kills the member (SIGKILL): it leaves the group only when its session times out.
    pub async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A raw Kafka-protocol connection, for what client libraries never send.
#[derive(Debug)]
pub struct RawClient {
    stream: TcpStream,
    next: i32,
}

impl RawClient {
    pub async fn connect(addr: &str) -> Result<Self> {
        Ok(Self {
            stream: TcpStream::connect(addr).await?,
            next: 1,
        })
    }

    /// Sends raw bytes.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Sends a request and reads its response; `Err` when the gateway closed the connection.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Result<Resp> {
        let id = self.next;
        self.next += 1;
        write_frame(&mut self.stream, &request(key, version, id, body)?).await?;
        let frame = tokio::time::timeout(
            Duration::from_secs(30),
            read_frame(&mut self.stream, 64 << 20),
        )
        .await
        .context("no answer in 30 s")??;
        let (header, body) = ferry_gateway::wire::parse_response::<Resp>(key, version, frame)?;
        if header.correlation_id != id {
            bail!("the answer to {id} came as {}", header.correlation_id);
        }
        Ok(body)
    }

    /// Signs in with SASL PLAIN; the SaslAuthenticate error code (0 when signed in).
    pub async fn sign_in_plain(&mut self, username: &str, password: &str) -> Result<i16> {
        let mut hs = SaslHandshakeRequest::default();
        hs.mechanism = "PLAIN".into();
        let r: SaslHandshakeResponse = self.call(ApiKey::SaslHandshake, 1, &hs).await?;
        if r.error_code != 0 {
            return Ok(r.error_code);
        }
        let mut a = SaslAuthenticateRequest::default();
        a.auth_bytes = Bytes::from(format!("\0{username}\0{password}"));
        let r: SaslAuthenticateResponse = self.call(ApiKey::SaslAuthenticate, 2, &a).await?;
        Ok(r.error_code)
    }

    /// Whether the gateway closed the connection: the next read ends (within `within`).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        matches!(
            tokio::time::timeout(within, read_frame(&mut self.stream, 64 << 20)).await,
            Ok(Err(_))
        )
    }

    /// An ApiVersions round trip (works signed in or not).
    pub async fn ping(&mut self) -> Result<()> {
        let _: ApiVersionsResponse = self
            .call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())
            .await?;
        Ok(())
    }
}

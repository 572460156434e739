//! `ferry worker` as a separate process, configured for one test's slice of the stack, so a
//! test can kill it the way a crashed machine or an OOM killer does (SIGKILL: no shutdown
//! path runs).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::TestContext;

/// A running `ferry worker` process; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    metrics_addr: std::net::SocketAddr,
    log: PathBuf,
}

impl WorkerProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the process serves Prometheus metrics (`/metrics`).
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// What the process's Prometheus endpoint shows now.
    pub async fn metrics(&self) -> Result<String> {
        Ok(reqwest::get(self.metrics_url()).await?.text().await?)
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .with_context(|| format!("running kill -{signal}"))?;
        if !sent.success() {
            bail!("kill -{signal} {} failed: {sent}", self.child.id());
        }
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit on its own: its exit status.
    pub fn exited_within(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for the worker")? {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                bail!("the worker did not exit within {timeout:?}");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM (what ECS sends a task it stops) and waits up to `timeout` for the process
    /// to exit: its exit status.
    pub fn terminate(&mut self, timeout: std::time::Duration) -> Result<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        if !sent.success() {
            bail!("kill -TERM {} failed: {sent}", self.child.id());
        }
        self.exited_within(timeout).context("after SIGTERM")
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill_hard(mut self) -> Result<()> {
        self.child.kill().context("SIGKILL")?;
        self.child.wait().context("reaping the worker")?;
        Ok(())
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `ferry` binary of the build the tests belong to (the test binary lives in
/// `target/<profile>/deps/`, the workspace's binaries one level up).
pub fn ferry_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("the test binary's path")?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test binary is not in target/<profile>/deps")?;
    let ferry = profile_dir.join("ferry");
    if !ferry.exists() {
        bail!(
            "{} does not exist: build it first (`cargo build -p ferry-cli`; `cargo nextest run --workspace` builds it)",
            ferry.display()
        );
    }
    Ok(ferry)
}

impl TestContext {
    /// Starts `ferry worker` against this test's table, topics, secrets and event bus (the
    /// ones [`TestContext::app_state`] uses), with a short lease so a killed worker's tasks are
    /// taken over quickly. Its log goes to `<state dir>/<test id>-worker-<pid>.log`.
    pub fn worker_process(&self, lease_ttl_secs: u32) -> Result<WorkerProcess> {
        self.worker_process_with(lease_ttl_secs, &[])
    }

    /// [`TestContext::worker_process`] with environment variables set or replaced (a private
    /// broker's bootstrap, an AWS endpoint behind a fault proxy).
    pub fn worker_process_with(
        &self,
        lease_ttl_secs: u32,
        env_overrides: &[(&str, String)],
    ) -> Result<WorkerProcess> {
        let env = self.env();
        let log_dir = env.state_dir.join("test-logs");
        std::fs::create_dir_all(&log_dir)?;
        let log_path = log_dir.join(format!(
            "{}-worker-{}.log",
            self.id(),
            uuid::Uuid::new_v4().simple()
        ));
        let log = std::fs::File::create(&log_path)?;
        // A free loopback port for the metrics endpoint (released just before the worker binds).
        let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(ferry_binary()?)
            .arg("worker")
            .env("FERRY_TABLE", self.dynamo_table())
            .env("FERRY_KAFKA_BOOTSTRAP", &env.kafka_bootstrap)
            .env("FERRY_TOPIC_PREFIX", format!("{}.", self.id()))
            .env("FERRY_SECRET_PREFIX", format!("ferry-test/{}", self.id()))
            .env("FERRY_EVENT_BUS", self.id())
            .env("FERRY_ARCHIVE_BUCKET", crate::ARCHIVE_BUCKET)
            .env("FERRY_LEASE_TTL_SECS", lease_ttl_secs.to_string())
            .env("FERRY_WORKER_POLL_MS", "200")
            .env("FERRY_HEARTBEAT_MS", "300")
            .env("FERRY_METRICS_ADDR", metrics_addr.to_string())
            // Each report is a DynamoDB write per task: every 5 s keeps the local endpoint (one
            // request at a time) free for leases and checkpoints on a loaded machine.
            .env("FERRY_METRICS_REPORT_MS", "5000")
            .env("AWS_ENDPOINT_URL", &env.aws_endpoint)
            .env("AWS_REGION", &env.aws_region)
            .env("AWS_ACCESS_KEY_ID", "ferry-local")
            .env("AWS_SECRET_ACCESS_KEY", "ferry-local")
            .env(
                "RUST_LOG",
                std::env::var("FERRY_TEST_WORKER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(env_overrides.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting ferry worker (log {})", log_path.display()))?;
        Ok(WorkerProcess {
            child,
            metrics_addr,
            log: log_path,
        })
    }
}

//! Faults a test injects between a worker and the services it talks to, on loopback only: a
//! TCP proxy the test controls ([`FaultProxy`]), a Kafka-protocol broker of the test's own that
//! it may kill ([`PrivateBroker`]), and a PostgreSQL server it may restart
//! ([`ThrowawayPostgres`]; restartable MariaDB servers are `ThrowawayMariaDb`).
//!
//! The shared stack's servers are never touched: other tests run beside these.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::StackEnv;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes flow both ways.
    Open,
    /// A network partition: connections stay open but nothing passes (new ones are accepted
    /// and go nowhere), as when packets are dropped; traffic resumes when restored.
    Cut,
    /// A restart: every connection is closed and new ones are refused until restored.
    Down,
}

/// A TCP proxy on 127.0.0.1 in front of one upstream address, on the test's runtime.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    link: Arc<watch::Sender<Link>>,
    /// Where new connections go (a DNS name pointed elsewhere: [`FaultProxy::repoint`]).
    upstream: watch::Sender<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.link.send(Link::Down);
        self.task.abort();
    }
}

/// Copies one direction until either side closes or the link goes down; holds bytes while
/// the link is cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: watch::Receiver<Link>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = link.wait_for(|l| *l == Link::Down) => break,
        };
        // Cut: the bytes wait here, as in a partitioned network, until restored or down.
        if !matches!(link.wait_for(|l| *l != Link::Cut).await, Ok(l) if *l == Link::Open) {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl FaultProxy {
    /// A proxy to `upstream` on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        Self::start_on("127.0.0.1:0".parse()?, upstream).await
    }

    /// A proxy to `upstream` listening on `listen`.
    pub async fn start_on(listen: SocketAddr, upstream: SocketAddr) -> Result<Self> {
        anyhow::ensure!(
            listen.ip().is_loopback() && upstream.ip().is_loopback(),
            "fault proxies only join loopback addresses"
        );
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = watch::channel(Link::Open);
        let (to, upstreams) = watch::channel(upstream);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let mut link = rx.clone();
                let upstream = *upstreams.borrow();
                if *link.borrow() == Link::Down {
                    drop(client); // refused: closed at once
                    continue;
                }
                tokio::spawn(async move {
                    // A cut link connects nowhere until restored.
                    if !matches!(link.wait_for(|l| *l != Link::Cut).await, Ok(l) if *l == Link::Open)
                    {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = tokio::spawn(pump(cr, sw, link.clone()));
                    let down = tokio::spawn(pump(sr, cw, link));
                    let _ = tokio::join!(up, down);
                });
            }
        });
        Ok(Self {
            addr,
            link: Arc::new(tx),
            upstream: to,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Partitions the network: nothing passes until [`FaultProxy::restore`].
    pub fn cut(&self) {
        let _ = self.link.send(Link::Cut);
    }

    /// Closes every connection and refuses new ones until [`FaultProxy::restore`]: what a
    /// client sees of a server restart.
    pub fn down(&self) {
        let _ = self.link.send(Link::Down);
    }

    pub fn restore(&self) {
        let _ = self.link.send(Link::Open);
    }

    /// Sends new connections to `upstream` (on loopback): what clients see when the name they
    /// connect to is pointed at another server. Open connections stay where they are.
    pub fn repoint(&self, upstream: SocketAddr) -> Result<()> {
        anyhow::ensure!(
            upstream.ip().is_loopback(),
            "fault proxies only join loopback addresses"
        );
        let _ = self.upstream.send(upstream);
        Ok(())
    }
}

/// A free port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_port(port: u16, what: &str, log: &std::path::Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            bail!("{what} did not listen on {port} within 60 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A Kafka-protocol broker (nisshi) of one test's own, with its storage in a PostgreSQL
/// database of the stack's, reached through a [`FaultProxy`]: the broker advertises the
/// proxy's address, so every client (the worker's producer, the test's readers) goes through
/// it. The broker itself may be killed and started again.
#[derive(Debug)]
pub struct PrivateBroker {
    child: Option<Child>,
    nisshi: PathBuf,
    port: u16,
    storage: String,
    log: PathBuf,
    pub proxy: FaultProxy,
}

impl PrivateBroker {
    /// Starts a broker storing into PostgreSQL database `database` (created if missing).
    pub async fn start(env: &StackEnv, database: &str) -> Result<Self> {
        let admin = env.postgres("postgres").await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
            .await?
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE \"{database}\""))
                .await?;
        }
        let config: tokio_postgres::Config = env.postgres_url.parse()?;
        let (host, port) = match (config.get_hosts().first(), config.get_ports().first()) {
            (Some(tokio_postgres::config::Host::Tcp(h)), Some(p)) => (h.clone(), *p),
            _ => bail!("the stack's PostgreSQL URL names no TCP host"),
        };
        let user = config.get_user().unwrap_or("postgres");
        let port_broker = free_port()?;
        let proxy = FaultProxy::start(format!("127.0.0.1:{port_broker}").parse()?).await?;
        let dir = env.state_dir.join("test-logs");
        std::fs::create_dir_all(&dir)?;
        let mut broker = Self {
            child: None,
            nisshi: env.nisshi.clone(),
            port: port_broker,
            storage: format!("postgres://{user}@{host}:{port}/{database}"),
            log: dir.join(format!("{database}-broker.log")),
            proxy,
        };
        broker.start_process()?;
        Ok(broker)
    }

    fn start_process(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.nisshi)
            .arg("broker")
            .args(["--cluster-id", "ferry-fault"])
            .arg("--listener-url")
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{}", self.proxy.port()))
            .arg("--storage-engine")
            .arg(&self.storage)
            .args(["--group-initial-rebalance-delay", "0s"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting nisshi")?;
        self.child = Some(child);
        wait_port(self.port, "the private broker", &self.log)
    }

    /// Where clients connect (the proxy).
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.proxy.port())
    }

    /// SIGKILL: the broker dies with whatever it was doing.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts the killed broker again on the same storage.
    pub fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.start_process()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A PostgreSQL server of one test's own (trust authentication on loopback), which the test
/// may restart.
#[derive(Debug)]
pub struct ThrowawayPostgres {
    child: Option<Child>,
    bin: PathBuf,
    data: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

fn postgres_bin() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no /usr/lib/postgresql: install PostgreSQL (infra/local/stack up does)")?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions.pop().context("no PostgreSQL server binaries")
}

impl ThrowawayPostgres {
    pub fn start(env: &StackEnv) -> Result<Self> {
        let bin = postgres_bin()?;
        let dir = env
            .state_dir
            .join("throwaway")
            .join(format!("pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        // initdb and postgres refuse to run as root.
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if as_postgres {
            Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&dir)
                .status()?;
        }
        let data = dir.join("data");
        let mut pg = Self {
            child: None,
            bin,
            data,
            dir,
            port: free_port()?,
            as_postgres,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&pg.data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        pg.start_process()?;
        Ok(pg)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--clear-groups",
                "--",
            ])
            .arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn start_process(&mut self) -> Result<()> {
        let log_path = self.dir.join("postgres.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut command = self.command("postgres");
        // A process group of its own, so a restart kills the backends with the postmaster (a
        // backend busy in a long COPY outlives a killed postmaster and keeps its shared memory,
        // and the next postmaster refuses to start).
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .arg("-D")
            .arg(&self.data)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("port={}", self.port))
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=50"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        self.child = Some(child);
        wait_port(self.port, "the throwaway PostgreSQL", &log_path)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL (a crash: in-flight transactions are lost, committed ones recovered), then the
    /// same data directory started again.
    pub fn restart(&mut self) -> Result<()> {
        self.kill_server()?;
        // A killed postmaster leaves its children for a moment: wait for the port to free up.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
        self.start_process()
    }

    /// A connection to database `db` (created by the first caller that names it); waits while
    /// the server is still starting (it listens before it accepts sessions).
    pub async fn client(&self, db: &str) -> Result<tokio_postgres::Client> {
        let mut tries = 0;
        loop {
            match self.try_client(db).await {
                Ok(c) => return Ok(c),
                Err(e) if tries < 100 => {
                    tries += 1;
                    tracing_log(&e);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_client(&self, db: &str) -> Result<tokio_postgres::Client> {
        let connect = |db: String| async move {
            let (client, conn) = tokio_postgres::connect(
                &format!(
                    "host=127.0.0.1 port={} user=postgres dbname={db}",
                    self.port
                ),
                tokio_postgres::NoTls,
            )
            .await?;
            tokio::spawn(conn);
            anyhow::Ok(client)
        };
        let admin = connect("postgres".into()).await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .await?
            .is_some();
        if !exists {
            admin
                .batch_execute(&format!("CREATE DATABASE \"{db}\""))
                .await?;
        }
        connect(db.into()).await
    }
}

fn tracing_log(e: &anyhow::Error) {
    if std::env::var("FERRY_TEST_LOG").is_ok() {
        eprintln!("throwaway PostgreSQL not ready yet: {e:#}");
    }
}

impl ThrowawayPostgres {
    /// SIGKILL to the whole process group the server started in (the postmaster and its
    /// backends, none of which outlives it), then waits until the group is gone.
    fn kill_server(&mut self) -> Result<()> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        let group = format!("-{}", c.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        c.wait()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Command::new("kill")
            .args(["-0", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        // A backend can still be alive outside the group (seen under load: one busy in a COPY
        // logged "terminating connection due to unexpected postmaster exit" after the group
        // was killed, and kept the shared memory the next postmaster needs). Every process
        // of this server has the data directory as its working directory: none may be left.
        while let Some(pids) = processes_in(&self.data).filter(|p| !p.is_empty()) {
            for pid in pids {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// The processes whose working directory is `dir` (`None` when `/proc` cannot be read).
fn processes_in(dir: &std::path::Path) -> Option<Vec<String>> {
    let dir = dir.canonicalize().ok()?;
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name.bytes().all(|b| b.is_ascii_digit())
                    && std::fs::read_link(e.path().join("cwd")).is_ok_and(|cwd| cwd == dir))
                .then_some(name)
            })
            .collect(),
    )
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self.kill_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

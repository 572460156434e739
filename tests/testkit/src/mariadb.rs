//! Throwaway MariaDB servers, for what the stack's shared server must not be changed for: a
//! server with the binlog off, or with statement-based logging. Each runs in a directory of
//! its own under the stack's state directory, on a free loopback port, and is stopped (by its
//! pid) when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::StackEnv;

fn spawn_server(dir: &std::path::Path, port: u16, args: &[String]) -> Result<Child> {
    let mut cmd = Command::new("mariadbd");
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", dir.join("data").display()))
        .arg(format!("--socket={}", dir.join("sock").display()))
        .arg(format!("--tmpdir={}", dir.join("tmp").display()))
        .arg(format!("--port={port}"))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--server-id=7",
            "--innodb-buffer-pool-size=32M",
        ])
        .arg(format!("--log-error={}", dir.join("error.log").display()))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if is_root() {
        cmd.arg("--user=root");
    }
    cmd.spawn().context("starting mariadbd")
}

/// A private MariaDB server.
/// What a change-tracking source logs: its binlog, in rows, whole rows, with column names.
pub const CAPTURE_ARGS: [&str; 4] = [
    "--log-bin=binlog",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
];

#[derive(Debug)]
pub struct ThrowawayMariaDb {
    child: Child,
    dir: PathBuf,
    port: u16,
    args: Vec<String>,
}

impl ThrowawayMariaDb {
    /// Starts a server with `args` added to a minimal command line, and a user `ferry_capture`
    /// (password `capture-Secret1`) with the privileges capture needs.
    /// A server logging what change tracking needs ([`CAPTURE_ARGS`]), and `extra`.
    pub fn capture_source(env: &StackEnv, extra: &[&str]) -> Result<Self> {
        let args: Vec<&str> = CAPTURE_ARGS.iter().chain(extra).copied().collect();
        Self::start(env, &args)
    }

    pub fn start(env: &StackEnv, args: &[&str]) -> Result<Self> {
        let base = env.state_dir.join("throwaway");
        std::fs::create_dir_all(&base)?;
        let dir = base.join(uuid::Uuid::new_v4().simple().to_string());
        let data = dir.join("data");
        // A tmpdir of its own: a starting MariaDB deletes every `#sql*` file in its tmpdir, which
        // in a shared /tmp are other servers' live temporary tables.
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let root = is_root();
        let mut install = Command::new("mariadb-install-db");
        install
            .args([
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()));
        if root {
            install.arg("--user=root");
        }
        let out = install.output().context("running mariadb-install-db")?;
        if !out.status.success() {
            bail!(
                "mariadb-install-db failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        let child = spawn_server(&dir, port, &args)?;
        let server = Self {
            child,
            dir,
            port,
            args,
        };
        let sock = server.dir.join("sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("mariadb")
                .args(["--no-defaults", "-uroot"])
                .arg(format!("--socket={}", sock.display()))
                .args(["-e", "CREATE USER IF NOT EXISTS 'ferry_capture'@'%' IDENTIFIED BY 'capture-Secret1'; GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO 'ferry_capture'@'%'"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(server);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(server.dir.join("error.log")).unwrap_or_default();
                bail!("throwaway MariaDB not ready in 30s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: a crash) and starts it again on the same data and port;
    /// returns once it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        self.child.kill().context("killing mariadbd")?;
        self.child.wait()?;
        self.child = spawn_server(&self.dir, self.port, &self.args)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.sql("SELECT 1").is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
                bail!("the restarted MariaDB is not ready in 60 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Kills the server (SIGKILL: a crash, or a host gone) and leaves it down.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill().context("killing mariadbd")?;
        self.child.wait()?;
        Ok(())
    }

    /// The binlog files the server lists (`SHOW BINARY LOGS`).
    pub fn binlog_files(&self) -> Result<Vec<String>> {
        Ok(self
            .client("SHOW BINARY LOGS")?
            .lines()
            .filter_map(|l| l.split('\t').next())
            .map(str::to_owned)
            .collect())
    }

    /// Purges the first binlog file (`binlog.000001`): MariaDB keeps a file until its binlog
    /// checkpoint passed it, so this flushes and purges until the file is gone (a few rounds;
    /// 300 at most, then an error).
    pub fn purge_first_binlog(&self) -> Result<()> {
        for _ in 0..300 {
            if !self.binlog_files()?.iter().any(|f| f == "binlog.000001") {
                return Ok(());
            }
            self.sql("FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 DAY")?;
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("binlog.000001 was never purged")
    }

    /// A replica of `primary`, started with `args` (binlog options: a replica that logs what it
    /// applies, `--log-slave-updates`, can take a capture task over by GTID) and `--server-id`
    /// `server_id`, replicating by GTID (`MASTER_USE_GTID = slave_pos`) from the primary's
    /// current GTID position on (both servers made their own users: the replica skips the
    /// primary's), as the capture user. Returns once the replica's I/O and SQL threads run.
    pub fn replica_of(
        env: &StackEnv,
        primary: &ThrowawayMariaDb,
        server_id: u32,
        args: &[&str],
    ) -> Result<Self> {
        let id = format!("--server-id={server_id}");
        let mut all: Vec<&str> = args.to_vec();
        all.push(&id);
        let replica = Self::start(env, &all)?;
        let at = primary.query("SELECT @@gtid_binlog_pos")?;
        replica.sql(&format!(
            "SET GLOBAL gtid_slave_pos = '{}'; CHANGE MASTER TO MASTER_HOST = '127.0.0.1', \
             MASTER_PORT = {}, MASTER_USER = 'ferry_capture', MASTER_PASSWORD = 'capture-Secret1', \
             MASTER_USE_GTID = slave_pos; START SLAVE",
            at.first().map_or("", String::as_str),
            primary.port()
        ))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = replica.query(
                "SELECT GROUP_CONCAT(VARIABLE_VALUE) FROM information_schema.GLOBAL_STATUS \
                 WHERE VARIABLE_NAME = 'SLAVE_RUNNING'",
            )?;
            if status.first().is_some_and(|s| s == "ON") {
                return Ok(replica);
            }
            if Instant::now() > deadline {
                bail!("the replica did not start replicating in 30 s: {status:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs a query as root and answers its first row's columns as text.
    pub fn query(&self, sql: &str) -> Result<Vec<String>> {
        Ok(self
            .client(sql)?
            .lines()
            .next()
            .unwrap_or_default()
            .split('\t')
            .map(str::to_owned)
            .collect())
    }

    /// Runs SQL as root (through the socket), in a session of its own.
    pub fn sql(&self, sql: &str) -> Result<()> {
        self.client(sql).map(drop)
    }

    /// The `mariadb` client run on `sql` as root through the socket: its output, tab-separated
    /// without column names.
    fn client(&self, sql: &str) -> Result<String> {
        let out = Command::new("mariadb")
            .args(["--no-defaults", "-uroot", "-N", "-B"])
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .args(["-e", sql])
            .output()
            .context("running mariadb")?;
        if !out.status.success() {
            bail!("{sql}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Makes the database `shop` with `orders (id BIGINT PRIMARY KEY, total BIGINT)` and the
    /// user [`ThrowawayMariaDb::shop_writer`] connects as (root has only the socket).
    pub fn create_shop(&self) -> Result<()> {
        self.sql(
            "CREATE DATABASE shop; CREATE TABLE shop.orders (id BIGINT PRIMARY KEY, total BIGINT); \
             CREATE USER writer@'%' IDENTIFIED BY 'writer-Secret1'; GRANT ALL ON shop.* TO writer@'%'",
        )
    }

    /// A connection to `shop` over TCP as its writer (see [`ThrowawayMariaDb::create_shop`]; a
    /// replica has the user too).
    pub async fn shop_writer(&self) -> Result<mysql_async::Conn> {
        let url = format!("mysql://writer:writer-Secret1@127.0.0.1:{}/shop", self.port);
        Ok(mysql_async::Conn::new(mysql_async::Opts::from_url(&url)?).await?)
    }

    /// `shop.orders` as it is: each id's total.
    pub async fn shop_orders(&self) -> Result<std::collections::BTreeMap<i64, i64>> {
        use mysql_async::prelude::Queryable;
        let mut db = self.shop_writer().await?;
        let rows: Vec<(i64, i64)> = db.query("SELECT id, total FROM orders").await?;
        let _ = db.disconnect().await;
        Ok(rows.into_iter().collect())
    }

    /// The server as a change-tracking task's source, as the capture user.
    pub fn source(&self) -> serde_json::Value {
        serde_json::json!({"engine": "mariadb", "host": "127.0.0.1", "port": self.port,
                           "username": "ferry_capture", "password": "capture-Secret1"})
    }
}

impl Drop for ThrowawayMariaDb {
    fn drop(&mut self) {
        // SIGKILL of our own child, by its pid; the data is thrown away anyway.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"))
}

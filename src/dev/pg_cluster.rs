//! A PostgreSQL cluster of a caller's own, for the chaos runs and the tests that stop and start
//! their database (readiness): made with initdb, run with pg_ctl, reached over a Unix socket only.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context as _, bail};
use tokio::process::Command;

/// A PostgreSQL cluster of its own: initdb'd in a directory of the caller's, listening only on a
/// Unix socket there. PostgreSQL refuses to run as root; run as root, the cluster runs as the
/// `postgres` user (through `runuser`).
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    /// Creates and starts a cluster under `dir` (with PostgreSQL's programs from `pg_bin`, else
    /// found), with an empty database `lefi`.
    pub async fn create(dir: &Path, pg_bin: Option<&Path>) -> anyhow::Result<Self> {
        let bin = match pg_bin {
            Some(b) => b.to_path_buf(),
            None => find_pg_bin().await?,
        };
        let data = dir.join("pg");
        std::fs::create_dir_all(&data)?;
        let as_postgres = is_root().await;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir)
                .status()
                .await?;
            if !status.success() {
                bail!("could not give {} to the postgres user", dir.display());
            }
        }
        let cluster = Cluster {
            bin,
            data,
            port: super::free_port()?,
            as_postgres,
        };
        cluster
            .pg(
                "initdb",
                &["--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C", "-D"],
            )
            .await
            .context("initdb")?;
        cluster.start().await?;
        // The database the server uses.
        let admin = format!(
            "postgres://postgres@localhost/postgres?host={}&port={}",
            cluster.data.display(),
            cluster.port
        );
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await?;
        sqlx::Executor::execute(&mut conn, "CREATE DATABASE lefi").await?;
        Ok(cluster)
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@localhost/lefi?host={}&port={}",
            self.data.display(),
            self.port
        )
    }

    /// Runs a PostgreSQL program with `args`, then the data directory.
    async fn pg(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = command
            .args(args)
            .arg(&self.data)
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn options(&self) -> String {
        format!(
            "-c listen_addresses='' -k {} -p {} -c max_connections=100",
            self.data.display(),
            self.port
        )
    }

    /// Starts the cluster (again).
    pub async fn start(&self) -> anyhow::Result<()> {
        let log = self.data.join("postgres.log");
        let log = log.to_string_lossy().into_owned();
        let options = self.options();
        self.pg("pg_ctl", &["-w", "-l", &log, "-o", &options, "start", "-D"])
            .await
            .context("starting PostgreSQL")
    }

    /// An immediate restart: PostgreSQL stops without a checkpoint (as on a crash) and recovers.
    pub async fn restart_immediately(&self) -> anyhow::Result<()> {
        self.pg("pg_ctl", &["-w", "-m", "immediate", "stop", "-D"])
            .await?;
        self.start().await
    }

    /// Stops the cluster (fast shutdown: sessions are cut, then a checkpoint).
    pub async fn stop(&self) {
        let _ = self.pg("pg_ctl", &["-w", "-m", "fast", "stop", "-D"]).await;
    }
}

/// `pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`.
async fn find_pg_bin() -> anyhow::Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output().await {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && dir.join("initdb").is_file() {
            return Ok(dir);
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found
        .pop()
        .context("no PostgreSQL programs (initdb, pg_ctl) found: install PostgreSQL or give --pg-bin")
}

async fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .await
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

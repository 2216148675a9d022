//! The world a chaos run breaks: a fresh database (an SQLite file, or a PostgreSQL cluster of the
//! run's own that it may restart), certificates, the parties and operators, and `lefi serve`
//! child processes on fixed ports so that clients find a restarted server where it was.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use crate::cli::ChaosBackend;
use crate::client::ClientPem;
use crate::dev::certs::{DevCa, Issued};
use crate::domain::OperatorRole;
use crate::domain::clock::Clock;
use crate::domain::onboarding::NewOperator;
use crate::store::Store;
use crate::store::parties::{Actor, NewConnectedParty};

/// The database of one run.
pub enum Database {
    Sqlite { url: String },
    Postgres(Cluster),
}

impl Database {
    /// Creates the run's database under `dir`.
    pub async fn create(backend: ChaosBackend, dir: &Path, pg_bin: Option<&Path>) -> anyhow::Result<Self> {
        match backend {
            ChaosBackend::Sqlite => Ok(Database::Sqlite {
                url: format!("sqlite://{}", dir.join("lefi.db").display()),
            }),
            ChaosBackend::Postgres => Ok(Database::Postgres(Cluster::create(dir, pg_bin).await?)),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Database::Sqlite { url } => url.clone(),
            Database::Postgres(c) => c.url(),
        }
    }

    /// Stops what the run started (a PostgreSQL cluster).
    pub async fn stop(&self) {
        if let Database::Postgres(c) = self {
            c.stop().await;
        }
    }
}

/// A PostgreSQL cluster of the run's own: initdb'd in the run's directory, listening only on a
/// Unix socket there. PostgreSQL refuses to run as root; run as root, the cluster runs as the
/// `postgres` user (through `runuser`).
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl Cluster {
    async fn create(dir: &Path, pg_bin: Option<&Path>) -> anyhow::Result<Self> {
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
            port: free_port()?,
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

    async fn start(&self) -> anyhow::Result<()> {
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

    async fn stop(&self) {
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

/// A port free right now on the loopback interface, below Linux's ephemeral range (32768 and up):
/// a run restarts its servers on the same ports, and a port from the ephemeral range may meanwhile
/// be handed to any other process's outgoing or port-0 socket (a run once failed so).
pub fn free_port() -> anyhow::Result<u16> {
    use rand::{Rng, SeedableRng};
    // Not from the run's seed: ports are not part of what a replay reproduces.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(nanos) ^ u64::from(std::process::id()));
    for _ in 0..200 {
        let port = rng.random_range(20_000..32_000);
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener.local_addr()?.port());
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The run's certificates, written to `dir/certs`.
pub struct Certs {
    pub dir: PathBuf,
    ca: DevCa,
    pub party: ClientPem,
    pub ingest: ClientPem,
    party_issued: Issued,
    ingest_issued: Issued,
}

impl Certs {
    pub fn generate(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("certs");
        std::fs::create_dir_all(&dir)?;
        let ca = DevCa::generate("chaos CA")?;
        let server = ca.issue_server(&["localhost", "127.0.0.1"])?;
        let party_issued = ca.issue_client("Chaos Försäkring AB", None)?;
        let ingest_issued = ca.issue_client("Chaos Inläsning", None)?;
        std::fs::write(dir.join("ca.pem"), ca.cert_pem())?;
        std::fs::write(dir.join("server.pem"), &server.cert_pem)?;
        std::fs::write(dir.join("server.key"), &server.key_pem)?;
        let pem = |issued: &Issued| issued.client_pem(&ca);
        Ok(Certs {
            party: pem(&party_issued),
            ingest: pem(&ingest_issued),
            dir,
            ca,
            party_issued,
            ingest_issued,
        })
    }

    /// Registers `count` more connected insurers (`Soak 0 AB`, …), each with a certificate of its
    /// own; returns their client PEM files in that order.
    pub async fn seed_parties(&self, url: &str, count: usize) -> anyhow::Result<Vec<ClientPem>> {
        let store = Store::connect(url, 2).await?;
        let clock = Clock::system();
        let mut pems = Vec::with_capacity(count);
        for i in 0..count {
            let name = format!("Soak {i} AB");
            let issued = self.ca.issue_client(&name, None)?;
            let (facts, _) = crate::identity::certificate_facts(issued.cert_pem.as_bytes())?;
            // 5566NNNNN and its check digit: a valid organisationsnummer per party.
            let nine = format!("5566{i:05}");
            let digits: Vec<u8> = nine.bytes().map(|b| b - b'0').collect();
            let org = format!(
                "{}-{}{}",
                &nine[..6],
                &nine[6..],
                crate::domain::personnummer::luhn_check_digit(&digits)
            );
            let party = insurer(&org, &name, format!("SOAK-{i}"), facts)?;
            store
                .onboard_connected(&Actor::system("lefi chaos"), &party, clock.now_micros())
                .await?;
            pems.push(issued.client_pem(&self.ca));
        }
        store.close().await;
        Ok(pems)
    }

    /// Registers the ingest operator and the party (connected, basis INS_COORDINATION, SJP) in a
    /// fresh database, migrating it.
    pub async fn seed(&self, url: &str) -> anyhow::Result<()> {
        let store = Store::connect(url, 2).await?;
        let clock = Clock::system();
        let (ingest, _) = crate::identity::certificate_facts(self.ingest_issued.cert_pem.as_bytes())?;
        store
            .upsert_operator(
                &NewOperator {
                    fingerprint: &ingest.fingerprint,
                    name: "Chaos Inläsning",
                    role: OperatorRole::Ingest,
                },
                clock.now_micros(),
            )
            .await?;
        let (party, _) = crate::identity::certificate_facts(self.party_issued.cert_pem.as_bytes())?;
        let party = insurer("556677-8899", "Chaos Försäkring AB", "CHAOS".to_string(), party)?;
        store
            .onboard_connected(&Actor::system("lefi chaos"), &party, clock.now_micros())
            .await?;
        store.close().await;
        Ok(())
    }
}

/// A connected insurer with the basis INS_COORDINATION for SJP, holding `certificate`.
fn insurer(
    org: &str,
    name: &str,
    agreement_id: String,
    certificate: crate::store::parties::NewCertificate,
) -> anyhow::Result<NewConnectedParty> {
    crate::dev::parties::run_insurer(
        "Chaos",
        org,
        name,
        agreement_id,
        &["SJP".to_string()],
        certificate,
    )
}

/// One `lefi serve` child process, on ports it keeps across restarts.
pub struct Server {
    pub party_port: u16,
    pub admin_port: u16,
    child: Option<Child>,
    log: PathBuf,
    database_url: String,
    certs: PathBuf,
}

impl Server {
    pub fn new(index: usize, dir: &Path, database_url: &str, certs: &Certs) -> anyhow::Result<Self> {
        Ok(Server {
            party_port: free_port()?,
            admin_port: free_port()?,
            child: None,
            log: dir.join(format!("server-{index}.log")),
            database_url: database_url.to_string(),
            certs: certs.dir.clone(),
        })
    }

    pub fn party_addr(&self) -> String {
        format!("https://localhost:{}", self.party_port)
    }

    pub fn admin_addr(&self) -> String {
        format!("https://localhost:{}", self.admin_port)
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts the process and waits until its party listener accepts connections.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let certs = &self.certs;
        let child = Command::new(std::env::current_exe()?)
            .args(["--log", "warn", "--log-format", "json", "serve"])
            .args(["--database-url", &self.database_url])
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.party_port))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", self.admin_port))
            .arg("--tls-cert")
            .arg(certs.join("server.pem"))
            .arg("--tls-key")
            .arg(certs.join("server.key"))
            .arg("--client-ca")
            .arg(certs.join("ca.pem"))
            .arg("--operator-ca")
            .arg(certs.join("ca.pem"))
            .args(["--heartbeat-interval", "1s", "--shutdown-grace", "3s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting `lefi serve`")?;
        self.child = Some(child);
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.party_port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if let Some(child) = &mut self.child {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "`lefi serve` exited at start ({status}); see {}",
                        self.log.display()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "`lefi serve` did not listen within 15 s; see {}",
            self.log.display()
        )
    }

    /// kill -9.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, then waits for the drain (kill -9 after 15 s).
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}

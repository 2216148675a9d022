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
use crate::dev::free_port;
use crate::dev::pg_cluster::Cluster;
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
            // A soak opens a thousand streams for one party; the limits are not what it tests.
            .args(["--party-max-streams", "100000", "--party-rate-limit", "100000"])
            .args(["--party-rate-burst", "100000"])
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

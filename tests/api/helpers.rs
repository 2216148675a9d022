//! Starting a real lefi server for one test: fresh certificates, a fresh database (SQLite file in a
//! temporary directory, or a fresh PostgreSQL database), both listeners on 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use lefi::app::App;
use lefi::client::ClientPem;
use lefi::config::{DatabaseSettings, Settings, TlsMaterial};
use lefi::dev::certs::{DevCa, Issued};
use lefi::domain::clock::Clock;
use lefi::domain::{OperatorRole, OrgNumber, PartyKind};
use lefi::identity::certificate_facts;
use lefi::store::{NewConnectedParty, Store};
use time::macros::date;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates one `#[tokio::test]` per backend for each listed `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

/// Certificates made for one test run.
pub struct TestCerts {
    pub ca: DevCa,
    pub server: Issued,
    pub operator: Issued,
    pub auditor: Issued,
    /// An operator with the `ingest` role (feeds the register).
    pub ingest: Issued,
    pub insurer: Issued,
    pub municipality: Issued,
    /// Signed by the party CA but registered for nobody.
    pub stranger: Issued,
    /// A client certificate from a CA the server does not trust.
    pub foreign: Issued,
}

impl TestCerts {
    pub fn generate() -> Self {
        let ca = DevCa::generate("test CA").unwrap();
        let foreign_ca = DevCa::generate("foreign CA").unwrap();
        Self {
            server: ca.issue_server(&["localhost", "127.0.0.1"]).unwrap(),
            operator: ca.issue_client("Test Operatör", None).unwrap(),
            auditor: ca.issue_client("Test Revisor", None).unwrap(),
            ingest: ca.issue_client("Test Inläsning", None).unwrap(),
            insurer: ca.issue_client("Testförsäkring AB", Some("556677-8899")).unwrap(),
            municipality: ca.issue_client("Testkommun", Some("222000-0000")).unwrap(),
            stranger: ca.issue_client("Okänd AB", None).unwrap(),
            foreign: foreign_ca.issue_client("Främling AB", None).unwrap(),
            ca,
        }
    }

    pub fn tls_material(&self, crls: Vec<Vec<u8>>) -> TlsMaterial {
        TlsMaterial {
            server_cert_pem: self.server.cert_pem.clone().into_bytes(),
            server_key_pem: self.server.key_pem.clone().into_bytes(),
            party_ca_pem: self.ca.cert_pem().as_bytes().to_vec(),
            operator_ca_pem: self.ca.cert_pem().as_bytes().to_vec(),
            crls,
        }
    }
}

/// A running server for one test.
pub struct TestApp {
    pub backend: Backend,
    /// The database URL the server uses (tests reach past the API with it only to tamper).
    pub db_url: String,
    pub party_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub store: Store,
    pub clock: Clock,
    pub certs: TestCerts,
    pub insurer_id: String,
    pub municipality_id: String,
    /// What the server was started with, to start it again (restart) or a second replica.
    pub settings: Settings,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _dir: tempfile::TempDir,
    pg: Option<PgTestDb>,
}

/// Options for [`TestApp::spawn_with`].
#[derive(Default)]
pub struct SpawnOptions {
    /// Certificates to revoke through a CRL (choose from the test's certificates).
    pub crl_revokes: Vec<fn(&TestCerts) -> &Issued>,
    pub heartbeat_interval: Option<Duration>,
    pub shutdown_grace: Option<Duration>,
}

static PG_SKIP_NOTICE: Once = Once::new();

impl TestApp {
    /// Starts a server with two connected demo parties (an insurer and a municipality), an
    /// operator, an auditor and an ingest operator. `None` when the backend is PostgreSQL and none is configured.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, SpawnOptions::default()).await
    }

    pub async fn spawn_with(backend: Backend, options: SpawnOptions) -> Option<TestApp> {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("lefi.db").display()), None),
            Backend::Postgres => {
                let base = postgres_base_url()?;
                let db = PgTestDb::create(&base).await;
                (db.url.clone(), Some(db))
            }
        };
        let certs = TestCerts::generate();
        let crls = if options.crl_revokes.is_empty() {
            Vec::new()
        } else {
            let serials: Vec<Vec<u8>> = options
                .crl_revokes
                .iter()
                .map(|f| f(&certs).serial.clone())
                .collect();
            vec![certs.ca.crl_pem(&serials).unwrap().into_bytes()]
        };
        let settings = Settings {
            party_addr: "127.0.0.1:0".parse().unwrap(),
            admin_addr: "127.0.0.1:0".parse().unwrap(),
            database: DatabaseSettings {
                url: url.clone(),
                max_connections: 4,
            },
            tls: certs.tls_material(crls),
            heartbeat_interval: options.heartbeat_interval.unwrap_or(Duration::from_secs(15)),
            shutdown_grace: options.shutdown_grace.unwrap_or(Duration::from_secs(10)),
            max_consent_days: 1096,
        };
        let clock = Clock::system();
        let store = Store::connect(&url, 4).await.unwrap();
        let now = clock.now_micros();
        for (issued, name, role) in [
            (&certs.operator, "Test Operatör", OperatorRole::Operator),
            (&certs.auditor, "Test Revisor", OperatorRole::Auditor),
            (&certs.ingest, "Test Inläsning", OperatorRole::Ingest),
        ] {
            let (facts, _) = certificate_facts(issued.cert_pem.as_bytes()).unwrap();
            store
                .upsert_operator(&facts.fingerprint, name, role, now)
                .await
                .unwrap();
        }
        let insurer_id = register_party(
            &store,
            &certs.insurer,
            "556677-8899",
            "Testförsäkring AB",
            PartyKind::Insurer,
            &["INS_COORDINATION", "INS_RISK_ASSESSMENT"],
            now,
        )
        .await;
        let municipality_id = register_party(
            &store,
            &certs.municipality,
            "222000-0000",
            "Testkommun",
            PartyKind::MunicipalAuthority,
            &["AUTH_SOCIAL_SERVICES"],
            now,
        )
        .await;

        let app = App::build_with_store(settings.clone(), store.clone(), clock.clone())
            .await
            .unwrap();
        let party_addr = app.party_addr().unwrap();
        let admin_addr = app.admin_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until(shutdown.clone()));
        Some(TestApp {
            backend,
            db_url: url.clone(),
            party_addr,
            admin_addr,
            store,
            clock,
            certs,
            insurer_id,
            municipality_id,
            settings,
            shutdown,
            task: Some(task),
            _dir: dir,
            pg,
        })
    }

    fn pem(&self, who: &Issued) -> ClientPem {
        ClientPem {
            cert: who.cert_pem.clone().into_bytes(),
            key: who.key_pem.clone().into_bytes(),
            ca: self.certs.ca.cert_pem().as_bytes().to_vec(),
        }
    }

    /// An mTLS channel to the party API presenting `who`'s certificate.
    pub async fn party_channel(&self, who: &Issued) -> Channel {
        lefi::client::connect(
            &format!("https://localhost:{}", self.party_addr.port()),
            &self.pem(who),
            None,
        )
        .await
        .unwrap()
    }

    /// An mTLS channel to the admin API presenting `who`'s certificate.
    pub async fn admin_channel(&self, who: &Issued) -> Channel {
        lefi::client::connect(
            &format!("https://localhost:{}", self.admin_addr.port()),
            &self.pem(who),
            None,
        )
        .await
        .unwrap()
    }

    /// A lazily connecting channel (for tests that expect the handshake to fail).
    pub fn lazy_channel(&self, addr: SocketAddr, pem: &ClientPem) -> Channel {
        lefi::client::endpoint(&format!("https://localhost:{}", addr.port()), pem, None)
            .unwrap()
            .connect_lazy()
    }

    /// Client PEM files for `who`, trusting the test CA.
    pub fn client_pem(&self, who: &Issued) -> ClientPem {
        self.pem(who)
    }

    /// Runs one SQL statement directly against the server's database, bypassing lefi (to simulate
    /// tampering or a broken database).
    pub async fn execute_sql(&self, sql: &str) {
        use sqlx::Connection;
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&self.db_url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.db_url).await.unwrap();
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }

    /// Stops the server and starts a new one on the same database and certificates (new ports), as
    /// after a deploy. The test's clock carries over.
    pub async fn restart(mut self) -> TestApp {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server did not stop within 30 s")
                .expect("server task panicked")
                .expect("server returned an error");
        }
        let store = Store::connect(&self.db_url, 4).await.unwrap();
        let app = App::build_with_store(self.settings.clone(), store.clone(), self.clock.clone())
            .await
            .unwrap();
        self.party_addr = app.party_addr().unwrap();
        self.admin_addr = app.admin_addr().unwrap();
        self.store = store;
        self.shutdown = CancellationToken::new();
        self.task = Some(tokio::spawn(app.run_until(self.shutdown.clone())));
        self
    }

    /// Starts a second server process-equivalent (its own store pool, listeners and clock) on the
    /// same database: a replica. Returns its party and admin addresses and a stop handle.
    pub async fn start_replica(
        &self,
    ) -> (
        SocketAddr,
        SocketAddr,
        CancellationToken,
        JoinHandle<anyhow::Result<()>>,
    ) {
        let store = Store::connect(&self.db_url, 4).await.unwrap();
        let app = App::build_with_store(self.settings.clone(), store, self.clock.clone())
            .await
            .unwrap();
        let addrs = (app.party_addr().unwrap(), app.admin_addr().unwrap());
        let token = CancellationToken::new();
        let task = tokio::spawn(app.run_until(token.clone()));
        (addrs.0, addrs.1, token, task)
    }

    /// An mTLS channel to another listener (a replica) presenting `who`'s certificate.
    pub async fn channel_to(&self, addr: SocketAddr, who: &Issued) -> Channel {
        lefi::client::connect(
            &format!("https://localhost:{}", addr.port()),
            &self.pem(who),
            None,
        )
        .await
        .unwrap()
    }

    /// Begins shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the server and waits for it to finish; the server must stop cleanly.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server did not stop within 30 s")
                .expect("server task panicked")
                .expect("server returned an error");
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

async fn register_party(
    store: &Store,
    cert: &Issued,
    org: &str,
    name: &str,
    kind: PartyKind,
    bases: &[&str],
    now: i64,
) -> String {
    let (facts, _) = certificate_facts(cert.cert_pem.as_bytes()).unwrap();
    store
        .insert_connected_party(
            &NewConnectedParty {
                org_number: OrgNumber::parse(org).unwrap(),
                name: name.to_string(),
                kind,
                contact_name: "Test Kontakt".to_string(),
                contact_email: "test@example.invalid".to_string(),
                agreement_id: format!("T-{org}"),
                valid_from: date!(2024 - 01 - 01),
                notice_period_days: Some(90),
                basis_codes: bases.iter().map(|b| b.to_string()).collect(),
                benefit_codes: vec!["SJP".to_string(), "FP".to_string()],
                certificates: vec![facts],
            },
            now,
        )
        .await
        .unwrap()
}

/// The PostgreSQL server tests use, or `None` (with one notice) when none is configured.
fn postgres_base_url() -> Option<String> {
    match std::env::var("LEFI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("LEFI_TEST_REQUIRE_POSTGRES").is_ok_and(|v| !v.is_empty()) {
                panic!("LEFI_TEST_REQUIRE_POSTGRES is set but LEFI_TEST_POSTGRES_URL is not");
            }
            PG_SKIP_NOTICE.call_once(|| {
                eprintln!(
                    "NOTE: the PostgreSQL half of the suite was skipped: set LEFI_TEST_POSTGRES_URL \
                     (see README, or run .ci/run) to run it"
                );
            });
            None
        }
    }
}

/// A PostgreSQL database created for one test and dropped after it.
struct PgTestDb {
    base: String,
    name: String,
    url: String,
}

impl PgTestDb {
    async fn create(base: &str) -> Self {
        let name = format!("lefi_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(base)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        Self {
            base: base.to_string(),
            url: replace_database(base, &name),
            name,
        }
    }

    async fn drop_db(self) {
        if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&self.base).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

/// `postgres://u@h/db?x` → `postgres://u@h/NAME?x`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    lefi::grpc::status::reason_of(status).unwrap_or_else(|| panic!("status without ErrorInfo: {status:?}"))
}

//! Starting a real lefi server for one test: fresh certificates, a fresh database (SQLite file in a
//! temporary directory, or a fresh PostgreSQL database), both listeners on 127.0.0.1:0. And the
//! steps every test takes the same way: onboarding a party through the admin API.

use std::net::SocketAddr;
use std::sync::Once;
use std::time::Duration;

use lefi::app::App;
use lefi::client::ClientPem;
use lefi::config::{DatabaseSettings, Settings, TlsMaterial};
use lefi::dev::certs::{DevCa, Issued};
use lefi::domain::clock::Clock;
use lefi::domain::onboarding::NewOperator;
use lefi::domain::{OperatorRole, OrgNumber, PartyKind};
use lefi::grpc::pb::lefi::admin::v1::{self as admin_pb, Party};
use lefi::grpc::pb::lefi::v1 as pb;
use lefi::identity::certificate_facts;
use lefi::store::Store;
use lefi::store::parties::{Actor, Idempotency, NewApplication, NewConnectedParty, PartyChange};
use time::macros::date;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Status;
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
                #[cfg_attr(lefi_no_test_postgres, ignore = "LEFI_TEST_POSTGRES_URL was not set when the tests were built (see README)")]
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
            crl_files: Vec::new(),
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
    /// Where the server serves `GET /metrics` (plain HTTP).
    pub metrics_addr: SocketAddr,
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
    /// Give the server its CRL as a file (`party.crl` in the test's directory, empty without
    /// `crl_revokes`), which the test may rewrite and have the server reload.
    pub crl_file: bool,
    pub heartbeat_interval: Option<Duration>,
    pub shutdown_grace: Option<Duration>,
    /// `serve --max-message-size`, in bytes.
    pub max_message_bytes: Option<usize>,
    /// An existing, empty PostgreSQL database of the test's own (a cluster it stops and starts)
    /// instead of a fresh one on the shared test server.
    pub database_url: Option<String>,
    /// Each party's limits (streams, request rate); without them, limits the suite never reaches.
    pub party_limits: Option<lefi::domain::limits::PartyLimits>,
    /// Start the server without its scheduled purge of statistics extracts (for tests of the
    /// on-demand purge, which it would race).
    pub no_scheduled_purge: bool,
}

static TEST_LOG: Once = Once::new();

/// With `TEST_LOG` set to anything but the empty string, the servers' logs go to the test output
/// (captured per test like `println!`), filtered by `RUST_LOG` or else at `info`; without it the
/// suite stays quiet and installs no subscriber.
fn init_test_log() {
    TEST_LOG.call_once(|| {
        if std::env::var_os("TEST_LOG").is_none_or(|v| v.is_empty()) {
            return;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber already installed (none is, today) would keep the logs: fine.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

impl TestApp {
    /// Starts a server with two connected demo parties (an insurer and a municipality), an
    /// operator, an auditor and an ingest operator. Always `Some` (a PostgreSQL test without a
    /// database panics; built without one, such tests are ignored and do not get here).
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, SpawnOptions::default()).await
    }

    pub async fn spawn_with(backend: Backend, options: SpawnOptions) -> Option<TestApp> {
        init_test_log();
        let dir = tempfile::tempdir().unwrap();
        let (url, pg) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("lefi.db").display()), None),
            Backend::Postgres if options.database_url.is_some() => (options.database_url.clone()?, None),
            Backend::Postgres => {
                let base = postgres_base_url()?;
                let db = PgTestDb::create(&base).await;
                (db.url.clone(), Some(db))
            }
        };
        let certs = TestCerts::generate();
        let serials: Vec<Vec<u8>> = options
            .crl_revokes
            .iter()
            .map(|f| f(&certs).serial.clone())
            .collect();
        let mut tls = certs.tls_material(Vec::new());
        if !serials.is_empty() || options.crl_file {
            let crl = certs.ca.crl_pem(&serials).unwrap().into_bytes();
            if options.crl_file {
                let path = dir.path().join("party.crl");
                std::fs::write(&path, &crl).unwrap();
                tls.crl_files.push(path);
            }
            tls.crls.push(crl);
        }
        let settings = Settings {
            party_addr: "127.0.0.1:0".parse().unwrap(),
            admin_addr: "127.0.0.1:0".parse().unwrap(),
            metrics_addr: Some("127.0.0.1:0".parse().unwrap()),
            database: DatabaseSettings {
                url: url.clone(),
                max_connections: 4,
            },
            tls,
            heartbeat_interval: options.heartbeat_interval.unwrap_or(Duration::from_secs(15)),
            shutdown_grace: options.shutdown_grace.unwrap_or(Duration::from_secs(10)),
            history_retention: lefi::config::DEFAULT_HISTORY_RETENTION,
            max_consent_days: 1096,
            max_message_bytes: options
                .max_message_bytes
                .unwrap_or(lefi::config::DEFAULT_MAX_MESSAGE_BYTES),
            party_limits: options.party_limits.unwrap_or(lefi::domain::limits::PartyLimits {
                max_streams: 1000,
                requests_per_second: 100_000,
                burst: 100_000,
            }),
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
                .upsert_operator(
                    &NewOperator {
                        fingerprint: &facts.fingerprint,
                        name,
                        role,
                    },
                    now,
                )
                .await
                .unwrap();
        }
        let insurer = connected_party(
            &certs.insurer,
            "556677-8899",
            "Testförsäkring AB",
            PartyKind::Insurer,
            &["INS_COORDINATION", "INS_RISK_ASSESSMENT"],
        );
        let insurer_id = onboard(&store, &insurer, now).await;
        let municipality = connected_party(
            &certs.municipality,
            "222000-0000",
            "Testkommun",
            PartyKind::MunicipalAuthority,
            &["AUTH_SOCIAL_SERVICES"],
        );
        let municipality_id = onboard(&store, &municipality, now).await;

        let app = App::build_with_store(settings.clone(), store.clone(), clock.clone())
            .await
            .unwrap();
        let app = if options.no_scheduled_purge {
            app.without_scheduled_purge()
        } else {
            app
        };
        let party_addr = app.party_addr().unwrap();
        let admin_addr = app.admin_addr().unwrap();
        let metrics_addr = app.metrics_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until(shutdown.clone()));
        Some(TestApp {
            backend,
            db_url: url.clone(),
            party_addr,
            admin_addr,
            metrics_addr,
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
        self.channel_to(self.party_addr, who).await
    }

    /// An mTLS channel to the admin API presenting `who`'s certificate.
    pub async fn admin_channel(&self, who: &Issued) -> Channel {
        self.channel_to(self.admin_addr, who).await
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
        match self.backend {
            Backend::Sqlite => execute_raw::<sqlx::SqliteConnection>(&self.db_url, sql).await,
            Backend::Postgres => execute_raw::<sqlx::PgConnection>(&self.db_url, sql).await,
        }
    }

    /// The one integer a query such as `SELECT COUNT(*) FROM …` answers, on a connection of its own.
    pub async fn query_number(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => number_raw::<sqlx::SqliteConnection>(&self.db_url, sql).await,
            Backend::Postgres => number_raw::<sqlx::PgConnection>(&self.db_url, sql).await,
        }
    }

    /// Stops the server and starts a new one on the same database and certificates (new ports), as
    /// after a deploy. The test's clock carries over.
    pub async fn restart(self) -> TestApp {
        self.restart_after(async |_| {}).await
    }

    /// Stops the server, closes the test's own connections, runs `between` on the stopped app
    /// (e.g. copying or replacing its database), then starts a new server as
    /// [`TestApp::restart`] does.
    pub async fn restart_after(mut self, between: impl AsyncFnOnce(&TestApp)) -> TestApp {
        self.stop_server().await;
        self.store.close().await;
        between(&self).await;
        let store = Store::connect(&self.db_url, 4).await.unwrap();
        let app = App::build_with_store(self.settings.clone(), store.clone(), self.clock.clone())
            .await
            .unwrap();
        self.party_addr = app.party_addr().unwrap();
        self.admin_addr = app.admin_addr().unwrap();
        self.metrics_addr = app.metrics_addr().unwrap();
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
        self.start_replica_on(&self.db_url).await
    }

    /// A replica reaching the same database at `db_url` (e.g. through a [`crate::db_proxy`]).
    pub async fn start_replica_on(
        &self,
        db_url: &str,
    ) -> (
        SocketAddr,
        SocketAddr,
        CancellationToken,
        JoinHandle<anyhow::Result<()>>,
    ) {
        let store = Store::connect(db_url, 4).await.unwrap();
        let app = App::build_with_store(self.settings.clone(), store, self.clock.clone())
            .await
            .unwrap();
        let addrs = (app.party_addr().unwrap(), app.admin_addr().unwrap());
        let token = CancellationToken::new();
        let task = tokio::spawn(app.run_until(token.clone()));
        (addrs.0, addrs.1, token, task)
    }

    /// An mTLS channel to the listener at `addr` (this server's or a replica's) presenting `who`'s
    /// certificate.
    pub async fn channel_to(&self, addr: SocketAddr, who: &Issued) -> Channel {
        lefi::client::connect(
            &format!("https://localhost:{}", addr.port()),
            &self.pem(who),
            None,
        )
        .await
        .unwrap()
    }

    /// Shuts the server down and waits for it; it must stop cleanly within 30 s.
    async fn stop_server(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("server did not stop within 30 s")
                .expect("server task panicked")
                .expect("server returned an error");
        }
    }

    /// Begins shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Stops the server and waits for it to finish; the server must stop cleanly.
    pub async fn stop(mut self) {
        self.stop_server().await;
        if let Some(pg) = self.pg.take() {
            pg.drop_db().await;
        }
    }
}

/// A copy of a test's database, taken by [`TestApp::backup`].
pub enum Backup {
    /// A copy of the SQLite file.
    File(tempfile::TempPath),
    /// A PostgreSQL database made from the test's as a template.
    Database(String),
}

impl TestApp {
    /// Copies the database as it is now: SQLite online (`VACUUM INTO`), PostgreSQL as a template
    /// copy while the server is stopped (a cold backup; the server restarts on new ports).
    pub async fn backup(self) -> (TestApp, Backup) {
        match self.backend {
            Backend::Sqlite => {
                let path = tempfile::NamedTempFile::new().unwrap().into_temp_path();
                std::fs::remove_file(&path).unwrap();
                self.execute_sql(&format!("VACUUM INTO '{}'", path.display()))
                    .await;
                (self, Backup::File(path))
            }
            Backend::Postgres => {
                let copy = format!("lefi_b_{}", uuid::Uuid::now_v7().simple());
                let app = self
                    .restart_after(async |app| {
                        let name = app.pg.as_ref().unwrap().name.clone();
                        pg_admin(app, &format!("CREATE DATABASE {copy} TEMPLATE {name}")).await;
                    })
                    .await;
                (app, Backup::Database(copy))
            }
        }
    }

    /// Puts the database back to `backup` (the server stopped meanwhile) and restarts on it.
    pub async fn restore(self, backup: Backup) -> TestApp {
        self.restart_after(async |app| match backup {
            Backup::File(copy) => {
                let live = app.db_url.strip_prefix("sqlite://").unwrap().to_string();
                for suffix in ["-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{live}{suffix}"));
                }
                std::fs::copy(&copy, &live).unwrap();
            }
            Backup::Database(copy) => {
                let name = app.pg.as_ref().unwrap().name.clone();
                pg_admin(app, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
                pg_admin(app, &format!("ALTER DATABASE {copy} RENAME TO {name}")).await;
            }
        })
        .await
    }
}

/// One statement on the PostgreSQL server's maintenance database (CREATE/DROP DATABASE).
async fn pg_admin(app: &TestApp, sql: &str) {
    let base = &app.pg.as_ref().unwrap().base;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(base)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// One SQL statement on a connection of its own, whichever the backend.
async fn execute_raw<C>(url: &str, sql: &str)
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut conn = C::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// [`TestApp::query_number`] on either backend.
async fn number_raw<C>(url: &str, sql: &str) -> i64
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    i64: for<'r> sqlx::Decode<'r, C::Database> + sqlx::Type<C::Database>,
    <C::Database as sqlx::Database>::Arguments: sqlx::IntoArguments<C::Database>,
    usize: sqlx::ColumnIndex<<C::Database as sqlx::Database>::Row>,
{
    let mut conn = C::connect(url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

impl Drop for TestApp {
    /// A test that panicked never reached `stop()`: end the server here (without waiting for a
    /// clean shutdown) before the fields drop, the PostgreSQL database last of all.
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A party to take through the store's lifecycle to CONNECTED in one go ([`onboard`]), holding
/// `cert`: an agreement valid from 2024-01-01 (for an insurer with a 90-day notice period)
/// granting `bases` and the benefit types SJP and FP. A test that needs another agreement changes
/// fields with `..`.
pub fn connected_party(
    cert: &Issued,
    org: &str,
    name: &str,
    kind: PartyKind,
    bases: &[&str],
) -> NewConnectedParty {
    let (facts, _) = certificate_facts(cert.cert_pem.as_bytes()).unwrap();
    let application = NewApplication {
        org_number: OrgNumber::parse(org).unwrap(),
        name: name.to_string(),
        kind,
        contact_name: "Test Kontakt".to_string(),
        contact_email: "test@example.invalid".to_string(),
        basis_codes: strings(bases),
        benefit_codes: strings(&["SJP", "FP"]),
    };
    NewConnectedParty::granting_application(
        application,
        format!("T-{org}"),
        date!(2024 - 01 - 01),
        vec![facts],
    )
}

/// Onboards `party` through the store's lifecycle (as the server's own actor) and returns its id.
pub async fn onboard(store: &Store, party: &NewConnectedParty, now: i64) -> String {
    store
        .onboard_connected(&Actor::system("test setup"), party, now)
        .await
        .unwrap()
}

impl TestApp {
    /// Makes one lifecycle change as the test's own actor, past the admin API (for tests about
    /// what such a change does elsewhere).
    pub async fn change_party(&self, change: PartyChange<'_>) {
        let key = uuid::Uuid::new_v4().to_string();
        let respond = |_: &lefi::store::parties::PartyRecord| Vec::new();
        let idem = Idempotency {
            key: &key,
            request_hash: &key,
            respond: &respond,
        };
        self.store
            .change_party(&Actor::system("test"), &idem, change, self.clock.now_micros())
            .await
            .unwrap();
    }

    /// Revokes `who`'s certificate of `party_id` from now on.
    pub async fn revoke_certificate(&self, party_id: &str, who: &Issued) {
        let (facts, _) = certificate_facts(who.cert_pem.as_bytes()).unwrap();
        self.change_party(PartyChange::RevokeCertificate {
            party_id,
            fingerprint: &facts.fingerprint,
            reason: "test",
        })
        .await;
    }

    /// Schedules the termination of the test party `party_id` (one of the two `spawn` made) to
    /// take effect on `effective`, overriding any notice period.
    pub async fn schedule_termination(&self, party_id: &str, effective: time::Date) {
        let (org, name) = if party_id == self.insurer_id {
            ("556677-8899", "Testförsäkring AB")
        } else {
            ("222000-0000", "Testkommun")
        };
        let notice = lefi::domain::lifecycle::TerminationNotice {
            org_number: OrgNumber::parse(org).unwrap(),
            organisation_name: name.to_string(),
            effective_date: effective,
            received_on: self.clock.today(),
            override_reason: (party_id == self.insurer_id).then(|| "test".to_string()),
        };
        self.change_party(PartyChange::ScheduleTermination {
            party_id,
            notice: &notice,
        })
        .await;
    }
}

impl TestApp {
    /// Every disclosure-log entry about the person (12-digit form), oldest first.
    pub async fn disclosures_about(&self, person: &str) -> Vec<lefi::domain::disclosure::DisclosureEntry> {
        let person = lefi::domain::Personnummer::from_storage(person).unwrap();
        let query = lefi::store::disclosure_log::DisclosureQuery::Person(&person);
        self.store
            .disclosures(query, (i64::MIN, i64::MAX), 0, 100_000)
            .await
            .unwrap()
    }

    /// Every disclosure-log entry of the party, oldest first.
    pub async fn disclosures_by(&self, party_id: &str) -> Vec<lefi::domain::disclosure::DisclosureEntry> {
        let query = lefi::store::disclosure_log::DisclosureQuery::Party {
            party_id,
            decision: None,
        };
        self.store
            .disclosures(query, (i64::MIN, i64::MAX), 0, 100_000)
            .await
            .unwrap()
    }
}

/// The PostgreSQL server tests use, or `None` (with one notice) when none is configured.
fn postgres_base_url() -> Option<String> {
    match std::env::var("LEFI_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        // Built without it, the PostgreSQL tests are ignored and never get here unless asked to
        // run anyway (`--include-ignored`): then they have nothing to run against.
        _ if cfg!(lefi_no_test_postgres) => {
            panic!("this PostgreSQL test needs LEFI_TEST_POSTGRES_URL (see README)")
        }
        _ => panic!(
            "the tests were built with LEFI_TEST_POSTGRES_URL set but run without it: set it again, or \
             rebuild without it to have the PostgreSQL tests reported as ignored"
        ),
    }
}

/// A PostgreSQL database created for one test and dropped after it: by [`TestApp::stop`] when the
/// test passes, by `Drop` when it fails (a panic unwinds through the test's `TestApp`).
struct PgTestDb {
    base: String,
    name: String,
    url: String,
    /// Set once `drop_db` has run, so `Drop` has nothing left to do.
    dropped: bool,
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
            dropped: false,
        }
    }

    async fn drop_db(mut self) {
        self.dropped = true;
        if let Err(e) = drop_database(&self.base, &self.name).await {
            eprintln!("WARNING: could not drop the test database {}: {e}", self.name);
        }
    }
}

impl Drop for PgTestDb {
    /// Drops the database of a test that did not reach `stop()` (it panicked). `Drop` cannot await
    /// and may run on a thread inside the test's runtime, where starting another runtime panics;
    /// so the work runs on a thread of its own with a small runtime, and this thread waits for it.
    /// `WITH (FORCE)` ends the server's open connections, so nothing here waits on the test's
    /// runtime. Nothing in here may panic: a panic while unwinding aborts the test binary.
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let (base, name) = (self.base.clone(), self.name.clone());
        let spawned = std::thread::Builder::new()
            .name("drop-test-db".to_string())
            .spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    match tokio::time::timeout(DROP_TIMEOUT, drop_database(&base, &name)).await {
                        Ok(dropped) => dropped.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {DROP_TIMEOUT:?}")),
                    }
                })
            });
        let outcome = match spawned {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| Err("the dropping thread panicked".to_string())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = outcome {
            eprintln!("WARNING: could not drop the test database {}: {e}", self.name);
        }
    }
}

/// How long a failed test waits for its database to be dropped before it gives up (and leaks it).
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

/// `DROP DATABASE … WITH (FORCE)` through the base URL: ends the connections still open on it.
async fn drop_database(base: &str, name: &str) -> Result<(), sqlx::Error> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(base).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await?;
    Ok(())
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

/// An organisation that onboards through the admin API.
#[derive(Debug, Clone, Copy)]
pub struct Applicant {
    pub org: &'static str,
    pub name: &'static str,
    pub kind: pb::PartyKind,
}

impl Applicant {
    /// A client certificate for the organisation, issued by the test CA (not yet registered).
    pub fn certificate(&self, app: &TestApp) -> Issued {
        app.certs.ca.issue_client(self.name, Some(self.org)).unwrap()
    }
}

/// A fresh idempotency key.
pub fn idempotency_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub type PartyAdminClient = admin_pb::party_admin_service_client::PartyAdminServiceClient<Channel>;

/// The party admin API as one operator calls it. The onboarding steps (apply, send the agreement,
/// record a signature, add a certificate) each send a fresh idempotency key and return the
/// server's answer for the test to check; `*_request` with `*_with` is for a test that sends its
/// own request (a retry, a reused key, a field changed). [`onboard`](Self::onboard) takes all the
/// steps for a test that only needs the party at the end. The calls only the admin tests make are
/// in `admin.rs`.
#[derive(Clone)]
pub struct PartyAdmin(pub PartyAdminClient);

impl PartyAdmin {
    /// A client presenting `who`'s certificate.
    pub async fn new(app: &TestApp, who: &Issued) -> PartyAdmin {
        PartyAdmin(PartyAdminClient::new(app.admin_channel(who).await))
    }

    pub fn apply_request(applicant: &Applicant, bases: &[&str]) -> admin_pb::ApplyRequest {
        admin_pb::ApplyRequest {
            idempotency_key: idempotency_key(),
            org_number: applicant.org.to_string(),
            name: applicant.name.to_string(),
            kind: applicant.kind as i32,
            contact_name: "Anna Andersson".to_string(),
            contact_email: "anna@exempel.se".to_string(),
            requested_basis_codes: strings(bases),
            requested_benefit_type_codes: strings(&["SJP", "FP"]),
        }
    }

    pub async fn apply(&self, applicant: &Applicant, bases: &[&str]) -> Result<Party, Status> {
        self.apply_with(Self::apply_request(applicant, bases)).await
    }

    pub async fn apply_with(&self, request: admin_pb::ApplyRequest) -> Result<Party, Status> {
        let response = self.0.clone().apply(request).await?.into_inner();
        Ok(response.party.expect("party"))
    }

    /// An agreement granting `bases` and sickness benefit (SJP), valid from 2025-01-01.
    pub fn agreement_request(
        party_id: &str,
        bases: &[&str],
        notice_period_days: u32,
    ) -> admin_pb::SendAgreementRequest {
        admin_pb::SendAgreementRequest {
            idempotency_key: idempotency_key(),
            party_id: party_id.to_string(),
            agreement_id: format!("FK-{}", &idempotency_key()[..13]),
            granted_basis_codes: strings(bases),
            granted_benefit_type_codes: strings(&["SJP"]),
            valid_from: "2025-01-01".to_string(),
            notice_period_days,
        }
    }

    pub async fn send_agreement(
        &self,
        party_id: &str,
        bases: &[&str],
        notice_period_days: u32,
    ) -> Result<Party, Status> {
        self.send_agreement_with(Self::agreement_request(party_id, bases, notice_period_days))
            .await
    }

    pub async fn send_agreement_with(
        &self,
        request: admin_pb::SendAgreementRequest,
    ) -> Result<Party, Status> {
        let response = self.0.clone().send_agreement(request).await?.into_inner();
        Ok(response.party.expect("party"))
    }

    pub fn sign_request(
        party_id: &str,
        signer: admin_pb::Signer,
        by: &str,
    ) -> admin_pb::RecordSignatureRequest {
        admin_pb::RecordSignatureRequest {
            idempotency_key: idempotency_key(),
            party_id: party_id.to_string(),
            signer: signer as i32,
            signed_by: by.to_string(),
            signed_on: "2025-01-02".to_string(),
        }
    }

    pub async fn sign(&self, party_id: &str, signer: admin_pb::Signer, by: &str) -> Result<Party, Status> {
        self.sign_with(Self::sign_request(party_id, signer, by)).await
    }

    pub async fn sign_with(&self, request: admin_pb::RecordSignatureRequest) -> Result<Party, Status> {
        let response = self.0.clone().record_signature(request).await?.into_inner();
        Ok(response.party.expect("party"))
    }

    pub async fn add_certificate(
        &self,
        party_id: &str,
        pem: &str,
    ) -> Result<admin_pb::AddCertificateResponse, Status> {
        self.0
            .clone()
            .add_certificate(admin_pb::AddCertificateRequest {
                idempotency_key: idempotency_key(),
                party_id: party_id.to_string(),
                certificate_pem: pem.to_string(),
            })
            .await
            .map(|r| r.into_inner())
    }

    pub async fn get(&self, party_id: &str) -> Result<Party, Status> {
        self.get_by(admin_pb::get_party_request::Key::PartyId(party_id.to_string()))
            .await
    }

    pub async fn get_by_org(&self, org: &str) -> Result<Party, Status> {
        self.get_by(admin_pb::get_party_request::Key::OrgNumber(org.to_string()))
            .await
    }

    async fn get_by(&self, key: admin_pb::get_party_request::Key) -> Result<Party, Status> {
        let request = admin_pb::GetPartyRequest { key: Some(key) };
        self.0.clone().get_party(request).await.map(|r| r.into_inner())
    }

    /// Takes a new party through onboarding as far as `until` (APPLIED, AGREEMENT_SENT or
    /// SIGNED), granting the bases it applied for; every step must succeed. An insurer's avtal
    /// has a 90-day notice period, an authority's överenskommelse none.
    pub async fn onboard_until(&self, applicant: &Applicant, bases: &[&str], until: pb::PartyState) -> Party {
        let mut party = self.apply(applicant, bases).await.unwrap();
        if until == pb::PartyState::Applied {
            return party;
        }
        let notice = if applicant.kind == pb::PartyKind::Insurer {
            90
        } else {
            0
        };
        party = self.send_agreement(&party.party_id, bases, notice).await.unwrap();
        if until == pb::PartyState::AgreementSent {
            return party;
        }
        assert_eq!(
            until,
            pb::PartyState::Signed,
            "onboard_until stops at SIGNED at the latest"
        );
        self.sign(&party.party_id, admin_pb::Signer::Party, "Anna Andersson")
            .await
            .unwrap();
        self.sign(&party.party_id, admin_pb::Signer::Agency, "Bo Berg")
            .await
            .unwrap()
    }

    /// Takes a new party from application to CONNECTED with a newly issued certificate.
    pub async fn onboard(&self, app: &TestApp, applicant: &Applicant, bases: &[&str]) -> (Party, Issued) {
        let signed = self.onboard_until(applicant, bases, pb::PartyState::Signed).await;
        let cert = applicant.certificate(app);
        let connected = self
            .add_certificate(&signed.party_id, &cert.cert_pem)
            .await
            .unwrap();
        assert_eq!(connected.party_state, pb::PartyState::Connected as i32);
        (self.get(&signed.party_id).await.unwrap(), cert)
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

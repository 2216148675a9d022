//! Building and running the server: storage, TLS, the two listeners and their services.
//!
//! [`App::build`] does everything that can fail at start (database, migrations, certificates,
//! binding the ports) and reports the real addresses, so tests can ask for port 0.
//! [`App::run_until`] serves until a cancellation token fires, then drains:
//! 1. health turns NOT_SERVING, and the listeners stop accepting;
//! 2. open delivery streams end with UNAVAILABLE / `SERVER_SHUTTING_DOWN` (clients resume);
//! 3. unary calls in flight finish;
//! 4. whatever is still running after the grace period is cut off.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::Settings;
use crate::domain::clock::Clock;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;
use crate::identity::{Audience, IdentityLayer, Resolver};
use crate::store::Store;

/// What every service shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The clock rules are judged by (tests move it).
    pub clock: Clock,
    /// Default idle heartbeat interval on delivery streams.
    pub heartbeat_interval: Duration,
    /// Cancelled when the server begins to shut down; long-lived streams watch it.
    pub shutdown: CancellationToken,
    /// Bumped whenever a party's delivery history or its right to receive may have changed (an
    /// ingest commit, a new subscription, a notice, a revoked certificate, a termination). Open
    /// streams wait on it instead of polling. With PostgreSQL, other replicas' changes arrive
    /// through LISTEN/NOTIFY and bump it too.
    pub changes: tokio::sync::watch::Sender<u64>,
    /// The longest consent period, in days.
    pub max_consent_days: u32,
    /// How the party listener judges client certificates (party CA, CRLs); the admin API checks a
    /// certificate with it before registering it for a party.
    pub party_certificates: Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl AppState {
    /// Wakes every open stream in this process and, on PostgreSQL, in every other replica (see
    /// [`AppState::changes`]).
    pub fn notify_history(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
        if self.store.kind() == crate::store::BackendKind::Postgres {
            let store = self.store.clone();
            tokio::spawn(async move {
                if let Err(e) = store.announce_change().await {
                    tracing::warn!(error = %e, "could not announce a change to other replicas");
                }
            });
        }
    }
}

/// A built server, bound to its ports, not yet serving.
pub struct App {
    state: AppState,
    party_listener: TcpListener,
    admin_listener: TcpListener,
    party_tls: Arc<rustls::ServerConfig>,
    admin_tls: Arc<rustls::ServerConfig>,
    shutdown_grace: Duration,
}

impl App {
    /// Connects to the database (applying migrations), prepares TLS and binds both listeners.
    pub async fn build(settings: Settings, clock: Clock) -> anyhow::Result<App> {
        let store = Store::connect(&settings.database.url, settings.database.max_connections)
            .await
            .context("opening the database")?;
        Self::build_with_store(settings, store, clock).await
    }

    /// Like [`App::build`] with an already connected and migrated store.
    pub async fn build_with_store(settings: Settings, store: Store, clock: Clock) -> anyhow::Result<App> {
        let tls = &settings.tls;
        let party_tls = crate::tls::server_config(
            &tls.server_cert_pem,
            &tls.server_key_pem,
            "party CA (--client-ca)",
            &tls.party_ca_pem,
            &tls.crls,
        )
        .context("preparing TLS for the party API")?;
        let admin_tls = crate::tls::server_config(
            &tls.server_cert_pem,
            &tls.server_key_pem,
            "operator CA (--operator-ca)",
            &tls.operator_ca_pem,
            &[],
        )
        .context("preparing TLS for the admin API")?;
        let party_certificates =
            crate::tls::client_verifier("party CA (--client-ca)", &tls.party_ca_pem, &tls.crls)
                .context("preparing the party certificate verifier")?;
        let party_listener = TcpListener::bind(settings.party_addr)
            .await
            .with_context(|| format!("binding the party API to {}", settings.party_addr))?;
        let admin_listener = TcpListener::bind(settings.admin_addr)
            .await
            .with_context(|| format!("binding the admin API to {}", settings.admin_addr))?;
        Ok(App {
            state: AppState {
                store,
                clock,
                heartbeat_interval: settings.heartbeat_interval,
                shutdown: CancellationToken::new(),
                max_consent_days: settings.max_consent_days,
                changes: tokio::sync::watch::Sender::new(0),
                party_certificates,
            },
            party_listener,
            admin_listener,
            party_tls,
            admin_tls,
            shutdown_grace: settings.shutdown_grace,
        })
    }

    /// The party API's bound address.
    pub fn party_addr(&self) -> std::io::Result<SocketAddr> {
        self.party_listener.local_addr()
    }

    /// The admin API's bound address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin_listener.local_addr()
    }

    /// The store the server uses.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves both APIs until `shutdown` is cancelled, then drains (see the module docs).
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            state,
            party_listener,
            admin_listener,
            party_tls,
            admin_tls,
            shutdown_grace,
        } = self;
        let AppState { store, clock, .. } = state.clone();
        // Streams watch the state's token; it follows the caller's.
        let state_token = state.shutdown.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            state_token.cancel();
        });

        // Other replicas' changes wake this process's streams.
        let changes = state.changes.clone();
        let watcher = store
            .watch_changes(move || changes.send_modify(|n| *n = n.wrapping_add(1)))
            .await
            .context("listening for changes from other replicas")?;

        let (party_health_reporter, party_health) = tonic_health::server::health_reporter();
        let (admin_health_reporter, admin_health) = tonic_health::server::health_reporter();
        party_health_reporter
            .set_serving::<pb::party_service_server::PartyServiceServer<crate::grpc::party::PartyApi>>()
            .await;
        party_health_reporter
            .set_serving::<pb::delivery_service_server::DeliveryServiceServer<crate::grpc::delivery::DeliveryApi>>()
            .await;
        admin_health_reporter
            .set_serving::<admin_pb::operator_service_server::OperatorServiceServer<crate::grpc::admin::OperatorApi>>()
            .await;
        // The empty service name answers "is the server as a whole serving".
        party_health_reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        admin_health_reporter
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;

        let mut party_routes = tonic::service::RoutesBuilder::default();
        party_routes
            .add_service(party_health)
            .add_service(reflection_v1(PARTY_SERVICES)?)
            .add_service(reflection_v1alpha(PARTY_SERVICES)?);
        crate::grpc::party::add_services(&mut party_routes, &state);
        let mut admin_routes = tonic::service::RoutesBuilder::default();
        admin_routes
            .add_service(admin_health)
            .add_service(reflection_v1(ADMIN_SERVICES)?)
            .add_service(reflection_v1alpha(ADMIN_SERVICES)?);
        crate::grpc::admin::add_services(&mut admin_routes, &state);

        let party_server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .trace_fn(|req| {
                tracing::info_span!(
                    "rpc",
                    api = "party",
                    method = %req.uri().path(),
                    request_id = tracing::field::Empty,
                    party = tracing::field::Empty
                )
            })
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(IdentityLayer::new(Resolver::new(
                store.clone(),
                clock.clone(),
                Audience::Party,
            )))
            .add_routes(party_routes.routes())
            .serve_with_incoming_shutdown(
                crate::tls::incoming(party_listener, party_tls, shutdown.clone()),
                shutdown.clone().cancelled_owned(),
            );
        let admin_server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            .trace_fn(|req| {
                tracing::info_span!(
                    "rpc",
                    api = "admin",
                    method = %req.uri().path(),
                    request_id = tracing::field::Empty,
                    operator = tracing::field::Empty
                )
            })
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(IdentityLayer::new(Resolver::new(
                store.clone(),
                clock.clone(),
                Audience::Admin,
            )))
            .add_routes(admin_routes.routes())
            .serve_with_incoming_shutdown(
                crate::tls::incoming(admin_listener, admin_tls, shutdown.clone()),
                shutdown.clone().cancelled_owned(),
            );
        let mut party_task = tokio::spawn(party_server);
        let mut admin_task = tokio::spawn(admin_server);

        // Serve until asked to stop (or until a server fails on its own).
        let failed = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            res = &mut party_task => Some(("party API", res)),
            res = &mut admin_task => Some(("admin API", res)),
        };
        if let Some((what, res)) = failed {
            shutdown.cancel();
            party_task.abort();
            admin_task.abort();
            store.close().await;
            flatten(what, res)?;
            anyhow::bail!("the {what} stopped unexpectedly");
        }
        party_health_reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        admin_health_reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        party_health_reporter
            .set_not_serving::<pb::party_service_server::PartyServiceServer<crate::grpc::party::PartyApi>>()
            .await;

        let drained = tokio::time::timeout(shutdown_grace, async {
            let party = (&mut party_task).await;
            let admin = (&mut admin_task).await;
            (party, admin)
        })
        .await;
        let result = match drained {
            Ok((party, admin)) => flatten("party API", party).and(flatten("admin API", admin)),
            Err(_) => {
                tracing::warn!(grace = ?shutdown_grace, "open calls did not finish within the grace period; cutting them off");
                party_task.abort();
                admin_task.abort();
                Ok(())
            }
        };
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        store.close().await;
        tracing::info!("server stopped");
        result
    }
}

fn flatten(
    what: &str,
    res: Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>,
) -> anyhow::Result<()> {
    res.with_context(|| format!("the {what} task failed"))?
        .with_context(|| format!("the {what} failed"))
}

/// The services reflection advertises on the party listener.
const PARTY_SERVICES: &[&str] = &[
    "lefi.v1.PartyService",
    "lefi.v1.SubscriptionService",
    "lefi.v1.DeliveryService",
    "lefi.v1.QueryService",
    "lefi.v1.ConsentService",
    "lefi.v1.CaseService",
    "grpc.health.v1.Health",
];

/// The services reflection advertises on the admin listener.
const ADMIN_SERVICES: &[&str] = &[
    "lefi.admin.v1.OperatorService",
    "lefi.admin.v1.PartyAdminService",
    "lefi.admin.v1.RegisterAdminService",
    "lefi.admin.v1.AuditAdminService",
    "grpc.health.v1.Health",
];

fn reflection_builder(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::grpc::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for name in services {
        builder = builder.with_service_name(*name);
    }
    builder
}

fn reflection_v1(
    services: &[&str],
) -> anyhow::Result<
    tonic_reflection::server::v1::ServerReflectionServer<impl tonic_reflection::server::v1::ServerReflection>,
> {
    reflection_builder(services)
        .build_v1()
        .context("building the reflection service")
}

fn reflection_v1alpha(
    services: &[&str],
) -> anyhow::Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
> {
    reflection_builder(services)
        .build_v1alpha()
        .context("building the reflection service")
}

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
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::Settings;
use crate::domain::clock::Clock;
use crate::grpc::identity_layer::IdentityLayer;
use crate::grpc::rate_limit::{RateLimitLayer, RateLimits};
use crate::grpc::{admin_api, party_api};
use crate::identity::{Audience, Resolver};
use crate::metrics::Metrics;
use crate::revocation::PartyVerifier;
use crate::state::AppState;
use crate::store::Store;

/// A built server, bound to its ports, not yet serving.
pub struct App {
    state: AppState,
    party: Listener,
    admin: Listener,
    /// The plain-HTTP Prometheus listener, when `--metrics-listen` is given.
    metrics: Option<TcpListener>,
    shutdown_grace: Duration,
    /// Whether statistics extracts past their retention are deleted on a schedule (always, but
    /// for tests of the on-demand purge, which the schedule would race).
    scheduled_purge: bool,
}

/// One API's listener and its TLS configuration.
struct Listener {
    audience: Audience,
    tcp: TcpListener,
    tls: Arc<rustls::ServerConfig>,
}

impl Audience {
    /// The `api` label of its metrics.
    fn label(self) -> &'static str {
        match self {
            Audience::Party => "party",
            Audience::Admin => "admin",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Audience::Party => "party API",
            Audience::Admin => "admin API",
        }
    }

    /// The gRPC services of this API, for health and reflection.
    fn services(self) -> &'static [&'static str] {
        match self {
            Audience::Party => party_api::SERVICE_NAMES,
            Audience::Admin => admin_api::SERVICE_NAMES,
        }
    }
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
        let party_certificates = PartyVerifier::new(
            "party CA (--client-ca)",
            &tls.party_ca_pem,
            &tls.crls,
            tls.crl_files.clone(),
        )
        .context("preparing the party certificate verifier")?;
        let party_tls = crate::tls::server_config_with(
            &tls.server_cert_pem,
            &tls.server_key_pem,
            Arc::clone(&party_certificates) as Arc<dyn rustls::server::danger::ClientCertVerifier>,
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
        let party = Listener::bind(Audience::Party, settings.party_addr, party_tls).await?;
        let admin = Listener::bind(Audience::Admin, settings.admin_addr, admin_tls).await?;
        let metrics = match settings.metrics_addr {
            Some(addr) => Some(crate::metrics::bind(addr).await?),
            None => None,
        };
        let counted = Arc::new(Metrics::new());
        counted.crls_in_force(&party_certificates.crls());
        Ok(App {
            state: AppState {
                store,
                clock,
                heartbeat_interval: settings.heartbeat_interval,
                history_retention: settings.history_retention,
                shutdown: CancellationToken::new(),
                max_consent_days: settings.max_consent_days,
                max_message_bytes: settings.max_message_bytes,
                wakeups: Default::default(),
                party_certificates,
                metrics: counted,
                party_limits: settings.party_limits,
                rates: Arc::new(RateLimits::new(settings.party_limits)),
                streams: Arc::default(),
                dev_mode: false,
            },
            party,
            admin,
            metrics,
            shutdown_grace: settings.shutdown_grace,
            scheduled_purge: true,
        })
    }

    /// Leaves out the scheduled deletion of statistics extracts past their retention, so that
    /// only PurgeExpired deletes them: for tests of the on-demand purge and its dry run, which the
    /// schedule (at start and whenever the day changes) would race.
    pub fn without_scheduled_purge(mut self) -> Self {
        self.scheduled_purge = false;
        self
    }

    /// Marks the server as a development server (`serve --dev`): the sandbox's development-only
    /// admin RPCs answer, and `GetServerInfo` reports it.
    pub fn in_dev_mode(mut self) -> Self {
        self.state.dev_mode = true;
        self
    }

    /// The party API's bound address.
    pub fn party_addr(&self) -> std::io::Result<SocketAddr> {
        self.party.tcp.local_addr()
    }

    /// The admin API's bound address.
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.tcp.local_addr()
    }

    /// The metrics listener's bound address, when there is one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The store the server uses.
    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Serves both APIs until `shutdown` is cancelled, then drains (see the module docs).
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let App {
            state,
            party,
            admin,
            metrics,
            shutdown_grace,
            scheduled_purge,
        } = self;
        let metrics_task = metrics.map(|listener| {
            tokio::spawn(crate::metrics::serve(
                listener,
                Arc::clone(&state.metrics),
                (state.store.clone(), state.clock.clone()),
                shutdown.clone(),
            ))
        });
        // Streams watch the state's token; it follows the caller's.
        let state_token = state.shutdown.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            state_token.cancel();
        });

        // Other replicas' changes wake this process's streams: those of the parties named, or all
        // (its own announcements come back too, and are passed over).
        let watcher = state
            .store
            .watch_changes(state.wakeups.clone())
            .await
            .context("listening for changes from other replicas")?;

        // Delivery history past its retention is pruned on a schedule (cursors older expire).
        let pruner = tokio::spawn(crate::grpc::party_api::delivery::prune_history_on_schedule(
            state.clone(),
            shutdown.clone(),
        ));

        // Subscriptions past the end date their party gave end by themselves.
        let end_dates = tokio::spawn(
            crate::grpc::party_api::delivery::end_subscriptions_past_their_end_date(
                state.clone(),
                shutdown.clone(),
            ),
        );

        // Rules judged by date (a termination taking effect, a consent past its last day) change
        // at midnight with no commit to announce them: every stream and waiting pull looks again.
        let new_day = tokio::spawn({
            let state = state.clone();
            let clock = state.clock.clone();
            let what = "waking streams for the new day";
            crate::state::on_each_new_day(clock, shutdown.clone(), what, move |_| {
                state.notify_history();
                std::future::ready(Ok::<(), std::convert::Infallible>(()))
            })
        });

        // SIGHUP reloads the party listener's CRLs.
        let hangups = tokio::spawn(reload_crls_on_sighup(state.clone(), shutdown.clone()));

        // Statistics extracts past their retention are deleted on a schedule.
        let retention = scheduled_purge.then(|| {
            tokio::spawn(crate::extract::delete_expired_on_schedule(
                state.clone(),
                shutdown.clone(),
            ))
        });

        let (party_health, mut party_task) = party.serve(&state, &shutdown).await?;
        let (admin_health, mut admin_task) = admin.serve(&state, &shutdown).await?;

        // Health follows the database: NOT_SERVING while it does not answer (liveness stays up).
        let readiness = tokio::spawn(watch_readiness(
            state.clone(),
            [
                (party_health.clone(), Audience::Party),
                (admin_health.clone(), Audience::Admin),
            ],
            shutdown.clone(),
        ));

        // Serve until asked to stop (or until a server fails on its own).
        let failed = tokio::select! {
            biased;
            () = shutdown.cancelled() => None,
            res = &mut party_task => Some((Audience::Party, res)),
            res = &mut admin_task => Some((Audience::Admin, res)),
        };
        readiness.abort();
        if let Some((audience, res)) = failed {
            shutdown.cancel();
            party_task.abort();
            admin_task.abort();
            close_store(&state, shutdown_grace).await;
            flatten(audience, res)?;
            anyhow::bail!("the {} stopped unexpectedly", audience.name());
        }
        for (health, audience) in [(&party_health, Audience::Party), (&admin_health, Audience::Admin)] {
            set_health(health, audience, ServingStatus::NotServing).await;
        }

        let drained = tokio::time::timeout(shutdown_grace, async {
            let party = (&mut party_task).await;
            let admin = (&mut admin_task).await;
            (party, admin)
        })
        .await;
        let result = match drained {
            Ok((party, admin)) => flatten(Audience::Party, party).and(flatten(Audience::Admin, admin)),
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
        if let Some(retention) = retention {
            retention.abort();
        }
        pruner.abort();
        end_dates.abort();
        new_day.abort();
        hangups.abort();
        if let Some(task) = metrics_task {
            task.abort();
        }
        close_store(&state, shutdown_grace).await;
        tracing::info!("server stopped");
        result
    }
}

/// Closes the database pools, waiting at most `grace` for connections still in use: a task that
/// holds one past shutdown must not keep the process from exiting (what it had not committed is
/// rolled back by the database, as after a crash).
async fn close_store(state: &AppState, grace: Duration) {
    if tokio::time::timeout(grace, state.store.close()).await.is_err() {
        tracing::warn!(
            ?grace,
            "database connections were still in use after the grace period; stopping without them"
        );
    }
}

type ServeResult = Result<Result<(), tonic::transport::Error>, tokio::task::JoinError>;

impl Listener {
    async fn bind(
        audience: Audience,
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> anyhow::Result<Self> {
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the {} to {addr}", audience.name()))?;
        Ok(Self { audience, tcp, tls })
    }

    /// Starts serving this listener's API (health, reflection, its services behind the request-id
    /// and identity layers) until `shutdown`; returns its health reporter and the serving task.
    async fn serve(
        self,
        state: &AppState,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<(HealthReporter, JoinHandle<Result<(), tonic::transport::Error>>)> {
        let Listener { audience, tcp, tls } = self;
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, audience, ServingStatus::Serving).await;
        health
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let mut routes = tonic::service::RoutesBuilder::default();
        routes
            .add_service(health_service)
            .add_service(
                reflection(audience)
                    .build_v1()
                    .context("building the reflection service")?,
            )
            .add_service(
                reflection(audience)
                    .build_v1alpha()
                    .context("building the reflection service")?,
            );
        match audience {
            Audience::Party => party_api::add_services(&mut routes, state),
            Audience::Admin => admin_api::add_services(&mut routes, state),
        }
        let resolver = match audience {
            Audience::Party => Resolver::new(state.store.clone(), state.clock.clone(), audience)
                .with_revocation(Arc::clone(&state.party_certificates)),
            Audience::Admin => Resolver::new(state.store.clone(), state.clock.clone(), audience),
        };
        let max_message_bytes = state.max_message_bytes;
        let server = Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(20)))
            // The identity layer records the caller: `party` on the party API, `operator` on the
            // admin API (a field never recorded is not shown).
            .trace_fn(move |req| {
                tracing::info_span!(
                    "rpc",
                    api = audience.label(),
                    method = %req.uri().path(),
                    request_id = tracing::field::Empty,
                    party = tracing::field::Empty,
                    operator = tracing::field::Empty
                )
            })
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(IdentityLayer::new(resolver))
            .layer(tower::util::MapResponseLayer::new(move |response| {
                crate::grpc::codec::oversize_refusal(response, max_message_bytes)
            }))
            .layer(crate::metrics::RpcLayer::new(
                audience.label(),
                Arc::clone(&state.metrics),
            ))
            .layer(RateLimitLayer::new(Arc::clone(&state.rates)))
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(
                crate::tls::incoming(tcp, tls, shutdown.clone(), {
                    let metrics = Arc::clone(&state.metrics);
                    let api = audience.label();
                    Arc::new(move |cause| metrics.handshake_failed(api, cause))
                }),
                shutdown.clone().cancelled_owned(),
            );
        Ok((health, tokio::spawn(server)))
    }
}

/// Reloads the CRLs on every SIGHUP until `shutdown` (on Unix; elsewhere, only the admin call).
async fn reload_crls_on_sighup(state: AppState, shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload CRLs with the admin call");
                return;
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    tracing::info!("SIGHUP: reloading the certificate revocation lists");
                    // A failure is logged and counted; the CRLs in force stay.
                    let _ = state.reload_crls();
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = state;
        shutdown.cancelled().await;
    }
}

/// The health service name that reports liveness: SERVING from start to exit, whatever the
/// database. The empty name and each API service report readiness.
pub const LIVENESS_SERVICE: &str = "liveness";

/// How often readiness asks the database, and how long an answer may take.
const READINESS_INTERVAL: Duration = Duration::from_secs(1);
const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

/// Keeps health (and `lefi_ready`) in step with the database: NOT_SERVING on both listeners while
/// it does not answer, SERVING again when it does. Load balancers and orchestrators stop sending
/// work to a replica that cannot do it; liveness stays SERVING, so nothing restarts a process
/// that will recover on its own.
async fn watch_readiness(
    state: AppState,
    listeners: [(HealthReporter, Audience); 2],
    shutdown: CancellationToken,
) {
    let mut ready = true;
    state.metrics.set_ready(ready);
    let mut ticks = tokio::time::interval(READINESS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let answered = match tokio::time::timeout(READINESS_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                if ready {
                    tracing::warn!(error = %e, "the database does not answer: not ready (health NOT_SERVING) until it does");
                }
                false
            }
            Err(_) => {
                if ready {
                    tracing::warn!(timeout = ?READINESS_TIMEOUT, "the database did not answer in time: not ready (health NOT_SERVING) until it does");
                }
                false
            }
        };
        if answered == ready {
            continue;
        }
        ready = answered;
        if ready {
            tracing::info!("the database answers again: ready (health SERVING)");
        }
        state.metrics.set_ready(ready);
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for (health, audience) in &listeners {
            set_health(health, *audience, status).await;
        }
    }
}

/// Sets the health of the server as a whole (the empty service name) and of each of the API's
/// services.
async fn set_health(health: &HealthReporter, audience: Audience, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in audience.services() {
        if !name.starts_with("grpc.") {
            health.set_service_status(*name, status).await;
        }
    }
}

fn flatten(audience: Audience, res: ServeResult) -> anyhow::Result<()> {
    let what = audience.name();
    res.with_context(|| format!("the {what} task failed"))?
        .with_context(|| format!("the {what} failed"))
}

/// Reflection for one API: its services and the health service.
fn reflection(audience: Audience) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::grpc::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    for name in audience.services() {
        builder = builder.with_service_name(*name);
    }
    builder
}

//! Prometheus metrics: what the server counts, and the plain-HTTP listener that serves them
//! (`--metrics-listen`; off unless given, `127.0.0.1:9464` with `--dev`).
//!
//! One [`Metrics`] per server, kept in its [`crate::state::AppState`] (no global registry, so
//! several servers in one process — the tests — count apart). Labels are bounded: API, method
//! (the fixed set of RPC paths), gRPC code and party id; never a person or anything a request
//! carries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::domain::clock::{Clock, Micros};
use crate::store::{Store, StoreError};
use tokio_util::sync::CancellationToken;

/// The content type of the Prometheus text format (version 1.0.0 of OpenMetrics).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    api: &'static str,
    method: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    api: &'static str,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    api: &'static str,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartyLabels {
    party: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandshakeLabels {
    api: &'static str,
    cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CrlLabels {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// A server's metrics.
pub struct Metrics {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    rpc_seconds: Family<MethodLabels, Histogram>,
    refusals: Family<RefusalLabels, Counter>,
    open_streams: Family<PartyLabels, Gauge>,
    records_delivered: Family<PartyLabels, Counter>,
    ingest_facts: Family<OutcomeLabels, Counter>,
    ingest_batch_seconds: Histogram,
    log_append_seconds: Histogram,
    head_sequence: Gauge,
    lag_sequences: Family<PartyLabels, Gauge>,
    lag_seconds: Family<PartyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    cursor_age_seconds: Family<PartyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pool_connections: Family<PoolLabels, Gauge>,
    handshakes_failed: Family<HandshakeLabels, Counter>,
    history_pruned: Counter,
    ready: Gauge,
    crl_reloads: Family<OutcomeLabels, Counter>,
    crl_number: Family<CrlLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    crl_next_update: Family<CrlLabels, Gauge>,
}

/// Latency buckets: 0.5 ms to about 16 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric registered, none counted yet; `lefi_build_info` set.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lefi");
        let rpcs = Family::<RpcLabels, Counter>::default();
        registry.register(
            "rpc_requests",
            "RPCs answered, by API, method and gRPC code (the code of the response head: a stream \
             that started counts as OK)",
            rpcs.clone(),
        );
        let rpc_seconds =
            Family::<MethodLabels, Histogram>::new_with_constructor(latency as fn() -> Histogram);
        registry.register(
            "rpc_duration_seconds",
            "Time from an RPC's request to its response head, by API and method",
            rpc_seconds.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "rpc_refusals",
            "RPCs refused, by API and the machine-readable reason of their google.rpc.ErrorInfo \
             (policy denials among them: BASIS_NOT_GRANTED, CONSENT_REQUIRED…)",
            refusals.clone(),
        );
        let open_streams = Family::<PartyLabels, Gauge>::default();
        registry.register(
            "delivery_open_streams",
            "Delivery streams open now, by party id",
            open_streams.clone(),
        );
        let records_delivered = Family::<PartyLabels, Counter>::default();
        registry.register(
            "delivery_records",
            "Records delivered on delivery streams (snapshots and changes), by party id",
            records_delivered.clone(),
        );
        let ingest_facts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "ingest_facts",
            "Facts ingested through the admin API, by outcome (accepted, unchanged, rejected)",
            ingest_facts.clone(),
        );
        let ingest_batch_seconds = latency();
        registry.register(
            "ingest_batch_commit_seconds",
            "Time to store and commit one ingest batch",
            ingest_batch_seconds.clone(),
        );
        let log_append_seconds = latency();
        registry.register(
            "disclosure_log_append_seconds",
            "Time to append entries to the disclosure log (one transaction)",
            log_append_seconds.clone(),
        );
        let head_sequence = Gauge::default();
        registry.register(
            "register_head_sequence",
            "The register's head sequence, read at scrape time",
            head_sequence.clone(),
        );
        let lag_sequences = Family::<PartyLabels, Gauge>::default();
        registry.register(
            "party_lag_sequences",
            "Register head minus the lowest position a party's consumers confirmed (CommitCursor), \
             by party id; parties that never confirmed are not listed",
            lag_sequences.clone(),
        );
        let lag_seconds = Family::<PartyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "party_lag_seconds",
            "How long ago the oldest change a party has not confirmed was committed (0 when none), by party id",
            lag_seconds.clone(),
        );
        let cursor_age_seconds = Family::<PartyLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "party_cursor_age_seconds",
            "Time since a party's least recent consumer confirmed its position, by party id",
            cursor_age_seconds.clone(),
        );
        let pool_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database connections by pool and state (in_use, idle), read at scrape time",
            pool_connections.clone(),
        );
        let handshakes_failed = Family::<HandshakeLabels, Counter>::default();
        registry.register(
            "tls_handshakes_failed",
            "TLS handshakes that failed, by API and cause (see tls::failure_cause); admission_refused: \
             closed at once because too many handshakes were running",
            handshakes_failed.clone(),
        );
        let history_pruned = Counter::default();
        registry.register(
            "delivery_history_pruned_events",
            "Delivery history events deleted past the retention (--history-retention)",
            history_pruned.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while the server is ready (its database answers; health SERVING), 0 while it is not",
            ready.clone(),
        );
        let crl_reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "crl_reloads",
            "Reloads of the party listener's CRLs (SIGHUP or ReloadCrls), by outcome (ok, failed: the \
             CRLs in force stayed)",
            crl_reloads.clone(),
        );
        let crl_number = Family::<CrlLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "crl_number",
            "The CRL number of each CRL in force, by issuer",
            crl_number.clone(),
        );
        let crl_next_update = Family::<CrlLabels, Gauge>::default();
        registry.register(
            "crl_next_update_timestamp_seconds",
            "When the next CRL of each issuer is due (nextUpdate), seconds since the epoch; alert \
             before it passes",
            crl_next_update.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The running build: always 1, its version as a label",
            build,
        );
        Self {
            registry,
            rpcs,
            rpc_seconds,
            refusals,
            open_streams,
            records_delivered,
            ingest_facts,
            ingest_batch_seconds,
            log_append_seconds,
            head_sequence,
            lag_sequences,
            lag_seconds,
            cursor_age_seconds,
            pool_connections,
            handshakes_failed,
            history_pruned,
            ready,
            crl_reloads,
            crl_number,
            crl_next_update,
        }
    }

    /// Counts one CRL reload.
    pub fn crl_reloaded(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.crl_reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Records the CRLs in force (at start and after each reload), replacing what was there.
    pub fn crls_in_force(&self, crls: &[crate::revocation::CrlInfo]) {
        self.crl_number.clear();
        self.crl_next_update.clear();
        for crl in crls {
            let labels = CrlLabels {
                issuer: crl.issuer.clone(),
            };
            if let Some(number) = crl.number.as_deref().and_then(|n| n.parse::<f64>().ok()) {
                self.crl_number.get_or_create(&labels).set(number);
            }
            if let Some(next) = crl.next_update {
                self.crl_next_update.get_or_create(&labels).set(next);
            }
        }
    }

    /// Records whether the server is ready (see `app::watch_readiness`).
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Counts history events the pruner deleted.
    pub fn history_pruned(&self, deleted: u64) {
        self.history_pruned.inc_by(deleted);
    }

    /// Counts one failed TLS handshake on `api`.
    pub fn handshake_failed(&self, api: &'static str, cause: &'static str) {
        self.handshakes_failed
            .get_or_create(&HandshakeLabels { api, cause })
            .inc();
    }

    /// Counts one committed ingest batch: its facts by outcome and the time it took.
    pub fn ingest_batch(&self, (accepted, unchanged, rejected): (u64, u64, u64), took: std::time::Duration) {
        for (outcome, n) in [
            ("accepted", accepted),
            ("unchanged", unchanged),
            ("rejected", rejected),
        ] {
            self.ingest_facts
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(n);
        }
        self.ingest_batch_seconds.observe(took.as_secs_f64());
    }

    /// Times one append to the disclosure log.
    pub fn log_appended(&self, took: std::time::Duration) {
        self.log_append_seconds.observe(took.as_secs_f64());
    }

    /// Reads what is sampled at scrape time: the head, each party's lag and cursor age, the pools.
    async fn sample(&self, store: &Store, now: Micros) -> Result<(), StoreError> {
        for (pool, in_use, idle) in store.pool_use() {
            self.pool_connections
                .get_or_create(&PoolLabels {
                    pool,
                    state: "in_use",
                })
                .set(i64::from(in_use));
            self.pool_connections
                .get_or_create(&PoolLabels { pool, state: "idle" })
                .set(i64::from(idle));
        }
        let head = store.head_seq().await?;
        self.head_sequence.set(i64::try_from(head).unwrap_or(i64::MAX));
        let seconds = |micros: Micros| (now - micros).max(0) as f64 / 1e6;
        for lag in store.party_lags().await? {
            let labels = PartyLabels { party: lag.party_id };
            let behind = head.saturating_sub(lag.confirmed);
            self.lag_sequences
                .get_or_create(&labels)
                .set(i64::try_from(behind).unwrap_or(i64::MAX));
            self.lag_seconds
                .get_or_create(&labels)
                .set(lag.oldest_unconfirmed_at.map_or(0.0, seconds));
            self.cursor_age_seconds
                .get_or_create(&labels)
                .set(seconds(lag.least_recent_commit_at));
        }
        Ok(())
    }

    /// Counts one RPC of `api` answered with `code` after `started`.
    pub fn rpc_answered(&self, api: &'static str, method: &str, code: tonic::Code, started: Instant) {
        let method = method.to_string();
        self.rpcs
            .get_or_create(&RpcLabels {
                api,
                method: method.clone(),
                code: code_name(code),
            })
            .inc();
        self.rpc_seconds
            .get_or_create(&MethodLabels { api, method })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts one RPC of `api` refused for `reason` (an ErrorInfo reason: lefi's own, bounded).
    fn refused(&self, api: &'static str, reason: &str) {
        self.refusals
            .get_or_create(&RefusalLabels {
                api,
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts an open delivery stream of `party_id` until the guard is dropped.
    pub fn stream_opened(self: &Arc<Self>, party_id: &str) -> OpenStream {
        let labels = PartyLabels {
            party: party_id.to_string(),
        };
        self.open_streams.get_or_create(&labels).inc();
        OpenStream {
            metrics: Arc::clone(self),
            labels,
        }
    }

    /// Everything in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// An open delivery stream, counted in `lefi_delivery_open_streams` while it lives.
#[derive(Debug)]
pub struct OpenStream {
    metrics: Arc<Metrics>,
    labels: PartyLabels,
}

impl OpenStream {
    /// Counts `n` records delivered on this stream.
    pub fn delivered(&self, n: u64) {
        if n > 0 {
            self.metrics
                .records_delivered
                .get_or_create(&self.labels)
                .inc_by(n);
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.metrics.open_streams.get_or_create(&self.labels).dec();
    }
}

/// The name of a gRPC code as the gRPC specification spells it (`OK`, `PERMISSION_DENIED`…).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The code of a gRPC response head: its `grpc-status` header when it has one (an error answered
/// at once), otherwise OK (the call went on to its body).
pub fn head_code<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(tonic::Code::Ok, tonic::Code::from_i32)
}

/// The ErrorInfo reason of a refusal answered in the response head (lefi sets one on every
/// refusal; see `grpc::status`).
fn head_reason<B>(response: &http::Response<B>) -> Option<String> {
    use tonic_types::StatusExt as _;
    let status = tonic::Status::from_header_map(response.headers())?;
    Some(status.get_details_error_info()?.reason)
}

/// Binds the metrics listener (so a busy port fails the start, with the others).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics listener to {addr}"))
}

/// Serves `GET /metrics` over plain HTTP/1.1 on `listener` until `shutdown`; what is sampled
/// (lag, pools) is read from `store` at each scrape.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    (store, clock): (Store, Clock),
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a metrics connection failed");
                    continue;
                }
            },
        };
        let (metrics, store, clock) = (Arc::clone(&metrics), store.clone(), clock.clone());
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let (metrics, store, clock) = (Arc::clone(&metrics), store.clone(), clock.clone());
            async move {
                let wanted = request.method() == hyper::Method::GET && request.uri().path() == "/metrics";
                if wanted && let Err(e) = metrics.sample(&store, clock.now_micros()).await {
                    // The counters are still worth serving; the sampled values keep their last reading.
                    tracing::warn!(error = %e, "reading the sampled metrics failed");
                }
                Ok::<_, std::convert::Infallible>(answer(&request, &metrics))
            }
        });
        tokio::spawn(async move {
            let connection =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a metrics connection ended with an error");
            }
        });
    }
}

fn answer<B>(request: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET, "/metrics") => (StatusCode::OK, CONTENT_TYPE, metrics.encode()),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "use GET /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "lefi serves its metrics at /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, value);
    }
    response
}

/// The tower layer that counts every RPC of one listener: method, code of the response head,
/// time to it. Paths of services the listener does not serve (answered UNIMPLEMENTED) count under
/// the method `unknown`, so a client cannot add labels.
#[derive(Debug, Clone)]
pub struct RpcLayer {
    api: &'static str,
    metrics: Arc<Metrics>,
}

impl RpcLayer {
    pub fn new(api: &'static str, metrics: Arc<Metrics>) -> Self {
        Self { api, metrics }
    }
}

impl<S> tower::Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RpcLayer`] wraps around a listener's routes.
#[derive(Debug, Clone)]
pub struct RpcService<S> {
    inner: S,
    layer: RpcLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for RpcService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let started = Instant::now();
        let RpcLayer { api, metrics } = self.layer.clone();
        let answered = self.inner.call(request);
        Box::pin(async move {
            let result = answered.await;
            if let Ok(response) = &result {
                let code = head_code(response);
                let method = if code == tonic::Code::Unimplemented {
                    "unknown"
                } else {
                    method.as_str()
                };
                metrics.rpc_answered(api, method, code, started);
                if code != tonic::Code::Ok
                    && let Some(reason) = head_reason(response)
                {
                    metrics.refused(api, &reason);
                }
            }
            result
        })
    }
}

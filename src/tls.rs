//! TLS for both listeners: rustls server configurations that require a client certificate, and
//! the accept loop that hands finished handshakes to tonic.
//!
//! tonic's own `ServerTlsConfig` cannot take certificate revocation lists, so the server runs its
//! own rustls acceptor and gives tonic a stream of `tokio_rustls` connections. tonic then exposes
//! the verified peer chain through `TlsConnectInfo` in every request's extensions, where
//! [`crate::identity`] reads it.
//!
//! Handshakes are admitted fairly (see [`incoming`]): the accept loop never waits for one, each
//! source may run a few at a time, and each has a short deadline, so a client that opens
//! connections and never finishes them cannot hold up anyone else's.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

/// Problems with certificates, keys or CRLs handed to the server.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: &'static str },
    #[error("{what}: {message}")]
    Pem { what: &'static str, message: String },
    #[error("{what}: {source}")]
    Rustls {
        what: &'static str,
        source: rustls::Error,
    },
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Parses every certificate in a PEM bundle.
pub fn parse_certs(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: "server key (--tls-key)",
        message: format!("{e}; expected a PEM private key (PKCS#8, SEC1 or PKCS#1)"),
    })
}

fn parse_crls(crls: &[Vec<u8>]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for crl in crls {
        out.extend(crl_ders(crl)?);
    }
    Ok(out)
}

/// The CRLs of one CRL file: PEM (one or more) or DER.
pub fn crl_ders(crl: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    if !crl.starts_with(b"-----") {
        return Ok(vec![CertificateRevocationListDer::from(crl.to_vec())]);
    }
    let ders = CertificateRevocationListDer::pem_slice_iter(crl)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "certificate revocation list (--crl)",
            message: e.to_string(),
        })?;
    if ders.is_empty() {
        return Err(TlsError::Pem {
            what: "certificate revocation list (--crl)",
            message: "no PEM X509 CRL found".to_string(),
        });
    }
    Ok(ders)
}

/// A rustls server configuration that requires a client certificate chaining to `client_ca_pem`
/// (and not revoked by any of `crls`), and speaks HTTP/2 only.
pub fn server_config(
    server_cert_pem: &[u8],
    server_key_pem: &[u8],
    client_ca_what: &'static str,
    client_ca_pem: &[u8],
    crls: &[Vec<u8>],
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier = client_verifier(client_ca_what, client_ca_pem, crls)?;
    server_config_with(server_cert_pem, server_key_pem, verifier)
}

/// A rustls server configuration that judges client certificates with `verifier` (the party
/// listener's reloadable one), and speaks HTTP/2 only.
pub fn server_config_with(
    server_cert_pem: &[u8],
    server_key_pem: &[u8],
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = parse_certs("server certificate (--tls-cert)", server_cert_pem)?;
    let key = parse_key(server_key_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "TLS protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "server certificate and key (--tls-cert, --tls-key)",
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The verifier a listener judges client certificates with: the chain must end at one of the CAs
/// in `client_ca_pem`, the certificate must be valid for TLS client authentication and not be
/// revoked by any of `crls`. The admin API uses the party listener's verifier to check a
/// certificate before registering it, so that what it registers is what the handshake accepts.
pub fn client_verifier(
    client_ca_what: &'static str,
    client_ca_pem: &[u8],
    crls: &[Vec<u8>],
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(client_ca_what, client_ca_pem)? {
        roots.add(cert).map_err(|source| TlsError::Rustls {
            what: client_ca_what,
            source,
        })?;
    }
    let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let crls = parse_crls(crls)?;
    if !crls.is_empty() {
        // A CRL covers the certificates of its own issuer; certificates from a CA without a
        // configured CRL are judged as if no CRL were configured.
        verifier = verifier
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    Ok(verifier.build()?)
}

/// How long a client gets to finish the TLS handshake once its connection is accepted. A real
/// client needs a few round trips (milliseconds on loopback, well under a second across the
/// country); a connection still mid-handshake after this long is closed, freeing its slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many handshakes from one source run at once (a source is an IPv4 address, or an
/// IPv6 /64, which one host usually holds whole). A connection over the limit is closed as soon
/// as it is accepted, so one client that opens connections and never finishes them holds 32
/// slots and no more. A well-behaved client opens one connection, or a few.
pub const MAX_HANDSHAKES_PER_SOURCE: usize = 32;
/// At most this many handshakes run at once in all; a connection over the limit is closed as soon
/// as it is accepted. It takes 32 sources flooding at once to reach it.
pub const MAX_HANDSHAKES: usize = 1024;
/// Refused connections are logged as they begin (the first after a quiet period) and then
/// summarised once per this period, not one line each.
const REFUSAL_REPORT_PERIOD: Duration = Duration::from_secs(10);

/// Accepts TCP connections on `listener`, runs each TLS handshake in its own task and yields
/// finished connections. Stops accepting when `shutdown` is cancelled or the consumer goes away.
///
/// Admission is fair: the loop never waits for a handshake; it admits a connection only while its
/// source has fewer than [`MAX_HANDSHAKES_PER_SOURCE`] and the listener fewer than
/// [`MAX_HANDSHAKES`] handshakes running, and closes it at once otherwise; every handshake ends
/// after [`HANDSHAKE_TIMEOUT`]. So a flood of stalled handshakes from one address does not delay a
/// client from another (`tests/api/tls_abuse.rs`: 1,000 stalled connections, and a client from
/// another address still connects and calls within 2 s).
///
/// Each failed handshake (and each connection closed by admission) is reported to `failed` with
/// its cause, for the metrics: see [`failure_cause`].
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
    failed: HandshakeFailed,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let admission = Admission::new(MAX_HANDSHAKES_PER_SOURCE, MAX_HANDSHAKES);
    let reporter = shutdown.child_token();
    report_refusals(Arc::clone(&admission), reporter.clone());
    tokio::spawn(async move {
        // The reporter stops with this loop, whichever way it ends.
        let _reporter = reporter.drop_guard();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                () = tx.closed() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(
                        error = %e,
                        "accepting a TCP connection failed; retrying shortly (if the process is out of \
                         file descriptors, raise its limit, e.g. LimitNOFILE in the systemd unit)"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            };
            let slot = match admission.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(refused) => {
                    drop(tcp);
                    failed("admission_refused");
                    if refused.first {
                        tracing::warn!(
                            %peer,
                            why = refused.limit.describe(),
                            advice = refused.limit.advice(),
                            "closed a TLS connection at once instead of starting its handshake; further \
                             ones are summarised every {REFUSAL_REPORT_PERIOD:?}"
                        );
                    } else {
                        tracing::debug!(%peer, why = refused.limit.describe(), "closed a TLS connection at once");
                    }
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            let shutdown = shutdown.clone();
            let failed = Arc::clone(&failed);
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp));
                let finished = tokio::select! {
                    // Nothing will serve the connection any more: just close it.
                    () = shutdown.cancelled() => return,
                    finished = handshake => finished,
                };
                // The slot is for the handshake only; a finished connection no longer counts.
                drop(slot);
                match finished {
                    Ok(Ok(stream)) => {
                        // The consumer is gone when shutdown has begun; the connection just closes.
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => {
                        failed(failure_cause(&e));
                        tracing::info!(%peer, error = %e, "TLS handshake refused");
                    }
                    Err(_) => {
                        failed("timeout");
                        tracing::info!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Told the cause of every handshake that failed (see [`incoming`]).
pub type HandshakeFailed = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Why a TLS handshake failed, as a bounded label: the client's certificate (`no_certificate`,
/// `unknown_issuer`, `revoked`, `expired`, `bad_certificate`), `incompatible` (versions, ciphers,
/// ALPN), `protocol` (not TLS, or broken messages), `alert` (the client gave up), `io` (the
/// connection dropped) or `other`.
pub fn failure_cause(error: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<Error>()) else {
        return "io";
    };
    match tls {
        Error::NoCertificatesPresented => "no_certificate",
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => "unknown_issuer",
        Error::InvalidCertificate(CertificateError::Revoked) => "revoked",
        Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "expired"
        }
        Error::InvalidCertificate(_) => "bad_certificate",
        Error::PeerIncompatible(_) | Error::NoApplicationProtocol => "incompatible",
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. } => "protocol",
        Error::AlertReceived(_) => "alert",
        _ => "other",
    }
}

/// Logs, once per [`REFUSAL_REPORT_PERIOD`] and when `stop` fires, how many connections
/// `admission` refused since the last time, if more than the one logged when the refusals began.
fn report_refusals(admission: Arc<Admission>, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFUSAL_REPORT_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate.
        tick.tick().await;
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                _ = tick.tick() => false,
            };
            // One refusal alone was logged when it happened.
            if let Some(summary) = admission.take_refusals().filter(|s| s.refused > 1) {
                tracing::warn!(
                    refused = summary.refused,
                    last_peer = %summary.last_source,
                    why = summary.last_limit.describe(),
                    advice = summary.last_limit.advice(),
                    "TLS connections closed at once instead of starting their handshakes, since the last \
                     such report (at most {REFUSAL_REPORT_PERIOD:?} ago)"
                );
            }
            if stopping {
                break;
            }
        }
    });
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    PerSource,
    Total,
}

impl Limit {
    fn describe(self) -> &'static str {
        match self {
            Limit::PerSource => "too many handshakes from this source at once",
            Limit::Total => "too many handshakes at once in all",
        }
    }

    fn advice(self) -> &'static str {
        match self {
            Limit::PerSource => {
                "one address opens connections faster than it finishes their handshakes: a flood, or a \
                 client that opens many connections at once (it should reuse one; refused ones may be \
                 retried)"
            }
            Limit::Total => {
                "handshakes from many addresses are stalled at once, probably a distributed flood; \
                 clients that were refused may retry"
            }
        }
    }
}

/// A connection [`Admission::admit`] turned away.
#[derive(Debug)]
struct Refused {
    limit: Limit,
    /// The first refusal since the last summary: worth a line of its own.
    first: bool,
}

/// The connections refused since the last summary.
#[derive(Debug)]
struct RefusalSummary {
    refused: u64,
    /// The source and the limit of the latest refusal.
    last_source: IpAddr,
    last_limit: Limit,
}

/// Counts of the handshakes running on one listener, per source and in all.
struct Admission {
    per_source_limit: usize,
    total_limit: usize,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// Sources with at least one handshake running (an entry is removed when its count reaches 0,
    /// so the map never holds more than `total_limit` entries).
    per_source: HashMap<IpAddr, usize>,
    /// Connections refused since the last summary, and the latest of them.
    refused: u64,
    last_refusal: Option<(IpAddr, Limit)>,
}

impl Admission {
    fn new(per_source_limit: usize, total_limit: usize) -> Arc<Self> {
        Arc::new(Self {
            per_source_limit,
            total_limit,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts are updated in one step under the lock and no code in it can panic, so a
        // poisoned lock still holds consistent counts.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A slot for one handshake from `peer`, or a refusal if its source or the listener is at its
    /// limit.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<HandshakeSlot, Refused> {
        let source = source_of(peer);
        let mut counts = self.counts();
        let running = counts.per_source.get(&source).copied().unwrap_or(0);
        let limit = if running >= self.per_source_limit {
            Some(Limit::PerSource)
        } else if counts.total >= self.total_limit {
            Some(Limit::Total)
        } else {
            None
        };
        if let Some(limit) = limit {
            counts.refused += 1;
            counts.last_refusal = Some((source, limit));
            return Err(Refused {
                limit,
                first: counts.refused == 1,
            });
        }
        counts.total += 1;
        *counts.per_source.entry(source).or_insert(0) += 1;
        Ok(HandshakeSlot {
            admission: Arc::clone(self),
            source,
        })
    }

    /// The refusals since the last call, if any; the next refusal counts as the first again.
    fn take_refusals(&self) -> Option<RefusalSummary> {
        let mut counts = self.counts();
        let refused = std::mem::take(&mut counts.refused);
        let (last_source, last_limit) = counts.last_refusal.take()?;
        Some(RefusalSummary {
            refused,
            last_source,
            last_limit,
        })
    }

    fn release(&self, source: IpAddr) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        if let Some(running) = counts.per_source.get_mut(&source) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                counts.per_source.remove(&source);
            }
        }
    }
}

/// One running handshake's place in the counts; dropping it frees the place.
struct HandshakeSlot {
    admission: Arc<Admission>,
    source: IpAddr,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.admission.release(self.source);
    }
}

/// The source a connection is counted under: its IPv4 address (also when it arrives IPv4-mapped
/// on a dual-stack listener), or the /64 of its IPv6 address, since one host commonly holds a
/// whole /64 and could otherwise take a fresh address for every connection.
fn source_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_at_its_limit_is_refused_and_others_are_not() {
        let admission = Admission::new(2, 10);
        let _a = admission.admit(ip("10.0.0.1")).unwrap();
        let _b = admission.admit(ip("10.0.0.1")).unwrap();
        let refused = admission.admit(ip("10.0.0.1")).err().unwrap();
        assert_eq!(refused.limit, Limit::PerSource);
        assert!(admission.admit(ip("10.0.0.2")).is_ok());
    }

    #[test]
    fn the_total_limit_holds_across_sources() {
        let admission = Admission::new(2, 3);
        let _slots: Vec<_> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .into_iter()
            .map(|s| admission.admit(ip(s)).unwrap())
            .collect();
        let refused = admission.admit(ip("10.0.0.4")).err().unwrap();
        assert_eq!(refused.limit, Limit::Total);
    }

    #[test]
    fn a_finished_handshake_frees_its_place() {
        let admission = Admission::new(1, 1);
        let slot = admission.admit(ip("10.0.0.1")).unwrap();
        assert!(admission.admit(ip("10.0.0.1")).is_err());
        drop(slot);
        assert!(admission.admit(ip("10.0.0.1")).is_ok());
        assert!(admission.counts().per_source.is_empty());
        assert_eq!(admission.counts().total, 0);
    }

    #[test]
    fn refusals_are_counted_for_the_summary_and_the_first_stands_out() {
        let admission = Admission::new(1, 10);
        assert!(admission.take_refusals().is_none());
        let _slot = admission.admit(ip("10.0.0.1")).unwrap();
        assert!(admission.admit(ip("10.0.0.1")).err().unwrap().first);
        for _ in 0..5 {
            assert!(!admission.admit(ip("10.0.0.1")).err().unwrap().first);
        }
        let summary = admission.take_refusals().unwrap();
        assert_eq!(summary.refused, 6);
        assert_eq!(
            (summary.last_source, summary.last_limit),
            (ip("10.0.0.1"), Limit::PerSource)
        );
        assert!(admission.take_refusals().is_none());
        assert!(admission.admit(ip("10.0.0.1")).err().unwrap().first);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("2001:db8:1:2:bbbb::9")), ip("2001:db8:1:2::"));
        assert_ne!(source_of(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        let admission = Admission::new(1, 10);
        let _slot = admission.admit(ip("2001:db8::1")).unwrap();
        assert!(admission.admit(ip("2001:db8::2")).is_err());
        assert!(admission.admit(ip("::ffff:10.0.0.1")).is_ok());
    }
}

//! TLS for both listeners: rustls server configurations that require a client certificate, and
//! the accept loop that hands finished handshakes to tonic.
//!
//! tonic's own `ServerTlsConfig` cannot take certificate revocation lists, so the server runs its
//! own rustls acceptor and gives tonic a stream of `tokio_rustls` connections. tonic then exposes
//! the verified peer chain through `TlsConnectInfo` in every request's extensions, where
//! [`crate::identity`] reads it.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
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

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many handshakes run at once; further connections wait in the kernel's backlog.
const MAX_CONCURRENT_HANDSHAKES: usize = 256;

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
        if crl.starts_with(b"-----") {
            for item in CertificateRevocationListDer::pem_slice_iter(crl) {
                out.push(item.map_err(|e| TlsError::Pem {
                    what: "certificate revocation list (--crl)",
                    message: e.to_string(),
                })?);
            }
        } else {
            out.push(CertificateRevocationListDer::from(crl.clone()));
        }
    }
    Ok(out)
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = client_verifier(client_ca_what, client_ca_pem, crls)?;
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

/// Accepts TCP connections on `listener`, runs each TLS handshake in its own task (so one slow
/// client cannot hold up the others), and yields finished connections. Stops accepting when
/// `shutdown` is cancelled or the consumer goes away.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
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
                    tracing::warn!(error = %e, "accepting a TCP connection failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                break;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        // The consumer is gone when shutdown has begun; the connection just closes.
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

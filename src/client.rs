//! Connecting to lefi over mTLS: used by `lefi client`, `lefi admin` and the tests, and a short,
//! complete example for integrators.
//!
//! Most failures to connect are one of a few mistakes, and [`ClientError`] names each with what to
//! do. Some are found before connecting ([`ClientPem::check`]: a certificate given as the key, a
//! key that does not belong to the certificate; [`server_uri`]: a plain-HTTP address). The others
//! are read from the error's source chain ([`TransportProblem::of`]: nothing listening, a server
//! certificate `--ca` does not trust, a client certificate the server refused in a TLS alert).
//! With TLS 1.3 the server judges the client certificate after the client has finished its side of
//! the handshake, so a refusal may reach the first call as nothing more than a closed connection;
//! [`probe`] then repeats the handshake alone and reads the server's alert.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::AlertDescription;
use rustls_pki_types::pem::{PemObject as _, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncReadExt as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long connecting (TCP and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Problems connecting, each naming what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read {what} '{}': {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}{}: {problem}", shown(path.as_deref()))]
    Pem {
        what: &'static str,
        path: Option<PathBuf>,
        problem: PemProblem,
    },
    #[error(
        "the private key{} does not belong to the client certificate{}: their public keys differ",
        shown(key.as_deref()),
        shown(cert.as_deref())
    )]
    KeyMismatch {
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    },
    #[error("'{addr}' is a plain-HTTP address, but lefi serves gRPC over TLS only")]
    PlainHttp { addr: String },
    #[error("invalid server address '{addr}': {problem}")]
    Address { addr: String, problem: String },
    #[error("cannot connect to {addr}: {}", describe_connect(problem.as_ref(), source))]
    Connect {
        addr: String,
        /// What the source chain says went wrong, when it is one of the known mistakes.
        problem: Option<TransportProblem>,
        source: tonic::transport::Error,
    },
}

fn shown(path: Option<&Path>) -> String {
    path.map(|p| format!(" '{}'", p.display())).unwrap_or_default()
}

fn describe_connect(problem: Option<&TransportProblem>, source: &tonic::transport::Error) -> String {
    match problem {
        Some(problem) => problem.to_string(),
        None => chain_text(source),
    }
}

impl ClientError {
    /// What to do about it, for people.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Read { .. } => Some(
                "pass --cert, --key and --ca, or run `lefi serve --dev` once to create certs-dev/"
                    .to_string(),
            ),
            ClientError::Pem { problem, .. } => Some(problem.hint().to_string()),
            ClientError::KeyMismatch { .. } => Some(
                "pass the private key that was generated with this certificate (for certs-dev/X.pem it is certs-dev/X.key)"
                    .to_string(),
            ),
            ClientError::PlainHttp { addr } => Some(format!(
                "use https://{0} or just {0} (host:port)",
                addr.trim_start_matches("http://").trim_end_matches('/')
            )),
            ClientError::Address { .. } => {
                Some("give the server as host:port or https://host:port, e.g. localhost:50051".to_string())
            }
            ClientError::Connect { problem, .. } => problem.as_ref().map(TransportProblem::hint),
        }
    }
}

/// What is wrong with a PEM file given to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PemProblem {
    #[error("holds a certificate, not a private key")]
    CertificateGivenAsKey,
    #[error("holds a private key, not a certificate")]
    KeyGivenAsCertificate,
    #[error("holds no PEM certificate")]
    NoCertificate,
    #[error("holds no PEM private key (PKCS#8, SEC1 or PKCS#1)")]
    NoKey,
    #[error("holds a private key this client cannot use (RSA, ECDSA or Ed25519 expected)")]
    UnusableKey,
}

impl PemProblem {
    fn hint(self) -> &'static str {
        match self {
            PemProblem::CertificateGivenAsKey | PemProblem::KeyGivenAsCertificate => {
                "--cert takes the certificate (.pem) and --key its private key (.key): check that they are not swapped"
            }
            PemProblem::NoCertificate => "pass a PEM certificate (-----BEGIN CERTIFICATE-----)",
            PemProblem::NoKey | PemProblem::UnusableKey => {
                "pass the PEM private key that was generated with the certificate (-----BEGIN PRIVATE KEY-----)"
            }
        }
    }
}

/// What went wrong on the way to the server, read from an error's source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransportProblem {
    /// Nothing accepts connections at the address.
    #[error("connection refused: nothing is listening there")]
    Refused,
    /// The server refused the client certificate during the TLS handshake, with this alert.
    #[error("the server refused the client certificate: {}", refusal_text(*.0))]
    ClientCertificateRefused(AlertDescription),
    /// The server's certificate does not chain to the CA the client trusts (`--ca`).
    #[error("the server's certificate is not signed by the CA given as --ca")]
    ServerCertificateUntrusted,
    /// The server's certificate does not carry the name the client expects.
    #[error("the server's certificate is not valid for the name this client expects")]
    ServerNameMismatch,
    /// The other end does not speak TLS (or not the TLS this client speaks).
    #[error("the TLS handshake failed: the other end does not speak TLS as lefi does")]
    NotTls,
    /// The connection closed without a word.
    #[error("the server closed the connection")]
    Closed,
    /// No answer in time.
    #[error("no answer in time")]
    TimedOut,
}

fn refusal_text(alert: AlertDescription) -> String {
    match alert {
        AlertDescription::UnknownCA => {
            "it was not issued by a CA this listener trusts (TLS alert: unknown CA)".to_string()
        }
        AlertDescription::CertificateExpired => {
            "it has expired or is not yet valid (TLS alert: certificate expired)".to_string()
        }
        AlertDescription::CertificateRevoked => {
            "it has been revoked (TLS alert: certificate revoked)".to_string()
        }
        AlertDescription::CertificateRequired => {
            "none was presented, and this server requires one (TLS alert: certificate required)".to_string()
        }
        other => format!("TLS alert: {other:?}"),
    }
}

impl TransportProblem {
    /// Reads the problem from an error and its sources: a rustls error (also inside an
    /// `io::Error`, whose `source()` skips it) or the kind of an `io::Error`. `None` when nothing
    /// in the chain is one of the known problems.
    pub fn of(error: &(dyn StdError + 'static)) -> Option<TransportProblem> {
        let mut found = None;
        let mut current = Some(error);
        while let Some(e) = current {
            if let Some(tls) = e.downcast_ref::<rustls::Error>() {
                return Self::of_tls(tls).or(found);
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if let Some(tls) = io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    return Self::of_tls(tls).or(found);
                }
                use std::io::ErrorKind;
                let problem = match io.kind() {
                    ErrorKind::ConnectionRefused => Some(TransportProblem::Refused),
                    ErrorKind::TimedOut => Some(TransportProblem::TimedOut),
                    ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof => Some(TransportProblem::Closed),
                    _ => None,
                };
                // A deeper error (a TLS alert inside) says more than the kind of this one.
                found = found.or(problem);
                // `io::Error::source` skips the error it wraps; look at that one next.
                if let Some(inner) = io.get_ref() {
                    current = Some(inner as &(dyn StdError + 'static));
                    continue;
                }
            }
            current = e.source();
        }
        found
    }

    fn of_tls(error: &rustls::Error) -> Option<TransportProblem> {
        use rustls::{CertificateError, Error};
        match error {
            Error::AlertReceived(alert) => Some(match alert {
                AlertDescription::UnknownCA
                | AlertDescription::BadCertificate
                | AlertDescription::UnsupportedCertificate
                | AlertDescription::CertificateRevoked
                | AlertDescription::CertificateExpired
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateRequired
                | AlertDescription::AccessDenied
                | AlertDescription::DecryptError => TransportProblem::ClientCertificateRefused(*alert),
                _ => TransportProblem::NotTls,
            }),
            Error::InvalidCertificate(CertificateError::NotValidForName)
            | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
                Some(TransportProblem::ServerNameMismatch)
            }
            Error::InvalidCertificate(_) => Some(TransportProblem::ServerCertificateUntrusted),
            Error::InvalidMessage(_) | Error::InappropriateHandshakeMessage { .. } => {
                Some(TransportProblem::NotTls)
            }
            _ => None,
        }
    }

    /// What to do about it, for people.
    pub fn hint(&self) -> String {
        match self {
            TransportProblem::Refused => "is the server running (start one with `lefi serve --dev`), and is --addr right? \
                 The party API listens on :50051 and the admin API on :50052 by default"
                .to_string(),
            TransportProblem::ClientCertificateRefused(_) => "use the certificate and key the agency issued you, with --cert and --key: a party \
                 certificate for the party API (`lefi client`), an operator certificate for the \
                 admin API (`lefi admin`, `lefi ingest`)"
                .to_string(),
            TransportProblem::ServerCertificateUntrusted => {
                "pass the CA that signed the server's certificate with --ca (with `serve --dev`: certs-dev/ca.pem)"
                    .to_string()
            }
            TransportProblem::ServerNameMismatch => {
                "connect by the name in the server's certificate, or pass that name with --server-name".to_string()
            }
            TransportProblem::NotTls => {
                "check --addr: it must name a lefi listener (https://host:port)".to_string()
            }
            TransportProblem::Closed => "retry; if it persists, check that --addr names a lefi listener".to_string(),
            TransportProblem::TimedOut => {
                "check --addr and that the server is reachable from here (firewall, VPN)".to_string()
            }
        }
    }

    /// Whether trying again later may succeed without changing anything (a server that is
    /// restarting, a dropped connection).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportProblem::Refused | TransportProblem::Closed | TransportProblem::TimedOut
        )
    }
}

/// An error's text with its sources, each said once: `io::Error` and friends repeat their inner
/// error in their own text, which a plain walk would print twice.
pub fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current = Some(error);
    while let Some(e) = current {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    parts.join(": ")
}

/// The PEM files a client presents and trusts.
#[derive(Debug, Clone)]
pub struct ClientPem {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub ca: Vec<u8>,
}

impl ClientPem {
    /// Reads the three files and checks them ([`ClientPem::check`]), naming the files in errors.
    pub fn read(cert: &Path, key: &Path, ca: &Path) -> Result<Self, ClientError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| ClientError::Read {
                what,
                path: path.to_path_buf(),
                source,
            })
        };
        let pem = Self {
            cert: read("client certificate (--cert)", cert)?,
            key: read("client key (--key)", key)?,
            ca: read("server CA (--ca)", ca)?,
        };
        pem.check_files(Some((cert, key, ca)))?;
        Ok(pem)
    }

    /// Checks, before any connection is made, that the certificate is a certificate, the key a
    /// private key, the key belongs to the certificate, and the CA file holds a certificate.
    pub fn check(&self) -> Result<(), ClientError> {
        self.check_files(None)
    }

    fn check_files(&self, paths: Option<(&Path, &Path, &Path)>) -> Result<(), ClientError> {
        let (cert_path, key_path, ca_path) = match paths {
            Some((c, k, a)) => (
                Some(c.to_path_buf()),
                Some(k.to_path_buf()),
                Some(a.to_path_buf()),
            ),
            None => (None, None, None),
        };
        let pem_error = |what, path: &Option<PathBuf>, problem| ClientError::Pem {
            what,
            path: path.clone(),
            problem,
        };
        let chain = certificates(&self.cert)
            .map_err(|problem| pem_error("the client certificate (--cert)", &cert_path, problem))?;
        certificates(&self.ca).map_err(|problem| pem_error("the server CA (--ca)", &ca_path, problem))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|_| {
            let problem = if pem_sections(&self.key).contains(&SectionKind::Certificate) {
                PemProblem::CertificateGivenAsKey
            } else {
                PemProblem::NoKey
            };
            pem_error("the client key (--key)", &key_path, problem)
        })?;
        let signing_key = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(|_| pem_error("the client key (--key)", &key_path, PemProblem::UnusableKey))?;
        match rustls::sign::CertifiedKey::new(chain, signing_key).keys_match() {
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                Err(ClientError::KeyMismatch {
                    cert: cert_path,
                    key: key_path,
                })
            }
            // A key whose public half cannot be derived is checked by the handshake instead.
            _ => Ok(()),
        }
    }
}

/// The certificates of a PEM file, or why there are none.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemProblem> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if !certs.is_empty() {
        return Ok(certs);
    }
    let sections = pem_sections(pem);
    let holds_key = sections.iter().any(|kind| {
        matches!(
            kind,
            SectionKind::PrivateKey | SectionKind::EcPrivateKey | SectionKind::RsaPrivateKey
        )
    });
    Err(if holds_key {
        PemProblem::KeyGivenAsCertificate
    } else {
        PemProblem::NoCertificate
    })
}

/// The kinds of the PEM sections in `pem`, as far as they parse.
fn pem_sections(pem: &[u8]) -> Vec<SectionKind> {
    let mut reader = pem;
    let mut kinds = Vec::new();
    while let Ok(Some((kind, _))) = rustls_pki_types::pem::from_buf(&mut reader) {
        kinds.push(kind);
    }
    kinds
}

/// The URI for a server address: `https://host:port`, or `host:port` as grpcurl takes it.
/// A plain-HTTP address is refused: lefi listens for TLS only, and a plain connection to a TLS
/// port fails with nothing but a cancelled call.
pub fn server_uri(addr: &str) -> Result<http::Uri, ClientError> {
    let trimmed = addr.trim();
    let full = if trimmed.starts_with("https://") {
        trimmed.to_string()
    } else if trimmed.starts_with("http://") {
        return Err(ClientError::PlainHttp {
            addr: trimmed.to_string(),
        });
    } else if trimmed.contains("://") {
        return Err(ClientError::Address {
            addr: trimmed.to_string(),
            problem: "the only scheme lefi speaks is https".to_string(),
        });
    } else {
        format!("https://{trimmed}")
    };
    let uri: http::Uri = full
        .parse()
        .map_err(|e: http::uri::InvalidUri| ClientError::Address {
            addr: trimmed.to_string(),
            problem: e.to_string(),
        })?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(ClientError::Address {
            addr: trimmed.to_string(),
            problem: "no host".to_string(),
        });
    }
    Ok(uri)
}

/// Opens an mTLS channel to `addr` (`https://localhost:50051` or `localhost:50051`).
/// `server_name` is the name the server certificate must carry; by default the host of `addr`.
pub async fn connect(addr: &str, pem: &ClientPem, server_name: Option<&str>) -> Result<Channel, ClientError> {
    let endpoint = endpoint(addr, pem, server_name)?;
    endpoint.connect().await.map_err(|source| ClientError::Connect {
        addr: endpoint.uri().to_string().trim_end_matches('/').to_string(),
        problem: TransportProblem::of(&source),
        source,
    })
}

/// The endpoint [`connect`] uses, for callers that want a lazy channel. Checks the address and the
/// PEM files first.
pub fn endpoint(addr: &str, pem: &ClientPem, server_name: Option<&str>) -> Result<Endpoint, ClientError> {
    let uri = server_uri(addr)?;
    pem.check()?;
    let host = tls_name(&uri, server_name);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pem.ca))
        .identity(Identity::from_pem(&pem.cert, &pem.key))
        .domain_name(host);
    let address_err = |e: tonic::transport::Error| ClientError::Address {
        addr: addr.to_string(),
        problem: chain_text(&e),
    };
    Endpoint::from(uri)
        .tls_config(tls)
        .map_err(address_err)
        .map(|e| e.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
}

fn tls_name(uri: &http::Uri, server_name: Option<&str>) -> String {
    server_name
        .map(str::to_string)
        .or_else(|| uri.host().map(|h| h.trim_matches(['[', ']']).to_string()))
        .unwrap_or_else(|| "localhost".to_string())
}

/// Repeats the TLS handshake with the same files, sends nothing, and waits for the server's first
/// bytes: a server that refuses the client certificate answers with a TLS alert, one that accepts
/// it with its HTTP/2 settings. Used to explain a connection that closed during the first call.
/// `None` when the handshake and the first bytes arrive (the certificate was not the problem) or
/// nothing can be learnt.
pub async fn probe(addr: &str, pem: &ClientPem, server_name: Option<&str>) -> Option<TransportProblem> {
    let uri = server_uri(addr).ok()?;
    let host = uri.host()?.trim_matches(['[', ']']).to_string();
    let port = uri.port_u16().unwrap_or(443);
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(&pem.ca).ok()? {
        roots.add(cert).ok()?;
    }
    let chain = certificates(&pem.cert).ok()?;
    let key = PrivateKeyDer::from_pem_slice(&pem.key).ok()?;
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .ok()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .ok()?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(tls_name(&uri, server_name)).ok()?;
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| TransportProblem::of(&e))?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| TransportProblem::of(&e))?;
        let mut first = [0u8; 1];
        match tls.read(&mut first).await {
            Ok(0) => Err(Some(TransportProblem::Closed)),
            Ok(_) => Ok(()),
            Err(e) => Err(TransportProblem::of(&e)),
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(())) => None,
        Ok(Err(problem)) => problem,
        Err(_) => Some(TransportProblem::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_https_or_host_port_and_refuse_http() {
        for (given, uri) in [
            ("localhost:50051", "https://localhost:50051/"),
            ("https://127.0.0.1:50052", "https://127.0.0.1:50052/"),
        ] {
            assert_eq!(server_uri(given).unwrap().to_string(), uri);
        }
        assert_eq!(server_uri("[::1]:50051").unwrap().host(), Some("[::1]"));
        assert!(matches!(
            server_uri("http://localhost:50051"),
            Err(ClientError::PlainHttp { .. })
        ));
        assert!(matches!(
            server_uri("ftp://localhost:50051"),
            Err(ClientError::Address { .. })
        ));
    }

    #[test]
    fn pem_mix_ups_are_named() {
        let ca = crate::dev::certs::DevCa::generate("t").unwrap();
        let a = ca.issue_client("a", None).unwrap();
        let b = ca.issue_client("b", None).unwrap();
        let pem = |cert: &str, key: &str| ClientPem {
            cert: cert.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
            ca: ca.cert_pem().as_bytes().to_vec(),
        };
        pem(&a.cert_pem, &a.key_pem).check().unwrap();
        assert!(matches!(
            pem(&a.cert_pem, &b.key_pem).check(),
            Err(ClientError::KeyMismatch { .. })
        ));
        assert!(matches!(
            pem(&a.cert_pem, &a.cert_pem).check(),
            Err(ClientError::Pem {
                problem: PemProblem::CertificateGivenAsKey,
                ..
            })
        ));
        assert!(matches!(
            pem(&a.key_pem, &a.cert_pem).check(),
            Err(ClientError::Pem {
                problem: PemProblem::KeyGivenAsCertificate,
                ..
            })
        ));
    }

    #[test]
    fn the_chain_is_said_once() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let outer = std::io::Error::other(inner);
        assert_eq!(chain_text(&outer), "refused");
        assert_eq!(TransportProblem::of(&outer), Some(TransportProblem::Refused));
        let direct = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(TransportProblem::of(&direct), Some(TransportProblem::Refused));
    }

    #[test]
    fn alerts_inside_io_errors_are_found() {
        let alert = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        assert_eq!(
            TransportProblem::of(&io),
            Some(TransportProblem::ClientCertificateRefused(
                AlertDescription::UnknownCA
            ))
        );
    }
}

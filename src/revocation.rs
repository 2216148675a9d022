//! The party listener's certificate verifier, with certificate revocation lists that are reloaded
//! without a restart (on SIGHUP and on `OperationsAdminService.ReloadCrls`).
//!
//! [`PartyVerifier`] is what the party listener's rustls configuration verifies every handshake
//! with: it hands each one to the verifier built from the CRLs loaded last. A reload reads every
//! configured CRL file again and builds a new verifier; if any file cannot be read or parsed, the
//! CRLs in force stay as they were and the reload says why. A certificate that a newly loaded CRL
//! revokes is refused at its next handshake, at its next call on a connection already open (the
//! identity resolver asks [`PartyVerifier::still_valid`]), and its open streams end (the stream
//! producer asks the same before every page; the reload wakes every stream).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

use crate::tls::{TlsError, client_verifier, crl_ders};

/// What the server knows of one loaded CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    /// Where it came from: its file, or its place among the CRLs given at start.
    pub source: String,
    /// The issuing CA's name (RFC 4514).
    pub issuer: String,
    /// The CRL number (decimal), if the CRL has one.
    pub number: Option<String>,
    /// When it was issued (thisUpdate), seconds since the Unix epoch.
    pub this_update: i64,
    /// When the next one is due (nextUpdate), seconds since the Unix epoch.
    pub next_update: Option<i64>,
    /// How many certificates it revokes.
    pub revoked: usize,
}

/// A reload that did not happen: the CRLs in force stay as they were.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the CRLs were not given as files (serve --crl FILE), so there is nothing to read again")]
    NoFiles,
    #[error("cannot read the CRL file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the CRL file {path} is not a certificate revocation list: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(transparent)]
    Verifier(#[from] TlsError),
}

/// The CRLs in force and the verifier built from them.
struct Loaded {
    verifier: Arc<dyn ClientCertVerifier>,
    crls: Vec<CrlInfo>,
}

/// The party listener's verifier: the party CA, and the CRLs loaded last.
pub struct PartyVerifier {
    what: &'static str,
    ca_pem: Vec<u8>,
    /// The CRL files to read again on a reload (empty when the CRLs were given as bytes).
    files: Vec<PathBuf>,
    /// The CA names offered to clients (they do not change with the CRLs).
    hints: Vec<DistinguishedName>,
    loaded: RwLock<Loaded>,
    /// Bumped by every reload; 0 until the first.
    generation: AtomicU64,
    /// Certificates judged since the last reload, by fingerprint: whether they are still valid.
    judged: Mutex<(u64, HashMap<String, bool>)>,
}

impl std::fmt::Debug for PartyVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartyVerifier")
            .field("files", &self.files)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl PartyVerifier {
    /// The verifier for certificates chaining to `ca_pem`, with the CRLs `crls` (as read at start
    /// from `files`, which a reload reads again).
    pub fn new(
        what: &'static str,
        ca_pem: &[u8],
        crls: &[Vec<u8>],
        files: Vec<PathBuf>,
    ) -> Result<Arc<Self>, TlsError> {
        let verifier = client_verifier(what, ca_pem, crls)?;
        let sources: Vec<String> = if files.len() == crls.len() {
            files.iter().map(|f| f.display().to_string()).collect()
        } else {
            (1..=crls.len()).map(|i| format!("CRL {i}")).collect()
        };
        let mut infos = Vec::new();
        for (source, crl) in sources.iter().zip(crls) {
            infos.extend(describe(source, crl).map_err(|message| TlsError::Pem {
                what: "certificate revocation list (--crl)",
                message,
            })?);
        }
        Ok(Arc::new(Self {
            what,
            ca_pem: ca_pem.to_vec(),
            files,
            hints: verifier.root_hint_subjects().to_vec(),
            loaded: RwLock::new(Loaded {
                verifier,
                crls: infos,
            }),
            generation: AtomicU64::new(0),
            judged: Mutex::new((0, HashMap::new())),
        }))
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(
            &self
                .loaded
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .verifier,
        )
    }

    /// The CRLs in force.
    pub fn crls(&self) -> Vec<CrlInfo> {
        self.loaded
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .crls
            .clone()
    }

    /// How many reloads have taken effect.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The configured CRL files.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Reads every configured CRL file again and puts them in force, all or none.
    pub fn reload(&self) -> Result<Vec<CrlInfo>, ReloadError> {
        if self.files.is_empty() && !self.crls().is_empty() {
            return Err(ReloadError::NoFiles);
        }
        let mut contents = Vec::with_capacity(self.files.len());
        let mut infos = Vec::new();
        for path in &self.files {
            let bytes = std::fs::read(path).map_err(|source| ReloadError::Read {
                path: path.clone(),
                source,
            })?;
            infos.extend(describe(&path.display().to_string(), &bytes).map_err(|message| {
                ReloadError::Parse {
                    path: path.clone(),
                    message,
                }
            })?);
            contents.push(bytes);
        }
        let verifier = client_verifier(self.what, &self.ca_pem, &contents)?;
        *self.loaded.write().unwrap_or_else(PoisonError::into_inner) = Loaded {
            verifier,
            crls: infos.clone(),
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(infos)
    }

    /// Whether a certificate that passed its handshake (fingerprint `fingerprint`) is still valid
    /// under the CRLs in force: always before the first reload, else judged once per reload.
    pub fn still_valid(&self, leaf: &CertificateDer<'_>, fingerprint: &str) -> bool {
        let generation = self.generation();
        if generation == 0 {
            return true;
        }
        let mut judged = self.judged.lock().unwrap_or_else(PoisonError::into_inner);
        if judged.0 != generation {
            *judged = (generation, HashMap::new());
        }
        if let Some(valid) = judged.1.get(fingerprint) {
            return *valid;
        }
        let valid = match self.current().verify_client_cert(leaf, &[], UnixTime::now()) {
            Ok(_) => true,
            // Only a revocation withdraws a certificate that was let in; an expiry is the
            // registration's business (checked with the party).
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => false,
            Err(_) => true,
        };
        judged.1.insert(fingerprint.to_string(), valid);
        valid
    }
}

/// What a CRL file (PEM, one or more CRLs; or DER) holds, for the admin view and the metrics.
fn describe(source: &str, bytes: &[u8]) -> Result<Vec<CrlInfo>, String> {
    let ders = crl_ders(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(ders.len());
    for der in ders {
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| e.to_string())?;
        out.push(CrlInfo {
            source: source.to_string(),
            issuer: crl.issuer().to_string(),
            number: crl.crl_number().map(ToString::to_string),
            this_update: crl.last_update().timestamp(),
            next_update: crl.next_update().map(|t| t.timestamp()),
            revoked: crl.iter_revoked_certificates().count(),
        });
    }
    Ok(out)
}

impl ClientCertVerifier for PartyVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

//! Who is calling: the verified client certificate becomes a [`PartyPrincipal`] or an
//! [`OperatorPrincipal`] in exactly one place, the [`Resolver`] (run for every request by the
//! gRPC layer `grpc::identity_layer`).
//!
//! The TLS handshake (see [`crate::tls`]) has already checked the chain against the listener's CA.
//! The resolver looks up the leaf certificate's SHA-256 fingerprint among the registered
//! certificates and decides whether that principal may call this API at all; a refusal is a typed
//! [`IdentityError`] until the gRPC edge reports it. Services read the principal from the request
//! and never parse certificates themselves; nothing a client sends inside a request can change who
//! it is.

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use time::Date;

use crate::domain::clock::{Clock, Micros};
use crate::domain::lifecycle::Inactive;
use crate::domain::{OperatorRole, OrgNumber, PartyKind, PartyState};
use crate::revocation::PartyVerifier;
use crate::store::parties::{CertifiedParty, NewCertificate};
use crate::store::{Store, StoreError};

/// A party (insurer or authority) whose registered certificate made this call.
#[derive(Debug, Clone)]
pub struct PartyPrincipal {
    pub party_id: String,
    pub org_number: OrgNumber,
    pub name: String,
    pub kind: PartyKind,
    pub state: PartyState,
    pub termination_effective: Option<Date>,
    /// SHA-256 of the client certificate the call came with (lowercase hex).
    pub fingerprint: String,
    /// When that certificate expires (microseconds since the epoch).
    pub certificate_not_after: Micros,
    /// The party's own limits (an operator's; unset values are the server's defaults).
    pub limits: crate::domain::limits::LimitOverrides,
}

/// An operator at the agency whose registered certificate made this call.
#[derive(Debug, Clone)]
pub struct OperatorPrincipal {
    pub name: String,
    pub role: OperatorRole,
    /// SHA-256 of the client certificate the call came with (lowercase hex).
    pub fingerprint: String,
}

/// Which API a listener serves, and so which principals it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The party API: registered, non-revoked party certificates of live parties.
    Party,
    /// The admin API: registered, non-revoked operator certificates.
    Admin,
}

/// The SHA-256 fingerprint of a DER certificate, as lowercase hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// Problems reading a certificate someone wants to register.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("no PEM certificate found; paste the certificate beginning with -----BEGIN CERTIFICATE-----")]
    NoCertificate,
    #[error("the PEM data is not a valid X.509 certificate")]
    NotX509,
}

/// Reads the facts the registry stores about a certificate: fingerprint, subject, serial, validity.
/// Only the first (leaf) certificate of a PEM bundle counts.
pub fn certificate_facts(pem: &[u8]) -> Result<(NewCertificate, CertificateDer<'static>), CertificateError> {
    let der = crate::tls::parse_certs("certificate", pem)
        .map_err(|_| CertificateError::NoCertificate)?
        .into_iter()
        .next()
        .ok_or(CertificateError::NoCertificate)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|_| CertificateError::NotX509)?;
    let validity = cert.validity();
    let facts = NewCertificate {
        fingerprint: fingerprint(&der),
        subject: cert.subject().to_string(),
        serial: cert.raw_serial_as_string(),
        not_before: validity.not_before.timestamp().saturating_mul(1_000_000),
        not_after: validity.not_after.timestamp().saturating_mul(1_000_000),
    };
    Ok((facts, der))
}

/// Why a certificate cannot be registered for a party.
#[derive(Debug, thiserror::Error)]
pub enum CertificateRejected {
    #[error(
        "no PEM certificate found; send the party's certificate, beginning with -----BEGIN CERTIFICATE-----"
    )]
    NoCertificate,
    #[error("the PEM holds {0} certificates; send only the party's own (leaf) certificate")]
    NotExactlyOne(usize),
    #[error("the PEM data is not a valid X.509 certificate; send the party's certificate in PEM form")]
    NotX509,
    /// The party listener would refuse it; the text says why and what to do.
    #[error("{0}")]
    Refused(String),
}

/// Checks a party certificate the way the party listener's TLS handshake will (chain to the party
/// CA, validity at `now`, usable for client authentication, not in a configured CRL) and reads the
/// facts the registry stores about it.
pub fn verify_party_certificate(
    verifier: &dyn rustls::server::danger::ClientCertVerifier,
    pem: &[u8],
    now: Micros,
) -> Result<NewCertificate, CertificateRejected> {
    let certs =
        crate::tls::parse_certs("certificate", pem).map_err(|_| CertificateRejected::NoCertificate)?;
    if certs.len() != 1 {
        return Err(CertificateRejected::NotExactlyOne(certs.len()));
    }
    let (facts, der) = certificate_facts(pem).map_err(|e| match e {
        CertificateError::NoCertificate => CertificateRejected::NoCertificate,
        CertificateError::NotX509 => CertificateRejected::NotX509,
    })?;
    let at = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_micros(
        u64::try_from(now).unwrap_or(0),
    ));
    verifier
        .verify_client_cert(&der, &[], at)
        .map_err(|e| CertificateRejected::Refused(explain_refusal(&e)))?;
    Ok(facts)
}

/// What a verifier's refusal means for the operator.
fn explain_refusal(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            "the certificate has expired; issue the party a new certificate".to_string()
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            "the certificate is not valid yet (its not_before lies in the future); register it once it is valid"
                .to_string()
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            "the certificate is not issued by the party CA this server trusts (--client-ca);              issue it from that CA"
                .to_string()
        }
        rustls::Error::InvalidCertificate(C::InvalidPurpose | C::InvalidPurposeContext { .. }) => {
            "the certificate is not valid for TLS client authentication (extended key usage clientAuth);              issue a client certificate"
                .to_string()
        }
        rustls::Error::InvalidCertificate(C::Revoked) => {
            "the certificate is revoked by the party CA's certificate revocation list".to_string()
        }
        other => format!("the certificate is not acceptable for the party API: {other}"),
    }
}

/// Why a caller may not use an API, decided from its certificate and registration.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// No client certificate came with the call.
    #[error("no client certificate")]
    CertificateRequired,
    /// The certificate chains to the party CA but is registered for nobody.
    #[error("the certificate {fingerprint} is not registered for any party")]
    CertificateNotRegistered { fingerprint: String },
    /// The certificate (of a party, or of an operator) has been revoked.
    #[error("the certificate has been revoked")]
    CertificateRevoked { operator: bool },
    /// The party's termination has taken effect.
    #[error("the party has been terminated")]
    PartyTerminated,
    /// The party has not completed onboarding.
    #[error("the party is in state {state} and not connected")]
    PartyNotActive { state: PartyState },
    /// The certificate is not an operator's (on the admin API).
    #[error("the certificate {fingerprint} is not registered as an operator")]
    NotAnOperator { fingerprint: String },
    /// The registry could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Methods every caller with a verified chain may use without being registered: health checks and
/// reflection. Everything else needs a registered principal.
pub fn is_open_path(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/")
        || path.starts_with("/grpc.reflection.v1.ServerReflection/")
        || path.starts_with("/grpc.reflection.v1alpha.ServerReflection/")
}

/// Whoever a certificate resolved to.
#[derive(Debug, Clone)]
pub enum Principal {
    Party(PartyPrincipal),
    Operator(OperatorPrincipal),
}

/// Resolves certificates to principals.
#[derive(Debug, Clone)]
pub struct Resolver {
    store: Store,
    clock: Clock,
    audience: Audience,
    /// The party listener's verifier, whose CRLs may have been reloaded since a connection's
    /// handshake (see [`crate::revocation`]).
    revocation: Option<Arc<PartyVerifier>>,
}

impl Resolver {
    pub fn new(store: Store, clock: Clock, audience: Audience) -> Self {
        Self {
            store,
            clock,
            audience,
            revocation: None,
        }
    }

    /// Also refuses party certificates that CRLs reloaded after their handshake revoke.
    pub fn with_revocation(mut self, verifier: Arc<PartyVerifier>) -> Self {
        self.revocation = Some(verifier);
        self
    }

    /// Looks up the leaf certificate and decides whether it may call this API at all.
    pub async fn resolve(&self, leaf: Option<&CertificateDer<'_>>) -> Result<Principal, IdentityError> {
        let leaf = leaf.ok_or(IdentityError::CertificateRequired)?;
        let fp = fingerprint(leaf);
        match self.audience {
            Audience::Party => {
                if let Some(verifier) = &self.revocation
                    && !verifier.still_valid(leaf, &fp)
                {
                    return Err(IdentityError::CertificateRevoked { operator: false });
                }
                let party = self.store.party_by_certificate(&fp).await?;
                check_party(party, &fp, self.clock.now_micros(), self.clock.today()).map(Principal::Party)
            }
            Audience::Admin => {
                let operator = self.store.operator_by_fingerprint(&fp).await?.ok_or_else(|| {
                    IdentityError::NotAnOperator {
                        fingerprint: fp.clone(),
                    }
                })?;
                if operator.revoked_at.is_some() {
                    return Err(IdentityError::CertificateRevoked { operator: true });
                }
                Ok(Principal::Operator(OperatorPrincipal {
                    name: operator.name,
                    role: operator.role,
                    fingerprint: fp,
                }))
            }
        }
    }
}

/// Decides whether a registered party certificate may call the party API now (at `now`, on the
/// business date `today`). Open streams ask again before every page they deliver.
pub fn check_party(
    party: Option<CertifiedParty>,
    fp: &str,
    now: Micros,
    today: Date,
) -> Result<PartyPrincipal, IdentityError> {
    let Some(party) = party else {
        return Err(IdentityError::CertificateNotRegistered {
            fingerprint: fp.to_string(),
        });
    };
    if party.certificate_revoked_at.is_some_and(|at| at <= now) {
        return Err(IdentityError::CertificateRevoked { operator: false });
    }
    party
        .standing
        .check_active(today)
        .map_err(|inactive| match inactive {
            Inactive::Terminated => IdentityError::PartyTerminated,
            Inactive::NotConnected(state) => IdentityError::PartyNotActive { state },
        })?;
    Ok(PartyPrincipal {
        party_id: party.party_id,
        org_number: party.org_number,
        name: party.name,
        kind: party.kind,
        state: party.standing.state,
        termination_effective: party.standing.termination_effective,
        fingerprint: fp.to_string(),
        certificate_not_after: party.certificate_not_after,
        limits: party.limits,
    })
}

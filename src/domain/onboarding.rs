//! A party as the agency registers it: the application, the agreement's signatures, the client
//! certificates, the termination and the audit history; the records the store reads and writes
//! (`store::parties`) and the admin API shows. The rules of the steps between them are in
//! [`super::lifecycle`].

use time::Date;

use super::catalogue::{Agreement, Signature};
use super::clock::Micros;
use super::lifecycle::{PartyAction, Signer, Standing, effective_state};
use super::limits::LimitOverrides;
use super::{OperatorRole, OrgNumber, PartyKind, PartyState};

/// A party as seen through one of its registered certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedParty {
    pub party_id: String,
    pub org_number: OrgNumber,
    pub name: String,
    pub kind: PartyKind,
    pub standing: Standing,
    /// When the certificate was revoked, if it was.
    pub certificate_revoked_at: Option<Micros>,
    pub certificate_not_before: Micros,
    pub certificate_not_after: Micros,
    /// The party's own limits (an operator's; unset values are the server's defaults).
    pub limits: LimitOverrides,
}

/// A registered operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub fingerprint: String,
    pub name: String,
    pub role: OperatorRole,
    pub revoked_at: Option<Micros>,
}

/// An operator certificate to register (named fields: fingerprint and name are both text, and a
/// swap would go unnoticed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOperator<'a> {
    /// SHA-256 of the certificate (lowercase hex).
    pub fingerprint: &'a str,
    pub name: &'a str,
    pub role: OperatorRole,
}

/// A client certificate to register, with the facts read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCertificate {
    pub fingerprint: String,
    pub subject: String,
    pub serial: String,
    pub not_before: Micros,
    pub not_after: Micros,
}

/// The operator on whose behalf a change is made (recorded in the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    /// SHA-256 of the operator's client certificate.
    pub fingerprint: String,
}

impl Actor {
    /// The server itself acting (development seeding, benchmarks): no operator certificate.
    pub fn system(name: &str) -> Actor {
        Actor {
            name: name.to_string(),
            fingerprint: String::new(),
        }
    }
}

/// An application (anmälan), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApplication {
    pub org_number: OrgNumber,
    pub name: String,
    pub kind: PartyKind,
    pub contact_name: String,
    pub contact_email: String,
    pub basis_codes: Vec<String>,
    pub benefit_codes: Vec<String>,
}

/// The agreement the agency sends, validated as far as it can be without the party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgreement {
    pub agreement_id: String,
    pub basis_codes: Vec<String>,
    pub benefit_codes: Vec<String>,
    pub valid_from: Date,
    /// Insurers: at least 1. Authorities: 0.
    pub notice_period_days: u32,
}

/// One signature to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSignature {
    pub signer: Signer,
    pub signed_by: String,
    pub signed_on: Date,
}

/// A party and everything registered about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyRecord {
    pub party_id: String,
    /// The application as registered (the codes are those it asked for).
    pub application: NewApplication,
    /// The state as stored; see [`PartyRecord::state_on`] for the state that holds on a date.
    pub stored_state: PartyState,
    /// The current agreement (the most recently sent), with its signatures.
    pub agreement: Option<Agreement>,
    /// The agreement's signatures (0 to 2), the party's first.
    pub signatures: Vec<SignatureRecord>,
    /// Every certificate ever registered, oldest first.
    pub certificates: Vec<CertificateRecord>,
    pub termination: Option<TerminationRecord>,
    /// The party's own limits (an operator's; unset values are the server's defaults).
    pub limits: LimitOverrides,
    pub applied_at: Micros,
    pub updated_at: Micros,
}

impl PartyRecord {
    /// The party's state on `today`: TERMINATED from a scheduled termination's effective date on.
    pub fn state_on(&self, today: Date) -> PartyState {
        effective_state(
            self.stored_state,
            self.termination.as_ref().map(|t| t.effective_date),
            today,
        )
    }
}

/// One recorded signature, with its side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRecord {
    pub signer: Signer,
    pub signature: Signature,
}

/// A registered client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub certificate: NewCertificate,
    pub added_at: Micros,
    pub added_by: Option<String>,
    pub revoked_at: Option<Micros>,
    pub revocation_reason: Option<String>,
}

/// A registered termination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationRecord {
    pub effective_date: Date,
    /// `None` for terminations registered before notices were recorded.
    pub notice_received_on: Option<Date>,
    pub override_reason: Option<String>,
    pub scheduled_at: Option<Micros>,
    pub scheduled_by: Option<String>,
}

/// One entry of a party's audit history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub entry_id: i64,
    pub at: Micros,
    /// `None` for actions the server records itself.
    pub operator: Option<Actor>,
    pub action: PartyAction,
    pub party_id: String,
    /// `None` for the application: the party did not exist before.
    pub before_state: Option<PartyState>,
    pub after_state: PartyState,
    pub idempotency_key: Option<String>,
    /// A JSON object with the details of the action.
    pub details_json: String,
}

/// Which parties a listing returns; empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartyFilter {
    pub kinds: Vec<PartyKind>,
    pub states: Vec<PartyState>,
}

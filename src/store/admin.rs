//! Onboarding and termination of parties, as the admin API drives them.
//!
//! Every mutating operation runs in ONE transaction that
//! 1. records any scheduled termination whose effective date has come ([`Tx::settle`]);
//! 2. claims the call's idempotency key, or answers with the stored response of an earlier call
//!    with the same key and the same request (a different request → [`AdminError::IdempotencyKeyReused`]);
//! 3. locks the party and checks the step against the pure rules in [`crate::domain::lifecycle`];
//! 4. makes the change, appends the audit entry and stores the encoded response with the key.
//!
//! Nothing is half-done: a refused step rolls the whole transaction back, key claim included, so a
//! corrected retry with the same key is judged afresh. Responses are encoded by the caller (the
//! gRPC layer) through [`Idempotency::respond`], so no protobuf type enters the store.

use std::collections::BTreeSet;

use serde_json::json;
use time::Date;

use super::parties::new_id;
use super::{Backend, Store, StoreError, is_unique_violation, on_reader};
use crate::domain::clock::{Micros, format_date, from_micros, parse_date};
use crate::domain::lifecycle::{
    self, CatalogueBasis, CodeProblem, IllegalTransition, PartyAction, Registered, Signatures, Signer, Step,
    TerminationNotice, TerminationRefused, check_transition, effective_state,
};
use crate::domain::party::AgreementType;
use crate::domain::{OrgNumber, PartyKind, PartyState};
use crate::store::rows::{LegalBasis, NewCertificate};

/// A transaction on either backend. Helpers below write their SQL once; [`on_tx`] compiles it for
/// each backend.
enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Runs `$body` with `$conn` bound to the transaction's connection (compiled once per backend).
macro_rules! on_tx {
    ($tx:expr, |$conn:ident| $body:expr) => {
        match $tx {
            Tx::Sqlite(t) => {
                let $conn: &mut sqlx::SqliteConnection = &mut *t;
                $body
            }
            Tx::Postgres(t) => {
                let $conn: &mut sqlx::PgConnection = &mut *t;
                $body
            }
        }
    };
}
/// The operator on whose behalf a change is made (recorded in the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    /// SHA-256 of the operator's client certificate.
    pub fingerprint: String,
}

/// The idempotency of one mutating call.
pub struct Idempotency<'a> {
    /// The caller's key (unique per intended change).
    pub key: &'a str,
    /// A hash of the request without its key; the same key with another hash is refused.
    pub request_hash: &'a str,
    /// Encodes the call's response from the party as it is after the change. The bytes are stored
    /// with the key and returned to every retry.
    pub respond: &'a (dyn Fn(&PartyRecord) -> Vec<u8> + Sync),
}

impl std::fmt::Debug for Idempotency<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("key", &self.key)
            .field("request_hash", &self.request_hash)
            .finish_non_exhaustive()
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
    pub org_number: OrgNumber,
    pub name: String,
    pub kind: PartyKind,
    /// The state as stored; see [`PartyRecord::state_on`] for the state that holds on a date.
    pub stored_state: PartyState,
    pub contact_name: String,
    pub contact_email: String,
    pub requested_basis_codes: Vec<String>,
    pub requested_benefit_codes: Vec<String>,
    pub agreement: Option<AgreementRecord>,
    /// 0 to 2 signatures, the party's first.
    pub signatures: Vec<SignatureRecord>,
    /// Every certificate ever registered, oldest first.
    pub certificates: Vec<CertificateRecord>,
    pub termination: Option<TerminationRecord>,
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

/// A party's agreement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgreementRecord {
    pub agreement_id: String,
    pub agreement_type: AgreementType,
    pub basis_codes: Vec<String>,
    pub benefit_codes: Vec<String>,
    pub valid_from: Date,
    /// 0 for authorities.
    pub notice_period_days: u32,
    pub sent_at: Micros,
}

/// One recorded signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureRecord {
    pub signer: Signer,
    pub signed_by: String,
    pub signed_on: Date,
    /// `None` for signatures registered outside the admin API (development seeds).
    pub recorded_at: Option<Micros>,
    pub recorded_by: String,
}

/// A registered client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRecord {
    pub fingerprint: String,
    pub subject: String,
    pub serial: String,
    pub not_before: Micros,
    pub not_after: Micros,
    pub added_at: Micros,
    /// Empty for certificates registered outside the admin API.
    pub added_by: String,
    pub revoked_at: Option<Micros>,
    pub revocation_reason: String,
}

/// A registered termination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationRecord {
    pub effective_date: Date,
    /// `None` for terminations registered outside the admin API.
    pub notice_received_on: Option<Date>,
    pub override_reason: Option<String>,
    pub scheduled_at: Option<Micros>,
    pub scheduled_by: String,
}

/// One entry of a party's audit history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub entry_id: i64,
    pub at: Micros,
    /// Empty for actions the server records itself.
    pub operator_name: String,
    pub operator_fingerprint: String,
    pub action: PartyAction,
    pub party_id: String,
    /// `None` for the application: the party did not exist before.
    pub before_state: Option<PartyState>,
    pub after_state: PartyState,
    pub idempotency_key: String,
    /// A JSON object with the details of the action.
    pub details_json: String,
}

/// Which parties a listing returns; empty lists mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartyFilter {
    pub kinds: Vec<PartyKind>,
    pub states: Vec<PartyState>,
}

/// Why an administrative step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no such party")]
    PartyNotFound,
    #[error(transparent)]
    IllegalTransition(#[from] IllegalTransition),
    #[error("{0}")]
    Code(CodeProblem),
    #[error("the notice period is invalid: {0}")]
    NoticePeriodDays(&'static str),
    #[error("a party with this organisation number exists and is not terminated")]
    PartyAlreadyExists { party_id: Option<String> },
    #[error("the agreement id is already used by another agreement")]
    AgreementIdTaken,
    #[error("the certificate is already registered to another party or an operator")]
    CertificateAlreadyRegistered { to_operator: bool },
    #[error("the party has no certificate with this fingerprint")]
    CertificateNotFound,
    #[error(transparent)]
    Termination(#[from] TerminationRefused),
    #[error("the idempotency key was used before for a different request")]
    IdempotencyKeyReused,
    /// Another call claimed the same idempotency key at the same moment; the operation is retried
    /// once internally and this never reaches callers.
    #[error("a concurrent call holds the same idempotency key")]
    KeyRace,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        AdminError::Store(StoreError::Query(e))
    }
}

/// The catalogue as the checks need it, read before a transaction begins (it only changes by
/// migration).
struct Catalogue {
    bases: Vec<LegalBasis>,
    benefit_codes: Vec<String>,
    today: Date,
}

impl Catalogue {
    fn check(
        &self,
        kind: PartyKind,
        basis_codes: &[String],
        benefit_codes: &[String],
        require_coverage: bool,
    ) -> Result<(), AdminError> {
        let rules: Vec<CatalogueBasis<'_>> = self
            .bases
            .iter()
            .map(|b| CatalogueBasis {
                code: &b.code,
                party_kinds: &b.party_kinds,
                in_force: b.in_force_on(self.today),
                benefit_codes: &b.benefit_codes,
            })
            .collect();
        let known: Vec<&str> = self.benefit_codes.iter().map(String::as_str).collect();
        lifecycle::check_codes(kind, basis_codes, benefit_codes, &rules, &known, require_coverage)
            .map_err(AdminError::Code)
    }
}

impl Store {
    async fn catalogue(&self, now: Micros) -> Result<Catalogue, StoreError> {
        Ok(Catalogue {
            bases: self.legal_bases().await?,
            benefit_codes: self.benefit_types().await?.into_iter().map(|b| b.code).collect(),
            today: today(now),
        })
    }

    /// Runs `attempt` and, if it lost a race for its idempotency key, once more (the second run
    /// finds the winner's stored response).
    async fn with_key_retry<F, Fut>(attempt: F) -> Result<Vec<u8>, AdminError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, AdminError>>,
    {
        match attempt().await {
            Err(AdminError::KeyRace) => attempt().await,
            other => other,
        }
    }

    /// Registers an application (anmälan): a new party in state APPLIED. Returns the stored
    /// response.
    pub async fn apply_party(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        application: &NewApplication,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let catalogue = self.catalogue(now).await?;
        let catalogue = &catalogue;
        let result =
            Self::with_key_retry(move || self.apply_once(actor, idem, application, catalogue, now)).await;
        match result {
            // Lost a race with another application for the same number: name the winner.
            Err(AdminError::PartyAlreadyExists { party_id: None }) => Err(AdminError::PartyAlreadyExists {
                party_id: self.live_party_id_by_org_number(&application.org_number).await?,
            }),
            other => other,
        }
    }

    async fn apply_once(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        app: &NewApplication,
        catalogue: &Catalogue,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let mut tx = Tx::write(self).await?;
        tx.settle(now).await?;
        if let Some(replay) = tx.claim(actor, idem, PartyAction::Apply, now).await? {
            return Ok(replay);
        }
        catalogue.check(app.kind, &app.basis_codes, &app.benefit_codes, false)?;
        if let Some(existing) = tx.live_party_id(&app.org_number).await? {
            return Err(AdminError::PartyAlreadyExists {
                party_id: Some(existing),
            });
        }
        let party_id = new_id("pty");
        let inserted = on_tx!(&mut tx, |c| {
            sqlx::query(
                "INSERT INTO parties (party_id, org_number, name, kind, state, contact_name, contact_email, \
                                      requested_bases, requested_benefits, applied_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'APPLIED', $5, $6, $7, $8, $9, $9)",
            )
            .bind(&party_id)
            .bind(app.org_number.as_str())
            .bind(&app.name)
            .bind(app.kind.as_str())
            .bind(&app.contact_name)
            .bind(&app.contact_email)
            .bind(join_codes(&app.basis_codes))
            .bind(join_codes(&app.benefit_codes))
            .bind(now)
            .execute(&mut *c)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(AdminError::PartyAlreadyExists { party_id: None });
            }
            Err(e) => return Err(e.into()),
        }
        let details = json!({
            "org_number": app.org_number.to_string(),
            "name": app.name,
            "kind": app.kind.as_str(),
            "contact_name": app.contact_name,
            "contact_email": app.contact_email,
            "requested_basis_codes": app.basis_codes,
            "requested_benefit_type_codes": app.benefit_codes,
        });
        let line = AuditLine::by(
            actor,
            idem,
            PartyAction::Apply,
            &party_id,
            None,
            PartyState::Applied,
            details,
        );
        tx.finish(idem, &party_id, line, now).await
    }

    /// Records that the agreement was sent: APPLIED → AGREEMENT_SENT.
    pub async fn send_agreement(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        agreement: &NewAgreement,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let catalogue = self.catalogue(now).await?;
        let catalogue = &catalogue;
        Self::with_key_retry(move || {
            self.send_agreement_once(actor, idem, party_id, agreement, catalogue, now)
        })
        .await
    }

    async fn send_agreement_once(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        agreement: &NewAgreement,
        catalogue: &Catalogue,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let mut tx = Tx::write(self).await?;
        tx.settle(now).await?;
        if let Some(replay) = tx.claim(actor, idem, PartyAction::SendAgreement, now).await? {
            return Ok(replay);
        }
        let party = tx.lock_party(party_id).await?;
        let current = party.state_on(today(now))?;
        let next = check_transition(current, Step::SendAgreement)?;
        let kind = party.kind()?;
        catalogue.check(kind, &agreement.basis_codes, &agreement.benefit_codes, true)?;
        lifecycle::check_notice_period_days(kind, agreement.notice_period_days)
            .map_err(AdminError::NoticePeriodDays)?;
        let agreement_type = kind.agreement_type();
        let notice = agreement.notice_period_days;
        let inserted = on_tx!(&mut tx, |c| {
            sqlx::query(
                "INSERT INTO agreements (agreement_id, party_id, agreement_type, valid_from, notice_period_days, sent_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&agreement.agreement_id)
            .bind(party_id)
            .bind(agreement_type.as_str())
            .bind(format_date(agreement.valid_from))
            .bind(i64::from(notice))
            .bind(now)
            .execute(&mut *c)
            .await
            .map(|_| ())
        });
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(AdminError::AgreementIdTaken),
            Err(e) => return Err(e.into()),
        }
        let bases: BTreeSet<&String> = agreement.basis_codes.iter().collect();
        let benefits: BTreeSet<&String> = agreement.benefit_codes.iter().collect();
        for code in &bases {
            on_tx!(&mut tx, |c| {
                sqlx::query("INSERT INTO agreement_bases (agreement_id, basis_code) VALUES ($1, $2)")
                    .bind(&agreement.agreement_id)
                    .bind(*code)
                    .execute(&mut *c)
                    .await?;
            });
        }
        for code in &benefits {
            on_tx!(&mut tx, |c| {
                sqlx::query("INSERT INTO agreement_benefits (agreement_id, benefit_code) VALUES ($1, $2)")
                    .bind(&agreement.agreement_id)
                    .bind(*code)
                    .execute(&mut *c)
                    .await?;
            });
        }
        tx.set_state(party_id, next, now).await?;
        let details = json!({
            "agreement_id": agreement.agreement_id,
            "agreement_type": agreement_type.as_str(),
            "granted_basis_codes": bases,
            "granted_benefit_type_codes": benefits,
            "valid_from": format_date(agreement.valid_from),
            "notice_period_days": notice,
        });
        let line = AuditLine::by(
            actor,
            idem,
            PartyAction::SendAgreement,
            party_id,
            Some(current),
            next,
            details,
        );
        tx.finish(idem, party_id, line, now).await
    }

    /// Records one signature; AGREEMENT_SENT → SIGNED once both sides have signed.
    pub async fn record_signature(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        signature: &NewSignature,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        Self::with_key_retry(move || self.record_signature_once(actor, idem, party_id, signature, now)).await
    }

    async fn record_signature_once(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        signature: &NewSignature,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let mut tx = Tx::write(self).await?;
        tx.settle(now).await?;
        if let Some(replay) = tx.claim(actor, idem, PartyAction::RecordSignature, now).await? {
            return Ok(replay);
        }
        let party = tx.lock_party(party_id).await?;
        let current = party.state_on(today(now))?;
        let agreement = tx.agreement_row(party_id).await?;
        let already = agreement
            .as_ref()
            .map(AgreementRow::signatures)
            .unwrap_or_default();
        let next = check_transition(
            current,
            Step::RecordSignature {
                signer: signature.signer,
                already,
            },
        )?;
        let Some(agreement) = agreement else {
            // check_transition only allows AGREEMENT_SENT, which always has an agreement.
            return Err(StoreError::Corrupt("agreements (missing for AGREEMENT_SENT)").into());
        };
        let signed_on = format_date(signature.signed_on);
        let sql = match signature.signer {
            Signer::Party => {
                "UPDATE agreements SET party_signed_by = $1, party_signed_on = $2, \
                        party_signature_recorded_at = $3, party_signature_recorded_by = $4 \
                 WHERE agreement_id = $5"
            }
            Signer::Agency => {
                "UPDATE agreements SET agency_signed_by = $1, agency_signed_on = $2, \
                        agency_signature_recorded_at = $3, agency_signature_recorded_by = $4 \
                 WHERE agreement_id = $5"
            }
        };
        on_tx!(&mut tx, |c| {
            sqlx::query(sql)
                .bind(&signature.signed_by)
                .bind(&signed_on)
                .bind(now)
                .bind(&actor.name)
                .bind(&agreement.agreement_id)
                .execute(&mut *c)
                .await?;
        });
        tx.set_state(party_id, next, now).await?;
        let details = json!({
            "agreement_id": agreement.agreement_id,
            "signer": signature.signer.as_str(),
            "signed_by": signature.signed_by,
            "signed_on": signed_on,
        });
        let line = AuditLine::by(
            actor,
            idem,
            PartyAction::RecordSignature,
            party_id,
            Some(current),
            next,
            details,
        );
        tx.finish(idem, party_id, line, now).await
    }

    /// Registers a verified client certificate for the party; the first one connects it
    /// (SIGNED → CONNECTED). A certificate already registered to this party is left as it is.
    pub async fn add_certificate(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        certificate: &NewCertificate,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        Self::with_key_retry(move || self.add_certificate_once(actor, idem, party_id, certificate, now)).await
    }

    async fn add_certificate_once(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        cert: &NewCertificate,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let mut tx = Tx::write(self).await?;
        tx.settle(now).await?;
        if let Some(replay) = tx.claim(actor, idem, PartyAction::AddCertificate, now).await? {
            return Ok(replay);
        }
        let party = tx.lock_party(party_id).await?;
        let current = party.state_on(today(now))?;
        let owner: Option<(String,)> = on_tx!(&mut tx, |c| {
            sqlx::query_as("SELECT party_id FROM party_certificates WHERE fingerprint = $1")
                .bind(&cert.fingerprint)
                .fetch_optional(&mut *c)
                .await?
        });
        let operator: Option<(String,)> = on_tx!(&mut tx, |c| {
            sqlx::query_as("SELECT name FROM operators WHERE fingerprint = $1")
                .bind(&cert.fingerprint)
                .fetch_optional(&mut *c)
                .await?
        });
        if operator.is_some() {
            return Err(AdminError::CertificateAlreadyRegistered { to_operator: true });
        }
        let already_registered = match owner {
            Some((owner,)) if owner == party_id => true,
            Some(_) => return Err(AdminError::CertificateAlreadyRegistered { to_operator: false }),
            None => false,
        };
        let next = if already_registered {
            current
        } else {
            let scheduled_from = party.state_before_termination()?;
            let next = check_transition(current, Step::AddCertificate { scheduled_from })?;
            let inserted = on_tx!(&mut tx, |c| {
                sqlx::query(
                    "INSERT INTO party_certificates (fingerprint, party_id, subject, serial, not_before, not_after, \
                                                     added_at, added_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&cert.fingerprint)
                .bind(party_id)
                .bind(&cert.subject)
                .bind(&cert.serial)
                .bind(cert.not_before)
                .bind(cert.not_after)
                .bind(now)
                .bind(&actor.name)
                .execute(&mut *c)
                .await
                .map(|_| ())
            });
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(AdminError::CertificateAlreadyRegistered { to_operator: false });
                }
                Err(e) => return Err(e.into()),
            }
            tx.set_state(party_id, next, now).await?;
            next
        };
        let details = json!({
            "fingerprint": cert.fingerprint,
            "subject": cert.subject,
            "serial": cert.serial,
            "not_before": format_instant(cert.not_before),
            "not_after": format_instant(cert.not_after),
            "already_registered": already_registered,
        });
        let line = AuditLine::by(
            actor,
            idem,
            PartyAction::AddCertificate,
            party_id,
            Some(current),
            next,
            details,
        );
        tx.finish(idem, party_id, line, now).await
    }

    /// Revokes one of the party's certificates from `now` on. The party's state does not change.
    /// Revoking a revoked certificate leaves it as it is.
    pub async fn revoke_certificate(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        fingerprint: &str,
        reason: &str,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        Self::with_key_retry(move || {
            self.revoke_certificate_once(actor, idem, party_id, fingerprint, reason, now)
        })
        .await
    }

    async fn revoke_certificate_once(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        fingerprint: &str,
        reason: &str,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let mut tx = Tx::write(self).await?;
        tx.settle(now).await?;
        if let Some(replay) = tx.claim(actor, idem, PartyAction::RevokeCertificate, now).await? {
            return Ok(replay);
        }
        let party = tx.lock_party(party_id).await?;
        let current = party.state_on(today(now))?;
        let next = check_transition(current, Step::RevokeCertificate)?;
        let revoked_at: Option<(Option<i64>,)> = on_tx!(&mut tx, |c| {
            sqlx::query_as(
                "SELECT revoked_at FROM party_certificates WHERE party_id = $1 AND fingerprint = $2",
            )
            .bind(party_id)
            .bind(fingerprint)
            .fetch_optional(&mut *c)
            .await?
        });
        let Some((revoked_at,)) = revoked_at else {
            return Err(AdminError::CertificateNotFound);
        };
        let already_revoked = revoked_at.is_some();
        if !already_revoked {
            on_tx!(&mut tx, |c| {
                sqlx::query(
                    "UPDATE party_certificates SET revoked_at = $1, revoke_reason = $2 \
                     WHERE party_id = $3 AND fingerprint = $4",
                )
                .bind(now)
                .bind(reason)
                .bind(party_id)
                .bind(fingerprint)
                .execute(&mut *c)
                .await?;
            });
            tx.set_state(party_id, next, now).await?;
        }
        let details = json!({
            "fingerprint": fingerprint,
            "reason": reason,
            "already_revoked": already_revoked,
        });
        let line = AuditLine::by(
            actor,
            idem,
            PartyAction::RevokeCertificate,
            party_id,
            Some(current),
            next,
            details,
        );
        tx.finish(idem, party_id, line, now).await
    }

    /// Registers a termination (uppsägning): → TERMINATION_SCHEDULED, or TERMINATED at once when the
    /// effective date is today or earlier.
    pub async fn schedule_termination(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        notice: &TerminationNotice,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        Self::with_key_retry(move || self.schedule_termination_once(actor, idem, party_id, notice, now)).await
    }

    async fn schedule_termination_once(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        notice: &TerminationNotice,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let today = today(now);
        let mut tx = Tx::write(self).await?;
        tx.settle(now).await?;
        if let Some(replay) = tx
            .claim(actor, idem, PartyAction::ScheduleTermination, now)
            .await?
        {
            return Ok(replay);
        }
        let party = tx.lock_party(party_id).await?;
        let current = party.state_on(today)?;
        let immediate = notice.effective_date <= today;
        let next = check_transition(current, Step::ScheduleTermination { immediate })?;
        let agreement = tx.agreement_row(party_id).await?;
        // The avtal's notice period binds once both sides have signed it.
        let binding_notice = agreement
            .as_ref()
            .filter(|a| {
                a.signatures()
                    == Signatures {
                        party: true,
                        agency: true,
                    }
            })
            .map(|a| u32::try_from(a.notice_period_days.unwrap_or(0)).unwrap_or(u32::MAX));
        let org_number = party.org_number()?;
        let registered = Registered {
            org_number: &org_number,
            name: &party.name,
            kind: party.kind()?,
            notice_period_days: binding_notice,
        };
        let accepted = lifecycle::check_termination(registered, notice, today)?;
        on_tx!(&mut tx, |c| {
            sqlx::query(
                "UPDATE parties SET state = $1, updated_at = $2, termination_effective = $3, \
                        termination_override = $4, termination_notice_received_on = $5, \
                        termination_scheduled_at = $2, termination_scheduled_by = $6, \
                        state_before_termination = $7 \
                 WHERE party_id = $8",
            )
            .bind(next.as_str())
            .bind(now)
            .bind(format_date(notice.effective_date))
            .bind(notice.override_reason.as_deref())
            .bind(format_date(notice.received_on))
            .bind(&actor.name)
            .bind(current.as_str())
            .bind(party_id)
            .execute(&mut *c)
            .await?;
        });
        let details = json!({
            "is_termination": true,
            "org_number": notice.org_number.to_string(),
            "organisation_name": notice.organisation_name,
            "effective_date": format_date(notice.effective_date),
            "notice_received_on": format_date(notice.received_on),
            "notice_period_days": binding_notice,
            "override_reason": notice.override_reason,
            "notice_period_overridden": accepted.overridden,
            "immediate": accepted.immediate,
        });
        let line = AuditLine::by(
            actor,
            idem,
            PartyAction::ScheduleTermination,
            party_id,
            Some(current),
            next,
            details,
        );
        tx.finish(idem, party_id, line, now).await
    }

    /// Withdraws a scheduled termination before it takes effect: back to the state before it.
    pub async fn withdraw_termination(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        reason: &str,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        Self::with_key_retry(move || self.withdraw_termination_once(actor, idem, party_id, reason, now)).await
    }

    async fn withdraw_termination_once(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        party_id: &str,
        reason: &str,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let mut tx = Tx::write(self).await?;
        tx.settle(now).await?;
        if let Some(replay) = tx
            .claim(actor, idem, PartyAction::WithdrawTermination, now)
            .await?
        {
            return Ok(replay);
        }
        let party = tx.lock_party(party_id).await?;
        let current = party.state_on(today(now))?;
        let resume = party.state_before_termination()?.unwrap_or(PartyState::Connected);
        let next = check_transition(current, Step::WithdrawTermination { resume })?;
        on_tx!(&mut tx, |c| {
            sqlx::query(
                "UPDATE parties SET state = $1, updated_at = $2, termination_effective = NULL, \
                        termination_override = NULL, termination_notice_received_on = NULL, \
                        termination_scheduled_at = NULL, termination_scheduled_by = NULL, \
                        state_before_termination = NULL \
                 WHERE party_id = $3",
            )
            .bind(next.as_str())
            .bind(now)
            .bind(party_id)
            .execute(&mut *c)
            .await?;
        });
        let details = json!({
            "reason": reason,
            "withdrawn_effective_date": party.termination_effective,
        });
        let line = AuditLine::by(
            actor,
            idem,
            PartyAction::WithdrawTermination,
            party_id,
            Some(current),
            next,
            details,
        );
        tx.finish(idem, party_id, line, now).await
    }

    /// Records every scheduled termination whose effective date has come (state TERMINATED and a
    /// TERMINATION_TOOK_EFFECT audit entry). Cheap when there is nothing to do; readers call it
    /// so that what they show is also what is stored.
    pub async fn settle_terminations(&self, now: Micros) -> Result<(), StoreError> {
        let due: Option<(String,)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT party_id FROM parties \
                 WHERE state = 'TERMINATION_SCHEDULED' AND termination_effective <= $1 LIMIT 1",
            )
            .bind(format_date(today(now)))
            .fetch_optional(pool)
            .await?
        });
        if due.is_none() {
            return Ok(());
        }
        let mut tx = Tx::write(self).await?;
        tx.settle(now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One party with everything registered about it.
    pub async fn party_record(&self, party_id: &str) -> Result<Option<PartyRecord>, StoreError> {
        let mut tx = Tx::read(self).await?;
        let record = tx.record(party_id).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The party with this organisation number that is not terminated, or else the one terminated
    /// most recently.
    pub async fn party_record_by_org_number(
        &self,
        org: &OrgNumber,
    ) -> Result<Option<PartyRecord>, StoreError> {
        let mut tx = Tx::read(self).await?;
        let id: Option<(String,)> = on_tx!(&mut tx, |c| {
            sqlx::query_as(
                "SELECT party_id FROM parties WHERE org_number = $1 \
                 ORDER BY CASE WHEN state = 'TERMINATED' THEN 1 ELSE 0 END, updated_at DESC, party_id DESC \
                 LIMIT 1",
            )
            .bind(org.as_str())
            .fetch_optional(&mut *c)
            .await?
        });
        let record = match id {
            Some((id,)) => tx.record(&id).await?,
            None => None,
        };
        tx.commit().await?;
        Ok(record)
    }

    /// Up to `limit` parties matching `filter`, ordered by name then party id, after the party
    /// `after` = (name, party id) when given.
    pub async fn list_party_records(
        &self,
        filter: &PartyFilter,
        after: Option<(&str, &str)>,
        limit: u32,
    ) -> Result<Vec<PartyRecord>, StoreError> {
        let kinds = code_set(filter.kinds.iter().map(|k| k.as_str()));
        let states = code_set(filter.states.iter().map(|s| s.as_str()));
        let (after_name, after_id) = after.unwrap_or(("", ""));
        let mut tx = Tx::read(self).await?;
        let ids: Vec<(String,)> = on_tx!(&mut tx, |c| {
            sqlx::query_as(
                "SELECT party_id FROM parties \
                 WHERE ($1 = '' OR $1 LIKE ('%,' || kind || ',%')) \
                   AND ($2 = '' OR $2 LIKE ('%,' || state || ',%')) \
                   AND (name > $3 OR (name = $3 AND party_id > $4)) \
                 ORDER BY name, party_id LIMIT $5",
            )
            .bind(&kinds)
            .bind(&states)
            .bind(after_name)
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?
        });
        let mut records = Vec::with_capacity(ids.len());
        for (id,) in ids {
            if let Some(record) = tx.record(&id).await? {
                records.push(record);
            }
        }
        tx.commit().await?;
        Ok(records)
    }

    /// Up to `limit` entries of the party's audit history after entry `after_entry`, oldest first;
    /// `None` when there is no such party.
    pub async fn party_history(
        &self,
        party_id: &str,
        after_entry: i64,
        limit: u32,
    ) -> Result<Option<Vec<AuditRecord>>, StoreError> {
        let mut tx = Tx::read(self).await?;
        let exists: Option<(String,)> = on_tx!(&mut tx, |c| {
            sqlx::query_as("SELECT party_id FROM parties WHERE party_id = $1")
                .bind(party_id)
                .fetch_optional(&mut *c)
                .await?
        });
        if exists.is_none() {
            return Ok(None);
        }
        let rows: Vec<AuditRow> = on_tx!(&mut tx, |c| {
            sqlx::query_as(
                "SELECT entry_id, at, operator_name, operator_fingerprint, action, party_id, before_state, \
                        after_state, details, idempotency_key \
                 FROM party_audit WHERE party_id = $1 AND entry_id > $2 ORDER BY entry_id LIMIT $3",
            )
            .bind(party_id)
            .bind(after_entry)
            .bind(i64::from(limit))
            .fetch_all(&mut *c)
            .await?
        });
        tx.commit().await?;
        rows.into_iter()
            .map(AuditRow::into_record)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

/// The business date (Swedish) of an instant, as the rules judge dates.
fn today(now: Micros) -> Date {
    crate::domain::clock::business_date_at(now)
}

/// Instants in audit details, for people.
fn format_instant(micros: Micros) -> String {
    crate::domain::clock::format_instant(from_micros(micros))
}

/// Codes as stored in a single column: comma-separated.
fn join_codes(codes: &[String]) -> String {
    codes.join(",")
}

fn split_codes(stored: &str) -> Vec<String> {
    stored
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// A set of codes for a `LIKE` filter: `,A,B,`, or empty for "any".
fn code_set<'a>(codes: impl Iterator<Item = &'a str>) -> String {
    let codes: Vec<&str> = codes.collect();
    if codes.is_empty() {
        String::new()
    } else {
        format!(",{},", codes.join(","))
    }
}

/// The columns of `parties` that [`PartyRow`] reads.
macro_rules! party_columns {
    () => {
        "party_id, org_number, name, kind, state, contact_name, contact_email, requested_bases, \
         requested_benefits, applied_at, updated_at, termination_effective, termination_override, \
         termination_notice_received_on, termination_scheduled_at, termination_scheduled_by, \
         state_before_termination"
    };
}

#[derive(sqlx::FromRow)]
struct PartyRow {
    party_id: String,
    org_number: String,
    name: String,
    kind: String,
    state: String,
    contact_name: String,
    contact_email: String,
    requested_bases: String,
    requested_benefits: String,
    applied_at: i64,
    updated_at: i64,
    termination_effective: Option<String>,
    termination_override: Option<String>,
    termination_notice_received_on: Option<String>,
    termination_scheduled_at: Option<i64>,
    termination_scheduled_by: Option<String>,
    state_before_termination: Option<String>,
}

impl PartyRow {
    fn kind(&self) -> Result<PartyKind, StoreError> {
        PartyKind::parse(&self.kind).ok_or(StoreError::Corrupt("parties.kind"))
    }

    fn org_number(&self) -> Result<OrgNumber, StoreError> {
        OrgNumber::parse(&self.org_number).map_err(|_| StoreError::Corrupt("parties.org_number"))
    }

    fn termination_effective(&self) -> Result<Option<Date>, StoreError> {
        optional_date(
            self.termination_effective.as_deref(),
            "parties.termination_effective",
        )
    }

    /// The state a pending termination was registered in. Terminations scheduled before the admin
    /// API existed were only possible for connected parties, so those count as CONNECTED.
    fn state_before_termination(&self) -> Result<Option<PartyState>, StoreError> {
        match (&self.state_before_termination, &self.termination_effective) {
            (Some(s), _) => PartyState::parse(s)
                .map(Some)
                .ok_or(StoreError::Corrupt("parties.state_before_termination")),
            (None, Some(_)) => Ok(Some(PartyState::Connected)),
            (None, None) => Ok(None),
        }
    }

    /// The state that holds on `today` (see [`effective_state`]).
    fn state_on(&self, today: Date) -> Result<PartyState, StoreError> {
        let stored = PartyState::parse(&self.state).ok_or(StoreError::Corrupt("parties.state"))?;
        Ok(effective_state(stored, self.termination_effective()?, today))
    }
}

const AGREEMENT_COLUMNS_SQL: &str = "SELECT agreement_id, agreement_type, valid_from, notice_period_days, sent_at, \
            party_signed_by, party_signed_on, party_signature_recorded_at, party_signature_recorded_by, \
            agency_signed_by, agency_signed_on, agency_signature_recorded_at, agency_signature_recorded_by \
     FROM agreements WHERE party_id = $1 ORDER BY sent_at DESC, agreement_id DESC LIMIT 1";

#[derive(sqlx::FromRow)]
struct AgreementRow {
    agreement_id: String,
    agreement_type: String,
    valid_from: String,
    notice_period_days: Option<i64>,
    sent_at: i64,
    party_signed_by: Option<String>,
    party_signed_on: Option<String>,
    party_signature_recorded_at: Option<i64>,
    party_signature_recorded_by: Option<String>,
    agency_signed_by: Option<String>,
    agency_signed_on: Option<String>,
    agency_signature_recorded_at: Option<i64>,
    agency_signature_recorded_by: Option<String>,
}

impl AgreementRow {
    fn signatures(&self) -> Signatures {
        Signatures {
            party: self.party_signed_on.is_some(),
            agency: self.agency_signed_on.is_some(),
        }
    }

    fn signature_records(&self) -> Result<Vec<SignatureRecord>, StoreError> {
        let mut out = Vec::new();
        for (signer, by, on, at, recorded_by) in [
            (
                Signer::Party,
                &self.party_signed_by,
                &self.party_signed_on,
                self.party_signature_recorded_at,
                &self.party_signature_recorded_by,
            ),
            (
                Signer::Agency,
                &self.agency_signed_by,
                &self.agency_signed_on,
                self.agency_signature_recorded_at,
                &self.agency_signature_recorded_by,
            ),
        ] {
            if let Some(on) = on {
                out.push(SignatureRecord {
                    signer,
                    signed_by: by.clone().unwrap_or_default(),
                    signed_on: parse_date(on).ok_or(StoreError::Corrupt("agreements.signed_on"))?,
                    recorded_at: at,
                    recorded_by: recorded_by.clone().unwrap_or_default(),
                });
            }
        }
        Ok(out)
    }
}

#[derive(sqlx::FromRow)]
struct CertificateRow {
    fingerprint: String,
    subject: String,
    serial: String,
    not_before: i64,
    not_after: i64,
    added_at: i64,
    added_by: Option<String>,
    revoked_at: Option<i64>,
    revoke_reason: Option<String>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    entry_id: i64,
    at: i64,
    operator_name: String,
    operator_fingerprint: String,
    action: String,
    party_id: String,
    before_state: Option<String>,
    after_state: String,
    details: String,
    idempotency_key: String,
}

impl AuditRow {
    fn into_record(self) -> Result<AuditRecord, StoreError> {
        Ok(AuditRecord {
            entry_id: self.entry_id,
            at: self.at,
            operator_name: self.operator_name,
            operator_fingerprint: self.operator_fingerprint,
            action: PartyAction::parse(&self.action).ok_or(StoreError::Corrupt("party_audit.action"))?,
            party_id: self.party_id,
            before_state: match self.before_state {
                Some(s) => {
                    Some(PartyState::parse(&s).ok_or(StoreError::Corrupt("party_audit.before_state"))?)
                }
                None => None,
            },
            after_state: PartyState::parse(&self.after_state)
                .ok_or(StoreError::Corrupt("party_audit.after_state"))?,
            idempotency_key: self.idempotency_key,
            details_json: self.details,
        })
    }
}

fn optional_date(value: Option<&str>, what: &'static str) -> Result<Option<Date>, StoreError> {
    value
        .map(|d| parse_date(d).ok_or(StoreError::Corrupt(what)))
        .transpose()
}

/// One audit entry to append.
struct AuditLine {
    at: Micros,
    operator_name: String,
    operator_fingerprint: String,
    action: PartyAction,
    party_id: String,
    before: Option<PartyState>,
    after: PartyState,
    idempotency_key: String,
    details: serde_json::Value,
}

impl AuditLine {
    /// An action an operator asked for (its time is set when it is appended).
    fn by(
        actor: &Actor,
        idem: &Idempotency<'_>,
        action: PartyAction,
        party_id: &str,
        before: Option<PartyState>,
        after: PartyState,
        details: serde_json::Value,
    ) -> Self {
        Self {
            at: 0,
            operator_name: actor.name.clone(),
            operator_fingerprint: actor.fingerprint.clone(),
            action,
            party_id: party_id.to_string(),
            before,
            after,
            idempotency_key: idem.key.to_string(),
            details,
        }
    }
}

impl Tx {
    /// A transaction that may write (SQLite: takes the write lock at once).
    async fn write(store: &Store) -> Result<Tx, sqlx::Error> {
        Ok(match &store.backend {
            Backend::Sqlite { write, .. } => Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Backend::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    /// A transaction that only reads, so that a record is read from one snapshot.
    async fn read(store: &Store) -> Result<Tx, sqlx::Error> {
        Ok(match &store.backend {
            Backend::Sqlite { read, .. } => Tx::Sqlite(read.begin().await?),
            Backend::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }

    /// Records every scheduled termination whose effective date has come. The audit entry is
    /// dated 00:00 Swedish time of the effective date, when the termination took effect.
    async fn settle(&mut self, now: Micros) -> Result<(), StoreError> {
        let due: Vec<(String, String)> = on_tx!(self, |c| {
            sqlx::query_as(
                "SELECT party_id, termination_effective FROM parties \
                 WHERE state = 'TERMINATION_SCHEDULED' AND termination_effective <= $1 ORDER BY party_id",
            )
            .bind(format_date(today(now)))
            .fetch_all(&mut *c)
            .await?
        });
        for (party_id, effective) in due {
            let date = parse_date(&effective).ok_or(StoreError::Corrupt("parties.termination_effective"))?;
            let at = crate::domain::clock::business_day_start(date).min(now);
            let changed = on_tx!(self, |c| {
                sqlx::query(
                    "UPDATE parties SET state = 'TERMINATED', updated_at = $1 \
                     WHERE party_id = $2 AND state = 'TERMINATION_SCHEDULED'",
                )
                .bind(at)
                .bind(&party_id)
                .execute(&mut *c)
                .await?
                .rows_affected()
            });
            if changed == 1 {
                self.append(&AuditLine {
                    at,
                    operator_name: String::new(),
                    operator_fingerprint: String::new(),
                    action: PartyAction::TerminationTookEffect,
                    party_id,
                    before: Some(PartyState::TerminationScheduled),
                    after: PartyState::Terminated,
                    idempotency_key: String::new(),
                    details: json!({ "effective_date": effective }),
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Claims the call's idempotency key. Returns the stored response when the same request was
    /// made before with this key.
    async fn claim(
        &mut self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        action: PartyAction,
        now: Micros,
    ) -> Result<Option<Vec<u8>>, AdminError> {
        let earlier: Option<(String, Vec<u8>)> = on_tx!(self, |c| {
            sqlx::query_as("SELECT request_hash, response FROM admin_idempotency WHERE idempotency_key = $1")
                .bind(idem.key)
                .fetch_optional(&mut *c)
                .await?
        });
        if let Some((hash, response)) = earlier {
            return if hash == idem.request_hash {
                Ok(Some(response))
            } else {
                Err(AdminError::IdempotencyKeyReused)
            };
        }
        let claimed = on_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO admin_idempotency (idempotency_key, method, request_hash, operator_fingerprint, \
                                                created_at, response) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(idem.key)
            .bind(action.as_str())
            .bind(idem.request_hash)
            .bind(&actor.fingerprint)
            .bind(now)
            .bind(Vec::<u8>::new())
            .execute(&mut *c)
            .await
            .map(|_| ())
        });
        match claimed {
            Ok(_) => Ok(None),
            // PostgreSQL: another transaction committed the same key while this one waited.
            Err(e) if is_unique_violation(&e) => Err(AdminError::KeyRace),
            Err(e) => Err(e.into()),
        }
    }

    /// Appends the audit entry, encodes and stores the response with the key, and commits.
    async fn finish(
        mut self,
        idem: &Idempotency<'_>,
        party_id: &str,
        mut line: AuditLine,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        line.at = now;
        self.append(&line).await?;
        let record = self.record(party_id).await?.ok_or(AdminError::PartyNotFound)?;
        let response = (idem.respond)(&record);
        on_tx!(&mut self, |c| {
            sqlx::query(
                "UPDATE admin_idempotency SET response = $1, party_id = $2 WHERE idempotency_key = $3",
            )
            .bind(&response)
            .bind(party_id)
            .bind(idem.key)
            .execute(&mut *c)
            .await?;
        });
        self.commit().await?;
        tracing::info!(
            party_id = %line.party_id,
            action = %line.action,
            operator = %line.operator_name,
            before = line.before.map_or("-", PartyState::as_str),
            after = %line.after,
            "admin action recorded"
        );
        Ok(response)
    }

    async fn append(&mut self, line: &AuditLine) -> Result<(), StoreError> {
        let details = line.details.to_string();
        on_tx!(self, |c| {
            sqlx::query(
                "INSERT INTO party_audit (at, operator_name, operator_fingerprint, action, party_id, before_state, \
                                          after_state, details, idempotency_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(line.at)
            .bind(&line.operator_name)
            .bind(&line.operator_fingerprint)
            .bind(line.action.as_str())
            .bind(&line.party_id)
            .bind(line.before.map(PartyState::as_str))
            .bind(line.after.as_str())
            .bind(&details)
            .bind(&line.idempotency_key)
            .execute(&mut *c)
            .await?;
        });
        Ok(())
    }

    /// The id of the party with this organisation number that is not terminated.
    async fn live_party_id(&mut self, org: &OrgNumber) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_tx!(self, |c| {
            sqlx::query_as("SELECT party_id FROM parties WHERE org_number = $1 AND state <> 'TERMINATED'")
                .bind(org.as_str())
                .fetch_optional(&mut *c)
                .await?
        });
        Ok(row.map(|(id,)| id))
    }

    /// Reads the party and, on PostgreSQL, locks its row until the transaction ends (SQLite's single
    /// writer already serialises every change).
    async fn lock_party(&mut self, party_id: &str) -> Result<PartyRow, AdminError> {
        let row: Option<PartyRow> = match self {
            Tx::Sqlite(t) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    party_columns!(),
                    " FROM parties WHERE party_id = $1"
                ))
                .bind(party_id)
                .fetch_optional(&mut **t)
                .await?
            }
            Tx::Postgres(t) => {
                sqlx::query_as(concat!(
                    "SELECT ",
                    party_columns!(),
                    " FROM parties WHERE party_id = $1 FOR UPDATE"
                ))
                .bind(party_id)
                .fetch_optional(&mut **t)
                .await?
            }
        };
        row.ok_or(AdminError::PartyNotFound)
    }

    async fn set_state(&mut self, party_id: &str, state: PartyState, now: Micros) -> Result<(), StoreError> {
        on_tx!(self, |c| {
            sqlx::query("UPDATE parties SET state = $1, updated_at = $2 WHERE party_id = $3")
                .bind(state.as_str())
                .bind(now)
                .bind(party_id)
                .execute(&mut *c)
                .await?;
        });
        Ok(())
    }

    async fn agreement_row(&mut self, party_id: &str) -> Result<Option<AgreementRow>, StoreError> {
        Ok(on_tx!(self, |c| {
            sqlx::query_as(AGREEMENT_COLUMNS_SQL)
                .bind(party_id)
                .fetch_optional(&mut *c)
                .await?
        }))
    }

    /// Everything registered about one party.
    async fn record(&mut self, party_id: &str) -> Result<Option<PartyRecord>, StoreError> {
        let party: Option<PartyRow> = on_tx!(self, |c| {
            sqlx::query_as(concat!(
                "SELECT ",
                party_columns!(),
                " FROM parties WHERE party_id = $1"
            ))
            .bind(party_id)
            .fetch_optional(&mut *c)
            .await?
        });
        let Some(party) = party else {
            return Ok(None);
        };
        let agreement: Option<AgreementRow> = on_tx!(self, |c| {
            sqlx::query_as(AGREEMENT_COLUMNS_SQL)
                .bind(party_id)
                .fetch_optional(&mut *c)
                .await?
        });
        let (bases, benefits): (Vec<(String,)>, Vec<(String,)>) = match &agreement {
            Some(a) => on_tx!(self, |c| {
                let bases = sqlx::query_as(
                    "SELECT basis_code FROM agreement_bases WHERE agreement_id = $1 ORDER BY basis_code",
                )
                .bind(&a.agreement_id)
                .fetch_all(&mut *c)
                .await?;
                let benefits = sqlx::query_as(
                    "SELECT benefit_code FROM agreement_benefits WHERE agreement_id = $1 ORDER BY benefit_code",
                )
                .bind(&a.agreement_id)
                .fetch_all(&mut *c)
                .await?;
                (bases, benefits)
            }),
            None => (Vec::new(), Vec::new()),
        };
        let certificates: Vec<CertificateRow> = on_tx!(self, |c| {
            sqlx::query_as(
                "SELECT fingerprint, subject, serial, not_before, not_after, added_at, added_by, revoked_at, \
                        revoke_reason \
                 FROM party_certificates WHERE party_id = $1 ORDER BY added_at, fingerprint",
            )
            .bind(party_id)
            .fetch_all(&mut *c)
            .await?
        });
        let signatures = match &agreement {
            Some(a) => a.signature_records()?,
            None => Vec::new(),
        };
        let agreement = match agreement {
            Some(a) => Some(AgreementRecord {
                agreement_type: AgreementType::parse(&a.agreement_type)
                    .ok_or(StoreError::Corrupt("agreements.agreement_type"))?,
                valid_from: parse_date(&a.valid_from).ok_or(StoreError::Corrupt("agreements.valid_from"))?,
                notice_period_days: u32::try_from(a.notice_period_days.unwrap_or(0))
                    .map_err(|_| StoreError::Corrupt("agreements.notice_period_days"))?,
                sent_at: a.sent_at,
                basis_codes: bases.into_iter().map(|(c,)| c).collect(),
                benefit_codes: benefits.into_iter().map(|(c,)| c).collect(),
                agreement_id: a.agreement_id,
            }),
            None => None,
        };
        let termination = match party.termination_effective()? {
            Some(effective_date) => Some(TerminationRecord {
                effective_date,
                notice_received_on: optional_date(
                    party.termination_notice_received_on.as_deref(),
                    "parties.termination_notice_received_on",
                )?,
                override_reason: party.termination_override.clone(),
                scheduled_at: party.termination_scheduled_at,
                scheduled_by: party.termination_scheduled_by.clone().unwrap_or_default(),
            }),
            None => None,
        };
        Ok(Some(PartyRecord {
            kind: party.kind()?,
            org_number: party.org_number()?,
            stored_state: PartyState::parse(&party.state).ok_or(StoreError::Corrupt("parties.state"))?,
            requested_basis_codes: split_codes(&party.requested_bases),
            requested_benefit_codes: split_codes(&party.requested_benefits),
            party_id: party.party_id,
            name: party.name,
            contact_name: party.contact_name,
            contact_email: party.contact_email,
            agreement,
            signatures,
            certificates: certificates
                .into_iter()
                .map(|c| CertificateRecord {
                    fingerprint: c.fingerprint,
                    subject: c.subject,
                    serial: c.serial,
                    not_before: c.not_before,
                    not_after: c.not_after,
                    added_at: c.added_at,
                    added_by: c.added_by.unwrap_or_default(),
                    revoked_at: c.revoked_at,
                    revocation_reason: c.revoke_reason.unwrap_or_default(),
                })
                .collect(),
            termination,
            applied_at: party.applied_at,
            updated_at: party.updated_at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_lists_round_trip() {
        let codes = vec!["A".to_string(), "B_C".to_string()];
        assert_eq!(split_codes(&join_codes(&codes)), codes);
        assert!(split_codes("").is_empty());
        assert_eq!(code_set(["X", "Y"].into_iter()), ",X,Y,");
        assert_eq!(code_set(std::iter::empty()), "");
    }
}

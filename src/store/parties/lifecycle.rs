//! Every change to a party, as the admin API drives it.
//!
//! [`Store::change_party`] runs each step in ONE transaction that
//! 1. records any scheduled termination whose effective date has come ([`settle_due_terminations`]);
//! 2. claims the call's idempotency key, or answers with the stored response of an earlier call
//!    with the same key and the same request (a different request → [`AdminError::IdempotencyKeyReused`]);
//! 3. reads (and on PostgreSQL locks) the party and checks the step against the pure rules of
//!    [`crate::domain::lifecycle`];
//! 4. makes the change, appends the audit entry and stores the encoded response with the key.
//!
//! Nothing is half-done: a refused step rolls the whole transaction back, key claim included, so a
//! corrected retry with the same key is judged afresh. Responses are encoded by the caller (the
//! gRPC layer) through [`Idempotency::respond`], so no protobuf type enters the store.

use serde_json::json;

use super::rows;
use super::steps::{self, Catalogue, Ctx, lock, unique_or};
use super::{
    Actor, AdminError, Idempotency, NewAgreement, NewApplication, NewCertificate, NewConnectedParty,
    NewSignature, PartyRecord,
};
use crate::domain::PartyState;
use crate::domain::clock::{Micros, business_date_at, business_day_start, format_date};
use crate::domain::lifecycle::{PartyAction, Signer, TerminationNotice};
use crate::domain::limits::LimitOverrides;
use crate::store::delivery::AgencyAction;
use crate::store::tx::{Conn, on_conn};
use crate::store::{Store, StoreError, new_id, stored_date};

/// One change to a party (or, for [`PartyChange::Apply`], the party's creation).
#[derive(Debug, Clone, Copy)]
pub enum PartyChange<'a> {
    /// Registers an application (anmälan): a new party in state APPLIED.
    Apply(&'a NewApplication),
    /// Records that the agreement was sent: APPLIED → AGREEMENT_SENT.
    SendAgreement {
        party_id: &'a str,
        agreement: &'a NewAgreement,
    },
    /// Records one signature; AGREEMENT_SENT → SIGNED once both sides have signed.
    RecordSignature {
        party_id: &'a str,
        signature: &'a NewSignature,
    },
    /// Registers a verified client certificate; the first one connects the party (SIGNED →
    /// CONNECTED). A certificate already registered to this party is left as it is.
    AddCertificate {
        party_id: &'a str,
        certificate: &'a NewCertificate,
    },
    /// Revokes one of the party's certificates from now on; the party's state does not change.
    /// Revoking a revoked certificate leaves it as it is.
    RevokeCertificate {
        party_id: &'a str,
        fingerprint: &'a str,
        reason: &'a str,
    },
    /// Registers a termination (uppsägning): → TERMINATION_SCHEDULED, or TERMINATED at once when
    /// the effective date is today or earlier.
    ScheduleTermination {
        party_id: &'a str,
        notice: &'a TerminationNotice,
    },
    /// Withdraws a scheduled termination before it takes effect: back to the state before it.
    WithdrawTermination { party_id: &'a str, reason: &'a str },
    /// Sets the party's own limits (all three: an unset one is the server's default); the party's
    /// state does not change.
    SetLimits {
        party_id: &'a str,
        limits: &'a LimitOverrides,
        reason: &'a str,
    },
}

impl PartyChange<'_> {
    /// The party a step on an existing party is about (empty for an application).
    fn party_id(&self) -> &str {
        match self {
            Self::Apply(_) => "",
            Self::SendAgreement { party_id, .. }
            | Self::RecordSignature { party_id, .. }
            | Self::AddCertificate { party_id, .. }
            | Self::RevokeCertificate { party_id, .. }
            | Self::ScheduleTermination { party_id, .. }
            | Self::WithdrawTermination { party_id, .. }
            | Self::SetLimits { party_id, .. } => party_id,
        }
    }

    fn action(&self) -> PartyAction {
        match self {
            Self::Apply(_) => PartyAction::Apply,
            Self::SendAgreement { .. } => PartyAction::SendAgreement,
            Self::RecordSignature { .. } => PartyAction::RecordSignature,
            Self::AddCertificate { .. } => PartyAction::AddCertificate,
            Self::RevokeCertificate { .. } => PartyAction::RevokeCertificate,
            Self::ScheduleTermination { .. } => PartyAction::ScheduleTermination,
            Self::WithdrawTermination { .. } => PartyAction::WithdrawTermination,
            Self::SetLimits { .. } => PartyAction::SetLimits,
        }
    }
}

impl Store {
    /// Makes one change to a party (see the module docs) and returns the stored response.
    pub async fn change_party(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        change: PartyChange<'_>,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let catalogue = match change {
            PartyChange::Apply(_) | PartyChange::SendAgreement { .. } => Some(Catalogue {
                bases: self.legal_bases().await?.to_vec(),
                benefit_codes: self.benefit_codes().await?,
                today: business_date_at(now),
            }),
            _ => None,
        };
        // A lost race for the idempotency key is retried once: the second run finds the winner's
        // stored response.
        let mut result = self
            .change_once(actor, idem, change, catalogue.as_ref(), now)
            .await;
        if matches!(result, Err(AdminError::KeyRace)) {
            result = self
                .change_once(actor, idem, change, catalogue.as_ref(), now)
                .await;
        }
        match (result, change) {
            // Lost a race with another application for the same number: name the winner.
            (Err(AdminError::PartyAlreadyExists { party_id: None }), PartyChange::Apply(app)) => {
                Err(AdminError::PartyAlreadyExists {
                    party_id: self.live_party_id_by_org_number(&app.org_number).await?,
                })
            }
            (other, _) => other,
        }
    }

    async fn change_once(
        &self,
        actor: &Actor,
        idem: &Idempotency<'_>,
        change: PartyChange<'_>,
        catalogue: Option<&Catalogue>,
        now: Micros,
    ) -> Result<Vec<u8>, AdminError> {
        let action = change.action();
        let mut conn = self.write().await?;
        settle_due_terminations(&mut conn, now).await?;
        if let Some(replay) = claim(&mut conn, actor, idem, action, now).await? {
            return Ok(replay);
        }
        let today = business_date_at(now);
        let done = match change {
            PartyChange::Apply(app) => steps::apply(&mut conn, app, catalogue, now).await?,
            other => {
                let party = lock(&mut conn, other.party_id()).await?;
                let step = Ctx {
                    party: &party,
                    current: party.state_on(today)?,
                    actor,
                    today,
                    now,
                };
                let moved = match other {
                    PartyChange::SendAgreement { agreement, .. } => {
                        step.send_agreement(&mut conn, agreement, catalogue).await?
                    }
                    PartyChange::RecordSignature { signature, .. } => {
                        step.record_signature(&mut conn, signature).await?
                    }
                    PartyChange::AddCertificate { certificate, .. } => {
                        step.add_certificate(&mut conn, certificate).await?
                    }
                    PartyChange::RevokeCertificate {
                        fingerprint, reason, ..
                    } => step.revoke_certificate(&mut conn, fingerprint, reason).await?,
                    PartyChange::ScheduleTermination { notice, .. } => {
                        step.schedule_termination(&mut conn, notice).await?
                    }
                    PartyChange::WithdrawTermination { reason, .. } => {
                        step.withdraw_termination(&mut conn, reason).await?
                    }
                    PartyChange::SetLimits { limits, reason, .. } => {
                        step.set_limits(&mut conn, limits, reason).await?
                    }
                    PartyChange::Apply(_) => return Err(AdminError::PartyNotFound),
                };
                step.finish(&mut conn, moved).await?
            }
        };
        let line = AuditLine {
            at: now,
            operator: Some(actor),
            action,
            party_id: &done.party_id,
            before: done.before,
            after: done.after,
            idempotency_key: idem.key,
            details: done.details,
        };
        append_audit(&mut conn, &line).await?;
        let record = rows::record(&mut conn, &done.party_id)
            .await?
            .ok_or(AdminError::PartyNotFound)?;
        let response = (idem.respond)(&record);
        on_conn!(&mut conn, |c| {
            sqlx::query(
                "UPDATE admin_idempotency SET response = $1, party_id = $2 WHERE idempotency_key = $3",
            )
            .bind(&response)
            .bind(&done.party_id)
            .bind(idem.key)
            .execute(c)
            .await?;
        });
        conn.commit().await?;
        tracing::info!(
            party_id = %done.party_id,
            action = %action,
            operator = %actor.name,
            before = done.before.map_or("-", PartyState::as_str),
            after = %done.after,
            "admin action recorded"
        );
        Ok(response)
    }

    /// Takes a party through application, agreement, both signatures and its certificates in one
    /// go, as `actor`: the demo parties of `serve --dev`, test fixtures and benchmarks. Each step is
    /// the lifecycle's own (validated, audited, idempotent by a key derived from the organisation
    /// number and the agreement id), so running it again for a connected party only adds
    /// certificates it does not have yet. Returns the party's id.
    pub async fn onboard_connected(
        &self,
        actor: &Actor,
        party: &NewConnectedParty,
        now: Micros,
    ) -> Result<String, AdminError> {
        let today = business_date_at(now);
        let respond = |p: &PartyRecord| p.party_id.clone().into_bytes();
        let run = async |key: String, change: PartyChange<'_>| -> Result<String, AdminError> {
            let idem = Idempotency {
                key: &key,
                request_hash: &key,
                respond: &respond,
            };
            let bytes = self.change_party(actor, &idem, change, now).await?;
            String::from_utf8(bytes)
                .map_err(|_| AdminError::Store(StoreError::Corrupt("admin_idempotency.response")))
        };
        let application = &party.application;
        let party_id = match self.live_party_id_by_org_number(&application.org_number).await? {
            Some(id) => id,
            None => match run(new_id("onboard"), PartyChange::Apply(application)).await {
                Ok(id) => id,
                // Another onboarding of the same organisation got there first.
                Err(AdminError::PartyAlreadyExists { party_id: Some(id) }) => id,
                Err(e) => return Err(e),
            },
        };
        // The later steps' keys name the party, so running this again finds them made (and a
        // terminated party's steps are never replayed for a new party of the same organisation).
        let key = |step: &str| format!("onboard:{party_id}:{step}");
        let stored = self
            .party_record(&party_id)
            .await?
            .ok_or(AdminError::PartyNotFound)?;
        if stored.stored_state == PartyState::Applied {
            let step = PartyChange::SendAgreement {
                party_id: &party_id,
                agreement: &party.agreement,
            };
            run(key("agreement"), step).await?;
            for (signer, signed_by) in [
                (Signer::Party, &application.contact_name),
                (Signer::Agency, &actor.name),
            ] {
                let signature = NewSignature {
                    signer,
                    signed_by: signed_by.clone(),
                    signed_on: today,
                };
                let step = PartyChange::RecordSignature {
                    party_id: &party_id,
                    signature: &signature,
                };
                run(key(signer.as_str()), step).await?;
            }
        }
        for certificate in &party.certificates {
            if !stored
                .certificates
                .iter()
                .any(|c| c.certificate.fingerprint == certificate.fingerprint)
            {
                let step = PartyChange::AddCertificate {
                    party_id: &party_id,
                    certificate,
                };
                run(key(&format!("certificate:{}", certificate.fingerprint)), step).await?;
            }
        }
        Ok(party_id)
    }
}

/// Records every scheduled termination whose effective date has come, inside the caller's
/// transaction. The audit entry is dated 00:00 Swedish time of the effective date, when the
/// termination took effect.
pub(super) async fn settle_due_terminations(conn: &mut Conn, now: Micros) -> Result<(), StoreError> {
    let due: Vec<(String, String)> = on_conn!(&mut *conn, |c| {
        sqlx::query_as(
            "SELECT party_id, termination_effective FROM parties \
             WHERE state = 'TERMINATION_SCHEDULED' AND termination_effective <= $1 ORDER BY party_id",
        )
        .bind(format_date(business_date_at(now)))
        .fetch_all(c)
        .await?
    });
    for (party_id, effective) in due {
        let date = stored_date(&effective, "parties.termination_effective")?;
        let at = business_day_start(date).min(now);
        let changed = on_conn!(&mut *conn, |c| {
            sqlx::query(
                "UPDATE parties SET state = 'TERMINATED', updated_at = $1 \
                 WHERE party_id = $2 AND state = 'TERMINATION_SCHEDULED'",
            )
            .bind(at)
            .bind(&party_id)
            .execute(c)
            .await?
            .rows_affected()
        });
        if changed == 1 {
            let line = AuditLine {
                at,
                operator: None,
                action: PartyAction::TerminationTookEffect,
                party_id: &party_id,
                before: Some(PartyState::TerminationScheduled),
                after: PartyState::Terminated,
                idempotency_key: "",
                details: json!({ "effective_date": effective }),
            };
            append_audit(conn, &line).await?;
        }
    }
    Ok(())
}

/// Claims the call's idempotency key. Returns the stored response when the same request was made
/// before with this key.
async fn claim(
    conn: &mut Conn,
    actor: &Actor,
    idem: &Idempotency<'_>,
    action: PartyAction,
    now: Micros,
) -> Result<Option<Vec<u8>>, AdminError> {
    let earlier: Option<(String, Vec<u8>)> = on_conn!(&mut *conn, |c| {
        sqlx::query_as("SELECT request_hash, response FROM admin_idempotency WHERE idempotency_key = $1")
            .bind(idem.key)
            .fetch_optional(c)
            .await?
    });
    if let Some((hash, response)) = earlier {
        return if hash == idem.request_hash {
            Ok(Some(response))
        } else {
            Err(AdminError::IdempotencyKeyReused)
        };
    }
    let claimed = on_conn!(conn, |c| {
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
        .execute(c)
        .await
        .map(|_| ())
    });
    // PostgreSQL: another transaction committed the same key while this one waited.
    unique_or(claimed, AdminError::KeyRace).map(|()| None)
}

/// One entry of a party's audit history, to append.
struct AuditLine<'a> {
    at: Micros,
    /// `None` for what the server records itself.
    operator: Option<&'a Actor>,
    action: PartyAction,
    party_id: &'a str,
    before: Option<PartyState>,
    after: PartyState,
    idempotency_key: &'a str,
    details: serde_json::Value,
}

async fn append_audit(conn: &mut Conn, line: &AuditLine<'_>) -> Result<(), StoreError> {
    let details = line.details.to_string();
    let (name, fingerprint) = line
        .operator
        .map_or(("", ""), |a| (a.name.as_str(), a.fingerprint.as_str()));
    on_conn!(conn, |c| {
        sqlx::query(
            "INSERT INTO party_audit (at, operator_name, operator_fingerprint, action, party_id, before_state, \
                                      after_state, details, idempotency_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(line.at)
        .bind(name)
        .bind(fingerprint)
        .bind(line.action.as_str())
        .bind(line.party_id)
        .bind(line.before.map(PartyState::as_str))
        .bind(line.after.as_str())
        .bind(&details)
        .bind(line.idempotency_key)
        .execute(c)
        .await?;
    });
    Ok(())
}

/// Records the agency's action on a party's subscriptions in the party's audit history, inside the
/// caller's transaction (the one that changed them). The party's state does not change.
pub(crate) async fn append_agency_audit(
    conn: &mut Conn,
    actor: &Actor,
    party_id: &str,
    action: AgencyAction,
    details: serde_json::Value,
    now: Micros,
) -> Result<(), StoreError> {
    let party = rows::party_row(conn, party_id, false)
        .await?
        .ok_or(StoreError::NotFound)?;
    let state = party.state_on(business_date_at(now))?;
    let line = AuditLine {
        at: now,
        operator: Some(actor),
        action: match action {
            AgencyAction::Suspend => PartyAction::SuspendSubscriptions,
            AgencyAction::Resume => PartyAction::ResumeSubscriptions,
            AgencyAction::End => PartyAction::EndSubscriptions,
        },
        party_id,
        before: Some(state),
        after: state,
        idempotency_key: "",
        details,
    };
    append_audit(conn, &line).await
}

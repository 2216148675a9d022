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

use std::collections::BTreeSet;

use serde_json::json;
use time::Date;

use super::rows::{self, PartyRow};
use super::{
    Actor, AdminError, Idempotency, NewAgreement, NewApplication, NewCertificate, NewConnectedParty,
    NewSignature, PartyRecord,
};
use crate::domain::catalogue::LegalBasis;
use crate::domain::clock::{
    Micros, business_date_at, business_day_start, format_date, format_instant, from_micros,
};
use crate::domain::lifecycle::{
    self, CatalogueBasis, PartyAction, Registered, Signatures, Signer, Step, TerminationNotice,
    check_transition,
};
use crate::domain::{PartyKind, PartyState};
use crate::store::tx::{Conn, on_conn};
use crate::store::{Store, StoreError, is_unique_violation, join_codes, new_id, stored_date};

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
}

impl PartyChange<'_> {
    fn action(&self) -> PartyAction {
        match self {
            Self::Apply(_) => PartyAction::Apply,
            Self::SendAgreement { .. } => PartyAction::SendAgreement,
            Self::RecordSignature { .. } => PartyAction::RecordSignature,
            Self::AddCertificate { .. } => PartyAction::AddCertificate,
            Self::RevokeCertificate { .. } => PartyAction::RevokeCertificate,
            Self::ScheduleTermination { .. } => PartyAction::ScheduleTermination,
            Self::WithdrawTermination { .. } => PartyAction::WithdrawTermination,
        }
    }
}

/// What a step did: the audit entry's party, states and details.
struct Done {
    party_id: String,
    before: Option<PartyState>,
    after: PartyState,
    details: serde_json::Value,
}

/// The catalogue as the code checks need it, read before the transaction begins (it only changes
/// by migration).
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
                bases: self.legal_bases().await?,
                benefit_codes: self.benefit_types().await?.into_iter().map(|b| b.code).collect(),
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
            PartyChange::Apply(app) => apply(&mut conn, app, catalogue, now).await?,
            PartyChange::SendAgreement { party_id, agreement } => {
                let party = lock(&mut conn, party_id).await?;
                send_agreement(&mut conn, &party, agreement, catalogue, today, now).await?
            }
            PartyChange::RecordSignature { party_id, signature } => {
                let party = lock(&mut conn, party_id).await?;
                record_signature(&mut conn, &party, signature, actor, today, now).await?
            }
            PartyChange::AddCertificate {
                party_id,
                certificate,
            } => {
                let party = lock(&mut conn, party_id).await?;
                add_certificate(&mut conn, &party, certificate, actor, today, now).await?
            }
            PartyChange::RevokeCertificate {
                party_id,
                fingerprint,
                reason,
            } => {
                let party = lock(&mut conn, party_id).await?;
                revoke_certificate(&mut conn, &party, fingerprint, reason, today, now).await?
            }
            PartyChange::ScheduleTermination { party_id, notice } => {
                let party = lock(&mut conn, party_id).await?;
                schedule_termination(&mut conn, &party, notice, actor, today, now).await?
            }
            PartyChange::WithdrawTermination { party_id, reason } => {
                let party = lock(&mut conn, party_id).await?;
                withdraw_termination(&mut conn, &party, reason, today, now).await?
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
        let key = |step: &str| {
            format!(
                "onboard:{}:{}:{step}",
                party.org_number.as_str(),
                party.agreement_id
            )
        };
        let run = async |step: &str, change: PartyChange<'_>| -> Result<String, AdminError> {
            let key = key(step);
            let idem = Idempotency {
                key: &key,
                request_hash: &key,
                respond: &respond,
            };
            let bytes = self.change_party(actor, &idem, change, now).await?;
            String::from_utf8(bytes)
                .map_err(|_| AdminError::Store(StoreError::Corrupt("admin_idempotency.response")))
        };
        let party_id = match self.live_party_id_by_org_number(&party.org_number).await? {
            Some(id) => id,
            None => {
                run(
                    "apply",
                    PartyChange::Apply(&NewApplication {
                        org_number: party.org_number.clone(),
                        name: party.name.clone(),
                        kind: party.kind,
                        contact_name: party.contact_name.clone(),
                        contact_email: party.contact_email.clone(),
                        basis_codes: party.basis_codes.clone(),
                        benefit_codes: party.benefit_codes.clone(),
                    }),
                )
                .await?
            }
        };
        let stored = self
            .party_record(&party_id)
            .await?
            .ok_or(AdminError::PartyNotFound)?;
        if stored.stored_state == PartyState::Applied {
            let agreement = NewAgreement {
                agreement_id: party.agreement_id.clone(),
                basis_codes: party.basis_codes.clone(),
                benefit_codes: party.benefit_codes.clone(),
                valid_from: party.valid_from,
                notice_period_days: party.notice_period_days,
            };
            run(
                "agreement",
                PartyChange::SendAgreement {
                    party_id: &party_id,
                    agreement: &agreement,
                },
            )
            .await?;
            for (signer, signed_by) in [
                (Signer::Party, &party.contact_name),
                (Signer::Agency, &actor.name),
            ] {
                let signature = NewSignature {
                    signer,
                    signed_by: signed_by.clone(),
                    signed_on: today,
                };
                run(
                    signer.as_str(),
                    PartyChange::RecordSignature {
                        party_id: &party_id,
                        signature: &signature,
                    },
                )
                .await?;
            }
        }
        for certificate in &party.certificates {
            if !stored
                .certificates
                .iter()
                .any(|c| c.fingerprint == certificate.fingerprint)
            {
                run(
                    &format!("certificate:{}", certificate.fingerprint),
                    PartyChange::AddCertificate {
                        party_id: &party_id,
                        certificate,
                    },
                )
                .await?;
            }
        }
        Ok(party_id)
    }
}

/// Reads and locks the party a step is about.
async fn lock(conn: &mut Conn, party_id: &str) -> Result<PartyRow, AdminError> {
    rows::party_row(conn, party_id, true)
        .await?
        .ok_or(AdminError::PartyNotFound)
}

/// Maps a uniqueness violation of an insert to `taken`.
fn unique_or(result: Result<(), sqlx::Error>, taken: AdminError) -> Result<(), AdminError> {
    match result {
        Ok(()) => Ok(()),
        Err(e) if is_unique_violation(&e) => Err(taken),
        Err(e) => Err(e.into()),
    }
}

async fn set_state(
    conn: &mut Conn,
    party_id: &str,
    state: PartyState,
    now: Micros,
) -> Result<(), StoreError> {
    on_conn!(conn, |c| {
        sqlx::query("UPDATE parties SET state = $1, updated_at = $2 WHERE party_id = $3")
            .bind(state.as_str())
            .bind(now)
            .bind(party_id)
            .execute(c)
            .await?;
    });
    Ok(())
}

async fn apply(
    conn: &mut Conn,
    app: &NewApplication,
    catalogue: Option<&Catalogue>,
    now: Micros,
) -> Result<Done, AdminError> {
    if let Some(catalogue) = catalogue {
        catalogue.check(app.kind, &app.basis_codes, &app.benefit_codes, false)?;
    }
    if let Some(existing) = rows::live_party_id(conn, &app.org_number).await? {
        return Err(AdminError::PartyAlreadyExists {
            party_id: Some(existing),
        });
    }
    let party_id = new_id("pty");
    let inserted = on_conn!(conn, |c| {
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
        .execute(c)
        .await
        .map(|_| ())
    });
    unique_or(inserted, AdminError::PartyAlreadyExists { party_id: None })?;
    Ok(Done {
        party_id,
        before: None,
        after: PartyState::Applied,
        details: json!({
            "org_number": app.org_number.to_string(),
            "name": app.name,
            "kind": app.kind.as_str(),
            "contact_name": app.contact_name,
            "contact_email": app.contact_email,
            "requested_basis_codes": app.basis_codes,
            "requested_benefit_type_codes": app.benefit_codes,
        }),
    })
}

async fn send_agreement(
    conn: &mut Conn,
    party: &PartyRow,
    agreement: &NewAgreement,
    catalogue: Option<&Catalogue>,
    today: Date,
    now: Micros,
) -> Result<Done, AdminError> {
    let current = party.state_on(today)?;
    let next = check_transition(current, Step::SendAgreement)?;
    let kind = party.kind()?;
    if let Some(catalogue) = catalogue {
        catalogue.check(kind, &agreement.basis_codes, &agreement.benefit_codes, true)?;
    }
    lifecycle::check_notice_period_days(kind, agreement.notice_period_days)
        .map_err(AdminError::NoticePeriodDays)?;
    let agreement_type = kind.agreement_type();
    let notice = agreement.notice_period_days;
    let inserted = on_conn!(&mut *conn, |c| {
        sqlx::query(
            "INSERT INTO agreements (agreement_id, party_id, agreement_type, valid_from, notice_period_days, sent_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&agreement.agreement_id)
        .bind(&party.party_id)
        .bind(agreement_type.as_str())
        .bind(format_date(agreement.valid_from))
        .bind(i64::from(notice))
        .bind(now)
        .execute(c)
        .await
        .map(|_| ())
    });
    unique_or(inserted, AdminError::AgreementIdTaken)?;
    let bases: BTreeSet<&String> = agreement.basis_codes.iter().collect();
    let benefits: BTreeSet<&String> = agreement.benefit_codes.iter().collect();
    for (sql, codes) in [
        (
            "INSERT INTO agreement_bases (agreement_id, basis_code) VALUES ($1, $2)",
            &bases,
        ),
        (
            "INSERT INTO agreement_benefits (agreement_id, benefit_code) VALUES ($1, $2)",
            &benefits,
        ),
    ] {
        for code in codes {
            on_conn!(&mut *conn, |c| {
                sqlx::query(sql)
                    .bind(&agreement.agreement_id)
                    .bind(*code)
                    .execute(c)
                    .await?;
            });
        }
    }
    set_state(conn, &party.party_id, next, now).await?;
    Ok(Done {
        party_id: party.party_id.clone(),
        before: Some(current),
        after: next,
        details: json!({
            "agreement_id": agreement.agreement_id,
            "agreement_type": agreement_type.as_str(),
            "granted_basis_codes": bases,
            "granted_benefit_type_codes": benefits,
            "valid_from": format_date(agreement.valid_from),
            "notice_period_days": notice,
        }),
    })
}

async fn record_signature(
    conn: &mut Conn,
    party: &PartyRow,
    signature: &NewSignature,
    actor: &Actor,
    today: Date,
    now: Micros,
) -> Result<Done, AdminError> {
    let current = party.state_on(today)?;
    let agreement = rows::agreement(conn, &party.party_id).await?;
    let already = agreement
        .as_ref()
        .map(|(a, _)| a.signatures())
        .unwrap_or_default();
    let next = check_transition(
        current,
        Step::RecordSignature {
            signer: signature.signer,
            already,
        },
    )?;
    let Some((agreement, _)) = agreement else {
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
    on_conn!(&mut *conn, |c| {
        sqlx::query(sql)
            .bind(&signature.signed_by)
            .bind(&signed_on)
            .bind(now)
            .bind(&actor.name)
            .bind(&agreement.agreement_id)
            .execute(c)
            .await?;
    });
    set_state(conn, &party.party_id, next, now).await?;
    Ok(Done {
        party_id: party.party_id.clone(),
        before: Some(current),
        after: next,
        details: json!({
            "agreement_id": agreement.agreement_id,
            "signer": signature.signer.as_str(),
            "signed_by": signature.signed_by,
            "signed_on": signed_on,
        }),
    })
}

async fn add_certificate(
    conn: &mut Conn,
    party: &PartyRow,
    cert: &NewCertificate,
    actor: &Actor,
    today: Date,
    now: Micros,
) -> Result<Done, AdminError> {
    let current = party.state_on(today)?;
    let (owner, operator): (Option<(String,)>, Option<(String,)>) = on_conn!(&mut *conn, |c| {
        let owner = sqlx::query_as("SELECT party_id FROM party_certificates WHERE fingerprint = $1")
            .bind(&cert.fingerprint)
            .fetch_optional(&mut *c)
            .await?;
        let operator = sqlx::query_as("SELECT name FROM operators WHERE fingerprint = $1")
            .bind(&cert.fingerprint)
            .fetch_optional(&mut *c)
            .await?;
        (owner, operator)
    });
    if operator.is_some() {
        return Err(AdminError::CertificateAlreadyRegistered { to_operator: true });
    }
    let already_registered = match owner {
        Some((owner,)) if owner == party.party_id => true,
        Some(_) => return Err(AdminError::CertificateAlreadyRegistered { to_operator: false }),
        None => false,
    };
    let next = if already_registered {
        current
    } else {
        let scheduled_from = party.state_before_termination()?;
        let next = check_transition(current, Step::AddCertificate { scheduled_from })?;
        let inserted = on_conn!(&mut *conn, |c| {
            sqlx::query(
                "INSERT INTO party_certificates (fingerprint, party_id, subject, serial, not_before, not_after, \
                                                 added_at, added_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&cert.fingerprint)
            .bind(&party.party_id)
            .bind(&cert.subject)
            .bind(&cert.serial)
            .bind(cert.not_before)
            .bind(cert.not_after)
            .bind(now)
            .bind(&actor.name)
            .execute(c)
            .await
            .map(|_| ())
        });
        unique_or(
            inserted,
            AdminError::CertificateAlreadyRegistered { to_operator: false },
        )?;
        set_state(conn, &party.party_id, next, now).await?;
        next
    };
    let instant = |m: Micros| format_instant(from_micros(m));
    Ok(Done {
        party_id: party.party_id.clone(),
        before: Some(current),
        after: next,
        details: json!({
            "fingerprint": cert.fingerprint,
            "subject": cert.subject,
            "serial": cert.serial,
            "not_before": instant(cert.not_before),
            "not_after": instant(cert.not_after),
            "already_registered": already_registered,
        }),
    })
}

async fn revoke_certificate(
    conn: &mut Conn,
    party: &PartyRow,
    fingerprint: &str,
    reason: &str,
    today: Date,
    now: Micros,
) -> Result<Done, AdminError> {
    let current = party.state_on(today)?;
    let next = check_transition(current, Step::RevokeCertificate)?;
    let revoked_at: Option<(Option<i64>,)> = on_conn!(&mut *conn, |c| {
        sqlx::query_as("SELECT revoked_at FROM party_certificates WHERE party_id = $1 AND fingerprint = $2")
            .bind(&party.party_id)
            .bind(fingerprint)
            .fetch_optional(c)
            .await?
    });
    let Some((revoked_at,)) = revoked_at else {
        return Err(AdminError::CertificateNotFound);
    };
    let already_revoked = revoked_at.is_some();
    if !already_revoked {
        on_conn!(&mut *conn, |c| {
            sqlx::query(
                "UPDATE party_certificates SET revoked_at = $1, revoke_reason = $2 \
                 WHERE party_id = $3 AND fingerprint = $4",
            )
            .bind(now)
            .bind(reason)
            .bind(&party.party_id)
            .bind(fingerprint)
            .execute(c)
            .await?;
        });
        set_state(conn, &party.party_id, next, now).await?;
    }
    Ok(Done {
        party_id: party.party_id.clone(),
        before: Some(current),
        after: next,
        details: json!({
            "fingerprint": fingerprint,
            "reason": reason,
            "already_revoked": already_revoked,
        }),
    })
}

async fn schedule_termination(
    conn: &mut Conn,
    party: &PartyRow,
    notice: &TerminationNotice,
    actor: &Actor,
    today: Date,
    now: Micros,
) -> Result<Done, AdminError> {
    let current = party.state_on(today)?;
    let immediate = notice.effective_date <= today;
    let next = check_transition(current, Step::ScheduleTermination { immediate })?;
    let agreement = rows::agreement(conn, &party.party_id).await?;
    // The avtal's notice period binds once both sides have signed it.
    let binding_notice = agreement
        .as_ref()
        .filter(|(a, _)| {
            a.signatures()
                == Signatures {
                    party: true,
                    agency: true,
                }
        })
        .map(|(a, _)| u32::try_from(a.notice_period_days.unwrap_or(0)).unwrap_or(u32::MAX));
    let org_number = party.org_number()?;
    let registered = Registered {
        org_number: &org_number,
        name: &party.name,
        kind: party.kind()?,
        notice_period_days: binding_notice,
    };
    let accepted = lifecycle::check_termination(registered, notice, today)?;
    on_conn!(&mut *conn, |c| {
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
        .bind(&party.party_id)
        .execute(c)
        .await?;
    });
    Ok(Done {
        party_id: party.party_id.clone(),
        before: Some(current),
        after: next,
        details: json!({
            "is_termination": true,
            "org_number": notice.org_number.to_string(),
            "organisation_name": notice.organisation_name,
            "effective_date": format_date(notice.effective_date),
            "notice_received_on": format_date(notice.received_on),
            "notice_period_days": binding_notice,
            "override_reason": notice.override_reason,
            "notice_period_overridden": accepted.overridden,
            "immediate": accepted.immediate,
        }),
    })
}

async fn withdraw_termination(
    conn: &mut Conn,
    party: &PartyRow,
    reason: &str,
    today: Date,
    now: Micros,
) -> Result<Done, AdminError> {
    let current = party.state_on(today)?;
    let resume = party.state_before_termination()?.unwrap_or(PartyState::Connected);
    let next = check_transition(current, Step::WithdrawTermination { resume })?;
    on_conn!(&mut *conn, |c| {
        sqlx::query(
            "UPDATE parties SET state = $1, updated_at = $2, termination_effective = NULL, \
                    termination_override = NULL, termination_notice_received_on = NULL, \
                    termination_scheduled_at = NULL, termination_scheduled_by = NULL, \
                    state_before_termination = NULL \
             WHERE party_id = $3",
        )
        .bind(next.as_str())
        .bind(now)
        .bind(&party.party_id)
        .execute(c)
        .await?;
    });
    Ok(Done {
        party_id: party.party_id.clone(),
        before: Some(current),
        after: next,
        details: json!({
            "reason": reason,
            "withdrawn_effective_date": party.termination_effective,
        }),
    })
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

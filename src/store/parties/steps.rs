//! The seven steps of a party's lifecycle, each inside the transaction [`super::lifecycle`] opens:
//! read what the step needs, check it against the pure rules of [`crate::domain::lifecycle`],
//! write the change, and say what it did for the audit entry.

use std::collections::BTreeSet;

use serde_json::json;
use time::Date;

use super::rows::{self, PartyRow};
use super::{Actor, AdminError, NewAgreement, NewApplication, NewCertificate, NewSignature};
use crate::domain::catalogue::LegalBasis;
use crate::domain::clock::{Micros, format_date, format_instant, from_micros};
use crate::domain::lifecycle::{
    self, CatalogueBasis, Registered, Signatures, Signer, Step, TerminationNotice, check_transition,
};
use crate::domain::{PartyKind, PartyState};
use crate::store::tx::{Conn, on_conn};
use crate::store::{StoreError, is_unique_violation, join_codes, new_id};

/// What a step did: the audit entry's party, states and details.
pub(super) struct Done {
    pub party_id: String,
    pub before: Option<PartyState>,
    pub after: PartyState,
    pub details: serde_json::Value,
}

/// The catalogue as the code checks need it, read before the transaction begins (it only changes
/// by migration).
pub(super) struct Catalogue {
    pub bases: Vec<LegalBasis>,
    pub benefit_codes: Vec<String>,
    pub today: Date,
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

/// Reads and locks the party a step is about.
pub(super) async fn lock(conn: &mut Conn, party_id: &str) -> Result<PartyRow, AdminError> {
    rows::party_row(conn, party_id, true)
        .await?
        .ok_or(AdminError::PartyNotFound)
}

/// Maps a uniqueness violation of an insert to `taken`.
pub(super) fn unique_or(result: Result<(), sqlx::Error>, taken: AdminError) -> Result<(), AdminError> {
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

pub(super) async fn apply(
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

pub(super) async fn send_agreement(
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

pub(super) async fn record_signature(
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

pub(super) async fn add_certificate(
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

pub(super) async fn revoke_certificate(
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

pub(super) async fn schedule_termination(
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

pub(super) async fn withdraw_termination(
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

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
use crate::domain::limits::LimitOverrides;
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

/// What a step on an existing party decided: the state that follows, whether the party's row is
/// touched (its state and `updated_at` written), and the audit entry's details.
pub(super) struct Moved {
    next: PartyState,
    touched: bool,
    details: serde_json::Value,
}

impl Moved {
    fn to(next: PartyState, details: serde_json::Value) -> Self {
        Self {
            next,
            touched: true,
            details,
        }
    }
}

/// A step on an existing, locked party: who asks, the party, the state it is in today, and when.
pub(super) struct Ctx<'a> {
    pub party: &'a PartyRow,
    pub current: PartyState,
    pub actor: &'a Actor,
    pub today: Date,
    pub now: Micros,
}

impl Ctx<'_> {
    /// Writes what a step decided and says what it did, for the audit entry.
    pub async fn finish(&self, conn: &mut Conn, moved: Moved) -> Result<Done, StoreError> {
        if moved.touched {
            on_conn!(conn, |c| {
                sqlx::query("UPDATE parties SET state = $1, updated_at = $2 WHERE party_id = $3")
                    .bind(moved.next.as_str())
                    .bind(self.now)
                    .bind(&self.party.party_id)
                    .execute(c)
                    .await?;
            });
        }
        Ok(Done {
            party_id: self.party.party_id.clone(),
            before: Some(self.current),
            after: moved.next,
            details: moved.details,
        })
    }

    fn check(&self, step: Step) -> Result<PartyState, AdminError> {
        Ok(check_transition(self.current, step)?)
    }

    pub async fn send_agreement(
        &self,
        conn: &mut Conn,
        agreement: &NewAgreement,
        catalogue: Option<&Catalogue>,
    ) -> Result<Moved, AdminError> {
        let next = self.check(Step::SendAgreement)?;
        let kind = self.party.kind()?;
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
            .bind(&self.party.party_id)
            .bind(agreement_type.as_str())
            .bind(format_date(agreement.valid_from))
            .bind(i64::from(notice))
            .bind(self.now)
            .execute(c)
            .await
            .map(|_| ())
        });
        unique_or(inserted, AdminError::AgreementIdTaken)?;
        let bases: BTreeSet<&String> = agreement.basis_codes.iter().collect();
        let benefits: BTreeSet<&String> = agreement.benefit_codes.iter().collect();
        insert_grants(conn, &agreement.agreement_id, &bases, &benefits).await?;
        Ok(Moved::to(
            next,
            json!({
                "agreement_id": agreement.agreement_id,
                "agreement_type": agreement_type.as_str(),
                "granted_basis_codes": bases,
                "granted_benefit_type_codes": benefits,
                "valid_from": format_date(agreement.valid_from),
                "notice_period_days": notice,
            }),
        ))
    }

    pub async fn record_signature(
        &self,
        conn: &mut Conn,
        signature: &NewSignature,
    ) -> Result<Moved, AdminError> {
        let agreement = rows::agreement(conn, &self.party.party_id).await?;
        let already = agreement
            .as_ref()
            .map(|(a, _)| a.signatures())
            .unwrap_or_default();
        let next = self.check(Step::RecordSignature {
            signer: signature.signer,
            already,
        })?;
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
                .bind(self.now)
                .bind(&self.actor.name)
                .bind(&agreement.agreement_id)
                .execute(c)
                .await?;
        });
        Ok(Moved::to(
            next,
            json!({
                "agreement_id": agreement.agreement_id,
                "signer": signature.signer.as_str(),
                "signed_by": signature.signed_by,
                "signed_on": signed_on,
            }),
        ))
    }

    pub async fn add_certificate(&self, conn: &mut Conn, cert: &NewCertificate) -> Result<Moved, AdminError> {
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
            Some((owner,)) if owner == self.party.party_id => true,
            Some(_) => return Err(AdminError::CertificateAlreadyRegistered { to_operator: false }),
            None => false,
        };
        let next = if already_registered {
            self.current
        } else {
            let scheduled_from = self.party.termination.state_before()?;
            let next = self.check(Step::AddCertificate { scheduled_from })?;
            let inserted = on_conn!(&mut *conn, |c| {
                sqlx::query(
                    "INSERT INTO party_certificates (fingerprint, party_id, subject, serial, not_before, not_after, \
                                                     added_at, added_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&cert.fingerprint)
                .bind(&self.party.party_id)
                .bind(&cert.subject)
                .bind(&cert.serial)
                .bind(cert.not_before)
                .bind(cert.not_after)
                .bind(self.now)
                .bind(&self.actor.name)
                .execute(c)
                .await
                .map(|_| ())
            });
            unique_or(
                inserted,
                AdminError::CertificateAlreadyRegistered { to_operator: false },
            )?;
            next
        };
        let instant = |m: Micros| format_instant(from_micros(m));
        Ok(Moved {
            next,
            touched: !already_registered,
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

    pub async fn revoke_certificate(
        &self,
        conn: &mut Conn,
        fingerprint: &str,
        reason: &str,
    ) -> Result<Moved, AdminError> {
        let next = self.check(Step::RevokeCertificate)?;
        let revoked_at: Option<(Option<i64>,)> = on_conn!(&mut *conn, |c| {
            sqlx::query_as(
                "SELECT revoked_at FROM party_certificates WHERE party_id = $1 AND fingerprint = $2",
            )
            .bind(&self.party.party_id)
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
                .bind(self.now)
                .bind(reason)
                .bind(&self.party.party_id)
                .bind(fingerprint)
                .execute(c)
                .await?;
            });
        }
        Ok(Moved {
            next,
            touched: !already_revoked,
            details: json!({
                "fingerprint": fingerprint,
                "reason": reason,
                "already_revoked": already_revoked,
            }),
        })
    }

    /// Sets the party's own limits, in any state (a terminated party's are kept as history).
    pub async fn set_limits(
        &self,
        conn: &mut Conn,
        limits: &LimitOverrides,
        reason: &str,
    ) -> Result<Moved, AdminError> {
        let before = self.party.limits.overrides()?;
        on_conn!(&mut *conn, |c| {
            sqlx::query(
                "UPDATE parties SET max_streams = $1, requests_per_second = $2, rate_burst = $3 \
                 WHERE party_id = $4",
            )
            .bind(limits.max_streams.map(i64::from))
            .bind(limits.requests_per_second.map(i64::from))
            .bind(limits.burst.map(i64::from))
            .bind(&self.party.party_id)
            .execute(c)
            .await?;
        });
        let shown = |l: &LimitOverrides| {
            json!({
                "max_streams": l.max_streams,
                "requests_per_second": l.requests_per_second,
                "burst": l.burst,
            })
        };
        Ok(Moved {
            next: self.current,
            touched: true,
            details: json!({
                "before": shown(&before),
                "after": shown(limits),
                "reason": reason,
            }),
        })
    }

    pub async fn schedule_termination(
        &self,
        conn: &mut Conn,
        notice: &TerminationNotice,
    ) -> Result<Moved, AdminError> {
        let next = self.check(Step::ScheduleTermination {
            immediate: notice.effective_date <= self.today,
        })?;
        let agreement = rows::agreement(conn, &self.party.party_id).await?;
        // The avtal's notice period binds once both sides have signed it.
        let both = Signatures {
            party: true,
            agency: true,
        };
        let binding_notice = agreement
            .as_ref()
            .filter(|(a, _)| a.signatures() == both)
            .map(|(a, _)| u32::try_from(a.notice_period_days.unwrap_or(0)).unwrap_or(u32::MAX));
        let org_number = self.party.org_number()?;
        let registered = Registered {
            org_number: &org_number,
            name: &self.party.name,
            kind: self.party.kind()?,
            notice_period_days: binding_notice,
        };
        let accepted = lifecycle::check_termination(registered, notice, self.today)?;
        self.set_termination(conn, Some((notice, &self.current))).await?;
        Ok(Moved::to(
            next,
            json!({
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
        ))
    }

    pub async fn withdraw_termination(&self, conn: &mut Conn, reason: &str) -> Result<Moved, AdminError> {
        let resume = self
            .party
            .termination
            .state_before()?
            .unwrap_or(PartyState::Connected);
        let next = self.check(Step::WithdrawTermination { resume })?;
        self.set_termination(conn, None).await?;
        Ok(Moved::to(
            next,
            json!({
                "reason": reason,
                "withdrawn_effective_date": self.party.termination.effective_text(),
            }),
        ))
    }

    /// Records a termination notice (with the state it was registered in), or clears it.
    async fn set_termination(
        &self,
        conn: &mut Conn,
        notice: Option<(&TerminationNotice, &PartyState)>,
    ) -> Result<(), StoreError> {
        let date = |f: fn(&TerminationNotice) -> Date| notice.map(|(n, _)| format_date(f(n)));
        on_conn!(conn, |c| {
            sqlx::query(
                "UPDATE parties SET termination_effective = $1, termination_override = $2, \
                        termination_notice_received_on = $3, termination_scheduled_at = $4, \
                        termination_scheduled_by = $5, state_before_termination = $6 \
                 WHERE party_id = $7",
            )
            .bind(date(|n| n.effective_date))
            .bind(notice.and_then(|(n, _)| n.override_reason.as_deref()))
            .bind(date(|n| n.received_on))
            .bind(notice.map(|_| self.now))
            .bind(notice.map(|_| self.actor.name.as_str()))
            .bind(notice.map(|(_, before)| before.as_str()))
            .bind(&self.party.party_id)
            .execute(c)
            .await?;
        });
        Ok(())
    }
}

/// Writes what an agreement grants: a row per legal basis and per benefit type.
async fn insert_grants(
    conn: &mut Conn,
    agreement_id: &str,
    bases: &BTreeSet<&String>,
    benefits: &BTreeSet<&String>,
) -> Result<(), StoreError> {
    for (sql, codes) in [
        (
            "INSERT INTO agreement_bases (agreement_id, basis_code) VALUES ($1, $2)",
            bases,
        ),
        (
            "INSERT INTO agreement_benefits (agreement_id, benefit_code) VALUES ($1, $2)",
            benefits,
        ),
    ] {
        for code in codes {
            on_conn!(&mut *conn, |c| {
                sqlx::query(sql).bind(agreement_id).bind(*code).execute(c).await?;
            });
        }
    }
    Ok(())
}

/// Registers an application: a new party in state APPLIED.
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

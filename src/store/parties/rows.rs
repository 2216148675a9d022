//! The rows of the party tables as read, and how they become records.

use time::Date;

use super::{
    AuditRecord, CertificateRecord, NewApplication, NewCertificate, Operator, PartyRecord, SignatureRecord,
    TerminationRecord,
};
use crate::domain::catalogue::{Agreement, Signature};
use crate::domain::lifecycle::{PartyAction, Signatures, effective_state};
use crate::domain::limits::LimitOverrides;
use crate::domain::party::AgreementType;
use crate::domain::{OperatorRole, OrgNumber, PartyKind, PartyState};
use crate::store::tx::{Conn, on_conn};
use crate::store::{StoreError, non_empty, split_codes, stored_date, stored_opt_date};

pub(super) fn kind(v: &str) -> Result<PartyKind, StoreError> {
    PartyKind::parse(v).ok_or(StoreError::Corrupt("parties.kind"))
}

pub(super) fn state(v: &str, what: &'static str) -> Result<PartyState, StoreError> {
    PartyState::parse(v).ok_or(StoreError::Corrupt(what))
}

pub(super) fn org_number(v: &str) -> Result<OrgNumber, StoreError> {
    OrgNumber::parse(v).map_err(|_| StoreError::Corrupt("parties.org_number"))
}

pub(super) fn operator(
    (fingerprint, name, role, revoked_at): (String, String, String, Option<i64>),
) -> Result<Operator, StoreError> {
    Ok(Operator {
        fingerprint,
        name,
        role: OperatorRole::parse(&role).ok_or(StoreError::Corrupt("operators.role"))?,
        revoked_at,
    })
}

/// The columns of `parties` that [`PartyRow`] reads.
pub(super) const PARTY_COLUMNS: &str = "party_id, org_number, name, kind, state, contact_name, \
     contact_email, requested_bases, requested_benefits, applied_at, updated_at, termination_effective, \
     termination_override, termination_notice_received_on, termination_scheduled_at, \
     termination_scheduled_by, state_before_termination, max_streams, requests_per_second, rate_burst";

#[derive(sqlx::FromRow)]
pub(super) struct PartyRow {
    pub party_id: String,
    pub org_number: String,
    pub name: String,
    pub kind: String,
    pub state: String,
    pub contact_name: String,
    pub contact_email: String,
    pub requested_bases: String,
    pub requested_benefits: String,
    pub applied_at: i64,
    pub updated_at: i64,
    #[sqlx(flatten)]
    pub termination: TerminationColumns,
    #[sqlx(flatten)]
    pub limits: LimitColumns,
}

/// The columns of `parties` that hold the party's own limits (NULL: the server's default).
#[derive(sqlx::FromRow)]
pub(super) struct LimitColumns {
    max_streams: Option<i64>,
    requests_per_second: Option<i64>,
    rate_burst: Option<i64>,
}

impl LimitColumns {
    pub fn overrides(&self) -> Result<LimitOverrides, StoreError> {
        limit_overrides(self.max_streams, self.requests_per_second, self.rate_burst)
    }
}

/// A party's own limits from their columns.
pub(super) fn limit_overrides(
    max_streams: Option<i64>,
    requests_per_second: Option<i64>,
    rate_burst: Option<i64>,
) -> Result<LimitOverrides, StoreError> {
    let positive = |v: Option<i64>, what: &'static str| {
        v.map(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or(StoreError::Corrupt(what))
        })
        .transpose()
    };
    Ok(LimitOverrides {
        max_streams: positive(max_streams, "parties.max_streams")?,
        requests_per_second: positive(requests_per_second, "parties.requests_per_second")?,
        burst: positive(rate_burst, "parties.rate_burst")?,
    })
}

/// The columns of `parties` that hold a registered termination (all empty without one).
#[derive(sqlx::FromRow)]
pub(super) struct TerminationColumns {
    termination_effective: Option<String>,
    termination_override: Option<String>,
    termination_notice_received_on: Option<String>,
    termination_scheduled_at: Option<i64>,
    termination_scheduled_by: Option<String>,
    state_before_termination: Option<String>,
}

impl TerminationColumns {
    /// The effective date of the registered termination, as stored.
    pub fn effective_text(&self) -> Option<&str> {
        self.termination_effective.as_deref()
    }

    fn effective(&self) -> Result<Option<Date>, StoreError> {
        stored_opt_date(self.effective_text(), "parties.termination_effective")
    }

    /// The state a pending termination was registered in. Terminations scheduled before the admin
    /// API existed were only possible for connected parties, so those count as CONNECTED.
    pub fn state_before(&self) -> Result<Option<PartyState>, StoreError> {
        match (&self.state_before_termination, &self.termination_effective) {
            (Some(s), _) => state(s, "parties.state_before_termination").map(Some),
            (None, Some(_)) => Ok(Some(PartyState::Connected)),
            (None, None) => Ok(None),
        }
    }

    /// The registered termination, if there is one.
    fn record(&self) -> Result<Option<TerminationRecord>, StoreError> {
        let Some(effective_date) = self.effective()? else {
            return Ok(None);
        };
        Ok(Some(TerminationRecord {
            effective_date,
            notice_received_on: stored_opt_date(
                self.termination_notice_received_on.as_deref(),
                "parties.termination_notice_received_on",
            )?,
            override_reason: self.termination_override.clone(),
            scheduled_at: self.termination_scheduled_at,
            scheduled_by: self.termination_scheduled_by.clone().and_then(non_empty),
        }))
    }
}

impl PartyRow {
    pub fn kind(&self) -> Result<PartyKind, StoreError> {
        kind(&self.kind)
    }

    pub fn org_number(&self) -> Result<OrgNumber, StoreError> {
        org_number(&self.org_number)
    }

    /// The state that holds on `today` (see [`effective_state`]).
    pub fn state_on(&self, today: Date) -> Result<PartyState, StoreError> {
        let stored = state(&self.state, "parties.state")?;
        Ok(effective_state(stored, self.termination.effective()?, today))
    }
}

/// Reads one party row; with `lock`, PostgreSQL also locks it until the transaction ends
/// (SQLite's single writer already serialises every change).
pub(super) async fn party_row(
    conn: &mut Conn,
    party_id: &str,
    lock: bool,
) -> Result<Option<PartyRow>, StoreError> {
    let select = format!("SELECT {PARTY_COLUMNS} FROM parties WHERE party_id = $1");
    let locked = format!("{select} FOR UPDATE");
    Ok(on_conn!(conn,
        sqlite: |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(select)).bind(party_id).fetch_optional(c).await?
        },
        postgres: |c| {
            let sql = if lock { locked } else { select };
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(party_id).fetch_optional(c).await?
        },
    ))
}

/// The id of the party with this organisation number that is not terminated.
pub(super) async fn live_party_id(conn: &mut Conn, org: &OrgNumber) -> Result<Option<String>, StoreError> {
    let row: Option<(String,)> = on_conn!(conn, |c| {
        sqlx::query_as("SELECT party_id FROM parties WHERE org_number = $1 AND state <> 'TERMINATED'")
            .bind(org.as_str())
            .fetch_optional(c)
            .await?
    });
    Ok(row.map(|(id,)| id))
}

#[derive(sqlx::FromRow)]
pub(super) struct AgreementRow {
    pub agreement_id: String,
    agreement_type: String,
    valid_from: String,
    pub notice_period_days: Option<i64>,
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

/// What an agreement grants: its basis codes and benefit codes.
pub(super) type Grants = (Vec<String>, Vec<String>);

impl AgreementRow {
    pub fn signatures(&self) -> Signatures {
        Signatures {
            party: self.party_signed_on.is_some(),
            agency: self.agency_signed_on.is_some(),
        }
    }

    /// The agreement with what it grants.
    pub fn into_agreement(self, (basis_codes, benefit_codes): Grants) -> Result<Agreement, StoreError> {
        Ok(Agreement {
            agreement_type: AgreementType::parse(&self.agreement_type)
                .ok_or(StoreError::Corrupt("agreements.agreement_type"))?,
            valid_from: stored_date(&self.valid_from, "agreements.valid_from")?,
            notice_period_days: u32::try_from(self.notice_period_days.unwrap_or(0))
                .map_err(|_| StoreError::Corrupt("agreements.notice_period_days"))?,
            sent_at: self.sent_at,
            party_signed: signature(
                self.party_signed_by,
                self.party_signed_on,
                self.party_signature_recorded_at,
                self.party_signature_recorded_by,
            )?,
            agency_signed: signature(
                self.agency_signed_by,
                self.agency_signed_on,
                self.agency_signature_recorded_at,
                self.agency_signature_recorded_by,
            )?,
            agreement_id: self.agreement_id,
            basis_codes,
            benefit_codes,
        })
    }
}

/// One side's signature from its columns: there is one when it has a date.
fn signature(
    by: Option<String>,
    on: Option<String>,
    recorded_at: Option<i64>,
    recorded_by: Option<String>,
) -> Result<Option<Signature>, StoreError> {
    let Some(on) = on else {
        return Ok(None);
    };
    Ok(Some(Signature {
        signed_by: by.unwrap_or_default(),
        signed_on: stored_date(&on, "agreements.signed_on")?,
        recorded_at,
        recorded_by: recorded_by.and_then(non_empty),
    }))
}

/// The party's current agreement (the most recently sent) and what it grants.
pub(super) async fn agreement(
    conn: &mut Conn,
    party_id: &str,
) -> Result<Option<(AgreementRow, Grants)>, StoreError> {
    let Some(row) = agreement_row(conn, party_id).await? else {
        return Ok(None);
    };
    let grants = grants(conn, &row.agreement_id).await?;
    Ok(Some((row, grants)))
}

/// The party's current agreement (the most recently sent), without what it grants.
pub(super) async fn agreement_row(
    conn: &mut Conn,
    party_id: &str,
) -> Result<Option<AgreementRow>, StoreError> {
    Ok(on_conn!(conn, |c| {
        sqlx::query_as(
            "SELECT agreement_id, agreement_type, valid_from, notice_period_days, sent_at, \
                    party_signed_by, party_signed_on, party_signature_recorded_at, party_signature_recorded_by, \
                    agency_signed_by, agency_signed_on, agency_signature_recorded_at, agency_signature_recorded_by \
             FROM agreements WHERE party_id = $1 ORDER BY sent_at DESC, agreement_id DESC LIMIT 1",
        )
        .bind(party_id)
        .fetch_optional(c)
        .await?
    }))
}

/// What the agreement grants (its legal bases, its benefit types), in one statement: each row
/// says whether it is a basis. Written with the agreement, in the transaction that creates it,
/// and never changed.
pub(super) async fn grants(conn: &mut Conn, agreement_id: &str) -> Result<Grants, StoreError> {
    let grants: Vec<(bool, String)> = on_conn!(conn, |c| {
        sqlx::query_as(
            "SELECT TRUE, basis_code FROM agreement_bases WHERE agreement_id = $1 \
             UNION ALL SELECT FALSE, benefit_code FROM agreement_benefits WHERE agreement_id = $1 \
             ORDER BY 1 DESC, 2",
        )
        .bind(agreement_id)
        .fetch_all(c)
        .await?
    });
    let (bases, benefits): (Vec<_>, Vec<_>) = grants.into_iter().partition(|(basis, _)| *basis);
    let codes = |rows: Vec<(bool, String)>| rows.into_iter().map(|(_, c)| c).collect();
    Ok((codes(bases), codes(benefits)))
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

/// Everything registered about one party.
pub(super) async fn record(conn: &mut Conn, party_id: &str) -> Result<Option<PartyRecord>, StoreError> {
    let Some(party) = party_row(conn, party_id, false).await? else {
        return Ok(None);
    };
    let agreement = agreement(conn, party_id).await?;
    let certificates: Vec<CertificateRow> = on_conn!(conn, |c| {
        sqlx::query_as(
            "SELECT fingerprint, subject, serial, not_before, not_after, added_at, added_by, revoked_at, \
                    revoke_reason \
             FROM party_certificates WHERE party_id = $1 ORDER BY added_at, fingerprint",
        )
        .bind(party_id)
        .fetch_all(c)
        .await?
    });
    let agreement = agreement
        .map(|(row, grants)| row.into_agreement(grants))
        .transpose()?;
    let termination = party.termination.record()?;
    Ok(Some(PartyRecord {
        application: NewApplication {
            kind: party.kind()?,
            org_number: party.org_number()?,
            basis_codes: split_codes(&party.requested_bases),
            benefit_codes: split_codes(&party.requested_benefits),
            name: party.name,
            contact_name: party.contact_name,
            contact_email: party.contact_email,
        },
        stored_state: state(&party.state, "parties.state")?,
        party_id: party.party_id,
        signatures: agreement
            .iter()
            .flat_map(Agreement::signatures)
            .map(|(signer, signature)| SignatureRecord {
                signer,
                signature: signature.clone(),
            })
            .collect(),
        agreement,
        certificates: certificates
            .into_iter()
            .map(|c| CertificateRecord {
                certificate: NewCertificate {
                    fingerprint: c.fingerprint,
                    subject: c.subject,
                    serial: c.serial,
                    not_before: c.not_before,
                    not_after: c.not_after,
                },
                added_at: c.added_at,
                added_by: c.added_by.and_then(non_empty),
                revoked_at: c.revoked_at,
                revocation_reason: c.revoke_reason.and_then(non_empty),
            })
            .collect(),
        termination,
        limits: party.limits.overrides()?,
        applied_at: party.applied_at,
        updated_at: party.updated_at,
    }))
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
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
    pub fn into_record(self) -> Result<AuditRecord, StoreError> {
        Ok(AuditRecord {
            entry_id: self.entry_id,
            at: self.at,
            operator: (!self.operator_name.is_empty() || !self.operator_fingerprint.is_empty()).then_some(
                super::Actor {
                    name: self.operator_name,
                    fingerprint: self.operator_fingerprint,
                },
            ),
            action: PartyAction::parse(&self.action).ok_or(StoreError::Corrupt("party_audit.action"))?,
            party_id: self.party_id,
            before_state: self
                .before_state
                .as_deref()
                .map(|s| state(s, "party_audit.before_state"))
                .transpose()?,
            after_state: state(&self.after_state, "party_audit.after_state")?,
            idempotency_key: non_empty(self.idempotency_key),
            details_json: self.details,
        })
    }
}

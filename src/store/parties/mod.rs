//! Parties (insurers and authorities), their agreements, certificates and audit history, and the
//! agency's operators.
//!
//! Reads live here; every change to a party goes through [`lifecycle`] (one transaction per step,
//! idempotent by key, audited), including the development seeding of `serve --dev`: nothing else
//! writes the `parties` table.

mod lifecycle;
mod rows;
mod steps;

use time::Date;

use super::tx::{execute, on_conn};
use super::{Store, StoreError};
use crate::domain::OrgNumber;
use crate::domain::catalogue::Agreement;
use crate::domain::clock::{Micros, format_date};
use crate::domain::lifecycle::{CodeProblem, IllegalTransition, Standing, TerminationRefused};
use crate::domain::onboarding::NewOperator;

pub use lifecycle::PartyChange;
pub(crate) use lifecycle::append_agency_audit;

pub use crate::domain::onboarding::{
    Actor, AuditRecord, CertificateRecord, CertifiedParty, NewAgreement, NewApplication, NewCertificate,
    NewSignature, Operator, PartyFilter, PartyRecord, SignatureRecord, TerminationRecord,
};

/// The idempotency of one change.
pub struct Idempotency<'a> {
    /// The caller's key (unique per intended change).
    pub key: &'a str,
    /// A hash of the request without its key; the same key with another hash is refused.
    pub request_hash: &'a str,
    /// Encodes the call's answer from the party as it is after the change. The bytes are stored
    /// with the key, in the change's transaction, and returned to every retry.
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
    /// Another call claimed the same idempotency key at the same moment; the change is retried
    /// once internally and this never reaches callers.
    #[error("a concurrent call holds the same idempotency key")]
    KeyRace,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for AdminError {
    fn from(e: sqlx::Error) -> Self {
        AdminError::Store(e.into())
    }
}

/// A party registered as connected in one go, with a signed agreement: the demo parties of
/// `serve --dev`, test fixtures and benchmarks. [`Store::onboard_connected`] takes it through the
/// same lifecycle steps as the admin API.
#[derive(Debug, Clone)]
pub struct NewConnectedParty {
    pub application: NewApplication,
    /// Sent once the application is registered, and signed for both sides on the day.
    pub agreement: NewAgreement,
    pub certificates: Vec<NewCertificate>,
}

impl NewConnectedParty {
    /// A party whose agreement `agreement_id` grants what it applied for, from `valid_from`, with
    /// 90 days' notice for an insurer and none for an authority.
    pub fn granting_application(
        application: NewApplication,
        agreement_id: String,
        valid_from: Date,
        certificates: Vec<NewCertificate>,
    ) -> Self {
        let agreement = NewAgreement {
            agreement_id,
            basis_codes: application.basis_codes.clone(),
            benefit_codes: application.benefit_codes.clone(),
            valid_from,
            notice_period_days: if application.kind.is_authority() { 0 } else { 90 },
        };
        Self {
            application,
            agreement,
            certificates,
        }
    }
}

impl Store {
    /// The party that registered the certificate with this SHA-256 fingerprint, if any.
    pub async fn party_by_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<CertifiedParty>, StoreError> {
        type Row = (
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<i64>,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let mut conn = self.read().await?;
        let row: Option<Row> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT p.party_id, p.org_number, p.name, p.kind, p.state, p.termination_effective, \
                        c.revoked_at, c.not_before, c.not_after, p.max_streams, p.requests_per_second, \
                        p.rate_burst \
                 FROM party_certificates c JOIN parties p ON p.party_id = c.party_id \
                 WHERE c.fingerprint = $1",
            )
            .bind(fingerprint)
            .fetch_optional(c)
            .await?
        });
        let Some((
            party_id,
            org,
            name,
            kind,
            state,
            termination,
            revoked_at,
            not_before,
            not_after,
            max_streams,
            requests_per_second,
            rate_burst,
        )) = row
        else {
            return Ok(None);
        };
        Ok(Some(CertifiedParty {
            party_id,
            org_number: rows::org_number(&org)?,
            name,
            kind: rows::kind(&kind)?,
            standing: Standing {
                state: rows::state(&state, "parties.state")?,
                termination_effective: super::stored_opt_date(
                    termination.as_deref(),
                    "parties.termination_effective",
                )?,
            },
            certificate_revoked_at: revoked_at,
            certificate_not_before: not_before,
            certificate_not_after: not_after,
            limits: rows::limit_overrides(max_streams, requests_per_second, rate_burst)?,
        }))
    }

    /// The operator with this certificate fingerprint, if registered.
    pub async fn operator_by_fingerprint(&self, fingerprint: &str) -> Result<Option<Operator>, StoreError> {
        let mut conn = self.read().await?;
        let row: Option<(String, String, String, Option<i64>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT fingerprint, name, role, revoked_at FROM operators WHERE fingerprint = $1")
                .bind(fingerprint)
                .fetch_optional(c)
                .await?
        });
        row.map(rows::operator).transpose()
    }

    /// Every registered operator, by name.
    pub async fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<(String, String, String, Option<i64>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT fingerprint, name, role, revoked_at FROM operators ORDER BY name, fingerprint",
            )
            .fetch_all(c)
            .await?
        });
        rows.into_iter().map(rows::operator).collect()
    }

    /// Registers an operator certificate. Registering the same fingerprint again updates name and
    /// role.
    pub async fn upsert_operator(&self, operator: &NewOperator<'_>, now: Micros) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        execute!(
            &mut conn,
            "INSERT INTO operators (fingerprint, name, role, added_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (fingerprint) DO UPDATE SET name = excluded.name, role = excluded.role, revoked_at = NULL",
            operator.fingerprint,
            operator.name,
            operator.role.as_str(),
            now,
        );
        conn.commit().await
    }

    /// Revokes an operator's certificate from `now` on; `false` when no operator has it (an
    /// operator already revoked keeps its first revocation time).
    pub async fn revoke_operator(&self, fingerprint: &str, now: Micros) -> Result<bool, StoreError> {
        let mut conn = self.write().await?;
        let known: Option<(String,)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT fingerprint FROM operators WHERE fingerprint = $1")
                .bind(fingerprint)
                .fetch_optional(c)
                .await?
        });
        if known.is_none() {
            return Ok(false);
        }
        execute!(
            &mut conn,
            "UPDATE operators SET revoked_at = COALESCE(revoked_at, $1) WHERE fingerprint = $2",
            now,
            fingerprint,
        );
        conn.commit().await?;
        Ok(true)
    }

    /// The party's current agreement (the most recently sent), with what it grants.
    pub async fn agreement_for_party(&self, party_id: &str) -> Result<Option<Agreement>, StoreError> {
        // No transaction is needed for one state: what an agreement grants is written with it, in
        // the transaction that creates it, and never changed; so it is read once per agreement.
        let mut conn = self.read().await?;
        let Some(row) = rows::agreement_row(&mut conn, party_id).await? else {
            return Ok(None);
        };
        let grants = match self.grants.get(&row.agreement_id) {
            Some(grants) => grants,
            None => {
                let grants = rows::grants(&mut conn, &row.agreement_id).await?;
                self.grants.insert(&row.agreement_id, &grants);
                grants
            }
        };
        row.into_agreement(grants).map(Some)
    }

    /// One party with everything registered about it.
    pub async fn party_record(&self, party_id: &str) -> Result<Option<PartyRecord>, StoreError> {
        let mut conn = self.read_tx().await?;
        let record = rows::record(&mut conn, party_id).await?;
        conn.commit().await?;
        Ok(record)
    }

    /// The party with this organisation number that is not terminated, or else the one terminated
    /// most recently.
    pub async fn party_record_by_org_number(
        &self,
        org: &OrgNumber,
    ) -> Result<Option<PartyRecord>, StoreError> {
        let mut conn = self.read_tx().await?;
        let id: Option<(String,)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT party_id FROM parties WHERE org_number = $1 \
                 ORDER BY CASE WHEN state = 'TERMINATED' THEN 1 ELSE 0 END, updated_at DESC, party_id DESC \
                 LIMIT 1",
            )
            .bind(org.as_str())
            .fetch_optional(c)
            .await?
        });
        let record = match id {
            Some((id,)) => rows::record(&mut conn, &id).await?,
            None => None,
        };
        conn.commit().await?;
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
        let mut conn = self.read_tx().await?;
        let ids: Vec<(String,)> = on_conn!(&mut conn, |c| {
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
            .fetch_all(c)
            .await?
        });
        let mut records = Vec::with_capacity(ids.len());
        for (id,) in ids {
            if let Some(record) = rows::record(&mut conn, &id).await? {
                records.push(record);
            }
        }
        conn.commit().await?;
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
        let mut conn = self.read_tx().await?;
        if rows::record(&mut conn, party_id).await?.is_none() {
            return Ok(None);
        }
        let entries: Vec<rows::AuditRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT entry_id, at, operator_name, operator_fingerprint, action, party_id, before_state, \
                        after_state, details, idempotency_key \
                 FROM party_audit WHERE party_id = $1 AND entry_id > $2 ORDER BY entry_id LIMIT $3",
            )
            .bind(party_id)
            .bind(after_entry)
            .bind(i64::from(limit))
            .fetch_all(c)
            .await?
        });
        conn.commit().await?;
        entries
            .into_iter()
            .map(rows::AuditRow::into_record)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The id of the live (not terminated) party with this organisation number, if any.
    pub async fn live_party_id_by_org_number(&self, org: &OrgNumber) -> Result<Option<String>, StoreError> {
        let mut conn = self.read().await?;
        rows::live_party_id(&mut conn, org).await
    }

    /// Records every scheduled termination whose effective date has come (state TERMINATED and a
    /// TERMINATION_TOOK_EFFECT audit entry). Cheap when there is nothing to do; readers call it
    /// so that what they show is also what is stored.
    pub async fn settle_terminations(&self, now: Micros) -> Result<(), StoreError> {
        let mut conn = self.read().await?;
        let due: Option<(String,)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT party_id FROM parties \
                 WHERE state = 'TERMINATION_SCHEDULED' AND termination_effective <= $1 LIMIT 1",
            )
            .bind(format_date(crate::domain::clock::business_date_at(now)))
            .fetch_optional(c)
            .await?
        });
        drop(conn);
        if due.is_none() {
            return Ok(());
        }
        let mut conn = self.write().await?;
        lifecycle::settle_due_terminations(&mut conn, now).await?;
        conn.commit().await
    }
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

/// What each agreement read so far grants, by agreement id. An agreement's grants are written in
/// the transaction that creates it and never changed, its id is the key of `agreements`, and
/// agreements are never deleted: an entry is never stale. Only committed agreements are read
/// into it (through pooled connections), one entry per agreement (a few per party).
#[derive(Debug, Default, Clone)]
pub(crate) struct GrantsCache(
    std::sync::Arc<std::sync::RwLock<std::collections::HashMap<String, rows::Grants>>>,
);

impl GrantsCache {
    fn get(&self, agreement_id: &str) -> Option<rows::Grants> {
        let grants = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        grants.get(agreement_id).cloned()
    }

    fn insert(&self, agreement_id: &str, grants: &rows::Grants) {
        let mut cache = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.insert(agreement_id.to_string(), grants.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_sets_mark_both_ends() {
        assert_eq!(code_set(["X", "Y"].into_iter()), ",X,Y,");
        assert_eq!(code_set(std::iter::empty()), "");
    }
}

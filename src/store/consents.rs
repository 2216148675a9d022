//! Consents parties register for their requests, and the case references (ärenden) authorities
//! attest.

use time::Date;

use super::tx::{Conn, on_conn};
use super::{Store, StoreError, is_unique_violation, new_id, stored_date, stored_person};
use crate::domain::Personnummer;
use crate::domain::clock::{Micros, format_date};

/// A consent registered by a party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub consent_id: String,
    /// What the party registered.
    pub registered: NewConsent,
    pub registered_at: Micros,
    pub revocation: Option<Revocation>,
}

/// When and why a consent was revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub at: Micros,
    pub reason: Option<String>,
    /// True when the agency revoked it, false when the party did.
    pub by_agency: bool,
}

/// A consent to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConsent {
    pub party_id: String,
    pub person: Personnummer,
    pub basis_code: String,
    pub given_on: Date,
    pub expires_on: Date,
    pub evidence_reference: String,
}

/// What registering a consent did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentRegistration {
    Created(Consent),
    /// The identical consent was registered before.
    Existing(Consent),
    /// The same (person, basis, evidence reference) was registered with other dates.
    Conflict,
}

/// Filters for listing consents; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ConsentFilter {
    pub party_id: Option<String>,
    pub person: Option<Personnummer>,
    pub basis_code: Option<String>,
}

/// Who revokes a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokedBy<'a> {
    /// The party that registered it (only its own consents).
    Party(&'a str),
    /// The agency, for any party.
    Agency,
}

/// A case reference as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRecord {
    pub case_reference: String,
    pub closed: bool,
    pub first_used_at: Micros,
    pub last_used_at: Micros,
    pub closed_at: Option<Micros>,
}

const CONSENT_COLUMNS: &str = "consent_id, party_id, person, basis_code, given_on, expires_on, \
     evidence_reference, registered_at, revoked_at, revocation_reason, revoked_by_agency";

/// A row of [`CONSENT_COLUMNS`].
#[derive(sqlx::FromRow)]
struct ConsentRow {
    consent_id: String,
    party_id: String,
    person: String,
    basis_code: String,
    given_on: String,
    expires_on: String,
    evidence_reference: String,
    registered_at: i64,
    revoked_at: Option<i64>,
    revocation_reason: Option<String>,
    revoked_by_agency: bool,
}

fn consent_from_row(row: ConsentRow) -> Result<Consent, StoreError> {
    Ok(Consent {
        registered: NewConsent {
            person: stored_person(&row.person, "consents.person")?,
            given_on: stored_date(&row.given_on, "consents.given_on")?,
            expires_on: stored_date(&row.expires_on, "consents.expires_on")?,
            party_id: row.party_id,
            basis_code: row.basis_code,
            evidence_reference: row.evidence_reference,
        },
        consent_id: row.consent_id,
        registered_at: row.registered_at,
        revocation: row.revoked_at.map(|at| Revocation {
            at,
            reason: row.revocation_reason.filter(|r| !r.is_empty()),
            by_agency: row.revoked_by_agency,
        }),
    })
}

type CaseRow = (String, String, i64, i64, Option<i64>);

fn case_from_row((case_reference, state, first_used_at, last_used_at, closed_at): CaseRow) -> CaseRecord {
    CaseRecord {
        case_reference,
        closed: state == "CLOSED",
        first_used_at,
        last_used_at,
        closed_at,
    }
}

async fn consent_by_id(conn: &mut Conn, consent_id: &str) -> Result<Option<Consent>, StoreError> {
    let row: Option<ConsentRow> = on_conn!(conn, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {CONSENT_COLUMNS} FROM consents WHERE consent_id = $1"
        )))
        .bind(consent_id)
        .fetch_optional(c)
        .await?
    });
    row.map(consent_from_row).transpose()
}

impl Store {
    /// Registers a consent (idempotent by party, person, basis and evidence reference).
    pub async fn register_consent(
        &self,
        new: &NewConsent,
        now: Micros,
    ) -> Result<ConsentRegistration, StoreError> {
        let consent_id = new_id("cns");
        let mut conn = self.write().await?;
        let inserted = on_conn!(&mut conn, |c| {
            sqlx::query(
                "INSERT INTO consents (consent_id, party_id, person, basis_code, given_on, expires_on, \
                                       evidence_reference, registered_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&consent_id)
            .bind(&new.party_id)
            .bind(new.person.as_storage())
            .bind(&new.basis_code)
            .bind(format_date(new.given_on))
            .bind(format_date(new.expires_on))
            .bind(&new.evidence_reference)
            .bind(now)
            .execute(c)
            .await
            .map(drop)
        });
        let registration = match inserted {
            Ok(_) => {
                let stored = consent_by_id(&mut conn, &consent_id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                ConsentRegistration::Created(stored)
            }
            Err(e) if is_unique_violation(&e) => {
                // The failed insert ended this transaction on PostgreSQL: look in a fresh one.
                drop(conn);
                let existing = self
                    .consents(&ConsentFilter {
                        party_id: Some(new.party_id.clone()),
                        person: Some(new.person.clone()),
                        basis_code: Some(new.basis_code.clone()),
                    })
                    .await?
                    .into_iter()
                    .find(|e| e.registered.evidence_reference == new.evidence_reference)
                    .ok_or(StoreError::NotFound)?;
                return Ok(
                    if existing.registered.given_on == new.given_on
                        && existing.registered.expires_on == new.expires_on
                    {
                        ConsentRegistration::Existing(existing)
                    } else {
                        ConsentRegistration::Conflict
                    },
                );
            }
            Err(e) => return Err(e.into()),
        };
        conn.commit().await?;
        Ok(registration)
    }

    /// One consent by id, whoever registered it.
    pub async fn consent(&self, consent_id: &str) -> Result<Option<Consent>, StoreError> {
        let mut conn = self.read().await?;
        consent_by_id(&mut conn, consent_id).await
    }

    /// Consents matching `filter`, newest registered first.
    pub async fn consents(&self, filter: &ConsentFilter) -> Result<Vec<Consent>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<ConsentRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {CONSENT_COLUMNS} FROM consents \
                 WHERE ($1 = '' OR party_id = $1) AND ($2 = '' OR person = $2) AND ($3 = '' OR basis_code = $3) \
                 ORDER BY registered_at DESC, consent_id DESC"
            )))
            .bind(filter.party_id.as_deref().unwrap_or(""))
            .bind(filter.person.as_ref().map_or("", Personnummer::as_storage))
            .bind(filter.basis_code.as_deref().unwrap_or(""))
            .fetch_all(c)
            .await?
        });
        rows.into_iter().map(consent_from_row).collect()
    }

    /// Revokes a consent (idempotent: a revoked consent stays as it was). A party can revoke only
    /// its own consents: another party's is [`StoreError::NotFound`], as an unknown one.
    pub async fn revoke_consent(
        &self,
        consent_id: &str,
        by: RevokedBy<'_>,
        reason: &str,
        now: Micros,
    ) -> Result<Consent, StoreError> {
        let party_id = match by {
            RevokedBy::Party(id) => id,
            RevokedBy::Agency => "",
        };
        let mut conn = self.write().await?;
        on_conn!(&mut conn, |c| {
            sqlx::query(
                "UPDATE consents SET revoked_at = $1, revocation_reason = $2, revoked_by_agency = $3 \
                 WHERE consent_id = $4 AND ($5 = '' OR party_id = $5) AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(by == RevokedBy::Agency)
            .bind(consent_id)
            .bind(party_id)
            .execute(c)
            .await?;
        });
        let consent = consent_by_id(&mut conn, consent_id).await?;
        conn.commit().await?;
        match consent {
            Some(c) if party_id.is_empty() || c.registered.party_id == party_id => Ok(c),
            _ => Err(StoreError::NotFound),
        }
    }

    /// The state of a party's case reference; `None` when never used.
    pub async fn case(&self, party_id: &str, case_reference: &str) -> Result<Option<CaseRecord>, StoreError> {
        let mut conn = self.read().await?;
        case_by_reference(&mut conn, party_id, case_reference).await
    }

    /// Records that a party named these case references (opening each on first use).
    pub async fn touch_cases(
        &self,
        party_id: &str,
        case_references: &[String],
        now: Micros,
    ) -> Result<(), StoreError> {
        if case_references.is_empty() {
            return Ok(());
        }
        let mut conn = self.write().await?;
        for reference in case_references {
            on_conn!(&mut conn, |c| {
                sqlx::query(
                    "INSERT INTO party_cases (party_id, case_reference, state, first_used_at, last_used_at) \
                     VALUES ($1, $2, 'OPEN', $3, $3) \
                     ON CONFLICT (party_id, case_reference) DO UPDATE SET last_used_at = excluded.last_used_at",
                )
                .bind(party_id)
                .bind(reference)
                .bind(now)
                .execute(c)
                .await?;
            });
        }
        conn.commit().await
    }

    /// Closes a case reference (final; closing a closed one changes nothing). A reference the party
    /// never used is [`StoreError::NotFound`].
    pub async fn close_case(
        &self,
        party_id: &str,
        case_reference: &str,
        reason: &str,
        now: Micros,
    ) -> Result<CaseRecord, StoreError> {
        let mut conn = self.write().await?;
        on_conn!(&mut conn, |c| {
            sqlx::query(
                "UPDATE party_cases SET state = 'CLOSED', closed_at = $1, close_reason = $2 \
                 WHERE party_id = $3 AND case_reference = $4 AND state = 'OPEN'",
            )
            .bind(now)
            .bind(reason)
            .bind(party_id)
            .bind(case_reference)
            .execute(c)
            .await?;
        });
        let case = case_by_reference(&mut conn, party_id, case_reference).await?;
        conn.commit().await?;
        case.ok_or(StoreError::NotFound)
    }

    /// A party's case references, most recently used first.
    pub async fn cases(&self, party_id: &str) -> Result<Vec<CaseRecord>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<CaseRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT case_reference, state, first_used_at, last_used_at, closed_at FROM party_cases \
                 WHERE party_id = $1 ORDER BY last_used_at DESC, case_reference",
            )
            .bind(party_id)
            .fetch_all(c)
            .await?
        });
        Ok(rows.into_iter().map(case_from_row).collect())
    }
}

async fn case_by_reference(
    conn: &mut Conn,
    party_id: &str,
    case_reference: &str,
) -> Result<Option<CaseRecord>, StoreError> {
    let row: Option<CaseRow> = on_conn!(conn, |c| {
        sqlx::query_as(
            "SELECT case_reference, state, first_used_at, last_used_at, closed_at FROM party_cases \
             WHERE party_id = $1 AND case_reference = $2",
        )
        .bind(party_id)
        .bind(case_reference)
        .fetch_optional(c)
        .await?
    });
    Ok(row.map(case_from_row))
}

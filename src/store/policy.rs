//! Consents, case references, and the hash-chained disclosure log.

use sha2::{Digest, Sha256};
use sqlx::Row;
use time::Date;

use super::{Store, StoreError, is_unique_violation, on_reader, on_writer};
use crate::domain::clock::{Micros, format_date, parse_date};
use crate::store::parties::new_id;

/// The hash that stands before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A consent registered by a party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub consent_id: String,
    pub party_id: String,
    /// The person's 12-digit storage form.
    pub person: String,
    pub basis_code: String,
    pub given_on: Date,
    pub expires_on: Date,
    pub evidence_reference: String,
    pub registered_at: Micros,
    pub revoked_at: Option<Micros>,
    pub revocation_reason: Option<String>,
    pub revoked_by_agency: bool,
}

/// A consent to register.
#[derive(Debug, Clone)]
pub struct NewConsent {
    pub party_id: String,
    pub person: String,
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

/// Filters for listing consents.
#[derive(Debug, Clone, Default)]
pub struct ConsentFilter {
    pub party_id: Option<String>,
    pub person: Option<String>,
    pub basis_code: Option<String>,
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

/// Whether an access was allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "ALLOWED",
            Self::Denied => "DENIED",
        }
    }
}

/// The kind of access an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    SubscriptionOrder,
    StreamDelivery,
    Query,
    OperatorView,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionOrder => "SUBSCRIPTION_ORDER",
            Self::StreamDelivery => "STREAM_DELIVERY",
            Self::Query => "QUERY",
            Self::OperatorView => "OPERATOR_VIEW",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::SubscriptionOrder,
            Self::StreamDelivery,
            Self::Query,
            Self::OperatorView,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// One disclosure-log entry to append. Empty strings stand for "not applicable".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDisclosure {
    pub party_id: String,
    pub party_org_number: String,
    pub system_identity: String,
    pub operator_name: String,
    pub channel: String,
    pub rpc: String,
    pub request_id: String,
    pub decision: String,
    pub denial_reason: String,
    pub legal_basis: String,
    pub purpose: String,
    pub case_reference: String,
    pub consent_id: String,
    pub subscription_id: String,
    /// The person's 12-digit storage form.
    pub person: String,
    pub benefit_types: Vec<String>,
    pub period_from: String,
    pub period_to: String,
    pub record_count: i64,
    pub from_sequence: i64,
    pub to_sequence: i64,
}

/// A stored disclosure-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureEntry {
    pub entry_id: i64,
    pub at: Micros,
    pub entry: NewDisclosure,
    pub previous_hash: String,
    pub hash: String,
}

/// The result of verifying the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainVerdict {
    Intact {
        checked: u64,
        last_hash: String,
    },
    Broken {
        checked: u64,
        entry_id: i64,
        problem: ChainProblem,
    },
}

/// How the chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainProblem {
    HashMismatch,
    PreviousHashMismatch,
    EntryMissing,
}

/// The SHA-256 of an entry: over the previous hash and a canonical encoding of every field.
pub fn entry_hash(previous_hash: &str, entry_id: i64, at: Micros, e: &NewDisclosure) -> String {
    let canonical = serde_json::json!([
        entry_id,
        at,
        e.party_id,
        e.party_org_number,
        e.system_identity,
        e.operator_name,
        e.channel,
        e.rpc,
        e.request_id,
        e.decision,
        e.denial_reason,
        e.legal_basis,
        e.purpose,
        e.case_reference,
        e.consent_id,
        e.subscription_id,
        e.person,
        e.benefit_types,
        e.period_from,
        e.period_to,
        e.record_count,
        e.from_sequence,
        e.to_sequence,
    ]);
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    hasher.update(canonical.to_string().as_bytes());
    hex::encode(hasher.finalize())
}

const DISCLOSURE_COLUMNS: &str = "entry_id, at, party_id, party_org_number, system_identity, operator_name, channel, rpc, \
     request_id, decision, denial_reason, legal_basis, purpose, case_reference, consent_id, subscription_id, \
     person, benefit_types, period_from, period_to, record_count, from_sequence, to_sequence, previous_hash, hash";

const DISCLOSURE_COLUMN_COUNT: usize = 25;

/// Entries per INSERT statement: 25 parameters each, well inside both backends' limits.
const DISCLOSURE_ROWS_PER_STATEMENT: usize = 400;

impl Store {
    /// Appends entries to the disclosure log in one transaction, chaining their hashes. Callers
    /// disclose only after this has returned `Ok`: if the log cannot be written, nothing leaves.
    pub async fn append_disclosures(&self, entries: &[NewDisclosure], now: Micros) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let numbered = self.kind() == super::BackendKind::Postgres;
        on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The no-op update takes the head row's lock first, so appends are strictly ordered.
            let head = sqlx::query(
                "UPDATE disclosure_chain_head SET last_entry_id = last_entry_id WHERE id = 1 \
                 RETURNING last_entry_id, last_hash",
            )
            .fetch_one(&mut *tx)
            .await?;
            let mut last_id: i64 = head.try_get(0)?;
            let mut last_hash: String = head.try_get(1)?;
            let mut rows = Vec::with_capacity(entries.len());
            for e in entries {
                let entry_id = last_id + 1;
                let hash = entry_hash(&last_hash, entry_id, now, e);
                rows.push((entry_id, e, std::mem::replace(&mut last_hash, hash.clone()), hash));
                last_id = entry_id;
            }
            // Multi-row INSERTs: one statement per chunk, not one round trip per entry.
            for chunk in rows.chunks(DISCLOSURE_ROWS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO disclosure_log ({DISCLOSURE_COLUMNS}) VALUES {}",
                    super::values_list(chunk.len(), DISCLOSURE_COLUMN_COUNT, numbered)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (entry_id, e, previous_hash, hash) in chunk {
                    q = q
                        .bind(*entry_id)
                        .bind(now)
                        .bind(&e.party_id)
                        .bind(&e.party_org_number)
                        .bind(&e.system_identity)
                        .bind(&e.operator_name)
                        .bind(&e.channel)
                        .bind(&e.rpc)
                        .bind(&e.request_id)
                        .bind(&e.decision)
                        .bind(&e.denial_reason)
                        .bind(&e.legal_basis)
                        .bind(&e.purpose)
                        .bind(&e.case_reference)
                        .bind(&e.consent_id)
                        .bind(&e.subscription_id)
                        .bind(&e.person)
                        .bind(e.benefit_types.join(","))
                        .bind(&e.period_from)
                        .bind(&e.period_to)
                        .bind(e.record_count)
                        .bind(e.from_sequence)
                        .bind(e.to_sequence)
                        .bind(previous_hash)
                        .bind(hash);
                }
                q.execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE disclosure_chain_head SET last_entry_id = $1, last_hash = $2 WHERE id = 1")
                .bind(last_id)
                .bind(&last_hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Entries about one person (12-digit form) in `[from, to)`, oldest first, after `after_id`.
    pub async fn disclosures_for_person(
        &self,
        person: &str,
        from: Micros,
        to: Micros,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DisclosureEntry>, StoreError> {
        let rows = on_reader!(self, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DISCLOSURE_COLUMNS} FROM disclosure_log \
                 WHERE person = $1 AND at >= $2 AND at < $3 AND entry_id > $4 ORDER BY entry_id LIMIT $5"
            )))
            .bind(person)
            .bind(from)
            .bind(to)
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(disclosure_from_row)
            .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows)
    }

    /// Entries of one party in `[from, to)`, oldest first, after `after_id`, optionally one decision.
    pub async fn disclosures_for_party(
        &self,
        party_id: &str,
        from: Micros,
        to: Micros,
        decision: Option<Decision>,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DisclosureEntry>, StoreError> {
        let decision = decision.map(|d| d.as_str()).unwrap_or("");
        let rows = on_reader!(self, |pool| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {DISCLOSURE_COLUMNS} FROM disclosure_log \
                 WHERE party_id = $1 AND at >= $2 AND at < $3 AND entry_id > $4 AND ($5 = '' OR decision = $5) \
                 ORDER BY entry_id LIMIT $6"
            )))
            .bind(party_id)
            .bind(from)
            .bind(to)
            .bind(after_id)
            .bind(decision)
            .bind(limit)
            .fetch_all(pool)
            .await?
            .iter()
            .map(disclosure_from_row)
            .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        Ok(rows)
    }

    /// Recomputes the chain over `[from_id, to_id]` (`to_id` 0 = the latest) and names the first
    /// broken entry. Reads in pages, so it runs in bounded memory.
    pub async fn verify_disclosure_chain(
        &self,
        from_id: i64,
        to_id: i64,
    ) -> Result<ChainVerdict, StoreError> {
        let from_id = from_id.max(1);
        let last: i64 = on_reader!(self, |pool| {
            sqlx::query_scalar("SELECT last_entry_id FROM disclosure_chain_head WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        let to_id = if to_id == 0 { last } else { to_id.min(last) };
        // The hash the first checked entry must follow.
        let mut expected_previous: Option<String> = if from_id == 1 {
            Some(GENESIS_HASH.to_string())
        } else {
            None
        };
        let mut next_id = from_id;
        let mut checked = 0u64;
        let mut last_hash = expected_previous.clone().unwrap_or_default();
        while next_id <= to_id {
            let page = on_reader!(self, |pool| {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {DISCLOSURE_COLUMNS} FROM disclosure_log WHERE entry_id >= $1 AND entry_id <= $2 \
                     ORDER BY entry_id LIMIT 1000"
                )))
                .bind(next_id)
                .bind(to_id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(disclosure_from_row)
                .collect::<Result<Vec<_>, sqlx::Error>>()?
            });
            if page.is_empty() {
                return Ok(ChainVerdict::Broken {
                    checked,
                    entry_id: next_id,
                    problem: ChainProblem::EntryMissing,
                });
            }
            for entry in page {
                if entry.entry_id != next_id {
                    return Ok(ChainVerdict::Broken {
                        checked,
                        entry_id: next_id,
                        problem: ChainProblem::EntryMissing,
                    });
                }
                if let Some(previous) = &expected_previous {
                    if &entry.previous_hash != previous {
                        return Ok(ChainVerdict::Broken {
                            checked,
                            entry_id: entry.entry_id,
                            problem: ChainProblem::PreviousHashMismatch,
                        });
                    }
                }
                let recomputed = entry_hash(&entry.previous_hash, entry.entry_id, entry.at, &entry.entry);
                if recomputed != entry.hash {
                    return Ok(ChainVerdict::Broken {
                        checked,
                        entry_id: entry.entry_id,
                        problem: ChainProblem::HashMismatch,
                    });
                }
                checked += 1;
                expected_previous = Some(entry.hash.clone());
                last_hash = entry.hash;
                next_id += 1;
            }
        }
        Ok(ChainVerdict::Intact { checked, last_hash })
    }

    /// Registers a consent (idempotent by party, person, basis and evidence reference).
    pub async fn register_consent(
        &self,
        c: &NewConsent,
        now: Micros,
    ) -> Result<ConsentRegistration, StoreError> {
        let consent_id = new_id("cns");
        let inserted = on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO consents (consent_id, party_id, person, basis_code, given_on, expires_on, \
                                       evidence_reference, registered_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&consent_id)
            .bind(&c.party_id)
            .bind(&c.person)
            .bind(&c.basis_code)
            .bind(format_date(c.given_on))
            .bind(format_date(c.expires_on))
            .bind(&c.evidence_reference)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        });
        match inserted {
            Ok(_) => {
                let stored = self.consent(&consent_id).await?.ok_or(StoreError::NotFound)?;
                Ok(ConsentRegistration::Created(stored))
            }
            Err(e) if is_unique_violation(&e) => {
                let existing = self
                    .consents(&ConsentFilter {
                        party_id: Some(c.party_id.clone()),
                        person: Some(c.person.clone()),
                        basis_code: Some(c.basis_code.clone()),
                    })
                    .await?
                    .into_iter()
                    .find(|e| e.evidence_reference == c.evidence_reference)
                    .ok_or(StoreError::NotFound)?;
                if existing.given_on == c.given_on && existing.expires_on == c.expires_on {
                    Ok(ConsentRegistration::Existing(existing))
                } else {
                    Ok(ConsentRegistration::Conflict)
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One consent by id, whoever registered it.
    pub async fn consent(&self, consent_id: &str) -> Result<Option<Consent>, StoreError> {
        let row = on_reader!(self, |pool| {
            sqlx::query(
                "SELECT consent_id, party_id, person, basis_code, given_on, expires_on, evidence_reference, \
                        registered_at, revoked_at, revocation_reason, revoked_by_agency \
                 FROM consents WHERE consent_id = $1",
            )
            .bind(consent_id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(consent_from_row)
            .transpose()?
        });
        row.map(|r| r.into_consent()).transpose()
    }

    /// Consents matching `filter`, newest registered first.
    pub async fn consents(&self, filter: &ConsentFilter) -> Result<Vec<Consent>, StoreError> {
        let rows = on_reader!(self, |pool| {
            sqlx::query(
                "SELECT consent_id, party_id, person, basis_code, given_on, expires_on, evidence_reference, \
                        registered_at, revoked_at, revocation_reason, revoked_by_agency \
                 FROM consents \
                 WHERE ($1 = '' OR party_id = $1) AND ($2 = '' OR person = $2) AND ($3 = '' OR basis_code = $3) \
                 ORDER BY registered_at DESC, consent_id DESC",
            )
            .bind(filter.party_id.as_deref().unwrap_or(""))
            .bind(filter.person.as_deref().unwrap_or(""))
            .bind(filter.basis_code.as_deref().unwrap_or(""))
            .fetch_all(pool)
            .await?
            .iter()
            .map(consent_from_row)
            .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        rows.into_iter().map(|r| r.into_consent()).collect()
    }

    /// Revokes a consent (idempotent: a revoked consent stays as it was). `party_id` restricts the
    /// revocation to that party's consents; `None` is the agency acting.
    pub async fn revoke_consent(
        &self,
        consent_id: &str,
        party_id: Option<&str>,
        reason: &str,
        now: Micros,
    ) -> Result<Consent, StoreError> {
        let by_agency = party_id.is_none();
        on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE consents SET revoked_at = $1, revocation_reason = $2, revoked_by_agency = $3 \
                 WHERE consent_id = $4 AND ($5 = '' OR party_id = $5) AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(by_agency)
            .bind(consent_id)
            .bind(party_id.unwrap_or(""))
            .execute(pool)
            .await?;
        });
        let consent = self.consent(consent_id).await?.ok_or(StoreError::NotFound)?;
        if party_id.is_some_and(|p| p != consent.party_id) {
            return Err(StoreError::NotFound);
        }
        Ok(consent)
    }

    /// The state of a party's case reference; `None` when never used.
    pub async fn case(&self, party_id: &str, case_reference: &str) -> Result<Option<CaseRecord>, StoreError> {
        let row: Option<(String, String, i64, i64, Option<i64>)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT case_reference, state, first_used_at, last_used_at, closed_at FROM party_cases \
                 WHERE party_id = $1 AND case_reference = $2",
            )
            .bind(party_id)
            .bind(case_reference)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(case_from_row))
    }

    /// Records that a party named a case reference (opening it on first use).
    pub async fn touch_case(
        &self,
        party_id: &str,
        case_reference: &str,
        now: Micros,
    ) -> Result<(), StoreError> {
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO party_cases (party_id, case_reference, state, first_used_at, last_used_at) \
                 VALUES ($1, $2, 'OPEN', $3, $3) \
                 ON CONFLICT (party_id, case_reference) DO UPDATE SET last_used_at = excluded.last_used_at",
            )
            .bind(party_id)
            .bind(case_reference)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Closes a case reference (final; closing a closed one changes nothing).
    pub async fn close_case(
        &self,
        party_id: &str,
        case_reference: &str,
        reason: &str,
        now: Micros,
    ) -> Result<CaseRecord, StoreError> {
        on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE party_cases SET state = 'CLOSED', closed_at = $1, close_reason = $2 \
                 WHERE party_id = $3 AND case_reference = $4 AND state = 'OPEN'",
            )
            .bind(now)
            .bind(reason)
            .bind(party_id)
            .bind(case_reference)
            .execute(pool)
            .await?;
        });
        self.case(party_id, case_reference)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// A party's case references, most recently used first.
    pub async fn cases(&self, party_id: &str) -> Result<Vec<CaseRecord>, StoreError> {
        let rows: Vec<(String, String, i64, i64, Option<i64>)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT case_reference, state, first_used_at, last_used_at, closed_at FROM party_cases \
                 WHERE party_id = $1 ORDER BY last_used_at DESC, case_reference",
            )
            .bind(party_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(case_from_row).collect())
    }
}

fn case_from_row(
    (case_reference, state, first_used_at, last_used_at, closed_at): (String, String, i64, i64, Option<i64>),
) -> CaseRecord {
    CaseRecord {
        case_reference,
        closed: state == "CLOSED",
        first_used_at,
        last_used_at,
        closed_at,
    }
}

/// A consent row before its dates are parsed.
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

impl ConsentRow {
    fn into_consent(self) -> Result<Consent, StoreError> {
        Ok(Consent {
            given_on: parse_date(&self.given_on).ok_or(StoreError::Corrupt("consents.given_on"))?,
            expires_on: parse_date(&self.expires_on).ok_or(StoreError::Corrupt("consents.expires_on"))?,
            consent_id: self.consent_id,
            party_id: self.party_id,
            person: self.person,
            basis_code: self.basis_code,
            evidence_reference: self.evidence_reference,
            registered_at: self.registered_at,
            revoked_at: self.revoked_at,
            revocation_reason: self.revocation_reason,
            revoked_by_agency: self.revoked_by_agency,
        })
    }
}

fn consent_from_row<R: Row>(r: &R) -> Result<ConsentRow, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> bool: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ConsentRow {
        consent_id: r.try_get(0)?,
        party_id: r.try_get(1)?,
        person: r.try_get(2)?,
        basis_code: r.try_get(3)?,
        given_on: r.try_get(4)?,
        expires_on: r.try_get(5)?,
        evidence_reference: r.try_get(6)?,
        registered_at: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
        revocation_reason: r.try_get(9)?,
        revoked_by_agency: r.try_get(10)?,
    })
}

fn disclosure_from_row<R: Row>(r: &R) -> Result<DisclosureEntry, sqlx::Error>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let benefit_types: String = r.try_get(17)?;
    Ok(DisclosureEntry {
        entry_id: r.try_get(0)?,
        at: r.try_get(1)?,
        entry: NewDisclosure {
            party_id: r.try_get(2)?,
            party_org_number: r.try_get(3)?,
            system_identity: r.try_get(4)?,
            operator_name: r.try_get(5)?,
            channel: r.try_get(6)?,
            rpc: r.try_get(7)?,
            request_id: r.try_get(8)?,
            decision: r.try_get(9)?,
            denial_reason: r.try_get(10)?,
            legal_basis: r.try_get(11)?,
            purpose: r.try_get(12)?,
            case_reference: r.try_get(13)?,
            consent_id: r.try_get(14)?,
            subscription_id: r.try_get(15)?,
            person: r.try_get(16)?,
            benefit_types: if benefit_types.is_empty() {
                Vec::new()
            } else {
                benefit_types.split(',').map(str::to_string).collect()
            },
            period_from: r.try_get(18)?,
            period_to: r.try_get(19)?,
            record_count: r.try_get(20)?,
            from_sequence: r.try_get(21)?,
            to_sequence: r.try_get(22)?,
        },
        previous_hash: r.try_get(23)?,
        hash: r.try_get(24)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_every_field_and_the_previous_hash() {
        let e = NewDisclosure {
            party_id: "p".into(),
            person: "199007042386".into(),
            record_count: 3,
            ..NewDisclosure::default()
        };
        let h = entry_hash(GENESIS_HASH, 1, 10, &e);
        assert_eq!(h.len(), 64);
        assert_ne!(h, entry_hash(GENESIS_HASH, 2, 10, &e));
        assert_ne!(h, entry_hash(GENESIS_HASH, 1, 11, &e));
        assert_ne!(h, entry_hash(&h, 1, 10, &e));
        let changed = NewDisclosure {
            record_count: 4,
            ..e.clone()
        };
        assert_ne!(h, entry_hash(GENESIS_HASH, 1, 10, &changed));
        assert_eq!(h, entry_hash(GENESIS_HASH, 1, 10, &e));
    }
}

//! Parties, their agreements and certificates, and operators.

use sqlx::Row;

use super::{Store, StoreError, is_unique_violation, on_reader, on_writer};
use crate::domain::clock::{Micros, format_date, parse_date};
use crate::domain::party::AgreementType;
use crate::domain::{OperatorRole, OrgNumber, PartyKind, PartyState};
use crate::store::rows::{Agreement, CertifiedParty, NewConnectedParty, Operator, Signature};

impl Store {
    /// The party that registered the certificate with this SHA-256 fingerprint, if any.
    pub async fn party_by_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<CertifiedParty>, StoreError> {
        let row = on_reader!(self, |pool| {
            sqlx::query(
                "SELECT p.party_id, p.org_number, p.name, p.kind, p.state, p.termination_effective, \
                        c.revoked_at, c.not_before, c.not_after \
                 FROM party_certificates c JOIN parties p ON p.party_id = c.party_id \
                 WHERE c.fingerprint = $1",
            )
            .bind(fingerprint)
            .fetch_optional(pool)
            .await?
            .map(|r| {
                Ok::<_, sqlx::Error>((
                    r.try_get::<String, _>(0)?,
                    r.try_get::<String, _>(1)?,
                    r.try_get::<String, _>(2)?,
                    r.try_get::<String, _>(3)?,
                    r.try_get::<String, _>(4)?,
                    r.try_get::<Option<String>, _>(5)?,
                    r.try_get::<Option<i64>, _>(6)?,
                    r.try_get::<i64, _>(7)?,
                    r.try_get::<i64, _>(8)?,
                ))
            })
            .transpose()?
        });
        let Some((party_id, org, name, kind, state, termination, revoked_at, not_before, not_after)) = row
        else {
            return Ok(None);
        };
        Ok(Some(CertifiedParty {
            party_id,
            org_number: OrgNumber::parse(&org).map_err(|_| StoreError::Corrupt("parties.org_number"))?,
            name,
            kind: PartyKind::parse(&kind).ok_or(StoreError::Corrupt("parties.kind"))?,
            state: PartyState::parse(&state).ok_or(StoreError::Corrupt("parties.state"))?,
            termination_effective: match termination {
                Some(d) => Some(parse_date(&d).ok_or(StoreError::Corrupt("parties.termination_effective"))?),
                None => None,
            },
            certificate_revoked_at: revoked_at,
            certificate_not_before: not_before,
            certificate_not_after: not_after,
        }))
    }

    /// The operator with this certificate fingerprint, if registered.
    pub async fn operator_by_fingerprint(&self, fingerprint: &str) -> Result<Option<Operator>, StoreError> {
        let row: Option<(String, String, String, Option<i64>)> = on_reader!(self, |pool| {
            sqlx::query_as("SELECT fingerprint, name, role, revoked_at FROM operators WHERE fingerprint = $1")
                .bind(fingerprint)
                .fetch_optional(pool)
                .await?
        });
        row.map(operator_from_row).transpose()
    }

    /// Every registered operator, by name.
    pub async fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let rows: Vec<(String, String, String, Option<i64>)> = on_reader!(self, |pool| {
            sqlx::query_as(
                "SELECT fingerprint, name, role, revoked_at FROM operators ORDER BY name, fingerprint",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(operator_from_row).collect()
    }

    /// Registers an operator certificate. Registering the same fingerprint again updates name and role.
    pub async fn upsert_operator(
        &self,
        fingerprint: &str,
        name: &str,
        role: OperatorRole,
        now: Micros,
    ) -> Result<(), StoreError> {
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO operators (fingerprint, name, role, added_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (fingerprint) DO UPDATE SET name = excluded.name, role = excluded.role, revoked_at = NULL",
            )
            .bind(fingerprint)
            .bind(name)
            .bind(role.as_str())
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The party's current agreement (the most recently sent), with what it grants.
    pub async fn agreement_for_party(&self, party_id: &str) -> Result<Option<Agreement>, StoreError> {
        let found = on_reader!(self, |pool| {
            let row = sqlx::query(
                "SELECT agreement_id, agreement_type, valid_from, notice_period_days, \
                        party_signed_by, party_signed_on, agency_signed_by, agency_signed_on \
                 FROM agreements WHERE party_id = $1 ORDER BY sent_at DESC, agreement_id DESC LIMIT 1",
            )
            .bind(party_id)
            .fetch_optional(pool)
            .await?;
            match row {
                None => None,
                Some(r) => {
                    let id: String = r.try_get(0)?;
                    let bases: Vec<(String,)> = sqlx::query_as(
                        "SELECT basis_code FROM agreement_bases WHERE agreement_id = $1 ORDER BY basis_code",
                    )
                    .bind(&id)
                    .fetch_all(pool)
                    .await?;
                    let benefits: Vec<(String,)> = sqlx::query_as(
                        "SELECT benefit_code FROM agreement_benefits WHERE agreement_id = $1 ORDER BY benefit_code",
                    )
                    .bind(&id)
                    .fetch_all(pool)
                    .await?;
                    Some((
                        id,
                        r.try_get::<String, _>(1)?,
                        r.try_get::<String, _>(2)?,
                        r.try_get::<Option<i64>, _>(3)?,
                        (
                            r.try_get::<Option<String>, _>(4)?,
                            r.try_get::<Option<String>, _>(5)?,
                        ),
                        (
                            r.try_get::<Option<String>, _>(6)?,
                            r.try_get::<Option<String>, _>(7)?,
                        ),
                        bases.into_iter().map(|(b,)| b).collect::<Vec<_>>(),
                        benefits.into_iter().map(|(b,)| b).collect::<Vec<_>>(),
                    ))
                }
            }
        });
        let Some((agreement_id, kind, valid_from, notice, party_sig, agency_sig, basis_codes, benefit_codes)) =
            found
        else {
            return Ok(None);
        };
        let signature =
            |(by, on): (Option<String>, Option<String>)| -> Result<Option<Signature>, StoreError> {
                match (by, on) {
                    (Some(signed_by), Some(on)) => Ok(Some(Signature {
                        signed_by,
                        signed_on: parse_date(&on).ok_or(StoreError::Corrupt("agreements.signed_on"))?,
                    })),
                    _ => Ok(None),
                }
            };
        Ok(Some(Agreement {
            agreement_id,
            agreement_type: AgreementType::parse(&kind)
                .ok_or(StoreError::Corrupt("agreements.agreement_type"))?,
            valid_from: parse_date(&valid_from).ok_or(StoreError::Corrupt("agreements.valid_from"))?,
            notice_period_days: notice,
            party_signed: signature(party_sig)?,
            agency_signed: signature(agency_sig)?,
            basis_codes,
            benefit_codes,
        }))
    }

    /// Registers a party that is already connected, with a signed agreement and its certificates, in
    /// one transaction. Returns the new party id. An existing live party with the same
    /// organisation number → [`StoreError::Conflict`].
    pub async fn insert_connected_party(
        &self,
        p: &NewConnectedParty,
        now: Micros,
    ) -> Result<String, StoreError> {
        let party_id = new_id("pty");
        let today = format_date(crate::domain::clock::business_date_at(now));
        let result: Result<(), sqlx::Error> = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO parties (party_id, org_number, name, kind, state, contact_name, contact_email, \
                                      requested_bases, requested_benefits, applied_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'CONNECTED', $5, $6, $7, $8, $9, $9)",
            )
            .bind(&party_id)
            .bind(p.org_number.as_str())
            .bind(&p.name)
            .bind(p.kind.as_str())
            .bind(&p.contact_name)
            .bind(&p.contact_email)
            .bind(p.basis_codes.join(","))
            .bind(p.benefit_codes.join(","))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO agreements (agreement_id, party_id, agreement_type, valid_from, notice_period_days, sent_at, \
                                         party_signed_by, party_signed_on, agency_signed_by, agency_signed_on) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8)",
            )
            .bind(&p.agreement_id)
            .bind(&party_id)
            .bind(p.kind.agreement_type().as_str())
            .bind(format_date(p.valid_from))
            .bind(p.notice_period_days)
            .bind(now)
            .bind(&p.contact_name)
            .bind(&today)
            .bind("lefi --dev")
            .execute(&mut *tx)
            .await?;
            for code in &p.basis_codes {
                sqlx::query("INSERT INTO agreement_bases (agreement_id, basis_code) VALUES ($1, $2)")
                    .bind(&p.agreement_id)
                    .bind(code)
                    .execute(&mut *tx)
                    .await?;
            }
            for code in &p.benefit_codes {
                sqlx::query("INSERT INTO agreement_benefits (agreement_id, benefit_code) VALUES ($1, $2)")
                    .bind(&p.agreement_id)
                    .bind(code)
                    .execute(&mut *tx)
                    .await?;
            }
            for c in &p.certificates {
                sqlx::query(
                    "INSERT INTO party_certificates (fingerprint, party_id, subject, serial, not_before, not_after, added_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&c.fingerprint)
                .bind(&party_id)
                .bind(&c.subject)
                .bind(&c.serial)
                .bind(c.not_before)
                .bind(c.not_after)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        });
        match result {
            Ok(()) => Ok(party_id),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(
                "a party with this organisation number, agreement id or certificate already exists"
                    .to_string(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The id of the live (not terminated) party with this organisation number, if any.
    pub async fn live_party_id_by_org_number(&self, org: &OrgNumber) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on_reader!(self, |pool| {
            sqlx::query_as("SELECT party_id FROM parties WHERE org_number = $1 AND state <> 'TERMINATED'")
                .bind(org.as_str())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(id,)| id))
    }
}

fn operator_from_row(
    (fingerprint, name, role, revoked_at): (String, String, String, Option<i64>),
) -> Result<Operator, StoreError> {
    Ok(Operator {
        fingerprint,
        name,
        role: OperatorRole::parse(&role).ok_or(StoreError::Corrupt("operators.role"))?,
        revoked_at,
    })
}

/// A new random, time-ordered identifier with a readable prefix, e.g. `pty_0190f3…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

impl Store {
    /// Registers `cert` for `party_id` unless that fingerprint is already registered.
    pub async fn ensure_party_certificate(
        &self,
        party_id: &str,
        cert: &crate::store::NewCertificate,
        now: Micros,
    ) -> Result<(), StoreError> {
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO party_certificates (fingerprint, party_id, subject, serial, not_before, not_after, added_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (fingerprint) DO NOTHING",
            )
            .bind(&cert.fingerprint)
            .bind(party_id)
            .bind(&cert.subject)
            .bind(&cert.serial)
            .bind(cert.not_before)
            .bind(cert.not_after)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}

impl Store {
    /// Marks a party certificate revoked from `now` on. Unknown fingerprint → [`StoreError::NotFound`].
    pub async fn revoke_party_certificate(
        &self,
        party_id: &str,
        fingerprint: &str,
        reason: &str,
        now: Micros,
    ) -> Result<(), StoreError> {
        let done = on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE party_certificates SET revoked_at = $1, revoke_reason = $2 \
                 WHERE party_id = $3 AND fingerprint = $4 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(party_id)
            .bind(fingerprint)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    /// Schedules (Some) or withdraws (None) a connected party's termination.
    pub async fn set_termination(
        &self,
        party_id: &str,
        effective: Option<time::Date>,
    ) -> Result<(), StoreError> {
        let (state, date) = match effective {
            Some(d) => (PartyState::TerminationScheduled, Some(format_date(d))),
            None => (PartyState::Connected, None),
        };
        let done = on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE parties SET state = $1, termination_effective = $2 \
                 WHERE party_id = $3 AND state IN ('CONNECTED', 'TERMINATION_SCHEDULED')",
            )
            .bind(state.as_str())
            .bind(date)
            .bind(party_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }
}

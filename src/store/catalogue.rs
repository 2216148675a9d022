//! The legal-basis and benefit-type catalogues.

use sqlx::Row;

use super::tx::on_conn;
use super::{Store, StoreError, stored_date, stored_opt_date};
use crate::domain::PartyKind;
use crate::domain::catalogue::{BenefitType, LegalBasis};

impl Store {
    /// Every legal basis, in force or not, ordered by code.
    pub async fn legal_bases(&self) -> Result<Vec<LegalBasis>, StoreError> {
        let mut conn = self.read().await?;
        let (bases, kinds, benefits) = on_conn!(&mut conn, |c| {
            let bases = sqlx::query(
                "SELECT code, purpose, purpose_en, statute_reference, disclosure_basis, automated_basis, \
                        requires_consent, requires_open_case, valid_from, valid_to \
                 FROM legal_bases ORDER BY code",
            )
            .fetch_all(&mut *c)
            .await?
            .into_iter()
            .map(|r| {
                Ok::<_, sqlx::Error>((
                    r.try_get::<String, _>("code")?,
                    r.try_get::<String, _>("purpose")?,
                    r.try_get::<String, _>("purpose_en")?,
                    r.try_get::<String, _>("statute_reference")?,
                    r.try_get::<String, _>("disclosure_basis")?,
                    r.try_get::<String, _>("automated_basis")?,
                    r.try_get::<bool, _>("requires_consent")?,
                    r.try_get::<bool, _>("requires_open_case")?,
                    r.try_get::<String, _>("valid_from")?,
                    r.try_get::<Option<String>, _>("valid_to")?,
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
            let kinds: Vec<(String, String)> = sqlx::query_as(
                "SELECT basis_code, party_kind FROM legal_basis_party_kinds ORDER BY basis_code, party_kind",
            )
            .fetch_all(&mut *c)
            .await?;
            let benefits: Vec<(String, String)> = sqlx::query_as(
                "SELECT basis_code, benefit_code FROM legal_basis_benefits ORDER BY basis_code, benefit_code",
            )
            .fetch_all(&mut *c)
            .await?;
            (bases, kinds, benefits)
        });
        bases
            .into_iter()
            .map(
                |(
                    code,
                    purpose,
                    purpose_en,
                    statute_reference,
                    disclosure_basis,
                    automated_basis,
                    requires_consent,
                    requires_open_case,
                    from,
                    to,
                )| {
                    let party_kinds = kinds
                        .iter()
                        .filter(|(b, _)| *b == code)
                        .map(|(_, k)| {
                            PartyKind::parse(k)
                                .ok_or(StoreError::Corrupt("legal_basis_party_kinds.party_kind"))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let benefit_codes = benefits
                        .iter()
                        .filter(|(b, _)| *b == code)
                        .map(|(_, c)| c.clone())
                        .collect();
                    Ok(LegalBasis {
                        valid_from: stored_date(&from, "legal_bases.valid_from")?,
                        valid_to: stored_opt_date(to.as_deref(), "legal_bases.valid_to")?,
                        code,
                        purpose,
                        purpose_en,
                        statute_reference,
                        disclosure_basis,
                        automated_basis,
                        requires_consent,
                        requires_open_case,
                        party_kinds,
                        benefit_codes,
                    })
                },
            )
            .collect()
    }

    /// Every benefit type, ordered by code.
    pub async fn benefit_types(&self) -> Result<Vec<BenefitType>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<(String, String, String, String, String, Option<String>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT code, name_sv, name_en, agency, valid_from, valid_to FROM benefit_types ORDER BY code")
                .fetch_all(&mut *c)
                .await?
        });
        rows.into_iter()
            .map(|(code, name_sv, name_en, agency, from, to)| {
                Ok(BenefitType {
                    code,
                    name_sv,
                    name_en,
                    agency,
                    valid_from: stored_date(&from, "benefit_types.valid_from")?,
                    valid_to: stored_opt_date(to.as_deref(), "benefit_types.valid_to")?,
                })
            })
            .collect()
    }
}

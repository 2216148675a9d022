//! The legal-basis and benefit-type catalogues (seeded by migration; see `domain::catalogue`).
//!
//! Only a migration changes them, so a process reads them once and keeps them (`Store::migrate`
//! forgets what it kept): every policy decision and every ingest needs them, and reading them each
//! time cost three statements per delivered page and one per ingest commit.

use std::sync::{Arc, PoisonError, RwLock};

use super::tx::on_conn;
use super::{Store, StoreError, stored_date, stored_opt_date};
use crate::domain::PartyKind;
use crate::domain::catalogue::{BenefitType, LegalBasis};

/// A `legal_bases` row as read, before its dates are parsed and its kinds and benefits joined.
#[derive(sqlx::FromRow)]
struct BasisRow {
    code: String,
    purpose: String,
    purpose_en: String,
    statute_reference: String,
    disclosure_basis: String,
    automated_basis: String,
    requires_consent: bool,
    requires_open_case: bool,
    valid_from: String,
    valid_to: Option<String>,
}

/// A pair of a basis code and one of its listed values (party kind or benefit code).
type Listed = Vec<(String, String)>;

/// Both catalogues as read from the database.
struct Catalogue {
    bases: Arc<[LegalBasis]>,
    benefits: Arc<[BenefitType]>,
}

/// The catalogues once read, shared by every clone of a [`Store`].
#[derive(Clone, Default)]
pub(super) struct CatalogueCache(Arc<RwLock<Option<Arc<Catalogue>>>>);

impl CatalogueCache {
    fn get(&self) -> Option<Arc<Catalogue>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set(&self, catalogue: Option<Arc<Catalogue>>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = catalogue;
    }

    /// Forgets the catalogues: the next use reads them again (after a migration).
    pub(super) fn forget(&self) {
        self.set(None);
    }
}

impl Store {
    /// Every legal basis, in force or not, ordered by code (shared, not copied).
    pub async fn legal_bases(&self) -> Result<Arc<[LegalBasis]>, StoreError> {
        Ok(self.catalogue().await?.bases.clone())
    }

    /// Every benefit type, ordered by code (shared, not copied).
    pub async fn benefit_types(&self) -> Result<Arc<[BenefitType]>, StoreError> {
        Ok(self.catalogue().await?.benefits.clone())
    }

    /// Every benefit type's code, ordered.
    pub async fn benefit_codes(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .benefit_types()
            .await?
            .iter()
            .map(|b| b.code.clone())
            .collect())
    }

    /// The catalogues, read from the database the first time (two callers at once may both read
    /// them; they read the same).
    async fn catalogue(&self) -> Result<Arc<Catalogue>, StoreError> {
        if let Some(kept) = self.catalogue.get() {
            return Ok(kept);
        }
        let read = Arc::new(Catalogue {
            bases: self.read_legal_bases().await?.into(),
            benefits: self.read_benefit_types().await?.into(),
        });
        self.catalogue.set(Some(read.clone()));
        Ok(read)
    }

    async fn read_legal_bases(&self) -> Result<Vec<LegalBasis>, StoreError> {
        let mut conn = self.read().await?;
        let (rows, kinds, benefits): (Vec<BasisRow>, Listed, Listed) = on_conn!(&mut conn, |c| {
            let rows = sqlx::query_as(
                "SELECT code, purpose, purpose_en, statute_reference, disclosure_basis, automated_basis, \
                        requires_consent, requires_open_case, valid_from, valid_to \
                 FROM legal_bases ORDER BY code",
            )
            .fetch_all(&mut *c)
            .await?;
            let kinds = sqlx::query_as(
                "SELECT basis_code, party_kind FROM legal_basis_party_kinds ORDER BY basis_code, party_kind",
            )
            .fetch_all(&mut *c)
            .await?;
            let benefits = sqlx::query_as(
                "SELECT basis_code, benefit_code FROM legal_basis_benefits ORDER BY basis_code, benefit_code",
            )
            .fetch_all(&mut *c)
            .await?;
            (rows, kinds, benefits)
        });
        let of = |listed: &Listed, code: &str| -> Vec<String> {
            listed
                .iter()
                .filter(|(b, _)| b == code)
                .map(|(_, v)| v.clone())
                .collect()
        };
        rows.into_iter()
            .map(|r| {
                let party_kinds = of(&kinds, &r.code)
                    .iter()
                    .map(|k| {
                        PartyKind::parse(k).ok_or(StoreError::Corrupt("legal_basis_party_kinds.party_kind"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(LegalBasis {
                    valid_from: stored_date(&r.valid_from, "legal_bases.valid_from")?,
                    valid_to: stored_opt_date(r.valid_to.as_deref(), "legal_bases.valid_to")?,
                    benefit_codes: of(&benefits, &r.code),
                    party_kinds,
                    code: r.code,
                    purpose: r.purpose,
                    purpose_en: r.purpose_en,
                    statute_reference: r.statute_reference,
                    disclosure_basis: r.disclosure_basis,
                    automated_basis: r.automated_basis,
                    requires_consent: r.requires_consent,
                    requires_open_case: r.requires_open_case,
                })
            })
            .collect()
    }

    async fn read_benefit_types(&self) -> Result<Vec<BenefitType>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<(String, String, String, String, String, Option<String>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as("SELECT code, name_sv, name_en, agency, valid_from, valid_to FROM benefit_types ORDER BY code")
                .fetch_all(c)
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

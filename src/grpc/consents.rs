//! `lefi.v1.ConsentService` and `lefi.v1.CaseService`: the consents and case references a party
//! relies on.

use time::Date;
use tonic::{Code, Request, Response, Status};

use crate::app::AppState;
use crate::domain::Personnummer;
use crate::domain::clock::{format_date, parse_date};
use crate::grpc::authorize::authorize_basis;
use crate::grpc::convert::timestamp;
use crate::grpc::party_of;
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{error, error_with, invalid_field, store_error};
use crate::store::StoreError;
use crate::store::delivery::{EndReason, EndSelector};
use crate::store::policy::{CaseRecord, Consent, ConsentFilter, ConsentRegistration, NewConsent};

/// The longest free-text field (evidence references, reasons).
const MAX_TEXT: usize = 200;

/// `lefi.v1.ConsentService`.
#[derive(Debug, Clone)]
pub struct ConsentApi {
    pub state: AppState,
}

/// `lefi.v1.CaseService`.
#[derive(Debug, Clone)]
pub struct CaseApi {
    pub state: AppState,
}

/// A consent's state today.
pub fn consent_state(c: &Consent, today: Date) -> pb::ConsentState {
    if c.revoked_at.is_some() {
        pb::ConsentState::Revoked
    } else if c.expires_on < today {
        pb::ConsentState::Expired
    } else {
        pb::ConsentState::Valid
    }
}

/// A consent as the proto shows it.
pub fn consent_message(c: &Consent, today: Date) -> pb::Consent {
    pb::Consent {
        consent_id: c.consent_id.clone(),
        person_id: c.person.clone(),
        legal_basis: c.basis_code.clone(),
        given_on: format_date(c.given_on),
        expires_on: format_date(c.expires_on),
        evidence_reference: c.evidence_reference.clone(),
        state: consent_state(c, today) as i32,
        registered_at: Some(timestamp(c.registered_at)),
        revoked_at: c.revoked_at.map(timestamp),
        revocation_reason: c.revocation_reason.clone().unwrap_or_default(),
        revoked_by_agency: c.revoked_by_agency,
    }
}

/// Parses a person id field; the error never echoes the input.
pub fn person_field(field: &str, value: &str, today: Date) -> Result<Personnummer, Status> {
    Personnummer::parse(value, today).map_err(|e| {
        invalid_field(
            ErrorReason::PersonIdInvalid,
            field,
            format!("{field} is not a valid personnummer or samordningsnummer: {e}"),
        )
    })
}

fn date_field(field: &str, value: &str) -> Result<Date, Status> {
    parse_date(value).ok_or_else(|| {
        invalid_field(
            ErrorReason::InvalidDate,
            field,
            format!("{field} must be a date written YYYY-MM-DD"),
        )
    })
}

/// Reads a page token (an offset we issued) and a page size.
pub fn paging(page_token: &str, page_size: u32) -> Result<(usize, usize), Status> {
    let size = match page_size {
        0 => 100,
        n => n.min(1_000) as usize,
    };
    if page_token.is_empty() {
        return Ok((0, size));
    }
    page_token
        .strip_prefix("o:")
        .and_then(|n| n.parse::<usize>().ok())
        .map(|offset| (offset, size))
        .ok_or_else(|| {
            invalid_field(
                ErrorReason::PageTokenInvalid,
                "page_token",
                "page_token was not issued by this server for this listing; start again with an empty token",
            )
        })
}

/// One page of `items` and the token for the next.
pub fn page<T>(items: Vec<T>, offset: usize, size: usize) -> (Vec<T>, String) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
    let next = if offset + size < total {
        format!("o:{}", offset + size)
    } else {
        String::new()
    };
    (page, next)
}

#[tonic::async_trait]
impl pb::consent_service_server::ConsentService for ConsentApi {
    #[tracing::instrument(skip_all)]
    async fn register_consent(
        &self,
        request: Request<pb::RegisterConsentRequest>,
    ) -> Result<Response<pb::RegisterConsentResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let today = self.state.clock.today();
        let person = person_field("person_id", &req.person_id, today)?;
        let given_on = date_field("given_on", &req.given_on)?;
        let expires_on = date_field("expires_on", &req.expires_on)?;
        if req.evidence_reference.trim().is_empty() || req.evidence_reference.chars().count() > MAX_TEXT {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "evidence_reference",
                "evidence_reference is required (your reference to the proof of consent), at most 200 characters",
            ));
        }
        if given_on > today {
            return Err(invalid_field(
                ErrorReason::InvalidDate,
                "given_on",
                "given_on may not be in the future",
            ));
        }
        if expires_on < today || expires_on < given_on {
            return Err(invalid_field(
                ErrorReason::InvalidDate,
                "expires_on",
                "expires_on must be today or later, and not before given_on",
            ));
        }
        let max_days = i64::from(self.state.max_consent_days);
        if (expires_on - given_on).whole_days() > max_days {
            return Err(error_with(
                Code::InvalidArgument,
                ErrorReason::ConsentPeriodTooLong,
                format!(
                    "a consent may run at most {max_days} days from given_on; register it with an earlier expires_on"
                ),
                vec![
                    ("max_days", max_days.to_string()),
                    ("field", "expires_on".to_string()),
                ],
            ));
        }
        let basis = authorize_basis(&self.state, &party, &req.legal_basis).await?;
        if !basis.requires_consent {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "legal_basis",
                "this legal basis does not rest on consent; consents are registered only for bases that require one",
            ));
        }
        let registration = self
            .state
            .store
            .register_consent(
                &NewConsent {
                    party_id: party.party_id.clone(),
                    person: person.as_storage().to_string(),
                    basis_code: basis.code.clone(),
                    given_on,
                    expires_on,
                    evidence_reference: req.evidence_reference.trim().to_string(),
                },
                self.state.clock.now_micros(),
            )
            .await
            .map_err(store_error)?;
        let (consent, created) = match registration {
            ConsentRegistration::Created(c) => (c, true),
            ConsentRegistration::Existing(c) => (c, false),
            ConsentRegistration::Conflict => {
                return Err(error(
                    Code::AlreadyExists,
                    ErrorReason::IdempotencyKeyReused,
                    "a consent with this person, legal basis and evidence_reference is registered with other dates; \
                     use a new evidence_reference for a new consent",
                ));
            }
        };
        // Subscriptions suspended because an earlier consent for this person and basis ended
        // resume under this one (a registered consent is valid today: given_on is not in the
        // future and expires_on not in the past).
        let resumed = self
            .state
            .store
            .resume_with_consent(
                &party.party_id,
                &consent.person,
                &consent.basis_code,
                &consent.consent_id,
                self.state.clock.now_micros(),
            )
            .await
            .map_err(store_error)?;
        if !resumed.is_empty() {
            self.state.notify_history();
        }
        Ok(Response::new(pb::RegisterConsentResponse {
            consent: Some(consent_message(&consent, today)),
            created,
            resumed_subscription_count: u32::try_from(resumed.len()).unwrap_or(u32::MAX),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_consent(
        &self,
        request: Request<pb::RevokeConsentRequest>,
    ) -> Result<Response<pb::RevokeConsentResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        if req.reason.chars().count() > MAX_TEXT {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "reason",
                "reason is at most 200 characters",
            ));
        }
        let consent = self
            .state
            .store
            .revoke_consent(
                &req.consent_id,
                Some(&party.party_id),
                &req.reason,
                self.state.clock.now_micros(),
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound => consent_not_found(),
                other => store_error(other),
            })?;
        let suspended = suspend_consent_subscriptions(&self.state, &consent.consent_id).await?;
        Ok(Response::new(pb::RevokeConsentResponse {
            consent: Some(consent_message(&consent, self.state.clock.today())),
            suspended_subscription_count: suspended,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_consents(
        &self,
        request: Request<pb::ListConsentsRequest>,
    ) -> Result<Response<pb::ListConsentsResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let today = self.state.clock.today();
        let (offset, size) = paging(&req.page_token, req.page_size)?;
        let person = if req.person_id.is_empty() {
            None
        } else {
            Some(
                person_field("person_id", &req.person_id, today)?
                    .as_storage()
                    .to_string(),
            )
        };
        let consents = self
            .state
            .store
            .consents(&ConsentFilter {
                party_id: Some(party.party_id.clone()),
                person,
                basis_code: (!req.legal_basis.is_empty()).then(|| req.legal_basis.clone()),
            })
            .await
            .map_err(store_error)?;
        let matching: Vec<pb::Consent> = consents
            .iter()
            .map(|c| consent_message(c, today))
            .filter(|c| req.states.is_empty() || req.states.contains(&c.state))
            .collect();
        let (consents, next_page_token) = page(matching, offset, size);
        Ok(Response::new(pb::ListConsentsResponse {
            consents,
            next_page_token,
        }))
    }
}

/// Suspends every active subscription made under a revoked consent (their SUSPENDED notices go
/// into the parties' histories at once) and returns how many were suspended. A new consent for
/// the same person and basis resumes them.
pub async fn suspend_consent_subscriptions(state: &AppState, consent_id: &str) -> Result<u32, Status> {
    let suspended = state
        .store
        .withdraw_subscriptions(
            EndSelector::ByConsent { consent_id },
            EndReason::ConsentEnded,
            "the consent was revoked; register a new consent for this person and basis to resume",
            state.clock.now_micros(),
        )
        .await
        .map_err(store_error)?;
    if !suspended.is_empty() {
        state.notify_history();
    }
    Ok(u32::try_from(suspended.len()).unwrap_or(u32::MAX))
}

/// NOT_FOUND for a consent the caller cannot see.
pub fn consent_not_found() -> Status {
    error(
        Code::NotFound,
        ErrorReason::ConsentNotFound,
        "no consent with this id exists for your party; check the id with ListConsents",
    )
}

fn case_message(c: &CaseRecord) -> pb::Case {
    pb::Case {
        case_reference: c.case_reference.clone(),
        state: if c.closed {
            pb::CaseState::Closed as i32
        } else {
            pb::CaseState::Open as i32
        },
        first_used_at: Some(timestamp(c.first_used_at)),
        last_used_at: Some(timestamp(c.last_used_at)),
        closed_at: c.closed_at.map(timestamp),
        open_subscription_count: 0,
    }
}

#[tonic::async_trait]
impl pb::case_service_server::CaseService for CaseApi {
    #[tracing::instrument(skip_all)]
    async fn close_case(
        &self,
        request: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::CloseCaseResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        if req.case_reference.trim().is_empty() {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "case_reference",
                "case_reference is required",
            ));
        }
        if req.reason.chars().count() > MAX_TEXT {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "reason",
                "reason is at most 200 characters",
            ));
        }
        let closed = self
            .state
            .store
            .close_case(
                &party.party_id,
                &req.case_reference,
                &req.reason,
                self.state.clock.now_micros(),
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound => error(
                    Code::NotFound,
                    ErrorReason::CaseNotFound,
                    "your party has never used this case reference; check it with ListCases",
                ),
                other => store_error(other),
            })?;
        let ended = self
            .state
            .store
            .withdraw_subscriptions(
                EndSelector::ByCase {
                    party_id: &party.party_id,
                    case_reference: &req.case_reference,
                },
                EndReason::CaseClosed,
                "the case was closed",
                self.state.clock.now_micros(),
            )
            .await
            .map_err(store_error)?;
        if !ended.is_empty() {
            self.state.notify_history();
        }
        Ok(Response::new(pb::CloseCaseResponse {
            case: Some(case_message(&closed)),
            ended_subscription_count: u32::try_from(ended.len()).unwrap_or(u32::MAX),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_cases(
        &self,
        request: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::ListCasesResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let (offset, size) = paging(&req.page_token, req.page_size)?;
        let cases: Vec<pb::Case> = self
            .state
            .store
            .cases(&party.party_id)
            .await
            .map_err(store_error)?
            .iter()
            .map(case_message)
            .filter(|c| req.states.is_empty() || req.states.contains(&c.state))
            .collect();
        let (cases, next_page_token) = page(cases, offset, size);
        Ok(Response::new(pb::ListCasesResponse {
            cases,
            next_page_token,
        }))
    }
}

//! `lefi.v1.ConsentService`: the consents a party registers for the bases that require one.

use tonic::{Request, Response, Status};

use super::authorize::authorize_basis;
use crate::grpc::fields::{self, FieldError, FieldProblem};
use crate::grpc::paging::{Pages, page_size};
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, Conflict, Missing};
use crate::grpc::{convert, party_of};
use crate::store::consents::{ConsentFilter, ConsentRegistration, NewConsent, RevokedBy};

/// The longest free-text field (evidence references, reasons).
pub const MAX_TEXT: usize = 200;

#[tonic::async_trait]
impl pb::consent_service_server::ConsentService for PartyApi {
    #[tracing::instrument(skip_all)]
    async fn register_consent(
        &self,
        request: Request<pb::RegisterConsentRequest>,
    ) -> Result<Response<pb::RegisterConsentResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let state = &self.state;
        let today = state.clock.today();
        let person = fields::person("person_id", &req.person_id, today)?;
        let given_on = fields::date("given_on", &req.given_on)?;
        let expires_on = fields::date("expires_on", &req.expires_on)?;
        let evidence_reference = fields::required_text(
            "evidence_reference",
            &req.evidence_reference,
            MAX_TEXT,
            "your reference to the proof of consent",
        )?;
        if given_on > today {
            return Err(FieldError::date("given_on", "given_on may not be in the future").into());
        }
        if expires_on < today || expires_on < given_on {
            return Err(FieldError::date(
                "expires_on",
                "expires_on must be today or later, and not before given_on",
            )
            .into());
        }
        let max_days = state.max_consent_days;
        if (expires_on - given_on).whole_days() > i64::from(max_days) {
            return Err(FieldError::new(
                FieldProblem::ConsentPeriodTooLong { max_days },
                "expires_on",
                format!("a consent may run at most {max_days} days from given_on; register it with an earlier expires_on"),
            )
            .into());
        }
        let basis = authorize_basis(state, &party, &req.legal_basis).await?;
        if !basis.requires_consent {
            return Err(FieldError::invalid(
                "legal_basis",
                "this legal basis does not rest on consent; consents are registered only for bases that require one",
            )
            .into());
        }
        let new = NewConsent {
            party_id: party.party_id.clone(),
            person,
            basis_code: basis.code.clone(),
            given_on,
            expires_on,
            evidence_reference,
        };
        let (consent, created) = match state
            .store
            .register_consent(&new, state.clock.now_micros())
            .await?
        {
            ConsentRegistration::Created(c) => (c, true),
            ConsentRegistration::Existing(c) => (c, false),
            ConsentRegistration::Conflict => return Err(status::conflict(Conflict::ConsentDates).into()),
        };
        // Subscriptions suspended because an earlier consent for this person and basis ended
        // resume under this one (a registered consent is valid today: given_on is not in the
        // future and expires_on not in the past).
        let resumed = state
            .store
            .resume_with_consent(
                &party.party_id,
                &consent.person,
                &consent.basis_code,
                &consent.consent_id,
                state.clock.now_micros(),
            )
            .await?;
        if !resumed.is_empty() {
            state.notify_history();
        }
        Ok(Response::new(pb::RegisterConsentResponse {
            consent: Some(convert::consent(&consent, today)),
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
        fields::at_most("reason", &req.reason, MAX_TEXT)?;
        let (consent, suspended) = self
            .state
            .revoke_consent(&req.consent_id, RevokedBy::Party(&party.party_id), &req.reason)
            .await
            .map_err(|e| status::or_missing(e, Missing::Consent))?;
        Ok(Response::new(pb::RevokeConsentResponse {
            consent: Some(convert::consent(&consent, self.state.clock.today())),
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
        let filter = ConsentFilter {
            party_id: Some(party.party_id.clone()),
            person: fields::optional_person("person_id", &req.person_id, today)?,
            basis_code: (!req.legal_basis.is_empty()).then(|| req.legal_basis.clone()),
        };
        let consents = self.state.store.consents(&filter).await?;
        let consents: Vec<pb::Consent> = convert::consent_listing(&consents, &req.states, today)?
            .into_iter()
            .map(|(_, message)| message)
            .collect();
        let pages = Pages::new(
            "ListConsents",
            format!(
                "{}|{}|{}|{:?}",
                party.party_id, req.person_id, req.legal_basis, req.states
            ),
        );
        let (consents, next_page_token) = pages.slice(consents, &req.page_token, page_size(req.page_size))?;
        Ok(Response::new(pb::ListConsentsResponse {
            consents,
            next_page_token,
        }))
    }
}

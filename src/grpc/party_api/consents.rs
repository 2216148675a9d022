//! `lefi.v1.ConsentService`: the consents a party registers for the bases that require one.

use tonic::Status;

use super::authorize::authorize_basis;
use crate::grpc::convert;
use crate::grpc::fields::{self, FieldError, FieldProblem};
use crate::grpc::paging::Pages;
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, Conflict, Missing};
use crate::identity::PartyPrincipal;
use crate::store::consents::{ConsentRegistration, NewConsent, RevokedBy};

/// The longest free-text field (evidence references, reasons).
pub const MAX_TEXT: usize = 200;

impl PartyApi {
    /// Registers a consent (or finds the same one registered), and resumes the subscriptions that
    /// waited for it.
    async fn register_consent(
        &self,
        (party, req): (PartyPrincipal, pb::RegisterConsentRequest),
    ) -> Result<pb::RegisterConsentResponse, Status> {
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
                &consent.registered.person,
                &consent.registered.basis_code,
                &consent.consent_id,
                state.clock.now_micros(),
            )
            .await?;
        if !resumed.is_empty() {
            state.notify_history();
        }
        Ok(pb::RegisterConsentResponse {
            consent: Some(convert::consent(&consent, today)),
            created,
            resumed_subscription_count: u32::try_from(resumed.len()).unwrap_or(u32::MAX),
        })
    }

    /// Revokes one of the party's consents and suspends the subscriptions that rest on it.
    async fn revoke_consent(
        &self,
        (party, req): (PartyPrincipal, pb::RevokeConsentRequest),
    ) -> Result<pb::RevokeConsentResponse, Status> {
        fields::at_most("reason", &req.reason, MAX_TEXT)?;
        let (consent, suspended) = self
            .state
            .revoke_consent(&req.consent_id, RevokedBy::Party(&party.party_id), &req.reason)
            .await
            .map_err(|e| status::or_missing(e, Missing::Consent))?;
        Ok(pb::RevokeConsentResponse {
            consent: Some(convert::consent(&consent, self.state.clock.today())),
            suspended_subscription_count: suspended,
        })
    }

    /// One page of the party's consents matching the request's filters.
    async fn list_consents(
        &self,
        (party, req): (PartyPrincipal, pb::ListConsentsRequest),
    ) -> Result<pb::ListConsentsResponse, Status> {
        let today = self.state.clock.today();
        let filter = convert::consent_filter(
            Some(party.party_id.clone()),
            &req.person_id,
            &req.legal_basis,
            today,
        )?;
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
        Ok(pages.slice_into(consents, &req.page_token, req.page_size)?)
    }
}

crate::grpc::service! {
    impl pb::consent_service_server::ConsentService for PartyApi {
        register_consent(pb::RegisterConsentRequest) -> pb::RegisterConsentResponse: party;
        revoke_consent(pb::RevokeConsentRequest) -> pb::RevokeConsentResponse: party;
        list_consents(pb::ListConsentsRequest) -> pb::ListConsentsResponse: party;
    }
}

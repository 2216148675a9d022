//! `lefi.v1.CaseService`: the case references (ärenden) an authority attests, and closing them.

use tonic::Status;

use crate::domain::delivery::EndReason;
use crate::grpc::convert;
use crate::grpc::fields::{self, FieldError};
use crate::grpc::paging::Pages;
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, Missing};
use crate::identity::PartyPrincipal;
use crate::store::consents::CaseRecord;
use crate::store::delivery::EndSelector;

/// The longest close reason.
const MAX_REASON: usize = 200;

fn case_message(c: &CaseRecord) -> pb::Case {
    pb::Case {
        case_reference: c.case_reference.clone(),
        state: if c.closed {
            pb::CaseState::Closed as i32
        } else {
            pb::CaseState::Open as i32
        },
        first_used_at: Some(convert::timestamp(c.first_used_at)),
        last_used_at: Some(convert::timestamp(c.last_used_at)),
        closed_at: c.closed_at.map(convert::timestamp),
        open_subscription_count: 0,
    }
}

impl PartyApi {
    /// Closes one of the party's cases and ends the subscriptions that rest on it.
    async fn close_case(
        &self,
        (party, req): (PartyPrincipal, pb::CloseCaseRequest),
    ) -> Result<pb::CloseCaseResponse, Status> {
        if req.case_reference.trim().is_empty() {
            return Err(FieldError::invalid("case_reference", "case_reference is required").into());
        }
        fields::at_most("reason", &req.reason, MAX_REASON)?;
        let state = &self.state;
        let closed = state
            .store
            .close_case(
                &party.party_id,
                &req.case_reference,
                &req.reason,
                state.clock.now_micros(),
            )
            .await
            .map_err(|e| status::or_missing(e, Missing::Case))?;
        let selector = EndSelector::ByCase {
            party_id: &party.party_id,
            case_reference: &req.case_reference,
        };
        let ended = state
            .withdraw_subscriptions(selector, EndReason::CaseClosed, "the case was closed")
            .await?;
        Ok(pb::CloseCaseResponse {
            case: Some(case_message(&closed)),
            ended_subscription_count: u32::try_from(ended.len()).unwrap_or(u32::MAX),
        })
    }

    /// One page of the party's cases, in the states asked for (all when none).
    async fn list_cases(
        &self,
        (party, req): (PartyPrincipal, pb::ListCasesRequest),
    ) -> Result<pb::ListCasesResponse, Status> {
        let states = fields::enum_list(
            "states",
            &req.states,
            |n| {
                pb::CaseState::try_from(n)
                    .ok()
                    .filter(|s| *s != pb::CaseState::Unspecified)
            },
            "OPEN and CLOSED",
        )?;
        let cases: Vec<pb::Case> = self
            .state
            .store
            .cases(&party.party_id)
            .await?
            .iter()
            .map(case_message)
            .filter(|c| states.is_empty() || states.iter().any(|s| *s as i32 == c.state))
            .collect();
        let pages = Pages::new("ListCases", format!("{}|{:?}", party.party_id, req.states));
        Ok(pages.slice_into(cases, &req.page_token, req.page_size)?)
    }
}

crate::grpc::service! {
    impl pb::case_service_server::CaseService for PartyApi {
        close_case(pb::CloseCaseRequest) -> pb::CloseCaseResponse: party;
        list_cases(pb::ListCasesRequest) -> pb::ListCasesResponse: party;
    }
}

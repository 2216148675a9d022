//! `lefi.v1.CaseService`: the case references (ärenden) an authority attests, and closing them.

use tonic::{Request, Response, Status};

use crate::domain::delivery::EndReason;
use crate::grpc::fields::{self, FieldError};
use crate::grpc::paging::{Pages, page_size};
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, Missing};
use crate::grpc::{convert, party_of};
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

#[tonic::async_trait]
impl pb::case_service_server::CaseService for PartyApi {
    #[tracing::instrument(skip_all)]
    async fn close_case(
        &self,
        request: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::CloseCaseResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
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
        let (cases, next_page_token) = pages.slice(cases, &req.page_token, page_size(req.page_size))?;
        Ok(Response::new(pb::ListCasesResponse {
            cases,
            next_page_token,
        }))
    }
}

//! The party API (`lefi.v1`): who am I, the catalogues, and the delivery stream.

use std::time::Duration;

use tonic::{Code, Request, Response, Status};

use crate::app::AppState;
use crate::domain::clock::format_date;
use crate::grpc::convert;
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{error, store_error};
use crate::grpc::{consents, delivery, party_of, subscriptions};

/// Adds every party-facing service to `routes`.
pub fn add_services(routes: &mut tonic::service::RoutesBuilder, state: &AppState) {
    routes
        .add_service(pb::party_service_server::PartyServiceServer::new(PartyApi {
            state: state.clone(),
        }))
        .add_service(pb::delivery_service_server::DeliveryServiceServer::new(
            delivery::DeliveryApi::new(state.clone()),
        ))
        .add_service(pb::subscription_service_server::SubscriptionServiceServer::new(
            subscriptions::SubscriptionApi { state: state.clone() },
        ))
        .add_service(pb::query_service_server::QueryServiceServer::new(
            crate::grpc::query::QueryApi::new(state.clone()),
        ))
        .add_service(pb::consent_service_server::ConsentServiceServer::new(
            consents::ConsentApi { state: state.clone() },
        ))
        .add_service(pb::case_service_server::CaseServiceServer::new(
            consents::CaseApi { state: state.clone() },
        ));
}

/// `lefi.v1.PartyService`.
#[derive(Debug, Clone)]
pub struct PartyApi {
    state: AppState,
}

#[tonic::async_trait]
impl pb::party_service_server::PartyService for PartyApi {
    #[tracing::instrument(skip_all)]
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let party = party_of(&request)?;
        let agreement = self
            .state
            .store
            .agreement_for_party(&party.party_id)
            .await
            .map_err(store_error)?;
        let mut response = pb::WhoAmIResponse {
            party_id: party.party_id.clone(),
            org_number: party.org_number.to_string(),
            name: party.name.clone(),
            kind: convert::party_kind(party.kind) as i32,
            state: convert::party_state(party.state) as i32,
            agreement_type: convert::agreement_type(party.kind.agreement_type()) as i32,
            certificate_fingerprint: party.fingerprint.clone(),
            certificate_not_after: Some(convert::timestamp(party.certificate_not_after)),
            termination_effective_date: party.termination_effective.map(format_date).unwrap_or_default(),
            ..Default::default()
        };
        if let Some(agreement) = agreement {
            response.agreement_id = agreement.agreement_id;
            response.agreement_valid_from = format_date(agreement.valid_from);
            response.granted_basis_codes = agreement.basis_codes;
            response.granted_benefit_type_codes = agreement.benefit_codes;
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn list_legal_bases(
        &self,
        request: Request<pb::ListLegalBasesRequest>,
    ) -> Result<Response<pb::ListLegalBasesResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let today = self.state.clock.today();
        let granted = if req.granted_only {
            let agreement = self
                .state
                .store
                .agreement_for_party(&party.party_id)
                .await
                .map_err(store_error)?;
            Some(agreement.map(|a| a.basis_codes).unwrap_or_default())
        } else {
            None
        };
        let bases = self.state.store.legal_bases().await.map_err(store_error)?;
        let legal_bases = bases
            .iter()
            .filter(|b| req.include_not_in_force || b.in_force_on(today))
            .filter(|b| granted.as_ref().is_none_or(|g| g.contains(&b.code)))
            .map(convert::legal_basis)
            .collect();
        Ok(Response::new(pb::ListLegalBasesResponse { legal_bases }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_benefit_types(
        &self,
        request: Request<pb::ListBenefitTypesRequest>,
    ) -> Result<Response<pb::ListBenefitTypesResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let granted = if req.granted_only {
            let agreement = self
                .state
                .store
                .agreement_for_party(&party.party_id)
                .await
                .map_err(store_error)?;
            Some(agreement.map(|a| a.benefit_codes).unwrap_or_default())
        } else {
            None
        };
        let types = self.state.store.benefit_types().await.map_err(store_error)?;
        let benefit_types = types
            .iter()
            .filter(|t| granted.as_ref().is_none_or(|g| g.contains(&t.code)))
            .map(convert::benefit_type)
            .collect();
        Ok(Response::new(pb::ListBenefitTypesResponse { benefit_types }))
    }
}

/// The status a stream ends with when the server drains: clients reconnect and resume.
pub fn shutting_down() -> Status {
    error(
        Code::Unavailable,
        ErrorReason::ServerShuttingDown,
        "the server is shutting down; reconnect (to another replica, or shortly) and resume from your last cursor",
    )
}

/// Bounds for a client-requested heartbeat interval.
pub fn heartbeat_interval(
    requested: Option<&prost_types::Duration>,
    default: Duration,
) -> Result<Duration, Status> {
    let Some(d) = requested else {
        return Ok(default);
    };
    let seconds = u64::try_from(d.seconds).ok();
    let nanos = u32::try_from(d.nanos).ok();
    match (seconds, nanos) {
        (Some(s), Some(n)) => {
            let d = Duration::new(s, n);
            if d < Duration::from_secs(1) || d > Duration::from_secs(300) {
                Err(crate::grpc::status::invalid_field(
                    ErrorReason::InvalidArgument,
                    "heartbeat_interval",
                    "heartbeat_interval must be between 1 s and 300 s (or unset for the server default)",
                ))
            } else {
                Ok(d)
            }
        }
        _ => Err(crate::grpc::status::invalid_field(
            ErrorReason::InvalidArgument,
            "heartbeat_interval",
            "heartbeat_interval must be positive",
        )),
    }
}

//! The party API (`lefi.v1`), served on the party listener to insurers and authorities.
//!
//! One module per service: [`party`] (who am I, catalogues), [`subscriptions`], [`consents`],
//! [`cases`], [`query`], [`delivery`] (the stream), [`statistics`] (statistics orders). [`authorize`] is their shared helper for the
//! disclosure policy, not a service. No service imports another.

pub mod authorize;
pub mod cases;
pub mod consents;
pub mod delivery;
pub mod party;
pub mod query;
pub mod statistics;
pub mod subscriptions;

use crate::grpc::pb::lefi::v1 as pb;
use crate::state::AppState;

/// The services reflection advertises on the party listener.
pub const SERVICE_NAMES: &[&str] = &[
    "lefi.v1.PartyService",
    "lefi.v1.SubscriptionService",
    "lefi.v1.DeliveryService",
    "lefi.v1.QueryService",
    "lefi.v1.ConsentService",
    "lefi.v1.CaseService",
    "lefi.v1.StatisticsOrderService",
    "grpc.health.v1.Health",
];

/// The party API's services: one value, shared by every service of the API.
#[derive(Debug, Clone)]
pub struct PartyApi {
    pub state: AppState,
}

/// Adds every party-facing service to `routes`.
pub fn add_services(routes: &mut tonic::service::RoutesBuilder, state: &AppState) {
    let api = PartyApi { state: state.clone() };
    // The request limit tonic enforces; its refusal is given lefi's form in `grpc::codec`.
    let max = state.max_message_bytes;
    routes
        .add_service(
            pb::party_service_server::PartyServiceServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            pb::delivery_service_server::DeliveryServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::subscription_service_server::SubscriptionServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::query_service_server::QueryServiceServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            pb::consent_service_server::ConsentServiceServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            pb::case_service_server::CaseServiceServer::new(api.clone()).max_decoding_message_size(max),
        )
        .add_service(
            pb::statistics_order_service_server::StatisticsOrderServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        );
}

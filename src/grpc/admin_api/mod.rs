//! The admin API (`lefi.admin.v1`), served on the operator listener to the agency's operators.
//!
//! One module per service: [`operator`] (who am I), [`parties`] (onboarding and termination, every
//! change through one idempotent helper), [`register`] (the feed and the operator's view of a
//! person), [`audit`] (the disclosure log and consent oversight), [`statistics`] (the statistics
//! unit's side of statistics orders); [`convert`] holds their request
//! checks and answers. Every call names the operator right it needs (`policy::operator`). No
//! service imports another.

pub mod audit;
pub mod convert;
pub mod operator;
pub mod parties;
pub mod register;
pub mod statistics;

use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::state::AppState;

/// The services reflection advertises on the admin listener.
pub const SERVICE_NAMES: &[&str] = &[
    "lefi.admin.v1.OperatorService",
    "lefi.admin.v1.PartyAdminService",
    "lefi.admin.v1.RegisterAdminService",
    "lefi.admin.v1.AuditAdminService",
    "lefi.admin.v1.StatisticsAdminService",
    "grpc.health.v1.Health",
];

/// The admin API's services: one value, shared by every service of the API.
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub state: AppState,
}

/// Adds every operator-facing service to `routes`.
pub fn add_services(routes: &mut tonic::service::RoutesBuilder, state: &AppState) {
    let api = AdminApi { state: state.clone() };
    // The request limit tonic enforces; its refusal is given lefi's form in `grpc::codec`.
    let max = state.max_message_bytes;
    routes
        .add_service(
            pb::operator_service_server::OperatorServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::party_admin_service_server::PartyAdminServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::register_admin_service_server::RegisterAdminServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::audit_admin_service_server::AuditAdminServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        )
        .add_service(
            pb::statistics_admin_service_server::StatisticsAdminServiceServer::new(api.clone())
                .max_decoding_message_size(max),
        );
}

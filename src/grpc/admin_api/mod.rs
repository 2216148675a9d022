//! The admin API (`lefi.admin.v1`), served on the operator listener to the agency's operators.
//!
//! One module per service: [`operator`] (who am I), [`parties`] (onboarding and termination, every
//! change through one idempotent helper), [`register`] (the feed and the operator's view of a
//! person), [`audit`] (the disclosure log and consent oversight); [`convert`] holds their request
//! checks and answers. Every call names the operator right it needs (`policy::operator`). No
//! service imports another.

pub mod audit;
pub mod convert;
pub mod operator;
pub mod parties;
pub mod register;

use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::state::AppState;

/// The services reflection advertises on the admin listener.
pub const SERVICE_NAMES: &[&str] = &[
    "lefi.admin.v1.OperatorService",
    "lefi.admin.v1.PartyAdminService",
    "lefi.admin.v1.RegisterAdminService",
    "lefi.admin.v1.AuditAdminService",
    "grpc.health.v1.Health",
];

/// Adds every operator-facing service to `routes`.
pub fn add_services(routes: &mut tonic::service::RoutesBuilder, state: &AppState) {
    let state = || state.clone();
    routes
        .add_service(pb::operator_service_server::OperatorServiceServer::new(
            operator::OperatorApi { state: state() },
        ))
        .add_service(pb::party_admin_service_server::PartyAdminServiceServer::new(
            parties::PartyAdminApi { state: state() },
        ))
        .add_service(
            pb::register_admin_service_server::RegisterAdminServiceServer::new(register::RegisterApi {
                state: state(),
            }),
        )
        .add_service(pb::audit_admin_service_server::AuditAdminServiceServer::new(
            audit::AuditApi { state: state() },
        ));
}

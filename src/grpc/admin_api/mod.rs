//! The admin API (`lefi.admin.v1`), served on the operator listener to the agency's operators.
//!
//! One module per service: [`operator`] (who am I), [`parties`] (onboarding and termination, every
//! change through one idempotent helper), [`register`] (the feed and the operator's view of a
//! person), [`audit`] (the disclosure log and consent oversight), [`statistics`] (the statistics
//! unit's side of statistics orders), [`operations`] (each party's delivery and consumers); [`convert`] holds their request
//! checks and answers. No service imports another.
//!
//! Every RPC names the operator right it needs in its service's `grpc::service!` table: its
//! guard is `AdminApi::needs` (the one role check, `policy::operator`), the changes' `change` or
//! `change_of_party` (the right to manage parties, the idempotency key, and the party changed), or
//! `AdminApi::any_operator` for what every operator may ask.

pub mod audit;
pub mod convert;
pub mod operations;
pub mod operator;
pub mod parties;
pub mod register;
pub mod statistics;

use tonic::{Request, Status};

use crate::grpc::pb::lefi::admin::v1::audit_admin_service_server::AuditAdminServiceServer;
use crate::grpc::pb::lefi::admin::v1::operations_admin_service_server::OperationsAdminServiceServer;
use crate::grpc::pb::lefi::admin::v1::operator_service_server::OperatorServiceServer;
use crate::grpc::pb::lefi::admin::v1::party_admin_service_server::PartyAdminServiceServer;
use crate::grpc::pb::lefi::admin::v1::register_admin_service_server::RegisterAdminServiceServer;
use crate::grpc::pb::lefi::admin::v1::statistics_admin_service_server::StatisticsAdminServiceServer;
use crate::grpc::{operator_of, operator_with};
use crate::identity::OperatorPrincipal;
use crate::policy::operator::AdminRight;
use crate::state::AppState;

/// The admin API's services: one value, shared by every service of the API.
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub state: AppState,
}

crate::grpc::services!(
    AdminApi,
    [
        OperatorServiceServer,
        PartyAdminServiceServer,
        RegisterAdminServiceServer,
        AuditAdminServiceServer,
        StatisticsAdminServiceServer,
        OperationsAdminServiceServer,
    ]
);

impl AdminApi {
    /// The guard of the admin RPCs that need `right`: the operator, if its role holds the right,
    /// and the request message.
    fn needs<T>(&self, request: Request<T>, right: AdminRight) -> Result<(OperatorPrincipal, T), Status> {
        Ok((operator_with(&request, right)?, request.into_inner()))
    }

    /// The guard of the admin RPCs every operator may make, whatever its role.
    fn any_operator<T>(&self, request: Request<T>) -> Result<(OperatorPrincipal, T), Status> {
        Ok((operator_of(&request)?, request.into_inner()))
    }
}

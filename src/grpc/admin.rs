//! The admin API (`lefi.admin.v1`), served on the operator listener.

use tonic::{Request, Response, Status};

use crate::app::AppState;
use crate::domain::OperatorRole;
use crate::grpc::operator_of;
use crate::grpc::pb::lefi::admin::v1 as pb;

/// Adds every operator-facing service to `routes`.
pub fn add_services(routes: &mut tonic::service::RoutesBuilder, state: &AppState) {
    routes
        .add_service(pb::operator_service_server::OperatorServiceServer::new(
            OperatorApi {
                _state: state.clone(),
            },
        ))
        .add_service(pb::party_admin_service_server::PartyAdminServiceServer::new(
            NotYet,
        ))
        .add_service(
            pb::register_admin_service_server::RegisterAdminServiceServer::new(
                crate::grpc::register::RegisterApi::new(state.clone()),
            ),
        )
        .add_service(pb::audit_admin_service_server::AuditAdminServiceServer::new(
            NotYet,
        ));
}

/// Services whose RPCs are specified in the contract but not built yet: each answers UNIMPLEMENTED.
#[derive(Debug, Clone, Copy)]
pub struct NotYet;

#[tonic::async_trait]
impl pb::party_admin_service_server::PartyAdminService for NotYet {}
#[tonic::async_trait]
impl pb::audit_admin_service_server::AuditAdminService for NotYet {}

/// `lefi.admin.v1.OperatorService`.
#[derive(Debug, Clone)]
pub struct OperatorApi {
    _state: AppState,
}

#[tonic::async_trait]
impl pb::operator_service_server::OperatorService for OperatorApi {
    #[tracing::instrument(skip_all)]
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let operator = operator_of(&request)?;
        Ok(Response::new(pb::WhoAmIResponse {
            name: operator.name,
            role: operator_role(operator.role) as i32,
            certificate_fingerprint: operator.fingerprint,
        }))
    }
}

fn operator_role(role: OperatorRole) -> pb::OperatorRole {
    match role {
        OperatorRole::Operator => pb::OperatorRole::Operator,
        OperatorRole::Auditor => pb::OperatorRole::Auditor,
        OperatorRole::Ingest => pb::OperatorRole::Ingest,
    }
}

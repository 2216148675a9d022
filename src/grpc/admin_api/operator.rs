//! `lefi.admin.v1.OperatorService`: who am I, and the legal-basis catalogue.

use tonic::{Request, Response, Status};

use super::convert::operator_role;
use crate::grpc::admin_api::AdminApi;
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::pb::lefi::v1 as party_pb;
use crate::grpc::{convert, operator_of};

#[tonic::async_trait]
impl pb::operator_service_server::OperatorService for AdminApi {
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

    #[tracing::instrument(skip_all)]
    async fn list_legal_bases(
        &self,
        request: Request<party_pb::ListLegalBasesRequest>,
    ) -> Result<Response<party_pb::ListLegalBasesResponse>, Status> {
        operator_of(&request)?;
        let req = request.into_inner();
        let bases = self.state.store.legal_bases().await?;
        Ok(Response::new(party_pb::ListLegalBasesResponse {
            legal_bases: convert::legal_bases(&bases, req.include_not_in_force, self.state.clock.today()),
        }))
    }
}

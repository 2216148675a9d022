//! `lefi.admin.v1.OperatorService`: who am I, and the legal-basis catalogue.

use tonic::Status;

use super::convert::operator_role;
use crate::grpc::admin_api::AdminApi;
use crate::grpc::convert;
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::pb::lefi::v1 as party_pb;
use crate::identity::OperatorPrincipal;

impl AdminApi {
    /// The operator as registered, and the certificate it called with.
    async fn who_am_i(
        &self,
        (operator, _): (OperatorPrincipal, pb::WhoAmIRequest),
    ) -> Result<pb::WhoAmIResponse, Status> {
        Ok(pb::WhoAmIResponse {
            name: operator.name,
            role: operator_role(operator.role) as i32,
            certificate_fingerprint: operator.fingerprint,
        })
    }

    /// The legal bases of the catalogue (those in force today, or all).
    async fn list_legal_bases(
        &self,
        (_, req): (OperatorPrincipal, party_pb::ListLegalBasesRequest),
    ) -> Result<party_pb::ListLegalBasesResponse, Status> {
        let bases = self.state.store.legal_bases().await?;
        Ok(party_pb::ListLegalBasesResponse {
            legal_bases: convert::legal_bases(&bases, req.include_not_in_force, self.state.clock.today()),
        })
    }
}

crate::grpc::service! {
    impl pb::operator_service_server::OperatorService for AdminApi {
        who_am_i(pb::WhoAmIRequest) -> pb::WhoAmIResponse: any_operator;
        list_legal_bases(party_pb::ListLegalBasesRequest) -> party_pb::ListLegalBasesResponse: any_operator;
    }
}

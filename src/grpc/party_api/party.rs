//! `lefi.v1.PartyService`: who am I, and the catalogues.

use tonic::{Request, Response, Status};

use crate::domain::clock::format_date;
use crate::grpc::convert;
use crate::grpc::party_api::PartyApi;
use crate::grpc::party_of;
use crate::grpc::pb::lefi::v1 as pb;

impl PartyApi {
    /// The codes the party's agreement grants, when the request asks for those only.
    async fn granted(
        &self,
        party_id: &str,
        granted_only: bool,
        pick: fn(crate::domain::catalogue::Agreement) -> Vec<String>,
    ) -> Result<Option<Vec<String>>, Status> {
        if !granted_only {
            return Ok(None);
        }
        let agreement = self.state.store.agreement_for_party(party_id).await?;
        Ok(Some(agreement.map(pick).unwrap_or_default()))
    }
}

#[tonic::async_trait]
impl pb::party_service_server::PartyService for PartyApi {
    #[tracing::instrument(skip_all)]
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let party = party_of(&request)?;
        let agreement = self.state.store.agreement_for_party(&party.party_id).await?;
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
        let granted = self
            .granted(&party.party_id, req.granted_only, |a| a.basis_codes)
            .await?;
        let bases = self.state.store.legal_bases().await?;
        Ok(Response::new(pb::ListLegalBasesResponse {
            legal_bases: convert::legal_bases(&bases, req.include_not_in_force, self.state.clock.today())
                .into_iter()
                .filter(|b| granted.as_ref().is_none_or(|g| g.contains(&b.code)))
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_benefit_types(
        &self,
        request: Request<pb::ListBenefitTypesRequest>,
    ) -> Result<Response<pb::ListBenefitTypesResponse>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let granted = self
            .granted(&party.party_id, req.granted_only, |a| a.benefit_codes)
            .await?;
        let types = self.state.store.benefit_types().await?;
        let benefit_types = types
            .iter()
            .filter(|t| granted.as_ref().is_none_or(|g| g.contains(&t.code)))
            .map(convert::benefit_type)
            .collect();
        Ok(Response::new(pb::ListBenefitTypesResponse { benefit_types }))
    }
}

//! `lefi.v1.PartyService`: who am I, and the catalogues.

use tonic::Status;

use crate::domain::catalogue::Agreement;
use crate::domain::clock::format_date;
use crate::grpc::convert;
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::lefi::v1 as pb;
use crate::identity::PartyPrincipal;

impl PartyApi {
    /// The party as the agency registered it, its agreement, and the certificate it called with.
    async fn who_am_i(
        &self,
        (party, _): (PartyPrincipal, pb::WhoAmIRequest),
    ) -> Result<pb::WhoAmIResponse, Status> {
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
        Ok(response)
    }

    /// The legal bases in force today (or all), each only if granted when the request asks.
    async fn list_legal_bases(
        &self,
        (party, req): (PartyPrincipal, pb::ListLegalBasesRequest),
    ) -> Result<pb::ListLegalBasesResponse, Status> {
        let bases = self.state.store.legal_bases().await?;
        let bases = convert::legal_bases(&bases, req.include_not_in_force, self.state.clock.today());
        let legal_bases = self
            .granted(&party, req.granted_only, bases, |b| &b.code, |a| a.basis_codes)
            .await?;
        Ok(pb::ListLegalBasesResponse { legal_bases })
    }

    /// The benefit types, each only if granted when the request asks.
    async fn list_benefit_types(
        &self,
        (party, req): (PartyPrincipal, pb::ListBenefitTypesRequest),
    ) -> Result<pb::ListBenefitTypesResponse, Status> {
        let types = self.state.store.benefit_types().await?.to_vec();
        let types = self
            .granted(&party, req.granted_only, types, |t| &t.code, |a| a.benefit_codes)
            .await?;
        Ok(pb::ListBenefitTypesResponse {
            benefit_types: types.iter().map(convert::benefit_type).collect(),
        })
    }

    /// The entries of a catalogue listing: all of them, or with `granted_only` those whose code
    /// (`code`) is among the codes the party's agreement grants (`granted` picks that list).
    async fn granted<T: Send>(
        &self,
        party: &PartyPrincipal,
        granted_only: bool,
        entries: Vec<T>,
        code: fn(&T) -> &String,
        granted: fn(Agreement) -> Vec<String>,
    ) -> Result<Vec<T>, Status> {
        if !granted_only {
            return Ok(entries);
        }
        let agreement = self.state.store.agreement_for_party(&party.party_id).await?;
        let granted = agreement.map(granted).unwrap_or_default();
        Ok(entries
            .into_iter()
            .filter(|e| granted.contains(code(e)))
            .collect())
    }
}

crate::grpc::service! {
    impl pb::party_service_server::PartyService for PartyApi {
        who_am_i(pb::WhoAmIRequest) -> pb::WhoAmIResponse: party;
        list_legal_bases(pb::ListLegalBasesRequest) -> pb::ListLegalBasesResponse: party;
        list_benefit_types(pb::ListBenefitTypesRequest) -> pb::ListBenefitTypesResponse: party;
    }
}

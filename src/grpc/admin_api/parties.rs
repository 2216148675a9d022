//! `lefi.admin.v1.PartyAdminService`: onboarding, certificates, termination and history.
//!
//! Every change goes through [`PartyAdminApi::change`]: the operator must hold the right to manage
//! parties, the idempotency key is taken out of the request and checked, the rest of the request
//! is hashed with the method (what a retry under the same key must repeat), the store makes the
//! change in one transaction and keeps the encoded answer with the key, and every retry gets those
//! same bytes back.

use prost::Message;
use time::Date;
use tonic::{Request, Response, Status};

use super::convert;
use crate::domain::clock::{Micros, business_date_at};
use crate::grpc::admin_api::AdminApi;
use crate::grpc::convert::party_state;
use crate::grpc::fields;
use crate::grpc::operator_with;
use crate::grpc::paging::{Pages, page_size};
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::status::{self, CodeFields, Missing};
use crate::identity::verify_party_certificate;
use crate::policy::operator::AdminRight;
use crate::store::parties::{Actor, Idempotency, PartyChange, PartyRecord};

/// The code lists of Apply.
const REQUESTED: CodeFields = CodeFields {
    bases: "requested_basis_codes",
    benefits: "requested_benefit_type_codes",
};
/// The code lists of SendAgreement.
const GRANTED: CodeFields = CodeFields {
    bases: "granted_basis_codes",
    benefits: "granted_benefit_type_codes",
};

/// A change request, checked as far as the request alone allows: who asks, the request without its
/// key, the key and the hash a retry must repeat, and the time the change is judged at.
struct Change<T> {
    actor: Actor,
    req: T,
    key: String,
    hash: String,
    now: Micros,
    today: Date,
}

impl AdminApi {
    /// The common start of every change (see the module docs).
    fn begin<T: Message>(
        &self,
        request: Request<T>,
        method: &str,
        key_of: fn(&mut T) -> &mut String,
    ) -> Result<Change<T>, Status> {
        let operator = operator_with(&request, AdminRight::ManageParties)?;
        let mut req = request.into_inner();
        let key = std::mem::take(key_of(&mut req));
        let key = convert::idempotency_key(&key)?.to_string();
        let hash = convert::request_hash(method, &req.encode_to_vec());
        let now = self.state.clock.now_micros();
        Ok(Change {
            actor: Actor {
                name: operator.name,
                fingerprint: operator.fingerprint,
            },
            req,
            key,
            hash,
            now,
            today: business_date_at(now),
        })
    }

    /// Makes the change and answers with `respond` of the party as it is afterwards (or, for a
    /// retry, with the answer the first call got). Open streams re-check their right at once.
    async fn change<T, M: Message + Default>(
        &self,
        change: &Change<T>,
        step: PartyChange<'_>,
        fields: CodeFields,
        respond: impl Fn(&PartyRecord) -> M + Sync,
    ) -> Result<Response<M>, Status> {
        let respond = |p: &PartyRecord| respond(p).encode_to_vec();
        let idem = Idempotency {
            key: &change.key,
            request_hash: &change.hash,
            respond: &respond,
        };
        let bytes = self
            .state
            .store
            .change_party(&change.actor, &idem, step, change.now)
            .await
            .map_err(|e| status::admin(e, fields))?;
        self.state.notify_history();
        M::decode(bytes.as_slice())
            .map(Response::new)
            .map_err(|e| status::internal("a stored admin response does not decode", &e))
    }

    /// The party as the answer of most changes shows it.
    fn party_at(today: Date) -> impl Fn(&PartyRecord) -> Option<pb::Party> + Sync {
        move |p| Some(convert::party(p, today))
    }
}

#[tonic::async_trait]
impl pb::party_admin_service_server::PartyAdminService for AdminApi {
    #[tracing::instrument(skip_all)]
    async fn apply(&self, request: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyResponse>, Status> {
        let change = self.begin(request, "Apply", |r| &mut r.idempotency_key)?;
        let application = convert::application(&change.req)?;
        let party = Self::party_at(change.today);
        self.change(&change, PartyChange::Apply(&application), REQUESTED, |p| {
            pb::ApplyResponse { party: party(p) }
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn send_agreement(
        &self,
        request: Request<pb::SendAgreementRequest>,
    ) -> Result<Response<pb::SendAgreementResponse>, Status> {
        let change = self.begin(request, "SendAgreement", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&change.req.party_id)?;
        let agreement = convert::agreement(&change.req)?;
        let step = PartyChange::SendAgreement {
            party_id: &party_id,
            agreement: &agreement,
        };
        let party = Self::party_at(change.today);
        self.change(&change, step, GRANTED, |p| pb::SendAgreementResponse {
            party: party(p),
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn record_signature(
        &self,
        request: Request<pb::RecordSignatureRequest>,
    ) -> Result<Response<pb::RecordSignatureResponse>, Status> {
        let change = self.begin(request, "RecordSignature", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&change.req.party_id)?;
        let signature = convert::signature(&change.req, change.today)?;
        let step = PartyChange::RecordSignature {
            party_id: &party_id,
            signature: &signature,
        };
        let party = Self::party_at(change.today);
        self.change(&change, step, CodeFields::NONE, |p| pb::RecordSignatureResponse {
            party: party(p),
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn add_certificate(
        &self,
        request: Request<pb::AddCertificateRequest>,
    ) -> Result<Response<pb::AddCertificateResponse>, Status> {
        let change = self.begin(request, "AddCertificate", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&change.req.party_id)?;
        let certificate = verify_party_certificate(
            self.state.party_certificates.as_ref(),
            change.req.certificate_pem.as_bytes(),
            change.now,
        )?;
        let step = PartyChange::AddCertificate {
            party_id: &party_id,
            certificate: &certificate,
        };
        let today = change.today;
        self.change(&change, step, CodeFields::NONE, |p| pb::AddCertificateResponse {
            certificate: p
                .certificates
                .iter()
                .find(|c| c.fingerprint == certificate.fingerprint)
                .map(convert::certificate),
            party_state: party_state(p.state_on(today)) as i32,
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::RevokeCertificateResponse>, Status> {
        let change = self.begin(request, "RevokeCertificate", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&change.req.party_id)?;
        let fingerprint = convert::fingerprint(&change.req.fingerprint)?;
        let reason = convert::reason(&change.req.reason)?;
        let step = PartyChange::RevokeCertificate {
            party_id: &party_id,
            fingerprint: &fingerprint,
            reason: &reason,
        };
        self.change(&change, step, CodeFields::NONE, |p| {
            pb::RevokeCertificateResponse {
                certificate: p
                    .certificates
                    .iter()
                    .find(|c| c.fingerprint == fingerprint)
                    .map(convert::certificate),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn schedule_termination(
        &self,
        request: Request<pb::ScheduleTerminationRequest>,
    ) -> Result<Response<pb::ScheduleTerminationResponse>, Status> {
        let change = self.begin(request, "ScheduleTermination", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&change.req.party_id)?;
        let notice = convert::termination_notice(&change.req, change.today)?;
        let step = PartyChange::ScheduleTermination {
            party_id: &party_id,
            notice: &notice,
        };
        let party = Self::party_at(change.today);
        self.change(&change, step, CodeFields::NONE, |p| {
            pb::ScheduleTerminationResponse { party: party(p) }
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn withdraw_termination(
        &self,
        request: Request<pb::WithdrawTerminationRequest>,
    ) -> Result<Response<pb::WithdrawTerminationResponse>, Status> {
        let change = self.begin(request, "WithdrawTermination", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&change.req.party_id)?;
        let reason = convert::reason(&change.req.reason)?;
        let step = PartyChange::WithdrawTermination {
            party_id: &party_id,
            reason: &reason,
        };
        let party = Self::party_at(change.today);
        self.change(&change, step, CodeFields::NONE, |p| {
            pb::WithdrawTerminationResponse { party: party(p) }
        })
        .await
    }

    #[tracing::instrument(skip_all)]
    async fn get_party(&self, request: Request<pb::GetPartyRequest>) -> Result<Response<pb::Party>, Status> {
        operator_with(&request, AdminRight::ReadParties)?;
        let now = self.state.clock.now_micros();
        let store = &self.state.store;
        let record = match request.into_inner().key {
            Some(pb::get_party_request::Key::PartyId(id)) => {
                let id = convert::party_id(&id)?;
                store.settle_terminations(now).await?;
                store.party_record(&id).await?
            }
            Some(pb::get_party_request::Key::OrgNumber(org)) => {
                let org = fields::org_number("org_number", &org)?;
                store.settle_terminations(now).await?;
                store.party_record_by_org_number(&org).await?
            }
            None => {
                return Err(fields::FieldError::invalid("key", "give either party_id or org_number").into());
            }
        };
        let record = record.ok_or_else(|| status::not_found(Missing::Party))?;
        Ok(Response::new(convert::party(&record, business_date_at(now))))
    }

    #[tracing::instrument(skip_all)]
    async fn list_parties(
        &self,
        request: Request<pb::ListPartiesRequest>,
    ) -> Result<Response<pb::ListPartiesResponse>, Status> {
        operator_with(&request, AdminRight::ReadParties)?;
        let req = request.into_inner();
        let filter = convert::party_filter(&req)?;
        let pages = Pages::new("ListParties", convert::filter_key(&filter));
        let after: Option<(String, String)> = pages.position(&req.page_token)?;
        let size = page_size(req.page_size);
        let now = self.state.clock.now_micros();
        let store = &self.state.store;
        store.settle_terminations(now).await?;
        let after = after.as_ref().map(|(name, id)| (name.as_str(), id.as_str()));
        let mut records = store.list_party_records(&filter, after, size + 1).await?;
        let next_page_token = pages.trim(&mut records, size, |r| (r.name.clone(), r.party_id.clone()));
        let today = business_date_at(now);
        Ok(Response::new(pb::ListPartiesResponse {
            parties: records.iter().map(|r| convert::party(r, today)).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_party_history(
        &self,
        request: Request<pb::ListPartyHistoryRequest>,
    ) -> Result<Response<pb::ListPartyHistoryResponse>, Status> {
        operator_with(&request, AdminRight::ReadParties)?;
        let req = request.into_inner();
        let party_id = convert::party_id(&req.party_id)?;
        let pages = Pages::new("ListPartyHistory", &party_id);
        let after_entry: i64 = pages.position(&req.page_token)?.unwrap_or(0);
        let size = page_size(req.page_size);
        let store = &self.state.store;
        store.settle_terminations(self.state.clock.now_micros()).await?;
        let mut entries = store
            .party_history(&party_id, after_entry, size + 1)
            .await?
            .ok_or_else(|| status::not_found(Missing::Party))?;
        let next_page_token = pages.trim(&mut entries, size, |e| e.entry_id);
        Ok(Response::new(pb::ListPartyHistoryResponse {
            entries: entries.iter().map(convert::audit_entry).collect(),
            next_page_token,
        }))
    }
}

//! `lefi.admin.v1.PartyAdminService`: onboarding, certificates, termination and history.
//!
//! Every change passes the guard `change` (see [`crate::grpc::service!`]): the operator must hold
//! the right to manage parties, the idempotency key is taken out of the request and checked, and the
//! rest of the request is hashed with the method (what a retry under the same key must repeat).
//! Then [`AdminApi::commit`] has the store make the change in one transaction and keep the encoded
//! answer with the key, and every retry gets those same bytes back.

use prost::Message;
use time::Date;
use tonic::{Request, Status};

use super::convert;
use crate::domain::clock::{Micros, business_date_at};
use crate::grpc::admin_api::AdminApi;
use crate::grpc::convert::party_state;
use crate::grpc::fields;
use crate::grpc::paging::{Page, Pages};
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::status::{self, CodeFields, Missing};
use crate::identity::{OperatorPrincipal, verify_party_certificate};
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

/// A change request: it carries the idempotency key its retries repeat.
trait ChangeRequest: Message {
    /// The request's idempotency key.
    fn key(&mut self) -> &mut String;
}

/// Every change request holds its key in `idempotency_key`.
macro_rules! change_requests {
    ($($request:ty),+ $(,)?) => {
        $(
            impl ChangeRequest for $request {
                fn key(&mut self) -> &mut String {
                    &mut self.idempotency_key
                }
            }
        )+
    };
}

change_requests!(
    pb::ApplyRequest,
    pb::SendAgreementRequest,
    pb::RecordSignatureRequest,
    pb::AddCertificateRequest,
    pb::RevokeCertificateRequest,
    pb::ScheduleTerminationRequest,
    pb::WithdrawTerminationRequest,
);

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
    /// The guard of every change (see the module docs): the operator must hold the right to
    /// manage parties; `method` names the RPC in the request's hash.
    fn change<T: ChangeRequest>(&self, request: Request<T>, method: &str) -> Result<Change<T>, Status> {
        let (operator, mut req) = self.needs(request, AdminRight::ManageParties)?;
        let key = std::mem::take(req.key());
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
    async fn commit<T, M: Message + Default>(
        &self,
        change: &Change<T>,
        step: PartyChange<'_>,
        fields: CodeFields,
        respond: impl Fn(&PartyRecord) -> M + Sync,
    ) -> Result<M, Status> {
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
            .map_err(|e| status::internal("a stored admin response does not decode", &e))
    }

    /// The party as the answer of most changes shows it.
    fn party_at(today: Date) -> impl Fn(&PartyRecord) -> Option<pb::Party> + Sync {
        move |p| Some(convert::party(p, today))
    }

    /// Registers an application (anmälan): a new party in state APPLIED.
    async fn apply(&self, change: Change<pb::ApplyRequest>) -> Result<pb::ApplyResponse, Status> {
        let application = convert::application(&change.req)?;
        let party = Self::party_at(change.today);
        self.commit(&change, PartyChange::Apply(&application), REQUESTED, |p| {
            pb::ApplyResponse { party: party(p) }
        })
        .await
    }

    /// Records that the agreement was sent: APPLIED → AGREEMENT_SENT.
    async fn send_agreement(
        &self,
        change: Change<pb::SendAgreementRequest>,
    ) -> Result<pb::SendAgreementResponse, Status> {
        let party_id = convert::party_id(&change.req.party_id)?;
        let agreement = convert::agreement(&change.req)?;
        let step = PartyChange::SendAgreement {
            party_id: &party_id,
            agreement: &agreement,
        };
        let party = Self::party_at(change.today);
        self.commit(&change, step, GRANTED, |p| pb::SendAgreementResponse {
            party: party(p),
        })
        .await
    }

    /// Records one signature; AGREEMENT_SENT → SIGNED once both sides have signed.
    async fn record_signature(
        &self,
        change: Change<pb::RecordSignatureRequest>,
    ) -> Result<pb::RecordSignatureResponse, Status> {
        let party_id = convert::party_id(&change.req.party_id)?;
        let signature = convert::signature(&change.req, change.today)?;
        let step = PartyChange::RecordSignature {
            party_id: &party_id,
            signature: &signature,
        };
        let party = Self::party_at(change.today);
        self.commit(&change, step, CodeFields::NONE, |p| pb::RecordSignatureResponse {
            party: party(p),
        })
        .await
    }

    /// Registers a verified client certificate; the first one connects the party.
    async fn add_certificate(
        &self,
        change: Change<pb::AddCertificateRequest>,
    ) -> Result<pb::AddCertificateResponse, Status> {
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
        self.commit(&change, step, CodeFields::NONE, |p| pb::AddCertificateResponse {
            certificate: p
                .certificates
                .iter()
                .find(|c| c.fingerprint == certificate.fingerprint)
                .map(convert::certificate),
            party_state: party_state(p.state_on(today)) as i32,
        })
        .await
    }

    /// Revokes one of the party's certificates from now on.
    async fn revoke_certificate(
        &self,
        change: Change<pb::RevokeCertificateRequest>,
    ) -> Result<pb::RevokeCertificateResponse, Status> {
        let party_id = convert::party_id(&change.req.party_id)?;
        let fingerprint = convert::fingerprint(&change.req.fingerprint)?;
        let reason = convert::reason(&change.req.reason)?;
        let step = PartyChange::RevokeCertificate {
            party_id: &party_id,
            fingerprint: &fingerprint,
            reason: &reason,
        };
        self.commit(&change, step, CodeFields::NONE, |p| {
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

    /// Registers a termination (uppsägning).
    async fn schedule_termination(
        &self,
        change: Change<pb::ScheduleTerminationRequest>,
    ) -> Result<pb::ScheduleTerminationResponse, Status> {
        let party_id = convert::party_id(&change.req.party_id)?;
        let notice = convert::termination_notice(&change.req, change.today)?;
        let step = PartyChange::ScheduleTermination {
            party_id: &party_id,
            notice: &notice,
        };
        let party = Self::party_at(change.today);
        self.commit(&change, step, CodeFields::NONE, |p| {
            pb::ScheduleTerminationResponse { party: party(p) }
        })
        .await
    }

    /// Withdraws a scheduled termination before it takes effect.
    async fn withdraw_termination(
        &self,
        change: Change<pb::WithdrawTerminationRequest>,
    ) -> Result<pb::WithdrawTerminationResponse, Status> {
        let party_id = convert::party_id(&change.req.party_id)?;
        let reason = convert::reason(&change.req.reason)?;
        let step = PartyChange::WithdrawTermination {
            party_id: &party_id,
            reason: &reason,
        };
        let party = Self::party_at(change.today);
        self.commit(&change, step, CodeFields::NONE, |p| {
            pb::WithdrawTerminationResponse { party: party(p) }
        })
        .await
    }

    /// One party, by id or by organisation number, in the state that holds today.
    async fn get_party(
        &self,
        (_, req): (OperatorPrincipal, pb::GetPartyRequest),
    ) -> Result<pb::Party, Status> {
        let now = self.state.clock.now_micros();
        let store = &self.state.store;
        let record = match req.key {
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
        Ok(convert::party(&record, business_date_at(now)))
    }

    /// One page of the parties matching the filters, by name.
    async fn list_parties(
        &self,
        (_, req): (OperatorPrincipal, pb::ListPartiesRequest),
    ) -> Result<pb::ListPartiesResponse, Status> {
        let filter = convert::party_filter(&req)?;
        let pages = Pages::new("ListParties", convert::filter_key(&filter));
        let page: Page<(String, String)> = pages.page(&req.page_token, req.page_size)?;
        let now = self.state.clock.now_micros();
        let store = &self.state.store;
        store.settle_terminations(now).await?;
        let after = page.after.as_ref().map(|(name, id)| (name.as_str(), id.as_str()));
        let records = store.list_party_records(&filter, after, page.limit()).await?;
        let today = business_date_at(now);
        let position = |r: &PartyRecord| (r.name.clone(), r.party_id.clone());
        Ok(pages.trim_into(records, page.size, position, |r| convert::party(r, today)))
    }

    /// One page of a party's audit history, oldest first.
    async fn list_party_history(
        &self,
        (_, req): (OperatorPrincipal, pb::ListPartyHistoryRequest),
    ) -> Result<pb::ListPartyHistoryResponse, Status> {
        let party_id = convert::party_id(&req.party_id)?;
        let pages = Pages::new("ListPartyHistory", &party_id);
        let page: Page<i64> = pages.page(&req.page_token, req.page_size)?;
        let store = &self.state.store;
        store.settle_terminations(self.state.clock.now_micros()).await?;
        let entries = store
            .party_history(&party_id, page.after.unwrap_or(0), page.limit())
            .await?
            .ok_or_else(|| status::not_found(Missing::Party))?;
        Ok(pages.trim_into(entries, page.size, |e| e.entry_id, convert::audit_entry))
    }
}

crate::grpc::service! {
    impl pb::party_admin_service_server::PartyAdminService for AdminApi {
        apply(pb::ApplyRequest) -> pb::ApplyResponse: change("Apply");
        send_agreement(pb::SendAgreementRequest) -> pb::SendAgreementResponse: change("SendAgreement");
        record_signature(pb::RecordSignatureRequest) -> pb::RecordSignatureResponse: change("RecordSignature");
        add_certificate(pb::AddCertificateRequest) -> pb::AddCertificateResponse: change("AddCertificate");
        revoke_certificate(pb::RevokeCertificateRequest) -> pb::RevokeCertificateResponse:
            change("RevokeCertificate");
        schedule_termination(pb::ScheduleTerminationRequest) -> pb::ScheduleTerminationResponse:
            change("ScheduleTermination");
        withdraw_termination(pb::WithdrawTerminationRequest) -> pb::WithdrawTerminationResponse:
            change("WithdrawTermination");
        get_party(pb::GetPartyRequest) -> pb::Party: needs(AdminRight::ReadParties);
        list_parties(pb::ListPartiesRequest) -> pb::ListPartiesResponse: needs(AdminRight::ReadParties);
        list_party_history(pb::ListPartyHistoryRequest) -> pb::ListPartyHistoryResponse:
            needs(AdminRight::ReadParties);
    }
}

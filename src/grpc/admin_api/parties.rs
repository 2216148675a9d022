//! `lefi.admin.v1.PartyAdminService`: onboarding, certificates, termination and history.
//!
//! Every change passes the guard `change` (see `grpc::service!`): the operator must hold
//! the right to manage parties, the idempotency key is taken out of the request and checked, and
//! the rest of the request is hashed with the RPC's name (what a retry under the same key must
//! repeat; `change_requests!` gives each request its name). A change to an existing party passes
//! `change_of_party`, which then checks the party id the request names.
//! Then `AdminApi::commit` has the store make the change in one transaction and keep the encoded
//! answer with the key, and every retry gets those same bytes back.

use prost::Message;
use time::Date;
use tonic::{Request, Status};

use super::convert;
use crate::domain::clock::{Micros, business_date_at};
use crate::domain::limits::LimitOverrides;
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

/// The party's certificate with this fingerprint, as the answers about a certificate show it.
fn certificate_of(party: &PartyRecord, fingerprint: &str) -> Option<pb::Certificate> {
    party
        .certificates
        .iter()
        .find(|c| c.certificate.fingerprint == fingerprint)
        .map(convert::certificate)
}

/// A change request: it carries the idempotency key its retries repeat.
trait ChangeRequest: Message {
    /// The RPC's name, which the request's hash includes.
    const METHOD: &'static str;

    /// The request's idempotency key.
    fn key(&mut self) -> &mut String;
}

/// A request to change an existing party: it names the party.
trait PartyRequest: ChangeRequest {
    /// The party's id, as the request gives it (unchecked).
    fn party_id(&self) -> &str;
}

/// Declares the change requests, each after the name of its RPC: each holds its idempotency key
/// in `idempotency_key`, and one marked `{ party_id }` changes an existing party, named in that
/// field.
macro_rules! change_requests {
    ($($method:literal => $request:ty $({ $party:ident })?),+ $(,)?) => {
        $(
            impl ChangeRequest for $request {
                const METHOD: &'static str = $method;

                fn key(&mut self) -> &mut String {
                    &mut self.idempotency_key
                }
            }
            $(
                impl PartyRequest for $request {
                    fn party_id(&self) -> &str {
                        &self.$party
                    }
                }
            )?
        )+
    };
}

change_requests!(
    "Apply" => pb::ApplyRequest,
    "SendAgreement" => pb::SendAgreementRequest { party_id },
    "RecordSignature" => pb::RecordSignatureRequest { party_id },
    "AddCertificate" => pb::AddCertificateRequest { party_id },
    "RevokeCertificate" => pb::RevokeCertificateRequest { party_id },
    "ScheduleTermination" => pb::ScheduleTerminationRequest { party_id },
    "WithdrawTermination" => pb::WithdrawTerminationRequest { party_id },
    "SetPartyLimits" => pb::SetPartyLimitsRequest { party_id },
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
    /// manage parties.
    fn change<T: ChangeRequest>(&self, request: Request<T>) -> Result<Change<T>, Status> {
        let (operator, mut req) = self.needs(request, AdminRight::ManageParties)?;
        let key = std::mem::take(req.key());
        let key = crate::grpc::fields::idempotency_key(&key)?.to_string();
        let hash = convert::request_hash(T::METHOD, &req.encode_to_vec());
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

    /// The guard of the changes to an existing party: [`AdminApi::change`], then the id of the
    /// party the request names, checked.
    fn change_of_party<T: PartyRequest>(&self, request: Request<T>) -> Result<(Change<T>, String), Status> {
        let change = self.change(request)?;
        let party_id = convert::party_id(change.req.party_id())?;
        Ok((change, party_id))
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

    /// Registers a verified client certificate; the first one connects the party.
    async fn add_certificate(
        &self,
        (change, party_id): (Change<pb::AddCertificateRequest>, String),
    ) -> Result<pb::AddCertificateResponse, Status> {
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
            certificate: certificate_of(p, &certificate.fingerprint),
            party_state: party_state(p.state_on(today)) as i32,
        })
        .await
    }

    /// Revokes one of the party's certificates from now on.
    async fn revoke_certificate(
        &self,
        (change, party_id): (Change<pb::RevokeCertificateRequest>, String),
    ) -> Result<pb::RevokeCertificateResponse, Status> {
        let fingerprint = convert::fingerprint(&change.req.fingerprint)?;
        let reason = convert::reason(&change.req.reason)?;
        let step = PartyChange::RevokeCertificate {
            party_id: &party_id,
            fingerprint: &fingerprint,
            reason: &reason,
        };
        self.commit(&change, step, CodeFields::NONE, |p| {
            pb::RevokeCertificateResponse {
                certificate: certificate_of(p, &fingerprint),
            }
        })
        .await
    }

    /// Sets the party's own limits (all of them: one not given is the configured default).
    async fn set_party_limits(
        &self,
        (change, party_id): (Change<pb::SetPartyLimitsRequest>, String),
    ) -> Result<pb::SetPartyLimitsResponse, Status> {
        let given = change.req.limits.unwrap_or_default();
        let limits = LimitOverrides {
            max_streams: given.max_streams,
            requests_per_second: given.requests_per_second,
            burst: given.burst,
        };
        limits
            .check()
            .map_err(|e| fields::FieldError::invalid(format!("limits.{}", e.0), e.to_string()))?;
        let reason = convert::reason(&change.req.reason)?;
        let step = PartyChange::SetLimits {
            party_id: &party_id,
            limits: &limits,
            reason: &reason,
        };
        self.commit(&change, step, CodeFields::NONE, |p| pb::SetPartyLimitsResponse {
            limits: Some(convert::limits(&p.limits)),
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
        let position = |r: &PartyRecord| (r.application.name.clone(), r.party_id.clone());
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

/// Declares the changes to an existing party whose answer is the party as it is afterwards, one
/// entry each: the RPC with its request and answer (messages of `lefi.admin.v1`), the code lists
/// its errors may name, how its input is checked (a function of the request and the business
/// date), and the step it asks the store for, with the checked input as the step's field of that
/// name. The method each entry declares takes the change with its party id checked (the guard
/// `change_of_party`), checks the input, then makes the change (see [`AdminApi::commit`]).
macro_rules! changes_answering_party {
    ($(
        $(#[doc = $doc:literal])*
        $rpc:ident($request:ident) -> $answer:ident, $fields:expr,
            $check:expr => $step:ident { $input:ident };
    )+) => {
        impl AdminApi {$(
            $(#[doc = $doc])*
            async fn $rpc(
                &self,
                (change, party_id): (Change<pb::$request>, String),
            ) -> Result<pb::$answer, Status> {
                let $input = ($check)(&change.req, change.today)?;
                let step = PartyChange::$step {
                    party_id: &party_id,
                    $input: &$input,
                };
                let party = Self::party_at(change.today);
                self.commit(&change, step, $fields, |p| pb::$answer { party: party(p) })
                    .await
            }
        )+}
    };
}

changes_answering_party! {
    /// Records that the agreement was sent: APPLIED → AGREEMENT_SENT.
    send_agreement(SendAgreementRequest) -> SendAgreementResponse, GRANTED,
        |req, _| convert::agreement(req) => SendAgreement { agreement };
    /// Records one signature; AGREEMENT_SENT → SIGNED once both sides have signed.
    record_signature(RecordSignatureRequest) -> RecordSignatureResponse, CodeFields::NONE,
        convert::signature => RecordSignature { signature };
    /// Registers a termination (uppsägning).
    schedule_termination(ScheduleTerminationRequest) -> ScheduleTerminationResponse, CodeFields::NONE,
        convert::termination_notice => ScheduleTermination { notice };
    /// Withdraws a scheduled termination before it takes effect.
    withdraw_termination(WithdrawTerminationRequest) -> WithdrawTerminationResponse, CodeFields::NONE,
        |req: &pb::WithdrawTerminationRequest, _| convert::reason(&req.reason)
            => WithdrawTermination { reason };
}

crate::grpc::service! {
    impl pb::party_admin_service_server::PartyAdminService for AdminApi {
        apply(pb::ApplyRequest) -> pb::ApplyResponse: change;
        send_agreement(pb::SendAgreementRequest) -> pb::SendAgreementResponse: change_of_party;
        record_signature(pb::RecordSignatureRequest) -> pb::RecordSignatureResponse: change_of_party;
        add_certificate(pb::AddCertificateRequest) -> pb::AddCertificateResponse: change_of_party;
        revoke_certificate(pb::RevokeCertificateRequest) -> pb::RevokeCertificateResponse: change_of_party;
        schedule_termination(pb::ScheduleTerminationRequest) -> pb::ScheduleTerminationResponse:
            change_of_party;
        withdraw_termination(pb::WithdrawTerminationRequest) -> pb::WithdrawTerminationResponse:
            change_of_party;
        set_party_limits(pb::SetPartyLimitsRequest) -> pb::SetPartyLimitsResponse: change_of_party;
        get_party(pb::GetPartyRequest) -> pb::Party: needs(AdminRight::ReadParties);
        list_parties(pb::ListPartiesRequest) -> pb::ListPartiesResponse: needs(AdminRight::ReadParties);
        list_party_history(pb::ListPartyHistoryRequest) -> pb::ListPartyHistoryResponse:
            needs(AdminRight::ReadParties);
    }
}

//! The admin API (`lefi.admin.v1`), served on the operator listener.
//!
//! Each handler converts the request into domain values, checks the operator's role, calls the
//! store and maps the outcome. Mutating calls are idempotent by their key: the store keeps the
//! encoded response with the key and hands it back to every retry.

mod convert;

use prost::Message;
use tonic::{Request, Response, Status};

use crate::app::AppState;
use crate::domain::OperatorRole;
use crate::domain::clock::Micros;
use crate::domain::party::AdminRight;
use crate::grpc::operator_of;
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::status::{self, CodeFields, admin_error, store_error};
use crate::identity::OperatorPrincipal;
use crate::store::admin::{Actor, Idempotency, PartyRecord};

/// Adds every operator-facing service to `routes`.
pub fn add_services(routes: &mut tonic::service::RoutesBuilder, state: &AppState) {
    routes
        .add_service(pb::operator_service_server::OperatorServiceServer::new(
            OperatorApi { state: state.clone() },
        ))
        .add_service(pb::party_admin_service_server::PartyAdminServiceServer::new(
            PartyAdminApi { state: state.clone() },
        ))
        .add_service(
            pb::register_admin_service_server::RegisterAdminServiceServer::new(
                crate::grpc::register::RegisterApi::new(state.clone()),
            ),
        )
        .add_service(pb::audit_admin_service_server::AuditAdminServiceServer::new(
            crate::grpc::audit::AuditApi { state: state.clone() },
        ));
}

/// `lefi.admin.v1.OperatorService`.
#[derive(Debug, Clone)]
pub struct OperatorApi {
    state: AppState,
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

    #[tracing::instrument(skip_all)]
    async fn list_legal_bases(
        &self,
        request: Request<crate::grpc::pb::lefi::v1::ListLegalBasesRequest>,
    ) -> Result<Response<crate::grpc::pb::lefi::v1::ListLegalBasesResponse>, Status> {
        operator_of(&request)?;
        let req = request.into_inner();
        let today = self.state.clock.today();
        let bases = self
            .state
            .store
            .legal_bases()
            .await
            .map_err(crate::grpc::status::store_error)?;
        Ok(Response::new(crate::grpc::pb::lefi::v1::ListLegalBasesResponse {
            legal_bases: bases
                .iter()
                .filter(|b| req.include_not_in_force || b.in_force_on(today))
                .map(crate::grpc::convert::legal_basis)
                .collect(),
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

/// `lefi.admin.v1.PartyAdminService`: onboarding, certificates, termination and history.
#[derive(Debug, Clone)]
pub struct PartyAdminApi {
    state: AppState,
}

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

/// The operator that made the call, if its role grants `right`.
fn authorize<T>(request: &Request<T>, right: AdminRight) -> Result<OperatorPrincipal, Status> {
    let operator = operator_of(request)?;
    if operator.role.permits(right) {
        Ok(operator)
    } else {
        Err(status::role_not_permitted(operator.role, right))
    }
}

fn actor(operator: &OperatorPrincipal) -> Actor {
    Actor {
        name: operator.name.clone(),
        fingerprint: operator.fingerprint.clone(),
    }
}

/// Decodes a response the store kept for an idempotency key.
fn decode<M: Message + Default>(bytes: &[u8]) -> Result<Response<M>, Status> {
    M::decode(bytes)
        .map(Response::new)
        .map_err(|e| status::internal("a stored admin response does not decode", &e))
}

/// The common start of every change: the caller must be allowed to manage parties; the request's
/// idempotency key is taken out and checked; the rest of the request is hashed with the method,
/// which is what a retry under the same key must repeat.
struct Change<T> {
    operator: OperatorPrincipal,
    req: T,
    key: String,
    hash: String,
}

fn begin_change<T: Message>(
    request: Request<T>,
    method: &str,
    key_of: fn(&mut T) -> &mut String,
) -> Result<Change<T>, Status> {
    let operator = authorize(&request, AdminRight::ManageParties)?;
    let mut req = request.into_inner();
    let key = std::mem::take(key_of(&mut req));
    let key = convert::idempotency_key(&key)?.to_string();
    let hash = convert::request_hash(method, &req.encode_to_vec());
    Ok(Change {
        operator,
        req,
        key,
        hash,
    })
}

impl PartyAdminApi {
    /// The current instant and the date the rules judge by, from one reading of the clock.
    fn now(&self) -> (Micros, time::Date) {
        let now = self.state.clock.now_micros();
        (now, crate::domain::clock::business_date_at(now))
    }
}

#[tonic::async_trait]
impl pb::party_admin_service_server::PartyAdminService for PartyAdminApi {
    #[tracing::instrument(skip_all)]
    async fn apply(&self, request: Request<pb::ApplyRequest>) -> Result<Response<pb::ApplyResponse>, Status> {
        let Change {
            operator,
            req,
            key,
            hash,
        } = begin_change(request, "Apply", |r| &mut r.idempotency_key)?;
        let application = convert::application(&req)?;
        let (now, today) = self.now();
        let respond = |p: &PartyRecord| {
            pb::ApplyResponse {
                party: Some(convert::party(p, today)),
            }
            .encode_to_vec()
        };
        let idem = Idempotency {
            key: &key,
            request_hash: &hash,
            respond: &respond,
        };
        let bytes = self
            .state
            .store
            .apply_party(&actor(&operator), &idem, &application, now)
            .await
            .map_err(|e| admin_error(e, REQUESTED))?;
        decode(&bytes)
    }

    #[tracing::instrument(skip_all)]
    async fn send_agreement(
        &self,
        request: Request<pb::SendAgreementRequest>,
    ) -> Result<Response<pb::SendAgreementResponse>, Status> {
        let Change {
            operator,
            req,
            key,
            hash,
        } = begin_change(request, "SendAgreement", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&req.party_id)?;
        let agreement = convert::agreement(&req)?;
        let (now, today) = self.now();
        let respond = |p: &PartyRecord| {
            pb::SendAgreementResponse {
                party: Some(convert::party(p, today)),
            }
            .encode_to_vec()
        };
        let idem = Idempotency {
            key: &key,
            request_hash: &hash,
            respond: &respond,
        };
        let bytes = self
            .state
            .store
            .send_agreement(&actor(&operator), &idem, &party_id, &agreement, now)
            .await
            .map_err(|e| admin_error(e, GRANTED))?;
        decode(&bytes)
    }

    #[tracing::instrument(skip_all)]
    async fn record_signature(
        &self,
        request: Request<pb::RecordSignatureRequest>,
    ) -> Result<Response<pb::RecordSignatureResponse>, Status> {
        let Change {
            operator,
            req,
            key,
            hash,
        } = begin_change(request, "RecordSignature", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&req.party_id)?;
        let (now, today) = self.now();
        let signature = convert::signature(&req, today)?;
        let respond = |p: &PartyRecord| {
            pb::RecordSignatureResponse {
                party: Some(convert::party(p, today)),
            }
            .encode_to_vec()
        };
        let idem = Idempotency {
            key: &key,
            request_hash: &hash,
            respond: &respond,
        };
        let bytes = self
            .state
            .store
            .record_signature(&actor(&operator), &idem, &party_id, &signature, now)
            .await
            .map_err(|e| admin_error(e, CodeFields::NONE))?;
        decode(&bytes)
    }

    #[tracing::instrument(skip_all)]
    async fn add_certificate(
        &self,
        request: Request<pb::AddCertificateRequest>,
    ) -> Result<Response<pb::AddCertificateResponse>, Status> {
        let Change {
            operator,
            req,
            key,
            hash,
        } = begin_change(request, "AddCertificate", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&req.party_id)?;
        let (now, today) = self.now();
        let certificate = crate::identity::verify_party_certificate(
            self.state.party_certificates.as_ref(),
            req.certificate_pem.as_bytes(),
            now,
        )
        .map_err(|e| status::certificate_rejected(&e))?;
        let fingerprint = certificate.fingerprint.clone();
        let respond = |p: &PartyRecord| {
            pb::AddCertificateResponse {
                certificate: p
                    .certificates
                    .iter()
                    .find(|c| c.fingerprint == fingerprint)
                    .map(convert::certificate),
                party_state: crate::grpc::convert::party_state(p.state_on(today)) as i32,
            }
            .encode_to_vec()
        };
        let idem = Idempotency {
            key: &key,
            request_hash: &hash,
            respond: &respond,
        };
        let bytes = self
            .state
            .store
            .add_certificate(&actor(&operator), &idem, &party_id, &certificate, now)
            .await
            .map_err(|e| admin_error(e, CodeFields::NONE))?;
        decode(&bytes)
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_certificate(
        &self,
        request: Request<pb::RevokeCertificateRequest>,
    ) -> Result<Response<pb::RevokeCertificateResponse>, Status> {
        let Change {
            operator,
            req,
            key,
            hash,
        } = begin_change(request, "RevokeCertificate", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&req.party_id)?;
        let fingerprint = convert::fingerprint(&req.fingerprint)?;
        let reason = convert::reason(&req.reason)?;
        let (now, _) = self.now();
        let respond = |p: &PartyRecord| {
            pb::RevokeCertificateResponse {
                certificate: p
                    .certificates
                    .iter()
                    .find(|c| c.fingerprint == fingerprint)
                    .map(convert::certificate),
            }
            .encode_to_vec()
        };
        let idem = Idempotency {
            key: &key,
            request_hash: &hash,
            respond: &respond,
        };
        let bytes = self
            .state
            .store
            .revoke_certificate(&actor(&operator), &idem, &party_id, &fingerprint, &reason, now)
            .await
            .map_err(|e| admin_error(e, CodeFields::NONE))?;
        // Open streams on that certificate re-check their identity now, not at their next heartbeat.
        self.state.notify_history();
        decode(&bytes)
    }

    #[tracing::instrument(skip_all)]
    async fn schedule_termination(
        &self,
        request: Request<pb::ScheduleTerminationRequest>,
    ) -> Result<Response<pb::ScheduleTerminationResponse>, Status> {
        let Change {
            operator,
            req,
            key,
            hash,
        } = begin_change(request, "ScheduleTermination", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&req.party_id)?;
        let (now, today) = self.now();
        let notice = convert::termination_notice(&req, today)?;
        let respond = |p: &PartyRecord| {
            pb::ScheduleTerminationResponse {
                party: Some(convert::party(p, today)),
            }
            .encode_to_vec()
        };
        let idem = Idempotency {
            key: &key,
            request_hash: &hash,
            respond: &respond,
        };
        let bytes = self
            .state
            .store
            .schedule_termination(&actor(&operator), &idem, &party_id, &notice, now)
            .await
            .map_err(|e| admin_error(e, CodeFields::NONE))?;
        // A termination effective today ends open streams now.
        self.state.notify_history();
        decode(&bytes)
    }

    #[tracing::instrument(skip_all)]
    async fn withdraw_termination(
        &self,
        request: Request<pb::WithdrawTerminationRequest>,
    ) -> Result<Response<pb::WithdrawTerminationResponse>, Status> {
        let Change {
            operator,
            req,
            key,
            hash,
        } = begin_change(request, "WithdrawTermination", |r| &mut r.idempotency_key)?;
        let party_id = convert::party_id(&req.party_id)?;
        let reason = convert::reason(&req.reason)?;
        let (now, today) = self.now();
        let respond = |p: &PartyRecord| {
            pb::WithdrawTerminationResponse {
                party: Some(convert::party(p, today)),
            }
            .encode_to_vec()
        };
        let idem = Idempotency {
            key: &key,
            request_hash: &hash,
            respond: &respond,
        };
        let bytes = self
            .state
            .store
            .withdraw_termination(&actor(&operator), &idem, &party_id, &reason, now)
            .await
            .map_err(|e| admin_error(e, CodeFields::NONE))?;
        decode(&bytes)
    }

    #[tracing::instrument(skip_all)]
    async fn get_party(&self, request: Request<pb::GetPartyRequest>) -> Result<Response<pb::Party>, Status> {
        authorize(&request, AdminRight::ReadParties)?;
        let (now, today) = self.now();
        let store = &self.state.store;
        let record = match request.into_inner().key {
            Some(pb::get_party_request::Key::PartyId(id)) => {
                let id = convert::party_id(&id)?;
                store.settle_terminations(now).await.map_err(store_error)?;
                store.party_record(&id).await
            }
            Some(pb::get_party_request::Key::OrgNumber(org)) => {
                let org = crate::domain::OrgNumber::parse(&org).map_err(|e| {
                    status::invalid_field(
                        crate::grpc::pb::ErrorReason::OrgNumberInvalid,
                        "org_number",
                        format!("org_number: {e}"),
                    )
                })?;
                store.settle_terminations(now).await.map_err(store_error)?;
                store.party_record_by_org_number(&org).await
            }
            None => {
                return Err(status::invalid_field(
                    crate::grpc::pb::ErrorReason::InvalidArgument,
                    "key",
                    "give either party_id or org_number",
                ));
            }
        }
        .map_err(store_error)?;
        match record {
            Some(record) => Ok(Response::new(convert::party(&record, today))),
            None => Err(status::party_not_found()),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn list_parties(
        &self,
        request: Request<pb::ListPartiesRequest>,
    ) -> Result<Response<pb::ListPartiesResponse>, Status> {
        authorize(&request, AdminRight::ReadParties)?;
        let req = request.into_inner();
        let filter = convert::party_filter(&req)?;
        let filter_key = convert::filter_key(&filter);
        let after = if req.page_token.is_empty() {
            None
        } else {
            let token: convert::PartiesPageToken = convert::decode_token(&req.page_token)?;
            if token.filter != filter_key {
                return Err(convert::page_token_invalid());
            }
            Some(token)
        };
        let size = convert::page_size(req.page_size);
        let (now, today) = self.now();
        let store = &self.state.store;
        store.settle_terminations(now).await.map_err(store_error)?;
        let mut records = store
            .list_party_records(
                &filter,
                after
                    .as_ref()
                    .map(|t| (t.after_name.as_str(), t.after_party_id.as_str())),
                size + 1,
            )
            .await
            .map_err(store_error)?;
        let next_page_token = if records.len() > size as usize {
            records.truncate(size as usize);
            records
                .last()
                .map(|last| {
                    convert::encode_token(&convert::PartiesPageToken {
                        after_name: last.name.clone(),
                        after_party_id: last.party_id.clone(),
                        filter: filter_key,
                    })
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
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
        authorize(&request, AdminRight::ReadParties)?;
        let req = request.into_inner();
        let party_id = convert::party_id(&req.party_id)?;
        let after_entry = if req.page_token.is_empty() {
            0
        } else {
            let token: convert::HistoryPageToken = convert::decode_token(&req.page_token)?;
            if token.party_id != party_id {
                return Err(convert::page_token_invalid());
            }
            token.after_entry
        };
        let size = convert::page_size(req.page_size);
        let (now, _) = self.now();
        let store = &self.state.store;
        store.settle_terminations(now).await.map_err(store_error)?;
        let Some(mut entries) = store
            .party_history(&party_id, after_entry, size + 1)
            .await
            .map_err(store_error)?
        else {
            return Err(status::party_not_found());
        };
        let next_page_token = if entries.len() > size as usize {
            entries.truncate(size as usize);
            entries
                .last()
                .map(|last| {
                    convert::encode_token(&convert::HistoryPageToken {
                        party_id: party_id.clone(),
                        after_entry: last.entry_id,
                    })
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListPartyHistoryResponse {
            entries: entries.iter().map(convert::audit_entry).collect(),
            next_page_token,
        }))
    }
}

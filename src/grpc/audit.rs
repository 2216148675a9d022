//! `lefi.admin.v1.AuditAdminService`: reading and verifying the disclosure log, and consent
//! oversight across parties.

use tonic::{Code, Request, Response, Status};

use crate::app::AppState;
use crate::domain::OperatorRole;
use crate::domain::clock::{Micros, to_micros};
use crate::grpc::consents::{consent_message, consent_not_found, page, paging, person_field};
use crate::grpc::convert::timestamp;
use crate::grpc::operator_of;
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::pb::lefi::v1 as party_pb;
use crate::grpc::status::{error, invalid_field, store_error};
use crate::identity::OperatorPrincipal;
use crate::store::StoreError;
use crate::store::policy::{ChainProblem, ChainVerdict, ConsentFilter, Decision, DisclosureEntry};

/// `lefi.admin.v1.AuditAdminService`.
#[derive(Debug, Clone)]
pub struct AuditApi {
    pub state: AppState,
}

/// PERMISSION_DENIED unless the operator holds one of `roles`.
pub fn require_role(operator: &OperatorPrincipal, roles: &[OperatorRole]) -> Result<(), Status> {
    if roles.contains(&operator.role) {
        return Ok(());
    }
    let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Err(error(
        Code::PermissionDenied,
        ErrorReason::RoleNotPermitted,
        format!(
            "your role '{}' may not do this; it needs one of: {}",
            operator.role,
            allowed.join(", ")
        ),
    ))
}

const READERS: &[OperatorRole] = &[OperatorRole::Operator, OperatorRole::Auditor];

fn time_range(
    from: Option<&prost_types::Timestamp>,
    to: Option<&prost_types::Timestamp>,
    now: Micros,
) -> Result<(Micros, Micros), Status> {
    let micros = |t: &prost_types::Timestamp| {
        t.seconds
            .saturating_mul(1_000_000)
            .saturating_add(i64::from(t.nanos / 1_000))
    };
    let from = from.map(micros).unwrap_or(i64::MIN);
    let to = to.map(micros).unwrap_or(now.saturating_add(1));
    if to < from {
        return Err(invalid_field(
            ErrorReason::InvalidArgument,
            "to_time",
            "to_time is before from_time",
        ));
    }
    Ok((from, to))
}

/// Page tokens for the log are the last entry id seen.
fn after_id(token: &str) -> Result<i64, Status> {
    if token.is_empty() {
        return Ok(0);
    }
    token
        .strip_prefix("e:")
        .and_then(|n| n.parse::<i64>().ok())
        .ok_or_else(|| {
            invalid_field(
                ErrorReason::PageTokenInvalid,
                "page_token",
                "page_token was not issued by this server for this listing; start again with an empty token",
            )
        })
}

fn page_size(n: u32) -> i64 {
    match n {
        0 => 100,
        n => i64::from(n.min(1_000)),
    }
}

fn entries_response(entries: Vec<DisclosureEntry>, size: i64) -> pb::ListDisclosuresResponse {
    let next_page_token = match entries.last() {
        Some(last) if i64::try_from(entries.len()).unwrap_or(i64::MAX) >= size => {
            format!("e:{}", last.entry_id)
        }
        _ => String::new(),
    };
    pb::ListDisclosuresResponse {
        entries: entries.iter().map(entry_message).collect(),
        next_page_token,
    }
}

fn entry_message(e: &DisclosureEntry) -> pb::DisclosureEntry {
    let d = &e.entry;
    let channel = match crate::store::policy::Channel::parse(&d.channel) {
        Some(crate::store::policy::Channel::SubscriptionOrder) => pb::DisclosureChannel::SubscriptionOrder,
        Some(crate::store::policy::Channel::StreamDelivery) => pb::DisclosureChannel::StreamDelivery,
        Some(crate::store::policy::Channel::Query) => pb::DisclosureChannel::Query,
        Some(crate::store::policy::Channel::OperatorView) => pb::DisclosureChannel::OperatorView,
        None => pb::DisclosureChannel::Unspecified,
    };
    let decision = if d.decision == Decision::Allowed.as_str() {
        pb::DisclosureDecision::Allowed
    } else {
        pb::DisclosureDecision::Denied
    };
    pb::DisclosureEntry {
        entry_id: u64::try_from(e.entry_id).unwrap_or_default(),
        time: Some(timestamp(e.at)),
        party_id: d.party_id.clone(),
        party_org_number: d.party_org_number.clone(),
        system_identity: d.system_identity.clone(),
        operator_name: d.operator_name.clone(),
        channel: channel as i32,
        rpc: d.rpc.clone(),
        request_id: d.request_id.clone(),
        decision: decision as i32,
        denial_reason: party_pb::ErrorReason::from_str_name(&d.denial_reason)
            .unwrap_or(party_pb::ErrorReason::Unspecified) as i32,
        legal_basis: d.legal_basis.clone(),
        purpose: d.purpose.clone(),
        case_reference: d.case_reference.clone(),
        consent_id: d.consent_id.clone(),
        subscription_id: d.subscription_id.clone(),
        person_id: d.person.clone(),
        benefit_type_codes: d.benefit_types.clone(),
        period: Some(party_pb::DateRange {
            from: d.period_from.clone(),
            to: d.period_to.clone(),
        }),
        record_count: u64::try_from(d.record_count).unwrap_or_default(),
        from_sequence: u64::try_from(d.from_sequence).unwrap_or_default(),
        to_sequence: u64::try_from(d.to_sequence).unwrap_or_default(),
        hash: e.hash.clone(),
        previous_hash: e.previous_hash.clone(),
    }
}

#[tonic::async_trait]
impl pb::audit_admin_service_server::AuditAdminService for AuditApi {
    #[tracing::instrument(skip_all)]
    async fn list_disclosures_for_person(
        &self,
        request: Request<pb::ListDisclosuresForPersonRequest>,
    ) -> Result<Response<pb::ListDisclosuresResponse>, Status> {
        require_role(&operator_of(&request)?, READERS)?;
        let req = request.into_inner();
        let person = person_field("person_id", &req.person_id, self.state.clock.today())?;
        let (from, to) = time_range(
            req.from_time.as_ref(),
            req.to_time.as_ref(),
            self.state.clock.now_micros(),
        )?;
        let size = page_size(req.page_size);
        let entries = self
            .state
            .store
            .disclosures_for_person(person.as_storage(), from, to, after_id(&req.page_token)?, size)
            .await
            .map_err(store_error)?;
        Ok(Response::new(entries_response(entries, size)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_disclosures_for_party(
        &self,
        request: Request<pb::ListDisclosuresForPartyRequest>,
    ) -> Result<Response<pb::ListDisclosuresResponse>, Status> {
        require_role(&operator_of(&request)?, READERS)?;
        let req = request.into_inner();
        let (from, to) = time_range(
            req.from_time.as_ref(),
            req.to_time.as_ref(),
            self.state.clock.now_micros(),
        )?;
        let decision = match pb::DisclosureDecision::try_from(req.decision) {
            Ok(pb::DisclosureDecision::Allowed) => Some(Decision::Allowed),
            Ok(pb::DisclosureDecision::Denied) => Some(Decision::Denied),
            _ => None,
        };
        let size = page_size(req.page_size);
        let entries = self
            .state
            .store
            .disclosures_for_party(
                &req.party_id,
                from,
                to,
                decision,
                after_id(&req.page_token)?,
                size,
            )
            .await
            .map_err(store_error)?;
        Ok(Response::new(entries_response(entries, size)))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_disclosure_log(
        &self,
        request: Request<pb::VerifyDisclosureLogRequest>,
    ) -> Result<Response<pb::VerifyDisclosureLogResponse>, Status> {
        require_role(&operator_of(&request)?, READERS)?;
        let req = request.into_inner();
        if req.to_entry_id != 0 && req.to_entry_id < req.from_entry_id {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "to_entry_id",
                "to_entry_id is before from_entry_id",
            ));
        }
        let from = i64::try_from(req.from_entry_id).unwrap_or(i64::MAX);
        let to = i64::try_from(req.to_entry_id).unwrap_or(i64::MAX);
        let verdict = self
            .state
            .store
            .verify_disclosure_chain(from, to)
            .await
            .map_err(store_error)?;
        let response = match verdict {
            ChainVerdict::Intact { checked, last_hash } => pb::VerifyDisclosureLogResponse {
                ok: true,
                entries_checked: checked,
                last_hash,
                ..Default::default()
            },
            ChainVerdict::Broken {
                checked,
                entry_id,
                problem,
            } => {
                let (problem, message) = match problem {
                    ChainProblem::HashMismatch => (
                        pb::ChainProblem::HashMismatch,
                        format!(
                            "entry {entry_id} does not match its hash: it was changed after it was written"
                        ),
                    ),
                    ChainProblem::PreviousHashMismatch => (
                        pb::ChainProblem::PreviousHashMismatch,
                        format!(
                            "entry {entry_id} does not follow the entry before it: an entry before it was changed, removed or inserted"
                        ),
                    ),
                    ChainProblem::EntryMissing => (
                        pb::ChainProblem::EntryMissing,
                        format!("entry {entry_id} is missing from the log"),
                    ),
                };
                tracing::warn!(entry_id, "disclosure log chain broken");
                pb::VerifyDisclosureLogResponse {
                    ok: false,
                    entries_checked: checked,
                    first_broken_entry_id: u64::try_from(entry_id).unwrap_or_default(),
                    problem: problem as i32,
                    message,
                    last_hash: String::new(),
                }
            }
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn list_consents(
        &self,
        request: Request<pb::ListConsentsRequest>,
    ) -> Result<Response<pb::ListConsentsResponse>, Status> {
        require_role(&operator_of(&request)?, READERS)?;
        let req = request.into_inner();
        let today = self.state.clock.today();
        let (offset, size) = paging(&req.page_token, req.page_size)?;
        let person = if req.person_id.is_empty() {
            None
        } else {
            Some(
                person_field("person_id", &req.person_id, today)?
                    .as_storage()
                    .to_string(),
            )
        };
        let consents = self
            .state
            .store
            .consents(&ConsentFilter {
                party_id: (!req.party_id.is_empty()).then(|| req.party_id.clone()),
                person,
                basis_code: None,
            })
            .await
            .map_err(store_error)?;
        let mut matching = Vec::new();
        for c in &consents {
            let message = consent_message(c, today);
            if req.states.is_empty() || req.states.contains(&message.state) {
                matching.push(pb::PartyConsent {
                    party_id: c.party_id.clone(),
                    party_name: String::new(),
                    consent: Some(message),
                });
            }
        }
        let (consents, next_page_token) = page(matching, offset, size);
        Ok(Response::new(pb::ListConsentsResponse {
            consents,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_consent(
        &self,
        request: Request<pb::RevokeConsentRequest>,
    ) -> Result<Response<pb::RevokeConsentResponse>, Status> {
        require_role(&operator_of(&request)?, &[OperatorRole::Operator])?;
        let req = request.into_inner();
        if req.idempotency_key.trim().is_empty() {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "idempotency_key",
                "idempotency_key is required on changes (any unique string, e.g. a UUID)",
            ));
        }
        if req.reason.trim().is_empty() {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "reason",
                "reason is required: say why the agency revokes the consent",
            ));
        }
        let consent = self
            .state
            .store
            .revoke_consent(
                &req.consent_id,
                None,
                &req.reason,
                to_micros(self.state.clock.now()),
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound => consent_not_found(),
                other => store_error(other),
            })?;
        let suspended =
            crate::grpc::consents::suspend_consent_subscriptions(&self.state, &consent.consent_id).await?;
        Ok(Response::new(pb::RevokeConsentResponse {
            consent: Some(pb::PartyConsent {
                party_id: consent.party_id.clone(),
                party_name: String::new(),
                consent: Some(consent_message(&consent, self.state.clock.today())),
            }),
            suspended_subscription_count: suspended,
        }))
    }
}

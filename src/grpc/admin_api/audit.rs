//! `lefi.admin.v1.AuditAdminService`: reading and verifying the disclosure log, and consent
//! oversight across parties.

use tonic::Status;

use crate::domain::clock::{Micros, format_date};
use crate::domain::disclosure::{ChainProblem, ChainVerdict, Channel, Decision, DisclosureEntry};
use crate::grpc::admin_api::AdminApi;
use crate::grpc::convert::{self, timestamp};
use crate::grpc::fields::{self, FieldError};
use crate::grpc::paging::{Page, Pages};
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::pb::lefi::v1 as party_pb;
use crate::grpc::status::{self, Missing};
use crate::identity::OperatorPrincipal;
use crate::policy::operator::AdminRight;
use crate::store::consents::RevokedBy;
use crate::store::disclosure_log::DisclosureQuery;

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
        return Err(FieldError::invalid("to_time", "to_time is before from_time").into());
    }
    Ok((from, to))
}

impl AdminApi {
    /// One page of the disclosure log's entries matching `query` in the request's time range.
    async fn disclosures(
        &self,
        query: DisclosureQuery<'_>,
        scope: String,
        range: (Option<&prost_types::Timestamp>, Option<&prost_types::Timestamp>),
        page_token: &str,
        requested_size: u32,
    ) -> Result<pb::ListDisclosuresResponse, Status> {
        let range = time_range(range.0, range.1, self.state.clock.now_micros())?;
        let pages = Pages::new("ListDisclosures", scope);
        let page: Page<i64> = pages.page(page_token, requested_size)?;
        let entries = self
            .state
            .store
            .disclosures(query, range, page.after.unwrap_or(0), i64::from(page.limit()))
            .await?;
        Ok(pages.trim_into(entries, page.size, |e| e.entry_id, entry_message))
    }
}

fn entry_message(e: &DisclosureEntry) -> pb::DisclosureEntry {
    let d = &e.entry;
    let channel = match d.channel {
        Channel::SubscriptionOrder => pb::DisclosureChannel::SubscriptionOrder,
        Channel::StreamDelivery => pb::DisclosureChannel::StreamDelivery,
        Channel::Query => pb::DisclosureChannel::Query,
        Channel::OperatorView => pb::DisclosureChannel::OperatorView,
        Channel::StatisticsRelease => pb::DisclosureChannel::StatisticsRelease,
    };
    let decision = match d.decision {
        Decision::Allowed => pb::DisclosureDecision::Allowed,
        Decision::Denied => pb::DisclosureDecision::Denied,
    };
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    pb::DisclosureEntry {
        entry_id: u64::try_from(e.entry_id).unwrap_or_default(),
        time: Some(timestamp(e.at)),
        party_id: text(&d.party_id),
        party_org_number: text(&d.party_org_number),
        system_identity: d.system_identity.clone(),
        operator_name: text(&d.operator_name),
        channel: channel as i32,
        rpc: d.rpc.clone(),
        request_id: text(&d.request_id),
        decision: decision as i32,
        denial_reason: d
            .denial_reason
            .as_deref()
            .and_then(party_pb::ErrorReason::from_str_name)
            .unwrap_or(party_pb::ErrorReason::Unspecified) as i32,
        legal_basis: text(&d.legal_basis),
        purpose: text(&d.purpose),
        case_reference: text(&d.case_reference),
        consent_id: text(&d.consent_id),
        subscription_id: text(&d.subscription_id),
        person_id: d
            .person
            .as_ref()
            .map(|p| p.as_storage().to_string())
            .unwrap_or_default(),
        benefit_type_codes: d.benefit_types.clone(),
        period: Some(party_pb::DateRange {
            from: d.period_from.map(format_date).unwrap_or_default(),
            to: d.period_to.map(format_date).unwrap_or_default(),
        }),
        record_count: d.record_count,
        from_sequence: d.from_sequence,
        to_sequence: d.to_sequence,
        hash: e.hash.clone(),
        previous_hash: e.previous_hash.clone(),
    }
}

impl AdminApi {
    /// One page of the disclosure log's entries about a person.
    async fn list_disclosures_for_person(
        &self,
        (_, req): (OperatorPrincipal, pb::ListDisclosuresForPersonRequest),
    ) -> Result<pb::ListDisclosuresResponse, Status> {
        let person = fields::person("person_id", &req.person_id, self.state.clock.today())?;
        let scope = format!("person|{}|{:?}|{:?}", req.person_id, req.from_time, req.to_time);
        let range = (req.from_time.as_ref(), req.to_time.as_ref());
        self.disclosures(
            DisclosureQuery::Person(&person),
            scope,
            range,
            &req.page_token,
            req.page_size,
        )
        .await
    }

    /// One page of the disclosure log's entries about a party's calls.
    async fn list_disclosures_for_party(
        &self,
        (_, req): (OperatorPrincipal, pb::ListDisclosuresForPartyRequest),
    ) -> Result<pb::ListDisclosuresResponse, Status> {
        let decision = match pb::DisclosureDecision::try_from(req.decision) {
            Ok(pb::DisclosureDecision::Allowed) => Some(Decision::Allowed),
            Ok(pb::DisclosureDecision::Denied) => Some(Decision::Denied),
            _ => None,
        };
        let query = DisclosureQuery::Party {
            party_id: &req.party_id,
            decision,
        };
        let scope = format!(
            "party|{}|{}|{:?}|{:?}",
            req.party_id, req.decision, req.from_time, req.to_time
        );
        let range = (req.from_time.as_ref(), req.to_time.as_ref());
        self.disclosures(query, scope, range, &req.page_token, req.page_size)
            .await
    }

    /// Checks the disclosure log's hash chain over a range of entries.
    async fn verify_disclosure_log(
        &self,
        (_, req): (OperatorPrincipal, pb::VerifyDisclosureLogRequest),
    ) -> Result<pb::VerifyDisclosureLogResponse, Status> {
        if req.to_entry_id != 0 && req.to_entry_id < req.from_entry_id {
            return Err(FieldError::invalid("to_entry_id", "to_entry_id is before from_entry_id").into());
        }
        let from = i64::try_from(req.from_entry_id).unwrap_or(i64::MAX);
        let to = i64::try_from(req.to_entry_id).unwrap_or(i64::MAX);
        let verdict = self.state.store.verify_disclosure_chain(from, to).await?;
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
        Ok(response)
    }

    /// One page of the consents of every party (or one), matching the request's filters.
    async fn list_consents(
        &self,
        (_, req): (OperatorPrincipal, pb::ListConsentsRequest),
    ) -> Result<pb::ListConsentsResponse, Status> {
        let today = self.state.clock.today();
        let party_id = (!req.party_id.is_empty()).then(|| req.party_id.clone());
        let filter = convert::consent_filter(party_id, &req.person_id, "", today)?;
        let consents = self.state.store.consents(&filter).await?;
        let consents: Vec<pb::PartyConsent> = convert::consent_listing(&consents, &req.states, today)?
            .into_iter()
            .map(|(c, message)| pb::PartyConsent {
                party_id: c.registered.party_id.clone(),
                party_name: String::new(),
                consent: Some(message),
            })
            .collect();
        let pages = Pages::new(
            "AdminListConsents",
            format!("{}|{}|{:?}", req.party_id, req.person_id, req.states),
        );
        Ok(pages.slice_into(consents, &req.page_token, req.page_size)?)
    }

    /// Revokes a party's consent on the agency's behalf, suspending the subscriptions that rest on
    /// it.
    async fn revoke_consent(
        &self,
        (_, req): (OperatorPrincipal, pb::RevokeConsentRequest),
    ) -> Result<pb::RevokeConsentResponse, Status> {
        if req.idempotency_key.trim().is_empty() {
            return Err(FieldError::invalid(
                "idempotency_key",
                "idempotency_key is required on changes (any unique string, e.g. a UUID)",
            )
            .into());
        }
        let reason = fields::required_text(
            "reason",
            &req.reason,
            1_000,
            "say why the agency revokes the consent",
        )?;
        let (consent, suspended) = self
            .state
            .revoke_consent(&req.consent_id, RevokedBy::Agency, &reason)
            .await
            .map_err(|e| status::or_missing(e, Missing::Consent))?;
        Ok(pb::RevokeConsentResponse {
            consent: Some(pb::PartyConsent {
                party_id: consent.registered.party_id.clone(),
                party_name: String::new(),
                consent: Some(convert::consent(&consent, self.state.clock.today())),
            }),
            suspended_subscription_count: suspended,
        })
    }
}

crate::grpc::service! {
    impl pb::audit_admin_service_server::AuditAdminService for AdminApi {
        list_disclosures_for_person(pb::ListDisclosuresForPersonRequest) -> pb::ListDisclosuresResponse:
            needs(AdminRight::ReadAudit);
        list_disclosures_for_party(pb::ListDisclosuresForPartyRequest) -> pb::ListDisclosuresResponse:
            needs(AdminRight::ReadAudit);
        verify_disclosure_log(pb::VerifyDisclosureLogRequest) -> pb::VerifyDisclosureLogResponse:
            needs(AdminRight::ReadAudit);
        list_consents(pb::ListConsentsRequest) -> pb::ListConsentsResponse: needs(AdminRight::ReadAudit);
        revoke_consent(pb::RevokeConsentRequest) -> pb::RevokeConsentResponse:
            needs(AdminRight::ManageConsents);
    }
}

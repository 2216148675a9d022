//! `lefi client subscribe|subscriptions|cancel|refresh|consent|close-case` and
//! `lefi admin audit …`: orders, consents and cases for parties; the disclosure log for operators.

use tonic::transport::Channel;

use super::output::{instant, print_each, print_json, print_message};
use crate::cli::{AuditCommand, ConsentCommand, SubscribeArgs};
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

fn state_name(state: i32) -> &'static str {
    pb::SubscriptionState::try_from(state)
        .unwrap_or_default()
        .as_str_name()
}

fn print_subscription(s: &pb::Subscription) {
    let reason = pb::SubscriptionStateReason::try_from(s.state_reason)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("SUBSCRIPTION_STATE_REASON_");
    let reason = if reason == "UNSPECIFIED" { "" } else { reason };
    println!(
        "{:<38} {:<20} {:<24} {:<8} {} {}",
        s.subscription_id,
        s.client_reference,
        s.legal_basis,
        state_name(s.state),
        s.benefit_type_codes.join(","),
        reason
    );
}

/// `--only`'s list as a record filter: record types, `decision:KIND` and `person-event:KIND`, in
/// the proto's names, lower case with dashes (or as the proto spells them).
fn record_filter(spec: &str) -> anyhow::Result<pb::RecordFilter> {
    let mut filter = pb::RecordFilter::default();
    let proto_name = |s: &str| s.trim().to_uppercase().replace('-', "_");
    for item in spec.split(',').filter(|i| !i.trim().is_empty()) {
        let unknown = || {
            anyhow::anyhow!(
                "--only: {item:?} is not a record kind; use case, compensation-period, decision, payment, \
                 person-event, decision:KIND (e.g. decision:blocked) or person-event:KIND (e.g. \
                 person-event:death-registered)"
            )
        };
        match item.split_once(':') {
            Some((ty, kind)) => match proto_name(ty).as_str() {
                "DECISION" => filter
                    .decision_kinds
                    .push(pb::DecisionKind::from_str_name(&proto_name(kind)).ok_or_else(unknown)? as i32),
                "PERSON_EVENT" => filter
                    .person_event_kinds
                    .push(pb::PersonEventKind::from_str_name(&proto_name(kind)).ok_or_else(unknown)? as i32),
                _ => return Err(unknown()),
            },
            None => filter.record_types.push(
                pb::RecordType::from_str_name(&format!("RECORD_TYPE_{}", proto_name(item)))
                    .ok_or_else(unknown)? as i32,
            ),
        }
    }
    Ok(filter)
}

pub async fn subscribe(channel: Channel, args: &SubscribeArgs, json: bool) -> anyhow::Result<()> {
    let response = pb::subscription_service_client::SubscriptionServiceClient::new(channel)
        .create_subscriptions(pb::CreateSubscriptionsRequest {
            items: vec![pb::NewSubscription {
                client_reference: args.reference.clone(),
                person_id: args.target.person.clone(),
                benefit_type_codes: args.target.benefits.clone(),
                from_date: args.from.clone(),
                legal_basis: args.ground.basis.clone(),
                case_reference: args.ground.case_reference.clone().unwrap_or_default(),
                consent_id: args.ground.consent_id.clone().unwrap_or_default(),
                start_from_now: args.from_now,
                end_date: args.until.clone().unwrap_or_default(),
                filter: args.only.as_deref().map(record_filter).transpose()?,
            }],
        })
        .await?
        .into_inner();
    print_message(json, &response, |response| {
        for result in &response.results {
            match (&result.subscription, &result.error) {
                (Some(s), _) => {
                    let outcome = pb::CreateSubscriptionOutcome::try_from(result.outcome)
                        .unwrap_or_default()
                        .as_str_name()
                        .trim_start_matches("CREATE_SUBSCRIPTION_OUTCOME_");
                    println!("{outcome}: {}", s.subscription_id);
                    println!("its snapshot and changes follow on `lefi client stream`");
                }
                (None, Some(e)) => {
                    let reason = pb::ErrorReason::try_from(e.reason)
                        .unwrap_or_default()
                        .as_str_name();
                    anyhow::bail!("refused ({reason}): {}", e.message);
                }
                (None, None) => anyhow::bail!("the server gave no result for the subscription"),
            }
        }
        Ok(())
    })
}

pub async fn subscriptions(channel: Channel, person: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut pages = pb::subscription_service_client::SubscriptionServiceClient::new(channel)
        .list_subscriptions(pb::ListSubscriptionsRequest {
            person_id: person.unwrap_or_default().to_string(),
            ..Default::default()
        })
        .await?
        .into_inner();
    if !json {
        println!(
            "{:<38} {:<20} {:<24} {:<8} BENEFITS REASON",
            "SUBSCRIPTION", "REFERENCE", "BASIS", "STATE"
        );
    }
    while let Some(page) = pages.message().await? {
        print_each(json, &page.subscriptions, print_subscription)?;
    }
    Ok(())
}

pub async fn cancel(channel: Channel, subscription_id: &str, json: bool) -> anyhow::Result<()> {
    let response = pb::subscription_service_client::SubscriptionServiceClient::new(channel)
        .cancel_subscription(pb::CancelSubscriptionRequest {
            subscription_id: subscription_id.to_string(),
        })
        .await?
        .into_inner();
    match (json, &response.subscription) {
        (true, _) => print_json(&response),
        (false, Some(s)) => {
            print_subscription(s);
            Ok(())
        }
        (false, None) => Ok(()),
    }
}

pub async fn refresh(channel: Channel, subscriptions: &[String], json: bool) -> anyhow::Result<()> {
    let response = pb::delivery_service_client::DeliveryServiceClient::new(channel)
        .request_full_refresh(pb::FullRefreshRequest {
            subscription_ids: subscriptions.to_vec(),
            reason: String::new(),
        })
        .await?
        .into_inner();
    print_message(json, &response, |response| {
        println!(
            "{} subscription(s) get a fresh snapshot; stream from this cursor:",
            response.subscription_count
        );
        println!("{}", response.cursor);
        if !response.skipped_subscription_ids.is_empty() {
            println!(
                "skipped (not active): {}",
                response.skipped_subscription_ids.join(", ")
            );
        }
        Ok(())
    })
}

fn print_consent(c: &pb::Consent) {
    let state = pb::ConsentState::try_from(c.state)
        .unwrap_or_default()
        .as_str_name();
    println!(
        "{:<38} {:<22} {:<8} {}..{} {}",
        c.consent_id, c.legal_basis, state, c.given_on, c.expires_on, c.evidence_reference
    );
}

pub async fn consent(channel: Channel, command: &ConsentCommand, json: bool) -> anyhow::Result<()> {
    let mut client = pb::consent_service_client::ConsentServiceClient::new(channel);
    match command {
        ConsentCommand::Register {
            person,
            basis,
            given_on,
            expires_on,
            evidence,
        } => {
            let response = client
                .register_consent(pb::RegisterConsentRequest {
                    person_id: person.clone(),
                    legal_basis: basis.clone(),
                    given_on: given_on.clone(),
                    expires_on: expires_on.clone(),
                    evidence_reference: evidence.clone(),
                })
                .await?
                .into_inner();
            print_message(json, &response, |response| {
                if let Some(c) = &response.consent {
                    println!(
                        "{}",
                        if response.created {
                            "registered:"
                        } else {
                            "already registered:"
                        }
                    );
                    print_consent(c);
                    println!("pass --consent-id {} when you subscribe or query", c.consent_id);
                }
                if response.resumed_subscription_count > 0 {
                    println!(
                        "{} suspended subscription(s) resumed under this consent (a fresh snapshot follows on the stream)",
                        response.resumed_subscription_count
                    );
                }
                Ok(())
            })
        }
        ConsentCommand::Revoke { consent_id, reason } => {
            let response = client
                .revoke_consent(pb::RevokeConsentRequest {
                    consent_id: consent_id.clone(),
                    reason: reason.clone(),
                })
                .await?
                .into_inner();
            print_message(json, &response, |response| {
                if let Some(c) = &response.consent {
                    print_consent(c);
                }
                println!(
                    "{} subscription(s) suspended (register a new consent for the same person and basis to resume them)",
                    response.suspended_subscription_count
                );
                Ok(())
            })
        }
        ConsentCommand::List => {
            let response = client
                .list_consents(pb::ListConsentsRequest::default())
                .await?
                .into_inner();
            print_each(json, &response.consents, print_consent)
        }
    }
}

pub async fn close_case(
    channel: Channel,
    case_reference: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let response = pb::case_service_client::CaseServiceClient::new(channel)
        .close_case(pb::CloseCaseRequest {
            case_reference: case_reference.to_string(),
            reason: reason.to_string(),
        })
        .await?
        .into_inner();
    print_message(json, &response, |response| {
        println!(
            "case {case_reference} closed; {} subscription(s) ended",
            response.ended_subscription_count
        );
        Ok(())
    })
}

fn print_entry(e: &admin_pb::DisclosureEntry) {
    let decision = admin_pb::DisclosureDecision::try_from(e.decision)
        .unwrap_or_default()
        .as_str_name();
    let channel = admin_pb::DisclosureChannel::try_from(e.channel)
        .unwrap_or_default()
        .as_str_name();
    let reason = pb::ErrorReason::try_from(e.denial_reason)
        .map(|r| r.as_str_name())
        .unwrap_or_default();
    let reason = if reason == "ERROR_REASON_UNSPECIFIED" {
        ""
    } else {
        reason
    };
    let time = instant(e.time).unwrap_or_default();
    println!(
        "{:>6} {} {:<18} {:<8} {:<22} {:<24} {:>5} rec {} {}",
        e.entry_id,
        time,
        channel,
        decision,
        e.party_org_number,
        e.legal_basis,
        e.record_count,
        e.benefit_type_codes.join(","),
        reason
    );
}

pub async fn audit(channel: Channel, command: &AuditCommand, json: bool) -> anyhow::Result<()> {
    let mut client = admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(channel);
    match command {
        AuditCommand::Verify => {
            let verdict = client
                .verify_disclosure_log(admin_pb::VerifyDisclosureLogRequest::default())
                .await?
                .into_inner();
            print_message(json, &verdict, |verdict| {
                if verdict.ok {
                    println!(
                        "the disclosure log is intact: {} entries checked; last hash {}",
                        verdict.entries_checked, verdict.last_hash
                    );
                    Ok(())
                } else {
                    anyhow::bail!(
                        "the disclosure log is broken at entry {}: {} ({} entries before it check out)",
                        verdict.first_broken_entry_id,
                        verdict.message,
                        verdict.entries_checked
                    )
                }
            })
        }
        AuditCommand::Person { person } => {
            let person = person.clone();
            print_pages(json, |token| {
                let mut client = client.clone();
                let person = person.clone();
                async move {
                    client
                        .list_disclosures_for_person(admin_pb::ListDisclosuresForPersonRequest {
                            person_id: person,
                            page_token: token,
                            ..Default::default()
                        })
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await
        }
        AuditCommand::Party { party_id } => {
            let party_id = party_id.clone();
            print_pages(json, |token| {
                let mut client = client.clone();
                let party_id = party_id.clone();
                async move {
                    client
                        .list_disclosures_for_party(admin_pb::ListDisclosuresForPartyRequest {
                            party_id,
                            page_token: token,
                            ..Default::default()
                        })
                        .await
                        .map(|r| r.into_inner())
                }
            })
            .await
        }
    }
}

/// Prints every page of a disclosure listing, following its page tokens.
async fn print_pages<F, Fut>(json: bool, mut fetch: F) -> anyhow::Result<()>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<admin_pb::ListDisclosuresResponse, tonic::Status>>,
{
    let mut token = String::new();
    loop {
        let page = fetch(token).await?;
        print_each(json, &page.entries, print_entry)?;
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_record_types_and_kinds() {
        let filter =
            record_filter("payment, decision:blocked,Decision:UNBLOCKED,person-event:death-registered")
                .unwrap();
        assert_eq!(filter.record_types, [pb::RecordType::Payment as i32]);
        assert_eq!(
            filter.decision_kinds,
            [
                pb::DecisionKind::Blocked as i32,
                pb::DecisionKind::Unblocked as i32
            ]
        );
        assert_eq!(
            filter.person_event_kinds,
            [pb::PersonEventKind::DeathRegistered as i32]
        );
        assert!(record_filter("payments").is_err());
        assert!(record_filter("decision:maybe").is_err());
        assert!(record_filter("case:open").is_err());
    }
}

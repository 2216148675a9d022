//! The party and agency scenarios: what happens to a party's subscriptions from outside the
//! register (the agency revokes a consent, the authority closes its case, delivery history is pruned
//! so that old cursors expire, the party is terminated), and `party`, the demo party one acts on.

use std::path::Path;

use anyhow::{Context as _, bail};
use time::Duration;

use super::records::month;
use super::{Played, Sandbox};
use crate::cli::{ConnectArgs, SandboxParty};
use crate::commands::client::target;
use crate::dev::certs::{DEMO_INSURER, DEMO_MUNICIPALITY};
use crate::domain::clock::format_date;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

impl Sandbox<'_> {
    /// The demo party a scenario acts on: its id, organisation number and name.
    async fn party(&self, default: SandboxParty) -> anyhow::Result<admin_pb::Party> {
        let (org, _) = match self.args.party.unwrap_or(default) {
            SandboxParty::Insurer => DEMO_INSURER,
            SandboxParty::Municipality => DEMO_MUNICIPALITY,
        };
        let party = admin_pb::party_admin_service_client::PartyAdminServiceClient::new(self.admin.clone())
            .get_party(admin_pb::GetPartyRequest {
                key: Some(admin_pb::get_party_request::Key::OrgNumber(org.to_string())),
            })
            .await
            .with_context(|| format!("finding the demo party {org}"))?
            .into_inner();
        Ok(party)
    }

    pub(super) async fn consent_lapsing(&self) -> anyhow::Result<Played> {
        let party = self.party(SandboxParty::Insurer).await?;
        let mut audit =
            admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(self.admin.clone());
        let consents = audit
            .list_consents(admin_pb::ListConsentsRequest {
                page_size: 1000,
                page_token: String::new(),
                party_id: party.party_id.clone(),
                person_id: self.person_id(),
                states: vec![pb::ConsentState::Valid as i32],
            })
            .await?
            .into_inner()
            .consents;
        if consents.is_empty() {
            bail!(
                "{} holds no valid consent about this person, so nothing can lapse. Register one and a \
                 subscription relying on it first, e.g.\n  lefi client consent register --person <PERSON> --basis \
                 INS_RISK_ASSESSMENT --given-on {} --expires-on {} --evidence sandbox-1\n  lefi client subscribe \
                 --reference sandbox-consent --person <PERSON> --benefits {} --from 2020-01-01 --basis \
                 INS_RISK_ASSESSMENT --consent-id <CONSENT ID>",
                party.name,
                format_date(self.today),
                format_date(self.today + Duration::days(365)),
                self.benefit()
            );
        }
        let mut played = Played::default();
        let mut suspended = 0;
        for consent in consents {
            let Some(held) = consent.consent else { continue };
            let revoked = audit
                .revoke_consent(admin_pb::RevokeConsentRequest {
                    idempotency_key: uuid::Uuid::now_v7().to_string(),
                    consent_id: held.consent_id.clone(),
                    reason: "sandbox: the individual withdrew the consent by contacting the agency"
                        .to_string(),
                })
                .await?
                .into_inner();
            suspended += revoked.suspended_subscription_count;
            played.committed.push(format!(
                "consent {} ({}) of {} revoked by the agency; {} subscription(s) suspended",
                held.consent_id, held.legal_basis, party.name, revoked.suspended_subscription_count
            ));
        }
        played.expect.push(format!(
            "on {}'s stream, for each of the {suspended} subscription(s) made under the consent: a \
             SubscriptionNotice with state SUSPENDED, reason CONSENT_ENDED (its message names the consent)",
            party.name
        ));
        played
            .expect
            .push("nothing more about those subscriptions until they are resumed".to_string());
        played.check.push(
            "your client stops treating the subscription's data as current, and asks the individual for a new \
             consent; registering it (same person and basis) resumes the subscription: a SubscriptionNotice \
             ACTIVE / RESUMED, then a snapshot with reason SUBSCRIPTION_RESUMED that replaces what you hold"
                .to_string(),
        );
        Ok(played)
    }

    pub(super) async fn case_closed_by_authority(&self) -> anyhow::Result<Played> {
        let party = self.party(SandboxParty::Municipality).await?;
        let stem = match self.args.party.unwrap_or(SandboxParty::Municipality) {
            SandboxParty::Insurer => "insurer",
            SandboxParty::Municipality => "municipality",
        };
        let as_party = ConnectArgs {
            addr: Some(self.args.party_addr.clone()),
            cert: Some(Path::new(&self.args.certs_dir).join(format!("{stem}.pem"))),
            key: None,
            ..self.connect.clone()
        };
        let channel = target(&as_party, "https://localhost:50051", stem)?
            .connect()
            .await
            .with_context(|| format!("connecting to the party API as {}", party.name))?;
        let references = match &self.args.case_reference {
            Some(reference) => vec![reference.clone()],
            None => {
                let mut pages =
                    pb::subscription_service_client::SubscriptionServiceClient::new(channel.clone())
                        .list_subscriptions(pb::ListSubscriptionsRequest {
                            page_size: 1000,
                            person_id: self.person_id(),
                            states: vec![
                                pb::SubscriptionState::Active as i32,
                                pb::SubscriptionState::Suspended as i32,
                            ],
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                let mut references = Vec::new();
                while let Some(page) = pages.message().await? {
                    for subscription in page.subscriptions {
                        let reference = subscription.case_reference;
                        if !reference.is_empty() && !references.contains(&reference) {
                            references.push(reference);
                        }
                    }
                }
                references
            }
        };
        if references.is_empty() {
            bail!(
                "{} has no subscription about this person under a case reference, so no case can close. \
                 Subscribe under one first, e.g.\n  lefi client --as municipality subscribe --reference \
                 sandbox-case --person <PERSON> --benefits {} --from 2020-01-01 --basis AUTH_SOCIAL_SERVICES \
                 --case-reference DNR-SANDBOX-1",
                party.name,
                self.benefit()
            );
        }
        let mut cases = pb::case_service_client::CaseServiceClient::new(channel);
        let mut played = Played::default();
        let mut ended = 0;
        for reference in &references {
            let closed = cases
                .close_case(pb::CloseCaseRequest {
                    case_reference: reference.clone(),
                    reason: "sandbox: the authority closed its case".to_string(),
                })
                .await?
                .into_inner();
            ended += closed.ended_subscription_count;
            played.committed.push(format!(
                "{} closed its case {reference} (CaseService.CloseCase); {} subscription(s) ended",
                party.name, closed.ended_subscription_count
            ));
        }
        played.expect.push(format!(
            "on {}'s stream, for each of the {ended} subscription(s) under the case: a SubscriptionNotice with \
             state ENDED, reason CASE_CLOSED; nothing more is sent for them",
            party.name
        ));
        played.check.push(
            "your client ends the subscription for good (a closed case reference cannot be used again: a new \
             subscription or query naming it is refused with CASE_CLOSED); open a new case to subscribe again"
                .to_string(),
        );
        Ok(played)
    }

    pub(super) async fn cursor_expiring(&self) -> anyhow::Result<Played> {
        let mut played = Played::default();
        let view = self.view().await?;
        let choice = self.case_of(&view, false)?;
        let mut facts = self.case_facts(&choice);
        let this_month = month(self.today, 0)?;
        facts.push(self.new_fact(
            self.benefit(),
            self.payment(&choice.case.case_id, (this_month.0, self.today), 500_000),
            false,
        ));
        self.ingest(facts).await?;
        self.case_note(&choice, &mut played);
        let pruned =
            admin_pb::operations_admin_service_client::OperationsAdminServiceClient::new(self.admin.clone())
                .prune_delivery_history(admin_pb::PruneDeliveryHistoryRequest {})
                .await?
                .into_inner();
        played.committed.push(format!(
            "a payment ({}) of 5 000 kr for this month (so that every subscriber of the person has history after \
             its old cursors)",
            self.benefit()
        ));
        played.committed.push(format!(
            "the delivery history of every party recorded before now pruned (PruneDeliveryHistory, development \
             servers only): {} event(s) deleted",
            pruned.deleted_events
        ));
        played.expect.push(
            "a stream that was open gets the new payment as a Change and goes on: its cursor is current"
                .to_string(),
        );
        played.expect.push(
            "a client that resumes (Stream or FetchEvents) with a cursor from before the payment, e.g. one \
             persisted before this scenario while it was stopped: FAILED_PRECONDITION with ErrorInfo reason \
             CURSOR_EXPIRED (metadata horizon_sequence)"
                .to_string(),
        );
        played.check.push(
            "on CURSOR_EXPIRED your client calls DeliveryService.RequestFullRefresh and streams from the cursor it \
             returns: a snapshot (reason FULL_REFRESH) of every ACTIVE subscription replaces what it holds, then \
             every later change; it never starts silently from an empty cursor without replacing its data"
                .to_string(),
        );
        Ok(played)
    }

    pub(super) async fn party_termination(&self) -> anyhow::Result<Played> {
        let party = self.party(SandboxParty::Insurer).await?;
        let insurer = party.kind == pb::PartyKind::Insurer as i32;
        let terminated =
            admin_pb::party_admin_service_client::PartyAdminServiceClient::new(self.admin.clone())
                .schedule_termination(admin_pb::ScheduleTerminationRequest {
                    idempotency_key: uuid::Uuid::now_v7().to_string(),
                    party_id: party.party_id.clone(),
                    is_termination: true,
                    org_number: party.org_number.clone(),
                    organisation_name: party.name.clone(),
                    effective_date: format_date(self.today),
                    notice_received_on: format_date(self.today),
                    override_reason: if insurer {
                        "sandbox scenario party-termination: at once, without the notice period".to_string()
                    } else {
                        String::new()
                    },
                })
                .await?
                .into_inner();
        let state = terminated
            .party
            .map(|p| {
                pb::PartyState::try_from(p.state)
                    .unwrap_or_default()
                    .as_str_name()
            })
            .unwrap_or("-");
        let mut played = Played::default();
        played.committed.push(format!(
            "{} ({}) terminated with effect today, {} (state {state})",
            party.name,
            party.org_number,
            format_date(self.today)
        ));
        played.expect.push(
            "for every subscription of the party that is not ended: a SubscriptionNotice with state ENDED, reason \
             PARTY_TERMINATED"
                .to_string(),
        );
        played.expect.push(
            "then the stream ends with PERMISSION_DENIED, ErrorInfo reason PARTY_TERMINATED; every later call with \
             the party's certificate is refused (PARTY_TERMINATED)"
                .to_string(),
        );
        played.check.push(
            "your client stops retrying on PARTY_TERMINATED (retrying cannot fix it) and alerts a person"
                .to_string(),
        );
        played.check.push(
            "to start over: stop `lefi serve --dev`, delete lefi.db (with lefi.db-wal and lefi.db-shm) and start it \
             again: the demo parties and register are created afresh"
                .to_string(),
        );
        Ok(played)
    }
}

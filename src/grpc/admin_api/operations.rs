//! `lefi.admin.v1.OperationsAdminService`: each party's delivery as operators follow it up (open
//! streams of this process, confirmed cursors, lag, cursor expiry, full refreshes, limits), and
//! the party listener's certificate revocation lists (listed, reloaded without a restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tonic::Status;

use super::convert;
use crate::domain::PartyState;
use crate::domain::clock::{Micros, business_date_at};
use crate::domain::onboarding::PartyFilter;
use crate::grpc::admin_api::AdminApi;
use crate::grpc::convert::{party_state, timestamp};
use crate::grpc::fields::{self, FieldError};
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::pb::lefi::admin::v1::agency_subscriptions_request::Scope;
use crate::grpc::status::{self, Missing};
use crate::identity::OperatorPrincipal;
use crate::policy::operator::AdminRight;
use crate::revocation::CrlInfo;
use crate::store::delivery::PartyLag;
use crate::store::delivery::{AgencyAction, EndSelector};
use crate::store::parties::Actor;
use crate::store::parties::PartyRecord;
use crate::streams::StreamInfo;

/// Parties read per page while listing them all.
const PAGE: u32 = 500;

impl AdminApi {
    /// Every party's delivery (or one party's), read now.
    async fn list_consumers(
        &self,
        (_, req): (OperatorPrincipal, pb::ListConsumersRequest),
    ) -> Result<pb::ListConsumersResponse, Status> {
        let state = &self.state;
        let store = &state.store;
        let now = state.clock.now_micros();
        store.settle_terminations(now).await?;
        let head = store.head_seq().await?;
        let mut streams: HashMap<String, Vec<Arc<StreamInfo>>> = HashMap::new();
        for stream in state.streams.list() {
            streams.entry(stream.party_id.clone()).or_default().push(stream);
        }
        let lags: HashMap<String, PartyLag> = store
            .party_lags()
            .await?
            .into_iter()
            .map(|lag| (lag.party_id.clone(), lag))
            .collect();
        let parties = if req.party_id.is_empty() {
            self.all_parties().await?
        } else {
            let id = convert::party_id(&req.party_id)?;
            vec![
                store
                    .party_record(&id)
                    .await?
                    .ok_or_else(|| status::not_found(Missing::Party))?,
            ]
        };
        let today = business_date_at(now);
        // By name, then id: the order operators look parties up in.
        let mut listed = BTreeMap::new();
        for party in parties {
            let current = party.state_on(today);
            let open = streams.remove(&party.party_id).unwrap_or_default();
            let lag = lags.get(&party.party_id);
            let followed = matches!(current, PartyState::Connected | PartyState::TerminationScheduled);
            if !followed && open.is_empty() && lag.is_none() {
                continue;
            }
            let consumer = self.consumer(&party, current, &open, lag, (head, now)).await?;
            listed.insert((party.application.name.clone(), party.party_id.clone()), consumer);
        }
        Ok(pb::ListConsumersResponse {
            consumers: listed.into_values().collect(),
            head_sequence: head,
            read_at: Some(timestamp(now)),
            replica: replica(),
            history_retention: prost_types::Duration::try_from(state.history_retention).ok(),
        })
    }

    /// Every party, page by page.
    async fn all_parties(&self) -> Result<Vec<PartyRecord>, Status> {
        let store = &self.state.store;
        let mut parties: Vec<PartyRecord> = Vec::new();
        loop {
            let after = parties
                .last()
                .map(|p| (p.application.name.clone(), p.party_id.clone()));
            let page = store
                .list_party_records(
                    &PartyFilter::default(),
                    after.as_ref().map(|(n, id)| (n.as_str(), id.as_str())),
                    PAGE,
                )
                .await?;
            let full = page.len() == PAGE as usize;
            parties.extend(page);
            if !full {
                return Ok(parties);
            }
        }
    }

    /// One party's line of the listing.
    async fn consumer(
        &self,
        party: &PartyRecord,
        current: PartyState,
        open: &[Arc<StreamInfo>],
        lag: Option<&PartyLag>,
        (head, now): (u64, Micros),
    ) -> Result<pb::Consumer, Status> {
        let state = &self.state;
        let store = &state.store;
        let committed = store.cursor_commits(&party.party_id).await?;
        let refresh = store.full_refreshes(&party.party_id).await?.into_iter().next();
        let limits = state.party_limits.with(&party.limits);
        let retention = Micros::try_from(state.history_retention.as_micros()).unwrap_or(Micros::MAX);
        let seconds = |micros: Micros| prost_types::Duration {
            seconds: micros.max(0) / 1_000_000,
            nanos: ((micros.max(0) % 1_000_000) * 1000) as i32,
        };
        Ok(pb::Consumer {
            party_id: party.party_id.clone(),
            party_name: party.application.name.clone(),
            state: party_state(current) as i32,
            open_streams: open
                .iter()
                .map(|s| pb::OpenStream {
                    opened_at: Some(timestamp(s.opened_at)),
                    peer: s.peer.map(|p| p.to_string()).unwrap_or_default(),
                    from_sequence: s.from_sequence,
                    delivered_sequence: s.delivered_sequence(),
                })
                .collect(),
            committed_cursors: committed
                .into_iter()
                .map(|c| pb::CommittedCursor {
                    consumer: c.consumer,
                    register_sequence: c.register_sequence,
                    committed_at: Some(timestamp(c.committed_at)),
                })
                .collect(),
            last_delivered_sequence: open.iter().map(|s| s.delivered_sequence()).max().unwrap_or(0),
            lag_sequences: lag.map(|l| head.saturating_sub(l.confirmed)),
            lag: lag.map(|l| seconds(l.oldest_unconfirmed_at.map_or(0, |at| now - at))),
            cursor_expires_at: lag
                .and_then(|l| l.oldest_unconfirmed_at)
                .map(|at| timestamp(at.saturating_add(retention))),
            last_full_refresh: refresh.map(|r| pb::FullRefresh {
                requested_at: Some(timestamp(r.requested_at)),
                reason: r.reason.unwrap_or_default(),
                subscription_count: r.subscription_count,
                sequence: r.seq,
            }),
            limits: Some(pb::PartyLimits {
                max_streams: Some(limits.max_streams),
                requests_per_second: Some(limits.requests_per_second),
                burst: Some(limits.burst),
            }),
        })
    }
}

impl AdminApi {
    /// The CRLs in force on this process.
    async fn list_crls(
        &self,
        (_, _req): (OperatorPrincipal, pb::ListCrlsRequest),
    ) -> Result<pb::ListCrlsResponse, Status> {
        Ok(self.crls(self.state.party_certificates.crls()))
    }

    /// Reads the CRL files again and puts them in force (all or none).
    async fn reload_crls(
        &self,
        (operator, _req): (OperatorPrincipal, pb::ReloadCrlsRequest),
    ) -> Result<pb::ListCrlsResponse, Status> {
        tracing::info!(operator = %operator.name, "reloading the certificate revocation lists");
        let crls = self
            .state
            .reload_crls()
            .map_err(|e| status::crl_reload_failed(&e))?;
        Ok(self.crls(crls))
    }

    fn crls(&self, crls: Vec<CrlInfo>) -> pb::ListCrlsResponse {
        let at = |seconds: i64| prost_types::Timestamp { seconds, nanos: 0 };
        pb::ListCrlsResponse {
            crls: crls
                .into_iter()
                .map(|c| pb::Crl {
                    source: c.source,
                    issuer: c.issuer,
                    number: c.number.unwrap_or_default(),
                    this_update: Some(at(c.this_update)),
                    next_update: c.next_update.map(at),
                    revoked_count: c.revoked as u64,
                })
                .collect(),
            reloads: self.state.party_certificates.generation(),
            replica: replica(),
        }
    }
}

impl AdminApi {
    /// The agency suspends, resumes or ends subscriptions of one party.
    async fn agency_action(
        &self,
        operator: OperatorPrincipal,
        req: pb::AgencySubscriptionsRequest,
        action: AgencyAction,
    ) -> Result<pb::AgencySubscriptionsResponse, Status> {
        let state = &self.state;
        let party_id = convert::party_id(&req.party_id)?;
        let reason = convert::reason(&req.reason)?;
        let person;
        let selector = match &req.scope {
            Some(Scope::SubscriptionId(id)) => EndSelector::One {
                party_id: &party_id,
                subscription_id: id,
            },
            Some(Scope::PersonId(given)) => {
                person = fields::person("person_id", given, state.clock.today())?;
                EndSelector::AllOfPerson {
                    party_id: &party_id,
                    person: &person,
                }
            }
            Some(Scope::AllOfParty(true)) => EndSelector::AllOfParty { party_id: &party_id },
            Some(Scope::AllOfParty(false)) | None => {
                return Err(FieldError::invalid(
                    "scope",
                    "name the subscriptions: subscription_id, person_id, or all_of_party = true",
                )
                .into());
            }
        };
        if state.store.party_record(&party_id).await?.is_none() {
            return Err(status::not_found(Missing::Party));
        }
        let actor = Actor {
            name: operator.name,
            fingerprint: operator.fingerprint,
        };
        let changed = state
            .store
            .agency_action(action, selector, &actor, &reason, state.clock.now_micros())
            .await
            .map_err(|e| status::or_missing(e, Missing::Subscription))?;
        // The party's open streams deliver the notices (and, on resumption, the snapshots).
        state.notify_history();
        tracing::info!(
            party_id = %party_id,
            action = ?action,
            changed = changed.len(),
            "the agency changed subscriptions of a party"
        );
        Ok(pb::AgencySubscriptionsResponse {
            subscription_ids: changed.into_iter().map(|s| s.subscription_id).collect(),
        })
    }

    async fn suspend_subscriptions(
        &self,
        (operator, req): (OperatorPrincipal, pb::AgencySubscriptionsRequest),
    ) -> Result<pb::AgencySubscriptionsResponse, Status> {
        self.agency_action(operator, req, AgencyAction::Suspend).await
    }

    async fn resume_subscriptions(
        &self,
        (operator, req): (OperatorPrincipal, pb::AgencySubscriptionsRequest),
    ) -> Result<pb::AgencySubscriptionsResponse, Status> {
        self.agency_action(operator, req, AgencyAction::Resume).await
    }

    async fn end_subscriptions(
        &self,
        (operator, req): (OperatorPrincipal, pb::AgencySubscriptionsRequest),
    ) -> Result<pb::AgencySubscriptionsResponse, Status> {
        self.agency_action(operator, req, AgencyAction::End).await
    }
}

impl AdminApi {
    /// The server's version and whether it runs in development mode (with its demo person).
    async fn get_server_info(
        &self,
        (_, _req): (OperatorPrincipal, pb::GetServerInfoRequest),
    ) -> Result<pb::GetServerInfoResponse, Status> {
        let state = &self.state;
        let demo_person_id = if state.dev_mode {
            state
                .store
                .demo_person(crate::dev::register::DEMO_SOURCE_SYSTEM, "SJP")
                .await?
                // A synthetic demo person (test-range number), as `serve --dev` prints it.
                .map(|person| person.to_display_unmasked())
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::GetServerInfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            dev_mode: state.dev_mode,
            demo_person_id,
        })
    }

    /// Development servers only: prunes every party's delivery history recorded before now, so
    /// that older cursors expire at once (the sandbox's "cursor-expiring").
    async fn prune_delivery_history(
        &self,
        (operator, _req): (OperatorPrincipal, pb::PruneDeliveryHistoryRequest),
    ) -> Result<pb::PruneDeliveryHistoryResponse, Status> {
        let state = &self.state;
        if !state.dev_mode {
            return Err(status::development_only("PruneDeliveryHistory"));
        }
        let now = state.clock.now_micros();
        let deleted = state.store.prune_delivery_history(now).await?;
        state.metrics.history_pruned(deleted);
        // Open streams re-read their party's horizon on their next page.
        state.notify_history();
        tracing::info!(operator = %operator.name, deleted, "pruned delivery history on request (development mode)");
        Ok(pb::PruneDeliveryHistoryResponse {
            deleted_events: deleted,
            pruned_before: Some(timestamp(now)),
        })
    }
}

/// This server process, as the listing names it: the host and the process id.
fn replica() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host} pid {}", std::process::id())
}

crate::grpc::service! {
    impl pb::operations_admin_service_server::OperationsAdminService for AdminApi {
        list_consumers(pb::ListConsumersRequest) -> pb::ListConsumersResponse: needs(AdminRight::ReadParties);
        list_crls(pb::ListCrlsRequest) -> pb::ListCrlsResponse: needs(AdminRight::ReadParties);
        reload_crls(pb::ReloadCrlsRequest) -> pb::ListCrlsResponse: needs(AdminRight::ManageParties);
        suspend_subscriptions(pb::AgencySubscriptionsRequest) -> pb::AgencySubscriptionsResponse:
            needs(AdminRight::ManageParties);
        resume_subscriptions(pb::AgencySubscriptionsRequest) -> pb::AgencySubscriptionsResponse:
            needs(AdminRight::ManageParties);
        end_subscriptions(pb::AgencySubscriptionsRequest) -> pb::AgencySubscriptionsResponse:
            needs(AdminRight::ManageParties);
        get_server_info(pb::GetServerInfoRequest) -> pb::GetServerInfoResponse: any_operator;
        prune_delivery_history(pb::PruneDeliveryHistoryRequest) -> pb::PruneDeliveryHistoryResponse:
            needs(AdminRight::ManageParties);
    }
}

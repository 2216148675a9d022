//! `lefi.v1.SubscriptionService`: placing, cancelling and listing subscriptions (beställningar).

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::authorize::{Ask, CallContext, Gate, allowed_entry, refused_entry};
use crate::domain::delivery::{EndReason, RecordFilter, SubscriptionStart};
use crate::domain::disclosure::{Channel, Decision, NewDisclosure};
use crate::grpc::convert;
use crate::grpc::fields::{self, FieldError};
use crate::grpc::paging::{Page, Pages};
use crate::grpc::party_api::PartyApi;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, Conflict, Missing, Report};
use crate::identity::PartyPrincipal;
use crate::state::AppState;
use crate::store::delivery::{CreateOutcome, EndSelector, NewSubscription, Subscription, SubscriptionFilter};

/// The most items one CreateSubscriptions call may carry.
pub const MAX_BATCH: usize = 10_000;
/// Longest client or case reference.
const MAX_REFERENCE: usize = 64;

fn valid_reference(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= MAX_REFERENCE
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// An item refused for its fields, before the policy: with what it asked for when it named a
/// valid person (that refusal is logged), or without (a request that names nobody is not).
struct ItemRefused {
    ask: Option<Box<Ask>>,
    error: FieldError,
}

/// Checks the shape of one item; the policy comes after. Returns what it asks the policy for and
/// the records it wants.
fn validate(
    state: &AppState,
    item: &pb::NewSubscription,
    known_benefits: &[String],
) -> Result<(Ask, RecordFilter), ItemRefused> {
    let person = fields::person("person_id", &item.person_id, state.clock.today())
        .map_err(|error| ItemRefused { ask: None, error })?;
    let mut benefits = item.benefit_type_codes.clone();
    benefits.sort();
    benefits.dedup();
    let mut ask = Ask {
        basis_code: item.legal_basis.clone(),
        person,
        benefit_codes: benefits,
        case_reference: (!item.case_reference.is_empty()).then(|| item.case_reference.clone()),
        consent_id: (!item.consent_id.is_empty()).then(|| item.consent_id.clone()),
        period: (None, None),
        subscription_id: None,
    };
    match check_fields(item, &ask.benefit_codes, known_benefits, state.clock.today()) {
        Ok((from, end, filter)) => {
            ask.period = (Some(from), end);
            Ok((ask, filter))
        }
        Err(error) => Err(ItemRefused {
            ask: Some(Box::new(ask)),
            error,
        }),
    }
}

/// The item's fields other than the person; returns its from-date, end date and record filter.
fn check_fields(
    item: &pb::NewSubscription,
    benefits: &[String],
    known_benefits: &[String],
    today: time::Date,
) -> Result<(time::Date, Option<time::Date>, RecordFilter), FieldError> {
    let filter = match &item.filter {
        Some(filter) => convert::record_filter(filter)?,
        None => RecordFilter::default(),
    };
    if !valid_reference(&item.client_reference) {
        return Err(FieldError::invalid(
            "client_reference",
            "client_reference is required: at most 64 characters of letters, digits, '-', '_', '.', ':' (no personal data)",
        ));
    }
    let from = fields::date("from_date", &item.from_date)?;
    if benefits.is_empty() {
        return Err(FieldError::invalid(
            "benefit_type_codes",
            "name at least one benefit type",
        ));
    }
    fields::benefit_codes("benefit_type_codes", &item.benefit_type_codes, |c| {
        known_benefits.iter().any(|k| k == c)
    })?;
    fields::at_most("case_reference", &item.case_reference, MAX_REFERENCE)?;
    let end = match item.end_date.trim() {
        "" => None,
        given => Some(fields::date("end_date", given)?),
    };
    if let Some(end) = end
        && (end < from || end < today)
    {
        return Err(FieldError::date(
            "end_date",
            "end_date must not lie before from_date or before today (leave it empty for no end)",
        ));
    }
    Ok((from, end, filter))
}

type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListSubscriptionsResponse, Status>> + Send>>;

impl PartyApi {
    /// Places a batch of subscriptions: each item is checked, decided by the policy and logged,
    /// and answered in its own result.
    async fn create_subscriptions(
        &self,
        (party, call, req): (PartyPrincipal, CallContext, pb::CreateSubscriptionsRequest),
    ) -> Result<pb::CreateSubscriptionsResponse, Status> {
        let items = req.items;
        tracing::Span::current().record("items", items.len());
        fields::batch_size("items", items.len(), MAX_BATCH)?;
        let state = &self.state;
        let known: Vec<String> = state.store.benefit_codes().await?;
        let gate = Gate::load(state, &party).await?;
        let now = state.clock.now_micros();

        // A party that may ask for nothing today is refused as a whole (each item about a valid
        // person is still a decision about that person, and logged).
        if let Some(denial) = gate.party_refusal(state, &party) {
            let report = status::denied(&denial, "", None);
            let entries: Vec<NewDisclosure> = items
                .iter()
                .filter_map(|item| {
                    validate(state, item, &known).map_or_else(|r| r.ask.map(|a| *a), |(a, _)| Some(a))
                })
                .map(|ask| refused_entry(&party, &call, &ask, report.reason_name()))
                .collect();
            state.append_disclosures(&entries, now).await?;
            return Err(report.into());
        }

        // Decide every item: its result, its log entry (the allowed ones get theirs once their
        // subscription exists, to name it), and what to store.
        let mut results: Vec<pb::CreateSubscriptionResult> = Vec::with_capacity(items.len());
        let mut entries: Vec<(usize, NewDisclosure)> = Vec::new();
        let mut to_create: Vec<(usize, NewSubscription, NewDisclosure)> = Vec::new();
        let mut cases: Vec<String> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let mut result = pb::CreateSubscriptionResult {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                client_reference: item.client_reference.clone(),
                ..Default::default()
            };
            let rejected = match validate(state, item, &known) {
                Err(ItemRefused { ask, error }) => {
                    let report = Report::from(error);
                    if let Some(ask) = ask {
                        entries.push((index, refused_entry(&party, &call, &ask, report.reason_name())));
                    }
                    Some(report)
                }
                Ok((ask, filter)) => match gate.check(state, &party, &call, &ask).await? {
                    Ok(permit) => {
                        cases.extend(permit.case_reference().map(str::to_string));
                        let new = NewSubscription {
                            client_reference: item.client_reference.clone(),
                            person: permit.person().clone(),
                            benefit_types: permit.benefit_codes().to_vec(),
                            from_date: ask.period.0.unwrap_or(state.clock.today()),
                            legal_basis: permit.basis_code().to_string(),
                            case_reference: permit.case_reference().map(str::to_string),
                            consent_id: permit.consent_id().map(str::to_string),
                            end_date: ask.period.1,
                            filter,
                            start: if item.start_from_now {
                                SubscriptionStart::Now
                            } else {
                                SubscriptionStart::Snapshot
                            },
                        };
                        to_create.push((index, new, allowed_entry(&party, &call, &ask, &permit, 0, (0, 0))));
                        None
                    }
                    Err(refusal) => {
                        let report = refusal.report();
                        entries.push((index, refusal.entry));
                        Some(report)
                    }
                },
            };
            if let Some(report) = rejected {
                result.outcome = pb::CreateSubscriptionOutcome::Rejected as i32;
                result.error = Some(report.item_error());
            }
            results.push(result);
        }

        // Store, then log every decision (the allowed ones naming their subscription), and only
        // then answer. Should the log fail, the call fails: a retry finds the subscriptions
        // unchanged and logs them again.
        let new: Vec<NewSubscription> = to_create.iter().map(|(_, n, _)| n.clone()).collect();
        let outcomes = state
            .store
            .create_subscriptions(&party.party_id, &new, now)
            .await?;
        let (mut created_count, mut unchanged_count) = (0, 0);
        for ((index, _, mut entry), outcome) in to_create.into_iter().zip(outcomes) {
            let result = &mut results[index];
            let stored = match outcome {
                CreateOutcome::Created(s) => {
                    created_count += 1;
                    Some((pb::CreateSubscriptionOutcome::Created, s))
                }
                CreateOutcome::Unchanged(s) => {
                    unchanged_count += 1;
                    Some((pb::CreateSubscriptionOutcome::Unchanged, s))
                }
                CreateOutcome::Conflict => None,
            };
            match stored {
                Some((outcome, s)) => {
                    result.outcome = outcome as i32;
                    entry.subscription_id = Some(s.subscription_id.clone());
                    result.subscription = Some(convert::subscription(&s));
                }
                None => {
                    let report = status::conflict(Conflict::ClientReference);
                    entry.decision = Decision::Denied;
                    entry.denial_reason = Some(report.reason_name().to_string());
                    result.outcome = pb::CreateSubscriptionOutcome::Rejected as i32;
                    result.error = Some(report.item_error());
                }
            }
            entries.push((index, entry));
        }
        entries.sort_by_key(|(index, _)| *index);
        let entries: Vec<NewDisclosure> = entries.into_iter().map(|(_, e)| e).collect();
        state.append_disclosures(&entries, now).await?;
        cases.sort();
        cases.dedup();
        state.store.touch_cases(&party.party_id, &cases, now).await?;
        if created_count > 0 {
            state.notify_history();
        }
        let rejected_count = results.len() as u32 - created_count - unchanged_count;
        Ok(pb::CreateSubscriptionsResponse {
            results,
            created_count,
            unchanged_count,
            rejected_count,
        })
    }

    /// Ends one of the party's subscriptions (cancelled), and shows it as it is afterwards.
    async fn cancel_subscription(
        &self,
        (party, req): (PartyPrincipal, pb::CancelSubscriptionRequest),
    ) -> Result<pb::CancelSubscriptionResponse, Status> {
        let id = req.subscription_id;
        if id.is_empty() {
            return Err(FieldError::invalid("subscription_id", "subscription_id is required").into());
        }
        let selector = EndSelector::One {
            party_id: &party.party_id,
            subscription_id: &id,
        };
        self.state
            .withdraw_subscriptions(selector, EndReason::Cancelled, "cancelled by your party")
            .await?;
        let current = self.subscription_of(&party, &id).await?;
        Ok(pb::CancelSubscriptionResponse {
            subscription: Some(convert::subscription(&current)),
        })
    }

    /// The party's subscriptions matching the request's filters, streamed a page per message.
    async fn list_subscriptions(
        &self,
        (party, req): (PartyPrincipal, pb::ListSubscriptionsRequest),
    ) -> Result<ListStream, Status> {
        let state = self.state.clone();
        let non_empty = |v: &str| (!v.is_empty()).then(|| v.to_string());
        let filter = SubscriptionFilter {
            person: fields::optional_person("person_id", &req.person_id, state.clock.today())?,
            legal_basis: non_empty(&req.legal_basis),
            client_reference: non_empty(&req.client_reference),
            case_reference: non_empty(&req.case_reference),
            consent_id: non_empty(&req.consent_id),
            states: fields::enum_list(
                "states",
                &req.states,
                convert::subscription_state_from,
                "ACTIVE, SUSPENDED and ENDED",
            )?,
        };
        let pages = Pages::new(
            "ListSubscriptions",
            format!("{}|{}", party.party_id, filter_key(&req)),
        );
        let Page { mut after, size } = pages.page::<(i64, String)>(&req.page_token, req.page_size)?;
        let (tx, rx) = mpsc::channel(2);
        status::spawn(async move {
            loop {
                let page = state
                    .store
                    .subscriptions_page(
                        &party.party_id,
                        &filter,
                        after.as_ref().map(|(at, id)| (*at, id.as_str())),
                        i64::from(size) + 1,
                    )
                    .await;
                let mut page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let next_page_token =
                    pages.trim(&mut page, size, |s| (s.created_at, s.subscription_id.clone()));
                after = page.last().map(|s| (s.created_at, s.subscription_id.clone()));
                let last = next_page_token.is_empty();
                let message = pb::ListSubscriptionsResponse {
                    subscriptions: page.iter().map(convert::subscription).collect(),
                    next_page_token,
                };
                if tx.send(Ok(message)).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// One of the party's subscriptions.
    async fn get_subscription(
        &self,
        (party, req): (PartyPrincipal, pb::GetSubscriptionRequest),
    ) -> Result<pb::Subscription, Status> {
        let found = self.subscription_of(&party, &req.subscription_id).await?;
        Ok(convert::subscription(&found))
    }

    /// The party's subscription with this id, or NOT_FOUND.
    async fn subscription_of(&self, party: &PartyPrincipal, id: &str) -> Result<Subscription, Status> {
        self.state
            .store
            .subscription(&party.party_id, id)
            .await?
            .ok_or_else(|| status::not_found(Missing::Subscription))
    }
}

/// The filters of a listing, as a token's scope.
fn filter_key(req: &pb::ListSubscriptionsRequest) -> String {
    format!(
        "{:?}|{}|{}|{}|{}|{}",
        req.states, req.person_id, req.legal_basis, req.client_reference, req.case_reference, req.consent_id
    )
}

crate::grpc::service! {
    impl pb::subscription_service_server::SubscriptionService for PartyApi {
        #[fields(items)]
        create_subscriptions(pb::CreateSubscriptionsRequest) -> pb::CreateSubscriptionsResponse:
            logged("/lefi.v1.SubscriptionService/CreateSubscriptions", Channel::SubscriptionOrder);
        cancel_subscription(pb::CancelSubscriptionRequest) -> pb::CancelSubscriptionResponse: party;
        list_subscriptions(pb::ListSubscriptionsRequest) -> ListStream: party;
        get_subscription(pb::GetSubscriptionRequest) -> pb::Subscription: party;
    }
}

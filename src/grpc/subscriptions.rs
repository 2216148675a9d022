//! `lefi.v1.SubscriptionService`: placing, cancelling and listing subscriptions (beställningar).

use std::collections::HashMap;
use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::app::AppState;
use crate::domain::clock::{format_date, parse_date};
use crate::grpc::authorize::{CallContext, Gate, Request as Ask, allowed_entry};
use crate::grpc::consents::person_field;
use crate::grpc::convert::timestamp;
use crate::grpc::party_of;
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{error, invalid_field, reason_of, store_error};
use crate::store::delivery::{
    CreateOutcome, EndReason, EndSelector, NewSubscription, Subscription, SubscriptionState,
};
use crate::store::policy::{Channel, NewDisclosure};

/// The most items one CreateSubscriptions call may carry.
pub const MAX_BATCH: usize = 10_000;

/// `lefi.v1.SubscriptionService`.
#[derive(Debug, Clone)]
pub struct SubscriptionApi {
    pub state: AppState,
}

/// A subscription as the proto shows it.
pub fn subscription_message(s: &Subscription) -> pb::Subscription {
    let state = match s.state {
        SubscriptionState::Active => pb::SubscriptionState::Active,
        SubscriptionState::Suspended => pb::SubscriptionState::Suspended,
        SubscriptionState::Ended => pb::SubscriptionState::Ended,
    };
    pb::Subscription {
        subscription_id: s.subscription_id.clone(),
        client_reference: s.client_reference.clone(),
        person_id: s.person.clone(),
        benefit_type_codes: s.benefit_types.clone(),
        from_date: format_date(s.from_date),
        legal_basis: s.legal_basis.clone(),
        case_reference: s.case_reference.clone(),
        consent_id: s.consent_id.clone(),
        state: state as i32,
        state_reason: state_reason(&s.state_reason) as i32,
        created_at: Some(timestamp(s.created_at)),
        ended_at: s.ended_at.map(timestamp),
    }
}

/// A stored reason name as the proto enum.
pub fn state_reason(name: &str) -> pb::SubscriptionStateReason {
    pb::SubscriptionStateReason::from_str_name(&format!("SUBSCRIPTION_STATE_REASON_{name}"))
        .unwrap_or(pb::SubscriptionStateReason::Unspecified)
}

fn item_error(status: &Status) -> pb::ItemError {
    let reason = reason_of(status)
        .and_then(|r| pb::ErrorReason::from_str_name(&r))
        .unwrap_or(pb::ErrorReason::InvalidArgument);
    let metadata = tonic_types::StatusExt::get_details_error_info(status)
        .map(|info| info.metadata)
        .unwrap_or_default();
    pb::ItemError {
        reason: reason as i32,
        message: status.message().to_string(),
        metadata,
    }
}

fn valid_reference(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 64
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// Checks the shape of one item; the policy comes after.
fn validate(state: &AppState, item: &pb::NewSubscription, known_benefits: &[String]) -> Result<Ask, Status> {
    if !valid_reference(&item.client_reference) {
        return Err(invalid_field(
            ErrorReason::InvalidArgument,
            "client_reference",
            "client_reference is required: at most 64 characters of letters, digits, '-', '_', '.', ':' (no personal data)",
        ));
    }
    let person = person_field("person_id", &item.person_id, state.clock.today())?;
    let from = parse_date(&item.from_date).ok_or_else(|| {
        invalid_field(
            ErrorReason::InvalidDate,
            "from_date",
            "from_date must be a date written YYYY-MM-DD",
        )
    })?;
    if item.benefit_type_codes.is_empty() {
        return Err(invalid_field(
            ErrorReason::InvalidArgument,
            "benefit_type_codes",
            "name at least one benefit type",
        ));
    }
    let mut benefits = item.benefit_type_codes.clone();
    benefits.sort();
    benefits.dedup();
    if let Some(unknown) = benefits.iter().find(|b| !known_benefits.contains(b)) {
        return Err(crate::grpc::status::error_with(
            Code::InvalidArgument,
            ErrorReason::UnknownBenefitType,
            format!("benefit type {unknown} does not exist; use codes from PartyService.ListBenefitTypes"),
            vec![
                ("benefit_type", unknown.clone()),
                ("field", "benefit_type_codes".to_string()),
            ],
        ));
    }
    if item.case_reference.len() > 64 {
        return Err(invalid_field(
            ErrorReason::InvalidArgument,
            "case_reference",
            "case_reference is at most 64 characters",
        ));
    }
    Ok(Ask {
        basis_code: item.legal_basis.clone(),
        person,
        benefit_codes: benefits,
        case_reference: (!item.case_reference.is_empty()).then(|| item.case_reference.clone()),
        consent_id: (!item.consent_id.is_empty()).then(|| item.consent_id.clone()),
        period: (format_date(from), String::new()),
        subscription_id: String::new(),
    })
}

type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListSubscriptionsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::subscription_service_server::SubscriptionService for SubscriptionApi {
    #[tracing::instrument(skip_all, fields(items))]
    async fn create_subscriptions(
        &self,
        request: Request<pb::CreateSubscriptionsRequest>,
    ) -> Result<Response<pb::CreateSubscriptionsResponse>, Status> {
        let party = party_of(&request)?;
        let call = CallContext::new(
            &request,
            "/lefi.v1.SubscriptionService/CreateSubscriptions",
            Channel::SubscriptionOrder,
        );
        let items = request.into_inner().items;
        tracing::Span::current().record("items", items.len());
        if items.is_empty() || items.len() > MAX_BATCH {
            return Err(invalid_field(
                ErrorReason::BatchTooLarge,
                "items",
                format!("send 1 to {MAX_BATCH} items per call"),
            ));
        }
        let state = &self.state;
        let known: Vec<String> = state
            .store
            .benefit_types()
            .await
            .map_err(store_error)?
            .into_iter()
            .map(|b| b.code)
            .collect();
        let gate = Gate::load(state, &party).await?;

        // Decide every item; remember the decision's log entry and what to store.
        let mut results: Vec<pb::CreateSubscriptionResult> = Vec::with_capacity(items.len());
        let mut entries: Vec<(usize, NewDisclosure)> = Vec::new();
        let mut to_create: Vec<(usize, NewSubscription)> = Vec::new();
        let mut cases: Vec<String> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let mut result = pb::CreateSubscriptionResult {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                client_reference: item.client_reference.clone(),
                ..Default::default()
            };
            let ask = match validate(state, item, &known) {
                Ok(ask) => ask,
                Err(status) => {
                    result.outcome = pb::CreateSubscriptionOutcome::Rejected as i32;
                    result.error = Some(item_error(&status));
                    results.push(result);
                    continue;
                }
            };
            match gate.check(state, &party, &call, &ask).await? {
                Ok(permit) => {
                    entries.push((index, allowed_entry(&party, &call, &ask, &permit, 0, (0, 0))));
                    if let Some(reference) = permit.case_reference() {
                        cases.push(reference.to_string());
                    }
                    to_create.push((
                        index,
                        NewSubscription {
                            client_reference: item.client_reference.clone(),
                            person: ask.person.as_storage().to_string(),
                            benefit_types: permit.benefit_codes().to_vec(),
                            from_date: parse_date(&ask.period.0).unwrap_or(state.clock.today()),
                            legal_basis: permit.basis_code().to_string(),
                            case_reference: permit.case_reference().unwrap_or_default().to_string(),
                            consent_id: permit.consent_id().unwrap_or_default().to_string(),
                        },
                    ));
                }
                Err(refusal) => {
                    result.outcome = pb::CreateSubscriptionOutcome::Rejected as i32;
                    result.error = Some(item_error(&refusal.status));
                    entries.push((index, refusal.entry));
                }
            }
            results.push(result);
        }

        // Every decision is logged before anything is stored or answered.
        let now = state.clock.now_micros();
        let log: Vec<NewDisclosure> = entries.iter().map(|(_, e)| e.clone()).collect();
        state
            .store
            .append_disclosures(&log, now)
            .await
            .map_err(store_error)?;
        cases.sort();
        cases.dedup();
        for reference in &cases {
            state
                .store
                .touch_case(&party.party_id, reference, now)
                .await
                .map_err(store_error)?;
        }
        let new: Vec<NewSubscription> = to_create.iter().map(|(_, n)| n.clone()).collect();
        let outcomes = state
            .store
            .create_subscriptions(&party.party_id, &new, now)
            .await
            .map_err(store_error)?;
        let by_index: HashMap<usize, CreateOutcome> =
            to_create.iter().map(|(i, _)| *i).zip(outcomes).collect();
        let mut created_count = 0;
        let mut unchanged_count = 0;
        let mut rejected_count = 0;
        for result in &mut results {
            let index = result.index as usize;
            match by_index.get(&index) {
                Some(CreateOutcome::Created(s)) => {
                    result.outcome = pb::CreateSubscriptionOutcome::Created as i32;
                    result.subscription = Some(subscription_message(s));
                    created_count += 1;
                }
                Some(CreateOutcome::Unchanged(s)) => {
                    result.outcome = pb::CreateSubscriptionOutcome::Unchanged as i32;
                    result.subscription = Some(subscription_message(s));
                    unchanged_count += 1;
                }
                Some(CreateOutcome::Conflict) => {
                    let status = error(
                        Code::AlreadyExists,
                        ErrorReason::IdempotencyKeyReused,
                        "this client_reference names another subscription with other content; use a new client_reference",
                    );
                    result.outcome = pb::CreateSubscriptionOutcome::Rejected as i32;
                    result.error = Some(item_error(&status));
                    rejected_count += 1;
                }
                None => rejected_count += 1,
            }
        }
        if created_count > 0 {
            state.notify_history();
        }
        Ok(Response::new(pb::CreateSubscriptionsResponse {
            results,
            created_count,
            unchanged_count,
            rejected_count,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn cancel_subscription(
        &self,
        request: Request<pb::CancelSubscriptionRequest>,
    ) -> Result<Response<pb::CancelSubscriptionResponse>, Status> {
        let party = party_of(&request)?;
        let id = request.into_inner().subscription_id;
        if id.is_empty() {
            return Err(invalid_field(
                ErrorReason::InvalidArgument,
                "subscription_id",
                "subscription_id is required",
            ));
        }
        let state = &self.state;
        let ended = state
            .store
            .withdraw_subscriptions(
                EndSelector::One {
                    party_id: &party.party_id,
                    subscription_id: &id,
                },
                EndReason::Cancelled,
                "cancelled by your party",
                state.clock.now_micros(),
            )
            .await
            .map_err(store_error)?;
        if !ended.is_empty() {
            state.notify_history();
        }
        let current = state
            .store
            .subscription(&party.party_id, &id)
            .await
            .map_err(store_error)?
            .ok_or_else(subscription_not_found)?;
        Ok(Response::new(pb::CancelSubscriptionResponse {
            subscription: Some(subscription_message(&current)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<ListStream>, Status> {
        let party = party_of(&request)?;
        let req = request.into_inner();
        let state = self.state.clone();
        let person = if req.person_id.is_empty() {
            String::new()
        } else {
            person_field("person_id", &req.person_id, state.clock.today())?
                .as_storage()
                .to_string()
        };
        let mut after = decode_page_token(&req.page_token)?;
        let size = match req.page_size {
            0 => 100,
            n => i64::from(n.min(1_000)),
        };
        let states: Vec<SubscriptionState> = req
            .states
            .iter()
            .filter_map(|s| match pb::SubscriptionState::try_from(*s) {
                Ok(pb::SubscriptionState::Active) => Some(SubscriptionState::Active),
                Ok(pb::SubscriptionState::Suspended) => Some(SubscriptionState::Suspended),
                Ok(pb::SubscriptionState::Ended) => Some(SubscriptionState::Ended),
                _ => None,
            })
            .collect();
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            loop {
                let page = state
                    .store
                    .subscriptions_page(
                        &party.party_id,
                        after.as_ref().map(|(at, id)| (*at, id.as_str())),
                        &person,
                        &req.legal_basis,
                        &req.client_reference,
                        &req.case_reference,
                        &req.consent_id,
                        &states,
                        size,
                    )
                    .await;
                let page = match page {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(store_error(e))).await;
                        return;
                    }
                };
                let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= size;
                after = page.last().map(|s| (s.created_at, s.subscription_id.clone()));
                let next_page_token = match (&after, full) {
                    (Some((at, id)), true) => format!("s:{at}:{id}"),
                    _ => String::new(),
                };
                let last = next_page_token.is_empty();
                let message = pb::ListSubscriptionsResponse {
                    subscriptions: page.iter().map(subscription_message).collect(),
                    next_page_token,
                };
                if tx.send(Ok(message)).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all)]
    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::Subscription>, Status> {
        let party = party_of(&request)?;
        let id = request.into_inner().subscription_id;
        let found = self
            .state
            .store
            .subscription(&party.party_id, &id)
            .await
            .map_err(store_error)?
            .ok_or_else(subscription_not_found)?;
        Ok(Response::new(subscription_message(&found)))
    }
}

fn subscription_not_found() -> Status {
    error(
        Code::NotFound,
        ErrorReason::SubscriptionNotFound,
        "your party has no subscription with this id; check it with ListSubscriptions",
    )
}

fn decode_page_token(token: &str) -> Result<Option<(i64, String)>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || {
        invalid_field(
            ErrorReason::PageTokenInvalid,
            "page_token",
            "page_token was not issued by this server for this listing; start again with an empty token",
        )
    };
    let rest = token.strip_prefix("s:").ok_or_else(invalid)?;
    let (at, id) = rest.split_once(':').ok_or_else(invalid)?;
    Ok(Some((at.parse().map_err(|_| invalid())?, id.to_string())))
}

//! Statistics orders on the wire, shared by the orderer's service (party API) and the statistics
//! unit's (admin API): the order, its history and manifest as messages, the population upload
//! (chunks in, one checked file out) and the chunked, resumable download of an extract's files.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use time::Date;
use tonic::{Status, Streaming};

use crate::domain::clock::{format_date, format_instant, from_micros};
use crate::domain::statistics::order::{OrderState, OrderStep, Side};
use crate::domain::statistics::population;
use crate::extract::Manifest;
use crate::grpc::fields::{self, FieldError};
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::status::{self, OrderUnavailable};
use crate::state::AppState;
use crate::store::statistics::{FILE_CHUNK_BYTES, Order, OrderFilter, OrderHistoryEntry, StepDetail};

/// The largest population file accepted (5 million persons fit well inside).
pub const MAX_POPULATION_BYTES: usize = 256 << 20;

/// The stream of a download.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ExtractChunk, Status>> + Send>>;

/// The wire value of an order state.
pub fn state_message(state: OrderState) -> pb::StatisticsOrderState {
    use OrderState as S;
    use pb::StatisticsOrderState as P;
    match state {
        S::Submitted => P::OrderSubmitted,
        S::InReview => P::OrderInReview,
        S::AwaitingCompletion => P::OrderAwaitingCompletion,
        S::QuoteDrafted => P::OrderQuoteDrafted,
        S::ContentAgreed => P::OrderContentAgreed,
        S::Released => P::OrderReleased,
        S::Refused => P::OrderRefused,
        S::QuoteAccepted => P::OrderQuoteAccepted,
        S::Extracted => P::OrderExtracted,
        S::Delivered => P::OrderDelivered,
        S::Deleted => P::OrderDeleted,
        S::Withdrawn => P::OrderWithdrawn,
    }
}

/// The state filter of a listing: each value checked.
pub fn state_filter(values: &[i32]) -> Result<Vec<OrderState>, FieldError> {
    fields::enum_list(
        "states",
        values,
        |v| {
            OrderState::ALL
                .into_iter()
                .find(|s| state_message(*s) as i32 == v)
        },
        "StatisticsOrderState values other than UNSPECIFIED",
    )
}

fn instant(micros: i64) -> String {
    format_instant(from_micros(micros))
}

/// An order as both sides see it; `today` decides whether it is overdue.
pub fn order_message(o: &Order, today: Date) -> pb::StatisticsOrder {
    let n = &o.order;
    pb::StatisticsOrder {
        order_id: o.order_id.clone(),
        party_id: o.party_id.clone(),
        state: state_message(o.state) as i32,
        submitted: Some(pb::SubmitOrderRequest {
            order_reference: n.order_reference.clone(),
            project: n.project.clone(),
            purpose: n.purpose.clone(),
            legal_ground: n.legal_ground.clone(),
            population_description: n.population_description.clone(),
            benefit_type_codes: n.benefit_types.clone(),
            variables: n.variables.clone(),
            period: Some(pb::DateRange {
                from: format_date(n.period_from),
                to: format_date(n.period_to),
            }),
            wished_delivery: n.wished_delivery.map(format_date).unwrap_or_default(),
            contact_name: n.contact_name.clone(),
            contact_email: n.contact_email.clone(),
            special_duty: n.special_duty,
        }),
        submitted_at: instant(o.submitted_at),
        receipt_due: format_date(o.receipt_due),
        receipt_confirmed_at: o.receipt_confirmed_at.map(instant).unwrap_or_default(),
        quote: o.quote.as_ref().map(|q| pb::StatisticsQuote {
            drafted_by: q.drafted_by.clone(),
            specification: q.specification.clone(),
            centihours: q.centihours,
            // The rate the price was computed at (stored as the price itself).
            ore_per_hour: if q.centihours > 0 {
                q.net_ore * 100 / q.centihours
            } else {
                0
            },
            net_ore: q.net_ore,
            vat_ore: q.vat_ore,
            free_of_charge: n.special_duty,
        }),
        decision: o.decision.as_ref().map(|(reviewer, text)| pb::ReviewDecision {
            released: !matches!(o.state, OrderState::Refused),
            reviewer: reviewer.clone(),
            text: text.clone(),
        }),
        population_count: o.population_count,
        extracted_sequence: o.extracted_sequence.unwrap_or(0),
        delivered_on: o.delivered_on.map(format_date).unwrap_or_default(),
        retain_until: o.retain_until.map(format_date).unwrap_or_default(),
        invoice_net_ore: o.invoice_net_ore.unwrap_or(0),
        deleted_at: o.deleted_at.map(instant).unwrap_or_default(),
        overdue: o.is_overdue(today),
    }
}

/// One step of an order's history.
pub fn event_message(e: &OrderHistoryEntry) -> pb::StatisticsOrderEvent {
    pb::StatisticsOrderEvent {
        number: e.n,
        step: e.step.as_str().to_string(),
        side: e.side.clone(),
        actor: e.actor.clone(),
        state_before: state_message(e.before) as i32,
        state_after: state_message(e.after) as i32,
        detail: e.detail.clone(),
        at: instant(e.at),
    }
}

/// An order's id, and the party it must belong to (the orderer's own); `None` for the agency, which
/// reaches every party's orders.
pub type OrderRef<'a> = (&'a str, Option<&'a str>);

/// An order, if it exists and (with `only_party`) is that party's; else ORDER_NOT_FOUND.
pub async fn order_for(state: &AppState, (order_id, only_party): OrderRef<'_>) -> Result<Order, Status> {
    state
        .store
        .order(order_id, only_party)
        .await?
        .ok_or_else(|| status::order_unavailable(OrderUnavailable::Order))
}

/// The orders `filter` selects, newest first.
pub async fn list_orders(state: &AppState, filter: &OrderFilter) -> Result<pb::ListOrdersResponse, Status> {
    let today = state.clock.today();
    let orders = state.store.orders(filter).await?;
    Ok(pb::ListOrdersResponse {
        orders: orders.iter().map(|o| order_message(o, today)).collect(),
    })
}

/// Takes one step of an order (`only_party`: the orderer's own) by `who`, with its key.
pub async fn take_step(
    state: &AppState,
    (order_id, only_party): OrderRef<'_>,
    step: OrderStep,
    (side, actor): (Side, &str),
    detail: &StepDetail,
    key: &str,
) -> Result<pb::StatisticsOrder, Status> {
    let order = state
        .store
        .order_step(
            order_id,
            only_party,
            step,
            side,
            actor,
            detail,
            Some(key),
            state.clock.now_micros(),
        )
        .await?;
    Ok(order_message(&order, state.clock.today()))
}

/// An order with its history; `only_party` limits it to that party's orders.
pub async fn get_order(state: &AppState, order: OrderRef<'_>) -> Result<pb::GetOrderResponse, Status> {
    let order = order_for(state, order).await?;
    let history = state.store.order_history(&order.order_id).await?;
    Ok(pb::GetOrderResponse {
        order: Some(order_message(&order, state.clock.today())),
        history: history.iter().map(event_message).collect(),
    })
}

/// The manifest of an order's extract; `only_party` limits it to that party's orders.
pub async fn get_manifest(state: &AppState, order: OrderRef<'_>) -> Result<pb::ExtractManifest, Status> {
    let order = order_for(state, order).await?;
    let unavailable = || {
        status::order_unavailable(OrderUnavailable::Extract {
            state: order.state.as_str(),
        })
    };
    let json = state
        .store
        .extract_manifest(&order.order_id)
        .await?
        .ok_or_else(unavailable)?;
    let manifest: Manifest =
        serde_json::from_str(&json).map_err(|e| status::internal("reading a stored extract manifest", &e))?;
    let available = matches!(order.state, OrderState::Extracted | OrderState::Delivered);
    Ok(manifest_message(&manifest, available))
}

/// A manifest on the wire.
pub fn manifest_message(m: &Manifest, files_available: bool) -> pb::ExtractManifest {
    pb::ExtractManifest {
        order_id: m.order_id.clone(),
        register_sequence: m.register_sequence,
        period: Some(pb::DateRange {
            from: m.period_from.clone(),
            to: m.period_to.clone(),
        }),
        benefit_type_codes: m.benefit_types.clone(),
        population: m.population,
        persons_with_data: m.persons_with_data,
        files: m
            .files
            .iter()
            .map(|f| pb::ExtractFile {
                name: f.name.clone(),
                media_type: f.media_type.clone(),
                size_bytes: f.size_bytes,
                rows: f.rows,
                sha256: f.sha256.clone(),
            })
            .collect(),
        produced_at: instant(m.produced_at),
        files_available,
        benefit_sources: m.benefit_sources.iter().cloned().collect(),
        coverage_used: m
            .coverage
            .iter()
            .map(|c| pb::BenefitCoverageUsed {
                benefit_type_code: c.benefit.clone(),
                lowest_coverage: c.lowest,
                months: c
                    .months
                    .iter()
                    .map(|m| pb::OrderedMonthCoverage {
                        month: m.month.clone(),
                        coverage: m.coverage,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// A benefit's coverage today, from the register's payments.
pub async fn benefit_coverage(
    state: &AppState,
    benefit: &str,
) -> Result<crate::domain::statistics::coverage::Coverage, Status> {
    Ok(crate::extract::benefit_coverage(&state.store, benefit, state.clock.today()).await?)
}

/// Refuses an order whose period ends in a month not yet orderable for one of its benefits.
pub async fn check_coverage(state: &AppState, benefits: &[String], period_to: Date) -> Result<(), Status> {
    use crate::domain::statistics::coverage::{YearMonth, check_period_end, latest_orderable};
    for benefit in benefits {
        let coverage = benefit_coverage(state, benefit).await?;
        if let Err(month) = check_period_end(&coverage, YearMonth::of(period_to)) {
            return Err(status::period_not_covered(
                benefit,
                &month,
                latest_orderable(&coverage),
            ));
        }
    }
    Ok(())
}

/// Reads a population upload: the first chunk names the order and the key; the bytes are joined
/// (at most [`MAX_POPULATION_BYTES`]).
pub async fn read_upload(
    mut chunks: Streaming<pb::UploadPopulationRequest>,
) -> Result<(String, String, Vec<u8>), Status> {
    let first = chunks.next().await.ok_or_else(|| {
        FieldError::invalid("order_id", "the upload is empty: send the order_id and the file")
    })??;
    let order_id = fields::required_text(
        "order_id",
        &first.order_id,
        64,
        "the order the population belongs to",
    )?;
    let key = fields::idempotency_key(&first.idempotency_key)?.to_string();
    let mut bytes = first.data;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if bytes.len() + chunk.data.len() > MAX_POPULATION_BYTES {
            return Err(FieldError::invalid(
                "data",
                format!(
                    "the population file is larger than {} MiB; split the population",
                    MAX_POPULATION_BYTES >> 20
                ),
            )
            .into());
        }
        bytes.extend_from_slice(&chunk.data);
    }
    Ok((order_id, key, bytes))
}

/// Checks an uploaded population file and takes the RECEIVE_POPULATION step.
pub async fn receive_population(
    state: &AppState,
    (order_id, key, bytes): (String, String, Vec<u8>),
    only_party: Option<&str>,
    (side, actor): (Side, &str),
) -> Result<pb::UploadPopulationResponse, Status> {
    // The order's state is checked before the file, so that a file sent too early is refused for
    // that, not for its lines.
    let order = order_for(state, (&order_id, only_party)).await?;
    crate::domain::statistics::order::check_step(
        order.state,
        &Default::default(),
        OrderStep::ReceivePopulation,
        side,
        actor,
    )
    .map_err(|e| Status::from(crate::store::statistics::OrderError::Refused(e)))?;
    let parsed =
        population::parse(&bytes, state.clock.today()).map_err(|e| status::population_refused(&e))?;
    let persons = parsed.members.len() as u64;
    let detail = StepDetail::Population(parsed.members);
    let order = take_step(
        state,
        (&order_id, only_party),
        OrderStep::ReceivePopulation,
        (side, actor),
        &detail,
        &key,
    )
    .await?;
    Ok(pb::UploadPopulationResponse {
        persons,
        extra_columns: parsed.extra_columns,
        order: Some(order),
    })
}

/// Streams one file of an order's extract from `offset`, in chunks of the stored size. Only an
/// extract in `allowed` states is served.
pub async fn download(
    state: &AppState,
    request: &pb::DownloadExtractRequest,
    only_party: Option<&str>,
    allowed: &[OrderState],
) -> Result<ChunkStream, Status> {
    let order = order_for(state, (&request.order_id, only_party)).await?;
    if !allowed.contains(&order.state) {
        return Err(status::order_unavailable(OrderUnavailable::Extract {
            state: order.state.as_str(),
        }));
    }
    let (size, _) = state
        .store
        .extract_file(&order.order_id, &request.file_name)
        .await?
        .ok_or_else(|| status::order_unavailable(OrderUnavailable::File))?;
    if request.offset > size {
        return Err(FieldError::invalid(
            "offset",
            format!("offset is past the end of the file ({size} bytes)"),
        )
        .into());
    }
    let store = state.store.clone();
    let order_id = order.order_id;
    let name = request.file_name.clone();
    let chunk = FILE_CHUNK_BYTES as u64;
    let first = request.offset / chunk;
    let skip = (request.offset % chunk) as usize;
    let stream = futures::stream::unfold(Some(first), move |next| {
        let store = store.clone();
        let order_id = order_id.clone();
        let name = name.clone();
        async move {
            let n = next?;
            match store.extract_chunk(&order_id, &name, n).await {
                Ok(Some(mut data)) => {
                    let mut offset = n * chunk;
                    if n == first && skip > 0 {
                        data.drain(..skip.min(data.len()));
                        offset += skip as u64;
                    }
                    let message = pb::ExtractChunk {
                        offset,
                        data,
                        size_bytes: size,
                    };
                    Some((Ok(message), Some(n + 1)))
                }
                Ok(None) => None,
                Err(e) => Some((Err(Status::from(e)), None)),
            }
        }
    });
    Ok(Box::pin(stream))
}

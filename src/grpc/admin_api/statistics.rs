//! `lefi.admin.v1.StatisticsAdminService`: the statistics unit's side of statistics orders —
//! every agency step, the population received by post, the extract, the deletion after the
//! retention period. The confidentiality review is its own right, and never the quote's author's.

use time::Date;
use tonic::{Status, Streaming};

use crate::domain::disclosure::{Channel, Decision, NewDisclosure};
use crate::domain::statistics::extract::{order_range, person_rows};
use crate::domain::statistics::order::{OrderFacts, OrderState, OrderStep, Side, check_step};
use crate::domain::statistics::quote::{Price, price};
use crate::grpc::admin_api::AdminApi;
use crate::grpc::fields::{self, FieldError};
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::pb::lefi::admin::v1::{AdvanceOrderRequest, ProduceExtractRequest};
use crate::grpc::pb::lefi::v1 as lefi_pb;
use crate::grpc::pb::lefi::v1::{
    ExtractManifest, GetManifestRequest, GetOrderRequest, GetOrderResponse, StatisticsOrder,
};
use crate::grpc::statistics::{self as wire, ChunkStream};
use crate::grpc::status;
use crate::identity::OperatorPrincipal;
use crate::policy::operator::AdminRight;
use crate::store::statistics::{Order, OrderError, OrderFilter, Quote, Release, StepDetail};

/// A request as the unit's handlers get it: who asks, and what.
type Asked<R> = (OperatorPrincipal, R);

/// Free text fields: at most this many characters.
const MAX_TEXT: usize = 4_000;

pub use crate::domain::statistics::order::RETENTION_MONTHS;

/// The legal basis recorded for a statistics release (catalogue data; see migration 0011).
const STATISTICS_BASIS: &str = "STAT_INDIVIDUAL_DATA";

const DELIVER_RPC: &str = "/lefi.admin.v1.StatisticsAdminService/AdvanceOrder";

pub use crate::domain::statistics::calendar::months_after;

/// The price of `centihours` (from `least` to 10,000,000) at the rate in force `today`, free under
/// the order's special duty; `step` names the request field.
fn priced(step: &str, centihours: i64, least: i64, order: &Order, today: Date) -> Result<Price, FieldError> {
    if !(least..=10_000_000).contains(&centihours) {
        return Err(FieldError::invalid(
            format!("{step}.centihours"),
            format!("{step}.centihours must be {least} to 10,000,000 (hundredths of an hour)"),
        ));
    }
    price(centihours, today, order.order.special_duty).ok_or_else(|| {
        FieldError::invalid(
            step,
            "no hourly rate is in force today; the rate table needs a row",
        )
    })
}

/// An agency step of an AdvanceOrder request, with the right it needs.
fn agency_step(
    step: Option<pb::advance_order_request::Step>,
    order: &Order,
    operator: &OperatorPrincipal,
    today: Date,
) -> Result<(OrderStep, StepDetail, AdminRight), FieldError> {
    use pb::advance_order_request::Step;
    let text = |field: &str, value: &str, what: &str| fields::required_text(field, value, MAX_TEXT, what);
    let manage = AdminRight::ManageStatisticsOrders;
    let review = AdminRight::ReviewStatisticsOrders;
    Ok(match step {
        Some(Step::ConfirmReceipt(_)) => (OrderStep::ConfirmReceipt, StepDetail::None, manage),
        Some(Step::RequestCompletion(r)) => (
            OrderStep::RequestCompletion,
            StepDetail::Text(text(
                "request_completion.question",
                &r.question,
                "what is to be completed",
            )?),
            manage,
        ),
        Some(Step::DraftQuote(q)) => {
            let p = priced("draft_quote", q.centihours, 1, order, today)?;
            (
                OrderStep::DraftQuote,
                StepDetail::Quote(Quote {
                    drafted_by: operator.name.clone(),
                    specification: text(
                        "draft_quote.specification",
                        &q.specification,
                        "tables and variables, population, periods",
                    )?,
                    centihours: q.centihours,
                    net_ore: p.net_ore,
                    vat_ore: p.vat_ore,
                }),
                manage,
            )
        }
        Some(Step::Release(r)) => (
            OrderStep::Release,
            StepDetail::Decision(text(
                "release.conditions",
                &r.conditions,
                "the release's conditions",
            )?),
            review,
        ),
        Some(Step::Refuse(r)) => (
            OrderStep::Refuse,
            StepDetail::Decision(text("refuse.reasons", &r.reasons, "the refusal's reasons")?),
            review,
        ),
        Some(Step::Deliver(_)) => (
            OrderStep::Deliver,
            StepDetail::Delivered {
                on: today,
                retain_until: months_after(today, RETENTION_MONTHS),
                // Counted by `advance_order` when the order is ready to deliver.
                release: Release {
                    sequence: order.extracted_sequence,
                    entries: Vec::new(),
                },
            },
            manage,
        ),
        Some(Step::ExtendRetention(e)) => {
            let until = fields::date("extend_retention.retain_until", &e.retain_until)?;
            if order.retain_until.is_some_and(|current| until <= current) {
                return Err(FieldError::invalid(
                    "extend_retention.retain_until",
                    "extend_retention.retain_until must be after the current retention date",
                ));
            }
            (OrderStep::ExtendRetention, StepDetail::RetainUntil(until), manage)
        }
        Some(Step::RecordInvoice(i)) => {
            let p = priced("record_invoice", i.centihours, 0, order, today)?;
            (
                OrderStep::Invoice,
                StepDetail::Invoice { net_ore: p.net_ore },
                manage,
            )
        }
        None => {
            return Err(FieldError::invalid(
                "step",
                "step is required: confirm_receipt, request_completion, draft_quote, release, refuse, deliver, \
                 extend_retention or record_invoice",
            ));
        }
    })
}

impl AdminApi {
    /// A step's idempotency key (checked) and the order it concerns, of any party.
    async fn keyed_order<'k>(&self, key: &'k str, order_id: &str) -> Result<(&'k str, Order), Status> {
        let key = fields::idempotency_key(key)?;
        Ok((key, wire::order_for(&self.state, (order_id, None)).await?))
    }

    /// The release's disclosure-log entries: one per person of the population. The Deliver step
    /// writes them in the transaction that makes the files available (if the log cannot be
    /// written, nothing is delivered; a replayed or refused Deliver writes none).
    async fn release_entries(&self, order: &Order, operator: &OperatorPrincipal) -> Result<Release, Status> {
        let store = &self.state.store;
        let org_number = store
            .party_record(&order.party_id)
            .await?
            .map(|p| p.application.org_number.to_string());
        let population = store.order_population(&order.order_id).await?;
        let purpose = format!("{} (variables: {})", order.order.purpose, order.order.variables);
        let sequence = order.extracted_sequence.unwrap_or(0);
        let benefits = &order.order.benefit_types;
        let period = (order.order.period_from, order.order.period_to);
        let mut persons = Vec::with_capacity(population.len());
        for (_, stored) in &population {
            persons.push(crate::domain::Personnummer::from_storage(stored).map_err(|_| {
                Status::from(crate::store::StoreError::Corrupt("statistics_population.person"))
            })?);
        }
        // Each person's entry counts the rows about them in the delivered tables (episodes and
        // panels), read again as of the extract's sequence: the same rows the files hold.
        let mut entries = Vec::with_capacity(persons.len());
        for batch in persons.chunks(1_000) {
            let snapshots = store
                .released_snapshots(batch, benefits, order_range(period), sequence)
                .await?;
            for (person, (_, records)) in batch.iter().zip(snapshots) {
                let rows = person_rows(&records, benefits, period);
                entries.push(release_entry(
                    order,
                    operator,
                    person.clone(),
                    &purpose,
                    rows.episodes.len() + rows.panels.len(),
                    org_number.clone(),
                ));
            }
        }
        Ok(Release {
            sequence: order.extracted_sequence,
            entries,
        })
    }
}

/// The disclosure-log entry of one person of a released order: `rows` rows about them.
fn release_entry(
    order: &Order,
    operator: &OperatorPrincipal,
    person: crate::domain::Personnummer,
    purpose: &str,
    rows: usize,
    org_number: Option<String>,
) -> NewDisclosure {
    NewDisclosure {
        party_id: Some(order.party_id.clone()),
        party_org_number: org_number,
        system_identity: operator.fingerprint.clone(),
        operator_name: Some(operator.name.clone()),
        legal_basis: Some(STATISTICS_BASIS.to_string()),
        purpose: Some(purpose.to_string()),
        case_reference: Some(order.order_id.clone()),
        person: Some(person),
        benefit_types: order.order.benefit_types.clone(),
        period_from: Some(order.order.period_from),
        period_to: Some(order.order.period_to),
        record_count: rows as u64,
        to_sequence: order.extracted_sequence.unwrap_or(0),
        ..NewDisclosure::new(Channel::StatisticsRelease, Decision::Allowed, DELIVER_RPC)
    }
}

impl AdminApi {
    async fn list_orders(
        &self,
        (_, r): (OperatorPrincipal, pb::ListOrdersRequest),
    ) -> Result<lefi_pb::ListOrdersResponse, Status> {
        let filter = OrderFilter {
            party_id: fields::optional_text("party_id", &r.party_id, 64)?,
            states: wire::state_filter(&r.states)?,
            overdue_on: r.overdue_only.then_some(self.state.clock.today()),
            awaiting_invoice: r.awaiting_invoice_only,
        };
        wire::list_orders(&self.state, &filter).await
    }

    async fn get_order(&self, (_, r): Asked<GetOrderRequest>) -> Result<GetOrderResponse, Status> {
        wire::get_order(&self.state, (&r.order_id, None)).await
    }

    async fn advance_order(
        &self,
        (operator, r): Asked<AdvanceOrderRequest>,
    ) -> Result<StatisticsOrder, Status> {
        let (key, order) = self.keyed_order(&r.idempotency_key, &r.order_id).await?;
        let today = self.state.clock.today();
        let (step, mut detail, right) = agency_step(r.step, &order, &operator, today)?;
        crate::policy::operator::require(operator.role, right)?;
        if let StepDetail::Delivered { release, .. } = &mut detail
            && order.state == OrderState::Extracted
        {
            *release = self.release_entries(&order, &operator).await?;
        }
        let who = (Side::Agency, operator.name.as_str());
        wire::take_step(&self.state, (&order.order_id, None), step, who, &detail, key).await
    }

    async fn upload_population(
        &self,
        (operator, chunks): (OperatorPrincipal, Streaming<lefi_pb::UploadPopulationRequest>),
    ) -> Result<lefi_pb::UploadPopulationResponse, Status> {
        let upload = wire::read_upload(chunks).await?;
        wire::receive_population(&self.state, upload, None, (Side::Agency, &operator.name)).await
    }

    async fn produce_extract(
        &self,
        (operator, r): Asked<ProduceExtractRequest>,
    ) -> Result<ExtractManifest, Status> {
        let (key, order) = self.keyed_order(&r.idempotency_key, &r.order_id).await?;
        // Refused early (before the work) when the order is not ready; the store checks again.
        let facts = OrderFacts {
            quote_drafted_by: None,
            has_population: order.population_count > 0,
        };
        check_step(
            order.state,
            &facts,
            OrderStep::Extract,
            Side::Agency,
            &operator.name,
        )
        .map_err(|e| Status::from(OrderError::Refused(e)))?;
        let head = self.state.store.head_seq().await?;
        let sequence = match r.register_sequence {
            0 => head,
            s if s > head => {
                return Err(FieldError::invalid(
                    "register_sequence",
                    format!("register_sequence is above the register's head ({head}); use 0 for the head"),
                )
                .into());
            }
            s => s,
        };
        let dir =
            tempfile::tempdir().map_err(|e| status::internal("creating the extract's directory", &e))?;
        let now = self.state.clock.now_micros();
        let period = (order.order.period_from, order.order.period_to);
        let coverage = crate::extract::coverage_used(
            &self.state.store,
            &order.order.benefit_types,
            period,
            self.state.clock.today(),
        )
        .await?;
        let (files, manifest) = crate::extract::produce(
            &self.state.store,
            &order,
            sequence,
            dir.path(),
            (now, coverage),
            &|_, _| {},
        )
        .await
        .map_err(|e| match e {
            crate::extract::ExtractError::Store(e) => Status::from(e),
            other => status::internal("producing an extract", &other),
        })?;
        let json =
            serde_json::to_string(&manifest).map_err(|e| status::internal("writing a manifest", &e))?;
        self.state
            .store
            .order_step(
                &order.order_id,
                None,
                OrderStep::Extract,
                Side::Agency,
                &operator.name,
                &StepDetail::Extracted {
                    sequence,
                    files,
                    manifest: json,
                },
                Some(key),
                now,
            )
            .await?;
        // The stored manifest (an idempotent retry returns the first one).
        wire::get_manifest(&self.state, (&order.order_id, None)).await
    }

    async fn get_manifest(&self, (_, r): Asked<GetManifestRequest>) -> Result<ExtractManifest, Status> {
        wire::get_manifest(&self.state, (&r.order_id, None)).await
    }

    async fn download_extract(
        &self,
        (_, r): (OperatorPrincipal, lefi_pb::DownloadExtractRequest),
    ) -> Result<ChunkStream, Status> {
        // The unit checks the extract before delivery and hands it over after.
        let handed_over = [OrderState::Extracted, OrderState::Delivered];
        wire::download(&self.state, &r, None, &handed_over).await
    }

    async fn get_coverage(
        &self,
        (_, r): (OperatorPrincipal, pb::GetCoverageRequest),
    ) -> Result<pb::GetCoverageResponse, Status> {
        use crate::domain::statistics::coverage::MATURE_AFTER_MONTHS;
        let benefit = r.benefit_type;
        let known = self.state.store.benefit_types().await?;
        crate::grpc::fields::benefit_code("benefit_type", &benefit, |c| known.iter().any(|b| b.code == c))?;
        let coverage = wire::benefit_coverage(&self.state, &benefit).await?;
        Ok(pb::GetCoverageResponse {
            benefit_type: benefit,
            curve: coverage.curve.clone(),
            mature_months: u32::try_from(coverage.mature_months).unwrap_or(u32::MAX),
            months: coverage
                .recent
                .iter()
                .map(|m| pb::MonthCoverage {
                    month: m.month.to_string(),
                    age_months: m.age,
                    coverage: m.coverage,
                    orderable: m.orderable,
                })
                .collect(),
            mature_after_months: MATURE_AFTER_MONTHS,
        })
    }

    async fn purge_expired(
        &self,
        (operator, r): (OperatorPrincipal, pb::PurgeExpiredRequest),
    ) -> Result<pb::PurgeExpiredResponse, Status> {
        let store = &self.state.store;
        let orders = if r.dry_run {
            store.orders_past_retention(self.state.clock.today()).await?
        } else {
            store
                .purge_expired_orders(
                    self.state.clock.today(),
                    Side::Agency,
                    &operator.name,
                    self.state.clock.now_micros(),
                )
                .await?
        };
        Ok(pb::PurgeExpiredResponse {
            orders: orders
                .iter()
                .map(|o| pb::PurgedOrder {
                    order_id: o.order_id.clone(),
                    party_id: o.party_id.clone(),
                    retain_until: o
                        .deletion_due()
                        .map(crate::domain::clock::format_date)
                        .unwrap_or_default(),
                })
                .collect(),
        })
    }
}

crate::grpc::service! {
    impl pb::statistics_admin_service_server::StatisticsAdminService for AdminApi {
        list_orders(pb::ListOrdersRequest) -> lefi_pb::ListOrdersResponse: needs(AdminRight::ReadStatisticsOrders);
        get_order(lefi_pb::GetOrderRequest) -> lefi_pb::GetOrderResponse: needs(AdminRight::ReadStatisticsOrders);
        advance_order(pb::AdvanceOrderRequest) -> lefi_pb::StatisticsOrder:
            needs(AdminRight::ManageStatisticsOrders);
        upload_population(Streaming<lefi_pb::UploadPopulationRequest>) -> lefi_pb::UploadPopulationResponse:
            needs(AdminRight::ManageStatisticsOrders);
        produce_extract(pb::ProduceExtractRequest) -> lefi_pb::ExtractManifest:
            needs(AdminRight::ManageStatisticsOrders);
        get_manifest(lefi_pb::GetManifestRequest) -> lefi_pb::ExtractManifest:
            needs(AdminRight::ReadStatisticsOrders);
        download_extract(lefi_pb::DownloadExtractRequest) -> ChunkStream: needs(AdminRight::ManageStatisticsOrders);
        get_coverage(pb::GetCoverageRequest) -> pb::GetCoverageResponse: needs(AdminRight::ReadStatisticsOrders);
        purge_expired(pb::PurgeExpiredRequest) -> pb::PurgeExpiredResponse: needs(AdminRight::ManageStatisticsOrders);
    }
}

//! `lefi.v1.StatisticsOrderService`: the orderer's side of statistics orders (MiDAS). Every call
//! is checked against the party's agreement for the statistics basis; a party sees only its own
//! orders.

use tonic::{Request, Response, Status, Streaming};

use crate::domain::statistics::calendar::working_days_after;
use crate::domain::statistics::order::{OrderState, OrderStep, Side};
use crate::grpc::fields::{self, FieldError, FieldProblem};
use crate::grpc::party_api::PartyApi;
use crate::grpc::party_api::authorize::authorize_basis;
use crate::grpc::party_of;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::statistics::{self as wire, ChunkStream};
use crate::grpc::status;
use crate::identity::PartyPrincipal;
use crate::store::statistics::{NewOrder, OrderFilter, StepDetail};

/// The legal basis a statistics order rests on (catalogue data; see migration 0011).
pub const STATISTICS_BASIS: &str = "STAT_INDIVIDUAL_DATA";

/// Free text fields: at most this many characters.
const MAX_TEXT: usize = 4_000;

/// Working days the agency has to confirm receipt.
const RECEIPT_WORKING_DAYS: u32 = 2;

impl PartyApi {
    /// The calling party, if its agreement grants the statistics basis.
    async fn orderer<T>(&self, request: &Request<T>) -> Result<PartyPrincipal, Status> {
        let party = party_of(request)?;
        authorize_basis(&self.state, &party, STATISTICS_BASIS).await?;
        Ok(party)
    }

    async fn new_order(&self, r: pb::SubmitOrderRequest) -> Result<NewOrder, Status> {
        let text = |field: &str, value: &str, what: &str| fields::required_text(field, value, MAX_TEXT, what);
        let period = r.period.ok_or_else(|| {
            FieldError::invalid("period", "period is required: the months the data is to cover")
        })?;
        let period_from = fields::date("period.from", &period.from)?;
        let period_to = fields::date("period.to", &period.to)?;
        if period_to < period_from {
            return Err(FieldError::invalid("period.to", "period.to is before period.from").into());
        }
        if r.benefit_type_codes.is_empty() {
            return Err(FieldError::invalid(
                "benefit_type_codes",
                "benefit_type_codes is required: name at least one benefit (ListBenefitTypes)",
            )
            .into());
        }
        let known = self.state.store.benefit_types().await?;
        for (i, code) in r.benefit_type_codes.iter().enumerate() {
            if !known.iter().any(|b| &b.code == code) {
                return Err(FieldError::new(
                    FieldProblem::UnknownBenefitType { code: code.clone() },
                    format!("benefit_type_codes[{i}]"),
                    "unknown benefit type code; see ListBenefitTypes",
                )
                .into());
            }
        }
        let wished_delivery = match r.wished_delivery.trim() {
            "" => None,
            d => Some(fields::date("wished_delivery", d)?),
        };
        Ok(NewOrder {
            order_reference: fields::required_text(
                "order_reference",
                &r.order_reference,
                128,
                "your own reference for the order",
            )?,
            project: text("project", &r.project, "the project's name")?,
            purpose: text("purpose", &r.purpose, "the statistical purpose")?,
            legal_ground: text(
                "legal_ground",
                &r.legal_ground,
                "the exception or duty the order relies on",
            )?,
            population_description: text(
                "population_description",
                &r.population_description,
                "who the population is",
            )?,
            benefit_types: r.benefit_type_codes,
            variables: text("variables", &r.variables, "the wished variables")?,
            period_from,
            period_to,
            wished_delivery,
            contact_name: text("contact_name", &r.contact_name, "who to contact")?,
            contact_email: text("contact_email", &r.contact_email, "the contact's e-mail address")?,
            special_duty: r.special_duty,
        })
    }
}

/// The orderer's step of an AdvanceOrder request.
fn orderer_step(
    step: Option<pb::advance_order_request::Step>,
) -> Result<(OrderStep, StepDetail), FieldError> {
    use pb::advance_order_request::Step;
    let text =
        |field: &str, value: &str| fields::required_text(field, value, MAX_TEXT, "the text of the step");
    Ok(match step {
        Some(Step::Supplement(s)) => (
            OrderStep::Supplement,
            StepDetail::Text(text("supplement.text", &s.text)?),
        ),
        Some(Step::AgreeContent(_)) => (OrderStep::AgreeContent, StepDetail::None),
        Some(Step::AcceptQuote(_)) => (OrderStep::AcceptQuote, StepDetail::None),
        Some(Step::Withdraw(w)) => (
            OrderStep::Withdraw,
            StepDetail::Text(text("withdraw.reason", &w.reason)?),
        ),
        None => {
            return Err(FieldError::invalid(
                "step",
                "step is required: supplement, agree_content, accept_quote or withdraw",
            ));
        }
    })
}

#[tonic::async_trait]
impl pb::statistics_order_service_server::StatisticsOrderService for PartyApi {
    async fn submit_order(
        &self,
        request: Request<pb::SubmitOrderRequest>,
    ) -> Result<Response<pb::StatisticsOrder>, Status> {
        let party = self.orderer(&request).await?;
        let order = self.new_order(request.into_inner()).await?;
        let today = self.state.clock.today();
        wire::check_coverage(&self.state, &order.benefit_types, order.period_to).await?;
        let (stored, _new) = self
            .state
            .store
            .submit_order(
                &party.party_id,
                &order,
                working_days_after(today, RECEIPT_WORKING_DAYS),
                self.state.clock.now_micros(),
            )
            .await?;
        if stored.order != order {
            return Err(status::order_reference_reused());
        }
        Ok(Response::new(wire::order_message(&stored, today)))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let party = self.orderer(&request).await?;
        let answer = wire::get_order(&self.state, &request.get_ref().order_id, Some(&party.party_id)).await?;
        Ok(Response::new(answer))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let party = self.orderer(&request).await?;
        let filter = OrderFilter {
            party_id: Some(party.party_id.clone()),
            states: wire::state_filter(&request.get_ref().states)?,
            overdue_on: None,
        };
        let today = self.state.clock.today();
        let orders = self.state.store.orders(&filter).await?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: orders.iter().map(|o| wire::order_message(o, today)).collect(),
        }))
    }

    async fn advance_order(
        &self,
        request: Request<pb::AdvanceOrderRequest>,
    ) -> Result<Response<pb::StatisticsOrder>, Status> {
        let party = self.orderer(&request).await?;
        let r = request.into_inner();
        let key = wire::idempotency_key(&r.idempotency_key)?;
        let (step, detail) = orderer_step(r.step)?;
        let order = self
            .state
            .store
            .order_step(
                &r.order_id,
                Some(&party.party_id),
                step,
                Side::Orderer,
                &party.party_id,
                &detail,
                Some(&key),
                self.state.clock.now_micros(),
            )
            .await?;
        Ok(Response::new(wire::order_message(
            &order,
            self.state.clock.today(),
        )))
    }

    async fn upload_population(
        &self,
        request: Request<Streaming<pb::UploadPopulationRequest>>,
    ) -> Result<Response<pb::UploadPopulationResponse>, Status> {
        let party = self.orderer(&request).await?;
        let upload = wire::read_upload(request.into_inner()).await?;
        let answer = wire::receive_population(
            &self.state,
            upload,
            Some(&party.party_id),
            (Side::Orderer, &party.party_id),
        )
        .await?;
        Ok(Response::new(answer))
    }

    async fn get_manifest(
        &self,
        request: Request<pb::GetManifestRequest>,
    ) -> Result<Response<pb::ExtractManifest>, Status> {
        let party = self.orderer(&request).await?;
        let manifest =
            wire::get_manifest(&self.state, &request.get_ref().order_id, Some(&party.party_id)).await?;
        Ok(Response::new(manifest))
    }

    async fn download_extract(
        &self,
        request: Request<pb::DownloadExtractRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let party = self.orderer(&request).await?;
        // The orderer downloads what was delivered, until its deletion.
        let stream = wire::download(
            &self.state,
            request.get_ref(),
            Some(&party.party_id),
            &[OrderState::Delivered],
        )
        .await?;
        Ok(Response::new(stream))
    }
}

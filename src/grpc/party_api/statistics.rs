//! `lefi.v1.StatisticsOrderService`: the orderer's side of statistics orders (MiDAS). Every call
//! is checked against the party's agreement for the statistics basis; a party sees only its own
//! orders.

use tonic::{Status, Streaming};

use crate::domain::statistics::calendar::working_days_after;
use crate::domain::statistics::order::{OrderState, OrderStep, Side};
use crate::grpc::fields::{self, FieldError};
use crate::grpc::party_api::PartyApi;
use crate::grpc::party_api::authorize::authorize_basis;
use crate::grpc::pb::lefi::v1 as pb;
use crate::grpc::pb::lefi::v1::{
    AdvanceOrderRequest, DownloadExtractRequest, ExtractManifest, GetManifestRequest, GetOrderRequest,
    GetOrderResponse, ListOrdersRequest, ListOrdersResponse, StatisticsOrder, SubmitOrderRequest,
};
use crate::grpc::statistics::{self as wire, ChunkStream};
use crate::grpc::status;
use crate::identity::PartyPrincipal;
use crate::store::statistics::{NewOrder, OrderFilter, StepDetail};

/// A request as the orderer's handlers get it: which party asks, and what.
type Asked<R> = (PartyPrincipal, R);

/// The legal basis a statistics order rests on (catalogue data; see migration 0011).
pub const STATISTICS_BASIS: &str = "STAT_INDIVIDUAL_DATA";

/// Free text fields: at most this many characters.
const MAX_TEXT: usize = 4_000;

/// Working days the agency has to confirm receipt.
const RECEIPT_WORKING_DAYS: u32 = 2;

impl PartyApi {
    /// Refuses a party whose agreement does not grant the statistics basis.
    async fn orderer(&self, party: &PartyPrincipal) -> Result<(), Status> {
        authorize_basis(&self.state, party, STATISTICS_BASIS).await?;
        Ok(())
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
        fields::benefit_codes("benefit_type_codes", &r.benefit_type_codes, |c| {
            known.iter().any(|b| b.code == c)
        })?;
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

impl PartyApi {
    async fn submit_order(&self, (party, r): Asked<SubmitOrderRequest>) -> Result<StatisticsOrder, Status> {
        self.orderer(&party).await?;
        let order = self.new_order(r).await?;
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
        Ok(wire::order_message(&stored, today))
    }

    async fn get_order(&self, (party, r): Asked<GetOrderRequest>) -> Result<GetOrderResponse, Status> {
        self.orderer(&party).await?;
        wire::get_order(&self.state, (&r.order_id, Some(&party.party_id))).await
    }

    async fn list_orders(&self, (party, r): Asked<ListOrdersRequest>) -> Result<ListOrdersResponse, Status> {
        self.orderer(&party).await?;
        let filter = OrderFilter {
            party_id: Some(party.party_id.clone()),
            states: wire::state_filter(&r.states)?,
            ..OrderFilter::default()
        };
        wire::list_orders(&self.state, &filter).await
    }

    async fn advance_order(&self, (party, r): Asked<AdvanceOrderRequest>) -> Result<StatisticsOrder, Status> {
        self.orderer(&party).await?;
        let key = fields::idempotency_key(&r.idempotency_key)?;
        let (step, detail) = orderer_step(r.step)?;
        let who = (Side::Orderer, party.party_id.as_str());
        let order = wire::take_step(
            &self.state,
            (&r.order_id, Some(&party.party_id)),
            step,
            who,
            &detail,
            key,
        )
        .await?;
        Ok(order)
    }

    async fn upload_population(
        &self,
        (party, chunks): (PartyPrincipal, Streaming<pb::UploadPopulationRequest>),
    ) -> Result<pb::UploadPopulationResponse, Status> {
        self.orderer(&party).await?;
        let upload = wire::read_upload(chunks).await?;
        let who = (Side::Orderer, party.party_id.as_str());
        wire::receive_population(&self.state, upload, Some(&party.party_id), who).await
    }

    async fn get_manifest(&self, (party, r): Asked<GetManifestRequest>) -> Result<ExtractManifest, Status> {
        self.orderer(&party).await?;
        wire::get_manifest(&self.state, (&r.order_id, Some(&party.party_id))).await
    }

    async fn download_extract(
        &self,
        (party, r): Asked<DownloadExtractRequest>,
    ) -> Result<ChunkStream, Status> {
        self.orderer(&party).await?;
        // The orderer downloads what was delivered, until its deletion.
        wire::download(&self.state, &r, Some(&party.party_id), &[OrderState::Delivered]).await
    }
}

crate::grpc::service! {
    impl pb::statistics_order_service_server::StatisticsOrderService for PartyApi {
        submit_order(pb::SubmitOrderRequest) -> pb::StatisticsOrder: party;
        get_order(pb::GetOrderRequest) -> pb::GetOrderResponse: party;
        list_orders(pb::ListOrdersRequest) -> pb::ListOrdersResponse: party;
        advance_order(pb::AdvanceOrderRequest) -> pb::StatisticsOrder: party;
        upload_population(Streaming<pb::UploadPopulationRequest>) -> pb::UploadPopulationResponse: party;
        get_manifest(pb::GetManifestRequest) -> pb::ExtractManifest: party;
        download_extract(pb::DownloadExtractRequest) -> ChunkStream: party;
    }
}

//! `lefi orders …` (the orderer, over lefi.v1.StatisticsOrderService on the party API) and
//! `lefi admin orders …` (the statistics unit, over lefi.admin.v1.StatisticsAdminService):
//! statistics orders (MiDAS), from submission to the deletion of the delivered files.
//!
//! Both sides print like the other client commands ([`super::output`]: readable text and tables,
//! or one protobuf-JSON object a line with `--json`) and fail through [`super::failure`]. Every
//! step sends an idempotency key, a new UUID v7 unless `--idempotency-key` is given; a
//! submission's key is its order reference. The calls both services offer with the same messages
//! (show, manifest, upload, download) go through one [`Api`]; `transfer` holds the population
//! upload and the download, `coverage` the coverage report and its plot, `view` the printing.

mod coverage;
mod transfer;
mod view;

use std::process::ExitCode;

use tonic::transport::Channel;
use tonic::{Response, Status, Streaming};
use tonic_types::StatusExt as _;

use super::client::run_keyed;
use super::output::{print_each, print_json, print_message};
use crate::cli::{AdminOrdersCommand, IdempotencyArgs, OrdersArgs, OrdersCommand};
use crate::domain::statistics::order::OrderState;
use crate::grpc::pb::ErrorReason;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

type PartyClient = pb::statistics_order_service_client::StatisticsOrderServiceClient<Channel>;
type AdminClient = admin_pb::statistics_admin_service_client::StatisticsAdminServiceClient<Channel>;

/// The service a command reaches: the orderer's on the party API or the statistics unit's on the
/// admin API. They share the messages of the order, its manifest and its files.
#[derive(Debug, Clone)]
enum Api {
    Orderer(PartyClient),
    Unit(AdminClient),
}

/// Whose next step a command's answer suggests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Orderer,
    Unit,
}

/// Calls a method on whichever client an [`Api`] holds (both take the same messages).
macro_rules! either {
    ($api:expr, $method:ident($request:expr)) => {
        match $api {
            Api::Orderer(c) => c.$method($request).await,
            Api::Unit(c) => c.$method($request).await,
        }
    };
}

impl Api {
    fn side(&self) -> Side {
        match self {
            Api::Orderer(_) => Side::Orderer,
            Api::Unit(_) => Side::Unit,
        }
    }

    async fn get_order(&mut self, order_id: &str) -> Result<pb::GetOrderResponse, Status> {
        let request = pb::GetOrderRequest {
            order_id: order_id.to_string(),
        };
        Ok(either!(self, get_order(request))?.into_inner())
    }

    async fn get_manifest(&mut self, order_id: &str) -> Result<pb::ExtractManifest, Status> {
        let request = pb::GetManifestRequest {
            order_id: order_id.to_string(),
        };
        Ok(either!(self, get_manifest(request))?.into_inner())
    }

    async fn upload_population(
        &mut self,
        chunks: tokio_stream::wrappers::ReceiverStream<pb::UploadPopulationRequest>,
    ) -> Result<Response<pb::UploadPopulationResponse>, Status> {
        either!(self, upload_population(chunks))
    }

    async fn download_extract(
        &mut self,
        request: pb::DownloadExtractRequest,
    ) -> Result<Response<Streaming<pb::ExtractChunk>>, Status> {
        either!(self, download_extract(request))
    }
}

/// `lefi orders …`
pub async fn run_orders(args: OrdersArgs) -> ExitCode {
    let key = orders_idempotency_key(&args.command);
    let json = args.connect.json;
    let work = |channel| orders(channel, &args.command, json, key.as_deref().unwrap_or_default());
    let server = ("https://localhost:50051", "insurer");
    run_keyed(
        &args.connect,
        server,
        key.as_deref(),
        work,
        |status, mut failure| {
            let reason = status
                .get_details_error_info()
                .and_then(|info| ErrorReason::from_str_name(&info.reason));
            if matches!(
                reason,
                Some(ErrorReason::BasisNotForPartyKind | ErrorReason::BasisNotInAgreement)
            ) {
                failure = failure.hint(
                    "statistics orders are placed by a state authority whose agreement grants the legal \
                 basis STAT_INDIVIDUAL_DATA: pass its certificate with --cert and --key"
                        .to_string(),
                );
            }
            if matches!(args.command, OrdersCommand::Submit(_)) && super::admin::outcome_unknown(status) {
                failure = failure.hint(
                    "the order may or may not have been submitted: run the same command again \
                 (its --reference makes it safe: an order is submitted at most once)"
                        .to_string(),
                );
            }
            failure
        },
    )
    .await
}

/// The key of a mutating orderer command: the one given, or a new UUID v7. `None` for reads and
/// for the submission (its order reference is its key).
fn orders_idempotency_key(command: &OrdersCommand) -> Option<String> {
    let given = match command {
        OrdersCommand::Supplement { key, .. }
        | OrdersCommand::Agree { key, .. }
        | OrdersCommand::Accept { key, .. }
        | OrdersCommand::Withdraw { key, .. } => key,
        OrdersCommand::Upload(args) => &args.key,
        OrdersCommand::Submit(_)
        | OrdersCommand::List(_)
        | OrdersCommand::Show(_)
        | OrdersCommand::Manifest(_)
        | OrdersCommand::Download(_) => return None,
    };
    Some(key_or_new(given))
}

/// The key of a mutating `lefi admin orders` command (see [`orders_idempotency_key`]); `purge`
/// needs none (deleting what has expired twice deletes nothing more).
pub(super) fn idempotency_key(command: &AdminOrdersCommand) -> Option<String> {
    use AdminOrdersCommand as C;
    let given = match command {
        C::Confirm { key, .. }
        | C::Ask { key, .. }
        | C::Quote { key, .. }
        | C::Release { key, .. }
        | C::Refuse { key, .. }
        | C::Extract { key, .. }
        | C::Deliver { key, .. }
        | C::Extend { key, .. }
        | C::Invoice { key, .. } => key,
        C::Upload(args) => &args.key,
        C::List { .. }
        | C::Show(_)
        | C::Manifest(_)
        | C::Download(_)
        | C::Purge { .. }
        | C::Coverage { .. } => return None,
    };
    Some(key_or_new(given))
}

fn key_or_new(given: &IdempotencyArgs) -> String {
    given
        .idempotency_key
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

fn states(args: &[OrderState]) -> Vec<i32> {
    args.iter()
        .map(|s| crate::grpc::statistics::state_message(*s) as i32)
        .collect()
}

/// The orderer's commands.
async fn orders(channel: Channel, command: &OrdersCommand, json: bool, key: &str) -> anyhow::Result<()> {
    use pb::advance_order_request::{self as p, Step};
    let mut client = PartyClient::new(channel);
    let step = |order: &str, step: Step| pb::AdvanceOrderRequest {
        order_id: order.to_string(),
        idempotency_key: key.to_string(),
        step: Some(step),
    };
    let order = match command {
        OrdersCommand::Submit(a) => {
            let request = pb::SubmitOrderRequest {
                order_reference: a.reference.clone(),
                project: a.project.clone(),
                purpose: a.purpose.clone(),
                legal_ground: a.legal_ground.clone(),
                population_description: a.population.clone(),
                benefit_type_codes: a.benefits.clone(),
                variables: a.variables.clone(),
                period: Some(pb::DateRange {
                    from: a.from.clone(),
                    to: a.to.clone(),
                }),
                wished_delivery: a.wished_delivery.clone().unwrap_or_default(),
                contact_name: a.contact_name.clone(),
                contact_email: a.contact_email.clone(),
                special_duty: a.special_duty,
            };
            client.submit_order(request).await?.into_inner()
        }
        OrdersCommand::List(a) => {
            let request = pb::ListOrdersRequest {
                states: states(&a.state),
            };
            let orders = client.list_orders(request).await?.into_inner().orders;
            return list(&orders, false, json);
        }
        OrdersCommand::Show(o) => return show(Api::Orderer(client), &o.order_id, json).await,
        OrdersCommand::Supplement { order, text, .. } => {
            let request = step(
                &order.order_id,
                Step::Supplement(p::Supplement { text: text.clone() }),
            );
            client.advance_order(request).await?.into_inner()
        }
        OrdersCommand::Agree { order, .. } => {
            let request = step(&order.order_id, Step::AgreeContent(p::AgreeContent {}));
            client.advance_order(request).await?.into_inner()
        }
        OrdersCommand::Accept { order, .. } => {
            let request = step(&order.order_id, Step::AcceptQuote(p::AcceptQuote {}));
            client.advance_order(request).await?.into_inner()
        }
        OrdersCommand::Withdraw { order, reason, .. } => {
            let request = step(
                &order.order_id,
                Step::Withdraw(p::Withdraw {
                    reason: reason.clone(),
                }),
            );
            client.advance_order(request).await?.into_inner()
        }
        OrdersCommand::Upload(a) => {
            return transfer::upload(Api::Orderer(client), &a.order.order_id, &a.file, key, json).await;
        }
        OrdersCommand::Manifest(o) => return manifest(Api::Orderer(client), &o.order_id, json).await,
        OrdersCommand::Download(a) => {
            return transfer::download(Api::Orderer(client), &a.order.order_id, &a.dir, json).await;
        }
    };
    order_result(&order, Side::Orderer, json)
}

/// `lefi admin orders …`: the statistics unit's commands.
pub(super) async fn admin(
    channel: Channel,
    command: &AdminOrdersCommand,
    json: bool,
    key: &str,
) -> anyhow::Result<()> {
    use AdminOrdersCommand as C;
    use admin_pb::advance_order_request::{self as a, Step};
    let mut client = AdminClient::new(channel);
    let step = |order: &str, step: Step| admin_pb::AdvanceOrderRequest {
        order_id: order.to_string(),
        idempotency_key: key.to_string(),
        step: Some(step),
    };
    let request = match command {
        C::List {
            states: filter,
            party,
            overdue,
            awaiting_invoice,
        } => {
            let request = admin_pb::ListOrdersRequest {
                states: states(&filter.state),
                party_id: party.clone().unwrap_or_default(),
                overdue_only: *overdue,
                awaiting_invoice_only: *awaiting_invoice,
            };
            let orders = client.list_orders(request).await?.into_inner().orders;
            return list(&orders, true, json);
        }
        C::Show(o) => return show(Api::Unit(client), &o.order_id, json).await,
        C::Manifest(o) => return manifest(Api::Unit(client), &o.order_id, json).await,
        C::Upload(u) => {
            return transfer::upload(Api::Unit(client), &u.order.order_id, &u.file, key, json).await;
        }
        C::Download(d) => {
            return transfer::download(Api::Unit(client), &d.order.order_id, &d.dir, json).await;
        }
        C::Extract { order, sequence, .. } => {
            return transfer::extract(&mut client, &order.order_id, sequence.unwrap_or(0), key, json).await;
        }
        C::Purge { dry_run } => return purge(&mut client, *dry_run, json).await,
        C::Coverage { benefit, svg } => {
            return coverage::run(&mut client, benefit, svg.as_deref(), json).await;
        }
        C::Confirm { order, .. } => step(&order.order_id, Step::ConfirmReceipt(a::ConfirmReceipt {})),
        C::Ask { order, question, .. } => step(
            &order.order_id,
            Step::RequestCompletion(a::RequestCompletion {
                question: question.clone(),
            }),
        ),
        C::Quote {
            order, hours, spec, ..
        } => step(
            &order.order_id,
            Step::DraftQuote(a::DraftQuote {
                specification: spec.clone(),
                centihours: *hours,
            }),
        ),
        C::Release {
            order, conditions, ..
        } => step(
            &order.order_id,
            Step::Release(a::Release {
                conditions: conditions.clone(),
            }),
        ),
        C::Refuse { order, reasons, .. } => step(
            &order.order_id,
            Step::Refuse(a::Refuse {
                reasons: reasons.clone(),
            }),
        ),
        C::Deliver { order, .. } => step(&order.order_id, Step::Deliver(a::Deliver {})),
        C::Extend { order, until, .. } => step(
            &order.order_id,
            Step::ExtendRetention(a::ExtendRetention {
                retain_until: until.clone(),
            }),
        ),
        C::Invoice { order, hours, .. } => step(
            &order.order_id,
            Step::RecordInvoice(a::RecordInvoice { centihours: *hours }),
        ),
    };
    let order = client.advance_order(request).await?.into_inner();
    order_result(&order, Side::Unit, json)
}

/// Prints the order a step returned, and what comes next.
fn order_result(order: &pb::StatisticsOrder, side: Side, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(order);
    }
    view::print_order(order);
    if let Some(next) = view::next_step(order, side) {
        println!();
        println!("next: {next}");
    }
    Ok(())
}

fn list(orders: &[pb::StatisticsOrder], with_party: bool, json: bool) -> anyhow::Result<()> {
    if !json {
        view::print_list_header(with_party);
    }
    print_each(json, orders, |o| {
        view::print_list_row(o, with_party);
    })?;
    if !json {
        match orders.len() {
            1 => println!("(1 order)"),
            n => println!("({n} orders)"),
        }
    }
    Ok(())
}

/// `show`: the order, its history, and what comes next.
async fn show(mut api: Api, order_id: &str, json: bool) -> anyhow::Result<()> {
    let side = api.side();
    let shown = api.get_order(order_id).await?;
    print_message(json, &shown, |shown| {
        let Some(order) = &shown.order else {
            anyhow::bail!("the server's response holds no order");
        };
        view::print_order(order);
        println!();
        view::print_history(&shown.history);
        if let Some(next) = view::next_step(order, side) {
            println!();
            println!("next: {next}");
        }
        Ok(())
    })
}

async fn manifest(mut api: Api, order_id: &str, json: bool) -> anyhow::Result<()> {
    let manifest = api.get_manifest(order_id).await?;
    print_message(json, &manifest, |manifest| {
        view::print_manifest(manifest);
        Ok(())
    })
}

/// `purge [--dry-run]`.
async fn purge(client: &mut AdminClient, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let purged = client
        .purge_expired(admin_pb::PurgeExpiredRequest { dry_run })
        .await?
        .into_inner();
    print_message(json, &purged, |purged| {
        let n = purged.orders.len();
        if n == 0 {
            println!("no delivered order is past its retention date: nothing to delete");
            return Ok(());
        }
        println!("{:<40} {:<40} RETAIN UNTIL", "ORDER ID", "PARTY");
        for o in &purged.orders {
            println!("{:<40} {:<40} {}", o.order_id, o.party_id, o.retain_until);
        }
        println!();
        if dry_run {
            println!(
                "dry run: the files and population of these {n} orders would be deleted; nothing was \
                 deleted (run without --dry-run to delete them)"
            );
        } else {
            println!("deleted the files and population of {n} orders; their manifests and histories remain");
        }
        Ok(())
    })
}

//! `lefi client …` (party API), and the connection helpers `lefi admin …` and `lefi ingest` share.
//! Output goes through [`super::output`], failures through [`super::failure`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tonic::transport::Channel;

use super::failure::{Failure, finish, with_request_id};
use super::output::{instant, print_each, print_json, print_json_as, print_message, truncate, yes_no};
use super::stream::StreamOptions;
use crate::cli::{ClientArgs, ClientCommand, ConnectArgs, QueryArgs, RegisterCommand};
use crate::client::{ClientError, ClientPem};
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

/// `lefi client …`
pub async fn run_client(args: ClientArgs) -> ExitCode {
    let stem = args.as_party.clone().unwrap_or_else(|| "insurer".to_string());
    let json = args.connect.json;
    let target = match target(&args.connect, "https://localhost:50051", &stem) {
        Ok(target) => target,
        Err(e) => return finish(Err(e.into()), None, json).await,
    };
    let result = client_command(&target, &args.command, json).await;
    finish(result, Some(&target), json).await
}

/// Connects as `connect` says (else to `default_addr` with `certs-dev/STEM.pem`) and runs `work`
/// on the channel; a failure comes back explained (for the caller to add hints and print).
pub(super) async fn against<T, Fut>(
    connect: &ConnectArgs,
    default_addr: &str,
    default_stem: &str,
    work: impl FnOnce(Channel) -> Fut,
) -> Result<T, (anyhow::Error, Failure)>
where
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let target = match target(connect, default_addr, default_stem) {
        Ok(target) => target,
        Err(e) => {
            let e = anyhow::Error::from(e);
            let failure = Failure::explain(&e, None).await;
            return Err((e, failure));
        }
    };
    let result = async { work(target.connect().await?).await }.await;
    match result {
        Ok(value) => Ok(value),
        Err(e) => {
            let failure = Failure::explain(&e, Some(&target)).await;
            Err((e, failure))
        }
    }
}

/// Runs a command that may change something, as [`against`], and prints its failure: when the
/// answer was lost on the way (the outcome is unknown) and the command has an idempotency `key`,
/// the failure says to retry with it; `hint` adds the command's own advice for a status.
pub(super) async fn run_keyed<Fut>(
    connect: &ConnectArgs,
    (default_addr, default_stem): (&str, &str),
    key: Option<&str>,
    work: impl FnOnce(Channel) -> Fut,
    hint: impl FnOnce(&tonic::Status, Failure) -> Failure,
) -> ExitCode
where
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let (e, mut failure) = match against(connect, default_addr, default_stem, work).await {
        Ok(()) => return ExitCode::SUCCESS,
        Err(failed) => failed,
    };
    if let Some(status) = e.downcast_ref::<tonic::Status>() {
        if let Some(key) = key.filter(|_| super::admin::outcome_unknown(status)) {
            failure = failure.hint(format!(
                "the change may or may not have been made: run the same command again with \
                 --idempotency-key {key} (it is applied at most once)"
            ));
        }
        failure = hint(status, failure);
    }
    failure.print(connect.json);
    ExitCode::FAILURE
}

/// The server, certificate, key and CA a command connects with: the flags, else the defaults
/// (`certs-dev/STEM.pem`, the key next to the certificate, `certs-dev/ca.pem`). The files are
/// read and checked here, before anything connects.
pub(super) fn target(
    connect_args: &ConnectArgs,
    default_addr: &str,
    default_stem: &str,
) -> Result<Target, ClientError> {
    let certs = Path::new("certs-dev");
    let cert = connect_args
        .cert
        .clone()
        .unwrap_or_else(|| certs.join(format!("{default_stem}.pem")));
    let key = connect_args.key.clone().unwrap_or_else(|| key_next_to(&cert));
    let ca = connect_args.ca.clone().unwrap_or_else(|| certs.join("ca.pem"));
    let pem = ClientPem::read(&cert, &key, &ca)?;
    let addr = connect_args
        .addr
        .clone()
        .unwrap_or_else(|| default_addr.to_string());
    crate::client::server_uri(&addr)?;
    Ok(Target {
        addr,
        pem,
        server_name: connect_args.server_name.clone(),
    })
}

/// Where a command connects: kept beside the channel so that a failure can be explained by a
/// second look ([`crate::client::probe`]).
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub addr: String,
    pub pem: ClientPem,
    pub server_name: Option<String>,
}

impl Target {
    /// Opens the channel (TCP and TLS).
    pub(super) async fn connect(&self) -> Result<Channel, ClientError> {
        crate::client::connect(&self.addr, &self.pem, self.server_name.as_deref()).await
    }

    /// A channel that connects at its first call (and again after the connection drops).
    pub(super) fn lazy(&self) -> Result<Channel, ClientError> {
        Ok(crate::client::endpoint(&self.addr, &self.pem, self.server_name.as_deref())?.connect_lazy())
    }
}

fn key_next_to(cert: &Path) -> PathBuf {
    cert.with_extension("key")
}

async fn client_command(target: &Target, command: &ClientCommand, json: bool) -> anyhow::Result<()> {
    if let ClientCommand::Stream {
        cursor_file,
        max_events,
        heartbeat,
        follow,
    } = command
    {
        let options =
            StreamOptions::parse(cursor_file.as_deref(), *max_events, heartbeat.as_deref(), *follow)?;
        return super::stream::run(target, &options).await;
    }
    if let ClientCommand::Pull {
        cursor_file,
        max_events,
        wait,
        follow,
    } = command
    {
        return super::stream::pull(
            target,
            cursor_file.as_deref(),
            *max_events,
            wait.as_deref(),
            *follow,
        )
        .await;
    }
    let channel = target.connect().await?;
    match command {
        ClientCommand::Health => health(channel, json).await,
        ClientCommand::Whoami => {
            let me = pb::party_service_client::PartyServiceClient::new(channel)
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner();
            print_message(json, &me, |me| {
                let kind = pb::PartyKind::try_from(me.kind).unwrap_or_default().as_str_name();
                let state = pb::PartyState::try_from(me.state)
                    .unwrap_or_default()
                    .as_str_name();
                let agreement = pb::AgreementType::try_from(me.agreement_type)
                    .unwrap_or_default()
                    .as_str_name();
                println!("party         {} ({})", me.name, me.org_number);
                println!("party id      {}", me.party_id);
                println!("kind          {kind}");
                println!("state         {state}");
                println!(
                    "agreement     {agreement} {} (valid from {})",
                    me.agreement_id, me.agreement_valid_from
                );
                println!("legal bases   {}", me.granted_basis_codes.join(", "));
                println!("benefits      {}", me.granted_benefit_type_codes.join(", "));
                let expires = instant(me.certificate_not_after).unwrap_or_default();
                println!("certificate   {} (expires {expires})", me.certificate_fingerprint);
                if !me.termination_effective_date.is_empty() {
                    println!("terminates    {}", me.termination_effective_date);
                }
                Ok(())
            })
        }
        ClientCommand::Bases => {
            let bases = pb::party_service_client::PartyServiceClient::new(channel)
                .list_legal_bases(pb::ListLegalBasesRequest {
                    granted_only: false,
                    include_not_in_force: true,
                })
                .await?
                .into_inner()
                .legal_bases;
            if !json {
                println!(
                    "{:<27} {:<8} {:<9} {:<24} {:<42} STATUTE",
                    "CODE", "CONSENT", "OPEN CASE", "VALID", "PURPOSE"
                );
            }
            print_each(json, &bases, |b| {
                let valid = format!("{}..{}", b.valid_from, b.valid_to);
                println!(
                    "{:<27} {:<8} {:<9} {:<24} {:<42} {}",
                    b.code,
                    yes_no(b.requires_consent),
                    yes_no(b.requires_open_case),
                    valid,
                    truncate(&b.purpose, 42),
                    b.statute_reference
                );
            })
        }
        ClientCommand::BenefitTypes => {
            let types = pb::party_service_client::PartyServiceClient::new(channel)
                .list_benefit_types(pb::ListBenefitTypesRequest { granted_only: false })
                .await?
                .into_inner()
                .benefit_types;
            if !json {
                println!("{:<5} {:<7} NAME", "CODE", "AGENCY");
            }
            print_each(json, &types, |t| {
                println!(
                    "{:<5} {:<7} {} — {}",
                    t.code, t.paying_agency, t.name_sv, t.name_en
                );
            })
        }
        // Handled above: the stream connects (and reconnects) by itself.
        ClientCommand::Stream { .. } | ClientCommand::Pull { .. } => Ok(()),
        ClientCommand::Query(args) => query(channel, args, json).await,
        ClientCommand::Subscribe(args) => super::orders::subscribe(channel, args, json).await,
        ClientCommand::Subscriptions { person } => {
            super::orders::subscriptions(channel, person.as_deref(), json).await
        }
        ClientCommand::Cancel { subscription_id } => {
            super::orders::cancel(channel, subscription_id, json).await
        }
        ClientCommand::Refresh { subscriptions } => {
            super::orders::refresh(channel, subscriptions, json).await
        }
        ClientCommand::Consent { command } => super::orders::consent(channel, command, json).await,
        ClientCommand::CloseCase {
            case_reference,
            reason,
        } => super::orders::close_case(channel, case_reference, reason, json).await,
    }
}

async fn query(channel: Channel, args: &QueryArgs, json: bool) -> anyhow::Result<()> {
    let response = pb::query_service_client::QueryServiceClient::new(channel)
        .query_person(pb::QueryPersonRequest {
            person_id: args.target.person.clone(),
            benefit_type_codes: args.target.benefits.clone(),
            period: Some(pb::DateRange {
                from: args.from.clone(),
                to: args.to.clone().unwrap_or_default(),
            }),
            legal_basis: args.ground.basis.clone(),
            case_reference: args.ground.case_reference.clone().unwrap_or_default(),
            consent_id: args.ground.consent_id.clone().unwrap_or_default(),
            as_of_sequence: args.reproduce.unwrap_or(0),
        })
        .await?;
    let headers = response.metadata().clone();
    let mut answer = response.into_inner();
    let mut records = Vec::new();
    let mut header = None;
    while let Some(message) = answer
        .message()
        .await
        .map_err(|status| with_request_id(status, &headers))?
    {
        if json {
            print_json(&message)?;
        }
        match message.content {
            Some(pb::query_person_response::Content::Header(h)) => header = Some(h),
            Some(pb::query_person_response::Content::Records(batch)) => records.extend(batch.records),
            None => {}
        }
    }
    if json {
        return Ok(());
    }
    let header = header.ok_or_else(|| anyhow::anyhow!("the answer had no header"))?;
    if let Some(person) = &header.person {
        print_person(person);
    }
    println!(
        "as of        register sequence {} ({} records)",
        header.as_of_sequence, header.record_count
    );
    if let Some(at) = super::output::instant(header.reproduces_answer_at) {
        println!("reproduces   the answer your party was given at {at}");
    }
    println!();
    print_records(records.iter().map(|r| (r, "")));
    Ok(())
}

fn print_person(person: &pb::Person) {
    let kind = pb::PersonIdKind::try_from(person.id_kind)
        .unwrap_or_default()
        .as_str_name();
    // The number the caller asked about, shown as YYYYMMDD-NNNC.
    let id = &person.person_id;
    let shown = match (id.get(..8), id.get(8..)) {
        (Some(date), Some(rest)) if id.len() == 12 => format!("{date}-{rest}"),
        _ => id.clone(),
    };
    println!("person       {shown} ({kind})");
    if person.protected_identity {
        println!("name         (protected identity: not disclosed to parties)");
        if !person.name.is_empty() {
            println!("             {}", person.name);
        }
    } else {
        println!("name         {}", person.name);
    }
    if !person.date_of_death.is_empty() {
        println!("died         {}", person.date_of_death);
    }
}

/// Öre as kronor, e.g. 1234567 → "12345.67".
fn kronor(ore: i64) -> String {
    let sign = if ore < 0 { "-" } else { "" };
    let abs = ore.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn describe_fact(r: &pb::BenefitRecord) -> String {
    use pb::benefit_record::Fact;
    match &r.fact {
        Some(Fact::Case(c)) => format!(
            "case {} {} opened {}{}",
            c.case_id,
            pb::BenefitCaseStatus::try_from(c.status)
                .unwrap_or_default()
                .as_str_name(),
            c.opened,
            if c.closed.is_empty() {
                String::new()
            } else {
                format!(" closed {}", c.closed)
            }
        ),
        Some(Fact::CompensationPeriod(p)) => format!(
            "period {}..{} {} {} SEK/day",
            p.from,
            p.to,
            pb::CompensationExtent::try_from(p.extent)
                .unwrap_or_default()
                .as_str_name(),
            kronor(p.daily_amount_ore)
        ),
        Some(Fact::Decision(d)) => format!(
            "decision {} from {} (decided {})",
            pb::DecisionKind::try_from(d.kind)
                .unwrap_or_default()
                .as_str_name(),
            d.effective_from,
            d.decided_on
        ),
        Some(Fact::Payment(p)) => format!(
            "payment {} gross {} tax {} SEK{}",
            p.payment_date,
            kronor(p.gross_ore),
            kronor(p.tax_ore),
            if p.preliminary { " (preliminary)" } else { "" }
        ),
        Some(Fact::PersonEvent(e)) => format!(
            "event {} {}",
            pb::PersonEventKind::try_from(e.kind)
                .unwrap_or_default()
                .as_str_name(),
            e.event_date
        ),
        None => String::new(),
    }
}

fn print_records<'a>(records: impl Iterator<Item = (&'a pb::BenefitRecord, &'a str)>) {
    println!(
        "{:>8} {:<22} {:>3} {:<10} {:<5} {:<23} {:<30} FACT",
        "SEQ", "RECORD", "V", "KIND", "TYPE", "VALID", "SOURCE"
    );
    for (r, source) in records {
        let kind = pb::RecordKind::try_from(r.kind).unwrap_or_default().as_str_name();
        let valid = r
            .valid
            .as_ref()
            .map(|v| format!("{}..{}", v.from, v.to))
            .unwrap_or_default();
        println!(
            "{:>8} {:<22} {:>3} {:<10} {:<5} {:<23} {:<30} {}{}",
            r.register_sequence,
            r.record_id,
            r.version,
            kind,
            r.benefit_type,
            valid,
            truncate(source, 30),
            describe_fact(r),
            if r.retroactive { " [retroactive]" } else { "" }
        );
    }
}

pub(super) async fn register(channel: Channel, command: &RegisterCommand, json: bool) -> anyhow::Result<()> {
    let mut client = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(channel)
        .max_decoding_message_size(64 * 1024 * 1024);
    match command {
        RegisterCommand::Show { person, as_of } => {
            let view = client
                .show_person(admin_pb::ShowPersonRequest {
                    person_id: person.clone(),
                    as_of_sequence: as_of.unwrap_or(0),
                })
                .await?
                .into_inner();
            print_message(json, &view, |view| {
                if let Some(p) = &view.person {
                    print_person(p);
                }
                println!("as of        register sequence {}", view.as_of_sequence);
                println!();
                println!("person data versions:");
                for v in &view.person_versions {
                    let p = v.person.clone().unwrap_or_default();
                    println!(
                        "{:>8} {} v{} name '{}'{}{}",
                        v.register_sequence,
                        v.source_system,
                        v.source_version,
                        p.name,
                        if p.protected_identity { " protected" } else { "" },
                        if p.date_of_death.is_empty() {
                            String::new()
                        } else {
                            format!(" died {}", p.date_of_death)
                        }
                    );
                }
                println!();
                println!("facts ({} versions):", view.facts.len());
                let sources: Vec<String> = view
                    .facts
                    .iter()
                    .map(|f| format!("{}:{} v{}", f.source_system, f.source_id, f.source_version))
                    .collect();
                print_records(
                    view.facts
                        .iter()
                        .zip(&sources)
                        .filter_map(|(f, s)| f.record.as_ref().map(|r| (r, s.as_str()))),
                );
                Ok(())
            })
        }
        RegisterCommand::Stats => {
            let stats = client.get_stats(admin_pb::GetStatsRequest {}).await?.into_inner();
            print_message(json, &stats, |stats| {
                let recorded = instant(stats.latest_recorded_at).unwrap_or_else(|| "-".to_string());
                println!("persons             {}", stats.person_count);
                println!("facts               {}", stats.fact_count);
                println!("fact versions       {}", stats.fact_version_count);
                println!(
                    "latest sequence     {} (recorded {recorded})",
                    stats.latest_sequence
                );
                println!("accepted last min   {}", stats.accepted_last_minute);
                println!("accepted last hour  {}", stats.accepted_last_hour);
                Ok(())
            })
        }
    }
}

pub(super) async fn health(channel: Channel, json: bool) -> anyhow::Result<()> {
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    let status =
        tonic_health::pb::health_check_response::ServingStatus::try_from(response.status).unwrap_or_default();
    if json {
        print_json_as(&response, "grpc.health.v1.HealthCheckResponse")?;
    } else {
        println!("{}", status.as_str_name());
    }
    // A probe can rely on the exit code.
    if status != tonic_health::pb::health_check_response::ServingStatus::Serving {
        anyhow::bail!(
            "the server is not ready ({}): its database does not answer, or it is shutting down",
            status.as_str_name()
        );
    }
    Ok(())
}

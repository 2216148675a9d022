//! `lefi client …` (party API), and the connection and output helpers `lefi admin …` shares.
//!
//! Output is a readable table by default and one JSON object per line with `--json` (the
//! protobuf JSON mapping, so scripts see the same field names as the proto files).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use tonic::transport::Channel;

use crate::cli::{ClientArgs, ClientCommand, ConnectArgs};
use crate::client::{ClientPem, connect};
use crate::grpc::pb::lefi::v1 as pb;

/// `lefi client …`
pub async fn run_client(args: ClientArgs) -> ExitCode {
    let stem = args.as_party.clone().unwrap_or_else(|| "insurer".to_string());
    let result = async {
        let channel = open(&args.connect, "https://localhost:50051", &stem).await?;
        client_command(channel, &args.command, args.connect.json).await
    }
    .await;
    report(result)
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {}", describe_status(status)),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// A status as a person reads it: code, reason, the server's advice and the error's details
/// (e.g. `current_state`, `field`).
pub fn describe_status(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let reason = crate::grpc::status::reason_of(status).unwrap_or_else(|| "no reason given".to_string());
    let mut details: Vec<String> = status
        .get_details_error_info()
        .map(|info| {
            info.metadata
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect()
        })
        .unwrap_or_default();
    details.sort();
    let details = if details.is_empty() {
        String::new()
    } else {
        format!("\n  details: {}", details.join(", "))
    };
    let hint = match status.code() {
        tonic::Code::Unavailable if reason == "no reason given" => {
            "\n  hint: is the server running, and is --addr right? Start one with `lefi serve --dev`."
        }
        tonic::Code::Unimplemented => "\n  hint: this server does not offer that call yet.",
        _ => "",
    };
    format!(
        "{:?} ({reason}): {}{details}{hint}",
        status.code(),
        status.message()
    )
}

pub(super) async fn open(
    connect_args: &ConnectArgs,
    default_addr: &str,
    default_stem: &str,
) -> anyhow::Result<Channel> {
    let certs = Path::new("certs-dev");
    let cert = connect_args
        .cert
        .clone()
        .unwrap_or_else(|| certs.join(format!("{default_stem}.pem")));
    let key = connect_args.key.clone().unwrap_or_else(|| key_next_to(&cert));
    let ca = connect_args.ca.clone().unwrap_or_else(|| certs.join("ca.pem"));
    let pem = ClientPem::read(&cert, &key, &ca).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n  hint: pass --cert/--key/--ca, or run `lefi serve --dev` once to create certs-dev/"
        )
    })?;
    let addr = connect_args
        .addr
        .clone()
        .unwrap_or_else(|| default_addr.to_string());
    Ok(connect(&addr, &pem, connect_args.server_name.as_deref()).await?)
}

fn key_next_to(cert: &Path) -> PathBuf {
    cert.with_extension("key")
}

async fn client_command(channel: Channel, command: &ClientCommand, json: bool) -> anyhow::Result<()> {
    match command {
        ClientCommand::Health => health(channel).await,
        ClientCommand::Whoami => {
            let me = pb::party_service_client::PartyServiceClient::new(channel)
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner();
            if json {
                print_json(&me, "lefi.v1.WhoAmIResponse")?;
            } else {
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
                let expires = me
                    .certificate_not_after
                    .map(|t| {
                        crate::domain::clock::format_instant(crate::domain::clock::from_micros(
                            t.seconds.saturating_mul(1_000_000),
                        ))
                    })
                    .unwrap_or_default();
                println!("certificate   {} (expires {expires})", me.certificate_fingerprint);
                if !me.termination_effective_date.is_empty() {
                    println!("terminates    {}", me.termination_effective_date);
                }
            }
            Ok(())
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
            if json {
                for b in &bases {
                    print_json(b, "lefi.v1.LegalBasis")?;
                }
            } else {
                println!(
                    "{:<27} {:<8} {:<9} {:<24} {:<42} STATUTE",
                    "CODE", "CONSENT", "OPEN CASE", "VALID", "PURPOSE"
                );
                for b in &bases {
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
                }
            }
            Ok(())
        }
        ClientCommand::BenefitTypes => {
            let types = pb::party_service_client::PartyServiceClient::new(channel)
                .list_benefit_types(pb::ListBenefitTypesRequest { granted_only: false })
                .await?
                .into_inner()
                .benefit_types;
            if json {
                for t in &types {
                    print_json(t, "lefi.v1.BenefitType")?;
                }
            } else {
                println!("{:<5} {:<7} NAME", "CODE", "AGENCY");
                for t in &types {
                    println!(
                        "{:<5} {:<7} {} — {}",
                        t.code, t.paying_agency, t.name_sv, t.name_en
                    );
                }
            }
            Ok(())
        }
        ClientCommand::Stream {
            cursor_file,
            max_events,
            heartbeat,
        } => stream(channel, cursor_file.as_deref(), *max_events, heartbeat.as_deref()).await,
    }
}

async fn stream(
    channel: Channel,
    cursor_file: Option<&Path>,
    max_events: Option<u64>,
    heartbeat: Option<&str>,
) -> anyhow::Result<()> {
    let cursor = match cursor_file {
        Some(path) if path.exists() => std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read --cursor-file '{}': {e}", path.display()))?
            .trim()
            .to_string(),
        _ => String::new(),
    };
    let heartbeat_interval = match heartbeat {
        Some(text) => {
            let d =
                humantime::parse_duration(text).map_err(|e| anyhow::anyhow!("--heartbeat '{text}': {e}"))?;
            Some(prost_types::Duration::try_from(d).map_err(|e| anyhow::anyhow!("--heartbeat: {e}"))?)
        }
        None => None,
    };
    let mut events = pb::delivery_service_client::DeliveryServiceClient::new(channel)
        .stream(pb::StreamRequest {
            cursor,
            max_batch_records: 0,
            heartbeat_interval,
        })
        .await?
        .into_inner();
    let mut seen = 0u64;
    while let Some(event) = events.message().await? {
        print_json(&event, "lefi.v1.StreamEvent")?;
        if let Some(path) = cursor_file {
            if !event.cursor.is_empty() {
                write_atomically(path, &event.cursor)?;
            }
        }
        seen += 1;
        if max_events.is_some_and(|max| seen >= max) {
            break;
        }
    }
    Ok(())
}

/// Replaces `path` with `contents` so that a crash leaves either the old or the new cursor.
fn write_atomically(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(|e| anyhow::anyhow!("cannot write '{}': {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("cannot replace '{}': {e}", path.display()))?;
    Ok(())
}

pub(super) async fn health(channel: Channel) -> anyhow::Result<()> {
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    let status = tonic_health::pb::health_check_response::ServingStatus::try_from(response.status)
        .unwrap_or_default()
        .as_str_name();
    println!("{status}");
    Ok(())
}

fn descriptors() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::grpc::pb::FILE_DESCRIPTOR_SET).ok())
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the embedded protobuf descriptors do not decode"))
}

/// Prints `message` as one line of protobuf JSON.
pub(super) fn print_json<M: Message>(message: &M, full_name: &str) -> anyhow::Result<()> {
    let descriptor = descriptors()?
        .get_message_by_name(full_name)
        .ok_or_else(|| anyhow::anyhow!("no descriptor for {full_name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    println!("{}", serde_json::to_string(&dynamic)?);
    Ok(())
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

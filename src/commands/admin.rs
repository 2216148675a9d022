//! `lefi admin …`: the operator CLI over the admin API.
//!
//! Output is a readable table by default and one JSON object per line with `--json` (the protobuf
//! JSON mapping, so scripts see the field names of the proto files). Every mutating command sends
//! an idempotency key, a new UUID unless `--idempotency-key` is given; when the outcome of a call is
//! unknown (the connection broke), the key is printed so the same command can be retried safely.

use std::process::ExitCode;

use tonic::transport::Channel;

use super::client::{health, run_keyed};
use super::output::{print_each, print_message};
use crate::cli::{
    AdminArgs, AdminCommand, ApplyArgs, ConnectPartyArgs, ListArgs, PartyKindArg, RevokeCertArgs,
    SendAgreementArgs, SignArgs, SignerArg, TerminateArgs, WithdrawTerminationArgs,
};
use crate::domain::clock::{Clock, format_date};
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::pb::lefi::v1 as common;

type Client = pb::party_admin_service_client::PartyAdminServiceClient<Channel>;

/// `lefi admin …`
pub async fn run(args: AdminArgs) -> ExitCode {
    if let AdminCommand::Sandbox { command } = &args.command {
        return super::sandbox::run(&args.connect, command).await;
    }
    let key = idempotency_key(&args.command);
    let json = args.connect.json;
    let work = |channel| command(channel, &args.command, json, key.as_deref().unwrap_or_default());
    let server = ("https://localhost:50052", "operator");
    run_keyed(&args.connect, server, key.as_deref(), work, |_, failure| failure).await
}

/// The idempotency key of a mutating command: the one given, or a new UUID. `None` for reads.
fn idempotency_key(command: &AdminCommand) -> Option<String> {
    let given = match command {
        AdminCommand::Apply(a) => &a.key,
        AdminCommand::SendAgreement(a) => &a.key,
        AdminCommand::Sign(a) => &a.key,
        AdminCommand::Connect(a) => &a.key,
        AdminCommand::RevokeCert(a) => &a.key,
        AdminCommand::Terminate(a) => &a.key,
        AdminCommand::WithdrawTermination(a) => &a.key,
        AdminCommand::Limits(a) => &a.key,
        AdminCommand::Orders { command } => return super::statistics::idempotency_key(command),
        AdminCommand::Health
        | AdminCommand::Whoami
        | AdminCommand::Show { .. }
        | AdminCommand::List(_)
        | AdminCommand::History { .. }
        | AdminCommand::Consumers { .. }
        | AdminCommand::Crls { .. }
        | AdminCommand::Subscriptions { .. }
        | AdminCommand::Register { .. }
        | AdminCommand::Sandbox { .. }
        | AdminCommand::Audit { .. } => return None,
    };
    Some(
        given
            .idempotency_key
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
    )
}

/// Whether a failed call may still have made its change (so retrying with the same key matters).
pub(super) fn outcome_unknown(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Internal
            | Code::Aborted
    )
}

async fn command(channel: Channel, command: &AdminCommand, json: bool, key: &str) -> anyhow::Result<()> {
    let mut client = Client::new(channel.clone());
    // The onboarding steps answer with the party as it now stands; the rest print their own.
    let party = match command {
        AdminCommand::Apply(args) => apply(&mut client, args, key).await?,
        AdminCommand::SendAgreement(args) => send_agreement(&mut client, args, key).await?,
        AdminCommand::Sign(args) => sign(&mut client, args, key).await?,
        AdminCommand::Terminate(args) => terminate(&mut client, args, key).await?,
        AdminCommand::WithdrawTermination(args) => withdraw_termination(&mut client, args, key).await?,
        AdminCommand::Health => return health(channel, json).await,
        AdminCommand::Whoami => return whoami(channel, json).await,
        AdminCommand::Register { command } => return super::client::register(channel, command, json).await,
        AdminCommand::Audit { command } => return super::orders::audit(channel, command, json).await,
        AdminCommand::Orders { command } => {
            return super::statistics::admin(channel, command, json, key).await;
        }
        AdminCommand::Connect(args) => return connect(&mut client, args, json, key).await,
        AdminCommand::RevokeCert(args) => return revoke_certificate(&mut client, args, json, key).await,
        AdminCommand::Show { party } => return show(&mut client, party, json).await,
        AdminCommand::List(args) => return list(&mut client, args, json).await,
        AdminCommand::History { party } => return history(&mut client, party, json).await,
        AdminCommand::Consumers { party_id } => {
            return super::operations::consumers(channel, party_id.as_deref(), json).await;
        }
        AdminCommand::Subscriptions { command } => {
            return super::operations::agency_subscriptions(channel, command, json).await;
        }
        AdminCommand::Crls { reload } => return super::operations::crls(channel, *reload, json).await,
        AdminCommand::Limits(args) => return super::operations::limits(&mut client, args, json, key).await,
        // Played on connections of its own (`run` dispatches it before this).
        AdminCommand::Sandbox { .. } => anyhow::bail!("lefi admin sandbox is run by commands::sandbox"),
    };
    print_party_result(party, json)
}

/// `lefi admin show`.
async fn show(client: &mut Client, party: &str, json: bool) -> anyhow::Result<()> {
    let party = client.get_party(get_party_request(party)).await?.into_inner();
    print_message(json, &party, |party| {
        print_party(party);
        Ok(())
    })
}

/// `lefi admin connect`: registers a certificate for the party.
async fn connect(client: &mut Client, args: &ConnectPartyArgs, json: bool, key: &str) -> anyhow::Result<()> {
    let pem = std::fs::read_to_string(&args.cert_file).map_err(|e| {
        anyhow::anyhow!(
            "cannot read --cert-file '{}': {e}\n  hint: issue one with `lefi dev-certs issue-party`",
            args.cert_file.display()
        )
    })?;
    let response = client
        .add_certificate(pb::AddCertificateRequest {
            idempotency_key: key.to_string(),
            party_id: args.party.party_id.clone(),
            certificate_pem: pem,
        })
        .await?
        .into_inner();
    print_message(json, &response, |response| {
        if let Some(cert) = &response.certificate {
            print_certificates(std::slice::from_ref(cert));
        }
        let state = state_name(response.party_state);
        println!();
        println!("party state   {state}");
        if state == "CONNECTED" || state == "TERMINATION_SCHEDULED" {
            println!(
                "the party can now call the party API with this certificate (lefi.v1.PartyService/WhoAmI)"
            );
        }
        Ok(())
    })
}

/// `lefi admin revoke-cert`.
async fn revoke_certificate(
    client: &mut Client,
    args: &RevokeCertArgs,
    json: bool,
    key: &str,
) -> anyhow::Result<()> {
    let response = client
        .revoke_certificate(pb::RevokeCertificateRequest {
            idempotency_key: key.to_string(),
            party_id: args.party.party_id.clone(),
            fingerprint: args.fingerprint.clone(),
            reason: args.reason.clone(),
        })
        .await?
        .into_inner();
    print_message(json, &response, |response| {
        if let Some(cert) = &response.certificate {
            print_certificates(std::slice::from_ref(cert));
        }
        println!();
        println!("calls and open streams with this certificate are refused from now on");
        Ok(())
    })
}

async fn whoami(channel: Channel, json: bool) -> anyhow::Result<()> {
    let me = pb::operator_service_client::OperatorServiceClient::new(channel)
        .who_am_i(pb::WhoAmIRequest {})
        .await?
        .into_inner();
    print_message(json, &me, |me| {
        let role = pb::OperatorRole::try_from(me.role)
            .unwrap_or_default()
            .as_str_name();
        println!("operator      {}", me.name);
        println!("role          {role}");
        println!("certificate   {}", me.certificate_fingerprint);
        Ok(())
    })
}

fn kind(k: PartyKindArg) -> common::PartyKind {
    match k {
        PartyKindArg::Insurer => common::PartyKind::Insurer,
        PartyKindArg::StateAuthority => common::PartyKind::StateAuthority,
        PartyKindArg::MunicipalAuthority => common::PartyKind::MunicipalAuthority,
    }
}

/// `lefi admin apply`.
async fn apply(client: &mut Client, args: &ApplyArgs, key: &str) -> anyhow::Result<Option<pb::Party>> {
    let request = pb::ApplyRequest {
        idempotency_key: key.to_string(),
        org_number: args.org_number.clone(),
        name: args.name.clone(),
        kind: kind(args.kind) as i32,
        contact_name: args.contact_name.clone(),
        contact_email: args.contact_email.clone(),
        requested_basis_codes: args.bases.clone(),
        requested_benefit_type_codes: args.benefits.clone(),
    };
    Ok(client.apply(request).await?.into_inner().party)
}

/// `lefi admin send-agreement`.
async fn send_agreement(
    client: &mut Client,
    args: &SendAgreementArgs,
    key: &str,
) -> anyhow::Result<Option<pb::Party>> {
    let request = pb::SendAgreementRequest {
        idempotency_key: key.to_string(),
        party_id: args.party.party_id.clone(),
        agreement_id: args.agreement_id.clone(),
        granted_basis_codes: args.bases.clone(),
        granted_benefit_type_codes: args.benefits.clone(),
        valid_from: args.valid_from.clone(),
        notice_period_days: args.notice_days,
    };
    Ok(client.send_agreement(request).await?.into_inner().party)
}

/// `lefi admin sign`.
async fn sign(client: &mut Client, args: &SignArgs, key: &str) -> anyhow::Result<Option<pb::Party>> {
    let request = pb::RecordSignatureRequest {
        idempotency_key: key.to_string(),
        party_id: args.party.party_id.clone(),
        signer: match args.signer {
            SignerArg::Party => pb::Signer::Party,
            SignerArg::Agency => pb::Signer::Agency,
        } as i32,
        signed_by: args.signed_by.clone(),
        signed_on: args
            .signed_on
            .clone()
            .unwrap_or_else(|| format_date(Clock::system().today())),
    };
    Ok(client.record_signature(request).await?.into_inner().party)
}

/// `lefi admin terminate`.
async fn terminate(
    client: &mut Client,
    args: &TerminateArgs,
    key: &str,
) -> anyhow::Result<Option<pb::Party>> {
    let request = pb::ScheduleTerminationRequest {
        idempotency_key: key.to_string(),
        party_id: args.party.party_id.clone(),
        // Running `terminate` is the operator's statement that the notice is a termination.
        is_termination: true,
        org_number: args.org_number.clone(),
        organisation_name: args.name.clone(),
        effective_date: args.effective_date.clone(),
        notice_received_on: args.notice_received_on.clone().unwrap_or_default(),
        override_reason: args.override_reason.clone().unwrap_or_default(),
    };
    Ok(client.schedule_termination(request).await?.into_inner().party)
}

/// `lefi admin withdraw-termination`.
async fn withdraw_termination(
    client: &mut Client,
    args: &WithdrawTerminationArgs,
    key: &str,
) -> anyhow::Result<Option<pb::Party>> {
    let request = pb::WithdrawTerminationRequest {
        idempotency_key: key.to_string(),
        party_id: args.party.party_id.clone(),
        reason: args.reason.clone(),
    };
    Ok(client.withdraw_termination(request).await?.into_inner().party)
}

/// A party is named by its id (`pty_…`) or, failing that, by an organisation number.
fn get_party_request(party: &str) -> pb::GetPartyRequest {
    let party = party.trim();
    let key = if crate::domain::OrgNumber::parse(party).is_ok() {
        pb::get_party_request::Key::OrgNumber(party.to_string())
    } else {
        pb::get_party_request::Key::PartyId(party.to_string())
    };
    pb::GetPartyRequest { key: Some(key) }
}

async fn list(client: &mut Client, args: &ListArgs, json: bool) -> anyhow::Result<()> {
    let mut request = pb::ListPartiesRequest {
        page_size: args.page_size,
        page_token: String::new(),
        kinds: args.kind.iter().map(|k| kind(*k) as i32).collect(),
        states: args
            .state
            .iter()
            .map(|s| crate::grpc::convert::party_state(*s) as i32)
            .collect(),
    };
    if !json {
        println!(
            "{:<36} {:<11} {:<19} {:<21} NAME",
            "PARTY ID", "ORG NUMBER", "KIND", "STATE"
        );
    }
    let mut count = 0usize;
    loop {
        let page = client.list_parties(request.clone()).await?.into_inner();
        count += page.parties.len();
        print_each(json, &page.parties, |p| {
            println!(
                "{:<36} {:<11} {:<19} {:<21} {}",
                p.party_id,
                p.org_number,
                kind_name(p.kind),
                state_name(p.state),
                p.name
            );
        })?;
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    if !json {
        println!("({count} parties)");
    }
    Ok(())
}

async fn history(client: &mut Client, party: &str, json: bool) -> anyhow::Result<()> {
    let party_id = if crate::domain::OrgNumber::parse(party.trim()).is_ok() {
        client
            .get_party(get_party_request(party))
            .await?
            .into_inner()
            .party_id
    } else {
        party.trim().to_string()
    };
    let mut request = pb::ListPartyHistoryRequest {
        party_id,
        page_size: 0,
        page_token: String::new(),
    };
    if !json {
        println!(
            "{:<6} {:<20} {:<24} {:<45} {:<20} DETAILS",
            "ENTRY", "TIME (UTC)", "ACTION", "STATE", "OPERATOR"
        );
    }
    loop {
        let page = client.list_party_history(request.clone()).await?.into_inner();
        print_each(json, &page.entries, print_history_entry)?;
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    Ok(())
}

fn print_history_entry(e: &pb::AuditEntry) {
    let action = pb::PartyAction::try_from(e.action)
        .unwrap_or_default()
        .as_str_name();
    let before = match common::PartyState::try_from(e.before_state) {
        Ok(common::PartyState::Unspecified) | Err(_) => "-",
        Ok(s) => s.as_str_name(),
    };
    let change = format!("{before} → {}", state_name(e.after_state));
    let operator = if e.operator_name.is_empty() {
        "(server)"
    } else {
        e.operator_name.as_str()
    };
    println!(
        "{:<6} {:<20} {:<24} {:<45} {:<20} {}",
        e.entry_id,
        time(e.time.as_ref()),
        action,
        change,
        operator,
        e.details_json
    );
}

fn kind_name(k: i32) -> &'static str {
    common::PartyKind::try_from(k).unwrap_or_default().as_str_name()
}

fn state_name(s: i32) -> &'static str {
    common::PartyState::try_from(s).unwrap_or_default().as_str_name()
}

/// A timestamp as `YYYY-MM-DD HH:MM:SS` (UTC), or `-`.
fn time(t: Option<&prost_types::Timestamp>) -> String {
    let Some(t) = t else {
        return "-".to_string();
    };
    time::OffsetDateTime::from_unix_timestamp(t.seconds)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_else(|| "-".to_string())
}

/// Prints the party a mutating command returned, and what to do next.
fn print_party_result(party: Option<pb::Party>, json: bool) -> anyhow::Result<()> {
    let Some(party) = party else {
        anyhow::bail!("the server's response holds no party");
    };
    print_message(json, &party, |party| {
        print_party(party);
        if let Some(next) = next_step(party) {
            println!();
            println!("next: {next}");
        }
        Ok(())
    })
}

/// The onboarding step that follows the party's state, as a command line.
fn next_step(p: &pb::Party) -> Option<String> {
    let id = &p.party_id;
    match common::PartyState::try_from(p.state).ok()? {
        common::PartyState::Applied => {
            let notice = if p.kind == common::PartyKind::Insurer as i32 {
                " --notice-days 90"
            } else {
                ""
            };
            Some(format!(
                "lefi admin send-agreement --party-id {id} --agreement-id <DOCUMENT ID> --basis {} --benefit {} \
                 --valid-from <YYYY-MM-DD>{notice}",
                or_placeholder(&p.requested_basis_codes, "<BASIS>"),
                or_placeholder(&p.requested_benefit_type_codes, "<BENEFIT>"),
            ))
        }
        common::PartyState::AgreementSent => {
            let signed: Vec<i32> = p.signatures.iter().map(|s| s.signer).collect();
            let signer = if signed.contains(&(pb::Signer::Party as i32)) {
                "agency"
            } else {
                "party"
            };
            Some(format!(
                "lefi admin sign --party-id {id} --signer {signer} --signed-by <NAME>"
            ))
        }
        common::PartyState::Signed => Some(format!(
            "issue the party a certificate (development: lefi dev-certs issue-party --org-number {} --name \"{}\"), \
             then: lefi admin connect --party-id {id} --cert-file <PEM>",
            p.org_number, p.name
        )),
        common::PartyState::TerminationScheduled => Some(format!(
            "the party works until {}; to undo: lefi admin withdraw-termination --party-id {id} --reason <WHY>",
            p.termination
                .as_ref()
                .map(|t| t.effective_date.as_str())
                .unwrap_or("its effective date")
        )),
        _ => None,
    }
}

fn or_placeholder(codes: &[String], placeholder: &str) -> String {
    if codes.is_empty() {
        placeholder.to_string()
    } else {
        codes.join(",")
    }
}

fn print_party(p: &pb::Party) {
    println!("party         {} ({})", p.name, p.org_number);
    println!("party id      {}", p.party_id);
    println!("kind          {}", kind_name(p.kind));
    println!("state         {}", state_name(p.state));
    println!("contact       {} <{}>", p.contact_name, p.contact_email);
    println!(
        "applied for   bases {}; benefits {}",
        list_or_none(&p.requested_basis_codes),
        list_or_none(&p.requested_benefit_type_codes)
    );
    println!("applied at    {}", time(p.applied_at.as_ref()));
    match &p.agreement {
        Some(a) => {
            let kind = common::AgreementType::try_from(a.agreement_type)
                .unwrap_or_default()
                .as_str_name();
            let notice = if a.notice_period_days > 0 {
                format!(", notice period {} days", a.notice_period_days)
            } else {
                String::new()
            };
            println!(
                "agreement     {kind} {} valid from {}{notice} (sent {})",
                a.agreement_id,
                a.valid_from,
                time(a.sent_at.as_ref())
            );
            println!(
                "  grants      bases {}; benefits {}",
                list_or_none(&a.granted_basis_codes),
                list_or_none(&a.granted_benefit_type_codes)
            );
        }
        None => println!("agreement     (not sent)"),
    }
    if p.signatures.is_empty() {
        println!("signatures    (none)");
    }
    for (i, s) in p.signatures.iter().enumerate() {
        let label = if i == 0 { "signatures" } else { "" };
        let signer = pb::Signer::try_from(s.signer).unwrap_or_default().as_str_name();
        println!(
            "{label:<13} {signer:<6} {} on {} (recorded by {} at {})",
            s.signed_by,
            s.signed_on,
            if s.recorded_by.is_empty() {
                "-"
            } else {
                &s.recorded_by
            },
            time(s.recorded_at.as_ref())
        );
    }
    if p.certificates.is_empty() {
        println!("certificates  (none)");
    } else {
        println!("certificates");
        print_certificates(&p.certificates);
    }
    if let Some(limits) = p.limits.as_ref().filter(|l| **l != pb::PartyLimits::default()) {
        println!("limits        {}", super::operations::limits_text(limits));
    }
    if let Some(t) = &p.termination {
        let received = if t.notice_received_on.is_empty() {
            "-"
        } else {
            &t.notice_received_on
        };
        println!(
            "termination   effective {} (notice received {received}, registered by {} at {})",
            t.effective_date,
            if t.scheduled_by.is_empty() {
                "-"
            } else {
                &t.scheduled_by
            },
            time(t.scheduled_at.as_ref())
        );
        if !t.override_reason.is_empty() {
            println!("  override    {}", t.override_reason);
        }
    }
    println!("updated at    {}", time(p.updated_at.as_ref()));
}

fn print_certificates(certs: &[pb::Certificate]) {
    println!(
        "  {:<8} {:<64} {:<20} SUBJECT",
        "STATE", "FINGERPRINT (SHA-256)", "VALID UNTIL (UTC)"
    );
    for c in certs {
        let state = pb::CertificateState::try_from(c.state)
            .unwrap_or_default()
            .as_str_name();
        println!(
            "  {:<8} {:<64} {:<20} {}",
            state,
            c.fingerprint,
            time(c.not_after.as_ref()),
            c.subject
        );
        if !c.revocation_reason.is_empty() {
            println!(
                "           revoked {}: {}",
                time(c.revoked_at.as_ref()),
                c.revocation_reason
            );
        }
    }
}

fn list_or_none(codes: &[String]) -> String {
    if codes.is_empty() {
        "(none)".to_string()
    } else {
        codes.join(", ")
    }
}

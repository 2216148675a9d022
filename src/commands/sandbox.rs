//! `lefi admin sandbox …`: scenarios for integrators on a development server (`lefi serve --dev`).
//!
//! Each scenario commits one real-world situation to a demo person through the ordinary APIs (the
//! register feed, consent oversight, the party API's CaseService, party termination) and prints
//! what it committed and what a subscriber's stream should show; docs/SANDBOX.md describes them.
//! Only "cursor-expiring" needs an RPC of its own (`OperationsAdminService.PruneDeliveryHistory`),
//! which a server refuses unless it runs `serve --dev`. The command refuses, before it changes
//! anything, to play against a server whose `GetServerInfo` does not report development mode, and
//! it commits facts only for identity numbers from the test range.
//!
//! The scenarios are the same on both backends: they only call the APIs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, anyhow, bail};
use clap::ValueEnum as _;
use time::{Date, Duration, Month};
use tonic::transport::Channel;

use super::client::{Target, target};
use super::failure::finish;
use crate::cli::{ConnectArgs, SandboxCommand, SandboxParty, SandboxPlayArgs, SandboxScenario};
use crate::dev::certs::{DEMO_INSURER, DEMO_MUNICIPALITY};
use crate::dev::synth::{FIRST_BIRTH_NUMBER, LAST_BIRTH_NUMBER};
use crate::domain::Personnummer;
use crate::domain::clock::{Clock, format_date};
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

/// The source system of the facts the sandbox commits (apart from the demo register's).
const SOURCE_SYSTEM: &str = "SANDBOX";

/// `lefi admin sandbox …`
pub async fn run(connect: &ConnectArgs, command: &SandboxCommand) -> ExitCode {
    match command {
        SandboxCommand::List => {
            list();
            ExitCode::SUCCESS
        }
        SandboxCommand::Play(args) => {
            let admin = match target(connect, "https://localhost:50052", "operator") {
                Ok(admin) => admin,
                Err(e) => return finish(Err(e.into()), None, connect.json).await,
            };
            let result = play(connect, &admin, args).await;
            finish(result, Some(&admin), connect.json).await
        }
    }
}

/// The scenario's name as the command line spells it.
fn name(scenario: SandboxScenario) -> String {
    scenario
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

/// One line on what the scenario commits.
fn summary(scenario: SandboxScenario) -> &'static str {
    match scenario {
        SandboxScenario::RetroactivePayment => {
            "a payment for a period six months ago, recorded now (retroactive)"
        }
        SandboxScenario::CorrectionAndRetraction => {
            "the latest payment corrected (+100 kr), the one before retracted"
        }
        SandboxScenario::SicknessCaseClosed => {
            "the person's open case CLOSED, and the event SICKNESS_CASE_CLOSED"
        }
        SandboxScenario::LifeCertificateMissing => {
            "the event LIFE_CERTIFICATE_MISSING and a BLOCKED decision: benefits blocked"
        }
        SandboxScenario::LifeCertificateReceived => {
            "the event LIFE_CERTIFICATE_RECEIVED and an UNBLOCKED decision: the block lifted"
        }
        SandboxScenario::DeathRegistered => {
            "the person's date of death (yesterday) and the event DEATH_REGISTERED"
        }
        SandboxScenario::ConsentLapsing => {
            "the agency revokes the party's valid consents about the person: their subscriptions are suspended"
        }
        SandboxScenario::CaseClosedByAuthority => {
            "the demo municipality closes its case reference: the subscriptions under it end"
        }
        SandboxScenario::CursorExpiring => {
            "a new payment, then all delivery history before now pruned: older cursors expire"
        }
        SandboxScenario::PartyTermination => "the demo party is terminated today (destructive: needs --yes)",
    }
}

/// `lefi admin sandbox list`
fn list() {
    for scenario in SandboxScenario::value_variants() {
        println!("{:<27} {}", name(*scenario), summary(*scenario));
    }
    println!();
    println!(
        "play one against `lefi serve --dev`: lefi admin sandbox play NAME [--person P]; docs/SANDBOX.md"
    );
}

/// What a scenario did and what the subscriber should see, printed at the end.
#[derive(Debug, Default)]
struct Played {
    committed: Vec<String>,
    expect: Vec<String>,
    check: Vec<String>,
}

impl Played {
    fn print(&self, scenario: SandboxScenario, person: Option<&Personnummer>) {
        println!("scenario  {}", name(scenario));
        if let Some(person) = person {
            // A synthetic test-range number (checked before anything was committed).
            println!("person    {}", person.to_display_unmasked());
        }
        println!();
        println!("committed:");
        for line in &self.committed {
            println!("  - {line}");
        }
        println!();
        println!("what your client should see on its stream:");
        for line in &self.expect {
            println!("  - {line}");
        }
        if !self.check.is_empty() {
            println!();
            println!("check in your client:");
            for line in &self.check {
                println!("  - {line}");
            }
        }
    }
}

/// What every scenario works with.
struct Sandbox<'a> {
    args: &'a SandboxPlayArgs,
    connect: &'a ConnectArgs,
    admin: Channel,
    person: Personnummer,
    today: Date,
}

async fn play(connect: &ConnectArgs, admin: &Target, args: &SandboxPlayArgs) -> anyhow::Result<()> {
    let channel = admin.connect().await?;
    let info = admin_pb::operations_admin_service_client::OperationsAdminServiceClient::new(channel.clone())
        .get_server_info(admin_pb::GetServerInfoRequest {})
        .await
        .map_err(|status| {
            if status.code() == tonic::Code::Unimplemented {
                anyhow!(
                    "the server at {} does not say whether it runs in development mode (a lefi older than the \
                     sandbox?): sandbox scenarios are played only against `lefi serve --dev`",
                    admin.addr
                )
            } else {
                anyhow::Error::from(status)
            }
        })?
        .into_inner();
    if !info.dev_mode {
        bail!(
            "the server at {} does not run in development mode: sandbox scenarios change data for \
             real, so they are played only against `lefi serve --dev`",
            admin.addr
        );
    }
    let scenario = args.scenario;
    if scenario == SandboxScenario::PartyTermination && !args.yes {
        bail!(
            "party-termination ends the demo party for good: its subscriptions end and its certificate is \
             refused from then on. Add --yes to play it. To start over afterwards, stop the server, \
             delete lefi.db (with lefi.db-wal and lefi.db-shm) and start `lefi serve --dev` again"
        );
    }
    let today = Clock::system().today();
    let given = args.person.clone().unwrap_or(info.demo_person_id);
    if given.trim().is_empty() {
        bail!("the server suggests no demo person (is its register empty?): pass --person");
    }
    let person = Personnummer::parse(&given, today)
        .map_err(|e| anyhow!("--person is not a valid identity number ({e})"))?;
    if !in_test_range(&person) {
        bail!(
            "--person takes only identity numbers from the test range (birth numbers {FIRST_BIRTH_NUMBER}-\
             {LAST_BIRTH_NUMBER}, like the demo person serve --dev printed): sandbox facts are never \
             committed for a real person"
        );
    }
    let sandbox = Sandbox {
        args,
        connect,
        admin: channel,
        person,
        today,
    };
    let played = match scenario {
        SandboxScenario::RetroactivePayment => sandbox.retroactive_payment().await?,
        SandboxScenario::CorrectionAndRetraction => sandbox.correction_and_retraction().await?,
        SandboxScenario::SicknessCaseClosed => sandbox.sickness_case_closed().await?,
        SandboxScenario::LifeCertificateMissing => sandbox.life_certificate(false).await?,
        SandboxScenario::LifeCertificateReceived => sandbox.life_certificate(true).await?,
        SandboxScenario::DeathRegistered => sandbox.death_registered().await?,
        SandboxScenario::ConsentLapsing => sandbox.consent_lapsing().await?,
        SandboxScenario::CaseClosedByAuthority => sandbox.case_closed_by_authority().await?,
        SandboxScenario::CursorExpiring => sandbox.cursor_expiring().await?,
        SandboxScenario::PartyTermination => sandbox.party_termination().await?,
    };
    // Party termination concerns no person.
    let person = (scenario != SandboxScenario::PartyTermination).then_some(&sandbox.person);
    played.print(scenario, person);
    Ok(())
}

/// Whether the number is from the synthetic test range (birth numbers 980–999).
fn in_test_range(person: &Personnummer) -> bool {
    person
        .as_storage()
        .get(8..11)
        .and_then(|digits| digits.parse::<u16>().ok())
        .is_some_and(|n| (FIRST_BIRTH_NUMBER..=LAST_BIRTH_NUMBER).contains(&n))
}

/// The latest version of one fact the register holds, and where it came from.
#[derive(Debug, Clone)]
struct Current {
    record: pb::BenefitRecordFields,
    source_system: String,
    source_id: String,
    source_version: u64,
}

/// A case the scenario's facts belong to: one the register holds, or one the scenario creates.
struct CaseChoice {
    case: pb::BenefitCase,
    /// The register's version of it; `None` when the scenario creates it.
    current: Option<Current>,
}

/// What the register holds on the person, as the operator sees it (`ShowPerson`).
struct View {
    person: Option<pb::Person>,
    /// The latest version of every fact not retracted, in register order.
    current: Vec<Current>,
    /// The latest version of the person's own data: its source system and version.
    person_source: Option<(String, u64)>,
}

impl Sandbox<'_> {
    fn benefit(&self) -> &str {
        self.args.benefit.trim()
    }

    fn person_id(&self) -> String {
        self.person.as_storage().to_string()
    }

    /// Reads what the register holds on the person (an operator view, logged as such).
    async fn view(&self) -> anyhow::Result<View> {
        let answer =
            admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(self.admin.clone())
                .show_person(admin_pb::ShowPersonRequest {
                    person_id: self.person_id(),
                    as_of_sequence: 0,
                })
                .await;
        let shown = match answer {
            Ok(shown) => shown.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => {
                return Ok(View {
                    person: None,
                    current: Vec::new(),
                    person_source: None,
                });
            }
            Err(status) => return Err(status.into()),
        };
        let mut latest: BTreeMap<(String, String), Current> = BTreeMap::new();
        for fact in shown.facts {
            let Some(record) = fact.record else { continue };
            let current = Current {
                record: record.into_fields(),
                source_system: fact.source_system,
                source_id: fact.source_id,
                source_version: fact.source_version,
            };
            let key = (current.source_system.clone(), current.source_id.clone());
            match latest.get(&key) {
                Some(held) if held.record.register_sequence >= current.record.register_sequence => {}
                _ => {
                    latest.insert(key, current);
                }
            }
        }
        let mut current: Vec<Current> = latest
            .into_values()
            .filter(|c| c.record.kind != pb::RecordKind::Retraction as i32)
            .collect();
        current.sort_by_key(|c| c.record.register_sequence);
        let person_source = shown
            .person_versions
            .iter()
            .max_by_key(|v| v.register_sequence)
            .map(|v| (v.source_system.clone(), v.source_version));
        Ok(View {
            person: shown.person,
            current,
            person_source,
        })
    }

    /// The case of the scenario's benefit: the latest open top-level one, else the latest one
    /// (`open_only`: none), else a new sandbox case opened two months ago.
    fn case_of(&self, view: &View, open_only: bool) -> anyhow::Result<CaseChoice> {
        let cases = view.current.iter().filter_map(|c| match &c.record.fact {
            Some(pb::benefit_record::Fact::Case(case)) if c.record.benefit_type == self.benefit() => {
                Some((c, case))
            }
            _ => None,
        });
        let is_open = |case: &pb::BenefitCase| case.status == pb::BenefitCaseStatus::Open as i32;
        let chosen = cases
            .clone()
            .rfind(|(_, case)| is_open(case) && case.parent_case_id.is_empty())
            .or_else(|| cases.clone().rfind(|(_, case)| is_open(case)))
            .or_else(|| {
                if open_only {
                    None
                } else {
                    cases.clone().next_back()
                }
            });
        if let Some((current, case)) = chosen {
            return Ok(CaseChoice {
                case: case.clone(),
                current: Some(current.clone()),
            });
        }
        Ok(CaseChoice {
            case: pb::BenefitCase {
                case_id: format!("SANDBOX-{}", short_id()),
                parent_case_id: String::new(),
                opened: format_date(self.today - Duration::days(60)),
                closed: String::new(),
                status: pb::BenefitCaseStatus::Open as i32,
            },
            current: None,
        })
    }

    /// A new fact of the sandbox's own source system.
    fn new_fact(&self, benefit: &str, body: admin_pb::fact::Body, retroactive: bool) -> admin_pb::Fact {
        admin_pb::Fact {
            source_system: SOURCE_SYSTEM.to_string(),
            source_id: format!("sandbox-{}", uuid::Uuid::now_v7()),
            source_version: 1,
            person_id: self.person_id(),
            benefit_type: benefit.to_string(),
            kind: pb::RecordKind::New as i32,
            valid: None,
            retroactive,
            body: Some(body),
        }
    }

    /// The next version of a fact the register holds.
    fn next_version(
        &self,
        of: &Current,
        kind: pb::RecordKind,
        body: Option<admin_pb::fact::Body>,
    ) -> admin_pb::Fact {
        admin_pb::Fact {
            source_system: of.source_system.clone(),
            source_id: of.source_id.clone(),
            source_version: of.source_version + 1,
            person_id: self.person_id(),
            benefit_type: of.record.benefit_type.clone(),
            kind: kind as i32,
            valid: None,
            retroactive: false,
            body,
        }
    }

    /// The facts that create the chosen case, when the scenario creates it.
    fn case_facts(&self, choice: &CaseChoice) -> Vec<admin_pb::Fact> {
        match choice.current {
            Some(_) => Vec::new(),
            None => vec![self.new_fact(
                self.benefit(),
                admin_pb::fact::Body::Case(choice.case.clone()),
                false,
            )],
        }
    }

    /// A payment on `case_id` covering `covered`, paid today.
    fn payment(&self, case_id: &str, covered: (Date, Date), gross_ore: i64) -> admin_pb::fact::Body {
        let payer = if matches!(self.benefit(), "AP" | "GP" | "IP") {
            "PM"
        } else {
            "FK"
        };
        admin_pb::fact::Body::Payment(pb::Payment {
            case_id: case_id.to_string(),
            payment_date: format_date(self.today),
            covered: Some(pb::DateRange {
                from: format_date(covered.0),
                to: format_date(covered.1),
            }),
            gross_ore,
            tax_ore: gross_ore * 30 / 100,
            preliminary: false,
            lines: vec![pb::AmountLine {
                amount_type: "GRUND".to_string(),
                amount_ore: gross_ore,
            }],
            payer: payer.to_string(),
        })
    }

    /// Sends facts to the register feed (as the `ingest` operator) and returns the answers; a
    /// rejected fact fails the scenario.
    async fn ingest(&self, facts: Vec<admin_pb::Fact>) -> anyhow::Result<Vec<admin_pb::IngestResponse>> {
        let sent = facts.len();
        let ingest = ConnectArgs {
            cert: Some(self.args.ingest_cert.clone()),
            key: None,
            ..self.connect.clone()
        };
        let channel = target(&ingest, "https://localhost:50052", "ingest")?
            .connect()
            .await
            .context("connecting to the register feed with --ingest-cert")?;
        let requests = tokio_stream::iter(
            facts
                .into_iter()
                .map(|fact| admin_pb::IngestRequest { fact: Some(fact) }),
        );
        let mut answers = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(channel)
            .ingest(requests)
            .await?
            .into_inner();
        let mut out = Vec::with_capacity(sent);
        while let Some(answer) = answers.message().await? {
            if answer.outcome == admin_pb::IngestOutcome::Rejected as i32 {
                let reason = pb::ErrorReason::try_from(answer.reason)
                    .unwrap_or_default()
                    .as_str_name();
                bail!(
                    "the register rejected the scenario's fact {} ({reason}, field '{}'): {}",
                    answer.index,
                    answer.field,
                    answer.message
                );
            }
            out.push(answer);
        }
        if out.len() != sent {
            bail!(
                "the register answered {} of the scenario's {sent} facts",
                out.len()
            );
        }
        Ok(out)
    }

    /// "The case is new" note, when the scenario created the case.
    fn case_note(&self, choice: &CaseChoice, played: &mut Played) {
        if choice.current.is_none() {
            played.committed.push(format!(
                "a new {} case {} (OPEN): the person had none to use",
                self.benefit(),
                choice.case.case_id
            ));
            played.expect.push(format!(
                "first a Change with the NEW case {} (BenefitCase, OPEN)",
                choice.case.case_id
            ));
        }
    }

    async fn retroactive_payment(&self) -> anyhow::Result<Played> {
        let view = self.view().await?;
        let choice = self.case_of(&view, false)?;
        let covered = month(self.today, 6)?;
        let mut facts = self.case_facts(&choice);
        let gross = 1_234_500;
        facts.push(self.new_fact(
            self.benefit(),
            self.payment(&choice.case.case_id, covered, gross),
            true,
        ));
        let answers = self.ingest(facts).await?;
        let mut played = Played::default();
        self.case_note(&choice, &mut played);
        let record = answers.last().map(|a| a.record_id.clone()).unwrap_or_default();
        played.committed.push(format!(
            "a payment ({}) of 12 345 kr on case {} covering {} .. {}, paid today, retroactive (record {record})",
            self.benefit(),
            choice.case.case_id,
            format_date(covered.0),
            format_date(covered.1)
        ));
        played.expect.push(format!(
            "a Change with one BenefitRecord: kind NEW, retroactive = true, a Payment (gross_ore {gross}), \
             valid {} .. {} (six months back), recorded_at now",
            format_date(covered.0),
            format_date(covered.1)
        ));
        played.check.push(
            "the payment is applied to the past period in `valid`, not to the current month; a monthly run \
             that only looks at this month's payments misses it"
                .to_string(),
        );
        Ok(played)
    }

    async fn correction_and_retraction(&self) -> anyhow::Result<Played> {
        let mut played = Played::default();
        let mut view = self.view().await?;
        let payments = |view: &View| -> Vec<Current> {
            view.current
                .iter()
                .filter(|c| {
                    c.record.benefit_type == self.benefit()
                        && matches!(c.record.fact, Some(pb::benefit_record::Fact::Payment(_)))
                })
                .cloned()
                .collect()
        };
        if payments(&view).len() < 2 {
            // Too few to correct one and retract another: two payments first.
            let choice = self.case_of(&view, false)?;
            let mut facts = self.case_facts(&choice);
            for back in [2, 1] {
                facts.push(self.new_fact(
                    self.benefit(),
                    self.payment(&choice.case.case_id, month(self.today, back)?, 1_000_000),
                    false,
                ));
            }
            self.ingest(facts).await?;
            self.case_note(&choice, &mut played);
            played
                .committed
                .push("two payments (10 000 kr each), since the person had fewer than two".to_string());
            played
                .expect
                .push("first Changes with the two NEW payments (kind NEW)".to_string());
            view = self.view().await?;
        }
        let payments = payments(&view);
        let (Some(corrected), Some(retracted)) = (payments.last(), payments.iter().rev().nth(1)) else {
            bail!("the register holds fewer than two payments of the person after adding them");
        };
        let Some(pb::benefit_record::Fact::Payment(paid)) = &corrected.record.fact else {
            bail!("the payment to correct holds no payment");
        };
        let mut paid = paid.clone();
        paid.gross_ore += 10_000;
        match paid.lines.first_mut() {
            Some(line) => line.amount_ore += 10_000,
            None => paid.lines.push(pb::AmountLine {
                amount_type: "GRUND".to_string(),
                amount_ore: paid.gross_ore,
            }),
        }
        paid.preliminary = false;
        let gross = paid.gross_ore;
        let facts = vec![
            self.next_version(
                corrected,
                pb::RecordKind::Correction,
                Some(admin_pb::fact::Body::Payment(paid)),
            ),
            self.next_version(retracted, pb::RecordKind::Retraction, None),
        ];
        self.ingest(facts).await?;
        played.committed.push(format!(
            "a CORRECTION of payment record {} (version {} → {}): gross +100 kr, now {gross} öre",
            corrected.record.record_id,
            corrected.record.version,
            corrected.record.version + 1
        ));
        played.committed.push(format!(
            "a RETRACTION of payment record {} (version {} → {})",
            retracted.record.record_id,
            retracted.record.version,
            retracted.record.version + 1
        ));
        played.expect.push(format!(
            "a Change with record {}: kind CORRECTION, version {}, the Payment with gross_ore {gross}",
            corrected.record.record_id,
            corrected.record.version + 1
        ));
        played.expect.push(format!(
            "a Change with record {}: kind RETRACTION, version {} (it carries the retracted content, for reference)",
            retracted.record.record_id,
            retracted.record.version + 1
        ));
        played.check.push(
            "the correction replaces the whole payment you hold under that record_id; the retraction removes \
             its record_id (a retracted payment was never paid: do not keep it)"
                .to_string(),
        );
        Ok(played)
    }

    async fn sickness_case_closed(&self) -> anyhow::Result<Played> {
        let mut played = Played::default();
        let view = self.view().await?;
        let choice = self.case_of(&view, true)?;
        if choice.current.is_none() {
            // No open case to close: open one first (its own commit), then close it.
            self.ingest(self.case_facts(&choice)).await?;
            self.case_note(&choice, &mut played);
        }
        let view = self.view().await?;
        let Some(current) = view
            .current
            .iter()
            .find(|c| matches!(&c.record.fact, Some(pb::benefit_record::Fact::Case(case)) if case.case_id == choice.case.case_id))
        else {
            bail!("the case to close is not in the register");
        };
        let mut closed = choice.case.clone();
        closed.closed = format_date(self.today);
        closed.status = pb::BenefitCaseStatus::Closed as i32;
        let facts = vec![
            self.next_version(
                current,
                pb::RecordKind::Correction,
                Some(admin_pb::fact::Body::Case(closed)),
            ),
            self.new_fact(
                self.benefit(),
                admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                    kind: pb::PersonEventKind::SicknessCaseClosed as i32,
                    event_date: format_date(self.today),
                }),
                false,
            ),
        ];
        self.ingest(facts).await?;
        played.committed.push(format!(
            "a CORRECTION of case {} (record {}): status CLOSED, closed {}",
            choice.case.case_id,
            current.record.record_id,
            format_date(self.today)
        ));
        played.committed.push(format!(
            "a PersonEvent SICKNESS_CASE_CLOSED ({}, event_date {})",
            self.benefit(),
            format_date(self.today)
        ));
        played.expect.push(format!(
            "a Change with record {}: kind CORRECTION, a BenefitCase with status CLOSED and closed = {}",
            current.record.record_id,
            format_date(self.today)
        ));
        played.expect.push(
            "a Change with a NEW PersonEvent record, kind SICKNESS_CASE_CLOSED (the two may come in one Change)"
                .to_string(),
        );
        played.check.push(
            "your client closes the sickness case on its side (avslutat sjukfall): coordination of your payouts \
             stops; the subscription itself stays ACTIVE"
                .to_string(),
        );
        Ok(played)
    }

    async fn life_certificate(&self, received: bool) -> anyhow::Result<Played> {
        let mut played = Played::default();
        let view = self.view().await?;
        let choice = self.case_of(&view, false)?;
        let (event, decision) = if received {
            (
                pb::PersonEventKind::LifeCertificateReceived,
                pb::DecisionKind::Unblocked,
            )
        } else {
            (
                pb::PersonEventKind::LifeCertificateMissing,
                pb::DecisionKind::Blocked,
            )
        };
        let mut facts = self.case_facts(&choice);
        facts.push(self.new_fact(
            "",
            admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                kind: event as i32,
                event_date: format_date(self.today),
            }),
            false,
        ));
        facts.push(self.new_fact(
            self.benefit(),
            admin_pb::fact::Body::Decision(pb::Decision {
                case_id: choice.case.case_id.clone(),
                kind: decision as i32,
                effective_from: format_date(self.today),
                decided_on: format_date(self.today),
            }),
            false,
        ));
        self.ingest(facts).await?;
        self.case_note(&choice, &mut played);
        let (event, decision) = (event.as_str_name(), decision.as_str_name());
        played.committed.push(format!(
            "a PersonEvent {event} (no benefit type: it concerns every subscription on the person), event_date {}",
            format_date(self.today)
        ));
        played.committed.push(format!(
            "a Decision {decision} on the {} case {}, effective and decided {}",
            self.benefit(),
            choice.case.case_id,
            format_date(self.today)
        ));
        played.expect.push(format!(
            "a Change with a NEW PersonEvent record, kind {event}, benefit_type empty"
        ));
        played.expect.push(format!(
            "a Change with a NEW Decision record, kind {decision}, valid from {} (the two may come in one Change)",
            format_date(self.today)
        ));
        if received {
            played.check.push(
                "your client lifts the block it recorded for life-certificate-missing: payments resume (the \
                 UNBLOCKED decision is the ground; the event says why)"
                    .to_string(),
            );
        } else {
            played.check.push(
                "your client records that the benefit is blocked from today (no payments to coordinate); play \
                 life-certificate-received to lift it"
                    .to_string(),
            );
        }
        Ok(played)
    }

    async fn death_registered(&self) -> anyhow::Result<Played> {
        let view = self.view().await?;
        let died = self.today - Duration::days(1);
        let (name, protected) = view
            .person
            .as_ref()
            .map(|p| (p.name.clone(), p.protected_identity))
            .unwrap_or_default();
        let (source_system, version) = match &view.person_source {
            Some((system, version)) => (system.clone(), version + 1),
            None => (SOURCE_SYSTEM.to_string(), 1),
        };
        let update = admin_pb::Fact {
            source_system,
            source_id: String::new(),
            source_version: version,
            person_id: self.person_id(),
            benefit_type: String::new(),
            kind: pb::RecordKind::Correction as i32,
            valid: None,
            retroactive: false,
            body: Some(admin_pb::fact::Body::Person(admin_pb::PersonUpdate {
                name,
                protected_identity: protected,
                date_of_death: format_date(died),
            })),
        };
        let event = self.new_fact(
            "",
            admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                kind: pb::PersonEventKind::DeathRegistered as i32,
                event_date: format_date(died),
            }),
            false,
        );
        self.ingest(vec![update, event]).await?;
        let mut played = Played::default();
        played.committed.push(format!(
            "a person update: date of death {} (name and protected identity unchanged)",
            format_date(died)
        ));
        played.committed.push(format!(
            "a PersonEvent DEATH_REGISTERED, event_date {} (no benefit type: every subscription on the person)",
            format_date(died)
        ));
        played.expect.push(format!(
            "a Change whose person.date_of_death is {} (with no records when only the person changed)",
            format_date(died)
        ));
        played.expect.push(
            "a Change with a NEW PersonEvent record, kind DEATH_REGISTERED (the two may come in one Change)"
                .to_string(),
        );
        played.check.push(
            "your client records the death from `person.date_of_death` of any Change or snapshot, not only from \
             the event; the subscription stays ACTIVE (later corrections and payments for the time before the \
             death still come)"
                .to_string(),
        );
        Ok(played)
    }

    /// The demo party a scenario acts on: its id, organisation number and name.
    async fn party(&self, default: SandboxParty) -> anyhow::Result<admin_pb::Party> {
        let (org, _) = match self.args.party.unwrap_or(default) {
            SandboxParty::Insurer => DEMO_INSURER,
            SandboxParty::Municipality => DEMO_MUNICIPALITY,
        };
        let party = admin_pb::party_admin_service_client::PartyAdminServiceClient::new(self.admin.clone())
            .get_party(admin_pb::GetPartyRequest {
                key: Some(admin_pb::get_party_request::Key::OrgNumber(org.to_string())),
            })
            .await
            .with_context(|| format!("finding the demo party {org}"))?
            .into_inner();
        Ok(party)
    }

    async fn consent_lapsing(&self) -> anyhow::Result<Played> {
        let party = self.party(SandboxParty::Insurer).await?;
        let mut audit =
            admin_pb::audit_admin_service_client::AuditAdminServiceClient::new(self.admin.clone());
        let consents = audit
            .list_consents(admin_pb::ListConsentsRequest {
                page_size: 1000,
                page_token: String::new(),
                party_id: party.party_id.clone(),
                person_id: self.person_id(),
                states: vec![pb::ConsentState::Valid as i32],
            })
            .await?
            .into_inner()
            .consents;
        if consents.is_empty() {
            bail!(
                "{} holds no valid consent about this person, so nothing can lapse. Register one and a \
                 subscription relying on it first, e.g.\n  lefi client consent register --person <PERSON> --basis \
                 INS_RISK_ASSESSMENT --given-on {} --expires-on {} --evidence sandbox-1\n  lefi client subscribe \
                 --reference sandbox-consent --person <PERSON> --benefits {} --from 2020-01-01 --basis \
                 INS_RISK_ASSESSMENT --consent-id <CONSENT ID>",
                party.name,
                format_date(self.today),
                format_date(self.today + Duration::days(365)),
                self.benefit()
            );
        }
        let mut played = Played::default();
        let mut suspended = 0;
        for consent in consents {
            let Some(held) = consent.consent else { continue };
            let revoked = audit
                .revoke_consent(admin_pb::RevokeConsentRequest {
                    idempotency_key: uuid::Uuid::now_v7().to_string(),
                    consent_id: held.consent_id.clone(),
                    reason: "sandbox: the individual withdrew the consent by contacting the agency"
                        .to_string(),
                })
                .await?
                .into_inner();
            suspended += revoked.suspended_subscription_count;
            played.committed.push(format!(
                "consent {} ({}) of {} revoked by the agency; {} subscription(s) suspended",
                held.consent_id, held.legal_basis, party.name, revoked.suspended_subscription_count
            ));
        }
        played.expect.push(format!(
            "on {}'s stream, for each of the {suspended} subscription(s) made under the consent: a \
             SubscriptionNotice with state SUSPENDED, reason CONSENT_ENDED (its message names the consent)",
            party.name
        ));
        played
            .expect
            .push("nothing more about those subscriptions until they are resumed".to_string());
        played.check.push(
            "your client stops treating the subscription's data as current, and asks the individual for a new \
             consent; registering it (same person and basis) resumes the subscription: a SubscriptionNotice \
             ACTIVE / RESUMED, then a snapshot with reason SUBSCRIPTION_RESUMED that replaces what you hold"
                .to_string(),
        );
        Ok(played)
    }

    async fn case_closed_by_authority(&self) -> anyhow::Result<Played> {
        let party = self.party(SandboxParty::Municipality).await?;
        let stem = match self.args.party.unwrap_or(SandboxParty::Municipality) {
            SandboxParty::Insurer => "insurer",
            SandboxParty::Municipality => "municipality",
        };
        let as_party = ConnectArgs {
            addr: Some(self.args.party_addr.clone()),
            cert: Some(Path::new(&self.args.certs_dir).join(format!("{stem}.pem"))),
            key: None,
            ..self.connect.clone()
        };
        let channel = target(&as_party, "https://localhost:50051", stem)?
            .connect()
            .await
            .with_context(|| format!("connecting to the party API as {}", party.name))?;
        let references = match &self.args.case_reference {
            Some(reference) => vec![reference.clone()],
            None => {
                let mut pages =
                    pb::subscription_service_client::SubscriptionServiceClient::new(channel.clone())
                        .list_subscriptions(pb::ListSubscriptionsRequest {
                            page_size: 1000,
                            person_id: self.person_id(),
                            states: vec![
                                pb::SubscriptionState::Active as i32,
                                pb::SubscriptionState::Suspended as i32,
                            ],
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                let mut references = Vec::new();
                while let Some(page) = pages.message().await? {
                    for subscription in page.subscriptions {
                        let reference = subscription.case_reference;
                        if !reference.is_empty() && !references.contains(&reference) {
                            references.push(reference);
                        }
                    }
                }
                references
            }
        };
        if references.is_empty() {
            bail!(
                "{} has no subscription about this person under a case reference, so no case can close. \
                 Subscribe under one first, e.g.\n  lefi client --as municipality subscribe --reference \
                 sandbox-case --person <PERSON> --benefits {} --from 2020-01-01 --basis AUTH_SOCIAL_SERVICES \
                 --case-reference DNR-SANDBOX-1",
                party.name,
                self.benefit()
            );
        }
        let mut cases = pb::case_service_client::CaseServiceClient::new(channel);
        let mut played = Played::default();
        let mut ended = 0;
        for reference in &references {
            let closed = cases
                .close_case(pb::CloseCaseRequest {
                    case_reference: reference.clone(),
                    reason: "sandbox: the authority closed its case".to_string(),
                })
                .await?
                .into_inner();
            ended += closed.ended_subscription_count;
            played.committed.push(format!(
                "{} closed its case {reference} (CaseService.CloseCase); {} subscription(s) ended",
                party.name, closed.ended_subscription_count
            ));
        }
        played.expect.push(format!(
            "on {}'s stream, for each of the {ended} subscription(s) under the case: a SubscriptionNotice with \
             state ENDED, reason CASE_CLOSED; nothing more is sent for them",
            party.name
        ));
        played.check.push(
            "your client ends the subscription for good (a closed case reference cannot be used again: a new \
             subscription or query naming it is refused with CASE_CLOSED); open a new case to subscribe again"
                .to_string(),
        );
        Ok(played)
    }

    async fn cursor_expiring(&self) -> anyhow::Result<Played> {
        let mut played = Played::default();
        let view = self.view().await?;
        let choice = self.case_of(&view, false)?;
        let mut facts = self.case_facts(&choice);
        let this_month = month(self.today, 0)?;
        facts.push(self.new_fact(
            self.benefit(),
            self.payment(&choice.case.case_id, (this_month.0, self.today), 500_000),
            false,
        ));
        self.ingest(facts).await?;
        self.case_note(&choice, &mut played);
        let pruned =
            admin_pb::operations_admin_service_client::OperationsAdminServiceClient::new(self.admin.clone())
                .prune_delivery_history(admin_pb::PruneDeliveryHistoryRequest {})
                .await?
                .into_inner();
        played.committed.push(format!(
            "a payment ({}) of 5 000 kr for this month (so that every subscriber of the person has history after \
             its old cursors)",
            self.benefit()
        ));
        played.committed.push(format!(
            "the delivery history of every party recorded before now pruned (PruneDeliveryHistory, development \
             servers only): {} event(s) deleted",
            pruned.deleted_events
        ));
        played.expect.push(
            "a stream that was open gets the new payment as a Change and goes on: its cursor is current"
                .to_string(),
        );
        played.expect.push(
            "a client that resumes (Stream or FetchEvents) with a cursor from before the payment, e.g. one \
             persisted before this scenario while it was stopped: FAILED_PRECONDITION with ErrorInfo reason \
             CURSOR_EXPIRED (metadata horizon_sequence)"
                .to_string(),
        );
        played.check.push(
            "on CURSOR_EXPIRED your client calls DeliveryService.RequestFullRefresh and streams from the cursor it \
             returns: a snapshot (reason FULL_REFRESH) of every ACTIVE subscription replaces what it holds, then \
             every later change; it never starts silently from an empty cursor without replacing its data"
                .to_string(),
        );
        Ok(played)
    }

    async fn party_termination(&self) -> anyhow::Result<Played> {
        let party = self.party(SandboxParty::Insurer).await?;
        let insurer = party.kind == pb::PartyKind::Insurer as i32;
        let terminated =
            admin_pb::party_admin_service_client::PartyAdminServiceClient::new(self.admin.clone())
                .schedule_termination(admin_pb::ScheduleTerminationRequest {
                    idempotency_key: uuid::Uuid::now_v7().to_string(),
                    party_id: party.party_id.clone(),
                    is_termination: true,
                    org_number: party.org_number.clone(),
                    organisation_name: party.name.clone(),
                    effective_date: format_date(self.today),
                    notice_received_on: format_date(self.today),
                    override_reason: if insurer {
                        "sandbox scenario party-termination: at once, without the notice period".to_string()
                    } else {
                        String::new()
                    },
                })
                .await?
                .into_inner();
        let state = terminated
            .party
            .map(|p| {
                pb::PartyState::try_from(p.state)
                    .unwrap_or_default()
                    .as_str_name()
            })
            .unwrap_or("-");
        let mut played = Played::default();
        played.committed.push(format!(
            "{} ({}) terminated with effect today, {} (state {state})",
            party.name,
            party.org_number,
            format_date(self.today)
        ));
        played.expect.push(
            "for every subscription of the party that is not ended: a SubscriptionNotice with state ENDED, reason \
             PARTY_TERMINATED"
                .to_string(),
        );
        played.expect.push(
            "then the stream ends with PERMISSION_DENIED, ErrorInfo reason PARTY_TERMINATED; every later call with \
             the party's certificate is refused (PARTY_TERMINATED)"
                .to_string(),
        );
        played.check.push(
            "your client stops retrying on PARTY_TERMINATED (retrying cannot fix it) and alerts a person"
                .to_string(),
        );
        played.check.push(
            "to start over: stop `lefi serve --dev`, delete lefi.db (with lefi.db-wal and lefi.db-shm) and start it \
             again: the demo parties and register are created afresh"
                .to_string(),
        );
        Ok(played)
    }
}

/// The first and last day of the month `back` months before `day`'s.
fn month(day: Date, back: i32) -> anyhow::Result<(Date, Date)> {
    let first = |index: i32| -> anyhow::Result<Date> {
        let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1)?)?;
        Ok(Date::from_calendar_date(index.div_euclid(12), month, 1)?)
    };
    let index = day.year() * 12 + i32::from(u8::from(day.month())) - 1 - back;
    let start = first(index)?;
    let end = first(index + 1)? - Duration::days(1);
    Ok((start, end))
}

/// A short random id for a case the sandbox creates.
fn short_id() -> String {
    uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .chars()
        .take(8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_back_cross_years() {
        let day = Date::from_calendar_date(2025, Month::March, 15).unwrap();
        let (from, to) = month(day, 6).unwrap();
        assert_eq!(format_date(from), "2024-09-01");
        assert_eq!(format_date(to), "2024-09-30");
        let (from, to) = month(day, 0).unwrap();
        assert_eq!(
            (format_date(from), format_date(to)),
            ("2025-03-01".into(), "2025-03-31".into())
        );
        let (from, to) = month(Date::from_calendar_date(2024, Month::February, 1).unwrap(), 0).unwrap();
        assert_eq!(
            (format_date(from), format_date(to)),
            ("2024-02-01".into(), "2024-02-29".into())
        );
    }

    #[test]
    fn only_test_range_numbers_are_played() {
        let today = Date::from_calendar_date(2025, Month::March, 15).unwrap();
        assert!(in_test_range(
            &Personnummer::parse("18991223-9812", today).unwrap()
        ));
        assert!(!in_test_range(
            &Personnummer::parse("19900704-2386", today).unwrap()
        ));
    }

    #[test]
    fn every_scenario_has_a_name_and_a_line() {
        for scenario in SandboxScenario::value_variants() {
            assert!(!name(*scenario).is_empty());
            assert!(!summary(*scenario).is_empty());
        }
    }
}

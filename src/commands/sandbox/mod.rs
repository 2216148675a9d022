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
//!
//! This file holds the command itself and its checks: `run`, `list`, `play` (the development-mode
//! and test-range checks before anything is committed), the `Sandbox` context every scenario works
//! with, and `Played`, what a scenario prints. The rest, by theme:
//! - `records`: reading what the register holds on the person, and building and sending facts;
//! - `register`: the register scenarios (retroactive payment, correction and retraction, sickness
//!   case closed, life certificate missing/received, death registered);
//! - `parties`: the party and agency scenarios (consent lapsing, case closed by the authority,
//!   cursor expiring, party termination).

mod parties;
mod records;
mod register;

use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::ValueEnum as _;
use time::Date;
use tonic::transport::Channel;

use super::client::{Target, target};
use super::failure::finish;
use crate::cli::{ConnectArgs, SandboxCommand, SandboxPlayArgs, SandboxScenario};
use crate::dev::synth::{FIRST_BIRTH_NUMBER, LAST_BIRTH_NUMBER};
use crate::domain::Personnummer;
use crate::domain::clock::Clock;
use crate::grpc::pb::lefi::admin::v1 as admin_pb;

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

#[cfg(test)]
mod tests {
    use time::Month;

    use super::*;

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

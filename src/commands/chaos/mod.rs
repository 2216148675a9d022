//! `lefi chaos`: the delivery contract under randomized faults, checked.
//!
//! Each run makes a fresh world ([`world`]: database, certificates, `lefi serve` child processes;
//! on PostgreSQL two replicas on a cluster of the run's own), places subscriptions through the
//! party API, feeds facts at a steady rate ([`feeder`]) while a consumer reads the stream and
//! persists every message with its cursor ([`reader`]), and meanwhile injects faults at random
//! times drawn from the run's seed: kill -9 and SIGTERM of a server, kill of the reader, an
//! immediate restart of PostgreSQL, a replica killed while the other serves. Then the faults stop,
//! everything sent is acknowledged, the reader catches up, and [`check`] judges the recording.
//! A failing run prints its seed and keeps its directory; `--replay SEED` runs that seed again
//! (the same faults and facts in the same order; the timing of processes is the machine's).

mod check;
mod feeder;
mod reader;
mod record;
mod soak;
mod world;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use crate::cli::{ChaosArgs, ChaosBackend};
use crate::grpc::pb::lefi::v1 as pb;
use check::{Recording, Violation};
use feeder::{Facts, Feeder};
use reader::Reader;
use record::{Placed, read_all};
use world::{Certs, Database, Server};

/// What one run found.
struct Outcome {
    seed: u64,
    acked: usize,
    messages: usize,
    faults: Vec<String>,
    violations: Vec<Violation>,
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let duration = humantime::parse_duration(&args.duration)
        .map_err(|e| anyhow::anyhow!("--duration '{}' is not a duration: {e}", args.duration))?;
    let base = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("lefi-chaos-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base)?;
    // A PostgreSQL cluster run as the postgres user must reach its directory below this one.
    set_mode(&base, 0o755)?;
    if let Some(length) = &args.soak {
        let length = humantime::parse_duration(length)
            .map_err(|e| anyhow::anyhow!("--soak '{length}' is not a duration: {e}"))?;
        let dir = base.join("soak");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        return soak::soak(&args, args.streams, length, &dir).await;
    }
    let seeds: Vec<u64> = match args.replay {
        Some(seed) => vec![seed],
        None => {
            let first = args.seed.unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_secs())
            });
            (0..u64::from(args.runs)).map(|i| first.wrapping_add(i)).collect()
        }
    };
    println!(
        "lefi chaos: {} run(s) on {:?}, {} of faults each, {} facts/s, {} subscribed persons; runs in {}",
        seeds.len(),
        args.backend,
        args.duration,
        args.rate,
        args.persons,
        base.display()
    );
    let mut failed = Vec::new();
    for seed in seeds {
        let dir = base.join(format!("run-{seed}"));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let started = std::time::Instant::now();
        let result = one_run(&args, seed, duration, &dir).await;
        let keep = match &result {
            Ok(outcome) if outcome.violations.is_empty() => {
                println!(
                    "seed {seed}: ok in {:.0} s: {} facts acknowledged, {} messages read, faults: {}",
                    started.elapsed().as_secs_f64(),
                    outcome.acked,
                    outcome.messages,
                    summary(&outcome.faults)
                );
                if args.self_test {
                    self_test(&dir)?;
                }
                args.keep
            }
            Ok(outcome) => {
                println!(
                    "seed {seed}: FAILED: {} violation(s); faults: {}",
                    outcome.violations.len(),
                    summary(&outcome.faults)
                );
                for v in outcome.violations.iter().take(20) {
                    println!("  {:?}: {}", v.broken, v.detail);
                }
                failed.push(outcome.seed);
                true
            }
            Err(e) => {
                println!("seed {seed}: FAILED to run: {e:#}");
                failed.push(seed);
                true
            }
        };
        if keep {
            println!("  files kept in {}", dir.display());
        } else {
            std::fs::remove_dir_all(&dir)?;
        }
    }
    if failed.is_empty() {
        if args.dir.is_none() && !args.keep {
            let _ = std::fs::remove_dir(&base);
        }
        println!("every run held the delivery contract");
        Ok(())
    } else {
        let replays: Vec<String> = failed.iter().map(|s| format!("--replay {s}")).collect();
        bail!(
            "{} run(s) failed; rerun one with `lefi chaos --backend {} {}`",
            failed.len(),
            match args.backend {
                ChaosBackend::Sqlite => "sqlite",
                ChaosBackend::Postgres => "postgres",
            },
            replays.join(" | ")
        )
    }
}

fn summary(faults: &[String]) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for f in faults {
        *counts.entry(f.as_str()).or_default() += 1;
    }
    if counts.is_empty() {
        return "none".to_string();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{n}× {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// The faults a run may inject.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillServer,
    TerminateServer,
    KillReader,
    RestartPostgres,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::KillServer => "kill -9 of a server",
            Fault::TerminateServer => "SIGTERM of a server",
            Fault::KillReader => "kill of the reader",
            Fault::RestartPostgres => "immediate restart of PostgreSQL",
        }
    }
}

async fn one_run(args: &ChaosArgs, seed: u64, duration: Duration, dir: &Path) -> anyhow::Result<Outcome> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let database = Database::create(args.backend, dir, args.pg_bin.as_deref()).await?;
    let result = faulted_run(args, seed, duration, dir, &database, &mut rng).await;
    database.stop().await;
    result
}

async fn faulted_run(
    args: &ChaosArgs,
    seed: u64,
    duration: Duration,
    dir: &Path,
    database: &Database,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Outcome> {
    let url = database.url();
    let certs = Certs::generate(dir)?;
    certs.seed(&url).await.context("preparing the database")?;

    // On PostgreSQL two replicas: faults take one down while the other serves.
    let replicas = match args.backend {
        ChaosBackend::Sqlite => 1,
        ChaosBackend::Postgres => 2,
    };
    let mut servers = Vec::new();
    for i in 0..replicas {
        let mut server = Server::new(i, dir, &url, &certs)?;
        server.start().await?;
        servers.push(server);
    }
    let party_addrs: Vec<String> = servers.iter().map(Server::party_addr).collect();
    let admin_addrs: Vec<String> = servers.iter().rev().map(Server::admin_addr).collect();

    // The reader first, from an empty cursor: every subscription's first event reaches it.
    let (reached, mut reached_rx) = tokio::sync::watch::channel(0u64);
    let reader = Reader {
        addrs: party_addrs.clone(),
        pem: certs.party.clone(),
        events_file: dir.join("events.ndjson"),
        reached,
    };
    let mut reading = reader.spawn();
    tokio::time::timeout(Duration::from_secs(15), async {
        while !dir.join("events.ndjson").exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .context("the reader got no first heartbeat within 15 s")?;

    // Persons: subscribed ones, and as many others whose facts must not reach the party.
    let persons = test_persons(rng, args.persons * 2);
    let (subscribed, others) = persons.split_at(args.persons);
    let mut facts = Facts::new(seed, persons.clone());
    let feeder = Feeder {
        addrs: admin_addrs,
        pem: certs.ingest.clone(),
        acked_file: dir.join("acked.ndjson"),
    };
    let initial = facts.initial();
    feeder
        .run(initial, &mut facts, 1, Instant::now(), Duration::from_secs(30))
        .await
        .context("the initial facts")?;
    place_subscriptions(
        &party_addrs[0],
        &certs,
        subscribed,
        &dir.join("subscriptions.ndjson"),
    )
    .await?;
    let _ = others;

    // Faults while the feeder feeds.
    let until = Instant::now() + duration;
    let feeding = {
        let rate = args.rate;
        let feeder_facts = &mut facts;
        async move {
            feeder
                .run(Vec::new(), feeder_facts, rate, until, Duration::from_secs(60))
                .await
        }
    };
    let mut faults = Vec::new();
    let injecting = async {
        let mut kinds = vec![Fault::KillServer, Fault::TerminateServer, Fault::KillReader];
        if matches!(args.backend, ChaosBackend::Postgres) {
            kinds.push(Fault::RestartPostgres);
        }
        loop {
            let wait = Duration::from_millis(rng.random_range(300..2_500));
            if Instant::now() + wait >= until {
                break;
            }
            tokio::time::sleep(wait).await;
            let fault = kinds[rng.random_range(0..kinds.len())];
            let target = rng.random_range(0..servers.len());
            let pause = Duration::from_millis(rng.random_range(0..800));
            faults.push(fault.name().to_string());
            match fault {
                Fault::KillServer | Fault::TerminateServer => {
                    let server = &mut servers[target];
                    if matches!(fault, Fault::KillServer) {
                        server.kill().await;
                    } else {
                        server.terminate().await;
                    }
                    tokio::time::sleep(pause).await;
                    server.start().await?;
                }
                Fault::KillReader => {
                    reading.abort();
                    let _ = (&mut reading).await;
                    tokio::time::sleep(pause).await;
                    reading = reader.spawn();
                }
                Fault::RestartPostgres => {
                    if let Database::Postgres(cluster) = database {
                        cluster.restart_immediately().await?;
                    }
                }
            }
        }
        anyhow::Ok(())
    };
    let (fed, injected) = tokio::join!(feeding, injecting);
    injected.context("injecting a fault")?;
    let acked = fed.context("feeding the register")?;
    let _ = acked;

    // Everything is acknowledged; the reader must reach the last acknowledged sequence.
    let acked_all: Vec<record::Acked> = read_all(&dir.join("acked.ndjson"))?;
    let last = acked_all.iter().map(|a| a.seq).max().unwrap_or(0);
    let caught_up = tokio::time::timeout(Duration::from_secs(60), async {
        while *reached_rx.borrow_and_update() < last {
            if reached_rx.changed().await.is_err() {
                break;
            }
        }
    })
    .await;
    reading.abort();
    let _ = reading.await;
    for server in &mut servers {
        server.terminate().await;
    }
    if caught_up.is_err() {
        tracing::warn!(last, "the reader did not catch up within 60 s");
    }

    let recording = Recording {
        acked: acked_all,
        placed: read_all(&dir.join("subscriptions.ndjson"))?,
        received: read_all(&dir.join("events.ndjson"))?,
    };
    Ok(Outcome {
        seed,
        acked: recording.acked.len(),
        messages: recording.received.len(),
        faults,
        violations: check::check(&recording),
    })
}

/// `count` distinct identity numbers from the test range (birth numbers 980–999), from the run's
/// seed.
fn test_persons(rng: &mut ChaCha8Rng, count: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    while out.len() < count {
        let year = rng.random_range(1950..2000);
        let month = rng.random_range(1..=12);
        let day = rng.random_range(1..=28);
        let birth =
            rng.random_range(crate::dev::synth::FIRST_BIRTH_NUMBER..=crate::dev::synth::LAST_BIRTH_NUMBER);
        let nine = format!("{:02}{month:02}{day:02}{birth:03}", year % 100);
        let digits: Vec<u8> = nine.bytes().map(|b| b - b'0').collect();
        let check = crate::domain::personnummer::luhn_check_digit(&digits);
        let person = format!("{year}{month:02}{day:02}{birth:03}{check}");
        if !out.contains(&person) {
            out.push(person);
        }
    }
    out
}

/// Places one subscription per person through the party API and records them.
async fn place_subscriptions(
    addr: &str,
    certs: &Certs,
    persons: &[String],
    file: &Path,
) -> anyhow::Result<()> {
    let channel = crate::client::connect(addr, &certs.party, None).await?;
    let items = persons
        .iter()
        .enumerate()
        .map(|(i, person)| pb::NewSubscription {
            client_reference: format!("chaos-{i}"),
            person_id: person.clone(),
            benefit_type_codes: vec!["SJP".to_string()],
            from_date: "2020-01-01".to_string(),
            legal_basis: "INS_COORDINATION".to_string(),
            ..Default::default()
        })
        .collect();
    let response = pb::subscription_service_client::SubscriptionServiceClient::new(channel)
        .create_subscriptions(pb::CreateSubscriptionsRequest { items })
        .await?
        .into_inner();
    for (result, person) in response.results.into_iter().zip(persons) {
        let Some(s) = result.subscription else {
            bail!("a subscription was refused: {:?}", result.error);
        };
        record::append(
            file,
            &Placed {
                subscription_id: s.subscription_id,
                person: person.clone(),
            },
        )?;
    }
    Ok(())
}

/// Shows that the checker catches every damage done to a good recording (`--self-test`).
fn self_test(dir: &Path) -> anyhow::Result<()> {
    let good = Recording {
        acked: read_all(&dir.join("acked.ndjson"))?,
        placed: read_all(&dir.join("subscriptions.ndjson"))?,
        received: read_all(&dir.join("events.ndjson"))?,
    };
    let damages = check::damages(&good);
    if damages.len() < 7 {
        bail!(
            "the recording is too small to damage in every way ({} of 7); use a longer --duration",
            damages.len()
        );
    }
    for (what, expected, damaged) in damages {
        let found = check::check(&damaged);
        if !found.iter().any(|v| v.broken == expected) {
            bail!("the checker missed {what}: expected {expected:?}, found {found:?}");
        }
        println!("  self-test: {what}: caught as {expected:?}");
    }
    Ok(())
}

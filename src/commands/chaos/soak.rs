//! `lefi chaos --soak DURATION`: many streams and a steady feed for a long time, without faults.
//! One `lefi serve` on a fresh database; `--streams` parties each hold one subscription and one
//! stream (its own mTLS connection); the feeder sends `--rate` facts a second. Every stream's
//! deliveries are judged by the same checker as the fault runs, no call may fail, and the
//! server's resident memory is sampled every 10 s so that a leak shows as a rising series.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;

use super::check::{self, Recording};
use super::feeder::{Facts, Feeder};
use super::record::{Acked, Placed, Received, read_all};
use super::world::{Certs, Database, Server};
use crate::cli::ChaosArgs;
use crate::client::ClientPem;
use crate::grpc::pb::lefi::v1 as pb;

/// One soak, in `dir`.
pub async fn soak(args: &ChaosArgs, streams: usize, length: Duration, dir: &Path) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let database = Database::create(args.backend, dir, args.pg_bin.as_deref()).await?;
    let result = run(args, &mut rng, seed, streams, length, dir, &database).await;
    database.stop().await;
    result
}

async fn run(
    args: &ChaosArgs,
    rng: &mut ChaCha8Rng,
    seed: u64,
    streams: usize,
    length: Duration,
    dir: &Path,
    database: &Database,
) -> anyhow::Result<()> {
    let url = database.url();
    let certs = Certs::generate(dir)?;
    certs.seed(&url).await?;
    println!("registering {streams} parties…");
    let parties = certs.seed_parties(&url, streams).await?;
    let mut server = Server::new(0, dir, &url, &certs)?;
    server.start().await?;
    let pid = server.pid().context("the server has no process id")?;

    // One person per party, and as many others.
    let persons = super::test_persons(rng, streams * 2);
    let mut facts = Facts::new(seed, persons.clone());
    let feeder = Feeder {
        addrs: vec![server.admin_addr()],
        pem: certs.ingest.clone(),
        acked_file: dir.join("acked.ndjson"),
    };
    feeder
        .run(
            facts.initial(),
            &mut facts,
            1,
            Instant::now(),
            Duration::from_secs(60),
        )
        .await
        .context("the initial facts")?;

    println!("placing {streams} subscriptions and opening {streams} streams…");
    let addr = server.party_addr();
    let mut placed = Vec::new();
    for (party, person) in parties.iter().zip(&persons) {
        placed.push(place(&addr, party, person).await?);
    }
    let received: Vec<Arc<Mutex<Vec<Received>>>> = (0..streams).map(|_| Arc::default()).collect();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut readers = Vec::new();
    for (party, into) in parties.iter().zip(&received) {
        let channel = crate::client::connect(&addr, party, None).await?;
        readers.push(tokio::spawn(read(channel, into.clone(), errors.clone())));
    }

    println!(
        "feeding {} facts/s for {} while {streams} streams read…",
        args.rate,
        humantime::format_duration(length)
    );
    let started = Instant::now();
    let until = started + length;
    let mut rss = Vec::new();
    let sampling = async {
        loop {
            if let Some(kib) = crate::commands::bench::status_kib(&pid.to_string(), "VmRSS:") {
                rss.push((started.elapsed().as_secs(), kib));
            }
            if Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    };
    let feeding = feeder.run(Vec::new(), &mut facts, args.rate, until, Duration::from_secs(60));
    let (fed, ()) = tokio::join!(feeding, sampling);
    let acked_count = fed.context("feeding the register")?;

    // Everything acknowledged: wait until every stream's heartbeats report the last sequence.
    let acked: Vec<Acked> = read_all(&dir.join("acked.ndjson"))?;
    let last = acked.iter().map(|a| a.seq).max().unwrap_or(0);
    let caught_up = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let behind = received.iter().filter(|r| reached(&lock(r)) < last).count();
            if behind == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    for reader in &readers {
        reader.abort();
    }
    let peak = crate::commands::bench::status_kib(&pid.to_string(), "VmHWM:").unwrap_or(0);
    server.terminate().await;

    // Judge every stream.
    let mut by_person: HashMap<&str, Vec<Acked>> = HashMap::new();
    for a in &acked {
        by_person.entry(a.person.as_str()).or_default().push(a.clone());
    }
    let mut violations = Vec::new();
    let mut messages = 0;
    for (p, received) in placed.iter().zip(&received) {
        let received = std::mem::take(&mut *lock(received));
        messages += received.len();
        let recording = Recording {
            acked: by_person.get(p.person.as_str()).cloned().unwrap_or_default(),
            placed: vec![p.clone()],
            received,
        };
        violations.extend(check::check(&recording));
    }
    let errors = lock(&errors).clone();

    println!(
        "{acked_count} facts acknowledged in {:.0} s, {messages} messages read by {streams} streams",
        length.as_secs_f64()
    );
    println!("server RSS (s: MiB): {}", series(&rss));
    println!("server peak RSS: {:.0} MiB", peak as f64 / 1024.0);
    if caught_up.is_err() {
        println!("some streams did not reach the last sequence within 120 s");
    }
    for e in errors.iter().take(10) {
        println!("  stream error: {e}");
    }
    for v in violations.iter().take(20) {
        println!("  {:?}: {}", v.broken, v.detail);
    }
    if !violations.is_empty() || !errors.is_empty() || caught_up.is_err() {
        bail!(
            "the soak failed: {} violation(s), {} stream error(s); files in {}",
            violations.len(),
            errors.len(),
            dir.display()
        );
    }
    println!("every stream held the delivery contract; no call failed");
    Ok(())
}

/// The value behind a mutex, also when a reader task panicked while holding it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn series(rss: &[(u64, u64)]) -> String {
    rss.iter()
        .map(|(s, kib)| format!("{s}: {:.0}", *kib as f64 / 1024.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The highest sequence a stream's heartbeats reported reached.
fn reached(received: &[Received]) -> u64 {
    received
        .iter()
        .rev()
        .find_map(|r| match r.seen {
            super::record::Seen::Heartbeat { reached, .. } => Some(reached),
            _ => None,
        })
        .unwrap_or(0)
}

/// One subscription for `person` by the party presenting `pem`.
async fn place(addr: &str, pem: &ClientPem, person: &str) -> anyhow::Result<Placed> {
    let channel = crate::client::connect(addr, pem, None).await?;
    let response = pb::subscription_service_client::SubscriptionServiceClient::new(channel)
        .create_subscriptions(pb::CreateSubscriptionsRequest {
            items: vec![pb::NewSubscription {
                client_reference: "soak".to_string(),
                person_id: person.to_string(),
                benefit_type_codes: vec!["SJP".to_string()],
                from_date: "2020-01-01".to_string(),
                legal_basis: "INS_COORDINATION".to_string(),
                ..Default::default()
            }],
        })
        .await?
        .into_inner();
    let subscription = response
        .results
        .into_iter()
        .next()
        .and_then(|r| r.subscription)
        .context("the subscription was refused")?;
    Ok(Placed {
        subscription_id: subscription.subscription_id,
        person: crate::domain::Personnummer::parse_now(person)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .as_storage()
            .to_string(),
    })
}

/// Reads one stream from the start into `into`; a failure is recorded, then it resumes.
async fn read(
    channel: tonic::transport::Channel,
    into: Arc<Mutex<Vec<Received>>>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    loop {
        let cursor = lock(&into).last().map(|r| r.cursor.clone()).unwrap_or_default();
        let stream = pb::delivery_service_client::DeliveryServiceClient::new(channel.clone())
            .stream(pb::StreamRequest {
                cursor,
                max_batch_records: 0,
                heartbeat_interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            })
            .await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(status) => {
                lock(&errors).push(format!("{:?}: {}", status.code(), status.message()));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    if let Some(r) = Received::of(event) {
                        lock(&into).push(r);
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    lock(&errors).push(format!("{:?}: {}", status.code(), status.message()));
                    break;
                }
            }
        }
    }
}

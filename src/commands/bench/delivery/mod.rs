//! `lefi bench delivery`: a synthetic register with one subscription per person, served over
//! loopback mTLS in this process. Reports the snapshot rate beside two baselines measured in the
//! same run (a bare tonic stream of the same messages over the same mTLS, and a plain sqlx paged
//! read of the same rows), commit-to-delivery latency at a fixed commit rate, and memory.

mod baselines;
mod latency;
mod slow_reader;
mod snapshot;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::measure::{cpu_per_item, cpu_secs, median, rss_kib};
use super::{BenchParty, connect_empty, deepen_history, load_register};
use crate::app::App;
use crate::cli::BenchDeliveryArgs;
use crate::config::{DatabaseSettings, Settings, TlsMaterial};
use crate::dev::certs::DevCa;
use crate::domain::clock::Clock;
use crate::domain::onboarding::NewOperator;
use crate::grpc::pb::lefi::v1 as pb;
use crate::store::Store;
use crate::store::delivery::NewSubscription;
use snapshot::{SnapshotCount, fresh_stream};

/// Messages kept from the snapshot for the bare-tonic baseline, which replays them as often as
/// it takes to move as many records (keeping them all would weigh on the measured process).
const KEPT_FOR_BASELINE: usize = 20_000;

pub(super) async fn run(options: BenchDeliveryArgs) -> anyhow::Result<()> {
    let started_rss = rss_kib().unwrap_or(0);
    let store = connect_empty(&options.database_url, 8).await?;
    let clock = Clock::system();

    // 1. A synthetic register and one party with one subscription per person.
    println!("building a synthetic register of {} persons…", options.persons);
    let persons = load_register(&store, options.persons, &clock).await?;
    if options.history_depth > 0 {
        println!(
            "adding {} versions to every fact (history depth)…",
            options.history_depth
        );
        deepen_history(&store, options.persons, options.history_depth, &clock).await?;
    }
    let ca = DevCa::generate("bench CA")?;
    let server = ca.issue_server(&["localhost", "127.0.0.1"])?;
    let client = ca.issue_client("Bench Försäkring AB", None)?;
    let benefits: Vec<String> = store.benefit_codes().await?;
    let party = BenchParty {
        org_number: "556677-8899",
        name: "Bench Försäkring AB",
        agreement_id: "BENCH",
    };
    let party_id = party.insert(&store, &client, &benefits, &clock).await?;
    // An ingest operator for the latency run, and a party without subscriptions whose streams
    // stay idle (heartbeats only) for the memory run.
    let ingest_cert = ca.issue_client("Bench Inläsning", None)?;
    let (ingest_facts, _) = crate::identity::certificate_facts(ingest_cert.cert_pem.as_bytes())?;
    store
        .upsert_operator(
            &NewOperator {
                fingerprint: &ingest_facts.fingerprint,
                name: "Bench Inläsning",
                role: crate::domain::OperatorRole::Ingest,
            },
            clock.now_micros(),
        )
        .await?;
    let idle_cert = ca.issue_client("Idle Försäkring AB", None)?;
    let idle_party = BenchParty {
        org_number: "556677-0003",
        name: "Idle Försäkring AB",
        agreement_id: "BENCH-IDLE",
    };
    idle_party.insert(&store, &idle_cert, &benefits, &clock).await?;
    subscribe_everyone(&store, &party_id, &persons, &benefits, &clock).await?;
    // As after any bulk load: let the database settle before anything is measured (otherwise
    // PostgreSQL's autovacuum and the first reader's visibility bookkeeping land in the first
    // snapshot).
    store.settle().await?;

    // 2. The server, on loopback.
    let tls = TlsMaterial {
        server_cert_pem: server.cert_pem.clone().into_bytes(),
        server_key_pem: server.key_pem.clone().into_bytes(),
        party_ca_pem: ca.cert_pem().as_bytes().to_vec(),
        operator_ca_pem: ca.cert_pem().as_bytes().to_vec(),
        crls: Vec::new(),
        crl_files: Vec::new(),
    };
    let settings = Settings {
        party_addr: "127.0.0.1:0".parse()?,
        admin_addr: "127.0.0.1:0".parse()?,
        // Always listening (as in production with Prometheus); --compare-metrics scrapes it.
        metrics_addr: Some("127.0.0.1:0".parse()?),
        database: DatabaseSettings {
            url: options.database_url.clone(),
            max_connections: 8,
        },
        tls: tls.clone(),
        heartbeat_interval: Duration::from_secs(15),
        shutdown_grace: Duration::from_secs(5),
        history_retention: crate::config::DEFAULT_HISTORY_RETENTION,
        max_consent_days: 1096,
        max_message_bytes: crate::config::DEFAULT_MAX_MESSAGE_BYTES,
        // The idle-stream run opens thousands of streams for one party; limits are not measured.
        party_limits: crate::domain::limits::PartyLimits {
            max_streams: u32::MAX,
            requests_per_second: u32::MAX,
            burst: u32::MAX,
        },
    };
    let app = App::build_with_store(settings, store.clone(), clock.clone()).await?;
    let addr = format!("https://localhost:{}", app.party_addr()?.port());
    let admin_addr = format!("https://localhost:{}", app.admin_addr()?.port());
    let metrics_addr = app.metrics_addr();
    let stop = CancellationToken::new();
    let server_task = tokio::spawn(app.run_until(stop.clone()));
    let pem = client.client_pem(&ca);
    let ingest_pem = ingest_cert.client_pem(&ca);
    let idle_pem = idle_cert.client_pem(&ca);
    let channel = crate::client::connect(&addr, &pem, None).await?;

    // 3. The snapshot: one stream, every subscription's start snapshot.
    let rss_before_stream = rss_kib().unwrap_or(0);
    let postgres = store.kind() == crate::store::BackendKind::Postgres;
    let cpu_before_stream = cpu_secs();
    let started = Instant::now();
    let mut stream = fresh_stream(channel.clone(), 1_000).await?;
    let mut count = SnapshotCount::default();
    let mut recorded: Vec<pb::StreamEvent> = Vec::new();
    let mut peak_rss = rss_before_stream;
    while count.snapshots < persons.len() {
        let event = count.next(&mut stream, "the snapshot").await?;
        if recorded.len() < KEPT_FOR_BASELINE {
            recorded.push(event);
        }
        if count.snapshots % 1_000 == 0 {
            peak_rss = peak_rss.max(rss_kib().unwrap_or(0));
        }
    }
    let records = count.records;
    let snapshot_secs = started.elapsed().as_secs_f64();
    let snapshot_rate = records as f64 / snapshot_secs;
    let snapshot_cpu = cpu_per_item(cpu_before_stream, cpu_secs(), records, postgres);

    // 4. Baseline: a plain sqlx paged read of the same rows on the same backend.
    let (rows, sqlx_rate, sqlx_cpu) = super::sqlx_read(&store, postgres).await?;

    // 5. Baseline: a bare tonic stream of the same messages over the same mTLS.
    let bare_records = records;
    let recorded = std::sync::Arc::new(recorded);
    let bare_rate = baselines::bare_baseline(&tls, &pem, recorded.clone(), bare_records).await?;

    // 5a. More rounds of the three when asked, each a fresh stream's snapshot and then both
    //     baselines: the machine's pace drifts (a baseline measured in another round can differ by
    //     a third), so a ratio is only as good as the rounds behind it.
    let mut rounds = vec![(snapshot_rate, sqlx_rate, bare_rate)];
    for _ in 1..options.rounds {
        let (records, secs) = snapshot::time_snapshot(&channel, persons.len()).await?;
        let (_, sqlx, _) = super::sqlx_read(&store, postgres).await?;
        let tonic = baselines::bare_baseline(&tls, &pem, recorded.clone(), bare_records).await?;
        rounds.push((records as f64 / secs, sqlx, tonic));
    }
    drop(recorded);

    // 5b. Optionally, the snapshot again with the policy check stubbed out and on, alternating.
    let policy_comparison = if options.compare_policy_stub {
        Some(snapshot::compare_policy_stub(&channel, persons.len()).await?)
    } else {
        None
    };

    // 5c. Optionally, the snapshot again with the metrics scraped and not, alternating.
    let metrics_comparison = match (options.compare_metrics, metrics_addr) {
        (true, Some(addr)) => Some(
            snapshot::compare_metrics(&channel, persons.len(), addr, options.compare_metrics_runs).await?,
        ),
        _ => None,
    };

    // 6. Commit-to-delivery latency at a fixed commit rate, one fact per commit.
    let admin = crate::client::connect(&admin_addr, &ingest_pem, None).await?;
    let lat = latency::latency(admin, &persons, &mut stream, options.commits, options.commit_rate).await?;

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server_task).await;

    // 7. Idle streams with heartbeats, against `lefi serve` in a process of its own (in this
    //    process the memory the snapshots left behind hid or inflated their cost).
    let per_stream =
        slow_reader::idle_streams(&options.database_url, &tls, &idle_pem, options.idle_streams).await?;

    // 8. A slow reader against `lefi serve` in a process of its own, so that the memory
    //    measured is the server's alone.
    let slow = if options.slow_reader_records > 0 {
        Some(
            slow_reader::slow_reader(
                &options.database_url,
                &tls,
                &pem,
                persons.len(),
                options.slow_reader_records,
                options.slow_reader_rate,
            )
            .await?,
        )
    } else {
        None
    };

    println!();
    println!(
        "backend                 {}",
        crate::config::redact_url(&options.database_url)
    );
    println!("persons / subscriptions {}", persons.len());
    println!(
        "snapshot                {records} records in {snapshot_secs:.2} s = {snapshot_rate:.0} records/s \
         (policy, disclosure log and mTLS included)"
    );
    println!("  per record            {snapshot_cpu} (server and this client, one process)");
    println!(
        "  baseline sqlx read    {rows} rows: {sqlx_rate:.0} rows/s  → snapshot/sqlx = {:.2}",
        snapshot_rate / sqlx_rate
    );
    println!("  per row               {sqlx_cpu}");
    println!(
        "  baseline bare tonic   {bare_records} records: {bare_rate:.0} records/s  → snapshot/tonic = {:.2}",
        snapshot_rate / bare_rate
    );
    println!(
        "commit → delivery       {} commits at {}/s: p50 {:.1} ms, p99 {:.1} ms \
         (of which ingest → committed answer: p50 {:.1} ms, p99 {:.1} ms)",
        lat.delivered, options.commit_rate, lat.p50, lat.p99, lat.ack_p50, lat.ack_p99
    );
    println!(
        "  answer → delivery     p50 {:.1} ms, p99 {:.1} ms (from the committed answer's arrival: \
         a lower bound of commit → delivery, as the figure above is an upper one)",
        lat.after_ack_p50, lat.after_ack_p99
    );
    if rounds.len() > 1 {
        let list = |ratio: fn(&(f64, f64, f64)) -> f64| {
            let each: Vec<String> = rounds.iter().map(|r| format!("{:.2}", ratio(r))).collect();
            let median = median(rounds.iter().map(ratio).collect());
            format!("{} (median {median:.2})", each.join(" · "))
        };
        println!(
            "  {} rounds, each a fresh stream's snapshot, then both baselines: snapshot {:.0} records/s \
             (median), sqlx {:.0} rows/s, tonic {:.0} records/s",
            rounds.len(),
            median(rounds.iter().map(|r| r.0).collect()),
            median(rounds.iter().map(|r| r.1).collect()),
            median(rounds.iter().map(|r| r.2).collect()),
        );
        println!("    snapshot/sqlx       {}", list(|r| r.0 / r.1));
        println!("    snapshot/tonic      {}", list(|r| r.0 / r.2));
    }
    if let Some((on, stubbed)) = policy_comparison {
        println!(
            "  policy on vs stubbed  {on:.0} vs {stubbed:.0} records/s (means of two fresh-stream runs each) \
             → on/stubbed = {:.3}",
            on / stubbed
        );
    }
    if let Some((scraped, quiet, scrapes, per_scrape)) = metrics_comparison {
        let runs = |v: &[(f64, f64)]| {
            v.iter()
                .map(|(rate, cpu)| format!("{rate:.0} ({cpu:.1} µs)"))
                .collect::<Vec<_>>()
                .join(" · ")
        };
        let rates = |v: &[(f64, f64)]| median(v.iter().map(|r| r.0).collect());
        let cpus = |v: &[(f64, f64)]| median(v.iter().map(|r| r.1).collect());
        println!(
            "  metrics scraped       {} records/s (CPU per record) ({scrapes} scrapes at 1/s)",
            runs(&scraped)
        );
        println!("  metrics not scraped   {}", runs(&quiet));
        println!(
            "  → scraped/not (medians): rate {:.3}, CPU per record {:.3}; one scrape takes {:.2} ms \
             (mean of 100 back to back), i.e. at most {:.2} % of one core at one scrape a second",
            rates(&scraped) / rates(&quiet),
            cpus(&scraped) / cpus(&quiet),
            per_scrape * 1e3,
            per_scrape * 100.0
        );
    }
    println!(
        "memory                  process RSS {} MiB at start, peak {} MiB during the snapshot",
        started_rss / 1024,
        peak_rss / 1024
    );
    if let Some((read, peak, end)) = slow {
        println!(
            "slow reader             {read} records at {}/s from `lefi serve` in its own process: \
             server peak RSS {} MiB, {} MiB at the end",
            options.slow_reader_rate,
            peak / 1024,
            end / 1024
        );
    }
    println!(
        "idle streams            {} streams with heartbeats: {:.1} KiB of `lefi serve` RSS each (its own process)",
        options.idle_streams, per_stream
    );
    Ok(())
}

/// One subscription of the party per person, to every benefit type from 2000 on, created in
/// batches.
async fn subscribe_everyone(
    store: &Store,
    party_id: &str,
    persons: &[String],
    benefits: &[String],
    clock: &Clock,
) -> anyhow::Result<()> {
    let mut items = Vec::new();
    for (i, person) in persons.iter().enumerate() {
        let person =
            crate::domain::Personnummer::parse(person, clock.today()).map_err(|e| anyhow::anyhow!("{e}"))?;
        items.push(NewSubscription {
            client_reference: format!("bench-{i}"),
            person,
            benefit_types: benefits.to_vec(),
            from_date: time::macros::date!(2000 - 01 - 01),
            legal_basis: "INS_COORDINATION".to_string(),
            case_reference: None,
            consent_id: None,
            start: crate::domain::delivery::SubscriptionStart::Snapshot,
            end_date: None,
            filter: Default::default(),
        });
        if items.len() == 10_000 {
            store
                .create_subscriptions(party_id, &std::mem::take(&mut items), clock.now_micros())
                .await?;
        }
    }
    store
        .create_subscriptions(party_id, &items, clock.now_micros())
        .await?;
    Ok(())
}

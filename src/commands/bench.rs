//! `lefi bench …`: measurements recorded in docs/BENCHMARKS.md. Benchmarks never run in the test
//! suite; they print figures for a person to record, with the machine and the date.

use std::time::Instant;

use crate::cli::BenchCommand;
use crate::store::Store;

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest {
            database_url,
            persons,
            batch,
        } => ingest(&database_url, persons, batch).await,
        BenchCommand::Delivery {
            database_url,
            persons,
            commits,
            commit_rate,
            idle_streams,
            slow_reader_records,
            slow_reader_rate,
            compare_policy_stub,
        } => {
            delivery::run(delivery::Options {
                database_url,
                persons,
                commits,
                commit_rate,
                idle_streams,
                slow_reader_records,
                slow_reader_rate,
                compare_policy_stub,
            })
            .await
        }
    }
}

/// Stores a deterministic synthetic register (seed 7) in batches, in-process (no gRPC), the way
/// the admin API's ingest does, and reports facts per second.
async fn ingest(url: &str, persons: usize, batch_size: usize) -> anyhow::Result<()> {
    let store = Store::connect(url, 4).await?;
    if store.head_seq().await? != 0 {
        anyhow::bail!("the database already holds a register; benchmark on a fresh, empty database");
    }
    let today = time::macros::date!(2026 - 01 - 01);
    let mut synth = crate::dev::synth::Synth::new(7, crate::dev::synth::DEFAULT_UNTIL);
    let mut facts = Vec::new();
    for _ in 0..persons {
        for f in synth.next_person()? {
            facts.push(crate::grpc::convert::new_fact(f, today).map_err(|e| anyhow::anyhow!("{e}"))?);
        }
    }
    let n = facts.len();
    println!(
        "ingesting {n} synthetic facts for {persons} persons into {} in batches of {batch_size}",
        crate::config::redact_url(url)
    );
    let started = Instant::now();
    let mut batch = Vec::with_capacity(batch_size);
    for f in facts {
        batch.push(f);
        if batch.len() == batch_size {
            store.ingest(std::mem::take(&mut batch), 0).await?;
        }
    }
    store.ingest(batch, 0).await?;
    let seconds = started.elapsed().as_secs_f64();
    println!("{n} facts in {seconds:.2} s = {:.0} facts/s", n as f64 / seconds);
    store.close().await;
    Ok(())
}

/// Resident memory of this process in KiB (Linux), for the memory figures.
fn rss_kib() -> Option<u64> {
    status_kib("self", "VmRSS:")
}

/// A memory field (`VmRSS:`, `VmHWM:`) of `/proc/<process>/status`, in KiB (Linux).
fn status_kib(process: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
}

/// CPU time used so far, in seconds: (this process, every local process named `postgres`), from
/// `/proc` (Linux; zero elsewhere). With the database on this machine the second figure is the
/// database server's share, so that a rate can be read as CPU per record on each side.
fn cpu_secs() -> (f64, f64) {
    // /proc reports CPU time in USER_HZ ticks, 100 a second on Linux.
    const TICKS_PER_SEC: f64 = 100.0;
    let ticks = |pid: &str| -> Option<(String, u64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let name = head.split_once('(')?.1.to_string();
        // After the name: state, ppid, … ; utime and stime are fields 14 and 15 of the line.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let user: u64 = fields.get(11)?.parse().ok()?;
        let system: u64 = fields.get(12)?.parse().ok()?;
        Some((name, user + system))
    };
    let own = ticks("self").map_or(0, |(_, t)| t);
    let database: u64 = std::fs::read_dir("/proc")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                .filter_map(|pid| ticks(&pid))
                .filter(|(name, _)| name == "postgres")
                .map(|(_, t)| t)
                .sum()
        })
        .unwrap_or(0);
    (own as f64 / TICKS_PER_SEC, database as f64 / TICKS_PER_SEC)
}

/// CPU microseconds per item on each side between two [`cpu_secs`] readings, as report text.
/// The PostgreSQL share is left out for SQLite, which runs inside this process.
fn cpu_per_item(before: (f64, f64), after: (f64, f64), items: u64, postgres: bool) -> String {
    let per = |secs: f64| secs * 1e6 / items.max(1) as f64;
    let own = format!("CPU {:.2} µs in lefi", per(after.0 - before.0));
    if postgres {
        format!("{own} + {:.2} µs in PostgreSQL", per(after.1 - before.1))
    } else {
        own
    }
}

/// A percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The delivery benchmark: a synthetic register with one subscription per person, served over
/// loopback mTLS in this process. Reports the snapshot rate beside two baselines measured in the
/// same run (a bare tonic stream of the same messages over the same mTLS, and a plain sqlx paged
/// read of the same rows), commit-to-delivery latency at a fixed commit rate, and memory.
pub mod delivery {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use anyhow::Context as _;
    use tokio_util::sync::CancellationToken;
    use tonic::{Request, Response, Status};

    use super::{cpu_per_item, cpu_secs, percentile, rss_kib};
    use crate::app::App;
    use crate::client::ClientPem;
    use crate::config::{DatabaseSettings, Settings, TlsMaterial};
    use crate::dev::certs::DevCa;
    use crate::domain::clock::Clock;
    use crate::domain::{OrgNumber, PartyKind};
    use crate::grpc::pb::lefi::v1 as pb;
    use crate::store::delivery::NewSubscription;
    use crate::store::{NewConnectedParty, Store};

    /// What `lefi bench delivery` was asked to do.
    pub struct Options {
        pub database_url: String,
        pub persons: usize,
        pub commits: usize,
        pub commit_rate: u64,
        pub idle_streams: usize,
        pub slow_reader_records: u64,
        pub slow_reader_rate: u64,
        pub compare_policy_stub: bool,
    }

    /// Messages kept from the snapshot for the bare-tonic baseline, which replays them as often as
    /// it takes to move as many records (keeping them all would weigh on the measured process).
    const KEPT_FOR_BASELINE: usize = 20_000;

    /// A bare DeliveryService that streams prepared messages: the tonic-over-mTLS baseline.
    struct Bare {
        events: Arc<Vec<pb::StreamEvent>>,
        /// Records to move in all: the prepared messages are replayed until this many went out.
        records: u64,
    }

    type BareStream = std::pin::Pin<Box<dyn futures::Stream<Item = Result<pb::StreamEvent, Status>> + Send>>;

    #[tonic::async_trait]
    impl pb::delivery_service_server::DeliveryService for Bare {
        async fn stream(&self, _request: Request<pb::StreamRequest>) -> Result<Response<BareStream>, Status> {
            let events = self.events.clone();
            let total = self.records;
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            tokio::spawn(async move {
                let mut sent = 0u64;
                while sent < total && !events.is_empty() {
                    for e in events.iter() {
                        if let Some(pb::stream_event::Event::Records(b)) = &e.event {
                            sent += b.records.len() as u64;
                        }
                        if tx.send(Ok(e.clone())).await.is_err() {
                            return;
                        }
                    }
                }
            });
            Ok(Response::new(Box::pin(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            )))
        }
    }

    pub async fn run(options: Options) -> anyhow::Result<()> {
        let started_rss = rss_kib().unwrap_or(0);
        let store = Store::connect(&options.database_url, 8).await?;
        if store.head_seq().await? != 0 {
            anyhow::bail!("the database already holds a register; benchmark on a fresh, empty database");
        }
        let clock = Clock::system();

        // 1. A synthetic register and one party with one subscription per person.
        println!("building a synthetic register of {} persons…", options.persons);
        let today = time::macros::date!(2026 - 01 - 01);
        let mut synth = crate::dev::synth::Synth::new(11, crate::dev::synth::DEFAULT_UNTIL);
        let mut persons = Vec::with_capacity(options.persons);
        let mut batch = Vec::new();
        for _ in 0..options.persons {
            let facts = synth.next_person()?;
            if let Some(first) = facts.first() {
                persons.push(first.person_id.clone());
            }
            for f in facts {
                batch.push(crate::grpc::convert::new_fact(f, today).map_err(|e| anyhow::anyhow!("{e}"))?);
            }
            if batch.len() >= 5_000 {
                store
                    .ingest(std::mem::take(&mut batch), clock.now_micros())
                    .await?;
            }
        }
        store.ingest(batch, clock.now_micros()).await?;
        let ca = DevCa::generate("bench CA")?;
        let server = ca.issue_server(&["localhost", "127.0.0.1"])?;
        let client = ca.issue_client("Bench Försäkring AB", None)?;
        let (facts, _) = crate::identity::certificate_facts(client.cert_pem.as_bytes())?;
        let benefits: Vec<String> = store.benefit_types().await?.into_iter().map(|b| b.code).collect();
        let party_id = store
            .insert_connected_party(
                &NewConnectedParty {
                    org_number: OrgNumber::parse("556677-8899").map_err(|e| anyhow::anyhow!("{e}"))?,
                    name: "Bench Försäkring AB".to_string(),
                    kind: PartyKind::Insurer,
                    contact_name: "Bench".to_string(),
                    contact_email: "bench@example.invalid".to_string(),
                    agreement_id: "BENCH".to_string(),
                    valid_from: time::macros::date!(2024 - 01 - 01),
                    notice_period_days: Some(90),
                    basis_codes: vec!["INS_COORDINATION".to_string()],
                    benefit_codes: benefits.clone(),
                    certificates: vec![facts],
                },
                clock.now_micros(),
            )
            .await?;
        // An ingest operator for the latency run, and a party without subscriptions whose streams
        // stay idle (heartbeats only) for the memory run.
        let ingest_cert = ca.issue_client("Bench Inläsning", None)?;
        let (ingest_facts, _) = crate::identity::certificate_facts(ingest_cert.cert_pem.as_bytes())?;
        store
            .upsert_operator(
                &ingest_facts.fingerprint,
                "Bench Inläsning",
                crate::domain::OperatorRole::Ingest,
                clock.now_micros(),
            )
            .await?;
        let idle_cert = ca.issue_client("Idle Försäkring AB", None)?;
        let (idle_facts, _) = crate::identity::certificate_facts(idle_cert.cert_pem.as_bytes())?;
        store
            .insert_connected_party(
                &NewConnectedParty {
                    org_number: OrgNumber::parse("556677-0003").map_err(|e| anyhow::anyhow!("{e}"))?,
                    name: "Idle Försäkring AB".to_string(),
                    kind: PartyKind::Insurer,
                    contact_name: "Bench".to_string(),
                    contact_email: "bench@example.invalid".to_string(),
                    agreement_id: "BENCH-IDLE".to_string(),
                    valid_from: time::macros::date!(2024 - 01 - 01),
                    notice_period_days: Some(90),
                    basis_codes: vec!["INS_COORDINATION".to_string()],
                    benefit_codes: benefits.clone(),
                    certificates: vec![idle_facts],
                },
                clock.now_micros(),
            )
            .await?;
        let mut items = Vec::new();
        for (i, person) in persons.iter().enumerate() {
            let person = crate::domain::Personnummer::parse(person, clock.today())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            items.push(NewSubscription {
                client_reference: format!("bench-{i}"),
                person: person.as_storage().to_string(),
                benefit_types: benefits.clone(),
                from_date: time::macros::date!(2000 - 01 - 01),
                legal_basis: "INS_COORDINATION".to_string(),
                case_reference: String::new(),
                consent_id: String::new(),
            });
            if items.len() == 10_000 {
                store
                    .create_subscriptions(&party_id, &std::mem::take(&mut items), clock.now_micros())
                    .await?;
            }
        }
        store
            .create_subscriptions(&party_id, &items, clock.now_micros())
            .await?;
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
        };
        let settings = Settings {
            party_addr: "127.0.0.1:0".parse()?,
            admin_addr: "127.0.0.1:0".parse()?,
            database: DatabaseSettings {
                url: options.database_url.clone(),
                max_connections: 8,
            },
            tls: tls.clone(),
            heartbeat_interval: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(5),
            max_consent_days: 1096,
        };
        let app = App::build_with_store(settings, store.clone(), clock.clone()).await?;
        let addr = format!("https://localhost:{}", app.party_addr()?.port());
        let app_admin_port = app.admin_addr()?.port();
        let stop = CancellationToken::new();
        let server_task = tokio::spawn(app.run_until(stop.clone()));
        let pem = ClientPem {
            cert: client.cert_pem.clone().into_bytes(),
            key: client.key_pem.clone().into_bytes(),
            ca: ca.cert_pem().as_bytes().to_vec(),
        };
        let admin_addr = format!("https://localhost:{}", app_admin_port);
        let ingest_pem = ClientPem {
            cert: ingest_cert.cert_pem.clone().into_bytes(),
            key: ingest_cert.key_pem.clone().into_bytes(),
            ca: ca.cert_pem().as_bytes().to_vec(),
        };
        let idle_pem = ClientPem {
            cert: idle_cert.cert_pem.clone().into_bytes(),
            key: idle_cert.key_pem.clone().into_bytes(),
            ca: ca.cert_pem().as_bytes().to_vec(),
        };
        let channel = crate::client::connect(&addr, &pem, None).await?;

        // 3. The snapshot: one stream, every subscription's start snapshot.
        let rss_before_stream = rss_kib().unwrap_or(0);
        let postgres = store.kind() == crate::store::BackendKind::Postgres;
        let cpu_before_stream = cpu_secs();
        let started = Instant::now();
        let mut stream = fresh_stream(channel.clone(), 1_000).await?;
        let mut records = 0u64;
        let mut snapshots = 0usize;
        let mut recorded: Vec<pb::StreamEvent> = Vec::new();
        let mut peak_rss = rss_before_stream;
        while snapshots < persons.len() {
            let Some(event) = stream.message().await? else {
                anyhow::bail!("the stream ended during the snapshot");
            };
            match &event.event {
                Some(pb::stream_event::Event::Records(b)) => records += b.records.len() as u64,
                Some(pb::stream_event::Event::SnapshotEnd(_)) => snapshots += 1,
                _ => {}
            }
            if recorded.len() < KEPT_FOR_BASELINE {
                recorded.push(event);
            }
            if snapshots % 1_000 == 0 {
                peak_rss = peak_rss.max(rss_kib().unwrap_or(0));
            }
        }
        let snapshot_secs = started.elapsed().as_secs_f64();
        let snapshot_rate = records as f64 / snapshot_secs;
        let snapshot_cpu = cpu_per_item(cpu_before_stream, cpu_secs(), records, postgres);

        // 4. Baseline: a plain sqlx paged read of the same rows on the same backend.
        let cpu_before_read = cpu_secs();
        let started = Instant::now();
        let mut after = 0u64;
        let mut rows = 0u64;
        loop {
            let page = store.log_after(after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            rows += page.len() as u64;
        }
        let sqlx_rate = rows as f64 / started.elapsed().as_secs_f64();
        let sqlx_cpu = cpu_per_item(cpu_before_read, cpu_secs(), rows, postgres);

        // 5. Baseline: a bare tonic stream of the same messages over the same mTLS.
        let bare_records = records;
        let bare_rate = bare_baseline(&tls, &pem, recorded, bare_records).await?;

        // 5b. Optionally, the snapshot again with the policy check stubbed out and on, alternating.
        let policy_comparison = if options.compare_policy_stub {
            Some(compare_policy_stub(&channel, persons.len()).await?)
        } else {
            None
        };

        // 6. Commit-to-delivery latency at a fixed commit rate, one fact per commit.
        let admin = crate::client::connect(&admin_addr, &ingest_pem, None).await?;
        let lat = latency(admin, &persons, &mut stream, options.commits, options.commit_rate).await?;

        // 7. Idle streams with heartbeats.
        let before_idle = rss_kib().unwrap_or(0);
        let mut idle = Vec::new();
        let mut channels = Vec::new();
        for _ in 0..(options.idle_streams / 100).max(1) {
            channels.push(crate::client::connect(&addr, &idle_pem, None).await?);
        }
        for i in 0..options.idle_streams {
            let ch = channels[i % channels.len()].clone();
            let mut s = pb::delivery_service_client::DeliveryServiceClient::new(ch)
                .stream(pb::StreamRequest {
                    cursor: String::new(),
                    max_batch_records: 0,
                    heartbeat_interval: Some(prost_types::Duration {
                        seconds: 15,
                        nanos: 0,
                    }),
                })
                .await?
                .into_inner();
            s.message().await?;
            idle.push(s);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after_idle = rss_kib().unwrap_or(0);
        let per_stream = after_idle.saturating_sub(before_idle) as f64 / options.idle_streams.max(1) as f64;
        drop(idle);

        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), server_task).await;

        // 8. A slow reader against `lefi serve` in a process of its own, so that the memory
        //    measured is the server's alone.
        let slow = if options.slow_reader_records > 0 {
            Some(
                slow_reader(
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
        if let Some((on, stubbed)) = policy_comparison {
            println!(
                "  policy on vs stubbed  {on:.0} vs {stubbed:.0} records/s (means of two fresh-stream runs each) \
                 → on/stubbed = {:.3}",
                on / stubbed
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
            "idle streams            {} streams with heartbeats: {:.1} KiB RSS each",
            options.idle_streams, per_stream
        );
        Ok(())
    }

    /// Opens a stream with an empty cursor: every subscription's start snapshot, then changes.
    async fn fresh_stream(
        channel: tonic::transport::Channel,
        max_batch_records: u32,
    ) -> anyhow::Result<tonic::Streaming<pb::StreamEvent>> {
        Ok(pb::delivery_service_client::DeliveryServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024)
            .stream(pb::StreamRequest {
                cursor: String::new(),
                max_batch_records,
                heartbeat_interval: None,
            })
            .await?
            .into_inner())
    }

    /// Opens a fresh stream (empty cursor) and reads every start snapshot; returns the records
    /// received and the seconds it took.
    #[cfg(feature = "bench-policy-stub")]
    async fn time_snapshot(
        channel: &tonic::transport::Channel,
        subscriptions: usize,
    ) -> anyhow::Result<(u64, f64)> {
        let started = Instant::now();
        let mut stream = fresh_stream(channel.clone(), 1_000).await?;
        let (mut records, mut snapshots) = (0u64, 0usize);
        while snapshots < subscriptions {
            match stream.message().await?.and_then(|e| e.event) {
                None => anyhow::bail!("the stream ended during the snapshot"),
                Some(pb::stream_event::Event::Records(b)) => records += b.records.len() as u64,
                Some(pb::stream_event::Event::SnapshotEnd(_)) => snapshots += 1,
                Some(_) => {}
            }
        }
        Ok((records, started.elapsed().as_secs_f64()))
    }

    /// Snapshot rates (records/s) with the policy check on and stubbed out, two runs each,
    /// alternating: (on, stubbed).
    #[cfg(feature = "bench-policy-stub")]
    async fn compare_policy_stub(
        channel: &tonic::transport::Channel,
        subscriptions: usize,
    ) -> anyhow::Result<(f64, f64)> {
        let (mut on, mut stubbed) = (Vec::new(), Vec::new());
        for round in 0..4 {
            let stub = round % 2 == 0;
            crate::policy::bench_stub::set(stub);
            let (records, secs) = time_snapshot(channel, subscriptions).await?;
            if stub { &mut stubbed } else { &mut on }.push(records as f64 / secs);
        }
        crate::policy::bench_stub::set(false);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        Ok((mean(&on), mean(&stubbed)))
    }

    #[cfg(not(feature = "bench-policy-stub"))]
    async fn compare_policy_stub(
        _channel: &tonic::transport::Channel,
        _subscriptions: usize,
    ) -> anyhow::Result<(f64, f64)> {
        anyhow::bail!(
            "--compare-policy-stub needs a build with the benchmark-only stub: \
             cargo run --release --features bench-policy-stub -- bench delivery …"
        )
    }

    /// Starts `lefi serve` on the benchmark's database in a child process, reads a fresh stream
    /// at `rate` records per second until `limit` records or the end of the start snapshots, and
    /// reports (records read, the server process's peak resident memory in KiB, its resident memory
    /// when the read ended).
    async fn slow_reader(
        database_url: &str,
        tls: &TlsMaterial,
        pem: &ClientPem,
        subscriptions: usize,
        limit: u64,
        rate: u64,
    ) -> anyhow::Result<(u64, u64, u64)> {
        let dir = tempfile::tempdir()?;
        let file = |name: &str, bytes: &[u8]| -> anyhow::Result<std::path::PathBuf> {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes)?;
            Ok(path)
        };
        let cert = file("server.pem", &tls.server_cert_pem)?;
        let key = file("server.key", &tls.server_key_pem)?;
        let ca = file("ca.pem", &tls.party_ca_pem)?;
        let free_port = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        };
        let (port, admin_port) = (free_port()?, free_port()?);
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["--log", "warn", "serve", "--database-url", database_url])
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--tls-cert")
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .arg("--client-ca")
            .arg(&ca)
            .arg("--operator-ca")
            .arg(&ca)
            .kill_on_drop(true)
            .spawn()
            .context("starting `lefi serve` for the slow-reader run")?;
        let pid = child.id().context("the server process has no id")?;
        let status_of = |field: &str| super::status_kib(&pid.to_string(), field);
        let addr = format!("https://localhost:{port}");
        let mut channel = None;
        for _ in 0..100 {
            if let Ok(c) = crate::client::connect(&addr, pem, None).await {
                channel = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let channel = channel.context("the server process did not start listening within 10 s")?;
        let mut stream = fresh_stream(channel, 100).await?;
        let started = Instant::now();
        let (mut records, mut snapshots) = (0u64, 0usize);
        while records < limit && snapshots < subscriptions {
            match stream.message().await?.and_then(|e| e.event) {
                None => anyhow::bail!("the stream ended during the slow read"),
                Some(pb::stream_event::Event::Records(b)) => records += b.records.len() as u64,
                Some(pb::stream_event::Event::SnapshotEnd(_)) => snapshots += 1,
                Some(_) => {}
            }
            let due = started + Duration::from_secs_f64(records as f64 / rate.max(1) as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let peak = status_of("VmHWM:").unwrap_or(0);
        let end = status_of("VmRSS:").unwrap_or(0);
        drop(stream);
        child.start_kill()?;
        let _ = child.wait().await;
        Ok((records, peak, end))
    }

    async fn bare_baseline(
        tls: &TlsMaterial,
        pem: &ClientPem,
        events: Vec<pb::StreamEvent>,
        records: u64,
    ) -> anyhow::Result<f64> {
        let config = crate::tls::server_config(
            &tls.server_cert_pem,
            &tls.server_key_pem,
            "bench CA",
            &tls.party_ca_pem,
            &[],
        )?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let stop = CancellationToken::new();
        let incoming = crate::tls::incoming(listener, config, stop.clone());
        let service = pb::delivery_service_server::DeliveryServiceServer::new(Bare {
            events: Arc::new(events),
            records,
        })
        .max_encoding_message_size(64 * 1024 * 1024);
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned()),
        );
        let channel = crate::client::connect(&format!("https://localhost:{port}"), pem, None).await?;
        let started = Instant::now();
        let mut stream = pb::delivery_service_client::DeliveryServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024)
            .stream(pb::StreamRequest::default())
            .await?
            .into_inner();
        let mut seen = 0u64;
        while let Some(e) = stream.message().await? {
            if let Some(pb::stream_event::Event::Records(b)) = &e.event {
                seen += b.records.len() as u64;
            }
        }
        let rate = seen as f64 / started.elapsed().as_secs_f64();
        stop.cancel();
        let _ = server.await;
        Ok(rate)
    }

    /// Commit-to-delivery figures, in milliseconds.
    struct Latency {
        p50: f64,
        p99: f64,
        delivered: usize,
        /// Sending a fact to the ingest API's answer that it is committed.
        ack_p50: f64,
        ack_p99: f64,
    }

    /// Ingests `commits` facts one per transaction at `rate` per second through the admin API (the
    /// real path: commit, notify, stream) and measures, per fact, the time from sending it to
    /// receiving it on the stream. The figure includes the ingest call itself, so it is an upper
    /// bound on commit-to-delivery.
    async fn latency(
        admin: tonic::transport::Channel,
        persons: &[String],
        stream: &mut tonic::Streaming<pb::StreamEvent>,
        commits: usize,
        rate: u64,
    ) -> anyhow::Result<Latency> {
        use crate::grpc::pb::lefi::admin::v1 as admin_pb;
        let sent: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::with_capacity(commits)));
        let (tx, rx) = tokio::sync::mpsc::channel::<admin_pb::IngestRequest>(16);
        let mut answers = admin_pb::register_admin_service_client::RegisterAdminServiceClient::new(admin)
            .ingest(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        let writer = {
            let sent = sent.clone();
            let persons = persons.to_vec();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
                for i in 0..commits {
                    tick.tick().await;
                    let fact = admin_pb::Fact {
                        source_system: "BENCH".to_string(),
                        source_id: format!("L{i}"),
                        source_version: 1,
                        person_id: persons[i % persons.len()].clone(),
                        benefit_type: "SJP".to_string(),
                        kind: pb::RecordKind::New as i32,
                        body: Some(admin_pb::fact::Body::PersonEvent(pb::PersonEvent {
                            kind: pb::PersonEventKind::LifeCertificateReceived as i32,
                            event_date: "2025-06-01".to_string(),
                        })),
                        ..Default::default()
                    };
                    if let Ok(mut s) = sent.lock() {
                        s.push(Instant::now());
                    }
                    if tx
                        .send(admin_pb::IngestRequest { fact: Some(fact) })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            })
        };
        let answered = tokio::spawn(async move {
            let mut seq_of_index = HashMap::new();
            while let Ok(Some(answer)) = answers.message().await {
                seq_of_index.insert(answer.register_sequence, (answer.index as usize, Instant::now()));
                if seq_of_index.len() == commits {
                    break;
                }
            }
            seq_of_index
        });
        let mut received: Vec<(u64, Instant)> = Vec::with_capacity(commits);
        let deadline = Instant::now() + Duration::from_secs(60 + commits as u64 / rate.max(1));
        while received.len() < commits && Instant::now() < deadline {
            let next = tokio::time::timeout(Duration::from_secs(20), stream.message())
                .await
                .context("waiting for a change")??;
            let Some(event) = next else { break };
            if let Some(pb::stream_event::Event::Change(c)) = &event.event {
                received.push((c.register_sequence, Instant::now()));
            }
        }
        let _ = writer.await;
        let seq_of_index = answered.await.unwrap_or_default();
        let sent = sent.lock().map(|s| s.clone()).unwrap_or_default();
        let mut latencies: Vec<f64> = received
            .iter()
            .filter_map(|(seq, at)| {
                let (index, _) = seq_of_index.get(seq)?;
                let start = sent.get(*index)?;
                Some(at.saturating_duration_since(*start).as_secs_f64() * 1_000.0)
            })
            .collect();
        latencies.sort_by(|a, b| a.total_cmp(b));
        let mut acks: Vec<f64> = seq_of_index
            .values()
            .filter_map(|(index, at)| {
                let start = sent.get(*index)?;
                Some(at.saturating_duration_since(*start).as_secs_f64() * 1_000.0)
            })
            .collect();
        acks.sort_by(|a, b| a.total_cmp(b));
        Ok(Latency {
            p50: percentile(&latencies, 0.5),
            p99: percentile(&latencies, 0.99),
            delivered: latencies.len(),
            ack_p50: percentile(&acks, 0.5),
            ack_p99: percentile(&acks, 0.99),
        })
    }
}

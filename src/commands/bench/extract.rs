//! `lefi bench extract`: a statistics order whose population is every person of a synthetic
//! register, taken through the order's steps in-process (no gRPC), and its extract produced as the
//! admin API's ProduceExtract does — the files written ([`crate::extract::produce`]) and then taken
//! into the database with the EXTRACT step — beside a plain sqlx read of the same register rows on
//! the same backend, in the same run. The process's peak resident memory is measured over the
//! extract alone (the kernel's high-water mark is reset before it), to show that it is streamed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use time::macros::date;

use super::measure::{cpu_per_item, cpu_secs, reset_peak_rss, rss_kib, status_kib};
use super::{BenchParty, connect_empty, load_register, sqlx_read};
use crate::cli::BenchExtractArgs;
use crate::dev::certs::DevCa;
use crate::dev::synth::DEFAULT_UNTIL;
use crate::domain::Personnummer;
use crate::domain::clock::Clock;
use crate::domain::statistics::order::{OrderStep, Side};
use crate::domain::statistics::population::Member;
use crate::store::Store;
use crate::store::statistics::{NewOrder, Order, Quote, StepDetail};

/// The statistician who drafts the quote and produces the extract, and the one who reviews it.
const DRAFTER: &str = "Bench Statistiker";
const REVIEWER: &str = "Bench Granskare";

pub(super) async fn run(options: BenchExtractArgs) -> anyhow::Result<()> {
    let store = connect_empty(&options.database_url, 4).await?;
    let clock = Clock::system();
    let postgres = store.kind() == crate::store::BackendKind::Postgres;

    println!("building a synthetic register of {} persons…", options.persons);
    let persons = load_register(&store, options.persons, &clock).await?;
    let benefits: Vec<String> = store.benefit_codes().await?;
    println!("an order over all of them, every benefit type, 2000-01-01 to {DEFAULT_UNTIL}…");
    let order = order_ready_to_extract(&store, &persons, &benefits, &clock).await?;
    // As after any bulk load: let the database settle before anything is measured.
    store.settle().await?;
    let sequence = store.head_seq().await?;

    let mut reads = Vec::new();
    let mut extracts = Vec::new();
    for round in 1..=options.rounds {
        let read = sqlx_read(&store, postgres).await?;
        println!(
            "round {round}: plain sqlx read  {} rows: {:.0} rows/s ({})",
            read.0, read.1, read.2
        );
        let extract = extract_once(&store, (&order, sequence), &clock, postgres, read.0).await?;
        println!(
            "round {round}: extract          {:.2} s (files {:.2} s + stored {:.2} s)",
            extract.produce_secs + extract.store_secs,
            extract.produce_secs,
            extract.store_secs
        );
        reads.push(read);
        extracts.push(extract);
    }
    let last_read = sqlx_read(&store, postgres).await?;
    println!(
        "after:   plain sqlx read  {} rows: {:.0} rows/s ({})",
        last_read.0, last_read.1, last_read.2
    );
    reads.push(last_read);

    let rows = reads[0].0;
    let read_rate = reads.iter().map(|r| r.1).sum::<f64>() / reads.len() as f64;
    println!();
    println!(
        "backend                 {}",
        crate::config::redact_url(&options.database_url)
    );
    println!(
        "register                {} persons, {rows} log rows at sequence {sequence}",
        persons.len()
    );
    println!(
        "plain sqlx read         {read_rate:.0} rows/s (mean of {} reads, keyset pages of 10,000)",
        reads.len()
    );
    for (i, e) in extracts.iter().enumerate() {
        let total = e.produce_secs + e.store_secs;
        let rate = rows as f64 / total;
        println!(
            "extract, round {}        {rows} register rows in {total:.2} s = {rate:.0} rows/s → extract/sqlx = {:.2}",
            i + 1,
            rate / read_rate
        );
        println!(
            "  files only            {:.2} s = {:.0} rows/s → {:.2} × the read; {}",
            e.produce_secs,
            rows as f64 / e.produce_secs,
            rows as f64 / e.produce_secs / read_rate,
            e.produce_cpu
        );
        println!(
            "  output                {} episode and {} panel rows = {:.0} records/s; {} files, {:.1} MiB",
            e.episodes,
            e.panels,
            (e.episodes + e.panels) as f64 / total,
            e.files,
            e.bytes as f64 / 1_048_576.0
        );
        println!(
            "  memory                writing the files: RSS {} MiB before, peak {} MiB (+{} MiB); \
             storing them: {} MiB before, peak {} MiB (+{} MiB){}",
            e.rss_before / 1024,
            e.peak_files / 1024,
            e.peak_files.saturating_sub(e.rss_before) / 1024,
            e.rss_before_store / 1024,
            e.peak_store / 1024,
            e.peak_store.saturating_sub(e.rss_before_store) / 1024,
            if e.peak_is_exact {
                ""
            } else {
                " (sampled: the kernel's high-water mark could not be reset)"
            }
        );
    }
    store.close().await;
    Ok(())
}

/// What one production of the extract measured.
struct ExtractRun {
    produce_secs: f64,
    store_secs: f64,
    produce_cpu: String,
    episodes: u64,
    panels: u64,
    files: usize,
    bytes: u64,
    /// Resident memory before the files are written, and its peak while they are (KiB).
    rss_before: u64,
    peak_files: u64,
    /// Resident memory before the store takes the files in, and its peak while it does (KiB).
    rss_before_store: u64,
    peak_store: u64,
    /// Whether the peaks are the kernel's high-water marks since a reset just before each phase
    /// (or only the largest of the samples taken after each batch).
    peak_is_exact: bool,
}

/// Produces the extract of `order` at `sequence` into a temporary directory and stores it with the
/// EXTRACT step, as the admin API does; times both.
/// `rows` is the register rows the extract reads, for the CPU per row.
async fn extract_once(
    store: &Store,
    (order, sequence): (&Order, u64),
    clock: &Clock,
    postgres: bool,
    rows: u64,
) -> anyhow::Result<ExtractRun> {
    let dir = tempfile::tempdir()?;
    // The coverage the manifest records, read as ProduceExtract reads it, before the timed run:
    // the measure compares the extract with the plain read of the same rows.
    let coverage = crate::extract::coverage_used(
        store,
        &order.order.benefit_types,
        (order.order.period_from, order.order.period_to),
        clock.today(),
    )
    .await?;
    let peak_is_exact = reset_peak_rss();
    let rss_before = rss_kib().unwrap_or(0);
    let sampled = AtomicU64::new(rss_before);
    let sample = |_: u64, _: u64| {
        sampled.fetch_max(rss_kib().unwrap_or(0), Ordering::Relaxed);
    };
    let cpu_before = cpu_secs();
    let started = Instant::now();
    let now = clock.now_micros();
    let (files, manifest) =
        crate::extract::produce(store, order, sequence, dir.path(), (now, coverage), &sample).await?;
    let produce_secs = started.elapsed().as_secs_f64();
    let produce_cpu = cpu_per_item(cpu_before, cpu_secs(), rows, postgres);
    let peak_files = peak(peak_is_exact, &sampled);
    let json = serde_json::to_string(&manifest)?;
    let peak_is_exact = peak_is_exact && reset_peak_rss();
    let rss_before_store = rss_kib().unwrap_or(0);
    sampled.store(rss_before_store, Ordering::Relaxed);
    let stored = Instant::now();
    store
        .order_step(
            &order.order_id,
            None,
            OrderStep::Extract,
            Side::Agency,
            DRAFTER,
            &StepDetail::Extracted {
                sequence,
                files,
                manifest: json,
            },
            None,
            clock.now_micros(),
        )
        .await?;
    let store_secs = stored.elapsed().as_secs_f64();
    // Without a high-water mark, the store step has no sample of its own: its end is the figure.
    sampled.fetch_max(rss_kib().unwrap_or(0), Ordering::Relaxed);
    let peak_store = peak(peak_is_exact, &sampled);
    let rows_of = |name: &str| {
        manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .map_or(0, |f| f.rows)
    };
    Ok(ExtractRun {
        produce_secs,
        store_secs,
        produce_cpu: format!("{produce_cpu} per register row"),
        episodes: rows_of("episodes.csv"),
        panels: rows_of("panels.csv"),
        files: manifest.files.len(),
        bytes: manifest.files.iter().map(|f| f.size_bytes).sum(),
        rss_before,
        peak_files,
        rss_before_store,
        peak_store,
        peak_is_exact,
    })
}

/// The peak resident memory since the last reset: the kernel's high-water mark, or the largest
/// sample.
fn peak(exact: bool, sampled: &AtomicU64) -> u64 {
    if exact {
        status_kib("self", "VmHWM:").unwrap_or(0)
    } else {
        sampled.load(Ordering::Relaxed)
    }
}

/// Submits an order for every person of `persons` and takes it, through the store's order steps
/// (the rules of each step apply as through the APIs), to QUOTE_ACCEPTED with its population.
async fn order_ready_to_extract(
    store: &Store,
    persons: &[String],
    benefits: &[String],
    clock: &Clock,
) -> anyhow::Result<Order> {
    let ca = DevCa::generate("bench CA")?;
    let cert = ca.issue_client("Bench Statistikmyndighet", None)?;
    let party = BenchParty {
        org_number: "556677-0011",
        name: "Bench Statistikmyndighet",
        agreement_id: "BENCH-STAT",
    };
    let party_id = party.insert(store, &cert, benefits, clock).await?;
    let new_order = NewOrder {
        order_reference: "BENCH-EXTRACT".to_string(),
        project: "lefi bench extract".to_string(),
        purpose: "Benchmark of the extract".to_string(),
        legal_ground: "benchmark (synthetic register)".to_string(),
        population_description: "Every person of the synthetic register".to_string(),
        benefit_types: benefits.to_vec(),
        variables: "episodes and panels".to_string(),
        period_from: date!(2000 - 01 - 01),
        period_to: DEFAULT_UNTIL,
        wished_delivery: None,
        contact_name: "Bench".to_string(),
        contact_email: "bench@example.invalid".to_string(),
        special_duty: false,
    };
    let (order, _) = store
        .submit_order(&party_id, &new_order, clock.today(), clock.now_micros())
        .await?;
    let today = clock.today();
    let mut members = Vec::with_capacity(persons.len());
    for (i, person) in persons.iter().enumerate() {
        members.push(Member {
            person: Personnummer::parse(person, today).map_err(|e| anyhow::anyhow!("{e}"))?,
            // Zero-padded, so that the extract's order (by serial as text) is the register's.
            serial: format!("{:07}", i + 1),
            extra: Vec::new(),
        });
    }
    let steps = [
        (OrderStep::ConfirmReceipt, Side::Agency, DRAFTER, StepDetail::None),
        (
            OrderStep::DraftQuote,
            Side::Agency,
            DRAFTER,
            StepDetail::Quote(Quote {
                drafted_by: DRAFTER.to_string(),
                specification: "episodes and panels, every benefit".to_string(),
                centihours: 100,
                net_ore: 85_000,
                vat_ore: 21_250,
            }),
        ),
        (OrderStep::AgreeContent, Side::Orderer, "bench", StepDetail::None),
        (
            OrderStep::Release,
            Side::Agency,
            REVIEWER,
            StepDetail::Decision("benchmark".to_string()),
        ),
        (
            OrderStep::ReceivePopulation,
            Side::Agency,
            REVIEWER,
            StepDetail::Population(members),
        ),
        (OrderStep::AcceptQuote, Side::Orderer, "bench", StepDetail::None),
    ];
    let mut order = order;
    for (step, side, actor, detail) in steps {
        order = store
            .order_step(
                &order.order_id,
                None,
                step,
                side,
                actor,
                &detail,
                None,
                clock.now_micros(),
            )
            .await?;
    }
    Ok(order)
}

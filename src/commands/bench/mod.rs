//! `lefi bench …`: measurements recorded in docs/BENCHMARKS.md. Benchmarks never run in the test
//! suite; they print figures for a person to record, with the machine and the date.
//!
//! - [`ingest`]: the register's ingest rate, in-process.
//! - [`delivery`]: the delivery stream over loopback mTLS, beside baselines measured in the same run.
//! - [`extract`]: a statistics extract of the whole register, beside a plain sqlx read of it.
//! - [`measure`]: memory, CPU time and percentiles, read the same way by every benchmark.

mod delivery;
mod extract;
mod ingest;
mod measure;

pub(crate) use measure::status_kib;

use std::time::Instant;

use crate::cli::BenchCommand;
use crate::dev::certs::Issued;
use crate::dev::synth::{DEFAULT_UNTIL, Synth};
use crate::domain::clock::Clock;
use crate::domain::register::NewFact;
use crate::store::Store;
use crate::store::parties::Actor;
use measure::{cpu_per_item, cpu_secs};

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest {
            database_url,
            persons,
            batch,
        } => ingest::run(&database_url, persons, batch).await,
        BenchCommand::Delivery(args) => delivery::run(args).await,
        BenchCommand::Extract(args) => extract::run(args).await,
    }
}

/// Connects to the benchmark's database, which must not hold a register yet.
async fn connect_empty(url: &str, max_connections: u32) -> anyhow::Result<Store> {
    let store = Store::connect(url, max_connections).await?;
    if store.head_seq().await? != 0 {
        anyhow::bail!("the database already holds a register; benchmark on a fresh, empty database");
    }
    Ok(store)
}

/// A deterministic synthetic register (history up to [`DEFAULT_UNTIL`]) whose facts are checked
/// as the admin API's ingest checks them.
struct SynthRegister {
    synth: Synth,
}

impl SynthRegister {
    fn new(seed: u64) -> Self {
        Self {
            synth: Synth::new(seed, DEFAULT_UNTIL),
        }
    }

    /// The next person's identity number and checked facts.
    fn next_person(&mut self) -> anyhow::Result<(Option<String>, Vec<NewFact>)> {
        self.next_person_corrected(0)
    }

    /// [`SynthRegister::next_person`], each fact (but retractions) sent again as the correction
    /// `round` versions later (0: as first sent).
    fn next_person_corrected(&mut self, round: u64) -> anyhow::Result<(Option<String>, Vec<NewFact>)> {
        use crate::grpc::pb::lefi::v1::RecordKind;
        // The reference date of the checks: after every synthetic date.
        let today = time::macros::date!(2026 - 01 - 01);
        let mut facts = self.synth.next_person()?;
        if round > 0 {
            facts.retain(|f| f.kind != RecordKind::Retraction as i32);
            for f in &mut facts {
                f.source_version += round * 10;
                f.kind = RecordKind::Correction as i32;
            }
        }
        let person = facts.first().map(|f| f.person_id.clone());
        let checked = facts
            .into_iter()
            .map(|f| crate::grpc::convert::new_fact(f, today).map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<anyhow::Result<_>>()?;
        Ok((person, checked))
    }
}

/// Stores a deterministic synthetic register (seed 11) of `persons` persons in batches; returns
/// their identity numbers.
async fn load_register(store: &Store, persons: usize, clock: &Clock) -> anyhow::Result<Vec<String>> {
    let mut register = SynthRegister::new(11);
    let mut ids = Vec::with_capacity(persons);
    let mut batch = Vec::new();
    for _ in 0..persons {
        let (person, facts) = register.next_person()?;
        ids.extend(person);
        batch.extend(facts);
        if batch.len() >= 5_000 {
            store
                .ingest(std::mem::take(&mut batch), clock.now_micros())
                .await?;
        }
    }
    store.ingest(batch, clock.now_micros()).await?;
    Ok(ids)
}

/// Sends every fact of [`load_register`]'s register (but retractions) again as a correction,
/// `depth` times: each fact gets `depth` more versions in the log (retracted facts refuse them).
async fn deepen_history(store: &Store, persons: usize, depth: u32, clock: &Clock) -> anyhow::Result<()> {
    for round in 1..=u64::from(depth) {
        let mut register = SynthRegister::new(11);
        let mut batch = Vec::new();
        for _ in 0..persons {
            batch.extend(register.next_person_corrected(round)?.1);
            if batch.len() >= 5_000 {
                store
                    .ingest(std::mem::take(&mut batch), clock.now_micros())
                    .await?;
            }
        }
        store.ingest(batch, clock.now_micros()).await?;
    }
    Ok(())
}

/// An insurer the benchmark registers as connected, with every benefit type and the basis
/// INS_COORDINATION.
struct BenchParty {
    org_number: &'static str,
    name: &'static str,
    agreement_id: &'static str,
}

impl BenchParty {
    /// Registers the party with `cert` as its certificate; returns its id.
    async fn insert(
        &self,
        store: &Store,
        cert: &Issued,
        benefits: &[String],
        clock: &Clock,
    ) -> anyhow::Result<String> {
        let (facts, _) = crate::identity::certificate_facts(cert.cert_pem.as_bytes())?;
        let party = crate::dev::parties::run_insurer(
            "Bench",
            self.org_number,
            self.name,
            self.agreement_id.to_string(),
            benefits,
            facts,
        )?;
        Ok(store
            .onboard_connected(&Actor::system("lefi bench"), &party, clock.now_micros())
            .await?)
    }
}

/// A plain sqlx paged read of the whole register log: (rows, rows per second, CPU per row).
async fn sqlx_read(store: &Store, postgres: bool) -> anyhow::Result<(u64, f64, String)> {
    let cpu_before = cpu_secs();
    let started = Instant::now();
    let mut after = 0u64;
    let mut rows = 0u64;
    loop {
        let page = store.log_after(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        rows += page.len() as u64;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    Ok((rows, rate, cpu_per_item(cpu_before, cpu_secs(), rows, postgres)))
}

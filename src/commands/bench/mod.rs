//! `lefi bench …`: measurements recorded in docs/BENCHMARKS.md. Benchmarks never run in the test
//! suite; they print figures for a person to record, with the machine and the date.
//!
//! - [`ingest`]: the register's ingest rate, in-process.
//! - [`delivery`]: the delivery stream over loopback mTLS, beside baselines measured in the same run.
//! - [`measure`]: memory, CPU time and percentiles, read the same way by every benchmark.

mod delivery;
mod ingest;
mod measure;

pub(crate) use measure::status_kib;

use crate::cli::BenchCommand;
use crate::dev::synth::{DEFAULT_UNTIL, Synth};
use crate::domain::register::NewFact;
use crate::store::Store;

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest {
            database_url,
            persons,
            batch,
        } => ingest::run(&database_url, persons, batch).await,
        BenchCommand::Delivery(args) => delivery::run(args).await,
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
        // The reference date of the checks: after every synthetic date.
        let today = time::macros::date!(2026 - 01 - 01);
        let facts = self.synth.next_person()?;
        let person = facts.first().map(|f| f.person_id.clone());
        let checked = facts
            .into_iter()
            .map(|f| crate::grpc::convert::new_fact(f, today).map_err(|e| anyhow::anyhow!("{e}")))
            .collect::<anyhow::Result<_>>()?;
        Ok((person, checked))
    }
}

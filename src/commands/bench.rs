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
    let mut synth = crate::synth::Synth::new(7, crate::synth::DEFAULT_UNTIL);
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

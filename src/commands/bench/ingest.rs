//! `lefi bench ingest`: the register's ingest rate, in-process (no gRPC).

use std::time::Instant;

use super::{SynthRegister, connect_empty, cpu_per_item, cpu_secs};

/// Stores a deterministic synthetic register (seed 7) in batches, in-process (no gRPC), the way
/// the admin API's ingest does, and reports facts per second.
pub(super) async fn run(url: &str, persons: usize, batch_size: usize) -> anyhow::Result<()> {
    let store = connect_empty(url, 4).await?;
    let mut register = SynthRegister::new(7);
    let mut facts = Vec::new();
    for _ in 0..persons {
        facts.extend(register.next_person()?.1);
    }
    let n = facts.len();
    println!(
        "ingesting {n} synthetic facts for {persons} persons into {} in batches of {batch_size}",
        crate::config::redact_url(url)
    );
    let postgres = store.kind() == crate::store::BackendKind::Postgres;
    let cpu_before = cpu_secs();
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
    let cpu = cpu_per_item(cpu_before, cpu_secs(), n as u64, postgres);
    println!("{n} facts in {seconds:.2} s = {:.0} facts/s", n as f64 / seconds);
    println!("  per fact  {cpu}");
    store.close().await;
    Ok(())
}

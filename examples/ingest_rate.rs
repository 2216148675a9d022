//! Measures the store's ingest rate in-process, without gRPC: a deterministic synthetic register
//! (`lefi synth`'s, seed 7) stored in batches of 5,000 facts, as the admin API does.
//!
//! `cargo run --release --example ingest_rate -- sqlite:///tmp/rate.db 5500` (5,500 persons are
//! about 94,000 facts). Use a fresh database each run. `RUST_LOG=lefi=debug` shows the time each
//! batch spends looking up, planning and writing.
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "sqlite:///tmp/rate.db".into());
    let persons: usize = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(5500);
    let store = lefi::store::Store::connect(&url, 4).await?;
    let today = time::macros::date!(2026 - 01 - 01);
    let mut synth = lefi::synth::Synth::new(7, lefi::synth::DEFAULT_UNTIL);
    let mut facts = Vec::new();
    for _ in 0..persons {
        for f in synth.next_person()? {
            facts.push(lefi::grpc::convert::new_fact(f, today).map_err(|e| anyhow::anyhow!("{e}"))?);
        }
    }
    let n = facts.len();
    let started = Instant::now();
    let mut batch = Vec::new();
    for f in facts {
        batch.push(f);
        if batch.len() == 5000 {
            store.ingest(std::mem::take(&mut batch), 0).await?;
        }
    }
    store.ingest(batch, 0).await?;
    let s = started.elapsed().as_secs_f64();
    println!("{n} facts in {s:.2} s = {:.0} facts/s", n as f64 / s);
    Ok(())
}

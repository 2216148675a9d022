//! Development and demo code. Nothing here runs without `serve --dev`, `lefi dev-certs`,
//! `lefi synth`, `lefi bench` or the tests: a production start neither generates nor seeds anything.
//!
//! - [`certs`]: a development certificate authority (rcgen) that writes `certs-dev/` and gives the
//!   black-box tests fresh certificates.
//! - [`parties`]: the demo operator and the two demo parties `serve --dev` registers.
//! - [`pg_cluster`]: a PostgreSQL cluster of a caller's own (initdb, pg_ctl), for `lefi chaos`
//!   and the tests that stop their database.
//! - [`register`]: the demo ingest operator and the small synthetic register `serve --dev` loads.
//! - [`synth`]: the deterministic synthetic register (test-range identity numbers only) that
//!   `lefi synth` writes and the benchmarks and the demo load.

pub mod certs;
pub mod parties;
pub mod pg_cluster;
pub mod register;
pub mod synth;

/// A port free right now on the loopback interface, below Linux's ephemeral range (32768 and up):
/// a run restarts its servers on the same ports, and a port from the ephemeral range may meanwhile
/// be handed to any other process's outgoing or port-0 socket (a run once failed so).
pub fn free_port() -> anyhow::Result<u16> {
    use rand::{Rng, SeedableRng};
    // Not from the run's seed: ports are not part of what a replay reproduces.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(u64::from(nanos) ^ u64::from(std::process::id()));
    for _ in 0..200 {
        let port = rng.random_range(20_000..32_000);
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener.local_addr()?.port());
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

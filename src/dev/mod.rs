//! Development and demo code. Nothing here runs without `serve --dev`, `lefi dev-certs`,
//! `lefi synth`, `lefi bench` or the tests: a production start neither generates nor seeds anything.
//!
//! - [`certs`]: a development certificate authority (rcgen) that writes `certs-dev/` and gives the
//!   black-box tests fresh certificates.
//! - [`parties`]: the demo operator and the two demo parties `serve --dev` registers.
//! - [`register`]: the demo ingest operator and the small synthetic register `serve --dev` loads.
//! - [`synth`]: the deterministic synthetic register (test-range identity numbers only) that
//!   `lefi synth` writes and the benchmarks and the demo load.

pub mod certs;
pub mod parties;
pub mod register;
pub mod synth;

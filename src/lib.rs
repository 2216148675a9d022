//! lefi: disclosure of social-insurance benefit information to insurers and authorities.
//!
//! The crate is a library with a thin binary (`src/main.rs`) on top, so that the black-box tests in
//! `tests/` can start the real server in-process. The main modules:
//!
//! - [`config`]: command-line, environment and TOML settings, validated before any port is bound.
//! - [`app`]: builds the listeners, TLS, storage and gRPC services; runs them until shutdown.
//! - [`state`]: what every service shares (store, clock, settings, the wake-up of open streams).
//! - [`tls`]: rustls server configurations (mTLS with WebPki client verification, CRLs) and the
//!   accept loop that hands verified connections to tonic.
//! - [`revocation`]: the party listener's certificate verifier, whose CRLs are reloaded without a
//!   restart (SIGHUP, or the admin call).
//! - [`identity`]: turns the verified client certificate into a [`identity::Principal`] (a registered
//!   party or operator), run once per request by the gRPC identity layer; services never parse
//!   certificates.
//! - [`policy`]: the pure disclosure policy (only it issues a [`policy::Permit`]) and the operator
//!   rights table.
//! - [`domain`]: identity numbers and other valid-only types and pure rules; no tonic, no sqlx, no I/O.
//! - [`store`]: the storage interface over SQLite (embedded default) and PostgreSQL.
//! - [`grpc`]: the generated protobuf code, the party and admin APIs, and the error mapping.
//! - [`extract`]: producing a statistics order's extract from the register (CSV files, their
//!   SHA-256 and the manifest), in bounded memory.
//! - [`streams`]: the delivery streams open in this process (the per-party stream limit, the
//!   consumers view).
//! - [`wakeups`]: who to wake when histories grow (the parties an ingest fanned out to, or
//!   everyone), here and, through NOTIFY, in other replicas.
//! - [`client`]: the reference client used by `lefi client` and `lefi admin`.
//! - [`ndjson`]: the register's feed file format (protobuf JSON of a fact, one a line).
//! - [`dev`]: development and demo code: the development certificate authority (rcgen) for
//!   `serve --dev` and the tests, the demo parties and register `serve --dev` sets up, and the
//!   synthetic register `lefi synth` writes. None of it runs in a production start.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod cli;
pub mod client;
pub mod commands;
pub mod config;
pub mod dev;
pub mod domain;
pub mod extract;
pub mod grpc;
pub mod identity;
pub mod metrics;
pub mod ndjson;
pub mod policy;
pub mod revocation;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod streams;
pub mod telemetry;
pub mod tls;
pub mod wakeups;

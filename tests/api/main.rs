//! Black-box tests: the real server, in-process, over loopback mTLS, against SQLite and (when
//! `LEFI_TEST_POSTGRES_URL` is set) PostgreSQL. One binary, so the suite links once.

mod helpers;

mod admin;
mod admin_cli;
mod authn;
mod catalogue;
mod cli;
mod cli_first_hour;
mod cli_register;
mod cli_statistics;
mod consents;
mod contract;
mod db_proxy;
mod delivery;
mod dev_server;
mod filters;
mod from_now;
mod health;
mod metrics;
mod operations;
mod outage;
mod policy;
mod pull;
mod python_client;
mod query;
mod readiness;
mod register;
mod retention;
mod sandbox;
mod shutdown;
mod statistics;
mod statistics_api;
mod store_contract;
mod tls_abuse;
mod wire;

//! Black-box tests: the real server, in-process, over loopback mTLS, against SQLite and (when
//! `LEFI_TEST_POSTGRES_URL` is set) PostgreSQL. One binary, so the suite links once.

mod helpers;

mod authn;
mod catalogue;
mod cli;
mod cli_register;
mod health;
mod register;
mod shutdown;

//! The `lefi` command line: one binary for the server, its migrations, development certificates,
//! the reference party client and the operator CLI.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::OperatorRole;

mod admin;
mod client;
mod statistics;

pub use admin::*;
pub use client::*;
use statistics::ORDERS_HELP;
pub use statistics::*;

/// Reads a value of a domain enum as the CLI spells it: lower case with `-` (`agreement-sent` for
/// `AGREEMENT_SENT`); a wrong value is answered with every value there is.
fn domain_value<T: Copy + Into<&'static str>>(text: &str, all: &[T], what: &str) -> Result<T, String> {
    let spelled = |value: T| -> String {
        let name: &'static str = value.into();
        name.to_lowercase().replace('_', "-")
    };
    let wanted = text.trim().to_lowercase().replace('_', "-");
    all.iter()
        .copied()
        .find(|v| spelled(*v) == wanted)
        .ok_or_else(|| {
            let names: Vec<String> = all.iter().map(|v| spelled(*v)).collect();
            format!("not {what}; use one of {}", names.join(", "))
        })
}

/// lefi — benefit information to insurers and authorities, over mTLS gRPC.
///
/// Parties (insurance companies, state and municipal authorities) subscribe to persons and receive a
/// snapshot of their benefit records followed by every change as it is committed, or ask one-off
/// queries. Every request is checked against the party's agreement, the legal basis it invokes, and
/// any consent or open case it needs; every disclosure is logged.
///
/// Quick start (development):  lefi serve --dev
#[derive(Debug, Parser)]
#[command(name = "lefi", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Log format: `pretty` for people, `json` for log collectors. Logs go to stderr; with `json`,
    /// `serve --dev` prints its summary as one JSON object on stdout, so nothing is plain text.
    /// `--json` on a client command implies `json`.
    #[arg(long, global = true, env = "LEFI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `lefi=debug,info` (RUST_LOG syntax).
    #[arg(long, global = true, env = "LEFI_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log format to use: JSON when asked for, and for a client command run with `--json`, so
    /// that everything it writes is JSON lines (output on stdout; failures and log records, such
    /// as `stream --follow` reconnecting, on stderr).
    pub fn effective_log_format(&self) -> LogFormat {
        let json_output = match &self.command {
            Command::Client(args) => args.connect.json,
            Command::Admin(args) => args.connect.json,
            Command::Orders(args) => args.connect.json,
            Command::Ingest(args) => args.connect.json,
            _ => false,
        };
        if json_output {
            LogFormat::Json
        } else {
            self.log_format
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when stderr is a terminal.
    Pretty,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: the party API and the admin API, each on its own mTLS listener.
    ///
    /// With --dev, everything needed is created on the spot: development certificates in
    /// ./certs-dev, the SQLite database ./lefi.db, two demo parties and a demo operator.
    /// Without --dev nothing is generated: pass --tls-cert, --tls-key, --client-ca,
    /// --operator-ca and --database-url (flags, LEFI_* variables, or a --config TOML file).
    Serve(ServeArgs),

    /// Apply database migrations and exit.
    Migrate(DatabaseUrlArg),

    /// Generate a development certificate authority and certificates (never for production).
    DevCerts(DevCertsArgs),

    /// Measure performance (figures for docs/BENCHMARKS.md; use a release build).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },

    /// Register or list operators directly in the database (to bootstrap the admin API).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },

    /// Reference client for parties: call the party API the way an integrator would.
    Client(ClientArgs),

    /// Statistics orders (MiDAS) for an authority or research project: order individual data for
    /// statistical purposes, upload the population file, download the delivered extract.
    #[command(after_help = ORDERS_HELP)]
    Orders(OrdersArgs),

    /// Operator CLI: call the admin API.
    #[command(after_help = ADMIN_ONBOARDING_HELP)]
    Admin(AdminArgs),

    /// Feed an NDJSON file of facts into the register through the admin API (role `ingest`).
    ///
    /// One `lefi.admin.v1.Fact` per line in the protobuf JSON mapping (see
    /// proto/lefi/admin/v1/register.proto). Shows a progress bar and a summary; rejected and
    /// malformed lines are written to FILE.rejected.ndjson with line number and reason. Ingest is
    /// idempotent: after an interruption, run the same file again. Exits with 1 if any line was
    /// rejected.
    Ingest(IngestArgs),

    /// Write a deterministic synthetic register as NDJSON (for tests, demos and benchmarks).
    ///
    /// Identity numbers use only birth numbers 980–999, the range of Skatteverket's published test
    /// numbers; the source system is SYNTH. Never load synthetic data into a production register.
    Synth(SynthArgs),

    /// Check the delivery contract under randomized faults (the robustness suite).
    ///
    /// Each run starts `lefi serve` as child processes on a fresh database (on PostgreSQL, two
    /// replicas on a cluster of the run's own, made with initdb and pg_ctl), places
    /// subscriptions, feeds facts at a steady rate while a consumer persists every event with its
    /// cursor and resumes from it, and injects faults at random times drawn from the seed: kill -9
    /// and SIGTERM of a server, kill of the reader, immediate restart of PostgreSQL. Then it checks
    /// that per subscription the events are numbered without gap or repeat, each snapshot is the
    /// register as of its sequence, and every acknowledged fact is delivered exactly once, in
    /// commit order, with its body. Exits 1 if any run failed, printing its seed; failing runs keep
    /// their files.
    Chaos(ChaosArgs),
}

/// Arguments of `lefi chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// The database: an SQLite file, or a PostgreSQL cluster of the run's own.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: ChaosBackend,
    /// How many runs; their seeds are --seed, --seed + 1, …
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// The first run's seed [default: the clock].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run one seed again (what a failing run printed).
    #[arg(long, conflicts_with_all = ["runs", "seed"])]
    pub replay: Option<u64>,
    /// How long each run injects faults, e.g. `15s`.
    #[arg(long, default_value = "15s")]
    pub duration: String,
    /// Facts per second the feeder sends.
    #[arg(long, default_value_t = 40)]
    pub rate: u32,
    /// Subscribed persons (as many others get facts that must not reach the party).
    #[arg(long, default_value_t = 6)]
    pub persons: usize,
    /// Where the runs are made, one directory each [default: a new directory in the system's
    /// temporary directory].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep every run's files, not only failing runs'.
    #[arg(long)]
    pub keep: bool,
    /// PostgreSQL's programs (initdb, pg_ctl) [default: `pg_config --bindir`, else the newest
    /// /usr/lib/postgresql/*/bin].
    #[arg(long)]
    pub pg_bin: Option<PathBuf>,
    /// After each passing run, damage its recording in every way the checker must catch and show
    /// that it catches each.
    #[arg(long)]
    pub self_test: bool,
    /// Instead of fault runs, a soak of this length, e.g. `10m`: one server, --streams parties
    /// with one subscription and one stream each, --rate facts a second, no faults; every stream
    /// checked, no call may fail, the server's memory sampled every 10 s.
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["runs", "replay", "self_test"])]
    pub soak: Option<String>,
    /// Streams (and parties) in a soak.
    #[arg(long, default_value_t = 1000, requires = "soak")]
    pub streams: usize,
}

/// The database `lefi chaos` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChaosBackend {
    Sqlite,
    Postgres,
}

/// Arguments of `lefi ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The NDJSON file to feed.
    pub file: PathBuf,
    /// Server address, certificate and key (default certs-dev/ingest.pem, written by `serve --dev`).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Arguments of `lefi synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// How many persons to make.
    #[arg(long)]
    pub persons: usize,
    /// The random seed: the same seed, persons and --until give the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The last day of the synthetic history, YYYY-MM-DD.
    #[arg(long, default_value = "2025-12-31")]
    pub until: String,
    /// Write here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also give this person (e.g. the demo person `serve --dev` printed; only numbers from the
    /// test range, birth numbers 980–999) a new sick-pay case, so a stream subscribed to them shows
    /// it arriving.
    #[arg(long, value_name = "PERSON")]
    pub sick_leave_for: Option<String>,
}

/// How to onboard a party, shown by `lefi admin --help`.
const ADMIN_ONBOARDING_HELP: &str = "\
Onboarding a party, one step per command (each prints the next):
  lefi admin apply --org-number 556000-0019 --name \"Exempel Försäkring AB\" --kind insurer \\
      --contact-name \"Anna Andersson\" --contact-email anna@exempel.se \\
      --basis INS_COORDINATION --benefit SJP
  lefi admin send-agreement --party-id pty_… --agreement-id FK-2025-123 --basis INS_COORDINATION \\
      --benefit SJP --valid-from 2025-06-01 --notice-days 90
  lefi admin sign --party-id pty_… --signer party --signed-by \"Anna Andersson\"
  lefi admin sign --party-id pty_… --signer agency --signed-by \"Bo Berg\"
  lefi dev-certs issue-party --org-number 556000-0019 --name \"Exempel Försäkring AB\"
  lefi admin connect --party-id pty_… --cert-file certs-dev/5560000019.pem
Mutating commands are idempotent: if one fails without a clear answer, rerun it with the
--idempotency-key it printed.";

/// Arguments of `lefi serve`. Each flag can also be set by the environment variable shown, or by
/// the key of the same name (with underscores) in the --config file; flags win over variables,
/// variables over the file. Values are taken as text here and checked by `config`, so that every
/// problem is reported at once, named by where it came from.
#[derive(Debug, Default, Args)]
pub struct ServeArgs {
    /// Development mode: generate certificates into --certs-dir if missing, default the database to
    /// sqlite://lefi.db, and register demo parties, a demo operator and demo data.
    #[arg(long)]
    pub dev: bool,

    /// Where --dev keeps its certificates.
    #[arg(long, env = "LEFI_CERTS_DIR", default_value = "certs-dev")]
    pub certs_dir: PathBuf,

    /// TOML configuration file.
    #[arg(long, env = "LEFI_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address of the party API [default: 127.0.0.1:50051].
    #[arg(long, env = "LEFI_LISTEN")]
    pub listen: Option<String>,

    /// Address of the admin API [default: 127.0.0.1:50052].
    #[arg(long, env = "LEFI_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,

    /// Address of the Prometheus metrics listener, plain HTTP `GET /metrics` [default: none;
    /// with --dev 127.0.0.1:9464]. Put it where only your monitoring reaches it.
    #[arg(long, env = "LEFI_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,

    /// Database: `sqlite://path/to/lefi.db` (created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "LEFI_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Maximum pooled database connections [default: 8].
    #[arg(long, env = "LEFI_MAX_DB_CONNECTIONS")]
    pub max_db_connections: Option<String>,

    /// The server's certificate chain (PEM).
    #[arg(long, env = "LEFI_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// The server's private key (PEM).
    #[arg(long, env = "LEFI_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// CA certificate(s) that party client certificates must chain to (PEM).
    #[arg(long, env = "LEFI_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// CA certificate(s) that operator client certificates must chain to (PEM).
    #[arg(long, env = "LEFI_OPERATOR_CA")]
    pub operator_ca: Option<PathBuf>,

    /// Certificate revocation list for party certificates (PEM or DER); repeat for several.
    #[arg(long, env = "LEFI_CRL", value_delimiter = ',')]
    pub crl: Vec<PathBuf>,

    /// How often an idle delivery stream sends a heartbeat, e.g. `15s` [default: 15s].
    #[arg(long, env = "LEFI_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<String>,

    /// How long delivery history is kept, e.g. `30d` (at least 7 days, as the contract promises)
    /// [default: 30d]. A cursor older than that gets CURSOR_EXPIRED and takes a full refresh.
    #[arg(long, env = "LEFI_HISTORY_RETENTION")]
    pub history_retention: Option<String>,

    /// How long open calls get to finish on shutdown before they are cut, e.g. `10s` [default: 10s].
    #[arg(long, env = "LEFI_SHUTDOWN_GRACE")]
    pub shutdown_grace: Option<String>,

    /// The longest period a party may register a consent for, in days [default: 1096].
    #[arg(long, env = "LEFI_MAX_CONSENT_DAYS")]
    pub max_consent_days: Option<String>,

    /// The largest request message the APIs read, e.g. `4MiB` or `65536` (64KiB to 256MiB)
    /// [default: 4MiB]. Larger messages are refused with RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE.
    #[arg(long, env = "LEFI_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<String>,

    /// Delivery streams one party may have open at once on this server [default: 16]. One more
    /// is refused with RESOURCE_EXHAUSTED TOO_MANY_STREAMS. An operator may set a party's own
    /// value (`lefi admin limits`).
    #[arg(long, env = "LEFI_PARTY_MAX_STREAMS")]
    pub party_max_streams: Option<String>,

    /// Requests per second one party may make on this server, sustained [default: 100]. Beyond
    /// it and the burst, calls are refused with RESOURCE_EXHAUSTED RATE_LIMITED and a RetryInfo
    /// delay. An operator may set a party's own value (`lefi admin limits`).
    #[arg(long, env = "LEFI_PARTY_RATE_LIMIT")]
    pub party_rate_limit: Option<String>,

    /// Requests one party may make at once above its sustained rate [default: 200].
    #[arg(long, env = "LEFI_PARTY_RATE_BURST")]
    pub party_rate_burst: Option<String>,

    /// The ids of the arguments above whose value came from their environment variable, so that a
    /// problem names the variable instead of the flag (filled in from clap's matches by `main`).
    #[arg(skip)]
    pub from_env: Vec<String>,
}

/// Arguments of `lefi dev-certs`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DevCertsArgs {
    /// Directory to write into (created if missing). Existing files are kept unless --force.
    #[arg(long, default_value = "certs-dev")]
    pub out: PathBuf,

    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,

    #[command(subcommand)]
    pub command: Option<DevCertsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum DevCertsCommand {
    /// Issue a client certificate for a new party from the development CA in --dir.
    IssueParty {
        /// The directory holding ca.pem and ca.key.
        #[arg(long, default_value = "certs-dev")]
        dir: PathBuf,
        /// The party's organisationsnummer (written into the certificate subject).
        #[arg(long)]
        org_number: String,
        /// The organisation's name.
        #[arg(long)]
        name: String,
        /// File name stem: writes STEM.pem and STEM.key [default: the org number].
        #[arg(long)]
        stem: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Ingest rate of the register, in-process (no gRPC): a deterministic synthetic register
    /// stored in batches, on a fresh database.
    Ingest {
        /// A fresh database: sqlite:///tmp/bench.db or postgres://user@host/empty_db.
        #[arg(long)]
        database_url: String,
        /// How many synthetic persons (about 17 facts each).
        #[arg(long, default_value_t = 5_500)]
        persons: usize,
        /// Facts per transaction.
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
    },
    /// Delivery: snapshot throughput to one client (beside a bare tonic stream and a plain sqlx
    /// read measured in the same run), commit-to-delivery latency, idle-stream memory, and the
    /// server's peak memory under a slow reader (`lefi serve` in a child process). Results go into
    /// docs/BENCHMARKS.md with the machine and date.
    Delivery(BenchDeliveryArgs),
    /// A statistics extract: an order whose population is every person of a synthetic register,
    /// its extract (CSV and Parquet) produced in-process and stored as the admin API stores it,
    /// beside a plain sqlx read of the same register rows measured in the same run, with the
    /// process's peak memory. Results go into docs/BENCHMARKS.md with the machine and date.
    Extract(BenchExtractArgs),
}

/// Arguments of `lefi bench extract`.
#[derive(Debug, Args)]
pub struct BenchExtractArgs {
    /// A fresh database: sqlite:///tmp/bench.db or postgres://user@host/empty_db.
    #[arg(long)]
    pub database_url: String,
    /// Synthetic persons: the register, and the order's population.
    #[arg(long, default_value_t = 100_000)]
    pub persons: usize,
    /// How often the extract is produced, each time after a plain read (the figures of every
    /// round are printed; producing again before delivery replaces the files).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub rounds: u32,
}

/// Arguments of `lefi bench delivery`.
#[derive(Debug, Args)]
pub struct BenchDeliveryArgs {
    /// A fresh database: sqlite:///tmp/bench.db or postgres://user@host/empty_db.
    #[arg(long)]
    pub database_url: String,
    /// Synthetic persons, each with one subscription.
    #[arg(long, default_value_t = 10_000)]
    pub persons: usize,
    /// Versions added to every fact of the synthetic register before anything is measured (each
    /// fact sent again as a correction this many times, as years of recomputations leave a
    /// register): the log grows, the current state does not.
    #[arg(long, default_value_t = 0)]
    pub history_depth: u32,
    /// Rounds of the snapshot and its two baselines (the first on the stream that then measures
    /// latency, each further one on a fresh stream), printed each and as medians: one round's
    /// ratio moves with the machine's pace.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
    /// Commits (one fact each) for the latency run.
    #[arg(long, default_value_t = 3_000)]
    pub commits: usize,
    /// Commits per second in the latency run.
    #[arg(long, default_value_t = 1_000)]
    pub commit_rate: u64,
    /// Idle streams opened for the memory run.
    #[arg(long, default_value_t = 1_000)]
    pub idle_streams: usize,
    /// Records a deliberately slow client reads on a fresh stream while the process's peak
    /// memory is measured (capped by what the synthetic register holds; 0 skips the run).
    #[arg(long, default_value_t = 1_000_000)]
    pub slow_reader_records: u64,
    /// How fast the slow client reads, in records per second.
    #[arg(long, default_value_t = 50_000)]
    pub slow_reader_rate: u64,
    /// Also time the snapshot with the stream's policy check stubbed out (two runs each way,
    /// alternating). Needs a build with `--features bench-policy-stub`; never serve parties
    /// with such a build.
    #[arg(long)]
    pub compare_policy_stub: bool,
    /// Also time the snapshot with the metrics scraped every second and not scraped
    /// (`--compare-metrics-runs` runs in all, alternating). The counters themselves are always
    /// kept (an atomic add per RPC and per delivered batch); what Prometheus adds is the scrape,
    /// which reads the head, each party's lag and the pools from the database.
    #[arg(long)]
    pub compare_metrics: bool,
    /// Snapshot runs of `--compare-metrics`, half scraped and half not, in the order not,
    /// scraped, scraped, not, … (rounded up to a multiple of four). More runs see through a
    /// noisy machine.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(4..=400))]
    pub compare_metrics_runs: u32,
}

/// The database a command works on directly.
#[derive(Debug, Args)]
pub struct DatabaseUrlArg {
    /// `sqlite://path/to/lefi.db` or `postgres://user@host/db`.
    #[arg(long, env = "LEFI_DATABASE_URL")]
    pub database_url: String,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Register an operator certificate with a role.
    Add {
        #[command(flatten)]
        database: DatabaseUrlArg,
        /// The operator's certificate (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// The operator's name, shown in the audit log.
        #[arg(long)]
        name: String,
        /// operator (onboards and terminates parties, manages certificates), auditor (reads:
        /// lists, shows, audits), ingest (feeds the benefit register) or statistician (statistics
        /// orders and their confidentiality review).
        #[arg(long, value_parser = operator_role)]
        role: OperatorRole,
    },
    /// Revoke an operator's certificate: its next call on the admin API is refused
    /// (UNAUTHENTICATED CERTIFICATE_REVOKED). `add` with the same certificate registers it again.
    Revoke {
        #[command(flatten)]
        database: DatabaseUrlArg,
        /// The certificate's SHA-256 fingerprint, as `lefi operator list` shows it.
        #[arg(long)]
        fingerprint: String,
    },
    /// List registered operators.
    List(DatabaseUrlArg),
}

fn operator_role(text: &str) -> Result<OperatorRole, String> {
    domain_value(text, &OperatorRole::ALL, "an operator role")
}

#[cfg(test)]
mod tests {
    use super::domain_value;
    use crate::domain::party::PartyState;

    #[test]
    fn domain_values_read_in_the_cli_spelling_and_errors_list_them() {
        let read = |text| domain_value(text, &PartyState::ALL, "a party state");
        assert_eq!(read("agreement-sent"), Ok(PartyState::AgreementSent));
        assert_eq!(
            read(" Termination_Scheduled "),
            Ok(PartyState::TerminationScheduled)
        );
        let err = read("signd").unwrap_err();
        assert!(
            err.starts_with("not a party state; use one of applied, agreement-sent,"),
            "{err}"
        );
        assert!(read("").is_err());
    }
}

//! The `lefi` command line: one binary for the server, its migrations, development certificates,
//! the reference party client and the operator CLI.

use std::path::PathBuf;

use crate::domain::statistics::order::OrderState;
use clap::{Args, Parser, Subcommand, ValueEnum};

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
        #[arg(long, value_enum)]
        role: OperatorRoleArg,
    },
    /// List registered operators.
    List(DatabaseUrlArg),
}

/// Operator roles on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OperatorRoleArg {
    /// Onboards and terminates parties, manages certificates.
    Operator,
    /// Read-only: lists, shows, audits.
    Auditor,
    /// Feeds the benefit register.
    Ingest,
    /// The statistics unit: statistics orders and their confidentiality review.
    Statistician,
}

/// How a client connects: address and mTLS files.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Server address, `host:port` or `https://host:port` (TLS only) [default: localhost:50051
    /// for `client`, localhost:50052 for `admin` and `ingest`].
    #[arg(long, env = "LEFI_ADDR", global = true)]
    pub addr: Option<String>,
    /// Client certificate (PEM) [default: certs-dev/insurer.pem for `client`, certs-dev/operator.pem for `admin`].
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM) [default: next to the certificate, .key instead of .pem].
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// CA that signed the server certificate [default: certs-dev/ca.pem].
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Name the server certificate must carry [default: the host in --addr].
    #[arg(long, global = true)]
    pub server_name: Option<String>,
    /// Print JSON lines instead of tables: one object a line in the protobuf JSON mapping
    /// (camelCase); a failure is one `{"error": {...}}` line on stderr.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `lefi client …`
#[derive(Debug, Args)]
pub struct ClientArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Shorthand for a demo party's certificates in certs-dev: `insurer` or `municipality`.
    #[arg(long = "as", global = true)]
    pub as_party: Option<String>,
    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Check the server's health (grpc.health.v1).
    Health,
    /// Show who the server says you are: party, agreement, certificate.
    Whoami,
    /// List the legal bases in the catalogue.
    Bases,
    /// List the benefit types in the catalogue.
    BenefitTypes,
    /// Open the delivery stream and print its events as NDJSON on stdout.
    Stream {
        /// File holding the last processed cursor; read to resume, rewritten after every event.
        #[arg(long)]
        cursor_file: Option<PathBuf>,
        /// Stop after this many events.
        #[arg(long)]
        max_events: Option<u64>,
        /// Heartbeat interval to ask for, e.g. 5s [default: the server's; 15s with --follow].
        #[arg(long)]
        heartbeat: Option<String>,
        /// Keep going: when the stream ends (server restart, dropped connection, no message for
        /// three heartbeat intervals), reconnect with backoff (0.5 s doubling to 30 s, ±20 %
        /// jitter) and resume from the last cursor. Stops on what retrying cannot fix
        /// (UNAUTHENTICATED, PERMISSION_DENIED, CURSOR_EXPIRED) and says what to do.
        #[arg(long)]
        follow: bool,
    },
    /// Ask a one-off question about one person (QueryService.QueryPerson).
    Query(QueryArgs),
    /// Place one subscription (beställning); its snapshot and changes follow on `stream`.
    Subscribe(SubscribeArgs),
    /// List your subscriptions.
    Subscriptions {
        /// Only this person.
        #[arg(long)]
        person: Option<String>,
    },
    /// Cancel a subscription; an ENDED notice follows on the stream.
    Cancel {
        /// The subscription id (sub_…).
        subscription_id: String,
    },
    /// Ask for a fresh snapshot of all (or some) active subscriptions on the stream; prints the
    /// cursor to stream from (use after CURSOR_EXPIRED).
    Refresh {
        /// Only these subscription ids, comma-separated [default: all active].
        #[arg(long, value_delimiter = ',')]
        subscriptions: Vec<String>,
    },
    /// Register, revoke and list the consents (samtycken) your party relies on.
    Consent {
        #[command(subcommand)]
        command: ConsentCommand,
    },
    /// Close one of your cases (ärenden): subscriptions made under it end.
    CloseCase {
        /// Your case reference, exactly as used.
        case_reference: String,
        /// Why (recorded; no personal data).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Whom and what a subscription or a query asks about.
#[derive(Debug, Args)]
pub struct PersonBenefitsArgs {
    /// The person's personnummer or samordningsnummer.
    #[arg(long)]
    pub person: String,
    /// Benefit type codes, comma-separated, e.g. SJP,FP.
    #[arg(long, value_delimiter = ',', required = true)]
    pub benefits: Vec<String>,
}

/// The legal ground a subscription or a query invokes: a basis, and the case or consent it needs.
#[derive(Debug, Args)]
pub struct LegalGroundArgs {
    /// The legal basis code, e.g. INS_COORDINATION.
    #[arg(long)]
    pub basis: String,
    /// Your case (ärende) reference, when the basis needs an open case.
    #[arg(long)]
    pub case_reference: Option<String>,
    /// The consent id, when the basis needs consent.
    #[arg(long)]
    pub consent_id: Option<String>,
}

/// `lefi client subscribe`
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Your own reference for the order (its idempotency key; no personal data).
    #[arg(long)]
    pub reference: String,
    #[command(flatten)]
    pub target: PersonBenefitsArgs,
    /// First business date of interest, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    #[command(flatten)]
    pub ground: LegalGroundArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Register a consent the individual gave your party for one legal basis.
    Register {
        #[arg(long)]
        person: String,
        /// The legal basis whose purpose the consent covers, e.g. INS_RISK_ASSESSMENT.
        #[arg(long)]
        basis: String,
        /// The date the consent was given, YYYY-MM-DD.
        #[arg(long)]
        given_on: String,
        /// The last date it is valid, YYYY-MM-DD.
        #[arg(long)]
        expires_on: String,
        /// Your reference to your proof of the consent.
        #[arg(long)]
        evidence: String,
    },
    /// Revoke a consent (subscriptions made under it end).
    Revoke {
        consent_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List your consents.
    List,
}

/// Arguments of `lefi client query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    #[command(flatten)]
    pub target: PersonBenefitsArgs,
    /// First day of the period of interest, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// Last day of the period of interest, YYYY-MM-DD [default: open-ended].
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub ground: LegalGroundArgs,
}

/// `lefi admin …`
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Check the admin API's health.
    Health,
    /// Show who the admin API says you are: operator name and role.
    Whoami,
    /// Register a party's application (anmälan): the party starts in state APPLIED.
    Apply(ApplyArgs),
    /// Record that the agreement was sent (avtal to insurers, överenskommelse to authorities).
    SendAgreement(SendAgreementArgs),
    /// Record one signature of the agreement; run it for the party and for the agency.
    Sign(SignArgs),
    /// Register a client certificate for the party; the first one connects it (technical connection).
    Connect(ConnectPartyArgs),
    /// Revoke one of a party's certificates; calls and open streams with it are refused at once.
    RevokeCert(RevokeCertArgs),
    /// Register a termination notice (uppsägning) for a party.
    Terminate(TerminateArgs),
    /// Withdraw a scheduled termination before it takes effect.
    WithdrawTermination(WithdrawTerminationArgs),
    /// Show one party: its state, agreement, signatures, certificates and termination.
    Show {
        /// The party id (pty_…) or organisation number.
        party: String,
    },
    /// List parties, by name, optionally only some kinds or states.
    List(ListArgs),
    /// Show a party's audit history: every administrative action, oldest first.
    History {
        /// The party id (pty_…) or organisation number.
        party: String,
    },
    /// Inspect the benefit register.
    Register {
        #[command(subcommand)]
        command: RegisterCommand,
    },
    /// Read and verify the disclosure log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The statistics unit's side of statistics orders (role `statistician`; operators and
    /// auditors may list and show): review, quote, release, extract, deliver, delete.
    #[command(after_help = ADMIN_ORDERS_HELP)]
    Orders {
        #[command(subcommand)]
        command: AdminOrdersCommand,
    },
}

/// The party a mutating admin command acts on.
#[derive(Debug, Clone, Args)]
pub struct PartyIdArg {
    /// The party's id (pty_…; `lefi admin list` shows it).
    #[arg(long)]
    pub party_id: String,
}

/// The idempotency key of a mutating admin command.
#[derive(Debug, Clone, Args)]
pub struct IdempotencyArgs {
    /// Idempotency key [default: a new random UUID]. Pass the key a failed run printed to retry
    /// that same change safely: it is applied at most once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
}

/// Party kinds, as the CLI spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PartyKindArg {
    /// Försäkringsbolag or försäkringsförmedlare (signs an avtal).
    Insurer,
    /// Statlig myndighet (signs an överenskommelse).
    StateAuthority,
    /// Kommunal myndighet, e.g. a socialnämnd (signs an överenskommelse).
    MunicipalAuthority,
}

/// Party states, as the CLI spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PartyStateArg {
    Applied,
    AgreementSent,
    Signed,
    Connected,
    TerminationScheduled,
    Terminated,
}

/// Who signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignerArg {
    /// The insurer or authority.
    Party,
    /// The agency.
    Agency,
}

/// `lefi admin apply`
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Organisationsnummer, NNNNNN-NNNN.
    #[arg(long)]
    pub org_number: String,
    /// Organisation name.
    #[arg(long)]
    pub name: String,
    #[arg(long, value_enum)]
    pub kind: PartyKindArg,
    /// Contact person's name.
    #[arg(long)]
    pub contact_name: String,
    /// Contact person's e-mail address.
    #[arg(long)]
    pub contact_email: String,
    /// Legal basis applied for (repeat, or separate with commas); see `lefi client bases`.
    #[arg(long = "basis", value_delimiter = ',')]
    pub bases: Vec<String>,
    /// Benefit type applied for (repeat, or separate with commas); see `lefi client benefit-types`.
    #[arg(long = "benefit", value_delimiter = ',')]
    pub benefits: Vec<String>,
    #[command(flatten)]
    pub key: IdempotencyArgs,
}

/// `lefi admin send-agreement`
#[derive(Debug, Args)]
pub struct SendAgreementArgs {
    #[command(flatten)]
    pub party: PartyIdArg,
    /// The agency's id of the agreement document, e.g. its diarienummer.
    #[arg(long)]
    pub agreement_id: String,
    /// Legal basis granted (repeat, or separate with commas).
    #[arg(long = "basis", value_delimiter = ',', required = true)]
    pub bases: Vec<String>,
    /// Benefit type granted (repeat, or separate with commas).
    #[arg(long = "benefit", value_delimiter = ',', required = true)]
    pub benefits: Vec<String>,
    /// First day the agreement is in force, YYYY-MM-DD.
    #[arg(long)]
    pub valid_from: String,
    /// Insurers: the avtal's notice period for termination, in days. Authorities: leave out.
    #[arg(long, default_value_t = 0)]
    pub notice_days: u32,
    #[command(flatten)]
    pub key: IdempotencyArgs,
}

/// `lefi admin sign`
#[derive(Debug, Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub party: PartyIdArg,
    #[arg(long, value_enum)]
    pub signer: SignerArg,
    /// Name of the person who signed.
    #[arg(long)]
    pub signed_by: String,
    /// Date of signing, YYYY-MM-DD [default: today].
    #[arg(long)]
    pub signed_on: Option<String>,
    #[command(flatten)]
    pub key: IdempotencyArgs,
}

/// `lefi admin connect`
#[derive(Debug, Args)]
pub struct ConnectPartyArgs {
    #[command(flatten)]
    pub party: PartyIdArg,
    /// The party's client certificate (PEM), issued by the party CA.
    #[arg(long)]
    pub cert_file: PathBuf,
    #[command(flatten)]
    pub key: IdempotencyArgs,
}

/// `lefi admin revoke-cert`
#[derive(Debug, Args)]
pub struct RevokeCertArgs {
    #[command(flatten)]
    pub party: PartyIdArg,
    /// The certificate's SHA-256 fingerprint (`lefi admin show` lists them).
    #[arg(long)]
    pub fingerprint: String,
    /// Why, e.g. "key compromised" or "replaced by successor".
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub key: IdempotencyArgs,
}

/// `lefi admin terminate`: the fields a termination notice (uppsägning) must state.
#[derive(Debug, Args)]
pub struct TerminateArgs {
    #[command(flatten)]
    pub party: PartyIdArg,
    /// The organisation number the notice states (checked against the registration).
    #[arg(long)]
    pub org_number: String,
    /// The organisation name the notice states (checked against the registration).
    #[arg(long)]
    pub name: String,
    /// The date from which the termination applies, YYYY-MM-DD (today or earlier: at once).
    #[arg(long)]
    pub effective_date: String,
    /// The date the notice arrived, YYYY-MM-DD [default: today].
    #[arg(long)]
    pub notice_received_on: Option<String>,
    /// Insurers: accept an effective date within the avtal's notice period, and why (recorded).
    #[arg(long)]
    pub override_reason: Option<String>,
    #[command(flatten)]
    pub key: IdempotencyArgs,
}

/// `lefi admin withdraw-termination`
#[derive(Debug, Args)]
pub struct WithdrawTerminationArgs {
    #[command(flatten)]
    pub party: PartyIdArg,
    /// Why, e.g. "party withdrew its notice by e-mail 2025-05-10".
    #[arg(long)]
    pub reason: String,
    #[command(flatten)]
    pub key: IdempotencyArgs,
}

/// `lefi admin list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only parties of this kind (repeat for several).
    #[arg(long, value_enum)]
    pub kind: Vec<PartyKindArg>,
    /// Only parties in this state (repeat for several).
    #[arg(long, value_enum)]
    pub state: Vec<PartyStateArg>,
    /// Parties fetched per call; every page is fetched.
    #[arg(long, default_value_t = 100)]
    pub page_size: u32,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain of the disclosure log and name the first broken entry, if any.
    Verify,
    /// Who received what about a person, when and on which basis (oldest first).
    Person {
        /// The person's personnummer or samordningsnummer.
        person: String,
    },
    /// A party's disclosures and refusals (oldest first).
    Party {
        /// The party id (pty_…).
        party_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RegisterCommand {
    /// Show a person and every version of every fact about them (roles operator, auditor; the
    /// view is recorded in the disclosure log).
    Show {
        /// The person's personnummer or samordningsnummer.
        #[arg(long)]
        person: String,
        /// Show the register as of this sequence [default: the head].
        #[arg(long)]
        as_of: Option<u64>,
    },
    /// Register statistics: persons, facts, versions, head sequence, ingest rate.
    Stats,
}

/// The life of a statistics order, shown by `lefi orders --help`.
const ORDERS_HELP: &str = "\
A statistics order, from the orderer's side (each command prints the order and the next step):
  lefi orders submit --reference SCB-2026-17 --project \"Sjukfrånvaro 2024\" \\
      --purpose \"Officiell statistik\" --legal-ground \"24 kap. 8 § OSL\" \\
      --population \"Personer i urvalet\" --benefit SJP --benefit FP \\
      --from 2024-01-01 --to 2024-12-31 --contact-name \"Eva E\" --contact-email eva@myndighet.se
  (the statistics unit confirms receipt within two working days, may ask for completion:
   lefi orders supplement ORDER --text \"…\", and drafts a quote)
  lefi orders agree ORDER              agree to the content the draft quote specifies
  (the confidentiality review releases the data, with conditions, or refuses)
  lefi orders upload ORDER urval.csv   the population (key) file, only after the release
  lefi orders accept ORDER             accept the quote; the extract is produced after it
  lefi orders download ORDER --dir d   the delivered files, checked against the manifest
The files are kept six months after delivery, then deleted; the manifest remains.
Use your authority's own certificate (--cert, --key): the agreement must grant the legal basis
STAT_INDIVIDUAL_DATA.";

/// The statistics unit's steps, shown by `lefi admin orders --help`.
const ADMIN_ORDERS_HELP: &str = "\
A statistics order, from the statistics unit's side (each command prints the order):
  lefi admin orders list --overdue           receipts not confirmed within two working days
  lefi admin orders confirm ORDER            confirm receipt
  lefi admin orders ask ORDER --question \"…\" ask the orderer to complete the order
  lefi admin orders quote ORDER --hours 12.5 --spec \"Episoder och paneler, SJP 2024\"
  lefi admin orders release ORDER --conditions \"…\"   the confidentiality review (another
                                             statistician than the quote's author)
  lefi admin orders extract ORDER            after the quote is accepted and the population is in
  lefi admin orders download ORDER --dir d   check the files before handing them over
  lefi admin orders deliver ORDER            hand over; the files are kept six months
  lefi admin orders invoice ORDER --hours 11.75
  lefi admin orders purge --dry-run          orders whose retention has passed
Mutating commands are idempotent: if one fails without a clear answer, rerun it with the
--idempotency-key it printed.";

/// `lefi orders …`
#[derive(Debug, Args)]
pub struct OrdersArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: OrdersCommand,
}

#[derive(Debug, Subcommand)]
pub enum OrdersCommand {
    /// Submit a statistics order (beställning av individdata för statistikändamål). The agency
    /// confirms receipt within two working days.
    Submit(Box<SubmitOrderArgs>),
    /// List your orders, newest first.
    List(OrderStatesArg),
    /// Show one order and its history: every step, who took it and when.
    Show(OrderArg),
    /// Answer the statistics unit's request for completion (komplettering).
    Supplement {
        #[command(flatten)]
        order: OrderArg,
        /// What was asked for (no personal data).
        #[arg(long)]
        text: String,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Agree to the content the draft quote specifies (tables, variables, population, periods).
    Agree {
        #[command(flatten)]
        order: OrderArg,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Accept the quote, after the release decision; the extract is produced once the population
    /// file is in as well.
    Accept {
        #[command(flatten)]
        order: OrderArg,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Withdraw the order (any time before the extract is produced).
    Withdraw {
        #[command(flatten)]
        order: OrderArg,
        /// Why (recorded in the order's history).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Upload the population (key) file, after the release.
    #[command(long_about = POPULATION_FILE_HELP)]
    Upload(UploadPopulationArgs),
    /// Show the extract's manifest: its files with sizes, rows and SHA-256, and the register
    /// sequence it was produced at.
    Manifest(OrderArg),
    /// Download every file of the delivered extract and check each against the manifest's
    /// SHA-256. A file left partly downloaded is resumed from its current size.
    Download(DownloadExtractArgs),
}

/// What `orders upload` says about the file.
const POPULATION_FILE_HELP: &str = "\
Upload the population (key) file, after the release.

The file is UTF-8 text, one person per line: identity number, the project's serial number
(löpnummer), optionally further columns, separated by ';' (or ',' or a tab); an optional header
line starting with a letter names the columns. It is sent in 64 KiB chunks with a progress bar.
The file is taken whole or not at all: if any line is wrong, every bad line is printed as
`line N: reason` (never the identity number; the first 100 with their total) and nothing is
stored. With --json each bad line is one object {\"line\": N, \"reason\": \"…\"} on stdout.
The delivered extract is keyed by the serial numbers only.";

/// The order a command acts on.
#[derive(Debug, Clone, Args)]
pub struct OrderArg {
    /// The order id (`orders list` shows it).
    #[arg(value_name = "ORDER")]
    pub order_id: String,
}

/// Filter by order state.
#[derive(Debug, Clone, Args)]
pub struct OrderStatesArg {
    /// Only orders in this state (repeat, or separate with commas): submitted, in-review,
    /// awaiting-completion, quote-drafted, content-agreed, released, refused, quote-accepted,
    /// extracted, delivered, deleted or withdrawn.
    #[arg(long, value_delimiter = ',', value_parser = order_state)]
    pub state: Vec<OrderState>,
}

/// `lefi orders submit`: what the order states.
#[derive(Debug, Args)]
pub struct SubmitOrderArgs {
    /// Your own reference for the order, unique for your organisation (up to 128 characters).
    /// It is also the submission's idempotency key: submitting the same reference again returns
    /// the order already submitted.
    #[arg(long)]
    pub reference: String,
    /// The project's name.
    #[arg(long)]
    pub project: String,
    /// The statistical purpose.
    #[arg(long)]
    pub purpose: String,
    /// The exception or duty the order relies on, e.g. "24 kap. 8 § OSL" or "förordning
    /// (2001:100) 14 §".
    #[arg(long)]
    pub legal_ground: String,
    /// Who the population is (the key file itself is uploaded after the release).
    #[arg(long)]
    pub population: String,
    /// Benefit type code (repeat, or separate with commas); see `lefi client benefit-types`.
    #[arg(long = "benefit", value_delimiter = ',', required = true)]
    pub benefits: Vec<String>,
    /// The wished variables: free text, or picked from the variable lists.
    #[arg(long, default_value = "")]
    pub variables: String,
    /// First day of the period the data is to cover, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// Last day of the period, YYYY-MM-DD (its month must be complete enough in the register:
    /// otherwise PERIOD_NOT_COVERED names the latest month that can be ordered).
    #[arg(long)]
    pub to: String,
    /// Wished delivery date, YYYY-MM-DD.
    #[arg(long)]
    pub wished_delivery: Option<String>,
    /// Your contact person's name.
    #[arg(long)]
    pub contact_name: String,
    /// Your contact person's e-mail address.
    #[arg(long)]
    pub contact_email: String,
    /// A special duty to provide data applies (särskild uppgiftsskyldighet): no charge.
    #[arg(long)]
    pub special_duty: bool,
}

/// `orders upload` and `admin orders upload`.
#[derive(Debug, Args)]
pub struct UploadPopulationArgs {
    #[command(flatten)]
    pub order: OrderArg,
    /// The population file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub key: IdempotencyArgs,
}

/// `orders download` and `admin orders download`.
#[derive(Debug, Args)]
pub struct DownloadExtractArgs {
    #[command(flatten)]
    pub order: OrderArg,
    /// Directory to write the files into (created if missing). A file already there is resumed
    /// from its size, or only checked if complete.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// A statistics order state as the CLI spells it (`in-review`), or as the API does (`IN_REVIEW`).
fn order_state(text: &str) -> Result<OrderState, String> {
    OrderState::parse(&text.trim().to_uppercase().replace('-', "_")).ok_or_else(|| {
        let names: Vec<String> = OrderState::ALL
            .iter()
            .map(|s| s.as_str().to_lowercase().replace('_', "-"))
            .collect();
        format!("not an order state; use one of {}", names.join(", "))
    })
}

#[derive(Debug, Subcommand)]
pub enum AdminOrdersCommand {
    /// List the orders of every party, newest first.
    List {
        #[command(flatten)]
        states: OrderStatesArg,
        /// Only this party's orders (pty_…).
        #[arg(long)]
        party: Option<String>,
        /// Only orders whose receipt was not confirmed within two working days.
        #[arg(long)]
        overdue: bool,
    },
    /// Show one order and its history.
    Show(OrderArg),
    /// Confirm receipt of the order (due within two working days of submission).
    Confirm {
        #[command(flatten)]
        order: OrderArg,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Ask the orderer to complete the order (begäran om komplettering).
    Ask {
        #[command(flatten)]
        order: OrderArg,
        /// What the orderer is asked to complete.
        #[arg(long)]
        question: String,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Draft the quote: what is delivered and the estimated hours. The price follows from the
    /// hourly rate in force today, VAT apart (nothing under a special duty). Can be redrafted
    /// until the orderer agrees to the content.
    Quote {
        #[command(flatten)]
        order: OrderArg,
        /// Estimated hours, e.g. 12.5 (at most two decimals).
        #[arg(long, value_parser = centihours)]
        hours: i64,
        /// The specification: tables and variables, population, periods.
        #[arg(long)]
        spec: String,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// The confidentiality review (sekretessprövning) releases the data, with its conditions.
    /// Made by another statistician than the one who drafted the quote (four eyes).
    Release {
        #[command(flatten)]
        order: OrderArg,
        /// The conditions of the release, e.g. "no table cell under five persons".
        #[arg(long)]
        conditions: String,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// The confidentiality review refuses the release, with its reasons (final).
    Refuse {
        #[command(flatten)]
        order: OrderArg,
        /// The reasons of the refusal.
        #[arg(long)]
        reasons: String,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Upload a population file received by registered post (the same rules as `lefi orders
    /// upload`: taken whole or not at all; bad lines are printed by number, never the identity
    /// number).
    Upload(UploadPopulationArgs),
    /// Produce the extract (episodes, panels, data dictionary and the manifest) as of one
    /// register sequence. Allowed once the quote is accepted and the population is in, and again
    /// until delivery: at the same sequence it gives the same bytes.
    Extract {
        #[command(flatten)]
        order: OrderArg,
        /// The register sequence to produce it at [default: the register's head now].
        #[arg(long)]
        sequence: Option<u64>,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Hand the files over: the orderer may download them; they are kept six months from today
    /// (the retention), then deleted. Every person of the population is recorded in the
    /// disclosure log.
    Deliver {
        #[command(flatten)]
        order: OrderArg,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Keep the files longer: the orderer asked and the agency approved.
    Extend {
        #[command(flatten)]
        order: OrderArg,
        /// The new last day the files are kept, YYYY-MM-DD (after the current one).
        #[arg(long)]
        until: String,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Record the invoice: the actual hours at the rate in force.
    Invoice {
        #[command(flatten)]
        order: OrderArg,
        /// Actual hours, e.g. 11.75 (at most two decimals).
        #[arg(long, value_parser = centihours)]
        hours: i64,
        #[command(flatten)]
        key: IdempotencyArgs,
    },
    /// Show the extract's manifest (also after the files were deleted).
    Manifest(OrderArg),
    /// Download the extract's files to check them before delivery or hand them over; each is
    /// checked against the manifest's SHA-256, and a partial file is resumed.
    Download(DownloadExtractArgs),
    /// Delete the files and the population of every delivered order whose retention date has
    /// passed (the server also does this on a schedule); the manifest and history remain.
    Purge {
        /// Only list the orders that would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// How complete the register is for the recent months of one benefit, and which months may
    /// be ordered (from 95 % coverage). Payments arrive long after the period they cover, so a
    /// recent month is expected to be as complete as older months were at its age.
    Coverage {
        /// The benefit type code, e.g. SJP.
        #[arg(long)]
        benefit: String,
        /// Also write the completion curve, with the 95 % line, as an SVG plot to this file.
        #[arg(long, value_name = "FILE")]
        svg: Option<PathBuf>,
    },
}

/// Hours as hundredths (`12.5` → 1250), exactly: a decimal point or comma, at most two
/// decimals, more than zero.
pub fn centihours(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (whole, fraction) = match text.split_once(['.', ',']) {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(|f| digits(f) && f.len() <= 2) {
        return Err(format!(
            "'{text}' is not a number of hours like 12 or 12.5 (at most two decimals)"
        ));
    }
    let whole: i64 = whole.parse().map_err(|_| format!("'{text}' is too many hours"))?;
    let hundredths: i64 = format!("{:0<2}", fraction.unwrap_or_default())
        .parse()
        .map_err(|_| format!("'{text}' is not a number of hours"))?;
    let total = whole
        .checked_mul(100)
        .and_then(|h| h.checked_add(hundredths))
        .ok_or_else(|| format!("'{text}' is too many hours"))?;
    if total == 0 {
        return Err("the hours must be more than zero".to_string());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::centihours;

    #[test]
    fn hours_become_exact_hundredths() {
        assert_eq!(centihours("12.5"), Ok(1_250));
        assert_eq!(centihours("12,25"), Ok(1_225));
        assert_eq!(centihours("3"), Ok(300));
        assert_eq!(centihours("0.01"), Ok(1));
        for bad in [
            "",
            "0",
            "0.00",
            "-1",
            "1.234",
            "1.",
            ".5",
            "x",
            "1e3",
            "99999999999999999999",
        ] {
            assert!(centihours(bad).is_err(), "{bad}");
        }
    }
}

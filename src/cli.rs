//! The `lefi` command line: one binary for the server, its migrations, development certificates,
//! the reference party client and the operator CLI.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Log format: `pretty` for people, `json` for log collectors.
    #[arg(long, global = true, env = "LEFI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `lefi=debug,info` (RUST_LOG syntax).
    #[arg(long, global = true, env = "LEFI_LOG", default_value = "info")]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured when the output is a terminal.
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
    Migrate {
        /// `sqlite://path/to/lefi.db` or `postgres://user@host/db`.
        #[arg(long, env = "LEFI_DATABASE_URL")]
        database_url: String,
    },

    /// Generate a development certificate authority and certificates (never for production).
    DevCerts(DevCertsArgs),

    /// Register or list operators directly in the database (to bootstrap the admin API).
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },

    /// Reference client for parties: call the party API the way an integrator would.
    Client(ClientArgs),

    /// Operator CLI: call the admin API.
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
}

/// Arguments of `lefi serve`. Each flag can also be set by the environment variable shown, or by
/// the key of the same name (with underscores) in the --config file; flags win over variables,
/// variables over the file.
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
    pub listen: Option<SocketAddr>,

    /// Address of the admin API [default: 127.0.0.1:50052].
    #[arg(long, env = "LEFI_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// Database: `sqlite://path/to/lefi.db` (created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "LEFI_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Maximum pooled database connections [default: 8].
    #[arg(long, env = "LEFI_MAX_DB_CONNECTIONS")]
    pub max_db_connections: Option<u32>,

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
pub enum OperatorCommand {
    /// Register an operator certificate with a role.
    Add {
        #[arg(long, env = "LEFI_DATABASE_URL")]
        database_url: String,
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
    List {
        #[arg(long, env = "LEFI_DATABASE_URL")]
        database_url: String,
    },
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
}

/// How a client connects: address and mTLS files.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Server address [default: https://localhost:50051 for `client`, :50052 for `admin`].
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
    /// Print JSON (one object per line) instead of tables.
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
        /// Heartbeat interval to ask for, e.g. 5s.
        #[arg(long)]
        heartbeat: Option<String>,
    },
    /// Ask a one-off question about one person (QueryService.QueryPerson).
    Query(QueryArgs),
}

/// Arguments of `lefi client query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The person's personnummer or samordningsnummer.
    #[arg(long)]
    pub person: String,
    /// Benefit type codes, comma-separated, e.g. SJP,FP.
    #[arg(long, value_delimiter = ',', required = true)]
    pub benefits: Vec<String>,
    /// First day of the period of interest, YYYY-MM-DD.
    #[arg(long)]
    pub from: String,
    /// Last day of the period of interest, YYYY-MM-DD [default: open-ended].
    #[arg(long)]
    pub to: Option<String>,
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
    /// Inspect the benefit register.
    Register {
        #[command(subcommand)]
        command: RegisterCommand,
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

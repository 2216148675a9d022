//! `lefi client …`: the reference party client's arguments, and how every client connects.

use std::path::PathBuf;

use clap::{Args, Subcommand};

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
    /// Pull the events after your cursor (DeliveryService.FetchEvents) and print them as NDJSON:
    /// the stream's events, for systems that cannot keep a stream open. Stops once caught up
    /// (or keeps long-polling with --follow).
    Pull {
        /// File holding the last processed cursor; read to resume, rewritten after every event
        /// (and with the answer's bookmark when it held none).
        #[arg(long)]
        cursor_file: Option<PathBuf>,
        /// The most messages per answer [default: the server's, 500; at most 5,000].
        #[arg(long)]
        max_events: Option<u32>,
        /// Long poll: when nothing is due, wait up to this long for a change, e.g. 20s (at most
        /// 60s; keep it below your proxy's idle timeout) [default: answer at once].
        #[arg(long)]
        wait: Option<String>,
        /// Keep pulling after catching up (each pull a long poll of --wait, 20s by default),
        /// until interrupted.
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
    /// Start from now: no snapshot of what the register already holds, only later changes. Only
    /// if your system already holds the person's data: what you lack is never sent.
    #[arg(long)]
    pub from_now: bool,
    /// The last day the subscription runs, YYYY-MM-DD; it ends by itself the day after
    /// [default: until cancelled].
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// Deliver only these kinds of record, comma-separated: record types (case,
    /// compensation-period, decision, payment, person-event), decisions of a kind
    /// (decision:blocked) and person events of a kind (person-event:death-registered)
    /// [default: every record].
    #[arg(long, value_name = "KINDS")]
    pub only: Option<String>,
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
    /// Reproduce the answer your party was given as of this register sequence (the "as of" of
    /// that answer; ask with the same benefit types and period). Later corrections are not in it.
    #[arg(long, value_name = "SEQUENCE")]
    pub reproduce: Option<u64>,
}

//! `lefi admin …`: the operator CLI's arguments (parties, register, audit).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::statistics::ADMIN_ORDERS_HELP;
use super::{AdminOrdersCommand, ConnectArgs, domain_value};
use crate::domain::party::PartyState;

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
    /// Show each party's delivery: open streams (on the server that answers), what its consumers
    /// confirmed, lag, when its cursor expires, last full refresh, limits in force.
    Consumers {
        /// Only this party (pty_…).
        #[arg(long)]
        party_id: Option<String>,
    },
    /// Show the certificate revocation lists the party listener applies (issuer, number, next
    /// update); with --reload, read the CRL files again first (as SIGHUP does).
    Crls {
        /// Read the configured CRL files again and put them in force (role `operator`): a
        /// certificate they revoke is refused from its next call, and its open streams end.
        #[arg(long)]
        reload: bool,
    },
    /// The agency suspends, resumes or ends a party's subscriptions (follow-up review under SFB
    /// 114 kap.): one, all about one person, or all of the party. The party's stream gets a notice
    /// with the reason; resumption sends a fresh snapshot. Recorded in the party's history.
    Subscriptions {
        #[command(subcommand)]
        command: AgencySubscriptionsCommand,
    },
    /// Set a party's own limits (delivery streams at once, requests per second, burst); a limit
    /// left out is the server's configured default, so `--reason` alone returns to the defaults.
    Limits(LimitsArgs),
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
    /// Sandbox scenarios for integrators, on a development server only (`lefi serve --dev`):
    /// commit a real-world situation to a demo person (a retroactive payment, a death, a lapsed
    /// consent…) and say what a client's stream should show. See docs/SANDBOX.md.
    Sandbox {
        #[command(subcommand)]
        command: SandboxCommand,
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

/// `lefi admin subscriptions …`
#[derive(Debug, Subcommand)]
pub enum AgencySubscriptionsCommand {
    /// Suspend ACTIVE subscriptions: nothing about their persons is delivered until resumed.
    Suspend(AgencyScopeArgs),
    /// Resume the subscriptions the agency suspended, each with a fresh snapshot.
    Resume(AgencyScopeArgs),
    /// End ACTIVE and SUSPENDED subscriptions for good.
    End(AgencyScopeArgs),
}

/// Which of a party's subscriptions the agency acts on, and why.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("scope").required(true).args(["subscription_id", "person_id", "all"])))]
pub struct AgencyScopeArgs {
    #[command(flatten)]
    pub party: PartyIdArg,
    /// One subscription (sub_…).
    #[arg(long)]
    pub subscription_id: Option<String>,
    /// All of the party's subscriptions about this person (YYYYMMDD-NNNN).
    #[arg(long)]
    pub person_id: Option<String>,
    /// All of the party's subscriptions.
    #[arg(long)]
    pub all: bool,
    /// Why, e.g. the review's reference: the party sees it in the notice; no personal data.
    #[arg(long)]
    pub reason: String,
}

/// `lefi admin limits`
#[derive(Debug, Args)]
pub struct LimitsArgs {
    #[command(flatten)]
    pub party: PartyIdArg,
    /// Delivery streams the party may have open at once (per server).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: Option<u32>,
    /// Requests per second the party may make, sustained (per server).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// Requests the party may make at once above its rate.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,
    /// Why, kept in the party's audit history, e.g. "batch insurer, agreed 2026-11-30".
    #[arg(long)]
    pub reason: String,
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
    /// Only parties in this state (repeat, or separate with commas): applied, agreement-sent,
    /// signed, connected, termination-scheduled or terminated.
    #[arg(long, value_delimiter = ',', value_parser = party_state)]
    pub state: Vec<PartyState>,
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

fn party_state(text: &str) -> Result<PartyState, String> {
    domain_value(text, &PartyState::ALL, "a party state")
}

/// `lefi admin sandbox …`
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// List the scenarios, one line each.
    List,
    /// Play one scenario against a development server and print what it committed and what a
    /// subscriber's stream should show. Refused unless the server runs `serve --dev`.
    Play(SandboxPlayArgs),
}

/// The sandbox scenarios (docs/SANDBOX.md describes each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxScenario {
    /// A payment for a period months ago, recorded now (retroactive).
    RetroactivePayment,
    /// One payment corrected, another retracted.
    CorrectionAndRetraction,
    /// The person's sickness case closed: the case CLOSED and SICKNESS_CASE_CLOSED.
    SicknessCaseClosed,
    /// Benefits blocked: LIFE_CERTIFICATE_MISSING and a BLOCKED decision.
    LifeCertificateMissing,
    /// The life certificate received: LIFE_CERTIFICATE_RECEIVED and an UNBLOCKED decision.
    LifeCertificateReceived,
    /// A death registered: the date of death and DEATH_REGISTERED.
    DeathRegistered,
    /// The agency revokes the party's consents about the person (the individual asked).
    ConsentLapsing,
    /// The demo municipality closes its case reference about the person.
    CaseClosedByAuthority,
    /// Delivery history before now is pruned: older cursors get CURSOR_EXPIRED.
    CursorExpiring,
    /// The demo party is terminated (destructive; needs --yes).
    PartyTermination,
}

/// Which demo party a scenario acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SandboxParty {
    /// Demoförsäkringar AB (556677-8899), certs-dev/insurer.pem.
    Insurer,
    /// Demo kommun, socialnämnden (222000-0000), certs-dev/municipality.pem.
    Municipality,
}

/// `lefi admin sandbox play`
#[derive(Debug, Args)]
pub struct SandboxPlayArgs {
    /// The scenario (`lefi admin sandbox list`).
    #[arg(value_enum)]
    pub scenario: SandboxScenario,
    /// The demo person (test range only) [default: the one `serve --dev` suggests].
    #[arg(long)]
    pub person: Option<String>,
    /// The benefit type the committed facts belong to: the one your subscription covers.
    #[arg(long, default_value = "SJP")]
    pub benefit: String,
    /// The demo party of consent-lapsing, case-closed-by-authority and party-termination
    /// [default: insurer; municipality for case-closed-by-authority].
    #[arg(long, value_enum)]
    pub party: Option<SandboxParty>,
    /// case-closed-by-authority: the case reference to close [default: every case reference of
    /// the party's subscriptions about the person that are not ended].
    #[arg(long)]
    pub case_reference: Option<String>,
    /// party-termination: yes, terminate the demo party for good (start over by stopping the
    /// server and deleting lefi.db).
    #[arg(long)]
    pub yes: bool,
    /// The party API (case-closed-by-authority closes the case there) [default: localhost:50051].
    #[arg(long, default_value = "https://localhost:50051")]
    pub party_addr: String,
    /// The register feed's certificate (role `ingest`); its key is next to it.
    #[arg(long, default_value = "certs-dev/ingest.pem")]
    pub ingest_cert: PathBuf,
    /// The directory of the demo parties' certificates (insurer.pem, municipality.pem).
    #[arg(long, default_value = "certs-dev")]
    pub certs_dir: PathBuf,
}

//! `lefi orders …` (the orderer) and `lefi admin orders …` (the statistics unit).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{ConnectArgs, IdempotencyArgs, domain_value};
use crate::domain::statistics::order::OrderState;

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
    /// The wished variables: free text, or picked from the variable lists (e.g. "sjukpenning:
    /// nettodagar per månad, ersättningsperioder").
    #[arg(long)]
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
    domain_value(text, &OrderState::ALL, "an order state")
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
        /// Only delivered orders whose invoice is not recorded yet (`invoice` records it).
        #[arg(long)]
        awaiting_invoice: bool,
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

/// The life of a statistics order, shown by `lefi orders --help`.
pub(super) const ORDERS_HELP: &str = "\
A statistics order, from the orderer's side (each command prints the order and the next step):
  lefi orders submit --reference SCB-2026-17 --project \"Sjukfrånvaro 2024\" \\
      --purpose \"Officiell statistik\" --legal-ground \"24 kap. 8 § OSL\" \\
      --population \"Personer i urvalet\" --benefit SJP --benefit FP --variables \"Nettodagar per månad\" \\
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
pub(super) const ADMIN_ORDERS_HELP: &str = "\
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
  lefi admin orders list --awaiting-invoice  delivered, invoice not recorded (1-3 months after)
  lefi admin orders invoice ORDER --hours 11.75
  lefi admin orders purge --dry-run          orders whose retention has passed
Mutating commands are idempotent: if one fails without a clear answer, rerun it with the
--idempotency-key it printed.";

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

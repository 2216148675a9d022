//! How orders, their histories and manifests read as text (the `--json` forms are the messages).

use super::Side;
use crate::commands::output::{truncate, yes_no};
use crate::grpc::pb::lefi::v1 as pb;

/// The state's name without the enum's `ORDER_` prefix, e.g. `RELEASED`.
pub(super) fn state_name(s: i32) -> &'static str {
    let name = pb::StatisticsOrderState::try_from(s)
        .unwrap_or_default()
        .as_str_name();
    name.strip_prefix("ORDER_").unwrap_or(name)
}

/// Öre as kronor, e.g. 1062500 → "10625.00 SEK".
fn sek(ore: i64) -> String {
    let sign = if ore < 0 { "-" } else { "" };
    let abs = ore.unsigned_abs();
    format!("{sign}{}.{:02} SEK", abs / 100, abs % 100)
}

/// Hundredths of an hour as hours, e.g. 1250 → "12.50".
fn hours(centihours: i64) -> String {
    format!("{}.{:02}", centihours / 100, (centihours % 100).abs())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

pub(super) fn print_order(o: &pb::StatisticsOrder) {
    let submitted = o.submitted.clone().unwrap_or_default();
    println!("order         {} ({})", o.order_id, submitted.order_reference);
    println!("party         {}", o.party_id);
    println!("state         {}", state_name(o.state));
    println!("project       {}", submitted.project);
    println!("purpose       {}", submitted.purpose);
    println!("legal ground  {}", submitted.legal_ground);
    println!("population    {}", submitted.population_description);
    if o.population_count > 0 {
        println!(
            "              population file received: {} persons",
            o.population_count
        );
    }
    println!("benefits      {}", submitted.benefit_type_codes.join(", "));
    let period = submitted.period.unwrap_or_default();
    println!("period        {}..{}", period.from, period.to);
    println!("variables     {}", or_dash(&submitted.variables));
    println!("wished by     {}", or_dash(&submitted.wished_delivery));
    println!(
        "contact       {} <{}>",
        submitted.contact_name, submitted.contact_email
    );
    println!("special duty  {}", yes_no(submitted.special_duty));
    println!("submitted     {}", o.submitted_at);
    if o.receipt_confirmed_at.is_empty() {
        let overdue = if o.overdue { " — OVERDUE" } else { "" };
        println!("receipt       to be confirmed by {}{overdue}", o.receipt_due);
    } else {
        println!("receipt       confirmed {}", o.receipt_confirmed_at);
    }
    if let Some(q) = &o.quote {
        let price = if q.free_of_charge {
            "free of charge (special duty)".to_string()
        } else {
            format!(
                "{} excl. VAT + VAT {} (at {}/hour)",
                sek(q.net_ore),
                sek(q.vat_ore),
                sek(q.ore_per_hour)
            )
        };
        println!(
            "quote         {} hours: {price}; drafted by {}",
            hours(q.centihours),
            q.drafted_by
        );
        println!("  specifies   {}", q.specification);
    }
    if let Some(d) = &o.decision {
        let (what, label) = if d.released {
            ("released", "conditions")
        } else {
            ("refused", "reasons")
        };
        println!("review        {what} by {}", d.reviewer);
        println!("  {label:<11} {}", d.text);
    }
    if o.extracted_sequence > 0 {
        println!("extract       at register sequence {}", o.extracted_sequence);
    }
    if !o.delivered_on.is_empty() {
        println!(
            "delivered     {}; files kept until {}",
            o.delivered_on, o.retain_until
        );
    }
    if o.invoice_net_ore > 0 {
        println!("invoiced      {} excl. VAT", sek(o.invoice_net_ore));
    }
    if !o.deleted_at.is_empty() {
        println!("deleted       {} (the manifest remains)", o.deleted_at);
    }
}

pub(super) fn print_history(events: &[pb::StatisticsOrderEvent]) {
    println!(
        "{:>3} {:<25} {:<20} {:<7} {:<24} {:<42} DETAIL",
        "#", "TIME (UTC)", "STEP", "SIDE", "BY", "STATE"
    );
    for e in events {
        let change = format!(
            "{} → {}",
            match state_name(e.state_before) {
                "STATISTICS_ORDER_STATE_UNSPECIFIED" => "-",
                name => name,
            },
            state_name(e.state_after)
        );
        println!(
            "{:>3} {:<25} {:<20} {:<7} {:<24} {:<42} {}",
            e.number,
            e.at,
            e.step,
            e.side,
            truncate(&e.actor, 24),
            change,
            e.detail
        );
    }
}

pub(super) fn print_list_header(with_party: bool) {
    let party = if with_party {
        format!("{:<40} ", "PARTY")
    } else {
        String::new()
    };
    println!(
        "{:<40} {party}{:<20} {:<19} {:<12} {:<12} PROJECT",
        "ORDER ID", "REFERENCE", "STATE", "SUBMITTED", "RECEIPT DUE"
    );
}

pub(super) fn print_list_row(o: &pb::StatisticsOrder, with_party: bool) {
    let submitted = o.submitted.clone().unwrap_or_default();
    let party = if with_party {
        format!("{:<40} ", o.party_id)
    } else {
        String::new()
    };
    let due = if !o.receipt_confirmed_at.is_empty() {
        "confirmed".to_string()
    } else if o.overdue {
        format!("{} !", o.receipt_due)
    } else {
        o.receipt_due.clone()
    };
    println!(
        "{:<40} {party}{:<20} {:<19} {:<12} {:<12} {}",
        o.order_id,
        truncate(&submitted.order_reference, 20),
        state_name(o.state),
        o.submitted_at.get(..10).unwrap_or(&o.submitted_at),
        due,
        submitted.project
    );
}

pub(super) fn print_manifest(m: &pb::ExtractManifest) {
    let period = m.period.clone().unwrap_or_default();
    println!("order         {}", m.order_id);
    println!(
        "produced      {} at register sequence {}",
        m.produced_at, m.register_sequence
    );
    println!("period        {}..{}", period.from, period.to);
    let benefits: Vec<String> = m
        .benefit_type_codes
        .iter()
        .map(|b| match m.benefit_sources.get(b) {
            Some(source) => format!("{b} ({source})"),
            None => b.clone(),
        })
        .collect();
    println!("benefits      {}", benefits.join(", "));
    println!(
        "population    {} persons, {} of them with data",
        m.population, m.persons_with_data
    );
    for c in &m.coverage_used {
        let months: Vec<String> = c
            .months
            .iter()
            .map(|mc| format!("{} {:.1} %", mc.month, mc.coverage * 100.0))
            .collect();
        println!(
            "coverage      {}: lowest {:.1} % ({})",
            c.benefit_type_code,
            c.lowest_coverage * 100.0,
            months.join(", ")
        );
    }
    println!(
        "files         {}",
        if m.files_available {
            "available"
        } else {
            "deleted after the retention period (this manifest remains)"
        }
    );
    println!();
    println!(
        "{:<18} {:<30} {:>12} {:>9}  SHA-256",
        "FILE", "TYPE", "BYTES", "ROWS"
    );
    for f in &m.files {
        println!(
            "{:<18} {:<30} {:>12} {:>9}  {}",
            f.name, f.media_type, f.size_bytes, f.rows, f.sha256
        );
    }
}

/// What the order waits for, from `side`'s view: a command to run, or whom it waits for.
pub(super) fn next_step(o: &pb::StatisticsOrder, side: Side) -> Option<String> {
    use pb::StatisticsOrderState as S;
    let id = &o.order_id;
    let state = S::try_from(o.state).ok()?;
    let text = match (side, state) {
        (Side::Orderer, S::OrderSubmitted) => {
            format!("the statistics unit confirms receipt by {}", o.receipt_due)
        }
        (Side::Orderer, S::OrderInReview) => "the statistics unit reviews the order".to_string(),
        (Side::Orderer, S::OrderAwaitingCompletion) => format!(
            "answer the question in the history (lefi orders show {id}): lefi orders supplement {id} --text \"…\""
        ),
        (Side::Orderer, S::OrderQuoteDrafted) => {
            format!("read the quote, then agree to its content: lefi orders agree {id}")
        }
        (Side::Orderer, S::OrderContentAgreed) => {
            "the confidentiality review decides on the release".to_string()
        }
        (Side::Orderer, S::OrderReleased) if o.population_count == 0 => format!(
            "upload the population file and accept the quote: lefi orders upload {id} FILE; lefi orders accept {id}"
        ),
        (Side::Orderer, S::OrderReleased) => format!("accept the quote: lefi orders accept {id}"),
        (Side::Orderer, S::OrderQuoteAccepted) if o.population_count == 0 => {
            format!("upload the population file: lefi orders upload {id} FILE")
        }
        (Side::Orderer, S::OrderQuoteAccepted | S::OrderExtracted) => {
            "the statistics unit produces, checks and delivers the extract".to_string()
        }
        (Side::Orderer, S::OrderDelivered) => format!(
            "download the files (kept until {}): lefi orders download {id} --dir DIR",
            o.retain_until
        ),
        (Side::Unit, S::OrderSubmitted) => format!(
            "confirm receipt (due {}): lefi admin orders confirm {id}",
            o.receipt_due
        ),
        (Side::Unit, S::OrderInReview) => format!(
            "draft the quote: lefi admin orders quote {id} --hours H --spec \"…\" (or ask: lefi admin \
             orders ask {id} --question \"…\")"
        ),
        (Side::Unit, S::OrderAwaitingCompletion) => "the orderer supplements the order".to_string(),
        (Side::Unit, S::OrderQuoteDrafted) => "the orderer agrees to the quote's content".to_string(),
        (Side::Unit, S::OrderContentAgreed) => format!(
            "the confidentiality review, by another statistician than the quote's author: lefi \
             admin orders release {id} --conditions \"…\" (or refuse {id} --reasons \"…\")"
        ),
        (Side::Unit, S::OrderReleased) => {
            "the orderer uploads the population file and accepts the quote".to_string()
        }
        (Side::Unit, S::OrderQuoteAccepted) if o.population_count == 0 => {
            "the population file is to be uploaded".to_string()
        }
        (Side::Unit, S::OrderQuoteAccepted) => {
            format!("produce the extract: lefi admin orders extract {id}")
        }
        (Side::Unit, S::OrderExtracted) => format!(
            "check the files (lefi admin orders download {id} --dir DIR), then: lefi admin orders deliver {id}"
        ),
        (Side::Unit, S::OrderDelivered)
            if o.invoice_net_ore == 0 && !o.quote.as_ref().is_some_and(|q| q.free_of_charge) =>
        {
            format!(
                "the files are kept until {}; record the invoice: lefi admin orders invoice {id} --hours H",
                o.retain_until
            )
        }
        _ => return None,
    };
    Some(text)
}

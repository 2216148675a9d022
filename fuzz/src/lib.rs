//! The bodies of lefi's fuzz targets: one function per parser of outside input.
//!
//! Each function takes the fuzzer's bytes, runs the crate's real parser on them (the function the
//! server or the command line runs, not a copy), and panics when the parser panics or one of the
//! invariants written here breaks. Two builds use this file:
//!
//! - the fuzz targets in `fuzz_targets/`, one line each, through this crate (`lefi_fuzz`), built
//!   by `cargo +nightly fuzz` with coverage instrumentation;
//! - `tests/fuzz_corpus.rs` in the main crate, which includes this file as a module (`#[path]`)
//!   and runs every file of `fuzz/corpus/TARGET/` through [`TARGETS`], so `cargo test` replays the
//!   corpus on stable.
//!
//! So it may use only `std`, `lefi` and crates that are dependencies of both builds (`prost`,
//! `serde`, `time`, `toml`, `url`), and nothing that needs nightly.
//!
//! The invariants are the promises the crate makes about its input: no input makes a parser
//! panic; what parses writes back in a form that parses to the same value; identity numbers never
//! appear in error messages; cursors that were not issued, or were changed, are refused; page
//! tokens, which are not signed, page safely whatever position they name; a database password
//! never survives redaction.

use std::path::Path;

use lefi::config::{self, ConfigError};
use lefi::domain::Personnummer;
use lefi::domain::cursor::{CursorError, CursorKey, Position};
use lefi::domain::org_number::OrgNumber;
use lefi::domain::personnummer::IdKind;
use lefi::domain::register::{FactBody, FactError, NewFact};
use lefi::domain::statistics::population::{self, Population, PopulationRefused};
use lefi::grpc::admin_api::register::fact_of_request;
use lefi::grpc::convert;
use lefi::grpc::paging::{Pages, page_size};
use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::status;
use lefi::ndjson;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::Date;
use time::macros::date;

/// A target's body: runs one input, and panics on a bug.
pub type Body = fn(&[u8]);

/// Every target: its name (also its directory under `fuzz/corpus/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("personnummer", personnummer),
    ("org_number", org_number),
    ("ndjson_fact", ndjson_fact),
    ("ingest_request", ingest_request),
    ("cursor", cursor),
    ("page_token", page_token),
    ("config_file", config_file),
    ("population", population),
];

/// The reference date of the targets: ten-digit identity numbers are read, and future birth dates
/// refused, as on this day.
pub const TODAY: Date = date!(2026 - 12 - 01);

/// A second reference date, on a leap day at a century, for the century rules.
const LEAP_DAY: Date = date!(2000 - 02 - 29);

/// The latest date `time` can hold: a reference date that makes no birth date lie in the future.
const LAST_DAY: Date = date!(9999 - 12 - 31);

// ---------------------------------------------------------------------------------------------
// Identity numbers
// ---------------------------------------------------------------------------------------------

/// `Personnummer::parse` (every form a person's number arrives in: requests, NDJSON, the command
/// line) and `Personnummer::from_storage` (the database's form).
pub fn personnummer(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    for today in [TODAY, LEAP_DAY] {
        match Personnummer::parse(&input, today) {
            Ok(number) => {
                assert!(
                    number.birth_date() <= today,
                    "a birth date after the reference date"
                );
                check_personnummer(&number);
                check_short_forms(&number, today);
            }
            Err(e) => assert_no_echo(&e.to_string(), &input, 4),
        }
    }
    match Personnummer::from_storage(&input) {
        Ok(number) => {
            assert_eq!(
                number.as_storage(),
                input,
                "the storage form is exactly the input"
            );
            check_personnummer(&number);
        }
        Err(e) => assert_no_echo(&e.to_string(), &input, 4),
    }
}

/// What holds for every valid number: its storage form reads back to it, its parts agree with the
/// digits, and its `Display` and `Debug` do not show it.
fn check_personnummer(number: &Personnummer) {
    let storage = number.as_storage();
    assert!(
        storage.len() == 12 && storage.bytes().all(|b| b.is_ascii_digit()),
        "the storage form is twelve digits"
    );
    assert_eq!(Personnummer::from_storage(storage).as_ref(), Ok(number));
    assert_eq!(
        Personnummer::parse(&number.to_display_unmasked(), LAST_DAY).as_ref(),
        Ok(number),
        "the unmasked display form reads back to the same number"
    );
    let field = |range: std::ops::Range<usize>| storage.get(range).and_then(|s| s.parse::<u32>().ok());
    let born = number.birth_date();
    let written_day = field(6..8).unwrap_or_default();
    let (kind, day) = if written_day > 60 {
        (IdKind::Samordningsnummer, written_day - 60)
    } else {
        (IdKind::Personnummer, written_day)
    };
    assert_eq!(number.kind(), kind);
    assert_eq!(Some(u32::from(u8::from(born.month()))), field(4..6));
    assert_eq!(u32::from(born.day()), day);
    assert_eq!(
        i32::try_from(field(0..4).unwrap_or(u32::MAX)).ok(),
        Some(born.year())
    );
    assert_eq!(number.is_female(), field(10..11).is_some_and(|d| d % 2 == 0));
    for shown in [format!("{number}"), format!("{number:?}")] {
        assert_no_echo(&shown, storage, 4);
    }
}

/// The ten-digit forms: `YYMMDD-NNNC` gives the same person when they are under 100 on `today`,
/// `YYMMDD+NNNC` when they are 100 to 199.
fn check_short_forms(number: &Personnummer, today: Date) {
    let storage = number.as_storage();
    let (Some(date), Some(tail)) = (storage.get(2..8), storage.get(8..)) else {
        return;
    };
    let born = number.birth_date();
    let had_birthday = (today.month(), today.day()) >= (born.month(), born.day());
    let age = today.year() - born.year() - i32::from(!had_birthday);
    for (separator, ages) in [('-', 0..100), ('+', 100..200)] {
        let short = format!("{date}{separator}{tail}");
        let parsed = Personnummer::parse(&short, today);
        if ages.contains(&age) {
            assert_eq!(parsed.as_ref(), Ok(number), "{short} on {today}");
        } else if let Ok(other) = parsed {
            assert_ne!(&other, number, "{short} on {today} at age {age}");
        }
    }
}

/// `OrgNumber::parse`: parties' organisation numbers in admin requests and on the command line.
pub fn org_number(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    match OrgNumber::parse(&input) {
        Ok(number) => {
            let ten = number.as_str();
            assert!(ten.len() == 10 && ten.bytes().all(|b| b.is_ascii_digit()));
            assert!(ten.get(2..4).and_then(|s| s.parse::<u8>().ok()) >= Some(20));
            assert_eq!(Some(u32::from(number.legal_form_group())), ten[..1].parse().ok());
            for form in [number.to_string(), number.to_twelve_digit(), ten.to_string()] {
                assert_eq!(OrgNumber::parse(&form).as_ref(), Ok(&number), "{form}");
            }
        }
        Err(e) => assert_no_echo(&e.to_string(), &input, 4),
    }
}

// ---------------------------------------------------------------------------------------------
// Facts: the NDJSON feed and the ingest stream
// ---------------------------------------------------------------------------------------------

/// `ndjson::parse_fact_bytes` (what `lefi ingest` reads from a feed file), then the conversion
/// the server applies to the decoded fact (`convert::new_fact`).
pub fn ndjson_fact(data: &[u8]) {
    match ndjson::parse_fact_bytes(data) {
        Ok(fact) => {
            check_line_round_trip(&fact);
            check_fact(&fact, convert::new_fact(fact.clone(), TODAY));
        }
        Err(e) => assert_no_echo(&e.to_string(), &String::from_utf8_lossy(data), 6),
    }
}

/// The ingest stream's request: arbitrary bytes decoded as `lefi.admin.v1.IngestRequest` (what the
/// codec does with each message), then what the handler makes of it (`fact_of_request`, which
/// runs `convert::new_fact`).
pub fn ingest_request(data: &[u8]) {
    match admin_pb::IngestRequest::decode(data) {
        Ok(request) => {
            if let Some(fact) = &request.fact {
                check_line_round_trip(fact);
            }
            let fact = request.fact.clone().unwrap_or_default();
            check_fact(&fact, fact_of_request(request, TODAY));
        }
        Err(e) => {
            let refusal = status::malformed_message(&e);
            assert_no_echo(
                &without_decoded_numbers(refusal.message()),
                &String::from_utf8_lossy(data),
                6,
            );
        }
    }
}

/// A decode error with the numbers prost states after "value: " (a key, tag or wire type it read
/// as a varint) removed: they are values of the bytes, not text of the input, though an input can
/// spell the same digits elsewhere (as the fuzzer did).
fn without_decoded_numbers(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(at) = rest.find("value: ") {
        let (head, tail) = rest.split_at(at + "value: ".len());
        out.push_str(head);
        rest = tail.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// Every fact the wire can carry can be written as an NDJSON line (`lefi synth`, and the rejected
/// lines `lefi ingest` writes) that reads back to the same fact.
fn check_line_round_trip(fact: &admin_pb::Fact) {
    let line = ndjson::fact_to_line(fact).expect("every fact can be written as a line");
    assert!(!line.contains('\n'), "a line holds no line break");
    let back = ndjson::parse_fact_line(&line).expect("a written line reads back");
    assert_eq!(&back, fact);
}

/// What holds for the server's conversion of a fact: an accepted fact names the person its
/// `person_id` reads as, and its body's storage form reads back to the body; a refusal never
/// shows the identity number.
fn check_fact(fact: &admin_pb::Fact, result: Result<NewFact, FactError>) {
    match result {
        Ok(new) => {
            assert_eq!(
                Personnummer::parse(&fact.person_id, TODAY).as_ref(),
                Ok(new.person())
            );
            if let Some(body) = new.body() {
                let stored = FactBody::from_json(body.fact_type(), new.body_json())
                    .expect("a body's storage form reads back");
                assert_eq!(&stored, body, "the storage form of the body");
            }
            assert_eq!(new.content_hash().len(), 64);
        }
        Err(e) => assert_no_identity_number(fact, &e),
    }
}

/// A refusal shows neither the identity number as given, nor its digits, nor its storage form,
/// unless another field of the fact holds the same text (a refusal may quote an amount).
fn assert_no_identity_number(fact: &admin_pb::Fact, e: &FactError) {
    let given = fact.person_id.trim();
    let digits: String = given.chars().filter(char::is_ascii_digit).collect();
    let storage = Personnummer::parse(given, TODAY)
        .map(|p| p.as_storage().to_string())
        .unwrap_or_default();
    let rest = format!(
        "{:?}",
        admin_pb::Fact {
            person_id: String::new(),
            ..fact.clone()
        }
    );
    for form in [given, digits.as_str(), storage.as_str()] {
        if form.chars().filter(char::is_ascii_digit).count() < 6 || rest.contains(form) {
            continue;
        }
        assert!(
            !e.message.contains(form) && !e.field.contains(form),
            "a refusal shows the identity number: {e}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Cursors and page tokens
// ---------------------------------------------------------------------------------------------

/// The key the cursor target signs with, and the seeds in `corpus/cursor/` were signed with.
pub const CURSOR_KEY: &[u8] = b"lefi fuzz cursor key";
/// The party the cursor target's cursors are issued to.
pub const CURSOR_PARTY: &str = "pty_fuzz";

/// The characters of base64url, which tampering mostly chooses from.
const BASE64URL: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `CursorKey::decode` on the cursor a client sends back, then a position made from the input:
/// it encodes and decodes to itself, and no other party, no other key and no change to its text
/// gets through.
pub fn cursor(data: &[u8]) {
    let key = CursorKey::new(CURSOR_KEY.to_vec());
    let other_key = CursorKey::new(b"another service's key".to_vec());

    let text = String::from_utf8_lossy(data);
    if let Ok(position) = key.decode(CURSOR_PARTY, &text) {
        assert_eq!(
            key.encode(CURSOR_PARTY, position),
            text,
            "only the very text the service issued verifies"
        );
        assert_eq!(key.decode("pty_other", &text), Err(CursorError::Signature));
        assert_eq!(other_key.decode(CURSOR_PARTY, &text), Err(CursorError::Signature));
    }

    let mut bytes = [0u8; 28];
    for (to, from) in bytes.iter_mut().zip(data) {
        *to = *from;
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[1 + 8 * i..9 + 8 * i]);
        u64::from_le_bytes(b)
    };
    let (a, b, c) = (word(0), word(1), word(2));
    let position = if bytes[0] & 1 == 0 {
        Position::History {
            seq: a,
            ord: b,
            records_sent: c,
        }
    } else {
        Position::Start {
            head: a,
            index: b,
            records_sent: c,
        }
    };
    let encoded = key.encode(CURSOR_PARTY, position);
    assert_eq!(key.decode(CURSOR_PARTY, &encoded), Ok(position));
    assert_eq!(key.decode("pty_other", &encoded), Err(CursorError::Signature));
    assert_eq!(
        other_key.decode(CURSOR_PARTY, &encoded),
        Err(CursorError::Signature)
    );

    let (at, with) = (bytes[25], bytes[26]);
    let mut tampered: Vec<char> = encoded.chars().collect();
    let replacement = match BASE64URL.get(usize::from(with)) {
        Some(&c) => char::from(c),
        None => char::from(with),
    };
    if let Some(slot) = tampered.get_mut(usize::from(at) % encoded.len()) {
        *slot = replacement;
    }
    let tampered: String = tampered.into_iter().collect();
    if tampered != encoded {
        assert!(
            key.decode(CURSOR_PARTY, &tampered).is_err(),
            "a changed cursor verifies"
        );
    }
    let cut = usize::from(bytes[27]) % encoded.len();
    assert!(
        key.decode(CURSOR_PARTY, &encoded[..cut]).is_err(),
        "a shortened cursor verifies"
    );
    assert!(
        key.decode(CURSOR_PARTY, &format!("{encoded}{replacement}"))
            .is_err(),
        "a lengthened cursor verifies"
    );
}

/// `Pages::position` and `Pages::slice` on the page token a client sends back, with every position
/// type a listing uses; then, since tokens are not signed and a client can write any position, a
/// token for a position made from the input, which must page without overflow.
pub fn page_token(data: &[u8]) {
    let pages = Pages::new("ListFuzz", "pty_fuzz|ACTIVE");
    let other_scope = Pages::new("ListFuzz", "pty_other|ACTIVE");
    let other_listing = Pages::new("ListOther", "pty_fuzz|ACTIVE");
    let lists = [&pages, &other_scope, &other_listing];

    let text = String::from_utf8_lossy(data);
    check_token::<i64>(lists, &text);
    check_token::<usize>(lists, &text);
    check_token::<(String, String)>(lists, &text);
    check_token::<(i64, String)>(lists, &text);
    if let Err(e) = pages.slice((0..10).collect::<Vec<u32>>(), &text, 3) {
        assert_no_echo(&e.message, &text, 4);
    }

    let mut bytes = [0u8; 13];
    for (to, from) in bytes.iter_mut().zip(data) {
        *to = *from;
    }
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[..8]);
    let offset = usize::try_from(u64::from_le_bytes(word)).unwrap_or(usize::MAX);
    let size = page_size(u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]])) as usize;
    let total = usize::from(bytes[12]);
    let items: Vec<usize> = (0..total).collect();

    let token = pages.token(offset);
    let (page, next) = pages
        .slice(items.clone(), &token, size as u32)
        .expect("the listing's own token is honoured");
    let expected: Vec<usize> = items.iter().copied().skip(offset).take(size).collect();
    assert_eq!(page, expected);
    match offset.checked_add(size) {
        Some(end) if end < total => {
            assert_eq!(pages.position::<usize>(&next).ok(), Some(Some(end)));
        }
        _ => assert!(next.is_empty(), "a token after the last page"),
    }

    let mut rows = items;
    let next = pages.trim(&mut rows, size as u32, |row| *row);
    assert_eq!(rows.len(), total.min(size));
    if total > size {
        assert_eq!(pages.position::<usize>(&next).ok(), Some(size.checked_sub(1)));
    } else {
        assert!(next.is_empty());
    }
}

/// One position type: a token that reads writes back to a token for the same position, and is
/// refused by any other listing or scope; a refusal does not echo the token.
fn check_token<P>([pages, other_scope, other_listing]: [&Pages; 3], text: &str)
where
    P: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    match pages.position::<P>(text) {
        Ok(Some(position)) => {
            let again = pages.token(&position);
            assert_eq!(pages.position::<P>(&again).ok(), Some(Some(position)));
            assert!(other_scope.position::<P>(text).is_err());
            assert!(other_listing.position::<P>(text).is_err());
        }
        Ok(None) => assert!(text.is_empty(), "only an empty token means the first page"),
        Err(e) => assert_no_echo(&e.message, text, 4),
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// The configuration file of `lefi serve --config`: its text through `config::plan_file_text`, the
/// checks `serve` runs once it has read the file. Every problem names where it is; a plan that
/// passes has two distinct listeners; the database URL's password does not survive redaction.
pub fn config_file(data: &[u8]) {
    // `serve` reads the file as UTF-8 text and reports any other file as unreadable.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::plan_file_text(Path::new("fuzz.toml"), text) {
        Ok(plan) => assert!(
            plan.party_addr != plan.admin_addr || plan.party_addr.port() == 0,
            "both APIs on one address"
        ),
        Err(ConfigError(problems)) => {
            assert!(!problems.is_empty(), "a refusal without a problem");
            for problem in &problems {
                assert!(
                    problem.starts_with("fuzz.toml:") || problem.starts_with("--"),
                    "a problem that does not say where it is: {problem}"
                );
            }
        }
    }
    let url = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|table| table.get("database_url")?.as_str().map(str::to_string));
    check_redaction(url.as_deref().unwrap_or(text));
}

/// `config::redact_url` hides the password that a client reading the URL would send (the `url`
/// crate, which sqlx uses): the redacted URL reads with the password `***` and the same user and
/// host. URLs of the schemes the `url` crate treats as special (http, file, …), where `\` also
/// ends the host, are left out: a database URL never has one.
fn check_redaction(url: &str) {
    const SPECIAL: [&str; 6] = ["http", "https", "ws", "wss", "ftp", "file"];
    let Ok(parsed) = url::Url::parse(url) else {
        return;
    };
    if parsed.password().is_none() || SPECIAL.contains(&parsed.scheme()) {
        return;
    }
    let redacted = config::redact_url(url);
    let again = url::Url::parse(&redacted).expect("a redacted URL is still a URL");
    assert_eq!(
        again.password(),
        Some("***"),
        "the password survives in {redacted:?}"
    );
    assert_eq!(again.username(), parsed.username());
    assert_eq!(again.host_str(), parsed.host_str());
}

// ---------------------------------------------------------------------------------------------
// Statistics orders
// ---------------------------------------------------------------------------------------------

/// `population::parse`: the population (key) file of a statistics order, as an operator uploads it
/// from what the research project sent. An accepted file holds distinct persons and distinct, valid
/// serial numbers, each with one value per further column, and writes back as a file that reads back
/// to the same population. A refused file names only lines it has, in order, and no reason repeats
/// digits of the file beyond the line and column counts it states.
pub fn population(data: &[u8]) {
    let lines: Vec<&str> = std::str::from_utf8(data)
        .map(|text| text.lines().collect())
        .unwrap_or_default();
    match population::parse(data, TODAY) {
        Ok(population) => {
            check_population(&population);
            if let Some(file) = population_file(&population) {
                assert_eq!(
                    population::parse(file.as_bytes(), TODAY).as_ref(),
                    Ok(&population),
                    "the written file reads back: {file:?}"
                );
            }
        }
        Err(PopulationRefused::Lines(problems)) => {
            assert!(!problems.is_empty(), "a refusal without a line");
            let text_of_file = String::from_utf8_lossy(data);
            // A reason may state line numbers and column counts, which are at most the file's
            // length: a longer run of digits would come from the file's contents.
            let counts = ((data.len() + 1).to_string().len() + 1).max(6);
            let mut previous = 0;
            for problem in &problems {
                assert!(problem.line > previous, "lines out of order: {problems:?}");
                previous = problem.line;
                let text = lines
                    .get(problem.line - 1)
                    .unwrap_or_else(|| panic!("line {} of a file of {} lines", problem.line, lines.len()));
                assert!(!text.trim().is_empty(), "a blank line {} rejected", problem.line);
                assert_no_echo(&problem.reason, &text_of_file, counts);
            }
        }
        Err(PopulationRefused::NotText) => assert!(std::str::from_utf8(data).is_err()),
        Err(PopulationRefused::Empty | PopulationRefused::TooLarge) => {}
    }
}

/// What holds for every accepted population.
fn check_population(population: &Population) {
    assert!(!population.members.is_empty(), "a population without persons");
    let mut persons = std::collections::HashSet::new();
    let mut serials = std::collections::HashSet::new();
    for member in &population.members {
        assert!(persons.insert(member.person.as_storage()), "a person twice");
        assert!(serials.insert(member.serial.as_str()), "a serial number twice");
        assert!(
            (1..=population::MAX_SERIAL_LEN).contains(&member.serial.len())
                && member
                    .serial
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "an invalid serial number"
        );
        assert_eq!(member.extra.len(), population.extra_columns.len());
        assert!(member.person.birth_date() <= TODAY);
    }
}

/// The population written as a file with a header, in the separator (of the three the format
/// allows) that no name or value holds; `None` when each of them occurs somewhere.
fn population_file(population: &Population) -> Option<String> {
    let cells = || {
        population.extra_columns.iter().chain(
            population
                .members
                .iter()
                .flat_map(|m| m.extra.iter().chain([&m.serial])),
        )
    };
    // The reader takes the first of `;`, tab and `,` that the first line holds.
    const SEPARATORS: [&str; 3] = [";", "\t", ","];
    let chosen = SEPARATORS
        .iter()
        .position(|s| cells().all(|cell| !cell.contains(s)))?;
    let earlier = &SEPARATORS[..chosen];
    if population
        .extra_columns
        .iter()
        .any(|name| earlier.iter().any(|s| name.contains(s)))
    {
        return None;
    }
    let separator = SEPARATORS[chosen];
    let mut file = ["personnummer", "serial"]
        .into_iter()
        .chain(population.extra_columns.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(separator);
    for member in &population.members {
        file.push('\n');
        let row = [member.person.as_storage(), member.serial.as_str()]
            .into_iter()
            .chain(member.extra.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(separator);
        file.push_str(&row);
    }
    Some(file)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Panics when `message` holds a run of at least `min` digits that the input holds too, as written
/// or once everything but its digits is dropped (the storage form of an identity number).
fn assert_no_echo(message: &str, input: &str, min: usize) {
    // The input's digits are collected only when the message has a run long enough to check:
    // most messages have none, and a refused population file asks this once per line.
    let mut input_digits: Option<String> = None;
    for run in message
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() >= min)
    {
        let digits = input_digits.get_or_insert_with(|| input.chars().filter(char::is_ascii_digit).collect());
        assert!(
            !input.contains(run) && !digits.contains(run),
            "the message echoes digits of the input: {message}"
        );
    }
}

//! The disclosure log's entries and the rule that chains them: every decision about personal data
//! (allowed or denied) is one entry, and each entry's hash covers the one before it, so a changed,
//! removed or inserted entry is found by recomputing the chain.

use crate::domain::names::named_enum;
use sha2::{Digest, Sha256};
use time::Date;

use crate::domain::Personnummer;
use crate::domain::clock::{Micros, format_date};

/// The hash that stands before the first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

named_enum! {
    /// Whether an access was allowed.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum Decision {
        Allowed,
        Denied,
    }
}

named_enum! {
    /// The kind of access an entry records.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum Channel {
        SubscriptionOrder,
        StreamDelivery,
        Query,
        OperatorView,
        /// A statistics order's extract was delivered: one entry per person of its population.
        StatisticsRelease,
    }
}

/// One disclosure-log entry to append. `None` and empty lists mean "does not apply".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDisclosure {
    pub channel: Channel,
    pub decision: Decision,
    /// The `ErrorReason` name of a denial.
    pub denial_reason: Option<String>,
    /// The full gRPC method.
    pub rpc: String,
    pub request_id: Option<String>,
    /// The party that asked (none for an operator's view).
    pub party_id: Option<String>,
    pub party_org_number: Option<String>,
    /// SHA-256 of the client certificate the request came with.
    pub system_identity: String,
    /// The operator who looked (operator views only).
    pub operator_name: Option<String>,
    pub legal_basis: Option<String>,
    pub purpose: Option<String>,
    pub case_reference: Option<String>,
    pub consent_id: Option<String>,
    pub subscription_id: Option<String>,
    pub person: Option<Personnummer>,
    pub benefit_types: Vec<String>,
    pub period_from: Option<Date>,
    pub period_to: Option<Date>,
    pub record_count: u64,
    /// What was disclosed covers register sequences `(from_sequence, to_sequence]`.
    pub from_sequence: u64,
    pub to_sequence: u64,
}

impl NewDisclosure {
    /// An entry for `channel` and `rpc` with nothing else filled in.
    pub fn new(channel: Channel, decision: Decision, rpc: impl Into<String>) -> Self {
        Self {
            channel,
            decision,
            denial_reason: None,
            rpc: rpc.into(),
            request_id: None,
            party_id: None,
            party_org_number: None,
            system_identity: String::new(),
            operator_name: None,
            legal_basis: None,
            purpose: None,
            case_reference: None,
            consent_id: None,
            subscription_id: None,
            person: None,
            benefit_types: Vec::new(),
            period_from: None,
            period_to: None,
            record_count: 0,
            from_sequence: 0,
            to_sequence: 0,
        }
    }
}

/// A stored disclosure-log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureEntry {
    pub entry_id: i64,
    pub at: Micros,
    pub entry: NewDisclosure,
    pub previous_hash: String,
    pub hash: String,
}

/// The result of verifying the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainVerdict {
    Intact {
        checked: u64,
        last_hash: String,
    },
    Broken {
        checked: u64,
        entry_id: i64,
        problem: ChainProblem,
    },
}

/// How the chain breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainProblem {
    HashMismatch,
    PreviousHashMismatch,
    EntryMissing,
}

fn text(value: Option<&str>) -> &str {
    value.unwrap_or("")
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The SHA-256 of an entry: over the previous hash and a canonical encoding of every field. The
/// encoding is fixed (entries written by every earlier version verify): a compact JSON array of the
/// fields in the order below, where "does not apply" is the empty string and counts and sequences
/// are signed 64-bit numbers. It is written straight into the hash, without building the JSON
/// (every snapshot of a person appends an entry, and building it cost more than hashing it).
pub fn entry_hash(previous_hash: &str, entry_id: i64, at: Micros, e: &NewDisclosure) -> String {
    let mut hasher = Sha256::new();
    hasher.update(previous_hash.as_bytes());
    let mut array = CanonicalArray::new(&mut hasher);
    array.push(&entry_id);
    array.push(&at);
    array.push(text(e.party_id.as_deref()));
    array.push(text(e.party_org_number.as_deref()));
    array.push(&e.system_identity);
    array.push(text(e.operator_name.as_deref()));
    array.push(e.channel.as_str());
    array.push(&e.rpc);
    array.push(text(e.request_id.as_deref()));
    array.push(e.decision.as_str());
    array.push(text(e.denial_reason.as_deref()));
    array.push(text(e.legal_basis.as_deref()));
    array.push(text(e.purpose.as_deref()));
    array.push(text(e.case_reference.as_deref()));
    array.push(text(e.consent_id.as_deref()));
    array.push(text(e.subscription_id.as_deref()));
    array.push(e.person.as_ref().map_or("", Personnummer::as_storage));
    array.push(&e.benefit_types);
    array.push(&e.period_from.map(format_date).unwrap_or_default());
    array.push(&e.period_to.map(format_date).unwrap_or_default());
    array.push(&signed(e.record_count));
    array.push(&signed(e.from_sequence));
    array.push(&signed(e.to_sequence));
    array.end();
    hex::encode(hasher.finalize())
}

/// A compact JSON array written into a hash as its elements come, byte for byte what serde_json
/// prints for the same array.
struct CanonicalArray<'a> {
    out: HashWriter<'a>,
    first: bool,
}

impl<'a> CanonicalArray<'a> {
    fn new(hasher: &'a mut Sha256) -> Self {
        hasher.update(b"[");
        Self {
            out: HashWriter(hasher),
            first: true,
        }
    }

    fn push<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        if !std::mem::take(&mut self.first) {
            self.out.0.update(b",");
        }
        // Writing into a hash cannot fail, nor can serializing numbers, text and lists of text.
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    fn end(self) {
        self.out.0.update(b"]");
    }
}

/// `std::io::Write` into a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> NewDisclosure {
        NewDisclosure {
            party_id: Some("p".into()),
            person: Some(Personnummer::from_storage("199007042386").unwrap()),
            record_count: 3,
            ..NewDisclosure::new(Channel::Query, Decision::Allowed, "/x")
        }
    }

    /// The canonical encoding as it was first written (a JSON value printed whole): the hash of
    /// every entry ever written must stay the same.
    fn reference_hash(previous_hash: &str, entry_id: i64, at: Micros, e: &NewDisclosure) -> String {
        let canonical = serde_json::json!([
            entry_id,
            at,
            text(e.party_id.as_deref()),
            text(e.party_org_number.as_deref()),
            e.system_identity,
            text(e.operator_name.as_deref()),
            e.channel.as_str(),
            e.rpc,
            text(e.request_id.as_deref()),
            e.decision.as_str(),
            text(e.denial_reason.as_deref()),
            text(e.legal_basis.as_deref()),
            text(e.purpose.as_deref()),
            text(e.case_reference.as_deref()),
            text(e.consent_id.as_deref()),
            text(e.subscription_id.as_deref()),
            e.person.as_ref().map_or("", Personnummer::as_storage),
            e.benefit_types,
            e.period_from.map(format_date).unwrap_or_default(),
            e.period_to.map(format_date).unwrap_or_default(),
            signed(e.record_count),
            signed(e.from_sequence),
            signed(e.to_sequence),
        ]);
        let mut hasher = Sha256::new();
        hasher.update(previous_hash.as_bytes());
        hasher.update(canonical.to_string().as_bytes());
        hex::encode(hasher.finalize())
    }

    #[test]
    fn the_hash_is_the_one_every_earlier_version_wrote() {
        let day = time::macros::date!(2026 - 03 - 01);
        let full = NewDisclosure {
            party_id: Some("pty_1".into()),
            party_org_number: Some("556677-8899".into()),
            system_identity: "CN=Försäkring \"Ett\" AB\n\u{1}".into(),
            operator_name: Some("Åsa Öberg".into()),
            request_id: Some("req-1".into()),
            denial_reason: Some("CONSENT_REQUIRED".into()),
            legal_basis: Some("INS_COORDINATION".into()),
            purpose: Some("samordning / \\ ersättning".into()),
            case_reference: Some("K-1".into()),
            consent_id: Some("con_1".into()),
            subscription_id: Some("sub_1".into()),
            person: Some(Personnummer::from_storage("199007042386").unwrap()),
            benefit_types: vec!["SJP".into(), "FP".into(), "\t".into()],
            period_from: Some(day),
            period_to: Some(day),
            record_count: 17,
            from_sequence: 3,
            to_sequence: u64::MAX,
            ..NewDisclosure::new(
                Channel::StreamDelivery,
                Decision::Denied,
                "/lefi.v1.Delivery/Stream",
            )
        };
        let bare = NewDisclosure::new(Channel::OperatorView, Decision::Allowed, "");
        for (id, at, e) in [(1, 10, entry()), (7, -3, full), (i64::MAX, i64::MIN, bare)] {
            assert_eq!(
                entry_hash(GENESIS_HASH, id, at, &e),
                reference_hash(GENESIS_HASH, id, at, &e)
            );
        }
    }

    #[test]
    fn hash_covers_every_field_and_the_previous_hash() {
        let e = entry();
        let h = entry_hash(GENESIS_HASH, 1, 10, &e);
        assert_eq!(h.len(), 64);
        assert_ne!(h, entry_hash(GENESIS_HASH, 2, 10, &e));
        assert_ne!(h, entry_hash(GENESIS_HASH, 1, 11, &e));
        assert_ne!(h, entry_hash(&h, 1, 10, &e));
        let changed = NewDisclosure {
            record_count: 4,
            ..e.clone()
        };
        assert_ne!(h, entry_hash(GENESIS_HASH, 1, 10, &changed));
        assert_eq!(h, entry_hash(GENESIS_HASH, 1, 10, &e));
    }

    #[test]
    fn the_canonical_encoding_is_the_one_earlier_versions_wrote() {
        // Computed by the version that stored every field as text (7a7780c): a stored chain must
        // keep verifying after the fields became typed.
        let e = entry();
        let expected = {
            let canonical = serde_json::json!([
                1,
                10,
                "p",
                "",
                "",
                "",
                "QUERY",
                "/x",
                "",
                "ALLOWED",
                "",
                "",
                "",
                "",
                "",
                "",
                "199007042386",
                Vec::<String>::new(),
                "",
                "",
                3,
                0,
                0
            ]);
            let mut hasher = Sha256::new();
            hasher.update(GENESIS_HASH.as_bytes());
            hasher.update(canonical.to_string().as_bytes());
            hex::encode(hasher.finalize())
        };
        assert_eq!(entry_hash(GENESIS_HASH, 1, 10, &e), expected);
    }
}

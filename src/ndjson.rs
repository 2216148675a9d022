//! The register's feed file format: NDJSON with one `lefi.admin.v1.Fact` per line, in the
//! protobuf JSON mapping (field names in lowerCamelCase or as in the proto file, enums by name,
//! 64-bit integers as numbers or strings). The proto file is the format's documentation.
//!
//! `lefi ingest` reads it and `lefi synth` writes it. Parsing goes through the embedded descriptor
//! set (prost-reflect), so every field the contract has is accepted and anything else is refused
//! with a message; no input makes the parser panic.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions,
};

use crate::grpc::pb::lefi::admin::v1::Fact;

/// The full name of the message every line holds.
pub const FACT_MESSAGE: &str = "lefi.admin.v1.Fact";

/// Why a line is not a fact. The text names the problem (e.g. an unknown field or a malformed
/// value) and never repeats the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("the line is not UTF-8 text")]
    NotUtf8,
    #[error("the line is empty")]
    Empty,
    #[error("the line is not a lefi.admin.v1.Fact in protobuf JSON: {0}")]
    Malformed(String),
    #[error("the embedded protobuf descriptors are unusable")]
    Descriptors,
}

/// The decoded descriptors of every lefi proto file.
pub fn descriptor_pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::grpc::pb::FILE_DESCRIPTOR_SET).ok())
        .as_ref()
}

fn fact_descriptor() -> Result<MessageDescriptor, LineError> {
    descriptor_pool()
        .and_then(|p| p.get_message_by_name(FACT_MESSAGE))
        .ok_or(LineError::Descriptors)
}

/// Parses one line (surrounding whitespace ignored).
pub fn parse_fact_line(line: &str) -> Result<Fact, LineError> {
    let line = line.trim();
    if line.is_empty() {
        return Err(LineError::Empty);
    }
    let descriptor = fact_descriptor()?;
    let mut de = serde_json::Deserializer::from_str(line);
    let dynamic = DynamicMessage::deserialize_with_options(descriptor, &mut de, &DeserializeOptions::new())
        .map_err(|e| LineError::Malformed(without_input(&e)))?;
    de.end().map_err(|e| LineError::Malformed(without_input(&e)))?;
    dynamic
        .transcode_to::<Fact>()
        .map_err(|e| LineError::Malformed(e.to_string()))
}

/// Parses one line given as bytes.
pub fn parse_fact_bytes(bytes: &[u8]) -> Result<Fact, LineError> {
    let line = std::str::from_utf8(bytes).map_err(|_| LineError::NotUtf8)?;
    parse_fact_line(line)
}

/// Writes a fact as one line (no newline), enums by name and default values left out.
pub fn fact_to_line(fact: &Fact) -> Result<String, LineError> {
    let descriptor = fact_descriptor()?;
    let dynamic = DynamicMessage::decode(descriptor, fact.encode_to_vec().as_slice())
        .map_err(|e| LineError::Malformed(e.to_string()))?;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    dynamic
        .serialize_with_options(
            &mut ser,
            &SerializeOptions::new().stringify_64_bit_integers(false),
        )
        .map_err(|e| LineError::Malformed(e.to_string()))?;
    String::from_utf8(out).map_err(|_| LineError::NotUtf8)
}

/// The parser's message cut before the first quoted value (e.g. an unknown enum name), since a
/// line may hold an identity number, plus the column.
fn without_input(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(['`', '\'', '"']) {
        Some(cut) => format!(
            "{} (line column {})",
            text[..cut].trim_end().trim_end_matches(':'),
            e.column()
        ),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const EXAMPLE: &str = r#"{"sourceSystem":"MIDAS","sourceId":"SJP-1-PAY-2024-01","sourceVersion":"1","personId":"19900704-2386","benefitType":"SJP","kind":"NEW","payment":{"caseId":"FALL-1","paymentDate":"2024-02-25","covered":{"from":"2024-01-09","to":"2024-01-31"},"grossOre":"1234567","taxOre":"370370","lines":[{"amountType":"GRUND","amountOre":"1234567"}],"payer":"FK"}}"#;

    #[test]
    fn a_fact_line_round_trips() {
        let fact = parse_fact_line(EXAMPLE).unwrap();
        assert_eq!(fact.source_system, "MIDAS");
        assert_eq!(fact.source_version, 1);
        let Some(crate::grpc::pb::lefi::admin::v1::fact::Body::Payment(p)) = &fact.body else {
            panic!("not a payment");
        };
        assert_eq!(p.gross_ore, 1_234_567);
        let line = fact_to_line(&fact).unwrap();
        assert_eq!(parse_fact_line(&line).unwrap(), fact);
        // Proto field names and numbers without quotes are accepted too.
        let snake =
            r#"{"source_system":"X","source_version":2,"kind":"RETRACTION","person_id":"19900704-2386"}"#;
        assert_eq!(parse_fact_line(snake).unwrap().source_version, 2);
    }

    #[test]
    fn problems_are_named_without_the_input() {
        for bad in [
            "",
            "   ",
            "{",
            "[]",
            r#"{"nope":1}"#,
            r#"{"kind":"19900704-2386"}"#,
            r#"{"sourceVersion":-1}"#,
            r#"{"sourceSystem":"A"} trailing"#,
        ] {
            let e = parse_fact_line(bad).unwrap_err();
            assert!(!e.to_string().contains("19900704"), "{e}");
        }
        assert_eq!(parse_fact_bytes(&[0xff, 0xfe]).unwrap_err(), LineError::NotUtf8);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_fact_bytes(&bytes);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse_fact_line(&text);
        }

        #[test]
        fn mutated_facts_never_panic(cut in 0usize..400, insert in "[{}\\[\\]\":,0-9a-zA-Z -]{0,8}") {
            let mut line = EXAMPLE.to_string();
            let at = cut.min(line.len());
            line.insert_str(at, &insert);
            let _ = parse_fact_line(&line);
            let _ = parse_fact_line(&line[..at]);
        }
    }
}

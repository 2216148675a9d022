//! `lefi.v1.BenefitRecord` as the generated messages hold it: either its fields, or the encoding
//! the register stored when the version was ingested, sent as it is.
//!
//! A delivery sends hundreds of thousands of records a second. Built field by field, every one
//! would be parsed from the register's JSON body, converted and encoded again; stored once at
//! ingest, it is copied into the message instead. What is stored is the encoding of every field
//! but the two the register assigns on commit, `register_sequence` (1) and `recorded_at` (2);
//! those are encoded in front of it when the record is sent. Protobuf lets fields come in any
//! order and a parser merges them, so the message a client decodes is the same as if it had been
//! built field by field (tests/api compare both forms).
//!
//! `build.rs` generates the record's fields as `pb::BenefitRecordFields` (a copy of the message
//! under another name) and maps `BenefitRecord` to this type in every generated message. Reading
//! a field (through `Deref`) works on either form: a stored record is decoded on first read.

use std::ops::{Deref, DerefMut};
use std::sync::{LazyLock, OnceLock};

use bytes::{Buf, BufMut, Bytes};
use prost::Message;
use prost::encoding::{DecodeContext, WireType};

use super::pb::lefi::v1;
use crate::domain::register::versions::StoredRecord;

/// One benefit record of a message; see the module documentation. Small (about 80 bytes: the
/// fields, over 300, are boxed), as a snapshot holds hundreds of records in flight per stream.
#[derive(Clone, Default)]
pub struct BenefitRecord {
    /// The stored form, when the record was made from it, with its fields once read.
    stored: Option<(Stored, OnceLock<Box<v1::BenefitRecordFields>>)>,
    /// The fields, when the record was built or decoded (`None` with no stored form: all defaults).
    fields: Option<Box<v1::BenefitRecordFields>>,
}

/// The fields of a record with none set.
static NO_FIELDS: LazyLock<v1::BenefitRecordFields> = LazyLock::new(Default::default);

/// A record in the form the register stores: what the register assigned on commit and the
/// encoding of everything else.
#[derive(Clone, Debug, PartialEq)]
struct Stored {
    register_sequence: u64,
    recorded_at: prost_types::Timestamp,
    /// The encoding of `BenefitRecordFields` with fields 1 and 2 unset ([`encode_rest`]).
    rest: Bytes,
}

impl Stored {
    /// The fields (a stored form that does not decode, which only a damaged database could hold,
    /// reads as what did decode: the rest is left at its defaults).
    fn decode(&self) -> v1::BenefitRecordFields {
        let mut fields = v1::BenefitRecordFields::decode(self.rest.clone()).unwrap_or_default();
        fields.register_sequence = self.register_sequence;
        fields.recorded_at = Some(self.recorded_at);
        fields
    }

    /// Length of fields 1 and 2.
    fn committed_len(&self) -> usize {
        let sequence = if self.register_sequence == 0 {
            0
        } else {
            prost::encoding::uint64::encoded_len(1, &self.register_sequence)
        };
        sequence + prost::encoding::message::encoded_len(2, &self.recorded_at)
    }
}

/// The stored part of a record: its encoding without `register_sequence` and `recorded_at`,
/// which the register assigns on commit (they are cleared here before encoding).
pub fn encode_rest(mut fields: v1::BenefitRecordFields) -> Vec<u8> {
    fields.register_sequence = 0;
    fields.recorded_at = None;
    fields.encode_to_vec()
}

/// The stored part of `record` as the register keeps it at ingest ([`encode_rest`] of the record as
/// a delivery sends it).
pub fn stored_form(record: StoredRecord) -> Vec<u8> {
    encode_rest(super::convert::benefit_record_fields(record))
}

impl BenefitRecord {
    /// A record from its stored form: the sequence and instant of its commit and `rest` as
    /// [`encode_rest`] made it.
    pub fn stored(register_sequence: u64, recorded_at: prost_types::Timestamp, rest: Bytes) -> Self {
        let stored = Stored {
            register_sequence,
            recorded_at,
            rest,
        };
        Self {
            stored: Some((stored, OnceLock::new())),
            fields: None,
        }
    }

    /// The record's fields (a stored record is decoded on the first read).
    pub fn fields(&self) -> &v1::BenefitRecordFields {
        match (&self.stored, &self.fields) {
            (Some((stored, decoded)), _) => decoded.get_or_init(|| Box::new(stored.decode())),
            (None, Some(fields)) => fields,
            (None, None) => &NO_FIELDS,
        }
    }

    /// The record's fields, owned.
    pub fn into_fields(self) -> v1::BenefitRecordFields {
        match (self.stored, self.fields) {
            (Some((stored, decoded)), _) => decoded.into_inner().map_or_else(|| stored.decode(), |f| *f),
            (None, fields) => fields.map(|f| *f).unwrap_or_default(),
        }
    }

    /// The fields, to be changed: the stored form is dropped.
    fn fields_mut(&mut self) -> &mut v1::BenefitRecordFields {
        if let Some((stored, decoded)) = self.stored.take() {
            self.fields = Some(decoded.into_inner().unwrap_or_else(|| Box::new(stored.decode())));
        }
        self.fields.get_or_insert_with(Box::default)
    }
}

impl From<v1::BenefitRecordFields> for BenefitRecord {
    fn from(fields: v1::BenefitRecordFields) -> Self {
        Self {
            stored: None,
            fields: Some(Box::new(fields)),
        }
    }
}

impl Deref for BenefitRecord {
    type Target = v1::BenefitRecordFields;

    fn deref(&self) -> &Self::Target {
        self.fields()
    }
}

impl DerefMut for BenefitRecord {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.fields_mut()
    }
}

impl PartialEq for BenefitRecord {
    /// Equal when the fields are, whichever form each record is in.
    fn eq(&self, other: &Self) -> bool {
        self.fields() == other.fields()
    }
}

impl std::fmt::Debug for BenefitRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fields().fmt(f)
    }
}

impl Message for BenefitRecord {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        match &self.stored {
            Some((stored, _)) => {
                if stored.register_sequence != 0 {
                    prost::encoding::uint64::encode(1, &stored.register_sequence, buf);
                }
                prost::encoding::message::encode(2, &stored.recorded_at, buf);
                buf.put_slice(&stored.rest);
            }
            None => self.fields().encode_raw(buf),
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        self.fields_mut().merge_field(tag, wire_type, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        match &self.stored {
            Some((stored, _)) => stored.committed_len() + stored.rest.len(),
            None => self.fields().encoded_len(),
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::grpc::pb::lefi::v1 as pb;

    /// A payment with every kind of field set: strings, enums, nested messages, repeated ones.
    fn fields(register_sequence: u64) -> pb::BenefitRecordFields {
        pb::BenefitRecordFields {
            register_sequence,
            recorded_at: Some(prost_types::Timestamp {
                seconds: 1_764_000_000,
                nanos: 123_000,
            }),
            record_id: "rec_00000000000000a1".to_string(),
            version: 3,
            kind: pb::RecordKind::Correction as i32,
            retroactive: true,
            benefit_type: "SJP".to_string(),
            valid: Some(pb::DateRange {
                from: "2026-01-01".to_string(),
                to: "2026-01-31".to_string(),
            }),
            fact: Some(pb::benefit_record::Fact::Payment(pb::Payment {
                case_id: "case-7".to_string(),
                payment_date: "2026-02-25".to_string(),
                gross_ore: 1_234_500,
                tax_ore: 370_000,
                lines: vec![
                    pb::AmountLine {
                        amount_type: "GRUND".to_string(),
                        amount_ore: 1_300_000,
                    },
                    pb::AmountLine {
                        amount_type: "KARENS".to_string(),
                        amount_ore: -65_500,
                    },
                ],
                ..pb::Payment::default()
            })),
        }
    }

    fn stored(fields: &pb::BenefitRecordFields) -> BenefitRecord {
        BenefitRecord::stored(
            fields.register_sequence,
            fields.recorded_at.unwrap_or_default(),
            Bytes::from(encode_rest(fields.clone())),
        )
    }

    #[test]
    fn the_stored_form_is_sent_byte_for_byte_as_the_built_one() {
        for sequence in [0, 1, 300, u64::MAX] {
            let built = BenefitRecord::from(fields(sequence));
            let sent = stored(&fields(sequence));
            // Fields 1 and 2 in front of the rest is the order prost encodes the whole in.
            assert_eq!(sent.encode_to_vec(), built.encode_to_vec(), "sequence {sequence}");
            assert_eq!(sent.encoded_len(), sent.encode_to_vec().len());
            let decoded = BenefitRecord::decode(sent.encode_to_vec().as_slice()).unwrap();
            assert_eq!(decoded.fields(), &fields(sequence));
        }
    }

    #[test]
    fn a_stored_record_reads_and_changes_as_its_fields() {
        let mut record = stored(&fields(42));
        assert_eq!(record.record_id, "rec_00000000000000a1");
        assert_eq!(record, BenefitRecord::from(fields(42)));
        record.version = 4;
        assert_eq!(
            record.encode_to_vec(),
            BenefitRecord::from(pb::BenefitRecordFields {
                version: 4,
                ..fields(42)
            })
            .encode_to_vec()
        );
        assert_eq!(stored(&fields(42)).into_fields(), fields(42));
        // Read first, then changed: the fields already decoded are the ones changed.
        let mut read = stored(&fields(42));
        assert_eq!(read.version, fields(42).version);
        read.version = 5;
        assert_eq!(read.into_fields().version, 5);
    }

    #[test]
    fn an_empty_record_reads_as_defaults_and_is_small() {
        let mut empty = BenefitRecord::default();
        assert_eq!(empty.fields(), &pb::BenefitRecordFields::default());
        assert!(empty.encode_to_vec().is_empty());
        empty.clear();
        empty.version = 3;
        assert_eq!(empty.into_fields().version, 3);
        // A snapshot holds hundreds of records per stream: the fields (over 300 bytes) stay
        // boxed, out of the message's vector.
        assert!(
            std::mem::size_of::<BenefitRecord>() <= 96,
            "{}",
            std::mem::size_of::<BenefitRecord>()
        );
    }

    #[test]
    fn messages_that_hold_records_decode_both_forms_alike() {
        let batch = |records| pb::RecordBatch {
            subscription_id: "sub_1".to_string(),
            records,
            ..pb::RecordBatch::default()
        };
        let sent = batch(vec![stored(&fields(7)), stored(&fields(8))]).encode_to_vec();
        let built = batch(vec![fields(7).into(), fields(8).into()]).encode_to_vec();
        assert_eq!(sent, built);
        let decoded = pb::RecordBatch::decode(sent.as_slice()).unwrap();
        assert_eq!(decoded.records[1].fields(), &fields(8));
    }
}

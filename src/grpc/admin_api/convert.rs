//! Conversions for `lefi.admin.v1.PartyAdminService`: requests into validated domain values (every
//! refusal names the field), and stored records into messages.

use sha2::{Digest, Sha256};
use time::Date;

use crate::domain::OperatorRole;
use crate::domain::clock::format_date;
use crate::domain::lifecycle::{PartyAction, Signer, TerminationNotice};
use crate::domain::limits::LimitOverrides;
use crate::grpc::convert::{
    agreement_type, party_kind, party_kind_from, party_state, party_state_from, timestamp, wire_enum,
};
use crate::grpc::fields::{self, FieldError, date, org_number, required_text};
use crate::grpc::pb::lefi::admin::v1 as pb;
use crate::grpc::pb::lefi::v1 as common;
use crate::store::parties::{
    AuditRecord, CertificateRecord, NewAgreement, NewApplication, NewSignature, PartyFilter, PartyRecord,
};

/// The longest organisation or person name accepted.
const MAX_NAME_CHARS: usize = 200;
/// The longest free-text reason accepted.
const MAX_REASON_CHARS: usize = 1000;
/// The longest agreement id accepted.
const MAX_AGREEMENT_ID_CHARS: usize = 100;
/// The longest e-mail address accepted (RFC 5321 path limit).
const MAX_EMAIL_CHARS: usize = 254;

/// What identifies a request for idempotency: SHA-256 over the method and the request encoded
/// without its idempotency key.
pub fn request_hash(method: &str, encoded_without_key: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(method.as_bytes());
    hash.update([0]);
    hash.update(encoded_without_key);
    hex::encode(hash.finalize())
}

/// A required reason (revocation, withdrawal).
pub fn reason(value: &str) -> Result<String, FieldError> {
    required_text(
        "reason",
        value,
        MAX_REASON_CHARS,
        "say why, e.g. \"key compromised\" or \"party withdrew its notice by e-mail 2025-05-10\"",
    )
}

/// A required party id.
pub fn party_id(value: &str) -> Result<String, FieldError> {
    required_text(
        "party_id",
        value,
        MAX_NAME_CHARS,
        "give the party's id (ListParties, or GetParty by org_number, shows it)",
    )
}

fn codes(values: &[String]) -> Vec<String> {
    values.iter().map(|c| c.trim().to_string()).collect()
}

/// The codes of a list an agreement grants: it must name at least one `what`.
fn granted_codes(field: &str, values: &[String], what: &str) -> Result<Vec<String>, FieldError> {
    if values.is_empty() {
        return Err(FieldError::invalid(
            field,
            format!("{field} needs at least one {what} the agreement grants"),
        ));
    }
    Ok(codes(values))
}

/// A plausible e-mail address: one `@`, a local part, a domain with a dot, no spaces.
fn email(value: &str) -> Result<String, FieldError> {
    let value = required_text(
        "contact_email",
        value,
        MAX_EMAIL_CHARS,
        "the contact person's e-mail address",
    )?;
    let plausible = match value.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && !value.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !plausible {
        return Err(FieldError::invalid(
            "contact_email",
            "contact_email is not an e-mail address (expected name@example.se)",
        ));
    }
    Ok(value)
}

/// An application (anmälan), validated.
pub fn application(req: &pb::ApplyRequest) -> Result<NewApplication, FieldError> {
    let org_number = org_number("org_number", &req.org_number)?;
    let name = required_text("name", &req.name, MAX_NAME_CHARS, "the organisation's name")?;
    let kind = party_kind_from(req.kind).ok_or_else(|| {
        FieldError::invalid(
            "kind",
            "kind is required: INSURER, STATE_AUTHORITY or MUNICIPAL_AUTHORITY",
        )
    })?;
    Ok(NewApplication {
        org_number,
        name,
        kind,
        contact_name: required_text(
            "contact_name",
            &req.contact_name,
            MAX_NAME_CHARS,
            "the contact person's name",
        )?,
        contact_email: email(&req.contact_email)?,
        basis_codes: codes(&req.requested_basis_codes),
        benefit_codes: codes(&req.requested_benefit_type_codes),
    })
}

/// An agreement, validated as far as it can be without the party (the kind-dependent rules are
/// the store's).
pub fn agreement(req: &pb::SendAgreementRequest) -> Result<NewAgreement, FieldError> {
    let agreement_id = required_text(
        "agreement_id",
        &req.agreement_id,
        MAX_AGREEMENT_ID_CHARS,
        "the agency's id of the agreement document, e.g. its diarienummer",
    )?;
    Ok(NewAgreement {
        agreement_id,
        basis_codes: granted_codes("granted_basis_codes", &req.granted_basis_codes, "legal basis")?,
        benefit_codes: granted_codes(
            "granted_benefit_type_codes",
            &req.granted_benefit_type_codes,
            "benefit type",
        )?,
        valid_from: date("valid_from", &req.valid_from)?,
        notice_period_days: req.notice_period_days,
    })
}

/// A signature, validated: signed on `today` or earlier.
pub fn signature(req: &pb::RecordSignatureRequest, today: Date) -> Result<NewSignature, FieldError> {
    let signer = signer_from(req.signer)
        .ok_or_else(|| FieldError::invalid("signer", "signer is required: PARTY or AGENCY"))?;
    let signed_on = date("signed_on", &req.signed_on)?;
    if signed_on > today {
        return Err(FieldError::date(
            "signed_on",
            "signed_on lies in the future; record a signature once it has been made",
        ));
    }
    Ok(NewSignature {
        signer,
        signed_by: required_text(
            "signed_by",
            &req.signed_by,
            MAX_NAME_CHARS,
            "the name of the person who signed",
        )?,
        signed_on,
    })
}

/// A termination notice, validated as far as it can be without the party.
pub fn termination_notice(
    req: &pb::ScheduleTerminationRequest,
    today: Date,
) -> Result<TerminationNotice, FieldError> {
    if !req.is_termination {
        return Err(FieldError::invalid(
            "is_termination",
            "is_termination must be true: register only a notice that states that the matter is a termination \
             (uppsägning)",
        ));
    }
    let org_number = org_number("org_number", &req.org_number)?;
    let organisation_name = required_text(
        "organisation_name",
        &req.organisation_name,
        MAX_NAME_CHARS,
        "the organisation name as the notice states it",
    )?;
    if req.effective_date.trim().is_empty() {
        return Err(FieldError::date(
            "effective_date",
            "effective_date is required: the date from which the termination applies, YYYY-MM-DD",
        ));
    }
    let effective_date = date("effective_date", &req.effective_date)?;
    let received_on = if req.notice_received_on.trim().is_empty() {
        today
    } else {
        date("notice_received_on", &req.notice_received_on)?
    };
    let override_reason = match req.override_reason.trim() {
        "" => None,
        text if text.chars().count() > MAX_REASON_CHARS => {
            return Err(FieldError::invalid(
                "override_reason",
                "override_reason is longer than 1000 characters; shorten it",
            ));
        }
        text => Some(text.to_string()),
    };
    Ok(TerminationNotice {
        org_number,
        organisation_name,
        effective_date,
        received_on,
        override_reason,
    })
}

/// A certificate fingerprint as stored: 64 lower-case hex digits (case, `:` and spaces ignored).
pub fn fingerprint(value: &str) -> Result<String, FieldError> {
    let hex: String = value
        .chars()
        .filter(|c| !matches!(c, ':' | ' '))
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(FieldError::invalid(
            "fingerprint",
            "fingerprint must be the certificate's SHA-256 fingerprint: 64 hex digits (GetParty lists them)",
        ));
    }
    Ok(hex)
}

/// The filters of a listing.
pub fn party_filter(req: &pb::ListPartiesRequest) -> Result<PartyFilter, FieldError> {
    Ok(PartyFilter {
        kinds: fields::enum_list(
            "kinds",
            &req.kinds,
            party_kind_from,
            "INSURER, STATE_AUTHORITY and MUNICIPAL_AUTHORITY",
        )?,
        states: fields::enum_list(
            "states",
            &req.states,
            party_state_from,
            "APPLIED, AGREEMENT_SENT, SIGNED, CONNECTED, TERMINATION_SCHEDULED and TERMINATED",
        )?,
    })
}

/// A stable text identifying a listing's filters, so a page token is only honoured with them.
pub fn filter_key(filter: &PartyFilter) -> String {
    let kinds: Vec<&str> = filter.kinds.iter().map(|k| k.as_str()).collect();
    let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
    format!("{}|{}", kinds.join(","), states.join(","))
}

wire_enum!(Signer => pb::Signer { Party, Agency } as signer, signer_from);
wire_enum!(
    PartyAction => pb::PartyAction { Apply, SendAgreement, RecordSignature, AddCertificate, RevokeCertificate,
        ScheduleTermination, WithdrawTermination, TerminationTookEffect, SetLimits, SuspendSubscriptions, ResumeSubscriptions,
        EndSubscriptions } as action
);
wire_enum!(OperatorRole => pb::OperatorRole { Operator, Auditor, Ingest, Statistician } as operator_role);

/// A party as the admin API shows it, in the state that holds on `today`.
pub fn party(p: &PartyRecord, today: Date) -> pb::Party {
    pb::Party {
        party_id: p.party_id.clone(),
        org_number: p.application.org_number.to_string(),
        name: p.application.name.clone(),
        kind: party_kind(p.application.kind) as i32,
        state: party_state(p.state_on(today)) as i32,
        contact_name: p.application.contact_name.clone(),
        contact_email: p.application.contact_email.clone(),
        requested_basis_codes: p.application.basis_codes.clone(),
        requested_benefit_type_codes: p.application.benefit_codes.clone(),
        agreement: p.agreement.as_ref().map(|a| pb::Agreement {
            agreement_id: a.agreement_id.clone(),
            agreement_type: agreement_type(a.agreement_type) as i32,
            granted_basis_codes: a.basis_codes.clone(),
            granted_benefit_type_codes: a.benefit_codes.clone(),
            valid_from: format_date(a.valid_from),
            notice_period_days: a.notice_period_days,
            sent_at: Some(timestamp(a.sent_at)),
        }),
        signatures: p
            .signatures
            .iter()
            .map(|s| pb::Signature {
                signer: signer(s.signer) as i32,
                signed_by: s.signature.signed_by.clone(),
                signed_on: format_date(s.signature.signed_on),
                recorded_at: s.signature.recorded_at.map(timestamp),
                recorded_by: s.signature.recorded_by.clone().unwrap_or_default(),
            })
            .collect(),
        certificates: p.certificates.iter().map(certificate).collect(),
        termination: p.termination.as_ref().map(|t| pb::Termination {
            effective_date: format_date(t.effective_date),
            notice_received_on: t.notice_received_on.map(format_date).unwrap_or_default(),
            override_reason: t.override_reason.clone().unwrap_or_default(),
            scheduled_at: t.scheduled_at.map(timestamp),
            scheduled_by: t.scheduled_by.clone().unwrap_or_default(),
        }),
        applied_at: Some(timestamp(p.applied_at)),
        updated_at: Some(timestamp(p.updated_at)),
        limits: Some(limits(&p.limits)),
    }
}

/// A party's own limits.
pub fn limits(l: &LimitOverrides) -> pb::PartyLimits {
    pb::PartyLimits {
        max_streams: l.max_streams,
        requests_per_second: l.requests_per_second,
        burst: l.burst,
    }
}

/// A registered certificate.
pub fn certificate(c: &CertificateRecord) -> pb::Certificate {
    pb::Certificate {
        fingerprint: c.certificate.fingerprint.clone(),
        subject: c.certificate.subject.clone(),
        serial: c.certificate.serial.clone(),
        not_before: Some(timestamp(c.certificate.not_before)),
        not_after: Some(timestamp(c.certificate.not_after)),
        state: if c.revoked_at.is_some() {
            pb::CertificateState::Revoked
        } else {
            pb::CertificateState::Active
        } as i32,
        added_at: Some(timestamp(c.added_at)),
        added_by: c.added_by.clone().unwrap_or_default(),
        revoked_at: c.revoked_at.map(timestamp),
        revocation_reason: c.revocation_reason.clone().unwrap_or_default(),
    }
}

/// One audit entry.
pub fn audit_entry(a: &AuditRecord) -> pb::AuditEntry {
    pb::AuditEntry {
        entry_id: u64::try_from(a.entry_id).unwrap_or(0),
        time: Some(timestamp(a.at)),
        operator_name: a.operator.as_ref().map(|o| o.name.clone()).unwrap_or_default(),
        operator_fingerprint: a
            .operator
            .as_ref()
            .map(|o| o.fingerprint.clone())
            .unwrap_or_default(),
        action: action(a.action) as i32,
        party_id: a.party_id.clone(),
        before_state: a
            .before_state
            .map_or(common::PartyState::Unspecified, party_state) as i32,
        after_state: party_state(a.after_state) as i32,
        idempotency_key: a.idempotency_key.clone().unwrap_or_default(),
        details_json: a.details_json.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised() {
        let fp = "AB:".repeat(31) + "AB";
        assert_eq!(fingerprint(&fp).unwrap(), "ab".repeat(32));
        assert!(fingerprint("abc").is_err());
        assert!(fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn request_hash_depends_on_method_and_content() {
        assert_ne!(request_hash("A", b"x"), request_hash("B", b"x"));
        assert_ne!(request_hash("A", b"x"), request_hash("A", b"y"));
        assert_eq!(request_hash("A", b"x"), request_hash("A", b"x"));
    }

    #[test]
    fn emails_are_checked_for_shape() {
        assert!(email("kontakt@exempel.se").is_ok());
        for bad in [
            "",
            "kontakt",
            "@exempel.se",
            "kontakt@exempel",
            "kon takt@exempel.se",
            "a@b@c.se",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }
}

//! Running the disclosure policy for a party's call: load the facts, decide, log the decision.
//!
//! Every party-facing request that could disclose personal data goes through [`Gate::check`] (or
//! [`authorize`], which also logs a denial). A denial stays a typed [`Refusal`] (the policy's
//! [`Denial`] and the log entry that records it) until `grpc::status` reports it; an allowed
//! request returns a [`Permit`], and the caller logs what it then discloses ([`allowed_entry`])
//! *before* sending it. If the log cannot be written, nothing is disclosed. This is a helper of
//! the party API's services, not a service.

use time::Date;
use tonic::Status;

use crate::domain::Personnummer;
use crate::domain::catalogue::{Agreement, LegalBasis};
use crate::domain::disclosure::{Channel, Decision, NewDisclosure};
use crate::grpc::status::{self, Report};
use crate::identity::PartyPrincipal;
use crate::policy::{
    Ask as PolicyAsk, CaseFacts, ConsentFacts, Denial, Facts, PartyFacts, Permit, check_basis, check_party,
    decide,
};
use crate::state::AppState;
use crate::store::StoreError;

/// Where a call came from, for the disclosure log.
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The full gRPC method, e.g. `/lefi.v1.QueryService/QueryPerson`.
    pub rpc: &'static str,
    /// The request's `x-request-id`.
    pub request_id: Option<String>,
    pub channel: Channel,
    /// The client's address (for the operators' view of open streams).
    pub peer: Option<std::net::SocketAddr>,
    /// The client's certificate (open streams check it against CRLs reloaded later).
    pub certificate: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl CallContext {
    /// Reads the request id from the call's metadata.
    pub fn new<T>(request: &tonic::Request<T>, rpc: &'static str, channel: Channel) -> Self {
        let request_id = request
            .metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Self {
            rpc,
            request_id,
            channel,
            peer: request.remote_addr(),
            certificate: request
                .peer_certs()
                .and_then(|chain| chain.first().map(|c| c.clone().into_owned())),
        }
    }
}

/// What a request asks for, owned (see [`crate::policy::Ask`]).
#[derive(Debug, Clone)]
pub struct Ask {
    pub basis_code: String,
    pub person: Personnummer,
    pub benefit_codes: Vec<String>,
    pub case_reference: Option<String>,
    pub consent_id: Option<String>,
    /// The business period asked for, for the log (`None` = open).
    pub period: (Option<Date>, Option<Date>),
    pub subscription_id: Option<String>,
}

/// A refusal: the policy's denial, what the request invoked, and the disclosure-log entry that
/// records it.
#[derive(Debug)]
pub struct Refusal {
    pub denial: Denial,
    pub entry: NewDisclosure,
    basis_code: String,
    consent_id: Option<String>,
}

impl Refusal {
    /// How the refusal is reported to the caller.
    pub fn report(&self) -> Report {
        status::denied(&self.denial, &self.basis_code, self.consent_id.as_deref())
    }
}

/// The facts that are the same for every item of one call: the party's agreement and the
/// catalogue. Loaded once per call (or per delivered page), so a batch does not reload them.
#[derive(Debug, Clone)]
pub struct Gate {
    agreement: Option<Agreement>,
    bases: std::sync::Arc<[LegalBasis]>,
}

impl Gate {
    /// Loads the agreement and catalogue for `party`.
    pub async fn load(state: &AppState, party: &PartyPrincipal) -> Result<Gate, StoreError> {
        let agreement = state.store.agreement_for_party(&party.party_id).await?;
        let bases = state.store.legal_bases().await?;
        Ok(Gate { agreement, bases })
    }

    /// Whether the party may ask for anything at all today (active, agreement in force): what a
    /// whole call is refused for before its items are looked at.
    pub fn party_refusal(&self, state: &AppState, party: &PartyPrincipal) -> Option<Denial> {
        let facts = Facts {
            party: party_facts(party),
            agreement: self.agreement.as_ref(),
            basis: None,
            consent: None,
            case: None,
        };
        check_party(&facts, state.clock.today()).err()
    }

    /// Decides one request (loading its consent and case). Nothing is logged here: a refusal
    /// carries its log entry, which the caller must append before answering.
    pub async fn check(
        &self,
        state: &AppState,
        party: &PartyPrincipal,
        call: &CallContext,
        ask: &Ask,
    ) -> Result<Result<Permit, Refusal>, StoreError> {
        let basis = self.bases.iter().find(|b| b.code == ask.basis_code);
        let consent = match &ask.consent_id {
            Some(id) => state.store.consent(id).await?.map(|c| ConsentFacts {
                consent_id: c.consent_id,
                party_id: c.registered.party_id,
                person: c.registered.person,
                basis_code: c.registered.basis_code,
                given_on: c.registered.given_on,
                expires_on: c.registered.expires_on,
                revoked_at: c.revocation.map(|r| r.at),
            }),
            None => None,
        };
        let case = match &ask.case_reference {
            Some(reference) => Some(match state.store.case(&party.party_id, reference).await? {
                Some(c) if c.closed => CaseFacts::Closed,
                _ => CaseFacts::Open,
            }),
            None => None,
        };
        let facts = Facts {
            party: party_facts(party),
            agreement: self.agreement.as_ref(),
            basis,
            consent: consent.as_ref(),
            case,
        };
        let policy_ask = PolicyAsk {
            basis_code: &ask.basis_code,
            person: &ask.person,
            benefit_codes: &ask.benefit_codes,
            case_reference: ask.case_reference.as_deref(),
            consent_id: ask.consent_id.as_deref(),
            today: state.clock.today(),
        };
        Ok(decide(&facts, &policy_ask).map_err(|denial| Refusal {
            entry: NewDisclosure {
                denial_reason: Some(denial.reason().to_string()),
                purpose: basis.map(|b| b.purpose.clone()),
                ..base_entry(party, call, ask, Decision::Denied)
            },
            denial,
            basis_code: ask.basis_code.clone(),
            consent_id: ask.consent_id.clone(),
        }))
    }
}

/// Loads the facts for `ask`, decides, and logs a denial before reporting it. On success the case
/// reference (if any) is recorded as used.
pub async fn authorize(
    state: &AppState,
    party: &PartyPrincipal,
    call: &CallContext,
    ask: &Ask,
) -> Result<Permit, Status> {
    let gate = Gate::load(state, party).await?;
    match gate.check(state, party, call, ask).await? {
        Ok(permit) => {
            if let Some(reference) = permit.case_reference() {
                state
                    .store
                    .touch_cases(
                        &party.party_id,
                        &[reference.to_string()],
                        state.clock.now_micros(),
                    )
                    .await?;
            }
            Ok(permit)
        }
        Err(refusal) => {
            state
                .append_disclosures(std::slice::from_ref(&refusal.entry), state.clock.now_micros())
                .await?;
            Err(refusal.report().into())
        }
    }
}

/// Checks party, agreement and basis only (no person involved), e.g. to register a consent.
pub async fn authorize_basis(
    state: &AppState,
    party: &PartyPrincipal,
    basis_code: &str,
) -> Result<LegalBasis, Status> {
    let gate = Gate::load(state, party).await?;
    let facts = Facts {
        party: party_facts(party),
        agreement: gate.agreement.as_ref(),
        basis: gate.bases.iter().find(|b| b.code == basis_code),
        consent: None,
        case: None,
    };
    match check_basis(&facts, basis_code, state.clock.today()) {
        Ok((basis, _)) => Ok(basis.clone()),
        Err(denial) => Err(status::denied(&denial, basis_code, None).into()),
    }
}

/// The log entry for a request about a person that was refused before the policy could decide it
/// (a malformed field, or the call refused as a whole): `reason` is the name of the reason the
/// caller was given.
pub fn refused_entry(party: &PartyPrincipal, call: &CallContext, ask: &Ask, reason: &str) -> NewDisclosure {
    NewDisclosure {
        denial_reason: Some(reason.to_string()),
        ..base_entry(party, call, ask, Decision::Denied)
    }
}

/// The log entry for an allowed disclosure of `record_count` records covering register sequences
/// `(from_sequence, to_sequence]`. Append it before sending; on error, send nothing.
pub fn allowed_entry(
    party: &PartyPrincipal,
    call: &CallContext,
    ask: &Ask,
    permit: &Permit,
    record_count: usize,
    (from_sequence, to_sequence): (u64, u64),
) -> NewDisclosure {
    NewDisclosure {
        legal_basis: Some(permit.basis_code().to_string()),
        purpose: Some(permit.purpose().to_string()),
        benefit_types: permit.benefit_codes().to_vec(),
        record_count: record_count as u64,
        from_sequence,
        to_sequence,
        ..base_entry(party, call, ask, Decision::Allowed)
    }
}

fn base_entry(party: &PartyPrincipal, call: &CallContext, ask: &Ask, decision: Decision) -> NewDisclosure {
    NewDisclosure {
        request_id: call.request_id.clone(),
        party_id: Some(party.party_id.clone()),
        party_org_number: Some(party.org_number.to_string()),
        system_identity: party.fingerprint.clone(),
        legal_basis: (!ask.basis_code.is_empty()).then(|| ask.basis_code.clone()),
        case_reference: ask.case_reference.clone(),
        consent_id: ask.consent_id.clone(),
        subscription_id: ask.subscription_id.clone(),
        person: Some(ask.person.clone()),
        benefit_types: ask.benefit_codes.clone(),
        period_from: ask.period.0,
        period_to: ask.period.1,
        ..NewDisclosure::new(call.channel, decision, call.rpc)
    }
}

fn party_facts(party: &PartyPrincipal) -> PartyFacts<'_> {
    PartyFacts {
        party_id: &party.party_id,
        kind: party.kind,
        state: party.state,
        termination_effective: party.termination_effective,
    }
}

//! Parties, their lifecycle states, and operator roles.

use crate::domain::names::named_enum;

named_enum! {
    /// What kind of organisation a party is; it decides the agreement type and the legal bases it
    /// may invoke.
    pub enum PartyKind {
        /// Försäkringsbolag or försäkringsförmedlare; signs an *avtal*.
        Insurer = "INSURER",
        /// Statlig myndighet; signs an *överenskommelse*.
        StateAuthority = "STATE_AUTHORITY",
        /// Kommunal myndighet, e.g. a socialnämnd; signs an *överenskommelse*.
        MunicipalAuthority = "MUNICIPAL_AUTHORITY",
    }
}

named_enum! {
    /// The agreement a party signs.
    pub enum AgreementType {
        /// The insurers' agreement.
        Avtal = "AVTAL",
        /// The authorities' arrangement.
        Overenskommelse = "OVERENSKOMMELSE",
    }
}

impl PartyKind {
    /// Insurers sign an avtal, authorities an överenskommelse.
    pub fn agreement_type(self) -> AgreementType {
        match self {
            Self::Insurer => AgreementType::Avtal,
            Self::StateAuthority | Self::MunicipalAuthority => AgreementType::Overenskommelse,
        }
    }

    /// Whether the party is an authority (state or municipal).
    pub fn is_authority(self) -> bool {
        !matches!(self, Self::Insurer)
    }
}

named_enum! {
    /// Where a party is in its lifecycle:
    /// `APPLIED → AGREEMENT_SENT → SIGNED → CONNECTED → (TERMINATION_SCHEDULED) → TERMINATED`.
    pub enum PartyState {
        Applied = "APPLIED",
        AgreementSent = "AGREEMENT_SENT",
        Signed = "SIGNED",
        Connected = "CONNECTED",
        TerminationScheduled = "TERMINATION_SCHEDULED",
        Terminated = "TERMINATED",
    }
}

named_enum! {
    /// An operator's role on the admin API (what each may do: `policy::operator`).
    pub enum OperatorRole {
        /// Onboards and terminates parties and manages their certificates.
        Operator = "operator",
        /// Reads: lists, shows, audit queries.
        Auditor = "auditor",
        /// Feeds the benefit register.
        Ingest = "ingest",
        /// The statistics unit: statistics orders, including the confidentiality review.
        Statistician = "statistician",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in PartyKind::ALL {
            assert_eq!(PartyKind::parse(k.as_str()), Some(k));
        }
        for s in PartyState::ALL {
            assert_eq!(PartyState::parse(s.as_str()), Some(s));
        }
        for r in OperatorRole::ALL {
            assert_eq!(OperatorRole::parse(r.as_str()), Some(r));
        }
        assert_eq!(PartyKind::parse("insurer"), None);
    }

    #[test]
    fn agreement_type_follows_kind() {
        assert_eq!(PartyKind::Insurer.agreement_type(), AgreementType::Avtal);
        assert_eq!(
            PartyKind::StateAuthority.agreement_type(),
            AgreementType::Overenskommelse
        );
        assert_eq!(
            PartyKind::MunicipalAuthority.agreement_type(),
            AgreementType::Overenskommelse
        );
    }
}

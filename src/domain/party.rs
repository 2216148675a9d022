//! Parties, their lifecycle states, and operator roles.

use crate::domain::names::named_enum;

named_enum! {
    /// What kind of organisation a party is; it decides the agreement type and the legal bases it
    /// may invoke.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum PartyKind {
        /// Försäkringsbolag or försäkringsförmedlare; signs an *avtal*.
        Insurer,
        /// Statlig myndighet; signs an *överenskommelse*.
        StateAuthority,
        /// Kommunal myndighet, e.g. a socialnämnd; signs an *överenskommelse*.
        MunicipalAuthority,
    }
}

named_enum! {
    /// The agreement a party signs.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum AgreementType {
        /// The insurers' agreement.
        Avtal,
        /// The authorities' arrangement.
        Overenskommelse,
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
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum PartyState {
        Applied,
        AgreementSent,
        Signed,
        Connected,
        TerminationScheduled,
        Terminated,
    }
}

named_enum! {
    /// An operator's role on the admin API (what each may do: `policy::operator`).
    #[strum(serialize_all = "lowercase")]
    pub enum OperatorRole {
        /// Onboards and terminates parties and manages their certificates.
        Operator,
        /// Reads: lists, shows, audit queries.
        Auditor,
        /// Feeds the benefit register.
        Ingest,
        /// The statistics unit: statistics orders, including the confidentiality review.
        Statistician,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::names::assert_names_round_trip;

    #[test]
    fn names_round_trip() {
        assert_names_round_trip(&PartyKind::ALL, PartyKind::as_str, PartyKind::parse);
        assert_names_round_trip(&PartyState::ALL, PartyState::as_str, PartyState::parse);
        assert_names_round_trip(&OperatorRole::ALL, OperatorRole::as_str, OperatorRole::parse);
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

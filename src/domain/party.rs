//! Parties, their lifecycle states, and operator roles.

use std::fmt;

/// What kind of organisation a party is; it decides the agreement type and the legal bases it may
/// invoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartyKind {
    /// Försäkringsbolag or försäkringsförmedlare; signs an *avtal*.
    Insurer,
    /// Statlig myndighet; signs an *överenskommelse*.
    StateAuthority,
    /// Kommunal myndighet, e.g. a socialnämnd; signs an *överenskommelse*.
    MunicipalAuthority,
}

/// The agreement a party signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgreementType {
    /// The insurers' agreement.
    Avtal,
    /// The authorities' arrangement.
    Overenskommelse,
}

impl PartyKind {
    pub const ALL: [PartyKind; 3] = [Self::Insurer, Self::StateAuthority, Self::MunicipalAuthority];

    /// The storage and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insurer => "INSURER",
            Self::StateAuthority => "STATE_AUTHORITY",
            Self::MunicipalAuthority => "MUNICIPAL_AUTHORITY",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Insurers sign an avtal, authorities an överenskommelse.
    pub fn agreement_type(self) -> AgreementType {
        match self {
            Self::Insurer => AgreementType::Avtal,
            Self::StateAuthority | Self::MunicipalAuthority => AgreementType::Overenskommelse,
        }
    }

    pub fn is_authority(self) -> bool {
        !matches!(self, Self::Insurer)
    }
}

impl AgreementType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Avtal => "AVTAL",
            Self::Overenskommelse => "OVERENSKOMMELSE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Avtal, Self::Overenskommelse]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Where a party is in its lifecycle:
/// `APPLIED → AGREEMENT_SENT → SIGNED → CONNECTED → (TERMINATION_SCHEDULED) → TERMINATED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartyState {
    Applied,
    AgreementSent,
    Signed,
    Connected,
    TerminationScheduled,
    Terminated,
}

impl PartyState {
    pub const ALL: [PartyState; 6] = [
        Self::Applied,
        Self::AgreementSent,
        Self::Signed,
        Self::Connected,
        Self::TerminationScheduled,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "APPLIED",
            Self::AgreementSent => "AGREEMENT_SENT",
            Self::Signed => "SIGNED",
            Self::Connected => "CONNECTED",
            Self::TerminationScheduled => "TERMINATION_SCHEDULED",
            Self::Terminated => "TERMINATED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for PartyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for PartyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an operator may do on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OperatorRole {
    /// Onboards and terminates parties and manages their certificates.
    Operator,
    /// Reads: lists, shows, audit queries.
    Auditor,
    /// Feeds the benefit register.
    Ingest,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::Ingest => "ingest",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Operator, Self::Auditor, Self::Ingest]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl OperatorRole {
    pub const ALL: [OperatorRole; 3] = [Self::Operator, Self::Auditor, Self::Ingest];
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

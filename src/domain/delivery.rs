//! Subscriptions and their delivery history, as values: states, the reasons a subscription
//! changes state, and the kinds of history events. Stored as the names below; the proto enums
//! carry the same names with their prefixes.

use std::fmt;

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionState {
    Active,
    Suspended,
    Ended,
}

impl SubscriptionState {
    pub const ALL: [Self; 3] = [Self::Active, Self::Suspended, Self::Ended];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Ended => "ENDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for SubscriptionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a subscription was withdrawn. [`EndReason::withdrawn_state`] says whether it is suspended
/// (it can resume) or ended for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    Cancelled,
    ConsentEnded,
    CaseClosed,
    PartyTerminated,
    BasisNoLongerInForce,
    EndedByAgency,
}

impl EndReason {
    pub const ALL: [Self; 6] = [
        Self::Cancelled,
        Self::ConsentEnded,
        Self::CaseClosed,
        Self::PartyTerminated,
        Self::BasisNoLongerInForce,
        Self::EndedByAgency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cancelled => "CANCELLED",
            Self::ConsentEnded => "CONSENT_ENDED",
            Self::CaseClosed => "CASE_CLOSED",
            Self::PartyTerminated => "PARTY_TERMINATED",
            Self::BasisNoLongerInForce => "BASIS_NO_LONGER_IN_FORCE",
            Self::EndedByAgency => "ENDED_BY_AGENCY",
        }
    }

    /// The state a withdrawal for this reason leaves an active subscription in: a consent that
    /// ended suspends it (a new consent for the same person and basis resumes it); every other
    /// reason ends it for good.
    pub fn withdrawn_state(self) -> SubscriptionState {
        match self {
            Self::ConsentEnded => SubscriptionState::Suspended,
            Self::Cancelled
            | Self::CaseClosed
            | Self::PartyTerminated
            | Self::BasisNoLongerInForce
            | Self::EndedByAgency => SubscriptionState::Ended,
        }
    }
}

/// Why a subscription is in its state (none while it is active and was never suspended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateReason {
    Withdrawn(EndReason),
    /// Active again after a suspension (a new consent was registered).
    Resumed,
}

impl StateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Withdrawn(reason) => reason.as_str(),
            Self::Resumed => "RESUMED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        if s == "RESUMED" {
            return Some(Self::Resumed);
        }
        EndReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .map(Self::Withdrawn)
    }
}

/// Why a snapshot was put into a party's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotReason {
    SubscriptionCreated,
    FullRefresh,
    /// The subscription resumed under a new consent.
    Resumed,
}

impl SnapshotReason {
    pub const ALL: [Self; 3] = [Self::SubscriptionCreated, Self::FullRefresh, Self::Resumed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionCreated => "SUBSCRIPTION_CREATED",
            Self::FullRefresh => "FULL_REFRESH",
            Self::Resumed => "RESUMED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A notice of a subscription's new state, as its history holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub state: SubscriptionState,
    pub reason: StateReason,
    /// For people: what happened and what to do.
    pub message: String,
}

/// What one event of a party's delivery history is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A snapshot of the subscription as of the event's sequence.
    Snapshot(SnapshotReason),
    /// The register fact at the event's sequence.
    Change,
    /// The subscription's state changed.
    Notice(Notice),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in SubscriptionState::ALL {
            assert_eq!(SubscriptionState::parse(s.as_str()), Some(s));
        }
        for r in EndReason::ALL {
            let reason = StateReason::Withdrawn(r);
            assert_eq!(StateReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(StateReason::parse("RESUMED"), Some(StateReason::Resumed));
        assert_eq!(StateReason::parse(""), None);
        for r in SnapshotReason::ALL {
            assert_eq!(SnapshotReason::parse(r.as_str()), Some(r));
        }
    }

    #[test]
    fn only_an_ended_consent_suspends() {
        for r in EndReason::ALL {
            let expected = if r == EndReason::ConsentEnded {
                SubscriptionState::Suspended
            } else {
                SubscriptionState::Ended
            };
            assert_eq!(r.withdrawn_state(), expected);
        }
    }
}

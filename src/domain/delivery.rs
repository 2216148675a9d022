//! Subscriptions and their delivery history, as values: states, the reasons a subscription
//! changes state, and the kinds of history events. Stored as the names below; the proto enums
//! carry the same names with their prefixes.

use crate::domain::names::named_enum;

named_enum! {
    /// A subscription's state.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum SubscriptionState {
        Active,
        Suspended,
        Ended,
    }
}

named_enum! {
    /// Why a subscription was withdrawn. [`EndReason::withdrawn_state`] says whether it is suspended
    /// (it can resume) or ended for good.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum EndReason {
        Cancelled,
        ConsentEnded,
        CaseClosed,
        PartyTerminated,
        BasisNoLongerInForce,
        EndedByAgency,
        /// The agency paused it (follow-up review under SFB 114 kap.); the agency resumes it.
        SuspendedByAgency,
        /// The last day the party gave it has passed.
        EndDateReached,
    }
}

impl EndReason {
    /// The state a withdrawal for this reason leaves an active subscription in: a consent that
    /// ended suspends it (a new consent for the same person and basis resumes it), and so does the
    /// agency's suspension (the agency resumes it); every other reason ends it for good.
    pub fn withdrawn_state(self) -> SubscriptionState {
        match self {
            Self::ConsentEnded | Self::SuspendedByAgency => SubscriptionState::Suspended,
            Self::Cancelled
            | Self::CaseClosed
            | Self::PartyTerminated
            | Self::BasisNoLongerInForce
            | Self::EndedByAgency
            | Self::EndDateReached => SubscriptionState::Ended,
        }
    }
}

named_enum! {
    /// How a subscription's delivery starts: with a snapshot of what the register holds (the
    /// default), or from now on, with a notice, for a party that already holds the history.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum SubscriptionStart {
        Snapshot,
        Now,
    }
}

/// Why a subscription is in its state (none while it is active and was never suspended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateReason {
    Withdrawn(EndReason),
    /// Active again after a suspension (a new consent was registered).
    Resumed,
    /// Created without its history ([`SubscriptionStart::Now`]): the reason of its first event,
    /// a notice; the subscription itself has no reason.
    StartedFromNow,
}

impl StateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Withdrawn(reason) => reason.as_str(),
            Self::Resumed => "RESUMED",
            Self::StartedFromNow => "STARTED_FROM_NOW",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RESUMED" => return Some(Self::Resumed),
            "STARTED_FROM_NOW" => return Some(Self::StartedFromNow),
            _ => {}
        }
        EndReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .map(Self::Withdrawn)
    }
}

named_enum! {
    /// Why a snapshot was put into a party's history.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum SnapshotReason {
        SubscriptionCreated,
        FullRefresh,
        /// The subscription resumed under a new consent.
        Resumed,
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
    use crate::domain::names::assert_names_round_trip;

    #[test]
    fn names_round_trip() {
        assert_names_round_trip(
            &SubscriptionState::ALL,
            SubscriptionState::as_str,
            SubscriptionState::parse,
        );
        for r in EndReason::ALL {
            let reason = StateReason::Withdrawn(r);
            assert_eq!(StateReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(StateReason::parse("RESUMED"), Some(StateReason::Resumed));
        assert_eq!(
            StateReason::parse("STARTED_FROM_NOW"),
            Some(StateReason::StartedFromNow)
        );
        assert_eq!(StateReason::parse(""), None);
        assert_names_round_trip(
            &SnapshotReason::ALL,
            SnapshotReason::as_str,
            SnapshotReason::parse,
        );
    }

    #[test]
    fn only_an_ended_consent_and_the_agency_suspend() {
        for r in EndReason::ALL {
            let expected = if matches!(r, EndReason::ConsentEnded | EndReason::SuspendedByAgency) {
                SubscriptionState::Suspended
            } else {
                SubscriptionState::Ended
            };
            assert_eq!(r.withdrawn_state(), expected);
        }
    }
}

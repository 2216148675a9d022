//! Subscriptions and their delivery history, as values: states, the reasons a subscription
//! changes state, and the kinds of history events. Stored as the names below; the proto enums
//! carry the same names with their prefixes.

use crate::domain::names::named_enum;
use crate::domain::register::FactType;

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

/// Which records a subscription delivers (data minimisation): a list of topics, each a fact type
/// (`PAYMENT`: every payment) or a fact type and the kind of a decision or person event
/// (`DECISION:BLOCKED`). Empty: everything. A person's own data (name, protection, death date)
/// always goes with the person and is never filtered. Stored as the topics joined by commas,
/// sorted, each once (the SQL of `store::delivery` matches against that form).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordFilter {
    topics: Vec<String>,
}

impl RecordFilter {
    /// A filter of these topics (any order, repeats allowed).
    pub fn of(topics: impl IntoIterator<Item = String>) -> Self {
        let mut topics: Vec<String> = topics.into_iter().collect();
        topics.sort();
        topics.dedup();
        Self { topics }
    }

    /// The topic naming every fact of a type.
    pub fn whole(fact_type: FactType) -> String {
        fact_type.as_str().to_string()
    }

    /// The topic naming facts of a type with one kind (decisions and person events).
    pub fn kind(fact_type: FactType, kind: &str) -> String {
        format!("{}:{kind}", fact_type.as_str())
    }

    /// Whether the filter lets everything through.
    pub fn is_everything(&self) -> bool {
        self.topics.is_empty()
    }

    /// Whether a version of this fact type and topic is delivered.
    pub fn admits(&self, fact_type: FactType, topic: &str) -> bool {
        if self.topics.is_empty() || fact_type == FactType::Person {
            return true;
        }
        let name = fact_type.as_str();
        self.topics.iter().any(|t| match t.split_once(':') {
            None => t == name,
            Some((ty, kind)) => ty == name && kind == topic,
        })
    }

    /// The stored form ('' = everything).
    pub fn stored(&self) -> String {
        self.topics.join(",")
    }

    /// From the stored form.
    pub fn from_stored(stored: &str) -> Self {
        Self::of(stored.split(',').filter(|t| !t.is_empty()).map(str::to_string))
    }

    /// The topics, sorted.
    pub fn topics(&self) -> &[String] {
        &self.topics
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

    #[test]
    fn a_filter_admits_its_types_and_kinds_and_always_the_person() {
        let filter = RecordFilter::of([
            RecordFilter::whole(FactType::Payment),
            RecordFilter::kind(FactType::Decision, "BLOCKED"),
            RecordFilter::kind(FactType::Event, "DEATH_REGISTERED"),
            RecordFilter::whole(FactType::Payment),
        ]);
        assert!(filter.admits(FactType::Payment, ""));
        assert!(filter.admits(FactType::Decision, "BLOCKED"));
        assert!(!filter.admits(FactType::Decision, "GRANTED"));
        assert!(filter.admits(FactType::Event, "DEATH_REGISTERED"));
        assert!(!filter.admits(FactType::Event, "SICKNESS_CASE_CLOSED"));
        assert!(!filter.admits(FactType::Case, ""));
        assert!(filter.admits(FactType::Person, ""));
        assert_eq!(filter.stored(), "DECISION:BLOCKED,EVENT:DEATH_REGISTERED,PAYMENT");
        assert_eq!(RecordFilter::from_stored(&filter.stored()), filter);
        let everything = RecordFilter::from_stored("");
        assert!(everything.is_everything() && everything.admits(FactType::Case, ""));
    }
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

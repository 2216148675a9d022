//! Enums whose values have stable names: the storage and wire form of the domain's states, kinds
//! and reasons. [`named_enum!`] declares one with `ALL`, `as_str`, `parse` and `Display`; the
//! names come from strum's `serialize_all` case convention, given once at the enum, so each name
//! is spelled by its variant.

/// Declares an enum of unit variants with stable names, the variants' names in the case
/// convention of its `#[strum(serialize_all = "…")]` attribute:
///
/// ```ignore
/// named_enum! {
///     /// Doc of the enum.
///     #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
///     pub enum Colour {
///         /// Doc of the variant: stored as `LIGHT_BLUE`.
///         LightBlue,
///     }
/// }
/// ```
///
/// `parse` is case-sensitive: it takes exactly the names `as_str` gives.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident ),+ $(,)?
        }
    ) => {
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::Display,
        )]
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            /// The stable name (storage and wire form).
            pub fn as_str(self) -> &'static str {
                self.into()
            }

            /// The value with this stable name.
            pub fn parse(s: &str) -> Option<Self> {
                s.parse().ok()
            }
        }
    };
}

pub(crate) use named_enum;

/// `FromStr` and `TryFrom<String>` (for serde's `try_from`), both parsing with `$parse`, and
/// `Serialize` as the text `$stored` returns: for the identity numbers, which read from any
/// accepted form and are written in their storage form.
macro_rules! parsed_text {
    (
        $ty:ident, $err:ident,
        $(#[$parse_doc:meta])* |$text:ident| $parse:expr,
        $(#[$stored_doc:meta])* $stored:ident $(,)?
    ) => {
        impl std::str::FromStr for $ty {
            type Err = $err;

            $(#[$parse_doc])*
            fn from_str($text: &str) -> Result<Self, Self::Err> {
                $parse
            }
        }

        impl TryFrom<String> for $ty {
            type Error = $err;

            $(#[$parse_doc])*
            fn try_from(value: String) -> Result<Self, Self::Error> {
                let $text = value.as_str();
                $parse
            }
        }

        impl serde::Serialize for $ty {
            $(#[$stored_doc])*
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.$stored())
            }
        }
    };
}

pub(crate) use parsed_text;

/// Asserts that the name of every value in `all` parses back to it: the round trip each named
/// enum's tests check.
#[cfg(test)]
pub(crate) fn assert_names_round_trip<T: Copy + PartialEq + std::fmt::Debug>(
    all: &[T],
    as_str: fn(T) -> &'static str,
    parse: fn(&str) -> Option<T>,
) {
    for &value in all {
        assert_eq!(parse(as_str(value)), Some(value));
    }
}

#[cfg(test)]
mod tests {
    named_enum! {
        /// A test enum.
        #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
        enum Colour {
            Red,
            /// Light blue.
            LightBlue,
        }
    }

    named_enum! {
        /// A test enum named in lower case.
        #[strum(serialize_all = "lowercase")]
        enum Role {
            Reader,
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(Colour::ALL, [Colour::Red, Colour::LightBlue]);
        super::assert_names_round_trip(&Colour::ALL, Colour::as_str, Colour::parse);
        assert_eq!(Colour::LightBlue.as_str(), "LIGHT_BLUE");
        assert_eq!(Colour::LightBlue.to_string(), "LIGHT_BLUE");
        assert_eq!(Colour::parse("red"), None);
        assert_eq!(Colour::parse("LightBlue"), None);
        assert_eq!(Role::ALL, [Role::Reader]);
        assert_eq!(Role::Reader.as_str(), "reader");
        assert_eq!(Role::parse("READER"), None);
    }

    /// The names are stored in the database and shown on the wire: a renamed variant must not
    /// change them.
    #[test]
    fn the_domain_names_stay_as_stored() {
        use crate::domain::delivery::{EndReason, SnapshotReason, SubscriptionStart, SubscriptionState};
        use crate::domain::disclosure::{Channel, Decision};
        use crate::domain::lifecycle::{PartyAction, Signer};
        use crate::domain::party::{AgreementType, OperatorRole, PartyKind, PartyState};
        use crate::domain::register::{FactType, RecordKind};
        use crate::domain::statistics::order::{OrderState, OrderStep};

        assert_eq!(
            SubscriptionState::ALL.map(SubscriptionState::as_str),
            ["ACTIVE", "SUSPENDED", "ENDED"]
        );
        assert_eq!(
            EndReason::ALL.map(EndReason::as_str),
            [
                "CANCELLED",
                "CONSENT_ENDED",
                "CASE_CLOSED",
                "PARTY_TERMINATED",
                "BASIS_NO_LONGER_IN_FORCE",
                "ENDED_BY_AGENCY",
                "SUSPENDED_BY_AGENCY",
                "END_DATE_REACHED"
            ]
        );
        assert_eq!(
            SnapshotReason::ALL.map(SnapshotReason::as_str),
            ["SUBSCRIPTION_CREATED", "FULL_REFRESH", "RESUMED"]
        );
        assert_eq!(
            SubscriptionStart::ALL.map(SubscriptionStart::as_str),
            ["SNAPSHOT", "NOW"]
        );
        assert_eq!(Decision::ALL.map(Decision::as_str), ["ALLOWED", "DENIED"]);
        assert_eq!(
            Channel::ALL.map(Channel::as_str),
            [
                "SUBSCRIPTION_ORDER",
                "STREAM_DELIVERY",
                "QUERY",
                "OPERATOR_VIEW",
                "STATISTICS_RELEASE"
            ]
        );
        assert_eq!(
            PartyAction::ALL.map(PartyAction::as_str),
            [
                "APPLY",
                "SEND_AGREEMENT",
                "RECORD_SIGNATURE",
                "ADD_CERTIFICATE",
                "REVOKE_CERTIFICATE",
                "SCHEDULE_TERMINATION",
                "WITHDRAW_TERMINATION",
                "TERMINATION_TOOK_EFFECT",
                "SET_LIMITS",
                "SUSPEND_SUBSCRIPTIONS",
                "RESUME_SUBSCRIPTIONS",
                "END_SUBSCRIPTIONS"
            ]
        );
        assert_eq!(Signer::ALL.map(Signer::as_str), ["PARTY", "AGENCY"]);
        assert_eq!(
            PartyKind::ALL.map(PartyKind::as_str),
            ["INSURER", "STATE_AUTHORITY", "MUNICIPAL_AUTHORITY"]
        );
        assert_eq!(
            AgreementType::ALL.map(AgreementType::as_str),
            ["AVTAL", "OVERENSKOMMELSE"]
        );
        assert_eq!(
            PartyState::ALL.map(PartyState::as_str),
            [
                "APPLIED",
                "AGREEMENT_SENT",
                "SIGNED",
                "CONNECTED",
                "TERMINATION_SCHEDULED",
                "TERMINATED"
            ]
        );
        assert_eq!(
            OperatorRole::ALL.map(OperatorRole::as_str),
            ["operator", "auditor", "ingest", "statistician"]
        );
        assert_eq!(
            RecordKind::ALL.map(RecordKind::as_str),
            ["NEW", "CORRECTION", "RETRACTION"]
        );
        assert_eq!(
            FactType::ALL.map(FactType::as_str),
            ["CASE", "PERIOD", "DECISION", "PAYMENT", "EVENT", "PERSON"]
        );
        assert_eq!(
            OrderState::ALL.map(OrderState::as_str),
            [
                "SUBMITTED",
                "IN_REVIEW",
                "AWAITING_COMPLETION",
                "QUOTE_DRAFTED",
                "CONTENT_AGREED",
                "RELEASED",
                "REFUSED",
                "QUOTE_ACCEPTED",
                "EXTRACTED",
                "DELIVERED",
                "DELETED",
                "WITHDRAWN"
            ]
        );
        assert_eq!(
            OrderStep::ALL.map(OrderStep::as_str),
            [
                "SUBMIT",
                "CONFIRM_RECEIPT",
                "REQUEST_COMPLETION",
                "SUPPLEMENT",
                "DRAFT_QUOTE",
                "AGREE_CONTENT",
                "RELEASE",
                "REFUSE",
                "RECEIVE_POPULATION",
                "ACCEPT_QUOTE",
                "EXTRACT",
                "DELIVER",
                "EXTEND_RETENTION",
                "INVOICE",
                "DELETE",
                "WITHDRAW"
            ]
        );
    }
}

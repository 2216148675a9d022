//! The life of a statistics order (beställning av individdata för statistikändamål), as the agency
//! publishes its process, and the rules of each step.
//!
//! ```text
//! SUBMITTED → IN_REVIEW ⇄ AWAITING_COMPLETION
//!           → QUOTE_DRAFTED → CONTENT_AGREED → RELEASED → QUOTE_ACCEPTED → EXTRACTED → DELIVERED
//!                                             ↘ REFUSED                                  → DELETED
//! (WITHDRAWN from any state before EXTRACTED)
//! ```
//!
//! What the agency holds about the population (the key file with its identity numbers, and the
//! extract's files) is kept only while the order needs it (`Order::deletion_due` in the store):
//!
//! - delivered: until the retention date ([`RETENTION_MONTHS`] after delivery, or the approved
//!   extension), then deleted (DELETED);
//! - withdrawn or refused: deleted at once, in the same step;
//! - released, quote accepted or extracted but never delivered: deleted (DELETED) when
//!   [`RETENTION_MONTHS`] have passed since the order's last step.
//!
//! Each deletion is audited in the order's history; the order's own data and the extract's
//! manifest (metadata, no person) remain.
//!
//! Everything here is a pure function of its arguments: which step is allowed in which state, by
//! whom, and what state follows ([`check_step`]). The store calls it inside the transaction that
//! makes the change.

use crate::domain::names::named_enum;

/// The files and the population are kept this many months after delivery; an order that holds a
/// population but is not delivered is deleted this many months after its last step.
pub const RETENTION_MONTHS: u8 = 6;

named_enum! {
    /// Where an order stands.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum OrderState {
        /// The orderer submitted it; the agency has to confirm receipt within two working days.
        Submitted,
        /// Receipt confirmed; the statistics unit reviews the order.
        InReview,
        /// The unit asked the orderer to complete the order.
        AwaitingCompletion,
        /// A draft quote specifies the order (variables, population, periods, hours).
        QuoteDrafted,
        /// The orderer agreed to the specified content.
        ContentAgreed,
        /// The confidentiality review decided to release, with its conditions; the decision and
        /// the quote were sent. The population file may now be received.
        Released,
        /// The confidentiality review refused the release (final).
        Refused,
        /// The orderer accepted the quote: extraction may start once the population file is in.
        QuoteAccepted,
        /// The extract was produced as of one register sequence.
        Extracted,
        /// The extract was delivered; the files are kept until the retention date.
        Delivered,
        /// The files and the population were deleted after the retention period, or after the
        /// order stood undelivered for the retention period (final; the manifest remains).
        Deleted,
        /// The orderer withdrew the order (final).
        Withdrawn,
    }
}

named_enum! {
    /// A step of an order, as recorded in its history.
    #[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
    pub enum OrderStep {
        /// The orderer submits the order.
        Submit,
        /// The agency confirms receipt.
        ConfirmReceipt,
        /// The agency asks for completion.
        RequestCompletion,
        /// The orderer supplements the order.
        Supplement,
        /// The agency drafts the quote (may be redrafted until the content is agreed).
        DraftQuote,
        /// The orderer agrees to the content of the draft quote.
        AgreeContent,
        /// The confidentiality review releases (with conditions).
        Release,
        /// The confidentiality review refuses.
        Refuse,
        /// The population (key) file was received.
        ReceivePopulation,
        /// The orderer accepts the quote.
        AcceptQuote,
        /// The extract was produced.
        Extract,
        /// The extract was delivered.
        Deliver,
        /// The retention was extended (on the orderer's request, approved by the agency).
        ExtendRetention,
        /// The invoice was recorded.
        Invoice,
        /// The files and the population were deleted after the retention period (or an undelivered
        /// order's inactivity).
        Delete,
        /// The orderer withdraws the order.
        Withdraw,
    }
}

/// Who takes a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The ordering authority or research project (through the party API).
    Orderer,
    /// The agency's statistics unit (through the admin API).
    Agency,
    /// The server itself (scheduled deletion).
    Server,
}

/// Why a step was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepRefused {
    #[error("{step} is not possible while the order is {state}{hint}")]
    WrongState {
        step: OrderStep,
        state: OrderState,
        hint: &'static str,
    },
    #[error("{step} is taken by {expected}, not by {actual}")]
    WrongSide {
        step: OrderStep,
        expected: &'static str,
        actual: &'static str,
    },
    #[error(
        "the confidentiality review must be made by someone other than the operator who drafted the quote (four eyes)"
    )]
    SameReviewer,
    #[error("the population file may be received only after the release decision")]
    PopulationBeforeRelease,
    #[error("extraction needs an accepted quote and a population file ({missing})")]
    NotReadyToExtract { missing: &'static str },
}

/// What the rules need to know about an order besides its state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderFacts {
    /// The operator who drafted the current quote.
    pub quote_drafted_by: Option<String>,
    /// Whether a population file has been received.
    pub has_population: bool,
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Orderer => "the orderer",
        Side::Agency => "the agency",
        Side::Server => "the server",
    }
}

/// Whether `actor` (an operator's name, for agency steps) on `side` may take `step` on an order in
/// `state`; the state that follows.
pub fn check_step(
    state: OrderState,
    facts: &OrderFacts,
    step: OrderStep,
    side: Side,
    actor: &str,
) -> Result<OrderState, StepRefused> {
    use OrderState as S;
    use OrderStep as T;
    let expected = match step {
        T::Submit | T::Supplement | T::AgreeContent | T::AcceptQuote | T::Withdraw => Side::Orderer,
        T::Delete => Side::Server,
        // The population file arrives by registered post (an operator uploads it) or from the
        // national statistics office through the orderer: either side.
        T::ReceivePopulation => side,
        _ => Side::Agency,
    };
    // An operator may delete on demand as well (`purge`).
    let side_ok = side == expected || (step == T::Delete && side == Side::Agency);
    if !side_ok {
        return Err(StepRefused::WrongSide {
            step,
            expected: side_name(expected),
            actual: side_name(side),
        });
    }
    let wrong = |hint: &'static str| StepRefused::WrongState { step, state, hint };
    match (step, state) {
        (T::Submit, _) => Err(wrong("")),
        (T::ConfirmReceipt, S::Submitted) => Ok(S::InReview),
        (T::RequestCompletion, S::InReview) => Ok(S::AwaitingCompletion),
        (T::Supplement, S::AwaitingCompletion) => Ok(S::InReview),
        (T::DraftQuote, S::InReview | S::QuoteDrafted) => Ok(S::QuoteDrafted),
        (T::AgreeContent, S::QuoteDrafted) => Ok(S::ContentAgreed),
        (T::Release | T::Refuse, S::ContentAgreed) => {
            if facts.quote_drafted_by.as_deref() == Some(actor) {
                return Err(StepRefused::SameReviewer);
            }
            Ok(if step == T::Release {
                S::Released
            } else {
                S::Refused
            })
        }
        (T::ReceivePopulation, S::Released | S::QuoteAccepted) => Ok(state),
        (
            T::ReceivePopulation,
            S::Submitted | S::InReview | S::AwaitingCompletion | S::QuoteDrafted | S::ContentAgreed,
        ) => Err(StepRefused::PopulationBeforeRelease),
        (T::AcceptQuote, S::Released) => Ok(S::QuoteAccepted),
        (T::Extract, S::QuoteAccepted) => {
            if facts.has_population {
                Ok(S::Extracted)
            } else {
                Err(StepRefused::NotReadyToExtract {
                    missing: "no population file yet",
                })
            }
        }
        (T::Extract, S::Released) => Err(StepRefused::NotReadyToExtract {
            missing: "the quote is not accepted yet",
        }),
        // Producing the extract again (e.g. after a correction) before delivery is allowed.
        (T::Extract, S::Extracted) => Ok(S::Extracted),
        (T::Deliver, S::Extracted) => Ok(S::Delivered),
        (T::ExtendRetention | T::Invoice, S::Delivered) => Ok(S::Delivered),
        // Delivered: past the retention date; released, accepted or extracted: undelivered for the
        // retention period (the store decides when; see the module docs).
        (T::Delete, S::Delivered | S::Released | S::QuoteAccepted | S::Extracted) => Ok(S::Deleted),
        (
            T::Withdraw,
            S::Submitted
            | S::InReview
            | S::AwaitingCompletion
            | S::QuoteDrafted
            | S::ContentAgreed
            | S::Released
            | S::QuoteAccepted,
        ) => Ok(S::Withdrawn),
        (_, S::Refused | S::Deleted | S::Withdrawn) => Err(wrong(" (it has ended)")),
        _ => Err(wrong("")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(state: OrderState, step: OrderStep, side: Side) -> Result<OrderState, StepRefused> {
        check_step(state, &OrderFacts::default(), step, side, "op")
    }

    #[test]
    fn the_published_process_runs_start_to_end() {
        use OrderState as S;
        use OrderStep as T;
        let facts = OrderFacts {
            quote_drafted_by: Some("Anna".to_string()),
            has_population: true,
        };
        let mut state = S::Submitted;
        for (t, side, actor, next) in [
            (T::ConfirmReceipt, Side::Agency, "Anna", S::InReview),
            (T::RequestCompletion, Side::Agency, "Anna", S::AwaitingCompletion),
            (T::Supplement, Side::Orderer, "", S::InReview),
            (T::DraftQuote, Side::Agency, "Anna", S::QuoteDrafted),
            (T::DraftQuote, Side::Agency, "Anna", S::QuoteDrafted),
            (T::AgreeContent, Side::Orderer, "", S::ContentAgreed),
            (T::Release, Side::Agency, "Bo", S::Released),
            (T::ReceivePopulation, Side::Agency, "Bo", S::Released),
            (T::AcceptQuote, Side::Orderer, "", S::QuoteAccepted),
            (T::Extract, Side::Agency, "Anna", S::Extracted),
            (T::Deliver, Side::Agency, "Anna", S::Delivered),
            (T::Invoice, Side::Agency, "Anna", S::Delivered),
            (T::Delete, Side::Server, "", S::Deleted),
        ] {
            state = check_step(state, &facts, t, side, actor).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(state, next, "{t}");
        }
    }

    #[test]
    fn the_reviewer_is_not_who_drafted_the_quote() {
        let facts = OrderFacts {
            quote_drafted_by: Some("Anna".to_string()),
            has_population: false,
        };
        for t in [OrderStep::Release, OrderStep::Refuse] {
            assert_eq!(
                check_step(OrderState::ContentAgreed, &facts, t, Side::Agency, "Anna"),
                Err(StepRefused::SameReviewer)
            );
            assert!(check_step(OrderState::ContentAgreed, &facts, t, Side::Agency, "Bo").is_ok());
        }
    }

    #[test]
    fn no_population_before_release_and_no_extraction_before_an_accepted_quote() {
        for state in [
            OrderState::InReview,
            OrderState::QuoteDrafted,
            OrderState::ContentAgreed,
        ] {
            assert_eq!(
                step(state, OrderStep::ReceivePopulation, Side::Orderer),
                Err(StepRefused::PopulationBeforeRelease)
            );
        }
        assert!(matches!(
            step(OrderState::Released, OrderStep::Extract, Side::Agency),
            Err(StepRefused::NotReadyToExtract { .. })
        ));
        assert!(matches!(
            step(OrderState::QuoteAccepted, OrderStep::Extract, Side::Agency),
            Err(StepRefused::NotReadyToExtract { .. })
        ));
    }

    #[test]
    fn each_side_takes_only_its_own_steps_and_ended_orders_take_none() {
        assert!(matches!(
            step(OrderState::Submitted, OrderStep::ConfirmReceipt, Side::Orderer),
            Err(StepRefused::WrongSide { .. })
        ));
        assert!(matches!(
            step(OrderState::QuoteDrafted, OrderStep::AgreeContent, Side::Agency),
            Err(StepRefused::WrongSide { .. })
        ));
        for ended in [OrderState::Refused, OrderState::Withdrawn, OrderState::Deleted] {
            for t in OrderStep::ALL {
                assert!(check_step(ended, &OrderFacts::default(), t, Side::Agency, "x").is_err());
                assert!(check_step(ended, &OrderFacts::default(), t, Side::Orderer, "x").is_err());
            }
        }
        assert_eq!(
            step(OrderState::Released, OrderStep::Withdraw, Side::Orderer),
            Ok(OrderState::Withdrawn)
        );
        assert!(step(OrderState::Extracted, OrderStep::Withdraw, Side::Orderer).is_err());
    }

    #[test]
    fn an_undelivered_order_holding_a_population_may_be_deleted() {
        for state in [
            OrderState::Released,
            OrderState::QuoteAccepted,
            OrderState::Extracted,
        ] {
            assert_eq!(
                step(state, OrderStep::Delete, Side::Server),
                Ok(OrderState::Deleted)
            );
        }
        assert!(step(OrderState::ContentAgreed, OrderStep::Delete, Side::Server).is_err());
    }
}

//! Changing the state of existing subscriptions: withdrawing them (a consent that ended, a closed
//! case, a termination, the agency), resuming them (a new consent, the agency), and the agency's
//! follow-up actions, each with its notices (and, on resumption, its snapshots) at one fresh
//! sequence in the transaction that changes them.

use super::{EndSelector, SUBSCRIPTION_COLUMNS, Subscription, history, subscription_from_row};
use crate::domain::Personnummer;
use crate::domain::clock::Micros;
use crate::domain::delivery::{EndReason, EventKind, Notice, SnapshotReason, StateReason, SubscriptionState};
use crate::store::tx::{Conn, on_conn};
use crate::store::{Store, StoreError};

/// What the agency does to a party's subscriptions (the follow-up review of SFB 114 kap.).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgencyAction {
    /// Active ones become SUSPENDED (SUSPENDED_BY_AGENCY): nothing is delivered to them.
    Suspend,
    /// Those the agency suspended become ACTIVE again, with a fresh snapshot.
    Resume,
    /// Active and suspended ones end for good (ENDED_BY_AGENCY).
    End,
}

impl Store {
    /// Resumes the party's subscriptions for `person` under `basis_code` that were suspended
    /// because their consent ended: they now rely on `consent_id`, become ACTIVE (a RESUMED
    /// notice) and get a fresh snapshot, both at one new sequence. Returns those resumed.
    pub async fn resume_with_consent(
        &self,
        party_id: &str,
        person: &Personnummer,
        basis_code: &str,
        consent_id: &str,
        now: Micros,
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut conn = self.write().await?;
        history::lock_head(&mut conn).await?;
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s \
             WHERE s.party_id = $1 AND s.person = $2 AND s.legal_basis = $3 AND s.state = 'SUSPENDED' \
               AND s.state_reason = 'CONSENT_ENDED' ORDER BY s.subscription_id"
        );
        let suspended = subscriptions!(&mut conn, sql.as_str(), |q| q
            .bind(party_id)
            .bind(person.as_storage())
            .bind(basis_code));
        let resumed = resume_in(
            &mut conn,
            suspended,
            Some(consent_id),
            "a new consent was registered; a fresh snapshot follows",
            now,
        )
        .await?;
        if !resumed.is_empty() {
            conn.commit().await?;
        }
        Ok(resumed)
    }

    /// Withdraws the selected subscriptions for `reason`, writing a notice for each at one fresh
    /// sequence. A consent that ended suspends the active ones (nothing is fanned out to them; a
    /// new consent for the same person and basis resumes them, [`Store::resume_with_consent`]);
    /// every other reason ends the active and suspended ones for good (see
    /// [`EndReason::withdrawn_state`]). Returns those changed (none when they were already in that
    /// state).
    pub async fn withdraw_subscriptions(
        &self,
        selector: EndSelector<'_>,
        reason: EndReason,
        message: &str,
        now: Micros,
    ) -> Result<Vec<Subscription>, StoreError> {
        let mut conn = self.write().await?;
        history::lock_head(&mut conn).await?;
        let changed = withdraw_in(&mut conn, selector, reason, message, now).await?;
        if !changed.is_empty() {
            conn.commit().await?;
        }
        Ok(changed)
    }

    /// The agency suspends, resumes or ends the selected subscriptions of one party, with
    /// `message` in their notices, and records it in the party's audit history as `actor`, in one
    /// transaction. Returns those changed (none when they already were so). A single subscription
    /// the party does not have is [`StoreError::NotFound`].
    pub async fn agency_action(
        &self,
        action: AgencyAction,
        selector: EndSelector<'_>,
        actor: &crate::store::parties::Actor,
        message: &str,
        now: Micros,
    ) -> Result<Vec<Subscription>, StoreError> {
        let (_, party_id, _) = selector.clause();
        let party_id = party_id.to_string();
        let mut conn = self.write().await?;
        history::lock_head(&mut conn).await?;
        let changed = match action {
            AgencyAction::Suspend => {
                withdraw_in(&mut conn, selector, EndReason::SuspendedByAgency, message, now).await?
            }
            AgencyAction::End => {
                withdraw_in(&mut conn, selector, EndReason::EndedByAgency, message, now).await?
            }
            AgencyAction::Resume => {
                let (clause, a, b) = selector.clause();
                let sql = format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s WHERE {clause} \
                       AND s.state = 'SUSPENDED' AND s.state_reason = 'SUSPENDED_BY_AGENCY' \
                     ORDER BY s.subscription_id"
                );
                let suspended = subscriptions!(&mut conn, sql.as_str(), |q| q.bind(a).bind(b));
                resume_in(&mut conn, suspended, None, message, now).await?
            }
        };
        if changed.is_empty()
            && let EndSelector::One {
                party_id,
                subscription_id,
            } = selector
        {
            let exists: Option<(String,)> = on_conn!(&mut conn, |c| {
                sqlx::query_as(
                    "SELECT subscription_id FROM subscriptions WHERE party_id = $1 AND subscription_id = $2",
                )
                .bind(party_id)
                .bind(subscription_id)
                .fetch_optional(c)
                .await?
            });
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        let ids: Vec<&str> = changed.iter().map(|s| s.subscription_id.as_str()).collect();
        let details = serde_json::json!({
            "subscription_ids": ids,
            "reason": message,
        });
        crate::store::parties::append_agency_audit(&mut conn, actor, &party_id, action, details, now).await?;
        conn.commit().await?;
        Ok(changed)
    }
}

/// Withdraws the selected subscriptions for `reason` inside the caller's transaction (which
/// holds the head lock): see [`Store::withdraw_subscriptions`].
async fn withdraw_in(
    conn: &mut Conn,
    selector: EndSelector<'_>,
    reason: EndReason,
    message: &str,
    now: Micros,
) -> Result<Vec<Subscription>, StoreError> {
    let to = reason.withdrawn_state();
    let (clause, a, b) = selector.clause();
    let from = match to {
        SubscriptionState::Suspended => "s.state = 'ACTIVE'",
        SubscriptionState::Active | SubscriptionState::Ended => "s.state <> 'ENDED'",
    };
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s WHERE {clause} AND {from} \
         ORDER BY s.party_id, s.subscription_id"
    );
    let mut changed = subscriptions!(&mut *conn, sql.as_str(), |q| q.bind(a).bind(b));
    if changed.is_empty() {
        return Ok(changed);
    }
    let seq = history::next_seq(&mut *conn).await?;
    let ending = to == SubscriptionState::Ended;
    let notice = EventKind::Notice(Notice {
        state: to,
        reason: StateReason::Withdrawn(reason),
        message: message.to_string(),
    });
    let mut numbers = Vec::with_capacity(changed.len());
    for sub in &mut changed {
        numbers.push(history::next_event_number(&mut *conn, &sub.subscription_id).await?);
        on_conn!(&mut *conn, |c| {
            sqlx::query(
                "UPDATE subscriptions SET state = $1, state_reason = $2, ended_at = $3, ended_seq = $4 \
                 WHERE subscription_id = $5",
            )
            .bind(to.as_str())
            .bind(reason.as_str())
            .bind(ending.then_some(now))
            .bind(ending.then_some(crate::store::to_i64(seq)))
            .bind(&sub.subscription_id)
            .execute(c)
            .await?;
        });
        sub.state = to;
        sub.state_reason = Some(StateReason::Withdrawn(reason));
        if ending {
            sub.ended_at = Some(now);
            sub.ended_seq = Some(seq);
        }
    }
    // Ordered within the sequence per party, in subscription order.
    let mut events = history::Events::new(seq, now);
    for (sub, number) in changed.iter().zip(numbers) {
        events.add(&sub.party_id, &sub.subscription_id, number, notice.clone());
    }
    events.write(&mut *conn).await?;
    Ok(changed)
}

/// Makes the suspended subscriptions `resumed` ACTIVE again inside the caller's transaction (which
/// holds the head lock): a RESUMED notice with `message` and a fresh snapshot for each, at one new
/// sequence; with `consent`, they now rely on that consent.
async fn resume_in(
    conn: &mut Conn,
    mut resumed: Vec<Subscription>,
    consent: Option<&str>,
    message: &str,
    now: Micros,
) -> Result<Vec<Subscription>, StoreError> {
    if resumed.is_empty() {
        return Ok(resumed);
    }
    let seq = history::next_seq(&mut *conn).await?;
    let mut numbers = Vec::with_capacity(resumed.len());
    for sub in &mut resumed {
        numbers.push(history::next_event_number(&mut *conn, &sub.subscription_id).await?);
        on_conn!(&mut *conn, |c| {
            sqlx::query(
                "UPDATE subscriptions SET state = 'ACTIVE', state_reason = 'RESUMED', \
                                          consent_id = COALESCE($1, consent_id) \
                 WHERE subscription_id = $2",
            )
            .bind(consent)
            .bind(&sub.subscription_id)
            .execute(c)
            .await?;
        });
        sub.state = SubscriptionState::Active;
        sub.state_reason = Some(StateReason::Resumed);
        if let Some(consent) = consent {
            sub.asked.consent_id = Some(consent.to_string());
        }
    }
    let mut events = history::Events::new(seq, now);
    for (sub, number) in resumed.iter().zip(numbers) {
        let notice = Notice {
            state: SubscriptionState::Active,
            reason: StateReason::Resumed,
            message: message.to_string(),
        };
        events.add(
            &sub.party_id,
            &sub.subscription_id,
            number,
            EventKind::Notice(notice),
        );
        events.add(
            &sub.party_id,
            &sub.subscription_id,
            number + 1,
            EventKind::Snapshot(SnapshotReason::Resumed),
        );
    }
    events.write(&mut *conn).await?;
    Ok(resumed)
}

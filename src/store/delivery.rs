//! Subscriptions and each party's delivery history.
//!
//! The history is written when things happen (fan-out on write) so that every stream of a party
//! reads the same events with the same numbers: a snapshot event when a subscription is created or
//! refreshed, a change event for every register fact that concerns an active subscription (written
//! by ingest, in its own transaction: see [`FAN_OUT_SQL`]), and a notice when a subscription ends.
//!
//! Every event stands at a global register sequence. Party events (creations, refreshes, notices)
//! take a fresh sequence from `register_head` in the same transaction, so they are ordered with
//! ingest by the same lock: a reader that has seen sequence N has seen every event at or below N.

use std::collections::HashMap;

use sqlx::Row;
use time::Date;

use super::{Store, StoreError, on_reader, on_writer};
use crate::domain::clock::{Micros, format_date, parse_date};
use crate::store::parties::new_id;

/// Fans the register facts with sequences in `[$1, $2]` out to the active subscriptions they
/// concern, as change events. Runs inside the ingest transaction, after the facts are inserted and
/// before commit; the same SQL runs on both backends. A fact concerns a subscription when it is
/// about the same person and one of its benefit types (or no benefit type: person data and
/// person events) and, for a new fact, its valid period reaches the subscription's from-date
/// (corrections and retractions are always delivered: they may move a fact out of the window).
pub const FAN_OUT_SQL: &str = "\
INSERT INTO delivery_events (party_id, seq, ord, subscription_id, event_number, kind, detail, recorded_at)
SELECT m.party_id, m.seq, m.ord, m.subscription_id, m.base + m.n, 'CHANGE', '', m.recorded_at
FROM (
    SELECT s.party_id, l.seq, l.recorded_at, s.subscription_id,
           ROW_NUMBER() OVER (PARTITION BY s.party_id, l.seq ORDER BY s.subscription_id) AS ord,
           ROW_NUMBER() OVER (PARTITION BY s.subscription_id ORDER BY l.seq) AS n,
           (SELECT COALESCE(MAX(e.event_number), 0) FROM delivery_events e
             WHERE e.subscription_id = s.subscription_id) AS base
    FROM register_log l
    JOIN subscriptions s ON s.person = l.person AND s.state = 'ACTIVE'
    WHERE l.seq >= $1 AND l.seq <= $2
      AND (l.benefit_type = '' OR (',' || s.benefit_types || ',') LIKE ('%,' || l.benefit_type || ',%'))
      AND (l.kind <> 'NEW' OR l.valid_to IS NULL OR l.valid_to >= s.from_date)
) m";

/// A subscription's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    Active,
    Suspended,
    Ended,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Suspended => "SUSPENDED",
            Self::Ended => "ENDED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Suspended, Self::Ended]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Why a subscription was withdrawn: `ConsentEnded` suspends it, every other reason ends it (see
/// [`Store::withdraw_subscriptions`]; stored names match `SubscriptionStateReason` without its
/// prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Cancelled,
    ConsentEnded,
    CaseClosed,
    PartyTerminated,
    BasisNoLongerInForce,
    EndedByAgency,
}

impl EndReason {
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
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub subscription_id: String,
    pub party_id: String,
    pub client_reference: String,
    /// The person's 12-digit storage form.
    pub person: String,
    pub benefit_types: Vec<String>,
    pub from_date: Date,
    pub legal_basis: String,
    /// Empty when none.
    pub case_reference: String,
    /// Empty when none.
    pub consent_id: String,
    pub state: SubscriptionState,
    /// Empty while active and never suspended; else an [`EndReason`] name.
    pub state_reason: String,
    pub created_at: Micros,
    pub created_seq: u64,
    pub ended_at: Option<Micros>,
    pub ended_seq: Option<u64>,
}

/// A subscription to create (already validated and authorized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub client_reference: String,
    pub person: String,
    /// Sorted, without duplicates.
    pub benefit_types: Vec<String>,
    pub from_date: Date,
    pub legal_basis: String,
    pub case_reference: String,
    pub consent_id: String,
}

impl Subscription {
    fn same_order(&self, n: &NewSubscription) -> bool {
        self.person == n.person
            && self.benefit_types == n.benefit_types
            && self.from_date == n.from_date
            && self.legal_basis == n.legal_basis
            && self.case_reference == n.case_reference
            && self.consent_id == n.consent_id
    }
}

/// What happened to one item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(Subscription),
    /// The same client reference with the same content existed.
    Unchanged(Subscription),
    /// The same client reference with other content existed.
    Conflict,
}

/// Which subscriptions to end or suspend.
#[derive(Debug, Clone)]
pub enum EndSelector<'a> {
    One {
        party_id: &'a str,
        subscription_id: &'a str,
    },
    ByConsent {
        consent_id: &'a str,
    },
    ByCase {
        party_id: &'a str,
        case_reference: &'a str,
    },
    AllOfParty {
        party_id: &'a str,
    },
}

/// The kind of a history event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// A snapshot; the detail is the reason (`SUBSCRIPTION_CREATED`, `FULL_REFRESH`, `RESUMED`).
    Snapshot { reason: String },
    /// The register fact at the event's sequence.
    Change,
    /// A state change (stored as `STATE:REASON:message`).
    Notice {
        state: String,
        reason: String,
        message: String,
    },
}

/// One event of a party's delivery history, with its subscription.
#[derive(Debug, Clone)]
pub struct DeliveryEvent {
    pub seq: u64,
    pub ord: u64,
    pub event_number: u64,
    pub kind: EventKind,
    pub recorded_at: Micros,
    pub subscription: Subscription,
}

const SUBSCRIPTION_COLUMNS: &str = "s.subscription_id, s.party_id, s.client_reference, s.person, s.benefit_types, \
     s.from_date, s.legal_basis, s.case_reference, s.consent_id, s.state, s.state_reason, s.created_at, \
     s.created_seq, s.ended_at, s.ended_seq";

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn subscription_from_row<R: Row>(r: &R, offset: usize) -> Result<Subscription, StoreError>
where
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    let get_s = |i: usize| r.try_get::<String, _>(offset + i).map_err(StoreError::from);
    let get_i = |i: usize| r.try_get::<i64, _>(offset + i).map_err(StoreError::from);
    let get_oi = |i: usize| r.try_get::<Option<i64>, _>(offset + i).map_err(StoreError::from);
    let benefit_types = get_s(4)?;
    Ok(Subscription {
        subscription_id: get_s(0)?,
        party_id: get_s(1)?,
        client_reference: get_s(2)?,
        person: get_s(3)?,
        benefit_types: benefit_types
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        from_date: parse_date(&get_s(5)?).ok_or(StoreError::Corrupt("subscriptions.from_date"))?,
        legal_basis: get_s(6)?,
        case_reference: get_s(7)?,
        consent_id: get_s(8)?,
        state: SubscriptionState::parse(&get_s(9)?).ok_or(StoreError::Corrupt("subscriptions.state"))?,
        state_reason: get_s(10)?,
        created_at: get_i(11)?,
        created_seq: to_u64(get_i(12)?),
        ended_at: get_oi(13)?,
        ended_seq: get_oi(14)?.map(to_u64),
    })
}

/// Takes the next register sequence for a party event (inside the caller's transaction; the row
/// lock orders it with ingest).
/// Rows per generated subscription statement (13 parameters each: far within both backends'
/// parameter limits).
const SUBSCRIPTION_ROWS_PER_STATEMENT: usize = 500;

const NEXT_SEQ_SQL: &str = "UPDATE register_head SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq";

impl Store {
    /// Creates subscriptions for a party in one transaction, each with its creation-snapshot event.
    /// Items are idempotent by client reference.
    pub async fn create_subscriptions(
        &self,
        party_id: &str,
        items: &[NewSubscription],
        now: Micros,
    ) -> Result<Vec<CreateOutcome>, StoreError> {
        let numbered = self.kind() == super::BackendKind::Postgres;
        let outcomes = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The party's subscriptions that already hold one of the batch's references, read in a
            // few queries (one per item made a 10,000-item call take seconds) by the combined key
            // of migration 0007 (see there why not by the two columns).
            let mut known: HashMap<String, Subscription> = HashMap::new();
            let mut keys: Vec<String> = items
                .iter()
                .map(|i| format!("{party_id} {}", i.client_reference))
                .collect();
            keys.sort_unstable();
            keys.dedup();
            for chunk in keys.chunks(SUBSCRIPTION_ROWS_PER_STATEMENT) {
                let sql = format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s \
                     WHERE (s.party_id || ' ' || s.client_reference) IN ({})",
                    super::in_list(chunk.len(), numbered),
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for key in chunk {
                    query = query.bind(key);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    let existing = subscription_from_row(&row, 0)?;
                    known.insert(existing.client_reference.clone(), existing);
                }
            }
            // Each item in order: a reference seen before (stored, or earlier in this batch) is
            // unchanged or a conflict; a new one becomes a subscription at the batch's sequence.
            let mut outcomes = Vec::with_capacity(items.len());
            let mut created: Vec<Subscription> = Vec::new();
            let mut seq: Option<i64> = None;
            for item in items {
                if let Some(existing) = known.get(&item.client_reference) {
                    outcomes.push(if existing.same_order(item) {
                        CreateOutcome::Unchanged(existing.clone())
                    } else {
                        CreateOutcome::Conflict
                    });
                    continue;
                }
                let at = match seq {
                    Some(s) => s,
                    None => {
                        let s: i64 = sqlx::query_scalar(NEXT_SEQ_SQL).fetch_one(&mut *tx).await?;
                        seq = Some(s);
                        s
                    }
                };
                let subscription = Subscription {
                    subscription_id: new_id("sub"),
                    party_id: party_id.to_string(),
                    client_reference: item.client_reference.clone(),
                    person: item.person.clone(),
                    benefit_types: item.benefit_types.clone(),
                    from_date: item.from_date,
                    legal_basis: item.legal_basis.clone(),
                    case_reference: item.case_reference.clone(),
                    consent_id: item.consent_id.clone(),
                    state: SubscriptionState::Active,
                    state_reason: String::new(),
                    created_at: now,
                    created_seq: to_u64(at),
                    ended_at: None,
                    ended_seq: None,
                };
                known.insert(item.client_reference.clone(), subscription.clone());
                outcomes.push(CreateOutcome::Created(subscription.clone()));
                created.push(subscription);
            }
            // The new subscriptions and their creation-snapshot events (numbered 1, ordered within
            // the sequence as the items were), in multi-row INSERTs.
            let mut ord: i64 = 0;
            for chunk in created.chunks(SUBSCRIPTION_ROWS_PER_STATEMENT) {
                let sql = format!(
                    "INSERT INTO subscriptions (subscription_id, party_id, client_reference, person, benefit_types, \
                         from_date, legal_basis, case_reference, consent_id, state, state_reason, created_at, created_seq) \
                     VALUES {}",
                    super::values_list(chunk.len(), 13, numbered)
                );
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                for s in chunk {
                    insert = insert
                        .bind(&s.subscription_id)
                        .bind(party_id)
                        .bind(&s.client_reference)
                        .bind(&s.person)
                        .bind(s.benefit_types.join(","))
                        .bind(format_date(s.from_date))
                        .bind(&s.legal_basis)
                        .bind(&s.case_reference)
                        .bind(&s.consent_id)
                        .bind(SubscriptionState::Active.as_str())
                        .bind("")
                        .bind(now)
                        .bind(to_i64(s.created_seq));
                }
                insert.execute(&mut *tx).await?;
                let sql = format!(
                    "INSERT INTO delivery_events (party_id, seq, ord, subscription_id, event_number, kind, detail, recorded_at) \
                     VALUES {}",
                    super::values_list(chunk.len(), 8, numbered)
                );
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
                for s in chunk {
                    ord += 1;
                    insert = insert
                        .bind(party_id)
                        .bind(to_i64(s.created_seq))
                        .bind(ord)
                        .bind(&s.subscription_id)
                        .bind(1_i64)
                        .bind("SNAPSHOT")
                        .bind("SUBSCRIPTION_CREATED")
                        .bind(now);
                }
                insert.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            outcomes
        });
        Ok(outcomes)
    }

    /// One of a party's subscriptions.
    pub async fn subscription(
        &self,
        party_id: &str,
        subscription_id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        on_reader!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s WHERE s.party_id = $1 AND s.subscription_id = $2"
            )))
            .bind(party_id)
            .bind(subscription_id)
            .fetch_optional(pool)
            .await?;
            row.map(|r| subscription_from_row(&r, 0)).transpose()
        })
    }

    /// A page of a party's subscriptions in (created_at, subscription_id) order, after the given
    /// key, filtered by person (12 digits), basis, client reference, case and consent (empty = any).
    #[allow(
        clippy::too_many_arguments,
        reason = "one filter per listed field, all plain strings"
    )]
    pub async fn subscriptions_page(
        &self,
        party_id: &str,
        after: Option<(Micros, &str)>,
        person: &str,
        legal_basis: &str,
        client_reference: &str,
        case_reference: &str,
        consent_id: &str,
        states: &[SubscriptionState],
        limit: i64,
    ) -> Result<Vec<Subscription>, StoreError> {
        let (after_at, after_id) = after.unwrap_or((i64::MIN, ""));
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        let states = states.join(",");
        on_reader!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s \
                 WHERE s.party_id = $1 AND (s.created_at > $2 OR (s.created_at = $2 AND s.subscription_id > $3)) \
                   AND ($4 = '' OR s.person = $4) AND ($5 = '' OR s.legal_basis = $5) \
                   AND ($6 = '' OR s.client_reference = $6) AND ($7 = '' OR s.case_reference = $7) \
                   AND ($8 = '' OR s.consent_id = $8) \
                   AND ($9 = '' OR (',' || $9 || ',') LIKE ('%,' || s.state || ',%')) \
                 ORDER BY s.created_at, s.subscription_id LIMIT $10"
            )))
            .bind(party_id)
            .bind(after_at)
            .bind(after_id)
            .bind(person)
            .bind(legal_basis)
            .bind(client_reference)
            .bind(case_reference)
            .bind(consent_id)
            .bind(&states)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| subscription_from_row(r, 0)).collect()
        })
    }

    /// Resumes the party's subscriptions for `person` under `basis_code` that were suspended
    /// because their consent ended: they now rely on `consent_id`, become ACTIVE (a RESUMED
    /// notice) and get a fresh snapshot, both at one new sequence. Returns those resumed.
    pub async fn resume_with_consent(
        &self,
        party_id: &str,
        person: &str,
        basis_code: &str,
        consent_id: &str,
        now: Micros,
    ) -> Result<Vec<Subscription>, StoreError> {
        let resumed = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s \
                 WHERE s.party_id = $1 AND s.person = $2 AND s.legal_basis = $3 AND s.state = 'SUSPENDED' \
                   AND s.state_reason = 'CONSENT_ENDED' ORDER BY s.subscription_id"
            )))
            .bind(party_id)
            .bind(person)
            .bind(basis_code)
            .fetch_all(&mut *tx)
            .await?;
            let mut resumed = Vec::with_capacity(rows.len());
            if !rows.is_empty() {
                let seq: i64 = sqlx::query_scalar(NEXT_SEQ_SQL).fetch_one(&mut *tx).await?;
                let detail = "ACTIVE:RESUMED:a new consent was registered; a fresh snapshot follows";
                let mut ord = 0i64;
                for row in &rows {
                    let mut sub = subscription_from_row(row, 0)?;
                    let number: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(MAX(event_number), 0) + 1 FROM delivery_events WHERE subscription_id = $1",
                    )
                    .bind(&sub.subscription_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE subscriptions SET state = 'ACTIVE', state_reason = 'RESUMED', consent_id = $1 \
                         WHERE subscription_id = $2",
                    )
                    .bind(consent_id)
                    .bind(&sub.subscription_id)
                    .execute(&mut *tx)
                    .await?;
                    for (offset, (kind, detail)) in
                        [("NOTICE", detail), ("SNAPSHOT", "RESUMED")].iter().enumerate()
                    {
                        let offset = i64::try_from(offset).unwrap_or(0);
                        sqlx::query(
                            "INSERT INTO delivery_events (party_id, seq, ord, subscription_id, event_number, kind, detail, recorded_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        )
                        .bind(party_id)
                        .bind(seq)
                        .bind(ord + offset + 1)
                        .bind(&sub.subscription_id)
                        .bind(number + offset)
                        .bind(*kind)
                        .bind(*detail)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    ord += 2;
                    sub.state = SubscriptionState::Active;
                    sub.state_reason = "RESUMED".to_string();
                    sub.consent_id = consent_id.to_string();
                    resumed.push(sub);
                }
            }
            tx.commit().await?;
            resumed
        });
        Ok(resumed)
    }

    /// Withdraws the selected subscriptions for `reason`, writing a notice for each at one fresh
    /// sequence. A consent that ended suspends the active ones (nothing is fanned out to them; a
    /// new consent for the same person and basis resumes them, [`Store::resume_with_consent`]);
    /// every other reason ends the active and suspended ones for good. Returns those changed (none
    /// when they were already in that state).
    pub async fn withdraw_subscriptions(
        &self,
        selector: EndSelector<'_>,
        reason: EndReason,
        message: &str,
        now: Micros,
    ) -> Result<Vec<Subscription>, StoreError> {
        let to = if reason == EndReason::ConsentEnded {
            SubscriptionState::Suspended
        } else {
            SubscriptionState::Ended
        };
        let (clause, a, b) = match selector {
            EndSelector::One {
                party_id,
                subscription_id,
            } => (
                "s.party_id = $1 AND s.subscription_id = $2",
                party_id,
                subscription_id,
            ),
            EndSelector::ByConsent { consent_id } => ("s.consent_id = $1 AND $2 = ''", consent_id, ""),
            EndSelector::ByCase {
                party_id,
                case_reference,
            } => (
                "s.party_id = $1 AND s.case_reference = $2",
                party_id,
                case_reference,
            ),
            EndSelector::AllOfParty { party_id } => ("s.party_id = $1 AND $2 = ''", party_id, ""),
        };
        let detail = format!("{}:{}:{}", to.as_str(), reason.as_str(), message);
        let from = match to {
            SubscriptionState::Suspended => "s.state = 'ACTIVE'",
            _ => "s.state <> 'ENDED'",
        };
        let ended = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s WHERE {clause} AND {from} \
                 ORDER BY s.party_id, s.subscription_id"
            )))
            .bind(a)
            .bind(b)
            .fetch_all(&mut *tx)
            .await?;
            let mut ended = Vec::with_capacity(rows.len());
            if !rows.is_empty() {
                let seq: i64 = sqlx::query_scalar(NEXT_SEQ_SQL).fetch_one(&mut *tx).await?;
                let mut ord_by_party: HashMap<String, i64> = HashMap::new();
                for row in &rows {
                    let mut sub = subscription_from_row(row, 0)?;
                    let ord = ord_by_party.entry(sub.party_id.clone()).or_insert(0);
                    *ord += 1;
                    let number: i64 = sqlx::query_scalar(
                        "SELECT COALESCE(MAX(event_number), 0) + 1 FROM delivery_events WHERE subscription_id = $1",
                    )
                    .bind(&sub.subscription_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    let ending = to == SubscriptionState::Ended;
                    sqlx::query(
                        "UPDATE subscriptions SET state = $1, state_reason = $2, ended_at = $3, ended_seq = $4 \
                         WHERE subscription_id = $5",
                    )
                    .bind(to.as_str())
                    .bind(reason.as_str())
                    .bind(ending.then_some(now))
                    .bind(ending.then_some(seq))
                    .bind(&sub.subscription_id)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO delivery_events (party_id, seq, ord, subscription_id, event_number, kind, detail, recorded_at) \
                         VALUES ($1, $2, $3, $4, $5, 'NOTICE', $6, $7)",
                    )
                    .bind(&sub.party_id)
                    .bind(seq)
                    .bind(*ord)
                    .bind(&sub.subscription_id)
                    .bind(number)
                    .bind(&detail)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sub.state = to;
                    sub.state_reason = reason.as_str().to_string();
                    if ending {
                        sub.ended_at = Some(now);
                        sub.ended_seq = Some(to_u64(seq));
                    }
                    ended.push(sub);
                }
            }
            tx.commit().await?;
            ended
        });
        Ok(ended)
    }

    /// Puts a fresh snapshot of the party's active subscriptions (all, or those named) into its
    /// history. Returns the sequence just before the refresh and the ids refreshed and skipped.
    pub async fn full_refresh(
        &self,
        party_id: &str,
        only: &[String],
        now: Micros,
    ) -> Result<(u64, Vec<String>, Vec<String>), StoreError> {
        let result = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let active: Vec<(String,)> = sqlx::query_as(
                "SELECT subscription_id FROM subscriptions WHERE party_id = $1 AND state = 'ACTIVE' ORDER BY subscription_id",
            )
            .bind(party_id)
            .fetch_all(&mut *tx)
            .await?;
            let active: Vec<String> = active.into_iter().map(|(id,)| id).collect();
            let (refresh, skipped): (Vec<String>, Vec<String>) = if only.is_empty() {
                (active, Vec::new())
            } else {
                only.iter().cloned().partition(|id| active.contains(id))
            };
            let seq: i64 = sqlx::query_scalar(NEXT_SEQ_SQL).fetch_one(&mut *tx).await?;
            for (i, id) in refresh.iter().enumerate() {
                let number: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(event_number), 0) + 1 FROM delivery_events WHERE subscription_id = $1",
                )
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO delivery_events (party_id, seq, ord, subscription_id, event_number, kind, detail, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5, 'SNAPSHOT', 'FULL_REFRESH', $6)",
                )
                .bind(party_id)
                .bind(seq)
                .bind(i64::try_from(i).unwrap_or(i64::MAX) + 1)
                .bind(id)
                .bind(number)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            (to_u64(seq - 1), refresh, skipped)
        });
        Ok(result)
    }

    /// A page of a party's history after `(seq, ord)` up to sequence `up_to`, in order.
    pub async fn delivery_page(
        &self,
        party_id: &str,
        after: (u64, u64),
        up_to: u64,
        limit: i64,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        on_reader!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SUBSCRIPTION_COLUMNS}, e.seq, e.ord, e.event_number, e.kind, e.detail, e.recorded_at \
                 FROM delivery_events e JOIN subscriptions s ON s.subscription_id = e.subscription_id \
                 WHERE e.party_id = $1 AND (e.seq > $2 OR (e.seq = $2 AND e.ord > $3)) AND e.seq <= $4 \
                 ORDER BY e.seq, e.ord LIMIT $5"
            )))
            .bind(party_id)
            .bind(to_i64(after.0))
            .bind(to_i64(after.1))
            .bind(to_i64(up_to))
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| {
                    let subscription = subscription_from_row(r, 0)?;
                    let kind: String = r.try_get(18)?;
                    let detail: String = r.try_get(19)?;
                    let kind = match kind.as_str() {
                        "SNAPSHOT" => EventKind::Snapshot { reason: detail },
                        "CHANGE" => EventKind::Change,
                        _ => {
                            let mut parts = detail.splitn(3, ':');
                            EventKind::Notice {
                                state: parts.next().unwrap_or_default().to_string(),
                                reason: parts.next().unwrap_or_default().to_string(),
                                message: parts.next().unwrap_or_default().to_string(),
                            }
                        }
                    };
                    Ok(DeliveryEvent {
                        seq: to_u64(r.try_get(15)?),
                        ord: to_u64(r.try_get(16)?),
                        event_number: to_u64(r.try_get(17)?),
                        kind,
                        recorded_at: r.try_get(20)?,
                        subscription,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })
    }

    /// A page of the subscriptions a stream started at `head` without a cursor gives start
    /// snapshots for: the ones active at `head` (created at or before it, not ended by it), in id
    /// order, each with the number of its latest event at `head`. That set never changes once
    /// `head` has passed, so a position in it is a plain index. The first page of a stream starts
    /// at index `skip`; later pages continue after the id `after`.
    pub async fn start_subscriptions(
        &self,
        party_id: &str,
        head: u64,
        after: Option<&str>,
        skip: u64,
        limit: usize,
    ) -> Result<Vec<(Subscription, u64)>, StoreError> {
        let (after, skip) = match after {
            Some(id) => (id, 0),
            None => ("", skip),
        };
        on_reader!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SUBSCRIPTION_COLUMNS}, \
                        (SELECT COALESCE(MAX(e.event_number), 0) FROM delivery_events e \
                          WHERE e.subscription_id = s.subscription_id AND e.seq <= $2) \
                 FROM subscriptions s \
                 WHERE s.party_id = $1 AND s.created_seq <= $2 AND (s.ended_seq IS NULL OR s.ended_seq > $2) \
                   AND s.subscription_id > $3 \
                 ORDER BY s.subscription_id LIMIT $4 OFFSET $5"
            )))
            .bind(party_id)
            .bind(to_i64(head))
            .bind(after)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(to_i64(skip))
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|r| Ok((subscription_from_row(r, 0)?, to_u64(r.try_get(15)?))))
                .collect::<Result<Vec<_>, StoreError>>()
        })
    }

    /// The latest register sequence (facts and party events alike).
    pub async fn delivery_head(&self) -> Result<u64, StoreError> {
        let head: i64 = on_reader!(self, |pool| {
            sqlx::query_scalar("SELECT last_seq FROM register_head WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        Ok(to_u64(head))
    }

    /// How far a party's history has been pruned (cursors at or below it have expired).
    pub async fn delivery_horizon(&self, party_id: &str) -> Result<u64, StoreError> {
        let horizon: Option<i64> = on_reader!(self, |pool| {
            sqlx::query_scalar("SELECT pruned_through_seq FROM delivery_horizon WHERE party_id = $1")
                .bind(party_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(horizon.map(to_u64).unwrap_or(0))
    }

    /// Deletes history events recorded before `before` and moves each party's horizon past them.
    /// Returns how many events were deleted.
    pub async fn prune_delivery_history(&self, before: Micros) -> Result<u64, StoreError> {
        let deleted = on_writer!(self, |pool| {
            let mut tx = pool.begin().await?;
            let horizons: Vec<(String, i64)> = sqlx::query_as(
                "SELECT party_id, MAX(seq) FROM delivery_events WHERE recorded_at < $1 GROUP BY party_id",
            )
            .bind(before)
            .fetch_all(&mut *tx)
            .await?;
            let mut deleted = 0u64;
            for (party_id, seq) in &horizons {
                sqlx::query(
                    "INSERT INTO delivery_horizon (party_id, pruned_through_seq) VALUES ($1, $2) \
                     ON CONFLICT (party_id) DO UPDATE SET pruned_through_seq = \
                       CASE WHEN excluded.pruned_through_seq > delivery_horizon.pruned_through_seq \
                            THEN excluded.pruned_through_seq ELSE delivery_horizon.pruned_through_seq END",
                )
                .bind(party_id)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
                // Each subscription's latest event stays: event numbers continue from it.
                deleted += sqlx::query(
                    "DELETE FROM delivery_events WHERE party_id = $1 AND seq <= $2 \
                     AND event_number < (SELECT MAX(e2.event_number) FROM delivery_events e2 \
                                         WHERE e2.subscription_id = delivery_events.subscription_id)",
                )
                .bind(party_id)
                .bind(seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            deleted
        });
        Ok(deleted)
    }

    /// The key cursors are signed with, created on first use and shared by every replica.
    pub async fn cursor_key(&self) -> Result<Vec<u8>, StoreError> {
        let fresh =
            hex::encode(uuid::Uuid::new_v4().as_bytes()) + &hex::encode(uuid::Uuid::new_v4().as_bytes());
        on_writer!(self, |pool| {
            sqlx::query("INSERT INTO server_secrets (name, value) VALUES ('cursor_key', $1) ON CONFLICT (name) DO NOTHING")
                .bind(&fresh)
                .execute(pool)
                .await?;
        });
        let stored: String = on_writer!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'cursor_key'")
                .fetch_one(pool)
                .await?
        });
        hex::decode(stored).map_err(|_| StoreError::Corrupt("server_secrets.cursor_key"))
    }
}

//! Subscriptions, and each party's delivery history ([`history`]).
//!
//! The history is written when things happen (fan-out on write) so that every stream of a party
//! reads the same events with the same numbers: a snapshot event when a subscription is created,
//! refreshed or resumed, a change event for every register fact that concerns an active
//! subscription (written by ingest, in its own transaction: see [`history::fan_out`]), and a notice
//! when a subscription's state changes.
//!
//! Every event stands at a global register sequence. Party events (creations, refreshes, notices)
//! take a fresh sequence from `register_head` in the same transaction, so they are ordered with
//! ingest by the same lock: a reader that has seen sequence N has seen every event at or below N.

mod history;
pub use history::PRUNE_LOCK;

use std::collections::HashMap;

use time::Date;

use super::tx::{Columns, Conn, execute, on_conn};
use super::{
    Store, StoreError, join_codes, new_id, non_empty, split_codes, stored_date, stored_opt_date,
    stored_person, to_u64,
};
use crate::domain::Personnummer;
use crate::domain::clock::{Micros, format_date};
use crate::domain::delivery::{
    EventKind, Notice, RecordFilter, SnapshotReason, StateReason, SubscriptionStart, SubscriptionState,
};

pub(crate) use history::fan_out;
pub use history::fan_out_statement;

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub subscription_id: String,
    pub party_id: String,
    /// What the party asked for.
    pub asked: NewSubscription,
    pub state: SubscriptionState,
    /// `None` while active and never suspended.
    pub state_reason: Option<StateReason>,
    pub created_at: Micros,
    pub created_seq: u64,
    pub ended_at: Option<Micros>,
    pub ended_seq: Option<u64>,
}

/// A subscription to create (already validated and authorized).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub client_reference: String,
    pub person: Personnummer,
    /// Sorted, without duplicates.
    pub benefit_types: Vec<String>,
    pub from_date: Date,
    pub legal_basis: String,
    pub case_reference: Option<String>,
    pub consent_id: Option<String>,
    /// With a snapshot, or from now on.
    pub start: SubscriptionStart,
    /// The last day it runs (`None`: until it is ended otherwise).
    pub end_date: Option<Date>,
    /// Which records it delivers.
    pub filter: RecordFilter,
}

impl Subscription {
    /// Whether `n` asks for the same as this subscription was asked for.
    fn same_order(&self, n: &NewSubscription) -> bool {
        self.asked == *n
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

/// Which of a party's subscriptions a listing returns; `None` and empty mean any.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub person: Option<Personnummer>,
    pub legal_basis: Option<String>,
    pub client_reference: Option<String>,
    pub case_reference: Option<String>,
    pub consent_id: Option<String>,
    pub states: Vec<SubscriptionState>,
}

/// Which subscriptions to end or suspend.
#[derive(Debug, Clone, Copy)]
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
    /// The party's subscriptions about one person.
    AllOfPerson {
        party_id: &'a str,
        person: &'a Personnummer,
    },
    /// Every party's subscriptions whose end date lies before `today` (YYYY-MM-DD).
    EndDateBefore {
        today: &'a str,
    },
}

impl EndSelector<'_> {
    /// The SQL condition on `subscriptions s` and its two bound values.
    fn clause(&self) -> (&'static str, &str, &str) {
        match *self {
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
            EndSelector::AllOfPerson { party_id, person } => {
                ("s.party_id = $1 AND s.person = $2", party_id, person.as_storage())
            }
            EndSelector::EndDateBefore { today } => {
                ("s.end_date <> '' AND s.end_date < $1 AND $2 = ''", today, "")
            }
        }
    }
}

/// What a full refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// The sequence just before the refresh: a cursor there streams the refresh, then what follows.
    pub before: u64,
    pub refreshed: Vec<String>,
    /// Named subscriptions that are not active.
    pub skipped: Vec<String>,
}

/// How far a party's consumers have confirmed (see [`Store::party_lags`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartyLag {
    pub party_id: String,
    /// The lowest register sequence any of its consumers confirmed.
    pub confirmed: u64,
    pub least_recent_commit_at: Micros,
    /// When the change after `confirmed` was committed; `None` when there is none yet.
    pub oldest_unconfirmed_at: Option<Micros>,
}

/// A full refresh as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// The sequence of its snapshots.
    pub seq: u64,
    pub requested_at: Micros,
    pub reason: Option<String>,
    pub subscription_count: u64,
}

/// The position a party's consumer last reported (DeliveryService.CommitCursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorCommit {
    pub consumer: String,
    pub register_sequence: u64,
    pub committed_at: Micros,
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

/// The columns [`subscription_from_row`] reads, from a query that names `subscriptions` as `s`.
const SUBSCRIPTION_COLUMNS: &str = "s.subscription_id, s.party_id, s.client_reference, s.person, s.benefit_types, \
     s.from_date, s.legal_basis, s.case_reference, s.consent_id, s.state, s.state_reason, s.created_at, \
     s.created_seq, s.ended_at, s.ended_seq, s.start, s.end_date, s.record_filter";

/// How many columns [`SUBSCRIPTION_COLUMNS`] holds (the next column's index).
const SUBSCRIPTION_COLUMN_COUNT: usize = 18;

/// Rows per generated statement (15 parameters each: far within both backends' limits).
const ROWS_PER_STATEMENT: usize = 500;

fn subscription_from_row(r: &impl Columns) -> Result<Subscription, StoreError> {
    let state_reason = r.text(10)?;
    Ok(Subscription {
        subscription_id: r.text(0)?.to_string(),
        party_id: r.text(1)?.to_string(),
        asked: NewSubscription {
            client_reference: r.text(2)?.to_string(),
            person: stored_person(r.text(3)?, "subscriptions.person")?,
            benefit_types: split_codes(r.text(4)?),
            from_date: stored_date(r.text(5)?, "subscriptions.from_date")?,
            legal_basis: r.text(6)?.to_string(),
            case_reference: non_empty(r.text(7)?.to_string()),
            consent_id: non_empty(r.text(8)?.to_string()),
            start: SubscriptionStart::parse(r.text(15)?).ok_or(StoreError::Corrupt("subscriptions.start"))?,
            end_date: stored_opt_date(
                Some(r.text(16)?).filter(|d| !d.is_empty()),
                "subscriptions.end_date",
            )?,
            filter: RecordFilter::from_stored(r.text(17)?),
        },
        state: SubscriptionState::parse(r.text(9)?).ok_or(StoreError::Corrupt("subscriptions.state"))?,
        state_reason: if state_reason.is_empty() {
            None
        } else {
            Some(StateReason::parse(state_reason).ok_or(StoreError::Corrupt("subscriptions.state_reason"))?)
        },
        created_at: r.number(11)?,
        created_seq: to_u64(r.number(12)?, "subscriptions.created_seq")?,
        ended_at: r.optional_number(13)?,
        ended_seq: r
            .optional_number(14)?
            .map(|s| to_u64(s, "subscriptions.ended_seq"))
            .transpose()?,
    })
}

/// Reads subscriptions with `sql` (which selects [`SUBSCRIPTION_COLUMNS`]) and the values `$bind`
/// binds to `$q`. The query is built inside each backend's arm: its type depends on the backend.
macro_rules! subscriptions {
    ($conn:expr, $sql:expr, |$q:ident| $bind:expr) => {
        on_conn!($conn, |c| {
            let $q = sqlx::query(sqlx::AssertSqlSafe($sql));
            let rows = $bind.fetch_all(c).await?;
            rows.iter()
                .map(subscription_from_row)
                .collect::<Result<Vec<_>, StoreError>>()?
        })
    };
}

// After the macro, which it uses.
mod withdrawal;
pub use withdrawal::AgencyAction;

impl Store {
    /// Creates subscriptions for a party in one transaction, each with its creation-snapshot event.
    /// Items are idempotent by client reference.
    pub async fn create_subscriptions(
        &self,
        party_id: &str,
        items: &[NewSubscription],
        now: Micros,
    ) -> Result<Vec<CreateOutcome>, StoreError> {
        let mut conn = self.write().await?;
        let dialect = conn.dialect();
        // The party's subscriptions that already hold one of the batch's references, read in a few
        // queries (one per item made a 10,000-item call take seconds) by the combined key of
        // migrations 0007 and 0018 (see there why not by the two columns, and why unique).
        let mut known: HashMap<String, Subscription> = HashMap::new();
        let mut keys: Vec<String> = items
            .iter()
            .map(|i| format!("{party_id} {}", i.client_reference))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for chunk in keys.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s WHERE (s.party_id || ' ' || s.client_reference) IN ({})",
                dialect.in_list(chunk.len()),
            );
            let found = subscriptions!(&mut conn, sql.as_str(), |q| {
                // Planned at every call, with the table's size then: a prepared plan made while a
                // new database's table was empty scanned the whole table ever after (until an
                // ANALYZE), for every 500 references of a bulk load.
                let mut q = q.persistent(false);
                for key in chunk {
                    q = q.bind(key);
                }
                q
            });
            for existing in found {
                known.insert(existing.asked.client_reference.clone(), existing);
            }
        }
        // Each item in order: a reference seen before (stored, or earlier in this batch) is
        // unchanged or a conflict; a new one becomes a subscription at the batch's sequence.
        let mut outcomes = Vec::with_capacity(items.len());
        let mut created: Vec<Subscription> = Vec::new();
        let mut seq: Option<u64> = None;
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
                None => *seq.insert(history::next_seq(&mut conn).await?),
            };
            let subscription = Subscription {
                subscription_id: new_id("sub"),
                party_id: party_id.to_string(),
                asked: item.clone(),
                state: SubscriptionState::Active,
                state_reason: None,
                created_at: now,
                created_seq: at,
                ended_at: None,
                ended_seq: None,
            };
            known.insert(item.client_reference.clone(), subscription.clone());
            outcomes.push(CreateOutcome::Created(subscription.clone()));
            created.push(subscription);
        }
        // The new subscriptions and their creation-snapshot events (numbered 1, ordered within the
        // sequence as the items were), in multi-row INSERTs.
        for chunk in created.chunks(ROWS_PER_STATEMENT) {
            insert_subscriptions(&mut conn, chunk).await?;
        }
        if let Some(seq) = seq {
            let mut events = history::Events::new(seq, now);
            for s in &created {
                let first = match s.asked.start {
                    SubscriptionStart::Snapshot => EventKind::Snapshot(SnapshotReason::SubscriptionCreated),
                    SubscriptionStart::Now => EventKind::Notice(Notice {
                        state: SubscriptionState::Active,
                        reason: StateReason::StartedFromNow,
                        message: "created without its history: changes recorded from now on follow"
                            .to_string(),
                    }),
                };
                events.add(party_id, &s.subscription_id, 1, first);
            }
            events.write(&mut conn).await?;
        }
        conn.commit().await?;
        Ok(outcomes)
    }

    /// Whether any subscription not yet ended has an end date before `today` (YYYY-MM-DD): a read,
    /// so that the daily check takes the register head's lock only when it has something to end.
    pub async fn any_past_end_date(&self, today: &str) -> Result<bool, StoreError> {
        let mut conn = self.read().await?;
        let found: Option<i32> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar(
                "SELECT 1 FROM subscriptions WHERE end_date <> '' AND end_date < $1 AND state <> 'ENDED' LIMIT 1",
            )
            .bind(today)
            .fetch_optional(c)
            .await?
        });
        Ok(found.is_some())
    }

    /// One of a party's subscriptions.
    pub async fn subscription(
        &self,
        party_id: &str,
        subscription_id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        let mut conn = self.read().await?;
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s WHERE s.party_id = $1 AND s.subscription_id = $2"
        );
        let found = subscriptions!(&mut conn, sql.as_str(), |q| q
            .bind(party_id)
            .bind(subscription_id));
        Ok(found.into_iter().next())
    }

    /// A page of a party's subscriptions in (created_at, subscription_id) order, after the given
    /// key, matching `filter`.
    pub async fn subscriptions_page(
        &self,
        party_id: &str,
        filter: &SubscriptionFilter,
        after: Option<(Micros, &str)>,
        limit: i64,
    ) -> Result<Vec<Subscription>, StoreError> {
        let (after_at, after_id) = after.unwrap_or((i64::MIN, ""));
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        let states = states.join(",");
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        let person = filter.person.as_ref().map_or("", Personnummer::as_storage);
        let mut conn = self.read().await?;
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions s \
             WHERE s.party_id = $1 AND (s.created_at > $2 OR (s.created_at = $2 AND s.subscription_id > $3)) \
               AND ($4 = '' OR s.person = $4) AND ($5 = '' OR s.legal_basis = $5) \
               AND ($6 = '' OR s.client_reference = $6) AND ($7 = '' OR s.case_reference = $7) \
               AND ($8 = '' OR s.consent_id = $8) \
               AND ($9 = '' OR (',' || $9 || ',') LIKE ('%,' || s.state || ',%')) \
             ORDER BY s.created_at, s.subscription_id LIMIT $10"
        );
        Ok(subscriptions!(&mut conn, sql.as_str(), |q| q
            .bind(party_id)
            .bind(after_at)
            .bind(after_id)
            .bind(person)
            .bind(text(&filter.legal_basis))
            .bind(text(&filter.client_reference))
            .bind(text(&filter.case_reference))
            .bind(text(&filter.consent_id))
            .bind(&states)
            .bind(limit)))
    }

    /// Puts a fresh snapshot of the party's active subscriptions (all, or those named) into its
    /// history at one new sequence, and records the request with its reason. A named subscription
    /// that is not active is skipped; one the party does not have is [`StoreError::NotFound`] (and
    /// nothing changes).
    pub async fn full_refresh(
        &self,
        party_id: &str,
        only: &[String],
        reason: &str,
        now: Micros,
    ) -> Result<Refresh, StoreError> {
        let mut conn = self.write().await?;
        history::lock_head(&mut conn).await?;
        let all: Vec<(String, String)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT subscription_id, state FROM subscriptions WHERE party_id = $1 ORDER BY subscription_id",
            )
            .bind(party_id)
            .fetch_all(c)
            .await?
        });
        let active = |id: &str| {
            all.iter()
                .any(|(s, state)| s == id && state == SubscriptionState::Active.as_str())
        };
        let (refreshed, skipped): (Vec<String>, Vec<String>) = if only.is_empty() {
            let ids = all
                .iter()
                .map(|(id, _)| id.clone())
                .filter(|id| active(id))
                .collect();
            (ids, Vec::new())
        } else {
            if only.iter().any(|id| !all.iter().any(|(s, _)| s == id)) {
                return Err(StoreError::NotFound);
            }
            // A subscription named twice is refreshed once: its event numbers go up by one.
            let mut named: Vec<String> = Vec::with_capacity(only.len());
            for id in only {
                if !named.contains(id) {
                    named.push(id.clone());
                }
            }
            named.into_iter().partition(|id| active(id))
        };
        let seq = history::next_seq(&mut conn).await?;
        let mut events = history::Events::new(seq, now);
        for id in &refreshed {
            let number = history::next_event_number(&mut conn, id).await?;
            events.add(
                party_id,
                id,
                number,
                EventKind::Snapshot(SnapshotReason::FullRefresh),
            );
        }
        events.write(&mut conn).await?;
        on_conn!(&mut conn, |c| {
            sqlx::query(
                "INSERT INTO full_refreshes (party_id, seq, requested_at, reason, subscription_count) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(party_id)
            .bind(super::to_i64(seq))
            .bind(now)
            .bind(reason)
            .bind(super::to_i64(refreshed.len() as u64))
            .execute(c)
            .await?;
        });
        conn.commit().await?;
        Ok(Refresh {
            before: seq - 1,
            refreshed,
            skipped,
        })
    }

    /// Records the position a party's consumer reports it has applied (DeliveryService.CommitCursor;
    /// the latest report per consumer is kept).
    pub async fn commit_cursor(
        &self,
        party_id: &str,
        consumer: &str,
        seq: u64,
        now: Micros,
    ) -> Result<(), StoreError> {
        let mut conn = self.write().await?;
        execute!(
            &mut conn,
            "INSERT INTO cursor_commits (party_id, consumer, register_sequence, committed_at) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (party_id, consumer) DO UPDATE SET register_sequence = excluded.register_sequence, \
                 committed_at = excluded.committed_at",
            party_id,
            consumer,
            super::to_i64(seq),
            now,
        );
        conn.commit().await
    }

    /// The positions a party's consumers reported last: consumer, register sequence and when.
    pub async fn cursor_commits(&self, party_id: &str) -> Result<Vec<CursorCommit>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<(String, i64, i64)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT consumer, register_sequence, committed_at FROM cursor_commits WHERE party_id = $1 \
                 ORDER BY consumer",
            )
            .bind(party_id)
            .fetch_all(c)
            .await?
        });
        rows.into_iter()
            .map(|(consumer, seq, committed_at)| {
                Ok(CursorCommit {
                    consumer,
                    register_sequence: to_u64(seq, "cursor_commits.register_sequence")?,
                    committed_at,
                })
            })
            .collect()
    }

    /// Every party whose consumers confirmed a position: the lowest position confirmed, when the
    /// least recent confirmation came, and when the first change after that position was
    /// committed (`None`: nothing after it yet).
    pub async fn party_lags(&self) -> Result<Vec<PartyLag>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<(String, i64, i64, Option<i64>)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT c.party_id, c.confirmed, c.least_recent, \
                     (SELECT recorded_at FROM register_log WHERE seq = c.confirmed + 1) \
                 FROM (SELECT party_id, MIN(register_sequence) AS confirmed, MIN(committed_at) AS least_recent \
                       FROM cursor_commits GROUP BY party_id) AS c \
                 ORDER BY c.party_id",
            )
            .fetch_all(c)
            .await?
        });
        rows.into_iter()
            .map(
                |(party_id, confirmed, least_recent_commit_at, oldest_unconfirmed_at)| {
                    Ok(PartyLag {
                        party_id,
                        confirmed: to_u64(confirmed, "cursor_commits.register_sequence")?,
                        least_recent_commit_at,
                        oldest_unconfirmed_at,
                    })
                },
            )
            .collect()
    }

    /// The full refreshes a party asked for, newest first.
    pub async fn full_refreshes(&self, party_id: &str) -> Result<Vec<RefreshRecord>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<(i64, i64, String, i64)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT seq, requested_at, reason, subscription_count FROM full_refreshes WHERE party_id = $1 \
                 ORDER BY seq DESC",
            )
            .bind(party_id)
            .fetch_all(c)
            .await?
        });
        rows.into_iter()
            .map(|(seq, requested_at, reason, count)| {
                Ok(RefreshRecord {
                    seq: to_u64(seq, "full_refreshes.seq")?,
                    requested_at,
                    reason: non_empty(reason),
                    subscription_count: to_u64(count, "full_refreshes.subscription_count")?,
                })
            })
            .collect()
    }

    /// When the register recorded sequence `seq` (a fact, or a party event); `None` for a sequence
    /// not in the register or the history kept.
    pub async fn recorded_at(&self, seq: u64) -> Result<Option<Micros>, StoreError> {
        let mut conn = self.read().await?;
        Ok(on_conn!(&mut conn, |c| {
            sqlx::query_scalar(
                "SELECT recorded_at FROM register_log WHERE seq = $1 \
                 UNION ALL SELECT recorded_at FROM delivery_events WHERE seq = $1 LIMIT 1",
            )
            .bind(super::to_i64(seq))
            .fetch_optional(c)
            .await?
        }))
    }
}

/// Inserts new subscriptions in one statement.
async fn insert_subscriptions(conn: &mut Conn, chunk: &[Subscription]) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO subscriptions (subscription_id, party_id, client_reference, person, benefit_types, \
             from_date, legal_basis, case_reference, consent_id, state, state_reason, created_at, created_seq, \
             start, end_date, record_filter) VALUES {}",
        conn.dialect().values_list(chunk.len(), 16)
    );
    on_conn!(conn, |c| {
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for s in chunk {
            insert = insert
                .bind(&s.subscription_id)
                .bind(&s.party_id)
                .bind(&s.asked.client_reference)
                .bind(s.asked.person.as_storage())
                .bind(join_codes(&s.asked.benefit_types))
                .bind(format_date(s.asked.from_date))
                .bind(&s.asked.legal_basis)
                .bind(s.asked.case_reference.as_deref().unwrap_or(""))
                .bind(s.asked.consent_id.as_deref().unwrap_or(""))
                .bind(s.state.as_str())
                .bind(s.state_reason.map_or("", StateReason::as_str))
                .bind(s.created_at)
                .bind(super::to_i64(s.created_seq))
                .bind(s.asked.start.as_str())
                .bind(s.asked.end_date.map(format_date).unwrap_or_default())
                .bind(s.asked.filter.stored());
        }
        insert.execute(c).await?;
    });
    Ok(())
}

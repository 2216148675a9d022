//! Each party's delivery history: writing events (fan-out, party events), reading it in pages,
//! the start-snapshot set of a stream, pruning, and the cursor key.

use std::collections::HashMap;

use super::{
    DeliveryEvent, SUBSCRIPTION_COLUMN_COUNT, SUBSCRIPTION_COLUMNS, Subscription, subscription_from_row,
};
use crate::domain::clock::Micros;
use crate::domain::delivery::{EventKind, Notice, SnapshotReason, StateReason, SubscriptionState};
use crate::store::tx::{Columns, Conn, on_conn};
use crate::store::{Store, StoreError, to_i64, to_u64};

/// Fans the register facts of the given sequences out to the active subscriptions they concern, as
/// change events. Runs inside the ingest transaction, after the facts are inserted and before
/// commit; the same SQL runs on both backends, but for how the sequences are given. A fact concerns
/// a subscription when it is about the same person and one of its benefit types (or no benefit
/// type: person data and person events) and, for a new fact, its valid period reaches the
/// subscription's from-date (corrections and retractions are always delivered: they may move a fact
/// out of the window); and when the subscription's record filter admits it
/// (`domain::delivery::RecordFilter`: its type, or its type and topic, among the filter's topics;
/// person data always), or, for a correction, admitted the version it corrects (so the party learns
/// the fact left its filter; a retraction carries the topic of the version it retracts).
///
/// `CROSS JOIN` is an inner join with its conditions in `WHERE`; SQLite keeps its left table as
/// the outer loop, so the few new log rows drive the lookup of subscriptions by person. Without
/// it SQLite's planner, once its statistics show many versions per person, scanned every active
/// subscription on each commit (50 ms a commit at 20,000 subscriptions). PostgreSQL's planner
/// reorders a `CROSS JOIN` like any inner join.
///
/// PostgreSQL planned this statement anew at every commit (about 0.45 ms, three times its
/// execution, inside the head lock that orders ingest): its planner judged a plan made once for
/// any sequences worse than one made for the given range. For a range it is (it hash-joins every
/// subscription); for a list of sequences (`= ANY($1)`) it is as good as the custom one, so
/// PostgreSQL gets the list and is told to keep one plan ([`fan_out`]).
macro_rules! fan_out_sql {
    ($sequences:literal) => {
        concat!(
            "\
INSERT INTO delivery_events (party_id, seq, ord, subscription_id, event_number, kind, recorded_at)
SELECT m.party_id, m.seq, m.ord, m.subscription_id, m.base + m.n, 'CHANGE', m.recorded_at
FROM (
    SELECT s.party_id, l.seq, l.recorded_at, s.subscription_id,
           ROW_NUMBER() OVER (PARTITION BY s.party_id, l.seq ORDER BY s.subscription_id) AS ord,
           ROW_NUMBER() OVER (PARTITION BY s.subscription_id ORDER BY l.seq) AS n,
           (SELECT COALESCE(MAX(e.event_number), 0) FROM delivery_events e
             WHERE e.subscription_id = s.subscription_id) AS base
    FROM register_log l CROSS JOIN subscriptions s
    WHERE ",
            $sequences,
            " AND s.person = l.person AND s.state = 'ACTIVE'
      AND (l.benefit_type = '' OR (',' || s.benefit_types || ',') LIKE ('%,' || l.benefit_type || ',%'))
      AND (l.kind <> 'NEW' OR l.valid_to IS NULL OR l.valid_to >= s.from_date)
      AND (s.record_filter = '' OR l.fact_type = 'PERSON'
           OR (',' || s.record_filter || ',') LIKE ('%,' || l.fact_type || ',%')
           OR (',' || s.record_filter || ',') LIKE ('%,' || l.fact_type || ':' || l.topic || ',%')
           OR (l.kind = 'CORRECTION' AND EXISTS (
                SELECT 1 FROM register_log p
                WHERE p.record_id = l.record_id AND p.version = l.version - 1
                  AND ((',' || s.record_filter || ',') LIKE ('%,' || p.fact_type || ',%')
                       OR (',' || s.record_filter || ',') LIKE ('%,' || p.fact_type || ':' || p.topic || ',%')))))
) m
RETURNING party_id"
        )
    };
}

/// [`fan_out_sql`] for SQLite: the sequences as a range.
const FAN_OUT_SQLITE: &str = fan_out_sql!("l.seq >= $1 AND l.seq <= $2");

/// [`fan_out_sql`] for PostgreSQL: the sequences as a list, for one plan kept for every commit.
const FAN_OUT_POSTGRES: &str = fan_out_sql!("l.seq = ANY($1)");

/// The fan-out statement as `kind` gets it (for checks of its plan).
pub fn fan_out_statement(kind: crate::store::BackendKind) -> &'static str {
    match kind {
        crate::store::BackendKind::Sqlite => FAN_OUT_SQLITE,
        crate::store::BackendKind::Postgres => FAN_OUT_POSTGRES,
    }
}

/// Writes the change events of the facts at sequences `first..=last` (see [`fan_out_sql`]) inside
/// the ingest transaction. Returns the parties whose histories grew (each once, sorted), so that
/// only their streams are woken.
pub(crate) async fn fan_out(conn: &mut Conn, first: u64, last: u64) -> Result<Vec<String>, StoreError> {
    let mut parties: Vec<String> = on_conn!(conn,
        sqlite: |c| sqlx::query_scalar(FAN_OUT_SQLITE)
            .bind(to_i64(first))
            .bind(to_i64(last))
            .fetch_all(c)
            .await?,
        postgres: |c| {
            // Until the transaction ends (the fan-out is its last statement).
            sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
                .execute(&mut *c)
                .await?;
            let sequences: Vec<i64> = (to_i64(first)..=to_i64(last)).collect();
            sqlx::query_scalar(FAN_OUT_POSTGRES)
                .bind(sequences)
                .fetch_all(&mut *c)
                .await?
        },
    );
    parties.sort_unstable();
    parties.dedup();
    Ok(parties)
}

/// Takes the register head's row lock (until the transaction ends) without moving the head: a
/// transaction that decides from what it reads (which subscriptions to withdraw or resume) takes it
/// before reading, so that two such transactions, or one and an ingest, are ordered and the second
/// sees what the first wrote (PostgreSQL; SQLite's one writer orders them anyway).
pub(super) async fn lock_head(conn: &mut Conn) -> Result<(), StoreError> {
    on_conn!(conn, |c| {
        sqlx::query("UPDATE register_head SET last_seq = last_seq WHERE id = 1")
            .execute(c)
            .await?;
    });
    Ok(())
}

/// Takes the next register sequence for a party event, inside the caller's transaction (the row
/// lock orders it with ingest).
pub(super) async fn next_seq(conn: &mut Conn) -> Result<u64, StoreError> {
    let seq: i64 = on_conn!(conn, |c| {
        sqlx::query_scalar("UPDATE register_head SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq")
            .fetch_one(c)
            .await?
    });
    to_u64(seq, "register_head.last_seq")
}

/// The number the subscription's next event gets.
pub(super) async fn next_event_number(conn: &mut Conn, subscription_id: &str) -> Result<u64, StoreError> {
    let number: i64 = on_conn!(conn, |c| {
        sqlx::query_scalar(
            "SELECT COALESCE(MAX(event_number), 0) + 1 FROM delivery_events WHERE subscription_id = $1",
        )
        .bind(subscription_id)
        .fetch_one(c)
        .await?
    });
    to_u64(number, "delivery_events.event_number")
}

/// Party events written together at one sequence: each party's events are ordered within the
/// sequence (`ord`) in the order they are added.
pub(super) struct Events<'a> {
    seq: u64,
    recorded_at: Micros,
    rows: Vec<(&'a str, u64, &'a str, u64, EventKind)>,
    /// Each party's last `ord` so far.
    ords: HashMap<&'a str, u64>,
}

impl<'a> Events<'a> {
    pub fn new(seq: u64, recorded_at: Micros) -> Self {
        Self {
            seq,
            recorded_at,
            rows: Vec::new(),
            ords: HashMap::new(),
        }
    }

    /// Adds the event numbered `event_number` of `subscription_id` (of `party_id`).
    pub fn add(&mut self, party_id: &'a str, subscription_id: &'a str, event_number: u64, kind: EventKind) {
        let ord = self.ords.entry(party_id).or_insert(0);
        *ord += 1;
        self.rows
            .push((party_id, *ord, subscription_id, event_number, kind));
    }

    /// Appends the events in multi-row INSERTs, inside the caller's transaction.
    pub async fn write(self, conn: &mut Conn) -> Result<(), StoreError> {
        let dialect = conn.dialect();
        for chunk in self.rows.chunks(EVENTS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO delivery_events (party_id, seq, ord, subscription_id, event_number, kind, state, \
                     reason, message, recorded_at) VALUES {}",
                dialect.values_list(chunk.len(), 10)
            );
            on_conn!(&mut *conn, |c| {
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for (party_id, ord, subscription_id, event_number, kind) in chunk {
                    let (kind, state, reason, message) = event_columns(kind);
                    insert = insert
                        .bind(*party_id)
                        .bind(to_i64(self.seq))
                        .bind(to_i64(*ord))
                        .bind(*subscription_id)
                        .bind(to_i64(*event_number))
                        .bind(kind)
                        .bind(state)
                        .bind(reason)
                        .bind(message)
                        .bind(self.recorded_at);
                }
                insert.execute(c).await?;
            });
        }
        Ok(())
    }
}

/// How an event kind is stored: kind, state, reason, message.
fn event_columns(
    kind: &EventKind,
) -> (
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    Option<&str>,
) {
    match kind {
        EventKind::Snapshot(reason) => ("SNAPSHOT", None, Some(reason.as_str()), None),
        EventKind::Change => ("CHANGE", None, None, None),
        EventKind::Notice(n) => (
            "NOTICE",
            Some(n.state.as_str()),
            Some(n.reason.as_str()),
            Some(&n.message),
        ),
    }
}

/// An event kind as stored (see [`event_columns`]).
fn event_kind(
    kind: &str,
    state: Option<&str>,
    reason: Option<&str>,
    message: Option<&str>,
) -> Result<EventKind, StoreError> {
    let corrupt = || StoreError::Corrupt("delivery_events.kind");
    Ok(match kind {
        "SNAPSHOT" => EventKind::Snapshot(reason.and_then(SnapshotReason::parse).ok_or_else(corrupt)?),
        "CHANGE" => EventKind::Change,
        "NOTICE" => EventKind::Notice(Notice {
            state: state.and_then(SubscriptionState::parse).ok_or_else(corrupt)?,
            reason: reason.and_then(StateReason::parse).ok_or_else(corrupt)?,
            message: message.unwrap_or_default().to_string(),
        }),
        _ => return Err(corrupt()),
    })
}

/// Events per INSERT statement (10 parameters each).
const EVENTS_PER_STATEMENT: usize = 500;

/// A history event and its subscription, from a row of [`SUBSCRIPTION_COLUMNS`] and the event's
/// columns after them.
fn delivery_event(r: &impl Columns) -> Result<DeliveryEvent, StoreError> {
    let at = SUBSCRIPTION_COLUMN_COUNT;
    let number = |i: usize| r.number(at + i);
    let text = |i: usize| r.optional_text(at + i);
    Ok(DeliveryEvent {
        seq: to_u64(number(0)?, "delivery_events.seq")?,
        ord: to_u64(number(1)?, "delivery_events.ord")?,
        event_number: to_u64(number(2)?, "delivery_events.event_number")?,
        kind: event_kind(text(3)?.unwrap_or_default(), text(4)?, text(5)?, text(6)?)?,
        recorded_at: number(7)?,
        subscription: subscription_from_row(r)?,
    })
}

impl Store {
    /// A page of a party's history after `(seq, ord)` up to sequence `up_to`, in order.
    pub async fn delivery_page(
        &self,
        party_id: &str,
        after: (u64, u64),
        up_to: u64,
        limit: i64,
    ) -> Result<Vec<DeliveryEvent>, StoreError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS}, e.seq, e.ord, e.event_number, e.kind, e.state, e.reason, e.message, \
                    e.recorded_at \
             FROM delivery_events e JOIN subscriptions s ON s.subscription_id = e.subscription_id \
             WHERE e.party_id = $1 AND (e.seq > $2 OR (e.seq = $2 AND e.ord > $3)) AND e.seq <= $4 \
             ORDER BY e.seq, e.ord LIMIT $5"
        );
        let mut conn = self.read().await?;
        Ok(on_conn!(&mut conn, |c| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(party_id)
                .bind(to_i64(after.0))
                .bind(to_i64(after.1))
                .bind(to_i64(up_to))
                .bind(limit)
                .fetch_all(c)
                .await?;
            rows.iter().map(delivery_event).collect::<Result<Vec<_>, _>>()?
        }))
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
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS}, \
                    (SELECT COALESCE(MAX(e.event_number), 0) FROM delivery_events e \
                      WHERE e.subscription_id = s.subscription_id AND e.seq <= $2) \
             FROM subscriptions s \
             WHERE s.party_id = $1 AND s.created_seq <= $2 AND (s.ended_seq IS NULL OR s.ended_seq > $2) \
               AND s.subscription_id > $3 \
             ORDER BY s.subscription_id LIMIT $4 OFFSET $5"
        );
        let mut conn = self.read().await?;
        Ok(on_conn!(&mut conn, |c| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(party_id)
                .bind(to_i64(head))
                .bind(after)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(to_i64(skip))
                .fetch_all(c)
                .await?;
            rows.iter()
                .map(|r| {
                    let number = r.number(SUBSCRIPTION_COLUMN_COUNT)?;
                    Ok((
                        subscription_from_row(r)?,
                        to_u64(number, "delivery_events.event_number")?,
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        }))
    }

    /// Which of `party_ids` have history events at sequences in `(after, through]` (in the order
    /// given): after the register head moved from `after` to `through`, the parties whose
    /// streams have something new. One index probe per party (the key is party, sequence).
    pub async fn parties_with_history_between(
        &self,
        party_ids: &[String],
        after: u64,
        through: u64,
    ) -> Result<Vec<String>, StoreError> {
        if party_ids.is_empty() || after >= through {
            return Ok(Vec::new());
        }
        let mut conn = self.read().await?;
        let found: Vec<String> = on_conn!(&mut conn,
            // The ids travel as one JSON array (any number of them in one bound value).
            sqlite: |c| sqlx::query_scalar(
                "SELECT p.value FROM json_each($1) p WHERE EXISTS (SELECT 1 FROM delivery_events e \
                  WHERE e.party_id = p.value AND e.seq > $2 AND e.seq <= $3) ORDER BY p.key",
            )
            .bind(serde_json::Value::from(party_ids.to_vec()).to_string())
            .bind(to_i64(after))
            .bind(to_i64(through))
            .fetch_all(c)
            .await?,
            postgres: |c| sqlx::query_scalar(
                "SELECT p FROM UNNEST($1::text[]) WITH ORDINALITY AS u (p, n) WHERE EXISTS \
                  (SELECT 1 FROM delivery_events e WHERE e.party_id = u.p AND e.seq > $2 AND e.seq <= $3) \
                 ORDER BY n",
            )
            .bind(party_ids)
            .bind(to_i64(after))
            .bind(to_i64(through))
            .fetch_all(c)
            .await?,
        );
        Ok(found)
    }

    /// How far a party's history has been pruned (cursors at or below it have expired).
    pub async fn delivery_horizon(&self, party_id: &str) -> Result<u64, StoreError> {
        let mut conn = self.read().await?;
        let horizon: Option<i64> = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT pruned_through_seq FROM delivery_horizon WHERE party_id = $1")
                .bind(party_id)
                .fetch_optional(c)
                .await?
        });
        horizon.map_or(Ok(0), |h| to_u64(h, "delivery_horizon.pruned_through_seq"))
    }

    /// Deletes history events recorded before `before` and moves each party's horizon past them.
    /// Returns how many events were deleted.
    ///
    /// With several replicas on PostgreSQL one prunes at a time: the others find the transaction
    /// lock taken and return 0 at once (the next round prunes what is left).
    pub async fn prune_delivery_history(&self, before: Micros) -> Result<u64, StoreError> {
        let mut conn = self.write().await?;
        let alone: bool = on_conn!(&mut conn,
            sqlite: |_c| true, // SQLite has one writer: the write connection is the lock.
            postgres: |c| sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                .bind(PRUNE_LOCK)
                .fetch_one(c)
                .await?,
        );
        if !alone {
            return Ok(0);
        }
        let horizons: Vec<(String, i64)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT party_id, MAX(seq) FROM delivery_events WHERE recorded_at < $1 GROUP BY party_id",
            )
            .bind(before)
            .fetch_all(c)
            .await?
        });
        let mut deleted = 0u64;
        for (party_id, seq) in &horizons {
            deleted += on_conn!(&mut conn, |c| {
                sqlx::query(
                    "INSERT INTO delivery_horizon (party_id, pruned_through_seq) VALUES ($1, $2) \
                     ON CONFLICT (party_id) DO UPDATE SET pruned_through_seq = \
                       CASE WHEN excluded.pruned_through_seq > delivery_horizon.pruned_through_seq \
                            THEN excluded.pruned_through_seq ELSE delivery_horizon.pruned_through_seq END",
                )
                .bind(party_id)
                .bind(seq)
                .execute(&mut *c)
                .await?;
                // Each subscription's latest event stays: event numbers continue from it.
                sqlx::query(
                    "DELETE FROM delivery_events WHERE party_id = $1 AND seq <= $2 \
                     AND event_number < (SELECT MAX(e2.event_number) FROM delivery_events e2 \
                                         WHERE e2.subscription_id = delivery_events.subscription_id)",
                )
                .bind(party_id)
                .bind(seq)
                .execute(c)
                .await?
                .rows_affected()
            });
        }
        conn.commit().await?;
        Ok(deleted)
    }

    /// The key cursors are signed with, created on first use and shared by every replica.
    pub async fn cursor_key(&self) -> Result<Vec<u8>, StoreError> {
        let fresh =
            hex::encode(uuid::Uuid::new_v4().as_bytes()) + &hex::encode(uuid::Uuid::new_v4().as_bytes());
        let mut conn = self.write().await?;
        let stored: String = on_conn!(&mut conn, |c| {
            sqlx::query(
                "INSERT INTO server_secrets (name, value) VALUES ('cursor_key', $1) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&fresh)
            .execute(&mut *c)
            .await?;
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = 'cursor_key'")
                .fetch_one(c)
                .await?
        });
        conn.commit().await?;
        hex::decode(stored).map_err(|_| StoreError::Corrupt("server_secrets.cursor_key"))
    }
}

/// The PostgreSQL advisory lock key the history pruner holds for its transaction ("lefi" and a
/// number, so it does not collide with another application's lock on a shared database).
pub const PRUNE_LOCK: i64 = 0x6c65_6669_0000_0001;

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite's plan for fan-out on a register whose statistics say each person has `versions`
    /// log rows (as `ANALYZE` leaves them after years of corrections), one line per step.
    async fn fan_out_plan(versions: u32) -> String {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lefi.db").display());
        let store = Store::connect(&url, 2).await.unwrap();
        let Conn::Sqlite(mut handle) = store.write_unscoped().await.unwrap() else {
            panic!("a SQLite store")
        };
        let c = &mut *handle;
        sqlx::query("ANALYZE").execute(&mut *c).await.unwrap();
        sqlx::query(
            "DELETE FROM sqlite_stat1 WHERE tbl IN ('register_log', 'subscriptions', 'delivery_events')",
        )
        .execute(&mut *c)
        .await
        .unwrap();
        let rows = 20_000 * versions;
        for (table, index, stat) in [
            (
                "register_log",
                "register_log_person",
                format!("{rows} {versions} 1"),
            ),
            ("register_log", "register_log_record", format!("{rows} 6 1")),
            ("subscriptions", "subscriptions_person", "20000 1 1".to_string()),
            (
                "subscriptions",
                "sqlite_autoindex_subscriptions_1",
                "20000 1".to_string(),
            ),
            (
                "delivery_events",
                "delivery_events_subscription",
                "20000 1 1".to_string(),
            ),
        ] {
            sqlx::query("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ($1, $2, $3)")
                .bind(table)
                .bind(index)
                .bind(stat)
                .execute(&mut *c)
                .await
                .unwrap();
        }
        // Loads the statistics just written into the planner.
        sqlx::query("ANALYZE sqlite_schema")
            .execute(&mut *c)
            .await
            .unwrap();
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {FAN_OUT_SQLITE}"
        )))
        .bind(1_i64)
        .bind(5_i64)
        .fetch_all(&mut *c)
        .await
        .unwrap();
        drop(handle);
        store.close().await;
        plan.into_iter().map(|(_, _, _, step)| step + "\n").collect()
    }

    #[tokio::test]
    async fn sqlite_fans_out_from_the_new_log_rows_however_deep_the_history() {
        for versions in [1, 18, 88, 1_000] {
            let plan = fan_out_plan(versions).await;
            assert!(
                plan.contains("SEARCH l USING INTEGER PRIMARY KEY"),
                "{versions} versions a person:\n{plan}"
            );
            assert!(
                plan.contains("SEARCH s USING INDEX subscriptions_person"),
                "{versions} versions a person:\n{plan}"
            );
            assert!(!plan.contains("SCAN s"), "{versions} versions a person:\n{plan}");
        }
    }
}

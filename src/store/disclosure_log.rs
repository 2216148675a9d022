//! The disclosure log: every decision about personal data, append-only and hash-chained (the chain
//! rule is [`crate::domain::disclosure::entry_hash`]).

use std::borrow::Cow;

use super::copy::{BinaryCopy, copy_in};
use super::tx::{Conn, Dialect, on_conn};
use super::{Store, StoreError, non_empty, split_codes, stored_opt_date, stored_person, to_i64, to_u64};
use crate::domain::clock::{Micros, format_date};
use crate::domain::disclosure::{
    ChainProblem, ChainVerdict, Channel, Decision, DisclosureEntry, GENESIS_HASH, NewDisclosure, entry_hash,
};

const COLUMNS: &str = "entry_id, at, party_id, party_org_number, system_identity, operator_name, channel, rpc, \
     request_id, decision, denial_reason, legal_basis, purpose, case_reference, consent_id, subscription_id, \
     person, benefit_types, period_from, period_to, record_count, from_sequence, to_sequence, previous_hash, hash";

const COLUMN_COUNT: usize = 25;

/// Entries per INSERT statement on SQLite: 25 parameters each, well inside its limit.
const ROWS_PER_STATEMENT: usize = 400;

/// Which entries a listing returns.
#[derive(Debug, Clone, Copy)]
pub enum DisclosureQuery<'a> {
    /// About one person.
    Person(&'a crate::domain::Personnummer),
    /// By one party, optionally only one decision.
    Party {
        party_id: &'a str,
        decision: Option<Decision>,
    },
}

/// "Does not apply" as the log stores it: the empty string.
fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

impl Store {
    /// Appends entries to the disclosure log in one transaction, chaining their hashes. Callers
    /// disclose only after this has returned `Ok`: if the log cannot be written, nothing leaves.
    pub async fn append_disclosures(&self, entries: &[NewDisclosure], now: Micros) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut conn = self.write().await?;
        append_on(&mut conn, entries, now).await?;
        conn.commit().await
    }

    /// Entries matching `query` recorded in `[from, to)`, oldest first, after entry `after_id`.
    pub async fn disclosures(
        &self,
        query: DisclosureQuery<'_>,
        (from, to): (Micros, Micros),
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DisclosureEntry>, StoreError> {
        let (clause, key, decision) = match query {
            DisclosureQuery::Person(person) => ("person = $1", person.as_storage(), ""),
            DisclosureQuery::Party { party_id, decision } => {
                ("party_id = $1", party_id, decision.map_or("", Decision::as_str))
            }
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM disclosure_log \
             WHERE {clause} AND at >= $2 AND at < $3 AND entry_id > $4 AND ($5 = '' OR decision = $5) \
             ORDER BY entry_id LIMIT $6"
        );
        let mut conn = self.read().await?;
        let rows: Vec<Row> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(key)
                .bind(from)
                .bind(to)
                .bind(after_id)
                .bind(decision)
                .bind(limit)
                .fetch_all(c)
                .await?
        });
        rows.into_iter().map(entry_from_row).collect()
    }

    /// The allowed entries of `party_id` about `person` on `channel` that covered the register up
    /// to `to_sequence` (for a query: answers given as of that sequence), oldest first.
    pub async fn answers_given(
        &self,
        party_id: &str,
        person: &crate::domain::Personnummer,
        channel: Channel,
        to_sequence: u64,
    ) -> Result<Vec<DisclosureEntry>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM disclosure_log \
             WHERE person = $1 AND party_id = $2 AND channel = $3 AND decision = $4 AND to_sequence = $5 \
             ORDER BY entry_id LIMIT 100"
        );
        let mut conn = self.read().await?;
        let rows: Vec<Row> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(person.as_storage())
                .bind(party_id)
                .bind(channel.as_str())
                .bind(Decision::Allowed.as_str())
                .bind(to_i64(to_sequence))
                .fetch_all(c)
                .await?
        });
        rows.into_iter().map(entry_from_row).collect()
    }

    /// Recomputes the chain over `[from_id, to_id]` (`to_id` 0 = the latest) and names the first
    /// broken entry. Reads in pages, so it runs in bounded memory.
    pub async fn verify_disclosure_chain(
        &self,
        from_id: i64,
        to_id: i64,
    ) -> Result<ChainVerdict, StoreError> {
        let from_id = from_id.max(1);
        let mut conn = self.read().await?;
        let last: i64 = on_conn!(&mut conn, |c| {
            sqlx::query_scalar("SELECT last_entry_id FROM disclosure_chain_head WHERE id = 1")
                .fetch_one(c)
                .await?
        });
        let to_id = if to_id == 0 { last } else { to_id.min(last) };
        // The hash the first checked entry must follow.
        let mut expected_previous: Option<String> = (from_id == 1).then(|| GENESIS_HASH.to_string());
        let mut next_id = from_id;
        let mut checked = 0u64;
        let mut last_hash = expected_previous.clone().unwrap_or_default();
        let broken = |checked, entry_id, problem| {
            Ok(ChainVerdict::Broken {
                checked,
                entry_id,
                problem,
            })
        };
        while next_id <= to_id {
            let page = page(&mut conn, next_id, to_id).await?;
            if page.is_empty() {
                return broken(checked, next_id, ChainProblem::EntryMissing);
            }
            for entry in page {
                if entry.entry_id != next_id {
                    return broken(checked, next_id, ChainProblem::EntryMissing);
                }
                if expected_previous
                    .as_ref()
                    .is_some_and(|p| p != &entry.previous_hash)
                {
                    return broken(checked, entry.entry_id, ChainProblem::PreviousHashMismatch);
                }
                if entry_hash(&entry.previous_hash, entry.entry_id, entry.at, &entry.entry) != entry.hash {
                    return broken(checked, entry.entry_id, ChainProblem::HashMismatch);
                }
                checked += 1;
                expected_previous = Some(entry.hash.clone());
                last_hash = entry.hash;
                next_id += 1;
            }
        }
        Ok(ChainVerdict::Intact { checked, last_hash })
    }
}

/// Appends entries to the disclosure log inside the caller's transaction `conn`, chaining their
/// hashes; the entries become visible with whatever else the transaction commits (a statistics
/// delivery's state change). Callers disclose only after that commit.
pub(crate) async fn append_on(
    conn: &mut Conn,
    entries: &[NewDisclosure],
    now: Micros,
) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    // The no-op update takes the head row's lock first, so appends are strictly ordered.
    let (mut last_id, mut last_hash): (i64, String) = on_conn!(&mut *conn, |c| {
        sqlx::query_as(
            "UPDATE disclosure_chain_head SET last_entry_id = last_entry_id WHERE id = 1 \
             RETURNING last_entry_id, last_hash",
        )
        .fetch_one(c)
        .await?
    });
    let mut rows = Vec::with_capacity(entries.len());
    for e in entries {
        let entry_id = last_id + 1;
        let hash = entry_hash(&last_hash, entry_id, now, e);
        rows.push((entry_id, e, std::mem::replace(&mut last_hash, hash.clone()), hash));
        last_id = entry_id;
    }
    on_conn!(&mut *conn,
        sqlite: |c| insert_rows(c, &rows, now).await?,
        postgres: |c| copy_rows(c, &rows, now).await?,
    );
    on_conn!(&mut *conn, |c| {
        sqlx::query("UPDATE disclosure_chain_head SET last_entry_id = $1, last_hash = $2 WHERE id = 1")
            .bind(last_id)
            .bind(&last_hash)
            .execute(c)
            .await?;
    });
    Ok(())
}

/// An entry to append: its id, the entry, the hash it follows and its own.
type Appended<'a> = (i64, &'a NewDisclosure, String, String);

/// A stored column's value.
enum Value<'a> {
    Number(i64),
    Text(Cow<'a, str>),
}

/// An appended entry's values in the order of [`COLUMNS`]: the one place that says how an entry
/// is stored, for both backends' statements.
fn values<'a>(
    (entry_id, e, previous_hash, hash): &'a Appended<'_>,
    now: Micros,
) -> [Value<'a>; COLUMN_COUNT] {
    use Value::{Number, Text};
    let borrowed = |v: &'a str| Text(Cow::Borrowed(v));
    [
        Number(*entry_id),
        Number(now),
        borrowed(text(&e.party_id)),
        borrowed(text(&e.party_org_number)),
        borrowed(&e.system_identity),
        borrowed(text(&e.operator_name)),
        borrowed(e.channel.as_str()),
        borrowed(&e.rpc),
        borrowed(text(&e.request_id)),
        borrowed(e.decision.as_str()),
        borrowed(text(&e.denial_reason)),
        borrowed(text(&e.legal_basis)),
        borrowed(text(&e.purpose)),
        borrowed(text(&e.case_reference)),
        borrowed(text(&e.consent_id)),
        borrowed(text(&e.subscription_id)),
        borrowed(e.person.as_ref().map_or("", |p| p.as_storage())),
        Text(Cow::Owned(e.benefit_types.join(","))),
        Text(Cow::Owned(e.period_from.map(format_date).unwrap_or_default())),
        Text(Cow::Owned(e.period_to.map(format_date).unwrap_or_default())),
        Number(to_i64(e.record_count)),
        Number(to_i64(e.from_sequence)),
        Number(to_i64(e.to_sequence)),
        borrowed(previous_hash),
        borrowed(hash),
    ]
}

/// SQLite: multi-row INSERTs, one statement per chunk, not one per entry.
async fn insert_rows(
    conn: &mut sqlx::SqliteConnection,
    rows: &[Appended<'_>],
    now: Micros,
) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO disclosure_log ({COLUMNS}) VALUES {}",
            Dialect::Sqlite.values_list(chunk.len(), COLUMN_COUNT)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for row in chunk {
            for value in values(row, now) {
                q = match value {
                    Value::Number(n) => q.bind(n),
                    Value::Text(t) => q.bind(t),
                };
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// PostgreSQL: one binary COPY for all entries (a snapshot appends hundreds at once; a 400-row
/// INSERT of 10,000 parameters costs PostgreSQL more to parse and plan than the rows to write).
async fn copy_rows(
    conn: &mut sqlx::PgConnection,
    rows: &[Appended<'_>],
    now: Micros,
) -> Result<(), sqlx::Error> {
    let mut data = BinaryCopy::with_capacity(rows.len() * 600);
    for row in rows {
        data.row(COLUMN_COUNT as i16);
        for value in values(row, now) {
            match value {
                Value::Number(n) => data.int8(n),
                Value::Text(t) => data.text(&t),
            }
        }
    }
    copy_in(
        conn,
        &format!("COPY disclosure_log ({COLUMNS}) FROM STDIN (FORMAT binary)"),
        data,
    )
    .await
}

/// Up to 1,000 entries from `from_id` to `to_id`, in order.
async fn page(conn: &mut Conn, from_id: i64, to_id: i64) -> Result<Vec<DisclosureEntry>, StoreError> {
    let rows: Vec<Row> = on_conn!(conn, |c| {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM disclosure_log WHERE entry_id >= $1 AND entry_id <= $2 \
             ORDER BY entry_id LIMIT 1000"
        )))
        .bind(from_id)
        .bind(to_id)
        .fetch_all(c)
        .await?
    });
    rows.into_iter().map(entry_from_row).collect()
}

/// A `disclosure_log` row in [`COLUMNS`]' order.
#[derive(sqlx::FromRow)]
struct Row {
    entry_id: i64,
    at: i64,
    party_id: String,
    party_org_number: String,
    system_identity: String,
    operator_name: String,
    channel: String,
    rpc: String,
    request_id: String,
    decision: String,
    denial_reason: String,
    legal_basis: String,
    purpose: String,
    case_reference: String,
    consent_id: String,
    subscription_id: String,
    person: String,
    benefit_types: String,
    period_from: String,
    period_to: String,
    record_count: i64,
    from_sequence: i64,
    to_sequence: i64,
    previous_hash: String,
    hash: String,
}

fn entry_from_row(r: Row) -> Result<DisclosureEntry, StoreError> {
    let person = if r.person.is_empty() {
        None
    } else {
        Some(stored_person(&r.person, "disclosure_log.person")?)
    };
    let optional_date = |v: &str| stored_opt_date(Some(v).filter(|d| !d.is_empty()), "disclosure_log.period");
    Ok(DisclosureEntry {
        entry_id: r.entry_id,
        at: r.at,
        entry: NewDisclosure {
            channel: Channel::parse(&r.channel).ok_or(StoreError::Corrupt("disclosure_log.channel"))?,
            decision: Decision::parse(&r.decision).ok_or(StoreError::Corrupt("disclosure_log.decision"))?,
            denial_reason: non_empty(r.denial_reason),
            rpc: r.rpc,
            request_id: non_empty(r.request_id),
            party_id: non_empty(r.party_id),
            party_org_number: non_empty(r.party_org_number),
            system_identity: r.system_identity,
            operator_name: non_empty(r.operator_name),
            legal_basis: non_empty(r.legal_basis),
            purpose: non_empty(r.purpose),
            case_reference: non_empty(r.case_reference),
            consent_id: non_empty(r.consent_id),
            subscription_id: non_empty(r.subscription_id),
            person,
            benefit_types: split_codes(&r.benefit_types),
            period_from: optional_date(&r.period_from)?,
            period_to: optional_date(&r.period_to)?,
            record_count: to_u64(r.record_count, "disclosure_log.record_count")?,
            from_sequence: to_u64(r.from_sequence, "disclosure_log.from_sequence")?,
            to_sequence: to_u64(r.to_sequence, "disclosure_log.to_sequence")?,
        },
        previous_hash: r.previous_hash,
        hash: r.hash,
    })
}
